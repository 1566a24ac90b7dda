//! The connection driver shared by every dialect: one task reads the socket and hands
//! each message to the dialect, one writer task owns the sending half and drains the
//! session's bounded queue in batches. The driver owns the timeouts (CONNECT, heartbeat),
//! the per-connection rate limit, the slow-consumer cut-off, the drain on shutdown and the
//! session's cleanup, so a dialect only turns messages into hub calls and back.

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::Duration,
};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use signal_core::{
    CoreError,
    hub::{CloseReason, ConnectParams, Event, Outbound, Session, Wire},
};
use tokio::{sync::mpsc, time::Instant};

use crate::{app::AppState, wire};

/// What a dialect tells the driver after a message.
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection with this code and reason (after what is queued).
    Close(u16, String),
}

/// One wire dialect: how received messages become hub calls.
pub(crate) trait Dialect: Send + 'static {
    /// Metric label of the endpoint (`binary`, `ws`, `room_path`).
    const LABEL: &'static str;
    /// Whether the dialect's frames are WebSocket text messages (else binary).
    const TEXT: bool;

    /// Runs once the writer is ready, before the first message is read.
    fn start(&mut self, _conn: &mut Conn) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// Handles one data message (binary or text).
    fn on_message(&mut self, conn: &mut Conn, msg: Message) -> impl Future<Output = Flow> + Send;

    /// Encodes an error the hub attaches to a close (e.g. "session replaced").
    fn close_error(&self, conn: &Conn, err: &CoreError) -> Option<Bytes>;
}

/// Per-connection state shared by the driver and the dialect's handlers.
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

// === impl Conn ===

impl Conn {
    /// Queues a response; a full queue marks the connection as a slow consumer.
    pub(crate) fn reply(&mut self, frame: Bytes) {
        if self.tx.try_send(Outbound::Frame(frame)).is_err() {
            metrics::counter!("signal_slow_consumer_disconnects_total").increment(1);
            self.slow = true;
        }
    }

    /// The established session, or 401.
    pub(crate) fn session(&self) -> Result<&Arc<Session>, CoreError> {
        self.session
            .as_ref()
            .ok_or_else(|| CoreError::unauthorized("Not connected: send CONNECT first"))
    }

    /// Opens the hub session for this connection and fixes its wire format.
    pub(crate) async fn connect(
        &mut self,
        params: ConnectParams,
    ) -> Result<Arc<Session>, CoreError> {
        let wire = params.wire;
        let session = self.state.hub.connect(params, self.tx.clone()).await?;
        let _ = self.wire.set(wire);
        tracing::Span::current().record("client_id", tracing::field::display(&session.client_id));
        tracing::debug!(session_id = %session.id, wire = wire.label(), "connected");
        self.session = Some(session.clone());
        Ok(session)
    }

    /// Counts a message against the per-connection rate; false when over it.
    pub(crate) fn within_rate(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }
}

/// Serves one upgraded WebSocket with `dialect` until it closes.
pub(crate) async fn drive<D: Dialect>(socket: WebSocket, state: AppState, mut dialect: D) {
    let cfg = state.config.clone();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(cfg.server.outbound_queue.max(1));
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<CloseCmd>();
    let wire_slot = Arc::new(OnceLock::new());
    let writer = tokio::spawn(writer(
        sink,
        rx,
        close_rx,
        wire_slot.clone(),
        D::TEXT,
        D::LABEL,
        // Browsers cannot send WebSocket pings but answer the server's: text dialects
        // get one per heartbeat interval, so an idle browser stays alive (its pong is
        // activity) and a vanished one still times out.
        D::TEXT.then(|| Duration::from_secs(cfg.heartbeat_interval().max(1))),
    ));
    let limiter = if cfg.security.rate_limit_enabled {
        std::num::NonZeroU32::new(cfg.security.max_messages_per_minute)
            .map(|n| RateLimiter::direct(Quota::per_minute(n)))
    } else {
        None
    };
    let mut conn = Conn {
        state: state.clone(),
        tx,
        session: None,
        wire: wire_slot,
        limiter,
        slow: false,
    };
    let connect_timeout = Duration::from_secs(cfg.server.connection_timeout.max(1));
    let heartbeat_timeout = Duration::from_secs(cfg.heartbeat.timeout.max(1));
    let shutdown = state.shutdown.clone();

    let started = dialect.start(&mut conn).await;
    let mut deadline = Instant::now()
        + if conn.session.is_some() {
            heartbeat_timeout
        } else {
            connect_timeout
        };
    let (code, reason, error, leave_reason) = if let Flow::Close(code, reason) = started {
        (code, reason, None, "disconnected")
    } else {
        loop {
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
                            let text = e.to_string();
                            if text.contains("too long") || text.contains("Space limit") {
                                break (1009, format!("message larger than {} bytes", cfg.server.max_message_size), None, "disconnected");
                            }
                            break (1002, "protocol error".into(), None, "disconnected");
                        }
                        Some(Ok(m)) => m,
                    };
                    match msg {
                        Message::Close(_) => break (1000, String::new(), None, "disconnected"),
                        Message::Ping(_) | Message::Pong(_) => {}
                        data => {
                            metrics::counter!("signal_ws_messages_in_total", "endpoint" => D::LABEL).increment(1);
                            if let Flow::Close(code, reason) = dialect.on_message(&mut conn, data).await {
                                break (code, reason, None, "left");
                            }
                        }
                    }
                    if conn.session.is_some() {
                        deadline = Instant::now() + heartbeat_timeout;
                    }
                    if conn.slow {
                        break (1008, CloseReason::slow_consumer(cfg.server.outbound_queue).reason, None, "disconnected");
                    }
                }
                r = hub_close => {
                    let err = r.error.as_ref().and_then(|e| dialect.close_error(&conn, e));
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
        }
    };
    let slow = code == 1008 && reason.starts_with("slow consumer");
    if let Some(session) = conn.session.take() {
        state
            .hub
            .disconnect(&session, leave_reason, leave_reason == "left")
            .await;
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
    wire_slot: Arc<OnceLock<Wire>>,
    text: bool,
    label: &'static str,
    ping_every: Option<Duration>,
) {
    let mut ping = ping_every.map(|d| tokio::time::interval_at(Instant::now() + d, d));
    let to_message = |b: Bytes| -> Option<Message> {
        if text {
            match Utf8Bytes::try_from(b) {
                Ok(t) => Some(Message::Text(t)),
                Err(_) => {
                    tracing::error!("a text frame was not UTF-8; dropped");
                    None
                }
            }
        } else {
            Some(Message::Binary(b))
        }
    };
    // Relayed signals of the batch being written, for the latency histogram once flushed.
    let mut relayed: Vec<(std::time::Instant, &'static str)> = Vec::new();
    let note = |item: &Outbound, relayed: &mut Vec<(std::time::Instant, &'static str)>| {
        if let Outbound::Event(env) = item {
            metrics::counter!("signal_events_out_total", "event" => env.event.label()).increment(1);
            if let Event::Signal(s) = &env.event {
                relayed.push((env.accepted_at, s.kind.label()));
            }
        }
    };
    let encode = |item: Outbound| -> Option<Message> {
        let bytes = match item {
            Outbound::Frame(b) => b,
            Outbound::Event(env) => {
                let w = *wire_slot.get()?;
                env.encoded(w, |e| wire::encode_event(w, e))?
            }
        };
        to_message(bytes)
    };
    loop {
        tokio::select! {
            biased;
            cmd = &mut close_rx => {
                let Ok(cmd) = cmd else { break };
                let finish = async {
                    if cmd.drain {
                        while let Ok(item) = rx.try_recv() {
                            if let Some(m) = encode(item) {
                                sink.feed(m).await?;
                            }
                        }
                    }
                    if let Some(m) = cmd.error.and_then(to_message) {
                        sink.feed(m).await?;
                    }
                    sink.send(Message::Close(Some(CloseFrame { code: cmd.code, reason: truncate(&cmd.reason).into() }))).await
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), finish).await;
                break;
            }
            _ = async { if let Some(p) = ping.as_mut() { p.tick().await } else { std::future::pending().await } } => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            item = rx.recv() => {
                let Some(item) = item else { break };
                let mut res = Ok(());
                let mut n = 0u64;
                note(&item, &mut relayed);
                if let Some(m) = encode(item) {
                    res = sink.feed(m).await;
                    n += 1;
                }
                // Batch what is already queued into one flush.
                while res.is_ok() && n < 64 {
                    match rx.try_recv() {
                        Ok(item) => {
                            note(&item, &mut relayed);
                            if let Some(m) = encode(item) {
                                res = sink.feed(m).await;
                                n += 1;
                            }
                        }
                        Err(_) => break,
                    }
                }
                metrics::counter!("signal_ws_messages_out_total", "endpoint" => label).increment(n);
                if res.is_err() || sink.flush().await.is_err() {
                    break;
                }
                for (accepted_at, kind) in relayed.drain(..) {
                    metrics::histogram!(crate::metrics::RELAY_LATENCY, "kind" => kind)
                        .record(accepted_at.elapsed().as_secs_f64());
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
