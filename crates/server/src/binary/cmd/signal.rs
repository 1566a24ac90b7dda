//! SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE: relayed to the target with the
//! same type and UUID, `from_client_id` stamped by the server. No ACK; failures are ERRORs.

use bytes::Bytes;
use signal_core::{
    CoreError, ErrorCode,
    hub::{SignalBody, SignalKind, SignalRequest},
};
use signal_protocol::{Frame, MAX_PAYLOAD_LEN, MessageType, payload::SignalPayload};

use crate::{binary::payload, conn::Conn};

/// Bytes the stamped `"from_client_id":"…"` adds to a payload, beyond the id itself.
const STAMP_OVERHEAD: usize = 24;

pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    let kind = match frame.msg_type {
        MessageType::SignalOffer => SignalKind::Offer,
        MessageType::SignalAnswer => SignalKind::Answer,
        _ => SignalKind::IceCandidate,
    };
    let session = conn.session()?.clone();
    if frame.payload.len() + session.client_id.as_str().len() + STAMP_OVERHEAD > MAX_PAYLOAD_LEN {
        return Err(CoreError::new(
            ErrorCode::TooLarge,
            format!(
                "Signal too large to relay: {} payload bytes plus the stamped from_client_id exceed {MAX_PAYLOAD_LEN}",
                frame.payload.len()
            ),
        ));
    }
    let p: SignalPayload = payload(frame)?;
    // Peer-to-peer signals name their target; a room-wide signal is for the media
    // backend's session (SFU mode), which P2P mode does not have.
    if p.target_client_id.as_deref().is_none_or(str::is_empty) {
        return Err(CoreError::bad_request(
            "Missing or invalid 'target_client_id' field",
        ));
    }
    conn.state
        .hub
        .signal(
            &session,
            SignalRequest {
                id: frame.id,
                kind,
                target: p.target_client_id,
                room: p.room_id,
                body: SignalBody {
                    sdp: p.sdp,
                    candidate: p.candidate,
                    sdp_mid: p.sdp_mid,
                    sdp_m_line_index: p.sdp_m_line_index,
                    extra: p.extra,
                },
            },
        )
        .await?;
    Ok(None)
}
