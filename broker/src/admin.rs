//! The admin HTTP listener: `/metrics` (Prometheus text format), `/healthz` and `/routes`
//! (JSON: peers, links, the tree and the routing tables, as the router task sees them) and
//! `/store` (JSON: the persistent log's segments, end and durable positions, failure).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::oneshot;

use crate::persist::PersistCommand;
use crate::router::Command;
use crate::server::Shared;

/// Serves the admin endpoints on `listener` until shutdown.
pub(crate) async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) {
    let shutdown = shared.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/routes", get(routes))
        .route("/store", get(store))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "admin listener failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    // A task whose command channel is closed has stopped.
    if shared.router.is_closed() {
        return (StatusCode::SERVICE_UNAVAILABLE, "router task stopped\n").into_response();
    }
    if shared.persist.is_closed() {
        return (StatusCode::SERVICE_UNAVAILABLE, "persist task stopped\n").into_response();
    }
    match store_status(&shared).await {
        Some(s) => match s["failed"].as_str() {
            Some(why) => (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("store failed: {why}\n"),
            )
                .into_response(),
            None => "ok\n".into_response(),
        },
        None => (StatusCode::SERVICE_UNAVAILABLE, "store busy\n").into_response(),
    }
}

async fn store_status(shared: &Shared) -> Option<serde_json::Value> {
    let (reply, answer) = oneshot::channel();
    shared
        .persist
        .send(PersistCommand::Status { reply })
        .await
        .ok()?;
    tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .ok()?
        .ok()
}

async fn store(State(shared): State<Arc<Shared>>) -> Response {
    match store_status(&shared).await {
        Some(json) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string_pretty(&json).unwrap_or_default(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "store busy\n").into_response(),
    }
}

async fn routes(State(shared): State<Arc<Shared>>) -> Response {
    let asked = shared.router.call(|reply| Command::Routes { reply });
    let view = match tokio::time::timeout(Duration::from_secs(5), asked).await {
        Ok(Ok(view)) => view,
        Ok(Err(_)) => return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "router busy\n").into_response(),
    };
    let mut json = serde_json::to_value(&view).unwrap_or_default();
    json["dialed"] = crate::peer::dial_snapshot(&shared.dial_states);
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&json).unwrap_or_default(),
    )
        .into_response()
}
