//! The directory of durable queues: every broker knows every durable queue of the overlay
//! (its [`QueueDecl`], newest generation wins, removals kept as tombstones), so the access broker
//! of a persistent publication can tell which brokers must get it even while links or brokers
//! between them are down. Entries are learnt from this broker's own queue administration and
//! from peers, written to the log, and passed on to the other peers (flooding, stopped by the
//! generation check). The filters of live remote entries are kept in an index.

use palio_filter::{Event, Filter};
use palio_topology::BrokerId;

use super::engine::{Engine, Journal};
use super::output::Output;
use super::record::Record;
use crate::wire::QueueDecl;

impl Engine {
    /// The other brokers holding a durable queue whose filter matches `event`, in order.
    pub(super) fn remote_matches(&mut self, event: &Event) -> Vec<BrokerId> {
        self.remote.matches(event)
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

    /// A peer told us of a durable queue: keep it if it is newer, and pass it on.
    pub(crate) fn handle_decl(&mut self, j: &mut impl Journal, from: BrokerId, decl: QueueDecl) {
        if decl.home == self.cfg.me || !self.is_newer(&decl) {
            return;
        }
        if self.write(j, Record::Directory(decl.clone())).is_ok() {
            self.announce(&decl, Some(from));
        }
    }

    fn is_newer(&self, decl: &QueueDecl) -> bool {
        self.directory
            .get(&(decl.home, decl.name.clone()))
            .is_none_or(|d| d.generation < decl.generation)
    }

    /// Records a directory entry if it is newer than the one known.
    pub(super) fn learn(&mut self, decl: QueueDecl) {
        if decl.home == self.cfg.me {
            // Saturating: a stored generation at the maximum must not overflow.
            self.next_generation = self.next_generation.max(decl.generation.saturating_add(1));
        }
        if !self.is_newer(&decl) {
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
