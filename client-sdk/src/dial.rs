//! Dialing a broker: the address (`host[:port]`, port [`DEFAULT_PORT`] when omitted), the TLS
//! credentials a [`ConnectOptions`] names, and the QUIC handshake, bounded by its connect
//! timeout. Every error names the address dialed and, where it helps, what to do.
//!
//! [`Client::connect`](crate::Client::connect) calls [`dial`], then sends the hello; a refusal
//! at the hello goes through [`refused`], which adds a hint when the client presented neither
//! a certificate nor a token.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::select_ok;
use palio_protocol::tls::{self, Identity};
use palio_protocol::{CLIENT_ALPN, ErrorCode};

use crate::client::ConnectOptions;
use crate::error::Error;

/// The port a broker listens on by default, used when an address has none.
///
/// ```
/// let opts = palio::ConnectOptions::new("127.0.0.1");
/// assert_eq!(opts.server(), format!("127.0.0.1:{}", palio::DEFAULT_PORT));
/// ```
pub const DEFAULT_PORT: u16 = 7400;

/// Splits a broker address into host and port: `host:port`, `[v6]:port`, or the same without
/// the port (then [`DEFAULT_PORT`]); a bare IPv6 address (`::1`) is a host. The host is
/// returned without brackets.
pub(crate) fn split_server(server: &str) -> Result<(String, u16), String> {
    let server = server.trim();
    if server.is_empty() {
        return Err("empty broker address (expected HOST or HOST:PORT)".into());
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{server:?}: the port {p:?} is not a number from 1 to 65535"))
    };
    if let Some(rest) = server.strip_prefix('[') {
        let Some((host, tail)) = rest.split_once(']') else {
            return Err(format!("{server:?}: '[' without a closing ']'"));
        };
        let host_ok = host.parse::<std::net::Ipv6Addr>().is_ok();
        return match (host_ok, tail) {
            (false, _) => Err(format!("{server:?}: {host:?} is not an IPv6 address")),
            (true, "") => Ok((host.to_owned(), DEFAULT_PORT)),
            (true, t) => match t.strip_prefix(':') {
                Some(p) => Ok((host.to_owned(), port(p)?)),
                None => Err(format!("{server:?}: expected ':PORT' after ']'")),
            },
        };
    }
    if server.parse::<IpAddr>().is_ok() {
        // A bare address, IPv6 included (its colons are not a port separator).
        return Ok((server.to_owned(), DEFAULT_PORT));
    }
    match server.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(format!(
            "{server:?}: an IPv6 address with a port is written [ADDRESS]:PORT"
        )),
        Some(("", _)) => Err(format!("{server:?}: no host before the port")),
        Some((host, p)) => Ok((host.to_owned(), port(p)?)),
        None => Ok((server.to_owned(), DEFAULT_PORT)),
    }
}

/// `server` written with its port (the default when omitted): `127.0.0.1` becomes
/// `127.0.0.1:7400`, `::1` becomes `[::1]:7400`. An address that does not parse is returned
/// as it is (connecting reports it).
pub(crate) fn normalize(server: &str) -> String {
    match split_server(server) {
        Ok((host, port)) if host.contains(':') => format!("[{host}]:{port}"),
        Ok((host, port)) => format!("{host}:{port}"),
        Err(_) => server.to_owned(),
    }
}

/// The socket addresses `server` resolves to, IPv4 first (a broker listens on 127.0.0.1 by
/// default, and `localhost` often resolves to `::1` first).
pub(crate) async fn resolve(server: &str) -> Result<Vec<SocketAddr>, Error> {
    let connect_err = |message: String| Error::Connect {
        server: server.to_owned(),
        message,
    };
    let (host, port) = split_server(server).map_err(connect_err)?;
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|e| connect_err(format!("cannot resolve {host:?}: {e}")))?
        .collect();
    addrs.sort_by_key(|a| a.is_ipv6());
    addrs.dedup();
    if addrs.is_empty() {
        return Err(connect_err(format!("{host:?} resolves to no address")));
    }
    Ok(addrs)
}

/// A QUIC connection to a broker, before the hello.
pub(crate) struct Dialed {
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) conn: quinn::Connection,
    /// Whether the client presented a certificate (else only a token, or nothing, can name it).
    pub(crate) presented_certificate: bool,
}

/// Loads the credentials `opts` names, resolves the broker's address and completes the QUIC
/// handshake with the first of its addresses that answers, all within `opts`' connect
/// timeout; [`Error::Unreachable`] when none answers in time.
pub(crate) async fn dial(opts: &ConnectOptions) -> Result<Dialed, Error> {
    let (roots, identity) = credentials(opts)?;
    let presented_certificate = identity.is_some();
    let config =
        tls::client_config_with(roots, identity, CLIENT_ALPN, &crate::reconnect::DEAD_BROKER)?;
    let unreachable = || Error::Unreachable {
        server: opts.server.clone(),
        waited: opts.connect_timeout,
    };
    let attempt = async {
        let addrs = resolve(&opts.server).await?;
        // Every address at once: the first handshake to complete wins.
        let attempts = addrs
            .into_iter()
            .map(|addr| Box::pin(handshake(opts, config.clone(), addr)));
        select_ok(attempts).await.map(|(dialed, _)| dialed)
    };
    let (endpoint, conn) = tokio::time::timeout(opts.connect_timeout, attempt)
        .await
        .map_err(|_| unreachable())??;
    Ok(Dialed {
        endpoint,
        conn,
        presented_certificate,
    })
}

/// One QUIC handshake with `addr`, from an endpoint of its own.
async fn handshake(
    opts: &ConnectOptions,
    config: quinn::ClientConfig,
    addr: SocketAddr,
) -> Result<(quinn::Endpoint, quinn::Connection), Error> {
    let connect_err = |message: String| Error::Connect {
        server: opts.server.clone(),
        message,
    };
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind).map_err(|e| connect_err(e.to_string()))?;
    let conn = endpoint
        .connect_with(config, addr, &opts.server_name)
        .map_err(|e| connect_err(e.to_string()))?
        .await
        .map_err(|e| connect_err(handshake_failure(&e, &opts.server_name)))?;
    Ok((endpoint, conn))
}

/// What a failed handshake means, with a hint for the certificate failures a wrong TLS
/// directory causes.
fn handshake_failure(e: &quinn::ConnectionError, server_name: &str) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!(
            "{text}: the broker's certificate is not from the CA given (is it this broker's TLS \
             directory? --tls-dir, --ca)"
        )
    } else if text.contains("NotValidForName") {
        format!("{text}: the broker's certificate does not name {server_name:?} (--server-name)")
    } else {
        text
    }
}

/// The refusal of a hello (`code`, `message`), with what to do when the broker wants
/// credentials this client did not present.
pub(crate) fn refused(
    opts: &ConnectOptions,
    presented_certificate: bool,
    code: ErrorCode,
    message: String,
) -> Error {
    let message =
        if code == ErrorCode::Unauthenticated && !presented_certificate && opts.token.is_none() {
            format!(
                "{message} (this client presented neither: give a TLS directory holding the client \
             identity client.pem and client-key.pem beside ca.pem, a certificate and key, or a \
             token; in the CLI --tls-dir, --cert/--key or --token)"
            )
        } else {
            message
        };
    Error::Refused { code, message }
}

/// The CA to trust and the identity to present. Reads neither the CA's key nor anything else
/// of a TLS directory than `ca.pem`, `client.pem` and `client-key.pem`.
fn credentials(opts: &ConnectOptions) -> Result<(rustls::RootCertStore, Option<Identity>), Error> {
    let ca_path = match (&opts.ca_file, &opts.tls_dir) {
        (Some(f), _) => f.clone(),
        (None, Some(dir)) => {
            let p = dir.join("ca.pem");
            if !p.exists() {
                return Err(tls::TlsError::NoCa(dir.clone()).into());
            }
            p
        }
        (None, None) => {
            return Err(Error::Connect {
                server: opts.server.clone(),
                message:
                    "no CA given (a TLS directory or a CA file): the broker cannot be verified"
                        .into(),
            });
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in tls::load_certs(&ca_path)? {
        roots.add(c).map_err(tls::TlsError::from)?;
    }
    // A client certificate from files; else the development client identity of the TLS
    // directory, if it holds one; otherwise the client relies on its token.
    let identity = match (&opts.cert_files, &opts.tls_dir) {
        (Some((cert, key)), _) => Some(Identity {
            chain: tls::load_certs(cert)?,
            key: tls::load_key(key)?,
        }),
        (None, Some(dir)) if opts.ca_file.is_none() => tls::dev_client_identity(dir)?,
        _ => None,
    };
    Ok((roots, identity))
}

/// How long [`ConnectOptions`] waits for a handshake by default.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_default_to_7400() {
        for (given, host, port) in [
            ("127.0.0.1", "127.0.0.1", 7400),
            ("127.0.0.1:7401", "127.0.0.1", 7401),
            ("localhost", "localhost", 7400),
            ("localhost:9", "localhost", 9),
            ("broker.example", "broker.example", 7400),
            ("[::1]", "::1", 7400),
            ("[::1]:7402", "::1", 7402),
            ("::1", "::1", 7400),
            ("fe80::1", "fe80::1", 7400),
            (" 127.0.0.1 ", "127.0.0.1", 7400),
        ] {
            assert_eq!(
                split_server(given),
                Ok((host.to_owned(), port)),
                "{given:?}"
            );
        }
    }

    #[test]
    fn bad_addresses_say_why() {
        for (given, says) in [
            ("", "empty"),
            ("localhost:", "port"),
            ("localhost:0", "port"),
            ("localhost:70000", "port"),
            ("localhost:http", "port"),
            (":7400", "no host"),
            ("[::1", "closing"),
            ("[nope]:1", "IPv6"),
            ("[::1]7400", "after ']'"),
            ("fe80::1:7400x", "[ADDRESS]:PORT"),
        ] {
            let e = split_server(given).expect_err(given);
            assert!(e.contains(says), "{given:?}: {e}");
        }
    }

    #[test]
    fn normalized_addresses_carry_the_port() {
        assert_eq!(normalize("127.0.0.1"), "127.0.0.1:7400");
        assert_eq!(normalize("localhost:7401"), "localhost:7401");
        assert_eq!(normalize("::1"), "[::1]:7400");
        assert_eq!(normalize("[::1]:9"), "[::1]:9");
        assert_eq!(normalize("nope:port"), "nope:port");
    }
}
