//! Who a client is (its *principal*) and what it may do.
//!
//! A session authenticates its client at the hello and holds an `Arc<Principal>`: a snapshot
//! of the principal's name, admin flag and permissions. The tasks that keep owned things (the
//! persist task's queues and producers, the groups task's groups) get the same snapshot when
//! the client comes up, and a new one when a reload changes it.

// Issue 11 is being built: the persist and groups tasks read these once they check owners.
#![allow(dead_code)]

use std::sync::Arc;

use palio_filter::Event;
use palio_topology::SharedFilter;

/// The name of the principal of clients let in with no credentials
/// (`[auth] allow_anonymous = true`).
pub(crate) const ANONYMOUS: &str = "anonymous";

/// A client's identity and permissions, as they were when the session last looked.
#[derive(Debug, Clone)]
pub(crate) struct Principal {
    /// The principal's name: a configured user's `name`, a certificate's subject, or
    /// [`ANONYMOUS`].
    pub(crate) name: Arc<str>,
    /// May use every queue and group, whoever owns it.
    pub(crate) admin: bool,
    /// What it may publish; `None` for anything.
    pub(crate) publish: Option<SharedFilter>,
    /// What it may receive; `None` for anything.
    pub(crate) subscribe: Option<SharedFilter>,
}

impl Principal {
    /// A principal with every permission and no admin rights.
    pub(crate) fn unrestricted(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            admin: false,
            publish: None,
            subscribe: None,
        })
    }

    /// Whether it may use (consume from, ack in, inspect, remove) a queue or group that
    /// `owner` made. Things made before ownership existed have the empty owner and are
    /// everyone's.
    pub(crate) fn may_use(&self, owner: &str) -> bool {
        self.admin || owner.is_empty() || *self.name == *owner
    }

    /// Whether it may receive `event`.
    pub(crate) fn may_receive(&self, event: &Event) -> bool {
        self.subscribe
            .as_ref()
            .is_none_or(|f| f.filter().matches(event))
    }

    /// Whether it may publish `event`.
    pub(crate) fn may_publish(&self, event: &Event) -> bool {
        self.publish
            .as_ref()
            .is_none_or(|f| f.filter().matches(event))
    }
}
