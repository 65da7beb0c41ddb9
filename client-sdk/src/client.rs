//! The QUIC client: connection, hello, requests, publications and the delivery stream.
//!
//! Three tasks serve a [`Client`]: a writer (frames the methods encode into one bounded
//! buffer, `outgoing.rs`, handed to the stream a buffer at a time), a control reader
//! (answers, matched to requests by id; persistent-publish acks; durable queue messages) and
//! a delivery reader (notifications, handed to each [`Subscription`]'s bounded queue). When the application does not read a subscription, its
//! queue fills, the delivery reader waits, QUIC flow control stops the broker, and the
//! broker's slow-consumer policy applies: backpressure end to end. The readers live in
//! `reader.rs`; persistent delivery in `producer.rs`, `queue.rs` and `consumer.rs`; the
//! address, credentials and QUIC handshake of connecting in `dial.rs`.
//!
//! [`Client::dial`] connects and says hello: [`Client::connect`] calls it once (a failure is
//! returned at once), and the link supervisor (`link.rs`) calls it again to reconnect after
//! the connection is lost. Those tasks serve one connection; the supervisor starts them for
//! each.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use palio_protocol::tls;
use palio_protocol::{
    ClientFrame, DEFAULT_MAX_FRAME, ErrorCode, FRAME_HEADROOM, FrameCodec, PROTOCOL_VERSION,
    ServerFrame, Welcome, encoded_len,
};
use tokio::sync::{Notify, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::consumer::{Attachment, ConsumerTx};
use crate::dial::refused;
use crate::error::Error;
use crate::events::{CloseReason, ConnectionEvents, EventHub};
use crate::link::{LinkState, supervise};
use crate::notification::Notification;
use crate::outgoing::{NotQueued, Outgoing};
use crate::producer::ProducerSlot;
use crate::reconnect::{Reconnect, worth_retrying};
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
    reconnect: Reconnect,
}

impl ConnectOptions {
    /// Options for the broker at `server` (`host:port`, `[ipv6]:port`, or either without the
    /// port: [`DEFAULT_PORT`](crate::DEFAULT_PORT)), with no credentials yet.
    ///
    /// ```
    /// use palio::{ConnectOptions, DEFAULT_PORT};
    ///
    /// assert_eq!(ConnectOptions::new("broker.example:7500").server(), "broker.example:7500");
    /// let default_port = format!("broker.example:{DEFAULT_PORT}");
    /// assert_eq!(ConnectOptions::new("broker.example").server(), default_port);
    /// ```
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
            reconnect: Reconnect::default(),
        }
    }

    /// The broker address, with its port.
    ///
    /// ```
    /// let opts = palio::ConnectOptions::new("[::1]:7401");
    /// assert_eq!(opts.server(), "[::1]:7401");
    /// assert_eq!(palio::ConnectOptions::new("127.0.0.1").server(), "127.0.0.1:7400");
    /// ```
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A development PKI directory shared with the broker: its CA (`ca.pem`) is trusted, and
    /// the client identity the broker wrote there (`client.pem`, `client-key.pem`) is
    /// presented when present. The CA's key is never read: a directory holding only `ca.pem`
    /// and the client files is enough, and one holding only `ca.pem` needs a token.
    ///
    /// ```
    /// // Trusts palio-data/tls/ca.pem and presents palio-data/tls/client.pem when it is there
    /// // (nothing is read until the client connects).
    /// let opts = palio::ConnectOptions::new("127.0.0.1:7400").tls_dir("palio-data/tls");
    /// # let _ = opts;
    /// ```
    pub fn tls_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.tls_dir = Some(dir.into());
        self
    }

    /// A PEM file of the CA(s) to trust (instead of a TLS directory's `ca.pem`).
    ///
    /// ```
    /// let opts = palio::ConnectOptions::new("broker.example:7400")
    ///     .ca_file("/etc/palio/ca.pem")
    ///     .server_name("broker.example")
    ///     .token("s3cret");
    /// # let _ = opts;
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// A client certificate chain and key, as PEM files (instead of the client identity of a TLS
    /// directory's CA).
    ///
    /// ```
    /// let opts = palio::ConnectOptions::new("broker.example:7400")
    ///     .ca_file("/etc/palio/ca.pem")
    ///     .cert_files("/etc/palio/client.pem", "/etc/palio/client-key.pem")
    ///     .server_name("broker.example");
    /// # let _ = opts;
    /// ```
    pub fn cert_files(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.cert_files = Some((cert.into(), key.into()));
        self
    }

    /// A bearer token: a configured user's (`[[auth.user]] token`), which names the principal.
    ///
    /// ```
    /// // A token names the principal; the TLS directory then only needs the CA (ca.pem).
    /// let opts = palio::ConnectOptions::new("127.0.0.1:7400")
    ///     .tls_dir("palio-data/tls")
    ///     .token("s3cret");
    /// # let _ = opts;
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// The name the broker's certificate must carry (default `localhost`).
    ///
    /// ```
    /// // Dialed by address, the broker's certificate names it "broker.internal".
    /// let opts = palio::ConnectOptions::new("10.0.0.5:7400")
    ///     .ca_file("/etc/palio/ca.pem")
    ///     .server_name("broker.internal");
    /// # let _ = opts;
    /// ```
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = name.into();
        self
    }

    /// A name for the broker's logs.
    ///
    /// ```
    /// let opts = palio::ConnectOptions::new("127.0.0.1:7400").name("billing-worker-3");
    /// # let _ = opts;
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Bound on each request, and on the broker's answer to the hello (default 10 s).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // Slow requests (a large purge, say) get 30 s before failing with Error::Timeout.
    /// let opts = palio::ConnectOptions::new("127.0.0.1:7400").timeout(Duration::from_secs(30));
    /// # let _ = opts;
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Bound on the QUIC handshake (default 10 s): when no broker answers at the address
    /// within it, [`Client::connect`] fails with [`Error::Unreachable`]. QUIC runs over UDP,
    /// where a closed port or a stopped broker is silence rather than a refusal, so this is
    /// how long "nobody there" takes to tell (the `palio` command line waits 2 s).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// // Tell "no broker there" after 2 s, as the palio command line does.
    /// let opts = palio::ConnectOptions::new("127.0.0.1:7400")
    ///     .connect_timeout(Duration::from_secs(2));
    /// # let _ = opts;
    /// ```
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How the client reconnects after losing its broker (on by default, see
    /// [`Reconnect`]).
    ///
    /// ```
    /// use palio::{ConnectOptions, Reconnect};
    ///
    /// let opts = ConnectOptions::new("127.0.0.1:7400")
    ///     .reconnect(Reconnect::new().max_attempts(10));
    /// assert_eq!(opts.get_reconnect().get_max_attempts(), Some(10));
    /// ```
    pub fn reconnect(mut self, reconnect: Reconnect) -> Self {
        self.reconnect = reconnect;
        self
    }

    /// No reconnect: a lost connection ends the client.
    ///
    /// ```
    /// let opts = palio::ConnectOptions::new("127.0.0.1:7400").no_reconnect();
    /// assert!(!opts.get_reconnect().is_enabled());
    /// ```
    pub fn no_reconnect(self) -> Self {
        self.reconnect(Reconnect::disabled())
    }

    /// The reconnect policy.
    ///
    /// ```
    /// use palio::{ConnectOptions, Reconnect};
    ///
    /// let opts = ConnectOptions::new("127.0.0.1:7400");
    /// assert!(opts.get_reconnect().is_enabled()); // on by default
    /// assert_eq!(opts.get_reconnect(), &Reconnect::new());
    /// ```
    pub fn get_reconnect(&self) -> &Reconnect {
        &self.reconnect
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
    /// For a consume: the queue of the consumer's messages, and where to note its id.
    Consumer(ConsumerTx, Arc<AtomicU64>),
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
    /// While the connection is down: the subscriptions to make again on the next one.
    pub(crate) restore: Vec<SubscriptionTx>,
}

/// State shared by the client handle, its tasks, and the producer, consumers and messages
/// that outlive a borrow of the client.
pub(crate) struct Shared {
    /// The current connection and its endpoint (replaced by each reconnection).
    link: Mutex<Link>,
    /// Frames to send, encoded (see the `outgoing` module).
    pub(crate) out: Arc<Outgoing>,
    pub(crate) pending: Pending,
    pub(crate) routes: Mutex<Routes>,
    /// Durable consumers by broker id: where the control reader puts their messages. Messages
    /// travel on the control stream, so unlike subscriptions a consumer's route is always
    /// installed before its first message is read.
    pub(crate) consumers: Mutex<HashMap<u64, ConsumerTx>>,
    /// Every attached consumer, to attach again after a reconnection.
    pub(crate) attached: Mutex<Vec<Attachment>>,
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
    max_frame: AtomicUsize,
    /// Up, down (reconnecting) or ended.
    pub(crate) state: Mutex<LinkState>,
    pub(crate) reconnect: Reconnect,
    /// The application's event streams.
    pub(crate) events: EventHub,
    /// Set (and `closing_now` notified) when the application closes the client.
    closing: AtomicBool,
    closing_now: Notify,
}

/// One connection and the endpoint it was made on.
pub(crate) struct Link {
    pub(crate) conn: quinn::Connection,
    pub(crate) endpoint: quinn::Endpoint,
}

/// A connection made and welcomed by the broker: what the tasks serving it start from.
pub(crate) struct Dialed {
    pub(crate) link: Link,
    pub(crate) send: quinn::SendStream,
    pub(crate) reader: FramedRead<quinn::RecvStream, FrameCodec<ServerFrame>>,
    pub(crate) welcome: Welcome,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The state behind these locks stays consistent at every step, so a poisoned lock is
    // still usable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// The current connection.
    pub(crate) fn conn(&self) -> quinn::Connection {
        lock(&self.link).conn.clone()
    }

    /// Makes `link` the current connection, for a broker accepting frames of at most
    /// `max_frame` bytes.
    pub(crate) fn set_link(&self, link: Link, max_frame: usize) {
        *lock(&self.link) = link;
        self.max_frame.store(max_frame, Ordering::Relaxed);
        self.out.set_max(max_frame);
    }

    /// The largest frame the current broker accepts.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame.load(Ordering::Relaxed)
    }

    /// Whether the application closed the client.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Returns once the application closes the client.
    pub(crate) async fn closing(&self) {
        loop {
            let notified = self.closing_now.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_closing() {
                return;
            }
            notified.await;
        }
    }

    /// The application closes the client: the supervisor stops reconnecting, and the
    /// connection is closed with `why`.
    fn close_locally(&self, why: &'static [u8]) {
        self.closing.store(true, Ordering::Release);
        self.closing_now.notify_waiters();
        self.conn().close(ErrorCode::Closed.code().into(), why);
    }

    /// The error for a frame that could not be queued.
    pub(crate) fn not_queued(&self, e: NotQueued) -> Error {
        match e {
            NotQueued::Encode(e) => Error::InvalidRequest(e.to_string()),
            NotQueued::BufferFull { limit } => Error::PublishBufferFull { limit },
            NotQueued::Closed | NotQueued::Full | NotQueued::Offline => self.closed_error(),
        }
    }

    /// Why the connection is unusable: how the client ended, that it is reconnecting, or the
    /// connection's close reason.
    pub(crate) fn closed_error(&self) -> Error {
        if let Some(e) = self.state_error() {
            return e;
        }
        match self.conn().close_reason() {
            Some(e) => self.lost(&e),
            None => Error::Closed {
                code: None,
                message: "connection tasks ended".into(),
            },
        }
    }

    /// The error of a state other than up: the ending, or [`Error::Disconnected`].
    fn state_error(&self) -> Option<Error> {
        match &*lock(&self.state) {
            LinkState::Up => None,
            LinkState::Down { reason } => Some(Error::Disconnected {
                reason: reason.clone(),
            }),
            LinkState::Ended(r) => Some(r.to_error()),
        }
    }

    /// The error for a call whose connection ended with `e`: [`Error::Disconnected`] when
    /// the client will reconnect, the connection's reason otherwise.
    pub(crate) fn lost(&self, e: &quinn::ConnectionError) -> Error {
        if let Some(e) = self.state_error() {
            return e;
        }
        if self.reconnect.is_enabled() && worth_retrying(e) && !self.is_closing() {
            Error::Disconnected {
                reason: e.to_string(),
            }
        } else {
            Error::from_connection(e)
        }
    }

    /// Why nothing can be sent now, if so: the client ended, is reconnecting, or its
    /// connection is closed.
    pub(crate) fn unusable(&self) -> Option<Error> {
        self.state_error()
            .or_else(|| self.conn().close_reason().map(|e| self.lost(&e)))
    }

    /// Why a best-effort publication cannot even be buffered now, if so: while the client is
    /// reconnecting, publications are kept (see `outgoing.rs`).
    fn cannot_publish(&self) -> Option<Error> {
        match &*lock(&self.state) {
            LinkState::Ended(r) => return Some(r.to_error()),
            LinkState::Down { .. } => return None,
            LinkState::Up => {}
        }
        // The connection's reason without cloning the handle (this runs on every publish).
        let e = lock(&self.link).conn.close_reason()?;
        (!(self.reconnect.is_enabled() && worth_retrying(&e))).then(|| Error::from_connection(&e))
    }

    /// Refuses `frame` ([`Error::FrameTooLarge`]) if it is longer than the broker accepts.
    /// `what` names it in the error.
    pub(crate) fn check_size(&self, frame: &ClientFrame, what: &'static str) -> Result<(), Error> {
        let size = encoded_len(frame).map_err(|e| Error::InvalidRequest(e.to_string()))?;
        let max = self.max_frame();
        if size > max {
            return Err(Error::FrameTooLarge { what, size, max });
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
        if let Some(e) = self.unusable() {
            return Err(e);
        }
        let conn = self.conn();
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
            e = conn.closed() => return Err(self.lost(&e)),
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
/// When the connection is lost, the client reconnects by itself (see [`Reconnect`]; off with
/// [`ConnectOptions::no_reconnect`]) and restores its subscriptions, durable consumers and
/// producer; [`events`](Self::events) tells the application.
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
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("broker", &self.welcome.broker)
            .field("remote", &self.shared.conn().remote_address())
            .finish()
    }
}

impl Client {
    /// Connects (the handshake bounded by [`ConnectOptions::connect_timeout`]), sends the
    /// hello, and waits (bounded by [`ConnectOptions::timeout`]) for the broker's welcome.
    /// Fails at once if the broker cannot be reached, naming its address
    /// ([`Error::Unreachable`], [`Error::Connect`]), or refuses the hello; reconnecting applies
    /// only to a connection lost later.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), palio::Error> {
    /// use palio::{Client, ConnectOptions, Error};
    ///
    /// let opts = ConnectOptions::new("127.0.0.1:7400").tls_dir("palio-data/tls");
    /// match Client::connect(opts).await {
    ///     Ok(client) => println!("connected to {}", client.broker().broker),
    ///     Err(e @ Error::Unreachable { .. }) => eprintln!("{e}"), // nobody answered: not retried
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn connect(opts: ConnectOptions) -> Result<Client, Error> {
        let dialed = Self::dial(&opts).await?;
        let welcome = dialed.welcome.clone();
        let max_frame = usize::try_from(welcome.max_frame).unwrap_or(usize::MAX);
        let shared = Arc::new(Shared {
            link: Mutex::new(Link {
                conn: dialed.link.conn.clone(),
                endpoint: dialed.link.endpoint.clone(),
            }),
            out: Arc::new(Outgoing::new(max_frame)),
            pending: Mutex::new(HashMap::new()),
            routes: Mutex::new(Routes::default()),
            consumers: Mutex::new(HashMap::new()),
            attached: Mutex::new(Vec::new()),
            producer: Mutex::new(ProducerSlot::default()),
            groups: Mutex::new(Default::default()),
            refused: Mutex::new(None),
            next_request: AtomicU64::new(1),
            timeout: opts.timeout,
            max_frame: AtomicUsize::new(max_frame),
            state: Mutex::new(LinkState::Up),
            reconnect: opts.reconnect.clone(),
            events: EventHub::default(),
            closing: AtomicBool::new(false),
            closing_now: Notify::new(),
        });
        let tasks = crate::link::start(&shared, dialed);
        tokio::spawn(supervise(shared.clone(), opts, tasks));
        Ok(Client { shared, welcome })
    }

    /// Connects, sends the hello, and waits for the broker's welcome: the first connect and
    /// every reconnection.
    pub(crate) async fn dial(opts: &ConnectOptions) -> Result<Dialed, Error> {
        let crate::dial::Dialed {
            endpoint,
            conn,
            presented_certificate,
        } = crate::dial::dial(opts).await?;
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
                return Err(refused(opts, presented_certificate, code, message));
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
        Ok(Dialed {
            link: Link { conn, endpoint },
            send: writer.into_inner(),
            reader,
            welcome,
        })
    }

    /// The broker's welcome: its name, id and frame limit (`max_frame`: the SDK refuses to
    /// send a longer frame, with [`Error::FrameTooLarge`]).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let welcome = client.broker();
    /// println!("connected to {} (frames up to {} bytes)", welcome.broker, welcome.max_frame);
    /// # Ok(()) }
    /// ```
    pub fn broker(&self) -> &Welcome {
        &self.welcome
    }

    /// Subscribes with a CESQL filter. The returned [`Subscription`] is a
    /// [`Stream`](futures_util::Stream) of the notifications that match.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let mut hot = client.subscribe("type = 'reading' AND temp > 30").await?;
    /// while let Some(n) = hot.next().await {
    ///     println!("{}", n.to_json());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&self, filter: &str) -> Result<Subscription, Error> {
        // Refused before it counts as pending (while reconnecting, for instance).
        if let Some(e) = self.shared.unusable() {
            return Err(e);
        }
        let (tx, rx) = crate::subscription::queue(filter);
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
            ServerFrame::Subscribed { .. } => Ok(Subscription::new(filter.to_owned(), rx)),
            other => Err(unexpected(other)),
        }
    }

    /// Ends a subscription. Nothing more is delivered to it; its stream ends once the
    /// notifications already received have been read.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let alarms = client.subscribe("type = 'alarm'").await?;
    /// // … read some of it …
    /// client.unsubscribe(&alarms).await?; // its stream ends after what was already received
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::Notification;
    ///
    /// let ad = client.advertise("type = 'reading'").await?;
    /// let reading = Notification::builder().attr("type", "reading").attr("temp", 21);
    /// client.publish(reading.build()?).await?;
    /// client.unadvertise(ad).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let ad = client.advertise("type = 'reading' AND site = 'north'").await?;
    /// // … publish readings, then stop …
    /// client.unadvertise(ad).await?;
    /// # Ok(()) }
    /// ```
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
    ///
    /// While the client is reconnecting, publications are kept (up to
    /// [`Reconnect::buffer`] bytes, beyond which this fails with
    /// [`Error::PublishBufferFull`]) and sent in order once the connection is back. Those
    /// queued for a connection as it is lost may be lost with it (best effort).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::Notification;
    ///
    /// let reading = Notification::builder().attr("type", "reading").attr("temp", 31).build()?;
    /// client.publish(reading).await?; // queued: not acknowledged
    /// client.flush().await?; // the broker has handled it
    /// # Ok(()) }
    /// ```
    pub async fn publish(&self, notification: Notification) -> Result<(), Error> {
        if let Some(e) = self.shared.cannot_publish() {
            return Err(e);
        }
        let (attributes, payload) = notification.into_parts();
        // The exact encoded length, computed without encoding (it is encoded once, below).
        let size = palio_protocol::publish_len(&attributes, &payload);
        let max = self.shared.max_frame();
        if size > max {
            return Err(Error::FrameTooLarge {
                what: "publication",
                size,
                max,
            });
        }
        self.shared
            .out
            .send_publish(&attributes, &payload, size)
            .await
            .map_err(|e| self.shared.not_queued(e))
    }

    /// Waits until the broker has handled everything sent before; returns how many
    /// notifications this connection has published.
    ///
    /// Live publications have no answer of their own: if the broker refused any since the last
    /// flush (outside the principal's publish permission, [`ErrorCode::PermissionDenied`]),
    /// the flush fails with [`Error::Request`] naming how many and why.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::{Error, Notification};
    ///
    /// for i in 0..100 {
    ///     let tick = Notification::builder().attr("type", "tick").attr("n", i);
    ///     client.publish(tick.build()?).await?;
    /// }
    /// match client.flush().await {
    ///     Ok(published) => println!("{published} published on this connection"),
    ///     Err(e @ Error::Request { .. }) => eprintln!("some were refused: {e}"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok(()) }
    /// ```
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

    /// Why the connection is closed, or `None` while it is open: how the client ended
    /// ([`Error::ReconnectFailed`], [`Error::ClosedLocally`], or [`Error::Closed`] with the
    /// broker's close code and reason when it gave one, [`ErrorCode::ShuttingDown`] for a clean
    /// shutdown with reconnecting off), or [`Error::Disconnected`] while it is reconnecting.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// if let Some(e) = client.close_reason() {
    ///     eprintln!("not usable now: {e}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn close_reason(&self) -> Option<Error> {
        self.shared.unusable()
    }

    /// The client's [`ConnectionEvent`](crate::ConnectionEvent)s from now on: lost,
    /// reconnected, closed. See [`ConnectionEvents`] for an example.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::ConnectionEvent;
    ///
    /// let mut events = client.events();
    /// while let Some(e) = events.next().await {
    ///     if let ConnectionEvent::Reconnected { attempts, .. } = e {
    ///         eprintln!("reconnected after {attempts} attempt(s)");
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub fn events(&self) -> ConnectionEvents {
        self.shared.events.subscribe()
    }

    /// How the client ended for good, or `None` while it is connected or reconnecting.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::CloseReason;
    ///
    /// match client.ended() {
    ///     None => println!("connected or reconnecting"),
    ///     Some(CloseReason::Broker { code, .. }) => println!("the broker closed it ({code:?})"),
    ///     Some(why) => println!("ended: {why}"),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn ended(&self) -> Option<CloseReason> {
        match &*lock(&self.shared.state) {
            LinkState::Ended(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Closes the connection and waits (briefly) for the broker to be told. The client does
    /// not reconnect any more.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// client.publish(palio::Notification::builder().attr("type", "bye").build()?).await?;
    /// client.flush().await?; // the broker has handled everything published before
    /// client.close().await;
    /// # Ok(()) }
    /// ```
    pub async fn close(self) {
        self.shared.close_locally(b"client closed");
        let endpoint = lock(&self.shared.link).endpoint.clone();
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
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
        self.shared.close_locally(b"client dropped");
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

/// Hands what the senders encoded to the control stream of `conn`, a buffer at a time,
/// without a copy; ends with the connection (what is left in the buffer is then the
/// supervisor's to drop or keep, see `outgoing.rs`).
pub(crate) async fn write_frames(
    mut stream: quinn::SendStream,
    out: Arc<Outgoing>,
    conn: quinn::Connection,
) {
    loop {
        let bytes = tokio::select! {
            bytes = out.take() => bytes,
            _ = conn.closed() => return,
        };
        let Some(bytes) = bytes else { break };
        if stream.write_chunk(bytes).await.is_err() {
            return;
        }
    }
    let _ = stream.finish();
}
