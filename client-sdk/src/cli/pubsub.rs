//! `palio sub` and `palio pub`: subscribe and publish from scripts.
//!
//! Output contract: `sub` prints one JSON line `{"attributes": {...}, "payload": "..."}` per
//! notification and exits after `--count` notifications or `--timeout` seconds (exit status 3
//! if the timeout came first while `--count` was given); `pub` prints `{"published": N}` once
//! the broker has handled every publication.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use palio_filter::{Value, parse_int};
use serde_json::json;

use crate::{Client, ConnectOptions, Notification};

/// How to reach the broker (shared by `sub` and `pub`).
#[derive(Debug, Args)]
pub(super) struct Connection {
    /// Broker address.
    #[arg(long, env = "PALIO_SERVER", default_value = "127.0.0.1:7400")]
    server: String,
    /// Development PKI directory shared with the broker.
    #[arg(long, env = "PALIO_TLS_DIR", default_value = "./palio-data/tls")]
    tls_dir: PathBuf,
    /// CA certificate file (PEM) to trust instead of the TLS directory's.
    #[arg(long, env = "PALIO_CA")]
    ca: Option<PathBuf>,
    /// Client certificate chain file (PEM), with --key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key file (PEM), with --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Bearer token (for brokers with `[auth] tokens`).
    #[arg(long, env = "PALIO_TOKEN")]
    token: Option<String>,
    /// Name the broker's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

impl Connection {
    fn options(&self, name: &str) -> ConnectOptions {
        let mut o = ConnectOptions::new(&self.server)
            .tls_dir(&self.tls_dir)
            .server_name(&self.server_name)
            .name(name);
        if let Some(t) = &self.token {
            o = o.token(t);
        }
        if let Some(ca) = &self.ca {
            o = o.ca_file(ca);
        }
        if let (Some(c), Some(k)) = (&self.cert, &self.key) {
            o = o.cert_files(c, k);
        }
        o
    }
}

/// `palio sub`.
#[derive(Debug, Args)]
pub(super) struct Sub {
    #[command(flatten)]
    conn: Connection,
    /// Exit after this many notifications.
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// The CESQL filter.
    filter: String,
}

/// `palio pub`.
#[derive(Debug, Args)]
pub(super) struct Pub {
    #[command(flatten)]
    conn: Connection,
    /// An attribute, NAME=VALUE (repeatable). An integer VALUE is an integer, true/false a
    /// boolean, anything else a string.
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attrs: Vec<String>,
    /// The payload.
    #[arg(long, default_value = "")]
    payload: String,
    /// Publish N notifications, each with an integer attribute `seq` = 0…N−1.
    #[arg(long)]
    count: Option<u32>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Parses `NAME=VALUE` with the CLI's typing rule.
pub(super) fn parse_attr(s: &str) -> anyhow::Result<(String, Value)> {
    let Some((name, value)) = s.split_once('=') else {
        bail!("--attr {s:?}: expected NAME=VALUE");
    };
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

pub(super) fn run_sub(
    cmd: Sub,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    if let Err(e) = palio_filter::Filter::new(&cmd.filter) {
        writeln!(err, "palio: invalid filter: {e}")?;
        return Ok(ExitCode::from(2));
    }
    let rt = runtime()?;
    rt.block_on(async {
        let client = Client::connect(cmd.conn.options("palio-sub")).await?;
        let mut sub = client.subscribe(&cmd.filter).await?;
        writeln!(
            err,
            "palio: subscribed ({}) at {}",
            sub.id(),
            client.broker().broker
        )?;
        err.flush()?;
        let deadline = cmd
            .timeout
            .map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
        let mut received = 0u64;
        let mut timed_out = false;
        while cmd.count.is_none_or(|c| received < c) {
            let next = match deadline {
                Some(d) => match tokio::time::timeout_at(d, sub.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        timed_out = true;
                        break;
                    }
                },
                None => sub.next().await,
            };
            let Some(n) = next else {
                bail!("the connection to the broker closed");
            };
            writeln!(out, "{}", n.to_json())?;
            out.flush()?;
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

pub(super) fn run_pub(cmd: Pub, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let attrs = cmd
        .attrs
        .iter()
        .map(|a| parse_attr(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let build = |seq: Option<u32>| -> anyhow::Result<Notification> {
        let mut b = Notification::builder();
        for (n, v) in &attrs {
            b = b.attr(n, v.clone());
        }
        if let Some(s) = seq {
            b = b.attr("seq", i32::try_from(s).context("--count too large")?);
        }
        Ok(b.payload(cmd.payload.as_bytes()).build()?)
    };
    let rt = runtime()?;
    rt.block_on(async {
        let client = Client::connect(cmd.conn.options("palio-pub")).await?;
        match cmd.count {
            None => client.publish(build(None)?).await?,
            Some(n) => {
                for seq in 0..n {
                    client.publish(build(Some(seq))?).await?;
                }
            }
        }
        let published = client.flush().await?;
        writeln!(out, "{}", json!({ "published": published }))?;
        client.close().await;
        Ok(ExitCode::SUCCESS)
    })
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
    }
}
