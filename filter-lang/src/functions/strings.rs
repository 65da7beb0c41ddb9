//! The string functions, and the bound on the strings they build.
//!
//! Every string a function returns is at most [`MAX_BUILT_STRING`] bytes. Each function works
//! out the size of its result before building it, and a result that would be longer is a
//! `functionEvaluation` error whose value is the empty string: the filter does not match, and
//! the long string is never allocated. Without the bound, `CONCAT(a, a, …, a)` over a large
//! attribute `a` builds the attribute's size times the number of references, per evaluation.
//!
//! Lengths and positions count characters (CESQL §3.5.1); sizes are in bytes.

use std::borrow::Cow;

use crate::error::ErrorKind;
use crate::value::Value;

use super::{Arg, Failure, Outcome, int, string};

/// The longest string a built-in function returns, in bytes: 64 KiB.
///
/// The CloudEvents specification requires intermediaries to forward events of up to 64 KB
/// and consumers to accept them, so every attribute of an event that travels anywhere fits:
/// a function applied to one attribute never meets the bound, while a string built from many
/// attributes, or many copies of one, is refused after at most 64 KiB of copying. Longer
/// results are a `functionEvaluation` error.
pub const MAX_BUILT_STRING: usize = 64 * 1024;

/// The failure of a function whose result would be at least `len` bytes.
fn too_long(name: &str, len: usize) -> Failure {
    Failure {
        value: Value::String(String::new()),
        kind: ErrorKind::FunctionEvaluation,
        message: format!(
            "{name}: the result would be at least {len} bytes, over the limit of \
             {MAX_BUILT_STRING} bytes on strings built by functions"
        ),
    }
}

/// `Ok` if a result of `len` bytes is within the bound.
fn within(name: &str, len: usize) -> Result<(), Failure> {
    if len > MAX_BUILT_STRING {
        Err(too_long(name, len))
    } else {
        Ok(())
    }
}

/// `x[range]` as a result of `name`, if within the bound.
fn slice(name: &str, x: &str, start: usize, end: usize) -> Outcome {
    within(name, end - start)?;
    Ok(Value::from(&x[start..end]))
}

/// A character count as an Integer, saturating (no CESQL string is near 2^31 characters).
fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

pub(super) fn length(args: &[Arg<'_>]) -> Outcome {
    Ok(Value::Int(count(string(args, 0).chars().count())))
}

/// Joins `parts` with `separator` between each two, after checking the total size.
fn join<'a>(
    name: &str,
    separator: &str,
    parts: impl Iterator<Item = Cow<'a, str>> + Clone,
) -> Outcome {
    let (n, total) = parts.clone().fold((0usize, 0usize), |(n, len), p| {
        (n + 1, len.saturating_add(p.len()))
    });
    let len = total.saturating_add(separator.len().saturating_mul(n.saturating_sub(1)));
    within(name, len)?;
    let mut out = String::with_capacity(len);
    for (i, part) in parts.enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(&part);
    }
    Ok(Value::String(out))
}

pub(super) fn concat(args: &[Arg<'_>]) -> Outcome {
    join("CONCAT", "", (0..args.len()).map(|i| string(args, i)))
}

pub(super) fn concat_ws(args: &[Arg<'_>]) -> Outcome {
    let separator = string(args, 0);
    join(
        "CONCAT_WS",
        &separator,
        (1..args.len()).map(|i| string(args, i)),
    )
}

/// `LOWER` or `UPPER`: the result's size is added up character by character (stopping once
/// it is over the bound), then `str`'s own mapping builds it. The sizes agree: `str` maps each
/// character as `char` does, except a final `Σ`, whose two lowercase forms have the same size.
fn case_map(name: &str, x: &str, map: fn(char) -> usize, build: fn(&str) -> String) -> Outcome {
    let mut len = 0usize;
    for c in x.chars() {
        len += map(c);
        within(name, len)?;
    }
    Ok(Value::String(build(x)))
}

pub(super) fn lower(args: &[Arg<'_>]) -> Outcome {
    case_map(
        "LOWER",
        &string(args, 0),
        |c| c.to_lowercase().map(char::len_utf8).sum(),
        str::to_lowercase,
    )
}

pub(super) fn upper(args: &[Arg<'_>]) -> Outcome {
    case_map(
        "UPPER",
        &string(args, 0),
        |c| c.to_uppercase().map(char::len_utf8).sum(),
        str::to_uppercase,
    )
}

pub(super) fn trim(args: &[Arg<'_>]) -> Outcome {
    let x = string(args, 0);
    // `str::trim` removes exactly the Unicode White_Space characters.
    let trimmed = x.trim();
    within("TRIM", trimmed.len())?;
    Ok(Value::from(trimmed))
}

/// `STRING(x)`: the explicit cast, a copy of a string argument.
pub(super) fn string_cast(args: &[Arg<'_>]) -> Outcome {
    let x = string(args, 0);
    slice("STRING", &x, 0, x.len())
}

/// `LEFT` or `RIGHT` with a negative length: CESQL's value is the string itself.
fn negative_length(name: &str, x: &str, n: i32) -> Failure {
    if x.len() > MAX_BUILT_STRING {
        return too_long(name, x.len());
    }
    Failure {
        value: Value::from(x),
        kind: ErrorKind::FunctionEvaluation,
        message: format!("{name}: length must not be negative, got {n}"),
    }
}

pub(super) fn left(args: &[Arg<'_>]) -> Outcome {
    let (x, n) = (string(args, 0), int(args, 1));
    let Ok(n) = usize::try_from(n) else {
        return Err(negative_length("LEFT", &x, n));
    };
    let end = x.char_indices().nth(n).map_or(x.len(), |(i, _)| i);
    slice("LEFT", &x, 0, end)
}

pub(super) fn right(args: &[Arg<'_>]) -> Outcome {
    let (x, n) = (string(args, 0), int(args, 1));
    let Ok(n) = usize::try_from(n) else {
        return Err(negative_length("RIGHT", &x, n));
    };
    let start = match n.checked_sub(1) {
        None => x.len(),
        Some(last) => x.char_indices().rev().nth(last).map_or(0, |(i, _)| i),
    };
    slice("RIGHT", &x, start, x.len())
}

/// `SUBSTRING(x, pos)` and `SUBSTRING(x, pos, len)`, on characters, 1-based; a negative `pos`
/// counts from the end.
pub(super) fn substring(args: &[Arg<'_>]) -> Outcome {
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
    // 0-based start, in characters; in range by the checks above.
    let first = usize::try_from(if p > 0 { p - 1 } else { n + p }).unwrap_or(0);
    let take = len.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(0));
    let start = x.char_indices().nth(first).map_or(x.len(), |(i, _)| i);
    let end = x[start..]
        .char_indices()
        .nth(take)
        .map_or(x.len(), |(i, _)| start + i);
    slice("SUBSTRING", &x, start, end)
}
