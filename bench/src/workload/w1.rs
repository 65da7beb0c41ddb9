//! Workload W1 (SIENA forwarding, after Carzaniga & Wolf's generator).
//!
//! Attribute names `x0..x{names-1}` drawn Zipf(1) (or uniformly); even-numbered names are
//! strings, odd-numbered names integers. Integer constraints are `=` 50%, `<` 25%, `>` 25%,
//! constants uniform in `[0, 100)`; string constraints are `=` over the 200-word vocabulary with
//! Zipf(1) frequencies. A filter has 1 to 6 constraints (10/40/30/10/5/5%) on distinct
//! attributes; an event has 1 to 8 attributes (5/10/10/20/20/20/10/5%), values drawn like the
//! constants. Filters go to one of `interfaces` destinations (64), uniformly.

use rand::Rng;

use palio_filter::{Event, Value};

use super::words::WORDS;
use super::zipf::Ranks;
use super::{Cmp, Const, GenConstraint, Subscription, attr_name};

/// The W1 parameters and the distributions built from them.
#[derive(Debug, Clone)]
pub struct W1 {
    /// How many attribute names there are.
    pub names: usize,
    /// Whether names are drawn Zipf(1) (else uniformly).
    pub zipf: bool,
    /// How many destinations (interfaces) filters are spread over.
    pub interfaces: u32,
    name_ranks: Ranks,
    word_ranks: Ranks,
    constraints_per_filter: Ranks,
    attrs_per_event: Ranks,
}

impl Default for W1 {
    fn default() -> Self {
        Self::new(100, true, 64)
    }
}

impl W1 {
    /// W1 over `names` attribute names (Zipf or uniform) and `interfaces` destinations.
    pub fn new(names: usize, zipf: bool, interfaces: u32) -> Self {
        // At least 8 names, so that an event's 8 distinct attributes always exist.
        let names = names.max(8);
        Self {
            names,
            zipf,
            interfaces: interfaces.max(1),
            name_ranks: if zipf {
                Ranks::zipf(names, 1.0)
            } else {
                Ranks::uniform(names)
            },
            word_ranks: Ranks::zipf(WORDS.len(), 1.0),
            constraints_per_filter: Ranks::from_weights([10.0, 40.0, 30.0, 10.0, 5.0, 5.0]),
            attrs_per_event: Ranks::from_weights([5.0, 10.0, 10.0, 20.0, 20.0, 20.0, 10.0, 5.0]),
        }
    }

    /// `k` distinct attribute numbers, in draw order.
    fn distinct_names(&self, rng: &mut impl Rng, k: usize) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::with_capacity(k);
        while out.len() < k {
            let a = u32::try_from(self.name_ranks.sample(rng)).expect("few names");
            if !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    fn word(&self, rng: &mut impl Rng) -> &'static str {
        WORDS[self.word_ranks.sample(rng)]
    }

    /// One filter.
    pub fn subscription(&self, rng: &mut impl Rng) -> Subscription {
        let k = self.constraints_per_filter.sample(rng) + 1;
        let constraints = self
            .distinct_names(rng, k)
            .into_iter()
            .map(|attr| {
                if attr % 2 == 0 {
                    GenConstraint {
                        attr,
                        op: Cmp::Eq,
                        value: Const::Str(self.word(rng)),
                    }
                } else {
                    let r: f64 = rng.random();
                    let op = if r < 0.5 {
                        Cmp::Eq
                    } else if r < 0.75 {
                        Cmp::Lt
                    } else {
                        Cmp::Gt
                    };
                    GenConstraint {
                        attr,
                        op,
                        value: Const::Int(rng.random_range(0..100)),
                    }
                }
            })
            .collect();
        Subscription {
            constraints,
            dest: rng.random_range(0..self.interfaces),
        }
    }

    /// One event.
    pub fn event(&self, rng: &mut impl Rng) -> Event {
        let k = self.attrs_per_event.sample(rng) + 1;
        self.distinct_names(rng, k)
            .into_iter()
            .map(|a| {
                let v = if a % 2 == 0 {
                    Value::from(self.word(rng))
                } else {
                    Value::Int(rng.random_range(0..100))
                };
                (attr_name(a), v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    use super::*;

    #[test]
    fn filters_and_events_follow_the_distributions() {
        let w = W1::default();
        let mut rng = SmallRng::seed_from_u64(5);
        let mut sizes = [0usize; 7];
        for _ in 0..10_000 {
            let s = w.subscription(&mut rng);
            sizes[s.constraints.len()] += 1;
            let mut attrs: Vec<u32> = s.constraints.iter().map(|c| c.attr).collect();
            attrs.sort_unstable();
            attrs.dedup();
            assert_eq!(attrs.len(), s.constraints.len(), "no repeated attribute");
            assert!(s.dest < 64);
            for c in &s.constraints {
                match c.value {
                    Const::Str(_) => assert!(c.attr % 2 == 0 && c.op == Cmp::Eq),
                    Const::Int(v) => assert!(c.attr % 2 == 1 && (0..100).contains(&v)),
                }
            }
        }
        // 40% of filters have two constraints.
        assert!((3_700..4_300).contains(&sizes[2]), "{sizes:?}");
        let ev = w.event(&mut rng);
        assert!((1..=8).contains(&ev.len()));
    }
}
