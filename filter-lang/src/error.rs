//! Errors: CESQL's evaluation error kinds, parse errors with positions, and filter errors.

use std::fmt;

/// CESQL's error types (§3.3). Names match the conformance suite's `error` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The expression could not be parsed.
    Parse,
    /// A math operator failed (division by zero, overflow).
    Math,
    /// An implicit or explicit cast failed.
    Cast,
    /// A function that does not exist, or not with that arity, was called.
    MissingFunction,
    /// A function failed on its arguments.
    FunctionEvaluation,
    /// The expression addressed an attribute the event does not have.
    MissingAttribute,
    /// Any other error.
    Generic,
}

impl ErrorKind {
    /// The name the CESQL conformance suite and `palio filter eval` use.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Parse => "parse",
            ErrorKind::Math => "math",
            ErrorKind::Cast => "cast",
            ErrorKind::MissingFunction => "missingFunction",
            ErrorKind::FunctionEvaluation => "functionEvaluation",
            ErrorKind::MissingAttribute => "missingAttribute",
            ErrorKind::Generic => "generic",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One error raised while evaluating an expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct EvalError {
    /// What kind of error it is.
    pub kind: ErrorKind,
    /// A human-readable explanation.
    pub message: String,
}

impl EvalError {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// An expression that could not be parsed, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
pub struct ParseError {
    /// Byte offset in the source where the problem was found.
    pub offset: usize,
    /// 1-based line of `offset`.
    pub line: usize,
    /// 1-based column (in characters) of `offset`.
    pub column: usize,
    /// What is wrong, e.g. "expected ')' but found end of input".
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte `offset` of `src`, computing line and column.
    pub(crate) fn at(src: &str, offset: usize, message: impl Into<String>) -> Self {
        let offset = offset.min(src.len());
        let before = &src[..src.floor_char_boundary(offset)];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        Self {
            offset,
            line,
            column,
            message: message.into(),
        }
    }
}

/// A filter that cannot be used: it does not parse, or it can never match any event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// The expression does not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The expression calls a function that does not exist with that number of arguments.
    #[error("unknown function {name}/{arity}")]
    UnknownFunction {
        /// The function's name, uppercased (CESQL function names are case-insensitive).
        name: String,
        /// The number of arguments given.
        arity: usize,
    },
}
