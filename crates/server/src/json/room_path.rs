//! Placeholder for the room_path dialect.

use bytes::Bytes;
use signal_core::hub::Envelope;

/// Encodes a hub event for a room_path connection.
pub fn encode_event(_env: &Envelope) -> Option<Bytes> {
    None
}
