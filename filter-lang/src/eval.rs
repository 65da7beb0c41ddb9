//! The CESQL evaluator, in both of CESQL's error-handling modes (§4.1).
//!
//! One evaluator, generic over where errors go ([`Sink`]):
//!
//! - *Complete evaluation* ([`evaluate`]) collects every error with its message and returns the
//!   value CESQL prescribes alongside them.
//! - *Fail fast* ([`matches()`]), used on the broker's hot path, only remembers that an error
//!   happened (no message is ever formatted) and stops at the first one, since a filter with an
//!   error never matches.
//!
//! Values are `Cow<Value>`: attributes are borrowed from the event and literals from the tree,
//! so a comparison such as `type = 'alarm'` evaluates without allocating.
//!
//! # Errors and values
//!
//! - A missing attribute raises missingAttribute; the attribute's type cannot be known, so it
//!   evaluates to the Boolean zero value, `false` (§3.2).
//! - An operator or function whose operand raised any error returns the zero value of its own
//!   return type without applying itself: `missing / 0` is `0` with only a missingAttribute
//!   error, `-missing` is `0`, `NOT missing` is `false`.
//! - An operator's *own* failures give the value CESQL prescribes: a failed implicit cast of an
//!   operand is a cast error and the operand becomes the target type's zero value (`NOT 10` is
//!   `true`, since integers do not implicitly cast to booleans); division by zero is `0` with a
//!   math error; `+ - *` and unary `-` overflow saturate with a math error.
//!
//! # Casts (§3.7)
//!
//! `NOT` and `AND`/`OR`/`XOR` cast to Boolean, unary `-`, arithmetic and `< <= > >=` to Integer,
//! `LIKE` to String. `=`, `!=` and `<>` are ambiguous: the left operand is cast to the right
//! operand's runtime type. `IN` casts each element to the left operand's runtime type and
//! compares with `=`. `AND` stops when its left operand is `false`, `OR` when it is `true`.

pub(crate) mod like;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::fmt;

use crate::Evaluation;
use crate::ast::{BinaryOp, Node, UnaryOp};
use crate::error::{ErrorKind, EvalError};
use crate::event::Event;
use crate::functions::{self, Param};
use crate::value::{AttrName, Type, Value};

/// Evaluates `node` against `event`, collecting every error.
pub(crate) fn evaluate(node: &Node, event: &Event) -> Evaluation {
    let mut eval = Evaluator {
        event,
        sink: Collect(Vec::new()),
    };
    let value = eval.eval(node).into_owned();
    Evaluation {
        value,
        errors: eval.sink.0,
    }
}

/// Whether `node` evaluates to `true` with no error against `event`; stops at the first error.
pub(crate) fn matches(node: &Node, event: &Event) -> bool {
    let mut eval = Evaluator {
        event,
        sink: FailFast(false),
    };
    let value = eval.eval(node);
    !eval.sink.0 && *value == Value::Bool(true)
}

/// Where errors go.
trait Sink {
    /// Whether evaluation may stop at the first error.
    const FAIL_FAST: bool;
    /// Records an error. The message is only formatted if it is kept.
    fn raise(&mut self, kind: ErrorKind, message: fmt::Arguments<'_>);
    /// How many errors were raised (fail-fast sinks count at most one).
    fn count(&self) -> usize;
}

/// Complete evaluation: keeps every error.
struct Collect(Vec<EvalError>);

impl Sink for Collect {
    const FAIL_FAST: bool = false;

    fn raise(&mut self, kind: ErrorKind, message: fmt::Arguments<'_>) {
        self.0.push(EvalError::new(kind, message.to_string()));
    }

    fn count(&self) -> usize {
        self.0.len()
    }
}

/// Fail fast: remembers only whether an error was raised.
struct FailFast(bool);

impl Sink for FailFast {
    const FAIL_FAST: bool = true;

    fn raise(&mut self, _kind: ErrorKind, _message: fmt::Arguments<'_>) {
        self.0 = true;
    }

    fn count(&self) -> usize {
        usize::from(self.0)
    }
}

type Val<'a> = Cow<'a, Value>;

fn boolean(b: bool) -> Val<'static> {
    Cow::Owned(Value::Bool(b))
}

fn int(i: i32) -> Val<'static> {
    Cow::Owned(Value::Int(i))
}

struct Evaluator<'a, S> {
    event: &'a Event,
    sink: S,
}

impl<'a, S: Sink> Evaluator<'a, S> {
    /// Whether to give up now: in fail-fast mode, once any error was raised.
    fn give_up(&self) -> bool {
        S::FAIL_FAST && self.sink.count() > 0
    }

    /// Evaluates an operand, returning it and whether its evaluation raised an error.
    ///
    /// Literals and attributes, by far the most common operands, are handled here without
    /// recursing into [`Evaluator::eval`]: on the hot path that halves the cost of a comparison.
    #[inline(always)]
    fn operand(&mut self, node: &'a Node) -> (Val<'a>, bool) {
        match node {
            Node::Literal(v) => (Cow::Borrowed(v), false),
            Node::Attr(name) => match self.event.get(name.as_str()) {
                Some(v) => (Cow::Borrowed(v), false),
                None => (self.missing(name), true),
            },
            _ => self.nested(node),
        }
    }

    /// [`Evaluator::operand`] for anything but a leaf.
    fn nested(&mut self, node: &'a Node) -> (Val<'a>, bool) {
        let before = self.sink.count();
        let value = self.eval(node);
        (value, self.sink.count() > before)
    }

    /// A missing attribute: its type is unknown, so its value is the Boolean zero (§3.2).
    #[cold]
    fn missing(&mut self, name: &AttrName) -> Val<'a> {
        self.sink.raise(
            ErrorKind::MissingAttribute,
            format_args!("attribute {name} is missing"),
        );
        boolean(false)
    }

    fn eval(&mut self, node: &'a Node) -> Val<'a> {
        match node {
            Node::Literal(v) => Cow::Borrowed(v),
            Node::Attr(name) => match self.event.get(name.as_str()) {
                Some(v) => Cow::Borrowed(v),
                None => self.missing(name),
            },
            Node::Exists(name) => boolean(self.event.get(name.as_str()).is_some()),
            Node::Unary { op, arg } => self.unary(*op, arg),
            Node::Binary { op, lhs, rhs } => match op {
                BinaryOp::And | BinaryOp::Or | BinaryOp::Xor => boolean(self.logic(*op, lhs, rhs)),
                BinaryOp::Eq | BinaryOp::Ne => boolean(self.equality(*op, lhs, rhs)),
                _ => self.integer_op(*op, lhs, rhs),
            },
            Node::Like {
                arg,
                pattern,
                negated,
            } => {
                let (value, failed) = self.operand(arg);
                boolean(!failed && like::matches(pattern, &value.to_string_value()) != *negated)
            }
            Node::In { arg, set, negated } => boolean(self.in_set(arg, set, *negated)),
            Node::Call { name, args } => self.call(name, args),
        }
    }

    #[cold]
    fn cast_error(&mut self, value: &Value, ty: Type) {
        self.sink
            .raise(ErrorKind::Cast, format_args!("cannot cast {value} to {ty}"));
    }

    /// Implicit cast to Boolean; a failure is a cast error and `false`.
    #[inline]
    fn cast_bool(&mut self, value: &Value) -> bool {
        // Fast path for the common case; every cast goes through `Value::to_bool`.
        if let Value::Bool(b) = value {
            return *b;
        }
        value.to_bool().unwrap_or_else(|| {
            self.cast_error(value, Type::Bool);
            false
        })
    }

    /// Implicit cast to Integer; a failure is a cast error and `0`.
    #[inline]
    fn cast_int(&mut self, value: &Value) -> i32 {
        // Fast path for the common case; every cast goes through `Value::to_int`.
        if let Value::Int(i) = value {
            return *i;
        }
        value.to_int().unwrap_or_else(|| {
            self.cast_error(value, Type::Int);
            0
        })
    }

    fn math_error(&mut self, message: fmt::Arguments<'_>) {
        self.sink.raise(ErrorKind::Math, message);
    }

    fn unary(&mut self, op: UnaryOp, arg: &'a Node) -> Val<'a> {
        let (value, failed) = self.operand(arg);
        match op {
            UnaryOp::Not => boolean(!failed && !self.cast_bool(&value)),
            UnaryOp::Neg if failed => int(0),
            UnaryOp::Neg => {
                let x = self.cast_int(&value);
                int(x.checked_neg().unwrap_or_else(|| {
                    self.math_error(format_args!("-({x}) overflows a 32-bit integer"));
                    i32::MAX
                }))
            }
        }
    }

    /// `AND`, `OR`, `XOR`, with short-circuit for `AND` and `OR`.
    fn logic(&mut self, op: BinaryOp, lhs: &'a Node, rhs: &'a Node) -> bool {
        let (l, l_failed) = self.operand(lhs);
        // A failed operand is not cast (the operator does not apply), but its value still
        // decides the short-circuit, as CESQL's evaluation flow is static.
        let l = if l_failed {
            l.to_bool().unwrap_or(false)
        } else {
            self.cast_bool(&l)
        };
        match (op, l) {
            (BinaryOp::And, false) => return false,
            (BinaryOp::Or, true) => return !l_failed,
            _ => {}
        }
        if self.give_up() {
            return false;
        }
        let (r, r_failed) = self.operand(rhs);
        if l_failed || r_failed {
            return false;
        }
        let r = self.cast_bool(&r);
        match op {
            BinaryOp::Xor => l != r,
            // AND with a true left side, OR with a false one: the right side decides.
            _ => r,
        }
    }

    /// `=`, `!=`, `<>`: the left operand is cast to the right operand's type.
    fn equality(&mut self, op: BinaryOp, lhs: &'a Node, rhs: &'a Node) -> bool {
        let (l, l_failed) = self.operand(lhs);
        if self.give_up() {
            return false;
        }
        let (r, r_failed) = self.operand(rhs);
        if l_failed || r_failed {
            return false;
        }
        self.equal_as(&r, &l) != (op == BinaryOp::Ne)
    }

    /// Whether `other`, cast to the type of `target`, equals `target`. A failed cast is a cast
    /// error, and the cast value is the zero value of `target`'s type.
    fn equal_as(&mut self, target: &Value, other: &Value) -> bool {
        match target {
            Value::String(t) => *other.to_string_value() == **t,
            Value::Int(t) => self.cast_int(other) == *t,
            Value::Bool(t) => self.cast_bool(other) == *t,
        }
    }

    /// `x [NOT] IN (y1, ...)`: each `y` is cast to the type of `x` and compared with `=`.
    fn in_set(&mut self, arg: &'a Node, set: &'a [Node], negated: bool) -> bool {
        let (x, mut failed) = self.operand(arg);
        let mut found = false;
        for element in set {
            if self.give_up() {
                return false;
            }
            let (y, y_failed) = self.operand(element);
            failed |= y_failed;
            if !failed && !found {
                found = self.equal_as(&x, &y);
            }
        }
        !failed && found != negated
    }

    /// Arithmetic and ordering: both operands are cast to Integer.
    fn integer_op(&mut self, op: BinaryOp, lhs: &'a Node, rhs: &'a Node) -> Val<'a> {
        let zero = if is_ordering(op) {
            boolean(false)
        } else {
            int(0)
        };
        let (l, l_failed) = self.operand(lhs);
        if self.give_up() {
            return zero;
        }
        let (r, r_failed) = self.operand(rhs);
        if l_failed || r_failed {
            return zero;
        }
        let x = self.cast_int(&l);
        let y = self.cast_int(&r);
        let checked = |f: fn(i32, i32) -> Option<i32>, saturated: fn(i32, i32) -> i32| {
            f(x, y).ok_or_else(|| saturated(x, y))
        };
        let result = match op {
            BinaryOp::Lt => return boolean(x < y),
            BinaryOp::Le => return boolean(x <= y),
            BinaryOp::Gt => return boolean(x > y),
            BinaryOp::Ge => return boolean(x >= y),
            BinaryOp::Add => checked(i32::checked_add, i32::saturating_add),
            BinaryOp::Sub => checked(i32::checked_sub, i32::saturating_sub),
            BinaryOp::Mul => checked(i32::checked_mul, i32::saturating_mul),
            BinaryOp::Div | BinaryOp::Mod if y == 0 => {
                self.math_error(format_args!("division by zero in {x} {} 0", symbol(op)));
                return int(0);
            }
            BinaryOp::Div => checked(i32::checked_div, i32::saturating_div),
            // The remainder never overflows mathematically: i32::MIN % -1 is 0.
            _ => Ok(x.wrapping_rem(y)),
        };
        int(result.unwrap_or_else(|saturated| {
            self.math_error(format_args!(
                "{x} {} {y} overflows a 32-bit integer",
                symbol(op)
            ));
            saturated
        }))
    }

    fn call(&mut self, name: &str, args: &'a [Node]) -> Val<'a> {
        let Some(function) = functions::lookup(name, args.len()) else {
            self.sink.raise(
                ErrorKind::MissingFunction,
                format_args!("no function {name} takes {} arguments", args.len()),
            );
            return boolean(false);
        };
        let mut values = Vec::with_capacity(args.len());
        let mut failed = false;
        for arg in args {
            if self.give_up() {
                break;
            }
            let (value, arg_failed) = self.operand(arg);
            failed |= arg_failed;
            values.push(value);
        }
        if failed || self.give_up() {
            return Cow::Owned(function.ret.zero());
        }
        for (i, value) in values.iter_mut().enumerate() {
            if let Param::Of(ty) = function.param(i)
                && value.ty() != ty
            {
                let cast = value.cast(ty).unwrap_or_else(|| {
                    self.cast_error(value, ty);
                    ty.zero()
                });
                *value = Cow::Owned(cast);
            }
        }
        match (function.apply)(&values) {
            Ok(value) => Cow::Owned(value),
            Err(failure) => {
                self.sink
                    .raise(failure.kind, format_args!("{}", failure.message));
                Cow::Owned(failure.value)
            }
        }
    }
}

fn is_ordering(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
    )
}

fn symbol(op: BinaryOp) -> &'static str {
    match op {
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Mod => "%",
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Eq => "=",
        BinaryOp::Ne => "!=",
        BinaryOp::And => "AND",
        BinaryOp::Or => "OR",
        BinaryOp::Xor => "XOR",
    }
}
