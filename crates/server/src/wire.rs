//! Event encoding by wire format: the one dispatch from a core [`Wire`] to the dialect
//! that encodes it. An envelope calls this at most once per wire format present among its
//! receivers.

use bytes::Bytes;
use signal_core::hub::{Envelope, Wire};
use signal_protocol::PayloadType;

use crate::{binary, json};

/// Encodes `env` for a connection speaking `wire`; `None` if that dialect has no way to
/// express the event.
pub fn encode_event(wire: Wire, env: &Envelope) -> Option<Bytes> {
    match wire {
        Wire::BinaryJson => binary::codec::encode_event(env, PayloadType::Json),
        Wire::BinaryCbor => binary::codec::encode_event(env, PayloadType::Cbor),
        Wire::Altair => json::altair::encode_event(env),
        Wire::Simple => json::simple::encode_event(env),
        Wire::RoomPath => json::room_path::encode_event(env),
    }
}
