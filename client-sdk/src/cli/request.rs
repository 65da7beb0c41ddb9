//! `palio req` and `palio reply`: request/reply from scripts.
//!
//! Output contract: `req` prints the first reply as one JSON line
//! `{"attributes": {...}, "payload": "..."}` and exits 0; with no responder anywhere it exits 1
//! at once with `no responders` on stderr, and 1 after `--timeout` if responders got the request
//! but none replied. `reply` prints each request it answered as a JSON line (the shape of
//! `palio sub`) and exits 0 after `--count N` requests or on SIGINT; like `palio sub`, it
//! reconnects after losing the broker (`reconnect.rs`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use palio_protocol::ErrorCode;

use super::connection::Connection;
use super::payload;
use super::pubsub::{Body, runtime};
use super::reconnect::{self, Reconnecting};

/// `palio req`.
#[derive(Debug, Args)]
pub(super) struct Req {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    body: Body,
    /// How long to wait for a reply, in seconds.
    #[arg(short = 't', long, value_name = "SECS", default_value_t = 5.0)]
    timeout: f64,
    /// Print only the reply's payload and a newline, as raw bytes (instead of JSON).
    #[arg(long)]
    raw: bool,
}

/// `palio reply`.
#[derive(Debug, Args)]
pub(super) struct Reply {
    #[command(flatten)]
    conn: Connection,
    #[command(flatten)]
    reconnect: Reconnecting,
    /// The attributes and payload of each reply.
    #[command(flatten)]
    body: Body,
    /// Exit after answering this many requests.
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Print only each request's payload and a newline, as raw bytes (instead of JSON).
    #[arg(long)]
    raw: bool,
    /// The CESQL filter of the requests to answer.
    filter: String,
}

pub(super) fn run_req(
    cmd: Req,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let request = cmd.body.template()?.build(None)?;
    let timeout = Duration::try_from_secs_f64(cmd.timeout.max(0.0))
        .context("--timeout: not a number of seconds")?;
    runtime()?.block_on(async {
        let client = cmd.conn.connect("palio-req").await?;
        let answer = client.request(request, timeout).await;
        client.close().await;
        match answer {
            Ok(reply) => {
                payload::print(out, cmd.raw, reply.payload(), || reply.to_json())?;
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
    let answer = cmd.body.template()?.build(None)?;
    runtime()?.block_on(async {
        let server = cmd.conn.server();
        let client = cmd
            .conn
            .connect_with("palio-reply", |o| cmd.reconnect.apply(o))
            .await?;
        let mut events = client.events();
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
                Some(e) = events.next() => {
                    reconnect::print(&e, &server, err)?;
                    continue;
                }
                _ = &mut interrupted => break,
            };
            let Some(request) = request else {
                return Err(reconnect::ended(&client, &server));
            };
            if let Err(e) = client.reply(&request, answer.clone()).await {
                // Lost with the connection: the requester times out or asks again.
                writeln!(err, "palio: reply not sent: {e}")?;
                continue;
            }
            payload::print(out, cmd.raw, request.payload(), || request.to_json())?;
            answered += 1;
        }
        // Whatever was replied is on its way before the connection closes.
        client.flush().await?;
        client.close().await;
        Ok(ExitCode::SUCCESS)
    })
}
