//! One module per request type of the binary protocol. Each decodes its payload, calls the
//! hub, and returns the encoded ACK (or nothing); errors go back to the dispatcher, which
//! encodes them in one place.

pub mod connect;
pub mod heartbeat;
pub mod register;
pub mod resume;
pub mod room_create;
pub mod room_join;
pub mod room_leave;
pub mod signal;
pub mod token_refresh;
pub mod unregister;

use signal_core::hub::{Credentials, ParticipantInfo, Role};
use signal_protocol::payload::{ConnectionInfo, ConnectionMetadata, Participant};

use crate::conn::Conn;

/// The server's protocol version string.
pub(crate) fn version() -> String {
    signal_protocol::PROTOCOL_VERSION.to_owned()
}

pub(crate) fn creds(version: String, client_id: String, auth_token: String) -> Credentials {
    Credentials {
        version,
        client_id,
        auth_token,
    }
}

pub(crate) fn connection_info(
    conn: &Conn,
    room_id: &str,
    role: Role,
    session_id: &str,
    created_at: chrono::DateTime<chrono::Utc>,
    client_id: &str,
) -> ConnectionInfo {
    ConnectionInfo {
        room_id: room_id.to_owned(),
        role: role.as_str().to_owned(),
        app_id: conn.state.hub.config().app_id.clone(),
        session_id: session_id.to_owned(),
        status: "connecting".into(),
        metadata: ConnectionMetadata {
            session_id: session_id.to_owned(),
            created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            client_id: client_id.to_owned(),
        },
    }
}

pub(crate) fn participant(p: &ParticipantInfo) -> Participant {
    Participant {
        client_id: p.client_id.to_string(),
        role: p.role.as_str().into(),
        metadata: p.metadata.clone(),
        joined_at: p
            .joined_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }
}
