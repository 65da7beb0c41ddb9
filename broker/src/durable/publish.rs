//! Persistent publications: de-duplication by producer sequence number (the table is in
//! `producers`), the local queues' limits, and where a message goes (the local queues and the
//! brokers of the remote queues its attributes match).
//!
//! The ack says how many durable queues the publication matched: the local ones and, through
//! the directory, those of other brokers. A publication that matched none is acked all the
//! same (its record keeps its sequence number for de-duplication) but no queue keeps it, and
//! the ack says so with a count of 0, so that a publisher can tell (`palio pub --persistent`
//! warns). A retry of a stored publication is told the count it was told then (`producers`).

use std::time::Instant;

use palio_filter::Event;
use palio_protocol::{Attributes, ErrorCode, QueueMatches};

use super::engine::{ClientId, Engine, Journal, Refusal};
use super::output::Output;
use super::record::{MessageBody, Record, decode, encode};
use crate::store::Position;
use crate::wire::MessageId;

impl Engine {
    /// Stores a persistent publication of `client` and acks it once durable. It is refused,
    /// with nothing stored, if a matching local queue cannot take it (`limits`).
    pub(crate) fn publish(
        &mut self,
        j: &mut impl Journal,
        now: Instant,
        client: ClientId,
        seq: u64,
        attributes: Attributes,
        payload: Vec<u8>,
    ) {
        let event = &attributes;
        let fail = |e: &mut Self, (code, message): Refusal| {
            e.stats.publish_failures += 1;
            e.out.push_back(Output::PublishFailed {
                client,
                seq,
                code,
                message,
            });
        };
        let Some(producer) = self.client_producers.get(&client).cloned() else {
            fail(
                self,
                (
                    ErrorCode::ProtocolViolation,
                    "name a producer before publishing persistently".into(),
                ),
            );
            return;
        };
        if let Some(why) = &self.failed {
            let why = why.clone();
            fail(self, (ErrorCode::StoreUnavailable, why));
            return;
        }
        if seq == u64::MAX {
            fail(
                self,
                (
                    ErrorCode::ProtocolViolation,
                    format!(
                        "sequence number {seq} is reserved: the largest is {}",
                        seq - 1
                    ),
                ),
            );
            return;
        }
        if let Some(p) = self
            .producers
            .get(&producer)
            .filter(|p| p.last_seq.is_some_and(|last| seq <= last))
        {
            // Stored already: told what it was told then, or if that is too old, what it
            // matches now.
            let known = p.matched(seq);
            let matched = match known {
                Some(n) => n,
                None => {
                    let local = self.local_matches(event).len();
                    let (_, remote) = self.remote_queue_matches(event);
                    count(local, remote)
                }
            };
            self.stats.duplicates += 1;
            self.when_durable(j, acked(client, seq, matched));
            return;
        }
        let queues = self.local_matches(event);
        let keys: Vec<u64> = queues.iter().map(|&(key, _)| key).collect();
        let me = self.cfg.me;
        let (dests, remote) = self.remote_queue_matches(event);
        let matched = count(queues.len(), remote);
        let id = MessageId {
            origin: me,
            n: self.next_msg,
        };
        let rec = Record::Message {
            id,
            producer: Some((producer, seq)),
            attributes,
            payload,
            local: true,
            queues,
            dests,
            at_ms: self.cfg.clock.unix_ms(now),
            matched: Some(matched),
        };
        let bytes = encode(&rec);
        let size = bytes.len() as u64;
        if let Some((limit, message)) = keys.iter().find_map(|&key| self.refusal(client, key, size))
        {
            self.limit_hit(Some(client), limit, 1);
            fail(self, (ErrorCode::LimitExceeded, message));
            return;
        }
        match self.write_encoded(j, &rec, &bytes) {
            Ok(_) => {
                if matched == 0 {
                    self.stats.unmatched += 1;
                }
                self.when_durable(j, acked(client, seq, matched));
            }
            Err(r) => fail(self, r),
        }
    }

    /// The local queues whose filter matches, in key order, each with the tag the message gets
    /// there.
    pub(super) fn local_matches(&mut self, event: &Event) -> Vec<(u64, u64)> {
        self.local
            .matches(event)
            .into_iter()
            .filter_map(|key| self.queues.get(&key).map(|q| (key, q.next_tag)))
            .collect()
    }

    /// The attributes and payload of the message stored at `pos`.
    pub(super) fn read_message(
        j: &impl Journal,
        pos: Position,
    ) -> Result<(Attributes, Vec<u8>), String> {
        let bytes = j.read(pos).map_err(|e| e.to_string())?;
        match decode::<MessageBody>(&bytes) {
            Ok(body) => Ok(body.into_parts()),
            Err(e) => match decode::<Record>(&bytes) {
                Ok(_) => Err(format!("the record at {pos:?} is not a message")),
                Err(_) => Err(e.to_string()),
            },
        }
    }
}

/// The ack of publication `seq` of `client`, which matched `queues` queues.
fn acked(client: ClientId, seq: u64, queues: u32) -> Output {
    Output::Acked {
        client,
        through: seq,
        matched: vec![QueueMatches {
            from: seq,
            through: seq,
            queues,
        }],
    }
}

/// The queues a publication matched: `local` here and `remote` at other brokers.
fn count(local: usize, remote: usize) -> u32 {
    u32::try_from(local.saturating_add(remote)).unwrap_or(u32::MAX)
}
