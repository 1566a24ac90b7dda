//! The simple dialect (seed 003) on `/ws`: `{type: join|leave|offer|answer|candidate,
//! room, sender, recipient?, payload?}` with lower-case types. Joins and leaves are
//! announced to the rest of the room in the same shape; a signal with `recipient` goes to
//! that peer, without it to the rest of the room, always with `sender` = the true sender.
//! The server confirms a `join` with `joined` (the other members) and a `leave` with
//! `left`; errors are `{type:"error", room?, payload:{code, message}}`.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use signal_core::{
    CoreError, ErrorKind, RoomId,
    hub::{Envelope, Event, Session, SignalKind},
};

use super::translate::{
    Fail, body_from_payload, code_name, count_error, join_metadata, name_in, payload_of, relay,
    str_field, to_bytes,
};
use crate::conn::{Conn, Flow};

/// An `error` message.
pub(crate) fn error_message(room: Option<&str>, err: &CoreError) -> Option<Bytes> {
    error_with_code(room, code_name(err), err)
}

fn error_with_code(room: Option<&str>, code: &str, err: &CoreError) -> Option<Bytes> {
    count_error(err);
    let mut m = Map::new();
    m.insert("type".into(), Value::from("error"));
    if let Some(r) = room {
        m.insert("room".into(), Value::from(r));
    }
    m.insert(
        "payload".into(),
        json!({ "code": code, "message": err.message }),
    );
    to_bytes(&Value::Object(m))
}

/// Handles one parsed message of a simple connection (the session is open).
pub(crate) async fn handle(conn: &mut Conn, msg: &Value, anonymous: bool) -> Flow {
    let Some(session) = conn.session.clone() else {
        return Flow::Continue;
    };
    let room = msg.get("room").and_then(Value::as_str).map(str::to_owned);
    let result = match msg.as_object() {
        Some(obj) => dispatch(conn, &session, obj, anonymous).await,
        None => Err(Fail::invalid(
            "Invalid message: expected a JSON object {type, room, sender, recipient?, payload?}",
        )),
    };
    match result {
        Ok(Some(reply)) => {
            if let Some(b) = to_bytes(&reply) {
                conn.reply(b);
            }
            conn.send_sfu_offer();
        }
        Ok(None) => {}
        Err(f) => {
            if let Some(b) = error_with_code(room.as_deref(), f.code(), &f.err) {
                conn.reply(b);
            }
        }
    }
    Flow::Continue
}

fn parse_room(r: &str) -> Result<RoomId, Fail> {
    RoomId::parse(r).map_err(|_| {
        Fail::invalid(format!(
            "Invalid 'room' field '{r}': expected 1 to 128 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'"
        ))
    })
}

/// The message's room, or the one room the sender is in.
fn room_of(session: &Session, obj: &Map<String, Value>, t: &str) -> Result<RoomId, Fail> {
    if let Some(r) = str_field(obj, "room")? {
        return parse_room(r);
    }
    let rooms = session.rooms();
    match rooms.as_slice() {
        [only] => Ok(only.clone()),
        [] => Err(Fail::not_in_room(format!(
            "{t}: not in a room (send a join first)"
        ))),
        _ => Err(Fail::invalid(format!(
            "{t} requires 'room': this connection is in several rooms"
        ))),
    }
}

async fn dispatch(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
    anonymous: bool,
) -> Result<Option<Value>, Fail> {
    let t = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(Fail::invalid("Missing or invalid 'type' field")),
    };
    // `sender` is the authenticated id; an anonymous client cannot know its
    // server-assigned id before its first `joined`, so its `sender` is not checked.
    if let Some(s) = str_field(obj, "sender")?
        && !anonymous
        && s != session.client_id.as_str()
    {
        return Err(Fail::new(
            ErrorKind::Forbidden,
            format!(
                "sender '{s}' is not the client authenticated on this connection ('{}')",
                session.client_id
            ),
        ));
    }
    match t {
        "join" => join(conn, session, obj).await.map(Some),
        "leave" => leave(conn, session, obj).await.map(Some),
        "offer" => signal(conn, session, obj, SignalKind::Offer, t).await,
        "answer" => signal(conn, session, obj, SignalKind::Answer, t).await,
        "candidate" => signal(conn, session, obj, SignalKind::IceCandidate, t).await,
        "refresh_token" => {
            let expires = super::refresh_token(conn, session, obj)
                .await
                .map_err(Fail::from)?;
            Ok(Some(json!({
                "type": "token_refreshed",
                "payload": { "expires_at": expires },
            })))
        }
        other => Err(Fail::invalid(format!(
            "Unknown message type '{other}': this connection speaks the simple dialect \
             (join, leave, offer, answer, candidate, refresh_token)"
        ))),
    }
}

async fn join(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
) -> Result<Value, Fail> {
    let room = str_field(obj, "room")?.ok_or_else(|| Fail::invalid("join requires 'room'"))?;
    let room = parse_room(room)?;
    if session.in_room(room.as_str()) {
        return Err(Fail::from(
            CoreError::new(
                ErrorKind::AlreadyInRoom,
                format!("Already in room '{room}'"),
            )
            .with("room_id", room.as_str()),
        ));
    }
    let metadata = join_metadata(obj.get("payload"), session.name());
    let joined = conn
        .state
        .hub
        .enter_room(session, room.as_str(), Some(metadata))
        .await?;
    conn.sfu_offer = joined
        .media
        .offer_sdp
        .clone()
        .map(|sdp| Box::new((room.clone(), sdp)));
    let peers: Vec<Value> = joined
        .participants
        .iter()
        .map(|p| Value::from(p.client_id.as_str()))
        .collect();
    Ok(json!({
        "type": "joined",
        "room": room.as_str(),
        "recipient": session.client_id.as_str(),
        "payload": { "client_id": session.client_id.as_str(), "peers": peers },
    }))
}

async fn leave(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
) -> Result<Value, Fail> {
    let room = room_of(session, obj, "leave")?;
    if !session.in_room(room.as_str()) {
        return Err(Fail::from(
            CoreError::new(ErrorKind::NotMember, format!("leave: not in room '{room}'"))
                .with("room_id", room.as_str()),
        ));
    }
    conn.state
        .hub
        .exit_room(session, room.as_str(), "left")
        .await?;
    Ok(json!({
        "type": "left",
        "room": room.as_str(),
        "recipient": session.client_id.as_str(),
    }))
}

async fn signal(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
    kind: SignalKind,
    t: &str,
) -> Result<Option<Value>, Fail> {
    let room = room_of(session, obj, t)?;
    if !session.in_room(room.as_str()) {
        return Err(Fail::from(
            CoreError::new(
                ErrorKind::NotMember,
                format!("{t}: not in room '{room}' (send a join first)"),
            )
            .with("room_id", room.as_str()),
        ));
    }
    let recipient = str_field(obj, "recipient")?;
    if recipient == Some(session.client_id.as_str()) {
        return Err(Fail::invalid(format!("{t}: recipient is yourself")));
    }
    let body = body_from_payload(obj.get("payload"), kind)?;
    relay(conn, session, kind, recipient, room.as_str(), body)
        .await
        .map_err(|e| {
            if let Some(r) = recipient
                && e.kind == ErrorKind::PeerNotFound
            {
                Fail::from(CoreError {
                    message: format!("recipient '{r}' not found in room '{room}'"),
                    ..e
                })
            } else {
                Fail::from(e)
            }
        })?;
    Ok(None)
}

/// `session`, extension: to a client that connected with `?resume=1`, the token that
/// takes its session back.
pub(crate) fn session_message(token: &str, window: u64) -> Option<Bytes> {
    to_bytes(&json!({
        "type": "session",
        "payload": { "resume_token": token, "resume_window": window },
    }))
}

/// `resumed`, extension: the session is back; `replayed` messages sent again follow.
pub(crate) fn resumed_message(token: &str, last_seq: u64, replayed: u64) -> Option<Bytes> {
    to_bytes(&json!({
        "type": "resumed",
        "payload": { "resume_token": token, "last_seq": last_seq, "replayed": replayed },
    }))
}

/// Encodes a hub event for simple connections.
pub fn encode_event(env: &Envelope) -> Option<Bytes> {
    let v = match &env.event {
        Event::PeerJoined {
            room,
            client,
            metadata,
            ..
        } => json!({
            "type": "join",
            "room": room.as_str(),
            "sender": client.as_str(),
            "payload": { "display_name": name_in(metadata, client.as_str()) },
        }),
        Event::PeerLeft { room, client, .. } => json!({
            "type": "leave",
            "room": room.as_str(),
            "sender": client.as_str(),
        }),
        Event::PeerReconnecting {
            room,
            client,
            window,
        } => json!({
            "type": "reconnecting",
            "room": room.as_str(),
            "sender": client.as_str(),
            "payload": { "window": window },
        }),
        // Between nodes only.
        Event::MediaPublished { .. } => return None,
        Event::CredentialExpiring { expires_at } => json!({
            "type": "token_expiring",
            "payload": {
                "expires_at": crate::binary::codec::rfc3339(*expires_at),
                "seconds_left": crate::binary::codec::seconds_left(*expires_at),
            },
        }),
        Event::RoomClosed { room, reason } => json!({
            "type": "room_closed",
            "room": room.as_str(),
            "payload": { "reason": reason },
        }),
        Event::Signal(s) => {
            let t = match s.kind {
                SignalKind::Offer => "offer",
                SignalKind::Answer => "answer",
                SignalKind::IceCandidate => "candidate",
            };
            let mut m = Map::new();
            m.insert("type".into(), Value::from(t));
            if let Some(room) = &s.room {
                m.insert("room".into(), Value::from(room.as_str()));
            }
            m.insert("sender".into(), Value::from(s.from.as_str()));
            if let Some(target) = &s.target {
                m.insert("recipient".into(), Value::from(target.as_str()));
            }
            m.insert("payload".into(), Value::Object(payload_of(s)));
            Value::Object(m)
        }
    };
    to_bytes(&v)
}
