//! `palio-bench compare`: Palio beside a peer (NATS core, NATS with TLS, Mosquitto, JetStream),
//! measured as users run them: every server, every publisher and every subscriber a process of
//! its own on loopback, the two systems alternating run by run (A B A B …), medians and ratios
//! reported.
//!
//! - [`wire`]: subjects, filters and message bytes, alike for every system.
//! - [`clients`]: the three clients (Palio's SDK, `async-nats`, `rumqttc`).
//! - [`worker`]: the publisher and subscriber processes (`palio-bench compare-worker`).
//! - [`systems`]: the server processes.
//! - [`run`]: one run of one system, start to finish.
//! - [`summary`]: the JSON a comparison prints.
//! - [`report`] and [`chart`]: `docs/benchmarks/README.md` and its SVG plots, from many
//!   comparisons.

pub mod chart;
pub mod cli;
pub mod clients;
pub mod report;
pub mod run;
pub mod summary;
pub mod systems;
pub mod wire;
pub mod worker;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::persistence::{self, JetStreamSync, PersistenceConfig, System};
use run::{RunRecord, RunSpec};
use summary::{Summary, SweepPoint};
use systems::{PeerBins, PeerKind};

/// The peer Palio is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// NATS core (`nats-server`).
    Nats,
    /// NATS core with TLS between clients and server.
    NatsTls,
    /// Mosquitto, MQTT QoS 0.
    Mosquitto,
    /// NATS JetStream, file storage (the `persistent` scenario).
    Jetstream,
}

impl Peer {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Nats => "nats",
            Peer::NatsTls => "nats-tls",
            Peer::Mosquitto => "mosquitto",
            Peer::Jetstream => "jetstream",
        }
    }
}

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// One publisher, one subscriber, one server.
    OneToOne,
    /// One publisher, sixteen subscribers with distinct subscriptions that all match.
    FanOut,
    /// Sixteen publishers, one subscriber.
    FanIn,
    /// Three servers: publisher at the first, subscriber at the last (NATS: a 3-server cluster).
    Line,
    /// Persistent publish acked by the server, then a durable pull consumer (JetStream).
    Persistent,
    /// Latency at 10, 30, 50, 70 and 90 % of the maximum rate.
    Latency,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::OneToOne => "1to1",
            Scenario::FanOut => "1to16",
            Scenario::FanIn => "16to1",
            Scenario::Line => "line",
            Scenario::Persistent => "persistent",
            Scenario::Latency => "latency",
        }
    }

    /// (servers, publishers, subscribers) of a publish/subscribe scenario.
    fn shape(self) -> (usize, usize, usize) {
        match self {
            Scenario::OneToOne | Scenario::Latency | Scenario::Persistent => (1, 1, 1),
            Scenario::FanOut => (1, 1, wire::DISTINCT),
            Scenario::FanIn => (1, wire::DISTINCT, 1),
            Scenario::Line => (3, 1, 1),
        }
    }
}

/// The loads of the latency sweep, in percent of the maximum rate.
pub const SWEEP_LOADS: [u32; 5] = [10, 30, 50, 70, 90];

/// A comparison to run.
#[derive(Debug, Clone)]
pub struct CompareConfig {
    /// The peer.
    pub peer: Peer,
    /// The scenario.
    pub scenario: Scenario,
    /// Message payload bytes.
    pub size: usize,
    /// Messages each run publishes (all publishers together); `None` picks by size.
    pub messages: Option<u64>,
    /// Runs of each system.
    pub runs: usize,
    /// Paced publishing (messages per second, all publishers together); for `latency`, the
    /// 100 % rate (otherwise measured first).
    pub rate: Option<u64>,
    /// The `palio-broker` executable.
    pub broker_bin: PathBuf,
    /// The `palio-bench` executable the workers run.
    pub worker_bin: PathBuf,
    /// The peers' executables.
    pub peer_bins: PeerBins,
    /// The longest a run's measured part may take.
    pub timeout: Duration,
}

impl CompareConfig {
    /// The messages per run: as given, or 200,000 capped at 1 GiB of payload.
    pub fn messages(&self) -> u64 {
        self.messages.unwrap_or_else(|| {
            (200_000)
                .min((1u64 << 30) / self.size.max(1) as u64)
                .max(1_000)
        })
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        if self.size < wire::HEADER || self.size > 1 << 20 {
            bail!(
                "--size must be between {} bytes (send time and sequence number) and 1 MiB",
                wire::HEADER
            );
        }
        if self.rate == Some(0) {
            bail!("--rate must be positive");
        }
        let persistent = self.scenario == Scenario::Persistent;
        if persistent != (self.peer == Peer::Jetstream) {
            bail!("the persistent scenario runs against --peer jetstream, and only it");
        }
        if self.scenario == Scenario::Line && self.peer == Peer::Mosquitto {
            bail!("the line scenario needs a cluster: use --peer nats or nats-tls");
        }
        let messages = self.messages();
        if messages < wire::DISTINCT as u64 || i32::try_from(messages).is_err() {
            bail!("--messages must be between 16 and {}", i32::MAX);
        }
        Ok(())
    }

    fn peer_kind(&self) -> anyhow::Result<PeerKind> {
        Ok(match self.peer {
            Peer::Nats => PeerKind::Nats,
            Peer::NatsTls => PeerKind::NatsTls,
            Peer::Mosquitto => PeerKind::Mosquitto,
            Peer::Jetstream => bail!("JetStream runs only the persistent scenario"),
        })
    }
}

/// Progress for a person at a terminal; nothing otherwise.
pub fn progress(line: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("palio-bench compare: {line}");
    }
}

/// Runs a comparison and returns its summary.
pub fn compare(config: &CompareConfig) -> anyhow::Result<Summary> {
    config.check()?;
    crate::pubsub::processes::check_broker_bin(&config.broker_bin)?;
    if config.scenario == Scenario::Persistent {
        return persistent(config);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("runtime")?;
    let root = tempfile::tempdir().context("temp dir")?;
    let kind = config.peer_kind()?;
    let (servers, publishers, subscribers) = config.scenario.shape();
    let spec = |rate: Option<u64>, messages: u64| RunSpec {
        servers,
        publishers,
        subscribers,
        size: config.size,
        messages,
        rate,
        timeout: config.timeout,
        drain: Duration::from_secs(2),
    };
    let once = |palio: bool, round: usize, spec: &RunSpec| -> anyhow::Result<RunRecord> {
        let what = if palio { "palio" } else { config.peer.name() };
        let r = rt.block_on(run::interruptible(run::run(
            palio,
            kind,
            spec,
            config,
            root.path(),
        )));
        let r = r.with_context(|| format!("{what}, round {round}"))?;
        progress(&format!(
            "round {round} {what:<9} {:>9.0} msgs/s, lost {}, p99 {} us{}",
            r.msgs_per_s,
            r.lost,
            r.latency_us.p99,
            spec.rate
                .map(|r| format!(" (offered {r}/s)"))
                .unwrap_or_default()
        ));
        Ok(r)
    };
    let messages = config.messages();
    if config.scenario != Scenario::Latency {
        let spec = spec(config.rate, messages);
        let (mut palio, mut peer) = (Vec::new(), Vec::new());
        for round in 1..=config.runs {
            palio.push(once(true, round, &spec)?);
            peer.push(once(false, round, &spec)?);
        }
        return Ok(Summary::new(config, &spec, &palio, &peer));
    }

    // The latency sweep: the maximum first (unless given), the lower of the two systems', so
    // both are offered the same loads and neither is past its limit.
    let max = match config.rate {
        Some(r) => r,
        None => {
            let unpaced = spec(None, messages);
            progress("measuring the maximum rate of each system");
            let a = once(true, 0, &unpaced)?.msgs_per_s;
            let b = once(false, 0, &unpaced)?.msgs_per_s;
            a.min(b).max(1.0) as u64
        }
    };
    let mut points = Vec::new();
    let mut at_half = None;
    for load in SWEEP_LOADS {
        let rate = (max * u64::from(load) / 100).max(1);
        // About three seconds per run, within the message budget.
        let spec = spec(Some(rate), messages.min(rate * 3).max(1_000));
        let (mut palio, mut peer) = (Vec::new(), Vec::new());
        for round in 1..=config.runs {
            palio.push(once(true, round, &spec)?);
            peer.push(once(false, round, &spec)?);
        }
        let s = Summary::new(config, &spec, &palio, &peer);
        points.push(SweepPoint::of(load, rate, &s));
        if load == 50 {
            at_half = Some(s);
        }
    }
    let mut s = at_half.context("the sweep has a 50 % point")?;
    s.rate = Some(max);
    s.sweep = Some(points);
    Ok(s)
}

/// Persistent publish and durable consume, Palio (a broker process) beside JetStream.
fn persistent(config: &CompareConfig) -> anyhow::Result<Summary> {
    let base = PersistenceConfig {
        system: System::Palio,
        count: config.messages(),
        payload_bytes: config.size,
        producers: 1,
        batch: 256,
        jetstream_sync: JetStreamSync::Default,
        nats_server: config.peer_bins.nats_server.clone(),
        data_parent: None,
        palio_broker_bin: Some(config.broker_bin.clone()),
    };
    let mut say = |l: &str| progress(l);
    let (mut palio, mut peer) = (Vec::new(), Vec::new());
    for round in 1..=config.runs {
        palio.push(
            persistence::run(&base, &mut say).with_context(|| format!("palio, round {round}"))?,
        );
        let js = PersistenceConfig {
            system: System::Jetstream,
            ..base.clone()
        };
        peer.push(
            persistence::run(&js, &mut say).with_context(|| format!("jetstream, round {round}"))?,
        );
    }
    Ok(Summary::persistent(config, &palio, &peer))
}
