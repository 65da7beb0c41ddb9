//! Palio's filter language.
//!
//! Palio routes notifications by their content. This crate holds everything about content:
//!
//! - [`Value`], [`AttrName`] and [`Event`]: the typed attributes of a notification (a CloudEvent's
//!   context attributes and extensions).
//! - [`Expr`]: a parsed [CESQL v1] expression with CESQL's full semantics, including its
//!   result-plus-errors evaluation ([`Expr::evaluate`]).
//! - [`Filter`]: an expression used as a subscription or advertisement. An event *matches* a filter
//!   when the expression evaluates to `true` with no error (CESQL §1.2). A filter also has a
//!   [`Routable`] form: a disjunction of SIENA conjunctions of `attribute op constant` constraints
//!   that matches at least every event the filter matches, and says whether it is exact.
//! - Relations on filters, each *sound*: [`Filter::covers`] (every event matching one matches the
//!   other), [`Filter::intersects`] (an advertisement and a subscription may share an event) and
//!   [`Filter::covers_event`].
//! - [`Expr::check_cost`]: a static bound on the work of one evaluation, checked against a
//!   [`CostBudget`] when a client subscribes. Evaluation itself is bounded too: functions never
//!   build a string over [`MAX_BUILT_STRING`], and `LIKE` runs in time linear in its text.
//! - [`Index`]: given many (filter, destination) entries and an event, the destinations whose
//!   filters match, exactly, with incremental insert and remove.
//!
//! Nothing here does I/O or reads a clock: the topology crate and the broker build on it.
//!
//! ```
//! use palio_filter::{Event, Filter};
//!
//! let filter = Filter::new("type = 'alarm' AND level > 2")?;
//! let event = Event::new().with("type", "alarm")?.with("level", 3)?;
//! assert!(filter.matches(&event));
//! assert!(filter.routable().is_exact());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! [CESQL v1]: https://github.com/cloudevents/spec/blob/main/cesql/spec.md

#![warn(missing_docs)]

mod ast;
mod cost;
mod error;
mod eval;
mod event;
mod functions;
mod index;
mod normalize;
mod parser;
mod relations;
mod routable;
mod value;

use std::fmt;

pub use cost::{Cost, CostBudget, CostError, DEFAULT_COST_BUDGET, DEFAULT_MAX_INPUT_BYTES};
pub use error::{ErrorKind, EvalError, FilterError, ParseError};
pub use event::{Event, EventError};
pub use functions::MAX_BUILT_STRING;
pub use index::{EntryId, Index, IndexStats, Scratch};
pub use routable::{Conjunction, Constraint, IntOp, Predicate, Routable, StrOp};
pub use value::{AttrName, InvalidAttrName, MAX_ATTR_NAME_LEN, Type, Value, parse_bool, parse_int};

/// Bounds on what the parser accepts, so that no expression can exhaust a broker.
///
/// Each bound exceeded is a [`ParseError`] naming the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest expression, in bytes. Default 16 KiB: far above any hand-written filter, small
    /// enough that a broker holding 100k of them stays within memory.
    pub max_len: usize,
    /// Deepest nesting of sub-expressions (operators and calls: the height of the syntax tree).
    /// Parentheses add no level; the parser's recursion through them is bounded at twice this,
    /// so the fully parenthesised [`Expr::canonical`] text always parses back. Default 64:
    /// the parser and evaluator recurse, and 64 levels keep the stack use bounded on any thread.
    /// Raising it far (into the thousands) risks overflowing a 2 MiB thread stack.
    pub max_depth: usize,
    /// Most elements in one `IN (...)` list. Default 1024.
    pub max_in_list: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_len: 16 * 1024,
            max_depth: 64,
            max_in_list: 1024,
        }
    }
}

/// A parsed CESQL expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Expr {
    /// The source text, kept for display and for forwarding to other brokers.
    source: String,
    /// The syntax tree.
    root: ast::Node,
}

impl Expr {
    /// Parses `source` within the default [`Limits`].
    pub fn parse(source: &str) -> Result<Self, ParseError> {
        Self::parse_with_limits(source, &Limits::default())
    }

    /// Parses `source` within `limits`.
    pub fn parse_with_limits(source: &str, limits: &Limits) -> Result<Self, ParseError> {
        let root = parser::parse(source, limits)?;
        Ok(Self {
            source: source.to_owned(),
            root,
        })
    }

    /// The source text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The expression as parsed, fully parenthesised, keywords uppercase: shows how precedence
    /// grouped the source (CESQL gives AND, OR and XOR one precedence, left to right).
    pub fn canonical(&self) -> String {
        self.root.to_string()
    }

    /// Evaluates the expression in CESQL's complete-evaluation mode: the value together with
    /// every error raised on the way (§3.3, §4.1).
    pub fn evaluate(&self, event: &Event) -> Evaluation {
        eval::evaluate(&self.root, event)
    }

    /// Whether `event` passes this expression used as a filter: it evaluates to the boolean
    /// `true` with no error (CESQL §1.2). Stops at the first error.
    pub fn matches(&self, event: &Event) -> bool {
        eval::matches(&self.root, event)
    }

    /// The most work one evaluation can take, estimated by a static cost model, for events
    /// whose attribute values are at most `max_input_bytes` long.
    ///
    /// The units are about one byte of string read, compared or built, or one node visited:
    /// `type = 'alarm'` costs 8, `subject LIKE '%/alarm/%'` about as many units as its
    /// attribute has bytes. See [`CostBudget`] and [`Expr::check_cost`].
    pub fn cost(&self, max_input_bytes: usize) -> Cost {
        cost::estimate(&self.root, max_input_bytes)
    }

    /// Checks the expression's [`Expr::cost`] against `budget`: its cost, or an error saying
    /// how much it costs and which part costs most. A broker refuses a subscription whose
    /// filter is over its budget; the work is then never done.
    ///
    /// ```
    /// use palio_filter::{CostBudget, Expr};
    ///
    /// let budget = CostBudget::default();
    /// assert!(Expr::parse("type = 'alarm' AND subject LIKE '%/fire/%'")?.check_cost(&budget).is_ok());
    /// let bomb = format!("a IN ({}a)", "a, ".repeat(1000));
    /// let error = Expr::parse(&bomb)?.check_cost(&budget).unwrap_err();
    /// assert!(error.to_string().starts_with("filter too costly"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check_cost(&self, budget: &CostBudget) -> Result<Cost, CostError> {
        cost::check(self.cost(budget.max_input_bytes), budget)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The outcome of evaluating an expression: a value, and the errors raised (possibly none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The value. With errors, it is what CESQL prescribes (often the zero value of the type).
    pub value: Value,
    /// The errors raised, in evaluation order.
    pub errors: Vec<EvalError>,
}

impl Evaluation {
    /// The kind of the first error raised, if any.
    pub fn first_error(&self) -> Option<ErrorKind> {
        self.errors.first().map(|e| e.kind)
    }
}

/// An expression used as a subscription or advertisement filter, with its routable form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Filter {
    /// The full expression, evaluated at the subscriber's access broker.
    expr: Expr,
    /// The sound approximation brokers route on.
    routable: Routable,
}

impl Filter {
    /// Parses and compiles a filter within the default [`Limits`].
    pub fn new(source: &str) -> Result<Self, FilterError> {
        Self::from_expr(Expr::parse(source)?)
    }

    /// Compiles a parsed expression. Fails if the expression calls a function that does not
    /// exist, since such a filter could never match.
    pub fn from_expr(expr: Expr) -> Result<Self, FilterError> {
        functions::check_calls(&expr.root)?;
        let routable = normalize::routable(&expr.root);
        Ok(Self { expr, routable })
    }

    /// The expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The source text.
    pub fn source(&self) -> &str {
        self.expr.source()
    }

    /// The routable form.
    pub fn routable(&self) -> &Routable {
        &self.routable
    }

    /// Checks the filter's work per evaluation against `budget` (see [`Expr::check_cost`]).
    /// Call it when a client subscribes: a filter over the budget is refused, with an error
    /// naming its costliest part.
    pub fn check_cost(&self, budget: &CostBudget) -> Result<Cost, CostError> {
        self.expr.check_cost(budget)
    }

    /// Whether `event` passes the filter (see [`Expr::matches`]).
    pub fn matches(&self, event: &Event) -> bool {
        // An exact routable form is cheaper to check than the expression tree.
        if self.routable.is_exact() {
            self.routable.matches(event)
        } else {
            self.expr.matches(event)
        }
    }

    /// Whether every event matching `other` matches `self`. Sound: `true` only when proven.
    pub fn covers(&self, other: &Filter) -> bool {
        self.expr.root == other.expr.root
            || (self.routable.is_exact() && self.routable.covers(&other.routable))
    }

    /// Whether some event may match both `self` (say, an advertisement) and `other` (say, a
    /// subscription). Sound: `false` only when proven disjoint.
    pub fn intersects(&self, other: &Filter) -> bool {
        self.routable.intersects(&other.routable)
    }

    /// Whether this filter, as an advertisement, covers the notification `event`: the event is
    /// one of those the publisher declared. Same as [`Filter::matches`].
    pub fn covers_event(&self, event: &Event) -> bool {
        self.matches(event)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl std::str::FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}
