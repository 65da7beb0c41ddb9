//! The development PKI: a CA kept in a TLS directory, and the leaves issued from it.

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

use super::{DEV_SERVER_NAME, Identity, TlsError, io_err, load_certs};

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
    /// against another process creating it at the same time (the key is written with
    /// create-new semantics; the loser waits for the winner's files).
    pub fn open_or_create(dir: &Path) -> Result<Self, TlsError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let cert_path = dir.join("ca.pem");
        if cert_path.exists() {
            return Self::open(dir);
        }
        let lock = dir.join("ca.lock");
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => {
                let key = KeyPair::generate()?;
                let cert = ca_params()?.self_signed(&key)?;
                write_private(&dir.join("ca-key.pem"), key.serialize_pem().as_bytes())?;
                let tmp = dir.join("ca.pem.tmp");
                fs::write(&tmp, cert.pem()).map_err(io_err(&tmp))?;
                fs::rename(&tmp, &cert_path).map_err(io_err(&cert_path))?;
                let _ = fs::remove_file(&lock);
                Self::open(dir)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                for _ in 0..100 {
                    if cert_path.exists() {
                        return Self::open(dir);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TlsError::Pem {
                    path: lock,
                    message: "another process is creating the CA and did not finish; \
                              remove the lock file if it crashed"
                        .into(),
                })
            }
            Err(e) => Err(io_err(&lock)(e)),
        }
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

    /// Issues a leaf certificate named `name`, valid as a server (for [`DEV_SERVER_NAME`],
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
    pub fn issue_client(&self, name: &str) -> Result<Identity, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Identity {
            chain: vec![cert.der().clone(), self.ca.clone()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        })
    }
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
    use crate::tls::{client_config, server_config, verify_as_server};

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

    #[test]
    fn missing_ca_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("palio-pki-none-{}", std::process::id()));
        assert!(matches!(DevPki::open(&dir), Err(TlsError::NoCa(_))));
    }
}
