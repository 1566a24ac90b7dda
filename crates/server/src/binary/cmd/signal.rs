//! SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE: relayed to the target with the
//! same type and UUID, `from_client_id` stamped by the server. No ACK; failures are ERRORs.

use std::{borrow::Cow, time::Instant};

use bytes::Bytes;
use serde::{Deserialize, Deserializer, de::IgnoredAny};
use serde_json::value::RawValue;
use signal_core::{
    CoreError, ErrorCode,
    hub::{Outbound, SignalBody, SignalKind, SignalRequest, Wire},
};
use signal_protocol::{
    Frame, MAX_PAYLOAD_LEN, MessageType, PayloadType, frame::header_bytes, payload::SignalPayload,
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
    // The payload must be an object (serde would also read a struct from an array).
    let open = frame
        .payload
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .filter(|&i| frame.payload[i] == b'{')?;
    // With no `\u` escape and valid UTF-8, skipping a string (what the check does) and
    // decoding it (what the slow path does) accept the same strings: the escapes left
    // are checked by both, and only `\u` escapes can encode a lone surrogate.
    if memchr::memmem::find(&frame.payload, b"\\u").is_some()
        || std::str::from_utf8(&frame.payload).is_err()
    {
        return None;
    }
    let peek: Peek<'_> = serde_json::from_slice(&frame.payload).ok()?;
    if peek.from_client_id.0 || !peek.strings_are_strings() {
        return None;
    }
    let target = peek.target_client_id.as_deref().filter(|t| !t.is_empty())?;
    let room = peek.room_id.as_deref().filter(|r| !r.is_empty());
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
    let rest = &frame.payload[open + 1..];
    let empty = rest
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'}');
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
        body: frame.payload.slice(open + 1..),
        kind,
        accepted_at: Instant::now(),
    });
    conn.state.hub.count_relayed(kind);
    Some(Ok(()))
}

/// [`SignalPayload`]'s schema, checked without building values: the same fields with
/// the same types, everything else ignored (the full type passes it through).
#[derive(Deserialize)]
#[allow(dead_code, reason = "the body fields are only type-checked")]
struct Peek<'a> {
    #[serde(default, borrow)]
    target_client_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    room_id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    sdp: Option<&'a RawValue>,
    #[serde(default)]
    candidate: Option<IgnoredAny>,
    #[serde(default, borrow)]
    sdp_mid: Option<&'a RawValue>,
    #[serde(default)]
    sdp_m_line_index: Option<u32>,
    #[serde(default)]
    from_client_id: Present,
}

impl Peek<'_> {
    /// `sdp` and `sdp_mid` are strings or null, as [`SignalPayload`] requires. (Kept
    /// raw, so the SDP is skipped rather than unescaped.)
    fn strings_are_strings(&self) -> bool {
        [self.sdp, self.sdp_mid]
            .into_iter()
            .flatten()
            .all(|v| v.get().starts_with('"') || v.get() == "null")
    }
}

/// Whether a field is present at all (even as `null`).
#[derive(Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}
