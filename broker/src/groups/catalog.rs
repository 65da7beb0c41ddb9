//! What the overlay knows about groups: declarations, brokers' names and members. Pure: the
//! task merges what peers flood and asks it what changed. Everything it keeps is bounded (see
//! `bounds`): what would go past a bound is refused with an [`OverLimit`], and the task counts
//! it.

use std::collections::{BTreeMap, BTreeSet};

use palio_topology::BrokerId;

use super::bounds::{
    MAX_BROKER_NAME, MAX_BROKER_NAMES, MAX_GROUP_MEMBERS, MAX_MEMBER_LISTS, MAX_MEMBER_NAME,
    OverLimit, check_decl,
};
use crate::wire::GroupDecl;

/// Declarations (tombstones included), names and remote members, merged from floods.
#[derive(Debug)]
pub(super) struct Catalog {
    decls: BTreeMap<String, GroupDecl>,
    /// How many of `decls` are live: at most `max_groups`.
    live: usize,
    /// The tombstones among `decls`, oldest first: at most `max_groups` are kept.
    tombstones: BTreeSet<(u64, String)>,
    /// The newest generation of a tombstone forgotten to stay within the bound. A declaration
    /// of a name not known here that is no newer may be of a group removed since: it is not
    /// taken, so that a forgotten removal cannot bring its group back.
    forgotten: u64,
    /// `limits.max_groups`.
    max_groups: usize,
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
    /// An empty catalog keeping at most `max_groups` live groups (and as many tombstones).
    pub(super) fn new(max_groups: usize) -> Self {
        Self {
            decls: BTreeMap::new(),
            live: 0,
            tombstones: BTreeSet::new(),
            forgotten: 0,
            max_groups,
            names: BTreeMap::new(),
            members: BTreeMap::new(),
            sequencers: BTreeMap::new(),
        }
    }

    /// Takes `d` if it wins over what is known; returns whether it did. A declaration of one
    /// group more than `max_groups`, or past a bound of its shape, is refused.
    ///
    /// A removal is kept as a tombstone; past `max_groups` tombstones the oldest is forgotten
    /// (and with it every declaration of an unknown name that is no newer).
    pub(super) fn merge_decl(&mut self, d: GroupDecl) -> Result<bool, OverLimit> {
        check_decl(&d)?;
        let old = self.decls.get(&d.name);
        match old {
            Some(o) if rank(o) >= rank(&d) => return Ok(false),
            None if d.generation <= self.forgotten => return Ok(false),
            _ => {}
        }
        let was_live = old.is_some_and(|o| !o.removed);
        let old_tombstone = old
            .filter(|o| o.removed)
            .map(|o| (o.generation, o.name.clone()));
        if !d.removed && !was_live && self.live >= self.max_groups {
            return Err(OverLimit::new(
                "max_groups",
                format!(
                    "group {:?} not taken: {} groups are known already (limits.max_groups)",
                    d.name, self.live
                ),
            ));
        }
        let key = (d.generation, d.name.clone());
        if d.removed
            && old.is_none()
            && self.tombstones.len() >= self.max_groups
            && self.tombstones.first().is_some_and(|oldest| key < *oldest)
        {
            // Older than every tombstone kept: it would be the next one forgotten.
            self.forgotten = self.forgotten.max(d.generation);
            return Ok(false);
        }
        if let Some(t) = old_tombstone {
            self.tombstones.remove(&t);
        }
        if was_live {
            self.live -= 1;
        }
        if d.removed {
            self.members.retain(|(g, _), _| g != &d.name);
            self.sequencers.remove(&d.name);
            self.tombstones.insert(key);
        } else {
            self.live += 1;
        }
        self.decls.insert(d.name.clone(), d);
        while self.tombstones.len() > self.max_groups {
            let Some((generation, name)) = self.tombstones.pop_first() else {
                break;
            };
            self.decls.remove(&name);
            self.forgotten = self.forgotten.max(generation);
        }
        Ok(true)
    }

    /// The live (not removed) group `name`.
    pub(super) fn live(&self, name: &str) -> Option<&GroupDecl> {
        self.decls.get(name).filter(|d| !d.removed)
    }

    /// How many groups are live.
    #[cfg(test)]
    pub(super) fn live_count(&self) -> usize {
        self.live
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
        self.decls
            .get(name)
            .map_or(self.forgotten, |d| d.generation)
    }

    /// Learns names; returns the ones that were new, and how many were refused (a name past
    /// [`MAX_BROKER_NAME`] bytes, or a broker past [`MAX_BROKER_NAMES`]).
    pub(super) fn merge_names(
        &mut self,
        names: Vec<(BrokerId, String)>,
    ) -> (Vec<(BrokerId, String)>, usize) {
        let mut new = Vec::new();
        let mut refused = 0;
        for (id, name) in names {
            let known = self.names.get(&id);
            if known == Some(&name) {
                continue;
            }
            if name.len() > MAX_BROKER_NAME
                || (known.is_none() && self.names.len() >= MAX_BROKER_NAMES)
            {
                refused += 1;
                continue;
            }
            self.names.insert(id, name.clone());
            new.push((id, name));
        }
        (new, refused)
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

    /// The member lists of `group`, by broker.
    fn lists(&self, group: &str) -> impl Iterator<Item = (BrokerId, &[String])> {
        let all = (group.to_owned(), BrokerId(0))..=(group.to_owned(), BrokerId(u32::MAX));
        self.members
            .range(all)
            .map(|((_, b), (_, m))| (*b, m.as_slice()))
    }

    /// Takes broker `broker`'s members of `group` if `version` is newer; returns whether it
    /// did. A list that would take the group past [`MAX_GROUP_MEMBERS`] or
    /// [`MAX_MEMBER_LISTS`], or with a name past [`MAX_MEMBER_NAME`] bytes, is refused.
    pub(super) fn merge_members(
        &mut self,
        group: &str,
        broker: BrokerId,
        version: u64,
        members: Vec<String>,
    ) -> Result<bool, OverLimit> {
        if self.live(group).is_none() {
            return Ok(false);
        }
        let key = (group.to_owned(), broker);
        let known = match self.members.get(&key) {
            Some((v, _)) if *v >= version => return Ok(false),
            known => known.is_some(),
        };
        let refuse = |why: String| Err(OverLimit::new("group_members", why));
        if members.iter().any(|m| m.len() > MAX_MEMBER_NAME) {
            return refuse(format!(
                "a member list of group {group:?} names a member in more than \
                 {MAX_MEMBER_NAME} bytes"
            ));
        }
        let (lists, others) = self
            .lists(group)
            .filter(|(b, _)| *b != broker)
            .fold((0, 0), |(l, n), (_, m)| (l + 1, n + m.len()));
        if !known && lists >= MAX_MEMBER_LISTS {
            return refuse(format!(
                "group {group:?} has member lists from {MAX_MEMBER_LISTS} brokers already"
            ));
        }
        if others + members.len() > MAX_GROUP_MEMBERS {
            return refuse(format!(
                "{} members of group {group:?} would be listed, more than {MAX_GROUP_MEMBERS}",
                others + members.len()
            ));
        }
        self.members.insert(key, (version, members));
        Ok(true)
    }

    /// The members of `group` at every broker.
    pub(super) fn members(&self, group: &str) -> Vec<String> {
        self.lists(group)
            .flat_map(|(_, m)| m.iter().cloned())
            .collect()
    }

    /// How many members of `group` are listed at brokers other than `except`.
    pub(super) fn members_elsewhere(&self, group: &str, except: BrokerId) -> usize {
        self.lists(group)
            .filter(|(b, _)| *b != except)
            .map(|(_, m)| m.len())
            .sum()
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

    fn named(name: &str, generation: u64, removed: bool, creator: u32) -> GroupDecl {
        GroupDecl {
            name: name.into(),
            order: Order::Total,
            voters: vec![BrokerId(creator)],
            creator: BrokerId(creator),
            generation,
            removed,
            owner: String::new(),
        }
    }

    fn decl(generation: u64, removed: bool, creator: u32) -> GroupDecl {
        named("g", generation, removed, creator)
    }

    #[test]
    fn a_removal_wins_over_its_group_and_a_later_creation_wins_over_the_removal() {
        let mut c = Catalog::new(16);
        assert_eq!(c.merge_decl(decl(5, false, 1)), Ok(true));
        assert_eq!(
            c.merge_decl(decl(5, false, 1)),
            Ok(false),
            "the same again changes nothing"
        );
        assert_eq!(
            c.merge_decl(decl(4, false, 2)),
            Ok(false),
            "an older one loses"
        );
        assert_eq!(
            c.merge_members("g", BrokerId(1), 1, vec!["a@b1".into()]),
            Ok(true)
        );
        assert_eq!(c.members("g"), vec!["a@b1".to_owned()]);
        assert_eq!(c.merge_decl(decl(5, true, 1)), Ok(true));
        assert!(c.live("g").is_none());
        assert!(c.members("g").is_empty(), "a removed group has no members");
        assert_eq!(
            c.merge_decl(decl(5, false, 1)),
            Ok(false),
            "the tombstone stays"
        );
        assert_eq!(c.merge_decl(decl(6, false, 3)), Ok(true));
        assert_eq!(c.live("g").map(|d| d.creator), Some(BrokerId(3)));
    }

    #[test]
    fn a_later_epochs_sequencer_replaces_an_earlier_one() {
        let mut c = Catalog::new(16);
        assert!(!c.merge_sequencer("g", 1, BrokerId(1)), "unknown group");
        c.merge_decl(decl(1, false, 1)).unwrap();
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
        let mut c = Catalog::new(16);
        c.merge_decl(decl(1, false, 1)).unwrap();
        assert_eq!(
            c.merge_members("g", BrokerId(2), 2, vec!["x@b2".into()]),
            Ok(true)
        );
        assert_eq!(c.merge_members("g", BrokerId(2), 1, vec![]), Ok(false));
        assert_eq!(
            c.merge_members("h", BrokerId(2), 9, vec![]),
            Ok(false),
            "unknown group"
        );
        assert_eq!(c.members("g"), vec!["x@b2".to_owned()]);
    }

    #[test]
    fn no_more_live_groups_than_max_groups_are_taken() {
        let mut c = Catalog::new(2);
        assert_eq!(c.merge_decl(named("a", 1, false, 1)), Ok(true));
        assert_eq!(c.merge_decl(named("b", 1, false, 1)), Ok(true));
        let e = c.merge_decl(named("c", 1, false, 1)).unwrap_err();
        assert_eq!(e.limit, "max_groups");
        assert!(c.live("c").is_none());
        // A newer declaration of a group known is no group more.
        assert_eq!(c.merge_decl(named("b", 2, false, 2)), Ok(true));
        // A removal makes room; creating the removed name again takes it back.
        assert_eq!(c.merge_decl(named("a", 1, true, 1)), Ok(true));
        assert_eq!(c.merge_decl(named("c", 1, false, 1)), Ok(true));
        assert_eq!(c.live_count(), 2);
        assert_eq!(
            c.merge_decl(named("a", 3, false, 1)).unwrap_err().limit,
            "max_groups"
        );
        assert!(c.live("a").is_none(), "the tombstone is still there");
    }

    #[test]
    fn past_max_groups_tombstones_the_oldest_is_forgotten_and_cannot_come_back() {
        let mut c = Catalog::new(2);
        for (name, generation) in [("a", 10), ("b", 20)] {
            c.merge_decl(named(name, generation, false, 1)).unwrap();
            c.merge_decl(named(name, generation, true, 1)).unwrap();
        }
        // A third removal: "a" (the oldest) is forgotten.
        assert_eq!(c.merge_decl(named("c", 30, true, 1)), Ok(true));
        assert_eq!(c.decls().count(), 2);
        assert_eq!(c.generation("a"), 10, "new declarations must be newer");
        assert_eq!(
            c.merge_decl(named("a", 10, false, 1)),
            Ok(false),
            "a copy of the removed group does not come back"
        );
        assert_eq!(
            c.merge_decl(named("z", 5, true, 1)),
            Ok(false),
            "a removal older than every one kept is not kept"
        );
        assert_eq!(c.decls().count(), 2);
        assert_eq!(c.merge_decl(named("a", 40, false, 1)), Ok(true));
        assert!(c.live("a").is_some());
    }

    #[test]
    fn member_lists_past_the_bounds_are_refused() {
        let mut c = Catalog::new(16);
        c.merge_decl(decl(1, false, 1)).unwrap();
        let many = |n: usize| (0..n).map(|i| format!("m{i}@b")).collect::<Vec<_>>();
        assert_eq!(
            c.merge_members("g", BrokerId(1), 1, many(MAX_GROUP_MEMBERS - 1)),
            Ok(true)
        );
        assert_eq!(c.merge_members("g", BrokerId(2), 1, many(1)), Ok(true));
        let e = c.merge_members("g", BrokerId(3), 1, many(1)).unwrap_err();
        assert_eq!(e.limit, "group_members");
        assert_eq!(c.members_elsewhere("g", BrokerId(3)), MAX_GROUP_MEMBERS);
        assert_eq!(
            c.merge_members("g", BrokerId(2), 2, many(0)),
            Ok(true),
            "a shorter list of a broker listed is taken"
        );
        let long = vec!["x".repeat(MAX_MEMBER_NAME + 1)];
        assert!(c.merge_members("g", BrokerId(4), 1, long).is_err());
        let mut d = Catalog::new(16);
        d.merge_decl(decl(1, false, 1)).unwrap();
        for b in 0..MAX_MEMBER_LISTS {
            let b = BrokerId(u32::try_from(b).unwrap());
            assert_eq!(d.merge_members("g", b, 1, vec![]), Ok(true));
        }
        let b = BrokerId(u32::try_from(MAX_MEMBER_LISTS).unwrap());
        assert!(d.merge_members("g", b, 1, vec![]).is_err());
    }

    #[test]
    fn names_past_the_bounds_are_refused() {
        let mut c = Catalog::new(16);
        let (new, refused) = c.merge_names(vec![
            (BrokerId(1), "b1".into()),
            (BrokerId(2), "x".repeat(MAX_BROKER_NAME + 1)),
        ]);
        assert_eq!((new.len(), refused), (1, 1));
        // Broker 1 renamed, and one broker more than fit.
        let all: Vec<_> = (0..=u32::try_from(MAX_BROKER_NAMES).unwrap())
            .map(|i| (BrokerId(i), format!("n{i}")))
            .collect();
        let (new, refused) = c.merge_names(all);
        assert_eq!((new.len(), refused), (MAX_BROKER_NAMES, 1));
        let (new, refused) = c.merge_names(vec![(BrokerId(1), "renamed".into())]);
        assert_eq!(
            (new.len(), refused),
            (1, 0),
            "a known broker may be renamed"
        );
    }
}
