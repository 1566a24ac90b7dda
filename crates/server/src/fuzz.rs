//! Entry points of the server's fuzz targets in `fuzz/` (the WebSocket frame decoder and
//! the JSON dialects' message decoding and translation), kept here so `cargo test`
//! replays the targets' corpora through the same code (`tests/fuzz_corpora.rs`). Each
//! panics only on a bug.

use bytes::BytesMut;
use serde_json::Value;
use signal_core::{
    ClientId,
    hub::{Envelope, Event, Signal, SignalKind},
};

use signal_protocol::PayloadType;

use crate::ws::frame::{Decoder, Limits, Msg};

/// A dialect's event encoder.
type Encoder = fn(&Envelope) -> Option<bytes::Bytes>;

const LIMITS: Limits = Limits {
    max_frame: 4096,
    max_message: 16384,
};

/// WebSocket frames from a client. The first byte sets how the rest arrives (in pieces
/// of that many bytes); the messages must be the same as when it all arrives at once, and
/// text must be UTF-8.
pub fn ws_frames(data: &[u8]) {
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let whole = messages(rest, rest.len().max(1));
    let pieces = messages(rest, usize::from(step).max(1));
    assert_eq!(whole, pieces, "messages depend on how the bytes arrive");
}

/// The messages decoded from `bytes` arriving `step` at a time, up to the first error
/// (recorded as its close code).
fn messages(bytes: &[u8], step: usize) -> Vec<Result<Msg, u16>> {
    let mut dec = Decoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in bytes.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(m)) => {
                    match &m {
                        Msg::Text(t) => assert!(std::str::from_utf8(t).is_ok()),
                        Msg::Ping(p) | Msg::Pong(p) => assert!(p.len() <= 125),
                        Msg::Binary(b) => assert!(b.len() <= LIMITS.max_message),
                        Msg::Close(_) => {}
                    }
                    out.push(Ok(m));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.close_code()));
                    return out;
                }
            }
        }
    }
    out
}

/// A JSON dialect message: parsed (nesting bounded), its dialect told, its payload
/// lifted into a signal of each kind, and that signal encoded for every wire.
pub fn dialect_message(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(v) = crate::json::parse(text) else {
        return;
    };
    let _ = crate::json::detect(&v);
    let payload = v.get("payload").or_else(|| v.get("data"));
    for kind in [
        SignalKind::Offer,
        SignalKind::Answer,
        SignalKind::IceCandidate,
    ] {
        let Ok(body) = crate::json::translate::body_from_payload(payload, kind) else {
            continue;
        };
        let Ok(from) = ClientId::parse("from", "fuzz") else {
            return;
        };
        let env = Envelope::new(Event::Signal(Signal {
            kind,
            from,
            target: None,
            room: None,
            body,
        }));
        let encoders: [(&str, Encoder, bool); 5] = [
            (
                "binary_json",
                |e| crate::binary::codec::encode_event(e, PayloadType::Json),
                false,
            ),
            (
                "binary_cbor",
                |e| crate::binary::codec::encode_event(e, PayloadType::Cbor),
                false,
            ),
            ("altair", crate::json::altair::encode_event, true),
            ("simple", crate::json::simple::encode_event, true),
            ("room_path", crate::json::room_path::encode_event, true),
        ];
        for (name, encode, json) in encoders {
            if let Some(bytes) = encode(&env)
                && json
            {
                assert!(
                    serde_json::from_slice::<Value>(&bytes).is_ok(),
                    "{name} encoded a signal that is not JSON"
                );
            }
        }
    }
}
