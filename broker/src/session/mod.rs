//! Client sessions: one task per client connection.
//!
//! - [`hello`]: the control stream is opened, the hello read, the version and credentials
//!   checked, and `Welcome` sent.
//! - This module then sets the connection up: a delivery outbox (registered with the router)
//!   drained by a writer onto the delivery stream, and a control outbox (shared with the
//!   persist task) drained by a writer onto the control stream's send side.
//! - [`requests`]: the session reads the control stream in order and hands each request to the
//!   router or the persist task; publications go to the router in paced batches (the `pacer`
//!   module), so a publisher whose notifications fill a queue is slowed, not dropped.
//!
//! Any malformed or oversized frame closes this connection with its error code; nothing else is
//! affected. Writers that fail close the connection too (the `writer` module).

mod dispatch;
mod filters;
mod hello;
mod permissions;
mod publish;
mod requests;

use std::sync::Arc;

use palio_protocol::ErrorCode;

use crate::context::Context;
use crate::groups::GroupCommand;
use crate::outbox::{Capacity, Outbox};
use crate::persist::PersistCommand;
use crate::router::{ClientId, Command, Refusal};
use crate::writer::{self, Role};

/// Frames queued for a client's control stream (answers, durable messages, publish acks).
/// Push windows and fetch batches are capped well below it; the persist task disconnects a
/// client that lets it fill.
const CONTROL_QUEUE: Capacity = Capacity {
    frames: 16 * 1024,
    bytes: 64 << 20,
};

// One push consumer's window or one fetch batch fills at most a quarter of the control queue
// (see `palio_protocol::MAX_PUSH_WINDOW`): checked when compiling, so the two cannot drift.
const _: () = assert!(
    4 * palio_protocol::MAX_PUSH_WINDOW as usize <= CONTROL_QUEUE.frames
        && 4 * palio_protocol::MAX_FETCH_BATCH as usize <= CONTROL_QUEUE.frames
);

/// Serves one client connection until it closes.
pub(crate) async fn serve(shared: Arc<Context>, conn: quinn::Connection) {
    let client = shared.next_id();
    let m = &shared.metrics;
    m.connections.with_label_values(&["client"]).inc();
    m.open_connections.with_label_values(&["client"]).inc();
    if let Err((code, message)) = session(&shared, &conn, client).await {
        if code != ErrorCode::Closed {
            tracing::info!(client, remote = %conn.remote_address(), %code, %message, "closing client connection");
            m.connection_errors
                .with_label_values(&[code.as_str()])
                .inc();
        }
        conn.close(code.code().into(), message.as_bytes());
    }
    let _ = shared.router.send(Command::ClientGone { client }).await;
    let _ = shared
        .persist
        .send(PersistCommand::ClientGone { client })
        .await;
    let _ = shared
        .groups
        .send(GroupCommand::ClientGone { client })
        .await;
    m.open_connections.with_label_values(&["client"]).dec();
}

async fn session(
    shared: &Context,
    conn: &quinn::Connection,
    client: ClientId,
) -> Result<(), Refusal> {
    let hello::Hello {
        reader,
        send,
        name,
        credential,
        principal,
        access,
    } = hello::handshake(shared, conn).await?;
    // Held for the connection's life: its share of the principal's connections.
    let _slot = shared
        .admission
        .admit_principal(&principal.name)
        .map_err(|limit| {
            shared.metrics.limits_hit.with_label_values(&[limit]).inc();
            (
                ErrorCode::LimitExceeded,
                format!(
                    "too many connections of principal {:?} (limits.{limit} = {})",
                    principal.name, shared.limits.max_connections_per_principal
                ),
            )
        })?;
    tracing::debug!(client, %name, principal = %principal.name, remote = %conn.remote_address(), "client connected");
    let limits = &shared.limits;
    let max = limits.internal_frame_bytes();
    let stall = limits.stall_timeout();

    let (deliveries, delivery_inbox) = Outbox::new(limits.subscriber_capacity());
    let (control, control_inbox) = Outbox::new(CONTROL_QUEUE);
    shared
        .router
        .send(Command::RegisterClient {
            client,
            deliveries,
            control: control.clone(),
            connection: conn.clone(),
        })
        .await?;
    writer::spawn(
        control_inbox,
        send,
        max,
        stall,
        conn.clone(),
        shared.metrics.clone(),
        Role::Control,
    );
    hello::welcome(shared, &control);
    // Bounded: a client that grants no unidirectional stream would hold the session forever.
    let uni = tokio::time::timeout(hello::HELLO_TIMEOUT, conn.open_uni())
        .await
        .map_err(|_| {
            (
                ErrorCode::ProtocolViolation,
                "no delivery stream allowed".to_owned(),
            )
        })?
        .map_err(|e| (ErrorCode::Closed, e.to_string()))?;
    writer::spawn(
        delivery_inbox,
        uni,
        max,
        stall,
        conn.clone(),
        shared.metrics.clone(),
        Role::Delivery,
    );
    shared
        .persist
        .send(PersistCommand::ClientUp {
            client,
            frames: control.clone(),
            connection: conn.clone(),
            principal: principal.clone(),
        })
        .await?;
    shared
        .groups
        .send(GroupCommand::ClientUp {
            client,
            name,
            frames: control.clone(),
            connection: conn.clone(),
            principal: principal.clone(),
        })
        .await?;
    requests::run(
        shared,
        client,
        reader,
        control,
        (credential, principal, access),
    )
    .await
}
