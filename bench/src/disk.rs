//! The disk's price of durability: how long an append followed by `fdatasync` takes.
//!
//! Group commit is only worth as much as the fsync it amortises, so the persistence report
//! states this figure for the machine it ran on. The probe appends `block` bytes to a fresh
//! file in the given directory and calls [`std::fs::File::sync_data`] (fdatasync on Linux),
//! `count` times, timing each pair; the file is removed afterwards.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

/// Timings of `count` appends of `block` bytes, each followed by fdatasync.
#[derive(Debug, Clone, Serialize)]
pub struct FsyncReport {
    /// Bytes appended before each sync.
    pub block_bytes: usize,
    /// Appends (and syncs) timed.
    pub count: usize,
    /// Median microseconds per append + fdatasync.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Syncs per second at the median.
    pub syncs_per_s_at_median: f64,
}

/// Runs the probe in `dir`.
pub fn probe(dir: &Path, block: usize, count: usize) -> anyhow::Result<FsyncReport> {
    anyhow::ensure!(count > 0, "count must be at least 1");
    let file_dir = tempfile::tempdir_in(dir)?;
    let mut file = std::fs::File::create(file_dir.path().join("probe"))?;
    let data = vec![0xa5u8; block];
    // One untimed round: creating the file's first extent is not what is measured.
    file.write_all(&data)?;
    file.sync_all()?;
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(&data)?;
        file.sync_data()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    let p50 = at(0.5);
    Ok(FsyncReport {
        block_bytes: block,
        count,
        p50_us: p50,
        p90_us: at(0.9),
        p99_us: at(0.99),
        syncs_per_s_at_median: 1e6 / p50.max(1e-3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let r = probe(dir.path(), 4096, 5).unwrap();
        assert!(
            r.p50_us > 0.0 && r.p50_us <= r.p90_us && r.p90_us <= r.p99_us,
            "{r:?}"
        );
        assert_eq!(r.count, 5);
    }
}
