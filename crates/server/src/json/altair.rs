//! Placeholder for the altair dialect.

use bytes::Bytes;
use signal_core::hub::Envelope;

/// Encodes a hub event for a altair connection.
pub fn encode_event(_env: &Envelope) -> Option<Bytes> {
    None
}
