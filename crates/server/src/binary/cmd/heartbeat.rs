//! HEARTBEAT → HEARTBEAT_ACK with the server's clock.

use bytes::Bytes;
use signal_core::CoreError;
use signal_protocol::{
    Frame, MessageType,
    payload::{Heartbeat, HeartbeatAck},
};

use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) fn handle(_conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let hb: Heartbeat = payload(frame)?;
    let ack = HeartbeatAck {
        timestamp: hb.timestamp,
        server_time: chrono::Utc::now().timestamp_millis(),
    };
    codec::encode(
        MessageType::HeartbeatAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
