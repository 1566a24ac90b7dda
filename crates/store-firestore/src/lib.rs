//! The Google Cloud Firestore implementation of the signal-manager [`Store`] port.
//!
//! [`FirestoreStore::open`] reaches a Firestore database (Native mode) over its REST API:
//! `firestore://PROJECT_ID` with the database name of `[firestore] database_name`
//! (default `(default)`), credentials from `[firestore] credentials_path` or the standard
//! Google environment (see [`auth`]), or the emulator named by `FIRESTORE_EMULATOR_HOST`
//! (then no credentials).
//!
//! # Collections
//!
//! The seed's seven collections, with its field names, one document per row:
//!
//! | collection | document id |
//! |---|---|
//! | `registered_clients` | the client id |
//! | `webrtc_rooms` | the room id |
//! | `webrtc_clients`, `client_in_room` | `ROOM~CLIENT` (a client may be in several rooms) |
//! | `room_created` | the room's UUID |
//! | `terminated_rooms`, `client_in_terminated_room` | the record's UUID |
//!
//! Ids are made safe for Firestore by [`fields::doc_id`] (any `/`, a leading `.` or `_`,
//! and bytes outside `A-Z a-z 0-9 - _ . :` become `%XX`). Timestamps are
//! `timestampValue`s (microseconds), JSON values maps and arrays, capability lists arrays
//! of strings. Documents that keep an order within a room also carry `seq`, an integer
//! that grows with each write, to order rows with equal timestamps.
//!
//! # Atomicity
//!
//! Every lifecycle write is one atomic commit. Uniqueness is a precondition of that
//! commit: a room or a client is created only if its document does not exist, so two
//! nodes racing for one id get one success and one [`StoreError::Conflict`]. Filling a
//! room's empty sender/receiver slot is conditional on the room document being unchanged
//! since it was read (and retried if it changed); a join that fills no slot only requires
//! the room to exist. Terminating a room reads its members in a transaction, so a member
//! added meanwhile is either terminated with it or its join fails.
//!
//! # Queries and indexes
//!
//! Every query is one equality filter on `room_id` (sorted here, by time and `seq`) or the
//! whole of `webrtc_rooms` ordered by `created_at`: Firestore's automatic single-field
//! indexes serve them all, so no composite index must be created. The seed's recommended
//! indexes (docs/configuration.md) serve its own analytics queries.
//!
//! # Errors, timeouts, retries
//!
//! Every request is bounded by the operation timeout. An unreachable or overloaded
//! Firestore is [`StoreError::Unavailable`]; reads are tried again while it is, writes
//! only when the connection could not be made (so none is applied twice). Transactions
//! that Firestore aborts for contention are run again.

pub mod auth;
mod fields;
mod rest;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use signal_core::events::Event;
use signal_core::store::{
    ClientInRoomRecord, ClientInTerminatedRoomRecord, MemberRecords, RegisteredClient,
    RoomCreatedRecord, RoomRecord, Store, StoreError, TerminatedRoomRecord, WebrtcClientRecord,
};

use crate::auth::Credentials;
use crate::fields::{Doc, Fields, doc_id, member_doc_id};
use crate::rest::{Failure, Rest, create, delete, delete_existing, update, update_if};

const REGISTERED_CLIENTS: &str = "registered_clients";
const WEBRTC_ROOMS: &str = "webrtc_rooms";
const WEBRTC_CLIENTS: &str = "webrtc_clients";
const ROOM_CREATED: &str = "room_created";
const CLIENT_IN_ROOM: &str = "client_in_room";
const TERMINATED_ROOMS: &str = "terminated_rooms";
const CLIENT_IN_TERMINATED_ROOM: &str = "client_in_terminated_room";
/// The event log: every recorded event (`id`, `room_id`, `seq`, `position`, `body`).
const EVENTS: &str = "events";
/// The outbox: the events not delivered yet, the same fields (deleted once delivered).
const EVENT_OUTBOX: &str = "event_outbox";
/// The last `seq` given per room id (`last`).
const EVENT_ROOM_SEQ: &str = "event_room_seq";

/// How many times a write that lost a race for a room document (or a transaction that
/// Firestore aborted) is run again before giving up.
const CONTENTION_ATTEMPTS: u32 = 25;

/// Where and how to reach Firestore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirestoreOptions {
    /// Database name (`(default)` unless the project has named databases).
    pub database_name: String,
    /// A service account (or authorized user) key file; `None` for the standard Google
    /// environment.
    pub credentials_path: Option<PathBuf>,
    /// `HOST:PORT` of an emulator; `None` reads `FIRESTORE_EMULATOR_HOST`.
    pub emulator_host: Option<String>,
    /// The API's base URL (`https://firestore.googleapis.com`), for tests and private
    /// endpoints.
    pub base_url: String,
    /// Upper bound of every request.
    pub operation_timeout: Duration,
    /// Further attempts after one that found Firestore unavailable (reads always; writes
    /// only when the connection could not be made).
    pub retry_attempts: u32,
    /// The pause before each further attempt.
    pub retry_interval: Duration,
}

impl Default for FirestoreOptions {
    fn default() -> Self {
        Self {
            database_name: "(default)".into(),
            credentials_path: None,
            emulator_host: None,
            base_url: "https://firestore.googleapis.com".into(),
            operation_timeout: Duration::from_secs(5),
            retry_attempts: 3,
            retry_interval: Duration::from_millis(100),
        }
    }
}

/// The project id of a `firestore://PROJECT_ID` URL.
pub fn project_of(url: &str) -> Option<&str> {
    let project = url.strip_prefix("firestore://")?.trim_end_matches('/');
    let valid = !project.is_empty()
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_'));
    valid.then_some(project)
}

/// A [`Store`] on a Firestore database.
pub struct FirestoreStore {
    rest: Rest,
    retries: u32,
    retry_interval: Duration,
    closed: AtomicBool,
    description: String,
    /// Writes recording a room's events take the room's stripe here first: they all
    /// read and move its counter, and Firestore would otherwise abort all but one of
    /// those racing in this process (other nodes' are retried on `ABORTED`).
    event_locks: Vec<tokio::sync::Mutex<()>>,
}

/// Stripes of [`FirestoreStore::event_locks`].
const EVENT_LOCKS: usize = 64;

impl std::fmt::Debug for FirestoreStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirestoreStore")
            .field("database", &self.description)
            .finish_non_exhaustive()
    }
}

/// Rows written later get a larger `seq`, also within one millisecond.
fn next_seq() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = Utc::now().timestamp_nanos_opt().unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => last = seen,
        }
    }
}

/// The pause before the `n`th retry of a write that lost a race: growing, capped at
/// 200 ms, with jitter so that the writers that collided do not collide again.
fn backoff(n: u32) -> Duration {
    let base = (5u64 << n.min(6)).min(200);
    let jitter = Utc::now().timestamp_subsec_nanos() as u64 % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

fn failed(op: &str, f: Failure) -> StoreError {
    if f.is_unavailable() {
        StoreError::Unavailable(format!("{op}: {f}"))
    } else {
        StoreError::Internal(format!("{op}: {f}"))
    }
}

impl FirestoreStore {
    /// Reaches the database of `url` (`firestore://PROJECT_ID`) and checks that it
    /// answers, so a wrong project, credentials or unreachable emulator fail now.
    pub async fn open(url: &str, opts: FirestoreOptions) -> Result<Self, StoreError> {
        let project = project_of(url).ok_or_else(|| {
            StoreError::Internal(format!(
                "invalid Firestore URL {url:?}: expected firestore://PROJECT_ID"
            ))
        })?;
        let emulator = opts.emulator_host.clone().or_else(|| {
            std::env::var("FIRESTORE_EMULATOR_HOST")
                .ok()
                .filter(|h| !h.is_empty())
        });
        let (base, creds) = match &emulator {
            Some(host) => (format!("http://{host}"), Credentials::Emulator),
            None => (
                opts.base_url.clone(),
                Credentials::discover(opts.credentials_path.as_deref())?,
            ),
        };
        let timeout = opts.operation_timeout.max(Duration::from_millis(100));
        let database = if opts.database_name.is_empty() {
            "(default)"
        } else {
            &opts.database_name
        };
        let description = format!("projects/{project}/databases/{database} at {base}");
        tracing::info!(
            database = %description,
            credentials = creds.describe(),
            "opening the Firestore store"
        );
        let rest = Rest::new(&base, project, database, creds, timeout)
            .map_err(|e| StoreError::Internal(format!("HTTP client: {e}")))?;
        let store = Self {
            rest,
            retries: opts.retry_attempts,
            retry_interval: opts.retry_interval,
            closed: AtomicBool::new(false),
            description,
            event_locks: (0..EVENT_LOCKS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        };
        store.health().await?;
        Ok(store)
    }

    /// Which database and credentials (for logs).
    pub fn describe(&self) -> String {
        format!(
            "{} ({})",
            self.description,
            self.rest.credentials().describe()
        )
    }

    fn open_or_err(&self) -> Result<(), StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("store closed".into()))
        } else {
            Ok(())
        }
    }

    /// Whether to try again after `f`, the `n`th failure; waits the interval if so.
    async fn again(&self, op: &str, f: &Failure, n: u32, write: bool) -> bool {
        let retryable = if write {
            f.never_applied()
        } else {
            f.is_unavailable()
        };
        if !retryable || n > self.retries || self.closed.load(Ordering::SeqCst) {
            return false;
        }
        tracing::debug!(error = %f, attempt = n, "{op}: Firestore unavailable, retrying");
        tokio::time::sleep(self.retry_interval).await;
        true
    }

    /// A read, tried again while Firestore is unavailable.
    async fn read<T, Fut>(&self, op: &str, f: impl Fn() -> Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        self.open_or_err()?;
        let mut n = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    n += 1;
                    if !self.again(op, &e, n, false).await {
                        return Err(failed(op, e));
                    }
                }
            }
        }
    }

    /// A commit, sent again only if it certainly was not applied: the connection could
    /// not be made, or Firestore aborted it for contention (a lock on one of its
    /// documents held too long by another write). The failure is returned as is for the
    /// caller to read (conflicts, missing rooms).
    async fn commit(&self, op: &str, writes: Vec<Value>) -> Result<(), Failure> {
        let mut n = 0;
        let mut contended = 0;
        loop {
            match self.rest.commit(writes.clone(), None).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is("ABORTED") && contended < CONTENTION_ATTEMPTS => {
                    contended += 1;
                    tracing::debug!(error = %e, attempt = contended, "{op}: contention, retrying");
                    tokio::time::sleep(backoff(contended)).await;
                }
                Err(e) => {
                    n += 1;
                    if !self.again(op, &e, n, true).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Holds the stripes of the rooms `events` number, in order (so two writers never
    /// wait for each other's).
    async fn lock_rooms(&self, events: &[Event]) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash, Hasher};
        let mut stripes: Vec<usize> = events
            .iter()
            .filter_map(|e| e.room_id.as_ref())
            .map(|r| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                r.as_str().hash(&mut h);
                (h.finish() % EVENT_LOCKS as u64) as usize
            })
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.event_locks[s].lock().await);
        }
        guards
    }

    /// The writes recording `events` in transaction `tx`: each room's counter read in
    /// it and moved on, each event into the log and the outbox.
    async fn event_writes(&self, events: &[Event], tx: &str) -> Result<Vec<Value>, Failure> {
        let mut rooms: Vec<&str> = events
            .iter()
            .filter_map(|e| e.room_id.as_ref().map(|r| r.as_str()))
            .collect();
        rooms.sort_unstable();
        rooms.dedup();
        let names: Vec<String> = rooms
            .iter()
            .map(|r| self.rest.name(EVENT_ROOM_SEQ, &doc_id(r)))
            .collect();
        let found = if names.is_empty() {
            Vec::new()
        } else {
            self.rest.get(&names, Some(tx)).await?
        };
        let mut last: std::collections::HashMap<&str, i64> = rooms
            .iter()
            .zip(&found)
            .map(|(r, d)| {
                (
                    *r,
                    d.as_ref().map_or(0, |d| Doc::new(d).int_or_zero("last")),
                )
            })
            .collect();
        let mut writes = Vec::with_capacity(events.len() * 2 + rooms.len());
        for e in events {
            let seq = e.room_id.as_ref().map(|r| {
                let n = last.entry(r.as_str()).or_default();
                *n += 1;
                *n
            });
            let body = serde_json::to_string(&Event {
                seq: None,
                ..e.clone()
            })
            .map_err(|err| Failure::Status {
                status: "ENCODING".into(),
                message: format!("event {}: {err}", e.id),
            })?;
            let mut fields = Fields::new()
                .uuid("id", e.id)
                .int("position", next_seq())
                .time("at", &e.at)
                .str("body", &body);
            fields = match (&e.room_id, seq) {
                (Some(r), Some(s)) => fields.str("room_id", r.as_str()).int("seq", s),
                _ => fields.null("room_id"),
            };
            let fields = fields.into_map();
            writes.push(create(
                self.rest.name(EVENTS, &e.id.to_string()),
                fields.clone(),
            ));
            writes.push(create(
                self.rest.name(EVENT_OUTBOX, &e.id.to_string()),
                fields,
            ));
        }
        for (room, name) in rooms.iter().zip(names) {
            let n = last.get(room).copied().unwrap_or_default();
            writes.push(json!({
                "update": { "name": name, "fields": Fields::new().int("last", n).into_map() },
            }));
        }
        Ok(writes)
    }

    /// Commits `writes` with `events` recorded, in a transaction when there are events
    /// (their rooms' counters are read in it); run again while Firestore aborts it for
    /// contention, or when it certainly was not applied.
    async fn commit_with(
        &self,
        op: &str,
        writes: Vec<Value>,
        events: &[Event],
    ) -> Result<(), Failure> {
        if events.is_empty() {
            return self.commit(op, writes).await;
        }
        let _rooms = self.lock_rooms(events).await;
        let mut n = 0;
        let mut contended = 0;
        loop {
            let result = match self.rest.begin().await {
                Ok(tx) => {
                    let r = match self.event_writes(events, &tx).await {
                        Ok(mut ev) => {
                            let mut all = writes.clone();
                            all.append(&mut ev);
                            self.rest.commit(all, Some(&tx)).await
                        }
                        Err(e) => Err(e),
                    };
                    if r.is_err() {
                        self.rest.rollback(&tx).await;
                    }
                    r
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) => {
                    if e.is("ABORTED") && contended < CONTENTION_ATTEMPTS {
                        contended += 1;
                        tokio::time::sleep(backoff(contended)).await;
                        continue;
                    }
                    n += 1;
                    if !self.again(op, &e, n, true).await {
                        return Err(e);
                    }
                }
            }
        }
    }

    fn room_name(&self, room_id: &str) -> String {
        self.rest.name(WEBRTC_ROOMS, &doc_id(room_id))
    }

    fn member_name(&self, collection: &str, room_id: &str, client_id: &str) -> String {
        self.rest
            .name(collection, &member_doc_id(room_id, client_id))
    }

    /// Documents of `collection` in room `room_id`, decoded and sorted by `key` then
    /// `seq`.
    async fn in_room<T>(
        &self,
        op: &str,
        collection: &str,
        room_id: &str,
        decode: impl Fn(&Doc<'_>) -> Result<T, StoreError>,
        key: impl Fn(&T) -> DateTime<Utc>,
    ) -> Result<Vec<T>, StoreError> {
        let docs = self
            .read(op, || {
                self.rest.where_eq(collection, "room_id", room_id, None)
            })
            .await?;
        let mut rows = docs
            .iter()
            .map(|d| {
                let doc = Doc::new(d);
                Ok((decode(&doc)?, doc.int_or_zero("seq")))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        rows.sort_by(|(a, sa), (b, sb)| key(a).cmp(&key(b)).then(sa.cmp(sb)));
        Ok(rows.into_iter().map(|(r, _)| r).collect())
    }

    fn member_writes(&self, m: &MemberRecords, seq: i64) -> [Value; 2] {
        let c = &m.client_in_room;
        let w = &m.webrtc_client;
        [
            create(
                self.member_name(CLIENT_IN_ROOM, &c.room_id, &c.client_id),
                Fields::new()
                    .uuid("id", c.id)
                    .str("client_id", &c.client_id)
                    .str("room_id", &c.room_id)
                    .time("joined_at", &c.joined_at)
                    .time("last_activity", &c.last_activity)
                    .str("status", &c.status)
                    .strings("capabilities", &c.capabilities)
                    .json("metadata", &c.metadata)
                    .time("record_created_at", &c.record_created_at)
                    .int("seq", seq)
                    .into_map(),
            ),
            create(
                self.member_name(WEBRTC_CLIENTS, &w.room_id, &w.client_id),
                Fields::new()
                    .uuid("id", w.id)
                    .str("client_id", &w.client_id)
                    .str("room_id", &w.room_id)
                    .str("role", &w.role)
                    .opt_str("session_id", w.session_id.as_deref())
                    .time("joined_at", &w.joined_at)
                    .str("status", &w.status)
                    .json("metadata", &w.metadata)
                    .time("record_created_at", &w.record_created_at)
                    .int("seq", seq)
                    .into_map(),
            ),
        ]
    }

    fn history_write(&self, h: &ClientInTerminatedRoomRecord, seq: i64) -> Value {
        create(
            self.rest.name(CLIENT_IN_TERMINATED_ROOM, &h.id.to_string()),
            Fields::new()
                .uuid("id", h.id)
                .str("client_id", &h.client_id)
                .str("room_id", &h.room_id)
                .time("joined_at", &h.joined_at)
                .time("left_at", &h.left_at)
                .str("termination_reason", &h.termination_reason)
                .str("terminated_by", &h.terminated_by)
                .str("final_status", &h.final_status)
                .strings("capabilities", &h.capabilities)
                .json("metadata", &h.metadata)
                .time("record_created_at", &h.record_created_at)
                .int("seq", seq)
                .into_map(),
        )
    }

    /// One attempt at terminating a room, in a transaction.
    async fn terminate_once(
        &self,
        record: &TerminatedRoomRecord,
        members: &[ClientInTerminatedRoomRecord],
        events: &[Event],
    ) -> Result<(), Failure> {
        let tx = self.rest.begin().await?;
        let result = async {
            let room = self.room_name(&record.room_id);
            // Reading the room in the transaction makes a concurrent join (which checks
            // the room) conflict with it.
            self.rest
                .get(std::slice::from_ref(&room), Some(&tx))
                .await?;
            let mut writes = Vec::new();
            for collection in [CLIENT_IN_ROOM, WEBRTC_CLIENTS] {
                for d in self
                    .rest
                    .where_eq(collection, "room_id", &record.room_id, Some(&tx))
                    .await?
                {
                    if let Some(name) = d.get("name").and_then(Value::as_str) {
                        writes.push(delete(name.to_owned()));
                    }
                }
            }
            writes.push(delete(room));
            let seq = next_seq();
            writes.push(create(
                self.rest.name(TERMINATED_ROOMS, &record.id.to_string()),
                Fields::new()
                    .uuid("id", record.id)
                    .str("room_id", &record.room_id)
                    .time("terminated_at", &record.terminated_at)
                    .time("termination_recorded_at", &record.termination_recorded_at)
                    .json("room_data", &record.room_data)
                    .opt_str("termination_reason", record.termination_reason.as_deref())
                    .opt_str("terminated_by", record.terminated_by.as_deref())
                    .json("metadata", &record.metadata)
                    .time("record_created_at", &record.record_created_at)
                    .int("seq", seq)
                    .into_map(),
            ));
            for (i, h) in members.iter().enumerate() {
                writes.push(self.history_write(h, seq + i as i64));
            }
            writes.extend(self.event_writes(events, &tx).await?);
            self.rest.commit(writes, Some(&tx)).await
        }
        .await;
        if result.is_err() {
            self.rest.rollback(&tx).await;
        }
        result
    }
}

fn created_fields(created: &RoomCreatedRecord, seq: i64) -> serde_json::Map<String, Value> {
    Fields::new()
        .uuid("id", created.id)
        .uuid("room_uuid", created.room_uuid)
        .str("room_id", &created.room_id)
        .time("created_at", &created.created_at)
        .json("room_data", &created.room_data)
        .opt_str("created_by", created.created_by.as_deref())
        .json("metadata", &created.metadata)
        .time("record_created_at", &created.record_created_at)
        .int("seq", seq)
        .into_map()
}

/// A filter: string `field` greater than `value`.
fn greater_than(field: &str, value: &str) -> Value {
    json!({ "fieldFilter": {
        "field": { "fieldPath": field },
        "op": "GREATER_THAN",
        "value": { "stringValue": value },
    }})
}

// ----- decoding -----

fn decode_event(d: &Doc<'_>) -> Result<Event, StoreError> {
    let body = d.str("body")?;
    let mut e: Event = serde_json::from_str(&body)
        .map_err(|err| StoreError::Internal(format!("bad value in field body: {err}")))?;
    e.seq = match d.int_or_zero("seq") {
        0 => None,
        n => Some(
            u64::try_from(n)
                .map_err(|err| StoreError::Internal(format!("bad value in field seq: {err}")))?,
        ),
    };
    Ok(e)
}

fn decode_client(d: &Doc<'_>) -> Result<RegisteredClient, StoreError> {
    Ok(RegisteredClient {
        id: d.uuid("id")?,
        client_id: d.str("client_id")?,
        auth_token: d.str("auth_token")?,
        room_id: d.opt_str("room_id")?,
        capabilities: d.strings("capabilities")?,
        registered_at: d.time("registered_at")?,
        last_seen: d.opt_time("last_seen")?,
        status: d.str("status")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

fn decode_room(d: &Doc<'_>) -> Result<RoomRecord, StoreError> {
    Ok(RoomRecord {
        id: d.uuid("id")?,
        room_id: d.str("room_id")?,
        app_id: d.opt_str("app_id")?.unwrap_or_default(),
        created_at: d.time("created_at")?,
        status: d.str("status")?,
        sender_client_id: d.opt_str("sender_client_id")?,
        receiver_client_id: d.opt_str("receiver_client_id")?,
        session_id: d.opt_str("session_id")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

fn decode_member(d: &Doc<'_>) -> Result<ClientInRoomRecord, StoreError> {
    Ok(ClientInRoomRecord {
        id: d.uuid("id")?,
        client_id: d.str("client_id")?,
        room_id: d.str("room_id")?,
        joined_at: d.time("joined_at")?,
        last_activity: d.time("last_activity")?,
        status: d.str("status")?,
        capabilities: d.strings("capabilities")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

fn decode_webrtc(d: &Doc<'_>) -> Result<WebrtcClientRecord, StoreError> {
    Ok(WebrtcClientRecord {
        id: d.uuid("id")?,
        client_id: d.str("client_id")?,
        room_id: d.str("room_id")?,
        role: d.str("role")?,
        session_id: d.opt_str("session_id")?,
        joined_at: d.time("joined_at")?,
        status: d.str("status")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

fn decode_created(d: &Doc<'_>) -> Result<RoomCreatedRecord, StoreError> {
    Ok(RoomCreatedRecord {
        id: d.uuid("id")?,
        room_uuid: d.uuid("room_uuid")?,
        room_id: d.str("room_id")?,
        created_at: d.time("created_at")?,
        room_data: d.json("room_data"),
        created_by: d.opt_str("created_by")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

fn decode_terminated(d: &Doc<'_>) -> Result<TerminatedRoomRecord, StoreError> {
    Ok(TerminatedRoomRecord {
        id: d.uuid("id")?,
        room_id: d.str("room_id")?,
        terminated_at: d.time("terminated_at")?,
        termination_recorded_at: d.time("termination_recorded_at")?,
        room_data: d.json("room_data"),
        termination_reason: d.opt_str("termination_reason")?,
        terminated_by: d.opt_str("terminated_by")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

fn decode_history(d: &Doc<'_>) -> Result<ClientInTerminatedRoomRecord, StoreError> {
    Ok(ClientInTerminatedRoomRecord {
        id: d.uuid("id")?,
        client_id: d.str("client_id")?,
        room_id: d.str("room_id")?,
        joined_at: d.time("joined_at")?,
        left_at: d.time("left_at")?,
        termination_reason: d.str("termination_reason")?,
        terminated_by: d.str("terminated_by")?,
        final_status: d.str("final_status")?,
        capabilities: d.strings("capabilities")?,
        metadata: d.json("metadata"),
        record_created_at: d.time("record_created_at")?,
    })
}

#[async_trait]
impl Store for FirestoreStore {
    async fn health(&self) -> Result<(), StoreError> {
        let probe = self.rest.name(REGISTERED_CLIENTS, "%2Ehealth");
        self.read("health", || self.rest.get_one(probe.clone()))
            .await
            .map(drop)
    }

    async fn register_client(
        &self,
        c: &RegisteredClient,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.open_or_err()?;
        let write = create(
            self.rest.name(REGISTERED_CLIENTS, &doc_id(&c.client_id)),
            Fields::new()
                .uuid("id", c.id)
                .str("client_id", &c.client_id)
                .str("auth_token", &c.auth_token)
                .opt_str("room_id", c.room_id.as_deref())
                .strings("capabilities", &c.capabilities)
                .time("registered_at", &c.registered_at)
                .opt_time("last_seen", c.last_seen.as_ref())
                .str("status", &c.status)
                .json("metadata", &c.metadata)
                .time("record_created_at", &c.record_created_at)
                .into_map(),
        );
        match self
            .commit_with("register_client", vec![write], events)
            .await
        {
            Ok(()) => Ok(()),
            Err(f) if f.is("ALREADY_EXISTS") => Err(StoreError::Conflict(format!(
                "client '{}' is already registered",
                c.client_id
            ))),
            Err(f) => Err(failed("register_client", f)),
        }
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        let name = self.rest.name(REGISTERED_CLIENTS, &doc_id(client_id));
        let doc = self
            .read("get_client", || self.rest.get_one(name.clone()))
            .await?;
        doc.as_ref()
            .map(|d| decode_client(&Doc::new(d)))
            .transpose()
    }

    async fn delete_client(&self, client_id: &str, events: &[Event]) -> Result<bool, StoreError> {
        self.open_or_err()?;
        let name = self.rest.name(REGISTERED_CLIENTS, &doc_id(client_id));
        match self
            .commit_with("delete_client", vec![delete_existing(name)], events)
            .await
        {
            Ok(()) => Ok(true),
            Err(f) if f.is("NOT_FOUND") => Ok(false),
            Err(f) => Err(failed("delete_client", f)),
        }
    }

    async fn touch_client(&self, client_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.open_or_err()?;
        let name = self.rest.name(REGISTERED_CLIENTS, &doc_id(client_id));
        let write = update(name, Fields::new().time("last_seen", &at).into_map());
        match self.commit("touch_client", vec![write]).await {
            Ok(()) => Ok(()),
            Err(f) if f.is("NOT_FOUND") => Ok(()),
            Err(f) => Err(failed("touch_client", f)),
        }
    }

    async fn count_clients(&self) -> Result<u64, StoreError> {
        self.read("count_clients", || self.rest.count(REGISTERED_CLIENTS))
            .await
    }

    async fn create_room(
        &self,
        room: &RoomRecord,
        created: &RoomCreatedRecord,
        creator: &MemberRecords,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.open_or_err()?;
        for other in [
            &creator.client_in_room.room_id,
            &creator.webrtc_client.room_id,
        ] {
            if *other != room.room_id {
                return Err(StoreError::Internal(format!(
                    "room '{other}' is not active"
                )));
            }
        }
        let seq = next_seq();
        let mut writes = vec![
            create(
                self.room_name(&room.room_id),
                Fields::new()
                    .uuid("id", room.id)
                    .str("room_id", &room.room_id)
                    .str("app_id", &room.app_id)
                    .time("created_at", &room.created_at)
                    .str("status", &room.status)
                    .opt_str("sender_client_id", room.sender_client_id.as_deref())
                    .opt_str("receiver_client_id", room.receiver_client_id.as_deref())
                    .opt_str("session_id", room.session_id.as_deref())
                    .json("metadata", &room.metadata)
                    .time("record_created_at", &room.record_created_at)
                    .into_map(),
            ),
            create(
                self.rest.name(ROOM_CREATED, &created.room_uuid.to_string()),
                created_fields(created, seq),
            ),
        ];
        writes.extend(self.member_writes(creator, seq));
        match self.commit_with("create_room", writes, events).await {
            Ok(()) => Ok(()),
            Err(f) if f.is("ALREADY_EXISTS") => Err(StoreError::Conflict(format!(
                "room '{}' already exists",
                room.room_id
            ))),
            Err(f) => Err(failed("create_room", f)),
        }
    }

    async fn add_member(&self, member: &MemberRecords, events: &[Event]) -> Result<(), StoreError> {
        self.open_or_err()?;
        let room_id = &member.client_in_room.room_id;
        let client_id = &member.client_in_room.client_id;
        let slot = match member.webrtc_client.role.to_ascii_lowercase().as_str() {
            "sender" => Some("sender_client_id"),
            "receiver" => Some("receiver_client_id"),
            _ => None,
        };
        let room = self.room_name(room_id);
        let not_active = || StoreError::NoRoom(format!("room '{room_id}' is not active"));
        for _ in 0..CONTENTION_ATTEMPTS {
            let doc = self
                .read("add_member", || self.rest.get_one(room.clone()))
                .await?
                .ok_or_else(not_active)?;
            // The room's slot is filled only if nobody changed the room since it was read.
            let empty_slot = slot.filter(|s| {
                Doc::new(&doc)
                    .opt_str(s)
                    .ok()
                    .flatten()
                    .is_none_or(|v| v.is_empty())
            });
            let room_write = match (empty_slot, doc.get("updateTime").and_then(Value::as_str)) {
                (Some(s), Some(at)) => {
                    update_if(room.clone(), Fields::new().str(s, client_id).into_map(), at)
                }
                _ => update(room.clone(), serde_json::Map::new()),
            };
            let mut writes = self.member_writes(member, next_seq()).to_vec();
            writes.push(room_write);
            match self.commit_with("add_member", writes, events).await {
                Ok(()) => return Ok(()),
                Err(f) if f.is("ALREADY_EXISTS") => {
                    return Err(StoreError::Conflict(format!(
                        "client '{client_id}' is already in room '{room_id}'"
                    )));
                }
                Err(f) if f.is("NOT_FOUND") => return Err(not_active()),
                Err(f) if f.is("FAILED_PRECONDITION") => {
                    tokio::time::sleep(backoff(1)).await;
                    continue;
                }
                Err(f) => return Err(failed("add_member", f)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "add_member: room '{room_id}' kept changing under {CONTENTION_ATTEMPTS} attempts"
        )))
    }

    async fn remove_member(
        &self,
        history: &ClientInTerminatedRoomRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.open_or_err()?;
        let (room_id, client_id) = (&history.room_id, &history.client_id);
        let writes = vec![
            delete(self.member_name(CLIENT_IN_ROOM, room_id, client_id)),
            delete(self.member_name(WEBRTC_CLIENTS, room_id, client_id)),
            self.history_write(history, next_seq()),
        ];
        self.commit_with("remove_member", writes, events)
            .await
            .map_err(|f| failed("remove_member", f))
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.open_or_err()?;
        self.commit_with("append_events", Vec::new(), events)
            .await
            .map_err(|f| failed("append_events", f))
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        let query = json!({
            "from": [{ "collectionId": EVENT_OUTBOX }],
            "orderBy": [{ "field": { "fieldPath": "position" }, "direction": "ASCENDING" }],
            "limit": limit,
        });
        let docs = self
            .read("pending_events", || self.rest.query(query.clone(), None))
            .await?;
        docs.iter().map(|d| decode_event(&Doc::new(d))).collect()
    }

    async fn mark_delivered(&self, ids: &[uuid::Uuid]) -> Result<(), StoreError> {
        self.open_or_err()?;
        for chunk in ids.chunks(400) {
            let writes = chunk
                .iter()
                .map(|id| delete(self.rest.name(EVENT_OUTBOX, &id.to_string())))
                .collect();
            self.commit("mark_delivered", writes)
                .await
                .map_err(|f| failed("mark_delivered", f))?;
        }
        Ok(())
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.open_or_err()?;
        let mut pruned = 0u64;
        loop {
            // The log's oldest events (a single-field index on `at`), 300 at a time.
            let query = json!({
                "from": [{ "collectionId": EVENTS }],
                "where": { "fieldFilter": {
                    "field": { "fieldPath": "at" },
                    "op": "LESS_THAN",
                    "value": crate::fields::timestamp(&before),
                }},
                "orderBy": [{ "field": { "fieldPath": "at" }, "direction": "ASCENDING" }],
                "limit": 300,
            });
            let docs = self
                .read("prune_events", || self.rest.query(query.clone(), None))
                .await?;
            let ids: Vec<String> = docs
                .iter()
                .filter_map(|d| Doc::new(d).str("id").ok())
                .collect();
            if ids.is_empty() {
                return Ok(pruned);
            }
            // Those still in the outbox are not delivered: kept.
            let pending_names: Vec<String> = ids
                .iter()
                .map(|id| self.rest.name(EVENT_OUTBOX, id))
                .collect();
            let pending = self
                .read("prune_events", || self.rest.get(&pending_names, None))
                .await?;
            let writes: Vec<Value> = ids
                .iter()
                .zip(&pending)
                .filter(|(_, p)| p.is_none())
                .map(|(id, _)| delete(self.rest.name(EVENTS, id)))
                .collect();
            let n = writes.len() as u64;
            if n > 0 {
                self.commit("prune_events", writes)
                    .await
                    .map_err(|f| failed("prune_events", f))?;
                pruned += n;
            }
            if ids.len() < 300 || n == 0 {
                return Ok(pruned);
            }
        }
    }

    async fn room_events(
        &self,
        room_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let docs = self
            .read("room_events", || {
                self.rest.where_eq(EVENTS, "room_id", room_id, None)
            })
            .await?;
        let mut events = docs
            .iter()
            .map(|d| decode_event(&Doc::new(d)))
            .collect::<Result<Vec<_>, _>>()?;
        events.retain(|e| e.seq.is_some_and(|s| s > since));
        events.sort_by_key(|e| e.seq);
        events.truncate(limit as usize);
        Ok(events)
    }

    async fn terminate_room(
        &self,
        record: &TerminatedRoomRecord,
        members: &[ClientInTerminatedRoomRecord],
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.open_or_err()?;
        let _rooms = self.lock_rooms(events).await;
        let mut n = 0;
        let mut contended = 0;
        loop {
            match self.terminate_once(record, members, events).await {
                Ok(()) => return Ok(()),
                Err(f) if f.is("ABORTED") && contended < CONTENTION_ATTEMPTS => {
                    contended += 1;
                    tokio::time::sleep(backoff(contended)).await;
                }
                Err(f) => {
                    // A transaction that failed before its commit was sent changed nothing.
                    n += 1;
                    if !self.again("terminate_room", &f, n, true).await {
                        return Err(failed("terminate_room", f));
                    }
                }
            }
        }
    }

    async fn export_clients(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RegisteredClient>, StoreError> {
        let mut query = json!({
            "from": [{ "collectionId": REGISTERED_CLIENTS }],
            "orderBy": [{ "field": { "fieldPath": "client_id" }, "direction": "ASCENDING" }],
            "limit": limit,
        });
        if let Some(after) = after {
            query["where"] = greater_than("client_id", after);
        }
        let docs = self
            .read("export_clients", || self.rest.query(query.clone(), None))
            .await?;
        docs.iter().map(|d| decode_client(&Doc::new(d))).collect()
    }

    async fn history_room_ids(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        // Firestore has no DISTINCT: read room ids in order, skipping repeats, until
        // `limit` distinct ones are in or the collection ends.
        let mut ids: Vec<String> = Vec::new();
        let mut cursor = after.map(str::to_owned);
        let page = limit.clamp(1, 500);
        while ids.len() < limit as usize {
            let mut query = json!({
                "select": { "fields": [{ "fieldPath": "room_id" }] },
                "from": [{ "collectionId": ROOM_CREATED }],
                "orderBy": [{ "field": { "fieldPath": "room_id" }, "direction": "ASCENDING" }],
                "limit": page,
            });
            if let Some(c) = &cursor {
                query["where"] = greater_than("room_id", c);
            }
            let docs = self
                .read("history_room_ids", || self.rest.query(query.clone(), None))
                .await?;
            for d in &docs {
                let id = Doc::new(d).str("room_id")?;
                if ids.last() != Some(&id) && ids.len() < limit as usize {
                    ids.push(id);
                }
            }
            if docs.len() < page as usize {
                break;
            }
            // The next page starts after the last id seen: its repeats are not needed.
            cursor = docs
                .last()
                .map(|d| Doc::new(d).str("room_id"))
                .transpose()?;
        }
        Ok(ids)
    }

    async fn import_room_created(&self, created: &RoomCreatedRecord) -> Result<(), StoreError> {
        self.open_or_err()?;
        let write = create(
            self.rest.name(ROOM_CREATED, &created.room_uuid.to_string()),
            created_fields(created, next_seq()),
        );
        match self.commit("import_room_created", vec![write]).await {
            Ok(()) => Ok(()),
            Err(f) if f.is("ALREADY_EXISTS") => Err(StoreError::Conflict(format!(
                "room_created row {} already exists",
                created.id
            ))),
            Err(f) => Err(failed("import_room_created", f)),
        }
    }

    async fn active_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let docs = self
            .read("active_rooms", || {
                self.rest.query(
                    json!({
                        "from": [{ "collectionId": WEBRTC_ROOMS }],
                        "orderBy": [{ "field": { "fieldPath": "created_at" }, "direction": "ASCENDING" }],
                    }),
                    None,
                )
            })
            .await?;
        docs.iter().map(|d| decode_room(&Doc::new(d))).collect()
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        let name = self.room_name(room_id);
        let doc = self
            .read("get_room", || self.rest.get_one(name.clone()))
            .await?;
        doc.as_ref().map(|d| decode_room(&Doc::new(d))).transpose()
    }

    async fn room_members(&self, room_id: &str) -> Result<Vec<ClientInRoomRecord>, StoreError> {
        self.in_room(
            "room_members",
            CLIENT_IN_ROOM,
            room_id,
            decode_member,
            |m| m.joined_at,
        )
        .await
    }

    async fn room_webrtc_clients(
        &self,
        room_id: &str,
    ) -> Result<Vec<WebrtcClientRecord>, StoreError> {
        self.in_room(
            "room_webrtc_clients",
            WEBRTC_CLIENTS,
            room_id,
            decode_webrtc,
            |m| m.joined_at,
        )
        .await
    }

    async fn room_created(&self, room_id: &str) -> Result<Vec<RoomCreatedRecord>, StoreError> {
        self.in_room("room_created", ROOM_CREATED, room_id, decode_created, |r| {
            r.created_at
        })
        .await
    }

    async fn terminated_rooms(
        &self,
        room_id: &str,
    ) -> Result<Vec<TerminatedRoomRecord>, StoreError> {
        self.in_room(
            "terminated_rooms",
            TERMINATED_ROOMS,
            room_id,
            decode_terminated,
            |r| r.terminated_at,
        )
        .await
    }

    async fn member_history(
        &self,
        room_id: &str,
    ) -> Result<Vec<ClientInTerminatedRoomRecord>, StoreError> {
        self.in_room(
            "member_history",
            CLIENT_IN_TERMINATED_ROOM,
            room_id,
            decode_history,
            |h| h.left_at,
        )
        .await
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}
