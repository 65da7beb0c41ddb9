//! Cost model tests.

use super::*;
use crate::Expr;

fn units(src: &str) -> u64 {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src:?}: {e}"))
        .cost(DEFAULT_MAX_INPUT_BYTES)
        .units()
}

/// The clauses joined by `OR` in a balanced tree, so that a thousand stay within the depth
/// limit (a chain of `OR`s nests one level per clause).
fn any_of(clauses: &[String]) -> String {
    match clauses {
        [] => "FALSE".to_owned(),
        [one] => one.clone(),
        _ => {
            let (left, right) = clauses.split_at(clauses.len() / 2);
            format!("({} OR {})", any_of(left), any_of(right))
        }
    }
}

fn check(src: &str) -> Result<Cost, CostError> {
    Expr::parse(src)
        .unwrap_or_else(|e| panic!("{src:?}: {e}"))
        .check_cost(&CostBudget::default())
}

const A: u64 = DEFAULT_MAX_INPUT_BYTES as u64;
const S: u64 = MAX_BUILT_STRING as u64;

#[test]
fn units_follow_the_rules() {
    // Three nodes; the comparison reads at most the literal's five bytes.
    assert_eq!(units("type = 'alarm'"), 3 + 5);
    // Parsing `level` as an integer may read all of it.
    assert_eq!(units("level > 2"), 3 + A + INT_LEN);
    assert_eq!(units("2 = level"), 3 + INT_LEN);
    // Prefixes are checked where they are; a segment between two `%`s is searched for.
    assert_eq!(units("s LIKE 'ab%'"), 2 + 3);
    assert_eq!(units("s LIKE '%ab%'"), 2 + 4 + A);
    // Elements are cast to the left operand's type, so they bound the work.
    assert_eq!(units("x IN (1, 'ab')"), 4 + INT_LEN + 2);
    assert_eq!(units("x IN (y, y)"), 4 + 2 * A);
    // CONCAT adds up its arguments' lengths, then builds at most the bound.
    assert_eq!(units("CONCAT('ab', 'c')"), 3 + 2 + 3);
    assert_eq!(units("CONCAT(a, a)"), 3 + 2 + S);
    assert_eq!(units("CONCAT_WS('--', 'a', 'b', 'c')"), 5 + 4 + (3 + 2 * 2));
    // LOWER reads to size its result, then builds it (at most three times the input).
    assert_eq!(units("LOWER('ab')"), 2 + 2 + 6);
    assert_eq!(units("LOWER(a)"), 2 + A + S);
    // LEFT casts its length, reads its string at most twice, copies a part of it.
    assert_eq!(units("LEFT(a, n)"), 3 + A + (2 * A + S));
    // Every node is counted, short-circuit or not.
    assert_eq!(units("FALSE AND s LIKE '%ab%'"), 1 + 1 + (2 + 4 + A));
}

#[test]
fn every_sensible_filter_is_far_within_the_budget() {
    let clauses: Vec<String> = (0..100).map(|i| format!("type = 't{i}'")).collect();
    let numbers: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let filters = [
        "type = 'com.example.alarm' AND level > 2".to_owned(),
        "source LIKE 'https://sensors.example/%' AND NOT EXISTS test".to_owned(),
        "region IN ('eu', 'us') AND LOWER(severity) = 'high'".to_owned(),
        "type = 'alarm' AND (level > 2 OR source LIKE 'sensor/%') AND NOT EXISTS muted".to_owned(),
        "(a > 1 AND a < 10) OR (b = 'x' AND c LIKE '%y%')".to_owned(),
        "subject LIKE '%/fire/%' AND CONCAT(region, '/', zone) IN ('eu/1', 'eu/2')".to_owned(),
        "UPPER(TRIM(kind)) = 'TEMP' AND ABS(INT(delta)) > 5 AND LENGTH(id) = 36".to_owned(),
        "SUBSTRING(id, 1, 8) = 'deadbeef' AND time LIKE '2024-__-__T%Z'".to_owned(),
        any_of(&clauses),
        format!("x IN ({})", numbers.join(", ")),
    ];
    for filter in &filters {
        let cost = check(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        assert!(
            cost.units() <= DEFAULT_COST_BUDGET / 8,
            "{filter}: {} units",
            cost.units()
        );
    }
}

/// The filter bombs: each fits the parser's limits and evaluates within the bounds on built
/// strings and LIKE steps, but does that work a thousand times per event.
#[test]
fn bombs_are_refused_naming_their_costliest_part() {
    let repeat = |clause: &str, n: usize| any_of(&vec![clause.to_owned(); n]);
    let concat = format!("CONCAT({}a)", "a, ".repeat(30));
    let bombs = [
        (
            repeat(&format!("{concat} LIKE '%x%'"), 100),
            "CONCAT(a, a, a",
        ),
        (
            repeat("a LIKE '%a%a%a%a%a%a%a%a%a%b%'", 400),
            "LIKE pattern '%a%a",
        ),
        (
            format!("a IN ({}a)", "a, ".repeat(1000)),
            "IN list of 1001 elements on a",
        ),
        (repeat("UPPER(a) = UPPER(b)", 400), "UPPER(a)"),
        (repeat("a = b", 1000), "(a = b)"),
    ];
    for (bomb, part) in &bombs {
        assert!(bomb.len() <= 16 * 1024, "{} bytes", bomb.len());
        let error = check(bomb).expect_err("refused");
        assert!(error.units > error.budget);
        assert!(
            error.part.starts_with(part),
            "{part:?} is not the start of {:?}",
            error.part
        );
        let message = error.to_string();
        assert!(
            message.starts_with("filter too costly: up to "),
            "{message}"
        );
        assert!(message.contains(&error.part), "{message}");
    }
}

#[test]
fn shown_parts_are_short() {
    let long = format!("CONCAT({}a) LIKE '%x%'", "abc, ".repeat(100));
    let cost = Expr::parse(&long).expect("parses").cost(A as usize);
    let (part, part_units) = cost.costliest().expect("a part");
    assert_eq!(part.chars().count(), SHOWN_CHARS + 1, "{part}");
    assert!(part.ends_with('…'));
    assert_eq!(part_units, 101 + S);
}

#[test]
fn a_smaller_input_bound_lowers_the_cost() {
    let expr = Expr::parse("s LIKE '%ab%'").expect("parses");
    assert_eq!(expr.cost(100).units(), 2 + 4 + 100);
    let tight = CostBudget {
        max_units: 105,
        max_input_bytes: 100,
    };
    let error = expr.check_cost(&tight).expect_err("over");
    assert_eq!(
        (error.units, error.budget, error.part_units),
        (106, 105, 104)
    );
    assert_eq!(error.part, "LIKE pattern '%ab%' on s");
}

/// A string-valued expression over the attributes `a` and `b`, up to `depth` calls deep.
fn string_expr(depth: u32) -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        "[a-zß ΐ]{0,6}".prop_map(|s| format!("'{s}'")),
        (-20i32..20).prop_map(|i| i.to_string()),
        Just("TRUE".to_owned()),
    ];
    leaf.prop_recursive(depth, 24, 4, |inner| {
        let n = -3i32..12;
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|args| format!("CONCAT({})", args.join(", "))),
            prop::collection::vec(inner.clone(), 1..4)
                .prop_map(|args| format!("CONCAT_WS({})", args.join(", "))),
            inner.clone().prop_map(|x| format!("LOWER({x})")),
            inner.clone().prop_map(|x| format!("UPPER({x})")),
            inner.clone().prop_map(|x| format!("TRIM({x})")),
            inner.clone().prop_map(|x| format!("STRING({x})")),
            (inner.clone(), n.clone()).prop_map(|(x, n)| format!("LEFT({x}, {n})")),
            (inner.clone(), n.clone()).prop_map(|(x, n)| format!("RIGHT({x}, {n})")),
            (inner.clone(), n.clone()).prop_map(|(x, n)| format!("SUBSTRING({x}, {n})")),
            (inner, n.clone(), n).prop_map(|(x, p, l)| format!("SUBSTRING({x}, {p}, {l})")),
        ]
    })
}

use proptest::prelude::*;

proptest! {
    /// The model's bound on the length of a value holds: the strings functions build, and
    /// the texts `LIKE` scans, are never longer than it assumes.
    #[test]
    fn lengths_are_bounded(
        src in string_expr(4),
        a in "[a-zß ΐ]{0,40}",
        b in "[ ΐ]{0,40}",
    ) {
        let expr = Expr::parse(&src).expect("generated expressions parse");
        let event = crate::Event::new()
            .with("a", a.as_str())
            .and_then(|e| e.with("b", b.as_str()))
            .expect("valid names");
        let mut model = Model { input: to_units(a.len().max(b.len())), costliest: None };
        let bound = model.node(&expr.root).len;
        let value = expr.evaluate(&event).value;
        let len = to_units(value.to_string_value().len());
        prop_assert!(len <= bound, "{src}: {value} is {len} bytes, over {bound}");
    }
}
