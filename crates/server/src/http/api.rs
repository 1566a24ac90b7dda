//! Seed 002's REST endpoints: `GET /api/stats`, `GET /api/rooms`, `GET /api/rooms/{id}`.
//! Shapes follow the seed, including its time formats: `timestamp`, a room's detail
//! `created_at` and a peer's `joined_at` are Unix milliseconds; the list's `created_at` is
//! RFC 3339.

use std::collections::HashSet;

use axum::{
    Json,
    extract::{Path, State},
};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use signal_core::hub::{Hub, ParticipantInfo, RoomInfo};
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody};
use crate::state::AppState;

/// Peer counts of `/api/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct PeerStats {
    /// Connected, authenticated sessions on this node.
    pub total: usize,
    /// Of those, the ones in no room.
    pub without_room: usize,
}

/// Room counts of `/api/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoomStats {
    /// Active rooms.
    pub total: usize,
    /// Room memberships, summed over rooms.
    pub total_peers: usize,
}

/// The body of `GET /api/stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Stats {
    /// Peers.
    pub peers: PeerStats,
    /// Rooms.
    pub rooms: RoomStats,
    /// When the counts were taken, Unix milliseconds.
    pub timestamp: i64,
}

/// One room of `GET /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoomSummary {
    /// Room id.
    pub id: String,
    /// Members.
    pub peer_count: usize,
    /// Member cap.
    pub max_peers: usize,
    /// When the room was created, RFC 3339 (as seed 002's list shows it).
    #[schema(example = "2024-01-01T00:00:00.000Z")]
    pub created_at: String,
}

/// The body of `GET /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RoomList {
    /// Active rooms, oldest first.
    pub rooms: Vec<RoomSummary>,
}

/// One member of `GET /api/rooms/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Peer {
    /// The member's client id.
    pub peer_id: String,
    /// Its display name, else its client id.
    pub display_name: String,
    /// The `endpoint` (`{ip, port}`) it announced in its join metadata, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"ip": "203.0.113.1", "port": 12345}))]
    pub endpoint: Option<Value>,
    /// `sender` or `receiver`.
    #[schema(example = "sender")]
    pub role: &'static str,
    /// When it joined, Unix milliseconds.
    pub joined_at: i64,
}

/// The body of `GET /api/rooms/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RoomDetail {
    /// Room id.
    pub id: String,
    /// Members, by join time.
    pub peers: Vec<Peer>,
    /// `peers.len()`.
    pub peer_count: usize,
    /// Member cap.
    pub max_peers: usize,
    /// When the room was created, Unix milliseconds.
    pub created_at: i64,
}

/// Counts for `/api/stats`, from the hub's live state.
pub fn stats_of(hub: &Hub) -> Stats {
    let counts = hub.stats();
    let rooms = hub.list_rooms();
    // A session is in a room if any of its client's sessions lists one; look each member
    // client up once.
    let members: HashSet<&str> = rooms
        .iter()
        .flat_map(|r| r.participants.iter().map(|p| p.client_id.as_str()))
        .collect();
    let in_rooms: usize = members
        .iter()
        .map(|c| {
            hub.sessions_of(c)
                .iter()
                .filter(|s| !s.rooms().is_empty())
                .count()
        })
        .sum();
    Stats {
        peers: PeerStats {
            total: counts.sessions,
            without_room: counts.sessions.saturating_sub(in_rooms),
        },
        rooms: RoomStats {
            total: rooms.len(),
            total_peers: rooms.iter().map(|r| r.participants.len()).sum(),
        },
        timestamp: Utc::now().timestamp_millis(),
    }
}

/// Counts across a cluster: every live node's sessions (asked of each) and the
/// registry's rooms; `None` on a single node, or when the cluster cannot be asked.
async fn cluster_stats(hub: &Hub) -> Option<Stats> {
    let router = hub.router();
    if !router.has_other_nodes() {
        return None;
    }
    let loads = router.cluster_load().await.ok()?;
    let rooms = hub.cluster_rooms().await;
    Some(Stats {
        peers: PeerStats {
            total: loads.iter().map(|(_, l)| l.sessions).sum(),
            without_room: loads.iter().map(|(_, l)| l.sessions_without_room).sum(),
        },
        rooms: RoomStats {
            total: rooms.len(),
            total_peers: rooms.iter().map(|r| r.participants.len()).sum(),
        },
        timestamp: Utc::now().timestamp_millis(),
    })
}

/// `GET /api/stats`: peers and rooms (in a cluster, on every node).
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "api",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Counts", body = Stats),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
    )
)]
pub async fn stats(State(state): State<AppState>, _caller: Caller) -> Json<Stats> {
    match cluster_stats(&state.hub).await {
        Some(s) => Json(s),
        None => Json(stats_of(&state.hub)),
    }
}

/// `GET /api/rooms`: the active rooms the caller is in (an admin: every room), oldest
/// first.
#[utoipa::path(
    get,
    path = "/api/rooms",
    tag = "api",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active rooms the caller is in (every room for an admin)", body = RoomList),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
    )
)]
pub async fn rooms(State(state): State<AppState>, caller: Caller) -> Json<RoomList> {
    let mut rooms = state.hub.cluster_rooms().await;
    rooms.retain(|r| caller.sees_room(r));
    rooms.sort_by(|a, b| {
        (a.created_at, a.room_id.as_str()).cmp(&(b.created_at, b.room_id.as_str()))
    });
    Json(RoomList {
        rooms: rooms
            .into_iter()
            .map(|r| RoomSummary {
                id: r.room_id.as_str().to_owned(),
                peer_count: r.participants.len(),
                max_peers: r.max_participants,
                created_at: rfc3339(r.created_at),
            })
            .collect(),
    })
}

/// `GET /api/rooms/{id}`: one room and its members, to its members and admins (404 to
/// anyone else, as for a room that does not exist).
#[utoipa::path(
    get,
    path = "/api/rooms/{id}",
    tag = "api",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The room", body = RoomDetail),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 404, description = "No such room, or the caller is neither in it nor an admin", body = ErrorBody),
    )
)]
pub async fn room(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RoomDetail>, ApiError> {
    let info = state
        .hub
        .cluster_room(&id)
        .await
        .filter(|r| caller.sees_room(r))
        .ok_or_else(|| ApiError::not_found(format!("room '{id}' not found")))?;
    Ok(Json(room_detail(info)))
}

pub(crate) fn room_detail(info: RoomInfo) -> RoomDetail {
    let peers: Vec<Peer> = info.participants.into_iter().map(peer).collect();
    RoomDetail {
        id: info.room_id.as_str().to_owned(),
        peer_count: peers.len(),
        peers,
        max_peers: info.max_participants,
        created_at: info.created_at.timestamp_millis(),
    }
}

fn peer(p: ParticipantInfo) -> Peer {
    Peer {
        display_name: display_name(&p),
        endpoint: p.metadata.get("endpoint").filter(|v| !v.is_null()).cloned(),
        peer_id: p.client_id.as_str().to_owned(),
        role: p.role.as_str(),
        joined_at: p.joined_at.timestamp_millis(),
    }
}

/// The name to show for a member: its session's display name (a JWT's `name`), else the
/// `display_name` of its join metadata, else its client id.
pub(crate) fn display_name(p: &ParticipantInfo) -> String {
    p.display_name
        .clone()
        .or_else(|| {
            p.metadata
                .get("display_name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| p.client_id.as_str().to_owned())
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}
