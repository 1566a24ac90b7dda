//! The room-path dialect (seed 004) on `/webrtc/ws/{room_id}?token=JWT`: the connection
//! is in the room of its URL from the start. The client gets `room_state` (every
//! participant, itself included); the rest of the room gets `user_joined` and, when it
//! goes, `user_left`. `offer` / `answer` / `ice_candidate` go to `payload.target_user_id`,
//! or without it to the rest of the room; the server sets `sender_id`, `room_id` and an
//! ISO 8601 `timestamp`. Refusals after the upgrade are close codes: 1008 for a bad,
//! expired or missing token, a bad room id or a full room (after an `error` message),
//! 1011 for an internal failure.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use signal_core::{
    CoreError, ErrorKind,
    hub::{Envelope, Event, Format, Session, SignalKind},
};

use super::{
    Credential, admission, open_session,
    translate::{
        body_from_payload, code_name, count_error, name_in, now_iso, participant_name, payload_of,
        refusal_close, relay, to_bytes,
    },
};
use crate::{
    conn::{AsyncDialect, Conn, Flow},
    ws::{Message, close},
};

/// Whether `room` is a valid room-path room id: `[A-Za-z0-9-]{1,64}`.
pub(crate) fn valid_room_id(room: &str) -> bool {
    (1..=64).contains(&room.len()) && room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// One room-path connection.
pub(crate) struct RoomPath {
    /// The room id from the URL (`None` if the path did not decode).
    pub(crate) room: Option<String>,
    /// The credential from the query or header.
    pub(crate) credential: Credential,
}

impl RoomPath {
    pub(crate) fn new(room: Option<String>, credential: Credential) -> Self {
        Self { room, credential }
    }

    fn room_id(&self) -> &str {
        self.room.as_deref().unwrap_or_default()
    }
}

/// A server message: `{type, payload, sender_id, room_id, timestamp}`.
fn message(kind: &str, payload: Value, sender: &str, room: Option<&str>) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind));
    m.insert("payload".into(), payload);
    m.insert("sender_id".into(), Value::from(sender));
    if let Some(r) = room {
        m.insert("room_id".into(), Value::from(r));
    }
    m.insert("timestamp".into(), Value::from(now_iso()));
    Value::Object(m)
}

/// An `error` message with `payload {code, message}`.
fn error_with_code(room: Option<&str>, code: &str, err: &CoreError) -> Option<Bytes> {
    count_error(err);
    to_bytes(&message(
        "error",
        json!({ "code": code, "message": err.message }),
        "server",
        room,
    ))
}

fn send_error(conn: &mut Conn, room: &str, err: &CoreError) {
    if let Some(b) = error_with_code(Some(room), code_name(err), err) {
        conn.reply(b);
    }
}

impl AsyncDialect for RoomPath {
    const LABEL: &'static str = "room_path";
    const TEXT: bool = true;

    async fn start(&mut self, conn: &mut Conn) -> Flow {
        let room = self.room_id().to_owned();
        if !valid_room_id(&room) {
            return Flow::Close(
                close::POLICY,
                "invalid room id: expected 1 to 64 characters of A-Z, a-z, 0-9 and '-'".into(),
            );
        }
        if self.credential.resume.token.is_some() {
            let ask = self.credential.resume.clone();
            let r = super::resume_session(conn, &ask, &[super::ROOM_PATH], |_, token, replayed| {
                to_bytes(&message(
                    "resumed",
                    json!({ "resume_token": token, "last_seq": ask.last_seq, "replayed": replayed }),
                    "server",
                    Some(&room),
                ))
            })
            .await;
            return match r {
                Ok(session) if session.in_room(&room) => Flow::Continue,
                Ok(_) => Flow::Close(
                    close::POLICY,
                    format!("resume failed: the session is not in room {room}"),
                ),
                Err(e) => {
                    send_error(conn, &room, &e);
                    Flow::Close(close::POLICY, format!("resume failed: {}", e.message))
                }
            };
        }
        let adm = match admission(&conn.state, &self.credential).await {
            Ok(a) => a,
            Err(e) => {
                conn.log_refused(&e);
                return Flow::Close(refusal_close(&e), e.message);
            }
        };
        let resumable = self.credential.resume.resumable;
        let session = match open_session(conn, &adm, super::ROOM_PATH, resumable).await {
            Ok(s) => s,
            Err(e) => {
                if conn.state.hub.is_shutting_down() {
                    return Flow::Close(close::GOING_AWAY, "server shutting down".into());
                }
                return Flow::Close(refusal_close(&e), e.message);
            }
        };
        let name = session.name().to_owned();
        let metadata = json!({ "display_name": name, "username": name });
        let hub = conn.state.hub.clone();
        let joined = match hub.enter_room(&session, &room, Some(metadata)).await {
            Ok(j) => j,
            Err(e) => {
                send_error(conn, &room, &e);
                let why = match e.kind {
                    ErrorKind::RoomFull => "room full".to_owned(),
                    _ => e.message.clone(),
                };
                return Flow::Close(refusal_close(&e), why);
            }
        };
        let mut participants: Vec<Value> = joined
            .participants
            .iter()
            .map(|p| json!({ "user_id": p.client_id.as_str(), "username": participant_name(p) }))
            .collect();
        participants.push(json!({ "user_id": session.client_id.as_str(), "username": name }));
        let count = participants.len();
        let state = message(
            "room_state",
            json!({ "room_id": room, "participants": participants, "participant_count": count }),
            "server",
            Some(&room),
        );
        if let Some(b) = to_bytes(&state) {
            conn.reply(b);
        }
        if let Some(sdp) = joined.media.offer_sdp.clone() {
            conn.sfu_offer = signal_core::ids::RoomId::parse(&room)
                .ok()
                .map(|r| Box::new((r, sdp)));
            conn.send_sfu_offer();
        }
        if let Some(token) = session.resume_token() {
            let window = conn.state.hub.resume_window().as_secs();
            let m = message(
                "session",
                json!({ "resume_token": token, "resume_window": window }),
                "server",
                Some(&room),
            );
            if let Some(b) = to_bytes(&m) {
                conn.reply(b);
            }
        }
        // The connection is the room: when the room ends under it (a binary sender left),
        // the client gets `error` ROOM_CLOSED and then a close 1000.
        session.close_with_room();
        Flow::Continue
    }

    async fn on_message(&mut self, conn: &mut Conn, msg: Message) -> Flow {
        let room = self.room_id().to_owned();
        let Some(session) = conn.session.clone() else {
            return Flow::Close(close::INTERNAL, "no session".into());
        };
        if !conn.within_rate() {
            let n = conn.state.config.security.max_messages_per_minute;
            let e = CoreError::new(
                ErrorKind::RateLimited,
                format!("Rate limit exceeded: at most {n} messages per minute"),
            );
            send_error(conn, &room, &e);
            return Flow::Continue;
        }
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                let e = CoreError::bad_request(
                    "Binary message on a room-path connection: send JSON text messages",
                );
                send_error(conn, &room, &e);
                return Flow::Continue;
            }
        };
        let value: Value = match super::parse(text.as_str()) {
            Ok(v) => v,
            Err(e) => {
                send_error(
                    conn,
                    &room,
                    &CoreError::bad_request(format!("Invalid JSON: {e}")),
                );
                return Flow::Continue;
            }
        };
        if let Err(e) = handle(conn, &session, &room, &value).await {
            send_error(conn, &room, &e);
        }
        Flow::Continue
    }

    fn close_error(&self, _conn: &Conn, err: &CoreError) -> Option<Bytes> {
        error_with_code(Some(self.room_id()), code_name(err), err)
    }

    fn encode_event(_format: Format, env: &Envelope) -> Option<Bytes> {
        encode_event(env)
    }
}

async fn handle(
    conn: &mut Conn,
    session: &Arc<Session>,
    room: &str,
    value: &Value,
) -> Result<(), CoreError> {
    let obj = value.as_object().ok_or_else(|| {
        CoreError::bad_request("Invalid message: expected a JSON object {type, payload}")
    })?;
    let t = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CoreError::bad_request("Missing or invalid 'type' field"))?;
    let kind = match t {
        "offer" => SignalKind::Offer,
        "answer" => SignalKind::Answer,
        "ice_candidate" => SignalKind::IceCandidate,
        "ping" | "heartbeat" => {
            if let Some(b) = to_bytes(&message("pong", json!({}), "server", Some(room))) {
                conn.reply(b);
            }
            return Ok(());
        }
        "refresh_token" => {
            let expires = super::refresh_token(conn, session, obj).await?;
            let m = message(
                "token_refreshed",
                json!({ "expires_at": expires }),
                "server",
                Some(room),
            );
            if let Some(b) = to_bytes(&m) {
                conn.reply(b);
            }
            return Ok(());
        }
        other => {
            return Err(CoreError::bad_request(format!(
                "Unknown message type '{other}': expected offer, answer, ice_candidate or refresh_token"
            )));
        }
    };
    let payload = obj.get("payload").filter(|p| !p.is_null());
    let target = match payload.and_then(|p| p.get("target_user_id")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(CoreError::bad_request(
                "Invalid 'payload.target_user_id': expected a string",
            ));
        }
    };
    if target.as_deref() == Some(session.client_id.as_str()) {
        return Err(CoreError::bad_request(
            "Invalid 'payload.target_user_id': that is yourself",
        ));
    }
    let body = body_from_payload(payload, kind)?;
    relay(conn, session, kind, target.as_deref(), room, body)
        .await
        .map_err(|e| match (&target, e.kind) {
            (Some(t), ErrorKind::PeerNotFound) => CoreError {
                message: format!("target user '{t}' is not in room '{room}'"),
                ..e
            },
            _ => e,
        })
}

/// Encodes a hub event for room-path connections.
pub fn encode_event(env: &Envelope) -> Option<Bytes> {
    let v = match &env.event {
        Event::PeerJoined {
            room,
            client,
            metadata,
            ..
        } => message(
            "user_joined",
            json!({ "user_id": client.as_str(), "username": name_in(metadata, client.as_str()) }),
            "server",
            Some(room.as_str()),
        ),
        Event::PeerLeft {
            room,
            client,
            reason,
        } => message(
            "user_left",
            json!({ "user_id": client.as_str(), "reason": reason }),
            "server",
            Some(room.as_str()),
        ),
        Event::PeerReconnecting {
            room,
            client,
            window,
        } => message(
            "user_reconnecting",
            json!({ "user_id": client.as_str(), "window": window }),
            "server",
            Some(room.as_str()),
        ),
        // Between nodes only.
        Event::MediaPublished { .. } => return None,
        Event::CredentialExpiring { expires_at } => message(
            "token_expiring",
            json!({
                "expires_at": crate::binary::codec::rfc3339(*expires_at),
                "seconds_left": crate::binary::codec::seconds_left(*expires_at),
            }),
            "server",
            None,
        ),
        Event::RoomClosed { room, reason } => message(
            "error",
            json!({ "code": "ROOM_CLOSED", "message": format!("Room closed: {reason}") }),
            "server",
            Some(room.as_str()),
        ),
        Event::Signal(s) => {
            let t = match s.kind {
                SignalKind::Offer => "offer",
                SignalKind::Answer => "answer",
                SignalKind::IceCandidate => "ice_candidate",
            };
            let mut p = payload_of(s);
            if let Some(target) = &s.target {
                p.insert("target_user_id".into(), Value::from(target.as_str()));
            }
            message(
                t,
                Value::Object(p),
                s.from.as_str(),
                s.room.as_ref().map(|r| r.as_str()),
            )
        }
    };
    to_bytes(&v)
}
