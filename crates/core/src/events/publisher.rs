//! The publisher: drains the store's event outbox into the sinks, at least once and, per
//! room, in `seq` order.
//!
//! Each pass reads the oldest undelivered events ([`Store::pending_events`]), groups them
//! by room (an event of no room by its client), and delivers each group in order to every
//! sink, the groups side by side. A sink that fails stops its group there: the event and
//! those after it in that room wait, offered again after a pause that doubles with each
//! failure (`retry_initial` up to `retry_max`), while other rooms go on. An event is
//! marked delivered once every sink took it; an event a sink took is not offered to it
//! again, unless the process stops before the event is marked (then consumers see it
//! twice and deduplicate by `id`).

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use uuid::Uuid;

use super::{Event, Events};
use crate::{router::Router, store::Store};

/// The lease a cluster's publisher holds.
pub const LEASE: &str = "events-publisher";

/// How the publisher paces itself.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Events read per pass.
    pub batch: u32,
    /// Pause between passes that found nothing to deliver.
    pub poll: Duration,
    /// Pause after a sink's first failure for a room.
    pub retry_initial: Duration,
    /// Longest pause between attempts.
    pub retry_max: Duration,
    /// Groups (rooms, clients) delivered at once: each holds a connection to the sink
    /// while it delivers.
    pub concurrency: usize,
    /// How long delivered events are kept (for `GET /api/rooms/{id}/events`); `None`:
    /// for ever. Pruned at the first pass, then hourly.
    pub retention: Option<Duration>,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            batch: 256,
            poll: Duration::from_millis(100),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            concurrency: 32,
            retention: Some(Duration::from_secs(7 * 86_400)),
        }
    }
}

/// Drains the outbox of `store` into `sinks`.
pub struct Publisher {
    store: Arc<dyn Store>,
    sinks: Vec<Arc<dyn Events>>,
    cfg: PublisherConfig,
    /// Which sinks took each event not yet marked delivered.
    taken: HashMap<Uuid, HashSet<usize>>,
    /// `(event, sink)` pairs that failed at least once (their next attempt is a retry).
    failed: HashSet<(Uuid, usize)>,
    /// Groups waiting after a failure: their failures so far, and when to try again.
    waiting: HashMap<String, (u32, Instant)>,
    /// In a cluster: the router holding the [`LEASE`], and its time to live. Only the
    /// node holding it publishes.
    lease: Option<(Arc<dyn Router>, Duration)>,
    /// When delivered events were last pruned.
    pruned_at: Option<Instant>,
}

/// What one group's delivery came to.
struct Outcome {
    key: String,
    /// Events every sink took.
    done: Vec<Uuid>,
    /// Sinks that took an event before another one failed it.
    taken: Vec<(Uuid, usize)>,
    /// The event and sink that failed, with why.
    failure: Option<(Uuid, usize, String)>,
}

impl Publisher {
    /// A publisher of `store`'s outbox to `sinks`.
    pub fn new(store: Arc<dyn Store>, sinks: Vec<Arc<dyn Events>>, cfg: PublisherConfig) -> Self {
        Self {
            store,
            sinks,
            cfg,
            taken: HashMap::new(),
            failed: HashSet::new(),
            waiting: HashMap::new(),
            lease: None,
            pruned_at: None,
        }
    }

    /// Deletes delivered events older than the retention, at most hourly.
    async fn prune(&mut self) {
        let Some(keep) = self.cfg.retention else {
            return;
        };
        if self
            .pruned_at
            .is_some_and(|at| at.elapsed() < Duration::from_secs(3600))
        {
            return;
        }
        self.pruned_at = Some(Instant::now());
        let before =
            chrono::Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
        match self.store.prune_events(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                pruned = n,
                "events: delivered events past their retention deleted"
            ),
            Err(e) => tracing::warn!(error = %e, "events: could not prune delivered events"),
        }
    }

    /// Publishes only while this node holds the cluster's [`LEASE`] (taken or renewed
    /// at each pass, for `ttl`): one node of a cluster publishes each event. A node
    /// that loses the lease stops; the one that takes it over offers again what was not
    /// marked delivered.
    pub fn with_lease(mut self, router: Arc<dyn Router>, ttl: Duration) -> Self {
        self.lease = Some((router, ttl));
        self
    }

    /// Delivers until `stop` turns true, then makes one last pass (a draining node hands
    /// over what it can; what is left waits in the outbox for the next start).
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = *stop.borrow();
            let pause = self.pass().await;
            if stopping {
                return;
            }
            if let Some(pause) = pause {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// One pass: reads, delivers, marks. How long to pause before the next, or `None`
    /// to go on at once (it delivered a full batch).
    pub async fn pass(&mut self) -> Option<Duration> {
        if let Some((router, ttl)) = &self.lease {
            let held = match router.lease(LEASE, *ttl).await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "events: could not reach the publisher's lease");
                    false
                }
            };
            metrics::gauge!("signal_events_publisher").set(if held { 1.0 } else { 0.0 });
            if !held {
                // Another node publishes: what this one knew of deliveries is stale.
                self.taken.clear();
                self.failed.clear();
                self.waiting.clear();
                return Some((*ttl / 3).max(self.cfg.poll));
            }
        }
        self.prune().await;
        let pending = match self.store.pending_events(self.cfg.batch).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "events: could not read the outbox");
                return Some(self.cfg.retry_initial.max(self.cfg.poll));
            }
        };
        metrics::gauge!("signal_events_outbox_depth").set(pending.len() as f64);
        if pending.is_empty() {
            return Some(self.cfg.poll);
        }
        let full = pending.len() >= self.cfg.batch as usize;
        let now = Instant::now();
        let mut groups: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for e in pending {
            let key = match (&e.room_id, &e.client_id) {
                (Some(r), _) => format!("room:{r}"),
                (None, Some(c)) => format!("client:{c}"),
                (None, None) => "none".to_owned(),
            };
            groups.entry(key).or_default().push(e);
        }
        let ready: Vec<(String, Vec<Event>)> = groups
            .into_iter()
            .filter(|(k, _)| self.waiting.get(k).is_none_or(|(_, at)| *at <= now))
            .map(|(k, mut events)| {
                // A room's events in seq order (the outbox's order across rooms may
                // interleave them differently on a shared database).
                events.sort_by_key(|e| e.seq);
                (k, events)
            })
            .collect();
        let outcomes: Vec<Outcome> = {
            use futures_util::StreamExt;
            let me = &*self;
            futures_util::stream::iter(
                ready
                    .into_iter()
                    .map(|(key, events)| me.deliver_group(key, events)),
            )
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await
        };
        let mut done = Vec::new();
        for o in outcomes {
            done.extend(o.done.iter().copied());
            for (id, sink) in o.taken {
                self.taken.entry(id).or_default().insert(sink);
            }
            match o.failure {
                None => {
                    self.waiting.remove(&o.key);
                }
                Some((id, sink, why)) => {
                    self.failed.insert((id, sink));
                    let n = self.waiting.get(&o.key).map_or(0, |(n, _)| *n) + 1;
                    let pause = self
                        .cfg
                        .retry_initial
                        .saturating_mul(1u32 << (n - 1).min(16))
                        .min(self.cfg.retry_max);
                    tracing::warn!(
                        group = %o.key,
                        event_id = %id,
                        sink = self.sinks[sink].name(),
                        failures = n,
                        retry_in = ?pause,
                        error = %why,
                        "events: a sink did not take an event; its room waits"
                    );
                    self.waiting.insert(o.key, (n, now + pause));
                }
            }
        }
        if !done.is_empty() {
            if let Err(e) = self.store.mark_delivered(&done).await {
                // Offered again on the next pass: consumers deduplicate by id.
                tracing::warn!(error = %e, "events: could not mark events delivered");
            } else {
                for id in &done {
                    self.taken.remove(id);
                    self.failed.retain(|(e, _)| e != id);
                }
            }
        }
        if full && !done.is_empty() {
            return None;
        }
        let next_retry = self
            .waiting
            .values()
            .map(|(_, at)| at.saturating_duration_since(now))
            .min();
        Some(next_retry.map_or(self.cfg.poll, |r| {
            r.min(self.cfg.poll).max(Duration::from_millis(10))
        }))
    }

    /// Delivers one group's events in order to every sink, stopping at the first failure.
    async fn deliver_group(&self, key: String, events: Vec<Event>) -> Outcome {
        let mut out = Outcome {
            key,
            done: Vec::new(),
            taken: Vec::new(),
            failure: None,
        };
        for e in &events {
            let already = self.taken.get(&e.id);
            for (i, sink) in self.sinks.iter().enumerate() {
                if already.is_some_and(|t| t.contains(&i)) || out.taken.contains(&(e.id, i)) {
                    continue;
                }
                let name = sink.name();
                if self.failed.contains(&(e.id, i)) {
                    metrics::counter!("signal_events_retried_total", "sink" => name).increment(1);
                }
                match sink.deliver(e).await {
                    Ok(()) => {
                        metrics::counter!("signal_events_delivered_total", "sink" => name)
                            .increment(1);
                        out.taken.push((e.id, i));
                    }
                    Err(why) => {
                        metrics::counter!("signal_events_failed_total", "sink" => name)
                            .increment(1);
                        out.failure = Some((e.id, i, why.0));
                        return out;
                    }
                }
            }
            out.done.push(e.id);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use async_trait::async_trait;
    use parking_lot::Mutex;

    use super::*;
    use crate::{
        events::{Kind, MemoryEvents, SinkError},
        ids::{ClientId, RoomId},
        store::MemoryStore,
    };

    /// A sink that fails its first `fail` deliveries, recording what it took.
    struct Flaky {
        fail: Mutex<usize>,
        took: Mutex<Vec<Event>>,
    }

    #[async_trait]
    impl Events for Flaky {
        fn name(&self) -> &'static str {
            "flaky"
        }

        async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
            let mut fail = self.fail.lock();
            if *fail > 0 {
                *fail -= 1;
                return Err(SinkError("HTTP 503".into()));
            }
            self.took.lock().push(event.clone());
            Ok(())
        }
    }

    fn ev(kind: Kind, room: &str, client: &str) -> Event {
        Event::new(kind, "n")
            .room(&RoomId::parse(room).unwrap())
            .client(&ClientId::parse("client_id", client).unwrap())
    }

    #[tokio::test]
    async fn every_event_reaches_every_sink_in_room_order_despite_failures() {
        let store = Arc::new(MemoryStore::new());
        let a = [
            ev(Kind::RoomCreated, "a", "alice"),
            ev(Kind::MemberJoined, "a", "bob"),
            ev(Kind::MemberLeft, "a", "bob"),
        ];
        let b = [ev(Kind::RoomCreated, "b", "carol")];
        store.append_events(&a[..2]).await.unwrap();
        store.append_events(&b).await.unwrap();
        store.append_events(&a[2..]).await.unwrap();
        let flaky = Arc::new(Flaky {
            fail: Mutex::new(2),
            took: Mutex::default(),
        });
        let memory = MemoryEvents::new();
        let mut p = Publisher::new(
            store.clone(),
            vec![Arc::new(memory.clone()), flaky.clone()],
            PublisherConfig {
                retry_initial: Duration::from_millis(1),
                retry_max: Duration::from_millis(2),
                ..PublisherConfig::default()
            },
        );
        for _ in 0..50 {
            if store.pending_events(10).await.unwrap().is_empty() {
                break;
            }
            if let Some(pause) = p.pass().await {
                tokio::time::sleep(pause).await;
            }
        }
        assert!(
            store.pending_events(10).await.unwrap().is_empty(),
            "all marked delivered"
        );
        let order = |got: &[Event], room: &str| -> Vec<Uuid> {
            got.iter()
                .filter(|e| e.room_id.as_ref().is_some_and(|r| r.as_str() == room))
                .map(|e| e.id)
                .collect()
        };
        let want_a: Vec<Uuid> = a.iter().map(|e| e.id).collect();
        let flaky_took = flaky.took.lock().clone();
        assert_eq!(order(&flaky_took, "a"), want_a, "in order, each once");
        assert_eq!(
            order(&memory.events(), "a"),
            want_a,
            "the healthy sink once each"
        );
        assert_eq!(order(&flaky_took, "b"), [b[0].id]);
    }
}
