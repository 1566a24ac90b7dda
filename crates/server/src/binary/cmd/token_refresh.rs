//! TOKEN_REFRESH → TOKEN_REFRESH_ACK: a fresh credential for the open connection.

use bytes::Bytes;
use signal_core::CoreError;
use signal_protocol::{
    Frame, MessageType,
    payload::{TokenRefresh, TokenRefreshAck},
};

use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let req: TokenRefresh = payload(frame)?;
    let session = conn.session()?.clone();
    let expires = match conn
        .state
        .hub
        .refresh_credential(&session, &req.auth_token)
        .await
    {
        Ok(e) => e,
        Err(e) => {
            conn.log_refused(&e);
            return Err(e);
        }
    };
    let ack = TokenRefreshAck {
        status: 200,
        expires_at: expires.and_then(codec::rfc3339),
    };
    codec::encode(
        MessageType::TokenRefreshAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
