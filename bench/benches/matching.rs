//! Criterion benches of the matching index on the TARGETS.md workloads.
//!
//! They live in the bench crate (not in palio-filter) because they use its workload
//! generators; palio-filter cannot depend on palio-bench. Measurement time is kept short so
//! `cargo bench -p palio-bench` finishes in a few minutes.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use palio_bench::workload::{W1, W2, Workload};
use palio_filter::{Filter, Index};

fn build(workload: &Workload, n: usize) -> Index<u32> {
    let mut index = Index::new();
    for s in workload.subscriptions(n, 1) {
        let filter = Filter::new(&s.to_cesql()).expect("generated filters compile");
        index.insert(&filter, s.dest);
    }
    index
}

fn match_bench(c: &mut Criterion, name: &str, workload: &Workload, n: usize) {
    let index = build(workload, n);
    let events = workload.events(256, 1);
    let mut scratch = index.scratch();
    let mut out = Vec::new();
    let mut k = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            out.clear();
            index.matches(&events[k % events.len()], &mut scratch, &mut out);
            k += 1;
            black_box(out.len())
        })
    });
}

fn matching(c: &mut Criterion) {
    let w2 = Workload::W2(W2::new(0.5));
    match_bench(c, "match/w2/10k", &w2, 10_000);
    match_bench(c, "match/w2/100k", &w2, 100_000);
    match_bench(c, "match/w1/100k", &Workload::W1(W1::default()), 100_000);
}

fn updates(c: &mut Criterion) {
    let w2 = Workload::W2(W2::new(0.5));
    let base = build(&w2, 100_000);
    let extra: Vec<Filter> = w2
        .subscriptions(1000, 2)
        .iter()
        .map(|s| Filter::new(&s.to_cesql()).expect("generated filters compile"))
        .collect();
    c.bench_function("update/w2/100k/insert+remove x1000", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |index| {
                let ids: Vec<_> = extra.iter().map(|f| index.insert(f, 0)).collect();
                for id in ids {
                    index.remove(id);
                }
            },
            BatchSize::LargeInput,
        )
    });
}

fn single_filter(c: &mut Criterion) {
    let w1 = Workload::W1(W1::default());
    let filters: Vec<Filter> = w1
        .subscriptions(64, 3)
        .iter()
        .map(|s| Filter::new(&s.to_cesql()).expect("generated filters compile"))
        .collect();
    let events = w1.events(64, 3);
    let mut k = 0;
    c.bench_function("filter/w1/matches", |b| {
        b.iter(|| {
            k += 1;
            black_box(filters[k % 64].matches(&events[(k / 64) % 64]))
        })
    });
    let complex = Filter::new(
        "type = 'alarm' AND (level > 2 OR source LIKE 'sensor/%') AND NOT EXISTS muted",
    )
    .expect("valid filter");
    let ev = palio_filter::Event::new()
        .with("type", "alarm")
        .and_then(|e| e.with("level", 1))
        .and_then(|e| e.with("source", "sensor/7"))
        .expect("valid names");
    c.bench_function("filter/expression/matches", |b| {
        b.iter(|| black_box(complex.matches(&ev)))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    targets = matching, updates, single_filter
}
criterion_main!(benches);
