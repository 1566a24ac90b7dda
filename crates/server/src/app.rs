//! The HTTP surface on the main port: the binary WebSocket endpoint at `/` and `/health`.
//! Connection limits (total and per IP) and the origin allow-list are enforced before the
//! upgrade, so a refused client gets an HTTP status, not a dropped socket.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{ConnectInfo, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use dashmap::DashMap;
use serde_json::json;
use signal_core::hub::Hub;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
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

/// Open WebSocket connections, in total and per client IP.
#[derive(Debug, Default)]
pub struct ConnCounts {
    total: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
}

impl ConnCounts {
    /// Open connections.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// Releases a connection slot when dropped.
pub(crate) struct ConnSlot {
    counts: Arc<ConnCounts>,
    ip: IpAddr,
    endpoint: &'static str,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.counts.total.fetch_sub(1, Ordering::Relaxed);
        self.counts.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
        metrics::gauge!("signal_connections", "endpoint" => self.endpoint).decrement(1.0);
    }
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

/// Admits a connection or says why not.
pub(crate) fn admit(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    endpoint: &'static str,
) -> Result<ConnSlot, (StatusCode, &'static str)> {
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
    let counts = &state.conns;
    let max = state.config.server.max_connections;
    if counts.total.fetch_add(1, Ordering::Relaxed) >= max {
        counts.total.fetch_sub(1, Ordering::Relaxed);
        metrics::counter!("signal_connections_refused_total", "reason" => "max_connections")
            .increment(1);
        return Err((StatusCode::SERVICE_UNAVAILABLE, "connection limit reached"));
    }
    let ip = peer.ip();
    let per_ip_max = sec.max_connections_per_ip as usize;
    {
        let mut n = counts.per_ip.entry(ip).or_insert(0);
        if per_ip_max > 0 && *n >= per_ip_max {
            drop(n);
            counts.total.fetch_sub(1, Ordering::Relaxed);
            metrics::counter!("signal_connections_refused_total", "reason" => "per_ip")
                .increment(1);
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections from this address",
            ));
        }
        *n += 1;
    }
    metrics::gauge!("signal_connections", "endpoint" => endpoint).increment(1.0);
    Ok(ConnSlot {
        counts: counts.clone(),
        ip,
        endpoint,
    })
}

async fn binary_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    upgrade(
        state,
        peer,
        &headers,
        ws,
        "binary",
        "signal-manager: open a WebSocket here and speak the binary protocol (see docs/protocol.md)\n",
        move |socket, state, guard| binary::serve(socket, state, peer, guard),
    )
}

/// Admits the connection (limits, origin) and serves the upgraded WebSocket in the
/// connection's one task.
pub(crate) fn upgrade<F, Fut>(
    state: AppState,
    peer: SocketAddr,
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
    let slot = match admit(&state, peer, headers, endpoint) {
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
            "active_connections": state.conns.total(),
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
                    "active_connections": state.conns.total(),
                    "error": "database unavailable",
                })),
            )
                .into_response()
        }
    }
}
