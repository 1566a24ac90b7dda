//! A connected, authenticated peer: its identity, its bounded outbound queue and the rooms
//! it is in. The connection task owns the socket; the hub only ever pushes to the queue.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{
    event::{CloseReason, Envelope, Format, Outbound},
    outbox::{Outbox, PushError},
};
use crate::ids::{ClientId, RoomId};

/// A session of one client on one connection.
#[derive(Debug)]
pub struct Session {
    /// Session id, sent in CONNECT_ACK.
    pub id: Uuid,
    /// The authenticated client.
    pub client_id: ClientId,
    /// When the session started.
    pub connected_at: DateTime<Utc>,
    /// Capabilities the client announced.
    pub capabilities: Vec<String>,
    /// Metadata the client announced.
    pub metadata: Value,
    /// Human-readable name (a JWT's `name` claim, a dialect's display name), if any.
    pub display_name: Option<String>,
    outbox: Arc<Outbox>,
    rooms: Mutex<Vec<RoomId>>,
    closing: AtomicBool,
    close_with_room: AtomicBool,
    /// Set once at most; boxed, as most sessions never carry one.
    close_reason: Mutex<Option<Box<CloseReason>>>,
    kill: Notify,
    /// For a session that may be resumed after its connection drops.
    resume: Option<Box<Resumable>>,
}

/// What a resumable session keeps.
#[derive(Debug)]
pub(crate) struct Resumable {
    /// The token that takes it back.
    pub(crate) token: Mutex<String>,
    /// Set while the session waits for a RESUME: which park this is.
    pub(crate) parked: Mutex<Option<u64>>,
    /// Parks so far.
    pub(crate) parks: std::sync::atomic::AtomicU64,
    /// Woken when the session parks.
    pub(crate) on_park: Notify,
}

/// Handed back by [`Session::try_send`] when the queue is full or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

// === impl Session ===

impl Session {
    /// A new session writing to `outbox` (bounded; its capacity is the slow-consumer limit).
    pub fn new(
        client_id: ClientId,
        format: Format,
        outbox: Arc<Outbox>,
        capabilities: Vec<String>,
        metadata: Value,
        display_name: Option<String>,
    ) -> Arc<Self> {
        outbox.set_format(format);
        Arc::new(Self {
            id: Uuid::new_v4(),
            client_id,
            connected_at: Utc::now(),
            capabilities,
            metadata,
            display_name,
            outbox,
            rooms: Mutex::new(Vec::new()),
            closing: AtomicBool::new(false),
            close_with_room: AtomicBool::new(false),
            close_reason: Mutex::new(None),
            kill: Notify::new(),
            resume: None,
        })
    }

    /// A new resumable session: [`Hub::resume`](super::Hub::resume) takes it back with
    /// `token` after its connection drops.
    pub(crate) fn new_resumable(
        client_id: ClientId,
        format: Format,
        outbox: Arc<Outbox>,
        capabilities: Vec<String>,
        metadata: Value,
        display_name: Option<String>,
        token: String,
    ) -> Arc<Self> {
        Self::new_resumable_with(
            Uuid::new_v4(),
            client_id,
            format,
            outbox,
            capabilities,
            metadata,
            display_name,
            token,
            Utc::now(),
        )
    }

    /// [`new_resumable`](Self::new_resumable) with a given id and start (a session
    /// taken over from another node).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_resumable_with(
        id: Uuid,
        client_id: ClientId,
        format: Format,
        outbox: Arc<Outbox>,
        capabilities: Vec<String>,
        metadata: Value,
        display_name: Option<String>,
        token: String,
        connected_at: DateTime<Utc>,
    ) -> Arc<Self> {
        let mut s = Arc::into_inner(Self::new(
            client_id,
            format,
            outbox,
            capabilities,
            metadata,
            display_name,
        ))
        .unwrap_or_else(|| unreachable!("a new session has one owner"));
        s.id = id;
        s.connected_at = connected_at;
        s.resume = Some(Box::new(Resumable {
            token: Mutex::new(token),
            parked: Mutex::new(None),
            parks: std::sync::atomic::AtomicU64::new(0),
            on_park: Notify::new(),
        }));
        Arc::new(s)
    }

    /// Whether the session may be resumed after its connection drops.
    pub fn is_resumable(&self) -> bool {
        self.resume.is_some()
    }

    /// The token that resumes this session, for a resumable one.
    pub fn resume_token(&self) -> Option<String> {
        self.resume.as_ref().map(|r| r.token.lock().clone())
    }

    pub(crate) fn resumable(&self) -> Option<&Resumable> {
        self.resume.as_deref()
    }

    /// Whether the session waits for a RESUME (its connection dropped).
    pub fn is_parked(&self) -> bool {
        self.resume
            .as_ref()
            .is_some_and(|r| r.parked.lock().is_some())
    }

    /// The session's queue.
    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Clears a close request, for a session taken back by a new connection.
    pub(crate) fn reopen(&self) {
        *self.close_reason.lock() = None;
        self.closing.store(false, Ordering::Release);
    }

    /// The connection's wire format (kept by its queue, which encodes for it).
    pub fn format(&self) -> Option<Format> {
        self.outbox.format()
    }

    /// The format's metric label.
    pub fn format_label(&self) -> &'static str {
        self.format().map_or("unknown", Format::label)
    }

    /// Queues a shared event. A full queue closes the session as a slow consumer.
    pub fn deliver(&self, env: Arc<Envelope>) -> bool {
        self.push(Outbound::Event(env))
    }

    /// Queues bytes already encoded for this connection. A full queue closes the session.
    pub fn send_frame(&self, frame: Bytes) -> bool {
        self.push(Outbound::Frame(frame))
    }

    /// Queues any item. A full queue closes the session.
    pub fn send(&self, item: Outbound) -> bool {
        self.push(item)
    }

    /// Queues without side effects; the caller decides what a full queue means.
    pub fn try_send(&self, item: Outbound) -> Result<(), QueueFull> {
        self.outbox.push(item).map_err(|_| QueueFull)
    }

    fn push(&self, item: Outbound) -> bool {
        match self.outbox.push(item) {
            Ok(()) => true,
            Err(PushError::Full(over)) => {
                metrics::counter!("signal_slow_consumer_disconnects_total").increment(1);
                tracing::info!(client_id = %self.client_id, session_id = %self.id, limit = %over, "slow consumer: closing");
                self.close(CloseReason::SlowConsumer(over));
                false
            }
            Err(PushError::Closed) => false,
        }
    }

    /// Asks the connection to close. The first reason wins.
    pub fn close(&self, reason: CloseReason) {
        if self.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.close_reason.lock() = Some(Box::new(reason));
        self.kill.notify_one();
        self.outbox.notify();
    }

    /// Binds the connection to its rooms: when a room it is in terminates under it, the
    /// session is closed (1000 "room closed") after the ROOM_CLOSED event. For dialects
    /// whose connection *is* one room (room-path).
    pub fn close_with_room(&self) {
        self.close_with_room.store(true, Ordering::Release);
    }

    /// Called by the hub when a room this session was in terminated under it.
    pub(crate) fn room_terminated(&self) {
        if self.close_with_room.load(Ordering::Acquire) {
            self.close(CloseReason::RoomClosed);
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// The reason [`close`](Self::close) was called with, once it was.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.close_reason.lock().as_deref().copied()
    }

    /// Resolves when the hub asks this connection to close, with the reason.
    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(r) = self.close_reason.lock().as_deref().copied() {
                return r;
            }
            self.kill.notified().await;
        }
    }

    /// Rooms this session is a member of.
    pub fn rooms(&self) -> Vec<RoomId> {
        self.rooms.lock().clone()
    }

    /// The name to show for this session: its display name, else its client id.
    pub fn name(&self) -> &str {
        self.display_name
            .as_deref()
            .unwrap_or(self.client_id.as_str())
    }

    /// Whether this session is a member of `room`.
    pub fn in_room(&self, room: &str) -> bool {
        self.rooms.lock().iter().any(|r| r.as_str() == room)
    }

    /// Whether this session and `other` share at least one room.
    pub fn shares_room_with(&self, other: &Session) -> bool {
        if std::ptr::eq(self, other) {
            return !self.rooms.lock().is_empty();
        }
        // Two sessions may test each other at once: lock in address order, never deadlock.
        let (first, second) = if (self as *const Self) < (other as *const Self) {
            (self, other)
        } else {
            (other, self)
        };
        let a = first.rooms.lock();
        let b = second.rooms.lock();
        a.iter().any(|r| b.contains(r))
    }

    pub(crate) fn add_room(&self, room: RoomId) {
        self.rooms.lock().push(room);
    }

    pub(crate) fn remove_room(&self, room: &str) {
        self.rooms.lock().retain(|r| r.as_str() != room);
    }
}
