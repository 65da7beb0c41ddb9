//! A peer's identity: the broker names its certificate carries, and the check that the name
//! its hello claims is one of them.
//!
//! Broker names are self-declared in the hello; what binds them to a key is the certificate:
//! the network's CA gives broker certificates a `urn:palio:broker:<name>` SAN (see
//! `palio_protocol::tls::broker_uri`) and client certificates none. Both sides of a link check
//! the other's hello against the certificate it presented (the accepting side the client
//! certificate of the dialer, the dialing side the server certificate of the acceptor), so a
//! broker holding a certificate for `a` cannot join as `b`, and a client certificate cannot
//! join at all.

use palio_protocol::ErrorCode;
use palio_protocol::tls::{BROKER_URI_PREFIX, CertNames, Identity};
use rustls::pki_types::CertificateDer;

use crate::router::Refusal;

/// The certificate chain the other side of `conn` presented (leaf first), empty if none.
pub(super) fn presented_chain(conn: &quinn::Connection) -> Vec<CertificateDer<'static>> {
    conn.peer_identity()
        .and_then(|id| id.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|c| *c)
        .unwrap_or_default()
}

/// The brokers the leaf of `chain` names: empty when there is no certificate or it names no
/// broker (refused with the hello, so that the refusal can name the claimed broker); an
/// `unauthenticated` refusal when the certificate does not parse or names a broker badly.
pub(super) fn certified_brokers(chain: &[CertificateDer<'_>]) -> Result<Vec<String>, Refusal> {
    let Some(leaf) = chain.first() else {
        return Ok(Vec::new());
    };
    CertNames::of(leaf)
        .and_then(|names| names.brokers())
        .map_err(|e| {
            (
                ErrorCode::Unauthenticated,
                format!("peer certificate refused: {e}"),
            )
        })
}

/// Checks that `claimed` (the hello's broker name) is one of the brokers the peer's certificate
/// names (`certified`); otherwise an `unauthenticated` refusal naming both.
pub(super) fn check_claim(certified: &[String], claimed: &str) -> Result<(), Refusal> {
    if certified.iter().any(|c| c == claimed) {
        return Ok(());
    }
    // The claim comes from the peer and may be as long as a frame: logs get a bounded part.
    let claimed = shown(claimed);
    let message = match certified {
        [] => format!(
            "peer certificate names no broker (no {BROKER_URI_PREFIX}<name> SAN) \
             but the hello claims broker {claimed:?}"
        ),
        [one] => format!("peer certificate names broker {one:?} but the hello claims {claimed:?}"),
        many => format!("peer certificate names brokers {many:?} but the hello claims {claimed:?}"),
    };
    Err((ErrorCode::Unauthenticated, message))
}

/// At most [`SHOWN_CHARS`] characters of `name`, with `…` when cut.
fn shown(name: &str) -> String {
    match name.char_indices().nth(SHOWN_CHARS) {
        Some((cut, _)) => format!("{}…", &name[..cut]),
        None => name.to_owned(),
    }
}

/// The longest broker name is 64 characters (see the configuration): a claim longer than
/// this is shown cut.
const SHOWN_CHARS: usize = 80;

/// Warns at startup when this broker's own certificate does not name it: every peer would
/// refuse its links. (Not an error: an operator may start a broker that has no peers yet.)
pub(crate) fn warn_unless_named(identity: &Identity, name: &str) {
    let certified = match certified_brokers(&identity.chain) {
        Ok(c) => c,
        Err((_, why)) => {
            tracing::warn!(
                broker = name,
                "own certificate: {why}; peers will refuse links"
            );
            return;
        }
    };
    if let Err((_, why)) = check_claim(&certified, name) {
        let why = why.replace("peer certificate", "this broker's certificate");
        tracing::warn!(broker = name, "{why}; peers will refuse links");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_must_be_a_certified_broker() {
        assert!(check_claim(&["a".into()], "a").is_ok());
        assert!(check_claim(&["a".into(), "b".into()], "b").is_ok());
        let (code, msg) = check_claim(&["a".into()], "b").unwrap_err();
        assert_eq!(code, ErrorCode::Unauthenticated);
        assert!(
            msg.contains("names broker \"a\"") && msg.contains("claims \"b\""),
            "{msg}"
        );
        let (code, msg) = check_claim(&[], "b").unwrap_err();
        assert_eq!(code, ErrorCode::Unauthenticated);
        assert!(
            msg.contains("names no broker") && msg.contains("\"b\""),
            "{msg}"
        );
        let (_, msg) = check_claim(&["a".into()], &"x".repeat(100_000)).unwrap_err();
        assert!(msg.len() < 200 && msg.contains('…'), "{msg}");
    }

    #[test]
    fn garbage_certificates_are_refused() {
        let (code, msg) = certified_brokers(&[CertificateDer::from(vec![1, 2, 3])]).unwrap_err();
        assert_eq!(code, ErrorCode::Unauthenticated);
        assert!(msg.contains("peer certificate"), "{msg}");
        assert!(certified_brokers(&[]).unwrap().is_empty());
    }
}
