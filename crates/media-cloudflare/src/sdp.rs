//! The little of SDP the SFU mode reads: which media sections of an offer send a track.

/// A track an offer sends: an audio or video section whose direction is `sendrecv` or
/// `sendonly`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentTrack {
    /// The section's `a=mid`.
    pub mid: String,
    /// `audio` or `video`.
    pub kind: String,
}

/// Checks that `sdp` looks like a session description (starts with `v=0`).
pub fn check(sdp: &str) -> Result<(), String> {
    if sdp.trim_start().starts_with("v=0") {
        Ok(())
    } else {
        Err("'sdp' is not a session description: it does not start with 'v=0'".into())
    }
}

/// The tracks `sdp` sends, in section order. Rejected sections (port 0), data channels
/// and sections without a mid are left out.
pub fn sent_tracks(sdp: &str) -> Vec<SentTrack> {
    let mut out = Vec::new();
    let mut session_direction = "sendrecv";
    let mut current: Option<Section> = None;
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(m) = line.strip_prefix("m=") {
            if let Some(s) = current.take() {
                s.push_to(&mut out, session_direction);
            }
            let mut parts = m.split_whitespace();
            current = Some(Section {
                kind: parts.next().unwrap_or_default().to_owned(),
                rejected: parts.next() == Some("0"),
                mid: None,
                direction: None,
            });
            continue;
        }
        let Some(attr) = line.strip_prefix("a=") else {
            continue;
        };
        let direction = matches!(attr, "sendrecv" | "sendonly" | "recvonly" | "inactive");
        match &mut current {
            None if direction => session_direction = direction_of(attr),
            None => {}
            Some(s) if direction => s.direction = Some(direction_of(attr)),
            Some(s) => {
                if let Some(mid) = attr.strip_prefix("mid:") {
                    s.mid = Some(mid.trim().to_owned());
                }
            }
        }
    }
    if let Some(s) = current.take() {
        s.push_to(&mut out, session_direction);
    }
    out
}

fn direction_of(attr: &str) -> &'static str {
    match attr {
        "sendonly" => "sendonly",
        "recvonly" => "recvonly",
        "inactive" => "inactive",
        _ => "sendrecv",
    }
}

struct Section {
    kind: String,
    rejected: bool,
    mid: Option<String>,
    direction: Option<&'static str>,
}

impl Section {
    fn push_to(self, out: &mut Vec<SentTrack>, session_direction: &'static str) {
        let sends = matches!(
            self.direction.unwrap_or(session_direction),
            "sendrecv" | "sendonly"
        );
        if sends
            && !self.rejected
            && matches!(self.kind.as_str(), "audio" | "video")
            && let Some(mid) = self.mid.filter(|m| !m.is_empty())
        {
            out.push(SentTrack {
                mid,
                kind: self.kind,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1 2 3\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=mid:2\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=sendonly\r\n";

    #[test]
    fn finds_the_sections_that_send() {
        let t = sent_tracks(OFFER);
        assert_eq!(
            t,
            vec![
                SentTrack {
                    mid: "0".into(),
                    kind: "audio".into()
                },
                SentTrack {
                    mid: "2".into(),
                    kind: "video".into()
                },
            ]
        );
    }

    #[test]
    fn session_level_direction_is_the_default() {
        let sdp = "v=0\r\ns=-\r\na=recvonly\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\n";
        assert!(sent_tracks(sdp).is_empty());
        let sdp = "v=0\r\ns=-\r\nm=audio 9 RTP/AVP 0\r\na=mid:a\r\n";
        assert_eq!(sent_tracks(sdp).len(), 1, "no direction means sendrecv");
    }

    #[test]
    fn refuses_what_is_not_sdp() {
        assert!(check("hello").is_err());
        assert!(check("v=0\r\n").is_ok());
    }
}
