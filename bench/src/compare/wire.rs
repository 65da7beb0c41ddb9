//! What a comparison run puts on the wire, for every system alike: the subject (or filter) each
//! subscriber uses and the bytes of each message.
//!
//! - Palio messages are the pub/sub benchmark's notifications ([`crate::pubsub::notification`]):
//!   four attributes, `seq` among them, and a payload of `size` bytes whose first 8 are the send
//!   time. Palio carries more bytes per message than the peers (the attributes).
//! - NATS and MQTT messages have a payload of `size` bytes: the send time, then `seq` (4 bytes,
//!   little-endian), then zeros. The subject is `bench.a.b.c.d` (MQTT: `bench/a/b/c/d`).
//!
//! Subscriber `k` of a fan-out gets a filter of its own that still matches every message: bit
//! `i` of `k` replaces token `i` of the subject by a wildcard (NATS `*`, MQTT `+`), or adds
//! condition `i` of [`PALIO_CONDITIONS`] to Palio's `type = 'bench'`. Sixteen subscribers, sixteen
//! distinct subscriptions, each message delivered sixteen times.

use crate::pubsub::{FILTER, PROBE_SEQ};

/// The subject's tokens after `bench`.
const TOKENS: [&str; 4] = ["a", "b", "c", "d"];

/// Conditions that every benchmark notification (probes too) satisfies.
pub const PALIO_CONDITIONS: [&str; 4] = [
    "source = 'palio-bench'",
    "shard >= 0",
    "seq >= -1",
    "shard < 16",
];

/// Distinct subscriptions there are (one per subset of the tokens or conditions).
pub const DISTINCT: usize = 1 << TOKENS.len();

/// Bytes the peers' payload needs: the send time and `seq`.
pub const HEADER: usize = 12;

/// The NATS subject messages are published on.
pub fn nats_subject() -> String {
    subject(0, '.', "*")
}

/// The NATS subscription of subscriber `k`.
pub fn nats_subscription(k: usize) -> String {
    subject(k, '.', "*")
}

/// The MQTT topic messages are published on.
pub fn mqtt_topic() -> String {
    subject(0, '/', "+")
}

/// The MQTT subscription of subscriber `k`.
pub fn mqtt_subscription(k: usize) -> String {
    subject(k, '/', "+")
}

fn subject(k: usize, sep: char, wildcard: &str) -> String {
    let mut s = String::from("bench");
    for (i, t) in TOKENS.iter().enumerate() {
        s.push(sep);
        s.push_str(if k & (1 << i) != 0 { wildcard } else { t });
    }
    s
}

/// The Palio filter of subscriber `k`.
pub fn palio_filter(k: usize) -> String {
    let mut f = String::from(FILTER);
    for (i, c) in PALIO_CONDITIONS.iter().enumerate() {
        if k & (1 << i) != 0 {
            f.push_str(" AND ");
            f.push_str(c);
        }
    }
    f
}

/// A peer message's payload: `size` bytes (at least [`HEADER`]) with the send time and `seq`.
pub fn peer_payload(buf: &mut Vec<u8>, size: usize, sent_us: u64, seq: i32) {
    buf.clear();
    buf.resize(size.max(HEADER), 0);
    buf[..8].copy_from_slice(&sent_us.to_le_bytes());
    buf[8..HEADER].copy_from_slice(&seq.to_le_bytes());
}

/// The send time and `seq` of a peer message (`None` if it is too short to be one).
pub fn decode_peer(payload: &[u8]) -> Option<(u64, i32)> {
    let sent = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let seq = i32::from_le_bytes(payload.get(8..HEADER)?.try_into().ok()?);
    Some((sent, seq))
}

/// Whether `seq` is a route probe.
pub fn is_probe(seq: i32) -> bool {
    seq == PROBE_SEQ
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn sixteen_distinct_subscriptions_per_system() {
        for f in [nats_subscription, mqtt_subscription, palio_filter] {
            let all: HashSet<String> = (0..DISTINCT).map(f).collect();
            assert_eq!(all.len(), DISTINCT);
        }
        assert_eq!(nats_subscription(0), nats_subject());
        assert_eq!(nats_subscription(0b1010), "bench.a.*.c.*");
        assert_eq!(mqtt_subscription(0b0101), "bench/+/b/+/d");
        assert_eq!(
            palio_filter(0b0011),
            "type = 'bench' AND source = 'palio-bench' AND shard >= 0"
        );
    }

    #[test]
    fn every_palio_filter_matches_every_notification_and_probe() {
        let notes = [
            crate::pubsub::notification(0, vec![0; 16]).unwrap(),
            crate::pubsub::notification(12345, vec![0; 16]).unwrap(),
            crate::pubsub::probe().unwrap(),
        ];
        for k in 0..DISTINCT {
            let filter = palio_filter::Expr::parse(&palio_filter(k)).unwrap();
            for n in &notes {
                assert!(
                    filter.matches(n.attributes()),
                    "{} misses {n:?}",
                    palio_filter(k)
                );
            }
        }
    }

    #[test]
    fn a_peer_payload_round_trips() {
        let mut buf = Vec::new();
        peer_payload(&mut buf, 128, 1_700_000_000_000_000, 42);
        assert_eq!(buf.len(), 128);
        assert_eq!(decode_peer(&buf), Some((1_700_000_000_000_000, 42)));
        peer_payload(&mut buf, 4, 7, PROBE_SEQ);
        assert_eq!(buf.len(), HEADER);
        assert_eq!(decode_peer(&buf), Some((7, PROBE_SEQ)));
        assert!(is_probe(decode_peer(&buf).unwrap().1));
        assert_eq!(decode_peer(&buf[..11]), None);
    }
}
