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
//! - [`routing`]: the routing benchmark (N broker state machines in the topology crate's
//!   simulator, per strategy) and its plot.
//! - [`disk`]: the cost of an append followed by fdatasync on the machine's disk.
//! - [`pubsub`]: end-to-end publish/subscribe through real brokers over loopback QUIC, broker,
//!   publisher and subscriber as separate processes (or all in one).
//! - [`persistence`]: persistent publish and durable pull consumption, Palio beside NATS
//!   JetStream with file storage.
//! - [`compare`]: Palio beside NATS core, NATS with TLS, Mosquitto and JetStream, every server
//!   and client a process of its own, the systems alternating run by run.

pub mod clock;
pub mod compare;
pub mod disk;
pub mod matching;
pub mod persistence;
pub mod pubsub;
pub mod routing;
pub mod workload;
