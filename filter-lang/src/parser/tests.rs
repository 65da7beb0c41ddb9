//! Parser tests: structure and precedence, literals, errors with positions, limits, robustness.

use proptest::prelude::*;

use super::*;
use crate::ast::LikePiece;

fn parse_default(src: &str) -> Result<Node, ParseError> {
    parse(src, &Limits::default())
}

/// The tree as a fully parenthesised S-expression, to compare shapes.
fn show(node: &Node) -> String {
    match node {
        Node::Literal(v) => v.to_string(),
        Node::Attr(name) => name.to_string(),
        Node::Exists(name) => format!("(EXISTS {name})"),
        Node::Unary { op, arg } => {
            let op = match op {
                UnaryOp::Not => "NOT",
                UnaryOp::Neg => "-",
            };
            format!("({op} {})", show(arg))
        }
        Node::Binary { op, lhs, rhs } => format!("({op:?} {} {})", show(lhs), show(rhs)),
        Node::Like {
            arg,
            pattern,
            negated,
        } => format!(
            "({}LIKE {} {:?})",
            if *negated { "NOT " } else { "" },
            show(arg),
            pattern.source
        ),
        Node::In { arg, set, negated } => {
            let set: Vec<String> = set.iter().map(show).collect();
            format!(
                "({}IN {} [{}])",
                if *negated { "NOT " } else { "" },
                show(arg),
                set.join(" ")
            )
        }
        Node::Call { name, args } => {
            let args: Vec<String> = args.iter().map(show).collect();
            format!("{name}({})", args.join(" "))
        }
    }
}

fn shape(src: &str) -> String {
    match parse_default(src) {
        Ok(node) => show(&node),
        Err(e) => panic!("{src:?} does not parse: {e}"),
    }
}

fn error(src: &str) -> ParseError {
    match parse_default(src) {
        Ok(node) => panic!("{src:?} parsed as {}", show(&node)),
        Err(e) => e,
    }
}

#[test]
fn logic_operators_share_one_level_left_to_right() {
    assert_eq!(shape("a OR b AND c"), "(And (Or a b) c)");
    assert_eq!(shape("a AND b OR c"), "(Or (And a b) c)");
    assert_eq!(shape("a XOR b AND c OR d"), "(Or (And (Xor a b) c) d)");
    assert_eq!(shape("a OR (b AND c)"), "(Or a (And b c))");
}

#[test]
fn unary_operators_bind_tightest() {
    assert_eq!(shape("NOT a = b"), "(Eq (NOT a) b)");
    assert_eq!(shape("NOT a AND b"), "(And (NOT a) b)");
    assert_eq!(shape("-a * b"), "(Mul (- a) b)");
    assert_eq!(shape("NOT a LIKE 'x'"), "(LIKE (NOT a) \"x\")");
    assert_eq!(shape("NOT EXISTS a"), "(NOT (EXISTS a))");
    assert_eq!(shape("NOT NOT a"), "(NOT (NOT a))");
}

#[test]
fn arithmetic_and_comparison_precedence() {
    assert_eq!(shape("4 * 2 + 4 / 2"), "(Add (Mul 4 2) (Div 4 2))");
    assert_eq!(shape("1 - 2 - 3"), "(Sub (Sub 1 2) 3)");
    assert_eq!(shape("8 / 4 % 3 * 2"), "(Mul (Mod (Div 8 4) 3) 2)");
    assert_eq!(shape("a + 1 < b * 2"), "(Lt (Add a 1) (Mul b 2))");
    assert_eq!(shape("a = b != c <> d"), "(Ne (Ne (Eq a b) c) d)");
    assert_eq!(shape("a >= 1 AND b <= 2"), "(And (Ge a 1) (Le b 2))");
}

#[test]
fn like_and_in_bind_tighter_than_binary_operators() {
    assert_eq!(shape("a + b LIKE 'x'"), "(Add a (LIKE b \"x\"))");
    assert_eq!(shape("a = b IN (1, 2)"), "(Eq a (IN b [1 2]))");
    assert_eq!(shape("a * b IN (1)"), "(Mul a (IN b [1]))");
    assert_eq!(
        shape("x NOT LIKE 'a%' AND y NOT IN ('b')"),
        "(And (NOT LIKE x \"a%\") (NOT IN y ['b']))"
    );
    assert_eq!(shape("x LIKE 'a' IN (TRUE)"), "(IN (LIKE x \"a\") [TRUE])");
    assert_eq!(
        shape("x in (1 + 2, f(y), (z))"),
        "(IN x [(Add 1 2) F(y) z])"
    );
}

#[test]
fn keywords_functions_and_identifiers_are_case_insensitive() {
    assert_eq!(
        shape("EXISTS SOURCE and exists Id"),
        "(And (EXISTS source) (EXISTS id))"
    );
    assert_eq!(shape("MyExt"), "myext");
    assert_eq!(shape("true Or FaLsE"), "(Or TRUE FALSE)");
    assert_eq!(shape("concat_Ws(',', a)"), "CONCAT_WS(',' a)");
    assert_eq!(shape("abs (1)"), "ABS(1)");
    assert_eq!(shape("f()"), "F()");
    assert_eq!(shape("1abc = a1"), "(Eq 1abc a1)");
}

#[test]
fn integer_literals() {
    assert_eq!(shape("-2147483648"), "-2147483648");
    assert_eq!(shape("2147483647"), "2147483647");
    assert_eq!(shape("+7"), "7");
    assert_eq!(shape("--10"), "(- -10)");
    assert_eq!(shape("- 10"), "(- 10)");
    assert_eq!(shape("4 - 1"), "(Sub 4 1)");
    assert_eq!(shape("4 -1"), "(Sub 4 1)");
    assert_eq!(shape("4 + -1"), "(Add 4 -1)");
    assert_eq!(shape("ABS(-2147483648)"), "ABS(-2147483648)");
    assert_eq!(shape("007"), "7");

    let e = error("2147483648");
    assert_eq!(
        e.message,
        "integer literal 2147483648 does not fit in 32 bits"
    );
    let e = error("1 + -2147483649");
    assert_eq!((e.offset, e.column), (4, 5));
    assert!(e.message.contains("-2147483649"), "{}", e.message);
    // With a space the sign is an operator, and 2147483648 alone does not fit.
    assert!(
        error("- 2147483648")
            .message
            .contains("literal 2147483648 ")
    );
    assert!(error(&"9".repeat(100)).message.contains("..."));
    assert_eq!(error("+ 1").message, "unexpected token '+'");
}

#[test]
fn string_literals() {
    // Displayed re-escaped by `Value`'s Display: the same text here.
    assert_eq!(shape(r#"'a"b\'c'"#), r#"'a"b\'c'"#);
    let Node::Literal(Value::String(s)) = parse_default(r#""a'b\"c""#).unwrap() else {
        panic!("not a string literal");
    };
    assert_eq!(s, "a'b\"c");
    let Node::Literal(Value::String(s)) = parse_default(r"'ab\c'").unwrap() else {
        panic!("not a string literal");
    };
    assert_eq!(s, r"ab\c");
    let e = error("a = 'abc");
    assert_eq!(
        (e.offset, e.message.as_str()),
        (4, "unterminated string literal")
    );
}

#[test]
fn like_patterns_are_compiled() {
    let Node::Like { pattern, .. } = parse_default(r"x LIKE 'a\%b%%_'").unwrap() else {
        panic!("not LIKE");
    };
    assert_eq!(pattern.source, r"a\%b%%_");
    assert_eq!(
        pattern.pieces,
        [
            LikePiece::Literal("a%b".into()),
            LikePiece::AnyString,
            LikePiece::AnyChar
        ]
    );
    let e = error("x LIKE 123");
    assert_eq!(
        e.message,
        "expected a string literal as LIKE pattern but found '123'"
    );
    assert_eq!(e.offset, 7);
    assert!(error("x LIKE y").message.contains("string literal"));
    assert!(error("x LIKE").message.contains("end of input"));
}

#[test]
fn errors_have_messages_and_positions() {
    let e = error("(a = 1");
    assert_eq!(e.message, "expected ')' but found end of input");
    assert_eq!((e.offset, e.line, e.column), (6, 1, 7));

    let e = error("a = 1\n  AND AND b");
    assert_eq!(e.message, "unexpected token 'AND'");
    assert_eq!((e.offset, e.line, e.column), (12, 2, 7));
    assert_eq!(e.to_string(), "unexpected token 'AND' at line 2, column 7");

    let e = error("'é' = é");
    assert_eq!((e.offset, e.column), (7, 7));
    assert_eq!(e.message, "unexpected character 'é'");

    assert_eq!(
        error("").message,
        "expected an expression but found end of input"
    );
    assert_eq!(error("a b").message, "unexpected token 'b'");
    assert_eq!(error("a = 1 )").message, "unexpected token ')'");
    assert_eq!(error("a 'x'").message, "unexpected token string 'x'");
    assert_eq!(
        error("x NOT y").message,
        "expected LIKE or IN after NOT but found 'y'"
    );
    assert_eq!(
        error("x IN 1").message,
        "expected '(' after IN but found '1'"
    );
    assert_eq!(
        error("x IN ()").message,
        "an IN list needs at least one element"
    );
    assert_eq!(
        error("x IN (1 2)").message,
        "expected ',' or ')' in IN list but found '2'"
    );
    assert_eq!(
        error("f(1 2)").message,
        "expected ',' or ')' in argument list but found '2'"
    );
    assert_eq!(error("f(1,)").message, "unexpected token ')'");
    assert_eq!(error("EXISTS 'a'").offset, 7);
    assert_eq!(
        error("EXISTS AND").message,
        "expected an attribute name after EXISTS but found 'AND'"
    );
    assert!(
        error("a_b = 1")
            .message
            .starts_with("invalid identifier 'a_b'")
    );
    assert!(
        error(&"a".repeat(200))
            .message
            .starts_with("invalid identifier")
    );
    assert!(
        error("f1(2)")
            .message
            .starts_with("invalid function name 'f1'")
    );
    assert!(
        error("_f(2)")
            .message
            .starts_with("invalid function name '_f'")
    );
    assert_eq!(error("a ! b").message, "unexpected character '!'");
    assert_eq!(error("AND").message, "unexpected token 'AND'");
}

#[test]
fn max_len_is_checked_first() {
    let limits = Limits {
        max_len: 10,
        ..Limits::default()
    };
    assert!(parse("aaaa = 'b'", &limits).is_ok());
    let e = parse("aaaa = 'bc'", &limits).unwrap_err();
    assert_eq!(
        e.message,
        "expression is 11 bytes long, more than max_len = 10"
    );
    // Checked before lexing: the unterminated string is never looked at.
    let e = parse("'unterminated string", &limits).unwrap_err();
    assert!(e.message.contains("max_len = 10"), "{}", e.message);
}

#[test]
fn max_depth_bounds_nesting() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let ok = |src: &str| parse(src, &limits).map(|n| show(&n));
    let too_deep = |src: &str| {
        let e = parse(src, &limits).expect_err(src);
        assert_eq!(
            e.message, "expression is nested deeper than max_depth = 3",
            "{src}"
        );
    };
    // Heights: a literal or attribute is 1; each operator and call adds 1; parentheses add none.
    assert!(ok("(a + b) * c").is_ok());
    too_deep("(a + b) * c - d");
    assert!(ok("1 + 2 + 3").is_ok());
    too_deep("1 + 2 + 3 + 4");
    assert!(ok("- - 1").is_ok());
    too_deep("- - - 1");
    too_deep("NOT NOT NOT a");
    assert!(ok("f(g(a))").is_ok());
    too_deep("f(g(h(a)))");
    assert!(ok("x IN (1, 2 + 3)").is_ok());
    too_deep("x IN (1, (2 + 3) * 4)");
    too_deep("x LIKE 'a' LIKE 'b' LIKE 'c'");
    // The parser's own recursion is bounded at twice max_depth (the root is level 1): five
    // parentheses, not six.
    assert!(ok("(((((a)))))").is_ok());
    too_deep("((((((a))))))");
}

#[test]
fn deep_input_is_a_clean_error() {
    for src in [
        "(".repeat(100_000),
        format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
        "- ".repeat(50_000),
        "NOT ".repeat(20_000),
        "f(".repeat(30_000),
        "1+".repeat(8_000) + "1",
        "x IN (".repeat(10_000),
    ] {
        let limits = Limits {
            max_len: usize::MAX,
            ..Limits::default()
        };
        let e = parse(&src, &limits).expect_err("too deep");
        assert!(
            e.message.contains("max_depth = 64"),
            "{}...: {}",
            &src[..20],
            e.message
        );
    }
    // At the limit exactly it parses: 127 parentheses take the parser to level 128.
    let src = format!("{}1{}", "(".repeat(127), ")".repeat(127));
    assert!(parse_default(&src).is_ok());
    let src = format!("{}1{}", "(".repeat(128), ")".repeat(128));
    assert!(parse_default(&src).is_err());
}

/// The canonical text parenthesises every operation, so it nests deeper than the source; it must
/// still parse within the limits that accepted the source. Found by the `parse` fuzz target: 33
/// negations (height 34) printed as 33 nested `(- ...)`, refused as deeper than 64.
#[test]
fn canonical_text_of_the_deepest_trees_parses_back() {
    let height = Limits::default().max_depth;
    let sources = [
        format!("{}WV", "-".repeat(33)),
        format!("{}x", "- ".repeat(height - 1)),
        format!("{}x", "NOT ".repeat(height - 1)),
        // Left-associative: the canonical text wraps each operation in one more parenthesis.
        format!("1{}", " + 1".repeat(height - 1)),
        // Right-nested: the source's parentheses already cost the parser two levels per node.
        format!("{}1{}", "1 + (".repeat(height - 2), ")".repeat(height - 2)),
        format!("{}x{}", "f(".repeat(height - 1), ")".repeat(height - 1)),
        format!("{}1{}", "x IN (".repeat(height - 1), ")".repeat(height - 1)),
    ];
    for src in sources {
        let tree = parse_default(&src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        let canonical = tree.to_string();
        let again = parse_default(&canonical).unwrap_or_else(|e| panic!("{canonical:?}: {e}"));
        assert_eq!(again, tree, "{src:?} printed as {canonical:?}");
    }
}

#[test]
fn max_in_list_bounds_sets() {
    let limits = Limits {
        max_in_list: 3,
        ..Limits::default()
    };
    assert!(parse("x IN (1, 2, 3)", &limits).is_ok());
    let e = parse("x IN (1, 2, 3, 4)", &limits).unwrap_err();
    assert_eq!(e.message, "IN list has more than max_in_list = 3 elements");
    assert_eq!(e.offset, 15);
}

/// Strings assembled from CESQL's own tokens, so that most are close to valid.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(vec![
        "(",
        ")",
        ",",
        "+",
        "-",
        "*",
        "/",
        "%",
        "=",
        "!=",
        "<>",
        "<",
        "<=",
        ">",
        ">=",
        "NOT",
        "AND",
        "OR",
        "XOR",
        "LIKE",
        "IN",
        "EXISTS",
        "TRUE",
        "false",
        "a",
        "B",
        "x1",
        "0",
        "7",
        "2147483647",
        "2147483648",
        "'s'",
        "\"t\"",
        "'a%_\\%'",
        "'",
        "ABS",
        "CONCAT",
        "f",
        "_",
        "é",
        " ",
        "\n",
    ]);
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.join(" "))
}

proptest! {
    #[test]
    fn arbitrary_strings_never_panic(src in any::<String>()) {
        let _ = parse_default(&src);
    }

    #[test]
    fn token_soup_never_panics(src in token_soup()) {
        if let Err(e) = parse_default(&src) {
            prop_assert!(e.offset <= src.len());
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }

    #[test]
    fn tight_limits_never_panic(src in token_soup(), depth in 0usize..4, len in 0usize..40) {
        let limits = Limits { max_len: len, max_depth: depth, max_in_list: 1 };
        let _ = parse(&src, &limits);
    }
}

/// The canonical text (`Node`'s `Display`) parses back to the same tree. Found by the `parse`
/// fuzz target: `(-0)` re-parsed as the literal `-0`, dropping a negation.
#[test]
fn canonical_text_parses_back_to_the_same_tree() {
    for src in [
        "----+0",
        "-0",
        "- 5",
        "-(-2147483648)",
        "NOT -x",
        "a - -1",
        "'it\\'s' LIKE 'it\\'%'",
        "x NOT IN (1, '2', TRUE)",
        "CONCAT_WS(',', a, b) = \"x\"",
        "a OR b AND NOT c XOR EXISTS d",
    ] {
        let tree = parse_default(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
        let canonical = tree.to_string();
        let again = parse_default(&canonical).unwrap_or_else(|e| panic!("{canonical:?}: {e}"));
        assert_eq!(again, tree, "{src:?} printed as {canonical:?}");
    }
}
