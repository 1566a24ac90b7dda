//! The main port's routes: the binary WebSocket endpoint at `/`, the JSON dialects'
//! endpoints, `/health`, the REST API and the demo page.
//! The origin allow-list is enforced before the upgrade, so a refused client gets an HTTP
//! status, not a dropped socket; the connection limits apply from accept (`accept`).

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{ConnectInfo, State},
    http::HeaderMap,
    response::Response,
    routing::{any, get},
};

use crate::{
    binary,
    conn::upgrade,
    ops::health,
    state::AppState,
    ws::{NotUpgrade, Upgrade},
};

/// The main router.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", any(binary_endpoint))
        .route("/ws", any(crate::json::ws_endpoint))
        .route("/webrtc/ws/{room_id}", any(crate::json::room_path_endpoint))
        .route("/health", get(health))
        .route("/ready", get(crate::ops::ready))
        .merge(crate::http::router(&state.config.security))
        .merge(crate::demo::router())
        .with_state(state)
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
        move |socket, state, guard, peer| binary::serve(socket, state, peer, guard),
    )
}
