//! The link supervisor: the one task that owns a client's connection over its lifetime. It
//! starts the tasks serving each connection (`client.rs`'s writer, `reader.rs`'s readers),
//! waits for them to end, and decides what the ending means:
//!
//! - the application closed the client, the broker closed the connection with a reason other
//!   than shutting down (slow consumer, a protocol violation, …), or reconnecting is off: the
//!   client **ends** ([`CloseReason`]): waiting requests fail, subscriptions and consumers end,
//!   unsettled persistent publications fail;
//! - the connection was lost (idle timeout, reset), or the broker shut down cleanly (it may be
//!   restarting: a rolling restart is then transparent): the client goes **down**: requests fail
//!   with [`Error::Disconnected`], best-effort publications are kept (`outgoing.rs`), and the
//!   supervisor dials again with backoff (`reconnect.rs`). On a new connection it **restores**
//!   the client's state: subscribes again with each live subscription's filter, attaches each
//!   durable consumer again, names the producer again and sends its unsettled publications
//!   again; then the publications kept meanwhile follow, and the client is **up** again.
//!   Group members are not restored: their streams end at the disconnection.
//!
//! Each change is told to the application's event streams (`events.rs`).

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use palio_protocol::{ClientFrame, ErrorCode, ServerFrame};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{
    Client, ConnectOptions, Dialed, PendingRequest, Register, Shared, lock, write_frames,
};
use crate::error::Error;
use crate::events::{CloseReason, ConnectionEvent};
use crate::reader::{read_control, read_deliveries};
use crate::reconnect::{jitter, worth_retrying};

/// Where the client's connection stands.
pub(crate) enum LinkState {
    /// Connected: everything goes to the broker.
    Up,
    /// Lost, reconnecting.
    Down {
        /// Why it was lost.
        reason: String,
    },
    /// Ended for good.
    Ended(CloseReason),
}

/// The tasks serving one connection.
pub(crate) struct LinkTasks {
    conn: quinn::Connection,
    control: JoinHandle<Option<Error>>,
    delivery: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// How a connection ended, as the supervisor sees it.
enum Verdict {
    End(CloseReason),
    Retry(String),
}

/// Makes `dialed` the client's connection and starts the tasks serving it.
pub(crate) fn start(shared: &Arc<Shared>, dialed: Dialed) -> LinkTasks {
    let max_frame = usize::try_from(dialed.welcome.max_frame).unwrap_or(usize::MAX);
    let conn = dialed.link.conn.clone();
    shared.set_link(dialed.link, max_frame);
    LinkTasks {
        writer: tokio::spawn(write_frames(dialed.send, shared.out.clone(), conn.clone())),
        control: tokio::spawn(read_control(shared.clone(), conn.clone(), dialed.reader)),
        delivery: tokio::spawn(read_deliveries(shared.clone(), conn.clone())),
        conn,
    }
}

impl LinkTasks {
    /// Waits until the connection is over and every task serving it has ended; returns why.
    async fn end(&mut self, shared: &Shared) -> Verdict {
        let said = (&mut self.control).await.ok().flatten();
        let verdict = verdict(shared, said, self.conn.close_reason());
        // The control stream is over: so is the connection, which ends the other tasks.
        self.conn
            .close(ErrorCode::Closed.code().into(), b"control stream ended");
        // The delivery reader may wait for an application that does not read: nothing more
        // comes for it on this connection anyway.
        self.delivery.abort();
        let _ = (&mut self.delivery).await;
        let _ = (&mut self.writer).await;
        verdict
    }
}

/// Why the client's connection ended: `said` is what the control reader was told (or found),
/// `closed` the connection's close reason, if it is closed.
fn verdict(
    shared: &Shared,
    said: Option<Error>,
    closed: Option<quinn::ConnectionError>,
) -> Verdict {
    if shared.is_closing() {
        return Verdict::End(CloseReason::Local);
    }
    match (said, closed) {
        (Some(Error::Closed { code, message }), _) => broker_closed(shared, code, message),
        (Some(e), _) => Verdict::End(CloseReason::Lost {
            reason: e.to_string(),
        }),
        (None, Some(quinn::ConnectionError::LocallyClosed)) => Verdict::End(CloseReason::Local),
        (None, Some(quinn::ConnectionError::ApplicationClosed(c))) => broker_closed(
            shared,
            ErrorCode::from_code(c.error_code.into_inner()),
            String::from_utf8_lossy(&c.reason).into_owned(),
        ),
        (None, Some(e)) if worth_retrying(&e) && shared.reconnect.is_enabled() => {
            Verdict::Retry(e.to_string())
        }
        (None, Some(e)) => Verdict::End(CloseReason::Lost {
            reason: e.to_string(),
        }),
        (None, None) if shared.reconnect.is_enabled() => {
            Verdict::Retry("the broker ended the control stream".into())
        }
        (None, None) => Verdict::End(CloseReason::Lost {
            reason: "the broker ended the control stream".into(),
        }),
    }
}

/// The broker closed the connection with `code`. A clean shutdown is dialed again when
/// reconnecting is on: the broker may be restarting, and NATS and MQTT clients ride through a
/// restart too. Any other reason (a slow consumer, a protocol violation) would only come again,
/// so it ends the client.
fn broker_closed(shared: &Shared, code: Option<ErrorCode>, message: String) -> Verdict {
    if code == Some(ErrorCode::ShuttingDown) && shared.reconnect.is_enabled() {
        Verdict::Retry(format!("the broker shut down: {message}"))
    } else {
        Verdict::End(CloseReason::Broker { code, message })
    }
}

/// Owns the client's connection from its first one on (see the module docs).
pub(crate) async fn supervise(shared: Arc<Shared>, opts: ConnectOptions, mut tasks: LinkTasks) {
    loop {
        let lost = match tasks.end(&shared).await {
            Verdict::End(r) => return finish(&shared, r),
            Verdict::Retry(why) => why,
        };
        tracing::info!(server = opts.server(), reason = %lost, "connection lost: reconnecting");
        go_down(&shared, &lost);
        shared.events.emit(ConnectionEvent::Disconnected {
            reason: lost.clone(),
        });
        match reconnect(&shared, &opts, lost).await {
            Ok((t, attempts)) => {
                tasks = t;
                *lock(&shared.state) = crate::link::LinkState::Up;
                tracing::info!(server = opts.server(), attempts, "reconnected");
                shared.events.emit(ConnectionEvent::Reconnected {
                    server: opts.server().to_owned(),
                    attempts,
                });
            }
            Err(r) => return finish(&shared, r),
        }
    }
}

/// Dials until a connection is made and the client's state restored on it; the ending if the
/// attempts run out or the application closes the client meanwhile.
async fn reconnect(
    shared: &Arc<Shared>,
    opts: &ConnectOptions,
    mut last: String,
) -> Result<(LinkTasks, u32), CloseReason> {
    let mut attempt = 0u32;
    loop {
        attempt = attempt.saturating_add(1);
        let Some(wait) = shared.reconnect.delay(attempt, jitter()) else {
            return Err(CloseReason::GaveUp {
                server: opts.server().to_owned(),
                attempts: attempt - 1,
                reason: last,
            });
        };
        let dialed = tokio::select! {
            biased;
            () = shared.closing() => return Err(CloseReason::Local),
            d = async {
                tokio::time::sleep(wait).await;
                Client::dial(opts).await
            } => d,
        };
        let dialed = match dialed {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(attempt, error = %e, "reconnect attempt failed");
                last = e.to_string();
                continue;
            }
        };
        let mut tasks = start(shared, dialed);
        match restore(shared, &mut tasks).await {
            Ok(()) => return Ok((tasks, attempt)),
            Err(e) => {
                tracing::debug!(attempt, error = %e, "restoring on the new connection failed");
                last = e;
                match tasks.end(shared).await {
                    Verdict::End(CloseReason::Local) => return Err(CloseReason::Local),
                    _ => go_down(shared, &last),
                }
            }
        }
    }
}

/// The connection is lost: requests fail, routes wait to be restored, publications are kept.
fn go_down(shared: &Shared, reason: &str) {
    *lock(&shared.state) = LinkState::Down {
        reason: reason.to_owned(),
    };
    shared.out.go_offline(shared.reconnect.get_buffer());
    // Waiting requests fail (with `Error::Disconnected`, from the state).
    lock(&shared.pending).clear();
    {
        let mut r = lock(&shared.routes);
        let lost: Vec<_> = r.subs.drain().map(|(_, tx)| tx).collect();
        for tx in lost {
            if !tx.is_closed() && !r.restore.iter().any(|t| t.same_queue(&tx)) {
                r.restore.push(tx);
            }
        }
        r.pending_subscribes = 0;
        r.early.clear();
    }
    lock(&shared.consumers).clear();
    let mut g = lock(&shared.groups);
    g.members.clear();
    g.acks.clear();
}

/// What a restoring request restores.
enum Restoring {
    Subscription,
    /// The consumer's id, shared with its handle and its attachment.
    Consumer(Arc<AtomicU64>),
    Producer,
}

/// Restores the client's state on its new connection (see the module docs); why not.
async fn restore(shared: &Arc<Shared>, tasks: &mut LinkTasks) -> Result<(), String> {
    let mut answers: Vec<(String, Restoring, oneshot::Receiver<ServerFrame>)> = Vec::new();
    let mut ask = |frame: ClientFrame,
                   request: u64,
                   register: Option<Register>,
                   what: String,
                   restoring: Restoring| {
        let (reply, answer) = oneshot::channel();
        lock(&shared.pending).insert(request, PendingRequest { reply, register });
        shared
            .out
            .push_restore(&frame)
            .map_err(|e| format!("{what}: {e:?}"))?;
        answers.push((what, restoring, answer));
        Ok::<(), String>(())
    };
    let subs: Vec<_> = {
        let mut r = lock(&shared.routes);
        r.restore.retain(|tx| !tx.is_closed());
        r.pending_subscribes = r.restore.len();
        r.restore.clone()
    };
    for tx in subs {
        let request = shared.next_request();
        let filter = tx.filter.to_string();
        ask(
            ClientFrame::Subscribe {
                request,
                filter: filter.clone(),
            },
            request,
            Some(Register::Subscription(tx)),
            format!("subscription {filter:?}"),
            Restoring::Subscription,
        )?;
    }
    let consumers: Vec<_> = {
        let mut a = lock(&shared.attached);
        a.retain(|c| !c.tx.is_closed());
        a.iter()
            .map(|c| (c.queue.clone(), c.mode, c.tx.clone(), c.id.clone()))
            .collect()
    };
    for (queue, mode, tx, id) in consumers {
        let request = shared.next_request();
        ask(
            ClientFrame::Consume {
                request,
                queue: queue.clone(),
                mode,
            },
            request,
            Some(Register::Consumer(tx, id.clone())),
            format!("consumer of queue {queue:?}"),
            Restoring::Consumer(id),
        )?;
    }
    let producer = shared.producer();
    if let Some(p) = &producer {
        let request = shared.next_request();
        ask(
            ClientFrame::Producer {
                request,
                producer: p.id.clone(),
            },
            request,
            None,
            format!("producer {:?}", p.id),
            Restoring::Producer,
        )?;
    }
    // The answers, in order (the producer's last), unless the connection goes first.
    let mut settled = Vec::with_capacity(answers.len());
    let wait = async {
        for (what, restoring, answer) in answers {
            let frame = answer.await.map_err(|_| format!("{what}: no answer"))?;
            settled.push((what, restoring, frame));
        }
        Ok::<(), String>(())
    };
    tokio::select! {
        r = tokio::time::timeout(shared.timeout, wait) => {
            r.map_err(|_| "the broker did not answer the restoring requests in time".to_owned())??
        }
        _ = tasks.conn.closed() => return Err("the new connection was lost while restoring".into()),
    }
    let mut producer_named = Ok(0);
    for (what, restoring, frame) in settled {
        let (code, message) = match frame {
            ServerFrame::ProducerReady { next_seq, .. } => {
                producer_named = Ok(next_seq);
                continue;
            }
            ServerFrame::Error { code, message, .. } => (code, message),
            _ => continue,
        };
        // The broker refuses it now (the queue was removed, a permission changed): that one
        // ends (a subscription's stream when its route is dropped below, a consumer's when
        // its attachment is), the others go on.
        tracing::warn!(%code, %message, "{what} not restored after reconnecting");
        match restoring {
            Restoring::Consumer(id) => {
                lock(&shared.attached).retain(|a| !Arc::ptr_eq(&a.id, &id));
            }
            Restoring::Producer => {
                producer_named = Err(Error::Closed {
                    code: Some(code),
                    message: format!(
                        "{what} could not be named again after reconnecting: {message}"
                    ),
                });
            }
            Restoring::Subscription => {}
        }
    }
    lock(&shared.routes).restore.clear();
    match (producer, producer_named) {
        (Some(p), Ok(next_seq)) => p.resend(next_seq, &shared.out),
        (Some(p), Err(e)) => {
            p.close(&e);
            shared.out.open();
        }
        (None, _) => shared.out.open(),
    }
    Ok(())
}

/// The client has ended: everything waiting on it learns why.
fn finish(shared: &Shared, reason: CloseReason) {
    *lock(&shared.state) = LinkState::Ended(reason.clone());
    shared.out.close();
    lock(&shared.pending).clear();
    {
        let mut r = lock(&shared.routes);
        r.subs.clear();
        r.restore.clear();
        r.early.clear();
    }
    lock(&shared.consumers).clear();
    lock(&shared.attached).clear();
    {
        let mut g = lock(&shared.groups);
        g.members.clear();
        g.acks.clear();
    }
    shared.end_producer(&reason.to_error());
    shared.events.emit(ConnectionEvent::Closed(reason));
}
