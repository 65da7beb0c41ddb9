//! The parser on arbitrary bytes: never panics, and what it accepts prints back to text that
//! parses to the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palio_filter::{Expr, Filter};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(expr) = Expr::parse(src) else {
        return;
    };
    let canonical = expr.canonical();
    let again = Expr::parse(&canonical).expect("canonical text parses");
    assert_eq!(
        again.canonical(),
        canonical,
        "canonical text is a fixed point"
    );
    // Compiling to a filter (function checks, normalisation) must not panic either.
    let _ = Filter::from_expr(expr);
});
