//! The oracle: which subscriptions should receive each notification, and a verdict on what
//! they did receive.
//!
//! It knows nothing about routing: it keeps every live subscription with its filter and, for
//! a notification published while the network has settled, expects exactly the subscriptions
//! whose filter (evaluated in full) matches it, at every running broker.

use std::collections::{BTreeMap, BTreeSet};

use palio_filter::{EntryId, Event, Index};

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
///
/// By default every expectation is computed by evaluating every live subscription's filter.
/// [`Oracle::with_index`] makes large runs affordable: expectations come from a matching index
/// of the live subscriptions, and every `cross_check`-th publication is also computed by
/// brute force and compared ([`Oracle::index_mismatches`] must stay 0).
#[derive(Default)]
pub struct Oracle {
    /// Optional index of the live subscriptions, with their entry ids.
    index: Option<(Index<SubKey>, BTreeMap<SubKey, EntryId>)>,
    /// Brute-force one publication in this many when indexed.
    cross_check: u64,
    /// Publications expected so far.
    published: u64,
    /// Indexed expectations that differed from brute force.
    mismatches: u64,
    /// Live subscriptions.
    live: BTreeMap<SubKey, SharedFilter>,
    /// Every subscription ever made (ids are never reused within a run).
    ever: BTreeMap<SubKey, SharedFilter>,
    /// Every notification published, with its event.
    events: BTreeMap<NotificationId, Event>,
    /// Notifications whose deliveries will be checked exactly.
    expected: BTreeMap<NotificationId, Expectation>,
}

impl std::fmt::Debug for Oracle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oracle")
            .field("live", &self.live.len())
            .field("indexed", &self.index.is_some())
            .field("mismatches", &self.mismatches)
            .finish()
    }
}

impl Oracle {
    /// An oracle with no subscriptions that evaluates every filter for every publication.
    pub fn new() -> Self {
        Self::default()
    }

    /// An oracle that finds matching subscriptions with an index, cross-checking one
    /// publication in `cross_check` by brute force.
    pub fn with_index(cross_check: u64) -> Self {
        Self {
            index: Some((Index::new(), BTreeMap::new())),
            cross_check: cross_check.max(1),
            ..Self::default()
        }
    }

    /// Indexed expectations that differed from brute force (a correct index gives 0).
    pub fn index_mismatches(&self) -> u64 {
        self.mismatches
    }

    /// Records a subscription.
    pub fn subscribe(&mut self, key: SubKey, filter: SharedFilter) {
        if let Some((index, ids)) = &mut self.index {
            ids.insert(key, index.insert(filter.filter(), key));
        }
        self.ever.insert(key, filter.clone());
        self.live.insert(key, filter);
    }

    /// Records an unsubscription.
    pub fn unsubscribe(&mut self, key: SubKey) {
        if let Some((index, ids)) = &mut self.index
            && let Some(id) = ids.remove(&key)
        {
            index.remove(id);
        }
        self.live.remove(&key);
    }

    /// Forgets the subscriptions of a crashed broker.
    pub fn crash(&mut self, broker: BrokerId) {
        let gone: Vec<SubKey> = self
            .live
            .keys()
            .filter(|k| k.0 == broker)
            .copied()
            .collect();
        for k in gone {
            self.unsubscribe(k);
        }
    }

    fn brute_force(&self, event: &Event) -> BTreeSet<SubKey> {
        self.live
            .iter()
            .filter(|(_, f)| f.matches(event))
            .map(|(&k, _)| k)
            .collect()
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
        self.published += 1;
        let subscribers = match &self.index {
            Some((index, _)) => {
                let found: BTreeSet<SubKey> = index.matches_vec(&event).into_iter().collect();
                if self.published.is_multiple_of(self.cross_check)
                    && found != self.brute_force(&event)
                {
                    self.mismatches += 1;
                }
                found
            }
            None => self.brute_force(&event),
        };
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
