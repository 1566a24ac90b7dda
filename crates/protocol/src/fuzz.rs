//! Entry points of the fuzz targets in `fuzz/`, kept here so `cargo test` replays the
//! targets' corpora through the same code (see `crates/server/tests/fuzz_corpora.rs`).
//! Each panics only on a bug: a decoder that crashes, or an invariant that breaks.

use bytes::Bytes;

use crate::{
    Frame, PayloadType, decode_payload, depth, encode_payload,
    payload::{
        ConnectRequest, Heartbeat, RegisterRequest, RoomCreateRequest, RoomJoinRequest,
        RoomLeaveRequest, SignalPayload, UnregisterRequest,
    },
};

/// A binary frame: decoded, re-encoded to the same bytes, and its payload decoded as the
/// requests a client sends.
pub fn frame_decode(data: &[u8]) {
    if let Ok(f) = Frame::decode(Bytes::copy_from_slice(data)) {
        assert_eq!(f.encode().ok().as_deref(), Some(data));
        payloads(f.payload_type, &f.payload);
    }
}

/// A payload alone: the first byte picks JSON or CBOR, the rest is decoded as every
/// request type. What decodes re-encodes, and decodes again to the same value.
pub fn payload_decode(data: &[u8]) {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let pt = if pick & 1 == 0 {
        PayloadType::Json
    } else {
        PayloadType::Cbor
    };
    // The nesting checks never panic, whatever the bytes.
    let _ = depth::check_json(bytes);
    let _ = depth::check_cbor(bytes);
    payloads(pt, bytes);
    if let Ok(v) = decode_payload::<serde_json::Value>(pt, bytes) {
        // Accepted: within the nesting limit in both encodings.
        let json = serde_json::to_vec(&v).unwrap_or_default();
        assert!(depth::check_json(&json).is_ok());
        if let Ok(cbor) = encode_payload(PayloadType::Cbor, &v) {
            assert!(depth::check_cbor(&cbor).is_ok());
        }
    }
}

fn payloads(pt: PayloadType, bytes: &[u8]) {
    let _ = decode_payload::<ConnectRequest>(pt, bytes);
    let _ = decode_payload::<RegisterRequest>(pt, bytes);
    let _ = decode_payload::<UnregisterRequest>(pt, bytes);
    let _ = decode_payload::<RoomCreateRequest>(pt, bytes);
    let _ = decode_payload::<RoomJoinRequest>(pt, bytes);
    let _ = decode_payload::<RoomLeaveRequest>(pt, bytes);
    let _ = decode_payload::<Heartbeat>(pt, bytes);
    if let Ok(s) = decode_payload::<SignalPayload>(pt, bytes)
        && let Ok(again) = encode_payload(pt, &s)
    {
        let back = decode_payload::<SignalPayload>(pt, &again);
        assert!(
            back.is_ok(),
            "a decoded signal re-encodes to something that decodes"
        );
    }
    // The relay path's one-pass check never accepts what the decoder refuses.
    if pt == PayloadType::Json && crate::signal_check::check_signal(bytes).is_some() {
        assert!(
            decode_payload::<SignalPayload>(pt, bytes).is_ok(),
            "check_signal accepted a payload the decoder refuses"
        );
    }
}
