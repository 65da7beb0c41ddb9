//! Emptying a lane: purging a queue (`NAME` or `NAME.dlq`), and removing a dead-letter queue.
//!
//! A purge removes every message of the lane, pending and unacked alike, with one
//! [`Record::Purged`], so that it survives a restart; the lane's consumers stay attached and
//! get whatever arrives later. An ack of a purged message is refused like that of any message
//! no longer in flight (`unknown_id`). Removing `NAME.dlq` is a purge of the dead-letter lane:
//! a dead-letter queue lives as long as its queue (it is listed, empty, and later dead letters
//! go to it again), so removing it empties it.
//!
//! Permissions are those of every queue operation: the queue's owner or an admin.

use palio_protocol::DEAD_LETTER_SUFFIX;

use super::engine::{ClientId, Engine, Journal, Refusal};
use super::output::Answer;
use super::record::{LaneId, Record};

impl Engine {
    /// Removes every message of queue `name` (`NAME` or `NAME.dlq`); answered with how many
    /// once durable.
    pub(crate) fn queue_purge(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
    ) {
        match self.try_purge(j, client, name) {
            Ok(messages) => {
                self.answer_when_durable(j, client, request, Answer::Purged { messages })
            }
            Err(r) => self.refuse(client, request, r),
        }
    }

    /// Removes the dead-letter queue `name` (`NAME.dlq`): empties it (see the module docs);
    /// answered with `Done` once durable.
    pub(super) fn dead_letters_remove(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
    ) {
        debug_assert!(name.ends_with(DEAD_LETTER_SUFFIX));
        match self.try_purge(j, client, name) {
            Ok(_) => self.answer_when_durable(j, client, request, Answer::Done),
            Err(r) => self.refuse(client, request, r),
        }
    }

    /// Checks `client` may use queue `name` and purges its lane; returns how many messages
    /// left it.
    fn try_purge(
        &mut self,
        j: &mut impl Journal,
        client: ClientId,
        name: &str,
    ) -> Result<u64, Refusal> {
        let lane = self.resolve(name)?;
        self.check_queue(client, lane.queue)?;
        let messages = self.lane(lane).map_or(0, |l| l.entries.len() as u64);
        if messages > 0 {
            self.write(j, Record::Purged { lane })?;
        }
        Ok(messages)
    }

    /// A [`Record::Purged`] (live or in recovery): every entry of `lane` leaves it, released
    /// from the consumer it was in flight to.
    pub(super) fn purged(&mut self, lane: LaneId) {
        let tags: Vec<u64> = self
            .lane(lane)
            .map(|l| l.entries.keys().copied().collect())
            .unwrap_or_default();
        for tag in tags {
            self.drop_entry(lane, tag);
        }
    }
}
