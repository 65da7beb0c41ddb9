//! `palio sub` and `palio pub`: subscribe and publish from scripts.
//!
//! Output contract: `sub` prints one JSON line `{"attributes": {...}, "payload": "..."}` per
//! notification (`"payload_base64"` instead of `"payload"` when it is not UTF-8; with `--raw`,
//! the bare payload and a newline) and exits after `--count` notifications or `--timeout`
//! seconds (exit status 3 if the timeout came first while `--count` was given); `pub` prints
//! `{"published": N}` once the broker has handled every publication. Payload input and output
//! are in `payload.rs`, connecting in `connection.rs`. Their persistent forms (`sub --durable`,
//! `pub --persistent`) are in `durable.rs`. `sub` reconnects after losing the broker
//! (`reconnect.rs`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use palio_filter::{AttrName, MAX_ATTR_NAME_LEN, Value, parse_int};
use serde_json::json;

use super::connection::Connection;
use super::reconnect::{self, Reconnecting};
use super::{durable, payload};
use crate::{Client, Notification};

/// `palio sub`.
#[derive(Debug, Args)]
pub(super) struct Sub {
    #[command(flatten)]
    pub(super) conn: Connection,
    /// Exit after this many notifications.
    #[arg(short = 'c', long)]
    pub(super) count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(short = 't', long, value_name = "SECS")]
    pub(super) timeout: Option<f64>,
    /// Print only the payloads, each followed by a newline, as raw bytes (instead of JSON
    /// lines).
    #[arg(long)]
    pub(super) raw: bool,
    /// Consume the durable queue NAME (`NAME.dlq` for its dead-letter queue) instead of
    /// subscribing with a filter: each message is printed with its "delivery_count", "queue"
    /// and "tag", then acked; with --count, exits once the acks are confirmed.
    #[arg(long, value_name = "NAME", conflicts_with = "filter")]
    pub(super) durable: Option<String>,
    /// With --durable: fetch batches (pull mode) instead of having the broker push messages.
    // `conflicts_with = "filter"` as well as `requires`: clap drops the requirement of an
    // argument that conflicts with one present, so `requires` alone would let
    // `sub --pull FILTER` through.
    #[arg(long, requires = "durable", conflicts_with = "filter")]
    pub(super) pull: bool,
    /// With --durable --pull: the most messages per fetch (1 to 4096).
    #[arg(
        long,
        requires = "pull",
        default_value_t = 64,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::MAX_FETCH_BATCH))
    )]
    pub(super) batch: u32,
    /// With --durable --pull: how long each fetch waits for messages, in seconds.
    #[arg(long, value_name = "SECS", requires = "pull", default_value_t = 5.0)]
    pub(super) max_wait: f64,
    /// With --durable (push mode): the most unacked messages the broker sends ahead (1 to
    /// 4096, and no more than --count).
    #[arg(
        long,
        requires = "durable",
        conflicts_with_all = ["pull", "filter"],
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::MAX_PUSH_WINDOW))
    )]
    pub(super) window: u32,
    /// Join the ordered group NAME as a member (with FILTER, only what matches): each message
    /// is printed with "group", and "epoch" and "seq" (total order) or "clock" (causal).
    #[arg(long, value_name = "NAME", conflicts_with = "durable")]
    pub(super) group: Option<String>,
    /// The CESQL filter (not with --durable; optional with --group).
    #[arg(required_unless_present_any = ["durable", "group"])]
    pub(super) filter: Option<String>,
    #[command(flatten)]
    pub(super) reconnect: Reconnecting,
}

/// `palio pub`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("mode").args(["persistent", "group"]).multiple(false))]
pub(super) struct Pub {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    body: Body,
    /// Publish N notifications, each with an integer attribute `seq` = 0…N−1 (with
    /// --persistent, also their producer sequence numbers).
    #[arg(short = 'c', long)]
    count: Option<u32>,
    /// Publish persistently: pipelined, waiting for the broker's acks (the notifications are
    /// on its disk), then print {"published": N, "acked": M, "stored": K}, also when the
    /// connection is lost midway (exit status 1 then). Acks come in publish order: the acked
    /// notifications are seq 0…M−1. K counts the acked ones that matched a durable queue; if
    /// some matched none, a warning on stderr says so (the exit status stays 0).
    #[arg(long)]
    persistent: bool,
    /// With --persistent: the producer id, for the broker to de-duplicate retries (default:
    /// unique to this invocation). Publishing again under the same id with the same seq
    /// numbers stores nothing twice. With --group: names this publisher in the broker's logs
    /// and de-duplication keys.
    #[arg(long, value_name = "ID", requires = "mode")]
    producer: Option<String>,
    /// Publish to the ordered group NAME: pipelined, waiting for the acks (total order: the
    /// position is committed on a majority of the group's replicas), then print
    /// {"published": N, "acked": M}.
    #[arg(long, value_name = "NAME", conflicts_with = "persistent")]
    group: Option<String>,
}

/// A notification's attributes and payload on the command line (`pub`, `req`, `reply`).
#[derive(Debug, Args)]
pub(super) struct Body {
    /// An attribute, NAME=VALUE (repeatable). NAME is lower-case letters a–z and digits
    /// (CloudEvents naming). An integer VALUE is an integer, true/false a boolean, anything
    /// else a string.
    #[arg(short = 'a', long = "attr", value_name = "NAME=VALUE", value_parser = parse_attr)]
    attrs: Vec<(String, Value)>,
    /// The payload, as text [default: standard input when it is a pipe or a file, else
    /// empty].
    #[arg(short = 'p', long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// Send the bytes of FILE as the payload (`-` for standard input).
    #[arg(short = 'f', long, value_name = "FILE")]
    payload_file: Option<PathBuf>,
}

impl Body {
    /// The notifications these flags describe, with the payload read (see `payload.rs`).
    pub(super) fn template(self) -> anyhow::Result<Template> {
        Ok(Template {
            payload: payload::read(self.payload, self.payload_file.as_deref())?,
            attrs: self.attrs,
        })
    }
}

/// The notifications `palio pub` sends: its attributes and payload, plus `seq`.
pub(super) struct Template {
    attrs: Vec<(String, Value)>,
    payload: Vec<u8>,
}

impl Template {
    /// The notification numbered `seq` (none without --count).
    pub(super) fn build(&self, seq: Option<u32>) -> anyhow::Result<Notification> {
        let mut b = Notification::builder();
        for (n, v) in &self.attrs {
            b = b.attr(n, v.clone());
        }
        if let Some(s) = seq {
            b = b.attr("seq", i32::try_from(s).context("--count too large")?);
        }
        Ok(b.payload(self.payload.as_slice()).build()?)
    }
}

/// Connects as `name`, carries out one request (`request` returns what to print: a JSON
/// value, or text for people), closes the connection whatever the outcome, and prints it as
/// one line: the shape of `queue …`, `group …`, `server info`, `routes`.
pub(super) fn one_request<T: std::fmt::Display>(
    conn: &Connection,
    name: &str,
    out: &mut dyn Write,
    request: impl AsyncFnOnce(&Client) -> anyhow::Result<T>,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = conn.connect(name).await?;
        let line = request(&client).await;
        // Closed whatever the outcome, so that the broker hears of it at once.
        client.close().await;
        writeln!(out, "{}", line?)?;
        out.flush()?;
        Ok(ExitCode::SUCCESS)
    })
}

/// When `sub --timeout SECS` ends, if given.
pub(super) fn deadline(timeout: Option<f64>) -> Option<tokio::time::Instant> {
    timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)))
}

/// `next` unless `deadline` passes first (`Err(())` then).
pub(super) async fn before<T>(
    deadline: Option<tokio::time::Instant>,
    next: impl Future<Output = T>,
) -> Result<T, ()> {
    match deadline {
        Some(d) => tokio::time::timeout_at(d, next).await.map_err(|_| ()),
        None => Ok(next.await),
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Parses `NAME=VALUE` with the CLI's typing rule; a malformed one or an invalid name is a
/// usage error.
pub(super) fn parse_attr(s: &str) -> Result<(String, Value), String> {
    let Some((name, value)) = s.split_once('=') else {
        return Err("expected NAME=VALUE".into());
    };
    if AttrName::new(name).is_err() {
        return Err(format!(
            "{name:?} is not an attribute name: names are 1 to {MAX_ATTR_NAME_LEN} lower-case \
             letters a-z and digits 0-9 (CloudEvents naming), e.g. {:?}",
            suggest(name)
        ));
    }
    let value = if let Some(i) = parse_int(value) {
        Value::Int(i)
    } else if value == "true" {
        Value::Bool(true)
    } else if value == "false" {
        Value::Bool(false)
    } else {
        Value::String(value.to_owned())
    };
    Ok((name.to_owned(), value))
}

/// `name` as a valid attribute name could be written: lower-cased, other characters dropped.
fn suggest(name: &str) -> String {
    let s: String = name
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_lowercase() || c.is_ascii_digit()).then_some(c)
        })
        .take(MAX_ATTR_NAME_LEN)
        .collect();
    if s.is_empty() { "name".into() } else { s }
}

pub(super) fn run_sub(
    cmd: Sub,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if cmd.durable.is_some() {
        return durable::run_durable_sub(cmd, out, err);
    }
    if let Some(group) = cmd.group.clone() {
        return super::group::run_group_sub(cmd, group, out, err);
    }
    let Some(filter) = cmd.filter else {
        bail!("a FILTER or --durable NAME is required");
    };
    if let Err(e) = palio_filter::Filter::new(&filter) {
        writeln!(err, "palio: invalid filter: {e}")?;
        return Ok(ExitCode::from(2));
    }
    let server = cmd.conn.server();
    let rt = runtime()?;
    rt.block_on(async {
        let client = cmd
            .conn
            .connect_with("palio-sub", |o| cmd.reconnect.apply(o))
            .await?;
        let mut events = client.events();
        let mut sub = client.subscribe(&filter).await?;
        writeln!(
            err,
            "palio: subscribed ({}) at {}",
            sub.id(),
            client.broker().broker
        )?;
        err.flush()?;
        let deadline = deadline(cmd.timeout);
        let mut received = 0u64;
        let mut timed_out = false;
        while cmd.count.is_none_or(|c| received < c) {
            let next = tokio::select! {
                next = before(deadline, sub.next()) => next,
                Some(e) = events.next() => {
                    reconnect::print(&e, &server, err)?;
                    continue;
                }
            };
            let Ok(next) = next else {
                timed_out = true;
                break;
            };
            let Some(n) = next else {
                return Err(reconnect::ended(&client, &server));
            };
            payload::print(out, cmd.raw, n.payload(), || n.to_json())?;
            received += 1;
        }
        client.close().await;
        Ok(if timed_out && cmd.count.is_some() {
            writeln!(err, "palio: timed out after {received} notifications")?;
            ExitCode::from(3)
        } else {
            ExitCode::SUCCESS
        })
    })
}

pub(super) fn run_pub(
    cmd: Pub,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let template = cmd.body.template()?;
    // Every notification must be buildable before the first is sent (`seq` is an `i32`).
    template.build(cmd.count.map(|n| n.saturating_sub(1)))?;
    if let Some(group) = &cmd.group {
        return super::group::run_group_pub(
            &cmd.conn,
            group,
            cmd.producer.as_deref(),
            &template,
            cmd.count,
            out,
            err,
        );
    }
    if cmd.persistent {
        let publication = durable::Publication {
            template,
            count: cmd.count,
            producer: cmd.producer.unwrap_or_else(durable::default_producer_id),
        };
        return durable::run_persistent_pub(&cmd.conn, publication, out, err);
    }
    let rt = runtime()?;
    rt.block_on(async {
        let client = cmd.conn.connect("palio-pub").await?;
        let published = publish_with(&client, &template, cmd.count).await;
        // Closed whatever the outcome, so that the broker hears of it at once.
        client.close().await;
        writeln!(out, "{}", json!({ "published": published? }))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// Publishes best effort, then flushes; returns how many the broker has handled.
async fn publish_with(
    client: &Client,
    template: &Template,
    count: Option<u32>,
) -> anyhow::Result<u64> {
    match count {
        None => client.publish(template.build(None)?).await?,
        Some(n) => {
            for seq in 0..n {
                client.publish(template.build(Some(seq))?).await?;
            }
        }
    }
    Ok(client.flush().await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_are_typed() {
        assert_eq!(
            parse_attr("seq=12").unwrap(),
            ("seq".into(), Value::Int(12))
        );
        assert_eq!(
            parse_attr("ok=true").unwrap(),
            ("ok".into(), Value::Bool(true))
        );
        assert_eq!(
            parse_attr("t=a=b").unwrap(),
            ("t".into(), Value::String("a=b".into()))
        );
        assert_eq!(
            parse_attr("big=99999999999").unwrap(),
            ("big".into(), Value::String("99999999999".into()))
        );
        assert!(parse_attr("novalue").is_err());
        let e = parse_attr("user_id=5").expect_err("invalid name");
        assert!(e.contains("CloudEvents") && e.contains("\"userid\""), "{e}");
        assert!(parse_attr("Type=x").is_err());
        assert!(parse_attr("=x").is_err());
    }
}
