//! Random overlays of brokers grouped into regions.
//!
//! Brokers `0..n` are split into `r` regions of consecutive ids. Each region is wired as a
//! random tree (every broker attaches to a uniformly chosen earlier broker of its region), and
//! each region after the first attaches, through its first broker, to a random broker of an
//! earlier region: the result is a tree in which every region is a connected subtree, the
//! shape of a deployment with a few brokers per site. A *mesh* adds `n / 2` extra links to
//! that tree, four in five within a region; a *ring* joins the brokers in id order.

use std::fmt;
use std::str::FromStr;

use crate::ids::BrokerId;
use crate::sim::rng::SimRng;
use crate::tree::Graph;

/// The shape of an overlay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OverlayKind {
    /// A random tree of regions (itself a tree).
    Tree,
    /// The tree plus `n / 2` extra links, mostly within regions.
    Mesh,
    /// A cycle in id order.
    Ring,
}

impl OverlayKind {
    /// The name used on command lines.
    pub fn as_str(self) -> &'static str {
        match self {
            OverlayKind::Tree => "tree",
            OverlayKind::Mesh => "mesh",
            OverlayKind::Ring => "ring",
        }
    }
}

impl fmt::Display for OverlayKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OverlayKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tree" => Ok(OverlayKind::Tree),
            "mesh" => Ok(OverlayKind::Mesh),
            "ring" => Ok(OverlayKind::Ring),
            _ => Err(format!(
                "unknown topology {s:?} (expected tree, mesh or ring)"
            )),
        }
    }
}

/// An overlay: the configured links between brokers, and each broker's region.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// The configured links.
    pub graph: Graph,
    /// The region of broker `i` at index `i`.
    pub region_of: Vec<u32>,
    /// The number of regions.
    pub regions: u32,
}

impl Overlay {
    /// A random overlay of `n ≥ 1` brokers in `regions ≥ 1` regions.
    pub fn generate(kind: OverlayKind, n: usize, regions: u32, rng: &mut SimRng) -> Self {
        let n = n.max(1);
        let regions = regions.clamp(1, n as u32);
        // Region of broker i: consecutive blocks of (nearly) equal size.
        let region_of: Vec<u32> = (0..n)
            .map(|i| ((i as u64 * u64::from(regions)) / n as u64) as u32)
            .collect();
        let first_of = |r: u32| region_of.iter().position(|&x| x == r).unwrap_or(0);
        let b = |i: usize| BrokerId(i as u32);
        let mut graph = Graph::new();
        graph.add_broker(b(0));
        if kind == OverlayKind::Ring {
            for i in 0..n {
                graph.add_link(b(i), b((i + 1) % n));
            }
        } else {
            for (i, &r) in region_of.iter().enumerate().skip(1) {
                let start = first_of(r);
                let parent = if i == start {
                    // First broker of a region: attach to a broker of an earlier region.
                    rng.index(start)
                } else {
                    start + rng.index(i - start)
                };
                graph.add_link(b(i), b(parent));
            }
            if kind == OverlayKind::Mesh && n > 2 {
                for _ in 0..n / 2 {
                    let x = rng.index(n);
                    let y = if rng.chance(0.8) {
                        let r = region_of[x];
                        let start = first_of(r);
                        let len = region_of.iter().filter(|&&q| q == r).count();
                        start + rng.index(len)
                    } else {
                        rng.index(n)
                    };
                    graph.add_link(b(x), b(y));
                }
            }
        }
        Self {
            graph,
            region_of,
            regions,
        }
    }

    /// The number of brokers.
    pub fn len(&self) -> usize {
        self.region_of.len()
    }

    /// Whether the overlay has no broker.
    pub fn is_empty(&self) -> bool {
        self.region_of.is_empty()
    }

    /// The region of `b`.
    pub fn region(&self, b: BrokerId) -> u32 {
        self.region_of.get(b.0 as usize).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlays_are_connected_with_contiguous_regions() {
        for seed in 0..50 {
            let mut rng = SimRng::new(seed);
            for kind in [OverlayKind::Tree, OverlayKind::Mesh, OverlayKind::Ring] {
                let n = 1 + rng.index(60);
                let o = Overlay::generate(kind, n, 1 + rng.below(6) as u32, &mut rng);
                assert_eq!(o.graph.len(), n);
                assert!(o.graph.is_connected(), "{kind} {n}");
                if kind == OverlayKind::Tree {
                    assert_eq!(o.graph.links().count(), n - 1);
                    // Each region is a connected subtree.
                    for r in 0..o.regions {
                        let mut sub = Graph::new();
                        for (x, y) in o.graph.links() {
                            if o.region(x) == r && o.region(y) == r {
                                sub.add_link(x, y);
                            }
                        }
                        for i in 0..n {
                            if o.region_of[i] == r {
                                sub.add_broker(BrokerId(i as u32));
                            }
                        }
                        assert!(sub.is_connected(), "region {r} of {n}");
                    }
                }
            }
        }
    }
}
