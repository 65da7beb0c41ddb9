//! The development PKI: a CA kept in a TLS directory, and the leaves issued from it.
//!
//! The directory holds the CA (`ca.pem`, and its key `ca-key.pem`, which only brokers read)
//! and a client identity (`client.pem`, `client-key.pem`, common name [`DEV_CLIENT_NAME`]),
//! issued once by the first broker started with the directory ([`DevPki::ensure_client_files`])
//! and presented by clients given it ([`dev_client_identity`]). Brokers issue themselves a
//! leaf in memory at every start ([`DevPki::issue`]) that names them
//! ([`broker_uri`](super::broker_uri)); client leaves never name a broker.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{DEV_SERVER_NAME, Identity, TlsError, broker_uri, io_err, load_certs, load_key};

/// The common name of the development client identity: the principal a client using a TLS
/// directory's client files authenticates as.
pub const DEV_CLIENT_NAME: &str = "palio-dev";
/// The development client identity's certificate chain (leaf, then CA), in a TLS directory.
pub const DEV_CLIENT_CERT: &str = "client.pem";
/// The development client identity's private key (mode 0600), in a TLS directory.
pub const DEV_CLIENT_KEY: &str = "client-key.pem";

/// How long a process waits for another one that is creating a file of the directory:
/// `WAIT_ROUNDS` checks, `WAIT_STEP` apart (5 s in all).
const WAIT_ROUNDS: u32 = 100;
const WAIT_STEP: Duration = Duration::from_millis(50);

/// The development CA of a TLS directory.
#[derive(Debug)]
pub struct DevPki {
    /// The CA certificate, trusted by everyone using the directory.
    ca: CertificateDer<'static>,
    /// The CA key, to issue leaves.
    issuer: Issuer<'static, KeyPair>,
    /// The directory.
    dir: PathBuf,
}

fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "Palio development CA");
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(p)
}

impl DevPki {
    /// Opens the CA in `dir`, creating the directory and a new CA if there is none. Safe
    /// against another process creating it at the same time (see [`create_once`]).
    pub fn open_or_create(dir: &Path) -> Result<Self, TlsError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        create_once(dir, "ca.pem", "the CA", || {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            replace_file(
                &dir.join("ca-key.pem"),
                key.serialize_pem().as_bytes(),
                true,
            )?;
            replace_file(&dir.join("ca.pem"), cert.pem().as_bytes(), false)
        })?;
        Self::open(dir)
    }

    /// Opens the CA in `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join("ca.pem");
        if !cert_path.exists() {
            return Err(TlsError::NoCa(dir.to_owned()));
        }
        let ca = load_certs(&cert_path)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::Pem {
                path: cert_path.clone(),
                message: "no certificate".into(),
            })?;
        let key_path = dir.join("ca-key.pem");
        let pem = fs::read_to_string(&key_path).map_err(io_err(&key_path))?;
        let key = KeyPair::from_pem(&pem)?;
        Ok(Self {
            ca,
            issuer: Issuer::new(ca_params()?, key),
            dir: dir.to_owned(),
        })
    }

    /// The CA certificate.
    pub fn ca(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    /// A root store trusting this CA only.
    pub fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }

    /// Issues a broker's leaf certificate: common name `name`, naming broker `name` (a URI SAN
    /// [`broker_uri`](super::broker_uri)`(name)`), valid as a server (for [`DEV_SERVER_NAME`],
    /// the loopback addresses and `extra_names`) and as a client.
    pub fn issue(&self, name: &str, extra_names: &[String]) -> Result<Identity, TlsError> {
        let (cert, key) = self.issue_broker_leaf(name, extra_names)?;
        Ok(Identity {
            chain: vec![cert.der().clone(), self.ca.clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    /// Like [`issue`](Self::issue), but writes the chain and key as PEM files `<name>.pem`
    /// and `<name>-key.pem` in `dir` (for configurations that name certificate files), and
    /// returns their paths.
    pub fn issue_files(
        &self,
        name: &str,
        extra_names: &[String],
        dir: &Path,
    ) -> Result<(PathBuf, PathBuf), TlsError> {
        let (cert, key) = self.issue_broker_leaf(name, extra_names)?;
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}-key.pem"));
        let ca_pem = fs::read_to_string(self.dir.join("ca.pem")).map_err(io_err(&self.dir))?;
        fs::write(&cert_path, cert.pem() + &ca_pem).map_err(io_err(&cert_path))?;
        write_private(&key_path, key.serialize_pem().as_bytes())?;
        Ok((cert_path, key_path))
    }

    fn issue_broker_leaf(
        &self,
        name: &str,
        extra_names: &[String],
    ) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        let mut sans = vec![
            SanType::URI(broker_uri(name).try_into()?),
            SanType::DnsName(DEV_SERVER_NAME.try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ];
        for n in extra_names {
            match n.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(n.as_str().try_into()?)),
            }
        }
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

impl DevPki {
    /// Issues a client-only leaf named `name`: no server names, client-auth usage only, so it
    /// cannot act as a broker (peers must hold a certificate valid as a server; see
    /// [`verify_as_server`](super::verify_as_server)).
    /// It names no broker either.
    pub fn issue_client(&self, name: &str) -> Result<Identity, TlsError> {
        let (cert, key) = self.client_leaf(name)?;
        Ok(Identity {
            chain: vec![cert.der().clone(), self.ca.clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }

    /// Writes the directory's client identity ([`DEV_CLIENT_CERT`], [`DEV_CLIENT_KEY`]: a
    /// client-only leaf named [`DEV_CLIENT_NAME`]) unless it is there, and returns the two
    /// paths. Safe against another process doing the same (see [`create_once`]).
    pub fn ensure_client_files(&self) -> Result<(PathBuf, PathBuf), TlsError> {
        let cert_path = self.dir.join(DEV_CLIENT_CERT);
        let key_path = self.dir.join(DEV_CLIENT_KEY);
        create_once(&self.dir, DEV_CLIENT_CERT, "the client identity", || {
            let (cert, key) = self.client_leaf(DEV_CLIENT_NAME)?;
            let ca_pem = fs::read_to_string(self.dir.join("ca.pem")).map_err(io_err(&self.dir))?;
            // The key first: a reader that finds the certificate finds its key.
            replace_file(&key_path, key.serialize_pem().as_bytes(), true)?;
            replace_file(&cert_path, (cert.pem() + &ca_pem).as_bytes(), false)
        })?;
        Ok((cert_path, key_path))
    }

    fn client_leaf(&self, name: &str) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert, key))
    }
}

/// The client identity of the TLS directory `dir` ([`DEV_CLIENT_CERT`], [`DEV_CLIENT_KEY`]),
/// or `None` when it has none (a directory holding only `ca.pem`: the client then needs a
/// token). Reads neither the CA's key nor anything else.
pub fn dev_client_identity(dir: &Path) -> Result<Option<Identity>, TlsError> {
    let cert = dir.join(DEV_CLIENT_CERT);
    if !cert.exists() {
        return Ok(None);
    }
    Ok(Some(Identity {
        chain: load_certs(&cert)?,
        key: load_key(&dir.join(DEV_CLIENT_KEY))?,
    }))
}

/// Makes `dir/target` exist, once, however many processes try at the same time: the one that
/// creates `dir/<target>.lock` (create-new) runs `write`, which must write `target` last, then
/// removes the lock whether `write` succeeded or not; the others wait for `target` (bounded),
/// then use it. `what` names it in errors. A lock left behind by a process that crashed makes
/// the others fail with an error saying to remove it.
fn create_once(
    dir: &Path,
    target: &str,
    what: &str,
    write: impl FnOnce() -> Result<(), TlsError>,
) -> Result<(), TlsError> {
    let path = dir.join(target);
    if path.exists() {
        return Ok(());
    }
    let lock = dir.join(format!("{target}.lock"));
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(_) => {
            let written = write();
            let _ = fs::remove_file(&lock);
            written
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for _ in 0..WAIT_ROUNDS {
                if path.exists() {
                    return Ok(());
                }
                std::thread::sleep(WAIT_STEP);
            }
            Err(TlsError::Pem {
                path: lock,
                message: format!(
                    "another process is creating {what} and did not finish; \
                     remove the lock file if it crashed"
                ),
            })
        }
        Err(e) => Err(io_err(&lock)(e)),
    }
}

/// Writes `path` whole or not at all: into `<path>.tmp` (mode 0600 when `private`), then
/// renamed over `path`.
fn replace_file(path: &Path, bytes: &[u8], private: bool) -> Result<(), TlsError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    // A leftover of a crashed attempt (we hold the lock: no one else writes it).
    let _ = fs::remove_file(&tmp);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CLIENT_ALPN;
    use crate::tls::{CertNames, client_config, server_config, verify_as_server};

    #[test]
    fn ca_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("palio-pki-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = DevPki::open_or_create(&dir).unwrap();
        let b = DevPki::open_or_create(&dir).unwrap();
        assert_eq!(a.ca(), b.ca());
        let leaf = b.issue("b1", &["example.test".into()]).unwrap();
        assert_eq!(leaf.chain.len(), 2);
        assert!(server_config(leaf.clone(), a.roots().unwrap()).is_ok());
        assert!(verify_as_server(&a.roots().unwrap(), &leaf.chain, DEV_SERVER_NAME).is_ok());
        assert!(client_config(a.roots().unwrap(), Some(leaf), CLIENT_ALPN).is_ok());
        let client = a.issue_client("cli").unwrap();
        assert!(verify_as_server(&a.roots().unwrap(), &client.chain, DEV_SERVER_NAME).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A fresh directory under the system's temp directory, removed by the caller.
    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("palio-pki-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn names(identity: &Identity) -> CertNames {
        CertNames::of(&identity.chain[0]).unwrap()
    }

    #[test]
    fn broker_leaves_name_their_broker_and_client_leaves_do_not() {
        let dir = temp_dir("names");
        let pki = DevPki::open_or_create(&dir).unwrap();
        let broker = names(&pki.issue("eu/b 1", &["example.test".into()]).unwrap());
        assert_eq!(broker.brokers().unwrap(), vec!["eu/b 1".to_owned()]);
        assert_eq!(broker.common_name.as_deref(), Some("eu/b 1"));
        assert_eq!(broker.uris, vec![broker_uri("eu/b 1")]);
        assert_eq!(broker.dns_names, vec![DEV_SERVER_NAME, "example.test"]);
        let (cert, _) = pki.issue_files("b2", &[], &dir).unwrap();
        let from_file = CertNames::of(&load_certs(&cert).unwrap()[0]).unwrap();
        assert_eq!(from_file.brokers().unwrap(), vec!["b2".to_owned()]);
        let client = names(&pki.issue_client("app").unwrap());
        assert!(client.brokers().unwrap().is_empty());
        assert!(client.uris.is_empty() && client.dns_names.is_empty());
        assert_eq!(client.in_order().collect::<Vec<_>>(), vec!["app"]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_client_identity_is_written_once_and_is_client_only() {
        let dir = temp_dir("client");
        let pki = DevPki::open_or_create(&dir).unwrap();
        assert!(dev_client_identity(&dir).unwrap().is_none());
        let (cert, key) = pki.ensure_client_files().unwrap();
        assert_eq!(cert, dir.join(DEV_CLIENT_CERT));
        assert_eq!(key, dir.join(DEV_CLIENT_KEY));
        let first = fs::read(&cert).unwrap();
        pki.ensure_client_files().unwrap();
        DevPki::open_or_create(&dir)
            .unwrap()
            .ensure_client_files()
            .unwrap();
        assert_eq!(fs::read(&cert).unwrap(), first, "written once");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Without the CA's key, the directory's client identity is still there to present.
        fs::remove_file(dir.join("ca-key.pem")).unwrap();
        let identity = dev_client_identity(&dir).unwrap().expect("client identity");
        assert_eq!(identity.chain.len(), 2);
        assert_eq!(&identity.chain[1], pki.ca());
        let n = names(&identity);
        assert_eq!(n.common_name.as_deref(), Some(DEV_CLIENT_NAME));
        assert!(n.brokers().unwrap().is_empty());
        let roots = pki.roots().unwrap();
        assert!(verify_as_server(&roots, &identity.chain, DEV_SERVER_NAME).is_err());
        assert!(client_config(roots, Some(identity), CLIENT_ALPN).is_ok());
        // A certificate with its key missing is a clear error, not "no identity".
        fs::remove_file(&key).unwrap();
        let err = dev_client_identity(&dir).unwrap_err().to_string();
        assert!(err.contains(DEV_CLIENT_KEY), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_ca_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("palio-pki-none-{}", std::process::id()));
        assert!(matches!(DevPki::open(&dir), Err(TlsError::NoCa(_))));
    }
}
