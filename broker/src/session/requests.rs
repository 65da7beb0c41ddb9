//! The request loop of a client session: reads the control stream in order; publications go
//! to `publish`, every other request to `dispatch`.
//!
//! Publications are handed to the router in batches: whatever has already arrived, up to
//! [`BATCH`](crate::pacer::BATCH) frames, under one credit of the connection's
//! [`Pacer`](crate::pacer::Pacer). Before taking a credit the session waits for every queue its
//! earlier publications filled to drain; meanwhile it reads nothing, so QUIC flow control slows
//! the publisher. The session's publications all travel on one lane of every peer link, given
//! when the session starts (`Context::next_lane`), so that they stay in order end to end.
//! Answers and other control frames go through the connection's control outbox; a client that
//! does not read them holds up its own session, nobody else's.
//!
//! Files: this one holds the loop and the session's state; `publish` the batches of
//! publications, `dispatch` the other requests, `filters` subscriptions and advertisements.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use palio_protocol::{ClientFrame, ErrorCode, FrameError, ServerFrame};
use tokio::sync::watch;

use super::hello::Reader;
use crate::auth::gate::Access;
use crate::auth::{Credential, Principal};
use crate::context::Context;
use crate::outbox::{Outbox, Pushed};
use crate::pacer::Pacer;
use crate::router::{ClientId, Command, Refusal};

/// A frame read from the control stream (or the stream's end or error).
pub(super) type Next = Option<Result<ClientFrame, FrameError>>;

/// Reads and handles requests until the stream ends or the connection must be closed.
pub(super) async fn run(
    shared: &Context,
    client: ClientId,
    mut reader: Reader,
    control: Outbox<ServerFrame>,
    (credential, principal, mut access): (Credential, Arc<Principal>, watch::Receiver<Arc<Access>>),
) -> Result<(), Refusal> {
    let mut session = Session {
        shared,
        client,
        control,
        pacer: Pacer::new(shared.metrics.ingress_waits.with_label_values(&["client"])),
        lane: shared.next_lane(),
        credential,
        principal,
        subscriptions: HashMap::new(),
        logged: HashSet::new(),
    };
    let mut published = 0u64;
    // A frame read ahead while batching publications, handled next.
    let mut lookahead: Option<Next> = None;
    loop {
        let next = match lookahead.take() {
            Some(n) => n,
            None => tokio::select! {
                n = reader.next() => n,
                Ok(()) = access.changed() => {
                    let rules = access.borrow_and_update().clone();
                    session.reauthenticate(&rules.auth).await?;
                    continue;
                }
            },
        };
        let frame = match next {
            None => return Ok(()),
            Some(Err(e)) => {
                let code = e.code();
                if code == ErrorCode::Closed {
                    return Err((code, e.to_string()));
                }
                return Err(session.close_with(code, e.to_string()).await);
            }
            Some(Ok(f)) => f,
        };
        match frame {
            ClientFrame::Hello { .. } => {
                return Err(session
                    .close_with(ErrorCode::ProtocolViolation, "a second hello".into())
                    .await);
            }
            f @ (ClientFrame::Publish { .. } | ClientFrame::PublishPersistent { .. }) => {
                let (count, ahead) = session.publish_batch(f, &mut reader).await?;
                published += count;
                lookahead = ahead;
            }
            ClientFrame::Flush { request } => {
                shared.router.call(|reply| Command::Flush { reply }).await?;
                session
                    .reply(ServerFrame::Flushed { request, published })
                    .await?;
            }
            other => session.handle(other).await?,
        }
    }
}

/// What the request loop needs besides the reader.
pub(super) struct Session<'a> {
    pub(super) shared: &'a Context,
    pub(super) client: ClientId,
    pub(super) control: Outbox<ServerFrame>,
    pub(super) pacer: Arc<Pacer>,
    /// The lane its publications travel on between brokers.
    pub(super) lane: u8,
    /// How the client authenticated, to authenticate it again after a reload.
    pub(super) credential: Credential,
    /// Who it is, with the permissions in force.
    pub(super) principal: Arc<Principal>,
    /// Its live subscriptions' filters as it wrote them (the router has them narrowed to the
    /// principal's permission), to narrow them again when the permission changes.
    pub(super) subscriptions: HashMap<u64, String>,
    /// The denials already logged on this connection (each kind is logged once).
    pub(super) logged: HashSet<&'static str>,
}

impl Session<'_> {
    /// Queues an answer; if the client lets its control stream back up, waits until it reads.
    pub(super) async fn reply(&self, frame: ServerFrame) -> Result<(), Refusal> {
        let size = crate::frame_size::control_frame_size(&frame);
        match self.control.push(frame, size) {
            Pushed::Room => Ok(()),
            Pushed::Full => {
                self.control.gate().opened().await;
                Ok(())
            }
            Pushed::Closed => Err((ErrorCode::Closed, "control stream closed".to_owned())),
        }
    }

    /// Tells the client why its connection is being closed (best effort), and returns the
    /// refusal to close it with.
    pub(super) async fn close_with(&self, code: ErrorCode, message: String) -> Refusal {
        let frame = ServerFrame::Error {
            request: None,
            code,
            message: message.clone(),
        };
        self.control.push(frame, 64 + message.len());
        // Give the writer a moment to put it on the stream before the connection closes.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        (code, message)
    }
}

/// The frame answering `request`: `ok`'s frame, or an error frame naming the request.
pub(super) fn answer_or_error<T>(
    request: u64,
    answer: Result<T, Refusal>,
    ok: impl FnOnce(T) -> ServerFrame,
) -> ServerFrame {
    match answer {
        Ok(v) => ok(v),
        Err((code, message)) => ServerFrame::Error {
            request: Some(request),
            code,
            message,
        },
    }
}
