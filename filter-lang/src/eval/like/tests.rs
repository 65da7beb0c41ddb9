//! LIKE tests: compilation, CESQL's rules, agreement with a reference matcher, and the work
//! bound, counted in steps (no clock).

use proptest::prelude::*;

use super::*;

fn like(text: &str, pattern: &str) -> bool {
    let compiled = compile(pattern.to_owned());
    let (matched, steps) = run(&compiled, text);
    assert!(
        steps <= cost(&compiled, count(text.len())),
        "{text:?} LIKE {pattern:?} took {steps} steps, over its cost"
    );
    matched
}

/// One character of a pattern, unescaped.
#[derive(Debug, Clone, PartialEq)]
enum LikeChar {
    Any,
    One,
    Lit(char),
}

/// The pattern's source text, escaping literal `%` and `_`.
fn source(pattern: &[LikeChar]) -> String {
    pattern
        .iter()
        .map(|p| match p {
            LikeChar::Any => "%".to_owned(),
            LikeChar::One => "_".to_owned(),
            LikeChar::Lit(c @ ('%' | '_')) => format!("\\{c}"),
            LikeChar::Lit(c) => c.to_string(),
        })
        .collect()
}

/// The textbook dynamic program over characters: `prefix[j]` is whether the first `j` pattern
/// characters match the text read so far. O(text × pattern), obviously right.
fn reference(text: &str, pattern: &[LikeChar]) -> bool {
    let mut prefix = vec![false; pattern.len() + 1];
    prefix[0] = true;
    for j in 0..pattern.len() {
        prefix[j + 1] = prefix[j] && pattern[j] == LikeChar::Any;
    }
    for c in text.chars() {
        let mut next = vec![false; pattern.len() + 1];
        for j in 0..pattern.len() {
            next[j + 1] = match &pattern[j] {
                LikeChar::Any => next[j] || prefix[j + 1],
                LikeChar::One => prefix[j],
                LikeChar::Lit(l) => prefix[j] && *l == c,
            };
        }
        prefix = next;
    }
    prefix[pattern.len()]
}

/// Parses a pattern without escapes (`%` and `_` are wildcards) into [`LikeChar`]s.
fn chars(pattern: &str) -> Vec<LikeChar> {
    pattern
        .chars()
        .map(|c| match c {
            '%' => LikeChar::Any,
            '_' => LikeChar::One,
            c => LikeChar::Lit(c),
        })
        .collect()
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
fn plans_split_at_percent() {
    let plan = compile("a_b%c%__d%e".to_owned()).plan;
    let lit = |s: &str| Item::Literal(s.to_owned());
    assert_eq!(plan.head.items, [lit("a"), Item::Skip(1), lit("b")]);
    assert_eq!(plan.middle.len(), 2);
    assert_eq!(plan.middle[1].items, [Item::Skip(2), lit("d")]);
    assert_eq!(plan.tail.map(|t| t.items), Some(vec![lit("e")]));
    assert_eq!(compile("abc".to_owned()).plan.tail, None);
    let bits = compile("%a_b%".to_owned()).plan.middle[0].bits.is_some();
    assert!(bits, "a core with an inner `_` is searched by shift-and");
    let long = format!("%a{}b%", "_".repeat(63));
    assert!(compile(long).plan.middle[0].bits.is_none(), "65 characters");
    let longest = format!("%a{}b%", "_".repeat(62));
    assert!(
        compile(longest).plan.middle[0].bits.is_some(),
        "64 characters"
    );
}

#[test]
fn percent_places_segments() {
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
    // The anchored ends must not overlap.
    assert!(!like("aba", "ab%ba"));
    assert!(like("abba", "ab%ba"));
    assert!(!like("abc", "%abc%abc%"));
    // `_`s at either end of a middle segment.
    assert!(!like("a", "%a_%"));
    assert!(like("ab", "%a_%"));
    assert!(!like("ab", "%_a%"));
    assert!(like("ba", "%_a%"));
    assert!(!like("xab", "%a_%b"));
    assert!(like("xabb", "%a_%b"));
    assert!(like("ab", "%__%"));
    assert!(!like("a", "%__%"));
}

#[test]
fn underscore_is_one_character_not_one_byte() {
    assert!(like("é", "_"));
    assert!(like("aéb", "a_b"));
    assert!(!like("aéb", "a__b"));
    assert!(like("日本語", "_本_"));
    assert!(like("x日本語y", "%語_"));
    assert!(like("x日本語y", "%日_語%"));
    assert!(like("x日本語y", "%_日%"));
    assert!(!like("日本語", "%_日%"));
}

#[test]
fn escapes_match_literally() {
    assert!(like("a%b", r"a\%b"));
    assert!(!like("axb", r"a\%b"));
    assert!(like("a_b", r"a\_b"));
    assert!(!like("axb", r"a\_b"));
    assert!(like(r"ab\c", r"ab\c"));
    assert!(like("x_%y", r"%\_\%%"));
}

#[test]
fn long_cores_are_tried_at_each_position() {
    let core = format!("a{}b", "_".repeat(70));
    let text = format!("{}{}", "a".repeat(100), "b".repeat(3));
    let pattern = format!("%{core}%");
    assert_eq!(like(&text, &pattern), reference(&text, &chars(&pattern)));
    assert!(like(&text, &pattern));
    assert!(!like(&"a".repeat(200), &pattern));
}

/// The filter bombs: patterns the backtracking matcher this replaced took O(text × pattern)
/// steps on. Each is matched right, within a number of steps linear in the text.
#[test]
fn worst_cases_take_linear_steps() {
    let n = 100_000;
    let text = "a".repeat(n);
    let bound = |pattern: &str| 2 * count(n + pattern.len());
    let cases = [
        (format!("{}b", "%a".repeat(500)), false),
        (format!("{}%b%", "%a".repeat(500)), false),
        (format!("{}%", "%a".repeat(500)), true),
        (format!("{}%", "_%".repeat(500)), true),
        (format!("{}b", "_%".repeat(500)), false),
        (format!("%{}b%", "a_".repeat(20)), false),
        (format!("{}%", "%a_a".repeat(500)), true),
        (format!("%{}b%", "a".repeat(1000)), false),
    ];
    for (pattern, expected) in &cases {
        let compiled = compile(pattern.clone());
        let (matched, steps) = run(&compiled, &text);
        assert_eq!(matched, *expected, "{pattern}");
        assert!(
            steps <= bound(pattern),
            "{pattern}: {steps} steps on {n} bytes"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn agrees_with_reference(
        text in "[ab_%é]{0,12}",
        pattern in proptest::collection::vec(
            prop_oneof![
                Just(LikeChar::Any),
                Just(LikeChar::One),
                prop::sample::select(vec!['a', 'b', '%', '_', 'é']).prop_map(LikeChar::Lit),
            ],
            0..8,
        ),
    ) {
        prop_assert_eq!(like(&text, &source(&pattern)), reference(&text, &pattern));
    }

    /// Longer texts over two letters, where the segments recur and the search must not skip
    /// a match, with cores long enough for each search path (literal, shift-and, each position).
    #[test]
    fn agrees_with_reference_on_long_texts(
        text in "[ab]{0,200}",
        pattern in proptest::collection::vec(
            prop_oneof![
                1 => Just(LikeChar::Any),
                2 => Just(LikeChar::One),
                4 => prop::sample::select(vec!['a', 'b']).prop_map(LikeChar::Lit),
            ],
            0..80,
        ),
    ) {
        prop_assert_eq!(like(&text, &source(&pattern)), reference(&text, &pattern));
    }

    /// Middle segments of 50 to 90 characters (and some `_`s at either end), either side of the 64 that shift-and holds,
    /// in texts that hold the core (its `_`s filled in), perhaps with one character changed.
    #[test]
    fn agrees_with_reference_on_long_cores(
        before in "[ab]{0,100}",
        after in "[ab]{0,100}",
        head in "[ab_]{0,3}",
        core in "_{0,2}[ab][ab_]{48,88}[ab]_{0,2}",
        tail in "[ab_]{0,3}",
        fill in "[ab]{94}",
        flip in proptest::option::of(0usize..94),
    ) {
        let mut planted: Vec<char> = core
            .chars()
            .zip(fill.chars())
            .map(|(c, f)| if c == '_' { f } else { c })
            .collect();
        if let Some(i) = flip.filter(|&i| i < planted.len()) {
            planted[i] = if planted[i] == 'a' { 'b' } else { 'a' };
        }
        let text = format!("{before}{}{after}", planted.iter().collect::<String>());
        let pattern = format!("{head}%{core}%{tail}");
        prop_assert_eq!(like(&text, &pattern), reference(&text, &chars(&pattern)));
    }
}
