//! UNREGISTER → UNREGISTER_ACK: token checked, row deleted, rooms left.

use bytes::Bytes;
use signal_core::CoreError;
use signal_protocol::{
    Frame, MessageType,
    payload::{UnregisterAck, UnregisterRequest},
};

use super::{creds, version};
use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let req: UnregisterRequest = payload(frame)?;
    let session = conn.session()?.clone();
    let client_id = req.client_id.clone();
    conn.state
        .hub
        .unregister(&session, creds(req.version, req.client_id, req.auth_token))
        .await?;
    let ack = UnregisterAck {
        version: version(),
        status: 200,
        message: "Unregistration successful".into(),
        client_id,
    };
    codec::encode(
        MessageType::UnregisterAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
