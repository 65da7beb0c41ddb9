//! The front door: each incoming QUIC connection is screened before any handshake work
//! (address validation when `quic_retry` is on, connection limits, the number of handshakes in
//! progress), then handshaken and handed by ALPN to a client session or a peer link.

use std::sync::Arc;

use palio_protocol::{CLIENT_ALPN, ErrorCode, PEER_ALPN};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::admission::Slot;
use crate::context::Context;
use crate::peer::Links;

/// An incoming connection let through [`screen`], with what it holds while it lives.
pub(crate) struct Admitted {
    incoming: quinn::Incoming,
    /// Its place in the connection counts, for the connection's life.
    slot: Slot,
    /// Its place among the handshakes in progress, until its handshake ends.
    handshake: OwnedSemaphorePermit,
}

/// Decides, before any cryptography, whether to work on `incoming`: with `quic_retry`, a
/// client whose address is not validated yet gets a Retry; one over a connection limit or
/// beyond the handshakes allowed in progress is refused (QUIC `CONNECTION_REFUSED`) and
/// counted in `palio_limits_hit_total{limit}`.
pub(crate) fn screen(
    ctx: &Context,
    handshakes: &Arc<Semaphore>,
    incoming: quinn::Incoming,
) -> Option<Admitted> {
    if ctx.limits.quic_retry && !incoming.remote_address_validated() {
        // Cannot fail: the address is not validated (and a failure would only drop it).
        let _ = incoming.retry();
        return None;
    }
    let refuse = |incoming: quinn::Incoming, limit: &str| {
        ctx.metrics.limits_hit.with_label_values(&[limit]).inc();
        tracing::debug!(remote = %incoming.remote_address(), limit, "connection refused");
        incoming.refuse();
        None
    };
    let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
        return refuse(incoming, "max_handshakes");
    };
    match ctx.admission.admit_address(incoming.remote_address().ip()) {
        Ok(slot) => Some(Admitted {
            incoming,
            slot,
            handshake,
        }),
        Err(limit) => refuse(incoming, limit),
    }
}

/// Completes the handshake and serves the connection by its ALPN.
pub(crate) async fn accept(shared: Arc<Context>, links: Arc<Links>, admitted: Admitted) {
    let Admitted {
        incoming,
        slot,
        handshake,
    } = admitted;
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            tracing::info!(%remote, error = %e, "connection handshake failed");
            shared
                .metrics
                .connection_errors
                .with_label_values(&["handshake_failed"])
                .inc();
            return;
        }
    };
    drop(handshake);
    let alpn = conn
        .handshake_data()
        .and_then(|h| h.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|h| h.protocol);
    match alpn.as_deref() {
        Some(p) if p == CLIENT_ALPN => crate::session::serve(shared, conn).await,
        Some(p) if p == PEER_ALPN => crate::peer::serve_accepted(links, conn).await,
        _ => conn.close(ErrorCode::ProtocolViolation.code().into(), b"unknown ALPN"),
    }
    drop(slot);
}
