//! A connection's bounded outbound queue: many producers (the hub, on behalf of other
//! sessions), one consumer (the connection task).
//!
//! Built for the two things a signaling server spends per connection: nothing is held
//! while the queue is empty (a `VecDeque` allocates on first use and is released when a
//! drained queue had grown), and a push wakes the consumer only when the queue goes from
//! empty to non-empty, through one `AtomicWaker` instead of a waiter list.

use std::{
    collections::VecDeque,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures_util::task::AtomicWaker;
use parking_lot::Mutex;

use super::event::{Format, Outbound};

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue is at one of its limits: the consumer is not keeping up.
    Full(Overflow),
    /// The consumer is gone.
    Closed,
}

/// Which limit a full queue reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// It holds this many items.
    Messages(usize),
    /// The item would take it past this many bytes.
    Bytes(usize),
}

impl std::fmt::Display for Overflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Messages(n) => write!(f, "{n} messages"),
            Self::Bytes(n) => write!(f, "{n} bytes"),
        }
    }
}

/// A queue this long or longer is released once drained, so a burst does not pin memory.
const KEEP_CAPACITY: usize = 16;

/// The bounded queue between the hub and one connection.
#[derive(Debug)]
pub struct Outbox {
    items: Mutex<Queue>,
    capacity: usize,
    max_bytes: usize,
    /// Set by a producer (or [`notify`](Self::notify)); taken by the consumer.
    ready: AtomicBool,
    waker: AtomicWaker,
    /// The format the consumer encodes events for, fixed when its session opens.
    format: OnceLock<Format>,
    /// For a resumable session: what was sent lately, by sequence number.
    replay: OnceLock<Mutex<Replay>>,
    /// For a resumable session in a cluster: where the writer keeps each batch before
    /// it sends it.
    mirror: OnceLock<Arc<super::mirror::Mirror>>,
}

/// The frames a resumable session's connection sent lately, numbered: the `n`th frame
/// sent (counting from the connection's first) is sequence number `n`. Bounded in count
/// and bytes; the oldest go first. The frames' payloads are copied, one after another,
/// into one buffer: nothing is allocated per frame, and nothing kept holds on to a
/// larger buffer a frame was sliced from.
#[derive(Debug)]
struct Replay {
    /// The sequence number of the last frame sent.
    sent: u64,
    /// The lengths of the last frames sent, oldest first; the last is `sent`.
    lens: VecDeque<u32>,
    /// Their payloads, in the same order.
    bytes: VecDeque<u8>,
    max_items: usize,
    max_bytes: usize,
    /// Frames at the queue's front that are not counted (a RESUME_ACK).
    uncounted: usize,
    /// Whether a frame was kept yet: the first one's number comes from the connection.
    started: bool,
}

impl Replay {
    fn keep(&mut self, payload: &[u8]) {
        if self.uncounted > 0 {
            self.uncounted -= 1;
            return;
        }
        self.sent += 1;
        self.lens
            .push_back(u32::try_from(payload.len()).unwrap_or(u32::MAX));
        self.bytes.extend(payload);
        while self.lens.len() > self.max_items
            || (self.bytes.len() > self.max_bytes && self.lens.len() > 1)
        {
            if let Some(n) = self.lens.pop_front() {
                self.bytes.drain(..(n as usize).min(self.bytes.len()));
            }
        }
    }
}

/// What [`Outbox::sent`] counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// Frames at the front that were not counted.
    pub skipped: usize,
    /// The number of the first frame counted.
    pub first: u64,
    /// The oldest number kept.
    pub oldest: u64,
}

/// Why [`Outbox::rewind`] could not go back to a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindError {
    /// The client says it received more than was sent.
    Ahead {
        /// The last frame sent.
        sent: u64,
    },
    /// Frames after the client's number are no longer kept.
    Dropped {
        /// The oldest number still kept.
        oldest: u64,
    },
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// The sum of the items' [`Outbound::size`].
    bytes: usize,
    /// Items that are [`Outbound::Mark`]s (not counted against the capacity).
    marks: usize,
    closed: bool,
    /// Items are taken in but not handed out (a session being taken over: what it is
    /// sent meanwhile waits behind what it missed).
    held: bool,
}

// === impl Outbox ===

impl Outbox {
    /// An empty queue refusing pushes beyond `capacity` items (at least 1).
    pub fn new(capacity: usize) -> Arc<Self> {
        Self::with_limits(capacity, usize::MAX)
    }

    /// An empty queue refusing pushes beyond `capacity` items (at least 1) or beyond
    /// `max_bytes` bytes of items. An item larger than `max_bytes` is still taken when the
    /// queue is empty, so one message never exceeds the queue by itself.
    pub fn with_limits(capacity: usize, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            items: Mutex::new(Queue::default()),
            capacity: capacity.max(1),
            max_bytes,
            ready: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            format: OnceLock::new(),
            replay: OnceLock::new(),
            mirror: OnceLock::new(),
        })
    }

    /// Keeps the last frames sent, up to `max_items` and `max_bytes`, so that a resumed
    /// session can have them again ([`rewind`](Self::rewind)). Once per queue.
    pub fn keep_sent(&self, max_items: usize, max_bytes: usize) {
        let _ = self.replay.set(Mutex::new(Replay {
            sent: 0,
            lens: VecDeque::new(),
            bytes: VecDeque::new(),
            max_items: max_items.max(1),
            max_bytes,
            uncounted: 0,
            started: false,
        }));
    }

    /// Whether [`keep_sent`](Self::keep_sent) was called: the writer then hands the
    /// payload of each frame it sent to [`sent`](Self::sent).
    pub fn keeps_sent(&self) -> bool {
        self.replay.get().is_some()
    }

    /// Counts the frames the writer sent, given by their payloads (`buf[range]` each, in
    /// the order sent), and keeps copies. `before`: how many frames the connection sent
    /// before these (the first batch kept numbers on from there; frames sent before the
    /// session asked for resume count too).
    ///
    /// Returns how many of them, first, were not counted (a RESUME_ACK), the sequence
    /// number of the first that is (the others follow it), and the oldest number still
    /// kept; `None` without [`keep_sent`](Self::keep_sent).
    pub fn sent(
        &self,
        buf: &[u8],
        payloads: &[std::ops::Range<usize>],
        before: u64,
    ) -> Option<Sent> {
        let r = self.replay.get()?;
        let mut r = r.lock();
        if !r.started {
            r.started = true;
            r.sent = before;
        }
        let skipped = r.uncounted.min(payloads.len());
        let first = r.sent + 1;
        for p in payloads {
            r.keep(buf.get(p.clone()).unwrap_or_default());
        }
        let oldest = (r.sent + 1).saturating_sub(r.lens.len() as u64);
        Some(Sent {
            skipped,
            first,
            oldest,
        })
    }

    /// How many frames at the front of what is sent next are not counted.
    pub fn uncounted(&self) -> usize {
        self.replay.get().map_or(0, |r| r.lock().uncounted)
    }

    /// Where the writer keeps each batch before sending it (once per queue).
    pub(crate) fn set_mirror(&self, mirror: Arc<super::mirror::Mirror>) {
        let _ = self.mirror.set(mirror);
    }

    /// The mirror of a resumable session's queue in a cluster, if any.
    pub fn mirror(&self) -> Option<&Arc<super::mirror::Mirror>> {
        self.mirror.get()
    }

    /// Appends a [`Outbound::Mark`]: never refused for the queue's limits (it is not a
    /// frame, and its frame follows it).
    pub fn push_mark(&self, pos: crate::router::InboxPos) {
        let mut q = self.items.lock();
        if !q.closed {
            q.items.push_back(Outbound::Mark(pos));
            q.marks += 1;
        }
    }

    /// A session taken over from another node: numbering goes on from `last_seq` (what
    /// the client received), and `first` (not counted), then `frames` are put at the
    /// front of the queue.
    pub fn restore(&self, last_seq: u64, first: Outbound, frames: Vec<Outbound>) {
        if let Some(r) = self.replay.get() {
            let mut r = r.lock();
            r.sent = last_seq;
            r.started = true;
            r.uncounted = 1;
        }
        {
            let mut q = self.items.lock();
            q.closed = false;
            for item in frames.into_iter().rev() {
                q.bytes += item.size();
                q.items.push_front(item);
            }
            q.bytes += first.size();
            q.items.push_front(first);
            q.held = false;
        }
        self.notify();
    }

    /// Hands nothing out until [`restore`](Self::restore) or [`release`](Self::release):
    /// a session taken over from another node is registered (and sent to) before what
    /// it missed is put in front.
    pub fn hold(&self) {
        self.items.lock().held = true;
    }

    /// Ends a [`hold`](Self::hold) without restoring anything (the take-over failed).
    pub fn release(&self) {
        self.items.lock().held = false;
        self.notify();
    }

    /// How many frames were sent (the last sequence number), 0 without
    /// [`keep_sent`](Self::keep_sent).
    pub fn sent_count(&self) -> u64 {
        self.replay.get().map_or(0, |r| r.lock().sent)
    }

    /// Goes back to frame `last_seq`, the last one the client received: `first` (not
    /// counted) and then the frames sent after `last_seq` are put at the front of the
    /// queue, before what was queued since, and numbering goes on from `last_seq`.
    /// Returns how many sent frames are sent again. The queue is reopened if it was
    /// closed.
    pub fn rewind(&self, last_seq: u64, first: Outbound) -> Result<u64, RewindError> {
        let Some(r) = self.replay.get() else {
            return Err(RewindError::Dropped { oldest: 0 });
        };
        let mut r = r.lock();
        if last_seq > r.sent {
            return Err(RewindError::Ahead { sent: r.sent });
        }
        let missed = r.sent - last_seq;
        if missed > r.lens.len() as u64 {
            return Err(RewindError::Dropped {
                oldest: r.sent + 1 - r.lens.len() as u64,
            });
        }
        let keep = r.lens.len() - missed as usize;
        let lens: Vec<u32> = r.lens.drain(keep..).collect();
        let total: usize = lens.iter().map(|n| *n as usize).sum();
        let from = r.bytes.len().saturating_sub(total);
        let mut tail = r.bytes.split_off(from);
        let again: Vec<Outbound> = lens
            .iter()
            .map(|n| {
                let rest = tail.split_off((*n as usize).min(tail.len()));
                let frame: Vec<u8> = std::mem::replace(&mut tail, rest).into();
                Outbound::Frame(bytes::Bytes::from(frame))
            })
            .collect();
        r.sent = last_seq;
        r.started = true;
        r.uncounted = 1;
        // One lock at a time (the writer takes the queue's, then this one).
        drop(r);
        {
            let mut q = self.items.lock();
            q.closed = false;
            for item in again.into_iter().rev() {
                q.bytes += item.size();
                q.items.push_front(item);
            }
            q.bytes += first.size();
            q.items.push_front(first);
        }
        self.notify();
        Ok(missed)
    }

    /// The format of the session this queue belongs to, once one opened.
    pub fn format(&self) -> Option<Format> {
        self.format.get().copied()
    }

    /// Fixes the format (the first call wins; a connection has one session).
    pub(crate) fn set_format(&self, format: Format) {
        let _ = self.format.set(format);
    }

    /// The slow-consumer limit in items.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slow-consumer limit in bytes.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Bytes of the items waiting.
    pub fn bytes(&self) -> usize {
        self.items.lock().bytes
    }

    /// Appends an item; wakes the consumer if the queue was empty.
    pub fn push(&self, item: Outbound) -> Result<(), PushError> {
        let was_empty = {
            let mut q = self.items.lock();
            if q.closed {
                return Err(PushError::Closed);
            }
            if q.items.len() - q.marks >= self.capacity {
                return Err(PushError::Full(Overflow::Messages(self.capacity)));
            }
            let size = item.size();
            if !q.items.is_empty() && q.bytes.saturating_add(size) > self.max_bytes {
                return Err(PushError::Full(Overflow::Bytes(self.max_bytes)));
            }
            q.bytes += size;
            q.items.push_back(item);
            // Marks alone do not wake the consumer: the first item after them does.
            q.items.len() - q.marks == 1
        };
        if was_empty {
            self.notify();
        }
        Ok(())
    }

    /// Wakes the consumer without an item (e.g. its session was asked to close).
    pub fn notify(&self) {
        self.ready.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ready once something was pushed into an empty queue, or [`notify`](Self::notify)
    /// was called, since the last time this returned ready; either way the task is woken
    /// by the next push into an empty queue or notify. The consumer drains the queue
    /// after each ready; a queue it left non-empty does not signal again.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        // Registered on every call, ready or not: the consumer may go on to wait on
        // something else in the same poll, and the next push or close must still wake it.
        self.waker.register(cx.waker());
        if self.ready.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Moves items to `f`, oldest first, until `f` returns false or `max` were moved;
    /// returns whether items remain.
    pub fn drain(&self, max: usize, mut f: impl FnMut(Outbound) -> bool) -> bool {
        let mut q = self.items.lock();
        if q.held {
            return false;
        }
        for _ in 0..max {
            let Some(item) = q.items.pop_front() else {
                break;
            };
            q.bytes -= item.size();
            if matches!(item, Outbound::Mark(_)) {
                q.marks -= 1;
            }
            if !f(item) {
                break;
            }
        }
        if q.items.is_empty() && q.items.capacity() > KEEP_CAPACITY {
            q.items = VecDeque::new();
        }
        !q.items.is_empty()
    }

    /// Takes the oldest item, if any.
    pub fn try_pop(&self) -> Option<Outbound> {
        let mut q = self.items.lock();
        if q.held {
            return None;
        }
        let item = q.items.pop_front()?;
        q.bytes -= item.size();
        if matches!(item, Outbound::Mark(_)) {
            q.marks -= 1;
        }
        Some(item)
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.lock().items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The consumer is gone: later pushes fail with [`PushError::Closed`] and what is
    /// queued is dropped.
    pub fn close(&self) {
        let dropped = {
            let mut q = self.items.lock();
            q.closed = true;
            q.bytes = 0;
            q.marks = 0;
            std::mem::take(&mut q.items)
        };
        drop(dropped);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::task::Waker;

    use bytes::Bytes;

    use super::*;

    fn frame(n: u8) -> Outbound {
        Outbound::Frame(Bytes::from(vec![n]))
    }

    fn byte(item: Outbound) -> u8 {
        match item {
            Outbound::Frame(b) => b[0],
            _ => panic!("not a frame"),
        }
    }

    #[test]
    fn bounded_fifo_with_full_and_closed() {
        let q = Outbox::new(2);
        q.push(frame(1)).unwrap();
        q.push(frame(2)).unwrap();
        assert_eq!(
            q.push(frame(3)),
            Err(PushError::Full(Overflow::Messages(2)))
        );
        let mut got = vec![];
        assert!(!q.drain(8, |i| {
            got.push(byte(i));
            true
        }));
        assert_eq!(got, [1, 2]);
        q.push(frame(4)).unwrap();
        q.close();
        assert!(q.is_empty(), "close drops what was queued");
        assert_eq!(q.push(frame(5)), Err(PushError::Closed));
    }

    #[test]
    fn a_held_queue_hands_out_nothing_until_what_was_missed_is_in_front() {
        let q = Outbox::new(8);
        q.hold();
        q.push(frame(9)).unwrap();
        assert!(!q.drain(8, |_| panic!("a held queue hands nothing out")));
        assert!(q.try_pop().is_none());
        q.restore(0, frame(1), vec![frame(2), frame(3)]);
        let mut got = vec![];
        q.drain(8, |i| {
            got.push(byte(i));
            true
        });
        assert_eq!(
            got,
            [1, 2, 3, 9],
            "the ack, what was missed, then what came meanwhile"
        );
        q.hold();
        q.push(frame(4)).unwrap();
        q.release();
        assert_eq!(q.try_pop().map(byte), Some(4), "released without a restore");
    }

    #[test]
    fn marks_neither_fill_the_queue_nor_hide_the_next_item_from_the_consumer() {
        let q = Outbox::new(2);
        let pos = crate::router::InboxPos {
            ms: 1,
            seq: 0,
            idx: 0,
        };
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(q.poll_ready(&mut cx).is_pending());
        q.push_mark(pos);
        assert!(
            q.poll_ready(&mut cx).is_pending(),
            "a mark alone wakes nobody"
        );
        q.push(frame(1)).unwrap();
        assert!(q.poll_ready(&mut cx).is_ready(), "the item after it does");
        q.push_mark(pos);
        q.push(frame(2)).unwrap();
        assert_eq!(
            q.push(frame(3)),
            Err(PushError::Full(Overflow::Messages(2))),
            "two items fill it, marks aside"
        );
        let mut got = vec![];
        q.drain(8, |i| {
            got.push(i);
            true
        });
        assert!(matches!(got[0], Outbound::Mark(_)));
        assert_eq!(got.len(), 4);
        q.push(frame(4)).unwrap();
        q.push(frame(5)).unwrap();
    }

    #[test]
    fn drain_takes_at_most_max_and_says_what_remains() {
        let q = Outbox::new(10);
        for i in 0..5 {
            q.push(frame(i)).unwrap();
        }
        let mut got = vec![];
        let mut take = |i| {
            got.push(byte(i));
            true
        };
        assert!(q.drain(3, &mut take));
        assert!(!q.drain(3, &mut take));
        assert!(q.is_empty());
        q.push(frame(5)).unwrap();
        q.push(frame(6)).unwrap();
        assert!(q.drain(8, |i| byte(i) != 5), "stops when told to");
        assert_eq!(got, [0, 1, 2, 3, 4]);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn wakes_only_on_empty_to_non_empty_and_on_notify() {
        let q = Outbox::new(10);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(q.poll_ready(&mut cx).is_pending());
        q.push(frame(1)).unwrap();
        q.push(frame(2)).unwrap();
        assert!(q.poll_ready(&mut cx).is_ready());
        assert!(
            q.poll_ready(&mut cx).is_pending(),
            "the second push into a non-empty queue does not signal again"
        );
        q.drain(10, |_| true);
        q.push(frame(3)).unwrap();
        assert!(q.poll_ready(&mut cx).is_ready());
        q.notify();
        assert!(q.poll_ready(&mut cx).is_ready());
    }

    #[test]
    fn a_ready_poll_still_leaves_the_waker_registered() {
        use std::sync::atomic::AtomicUsize;
        struct Count(AtomicUsize);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let q = Outbox::new(1);
        assert!(q.poll_ready(&mut cx).is_pending());
        q.push(frame(1)).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        // Ready, and the consumer then waits on something else (the socket) in the
        // same poll: a close request must still reach it.
        assert!(q.poll_ready(&mut cx).is_ready());
        assert_eq!(
            q.push(frame(2)),
            Err(PushError::Full(Overflow::Messages(1)))
        );
        q.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_drained_burst_releases_its_memory() {
        let q = Outbox::new(1000);
        for i in 0..100 {
            q.push(frame(i as u8)).unwrap();
        }
        q.drain(1000, |_| true);
        assert_eq!(q.items.lock().items.capacity(), 0);
    }

    #[test]
    fn bounded_in_bytes_as_well() {
        let q = Outbox::with_limits(100, 10);
        let sized = |n: usize| Outbound::Frame(Bytes::from(vec![0u8; n]));
        q.push(sized(6)).unwrap();
        q.push(sized(4)).unwrap();
        assert_eq!(q.bytes(), 10);
        assert_eq!(q.push(sized(1)), Err(PushError::Full(Overflow::Bytes(10))));
        assert!(q.try_pop().is_some());
        assert_eq!(q.bytes(), 4);
        q.push(sized(6)).unwrap();
        q.drain(100, |_| true);
        assert_eq!(q.bytes(), 0);
        // An item over the limit is taken by an empty queue, and fills it.
        q.push(sized(50)).unwrap();
        assert_eq!(q.push(sized(1)), Err(PushError::Full(Overflow::Bytes(10))));
        q.close();
        assert_eq!(q.bytes(), 0);
    }

    /// Sends (drains and counts) everything queued, returning the bytes' first byte each.
    fn send_all(q: &Outbox) -> Vec<u8> {
        let mut got = vec![];
        q.drain(usize::MAX, |i| {
            got.push(byte(i));
            true
        });
        let ranges: Vec<_> = (0..got.len()).map(|i| i..i + 1).collect();
        q.sent(&got, &ranges, 0);
        got
    }

    #[test]
    fn a_rewind_sends_again_what_followed_the_clients_last_frame() {
        let q = Outbox::new(16);
        q.keep_sent(3, usize::MAX);
        for n in 1..=5 {
            q.push(frame(n)).unwrap();
        }
        assert_eq!(send_all(&q), [1, 2, 3, 4, 5]);
        assert_eq!(q.sent_count(), 5);
        // Frames 1 and 2 are no longer kept; 6 was never sent.
        assert_eq!(
            q.rewind(1, frame(0)),
            Err(RewindError::Dropped { oldest: 3 })
        );
        assert_eq!(q.rewind(6, frame(0)), Err(RewindError::Ahead { sent: 5 }));
        // Queued while the connection was down.
        q.push(frame(6)).unwrap();
        assert_eq!(q.rewind(3, frame(100)), Ok(2));
        // The ACK first (not counted), then 4 and 5 again, then 6.
        assert_eq!(send_all(&q), [100, 4, 5, 6]);
        assert_eq!(q.sent_count(), 6);
        // A second rewind counts the same way.
        assert_eq!(q.rewind(5, frame(101)), Ok(1));
        assert_eq!(send_all(&q), [101, 6]);
        assert_eq!(q.sent_count(), 6);
    }
}
