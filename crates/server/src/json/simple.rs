//! Placeholder for the simple dialect.

use bytes::Bytes;
use signal_core::hub::Envelope;

/// Encodes a hub event for a simple connection.
pub fn encode_event(_env: &Envelope) -> Option<Bytes> {
    None
}
