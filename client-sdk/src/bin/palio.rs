//! The `palio` command line: parses flags, starts logging if `PALIO_LOG` asks for it, and
//! hands over to `palio::cli`.

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = palio::cli::Cli::parse();
    // The SDK's and QUIC's logs, only when PALIO_LOG asks for them: stdout is for JSON.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("PALIO_LOG") {
        tracing_subscriber::fmt()
            .with_writer(io::stderr)
            .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
            .with_env_filter(filter)
            .init();
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let code = palio::cli::run(cli, &mut out, &mut io::stderr());
    // A flush failure after a successful run (e.g. a closed pipe) is reported by the exit code.
    if io::Write::flush(&mut out).is_err() && code == ExitCode::SUCCESS {
        return ExitCode::from(1);
    }
    code
}
