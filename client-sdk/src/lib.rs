//! Palio's Rust SDK.
//!
//! Palio is a content-based publish/subscribe router: subscribers give filters over a
//! notification's typed attributes, written in CESQL, and the broker network forwards each
//! notification only toward subscribers whose filters match.
//!
//! - [`Client::connect`] opens a QUIC connection to a broker and completes the application
//!   hello (so "connected" means the broker accepted our credentials).
//! - [`Client::subscribe`] returns a [`Subscription`], a stream of [`Notification`]s;
//!   [`Client::publish`] sends one; [`Client::advertise`] declares what a client publishes.
//! - [`Notification::builder`] builds typed attributes; [`Notification::from_cloudevent`] and
//!   [`Notification::to_cloudevent`] convert from and to CloudEvents in JSON.
//! - The filter language is re-exported as [`filter`]; the `palio` command line is [`cli`].
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

pub mod cli;
mod client;
mod error;
mod notification;
mod subscription;

pub use client::{Client, ConnectOptions};
pub use error::Error;
pub use notification::{Notification, NotificationBuilder};
pub use palio_protocol::{ErrorCode, Welcome};
pub use subscription::Subscription;

/// The filter language: values, events, CESQL expressions, filters, relations, the index.
pub use palio_filter as filter;
