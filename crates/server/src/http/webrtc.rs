//! Seed 004's REST endpoints: `GET /webrtc/config`, the `RTCConfiguration` a client hands
//! to `new RTCPeerConnection(...)` (snake_case, as the seed sends it), and
//! `GET /webrtc/rooms/{id}/participants`.

use axum::{
    Json,
    extract::{Path, State},
    http::header,
    response::IntoResponse,
};
use serde::Serialize;
use signal_core::ids::RoomId;
use utoipa::ToSchema;

use super::{ApiError, Caller, ErrorBody, turn};
use crate::{config::WebrtcConfig, state::AppState};

/// One `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs.
    #[schema(example = json!(["stun:stun.l.google.com:19302"]))]
    pub urls: Vec<String>,
    /// TURN username: `"<expiry>:<client id>"` for minted credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// TURN password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The body of `GET /webrtc/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct RtcConfiguration {
    /// STUN servers (one entry), then TURN servers with credentials (one entry).
    pub ice_servers: Vec<IceServer>,
    /// `all` or `relay`.
    #[schema(value_type = String, example = "all")]
    pub ice_transport_policy: crate::config::IceTransportPolicy,
    /// `balanced`, `max-compat` or `max-bundle`.
    #[schema(value_type = String, example = "balanced")]
    pub bundle_policy: crate::config::BundlePolicy,
    /// `require` or `negotiate`.
    #[schema(value_type = String, example = "require")]
    pub rtcp_mux_policy: crate::config::RtcpMuxPolicy,
}

/// One member of a room, as seed 004 lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Participant {
    /// The member's client id.
    pub user_id: String,
    /// Its display name (a JWT's `name` claim, or `display_name` in its join metadata),
    /// else its client id.
    pub username: String,
}

/// The body of `GET /webrtc/rooms/{id}/participants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Participants {
    /// The room asked for.
    pub room_id: String,
    /// Its members, by join time; empty for a room that does not exist.
    pub participants: Vec<Participant>,
    /// `participants.len()`.
    pub participant_count: usize,
}

/// The ICE configuration for `caller`: configured STUN servers, and TURN servers with a
/// credential minted for the caller (with `webrtc.turn_secret`) or the static one.
pub fn rtc_configuration(
    webrtc: &WebrtcConfig,
    caller: &Caller,
) -> Result<RtcConfiguration, ApiError> {
    let mut ice_servers = Vec::with_capacity(2);
    if !webrtc.stun_urls.is_empty() {
        ice_servers.push(IceServer {
            urls: webrtc.stun_urls.clone(),
            username: None,
            credential: None,
        });
    }
    if !webrtc.turn_urls.is_empty() {
        let (username, credential) = match (&webrtc.turn_secret, &webrtc.turn_username) {
            (Some(secret), _) => {
                let c = turn::mint_for(
                    secret.expose().as_bytes(),
                    &caller.client_id,
                    webrtc.turn_ttl,
                )
                .map_err(|e| ApiError::internal("minting a TURN credential", e))?;
                (Some(c.username), Some(c.credential))
            }
            (None, Some(user)) => (
                Some(user.clone()),
                webrtc
                    .turn_credential
                    .as_ref()
                    .map(|c| c.expose().to_owned()),
            ),
            // Validation refuses TURN URLs without credentials.
            (None, None) => (None, None),
        };
        ice_servers.push(IceServer {
            urls: webrtc.turn_urls.clone(),
            username,
            credential,
        });
    }
    Ok(RtcConfiguration {
        ice_servers,
        ice_transport_policy: webrtc.ice_transport_policy,
        bundle_policy: webrtc.bundle_policy,
        rtcp_mux_policy: webrtc.rtcp_mux_policy,
    })
}

/// `GET /webrtc/config`: STUN/TURN servers and ICE policies. TURN credentials minted from
/// `webrtc.turn_secret` are for the caller and expire after `webrtc.turn_ttl` seconds;
/// with `[cloudflare] turn_key_id`, Cloudflare's TURN servers follow, with credentials
/// Cloudflare minted for the same time (left out, and logged, if Cloudflare fails).
#[utoipa::path(
    get,
    path = "/webrtc/config",
    tag = "webrtc",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "ICE configuration for RTCPeerConnection", body = RtcConfiguration),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
    )
)]
pub async fn config(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let mut body = rtc_configuration(&state.config.webrtc, &caller)?;
    if let Some(turn) = &state.cloudflare_turn {
        let ttl = std::time::Duration::from_secs(state.config.webrtc.turn_ttl);
        match turn.ice_servers(ttl).await {
            Ok(servers) => body
                .ice_servers
                .extend(servers.into_iter().map(|s| IceServer {
                    urls: s.urls,
                    username: s.username,
                    credential: s.credential,
                })),
            // STUN and any coturn entry still let most clients connect: serve them.
            Err(e) => tracing::warn!(error = %e, "no Cloudflare TURN credentials for this client"),
        }
    }
    tracing::debug!(client_id = %caller.client_id, turn = !state.config.webrtc.turn_urls.is_empty(), "ICE configuration handed out");
    // It may carry credentials: no cache keeps them.
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)))
}

/// `GET /webrtc/rooms/{id}/participants`: who is in a room, to whoever may join it (its
/// members, admins, and callers whose credential grants the room). A room that does not
/// exist has no participants (200 with an empty list, as seed 004's presence lookup
/// answers); 403 for a room the caller's credential does not grant.
#[utoipa::path(
    get,
    path = "/webrtc/rooms/{id}/participants",
    tag = "webrtc",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Room id")),
    responses(
        (status = 200, description = "The room's participants (empty if the room does not exist)", body = Participants),
        (status = 400, description = "Not a valid room id", body = ErrorBody),
        (status = 401, description = "No valid Bearer token", body = ErrorBody),
        (status = 403, description = "The caller's credential does not grant the room", body = ErrorBody),
    )
)]
pub async fn participants(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Participants>, ApiError> {
    let room = RoomId::parse(&id)?;
    let info = state.hub.cluster_room(room.as_str()).await;
    let member = info.as_ref().is_some_and(|r| caller.is_member(r));
    if !(member || caller.grants.admin || caller.grants.allows_room(room.as_str())) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            format!(
                "room '{room}' is not granted to '{}': its credential allows {}",
                caller.client_id,
                caller.grants.rooms_label()
            ),
        ));
    }
    let participants: Vec<Participant> = info
        .map(|info| {
            info.participants
                .into_iter()
                .map(|p| Participant {
                    username: super::api::display_name(&p),
                    user_id: p.client_id.as_str().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(Participants {
        room_id: room.as_str().to_owned(),
        participant_count: participants.len(),
        participants,
    }))
}
