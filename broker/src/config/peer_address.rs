//! Peer addresses as the configuration gives them (`peers = [...]`, `--peer`): `host:port`,
//! or a host alone, which takes the default port.

/// The port a peer address given without one is dialed on: the broker's default QUIC port
/// (that of [`DEFAULT_LISTEN`](super::DEFAULT_LISTEN)).
pub const DEFAULT_PEER_PORT: u16 = 7400;

/// A peer address, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerAddress {
    /// `host:port`, ready to resolve and dial.
    pub(crate) address: String,
    /// Whether [`DEFAULT_PEER_PORT`] was added (the configuration gave a host alone).
    pub(crate) defaulted: bool,
}

/// `raw` as a dialable `host:port`, adding [`DEFAULT_PEER_PORT`] to a host given alone
/// (`127.0.0.1`, `b1.example`, `::1` or `[::1]`). Whether the host resolves is not checked
/// here: names may resolve later, and the dialer reports those that do not.
pub(crate) fn parse(raw: &str) -> Result<PeerAddress, String> {
    let explain = |why: &str| {
        format!(
            "peer address {raw:?}: {why} (give host:port or a host alone, e.g. 10.0.0.2:7400 or b2.example)"
        )
    };
    let a = raw.trim();
    if a.is_empty() {
        return Err(explain("empty"));
    }
    if a.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(explain("spaces and slashes do not belong in an address"));
    }
    let ok = |address: String, defaulted: bool| Ok(PeerAddress { address, defaulted });
    match a.parse::<std::net::SocketAddr>() {
        Ok(sa) if sa.port() == 0 => return Err(explain("port \"0\" is not a port to dial")),
        Ok(_) => return ok(a.to_owned(), false),
        Err(_) => {}
    }
    // An IPv6 address alone, bracketed or not.
    let bare = a
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(a);
    if let Ok(ip) = bare.parse::<std::net::Ipv6Addr>() {
        return ok(format!("[{ip}]:{DEFAULT_PEER_PORT}"), true);
    }
    match a.rsplit_once(':') {
        None => ok(format!("{a}:{DEFAULT_PEER_PORT}"), true),
        Some(("", _)) => Err(explain("no host")),
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => Err(explain(
            "an IPv6 address with a port is written in brackets, e.g. [::1]:7400",
        )),
        Some((_, port)) => match port.parse::<u16>() {
            Ok(0) | Err(_) => Err(explain(&format!(
                "port {port:?} is not a number from 1 to 65535"
            ))),
            Ok(_) => ok(a.to_owned(), false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(raw: &str) -> (String, bool) {
        let p = parse(raw).unwrap();
        (p.address, p.defaulted)
    }

    #[test]
    fn a_host_alone_takes_the_default_port() {
        assert_eq!(address("127.0.0.1"), ("127.0.0.1:7400".into(), true));
        assert_eq!(address("b2.example"), ("b2.example:7400".into(), true));
        assert_eq!(address("localhost"), ("localhost:7400".into(), true));
        assert_eq!(address("::1"), ("[::1]:7400".into(), true));
        assert_eq!(address("[::1]"), ("[::1]:7400".into(), true));
        assert_eq!(address(" 10.0.0.2 "), ("10.0.0.2:7400".into(), true));
    }

    #[test]
    fn an_address_with_a_port_is_kept() {
        assert_eq!(address("127.0.0.1:7401"), ("127.0.0.1:7401".into(), false));
        assert_eq!(
            address("b2.example:9000"),
            ("b2.example:9000".into(), false)
        );
        assert_eq!(address("[::1]:7402"), ("[::1]:7402".into(), false));
    }

    #[test]
    fn what_cannot_be_an_address_is_refused_with_the_reason() {
        for (raw, why) in [
            ("", "empty"),
            ("b2.example:http", "port \"http\""),
            ("b2.example:", "port \"\""),
            ("127.0.0.1:70000", "port \"70000\""),
            ("127.0.0.1:0", "port \"0\""),
            (":7400", "no host"),
            ("b2 example", "spaces"),
            ("quic://b2:7400", "slashes"),
            ("fe80::1::2:7400", "brackets"),
        ] {
            let err = parse(raw).unwrap_err();
            assert!(err.contains(why), "{raw:?}: {err}");
            assert!(err.contains("host:port"), "{err}");
        }
    }
}
