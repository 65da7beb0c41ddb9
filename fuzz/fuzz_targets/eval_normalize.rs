//! Evaluation and normalisation on arbitrary expressions and events: never panics, and the
//! routable form is sound (and equal to the expression when it claims to be exact).
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use palio_filter::{AttrName, Event, Expr, Filter, Value};

#[derive(Debug, Arbitrary)]
enum FuzzValue {
    Bool(bool),
    Int(i32),
    SmallInt(i8),
    Str(String),
    Word(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    expression: String,
    attrs: Vec<(u8, FuzzValue)>,
}

const NAMES: [&str; 6] = ["a", "b", "c", "type", "level", "x0"];
const WORDS: [&str; 6] = ["alarm", "al", "", "5", "true", "TRUE"];

fuzz_target!(|input: Input| {
    let mut event = Event::new();
    for (name, value) in input.attrs.iter().take(8) {
        let name = AttrName::new(NAMES[usize::from(*name) % NAMES.len()]).expect("valid name");
        let value = match value {
            FuzzValue::Bool(b) => Value::Bool(*b),
            FuzzValue::Int(i) => Value::Int(*i),
            FuzzValue::SmallInt(i) => Value::Int(i32::from(*i)),
            FuzzValue::Str(s) => Value::String(s.clone()),
            FuzzValue::Word(w) => Value::from(WORDS[usize::from(*w) % WORDS.len()]),
        };
        event.set(name, value);
    }
    let Ok(expr) = Expr::parse(&input.expression) else {
        return;
    };
    let evaluation = expr.evaluate(&event);
    let full = expr.matches(&event);
    assert_eq!(
        full,
        evaluation.value == Value::Bool(true) && evaluation.errors.is_empty(),
        "fail-fast and complete evaluation agree"
    );
    let Ok(filter) = Filter::from_expr(expr) else {
        return;
    };
    let routable = filter.routable();
    if full {
        assert!(routable.matches(&event), "routable form is sound");
    }
    if routable.is_exact() {
        assert_eq!(
            routable.matches(&event),
            full,
            "exact routable form is exact"
        );
    }
});
