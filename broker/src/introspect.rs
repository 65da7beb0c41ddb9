//! What a broker tells about itself, assembled once for the admin listener (`/routes`) and
//! for clients (`ServerInfo` and `Routes` requests): the router's view of its routing state
//! (`router::view`), the configured peers' dial states, its version and uptime.

use std::collections::HashSet;
use std::time::Duration;

use palio_protocol::{DialInfo, ErrorCode, LinkInfo, PeerInfo, RoutesInfo, ServerInfo};

use crate::auth::RoutesDetail;
use crate::context::Context;
use crate::router::{Budget, Command, Refusal};

/// The broker's version, as `ServerInfo` reports it.
pub(crate) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How long the router has to answer before the request fails (a stuck or hopelessly
/// overloaded router).
const ROUTER_WAIT: Duration = Duration::from_secs(5);

/// The most bytes of routing table entries `/routes` lists (besides the first 1000 entries
/// of each table, `router::listing`).
pub(crate) const HTTP_BUDGET: usize = 16 << 20;

/// The routing state, its tables listed under `detail` within `bytes` of entries.
pub(crate) async fn routes(
    ctx: &Context,
    detail: RoutesDetail,
    bytes: usize,
) -> Result<RoutesInfo, Refusal> {
    let asked = ctx.router.call(|reply| Command::Routes {
        budget: Budget::new(detail, bytes),
        reply,
    });
    let mut routes = tokio::time::timeout(ROUTER_WAIT, asked)
        .await
        .map_err(|_| {
            (
                ErrorCode::Internal,
                format!("router busy: no answer within {} s", ROUTER_WAIT.as_secs()),
            )
        })??;
    routes.dialed = crate::dial_states::snapshot(&ctx.dial_states);
    Ok(routes)
}

/// The broker's identity, uptime and peers.
pub(crate) async fn server_info(ctx: &Context) -> Result<ServerInfo, Refusal> {
    let r = routes(ctx, RoutesDetail::Summary, 0).await?;
    Ok(ServerInfo {
        id: ctx.name.clone(),
        broker_id: ctx.id.0,
        version: VERSION.to_owned(),
        uptime_ms: u64::try_from(ctx.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        strategy: r.strategy,
        clients: r.clients,
        max_frame: u32::try_from(ctx.limits.max_frame_bytes).unwrap_or(u32::MAX),
        peers: peers(&r.peers, &r.dialed),
    })
}

/// Every peer once: each configured address (up if a live link leads to the broker found
/// there, whoever dialed it), then each live link no configured address leads to (a peer
/// that dialed us).
fn peers(links: &[LinkInfo], dialed: &[DialInfo]) -> Vec<PeerInfo> {
    let mut out = Vec::with_capacity(dialed.len() + links.len());
    let mut listed = HashSet::new();
    for d in dialed {
        let link = d
            .peer
            .as_ref()
            .and_then(|p| links.iter().find(|l| l.id == p.id));
        if let Some(l) = link {
            listed.insert(l.id);
        }
        out.push(PeerInfo {
            id: d.peer.as_ref().map(|p| p.id),
            name: d.peer.as_ref().map(|p| p.name.clone()),
            address: d.address.clone(),
            state: if link.is_some() { "up" } else { "down" }.to_owned(),
            rtt_us: link.map(|l| l.rtt_us),
            dialed: true,
            last_error: if link.is_some() {
                None
            } else {
                d.last_error.clone()
            },
        });
    }
    for l in links.iter().filter(|l| !listed.contains(&l.id)) {
        out.push(PeerInfo {
            id: Some(l.id),
            name: Some(l.name.clone()),
            address: l.remote.clone(),
            state: "up".to_owned(),
            rtt_us: Some(l.rtt_us),
            dialed: false,
            last_error: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use palio_protocol::{BrokerRef, Listing};

    use super::*;

    fn link(id: u32, name: &str, remote: &str) -> LinkInfo {
        LinkInfo {
            id,
            name: name.into(),
            link: 1,
            remote: remote.into(),
            tree_neighbour: true,
            queued_frames: 0,
            queued_bytes: 0,
            rtt_us: 420,
            subscriptions: Listing::hidden(0),
            advertisements: Listing::hidden(0),
            forwarded_subscriptions: Listing::hidden(0),
            forwarded_advertisements: Listing::hidden(0),
        }
    }

    fn dial(address: &str, peer: Option<(u32, &str)>, error: Option<&str>) -> DialInfo {
        DialInfo {
            address: address.into(),
            state: "failed".into(),
            peer: peer.map(|(id, name)| BrokerRef {
                id,
                name: name.into(),
            }),
            attempts: 3,
            last_error: error.map(Into::into),
        }
    }

    #[test]
    fn every_peer_is_listed_once_with_its_state() {
        let links = [
            link(1, "b1", "127.0.0.1:7401"),
            link(3, "b3", "127.0.0.1:50000"),
        ];
        let dialed = [
            // Up: the link to b1 (whoever dialed it).
            dial("127.0.0.1:7401", Some((1, "b1")), None),
            // Down: never reached.
            dial("nowhere.invalid:7400", None, Some("no such host")),
            // Down: was b2, now gone.
            dial("127.0.0.1:7402", Some((2, "b2")), Some("timed out")),
        ];
        let p = peers(&links, &dialed);
        let summary: Vec<_> = p
            .iter()
            .map(|p| (p.address.as_str(), p.state.as_str(), p.rtt_us, p.dialed))
            .collect();
        assert_eq!(
            summary,
            [
                ("127.0.0.1:7401", "up", Some(420), true),
                ("nowhere.invalid:7400", "down", None, true),
                ("127.0.0.1:7402", "down", None, true),
                // b3 dialed us.
                ("127.0.0.1:50000", "up", Some(420), false),
            ]
        );
        assert_eq!(p[1].last_error.as_deref(), Some("no such host"));
        assert_eq!(p[2].name.as_deref(), Some("b2"));
        assert_eq!(p[3].name.as_deref(), Some("b3"));
    }
}
