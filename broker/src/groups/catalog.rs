//! What the overlay knows about groups: declarations, brokers' names and members. Pure: the
//! task merges what peers flood and asks it what changed.

use std::collections::BTreeMap;

use palio_topology::BrokerId;

use crate::wire::GroupDecl;

/// Declarations (tombstones included), names and remote members, merged from floods.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    decls: BTreeMap<String, GroupDecl>,
    names: BTreeMap<BrokerId, String>,
    /// Per group and broker: the version and the members.
    members: BTreeMap<(String, BrokerId), (u64, Vec<String>)>,
    /// Per total-order group: the latest epoch announced and its sequencer.
    sequencers: BTreeMap<String, (u64, BrokerId)>,
}

/// The order in which two declarations of one name are compared: the larger wins.
fn rank(d: &GroupDecl) -> (u64, bool, BrokerId) {
    (d.generation, d.removed, d.creator)
}

impl Catalog {
    /// Takes `d` if it wins over what is known; returns whether it did.
    pub(super) fn merge_decl(&mut self, d: GroupDecl) -> bool {
        match self.decls.get(&d.name) {
            Some(old) if rank(old) >= rank(&d) => false,
            _ => {
                if d.removed {
                    self.members.retain(|(g, _), _| g != &d.name);
                    self.sequencers.remove(&d.name);
                }
                self.decls.insert(d.name.clone(), d);
                true
            }
        }
    }

    /// The live (not removed) group `name`.
    pub(super) fn live(&self, name: &str) -> Option<&GroupDecl> {
        self.decls.get(name).filter(|d| !d.removed)
    }

    /// Every declaration, tombstones included (sent to a new peer).
    pub(super) fn decls(&self) -> impl Iterator<Item = &GroupDecl> {
        self.decls.values()
    }

    /// The live groups, by name.
    pub(super) fn live_groups(&self) -> impl Iterator<Item = &GroupDecl> {
        self.decls.values().filter(|d| !d.removed)
    }

    /// The generation a new declaration of `name` must exceed.
    pub(super) fn generation(&self, name: &str) -> u64 {
        self.decls.get(name).map_or(0, |d| d.generation)
    }

    /// Learns names; returns the ones that were new.
    pub(super) fn merge_names(
        &mut self,
        names: Vec<(BrokerId, String)>,
    ) -> Vec<(BrokerId, String)> {
        let mut new = Vec::new();
        for (id, name) in names {
            if self.names.get(&id) != Some(&name) {
                self.names.insert(id, name.clone());
                new.push((id, name));
            }
        }
        new
    }

    /// Every name known.
    pub(super) fn names(&self) -> Vec<(BrokerId, String)> {
        self.names.iter().map(|(i, n)| (*i, n.clone())).collect()
    }

    /// The name of broker `id`, or its id when no name is known.
    pub(super) fn name_of(&self, id: BrokerId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| id.to_string())
    }

    /// Takes broker `broker`'s members of `group` if `version` is newer; returns whether it did.
    pub(super) fn merge_members(
        &mut self,
        group: &str,
        broker: BrokerId,
        version: u64,
        members: Vec<String>,
    ) -> bool {
        if self.live(group).is_none() {
            return false;
        }
        let key = (group.to_owned(), broker);
        match self.members.get(&key) {
            Some((v, _)) if *v >= version => false,
            _ => {
                self.members.insert(key, (version, members));
                true
            }
        }
    }

    /// The members of `group` at every broker.
    pub(super) fn members(&self, group: &str) -> Vec<String> {
        self.members
            .iter()
            .filter(|((g, _), _)| g == group)
            .flat_map(|(_, (_, m))| m.iter().cloned())
            .collect()
    }

    /// Takes a sequencer announcement if its epoch is newer; returns whether it did.
    pub(super) fn merge_sequencer(&mut self, group: &str, epoch: u64, broker: BrokerId) -> bool {
        if self.live(group).is_none() {
            return false;
        }
        match self.sequencers.get(group) {
            Some((e, _)) if *e >= epoch => false,
            _ => {
                self.sequencers.insert(group.to_owned(), (epoch, broker));
                true
            }
        }
    }

    /// The latest announced `(epoch, sequencer)` of `group`.
    pub(super) fn sequencer(&self, group: &str) -> Option<(u64, BrokerId)> {
        self.sequencers.get(group).copied()
    }

    /// Every announcement known, to send to a new peer.
    pub(super) fn sequencers(&self) -> impl Iterator<Item = (&str, u64, BrokerId)> {
        self.sequencers
            .iter()
            .map(|(g, (e, b))| (g.as_str(), *e, *b))
    }

    /// Every member list known, as floods to send to a new peer.
    pub(super) fn member_lists(&self) -> impl Iterator<Item = (&str, BrokerId, u64, &[String])> {
        self.members
            .iter()
            .map(|((g, b), (v, m))| (g.as_str(), *b, *v, m.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use palio_topology::group::Order;

    use super::*;

    fn decl(generation: u64, removed: bool, creator: u32) -> GroupDecl {
        GroupDecl {
            name: "g".into(),
            order: Order::Total,
            voters: vec![BrokerId(creator)],
            creator: BrokerId(creator),
            generation,
            removed,
        }
    }

    #[test]
    fn a_removal_wins_over_its_group_and_a_later_creation_wins_over_the_removal() {
        let mut c = Catalog::default();
        assert!(c.merge_decl(decl(5, false, 1)));
        assert!(
            !c.merge_decl(decl(5, false, 1)),
            "the same again changes nothing"
        );
        assert!(!c.merge_decl(decl(4, false, 2)), "an older one loses");
        assert!(c.merge_members("g", BrokerId(1), 1, vec!["a@b1".into()]));
        assert_eq!(c.members("g"), vec!["a@b1".to_owned()]);
        assert!(c.merge_decl(decl(5, true, 1)));
        assert!(c.live("g").is_none());
        assert!(c.members("g").is_empty(), "a removed group has no members");
        assert!(!c.merge_decl(decl(5, false, 1)), "the tombstone stays");
        assert!(c.merge_decl(decl(6, false, 3)));
        assert_eq!(c.live("g").map(|d| d.creator), Some(BrokerId(3)));
    }

    #[test]
    fn a_later_epochs_sequencer_replaces_an_earlier_one() {
        let mut c = Catalog::default();
        assert!(!c.merge_sequencer("g", 1, BrokerId(1)), "unknown group");
        c.merge_decl(decl(1, false, 1));
        assert!(c.merge_sequencer("g", 2, BrokerId(1)));
        assert!(
            !c.merge_sequencer("g", 2, BrokerId(3)),
            "the same epoch again"
        );
        assert!(!c.merge_sequencer("g", 1, BrokerId(3)));
        assert!(c.merge_sequencer("g", 5, BrokerId(2)));
        assert_eq!(c.sequencer("g"), Some((5, BrokerId(2))));
    }

    #[test]
    fn newer_member_lists_replace_older_ones() {
        let mut c = Catalog::default();
        c.merge_decl(decl(1, false, 1));
        assert!(c.merge_members("g", BrokerId(2), 2, vec!["x@b2".into()]));
        assert!(!c.merge_members("g", BrokerId(2), 1, vec![]));
        assert!(
            !c.merge_members("h", BrokerId(2), 9, vec![]),
            "unknown group"
        );
        assert_eq!(c.members("g"), vec!["x@b2".to_owned()]);
    }
}
