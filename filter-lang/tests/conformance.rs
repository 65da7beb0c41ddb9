//! The CESQL v1 conformance suite (the CloudEvents TCK), every case of every file.
//!
//! Reads every `*.yaml` file in `tests/cesql-tck/` of this crate (a copy of the TCK from
//! github.com/cloudevents/spec, Apache-2.0, see the `NOTICE` there), or in the directory named by
//! `PALIO_CESQL_TCK` (e.g. a newer TCK), so files added later are picked up without touching
//! this test. Each case's expression is parsed and evaluated in complete-evaluation mode; the
//! value must equal `result` when one is given, and the errors must include the expected
//! `error` kind (or be empty when none is expected). `Expr::matches`, the fail-fast mode, is
//! checked against the complete evaluation on every case, and every case must cost at most a
//! sixteenth of the default cost budget. All failures are reported together.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use palio_filter::{CostBudget, DEFAULT_COST_BUDGET, Event, Expr, Value};
use serde::Deserialize;
use serde_json::{Value as Json, json};

/// One TCK file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suite {
    name: String,
    tests: Vec<Case>,
}

/// One TCK case (see `cesql-tck/README.md`). Unknown fields are rejected, so a TCK extension
/// this test does not understand fails loudly instead of being silently skipped.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Case {
    name: String,
    /// Read as the scalar's text: `expression: TRUE` is the expression `TRUE`, not a boolean.
    expression: String,
    result: Option<Json>,
    error: Option<String>,
    event: Option<Json>,
    event_overrides: Option<serde_json::Map<String, Json>>,
}

fn tck_dir() -> PathBuf {
    match std::env::var_os("PALIO_CESQL_TCK") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cesql-tck"),
    }
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "cannot read the CESQL TCK directory {} ({e}); set PALIO_CESQL_TCK to its path",
            dir.display()
        )
    });
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.yaml files in the CESQL TCK directory {}",
        dir.display()
    );
    files
}

/// The event of a case: `event` if given, else a valid CloudEvent with `eventOverrides`.
fn case_event(case: &Case) -> Result<Event, String> {
    let json = match &case.event {
        Some(event) => event.clone(),
        None => {
            let mut event = json!({
                "specversion": "1.0",
                "id": "conformance-id",
                "source": "https://palio.invalid/conformance",
                "type": "conformance.test",
            });
            if let Some(overrides) = &case.event_overrides {
                for (name, value) in overrides {
                    event[name] = value.clone();
                }
            }
            event
        }
    };
    Event::from_cloudevent_json(&json).map_err(|e| format!("invalid event {json}: {e}"))
}

/// The expected result as a CESQL value.
fn expected_value(result: &Json) -> Result<Value, String> {
    match result {
        Json::Bool(b) => Ok(Value::Bool(*b)),
        Json::String(s) => Ok(Value::String(s.clone())),
        Json::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Value::Int)
            .ok_or_else(|| format!("result {n} is not a 32-bit integer")),
        other => Err(format!("unsupported result {other}")),
    }
}

/// Runs one case; `Err` describes how it failed.
fn run_case(case: &Case) -> Result<(), String> {
    let expected_error = case.error.as_deref();
    let expected_result = case.result.as_ref().map(expected_value).transpose()?;
    let event = case_event(case)?;

    let expr = match Expr::parse(&case.expression) {
        Ok(expr) => expr,
        Err(e) if expected_error == Some("parse") => {
            // The message must say where, even though only the kind is checked.
            return (e.line >= 1 && e.column >= 1)
                .then_some(())
                .ok_or_else(|| format!("parse error without a position: {e:?}"));
        }
        Err(e) => return Err(format!("unexpected parse error: {e}")),
    };
    if expected_error == Some("parse") {
        return Err(format!("expected a parse error, but it parsed as {expr:?}"));
    }

    // Every case is a sensible expression: far within the default cost budget.
    let cost = expr
        .check_cost(&CostBudget::default())
        .map_err(|e| format!("refused by the cost model: {e}"))?;
    if cost.units() > DEFAULT_COST_BUDGET / 16 {
        return Err(format!("costs {} units", cost.units()));
    }

    let evaluation = expr.evaluate(&event);
    let kinds: Vec<&str> = evaluation.errors.iter().map(|e| e.kind.as_str()).collect();
    let mut problems = Vec::new();
    if let Some(expected) = &expected_result
        && evaluation.value != *expected
    {
        problems.push(format!(
            "value {:?}, expected {expected:?}",
            evaluation.value
        ));
    }
    match expected_error {
        Some(kind) if !kinds.contains(&kind) => {
            problems.push(format!("errors {kinds:?}, expected one of kind {kind}"));
        }
        None if !evaluation.errors.is_empty() => {
            problems.push(format!("unexpected errors {:?}", evaluation.errors));
        }
        _ => {}
    }
    let should_match = evaluation.value == Value::Bool(true) && evaluation.errors.is_empty();
    if expr.matches(&event) != should_match {
        problems.push(format!(
            "matches() is {}, but the complete evaluation gave {:?} with errors {kinds:?}",
            !should_match, evaluation.value
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[test]
fn cesql_conformance_suite() {
    let dir = tck_dir();
    let files = yaml_files(&dir);
    let mut ran = 0;
    let mut failures = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let suite: Suite = serde_norway::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not a TCK file: {e}", file.display()));
        let file_name = file.file_name().map_or_else(
            || file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if suite.tests.is_empty() {
            let _ = writeln!(failures, "{file_name} ({}) has no cases", suite.name);
        }
        for case in &suite.tests {
            ran += 1;
            if let Err(problem) = run_case(case) {
                let _ = writeln!(
                    failures,
                    "{file_name} ({}) / {}: `{}` (expected result {}, error {}): {problem}",
                    suite.name,
                    case.name,
                    case.expression,
                    case.result.as_ref().map_or("-".to_owned(), Json::to_string),
                    case.error.as_deref().unwrap_or("-"),
                );
            }
        }
    }
    assert!(ran > 0, "the CESQL TCK in {} has no cases", dir.display());
    assert!(
        failures.is_empty(),
        "CESQL conformance: {} failures among {ran} cases from {} files:\n{failures}",
        failures.lines().count(),
        files.len()
    );
    eprintln!(
        "{ran} CESQL conformance cases from {} files in {} passed",
        files.len(),
        dir.display()
    );
}
