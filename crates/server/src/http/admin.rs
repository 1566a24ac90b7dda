//! The admin API: every room and member across the service, taking a member out of a
//! room, closing a room, kicking (and banning) a client, draining this node. Only for
//! callers with the admin role (a JWT's `admin: true`, or `auth.admin_clients`).

use axum::{
    Json,
    extract::{FromRequestParts, Path, Query, State},
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Serialize};
use signal_core::{ClientId, RoomId};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, Caller, ErrorBody, api};
use crate::state::AppState;

/// A caller with the admin role; anyone else is refused with 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.grants.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "'{}' has not the admin role: list it in auth.admin_clients, or give its JWT \"admin\": true",
                    caller.client_id
                ),
            ));
        }
        Ok(Self(caller))
    }
}

/// The body of `GET /api/admin/rooms`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AdminRooms {
    /// Every active room on every node, oldest first, with its members.
    pub rooms: Vec<api::RoomDetail>,
}

/// `GET /api/admin/rooms`: every room and its members, across the service.
#[utoipa::path(
    get,
    path = "/api/admin/rooms",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every active room with its members", body = AdminRooms),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller has not the admin role", body = ErrorBody),
    )
)]
pub async fn rooms(State(state): State<AppState>, _admin: Admin) -> Json<AdminRooms> {
    let mut rooms = state.hub.cluster_rooms().await;
    rooms.sort_by(|a, b| {
        (a.created_at, a.room_id.as_str()).cmp(&(b.created_at, b.room_id.as_str()))
    });
    Json(AdminRooms {
        rooms: rooms.into_iter().map(api::room_detail).collect(),
    })
}

/// Why an admin acts, shown to the clients it concerns.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
pub struct ReasonQuery {
    /// Why (at most 100 characters), shown to the clients concerned.
    pub reason: Option<String>,
}

/// What `DELETE /api/admin/rooms/{id}` closed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoomClosed {
    /// The room.
    pub room_id: String,
    /// The members it had, each taken out of it.
    pub members: usize,
}

/// `DELETE /api/admin/rooms/{id}`: closes a room. Every member is told the room closed
/// (ROOM_CLOSED, with the reason) and leaves it; the room ends.
#[utoipa::path(
    delete,
    path = "/api/admin/rooms/{id}",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id"), ReasonQuery),
    responses(
        (status = 200, description = "The room was closed", body = RoomClosed),
        (status = 400, description = "Not a room id, or a reason too long", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller has not the admin role", body = ErrorBody),
        (status = 404, description = "No such room", body = ErrorBody),
    )
)]
pub async fn close_room(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Query(q): Query<ReasonQuery>,
) -> Result<Json<RoomClosed>, ApiError> {
    let room = RoomId::parse(&id)?;
    let reason = reason_of(&admin, q.reason.as_deref(), "closed the room")?;
    let members = state
        .hub
        .close_room(&room, &reason)
        .await
        .ok_or_else(|| ApiError::not_found(format!("room '{id}' not found")))?;
    tracing::info!(room_id = %room, admin = %admin.client_id, members, reason, "room closed by an admin");
    Ok(Json(RoomClosed {
        room_id: id,
        members,
    }))
}

/// What `DELETE /api/admin/rooms/{id}/members/{client_id}` did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MemberRemoved {
    /// The room.
    pub room_id: String,
    /// The client taken out of it.
    pub client_id: String,
}

/// `DELETE /api/admin/rooms/{id}/members/{client_id}`: takes a member out of a room. It
/// is told the room closed for it (ROOM_CLOSED with the reason); the others see it leave.
/// It may join again (kick it with a ban to keep it out).
#[utoipa::path(
    delete,
    path = "/api/admin/rooms/{id}/members/{client_id}",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Room id"),
        ("client_id" = String, Path, description = "The member's client id"),
        ReasonQuery
    ),
    responses(
        (status = 200, description = "The member was taken out", body = MemberRemoved),
        (status = 400, description = "Not a room or client id, or a reason too long", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller has not the admin role", body = ErrorBody),
        (status = 404, description = "No such room, or the client is not in it", body = ErrorBody),
    )
)]
pub async fn remove_member(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path((id, client_id)): Path<(String, String)>,
    Query(q): Query<ReasonQuery>,
) -> Result<Json<MemberRemoved>, ApiError> {
    let room = RoomId::parse(&id)?;
    let client = ClientId::parse("client_id", &client_id)?;
    let reason = reason_of(&admin, q.reason.as_deref(), "removed you from the room")?;
    let member = state
        .hub
        .cluster_room(room.as_str())
        .await
        .is_some_and(|r| r.participants.iter().any(|p| p.client_id == client));
    if !member {
        return Err(ApiError::not_found(format!(
            "client '{client_id}' is not in room '{id}'"
        )));
    }
    state.hub.remove_member(&room, &client, &reason).await;
    tracing::info!(room_id = %room, client_id = %client, admin = %admin.client_id, reason, "member removed by an admin");
    Ok(Json(MemberRemoved {
        room_id: id,
        client_id,
    }))
}

/// The body of `POST /api/admin/clients/{client_id}/kick` (optional).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KickRequest {
    /// Why (at most 100 characters), shown to the client in its close frame.
    pub reason: Option<String>,
    /// Keep it out for this many minutes (1 to 525,600): no CONNECT, join or resume
    /// until then, and its registration (with its registered token) is deleted.
    pub ban_minutes: Option<u64>,
}

/// What `POST /api/admin/clients/{client_id}/kick` did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct KickResult {
    /// The client.
    pub client_id: String,
    /// Its sessions closed on this node (other nodes close theirs as they are told).
    pub sessions_closed_here: usize,
    /// When its ban ends (RFC 3339), if it was banned.
    pub banned_until: Option<String>,
    /// Whether its registration was deleted (a ban deletes it).
    pub unregistered: bool,
}

/// Most minutes of a ban: a year.
const MAX_BAN_MINUTES: u64 = 525_600;

/// `POST /api/admin/clients/{client_id}/kick`: closes every session of a client on every
/// node (close 1008 with the reason; its rooms see it leave), and with `ban_minutes`
/// keeps it out for that long.
#[utoipa::path(
    post,
    path = "/api/admin/clients/{client_id}/kick",
    tag = "admin",
    security(("bearer" = [])),
    params(("client_id" = String, Path, description = "The client to kick")),
    request_body(content = Option<KickRequest>, content_type = "application/json"),
    responses(
        (status = 200, description = "Kicked (also when it had no session: a ban still applies)", body = KickResult),
        (status = 400, description = "Not a client id, a bad body, a reason too long or a ban out of range", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller has not the admin role", body = ErrorBody),
        (status = 503, description = "The ban could not be recorded (store or cluster unavailable)", body = ErrorBody),
    )
)]
pub async fn kick(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(client_id): Path<String>,
    body: Option<Json<KickRequest>>,
) -> Result<Json<KickResult>, ApiError> {
    let client = ClientId::parse("client_id", &client_id)?;
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let reason = reason_of(&admin, req.reason.as_deref(), "kicked you")?;
    let ban = match req.ban_minutes {
        None | Some(0) => None,
        Some(m) if m <= MAX_BAN_MINUTES => Some(std::time::Duration::from_secs(m * 60)),
        Some(m) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("'ban_minutes' must be between 0 and {MAX_BAN_MINUTES}, not {m}"),
            ));
        }
    };
    let k = state.hub.kick(&client, &reason, ban).await?;
    tracing::info!(client_id = %client, admin = %admin.client_id, reason, ban_minutes = req.ban_minutes, sessions_here = k.sessions_here, "client kicked by an admin");
    Ok(Json(KickResult {
        client_id,
        sessions_closed_here: k.sessions_here,
        banned_until: k
            .banned_until
            .and_then(|ms| crate::binary::codec::rfc3339(ms / 1000)),
        unregistered: k.unregistered,
    }))
}

/// What `POST /api/admin/drain` started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Draining {
    /// `"draining"`.
    pub status: &'static str,
    /// This node.
    pub node_id: String,
}

/// `POST /api/admin/drain`: drains this node as SIGTERM does: no new connections,
/// `/ready` answers 503, every WebSocket closes with 1001 after its session left its
/// rooms (clients reconnect to another node), then the process exits.
#[utoipa::path(
    post,
    path = "/api/admin/drain",
    tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The node is draining", body = Draining),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller has not the admin role", body = ErrorBody),
    )
)]
pub async fn drain(
    State(state): State<AppState>,
    Admin(admin): Admin,
) -> (StatusCode, Json<Draining>) {
    tracing::info!(admin = %admin.client_id, "drain requested over the admin API");
    state.drain.cancel();
    (
        StatusCode::ACCEPTED,
        Json(Draining {
            status: "draining",
            node_id: state.hub.router().node_id().to_owned(),
        }),
    )
}

/// The reason shown to clients: the admin's words (at most 100 characters), else what it
/// did; always naming the admin.
fn reason_of(admin: &Caller, given: Option<&str>, did: &str) -> Result<String, ApiError> {
    let given = given.map(str::trim).filter(|r| !r.is_empty());
    if let Some(r) = given
        && (r.chars().count() > 100 || r.chars().any(char::is_control))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "'reason' must be at most 100 characters, without control characters",
        ));
    }
    Ok(match given {
        Some(r) => format!("{r} (admin '{}')", admin.client_id),
        None => format!("admin '{}' {did}", admin.client_id),
    })
}
