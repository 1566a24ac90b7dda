//! The JSON dialects: altair (seed 002) and simple (seed 003) on `/ws`, room-path
//! (seed 004) on `/webrtc/ws/{room_id}`. Each is a `Dialect` of the shared connection
//! driver; hub events reach them through their `encode_event`, one encoding per dialect
//! per event. See `docs/dialects.md`.
//!
//! Authentication is the same for all three: a token in `?token=` or an
//! `Authorization: Bearer` header (with `?client_id=` as a hint for a registered
//! client's token), identified by [`Authenticator::identify`]. Without a token a client
//! is admitted anonymously (under a server-assigned id) only when
//! `auth.allow_anonymous` is set.
//!
//! [`Authenticator::identify`]: signal_core::auth::Authenticator::identify

pub mod altair;
pub mod room_path;
pub mod simple;
pub(crate) mod translate;

use std::{collections::HashMap, net::SocketAddr, sync::Arc};

use axum::{
    extract::{
        ConnectInfo, Path, Query, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, header},
    response::Response,
};
use bytes::Bytes;
use serde_json::{Value, json};
use signal_core::{
    CoreError, ErrorKind,
    hub::{ConnectParams, Envelope, Format, FormatSpec, Session},
};
use tracing::Instrument;

use crate::{
    conn::{self, AsyncDialect, Conn, Flow, upgrade},
    state::AppState,
    ws::{Message, NotUpgrade, Upgrade, close},
};
use translate::refusal_close;

static ALTAIR_SPEC: FormatSpec = FormatSpec::new(2, "altair");
static SIMPLE_SPEC: FormatSpec = FormatSpec::new(3, "simple");
static ROOM_PATH_SPEC: FormatSpec = FormatSpec::new(4, "room_path");
/// Seed 002's JSON envelope on `/ws`.
pub const ALTAIR: Format = Format::of(&ALTAIR_SPEC);
/// Seed 003's JSON messages on `/ws`.
pub const SIMPLE: Format = Format::of(&SIMPLE_SPEC);
/// Seed 004's JSON messages on `/webrtc/ws/{room}`.
pub const ROOM_PATH: Format = Format::of(&ROOM_PATH_SPEC);

/// The credential a JSON client presented.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credential {
    /// `?token=`, else the `Authorization: Bearer` token.
    token: Option<String>,
    /// `?client_id=`: which registered client a bare token belongs to.
    client_id: Option<String>,
    /// `?resume=1`, or `?resume_token=…&last_seq=…`.
    pub(crate) resume: ResumeAsk,
}

/// What a JSON client asks of resume, from its query: a resumable session (`resume=1`),
/// or a session taken back (`resume_token`, `last_seq`).
#[derive(Debug, Clone, Default)]
pub(crate) struct ResumeAsk {
    pub(crate) resumable: bool,
    pub(crate) token: Option<String>,
    pub(crate) last_seq: u64,
    /// A query that does not parse: the connection is refused with it.
    pub(crate) invalid: Option<String>,
}

fn resume_ask(query: &HashMap<String, String>) -> ResumeAsk {
    let mut ask = ResumeAsk {
        resumable: matches!(query.get("resume").map(|s| s.trim()), Some("1" | "true")),
        token: query
            .get("resume_token")
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        ..ResumeAsk::default()
    };
    if ask.token.is_some() {
        match query.get("last_seq").map(|s| s.trim().parse::<u64>()) {
            Some(Ok(n)) => ask.last_seq = n,
            Some(Err(_)) => {
                ask.invalid = Some("last_seq must be a whole number of messages received".into())
            }
            None => ask.invalid = Some("resume_token needs last_seq".into()),
        }
    }
    ask
}

/// Takes back the session `ask.token` names for this connection: `ack` (the dialect's
/// `resumed` message, given the session, the new token and how many messages are sent
/// again) goes first and is not counted, then what the client missed.
pub(crate) async fn resume_session(
    conn: &mut Conn,
    ask: &ResumeAsk,
    formats: &'static [Format],
    ack: impl FnOnce(&Session, &str, u64) -> Option<Bytes>,
) -> Result<Arc<Session>, CoreError> {
    if let Some(why) = &ask.invalid {
        return Err(CoreError::bad_request(why.clone()));
    }
    let hub = conn.state.hub.clone();
    let mut resumed = hub
        .resume(signal_core::hub::ResumeParams {
            client_id: None,
            formats: Some(formats),
            token: ask.token.clone().unwrap_or_default(),
            last_seq: ask.last_seq,
            outbox: Some(conn.outbox.clone()),
        })
        .await?;
    hub.replay(&mut resumed, ask.last_seq, |session, token, replayed| {
        ack(session, token, replayed)
            .map(signal_core::hub::Outbound::Frame)
            .ok_or_else(CoreError::internal)
    })
    .await?;
    let session = resumed.session.clone();
    conn.adopt(resumed.session);
    Ok(session)
}

/// Parses a JSON dialect's message, refusing nesting past the decoders' limit before
/// `serde_json` recurses. The error reads as the message's fault.
pub(crate) fn parse(text: &str) -> Result<Value, String> {
    signal_protocol::depth::check_json(text.as_bytes()).map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| e.to_string())
}

fn credential(headers: &HeaderMap, query: &HashMap<String, String>) -> Credential {
    let nonempty = |s: &String| !s.trim().is_empty();
    let token = query
        .get("token")
        .filter(|s| nonempty(s))
        .map(|s| s.trim().to_owned())
        .or_else(|| {
            let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
            let (scheme, rest) = v.split_once(' ')?;
            let t = rest.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !t.is_empty()).then(|| t.to_owned())
        });
    let client_id = query
        .get("client_id")
        .filter(|s| nonempty(s))
        .map(|s| s.trim().to_owned());
    Credential {
        token,
        client_id,
        resume: resume_ask(query),
    }
}

/// Who a JSON client is, once its credential is checked.
pub(crate) enum Admission {
    /// An authenticated client.
    Client {
        client_id: String,
        token: String,
        name: Option<String>,
    },
    /// No credential, and the configuration allows anonymous access.
    Anonymous,
}

/// Checks a credential: identifies a token's client, or admits anonymously where allowed.
pub(crate) async fn admission(state: &AppState, c: &Credential) -> Result<Admission, CoreError> {
    match &c.token {
        None if state.config.auth.allow_anonymous => Ok(Admission::Anonymous),
        None => Err(CoreError::unauthorized(
            "Missing authentication token: pass ?token=... or an Authorization: Bearer header",
        )),
        Some(token) => {
            let id = state
                .hub
                .auth()
                .identify(token, c.client_id.as_deref())
                .await?;
            Ok(Admission::Client {
                client_id: id.client_id,
                token: token.clone(),
                name: id.name,
            })
        }
    }
}

/// A token refresh in a JSON dialect: the fresh credential in `payload.token` (or
/// `token`) must authenticate the connection's own client. The new expiry, as RFC 3339.
pub(crate) async fn refresh_token(
    conn: &mut Conn,
    session: &Arc<Session>,
    obj: &serde_json::Map<String, Value>,
) -> Result<Option<String>, CoreError> {
    let token = obj
        .get("payload")
        .and_then(|p| p.get("token"))
        .or_else(|| obj.get("token"))
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CoreError::bad_request("Missing 'payload.token': send the fresh credential")
        })?;
    let hub = conn.state.hub.clone();
    match hub.refresh_credential(session, token).await {
        Ok(e) => Ok(e.and_then(crate::binary::codec::rfc3339)),
        Err(e) => {
            conn.log_refused(&e);
            Err(e)
        }
    }
}

/// Opens the hub session of an admitted client with the connection's wire format.
pub(crate) async fn open_session(
    conn: &mut Conn,
    adm: &Admission,
    format: Format,
    resume: bool,
) -> Result<Arc<Session>, CoreError> {
    let (client_id, auth_token, display_name, anonymous) = match adm {
        Admission::Client {
            client_id,
            token,
            name,
        } => (client_id.clone(), token.clone(), name.clone(), false),
        Admission::Anonymous => (String::new(), String::new(), None, true),
    };
    conn.connect(ConnectParams {
        client_id,
        auth_token,
        version: None,
        format,
        capabilities: Vec::new(),
        metadata: json!({ "dialect": format.label() }),
        display_name,
        anonymous,
        resume,
    })
    .await
}

/// `GET /ws`: the altair and simple dialects, told apart by the first message.
pub(crate) async fn ws_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let cred = credential(&headers, &query);
    upgrade(
        state,
        peer,
        &headers,
        ws,
        "ws",
        "signal-manager: open a WebSocket here and speak the altair or simple JSON dialect (see docs/dialects.md)\n",
        move |socket, state, guard, peer| {
            let span = tracing::debug_span!("conn", dialect = "ws", %peer, client_id = tracing::field::Empty);
            conn::drive(socket, state, Ws::new(cred), guard, peer).instrument(span)
        },
    )
}

/// `GET /webrtc/ws/{room_id}`: the room-path dialect.
pub(crate) async fn room_path_endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    room_id: Result<Path<String>, PathRejection>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ws: Result<Upgrade, NotUpgrade>,
) -> Response {
    let room = room_id.ok().map(|Path(r)| r);
    let query = query.map(|Query(q)| q).unwrap_or_default();
    let cred = credential(&headers, &query);
    upgrade(
        state,
        peer,
        &headers,
        ws,
        "room_path",
        "signal-manager: open a WebSocket here with ?token=JWT and speak the room-path JSON dialect (see docs/dialects.md)\n",
        move |socket, state, guard, peer| {
            let span = tracing::debug_span!("conn", dialect = "room_path", %peer, client_id = tracing::field::Empty);
            conn::drive(
                socket,
                state,
                room_path::RoomPath::new(room, cred),
                guard,
                peer,
            )
            .instrument(span)
        },
    )
}

/// Which dialect a `/ws` connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Altair,
    Simple,
}

/// Tells the dialect from a message: an upper-case `type` is altair, a lower-case one
/// simple; without a telling `type`, `room_id`/`peer_id`/`target_id` mean altair and
/// `room`/`sender`/`recipient` simple.
pub(crate) fn detect(v: &Value) -> Option<Shape> {
    let obj = v.as_object()?;
    if let Some(t) = obj.get("type").and_then(Value::as_str) {
        let upper = t.bytes().any(|b| b.is_ascii_uppercase());
        let lower = t.bytes().any(|b| b.is_ascii_lowercase());
        match (upper, lower) {
            (true, false) => return Some(Shape::Altair),
            (false, true) => return Some(Shape::Simple),
            _ => {}
        }
    }
    if ["room_id", "peer_id", "target_id"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        Some(Shape::Altair)
    } else if ["room", "sender", "recipient"]
        .iter()
        .any(|k| obj.contains_key(*k))
    {
        Some(Shape::Simple)
    } else {
        None
    }
}

/// A `/ws` connection: the credential is checked when the socket opens, the session is
/// opened at the first message, whose shape fixes the dialect.
struct Ws {
    credential: Credential,
    admission: Option<Result<Admission, CoreError>>,
    shape: Option<Shape>,
    anonymous: bool,
}

impl Ws {
    fn new(credential: Credential) -> Self {
        Self {
            credential,
            admission: None,
            shape: None,
            anonymous: false,
        }
    }

    /// An error in the connection's shape (altair's before the shape is known).
    fn error(&self, conn: &Conn, shape: Option<Shape>, err: &CoreError) -> Option<Bytes> {
        match shape.or(self.shape) {
            Some(Shape::Simple) => simple::error_message(None, err),
            _ => altair::error_message(
                conn.session.as_ref().map(|s| s.client_id.as_str()),
                None,
                err,
            ),
        }
    }

    fn send_error(&self, conn: &mut Conn, shape: Option<Shape>, err: &CoreError) {
        if let Some(b) = self.error(conn, shape, err) {
            conn.reply(b);
        }
    }

    /// Opens the session in `shape` at the first message; a refusal closes the socket.
    async fn open(&mut self, conn: &mut Conn, shape: Shape) -> Result<(), Flow> {
        let adm = match self.admission.take() {
            Some(Ok(a)) => a,
            Some(Err(e)) => {
                self.send_error(conn, Some(shape), &e);
                return Err(Flow::Close(refusal_close(&e), e.message));
            }
            None => {
                let e = CoreError::internal();
                self.send_error(conn, Some(shape), &e);
                return Err(Flow::Close(close::INTERNAL, "internal error".into()));
            }
        };
        let format = match shape {
            Shape::Altair => ALTAIR,
            Shape::Simple => SIMPLE,
        };
        match open_session(conn, &adm, format, self.credential.resume.resumable).await {
            Ok(session) => {
                self.shape = Some(shape);
                self.anonymous = matches!(adm, Admission::Anonymous);
                if let Some(token) = session.resume_token() {
                    let window = conn.state.hub.resume_window().as_secs();
                    let m = match shape {
                        Shape::Altair => altair::session_message(&session, &token, window),
                        Shape::Simple => simple::session_message(&token, window),
                    };
                    if let Some(b) = m {
                        conn.reply(b);
                    }
                }
                Ok(())
            }
            Err(e) => {
                self.send_error(conn, Some(shape), &e);
                let code = if conn.state.hub.is_shutting_down() {
                    close::GOING_AWAY
                } else {
                    refusal_close(&e)
                };
                Err(Flow::Close(code, e.message))
            }
        }
    }
}

impl AsyncDialect for Ws {
    const LABEL: &'static str = "ws";
    const TEXT: bool = true;

    async fn start(&mut self, conn: &mut Conn) -> Flow {
        if self.credential.resume.token.is_some() {
            let ask = self.credential.resume.clone();
            let r = resume_session(conn, &ask, &[ALTAIR, SIMPLE], |s, token, replayed| {
                if s.format() == Some(SIMPLE) {
                    simple::resumed_message(token, ask.last_seq, replayed)
                } else {
                    altair::resumed_message(s, token, ask.last_seq, replayed)
                }
            })
            .await;
            return match r {
                Ok(session) => {
                    self.shape = Some(if session.format() == Some(SIMPLE) {
                        Shape::Simple
                    } else {
                        Shape::Altair
                    });
                    self.anonymous = session.client_id.as_str().starts_with("anon-");
                    Flow::Continue
                }
                Err(e) => {
                    self.send_error(conn, None, &e);
                    Flow::Close(close::POLICY, format!("resume failed: {}", e.message))
                }
            };
        }
        let adm = admission(&conn.state, &self.credential).await;
        if let Err(e) = &adm {
            conn.log_refused(e);
        }
        self.admission = Some(adm);
        Flow::Continue
    }

    async fn on_message(&mut self, conn: &mut Conn, msg: Message) -> Flow {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                let e = CoreError::bad_request(
                    "Binary message on /ws: send JSON text messages (the binary protocol is served on /)",
                );
                self.send_error(conn, None, &e);
                return Flow::Continue;
            }
        };
        let parsed = parse(text.as_str());
        let shape = match self.shape {
            Some(s) => s,
            None => {
                let detected = parsed.as_ref().ok().and_then(detect);
                if let Some(Err(e)) = &self.admission {
                    let e = e.clone();
                    self.send_error(conn, detected, &e);
                    return Flow::Close(refusal_close(&e), e.message);
                }
                let Some(shape) = detected else {
                    let why = match &parsed {
                        Err(e) => format!("Invalid JSON: {e}"),
                        Ok(_) => "Cannot tell the dialect: send a JSON object with an upper-case 'type' and 'room_id' (altair) or a lower-case 'type' and 'room' (simple)".to_owned(),
                    };
                    self.send_error(conn, None, &CoreError::bad_request(why));
                    return Flow::Continue;
                };
                if let Err(flow) = self.open(conn, shape).await {
                    return flow;
                }
                shape
            }
        };
        let keep_alive = shape == Shape::Altair && parsed.as_ref().is_ok_and(altair::is_keep_alive);
        if !keep_alive && !conn.within_rate() {
            let n = conn.state.config.security.max_messages_per_minute;
            let e = CoreError::new(
                ErrorKind::RateLimited,
                format!("Rate limit exceeded: at most {n} messages per minute"),
            );
            self.send_error(conn, Some(shape), &e);
            return Flow::Continue;
        }
        let value = match parsed {
            Ok(v) => v,
            Err(e) => {
                self.send_error(
                    conn,
                    Some(shape),
                    &CoreError::bad_request(format!("Invalid JSON: {e}")),
                );
                return Flow::Continue;
            }
        };
        match shape {
            Shape::Altair => altair::handle(conn, &value).await,
            Shape::Simple => simple::handle(conn, &value, self.anonymous).await,
        }
    }

    fn close_error(&self, conn: &Conn, err: &CoreError) -> Option<Bytes> {
        self.error(conn, None, err)
    }

    fn encode_event(format: Format, env: &Envelope) -> Option<Bytes> {
        if format == SIMPLE {
            simple::encode_event(env)
        } else {
            altair::encode_event(env)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn the_first_message_tells_the_dialect() {
        assert_eq!(
            detect(&json!({"type": "JOIN", "room_id": "r"})),
            Some(Shape::Altair)
        );
        assert_eq!(detect(&json!({"type": "KEEP_ALIVE"})), Some(Shape::Altair));
        assert_eq!(
            detect(&json!({"type": "join", "room": "r", "sender": "a"})),
            Some(Shape::Simple)
        );
        assert_eq!(
            detect(&json!({"type": "Join", "room": "r"})),
            Some(Shape::Simple)
        );
        assert_eq!(
            detect(&json!({"type": "Join", "room_id": "r"})),
            Some(Shape::Altair)
        );
        assert_eq!(detect(&json!({"hello": 1})), None);
        assert_eq!(detect(&json!([1, 2])), None);
    }

    #[test]
    fn tokens_come_from_the_query_or_a_bearer_header() {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        let q = HashMap::new();
        assert_eq!(credential(&h, &q).token.as_deref(), Some("abc"));
        let q = HashMap::from([("token".to_owned(), "xyz".to_owned())]);
        assert_eq!(credential(&h, &q).token.as_deref(), Some("xyz"));
        assert_eq!(credential(&HeaderMap::new(), &HashMap::new()).token, None);
    }
}
