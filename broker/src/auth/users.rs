//! The `[auth]` section: who may connect and what each principal may do, validated at load
//! (and at each reload) into [`Auth`], which authenticates a client's credentials.

use std::fmt;
use std::sync::Arc;

use palio_topology::SharedFilter;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use toml::Spanned;

use super::{ANONYMOUS, Principal};

/// The `[auth]` section as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RawAuth {
    allow_anonymous: bool,
    user: Vec<RawUser>,
    /// The list of bare tokens of earlier versions: refused with a pointer to `[[auth.user]]`.
    tokens: Option<Spanned<Vec<String>>>,
}

/// One `[[auth.user]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    token: Option<Spanned<String>>,
    token_sha256: Option<Spanned<String>>,
    publish: Option<Spanned<String>>,
    subscribe: Option<Spanned<String>>,
    #[serde(default)]
    admin: bool,
}

/// A configuration problem at a byte offset of the file.
pub(crate) type AtError = (usize, String);

/// A configured user.
#[derive(Clone)]
pub struct User {
    /// The principal's name (also matched against client certificates' names).
    pub name: String,
    /// SHA-256 of its token, if it may log in with one.
    token_sha256: Option<[u8; 32]>,
    /// What it may publish (`None`: anything).
    pub publish: Option<SharedFilter>,
    /// What it may receive (`None`: anything).
    pub subscribe: Option<SharedFilter>,
    /// May use every queue and group.
    pub admin: bool,
}

impl fmt::Debug for User {
    // Never prints the token's hash.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("token", &self.token_sha256.map(|_| "<set>"))
            .field("publish", &self.publish.as_ref().map(SharedFilter::source))
            .field(
                "subscribe",
                &self.subscribe.as_ref().map(SharedFilter::source),
            )
            .field("admin", &self.admin)
            .finish()
    }
}

/// The validated `[auth]` section.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// Let clients in with neither certificate nor token, as the principal `anonymous` (with
    /// the permissions of a user of that name, if one is configured).
    pub allow_anonymous: bool,
    /// The configured users.
    pub users: Vec<User>,
}

/// How a client proved who it is; kept by its session to authenticate it again after a
/// reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Credential {
    /// A token (its SHA-256).
    Token([u8; 32]),
    /// A certificate of the broker's CA, with its names (subject CN first, then SANs).
    Certificate(Vec<String>),
    /// Nothing (`allow_anonymous`).
    Anonymous,
}

impl Credential {
    /// The credential of a hello's token, or of the connection's certificate names.
    pub(crate) fn of(token: Option<&str>, cert_names: Option<Vec<String>>) -> Self {
        match (token, cert_names) {
            (Some(t), _) => Credential::Token(sha256(t.as_bytes())),
            (None, Some(names)) => Credential::Certificate(names),
            (None, None) => Credential::Anonymous,
        }
    }
}

/// Why a client was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denial {
    /// No token, no certificate, and anonymous clients are not allowed.
    NoCredentials,
    /// A token that no user has.
    InvalidToken,
    /// A certificate with no subject CN and no SAN to name a principal by.
    UnnamedCertificate,
}

impl Denial {
    /// The metric label (`palio_auth_failures_total{reason}`).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Denial::NoCredentials => "no_credentials",
            Denial::InvalidToken => "invalid_token",
            Denial::UnnamedCertificate => "unnamed_certificate",
        }
    }

    /// What the client is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Denial::NoCredentials => {
                "no credentials: present a client certificate issued by the broker's CA, or a token"
            }
            Denial::InvalidToken => "invalid token",
            Denial::UnnamedCertificate => {
                "the client certificate has no subject CN or SAN to name a principal by"
            }
        }
    }
}

pub(super) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Auth {
    /// Validates the section; errors carry the offending value's offset in the file.
    pub(crate) fn from_raw(raw: RawAuth) -> Result<Self, AtError> {
        if let Some(t) = &raw.tokens {
            return Err((
                t.span().start,
                "`tokens` is replaced by users: [[auth.user]] name = \"...\" token = \"...\" \
                 (see docs/security.md)"
                    .into(),
            ));
        }
        let mut users: Vec<User> = Vec::with_capacity(raw.user.len());
        for u in raw.user {
            let at = u.name.span().start;
            let name = u.name.into_inner();
            if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
                return Err((
                    at,
                    format!("user name {name:?}: 1 to 128 printable characters"),
                ));
            }
            if users.iter().any(|x| x.name == name) {
                return Err((at, format!("user {name:?} is configured twice")));
            }
            let token_sha256 = match (u.token, u.token_sha256) {
                (Some(_), Some(h)) => {
                    return Err((
                        h.span().start,
                        format!("user {name:?}: give token or token_sha256, not both"),
                    ));
                }
                (Some(t), None) if t.get_ref().len() < 8 => {
                    return Err((
                        t.span().start,
                        format!("user {name:?}: a token has at least 8 characters"),
                    ));
                }
                (Some(t), None) => Some(sha256(t.get_ref().as_bytes())),
                (None, Some(h)) => {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h.get_ref().trim(), &mut out).map_err(|_| {
                        (
                            h.span().start,
                            format!(
                                "user {name:?}: token_sha256 must be 64 hex digits \
                                 (e.g. `printf %s TOKEN | sha256sum`)"
                            ),
                        )
                    })?;
                    Some(out)
                }
                (None, None) => None,
            };
            if let Some(h) = token_sha256
                && let Some(other) = users.iter().find(|x| x.token_sha256 == Some(h))
            {
                return Err((
                    at,
                    format!("users {:?} and {name:?} have the same token", other.name),
                ));
            }
            let permission = |what: &str, f: Option<Spanned<String>>| {
                f.map(|f| {
                    crate::filters::compile(f.get_ref()).map_err(|e| {
                        (
                            f.span().start,
                            format!("user {name:?}: invalid {what} permission: {e}"),
                        )
                    })
                })
                .transpose()
            };
            let publish = permission("publish", u.publish)?;
            let subscribe = permission("subscribe", u.subscribe)?;
            users.push(User {
                name,
                token_sha256,
                publish,
                subscribe,
                admin: u.admin,
            });
        }
        Ok(Self {
            allow_anonymous: raw.allow_anonymous,
            users,
        })
    }

    /// The user a token belongs to. Every user's hash is compared, in constant time, whether
    /// or not an earlier one matched, so the time taken says nothing about the token.
    fn by_token(&self, hash: &[u8; 32]) -> Option<&User> {
        let mut found = None;
        for u in &self.users {
            if let Some(h) = &u.token_sha256
                && bool::from(h.ct_eq(hash))
            {
                found = Some(u);
            }
        }
        found
    }

    fn by_name(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The principal `credential` proves, or why there is none.
    ///
    /// - A token must belong to a user.
    /// - A certificate (already verified against the CA by TLS) maps to the first configured
    ///   user among its names (subject CN first, then SANs); a certificate naming no user is a
    ///   principal of its own, named after its first name, with every permission.
    /// - No credential is the principal `anonymous` where `allow_anonymous` is set; a user
    ///   named `anonymous` (without a token) gives it permissions.
    pub(crate) fn authenticate(&self, credential: &Credential) -> Result<Arc<Principal>, Denial> {
        match credential {
            Credential::Token(hash) => self
                .by_token(hash)
                .map(principal)
                .ok_or(Denial::InvalidToken),
            Credential::Certificate(names) => {
                let user = names.iter().find_map(|n| self.by_name(n));
                match (user, names.first()) {
                    (Some(u), _) => Ok(principal(u)),
                    (None, Some(first)) => Ok(Principal::unrestricted(first)),
                    (None, None) => Err(Denial::UnnamedCertificate),
                }
            }
            Credential::Anonymous if self.allow_anonymous => Ok(self
                .by_name(ANONYMOUS)
                .map_or_else(|| Principal::unrestricted(ANONYMOUS), principal)),
            Credential::Anonymous => Err(Denial::NoCredentials),
        }
    }
}

fn principal(u: &User) -> Arc<Principal> {
    Arc::new(Principal {
        name: u.name.as_str().into(),
        admin: u.admin,
        publish: u.publish.clone(),
        subscribe: u.subscribe.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(toml_text: &str) -> Result<Auth, AtError> {
        #[derive(Deserialize)]
        struct File {
            auth: RawAuth,
        }
        let f: File = toml::from_str(toml_text).unwrap();
        Auth::from_raw(f.auth)
    }

    const CONTRACT: &str = r#"
[auth]
allow_anonymous = false

[[auth.user]]
name = "alice"
token = "alice-secret"
publish = "type = 'order'"
subscribe = "FALSE"

[[auth.user]]
name = "bob"
token_sha256 = "2f9ac0a6d8c7f0a1a0b4a2c3a3b0c3d1e0b4f5a6b7c8d9e0f1a2b3c4d5e6f7a8"
publish = "FALSE"
subscribe = "region = 'eu'"
"#;

    #[test]
    fn tokens_plain_or_hashed_name_their_user() {
        let a = auth(CONTRACT).unwrap();
        let alice = a
            .authenticate(&Credential::of(Some("alice-secret"), None))
            .unwrap();
        assert_eq!(&*alice.name, "alice");
        assert_eq!(
            alice.publish.as_ref().map(SharedFilter::source),
            Some("type = 'order'")
        );
        assert_eq!(
            a.authenticate(&Credential::of(Some("alice-secreT"), None))
                .unwrap_err(),
            Denial::InvalidToken
        );
        // A token whose SHA-256 is configured.
        let hex = hex::encode(sha256(b"bob-secret"));
        let a = auth(&CONTRACT.replace(
            "2f9ac0a6d8c7f0a1a0b4a2c3a3b0c3d1e0b4f5a6b7c8d9e0f1a2b3c4d5e6f7a8",
            &hex,
        ))
        .unwrap();
        let bob = a
            .authenticate(&Credential::of(Some("bob-secret"), None))
            .unwrap();
        assert_eq!(&*bob.name, "bob");
        // A token wins over a certificate: a wrong one is refused even with a certificate.
        assert!(
            a.authenticate(&Credential::of(
                Some("nope-nope"),
                Some(vec!["alice".into()])
            ))
            .is_err()
        );
    }

    #[test]
    fn certificates_map_to_users_by_any_name_and_anonymous_needs_permission() {
        let a = auth(CONTRACT).unwrap();
        let by_san = a
            .authenticate(&Credential::Certificate(vec!["svc-7".into(), "bob".into()]))
            .unwrap();
        assert_eq!(&*by_san.name, "bob");
        let own = a
            .authenticate(&Credential::Certificate(vec!["svc-7".into()]))
            .unwrap();
        assert_eq!(&*own.name, "svc-7");
        assert!(own.publish.is_none() && !own.admin);
        assert_eq!(
            a.authenticate(&Credential::Anonymous).unwrap_err(),
            Denial::NoCredentials
        );
        assert_eq!(
            a.authenticate(&Credential::Certificate(Vec::new()))
                .unwrap_err(),
            Denial::UnnamedCertificate
        );
        let open = auth(
            "[auth]\nallow_anonymous = true\n[[auth.user]]\nname = \"anonymous\"\npublish = \"FALSE\"\n",
        )
        .unwrap();
        let anon = open.authenticate(&Credential::Anonymous).unwrap();
        assert_eq!(&*anon.name, ANONYMOUS);
        assert_eq!(
            anon.publish.as_ref().map(SharedFilter::source),
            Some("FALSE")
        );
    }

    #[test]
    fn bad_sections_are_refused_with_a_reason() {
        let cases = [
            ("[auth]\ntokens = [\"x\"]\n", "[[auth.user]]"),
            (
                "[[auth.user]]\nname = \"a\"\ntoken = \"12345678\"\ntoken_sha256 = \"00\"\n",
                "not both",
            ),
            (
                "[[auth.user]]\nname = \"a\"\ntoken = \"short\"\n",
                "at least 8",
            ),
            (
                "[[auth.user]]\nname = \"a\"\ntoken_sha256 = \"xyz\"\n",
                "64 hex",
            ),
            (
                "[[auth.user]]\nname = \"a\"\n[[auth.user]]\nname = \"a\"\n",
                "twice",
            ),
            (
                "[[auth.user]]\nname = \"a\"\ntoken = \"12345678\"\n[[auth.user]]\nname = \"b\"\ntoken = \"12345678\"\n",
                "same token",
            ),
            (
                "[[auth.user]]\nname = \"a\"\npublish = \"type = \"\n",
                "invalid publish permission",
            ),
        ];
        for (text, want) in cases {
            let text = if text.starts_with("[auth]") {
                text.to_owned()
            } else {
                format!("[auth]\n{text}")
            };
            let (_, message) = auth(&text).unwrap_err();
            assert!(message.contains(want), "{text:?}: {message}");
        }
    }

    #[test]
    fn debug_output_never_shows_a_token() {
        let a = auth(CONTRACT).unwrap();
        let shown = format!("{a:?}");
        assert!(!shown.contains("alice-secret") && !shown.contains("2f9ac0"));
        assert!(shown.contains("<set>"));
    }
}
