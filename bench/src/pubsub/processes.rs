//! The multi-process benchmark: every broker a `palio-broker` process, the publisher and the
//! subscriber `palio-bench pubsub-worker` processes ([`super::worker`]); this process only
//! orchestrates.
//!
//! 1. Brokers start one after the other on `127.0.0.1:0` (QUIC and admin), each with its own
//!    temporary data directory and one shared development PKI directory, each linked to the
//!    previous one with `--peer`; each reports its bound addresses on a `PALIO_READY {json}`
//!    stdout line. Their logs (`PALIO_LOG`, default `warn`) go to files whose tails are shown
//!    if the run fails.
//! 2. The subscriber connects to the last broker and subscribes; the publisher connects to the
//!    first and publishes route probes until the subscriber has received one (the
//!    subscription has propagated along the line), then the run.
//! 3. When the publisher has flushed, the subscriber is told how many were published and stops
//!    when all have arrived, or after a quiet drain period (what is missing then is lost).
//! 4. Each broker's `/metrics` is read, and every child process is killed.
//!
//! Every wait has a bound; a run that stalls fails with the brokers' counters at that moment.
//! Child processes are killed when the run ends, fails, or this process gets SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::Instant;

use super::worker::{PublisherResult, SubscriberResult};
use super::{ATTRIBUTES, PubsubConfig, PubsubReport, cpu_us_per, fill_totals, loss, metrics};

/// How long a broker may take to print `PALIO_READY`, and a worker to connect, subscribe or
/// see the route.
pub(crate) const SETUP: Duration = Duration::from_secs(30);

/// How the processes run.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The `palio-broker` executable.
    pub broker_bin: PathBuf,
    /// The `palio-bench` executable the workers run (normally this one).
    pub worker_bin: PathBuf,
    /// The longest the measured part may take: from the first publication until the
    /// publisher has flushed, and again until the subscriber is done.
    pub timeout: Duration,
    /// How long the subscriber waits for stragglers after the publisher is done.
    pub drain: Duration,
    /// Measure a broker that is already running instead of starting brokers: its QUIC address
    /// and the TLS directory the workers authenticate with (its development PKI).
    pub server: Option<(String, PathBuf)>,
}

/// The `palio-broker` next to this executable (`target/release/palio-broker` for
/// `target/release/palio-bench`).
pub fn default_broker_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let dir = exe.parent().context("this executable's directory")?;
    Ok(dir.join(format!("palio-broker{}", std::env::consts::EXE_SUFFIX)))
}

/// Refuses a `palio-broker` path that is not a file, saying how to build one.
pub(crate) fn check_broker_bin(bin: &Path) -> anyhow::Result<()> {
    if !bin.is_file() {
        bail!(
            "no broker executable at {} (build it with `cargo build --release -p palio-broker`, \
             or pass --broker-bin)",
            bin.display()
        );
    }
    Ok(())
}

/// What a broker's `PALIO_READY` line says (the fields the benchmark uses).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Ready {
    /// The broker's name.
    pub name: String,
    /// The bound QUIC address.
    pub quic: String,
    /// The bound admin address, if the admin listener is on.
    pub admin: Option<String>,
}

/// Parses a broker's stdout line: `None` if it is not the `PALIO_READY` line.
pub fn parse_ready(line: &str) -> Option<anyhow::Result<Ready>> {
    let json = line.trim_end().strip_prefix("PALIO_READY ")?;
    Some(serde_json::from_str(json).context("a PALIO_READY line that is not the expected JSON"))
}

/// Runs the benchmark in separate processes.
pub fn run(config: &PubsubConfig, opts: &ProcessOptions) -> anyhow::Result<PubsubReport> {
    config.check()?;
    if opts.server.is_some() && (config.brokers != 1 || config.group.is_some()) {
        bail!("against a running broker (--server), the run is one broker and no group");
    }
    if opts.server.is_none() {
        check_broker_bin(&opts.broker_bin)?;
    }
    // This process only waits on pipes and timers: one thread is plenty, and leaves the cores
    // to the brokers and workers.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    rt.block_on(async {
        tokio::select! {
            r = run_async(config, opts) => r,
            // Dropping the run kills its children (`kill_on_drop`).
            s = interrupted() => Err(anyhow!("{s}: the run was stopped and its processes killed")),
        }
    })
}

/// Resolves at SIGINT or SIGTERM, saying which.
pub(crate) async fn interrupted() -> &'static str {
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "interrupted",
        () = term => "terminated",
    }
}

async fn run_async(config: &PubsubConfig, opts: &ProcessOptions) -> anyhow::Result<PubsubReport> {
    let root = tempfile::tempdir().context("temp dir")?;
    let (tls, external) = match &opts.server {
        Some((quic, tls)) => (tls.clone(), Some(quic.clone())),
        None => (root.path().join("tls"), None),
    };
    let mut brokers: Vec<Broker> = Vec::new();
    let to_start = if external.is_some() {
        0
    } else {
        config.brokers
    };
    for i in 0..to_start {
        let peer = brokers.last().map(|b| b.quic.clone());
        let b = Broker::start(&opts.broker_bin, i, root.path(), &tls, peer.as_deref())
            .await
            .map_err(|e| with_diagnostics(e, &brokers))?;
        brokers.push(b);
    }
    let (first, last) = match (brokers.first(), brokers.last(), external) {
        (_, _, Some(server)) => (server.clone(), server),
        (Some(f), Some(l), None) => (f.quic.clone(), l.quic.clone()),
        _ => bail!("no brokers"),
    };
    if let Some(order) = config.group {
        create_group(&brokers, &tls, order)
            .await
            .map_err(|e| with_diagnostics(e, &brokers))?;
    }
    let common = |server: &str| -> Vec<String> {
        let mut a: Vec<String> = vec![
            "--server".into(),
            server.into(),
            "--tls-dir".into(),
            tls.display().to_string(),
            "--count".into(),
            config.count.to_string(),
        ];
        if config.group.is_some() {
            a.extend(["--group".into(), super::GROUP.into()]);
        }
        a
    };

    let mut sub_args = common(&last);
    sub_args.extend(["--drain-ms".into(), opts.drain.as_millis().to_string()]);
    let mut sub = Worker::spawn(
        &opts.worker_bin,
        "subscriber",
        &["pubsub-worker", "sub"],
        &sub_args,
    )?;
    sub.expect(SETUP, "subscribed", "subscribe")
        .await
        .map_err(|e| with_diagnostics(e, &brokers))?;

    let mut pub_args = common(&first);
    pub_args.extend(["--payload".into(), config.payload_bytes.to_string()]);
    if let Some(r) = config.rate {
        pub_args.extend(["--rate".into(), r.to_string()]);
    }
    let mut publ = Worker::spawn(
        &opts.worker_bin,
        "publisher",
        &["pubsub-worker", "pub"],
        &pub_args,
    )?;
    publ.expect(SETUP, "connected", "connect")
        .await
        .map_err(|e| with_diagnostics(e, &brokers))?;
    sub.expect(SETUP, "probe", "receive a route probe")
        .await
        .map_err(|e| {
            with_diagnostics(
                e.context("the route from the first broker to the last never appeared"),
                &brokers,
            )
        })?;

    // Each broker's CPU time so far (start-up, route set-up), subtracted at the end.
    let cpu_before: Vec<Option<f64>> = brokers.iter().map(Broker::cpu_secs).collect();
    publ.send("go").await?;
    let deadline = Instant::now() + opts.timeout;
    let p: PublisherResult = publ
        .result(deadline, "finish publishing")
        .await
        .map_err(|e| with_diagnostics(e, &brokers))?;
    // A subscriber that already has everything has finished and closed its stdin: then the
    // command cannot be sent, and its result line is waiting.
    let _ = sub.send(&format!("done {}", p.published)).await;
    let s: SubscriberResult = sub
        .result(
            deadline.max(Instant::now()) + opts.drain,
            "finish receiving",
        )
        .await
        .map_err(|e| with_diagnostics(e, &brokers))?;
    publ.finish().await;
    sub.finish().await;
    if s.unexpected > 0 {
        eprintln!(
            "palio-bench: warning: the subscriber received {} notifications with a seq outside the run",
            s.unexpected
        );
    }

    let mut per_broker = Vec::new();
    for (b, cpu0) in brokers.iter().zip(cpu_before) {
        let mut m = metrics::scrape(&b.name, &b.admin)?;
        m.cpu_secs = cpu0.zip(b.cpu_secs()).map(|(a, z)| z - a);
        per_broker.push(m);
    }
    let broker_cpu: Option<f64> = per_broker.iter().map(|m| m.cpu_secs).sum();
    for b in brokers {
        b.stop().await;
    }
    let mut report = PubsubReport {
        mode: "processes".into(),
        system: None,
        scenario: None,
        round: None,
        broker_bin: match &opts.server {
            Some((server, _)) => Some(format!("running broker at {server}")),
            None => Some(opts.broker_bin.display().to_string()),
        },
        brokers: config.brokers,
        payload_bytes: config.payload_bytes,
        attributes: ATTRIBUTES,
        rate: config.rate,
        published: p.published,
        received: s.received,
        loss: loss(p.published, s.received),
        msgs_per_sec: s.msgs_per_sec,
        publish_msgs_per_sec: if p.secs > 0.0 {
            p.published as f64 / p.secs
        } else {
            0.0
        },
        max_behind_schedule_us: p.max_behind_schedule_us,
        out_of_order: s.out_of_order,
        duplicates: s.duplicates,
        dropped_total: 0,
        ingress_waits_total: 0,
        broker_cpu_us_per_msg: cpu_us_per(broker_cpu, p.published),
        publisher_cpu_us_per_msg: cpu_us_per(p.cpu_secs, p.published),
        subscriber_cpu_us_per_msg: cpu_us_per(s.cpu_secs, s.received),
        per_broker,
        latency_us: s.latency_us,
    };
    fill_totals(&mut report);
    Ok(report)
}

/// Creates the run's group at the first broker and waits until every broker knows it (and,
/// for total order, a sequencer).
async fn create_group(
    brokers: &[Broker],
    tls: &Path,
    order: palio::GroupOrder,
) -> anyhow::Result<()> {
    let connect = |b: &Broker| {
        palio::Client::connect(
            palio::ConnectOptions::new(&b.quic)
                .tls_dir(tls)
                .name("palio-bench-setup"),
        )
    };
    // The replicas of a total-order group are the brokers its creator reaches: the network
    // must have formed first.
    for b in brokers {
        let end = Instant::now() + SETUP;
        loop {
            let routes = metrics::http_get(&b.admin, "/routes", Duration::from_secs(5))?;
            let known = serde_json::from_str::<serde_json::Value>(&routes)
                .ok()
                .and_then(|r| r["known_brokers"].as_u64());
            if known == Some(brokers.len() as u64) {
                break;
            }
            if Instant::now() > end {
                bail!("{} did not see the whole network within {SETUP:?}", b.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let first = brokers.first().context("no brokers")?;
    connect(first)
        .await?
        .group_create(super::GROUP, order)
        .await
        .context("creating the group")?;
    for b in brokers {
        let client = connect(b).await?;
        let end = Instant::now() + SETUP;
        loop {
            let ready = client
                .group_info(super::GROUP)
                .await
                .is_ok_and(|g| order != palio::GroupOrder::Total || g.sequencer.is_some());
            if ready {
                break;
            }
            if Instant::now() > end {
                bail!(
                    "{} did not learn the group (and its sequencer) within {SETUP:?}",
                    b.name
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.close().await;
    }
    Ok(())
}

/// Adds what the brokers show now (counters, log tails) to an error.
pub(crate) fn with_diagnostics(e: anyhow::Error, brokers: &[Broker]) -> anyhow::Error {
    let mut notes = Vec::new();
    for b in brokers {
        match metrics::scrape(&b.name, &b.admin) {
            Ok(m) => notes.push(format!(
                "{}: dropped {:?}, ingress waits {:?}, {:?}",
                m.broker, m.dropped, m.ingress_waits, m.counters
            )),
            Err(err) => notes.push(format!("{}: no metrics ({err:#})", b.name)),
        }
        let tail = log_tail(&b.log, 5);
        if !tail.is_empty() {
            notes.push(format!("{} log:\n{tail}", b.name));
        }
    }
    if notes.is_empty() {
        e
    } else {
        anyhow!("{e:#}\nbroker state now:\n{}", notes.join("\n"))
    }
}

/// The last `n` lines of a file (empty if unreadable).
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A `palio-broker` child process, killed when dropped.
pub(crate) struct Broker {
    pub(crate) name: String,
    child: Child,
    pub(crate) quic: String,
    pub(crate) admin: String,
    log: PathBuf,
}

impl Broker {
    /// Starts broker `bench{index}` with its data directory under `root`, the development
    /// PKI in `tls`, linked to `peer`; returns once it has printed `PALIO_READY`.
    pub(crate) async fn start(
        bin: &Path,
        index: usize,
        root: &Path,
        tls: &Path,
        peer: Option<&str>,
    ) -> anyhow::Result<Broker> {
        let name = format!("bench{index}");
        let log = root.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log).context("broker log file")?;
        let mut cmd = Command::new(bin);
        cmd.arg("--id")
            .arg(&name)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(root.join(&name))
            .arg("--tls-dir")
            .arg(tls);
        if let Some(p) = peer {
            cmd.arg("--peer").arg(p);
        }
        let mut child = cmd
            .env(
                "PALIO_LOG",
                std::env::var("PALIO_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("the broker's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let waited = tokio::time::timeout(SETUP, async {
            while let Some(line) = lines.next_line().await? {
                if let Some(ready) = parse_ready(&line) {
                    return ready;
                }
            }
            bail!("it exited before it was ready")
        })
        .await;
        let ready = match waited {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => bail!(
                "broker {name} did not start: {e:#}\n{name} log:\n{}",
                log_tail(&log, 20)
            ),
            Err(_) => bail!(
                "broker {name} did not print PALIO_READY within {} s\n{name} log:\n{}",
                SETUP.as_secs(),
                log_tail(&log, 20)
            ),
        };
        // Keep reading its stdout so that it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let admin = ready
            .admin
            .with_context(|| format!("broker {name} reported no admin address"))?;
        Ok(Broker {
            name,
            child,
            quic: ready.quic,
            admin,
            log,
        })
    }

    /// The process's CPU time so far (user + system, 10 ms resolution), from
    /// `/proc/<pid>/stat`.
    pub(crate) fn cpu_secs(&self) -> Option<f64> {
        crate::clock::pid_cpu_secs(self.child.id()?)
    }

    /// Kills the process and reaps it (bounded).
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// A `palio-bench` worker child process (`pubsub-worker`, `compare-worker`), killed when
/// dropped.
pub(crate) struct Worker {
    role: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines<BufReader<ChildStdout>>,
}

impl Worker {
    /// Starts `bin COMMAND ARGS…` with piped stdin and stdout.
    pub(crate) fn spawn(
        bin: &Path,
        role: &'static str,
        command: &[&str],
        args: &[String],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(command)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting the {role} ({})", bin.display()))?;
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().context("the worker's stdout")?).lines();
        Ok(Self {
            role,
            child,
            stdin,
            out,
        })
    }

    /// The worker's next stdout line, by `deadline`.
    async fn line(&mut self, deadline: Instant, what: &str) -> anyhow::Result<String> {
        match tokio::time::timeout_at(deadline, self.out.next_line()).await {
            Ok(Ok(Some(line))) => Ok(line),
            Ok(Ok(None)) => {
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait())
                    .await
                    .map_or_else(|_| "still running".to_owned(), |s| format!("{s:?}"));
                bail!(
                    "the {} exited before it could {what} ({status}; its error is on stderr above)",
                    self.role
                )
            }
            Ok(Err(e)) => Err(e).with_context(|| format!("reading the {}'s output", self.role)),
            Err(_) => bail!(
                "the {} did not {what} in time (see --timeout): the run stalled",
                self.role
            ),
        }
    }

    /// Waits (at most `within`) for the status line `word`.
    pub(crate) async fn expect(
        &mut self,
        within: Duration,
        word: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        let line = self
            .line(Instant::now() + within, what)
            .await
            .with_context(|| format!("waited {} s", within.as_secs()))?;
        if line.trim() != word {
            bail!(
                "the {} said {line:?} where it should say {word:?}",
                self.role
            );
        }
        Ok(())
    }

    /// Waits (until `deadline`) for the JSON result line.
    pub(crate) async fn result<T: DeserializeOwned>(
        &mut self,
        deadline: Instant,
        what: &str,
    ) -> anyhow::Result<T> {
        let line = self.line(deadline, what).await?;
        serde_json::from_str(&line)
            .with_context(|| format!("the {}'s result line {line:?}", self.role))
    }

    /// Sends a command line.
    pub(crate) async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("the worker's stdin")?;
        let io = async {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await
        };
        tokio::time::timeout(Duration::from_secs(5), io)
            .await
            .map_err(|_| anyhow!("the {} did not read its commands", self.role))?
            .with_context(|| format!("telling the {} {line:?}", self.role))
    }

    /// Closes its stdin and waits (briefly) for it to exit; kills it if it does not.
    pub(crate) async fn finish(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_gives_the_bound_addresses() {
        let line = r#"PALIO_READY {"name":"bench0","id":17,"quic":"127.0.0.1:40001","admin":"127.0.0.1:40002","tls_dir":"/tmp/x/tls","store":{"problems":[]}}"#;
        let r = parse_ready(line).unwrap().unwrap();
        assert_eq!(
            r,
            Ready {
                name: "bench0".into(),
                quic: "127.0.0.1:40001".into(),
                admin: Some("127.0.0.1:40002".into()),
            }
        );
        let off = r#"PALIO_READY {"name":"b","id":1,"quic":"127.0.0.1:1","admin":null}"#;
        assert_eq!(parse_ready(off).unwrap().unwrap().admin, None);
        assert!(parse_ready("palio-broker bench0 listening on 127.0.0.1:1 (QUIC)").is_none());
        assert!(parse_ready("PALIO_READY {not json").unwrap().is_err());
    }
}
