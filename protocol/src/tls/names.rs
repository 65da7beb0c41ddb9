//! What a certificate names: its subject's common name and its subject alternative names,
//! among them the broker name that only broker certificates carry.
//!
//! # Broker names
//!
//! A broker certificate names its broker in a URI SAN `urn:palio:broker:<name>` ([`broker_uri`]).
//! The network's CA issues that SAN to brokers only, so a broker's name in its peer hello can
//! be checked against the certificate it presented: a certificate issued to broker `a` cannot
//! claim to be broker `b`, and a client certificate (no such SAN) cannot be a peer at all.
//! Broker names may hold any character but whitespace (see the broker's configuration), and
//! a URI is ASCII with a few reserved characters, so the name is percent-encoded (UTF-8 bytes)
//! except for the characters a URN's specific string may hold as they are: letters, digits,
//! `-._~` and `:@` (`broker@10.0.0.1:7400`, a broker's default name, stays readable).
//! Decoding accepts any percent-encoding of the same name.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::TlsError;

/// The prefix of the URI SAN that names a broker.
pub const BROKER_URI_PREFIX: &str = "urn:palio:broker:";

/// Bytes percent-encoded in a broker URI: all but letters, digits and `-._~:@`.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':')
    .remove(b'@');

/// The URI SAN naming broker `name`: `urn:palio:broker:` and the percent-encoded name.
///
/// ```
/// use palio_protocol::tls::broker_uri;
/// assert_eq!(broker_uri("b1"), "urn:palio:broker:b1");
/// assert_eq!(broker_uri("eu/1 ü"), "urn:palio:broker:eu%2F1%20%C3%BC");
/// ```
pub fn broker_uri(name: &str) -> String {
    format!("{BROKER_URI_PREFIX}{}", utf8_percent_encode(name, ENCODED))
}

/// The broker name a URI SAN gives, if it is a broker URI: `None` for other URIs, an error
/// for a broker URI whose name does not decode (bad percent-encoding, not UTF-8, empty).
fn broker_of(uri: &str) -> Result<Option<String>, TlsError> {
    // URN scheme and namespace are case-insensitive (RFC 8141).
    let Some(head) = uri.get(..BROKER_URI_PREFIX.len()) else {
        return Ok(None);
    };
    if !head.eq_ignore_ascii_case(BROKER_URI_PREFIX) {
        return Ok(None);
    }
    let encoded = &uri[BROKER_URI_PREFIX.len()..];
    let bad =
        |why: &str| TlsError::Certificate(format!("certificate SAN {uri:?}: broker name {why}"));
    if encoded.is_empty() {
        return Err(bad("is empty"));
    }
    // `percent_decode_str` leaves a `%` that starts no valid escape as it is: refuse those, so
    // that one name has one meaning.
    let bytes = encoded.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err(bad("has a bad percent-encoding"));
        }
    }
    let name = percent_decode_str(encoded)
        .decode_utf8()
        .map_err(|_| bad("is not UTF-8"))?;
    Ok(Some(name.into_owned()))
}

/// The names a certificate carries: the subject's common name and the subject alternative
/// names a principal can be configured by (DNS names, e-mail addresses, URIs).
///
/// A client certificate maps to a configured principal by these names, the common name
/// first and then the SANs in the order of [`CertNames::in_order`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertNames {
    /// The subject's first common name (CN), if any.
    pub common_name: Option<String>,
    /// DNS name SANs, in certificate order.
    pub dns_names: Vec<String>,
    /// E-mail (RFC 822 name) SANs, in certificate order.
    pub emails: Vec<String>,
    /// URI SANs, in certificate order (broker URIs included).
    pub uris: Vec<String>,
}

impl CertNames {
    /// Parses `cert` (DER) and reads its names. Fails on a certificate that does not parse,
    /// or whose subject CN is not a string (an unusual string type, say).
    pub fn of(cert: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let (_, x509) = X509Certificate::from_der(cert.as_ref())
            .map_err(|e| TlsError::Certificate(format!("certificate does not parse: {e}")))?;
        let common_name = match x509.subject().iter_common_name().next() {
            None => None,
            Some(cn) => Some(
                cn.as_str()
                    .map_err(|e| TlsError::Certificate(format!("certificate subject CN: {e}")))?
                    .to_owned(),
            ),
        };
        let mut names = CertNames {
            common_name,
            ..CertNames::default()
        };
        let san = x509.subject_alternative_name().map_err(|e| {
            TlsError::Certificate(format!("certificate subject alternative names: {e}"))
        })?;
        for name in san.iter().flat_map(|s| s.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(n) => names.dns_names.push((*n).to_owned()),
                GeneralName::RFC822Name(n) => names.emails.push((*n).to_owned()),
                GeneralName::URI(n) => names.uris.push((*n).to_owned()),
                _ => {}
            }
        }
        Ok(names)
    }

    /// Every name, the common name first, then DNS names, e-mail addresses and URIs.
    pub fn in_order(&self) -> impl Iterator<Item = &str> {
        self.common_name
            .iter()
            .chain(&self.dns_names)
            .chain(&self.emails)
            .chain(&self.uris)
            .map(String::as_str)
    }

    /// The brokers the certificate names (decoded from its `urn:palio:broker:` URIs): empty
    /// for a client certificate. A broker URI whose name does not decode is an error.
    pub fn brokers(&self) -> Result<Vec<String>, TlsError> {
        let mut brokers = Vec::new();
        for uri in &self.uris {
            if let Some(name) = broker_of(uri)? {
                brokers.push(name);
            }
        }
        Ok(brokers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_names_round_trip_through_their_uri() {
        for name in [
            "b1",
            "broker@127.0.0.1:7400",
            "broker@[::1]:7400",
            "eu/west%1",
            "ü-ñ_é.~",
            "a#b?c=d&e",
        ] {
            let uri = broker_uri(name);
            assert!(uri.is_ascii(), "{uri}");
            assert!(!uri.contains(['/', '#', '?', ' ', '[']), "{uri}");
            assert_eq!(broker_of(&uri).unwrap().as_deref(), Some(name), "{uri}");
        }
        assert_eq!(
            broker_uri("broker@127.0.0.1:7400"),
            "urn:palio:broker:broker@127.0.0.1:7400"
        );
    }

    #[test]
    fn broker_uris_are_recognised_and_checked() {
        assert_eq!(
            broker_of("URN:Palio:Broker:b%31").unwrap().as_deref(),
            Some("b1")
        );
        assert_eq!(broker_of("urn:palio:brokers").unwrap(), None);
        assert_eq!(broker_of("https://example.test/").unwrap(), None);
        assert_eq!(broker_of("urn:palio:user:b1").unwrap(), None);
        for bad in [
            "urn:palio:broker:",
            "urn:palio:broker:a%2",
            "urn:palio:broker:a%zz",
            "urn:palio:broker:%ff",
        ] {
            let err = broker_of(bad).unwrap_err().to_string();
            assert!(err.contains("broker name"), "{bad}: {err}");
        }
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let err = CertNames::of(&CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not parse"), "{err}");
    }
}
