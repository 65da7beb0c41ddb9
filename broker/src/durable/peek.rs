//! Peeking at a queue: its next pending messages, read from the log and shown without being
//! delivered. Nothing is written and nothing changes: no delivery count, no consumer's share,
//! no ack wait.
//!
//! The messages shown are those a consumer would get next, in queue order: ready ones and
//! those waiting after a nak, not those in flight to a consumer, nor those stored but not yet
//! durable. As for delivery, a message the client's principal may not receive is not shown
//! (it stays in the queue). Permissions are those of every queue operation: the queue's owner
//! or an admin.

use palio_protocol::{ErrorCode, MAX_FETCH_BATCH, PeekedMessage};

use super::engine::{ClientId, Engine, Journal, Refusal};
use super::output::Answer;
use super::queue::State;

impl Engine {
    /// Answers with up to `max` of the next pending messages of queue `name` (`NAME` or
    /// `NAME.dlq`). A `max` of 0 or above [`MAX_FETCH_BATCH`] is refused.
    pub(crate) fn queue_peek(
        &mut self,
        j: &impl Journal,
        client: ClientId,
        request: u64,
        name: &str,
        max: u32,
    ) {
        match self.try_peek(j, client, name, max) {
            Ok(messages) => self.answer(client, request, Answer::Peeked(messages)),
            Err(r) => self.refuse(client, request, r),
        }
    }

    fn try_peek(
        &mut self,
        j: &impl Journal,
        client: ClientId,
        name: &str,
        max: u32,
    ) -> Result<Vec<PeekedMessage>, Refusal> {
        if max == 0 {
            return Err((ErrorCode::ProtocolViolation, "a peek of 0 messages".into()));
        }
        if max > MAX_FETCH_BATCH {
            return Err((
                ErrorCode::LimitExceeded,
                format!("a peek of {max} messages is above the limit of {MAX_FETCH_BATCH}"),
            ));
        }
        let lane = self.resolve(name)?;
        self.check_queue(client, lane.queue)?;
        let principal = self.principal(client).cloned();
        let Some(l) = self.lane(lane) else {
            return Ok(Vec::new());
        };
        let mut messages = Vec::new();
        let pending = l
            .entries
            .values()
            .filter(|e| matches!(e.state, State::Ready | State::Delayed(_)));
        for e in pending {
            if messages.len() == max as usize {
                break;
            }
            let (attributes, payload) = match Self::read_message(j, e.pos) {
                Ok(body) => body,
                Err(why) => {
                    // Left for delivery to find and drop (it logs and counts it).
                    tracing::warn!(?lane, error = %why, "a stored message cannot be read; not shown");
                    continue;
                }
            };
            if principal
                .as_ref()
                .is_some_and(|p| !p.may_receive(&attributes))
            {
                continue;
            }
            messages.push(PeekedMessage {
                delivery_count: e.count,
                attributes,
                payload,
            });
        }
        Ok(messages)
    }
}
