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
//! Besides CESQL's built-ins, Palio has two extensions, which do not change the meaning of any
//! CESQL expression (a CESQL engine would report them as missing functions):
//!
//! - `IS_INT(x)`: whether `INT(x)` succeeds, i.e. `x` is an integer, a boolean, or a string that
//!   is a base-10 32-bit integer. Lets a filter test a cast without raising an error.
//! - `IS_BOOL(x)`: whether `BOOL(x)` succeeds, i.e. `x` is a boolean, an integer, or the string
//!   `true` or `false` in any letter case.

use std::borrow::Cow;

use crate::ast::Node;
use crate::error::{ErrorKind, FilterError};
use crate::value::{Type, Value};

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
        apply: length,
    },
    Builtin {
        name: "CONCAT",
        params: &[],
        rest: Some(STR),
        ret: Type::String,
        apply: concat,
    },
    Builtin {
        name: "CONCAT_WS",
        params: &[STR],
        rest: Some(STR),
        ret: Type::String,
        apply: concat_ws,
    },
    Builtin {
        name: "LOWER",
        params: &[STR],
        rest: None,
        ret: Type::String,
        apply: |args| Ok(Value::String(string(args, 0).to_lowercase())),
    },
    Builtin {
        name: "UPPER",
        params: &[STR],
        rest: None,
        ret: Type::String,
        apply: |args| Ok(Value::String(string(args, 0).to_uppercase())),
    },
    Builtin {
        name: "TRIM",
        params: &[STR],
        rest: None,
        ret: Type::String,
        // `str::trim` removes exactly the Unicode White_Space characters.
        apply: |args| Ok(Value::from(string(args, 0).trim())),
    },
    Builtin {
        name: "LEFT",
        params: &[STR, INT],
        rest: None,
        ret: Type::String,
        apply: left,
    },
    Builtin {
        name: "RIGHT",
        params: &[STR, INT],
        rest: None,
        ret: Type::String,
        apply: right,
    },
    Builtin {
        name: "SUBSTRING",
        params: &[STR, INT],
        rest: None,
        ret: Type::String,
        apply: substring,
    },
    Builtin {
        name: "SUBSTRING",
        params: &[STR, INT, INT],
        rest: None,
        ret: Type::String,
        apply: substring,
    },
    Builtin {
        name: "ABS",
        params: &[INT],
        rest: None,
        ret: Type::Int,
        apply: abs,
    },
    Builtin {
        name: "INT",
        params: &[Param::Any],
        rest: None,
        ret: Type::Int,
        apply: int_cast,
    },
    Builtin {
        name: "BOOL",
        params: &[Param::Any],
        rest: None,
        ret: Type::Bool,
        apply: bool_cast,
    },
    Builtin {
        name: "STRING",
        params: &[Param::Any],
        rest: None,
        ret: Type::String,
        apply: |args| Ok(Value::String(string(args, 0).into_owned())),
    },
    Builtin {
        name: "IS_INT",
        params: &[Param::Any],
        rest: None,
        ret: Type::Bool,
        apply: |args| Ok(Value::Bool(args.first().and_then(|v| v.to_int()).is_some())),
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

/// A character count as an Integer, saturating (no CESQL string is near 2^31 characters).
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn length(args: &[Arg<'_>]) -> Outcome {
    Ok(Value::Int(count(string(args, 0).chars().count())))
}

fn concat(args: &[Arg<'_>]) -> Outcome {
    let mut out = String::new();
    for i in 0..args.len() {
        out.push_str(&string(args, i));
    }
    Ok(Value::String(out))
}

fn concat_ws(args: &[Arg<'_>]) -> Outcome {
    let delimiter = string(args, 0);
    let mut out = String::new();
    for i in 1..args.len() {
        if i > 1 {
            out.push_str(&delimiter);
        }
        out.push_str(&string(args, i));
    }
    Ok(Value::String(out))
}

fn negative_length(name: &str, x: &str, n: i32) -> Failure {
    Failure {
        value: Value::from(x),
        kind: ErrorKind::FunctionEvaluation,
        message: format!("{name}: length must not be negative, got {n}"),
    }
}

fn left(args: &[Arg<'_>]) -> Outcome {
    let (x, n) = (string(args, 0), int(args, 1));
    let Ok(n) = usize::try_from(n) else {
        return Err(negative_length("LEFT", &x, n));
    };
    Ok(Value::String(x.chars().take(n).collect()))
}

fn right(args: &[Arg<'_>]) -> Outcome {
    let (x, n) = (string(args, 0), int(args, 1));
    let Ok(n) = usize::try_from(n) else {
        return Err(negative_length("RIGHT", &x, n));
    };
    let skip = x.chars().count().saturating_sub(n);
    Ok(Value::String(x.chars().skip(skip).collect()))
}

/// `SUBSTRING(x, pos)` and `SUBSTRING(x, pos, len)`, on characters, 1-based; a negative `pos`
/// counts from the end.
fn substring(args: &[Arg<'_>]) -> Outcome {
    let (x, pos) = (string(args, 0), int(args, 1));
    let len = (args.len() > 2).then(|| int(args, 2));
    let fail = |message: String| Failure {
        value: Value::String(String::new()),
        kind: ErrorKind::FunctionEvaluation,
        message,
    };
    let n = i64::from(count(x.chars().count()));
    let p = i64::from(pos);
    if p > n || p < -n {
        return Err(fail(format!(
            "SUBSTRING: position {pos} is outside a string of {n} characters"
        )));
    }
    if let Some(len) = len.filter(|&l| l < 0) {
        return Err(fail(format!(
            "SUBSTRING: length must not be negative, got {len}"
        )));
    }
    if p == 0 {
        return Ok(Value::String(String::new()));
    }
    // 0-based start; in range by the checks above.
    let start = usize::try_from(if p > 0 { p - 1 } else { n + p }).unwrap_or(0);
    let take = len.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(0));
    Ok(Value::String(x.chars().skip(start).take(take).collect()))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> Outcome {
        let f = lookup(name, args.len()).expect("function exists");
        let args: Vec<Arg<'_>> = args.iter().map(Cow::Borrowed).collect();
        (f.apply)(&args)
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    #[test]
    fn lookup_respects_arity() {
        assert!(lookup("CONCAT", 0).is_some());
        assert!(lookup("CONCAT_WS", 0).is_none());
        assert!(lookup("CONCAT_WS", 1).is_some());
        assert!(lookup("CONCAT_WS", 5).is_some());
        assert!(lookup("SUBSTRING", 1).is_none());
        assert!(lookup("SUBSTRING", 2).is_some());
        assert!(lookup("SUBSTRING", 3).is_some());
        assert!(lookup("SUBSTRING", 4).is_none());
        assert!(lookup("ABS", 2).is_none());
        assert!(lookup("abs", 1).is_none(), "names are looked up uppercased");
        assert!(lookup("NOPE", 1).is_none());
    }

    #[test]
    fn string_functions_count_characters() {
        assert_eq!(call("LENGTH", &[s("héé")]), Ok(Value::Int(3)));
        assert_eq!(call("LEFT", &[s("héllo"), 2.into()]), Ok(s("hé")));
        assert_eq!(call("RIGHT", &[s("hellö"), 2.into()]), Ok(s("lö")));
        assert_eq!(call("SUBSTRING", &[s("日本語"), (-1).into()]), Ok(s("語")));
        assert_eq!(
            call("SUBSTRING", &[s("日本語"), 2.into(), 1.into()]),
            Ok(s("本"))
        );
        assert_eq!(call("TRIM", &[s("\u{3000} a \u{a0}\n")]), Ok(s("a")));
        assert_eq!(call("UPPER", &[s("straße")]), Ok(s("STRASSE")));
    }

    #[test]
    fn substring_bounds() {
        let fe = |r: Outcome| matches!(r, Err(Failure { kind: ErrorKind::FunctionEvaluation, ref value, .. }) if *value == s(""));
        assert_eq!(call("SUBSTRING", &[s("abc"), 3.into()]), Ok(s("c")));
        assert_eq!(call("SUBSTRING", &[s("abc"), (-3).into()]), Ok(s("abc")));
        assert!(fe(call("SUBSTRING", &[s("abc"), 4.into()])));
        assert!(fe(call("SUBSTRING", &[s("abc"), (-4).into()])));
        assert!(fe(call("SUBSTRING", &[s("abc"), 1.into(), (-1).into()])));
        assert!(fe(call("SUBSTRING", &[s(""), 1.into()])));
        assert_eq!(call("SUBSTRING", &[s(""), 0.into()]), Ok(s("")));
        assert!(fe(call("SUBSTRING", &[s("abc"), i32::MIN.into()])));
        assert_eq!(
            call("SUBSTRING", &[s("abc"), 2.into(), i32::MAX.into()]),
            Ok(s("bc"))
        );
    }

    #[test]
    fn failures_carry_the_prescribed_value() {
        let r = call("LEFT", &[s("abc"), (-1).into()]).unwrap_err();
        assert_eq!((r.value, r.kind), (s("abc"), ErrorKind::FunctionEvaluation));
        let r = call("ABS", &[i32::MIN.into()]).unwrap_err();
        assert_eq!((r.value, r.kind), (Value::Int(i32::MAX), ErrorKind::Math));
        let r = call("INT", &[s("x")]).unwrap_err();
        assert_eq!((r.value, r.kind), (Value::Int(0), ErrorKind::Cast));
        let r = call("BOOL", &[s("yes")]).unwrap_err();
        assert_eq!((r.value, r.kind), (Value::Bool(false), ErrorKind::Cast));
    }

    #[test]
    fn extensions_test_casts() {
        assert_eq!(call("IS_INT", &[s("-12")]), Ok(Value::Bool(true)));
        assert_eq!(call("IS_INT", &[s("1.5")]), Ok(Value::Bool(false)));
        assert_eq!(call("IS_INT", &[true.into()]), Ok(Value::Bool(true)));
        assert_eq!(call("IS_BOOL", &[s("FALSE")]), Ok(Value::Bool(true)));
        assert_eq!(call("IS_BOOL", &[7.into()]), Ok(Value::Bool(true)));
        assert_eq!(call("IS_BOOL", &[s("7")]), Ok(Value::Bool(false)));
    }

    #[test]
    fn concat_ws_separates_only_between() {
        assert_eq!(call("CONCAT_WS", &[s("-")]), Ok(s("")));
        assert_eq!(
            call("CONCAT_WS", &[s(", "), s("a"), 1.into(), true.into()]),
            Ok(s("a, 1, true"))
        );
        assert_eq!(call("CONCAT", &[]), Ok(s("")));
    }
}
