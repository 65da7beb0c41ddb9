//! Where the brokers a user runs keep their development PKI, so that a client on the same
//! machine finds the CA and client identity of the broker it dials without being told.
//!
//! A broker using a TLS directory writes one small file per address it listens on
//! ([`Registration::register`]) in the user's state directory ([`registry_dir`]:
//! `$XDG_STATE_HOME/palio/brokers`, else `~/.local/state/palio/brokers`), named after the
//! address (`127.0.0.1_7400`). The file holds the absolute path of the TLS directory, then the
//! broker's process id; dropping the [`Registration`] removes the file if it still holds what
//! this broker wrote. A client looks the address up ([`registered_tls_dir`]) and uses the
//! directory only if it holds a CA (`ca.pem`). The record names a directory and nothing
//! else: what a client reads there is the CA certificate and the client identity, never the
//! CA's key. A record left behind by a broker that crashed names a directory whose CA a new
//! broker on that address may not share: the client's handshake then fails on the broker's
//! certificate, which says so.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

use super::TlsError;

/// The directory of records for the current user: `$XDG_STATE_HOME/palio/brokers`, else
/// `$HOME/.local/state/palio/brokers`; `None` when neither variable names an absolute path.
pub fn registry_dir() -> Option<PathBuf> {
    registry_dir_from(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
}

fn registry_dir_from(xdg_state_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let state = absolute(xdg_state_home).or_else(|| absolute(home).map(|h| h.join(".local/state")));
    state.map(|s| s.join("palio").join("brokers"))
}

/// The record's file name for `addr`: `127.0.0.1_7400`, `::1_7400`.
fn record_name(addr: SocketAddr) -> String {
    format!("{}_{}", addr.ip(), addr.port())
}

/// A broker's record of its TLS directory, removed when dropped (if it is still this
/// broker's).
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    contents: String,
}

impl Registration {
    /// Records, in [`registry_dir`], that the broker listening on `addr` uses the TLS directory
    /// `tls_dir`. `Ok(None)` when the user has no state directory.
    pub fn register(addr: SocketAddr, tls_dir: &Path) -> Result<Option<Self>, TlsError> {
        match registry_dir() {
            Some(dir) => Self::register_in(&dir, addr, tls_dir).map(Some),
            None => Ok(None),
        }
    }

    fn register_in(dir: &Path, addr: SocketAddr, tls_dir: &Path) -> Result<Self, TlsError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| TlsError::Io { path, source }
        };
        let tls_dir = fs::canonicalize(tls_dir).map_err(io(tls_dir))?;
        let Some(text) = tls_dir.to_str().filter(|t| !t.contains('\n')) else {
            return Err(io(&tls_dir)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a path that is not UTF-8 or holds a line break cannot be recorded for clients",
            )));
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(record_name(addr));
        let contents = format!("{text}\n{}\n", std::process::id());
        // Written beside, then renamed over: a client never reads half a record.
        let tmp = dir.join(format!(".{}.{}", record_name(addr), std::process::id()));
        let written = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(contents.as_bytes()))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io(&path)(e));
        }
        Ok(Self { path, contents })
    }

    /// The record's file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if fs::read_to_string(&self.path).is_ok_and(|c| c == self.contents) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The TLS directory recorded for a broker listening on `addr` (or on the unspecified address
/// of its family, same port), if the user's registry has one and it holds a CA.
pub fn registered_tls_dir(addr: SocketAddr) -> Option<PathBuf> {
    registered_tls_dir_in(&registry_dir()?, addr)
}

fn registered_tls_dir_in(dir: &Path, addr: SocketAddr) -> Option<PathBuf> {
    let any: IpAddr = match addr.ip() {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    [addr, SocketAddr::new(any, addr.port())]
        .into_iter()
        .find_map(|a| {
            let text = fs::read_to_string(dir.join(record_name(a))).ok()?;
            let tls_dir = PathBuf::from(text.lines().next()?);
            tls_dir.join("ca.pem").is_file().then_some(tls_dir)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "palio-registry-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn the_state_directory_follows_xdg_then_home() {
        let xdg = Some(OsString::from("/x/state"));
        let home = Some(OsString::from("/home/u"));
        assert_eq!(
            registry_dir_from(xdg, home.clone()),
            Some(PathBuf::from("/x/state/palio/brokers"))
        );
        assert_eq!(
            registry_dir_from(Some("relative".into()), home),
            Some(PathBuf::from("/home/u/.local/state/palio/brokers"))
        );
        assert_eq!(registry_dir_from(None, None), None);
    }

    #[test]
    fn a_record_is_found_while_registered_and_removed_after() {
        let root = tmp();
        let (registry, tls) = (root.join("reg"), root.join("tls"));
        fs::create_dir_all(&tls).expect("tls dir");
        let addr: SocketAddr = "127.0.0.1:7409".parse().expect("addr");
        let r = Registration::register_in(&registry, addr, &tls).expect("registered");
        // No CA yet: not offered to clients.
        assert_eq!(registered_tls_dir_in(&registry, addr), None);
        fs::write(tls.join("ca.pem"), "x").expect("ca");
        let found = registered_tls_dir_in(&registry, addr).expect("found");
        assert_eq!(found, fs::canonicalize(&tls).expect("canonical"));
        assert_eq!(
            registered_tls_dir_in(&registry, "127.0.0.1:7408".parse().expect("addr")),
            None
        );
        drop(r);
        assert_eq!(registered_tls_dir_in(&registry, addr), None);
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_broker_on_every_address_is_found_by_each_and_keeps_anothers_record() {
        let root = tmp();
        let (registry, tls) = (root.join("reg"), root.join("tls"));
        fs::create_dir_all(&tls).expect("tls dir");
        fs::write(tls.join("ca.pem"), "x").expect("ca");
        let any: SocketAddr = "0.0.0.0:7410".parse().expect("addr");
        let first = Registration::register_in(&registry, any, &tls).expect("registered");
        assert!(registered_tls_dir_in(&registry, "127.0.0.1:7410".parse().expect("a")).is_some());
        // Another broker took the address over: dropping the first leaves its record alone.
        fs::write(first.path(), "/elsewhere\n1\n").expect("overwritten");
        drop(first);
        assert!(registry.join("0.0.0.0_7410").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
