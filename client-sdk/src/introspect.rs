//! Asking the broker about itself: [`Client::server_info`], [`Client::ping`] and
//! [`Client::routes`]. Any authenticated client may ask; how much of the routing tables
//! [`Client::routes`] shows depends on the broker's disclosure policy.

use std::time::{Duration, Instant};

use palio_protocol::{ClientFrame, RoutesInfo, ServerFrame, ServerInfo};

use crate::client::{Client, unexpected};
use crate::error::Error;

impl Client {
    /// The broker's identity, version, uptime, routing strategy, clients and peers (each
    /// live link, with its round-trip time, and each configured peer address without one,
    /// with the reason).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let info = client.server_info().await?;
    /// println!("{} {} up {} s", info.id, info.version, info.uptime_ms / 1000);
    /// for p in &info.peers {
    ///     println!("{} {} {:?}", p.address, p.state, p.rtt_us);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn server_info(&self) -> Result<ServerInfo, Error> {
        match self
            .call(|request| ClientFrame::ServerInfo { request }, None)
            .await?
        {
            ServerFrame::ServerInfo { info, .. } => Ok(*info),
            other => Err(unexpected(other)),
        }
    }

    /// Measures the round trip to the broker: a ping on the control stream, answered as soon
    /// as the broker reads it (behind whatever this client sent before).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let rtt = client.ping().await?;
    /// println!("{:.2} ms", rtt.as_secs_f64() * 1000.0);
    /// # Ok(()) }
    /// ```
    pub async fn ping(&self) -> Result<Duration, Error> {
        let sent = Instant::now();
        match self
            .call(|request| ClientFrame::Ping { request }, None)
            .await?
        {
            ServerFrame::Pong { .. } => Ok(sent.elapsed()),
            other => Err(unexpected(other)),
        }
    }

    /// The broker's routing state, as its admin listener's `/routes` shows it: peer links
    /// with their routing tables, the configured peers, the spanning tree, the local
    /// subscriptions and advertisements. Each table lists at most its first 1000 entries
    /// ([`Listing::truncated`](crate::Listing::truncated) counts the rest). Filters and
    /// clients are shown to admins, and to everyone where the broker's `/routes` shows them
    /// without credentials; otherwise [`RoutesInfo::detail`] is `summary` and the listings
    /// have sizes only.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let routes = client.routes().await?;
    /// for link in &routes.peers {
    ///     println!("{}: {} subscriptions routed toward it", link.name, link.subscriptions.total);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn routes(&self) -> Result<RoutesInfo, Error> {
        match self
            .call(|request| ClientFrame::Routes { request }, None)
            .await?
        {
            ServerFrame::Routes { routes, .. } => Ok(*routes),
            other => Err(unexpected(other)),
        }
    }
}
