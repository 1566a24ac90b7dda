//! Server-side WebSocket framing (RFC 6455 §5) for a server that reads into a
//! [`BytesMut`].
//!
//! * No extensions are negotiated, so every RSV bit must be 0.
//! * Client frames must be masked; they are unmasked in place in the read
//!   buffer, and an unfragmented message is handed out as a zero-copy
//!   `split_to(..).freeze()` of that buffer (no per-message allocation).
//! * A fragmented message is assembled into a buffer the [`Decoder`] owns and
//!   that is released as soon as the message completes.
//! * Server frames are written unmasked with FIN set ([`write_frame`],
//!   [`encode_header`]).

use std::fmt;

use base64::Engine as _;
use bytes::{Buf as _, Bytes, BytesMut};
use sha1::{Digest as _, Sha1};

/// Largest payload a control frame may carry (RFC 6455 §5.5).
const MAX_CONTROL_PAYLOAD: usize = 125;
/// Longest close reason: a control payload minus the 2-byte close code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;
/// The GUID appended to `Sec-WebSocket-Key` (RFC 6455 §1.3).
const WS_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Limits applied while decoding.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest payload a single frame may declare, in bytes.
    pub max_frame: usize,
    /// Largest data message (the sum of its fragments' payloads), in bytes.
    pub max_message: usize,
}

/// One complete message from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// A text message; the bytes are valid UTF-8 (checked).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping with its payload (<= 125 bytes).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: the code and reason if the frame carried any.
    Close(Option<(u16, Bytes)>),
}

/// Why the client's bytes are refused; each maps to a close code.
#[derive(Debug, PartialEq, Eq)]
pub enum WsError {
    /// RFC 6455 violation (close 1002), with a short precise reason.
    Protocol(&'static str),
    /// A frame or message over the limit (close 1009); `limit` is the limit
    /// that was exceeded.
    TooBig {
        /// The limit (`max_frame` or `max_message`) that was exceeded.
        limit: usize,
    },
    /// Text (or close reason) that is not UTF-8 (close 1007).
    InvalidUtf8,
}

impl WsError {
    /// The close code to send before dropping the connection.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => 1002,
            Self::TooBig { .. } => 1009,
            Self::InvalidUtf8 => 1007,
        }
    }

    /// Human-readable reason for the close frame, at most 123 bytes.
    pub fn reason(&self) -> String {
        let text = self.to_string();
        truncate_str(&text, MAX_CLOSE_REASON).to_owned()
    }
}

impl fmt::Display for WsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(reason) => f.write_str(reason),
            Self::TooBig { limit } => write!(f, "message too big (limit {limit} bytes)"),
            Self::InvalidUtf8 => f.write_str("invalid UTF-8"),
        }
    }
}

impl std::error::Error for WsError {}

/// Opcodes the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    /// Text frame (0x1).
    Text = 0x1,
    /// Binary frame (0x2).
    Binary = 0x2,
    /// Close frame (0x8).
    Close = 0x8,
    /// Ping frame (0x9).
    Ping = 0x9,
    /// Pong frame (0xA).
    Pong = 0xA,
}

impl Opcode {
    /// The 4-bit opcode value on the wire.
    pub const fn wire(self) -> u8 {
        self as u8
    }
}

/// Writes the header of an unmasked server frame with FIN set into `out`;
/// returns its length (2, 4 or 10). The shortest length form is used.
pub fn encode_header(opcode: Opcode, payload_len: usize, out: &mut [u8; 10]) -> usize {
    out[0] = 0x80 | opcode.wire();
    if let Ok(len) = u8::try_from(payload_len)
        && len < 126
    {
        out[1] = len;
        2
    } else if let Ok(len) = u16::try_from(payload_len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        4
    } else {
        out[1] = 127;
        // usize is at most 64 bits on every supported target: lossless.
        out[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
        10
    }
}

/// The length of the header at the start of an unmasked frame `encode_header` wrote;
/// `None` if `frame` is shorter than its header.
pub fn header_len(frame: &[u8]) -> Option<usize> {
    let n = match frame.get(1)? & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame.len() >= n).then_some(n)
}

/// Appends a complete unmasked server frame (header + payload) to `out`.
///
/// Control frames (close, ping, pong) must carry at most 125 bytes; that is
/// the caller's duty (checked only by a debug assertion).
pub fn write_frame(out: &mut BytesMut, opcode: Opcode, payload: &[u8]) {
    debug_assert!(
        matches!(opcode, Opcode::Text | Opcode::Binary) || payload.len() <= MAX_CONTROL_PAYLOAD,
        "control frame payload longer than 125 bytes"
    );
    let mut header = [0u8; 10];
    let n = encode_header(opcode, payload.len(), &mut header);
    out.reserve(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
}

/// The payload of a close frame: 2-byte big-endian code + reason truncated to
/// 123 bytes on a char boundary.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let reason = truncate_str(reason, MAX_CLOSE_REASON);
    let mut payload = BytesMut::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    payload.freeze()
}

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key:
/// base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The longest prefix of `s` that is at most `max` bytes and ends on a char
/// boundary.
fn truncate_str(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// XORs `data` with the frame mask in place; `data[0]` is byte `offset` of the
/// frame payload. Works 8 bytes at a time through `u64`, then bytewise.
fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    let [a, b, c, d] = m;
    let word = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let (chunks, tail) = data.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ word).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, so the rotated mask is in phase.
    for (byte, k) in tail.iter_mut().zip(m.iter().cycle()) {
        *byte ^= k;
    }
}

/// The frame types a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Kind {
    fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed, validated client frame header.
#[derive(Clone, Copy, Debug)]
struct Header {
    fin: bool,
    kind: Kind,
    mask: [u8; 4],
    /// Bytes of header, mask key included.
    header_len: usize,
    payload_len: usize,
}

/// A fragmented data message being assembled.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: BytesMut,
    /// For text: how much of `data` is known to be valid UTF-8 (the rest is at most the
    /// start of one character cut by a fragment boundary).
    checked: usize,
}

impl Partial {
    /// Checks the text received so far, so invalid UTF-8 is refused at the fragment where
    /// it appears rather than at the message's end.
    fn check_utf8(&mut self) -> Result<(), WsError> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            // An error with no length is a character cut at the end: it may complete.
            Err(e) if e.error_len().is_none() => self.checked += e.valid_up_to(),
            Err(_) => return Err(WsError::InvalidUtf8),
        }
        Ok(())
    }
}

/// Incremental decoder for one connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    partial: Option<Partial>,
}

impl Decoder {
    /// A decoder with no message in progress.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            partial: None,
        }
    }

    /// True when no fragmented message is being assembled (nothing is held
    /// between messages).
    #[cfg(test)]
    pub fn is_idle(&self) -> bool {
        self.partial.is_none()
    }

    /// Takes the next complete message out of the front of `buf`, unmasking
    /// in place.
    ///
    /// `Ok(None)`: more bytes are needed. An incomplete frame is never
    /// consumed, but complete non-final fragments that precede it are: they
    /// are moved out of `buf` into the decoder's assembly buffer (so `buf`
    /// may shrink even when `Ok(None)` is returned, and `is_idle()` is false).
    ///
    /// Control frames (ping/pong/close) interleaved inside a fragmented
    /// message are returned as they arrive. A frame header declaring more
    /// than `max_frame`, or a data frame that would take its message past
    /// `max_message`, is refused as soon as its length is read, without
    /// waiting for the mask key or the payload.
    ///
    /// After an error the connection must be closed (with
    /// [`WsError::close_code`]); the decoder and `buf` are not meant to be
    /// used again.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Msg>, WsError> {
        loop {
            let Some(h) = self.parse_header(buf)? else {
                return Ok(None);
            };
            let total = h
                .header_len
                .checked_add(h.payload_len)
                .ok_or(WsError::TooBig {
                    limit: self.limits.max_frame,
                })?;
            let Some(payload) = buf.get_mut(h.header_len..total) else {
                return Ok(None);
            };
            unmask(payload, h.mask, 0);

            match h.kind {
                Kind::Text | Kind::Binary if h.fin => {
                    buf.advance(h.header_len);
                    let payload = buf.split_to(h.payload_len).freeze();
                    return data_message(h.kind == Kind::Text, payload).map(Some);
                }
                Kind::Text | Kind::Binary => {
                    let mut data = BytesMut::with_capacity(h.payload_len);
                    data.extend_from_slice(payload);
                    buf.advance(total);
                    let mut partial = Partial {
                        text: h.kind == Kind::Text,
                        data,
                        checked: 0,
                    };
                    partial.check_utf8()?;
                    self.partial = Some(partial);
                }
                Kind::Continuation => {
                    let Some(partial) = self.partial.as_mut() else {
                        // parse_header has already refused this.
                        return Err(WsError::Protocol(CONTINUATION_WITHOUT_MESSAGE));
                    };
                    partial.data.extend_from_slice(payload);
                    buf.advance(total);
                    partial.check_utf8()?;
                    if h.fin
                        && let Some(Partial {
                            text,
                            data,
                            checked,
                        }) = self.partial.take()
                    {
                        // What was checked fragment by fragment is not checked again.
                        if text && checked != data.len() {
                            return Err(WsError::InvalidUtf8);
                        }
                        return Ok(Some(if text {
                            Msg::Text(data.freeze())
                        } else {
                            Msg::Binary(data.freeze())
                        }));
                    }
                }
                Kind::Close | Kind::Ping | Kind::Pong => {
                    buf.advance(h.header_len);
                    let payload = buf.split_to(h.payload_len).freeze();
                    return match h.kind {
                        Kind::Ping => Ok(Some(Msg::Ping(payload))),
                        Kind::Pong => Ok(Some(Msg::Pong(payload))),
                        _ => close_message(payload).map(Some),
                    };
                }
            }
        }
    }

    /// Parses and validates the header at the front of `buf`; `Ok(None)` if
    /// it is not complete yet. Errors are raised as soon as the bytes that
    /// show them are present.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<Header>, WsError> {
        let &[b0, b1, ..] = buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(WsError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let kind = match b0 & 0x0F {
            0x0 => Kind::Continuation,
            0x1 => Kind::Text,
            0x2 => Kind::Binary,
            0x8 => Kind::Close,
            0x9 => Kind::Ping,
            0xA => Kind::Pong,
            op => return Err(WsError::Protocol(unknown_opcode(op))),
        };
        let control = kind.is_control();
        if control && !fin {
            return Err(WsError::Protocol("fragmented control frame"));
        }
        match (kind, self.partial.is_some()) {
            (Kind::Continuation, false) => {
                return Err(WsError::Protocol(CONTINUATION_WITHOUT_MESSAGE));
            }
            (Kind::Text | Kind::Binary, true) => {
                return Err(WsError::Protocol("data frame inside a fragmented message"));
            }
            _ => {}
        }
        if b1 & 0x80 == 0 {
            return Err(WsError::Protocol("unmasked client frame"));
        }

        let (len, mask_at) = match b1 & 0x7F {
            126 => {
                let &[_, _, l0, l1, ..] = buf else {
                    return Ok(None);
                };
                (u64::from(u16::from_be_bytes([l0, l1])), 4)
            }
            127 => {
                let &[_, _, l0, l1, l2, l3, l4, l5, l6, l7, ..] = buf else {
                    return Ok(None);
                };
                let len = u64::from_be_bytes([l0, l1, l2, l3, l4, l5, l6, l7]);
                if len >> 63 != 0 {
                    return Err(WsError::Protocol("64-bit length with the top bit set"));
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        if control && len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(WsError::Protocol("control frame longer than 125 bytes"));
        }
        let max_frame = self.limits.max_frame;
        let payload_len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= max_frame)
            .ok_or(WsError::TooBig { limit: max_frame })?;
        if !control {
            let held = self.partial.as_ref().map_or(0, |p| p.data.len());
            if held.saturating_add(payload_len) > self.limits.max_message {
                return Err(WsError::TooBig {
                    limit: self.limits.max_message,
                });
            }
        }

        let Some(&[m0, m1, m2, m3]) = buf.get(mask_at..mask_at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            kind,
            mask: [m0, m1, m2, m3],
            header_len: mask_at + 4,
            payload_len,
        }))
    }
}

const CONTINUATION_WITHOUT_MESSAGE: &str = "continuation frame without a message";

/// A complete text or binary message; text is checked for UTF-8.
fn data_message(text: bool, payload: Bytes) -> Result<Msg, WsError> {
    if text {
        std::str::from_utf8(&payload).map_err(|_| WsError::InvalidUtf8)?;
        Ok(Msg::Text(payload))
    } else {
        Ok(Msg::Binary(payload))
    }
}

/// A close frame's payload: empty, or a valid code and a UTF-8 reason.
fn close_message(payload: Bytes) -> Result<Msg, WsError> {
    match *payload.as_ref() {
        [] => Ok(Msg::Close(None)),
        [_] => Err(WsError::Protocol("close frame with a 1-byte payload")),
        [hi, lo, ..] => {
            let code = u16::from_be_bytes([hi, lo]);
            if let Some(reason) = invalid_close_code(code) {
                return Err(WsError::Protocol(reason));
            }
            let reason = payload.slice(2..);
            std::str::from_utf8(&reason).map_err(|_| WsError::InvalidUtf8)?;
            Ok(Msg::Close(Some((code, reason))))
        }
    }
}

/// `None` for a close code a client may send (RFC 6455 §7.4), otherwise the
/// protocol-error reason.
const fn invalid_close_code(code: u16) -> Option<&'static str> {
    match code {
        1000..=1003 | 1007..=1014 | 3000..=4999 => None,
        0..=999 => Some("invalid close code below 1000"),
        1004 => Some("invalid close code 1004"),
        1005 => Some("invalid close code 1005"),
        1006 => Some("invalid close code 1006"),
        1015 => Some("invalid close code 1015"),
        1016..=2999 => Some("invalid close code in reserved range 1016-2999"),
        5000.. => Some("invalid close code above 4999"),
    }
}

const fn unknown_opcode(op: u8) -> &'static str {
    match op {
        0x3 => "unknown opcode 0x3",
        0x4 => "unknown opcode 0x4",
        0x5 => "unknown opcode 0x5",
        0x6 => "unknown opcode 0x6",
        0x7 => "unknown opcode 0x7",
        0xB => "unknown opcode 0xB",
        0xC => "unknown opcode 0xC",
        0xD => "unknown opcode 0xD",
        0xE => "unknown opcode 0xE",
        0xF => "unknown opcode 0xF",
        _ => "unknown opcode",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Cursor;
    use tokio_tungstenite::tungstenite::protocol::frame::{
        Frame, FrameHeader,
        coding::{Control, Data, OpCode},
    };

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const BIG: Limits = Limits {
        max_frame: 1 << 20,
        max_message: 4 << 20,
    };
    const LENGTHS: [usize; 8] = [0, 1, 125, 126, 127, 65535, 65536, 200_000];

    const TEXT: OpCode = OpCode::Data(Data::Text);
    const BINARY: OpCode = OpCode::Data(Data::Binary);
    const CONT: OpCode = OpCode::Data(Data::Continue);
    const PING: OpCode = OpCode::Control(Control::Ping);
    const PONG: OpCode = OpCode::Control(Control::Pong);
    const CLOSE: OpCode = OpCode::Control(Control::Close);

    /// A client frame formatted by tungstenite (the reference encoder).
    fn frame_with(header: FrameHeader, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        Frame::from_payload(header, Bytes::copy_from_slice(payload))
            .format(&mut out)
            .unwrap();
        out
    }

    fn client(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        client_masked(opcode, fin, payload, MASK)
    }

    fn client_masked(opcode: OpCode, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        frame_with(
            FrameHeader {
                is_final: fin,
                opcode,
                mask: Some(mask),
                ..FrameHeader::default()
            },
            payload,
        )
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    /// Decodes everything currently decodable.
    fn drain(dec: &mut Decoder, buf: &mut BytesMut) -> Result<Vec<Msg>, WsError> {
        let mut out = Vec::new();
        while let Some(msg) = dec.decode(buf)? {
            out.push(msg);
        }
        Ok(out)
    }

    fn decode_one(limits: Limits, bytes: &[u8]) -> Result<Option<Msg>, WsError> {
        Decoder::new(limits).decode(&mut BytesMut::from(bytes))
    }

    /// Asserts that `bytes` is refused with exactly `expected`.
    fn refused(bytes: &[u8], expected: WsError) {
        let mut dec = Decoder::new(BIG);
        let mut buf = BytesMut::from(bytes);
        let err = drain(&mut dec, &mut buf).unwrap_err();
        assert_eq!(err, expected);
    }

    fn protocol(bytes: &[u8], reason: &'static str) {
        refused(bytes, WsError::Protocol(reason));
        assert_eq!(WsError::Protocol(reason).close_code(), 1002);
    }

    /// Feeds `bytes` one at a time; returns each message with the number of
    /// bytes fed when it came out.
    fn feed_bytewise(dec: &mut Decoder, bytes: &[u8]) -> Vec<(usize, Msg)> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for (i, &b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[b]);
            while let Some(msg) = dec.decode(&mut buf).unwrap() {
                out.push((i + 1, msg));
            }
        }
        assert!(buf.is_empty());
        out
    }

    // ---- cross-check with tungstenite -------------------------------------

    #[test]
    fn decodes_tungstenite_frames_of_all_length_forms() {
        for len in LENGTHS {
            let payload = pattern(len);
            for (opcode, text) in [(BINARY, false), (TEXT, true)] {
                let payload = if text {
                    payload.iter().map(|b| b & 0x7F).collect()
                } else {
                    payload.clone()
                };
                let mut buf = BytesMut::from(&client(opcode, true, &payload)[..]);
                let msg = Decoder::new(BIG).decode(&mut buf).unwrap().unwrap();
                let expected = Bytes::from(payload);
                if text {
                    assert_eq!(msg, Msg::Text(expected), "len {len}");
                } else {
                    assert_eq!(msg, Msg::Binary(expected), "len {len}");
                }
                assert!(buf.is_empty());
            }
        }
    }

    #[test]
    fn decodes_tungstenite_random_masks() {
        // tungstenite's own random mask generation is crate-private, so vary
        // the mask here.
        for (i, len) in LENGTHS.into_iter().enumerate() {
            let payload = pattern(len);
            let mask = [i as u8, 0xA5, (i * 77) as u8, 0xFF];
            let bytes = client_masked(BINARY, true, &payload, mask);
            let msg = decode_one(BIG, &bytes).unwrap().unwrap();
            assert_eq!(msg, Msg::Binary(Bytes::from(payload)));
        }
    }

    #[test]
    fn unfragmented_payload_is_zero_copy() {
        for len in [1, 126, 70_000] {
            let mut buf = BytesMut::from(&client(BINARY, true, &pattern(len))[..]);
            let start = buf.as_ptr() as usize;
            let range = start..start + buf.len();
            let Some(Msg::Binary(payload)) = Decoder::new(BIG).decode(&mut buf).unwrap() else {
                panic!("expected binary");
            };
            assert!(range.contains(&(payload.as_ptr() as usize)));
            assert_eq!(payload.len(), len);
        }
    }

    #[test]
    fn write_frame_is_parsed_by_tungstenite() {
        let ops = [
            (Opcode::Text, TEXT),
            (Opcode::Binary, BINARY),
            (Opcode::Close, CLOSE),
            (Opcode::Ping, PING),
            (Opcode::Pong, PONG),
        ];
        for len in LENGTHS {
            let payload = pattern(len);
            for (ours, theirs) in ops {
                if matches!(theirs, OpCode::Control(_)) && len > 125 {
                    continue;
                }
                let mut out = BytesMut::new();
                write_frame(&mut out, ours, &payload);
                let mut cursor = Cursor::new(&out[..]);
                let (header, parsed_len) = FrameHeader::parse(&mut cursor).unwrap().unwrap();
                assert_eq!(header.opcode, theirs);
                assert!(header.is_final);
                assert!(!header.rsv1 && !header.rsv2 && !header.rsv3);
                assert_eq!(header.mask, None);
                assert_eq!(parsed_len, len as u64);
                assert_eq!(&out[cursor.position() as usize..], &payload[..]);

                // Byte-identical to tungstenite's own unmasked server frame.
                let reference = frame_with(
                    FrameHeader {
                        opcode: theirs,
                        ..FrameHeader::default()
                    },
                    &payload,
                );
                assert_eq!(&out[..], &reference[..]);
            }
        }
    }

    #[test]
    fn encode_header_lengths() {
        let mut h = [0u8; 10];
        for (len, expected) in [
            (0, 2),
            (125, 2),
            (126, 4),
            (65535, 4),
            (65536, 10),
            (200_000, 10),
        ] {
            assert_eq!(encode_header(Opcode::Binary, len, &mut h), expected);
            assert_eq!(h[0], 0x82);
        }
        assert_eq!(encode_header(Opcode::Pong, 3, &mut h), 2);
        assert_eq!(&h[..2], &[0x8A, 3]);
    }

    // ---- incremental feeding -----------------------------------------------

    #[test]
    fn byte_at_a_time_gives_same_messages() {
        for len in [0, 1, 125, 126, 127, 65535, 65536] {
            let payload = pattern(len);
            let bytes = client(BINARY, true, &payload);
            let mut dec = Decoder::new(BIG);
            let out = feed_bytewise(&mut dec, &bytes);
            assert_eq!(out, vec![(bytes.len(), Msg::Binary(Bytes::from(payload)))]);
        }
    }

    #[test]
    fn byte_at_a_time_fragmented_with_control() {
        let mut bytes = client(TEXT, false, b"Hel");
        let ping_end = {
            bytes.extend(client(PING, true, b"p"));
            bytes.len()
        };
        bytes.extend(client(CONT, false, "lo, w".as_bytes()));
        bytes.extend(client(CONT, true, "örld".as_bytes()));
        let mut dec = Decoder::new(BIG);
        let out = feed_bytewise(&mut dec, &bytes);
        assert_eq!(
            out,
            vec![
                (ping_end, Msg::Ping(Bytes::from_static(b"p"))),
                (bytes.len(), Msg::Text(Bytes::from("Hello, wörld"))),
            ]
        );
        assert!(dec.is_idle());
    }

    #[test]
    fn incomplete_frame_consumes_nothing() {
        let bytes = client(BINARY, true, &pattern(300));
        for cut in [1, 2, 3, 4, 7, 8, 9, 299] {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(Decoder::new(BIG).decode(&mut buf), Ok(None));
            assert_eq!(&buf[..], &bytes[..cut]);
        }
    }

    #[test]
    fn complete_fragment_is_moved_into_assembly_buffer() {
        let second = client(CONT, true, b"world");
        let mut bytes = client(BINARY, false, b"hello ");
        bytes.extend_from_slice(&second[..4]);
        let mut dec = Decoder::new(BIG);
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &second[..4]);
        assert!(!dec.is_idle());
        buf.extend_from_slice(&second[4..]);
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(Msg::Binary(Bytes::from_static(b"hello world"))))
        );
        assert!(dec.is_idle());
        assert!(buf.is_empty());
    }

    #[test]
    fn several_frames_in_one_buffer() {
        let mut bytes = client(BINARY, true, b"a");
        bytes.extend(client(TEXT, true, b"bc"));
        bytes.extend(client(PONG, true, b""));
        bytes.extend(client(CLOSE, true, &close_payload(1000, "bye")));
        let tail = client(BINARY, true, &pattern(200));
        bytes.extend_from_slice(&tail[..10]);

        let mut dec = Decoder::new(BIG);
        let mut buf = BytesMut::from(&bytes[..]);
        let expected = [
            Msg::Binary(Bytes::from_static(b"a")),
            Msg::Text(Bytes::from_static(b"bc")),
            Msg::Pong(Bytes::new()),
            Msg::Close(Some((1000, Bytes::from_static(b"bye")))),
        ];
        for msg in expected {
            assert_eq!(dec.decode(&mut buf), Ok(Some(msg)));
        }
        assert_eq!(dec.decode(&mut buf), Ok(None));
        assert_eq!(&buf[..], &tail[..10]);
    }

    #[test]
    fn fragmented_text_with_ping_in_between() {
        let mut bytes = client(TEXT, false, b"one ");
        bytes.extend(client(PING, true, b"are you there"));
        bytes.extend(client(CONT, false, b"two "));
        bytes.extend(client(CONT, true, b"three"));
        let mut dec = Decoder::new(BIG);
        assert!(dec.is_idle());
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(Msg::Ping(Bytes::from_static(b"are you there"))))
        );
        assert!(!dec.is_idle());
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(Msg::Text(Bytes::from_static(b"one two three"))))
        );
        assert!(dec.is_idle());
        assert!(dec.partial.is_none());
        assert!(buf.is_empty());
        assert_eq!(dec.decode(&mut buf), Ok(None));
    }

    #[test]
    fn empty_fragments() {
        let mut bytes = client(BINARY, false, b"");
        bytes.extend(client(CONT, false, b""));
        bytes.extend(client(CONT, true, b""));
        let mut dec = Decoder::new(BIG);
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(dec.decode(&mut buf), Ok(Some(Msg::Binary(Bytes::new()))));
        assert!(dec.is_idle());
    }

    // ---- protocol errors ---------------------------------------------------

    #[test]
    fn unmasked_client_frame() {
        let bytes = frame_with(
            FrameHeader {
                opcode: BINARY,
                ..FrameHeader::default()
            },
            b"hi",
        );
        protocol(&bytes, "unmasked client frame");
    }

    #[test]
    fn reserved_bits() {
        for bit in 0..3 {
            let header = FrameHeader {
                opcode: BINARY,
                mask: Some(MASK),
                rsv1: bit == 0,
                rsv2: bit == 1,
                rsv3: bit == 2,
                ..FrameHeader::default()
            };
            protocol(&frame_with(header, b"x"), "reserved bits set");
        }
    }

    #[test]
    fn unknown_opcodes() {
        protocol(
            &client(OpCode::Data(Data::Reserved(3)), true, b""),
            "unknown opcode 0x3",
        );
        protocol(
            &client(OpCode::Data(Data::Reserved(7)), true, b""),
            "unknown opcode 0x7",
        );
        protocol(
            &client(OpCode::Control(Control::Reserved(0xB)), true, b""),
            "unknown opcode 0xB",
        );
        protocol(
            &client(OpCode::Control(Control::Reserved(0xF)), true, b""),
            "unknown opcode 0xF",
        );
    }

    #[test]
    fn fragmented_control_frame() {
        for op in [PING, PONG, CLOSE] {
            protocol(&client(op, false, b""), "fragmented control frame");
        }
    }

    #[test]
    fn control_frame_too_long() {
        for op in [PING, PONG] {
            assert!(decode_one(BIG, &client(op, true, &[0; 125])).is_ok());
            protocol(
                &client(op, true, &[0; 126]),
                "control frame longer than 125 bytes",
            );
        }
        // Refused from the header alone.
        protocol(
            &[0x89, 0x80 | 126, 0x00, 0x7E],
            "control frame longer than 125 bytes",
        );
    }

    #[test]
    fn continuation_without_message() {
        protocol(
            &client(CONT, true, b"x"),
            "continuation frame without a message",
        );
        protocol(
            &client(CONT, false, b"x"),
            "continuation frame without a message",
        );
    }

    #[test]
    fn data_frame_inside_fragmented_message() {
        for op in [TEXT, BINARY] {
            let mut bytes = client(BINARY, false, b"a");
            bytes.extend(client(op, true, b"b"));
            protocol(&bytes, "data frame inside a fragmented message");
        }
    }

    #[test]
    fn close_frames() {
        assert_eq!(
            decode_one(BIG, &client(CLOSE, true, b"")),
            Ok(Some(Msg::Close(None)))
        );
        assert_eq!(
            decode_one(BIG, &client(CLOSE, true, &close_payload(1001, "gone"))),
            Ok(Some(Msg::Close(Some((1001, Bytes::from_static(b"gone"))))))
        );
        protocol(
            &client(CLOSE, true, &[0x03]),
            "close frame with a 1-byte payload",
        );
    }

    #[test]
    fn close_codes() {
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1010, 1014, 3000, 4000, 4999,
        ] {
            assert_eq!(
                decode_one(BIG, &client(CLOSE, true, &code.to_be_bytes())),
                Ok(Some(Msg::Close(Some((code, Bytes::new()))))),
                "code {code}"
            );
        }
        protocol(
            &client(CLOSE, true, &1005u16.to_be_bytes()),
            "invalid close code 1005",
        );
        for (code, reason) in [
            (0u16, "invalid close code below 1000"),
            (999, "invalid close code below 1000"),
            (1004, "invalid close code 1004"),
            (1006, "invalid close code 1006"),
            (1015, "invalid close code 1015"),
            (1016, "invalid close code in reserved range 1016-2999"),
            (2999, "invalid close code in reserved range 1016-2999"),
            (5000, "invalid close code above 4999"),
            (u16::MAX, "invalid close code above 4999"),
        ] {
            protocol(&client(CLOSE, true, &close_payload(code, "x")), reason);
        }
    }

    #[test]
    fn close_reason_not_utf8() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[b'o', 0xFF, b'k']);
        refused(&client(CLOSE, true, &payload), WsError::InvalidUtf8);
        assert_eq!(WsError::InvalidUtf8.close_code(), 1007);
    }

    #[test]
    fn length_top_bit_set() {
        let mut bytes = vec![0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0];
        protocol(&bytes, "64-bit length with the top bit set");
        bytes.extend_from_slice(&MASK);
        protocol(&bytes, "64-bit length with the top bit set");
    }

    #[test]
    fn non_minimal_lengths_accepted() {
        let payload = b"hello";
        let mut masked = payload.to_vec();
        unmask(&mut masked, MASK, 0);
        let forms: [&[u8]; 2] = [
            &[0x82, 0x80 | 126, 0, 5],
            &[0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 5],
        ];
        for head in forms {
            let mut bytes = head.to_vec();
            bytes.extend_from_slice(&MASK);
            bytes.extend_from_slice(&masked);
            assert_eq!(
                decode_one(BIG, &bytes),
                Ok(Some(Msg::Binary(Bytes::from_static(b"hello"))))
            );
            // Also for a control frame: the decoded length is what counts.
            bytes[0] = 0x89;
            assert_eq!(
                decode_one(BIG, &bytes),
                Ok(Some(Msg::Ping(Bytes::from_static(b"hello"))))
            );
        }
    }

    // ---- limits ------------------------------------------------------------

    const SMALL: Limits = Limits {
        max_frame: 1000,
        max_message: 1500,
    };

    #[test]
    fn frame_over_limit_refused_from_header() {
        let too_big = WsError::TooBig { limit: 1000 };
        assert_eq!(too_big.close_code(), 1009);
        // Header only, 16-bit length 1001; with and without the mask key.
        assert_eq!(
            decode_one(SMALL, &[0x82, 0x80 | 126, 0x03, 0xE9]),
            Err(too_big)
        );
        let mut with_mask = vec![0x82, 0x80 | 126, 0x03, 0xE9];
        with_mask.extend_from_slice(&MASK);
        assert_eq!(
            decode_one(SMALL, &with_mask),
            Err(WsError::TooBig { limit: 1000 })
        );
        // A huge 64-bit length.
        assert_eq!(
            decode_one(SMALL, &[0x82, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0]),
            Err(WsError::TooBig { limit: 1000 })
        );
        // Exactly at the limit is fine.
        assert!(matches!(
            decode_one(SMALL, &client(BINARY, true, &[1; 1000])),
            Ok(Some(Msg::Binary(p))) if p.len() == 1000
        ));
        // Also for a frame starting a fragmented message.
        let first = client(BINARY, false, &[0; 1001]);
        assert_eq!(
            decode_one(SMALL, &first[..8]),
            Err(WsError::TooBig { limit: 1000 })
        );
    }

    #[test]
    fn message_over_limit_refused_from_header() {
        let mut bytes = client(BINARY, false, &[1; 800]);
        bytes.extend(client(CONT, false, &[2; 700]));
        let last = client(CONT, true, &[3; 1]);
        bytes.extend_from_slice(&last[..2]);
        let mut dec = Decoder::new(SMALL);
        let mut buf = BytesMut::from(&bytes[..]);
        assert_eq!(dec.decode(&mut buf), Err(WsError::TooBig { limit: 1500 }));

        // 1500 exactly is fine.
        let mut bytes = client(BINARY, false, &[1; 800]);
        bytes.extend(client(CONT, true, &[2; 700]));
        assert!(matches!(
            decode_one(SMALL, &bytes),
            Ok(Some(Msg::Binary(p))) if p.len() == 1500
        ));

        // An unfragmented frame above max_message but under max_frame.
        let limits = Limits {
            max_frame: 2000,
            max_message: 1500,
        };
        let frame = client(BINARY, true, &[0; 1501]);
        assert_eq!(
            decode_one(limits, &frame[..4]),
            Err(WsError::TooBig { limit: 1500 })
        );
    }

    #[test]
    fn control_frames_do_not_count_towards_message() {
        let mut bytes = client(BINARY, false, &[1; 1000]);
        bytes.extend(client(PING, true, &[0; 125]));
        bytes.extend(client(CONT, true, &[2; 500]));
        let mut dec = Decoder::new(SMALL);
        let mut buf = BytesMut::from(&bytes[..]);
        assert!(matches!(dec.decode(&mut buf), Ok(Some(Msg::Ping(_)))));
        assert!(matches!(dec.decode(&mut buf), Ok(Some(Msg::Binary(p))) if p.len() == 1500));
    }

    // ---- UTF-8 -------------------------------------------------------------

    #[test]
    fn invalid_utf8_text() {
        refused(&client(TEXT, true, &[b'a', 0xC3]), WsError::InvalidUtf8);
        refused(&client(TEXT, true, &[0xFF]), WsError::InvalidUtf8);
        let mut bytes = client(TEXT, false, b"ok");
        bytes.extend(client(CONT, true, &[0xED, 0xA0, 0x80])); // surrogate
        refused(&bytes, WsError::InvalidUtf8);
        // Binary is not checked.
        assert_eq!(
            decode_one(BIG, &client(BINARY, true, &[0xFF])),
            Ok(Some(Msg::Binary(Bytes::from_static(&[0xFF]))))
        );
    }

    #[test]
    fn invalid_utf8_refused_at_the_fragment_where_it_appears() {
        let mut dec = Decoder::new(BIG);
        // A valid first fragment ending in the first byte of a 4-byte character.
        let mut buf = BytesMut::from(&client(TEXT, false, &[0xce, 0xba, 0xf4])[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        // The next fragment makes it invalid: refused now, before the message ends.
        buf.extend_from_slice(&client(CONT, false, &[0x90]));
        assert_eq!(dec.decode(&mut buf), Err(WsError::InvalidUtf8));
        // A character cut at the last fragment's end is invalid too.
        let mut dec = Decoder::new(BIG);
        let mut buf = BytesMut::from(&client(TEXT, false, b"ok")[..]);
        buf.extend_from_slice(&client(CONT, true, &[0xc3]));
        assert_eq!(dec.decode(&mut buf), Err(WsError::InvalidUtf8));
    }

    #[test]
    fn utf8_char_split_across_fragments() {
        let mut bytes = client(TEXT, false, &[b'a', 0xC3]);
        bytes.extend(client(CONT, false, &[0xA9, 0xE2, 0x82]));
        bytes.extend(client(CONT, true, &[0xAC]));
        assert_eq!(
            decode_one(BIG, &bytes),
            Ok(Some(Msg::Text(Bytes::from("aé€"))))
        );
    }

    // ---- error texts -------------------------------------------------------

    #[test]
    fn error_reasons() {
        let errors = [
            WsError::Protocol("control frame longer than 125 bytes"),
            WsError::TooBig { limit: usize::MAX },
            WsError::InvalidUtf8,
        ];
        for (err, code) in errors.iter().zip([1002, 1009, 1007]) {
            assert_eq!(err.close_code(), code);
            assert!(!err.reason().is_empty() && err.reason().len() <= 123);
            assert_eq!(err.to_string(), err.reason());
        }
        let boxed: Box<dyn std::error::Error> = Box::new(WsError::InvalidUtf8);
        assert_eq!(boxed.to_string(), "invalid UTF-8");
    }

    // ---- helpers -----------------------------------------------------------

    #[test]
    fn accept_key_rfc_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn close_payload_truncates_on_char_boundary() {
        let p = close_payload(1000, "bye");
        assert_eq!(&p[..], b"\x03\xE8bye");

        let exact = "a".repeat(123);
        assert_eq!(close_payload(1000, &exact).len(), 125);
        assert_eq!(close_payload(1000, &"a".repeat(200)).len(), 125);

        // 'é' would occupy bytes 122..124 of the reason: dropped whole.
        let split = format!("{}é", "a".repeat(122));
        let p = close_payload(4000, &split);
        assert_eq!(p.len(), 2 + 122);
        assert!(std::str::from_utf8(&p[2..]).is_ok());

        // 4-byte chars: 30 * 4 = 120, the 31st would end at 124.
        let p = close_payload(4000, &"𝄞".repeat(40));
        assert_eq!(p.len(), 2 + 120);
        assert!(std::str::from_utf8(&p[2..]).is_ok());
    }

    #[test]
    fn unmask_matches_bytewise_at_every_offset() {
        let data = pattern(77);
        for offset in 0..8 {
            let mut fast = data.clone();
            unmask(&mut fast, MASK, offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ MASK[(i + offset) % 4])
                .collect();
            assert_eq!(fast, slow, "offset {offset}");
        }
    }

    // ---- properties --------------------------------------------------------

    /// Splits `bytes` at `cuts` (taken modulo the length) and feeds the
    /// pieces in order; returns every message produced.
    fn feed_split(dec: &mut Decoder, bytes: &[u8], cuts: &[usize]) -> Vec<Msg> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        points.push(bytes.len());
        points.sort_unstable();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        for p in points {
            buf.extend_from_slice(&bytes[at..p]);
            at = p;
            let msgs = drain(dec, &mut buf).unwrap();
            if p < bytes.len() {
                assert!(msgs.is_empty(), "message before the last byte");
            }
            out.extend(msgs);
        }
        assert!(buf.is_empty());
        out
    }

    proptest! {
        #[test]
        fn prop_single_frame_roundtrip(
            payload in proptest::collection::vec(any::<u8>(), 0..70_000),
            mask in any::<[u8; 4]>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let bytes = client_masked(BINARY, true, &payload, mask);
            let mut dec = Decoder::new(BIG);
            let out = feed_split(&mut dec, &bytes, &cuts);
            prop_assert_eq!(out, vec![Msg::Binary(Bytes::from(payload))]);
            prop_assert!(dec.is_idle());
        }

        #[test]
        fn prop_fragmented_roundtrip(
            payload in proptest::collection::vec(any::<u8>(), 0..5_000),
            masks in proptest::collection::vec(any::<[u8; 4]>(), 1..6),
            frag_cuts in proptest::collection::vec(any::<usize>(), 0..5),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut points: Vec<usize> =
                frag_cuts.iter().map(|c| c % (payload.len() + 1)).collect();
            points.push(payload.len());
            points.sort_unstable();
            let mut bytes = Vec::new();
            let mut at = 0;
            for (i, &p) in points.iter().enumerate() {
                let opcode = if i == 0 { BINARY } else { CONT };
                let fin = i + 1 == points.len();
                bytes.extend(client_masked(opcode, fin, &payload[at..p], masks[i % masks.len()]));
                at = p;
            }
            let mut dec = Decoder::new(BIG);
            let out = feed_split(&mut dec, &bytes, &cuts);
            prop_assert_eq!(out, vec![Msg::Binary(Bytes::from(payload))]);
            prop_assert!(dec.is_idle());
        }

        #[test]
        fn prop_unmask_is_xor(
            data in proptest::collection::vec(any::<u8>(), 0..100),
            mask in any::<[u8; 4]>(),
            offset in 0usize..16,
        ) {
            let mut fast = data.clone();
            unmask(&mut fast, mask, offset);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[(i + offset) % 4])
                .collect();
            prop_assert_eq!(fast, slow);
        }
    }
}
