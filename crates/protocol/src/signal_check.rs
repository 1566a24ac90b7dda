//! A one-pass check of a JSON signal payload against [`SignalPayload`]'s schema, for
//! relaying a signal without decoding it.
//!
//! [`check_signal`] reads the payload once, byte by byte where it must and eight bytes at
//! a time through the long runs of plain text an SDP is made of, and allocates nothing.
//! It is conservative: it accepts only payloads that `serde_json` would also decode into
//! a [`SignalPayload`], and answers `None` for anything it cannot be sure of (a `\u`
//! escape, a number with an exponent, an escaped key or client id, deep nesting, a
//! `from_client_id` the sender put in), so that the decoder decides those and names the
//! fault. Everything it accepts the decoder accepts; the property test below checks that
//! against `serde_json` on generated and mutated payloads.
//!
//! [`SignalPayload`]: crate::payload::SignalPayload

/// What the check learned of an accepted payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalView<'a> {
    /// `target_client_id`, when present and not null.
    pub target_client_id: Option<&'a str>,
    /// `room_id`, when present and not null.
    pub room_id: Option<&'a str>,
    /// Offset of the first byte after the object's `{`.
    pub body: usize,
    /// Whether the object has no members.
    pub empty: bool,
}

/// Nesting deeper than the decoders' limit is left to the decoder, which refuses it. The
/// top-level object is level 1; a value at `depth` opens level `depth + 1`.
const MAX_DEPTH: u32 = crate::depth::MAX_DEPTH as u32;
/// Longer number tokens are left to the decoder (which refuses those out of range).
const MAX_NUMBER: usize = 24;

/// Checks `payload` against [`SignalPayload`](crate::payload::SignalPayload)'s schema.
/// `None` when the payload is invalid or the check leaves it to the decoder.
pub fn check_signal(payload: &[u8]) -> Option<SignalView<'_>> {
    let mut p = Parser { b: payload, i: 0 };
    p.ws();
    p.eat(b'{')?;
    let (mut target_client_id, mut room_id) = (None, None);
    let body = p.i;
    let mut seen = 0u8;
    let empty = p.items(b'}', |p| {
        let (key, escaped) = p.string()?;
        if escaped {
            return None;
        }
        p.ws();
        p.eat(b':')?;
        p.ws();
        let field = match key {
            b"target_client_id" => 0,
            b"room_id" => 1,
            b"sdp" => 2,
            b"sdp_mid" => 3,
            b"candidate" => 4,
            b"sdp_m_line_index" => 5,
            // Replaced by the server: the decoder's path does that.
            b"from_client_id" => return None,
            _ => 8,
        };
        if field < 8 {
            // A repeated field is an error for the decoder.
            if seen & (1 << field) != 0 {
                return None;
            }
            seen |= 1 << field;
        }
        match field {
            0 => target_client_id = p.id()?,
            1 => room_id = p.id()?,
            2 | 3 => p.string_or_null()?,
            5 => p.u32_or_null()?,
            _ => p.value(1)?,
        }
        Some(())
    })?;
    let view = SignalView {
        target_client_id,
        room_id,
        body,
        empty,
    };
    p.ws();
    (p.i == payload.len()).then_some(view)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// JSON whitespace (not form feed or vertical tab).
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string: its raw content, and whether it holds escapes.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        self.eat(b'"')?;
        let start = self.i;
        let mut escaped = false;
        loop {
            self.i = skip_plain(self.b, self.i);
            match *self.b.get(self.i)? {
                b'"' => {
                    let s = &self.b[start..self.i];
                    self.i += 1;
                    return Some((s, escaped));
                }
                b'\\' => {
                    // Every SDP line ends in `\r\n`: the pair is taken in one step.
                    if self.b.get(self.i..self.i + 4) == Some(b"\\r\\n") {
                        escaped = true;
                        self.i += 4;
                        continue;
                    }
                    // `\u` can encode a lone surrogate, which the decoder refuses.
                    match self.b.get(self.i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        _ => return None,
                    }
                    escaped = true;
                    self.i += 2;
                }
                c @ 0x80.. => {
                    let len = match c {
                        0xC2..=0xDF => 2,
                        0xE0..=0xEF => 3,
                        0xF0..=0xF4 => 4,
                        _ => return None,
                    };
                    let seq = self.b.get(self.i..self.i + len)?;
                    std::str::from_utf8(seq).ok()?;
                    self.i += len;
                }
                // A control character.
                _ => return None,
            }
        }
    }

    /// A client or room id: a string without escapes, or null.
    fn id(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            return self.literal(b"null").map(|()| None);
        }
        let (s, escaped) = self.string()?;
        if escaped {
            return None;
        }
        std::str::from_utf8(s).ok().map(Some)
    }

    fn string_or_null(&mut self) -> Option<()> {
        if self.peek()? == b'n' {
            return self.literal(b"null");
        }
        self.string().map(drop)
    }

    fn u32_or_null(&mut self) -> Option<()> {
        if self.peek()? == b'n' {
            return self.literal(b"null");
        }
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        let digits = &self.b[start..self.i];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') || digits.len() > 10 {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        let v = digits
            .iter()
            .fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
        (v <= u64::from(u32::MAX)).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i.checked_add(word.len())?;
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// A number without an exponent (which can put it out of range).
    fn number(&mut self) -> Option<()> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let at = self.i;
            self.digits();
            if self.i == at {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            return None;
        }
        (self.i - start <= MAX_NUMBER).then_some(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
    }

    /// The members of an object or the elements of an array, after its opening byte:
    /// `item` reads one, they are separated by commas, and `close` ends them. Whether
    /// there were none.
    fn items(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<bool> {
        self.ws();
        if self.peek()? == close {
            self.i += 1;
            return Some(true);
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.i += 1,
                c if c == close => {
                    self.i += 1;
                    return Some(false);
                }
                _ => return None,
            }
        }
    }

    /// Any JSON value, at nesting `depth`.
    fn value(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.items(b'}', |p| {
                    p.string()?;
                    p.ws();
                    p.eat(b':')?;
                    p.ws();
                    p.value(depth + 1)
                })
                .map(drop)
            }
            b'[' => {
                self.i += 1;
                self.items(b']', |p| p.value(depth + 1)).map(drop)
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the first byte at or after `i` that is not plain string text: `"`, `\`,
/// a control character or a byte of a multi-byte UTF-8 sequence. Sixteen bytes at a time.
fn skip_plain(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 16) {
        let (lo, hi) = chunk.split_at(8);
        let (m0, m1) = (special(word(lo)), special(word(hi)));
        if m0 | m1 != 0 {
            return if m0 != 0 {
                i + (m0.trailing_zeros() / 8) as usize
            } else {
                i + 8 + (m1.trailing_zeros() / 8) as usize
            };
        }
        i += 16;
    }
    while let Some(&c) = b.get(i) {
        if c < 0x20 || c == b'"' || c == b'\\' || c >= 0x80 {
            break;
        }
        i += 1;
    }
    i
}

fn word(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// The high bit of every byte of `x` that is `"`, `\`, below 0x20 or 0x80 and above; the
/// lowest set bit is exact (bits above it may be spurious). Each subtraction sets the high
/// bit of a byte that is zero after the XOR (or below 0x20) and of bytes 0x81 and above,
/// which are flagged by `| x` in any case; its borrows only reach bytes above a hit.
fn special(x: u64) -> u64 {
    let quote = (x ^ (LO * u64::from(b'"'))).wrapping_sub(LO);
    let slash = (x ^ (LO * u64::from(b'\\'))).wrapping_sub(LO);
    let ctl = x.wrapping_sub(LO * 0x20);
    (quote | slash | ctl | x) & HI
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::payload::SignalPayload;

    fn decoded(b: &[u8]) -> Option<SignalPayload> {
        serde_json::from_slice::<SignalPayload>(b).ok()
    }

    /// The property: whatever the check accepts, the decoder accepts with the same ids
    /// and no `from_client_id`.
    fn agrees(b: &[u8]) -> Result<(), TestCaseError> {
        if let Some(v) = check_signal(b) {
            let p = decoded(b);
            prop_assert!(
                p.is_some(),
                "accepted what the decoder refuses: {:?}",
                String::from_utf8_lossy(b)
            );
            let p = p.unwrap_or_default();
            prop_assert_eq!(v.target_client_id, p.target_client_id.as_deref());
            prop_assert_eq!(v.room_id, p.room_id.as_deref());
            prop_assert!(p.from_client_id.is_none());
            prop_assert_eq!(b.get(v.body - 1), Some(&b'{'));
        }
        Ok(())
    }

    #[test]
    fn accepts_what_clients_send() {
        let sdp =
            "v=0\\r\\no=- 46117 2 IN IP4 127.0.0.1\\r\\ns=-\\r\\na=fingerprint:sha-256 D2:FA\\r\\n";
        for json in [
            format!(r#"{{"target_client_id":"bob","sdp":"{sdp}"}}"#),
            format!(r#" {{ "target_client_id" : "bob" , "room_id":"r1","sdp":"{sdp}", "type":"offer"}} "#),
            r#"{"target_client_id":"b","candidate":"candidate:1 1 udp 2 1.2.3.4 5 typ host","sdp_mid":"0","sdp_m_line_index":0}"#.to_owned(),
            r#"{"target_client_id":"b","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":1,"usernameFragment":null}}"#.to_owned(),
            r#"{"target_client_id":"b","sdp_mid":null,"sdp_m_line_index":4294967295,"x":[1,-2.5,true,false,null,{}]}"#.to_owned(),
            r#"{"target_client_id":"ünïcödé-🎉","sdp":"é\"\\\/\b\f\n\r\t"}"#.to_owned(),
            "{}".to_owned(),
        ] {
            let v = check_signal(json.as_bytes());
            assert!(v.is_some(), "refused {json}");
            assert!(decoded(json.as_bytes()).is_some(), "decoder refuses {json}");
        }
        let v = check_signal(br#"{"target_client_id":"bob","room_id":null}"#);
        assert_eq!(
            v,
            Some(SignalView {
                target_client_id: Some("bob"),
                room_id: None,
                body: 1,
                empty: false
            })
        );
        assert_eq!(
            check_signal(b" {\n} ").map(|v| (v.body, v.empty)),
            Some((2, true))
        );
    }

    #[test]
    fn leaves_to_the_decoder() {
        for json in [
            // Invalid for the decoder too.
            r#"{"target_client_id":"b","sdp":5}"#,
            r#"{"target_client_id":"b","sdp_m_line_index":-1}"#,
            r#"{"target_client_id":"b","sdp_m_line_index":4294967296}"#,
            r#"{"target_client_id":"b","sdp_m_line_index":1.0}"#,
            r#"{"target_client_id":"b","sdp":"a","sdp":"b"}"#,
            r#"{"target_client_id":"b","x":1e400}"#,
            r#"{"target_client_id":"b","sdp":"\ud800"}"#,
            r#"{"target_client_id":"b","sdp":"tab	inside"}"#,
            r#"{"target_client_id":"b",}"#,
            r#"{"target_client_id":"b"} x"#,
            r#"{"target_client_id":"b","x":01}"#,
            r#"{"target_client_id":"b","x":[1,]}"#,
            r#"{"target_client_id":"b"}"#,
            "\x0c{}",
            "[]",
            r#""s""#,
            "",
            // Valid, but the decoder decides.
            r#"{"target_client_id":"b","from_client_id":"me"}"#,
            r#"{"target_client_id":"b\/c"}"#,
            r#"{"target_\u0063lient_id":"b"}"#,
            r#"{"target_client_id":"b","x":1e3}"#,
        ] {
            let b = json.as_bytes();
            // The one valid object with no fault is the control: accepted.
            if json == r#"{"target_client_id":"b"}"# {
                assert!(check_signal(b).is_some());
                continue;
            }
            assert!(check_signal(b).is_none(), "accepted {json}");
        }
        // Bytes that are not UTF-8, in a string and outside.
        assert!(check_signal(b"{\"target_client_id\":\"b\",\"sdp\":\"\xff\"}").is_none());
        assert!(check_signal(b"{\"target_client_id\":\"b\",\"sdp\":\"\xed\xa0\x80\"}").is_none());
        assert!(check_signal(b"{\"target_client_id\":\"b\"}\xff").is_none());
        // Nesting past the limit.
        let deep = format!(r#"{{"x":{}{}}}"#, "[".repeat(70), "]".repeat(70));
        assert!(check_signal(deep.as_bytes()).is_none());
    }

    #[test]
    fn skip_plain_stops_at_the_first_special_byte() {
        let text = b"abcdefghijklmnopqrstuvwxyz0123456789 ABCDEFGHIJ";
        for at in 0..text.len() {
            for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xff, b'\n'] {
                let mut b = text.to_vec();
                b[at] = special;
                for start in 0..=at {
                    assert_eq!(
                        skip_plain(&b, start),
                        at,
                        "{special:#x} at {at} from {start}"
                    );
                }
            }
        }
        assert_eq!(skip_plain(text, 0), text.len());
        // Bytes just outside the special ranges are plain.
        assert_eq!(skip_plain(b"\x20!#[]\x7f~~~~~~~~~~", 0), 16);
    }

    /// Pieces a payload is assembled from: valid and invalid values, keys and texture.
    fn value_text() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_owned()),
            Just("true".to_owned()),
            Just("fals".to_owned()),
            "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,4})?([eE][+-]?[0-9]{1,3})?",
            Just("01".to_owned()),
            "\"([a-z =:.\\-]|\\\\[nrt\"/\\\\bfu]|\\\\u[0-9a-fA-F]{4}|é|\u{1F389}|\t|\u{7f})*\"",
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(("[a-z_]{0,6}", inner), 0..4).prop_map(|v| {
                    let m: Vec<String> =
                        v.into_iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    format!("{{{}}}", m.join(","))
                }),
            ]
        })
    }

    fn payload() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("target_client_id"),
            Just("room_id"),
            Just("sdp"),
            Just("sdp_mid"),
            Just("candidate"),
            Just("sdp_m_line_index"),
            Just("from_client_id"),
            Just("type"),
            Just("extra"),
        ];
        let member = (key, value_text(), "[ \n]{0,1}");
        prop::collection::vec(member, 0..6).prop_map(|ms| {
            let m: Vec<String> = ms
                .into_iter()
                .map(|(k, v, ws)| format!("{ws}\"{k}\"{ws}:{ws}{v}"))
                .collect();
            format!("{{{}}}", m.join(","))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn skip_plain_matches_a_byte_by_byte_scan(
            b in prop::collection::vec(prop_oneof![0x20u8..0x7f, any::<u8>()], 0..80),
            start in 0usize..80,
        ) {
            let start = start.min(b.len());
            let expected = b[start..]
                .iter()
                .position(|&c| c < 0x20 || c == b'"' || c == b'\\' || c >= 0x80)
                .map_or(b.len(), |p| start + p);
            prop_assert_eq!(skip_plain(&b, start), expected);
        }

        #[test]
        fn never_accepts_what_the_decoder_refuses(p in payload()) {
            agrees(p.as_bytes())?;
        }

        #[test]
        fn mutations_keep_the_property(
            p in payload(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let mut b = p.into_bytes();
            for (at, byte, op) in edits {
                let i = at.index(b.len() + 1);
                match op {
                    0 if i < b.len() => b[i] = byte,
                    1 => b.insert(i, byte),
                    _ if i < b.len() => { b.remove(i); }
                    _ => {}
                }
            }
            agrees(&b)?;
        }

        #[test]
        fn plain_members_are_accepted(
            ids in prop::collection::vec("[a-zA-Z0-9_.-]{1,12}", 2),
            sdp in "([ -!#-\\[\\]-~]|\\\\r\\\\n|é){0,300}",
            index in any::<u32>(),
        ) {
            let json = format!(
                r#"{{"target_client_id":"{}","room_id":"{}","sdp":"{sdp}","sdp_m_line_index":{index}}}"#,
                ids[0], ids[1]
            );
            let v = check_signal(json.as_bytes());
            prop_assert!(v.is_some(), "refused {}", json);
            agrees(json.as_bytes())?;
        }
    }
}
