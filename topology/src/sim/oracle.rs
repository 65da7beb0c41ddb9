//! The oracle: which subscriptions should receive each notification, and a verdict on what
//! they did receive.
//!
//! It knows nothing about routing: it keeps every live subscription with its filter and, for
//! a notification published while the network has settled, expects exactly the subscriptions
//! whose filter (evaluated in full) matches it, at every running broker.

use std::collections::{BTreeMap, BTreeSet};

use palio_filter::Event;

use crate::frame::SharedFilter;
use crate::ids::{BrokerId, NotificationId, SubscriptionId};
use crate::sim::network::Observed;
use crate::tree::SpanningTree;

/// One subscription, network-wide.
pub type SubKey = (BrokerId, SubscriptionId);

/// A notification whose deliveries will be checked.
#[derive(Debug, Clone)]
struct Expectation {
    /// The subscriptions that must receive it, each exactly once.
    subscribers: BTreeSet<SubKey>,
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Deliveries the oracle expected.
    pub expected: u64,
    /// Deliveries observed (for the checked notifications, duplicates included).
    pub actual: u64,
    /// Expected deliveries that did not happen.
    pub missing: u64,
    /// Deliveries beyond the first to the same subscription.
    pub duplicates: u64,
    /// Deliveries to a subscription whose filter rejects the notification, or that was not
    /// live (checked for every notification, settled or not).
    pub false_deliveries: u64,
    /// A few examples of what went wrong, for test failure messages.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Whether every delivery was exactly as expected.
    pub fn is_perfect(&self) -> bool {
        self.missing == 0 && self.duplicates == 0 && self.false_deliveries == 0
    }

    /// Adds another verdict's counts to this one.
    pub fn absorb(&mut self, other: Verdict) {
        self.expected += other.expected;
        self.actual += other.actual;
        self.missing += other.missing;
        self.duplicates += other.duplicates;
        self.false_deliveries += other.false_deliveries;
        self.examples.extend(other.examples);
        self.examples.truncate(8);
    }
}

/// Tracks subscriptions and publications.
#[derive(Debug, Default)]
pub struct Oracle {
    /// Live subscriptions.
    live: BTreeMap<SubKey, SharedFilter>,
    /// Every subscription ever made (ids are never reused within a run).
    ever: BTreeMap<SubKey, SharedFilter>,
    /// Every notification published, with its event.
    events: BTreeMap<NotificationId, Event>,
    /// Notifications whose deliveries will be checked exactly.
    expected: BTreeMap<NotificationId, Expectation>,
}

impl Oracle {
    /// An oracle with no subscriptions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a subscription.
    pub fn subscribe(&mut self, key: SubKey, filter: SharedFilter) {
        self.ever.insert(key, filter.clone());
        self.live.insert(key, filter);
    }

    /// Records an unsubscription.
    pub fn unsubscribe(&mut self, key: SubKey) {
        self.live.remove(&key);
    }

    /// Forgets the subscriptions of a crashed broker.
    pub fn crash(&mut self, broker: BrokerId) {
        self.live.retain(|k, _| k.0 != broker);
    }

    /// The live subscriptions.
    pub fn live(&self) -> &BTreeMap<SubKey, SharedFilter> {
        &self.live
    }

    /// Records a publication made while routes are not settled: only false deliveries will be
    /// checked for it.
    pub fn published_unchecked(&mut self, id: NotificationId, event: Event) {
        self.events.insert(id, event);
    }

    /// Records a publication made once routes have settled: its deliveries will be checked
    /// exactly. Returns the brokers with a matching subscription.
    pub fn published_checked(&mut self, id: NotificationId, event: Event) -> BTreeSet<BrokerId> {
        let subscribers: BTreeSet<SubKey> = self
            .live
            .iter()
            .filter(|(_, f)| f.matches(&event))
            .map(|(&k, _)| k)
            .collect();
        let brokers = subscribers.iter().map(|k| k.0).collect();
        self.events.insert(id, event);
        self.expected.insert(id, Expectation { subscribers });
        brokers
    }

    /// Judges `observed` deliveries: every one for false delivery, and those of the
    /// notifications recorded with [`Oracle::published_checked`] for exactness. Clears those
    /// expectations.
    pub fn check(&mut self, observed: &[Observed]) -> Verdict {
        let mut v = Verdict::default();
        let mut got: BTreeMap<(NotificationId, SubKey), u64> = BTreeMap::new();
        for o in observed {
            let key = (o.broker, o.subscription);
            let ok = match (self.ever.get(&key), self.events.get(&o.notification)) {
                (Some(f), Some(ev)) => f.matches(ev),
                _ => false,
            };
            if !ok {
                v.false_deliveries += 1;
                v.examples.push(format!(
                    "false delivery of {} to {}/{}",
                    o.notification, o.broker, o.subscription
                ));
            }
            if self.expected.contains_key(&o.notification) {
                *got.entry((o.notification, key)).or_default() += 1;
            }
        }
        for (&id, exp) in &self.expected {
            v.expected += exp.subscribers.len() as u64;
            for s in &exp.subscribers {
                if !got.contains_key(&(id, *s)) {
                    v.missing += 1;
                    v.examples.push(format!("{id} missing at {}/{}", s.0, s.1));
                }
            }
        }
        for (&(id, s), &n) in &got {
            v.actual += n;
            if n > 1 {
                v.duplicates += n - 1;
                v.examples
                    .push(format!("{id} delivered {n} times to {}/{}", s.0, s.1));
            }
            if self
                .expected
                .get(&id)
                .is_some_and(|e| !e.subscribers.contains(&s))
                && n > 0
            {
                // Counted above as a false delivery only if the filter rejects it; a delivery
                // to a matching subscription that was not live is also wrong.
                if self
                    .ever
                    .get(&s)
                    .zip(self.events.get(&id))
                    .is_some_and(|(f, ev)| f.matches(ev))
                {
                    v.false_deliveries += n;
                    v.examples
                        .push(format!("{id} delivered to {}/{}, not live", s.0, s.1));
                }
            }
        }
        v.examples.truncate(8);
        self.expected.clear();
        v
    }
}

/// The fewest link traversals that reach every broker in `interested` from `source` on `tree`.
pub fn ideal_messages(
    tree: &SpanningTree,
    source: BrokerId,
    interested: &BTreeSet<BrokerId>,
) -> u64 {
    tree.steiner_links(source, interested) as u64
}
