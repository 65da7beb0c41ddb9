//! Evaluator tests: CESQL's value-plus-errors rules, casts, overflow, short-circuit, functions,
//! and agreement between the complete and fail-fast modes.

use proptest::prelude::*;

use crate::error::ErrorKind::{
    self, Cast, FunctionEvaluation, Math, MissingAttribute, MissingFunction,
};
use crate::{Event, Expr, Filter, FilterError, Value};

fn event() -> Event {
    Event::new()
        .with("type", "alarm")
        .and_then(|e| e.with("level", 3))
        .and_then(|e| e.with("text", "5"))
        .and_then(|e| e.with("flag", true))
        .and_then(|e| e.with("word", "TRUE"))
        .expect("valid names")
}

/// Evaluates `src` against [`event`]: the value and the kinds of the errors raised, in order.
/// Also checks that the fail-fast mode agrees with the complete evaluation.
fn eval(src: &str) -> (Value, Vec<ErrorKind>) {
    let expr = Expr::parse(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    let event = event();
    let evaluation = expr.evaluate(&event);
    let kinds: Vec<ErrorKind> = evaluation.errors.iter().map(|e| e.kind).collect();
    let should_match = evaluation.value == Value::Bool(true) && kinds.is_empty();
    assert_eq!(expr.matches(&event), should_match, "matches() of {src:?}");
    (evaluation.value, kinds)
}

fn ok(src: &str) -> Value {
    let (value, errors) = eval(src);
    assert!(errors.is_empty(), "{src:?} raised {errors:?}");
    value
}

#[test]
fn simple_filters() {
    assert_eq!(ok("type = 'alarm' AND level > 2"), Value::Bool(true));
    assert_eq!(ok("type = 'alarm' AND level > 3"), Value::Bool(false));
    assert_eq!(ok("level"), Value::Int(3));
    assert_eq!(ok("text + 1"), Value::Int(6));
    assert_eq!(ok("EXISTS flag AND NOT EXISTS nope"), Value::Bool(true));
}

#[test]
fn arithmetic_overflow_saturates_with_a_math_error() {
    let max = Value::Int(i32::MAX);
    let min = Value::Int(i32::MIN);
    assert_eq!(eval("2147483647 + 1"), (max.clone(), vec![Math]));
    assert_eq!(eval("-2147483648 - 1"), (min.clone(), vec![Math]));
    assert_eq!(eval("65536 * 65536"), (max.clone(), vec![Math]));
    assert_eq!(eval("65536 * -65536"), (min, vec![Math]));
    assert_eq!(eval("-2147483648 / -1"), (max.clone(), vec![Math]));
    assert_eq!(eval("-(-2147483648)"), (max.clone(), vec![Math]));
    assert_eq!(eval("ABS(-2147483648)"), (max, vec![Math]));
    assert_eq!(ok("-2147483648 % -1"), Value::Int(0));
    assert_eq!(ok("-7 % 3"), Value::Int(-1));
    assert_eq!(ok("-7 / 2"), Value::Int(-3));
    assert_eq!(eval("1 % 0"), (Value::Int(0), vec![Math]));
}

#[test]
fn failed_operands_give_the_operators_zero_value() {
    assert_eq!(
        eval("missing"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(eval("missing / 0"), (Value::Int(0), vec![MissingAttribute]));
    assert_eq!(eval("1 / missing"), (Value::Int(0), vec![MissingAttribute]));
    assert_eq!(
        eval("missing + 1 / 0"),
        (Value::Int(0), vec![MissingAttribute, Math])
    );
    assert_eq!(eval("-missing"), (Value::Int(0), vec![MissingAttribute]));
    assert_eq!(
        eval("NOT missing"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(
        eval("missing != 2"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(
        eval("missing NOT LIKE 'x'"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(
        eval("missing NOT IN (1)"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(
        eval("1 NOT IN (missing)"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(
        eval("LENGTH(missing)"),
        (Value::Int(0), vec![MissingAttribute])
    );
    assert_eq!(
        eval("UPPER(missing)"),
        (Value::from(""), vec![MissingAttribute])
    );
    assert_eq!(eval("BOOL(1 / 0)"), (Value::Bool(false), vec![Math]));
    // A failed operand is not cast: no extra cast error.
    assert_eq!(
        eval("NOT LENGTH(missing)"),
        (Value::Bool(false), vec![MissingAttribute])
    );
}

#[test]
fn own_cast_failures_use_the_target_zero_value() {
    assert_eq!(eval("NOT 10"), (Value::Bool(true), vec![Cast]));
    assert_eq!(eval("-'abc'"), (Value::Int(0), vec![Cast]));
    assert_eq!(eval("'abc' + 2"), (Value::Int(2), vec![Cast]));
    assert_eq!(eval("'abc' = 0"), (Value::Bool(true), vec![Cast]));
    assert_eq!(eval("'abc' != 1"), (Value::Bool(true), vec![Cast]));
    assert_eq!(eval("1 < 'x'"), (Value::Bool(false), vec![Cast]));
    assert_eq!(eval("10 AND TRUE"), (Value::Bool(false), vec![Cast]));
    assert_eq!(eval("TRUE XOR 'maybe'"), (Value::Bool(true), vec![Cast]));
    assert_eq!(eval("1 IN ('a', 1)"), (Value::Bool(true), vec![Cast]));
    assert_eq!(eval("LEFT('abc', 'x')"), (Value::from(""), vec![Cast]));
}

#[test]
fn equality_casts_left_to_the_right_type() {
    assert_eq!(ok("true = 'TRUE'"), Value::Bool(false));
    assert_eq!(ok("'TRUE' = true"), Value::Bool(true));
    assert_eq!(ok("word = flag"), Value::Bool(true));
    assert_eq!(ok("flag = word"), Value::Bool(false));
    assert_eq!(ok("text = 5"), Value::Bool(true));
    assert_eq!(ok("level = '3'"), Value::Bool(true));
    assert_eq!(ok("level <> '03'"), Value::Bool(true));
    assert_eq!(ok("'03' = level"), Value::Bool(true));
}

#[test]
fn in_casts_elements_to_the_left_type() {
    assert_eq!(ok("'TRUE' IN (TRUE, 'false')"), Value::Bool(false));
    assert_eq!(ok("TRUE IN ('tRuE')"), Value::Bool(true));
    assert_eq!(ok("level IN ('3', 4)"), Value::Bool(true));
    assert_eq!(ok("type NOT IN ('a', 'b')"), Value::Bool(true));
    assert_eq!(ok("type IN (type)"), Value::Bool(true));
}

#[test]
fn and_or_short_circuit() {
    assert_eq!(ok("FALSE AND missing"), Value::Bool(false));
    assert_eq!(ok("TRUE OR missing"), Value::Bool(true));
    assert_eq!(ok("FALSE AND 1 / 0 = 0"), Value::Bool(false));
    // A failed left operand still decides: `missing` is false, so AND stops there...
    assert_eq!(
        eval("missing AND 1 / 0 = 0"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    // ...and OR evaluates its right side, whose errors are reported too.
    assert_eq!(
        eval("missing OR 1 / 0 = 0"),
        (Value::Bool(false), vec![MissingAttribute, Math])
    );
    assert_eq!(
        eval("missing OR TRUE"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    // XOR never short-circuits.
    assert_eq!(
        eval("TRUE XOR missing"),
        (Value::Bool(false), vec![MissingAttribute])
    );
    assert_eq!(
        eval("TRUE AND missing"),
        (Value::Bool(false), vec![MissingAttribute])
    );
}

#[test]
fn functions_cast_their_arguments() {
    assert_eq!(ok("LENGTH(12345)"), Value::Int(5));
    assert_eq!(ok("CONCAT(1, TRUE, 'x')"), Value::from("1truex"));
    assert_eq!(ok("SUBSTRING(123456, '2', TRUE)"), Value::from("2"));
    assert_eq!(ok("ABS('-5')"), Value::Int(5));
    assert_eq!(ok("lower(TYPE) = 'alarm'"), Value::Bool(true));
    assert_eq!(
        ok("IS_INT(text) AND NOT IS_INT(type) AND IS_BOOL(word)"),
        Value::Bool(true)
    );
    assert_eq!(eval("INT(type)"), (Value::Int(0), vec![Cast]));
    assert_eq!(
        eval("RIGHT(type, -1)"),
        (Value::from("alarm"), vec![FunctionEvaluation])
    );
}

#[test]
fn unknown_functions_are_missing_at_evaluation_and_rejected_by_filters() {
    assert_eq!(eval("NOPE(1)"), (Value::Bool(false), vec![MissingFunction]));
    assert_eq!(
        eval("ABS(1, 2)"),
        (Value::Bool(false), vec![MissingFunction])
    );
    assert_eq!(
        eval("CONCAT_WS()"),
        (Value::Bool(false), vec![MissingFunction])
    );
    assert_eq!(
        Filter::new("level > 1 AND abs(level, 2) = 1"),
        Err(FilterError::UnknownFunction {
            name: "ABS".into(),
            arity: 2
        })
    );
    assert!(matches!(
        Filter::new("x IN (1, f(2))"),
        Err(FilterError::UnknownFunction { arity: 1, .. })
    ));
    assert!(Filter::new("SUBSTRING(type, 1, LENGTH(CONCAT()))  = ''").is_ok());
}

#[test]
fn error_messages_say_what_failed() {
    let expr = Expr::parse("missing + 'x' + 1 / 0").unwrap();
    let evaluation = expr.evaluate(&event());
    let messages: Vec<String> = evaluation.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "missingAttribute error: attribute missing is missing",
            "math error: division by zero in 1 / 0",
        ]
    );
    let evaluation = Expr::parse("'x' + 1").unwrap().evaluate(&event());
    assert_eq!(
        evaluation.errors[0].to_string(),
        "cast error: cannot cast 'x' to Integer"
    );
}

#[test]
fn like_casts_to_string() {
    assert_eq!(ok("level LIKE '3'"), Value::Bool(true));
    assert_eq!(ok("flag LIKE 't%e'"), Value::Bool(true));
    assert_eq!(ok("type LIKE 'a_a%'"), Value::Bool(true));
    assert_eq!(ok("type NOT LIKE '%z%'"), Value::Bool(true));
}

/// Syntactically valid expressions over [`event`]'s attributes (and a missing one), mixing
/// types freely so that casts, errors and short-circuits all occur. Operands are combined with
/// or without parentheses, so precedence varies too.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(vec![
        "TRUE",
        "FALSE",
        "0",
        "1",
        "-7",
        "2147483647",
        "-2147483648",
        "'5'",
        "'TRUE'",
        "'alarm'",
        "''",
        "type",
        "level",
        "text",
        "flag",
        "word",
        "missing",
        "EXISTS level",
        "EXISTS nope",
    ])
    .prop_map(str::to_owned);
    leaf.prop_recursive(5, 48, 3, |inner| {
        let op = prop::sample::select(vec![
            "AND", "OR", "XOR", "=", "!=", "<>", "<", "<=", ">", ">=", "+", "-", "*", "/", "%",
        ]);
        let function = prop::sample::select(vec![
            "ABS",
            "LENGTH",
            "CONCAT",
            "CONCAT_WS",
            "LEFT",
            "RIGHT",
            "SUBSTRING",
            "INT",
            "BOOL",
            "STRING",
            "IS_INT",
            "UPPER",
            "TRIM",
            "NOPE",
        ]);
        let pattern = prop::sample::select(vec!["'a%'", "'%'", "'_'", "'%5'", "'tr_e'", "''"]);
        prop_oneof![
            (inner.clone(), op, inner.clone(), any::<bool>()).prop_map(|(l, op, r, paren)| {
                if paren {
                    format!("({l}) {op} ({r})")
                } else {
                    format!("{l} {op} {r}")
                }
            }),
            (prop::sample::select(vec!["NOT ", "-", "- "]), inner.clone())
                .prop_map(|(op, e)| format!("{op}({e})")),
            (inner.clone(), any::<bool>(), pattern)
                .prop_map(|(e, not, p)| format!("({e}) {}LIKE {p}", if not { "NOT " } else { "" })),
            (
                inner.clone(),
                any::<bool>(),
                prop::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(|(e, not, set)| {
                    format!(
                        "({e}) {}IN ({})",
                        if not { "NOT " } else { "" },
                        set.join(", ")
                    )
                }),
            (function, prop::collection::vec(inner, 0..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Every generated expression parses, evaluation does not panic, and `matches` (fail fast)
    /// is true exactly when the complete evaluation gives `true` with no error.
    #[test]
    fn fail_fast_agrees_with_complete_evaluation(src in expression()) {
        let expr = Expr::parse(&src).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
        let event = event();
        let evaluation = expr.evaluate(&event);
        let should_match = evaluation.value == Value::Bool(true) && evaluation.errors.is_empty();
        prop_assert_eq!(expr.matches(&event), should_match, "{}", src);
    }
}
