//! Signal payloads of a fixed size with the send timestamp inside: an ICE candidate
//! (~200 B), an SDP offer and an answer (~4 KB), in each target's own message shape. The
//! timestamp is a 13-digit JSON number under the key `"bt"` (nanoseconds since the run's
//! epoch plus 10^12, so the width never changes and JavaScript reads it exactly).

use std::{sync::OnceLock, time::Instant};

use bytes::Bytes;

use crate::target::{Dest, Target};

/// Message kinds, in the order of [`crate::target::Templates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ICE candidate.
    Candidate = 0,
    /// SDP offer.
    Offer = 1,
    /// SDP answer.
    Answer = 2,
}

const STAMP_BASE: u64 = 1_000_000_000_000;
const STAMP_LEN: usize = 13;
const KEY: &[u8] = b"\"bt\":";

/// The run's time origin: every timestamp is nanoseconds since this instant.
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The 13 ASCII digits of a timestamp.
pub fn stamp_digits(ns: u64) -> [u8; STAMP_LEN] {
    let mut v = STAMP_BASE + ns.min(8 * STAMP_BASE);
    let mut out = [b'0'; STAMP_LEN];
    for d in out.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
    out
}

/// Finds the timestamp in a received message: near the end (`from_end`) or near the start
/// first, then anywhere.
pub fn find_stamp(m: &[u8], from_end: bool) -> Option<u64> {
    let near = if from_end {
        m.len().saturating_sub(160)..m.len()
    } else {
        0..m.len().min(160)
    };
    let pos = find(&m[near.clone()], KEY)
        .map(|p| p + near.start)
        .or_else(|| find(m, KEY))?;
    let digits = m.get(pos + KEY.len()..pos + KEY.len() + STAMP_LEN)?;
    let mut v: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(d - b'0');
    }
    v.checked_sub(STAMP_BASE)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

const CANDIDATE: &str = "candidate:842163049 1 udp 1677729535 203.0.113.7 54321 typ srflx raddr 192.168.1.20 rport 54321 generation 0 ufrag EEtu network-id 1 network-cost 10";

fn sdp_body(len: usize) -> String {
    // Plausible SDP lines, JSON-escaped line breaks, cut to `len` bytes.
    const LINES: &[&str] = &[
        "v=0",
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0 1",
        "a=msid-semantic: WMS stream",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126",
        "c=IN IP4 0.0.0.0",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=ice-ufrag:EEtu",
        "a=ice-pwd:asd88fgpdd777uzjYhagZg",
        "a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:5E:EA:6F:AF:52:CE:E6:0F",
        "a=setup:actpass",
        "a=mid:0",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=sendrecv",
        "a=rtcp-mux",
        "a=rtpmap:111 opus/48000/2",
        "a=fmtp:111 minptime=10;useinbandfec=1",
        "a=ssrc:1001 cname:stream-audio",
        "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103",
        "a=rtpmap:96 VP8/90000",
        "a=rtcp-fb:96 goog-remb",
        "a=rtcp-fb:96 transport-cc",
        "a=rtcp-fb:96 ccm fir",
        "a=rtcp-fb:96 nack",
        "a=rtcp-fb:96 nack pli",
    ];
    let mut s = String::with_capacity(len + 128);
    let mut i = 0;
    while s.len() < len {
        s.push_str(LINES[i % LINES.len()]);
        s.push_str("\\r\\n");
        i += 1;
    }
    s.truncate(len);
    // Never end inside an escape sequence.
    while s.ends_with('\\') {
        s.pop();
        s.push('x');
    }
    s
}

fn candidate_body(len: usize) -> String {
    let mut s = String::from(CANDIDATE);
    while s.len() < len {
        s.push_str(" x");
    }
    s.truncate(len);
    s
}

/// The message of `kind` from one sender to `dest`, `size` bytes in all (the whole
/// WebSocket message, including a signal-manager frame header or the floor's 4-byte
/// target), split around the timestamp digits.
pub fn template(target: Target, kind: Kind, dest: &Dest, size: usize) -> (Bytes, Bytes) {
    // Shape with an adjustable body; grow the body until the size is met.
    let shape = |body: &str| -> (String, String) {
        let (pre, post) = match (target, kind, dest) {
            (Target::SignalManager, Kind::Candidate, Dest::Peer(to)) => (
                format!(
                    r#"{{"target_client_id":"{to}","candidate":"{body}","sdp_mid":"0","sdp_m_line_index":0,"bt":"#
                ),
                "}".to_owned(),
            ),
            (Target::SignalManager, Kind::Candidate, Dest::PeerInRoom(to, room)) => (
                format!(
                    r#"{{"target_client_id":"{to}","room_id":"{room}","candidate":"{body}","sdp_mid":"0","sdp_m_line_index":0,"bt":"#
                ),
                "}".to_owned(),
            ),
            (Target::SignalManager, Kind::Candidate, Dest::Room(room)) => (
                format!(
                    r#"{{"room_id":"{room}","candidate":"{body}","sdp_mid":"0","sdp_m_line_index":0,"bt":"#
                ),
                "}".to_owned(),
            ),
            (Target::SignalManager, _, Dest::Peer(to)) => (
                format!(r#"{{"target_client_id":"{to}","sdp":"{body}","bt":"#),
                "}".to_owned(),
            ),
            (Target::SignalManager, _, Dest::PeerInRoom(to, room)) => (
                format!(r#"{{"target_client_id":"{to}","room_id":"{room}","sdp":"{body}","bt":"#),
                "}".to_owned(),
            ),
            (Target::SignalManager, _, Dest::Room(room)) => (
                format!(r#"{{"room_id":"{room}","sdp":"{body}","bt":"#),
                "}".to_owned(),
            ),
            (Target::Floor, Kind::Candidate, _) => (
                format!(r#"{{"candidate":"{body}","sdpMid":"0","sdpMLineIndex":0,"bt":"#),
                "}".to_owned(),
            ),
            (Target::Floor, k, _) => (
                format!(r#"{{"type":"{}","sdp":"{body}","bt":"#, sdp_type(k)),
                "}".to_owned(),
            ),
            (Target::Peerjs, Kind::Candidate, d) => (
                format!(
                    r#"{{"type":"CANDIDATE","dst":"{}","payload":{{"candidate":{{"candidate":"{body}","sdpMid":"0","sdpMLineIndex":0}},"type":"media","connectionId":"mc_bench","bt":"#,
                    dest_id(d)
                ),
                "}}".to_owned(),
            ),
            (Target::Peerjs, k, d) => (
                format!(
                    r#"{{"type":"{}","dst":"{}","payload":{{"sdp":{{"type":"{}","sdp":"{body}"}},"type":"media","connectionId":"mc_bench","bt":"#,
                    if k == Kind::Offer { "OFFER" } else { "ANSWER" },
                    dest_id(d),
                    sdp_type(k)
                ),
                "}}".to_owned(),
            ),
            // Keys in sorted order, as the server re-serializes them: "bt" first.
            (Target::Matchbox, Kind::Candidate, d) => (
                format!(r#"{{"Signal":{{"receiver":"{}","data":{{"bt":"#, dest_id(d)),
                format!(
                    r#","candidate":{{"candidate":"{body}","sdpMLineIndex":0,"sdpMid":"0"}}}}}}}}"#
                ),
            ),
            (Target::Matchbox, k, d) => (
                format!(r#"{{"Signal":{{"receiver":"{}","data":{{"bt":"#, dest_id(d)),
                format!(r#","sdp":"{body}","type":"{}"}}}}}}"#, sdp_type(k)),
            ),
        };
        (pre, post)
    };
    let overhead = match target {
        Target::SignalManager => 21,
        Target::Floor => 4,
        _ => 0,
    };
    let make = |n: usize| match kind {
        Kind::Candidate => candidate_body(n),
        _ => sdp_body(n),
    };
    let (p0, q0) = shape(&make(0));
    let fixed = overhead + p0.len() + q0.len() + STAMP_LEN;
    let body_len = size.saturating_sub(fixed);
    let (mut pre, post) = shape(&make(body_len));
    if target == Target::Floor {
        // [u32 target][payload]: the 4 bytes go in front of the JSON.
        let to = match dest {
            Dest::Peer(p) | Dest::PeerInRoom(p, _) => p.parse::<u32>().unwrap_or(u32::MAX),
            Dest::Room(_) => u32::MAX,
        };
        let mut b = to.to_be_bytes().to_vec();
        b.extend_from_slice(pre.as_bytes());
        return (Bytes::from(b), Bytes::from(post));
    }
    pre.shrink_to_fit();
    (Bytes::from(pre), Bytes::from(post))
}

fn sdp_type(k: Kind) -> &'static str {
    if k == Kind::Answer { "answer" } else { "offer" }
}

fn dest_id(d: &Dest) -> &str {
    match d {
        Dest::Peer(p) | Dest::PeerInRoom(p, _) | Dest::Room(p) => p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        for ns in [0, 1, 123_456_789, 7_999_999_999_999] {
            let d = stamp_digits(ns);
            let mut m = br#"{"a":1,"bt":"#.to_vec();
            m.extend_from_slice(&d);
            m.push(b'}');
            assert_eq!(find_stamp(&m, true), Some(ns));
            assert_eq!(find_stamp(&m, false), Some(ns));
        }
    }

    #[test]
    fn templates_have_the_requested_size_and_are_json() {
        for target in [
            Target::SignalManager,
            Target::Floor,
            Target::Peerjs,
            Target::Matchbox,
        ] {
            for (kind, size) in [
                (Kind::Candidate, 200),
                (Kind::Offer, 4096),
                (Kind::Answer, 4096),
            ] {
                let dest = Dest::Peer(if target == Target::Floor {
                    "7".into()
                } else {
                    "peer-7".into()
                });
                let (pre, post) = template(target, kind, &dest, size);
                let overhead = if target == Target::SignalManager {
                    21
                } else {
                    0
                };
                assert_eq!(
                    pre.len() + STAMP_LEN + post.len() + overhead,
                    size,
                    "{target:?} {kind:?}"
                );
                let skip = if target == Target::Floor { 4 } else { 0 };
                let mut json = pre[skip..].to_vec();
                json.extend_from_slice(&stamp_digits(42));
                json.extend_from_slice(&post);
                let v: serde_json::Value = serde_json::from_slice(&json).unwrap_or_else(|e| {
                    panic!(
                        "{target:?} {kind:?}: {e}: {}",
                        String::from_utf8_lossy(&json)
                    )
                });
                assert!(v.is_object());
                assert_eq!(find_stamp(&json, target != Target::Matchbox), Some(42));
            }
        }
    }
}
