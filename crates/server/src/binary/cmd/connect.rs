//! CONNECT → CONNECT_ACK: authenticate and open the session.

use bytes::Bytes;
use serde_json::Value;
use signal_core::{CoreError, ErrorKind, hub::ConnectParams};
use signal_protocol::{
    Frame, MessageType, PayloadType,
    payload::{ConnectAck, ConnectRequest},
};

use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    if let Some(s) = &conn.session {
        return Err(CoreError::new(
            ErrorKind::Conflict,
            format!("Already connected: this connection has session {}", s.id),
        ));
    }
    let req: ConnectRequest = payload(frame)?;
    let format = if frame.payload_type == PayloadType::Cbor {
        crate::binary::CBOR
    } else {
        crate::binary::JSON
    };
    let session = conn
        .connect(ConnectParams {
            client_id: req.client_id,
            auth_token: req.auth_token,
            version: req.version,
            format,
            capabilities: req.capabilities.unwrap_or_default(),
            metadata: req.metadata.unwrap_or(Value::Null),
            display_name: None,
            anonymous: false,
            resume: req.resume == Some(true),
        })
        .await?;
    let hub = conn.state.hub.config();
    let ack = ConnectAck {
        status: 200,
        message: "Connection established".into(),
        session_id: session.id.to_string(),
        server_version: hub.protocol_version.to_string(),
        heartbeat_interval: hub.heartbeat_interval,
        capabilities: hub.capabilities.clone(),
        resume_token: session.resume_token(),
        resume_window: session
            .is_resumable()
            .then_some(hub.resume_window.as_secs()),
    };
    codec::encode(
        MessageType::ConnectAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
