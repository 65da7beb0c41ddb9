//! Engines linked to each other, their peer outputs carried by hand: store-and-forward, the
//! directory, broken links and changed routes.

use super::*;

/// Three engines in a line 1 – 2 – 3 with a queue at 3; frames are carried by hand.
struct Line {
    nodes: Vec<Node>,
    /// Links that are up.
    up: Vec<(u32, u32)>,
}

impl Line {
    fn new() -> Self {
        let mut nodes: Vec<Node> = (1..=3).map(Node::new).collect();
        let hops = |pairs: &[(u32, u32)]| -> HashMap<BrokerId, BrokerId> {
            pairs
                .iter()
                .map(|(d, h)| (BrokerId(*d), BrokerId(*h)))
                .collect()
        };
        let all = [
            hops(&[(2, 2), (3, 2)]),
            hops(&[(1, 1), (3, 3)]),
            hops(&[(1, 2), (2, 2)]),
        ];
        for (n, h) in nodes.iter_mut().zip(all) {
            n.engine.set_next_hops(&mut n.journal, h);
        }
        let mut l = Line { nodes, up: vec![] };
        l.link(1, 2);
        l.link(2, 3);
        l
    }

    fn node(&mut self, id: u32) -> &mut Node {
        &mut self.nodes[id as usize - 1]
    }

    fn link(&mut self, a: u32, b: u32) {
        self.up.push((a, b));
        for (x, y) in [(a, b), (b, a)] {
            let n = self.node(x);
            n.engine.peer_up(&mut n.journal, BrokerId(y));
        }
    }

    fn unlink(&mut self, a: u32, b: u32) {
        self.up.retain(|l| *l != (a, b));
        for (x, y) in [(a, b), (b, a)] {
            let n = self.node(x);
            n.engine.peer_down(&mut n.journal, BrokerId(y));
        }
    }

    /// Syncs and carries peer outputs over up links until quiet; returns client frames.
    fn run(&mut self) -> Vec<(u32, ServerFrame)> {
        let mut client = Vec::new();
        for _ in 0..100 {
            let mut moved = false;
            for i in 1..=3u32 {
                self.node(i).sync();
                for o in self.node(i).outputs() {
                    let (to, from) = match &o {
                        Output::Store { peer, .. }
                        | Output::StoreAck { peer, .. }
                        | Output::Decl { peer, .. } => (peer.0, BrokerId(i)),
                        _ => {
                            let max_frame = self.node(i).max_frame;
                            if let Framed::Client { frames, .. } = frame(o, max_frame) {
                                client.extend(frames.map(|f| (i, f)));
                            }
                            continue;
                        }
                    };
                    if !self
                        .up
                        .iter()
                        .any(|&(a, b)| (a, b) == (i, to) || (a, b) == (to, i))
                    {
                        continue;
                    }
                    moved = true;
                    let n = self.node(to);
                    match o {
                        Output::Store {
                            id,
                            dests,
                            attributes,
                            payload,
                            ..
                        } => n.engine.handle_store(
                            &mut n.journal,
                            n.now,
                            from,
                            id,
                            dests,
                            attributes,
                            payload,
                        ),
                        Output::StoreAck { ids, .. } => {
                            n.engine.handle_store_ack(&mut n.journal, from, &ids)
                        }
                        Output::Decl { decl, .. } => {
                            let _ = n.engine.handle_decl(&mut n.journal, from, decl);
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
            if !moved {
                return client;
            }
        }
        panic!("did not settle");
    }
}

#[test]
fn messages_reach_a_remote_queue_across_a_broken_link_exactly_once() {
    let mut l = Line::new();
    l.node(3).add_queue("far", "type = 'a'");
    l.run();
    l.node(1).producer();
    l.node(1).publish("a", 0);
    l.node(1).publish("b", 1);
    l.run();
    assert_eq!(l.node(3).info("far").pending, 1);
    // The middle link breaks; publications keep coming and wait at broker 1 or 2.
    l.unlink(2, 3);
    for s in 2..6 {
        l.node(1).publish("a", s);
    }
    l.run();
    assert_eq!(l.node(3).info("far").pending, 1);
    assert!(
        !l.node(2).engine.forwards.is_empty(),
        "held at the middle broker"
    );
    // Broker 2 "crashes": it recovers from its journal, then the link heals.
    let recovered = l.node(2).recovered();
    l.nodes[1] = recovered;
    let n = l.node(2);
    n.engine.set_next_hops(
        &mut n.journal,
        [(1, 1), (3, 3)]
            .into_iter()
            .map(|(d, h)| (BrokerId(d), BrokerId(h)))
            .collect(),
    );
    l.link(1, 2);
    l.link(2, 3);
    l.run();
    l.node(3).consume("far", ConsumeMode::Push { window: 100 });
    let got = l.node(3).messages();
    assert_eq!(seqs(&got), vec![0, 2, 3, 4, 5]);
    assert!(l.nodes.iter().all(|n| n.engine.forwards.is_empty()));
    assert_eq!(
        l.node(2).engine.live_floor(),
        None,
        "nothing left to keep at the relay"
    );
}

#[test]
fn a_resent_message_is_stored_once_while_held_and_delivered_once_in_any_case() {
    let mut l = Line::new();
    l.node(3).add_queue("far", "TRUE");
    l.run();
    for (round, hold_at_2) in [(0u64, true), (1, false)] {
        if hold_at_2 {
            l.unlink(2, 3);
        }
        l.node(1).producer();
        l.node(1).publish("a", round);
        // Carry the Store frame to 2, then lose 2's ack by breaking the link.
        l.node(1).sync();
        let store = l
            .node(1)
            .outputs()
            .into_iter()
            .find_map(|o| match o {
                Output::Store {
                    id,
                    dests,
                    attributes,
                    payload,
                    ..
                } => Some((id, dests, attributes, payload)),
                _ => None,
            })
            .expect("a store frame toward 2");
        let n2 = l.node(2);
        n2.engine.handle_store(
            &mut n2.journal,
            n2.now,
            BrokerId(1),
            store.0,
            store.1,
            store.2,
            store.3,
        );
        l.unlink(1, 2);
        l.run();
        l.link(1, 2);
        l.run();
        if hold_at_2 {
            // 2 still holds it for 3: the copy sent again is not stored again.
            assert_eq!(messages_stored(&l.node(2).journal), 1);
            l.link(2, 3);
            l.run();
        } else {
            // 2 had handed it off: it takes the copy again (a route could have changed).
            assert_eq!(messages_stored(&l.node(2).journal), 3);
        }
    }
    // Either way 3 puts each message into its queue once.
    l.node(3).consume("far", ConsumeMode::Push { window: 10 });
    assert_eq!(seqs(&l.node(3).messages()), vec![0, 1]);
    assert!(l.nodes.iter().all(|n| n.engine.forwards.is_empty()));
}

fn messages_stored(j: &VecJournal) -> usize {
    j.records
        .iter()
        .filter(|r| {
            matches!(
                crate::durable::record::decode::<crate::durable::record::Record>(r),
                Ok(crate::durable::record::Record::Message { .. })
            )
        })
        .count()
}

// Store-and-forward edge cases (found in review).

fn hops_of(pairs: &[(u32, u32)]) -> HashMap<BrokerId, BrokerId> {
    pairs
        .iter()
        .map(|(d, h)| (BrokerId(*d), BrokerId(*h)))
        .collect()
}

fn decl(home: u32, name: &str) -> crate::wire::QueueDecl {
    crate::wire::QueueDecl {
        home: BrokerId(home),
        name: name.into(),
        filter: "TRUE".into(),
        generation: 1,
        removed: false,
    }
}

fn stores(outs: &[Output]) -> Vec<(u32, crate::wire::MessageId, Vec<BrokerId>)> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Store {
                peer, id, dests, ..
            } => Some((peer.0, *id, dests.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_route_through_a_hop_waits_for_that_hops_ack_before_a_second_store() {
    let mut n = Node::new(1);
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(4, "q4"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2)]));
    n.sync();
    n.outputs();
    n.producer();
    n.publish("a", 0);
    n.sync();
    let first = stores(&n.outputs());
    assert_eq!(first.len(), 1);
    let id = first[0].1;
    assert_eq!(first[0].2, vec![BrokerId(3)]);
    // A route to 4 appears through the same hop: nothing more goes out before 2's ack.
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2), (4, 2)]));
    assert!(stores(&n.outputs()).is_empty());
    assert_eq!(n.engine.peers[&BrokerId(2)], 1);
    // The ack covers 3 only; 4 goes out next, and its own ack ends the forward.
    n.engine
        .handle_store_ack(&mut n.journal, BrokerId(2), &[id]);
    let second = stores(&n.outputs());
    assert_eq!(second, vec![(2, id, vec![BrokerId(4)])]);
    assert_eq!(n.engine.forwards.len(), 1, "4 is not handed off yet");
    n.engine
        .handle_store_ack(&mut n.journal, BrokerId(2), &[id]);
    assert!(n.engine.forwards.is_empty());
    assert_eq!(n.engine.peers[&BrokerId(2)], 0, "no window slot leaked");
}

#[test]
fn a_message_not_yet_durable_does_not_hold_back_durable_ones() {
    let mut n = Node::new(5);
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2), (1, 1)]));
    n.producer();
    n.publish("a", 0);
    n.sync();
    n.outputs();
    // A message from origin 1 (a lower id) arrives and is not durable yet.
    n.engine.handle_store(
        &mut n.journal,
        n.now,
        BrokerId(1),
        crate::wire::MessageId {
            origin: BrokerId(1),
            n: 0,
        },
        vec![BrokerId(3)],
        attrs("a", 1),
        vec![],
    );
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    let s = stores(&n.outputs());
    assert_eq!(
        s.len(),
        1,
        "the durable message of origin 5 goes out: {s:?}"
    );
    assert_eq!(s[0].1.origin, BrokerId(5));
}

#[test]
fn a_link_replaced_before_its_end_was_seen_sends_again() {
    let mut n = Node::new(1);
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2)]));
    n.producer();
    n.publish("a", 0);
    n.sync();
    assert_eq!(stores(&n.outputs()).len(), 1);
    // A new link to 2 comes up before the old one's end is reported.
    n.engine.peer_up(&mut n.journal, BrokerId(2));
    assert_eq!(stores(&n.outputs()).len(), 1, "sent again on the new link");
}

#[test]
fn a_recovered_engine_forwards_what_it_held_once_told_the_log_is_durable() {
    let mut n = Node::new(1);
    n.engine
        .handle_decl(&mut n.journal, BrokerId(2), decl(3, "q3"));
    n.engine
        .set_next_hops(&mut n.journal, hops_of(&[(2, 2), (3, 2)]));
    n.producer();
    n.publish("a", 0);
    n.sync();
    let mut r = n.recovered();
    r.engine
        .set_next_hops(&mut r.journal, hops_of(&[(2, 2), (3, 2)]));
    r.engine.peer_up(&mut r.journal, BrokerId(2));
    assert_eq!(stores(&r.outputs()).len(), 1);
    // A publisher retrying a stored seq is acked although nothing new is written.
    r.producer();
    r.publish("a", 0);
    assert!(r.frames().contains(&acked(0, 0, 1)));
}
