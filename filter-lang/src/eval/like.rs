//! LIKE patterns: compiling them into pieces, and matching strings against them.
//!
//! A pattern is compiled once, by the parser, into [`LikePiece`]s: literal runs, `_` (one
//! character) and `%` (any run of characters). `\%` and `\_` stand for a literal `%` and `_`;
//! every other backslash is an ordinary character (CESQL defines no other escape, and the
//! conformance suite expects `'ab\c' LIKE 'ab\c'` to hold). Escapes are read left to right, so
//! in `\\%` the first backslash is a literal backslash and `\%` a literal percent sign.
//!
//! Matching works on characters, not bytes (`_` matches `é`), and never backtracks
//! exponentially: it is the greedy two-pointer algorithm for wildcard matching, which only ever
//! returns to the most recent `%`. That is enough, because a later `%` can absorb anything an
//! earlier one could; the cost is O(text × pattern) in the worst case and linear in the
//! common cases. The literal after a `%` is located with a substring search instead of being
//! tried at every position, a final literal is anchored at the end of the text, and the
//! commonest shapes (exact, prefix, suffix, substring) go straight to the `str` method.

use crate::ast::{LikePattern, LikePiece};

/// Compiles a pattern (already unescaped as a string literal).
pub(crate) fn compile(source: String) -> LikePattern {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some('%' | '_')) => {
                literal.extend(chars.next());
            }
            '%' | '_' => {
                if !literal.is_empty() {
                    pieces.push(LikePiece::Literal(std::mem::take(&mut literal)));
                }
                if c == '_' {
                    pieces.push(LikePiece::AnyChar);
                } else if pieces.last() != Some(&LikePiece::AnyString) {
                    pieces.push(LikePiece::AnyString);
                }
            }
            c => literal.push(c),
        }
    }
    if !literal.is_empty() {
        pieces.push(LikePiece::Literal(literal));
    }
    LikePattern { source, pieces }
}

/// Whether `text` matches `pattern`.
pub(crate) fn matches(pattern: &LikePattern, text: &str) -> bool {
    use LikePiece::{AnyString, Literal};
    match pattern.pieces.as_slice() {
        [] => text.is_empty(),
        [AnyString] => true,
        [Literal(l)] => text == l,
        [Literal(l), AnyString] => text.starts_with(l.as_str()),
        [AnyString, Literal(l)] => text.ends_with(l.as_str()),
        [AnyString, Literal(l), AnyString] => text.contains(l.as_str()),
        pieces => matches_general(pieces, text),
    }
}

/// The greedy wildcard matcher. `t` is always on a character boundary of `text`.
fn matches_general(pieces: &[LikePiece], text: &str) -> bool {
    let mut p = 0;
    let mut t = 0;
    // After a `%`: the piece following it, and the text position at which that piece was
    // last tried. On a mismatch the `%` absorbs one more character and matching resumes there.
    let mut resume: Option<(usize, usize)> = None;
    loop {
        match pieces.get(p) {
            Some(LikePiece::AnyString) => {
                p += 1;
                if p == pieces.len() {
                    return true;
                }
                let Some(at) = seek(pieces, p, text, t) else {
                    return false;
                };
                t = at;
                resume = Some((p, t));
                continue;
            }
            Some(LikePiece::Literal(lit)) if text[t..].starts_with(lit.as_str()) => {
                t += lit.len();
                p += 1;
                continue;
            }
            Some(LikePiece::AnyChar) => {
                if let Some(c) = text[t..].chars().next() {
                    t += c.len_utf8();
                    p += 1;
                    continue;
                }
            }
            None if t == text.len() => return true,
            _ => {}
        }
        // Mismatch: let the last `%` take one more character, or fail if there is none.
        let Some((resume_p, resume_t)) = resume else {
            return false;
        };
        let Some(c) = text[resume_t..].chars().next() else {
            return false;
        };
        let Some(at) = seek(pieces, resume_p, text, resume_t + c.len_utf8()) else {
            return false;
        };
        p = resume_p;
        t = at;
        resume = Some((p, t));
    }
}

/// The first position at or after `t` where piece `p`, which follows a `%`, may match: for a
/// literal its next occurrence (found with a fast substring search rather than by trying every
/// position), and for a literal that ends the pattern the end of the text, where it must sit.
/// `None` when it matches nowhere, which fails the whole match: the `%` can only move right.
fn seek(pieces: &[LikePiece], p: usize, text: &str, t: usize) -> Option<usize> {
    match pieces.get(p) {
        Some(LikePiece::Literal(lit)) if p + 1 == pieces.len() => {
            let at = text.len().checked_sub(lit.len())?;
            (at >= t && text.ends_with(lit.as_str())).then_some(at)
        }
        Some(LikePiece::Literal(lit)) => text[t..].find(lit.as_str()).map(|offset| t + offset),
        _ => Some(t),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn like(text: &str, pattern: &str) -> bool {
        matches(&compile(pattern.to_owned()), text)
    }

    /// A reference matcher by plain recursion over characters (exponential, small inputs only).
    fn reference(text: &[char], pattern: &[LikeChar]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((LikeChar::Any, rest)) => (0..=text.len()).any(|i| reference(&text[i..], rest)),
            Some((LikeChar::One, rest)) => !text.is_empty() && reference(&text[1..], rest),
            Some((LikeChar::Lit(c), rest)) => {
                text.first() == Some(c) && reference(&text[1..], rest)
            }
        }
    }

    #[derive(Debug, Clone)]
    enum LikeChar {
        Any,
        One,
        Lit(char),
    }

    #[test]
    fn compiles_escapes_and_merges() {
        let p = compile(r"a\%b\_c%%_\d".to_owned());
        assert_eq!(
            p.pieces,
            [
                LikePiece::Literal("a%b_c".into()),
                LikePiece::AnyString,
                LikePiece::AnyChar,
                LikePiece::Literal(r"\d".into()),
            ]
        );
        assert_eq!(p.source, r"a\%b\_c%%_\d");
        // Escapes are read left to right: a literal backslash, then a literal percent sign.
        assert_eq!(
            compile(r"\\%".to_owned()).pieces,
            [LikePiece::Literal(r"\%".into())]
        );
        assert_eq!(compile(String::new()).pieces, []);
    }

    #[test]
    fn percent_backtracks() {
        assert!(like("abcabcabd", "%abd"));
        assert!(like("aXbXcXbc", "a%bc"));
        assert!(like("mississippi", "m%iss%ppi"));
        assert!(like("mississippi", "%s_i%"));
        assert!(!like("mississippi", "m%iss%ppx"));
        assert!(like("abc", "%%%"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("ab", "a%b%"));
        assert!(!like("ba", "a%"));
    }

    #[test]
    fn underscore_is_one_character_not_one_byte() {
        assert!(like("é", "_"));
        assert!(like("aéb", "a_b"));
        assert!(!like("aéb", "a__b"));
        assert!(like("日本語", "_本_"));
        assert!(like("x日本語y", "%語_"));
    }

    #[test]
    fn escapes_match_literally() {
        assert!(like("a%b", r"a\%b"));
        assert!(!like("axb", r"a\%b"));
        assert!(like("a_b", r"a\_b"));
        assert!(!like("axb", r"a\_b"));
        assert!(like(r"ab\c", r"ab\c"));
    }

    #[test]
    fn no_exponential_blowup() {
        let text = "a".repeat(5000);
        let pattern = format!("{}b", "%a".repeat(50));
        let start = std::time::Instant::now();
        assert!(!like(&text, &pattern));
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    proptest! {
        #[test]
        fn agrees_with_reference(
            text in "[ab_%é]{0,10}",
            pattern in proptest::collection::vec(
                prop_oneof![
                    Just(LikeChar::Any),
                    Just(LikeChar::One),
                    prop::sample::select(vec!['a', 'b', '%', '_', 'é']).prop_map(LikeChar::Lit),
                ],
                0..6,
            ),
        ) {
            let source: String = pattern
                .iter()
                .map(|p| match p {
                    LikeChar::Any => "%".to_owned(),
                    LikeChar::One => "_".to_owned(),
                    LikeChar::Lit(c @ ('%' | '_')) => format!("\\{c}"),
                    LikeChar::Lit(c) => c.to_string(),
                })
                .collect();
            let chars: Vec<char> = text.chars().collect();
            prop_assert_eq!(like(&text, &source), reference(&chars, &pattern));
        }
    }
}
