//! How `palio sub` rides through a lost broker: the reconnect flags, the stderr lines that
//! tell of a disconnection and a reconnection, and the message that tells how the
//! subscription ended.
//!
//! Output contract: on stderr, `palio: disconnected from ADDR (REASON); reconnecting` and
//! `palio: reconnected to ADDR`; when the client gives up (`--max-reconnects`), exit status 1
//! with `palio: lost the connection to ADDR and gave up after N reconnect attempt(s): …`,
//! which differs from a clean broker shutdown with `--no-reconnect` (`palio: the broker at
//! ADDR shut down …`). Without it, a clean shutdown is a disconnection like any other: the
//! broker may be restarting.

use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use futures_util::FutureExt;

use crate::{
    Client, CloseReason, ConnectOptions, ConnectionEvent, ConnectionEvents, ErrorCode, Reconnect,
};

/// The reconnect flags of `palio sub`.
#[derive(Debug, Args)]
pub(super) struct Reconnecting {
    /// Exit (status 1) when the connection to the broker is lost or the broker shuts down,
    /// instead of reconnecting.
    #[arg(long)]
    pub(super) no_reconnect: bool,
    /// The longest wait between reconnect attempts, in seconds (the waits start at 0.1 s and
    /// double up to this).
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 2.0,
        conflicts_with = "no_reconnect"
    )]
    pub(super) reconnect_wait: f64,
    /// Give up (exit status 1) after N failed reconnect attempts in a row (default: never).
    #[arg(long, value_name = "N", conflicts_with = "no_reconnect")]
    pub(super) max_reconnects: Option<u32>,
}

impl Reconnecting {
    /// `opts` with this policy; an error for a wait that is not a number of seconds.
    pub(super) fn apply(&self, opts: ConnectOptions) -> anyhow::Result<ConnectOptions> {
        if self.no_reconnect {
            return Ok(opts.no_reconnect());
        }
        if !self.reconnect_wait.is_finite() || self.reconnect_wait <= 0.0 {
            return Err(anyhow!(
                "--reconnect-wait {}: expected a number of seconds > 0",
                self.reconnect_wait
            ));
        }
        let mut r = Reconnect::new().max(Duration::from_secs_f64(self.reconnect_wait));
        if let Some(n) = self.max_reconnects {
            r = r.max_attempts(n);
        }
        Ok(opts.reconnect(r))
    }
}

/// The stderr line for `event` (none for the ending, which [`ended`] words).
pub(super) fn line(event: &ConnectionEvent, server: &str) -> Option<String> {
    match event {
        ConnectionEvent::Disconnected { reason } => Some(format!(
            "palio: disconnected from {server} ({reason}); reconnecting"
        )),
        ConnectionEvent::Reconnected { .. } => Some(format!("palio: reconnected to {server}")),
        _ => None,
    }
}

/// Prints the events that have come, without waiting.
pub(super) fn print_ready(
    events: &mut ConnectionEvents,
    server: &str,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    while let Some(Some(e)) = events.next().now_or_never() {
        print(&e, server, err)?;
    }
    Ok(())
}

/// Prints one event's line, if it has one.
pub(super) fn print(
    event: &ConnectionEvent,
    server: &str,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    if let Some(l) = line(event, server) {
        writeln!(err, "{l}")?;
        err.flush()?;
    }
    Ok(())
}

/// Waits (printing the events) until the client is connected again; the ending's error if
/// it ends instead.
pub(super) async fn until_back(
    client: &Client,
    events: &mut ConnectionEvents,
    server: &str,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    while let Some(e) = events.next().await {
        print(&e, server, err)?;
        match e {
            ConnectionEvent::Reconnected { .. } => return Ok(()),
            ConnectionEvent::Closed(_) => break,
            _ => {}
        }
    }
    Err(ended(client, server))
}

/// The error that tells how the client's connection ended.
pub(super) fn ended(client: &Client, server: &str) -> anyhow::Error {
    match client.ended() {
        Some(CloseReason::Broker {
            code: Some(ErrorCode::ShuttingDown),
            message,
        }) => anyhow!("the broker at {server} shut down ({message})"),
        Some(CloseReason::Broker { code, message }) => anyhow!(
            "the broker at {server} closed the connection ({}): {message}",
            code.map_or_else(|| "no code".to_owned(), |c| c.to_string())
        ),
        Some(CloseReason::Lost { reason }) => {
            anyhow!("lost the connection to {server} ({reason}); not reconnecting (--no-reconnect)")
        }
        Some(r @ CloseReason::GaveUp { .. }) => anyhow!("{r}"),
        _ => anyhow!("the connection to the broker closed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_name_the_server_and_the_reason() {
        let down = ConnectionEvent::Disconnected {
            reason: "timed out".into(),
        };
        assert_eq!(
            line(&down, "127.0.0.1:7400").as_deref(),
            Some("palio: disconnected from 127.0.0.1:7400 (timed out); reconnecting")
        );
        let up = ConnectionEvent::Reconnected {
            server: "127.0.0.1:7400".into(),
            attempts: 3,
        };
        assert_eq!(
            line(&up, "127.0.0.1:7400").as_deref(),
            Some("palio: reconnected to 127.0.0.1:7400")
        );
        assert_eq!(
            line(&ConnectionEvent::Closed(CloseReason::Local), "x"),
            None
        );
    }

    #[test]
    fn flags_make_the_policy() {
        let r = Reconnecting {
            no_reconnect: false,
            reconnect_wait: 0.5,
            max_reconnects: Some(3),
        };
        let o = r.apply(ConnectOptions::new("x")).unwrap();
        assert_eq!(o.get_reconnect().get_max_attempts(), Some(3));
        assert!(o.get_reconnect().is_enabled());
        let off = Reconnecting {
            no_reconnect: true,
            reconnect_wait: 2.0,
            max_reconnects: None,
        };
        assert!(
            !off.apply(ConnectOptions::new("x"))
                .unwrap()
                .get_reconnect()
                .is_enabled()
        );
        let bad = Reconnecting {
            no_reconnect: false,
            reconnect_wait: -1.0,
            max_reconnects: None,
        };
        assert!(bad.apply(ConnectOptions::new("x")).is_err());
    }
}
