//! The measured send/receive loop shared by the relay and fan-out scenarios: a group of
//! connections owned by one task, a constant-rate send schedule (or as fast as the window
//! allows), a window of deliveries in flight, and latency recorded from the *intended*
//! send time, so a stalled server is charged for every message it delayed (no
//! coordinated omission).

use std::{
    cell::{Cell, RefCell},
    future::poll_fn,
    rc::Rc,
    task::Poll,
    time::Duration,
};

use futures_util::{SinkExt, StreamExt, stream::SplitSink};
use hdrhistogram::Histogram;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    payload::{epoch, now_ns},
    stats,
    target::{Incoming, Result, Target, Ws, classify},
};

/// Counters and histograms shared by every group task of a run (one thread).
pub struct Shared {
    /// Target being measured.
    pub target: Target,
    /// Messages written.
    pub sent: Cell<u64>,
    /// Deliveries received (any time).
    pub received: Cell<u64>,
    /// Deliveries whose intended send time fell in the measured window.
    pub measured: Cell<u64>,
    /// Error answers, unexpected closes, messages without a timestamp.
    pub errors: Cell<u64>,
    /// The first few errors, as text.
    pub error_samples: RefCell<Vec<String>>,
    /// Latency of measured deliveries.
    pub hist: RefCell<Histogram<u64>>,
    /// Latency since the last progress line.
    pub interval: RefCell<Histogram<u64>>,
    /// Deliveries since the last progress line.
    pub interval_received: Cell<u64>,
    /// Deliveries still outstanding when the drain ended.
    pub lost: Cell<u64>,
    /// Start of the schedule (ns since the epoch).
    pub start_ns: u64,
    /// Start of the measured window.
    pub measure_start_ns: u64,
    /// End of the measured window; sending stops here.
    pub measure_end_ns: u64,
    /// Give up waiting for outstanding deliveries here.
    pub drain_end_ns: u64,
}

impl Shared {
    /// A run that starts `warmup` from now and measures for `duration`.
    pub fn new(target: Target, warmup: f64, duration: f64) -> Rc<Shared> {
        let start_ns = now_ns() + 50_000_000;
        let measure_start_ns = start_ns + (warmup * 1e9) as u64;
        let measure_end_ns = measure_start_ns + (duration * 1e9) as u64;
        Rc::new(Shared {
            target,
            sent: Cell::new(0),
            received: Cell::new(0),
            measured: Cell::new(0),
            errors: Cell::new(0),
            error_samples: RefCell::new(Vec::new()),
            hist: RefCell::new(stats::histogram()),
            interval: RefCell::new(stats::histogram()),
            interval_received: Cell::new(0),
            lost: Cell::new(0),
            start_ns,
            measure_start_ns,
            measure_end_ns,
            drain_end_ns: measure_end_ns + 3_000_000_000,
        })
    }

    /// Counts an error and keeps its text if it is among the first few.
    pub fn error(&self, e: impl Into<String>) {
        self.errors.set(self.errors.get() + 1);
        let mut s = self.error_samples.borrow_mut();
        if s.len() < 5 {
            s.push(e.into());
        }
    }

    fn delivered(&self, stamp: u64) {
        let now = now_ns();
        let lat = now.saturating_sub(stamp);
        self.received.set(self.received.get() + 1);
        self.interval_received.set(self.interval_received.get() + 1);
        stats::record(&mut self.interval.borrow_mut(), lat);
        if stamp >= self.measure_start_ns && stamp < self.measure_end_ns {
            self.measured.set(self.measured.get() + 1);
            stats::record(&mut self.hist.borrow_mut(), lat);
        }
    }
}

/// Tokio's timer fires on the first millisecond tick at or after a deadline, so a sender
/// wakes up to this much before a message is due and sends it then, instead of up to a
/// millisecond late (which would show up as latency of the server).
const EARLY_NS: u64 = 1_000_000;

/// Most messages taken in one wake-up before the group sends again.
const MAX_BATCH: usize = 256;

/// The instant `ns` after the epoch.
pub fn instant_at(ns: u64) -> Instant {
    Instant::from_std(epoch() + Duration::from_nanos(ns))
}

/// What one group sends: ticks at a fixed rate, each a few messages from given members.
pub trait Plan {
    /// The messages of tick `seq` with timestamp `stamp`: (member, message).
    fn tick(&mut self, seq: u64, stamp: u64, out: &mut Vec<(usize, Message)>);
    /// Deliveries one tick causes.
    fn deliveries_per_tick(&self) -> u32;
}

/// Runs one group: `members` sockets, `plan`, `period_ns` between ticks (0: as fast as
/// the window allows), at most `window` ticks in flight, first tick at `offset_ns` after
/// the run's start.
pub async fn run_group(
    members: Vec<Ws>,
    mut plan: impl Plan,
    period_ns: u64,
    window: u32,
    offset_ns: u64,
    sh: Rc<Shared>,
) -> Result<()> {
    let mut sinks: Vec<SplitSink<Ws, Message>> = Vec::with_capacity(members.len());
    let mut streams = Vec::with_capacity(members.len());
    for (i, ws) in members.into_iter().enumerate() {
        let (tx, rx) = ws.split();
        sinks.push(tx);
        streams.push(rx.map(move |m| (i, m)));
    }
    let mut rx = futures_util::stream::select_all(streams);
    let per_tick = u64::from(plan.deliveries_per_tick().max(1));
    let max_in_flight = u64::from(window.max(1)) * per_tick;
    let mut in_flight: u64 = 0;
    let mut next = sh.start_ns + offset_ns;
    let mut seq: u64 = 0;
    let mut out = Vec::with_capacity(8);
    let mut dirty = vec![false; sinks.len()];
    tokio::time::sleep_until(instant_at(sh.start_ns)).await;
    let mut timer_at = sh.measure_end_ns;
    let mut timer = std::pin::pin!(tokio::time::sleep_until(instant_at(timer_at)));
    loop {
        let now = now_ns();
        let sending = now < sh.measure_end_ns;
        if now >= sh.drain_end_ns || (!sending && in_flight == 0) {
            break;
        }
        while sending
            && in_flight + per_tick <= max_in_flight
            && (period_ns == 0 || next <= now + EARLY_NS)
        {
            // Behind schedule: the latency counts from the intended time. Ahead of it (by
            // less than the timer's 1 ms resolution): from the actual send.
            let stamp = if period_ns == 0 {
                now_ns()
            } else {
                next.min(now_ns())
            };
            plan.tick(seq, stamp, &mut out);
            for (m, msg) in out.drain(..) {
                sinks[m].feed(msg).await?;
                dirty[m] = true;
                sh.sent.set(sh.sent.get() + 1);
            }
            seq += 1;
            in_flight += per_tick;
            next += period_ns;
        }
        for (m, d) in dirty.iter_mut().enumerate() {
            if *d {
                sinks[m].flush().await?;
                *d = false;
            }
        }
        let wake = if !sending {
            sh.drain_end_ns
        } else if period_ns > 0 && in_flight + per_tick <= max_in_flight {
            next.saturating_sub(EARLY_NS).min(sh.measure_end_ns)
        } else {
            sh.measure_end_ns
        };
        if wake != timer_at {
            timer.as_mut().reset(instant_at(wake));
            timer_at = wake;
        }
        // Wait for a message or the timer, then take every message already received
        // before sending again: the refills of one wake-up leave in one write per socket,
        // as an event loop would send them.
        let outcome = poll_fn(|cx| {
            let mut got = 0usize;
            loop {
                match rx.poll_next_unpin(cx) {
                    Poll::Ready(Some((_, Ok(m)))) => {
                        let data = match &m {
                            Message::Binary(b) => &b[..],
                            Message::Text(t) => t.as_bytes(),
                            Message::Close(c) => {
                                return Poll::Ready(Err(format!("closed by the server: {c:?}")));
                            }
                            _ => continue,
                        };
                        match classify(sh.target, data) {
                            Incoming::Signal(stamp) => {
                                sh.delivered(stamp);
                                in_flight = in_flight.saturating_sub(1);
                            }
                            Incoming::Error(e) => {
                                sh.error(e);
                                in_flight = in_flight.saturating_sub(per_tick);
                            }
                            _ => {}
                        }
                        got += 1;
                        if got >= MAX_BATCH {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Poll::Ready(Some((_, Err(e)))) => {
                        return Poll::Ready(Err(format!("read: {e}")));
                    }
                    Poll::Ready(None) => {
                        return Poll::Ready(Err("all connections closed".to_owned()));
                    }
                    Poll::Pending => break,
                }
            }
            if got > 0 || timer.as_mut().poll(cx).is_ready() {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        })
        .await;
        if let Err(e) = outcome {
            sh.error(e);
            break;
        }
    }
    sh.lost.set(sh.lost.get() + in_flight);
    for mut s in sinks {
        let _ = s.close().await;
    }
    Ok(())
}
