//! Payload schemas of the binary protocol, one struct per message, shared by JSON and CBOR.
//!
//! Requests are read liberally (unknown fields are ignored, optional fields may be absent
//! or `null`) but strictly typed: a field of the wrong type is an error naming it.
//! Responses always carry every field the protocol page lists.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// CONNECT (0x01).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// Who is connecting.
    pub client_id: String,
    /// API key token, HS256 JWT, or a registered client's token.
    pub auth_token: String,
    /// Client protocol version (semver); absent means the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// What the client supports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Free-form client information.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// Extension: `true` asks for a resumable session (a `resume_token` in the ACK).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<bool>,
}

/// CONNECT_ACK (0x02).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectAck {
    /// Always 200.
    pub status: u16,
    /// "Connection established".
    pub message: String,
    /// This connection's session.
    pub session_id: String,
    /// Server protocol version.
    pub server_version: String,
    /// Seconds between the client's heartbeats.
    pub heartbeat_interval: u64,
    /// What the server supports.
    pub capabilities: Vec<String>,
    /// Extension, for a CONNECT with `resume: true`: the token that takes this session
    /// back with RESUME after the connection drops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_token: Option<String>,
    /// Extension: seconds a dropped session waits for its RESUME.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_window: Option<u64>,
}

/// RESUME (0x06), extension: the first frame of a new connection, instead of CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeRequest {
    /// The client whose session this is.
    pub client_id: String,
    /// The latest `resume_token` the server gave (CONNECT_ACK or RESUME_ACK).
    pub resume_token: String,
    /// How many frames the client received from the server on this session.
    pub last_seq: u64,
}

/// RESUME_ACK (0x07), extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumeAck {
    /// Always 200.
    pub status: u16,
    /// "Session resumed".
    pub message: String,
    /// The session taken back (the same id as before).
    pub session_id: String,
    /// A new token for the next resume (the old one is spent).
    pub resume_token: String,
    /// The client's `last_seq`. This ACK is not counted: the frame after it is
    /// `last_seq + 1`.
    pub last_seq: u64,
    /// Frames sent before the drop that the client missed, sent again right after this
    /// ACK; what was queued while the connection was down follows them.
    pub replayed: u64,
    /// Seconds between the client's heartbeats.
    pub heartbeat_interval: u64,
}

/// PEER_RECONNECTING (0x39), extension: to the other members of a room when a member's
/// connection dropped and its session waits for a RESUME.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReconnecting {
    /// The room.
    pub room_id: String,
    /// Whose connection dropped.
    pub client_id: String,
    /// Seconds it has to come back before it leaves (PEER_LEFT).
    pub window: u64,
}

/// TOKEN_REFRESH (0x08), extension: a fresh credential for the connection's client (a
/// JWT, an API key token or its registered token), sent before the one it connected with
/// expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRefresh {
    /// The fresh credential; it must authenticate the connection's own client.
    pub auth_token: String,
}

/// TOKEN_REFRESH_ACK (0x09), extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRefreshAck {
    /// Always 200 (failures are ERROR frames).
    pub status: u16,
    /// When the fresh credential expires (RFC 3339); absent if it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// TOKEN_EXPIRING (0x3A), extension: the connection's credential expires soon; a
/// TOKEN_REFRESH before `expires_at` keeps the connection, else it closes then (1008).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenExpiring {
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Seconds left when this was sent.
    pub seconds_left: u64,
}

/// HEARTBEAT / PING (0x04).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// Client clock, milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// HEARTBEAT_ACK / PING_ACK (0x05).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAck {
    /// The client's timestamp, echoed.
    pub timestamp: i64,
    /// Server clock, milliseconds since the Unix epoch.
    pub server_time: i64,
}

/// REGISTER (0x20).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Client protocol version (semver).
    pub version: String,
    /// Must be the client authenticated on this connection.
    pub client_id: String,
    /// The token to store (hashed) for this client; it authenticates later CONNECTs.
    pub auth_token: String,
    /// Associated room, informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// Client capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Client metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// REGISTER_ACK (0x21).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterAck {
    /// Server protocol version.
    pub version: String,
    /// Always 200 (failures are ERROR frames).
    pub status: u16,
    /// "Registration successful".
    pub message: String,
    /// The registered client.
    pub client_id: String,
    /// The session the registration was made on.
    pub session_id: String,
    /// The token the server issued, when REGISTER sent an empty `auth_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// When the registered token expires (RFC 3339), if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<String>,
}

/// UNREGISTER (0x22).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnregisterRequest {
    /// Client protocol version (semver).
    pub version: String,
    /// The client to delete; must be the authenticated one.
    pub client_id: String,
    /// The token the client registered with.
    pub auth_token: String,
}

/// UNREGISTER_ACK (0x23).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnregisterAck {
    /// Server protocol version.
    pub version: String,
    /// Always 200.
    pub status: u16,
    /// "Unregistration successful".
    pub message: String,
    /// The deleted client.
    pub client_id: String,
}

/// ROOM_CREATE (0x30).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomCreateRequest {
    /// Client protocol version (semver).
    pub version: String,
    /// The creator; must be the authenticated, registered client.
    pub client_id: String,
    /// The creator's token.
    pub auth_token: String,
    /// Custom room id; generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// `sender` (default) or `receiver`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The creator's offer, handed to each joiner in P2P mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_sdp: Option<String>,
    /// Media capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Room metadata; `max_participants` caps the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// `connection_info` of a room ACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The room.
    pub room_id: String,
    /// The member's role in it.
    pub role: String,
    /// Media backend application id (empty in P2P mode).
    pub app_id: String,
    /// The member's room session.
    pub session_id: String,
    /// `connecting`.
    pub status: String,
    /// Session details.
    pub metadata: ConnectionMetadata,
}

/// `connection_info.metadata` of a room ACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionMetadata {
    /// The member's room session.
    pub session_id: String,
    /// When the room was created (RFC 3339).
    pub created_at: String,
    /// The member.
    pub client_id: String,
}

/// ROOM_CREATE_ACK (0x31).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomCreateAck {
    /// Server protocol version.
    pub version: String,
    /// Always 200.
    pub status: u16,
    /// "Room created successfully".
    pub message: String,
    /// The room's id (the custom one, or generated).
    pub room_id: String,
    /// The creator's room session.
    pub session_id: String,
    /// Media backend application id (empty in P2P mode).
    pub app_id: String,
    /// STUN server URL clients should use, if configured.
    pub stun_url: Option<String>,
    /// Connection details.
    pub connection_info: ConnectionInfo,
    /// The media backend's answer (SFU mode only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_sdp: Option<String>,
}

/// ROOM_JOIN (0x32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomJoinRequest {
    /// Client protocol version (semver).
    pub version: String,
    /// The joiner; must be the authenticated, registered client.
    pub client_id: String,
    /// The joiner's token.
    pub auth_token: String,
    /// The room to join.
    pub room_id: String,
    /// `receiver` (default) or `sender` (only when the room has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Joiner's own offer (unused in P2P mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_sdp: Option<String>,
    /// Joiner capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<String>>,
    /// Joiner metadata, passed to the other members in PEER_JOINED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// One member listed in ROOM_JOIN_ACK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    /// The member.
    pub client_id: String,
    /// `sender` or `receiver`.
    pub role: String,
    /// The member's join metadata.
    pub metadata: Value,
    /// When the member joined (RFC 3339).
    pub joined_at: String,
}

/// ROOM_JOIN_ACK (0x33).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomJoinAck {
    /// Server protocol version.
    pub version: String,
    /// Always 200.
    pub status: u16,
    /// "Successfully joined room".
    pub message: String,
    /// The room.
    pub room_id: String,
    /// The joiner's room session.
    pub session_id: String,
    /// Media backend application id (empty in P2P mode).
    pub app_id: String,
    /// STUN server URL, if configured.
    pub stun_url: Option<String>,
    /// Connection details.
    pub connection_info: ConnectionInfo,
    /// The other members, the joiner excluded.
    pub participants: Vec<Participant>,
    /// The sender's stored offer (P2P) or the SFU's offer (SFU mode), if any.
    pub offer_sdp: Option<String>,
    /// Set when the member list did not fit one frame: members' metadata was left out
    /// and, if still too long, the list was cut (PEER_JOINED events are complete).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub participants_truncated: bool,
}

/// ROOM_LEAVE (0x34).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLeaveRequest {
    /// Client protocol version (semver).
    pub version: String,
    /// The leaver; must be the authenticated client.
    pub client_id: String,
    /// The leaver's token.
    pub auth_token: String,
    /// The room to leave.
    pub room_id: String,
    /// Why, told to the other members.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// ROOM_LEAVE_ACK (0x35).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomLeaveAck {
    /// Server protocol version.
    pub version: String,
    /// Always 200.
    pub status: u16,
    /// "Successfully left room".
    pub message: String,
    /// The room left.
    pub room_id: String,
    /// The leaver.
    pub client_id: String,
}

/// PEER_JOINED (0x36), to the other members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerJoined {
    /// The room.
    pub room_id: String,
    /// Who joined.
    pub client_id: String,
    /// Their role.
    pub role: String,
    /// Their join metadata (`{}` when none).
    pub metadata: Value,
}

/// PEER_LEFT (0x37), to the remaining members.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerLeft {
    /// The room.
    pub room_id: String,
    /// Who left.
    pub client_id: String,
    /// Why (`left`, `disconnected`, `unregistered`, or the client's own reason).
    pub reason: String,
}

/// ROOM_CLOSED (0x38), to members still in a room that terminates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomClosed {
    /// The room.
    pub room_id: String,
    /// Why it closed.
    pub reason: String,
}

/// ERROR (0xFF).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorPayload {
    /// HTTP-style status: 400, 401, 403, 404, 409, 413, 429, 500, 503.
    pub error_code: u16,
    /// What was wrong, for a person.
    pub error_message: String,
    /// `request_type` always; other keys by error.
    #[serde(default)]
    pub details: Map<String, Value>,
}

/// SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE (0x10–0x12), both directions.
///
/// Fields the server does not interpret are carried through to the target unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SignalPayload {
    /// The peer to deliver to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_client_id: Option<String>,
    /// The room the signal belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_id: Option<String>,
    /// SDP of an offer or answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    /// ICE candidate (a candidate line, or an object as browsers produce).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate: Option<Value>,
    /// Media stream id of the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// m-line index of the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u32>,
    /// Stamped by the server on delivery; ignored when a client sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_client_id: Option<String>,
    /// Everything else, passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_register_example_parses() {
        // The JSON inside seed 000's REGISTER hex example.
        let json = r#"{"version":"1.0.0","client_id":"unique_client_identifier","auth_token":"authentication_token","capabilities":["websocket","heartbeat","webrtc"],"metadata":{"platform":"web","version":"1.0.0"}}"#;
        assert_eq!(json.len(), 192);
        let r: RegisterRequest = serde_json::from_str(json).unwrap();
        assert_eq!(r.client_id, "unique_client_identifier");
        assert_eq!(r.room_id, None);
    }

    #[test]
    fn signal_passes_unknown_fields_through() {
        let s: SignalPayload = serde_json::from_str(
            r#"{"target_client_id":"b","sdp":"v=0","from_client_id":"spoof","session_hint":7}"#,
        )
        .unwrap();
        assert_eq!(s.extra.get("session_hint"), Some(&Value::from(7)));
        assert_eq!(s.from_client_id.as_deref(), Some("spoof"));
    }
}
