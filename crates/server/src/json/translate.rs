//! What the three JSON dialects share: signal payloads to and from the hub's
//! [`SignalBody`] and on to the hub, the symbolic error codes, timestamps and member
//! names.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};
use signal_core::{
    CoreError, ErrorKind,
    hub::{ParticipantInfo, Session, Signal, SignalBody, SignalKind, SignalRequest},
};
use uuid::Uuid;

use crate::{conn::Conn, ws::close};

/// Payload keys that route a message rather than describe it: never passed through, so
/// a peer cannot smuggle a routing field (or spoof a sender) into another dialect.
const ROUTING_KEYS: &[&str] = &[
    "target_user_id",
    "target_client_id",
    "from_client_id",
    "room_id",
    "sender_id",
];

/// A JSON signal payload as the hub's body. `sdp`, `candidate`, `sdp_mid`/`sdpMid` and
/// `sdp_m_line_index`/`sdpMLineIndex` are lifted; a `candidate` object (a browser's
/// `RTCIceCandidate` as JSON) is flattened; routing keys are dropped; everything else is
/// passed through in `extra`. A bare string is the SDP of an offer or answer, or the
/// candidate line of a candidate.
pub(crate) fn body_from_payload(
    payload: Option<&Value>,
    kind: SignalKind,
) -> Result<SignalBody, CoreError> {
    let mut body = SignalBody::default();
    match payload {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => match kind {
            SignalKind::IceCandidate => body.candidate = Some(Value::from(s.as_str())),
            _ => body.sdp = Some(s.clone()),
        },
        Some(Value::Object(m)) => lift(&mut body, m, true)?,
        Some(_) => {
            return Err(CoreError::bad_request(
                "Invalid 'payload' field: expected an object (or an SDP / candidate string)",
            ));
        }
    }
    Ok(body)
}

fn lift(body: &mut SignalBody, m: &Map<String, Value>, outer: bool) -> Result<(), CoreError> {
    for (k, v) in m {
        match k.as_str() {
            "sdp" if outer => match v {
                Value::String(s) => body.sdp = Some(s.clone()),
                Value::Null => {}
                _ => {
                    return Err(CoreError::bad_request(
                        "Invalid 'payload.sdp': expected a string",
                    ));
                }
            },
            "candidate" => match v {
                Value::String(s) => body.candidate = Some(Value::from(s.as_str())),
                Value::Object(inner) if outer => lift(body, inner, false)?,
                Value::Null => {}
                _ => {
                    return Err(CoreError::bad_request(
                        "Invalid 'payload.candidate': expected a candidate string or an RTCIceCandidate object",
                    ));
                }
            },
            "sdp_mid" | "sdpMid" => match v {
                Value::String(s) => {
                    // The outer payload's value wins over a nested candidate object's.
                    if outer || body.sdp_mid.is_none() {
                        body.sdp_mid = Some(s.clone());
                    }
                }
                Value::Null => {}
                _ => {
                    return Err(CoreError::bad_request(format!(
                        "Invalid 'payload.{k}': expected a string"
                    )));
                }
            },
            "sdp_m_line_index" | "sdpMLineIndex" => match v {
                Value::Null => {}
                v => {
                    let n = v
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            CoreError::bad_request(format!(
                                "Invalid 'payload.{k}': expected a non-negative integer"
                            ))
                        })?;
                    if outer || body.sdp_m_line_index.is_none() {
                        body.sdp_m_line_index = Some(n);
                    }
                }
            },
            k if ROUTING_KEYS.contains(&k) => {}
            // A nested candidate object's other keys (usernameFragment) are kept unless
            // the outer payload has the same key.
            _ if !outer && body.extra.contains_key(k) => {}
            _ => {
                body.extra.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(())
}

/// A hub signal's body as a JSON dialect's payload: the extra fields, then `type`
/// (`offer` / `answer` when absent) and `sdp` for descriptions, so a browser can call
/// `setRemoteDescription(payload)`, and for candidates `candidate` with both spellings of
/// `sdpMid`/`sdp_mid` and `sdpMLineIndex`/`sdp_m_line_index`, so `addIceCandidate(payload)`
/// works.
pub(crate) fn payload_of(s: &Signal) -> Map<String, Value> {
    let b = &s.body;
    let mut m = b.extra.clone();
    for k in ROUTING_KEYS {
        m.remove(*k);
    }
    match s.kind {
        SignalKind::Offer => {
            m.entry("type").or_insert_with(|| Value::from("offer"));
        }
        SignalKind::Answer => {
            m.entry("type").or_insert_with(|| Value::from("answer"));
        }
        SignalKind::IceCandidate => {}
    }
    if let Some(sdp) = &b.sdp {
        m.insert("sdp".into(), Value::from(sdp.as_str()));
    }
    let (mut mid, mut index) = (b.sdp_mid.clone(), b.sdp_m_line_index);
    match &b.candidate {
        // A binary peer may send the browser's object as is: flatten it here too.
        Some(Value::Object(c)) => {
            if let Some(line) = c.get("candidate") {
                m.insert("candidate".into(), line.clone());
            }
            if mid.is_none() {
                mid = c
                    .get("sdpMid")
                    .or_else(|| c.get("sdp_mid"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
            }
            if index.is_none() {
                index = c
                    .get("sdpMLineIndex")
                    .or_else(|| c.get("sdp_m_line_index"))
                    .and_then(Value::as_u64)
                    .and_then(|n| u32::try_from(n).ok());
            }
            if let Some(u) = c.get("usernameFragment") {
                m.entry("usernameFragment").or_insert_with(|| u.clone());
            }
        }
        Some(c) => {
            m.insert("candidate".into(), c.clone());
        }
        None => {}
    }
    if let Some(mid) = mid {
        m.insert("sdpMid".into(), Value::from(mid.as_str()));
        m.insert("sdp_mid".into(), Value::from(mid));
    }
    if let Some(i) = index {
        m.insert("sdpMLineIndex".into(), Value::from(i));
        m.insert("sdp_m_line_index".into(), Value::from(i));
    }
    m
}

/// The JSON dialects' error table: each error kind's symbolic code (seed 002's set, plus
/// `RATE_LIMITED` and `SESSION_REPLACED`). The one place a JSON client's code is chosen.
pub(crate) fn code_name(e: &CoreError) -> &'static str {
    match e.kind {
        ErrorKind::BadRequest | ErrorKind::UnsupportedVersion | ErrorKind::TooLarge => {
            "INVALID_MESSAGE"
        }
        ErrorKind::Unauthenticated | ErrorKind::NotConnected | ErrorKind::Forbidden => {
            "UNAUTHORIZED"
        }
        ErrorKind::NotMember | ErrorKind::NoSharedRoom => "NOT_IN_ROOM",
        ErrorKind::RoomFull => "ROOM_FULL",
        ErrorKind::RoomNotFound | ErrorKind::ClientNotFound => "ROOM_NOT_FOUND",
        ErrorKind::PeerNotFound => "PEER_NOT_FOUND",
        ErrorKind::AlreadyInRoom
        | ErrorKind::AlreadyRegistered
        | ErrorKind::RoomExists
        | ErrorKind::Conflict => "ALREADY_IN_ROOM",
        ErrorKind::SessionReplaced => "SESSION_REPLACED",
        ErrorKind::RateLimited => "RATE_LIMITED",
        ErrorKind::Internal
        | ErrorKind::Unavailable
        | ErrorKind::ShuttingDown
        | ErrorKind::MediaFailed
        | ErrorKind::MediaTimeout => "INTERNAL_ERROR",
    }
}

/// The JSON dialects' close code for a session that could not be opened: 1011 when the
/// server is at fault (the database is down, an internal error), 1001 while it drains,
/// 1008 (policy) for anything the client got wrong.
pub(crate) fn refusal_close(e: &CoreError) -> u16 {
    match e.kind {
        ErrorKind::ShuttingDown => close::GOING_AWAY,
        k if k.is_server_side() => close::INTERNAL,
        _ => close::POLICY,
    }
}

/// An error's details as seed 002's `details` string: `key: value, key: value`.
pub(crate) fn details_text(e: &CoreError) -> String {
    e.details
        .iter()
        .map(|(k, v)| match v {
            Value::String(s) => format!("{k}: {s}"),
            v => format!("{k}: {v}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts an error sent to a JSON client.
pub(crate) fn count_error(e: &CoreError) {
    metrics::counter!("signal_errors_total", "code" => e.code().label()).increment(1);
}

/// Milliseconds since the Unix epoch (altair's `timestamp`).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// ISO 8601 in UTC with milliseconds (room-path's `timestamp`).
pub(crate) fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A JSON value as a text message body.
pub(crate) fn to_bytes(v: &Value) -> Option<Bytes> {
    match serde_json::to_vec(v) {
        Ok(b) => Some(Bytes::from(b)),
        Err(e) => {
            tracing::error!(error = %e, "JSON encoding failed");
            None
        }
    }
}

/// A name from join metadata: `display_name`, else `username`, else `name`.
fn metadata_name(metadata: &Value) -> Option<&str> {
    ["display_name", "username", "name"]
        .iter()
        .filter_map(|k| metadata.get(*k).and_then(Value::as_str))
        .find(|s| !s.is_empty())
}

/// The name to show for a member in an event: the name in its join metadata, else its
/// client id. (JSON members always have one there: see [`join_metadata`].)
pub(crate) fn name_in(metadata: &Value, client: &str) -> String {
    metadata_name(metadata).unwrap_or(client).to_owned()
}

/// The name to show for a listed member: as in events, then the session's name (a JWT's
/// `name`), then the id.
pub(crate) fn participant_name(p: &ParticipantInfo) -> String {
    metadata_name(&p.metadata)
        .or(p.display_name.as_deref().filter(|n| !n.is_empty()))
        .unwrap_or(p.client_id.as_str())
        .to_owned()
}

/// Join metadata for a JSON member: the client's own object, with `display_name` set to
/// the session's name when the client gave none.
pub(crate) fn join_metadata(given: Option<&Value>, name: &str) -> Value {
    let mut m = match given {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    let named = m
        .get("display_name")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !named {
        m.insert("display_name".into(), Value::from(name));
    }
    Value::Object(m)
}

/// A failure of a JSON dialect's request; its code comes from [`code_name`].
pub(crate) struct Fail {
    /// The failure.
    pub(crate) err: CoreError,
}

impl From<CoreError> for Fail {
    fn from(err: CoreError) -> Self {
        Self { err }
    }
}

impl Fail {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::from(CoreError::new(kind, message))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }

    pub(crate) fn not_in_room(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotMember, message)
    }

    /// The dialect's symbolic code (`INVALID_MESSAGE`, `ROOM_FULL`, ...).
    pub(crate) fn code(&self) -> &'static str {
        code_name(&self.err)
    }
}

/// A string field, `None` when absent, null or empty; 400 when another type.
pub(crate) fn str_field<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
) -> Result<Option<&'a str>, Fail> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Fail::invalid(format!(
            "Invalid '{key}' field: expected a string"
        ))),
    }
}

/// Relays a signal a JSON dialect received (JSON messages carry no frame id, so a fresh
/// one is made), within `room`, to `target` or to the room's other members.
pub(crate) async fn relay(
    conn: &Conn,
    session: &Arc<Session>,
    kind: SignalKind,
    target: Option<&str>,
    room: &str,
    body: SignalBody,
) -> Result<(), CoreError> {
    conn.state
        .hub
        .signal(
            session,
            SignalRequest {
                id: Uuid::new_v4(),
                kind,
                target: target.map(str::to_owned),
                room: Some(room.to_owned()),
                body,
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;
    use signal_core::ids::ClientId;

    use super::*;

    fn sig(kind: SignalKind, body: SignalBody) -> Signal {
        Signal {
            kind,
            from: ClientId::parse("f", "alice").unwrap(),
            target: None,
            room: None,
            body,
        }
    }

    #[test]
    fn browser_candidates_are_flattened_and_routing_keys_dropped() {
        let p = json!({
            "candidate": {"candidate": "candidate:1 1 UDP 1 1.2.3.4 5 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "uf"},
            "target_user_id": "bob",
            "from_client_id": "mallory",
            "room_id": "r",
        });
        let b = body_from_payload(Some(&p), SignalKind::IceCandidate).unwrap();
        assert_eq!(
            b.candidate,
            Some(json!("candidate:1 1 UDP 1 1.2.3.4 5 typ host"))
        );
        assert_eq!(b.sdp_mid.as_deref(), Some("0"));
        assert_eq!(b.sdp_m_line_index, Some(0));
        assert_eq!(
            Value::Object(b.extra.clone()),
            json!({"usernameFragment": "uf"})
        );
        let out = payload_of(&sig(SignalKind::IceCandidate, b));
        assert_eq!(
            Value::Object(out),
            json!({"candidate": "candidate:1 1 UDP 1 1.2.3.4 5 typ host", "sdpMid": "0", "sdp_mid": "0",
                   "sdpMLineIndex": 0, "sdp_m_line_index": 0, "usernameFragment": "uf"})
        );
    }

    #[test]
    fn descriptions_get_their_type() {
        let b = body_from_payload(
            Some(&json!({"sdp": "v=0", "session_id": "s"})),
            SignalKind::Answer,
        )
        .unwrap();
        let out = payload_of(&sig(SignalKind::Answer, b));
        assert_eq!(
            Value::Object(out),
            json!({"type": "answer", "sdp": "v=0", "session_id": "s"})
        );
        let b = body_from_payload(Some(&json!("v=0 raw")), SignalKind::Offer).unwrap();
        assert_eq!(b.sdp.as_deref(), Some("v=0 raw"));
        assert!(body_from_payload(Some(&json!([1])), SignalKind::Offer).is_err());
        assert!(body_from_payload(Some(&json!({"sdpMLineIndex": -1})), SignalKind::Offer).is_err());
    }
}
