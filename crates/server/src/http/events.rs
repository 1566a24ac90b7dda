//! `GET /api/rooms/{id}/events?since=SEQ&limit=N`: a room's lifecycle events after `seq`
//! `since`, for a consumer that missed some (delivered or not). Every event in the
//! answer is the JSON a webhook receives.

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Caller, ErrorBody};
use crate::state::AppState;

/// Most events in one answer.
pub const MAX_LIMIT: u32 = 1000;

/// The query of `GET /api/rooms/{id}/events`.
#[derive(Debug, Clone, Deserialize, IntoParams)]
pub struct EventsQuery {
    /// Events with a `seq` above this one (default 0: from the first).
    pub since: Option<u64>,
    /// At most this many (default and maximum 1000).
    pub limit: Option<u32>,
}

/// The body of `GET /api/rooms/{id}/events`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomEvents {
    /// The room.
    pub room_id: String,
    /// Its events after `since`, in `seq` order (schema: docs/events.md).
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// The `since` of the next page: the last `seq` here (or `since` when empty).
    pub next_since: u64,
}

/// `GET /api/rooms/{id}/events`: what a consumer of a room's events missed.
#[utoipa::path(
    get,
    path = "/api/rooms/{id}/events",
    tag = "api",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), EventsQuery),
    responses(
        (status = 200, description = "The room's events after `since`", body = RoomEvents),
        (status = 400, description = "A bad `limit`", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller is neither an admin nor in the room", body = ErrorBody),
        (status = 404, description = "Events are not recorded (no sink in [events])", body = ErrorBody),
        (status = 503, description = "The store cannot be read now", body = ErrorBody),
    )
)]
pub async fn room_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<RoomEvents>, ApiError> {
    if !state.config.events.enabled() {
        return Err(ApiError::not_found(
            "events are not recorded: set a sink in [events]",
        ));
    }
    if !caller.grants.admin {
        let member = state
            .hub
            .cluster_room(&id)
            .await
            .is_some_and(|r| caller.is_member(&r));
        if !member {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                format!(
                    "the events of room '{id}' are for admins and the room's members ('{}' is neither)",
                    caller.client_id
                ),
            ));
        }
    }
    let limit = q.limit.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            format!("'limit' must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let since = q.since.unwrap_or(0);
    let events = state
        .hub
        .store()
        .room_events(&id, since, limit)
        .await
        .map_err(|e| ApiError::from(signal_core::error::CoreError::from_store("room_events", e)))?;
    let next_since = events.last().and_then(|e| e.seq).unwrap_or(since);
    let events = events
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal("room_events: encoding", e))?;
    Ok(Json(RoomEvents {
        room_id: id,
        events,
        next_since,
    }))
}
