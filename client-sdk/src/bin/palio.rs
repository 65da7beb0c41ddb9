//! The `palio` command line: parses flags and hands over to `palio::cli`.

use std::io;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = palio::cli::Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let code = palio::cli::run(cli, &mut out, &mut io::stderr());
    // A flush failure after a successful run (e.g. a closed pipe) is reported by the exit code.
    if io::Write::flush(&mut out).is_err() && code == ExitCode::SUCCESS {
        return ExitCode::from(1);
    }
    code
}
