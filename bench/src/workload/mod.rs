//! Workload generators: subscriptions and events for the matching, routing and pub/sub
//! benchmarks (see `TARGETS.md`, workloads W1 and W2).
//!
//! A generator produces [`Subscription`]s — lists of `attribute op constant` constraints, which
//! render as CESQL text (the real path, compiled with `Filter::new`) or directly as a routable
//! form — and events. Everything is drawn from seeded [`SmallRng`]s: the same seed gives the same
//! workload (on one platform and `rand` version). Subscriptions and events come from separate
//! streams, so the events do not change with the number of subscriptions.

mod w1;
mod w2;
pub mod words;
pub mod zipf;

use std::fmt::Write as _;

use palio_filter::{AttrName, Conjunction, Constraint, Event, IntOp, Predicate, Routable, StrOp};
use rand::SeedableRng;
use rand::rngs::SmallRng;

pub use w1::W1;
pub use w2::W2;

/// A comparison in a generated constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `=`
    Eq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Cmp {
    fn symbol(self) -> &'static str {
        match self {
            Cmp::Eq => "=",
            Cmp::Lt => "<",
            Cmp::Le => "<=",
            Cmp::Gt => ">",
            Cmp::Ge => ">=",
        }
    }

    fn int_op(self) -> IntOp {
        match self {
            Cmp::Eq => IntOp::Eq,
            Cmp::Lt => IntOp::Lt,
            Cmp::Le => IntOp::Le,
            Cmp::Gt => IntOp::Gt,
            Cmp::Ge => IntOp::Ge,
        }
    }
}

/// A constant in a generated constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Const {
    /// An integer.
    Int(i32),
    /// A word from the vocabulary.
    Str(&'static str),
}

/// `x{attr} op value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenConstraint {
    /// The attribute's number: its name is `x{attr}`.
    pub attr: u32,
    /// The comparison.
    pub op: Cmp,
    /// The constant.
    pub value: Const,
}

/// A generated subscription: a conjunction of constraints, sent to `dest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The constraints, all to hold.
    pub constraints: Vec<GenConstraint>,
    /// The destination: an interface number (W1) or the subscription's own number (W2).
    pub dest: u32,
}

impl Subscription {
    /// The CESQL text, e.g. `x3 >= 10 AND x3 <= 500009 AND x7 = 'the'`.
    pub fn to_cesql(&self) -> String {
        let mut s = String::new();
        for (i, c) in self.constraints.iter().enumerate() {
            if i > 0 {
                s.push_str(" AND ");
            }
            let _ = write!(s, "x{} {} ", c.attr, c.op.symbol());
            let _ = match c.value {
                Const::Int(v) => write!(s, "{v}"),
                Const::Str(w) => write!(s, "'{w}'"),
            };
        }
        if s.is_empty() {
            s.push_str("TRUE");
        }
        s
    }

    /// The routable form the text means, built directly (exact).
    pub fn to_routable(&self) -> Routable {
        let cs = self
            .constraints
            .iter()
            .map(|c| {
                let pred = match (c.value, c.op) {
                    (Const::Int(v), op) => Predicate::Int(op.int_op(), v),
                    (Const::Str(w), _) => Predicate::Str(StrOp::Eq, w.to_owned()),
                };
                Constraint::new(attr_name(c.attr), pred)
            })
            .collect();
        Routable::new(vec![Conjunction::new(cs)], true)
    }
}

/// The name of attribute number `i`: `x{i}`.
pub fn attr_name(i: u32) -> AttrName {
    AttrName::new(format!("x{i}")).expect("x followed by digits is a valid attribute name")
}

/// A workload: how to draw subscriptions and events.
#[derive(Debug, Clone)]
pub enum Workload {
    /// SIENA forwarding (Carzaniga–Wolf).
    W1(W1),
    /// REIN / H-Tree intervals.
    W2(W2),
}

impl Workload {
    /// The workload's short name (`w1`, `w2`).
    pub fn name(&self) -> &'static str {
        match self {
            Workload::W1(_) => "w1",
            Workload::W2(_) => "w2",
        }
    }

    /// `n` subscriptions drawn with `seed`.
    pub fn subscriptions(&self, n: usize, seed: u64) -> Vec<Subscription> {
        let mut rng = SmallRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let i = u32::try_from(i).expect("fewer than 2^32 subscriptions");
                match self {
                    Workload::W1(w) => w.subscription(&mut rng),
                    Workload::W2(w) => w.subscription(&mut rng, i),
                }
            })
            .collect()
    }

    /// `n` events drawn with `seed` (from a stream distinct from the subscriptions').
    pub fn events(&self, n: usize, seed: u64) -> Vec<Event> {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        (0..n)
            .map(|_| match self {
                Workload::W1(w) => w.event(&mut rng),
                Workload::W2(w) => w.event(&mut rng),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use palio_filter::Filter;

    use super::*;

    #[test]
    fn text_and_routable_agree() {
        let sub = Subscription {
            constraints: vec![
                GenConstraint {
                    attr: 3,
                    op: Cmp::Ge,
                    value: Const::Int(10),
                },
                GenConstraint {
                    attr: 4,
                    op: Cmp::Eq,
                    value: Const::Str("the"),
                },
            ],
            dest: 0,
        };
        assert_eq!(sub.to_cesql(), "x3 >= 10 AND x4 = 'the'");
        let filter = Filter::new(&sub.to_cesql()).unwrap();
        let routable = sub.to_routable();
        for (x3, x4) in [(10, "the"), (9, "the"), (10, "of"), (11, "the")] {
            let ev = Event::new().with("x3", x3).unwrap().with("x4", x4).unwrap();
            assert_eq!(filter.matches(&ev), routable.matches(&ev), "{x3} {x4}");
        }
    }

    #[test]
    fn same_seed_same_workload() {
        let w = Workload::W1(W1::default());
        assert_eq!(w.subscriptions(50, 7), w.subscriptions(50, 7));
        assert_ne!(w.subscriptions(50, 7), w.subscriptions(50, 8));
        assert_eq!(w.events(20, 7), w.events(20, 7));
        let w = Workload::W2(W2::new(0.5));
        assert_eq!(w.subscriptions(50, 1), w.subscriptions(50, 1));
        assert_eq!(w.events(5, 1), w.events(5, 1));
    }
}
