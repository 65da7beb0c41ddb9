//! Configuration: the TOML file, the command-line overrides, and validation.
//!
//! Everything has an embedded default, so `palio-broker` runs with no file and no flags. A file
//! is read with unknown keys refused; every filter expression in it is compiled at load, and any
//! problem is reported with the file, line and column. The broker does not start
//! half-configured: [`Settings::load`] either returns a complete, valid configuration or an
//! error.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use palio_topology::{SharedFilter, Strategy};

use crate::auth::RawAuth;
pub use crate::auth::{AdminAccess, Auth, RoutesDetail, User};
pub use peer_address::DEFAULT_PEER_PORT;

mod peer_address;
use serde::Deserialize;
use toml::Spanned;

/// The default QUIC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
/// The default admin HTTP address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:7480";
/// The default data directory.
pub const DEFAULT_DATA_DIR: &str = "./palio-data";

/// A configuration that could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not valid, at a known place.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A value (from the file or a flag) is not valid.
    #[error("{0}")]
    Invalid(String),
}

/// What happens to a notification for a subscriber whose delivery queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumerPolicy {
    /// Lossless: the notification is queued anyway and the traffic that brought it waits until
    /// the queue drains (the publisher is slowed, hop by hop). A subscriber that reads nothing
    /// for `stall_timeout_ms` is disconnected with `slow_consumer`.
    #[default]
    Block,
    /// Drop the new notification for that subscriber only (counted in
    /// `palio_notifications_dropped_total{reason="slow_consumer"}`); everyone else is unaffected.
    Drop,
    /// Close the subscriber's connection with the `slow_consumer` error code (counted in
    /// `palio_slow_consumer_disconnects_total`).
    Disconnect,
}

/// Limits; each has a declared overflow behaviour (`docs/operations.md`, "Flow control").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest frame a client may send, in bytes; a longer one closes the connection
    /// (`frame_too_large`). Frames the broker re-encodes a publication into (deliveries, peer
    /// notifications, stored messages) may be larger by
    /// [`FRAME_HEADROOM`](palio_protocol::FRAME_HEADROOM), and peers accept that much.
    pub max_frame_bytes: usize,
    /// Notifications queued per subscribing connection between routing and its QUIC stream.
    pub subscriber_buffer: usize,
    /// The same queue's limit in bytes (estimated encoded size).
    pub subscriber_buffer_bytes: usize,
    /// What happens when that queue is full.
    pub slow_consumer: SlowConsumerPolicy,
    /// Frames queued per peer link. When full, the traffic that must cross the link waits
    /// (nothing is dropped); a link that takes nothing for `stall_timeout_ms` is closed and
    /// routing reconverges around it. A link's lanes share it (each holds its share of the
    /// link's notifications); its control stream has it whole.
    pub peer_queue: usize,
    /// The same queue's limit in bytes.
    pub peer_queue_bytes: usize,
    /// How long a subscriber may read nothing while the broker has something to send it before
    /// it is cut with `slow_consumer`, in milliseconds. A peer link gets three times as long
    /// before it is closed.
    pub stall_timeout_ms: u64,
    /// Live subscriptions per connection (`limit_exceeded` beyond).
    pub max_subscriptions_per_client: usize,
    /// Live advertisements per connection.
    pub max_advertisements_per_client: usize,
    /// Client connections open at once; one more is refused before its handshake.
    pub max_connections: usize,
    /// Client and peer connections open at once from one IP address; checked before the
    /// handshake.
    pub max_connections_per_address: usize,
    /// Client connections open at once per principal; checked after authentication.
    pub max_connections_per_principal: usize,
    /// QUIC handshakes in progress at once; more are refused (QUIC's `CONNECTION_REFUSED`).
    pub max_handshakes: usize,
    /// Send a QUIC Retry to every new connection and accept it only once the client has
    /// echoed the token: proves the source address before the broker does any handshake work
    /// (costs a round trip per connection; for brokers reachable from untrusted networks).
    pub quic_retry: bool,
    /// Brokers this broker's link-state database holds, itself included: adverts of more
    /// brokers relayed by peers are refused (`palio_peer_adverts_refused_total`).
    pub max_brokers: usize,
    /// Ordered groups this broker keeps (network-wide, since every broker knows every group):
    /// a client's create beyond it gets `limit_exceeded`; a peer's declaration beyond it is
    /// not taken (`palio_limits_hit_total{limit="max_groups"}`).
    pub max_groups: usize,
    /// Durable queues at this broker (`limit_exceeded` beyond). See `docs/durability.md` for
    /// this and the settings below.
    pub max_queues: usize,
    /// Durable-queue consumers attached per connection.
    pub max_consumers_per_client: usize,
    /// The longest a pull consumer's fetch waits, in milliseconds (a longer wait is cut).
    pub max_fetch_wait_ms: u64,
    /// Producers the broker remembers (owner and sequence number).
    pub max_producers: usize,
    /// How long a producer must have been idle before it may be forgotten to make room for a
    /// new one, in milliseconds.
    pub producer_idle_ms: u64,
    /// The `max_messages` of a queue added without one, and the most one may ask for (0: no
    /// limit).
    pub queue_max_messages: u64,
    /// The same for `max_bytes`.
    pub queue_max_bytes: u64,
    /// The same for `max_age_ms`.
    pub queue_max_age_ms: u64,
    /// The discard policy of a queue added without one.
    pub queue_discard: palio_protocol::Discard,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: palio_protocol::DEFAULT_MAX_FRAME,
            subscriber_buffer: 1024,
            subscriber_buffer_bytes: 1 << 20,
            slow_consumer: SlowConsumerPolicy::Block,
            peer_queue: 16 * 1024,
            peer_queue_bytes: 16 << 20,
            stall_timeout_ms: 10_000,
            max_subscriptions_per_client: 1024,
            max_advertisements_per_client: 1024,
            max_connections: 10_000,
            max_connections_per_address: 1_000,
            max_connections_per_principal: 1_000,
            max_handshakes: 256,
            quic_retry: false,
            max_brokers: 1024,
            max_groups: 1024,
            max_queues: 10_000,
            max_consumers_per_client: 1024,
            max_fetch_wait_ms: 300_000,
            max_producers: 100_000,
            producer_idle_ms: 24 * 3600 * 1000,
            queue_max_messages: 1_000_000,
            queue_max_bytes: 1 << 30,
            queue_max_age_ms: 0,
            queue_discard: palio_protocol::Discard::Old,
        }
    }
}

impl Limits {
    /// A subscribing connection's delivery queue.
    pub(crate) fn subscriber_capacity(&self) -> crate::outbox::Capacity {
        crate::outbox::Capacity {
            frames: self.subscriber_buffer,
            bytes: self.subscriber_buffer_bytes,
        }
    }

    /// A peer link's queue (its control stream's; all its traffic on a link without lanes).
    pub(crate) fn peer_capacity(&self) -> crate::outbox::Capacity {
        crate::outbox::Capacity {
            frames: self.peer_queue,
            bytes: self.peer_queue_bytes,
        }
    }

    /// The queue of each lane of a peer link with `lanes` lanes: its notifications share the
    /// link's limit, so that lanes add no memory to the worst case.
    pub(crate) fn lane_capacity(&self, lanes: u8) -> crate::outbox::Capacity {
        let n = usize::from(lanes.max(1));
        crate::outbox::Capacity {
            frames: (self.peer_queue / n).max(1),
            bytes: (self.peer_queue_bytes / n).max(1),
        }
    }

    /// The stall timeout of a client's streams.
    pub(crate) fn stall_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.stall_timeout_ms)
    }

    /// The stall timeout of a peer link: three times a client's, so that when a slow
    /// subscriber holds back the link that feeds it, the subscriber is cut first, not the link
    /// (which carries everyone else's traffic too).
    pub(crate) fn peer_stall_timeout(&self) -> std::time::Duration {
        self.stall_timeout().saturating_mul(3)
    }

    /// The largest frame the broker writes or accepts from a peer: a client's frame plus the
    /// headroom of re-encoding it.
    pub(crate) fn internal_frame_bytes(&self) -> usize {
        self.max_frame_bytes + palio_protocol::FRAME_HEADROOM
    }
}

/// The `[store]` section: the persistent log and durable queues (`docs/durability.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Size at which a log segment is closed and a new one started, in bytes. Segments are the
    /// unit of deletion: a segment goes once every message in it is acked and forwarded.
    pub segment_bytes: u64,
    /// Ack wait of queues added without one, in milliseconds.
    pub ack_wait_ms: u64,
    /// Maximum deliveries of queues added without one (then the message is dead-lettered).
    pub max_deliveries: u32,
    /// Persistent messages sent to one peer and not yet acked by it (store-and-forward).
    pub peer_window: usize,
    /// Message ids remembered per broker to ignore copies that arrive again from peers.
    pub dedup_window: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            ack_wait_ms: 30_000,
            max_deliveries: 5,
            peer_window: 1024,
            dedup_window: 1_000_000,
        }
    }
}

/// The `[timeouts]` section: how fast a silent connection (a peer broker or client that
/// crashed or became unreachable without closing) is noticed. Applied to every QUIC connection
/// of the broker, accepted and dialed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// Milliseconds without receiving anything on a connection after which the broker sends a
    /// QUIC PING (the other side's acknowledgement keeps the connection alive).
    pub keep_alive_ms: u64,
    /// Milliseconds without receiving anything after which a connection is closed as dead: a
    /// peer link goes down and is routed around, a client's subscriptions are dropped. The
    /// connection uses the smaller of the two sides' idle timeouts; SDK clients offer a longer
    /// one, so this one decides.
    pub idle_timeout_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            keep_alive_ms: ms(palio_protocol::tls::KEEP_ALIVE),
            idle_timeout_ms: ms(palio_protocol::tls::IDLE_TIMEOUT),
        }
    }
}

impl Timeouts {
    /// Shortest keep-alive accepted, in milliseconds.
    pub const MIN_KEEP_ALIVE_MS: u64 = 100;
    /// Longest idle timeout accepted, in milliseconds (an hour).
    pub const MAX_IDLE_TIMEOUT_MS: u64 = 3_600_000;

    /// The QUIC timeouts these settings describe.
    pub fn quic(&self) -> palio_protocol::tls::Timeouts {
        palio_protocol::tls::Timeouts {
            keep_alive: std::time::Duration::from_millis(self.keep_alive_ms),
            idle: std::time::Duration::from_millis(self.idle_timeout_ms),
        }
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.keep_alive_ms < Self::MIN_KEEP_ALIVE_MS
            || self.idle_timeout_ms > Self::MAX_IDLE_TIMEOUT_MS
        {
            return Err(ConfigError::Invalid(format!(
                "timeouts.keep_alive_ms must be at least {} and timeouts.idle_timeout_ms at most {}",
                Self::MIN_KEEP_ALIVE_MS,
                Self::MAX_IDLE_TIMEOUT_MS
            )));
        }
        if self.keep_alive_ms >= self.idle_timeout_ms {
            return Err(ConfigError::Invalid(format!(
                "timeouts.keep_alive_ms ({}) must be less than timeouts.idle_timeout_ms ({}), \
                 or idle connections time out",
                self.keep_alive_ms, self.idle_timeout_ms
            )));
        }
        Ok(())
    }
}

/// The `[tls]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// The development PKI directory (default `<data_dir>/tls`).
    pub dir: Option<PathBuf>,
    /// Certificate chain file (PEM), instead of the development PKI.
    pub cert: Option<PathBuf>,
    /// Private key file (PEM).
    pub key: Option<PathBuf>,
    /// CA file (PEM) trusted for peers and client certificates.
    pub ca: Option<PathBuf>,
    /// The name peers' certificates are checked against (default `localhost`).
    pub server_name: Option<String>,
}

/// A subscription held by the broker itself (`[[subscription]]`): it attracts matching
/// notifications to this broker and counts them in
/// `palio_static_subscription_matches_total{name}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatic {
    name: String,
    filter: Spanned<String>,
}

/// A validated static subscription.
#[derive(Debug, Clone)]
pub struct StaticSubscription {
    /// Its name, the metric label.
    pub name: String,
    /// The filter.
    pub filter: SharedFilter,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    id: Option<String>,
    listen: Option<SocketAddr>,
    admin: Option<String>,
    data_dir: Option<PathBuf>,
    strategy: Option<Spanned<String>>,
    peers: Vec<Spanned<String>>,
    tls: TlsFiles,
    auth: RawAuth,
    admin_access: AdminAccess,
    limits: Limits,
    store: StoreSettings,
    timeouts: Timeouts,
    subscription: Vec<RawStatic>,
}

/// Command-line overrides (each `None` keeps the file's value or the default).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--id NAME`.
    pub id: Option<String>,
    /// `--listen ADDR`.
    pub listen: Option<SocketAddr>,
    /// `--admin ADDR` (`off` disables the admin listener).
    pub admin: Option<String>,
    /// `--data-dir DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--tls-dir DIR`.
    pub tls_dir: Option<PathBuf>,
    /// `--peer ADDR`, repeatable; added to the file's peers.
    pub peers: Vec<String>,
    /// `--keep-alive-ms MS`.
    pub keep_alive_ms: Option<u64>,
    /// `--idle-timeout-ms MS`.
    pub idle_timeout_ms: Option<u64>,
}

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The broker's name; `None` takes one from the bound address.
    pub id: Option<String>,
    /// QUIC address.
    pub listen: SocketAddr,
    /// Admin HTTP address, if enabled.
    pub admin: Option<SocketAddr>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Routing strategy.
    pub strategy: Strategy,
    /// Peers to dial (`host:port`; after loading, an address given without a port has
    /// [`DEFAULT_PEER_PORT`]).
    pub peers: Vec<String>,
    /// TLS files; `dir` is always set after loading (unless cert/key/ca are given).
    pub tls: TlsFiles,
    /// Client authentication and permissions (`docs/security.md`).
    pub auth: Auth,
    /// Who may read the admin listener, and how much `/routes` shows.
    pub admin_access: AdminAccess,
    /// Limits.
    pub limits: Limits,
    /// The persistent store.
    pub store: StoreSettings,
    /// QUIC keep-alive and idle timeout.
    pub timeouts: Timeouts,
    /// Static subscriptions.
    pub static_subscriptions: Vec<StaticSubscription>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            id: None,
            listen: DEFAULT_LISTEN.parse().expect("constant address parses"),
            admin: Some(DEFAULT_ADMIN.parse().expect("constant address parses")),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            strategy: Strategy::default(),
            peers: Vec::new(),
            tls: TlsFiles::default(),
            auth: Auth::default(),
            admin_access: AdminAccess::default(),
            limits: Limits::default(),
            store: StoreSettings::default(),
            timeouts: Timeouts::default(),
            static_subscriptions: Vec::new(),
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    // Spans are at token boundaries; `get` keeps a bad offset from panicking all the same.
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, column)
}

impl Settings {
    /// Loads the file named by `overrides.config` (if any), applies the overrides and
    /// validates the whole.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut s = match &overrides.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Self::from_toml(path, &text)?
            }
            None => Self::default(),
        };
        if let Some(id) = &overrides.id {
            s.id = Some(id.clone());
        }
        if let Some(l) = overrides.listen {
            s.listen = l;
        }
        if let Some(a) = &overrides.admin {
            s.admin = parse_admin(a)?;
        }
        if let Some(d) = &overrides.data_dir {
            s.data_dir = d.clone();
        }
        if let Some(t) = &overrides.tls_dir {
            s.tls.dir = Some(t.clone());
        }
        s.peers.extend(overrides.peers.iter().cloned());
        if let Some(ms) = overrides.keep_alive_ms {
            s.timeouts.keep_alive_ms = ms;
        }
        if let Some(ms) = overrides.idle_timeout_ms {
            s.timeouts.idle_timeout_ms = ms;
        }
        s.finish()
    }

    /// Parses a TOML configuration; `path` names it in errors.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let at = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ConfigError::At {
                path: path.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            at(offset, e.message().trim().to_owned())
        })?;
        let mut s = Settings {
            id: raw.id,
            ..Settings::default()
        };
        if let Some(l) = raw.listen {
            s.listen = l;
        }
        if let Some(a) = &raw.admin {
            s.admin = parse_admin(a)?;
        }
        if let Some(d) = raw.data_dir {
            s.data_dir = d;
        }
        if let Some(st) = raw.strategy {
            s.strategy = st
                .get_ref()
                .parse()
                .map_err(|e: palio_topology::UnknownStrategy| at(st.span().start, e.to_string()))?;
        }
        for p in raw.peers {
            let address = with_port(p.get_ref()).map_err(|e| at(p.span().start, e))?;
            s.peers.push(address);
        }
        s.tls = raw.tls;
        s.auth = Auth::from_raw(raw.auth).map_err(|(offset, message)| at(offset, message))?;
        s.admin_access = raw.admin_access;
        s.limits = raw.limits;
        s.store = raw.store;
        s.timeouts = raw.timeouts;
        for st in raw.subscription {
            let filter = compile_filter(st.filter.get_ref()).map_err(|e| {
                at(
                    st.filter.span().start,
                    format!("invalid filter in subscription {:?}: {e}", st.name),
                )
            })?;
            s.static_subscriptions.push(StaticSubscription {
                name: st.name,
                filter,
            });
        }
        Ok(s)
    }

    /// Final checks and derived defaults.
    pub(crate) fn finish(mut self) -> Result<Self, ConfigError> {
        if let Some(id) = &self.id
            && (id.is_empty() || id.len() > 64 || id.chars().any(char::is_whitespace))
        {
            return Err(ConfigError::Invalid(format!(
                "broker id {id:?}: 1 to 64 characters, no spaces"
            )));
        }
        let l = &self.limits;
        if l.max_frame_bytes < 1024 || l.max_frame_bytes > palio_protocol::MAX_FRAME_CEILING {
            return Err(ConfigError::Invalid(format!(
                "limits.max_frame_bytes must be between 1024 and {}",
                palio_protocol::MAX_FRAME_CEILING
            )));
        }
        if l.subscriber_buffer == 0
            || l.peer_queue == 0
            || l.subscriber_buffer_bytes == 0
            || l.peer_queue_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "limits.subscriber_buffer, subscriber_buffer_bytes, peer_queue and \
                 peer_queue_bytes must be positive"
                    .into(),
            ));
        }
        if l.max_connections == 0
            || l.max_connections_per_address == 0
            || l.max_connections_per_principal == 0
            || l.max_handshakes == 0
        {
            return Err(ConfigError::Invalid(
                "limits.max_connections, max_connections_per_address, \
                 max_connections_per_principal and max_handshakes must be positive"
                    .into(),
            ));
        }
        self.admin_access.check().map_err(ConfigError::Invalid)?;
        if l.max_brokers < 2 {
            return Err(ConfigError::Invalid(
                "limits.max_brokers must be at least 2".into(),
            ));
        }
        if l.max_groups == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_groups must be positive".into(),
            ));
        }
        if l.stall_timeout_ms < 100 {
            return Err(ConfigError::Invalid(
                "limits.stall_timeout_ms must be at least 100".into(),
            ));
        }
        if l.max_queues == 0 || l.max_consumers_per_client == 0 || l.max_producers == 0 {
            return Err(ConfigError::Invalid(
                "limits.max_queues, max_consumers_per_client and max_producers must be positive"
                    .into(),
            ));
        }
        let st = &self.store;
        if st.segment_bytes < 64 << 10 {
            return Err(ConfigError::Invalid(
                "store.segment_bytes must be at least 65536".into(),
            ));
        }
        if st.max_deliveries == 0 || st.ack_wait_ms == 0 || st.peer_window == 0 {
            return Err(ConfigError::Invalid(
                "store.max_deliveries, store.ack_wait_ms and store.peer_window must be positive"
                    .into(),
            ));
        }
        self.timeouts.check()?;
        let files = [&self.tls.cert, &self.tls.key, &self.tls.ca];
        let given = files.iter().filter(|f| f.is_some()).count();
        if given != 0 && given != 3 {
            return Err(ConfigError::Invalid(
                "tls.cert, tls.key and tls.ca must be given together".into(),
            ));
        }
        if given == 3 && self.tls.dir.is_some() {
            return Err(ConfigError::Invalid(
                "tls.dir (--tls-dir) and tls.cert/key/ca files exclude each other".into(),
            ));
        }
        if given == 0 && self.tls.dir.is_none() {
            self.tls.dir = Some(self.data_dir.join("tls"));
        }
        // The file's were checked with their line; `--peer`'s are checked here.
        for peer in &mut self.peers {
            *peer = with_port(peer).map_err(ConfigError::Invalid)?;
        }
        Ok(self)
    }
}

/// A configured peer address, checked, as `host:port`: a host alone takes
/// [`DEFAULT_PEER_PORT`], which is logged (at info level).
fn with_port(raw: &str) -> Result<String, String> {
    let checked = peer_address::parse(raw)?;
    if checked.defaulted {
        tracing::info!(
            peer = %raw,
            dialing = %checked.address,
            "peer address has no port; using the default port {DEFAULT_PEER_PORT}"
        );
    }
    Ok(checked.address)
}

/// Compiles a filter written in the configuration (a static subscription, a permission) and
/// checks it against the default evaluation cost budget, as client filters are.
pub(crate) fn compile_filter(source: &str) -> Result<SharedFilter, String> {
    let filter = SharedFilter::parse(source).map_err(|e| e.to_string())?;
    filter
        .filter()
        .check_cost(&palio_filter::CostBudget::default())
        .map_err(|e| e.to_string())?;
    Ok(filter)
}

fn parse_admin(a: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if a == "off" {
        return Ok(None);
    }
    a.parse()
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("admin address {a:?}: {e}")))
}

impl fmt::Display for SlowConsumerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SlowConsumerPolicy::Block => "block",
            SlowConsumerPolicy::Drop => "drop",
            SlowConsumerPolicy::Disconnect => "disconnect",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(Path::new("palio.toml"), text).and_then(Settings::finish)
    }

    #[test]
    fn a_links_lanes_share_its_queue_limit() {
        let l = load("[limits]\npeer_queue = 64\npeer_queue_bytes = 1000\n")
            .unwrap()
            .limits;
        let lane = l.lane_capacity(8);
        assert_eq!((lane.frames, lane.bytes), (8, 125));
        let tiny = l.lane_capacity(u8::MAX);
        assert_eq!((tiny.frames, tiny.bytes), (1, 3), "never an empty queue");
        assert_eq!(l.lane_capacity(0), l.peer_capacity());
    }

    #[test]
    fn defaults_need_nothing() {
        let s = Settings::load(&Overrides::default()).unwrap();
        assert_eq!(s.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(s.admin.unwrap().to_string(), DEFAULT_ADMIN);
        assert_eq!(s.tls.dir.unwrap(), Path::new(DEFAULT_DATA_DIR).join("tls"));
    }

    #[test]
    fn full_file_loads() {
        let s = load(
            r#"
id = "b1"
listen = "127.0.0.1:7401"
admin = "off"
strategy = "simple"
peers = ["127.0.0.1:7402"]
[auth]
[[auth.user]]
name = "alice"
token = "alice-secret"
subscribe = "region = 'eu'"
[admin_access]
token = "admin-secret"
routes = "summary"
[limits]
subscriber_buffer = 8
slow_consumer = "disconnect"
[[subscription]]
name = "alarms"
filter = "type = 'alarm'"
"#,
        )
        .unwrap();
        assert_eq!(s.id.as_deref(), Some("b1"));
        assert_eq!(s.admin, None);
        assert_eq!(s.strategy, Strategy::Simple);
        assert_eq!(s.limits.slow_consumer, SlowConsumerPolicy::Disconnect);
        assert_eq!(s.static_subscriptions.len(), 1);
        assert_eq!(s.auth.users[0].name, "alice");
        assert_eq!(s.admin_access.routes, RoutesDetail::Summary);
    }

    #[test]
    fn invalid_filter_names_file_line_and_problem() {
        let err = load("id = \"b1\"\n\n[[subscription]]\nname = \"x\"\nfilter = \"a = = 1\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("palio.toml:5:"), "{err}");
        assert!(err.contains("invalid filter"), "{err}");
    }

    #[test]
    fn max_groups_defaults_and_must_be_positive() {
        assert_eq!(load("").unwrap().limits.max_groups, 1024);
        assert_eq!(
            load("[limits]\nmax_groups = 7\n")
                .unwrap()
                .limits
                .max_groups,
            7
        );
        let err = load("[limits]\nmax_groups = 0\n").unwrap_err().to_string();
        assert!(err.contains("limits.max_groups"), "{err}");
    }

    #[test]
    fn unknown_key_names_line() {
        let err = load("id = \"b1\"\nlisten_addr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("palio.toml:2:"), "{err}");
        assert!(err.contains("unknown field"), "{err}");
    }

    #[test]
    fn timeouts_default_load_and_are_checked() {
        let d = load("").unwrap().timeouts;
        assert_eq!((d.keep_alive_ms, d.idle_timeout_ms), (1000, 5000));
        let t = load("[timeouts]\nkeep_alive_ms = 250\nidle_timeout_ms = 2000\n")
            .unwrap()
            .timeouts;
        assert_eq!(t.quic().keep_alive, std::time::Duration::from_millis(250));
        assert_eq!(t.quic().idle, std::time::Duration::from_secs(2));
        for bad in [
            "keep_alive_ms = 5000\nidle_timeout_ms = 5000",
            "keep_alive_ms = 9000",
            "keep_alive_ms = 10",
            "idle_timeout_ms = 99999999999",
        ] {
            let err = load(&format!("[timeouts]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains("timeouts."), "{bad}: {err}");
        }
        let err = load("[timeouts]\nidle_ms = 1\n").unwrap_err().to_string();
        assert!(
            err.starts_with("palio.toml:2:") && err.contains("unknown field"),
            "{err}"
        );
        // Flags override the file, and are checked the same way.
        let flags = Overrides {
            keep_alive_ms: Some(200),
            idle_timeout_ms: Some(1500),
            ..Overrides::default()
        };
        let s = Settings::load(&flags).unwrap();
        assert_eq!(
            (s.timeouts.keep_alive_ms, s.timeouts.idle_timeout_ms),
            (200, 1500)
        );
        let flags = Overrides {
            idle_timeout_ms: Some(500),
            ..Overrides::default()
        };
        assert!(Settings::load(&flags).is_err());
    }

    #[test]
    fn peers_without_a_port_take_the_default_one_from_the_file_and_flags() {
        let s = load("peers = [\"127.0.0.1\", \"127.0.0.1:7402\", \"b3.example\"]\n").unwrap();
        assert_eq!(
            s.peers,
            ["127.0.0.1:7400", "127.0.0.1:7402", "b3.example:7400"]
        );
        let flags = Overrides {
            peers: vec!["10.0.0.9".into(), "[::1]".into()],
            ..Overrides::default()
        };
        let s = Settings::load(&flags).unwrap();
        assert_eq!(s.peers, ["10.0.0.9:7400", "[::1]:7400"]);
        let err = load("id = \"b1\"\npeers = [\"b2.example:http\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("palio.toml:2:")
                && err.contains("peer address \"b2.example:http\"")
                && err.contains("host:port"),
            "{err}"
        );
        let flags = Overrides {
            peers: vec!["127.0.0.1:99999".into()],
            ..Overrides::default()
        };
        assert!(Settings::load(&flags).is_err());
    }

    #[test]
    fn unknown_strategy_and_partial_tls_are_refused() {
        let err = load("strategy = \"gossip\"\n").unwrap_err().to_string();
        assert!(
            err.contains("palio.toml:1:") && err.contains("gossip"),
            "{err}"
        );
        let err = load("[tls]\ncert = \"c.pem\"\n").unwrap_err().to_string();
        assert!(err.contains("together"), "{err}");
    }
}
