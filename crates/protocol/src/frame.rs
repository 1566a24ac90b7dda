//! The binary frame: `[0xAA][type u8][uuid 16][payload_type u8][length u16 BE][payload]`.
//!
//! The only hand-written parser in the project. It checks every header field against the
//! bytes actually received before anything is allocated or interpreted, and says exactly
//! what was wrong, so a client author can fix their encoder from the error text alone.

use bytes::{BufMut, Bytes, BytesMut};
use std::fmt;
use uuid::Uuid;

use crate::types::{MessageType, PayloadType};

/// Every frame starts with this byte.
pub const START_BYTE: u8 = 0xAA;
/// Header length: start, type, 16-byte UUID, payload type, u16 length.
pub const FRAME_HEADER_LEN: usize = 21;
/// The largest payload the u16 length field can describe.
pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize;

/// A decoded frame. `payload` shares the received buffer (no copy).
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Message type.
    pub msg_type: MessageType,
    /// Message UUID: a request's id, echoed by its response; a relayed signal keeps it.
    pub id: Uuid,
    /// How `payload` is encoded.
    pub payload_type: PayloadType,
    /// Payload bytes.
    pub payload: Bytes,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("msg_type", &self.msg_type)
            .field("id", &self.id)
            .field("payload_type", &self.payload_type)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// What exactly was wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameErrorKind {
    /// The WebSocket message was empty.
    Empty,
    /// First byte was not 0xAA.
    BadStartByte(u8),
    /// Fewer bytes than the 21-byte header.
    Truncated(usize),
    /// The type byte names no message type.
    UnknownMessageType(u8),
    /// The payload type byte names no payload type.
    UnknownPayloadType(u8),
    /// The length field disagrees with the bytes that follow the header.
    LengthMismatch {
        /// What the length field says.
        declared: usize,
        /// What the frame carries after the header.
        actual: usize,
    },
    /// A payload longer than the u16 length field can describe (encoding side).
    PayloadTooLarge(usize),
}

/// A frame that could not be decoded, with whatever header fields could be read so the
/// error response can still carry the request's UUID and type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct FrameError {
    /// What was wrong.
    pub kind: FrameErrorKind,
    /// The UUID, when the frame was long enough to carry one.
    pub id: Option<Uuid>,
    /// The raw type byte, when present.
    pub msg_type: Option<u8>,
}

impl fmt::Display for FrameErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty frame: expected a {FRAME_HEADER_LEN}-byte header"),
            Self::BadStartByte(b) => {
                write!(f, "bad start byte 0x{b:02X}: every frame starts with 0xAA")
            }
            Self::Truncated(n) => write!(
                f,
                "truncated frame: {n} bytes received, the header alone is {FRAME_HEADER_LEN}"
            ),
            Self::UnknownMessageType(b) => write!(f, "unknown message type 0x{b:02X}"),
            Self::UnknownPayloadType(b) => write!(
                f,
                "unknown payload type 0x{b:02X}: expected 0x01 BINARY, 0x02 JSON, 0x03 TEXT, 0x04 PROTOBUF or 0x05 CBOR"
            ),
            Self::LengthMismatch { declared, actual } => write!(
                f,
                "payload length field says {declared}, frame carries {actual}"
            ),
            Self::PayloadTooLarge(n) => write!(
                f,
                "payload of {n} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit of the length field"
            ),
        }
    }
}

// === impl Frame ===

impl Frame {
    /// Builds a frame.
    pub fn new(msg_type: MessageType, id: Uuid, payload_type: PayloadType, payload: Bytes) -> Self {
        Self {
            msg_type,
            id,
            payload_type,
            payload,
        }
    }

    /// Decodes one WebSocket binary message as exactly one frame.
    pub fn decode(buf: Bytes) -> Result<Frame, FrameError> {
        let err = |kind, buf: &Bytes| FrameError {
            kind,
            id: (buf.len() >= 18).then(|| uuid_at(buf)),
            msg_type: buf.get(1).copied(),
        };
        let Some(&start) = buf.first() else {
            return Err(err(FrameErrorKind::Empty, &buf));
        };
        if start != START_BYTE {
            // The rest may be garbage, but a client whose only mistake is the start byte
            // can still correlate the error by the UUID where it would be.
            return Err(err(FrameErrorKind::BadStartByte(start), &buf));
        }
        if buf.len() < FRAME_HEADER_LEN {
            return Err(err(FrameErrorKind::Truncated(buf.len()), &buf));
        }
        let Some(msg_type) = MessageType::from_u8(buf[1]) else {
            return Err(err(FrameErrorKind::UnknownMessageType(buf[1]), &buf));
        };
        let Some(payload_type) = PayloadType::from_u8(buf[18]) else {
            return Err(err(FrameErrorKind::UnknownPayloadType(buf[18]), &buf));
        };
        let declared = u16::from_be_bytes([buf[19], buf[20]]) as usize;
        let actual = buf.len() - FRAME_HEADER_LEN;
        if declared != actual {
            return Err(err(
                FrameErrorKind::LengthMismatch { declared, actual },
                &buf,
            ));
        }
        let id = uuid_at(&buf);
        let payload = buf.slice(FRAME_HEADER_LEN..);
        Ok(Frame {
            msg_type,
            id,
            payload_type,
            payload,
        })
    }

    /// Encodes the frame into a new buffer.
    pub fn encode(&self) -> Result<Bytes, FrameError> {
        encode_parts(self.msg_type, self.id, self.payload_type, &self.payload)
    }
}

/// Encodes a frame from its parts without building a [`Frame`] first.
pub fn encode_parts(
    msg_type: MessageType,
    id: Uuid,
    payload_type: PayloadType,
    payload: &[u8],
) -> Result<Bytes, FrameError> {
    let mut out = BytesMut::with_capacity(FRAME_HEADER_LEN + payload.len());
    encode_into(&mut out, msg_type, id, payload_type, payload)?;
    Ok(out.freeze())
}

/// Appends one encoded frame to `out`.
pub fn encode_into(
    out: &mut BytesMut,
    msg_type: MessageType,
    id: Uuid,
    payload_type: PayloadType,
    payload: &[u8],
) -> Result<(), FrameError> {
    encode_header(out, msg_type, id, payload_type, payload.len())?;
    out.put_slice(payload);
    Ok(())
}

/// The 21-byte header of a frame with `payload_len` payload bytes, as an array.
pub fn header_bytes(
    msg_type: MessageType,
    id: Uuid,
    payload_type: PayloadType,
    payload_len: usize,
) -> Result<[u8; FRAME_HEADER_LEN], FrameError> {
    let len = u16::try_from(payload_len).map_err(|_| FrameError {
        kind: FrameErrorKind::PayloadTooLarge(payload_len),
        id: Some(id),
        msg_type: Some(msg_type as u8),
    })?;
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[0] = START_BYTE;
    h[1] = msg_type as u8;
    h[2..18].copy_from_slice(id.as_bytes());
    h[18] = payload_type as u8;
    h[19..21].copy_from_slice(&len.to_be_bytes());
    Ok(h)
}

/// Appends the 21-byte header of a frame whose `payload_len` payload bytes the caller
/// appends next (for a payload assembled from pieces).
pub fn encode_header(
    out: &mut BytesMut,
    msg_type: MessageType,
    id: Uuid,
    payload_type: PayloadType,
    payload_len: usize,
) -> Result<(), FrameError> {
    let len = u16::try_from(payload_len).map_err(|_| FrameError {
        kind: FrameErrorKind::PayloadTooLarge(payload_len),
        id: Some(id),
        msg_type: Some(msg_type as u8),
    })?;
    out.reserve(FRAME_HEADER_LEN + payload_len);
    out.put_u8(START_BYTE);
    out.put_u8(msg_type as u8);
    out.put_slice(id.as_bytes());
    out.put_u8(payload_type as u8);
    out.put_u16(len);
    Ok(())
}

fn uuid_at(buf: &[u8]) -> Uuid {
    let mut b = [0u8; 16];
    b.copy_from_slice(&buf[2..18]);
    Uuid::from_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(hex: &str) -> Bytes {
        Bytes::from(hex::decode(hex.replace(' ', "")).unwrap_or_default())
    }

    const HB_ID: &str = "550E8400E29B41D4A716446655440002";
    const HB_JSON: &str = "7B2274696D657374616D70223A313730343036373230303030307D";

    #[test]
    fn seed_heartbeat_vector_is_refused_with_the_exact_lengths() {
        // Seed 000's literal example: its length field says 0x0018 (24), the JSON is 27 bytes.
        let err = Frame::decode(frame(&format!("AA04{HB_ID}020018{HB_JSON}"))).unwrap_err();
        assert_eq!(
            err.kind,
            FrameErrorKind::LengthMismatch {
                declared: 24,
                actual: 27
            }
        );
        assert_eq!(
            err.to_string(),
            "payload length field says 24, frame carries 27"
        );
        assert_eq!(
            err.id.map(|u| u.to_string()).as_deref(),
            Some("550e8400-e29b-41d4-a716-446655440002")
        );
        assert_eq!(err.msg_type, Some(0x04));
    }

    #[test]
    fn corrected_heartbeat_vector_decodes() {
        let f = Frame::decode(frame(&format!("AA04{HB_ID}02001B{HB_JSON}"))).unwrap();
        assert_eq!(f.msg_type, MessageType::Heartbeat);
        assert_eq!(f.payload_type, PayloadType::Json);
        assert_eq!(&f.payload[..], br#"{"timestamp":1704067200000}"#);
        assert_eq!(
            f.encode().unwrap(),
            frame(&format!("AA04{HB_ID}02001B{HB_JSON}"))
        );
    }

    #[test]
    fn every_header_fault_is_named() {
        let ok = frame(&format!("AA04{HB_ID}02001B{HB_JSON}"));
        assert_eq!(
            Frame::decode(Bytes::new()).unwrap_err().kind,
            FrameErrorKind::Empty
        );
        let mut bad = ok.to_vec();
        bad[0] = 0xAB;
        assert_eq!(
            Frame::decode(bad.into()).unwrap_err().to_string(),
            "bad start byte 0xAB: every frame starts with 0xAA"
        );
        let short = ok.slice(..20);
        let e = Frame::decode(short).unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::Truncated(20));
        assert!(
            e.id.is_some(),
            "a truncated header that holds the UUID still reports it"
        );
        let mut unknown = ok.to_vec();
        unknown[1] = 0x42;
        assert_eq!(
            Frame::decode(unknown.into()).unwrap_err().to_string(),
            "unknown message type 0x42"
        );
        let mut pt = ok.to_vec();
        pt[18] = 0x09;
        assert_eq!(
            Frame::decode(pt.into()).unwrap_err().kind,
            FrameErrorKind::UnknownPayloadType(0x09)
        );
    }

    #[test]
    fn every_prefix_of_a_valid_frame_is_rejected_without_panic() {
        let ok = frame(&format!("AA04{HB_ID}02001B{HB_JSON}"));
        for n in 0..ok.len() {
            assert!(Frame::decode(ok.slice(..n)).is_err(), "prefix of {n} bytes");
        }
    }

    #[test]
    fn oversize_payload_cannot_be_encoded() {
        let big = vec![b'x'; MAX_PAYLOAD_LEN + 1];
        let e = encode_parts(
            MessageType::SignalOffer,
            Uuid::nil(),
            PayloadType::Json,
            &big,
        )
        .unwrap_err();
        assert_eq!(e.kind, FrameErrorKind::PayloadTooLarge(MAX_PAYLOAD_LEN + 1));
        let max = vec![b'x'; MAX_PAYLOAD_LEN];
        let f = encode_parts(
            MessageType::SignalOffer,
            Uuid::nil(),
            PayloadType::Json,
            &max,
        )
        .unwrap();
        assert_eq!(Frame::decode(f).unwrap().payload.len(), MAX_PAYLOAD_LEN);
    }
}
