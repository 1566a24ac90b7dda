//! The JSON dialects: altair (seed 002) and simple (seed 003) on `/ws`, room-path
//! (seed 004) on `/webrtc/ws/{room_id}`.

pub mod altair;
pub mod room_path;
pub mod simple;

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::app::AppState;

/// `GET /ws` (placeholder until the dialects land).
pub async fn ws_endpoint(
    State(_state): State<AppState>,
    ConnectInfo(_peer): ConnectInfo<SocketAddr>,
) -> Response {
    StatusCode::NOT_IMPLEMENTED.into_response()
}

/// `GET /webrtc/ws/{room_id}` (placeholder until the dialects land).
pub async fn room_path_endpoint(
    State(_state): State<AppState>,
    ConnectInfo(_peer): ConnectInfo<SocketAddr>,
    Path(_room_id): Path<String>,
) -> Response {
    StatusCode::NOT_IMPLEMENTED.into_response()
}
