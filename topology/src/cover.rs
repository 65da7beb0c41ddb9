//! Finding covering filters fast: the keys a filter is filed under, and the per-link index of
//! forwarded filters that answers "does a forwarded filter cover this one?" and "which
//! forwarded filters does this one cover?".
//!
//! Covering is decided by [`Filter::covers`](palio_filter::Filter::covers); this module only
//! narrows the candidates, so that a subscription update costs a few hash lookups and a
//! bounded number of `covers` checks however many filters a link carries. It reasons about the
//! common shape, a single conjunction: if `g` covers `f`, every constraint of `g` is implied by
//! a constraint of `f` on the same attribute, and an equality can only be implied by the same
//! equality. So
//!
//! - a coverer `g` with equalities `E(g)` has `E(g) ⊆ E(f)`: filed under the digest of `E(g)`,
//!   it is found by looking up every subset of `E(f)` (of the first [`MAX_EQ_SUBSET`]
//!   equalities); a coverer without equalities is filed under its first attribute, which `f`
//!   must constrain too;
//! - a filter `h` covered by `f` contains every equality of `f`, so it is in the bucket of each
//!   of them (filed under all its equalities; the smallest bucket is scanned), and, when `f` has
//!   no equality, in the bucket of each attribute `f` constrains.
//!
//! Disjunctions and the match-all filter are "wide": kept in one list that every lookup scans.
//! Any covering relation these rules miss (casts between types, ranges that pin a value) is
//! only a missed saving: the filter is forwarded although it was covered. Digests are 64-bit
//! hashes with fixed keys, so the buckets are the same on every run; a collision only adds a
//! candidate that the `covers` check then rejects.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use palio_filter::{Filter, IntOp, Predicate, StrOp};

use crate::table::{FilterId, FilterTable};

/// Equalities of a filter whose subsets are looked up for coverers (2⁴ − 1 lookups at most).
pub(crate) const MAX_EQ_SUBSET: usize = 4;

fn digest(value: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// The covering-lookup keys of one filter, computed once when it is compiled.
#[derive(Debug, Clone)]
pub(crate) enum Shape {
    /// One conjunction with at least one constraint.
    Single {
        /// Digests of its equality constraints, ascending, without repeats.
        eqs: Box<[u64]>,
        /// Digests of the attributes it constrains, ascending, without repeats.
        attrs: Box<[u64]>,
        /// The bucket it is filed under as a potential coverer.
        own_sig: u64,
        /// The buckets where a filter covering it may be filed.
        coverer_sigs: Box<[u64]>,
        /// How many constraints it has (fewer is broader, roughly).
        constraints: usize,
    },
    /// A disjunction, the match-all filter, or the filter that matches nothing.
    Wide {
        /// Whether it matches every event (then it covers every filter).
        match_all: bool,
    },
}

impl Shape {
    /// The keys of `filter`, from its routable form.
    pub(crate) fn of(filter: &Filter) -> Self {
        let conjunctions = filter.routable().conjunctions();
        let [conj] = conjunctions else {
            return Shape::Wide { match_all: false };
        };
        if conj.constraints().is_empty() {
            return Shape::Wide {
                match_all: filter.routable().is_exact(),
            };
        }
        let mut eqs: Vec<u64> = Vec::new();
        let mut attrs: Vec<u64> = Vec::new();
        for c in conj.constraints() {
            let attr = c.attr.as_str();
            attrs.push(digest(("a", attr)));
            match &c.pred {
                Predicate::Str(StrOp::Eq, v) => eqs.push(digest(("s", attr, v))),
                Predicate::Int(IntOp::Eq, v) => eqs.push(digest(("i", attr, v))),
                Predicate::Bool(v) => eqs.push(digest(("b", attr, v))),
                _ => {}
            }
        }
        eqs.sort_unstable();
        eqs.dedup();
        attrs.sort_unstable();
        attrs.dedup();
        let own_sig = if eqs.is_empty() {
            // Constraints are sorted by attribute: the first constraint's attribute.
            digest(("noeq", attrs_first(conj)))
        } else {
            digest(("eq", &eqs))
        };
        let mut coverer_sigs = Vec::new();
        let head = &eqs[..eqs.len().min(MAX_EQ_SUBSET)];
        for mask in 1u32..(1 << head.len()) {
            let subset: Vec<u64> = (0..head.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| head[i])
                .collect();
            coverer_sigs.push(digest(("eq", &subset)));
        }
        let mut names: Vec<&str> = conj.constraints().iter().map(|c| c.attr.as_str()).collect();
        names.dedup();
        coverer_sigs.extend(names.into_iter().map(|a| digest(("noeq", a))));
        Shape::Single {
            eqs: eqs.into(),
            attrs: attrs.into(),
            own_sig,
            coverer_sigs: coverer_sigs.into(),
            constraints: conj.constraints().len(),
        }
    }

    /// Orders filters broadest first (match-all, disjunctions, then by constraint count), so
    /// that filling a link's table forwards coverers before what they cover.
    pub(crate) fn breadth_rank(&self) -> (u8, usize) {
        match self {
            Shape::Wide { match_all: true } => (0, 0),
            Shape::Wide { match_all: false } => (1, 0),
            Shape::Single { constraints, .. } => (2, *constraints),
        }
    }
}

fn attrs_first(conj: &palio_filter::Conjunction) -> &str {
    conj.constraints().first().map_or("", |c| c.attr.as_str())
}

/// The forwarded filters of one link, filed for covering lookups.
#[derive(Debug, Default)]
pub(crate) struct CoverIndex {
    /// Single-conjunction filters by their own signature (coverer lookups).
    by_sig: HashMap<u64, BTreeSet<FilterId>>,
    /// Single-conjunction filters under each of their equalities (coveree lookups).
    by_eq: HashMap<u64, BTreeSet<FilterId>>,
    /// Single-conjunction filters under each attribute they constrain (coveree lookups for
    /// filters without equalities).
    by_attr: HashMap<u64, BTreeSet<FilterId>>,
    /// Wide filters: scanned by every coverer lookup.
    wide: BTreeSet<FilterId>,
    /// Everything filed, for the match-all filter's coveree lookup.
    all: BTreeSet<FilterId>,
}

fn file(map: &mut HashMap<u64, BTreeSet<FilterId>>, key: u64, id: FilterId) {
    map.entry(key).or_default().insert(id);
}

fn unfile(map: &mut HashMap<u64, BTreeSet<FilterId>>, key: u64, id: FilterId) {
    if let Some(set) = map.get_mut(&key) {
        set.remove(&id);
        if set.is_empty() {
            map.remove(&key);
        }
    }
}

impl CoverIndex {
    /// Files `id`, whose keys are `shape`.
    pub(crate) fn insert(&mut self, id: FilterId, shape: &Shape) {
        self.all.insert(id);
        match shape {
            Shape::Single {
                eqs,
                attrs,
                own_sig,
                ..
            } => {
                file(&mut self.by_sig, *own_sig, id);
                for &e in eqs.iter() {
                    file(&mut self.by_eq, e, id);
                }
                for &a in attrs.iter() {
                    file(&mut self.by_attr, a, id);
                }
            }
            Shape::Wide { .. } => {
                self.wide.insert(id);
            }
        }
    }

    /// Unfiles `id`.
    pub(crate) fn remove(&mut self, id: FilterId, shape: &Shape) {
        self.all.remove(&id);
        match shape {
            Shape::Single {
                eqs,
                attrs,
                own_sig,
                ..
            } => {
                unfile(&mut self.by_sig, *own_sig, id);
                for &e in eqs.iter() {
                    unfile(&mut self.by_eq, e, id);
                }
                for &a in attrs.iter() {
                    unfile(&mut self.by_attr, a, id);
                }
            }
            Shape::Wide { .. } => {
                self.wide.remove(&id);
            }
        }
    }

    /// A filed filter that covers `id`, examining at most `limit` candidates.
    pub(crate) fn find_coverer(
        &self,
        id: FilterId,
        table: &FilterTable,
        limit: usize,
    ) -> Option<FilterId> {
        let f = table.filter(id);
        let singles = match f.shape() {
            Shape::Single { coverer_sigs, .. } => &coverer_sigs[..],
            Shape::Wide { .. } => &[],
        };
        singles
            .iter()
            .flat_map(|sig| self.by_sig.get(sig).into_iter().flatten())
            .chain(&self.wide)
            .take(limit)
            .copied()
            .find(|&g| g != id && table.filter(g).covers(f))
    }

    /// Filed filters that `id` covers, examining at most `limit` candidates, ascending.
    pub(crate) fn find_coverees(
        &self,
        id: FilterId,
        table: &FilterTable,
        limit: usize,
    ) -> Vec<FilterId> {
        let f = table.filter(id);
        let candidates: &BTreeSet<FilterId> = match f.shape() {
            Shape::Single { eqs, attrs, .. } => {
                let (map, keys) = if eqs.is_empty() {
                    (&self.by_attr, attrs)
                } else {
                    (&self.by_eq, eqs)
                };
                // Every coveree is in each of these buckets: scan the smallest.
                let Some(smallest) = keys
                    .iter()
                    .map(|k| map.get(k))
                    .min_by_key(|b| b.map_or(0, BTreeSet::len))
                else {
                    return Vec::new();
                };
                match smallest {
                    Some(set) => set,
                    None => return Vec::new(),
                }
            }
            Shape::Wide { match_all: true } => &self.all,
            Shape::Wide { match_all: false } => return Vec::new(),
        };
        candidates
            .iter()
            .take(limit)
            .copied()
            .filter(|&h| h != id && f.covers(table.filter(h)))
            .collect()
    }
}
