//! The configuration file as the broker loads it: TOML text, parsed and validated
//! (`Settings::from_toml` then the final checks of `Settings::load`). Never a panic; a
//! configuration that loads has the derived defaults the broker relies on.
//!
//! Random text is rarely TOML with the broker's keys, so most inputs are lines built from the
//! sections and keys the broker knows (and some it does not), with values of every type at
//! their edges, CESQL filters among them; raw text remains possible.
#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use palio_broker::fuzzing;

/// Table headers: `[name]`, and `[[name]]` for the arrays of tables.
const TABLES: &[&str] = &[
    "limits",
    "store",
    "timeouts",
    "tls",
    "auth",
    "admin_access",
    "auth.user",
    "subscription",
    "unknown",
];
const ARRAY_TABLES: &[&str] = &["auth.user", "subscription", "limits"];
/// Keys of every section (a key in the wrong section is an error to report, too).
const KEYS: &[&str] = &[
    // top level
    "id",
    "listen",
    "admin",
    "data_dir",
    "strategy",
    "peers",
    // [limits]
    "max_frame_bytes",
    "subscriber_buffer",
    "subscriber_buffer_bytes",
    "slow_consumer",
    "peer_queue",
    "peer_queue_bytes",
    "stall_timeout_ms",
    "max_subscriptions_per_client",
    "max_advertisements_per_client",
    "max_connections",
    "max_connections_per_address",
    "max_connections_per_principal",
    "max_handshakes",
    "quic_retry",
    // [store]
    "segment_bytes",
    "ack_wait_ms",
    "max_deliveries",
    "peer_window",
    "dedup_window",
    // [timeouts]
    "keep_alive_ms",
    "idle_timeout_ms",
    // [tls]
    "dir",
    "cert",
    "key",
    "ca",
    "server_name",
    // [auth], [[auth.user]], [admin_access]
    "allow_anonymous",
    "user",
    "tokens",
    "name",
    "token",
    "token_sha256",
    "publish",
    "subscribe",
    "routes",
    // [[subscription]]
    "filter",
    "unknown",
];
/// Strings the keys above take, valid and not.
const WORDS: &[&str] = &[
    "",
    "off",
    "127.0.0.1:7400",
    "[::1]:0",
    "localhost:7401",
    "block",
    "drop",
    "disconnect",
    "full",
    "summary",
    "flooding",
    "simple",
    "covering",
    "advertisements",
    "broker-a",
    "a b",
    "secret-token",
    "short",
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "zz23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "/tmp/x",
    "type = 'a'",
    "level > 2 AND type LIKE 'al%'",
    "EXISTS x OR y IN (1, 2)",
    "a = ",
    "TRUE",
    "é\u{0}",
];

#[derive(Debug, Arbitrary)]
enum Val {
    Int(i64),
    /// Near the bounds the checks use.
    Edge(u8),
    Bool(bool),
    Word(u8),
    Text(String),
    Array(Vec<u8>),
    Float(f64),
}

const EDGES: &[i128] = &[
    0,
    1,
    99,
    100,
    1023,
    1024,
    65535,
    65536,
    67_108_864,
    67_108_865,
    3_600_000,
    3_600_001,
    u32::MAX as i128,
    i64::MAX as i128,
    -1,
];

#[derive(Debug, Arbitrary)]
enum Line {
    Table(u8),
    ArrayTable(u8),
    Pair(u8, Val),
    Raw(String),
}

#[derive(Debug, Arbitrary)]
enum Input {
    Lines(Vec<Line>),
    Text(String),
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn value(out: &mut String, v: &Val) {
    let _ = match v {
        Val::Int(i) => write!(out, "{i}"),
        Val::Edge(i) => write!(out, "{}", EDGES[usize::from(*i) % EDGES.len()]),
        Val::Bool(b) => write!(out, "{b}"),
        Val::Word(i) => write!(out, "{:?}", pick(WORDS, *i)),
        Val::Text(s) => write!(out, "{s:?}"),
        Val::Array(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|i| format!("{:?}", pick(WORDS, *i)))
                .collect();
            write!(out, "[{}]", items.join(", "))
        }
        Val::Float(f) => write!(out, "{f:?}"),
    };
}

fuzz_target!(|input: Input| {
    let text = match input {
        Input::Text(t) => t,
        Input::Lines(lines) => {
            let mut t = String::new();
            for l in &lines {
                match l {
                    Line::Table(i) => {
                        let _ = writeln!(t, "[{}]", pick(TABLES, *i));
                    }
                    Line::ArrayTable(i) => {
                        let _ = writeln!(t, "[[{}]]", pick(ARRAY_TABLES, *i));
                    }
                    Line::Pair(k, v) => {
                        let _ = write!(t, "{} = ", pick(KEYS, *k));
                        value(&mut t, v);
                        t.push('\n');
                    }
                    Line::Raw(s) => t.push_str(s),
                }
            }
            t
        }
    };
    if let Ok(s) = fuzzing::config(&text) {
        // What the broker relies on after loading: a TLS source, a frame limit in range, a
        // keep-alive shorter than the idle timeout.
        assert!(
            s.tls.dir.is_some() || s.tls.cert.is_some(),
            "a TLS source is set"
        );
        assert!((1024..=64 << 20).contains(&s.limits.max_frame_bytes));
        assert!(s.timeouts.keep_alive_ms < s.timeouts.idle_timeout_ms);
    }
});
