//! The request loop of a client session: reads the control stream in order and hands each
//! frame to the router or the persist task.
//!
//! Publications are handed to the router in batches: whatever has already arrived, up to
//! [`BATCH`](crate::pacer::BATCH) frames, under one credit of the connection's
//! [`Pacer`](crate::pacer::Pacer). Before taking a credit the session waits for every queue its
//! earlier publications filled to drain; meanwhile it reads nothing, so QUIC flow control slows
//! the publisher. The session's publications all travel on one lane of every peer link, given
//! when the session starts (`Context::next_lane`), so that they stay in order end to end.
//! Answers and other control frames go through the connection's control outbox;
//! a client that does not read them holds up its own session, nobody else's.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use palio_filter::{CostBudget, Event};
use palio_protocol::{ClientFrame, ErrorCode, FrameError, ServerFrame};
use palio_topology::SharedFilter;
use tokio::sync::{oneshot, watch};

use super::hello::Reader;
use crate::auth::gate::Access;
use crate::auth::{Credential, Principal};
use crate::context::Context;
use crate::groups::GroupCommand;
use crate::outbox::{Outbox, Pushed};
use crate::pacer::{BATCH, Pacer};
use crate::persist::{PersistCommand, Publication};
use crate::router::{ClientId, Command, Refusal};

/// A frame read from the control stream (or the stream's end or error).
type Next = Option<Result<ClientFrame, FrameError>>;

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
            ClientFrame::Subscribe { request, filter } => {
                let answer = match session.compile(&filter, true) {
                    Ok(narrowed) => {
                        shared
                            .router
                            .call(|reply| Command::Subscribe {
                                client,
                                filter: narrowed,
                                reply,
                            })
                            .await?
                    }
                    Err(refusal) => Err(refusal),
                };
                if let Ok(id) = &answer {
                    session.subscriptions.insert(*id, filter);
                }
                session
                    .reply(answer_or_error(request, answer, |subscription| {
                        ServerFrame::Subscribed {
                            request,
                            subscription,
                        }
                    }))
                    .await?;
            }
            ClientFrame::Unsubscribe {
                request,
                subscription,
            } => {
                let answer = shared
                    .router
                    .call(|reply| Command::Unsubscribe {
                        client,
                        subscription,
                        reply,
                    })
                    .await?;
                if answer.is_ok() {
                    session.subscriptions.remove(&subscription);
                }
                session
                    .reply(answer_or_error(request, answer, |()| ServerFrame::Done {
                        request,
                    }))
                    .await?;
            }
            ClientFrame::Advertise { request, filter } => {
                let answer = session
                    .with_filter(&filter, |filter, reply| Command::Advertise {
                        client,
                        filter,
                        reply,
                    })
                    .await?;
                session
                    .reply(answer_or_error(request, answer, |advertisement| {
                        ServerFrame::Advertised {
                            request,
                            advertisement,
                        }
                    }))
                    .await?;
            }
            ClientFrame::Unadvertise {
                request,
                advertisement,
            } => {
                let answer = shared
                    .router
                    .call(|reply| Command::Unadvertise {
                        client,
                        advertisement,
                        reply,
                    })
                    .await?;
                session
                    .reply(answer_or_error(request, answer, |()| ServerFrame::Done {
                        request,
                    }))
                    .await?;
            }
            ClientFrame::Request {
                request,
                timeout_ms,
                attributes,
                payload,
            } => {
                if session.principal.may_publish(&attributes) {
                    shared
                        .router
                        .send(Command::Request {
                            client,
                            request,
                            timeout: std::time::Duration::from_millis(timeout_ms),
                            attributes,
                            payload,
                        })
                        .await?;
                } else {
                    let message = session.publish_denied(1);
                    session
                        .reply(ServerFrame::Error {
                            request: Some(request),
                            code: ErrorCode::PermissionDenied,
                            message,
                        })
                        .await?;
                }
            }
            ClientFrame::Reply {
                reply_to,
                attributes,
                payload,
            } => {
                if session.principal.may_publish(&attributes) {
                    shared
                        .router
                        .send(Command::Reply {
                            to: reply_to,
                            attributes,
                            payload,
                        })
                        .await?;
                } else {
                    let message = session.publish_denied(1);
                    session
                        .reply(ServerFrame::PublishRefused {
                            count: 1,
                            code: ErrorCode::PermissionDenied,
                            message,
                        })
                        .await?;
                }
            }
            ClientFrame::Flush { request } => {
                shared.router.call(|reply| Command::Flush { reply }).await?;
                session
                    .reply(ServerFrame::Flushed { request, published })
                    .await?;
            }
            frame @ (ClientFrame::GroupCreate { .. }
            | ClientFrame::GroupRemove { .. }
            | ClientFrame::GroupList { .. }
            | ClientFrame::GroupInfo { .. }
            | ClientFrame::GroupJoin { .. }
            | ClientFrame::GroupLeave { .. }
            | ClientFrame::GroupPublish { .. }) => {
                shared
                    .groups
                    .send(GroupCommand::Request { client, frame })
                    .await?;
            }
            ClientFrame::QueueAdd {
                request,
                name,
                filter,
                options,
            } => {
                // A queue keeps what its owner may receive, like a subscription.
                match session.compile(&filter, true) {
                    Ok(narrowed) => {
                        let frame = ClientFrame::QueueAdd {
                            request,
                            name,
                            filter: narrowed.source().to_owned(),
                            options,
                        };
                        shared
                            .persist
                            .send(PersistCommand::Request { client, frame })
                            .await?;
                    }
                    Err((code, message)) => {
                        session
                            .reply(ServerFrame::Error {
                                request: Some(request),
                                code,
                                message,
                            })
                            .await?;
                    }
                }
            }
            frame @ (ClientFrame::Producer { .. }
            | ClientFrame::QueueRemove { .. }
            | ClientFrame::QueueList { .. }
            | ClientFrame::QueueInfo { .. }
            | ClientFrame::QueuePurge { .. }
            | ClientFrame::QueuePeek { .. }
            | ClientFrame::Ack { .. }
            | ClientFrame::Nak { .. }
            | ClientFrame::StopConsume { .. }
            | ClientFrame::Consume { .. }
            | ClientFrame::Fetch { .. }) => {
                // Group publications of this connection are keyed on its producer too.
                if let ClientFrame::Producer { producer, .. } = &frame {
                    let producer = producer.clone();
                    shared
                        .groups
                        .send(GroupCommand::Producer { client, producer })
                        .await?;
                }
                shared
                    .persist
                    .send(PersistCommand::Request { client, frame })
                    .await?;
            }
            ClientFrame::Ping { request } => {
                session.reply(ServerFrame::Pong { request }).await?;
            }
            ClientFrame::ServerInfo { request } => {
                let answer = crate::introspect::server_info(shared).await;
                session
                    .reply(answer_or_error(request, answer, |info| {
                        ServerFrame::ServerInfo {
                            request,
                            info: Box::new(info),
                        }
                    }))
                    .await?;
            }
            ClientFrame::Routes { request } => {
                let answer = session.routes(request).await;
                session
                    .reply(answer_or_error(request, answer, |f| f))
                    .await?;
            }
            _ => {
                return Err(session
                    .close_with(ErrorCode::ProtocolViolation, "unknown frame".into())
                    .await);
            }
        }
    }
}

/// What the request loop needs besides the reader.
pub(super) struct Session<'a> {
    pub(super) shared: &'a Context,
    pub(super) client: ClientId,
    pub(super) control: Outbox<ServerFrame>,
    pacer: Arc<Pacer>,
    /// The lane its publications travel on between brokers.
    lane: u8,
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
    /// Compiles a client's filter, narrowed to what its principal may receive if `narrow`
    /// (subscriptions and queues), and checks its evaluation cost: a filter that does not
    /// compile is `invalid_filter`, one over the cost budget `limit_exceeded`
    /// (`palio_limits_hit_total{limit="filter_cost"}`).
    fn compile(&self, source: &str, narrow: bool) -> Result<SharedFilter, Refusal> {
        let filter = if narrow {
            self.principal.narrow(source)?
        } else {
            SharedFilter::parse(source).map_err(|e| (ErrorCode::InvalidFilter, e.to_string()))?
        };
        if let Err(e) = filter.filter().check_cost(&CostBudget::default()) {
            self.shared
                .metrics
                .limits_hit
                .with_label_values(&["filter_cost"])
                .inc();
            return Err((ErrorCode::LimitExceeded, e.to_string()));
        }
        Ok(filter)
    }

    /// Compiles a client's filter ([`compile`](Self::compile), not narrowed) and asks the
    /// router the command `make` builds with it; a refused filter is answered without asking.
    async fn with_filter(
        &self,
        source: &str,
        make: impl FnOnce(SharedFilter, oneshot::Sender<Result<u64, Refusal>>) -> Command,
    ) -> Result<Result<u64, Refusal>, Refusal> {
        match self.compile(source, false) {
            Err(refusal) => Ok(Err(refusal)),
            Ok(filter) => self.shared.router.call(|reply| make(filter, reply)).await,
        }
    }

    /// The answer to a `Routes` request: as much as the disclosure policy lets this
    /// client's principal see (`AdminAccess::routes_for_client`), in one frame of at most the
    /// client's frame limit.
    async fn routes(&self, request: u64) -> Result<ServerFrame, Refusal> {
        let detail = self
            .shared
            .gate
            .current()
            .admin
            .routes_for_client(self.principal.admin);
        let max = self.shared.limits.max_frame_bytes;
        // Half the frame for the tables' entries, the rest for peers, the tree and framing.
        let routes = crate::introspect::routes(self.shared, detail, max / 2).await?;
        let frame = ServerFrame::Routes {
            request,
            routes: Box::new(routes),
        };
        match palio_protocol::encoded_len(&frame) {
            Ok(size) if size <= max => Ok(frame),
            _ => Err((
                ErrorCode::LimitExceeded,
                format!(
                    "the routing state does not fit in one frame of limits.max_frame_bytes = \
                     {max} bytes; read /routes on the admin listener"
                ),
            )),
        }
    }

    /// Queues an answer; if the client lets its control stream back up, waits until it reads.
    async fn reply(&self, frame: ServerFrame) -> Result<(), Refusal> {
        let size = crate::writer::control_frame_size(&frame);
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

    /// Routes `first` and the publications that arrived with it as one paced batch; persistent
    /// ones also go to the persist task. Returns how many were taken and the frame read ahead.
    async fn publish_batch(
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

/// The frame answering `request`: `ok`'s frame, or an error frame naming the request.
fn answer_or_error<T>(
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
