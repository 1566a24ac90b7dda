//! Rows of the seven tables, with the seed's field names.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

/// `registered_clients`: a client's persistent identity.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredClient {
    /// Row id.
    pub id: Uuid,
    /// The client's id (unique).
    pub client_id: String,
    /// Salted hash of the client's token (see `auth::hash_token`); never the token.
    pub auth_token: String,
    /// Associated room, informational.
    pub room_id: Option<String>,
    /// Capabilities announced at registration.
    pub capabilities: Vec<String>,
    /// When registered.
    pub registered_at: DateTime<Utc>,
    /// Last activity.
    pub last_seen: Option<DateTime<Utc>>,
    /// `Active`, `Inactive`, `Suspended`, `Pending`.
    pub status: String,
    /// Free-form metadata.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}

/// `webrtc_rooms`: an active room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomRecord {
    /// Room UUID (also `room_created.room_uuid`).
    pub id: Uuid,
    /// The room's name on the wire.
    pub room_id: String,
    /// Media backend application id (empty in P2P mode).
    pub app_id: String,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// `Active`.
    pub status: String,
    /// The room's sender.
    pub sender_client_id: Option<String>,
    /// The first receiver.
    pub receiver_client_id: Option<String>,
    /// Media backend session (None in P2P mode).
    pub session_id: Option<String>,
    /// Room metadata given at creation.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}

/// `room_created`: the audit record of a creation.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomCreatedRecord {
    /// Row id.
    pub id: Uuid,
    /// The room's UUID.
    pub room_uuid: Uuid,
    /// The room's name on the wire (also inside `room_data`), for look-ups.
    pub room_id: String,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// Room configuration at creation.
    pub room_data: Value,
    /// The creator.
    pub created_by: Option<String>,
    /// Creation metadata.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}

/// `client_in_room`: a live membership.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInRoomRecord {
    /// Association id.
    pub id: Uuid,
    /// The member.
    pub client_id: String,
    /// The room.
    pub room_id: String,
    /// When joined.
    pub joined_at: DateTime<Utc>,
    /// Last activity in the room.
    pub last_activity: DateTime<Utc>,
    /// `Active`.
    pub status: String,
    /// Member capabilities.
    pub capabilities: Vec<String>,
    /// Join metadata.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}

/// `webrtc_clients`: a member's WebRTC session state.
#[derive(Debug, Clone, PartialEq)]
pub struct WebrtcClientRecord {
    /// Row id.
    pub id: Uuid,
    /// The member.
    pub client_id: String,
    /// The room.
    pub room_id: String,
    /// `sender` or `receiver`.
    pub role: String,
    /// The member's room session.
    pub session_id: Option<String>,
    /// When joined.
    pub joined_at: DateTime<Utc>,
    /// `Active`.
    pub status: String,
    /// Join metadata.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}

/// The two rows written for each member.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberRecords {
    /// `client_in_room` row.
    pub client_in_room: ClientInRoomRecord,
    /// `webrtc_clients` row.
    pub webrtc_client: WebrtcClientRecord,
}

/// `terminated_rooms`: the audit record of a room's end.
#[derive(Debug, Clone, PartialEq)]
pub struct TerminatedRoomRecord {
    /// Row id.
    pub id: Uuid,
    /// The room.
    pub room_id: String,
    /// When it ended.
    pub terminated_at: DateTime<Utc>,
    /// When the end was written.
    pub termination_recorded_at: DateTime<Utc>,
    /// `{session_duration, participant_count, final_status, room_uuid}`.
    pub room_data: Value,
    /// Why it ended.
    pub termination_reason: Option<String>,
    /// Who ended it.
    pub terminated_by: Option<String>,
    /// Room metadata.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}

/// `client_in_terminated_room`: the history of one membership once it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientInTerminatedRoomRecord {
    /// Row id.
    pub id: Uuid,
    /// The member.
    pub client_id: String,
    /// The room.
    pub room_id: String,
    /// When joined.
    pub joined_at: DateTime<Utc>,
    /// When the membership ended.
    pub left_at: DateTime<Utc>,
    /// Why.
    pub termination_reason: String,
    /// Who ended it (the member itself, or the client that closed the room).
    pub terminated_by: String,
    /// `Disconnected`, `VoluntaryDisconnect`, `Kicked`, `Banned`.
    pub final_status: String,
    /// Member capabilities.
    pub capabilities: Vec<String>,
    /// Join metadata.
    pub metadata: Value,
    /// Row creation time.
    pub record_created_at: DateTime<Utc>,
}
