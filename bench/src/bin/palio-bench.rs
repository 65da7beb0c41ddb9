//! `palio-bench`: Palio's benchmark command. Parses flags and calls the library.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use palio_bench::matching::{self, Compile, MatchingConfig, MatchingReport};
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Matching(args) => match matching_cmd(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("palio-bench: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
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
