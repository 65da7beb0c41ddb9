//! Palio's Rust SDK.
//!
//! Palio is a content-based publish/subscribe router: subscribers give filters over a
//! notification's typed attributes, written in CESQL, and the broker network forwards each
//! notification only toward subscribers whose filters match.
//!
//! - [`Client::connect`] opens a QUIC connection to a broker and completes the application
//!   hello (so "connected" means the broker accepted our credentials); a lost connection is
//!   re-established by itself (see [Reconnecting](#reconnecting)).
//! - [`Client::subscribe`] returns a [`Subscription`], a stream of [`Notification`]s;
//!   [`Client::publish`] sends one; [`Client::advertise`] declares what a client publishes.
//! - [`Client::request`] sends a request, routed by content like a publication, and waits for
//!   the first reply (or [`ErrorCode::NoResponders`] at once when nothing anywhere matches);
//!   [`Client::responder`] yields the requests matching a filter, answered with
//!   [`Client::reply`].
//! - [`Notification::builder`] builds typed attributes; [`Notification::from_cloudevent`] and
//!   [`Notification::to_cloudevent`] convert from and to CloudEvents in JSON.
//! - [`Client::server_info`], [`Client::ping`] and [`Client::routes`] ask the broker about
//!   itself: identity, uptime and peers ([`ServerInfo`]), the round-trip time, and its
//!   routing state ([`RoutesInfo`], what its `/routes` shows).
//! - The filter language is re-exported as [`filter`].
//! - The `palio` command line is the module `cli`, built only with the crate's `cli` feature
//!   (off by default, so that the SDK alone does not compile clap):
//!   `cargo install --path client-sdk --features cli` installs the binary.
//!
//! # Persistent delivery
//!
//! Best-effort notifications are lost when nobody is subscribed; persistent ones are kept.
//!
//! - [`Client::producer`] names the connection's [`Producer`]. [`Producer::publish`] returns
//!   once the broker has the notification on disk; [`Producer::send`] is the pipelined form,
//!   returning a [`PublishAck`] future. Acks come in publish order; each carries the
//!   producer's sequence number, which the broker uses to de-duplicate retries, and how many
//!   durable queues keep the publication ([`Published::queues`]: 0 when it matched none).
//! - [`Client::queue_add`] adds a named durable queue with a filter ([`QueueOptions`]: ack
//!   wait, maximum deliveries before the dead-letter queue `NAME.dlq`, size limits and
//!   [`Discard`] policy); it belongs to the connection's principal. [`Client::queue_info`]
//!   reports its [`QueueInfo`] (owner, limits, pending, unacked, dead-lettered).
//! - [`Client::consume`] attaches a push consumer ([`DurableSubscription`], a stream);
//!   [`Client::pull`] a pull consumer ([`PullConsumer::fetch`] takes batches).
//!   [`Client::queue_peek`] shows the next pending messages without delivering them
//!   ([`PeekedMessage`]); [`Client::queue_purge`] removes every message of a queue. Each
//!   [`DurableMessage`] is acked ([`DurableMessage::ack`], or `ack_many` on the consumer) once
//!   handled; unacked messages are delivered again, with a larger
//!   [`DurableMessage::delivery_count`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), palio::Error> {
//! use palio::{Client, ConnectOptions, ConsumeMode, Notification, QueueOptions};
//!
//! let client = Client::connect(ConnectOptions::new("127.0.0.1:7400").tls_dir("palio-data/tls")).await?;
//! client.queue_add("alarms", "type = 'alarm'", QueueOptions::default()).await?;
//!
//! let producer = client.producer("sensor-7").await?;
//! producer.publish(Notification::builder().attr("type", "alarm").build()?).await?;
//!
//! let mut alarms = client.consume("alarms", ConsumeMode::Push { window: 256 }).await?;
//! let m = alarms.next().await.expect("delivered");
//! assert_eq!(m.delivery_count(), 1);
//! m.ack().await?;
//! # Ok(()) }
//! ```
//!
//! # Reconnecting
//!
//! A client notices a dead broker within about 5 s (QUIC keep-alives every second, a 5 s idle
//! timeout) and reconnects by itself, as the [`Reconnect`] policy of its [`ConnectOptions`]
//! says: on by default, waiting 100 ms doubling to 2 s (with jitter) between attempts,
//! without limit unless [`Reconnect::max_attempts`] is set; [`ConnectOptions::no_reconnect`]
//! turns it off. The first [`Client::connect`] is never retried. While disconnected:
//!
//! - requests (subscribe, flush, acks, queue calls, …) fail at once with
//!   [`Error::Disconnected`]; try again after [`ConnectionEvent::Reconnected`];
//! - [`Client::publish`] keeps best-effort publications, up to [`Reconnect::buffer`] bytes
//!   (8 MiB by default; beyond, [`Error::PublishBufferFull`]), and sends them in order once
//!   reconnected. Publications already queued for the lost connection may be lost with it;
//! - [`Producer::send`] records persistent publications (up to its in-flight bound).
//!
//! Once reconnected, before anything else is sent, the client subscribes again with each
//! live [`Subscription`]'s filter (the stream goes on; [`Subscription::id`] changes, and
//! notifications published meanwhile are not delivered), attaches each durable consumer
//! again (its messages left unacked come again after the queue's ack wait, with a larger
//! delivery count), and names its producer again under the same id, sending every unsettled
//! publication again with its sequence number (the broker stores none twice, and acks them).
//! Group members ([`Client::group_join`]) are not restored: their streams end at the
//! disconnection.
//!
//! A clean broker shutdown ([`ErrorCode::ShuttingDown`]) is treated as a lost connection: the
//! broker may be restarting, so a rolling restart is ridden through. A broker that closes the
//! connection with any other reason (a slow consumer, a protocol violation) is not dialed
//! again. [`Client::events`] reports [`ConnectionEvent`]s; the ending ([`CloseReason`],
//! [`Client::ended`]) and the errors tell the broker's reason ([`Error::Closed`] with its
//! code: with reconnecting off, [`ErrorCode::ShuttingDown`] for a clean shutdown), attempts
//! exhausted ([`Error::ReconnectFailed`]) and a local close ([`Error::ClosedLocally`]) apart.
//!
//! ```no_run
//! # async fn demo() -> Result<(), palio::Error> {
//! use std::time::Duration;
//! use palio::{Client, ConnectOptions, ConnectionEvent, Reconnect};
//!
//! let opts = ConnectOptions::new("127.0.0.1:7400")
//!     .tls_dir("palio-data/tls")
//!     .reconnect(Reconnect::new().max(Duration::from_secs(5)).max_attempts(60));
//! let client = Client::connect(opts).await?;
//! let mut events = client.events();
//! let mut alarms = client.subscribe("type = 'alarm'").await?;
//! loop {
//!     tokio::select! {
//!         Some(n) = alarms.next() => println!("{}", n.to_json()),
//!         Some(e) = events.next() => match e {
//!             ConnectionEvent::Closed(why) => return Err(why.to_error()),
//!             other => eprintln!("{other:?}"),
//!         },
//!         else => break,
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! ```
//! use palio::filter::{Event, Filter};
//!
//! let f: Filter = "type = 'alarm' AND level > 2".parse()?;
//! let e = Event::new().with("type", "alarm")?.with("level", 5)?;
//! assert!(f.matches(&e));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
mod client;
mod consumer;
mod dial;
mod error;
mod events;
mod group;
mod in_flight;
mod introspect;
mod link;
mod message;
mod notification;
mod outgoing;
mod peeked;
mod producer;
mod queue;
mod reader;
mod reconnect;
mod request;
mod subscription;

pub use client::{Client, ConnectOptions};
pub use consumer::{DurableSubscription, PullConsumer};
pub use dial::DEFAULT_PORT;
pub use error::Error;
pub use events::{CloseReason, ConnectionEvent, ConnectionEvents};
pub use group::{GroupDelivery, GroupEvent, GroupOrder, GroupPublisher, GroupSubscription};
pub use message::DurableMessage;
pub use notification::{Notification, NotificationBuilder};
pub use palio_protocol::{
    BrokerRef, Clock, ConsumeMode, DialInfo, Discard, ErrorCode, GroupInfo, LinkInfo,
    LinkStateInfo, Listing, LocalEntry, MAX_FETCH_BATCH, MAX_PUSH_WINDOW, PeerInfo, QueueInfo,
    QueueOptions, RoutesInfo, ServerInfo, TreeInfo, Welcome,
};
pub use peeked::PeekedMessage;
pub use producer::{DEFAULT_MAX_IN_FLIGHT, Producer, ProducerOptions, PublishAck, Published};
pub use reconnect::{DEFAULT_RECONNECT_BUFFER, Reconnect};
pub use request::Responder;
pub use subscription::Subscription;

/// The filter language: values, events, CESQL expressions, filters, relations, the index.
pub use palio_filter as filter;
