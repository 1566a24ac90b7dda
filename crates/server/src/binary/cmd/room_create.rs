//! ROOM_CREATE → ROOM_CREATE_ACK (P2P mode: the offer is stored for joiners; SFU mode:
//! it is published, and the ACK carries the SFU's answer).

use bytes::Bytes;
use signal_core::{CoreError, hub::CreateRoomParams};
use signal_protocol::{
    Frame, MessageType,
    payload::{RoomCreateAck, RoomCreateRequest},
};

use super::{connection_info, creds, version};
use crate::{
    binary::{codec, payload},
    conn::Conn,
};

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let req: RoomCreateRequest = payload(frame)?;
    let session = conn.session()?.clone();
    let client_id = req.client_id.clone();
    let created = conn
        .state
        .hub
        .create_room(
            &session,
            CreateRoomParams {
                creds: creds(req.version, req.client_id, req.auth_token),
                room_id: req.room_id,
                role: req.role,
                offer_sdp: req.offer_sdp,
                capabilities: req.capabilities.unwrap_or_default(),
                metadata: req.metadata,
            },
        )
        .await?;
    // SFU mode: the member's Cloudflare session (seed 000); else its room session.
    let session_id = created
        .media
        .session_id
        .clone()
        .unwrap_or_else(|| created.session_id.to_string());
    let ack = RoomCreateAck {
        version: version(),
        status: 200,
        message: "Room created successfully".into(),
        room_id: created.room_id.to_string(),
        session_id: session_id.clone(),
        app_id: conn.state.hub.config().app_id.clone(),
        stun_url: conn.state.hub.config().stun_url.clone(),
        connection_info: connection_info(
            conn,
            created.room_id.as_str(),
            created.role,
            &session_id,
            created.created_at,
            &client_id,
        ),
        answer_sdp: created.media.answer_sdp,
    };
    codec::encode(
        MessageType::RoomCreateAck,
        frame.id,
        codec::reply_type(frame.payload_type),
        &ack,
    )
    .map(Some)
}
