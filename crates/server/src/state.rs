//! What every handler and connection shares: the hub, the configuration, the drain and
//! the connection counts; and the checks an upgrade passes before it is served.

use std::sync::Arc;

use axum::{
    Json,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;
use signal_core::hub::Hub;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    accept::{ConnCounts, WsSlot},
    config::Config,
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
    /// Cancelled when an admin asks this node to drain (`POST /api/admin/drain`): the
    /// process then drains as on SIGTERM.
    pub drain: CancellationToken,
    /// Tracks connection tasks, so the drain can wait for them.
    pub tracker: TaskTracker,
    /// Open connection counts.
    pub conns: Arc<ConnCounts>,
    /// Per-message metric handles.
    pub(crate) metrics: Arc<crate::metrics::HotMetrics>,
    /// Cloudflare TURN credentials for `/webrtc/config` (`[cloudflare] turn_key_id`).
    pub(crate) cloudflare_turn: Option<signal_media_cloudflare::CloudflareTurn>,
}

/// A refusal as the HTTP API words it: `{"error": message}`.
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
