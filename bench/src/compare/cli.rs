//! The flags of `palio-bench compare`, `compare-worker` and `compare-report`, and what each
//! command does with them (the `palio-bench` binary only dispatches).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use super::clients::Endpoint;
use super::systems::PeerBins;
use super::worker::{self, WorkerConfig};
use super::{CompareConfig, Peer, Scenario, report};

/// `--peer`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PeerArg {
    /// NATS core (nats-server).
    Nats,
    /// NATS core with TLS between clients and server (like for like with QUIC's TLS 1.3).
    NatsTls,
    /// Mosquitto, MQTT QoS 0.
    Mosquitto,
    /// NATS JetStream with file storage (the persistent scenario).
    Jetstream,
}

/// `--scenario`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScenarioArg {
    /// One publisher, one subscriber.
    #[value(name = "1to1")]
    OneToOne,
    /// One publisher, 16 subscribers with distinct subscriptions that all match.
    #[value(name = "1to16")]
    FanOut,
    /// 16 publishers, one subscriber.
    #[value(name = "16to1")]
    FanIn,
    /// Three servers; publisher at the first, subscriber at the last (NATS: a cluster).
    Line,
    /// Persistent publish acked by the server, then a durable pull consumer (vs JetStream).
    Persistent,
    /// Latency percentiles at 10–90 % of the maximum rate.
    Latency,
}

/// `palio-bench compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// The system to measure Palio against.
    #[arg(long, value_enum)]
    pub peer: PeerArg,
    /// What to measure.
    #[arg(long, value_enum, default_value = "1to1")]
    pub scenario: ScenarioArg,
    /// Payload bytes per message (16 B … 1 MiB).
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Messages per run [default: 200,000, at most 1 GiB of payload].
    #[arg(long)]
    pub messages: Option<u64>,
    /// Runs of each system (they alternate: Palio, peer, Palio, peer …).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Publish at this many messages per second in all; for `latency`, the 100 % rate
    /// [default: as fast as possible; latency: the lower of the two measured maxima].
    #[arg(long)]
    pub rate: Option<u64>,
    /// The palio-broker executable [default: palio-broker next to this executable].
    #[arg(long)]
    pub broker_bin: Option<PathBuf>,
    /// The nats-server executable.
    #[arg(long, env = "NATS_SERVER", default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// The mosquitto executable [default: mosquitto on PATH, else /usr/sbin/mosquitto].
    #[arg(long, env = "MOSQUITTO")]
    pub mosquitto: Option<PathBuf>,
    /// Seconds a run's measured part may take before it is declared stalled.
    #[arg(long, default_value_t = 120)]
    pub timeout: u64,
    /// Print the summary as one JSON object (the default prints it as text).
    #[arg(long)]
    pub json: bool,
}

/// `--system` of a worker.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ClientArg {
    /// Palio's SDK.
    Palio,
    /// async-nats.
    Nats,
    /// rumqttc.
    Mqtt,
}

/// The worker's role.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Publish.
    Pub,
    /// Subscribe.
    Sub,
}

/// `palio-bench compare-worker` (started by `compare`, not by hand).
#[derive(Debug, clap::Args)]
pub struct CompareWorkerArgs {
    /// Publisher or subscriber.
    #[arg(value_enum)]
    pub role: RoleArg,
    /// Which client.
    #[arg(long, value_enum)]
    pub system: ClientArg,
    /// The server's HOST:PORT.
    #[arg(long)]
    pub server: String,
    /// Palio: the development PKI directory.
    #[arg(long)]
    pub tls_dir: Option<PathBuf>,
    /// NATS over TLS: the CA certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Publisher index, or the subscriber's subscription.
    #[arg(long, default_value_t = 0)]
    pub index: usize,
    /// Publisher: the first sequence number.
    #[arg(long, default_value_t = 0)]
    pub first_seq: u64,
    /// Publisher: messages to publish; subscriber: messages in the run.
    #[arg(long)]
    pub count: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Publisher: messages per second.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Subscriber: milliseconds to wait for stragglers after `done`.
    #[arg(long, default_value_t = 2000)]
    pub drain_ms: u64,
}

/// `palio-bench compare-report`.
#[derive(Debug, clap::Args)]
pub struct CompareReportArgs {
    /// A file of `compare --json` lines.
    pub input: PathBuf,
    /// The directory to write README.md and the plots into.
    #[arg(long, default_value = "docs/benchmarks")]
    pub dir: PathBuf,
    /// Hand-written analysis appended to the report.
    #[arg(long)]
    pub notes: Option<PathBuf>,
    /// The commit measured.
    #[arg(long, default_value = "unknown")]
    pub commit: String,
    /// The command that regenerates the report, quoted in it.
    #[arg(long, default_value = "bench/compare-all.sh")]
    pub command: String,
}

/// Runs `compare`: prints the summary.
pub fn compare(args: &CompareArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating this executable")?;
    let broker_bin = match &args.broker_bin {
        Some(b) => b.clone(),
        None => crate::pubsub::processes::default_broker_bin()?,
    };
    let mosquitto = args.mosquitto.clone().unwrap_or_else(|| {
        let on_path = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("mosquitto").is_file()));
        if on_path {
            PathBuf::from("mosquitto")
        } else {
            PathBuf::from("/usr/sbin/mosquitto")
        }
    });
    let config = CompareConfig {
        peer: match args.peer {
            PeerArg::Nats => Peer::Nats,
            PeerArg::NatsTls => Peer::NatsTls,
            PeerArg::Mosquitto => Peer::Mosquitto,
            PeerArg::Jetstream => Peer::Jetstream,
        },
        scenario: match args.scenario {
            ScenarioArg::OneToOne => Scenario::OneToOne,
            ScenarioArg::FanOut => Scenario::FanOut,
            ScenarioArg::FanIn => Scenario::FanIn,
            ScenarioArg::Line => Scenario::Line,
            ScenarioArg::Persistent => Scenario::Persistent,
            ScenarioArg::Latency => Scenario::Latency,
        },
        size: args.size,
        messages: args.messages,
        runs: args.runs,
        rate: args.rate,
        broker_bin,
        worker_bin: exe,
        peer_bins: PeerBins {
            nats_server: args.nats_server.clone(),
            mosquitto,
        },
        timeout: Duration::from_secs(args.timeout),
    };
    let s = super::compare(&config)?;
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        println!(
            "{} against {}, {} B, {} runs each: Palio {:.0} msgs/s, {} {:.0} msgs/s, ratio {:.2}; lost {} / {}; p99 {} / {} µs",
            s.scenario,
            s.peer,
            s.size,
            s.runs,
            s.palio_msgs_per_s,
            s.peer,
            s.peer_msgs_per_s,
            s.ratio,
            s.palio_lost,
            s.peer_lost,
            s.palio_p99_us.map_or("-".into(), |v| v.to_string()),
            s.peer_p99_us.map_or("-".into(), |v| v.to_string()),
        );
    }
    Ok(())
}

/// Runs a worker.
pub fn compare_worker(args: &CompareWorkerArgs) -> anyhow::Result<()> {
    let endpoint = match args.system {
        ClientArg::Palio => Endpoint::Palio {
            server: args.server.clone(),
            tls_dir: args
                .tls_dir
                .clone()
                .context("--tls-dir is needed for Palio")?,
        },
        ClientArg::Nats => Endpoint::Nats {
            server: args.server.clone(),
            ca: args.ca.clone(),
        },
        ClientArg::Mqtt => Endpoint::Mqtt {
            server: args.server.clone(),
        },
    };
    let c = WorkerConfig {
        endpoint,
        index: args.index,
        first_seq: args.first_seq,
        count: args.count,
        size: args.size,
        rate: args.rate,
        drain: Duration::from_millis(args.drain_ms),
    };
    match args.role {
        RoleArg::Pub => worker::publisher(&c),
        RoleArg::Sub => worker::subscriber(&c),
    }
}

/// Writes the report.
pub fn compare_report(args: &CompareReportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)
        .with_context(|| format!("reading {}", args.input.display()))?;
    let all = report::read(&text)?;
    let notes = match &args.notes {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => String::new(),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let who = report::Provenance {
        machine: format!("{cores} cores, {cpu}, {}", std::env::consts::OS),
        commit: args.commit.clone(),
        command: args.command.clone(),
    };
    report::write(&args.dir, &all, &who, &notes)?;
    eprintln!(
        "wrote {} comparisons to {}",
        all.len(),
        args.dir.join("README.md").display()
    );
    Ok(())
}
