//! A client session: one task per client connection.
//!
//! The session reads the control stream in order (hello, then requests and publications),
//! asks the router for each, and writes the answers back on the same stream. A second task
//! writes deliveries to the delivery stream from the connection's bounded queue; when QUIC flow
//! control stops that stream (the application is not reading), the queue fills and the
//! router's slow-consumer policy takes over. Any malformed or oversized frame closes this
//! connection with its error code; nothing else is affected.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use palio_filter::Event;
use palio_protocol::{
    ClientFrame, ConsumeMode, DeliveryFrame, ErrorCode, FrameCodec, PROTOCOL_VERSION, ServerFrame,
    Welcome,
};
use palio_topology::SharedFilter;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::persist::{PersistCommand, Publication};
use crate::router::{ClientId, Command, Delivery, Refusal};
use crate::server::Shared;

/// How long a new connection may take to open its control stream and send its hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

type Writer = FramedWrite<quinn::SendStream, FrameCodec<()>>;

/// Serves one client connection until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, conn: quinn::Connection) {
    let client = shared.next_id();
    let m = &shared.metrics;
    m.connections.with_label_values(&["client"]).inc();
    m.open_connections.with_label_values(&["client"]).inc();
    let result = session(&shared, &conn, client).await;
    if let Err((code, message)) = result {
        if code != ErrorCode::Closed {
            tracing::info!(client, remote = %conn.remote_address(), %code, %message, "closing client connection");
            m.connection_errors
                .with_label_values(&[code.as_str()])
                .inc();
        }
        conn.close(code.code().into(), message.as_bytes());
    }
    let _ = shared.router.send(Command::ClientGone { client }).await;
    let _ = shared
        .persist
        .send(PersistCommand::ClientGone { client })
        .await;
    m.open_connections.with_label_values(&["client"]).dec();
}

async fn send(w: &mut Writer, frame: &ServerFrame) -> Result<(), Refusal> {
    w.send(frame)
        .await
        .map_err(|e| (ErrorCode::Closed, e.to_string()))
}

/// Queues a frame for the control stream's writer task.
async fn reply(tx: &mpsc::Sender<ServerFrame>, frame: ServerFrame) -> Result<(), Refusal> {
    tx.send(frame)
        .await
        .map_err(|_| (ErrorCode::Closed, "control stream closed".to_owned()))
}

/// Tells the client why it is being closed (best effort, through the writer task), and returns
/// the refusal.
async fn refuse_via(tx: &mpsc::Sender<ServerFrame>, code: ErrorCode, message: String) -> Refusal {
    let frame = ServerFrame::Error {
        request: None,
        code,
        message: message.clone(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(frame)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    (code, message)
}

/// Writes the control stream: answers from the session and frames from the persist task
/// (durable messages, publish acks), batching whatever is queued into one flush.
async fn write_control(mut w: Writer, mut rx: mpsc::Receiver<ServerFrame>) {
    while let Some(f) = rx.recv().await {
        let mut next = Some(f);
        while let Some(f) = next {
            if w.feed(&f).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if SinkExt::<&ServerFrame>::flush(&mut w).await.is_err() {
            return;
        }
    }
    let _ = w.get_mut().finish();
}

/// Frames queued for a client's control stream (answers, durable messages, publish acks).
/// Push windows and fetch batches are capped well below it.
const CONTROL_QUEUE: usize = 16 * 1024;

/// The most persistent publications handed to the persist task at once.
const PUBLISH_BATCH: usize = 256;

/// The largest push window or fetch batch a client may ask for.
const MAX_WINDOW: u32 = 4096;

/// Tells the client why it is being closed (best effort), and returns the refusal.
async fn refuse(w: &mut Writer, code: ErrorCode, message: String) -> Refusal {
    let frame = ServerFrame::Error {
        request: None,
        code,
        message: message.clone(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), w.send(&frame)).await;
    let _ = w.get_mut().finish();
    // Give the frame a moment to leave before the connection is closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
    (code, message)
}

async fn ask<T>(
    shared: &Shared,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, Refusal> {
    let (tx, rx) = oneshot::channel();
    shared
        .router
        .send(make(tx))
        .await
        .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))?;
    rx.await
        .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))
}

async fn session(
    shared: &Shared,
    conn: &quinn::Connection,
    client: ClientId,
) -> Result<(), Refusal> {
    let max = shared.limits.max_frame_bytes;
    let (control_tx, recv) = tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| {
            (
                ErrorCode::ProtocolViolation,
                "no control stream opened".to_owned(),
            )
        })?
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    let mut reader = FramedRead::new(recv, FrameCodec::<ClientFrame>::new(max));
    let mut writer: Writer = FramedWrite::new(control_tx, FrameCodec::new(max));

    let hello = tokio::time::timeout(HELLO_TIMEOUT, reader.next())
        .await
        .map_err(|_| (ErrorCode::ProtocolViolation, "no hello received".to_owned()))?;
    let (version, token, name) = match hello {
        Some(Ok(ClientFrame::Hello {
            version,
            token,
            name,
        })) => (version, token, name),
        Some(Ok(_)) => {
            return Err(refuse(
                &mut writer,
                ErrorCode::ProtocolViolation,
                "the first frame must be a hello".into(),
            )
            .await);
        }
        Some(Err(e)) => return Err(refuse(&mut writer, e.code(), e.to_string()).await),
        None => return Err((ErrorCode::Closed, "closed before hello".into())),
    };
    if version != PROTOCOL_VERSION {
        return Err(refuse(
            &mut writer,
            ErrorCode::UnsupportedVersion,
            format!("protocol version {version} is not supported (this broker speaks {PROTOCOL_VERSION})"),
        )
        .await);
    }
    let has_cert = conn
        .peer_identity()
        .and_then(|id| {
            id.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .is_some_and(|certs| !certs.is_empty());
    let token_ok = token
        .as_deref()
        .is_some_and(|t| shared.auth.tokens.iter().any(|k| k == t));
    if !(has_cert || token_ok || shared.auth.allow_anonymous) {
        let why = if token.is_some() {
            "invalid token"
        } else {
            "no credentials: present a client certificate issued by the broker's CA, or a token"
        };
        return Err(refuse(&mut writer, ErrorCode::Unauthenticated, why.into()).await);
    }
    tracing::debug!(client, %name, remote = %conn.remote_address(), "client connected");
    let (dtx, drx) = mpsc::channel(shared.limits.subscriber_buffer);
    shared
        .router
        .send(Command::RegisterClient {
            client,
            deliveries: dtx,
            connection: conn.clone(),
        })
        .await
        .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))?;
    send(
        &mut writer,
        &ServerFrame::Welcome(Welcome {
            version: PROTOCOL_VERSION,
            broker: shared.name.clone(),
            broker_id: shared.id,
            max_frame: u32::try_from(max).unwrap_or(u32::MAX),
        }),
    )
    .await?;
    let uni = conn
        .open_uni()
        .await
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    tokio::spawn(write_deliveries(uni, drx, max));
    let (ftx, frx) = mpsc::channel(CONTROL_QUEUE);
    tokio::spawn(write_control(writer, frx));
    shared
        .persist
        .send(PersistCommand::ClientUp {
            client,
            frames: ftx.clone(),
            connection: conn.clone(),
        })
        .await
        .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))?;

    let mut published = 0u64;
    // A frame read ahead while batching persistent publications, handled next.
    let mut lookahead = None;
    loop {
        let next = match lookahead.take() {
            Some(n) => n,
            None => reader.next().await,
        };
        let frame = match next {
            None => return Ok(()),
            Some(Err(e)) => {
                let code = e.code();
                if code == ErrorCode::Closed {
                    return Err((code, e.to_string()));
                }
                return Err(refuse_via(&ftx, code, e.to_string()).await);
            }
            Some(Ok(f)) => f,
        };
        match frame {
            ClientFrame::Hello { .. } => {
                return Err(refuse_via(
                    &ftx,
                    ErrorCode::ProtocolViolation,
                    "a second hello".into(),
                )
                .await);
            }
            ClientFrame::Subscribe { request, filter } => {
                let answer = match SharedFilter::parse(&filter) {
                    Err(e) => Err((ErrorCode::InvalidFilter, e.to_string())),
                    Ok(filter) => {
                        ask(shared, |reply| Command::Subscribe {
                            client,
                            filter,
                            reply,
                        })
                        .await?
                    }
                };
                let frame = match answer {
                    Ok(subscription) => ServerFrame::Subscribed {
                        request,
                        subscription,
                    },
                    Err((code, message)) => error(request, code, message),
                };
                reply(&ftx, frame).await?;
            }
            ClientFrame::Unsubscribe {
                request,
                subscription,
            } => {
                let answer = ask(shared, |reply| Command::Unsubscribe {
                    client,
                    subscription,
                    reply,
                })
                .await?;
                reply(&ftx, done(request, answer)).await?;
            }
            ClientFrame::Advertise { request, filter } => {
                let answer = match SharedFilter::parse(&filter) {
                    Err(e) => Err((ErrorCode::InvalidFilter, e.to_string())),
                    Ok(filter) => {
                        ask(shared, |reply| Command::Advertise {
                            client,
                            filter,
                            reply,
                        })
                        .await?
                    }
                };
                let frame = match answer {
                    Ok(advertisement) => ServerFrame::Advertised {
                        request,
                        advertisement,
                    },
                    Err((code, message)) => error(request, code, message),
                };
                reply(&ftx, frame).await?;
            }
            ClientFrame::Unadvertise {
                request,
                advertisement,
            } => {
                let answer = ask(shared, |reply| Command::Unadvertise {
                    client,
                    advertisement,
                    reply,
                })
                .await?;
                reply(&ftx, done(request, answer)).await?;
            }
            ClientFrame::Publish {
                attributes,
                payload,
            } => {
                let attributes = event_of(&ftx, attributes).await?;
                published += 1;
                route(
                    shared,
                    Command::Publish {
                        attributes,
                        payload,
                    },
                )
                .await?;
            }
            ClientFrame::PublishPersistent {
                seq,
                attributes,
                payload,
            } => {
                // Take the persistent publications already received with it, so that the
                // persist task and the router get one hand-off per batch, not per message.
                let mut batch = vec![(seq, attributes, payload)];
                while batch.len() < PUBLISH_BATCH {
                    match reader.next().now_or_never() {
                        Some(Some(Ok(ClientFrame::PublishPersistent {
                            seq,
                            attributes,
                            payload,
                        }))) => batch.push((seq, attributes, payload)),
                        Some(other) => {
                            lookahead = Some(other);
                            break;
                        }
                        None => break,
                    }
                }
                published += batch.len() as u64;
                let mut items = Vec::with_capacity(batch.len());
                let mut live = Vec::with_capacity(batch.len());
                for (seq, attributes, payload) in batch {
                    let event = event_of(&ftx, attributes.clone()).await?;
                    live.push((event.clone(), payload.clone()));
                    items.push(Publication {
                        seq,
                        event,
                        attributes,
                        payload,
                    });
                }
                // Live subscribers get them too, best effort, like any publication.
                route(shared, Command::PublishBatch { items: live }).await?;
                shared
                    .persist
                    .send(PersistCommand::Publish { client, items })
                    .await
                    .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))?;
            }
            frame @ (ClientFrame::Producer { .. }
            | ClientFrame::QueueAdd { .. }
            | ClientFrame::QueueRemove { .. }
            | ClientFrame::QueueList { .. }
            | ClientFrame::QueueInfo { .. }
            | ClientFrame::Ack { .. }
            | ClientFrame::Nak { .. }
            | ClientFrame::StopConsume { .. }
            | ClientFrame::Consume { .. }
            | ClientFrame::Fetch { .. }) => {
                let frame = match frame {
                    ClientFrame::Consume {
                        request,
                        queue,
                        mode: ConsumeMode::Push { window },
                    } => ClientFrame::Consume {
                        request,
                        queue,
                        mode: ConsumeMode::Push {
                            window: window.min(MAX_WINDOW),
                        },
                    },
                    ClientFrame::Fetch {
                        request,
                        consumer,
                        batch,
                        max_wait_ms,
                    } => ClientFrame::Fetch {
                        request,
                        consumer,
                        batch: batch.min(MAX_WINDOW),
                        max_wait_ms,
                    },
                    other => other,
                };
                shared
                    .persist
                    .send(PersistCommand::Request { client, frame })
                    .await
                    .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))?;
            }
            ClientFrame::Flush { request } => {
                ask(shared, |reply| Command::Flush { reply }).await?;
                reply(&ftx, ServerFrame::Flushed { request, published }).await?;
            }
            _ => {
                return Err(
                    refuse_via(&ftx, ErrorCode::ProtocolViolation, "unknown frame".into()).await,
                );
            }
        }
    }
}

/// The attributes as an event; a name given twice closes the connection.
async fn event_of(
    ftx: &mpsc::Sender<ServerFrame>,
    attributes: palio_protocol::Attributes,
) -> Result<Event, Refusal> {
    let count = attributes.len();
    let event: Event = attributes.into_iter().collect();
    if event.len() != count {
        return Err(refuse_via(
            ftx,
            ErrorCode::InvalidNotification,
            "an attribute is named twice".into(),
        )
        .await);
    }
    Ok(event)
}

/// Hands publications (`Publish` or `PublishBatch`) to routing, held back while peer links
/// are congested (see the backlog module).
async fn route(shared: &Shared, publication: Command) -> Result<(), Refusal> {
    shared.backlog.wait_below_high_water().await;
    shared
        .router
        .send(publication)
        .await
        .map_err(|_| (ErrorCode::ShuttingDown, "broker shutting down".to_owned()))
}

fn error(request: u64, code: ErrorCode, message: String) -> ServerFrame {
    ServerFrame::Error {
        request: Some(request),
        code,
        message,
    }
}

fn done(request: u64, answer: Result<(), Refusal>) -> ServerFrame {
    match answer {
        Ok(()) => ServerFrame::Done { request },
        Err((code, message)) => error(request, code, message),
    }
}

/// Writes deliveries to the delivery stream, batching whatever is queued into one flush.
async fn write_deliveries(uni: quinn::SendStream, mut rx: mpsc::Receiver<Delivery>, max: usize) {
    let mut w = FramedWrite::new(uni, FrameCodec::<()>::new(max));
    while let Some(d) = rx.recv().await {
        let mut next = Some(d);
        while let Some(d) = next {
            let frame = DeliveryFrame {
                subscription: d.subscription,
                attributes: d
                    .notification
                    .attributes
                    .iter()
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect(),
                payload: d.notification.payload.clone(),
            };
            if w.feed(&frame).await.is_err() {
                return;
            }
            next = rx.try_recv().ok();
        }
        if SinkExt::<&DeliveryFrame>::flush(&mut w).await.is_err() {
            return;
        }
    }
}
