//! Timing on a shared machine: wall-clock time and the calling thread's CPU time, side by side.
//!
//! The benchmark machines are shared: when other processes compete for the cores, the
//! wall-clock time of a pass includes the time the thread spent waiting for a core, and
//! single runs vary by tens of percent. The thread's own CPU time (Linux's
//! `/proc/thread-self/schedstat`, first field: nanoseconds spent running) does not count the
//! waiting, so it is the steadier figure for comparing two builds. It still includes the
//! slowdown from sharing caches and memory bandwidth, so it is not a noise-free number either:
//! compare medians of interleaved runs. Where the file is unreadable (not Linux), the CPU
//! figures are reported as `None`.

use std::time::Instant;

/// The calling thread's CPU time in seconds, if the platform reports it.
///
/// The kernel brings a running thread's total up to date only at scheduler ticks and context
/// switches, so a plain read may be a tick (a few milliseconds) stale; yielding first makes
/// the scheduler account the time run so far.
pub fn thread_cpu_secs() -> Option<f64> {
    std::thread::yield_now();
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns as f64 * 1e-9)
}

/// The calling process's CPU time (user + system, all threads) in seconds, if the platform
/// reports it: Linux's `/proc/self/stat`, in clock ticks of 1/100 s (the kernel's fixed
/// `USER_HZ` on x86 and arm64), so the resolution is 10 ms.
pub fn process_cpu_secs() -> Option<f64> {
    proc_stat_cpu_secs(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Process `pid`'s CPU time (user + system, all threads) in seconds, as
/// [`process_cpu_secs`] reads its own.
pub fn pid_cpu_secs(pid: u32) -> Option<f64> {
    proc_stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system time from a `/proc/<pid>/stat` line, in seconds.
pub fn proc_stat_cpu_secs(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after
    // its closing parenthesis, where field 3 (the state) comes first.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// A started measurement of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch {
    wall: Instant,
    cpu: Option<f64>,
}

/// Elapsed seconds on both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Elapsed {
    /// Wall-clock seconds.
    pub wall: f64,
    /// The thread's CPU seconds, if available.
    pub cpu: Option<f64>,
}

impl Elapsed {
    /// No time, on both clocks.
    pub const ZERO: Elapsed = Elapsed {
        wall: 0.0,
        cpu: Some(0.0),
    };
}

impl std::ops::AddAssign for Elapsed {
    /// Adds up two measurements (the CPU time is known only if it is for both).
    fn add_assign(&mut self, other: Elapsed) {
        self.wall += other.wall;
        self.cpu = self.cpu.zip(other.cpu).map(|(a, b)| a + b);
    }
}

impl Stopwatch {
    /// Starts measuring now.
    pub fn start() -> Self {
        Self {
            cpu: thread_cpu_secs(),
            wall: Instant::now(),
        }
    }

    /// The time since [`Stopwatch::start`].
    pub fn elapsed(&self) -> Elapsed {
        let wall = self.wall.elapsed().as_secs_f64();
        let cpu = self.cpu.zip(thread_cpu_secs()).map(|(a, b)| b - a);
        Elapsed { wall, cpu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_is_user_plus_system_ticks() {
        let stat = "4242 (palio bench) S 1 4242 4242 0 -1 4194560 120 0 0 0 250 37 0 0 20 0 3 0 100 1000 200";
        assert_eq!(proc_stat_cpu_secs(stat), Some(2.87));
        assert_eq!(proc_stat_cpu_secs("4242 (x) S 1"), None);
    }

    #[test]
    fn cpu_time_advances_with_work_and_stays_below_wall_time() {
        let watch = Stopwatch::start();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let e = watch.elapsed();
        assert!(e.wall > 0.0);
        if let Some(cpu) = e.cpu {
            assert!(cpu > 0.0, "work took CPU time");
            // schedstat and Instant are different clocks: allow a little slack.
            assert!(cpu <= e.wall * 1.05 + 1e-3, "cpu {cpu} wall {}", e.wall);
        }
    }
}
