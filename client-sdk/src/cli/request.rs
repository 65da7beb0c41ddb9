//! `palio req` and `palio reply`: request/reply from scripts.
//!
//! Output contract: `req` prints the first reply as one JSON line
//! `{"attributes": {...}, "payload": "..."}` and exits 0; with no responder anywhere it exits 1
//! at once with `no responders` on stderr, and 1 after `--timeout` if responders got the request
//! but none replied. `reply` prints each request it answered as a JSON line (the shape of
//! `palio sub`) and exits 0 after `--count N` requests or on SIGINT.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use palio_protocol::ErrorCode;

use super::pubsub::{Connection, parse_attr, runtime};
use crate::{Client, Notification};

/// `palio req`.
#[derive(Debug, Args)]
pub(super) struct Req {
    #[command(flatten)]
    conn: Connection,
    /// An attribute of the request, NAME=VALUE (repeatable; typed as in `palio pub`).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attrs: Vec<String>,
    /// The request's payload.
    #[arg(long, default_value = "")]
    payload: String,
    /// How long to wait for a reply, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
}

/// `palio reply`.
#[derive(Debug, Args)]
pub(super) struct Reply {
    #[command(flatten)]
    conn: Connection,
    /// An attribute of each reply, NAME=VALUE (repeatable; typed as in `palio pub`).
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attrs: Vec<String>,
    /// The payload of each reply.
    #[arg(long, default_value = "")]
    payload: String,
    /// Exit after answering this many requests.
    #[arg(long)]
    count: Option<u64>,
    /// The CESQL filter of the requests to answer.
    filter: String,
}

/// Builds a notification from `--attr` and `--payload`.
fn notification(attrs: &[String], payload: &str) -> anyhow::Result<Notification> {
    let mut b = Notification::builder();
    for a in attrs {
        let (name, value) = parse_attr(a)?;
        b = b.attr(&name, value);
    }
    Ok(b.payload(payload.as_bytes()).build()?)
}

pub(super) fn run_req(
    cmd: Req,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let request = notification(&cmd.attrs, &cmd.payload)?;
    let timeout = Duration::try_from_secs_f64(cmd.timeout.max(0.0))
        .context("--timeout: not a number of seconds")?;
    runtime()?.block_on(async {
        let client = Client::connect(cmd.conn.options("palio-req")).await?;
        let answer = client.request(request, timeout).await;
        client.close().await;
        match answer {
            Ok(reply) => {
                writeln!(out, "{}", reply.to_json())?;
                Ok(ExitCode::SUCCESS)
            }
            Err(e) if e.code() == Some(ErrorCode::NoResponders) => {
                writeln!(
                    err,
                    "palio: no responders: no subscription matches the request"
                )?;
                Ok(ExitCode::from(1))
            }
            Err(crate::Error::Timeout(_)) => {
                writeln!(
                    err,
                    "palio: no reply within {}s (subscribers got the request, none answered)",
                    cmd.timeout
                )?;
                Ok(ExitCode::from(1))
            }
            Err(e) => Err(e.into()),
        }
    })
}

pub(super) fn run_reply(
    cmd: Reply,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = palio_filter::Filter::new(&cmd.filter) {
        writeln!(err, "palio: invalid filter: {e}")?;
        return Ok(ExitCode::from(2));
    }
    let answer = notification(&cmd.attrs, &cmd.payload)?;
    runtime()?.block_on(async {
        let client = Client::connect(cmd.conn.options("palio-reply")).await?;
        let mut requests = client.responder(&cmd.filter).await?;
        writeln!(
            err,
            "palio: replying ({}) at {}",
            requests.subscription().id(),
            client.broker().broker
        )?;
        err.flush()?;
        let mut answered = 0u64;
        let interrupted = tokio::signal::ctrl_c();
        tokio::pin!(interrupted);
        while cmd.count.is_none_or(|c| answered < c) {
            let request = tokio::select! {
                r = requests.next() => r,
                _ = &mut interrupted => break,
            };
            let Some(request) = request else {
                anyhow::bail!("the connection to the broker closed");
            };
            client.reply(&request, answer.clone()).await?;
            writeln!(out, "{}", request.to_json())?;
            out.flush()?;
            answered += 1;
        }
        // Whatever was replied is on its way before the connection closes.
        client.flush().await?;
        client.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
