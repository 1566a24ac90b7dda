//! REGISTER → REGISTER_ACK, sent only once the registration is committed.

use bytes::Bytes;
use serde_json::Value;
use signal_core::{CoreError, hub::RegisterParams};
use signal_protocol::{
    Frame, MessageType,
    payload::{RegisterAck, RegisterRequest},
};

use super::{creds, version};
use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let req: RegisterRequest = payload(frame)?;
    let session = conn.session()?.clone();
    let client_id = req.client_id.clone();
    let done = conn
        .state
        .hub
        .register(
            &session,
            RegisterParams {
                creds: creds(req.version, req.client_id, req.auth_token),
                room_id: req.room_id,
                capabilities: req.capabilities.unwrap_or_default(),
                metadata: req.metadata.unwrap_or(Value::Object(Default::default())),
            },
        )
        .await?;
    let ack = RegisterAck {
        version: version(),
        status: 200,
        message: "Registration successful".into(),
        client_id,
        session_id: session.id.to_string(),
        auth_token: done.auth_token,
        token_expires_at: done.expires_at.and_then(|at| {
            chrono::DateTime::from_timestamp(at, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }),
    };
    codec::encode(
        MessageType::RegisterAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
