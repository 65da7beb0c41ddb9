//! Ordered groups: create, list, describe and remove them; join one as a member; publish to
//! one with acks.
//!
//! - [`Client::group_join`] returns a [`GroupSubscription`]: a stream of [`GroupEvent`]s in
//!   the group's order, each message with its position (`epoch`, `seq` for total order) or
//!   its vector clock (causal order).
//! - [`Client::group_publisher`] returns a [`GroupPublisher`]: publications are pipelined and
//!   acknowledged cumulatively, in publish order, once ordered for good (total order:
//!   committed on a majority of the group's replicas, on disk).
//! - **Causal dependencies are carried for you**: every group message this client has taken
//!   from a [`GroupSubscription`] is merged into the client's clock for that group, and each
//!   later publication to the group carries that clock as its dependencies. So a reply is
//!   never delivered anywhere before the message it answers.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use palio_protocol::{ClientFrame, Clock, ErrorCode, GroupInfo, ServerFrame};
use tokio::sync::{mpsc, watch};

use crate::client::{Client, Register, Shared, unexpected};
use crate::error::Error;
use crate::notification::Notification;

/// Group messages buffered per member before the control stream waits for the application.
pub(crate) const MEMBER_BUFFER: usize = 4096;

/// A group's ordering mode.
///
/// ```
/// let order: palio::GroupOrder = "causal".parse()?;
/// assert_eq!(order, palio::GroupOrder::Causal);
/// assert!("sorted".parse::<palio::GroupOrder>().is_err());
/// # Ok::<(), palio::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupOrder {
    /// Per publisher.
    Fifo,
    /// Happened-before (vector clocks over brokers).
    Causal,
    /// One order for every member: `(epoch, seq)` positions from a replicated sequencer.
    Total,
}

impl GroupOrder {
    /// `fifo`, `causal` or `total`.
    ///
    /// ```
    /// assert_eq!(palio::GroupOrder::Total.as_str(), "total");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            GroupOrder::Fifo => "fifo",
            GroupOrder::Causal => "causal",
            GroupOrder::Total => "total",
        }
    }
}

impl std::str::FromStr for GroupOrder {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "fifo" => Ok(GroupOrder::Fifo),
            "causal" => Ok(GroupOrder::Causal),
            "total" => Ok(GroupOrder::Total),
            other => Err(Error::InvalidRequest(format!(
                "unknown group order {other:?}: expected fifo, causal or total"
            ))),
        }
    }
}

/// A message of a group, as delivered to a member.
///
/// ```no_run
/// # async fn demo(mut member: palio::GroupSubscription) -> Result<(), palio::Error> {
/// if let Some(palio::GroupEvent::Message(d)) = member.next().await {
///     println!("{} seq {:?}: {:?}", d.group, d.seq, d.notification.payload());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct GroupDelivery {
    /// The group.
    pub group: String,
    /// Total order: the epoch of the message's position.
    pub epoch: Option<u64>,
    /// Total order: the message's sequence number in the group.
    pub seq: Option<u64>,
    /// Causal order: the message's vector clock over brokers.
    pub clock: Option<Clock>,
    /// The notification.
    pub notification: Notification,
}

/// What a member receives, in the group's order.
///
/// ```no_run
/// # async fn demo(mut member: palio::GroupSubscription) -> Result<(), palio::Error> {
/// while let Some(event) = member.next().await {
///     match event {
///         palio::GroupEvent::Message(m) => println!("{:?}", m.notification),
///         palio::GroupEvent::Gap { count } => eprintln!("{count} messages lost at their origin"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub enum GroupEvent {
    /// A message.
    Message(GroupDelivery),
    /// `count` messages were lost at their origin and will never come; the ones after them
    /// follow in order.
    Gap {
        /// How many.
        count: u64,
    },
}

/// The route of a member's events, installed by the control reader.
pub(crate) type MemberTx = mpsc::Sender<GroupEvent>;

/// Per group: how far this connection's publications are acknowledged, and the first refusal.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckState {
    pub(crate) through: u64,
    pub(crate) failed: Option<(u64, ErrorCode, String)>,
}

/// What the connection keeps for groups.
#[derive(Default)]
pub(crate) struct GroupRoutes {
    pub(crate) members: HashMap<u64, MemberTx>,
    pub(crate) acks: HashMap<String, watch::Sender<AckState>>,
    /// Per group: the merged clock of what the application took from its members' streams.
    pub(crate) clocks: HashMap<String, Clock>,
}

impl Shared {
    /// The ack state of `group` (created on first use).
    pub(crate) fn group_acks(&self, group: &str) -> watch::Receiver<AckState> {
        let mut g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        g.acks
            .entry(group.to_owned())
            .or_insert_with(|| watch::channel(AckState::default()).0)
            .subscribe()
    }

    /// Records an ack or a refusal (from the control reader).
    pub(crate) fn group_ack(
        &self,
        group: &str,
        through: Option<u64>,
        failed: Option<(u64, ErrorCode, String)>,
    ) {
        let g = self.groups.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = g.acks.get(group) {
            tx.send_modify(|s| {
                if let Some(t) = through {
                    s.through = s.through.max(t);
                }
                if s.failed.is_none() {
                    s.failed = failed;
                }
            });
        }
    }
}

/// Merges `b` into the clock `a`.
fn merge(a: &mut Clock, b: &Clock) {
    for (broker, n) in b {
        match a.iter_mut().find(|(x, _)| x == broker) {
            Some((_, m)) => *m = (*m).max(*n),
            None => a.push((*broker, *n)),
        }
    }
    a.sort_unstable();
}

impl Client {
    /// Creates a group with an ordering mode ([`ErrorCode::GroupExists`] if it exists).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// use palio::{GroupOrder, GroupEvent, Notification};
    ///
    /// client.group_create("replicas", GroupOrder::Total).await?;
    /// let mut member = client.group_join("replicas", None).await?;
    /// let mut publisher = client.group_publisher("replicas");
    /// publisher.publish(Notification::builder().attr("op", "set").build()?).await?;
    /// if let Some(GroupEvent::Message(m)) = member.next().await {
    ///     println!("epoch {:?} seq {:?}", m.epoch, m.seq);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn group_create(&self, name: &str, order: GroupOrder) -> Result<(), Error> {
        let answer = self
            .call(
                |request| ClientFrame::GroupCreate {
                    request,
                    name: name.to_owned(),
                    order: order.as_str().to_owned(),
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a group ([`ErrorCode::GroupNotFound`] if there is none).
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// client.group_remove("replicas").await?;
    /// # Ok(()) }
    /// ```
    pub async fn group_remove(&self, name: &str) -> Result<(), Error> {
        let answer = self
            .call(
                |request| ClientFrame::GroupRemove {
                    request,
                    name: name.to_owned(),
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Done { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The groups the network knows.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// for g in client.group_list().await? {
    ///     println!("{} ({:?})", g.name, g.order);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn group_list(&self) -> Result<Vec<GroupInfo>, Error> {
        match self
            .call(|request| ClientFrame::GroupList { request }, None)
            .await?
        {
            ServerFrame::Groups { groups, .. } => Ok(groups),
            other => Err(unexpected(other)),
        }
    }

    /// One group: order, members, and for total order the epoch and the sequencer.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let info = client.group_info("replicas").await?;
    /// println!("{} members", info.members.len());
    /// # Ok(()) }
    /// ```
    pub async fn group_info(&self, name: &str) -> Result<GroupInfo, Error> {
        let answer = self
            .call(
                |request| ClientFrame::GroupInfo {
                    request,
                    name: name.to_owned(),
                },
                None,
            )
            .await?;
        match answer {
            ServerFrame::Groups { groups, .. } => {
                groups.into_iter().next().ok_or_else(|| Error::Request {
                    code: ErrorCode::GroupNotFound,
                    message: format!("no group {name:?}"),
                })
            }
            other => Err(unexpected(other)),
        }
    }

    /// Joins a group as a member receiving what matches `filter` (everything when `None`),
    /// from now on, in the group's order.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let mut member = client.group_join("replicas", Some("op = 'set'")).await?;
    /// println!("member {}", member.member());
    /// # Ok(()) }
    /// ```
    pub async fn group_join(
        &self,
        group: &str,
        filter: Option<&str>,
    ) -> Result<GroupSubscription, Error> {
        let (tx, rx) = mpsc::channel(MEMBER_BUFFER);
        let answer = self
            .call(
                |request| ClientFrame::GroupJoin {
                    request,
                    group: group.to_owned(),
                    filter: filter.map(str::to_owned),
                },
                Some(Register::Member(tx)),
            )
            .await?;
        match answer {
            ServerFrame::Joined { member, .. } => Ok(GroupSubscription {
                member,
                group: group.to_owned(),
                rx,
                shared: self.shared.clone(),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// A publisher to `group` on this connection.
    ///
    /// ```no_run
    /// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
    /// let mut publisher = client.group_publisher("replicas");
    /// let seq = publisher.send(palio::Notification::builder().attr("op", "set").build()?).await?;
    /// publisher.wait_acked(seq, std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn group_publisher(&self, group: &str) -> GroupPublisher {
        GroupPublisher {
            acks: self.shared.group_acks(group),
            shared: self.shared.clone(),
            group: group.to_owned(),
            next: 1,
            max_in_flight: crate::DEFAULT_MAX_IN_FLIGHT as u64,
        }
    }
}

/// A member's events, in the group's order. A [`Stream`]; [`next`](Self::next) is the same
/// without importing a stream trait. It ends when the connection closes.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// let mut member = client.group_join("replicas", None).await?;
/// while let Some(event) = member.next().await {
///     println!("{event:?}");
/// }
/// # Ok(()) }
/// ```
pub struct GroupSubscription {
    member: u64,
    group: String,
    rx: mpsc::Receiver<GroupEvent>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GroupSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSubscription")
            .field("member", &self.member)
            .field("group", &self.group)
            .finish()
    }
}

impl GroupSubscription {
    /// The broker's id for this member.
    ///
    /// ```no_run
    /// # async fn demo(member: palio::GroupSubscription) -> Result<(), palio::Error> {
    /// println!("joined as member {}", member.member());
    /// # Ok(()) }
    /// ```
    pub fn member(&self) -> u64 {
        self.member
    }

    /// The next event, or `None` once the connection has closed.
    ///
    /// ```no_run
    /// # async fn demo(mut member: palio::GroupSubscription) -> Result<(), palio::Error> {
    /// let first = member.next().await;
    /// println!("{first:?}");
    /// # Ok(()) }
    /// ```
    pub async fn next(&mut self) -> Option<GroupEvent> {
        let e = self.rx.recv().await;
        self.taken(e.as_ref());
        e
    }

    /// A message taken by the application: its clock becomes a dependency of what this
    /// client publishes to the group next.
    fn taken(&self, e: Option<&GroupEvent>) {
        if let Some(GroupEvent::Message(GroupDelivery {
            clock: Some(clock), ..
        })) = e
        {
            let mut g = self.shared.groups.lock().unwrap_or_else(|p| p.into_inner());
            merge(g.clocks.entry(self.group.clone()).or_default(), clock);
        }
    }
}

impl Stream for GroupSubscription {
    type Item = GroupEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<GroupEvent>> {
        let p = self.rx.poll_recv(cx);
        if let Poll::Ready(e) = &p {
            self.taken(e.as_ref());
        }
        p
    }
}

/// Publishes to one group, pipelined: [`send`](Self::send) returns the publication's sequence
/// number at once (waiting only while too many are unacknowledged); acks are cumulative and
/// come in publish order.
///
/// ```no_run
/// # async fn demo(client: palio::Client) -> Result<(), palio::Error> {
/// let mut publisher = client.group_publisher("ledger");
/// for i in 0..100 {
///     publisher.send(palio::Notification::builder().attr("n", i).build()?).await?;
/// }
/// publisher.wait_acked(100, std::time::Duration::from_secs(10)).await?;
/// # Ok(()) }
/// ```
pub struct GroupPublisher {
    shared: Arc<Shared>,
    group: String,
    acks: watch::Receiver<AckState>,
    next: u64,
    max_in_flight: u64,
}

impl std::fmt::Debug for GroupPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupPublisher")
            .field("group", &self.group)
            .field("next", &self.next)
            .finish()
    }
}

impl GroupPublisher {
    /// Sends a publication and returns its sequence number (1, 2, …) without waiting for its
    /// ack — unless [`DEFAULT_MAX_IN_FLIGHT`](crate::DEFAULT_MAX_IN_FLIGHT) are unacknowledged,
    /// then it waits for room.
    ///
    /// ```no_run
    /// # async fn demo(mut publisher: palio::GroupPublisher) -> Result<(), palio::Error> {
    /// let seq = publisher.send(palio::Notification::builder().attr("op", "inc").build()?).await?;
    /// assert!(seq >= 1);
    /// # Ok(()) }
    /// ```
    pub async fn send(&mut self, notification: Notification) -> Result<u64, Error> {
        let seq = self.next;
        if seq > self.max_in_flight {
            self.wait_acked(seq - self.max_in_flight, self.shared.timeout)
                .await?;
        }
        let deps = {
            let g = self.shared.groups.lock().unwrap_or_else(|p| p.into_inner());
            g.clocks.get(&self.group).cloned()
        };
        let (attributes, payload) = notification.into_parts();
        let frame = ClientFrame::GroupPublish {
            group: self.group.clone(),
            seq,
            deps,
            attributes,
            payload,
        };
        self.shared.check_size(&frame, "publication")?;
        self.shared
            .out
            .send(&frame)
            .await
            .map_err(|e| self.shared.not_queued(e))?;
        self.next += 1;
        Ok(seq)
    }

    /// Makes this client's next publications to the group depend on `clock` too: the clock of
    /// a message it learned of some other way than through this connection's members (another
    /// connection, another broker, an application message). Messages taken from this
    /// connection's [`GroupSubscription`]s are depended on without asking.
    ///
    /// ```no_run
    /// # async fn demo(mut publisher: palio::GroupPublisher, seen: palio::GroupDelivery) -> Result<(), palio::Error> {
    /// // A message read on another connection: what we publish next comes after it.
    /// if let Some(clock) = &seen.clock {
    ///     publisher.depend_on(clock);
    /// }
    /// publisher.publish(palio::Notification::builder().attr("re", 1).build()?).await?;
    /// # Ok(()) }
    /// ```
    pub fn depend_on(&mut self, clock: &Clock) {
        let mut g = self.shared.groups.lock().unwrap_or_else(|p| p.into_inner());
        merge(g.clocks.entry(self.group.clone()).or_default(), clock);
    }

    /// Sends a publication and waits (at most the connection's timeout) for its ack.
    ///
    /// ```no_run
    /// # async fn demo(mut publisher: palio::GroupPublisher) -> Result<(), palio::Error> {
    /// let seq = publisher.publish(palio::Notification::builder().attr("op", "set").build()?).await?;
    /// assert!(publisher.acked() >= seq);
    /// # Ok(()) }
    /// ```
    pub async fn publish(&mut self, notification: Notification) -> Result<u64, Error> {
        let seq = self.send(notification).await?;
        self.wait_acked(seq, self.shared.timeout).await?;
        Ok(seq)
    }

    /// The highest sequence number acknowledged so far.
    ///
    /// ```no_run
    /// # async fn demo(publisher: palio::GroupPublisher) -> Result<(), palio::Error> {
    /// println!("{} acknowledged", publisher.acked());
    /// # Ok(()) }
    /// ```
    pub fn acked(&self) -> u64 {
        self.acks.borrow().through
    }

    /// Waits until publication `seq` (and every one before it) is acknowledged, at most
    /// `timeout`. A refusal of any publication up to `seq` is returned as
    /// [`Error::Publish`].
    ///
    /// ```no_run
    /// # async fn demo(mut publisher: palio::GroupPublisher) -> Result<(), palio::Error> {
    /// let last = publisher.send(palio::Notification::builder().build()?).await?;
    /// publisher.wait_acked(last, std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_acked(&mut self, seq: u64, timeout: Duration) -> Result<(), Error> {
        let conn = self.shared.conn();
        let wait = async {
            loop {
                {
                    let s = self.acks.borrow_and_update();
                    if let Some((failed, code, message)) = &s.failed
                        && *failed <= seq
                    {
                        return Err(Error::Publish {
                            seq: *failed,
                            code: *code,
                            message: message.clone(),
                        });
                    }
                    if s.through >= seq {
                        return Ok(());
                    }
                }
                tokio::select! {
                    r = self.acks.changed() => if r.is_err() { return Err(self.shared.closed_error()) },
                    e = conn.closed() => return Err(self.shared.lost(&e)),
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::Timeout("waiting for group acks"))?
    }
}
