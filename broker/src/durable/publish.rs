//! Persistent publications: producers, de-duplication by producer sequence number, and where a
//! message goes (the local queues and the brokers of the remote queues its attributes match).

use palio_filter::Event;
use palio_protocol::{Attributes, ErrorCode};

use super::engine::{ClientId, Engine, Journal, Refusal};
use super::output::{Answer, Output};
use super::record::{Record, decode};
use crate::store::Position;
use crate::wire::MessageId;

impl Engine {
    /// Names the producer of `client`'s persistent publications.
    pub(crate) fn producer(
        &mut self,
        j: &impl Journal,
        client: ClientId,
        request: u64,
        producer: String,
    ) {
        if producer.is_empty() || producer.len() > 128 {
            self.refuse(
                client,
                request,
                (
                    ErrorCode::ProtocolViolation,
                    "a producer id has 1 to 128 bytes".into(),
                ),
            );
            return;
        }
        let next_seq = self.producers.get(&producer).map_or(0, |s| s + 1);
        self.client_producers.insert(client, producer);
        // `next_seq` may count publications not on disk yet: answer once they are, so that a
        // producer resuming from it never skips one a crash could still lose.
        self.answer_when_durable(j, client, request, Answer::ProducerReady { next_seq });
    }

    /// Stores a persistent publication of `client` and acks it once durable.
    pub(crate) fn publish(
        &mut self,
        j: &mut impl Journal,
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
        if self
            .producers
            .get(&producer)
            .is_some_and(|last| seq <= *last)
        {
            self.stats.duplicates += 1;
            self.when_durable(
                j,
                Output::Acked {
                    client,
                    through: seq,
                },
            );
            return;
        }
        let queues = self.local_matches(event);
        let me = self.cfg.me;
        let dests = self.remote_matches(event);
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
        };
        match self.write(j, rec) {
            Ok(_) => self.when_durable(
                j,
                Output::Acked {
                    client,
                    through: seq,
                },
            ),
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

    /// The body of the message stored at `pos`.
    pub(super) fn read_message(
        j: &impl Journal,
        pos: Position,
    ) -> Result<(MessageId, Attributes, Vec<u8>), String> {
        let bytes = j.read(pos).map_err(|e| e.to_string())?;
        match decode::<Record>(&bytes) {
            Ok(Record::Message {
                id,
                attributes,
                payload,
                ..
            }) => Ok((id, attributes, payload)),
            Ok(_) => Err(format!("the record at {pos:?} is not a message")),
            Err(e) => Err(e.to_string()),
        }
    }
}
