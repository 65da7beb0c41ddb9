//! The admin HTTP listener: `/metrics` (Prometheus text format), `/healthz` and `/routes`
//! (JSON: peers, links, the tree and the routing tables with their filters, as the router
//! task sees them; the `introspect` module assembles it, as for clients' `Routes` requests)
//! and `/store` (JSON: the persistent log's segments, end and durable positions, failure).
//!
//! With `[admin_access] token` set, every endpoint but `/healthz` wants
//! `Authorization: Bearer TOKEN` (401 otherwise, counted in
//! `palio_permission_denied_total{action="admin"}`); with `routes = "summary"`, `/routes`
//! gives table sizes instead of every filter and client.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use palio_protocol::ErrorCode;
use tokio::sync::oneshot;

use crate::context::Context;
use crate::persist::{PersistCommand, StoreStatus};
use crate::router::Command;

/// Serves the admin endpoints on `listener` until shutdown.
pub(crate) async fn serve(shared: Arc<Context>, listener: tokio::net::TcpListener) {
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

/// `None` if the request may read protected endpoints, else the 401 to answer.
fn refuse(shared: &Context, headers: &HeaderMap) -> Option<Response> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if shared.gate.current().admin.allows(authorization) {
        return None;
    }
    shared
        .metrics
        .permission_denied
        .with_label_values(&["admin"])
        .inc();
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this admin listener wants `Authorization: Bearer TOKEN` ([admin_access] token)\n",
        )
            .into_response(),
    )
}

async fn metrics(State(shared): State<Arc<Context>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        shared.metrics.render(),
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Context>>) -> Response {
    health(
        shared.shutdown.is_cancelled(),
        // A task whose command channel is closed has stopped (its receiver went with it,
        // however it ended: returned, panicked, or never started).
        shared.router.is_closed(),
        shared.persist.is_closed(),
        shared.groups.is_closed(),
        router_answers(&shared),
        store_status(&shared),
    )
    .await
    .into_response()
}

/// The verdict of `/healthz`: 200 `ok`, or 503 with the first reason found: shutting down, the
/// router, the persist or the groups task stopped, the router stuck (no answer within 5 s), the store busy
/// (no answer within 5 s) or failed. Each future is awaited only when everything before it is
/// fine.
async fn health(
    shutting_down: bool,
    router_stopped: bool,
    persist_stopped: bool,
    groups_stopped: bool,
    router_answers: impl Future<Output = bool>,
    store: impl Future<Output = Option<StoreStatus>>,
) -> (StatusCode, String) {
    let unavailable = |why: &str| (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"));
    if shutting_down {
        return unavailable("shutting down");
    }
    if router_stopped {
        return unavailable("router task stopped");
    }
    if persist_stopped {
        return unavailable("persist task stopped");
    }
    if groups_stopped {
        return unavailable("groups task stopped");
    }
    if !router_answers.await {
        return unavailable("router not answering");
    }
    match store.await {
        Some(s) => match s.failed.as_deref() {
            Some(why) => unavailable(&format!("store failed: {why}")),
            None => (StatusCode::OK, "ok\n".into()),
        },
        None => unavailable("store busy"),
    }
}

/// Whether the router answers a flush within 5 s (a live but stuck router does not).
async fn router_answers(shared: &Context) -> bool {
    let flushed = shared.router.call(|reply| Command::Flush { reply });
    matches!(
        tokio::time::timeout(Duration::from_secs(5), flushed).await,
        Ok(Ok(()))
    )
}

async fn store_status(shared: &Context) -> Option<StoreStatus> {
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

async fn store(State(shared): State<Arc<Context>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    match store_status(&shared).await {
        Some(status) => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string_pretty(&status).unwrap_or_default(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "store busy\n").into_response(),
    }
}

async fn routes(State(shared): State<Arc<Context>>, headers: HeaderMap) -> Response {
    if let Some(r) = refuse(&shared, &headers) {
        return r;
    }
    // Under `routes = "summary"`, table sizes only: no filter and no client leaves the broker.
    let detail = shared.gate.current().admin.routes;
    let view =
        match crate::introspect::routes(&shared, detail, crate::introspect::HTTP_BUDGET).await {
            Ok(view) => view,
            Err((ErrorCode::ShuttingDown, _)) => {
                return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
            }
            Err((_, why)) => {
                return (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response();
            }
        };
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&view).unwrap_or_default(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::groups::GroupHandle;
    use crate::persist::PersistHandle;
    use crate::router::RouterHandle;

    fn store(failed: Option<&str>) -> impl Future<Output = Option<StoreStatus>> {
        let status = StoreStatus {
            failed: failed.map(str::to_owned),
            ..StoreStatus::default()
        };
        async move { Some(status) }
    }

    /// A 503 whose body is `why`.
    fn down(why: &str) -> (StatusCode, String) {
        (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n"))
    }

    #[tokio::test]
    async fn healthz_fails_once_the_router_persist_or_groups_task_has_stopped() {
        let (router_tx, router_rx) = mpsc::channel(1);
        let (persist_tx, persist_rx) = mpsc::channel(1);
        let (groups_tx, groups_rx) = mpsc::channel(1);
        let router = RouterHandle::new(router_tx);
        let persist = PersistHandle::new(persist_tx);
        let groups = GroupHandle::new(groups_tx);
        let (r, p, g) = (router.is_closed(), persist.is_closed(), groups.is_closed());
        assert_eq!(
            health(false, r, p, g, async { true }, store(None)).await,
            (StatusCode::OK, "ok\n".into())
        );

        // The groups thread ends (its own thread, like the persist task's).
        std::thread::spawn(move || drop(groups_rx)).join().unwrap();
        let (r, p, g) = (router.is_closed(), persist.is_closed(), groups.is_closed());
        assert_eq!(
            health(false, r, p, g, async { true }, store(None)).await,
            down("groups task stopped")
        );

        // The persist thread ends: /healthz says so without asking the store, which is gone.
        std::thread::spawn(move || drop(persist_rx)).join().unwrap();
        let unanswerable = async { panic!("a stopped task is reported before the store is asked") };
        let (r, p, g) = (router.is_closed(), persist.is_closed(), groups.is_closed());
        assert_eq!(
            health(false, r, p, g, async { true }, unanswerable).await,
            down("persist task stopped")
        );

        // The router task panics: that comes first.
        let crashed = tokio::spawn(async move {
            let _rx = router_rx;
            panic!("a router bug");
        });
        assert!(crashed.await.is_err_and(|e| e.is_panic()));
        let (r, p, g) = (router.is_closed(), persist.is_closed(), groups.is_closed());
        assert_eq!(
            health(false, r, p, g, async { true }, store(None)).await,
            down("router task stopped")
        );
        assert_eq!(
            health(true, true, true, true, async { true }, store(None)).await,
            down("shutting down")
        );
    }

    #[tokio::test]
    async fn healthz_reports_a_stuck_router_and_a_failed_or_silent_store() {
        assert_eq!(
            health(
                false,
                false,
                false,
                false,
                async { true },
                store(Some("disk full"))
            )
            .await,
            down("store failed: disk full")
        );
        assert_eq!(
            health(false, false, false, false, async { true }, async { None }).await,
            down("store busy")
        );
        assert_eq!(
            health(false, false, false, false, async { false }, store(None)).await,
            down("router not answering")
        );
    }
}
