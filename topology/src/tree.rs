//! The shared spanning tree that notifications and routing state travel on.
//!
//! # Why one shared tree
//!
//! SIENA's general peer-to-peer architecture routes each notification on a reverse-path tree
//! rooted at its publisher's broker: paths are shortest, but every broker needs a forwarding
//! decision per source (subscriptions must be propagated along every source's tree, multiplying
//! routing state and control traffic by the number of distinct trees through a link).
//!
//! Palio uses one spanning tree shared by all sources, as SIENA's hierarchical and acyclic
//! architectures do, but computed rather than configured: every broker runs the same
//! deterministic function over the same link-state database, so all agree on the tree once link
//! state has converged. What this buys: routing state is one table per tree link, and covering
//! works across all sources at once. What it costs: a notification between two brokers may
//! take a longer path than the shortest (at most twice the tree depth), and links near the root
//! carry more traffic. For the overlays Palio targets (tens to a thousand brokers wired as a few
//! regions) the state saving is what matters; per-source trees would be a later option for
//! overlays where latency between distant brokers dominates.
//!
//! # The construction
//!
//! A link counts only if both ends report it (a broker that died keeps claiming its links in
//! stale advertisements, but its neighbours stop claiming it). The tree spans the connected
//! component of the broker computing it; its root is the smallest broker id of that component,
//! and it is the breadth-first tree from the root that visits neighbours in ascending id order:
//! a shortest-path tree from the root, identical wherever it is computed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::ids::BrokerId;

/// An undirected graph of brokers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// Each broker's neighbours; symmetric.
    adjacency: BTreeMap<BrokerId, BTreeSet<BrokerId>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a broker with no links (no effect if present).
    pub fn add_broker(&mut self, b: BrokerId) {
        self.adjacency.entry(b).or_default();
    }

    /// Adds the link `a – b` (and both brokers). Self-links are ignored.
    pub fn add_link(&mut self, a: BrokerId, b: BrokerId) {
        if a == b {
            return;
        }
        self.adjacency.entry(a).or_default().insert(b);
        self.adjacency.entry(b).or_default().insert(a);
    }

    /// Removes the link `a – b`, keeping the brokers.
    pub fn remove_link(&mut self, a: BrokerId, b: BrokerId) {
        if let Some(n) = self.adjacency.get_mut(&a) {
            n.remove(&b);
        }
        if let Some(n) = self.adjacency.get_mut(&b) {
            n.remove(&a);
        }
    }

    /// Removes a broker and its links.
    pub fn remove_broker(&mut self, b: BrokerId) {
        if let Some(ns) = self.adjacency.remove(&b) {
            for n in ns {
                if let Some(set) = self.adjacency.get_mut(&n) {
                    set.remove(&b);
                }
            }
        }
    }

    /// Whether the graph has the link `a – b`.
    pub fn has_link(&self, a: BrokerId, b: BrokerId) -> bool {
        self.adjacency.get(&a).is_some_and(|n| n.contains(&b))
    }

    /// The brokers, ascending.
    pub fn brokers(&self) -> impl Iterator<Item = BrokerId> + '_ {
        self.adjacency.keys().copied()
    }

    /// The neighbours of `b`, ascending.
    pub fn neighbours(&self, b: BrokerId) -> impl Iterator<Item = BrokerId> + '_ {
        self.adjacency.get(&b).into_iter().flatten().copied()
    }

    /// The links, each once as `(smaller, larger)`, ascending.
    pub fn links(&self) -> impl Iterator<Item = (BrokerId, BrokerId)> + '_ {
        self.adjacency
            .iter()
            .flat_map(|(&a, ns)| ns.range(a..).map(move |&b| (a, b)))
    }

    /// The number of brokers.
    pub fn len(&self) -> usize {
        self.adjacency.len()
    }

    /// Whether the graph has no broker.
    pub fn is_empty(&self) -> bool {
        self.adjacency.is_empty()
    }

    /// The brokers connected to `from` (itself included), ascending.
    pub fn component(&self, from: BrokerId) -> BTreeSet<BrokerId> {
        let mut seen = BTreeSet::from([from]);
        let mut queue = VecDeque::from([from]);
        while let Some(b) = queue.pop_front() {
            for n in self.neighbours(b) {
                if seen.insert(n) {
                    queue.push_back(n);
                }
            }
        }
        seen
    }

    /// Whether every broker is reachable from every other.
    pub fn is_connected(&self) -> bool {
        self.brokers()
            .next()
            .is_none_or(|b| self.component(b).len() == self.len())
    }

    /// The spanning tree of the component of `member` (see the module docs).
    pub fn spanning_tree(&self, member: BrokerId) -> SpanningTree {
        let root = self.component(member).first().copied().unwrap_or(member);
        let mut parent = BTreeMap::from([(root, None)]);
        let mut queue = VecDeque::from([root]);
        while let Some(b) = queue.pop_front() {
            for n in self.neighbours(b) {
                if let std::collections::btree_map::Entry::Vacant(e) = parent.entry(n) {
                    e.insert(Some(b));
                    queue.push_back(n);
                }
            }
        }
        SpanningTree { root, parent }
    }
}

/// A spanning tree of one connected component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanningTree {
    /// The root: the smallest broker id of the component.
    root: BrokerId,
    /// Each member's parent (`None` for the root).
    parent: BTreeMap<BrokerId, Option<BrokerId>>,
}

impl SpanningTree {
    /// The tree of a lone broker.
    pub fn single(b: BrokerId) -> Self {
        Self {
            root: b,
            parent: BTreeMap::from([(b, None)]),
        }
    }

    /// The root.
    pub fn root(&self) -> BrokerId {
        self.root
    }

    /// Whether `b` is in the tree.
    pub fn contains(&self, b: BrokerId) -> bool {
        self.parent.contains_key(&b)
    }

    /// The members, ascending.
    pub fn members(&self) -> impl Iterator<Item = BrokerId> + '_ {
        self.parent.keys().copied()
    }

    /// The parent of `b` (`None` for the root and for non-members).
    pub fn parent(&self, b: BrokerId) -> Option<BrokerId> {
        self.parent.get(&b).copied().flatten()
    }

    /// The tree edges, each as `(child, parent)`, ascending by child.
    pub fn edges(&self) -> impl Iterator<Item = (BrokerId, BrokerId)> + '_ {
        self.parent.iter().filter_map(|(&c, &p)| p.map(|p| (c, p)))
    }

    /// The tree neighbours of `b` (parent and children), ascending.
    pub fn neighbours(&self, b: BrokerId) -> BTreeSet<BrokerId> {
        self.parent
            .iter()
            .filter_map(|(&c, &p)| match p {
                Some(p) if p == b => Some(c),
                _ if c == b => p,
                _ => None,
            })
            .collect()
    }

    /// The adjacency of the tree, for walking it.
    pub fn adjacency(&self) -> BTreeMap<BrokerId, Vec<BrokerId>> {
        let mut adj: BTreeMap<BrokerId, Vec<BrokerId>> =
            self.parent.keys().map(|&b| (b, Vec::new())).collect();
        for (c, p) in self.edges() {
            adj.entry(c).or_default().push(p);
            adj.entry(p).or_default().push(c);
        }
        for ns in adj.values_mut() {
            ns.sort_unstable();
        }
        adj
    }

    /// The next hop from `from` toward every other member: the tree neighbour of `from` on the
    /// path to it. Empty if `from` is not a member.
    pub fn next_hops(&self, from: BrokerId) -> BTreeMap<BrokerId, BrokerId> {
        let adj = self.adjacency();
        let mut hops = BTreeMap::new();
        let mut queue = std::collections::VecDeque::new();
        for &n in adj.get(&from).into_iter().flatten() {
            hops.insert(n, n);
            queue.push_back(n);
        }
        while let Some(b) = queue.pop_front() {
            let hop = hops[&b];
            for &n in adj.get(&b).into_iter().flatten() {
                if n != from && !hops.contains_key(&n) {
                    hops.insert(n, hop);
                    queue.push_back(n);
                }
            }
        }
        hops
    }

    /// The fewest tree links a notification published at `source` must cross to reach every
    /// broker in `targets`: the size of the smallest subtree joining them. Targets outside the
    /// tree are ignored.
    pub fn steiner_links(&self, source: BrokerId, targets: &BTreeSet<BrokerId>) -> usize {
        if !self.contains(source) {
            return 0;
        }
        // The joining subtree holds the edge from `b` to its parent iff the set has members both
        // below `b` and elsewhere: count the set's members whose path to the root crosses it.
        let set: BTreeSet<BrokerId> = targets
            .iter()
            .copied()
            .filter(|&t| self.contains(t))
            .chain(std::iter::once(source))
            .collect();
        let mut uses: BTreeMap<BrokerId, usize> = BTreeMap::new();
        for &t in &set {
            let mut b = t;
            while let Some(p) = self.parent(b) {
                *uses.entry(b).or_default() += 1;
                b = p;
            }
        }
        let members = set.len();
        uses.values().filter(|&&n| n < members).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(i: u32) -> BrokerId {
        BrokerId(i)
    }

    #[test]
    fn bfs_tree_from_smallest_id_of_component() {
        // 5 – 3 – 1 – 4, 3 – 4 (a triangle 3,1,4), and an isolated 0.
        let mut g = Graph::new();
        g.add_broker(b(0));
        g.add_link(b(5), b(3));
        g.add_link(b(3), b(1));
        g.add_link(b(1), b(4));
        g.add_link(b(3), b(4));
        let t = g.spanning_tree(b(5));
        assert_eq!(t.root(), b(1));
        assert!(!t.contains(b(0)));
        assert_eq!(t.parent(b(3)), Some(b(1)));
        assert_eq!(t.parent(b(4)), Some(b(1)));
        assert_eq!(t.parent(b(5)), Some(b(3)));
        assert_eq!(t.neighbours(b(1)), BTreeSet::from([b(3), b(4)]));
        assert_eq!(t.neighbours(b(3)), BTreeSet::from([b(1), b(5)]));
        // Every broker computes the same tree.
        assert_eq!(g.spanning_tree(b(4)), t);
    }

    #[test]
    fn next_hops_lead_along_the_tree() {
        // Path 0 – 1 – 2 – 3 with a branch 1 – 4.
        let mut g = Graph::new();
        for (x, y) in [(0, 1), (1, 2), (2, 3), (1, 4)] {
            g.add_link(b(x), b(y));
        }
        let t = g.spanning_tree(b(0));
        let hops = t.next_hops(b(2));
        assert_eq!(
            hops,
            BTreeMap::from([(b(0), b(1)), (b(1), b(1)), (b(3), b(3)), (b(4), b(1))])
        );
        assert!(t.next_hops(b(9)).is_empty());
    }

    #[test]
    fn steiner_links_counts_the_joining_subtree() {
        // Path 0 – 1 – 2 – 3 with a branch 1 – 4.
        let mut g = Graph::new();
        for (x, y) in [(0, 1), (1, 2), (2, 3), (1, 4)] {
            g.add_link(b(x), b(y));
        }
        let t = g.spanning_tree(b(0));
        let set = |v: &[u32]| v.iter().map(|&i| b(i)).collect::<BTreeSet<_>>();
        assert_eq!(t.steiner_links(b(3), &set(&[])), 0);
        assert_eq!(t.steiner_links(b(3), &set(&[3])), 0);
        assert_eq!(t.steiner_links(b(3), &set(&[4])), 3);
        assert_eq!(t.steiner_links(b(3), &set(&[4, 0])), 4);
        assert_eq!(t.steiner_links(b(2), &set(&[3, 4])), 3);
        assert_eq!(t.steiner_links(b(0), &set(&[0, 1])), 1);
    }
}
