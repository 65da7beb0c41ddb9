//! Prometheus metrics. One [`Metrics`] per broker, created with its own registry and handed to
//! each component at construction (never global), so several brokers can share a process in
//! tests.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of one broker.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    registry: Registry,
    /// Connections accepted, by role (`client`, `peer`).
    pub(crate) connections: IntCounterVec,
    /// Connections open now, by role.
    pub(crate) open_connections: IntGaugeVec,
    /// Connections refused or closed for bad input, by error code.
    pub(crate) connection_errors: IntCounterVec,
    /// Live local subscriptions.
    pub(crate) subscriptions: IntGauge,
    /// Live local advertisements.
    pub(crate) advertisements: IntGauge,
    /// Notifications published by local clients.
    pub(crate) published: IntCounter,
    /// Notification copies sent to peer brokers.
    pub(crate) forwarded: IntCounter,
    /// Notifications received from peer brokers.
    pub(crate) received: IntCounter,
    /// Notifications handed to local subscribers' delivery buffers.
    pub(crate) delivered: IntCounter,
    /// Notifications dropped, by reason (`slow_consumer` under the drop and disconnect policies,
    /// `closed` for a subscriber whose connection was closing).
    pub(crate) dropped: IntCounterVec,
    /// Subscribers disconnected by the slow-consumer policy.
    pub(crate) slow_consumer_disconnects: IntCounter,
    /// Writers that stopped on an error, by stream role (`delivery`, `control`, `peer`) and
    /// reason (`stalled`, `stream_failed`, `unencodable`); each closed its connection.
    pub(crate) writer_failures: IntCounterVec,
    /// Times an ingress (`client` publications, `peer` link) stopped reading until a full
    /// queue its traffic goes to drained: flow control at work.
    pub(crate) ingress_waits: IntCounterVec,
    /// Peer links closed because the peer read nothing for the stall timeout.
    pub(crate) peer_stalls: IntCounter,
    /// Routing table entries (subscriptions and advertisements, local and from peers).
    pub(crate) table_entries: IntGauge,
    /// Filters forwarded to tree neighbours.
    pub(crate) forwarded_entries: IntGauge,
    /// Brokers in the link-state database.
    pub(crate) known_brokers: IntGauge,
    /// Peer links up now.
    pub(crate) peer_links_up: IntGauge,
    /// State of each configured peer address: 1 while a link to the broker at that address is
    /// up, whichever side dialed it; 0 otherwise.
    pub(crate) peer_link_up: IntGaugeVec,
    /// State of each peer broker ever linked, by name: 1 while a link to it is up, whichever
    /// side dialed it; 0 once it went down (the series stays, so an alert can see the 0).
    pub(crate) peer_up: IntGaugeVec,
    /// Peer connection attempts that failed, by peer address.
    pub(crate) peer_dial_failures: IntCounterVec,
    /// Time spent routing one notification (matching and copying).
    pub(crate) matching_seconds: Histogram,
    /// Matches of static subscriptions, by name.
    pub(crate) static_matches: IntCounterVec,
    /// Requests of this broker's clients, by outcome: `replied`, `no_responders`, `expired`
    /// (no reply within the requester's timeout), `refused` (too many waiting).
    pub(crate) requests: IntCounterVec,
    /// Persistent messages stored (published here or received from peers).
    pub(crate) persistent_published: IntCounter,
    /// Persistent publications and store frames that were already stored (retries).
    pub(crate) persistent_duplicates: IntCounter,
    /// Persistent publications refused (store failed or full, no producer).
    pub(crate) persistent_publish_failures: IntCounter,
    /// Persistent publications acked that matched no durable queue.
    pub(crate) persistent_unmatched: IntCounter,
    /// Deliveries of durable queue messages (first deliveries and redeliveries).
    pub(crate) durable_delivered: IntCounter,
    /// Redeliveries (ack wait expired, nak, consumer gone).
    pub(crate) durable_redelivered: IntCounter,
    /// Durable queue messages acked.
    pub(crate) durable_acked: IntCounter,
    /// Messages moved to a dead-letter queue.
    pub(crate) dead_lettered: IntCounter,
    /// Persistent messages handed to a peer that stored them.
    pub(crate) store_forwarded: IntCounter,
    /// Bytes of log segments on disk.
    pub(crate) store_bytes: IntGauge,
    /// Checkpoints written.
    pub(crate) store_checkpoints: IntCounter,
    /// Log segments deleted after their messages were all acked and forwarded.
    pub(crate) store_segments_deleted: IntCounter,
    /// Problems recovery found in the log at startup (torn tails, corrupt records).
    pub(crate) store_recovery_problems: IntCounter,
    /// 1 once the store refuses writes after a failed write or fsync.
    pub(crate) store_poisoned: IntGauge,
    /// Ordered groups known (live), by order.
    pub(crate) groups: IntGaugeVec,
    /// Group publications acknowledged to local publishers, by order.
    pub(crate) group_acked: IntCounterVec,
    /// Group messages handed to local members, by order.
    pub(crate) group_delivered: IntCounterVec,
    /// Group messages reported lost to local members, by order.
    pub(crate) group_gaps: IntCounterVec,
    /// fdatasyncs of the groups' log (one per run of records).
    pub(crate) group_log_syncs: IntCounter,
    /// Group bodies from peers that did not decode or broke the protocol.
    pub(crate) group_bad_bodies: IntCounter,
    /// Adverts relayed by peers that were refused, by kind (`link_state`, `queue_decl`) and
    /// reason (link state: `database_full`, `version`, `too_large`; queue declarations:
    /// `malformed`, `broker_full`, `directory_full`, `contradicted`).
    pub(crate) peer_adverts_refused: IntCounterVec,
    /// Clients refused at the hello: no or bad credentials (`reason`: `no_credentials`,
    /// `invalid_token`, `unknown_certificate`, `removed`).
    pub(crate) auth_failures: IntCounterVec,
    /// Requests refused for want of permission, by action (`publish`, `subscribe`, `queue`,
    /// `group`, `producer`, `admin`).
    pub(crate) permission_denied: IntCounterVec,
    /// Requests or connections refused because a limit was reached, by limit (the setting's
    /// name, e.g. `max_connections`, `max_queues`, `max_consumers_per_client`).
    pub(crate) limits_hit: IntCounterVec,
    /// Reloads of credentials and permissions (SIGHUP), by result (`ok`, `error`).
    pub(crate) reloads: IntCounterVec,
}

impl Metrics {
    /// Fresh metrics in a new registry (with process metrics).
    pub(crate) fn new() -> Self {
        let registry = Registry::new_custom(Some("palio".into()), None)
            .expect("the constant prefix is a valid metric name");
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels)
                .expect("metric definitions are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("metric definitions are valid");
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("metric definitions are valid");
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
            g
        };
        let matching_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "matching_duration_seconds",
                "Time to route one notification: matching and copying.",
            )
            .buckets(prometheus::exponential_buckets(1e-6, 4.0, 10).expect("valid buckets")),
        )
        .expect("metric definitions are valid");
        registry
            .register(Box::new(matching_seconds.clone()))
            .expect("metric names are unique");
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            // Process metrics are a convenience; a registry refusing them changes nothing else.
            let _ = prometheus::register(Box::new(pc));
        }
        Self {
            connections: counter_vec("connections_total", "Connections accepted.", &["role"]),
            open_connections: gauge_vec("open_connections", "Connections open now.", &["role"]),
            connection_errors: counter_vec(
                "connection_errors_total",
                "Connections closed for bad input or refused, by error code.",
                &["code"],
            ),
            subscriptions: gauge("subscriptions", "Live local subscriptions."),
            advertisements: gauge("advertisements", "Live local advertisements."),
            published: counter(
                "notifications_published_total",
                "Notifications published by local clients.",
            ),
            forwarded: counter(
                "notifications_forwarded_total",
                "Notification copies sent to peer brokers.",
            ),
            received: counter(
                "notifications_received_total",
                "Notifications received from peer brokers.",
            ),
            delivered: counter(
                "notifications_delivered_total",
                "Notifications handed to local subscribers.",
            ),
            dropped: counter_vec(
                "notifications_dropped_total",
                "Notifications dropped, by reason.",
                &["reason"],
            ),
            slow_consumer_disconnects: counter(
                "slow_consumer_disconnects_total",
                "Subscribers disconnected by the slow-consumer policy.",
            ),
            writer_failures: counter_vec(
                "writer_failures_total",
                "Stream writers stopped on an error (the connection was closed), by role and reason.",
                &["role", "reason"],
            ),
            ingress_waits: counter_vec(
                "ingress_waits_total",
                "Times an ingress stopped reading until a full queue its traffic goes to drained.",
                &["ingress"],
            ),
            peer_stalls: counter(
                "peer_link_stalls_total",
                "Peer links closed because the peer read nothing for the stall timeout.",
            ),
            table_entries: gauge(
                "routing_table_entries",
                "Routing table entries: subscriptions and advertisements, local and from peers.",
            ),
            forwarded_entries: gauge(
                "routing_forwarded_entries",
                "Filters forwarded to tree neighbours.",
            ),
            known_brokers: gauge("known_brokers", "Brokers in the link-state database."),
            peer_links_up: gauge("peer_links_up", "Peer links up now."),
            peer_link_up: gauge_vec(
                "peer_link_up",
                "Whether a link to the broker at a configured peer address is up (1) or not (0).",
                &["peer"],
            ),
            peer_up: gauge_vec(
                "peer_up",
                "Whether a link to a peer broker is up (1) or not (0), by broker name.",
                &["broker"],
            ),
            peer_dial_failures: counter_vec(
                "peer_dial_failures_total",
                "Failed attempts to establish a configured peer link.",
                &["peer"],
            ),
            matching_seconds,
            static_matches: counter_vec(
                "static_subscription_matches_total",
                "Notifications matching a static subscription, by name.",
                &["name"],
            ),
            requests: counter_vec(
                "requests_total",
                "Requests of this broker's clients, by outcome (replied, no_responders, expired, refused).",
                &["outcome"],
            ),
            persistent_published: counter(
                "persistent_messages_stored_total",
                "Persistent messages stored: published here or received from peers.",
            ),
            persistent_duplicates: counter(
                "persistent_duplicates_total",
                "Persistent publications and store frames already stored (retries), not stored again.",
            ),
            persistent_unmatched: counter(
                "persistent_unmatched_total",
                "Persistent publications stored here that matched no durable queue of the overlay: acked, kept by none.",
            ),
            persistent_publish_failures: counter(
                "persistent_publish_failures_total",
                "Persistent publications refused: store failed or full, or no producer named.",
            ),
            durable_delivered: counter(
                "durable_deliveries_total",
                "Deliveries of durable queue messages, first deliveries and redeliveries.",
            ),
            durable_redelivered: counter(
                "durable_redeliveries_total",
                "Redeliveries: ack wait expired, nak, or consumer gone.",
            ),
            durable_acked: counter("durable_acks_total", "Durable queue messages acked."),
            dead_lettered: counter(
                "dead_lettered_total",
                "Messages moved to a dead-letter queue after the maximum deliveries.",
            ),
            store_forwarded: counter(
                "store_forwarded_total",
                "Persistent messages handed to a peer that stored them.",
            ),
            store_bytes: gauge("store_bytes", "Bytes of log segments on disk."),
            store_checkpoints: counter("store_checkpoints_total", "Checkpoints written."),
            store_segments_deleted: counter(
                "store_segments_deleted_total",
                "Log segments deleted once all their messages were acked and forwarded.",
            ),
            store_recovery_problems: counter(
                "store_recovery_problems_total",
                "Problems recovery found in the log at startup: torn tails, corrupt records.",
            ),
            store_poisoned: gauge(
                "store_poisoned",
                "1 once the store refuses writes after a failed write or fsync.",
            ),
            groups: gauge_vec("groups", "Ordered groups known, by order.", &["order"]),
            group_acked: counter_vec(
                "group_acked_total",
                "Group publications acknowledged to local publishers (total order: committed).",
                &["order"],
            ),
            group_delivered: counter_vec(
                "group_delivered_total",
                "Group messages handed to local members' control streams.",
                &["order"],
            ),
            group_gaps: counter_vec(
                "group_gap_messages_total",
                "Group messages reported lost to local members (lost at their origin).",
                &["order"],
            ),
            group_log_syncs: counter(
                "group_log_syncs_total",
                "fdatasyncs of the groups' log (one per run of records).",
            ),
            group_bad_bodies: counter(
                "group_bad_bodies_total",
                "Group messages from peers that did not decode or broke the protocol.",
            ),
            peer_adverts_refused: counter_vec(
                "peer_adverts_refused_total",
                "Link-state adverts and queue declarations from peers that were refused, by kind and reason.",
                &["kind", "reason"],
            ),
            auth_failures: counter_vec(
                "auth_failures_total",
                "Clients refused at the hello for missing or bad credentials, by reason.",
                &["reason"],
            ),
            permission_denied: counter_vec(
                "permission_denied_total",
                "Requests refused for want of permission, by action.",
                &["action"],
            ),
            limits_hit: counter_vec(
                "limits_hit_total",
                "Requests or connections refused because a limit was reached, by limit.",
                &["limit"],
            ),
            reloads: counter_vec(
                "config_reloads_total",
                "Reloads of credentials and permissions (SIGHUP), by result.",
                &["result"],
            ),
            registry,
        }
    }

    /// The metrics in the Prometheus text format (with process metrics).
    pub(crate) fn render(&self) -> String {
        let mut families = self.registry.gather();
        families.extend(prometheus::gather());
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for valid families.
        let _ = TextEncoder::new().encode(&families, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
