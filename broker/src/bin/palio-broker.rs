//! The `palio-broker` daemon: parses flags, loads the configuration and runs the server.
//!
//! With no arguments it runs on embedded defaults (QUIC on 127.0.0.1:7400, admin HTTP on
//! 127.0.0.1:7480, data in ./palio-data with a development CA created there).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use palio_broker::{Overrides, Server, Settings};
use palio_protocol::tls::Registration;

/// What `palio-broker --help` says after the flags.
const AFTER_HELP: &str = "\
Logging: PALIO_LOG sets what is logged on stderr, in tracing's filter syntax (e.g. warn, debug,
palio_broker=debug,quinn=warn) [default: info].

With a development TLS directory, the broker records it for the user's clients in
$XDG_STATE_HOME/palio/brokers (else ~/.local/state/palio/brokers), so that `palio` finds it
from any directory; the record goes when the broker stops.";

/// Palio broker: content-based publish/subscribe over QUIC.
#[derive(Debug, Parser)]
#[command(name = "palio-broker", version, about, long_about = None, after_help = AFTER_HELP)]
struct Args {
    /// TOML configuration file (flags override it).
    #[arg(long, env = "PALIO_CONFIG")]
    config: Option<PathBuf>,
    /// This broker's name, unique in the overlay (its routing id is derived from it).
    #[arg(long)]
    id: Option<String>,
    /// QUIC listen address [default: 127.0.0.1:7400].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin HTTP listen address, or `off` [default: 127.0.0.1:7480].
    #[arg(long)]
    admin: Option<String>,
    /// Data directory [default: ./palio-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Development PKI directory: a CA is created there if absent, else this broker's
    /// certificate is issued from it [default: <data-dir>/tls].
    #[arg(long)]
    tls_dir: Option<PathBuf>,
    /// A peer broker to link to (host:port, or a host alone for port 7400); repeatable.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// QUIC keep-alive in milliseconds: a PING after this long without receiving anything
    /// [default: 1000].
    #[arg(long, value_name = "MS")]
    keep_alive_ms: Option<u64>,
    /// QUIC idle timeout in milliseconds: a connection silent this long is dead and its peer
    /// link or client session ends [default: 5000].
    #[arg(long, value_name = "MS")]
    idle_timeout_ms: Option<u64>,
}

/// mimalloc rather than the system allocator: messages are allocated on the network threads
/// and freed on the persist thread, which glibc's per-thread arenas handle poorly (the
/// persistent publish rate went from ~170k to ~230k msgs/s with it; docs/benchmarks/persistence.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in files or journald.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PALIO_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let overrides = Overrides {
        config: args.config,
        id: args.id,
        listen: args.listen,
        admin: args.admin,
        data_dir: args.data_dir,
        tls_dir: args.tls_dir,
        peers: args.peers,
        keep_alive_ms: args.keep_alive_ms,
        idle_timeout_ms: args.idle_timeout_ms,
    };
    let settings = match Settings::load(&overrides) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("palio-broker: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palio-broker: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let server = match Server::bind(settings).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("palio-broker: cannot start: {e}");
                return ExitCode::from(1);
            }
        };
        let registration = register(&server);
        announce(&server, registration.is_some());
        tokio::spawn(reload_on_hangup(server.reloader(), overrides));
        server.run(shutdown_signal()).await;
        // Removes the record (if it is still ours) once the broker has stopped.
        drop(registration);
        ExitCode::SUCCESS
    })
}

/// With a development TLS directory: records it for the user's clients (best effort; see
/// `palio_protocol::tls::Registration`), so that `palio` finds it from any directory.
fn register(server: &Server) -> Option<Registration> {
    let (dir, addr) = (server.tls_dir()?, server.local_addr()?);
    match Registration::register(addr, dir) {
        Ok(r) => {
            if let Some(r) = &r {
                tracing::info!(record = %r.path().display(), "recorded the TLS directory for local clients");
            }
            r
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the TLS directory for local clients: they need --tls-dir");
            None
        }
    }
}

/// Prints where the broker listens: a human line, a machine-readable `PALIO_READY` JSON line
/// (tests read it), and how to connect (`registered`: clients find the TLS directory without
/// `--tls-dir`).
fn announce(server: &Server, registered: bool) {
    let quic = server
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let admin = server.admin_addr().map(|a| a.to_string());
    let tls = server.tls_dir().map(|d| d.display().to_string());
    println!(
        "palio-broker {} (id {}) listening on {quic} (QUIC){}",
        server.name(),
        server.broker_id(),
        admin
            .as_ref()
            .map(|a| format!(", admin http://{a}/metrics"))
            .unwrap_or_default()
    );
    println!(
        "PALIO_READY {}",
        serde_json::json!({
            "name": server.name(),
            "id": server.broker_id().0,
            "quic": quic,
            "admin": admin,
            "tls_dir": tls,
            "store": server.store_summary(),
        })
    );
    let problems = server.store_summary()["problems"]
        .as_array()
        .map_or(0, Vec::len);
    if problems > 0 {
        eprintln!(
            "warning: store recovery found {problems} problem(s) in the log (see the log lines above and docs/durability.md)"
        );
    }
    let tls_flag = tls
        .filter(|_| !registered)
        .map(|t| format!(" --tls-dir {t}"))
        .unwrap_or_default();
    println!("connect: palio sub --server {quic}{tls_flag} \"type = 'greeting'\"");
    println!("         palio pub --server {quic}{tls_flag} --attr type=greeting --payload hello");
}

/// On each SIGHUP, loads the configuration again (the same file and flags) and puts its
/// `[auth]` and `[admin_access]` in force. A configuration that does not load is reported and
/// changes nothing.
async fn reload_on_hangup(reloader: palio_broker::Reloader, overrides: Overrides) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: credentials cannot be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            match Settings::load(&overrides) {
                Ok(settings) => reloader.reload(&settings),
                Err(e) => reloader.failed(&e),
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (reloader, overrides);
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
