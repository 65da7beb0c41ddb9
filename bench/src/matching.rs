//! The matching benchmark: build an index from a workload, time matching against naive
//! evaluation, and verify the index's answers.
//!
//! Timing is single-threaded, with a [`Stopwatch`] around whole passes over many events; each
//! figure is the median of a few repetitions, because the machines are shared and noisy. Every
//! time is reported twice: wall clock, and the thread's CPU time (`*_cpu_*` fields, see
//! [`crate::clock`]), which excludes waiting for a core and is the steadier figure for A/B
//! comparisons on a loaded machine.

use std::collections::BTreeSet;
use std::time::Instant;

use anyhow::{Context, bail};
use palio_filter::{Event, Filter, Index, Routable};
use serde::Serialize;

use crate::clock::{Elapsed, Stopwatch};
use crate::workload::{Subscription, Workload};

/// How filters reach the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compile {
    /// CESQL text through `Filter::new` (the real path), inserted with `Index::insert`.
    Text,
    /// Routable forms built directly, inserted with `Index::insert_routable`: isolates the
    /// index from the parser and the normaliser.
    Routable,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct MatchingConfig {
    /// The workload.
    pub workload: Workload,
    /// The number of subscriptions.
    pub subscriptions: usize,
    /// The number of events timed per repetition.
    pub events: usize,
    /// The number of events evaluated naively (baseline timing and verification).
    pub naive_events: usize,
    /// Repetitions of the timed pass; the median is reported.
    pub repetitions: usize,
    /// The seed of every random draw.
    pub seed: u64,
    /// How filters are compiled.
    pub compile: Compile,
}

/// Rounds of removing and re-inserting a tenth of the entries.
const UPDATE_ROUNDS: usize = 5;
/// Fresh insertions timed at most.
const FRESH_MAX: usize = 20_000;

/// The result, printed as JSON by `palio-bench matching --json`.
#[derive(Debug, Clone, Serialize)]
pub struct MatchingReport {
    /// `w1` or `w2`.
    pub workload: &'static str,
    /// W2's interval width (absent for W1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
    /// Subscriptions indexed.
    pub subscriptions: usize,
    /// Distinct destinations.
    pub destinations: usize,
    /// Events timed per repetition.
    pub events: usize,
    /// How filters were compiled.
    pub compile: Compile,
    /// The seed.
    pub seed: u64,
    /// Median milliseconds per event of `Index::matches` (each destination once).
    pub ms_per_event: f64,
    /// Median milliseconds per event of `Index::matching_entries` (every entry).
    pub entries_ms_per_event: f64,
    /// Median thread-CPU milliseconds per event of `Index::matches`.
    pub cpu_ms_per_event: Option<f64>,
    /// Median thread-CPU milliseconds per event of `Index::matching_entries`.
    pub entries_cpu_ms_per_event: Option<f64>,
    /// Events per second at `ms_per_event`.
    pub events_per_s: f64,
    /// Mean destinations matched per event.
    pub matches_per_event: f64,
    /// Mean entries matched per event.
    pub entries_per_event: f64,
    /// Index insertions per second (building from empty; compilation excluded).
    pub inserts_per_s: f64,
    /// Index removals per second: rounds each removing a different tenth of the entries (at
    /// most 100k, spread evenly), compactions included.
    pub removes_per_s: f64,
    /// Index insertions per second into the built index (re-inserting each round's removed
    /// tenth): the steady-state cost, without the first-touch page faults of building from
    /// empty.
    pub reinserts_per_s: f64,
    /// Thread-CPU microseconds per insertion, building from empty.
    pub insert_cpu_us: Option<f64>,
    /// Thread-CPU microseconds per removal.
    pub remove_cpu_us: Option<f64>,
    /// Thread-CPU microseconds per re-insertion into the built index.
    pub reinsert_cpu_us: Option<f64>,
    /// Wall-clock microseconds per insertion of a filter compiled just before (in cache), as a
    /// broker inserts a new subscription: the median of up to 20k insertions into the built
    /// index, each timed alone.
    pub fresh_insert_us: f64,
    /// The mean of the same insertions (scheduler interruptions included).
    pub fresh_insert_mean_us: f64,
    /// Filter compilations per second (`Filter::new`, or building the routable form).
    pub compiles_per_s: f64,
    /// `Index::memory_bytes` divided by the subscriptions.
    pub bytes_per_subscription: f64,
    /// `Index::memory_bytes` divided by the constraints of all subscriptions.
    pub bytes_per_constraint: f64,
    /// Milliseconds per event of naive evaluation (every filter's `matches`), on
    /// `verified_events` events.
    pub naive_ms_per_event: f64,
    /// `naive_ms_per_event / ms_per_event`.
    pub speedup: f64,
    /// Events on which the index's answer was checked against naive evaluation (all agreed).
    pub verified_events: usize,
    /// Structure of the index.
    pub clusters: usize,
    /// Clusters with a cell-bitmap engine.
    pub engine_clusters: usize,
    /// Conjunctions in clusters with an engine.
    pub conjunctions_in_engines: usize,
}

/// A compiled subscription, as the naive baseline evaluates it.
enum Compiled {
    Filter(Box<Filter>),
    Routable(Routable),
}

impl Compiled {
    fn matches(&self, ev: &Event) -> bool {
        match self {
            Compiled::Filter(f) => f.matches(ev),
            Compiled::Routable(r) => r.matches(ev),
        }
    }
}

/// Runs the benchmark, reporting progress through `progress` (one line per call).
pub fn run(cfg: &MatchingConfig, progress: &mut dyn FnMut(&str)) -> anyhow::Result<MatchingReport> {
    let n = cfg.subscriptions;
    progress(&format!(
        "generating {n} {} subscriptions",
        cfg.workload.name()
    ));
    let subs: Vec<Subscription> = cfg.workload.subscriptions(n, cfg.seed);
    let constraints: usize = subs.iter().map(|s| s.constraints.len()).sum();

    progress("compiling filters");
    let t = Stopwatch::start();
    let mut compiled = Vec::with_capacity(n);
    for (i, s) in subs.iter().enumerate() {
        compiled.push(match cfg.compile {
            Compile::Text => {
                let text = s.to_cesql();
                Compiled::Filter(Box::new(
                    Filter::new(&text).with_context(|| format!("compiling {text}"))?,
                ))
            }
            Compile::Routable => Compiled::Routable(s.to_routable()),
        });
        tick(progress, "compiled", i, n);
    }
    let compiles_per_s = per_s(n, t.elapsed().wall);

    progress("building the index");
    let mut index: Index<u32> = Index::new();
    let t = Stopwatch::start();
    let ids: Vec<_> = compiled
        .iter()
        .zip(&subs)
        .map(|(c, s)| match c {
            Compiled::Filter(f) => index.insert(f, s.dest),
            Compiled::Routable(r) => index.insert_routable(r, s.dest),
        })
        .collect();
    let built = t.elapsed();
    let inserts_per_s = per_s(n, built.wall);
    let memory = index.memory_bytes() as f64;
    let stats = index.stats();
    progress(&format!("index built: {stats:?}, {memory:.0} bytes"));

    let events = cfg
        .workload
        .events(cfg.events.max(cfg.naive_events), cfg.seed);
    let timed = &events[..cfg.events.min(events.len())];
    let mut scratch = index.scratch();
    let mut out = Vec::new();
    let mut entries = Vec::new();

    progress(&format!(
        "timing {} events x {} repetitions",
        timed.len(),
        cfg.repetitions
    ));
    let mut dest_ms = Vec::new();
    let mut entry_ms = Vec::new();
    let mut dest_cpu = Vec::new();
    let mut entry_cpu = Vec::new();
    let (mut dests_found, mut entries_found) = (0usize, 0usize);
    for _ in 0..cfg.repetitions.max(1) {
        let t = Stopwatch::start();
        dests_found = 0;
        for ev in timed {
            out.clear();
            index.matches(ev, &mut scratch, &mut out);
            dests_found += out.len();
        }
        let e = t.elapsed();
        dest_ms.push(ms_per(e.wall, timed.len()));
        dest_cpu.extend(e.cpu.map(|c| ms_per(c, timed.len())));
        let t = Stopwatch::start();
        entries_found = 0;
        for ev in timed {
            entries.clear();
            index.matching_entries(ev, &mut scratch, &mut entries);
            entries_found += entries.len();
        }
        let e = t.elapsed();
        entry_ms.push(ms_per(e.wall, timed.len()));
        entry_cpu.extend(e.cpu.map(|c| ms_per(c, timed.len())));
    }
    let ms_per_event = median(&mut dest_ms);
    let entries_ms_per_event = median(&mut entry_ms);
    let cpu_ms_per_event = (!dest_cpu.is_empty()).then(|| median(&mut dest_cpu));
    let entries_cpu_ms_per_event = (!entry_cpu.is_empty()).then(|| median(&mut entry_cpu));

    let sample = &events[..cfg.naive_events.min(events.len())];
    progress(&format!("naive evaluation of {} events", sample.len()));
    let mut naive_secs = 0.0;
    for (k, ev) in sample.iter().enumerate() {
        let t = Stopwatch::start();
        let want: BTreeSet<u32> = compiled
            .iter()
            .zip(&subs)
            .filter(|(c, _)| c.matches(ev))
            .map(|(_, s)| s.dest)
            .collect();
        naive_secs += t.elapsed().wall;
        out.clear();
        index.matches(ev, &mut scratch, &mut out);
        let got: BTreeSet<u32> = out.iter().copied().collect();
        if got.len() != out.len() || got != want {
            bail!(
                "index and naive evaluation disagree on event {k} ({ev:?}): index {} destinations \
                 ({} distinct), naive {}; only in index: {:?}; only naive: {:?}",
                out.len(),
                got.len(),
                want.len(),
                got.difference(&want).take(5).collect::<Vec<_>>(),
                want.difference(&got).take(5).collect::<Vec<_>>(),
            );
        }
    }
    let naive_ms_per_event = ms_per(naive_secs, sample.len());

    // Churn: each round removes a different tenth of the entries (at most 100k, spread
    // evenly), then inserts them again into the built index. Over the rounds, tombstones
    // accumulate and trigger the index's compactions, so the figures include their amortised
    // cost.
    let removes = (n / 10).min(100_000);
    let step = (n / removes.max(1)).max(1);
    let mut ids = ids;
    let (mut removed, mut reinserted) = (Elapsed::ZERO, Elapsed::ZERO);
    for round in 0..UPDATE_ROUNDS {
        let offset = round % step;
        progress(&format!(
            "round {}/{UPDATE_ROUNDS}: timing {removes} removals and re-insertions",
            round + 1
        ));
        let t = Stopwatch::start();
        for id in ids.iter().skip(offset).step_by(step).take(removes) {
            if !index.remove(*id) {
                bail!("removing a live entry failed");
            }
        }
        removed += t.elapsed();
        let t = Stopwatch::start();
        let again = compiled.iter().zip(&subs).zip(ids.iter_mut());
        for ((c, s), id) in again.skip(offset).step_by(step).take(removes) {
            *id = match c {
                Compiled::Filter(f) => index.insert(f, s.dest),
                Compiled::Routable(r) => index.insert_routable(r, s.dest),
            };
        }
        reinserted += t.elapsed();
    }
    let updates = removes * UPDATE_ROUNDS;
    let removes_per_s = per_s(updates, removed.wall);
    let reinserts_per_s = per_s(updates, reinserted.wall);

    // Fresh insertions: as a broker inserts a subscription right after compiling it, with the
    // filter still in cache (the bulk figures above read filters compiled long before and
    // scattered over the heap). Each entry is removed, compiled again from scratch, and
    // inserted; only the insertion is timed, one wall-clock reading either side. The median
    // is reported: a single insertion takes about a microsecond, so the rare ones that the
    // scheduler interrupts (by milliseconds, on a shared machine) would dominate a mean.
    let fresh = removes.min(FRESH_MAX);
    progress(&format!("timing {fresh} fresh insertions"));
    let mut fresh_us = Vec::with_capacity(fresh);
    let offset = UPDATE_ROUNDS % step;
    let again = subs.iter().zip(ids.iter_mut());
    for (s, id) in again.skip(offset).step_by(step).take(fresh) {
        if !index.remove(*id) {
            bail!("removing a live entry failed");
        }
        *id = match cfg.compile {
            Compile::Text => {
                let text = s.to_cesql();
                let f = Filter::new(&text).with_context(|| format!("compiling {text}"))?;
                let t = Instant::now();
                let id = index.insert(&f, s.dest);
                fresh_us.push(t.elapsed().as_secs_f64() * 1e6);
                id
            }
            Compile::Routable => {
                let r = s.to_routable();
                let t = Instant::now();
                let id = index.insert_routable(&r, s.dest);
                fresh_us.push(t.elapsed().as_secs_f64() * 1e6);
                id
            }
        };
    }
    let fresh_insert_mean_us = fresh_us.iter().sum::<f64>() / fresh.max(1) as f64;
    let fresh_insert_us = median(&mut fresh_us);

    Ok(MatchingReport {
        workload: cfg.workload.name(),
        width: match &cfg.workload {
            Workload::W2(w) => Some(w.width),
            Workload::W1(_) => None,
        },
        subscriptions: n,
        destinations: stats_dests(&subs),
        events: timed.len(),
        compile: cfg.compile,
        seed: cfg.seed,
        ms_per_event,
        entries_ms_per_event,
        cpu_ms_per_event,
        entries_cpu_ms_per_event,
        events_per_s: if ms_per_event > 0.0 {
            1000.0 / ms_per_event
        } else {
            0.0
        },
        matches_per_event: dests_found as f64 / timed.len().max(1) as f64,
        entries_per_event: entries_found as f64 / timed.len().max(1) as f64,
        inserts_per_s,
        removes_per_s,
        reinserts_per_s,
        insert_cpu_us: us_each(built, n),
        remove_cpu_us: us_each(removed, updates),
        reinsert_cpu_us: us_each(reinserted, updates),
        fresh_insert_us,
        fresh_insert_mean_us,
        compiles_per_s,
        bytes_per_subscription: memory / n.max(1) as f64,
        bytes_per_constraint: memory / constraints.max(1) as f64,
        naive_ms_per_event,
        speedup: if ms_per_event > 0.0 {
            naive_ms_per_event / ms_per_event
        } else {
            0.0
        },
        verified_events: sample.len(),
        clusters: stats.clusters,
        engine_clusters: stats.engine_clusters,
        conjunctions_in_engines: stats.conjunctions_in_engines,
    })
}

/// The number of distinct destinations.
fn stats_dests(subs: &[Subscription]) -> usize {
    subs.iter().map(|s| s.dest).collect::<BTreeSet<_>>().len()
}

/// Reports progress every tenth of `n`.
fn tick(progress: &mut dyn FnMut(&str), what: &str, i: usize, n: usize) {
    let tenth = (n / 10).max(1);
    if n >= 100_000 && (i + 1).is_multiple_of(tenth) {
        progress(&format!("{what} {}/{n}", i + 1));
    }
}

fn per_s(count: usize, secs: f64) -> f64 {
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// CPU microseconds per operation, of `count` operations.
fn us_each(e: Elapsed, count: usize) -> Option<f64> {
    e.cpu.map(|c| c * 1e6 / count.max(1) as f64)
}

fn ms_per(secs: f64, count: usize) -> f64 {
    secs * 1000.0 / count.max(1) as f64
}

/// The median (upper median for an even count); 0 for none.
pub fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{W1, W2};

    fn small(workload: Workload, compile: Compile) -> MatchingReport {
        let cfg = MatchingConfig {
            workload,
            subscriptions: 2000,
            events: 50,
            naive_events: 50,
            repetitions: 1,
            seed: 1,
            compile,
        };
        run(&cfg, &mut |_| {}).expect("the index agrees with naive evaluation")
    }

    #[test]
    fn small_runs_verify_every_sampled_event() {
        for compile in [Compile::Text, Compile::Routable] {
            let r = small(Workload::W2(W2::new(0.8)), compile);
            assert_eq!(r.verified_events, 50);
            assert!(
                r.matches_per_event > 0.0,
                "width 0.8 matches ~10% of subscriptions"
            );
            let r = small(Workload::W1(W1::default()), compile);
            assert_eq!(r.verified_events, 50);
            assert!(r.destinations <= 64);
        }
    }

    #[test]
    fn median_of_few() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut []), 0.0);
    }
}
