//! ROOM_LEAVE → ROOM_LEAVE_ACK.

use bytes::Bytes;
use signal_core::CoreError;
use signal_protocol::{
    Frame, MessageType,
    payload::{RoomLeaveAck, RoomLeaveRequest},
};

use super::{creds, version};
use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let req: RoomLeaveRequest = payload(frame)?;
    let session = conn.session()?.clone();
    let (client_id, room_id) = (req.client_id.clone(), req.room_id.clone());
    conn.state
        .hub
        .leave_room(
            &session,
            creds(req.version, req.client_id, req.auth_token),
            &req.room_id,
            req.reason,
        )
        .await?;
    let ack = RoomLeaveAck {
        version: version(),
        status: 200,
        message: "Successfully left room".into(),
        room_id,
        client_id,
    };
    codec::encode(
        MessageType::RoomLeaveAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
