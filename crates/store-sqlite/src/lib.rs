//! The embedded SQLite implementation of the signal-manager [`Store`] port.
//!
//! [`SqliteStore::open`] opens (creating it and its missing parent directories if needed) a
//! database file and runs the embedded migrations (`migrations/0001_init.sql`: the seed's
//! seven tables).
//!
//! # Durability and concurrency
//!
//! * The journal is WAL with `synchronous=NORMAL`: a committed transaction survives a crash
//!   of the process (the WAL is written before `COMMIT` returns, only its `fsync` is deferred
//!   to checkpoints), which is what "acknowledge only after commit" needs. An OS crash or
//!   power loss may lose the last transactions; `FULL` would cost an `fsync` per commit for
//!   that case, which a signaling server does not need.
//! * Readers never block writers and vice versa. Writes go through one writer task, which
//!   commits the writes waiting at that moment in one transaction (`BEGIN IMMEDIATE`),
//!   each inside a savepoint so a failing write is undone alone; each caller is answered
//!   after the commit that holds its write. Nothing waits in SQLite's busy handler except
//!   against another process holding the database (up to `busy_timeout`, 5 s).
//! * Foreign keys are on: member rows (`client_in_room`, `webrtc_clients`) need an active
//!   room in `webrtc_rooms`.
//! * Every operation is bounded by [`SqliteOptions::operation_timeout`].
//!
//! # Storage format
//!
//! UUIDs are hyphenated TEXT, timestamps RFC 3339 TEXT in UTC with nanoseconds
//! (`2024-06-01T12:00:00.000000000Z`, fixed width so that text order is time order), JSON
//! values and capability lists JSON TEXT.
//!
//! # Errors
//!
//! Pool, I/O, lock and timeout failures are [`StoreError::Unavailable`]; unique-key
//! violations are [`StoreError::Conflict`] with a message naming the key; the rest is
//! [`StoreError::Internal`]. Messages carry ids and SQLite's own text, never a token or a
//! database URL.

mod export;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use signal_core::events::Event;
use signal_core::store::{
    ClientInRoomRecord, ClientInTerminatedRoomRecord, MemberRecords, RegisteredClient,
    RoomCreatedRecord, RoomRecord, Store, StoreError, TerminatedRoomRecord, WebrtcClientRecord,
};
use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqliteConnection};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

/// The embedded migrations (`crates/store-sqlite/migrations`).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// How long SQLite waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Tuning of a [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Connections in the pool (at least 1; an in-memory database always uses 1).
    pub max_connections: u32,
    /// Upper bound of every store operation, including waiting for a pooled connection;
    /// past it the operation fails with [`StoreError::Unavailable`].
    pub operation_timeout: Duration,
    /// Further attempts of a read that found the database unavailable (a timeout, a
    /// fault such as a full disk or a replaced file, while the store recovers). Writes
    /// are not tried again: one that timed out may still commit.
    pub retry_attempts: u32,
    /// The pause before each further attempt.
    pub retry_interval: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            operation_timeout: Duration::from_secs(5),
            retry_attempts: 3,
            retry_interval: Duration::from_millis(100),
        }
    }
}

/// A [`Store`] on an embedded SQLite database.
#[derive(Debug)]
pub struct SqliteStore {
    inner: Arc<Inner>,
    /// The writer task's queue (see [`writer`]).
    writes: mpsc::UnboundedSender<WriteJob>,
    /// The client reader's queue (see [`client_reader`]).
    client_reads: mpsc::UnboundedSender<ClientRead>,
    timeout: Duration,
    retries: u32,
    retry_interval: Duration,
}

/// What the store, its writer task and its health monitor share.
#[derive(Debug)]
struct Inner {
    /// Replaced (not mutated) when the database is reopened after a fault.
    pool: RwLock<SqlitePool>,
    /// The database file and the file it was when opened (`None` in memory).
    file: Option<FileWatch>,
    /// Why the store cannot take writes now; `None` while it is healthy.
    fault: Mutex<Option<String>>,
    /// A write failed as "unavailable": the monitor probes whether the store still
    /// takes writes.
    suspect: AtomicBool,
    closed: AtomicBool,
    connect: SqliteConnectOptions,
    max_connections: u32,
    timeout: Duration,
}

/// The database file, known by its device and inode: a file removed, or another file
/// moved to its path, is noticed before a write is acknowledged into it.
#[derive(Debug)]
struct FileWatch {
    path: PathBuf,
    id: Mutex<Option<(u64, u64)>>,
}

/// How often the health monitor looks at the file and, while the store is faulty,
/// tries to reopen it.
const MONITOR_EVERY: Duration = Duration::from_secs(1);

/// Why a URL is not accepted (the URL itself is not echoed: it could hold a password).
const BAD_URL: &str =
    "unsupported database url: expected sqlite://PATH, sqlite:PATH or sqlite::memory:";

impl SqliteStore {
    /// Opens the database at `url` and brings its schema up to date.
    ///
    /// Accepts `sqlite://PATH` and `sqlite:PATH` (relative or absolute; the file and its
    /// missing parent directories are created) and `sqlite::memory:` (a private in-memory
    /// database that lives as long as the store).
    pub async fn open(url: &str, opts: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let rest = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Internal(BAD_URL.into()))?;
        let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
        let in_memory = path == ":memory:"
            || params
                .split('&')
                .any(|p| p.eq_ignore_ascii_case("mode=memory"));
        if !in_memory && path.is_empty() {
            return Err(StoreError::Internal(BAD_URL.into()));
        }

        let mut connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("{BAD_URL} ({e})")))?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .synchronous(SqliteSynchronous::Normal)
            // Savepoints' journals (one per write in a batch) in memory, not temporary
            // files: they only ever undo a failed write inside the open transaction.
            .pragma("temp_store", "memory");
        let mut file = None;
        if !in_memory {
            connect = connect.journal_mode(SqliteJournalMode::Wal);
            let path = connect.get_filename().to_owned();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_dir(dir)?;
            }
            file = Some(FileWatch {
                path,
                id: Mutex::new(None),
            });
        }
        let pool = connect_pool(
            &connect.clone().create_if_missing(true),
            in_memory,
            opts.max_connections,
            opts.operation_timeout,
        )
        .await?;
        if let Some(f) = &file {
            *lock(&f.id) = file_id(&f.path);
        }
        tracing::info!(in_memory, "sqlite store opened");
        let inner = Arc::new(Inner {
            pool: RwLock::new(pool),
            file,
            fault: Mutex::new(None),
            suspect: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            connect,
            max_connections: opts.max_connections,
            timeout: opts.operation_timeout,
        });
        let (writes, jobs) = mpsc::unbounded_channel();
        tokio::spawn(writer(inner.clone(), jobs));
        tokio::spawn(monitor(Arc::downgrade(&inner), writes.downgrade()));
        let (client_reads, reads) = mpsc::unbounded_channel();
        tokio::spawn(client_reader(inner.clone(), reads));
        Ok(SqliteStore {
            inner,
            writes,
            client_reads,
            timeout: opts.operation_timeout,
            retries: opts.retry_attempts,
            retry_interval: opts.retry_interval,
        })
    }

    /// The connection pool in use (for tests and diagnostics).
    pub fn pool(&self) -> SqlitePool {
        self.inner.pool()
    }

    /// Runs one store operation, bounded by the operation timeout.
    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>> + Send,
    ) -> Result<T, StoreError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(result) => result,
            Err(_) => {
                tracing::warn!(op, timeout = ?self.timeout, "sqlite store operation timed out");
                Err(StoreError::Unavailable(format!(
                    "{op} timed out after {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// Runs a read, tried again while the database is unavailable (up to
    /// [`SqliteOptions::retry_attempts`] more times).
    async fn read<T, Fut>(&self, op: &'static str, f: impl Fn() -> Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let mut n = 0;
        loop {
            match self.run(op, f()).await {
                Err(StoreError::Unavailable(why))
                    if n < self.retries && !self.inner.closed.load(Ordering::SeqCst) =>
                {
                    n += 1;
                    tracing::debug!(op, attempt = n, %why, "sqlite store unavailable, retrying");
                    tokio::time::sleep(self.retry_interval).await;
                }
                other => return other,
            }
        }
    }

    /// Runs a writing operation: hands it to the writer task and waits for the commit
    /// that includes it. Bounded by the operation timeout like every operation; a write
    /// whose caller gave up before its turn is not run.
    async fn write(&self, op: &'static str, f: WriteFn) -> Result<u64, StoreError> {
        self.write_op(op, Op::Fn(f)).await
    }

    /// Runs a write the writer knows by kind (see [`Op`]).
    async fn write_op(&self, name: &'static str, op: Op) -> Result<u64, StoreError> {
        self.write_with(name, op, Vec::new()).await
    }

    /// Runs a write and records `events` in the same transaction.
    async fn write_with(
        &self,
        name: &'static str,
        op: Op,
        events: Vec<Event>,
    ) -> Result<u64, StoreError> {
        self.run(name, submit(&self.writes, op, events, false))
            .await
    }
}

/// Hands a write to the writer task and waits for its answer.
async fn submit(
    writes: &mpsc::UnboundedSender<WriteJob>,
    op: Op,
    events: Vec<Event>,
    probe: bool,
) -> Result<u64, StoreError> {
    let (reply, done) = oneshot::channel();
    writes
        .send(WriteJob {
            op,
            events,
            reply,
            probe,
        })
        .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
    done.await
        .map_err(|_| StoreError::Unavailable("the store's writer stopped".into()))?
}

/// Opens a pool and brings the schema up to date; the first connection (which switches
/// the file to WAL) and the migrations run alone, before any other connection exists.
async fn connect_pool(
    connect: &SqliteConnectOptions,
    in_memory: bool,
    max_connections: u32,
    timeout: Duration,
) -> Result<SqlitePool, StoreError> {
    let mut pool = SqlitePoolOptions::new().acquire_timeout(timeout);
    pool = if in_memory {
        // One connection that never closes: the database dies with its last connection.
        pool.max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        pool.max_connections(max_connections.max(1))
    };
    let pool = tokio::time::timeout(timeout, pool.connect_with(connect.clone()))
        .await
        .map_err(|_| {
            StoreError::Unavailable(format!("opening the database timed out after {timeout:?}"))
        })?
        .map_err(classify)?;
    if let Err(e) = MIGRATOR.run(&pool).await {
        pool.close().await;
        return Err(StoreError::Internal(format!("migrating the database: {e}")));
    }
    Ok(pool)
}

/// Locks a mutex, taking over one a panicking holder poisoned (the data is plain state).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The file's device and inode, or `None` if there is no file at `path`.
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

// === impl Inner ===

impl Inner {
    fn pool(&self) -> SqlitePool {
        self.pool
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn fault(&self) -> Option<String> {
        lock(&self.fault).clone()
    }

    /// Marks the store faulty (the first reason is kept until it recovers).
    fn set_fault(&self, why: String) {
        let mut f = lock(&self.fault);
        if f.is_none() {
            tracing::error!(reason = %why, "database unavailable: writes are refused until it recovers");
            *f = Some(why);
        }
    }

    /// Whether the database file is still the one the pool has open.
    fn check_file(&self) -> Result<(), String> {
        let Some(f) = &self.file else { return Ok(()) };
        let opened = *lock(&f.id);
        match file_id(&f.path) {
            None => Err(format!(
                "the database file {} is gone (removed, or its directory deleted)",
                f.path.display()
            )),
            Some(now) if Some(now) != opened => Err(format!(
                "the database file {} was replaced by another file",
                f.path.display()
            )),
            Some(_) => Ok(()),
        }
    }

    /// Fails with the fault, if there is one or the file check finds one.
    fn usable(&self) -> Result<(), StoreError> {
        if let Some(why) = self.fault() {
            return Err(StoreError::Unavailable(why));
        }
        self.check_file().map_err(|why| {
            self.set_fault(why.clone());
            StoreError::Unavailable(why)
        })
    }

    /// Opens the database file afresh (it must exist: a removed database is not silently
    /// replaced by an empty one) and swaps the pool.
    async fn reopen(&self) -> Result<(), String> {
        let Some(f) = &self.file else { return Ok(()) };
        if file_id(&f.path).is_none() {
            return Err(format!(
                "the database file {} is gone (removed, or its directory deleted); restore it, or restart the server to create a new one",
                f.path.display()
            ));
        }
        // The old connections close first: the last one to close removes the WAL at the
        // path, which must not be the new connections' WAL.
        self.pool().close().await;
        let pool = connect_pool(&self.connect, false, self.max_connections, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let id = file_id(&f.path);
        *self
            .pool
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = pool;
        *lock(&f.id) = id;
        Ok(())
    }
}

/// Watches the store's health: notices a removed or replaced file, probes with a write
/// after a write failed as unavailable, and, while the store is faulty, reopens it and
/// clears the fault once a write goes through again. Ends with the store: it holds the
/// writer's queue weakly, so a store dropped without `close` still ends its writer.
async fn monitor(inner: Weak<Inner>, writes: mpsc::WeakUnboundedSender<WriteJob>) {
    let mut tick = tokio::time::interval(MONITOR_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (Some(inner), Some(writes)) = (inner.upgrade(), writes.upgrade()) else {
            return;
        };
        if inner.closed.load(Ordering::SeqCst) {
            return;
        }
        if inner.fault().is_none() {
            if let Err(why) = inner.check_file() {
                inner.set_fault(why);
            } else if inner.suspect.swap(false, Ordering::SeqCst)
                && let Err(e) = probe(&inner, &writes).await
            {
                inner.set_fault(e.to_string());
            }
            continue;
        }
        let recovered = match inner.reopen().await {
            Ok(()) => probe(&inner, &writes).await.map_err(|e| e.to_string()),
            Err(why) => Err(why),
        };
        match recovered {
            Ok(()) => {
                *lock(&inner.fault) = None;
                inner.suspect.store(false, Ordering::SeqCst);
                tracing::warn!("database available again: writes are accepted");
            }
            Err(why) => tracing::debug!(reason = %why, "database still unavailable"),
        }
    }
}

/// A real write through the writer (the header's user version, rewritten unchanged):
/// proves the database takes and commits writes.
async fn probe(inner: &Inner, writes: &mpsc::UnboundedSender<WriteJob>) -> Result<(), StoreError> {
    let f = job(|tx| {
        Box::pin(async move {
            let v: i64 = sqlx::query_scalar("PRAGMA user_version")
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?;
            // `v` is an integer read from the database: nothing to inject.
            sqlx::query(sqlx::AssertSqlSafe(format!("PRAGMA user_version = {v}")))
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            Ok(0)
        })
    });
    tokio::time::timeout(inner.timeout, submit(writes, Op::Fn(f), Vec::new(), true))
        .await
        .map_err(|_| StoreError::Unavailable("the health probe timed out".into()))?
        .map(drop)
}

/// One write: the statements to run on the writer's connection, inside its transaction.
type WriteFn = Box<
    dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<u64, StoreError>> + Send,
>;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Wraps a write's statements (the bound helps the closure's lifetimes infer).
fn job<F>(f: F) -> WriteFn
where
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<u64, StoreError>>
        + Send
        + 'static,
{
    Box::new(f)
}

/// A write as the writer gets it: statements to run, or a lifecycle write it knows, which
/// it can commit together with others of its kind in a few statements (see
/// [`together`]).
enum Op {
    Fn(WriteFn),
    AddMember(Box<MemberRecords>),
    CreateRoom(Box<NewRoom>),
    RemoveMember(Box<ClientInTerminatedRoomRecord>),
    /// `touch_client`: the client and its `last_seen`.
    Touch(Box<(String, DateTime<Utc>)>),
    /// `append_events`: nothing but the job's events.
    Append,
}

/// What `create_room` writes.
struct NewRoom {
    room: RoomRecord,
    created: RoomCreatedRecord,
    creator: MemberRecords,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum OpKind {
    Fn,
    AddMember,
    CreateRoom,
    RemoveMember,
    Touch,
    Append,
}

impl Op {
    fn kind(&self) -> OpKind {
        match self {
            Op::Fn(_) => OpKind::Fn,
            Op::AddMember(_) => OpKind::AddMember,
            Op::CreateRoom(_) => OpKind::CreateRoom,
            Op::RemoveMember(_) => OpKind::RemoveMember,
            Op::Touch(_) => OpKind::Touch,
            Op::Append => OpKind::Append,
        }
    }

    /// Runs this one write's statements on the writer's connection, then records its
    /// events (a write that changed nothing, `Ok(0)` from a statement closure that says
    /// so, records none: see [`Op::Fn`]).
    async fn run(self, tx: &mut SqliteConnection, events: &[Event]) -> Result<u64, StoreError> {
        let n = self.run_alone(tx).await?;
        if n != NOTHING_DONE {
            insert_events(tx, events.iter()).await?;
        }
        Ok(n)
    }

    async fn run_alone(self, tx: &mut SqliteConnection) -> Result<u64, StoreError> {
        match self {
            Op::Fn(f) => f(tx).await,
            Op::AddMember(m) => add_member_stmts(tx, &m).await.map(|()| 0),
            Op::CreateRoom(r) => create_room_stmts(tx, &r).await.map(|()| 0),
            Op::RemoveMember(h) => {
                delete_member(&mut *tx, &h.client_id, &h.room_id).await?;
                insert_history(&mut *tx, &h).await?;
                Ok(0)
            }
            Op::Append => Ok(0),
            Op::Touch(t) => {
                sqlx::query("UPDATE registered_clients SET last_seen = ? WHERE client_id = ?")
                    .bind(ts(&t.1))
                    .bind(&t.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                Ok(0)
            }
        }
    }
}

struct WriteJob {
    op: Op,
    /// The events the write records (the event outbox), in its transaction.
    events: Vec<Event>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
    /// The health monitor's probe: runs while the store is marked faulty.
    probe: bool,
}

/// A `get_client` waiting for the client reader.
struct ClientRead {
    client_id: String,
    reply: oneshot::Sender<Result<Option<RegisteredClient>, StoreError>>,
}

/// Most client look-ups read together.
const MAX_READS: usize = 256;

/// Reads registered clients for `get_client`: the look-ups waiting at that moment in one
/// query. Each query is a round trip to a connection's own thread; a burst of requests
/// that each check their client (a join storm) costs one per batch instead of one each.
/// Ends when the store is dropped.
async fn client_reader(inner: Arc<Inner>, mut reads: mpsc::UnboundedReceiver<ClientRead>) {
    let mut batch = Vec::with_capacity(MAX_READS);
    while reads.recv_many(&mut batch, MAX_READS).await > 0 {
        // A caller that timed out is not waiting.
        batch.retain(|r| !r.reply.is_closed());
        let found = match batch.len() {
            0 => continue,
            1 => {
                sqlx::query("SELECT * FROM registered_clients WHERE client_id = ?")
                    .bind(&batch[0].client_id)
                    .fetch_all(&inner.pool())
                    .await
            }
            _ => {
                let ids: Vec<&str> = batch.iter().map(|r| r.client_id.as_str()).collect();
                match serde_json::to_string(&ids) {
                    Ok(ids) => {
                        sqlx::query(
                            "SELECT * FROM registered_clients WHERE client_id IN \
                             (SELECT value FROM jsonb_each(?))",
                        )
                        .bind(ids)
                        .fetch_all(&inner.pool())
                        .await
                    }
                    Err(e) => Err(sqlx::Error::Encode(Box::new(e))),
                }
            }
        };
        let clients = found.map_err(classify).and_then(|rows| {
            rows.iter()
                .map(|row| client_from_row(row).map(|c| (c.client_id.clone(), c)))
                .collect::<Result<HashMap<_, _>, _>>()
        });
        for r in batch.drain(..) {
            let answer = match &clients {
                Ok(clients) => Ok(clients.get(&r.client_id).cloned()),
                Err(e) => Err(e.clone()),
            };
            let _ = r.reply.send(answer);
        }
    }
}

/// Most writes committed together.
const MAX_BATCH: usize = 128;

/// The one writer: takes the writes that are waiting and commits them in one transaction
/// (group commit), each inside a savepoint so that one failing write is undone alone.
///
/// SQLite admits one writer at a time. With a writer per request, a burst of writes (a
/// join storm) meets in SQLite's busy handler, which sleeps and retries with growing
/// pauses; and every write pays a commit (its pages appended to the WAL, checksummed,
/// the WAL index updated). Here a burst costs one commit per batch, and nobody sleeps.
/// A write is still answered only after the commit that holds it, and only while the
/// database file is the one opened: a write into a removed or replaced file would be
/// lost, so it fails instead.
async fn writer(inner: Arc<Inner>, mut jobs: mpsc::UnboundedReceiver<WriteJob>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.recv().await {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(j) => batch.push(j),
                Err(_) => break,
            }
        }
        commit_batch(&inner, &mut batch).await;
        if inner.closed.load(Ordering::SeqCst) {
            // The store closed: its pool is closing; what still comes is refused.
            for j in std::iter::from_fn(|| jobs.try_recv().ok()) {
                let _ = j
                    .reply
                    .send(Err(StoreError::Unavailable("the store is closed".into())));
            }
        }
    }
}

async fn commit_batch(inner: &Inner, batch: &mut Vec<WriteJob>) {
    // A caller that timed out has already answered its client: do not write behind it.
    batch.retain(|j| !j.reply.is_closed());
    if batch.is_empty() {
        return;
    }
    let refuse = |batch: &mut Vec<WriteJob>, e: &StoreError| {
        for j in batch.drain(..) {
            let _ = j.reply.send(Err(e.clone()));
        }
    };
    // Probes run whatever the fault; other writes only while the store is usable.
    if let Err(e) = inner.usable() {
        let (probes, mut others): (Vec<_>, Vec<_>) = batch.drain(..).partition(|j| j.probe);
        refuse(&mut others, &e);
        *batch = probes;
        if batch.is_empty() {
            return;
        }
        if let Err(why) = inner.check_file() {
            refuse(batch, &StoreError::Unavailable(why));
            return;
        }
    }
    let mut tx = match inner.pool().begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            let e = classify(e);
            note_unavailable(inner, &e);
            refuse(batch, &e);
            return;
        }
    };
    // Checked again now that the lock is held: waiting for it may have taken a while.
    batch.retain(|j| !j.reply.is_closed());
    let alone = batch.len() == 1;
    let mut results = Vec::with_capacity(batch.len());
    let mut jobs = batch.drain(..).peekable();
    while let Some(first) = jobs.next() {
        // Consecutive lifecycle writes of one kind go in together: a few statements for
        // all of them instead of several each. Should that fail (a conflict, a room no
        // longer active), each is run alone, to fail alone with its own error.
        let kind = first.op.kind();
        let mut run = vec![first];
        if kind != OpKind::Fn {
            while let Some(j) = jobs.next_if(|j| j.op.kind() == kind) {
                run.push(j);
            }
        }
        let refs = if run.len() > 1 { Run::of(&run) } else { None };
        if let Some(refs) = refs {
            let events: Vec<&Event> = run.iter().flat_map(|j| &j.events).collect();
            if together(&mut tx, refs, &events).await.is_ok() {
                results.extend(run.into_iter().map(|j| (j.reply, Ok(0))));
                continue;
            }
        }
        for WriteJob {
            op, reply, events, ..
        } in run
        {
            let r = if alone {
                op.run(&mut tx, &events).await
            } else {
                in_savepoint(&mut tx, op, &events).await
            };
            results.push((reply, r));
        }
    }
    drop(jobs);
    let outcome = if alone && results.iter().any(|(_, r)| r.is_err()) {
        // Nothing to keep: undo the failed write's earlier statements.
        tx.rollback().await.map_err(classify)
    } else {
        // The file is checked once more just before the commit acknowledges the batch.
        match inner.check_file() {
            Ok(()) => tx.commit().await.map_err(classify),
            Err(why) => {
                inner.set_fault(why.clone());
                let _ = tx.rollback().await;
                Err(StoreError::Unavailable(why))
            }
        }
    };
    for (reply, r) in results {
        let r = match &outcome {
            Ok(()) => r,
            Err(e) => r.and(Err(e.clone())),
        };
        if let Err(e) = &r {
            note_unavailable(inner, e);
        }
        let _ = reply.send(r);
    }
}

/// A write that failed as unavailable makes the monitor probe the store.
fn note_unavailable(inner: &Inner, e: &StoreError) {
    if matches!(e, StoreError::Unavailable(_)) {
        inner.suspect.store(true, Ordering::SeqCst);
    }
}

/// Runs one write of a batch inside a savepoint: released if it succeeds, rolled back
/// (alone) if it fails.
async fn in_savepoint(
    tx: &mut SqliteConnection,
    op: Op,
    events: &[Event],
) -> Result<u64, StoreError> {
    let mut sp = tx.begin().await.map_err(classify)?;
    match op.run(&mut sp, events).await {
        Ok(n) => {
            sp.commit().await.map_err(classify)?;
            Ok(n)
        }
        Err(e) => {
            if let Err(re) = sp.rollback().await {
                tracing::warn!(error = %re, "rolling back a failed write's savepoint");
            }
            Err(e)
        }
    }
}

/// Writes a run of lifecycle writes of one kind in one savepoint, each table's rows in
/// one statement (the rows passed as one JSON array, read back with `jsonb_each`). Rolled
/// back whole if any statement fails.
/// The records of a run of lifecycle writes of one kind.
enum Run<'a> {
    Members(Vec<&'a MemberRecords>),
    Rooms(Vec<&'a NewRoom>),
    Leaves(Vec<&'a ClientInTerminatedRoomRecord>),
    Touches(Vec<&'a (String, DateTime<Utc>)>),
    Appends,
}

impl<'a> Run<'a> {
    /// References to the records only (a job itself, with its reply and perhaps a
    /// closure, is not `Sync`); `None` unless the run is of one lifecycle kind.
    fn of(run: &'a [WriteJob]) -> Option<Self> {
        let first = run.first()?;
        let mut out = match first.op {
            Op::Fn(_) => return None,
            Op::AddMember(_) => Run::Members(Vec::with_capacity(run.len())),
            Op::CreateRoom(_) => Run::Rooms(Vec::with_capacity(run.len())),
            Op::RemoveMember(_) => Run::Leaves(Vec::with_capacity(run.len())),
            Op::Touch(_) => Run::Touches(Vec::with_capacity(run.len())),
            Op::Append => Run::Appends,
        };
        for j in run {
            match (&mut out, &j.op) {
                (Run::Members(v), Op::AddMember(m)) => v.push(&**m),
                (Run::Rooms(v), Op::CreateRoom(r)) => v.push(&**r),
                (Run::Leaves(v), Op::RemoveMember(h)) => v.push(&**h),
                (Run::Touches(v), Op::Touch(t)) => v.push(&**t),
                (Run::Appends, Op::Append) => {}
                _ => return None,
            }
        }
        Some(out)
    }
}

async fn together(
    tx: &mut SqliteConnection,
    run: Run<'_>,
    events: &[&Event],
) -> Result<(), StoreError> {
    let mut sp = tx.begin().await.map_err(classify)?;
    let r = match run {
        Run::Members(members) => add_members_together(&mut sp, &members).await,
        Run::Rooms(rooms) => create_rooms_together(&mut sp, &rooms).await,
        Run::Leaves(leaves) => remove_members_together(&mut sp, &leaves).await,
        Run::Touches(touches) => touch_clients_together(&mut sp, &touches).await,
        Run::Appends => Ok(()),
    };
    let r = match r {
        Ok(()) => insert_events(&mut sp, events.iter().copied()).await,
        e => e,
    };
    match r {
        Ok(()) => sp.commit().await.map_err(classify),
        Err(e) => {
            if let Err(re) = sp.rollback().await {
                tracing::warn!(error = %re, "rolling back a run of writes");
            }
            Err(e)
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot create the database directory {}: {e}",
            dir.display()
        ))
    })
}

// ----- errors -----

/// SQLite primary result codes meaning "the database cannot serve now".
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;
const SQLITE_READONLY: i64 = 8;
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

/// Maps an error with no statement-specific meaning.
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i64>().ok())
                .map(|c| c & 0xff);
            match (db.kind(), primary) {
                (ErrorKind::UniqueViolation, _) => {
                    StoreError::Conflict(format!("unique key violated: {}", db.message()))
                }
                (
                    _,
                    Some(
                        SQLITE_BUSY | SQLITE_LOCKED | SQLITE_READONLY | SQLITE_IOERR | SQLITE_FULL
                        | SQLITE_CANTOPEN,
                    ),
                ) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Internal(e.to_string()),
            }
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Maps an error of an `INSERT`: a unique violation becomes `Conflict(conflict(sqlite
/// message))`, where the message names the violated columns (e.g. `UNIQUE constraint
/// failed: webrtc_rooms.room_id`).
fn insert_err(e: sqlx::Error, conflict: impl FnOnce(&str) -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.kind() == ErrorKind::UniqueViolation
    {
        return StoreError::Conflict(conflict(db.message()));
    }
    classify(e)
}

/// Maps an error of inserting a member row: unique key → `Conflict`, missing room →
/// `Internal`.
fn member_err(e: sqlx::Error, table: &str, client_id: &str, room_id: &str, id: Uuid) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.kind() == ErrorKind::ForeignKeyViolation
    {
        return StoreError::NoRoom(format!("room '{room_id}' is not active"));
    }
    insert_err(e, |msg| {
        if msg.contains(&format!("{table}.client_id")) {
            if table == "client_in_room" {
                format!("client '{client_id}' is already in room '{room_id}'")
            } else {
                format!("client '{client_id}' already has a WebRTC session in room '{room_id}'")
            }
        } else {
            format!("{table} row {id} already exists")
        }
    })
}

// ----- encoding -----

fn ts(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn opt_ts(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(ts)
}

fn json(v: &Value) -> String {
    v.to_string()
}

fn caps(c: &[String]) -> String {
    Value::from(c.to_vec()).to_string()
}

// ----- decoding -----

/// What a write returns that changed nothing (an unregistration of no client): the events
/// it was given are not recorded.
const NOTHING_DONE: u64 = u64::MAX;

/// Appends `events` to the outbox, numbering each room's: two statements however many
/// events (each statement is a round trip to SQLite's thread). The rooms' counters move on
/// by their number of events, and each room's events take the numbers below the new last
/// one, in order.
async fn insert_events<'e>(
    tx: &mut SqliteConnection,
    events: impl Iterator<Item = &'e Event>,
) -> Result<(), StoreError> {
    let events: Vec<&Event> = events.collect();
    if events.is_empty() {
        return Ok(());
    }
    let mut per_room: Vec<(&str, i64)> = Vec::new();
    for e in &events {
        if let Some(r) = &e.room_id {
            match per_room.iter_mut().find(|(id, _)| *id == r.as_str()) {
                Some((_, n)) => *n += 1,
                None => per_room.push((r.as_str(), 1)),
            }
        }
    }
    let mut next: HashMap<String, i64> = HashMap::new();
    if !per_room.is_empty() {
        let counts: Vec<Value> = per_room
            .iter()
            .map(|(r, n)| serde_json::json!({"room": r, "n": n}))
            .collect();
        let rows = sqlx::query(
            "INSERT INTO event_room_seq (room_id, last) \
             SELECT value ->> 'room', value ->> 'n' FROM json_each(?) WHERE true \
             ON CONFLICT (room_id) DO UPDATE SET last = last + excluded.last \
             RETURNING room_id, last",
        )
        .bind(Value::Array(counts).to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        for row in rows {
            let room: String = row.try_get("room_id").map_err(|e| corrupt("room_id", e))?;
            let last: i64 = row.try_get("last").map_err(|e| corrupt("last", e))?;
            let n = per_room
                .iter()
                .find(|(r, _)| *r == room)
                .map_or(0, |(_, n)| *n);
            next.insert(room, last - n + 1);
        }
    }
    let mut rows = Vec::with_capacity(events.len());
    for e in &events {
        let seq = match &e.room_id {
            Some(r) => {
                let n = next
                    .get_mut(r.as_str())
                    .ok_or_else(|| StoreError::Internal(format!("no seq for room '{r}'")))?;
                let seq = *n;
                *n += 1;
                Some(seq)
            }
            None => None,
        };
        let body = serde_json::to_string(&Event {
            seq: None,
            ..(*e).clone()
        })
        .map_err(|err| StoreError::Internal(format!("encoding event {}: {err}", e.id)))?;
        rows.push(serde_json::json!({
            "id": e.id.to_string(),
            "room": e.room_id.as_ref().map(|r| r.as_str()),
            "seq": seq,
            "body": body,
        }));
    }
    sqlx::query(
        "INSERT INTO event_outbox (id, room_id, seq, body) \
         SELECT value ->> 'id', value ->> 'room', value ->> 'seq', value ->> 'body' \
         FROM json_each(?)",
    )
    .bind(Value::Array(rows).to_string())
    .execute(&mut *tx)
    .await
    .map_err(|err| insert_err(err, |_| "an event is recorded already".to_owned()))?;
    Ok(())
}

/// An event read back from the outbox (`seq`, `body` columns).
fn event_from_row(row: &SqliteRow) -> Result<Event, StoreError> {
    let seq: Option<i64> = row.try_get("seq").map_err(|e| corrupt("seq", e))?;
    let body: String = row.try_get("body").map_err(|e| corrupt("body", e))?;
    let mut e: Event = serde_json::from_str(&body).map_err(|e| corrupt("body", e))?;
    e.seq = seq
        .map(|s| u64::try_from(s).map_err(|e| corrupt("seq", e)))
        .transpose()?;
    Ok(e)
}

fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("bad value in column {col}: {e}"))
}

fn get_str(row: &SqliteRow, col: &str) -> Result<String, StoreError> {
    row.try_get::<String, _>(col).map_err(|e| corrupt(col, e))
}

fn get_opt_str(row: &SqliteRow, col: &str) -> Result<Option<String>, StoreError> {
    row.try_get::<Option<String>, _>(col)
        .map_err(|e| corrupt(col, e))
}

fn get_uuid(row: &SqliteRow, col: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(&get_str(row, col)?).map_err(|e| corrupt(col, e))
}

fn parse_ts(col: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(col, e))
}

fn get_ts(row: &SqliteRow, col: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_ts(col, &get_str(row, col)?)
}

fn get_opt_ts(row: &SqliteRow, col: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    get_opt_str(row, col)?
        .map(|s| parse_ts(col, &s))
        .transpose()
}

fn get_json(row: &SqliteRow, col: &str) -> Result<Value, StoreError> {
    serde_json::from_str(&get_str(row, col)?).map_err(|e| corrupt(col, e))
}

fn get_caps(row: &SqliteRow, col: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(&get_str(row, col)?).map_err(|e| corrupt(col, e))
}

fn client_from_row(row: &SqliteRow) -> Result<RegisteredClient, StoreError> {
    Ok(RegisteredClient {
        id: get_uuid(row, "id")?,
        client_id: get_str(row, "client_id")?,
        auth_token: get_str(row, "auth_token")?,
        room_id: get_opt_str(row, "room_id")?,
        capabilities: get_caps(row, "capabilities")?,
        registered_at: get_ts(row, "registered_at")?,
        last_seen: get_opt_ts(row, "last_seen")?,
        status: get_str(row, "status")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn room_from_row(row: &SqliteRow) -> Result<RoomRecord, StoreError> {
    Ok(RoomRecord {
        id: get_uuid(row, "id")?,
        room_id: get_str(row, "room_id")?,
        app_id: get_str(row, "app_id")?,
        created_at: get_ts(row, "created_at")?,
        status: get_str(row, "status")?,
        sender_client_id: get_opt_str(row, "sender_client_id")?,
        receiver_client_id: get_opt_str(row, "receiver_client_id")?,
        session_id: get_opt_str(row, "session_id")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn created_from_row(row: &SqliteRow) -> Result<RoomCreatedRecord, StoreError> {
    Ok(RoomCreatedRecord {
        id: get_uuid(row, "id")?,
        room_uuid: get_uuid(row, "room_uuid")?,
        room_id: get_str(row, "room_id")?,
        created_at: get_ts(row, "created_at")?,
        room_data: get_json(row, "room_data")?,
        created_by: get_opt_str(row, "created_by")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn member_from_row(row: &SqliteRow) -> Result<ClientInRoomRecord, StoreError> {
    Ok(ClientInRoomRecord {
        id: get_uuid(row, "id")?,
        client_id: get_str(row, "client_id")?,
        room_id: get_str(row, "room_id")?,
        joined_at: get_ts(row, "joined_at")?,
        last_activity: get_ts(row, "last_activity")?,
        status: get_str(row, "status")?,
        capabilities: get_caps(row, "capabilities")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn webrtc_client_from_row(row: &SqliteRow) -> Result<WebrtcClientRecord, StoreError> {
    Ok(WebrtcClientRecord {
        id: get_uuid(row, "id")?,
        client_id: get_str(row, "client_id")?,
        room_id: get_str(row, "room_id")?,
        role: get_str(row, "role")?,
        session_id: get_opt_str(row, "session_id")?,
        joined_at: get_ts(row, "joined_at")?,
        status: get_str(row, "status")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn terminated_from_row(row: &SqliteRow) -> Result<TerminatedRoomRecord, StoreError> {
    Ok(TerminatedRoomRecord {
        id: get_uuid(row, "id")?,
        room_id: get_str(row, "room_id")?,
        terminated_at: get_ts(row, "terminated_at")?,
        termination_recorded_at: get_ts(row, "termination_recorded_at")?,
        room_data: get_json(row, "room_data")?,
        termination_reason: get_opt_str(row, "termination_reason")?,
        terminated_by: get_opt_str(row, "terminated_by")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn history_from_row(row: &SqliteRow) -> Result<ClientInTerminatedRoomRecord, StoreError> {
    Ok(ClientInTerminatedRoomRecord {
        id: get_uuid(row, "id")?,
        client_id: get_str(row, "client_id")?,
        room_id: get_str(row, "room_id")?,
        joined_at: get_ts(row, "joined_at")?,
        left_at: get_ts(row, "left_at")?,
        termination_reason: get_str(row, "termination_reason")?,
        terminated_by: get_str(row, "terminated_by")?,
        final_status: get_str(row, "final_status")?,
        capabilities: get_caps(row, "capabilities")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get_ts(row, "record_created_at")?,
    })
}

fn rows<T>(
    rows: Vec<SqliteRow>,
    decode: fn(&SqliteRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(decode).collect()
}

// ----- statements used inside write transactions -----

/// `create_room`'s statements: the room, its creation record, its creator.
async fn create_room_stmts(tx: &mut SqliteConnection, r: &NewRoom) -> Result<(), StoreError> {
    let (room, created) = (&r.room, &r.created);
    sqlx::query(
        "INSERT INTO webrtc_rooms (id, room_id, app_id, created_at, status, \
         sender_client_id, receiver_client_id, session_id, metadata, record_created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(room.id.to_string())
    .bind(&room.room_id)
    .bind(&room.app_id)
    .bind(ts(&room.created_at))
    .bind(&room.status)
    .bind(&room.sender_client_id)
    .bind(&room.receiver_client_id)
    .bind(&room.session_id)
    .bind(json(&room.metadata))
    .bind(ts(&room.record_created_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        insert_err(e, |msg| {
            if msg.contains("webrtc_rooms.room_id") {
                format!("room '{}' already exists", room.room_id)
            } else {
                format!("webrtc_rooms row {} already exists", room.id)
            }
        })
    })?;
    insert_created(&mut *tx, created).await?;
    insert_member(&mut *tx, &r.creator).await
}

/// Inserts a `room_created` row (at a room's creation, or copied from another store).
async fn insert_created(
    tx: &mut SqliteConnection,
    created: &RoomCreatedRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO room_created (id, room_uuid, room_id, created_at, room_data, \
         created_by, metadata, record_created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(created.id.to_string())
    .bind(created.room_uuid.to_string())
    .bind(&created.room_id)
    .bind(ts(&created.created_at))
    .bind(json(&created.room_data))
    .bind(&created.created_by)
    .bind(json(&created.metadata))
    .bind(ts(&created.record_created_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        insert_err(e, |_| {
            format!("room_created row {} already exists", created.id)
        })
    })?;
    Ok(())
}

/// The room slot (`sender_client_id` or `receiver_client_id`) a member of `role` fills
/// if it is empty.
fn slot(role: &str) -> Option<&'static str> {
    if role.eq_ignore_ascii_case("sender") {
        Some("sender_client_id")
    } else if role.eq_ignore_ascii_case("receiver") {
        Some("receiver_client_id")
    } else {
        None
    }
}

/// `add_member`'s statements: the member's rows, and the room's slot for its role if
/// that is empty.
async fn add_member_stmts(
    tx: &mut SqliteConnection,
    member: &MemberRecords,
) -> Result<(), StoreError> {
    insert_member(&mut *tx, member).await?;
    let w = &member.webrtc_client;
    let sql = match slot(&w.role) {
        Some("sender_client_id") => {
            "UPDATE webrtc_rooms SET sender_client_id = ? WHERE room_id = ? \
             AND (sender_client_id IS NULL OR sender_client_id = '')"
        }
        Some(_) => {
            "UPDATE webrtc_rooms SET receiver_client_id = ? WHERE room_id = ? \
             AND (receiver_client_id IS NULL OR receiver_client_id = '')"
        }
        None => return Ok(()),
    };
    sqlx::query(sql)
        .bind(&w.client_id)
        .bind(&w.room_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    Ok(())
}

/// Rows serialised for `jsonb_each` (an array of arrays; `value->>N` is column N).
fn json_rows(encoded: Result<String, serde_json::Error>) -> Result<String, StoreError> {
    encoded.map_err(|e| StoreError::Internal(format!("encoding rows: {e}")))
}

/// Inserts the member rows of several members, one statement per table.
async fn insert_members_together(
    tx: &mut SqliteConnection,
    members: &[&MemberRecords],
) -> Result<(), StoreError> {
    let in_room: Vec<_> = members
        .iter()
        .map(|m| {
            let c = &m.client_in_room;
            (
                c.id.to_string(),
                &c.client_id,
                &c.room_id,
                ts(&c.joined_at),
                ts(&c.last_activity),
                &c.status,
                caps(&c.capabilities),
                json(&c.metadata),
                ts(&c.record_created_at),
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO client_in_room (id, client_id, room_id, joined_at, last_activity, status, \
         capabilities, metadata, record_created_at) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
         value->>7, value->>8 FROM jsonb_each(?) ORDER BY key",
    )
    .bind(json_rows(serde_json::to_string(&in_room))?)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let webrtc: Vec<_> = members
        .iter()
        .map(|m| {
            let w = &m.webrtc_client;
            (
                w.id.to_string(),
                &w.client_id,
                &w.room_id,
                &w.role,
                &w.session_id,
                ts(&w.joined_at),
                &w.status,
                json(&w.metadata),
                ts(&w.record_created_at),
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO webrtc_clients (id, client_id, room_id, role, session_id, joined_at, \
         status, metadata, record_created_at) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
         value->>7, value->>8 FROM jsonb_each(?) ORDER BY key",
    )
    .bind(json_rows(serde_json::to_string(&webrtc))?)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// `add_member` for several members at once: their rows, then each room's empty slots
/// filled by the first member of that role, in order (what one `add_member` after another
/// would leave).
async fn add_members_together(
    tx: &mut SqliteConnection,
    members: &[&MemberRecords],
) -> Result<(), StoreError> {
    insert_members_together(&mut *tx, members).await?;
    for (column, sql) in [
        (
            "sender_client_id",
            "UPDATE webrtc_rooms SET sender_client_id = (SELECT j.value->>0 FROM jsonb_each(?1) \
             AS j WHERE j.value->>1 = webrtc_rooms.room_id ORDER BY j.key LIMIT 1) \
             WHERE room_id IN (SELECT value->>1 FROM jsonb_each(?1)) \
             AND (sender_client_id IS NULL OR sender_client_id = '')",
        ),
        (
            "receiver_client_id",
            "UPDATE webrtc_rooms SET receiver_client_id = (SELECT j.value->>0 FROM jsonb_each(?1) \
             AS j WHERE j.value->>1 = webrtc_rooms.room_id ORDER BY j.key LIMIT 1) \
             WHERE room_id IN (SELECT value->>1 FROM jsonb_each(?1)) \
             AND (receiver_client_id IS NULL OR receiver_client_id = '')",
        ),
    ] {
        let fill: Vec<(&str, &str)> = members
            .iter()
            .map(|m| &m.webrtc_client)
            .filter(|w| slot(&w.role) == Some(column))
            .map(|w| (w.client_id.as_str(), w.room_id.as_str()))
            .collect();
        if fill.is_empty() {
            continue;
        }
        sqlx::query(sql)
            .bind(json_rows(serde_json::to_string(&fill))?)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// `create_room` for several rooms at once.
async fn create_rooms_together(
    tx: &mut SqliteConnection,
    rooms: &[&NewRoom],
) -> Result<(), StoreError> {
    let active: Vec<_> = rooms
        .iter()
        .map(|r| {
            let room = &r.room;
            (
                room.id.to_string(),
                &room.room_id,
                &room.app_id,
                ts(&room.created_at),
                &room.status,
                &room.sender_client_id,
                &room.receiver_client_id,
                &room.session_id,
                json(&room.metadata),
                ts(&room.record_created_at),
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO webrtc_rooms (id, room_id, app_id, created_at, status, \
         sender_client_id, receiver_client_id, session_id, metadata, record_created_at) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
         value->>7, value->>8, value->>9 FROM jsonb_each(?) ORDER BY key",
    )
    .bind(json_rows(serde_json::to_string(&active))?)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let history: Vec<_> = rooms
        .iter()
        .map(|r| {
            let c = &r.created;
            (
                c.id.to_string(),
                c.room_uuid.to_string(),
                &c.room_id,
                ts(&c.created_at),
                json(&c.room_data),
                &c.created_by,
                json(&c.metadata),
                ts(&c.record_created_at),
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO room_created (id, room_uuid, room_id, created_at, room_data, \
         created_by, metadata, record_created_at) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
         value->>7 FROM jsonb_each(?) ORDER BY key",
    )
    .bind(json_rows(serde_json::to_string(&history))?)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    let creators: Vec<&MemberRecords> = rooms.iter().map(|r| &r.creator).collect();
    insert_members_together(&mut *tx, &creators).await
}

/// `remove_member` for several members at once: their rows go, their history rows come.
async fn remove_members_together(
    tx: &mut SqliteConnection,
    leaves: &[&ClientInTerminatedRoomRecord],
) -> Result<(), StoreError> {
    let keys: Vec<(&str, &str)> = leaves
        .iter()
        .map(|h| (h.client_id.as_str(), h.room_id.as_str()))
        .collect();
    let keys = json_rows(serde_json::to_string(&keys))?;
    for sql in [
        "DELETE FROM client_in_room WHERE (client_id, room_id) IN \
         (SELECT value->>0, value->>1 FROM jsonb_each(?))",
        "DELETE FROM webrtc_clients WHERE (client_id, room_id) IN \
         (SELECT value->>0, value->>1 FROM jsonb_each(?))",
    ] {
        sqlx::query(sql)
            .bind(&keys)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    insert_histories_together(tx, leaves).await
}

/// `touch_client` for several clients at once; a client touched twice keeps the later
/// of the two in order, as one update after the other would.
async fn touch_clients_together(
    tx: &mut SqliteConnection,
    touches: &[&(String, DateTime<Utc>)],
) -> Result<(), StoreError> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(touches.len());
    for (i, t) in touches.iter().enumerate() {
        last.insert(t.0.as_str(), i);
    }
    let rows: Vec<(&str, String)> = touches
        .iter()
        .enumerate()
        .filter(|(i, t)| last.get(t.0.as_str()) == Some(i))
        .map(|(_, t)| (t.0.as_str(), ts(&t.1)))
        .collect();
    sqlx::query(
        "UPDATE registered_clients SET last_seen = j.value->>1 FROM jsonb_each(?) AS j \
         WHERE registered_clients.client_id = j.value->>0",
    )
    .bind(json_rows(serde_json::to_string(&rows))?)
    .execute(&mut *tx)
    .await
    .map_err(classify)?;
    Ok(())
}

/// Inserts several `client_in_terminated_room` rows in one statement.
async fn insert_histories_together<H: std::borrow::Borrow<ClientInTerminatedRoomRecord>>(
    tx: &mut SqliteConnection,
    histories: &[H],
) -> Result<(), StoreError> {
    let rows: Vec<_> = histories
        .iter()
        .map(|h| {
            let h = h.borrow();
            (
                h.id.to_string(),
                &h.client_id,
                &h.room_id,
                ts(&h.joined_at),
                ts(&h.left_at),
                &h.termination_reason,
                &h.terminated_by,
                &h.final_status,
                caps(&h.capabilities),
                json(&h.metadata),
                ts(&h.record_created_at),
            )
        })
        .collect();
    sqlx::query(
        "INSERT INTO client_in_terminated_room (id, client_id, room_id, joined_at, left_at, \
         termination_reason, terminated_by, final_status, capabilities, metadata, \
         record_created_at) \
         SELECT value->>0, value->>1, value->>2, value->>3, value->>4, value->>5, value->>6, \
         value->>7, value->>8, value->>9, value->>10 FROM jsonb_each(?) ORDER BY key",
    )
    .bind(json_rows(serde_json::to_string(&rows))?)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        insert_err(e, |_| {
            "a client_in_terminated_room row already exists".into()
        })
    })?;
    Ok(())
}

async fn insert_member(
    tx: &mut SqliteConnection,
    member: &MemberRecords,
) -> Result<(), StoreError> {
    let m = &member.client_in_room;
    sqlx::query(
        "INSERT INTO client_in_room (id, client_id, room_id, joined_at, last_activity, status, \
         capabilities, metadata, record_created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(m.id.to_string())
    .bind(&m.client_id)
    .bind(&m.room_id)
    .bind(ts(&m.joined_at))
    .bind(ts(&m.last_activity))
    .bind(&m.status)
    .bind(caps(&m.capabilities))
    .bind(json(&m.metadata))
    .bind(ts(&m.record_created_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| member_err(e, "client_in_room", &m.client_id, &m.room_id, m.id))?;

    let w = &member.webrtc_client;
    sqlx::query(
        "INSERT INTO webrtc_clients (id, client_id, room_id, role, session_id, joined_at, \
         status, metadata, record_created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(w.id.to_string())
    .bind(&w.client_id)
    .bind(&w.room_id)
    .bind(&w.role)
    .bind(&w.session_id)
    .bind(ts(&w.joined_at))
    .bind(&w.status)
    .bind(json(&w.metadata))
    .bind(ts(&w.record_created_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| member_err(e, "webrtc_clients", &w.client_id, &w.room_id, w.id))?;
    Ok(())
}

async fn insert_history(
    tx: &mut SqliteConnection,
    h: &ClientInTerminatedRoomRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO client_in_terminated_room (id, client_id, room_id, joined_at, left_at, \
         termination_reason, terminated_by, final_status, capabilities, metadata, \
         record_created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(h.id.to_string())
    .bind(&h.client_id)
    .bind(&h.room_id)
    .bind(ts(&h.joined_at))
    .bind(ts(&h.left_at))
    .bind(&h.termination_reason)
    .bind(&h.terminated_by)
    .bind(&h.final_status)
    .bind(caps(&h.capabilities))
    .bind(json(&h.metadata))
    .bind(ts(&h.record_created_at))
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        insert_err(e, |_| {
            format!("client_in_terminated_room row {} already exists", h.id)
        })
    })?;
    Ok(())
}

async fn delete_member(
    tx: &mut SqliteConnection,
    client_id: &str,
    room_id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM client_in_room WHERE client_id = ? AND room_id = ?")
        .bind(client_id)
        .bind(room_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    sqlx::query("DELETE FROM webrtc_clients WHERE client_id = ? AND room_id = ?")
        .bind(client_id)
        .bind(room_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.read("health", || async {
            self.inner.usable()?;
            sqlx::query("SELECT 1")
                .execute(&self.inner.pool())
                .await
                .map_err(classify)?;
            Ok(())
        })
        .await
    }

    async fn register_client(
        &self,
        c: &RegisteredClient,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let c = c.clone();
        self.write_with(
            "register_client",
            Op::Fn(job(move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "INSERT INTO registered_clients (id, client_id, auth_token, room_id, \
                 capabilities, registered_at, last_seen, status, metadata, record_created_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(c.id.to_string())
                    .bind(&c.client_id)
                    .bind(&c.auth_token)
                    .bind(&c.room_id)
                    .bind(caps(&c.capabilities))
                    .bind(ts(&c.registered_at))
                    .bind(opt_ts(&c.last_seen))
                    .bind(&c.status)
                    .bind(json(&c.metadata))
                    .bind(ts(&c.record_created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        insert_err(e, |msg| {
                            if msg.contains("registered_clients.client_id") {
                                format!("client '{}' is already registered", c.client_id)
                            } else {
                                format!("registered_clients row {} already exists", c.id)
                            }
                        })
                    })?;
                    Ok(0)
                })
            })),
            events.to_vec(),
        )
        .await
        .map(|_| ())
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        self.read("get_client", || async {
            let (reply, answer) = oneshot::channel();
            self.client_reads
                .send(ClientRead {
                    client_id: client_id.to_owned(),
                    reply,
                })
                .map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
            answer
                .await
                .map_err(|_| StoreError::Unavailable("the store's reader stopped".into()))?
        })
        .await
    }

    async fn delete_client(&self, client_id: &str, events: &[Event]) -> Result<bool, StoreError> {
        let client_id = client_id.to_owned();
        self.write_with(
            "delete_client",
            Op::Fn(job(move |tx| {
                Box::pin(async move {
                    let done = sqlx::query("DELETE FROM registered_clients WHERE client_id = ?")
                        .bind(client_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(classify)?;
                    Ok(match done.rows_affected() {
                        0 => NOTHING_DONE,
                        n => n,
                    })
                })
            })),
            events.to_vec(),
        )
        .await
        .map(|n| n != NOTHING_DONE)
    }

    async fn touch_client(&self, client_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        let op = Op::Touch(Box::new((client_id.to_owned(), at)));
        self.write_op("touch_client", op).await.map(|_| ())
    }

    async fn count_clients(&self) -> Result<u64, StoreError> {
        self.read("count_clients", || async {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registered_clients")
                .fetch_one(&self.inner.pool())
                .await
                .map_err(classify)?;
            u64::try_from(n).map_err(|e| corrupt("COUNT(*)", e))
        })
        .await
    }

    async fn create_room(
        &self,
        room: &RoomRecord,
        created: &RoomCreatedRecord,
        creator: &MemberRecords,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let op = Op::CreateRoom(Box::new(NewRoom {
            room: room.clone(),
            created: created.clone(),
            creator: creator.clone(),
        }));
        self.write_with("create_room", op, events.to_vec())
            .await
            .map(|_| ())
    }

    async fn add_member(&self, member: &MemberRecords, events: &[Event]) -> Result<(), StoreError> {
        let op = Op::AddMember(Box::new(member.clone()));
        self.write_with("add_member", op, events.to_vec())
            .await
            .map(|_| ())
    }

    async fn remove_member(
        &self,
        history: &ClientInTerminatedRoomRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let op = Op::RemoveMember(Box::new(history.clone()));
        self.write_with("remove_member", op, events.to_vec())
            .await
            .map(|_| ())
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.write_with("append_events", Op::Append, events.to_vec())
            .await
            .map(|_| ())
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.read("pending_events", || async {
            let rows = sqlx::query(
                "SELECT seq, body FROM event_outbox WHERE delivered_at IS NULL \
                 ORDER BY position LIMIT ?",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows.iter().map(event_from_row).collect()
        })
        .await
    }

    async fn mark_delivered(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        let ids = serde_json::to_string(&ids)
            .map_err(|e| StoreError::Internal(format!("encoding event ids: {e}")))?;
        let now = ts(&Utc::now());
        self.write(
            "mark_delivered",
            job(move |tx| {
                Box::pin(async move {
                    sqlx::query(
                        "UPDATE event_outbox SET delivered_at = ? WHERE delivered_at IS NULL \
                         AND id IN (SELECT value FROM json_each(?))",
                    )
                    .bind(now)
                    .bind(ids)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                    Ok(0)
                })
            }),
        )
        .await
        .map(|_| ())
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        // `at` is in the body: its RFC 3339 text (UTC, milliseconds) sorts as time does.
        let before = before.to_rfc3339_opts(SecondsFormat::Millis, true);
        self.write(
            "prune_events",
            job(move |tx| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM event_outbox WHERE delivered_at IS NOT NULL \
                         AND body ->> 'at' < ?",
                    )
                    .bind(before)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
                    Ok(done.rows_affected())
                })
            }),
        )
        .await
    }

    async fn room_events(
        &self,
        room_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        self.read("room_events", || async {
            let rows = sqlx::query(
                "SELECT seq, body FROM event_outbox WHERE room_id = ? AND seq > ? \
                 ORDER BY seq LIMIT ?",
            )
            .bind(room_id)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows.iter().map(event_from_row).collect()
        })
        .await
    }

    async fn terminate_room(
        &self,
        record: &TerminatedRoomRecord,
        members: &[ClientInTerminatedRoomRecord],
        events: &[Event],
    ) -> Result<(), StoreError> {
        let (record, members) = (record.clone(), members.to_vec());
        self.write_with(
            "terminate_room",
            Op::Fn(job(move |tx| {
                Box::pin(async move {
                    for sql in [
                        "DELETE FROM client_in_room WHERE room_id = ?",
                        "DELETE FROM webrtc_clients WHERE room_id = ?",
                        "DELETE FROM webrtc_rooms WHERE room_id = ?",
                    ] {
                        sqlx::query(sql)
                            .bind(&record.room_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(classify)?;
                    }
                    sqlx::query(
                        "INSERT INTO terminated_rooms (id, room_id, terminated_at, \
                 termination_recorded_at, room_data, termination_reason, terminated_by, \
                 metadata, record_created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    )
                    .bind(record.id.to_string())
                    .bind(&record.room_id)
                    .bind(ts(&record.terminated_at))
                    .bind(ts(&record.termination_recorded_at))
                    .bind(json(&record.room_data))
                    .bind(&record.termination_reason)
                    .bind(&record.terminated_by)
                    .bind(json(&record.metadata))
                    .bind(ts(&record.record_created_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| {
                        insert_err(e, |_| {
                            format!("terminated_rooms row {} already exists", record.id)
                        })
                    })?;
                    // One statement for every member's history; on a conflict (a
                    // statement fails whole), one by one, to name the row.
                    if members.len() < 2
                        || insert_histories_together(&mut *tx, &members).await.is_err()
                    {
                        for member in &members {
                            insert_history(&mut *tx, member).await?;
                        }
                    }
                    Ok(0)
                })
            })),
            events.to_vec(),
        )
        .await
        .map(|_| ())
    }

    async fn active_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        self.read("active_rooms", || async {
            let found = sqlx::query("SELECT * FROM webrtc_rooms ORDER BY created_at, rowid")
                .fetch_all(&self.inner.pool())
                .await
                .map_err(classify)?;
            rows(found, room_from_row)
        })
        .await
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.read("get_room", || async {
            let row = sqlx::query("SELECT * FROM webrtc_rooms WHERE room_id = ?")
                .bind(room_id)
                .fetch_optional(&self.inner.pool())
                .await
                .map_err(classify)?;
            row.as_ref().map(room_from_row).transpose()
        })
        .await
    }

    async fn room_members(&self, room_id: &str) -> Result<Vec<ClientInRoomRecord>, StoreError> {
        self.read("room_members", || async {
            let found = sqlx::query(
                "SELECT * FROM client_in_room WHERE room_id = ? ORDER BY joined_at, rowid",
            )
            .bind(room_id)
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows(found, member_from_row)
        })
        .await
    }

    async fn room_webrtc_clients(
        &self,
        room_id: &str,
    ) -> Result<Vec<WebrtcClientRecord>, StoreError> {
        self.read("room_webrtc_clients", || async {
            let found = sqlx::query(
                "SELECT * FROM webrtc_clients WHERE room_id = ? ORDER BY joined_at, rowid",
            )
            .bind(room_id)
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows(found, webrtc_client_from_row)
        })
        .await
    }

    async fn export_clients(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RegisteredClient>, StoreError> {
        self.export_clients_page(after, limit).await
    }

    async fn history_room_ids(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.history_room_ids_page(after, limit).await
    }

    async fn import_room_created(&self, created: &RoomCreatedRecord) -> Result<(), StoreError> {
        self.import_created(created).await
    }

    async fn room_created(&self, room_id: &str) -> Result<Vec<RoomCreatedRecord>, StoreError> {
        self.read("room_created", || async {
            let found = sqlx::query(
                "SELECT * FROM room_created WHERE room_id = ? ORDER BY created_at, rowid",
            )
            .bind(room_id)
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows(found, created_from_row)
        })
        .await
    }

    async fn terminated_rooms(
        &self,
        room_id: &str,
    ) -> Result<Vec<TerminatedRoomRecord>, StoreError> {
        self.read("terminated_rooms", || async {
            let found = sqlx::query(
                "SELECT * FROM terminated_rooms WHERE room_id = ? ORDER BY terminated_at, rowid",
            )
            .bind(room_id)
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows(found, terminated_from_row)
        })
        .await
    }

    async fn member_history(
        &self,
        room_id: &str,
    ) -> Result<Vec<ClientInTerminatedRoomRecord>, StoreError> {
        self.read("member_history", || async {
            let found = sqlx::query(
                "SELECT * FROM client_in_terminated_room WHERE room_id = ? \
                 ORDER BY left_at, rowid",
            )
            .bind(room_id)
            .fetch_all(&self.inner.pool())
            .await
            .map_err(classify)?;
            rows(found, history_from_row)
        })
        .await
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        // Waits for checked-out connections to come back; closing the last one checkpoints
        // the WAL into the database file.
        self.inner.pool().close().await;
    }
}
