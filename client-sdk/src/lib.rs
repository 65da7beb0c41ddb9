//! Palio's Rust SDK.
//!
//! Palio is a content-based publish/subscribe router: subscribers give filters over a
//! notification's typed attributes, written in CESQL, and the broker network forwards each
//! notification only toward subscribers whose filters match.
//!
//! This release holds the filter language ([`filter`], re-exported from `palio-filter`) and the
//! `palio` command line's filter tools ([`cli`]); the QUIC client follows with the broker.
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

/// The filter language: values, events, CESQL expressions, filters, relations, the index.
pub use palio_filter as filter;
