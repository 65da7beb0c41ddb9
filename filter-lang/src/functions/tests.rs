//! Built-in function tests: dispatch, CESQL's rules, and the bound on built strings.

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

/// Whether `r` is the failure of a result over [`MAX_BUILT_STRING`]: the empty string with a
/// functionEvaluation error naming the function.
fn too_long(r: &Outcome, name: &str) -> bool {
    matches!(r, Err(Failure { kind: ErrorKind::FunctionEvaluation, value, message })
        if *value == s("") && message.starts_with(name) && message.contains("limit"))
}

#[test]
fn built_strings_are_bounded() {
    let half = s(&"x".repeat(MAX_BUILT_STRING / 2));
    let full = s(&"x".repeat(MAX_BUILT_STRING));
    let over = s(&"x".repeat(MAX_BUILT_STRING + 1));
    // At the bound: built.
    let r = call("CONCAT", &[half.clone(), half.clone()]);
    assert_eq!(r.map(|v| v.to_string_value().len()), Ok(MAX_BUILT_STRING));
    assert!(call("CONCAT_WS", &[s(""), half.clone(), half.clone()]).is_ok());
    assert!(call("UPPER", std::slice::from_ref(&full)).is_ok());
    assert!(call("STRING", std::slice::from_ref(&full)).is_ok());
    // One byte over: refused.
    assert!(too_long(
        &call("CONCAT", &[half.clone(), half.clone(), s("y")]),
        "CONCAT"
    ));
    let ws = call("CONCAT_WS", &[s("-"), half.clone(), half.clone()]);
    assert!(too_long(&ws, "CONCAT_WS"));
    for name in ["LOWER", "UPPER", "TRIM", "STRING"] {
        assert!(
            too_long(&call(name, std::slice::from_ref(&over)), name),
            "{name}"
        );
    }
    assert!(too_long(
        &call("LEFT", &[over.clone(), i32::MAX.into()]),
        "LEFT"
    ));
    assert!(too_long(
        &call("RIGHT", &[over.clone(), i32::MAX.into()]),
        "RIGHT"
    ));
    assert!(too_long(
        &call("LEFT", &[over.clone(), (-1).into()]),
        "LEFT"
    ));
    let sub = call("SUBSTRING", &[over.clone(), 1.into()]);
    assert!(too_long(&sub, "SUBSTRING"));
    // Parts of a long string within the bound are fine, and functions that build nothing
    // read it as before.
    assert_eq!(call("LEFT", &[over.clone(), 2.into()]), Ok(s("xx")));
    assert_eq!(call("RIGHT", &[over.clone(), 1.into()]), Ok(s("x")));
    let tail = call("SUBSTRING", &[over.clone(), (-3).into(), 2.into()]);
    assert_eq!(tail, Ok(s("xx")));
    let n = i32::try_from(MAX_BUILT_STRING + 1).expect("small");
    assert_eq!(
        call("LENGTH", std::slice::from_ref(&over)),
        Ok(Value::Int(n))
    );
}

#[test]
fn case_mapping_is_sized_before_it_is_built() {
    // `ΐ` is two bytes and uppercases to six: a third of the bound in it is over the bound.
    let third = "ΐ".repeat(MAX_BUILT_STRING / 6 + 1);
    assert!(too_long(&call("UPPER", &[s(&third)]), "UPPER"));
    assert!(call("LOWER", &[s(&third)]).is_ok());
    // The size counted is the size built, final sigma included.
    for x in ["ΑΣ ΟΔΟΣ", "straße", "İstanbul", "ﬃ", "K"] {
        for name in ["LOWER", "UPPER"] {
            let Ok(Value::String(built)) = call(name, &[s(x)]) else {
                panic!("{name}({x})");
            };
            let map = |c: char| -> usize {
                if name == "LOWER" {
                    c.to_lowercase().map(char::len_utf8).sum()
                } else {
                    c.to_uppercase().map(char::len_utf8).sum()
                }
            };
            assert_eq!(
                x.chars().map(map).sum::<usize>(),
                built.len(),
                "{name}({x})"
            );
        }
    }
}
