//! A Rust client for the signal-manager binary protocol: connect, authenticate, register,
//! rooms and signals, with request/response matched by frame UUID. Used by the project's
//! tests, its benchmark, and anyone driving the server from Rust.
//!
//! ```no_run
//! # async fn demo() -> Result<(), signal_client::ClientError> {
//! use signal_client::Client;
//! let mut alice = Client::connect("ws://127.0.0.1:8080/").await?;
//! alice.authenticate("alice", "alice-token").await?;
//! alice.register("alice-token").await?;
//! let room = alice.create_room("alice-token", Some("demo"), Some("v=0...")).await?;
//! # let _ = room; Ok(()) }
//! ```

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};
use signal_protocol::{
    Frame, MessageType, PayloadType, decode_payload, encode_payload,
    frame::encode_parts,
    payload::{
        ConnectAck, ConnectRequest, ErrorPayload, Heartbeat, HeartbeatAck, RegisterAck,
        RegisterRequest, ResumeAck, ResumeRequest, RoomCreateAck, RoomCreateRequest, RoomJoinAck,
        RoomJoinRequest, RoomLeaveAck, RoomLeaveRequest, SignalPayload, UnregisterAck,
        UnregisterRequest,
    },
};
use tokio::{
    net::TcpStream,
    sync::{Mutex, mpsc, oneshot, watch},
};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async,
    tungstenite::{Message, protocol::CloseFrame},
};
use uuid::Uuid;

pub use signal_protocol as protocol;

mod resuming;
pub use resuming::{Backoff, Resuming, Update};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What can go wrong for a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// WebSocket or network failure.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server answered with an ERROR frame.
    #[error("server error {}: {}", .0.error_code, .0.error_message)]
    Server(ErrorPayload),
    /// No answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The connection closed.
    #[error("connection closed")]
    Closed,
    /// A payload could not be encoded or decoded.
    #[error("payload: {0}")]
    Payload(String),
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Server(e) => Some(e.error_code),
            _ => None,
        }
    }
}

/// How the connection ended: the close frame the server sent, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Close code (1006 when the socket dropped without a close frame).
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

type Pending = Arc<parking_lot_free::Map>;

mod parking_lot_free {
    //! A tiny mutex-guarded map of waiters (std mutex, never held across await).
    use super::*;
    /// Waiters by request UUID.
    #[derive(Default)]
    pub struct Map(pub std::sync::Mutex<HashMap<Uuid, oneshot::Sender<Frame>>>);
}

/// A connection to the server.
pub struct Client {
    sink: Arc<Mutex<SplitSink<Ws, Message>>>,
    pending: Pending,
    events: mpsc::UnboundedReceiver<Frame>,
    closed: watch::Receiver<Option<Closed>>,
    client_id: Option<String>,
    /// Payload type used for requests (JSON by default).
    pub payload_type: PayloadType,
    /// How long a request waits for its answer.
    pub timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
    /// Frames received from the server on this session (its last sequence number):
    /// every frame but a RESUME_ACK counts, ACKs and events alike.
    received: Arc<AtomicU64>,
    /// The token that resumes this session, once a resumable CONNECT or a RESUME gave one.
    resume_token: Option<String>,
}

impl Drop for Client {
    /// Dropping a client drops its socket (without a close handshake).
    fn drop(&mut self) {
        self.reader.abort();
    }
}

// === impl Client ===

impl Client {
    /// Opens a WebSocket to `url` (e.g. `ws://127.0.0.1:8080/`).
    pub async fn connect(url: &str) -> Result<Client, ClientError> {
        let (ws, _) = connect_async(url).await?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        let p = pending.clone();
        let received = Arc::new(AtomicU64::new(0));
        let count = received.clone();
        let reader = tokio::spawn(async move {
            let mut close = Closed {
                code: 1006,
                reason: String::new(),
            };
            while let Some(msg) = stream.next().await {
                match msg {
                    Ok(Message::Binary(b)) => {
                        let Ok(frame) = Frame::decode(b) else {
                            count.fetch_add(1, Ordering::AcqRel);
                            continue;
                        };
                        if frame.msg_type != MessageType::ResumeAck {
                            count.fetch_add(1, Ordering::AcqRel);
                        }
                        let answer = frame.msg_type == MessageType::Error || is_ack(frame.msg_type);
                        let waiter = if answer {
                            p.0.lock().ok().and_then(|mut m| m.remove(&frame.id))
                        } else {
                            None
                        };
                        match waiter {
                            Some(w) => {
                                let _ = w.send(frame);
                            }
                            None => {
                                let _ = ev_tx.send(frame);
                            }
                        }
                    }
                    Ok(Message::Close(Some(cf))) => {
                        close = Closed {
                            code: cf.code.into(),
                            reason: cf.reason.to_string(),
                        };
                        break;
                    }
                    Ok(Message::Close(None)) => {
                        close = Closed {
                            code: 1005,
                            reason: String::new(),
                        };
                        break;
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = closed_tx.send(Some(close));
        });
        Ok(Client {
            sink: Arc::new(Mutex::new(sink)),
            pending,
            events,
            closed,
            client_id: None,
            payload_type: PayloadType::Json,
            timeout: Duration::from_secs(10),
            reader,
            received,
            resume_token: None,
        })
    }

    /// Frames received from the server on this session so far: the `last_seq` a RESUME
    /// sends.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// The token that resumes this session, if it is resumable.
    pub fn resume_token(&self) -> Option<&str> {
        self.resume_token.as_deref()
    }

    /// CONNECT asking for a resumable session: the ACK carries `resume_token` (kept, see
    /// [`resume_token`](Self::resume_token)) unless the server has resume turned off.
    pub async fn authenticate_resumable(
        &mut self,
        client_id: &str,
        auth_token: &str,
    ) -> Result<ConnectAck, ClientError> {
        let ack: ConnectAck = self
            .request(
                MessageType::Connect,
                &ConnectRequest {
                    resume: Some(true),
                    ..connect_request(client_id, auth_token)
                },
            )
            .await?;
        self.client_id = Some(client_id.to_owned());
        self.resume_token = ack.resume_token.clone();
        Ok(ack)
    }

    /// Opens a new connection to `url` and takes back the session this client had
    /// (RESUME with its token and the frames it received). What the client missed
    /// arrives after the ACK, in order, as events; requests this client was waiting on
    /// are not answered on the new connection.
    pub async fn resume(&self, url: &str) -> Result<(Client, ResumeAck), ClientError> {
        let token = self
            .resume_token
            .clone()
            .ok_or_else(|| ClientError::Payload("this session is not resumable".into()))?;
        let last_seq = self.received();
        let mut next = Client::connect(url).await?;
        next.payload_type = self.payload_type;
        next.timeout = self.timeout;
        next.received.store(last_seq, Ordering::Release);
        let ack: ResumeAck = next
            .request(
                MessageType::Resume,
                &ResumeRequest {
                    client_id: self.client_id().to_owned(),
                    resume_token: token,
                    last_seq,
                },
            )
            .await?;
        next.client_id = self.client_id.clone();
        next.resume_token = Some(ack.resume_token.clone());
        Ok((next, ack))
    }

    /// Uses CBOR payloads from now on.
    pub fn use_cbor(&mut self) {
        self.payload_type = PayloadType::Cbor;
    }

    /// The client id given to [`authenticate`](Self::authenticate).
    pub fn client_id(&self) -> &str {
        self.client_id.as_deref().unwrap_or("")
    }

    /// Sends raw bytes as one binary WebSocket message (for malformed-input tests).
    pub async fn send_raw(&self, bytes: impl Into<Bytes>) -> Result<(), ClientError> {
        self.sink
            .lock()
            .await
            .send(Message::Binary(bytes.into()))
            .await?;
        Ok(())
    }

    /// Sends a text WebSocket message.
    pub async fn send_text(&self, text: &str) -> Result<(), ClientError> {
        self.sink
            .lock()
            .await
            .send(Message::Text(text.into()))
            .await?;
        Ok(())
    }

    /// Sends a frame with a structured payload; returns its UUID.
    pub async fn send<T: Serialize>(
        &self,
        t: MessageType,
        payload: &T,
    ) -> Result<Uuid, ClientError> {
        let id = Uuid::new_v4();
        self.send_with_id(t, id, payload).await?;
        Ok(id)
    }

    /// Sends a frame with a given UUID.
    pub async fn send_with_id<T: Serialize>(
        &self,
        t: MessageType,
        id: Uuid,
        payload: &T,
    ) -> Result<(), ClientError> {
        let bytes = encode_payload(self.payload_type, payload)
            .map_err(|e| ClientError::Payload(e.to_string()))?;
        let frame = encode_parts(t, id, self.payload_type, &bytes)
            .map_err(|e| ClientError::Payload(e.to_string()))?;
        self.send_raw(frame).await
    }

    /// Sends raw bytes that form a request with UUID `id` and waits for the answer frame.
    pub async fn request_raw(
        &self,
        id: Uuid,
        bytes: impl Into<Bytes>,
    ) -> Result<Frame, ClientError> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.pending.0.lock() {
            m.insert(id, tx);
        }
        self.send_raw(bytes).await?;
        self.wait(id, rx).await
    }

    async fn wait(&self, id: Uuid, rx: oneshot::Receiver<Frame>) -> Result<Frame, ClientError> {
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(f)) => Ok(f),
            Ok(Err(_)) => Err(ClientError::Closed),
            Err(_) => {
                if let Ok(mut m) = self.pending.0.lock() {
                    m.remove(&id);
                }
                Err(ClientError::Timeout("a response"))
            }
        }
    }

    /// Sends a request and returns the answer frame (ACK or ERROR), matched by UUID.
    pub async fn request_frame<T: Serialize>(
        &self,
        t: MessageType,
        payload: &T,
    ) -> Result<Frame, ClientError> {
        let id = Uuid::new_v4();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut m) = self.pending.0.lock() {
            m.insert(id, tx);
        }
        self.send_with_id(t, id, payload).await?;
        self.wait(id, rx).await
    }

    /// Sends a request and decodes its ACK; an ERROR answer is [`ClientError::Server`].
    pub async fn request<T: Serialize, R: DeserializeOwned>(
        &self,
        t: MessageType,
        payload: &T,
    ) -> Result<R, ClientError> {
        let f = self.request_frame(t, payload).await?;
        decode_answer(&f)
    }

    /// CONNECT.
    pub async fn authenticate(
        &mut self,
        client_id: &str,
        auth_token: &str,
    ) -> Result<ConnectAck, ClientError> {
        let ack = self
            .request(
                MessageType::Connect,
                &connect_request(client_id, auth_token),
            )
            .await?;
        self.client_id = Some(client_id.to_owned());
        Ok(ack)
    }

    /// TOKEN_REFRESH (extension): hands the server a fresh credential for this
    /// connection before the one it connected with expires (a TOKEN_EXPIRING event says
    /// when).
    pub async fn refresh_token(
        &self,
        auth_token: &str,
    ) -> Result<signal_protocol::payload::TokenRefreshAck, ClientError> {
        self.request(
            MessageType::TokenRefresh,
            &signal_protocol::payload::TokenRefresh {
                auth_token: auth_token.to_owned(),
            },
        )
        .await
    }

    /// HEARTBEAT.
    pub async fn heartbeat(&self) -> Result<HeartbeatAck, ClientError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        self.request(MessageType::Heartbeat, &Heartbeat { timestamp: now })
            .await
    }

    /// REGISTER with `auth_token` as the client's stored token.
    pub async fn register(&self, auth_token: &str) -> Result<RegisterAck, ClientError> {
        self.request(
            MessageType::Register,
            &RegisterRequest {
                version: signal_protocol::PROTOCOL_VERSION.into(),
                client_id: self.client_id().into(),
                auth_token: auth_token.into(),
                room_id: None,
                capabilities: Some(vec!["webrtc".into()]),
                metadata: Some(json!({"platform": "rust"})),
            },
        )
        .await
    }

    /// UNREGISTER.
    pub async fn unregister(&self, auth_token: &str) -> Result<UnregisterAck, ClientError> {
        self.request(
            MessageType::Unregister,
            &UnregisterRequest {
                version: signal_protocol::PROTOCOL_VERSION.into(),
                client_id: self.client_id().into(),
                auth_token: auth_token.into(),
            },
        )
        .await
    }

    /// ROOM_CREATE as sender.
    pub async fn create_room(
        &self,
        auth_token: &str,
        room_id: Option<&str>,
        offer_sdp: Option<&str>,
    ) -> Result<RoomCreateAck, ClientError> {
        self.create_room_with(RoomCreateRequest {
            version: signal_protocol::PROTOCOL_VERSION.into(),
            client_id: self.client_id().into(),
            auth_token: auth_token.into(),
            room_id: room_id.map(str::to_owned),
            role: Some("sender".into()),
            offer_sdp: offer_sdp.map(str::to_owned),
            capabilities: None,
            metadata: None,
        })
        .await
    }

    /// ROOM_CREATE with every field chosen by the caller.
    pub async fn create_room_with(
        &self,
        req: RoomCreateRequest,
    ) -> Result<RoomCreateAck, ClientError> {
        self.request(MessageType::RoomCreate, &req).await
    }

    /// ROOM_JOIN as receiver.
    pub async fn join_room(
        &self,
        auth_token: &str,
        room_id: &str,
    ) -> Result<RoomJoinAck, ClientError> {
        self.join_room_with(RoomJoinRequest {
            version: signal_protocol::PROTOCOL_VERSION.into(),
            client_id: self.client_id().into(),
            auth_token: auth_token.into(),
            room_id: room_id.into(),
            role: Some("receiver".into()),
            offer_sdp: None,
            capabilities: None,
            metadata: Some(json!({"platform": "rust"})),
        })
        .await
    }

    /// ROOM_JOIN with every field chosen by the caller.
    pub async fn join_room_with(&self, req: RoomJoinRequest) -> Result<RoomJoinAck, ClientError> {
        self.request(MessageType::RoomJoin, &req).await
    }

    /// ROOM_LEAVE.
    pub async fn leave_room(
        &self,
        auth_token: &str,
        room_id: &str,
    ) -> Result<RoomLeaveAck, ClientError> {
        self.request(
            MessageType::RoomLeave,
            &RoomLeaveRequest {
                version: signal_protocol::PROTOCOL_VERSION.into(),
                client_id: self.client_id().into(),
                auth_token: auth_token.into(),
                room_id: room_id.into(),
                reason: Some("done".into()),
            },
        )
        .await
    }

    /// Sends SIGNAL_OFFER / SIGNAL_ANSWER / SIGNAL_ICE_CANDIDATE; returns its UUID. Signals
    /// have no ACK: a failure arrives later as an ERROR event with this UUID.
    pub async fn signal(
        &self,
        t: MessageType,
        payload: &SignalPayload,
    ) -> Result<Uuid, ClientError> {
        self.send(t, payload).await
    }

    /// An SDP offer to `target` in `room`.
    pub async fn send_offer(
        &self,
        target: &str,
        room: Option<&str>,
        sdp: &str,
    ) -> Result<Uuid, ClientError> {
        self.signal(MessageType::SignalOffer, &sdp_payload(target, room, sdp))
            .await
    }

    /// An SDP answer to `target` in `room`.
    pub async fn send_answer(
        &self,
        target: &str,
        room: Option<&str>,
        sdp: &str,
    ) -> Result<Uuid, ClientError> {
        self.signal(MessageType::SignalAnswer, &sdp_payload(target, room, sdp))
            .await
    }

    /// An ICE candidate to `target` in `room`.
    pub async fn send_candidate(
        &self,
        target: &str,
        room: Option<&str>,
        candidate: &str,
        sdp_mid: Option<&str>,
        sdp_m_line_index: Option<u32>,
    ) -> Result<Uuid, ClientError> {
        self.signal(
            MessageType::SignalIceCandidate,
            &SignalPayload {
                target_client_id: Some(target.into()),
                room_id: room.map(str::to_owned),
                candidate: Some(Value::from(candidate)),
                sdp_mid: sdp_mid.map(str::to_owned),
                sdp_m_line_index,
                ..Default::default()
            },
        )
        .await
    }

    /// The next frame that answers no request (events, relayed signals, unmatched errors).
    pub async fn next_event(&mut self) -> Option<Frame> {
        self.events.recv().await
    }

    /// [`next_event`](Self::next_event) with a deadline.
    pub async fn next_event_within(&mut self, d: Duration) -> Result<Frame, ClientError> {
        match tokio::time::timeout(d, self.events.recv()).await {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(ClientError::Closed),
            Err(_) => Err(ClientError::Timeout("an event")),
        }
    }

    /// Waits for an event of type `t`, skipping others; errors after `d`.
    pub async fn expect_event(
        &mut self,
        t: MessageType,
        d: Duration,
    ) -> Result<Frame, ClientError> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let f = self.next_event_within(left).await?;
            if f.msg_type == t {
                return Ok(f);
            }
        }
    }

    /// Waits until the server closes the connection; returns its close frame.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Some(c) = self.closed.borrow().clone() {
                return c;
            }
            if self.closed.changed().await.is_err() {
                return Closed {
                    code: 1006,
                    reason: String::new(),
                };
            }
        }
    }

    /// [`closed`](Self::closed) with a deadline.
    pub async fn closed_within(&mut self, d: Duration) -> Result<Closed, ClientError> {
        tokio::time::timeout(d, self.closed())
            .await
            .map_err(|_| ClientError::Timeout("the connection to close"))
    }

    /// Sends DISCONNECT and waits for the server to close.
    pub async fn disconnect(mut self) -> Result<Closed, ClientError> {
        self.send(MessageType::Disconnect, &json!({})).await?;
        self.closed_within(Duration::from_secs(5)).await
    }

    /// Closes the WebSocket from the client side (1000).
    pub async fn close(&self) -> Result<(), ClientError> {
        self.sink
            .lock()
            .await
            .send(Message::Close(Some(CloseFrame {
                code: 1000.into(),
                reason: "bye".into(),
            })))
            .await?;
        Ok(())
    }
}

fn connect_request(client_id: &str, auth_token: &str) -> ConnectRequest {
    ConnectRequest {
        client_id: client_id.into(),
        auth_token: auth_token.into(),
        version: Some(signal_protocol::PROTOCOL_VERSION.into()),
        capabilities: Some(vec![
            "websocket".into(),
            "heartbeat".into(),
            "webrtc".into(),
        ]),
        metadata: Some(json!({"platform": "rust", "client": "signal-client"})),
        resume: None,
    }
}

fn is_ack(t: MessageType) -> bool {
    matches!(
        t,
        MessageType::ConnectAck
            | MessageType::ResumeAck
            | MessageType::HeartbeatAck
            | MessageType::RegisterAck
            | MessageType::UnregisterAck
            | MessageType::RoomCreateAck
            | MessageType::RoomJoinAck
            | MessageType::RoomLeaveAck
            | MessageType::TokenRefreshAck
    )
}

fn sdp_payload(target: &str, room: Option<&str>, sdp: &str) -> SignalPayload {
    SignalPayload {
        target_client_id: Some(target.into()),
        room_id: room.map(str::to_owned),
        sdp: Some(sdp.into()),
        ..Default::default()
    }
}

/// Decodes an answer frame: an ACK as `R`, an ERROR as [`ClientError::Server`].
pub fn decode_answer<R: DeserializeOwned>(f: &Frame) -> Result<R, ClientError> {
    if f.msg_type == MessageType::Error {
        let e: ErrorPayload = decode_payload(f.payload_type, &f.payload)
            .map_err(|e| ClientError::Payload(e.to_string()))?;
        return Err(ClientError::Server(e));
    }
    decode_payload(f.payload_type, &f.payload).map_err(|e| ClientError::Payload(e.to_string()))
}

/// Decodes any frame's payload.
pub fn decode<R: DeserializeOwned>(f: &Frame) -> Result<R, ClientError> {
    decode_payload(f.payload_type, &f.payload).map_err(|e| ClientError::Payload(e.to_string()))
}
