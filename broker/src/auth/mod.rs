//! Who a client is (its *principal*) and what it may do.
//!
//! - [`users`]: the `[auth]` section, validated into [`Auth`], which maps a credential (token,
//!   client certificate, or none) to a [`Principal`].
//! - [`gate`]: the live [`Auth`] of a running broker, replaced on reload (SIGHUP), and the
//!   admin listener's access rules.
//! - [`admission`]: how many connections there are, globally, per principal and per source
//!   address, and the limits on each.
//!
//! A session authenticates its client at the hello and holds an `Arc<Principal>`: a snapshot
//! of the principal's name, admin flag and permissions. The tasks that keep owned things (the
//! persist task's queues and producers, the groups task's groups) get the same snapshot when
//! the client comes up, and a new one when a reload changes it. Permissions are enforced at
//! the client's access broker: publications outside `publish` are refused there, and
//! subscriptions and queues are narrowed there to `filter AND subscribe` (see
//! [`Principal::narrow`]), so that what reaches a subscriber was matched against its
//! permission, wherever it was published.

pub(crate) mod admission;
pub(crate) mod gate;
mod users;

use std::sync::Arc;

use palio_filter::Event;
use palio_protocol::ErrorCode;
use palio_topology::SharedFilter;

pub use gate::{AdminAccess, RoutesDetail};
pub use users::{Auth, User};
pub(crate) use users::{Credential, RawAuth};

/// The name of the principal of clients let in with no credentials
/// (`[auth] allow_anonymous = true`).
pub(crate) const ANONYMOUS: &str = "anonymous";

/// A client's identity and permissions, as they were when the session last looked.
#[derive(Debug, Clone, PartialEq)]
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

    /// `filter` (a client's subscription or queue filter, as it wrote it) narrowed to what
    /// this principal may receive: `(filter) AND (permission)`, compiled. The result is what
    /// the router matches; the client keeps seeing its own text nowhere but in its request.
    pub(crate) fn narrow(&self, filter: &str) -> Result<SharedFilter, (ErrorCode, String)> {
        let source = self.narrowed_source(filter);
        SharedFilter::parse(&source).map_err(|e| match &self.subscribe {
            None => (ErrorCode::InvalidFilter, e.to_string()),
            Some(_) => (
                ErrorCode::InvalidFilter,
                format!("{e} (after narrowing to your subscribe permission)"),
            ),
        })
    }

    /// The source text of [`narrow`](Self::narrow)'s filter.
    fn narrowed_source(&self, filter: &str) -> String {
        match &self.subscribe {
            None => filter.to_owned(),
            Some(p) => format!("({filter}) AND ({})", p.source()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(pairs: &[(&str, &str)]) -> Event {
        pairs
            .iter()
            .fold(Event::new(), |e, (k, v)| e.with(k, *v).unwrap())
    }

    #[test]
    fn narrowed_filters_match_only_inside_the_permission() {
        let bob = Principal {
            name: "bob".into(),
            admin: false,
            publish: Some(SharedFilter::parse("FALSE").unwrap()),
            subscribe: Some(SharedFilter::parse("region = 'eu'").unwrap()),
        };
        let f = bob.narrow("type = 'order' OR type = 'refund'").unwrap();
        let matches = |pairs: &[(&str, &str)]| f.filter().matches(&event(pairs));
        assert!(matches(&[("type", "order"), ("region", "eu")]));
        assert!(!matches(&[("type", "order"), ("region", "us")]));
        assert!(!matches(&[("type", "refund")]));
        assert!(!bob.may_publish(&event(&[("type", "order")])));
        // An OR in the client's filter cannot escape the permission: it is parenthesised.
        let sneaky = bob.narrow("TRUE OR TRUE").unwrap();
        assert!(!sneaky.filter().matches(&event(&[("region", "us")])));
        assert_eq!(bob.narrow("a = ").unwrap_err().0, ErrorCode::InvalidFilter);
    }

    #[test]
    fn owners_admins_and_legacy_things() {
        let alice = Principal::unrestricted("alice");
        assert!(alice.may_use("alice") && alice.may_use(""));
        assert!(!alice.may_use("bob"));
        let admin = Principal {
            admin: true,
            ..(*alice).clone()
        };
        assert!(admin.may_use("bob"));
    }
}
