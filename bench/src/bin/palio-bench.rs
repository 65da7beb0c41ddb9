//! `palio-bench`: Palio's benchmark command. Parses flags and calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use palio_bench::compare;
use palio_bench::matching::{self, Compile, MatchingConfig, MatchingReport};
use palio_bench::routing;
use palio_bench::workload::{W1, W2, Workload};

#[derive(Parser)]
#[command(version, about = "Palio benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the matching index on a workload against naive evaluation, verifying its answers.
    Matching(MatchingArgs),
    /// Run N broker routing state machines (no network) and check every delivery.
    Routing(RoutingArgs),
    /// Draw an SVG chart from `routing --json` lines.
    RoutingPlot(RoutingPlotArgs),
    /// End-to-end publish/subscribe on loopback QUIC: broker, publisher and subscriber
    /// processes (or all in this process with --in-process).
    Pubsub(PubsubArgs),
    /// Summarise `pubsub --json` lines: per scenario, min/median/max per system and ratios.
    PubsubSummary(PubsubSummaryArgs),
    /// The publisher or subscriber process of `pubsub` (started by it, not by hand).
    #[command(hide = true)]
    PubsubWorker(PubsubWorkerArgs),
    /// Persistent publish and durable pull consumption: Palio or NATS JetStream (file storage).
    Persistence(PersistenceArgs),
    /// Summarise `persistence --json` lines: min/median/max, ratios, and an SVG chart.
    PersistenceSummary(PersistenceSummaryArgs),
    /// Time appends followed by fdatasync in a directory (the price group commit amortises).
    FsyncProbe(FsyncProbeArgs),
    /// Palio beside NATS, NATS with TLS, Mosquitto or JetStream: servers, publishers and
    /// subscribers as separate processes, the systems alternating; prints medians and ratios.
    Compare(compare::cli::CompareArgs),
    /// A publisher or subscriber process of `compare` (started by it, not by hand).
    #[command(hide = true)]
    CompareWorker(compare::cli::CompareWorkerArgs),
    /// Write docs/benchmarks/README.md and its plots from `compare --json` lines.
    CompareReport(compare::cli::CompareReportArgs),
}

#[derive(clap::Args)]
struct FsyncProbeArgs {
    /// The directory to write in (its disk is the one measured).
    #[arg(long, default_value = ".")]
    dir: std::path::PathBuf,
    /// Bytes per append.
    #[arg(long, default_value_t = 65_536)]
    block: usize,
    /// Appends timed.
    #[arg(long, default_value_t = 500)]
    count: usize,
}

#[derive(clap::Args)]
struct PersistenceSummaryArgs {
    /// A file of `persistence --json` lines, in the order they ran.
    input: std::path::PathBuf,
    /// Also write a bar chart here.
    #[arg(long)]
    svg: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum SystemName {
    /// Palio (a broker in this process).
    Palio,
    /// NATS JetStream (a nats-server child process).
    Jetstream,
}

#[derive(Clone, Copy, ValueEnum)]
enum SyncName {
    /// The server's default: ack before fsync.
    Default,
    /// `sync_interval: always` (nats-server 2.10+): fsync before ack.
    Always,
}

#[derive(clap::Args)]
struct PersistenceArgs {
    /// The system under test.
    #[arg(long, value_enum)]
    system: SystemName,
    /// Messages to publish (spread over the producers).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Messages per fetch and per ack request.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// JetStream: when the file store syncs.
    #[arg(long, value_enum, default_value = "default")]
    jetstream_sync: SyncName,
    /// JetStream: the nats-server executable.
    #[arg(long, env = "NATS_SERVER", default_value = "nats-server")]
    nats_server: std::path::PathBuf,
    /// The directory the temporary data directory goes in (its disk is the one measured).
    #[arg(long)]
    data_parent: Option<std::path::PathBuf>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct PubsubArgs {
    /// Brokers in a line; the publisher is at the first, the subscriber at the last.
    #[arg(long, default_value_t = 1)]
    brokers: usize,
    /// Notifications to publish.
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Payload bytes per notification.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Publications per second (default: as fast as flow control allows).
    #[arg(long)]
    rate: Option<u64>,
    /// Publish to and receive from an ordered group of this order (fifo, causal or total),
    /// created at the first broker before the run, instead of best-effort publish/subscribe.
    #[arg(long, value_name = "ORDER", conflicts_with = "in_process")]
    group: Option<palio::GroupOrder>,
    /// Run brokers, publisher and subscriber in this process (the old mode) instead of as
    /// separate processes.
    #[arg(long)]
    in_process: bool,
    /// The palio-broker executable [default: palio-broker next to this executable].
    #[arg(long, conflicts_with = "in_process")]
    broker_bin: Option<std::path::PathBuf>,
    /// Measure a broker that is already running, at this QUIC address (HOST:PORT), instead of
    /// starting brokers. Its counters are not read.
    #[arg(long, short = 's', conflicts_with_all = ["in_process", "broker_bin", "group"])]
    server: Option<String>,
    /// With --server: the TLS directory of the running broker (its development PKI, whose
    /// client identity the publisher and subscriber use).
    #[arg(long, default_value = "palio-data/tls", requires = "server")]
    tls_dir: std::path::PathBuf,
    /// Seconds the publisher may take to publish and flush, and the subscriber after it,
    /// before the run is declared stalled.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// Milliseconds the subscriber waits for stragglers once the publisher is done (what has
    /// not arrived then is lost).
    #[arg(long, default_value_t = 3000)]
    drain_ms: u64,
    /// A label for the build under test, copied into the report (`before`, `after`).
    #[arg(long)]
    system: Option<String>,
    /// A label for the scenario, copied into the report.
    #[arg(long)]
    scenario: Option<String>,
    /// The round of an interleaved comparison, copied into the report.
    #[arg(long)]
    round: Option<u32>,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct PubsubSummaryArgs {
    /// A file of `pubsub --json` lines (bench/pubsub-compare.sh writes one).
    input: std::path::PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkerRole {
    /// Publish to the first broker.
    Pub,
    /// Subscribe at the last broker.
    Sub,
}

#[derive(clap::Args)]
struct PubsubWorkerArgs {
    /// Which worker.
    #[arg(value_enum)]
    role: WorkerRole,
    /// The broker's QUIC address.
    #[arg(long)]
    server: String,
    /// The development PKI directory.
    #[arg(long)]
    tls_dir: std::path::PathBuf,
    /// Notifications in the run.
    #[arg(long)]
    count: u64,
    /// Payload bytes.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Publications per second.
    #[arg(long)]
    rate: Option<u64>,
    /// Subscriber: milliseconds to wait for stragglers once the publisher is done.
    #[arg(long, default_value_t = 3000)]
    drain_ms: u64,
    /// Publish to / join this ordered group instead of best-effort publish/subscribe.
    #[arg(long)]
    group: Option<String>,
}

#[derive(clap::Args)]
struct RoutingArgs {
    /// Brokers in the overlay.
    #[arg(long, default_value_t = 100)]
    brokers: usize,
    /// Subscriptions, spread uniformly over brokers.
    #[arg(long, default_value_t = 10_000)]
    subscriptions: usize,
    /// Publications per round (two rounds: before and after churn).
    #[arg(long, default_value_t = 500)]
    publications: usize,
    /// flooding, simple, covering or advertisements.
    #[arg(long, default_value = "covering")]
    strategy: palio_topology::Strategy,
    /// tree or mesh (or ring).
    #[arg(long, default_value = "tree")]
    topology: palio_topology::sim::overlay::OverlayKind,
    /// Probability that content comes from the broker's region's pool.
    #[arg(long, default_value_t = 0.9)]
    locality: f64,
    /// Brokers per region.
    #[arg(long, default_value_t = 10)]
    brokers_per_region: usize,
    /// Fraction of subscriptions withdrawn between the rounds.
    #[arg(long, default_value_t = 0.1)]
    churn: f64,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct RoutingPlotArgs {
    /// A file of `routing --json` lines.
    input: std::path::PathBuf,
    /// Where to write the SVG.
    output: std::path::PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum WorkloadName {
    /// SIENA forwarding (Carzaniga–Wolf): sparse attributes, mostly equalities, 64 interfaces.
    W1,
    /// REIN intervals: 20 integer attributes, 10 intervals per subscription.
    W2,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompileName {
    /// CESQL text through Filter::new (the real path).
    Text,
    /// Routable forms built directly (isolates the index).
    Routable,
}

#[derive(clap::Args)]
struct MatchingArgs {
    /// The workload.
    #[arg(long, value_enum)]
    workload: WorkloadName,
    /// The number of subscriptions.
    #[arg(long, default_value_t = 100_000)]
    subscriptions: usize,
    /// W2: the fraction of the domain each interval covers.
    #[arg(long, default_value_t = 0.5)]
    width: f64,
    /// W1: the number of attribute names.
    #[arg(long, default_value_t = 100)]
    names: usize,
    /// W1: draw attribute names uniformly instead of Zipf(1).
    #[arg(long)]
    uniform: bool,
    /// W1: the number of interfaces (destinations).
    #[arg(long, default_value_t = 64)]
    interfaces: u32,
    /// The seed of every random draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events timed per repetition.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Events evaluated naively, for the baseline and for verification.
    #[arg(long, default_value_t = 50)]
    naive_events: usize,
    /// Repetitions of the timed pass (the median is reported).
    #[arg(long, default_value_t = 5)]
    repetitions: usize,
    /// How filters are compiled.
    #[arg(long, value_enum, default_value = "text")]
    compile: CompileName,
    /// Print one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// The same allocator as the broker binary, so in-process brokers measure as they run.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Matching(args) => matching_cmd(&args),
        Command::Routing(args) => routing_cmd(&args),
        Command::Pubsub(args) => pubsub_cmd(&args),
        Command::PubsubSummary(args) => std::fs::read_to_string(&args.input)
            .map_err(anyhow::Error::from)
            .and_then(|t| palio_bench::pubsub::summary::read(&t))
            .map(|s| print!("{}", palio_bench::pubsub::summary::markdown(&s))),
        Command::PubsubWorker(args) => pubsub_worker_cmd(&args),
        Command::Persistence(args) => persistence_cmd(&args),
        Command::PersistenceSummary(args) => persistence_summary_cmd(&args),
        Command::FsyncProbe(args) => palio_bench::disk::probe(&args.dir, args.block, args.count)
            .and_then(|r| Ok(serde_json::to_string(&r)?))
            .map(|line| println!("{line}")),
        Command::Compare(args) => compare::cli::compare(&args),
        Command::CompareWorker(args) => compare::cli::compare_worker(&args),
        Command::CompareReport(args) => compare::cli::compare_report(&args),
        Command::RoutingPlot(args) => std::fs::read_to_string(&args.input)
            .map_err(anyhow::Error::from)
            .and_then(|t| routing::read_reports(&t))
            .and_then(|r| routing::render_svg(&r))
            .and_then(|svg| Ok(std::fs::write(&args.output, svg)?)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("palio-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn routing_cmd(a: &RoutingArgs) -> anyhow::Result<()> {
    let params = routing::RoutingParams {
        brokers: a.brokers,
        subscriptions: a.subscriptions,
        publications: a.publications,
        strategy: a.strategy,
        topology: a.topology,
        locality: a.locality,
        brokers_per_region: a.brokers_per_region,
        churn: a.churn,
        seed: a.seed,
        ..Default::default()
    };
    let r = routing::run(&params)?;
    if a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(())
}

fn matching_cmd(args: &MatchingArgs) -> anyhow::Result<()> {
    let workload = match args.workload {
        WorkloadName::W1 => Workload::W1(W1::new(args.names, !args.uniform, args.interfaces)),
        WorkloadName::W2 => Workload::W2(W2::new(args.width)),
    };
    let cfg = MatchingConfig {
        workload,
        subscriptions: args.subscriptions,
        events: args.events,
        naive_events: args.naive_events,
        repetitions: args.repetitions,
        seed: args.seed,
        compile: match args.compile {
            CompileName::Text => Compile::Text,
            CompileName::Routable => Compile::Routable,
        },
    };
    let start = std::time::Instant::now();
    let report = matching::run(&cfg, &mut |line| {
        eprintln!("[{:7.1}s] {line}", start.elapsed().as_secs_f64());
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn print_summary(r: &MatchingReport) {
    let width = r.width.map(|w| format!(" width {w}")).unwrap_or_default();
    println!(
        "{}{width}: {} subscriptions, {} destinations, {} events",
        r.workload, r.subscriptions, r.destinations, r.events
    );
    println!(
        "  index   {:9.4} ms/event ({:.0} events/s), entries {:.4} ms/event",
        r.ms_per_event, r.events_per_s, r.entries_ms_per_event
    );
    if let (Some(m), Some(e)) = (r.cpu_ms_per_event, r.entries_cpu_ms_per_event) {
        println!("  cpu     {m:9.4} ms/event, entries {e:.4} ms/event (thread CPU time)");
    }
    if let (Some(i), Some(re), Some(rm)) = (r.insert_cpu_us, r.reinsert_cpu_us, r.remove_cpu_us) {
        println!("  cpu     insert {i:.2} us, re-insert {re:.2} us, remove {rm:.2} us");
    }
    println!(
        "  fresh   {:.2} us per insertion of a just-compiled filter (median; mean {:.2} us)",
        r.fresh_insert_us, r.fresh_insert_mean_us
    );
    println!(
        "  naive   {:9.4} ms/event  -> speed-up {:.0}x ({} events verified)",
        r.naive_ms_per_event, r.speedup, r.verified_events
    );
    println!(
        "  matches {:.2} destinations/event, {:.2} entries/event",
        r.matches_per_event, r.entries_per_event
    );
    println!(
        "  updates {:.0} inserts/s ({:.2} us each) building, {:.0} re-inserts/s ({:.2} us), \
         {:.0} removes/s ({:.2} us); compile {:.0}/s",
        r.inserts_per_s,
        1e6 / r.inserts_per_s.max(1e-9),
        r.reinserts_per_s,
        1e6 / r.reinserts_per_s.max(1e-9),
        r.removes_per_s,
        1e6 / r.removes_per_s.max(1e-9),
        r.compiles_per_s
    );
    println!(
        "  memory  {:.0} bytes/subscription, {:.1} bytes/constraint; {} clusters, {} with bitmaps ({} conjunctions)",
        r.bytes_per_subscription,
        r.bytes_per_constraint,
        r.clusters,
        r.engine_clusters,
        r.conjunctions_in_engines
    );
}

fn pubsub_cmd(args: &PubsubArgs) -> anyhow::Result<()> {
    use palio_bench::pubsub::{self, PubsubConfig, processes};
    let config = PubsubConfig {
        brokers: args.brokers,
        count: args.count,
        payload_bytes: args.payload,
        rate: args.rate,
        group: args.group,
    };
    let mut report = if args.in_process {
        pubsub::run(&config)?
    } else {
        let broker_bin = match &args.broker_bin {
            Some(b) => b.clone(),
            None => processes::default_broker_bin()?,
        };
        processes::run(
            &config,
            &processes::ProcessOptions {
                broker_bin,
                worker_bin: std::env::current_exe()?,
                timeout: std::time::Duration::from_secs(args.timeout),
                drain: std::time::Duration::from_millis(args.drain_ms),
                server: args.server.clone().map(|s| (s, args.tls_dir.clone())),
            },
        )?
    };
    report.system.clone_from(&args.system);
    report.scenario.clone_from(&args.scenario);
    report.round = args.round;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let l = &report.latency_us;
        println!(
            "pubsub ({}): {} broker(s), {} B payload + {} attributes, rate {}: {} published, {} received ({:.3}% lost), {:.0} msgs/s (published {:.0}/s); latency us p50 {} p90 {} p99 {} p99.9 {} max {}; {} out of order, {} duplicates",
            report.mode,
            report.brokers,
            report.payload_bytes,
            report.attributes,
            report
                .rate
                .map_or("unlimited".to_owned(), |r| format!("{r}/s")),
            report.published,
            report.received,
            report.loss * 100.0,
            report.msgs_per_sec,
            report.publish_msgs_per_sec,
            l.p50,
            l.p90,
            l.p99,
            l.p999,
            l.max,
            report.out_of_order,
            report.duplicates,
        );
        for b in &report.per_broker {
            println!(
                "  {}: dropped {:?}, ingress waits {:?}, {:?}",
                b.broker, b.dropped, b.ingress_waits, b.counters
            );
        }
    }
    Ok(())
}

fn pubsub_worker_cmd(args: &PubsubWorkerArgs) -> anyhow::Result<()> {
    use palio_bench::pubsub::worker;
    let config = worker::WorkerConfig {
        server: args.server.clone(),
        tls_dir: args.tls_dir.clone(),
        count: args.count,
        payload_bytes: args.payload,
        rate: args.rate,
        drain: std::time::Duration::from_millis(args.drain_ms),
        group: args.group.clone(),
    };
    match args.role {
        WorkerRole::Pub => worker::publisher(&config),
        WorkerRole::Sub => worker::subscriber(&config),
    }
}

fn persistence_cmd(args: &PersistenceArgs) -> anyhow::Result<()> {
    use palio_bench::persistence::{self, JetStreamSync, PersistenceConfig, System};
    let config = PersistenceConfig {
        system: match args.system {
            SystemName::Palio => System::Palio,
            SystemName::Jetstream => System::Jetstream,
        },
        count: args.count,
        payload_bytes: args.payload,
        producers: args.producers,
        batch: args.batch,
        palio_broker_bin: None,
        jetstream_sync: match args.jetstream_sync {
            SyncName::Default => JetStreamSync::Default,
            SyncName::Always => JetStreamSync::Always,
        },
        nats_server: args.nats_server.clone(),
        data_parent: args.data_parent.clone(),
    };
    let start = std::time::Instant::now();
    let r = persistence::run(&config, &mut |line| {
        eprintln!("[{:7.1}s] {line}", start.elapsed().as_secs_f64());
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!(
            "{} ({}; ack after {}): {} x {} B + {} attributes from {} producer(s): publish {:.0} msgs/s ({:.2} s), consume {:.0} msgs/s ({:.2} s, batch {}: {:.2} s in fetches, {:.2} s in acks); {} consumed exactly once; {} bytes on disk",
            r.label,
            r.server_version,
            r.ack_after,
            r.count,
            r.payload_bytes,
            r.attributes,
            r.producers,
            r.publish_msgs_per_s,
            r.publish_secs,
            r.consume_msgs_per_s,
            r.consume_secs,
            r.batch,
            r.fetch_secs,
            r.ack_secs,
            r.consumed,
            r.data_dir_bytes
        );
    }
    Ok(())
}

fn persistence_summary_cmd(args: &PersistenceSummaryArgs) -> anyhow::Result<()> {
    use palio_bench::persistence::summary;
    let series = summary::read_series(&std::fs::read_to_string(&args.input)?)?;
    print!("{}", summary::markdown(&series));
    if let Some(out) = &args.svg {
        std::fs::write(out, summary::render_svg(&series)?)?;
    }
    Ok(())
}
