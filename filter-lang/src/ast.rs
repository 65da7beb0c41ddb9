//! The abstract syntax tree of a parsed CESQL expression.
//!
//! The tree is crate-private: users hold an [`crate::Expr`], whose only way in is the parser, so
//! every tree here was produced from valid syntax within the [`crate::Limits`].

use std::fmt;

use crate::eval::like::Plan;
use crate::value::{AttrName, Value, write_quoted};

/// One node of an expression.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Node {
    /// A literal: `1`, `'abc'`, `TRUE`.
    Literal(Value),
    /// An attribute reference: `type`. Identifiers are case-insensitive and stored lowercased.
    Attr(AttrName),
    /// `EXISTS name`.
    Exists(AttrName),
    /// `NOT x` or `-x`.
    Unary { op: UnaryOp, arg: Box<Node> },
    /// `x op y` for comparison, arithmetic and logic operators.
    Binary {
        op: BinaryOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    /// `x [NOT] LIKE 'pattern'`: the pattern is always a string literal (§3.4.3). Boxed, so
    /// that a node stays small (48 bytes, not 216): trees are held per subscription, and the
    /// parser's and evaluator's recursion keeps nodes on the stack.
    Like {
        arg: Box<Node>,
        pattern: Box<LikePattern>,
        negated: bool,
    },
    /// `x [NOT] IN (y1, y2, ...)`, with at least one element.
    In {
        arg: Box<Node>,
        set: Vec<Node>,
        negated: bool,
    },
    /// A function call `NAME(args...)`. `name` is stored uppercased; whether the function exists
    /// is decided at evaluation (CESQL reports a missingFunction error then).
    Call { name: String, args: Vec<Node> },
}

/// Unary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum UnaryOp {
    /// `NOT x: Boolean -> Boolean`.
    Not,
    /// `-x: Integer -> Integer`.
    Neg,
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BinaryOp {
    And,
    Or,
    Xor,
    /// `=`
    Eq,
    /// `!=` and `<>`
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// A compiled LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct LikePattern {
    /// The pattern exactly as written, after string-literal unescaping (for display).
    pub(crate) source: String,
    /// The pattern as a sequence of pieces, with `\%` and `\_` already turned into literals.
    pub(crate) pieces: Vec<LikePiece>,
    /// How the evaluator matches it: the pieces split at `%` (a function of `pieces`).
    pub(crate) plan: Plan,
}

impl LikePattern {
    /// A pattern from its source text and its pieces (see [`crate::eval::like::compile`]).
    pub(crate) fn new(source: String, pieces: Vec<LikePiece>) -> Self {
        let plan = Plan::new(&pieces);
        Self {
            source,
            pieces,
            plan,
        }
    }
}

/// One piece of a LIKE pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum LikePiece {
    /// Characters that must appear exactly (consecutive literal characters are merged).
    Literal(String),
    /// `_`: exactly one character.
    AnyChar,
    /// `%`: zero or more characters (consecutive `%` are merged).
    AnyString,
}

impl UnaryOp {
    fn symbol(self) -> &'static str {
        match self {
            UnaryOp::Not => "NOT ",
            // A space keeps `-` from folding into a following integer literal when re-parsed:
            // `(- 0)` is negation applied to `0`, while `-0` is the literal itself.
            UnaryOp::Neg => "- ",
        }
    }
}

impl BinaryOp {
    fn symbol(self) -> &'static str {
        match self {
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Xor => "XOR",
            BinaryOp::Eq => "=",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Mod => "%",
        }
    }
}

/// Canonical text: every operation parenthesised, keywords uppercase, strings single-quoted.
/// It parses back to the same tree, and shows how precedence grouped the source.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Literal(v) => write!(f, "{v}"),
            Node::Attr(a) => write!(f, "{a}"),
            Node::Exists(a) => write!(f, "(EXISTS {a})"),
            Node::Unary { op, arg } => write!(f, "({}{arg})", op.symbol()),
            Node::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Node::Like {
                arg,
                pattern,
                negated,
            } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "({arg} {not}LIKE ")?;
                write_quoted(f, &pattern.source)?;
                f.write_str(")")
            }
            Node::In { arg, set, negated } => {
                let not = if *negated { "NOT " } else { "" };
                write!(f, "({arg} {not}IN (")?;
                write_list(f, set)?;
                f.write_str("))")
            }
            Node::Call { name, args } => {
                write!(f, "{name}(")?;
                write_list(f, args)?;
                f.write_str(")")
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, nodes: &[Node]) -> fmt::Result {
    for (i, n) in nodes.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{n}")?;
    }
    Ok(())
}
