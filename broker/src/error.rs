//! Why a broker could not start.

use palio_protocol::tls;

/// A broker that could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// TLS material could not be loaded or created.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Neither a TLS directory nor certificate, key and CA files are configured.
    #[error("no TLS configuration: set tls.dir, or tls.cert, tls.key and tls.ca")]
    NoTls,
    /// The persistent store could not be opened or recovered.
    #[error("opening the store in {dir}: {message}")]
    Store {
        /// The store directory.
        dir: String,
        /// What went wrong.
        message: String,
    },
    /// Another broker holds the data directory's lock (`docs/operations.md`).
    #[error(
        "data directory {dir} is in use by another broker{}: stop it or give this one another --data-dir",
        holder.as_ref().map(|p| format!(" (process {p})")).unwrap_or_default()
    )]
    DataDirInUse {
        /// The data directory.
        dir: String,
        /// The process id the holder wrote into the lock file, if readable.
        holder: Option<String>,
    },
    /// A listener could not be bound, or a directory created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}
