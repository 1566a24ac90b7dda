//! REST endpoints beside the WebSocket ones.

use axum::Router;

use crate::app::AppState;

/// Routes of the REST API.
pub fn router() -> Router<AppState> {
    Router::new()
}
