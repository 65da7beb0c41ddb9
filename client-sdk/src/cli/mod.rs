//! The `palio` command line.
//!
//! Output contract (scripts depend on it): every command prints JSON on stdout, one value per
//! line, each line flushed as it is written (`routes` and `peers` print aligned columns for
//! people unless given `--json`); diagnostics go to stderr. Exit status 0 means the
//! input could be read and the command did its job; 1 means some input could not be read, or
//! the broker could not be reached, refused a request (e.g. no such queue) or the connection
//! was lost; 2 means a usage error (from clap) or an invalid filter or queue name where a valid
//! one is required; 3 means `palio sub --count N` timed out before N notifications.
//!
//! The binary in `src/bin/palio.rs` only parses flags and calls [`run`].

mod connection;
mod durable;
mod filter;
mod group;
mod payload;
mod pubsub;
mod queue;
mod reconnect;
mod refusal;
mod request;
mod routes;
mod server;
mod table;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `palio --help` says after the commands: the contract scripts rely on.
const AFTER_HELP: &str = "\
Output: JSON on stdout, one value per line, each line flushed as written; diagnostics on stderr.
Exit status: 0 done; 1 unreadable input, broker unreachable, request refused (e.g. no such
queue) or connection lost; 2 usage error, invalid filter or queue name; 3 `sub --count N`
timed out before N.

Reconnecting: `palio sub` (and `sub --durable`) reconnects after losing the broker, saying so
on stderr (--no-reconnect, --reconnect-wait SECS, --max-reconnects N); other commands fail.

Persistent delivery: `palio queue add NAME FILTER` keeps matching persistent notifications;
`palio pub --persistent` waits for the broker's acks and prints
{\"published\": N, \"acked\": M, \"stored\": K} (K: acked and kept by a queue);
`palio sub --durable NAME [--pull]` prints and acks each message with its delivery_count.

Ordered groups: `palio group create NAME --order {fifo,causal,total}`; `palio sub --group NAME`
prints each message with \"group\" (and \"epoch\", \"seq\" for total order);
`palio pub --group NAME` prints {\"published\": N, \"acked\": M}.

Request/reply: `palio reply FILTER -p TEXT` answers matching requests; `palio req -a NAME=VALUE`
prints the first reply as {\"attributes\": {...}, \"payload\": \"...\"}, or exits 1 with
\"no responders\" at once when no subscription anywhere matches.

Connecting: -s/--server HOST[:PORT] (PALIO_SERVER; port 7400 when omitted). Without --tls-dir
or --ca, the CLI uses ./palio-data/tls if it holds ca.pem, else the TLS directory the broker at
--server recorded for local clients. No broker answering within 2 s is an error (exit 1).

Environment: PALIO_SERVER, PALIO_TLS_DIR, PALIO_CA, PALIO_TOKEN stand for their flags;
PALIO_LOG turns on the SDK's and QUIC's logs on stderr, in tracing's filter syntax (e.g. debug,
palio=trace) [default: off].

The broker: `palio server info` prints its id, version, uptime_s, strategy, clients and peers
(state up/down, rtt_ms); `palio server ping [--count N]` prints {\"seq\": I, \"rtt_ms\": R} per
ping; `palio routes` and `palio peers` print its routing state (peer links, the tree, the
routing tables with their filters) as columns, or as JSON with --json.";

/// Palio: content-based publish/subscribe.
#[derive(Debug, Parser)]
#[command(
    name = "palio",
    version,
    propagate_version = true,
    about,
    long_about = None,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with CESQL filter expressions: evaluate, compare, explain.
    #[command(subcommand)]
    Filter(filter::FilterCommand),
    /// Subscribe with a CESQL filter, or consume a durable queue (--durable NAME), and print
    /// each notification as a JSON line.
    Sub(pubsub::Sub),
    /// Publish notifications and print {"published": N} (with --persistent:
    /// {"published": N, "acked": M, "stored": K}).
    Pub(pubsub::Pub),
    /// Send a request (routed by content like a publication) and print the first reply as a
    /// JSON line; exit 1 with "no responders" at once if no subscription matches it.
    Req(request::Req),
    /// Answer every request matching FILTER with --payload (and --attr), printing each
    /// request answered, until --count N or SIGINT.
    Reply(request::Reply),
    /// Manage durable queues: add, ls, info, rm, purge, peek.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Manage ordered groups: create, ls, info, rm.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Ask the broker about itself: info (id, version, uptime, peers), ping (round trip).
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Print the broker's routing state: peer links, the spanning tree and the routing
    /// tables with their filters (columns; JSON with --json).
    Routes(routes::RoutesArgs),
    /// Print the broker's peer links and configured peers with their state (columns; JSON
    /// with --json).
    Peers(routes::RoutesArgs),
}

/// Runs a parsed command line, writing results to `out` and diagnostics to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let result = match cli.command {
        Command::Filter(cmd) => filter::run(cmd, out, err),
        Command::Sub(cmd) => pubsub::run_sub(cmd, out, err),
        Command::Pub(cmd) => pubsub::run_pub(cmd, out, err),
        Command::Req(cmd) => request::run_req(cmd, out, err),
        Command::Reply(cmd) => request::run_reply(cmd, out, err),
        Command::Queue(cmd) => queue::run(cmd, out, err),
        Command::Group(cmd) => group::run(cmd, out, err),
        Command::Server(cmd) => server::run(cmd, out, err),
        Command::Routes(args) => routes::run(args, routes::Part::Routes, out, err),
        Command::Peers(args) => routes::run(args, routes::Part::Peers, out, err),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Broken pipe (e.g. `palio ... | head`) is not worth a message.
            if let Some(ioe) = e.downcast_ref::<io::Error>()
                && ioe.kind() == io::ErrorKind::BrokenPipe
            {
                return ExitCode::SUCCESS;
            }
            let _ = writeln!(err, "palio: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("palio").chain(args.iter().copied()))
    }

    /// Runs a command line with no broker to talk to (nothing listens on port 9, and the TLS
    /// directory does not exist).
    fn run_offline(args: &[&str]) -> (ExitCode, String, String) {
        let mut full = args.to_vec();
        full.extend([
            "--server",
            "127.0.0.1:9",
            "--tls-dir",
            "/nonexistent/palio-tls",
        ]);
        let cli = parse(&full).expect("valid command line");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run(cli, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).expect("utf-8"),
            String::from_utf8(err).expect("utf-8"),
        )
    }

    #[test]
    fn sub_takes_a_filter_or_a_durable_queue_not_both() {
        let cli = parse(&["sub", "--durable", "orders", "--count", "3"]).unwrap();
        let Command::Sub(sub) = cli.command else {
            panic!("not sub: {cli:?}");
        };
        assert_eq!(sub.durable.as_deref(), Some("orders"));
        assert_eq!(sub.filter, None);
        assert!(!sub.pull);
        assert_eq!(sub.window, 256);
        assert!(parse(&["sub", "x > 1"]).is_ok());
        assert!(parse(&["sub"]).is_err());
        assert!(parse(&["sub", "--durable", "orders", "x > 1"]).is_err());
    }

    #[test]
    fn pull_options_need_durable_pull() {
        let cli = parse(&["sub", "--durable", "q", "--pull", "--batch", "10"]).unwrap();
        let Command::Sub(sub) = cli.command else {
            panic!("not sub: {cli:?}");
        };
        assert!(sub.pull);
        assert_eq!(sub.batch, 10);
        assert!(parse(&["sub", "--pull", "x > 1"]).is_err());
        assert!(parse(&["sub", "--durable", "q", "--batch", "10"]).is_err());
        assert!(parse(&["sub", "--durable", "q", "--pull", "--window", "4"]).is_err());
        assert!(parse(&["sub", "--window", "4", "x > 1"]).is_err());
        assert!(parse(&["sub", "--pull", "--batch", "4", "x > 1"]).is_err());
        // Within the protocol's limits.
        assert!(parse(&["sub", "--durable", "q", "--pull", "--batch", "4096"]).is_ok());
        assert!(parse(&["sub", "--durable", "q", "--pull", "--batch", "4097"]).is_err());
        assert!(parse(&["sub", "--durable", "q", "--pull", "--batch", "0"]).is_err());
        assert!(parse(&["sub", "--durable", "q", "--window", "4096"]).is_ok());
        assert!(parse(&["sub", "--durable", "q", "--window", "4097"]).is_err());
        assert!(parse(&["sub", "--durable", "q", "--window", "0"]).is_err());
    }

    #[test]
    fn reconnect_flags_parse_and_exclude_no_reconnect() {
        let cli = parse(&[
            "sub",
            "--reconnect-wait",
            "0.5",
            "--max-reconnects",
            "3",
            "x > 1",
        ])
        .unwrap();
        let Command::Sub(sub) = cli.command else {
            panic!("not sub: {cli:?}");
        };
        assert_eq!(
            (sub.reconnect.reconnect_wait, sub.reconnect.max_reconnects),
            (0.5, Some(3))
        );
        assert!(!sub.reconnect.no_reconnect);
        assert!(parse(&["sub", "--durable", "q", "--no-reconnect"]).is_ok());
        assert!(parse(&["sub", "--no-reconnect", "--max-reconnects", "2", "x > 1"]).is_err());
        assert!(parse(&["sub", "--no-reconnect", "--reconnect-wait", "1", "x > 1"]).is_err());
    }

    #[test]
    fn producer_needs_persistent() {
        assert!(parse(&["pub", "--persistent", "--producer", "p1", "--count", "5"]).is_ok());
        assert!(parse(&["pub", "--producer", "p1"]).is_err());
    }

    #[test]
    fn queue_commands_parse() {
        let cli = parse(&[
            "queue",
            "add",
            "orders",
            "type = 'order'",
            "--ack-wait",
            "1.5",
            "--max-deliveries",
            "3",
        ])
        .unwrap();
        let Command::Queue(queue::QueueCommand::Add {
            name,
            filter,
            ack_wait,
            max_deliveries,
            ..
        }) = cli.command
        else {
            panic!("not queue add: {cli:?}");
        };
        assert_eq!(
            (name.as_str(), filter.as_str(), ack_wait, max_deliveries),
            ("orders", "type = 'order'", Some(1.5), Some(3))
        );
        assert!(parse(&["queue", "add", "q", "x > 1", "--max-deliveries", "0"]).is_err());
        assert!(parse(&["queue", "add", "q"]).is_err());
        assert!(parse(&["queue", "ls"]).is_ok());
        assert!(parse(&["queue", "info", "q.dlq"]).is_ok());
        assert!(parse(&["queue", "rm", "q"]).is_ok());
        assert!(parse(&["queue", "info"]).is_err());
        assert!(parse(&["queue", "purge", "q.dlq"]).is_ok());
        let cli = parse(&["queue", "peek", "q"]).unwrap();
        let Command::Queue(queue::QueueCommand::Peek { count, .. }) = cli.command else {
            panic!("not queue peek: {cli:?}");
        };
        assert_eq!(count, 1);
        assert!(parse(&["queue", "peek", "q", "--count", "4096"]).is_ok());
        assert!(parse(&["queue", "peek", "q", "--count", "4097"]).is_err());
        assert!(parse(&["queue", "peek", "q", "--count", "0"]).is_err());
    }

    #[test]
    fn queue_add_refuses_bad_names_filters_and_ack_waits_before_connecting() {
        for args in [
            ["queue", "add", "no spaces", "x > 1"].as_slice(),
            &["queue", "add", "orders.dlq", "x > 1"],
            &["queue", "add", "orders", "x >"],
            &["queue", "add", "orders", "x > 1", "--ack-wait=-2"],
        ] {
            let (code, out, err) = run_offline(args);
            assert_eq!(code, ExitCode::from(2), "{args:?}: {err}");
            assert_eq!(out, "", "{args:?}");
            assert!(
                err.starts_with("palio: invalid") || err.contains("--ack-wait"),
                "{err}"
            );
        }
    }

    #[test]
    fn persistent_pub_prints_its_tally_even_when_it_cannot_connect() {
        let (code, out, err) = run_offline(&["pub", "--persistent", "--count", "3"]);
        assert_eq!(code, ExitCode::from(1), "{err}");
        let line: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert_eq!(
            line,
            serde_json::json!({"published": 0, "acked": 0, "stored": 0})
        );
        assert!(err.starts_with("palio: "), "{err}");
    }

    #[test]
    fn broker_commands_parse_and_fail_with_status_1_naming_the_address_without_a_broker() {
        assert!(parse(&["server", "ping", "--count", "3", "--interval", "0"]).is_ok());
        assert!(parse(&["server", "ping", "--count", "0"]).is_err());
        assert!(parse(&["routes", "--json"]).is_ok());
        assert!(parse(&["peers"]).is_ok());
        assert!(parse(&["server"]).is_err());
        for args in [
            ["server", "info"].as_slice(),
            &["server", "ping"],
            &["routes"],
            &["peers", "--json"],
        ] {
            let (code, out, err) = run_offline(args);
            assert_eq!(code, ExitCode::from(1), "{args:?}");
            assert_eq!(out, "", "{args:?}");
            assert!(
                err.starts_with("palio: ") && err.contains("127.0.0.1:9"),
                "{args:?}: {err}"
            );
        }
    }

    #[test]
    fn durable_sub_and_queue_commands_fail_with_status_1_without_a_broker() {
        for args in [
            ["sub", "--durable", "orders", "--count", "1"].as_slice(),
            &["queue", "ls"],
            &["queue", "info", "orders"],
        ] {
            let (code, out, err) = run_offline(args);
            assert_eq!(code, ExitCode::from(1), "{args:?}");
            assert_eq!(out, "", "{args:?}");
            assert!(err.starts_with("palio: "), "{args:?}: {err}");
        }
    }
}
