//! The directory against what a peer may send: generations at the edge of the space, forged
//! declarations of a broker's own queues, and more declarations than it keeps.

use super::*;
use crate::durable::directory::{
    DeclRefusal, MAX_QUEUES_PER_REMOTE_BROKER, MAX_REMOTE_QUEUES, newer_generation,
};
use crate::wire::QueueDecl;

fn decl(home: u32, name: &str, generation: u64, removed: bool) -> QueueDecl {
    QueueDecl {
        home: BrokerId(home),
        name: name.into(),
        filter: "TRUE".into(),
        generation,
        removed,
    }
}

/// The declarations a node sends to its peers, in order.
fn decls(n: &mut Node) -> Vec<QueueDecl> {
    n.outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Decl { decl, .. } => Some(decl),
            _ => None,
        })
        .collect()
}

#[test]
fn generations_compare_as_serial_numbers() {
    assert!(newer_generation(2, 1));
    assert!(!newer_generation(1, 2));
    assert!(!newer_generation(1, 1));
    // u64::MAX is just behind 0, not newest forever.
    assert!(newer_generation(0, u64::MAX));
    assert!(!newer_generation(u64::MAX, 1));
    assert!(newer_generation(u64::MAX, u64::MAX - 5));
    // Half the space apart, neither is newer.
    assert!(!newer_generation(1 << 63, 0) && !newer_generation(0, 1 << 63));
}

#[test]
fn a_tombstone_with_generation_u64_max_does_not_remove_a_queue_forever() {
    // Broker 1 relays; broker 3 is the queue's home; broker 2 forges.
    let mut relay = Node::new(1);
    let mut home = Node::new(3);
    home.engine.peer_up(&mut home.journal, BrokerId(1));
    home.add_queue("q", "TRUE");
    let declared = decls(&mut home);
    assert_eq!(declared.len(), 1);
    assert_eq!(
        relay
            .engine
            .handle_decl(&mut relay.journal, BrokerId(3), declared[0].clone()),
        None
    );
    assert_eq!(
        relay.engine.remote_matches(&attrs("a", 1)),
        vec![BrokerId(3)]
    );
    // The forged tombstone is not newer than generation 1: ignored.
    let forged = decl(3, "q", u64::MAX, true);
    assert_eq!(
        relay
            .engine
            .handle_decl(&mut relay.journal, BrokerId(2), forged.clone()),
        None
    );
    assert_eq!(
        relay.engine.remote_matches(&attrs("a", 1)),
        vec![BrokerId(3)]
    );

    // A broker that did not know the queue takes the forgery, but the home's declaration
    // (generation 1, which is after u64::MAX) replaces it.
    let mut fresh = Node::new(4);
    assert_eq!(
        fresh
            .engine
            .handle_decl(&mut fresh.journal, BrokerId(2), forged.clone()),
        None
    );
    assert_eq!(fresh.engine.remote_matches(&attrs("a", 1)), vec![]);
    assert_eq!(
        fresh
            .engine
            .handle_decl(&mut fresh.journal, BrokerId(3), declared[0].clone()),
        None
    );
    assert_eq!(
        fresh.engine.remote_matches(&attrs("a", 1)),
        vec![BrokerId(3)]
    );
    // The home ignores the forgery: it is older than what it declared.
    assert_eq!(
        home.engine
            .handle_decl(&mut home.journal, BrokerId(1), forged),
        None
    );
    assert!(decls(&mut home).is_empty());

    // A forged tombstone newer than the home's declaration is taken, until the home sees it and
    // declares the queue again, one generation later: taken everywhere.
    let forged = decl(3, "q", 1 + (1 << 62), true);
    for n in [&mut fresh, &mut relay] {
        assert_eq!(
            n.engine
                .handle_decl(&mut n.journal, BrokerId(2), forged.clone()),
            None
        );
        assert_eq!(n.engine.remote_matches(&attrs("a", 1)), vec![]);
    }
    assert_eq!(
        home.engine
            .handle_decl(&mut home.journal, BrokerId(1), forged),
        Some(DeclRefusal::Contradicted)
    );
    let correction = decls(&mut home);
    assert_eq!(correction.len(), 1);
    assert_eq!(
        (correction[0].generation, correction[0].removed),
        (2 + (1 << 62), false)
    );
    for n in [&mut fresh, &mut relay] {
        assert_eq!(
            n.engine
                .handle_decl(&mut n.journal, BrokerId(3), correction[0].clone()),
            None
        );
        assert_eq!(n.engine.remote_matches(&attrs("a", 1)), vec![BrokerId(3)]);
    }
    // The correction echoed back changes nothing, and the home's next change follows it.
    assert_eq!(
        home.engine
            .handle_decl(&mut home.journal, BrokerId(1), correction[0].clone()),
        None
    );
    assert!(decls(&mut home).is_empty());
    home.engine.queue_remove(&mut home.journal, CLIENT, 5, "q");
    home.sync();
    let removal = decls(&mut home);
    assert_eq!(
        (removal[0].generation, removal[0].removed),
        (3 + (1 << 62), true)
    );

    // A claim of u64::MAX - 1 about a queue the home does not have: it declares a tombstone of
    // generation u64::MAX without overflowing, and a queue of that name later wraps to 0.
    assert_eq!(
        home.engine.handle_decl(
            &mut home.journal,
            BrokerId(1),
            decl(3, "r", u64::MAX - 1, false)
        ),
        Some(DeclRefusal::Contradicted)
    );
    let tomb = decls(&mut home);
    assert_eq!((tomb[0].generation, tomb[0].removed), (u64::MAX, true));
    home.add_queue("r", "TRUE");
    let again = decls(&mut home);
    assert_eq!((again[0].generation, again[0].removed), (0, false));
    let recovered = home.recovered();
    assert_eq!(recovered.engine.generation_for("q"), 4 + (1 << 62));
    assert_eq!(recovered.engine.generation_for("r"), 1);
}

#[test]
fn a_forged_queue_at_a_broker_is_tombstoned_by_that_broker() {
    let mut home = Node::new(3);
    home.engine.peer_up(&mut home.journal, BrokerId(1));
    let forged = decl(3, "ghost", 41, false);
    assert_eq!(
        home.engine
            .handle_decl(&mut home.journal, BrokerId(1), forged),
        Some(DeclRefusal::Contradicted)
    );
    let out = decls(&mut home);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].generation, out[0].removed), (42, true));
    // Declaring the queue for real later follows the tombstone.
    home.add_queue("ghost", "TRUE");
    let out = decls(&mut home);
    assert_eq!((out[0].generation, out[0].removed), (43, false));
}

#[test]
fn the_directory_keeps_a_bounded_number_of_other_brokers_queues() {
    let mut n = Node::new(1);
    let name = |i: usize| format!("q{i}");
    for i in 0..MAX_QUEUES_PER_REMOTE_BROKER {
        assert_eq!(
            n.engine
                .handle_decl(&mut n.journal, BrokerId(2), decl(3, &name(i), 1, true)),
            None
        );
    }
    assert_eq!(
        n.engine
            .handle_decl(&mut n.journal, BrokerId(2), decl(3, "one_more", 1, false)),
        Some(DeclRefusal::BrokerFull)
    );
    // Replacing an entry takes no room.
    assert_eq!(
        n.engine
            .handle_decl(&mut n.journal, BrokerId(2), decl(3, &name(0), 2, false)),
        None
    );
    assert_eq!(n.engine.remote_queues(), 1);
    // Other brokers' queues fill the rest of the directory, then it is full.
    let rest = MAX_REMOTE_QUEUES - MAX_QUEUES_PER_REMOTE_BROKER;
    for i in 0..rest {
        let home = 100 + u32::try_from(i).unwrap();
        assert_eq!(
            n.engine
                .handle_decl(&mut n.journal, BrokerId(2), decl(home, "q", 1, true)),
            None
        );
    }
    assert_eq!(
        n.engine
            .handle_decl(&mut n.journal, BrokerId(2), decl(7, "q", 1, false)),
        Some(DeclRefusal::DirectoryFull)
    );
    // This broker's own queues do not count against it.
    n.add_queue("mine", "TRUE");
    assert_eq!(n.engine.directory.len(), MAX_REMOTE_QUEUES + 1);
}

#[test]
fn malformed_declarations_are_refused() {
    let mut n = Node::new(1);
    let mut bad_name = decl(3, "no spaces", 1, false);
    let mut long_filter = decl(3, "q", 1, false);
    long_filter.filter = format!(
        "x = '{}'",
        "a".repeat(palio_filter::Limits::default().max_len)
    );
    for d in [bad_name.clone(), long_filter] {
        assert_eq!(
            n.engine.handle_decl(&mut n.journal, BrokerId(2), d),
            Some(DeclRefusal::Malformed)
        );
    }
    bad_name.name = String::new();
    assert_eq!(
        n.engine.handle_decl(&mut n.journal, BrokerId(2), bad_name),
        Some(DeclRefusal::Malformed)
    );
    assert!(n.engine.directory.is_empty());
    assert!(n.journal.records.is_empty());
}
