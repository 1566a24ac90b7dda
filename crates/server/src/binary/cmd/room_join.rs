//! ROOM_JOIN → ROOM_JOIN_ACK with the other participants and the stored offer.

use bytes::Bytes;
use signal_core::{CoreError, ErrorKind, hub::JoinRoomParams};
use signal_protocol::{
    Frame, MessageType,
    payload::{RoomJoinAck, RoomJoinRequest},
};

use super::{connection_info, creds, participant, version};
use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let req: RoomJoinRequest = payload(frame)?;
    let session = conn.session()?.clone();
    let client_id = req.client_id.clone();
    let joined = conn
        .state
        .hub
        .join_room(
            &session,
            JoinRoomParams {
                creds: creds(req.version, req.client_id, req.auth_token),
                room_id: req.room_id,
                role: req.role,
                capabilities: req.capabilities.unwrap_or_default(),
                metadata: req.metadata,
            },
        )
        .await?;
    // SFU mode: the member's Cloudflare session (seed 000); else its room session.
    let session_id = joined
        .media
        .session_id
        .clone()
        .unwrap_or_else(|| joined.session_id.to_string());
    let ack = RoomJoinAck {
        version: version(),
        status: 200,
        message: "Successfully joined room".into(),
        room_id: joined.room_id.to_string(),
        session_id: session_id.clone(),
        app_id: conn.state.hub.config().app_id.clone(),
        stun_url: conn.state.hub.config().stun_url.clone(),
        connection_info: connection_info(
            conn,
            joined.room_id.as_str(),
            joined.role,
            &session_id,
            joined.created_at,
            &client_id,
        ),
        participants: joined.participants.iter().map(participant).collect(),
        offer_sdp: joined.offer_sdp,
        participants_truncated: false,
    };
    encode_fitting(frame, ack).map(Some)
}

/// The member is in the room already: the ACK must go out even if the member list is
/// too long for one frame. Leave metadata out first, then cut the list.
fn encode_fitting(frame: &Frame, mut ack: RoomJoinAck) -> Result<Bytes, CoreError> {
    let pt = codec::reply_type(frame.payload_type);
    let attempt = |ack: &RoomJoinAck| codec::encode(MessageType::RoomJoinAck, frame.id, pt, ack);
    match attempt(&ack) {
        Err(e) if e.kind == ErrorKind::TooLarge => {}
        other => return other,
    }
    ack.participants_truncated = true;
    for p in &mut ack.participants {
        p.metadata = serde_json::Value::Object(Default::default());
    }
    loop {
        match attempt(&ack) {
            Err(e) if e.kind == ErrorKind::TooLarge && !ack.participants.is_empty() => {
                let keep = ack.participants.len() / 2;
                ack.participants.truncate(keep);
            }
            other => return other,
        }
    }
}
