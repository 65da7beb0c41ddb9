//! Values, attribute names and CESQL's casting rules.
//!
//! CESQL has three primitive types (§3.1): 32-bit signed integers, strings and booleans. Every
//! other CloudEvents type (URI, timestamp, binary) is carried as a string. The casts here are the
//! single source of truth for both the evaluator and the routable constraints, so that a
//! constraint such as `x = 5` means exactly what the expression `x = 5` means.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The type of a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Type {
    /// CESQL _Boolean_.
    Bool,
    /// CESQL _Integer_ (32-bit signed).
    Int,
    /// CESQL _String_.
    String,
}

impl Type {
    /// The type's zero value (CESQL §3.1), returned alongside errors.
    pub fn zero(self) -> Value {
        match self {
            Type::Bool => Value::Bool(false),
            Type::Int => Value::Int(0),
            Type::String => Value::String(String::new()),
        }
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Bool => "Boolean",
            Type::Int => "Integer",
            Type::String => "String",
        })
    }
}

/// A CESQL value: the value of an event attribute, a literal, or a result.
///
/// Serialized as the bare boolean, integer or string. Deserializing takes what the format
/// says it has (a hand-written visitor rather than `#[serde(untagged)]`, which buffers each
/// value and tries the variants in turn: attributes of every frame go through here).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// A 32-bit signed integer.
    Int(i32),
    /// A string (URIs, timestamps and every non-primitive attribute are strings too).
    String(String),
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl serde::de::Visitor<'_> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean, a 32-bit integer or a string")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        i32::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        i32::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
}

impl Value {
    /// The value's type.
    pub fn ty(&self) -> Type {
        match self {
            Value::Bool(_) => Type::Bool,
            Value::Int(_) => Type::Int,
            Value::String(_) => Type::String,
        }
    }

    /// CESQL's cast to _Integer_ (§3.7). `None` is a cast error.
    ///
    /// Strings are parsed as base-10 32-bit integers with an optional leading sign, nothing else
    /// (no whitespace, no base prefix); booleans become 1 or 0.
    pub fn to_int(&self) -> Option<i32> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i32::from(*b)),
            Value::String(s) => parse_int(s),
        }
    }

    /// CESQL's *implicit* cast to _Boolean_. `None` is a cast error.
    ///
    /// Strings are `true` or `false` in any letter case. An integer is **not** implicitly a
    /// boolean: the conformance suite expects `NOT 10` to raise a cast error, so only the explicit
    /// `BOOL(x)` function maps integers to booleans (see [`Value::to_bool_explicit`]).
    pub fn to_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(_) => None,
            Value::String(s) => parse_bool(s),
        }
    }

    /// The explicit `BOOL(x)` cast: like [`Value::to_bool`], but an integer is `true` unless 0.
    pub fn to_bool_explicit(&self) -> Option<bool> {
        match self {
            Value::Int(i) => Some(*i != 0),
            other => other.to_bool(),
        }
    }

    /// CESQL's cast to _String_, which never fails.
    pub fn to_string_value(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Value::String(s) => std::borrow::Cow::Borrowed(s),
            Value::Int(i) => std::borrow::Cow::Owned(i.to_string()),
            Value::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
        }
    }

    /// Casts to `ty`, with the implicit-cast rules. `None` is a cast error.
    pub fn cast(&self, ty: Type) -> Option<Value> {
        match ty {
            Type::Bool => self.to_bool().map(Value::Bool),
            Type::Int => self.to_int().map(Value::Int),
            Type::String => Some(Value::String(self.to_string_value().into_owned())),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{}", if *b { "TRUE" } else { "FALSE" }),
            Value::Int(i) => write!(f, "{i}"),
            Value::String(s) => write_quoted(f, s),
        }
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i32> for Value {
    fn from(i: i32) -> Self {
        Value::Int(i)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

/// Writes `s` as a single-quoted CESQL string literal, escaping `'`.
///
/// CESQL's only escape inside `'...'` is `\'`; every other backslash stands for itself.
pub(crate) fn write_quoted(f: &mut impl fmt::Write, s: &str) -> fmt::Result {
    f.write_char('\'')?;
    for c in s.chars() {
        if c == '\'' {
            f.write_char('\\')?;
        }
        f.write_char(c)?;
    }
    f.write_char('\'')
}

/// Parses a base-10 `i32` with an optional sign, as CESQL's `String -> Integer` cast.
pub fn parse_int(s: &str) -> Option<i32> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i32>().ok()
}

/// Parses `true` / `false` in any letter case, as CESQL's `String -> Boolean` cast.
pub fn parse_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// The longest attribute name accepted. CloudEvents recommends at most 20 characters; Palio
/// accepts longer names but bounds them so that a name can never be used to exhaust memory.
pub const MAX_ATTR_NAME_LEN: usize = 128;

/// A validated attribute name: one or more of `a-z` and `0-9` (CloudEvents naming convention),
/// at most [`MAX_ATTR_NAME_LEN`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AttrName(String);

impl AttrName {
    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidAttrName> {
        let name = name.into();
        if name.is_empty()
            || name.len() > MAX_ATTR_NAME_LEN
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(InvalidAttrName(name));
        }
        Ok(Self(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AttrName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AttrName::new(s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for AttrName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for AttrName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for AttrName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An attribute name that breaks the CloudEvents naming convention.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid attribute name {0:?}: use 1 to {max} characters from a-z and 0-9",
    max = MAX_ATTR_NAME_LEN
)]
pub struct InvalidAttrName(pub String);

#[cfg(test)]
mod tests {
    #[test]
    fn values_deserialize_as_what_the_format_says() {
        let v: Vec<Value> = serde_json::from_str(r#"[true, -5, 7, "x"]"#).unwrap();
        assert_eq!(
            v,
            vec![
                Value::Bool(true),
                Value::Int(-5),
                Value::Int(7),
                Value::String("x".into())
            ]
        );
        for bad in ["2147483648", "-2147483649", "1.5", "null", "[1]"] {
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
        let round: Vec<Value> = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(round, v);
    }

    use super::*;

    #[test]
    fn int_cast_follows_cesql() {
        assert_eq!(Value::from("+42").to_int(), Some(42));
        assert_eq!(Value::from("-2147483648").to_int(), Some(i32::MIN));
        assert_eq!(Value::from("2147483648").to_int(), None);
        assert_eq!(Value::from(" 1").to_int(), None);
        assert_eq!(Value::from("+").to_int(), None);
        assert_eq!(Value::from("--1").to_int(), None);
        assert_eq!(Value::Bool(true).to_int(), Some(1));
    }

    #[test]
    fn bool_cast_is_case_insensitive_and_rejects_integers_implicitly() {
        assert_eq!(Value::from("TrUe").to_bool(), Some(true));
        assert_eq!(Value::from("no").to_bool(), None);
        assert_eq!(Value::Int(10).to_bool(), None);
        assert_eq!(Value::Int(10).to_bool_explicit(), Some(true));
    }

    #[test]
    fn attr_names_follow_cloudevents_naming() {
        assert!(AttrName::new("type").is_ok());
        assert!(AttrName::new("x0").is_ok());
        assert!(AttrName::new("").is_err());
        assert!(AttrName::new("Type").is_err());
        assert!(AttrName::new("a-b").is_err());
        assert!(AttrName::new("a".repeat(MAX_ATTR_NAME_LEN + 1)).is_err());
    }
}
