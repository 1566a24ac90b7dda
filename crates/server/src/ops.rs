//! The operations listener (`metrics.host:metrics.port`): Prometheus text on `/metrics`
//! and `/health`, which the main port serves as well.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{metrics::recorder, state::AppState};

/// How often the exporter's upkeep (histogram draining) runs.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How long a scrape waits for the store's client count before rendering without it.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// This node's part of a cluster, for `/health`: `None` on a single node.
async fn cluster_health(state: &AppState) -> Option<serde_json::Value> {
    state.config.cluster.as_ref()?;
    let router = state.hub.router();
    let healthy = router.is_healthy();
    let nodes = router.nodes().await.unwrap_or_default();
    let (rooms, load) = if healthy {
        (
            router.room_ids().await.ok().map(|r| r.len()),
            router.cluster_load().await.ok(),
        )
    } else {
        (None, None)
    };
    let sum = |f: fn(&signal_core::router::NodeLoad) -> usize| {
        load.as_ref()
            .map(|l| l.iter().map(|(_, x)| f(x)).sum::<usize>())
    };
    Some(json!({
        "node_id": router.node_id(),
        "redis": if healthy { "ok" } else { "unreachable" },
        "nodes": nodes,
        "rooms": rooms,
        "sessions": sum(|l| l.sessions),
        "webrtc_sessions": sum(|l| l.members),
    }))
}

/// `GET /health`: 200 `healthy` with counts (this node's, and in a cluster the cluster's),
/// 200 `degraded` when the cluster's Redis is unreachable (this node still serves its own
/// clients), or 503 `unhealthy` when the store is down.
pub async fn health(State(state): State<AppState>) -> Response {
    let store = state.hub.store();
    let stats = state.hub.stats();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let cluster = cluster_health(&state).await;
    let degraded = cluster.as_ref().is_some_and(|c| c["redis"] != "ok");
    match (store.health().await, store.count_clients().await) {
        (Ok(()), Ok(registered)) => {
            let mut body = json!({
                "status": if degraded { "degraded" } else { "healthy" },
                "timestamp": now,
                "active_connections": state.conns.websockets(),
                "open_sockets": state.conns.sockets(),
                "registered_clients": registered,
                "webrtc_sessions": stats.members,
                "rooms": stats.rooms,
                "sessions": stats.sessions,
            });
            if let Some(c) = cluster {
                body["cluster"] = c;
            }
            Json(body).into_response()
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "health check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({
                    "status": "unhealthy",
                    "timestamp": now,
                    "active_connections": state.conns.websockets(),
                    "open_sockets": state.conns.sockets(),
                    "error": "database unavailable",
                })),
            )
                .into_response()
        }
    }
}

/// `GET /ready`: 200 when this node should get new clients: the store answers, the node
/// is not draining, and in a cluster Redis is reachable; 503 with the reason otherwise.
/// (`/health` says how the node is; this says whether a load balancer should send it
/// clients.)
pub async fn ready(State(state): State<AppState>) -> Response {
    let reason = if state.hub.is_shutting_down() {
        Some("draining")
    } else if state.config.cluster.is_some() && !state.hub.router().is_healthy() {
        Some("cluster Redis unreachable")
    } else if state.hub.store().health().await.is_err() {
        Some("database unavailable")
    } else {
        None
    };
    match reason {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": r})),
        )
            .into_response(),
    }
}

/// The metrics listener's routes: `/metrics`, `/health` and `/ready`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(state)
}

/// `GET /metrics`: refreshes the state-mirroring gauges and renders the text format.
async fn scrape(State(state): State<AppState>) -> Response {
    let handle = match recorder() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape without a recorder");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    refresh_gauges(&state).await;
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}

async fn refresh_gauges(state: &AppState) {
    let stats = state.hub.stats();
    metrics::gauge!("signal_rooms").set(stats.rooms as f64);
    metrics::gauge!("signal_room_members").set(stats.members as f64);
    match tokio::time::timeout(STORE_TIMEOUT, state.hub.store().count_clients()).await {
        Ok(Ok(n)) => {
            metrics::gauge!("signal_registered_clients").set(n as f64);
            metrics::gauge!("signal_store_up").set(1.0);
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metrics scrape: store unavailable");
            metrics::gauge!("signal_store_up").set(0.0);
        }
        Err(_) => {
            tracing::debug!("metrics scrape: store did not answer in time");
            metrics::gauge!("signal_store_up").set(0.0);
        }
    }
}

/// A running metrics listener.
pub(crate) struct MetricsListener {
    /// The bound address.
    pub(crate) addr: SocketAddr,
    handle: axum_server::Handle<SocketAddr>,
    join: JoinHandle<std::io::Result<()>>,
    stop: CancellationToken,
}

/// Serves [`router`] on `listener`, with the exporter's upkeep running every few seconds
/// until [`MetricsListener::stop`].
pub(crate) fn serve(
    state: AppState,
    recorder: PrometheusHandle,
    listener: std::net::TcpListener,
    header_timeout: Duration,
) -> Result<MetricsListener, std::io::Error> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let upkeep_stop = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => recorder.run_upkeep(),
                _ = upkeep_stop.cancelled() => break,
            }
        }
    });
    let handle = axum_server::Handle::new();
    let mut server = axum_server::from_tcp(listener)?.handle(handle.clone());
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout);
    let join = tokio::spawn(server.serve(router(state).into_make_service()));
    tracing::info!("metrics: Prometheus text on http://{addr}/metrics, health on /health");
    Ok(MetricsListener {
        addr,
        handle,
        join,
        stop,
    })
}

// === impl MetricsListener ===

impl MetricsListener {
    /// Stops accepting scrapes and waits (briefly) for the listener to finish.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        self.handle.graceful_shutdown(Some(Duration::from_secs(1)));
        if tokio::time::timeout(Duration::from_secs(2), self.join)
            .await
            .is_err()
        {
            tracing::warn!("metrics listener did not stop in time");
        }
    }
}
