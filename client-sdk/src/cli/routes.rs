//! `palio routes` and `palio peers`: the broker's routing state, as its admin listener's
//! `/routes` shows it, asked over the client connection ([`Client::routes`]).
//!
//! Output contract: with `--json`, `routes` prints the routing state as one JSON object (the
//! same as `/routes`) and `peers` prints `{"peers": [...], "dialed": [...]}` (its `peers` and
//! `dialed` members). Without it, both print aligned columns for people (not a stable
//! format). Filters and clients are shown to admins, and to everyone where the broker's
//! `/routes` shows them without credentials; otherwise the tables give sizes only (JSON:
//! `"detail": "summary"`, listings without `entries`). Exit status 1 when the broker cannot
//! be reached or refuses.

use std::fmt::Write as _;
use std::io::Write;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::connection::Connection;
use super::pubsub::one_request;
use super::table;
use crate::{Client, LinkInfo, Listing, RoutesInfo};

/// `palio routes` and `palio peers`.
#[derive(Debug, Args)]
pub(super) struct RoutesArgs {
    #[command(flatten)]
    conn: Connection,
    /// Print JSON instead of columns.
    #[arg(long)]
    json: bool,
}

/// Which part of the routing state to print.
#[derive(Debug, Clone, Copy)]
pub(super) enum Part {
    /// Everything: peers, tree, tables with their filters.
    Routes,
    /// The peer links and the configured peers.
    Peers,
}

pub(super) fn run(
    args: RoutesArgs,
    part: Part,
    out: &mut dyn Write,
    _err: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    one_request(&args.conn, "palio-routes", out, async |client: &Client| {
        let routes = client.routes().await?;
        Ok(match (part, args.json) {
            (Part::Routes, true) => serde_json::to_string(&routes)?,
            (Part::Peers, true) => {
                json!({ "peers": routes.peers, "dialed": routes.dialed }).to_string()
            }
            (Part::Routes, false) => render_routes(&routes),
            (Part::Peers, false) => render_peers(&routes),
        })
    })
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// The live links and the configured peers, as two tables.
fn render_peers(r: &RoutesInfo) -> String {
    let mut s = String::new();
    if r.peers.is_empty() {
        s.push_str("peer links: none\n");
    } else {
        s.push_str("peer links:\n");
        let rows: Vec<Vec<String>> = r
            .peers
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    l.id.to_string(),
                    l.remote.clone(),
                    yes_no(l.tree_neighbour),
                    format!("{:.2}ms", l.rtt_us as f64 / 1000.0),
                    l.queued_frames.to_string(),
                    l.subscriptions.total.to_string(),
                    l.advertisements.total.to_string(),
                    l.forwarded_subscriptions.total.to_string(),
                    l.forwarded_advertisements.total.to_string(),
                ]
            })
            .collect();
        s.push_str(&table::render(
            &[
                "PEER", "ID", "REMOTE", "TREE", "RTT", "QUEUED", "SUBS", "ADVS", "FWD SUBS",
                "FWD ADVS",
            ],
            &rows,
        ));
    }
    if r.dialed.is_empty() {
        s.push_str("configured peers: none\n");
    } else {
        s.push_str("configured peers:\n");
        let rows: Vec<Vec<String>> = r
            .dialed
            .iter()
            .map(|d| {
                vec![
                    d.address.clone(),
                    d.state.clone(),
                    d.peer.as_ref().map_or("-".to_owned(), |p| p.name.clone()),
                    d.attempts.to_string(),
                    d.last_error.clone().unwrap_or_else(|| "-".to_owned()),
                ]
            })
            .collect();
        s.push_str(&table::render(
            &["ADDRESS", "STATE", "PEER", "ATTEMPTS", "LAST ERROR"],
            &rows,
        ));
    }
    s.trim_end().to_owned()
}

/// A table's size and its listed entries, indented; what was left out, and why.
fn listing<T>(s: &mut String, title: &str, l: &Listing<T>, line: impl Fn(&T) -> String) {
    let _ = writeln!(s, "{title} ({}):", l.total);
    match &l.entries {
        None if l.total > 0 => s.push_str("  (not shown: the broker's routes policy is summary)\n"),
        None => {}
        Some(entries) => {
            for e in entries {
                let _ = writeln!(s, "  {}", line(e));
            }
            if l.truncated > 0 {
                let _ = writeln!(s, "  … and {} more", l.truncated);
            }
        }
    }
}

/// A link's four tables.
fn link_tables(s: &mut String, l: &LinkInfo) {
    let text = |f: &String| f.clone();
    let name = &l.name;
    let tables = [
        (
            format!("subscriptions from {name}, notifications routed toward it"),
            &l.subscriptions,
        ),
        (
            format!("advertisements from {name}, subscriptions routed toward it"),
            &l.advertisements,
        ),
        (
            format!("subscriptions forwarded to {name}"),
            &l.forwarded_subscriptions,
        ),
        (
            format!("advertisements forwarded to {name}"),
            &l.forwarded_advertisements,
        ),
    ];
    for (title, table) in tables {
        listing(s, &title, table, text);
    }
}

/// Everything: the broker, the tree, the peers, and every routing table with its filters.
fn render_routes(r: &RoutesInfo) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "broker {} (id {}): strategy {}, {} broker(s) known, {} client(s), detail {}",
        r.broker.name, r.broker.id, r.strategy, r.known_brokers, r.clients, r.detail
    );
    let edges: Vec<String> = r
        .tree
        .edges
        .iter()
        .map(|[a, b]| format!("{a}-{b}"))
        .collect();
    let _ = writeln!(
        s,
        "tree: root {}, edges [{}]; neighbours on it [{}]",
        r.tree.root,
        edges.join(", "),
        r.tree_neighbours
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        s,
        "routing table entries: {}; forwarded to neighbours: {}\n",
        r.table_entries, r.forwarded_entries
    );
    s.push_str(&render_peers(r));
    s.push_str("\n\n");
    listing(&mut s, "local subscriptions", &r.subscriptions, |e| {
        format!("{}  {}  {}", e.id, e.owner, e.filter)
    });
    listing(&mut s, "local advertisements", &r.advertisements, |e| {
        format!("{}  {}  {}", e.id, e.owner, e.filter)
    });
    for l in &r.peers {
        link_tables(&mut s, l);
    }
    s.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BrokerRef, DialInfo, LinkStateInfo, LocalEntry, TreeInfo};

    fn routes(detail: &str) -> RoutesInfo {
        let shown = detail == "full";
        let list = |v: &[&str]| Listing {
            total: v.len() as u64 + 2,
            truncated: if shown { 2 } else { 0 },
            entries: shown.then(|| v.iter().map(|s| (*s).to_owned()).collect()),
        };
        RoutesInfo {
            broker: BrokerRef {
                name: "b1".into(),
                id: 11,
            },
            strategy: "covering".into(),
            detail: detail.into(),
            peers: vec![LinkInfo {
                id: 22,
                name: "b2".into(),
                link: 3,
                remote: "127.0.0.1:7402".into(),
                tree_neighbour: true,
                queued_frames: 0,
                queued_bytes: 0,
                rtt_us: 420,
                subscriptions: list(&["type = 'alarm'"]),
                advertisements: Listing::hidden(0),
                forwarded_subscriptions: Listing::hidden(0),
                forwarded_advertisements: Listing::hidden(0),
            }],
            dialed: vec![DialInfo {
                address: "b3.example:7400".into(),
                state: "failed".into(),
                peer: None,
                attempts: 4,
                last_error: Some("resolving b3.example:7400: no such host".into()),
            }],
            known_brokers: 2,
            link_state: LinkStateInfo {
                neighbours: vec![22],
            },
            tree: TreeInfo {
                root: 11,
                edges: vec![[11, 22]],
            },
            tree_neighbours: vec![22],
            table_entries: 3,
            forwarded_entries: 0,
            clients: 1,
            subscriptions: Listing {
                total: 1,
                truncated: 0,
                entries: shown.then(|| {
                    vec![LocalEntry {
                        id: 1,
                        filter: "level > 2".into(),
                        owner: "client 4".into(),
                    }]
                }),
            },
            advertisements: Listing::hidden(0),
        }
    }

    #[test]
    fn peers_print_as_aligned_tables() {
        let text = render_peers(&routes("full"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "peer links:");
        assert!(
            lines[1].starts_with("PEER  ID  REMOTE          TREE  RTT"),
            "{text}"
        );
        assert!(
            lines[2].starts_with("b2    22  127.0.0.1:7402  yes   0.42ms"),
            "{text}"
        );
        assert_eq!(lines[3], "configured peers:");
        assert!(lines[5].contains("no such host"), "{text}");
    }

    #[test]
    fn routes_list_each_table_and_say_what_is_left_out() {
        let text = render_routes(&routes("full"));
        assert!(text.contains("subscriptions from b2, notifications routed toward it (3):\n  type = 'alarm'\n  … and 2 more"), "{text}");
        assert!(
            text.contains("local subscriptions (1):\n  1  client 4  level > 2"),
            "{text}"
        );
        assert!(text.contains("tree: root 11, edges [11-22]"), "{text}");
        let text = render_routes(&routes("summary"));
        assert!(
            !text.contains("type = 'alarm'") && !text.contains("level > 2"),
            "{text}"
        );
        assert!(
            text.contains("(not shown: the broker's routes policy is summary)"),
            "{text}"
        );
    }
}
