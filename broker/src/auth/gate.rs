//! The credentials a running broker checks, replaced as a whole on reload, and the admin
//! listener's access rules.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use super::users::{Auth, sha256};

/// How much `/routes` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoutesDetail {
    /// Everything: peers, links, the tree, and every routed filter and client.
    #[default]
    Full,
    /// Peers, links, the tree and table sizes; no filters and no clients.
    Summary,
}

impl RoutesDetail {
    /// As the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Summary => "summary",
        }
    }
}

/// The `[admin_access]` section: who may read the admin listener.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminAccess {
    /// A bearer token every endpoint but `/healthz` requires
    /// (`Authorization: Bearer TOKEN`).
    token: Option<String>,
    /// The token's SHA-256, in hex, instead of the token.
    token_sha256: Option<String>,
    /// How much `/routes` shows.
    pub routes: RoutesDetail,
}

impl fmt::Debug for AdminAccess {
    // Never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminAccess")
            .field(
                "token",
                &(self.token.is_some() || self.token_sha256.is_some()).then_some("<set>"),
            )
            .field("routes", &self.routes)
            .finish()
    }
}

impl AdminAccess {
    /// Checks the section (the token's form); the error says what is wrong.
    pub(crate) fn check(&self) -> Result<(), String> {
        match (&self.token, &self.token_sha256) {
            (Some(_), Some(_)) => Err("admin_access: give token or token_sha256, not both".into()),
            (Some(t), None) if t.len() < 8 => {
                Err("admin_access.token: at least 8 characters".into())
            }
            (None, Some(h)) if self.hash_of(h).is_none() => {
                Err("admin_access.token_sha256 must be 64 hex digits".into())
            }
            _ => Ok(()),
        }
    }

    fn hash_of(&self, hex_digits: &str) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_digits.trim(), &mut out).ok()?;
        Some(out)
    }

    /// The configured token's hash; `None` when the listener is open.
    fn expected(&self) -> Option<[u8; 32]> {
        match (&self.token, &self.token_sha256) {
            (Some(t), _) => Some(sha256(t.as_bytes())),
            (None, Some(h)) => Some(self.hash_of(h).unwrap_or([0; 32])),
            (None, None) => None,
        }
    }

    /// Whether a request with this `Authorization` header value may read the protected
    /// endpoints: always when no token is configured, else with `Bearer TOKEN` (compared in
    /// constant time).
    pub(crate) fn allows(&self, authorization: Option<&str>) -> bool {
        let Some(expected) = self.expected() else {
            return true;
        };
        let Some(presented) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        bool::from(sha256(presented.trim().as_bytes()).ct_eq(&expected))
    }

    /// How much of the routing state a client asking over the client protocol (`palio
    /// routes`) sees: everything if its principal is an admin, or if `/routes` itself shows
    /// everything to anyone (policy `full`, no token); else the summary. So the client
    /// protocol never shows more than the admin listener would show without credentials.
    pub(crate) fn routes_for_client(&self, admin: bool) -> RoutesDetail {
        if admin || (self.routes == RoutesDetail::Full && self.expected().is_none()) {
            RoutesDetail::Full
        } else {
            RoutesDetail::Summary
        }
    }
}

/// The access rules in force.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// Clients' credentials and permissions.
    pub(crate) auth: Auth,
    /// The admin listener's.
    pub(crate) admin: AdminAccess,
}

/// The access rules of a running broker. Sessions watch it: when a reload replaces the rules,
/// each authenticates its client again and takes the new permissions (or closes).
#[derive(Debug)]
pub(crate) struct Gate {
    current: watch::Sender<Arc<Access>>,
}

impl Gate {
    pub(crate) fn new(access: Access) -> Self {
        Self {
            current: watch::Sender::new(Arc::new(access)),
        }
    }

    /// The rules now.
    pub(crate) fn current(&self) -> Arc<Access> {
        self.current.borrow().clone()
    }

    /// A receiver that sees every later replacement.
    pub(crate) fn watch(&self) -> watch::Receiver<Arc<Access>> {
        self.current.subscribe()
    }

    /// Replaces the rules.
    pub(crate) fn replace(&self, access: Access) {
        self.current.send_replace(Arc::new(access));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_is_required_once_configured() {
        let open = AdminAccess::default();
        assert!(open.allows(None));
        let closed = AdminAccess {
            token: Some("admin-secret".into()),
            ..AdminAccess::default()
        };
        assert!(closed.check().is_ok());
        assert!(!closed.allows(None));
        assert!(!closed.allows(Some("Bearer admin-secreT")));
        assert!(!closed.allows(Some("admin-secret")));
        assert!(closed.allows(Some("Bearer admin-secret")));
        let hashed = AdminAccess {
            token_sha256: Some(hex::encode(sha256(b"admin-secret"))),
            ..AdminAccess::default()
        };
        assert!(hashed.allows(Some("Bearer admin-secret")));
        assert!(!format!("{closed:?}").contains("admin-secret"));
        let bad = AdminAccess {
            token_sha256: Some("zz".into()),
            ..AdminAccess::default()
        };
        assert!(bad.check().is_err());
    }

    #[test]
    fn clients_see_full_routes_only_as_admins_or_where_routes_are_open_to_all() {
        use RoutesDetail::{Full, Summary};
        let open = AdminAccess::default();
        assert_eq!(open.routes_for_client(false), Full);
        let summary = AdminAccess {
            routes: Summary,
            ..AdminAccess::default()
        };
        assert_eq!(summary.routes_for_client(false), Summary);
        assert_eq!(summary.routes_for_client(true), Full);
        let closed = AdminAccess {
            token: Some("admin-secret".into()),
            ..AdminAccess::default()
        };
        assert_eq!(closed.routes_for_client(false), Summary);
        assert_eq!(closed.routes_for_client(true), Full);
    }
}
