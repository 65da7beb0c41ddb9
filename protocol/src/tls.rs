//! Transport security: the development PKI, certificate files, and the QUIC/TLS configurations
//! shared by the broker and the SDK (so both sides agree on ALPN, windows and timeouts).
//!
//! # The development PKI
//!
//! A *TLS directory* holds a CA (`ca.pem`, `ca-key.pem`) and a client identity it issued
//! (`client.pem`, `client-key.pem`). The broker creates them on first start when the directory
//! has none ([`DevPki::open_or_create`], [`DevPki::ensure_client_files`]); afterwards every
//! broker given the directory issues itself a leaf certificate from that CA, in memory
//! ([`DevPki::issue`]), and every client presents the client identity
//! ([`dev_client_identity`]), so they all trust each other with no further setup, and clients
//! never need the CA's key. A broker given another directory has another CA and is refused by
//! mutual TLS. This is for development: a production deployment configures certificate files
//! instead ([`load_certs`], [`load_key`]).
//!
//! # Identities
//!
//! A broker certificate names its broker in a URI SAN ([`broker_uri`]); peers check the name a
//! broker claims in its hello against it. [`CertNames`] reads the names of any certificate
//! (common name, DNS, e-mail and URI SANs), by which a client certificate maps to a principal.
//!
//! # Provider
//!
//! Only the `ring` crypto provider is compiled in, and every configuration is built with it
//! explicitly, so nothing depends on a process-wide default provider.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::{CLIENT_ALPN, PEER_ALPN};

mod dev_pki;
mod names;

pub use self::dev_pki::{
    DEV_CLIENT_CERT, DEV_CLIENT_KEY, DEV_CLIENT_NAME, DevPki, dev_client_identity,
};
pub use self::names::{BROKER_URI_PREFIX, CertNames, broker_uri};

/// The server name brokers' development certificates carry, and that clients verify when
/// connecting to an IP address.
pub const DEV_SERVER_NAME: &str = "localhost";

/// Receive window per stream: 1 MiB. Bounds what one stream can have in flight toward us.
pub const STREAM_WINDOW: u32 = 1 << 20;
/// Receive window per connection: 16 MiB. Quinn's default is unbounded.
pub const CONNECTION_WINDOW: u32 = 16 << 20;
/// Receive window of a connection a broker accepted, until the other side has authenticated
/// (a client's hello, a peer's hello): 64 KiB. All a stranger can make the broker buffer; the
/// broker raises it to [`CONNECTION_WINDOW`] once it knows who is there.
pub const PRE_AUTH_WINDOW: u32 = 64 << 10;
/// Keep-alive: after 1 s without receiving anything, a side sends a PING, which the other
/// acknowledges. An idle but healthy connection thus carries a packet each way every second,
/// which keeps NAT bindings open and lets the idle timeout tell silence from death.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Idle timeout the broker offers: a connection that received nothing for 5 s (five
/// keep-alives in a row lost) is dead. This is how a broker notices a peer or client that
/// crashed or became unreachable without closing its connection; 5 s keeps the loss window
/// short while a short burst of loss or a scheduling pause does not end a healthy link.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle timeout a client offers: longer than any broker would configure, so that the broker's
/// (the smaller of the two is used) decides.
pub const CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How a QUIC connection notices that its peer has gone silent.
///
/// Each side offers an idle timeout in the handshake and the connection uses the smaller
/// (RFC 9000, section 10.1); keep-alives are needed on one side only, and must come more often
/// than the negotiated idle timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Time without receiving anything after which this side sends a PING.
    pub keep_alive: Duration,
    /// Time without receiving anything after which this side closes the connection as dead.
    pub idle: Duration,
}

impl Timeouts {
    /// The broker's defaults, for its endpoint and the links it dials.
    pub const BROKER: Timeouts = Timeouts {
        keep_alive: KEEP_ALIVE,
        idle: IDLE_TIMEOUT,
    };
    /// A client's: pings as often as the broker does, so an idle client is never dropped
    /// whatever idle timeout the broker uses (as long as it exceeds a second), and offers a long
    /// idle timeout so that the broker's decides.
    pub const CLIENT: Timeouts = Timeouts {
        keep_alive: KEEP_ALIVE,
        idle: CLIENT_IDLE_TIMEOUT,
    };
}

/// A TLS or PKI failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A PEM file held nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        message: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration does not suit QUIC.
    #[error("QUIC TLS configuration: {0}")]
    Quic(String),
    /// A certificate does not parse, or carries a name that does not (a bad broker URI).
    #[error("{0}")]
    Certificate(String),
    /// No CA in the TLS directory.
    #[error("{0}: no development CA (ca.pem); start a broker with this --tls-dir first")]
    NoCa(PathBuf),
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct Identity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Checks that `chain` (leaf first) is one we would accept from a broker we dial: chained to
/// `roots`, valid now, usable for server authentication and valid for `server_name`. A broker
/// applies it to a peer that dials in, so a client certificate cannot pose as a broker.
pub fn verify_as_server(
    roots: &RootCertStore,
    chain: &[CertificateDer<'static>],
    server_name: &str,
) -> Result<(), TlsError> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    let Some((leaf, intermediates)) = chain.split_first() else {
        return Err(TlsError::Quic("no certificate presented".into()));
    };
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots.clone()),
        provider(),
    )
    .build()
    .map_err(|e| TlsError::Quic(e.to_string()))?;
    let name = ServerName::try_from(server_name.to_owned())
        .map_err(|e| TlsError::Quic(format!("server name {server_name:?}: {e}")))?;
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
        .map_err(TlsError::Config)
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            message: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// Reads the first private key of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Pem {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The QUIC transport parameters both sides use: explicit windows and timeouts.
pub fn transport_config(max_bidi: u32, max_uni: u32, timeouts: &Timeouts) -> TransportConfig {
    let mut t = TransportConfig::default();
    t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW))
        .receive_window(VarInt::from_u32(CONNECTION_WINDOW))
        .send_window(u64::from(CONNECTION_WINDOW))
        .keep_alive_interval(Some(timeouts.keep_alive))
        // Beyond 2^62 ms (no configuration gets near it) the longest timeout QUIC can express.
        .max_idle_timeout(Some(
            IdleTimeout::try_from(timeouts.idle).unwrap_or(IdleTimeout::from(VarInt::MAX)),
        ))
        .max_concurrent_bidi_streams(VarInt::from_u32(max_bidi))
        .max_concurrent_uni_streams(VarInt::from_u32(max_uni));
    t
}

/// The broker's server configuration: both ALPNs, this identity, and client certificates
/// verified against `roots` when presented (required for peers by the broker, optional for
/// clients, which may use a token instead). Uses [`Timeouts::BROKER`].
pub fn server_config(
    identity: Identity,
    roots: RootCertStore,
) -> Result<quinn::ServerConfig, TlsError> {
    server_config_with(identity, roots, &Timeouts::BROKER)
}

/// [`server_config`] with the given timeouts.
pub fn server_config_with(
    identity: Identity,
    roots: RootCertStore,
    timeouts: &Timeouts,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain, identity.key)?;
    tls.alpn_protocols = vec![CLIENT_ALPN.to_vec(), PEER_ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    // Clients and peers open one control stream each; the broker opens the delivery stream.
    let mut transport = transport_config(4, 0, timeouts);
    transport.receive_window(VarInt::from_u32(PRE_AUTH_WINDOW));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// A client configuration for `alpn`, trusting `roots`, presenting `identity` if given. Uses
/// [`Timeouts::CLIENT`] (the SDK's); a broker dialing a peer uses [`client_config_with`].
pub fn client_config(
    roots: RootCertStore,
    identity: Option<Identity>,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    client_config_with(roots, identity, alpn, &Timeouts::CLIENT)
}

/// [`client_config`] with the given timeouts.
pub fn client_config_with(
    roots: RootCertStore,
    identity: Option<Identity>,
    alpn: &[u8],
    timeouts: &Timeouts,
) -> Result<quinn::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots);
    let mut tls = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain, id.key)?,
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![alpn.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| TlsError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config(4, 4, timeouts)));
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_ping_before_any_broker_gives_up_on_them() {
        // A client's keep-alive must come before the idle timeout the broker offers, and the
        // client must not impose a shorter idle timeout than the broker's.
        assert!(Timeouts::CLIENT.keep_alive < Timeouts::BROKER.idle);
        assert!(Timeouts::CLIENT.idle >= Timeouts::BROKER.idle);
        assert!(Timeouts::BROKER.keep_alive < Timeouts::BROKER.idle);
        // An idle timeout QUIC cannot express is clamped, not dropped.
        let huge = Timeouts {
            keep_alive: KEEP_ALIVE,
            idle: Duration::from_secs(u64::MAX / 2),
        };
        let clamped = format!("{:?}", transport_config(1, 1, &huge));
        assert!(clamped.contains(&VarInt::MAX.to_string()), "{clamped}");
        let broker = format!("{:?}", transport_config(4, 0, &Timeouts::BROKER));
        assert!(broker.contains("keep_alive_interval: Some(1s)"), "{broker}");
        assert!(broker.contains("(5000)"), "{broker}");
    }
}
