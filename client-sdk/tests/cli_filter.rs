//! `palio filter …` through the real binary: the output contract scripts depend on.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn palio(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palio"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("palio runs");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(pipe);
    child.wait_with_output().expect("palio exits")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}")))
        .collect()
}

#[test]
fn eval_prints_result_and_no_error() {
    let out = palio(
        &[
            "filter",
            "eval",
            "type = 'alarm' AND level > 2",
            "--event",
            r#"{"specversion":"1.0","id":"1","source":"s","type":"alarm","level":3}"#,
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_lines(&out), [json!({"result": true, "error": null})]);
}

#[test]
fn eval_reports_cesql_errors_and_still_exits_zero() {
    let cases = [
        (
            "missing * 5",
            json!({"result": 0, "error": "missingAttribute"}),
        ),
        ("5 / 0", json!({"result": 0, "error": "math"})),
        ("x LIKE 123", json!({"result": false, "error": "parse"})),
        (
            "NOPE(1)",
            json!({"result": false, "error": "missingFunction"}),
        ),
        ("CONCAT('a', 1)", json!({"result": "a1", "error": null})),
    ];
    for (expr, expected) in cases {
        let out = palio(&["filter", "eval", expr, "--event", "{}"], None);
        assert!(out.status.success(), "{expr}: {out:?}");
        assert_eq!(json_lines(&out), [expected], "{expr}");
    }
}

#[test]
fn eval_rejects_an_unreadable_event() {
    let out = palio(&["filter", "eval", "true", "--event", "{not json"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--event"));
}

#[test]
fn batch_answers_every_line_in_order() {
    let input = [
        r#"{"expression": "a = 1", "event": {"a": 1}}"#,
        "",
        r#"{"expression": "a = 1", "event": {"a": 2}}"#,
        r#"{"expression": "oops"#,
        r#"{"expression": "UPPER(t)", "event": {"t": "x"}}"#,
        r#"{"expression": "EXISTS t"}"#,
    ]
    .join("\n");
    let out = palio(&["filter", "eval", "--batch", "-"], Some(&input));
    assert_eq!(out.status.code(), Some(1), "one line was unreadable");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[0], json!({"result": true, "error": null}));
    assert_eq!(lines[1], json!({"result": false, "error": null}));
    assert_eq!(lines[2]["error"], "generic");
    assert!(lines[2]["message"].as_str().unwrap().starts_with("line 4:"));
    assert_eq!(lines[3], json!({"result": "X", "error": null}));
    assert_eq!(lines[4], json!({"result": false, "error": null}));
}

#[test]
fn batch_reads_a_file() {
    let dir = std::env::temp_dir().join(format!("palio-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("batch.jsonl");
    std::fs::write(&path, "{\"expression\": \"1 + 1\"}\n").unwrap();
    let out = palio(&["filter", "eval", "--batch", path.to_str().unwrap()], None);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_lines(&out), [json!({"result": 2, "error": null})]);
}

#[test]
fn covers_is_sound_and_complete_on_one_attribute() {
    let cases = [
        ("x > 0", "x > 5 AND x < 10", true),
        ("x > 5 AND x < 10", "x > 0", false),
        ("type = 'alarm'", "type = 'alarm' AND level > 2", true),
        ("type LIKE 'al%'", "type = 'alarm'", true),
        ("type = 'alarm'", "type LIKE 'al%'", false),
    ];
    for (a, b, expected) in cases {
        let out = palio(&["filter", "covers", a, b], None);
        assert!(out.status.success(), "{a} / {b}: {out:?}");
        assert_eq!(
            json_lines(&out),
            [json!({"covers": expected})],
            "{a} covers {b}"
        );
    }
}

#[test]
fn covers_rejects_invalid_filters() {
    let out = palio(&["filter", "covers", "x >", "x = 1"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid filter A"), "{err}");
    assert!(
        err.contains("column"),
        "parse errors carry a position: {err}"
    );
}

#[test]
fn explain_shows_grouping_and_routable_form() {
    let out = palio(
        &[
            "filter",
            "explain",
            "type = 'alarm' AND level > 2 OR level > 8",
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out);
    let v = &lines[0];
    // CESQL: AND/OR/XOR share one precedence level, evaluated left to right.
    assert_eq!(
        v["parsed"],
        "(((type = 'alarm') AND (level > 2)) OR (level > 8))"
    );
    assert_eq!(v["exact"], true);
    // The right side of OR is only reached when the left side evaluated without error, so
    // `type` must be present (and not 'alarm') there too.
    assert_eq!(
        v["routable"],
        "(level >= 3 AND type = 'alarm') OR (level >= 9 AND type != 'alarm')"
    );

    let out = palio(&["filter", "explain", "LENGTH(type) > 3"], None);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["exact"], false);
    assert_eq!(lines[0]["routable"], "EXISTS type");
}
