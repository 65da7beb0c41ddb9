//! Test harness: real `palio-broker` processes on ephemeral loopback ports, killed on drop,
//! plus small HTTP and raw-QUIC helpers. Every wait is bounded.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod cli;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use palio::{Client, ConnectOptions};
use serde_json::Value as Json;

/// A running broker process.
pub struct BrokerProc {
    child: Child,
    pub name: String,
    pub quic: String,
    pub admin: String,
    pub tls_dir: PathBuf,
    /// The broker's `XDG_STATE_HOME`, beside its TLS directory: where it records that
    /// directory for local clients (never the user's own).
    pub state_home: PathBuf,
    args: Vec<String>,
    /// A command the broker runs under (`unshare …`), empty for none.
    prefix: Vec<String>,
}

impl BrokerProc {
    /// Starts `palio-broker` with `args` plus ephemeral ports (unless `args` set them) and
    /// waits for its `PALIO_READY` line.
    pub fn start(data: &Path, tls_dir: &Path, args: &[&str]) -> BrokerProc {
        Self::start_wrapped(&[], data, tls_dir, args)
    }

    /// As [`BrokerProc::start`], with the broker run by `prefix` (a command taking the broker's
    /// command line as its trailing arguments).
    pub fn start_wrapped(
        prefix: &[&str],
        data: &Path,
        tls_dir: &Path,
        args: &[&str],
    ) -> BrokerProc {
        let mut full: Vec<String> = vec![
            "--data-dir".into(),
            data.display().to_string(),
            "--tls-dir".into(),
            tls_dir.display().to_string(),
        ];
        if !args.contains(&"--listen") {
            full.extend(["--listen".into(), "127.0.0.1:0".into()]);
        }
        if !args.contains(&"--admin") {
            full.extend(["--admin".into(), "127.0.0.1:0".into()]);
        }
        full.extend(args.iter().map(|s| s.to_string()));
        Self::spawn(
            prefix.iter().map(|s| s.to_string()).collect(),
            full,
            tls_dir,
        )
    }

    /// Starts a broker whose TLS files are named in its configuration (no --tls-dir);
    /// `ca_dir` is where clients find the CA.
    pub fn start_with_files(data: &Path, ca_dir: &Path, args: &[&str]) -> BrokerProc {
        let mut full: Vec<String> = vec![
            "--data-dir".into(),
            data.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--admin".into(),
            "127.0.0.1:0".into(),
        ];
        full.extend(args.iter().map(|s| s.to_string()));
        Self::spawn(Vec::new(), full, ca_dir)
    }

    fn spawn(prefix: Vec<String>, args: Vec<String>, tls_dir: &Path) -> BrokerProc {
        let broker = env!("CARGO_BIN_EXE_palio-broker");
        let state_home = tls_dir.with_file_name("xdg-state");
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(broker);
                c
            }
            None => Command::new(broker),
        };
        let mut child = cmd
            .args(&args)
            .env(
                "PALIO_LOG",
                std::env::var("PALIO_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .env("XDG_STATE_HOME", &state_home)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn palio-broker");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(json) = line.strip_prefix("PALIO_READY ") {
                    let _ = tx.send(json.to_owned());
                }
            }
        });
        let ready = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(r) => r,
            Err(_) => {
                let _ = child.kill();
                panic!("broker did not report ready within 20 s");
            }
        };
        let j: Json = serde_json::from_str(&ready).expect("ready line is JSON");
        BrokerProc {
            child,
            name: j["name"].as_str().expect("name").to_owned(),
            quic: j["quic"].as_str().expect("quic").to_owned(),
            admin: j["admin"].as_str().unwrap_or_default().to_owned(),
            tls_dir: tls_dir.to_owned(),
            state_home,
            args,
            prefix,
        }
    }

    /// Kills the process (like a crash) and starts it again with the same arguments, on the
    /// same QUIC port.
    pub fn restart(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = self.quic.clone();
        }
        let tls = self.tls_dir.clone();
        let fresh = Self::spawn(self.prefix.clone(), args, &tls);
        let _ = std::mem::replace(self, fresh);
    }

    /// The broker's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits (at most `secs`) for the process to exit; its exit status.
    pub fn terminate(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Connection options for this broker's development PKI.
    pub fn options(&self) -> ConnectOptions {
        ConnectOptions::new(&self.quic)
            .tls_dir(&self.tls_dir)
            .timeout(Duration::from_secs(10))
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.options())
            .await
            .expect("client connects")
    }

    pub fn get(&self, path: &str) -> String {
        http_get(&self.admin, path)
    }

    /// The status code and body of an admin GET.
    pub fn get_status(&self, path: &str) -> (u16, String) {
        http_get_status(&self.admin, path)
    }

    pub fn routes(&self) -> Json {
        serde_json::from_str(&self.get("/routes")).expect("/routes is JSON")
    }

    /// The value of a metric line starting with `prefix` (name and labels), or 0.
    pub fn metric(&self, prefix: &str) -> f64 {
        self.get("/metrics")
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET returning the body (asserting status 200).
pub fn http_get(addr: &str, path: &str) -> String {
    let (status, body) = http_get_status(addr, path);
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

/// A minimal HTTP/1.1 GET returning the status code and body.
pub fn http_get_status(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("admin connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).expect("admin answers");
    let (head, body) = buf.split_once("\r\n\r\n").expect("HTTP response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("an HTTP status line");
    (status, body.to_owned())
}

/// Polls `cond` every 50 ms until it holds; panics after `secs` seconds.
pub async fn wait_until(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next notification within `secs`, or `None`.
pub async fn next_within(
    sub: &mut palio::Subscription,
    millis: u64,
) -> Option<palio::Notification> {
    tokio::time::timeout(Duration::from_millis(millis), sub.next())
        .await
        .ok()
        .flatten()
}

/// A temp dir for data and a shared TLS dir.
pub struct Dirs {
    pub root: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Self {
        Dirs {
            root: tempfile::tempdir().expect("temp dir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

/// A raw QUIC connection to `b` with ALPN `alpn`, presenting a certificate from `tls_dir`'s CA.
pub async fn raw_connect(
    b: &BrokerProc,
    tls_dir: &Path,
    alpn: &[u8],
) -> (quinn::Endpoint, quinn::Connection) {
    use palio_protocol::tls;
    let pki = tls::DevPki::open(tls_dir).unwrap();
    let identity = pki.issue("raw", &[]).unwrap();
    // Trust the broker's CA (the one in its own TLS directory).
    let roots = tls::DevPki::open(&b.tls_dir).unwrap().roots().unwrap();
    let cfg = tls::client_config(roots, Some(identity), alpn).unwrap();
    let ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    let conn = ep
        .connect_with(cfg, b.quic.parse().unwrap(), tls::DEV_SERVER_NAME)
        .unwrap()
        .await
        .expect("QUIC handshake");
    (ep, conn)
}

/// Writes one length-prefixed frame.
pub async fn write_frame<T: serde::Serialize>(s: &mut quinn::SendStream, frame: &T) {
    let body = palio_protocol::encode(frame).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&body).await.unwrap();
}

/// Reads one length-prefixed frame.
pub async fn read_frame<T: serde::de::DeserializeOwned>(r: &mut quinn::RecvStream) -> T {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    r.read_exact(&mut body).await.unwrap();
    palio_protocol::decode(&body).unwrap()
}

/// The application close code the connection ends with (bounded wait).
pub async fn close_code(conn: &quinn::Connection) -> Option<palio::ErrorCode> {
    let e = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .expect("connection closed within 10 s");
    match e {
        quinn::ConnectionError::ApplicationClosed(c) => {
            palio::ErrorCode::from_code(c.error_code.into_inner())
        }
        _ => None,
    }
}
