//! The directory of durable queues: every broker knows every durable queue of the overlay
//! (its [`QueueDecl`], newest generation wins, removals kept as tombstones), so the access broker
//! of a persistent publication can tell which brokers must get it even while links or brokers
//! between them are down. Entries are learnt from this broker's own queue administration and
//! from peers, written to the log, and passed on to the other peers (flooding, stopped by the
//! generation check). The filters of live remote entries are kept in an index.
//!
//! # What a peer cannot do to it
//!
//! Declarations are relayed, so a peer can forge one for any queue of any broker. Hence:
//!
//! - **Generations are serial numbers** ([`newer_generation`], RFC 1982 arithmetic): a
//!   generation is newer than another when it is ahead by less than half the space, so there is
//!   no largest one. A declaration with generation `u64::MAX` (or one that wrapped around) does
//!   not stay newest forever, and nothing overflows.
//! - **A home outbids claims about its queues.** When a declaration of one of this broker's own
//!   queues arrives that is not what this broker declared and not older than it (a forgery, or
//!   the leftover of a store this broker lost), this broker declares the truth again — the queue
//!   with its filter, or a tombstone if it has no such queue — with the claim's generation plus
//!   one, and floods it: every broker that took the claim takes the correction. Each queue's
//!   next generation follows that queue's last one ([`Engine::generation_for`]), so outbidding
//!   one queue never makes another queue's next declaration look old.
//! - **Bounded.** A peer's declaration must name a valid queue and carry a filter within the
//!   filter language's length limit, and the directory keeps at most
//!   [`MAX_QUEUES_PER_REMOTE_BROKER`] entries (tombstones included) per other broker and
//!   [`MAX_REMOTE_QUEUES`] in all. A declaration that would add an entry beyond that is refused
//!   and counted (replacing an entry is always allowed).
//!
//! What remains: a forged declaration of another broker's queue is taken by everyone until its
//! home sees it and outbids it (at once if the home is reachable).

use palio_filter::{Event, Filter};
use palio_protocol::valid_queue_name;
use palio_topology::BrokerId;

use super::engine::{Engine, Journal};
use super::output::Output;
use super::record::Record;
use crate::wire::QueueDecl;

/// The most entries (tombstones included) the directory keeps for the queues of one other
/// broker. A broker with more durable queues than this is not fully known to its peers.
pub(crate) const MAX_QUEUES_PER_REMOTE_BROKER: usize = 4096;

/// The most entries the directory keeps for the queues of other brokers, in all.
pub(crate) const MAX_REMOTE_QUEUES: usize = 65_536;

/// Why a peer's queue declaration was refused (counted, never fatal to the link: the peer may
/// only be relaying it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeclRefusal {
    /// The name is not a valid queue name, or the filter is longer than filters may be.
    Malformed,
    /// Its home broker already has [`MAX_QUEUES_PER_REMOTE_BROKER`] entries.
    BrokerFull,
    /// The directory already has [`MAX_REMOTE_QUEUES`] entries of other brokers.
    DirectoryFull,
    /// It is about one of this broker's own queues and contradicts what this broker declared:
    /// not taken, and the truth was declared again with a newer generation.
    Contradicted,
}

impl DeclRefusal {
    /// The label used in metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            DeclRefusal::Malformed => "malformed",
            DeclRefusal::BrokerFull => "broker_full",
            DeclRefusal::DirectoryFull => "directory_full",
            DeclRefusal::Contradicted => "contradicted",
        }
    }
}

/// Whether generation `a` is newer than `b`: ahead of it by less than half the space (serial
/// number arithmetic, RFC 1982). Exactly half apart, neither is newer.
pub(crate) fn newer_generation(a: u64, b: u64) -> bool {
    let ahead = a.wrapping_sub(b);
    ahead != 0 && ahead < 1 << 63
}

impl Engine {
    /// The other brokers holding a durable queue whose filter matches `event`, in order.
    #[cfg(test)]
    pub(super) fn remote_matches(&mut self, event: &Event) -> Vec<BrokerId> {
        self.remote.matches(event)
    }

    /// The other brokers holding a durable queue whose filter matches `event`, in order, and
    /// how many such queues they hold.
    pub(super) fn remote_queue_matches(&mut self, event: &Event) -> (Vec<BrokerId>, usize) {
        self.remote.matches_counted(event)
    }

    /// Sends the whole directory to `peer` (its link just came up).
    pub(super) fn send_directory(&mut self, peer: BrokerId) {
        let decls: Vec<QueueDecl> = self.directory.values().cloned().collect();
        for decl in decls {
            self.out.push_back(Output::Decl { peer, decl });
        }
    }

    /// Durable queues at other brokers that this one forwards to.
    pub(crate) fn remote_queues(&self) -> usize {
        self.directory
            .values()
            .filter(|d| d.home != self.cfg.me && !d.removed)
            .count()
    }

    /// The generation of this broker's next declaration of its queue `name`: one after the last
    /// one of that queue, so that it is newer wherever that one went.
    pub(super) fn generation_for(&self, name: &str) -> u64 {
        self.directory
            .get(&(self.cfg.me, name.to_owned()))
            .map_or(self.next_generation, |d| d.generation.wrapping_add(1))
    }

    /// A peer told us of a durable queue: keep it if it is newer, and pass it on; or, if it is
    /// one of ours and not what we declared, declare the truth again (see the module docs).
    /// Returns why it was refused, if it was.
    pub(crate) fn handle_decl(
        &mut self,
        j: &mut impl Journal,
        from: BrokerId,
        decl: QueueDecl,
    ) -> Option<DeclRefusal> {
        if !valid_queue_name(&decl.name)
            || decl.filter.len() > palio_filter::Limits::default().max_len
        {
            return Some(DeclRefusal::Malformed);
        }
        if decl.home == self.cfg.me {
            return self.outbid(j, &decl).then_some(DeclRefusal::Contradicted);
        }
        if !self.is_newer(&decl) {
            return None;
        }
        if let Err(r) = self.room_for(&decl) {
            return Some(r);
        }
        if self.write(j, Record::Directory(decl.clone())).is_ok() {
            self.announce(&decl, Some(from));
        }
        None
    }

    /// A peer holds `claim` about one of our queues. Unless it is what we declared or older,
    /// declare what is true (the queue, or a tombstone) with a newer generation. Returns
    /// whether the claim contradicted us.
    fn outbid(&mut self, j: &mut impl Journal, claim: &QueueDecl) -> bool {
        let ours = self.directory.get(&(self.cfg.me, claim.name.clone()));
        if ours.is_some_and(|d| d == claim || newer_generation(d.generation, claim.generation)) {
            return false;
        }
        let (filter, removed) = match self.names.get(&claim.name).and_then(|k| self.queues.get(k)) {
            Some(q) => (q.filter.source().to_owned(), false),
            None => (String::new(), true),
        };
        let decl = QueueDecl {
            home: self.cfg.me,
            name: claim.name.clone(),
            filter,
            generation: claim.generation.wrapping_add(1),
            removed,
        };
        if self.write(j, Record::Directory(decl.clone())).is_ok() {
            self.announce(&decl, None);
        }
        true
    }

    fn is_newer(&self, decl: &QueueDecl) -> bool {
        self.directory
            .get(&(decl.home, decl.name.clone()))
            .is_none_or(|d| newer_generation(decl.generation, d.generation))
    }

    /// Whether the directory may take `decl` (of another broker) within its bounds.
    fn room_for(&self, decl: &QueueDecl) -> Result<(), DeclRefusal> {
        if self.directory.contains_key(&(decl.home, decl.name.clone())) {
            return Ok(());
        }
        let of = |home: BrokerId| {
            self.directory
                .range((home, String::new())..)
                .take_while(|((h, _), _)| *h == home)
                .count()
        };
        if of(decl.home) >= MAX_QUEUES_PER_REMOTE_BROKER {
            return Err(DeclRefusal::BrokerFull);
        }
        if self.directory.len() - of(self.cfg.me) >= MAX_REMOTE_QUEUES {
            return Err(DeclRefusal::DirectoryFull);
        }
        Ok(())
    }

    /// Records a directory entry: one of ours always (we write them in order, each the latest
    /// word on its queue), another broker's if it is newer than the one known.
    pub(super) fn learn(&mut self, decl: QueueDecl) {
        let own = decl.home == self.cfg.me;
        if own {
            // The first generation of a queue not declared before (see `generation_for`).
            self.next_generation = self.next_generation.max(decl.generation.saturating_add(1));
        }
        if !own && !self.is_newer(&decl) {
            return;
        }
        let key = (decl.home, decl.name.clone());
        // Only queues elsewhere are destinations; a filter that does not compile (from a newer
        // broker's language) matches nothing, as it did when it was scanned.
        let filter = (!decl.removed && decl.home != self.cfg.me)
            .then(|| Filter::new(&decl.filter).ok())
            .flatten();
        match filter {
            Some(f) => self.remote.insert(key.clone(), &f, decl.home),
            None => self.remote.remove(&key),
        }
        self.directory.insert(key, decl);
    }

    /// Sends a directory entry to every peer but `except`.
    pub(super) fn announce(&mut self, decl: &QueueDecl, except: Option<BrokerId>) {
        let peers: Vec<BrokerId> = self.peers.keys().copied().collect();
        for peer in peers {
            if Some(peer) != except {
                self.out.push_back(Output::Decl {
                    peer,
                    decl: decl.clone(),
                });
            }
        }
    }
}
