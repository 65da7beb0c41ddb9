//! CESQL's built-in functions (§3.5) and their dispatch table.
//!
//! A function is found by its (uppercased) name and its arity; `SUBSTRING` has two overloads,
//! `CONCAT` and `CONCAT_WS` are variadic. Each entry declares its parameter types and return
//! type; the evaluator casts every argument to its parameter type before the call (a failed cast
//! is a cast error and the argument becomes its type's zero value), and returns the zero value of
//! the return type when an argument's own evaluation failed. So the implementations here only see
//! arguments of the declared types, and each reports its own failures together with the value
//! CESQL prescribes for them (e.g. `LEFT('abc', -2)` is `'abc'` with a functionEvaluation error).
//!
//! Every string a function returns is at most [`MAX_BUILT_STRING`] bytes, checked before it is
//! built ([`strings`]), and each entry declares the [`Work`] it may do, from which the cost
//! model ([`crate::cost`]) bounds a call's work.
//!
//! Besides CESQL's built-ins, Palio has two extensions, which do not change the meaning of any
//! CESQL expression (a CESQL engine would report them as missing functions):
//!
//! - `IS_INT(x)`: whether `INT(x)` succeeds, i.e. `x` is an integer, a boolean, or a string that
//!   is a base-10 32-bit integer. Lets a filter test a cast without raising an error.
//! - `IS_BOOL(x)`: whether `BOOL(x)` succeeds, i.e. `x` is a boolean, an integer, or the string
//!   `true` or `false` in any letter case.

mod strings;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::ast::Node;
use crate::error::{ErrorKind, FilterError};
use crate::value::{Type, Value};

pub use strings::MAX_BUILT_STRING;

/// An argument value: borrowed from the event or the tree where possible.
pub(crate) type Arg<'a> = Cow<'a, Value>;

/// A parameter type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// Cast to this type before the call.
    Of(Type),
    /// Any value, uncast (the casting functions do their own, explicit cast).
    Any,
}

/// A function's own failure: the value it returns, and the error it raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) value: Value,
    pub(crate) kind: ErrorKind,
    pub(crate) message: String,
}

/// What a function implementation returns.
pub(crate) type Outcome = Result<Value, Failure>;

/// One built-in function (one overload).
pub(crate) struct Builtin {
    /// The name, uppercase.
    pub(crate) name: &'static str,
    /// The fixed parameters.
    pub(crate) params: &'static [Param],
    /// For a variadic function, the type of any further arguments.
    pub(crate) rest: Option<Param>,
    /// The return type (its zero value is the result when an argument failed).
    pub(crate) ret: Type,
    /// The implementation, given arguments already cast to the parameter types.
    pub(crate) apply: fn(&[Arg<'_>]) -> Outcome,
    /// The most work the implementation does, for the cost model.
    pub(crate) work: Work,
}

/// The most work a built-in does, in terms of its arguments' lengths, for the cost model
/// ([`crate::cost`]). Casting the arguments to the parameter types is counted there, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Work {
    /// A few steps, whatever the arguments (`ABS`, `BOOL`, `IS_BOOL`: an explicit Boolean cast
    /// compares at most five bytes).
    Constant,
    /// Reads its first argument once (`LENGTH` counts characters, `INT` and `IS_INT` parse).
    Read,
    /// Builds one string of all its arguments, after adding up their lengths (`CONCAT`); with
    /// `separated`, the first argument goes between each two of the others (`CONCAT_WS`).
    Join {
        /// Whether the first argument is a separator.
        separated: bool,
    },
    /// Maps letter case: reads its argument to size the result, stopping once that is over
    /// [`MAX_BUILT_STRING`] (a character maps to at least a third of its bytes, and to at most
    /// three times them), then builds it (`LOWER`, `UPPER`).
    CaseMap,
    /// Reads its first argument, then copies a part of it (`TRIM`, `LEFT`, `RIGHT`,
    /// `SUBSTRING`) or all of it (`STRING`).
    Slice,
}

impl Builtin {
    /// The type of the `i`-th argument.
    pub(crate) fn param(&self, i: usize) -> Param {
        self.params
            .get(i)
            .copied()
            .or(self.rest)
            .unwrap_or(Param::Any)
    }

    fn accepts(&self, arity: usize) -> bool {
        arity == self.params.len() || (self.rest.is_some() && arity > self.params.len())
    }
}

const STR: Param = Param::Of(Type::String);
const INT: Param = Param::Of(Type::Int);

/// Every built-in function.
static BUILTINS: &[Builtin] = &[
    Builtin {
        name: "LENGTH",
        params: &[STR],
        rest: None,
        ret: Type::Int,
        apply: strings::length,
        work: Work::Read,
    },
    Builtin {
        name: "CONCAT",
        params: &[],
        rest: Some(STR),
        ret: Type::String,
        apply: strings::concat,
        work: Work::Join { separated: false },
    },
    Builtin {
        name: "CONCAT_WS",
        params: &[STR],
        rest: Some(STR),
        ret: Type::String,
        apply: strings::concat_ws,
        work: Work::Join { separated: true },
    },
    Builtin {
        name: "LOWER",
        params: &[STR],
        rest: None,
        ret: Type::String,
        apply: strings::lower,
        work: Work::CaseMap,
    },
    Builtin {
        name: "UPPER",
        params: &[STR],
        rest: None,
        ret: Type::String,
        apply: strings::upper,
        work: Work::CaseMap,
    },
    Builtin {
        name: "TRIM",
        params: &[STR],
        rest: None,
        ret: Type::String,
        apply: strings::trim,
        work: Work::Slice,
    },
    Builtin {
        name: "LEFT",
        params: &[STR, INT],
        rest: None,
        ret: Type::String,
        apply: strings::left,
        work: Work::Slice,
    },
    Builtin {
        name: "RIGHT",
        params: &[STR, INT],
        rest: None,
        ret: Type::String,
        apply: strings::right,
        work: Work::Slice,
    },
    Builtin {
        name: "SUBSTRING",
        params: &[STR, INT],
        rest: None,
        ret: Type::String,
        apply: strings::substring,
        work: Work::Slice,
    },
    Builtin {
        name: "SUBSTRING",
        params: &[STR, INT, INT],
        rest: None,
        ret: Type::String,
        apply: strings::substring,
        work: Work::Slice,
    },
    Builtin {
        name: "ABS",
        params: &[INT],
        rest: None,
        ret: Type::Int,
        apply: abs,
        work: Work::Constant,
    },
    Builtin {
        name: "INT",
        params: &[Param::Any],
        rest: None,
        ret: Type::Int,
        apply: int_cast,
        work: Work::Read,
    },
    Builtin {
        name: "BOOL",
        params: &[Param::Any],
        rest: None,
        ret: Type::Bool,
        apply: bool_cast,
        work: Work::Constant,
    },
    Builtin {
        name: "STRING",
        params: &[Param::Any],
        rest: None,
        ret: Type::String,
        apply: strings::string_cast,
        work: Work::Slice,
    },
    Builtin {
        name: "IS_INT",
        params: &[Param::Any],
        rest: None,
        ret: Type::Bool,
        apply: |args| Ok(Value::Bool(args.first().and_then(|v| v.to_int()).is_some())),
        work: Work::Read,
    },
    Builtin {
        name: "IS_BOOL",
        params: &[Param::Any],
        rest: None,
        ret: Type::Bool,
        apply: |args| {
            Ok(Value::Bool(
                args.first().and_then(|v| v.to_bool_explicit()).is_some(),
            ))
        },
        work: Work::Constant,
    },
];

/// The built-in called `name` (uppercase) that takes `arity` arguments.
pub(crate) fn lookup(name: &str, arity: usize) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|f| f.name == name && f.accepts(arity))
}

/// Checks that every call in the tree names a built-in function with a matching arity.
pub(crate) fn check_calls(node: &Node) -> Result<(), FilterError> {
    match node {
        Node::Literal(_) | Node::Attr(_) | Node::Exists(_) => Ok(()),
        Node::Unary { arg, .. } | Node::Like { arg, .. } => check_calls(arg),
        Node::Binary { lhs, rhs, .. } => {
            check_calls(lhs)?;
            check_calls(rhs)
        }
        Node::In { arg, set, .. } => {
            check_calls(arg)?;
            set.iter().try_for_each(check_calls)
        }
        Node::Call { name, args } => {
            if lookup(name, args.len()).is_none() {
                return Err(FilterError::UnknownFunction {
                    name: name.clone(),
                    arity: args.len(),
                });
            }
            args.iter().try_for_each(check_calls)
        }
    }
}

/// Argument `i` as a string (it was cast already, so this borrows).
fn string<'v>(args: &'v [Arg<'_>], i: usize) -> Cow<'v, str> {
    args.get(i)
        .map_or(Cow::Borrowed(""), |v| v.to_string_value())
}

/// Argument `i` as an integer (it was cast already).
fn int(args: &[Arg<'_>], i: usize) -> i32 {
    args.get(i).and_then(|v| v.to_int()).unwrap_or(0)
}

fn abs(args: &[Arg<'_>]) -> Outcome {
    let x = int(args, 0);
    x.checked_abs().map(Value::Int).ok_or_else(|| Failure {
        value: Value::Int(i32::MAX),
        kind: ErrorKind::Math,
        message: format!("ABS({x}) overflows a 32-bit integer"),
    })
}

fn cast_failure(value: Value, arg: Option<&Arg<'_>>, ty: Type) -> Failure {
    let shown = arg.map_or_else(String::new, |v| v.to_string());
    Failure {
        value,
        kind: ErrorKind::Cast,
        message: format!("cannot cast {shown} to {ty}"),
    }
}

fn int_cast(args: &[Arg<'_>]) -> Outcome {
    let arg = args.first();
    arg.and_then(|v| v.to_int())
        .map(Value::Int)
        .ok_or_else(|| cast_failure(Value::Int(0), arg, Type::Int))
}

fn bool_cast(args: &[Arg<'_>]) -> Outcome {
    let arg = args.first();
    arg.and_then(|v| v.to_bool_explicit())
        .map(Value::Bool)
        .ok_or_else(|| cast_failure(Value::Bool(false), arg, Type::Bool))
}
