//! The connection driver shared by every dialect: one task per connection reads the
//! socket, hands each message to the dialect, and writes what the session's bounded queue
//! holds, in batches. The driver owns the timeouts (CONNECT, heartbeat), the
//! per-connection rate limit, the slow-consumer cut-off, the drain on shutdown and the
//! session's cleanup, so a dialect only turns messages into hub calls and back.
//!
//! Nothing is held while a connection is idle: the read buffer exists while bytes are in
//! it, the write buffer while bytes wait for the socket, and the queue allocates on its
//! first item. A message is handled synchronously when it can be (a relayed signal, a
//! heartbeat); work that waits on the store runs as a boxed future that lives only while
//! it runs, with the connection's writes going on meanwhile.

use std::{
    future::{Future, poll_fn},
    io,
    marker::PhantomData,
    mem::MaybeUninit,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::{Buf, Bytes, BytesMut};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use signal_core::{
    CoreError,
    hub::{
        CloseReason, ConnectParams, Envelope, Event, Format, Outbound, Outbox, Overflow, PushError,
        Session,
    },
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep},
};

use crate::{
    metrics::HotMetrics,
    state::{AppState, admit, refuse},
    ws::{
        Message, NotUpgrade, Socket, Text, Upgrade, close,
        frame::{self, Decoder, Limits, Msg, Opcode, WsError},
    },
};

/// Pings a connection may send before its session opens: a client that has not said who
/// it is gets a handful, not the authenticated rate.
const PINGS_BEFORE_SESSION: u32 = 16;

/// Most reads made while waiting for the client's close after the server's.
const LINGER_READS: usize = 16;

/// Largest read that lands on the stack when nothing is buffered.
const STACK_READ: usize = 16 * 1024;

/// What a dialect tells the driver after a message.
pub(crate) enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection with this code and reason (after what is queued).
    Close(u16, String),
}

/// Work that waits (on the store, the router): polled by the driver, which keeps writing
/// meanwhile. Boxed, so the connection's task stays small between messages.
pub(crate) type Pending<'a> = Pin<Box<dyn Future<Output = Flow> + Send + 'a>>;

/// How a dialect handled a message.
pub(crate) enum Step<'a> {
    /// Handled at once.
    Done(Flow),
    /// Handled once this completes.
    Wait(Pending<'a>),
}

impl Step<'_> {
    /// Wraps work that waits.
    pub(crate) fn wait<'a>(f: impl Future<Output = Flow> + Send + 'a) -> Step<'a> {
        Step::Wait(Box::pin(f))
    }
}

/// One wire dialect: how received messages become hub calls.
pub(crate) trait Dialect: Send + 'static {
    /// Metric label of the endpoint (`binary`, `ws`, `room_path`).
    const LABEL: &'static str;
    /// Whether the dialect's frames are WebSocket text messages (else binary).
    const TEXT: bool;

    /// Runs once, before the first message is read.
    fn start<'a>(&'a mut self, _conn: &'a mut Conn) -> Step<'a> {
        Step::Done(Flow::Continue)
    }

    /// Handles one data message (binary or text).
    fn on_message<'a>(&'a mut self, conn: &'a mut Conn, msg: Message) -> Step<'a>;

    /// Encodes an error the hub attaches to a close (e.g. "session replaced").
    fn close_error(&self, conn: &Conn, err: &CoreError) -> Option<Bytes>;

    /// Encodes a hub event for a connection of `format` (one of the dialect's); `None`
    /// if the dialect has no way to express it. Called at most once per event and
    /// format, however many receivers share it.
    fn encode_event(format: Format, env: &Envelope) -> Option<Bytes>;
}

/// A dialect whose messages may all wait (the JSON dialects): written as async methods,
/// each step boxed by the blanket [`Dialect`] impl.
pub(crate) trait AsyncDialect: Send + 'static {
    /// Metric label of the endpoint.
    const LABEL: &'static str;
    /// Whether the dialect's frames are WebSocket text messages.
    const TEXT: bool;

    /// Runs once, before the first message is read.
    fn start(&mut self, _conn: &mut Conn) -> impl Future<Output = Flow> + Send {
        async { Flow::Continue }
    }

    /// Handles one data message.
    fn on_message(&mut self, conn: &mut Conn, msg: Message) -> impl Future<Output = Flow> + Send;

    /// Encodes an error the hub attaches to a close.
    fn close_error(&self, conn: &Conn, err: &CoreError) -> Option<Bytes>;

    /// Encodes a hub event for a connection of `format`.
    fn encode_event(format: Format, env: &Envelope) -> Option<Bytes>;
}

impl<T: AsyncDialect> Dialect for T {
    const LABEL: &'static str = <T as AsyncDialect>::LABEL;
    const TEXT: bool = <T as AsyncDialect>::TEXT;

    fn start<'a>(&'a mut self, conn: &'a mut Conn) -> Step<'a> {
        Step::wait(AsyncDialect::start(self, conn))
    }

    fn on_message<'a>(&'a mut self, conn: &'a mut Conn, msg: Message) -> Step<'a> {
        Step::wait(AsyncDialect::on_message(self, conn, msg))
    }

    fn close_error(&self, conn: &Conn, err: &CoreError) -> Option<Bytes> {
        AsyncDialect::close_error(self, conn, err)
    }

    fn encode_event(format: Format, env: &Envelope) -> Option<Bytes> {
        <T as AsyncDialect>::encode_event(format, env)
    }
}

/// Per-connection state the dialect's handlers work on.
pub(crate) struct Conn {
    pub(crate) state: AppState,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) session: Option<Arc<Session>>,
    /// `{"from_client_id":"…"` for frames this session relays, built on first use.
    pub(crate) stamp: Option<Bytes>,
    /// The SFU's offer to a JSON-dialect member that just joined, sent once the join's
    /// own reply is queued (so it follows the reply). Boxed: set for an instant, once per
    /// join, and every idle connection carries the field.
    pub(crate) sfu_offer: Option<Box<(signal_core::ids::RoomId, String)>>,
    /// When the read that brought the message being handled returned.
    pub(crate) received_at: std::time::Instant,
    /// Boxed: the limiter is larger than the pointer, and off in many deployments.
    limiter: Option<Box<DefaultDirectRateLimiter>>,
    /// Set when a reply overflowed the queue: the connection ends as a slow consumer.
    slow: Option<Overflow>,
    /// The client's address and the endpoint's dialect, for the operator's log.
    pub(crate) peer: SocketAddr,
    pub(crate) dialect: &'static str,
}

// === impl Conn ===

impl Conn {
    /// Queues a response; a full queue marks the connection as a slow consumer.
    pub(crate) fn reply(&mut self, frame: Bytes) {
        if let Err(PushError::Full(over)) = self.outbox.push(Outbound::Frame(frame)) {
            metrics::counter!("signal_slow_consumer_disconnects_total").increment(1);
            self.slow.get_or_insert(over);
        }
    }

    /// Queues the SFU's offer a join left for this session, after what was replied.
    pub(crate) fn send_sfu_offer(&mut self) {
        if let (Some(offer), Some(session)) = (self.sfu_offer.take(), &self.session) {
            let (room, sdp) = *offer;
            self.state.hub.offer_from_sfu(session, &room, sdp);
        }
    }

    /// The established session, or 401.
    pub(crate) fn session(&self) -> Result<&Arc<Session>, CoreError> {
        self.session
            .as_ref()
            .ok_or_else(|| CoreError::unauthorized("Not connected: send CONNECT first"))
    }

    /// The session's wire format, once connected.
    pub(crate) fn format(&self) -> Option<Format> {
        self.outbox.format()
    }

    /// Opens the hub session for this connection and fixes its wire format.
    pub(crate) async fn connect(
        &mut self,
        params: ConnectParams,
    ) -> Result<Arc<Session>, CoreError> {
        let format = params.format;
        let session = match self.state.hub.connect(params, self.outbox.clone()).await {
            Ok(s) => s,
            Err(e) => {
                self.log_refused(&e);
                return Err(e);
            }
        };
        tracing::Span::current().record("client_id", tracing::field::display(&session.client_id));
        crate::oplog::opened(self.peer, self.dialect, &session, format.label());
        self.session = Some(session.clone());
        Ok(session)
    }

    /// Logs a refused credential (or a refused session: a ban, a bad CONNECT) for the
    /// operator.
    pub(crate) fn log_refused(&self, e: &CoreError) {
        crate::oplog::refused(self.peer, self.dialect, e);
    }

    /// Takes over a resumed session: its queue becomes this connection's.
    pub(crate) fn adopt(&mut self, session: Arc<Session>) {
        tracing::Span::current().record("client_id", tracing::field::display(&session.client_id));
        self.outbox = session.outbox().clone();
        self.session = Some(session);
    }

    /// Counts a message against the per-connection rate; false when over it.
    pub(crate) fn within_rate(&self) -> bool {
        self.limiter.as_ref().is_none_or(|l| l.check().is_ok())
    }
}

/// What a connection holds until it ends: its slot in the connection counts and its
/// place in the drain's task tracker.
pub(crate) struct Guard {
    pub(crate) _slot: crate::accept::WsSlot,
    pub(crate) _token: tokio_util::task::task_tracker::TaskTrackerToken,
}

/// Why a connection ends. The one place each cause gets its close code, its close
/// reason, and the reason its session's rooms are told.
enum Cause {
    /// The client closed (a close frame).
    ClientClosed,
    /// The stream ended without a close frame.
    Lost,
    /// The dialect ended the connection while it opened (a refused credential or room).
    Refused(u16, String),
    /// The dialect ended the connection on a message (DISCONNECT, a fatal error).
    Dialect(u16, String),
    /// More pings than a connection without a session may send.
    PingsBeforeSession,
    /// A ping over the message rate.
    PingRate(u32),
    /// A reply overflowed the connection's queue.
    SlowConsumer(Overflow),
    /// The client broke the WebSocket protocol.
    Protocol(WsError),
    /// Reading or writing failed: no close frame can be sent.
    Failed,
    /// No session within `server.connection_timeout`.
    ConnectTimeout(Duration),
    /// Nothing received within `heartbeat.timeout`.
    HeartbeatTimeout(Duration),
    /// The hub asked the session to close.
    Hub(CloseReason),
    /// The server is draining.
    Shutdown,
}

impl Cause {
    fn code(&self) -> u16 {
        match self {
            Self::ClientClosed | Self::Lost => close::NORMAL,
            Self::Refused(code, _) | Self::Dialect(code, _) => *code,
            Self::PingsBeforeSession
            | Self::PingRate(_)
            | Self::SlowConsumer(_)
            | Self::ConnectTimeout(_)
            | Self::HeartbeatTimeout(_) => close::POLICY,
            Self::Protocol(e) => e.close_code(),
            Self::Failed => close::ABNORMAL,
            Self::Hub(r) => match r {
                CloseReason::SlowConsumer(_)
                | CloseReason::Replaced
                | CloseReason::Kicked(_)
                | CloseReason::CredentialExpired => close::POLICY,
                CloseReason::RoomClosed | CloseReason::Resumed => close::NORMAL,
                CloseReason::ShuttingDown => close::GOING_AWAY,
            },
            Self::Shutdown => close::GOING_AWAY,
        }
    }

    fn reason(&self) -> String {
        match self {
            Self::ClientClosed | Self::Lost | Self::Failed => String::new(),
            Self::Refused(_, r) | Self::Dialect(_, r) => r.clone(),
            Self::PingsBeforeSession => {
                format!("more than {PINGS_BEFORE_SESSION} pings before CONNECT")
            }
            Self::PingRate(n) => {
                format!("rate limit exceeded: pings count toward the {n} messages per minute")
            }
            Self::SlowConsumer(over) => CloseReason::SlowConsumer(*over).text(),
            Self::Protocol(WsError::TooBig { limit }) => {
                format!("message larger than {limit} bytes")
            }
            Self::Protocol(e) => e.reason(),
            Self::ConnectTimeout(d) => format!("CONNECT not received within {}s", d.as_secs()),
            Self::HeartbeatTimeout(d) => {
                format!("heartbeat timeout: nothing received for {}s", d.as_secs())
            }
            Self::Hub(r) => r.text(),
            Self::Shutdown => "server shutting down".into(),
        }
    }

    /// What the session's rooms are told; "left" is a goodbye (the client's own close).
    fn leave(&self) -> &'static str {
        match self {
            Self::Dialect(..) => "left",
            Self::HeartbeatTimeout(_) => "heartbeat timeout",
            Self::Hub(r) => r.leave_reason(),
            Self::Shutdown => "server shutting down",
            _ => "disconnected",
        }
    }

    /// Whether a resumable session waits for a RESUME after this (rather than leaving its
    /// rooms): when the connection was lost, not when it was ended on purpose.
    fn parks(&self) -> bool {
        matches!(
            self,
            Self::Lost | Self::Failed | Self::HeartbeatTimeout(_) | Self::Hub(CloseReason::Resumed)
        )
    }

    /// Whether what is queued is still sent before the close: not to a client that is
    /// not reading it.
    fn drains(&self) -> bool {
        !matches!(
            self,
            Self::SlowConsumer(_) | Self::Hub(CloseReason::SlowConsumer(_))
        )
    }
}

/// How the connection ends: its cause and an error to send before the close frame.
struct End {
    cause: Cause,
    error: Option<Bytes>,
}

impl From<Cause> for End {
    fn from(cause: Cause) -> Self {
        Self { cause, error: None }
    }
}

/// What woke the driver.
enum Wake {
    Message(Message),
    /// A ping, answered (the latest of several pending) if within the rate limit.
    Ping(Bytes),
    /// The client closed (a close frame).
    Closed,
    /// The stream ended without a close frame.
    Lost,
    /// The client broke the WebSocket protocol.
    Invalid(WsError),
    /// Reading or writing failed.
    Failed(io::Error),
    /// The CONNECT or heartbeat deadline passed.
    Timeout,
    /// The hub asked the session to close.
    HubClose,
    /// The server is draining.
    Shutdown,
}

/// The socket with its framing and buffers.
struct Link<D> {
    io: Socket,
    decoder: Decoder,
    /// Received bytes not yet decoded; empty (no allocation) between messages.
    rbuf: BytesMut,
    /// Encoded frames not yet written; empty (no allocation) when all is written.
    wbuf: BytesMut,
    read_size: usize,
    /// Stop pulling from the queue, and stop reading, once this much waits for the socket.
    write_size: usize,
    /// The payload of the latest ping not yet answered while the write buffer was full: it
    /// is written once the buffer has room, and a newer ping replaces it (RFC 6455
    /// §5.5.3), so a client that pings and never reads cannot grow the buffer.
    pong: Option<Bytes>,
    opcode: Opcode,
    /// The queue had more than one batch the last time it was drained.
    more_queued: bool,
    /// Where the payloads of a resumable session's batch lie in it (reused, empty
    /// between batches).
    kept: Vec<std::ops::Range<usize>>,
    /// Frames this connection sent from its queue.
    frames_out: u64,
    /// For a resumable session in a cluster: the inbox position marked before each of
    /// `kept` (reused, empty between batches), the last one marked and not yet followed
    /// by a frame, and the batch being kept in the cluster (nothing is written until it
    /// is).
    marks: Vec<Option<signal_core::router::InboxPos>>,
    pending_mark: Option<signal_core::router::InboxPos>,
    mirroring: Option<Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    write_failed: bool,
    /// When the last message (of any kind) arrived.
    last_in: Instant,
    hot: Arc<HotMetrics>,
    endpoint: usize,
    /// The dialect, whose `encode_event` encodes hub events (no state of its own).
    dialect: PhantomData<fn() -> D>,
}

// === impl Link ===

impl<D: Dialect> Link<D> {
    /// Decodes the next message out of what was read; pings are answered here.
    fn poll_decoded(&mut self) -> Option<Wake> {
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(None) => {
                    if self.rbuf.is_empty() {
                        // Release the buffer between messages.
                        self.rbuf = BytesMut::new();
                    }
                    return None;
                }
                Err(e) => return Some(Wake::Invalid(e)),
                Ok(Some(msg)) => match msg {
                    Msg::Text(b) => return Some(Wake::Message(Message::Text(Text::new(b)))),
                    Msg::Binary(b) => return Some(Wake::Message(Message::Binary(b))),
                    Msg::Ping(p) => return Some(Wake::Ping(p)),
                    Msg::Pong(_) => {}
                    Msg::Close(_) => return Some(Wake::Closed),
                },
            }
        }
    }

    /// Reads what the socket has. Ready(Ok(false)) at the end of the stream.
    ///
    /// With nothing buffered, the read lands on the stack and is copied into a buffer
    /// only if bytes came: a poll that finds nothing allocates nothing.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.rbuf.is_empty() {
            let mut stack = [MaybeUninit::<u8>::uninit(); STACK_READ];
            let limit = self.read_size.min(STACK_READ);
            let mut rb = ReadBuf::uninit(&mut stack[..limit]);
            return match Pin::new(&mut self.io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) if rb.filled().is_empty() => Poll::Ready(Ok(false)),
                Poll::Ready(Ok(())) => {
                    // Activity is counted per read, not per message: one clock read.
                    self.last_in = Instant::now();
                    let got = rb.filled();
                    let mut buf = BytesMut::with_capacity(got.len().max(self.read_size));
                    buf.extend_from_slice(got);
                    self.rbuf = buf;
                    Poll::Ready(Ok(true))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        // Part of a frame is buffered: read straight after it.
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size / 2 {
            self.rbuf.reserve(self.read_size);
        }
        match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(n)) => {
                self.last_in = Instant::now();
                Poll::Ready(Ok(n > 0))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Moves queued items into the write buffer and writes what the socket takes.
    /// Returns an error when the socket failed (now or before).
    fn poll_write_out(&mut self, cx: &mut Context<'_>, outbox: &Outbox) -> io::Result<()> {
        if self.write_failed {
            // Reported again on every call: the step that swallowed it (see `run`) must
            // not hide it from the connection's loop.
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        loop {
            // Always registered with the queue: a close request wakes the task through it.
            if outbox.poll_ready(cx).is_ready() {
                self.more_queued = true;
            }
            // A batch is kept in the cluster before any of it is written.
            if let Some(m) = self.mirroring.as_mut() {
                match m.as_mut().poll(cx) {
                    Poll::Ready(()) => self.mirroring = None,
                    Poll::Pending => return Ok(()),
                }
            }
            if self.wbuf.len() < self.write_size
                && let Some(p) = self.pong.take()
            {
                frame::write_frame(&mut self.wbuf, Opcode::Pong, &p);
            }
            if self.more_queued && self.wbuf.len() < self.write_size {
                let mut out = std::mem::take(&mut self.wbuf);
                if out.capacity() == 0 {
                    // One allocation for the batch, not one per frame that grows it.
                    out.reserve(self.write_size);
                }
                let mut n = 0u64;
                let format = outbox.format();
                let limit = self.write_size;
                // One clock read per batch, for the relay latency of what it holds.
                let now = std::time::Instant::now();
                // A resumable session's queue keeps what was sent, for a RESUME: the
                // payloads' places in the batch, handed over once the batch is made.
                let keep = outbox.keeps_sent();
                let mut kept = std::mem::take(&mut self.kept);
                let mut marks = std::mem::take(&mut self.marks);
                let mut pending = self.pending_mark.take();
                self.more_queued = outbox.drain(usize::MAX, |item| {
                    if let Outbound::Mark(p) = item {
                        pending = Some(p);
                        return true;
                    }
                    let start = out.len();
                    if self.encode(item, &mut out, format, now) {
                        n += 1;
                        if keep && let Some(h) = frame::header_len(&out[start..]) {
                            kept.push(start + h..out.len());
                            marks.push(pending.take());
                        }
                    }
                    out.len() < limit
                });
                self.pending_mark = pending;
                if !kept.is_empty() {
                    let sent = outbox.sent(&out, &kept, self.frames_out);
                    if let (Some(sent), Some(mirror)) = (sent, outbox.mirror()) {
                        let frames = kept
                            .iter()
                            .zip(marks.drain(..))
                            .skip(sent.skipped)
                            .map(|(r, mark)| signal_core::hub::BatchFrame {
                                payload: Bytes::copy_from_slice(&out[r.clone()]),
                                mark,
                            })
                            .collect();
                        self.mirroring =
                            Some(Box::pin(mirror.keep(sent.first, frames, sent.oldest)));
                    }
                    kept.clear();
                    marks.clear();
                }
                self.kept = kept;
                self.marks = marks;
                self.frames_out += n;
                self.wbuf = out;
                self.hot.ws_out[self.endpoint].increment(n);
                if self.mirroring.is_some() {
                    // Written once kept.
                    continue;
                }
            }
            if self.wbuf.is_empty() {
                if self.wbuf.capacity() > 0 {
                    self.wbuf = BytesMut::new();
                }
                return Ok(());
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.wbuf) {
                Poll::Ready(Ok(0)) => {
                    self.write_failed = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Poll::Ready(Ok(n)) => {
                    self.wbuf.advance(n);
                    if self.wbuf.is_empty() {
                        // Plain TCP has nothing to flush; TLS pushes its records here.
                        if let Poll::Ready(Err(e)) = Pin::new(&mut self.io).poll_flush(cx) {
                            self.write_failed = true;
                            return Err(e);
                        }
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.write_failed = true;
                    return Err(e);
                }
                Poll::Pending => return Ok(()),
            }
        }
    }

    /// Appends one queued item as a WebSocket frame; false if it could not be encoded.
    fn encode(
        &self,
        item: Outbound,
        out: &mut BytesMut,
        format: Option<Format>,
        now: std::time::Instant,
    ) -> bool {
        let bytes = match item {
            Outbound::Mark(_) => return false,
            Outbound::Frame(b) => b,
            Outbound::Encoded(e) => {
                let k = HotMetrics::kind_index(e.kind);
                self.hot.events_out[3 + k].increment(1);
                self.hot.relay_latency[k]
                    .record(now.saturating_duration_since(e.accepted_at).as_secs_f64());
                let len = e.len();
                let mut ws = [0u8; 10];
                let n = frame::encode_header(self.opcode, len, &mut ws);
                out.reserve(n + len);
                out.extend_from_slice(&ws[..n]);
                out.extend_from_slice(e.head());
                for part in &e.parts {
                    out.extend_from_slice(part);
                }
                return true;
            }
            Outbound::Event(env) => {
                // Events reach a queue only once its session opened and fixed the format.
                let Some(f) = format else { return false };
                self.hot.events_out[HotMetrics::event_index(&env.event)].increment(1);
                if let Event::Signal(s) = &env.event {
                    self.hot.relay_latency[HotMetrics::kind_index(s.kind)]
                        .record(now.saturating_duration_since(env.accepted_at).as_secs_f64());
                }
                match env.encoded(f, |e| D::encode_event(f, e)) {
                    Some(b) => b,
                    None => return false,
                }
            }
        };
        frame::write_frame(out, self.opcode, &bytes);
        true
    }

    /// Writes everything buffered (and flushes), within the caller's timeout.
    async fn write_all(&mut self) -> io::Result<()> {
        while !self.wbuf.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut self.io).poll_write(cx, &self.wbuf)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.wbuf.advance(n);
        }
        poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await
    }
}

/// Runs a dialect step to completion, writing the connection's queue meanwhile.
async fn run<D: Dialect>(step: Step<'_>, link: &mut Link<D>, outbox: &Outbox) -> Flow {
    match step {
        Step::Done(flow) => flow,
        Step::Wait(mut fut) => {
            poll_fn(|cx| {
                if let Poll::Ready(flow) = fut.as_mut().poll(cx) {
                    return Poll::Ready(flow);
                }
                // A failed write is reported again to the loop; the step finishes first.
                let _ = link.poll_write_out(cx, outbox);
                Poll::Pending
            })
            .await
        }
    }
}

/// Serves one upgraded WebSocket with `dialect` until it closes.
///
/// The setup runs before the future is built, so the future (the connection's whole
/// task) captures what the connection uses and not its arguments as well.
pub(crate) fn drive<D: Dialect>(
    io: Socket,
    state: AppState,
    mut dialect: D,
    guard: Guard,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send {
    let cfg = state.config.clone();
    let s = &cfg.server;
    let mut outbox = Outbox::with_limits(s.outbound_queue.max(1), s.outbound_queue_bytes);
    let limiter = if cfg.security.rate_limit_enabled {
        std::num::NonZeroU32::new(cfg.security.max_messages_per_minute)
            .map(|n| Box::new(RateLimiter::direct(Quota::per_minute(n))))
    } else {
        None
    };
    let endpoint = HotMetrics::endpoint_index(D::LABEL);
    let mut link = Link::<D> {
        io,
        decoder: Decoder::new(Limits {
            max_frame: s.max_frame_size.unwrap_or(s.max_message_size),
            max_message: s.max_message_size,
        }),
        rbuf: BytesMut::new(),
        wbuf: BytesMut::new(),
        read_size: s.read_buffer_size.max(256),
        write_size: s.write_buffer_size.max(256),
        pong: None,
        opcode: if D::TEXT {
            Opcode::Text
        } else {
            Opcode::Binary
        },
        more_queued: false,
        kept: Vec::new(),
        frames_out: 0,
        marks: Vec::new(),
        pending_mark: None,
        mirroring: None,
        write_failed: false,
        last_in: Instant::now(),
        hot: state.metrics.clone(),
        endpoint,
        dialect: PhantomData,
    };
    let started = Instant::now();
    let mut conn = Conn {
        state: state.clone(),
        outbox: outbox.clone(),
        session: None,
        stamp: None,
        sfu_offer: None,
        received_at: started.into_std(),
        limiter,
        slow: None,
        peer,
        dialect: D::LABEL,
    };
    let connect_timeout = Duration::from_secs(s.connection_timeout.max(1));
    let heartbeat_timeout = Duration::from_secs(cfg.heartbeat.timeout.max(1));
    // Browsers cannot send WebSocket pings but answer the server's: text dialects get one
    // per heartbeat interval, so an idle browser stays alive (its pong is activity) and a
    // vanished one still times out.
    let ping_every = D::TEXT.then(|| Duration::from_secs(cfg.heartbeat_interval().max(1)));
    let mut next_ping = ping_every.map(|d| started + d);
    let shutdown = state.shutdown.clone();
    drop(state);
    async move {
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        let mut timer: Pin<&mut Sleep> = std::pin::pin!(tokio::time::sleep_until(
            started + connect_timeout.min(ping_every.unwrap_or(connect_timeout))
        ));

        let first = run(dialect.start(&mut conn), &mut link, &outbox).await;
        // A resume at the start hands the connection the resumed session's queue.
        if !Arc::ptr_eq(&outbox, &conn.outbox) {
            outbox = conn.outbox.clone();
        }
        if conn.session.is_some() {
            let due = Instant::now() + heartbeat_timeout;
            if due < timer.deadline() {
                timer.as_mut().reset(due);
            }
        }
        let end = if let Flow::Close(code, reason) = first {
            End::from(Cause::Refused(code, reason))
        } else {
            // The shutdown token is checked before the task sleeps and every so many
            // turns of a busy connection, not on every message (it takes a lock).
            let mut until_shutdown_check = 0u32;
            let mut pings_before_session = 0u32;
            loop {
                let wake = poll_fn(|cx| {
                    loop {
                        if until_shutdown_check == 0 {
                            if cancelled.as_mut().poll(cx).is_ready() {
                                return Poll::Ready(Wake::Shutdown);
                            }
                            until_shutdown_check = 32;
                        }
                        until_shutdown_check -= 1;
                        if let Some(w) = link.poll_decoded() {
                            return Poll::Ready(w);
                        }
                        if let Err(e) = link.poll_write_out(cx, &outbox) {
                            return Poll::Ready(Wake::Failed(e));
                        }
                        // After the queue's waker is registered (in `poll_write_out`): a
                        // close request comes with a wake-up that may have been taken there.
                        if conn.session.as_ref().is_some_and(|s| s.is_closing()) {
                            return Poll::Ready(Wake::HubClose);
                        }
                        // Backpressure: while the socket does not take what waits for it,
                        // nothing more is read (the socket's writability wakes the task).
                        if link.wbuf.len() < link.write_size {
                            match link.poll_fill(cx) {
                                Poll::Ready(Ok(true)) => continue,
                                Poll::Ready(Ok(false)) => return Poll::Ready(Wake::Lost),
                                Poll::Ready(Err(e)) => return Poll::Ready(Wake::Failed(e)),
                                Poll::Pending => {}
                            }
                        }
                        if timer.as_mut().poll(cx).is_ready() {
                            let now = Instant::now();
                            let due = if conn.session.is_some() {
                                link.last_in + heartbeat_timeout
                            } else {
                                started + connect_timeout
                            };
                            if now >= due {
                                return Poll::Ready(Wake::Timeout);
                            }
                            let mut next = due;
                            if let (Some(at), Some(every)) = (next_ping.as_mut(), ping_every) {
                                if now >= *at {
                                    frame::write_frame(&mut link.wbuf, Opcode::Ping, &[]);
                                    *at = now + every;
                                }
                                next = next.min(*at);
                            }
                            timer.as_mut().reset(next);
                            continue;
                        }
                        if cancelled.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(Wake::Shutdown);
                        }
                        return Poll::Pending;
                    }
                })
                .await;
                match wake {
                    Wake::Ping(p) => {
                        // Control frames count toward the message rate: a ping over it
                        // ends the connection. A client that reads gets a pong for every
                        // ping; while the write buffer is full, only the latest waits.
                        if conn.session.is_none() {
                            pings_before_session += 1;
                            if pings_before_session > PINGS_BEFORE_SESSION {
                                break End::from(Cause::PingsBeforeSession);
                            }
                        }
                        if !conn.within_rate() {
                            let n = conn.state.config.security.max_messages_per_minute;
                            break End::from(Cause::PingRate(n));
                        }
                        if link.pong.is_none() && link.wbuf.len() < link.write_size {
                            frame::write_frame(&mut link.wbuf, Opcode::Pong, &p);
                        } else {
                            link.pong = Some(p);
                        }
                    }
                    Wake::Message(msg) => {
                        link.hot.ws_in[endpoint].increment(1);
                        conn.received_at = link.last_in.into_std();
                        let flow =
                            run(dialect.on_message(&mut conn, msg), &mut link, &outbox).await;
                        // A RESUME hands the connection the resumed session's queue.
                        if !Arc::ptr_eq(&outbox, &conn.outbox) {
                            outbox = conn.outbox.clone();
                        }
                        // Once the session opens, the heartbeat deadline may come before the
                        // CONNECT deadline the timer was set for.
                        if conn.session.is_some() {
                            let due = link.last_in + heartbeat_timeout;
                            if due < timer.deadline() {
                                timer.as_mut().reset(due);
                            }
                        }
                        if let Flow::Close(code, reason) = flow {
                            break End::from(Cause::Dialect(code, reason));
                        }
                        if let Some(over) = conn.slow {
                            break End::from(Cause::SlowConsumer(over));
                        }
                    }
                    Wake::Closed => break End::from(Cause::ClientClosed),
                    Wake::Lost => break End::from(Cause::Lost),
                    Wake::Invalid(e) => {
                        tracing::debug!(error = %e, "WebSocket protocol error");
                        break End::from(Cause::Protocol(e));
                    }
                    Wake::Failed(e) => {
                        tracing::debug!(error = %e, "socket failed");
                        break End::from(Cause::Failed);
                    }
                    Wake::Timeout => {
                        break End::from(if conn.session.is_none() {
                            Cause::ConnectTimeout(connect_timeout)
                        } else {
                            Cause::HeartbeatTimeout(heartbeat_timeout)
                        });
                    }
                    Wake::HubClose => {
                        let Some(r) = conn.session.as_ref().and_then(|s| s.close_reason()) else {
                            continue;
                        };
                        let error = r.error().and_then(|e| dialect.close_error(&conn, &e));
                        break End {
                            cause: Cause::Hub(r),
                            error,
                        };
                    }
                    Wake::Shutdown => break End::from(Cause::Shutdown),
                }
            }
        };
        // The teardown runs once: boxed, so its futures do not size every idle connection.
        Box::pin(teardown(conn, link, outbox, end)).await;
        drop(guard);
    }
}

/// Leaves the session's rooms, then closes the socket.
async fn teardown<D: Dialect>(mut conn: Conn, link: Link<D>, outbox: Arc<Outbox>, end: End) {
    let mut parked = false;
    let mut handed = false;
    if let Some(session) = conn.session.take() {
        let leave = end.cause.leave();
        let hub = &conn.state.hub;
        if session.is_resumable() && hub.hands_off() {
            // Draining in a cluster: the session waits in the cluster for its client,
            // which resumes elsewhere (or here, restarted) on the close frame's 1001.
            // What is queued is not sent: nothing leaves unkept.
            hub.hand_off(&session).await;
            handed = true;
        } else if session.is_resumable()
            && !hub.resume_window().is_zero()
            && !hub.is_shutting_down()
            && end.cause.parks()
        {
            // What is queued stays queued, for the connection that resumes it.
            let announce = !matches!(end.cause, Cause::Hub(CloseReason::Resumed));
            hub.park(&session, leave, announce).await;
            parked = true;
        } else {
            hub.disconnect(&session, leave, matches!(end.cause, Cause::Dialect(..)))
                .await;
        }
        tracing::debug!(code = end.cause.code(), reason = %end.cause.reason(), parked, "session closed");
        crate::oplog::closed(
            conn.peer,
            conn.dialect,
            Some(&session),
            end.cause.code(),
            &end.cause.reason(),
            parked,
        );
    } else {
        crate::oplog::closed(
            conn.peer,
            conn.dialect,
            None,
            end.cause.code(),
            &end.cause.reason(),
            false,
        );
    }
    drop(conn);
    if parked && !matches!(end.cause, Cause::Hub(CloseReason::Resumed)) {
        // The connection was lost: no close frame, which a half-open socket could still
        // carry to the client as a deliberate end. The client sees the stream end and
        // resumes.
        return;
    }
    let drain = end.cause.drains() && !parked && !handed;
    finish(link, &outbox, end, drain).await;
    if !parked {
        outbox.close();
    }
}

/// Sends what is queued (unless `drain` is false), the error and the close frame, then
/// waits briefly for the client's close so the socket ends cleanly.
async fn finish<D: Dialect>(mut link: Link<D>, outbox: &Outbox, end: End, drain: bool) {
    if matches!(end.cause, Cause::Failed) || link.write_failed {
        return;
    }
    let write = async {
        // A batch being kept in the cluster is written once kept.
        if let Some(m) = link.mirroring.take() {
            m.await;
        }
        if drain {
            let mut out = std::mem::take(&mut link.wbuf);
            let format = outbox.format();
            let now = std::time::Instant::now();
            outbox.drain(usize::MAX, |item| {
                link.encode(item, &mut out, format, now);
                true
            });
            link.wbuf = out;
        }
        if let Some(e) = &end.error {
            frame::write_frame(&mut link.wbuf, link.opcode, e);
        }
        let close = frame::close_payload(end.cause.code(), &end.cause.reason());
        frame::write_frame(&mut link.wbuf, Opcode::Close, &close);
        link.write_all().await?;
        poll_fn(|cx| Pin::new(&mut link.io).poll_shutdown(cx)).await
    };
    if tokio::time::timeout(Duration::from_secs(2), write)
        .await
        .is_ok_and(|r| r.is_ok())
    {
        // Read (and drop) until the client's close or the end of the stream. Everything
        // buffered is decoded before the next read, so what is read never piles up.
        // A client that keeps sending instead of closing gets a few reads, not a second
        // of them.
        let linger = async {
            for _ in 0..LINGER_READS {
                while let Some(wake) = link.poll_decoded() {
                    if let Wake::Closed | Wake::Invalid(_) = wake {
                        return;
                    }
                }
                match poll_fn(|cx| link.poll_fill(cx)).await {
                    Ok(true) => {}
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), linger).await;
    }
}

/// Admits the upgrade (drain, origin) and serves the upgraded WebSocket in the
/// connection's one task.
pub(crate) fn upgrade<F, Fut>(
    state: AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    ws: Result<Upgrade, NotUpgrade>,
    endpoint: &'static str,
    usage: &'static str,
    serve: F,
) -> Response
where
    F: FnOnce(Socket, AppState, Guard, SocketAddr) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let ws = match ws {
        Ok(ws) => ws,
        Err(NotUpgrade(why)) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                [
                    (header::UPGRADE, "websocket"),
                    (header::SEC_WEBSOCKET_VERSION, "13"),
                ],
                format!("{usage}not a WebSocket upgrade: {why}\n"),
            )
                .into_response();
        }
    };
    let slot = match admit(&state, headers, endpoint) {
        Ok(s) => s,
        Err((status, why)) => return refuse(status, why),
    };
    let guard = Guard {
        _slot: slot,
        _token: state.tracker.token(),
    };
    ws.on_upgrade(move |socket| serve(socket, state, guard, peer))
}
