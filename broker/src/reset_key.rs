//! The QUIC stateless-reset key, kept in the data directory so that it survives restarts.
//!
//! When a broker restarts, its peers still hold connections to its previous life. The first
//! packet such a peer sends reaches the new endpoint, which knows nothing of the connection and
//! answers with a *stateless reset*; the peer accepts it only if the reset carries the token
//! the old endpoint promised, which is derived from the endpoint's reset key. With a key that
//! survives restarts (not quinn's default random one), a restarted broker's peers drop the old
//! connection at once instead of waiting for their idle timeout, and relink within a second.
//!
//! The connection-id generator must accept ids from a previous life too: quinn's default
//! generator signs its ids with a key drawn at each start and ignores packets whose id it did
//! not sign, so a restarted endpoint would never answer them. Ids here are plain random bytes,
//! as quinn's own `RandomConnectionIdGenerator` makes them (resets stay rate-limited by quinn).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use ring::rand::SecureRandom;

/// The file in the data directory holding the key.
const FILE: &str = "quic-reset.key";

/// Bytes of key material.
const LEN: usize = 64;

/// The endpoint configuration with the broker's persistent reset key: read from
/// `<data_dir>/quic-reset.key`, created (mode 0600) on first start.
pub(crate) fn endpoint_config(data_dir: &Path) -> std::io::Result<quinn::EndpointConfig> {
    let path = data_dir.join(FILE);
    let key = match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == LEN => bytes,
        _ => {
            let mut bytes = vec![0u8; LEN];
            ring::rand::SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| std::io::Error::other("no randomness for the QUIC reset key"))?;
            let tmp = data_dir.join(format!("{FILE}.tmp"));
            let mut f = open_private(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            bytes
        }
    };
    let hmac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    let mut config = quinn::EndpointConfig::new(Arc::new(hmac));
    config.cid_generator(|| {
        Box::new(RandomCids {
            rng: ring::rand::SystemRandom::new(),
            issued: 0,
        })
    });
    Ok(config)
}

/// Bytes in a connection id (quinn's default length).
const CID_LEN: usize = 8;

/// Connection ids of random bytes, valid whichever life of the endpoint issued them.
struct RandomCids {
    rng: ring::rand::SystemRandom,
    /// Ids issued so far, mixed in so that ids stay distinct even if randomness failed.
    issued: u64,
}

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        let mut random = [0u8; CID_LEN];
        // The system's randomness does not fail where quinn runs; if it ever did, the counter
        // still keeps this endpoint's ids distinct.
        let _ = self.rng.fill(&mut random);
        self.issued += 1;
        let id = u64::from_be_bytes(random) ^ self.issued.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        quinn::ConnectionId::new(&id.to_be_bytes())
    }

    fn cid_len(&self) -> usize {
        CID_LEN
    }

    fn cid_lifetime(&self) -> Option<std::time::Duration> {
        None
    }
}

fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        endpoint_config(dir.path()).unwrap();
        let first = std::fs::read(dir.path().join(FILE)).unwrap();
        assert_eq!(first.len(), LEN);
        endpoint_config(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(FILE)).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "only the owner may read it");
        }
    }
}
