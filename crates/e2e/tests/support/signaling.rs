//! Signaling transports: one per dialect, all behind [`Dialect`], wrapped by [`Transport`].
//!
//! A transport is one client connection to the server, already in its room. It sends an
//! offer, answer or ICE candidate to a named peer, and hands back the signals addressed
//! to it together with the sender the server stamped on them. Everything else the server
//! sends (acks, member lists, pongs) is skipped; an error message from the server ends
//! the exchange with that error, so a test fails with the server's own words rather than
//! a timeout.

use std::collections::VecDeque;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use signal_client::{
    Client,
    protocol::{
        MessageType,
        payload::{ErrorPayload, PeerJoined, SignalPayload},
    },
};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

use super::server::{TestServer, jwt, token};

/// What goes wrong in signaling: a readable description.
pub type Error = String;
/// Result of a signaling step.
pub type Result<T> = std::result::Result<T, Error>;

/// An ICE candidate as it travels through signaling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The candidate line (`candidate:…`).
    pub candidate: String,
    /// The media stream id, when known.
    pub sdp_mid: Option<String>,
    /// The m-line index, when known.
    pub sdp_m_line_index: Option<u16>,
}

/// One signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// An SDP offer.
    Offer(String),
    /// An SDP answer.
    Answer(String),
    /// A trickled ICE candidate.
    Candidate(Candidate),
}

impl Signal {
    fn kind(&self) -> &'static str {
        match self {
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::Candidate(_) => "candidate",
        }
    }
}

/// A signal addressed to this client, with the sender the server stamped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    /// Who sent it, as stamped by the server.
    pub from: String,
    /// The signal.
    pub signal: Signal,
}

/// What a dialect client got from the server, as far as these tests care.
#[derive(Debug)]
pub enum Event {
    /// Another peer joined the room.
    Joined(String),
    /// A signal for this client.
    Signal(Incoming),
    /// Anything else (acks, member lists, pongs…).
    Other,
}

/// One dialect's client connection, already in its room.
#[async_trait::async_trait]
pub trait Dialect: Send {
    /// The client's id, as the server knows it.
    fn id(&self) -> &str;
    /// Sends `signal` to peer `to`.
    async fn send(&mut self, to: &str, signal: &Signal) -> Result<()>;
    /// The next thing the server sent. Must be cancel-safe: it is raced against local
    /// ICE candidates.
    async fn next_event(&mut self) -> Result<Event>;
}

/// A dialect connection plus the signals that arrived while waiting for something else.
pub struct Transport {
    name: &'static str,
    inner: Box<dyn Dialect>,
    pending: VecDeque<Incoming>,
}

impl Transport {
    fn new(name: &'static str, inner: impl Dialect + 'static) -> Self {
        Self {
            name,
            inner: Box::new(inner),
            pending: VecDeque::new(),
        }
    }

    /// `binary`, `altair`, `simple` or `room-path`.
    pub fn dialect(&self) -> &'static str {
        self.name
    }

    /// The client's id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// Sends `signal` to `to`.
    pub async fn send(&mut self, to: &str, signal: &Signal) -> Result<()> {
        self.inner.send(to, signal).await.map_err(|e| {
            format!(
                "{} {}: sending {}: {e}",
                self.name,
                self.id(),
                signal.kind()
            )
        })
    }

    /// The next signal for this client (cancel-safe).
    pub async fn recv(&mut self) -> Result<Incoming> {
        if let Some(i) = self.pending.pop_front() {
            return Ok(i);
        }
        loop {
            match self.next().await? {
                Event::Signal(i) => return Ok(i),
                Event::Joined(_) | Event::Other => {}
            }
        }
    }

    /// Waits until another peer joins the room; returns its id.
    pub async fn peer_joined(&mut self) -> Result<String> {
        loop {
            match self.next().await? {
                Event::Joined(id) => return Ok(id),
                Event::Signal(i) => self.pending.push_back(i),
                Event::Other => {}
            }
        }
    }

    async fn next(&mut self) -> Result<Event> {
        let (name, id) = (self.name, self.inner.id().to_owned());
        self.inner
            .next_event()
            .await
            .map_err(|e| format!("{name} {id}: {e}"))
    }
}

// === binary ===

/// The binary protocol through [`signal_client::Client`].
pub struct Binary {
    client: Client,
    id: String,
    room: String,
}

impl Binary {
    async fn connected(server: &TestServer, id: &str) -> Client {
        let mut client = Client::connect(&server.url("/"))
            .await
            .expect("binary client connects");
        client
            .authenticate(id, &token(id))
            .await
            .expect("CONNECT accepted");
        client
            .register(&token(id))
            .await
            .expect("REGISTER accepted");
        client
    }

    /// Connects as `id` (API key), registers, and creates `room` with ROOM_CREATE
    /// without an offer (the offer follows as a signal once a peer joins).
    pub async fn create_room(server: &TestServer, id: &str, room: &str) -> Transport {
        let client = Self::connected(server, id).await;
        let ack = client
            .create_room(&token(id), Some(room), None)
            .await
            .expect("ROOM_CREATE accepted");
        assert_eq!(ack.room_id, room);
        Transport::new(
            "binary",
            Self {
                client,
                id: id.into(),
                room: room.into(),
            },
        )
    }

    /// Connects as `id`, registers and joins `room`.
    pub async fn join_room(server: &TestServer, id: &str, room: &str) -> Transport {
        let client = Self::connected(server, id).await;
        client
            .join_room(&token(id), room)
            .await
            .expect("ROOM_JOIN accepted");
        Transport::new(
            "binary",
            Self {
                client,
                id: id.into(),
                room: room.into(),
            },
        )
    }
}

#[async_trait::async_trait]
impl Dialect for Binary {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&mut self, to: &str, signal: &Signal) -> Result<()> {
        let room = Some(self.room.as_str());
        let sent = match signal {
            Signal::Offer(sdp) => self.client.send_offer(to, room, sdp).await,
            Signal::Answer(sdp) => self.client.send_answer(to, room, sdp).await,
            Signal::Candidate(c) => {
                self.client
                    .send_candidate(
                        to,
                        room,
                        &c.candidate,
                        c.sdp_mid.as_deref(),
                        c.sdp_m_line_index.map(u32::from),
                    )
                    .await
            }
        };
        sent.map(|_| ()).map_err(|e| e.to_string())
    }

    async fn next_event(&mut self) -> Result<Event> {
        let frame = self.client.next_event().await.ok_or("connection closed")?;
        let decode_err = |e: signal_client::ClientError| e.to_string();
        Ok(match frame.msg_type {
            MessageType::PeerJoined => {
                let p: PeerJoined = signal_client::decode(&frame).map_err(decode_err)?;
                Event::Joined(p.client_id)
            }
            t @ (MessageType::SignalOffer
            | MessageType::SignalAnswer
            | MessageType::SignalIceCandidate) => {
                let p: SignalPayload = signal_client::decode(&frame).map_err(decode_err)?;
                if p.room_id.as_deref().is_some_and(|r| r != self.room) {
                    return Err(format!("{t:?} for another room: {p:?}"));
                }
                if p.target_client_id.as_deref().is_some_and(|t| t != self.id) {
                    return Err(format!("{t:?} addressed to someone else: {p:?}"));
                }
                let from = p
                    .from_client_id
                    .clone()
                    .ok_or_else(|| format!("{t:?} without from_client_id: {p:?}"))?;
                let signal = match t {
                    MessageType::SignalOffer => Signal::Offer(p.sdp.ok_or("offer without sdp")?),
                    MessageType::SignalAnswer => Signal::Answer(p.sdp.ok_or("answer without sdp")?),
                    _ => Signal::Candidate(binary_candidate(&p)?),
                };
                Event::Signal(Incoming { from, signal })
            }
            MessageType::Error => {
                let e: ErrorPayload = signal_client::decode(&frame).map_err(decode_err)?;
                return Err(format!(
                    "server error {}: {} ({})",
                    e.error_code,
                    e.error_message,
                    Value::Object(e.details)
                ));
            }
            _ => Event::Other,
        })
    }
}

/// A candidate from a binary SIGNAL_ICE_CANDIDATE: a line, or a browser-style object.
fn binary_candidate(p: &SignalPayload) -> Result<Candidate> {
    let line = match &p.candidate {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(o)) => o
            .get("candidate")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("candidate object without a line: {p:?}"))?
            .to_owned(),
        _ => return Err(format!("candidate signal without a candidate: {p:?}")),
    };
    Ok(Candidate {
        candidate: line,
        sdp_mid: p.sdp_mid.clone(),
        sdp_m_line_index: p.sdp_m_line_index.and_then(|i| u16::try_from(i).ok()),
    })
}

// === JSON dialects ===

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A WebSocket speaking JSON text messages.
struct JsonWs(Ws);

impl JsonWs {
    async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Self(ws)
    }

    async fn send(&mut self, v: Value) -> Result<()> {
        self.0
            .send(Message::text(v.to_string()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The next JSON message (cancel-safe: one `StreamExt::next`, then no more awaits).
    async fn next(&mut self) -> Result<Value> {
        loop {
            match self.0.next().await {
                None => return Err("connection closed".into()),
                Some(Err(e)) => return Err(format!("websocket: {e}")),
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str())
                        .map_err(|e| format!("not JSON ({e}): {t}"));
                }
                Some(Ok(Message::Close(f))) => {
                    return Err(match f {
                        Some(f) => format!("closed {}: {}", u16::from(f.code), f.reason),
                        None => "closed".into(),
                    });
                }
                Some(Ok(Message::Binary(_))) => return Err("binary message on JSON".into()),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Skips messages until one of type `t`; an error-typed message is an error.
    async fn until(&mut self, t: &str) -> Result<Value> {
        loop {
            let v = self.next().await?;
            if v["type"] == t {
                return Ok(v);
            }
            if v["type"] == "ERROR" || v["type"] == "error" {
                return Err(format!("server error while waiting for {t}: {v}"));
            }
        }
    }
}

fn str_field(v: &Value, field: &str) -> Result<String> {
    v.pointer(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no string at {field}: {v}"))
}

/// Reads `sdp` from a JSON signal's payload.
fn json_sdp(v: &Value) -> Result<String> {
    str_field(v, "/payload/sdp")
}

/// Reads a candidate from a JSON signal's payload (`sdpMid` or `sdp_mid`, …).
fn json_candidate(v: &Value) -> Result<Candidate> {
    let p = &v["payload"];
    let mid = p.get("sdpMid").or_else(|| p.get("sdp_mid"));
    let index = p.get("sdpMLineIndex").or_else(|| p.get("sdp_m_line_index"));
    Ok(Candidate {
        candidate: str_field(v, "/payload/candidate")?,
        sdp_mid: mid.and_then(Value::as_str).map(str::to_owned),
        sdp_m_line_index: index
            .and_then(Value::as_u64)
            .and_then(|i| u16::try_from(i).ok()),
    })
}

fn candidate_json(c: &Candidate, mid_key: &str, index_key: &str) -> Value {
    let mut p = json!({ "candidate": c.candidate });
    if let Some(mid) = &c.sdp_mid {
        p[mid_key] = json!(mid);
    }
    if let Some(i) = c.sdp_m_line_index {
        p[index_key] = json!(i);
    }
    p
}

fn sdp_json(kind: &str, sdp: &str) -> Value {
    json!({ "type": kind, "sdp": sdp })
}

// --- altair ---

/// The altair dialect on `/ws` (upper-case envelopes with `target_id`).
pub struct Altair {
    ws: JsonWs,
    id: String,
}

impl Altair {
    /// Connects with a JWT for `id` and JOINs `room`.
    pub async fn join(server: &TestServer, id: &str, room: &str) -> Transport {
        let mut ws = JsonWs::connect(&server.url(&format!("/ws?token={}", jwt(id)))).await;
        ws.send(
            json!({"type": "JOIN", "room_id": room, "request_id": "join",
                       "payload": {"display_name": id}}),
        )
        .await
        .expect("send JOIN");
        let ack = ws.until("ACK").await.expect("JOIN acknowledged");
        assert_eq!(ack["request_id"], "join");
        let id = str_field(&ack, "/peer_id").expect("ACK names the peer");
        Transport::new("altair", Self { ws, id })
    }
}

#[async_trait::async_trait]
impl Dialect for Altair {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&mut self, to: &str, signal: &Signal) -> Result<()> {
        let (t, payload) = match signal {
            Signal::Offer(sdp) => ("OFFER", sdp_json("offer", sdp)),
            Signal::Answer(sdp) => ("ANSWER", sdp_json("answer", sdp)),
            Signal::Candidate(c) => ("CANDIDATE", candidate_json(c, "sdpMid", "sdpMLineIndex")),
        };
        self.ws
            .send(json!({"type": t, "target_id": to, "payload": payload}))
            .await
    }

    async fn next_event(&mut self) -> Result<Event> {
        let v = self.ws.next().await?;
        let t = v["type"].as_str().unwrap_or_default();
        Ok(match t {
            "PEER_JOINED" => Event::Joined(str_field(&v, "/peer_id")?),
            "OFFER" | "ANSWER" | "CANDIDATE" => {
                if v.get("target_id").is_some_and(|t| t != self.id.as_str()) {
                    return Err(format!("{t} addressed to someone else: {v}"));
                }
                let signal = match t {
                    "OFFER" => Signal::Offer(json_sdp(&v)?),
                    "ANSWER" => Signal::Answer(json_sdp(&v)?),
                    _ => Signal::Candidate(json_candidate(&v)?),
                };
                Event::Signal(Incoming {
                    from: str_field(&v, "/peer_id")?,
                    signal,
                })
            }
            "ERROR" => return Err(format!("server error: {v}")),
            _ => Event::Other,
        })
    }
}

// --- simple ---

/// The simple dialect on `/ws` (lower-case messages with `room`/`sender`/`recipient`).
pub struct Simple {
    ws: JsonWs,
    id: String,
    room: String,
}

impl Simple {
    /// Connects with a JWT for `id` and joins `room`.
    pub async fn join(server: &TestServer, id: &str, room: &str) -> Transport {
        let mut ws = JsonWs::connect(&server.url(&format!("/ws?token={}", jwt(id)))).await;
        ws.send(json!({"type": "join", "room": room, "sender": id}))
            .await
            .expect("send join");
        let joined = ws.until("joined").await.expect("join confirmed");
        let id = str_field(&joined, "/payload/client_id").expect("joined names the client");
        Transport::new(
            "simple",
            Self {
                ws,
                id,
                room: room.into(),
            },
        )
    }
}

#[async_trait::async_trait]
impl Dialect for Simple {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&mut self, to: &str, signal: &Signal) -> Result<()> {
        let (t, payload) = match signal {
            Signal::Offer(sdp) => ("offer", sdp_json("offer", sdp)),
            Signal::Answer(sdp) => ("answer", sdp_json("answer", sdp)),
            Signal::Candidate(c) => ("candidate", candidate_json(c, "sdpMid", "sdpMLineIndex")),
        };
        self.ws
            .send(json!({"type": t, "room": self.room, "sender": self.id,
                         "recipient": to, "payload": payload}))
            .await
    }

    async fn next_event(&mut self) -> Result<Event> {
        let v = self.ws.next().await?;
        let t = v["type"].as_str().unwrap_or_default();
        Ok(match t {
            "join" => Event::Joined(str_field(&v, "/sender")?),
            "offer" | "answer" | "candidate" => {
                if v.get("recipient").is_some_and(|r| r != self.id.as_str()) {
                    return Err(format!("{t} addressed to someone else: {v}"));
                }
                if v["room"] != self.room.as_str() {
                    return Err(format!("{t} for another room: {v}"));
                }
                let signal = match t {
                    "offer" => Signal::Offer(json_sdp(&v)?),
                    "answer" => Signal::Answer(json_sdp(&v)?),
                    _ => Signal::Candidate(json_candidate(&v)?),
                };
                Event::Signal(Incoming {
                    from: str_field(&v, "/sender")?,
                    signal,
                })
            }
            "error" => return Err(format!("server error: {v}")),
            _ => Event::Other,
        })
    }
}

// --- room-path ---

/// The room-path dialect on `/webrtc/ws/{room}?token=JWT`.
pub struct RoomPath {
    ws: JsonWs,
    id: String,
}

impl RoomPath {
    /// Connects as `id` (JWT in `?token=`) to `room`, and waits for `room_state`.
    pub async fn join(server: &TestServer, id: &str, room: &str) -> Transport {
        let url = server.url(&format!("/webrtc/ws/{room}?token={}", jwt(id)));
        let mut ws = JsonWs::connect(&url).await;
        let state = ws.until("room_state").await.expect("room_state");
        let me = state["payload"]["participants"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["user_id"] == id));
        assert!(me, "room_state lists the joiner: {state}");
        Transport::new("room-path", Self { ws, id: id.into() })
    }
}

#[async_trait::async_trait]
impl Dialect for RoomPath {
    fn id(&self) -> &str {
        &self.id
    }

    async fn send(&mut self, to: &str, signal: &Signal) -> Result<()> {
        let (t, mut payload) = match signal {
            Signal::Offer(sdp) => ("offer", sdp_json("offer", sdp)),
            Signal::Answer(sdp) => ("answer", sdp_json("answer", sdp)),
            Signal::Candidate(c) => (
                "ice_candidate",
                candidate_json(c, "sdp_mid", "sdp_m_line_index"),
            ),
        };
        payload["target_user_id"] = json!(to);
        self.ws.send(json!({"type": t, "payload": payload})).await
    }

    async fn next_event(&mut self) -> Result<Event> {
        let v = self.ws.next().await?;
        let t = v["type"].as_str().unwrap_or_default();
        Ok(match t {
            "user_joined" => Event::Joined(str_field(&v, "/payload/user_id")?),
            "offer" | "answer" | "ice_candidate" => {
                let target = v["payload"].get("target_user_id");
                if target.is_some_and(|r| r != self.id.as_str()) {
                    return Err(format!("{t} addressed to someone else: {v}"));
                }
                let signal = match t {
                    "offer" => Signal::Offer(json_sdp(&v)?),
                    "answer" => Signal::Answer(json_sdp(&v)?),
                    _ => Signal::Candidate(json_candidate(&v)?),
                };
                Event::Signal(Incoming {
                    from: str_field(&v, "/sender_id")?,
                    signal,
                })
            }
            "error" => return Err(format!("server error: {v}")),
            _ => Event::Other,
        })
    }
}
