//! `palio filter …`: evaluate, compare and explain CESQL filters without a broker.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Subcommand};
use palio_filter::{ErrorKind, Evaluation, Event, Expr, Filter, ParseError, Value};
use serde::Deserialize;
use serde_json::{Value as Json, json};

#[derive(Debug, Subcommand)]
pub(super) enum FilterCommand {
    /// Evaluate an expression against an event and print {"result": …, "error": …}.
    ///
    /// The event is a CloudEvent in JSON (its attributes at the top level; `data` is ignored).
    /// The error is the first CESQL error raised, or null. A parse error prints
    /// {"result": false, "error": "parse"}, as in the CESQL conformance suite.
    #[command(group(ArgGroup::new("input").required(true).args(["expr", "batch"])))]
    Eval {
        /// The CESQL expression.
        expr: Option<String>,
        /// The event, as a JSON object (default: an event with no attributes).
        #[arg(long, requires = "expr")]
        event: Option<String>,
        /// Read JSON lines {"expression": …, "event": {…}} from FILE ('-' for stdin) and write
        /// one result line per input line, in order.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["expr", "event"])]
        batch: Option<PathBuf>,
    },
    /// Print {"covers": true|false}: true only if every event matching B matches A.
    Covers {
        /// The covering filter.
        a: String,
        /// The covered filter.
        b: String,
    },
    /// Print how a filter parses and its routable form, and whether that form is exact.
    Explain {
        /// The filter.
        expr: String,
    },
}

pub(super) fn run(
    cmd: FilterCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        FilterCommand::Eval {
            expr: Some(expr),
            event,
            ..
        } => {
            let event = match event {
                Some(text) => parse_event(&text).context("reading --event")?,
                None => Event::new(),
            };
            write_line(out, &eval_json(Expr::parse(&expr), &event))?;
            Ok(ExitCode::SUCCESS)
        }
        FilterCommand::Eval {
            batch: Some(path), ..
        } => eval_batch(&path, out, err),
        FilterCommand::Eval { .. } => bail!("give an expression or --batch FILE"),
        FilterCommand::Covers { a, b } => {
            let (Some(a), Some(b)) = (compile(&a, "A", err)?, compile(&b, "B", err)?) else {
                return Ok(ExitCode::from(2));
            };
            write_line(out, &json!({ "covers": a.covers(&b) }))?;
            Ok(ExitCode::SUCCESS)
        }
        FilterCommand::Explain { expr } => {
            let Some(filter) = compile(&expr, "the filter", err)? else {
                return Ok(ExitCode::from(2));
            };
            write_line(out, &explain_json(&filter))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line of `--batch` input.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    expression: String,
    #[serde(default)]
    event: Option<Json>,
}

/// Evaluates every line of `path`. Unreadable lines still get an output line (so outputs stay
/// aligned with inputs), with `"error": "generic"` and a message; the exit status is then 1.
fn eval_batch(
    path: &std::path::Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        Box::new(BufReader::new(file))
    };
    // Batches often repeat expressions across events; parse each distinct one once.
    let mut parsed: HashMap<String, Result<Expr, ParseError>> = HashMap::new();
    let mut unreadable = 0usize;
    for (n, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let input = serde_json::from_str::<BatchLine>(&line)
            .map_err(|e| e.to_string())
            .and_then(|l| {
                let event = match &l.event {
                    Some(ev) => Event::from_cloudevent_json(ev).map_err(|e| e.to_string())?,
                    None => Event::new(),
                };
                Ok((l.expression, event))
            });
        let result = match input {
            Ok((expression, event)) => {
                if parsed.len() > 10_000 {
                    parsed.clear();
                }
                let expr = parsed
                    .entry(expression)
                    .or_insert_with_key(|src| Expr::parse(src));
                eval_json(expr.clone(), &event)
            }
            Err(message) => {
                unreadable += 1;
                let message = format!("line {}: {message}", n + 1);
                writeln!(err, "palio: {message}")?;
                json!({ "result": null, "error": ErrorKind::Generic.as_str(), "message": message })
            }
        };
        write_line(out, &result)?;
    }
    Ok(if unreadable == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn parse_event(text: &str) -> anyhow::Result<Event> {
    let json: Json = serde_json::from_str(text).context("the event is not valid JSON")?;
    Ok(Event::from_cloudevent_json(&json)?)
}

/// Compiles a filter, explaining on `err` why not if it can't be.
fn compile(src: &str, what: &str, err: &mut dyn Write) -> io::Result<Option<Filter>> {
    match Filter::new(src) {
        Ok(f) => Ok(Some(f)),
        Err(e) => {
            writeln!(err, "palio: invalid filter {what}: {e}")?;
            Ok(None)
        }
    }
}

fn eval_json(expr: Result<Expr, ParseError>, event: &Event) -> Json {
    match expr {
        Ok(expr) => {
            let Evaluation { value, errors } = expr.evaluate(event);
            let error = errors.first().map(|e| e.kind.as_str());
            json!({ "result": value_json(&value), "error": error })
        }
        Err(_) => json!({ "result": false, "error": ErrorKind::Parse.as_str() }),
    }
}

fn explain_json(filter: &Filter) -> Json {
    let routable = filter.routable();
    let conjunctions: Vec<Vec<String>> = routable
        .conjunctions()
        .iter()
        .map(|c| c.constraints().iter().map(ToString::to_string).collect())
        .collect();
    json!({
        "expression": filter.source(),
        "parsed": filter.expr().canonical(),
        "routable": routable.to_string(),
        "conjunctions": conjunctions,
        "exact": routable.is_exact(),
    })
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::String(s) => Json::String(s.clone()),
    }
}

fn write_line(out: &mut dyn Write, v: &Json) -> io::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")
}
