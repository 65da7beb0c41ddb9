//! Palio's benchmarks.
//!
//! The library holds what the benchmarks share, so that the `palio-bench` command, the criterion
//! benches and later the routing and pub/sub benchmarks draw the same workloads:
//!
//! - [`workload`]: seeded generators for the workloads of `TARGETS.md` (W1: SIENA forwarding;
//!   W2: REIN-style intervals), producing subscriptions as CESQL text or routable forms, and
//!   events.
//! - [`clock`]: wall-clock and thread-CPU time side by side (the machines are shared).
//! - [`matching`]: the matching benchmark (index vs naive evaluation, with verification).

pub mod clock;
pub mod matching;
pub mod workload;
