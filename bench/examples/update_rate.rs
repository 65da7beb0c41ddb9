//! Prints one broker's subscription update rate (see
//! `palio_topology::sim::scenario::single_broker_update_rate`) for each strategy.
//!
//! `cargo run --release -p palio-bench --example update_rate -- BROKERS SUBSCRIPTIONS`
//! (BROKERS only sets the number of regions, one per 10 brokers, as in `palio-bench routing`).

use palio_topology::Strategy;
use palio_topology::sim::scenario::{RoutingParams, single_broker_update_rate};

fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let (brokers, subscriptions) = match args[..] {
        [b, s] => (b, s),
        _ => (100, 10_000),
    };
    for strategy in [
        Strategy::Simple,
        Strategy::Covering,
        Strategy::Advertisements,
    ] {
        let mut rates: Vec<f64> = (1..=3)
            .map(|seed| {
                let p = RoutingParams {
                    brokers,
                    subscriptions,
                    strategy,
                    seed,
                    ..RoutingParams::default()
                };
                single_broker_update_rate(&p).map_err(anyhow::Error::msg)
            })
            .collect::<anyhow::Result<_>>()?;
        rates.sort_by(f64::total_cmp);
        println!(
            "{{\"brokers\":{brokers},\"subscriptions\":{subscriptions},\"strategy\":\"{strategy}\",\"median_updates_per_second\":{:.0}}}",
            rates[1]
        );
    }
    Ok(())
}
