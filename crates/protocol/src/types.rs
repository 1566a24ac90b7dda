//! The registries of the frame header: message types and payload types.

use std::fmt;

/// The message type byte of a frame (offset 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// C→S: authenticate; must be the first frame.
    Connect = 0x01,
    /// S→C: session established.
    ConnectAck = 0x02,
    /// C→S: clean goodbye.
    Disconnect = 0x03,
    /// C→S: keep-alive (PING).
    Heartbeat = 0x04,
    /// S→C: keep-alive answer (PING_ACK).
    HeartbeatAck = 0x05,
    /// C→S: take a dropped session back (extension); instead of CONNECT.
    Resume = 0x06,
    /// S→C: session taken back; what was missed follows (extension).
    ResumeAck = 0x07,
    /// C→S: a fresh credential for this connection, before its own expires (extension).
    TokenRefresh = 0x08,
    /// S→C: the fresh credential now holds the connection (extension).
    TokenRefreshAck = 0x09,
    /// Both: SDP offer relayed to a target.
    SignalOffer = 0x10,
    /// Both: SDP answer relayed to a target.
    SignalAnswer = 0x11,
    /// Both: ICE candidate relayed to a target.
    SignalIceCandidate = 0x12,
    /// C→S: persist this client.
    Register = 0x20,
    /// S→C: registration committed.
    RegisterAck = 0x21,
    /// C→S: delete this client's registration.
    Unregister = 0x22,
    /// S→C: registration deleted.
    UnregisterAck = 0x23,
    /// C→S: create a room.
    RoomCreate = 0x30,
    /// S→C: room created.
    RoomCreateAck = 0x31,
    /// C→S: join a room.
    RoomJoin = 0x32,
    /// S→C: room joined.
    RoomJoinAck = 0x33,
    /// C→S: leave a room.
    RoomLeave = 0x34,
    /// S→C: room left.
    RoomLeaveAck = 0x35,
    /// S→C: another member joined a room this client is in.
    PeerJoined = 0x36,
    /// S→C: another member left a room this client is in.
    PeerLeft = 0x37,
    /// S→C: a room this client was in has terminated.
    RoomClosed = 0x38,
    /// S→C: another member's connection dropped; it may resume (extension).
    PeerReconnecting = 0x39,
    /// S→C: this connection's credential expires soon; refresh it (extension).
    TokenExpiring = 0x3A,
    /// S→C: a request failed.
    Error = 0xFF,
}

impl MessageType {
    /// Every message type, in wire order.
    pub const ALL: [MessageType; 28] = [
        Self::Connect,
        Self::ConnectAck,
        Self::Disconnect,
        Self::Heartbeat,
        Self::HeartbeatAck,
        Self::Resume,
        Self::ResumeAck,
        Self::TokenRefresh,
        Self::TokenRefreshAck,
        Self::SignalOffer,
        Self::SignalAnswer,
        Self::SignalIceCandidate,
        Self::Register,
        Self::RegisterAck,
        Self::Unregister,
        Self::UnregisterAck,
        Self::RoomCreate,
        Self::RoomCreateAck,
        Self::RoomJoin,
        Self::RoomJoinAck,
        Self::RoomLeave,
        Self::RoomLeaveAck,
        Self::PeerJoined,
        Self::PeerLeft,
        Self::RoomClosed,
        Self::PeerReconnecting,
        Self::TokenExpiring,
        Self::Error,
    ];

    /// Looks a wire byte up; `None` for a byte that names no message type.
    pub fn from_u8(b: u8) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| *t as u8 == b)
    }

    /// The protocol page's name of this type (`SIGNAL_OFFER`, `ROOM_JOIN_ACK`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "CONNECT",
            Self::ConnectAck => "CONNECT_ACK",
            Self::Disconnect => "DISCONNECT",
            Self::Heartbeat => "HEARTBEAT",
            Self::HeartbeatAck => "HEARTBEAT_ACK",
            Self::Resume => "RESUME",
            Self::ResumeAck => "RESUME_ACK",
            Self::TokenRefresh => "TOKEN_REFRESH",
            Self::TokenRefreshAck => "TOKEN_REFRESH_ACK",
            Self::SignalOffer => "SIGNAL_OFFER",
            Self::SignalAnswer => "SIGNAL_ANSWER",
            Self::SignalIceCandidate => "SIGNAL_ICE_CANDIDATE",
            Self::Register => "REGISTER",
            Self::RegisterAck => "REGISTER_ACK",
            Self::Unregister => "UNREGISTER",
            Self::UnregisterAck => "UNREGISTER_ACK",
            Self::RoomCreate => "ROOM_CREATE",
            Self::RoomCreateAck => "ROOM_CREATE_ACK",
            Self::RoomJoin => "ROOM_JOIN",
            Self::RoomJoinAck => "ROOM_JOIN_ACK",
            Self::RoomLeave => "ROOM_LEAVE",
            Self::RoomLeaveAck => "ROOM_LEAVE_ACK",
            Self::PeerJoined => "PEER_JOINED",
            Self::PeerLeft => "PEER_LEFT",
            Self::RoomClosed => "ROOM_CLOSED",
            Self::PeerReconnecting => "PEER_RECONNECTING",
            Self::TokenExpiring => "TOKEN_EXPIRING",
            Self::Error => "ERROR",
        }
    }

    /// Whether a client may send this type (the server refuses S→C types from clients).
    pub fn is_client_request(self) -> bool {
        matches!(
            self,
            Self::Connect
                | Self::Resume
                | Self::TokenRefresh
                | Self::Disconnect
                | Self::Heartbeat
                | Self::SignalOffer
                | Self::SignalAnswer
                | Self::SignalIceCandidate
                | Self::Register
                | Self::Unregister
                | Self::RoomCreate
                | Self::RoomJoin
                | Self::RoomLeave
        )
    }

    /// The ACK type that answers this request type, if it has one.
    pub fn ack(self) -> Option<Self> {
        Some(match self {
            Self::Connect => Self::ConnectAck,
            Self::Resume => Self::ResumeAck,
            Self::TokenRefresh => Self::TokenRefreshAck,
            Self::Heartbeat => Self::HeartbeatAck,
            Self::Register => Self::RegisterAck,
            Self::Unregister => Self::UnregisterAck,
            Self::RoomCreate => Self::RoomCreateAck,
            Self::RoomJoin => Self::RoomJoinAck,
            Self::RoomLeave => Self::RoomLeaveAck,
            _ => return None,
        })
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), *self as u8)
    }
}

/// The payload type byte of a frame (offset 18): how the payload bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayloadType {
    /// Raw bytes.
    Binary = 0x01,
    /// UTF-8 JSON text.
    Json = 0x02,
    /// UTF-8 text.
    Text = 0x03,
    /// Protocol Buffers (reserved; no message uses it).
    Protobuf = 0x04,
    /// CBOR (RFC 8949), same schema as JSON.
    Cbor = 0x05,
}

impl PayloadType {
    /// Looks a wire byte up; `None` for a byte that names no payload type.
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            0x01 => Self::Binary,
            0x02 => Self::Json,
            0x03 => Self::Text,
            0x04 => Self::Protobuf,
            0x05 => Self::Cbor,
            _ => return None,
        })
    }

    /// Upper-case name (`JSON`, `CBOR`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Binary => "BINARY",
            Self::Json => "JSON",
            Self::Text => "TEXT",
            Self::Protobuf => "PROTOBUF",
            Self::Cbor => "CBOR",
        }
    }

    /// Whether structured messages may use this encoding (JSON and CBOR only).
    pub fn is_structured(self) -> bool {
        matches!(self, Self::Json | Self::Cbor)
    }
}

impl fmt::Display for PayloadType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02X})", self.name(), *self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_byte() {
        for t in MessageType::ALL {
            assert_eq!(MessageType::from_u8(t as u8), Some(t));
        }
        assert_eq!(MessageType::from_u8(0x42), None);
        assert_eq!(MessageType::SignalOffer.to_string(), "SIGNAL_OFFER (0x10)");
    }
}
