//! The HTTP surface on the main port: the binary WebSocket endpoint at `/` and `/health`.
//! The origin allow-list is enforced before the upgrade, so a refused client gets an HTTP
//! status, not a dropped socket; the connection limits apply from accept (`accept`).

use std::{net::SocketAddr, sync::Arc};

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde_json::json;
use signal_core::hub::Hub;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    accept::{ConnCounts, WsSlot},
    binary,
    config::Config,
    ws::{NotUpgrade, Socket, Upgrade},
};

/// Shared state of every handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The hub.
    pub hub: Hub,
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Cancelled when the server drains: every connection closes with 1001.
    pub shutdown: CancellationToken,
    /// Tracks connection tasks, so the drain can wait for them.
    pub tracker: TaskTracker,
    /// Open connection counts.
    pub conns: Arc<ConnCounts>,
    /// Per-message metric handles.
    pub(crate) metrics: Arc<crate::metrics::HotMetrics>,
}

/// The main router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", any(binary_endpoint))
        .route("/ws", any(crate::json::ws_endpoint))
        .route("/webrtc/ws/{room_id}", any(crate::json::room_path_endpoint))
        .route("/health", get(health))
        .merge(crate::http::router(&state.config.security))
        .merge(crate::demo::router())
        .with_state(state)
}

pub(crate) fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Admits an upgrade or says why not: the server is draining, or the origin is not
/// allowed. (The connection limits were applied when the socket was accepted.)
pub(crate) fn admit(
    state: &AppState,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> Result<WsSlot, (StatusCode, &'static str)> {
    if state.shutdown.is_cancelled() {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"));
    }
    let sec = &state.config.security;
    if !sec.allowed_origins.iter().any(|o| o == "*")
        && let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && !sec.allowed_origins.iter().any(|o| o == origin)
    {
        return Err((StatusCode::FORBIDDEN, "origin not allowed"));
    }
    Ok(state.conns.websocket(endpoint))
}

async fn binary_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    upgrade(
        state,
        &headers,
        ws,
        "binary",
        "signal-manager: open a WebSocket here and speak the binary protocol (see docs/protocol.md)\n",
        move |socket, state, guard| binary::serve(socket, state, peer, guard),
    )
}

/// Admits the upgrade (drain, origin) and serves the upgraded WebSocket in the
/// connection's one task.
pub(crate) fn upgrade<F, Fut>(
    state: AppState,
    headers: &HeaderMap,
    ws: Result<Upgrade, NotUpgrade>,
    endpoint: &'static str,
    usage: &'static str,
    serve: F,
) -> Response
where
    F: FnOnce(Socket, AppState, crate::conn::Guard) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ws = match ws {
        Ok(ws) => ws,
        Err(NotUpgrade(why)) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                [
                    (header::UPGRADE, "websocket"),
                    (header::SEC_WEBSOCKET_VERSION, "13"),
                ],
                format!("{usage}not a WebSocket upgrade: {why}\n"),
            )
                .into_response();
        }
    };
    let slot = match admit(&state, headers, endpoint) {
        Ok(s) => s,
        Err((status, why)) => return refuse(status, why),
    };
    let guard = crate::conn::Guard {
        _slot: slot,
        _token: state.tracker.token(),
    };
    ws.on_upgrade(move |socket| serve(socket, state, guard))
}

/// `GET /health`: 200 `healthy` with counts, or 503 `unhealthy` when the store is down.
pub async fn health(State(state): State<AppState>) -> Response {
    let store = state.hub.store();
    let stats = state.hub.stats();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    match (store.health().await, store.count_clients().await) {
        (Ok(()), Ok(registered)) => Json(json!({
            "status": "healthy",
            "timestamp": now,
            "active_connections": state.conns.websockets(),
            "open_sockets": state.conns.sockets(),
            "registered_clients": registered,
            "webrtc_sessions": stats.members,
            "rooms": stats.rooms,
            "sessions": stats.sessions,
        }))
        .into_response(),
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
