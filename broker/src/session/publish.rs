//! Publications from a client: batched, checked against the principal's publish permission,
//! and handed to the router (and the persist task for persistent ones) under a credit of the
//! connection's pacer.

use futures_util::{FutureExt, StreamExt};
use palio_filter::Event;
use palio_protocol::{ClientFrame, ErrorCode, ServerFrame};

use super::hello::Reader;
use super::requests::{Next, Session};
use crate::pacer::BATCH;
use crate::persist::{PersistCommand, Publication};
use crate::router::{Command, Refusal};

impl Session<'_> {
    /// Routes `first` and the publications that arrived with it as one paced batch; persistent
    /// ones also go to the persist task. Returns how many were taken and the frame read ahead.
    pub(super) async fn publish_batch(
        &mut self,
        first: ClientFrame,
        reader: &mut Reader,
    ) -> Result<(u64, Option<Next>), Refusal> {
        // Wait for room before reading on: this is where a publisher is slowed.
        let credit = self.pacer.ready().await;
        let mut live: Vec<(Event, Vec<u8>)> = Vec::with_capacity(8);
        let mut stored: Vec<Publication> = Vec::new();
        let mut ahead = None;
        let mut next = Some(first);
        let mut refused = 0u64;
        let mut taken = 0;
        while let Some(frame) = next.take() {
            match frame {
                ClientFrame::Publish { attributes, .. }
                    if !self.principal.may_publish(&attributes) =>
                {
                    refused += 1;
                }
                ClientFrame::PublishPersistent {
                    seq, attributes, ..
                } if !self.principal.may_publish(&attributes) => {
                    let message = self.publish_denied(1);
                    self.reply(ServerFrame::PublishFailed {
                        seq,
                        code: ErrorCode::PermissionDenied,
                        message,
                    })
                    .await?;
                }
                ClientFrame::Publish {
                    attributes,
                    payload,
                } => live.push((attributes, payload)),
                ClientFrame::PublishPersistent {
                    seq,
                    attributes,
                    payload,
                } => {
                    live.push((attributes.clone(), payload.clone()));
                    stored.push(Publication {
                        seq,
                        event: attributes,
                        payload,
                    });
                }
                // Only publications are put in a batch (see the loop below).
                _ => {}
            }
            taken += 1;
            if taken >= BATCH {
                break;
            }
            match reader.next().now_or_never() {
                Some(Some(Ok(
                    f @ (ClientFrame::Publish { .. } | ClientFrame::PublishPersistent { .. }),
                ))) => next = Some(f),
                Some(other) => ahead = Some(other),
                None => {}
            }
        }
        let count = live.len() as u64;
        if refused > 0 {
            let message = self.publish_denied(refused);
            self.reply(ServerFrame::PublishRefused {
                count: refused,
                code: ErrorCode::PermissionDenied,
                message,
            })
            .await?;
        }
        if !live.is_empty() {
            self.shared
                .router
                .send(Command::Publish {
                    items: live,
                    credit,
                    lane: self.lane,
                })
                .await?;
        }
        if !stored.is_empty() {
            self.shared
                .persist
                .send(PersistCommand::Publish {
                    client: self.client,
                    items: stored,
                })
                .await?;
        }
        Ok((count, ahead))
    }
}
