//! The bookkeeping of persistent publications waiting for the broker's ack: a pure structure,
//! no I/O, so that its rules are tested on their own.
//!
//! The broker acknowledges cumulatively ([`PublishAcked { through }`] covers every sequence
//! number up to `through`) and refuses single publications ([`PublishFailed { seq }`]).
//! Publications settle **in publish order**: an ack settles the oldest publications it covers;
//! a failure is recorded on its publication and settles it once every older publication has
//! settled. So an application awaiting its publications one by one sees exactly the order in
//! which it sent them, and the publications acked before the first failure are a prefix of
//! what it sent.
//!
//! [`PublishAcked { through }`]: palio_protocol::ServerFrame::PublishAcked
//! [`PublishFailed { seq }`]: palio_protocol::ServerFrame::PublishFailed

use std::collections::VecDeque;

/// Unsettled publications, oldest first, each carrying a `T` (what to tell when it settles)
/// and, once refused, the error `E` it settles with.
#[derive(Debug)]
pub(crate) struct InFlight<T, E> {
    /// Sorted by strictly increasing sequence number: [`push`](Self::push) refuses anything
    /// else, which is what makes cumulative acks and binary search valid.
    entries: VecDeque<Entry<T, E>>,
}

#[derive(Debug)]
struct Entry<T, E> {
    seq: u64,
    value: T,
    /// Set by [`InFlight::fail`] while older publications are still unsettled.
    failed: Option<E>,
}

impl<T, E> Default for InFlight<T, E> {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
        }
    }
}

impl<T, E> InFlight<T, E> {
    /// Publications not settled yet.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Records a publication sent with `seq`. Refused (the value handed back) unless `seq` is
    /// larger than every sequence number recorded and unsettled.
    pub(crate) fn push(&mut self, seq: u64, value: T) -> Result<(), T> {
        if self.entries.back().is_some_and(|e| e.seq >= seq) {
            return Err(value);
        }
        self.entries.push_back(Entry {
            seq,
            value,
            failed: None,
        });
        Ok(())
    }

    /// The broker acknowledged every publication up to `through`: settles them, and the
    /// refused ones right behind them, in order.
    pub(crate) fn ack_through(
        &mut self,
        through: u64,
        mut settle: impl FnMut(u64, T, Result<(), E>),
    ) {
        while let Some(front) = self.entries.front() {
            if front.seq > through && front.failed.is_none() {
                break;
            }
            if let Some(e) = self.entries.pop_front() {
                settle(e.seq, e.value, e.failed.map_or(Ok(()), Err));
            }
        }
    }

    /// The broker refused the publication `seq`: it settles with `error` once every older
    /// publication has settled (at once if none is left). An unknown `seq` (already settled,
    /// or never sent) is ignored.
    pub(crate) fn fail(
        &mut self,
        seq: u64,
        error: E,
        mut settle: impl FnMut(u64, T, Result<(), E>),
    ) {
        if let Ok(i) = self.entries.binary_search_by_key(&seq, |e| e.seq)
            && let Some(e) = self.entries.get_mut(i)
            && e.failed.is_none()
        {
            e.failed = Some(error);
        }
        while self.entries.front().is_some_and(|e| e.failed.is_some()) {
            if let Some(e) = self.entries.pop_front() {
                settle(e.seq, e.value, e.failed.map_or(Ok(()), Err));
            }
        }
    }

    /// The unsettled publications, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> + '_ {
        self.entries.iter().map(|e| (e.seq, &e.value))
    }

    /// Removes every unsettled publication, oldest first, with the error of those already
    /// refused (the connection is gone: the outcome of the others is unknown).
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = (u64, T, Option<E>)> + '_ {
        self.entries.drain(..).map(|e| (e.seq, e.value, e.failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Log = Vec<(u64, &'static str, Result<(), &'static str>)>;

    fn tracker(seqs: &[(u64, &'static str)]) -> InFlight<&'static str, &'static str> {
        let mut f = InFlight::default();
        for &(s, v) in seqs {
            f.push(s, v).unwrap();
        }
        f
    }

    #[test]
    fn cumulative_acks_settle_the_covered_prefix_in_order() {
        let mut f = tracker(&[(3, "a"), (4, "b"), (7, "c"), (8, "d")]);
        let mut log: Log = Vec::new();
        f.ack_through(5, |s, v, r| log.push((s, v, r)));
        assert_eq!(log, [(3, "a", Ok(())), (4, "b", Ok(()))]);
        assert_eq!(f.len(), 2);
        // An ack below everything unsettled (a repeated one) settles nothing.
        f.ack_through(4, |s, v, r| log.push((s, v, r)));
        assert_eq!(log.len(), 2);
        f.ack_through(100, |s, v, r| log.push((s, v, r)));
        assert_eq!(&log[2..], [(7, "c", Ok(())), (8, "d", Ok(()))]);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_failure_waits_for_older_publications_and_is_not_acked() {
        let mut f = tracker(&[(0, "a"), (1, "b"), (2, "c")]);
        let mut log: Log = Vec::new();
        f.fail(1, "disk full", |s, v, r| log.push((s, v, r)));
        assert!(log.is_empty(), "0 is unsettled, so 1 must wait: {log:?}");
        // `through` covers the failed publication but does not make it acked.
        f.ack_through(2, |s, v, r| log.push((s, v, r)));
        assert_eq!(
            log,
            [
                (0, "a", Ok(())),
                (1, "b", Err("disk full")),
                (2, "c", Ok(()))
            ]
        );
    }

    #[test]
    fn a_failure_at_the_front_settles_at_once_with_failures_behind_it() {
        let mut f = tracker(&[(0, "a"), (1, "b"), (2, "c")]);
        let mut log: Log = Vec::new();
        f.fail(1, "x", |s, v, r| log.push((s, v, r)));
        f.fail(0, "y", |s, v, r| log.push((s, v, r)));
        assert_eq!(log, [(0, "a", Err("y")), (1, "b", Err("x"))]);
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn unknown_or_repeated_failures_are_ignored() {
        let mut f = tracker(&[(5, "a")]);
        let mut log: Log = Vec::new();
        f.fail(4, "x", |s, v, r| log.push((s, v, r)));
        f.fail(6, "x", |s, v, r| log.push((s, v, r)));
        assert!(log.is_empty());
        assert_eq!(f.len(), 1);
        f.fail(5, "first", |s, v, r| log.push((s, v, r)));
        f.fail(5, "second", |s, v, r| log.push((s, v, r)));
        assert_eq!(log, [(5, "a", Err("first"))]);
    }

    #[test]
    fn sequence_numbers_must_increase() {
        let mut f = tracker(&[(5, "a")]);
        assert_eq!(f.push(5, "b"), Err("b"));
        assert_eq!(f.push(4, "b"), Err("b"));
        assert_eq!(f.push(6, "b"), Ok(()));
    }

    #[test]
    fn drain_hands_back_everything_unsettled_oldest_first() {
        let mut f = tracker(&[(1, "a"), (2, "b"), (3, "c")]);
        f.fail(3, "x", |_, _, _| {});
        let drained: Vec<_> = f.drain().collect();
        assert_eq!(
            drained,
            [(1, "a", None), (2, "b", None), (3, "c", Some("x"))]
        );
        assert_eq!(f.len(), 0);
    }
}
