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
use crate::{
    auth::Grants,
    ids::{ClientId, RoomId},
};

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
    /// Its negotiations so far, for the signaling metrics; boxed, made at its first
    /// join or offer.
    negotiation: Mutex<Option<Box<Negotiation>>>,
    /// It joined a room and has sent no ICE candidate since.
    awaits_candidate: AtomicBool,
    /// What its credential allows, when it limits rooms or gives the admin role.
    grants: Mutex<Option<Box<Grants>>>,
}

/// What the signaling metrics follow of one session's negotiations.
#[derive(Debug, Default)]
struct Negotiation {
    /// Offers it sent and got no answer to yet.
    offers: Vec<PendingOffer>,
    /// When it last joined a room, and which (until its first candidate after that).
    joined: Option<(std::time::Instant, RoomId)>,
}

/// An offer waiting for its answer.
#[derive(Debug)]
struct PendingOffer {
    /// To whom (a hash of the peer's id; `None`: to a room).
    to: Option<u64>,
    /// Sent when.
    at: std::time::Instant,
    /// In which room, if known.
    room: Option<RoomId>,
}

/// An offer the metrics are done with: how long it waited, and in which room.
#[derive(Debug)]
pub(crate) struct OfferOutcome {
    pub(crate) waited: std::time::Duration,
    pub(crate) room: Option<RoomId>,
}

/// Most offers a session keeps waiting for an answer (the oldest goes, unanswered).
const MAX_PENDING_OFFERS: usize = 16;

/// A peer's id as [`Negotiation::offers`] keeps it (no allocation per offer).
fn peer_key(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
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
            negotiation: Mutex::new(None),
            awaits_candidate: AtomicBool::new(false),
            grants: Mutex::new(None),
        })
    }

    /// What its credential allows.
    pub(crate) fn set_grants(&self, grants: Grants) {
        *self.grants.lock() = (grants != Grants::default()).then(|| Box::new(grants));
    }

    /// What its credential allows (any room, no admin role when it says nothing).
    pub fn grants(&self) -> Grants {
        self.grants.lock().as_deref().cloned().unwrap_or_default()
    }

    /// Whether it has the admin role.
    pub fn is_admin(&self) -> bool {
        self.grants.lock().as_ref().is_some_and(|g| g.admin)
    }

    /// It joined `room` now: its next ICE candidate is its first since.
    pub(crate) fn joined_room(&self, room: RoomId) {
        self.negotiation
            .lock()
            .get_or_insert_with(Default::default)
            .joined = Some((std::time::Instant::now(), room));
        self.awaits_candidate.store(true, Ordering::Release);
    }

    /// It sends an ICE candidate: how long after its last join, and in which room, if
    /// this is the first since.
    pub(crate) fn candidate_sent(&self) -> Option<(std::time::Duration, RoomId)> {
        // A load first: after its first candidate, a session's candidates write nothing.
        if !self.awaits_candidate.load(Ordering::Acquire)
            || !self.awaits_candidate.swap(false, Ordering::AcqRel)
        {
            return None;
        }
        let (joined, room) = self.negotiation.lock().as_mut()?.joined.take()?;
        Some((joined.elapsed(), room))
    }

    /// It sends an offer to `to` (`None`: its room) in `room`: the earlier offer to the
    /// same peer it replaces (or the oldest, when too many wait), if any.
    pub(crate) fn offer_sent(
        &self,
        to: Option<&str>,
        room: Option<RoomId>,
    ) -> Option<OfferOutcome> {
        let mut n = self.negotiation.lock();
        let n = n.get_or_insert_with(Default::default);
        let now = std::time::Instant::now();
        let to = to.map(peer_key);
        let replaced = match n.offers.iter().position(|o| o.to == to) {
            Some(i) => Some(n.offers.remove(i)),
            None if n.offers.len() >= MAX_PENDING_OFFERS => Some(n.offers.remove(0)),
            None => None,
        };
        n.offers.push(PendingOffer { to, at: now, room });
        replaced.map(|o| OfferOutcome {
            waited: now - o.at,
            room: o.room,
        })
    }

    /// `from` answers it: the offer it answers (one to `from`, else one to a room), if
    /// one waits.
    pub(crate) fn answer_from(&self, from: &str) -> Option<OfferOutcome> {
        let mut n = self.negotiation.lock();
        let offers = &mut n.as_mut()?.offers;
        let from = peer_key(from);
        let i = offers
            .iter()
            .position(|o| o.to == Some(from))
            .or_else(|| offers.iter().position(|o| o.to.is_none()))?;
        let o = offers.remove(i);
        Some(OfferOutcome {
            waited: o.at.elapsed(),
            room: o.room,
        })
    }

    /// It leaves `room` (or the room ends): how many of its offers there never got an
    /// answer.
    pub(crate) fn offers_left_in(&self, room: &str) -> usize {
        let mut n = self.negotiation.lock();
        let Some(n) = n.as_mut() else { return 0 };
        let before = n.offers.len();
        n.offers
            .retain(|o| o.room.as_ref().is_none_or(|r| r.as_str() != room));
        before - n.offers.len()
    }

    /// Its session ends: how many of its offers (of no room) never got an answer.
    pub(crate) fn offers_left(&self) -> usize {
        self.negotiation
            .lock()
            .as_mut()
            .map_or(0, |n| std::mem::take(&mut n.offers).len())
    }

    /// Its only room, if it is in exactly one.
    pub(crate) fn only_room(&self) -> Option<RoomId> {
        match self.rooms.lock().as_slice() {
            [r] => Some(r.clone()),
            _ => None,
        }
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
        self.close_reason.lock().as_deref().cloned()
    }

    /// Resolves when the hub asks this connection to close, with the reason.
    pub async fn closed(&self) -> CloseReason {
        loop {
            if let Some(r) = self.close_reason.lock().as_deref().cloned() {
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
