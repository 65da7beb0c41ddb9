//! The QUIC client: connection, hello, requests, publications and the delivery stream.
//!
//! Three tasks serve a [`Client`]: a writer (frames the methods encode into one bounded
//! buffer, `outgoing.rs`, handed to the stream a buffer at a time), a control reader
//! (answers, matched to requests by id; persistent-publish acks; durable queue messages) and
//! a delivery reader (notifications, handed to each [`Subscription`]'s bounded queue). When the application does not read a subscription, its
//! queue fills, the delivery reader waits, QUIC flow control stops the broker, and the
//! broker's slow-consumer policy applies: backpressure end to end. The readers live in
//! `reader.rs`; persistent delivery in `producer.rs`, `queue.rs` and `consumer.rs`; the
//! address, credentials and handshake of connecting in `dial.rs`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palio_protocol::tls;
use palio_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME, ErrorCode, FRAME_HEADROOM, FrameCodec, PROTOCOL_VERSION,
    ServerFrame, Welcome, encoded_len,
};
use tokio::sync::oneshot;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::consumer::ConsumerTx;
use crate::dial::{Dialed, dial, refused};
use crate::error::Error;
use crate::notification::Notification;
use crate::outgoing::{NotQueued, Outgoing};
use crate::producer::ProducerSlot;
use crate::reader::{read_control, read_deliveries};
use crate::subscription::{Subscription, SubscriptionTx};

/// Notifications buffered per subscription in the client before backpressure applies (plus
/// what is left of the batch the application is reading).
pub(crate) const SUBSCRIPTION_BUFFER: usize = 1024;

/// The most notifications the delivery reader hands a subscription at once: what the stream
/// has already brought, so that the application's task is woken once per batch rather than
/// once per notification.
pub(crate) const DELIVERY_BATCH: usize = 64;

/// How to reach and authenticate to a broker.
///
/// ```
/// use std::time::Duration;
///
/// let opts = palio::ConnectOptions::new("127.0.0.1:7401")
///     .tls_dir("./palio-data/tls")
///     .connect_timeout(Duration::from_secs(2))
///     .name("example");
/// assert_eq!(opts.server(), "127.0.0.1:7401");
/// // Without a port, the default port applies.
/// assert_eq!(palio::ConnectOptions::new("localhost").server(), "localhost:7400");
/// assert_eq!(palio::ConnectOptions::new("::1").server(), "[::1]:7400");
/// ```
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub(crate) server: String,
    pub(crate) tls_dir: Option<PathBuf>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_files: Option<(PathBuf, PathBuf)>,
    pub(crate) token: Option<String>,
    pub(crate) server_name: String,
    name: String,
    timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

impl ConnectOptions {
    /// Options for the broker at `server` (`host:port`, `[ipv6]:port`, or either without the
    /// port: [`DEFAULT_PORT`](crate::DEFAULT_PORT)), with no credentials yet.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: crate::dial::normalize(&server.into()),
            tls_dir: None,
            ca_file: None,
            cert_files: None,
            token: None,
            server_name: tls::DEV_SERVER_NAME.to_owned(),
            name: "palio-sdk".to_owned(),
            timeout: Duration::from_secs(10),
            connect_timeout: crate::dial::DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// The broker address, with its port.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A development PKI directory shared with the broker: its CA (`ca.pem`) is trusted, and
    /// the client identity the broker wrote there (`client.pem`, `client-key.pem`) is
    /// presented when present. The CA's key is never read: a directory holding only `ca.pem`
    /// and the client files is enough, and one holding only `ca.pem` needs a token.
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls_dir = Some(dir.into());
        self
    }

    /// A PEM file of the CA(s) to trust (instead of a TLS directory's `ca.pem`).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// A client certificate chain and key, as PEM files (instead of the client identity of a TLS
    /// directory's CA).
    pub fn cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_files = Some((cert.into(), key.into()));
        self
    }

    /// A bearer token: a configured user's (`[[auth.user]] token`), which names the principal.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The name the broker's certificate must carry (default `localhost`).
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// A name for the broker's logs.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bound on each request, and on the broker's answer to the hello (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on the QUIC handshake (default 10 s): when no broker answers at the address
    /// within it, [`Client::connect`] fails with [`Error::Unreachable`]. QUIC runs over UDP,
    /// where a closed port or a stopped broker is silence rather than a refusal, so this is
    /// how long "nobody there" takes to tell (the `palio` command line waits 2 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

/// Requests awaiting their answer.
type Pending = Mutex<HashMap<u64, PendingRequest>>;

pub(crate) struct PendingRequest {
    pub(crate) reply: oneshot::Sender<ServerFrame>,
    /// A route for the control reader to install when the answer confirms it, before it reads
    /// the next frame (which may already be a delivery for it).
    pub(crate) register: Option<Register>,
}

/// A route installed when a request is confirmed.
pub(crate) enum Register {
    /// For a subscribe: the queue of the subscription's notifications.
    Subscription(SubscriptionTx),
    /// For a consume: the queue of the consumer's messages.
    Consumer(ConsumerTx),
    /// For a group join: the queue of the member's events.
    Member(crate::group::MemberTx),
}

/// Subscriptions known to the delivery reader.
#[derive(Default)]
pub(crate) struct Routes {
    pub(crate) subs: HashMap<u64, SubscriptionTx>,
    /// Subscribe requests sent and not yet answered. While there are any, a delivery for an
    /// unknown subscription may belong to one of them (it overtook the confirmation) and is
    /// kept in `early`; otherwise it is for a subscription already ended, and dropped.
    pub(crate) pending_subscribes: usize,
    pub(crate) early: Vec<(u64, Notification)>,
}

/// State shared by the client handle, its tasks, and the producer, consumers and messages
/// that outlive a borrow of the client.
pub(crate) struct Shared {
    pub(crate) conn: quinn::Connection,
    /// Frames to send, encoded (see the `outgoing` module).
    pub(crate) out: Arc<Outgoing>,
    pub(crate) pending: Pending,
    pub(crate) routes: Mutex<Routes>,
    /// Durable consumers by broker id: where the control reader puts their messages. Messages
    /// travel on the control stream, so unlike subscriptions a consumer's route is always
    /// installed before its first message is read.
    pub(crate) consumers: Mutex<HashMap<u64, ConsumerTx>>,
    /// The connection's producer, once named: the control reader settles its publications.
    pub(crate) producer: Mutex<ProducerSlot>,
    /// Group members' routes, group publication acks and causal clocks.
    pub(crate) groups: Mutex<crate::group::GroupRoutes>,
    /// Live publications the broker refused since the last flush (`PublishRefused`): how
    /// many, and the latest reason. [`Client::flush`] reports them.
    pub(crate) refused: Mutex<Option<(u64, ErrorCode, String)>>,
    next_request: AtomicU64,
    pub(crate) timeout: Duration,
    /// The largest frame the broker accepts (its welcome's `max_frame`): larger frames are
    /// refused here, before sending, since the broker would close the connection for them.
    pub(crate) max_frame: usize,
}

impl Drop for Shared {
    /// The client and its tasks are gone: the writer sends what is left and finishes.
    fn drop(&mut self) {
        self.out.close();
    }
}

impl Shared {
    /// A fresh request id.
    pub(crate) fn next_request(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// The error for a frame that could not be queued.
    pub(crate) fn not_queued(&self, e: NotQueued) -> Error {
        match e {
            NotQueued::Encode(e) => Error::InvalidRequest(e.to_string()),
            NotQueued::Closed | NotQueued::Full => self.closed_error(),
        }
    }

    /// Why the connection is unusable: the broker's close reason if known.
    pub(crate) fn closed_error(&self) -> Error {
        closed(&self.conn, "connection tasks ended".into())
    }

    /// Refuses `frame` ([`Error::FrameTooLarge`]) if it is longer than the broker accepts.
    /// `what` names it in the error.
    pub(crate) fn check_size(&self, frame: &ClientFrame, what: &'static str) -> Result<(), Error> {
        let size = encoded_len(frame).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        if size > self.max_frame {
            return Err(Error::FrameTooLarge {
                what,
                size,
                max: self.max_frame,
            });
        }
        Ok(())
    }

    /// Sends a request and waits (at most `timeout`) for its answer; a [`ServerFrame::Error`]
    /// answer becomes [`Error::Request`].
    pub(crate) async fn request(
        &self,
        make: impl FnOnce(u64) -> ClientFrame,
        register: Option<Register>,
        timeout: Duration,
    ) -> Result<ServerFrame, Error> {
        if let Some(e) = self.conn.close_reason() {
            return Err(Error::from_connection(&e));
        }
        let request = self.next_request();
        let frame = make(request);
        self.check_size(&frame, "request")?;
        let (reply, answer) = oneshot::channel();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(request, PendingRequest { reply, register });
        }
        self.out
            .send(&frame)
            .await
            .map_err(|e| self.not_queued(e))?;
        let frame = tokio::select! {
            answer = tokio::time::timeout(timeout, answer) => answer
                .map_err(|_| Error::Timeout("waiting for the broker's answer"))?
                .map_err(|_| self.closed_error())?,
            e = self.conn.closed() => return Err(Error::from_connection(&e)),
        };
        match frame {
            ServerFrame::Error { code, message, .. } => Err(Error::Request { code, message }),
            f => Ok(f),
        }
    }
}

/// A connection to a broker.
///
/// [`Client::connect`] returns only after the broker has accepted the hello (credentials and
/// version), so a client refused by the broker never looks connected. Dropping the client
/// closes the connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), palio::Error> {
/// use palio::{Client, ConnectOptions, Notification};
///
/// let client = Client::connect(ConnectOptions::new("127.0.0.1:7400").tls_dir("palio-data/tls")).await?;
/// let mut alarms = client.subscribe("type = 'alarm' AND level > 2").await?;
/// client
///     .publish(Notification::builder().attr("type", "alarm").attr("level", 3).build()?)
///     .await?;
/// let n = alarms.next().await.expect("delivered");
/// assert_eq!(n.get("level"), Some(&palio::filter::Value::Int(3)));
/// # Ok(()) }
/// ```
pub struct Client {
    pub(crate) shared: Arc<Shared>,
    welcome: Welcome,
    endpoint: quinn::Endpoint,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("broker", &self.welcome.broker)
            .field("remote", &self.shared.conn.remote_address())
            .finish()
    }
}

impl Client {
    /// Connects (the handshake bounded by [`ConnectOptions::connect_timeout`]), sends the
    /// hello, and waits (bounded by [`ConnectOptions::timeout`]) for the broker's welcome.
    /// Failures to reach the broker name its address ([`Error::Unreachable`],
    /// [`Error::Connect`]).
    pub async fn connect(opts: ConnectOptions) -> Result<Client, Error> {
        let Dialed {
            endpoint,
            conn,
            presented_certificate,
        } = dial(&opts).await?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| Error::from_connection(&e))?;
        let mut writer = FramedWrite::new(send, FrameCodec::<()>::new(DEFAULT_MAX_FRAME));
        let mut reader = FramedRead::new(recv, FrameCodec::<ServerFrame>::new(DEFAULT_MAX_FRAME));
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: opts.token.clone(),
            name: opts.name.clone(),
        };
        writer
            .send(&hello)
            .await
            .map_err(|e| closed(&conn, e.to_string()))?;
        let answer = tokio::time::timeout(opts.timeout, reader.next())
            .await
            .map_err(|_| Error::Connect {
                server: opts.server.clone(),
                message: format!("no answer to the hello within {:?}", opts.timeout),
            })?;
        let welcome = match answer {
            Some(Ok(ServerFrame::Welcome(w))) => w,
            Some(Ok(ServerFrame::Error { code, message, .. })) => {
                return Err(refused(&opts, presented_certificate, code, message));
            }
            Some(Ok(other)) => {
                return Err(Error::Protocol(format!(
                    "expected a welcome, got {other:?}"
                )));
            }
            Some(Err(e)) => return Err(closed(&conn, e.to_string())),
            None => return Err(closed(&conn, "closed before the welcome".into())),
        };
        // From now on the broker's limit applies: frames we send must fit within it, and
        // frames carrying a publication on from the broker may exceed it by the headroom.
        let max_frame = usize::try_from(welcome.max_frame).unwrap_or(usize::MAX);
        *reader.decoder_mut() = FrameCodec::new(max_frame.saturating_add(FRAME_HEADROOM));
        let out = Arc::new(Outgoing::new(max_frame));
        let shared = Arc::new(Shared {
            conn: conn.clone(),
            out: out.clone(),
            pending: Mutex::new(HashMap::new()),
            routes: Mutex::new(Routes::default()),
            consumers: Mutex::new(HashMap::new()),
            producer: Mutex::new(ProducerSlot::default()),
            groups: Mutex::new(Default::default()),
            refused: Mutex::new(None),
            next_request: AtomicU64::new(1),
            timeout: opts.timeout,
            max_frame,
        });
        tokio::spawn(write_frames(writer.into_inner(), out));
        tokio::spawn(read_control(shared.clone(), reader));
        tokio::spawn(read_deliveries(shared.clone()));
        Ok(Client {
            shared,
            welcome,
            endpoint,
        })
    }

    /// The broker's welcome: its name, id and frame limit (`max_frame`: the SDK refuses to
    /// send a longer frame, with [`Error::FrameTooLarge`]).
    pub fn broker(&self) -> &Welcome {
        &self.welcome
    }

    /// Subscribes with a CESQL filter. The returned [`Subscription`] is a
    /// [`Stream`](futures_util::Stream) of the notifications that match.
    pub async fn subscribe(&self, filter: &str) -> Result<Subscription, Error> {
        let (tx, rx) = crate::subscription::queue();
        if let Ok(mut r) = self.shared.routes.lock() {
            r.pending_subscribes += 1;
        }
        let answer = self
            .call(
                |request| ClientFrame::Subscribe {
                    request,
                    filter: filter.to_owned(),
                },
                Some(Register::Subscription(tx)),
            )
            .await;
        let answer = match answer {
            Err(e @ Error::FrameTooLarge { .. }) => {
                // Never sent, so no answer will take it off the pending count.
                if let Ok(mut r) = self.shared.routes.lock() {
                    r.pending_subscribes = r.pending_subscribes.saturating_sub(1);
                }
                return Err(e);
            }
            other => other?,
        };
        match answer {
            ServerFrame::Subscribed { subscription, .. } => {
                Ok(Subscription::new(subscription, filter.to_owned(), rx))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Ends a subscription. Nothing more is delivered to it; its stream ends once the
    /// notifications already received have been read.
    pub async fn unsubscribe(&self, subscription: &Subscription) -> Result<(), Error> {
        let id = subscription.id();
        let answer = self
            .call(
                |request| ClientFrame::Unsubscribe {
                    request,
                    subscription: id,
                },
                None,
            )
            .await?;
        if let Ok(mut r) = self.shared.routes.lock() {
            r.subs.remove(&id);
        }
        match answer {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Declares what this client will publish; returns the advertisement's id.
    pub async fn advertise(&self, filter: &str) -> Result<u64, Error> {
        match self
            .call(
                |request| ClientFrame::Advertise {
                    request,
                    filter: filter.to_owned(),
                },
                None,
            )
            .await?
        {
            ServerFrame::Advertised { advertisement, .. } => Ok(advertisement),
            other => Err(unexpected(other)),
        }
    }

    /// Withdraws an advertisement.
    pub async fn unadvertise(&self, advertisement: u64) -> Result<(), Error> {
        match self
            .call(
                |request| ClientFrame::Unadvertise {
                    request,
                    advertisement,
                },
                None,
            )
            .await?
        {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Publishes a notification (best effort: queued for sending, not acknowledged; see
    /// [`flush`](Self::flush)). A notification whose frame is longer than the broker accepts
    /// is refused with [`Error::FrameTooLarge`] and not sent.
    pub async fn publish(&self, notification: Notification) -> Result<(), Error> {
        if let Some(e) = self.shared.conn.close_reason() {
            return Err(Error::from_connection(&e));
        }
        let (attributes, payload) = notification.into_parts();
        // The exact encoded length, computed without encoding (it is encoded once, below).
        let size = palio_protocol::publish_len(&attributes, &payload);
        if size > self.shared.max_frame {
            return Err(Error::FrameTooLarge {
                what: "publication",
                size,
                max: self.shared.max_frame,
            });
        }
        self.shared
            .out
            .send_publish(&attributes, &payload)
            .await
            .map_err(|e| self.shared.not_queued(e))
    }

    /// Waits until the broker has handled everything sent before; returns how many
    /// notifications this connection has published.
    ///
    /// Live publications have no answer of their own: if the broker refused any since the last
    /// flush (outside the principal's publish permission, [`ErrorCode::PermissionDenied`]),
    /// the flush fails with [`Error::Request`] naming how many and why.
    pub async fn flush(&self) -> Result<u64, Error> {
        let published = match self
            .call(|request| ClientFrame::Flush { request }, None)
            .await?
        {
            ServerFrame::Flushed { published, .. } => published,
            other => return Err(unexpected(other)),
        };
        let refused = self.shared.refused.lock().ok().and_then(|mut r| r.take());
        match refused {
            Some((count, code, message)) => Err(Error::Request {
                code,
                message: format!("{count} publication(s) refused: {message}"),
            }),
            None => Ok(published),
        }
    }

    /// Why the connection is closed (the broker's close code and reason when it gave one), or
    /// `None` while it is open.
    pub fn close_reason(&self) -> Option<Error> {
        self.shared
            .conn
            .close_reason()
            .map(|e| Error::from_connection(&e))
    }

    /// Closes the connection and waits (briefly) for the broker to be told.
    pub async fn close(self) {
        self.shared
            .conn
            .close(ErrorCode::Closed.code().into(), b"client closed");
        let _ = tokio::time::timeout(Duration::from_secs(1), self.endpoint.wait_idle()).await;
    }

    /// A request with the client's timeout.
    pub(crate) async fn call(
        &self,
        make: impl FnOnce(u64) -> ClientFrame,
        register: Option<Register>,
    ) -> Result<ServerFrame, Error> {
        self.shared
            .request(make, register, self.shared.timeout)
            .await
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shared
            .conn
            .close(ErrorCode::Closed.code().into(), b"client dropped");
    }
}

pub(crate) fn unexpected(frame: ServerFrame) -> Error {
    Error::Protocol(format!("unexpected answer {frame:?}"))
}

pub(crate) fn closed(conn: &quinn::Connection, fallback: String) -> Error {
    match conn.close_reason() {
        Some(e) => Error::from_connection(&e),
        None => Error::Closed {
            code: None,
            message: fallback,
        },
    }
}

/// Hands what the senders encoded to the control stream, a buffer at a time, without a copy.
async fn write_frames(mut stream: quinn::SendStream, out: Arc<Outgoing>) {
    while let Some(bytes) = out.take().await {
        if stream.write_chunk(bytes).await.is_err() {
            // Senders fail from now on instead of queueing for a dead stream.
            out.close();
            return;
        }
    }
    let _ = stream.finish();
}
