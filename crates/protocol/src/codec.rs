//! Payload encoding: the same serde schemas carried as JSON or CBOR.

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};

use crate::{depth, types::PayloadType};

/// A payload that could not be decoded or encoded, with a message fit for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The message needs a structured payload and got another payload type.
    #[error("payload type {0} cannot carry this message: use JSON (0x02) or CBOR (0x05)")]
    Unsupported(PayloadType),
    /// Malformed JSON, or JSON of the wrong shape (missing field, wrong type).
    #[error("invalid JSON payload: {0}")]
    Json(String),
    /// Malformed CBOR, or CBOR of the wrong shape.
    #[error("invalid CBOR payload: {0}")]
    Cbor(String),
    /// Encoding failed (a bug; never the client's fault).
    #[error("could not encode payload: {0}")]
    Encode(String),
}

/// Decodes a structured payload of type `T` from JSON or CBOR bytes, refusing nesting
/// deeper than [`depth::MAX_DEPTH`] before the decoder recurses.
pub fn decode_payload<T: DeserializeOwned>(
    payload_type: PayloadType,
    bytes: &[u8],
) -> Result<T, PayloadError> {
    match payload_type {
        PayloadType::Json => {
            depth::check_json(bytes).map_err(|e| PayloadError::Json(e.to_string()))?;
            serde_json::from_slice(bytes).map_err(|e| PayloadError::Json(e.to_string()))
        }
        PayloadType::Cbor => {
            depth::check_cbor(bytes).map_err(|e| PayloadError::Cbor(e.to_string()))?;
            minicbor_serde::from_slice(bytes).map_err(|e| PayloadError::Cbor(e.to_string()))
        }
        other => Err(PayloadError::Unsupported(other)),
    }
}

/// Encodes a structured payload as JSON or CBOR.
pub fn encode_payload<T: Serialize + ?Sized>(
    payload_type: PayloadType,
    value: &T,
) -> Result<Bytes, PayloadError> {
    match payload_type {
        PayloadType::Json => serde_json::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| PayloadError::Encode(e.to_string())),
        PayloadType::Cbor => minicbor_serde::to_vec(value)
            .map(Bytes::from)
            .map_err(|e| PayloadError::Encode(e.to_string())),
        other => Err(PayloadError::Unsupported(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{Heartbeat, RegisterRequest};

    #[test]
    fn json_and_cbor_carry_the_same_schema() {
        let hb = Heartbeat {
            timestamp: 1_704_067_200_000,
        };
        for pt in [PayloadType::Json, PayloadType::Cbor] {
            let bytes = encode_payload(pt, &hb).unwrap();
            let back: Heartbeat = decode_payload(pt, &bytes).unwrap();
            assert_eq!(back, hb);
        }
    }

    #[test]
    fn wrong_shapes_are_named() {
        let e =
            decode_payload::<Heartbeat>(PayloadType::Json, br#"{"timestamp":"soon"}"#).unwrap_err();
        assert!(
            e.to_string().contains("invalid type: string \"soon\""),
            "{e}"
        );
        let e = decode_payload::<RegisterRequest>(PayloadType::Json, br#"{"version":"1.0.0"}"#)
            .unwrap_err();
        assert!(e.to_string().contains("missing field `client_id`"), "{e}");
        let e = decode_payload::<Heartbeat>(PayloadType::Json, b"{not json").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid JSON payload: key must be a string"),
            "{e}"
        );
        let e = decode_payload::<Heartbeat>(PayloadType::Cbor, &[0xff, 0x00]).unwrap_err();
        assert!(matches!(e, PayloadError::Cbor(_)), "{e}");
        let e = decode_payload::<Heartbeat>(PayloadType::Text, b"{}").unwrap_err();
        assert_eq!(
            e.to_string(),
            "payload type TEXT (0x03) cannot carry this message: use JSON (0x02) or CBOR (0x05)"
        );
    }
}
