//! Entry points for fuzz targets, not an API: thin wrappers that let the cargo-fuzz targets in
//! `fuzz/` reach the broker's decoders of configured and stored input. Nothing in the broker
//! calls them, and they may change with every release.
//!
//! Each wrapper runs the code path the broker runs, so a crash found through it is a crash of
//! the broker:
//!
//! - the configuration: [`config`] parses and validates a TOML text as `Settings::load` does;
//! - the data directory: [`Recovery`] opens a store or groups' log directory as the broker does
//!   at start (recovery of the segments, the checkpoint, the engine's state, the groups'
//!   declarations and cores);
//! - the store's byte layout on its own: [`scan_segment`] and [`decode_checkpoint`].
//!
//! A fuzz target writes the files it recovers, so it also needs to make well-formed ones (frames
//! whose checksums verify, records that decode) and damage them: [`segment_header`],
//! [`push_frame`], [`push_seal`], [`checkpoint_file`], and [`Samples`], real records of every
//! kind encoded by the broker's own encoders. The samples are built from JSON through the
//! records' `Deserialize` (never as Rust literals), so adding a field to a record type changes
//! one sample, not this file's compilation; `samples_are_real_records` says which.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use palio_filter::Event;
use palio_topology::BrokerId;
use palio_topology::group::{
    CausalConfig, CausalGroup, Effect, Order, TotalConfig, TotalGroup, VClock,
};
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Limits, Settings, StoreSettings};
use crate::durable::Snapshot;
use crate::durable::record::{self as durable_record, Record as DurableRecord};
use crate::groups::Groups;
use crate::groups::core::Msg;
use crate::groups::journal::Record as GroupsRecord;
use crate::metrics::Metrics;
use crate::persist::Store;
use crate::store::checkpoint;
use crate::store::record::{self as layout, FrameKind};
use crate::store::scan::scan;
use crate::store::{LogOptions, Position};
use crate::wire::GroupDecl;

/// The broker the recovered directories belong to (the samples' records name it).
pub const ME: BrokerId = BrokerId(1);

/// The name of the checkpoint file in a store directory.
pub const CHECKPOINT_FILE: &str = checkpoint::CHECKPOINT_FILE;
/// The name a checkpoint is written under before it replaces the checkpoint file.
pub const CHECKPOINT_TEMP: &str = checkpoint::CHECKPOINT_TEMP;

/// The record bound segments are created with by default (and the one the groups' log uses).
pub fn default_record_bound() -> u32 {
    LogOptions::default().max_record_bytes
}

/// Parses and validates a configuration file's text, as `Settings::load` does with a file and
/// no command-line overrides.
pub fn config(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml(Path::new("fuzz.toml"), text)?.finish()
}

/// The file name of segment `id`.
pub fn segment_file_name(id: u64) -> String {
    layout::segment_file_name(id)
}

/// The 32-byte header of segment `id` whose records are at most `bound` bytes.
pub fn segment_header(id: u64, bound: u32) -> Vec<u8> {
    layout::encode_segment_header(id, bound).to_vec()
}

/// Appends a data frame holding `payload` to `segment`'s bytes `out` (at offset `out.len()`,
/// where its checksums say it is).
pub fn push_frame(out: &mut Vec<u8>, segment: u64, payload: &[u8]) {
    let pos = Position::new(segment, out.len() as u64);
    layout::encode_frame(out, pos, FrameKind::Data, payload);
}

/// Appends the seal frame that ends a finished segment.
pub fn push_seal(out: &mut Vec<u8>, segment: u64) {
    let pos = Position::new(segment, out.len() as u64);
    layout::encode_frame(out, pos, FrameKind::Seal, &[]);
}

/// The bytes of a checkpoint file covering the log up to `segment:offset` with `state`.
pub fn checkpoint_file(segment: u64, offset: u64, state: &[u8]) -> Vec<u8> {
    checkpoint::encode(Position::new(segment, offset), state)
}

/// Scans the bytes of segment `id` as recovery and replay do; returns the valid data records'
/// payloads. `fallback_bound` bounds record lengths when the header is damaged.
pub fn scan_segment(id: u64, bytes: &[u8], fallback_bound: u32) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    // Scanning a byte slice does no I/O, and the callback never fails: the scan cannot fail.
    let _ = scan(id, Path::new("fuzz.seg"), bytes, fallback_bound, |_, p| {
        records.push(p.to_vec());
        Ok(())
    });
    records
}

/// Verifies checkpoint file bytes: the position they cover up to and the state's length.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<((u64, u64), usize), &'static str> {
    checkpoint::decode(bytes).map(|(p, s)| ((p.segment, p.offset), s.len()))
}

/// What opening a store found (the broker's ready-line summary).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSummary {
    /// Nothing was damaged and every record decoded.
    pub clean: bool,
    /// Records replayed after the checkpoint.
    pub records: u64,
    /// Records that did not decode (skipped).
    pub undecodable: u64,
    /// What recovery reported, one line each.
    pub problems: Vec<String>,
}

/// Opens data directories as the broker does at start. Holds what every opening needs (the
/// metrics registry, a runtime for the groups task), so a target makes one and opens many.
pub struct Recovery {
    /// The groups task reports into it.
    metrics: Metrics,
    /// Drives the groups task through its recovery.
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recovery").finish_non_exhaustive()
    }
}

impl Recovery {
    /// Ready to open directories; fails only if the runtime cannot start.
    pub fn new() -> std::io::Result<Self> {
        Ok(Recovery {
            metrics: Metrics::new(),
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?,
        })
    }

    /// Opens the persistent store in `dir` (the broker's `DATA_DIR/store`) with the default
    /// settings: recovers the log, loads the checkpoint into the durable engine and replays the
    /// records after it. What recovery reported, or the error the broker would refuse to start
    /// with.
    pub fn open_store(&self, dir: &Path) -> Result<StoreSummary, String> {
        let store = Store::open(dir, ME, &StoreSettings::default(), &Limits::default())?;
        // The summary the broker prints in its ready line, read back.
        let j = store.summary();
        Ok(StoreSummary {
            clean: j["clean"].as_bool().unwrap_or(false),
            records: j["records"].as_u64().unwrap_or(0),
            undecodable: j["undecodable"].as_u64().unwrap_or(0),
            problems: j["problems"]
                .as_array()
                .map(|a| a.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
        })
    }

    /// Opens the groups' log in `dir` (the broker's `DATA_DIR/groups`) and runs the groups
    /// task through its start: the declarations are merged and every live group's core is
    /// rebuilt from its records. Then the task stops (no client, peer or route ever comes).
    pub fn open_groups(&self, dir: &Path) -> Result<(), String> {
        let groups = Groups::open(
            dir,
            ME,
            "fuzz",
            Limits::default().max_groups,
            self.metrics.clone(),
        )?;
        let (_, commands) = mpsc::channel(1);
        let (_, hops) = watch::channel(HashMap::new());
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        self.runtime.block_on(groups.run(commands, hops, shutdown));
        Ok(())
    }
}

/// Rebuilds a total-order group's core at [`ME`] from its records, as the groups task does at
/// start, then runs it as the task would: `ticks` Raft ticks of virtual time, a publication
/// before each, every effect drained (and none carried out: no peer answers). `voters` are
/// the group's replicas. The error is the core's refusal of the records.
pub fn run_total(voters: &[BrokerId], records: Vec<Vec<u8>>, ticks: u32) -> Result<(), String> {
    let config = TotalConfig::default();
    let tick = config.tick;
    let mut now = Instant::now();
    let mut t =
        TotalGroup::<Msg>::new(ME, voters, config, records, now).map_err(|e| e.to_string())?;
    while t.poll_effect().is_some() {}
    for i in 0..ticks {
        t.publish(
            now,
            "p",
            u64::from(i) + 1,
            msg(i32::try_from(i).unwrap_or(0))?,
        );
        now += tick;
        t.handle_timeout(now);
        while t.poll_effect().is_some() {}
    }
    Ok(())
}

/// Well-formed records of every kind the broker stores, in an order that makes sense when
/// replayed (a queue is added before a message enters it, a group declared before its core's
/// records).
#[derive(Debug, Clone)]
pub struct Samples {
    /// Records of the durable engine's log.
    pub durable: Vec<Vec<u8>>,
    /// Checkpoint states of the durable engine.
    pub snapshots: Vec<Vec<u8>>,
    /// Records of the groups' log: the declaration of a causal group and its core's records,
    /// then [`Samples::raft`].
    pub groups: Vec<Vec<u8>>,
    /// Records of the groups' log for a total-order group of which [`ME`] is the only replica:
    /// its declaration, then its core's records as its run persisted them (Raft's hard state,
    /// entries, and compactions holding snapshots of the state machine).
    pub raft: Vec<Vec<u8>>,
    /// The same total-order core's records on their own, as [`run_total`] takes them.
    pub raft_core: Vec<Vec<u8>>,
    /// A causal core's records on their own, as [`run_causal`] takes them.
    pub causal_core: Vec<Vec<u8>>,
    /// Bodies a peer sends that causal core: a hello, a welcome, a repair request.
    pub causal_bodies: Vec<Vec<u8>>,
}

impl Samples {
    /// Builds the samples (the groups' by running real cores for a few hundred steps).
    pub fn new() -> Result<Self, String> {
        let durable = durable_records()
            .into_iter()
            .map(|j| from_json::<DurableRecord>(j).map(|r| durable_record::encode(&r)))
            .collect::<Result<_, _>>()?;
        let snapshots = snapshots()
            .into_iter()
            .map(|j| from_json::<Snapshot>(j).map(|s| durable_record::encode(&s)))
            .collect::<Result<_, _>>()?;
        let raft_core = total_run()?;
        let (causal_core, causal_bodies) = causal_run()?;
        let (groups, raft) = groups_records(&causal_core, &raft_core)?;
        Ok(Samples {
            durable,
            snapshots,
            groups,
            raft,
            raft_core,
            causal_core,
            causal_bodies,
        })
    }
}

fn from_json<T: DeserializeOwned>(j: Json) -> Result<T, String> {
    let text = j.to_string();
    serde_json::from_value(j).map_err(|e| format!("sample {text} does not decode: {e}"))
}

/// A queue, a message in it, every other kind of change, and the queue removed.
fn durable_records() -> Vec<Json> {
    let decl = json!({"home": 2, "name": "remote", "filter": "type = 'b'", "generation": 3, "removed": false});
    vec![
        json!({"QueueAdded": {"key": 1, "name": "orders", "filter": "type = 'a' AND level > 2",
            "ack_wait_ms": 1000, "max_deliveries": 2}}),
        json!({"QueueAdded": {"key": 2, "name": "all", "filter": "TRUE",
            "ack_wait_ms": 30000, "max_deliveries": 5}}),
        json!({"Directory": decl}),
        json!({"Message": {"id": {"origin": 1, "n": 0}, "producer": ["p", 1],
            "attributes": [["level", 3], ["type", "a"]], "payload": [104, 105],
            "local": true, "queues": [[1, 1], [2, 1]], "dests": [2]}}),
        json!({"Message": {"id": {"origin": 3, "n": 7}, "producer": null,
            "attributes": [["type", "b"]], "payload": [],
            "local": true, "queues": [[2, 2]], "dests": []}}),
        json!({"Message": {"id": {"origin": 1, "n": 1}, "producer": ["p", 2],
            "attributes": [["type", "c"]], "payload": [],
            "local": true, "queues": [], "dests": [], "at_ms": 5, "matched": 0}}),
        json!({"Delivered": {"lane": {"queue": 1, "dead": false}, "tag": 1, "count": 1}}),
        json!({"Delivered": {"lane": {"queue": 1, "dead": false}, "tag": 1, "count": 2}}),
        json!({"DeadLettered": {"queue": 1, "tags": [1]}}),
        json!({"Acked": {"lane": {"queue": 2, "dead": false}, "tags": [1, 2]}}),
        json!({"Purged": {"lane": {"queue": 1, "dead": true}}}),
        json!({"HandedOff": {"id": {"origin": 1, "n": 0}, "dests": [2]}}),
        json!({"Directory": {"home": 2, "name": "remote", "filter": "type = 'b'", "generation": 4, "removed": true}}),
        json!({"QueueRemoved": {"key": 1}}),
    ]
}

/// An empty state and one with a queue, messages in both lanes, a forward and a directory.
fn snapshots() -> Vec<Json> {
    let pos = |offset: u64| json!({"segment": 0, "offset": offset});
    vec![
        json!({"next_msg": 0, "next_queue": 1, "next_generation": 1, "queues": [],
            "forwards": [], "producers": [], "seen": [], "directory": []}),
        json!({"next_msg": 5, "next_queue": 3, "next_generation": 2,
            "queues": [{"key": 1, "name": "orders", "filter": "type = 'a'", "ack_wait_ms": 1000,
                "max_deliveries": 2, "next_tag": 4,
                "main": [[1, pos(32), 0], [3, pos(96), 1]], "dead": [[2, pos(64), 2]]}],
            "forwards": [[{"origin": 1, "n": 4}, pos(96), [2, 3]]],
            "producers": [["p", 9]],
            "seen": [{"origin": 2, "n": 1}],
            "directory": [{"home": 2, "name": "remote", "filter": "TRUE", "generation": 1,
                "removed": false}]}),
    ]
}

/// The groups' log samples: declarations of a causal and a total-order group, then the records
/// their cores persisted; and the total-order group's alone.
/// Encoded records, in log order.
type Records = Vec<Vec<u8>>;

fn groups_records(
    causal_core: &[Vec<u8>],
    total_core: &[Vec<u8>],
) -> Result<(Records, Records), String> {
    let decl = |name: &str, order: &str, voters: Json| {
        from_json::<GroupDecl>(json!({"name": name, "order": order, "voters": voters,
            "creator": ME.0, "generation": 1, "removed": false}))
    };
    let core = |d: &GroupDecl, records: Vec<Vec<u8>>| -> Vec<Vec<u8>> {
        records
            .into_iter()
            .map(|record| {
                encode_groups(&GroupsRecord::Core {
                    group: d.name.clone(),
                    generation: d.generation,
                    record,
                })
            })
            .collect()
    };
    let causal = decl("c", "causal", json!([]))?;
    let total = decl("t", "total", json!([ME.0]))?;
    let mut raft = vec![encode_groups(&GroupsRecord::Decl(total.clone()))];
    raft.extend(core(&total, total_core.to_vec()));
    let mut all = vec![encode_groups(&GroupsRecord::Decl(causal.clone()))];
    all.extend(core(&causal, causal_core.to_vec()));
    all.extend(raft.iter().cloned());
    Ok((all, raft))
}

fn encode_groups(r: &GroupsRecord) -> Vec<u8> {
    rmp_serde::to_vec(r).unwrap_or_default()
}

fn msg(i: i32) -> Result<Msg, String> {
    let attributes = Event::new()
        .with("type", "g")
        .and_then(|e| e.with("seq", i))
        .map_err(|e| e.to_string())?;
    Ok(Msg {
        attributes,
        payload: vec![b'x'; 3],
    })
}

fn persisted<M>(effects: impl Iterator<Item = Effect<M>>, out: &mut Vec<Vec<u8>>) {
    out.extend(effects.filter_map(|e| match e {
        Effect::Persist { record } => Some(record),
        _ => None,
    }));
}

/// What a causal core at [`ME`] persists for three publications, and the bodies a peer
/// (broker 2) sends it meanwhile: its hello, its welcome, and a repair request for the two
/// messages it missed.
fn causal_run() -> Result<(Records, Records), String> {
    let now = Instant::now();
    let config = CausalConfig::default();
    let repair_after = config.repair_after;
    let new = |b: BrokerId| {
        CausalGroup::<Msg>::new(b, Order::Causal, config.clone(), Vec::new())
            .map_err(|e| e.to_string())
    };
    let (mut a, mut b) = (new(ME)?, new(BrokerId(2))?);
    let (mut records, mut to_b, mut to_a) = (Vec::new(), Vec::new(), Vec::new());
    let sort = |effects: Vec<Effect<Msg>>, records: &mut Vec<Vec<u8>>, out: &mut Vec<Vec<u8>>| {
        for e in effects {
            match e {
                Effect::Persist { record } => records.push(record),
                Effect::Send { body, .. } | Effect::Broadcast { body } => out.push(body),
                _ => {}
            }
        }
    };
    sort(
        std::iter::from_fn(|| a.poll_effect()).collect(),
        &mut records,
        &mut to_b,
    );
    for i in 1..=3 {
        a.publish(now, "p", i, &VClock::default(), msg(i as i32)?);
        sort(
            std::iter::from_fn(|| a.poll_effect()).collect(),
            &mut records,
            &mut to_b,
        );
    }
    // Broker 2 hears the hello and the last message only: it asks for the two before.
    let mut unused = Vec::new();
    sort(
        std::iter::from_fn(|| b.poll_effect()).collect(),
        &mut unused,
        &mut to_a,
    );
    for body in [to_b.first(), to_b.last()].into_iter().flatten() {
        b.handle_body(now, ME, body).map_err(|e| e.to_string())?;
    }
    b.handle_timeout(now + repair_after * 2);
    sort(
        std::iter::from_fn(|| b.poll_effect()).collect(),
        &mut unused,
        &mut to_a,
    );
    Ok((records, to_a))
}

/// Rebuilds a causal group's core at [`ME`] from its records, as the groups task does at
/// start, then hands it `bodies` from broker 2 (refused ones are skipped, as the task skips
/// them), a publication, and `ticks` timer rounds of 100 ms of virtual time; every effect is
/// drained. The error is the core's refusal of the records.
pub fn run_causal(records: Vec<Vec<u8>>, bodies: &[Vec<u8>], ticks: u32) -> Result<(), String> {
    let mut now = Instant::now();
    let mut c = CausalGroup::<Msg>::new(ME, Order::Causal, CausalConfig::default(), records)
        .map_err(|e| e.to_string())?;
    while c.poll_effect().is_some() {}
    c.handle_broker_up(now, BrokerId(2));
    for body in bodies {
        let _ = c.handle_body(now, BrokerId(2), body);
        while c.poll_effect().is_some() {}
    }
    c.publish(now, "p", 1, &VClock::default(), msg(0)?);
    for _ in 0..ticks {
        now += std::time::Duration::from_millis(100);
        c.handle_timeout(now);
        while c.poll_effect().is_some() {}
    }
    Ok(())
}

/// What a total-order core, the only replica of its group, persists while it elects itself
/// and commits publications, with a log short enough to be compacted twice.
fn total_run() -> Result<Vec<Vec<u8>>, String> {
    let config = TotalConfig {
        retain: 4,
        batch_max: 2,
        ..TotalConfig::default()
    };
    let tick = config.tick;
    let mut now = Instant::now();
    let mut t = TotalGroup::new(ME, &[ME], config, Vec::new(), now).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut published = 0;
    // Bounded by steps: election takes at most a few dozen ticks, then one publication a step.
    for _ in 0..200 {
        if t.sequencer() == Some(ME) && published < 12 {
            published += 1;
            t.publish(now, "p", published, msg(published as i32)?);
        }
        now += tick;
        t.handle_timeout(now);
        persisted(std::iter::from_fn(|| t.poll_effect()), &mut out);
        if published == 12 && t.pending() == 0 {
            break;
        }
    }
    if published == 0 {
        return Err("the single-replica group elected no sequencer".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample is a record of the broker's current formats (a field added to a record
    /// type without a serde default makes its JSON sample fail here, by name).
    #[test]
    fn samples_are_real_records() {
        let s = Samples::new().expect("samples build");
        assert_eq!(s.durable.len(), durable_records().len());
        for (i, r) in s.durable.iter().enumerate() {
            durable_record::decode::<DurableRecord>(r)
                .unwrap_or_else(|e| panic!("durable sample {i}: {e}"));
        }
        for s in &s.snapshots {
            crate::durable::decode_snapshot(s).expect("snapshot sample decodes");
        }
        let kinds: Vec<_> = s
            .groups
            .iter()
            .map(|r| rmp_serde::from_slice::<GroupsRecord>(r).expect("groups sample decodes"))
            .collect();
        assert!(
            kinds.len() > 10,
            "the cores persisted records: {}",
            kinds.len()
        );
    }

    /// The total-order run reached what the checkpoints target needs: compactions (snapshots
    /// of the state machine) and every publication applied, and its records rebuild it.
    #[test]
    fn raft_run_compacts_and_restores() {
        let records = total_run().expect("the run elects and commits");
        let t = TotalGroup::<Msg>::new(ME, &[ME], TotalConfig::default(), records, Instant::now())
            .expect("the records load");
        assert_eq!(t.applied_position().map(|p| p.seq), Some(12));
        assert!(t.log_len() < 12, "compacted: {} entries held", t.log_len());
        let s = Samples::new().expect("samples build");
        assert_eq!(s.causal_core.len(), 3);
        // Body variants are named in MessagePack: the repair request is among them.
        let named = |name: &[u8]| {
            s.causal_bodies
                .iter()
                .any(|b| b.windows(name.len()).any(|w| w == name))
        };
        assert!(named(b"Hello") && named(b"Welcome") && named(b"RepairRequest"));
        run_causal(s.causal_core.clone(), &s.causal_bodies, 30).expect("the causal core runs");
        for voters in [&[ME][..], &[ME, BrokerId(2), BrokerId(3)]] {
            run_total(voters, s.raft_core.clone(), 30).expect("the core restores and runs");
        }
    }

    /// The samples recovered through the real paths: every record applies, the groups' cores
    /// load, and a segment scan gives back what was framed.
    #[test]
    fn samples_recover() {
        let s = Samples::new().expect("samples build");
        let r = Recovery::new().expect("runtime");
        let tmp = tempfile::tempdir().expect("temp dir");
        for (name, records) in [("store", &s.durable), ("groups", &s.groups)] {
            let dir = tmp.path().join(name);
            std::fs::create_dir(&dir).expect("mkdir");
            let mut seg = segment_header(0, default_record_bound());
            for p in records {
                push_frame(&mut seg, 0, p);
            }
            assert_eq!(&scan_segment(0, &seg, 0), records);
            std::fs::write(dir.join(segment_file_name(0)), &seg).expect("write");
        }
        let summary = r
            .open_store(&tmp.path().join("store"))
            .expect("store opens");
        assert!(summary.clean, "{summary:?}");
        assert_eq!(summary.records, s.durable.len() as u64);
        r.open_groups(&tmp.path().join("groups"))
            .expect("groups open");
    }
}
