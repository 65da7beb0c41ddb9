//! `palio server info` and `palio server ping`: the broker the command connects to, about
//! itself.
//!
//! Output contract:
//! - `server info` prints one JSON object: `id` (the broker's `--id`), `broker_id`, `version`,
//!   `uptime_s`, `strategy`, `clients` (client connections open), `max_frame`, and `peers`: an
//!   array of `{"id", "name", "address", "state": "up"|"down", "rtt_ms", "dialed",
//!   "last_error"}` (`id`, `name` null until a link came up; `rtt_ms` null when down).
//! - `server ping [--count N] [--interval SECS]` prints one line `{"seq": I, "rtt_ms": R}`
//!   per ping (the round trip over the connection's control stream) and exits 0.
//!
//! Both exit with status 1 when the broker cannot be reached, the message naming the address.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;

use super::connection::Connection;
use super::pubsub::{one_request, runtime};
use crate::{Client, PeerInfo, ServerInfo};

#[derive(Debug, Subcommand)]
pub(super) enum ServerCommand {
    /// Print the broker's identity, version, uptime, routing strategy, clients and peers as
    /// one JSON object.
    Info {
        #[command(flatten)]
        conn: Connection,
    },
    /// Measure the round trip to the broker: one JSON line {"seq": I, "rtt_ms": R} per ping.
    Ping {
        #[command(flatten)]
        conn: Connection,
        /// How many pings.
        #[arg(short = 'c', long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Seconds between pings.
        #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = parse_interval)]
        interval: f64,
    },
}

/// `--interval`: a number of seconds, 0 to an hour.
fn parse_interval(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if (0.0..=3600.0).contains(&secs) => Ok(secs),
        _ => Err("a number of seconds from 0 to 3600".into()),
    }
}

/// Milliseconds, to the microsecond.
fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn peer_json(p: &PeerInfo) -> serde_json::Value {
    json!({
        "id": p.id,
        "name": p.name,
        "address": p.address,
        "state": p.state,
        "rtt_ms": p.rtt_us.map(|us| millis(Duration::from_micros(us))),
        "dialed": p.dialed,
        "last_error": p.last_error,
    })
}

fn info_json(i: &ServerInfo) -> serde_json::Value {
    json!({
        "id": i.id,
        "broker_id": i.broker_id,
        "version": i.version,
        "uptime_s": i.uptime_ms / 1000,
        "strategy": i.strategy,
        "clients": i.clients,
        "max_frame": i.max_frame,
        "peers": i.peers.iter().map(peer_json).collect::<Vec<_>>(),
    })
}

pub(super) fn run(
    cmd: ServerCommand,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    match cmd {
        ServerCommand::Info { conn } => one_request(&conn, "palio-server", out, async |client| {
            Ok(info_json(&client.server_info().await?))
        }),
        ServerCommand::Ping {
            conn,
            count,
            interval,
        } => runtime()?.block_on(async {
            let client = conn.connect("palio-ping").await?;
            let result = ping(&client, count, Duration::from_secs_f64(interval), out).await;
            client.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }),
    }
}

/// Pings `count` times, `interval` apart, printing a line for each.
async fn ping(
    client: &Client,
    count: u64,
    interval: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    for seq in 0..count {
        if seq > 0 {
            tokio::time::sleep(interval).await;
        }
        let rtt = client.ping().await.context("pinging the broker")?;
        writeln!(out, "{}", json!({ "seq": seq, "rtt_ms": millis(rtt) }))?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_print_in_milliseconds_to_the_microsecond() {
        assert_eq!(millis(Duration::from_micros(420)), 0.42);
        assert_eq!(millis(Duration::from_nanos(1_234_567)), 1.235);
        assert!(parse_interval("0").is_ok());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("soon").is_err());
    }
}
