//! Configuration: the TOML file, the command-line overrides, and validation.
//!
//! Everything has an embedded default, so `palio-broker` runs with no file and no flags. A file
//! is read with unknown keys refused; every filter expression in it is compiled at load, and any
//! problem is reported with the file, line and column. The broker does not start
//! half-configured: [`Settings::load`] either returns a complete, valid configuration or an
//! error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use palio_topology::{SharedFilter, Strategy};

use crate::auth::RawAuth;
pub use crate::auth::{AdminAccess, Auth, RoutesDetail, User};
pub use peer_address::DEFAULT_PEER_PORT;

mod limits;
mod peer_address;
mod store;
mod timeouts;

pub use limits::{Limits, SlowConsumerPolicy};
use serde::Deserialize;
pub use store::StoreSettings;
pub use timeouts::Timeouts;
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
            let filter = crate::filters::compile(st.filter.get_ref()).map_err(|e| {
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

fn parse_admin(a: &str) -> Result<Option<SocketAddr>, ConfigError> {
    if a == "off" {
        return Ok(None);
    }
    a.parse()
        .map(Some)
        .map_err(|e| ConfigError::Invalid(format!("admin address {a:?}: {e}")))
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
