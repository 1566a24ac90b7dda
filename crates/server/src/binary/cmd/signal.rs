//! SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE: relayed to the target with the
//! same type and UUID, `from_client_id` stamped by the server. No ACK; failures are ERRORs.

use bytes::Bytes;
use signal_core::{
    CoreError, ErrorKind,
    hub::{Outbound, SignalBody, SignalKind, SignalRequest, Wire},
};
use signal_protocol::{
    Frame, MAX_PAYLOAD_LEN, MessageType, PayloadType, frame::header_bytes, payload::SignalPayload,
    signal_check::check_signal,
};

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
            ErrorKind::TooLarge,
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

/// The relay path for the common case, a JSON signal between two binary-JSON sessions
/// on this node: the frame is forwarded without decoding its payload into values. The
/// payload is checked against [`SignalPayload`]'s schema without allocating, routed with
/// the hub's rules ([`Hub::route`](signal_core::hub::Hub::route)), and sent on as the
/// sender's own JSON with `"from_client_id"` stamped first. Nothing is allocated or
/// copied here: the receiver's connection writes the header, the sender's stamp and a
/// slice of the bytes read straight into its socket buffer.
///
/// `None` when the slow path must decide: another payload type or wire format on either
/// end, a payload the check does not accept (the slow path names the fault), a
/// `from_client_id` the sender put in (the slow path replaces it), or a target that is
/// not on this node.
pub(crate) fn forward(conn: &mut Conn, frame: &Frame) -> Option<Result<(), CoreError>> {
    if frame.payload_type != PayloadType::Json || conn.wire != Some(Wire::BinaryJson) {
        return None;
    }
    let session = conn.session.as_ref()?;
    if frame.payload.len() + session.client_id.as_str().len() + STAMP_OVERHEAD > MAX_PAYLOAD_LEN {
        return None;
    }
    // One pass over the payload: the schema, UTF-8 and JSON validity. What the check
    // leaves to the decoder (see `check_signal`) takes the slow path.
    let view = check_signal(&frame.payload)?;
    let target = view.target_client_id.filter(|t| !t.is_empty())?;
    let room = view.room_id.filter(|r| !r.is_empty());
    let to = match conn.state.hub.route(session, target, room) {
        Err(e) => return Some(Err(e)),
        Ok(None) => return None,
        Ok(Some(s)) if s.wire != Wire::BinaryJson => return None,
        Ok(Some(s)) => s,
    };
    let kind = match frame.msg_type {
        MessageType::SignalOffer => SignalKind::Offer,
        MessageType::SignalAnswer => SignalKind::Answer,
        _ => SignalKind::IceCandidate,
    };
    let rest = &frame.payload[view.body..];
    let empty = view.empty;
    let stamp = conn.stamp.get_or_insert_with(|| {
        let mut s = b"{\"from_client_id\":".to_vec();
        // A client id is a string; serialising a string cannot fail.
        let _ = serde_json::to_writer(&mut s, session.client_id.as_str());
        Bytes::from(s)
    });
    let len = stamp.len() + usize::from(!empty) + rest.len();
    let head = header_bytes(frame.msg_type, frame.id, PayloadType::Json, len).ok()?;
    to.send(Outbound::Forward {
        head,
        stamp: stamp.clone(),
        comma: !empty,
        body: frame.payload.slice(view.body..),
        kind,
        accepted_at: conn.received_at,
    });
    conn.state.hub.count_relayed(kind);
    Some(Ok(()))
}
