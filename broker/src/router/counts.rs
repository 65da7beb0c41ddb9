//! The router's per-notification metrics, counted locally and added to the shared counters
//! once per command: a notification costs no atomic operation and no clock read of its own
//! beyond the one that ends its routing.

use std::time::Instant;

use prometheus::local::LocalHistogram;

use crate::metrics::Metrics;

/// Counts since the last [`flush`](Counts::flush).
pub(super) struct Counts {
    pub(super) published: u64,
    pub(super) received: u64,
    pub(super) forwarded: u64,
    pub(super) delivered: u64,
    /// `palio_matching_duration_seconds`, observed locally.
    matching: LocalHistogram,
    /// When the routing of the previous notification of the command ended (or the command
    /// began): the next one's routing time is measured from there, one clock read each.
    since: Instant,
}

impl Counts {
    pub(super) fn new(metrics: &Metrics) -> Self {
        Self {
            published: 0,
            received: 0,
            forwarded: 0,
            delivered: 0,
            matching: metrics.matching_seconds.local(),
            since: Instant::now(),
        }
    }

    /// A command's routing begins now.
    pub(super) fn start(&mut self) {
        self.since = Instant::now();
    }

    /// A notification was routed: the time since the previous one (or the start) is its
    /// routing time.
    pub(super) fn routed(&mut self) {
        let now = Instant::now();
        self.matching
            .observe(now.saturating_duration_since(self.since).as_secs_f64());
        self.since = now;
    }

    /// Adds the counts to `metrics` and starts again from zero.
    pub(super) fn flush(&mut self, metrics: &Metrics) {
        for (n, counter) in [
            (&mut self.published, &metrics.published),
            (&mut self.received, &metrics.received),
            (&mut self.forwarded, &metrics.forwarded),
            (&mut self.delivered, &metrics.delivered),
        ] {
            if *n > 0 {
                counter.inc_by(std::mem::take(n));
            }
        }
        self.matching.flush();
    }
}
