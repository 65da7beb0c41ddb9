//! The exactly-once check: which `(producer, seq)` messages the consumer has seen.

use anyhow::bail;

/// Records consumed messages and fails on the first one that is a duplicate or was never
/// published; [`Tally::finish`] fails if any published message is missing.
#[derive(Debug, Clone)]
pub struct Tally {
    /// `seen[p][s]`: message `s` of producer `p` was consumed.
    seen: Vec<Vec<bool>>,
    /// Messages recorded.
    consumed: u64,
}

impl Tally {
    /// Expects `per_producer[p]` messages, numbered from 0, from each producer `p`.
    pub fn new(per_producer: &[u64]) -> Self {
        Tally {
            seen: per_producer
                .iter()
                .map(|&n| vec![false; usize::try_from(n).unwrap_or(usize::MAX)])
                .collect(),
            consumed: 0,
        }
    }

    /// Records message `seq` of `producer`.
    pub fn record(&mut self, producer: u64, seq: u64) -> anyhow::Result<()> {
        let slot = usize::try_from(producer)
            .ok()
            .and_then(|p| self.seen.get_mut(p))
            .and_then(|s| s.get_mut(usize::try_from(seq).ok()?));
        let Some(slot) = slot else {
            bail!("consumed message {producer}:{seq}, which was never published");
        };
        if *slot {
            bail!("consumed message {producer}:{seq} twice");
        }
        *slot = true;
        self.consumed += 1;
        Ok(())
    }

    /// Messages recorded so far.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Messages expected in all.
    pub fn expected(&self) -> u64 {
        self.seen.iter().map(|s| s.len() as u64).sum()
    }

    /// Succeeds if every expected message was recorded; otherwise names a few missing ones.
    pub fn finish(&self) -> anyhow::Result<u64> {
        let missing: Vec<String> = self
            .seen
            .iter()
            .enumerate()
            .flat_map(|(p, s)| {
                s.iter()
                    .enumerate()
                    .filter(|(_, seen)| !**seen)
                    .map(move |(i, _)| format!("{p}:{i}"))
            })
            .take(5)
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} of {} messages never consumed (first: {})",
                self.expected() - self.consumed,
                self.expected(),
                missing.join(", ")
            );
        }
        Ok(self.consumed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_once_passes() {
        let mut t = Tally::new(&[2, 1]);
        t.record(0, 1).unwrap();
        t.record(1, 0).unwrap();
        t.record(0, 0).unwrap();
        assert_eq!(t.finish().unwrap(), 3);
    }

    #[test]
    fn a_duplicate_fails_at_once() {
        let mut t = Tally::new(&[2]);
        t.record(0, 1).unwrap();
        let e = t.record(0, 1).unwrap_err().to_string();
        assert!(e.contains("0:1 twice"), "{e}");
    }

    #[test]
    fn an_unpublished_message_fails() {
        let mut t = Tally::new(&[2]);
        assert!(t.record(0, 2).is_err());
        assert!(t.record(1, 0).is_err());
    }

    #[test]
    fn a_missing_message_fails_the_finish() {
        let mut t = Tally::new(&[3]);
        t.record(0, 0).unwrap();
        t.record(0, 2).unwrap();
        let e = t.finish().unwrap_err().to_string();
        assert!(e.contains("1 of 3") && e.contains("0:1"), "{e}");
    }
}
