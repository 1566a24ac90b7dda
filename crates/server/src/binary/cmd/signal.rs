//! SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE: relayed to the target with the
//! same type and UUID, `from_client_id` stamped by the server. No ACK; failures are ERRORs.

use bytes::Bytes;
use signal_core::{
    CoreError, ErrorKind,
    hub::{Elsewhere, Encoded, Routed, SignalBody, SignalKind, SignalRequest},
};
use signal_protocol::{
    Frame, MAX_PAYLOAD_LEN, MessageType, PayloadType, frame::header_bytes, payload::SignalPayload,
    signal_check::check_signal,
};

use crate::{
    binary::{JSON, payload},
    conn::Conn,
};

// The binary frame header fits the hub's pre-encoded head.
const _: () = assert!(signal_protocol::frame::FRAME_HEADER_LEN <= Encoded::HEAD);

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
    let mut p: SignalPayload = payload(frame)?;
    // Peer-to-peer signals name their target; a room-wide signal is for the media
    // backend's session (SFU mode), which P2P mode does not have.
    if p.target_client_id.as_deref().is_none_or(str::is_empty)
        && !conn.state.hub.media().takes_room_signals()
    {
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
                target: p.target_client_id.take(),
                room: p.room_id.take(),
                body: signal_body(p),
            },
        )
        .await?;
    Ok(None)
}

/// A signal's body read back from a binary-JSON frame's payload as [`forward`] relays it
/// (the sender's object with `from_client_id` stamped first): how a node decodes a frame
/// another node relayed alone, for a receiver of another format.
pub(crate) fn json_body(payload: &[u8]) -> Result<SignalBody, CoreError> {
    signal_protocol::decode_payload::<SignalPayload>(PayloadType::Json, payload)
        .map(signal_body)
        .map_err(|e| CoreError::bad_request(format!("signal payload: {e}")))
}

fn signal_body(p: SignalPayload) -> SignalBody {
    SignalBody {
        sdp: p.sdp,
        candidate: p.candidate,
        sdp_mid: p.sdp_mid,
        sdp_m_line_index: p.sdp_m_line_index,
        extra: p.extra,
    }
}

/// The relay path for the common case, a JSON signal between binary-JSON sessions: the
/// frame is relayed without decoding its payload into values. The payload is checked
/// against [`SignalPayload`]'s schema without allocating, and handed to the hub
/// ([`Hub::relay`](signal_core::hub::Hub::relay)) pre-encoded as the sender's own JSON
/// with `"from_client_id"` stamped first: a binary-JSON receiver's connection writes the
/// header, the sender's stamp and a slice of the bytes read straight into its socket
/// buffer. Any other receiver (another format, another node) gets the decoded event,
/// which the hub builds only then.
///
/// `None` when the slow path must decide: another payload type or wire format on the
/// sender's end, a payload the check does not accept (the slow path names the fault), or
/// a `from_client_id` the sender put in (the slow path replaces it). `Some(Ok(None))` when
/// relayed here, `Some(Ok(Some(_)))` when the target is on another node.
pub(crate) fn forward(
    conn: &mut Conn,
    frame: &Frame,
) -> Option<Result<Option<Elsewhere>, CoreError>> {
    if frame.payload_type != PayloadType::Json || conn.format() != Some(JSON) {
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
    // A signal for the SFU takes the slow path, which hands it to the media backend.
    if target == signal_core::media::SFU_PEER && conn.state.hub.media().takes_room_signals() {
        return None;
    }
    let room = view.room_id.filter(|r| !r.is_empty());
    let kind = match frame.msg_type {
        MessageType::SignalOffer => SignalKind::Offer,
        MessageType::SignalAnswer => SignalKind::Answer,
        _ => SignalKind::IceCandidate,
    };
    // `{"from_client_id":"…",`: without its comma when the sender's object is empty.
    let stamp = conn.stamp.get_or_insert_with(|| {
        let mut s = b"{\"from_client_id\":".to_vec();
        // A client id is a string; serialising a string cannot fail.
        let _ = serde_json::to_writer(&mut s, session.client_id.as_str());
        s.push(b',');
        Bytes::from(s)
    });
    let stamp = if view.empty {
        stamp.slice(..stamp.len() - 1)
    } else {
        stamp.clone()
    };
    let rest = frame.payload.slice(view.body..);
    let len = stamp.len() + rest.len();
    let head = header_bytes(frame.msg_type, frame.id, PayloadType::Json, len).ok()?;
    let mut encoded = Encoded {
        head: [0; Encoded::HEAD],
        head_len: head.len() as u8,
        parts: [stamp, rest],
        kind,
        accepted_at: conn.received_at,
    };
    encoded.head[..head.len()].copy_from_slice(&head);
    let routed = conn.state.hub.relay(
        session,
        frame.id,
        kind,
        target,
        room,
        Some((JSON, encoded)),
        || Ok(signal_body(payload(frame)?)),
    );
    Some(routed.map(|r| match r {
        Routed::Delivered => None,
        Routed::Elsewhere(e) => Some(e),
    }))
}
