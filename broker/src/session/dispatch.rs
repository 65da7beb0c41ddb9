//! Every request of a client but publications and flushes (see `requests`): each goes to the
//! task that owns what it asks about (router, persist task, groups task) or is answered here.

use palio_filter::Event;
use palio_protocol::{ClientFrame, ErrorCode, ReplyTo, ServerFrame};

use super::requests::{Session, answer_or_error};
use crate::groups::GroupCommand;
use crate::persist::PersistCommand;
use crate::router::{Command, Refusal};

impl Session<'_> {
    /// Handles one request; an unknown frame closes the connection (`protocol_violation`).
    pub(super) async fn handle(&mut self, frame: ClientFrame) -> Result<(), Refusal> {
        match frame {
            ClientFrame::Subscribe { request, filter } => self.subscribe(request, filter).await,
            ClientFrame::Unsubscribe {
                request,
                subscription,
            } => self.unsubscribe(request, subscription).await,
            ClientFrame::Advertise { request, filter } => self.advertise(request, filter).await,
            ClientFrame::Unadvertise {
                request,
                advertisement,
            } => self.unadvertise(request, advertisement).await,
            ClientFrame::Request {
                request,
                timeout_ms,
                attributes,
                payload,
            } => self.request(request, timeout_ms, attributes, payload).await,
            ClientFrame::Reply {
                reply_to,
                attributes,
                payload,
            } => self.reply_to(reply_to, attributes, payload).await,
            frame @ (ClientFrame::GroupCreate { .. }
            | ClientFrame::GroupRemove { .. }
            | ClientFrame::GroupList { .. }
            | ClientFrame::GroupInfo { .. }
            | ClientFrame::GroupJoin { .. }
            | ClientFrame::GroupLeave { .. }
            | ClientFrame::GroupPublish { .. }) => {
                let client = self.client;
                Ok(self
                    .shared
                    .groups
                    .send(GroupCommand::Request { client, frame })
                    .await?)
            }
            ClientFrame::QueueAdd {
                request,
                name,
                filter,
                options,
            } => self.queue_add(request, name, filter, options).await,
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
            | ClientFrame::Fetch { .. }) => self.durable(frame).await,
            ClientFrame::Ping { request } => self.reply(ServerFrame::Pong { request }).await,
            ClientFrame::ServerInfo { request } => {
                let answer = crate::introspect::server_info(self.shared).await;
                self.reply(answer_or_error(request, answer, |info| {
                    ServerFrame::ServerInfo {
                        request,
                        info: Box::new(info),
                    }
                }))
                .await
            }
            ClientFrame::Routes { request } => {
                let answer = self.routes(request).await;
                self.reply(answer_or_error(request, answer, |f| f)).await
            }
            _ => Err(self
                .close_with(ErrorCode::ProtocolViolation, "unknown frame".into())
                .await),
        }
    }

    /// A request to be routed like a publication, within the principal's publish permission.
    async fn request(
        &mut self,
        request: u64,
        timeout_ms: u64,
        attributes: Event,
        payload: Vec<u8>,
    ) -> Result<(), Refusal> {
        if !self.principal.may_publish(&attributes) {
            let message = self.publish_denied(1);
            return self
                .reply(ServerFrame::Error {
                    request: Some(request),
                    code: ErrorCode::PermissionDenied,
                    message,
                })
                .await;
        }
        let client = self.client;
        self.shared
            .router
            .send(Command::Request {
                client,
                request,
                timeout: std::time::Duration::from_millis(timeout_ms),
                attributes,
                payload,
            })
            .await
    }

    /// A reply to a request this client was shown, within its publish permission.
    async fn reply_to(
        &mut self,
        to: ReplyTo,
        attributes: Event,
        payload: Vec<u8>,
    ) -> Result<(), Refusal> {
        if !self.principal.may_publish(&attributes) {
            let message = self.publish_denied(1);
            return self
                .reply(ServerFrame::PublishRefused {
                    count: 1,
                    code: ErrorCode::PermissionDenied,
                    message,
                })
                .await;
        }
        self.shared
            .router
            .send(Command::Reply {
                to,
                attributes,
                payload,
            })
            .await
    }

    /// Declares a queue, whose filter is narrowed (like a subscription's) to what its owner
    /// may receive.
    async fn queue_add(
        &self,
        request: u64,
        name: String,
        filter: String,
        options: palio_protocol::QueueOptions,
    ) -> Result<(), Refusal> {
        match self.compile(&filter, true) {
            Ok(narrowed) => {
                let frame = ClientFrame::QueueAdd {
                    request,
                    name,
                    filter: narrowed.source().to_owned(),
                    options,
                };
                self.durable(frame).await
            }
            Err((code, message)) => {
                self.reply(ServerFrame::Error {
                    request: Some(request),
                    code,
                    message,
                })
                .await
            }
        }
    }

    /// A request of the persist task (producers, queues, consumers). A producer also keys this
    /// connection's group publications.
    async fn durable(&self, frame: ClientFrame) -> Result<(), Refusal> {
        let client = self.client;
        if let ClientFrame::Producer { producer, .. } = &frame {
            let producer = producer.clone();
            self.shared
                .groups
                .send(GroupCommand::Producer { client, producer })
                .await?;
        }
        self.shared
            .persist
            .send(PersistCommand::Request { client, frame })
            .await
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
}
