//! Filter bombs: expressions within the parser's limits that, without bounds on evaluation,
//! made one subscriber and one publisher stall a broker. Each is evaluated here against an
//! event with a 1 MiB attribute and must give the right answer within the bounds (strings
//! built by functions, LIKE in one pass); the ones that still do a lot of work per event are
//! refused by the cost check a broker runs when a client subscribes.

use palio_filter::{CostBudget, ErrorKind, Event, Expr, Filter, MAX_BUILT_STRING, Value};

/// The size of the big attribute: 1 MiB, the default largest frame.
const BIG: usize = 1 << 20;

/// An event whose attribute `a` is `BIG` bytes of `a`, and `small` is `"abc"`.
fn event() -> Event {
    Event::new()
        .with("a", "a".repeat(BIG))
        .and_then(|e| e.with("small", "abc"))
        .expect("valid names")
}

fn filter(src: &str) -> Filter {
    Filter::new(src).unwrap_or_else(|e| panic!("{src:?}: {e}"))
}

/// The clauses joined by `OR` in a balanced tree (a chain of a thousand would be too deep).
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

#[test]
fn concat_bomb_builds_nothing_over_the_bound() {
    // 2000 references to a 1 MiB attribute: 2 GiB, were it built.
    let src = format!("CONCAT({}a) = 'x'", "a, ".repeat(1999));
    let expr = Expr::parse(&src).expect("within the parser's limits");
    let evaluation = expr.evaluate(&event());
    assert_eq!(evaluation.value, Value::Bool(false));
    assert_eq!(
        evaluation.first_error(),
        Some(ErrorKind::FunctionEvaluation)
    );
    let message = &evaluation.errors[0].message;
    assert!(
        message.starts_with("CONCAT: the result would be at least 2097152000 bytes"),
        "{message}"
    );
    assert!(!filter(&src).matches(&event()));
    // Nested, the inner calls fail first and the outer ones get their zero value.
    let nested = "CONCAT(CONCAT(a, a), CONCAT(a, a), UPPER(a), LOWER(a), TRIM(a)) = ''";
    let evaluation = Expr::parse(nested).expect("parses").evaluate(&event());
    assert_eq!(evaluation.value, Value::Bool(false));
    assert!(
        evaluation
            .errors
            .iter()
            .all(|e| e.kind == ErrorKind::FunctionEvaluation)
    );
    assert_eq!(evaluation.errors.len(), 5, "{:?}", evaluation.errors);
}

#[test]
fn strings_up_to_the_bound_are_built() {
    let part = "b".repeat(MAX_BUILT_STRING / 4);
    let event = Event::new().with("b", part.as_str()).expect("valid name");
    let four = filter("LENGTH(CONCAT(b, b, b, b)) = 65536");
    assert!(four.matches(&event));
    let five = Expr::parse("CONCAT(b, b, b, b, b)").expect("parses");
    assert_eq!(
        five.evaluate(&event).first_error(),
        Some(ErrorKind::FunctionEvaluation)
    );
}

#[test]
fn concat_bombs_repeated_are_refused() {
    let clause = format!("CONCAT({}a) LIKE '%x%'", "a, ".repeat(30));
    let bomb = any_of(&vec![clause; 100]);
    let f = filter(&bomb);
    let error = f
        .check_cost(&CostBudget::default())
        .expect_err("too costly");
    assert!(
        error.part.starts_with("CONCAT(a, a, a"),
        "{}",
        error.to_string()
    );
    // Were it subscribed anyway, it would still be bounded, and not match.
    assert!(!f.matches(&event()));
}

#[test]
fn like_bombs_match_right_in_one_pass() {
    let event = event();
    let cases = [
        (format!("a LIKE '{}b'", "%a".repeat(1000)), false),
        (format!("a LIKE '{}%'", "%a".repeat(1000)), true),
        (format!("a LIKE '{}%b%'", "%a".repeat(1000)), false),
        (format!("a LIKE '{}%'", "_%".repeat(1000)), true),
        (format!("a LIKE '{}%'", "%a_a".repeat(1000)), true),
        (format!("a LIKE '%{}b%'", "a_".repeat(30)), false),
        (format!("a NOT LIKE '%{}b'", "a".repeat(2000)), true),
    ];
    for (src, expected) in &cases {
        let f = filter(src);
        assert_eq!(f.matches(&event), *expected, "{src}");
        // One pattern over one attribute: linear, and within the budget.
        let cost = f
            .check_cost(&CostBudget::default())
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(cost.units() < 100_000, "{src}: {} units", cost.units());
    }
}

#[test]
fn like_bombs_repeated_are_refused() {
    let clause = format!("a LIKE '{}b%'", "%a".repeat(10));
    let bomb = any_of(&vec![clause; 300]);
    let error = filter(&bomb)
        .check_cost(&CostBudget::default())
        .expect_err("too costly");
    assert!(error.part.starts_with("LIKE pattern '%a%a"), "{error}");
}

#[test]
fn comparison_bombs_are_refused() {
    for bomb in [
        format!("a IN ({}small)", "a, ".repeat(1000)),
        any_of(&vec!["a = small".to_owned(); 1000]),
    ] {
        let error = filter(&bomb)
            .check_cost(&CostBudget::default())
            .expect_err("too costly");
        assert!(error.units > error.budget, "{error}");
    }
}
