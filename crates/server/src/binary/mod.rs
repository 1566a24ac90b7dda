//! The binary dialect (seeds 000/001) on `/`: one connection task per WebSocket that
//! decodes frames and dispatches them to one module per request type, and one writer task
//! that owns the socket's sending half, fed by the session's bounded queue.

mod cmd;
pub mod codec;

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::de::DeserializeOwned;
use signal_core::{
    CoreError, ErrorCode,
    hub::{CloseReason, Outbound, Session, Wire},
};
use signal_protocol::{Frame, MessageType, PayloadType};
use tokio::{sync::mpsc, time::Instant};
use tracing::Instrument;
use uuid::Uuid;

use crate::app::AppState;
use codec::{error_frame, reply_type, request_type_name};

/// What the dispatcher tells the connection loop.
pub(crate) enum Flow {
    Continue,
    Close(u16, String),
}

/// Per-connection state seen by the command handlers.
pub(crate) struct Conn {
    pub(crate) state: AppState,
    pub(crate) tx: mpsc::Sender<Outbound>,
    pub(crate) session: Option<Arc<Session>>,
    pub(crate) wire: Arc<OnceLock<Wire>>,
    limiter: Option<DefaultDirectRateLimiter>,
    slow: bool,
}

/// Ask for the writer to stop: what to send last.
struct CloseCmd {
    code: u16,
    reason: String,
    error: Option<Bytes>,
    /// Write what is already queued first (false for a slow consumer).
    drain: bool,
}

/// Serves one upgraded WebSocket speaking the binary protocol until it closes.
pub async fn serve(socket: WebSocket, state: AppState, peer: SocketAddr) {
    let span =
        tracing::debug_span!("conn", dialect = "binary", %peer, client_id = tracing::field::Empty);
    run(socket, state, peer).instrument(span).await
}

async fn run(socket: WebSocket, state: AppState, _peer: SocketAddr) {
    let cfg = state.config.clone();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(cfg.server.outbound_queue.max(1));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<CloseCmd>();
    let wire = Arc::new(OnceLock::new());
    let writer = tokio::spawn(writer(sink, rx, close_rx, wire.clone()));
    let limiter = (cfg.security.rate_limit_enabled && cfg.security.max_messages_per_minute > 0)
        .then(|| {
            std::num::NonZeroU32::new(cfg.security.max_messages_per_minute)
                .map(|n| RateLimiter::direct(Quota::per_minute(n)))
        })
        .flatten();
    let mut conn = Conn {
        state: state.clone(),
        tx,
        session: None,
        wire,
        limiter,
        slow: false,
    };
    let connect_timeout = Duration::from_secs(cfg.server.connection_timeout.max(1));
    let heartbeat_timeout = Duration::from_secs(cfg.heartbeat.timeout.max(1));
    let mut deadline = Instant::now() + connect_timeout;
    let shutdown = state.shutdown.clone();

    let (code, reason, error, leave_reason) = loop {
        let session = conn.session.clone();
        let hub_close = async {
            match &session {
                Some(s) => s.closed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            msg = stream.next() => {
                let msg = match msg {
                    None => break (1000, String::new(), None, "disconnected"),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "read failed");
                        let size = e.to_string().contains("too long") || e.to_string().contains("Space limit");
                        if size {
                            break (1009, format!("message larger than {} bytes", cfg.server.max_message_size), None, "disconnected");
                        }
                        break (1002, "protocol error".into(), None, "disconnected");
                    }
                    Some(Ok(m)) => m,
                };
                match msg {
                    Message::Binary(b) => {
                        metrics::counter!("signal_ws_messages_in_total", "wire" => "binary").increment(1);
                        match conn.on_frame(b).await {
                            Flow::Continue => {}
                            Flow::Close(code, reason) => break (code, reason, None, "left"),
                        }
                    }
                    Message::Text(_) => {
                        let err = CoreError::bad_request(
                            "Text message on the binary endpoint: send binary frames [0xAA][type][uuid][payload_type][length][payload]",
                        );
                        conn.reply(error_frame(Uuid::nil(), PayloadType::Json, serde_json::Value::Null, &err));
                    }
                    Message::Close(_) => break (1000, String::new(), None, "disconnected"),
                    Message::Ping(_) | Message::Pong(_) => {}
                }
                if conn.session.is_some() {
                    deadline = Instant::now() + heartbeat_timeout;
                }
                if conn.slow {
                    break (1008, CloseReason::slow_consumer(cfg.server.outbound_queue).reason, None, "disconnected");
                }
            }
            r = hub_close => {
                let err = r.error.as_ref().map(|e| error_frame(Uuid::new_v4(), conn.reply_pt(), serde_json::Value::Null, e));
                let leave = if r.code == 1001 { "server shutting down" } else { "disconnected" };
                break (r.code, r.reason, err, leave);
            }
            _ = tokio::time::sleep_until(deadline) => {
                if conn.session.is_none() {
                    break (1008, format!("CONNECT not received within {}s", connect_timeout.as_secs()), None, "disconnected");
                }
                break (1008, format!("heartbeat timeout: nothing received for {}s", heartbeat_timeout.as_secs()), None, "heartbeat timeout");
            }
            _ = shutdown.cancelled() => {
                break (1001, "server shutting down".into(), None, "server shutting down");
            }
        }
    };
    let slow = code == 1008 && reason.starts_with("slow consumer");
    if let Some(session) = conn.session.take() {
        state.hub.disconnect(&session, leave_reason).await;
        tracing::debug!(code, %reason, "session closed");
    }
    let _ = close_tx.send(CloseCmd {
        code,
        reason,
        error,
        drain: !slow,
    });
    drop(conn);
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

async fn writer(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    mut close_rx: tokio::sync::oneshot::Receiver<CloseCmd>,
    wire: Arc<OnceLock<Wire>>,
) {
    let encode = |item: Outbound| -> Option<Bytes> {
        match item {
            Outbound::Frame(b) => Some(b),
            Outbound::Event(env) => {
                let w = *wire.get()?;
                let pt = if w == Wire::BinaryCbor {
                    PayloadType::Cbor
                } else {
                    PayloadType::Json
                };
                env.encoded(w, |e| codec::encode_event(e, pt))
            }
        }
    };
    loop {
        tokio::select! {
            biased;
            cmd = &mut close_rx => {
                let Ok(cmd) = cmd else { break };
                let finish = async {
                    if cmd.drain {
                        while let Ok(item) = rx.try_recv() {
                            if let Some(b) = encode(item) {
                                sink.feed(Message::Binary(b)).await?;
                            }
                        }
                    }
                    if let Some(b) = cmd.error {
                        sink.feed(Message::Binary(b)).await?;
                    }
                    sink.send(Message::Close(Some(CloseFrame { code: cmd.code, reason: truncate(&cmd.reason).into() }))).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), finish).await;
                break;
            }
            item = rx.recv() => {
                let Some(item) = item else { break };
                let mut res = Ok(());
                let mut n = 0usize;
                if let Some(b) = encode(item) {
                    res = sink.feed(Message::Binary(b)).await;
                    n += 1;
                }
                // Batch what is already queued into one flush.
                while res.is_ok() && n < 64 {
                    match rx.try_recv() {
                        Ok(item) => {
                            if let Some(b) = encode(item) {
                                res = sink.feed(Message::Binary(b)).await;
                                n += 1;
                            }
                        }
                        Err(_) => break,
                    }
                }
                metrics::counter!("signal_ws_messages_out_total", "wire" => "binary").increment(n as u64);
                if res.is_err() || sink.flush().await.is_err() {
                    break;
                }
            }
        }
    }
}

/// A close reason fits in 123 bytes.
fn truncate(s: &str) -> &str {
    if s.len() <= 123 {
        return s;
    }
    let mut end = 123;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

// === impl Conn ===

impl Conn {
    /// Queues a response; a full queue marks the connection as a slow consumer.
    pub(crate) fn reply(&mut self, frame: Bytes) {
        if self.tx.try_send(Outbound::Frame(frame)).is_err() {
            metrics::counter!("signal_slow_consumer_disconnects_total").increment(1);
            self.slow = true;
        }
    }

    /// The payload type for unsolicited frames: the session's choice, JSON before CONNECT.
    fn reply_pt(&self) -> PayloadType {
        match self.wire.get() {
            Some(Wire::BinaryCbor) => PayloadType::Cbor,
            _ => PayloadType::Json,
        }
    }

    /// The established session (handlers for post-CONNECT types).
    pub(crate) fn session(&self) -> Result<&Arc<Session>, CoreError> {
        self.session
            .as_ref()
            .ok_or_else(|| CoreError::unauthorized("Not connected: send CONNECT first"))
    }

    async fn on_frame(&mut self, bytes: Bytes) -> Flow {
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => {
                let err = CoreError::bad_request(e.kind.to_string());
                let frame = error_frame(
                    e.id.unwrap_or(Uuid::nil()),
                    self.reply_pt(),
                    request_type_name(e.msg_type),
                    &err,
                );
                self.reply(frame);
                return Flow::Continue;
            }
        };
        let (id, t) = (frame.id, frame.msg_type);
        let pt = reply_type(frame.payload_type);
        metrics::counter!("signal_frames_in_total", "type" => t.name()).increment(1);
        if t != MessageType::Heartbeat
            && let Some(l) = &self.limiter
            && l.check().is_err()
        {
            let n = self.state.config.security.max_messages_per_minute;
            let err = CoreError::new(
                ErrorCode::RateLimited,
                format!("Rate limit exceeded: at most {n} messages per minute"),
            );
            self.reply(error_frame(id, pt, t.name().into(), &err));
            return Flow::Continue;
        }
        let result = if !t.is_client_request() {
            Err(CoreError::bad_request(format!(
                "{t} is sent by the server, not by clients"
            )))
        } else if self.session.is_none() && t != MessageType::Connect {
            Err(CoreError::unauthorized(format!(
                "Not connected: CONNECT must be the first frame, got {t}"
            )))
        } else {
            match t {
                MessageType::Connect => cmd::connect::handle(self, &frame).await,
                MessageType::Disconnect => return Flow::Close(1000, "client disconnect".into()),
                MessageType::Heartbeat => cmd::heartbeat::handle(self, &frame),
                MessageType::Register => cmd::register::handle(self, &frame).await,
                MessageType::Unregister => cmd::unregister::handle(self, &frame).await,
                MessageType::RoomCreate => cmd::room_create::handle(self, &frame).await,
                MessageType::RoomJoin => cmd::room_join::handle(self, &frame).await,
                MessageType::RoomLeave => cmd::room_leave::handle(self, &frame).await,
                MessageType::SignalOffer
                | MessageType::SignalAnswer
                | MessageType::SignalIceCandidate => cmd::signal::handle(self, &frame).await,
                // Server-to-client types were refused above.
                _ => Err(CoreError::bad_request(format!(
                    "{t} is sent by the server, not by clients"
                ))),
            }
        };
        match result {
            Ok(Some(bytes)) => {
                metrics::counter!("signal_frames_out_total", "type" => t.ack().map(|a| a.name()).unwrap_or("none")).increment(1);
                self.reply(bytes);
                Flow::Continue
            }
            Ok(None) => Flow::Continue,
            Err(e) => {
                let fatal = t == MessageType::Connect && e.code == ErrorCode::Unauthorized;
                self.reply(error_frame(id, pt, t.name().into(), &e));
                if fatal {
                    Flow::Close(1008, "authentication failed".into())
                } else {
                    Flow::Continue
                }
            }
        }
    }
}

/// Decodes a structured payload, turning any fault into a 400 that names it.
pub(crate) fn payload<T: DeserializeOwned>(frame: &Frame) -> Result<T, CoreError> {
    signal_protocol::decode_payload(frame.payload_type, &frame.payload)
        .map_err(|e| CoreError::bad_request(format!("{}: {e}", frame.msg_type.name())))
}
