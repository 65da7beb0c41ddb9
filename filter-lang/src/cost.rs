//! The static cost model: a bound on the work one evaluation of an expression can take, and
//! the budget a subscription's filter must fit in.
//!
//! [`crate::Limits`] bound the source, the nesting and the lists: the stack and the tree, not
//! the work. The work grows with the strings an expression reads and builds: `a LIKE '%x%'`
//! scans `a`, `a IN (b, b, …)` compares `a` with `b` a thousand times, and a thousand such
//! clauses fit in 16 KiB. Evaluated against every event, one such filter stalls a broker.
//!
//! The model walks the tree once and adds up, for every node, the most work evaluating it can
//! take, in *units* of about one byte read, compared or built, or one node visited. It knows
//! how long a value can be: a literal's own length, at most [`CostBudget::max_input_bytes`]
//! for an attribute, at most [`MAX_BUILT_STRING`] for a string a function built, 11 bytes for
//! an integer and 5 for a boolean cast to a string. Every node costs 1, and on top of that:
//!
//! - `x = y`, `x != y`: the cast of `x` to `y`'s type and the comparison read at most `x`, and
//!   at most `y` when it is a string literal: `len(x)`, or the smaller of the two.
//! - `x IN (…)`: each element is cast to `x`'s type and compared: the elements' lengths.
//! - `< <= > >=`, arithmetic, unary `-`: parsing a string operand as an integer reads it: the
//!   operands' lengths. `AND`, `OR`, `XOR`, `NOT` and `EXISTS`: nothing more.
//! - `x LIKE p`: [`like::cost`](crate::eval::like::cost), linear in `len(x)`.
//! - A function call: the lengths of the arguments cast to Integer, then what its
//!   [`Work`] declares (reading its argument, building at most [`MAX_BUILT_STRING`]).
//!
//! It assumes every node is evaluated (no `AND`/`OR` short-circuit, no error stopping early),
//! so the sum bounds the work of any evaluation, up to a constant factor per unit; the tests
//! check it against the LIKE matcher's own step count and against the strings functions build.
//! A broker refuses, when a client subscribes, a filter over its [`CostBudget`].

#[cfg(test)]
mod tests;

use std::fmt;

use crate::ast::{BinaryOp, Node, UnaryOp};
use crate::eval::like;
use crate::functions::{self, MAX_BUILT_STRING, Param, Work};
use crate::value::{Type, Value};

/// The default [`CostBudget::max_units`]: 4 Mi units, 64 full passes over a 64 KiB attribute.
///
/// Ordinary subscriptions cost from tens of units (`type = 'alarm'`) to a few hundred thousand
/// (a dozen clauses that parse, scan or map attributes: 450 thousand for the costliest in the
/// tests); no CESQL conformance case costs more than one attribute read, about 64 Ki units.
/// Filter bombs that fit the parser's limits cost from 13 Mi units up. 4 Mi units of string
/// work take on the order of a millisecond.
pub const DEFAULT_COST_BUDGET: u64 = 4 << 20;

/// The default [`CostBudget::max_input_bytes`]: 64 KiB, the event size CloudEvents
/// intermediaries must forward (as [`MAX_BUILT_STRING`]).
pub const DEFAULT_MAX_INPUT_BYTES: usize = 64 * 1024;

/// Bytes of an integer cast to a string, at most (`-2147483648`).
const INT_LEN: u64 = 11;

/// Bytes of a boolean cast to a string, at most (`false`).
const BOOL_LEN: u64 = 5;

/// Characters of an expression shown in a [`CostError`].
const SHOWN_CHARS: usize = 60;

/// What one evaluation of a filter may cost ([`crate::Expr::check_cost`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostBudget {
    /// The most work units one evaluation may take. Default [`DEFAULT_COST_BUDGET`].
    pub max_units: u64,
    /// The longest attribute value the model assumes, in bytes. Default
    /// [`DEFAULT_MAX_INPUT_BYTES`]. The work of reading attributes grows with their real
    /// length: a broker that accepts longer ones may raise this, and `max_units` with it.
    pub max_input_bytes: usize,
}

impl Default for CostBudget {
    fn default() -> Self {
        Self {
            max_units: DEFAULT_COST_BUDGET,
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
        }
    }
}

/// The most work one evaluation of an expression can take, as estimated by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// The total, in units.
    units: u64,
    /// The node that costs most on its own (not counting its operands), shown, and its units.
    costliest: Option<(String, u64)>,
}

impl Cost {
    /// The total, in work units.
    pub fn units(&self) -> u64 {
        self.units
    }

    /// The part of the expression that costs most on its own (its operands not included),
    /// shortened for display, with its units.
    pub fn costliest(&self) -> Option<(&str, u64)> {
        self.costliest.as_ref().map(|(s, u)| (s.as_str(), *u))
    }
}

/// A filter whose estimated work per evaluation is over the budget.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "filter too costly: up to {units} work units per evaluation, over the budget of {budget}; \
     the costliest part is {part} ({part_units} units)"
)]
pub struct CostError {
    /// The estimated work, in units.
    pub units: u64,
    /// The budget it exceeds.
    pub budget: u64,
    /// The part of the expression that costs most on its own, shortened for display: e.g.
    /// `LIKE pattern '%a%b%' on a` or `CONCAT(a, a, a, …)`.
    pub part: String,
    /// That part's own units.
    pub part_units: u64,
}

/// The cost of evaluating `root` with attributes of at most `max_input_bytes`.
pub(crate) fn estimate(root: &Node, max_input_bytes: usize) -> Cost {
    let mut model = Model {
        input: to_units(max_input_bytes),
        costliest: None,
    };
    let units = model.node(root).work;
    Cost {
        units,
        costliest: model.costliest.map(|(units, node)| (describe(node), units)),
    }
}

/// `cost` against `budget`.
pub(crate) fn check(cost: Cost, budget: &CostBudget) -> Result<Cost, CostError> {
    if cost.units <= budget.max_units {
        return Ok(cost);
    }
    let (part, part_units) = cost.costliest.unwrap_or_default();
    Err(CostError {
        units: cost.units,
        budget: budget.max_units,
        part,
        part_units,
    })
}

/// A length in units (saturating; no length is near 2^64).
fn to_units(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The estimate of one sub-expression.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    /// Units to evaluate it, operands included.
    work: u64,
    /// The most bytes its value has, cast to a string.
    len: u64,
}

/// One walk over a tree.
struct Model<'a> {
    /// [`CostBudget::max_input_bytes`], in units.
    input: u64,
    /// The node with the highest own units so far.
    costliest: Option<(u64, &'a Node)>,
}

impl<'a> Model<'a> {
    fn node(&mut self, node: &'a Node) -> Estimate {
        let (own, operands, len) = match node {
            Node::Literal(v) => (0, 0, value_len(v)),
            Node::Attr(_) => (0, 0, self.input),
            Node::Exists(_) => (0, 0, BOOL_LEN),
            Node::Unary { op, arg } => {
                let a = self.node(arg);
                match op {
                    UnaryOp::Not => (0, a.work, BOOL_LEN),
                    UnaryOp::Neg => (a.len, a.work, INT_LEN),
                }
            }
            Node::Binary { op, lhs, rhs } => {
                let (l, r) = (self.node(lhs), self.node(rhs));
                let operands = l.work.saturating_add(r.work);
                match op {
                    BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => (0, operands, BOOL_LEN),
                    BinaryOp::Eq | BinaryOp::Ne => (equality(l, rhs, r), operands, BOOL_LEN),
                    BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                        (l.len.saturating_add(r.len), operands, BOOL_LEN)
                    }
                    _ => (l.len.saturating_add(r.len), operands, INT_LEN),
                }
            }
            Node::Like { arg, pattern, .. } => {
                let a = self.node(arg);
                (like::cost(pattern, a.len), a.work, BOOL_LEN)
            }
            Node::In { arg, set, .. } => {
                let mut operands = self.node(arg).work;
                let mut own = 0u64;
                for element in set {
                    let e = self.node(element);
                    operands = operands.saturating_add(e.work);
                    own = own.saturating_add(e.len);
                }
                (own, operands, BOOL_LEN)
            }
            Node::Call { name, args } => {
                let estimates: Vec<Estimate> = args.iter().map(|a| self.node(a)).collect();
                let operands = estimates
                    .iter()
                    .map(|e| e.work)
                    .fold(0, u64::saturating_add);
                let (own, len) = call(name, &estimates);
                (own, operands, len)
            }
        };
        if self.costliest.is_none_or(|(units, _)| own > units) {
            self.costliest = Some((own, node));
        }
        Estimate {
            work: own.saturating_add(operands).saturating_add(1),
            len,
        }
    }
}

/// `x = y` casts `x` to `y`'s type and compares: it reads at most `x`, and compares at most
/// `y` when `y` is a string (so a string literal `y` bounds it too).
fn equality(x: Estimate, rhs: &Node, y: Estimate) -> u64 {
    match rhs {
        Node::Literal(Value::String(_)) => x.len.min(y.len),
        _ => x.len,
    }
}

/// The own units of calling `name` on arguments so estimated, and the length of its value.
fn call(name: &str, args: &[Estimate]) -> (u64, u64) {
    let Some(function) = functions::lookup(name, args.len()) else {
        // A missing function is reported before its arguments are evaluated.
        return (0, BOOL_LEN);
    };
    let built = to_units(MAX_BUILT_STRING);
    let len = |i: usize| args.get(i).map_or(0, |a| a.len);
    // Casting an argument to Integer parses it.
    let casts = (0..args.len())
        .filter(|&i| function.param(i) == Param::Of(Type::Int))
        .map(len)
        .fold(0, u64::saturating_add);
    let (work, out) = match function.work {
        Work::Constant => (0, 0),
        Work::Read => (len(0), 0),
        Work::Join { separated } => {
            let (parts, separators) = if separated {
                let n = to_units(args.len().saturating_sub(2));
                (args.get(1..).unwrap_or_default(), len(0).saturating_mul(n))
            } else {
                (args, 0)
            };
            let total = parts
                .iter()
                .map(|a| a.len)
                .fold(separators, u64::saturating_add);
            let out = total.min(built);
            // Adding up the lengths, then building.
            (to_units(args.len()).saturating_add(out), out)
        }
        Work::CaseMap => {
            // Sizing reads until the result is over the bound: a character maps to at least
            // a third of its bytes, so at most 3 × the bound and one more character.
            let read = len(0).min(built.saturating_mul(3).saturating_add(4));
            let out = len(0).saturating_mul(3).min(built);
            (read.saturating_add(out), out)
        }
        Work::Slice => {
            // Finding the part reads the argument at most twice (SUBSTRING counts its
            // characters, then finds the range), then copies the part.
            let out = len(0).min(built);
            (len(0).saturating_mul(2).saturating_add(out), out)
        }
    };
    let len = match function.ret {
        Type::Int => INT_LEN,
        Type::Bool => BOOL_LEN,
        Type::String => out,
    };
    (casts.saturating_add(work), len)
}

/// The most bytes of `v` cast to a string.
fn value_len(v: &Value) -> u64 {
    match v {
        Value::String(s) => to_units(s.len()),
        Value::Int(_) => INT_LEN,
        Value::Bool(_) => BOOL_LEN,
    }
}

/// A node for a [`CostError`]: what it is, and its canonical text, shortened.
fn describe(node: &Node) -> String {
    match node {
        Node::Like { arg, pattern, .. } => {
            let pattern = Node::Literal(Value::String(pattern.source.clone()));
            format!("LIKE pattern {} on {}", Shown(&pattern), Shown(arg))
        }
        Node::In { arg, set, .. } => {
            format!("IN list of {} elements on {}", set.len(), Shown(arg))
        }
        node => Shown(node).to_string(),
    }
}

/// A node's canonical text, cut at [`SHOWN_CHARS`] characters.
struct Shown<'a>(&'a Node);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        match text.char_indices().nth(SHOWN_CHARS) {
            Some((cut, _)) => write!(f, "{}…", &text[..cut]),
            None => f.write_str(&text),
        }
    }
}
