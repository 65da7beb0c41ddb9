//! How the command line reaches a broker: the connection flags every broker command shares,
//! where the TLS material comes from when no flag names it, the short handshake bound, and
//! connection errors that name the address with a hint.
//!
//! TLS material, when neither `--tls-dir` (`PALIO_TLS_DIR`) nor `--ca` (`PALIO_CA`) is given:
//! `./palio-data/tls` if it holds a CA (a broker started in this directory on its defaults),
//! else the TLS directory the broker at `--server` recorded for the user's clients
//! (`palio_protocol::tls::registered_tls_dir`), else `./palio-data/tls` again, which fails
//! with a message saying where the CLI looked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use palio_protocol::tls;

use crate::dial::{normalize, resolve, split_server};
use crate::{Client, ConnectOptions, Error};

/// How long the CLI waits for a broker's handshake: QUIC over UDP hears nothing from a closed
/// port, so this is how long "no broker there" takes to report.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The TLS directory of a broker started on its defaults in the current directory.
const DEFAULT_TLS_DIR: &str = "./palio-data/tls";

/// How to reach the broker (shared by every command that talks to one).
#[derive(Debug, Args)]
pub(super) struct Connection {
    /// Broker address, HOST[:PORT] (port 7400 when omitted).
    #[arg(
        short = 's',
        long,
        env = "PALIO_SERVER",
        default_value = "127.0.0.1:7400",
        value_parser = parse_server
    )]
    server: String,
    /// Development PKI directory shared with the broker (ca.pem, client.pem, client-key.pem)
    /// [default: ./palio-data/tls if it holds ca.pem, else the directory the broker at
    /// --server recorded for local clients].
    #[arg(long, env = "PALIO_TLS_DIR")]
    tls_dir: Option<PathBuf>,
    /// CA certificate file (PEM) to trust instead of the TLS directory's.
    #[arg(long, env = "PALIO_CA")]
    ca: Option<PathBuf>,
    /// Client certificate chain file (PEM), with --key.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// Client private key file (PEM), with --cert.
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Bearer token of a configured user (`[[auth.user]] token`).
    #[arg(long, env = "PALIO_TOKEN")]
    token: Option<String>,
    /// Name the broker's certificate must carry.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

/// Where the TLS directory came from, for the error when it has no CA.
enum TlsDirSource {
    /// `--tls-dir` or `PALIO_TLS_DIR` (or none, with `--ca`).
    Given,
    /// The broker's record for local clients.
    Recorded,
    /// The default, after the broker's record was looked for and not found.
    Default,
}

impl Connection {
    /// The broker's address, with its port.
    pub(super) fn server(&self) -> String {
        ConnectOptions::new(&self.server).server().to_owned()
    }

    /// Connects as `name` (the broker's logs show it), within [`CONNECT_TIMEOUT`]. A lost
    /// connection ends the command: only `palio sub` reconnects ([`connect_with`]).
    ///
    /// [`connect_with`]: Self::connect_with
    pub(super) async fn connect(&self, name: &str) -> anyhow::Result<Client> {
        self.connect_with(name, |o| Ok(o.no_reconnect())).await
    }

    /// Connects as [`connect`](Self::connect) does, with the options `adjust` makes of the
    /// command line's.
    pub(super) async fn connect_with(
        &self,
        name: &str,
        adjust: impl FnOnce(ConnectOptions) -> anyhow::Result<ConnectOptions>,
    ) -> anyhow::Result<Client> {
        let server = &self.server;
        let (tls_dir, source) = self.tls_dir(server).await;
        let mut o = ConnectOptions::new(server)
            .server_name(&self.server_name)
            .connect_timeout(CONNECT_TIMEOUT)
            .name(name);
        if let Some(dir) = &tls_dir {
            o = o.tls_dir(dir);
        }
        if let Some(t) = &self.token {
            o = o.token(t);
        }
        if let Some(ca) = &self.ca {
            o = o.ca_file(ca);
        }
        if let (Some(c), Some(k)) = (&self.cert, &self.key) {
            o = o.cert_files(c, k);
        }
        Client::connect(adjust(o)?)
            .await
            .map_err(|e| explain(e, server, source))
    }

    /// The TLS directory to use, and where it came from; none with `--ca` alone.
    async fn tls_dir(&self, server: &str) -> (Option<PathBuf>, TlsDirSource) {
        if let Some(d) = &self.tls_dir {
            return (Some(d.clone()), TlsDirSource::Given);
        }
        if self.ca.is_some() {
            return (None, TlsDirSource::Given);
        }
        let default = Path::new(DEFAULT_TLS_DIR);
        if default.join("ca.pem").is_file() {
            return (Some(default.to_owned()), TlsDirSource::Default);
        }
        let recorded = match resolve(server).await {
            Ok(addrs) => addrs.into_iter().find_map(tls::registered_tls_dir),
            Err(_) => None,
        };
        match recorded {
            Some(d) => (Some(d), TlsDirSource::Recorded),
            None => (Some(default.to_owned()), TlsDirSource::Default),
        }
    }
}

/// `--server` with its port (the default when omitted); an address that does not parse is a
/// usage error.
fn parse_server(s: &str) -> Result<String, String> {
    split_server(s)?;
    Ok(normalize(s))
}

/// A connection error as the CLI reports it: naming the address, with the flags to change.
fn explain(e: Error, server: &str, source: TlsDirSource) -> anyhow::Error {
    match e {
        Error::Unreachable { server, waited } => anyhow::anyhow!(
            "no broker answered at {server} within {waited:?} (is palio-broker running there? \
             --server/-s, PALIO_SERVER)"
        ),
        Error::Tls(tls::TlsError::NoCa(dir)) => match source {
            TlsDirSource::Default => anyhow::anyhow!(
                "no broker known at {server}: none recorded its TLS directory there for local \
                 clients{}, and {} has no ca.pem (is palio-broker running at {server}? \
                 --server/-s; for a broker elsewhere give --tls-dir DIR, its TLS directory, or \
                 --ca FILE)",
                tls::registry_dir()
                    .map(|d| format!(" (in {})", d.display()))
                    .unwrap_or_default(),
                dir.display(),
            ),
            TlsDirSource::Given | TlsDirSource::Recorded => anyhow::anyhow!(
                "cannot connect to {server}: {} has no development CA (ca.pem): is it the \
                 broker's TLS directory (--tls-dir, PALIO_TLS_DIR)?",
                dir.display()
            ),
        },
        e @ Error::Connect { .. } => e.into(),
        e => anyhow::Error::new(e).context(format!("connecting to {server}")),
    }
}
