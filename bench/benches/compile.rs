//! Criterion benches of filter compilation (`Filter::new`: parser and normaliser).
//!
//! Subscription updates arrive as CESQL text, so a broker compiles every one: the W2 filters
//! (20 interval bounds on 10 attributes), W1's equality and prefix mixes, and a few typical
//! hand-written shapes. Each iteration compiles one filter from a fixed pool.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palio_bench::workload::{W1, W2, Workload};
use palio_filter::{Expr, Filter};

fn compile_pool(c: &mut Criterion, name: &str, pool: &[String]) {
    let mut k = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            let filter = Filter::new(&pool[k % pool.len()]).expect("benchmark filters compile");
            k += 1;
            black_box(filter)
        })
    });
}

fn workload_pool(workload: &Workload) -> Vec<String> {
    workload
        .subscriptions(256, 1)
        .iter()
        .map(|s| s.to_cesql())
        .collect()
}

fn compile(c: &mut Criterion) {
    let w2 = workload_pool(&Workload::W2(W2::new(0.5)));
    let mut k = 0;
    c.bench_function("parse/w2", |b| {
        b.iter(|| {
            let expr = Expr::parse(&w2[k % w2.len()]).expect("benchmark filters parse");
            k += 1;
            black_box(expr)
        })
    });
    compile_pool(c, "compile/w2", &w2);
    compile_pool(
        c,
        "compile/w1",
        &workload_pool(&Workload::W1(W1::default())),
    );
    let typical = [
        "type = 'alarm' AND level > 2",
        "a = 1 OR b = 2",
        "source LIKE 'sensor/%' AND kind IN ('temp', 'humidity') AND NOT (value < 0)",
        "(a > 1 AND a < 10) OR (b = 'x' AND c LIKE '%y%')",
    ];
    for (i, text) in typical.iter().enumerate() {
        compile_pool(c, &format!("compile/typical/{i}"), &[(*text).to_owned()]);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(20);
    targets = compile
}
criterion_main!(benches);
