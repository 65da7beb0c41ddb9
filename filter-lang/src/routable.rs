//! The routable form of a filter: a disjunction of SIENA-style conjunctions.
//!
//! Brokers route on this form: it is what the matching index indexes and what covering and
//! intersection reason about. Every constraint means exactly what the corresponding CESQL
//! comparison means, casts included: `x = 5` holds for an attribute that is the integer 5, the
//! string `"+5"` or `"05"`, but not for `"abc"` (a cast error, which in a filter means no match).
//! Every constraint except [`Predicate::Exists`] therefore also requires the attribute to be
//! present and castable to the constant's type.

use std::fmt;

use crate::event::Event;
use crate::value::{AttrName, Value, write_quoted};

/// Comparison operators on integers (CESQL `=`, `!=`, `<`, `<=`, `>`, `>=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntOp {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl IntOp {
    /// Applies the operator to `lhs op rhs`.
    pub fn apply(self, lhs: i32, rhs: i32) -> bool {
        match self {
            IntOp::Eq => lhs == rhs,
            IntOp::Ne => lhs != rhs,
            IntOp::Lt => lhs < rhs,
            IntOp::Le => lhs <= rhs,
            IntOp::Gt => lhs > rhs,
            IntOp::Ge => lhs >= rhs,
        }
    }

    /// The operator's symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            IntOp::Eq => "=",
            IntOp::Ne => "!=",
            IntOp::Lt => "<",
            IntOp::Le => "<=",
            IntOp::Gt => ">",
            IntOp::Ge => ">=",
        }
    }
}

/// Operators on strings. CESQL orders only integers, so strings have no `<`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StrOp {
    /// Equal (case sensitive).
    Eq,
    /// Not equal.
    Ne,
    /// Starts with (`LIKE 'abc%'`).
    Prefix,
    /// Ends with (`LIKE '%abc'`).
    Suffix,
    /// Contains (`LIKE '%abc%'`).
    Contains,
}

impl StrOp {
    /// Applies the operator to `lhs op rhs`.
    pub fn apply(self, lhs: &str, rhs: &str) -> bool {
        match self {
            StrOp::Eq => lhs == rhs,
            StrOp::Ne => lhs != rhs,
            StrOp::Prefix => lhs.starts_with(rhs),
            StrOp::Suffix => lhs.ends_with(rhs),
            StrOp::Contains => lhs.contains(rhs),
        }
    }
}

/// What a constraint requires of one attribute's value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Predicate {
    /// The attribute is present, with any value.
    Exists,
    /// The value casts to an integer (CESQL `String -> Integer` / `Boolean -> Integer`) that
    /// satisfies `op` against the constant.
    Int(IntOp, i32),
    /// The value's string form (CESQL's cast to String, which never fails) satisfies `op`.
    Str(StrOp, String),
    /// The value casts implicitly to this boolean (`x = TRUE`; strings `"true"`/`"false"` in any
    /// case; integers do not cast implicitly).
    Bool(bool),
}

impl Predicate {
    /// Whether a present attribute with value `v` satisfies the predicate.
    pub fn matches_value(&self, v: &Value) -> bool {
        match self {
            Predicate::Exists => true,
            Predicate::Int(op, c) => v.to_int().is_some_and(|i| op.apply(i, *c)),
            Predicate::Str(op, c) => op.apply(&v.to_string_value(), c),
            Predicate::Bool(b) => v.to_bool() == Some(*b),
        }
    }
}

/// `attribute predicate`, e.g. `level > 2`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Constraint {
    /// The attribute constrained.
    pub attr: AttrName,
    /// What its value must satisfy.
    pub pred: Predicate,
}

impl Constraint {
    /// Builds a constraint.
    pub fn new(attr: AttrName, pred: Predicate) -> Self {
        Self { attr, pred }
    }

    /// Whether `event` satisfies the constraint (an absent attribute never does).
    pub fn matches(&self, event: &Event) -> bool {
        event
            .get(self.attr.as_str())
            .is_some_and(|v| self.pred.matches_value(v))
    }
}

impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.attr;
        match &self.pred {
            Predicate::Exists => write!(f, "EXISTS {a}"),
            Predicate::Int(op, c) => write!(f, "{a} {} {c}", op.symbol()),
            Predicate::Bool(b) => write!(f, "{a} = {}", if *b { "TRUE" } else { "FALSE" }),
            Predicate::Str(op, c) => {
                let (sym, pre, post) = match op {
                    StrOp::Eq => ("=", "", ""),
                    StrOp::Ne => ("!=", "", ""),
                    StrOp::Prefix => ("LIKE", "", "%"),
                    StrOp::Suffix => ("LIKE", "%", ""),
                    StrOp::Contains => ("LIKE", "%", "%"),
                };
                write!(f, "{a} {sym} ")?;
                if pre.is_empty() && post.is_empty() {
                    write_quoted(f, c)
                } else {
                    // Escape LIKE wildcards so the text is a valid pattern for the same set.
                    let escaped: String = c
                        .chars()
                        .flat_map(|ch| {
                            let esc = matches!(ch, '%' | '_');
                            esc.then_some('\\').into_iter().chain([ch])
                        })
                        .collect();
                    write_quoted(f, &format!("{pre}{escaped}{post}"))
                }
            }
        }
    }
}

/// A conjunction of constraints (a SIENA filter). No constraints means "every event".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Conjunction {
    /// Sorted by attribute, then predicate; no duplicates.
    constraints: Vec<Constraint>,
}

impl Conjunction {
    /// Builds a conjunction, sorting and de-duplicating the constraints.
    pub fn new(mut constraints: Vec<Constraint>) -> Self {
        constraints.sort();
        constraints.dedup();
        Self { constraints }
    }

    /// The constraints, sorted by attribute.
    pub fn constraints(&self) -> &[Constraint] {
        &self.constraints
    }

    /// Whether `event` satisfies every constraint.
    pub fn matches(&self, event: &Event) -> bool {
        self.constraints.iter().all(|c| c.matches(event))
    }
}

impl fmt::Display for Conjunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.constraints.is_empty() {
            return f.write_str("TRUE");
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if i > 0 {
                f.write_str(" AND ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The routable form of a filter: a disjunction of conjunctions.
///
/// It is *sound*: it matches at least every event the filter matches. When `exact` is true it
/// matches exactly those events; otherwise the access broker evaluates the full expression (the
/// *residual*) before delivering.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Routable {
    /// The disjuncts. Empty means the filter can match no event at all.
    conjunctions: Vec<Conjunction>,
    /// Whether the disjunction matches exactly the events the full expression matches.
    exact: bool,
}

impl Routable {
    /// Builds a routable form, sorting and de-duplicating the disjuncts.
    pub fn new(mut conjunctions: Vec<Conjunction>, exact: bool) -> Self {
        conjunctions.sort();
        conjunctions.dedup();
        Self {
            conjunctions,
            exact,
        }
    }

    /// The form that matches every event (used when nothing better is known).
    pub fn match_all(exact: bool) -> Self {
        Self::new(vec![Conjunction::default()], exact)
    }

    /// The form that matches no event (always exact).
    pub fn match_none() -> Self {
        Self::new(Vec::new(), true)
    }

    /// The disjuncts.
    pub fn conjunctions(&self) -> &[Conjunction] {
        &self.conjunctions
    }

    /// Whether this form is exactly the filter (no residual needed).
    pub fn is_exact(&self) -> bool {
        self.exact
    }

    /// Whether `event` satisfies some disjunct.
    pub fn matches(&self, event: &Event) -> bool {
        self.conjunctions.iter().any(|c| c.matches(event))
    }
}

impl fmt::Display for Routable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.conjunctions.is_empty() {
            return f.write_str("FALSE");
        }
        let many = self.conjunctions.len() > 1;
        for (i, c) in self.conjunctions.iter().enumerate() {
            if i > 0 {
                f.write_str(" OR ")?;
            }
            if many && c.constraints().len() > 1 {
                write!(f, "({c})")?;
            } else {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}
