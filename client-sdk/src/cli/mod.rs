//! The `palio` command line.
//!
//! Output contract (scripts depend on it): every command prints JSON on stdout, one object per
//! line; diagnostics go to stderr. Exit status 0 means the input could be read and the command
//! did its job; 1 means some input could not be read or the broker could not be reached or refused
//! a request; 2 means a usage error (from clap) or an invalid filter where a valid one is
//! required; 3 means `palio sub --count N` timed out before N notifications.
//!
//! The binary in `src/bin/palio.rs` only parses flags and calls [`run`].

mod filter;
mod pubsub;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Palio: content-based publish/subscribe.
#[derive(Debug, Parser)]
#[command(name = "palio", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with CESQL filter expressions: evaluate, compare, explain.
    #[command(subcommand)]
    Filter(filter::FilterCommand),
    /// Subscribe with a CESQL filter and print each notification as a JSON line.
    Sub(pubsub::Sub),
    /// Publish notifications and print {"published": N}.
    Pub(pubsub::Pub),
}

/// Runs a parsed command line, writing results to `out` and diagnostics to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    let result = match cli.command {
        Command::Filter(cmd) => filter::run(cmd, out, err),
        Command::Sub(cmd) => pubsub::run_sub(cmd, out, err),
        Command::Pub(cmd) => pubsub::run_pub(cmd, out),
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
