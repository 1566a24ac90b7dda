//! The altair dialect (seed 002) on `/ws`: the envelope `{type, peer_id, target_id,
//! room_id, payload, timestamp, request_id}` with upper-case types. `JOIN` → `ACK` with
//! the other peers, `LEAVE` → `ACK`, `DISCOVER` → `PEER_LIST`, `OFFER`/`ANSWER`/
//! `CANDIDATE` forwarded to `target_id`, `KEEP_ALIVE` → `ACK`; the rest of a room hears
//! `PEER_JOINED` / `PEER_LEFT`. A peer is in at most one room. Every server message has a
//! `payload` object and a millisecond `timestamp`; `request_id` is echoed on answers.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value, json};
use signal_core::{
    CoreError, ErrorKind, RoomId,
    hub::{Envelope, Event, ParticipantInfo, Session, SignalKind},
};

use super::translate::{
    Fail, body_from_payload, code_name, count_error, details_text, join_metadata, name_in, now_ms,
    participant_name, payload_of, relay, str_field, to_bytes,
};
use crate::conn::{Conn, Flow};

/// Whether a parsed message is a `KEEP_ALIVE` (exempt from the rate limit).
pub(crate) fn is_keep_alive(msg: &Value) -> bool {
    msg.get("type").and_then(Value::as_str) == Some("KEEP_ALIVE")
}

/// An `ERROR` message: `payload {code, message, details}` (details as seed 002's string).
pub(crate) fn error_message(
    peer_id: Option<&str>,
    request_id: Option<&Value>,
    err: &CoreError,
) -> Option<Bytes> {
    error_with_code(peer_id, request_id, code_name(err), err)
}

fn error_with_code(
    peer_id: Option<&str>,
    request_id: Option<&Value>,
    code: &str,
    err: &CoreError,
) -> Option<Bytes> {
    count_error(err);
    let mut m = Map::new();
    m.insert("type".into(), Value::from("ERROR"));
    if let Some(p) = peer_id {
        m.insert("peer_id".into(), Value::from(p));
    }
    m.insert(
        "payload".into(),
        json!({ "code": code, "message": err.message, "details": details_text(err) }),
    );
    m.insert("timestamp".into(), Value::from(now_ms()));
    if let Some(r) = request_id {
        m.insert("request_id".into(), r.clone());
    }
    to_bytes(&Value::Object(m))
}

/// Handles one parsed message of an altair connection (the session is open).
pub(crate) async fn handle(conn: &mut Conn, msg: &Value) -> Flow {
    let request_id = msg.get("request_id").filter(|v| !v.is_null()).cloned();
    let Some(session) = conn.session.clone() else {
        return Flow::Continue;
    };
    let result = match msg.as_object() {
        Some(obj) => dispatch(conn, &session, obj).await,
        None => Err(Fail::invalid(
            "Invalid message: expected a JSON object {type, room_id, target_id, payload, request_id}",
        )),
    };
    match result {
        Ok(Some(mut reply)) => {
            if let (Some(r), Some(m)) = (request_id, reply.as_object_mut()) {
                m.insert("request_id".into(), r);
            }
            if let Some(b) = to_bytes(&reply) {
                conn.reply(b);
            }
            conn.send_sfu_offer();
        }
        Ok(None) => {}
        Err(f) => {
            if let Some(b) = error_with_code(
                Some(session.client_id.as_str()),
                request_id.as_ref(),
                f.code(),
                &f.err,
            ) {
                conn.reply(b);
            }
        }
    }
    Flow::Continue
}

async fn dispatch(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
) -> Result<Option<Value>, Fail> {
    let t = match obj.get("type") {
        Some(Value::String(t)) => t.as_str(),
        _ => return Err(Fail::invalid("Missing or invalid 'type' field")),
    };
    if let Some(p) = str_field(obj, "peer_id")?
        && p != session.client_id.as_str()
    {
        return Err(Fail::new(
            ErrorKind::Forbidden,
            format!(
                "peer_id '{p}' is not the peer authenticated on this connection ('{}')",
                session.client_id
            ),
        ));
    }
    match t {
        "JOIN" => join(conn, session, obj).await.map(Some),
        "LEAVE" => leave(conn, session, obj).await.map(Some),
        "DISCOVER" => discover(conn, session, obj).await.map(Some),
        "OFFER" => signal(conn, session, obj, SignalKind::Offer, t).await,
        "ANSWER" => signal(conn, session, obj, SignalKind::Answer, t).await,
        "CANDIDATE" => signal(conn, session, obj, SignalKind::IceCandidate, t).await,
        "REFRESH_TOKEN" => {
            let expires = super::refresh_token(conn, session, obj)
                .await
                .map_err(Fail::from)?;
            Ok(Some(reply(
                "TOKEN_REFRESHED",
                session,
                current_room(session).as_ref().map(RoomId::as_str),
                json!({ "expires_at": expires }),
            )))
        }
        "KEEP_ALIVE" => Ok(Some(reply(
            "ACK",
            session,
            current_room(session).as_ref().map(RoomId::as_str),
            json!({}),
        ))),
        other => Err(Fail::invalid(format!(
            "Unknown message type '{other}': this connection speaks the altair dialect \
             (JOIN, LEAVE, DISCOVER, OFFER, ANSWER, CANDIDATE, KEEP_ALIVE, REFRESH_TOKEN)"
        ))),
    }
}

/// A server message to this peer.
fn reply(kind: &str, session: &Session, room: Option<&str>, payload: Value) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::from(kind));
    m.insert("peer_id".into(), Value::from(session.client_id.as_str()));
    if let Some(r) = room {
        m.insert("room_id".into(), Value::from(r));
    }
    m.insert("payload".into(), payload);
    m.insert("timestamp".into(), Value::from(now_ms()));
    Value::Object(m)
}

/// The one room an altair peer is in, if any.
fn current_room(session: &Session) -> Option<RoomId> {
    session.rooms().into_iter().next()
}

fn peer_info(p: &ParticipantInfo) -> Value {
    let mut m = Map::new();
    m.insert("peer_id".into(), Value::from(p.client_id.as_str()));
    m.insert("display_name".into(), Value::from(participant_name(p)));
    if let Some(e) = p.metadata.get("endpoint").filter(|e| !e.is_null()) {
        m.insert("endpoint".into(), e.clone());
    }
    m.insert(
        "joined_at".into(),
        Value::from(p.joined_at.timestamp_millis()),
    );
    Value::Object(m)
}

async fn join(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
) -> Result<Value, Fail> {
    let room =
        str_field(obj, "room_id")?.ok_or_else(|| Fail::invalid("JOIN requires 'room_id'"))?;
    let room = RoomId::parse(room)?;
    let before = session.rooms();
    if before.contains(&room) {
        return Err(Fail::from(
            CoreError::new(
                ErrorKind::AlreadyInRoom,
                format!("Already in room '{room}'"),
            )
            .with("room_id", room.as_str()),
        ));
    }
    let metadata = join_metadata(obj.get("payload"), session.name());
    let hub = conn.state.hub.clone();
    let joined = hub
        .enter_room(session, room.as_str(), Some(metadata))
        .await?;
    conn.sfu_offer = joined
        .media
        .offer_sdp
        .clone()
        .map(|sdp| Box::new((room.clone(), sdp)));
    // A peer is in at most one room: joining another leaves the first.
    for old in before {
        if let Err(e) = hub.exit_room(session, old.as_str(), "left").await {
            tracing::debug!(room_id = %old, error = %e.message, "leaving the previous room");
        }
    }
    let peers: Vec<Value> = joined.participants.iter().map(peer_info).collect();
    Ok(reply(
        "ACK",
        session,
        Some(room.as_str()),
        json!({ "peers": peers, "room_id": room.as_str(), "peer_id": session.client_id.as_str() }),
    ))
}

async fn leave(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
) -> Result<Value, Fail> {
    let current = current_room(session).ok_or_else(|| Fail::not_in_room("LEAVE: not in a room"))?;
    if let Some(r) = str_field(obj, "room_id")?
        && r != current.as_str()
    {
        return Err(Fail::not_in_room(format!(
            "LEAVE: not in room '{r}' (in '{current}')"
        )));
    }
    conn.state
        .hub
        .exit_room(session, current.as_str(), "left")
        .await?;
    Ok(reply(
        "ACK",
        session,
        Some(current.as_str()),
        json!({ "room_id": current.as_str() }),
    ))
}

async fn discover(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
) -> Result<Value, Fail> {
    let room = match str_field(obj, "room_id")? {
        Some(r) => RoomId::parse(r)?,
        None => current_room(session).ok_or_else(|| {
            Fail::not_in_room("DISCOVER without 'room_id' requires being in a room")
        })?,
    };
    let info = conn
        .state
        .hub
        .cluster_room(room.as_str())
        .await
        .ok_or_else(|| {
            Fail::from(
                CoreError::new(ErrorKind::RoomNotFound, format!("Room '{room}' not found"))
                    .with("room_id", room.as_str()),
            )
        })?;
    let peers: Vec<Value> = info
        .participants
        .iter()
        .filter(|p| p.client_id != session.client_id)
        .map(peer_info)
        .collect();
    Ok(reply(
        "PEER_LIST",
        session,
        Some(room.as_str()),
        json!({ "peers": peers, "room_id": room.as_str() }),
    ))
}

async fn signal(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &Map<String, Value>,
    kind: SignalKind,
    t: &str,
) -> Result<Option<Value>, Fail> {
    let target = str_field(obj, "target_id")?
        .ok_or_else(|| Fail::invalid(format!("{t} requires 'target_id'")))?;
    let payload = obj
        .get("payload")
        .filter(|p| !p.is_null())
        .ok_or_else(|| Fail::invalid(format!("{t} requires 'payload'")))?;
    let room = match str_field(obj, "room_id")? {
        Some(r) => RoomId::parse(r)?,
        None => current_room(session)
            .ok_or_else(|| Fail::not_in_room(format!("{t}: not in a room (JOIN one first)")))?,
    };
    if target == session.client_id.as_str() {
        return Err(Fail::invalid(format!("{t}: target_id is yourself")));
    }
    let body = body_from_payload(Some(payload), kind)?;
    relay(conn, session, kind, Some(target), room.as_str(), body)
        .await
        .map_err(|e| {
            if e.kind == ErrorKind::PeerNotFound {
                Fail::from(CoreError {
                    message: format!("target peer '{target}' not found"),
                    details: Map::from_iter([("peer_id".to_owned(), Value::from(target))]),
                    ..e
                })
            } else {
                Fail::from(e)
            }
        })?;
    Ok(None)
}

/// `SESSION`, extension: to a client that connected with `?resume=1`, the token that
/// takes its session back.
pub(crate) fn session_message(session: &Session, token: &str, window: u64) -> Option<Bytes> {
    to_bytes(&json!({
        "type": "SESSION",
        "peer_id": session.client_id.as_str(),
        "payload": { "resume_token": token, "resume_window": window },
        "timestamp": now_ms(),
    }))
}

/// `RESUMED`, extension: the session is back; `replayed` messages sent again follow.
pub(crate) fn resumed_message(
    session: &Session,
    token: &str,
    last_seq: u64,
    replayed: u64,
) -> Option<Bytes> {
    to_bytes(&json!({
        "type": "RESUMED",
        "peer_id": session.client_id.as_str(),
        "payload": { "resume_token": token, "last_seq": last_seq, "replayed": replayed },
        "timestamp": now_ms(),
    }))
}

/// Encodes a hub event for altair connections.
pub fn encode_event(env: &Envelope) -> Option<Bytes> {
    let now = now_ms();
    let v = match &env.event {
        Event::PeerJoined {
            room,
            client,
            metadata,
            ..
        } => {
            let mut info = Map::new();
            info.insert("peer_id".into(), Value::from(client.as_str()));
            info.insert(
                "display_name".into(),
                Value::from(name_in(metadata, client.as_str())),
            );
            if let Some(e) = metadata.get("endpoint").filter(|e| !e.is_null()) {
                info.insert("endpoint".into(), e.clone());
            }
            info.insert("joined_at".into(), Value::from(now));
            json!({
                "type": "PEER_JOINED",
                "peer_id": client.as_str(),
                "room_id": room.as_str(),
                "payload": info,
                "timestamp": now,
            })
        }
        Event::PeerLeft {
            room,
            client,
            reason,
        } => json!({
            "type": "PEER_LEFT",
            "peer_id": client.as_str(),
            "room_id": room.as_str(),
            "payload": { "peer_id": client.as_str(), "reason": reason },
            "timestamp": now,
        }),
        Event::PeerReconnecting {
            room,
            client,
            window,
        } => json!({
            "type": "PEER_RECONNECTING",
            "peer_id": client.as_str(),
            "room_id": room.as_str(),
            "payload": { "peer_id": client.as_str(), "window": window },
            "timestamp": now,
        }),
        // Between nodes only.
        Event::MediaPublished { .. } => return None,
        Event::CredentialExpiring { expires_at } => json!({
            "type": "TOKEN_EXPIRING",
            "payload": {
                "expires_at": crate::binary::codec::rfc3339(*expires_at),
                "seconds_left": crate::binary::codec::seconds_left(*expires_at),
            },
            "timestamp": now,
        }),
        Event::RoomClosed { room, reason } => json!({
            "type": "ROOM_CLOSED",
            "room_id": room.as_str(),
            "payload": { "room_id": room.as_str(), "reason": reason },
            "timestamp": now,
        }),
        Event::Signal(s) => {
            let t = match s.kind {
                SignalKind::Offer => "OFFER",
                SignalKind::Answer => "ANSWER",
                SignalKind::IceCandidate => "CANDIDATE",
            };
            let mut m = Map::new();
            m.insert("type".into(), Value::from(t));
            m.insert("peer_id".into(), Value::from(s.from.as_str()));
            if let Some(target) = &s.target {
                m.insert("target_id".into(), Value::from(target.as_str()));
            }
            if let Some(room) = &s.room {
                m.insert("room_id".into(), Value::from(room.as_str()));
            }
            m.insert("payload".into(), Value::Object(payload_of(s)));
            m.insert("timestamp".into(), Value::from(now));
            Value::Object(m)
        }
    };
    to_bytes(&v)
}
