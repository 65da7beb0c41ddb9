//! `palio queue …`: manage the durable queues of the broker the command connects to.
//!
//! Output contract: `add` prints `{"added": NAME}`, `rm` prints `{"removed": NAME}`, `ls`
//! prints one JSON array of queue objects (the queues the connecting principal may use), `info`
//! one queue object. A queue object has the fields `name`, `filter`, `pending`, `unacked`,
//! `dead_lettered`, `consumers`, `ack_wait_ms`, `max_deliveries`, `owner` (empty for a queue
//! added before queues had owners), `bytes`, `max_messages`, `max_bytes`, `max_age_ms` (0: no
//! limit) and `discard` (`"old"` or `"new"`). A request the broker refuses (no such queue, a
//! queue of that name with another filter, another principal's queue, a limit, …) exits with
//! status 1 and the reason on stderr, said once with the broker's code (`palio: queue "orders"
//! exists already with another filter or options (queue_exists)`); an invalid filter, queue
//! name or option exits with status 2. `rm NAME.dlq` empties the dead-letter queue of `NAME`
//! (it lives as long as `NAME`, listed, and later dead letters go to it again) and prints
//! `{"removed": "NAME.dlq"}`. `purge` prints `{"purged": NAME, "messages": N}`; `peek` prints
//! each message shown as a line, as `sub --durable` does but without `tag` (nothing if the
//! queue has no pending message).

use std::io::Write;
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::json;

use super::connection::Connection;
use super::pubsub::{one_request, runtime};
use super::refusal::said_once;
use crate::{Client, Discard, Error, ErrorCode, QueueOptions};

#[derive(Debug, Subcommand)]
pub(super) enum QueueCommand {
    /// Add a durable queue NAME keeping every persistent notification that matches FILTER
    /// (published from now on) until a consumer acks it; prints {"added": NAME}. Adding it
    /// again with the same filter and options is not an error.
    Add {
        #[command(flatten)]
        conn: Connection,
        /// The queue's name: 1–64 ASCII letters, digits, '_' and '-'.
        name: String,
        /// The CESQL filter.
        filter: String,
        /// Seconds a delivered message may stay unacked before it is delivered again
        /// (default: the broker's).
        #[arg(long, value_name = "SECS")]
        ack_wait: Option<f64>,
        /// Deliveries without an ack before a message moves to the dead-letter queue
        /// NAME.dlq (default: the broker's).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_deliveries: Option<u32>,
        /// The most messages the queue holds, and separately its dead-letter queue (default
        /// and maximum: the broker's limits.queue_max_messages).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max_messages: Option<u64>,
        /// The most bytes its messages take, e.g. 512MiB or 2GB (default and maximum: the
        /// broker's limits.queue_max_bytes).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_bytes: Option<u64>,
        /// How long a message stays, delivered or not, e.g. 90s, 12h or 7d (default and
        /// maximum: the broker's limits.queue_max_age_ms).
        #[arg(long, value_name = "DURATION", value_parser = parse_age)]
        max_age: Option<u64>,
        /// What the full queue does with a new message: "old" drops its oldest messages,
        /// "new" keeps them and refuses persistent publications that match it (default: the
        /// broker's limits.queue_discard).
        #[arg(long, value_name = "old|new", value_parser = parse_discard)]
        discard: Option<Discard>,
    },
    /// Print the broker's queues that you may use (dead-letter queues included) as one JSON
    /// array of objects with name, filter, pending, unacked, dead_lettered, consumers,
    /// ack_wait_ms, max_deliveries, owner, bytes, max_messages, max_bytes, max_age_ms and
    /// discard.
    Ls {
        #[command(flatten)]
        conn: Connection,
    },
    /// Print one queue (NAME.dlq for a dead-letter queue) as a JSON object, as in `ls`.
    Info {
        #[command(flatten)]
        conn: Connection,
        /// The queue's name.
        name: String,
    },
    /// Remove a queue, its dead-letter queue and their messages; prints {"removed": NAME}.
    /// NAME.dlq empties the dead-letter queue of NAME, which stays as long as NAME does.
    Rm {
        #[command(flatten)]
        conn: Connection,
        /// The queue's name.
        name: String,
    },
    /// Remove every message of a queue (NAME.dlq: of a dead-letter queue), pending and
    /// unacked; the queue and its consumers stay. Prints {"purged": NAME, "messages": N}.
    Purge {
        #[command(flatten)]
        conn: Connection,
        /// The queue's name.
        name: String,
    },
    /// Print the next pending messages of a queue (NAME.dlq: of a dead-letter queue) as JSON
    /// lines, as `sub --durable` does but without a tag, without delivering them: nothing is
    /// acked, no delivery count changes, consumers still get them.
    Peek {
        #[command(flatten)]
        conn: Connection,
        /// The queue's name.
        name: String,
        /// How many messages to print at most.
        #[arg(
            short = 'c',
            long,
            default_value_t = 1,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::MAX_FETCH_BATCH))
        )]
        count: u32,
    },
}

/// `--max-bytes`: a size such as `1048576`, `512KiB`, `2 GB`.
fn parse_size(s: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = s
        .parse()
        .map_err(|e| format!("{e} (a size such as 1048576, 512KiB or 2GB)"))?;
    match size.as_u64() {
        0 => Err("at least 1 byte".into()),
        n => Ok(n),
    }
}

/// `--max-age`: a duration such as `90s`, `12h`, `7d`, in milliseconds.
fn parse_age(s: &str) -> Result<u64, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e} (a duration such as 90s, 12h or 7d)"))?;
    match u64::try_from(d.as_millis()) {
        Ok(0) => Err("at least 1ms".into()),
        Ok(ms) => Ok(ms),
        Err(_) => Err("too long".into()),
    }
}

/// `--discard`: `old` or `new`.
fn parse_discard(s: &str) -> Result<Discard, String> {
    s.parse()
}

/// `--ack-wait` seconds as milliseconds, if it is a duration.
fn ack_wait_ms(secs: f64) -> Option<u64> {
    let ms = (secs * 1000.0).round();
    // Below 2^53 every integer is exact in an f64, and far above any sensible ack wait.
    (ms.is_finite() && (0.0..9.0e15).contains(&ms)).then_some(ms as u64)
}

pub(super) fn run(
    cmd: QueueCommand,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if let QueueCommand::Add {
        name,
        filter,
        ack_wait,
        ..
    } = &cmd
    {
        if !palio_protocol::valid_queue_name(name) {
            writeln!(
                err,
                "palio: invalid queue name {name:?}: 1–64 ASCII letters, digits, '_' and '-'"
            )?;
            return Ok(ExitCode::from(2));
        }
        if let Err(e) = palio_filter::Filter::new(filter) {
            writeln!(err, "palio: invalid filter: {e}")?;
            return Ok(ExitCode::from(2));
        }
        if ack_wait.is_some_and(|s| ack_wait_ms(s).is_none()) {
            writeln!(err, "palio: --ack-wait must be a number of seconds ≥ 0")?;
            return Ok(ExitCode::from(2));
        }
    }
    let conn = match &cmd {
        QueueCommand::Add { conn, .. }
        | QueueCommand::Ls { conn }
        | QueueCommand::Info { conn, .. }
        | QueueCommand::Rm { conn, .. }
        | QueueCommand::Purge { conn, .. } => conn,
        QueueCommand::Peek { conn, name, count } => return peek(conn, name, *count, out),
    };
    one_request(conn, "palio-queue", out, async |client| {
        request(client, &cmd).await
    })
}

/// Carries out the command; returns the line to print.
async fn request(client: &Client, cmd: &QueueCommand) -> anyhow::Result<serde_json::Value> {
    Ok(match cmd {
        QueueCommand::Add {
            name,
            filter,
            ack_wait,
            max_deliveries,
            max_messages,
            max_bytes,
            max_age,
            discard,
            ..
        } => {
            let options = QueueOptions {
                ack_wait_ms: ack_wait.and_then(ack_wait_ms),
                max_deliveries: *max_deliveries,
                max_messages: *max_messages,
                max_bytes: *max_bytes,
                max_age_ms: *max_age,
                discard: *discard,
            };
            client
                .queue_add(name, filter, options)
                .await
                .map_err(|e| explain(e, name))?;
            json!({ "added": name })
        }
        QueueCommand::Ls { .. } => serde_json::to_value(
            client
                .queue_list()
                .await
                .map_err(|e| said_once(e, |_| None))?,
        )?,
        QueueCommand::Info { name, .. } => serde_json::to_value(
            client
                .queue_info(name)
                .await
                .map_err(|e| explain(e, name))?,
        )?,
        QueueCommand::Rm { name, .. } => {
            client
                .queue_remove(name)
                .await
                .map_err(|e| explain(e, name))?;
            json!({ "removed": name })
        }
        QueueCommand::Purge { name, .. } => {
            let messages = client
                .queue_purge(name)
                .await
                .map_err(|e| explain(e, name))?;
            json!({ "purged": name, "messages": messages })
        }
        // Printed line by line by `peek`.
        QueueCommand::Peek { .. } => serde_json::Value::Null,
    })
}

/// `queue peek`: connects, prints each message shown as a line, closes.
fn peek(
    conn: &Connection,
    name: &str,
    count: u32,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let client = conn.connect("palio-queue").await?;
        let shown = client.queue_peek(name, count).await;
        // Closed whatever the outcome, so that the broker hears of it at once.
        client.close().await;
        for m in shown.map_err(|e| explain(e, name))? {
            writeln!(out, "{}", m.to_json())?;
            out.flush()?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The broker's refusal, said once, with a plain sentence for the common cases.
fn explain(e: Error, name: &str) -> anyhow::Error {
    said_once(e, |code| match code {
        ErrorCode::QueueNotFound => Some(format!("no queue named {name:?}")),
        ErrorCode::QueueExists => Some(format!(
            "queue {name:?} exists already with another filter or options"
        )),
        ErrorCode::PermissionDenied => Some(format!("queue {name:?} belongs to another principal")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_wait_is_rounded_to_milliseconds_and_must_be_a_duration() {
        assert_eq!(ack_wait_ms(1.5), Some(1500));
        assert_eq!(ack_wait_ms(0.0004), Some(0));
        assert_eq!(ack_wait_ms(0.0), Some(0));
        assert_eq!(ack_wait_ms(-1.0), None);
        assert_eq!(ack_wait_ms(f64::NAN), None);
        assert_eq!(ack_wait_ms(f64::INFINITY), None);
        assert_eq!(ack_wait_ms(1e300), None);
    }

    #[test]
    fn sizes_and_ages_read_with_units_and_must_be_positive() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2 GB"), Ok(2_000_000_000));
        assert!(parse_size("0").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_age("90s"), Ok(90_000));
        assert_eq!(parse_age("7d"), Ok(7 * 24 * 3600 * 1000));
        assert_eq!(parse_age("1h 30m"), Ok(5_400_000));
        assert!(parse_age("0s").is_err());
        assert!(parse_age("30").is_err(), "a unit is needed");
        assert_eq!(parse_discard("new"), Ok(Discard::New));
        assert!(parse_discard("newest").is_err());
    }
}
