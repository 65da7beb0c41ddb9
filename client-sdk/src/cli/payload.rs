//! Payloads on the command line: what `palio pub` sends (`--payload TEXT`, `--payload-file
//! FILE`, `--payload-file -` for standard input, or standard input itself when it is a pipe or
//! a file and neither flag is given) and how `palio sub` prints what it receives (a JSON line,
//! or with `--raw` the payload's bytes and a newline).
//!
//! Standard input is read without a flag only when it is a pipe or a regular file
//! (`echo data | palio pub`, `palio pub < file`): a terminal, `/dev/null` or a socket (an
//! `ssh` session, a service) gives an empty payload instead of a wait for input that never
//! comes. A script that runs `palio pub` in a loop reading its own standard input should pass
//! `--payload` or redirect `</dev/null`.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::Path;

use anyhow::{Context, bail};
use palio_protocol::MAX_FRAME_CEILING;

/// The most payload bytes read: more than any broker accepts in one frame
/// ([`MAX_FRAME_CEILING`]), so a larger input is refused before connecting.
const MAX_READ: u64 = MAX_FRAME_CEILING as u64;

/// The payload `palio pub` sends, from its flags or standard input.
pub(super) fn read(payload: Option<String>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match (payload, file) {
        (Some(text), _) => Ok(text.into_bytes()),
        (None, Some(p)) if p == Path::new("-") => {
            read_bounded(io::stdin().lock(), "standard input")
        }
        (None, Some(p)) => {
            let f = File::open(p).with_context(|| format!("--payload-file {}", p.display()))?;
            read_bounded(f, &p.display().to_string())
        }
        (None, None) if stdin_has_input() => read_bounded(io::stdin().lock(), "standard input"),
        (None, None) => Ok(Vec::new()),
    }
}

/// Whether standard input is a pipe or a regular file, the inputs read without `--payload-file -`.
fn stdin_has_input() -> bool {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileTypeExt;
        let Ok(fd) = stdin.as_fd().try_clone_to_owned() else {
            return false;
        };
        File::from(fd)
            .metadata()
            .is_ok_and(|m| m.file_type().is_fifo() || m.is_file())
    }
    #[cfg(not(unix))]
    true
}

fn read_bounded(input: impl Read, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    input
        .take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the payload from {what}"))?;
    if bytes.len() as u64 > MAX_READ {
        bail!(
            "the payload from {what} is larger than {MAX_READ} bytes, more than any broker \
             accepts in one frame (limits.max_frame_bytes is at most that)"
        );
    }
    Ok(bytes)
}

/// Prints a received message: its JSON `line`, or with `raw` its payload followed by a newline.
pub(super) fn print(
    out: &mut dyn Write,
    raw: bool,
    payload: &[u8],
    line: impl FnOnce() -> serde_json::Value,
) -> io::Result<()> {
    if raw {
        out.write_all(payload)?;
        out.write_all(b"\n")?;
    } else {
        writeln!(out, "{}", line())?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_past_the_largest_frame_are_refused() {
        let big = io::repeat(7).take(MAX_READ + 10);
        let e = read_bounded(big, "test").expect_err("too large");
        assert!(e.to_string().contains("max_frame_bytes"), "{e}");
        let ok = read_bounded(&b"\x00\xffbinary"[..], "test").expect("read");
        assert_eq!(ok, b"\x00\xffbinary");
    }

    #[test]
    fn raw_prints_bytes_and_a_newline() {
        let mut out = Vec::new();
        print(&mut out, true, b"\xff\x00x", || unreachable!()).expect("printed");
        assert_eq!(out, b"\xff\x00x\n");
        let mut out = Vec::new();
        print(&mut out, false, b"", || serde_json::json!({"a": 1})).expect("printed");
        assert_eq!(out, b"{\"a\":1}\n");
    }
}
