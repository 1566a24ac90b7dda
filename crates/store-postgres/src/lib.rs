//! The PostgreSQL implementation of the signal-manager [`Store`] port.
//!
//! [`PostgresStore::open`] connects a pool to `postgres://…` and runs the embedded
//! migrations (`migrations/0001_init.sql`: the seed's seven tables). Several nodes may
//! start at once against one database: the migrator holds an advisory lock while it
//! runs, and every node sees the same schema.
//!
//! # Transactions
//!
//! Every lifecycle write (a room created with its creator, a member added with its role
//! slot, a member moved to history, a room terminated with its members) is one
//! transaction: it commits whole or not at all, and a method returns `Ok` only after
//! `COMMIT`. Uniqueness (a client id, an active room id, a member per room) is enforced by
//! the database's unique keys, so two nodes racing for one id get one success and one
//! [`StoreError::Conflict`].
//!
//! # Storage format
//!
//! UUIDs are `UUID`, timestamps `TIMESTAMPTZ` (PostgreSQL keeps microseconds: finer
//! digits are dropped), JSON values and capability lists `JSONB`.
//!
//! # Errors
//!
//! Connection, pool, timeout, disk-full, shutdown, read-only and serialisation failures are
//! [`StoreError::Unavailable`]; unique-key violations are [`StoreError::Conflict`] with a
//! message naming the key; the rest is [`StoreError::Internal`]. Messages carry ids and
//! PostgreSQL's own text, never a token or the database URL. Every operation is bounded by
//! [`PostgresOptions::operation_timeout`].
//!
//! # TLS
//!
//! `sslmode=require` (or `verify-ca`, `verify-full`, with `sslrootcert=…`) in the URL
//! encrypts the connection; without it the connection is plain, as PostgreSQL's
//! `prefer` default falls back to.

use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use signal_core::events::Event;
use signal_core::store::{
    ClientInRoomRecord, ClientInTerminatedRoomRecord, MemberRecords, RegisteredClient,
    RoomCreatedRecord, RoomRecord, Store, StoreError, TerminatedRoomRecord, WebrtcClientRecord,
};
use sqlx::error::ErrorKind;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{ConnectOptions, Row};
use uuid::Uuid;

/// The embedded migrations (`crates/store-postgres/migrations`).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Tuning of a [`PostgresStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// Connections in the pool (at least 1).
    pub max_connections: u32,
    /// Upper bound of every attempt of a store operation, including waiting for a pooled
    /// connection; past it the attempt fails with [`StoreError::Unavailable`].
    pub operation_timeout: Duration,
    /// Further attempts after one that found the database unavailable. A read is tried
    /// again whatever failed; a write only when it failed before its transaction began,
    /// so a write that may have committed is never applied twice.
    pub retry_attempts: u32,
    /// The pause before each further attempt.
    pub retry_interval: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            operation_timeout: Duration::from_secs(5),
            retry_attempts: 3,
            retry_interval: Duration::from_millis(100),
        }
    }
}

/// A [`Store`] on a PostgreSQL database.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    timeout: Duration,
    retries: u32,
    retry_interval: Duration,
    closed: AtomicBool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`, or
    /// `postgresql://…`) and brings the schema up to date. The first connection is made
    /// here, so a wrong URL, password or unreachable server fails now, with
    /// [`StoreError::Unavailable`].
    pub async fn open(url: &str, opts: PostgresOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?
            .log_statements(tracing::log::LevelFilter::Trace);
        let timeout = opts.operation_timeout.max(Duration::from_millis(100));
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections.max(1))
            .acquire_timeout(timeout)
            .connect_with(connect)
            .await
            .map_err(classify)?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            e => StoreError::Internal(format!("migration failed: {e}")),
        })?;
        Ok(Self {
            pool,
            timeout,
            retries: opts.retry_attempts,
            retry_interval: opts.retry_interval,
            closed: AtomicBool::new(false),
        })
    }

    /// Runs the embedded migrations against `url` and returns (the `migrate` command).
    pub async fn migrate(url: &str, opts: PostgresOptions) -> Result<(), StoreError> {
        let store = Self::open(url, opts).await?;
        store.close().await;
        Ok(())
    }

    /// The connection pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs one attempt within the timeout, after checking the store is open.
    async fn attempt<T>(
        &self,
        op: &'static str,
        f: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("store closed".into()));
        }
        match tokio::time::timeout(self.timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "{op} timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// Whether to try again after `e`, the `n`th failure; waits the interval if so.
    async fn again(&self, op: &'static str, e: &StoreError, n: u32) -> bool {
        if !matches!(e, StoreError::Unavailable(_))
            || n > self.retries
            || self.closed.load(Ordering::SeqCst)
        {
            return false;
        }
        tracing::debug!(error = %e, attempt = n, "{op}: database unavailable, retrying");
        tokio::time::sleep(self.retry_interval).await;
        true
    }

    /// A read: tried again while the database is unavailable.
    async fn read<T, Fut>(&self, op: &'static str, f: impl Fn() -> Fut) -> Result<T, StoreError>
    where
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut n = 0;
        loop {
            match self.attempt(op, f()).await {
                Err(e) => {
                    n += 1;
                    if !self.again(op, &e, n).await {
                        return Err(e);
                    }
                }
                ok => return ok,
            }
        }
    }

    /// A write in one transaction: `f` runs its statements and hands the transaction
    /// back, and the commit is made here. While the database is unavailable the whole
    /// write is tried again if it failed before its commit was sent (nothing of it can
    /// have been applied); a commit whose outcome is unknown is never repeated.
    async fn write<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: Fn(sqlx::Transaction<'static, sqlx::Postgres>) -> Fut,
        Fut: Future<Output = Result<(sqlx::Transaction<'static, sqlx::Postgres>, T), StoreError>>,
    {
        let mut n = 0;
        loop {
            let body = async {
                let tx = self.pool.begin().await.map_err(classify)?;
                f(tx).await
            };
            match self.attempt(op, body).await {
                Ok((tx, value)) => {
                    return self
                        .attempt(op, async { tx.commit().await.map_err(classify) })
                        .await
                        .map(|()| value);
                }
                Err(e) => {
                    n += 1;
                    if !self.again(op, &e, n).await {
                        return Err(e);
                    }
                }
            }
        }
    }
}

// ----- errors -----

/// SQLSTATE classes and codes that mean "not now" rather than "wrong".
fn transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (disk full, out of memory)
        || code.starts_with("57") // operator intervention (shutdown, cannot connect now)
        || code.starts_with("58") // system error (I/O)
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock detected
        || code == "25006" // read-only SQL transaction (a standby)
}

/// Maps an error with no statement-specific meaning.
fn classify(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            if db.kind() == ErrorKind::UniqueViolation {
                StoreError::Conflict(format!("unique key violated: {}", db.message()))
            } else if db.code().is_some_and(|c| transient(&c)) {
                StoreError::Unavailable(e.to_string())
            } else {
                StoreError::Internal(e.to_string())
            }
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Inserts a `room_created` row.
async fn insert_created(
    tx: &mut PgConnection,
    created: &RoomCreatedRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO room_created (id, room_uuid, room_id, created_at, room_data, \
         created_by, metadata, record_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(created.id)
    .bind(created.room_uuid)
    .bind(&created.room_id)
    .bind(created.created_at)
    .bind(Json(&created.room_data))
    .bind(&created.created_by)
    .bind(Json(&created.metadata))
    .bind(created.record_created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        insert_err(e, |_| {
            format!("room_created row {} already exists", created.id)
        })
    })?;
    Ok(())
}

/// Maps an error of an `INSERT`: a unique violation becomes `Conflict(conflict(name of
/// the violated constraint))`.
fn insert_err(e: sqlx::Error, conflict: impl FnOnce(&str) -> String) -> StoreError {
    if let sqlx::Error::Database(db) = &e
        && db.kind() == ErrorKind::UniqueViolation
    {
        return StoreError::Conflict(conflict(db.constraint().unwrap_or_default()));
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
    insert_err(e, |constraint| {
        if constraint == format!("{table}_client_id_room_id") {
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

// ----- decoding -----

fn corrupt(col: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("bad value in column {col}: {e}"))
}

fn get<'r, T>(row: &'r PgRow, col: &str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get::<T, _>(col).map_err(|e| corrupt(col, e))
}

fn get_json(row: &PgRow, col: &str) -> Result<Value, StoreError> {
    get::<Json<Value>>(row, col).map(|j| j.0)
}

fn get_caps(row: &PgRow, col: &str) -> Result<Vec<String>, StoreError> {
    get::<Json<Vec<String>>>(row, col).map(|j| j.0)
}

fn client_from_row(row: &PgRow) -> Result<RegisteredClient, StoreError> {
    Ok(RegisteredClient {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        auth_token: get(row, "auth_token")?,
        room_id: get(row, "room_id")?,
        capabilities: get_caps(row, "capabilities")?,
        registered_at: get(row, "registered_at")?,
        last_seen: get(row, "last_seen")?,
        status: get(row, "status")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn room_from_row(row: &PgRow) -> Result<RoomRecord, StoreError> {
    Ok(RoomRecord {
        id: get(row, "id")?,
        room_id: get(row, "room_id")?,
        app_id: get(row, "app_id")?,
        created_at: get(row, "created_at")?,
        status: get(row, "status")?,
        sender_client_id: get(row, "sender_client_id")?,
        receiver_client_id: get(row, "receiver_client_id")?,
        session_id: get(row, "session_id")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn created_from_row(row: &PgRow) -> Result<RoomCreatedRecord, StoreError> {
    Ok(RoomCreatedRecord {
        id: get(row, "id")?,
        room_uuid: get(row, "room_uuid")?,
        room_id: get(row, "room_id")?,
        created_at: get(row, "created_at")?,
        room_data: get_json(row, "room_data")?,
        created_by: get(row, "created_by")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn member_from_row(row: &PgRow) -> Result<ClientInRoomRecord, StoreError> {
    Ok(ClientInRoomRecord {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        room_id: get(row, "room_id")?,
        joined_at: get(row, "joined_at")?,
        last_activity: get(row, "last_activity")?,
        status: get(row, "status")?,
        capabilities: get_caps(row, "capabilities")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn webrtc_client_from_row(row: &PgRow) -> Result<WebrtcClientRecord, StoreError> {
    Ok(WebrtcClientRecord {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        room_id: get(row, "room_id")?,
        role: get(row, "role")?,
        session_id: get(row, "session_id")?,
        joined_at: get(row, "joined_at")?,
        status: get(row, "status")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn terminated_from_row(row: &PgRow) -> Result<TerminatedRoomRecord, StoreError> {
    Ok(TerminatedRoomRecord {
        id: get(row, "id")?,
        room_id: get(row, "room_id")?,
        terminated_at: get(row, "terminated_at")?,
        termination_recorded_at: get(row, "termination_recorded_at")?,
        room_data: get_json(row, "room_data")?,
        termination_reason: get(row, "termination_reason")?,
        terminated_by: get(row, "terminated_by")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn history_from_row(row: &PgRow) -> Result<ClientInTerminatedRoomRecord, StoreError> {
    Ok(ClientInTerminatedRoomRecord {
        id: get(row, "id")?,
        client_id: get(row, "client_id")?,
        room_id: get(row, "room_id")?,
        joined_at: get(row, "joined_at")?,
        left_at: get(row, "left_at")?,
        termination_reason: get(row, "termination_reason")?,
        terminated_by: get(row, "terminated_by")?,
        final_status: get(row, "final_status")?,
        capabilities: get_caps(row, "capabilities")?,
        metadata: get_json(row, "metadata")?,
        record_created_at: get(row, "record_created_at")?,
    })
}

fn rows<T>(
    rows: Vec<PgRow>,
    decode: fn(&PgRow) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    rows.iter().map(decode).collect()
}

// ----- statements used inside write transactions -----

async fn insert_member(tx: &mut PgConnection, member: &MemberRecords) -> Result<(), StoreError> {
    let m = &member.client_in_room;
    sqlx::query(
        "INSERT INTO client_in_room (id, client_id, room_id, joined_at, last_activity, status, \
         capabilities, metadata, record_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(m.id)
    .bind(&m.client_id)
    .bind(&m.room_id)
    .bind(m.joined_at)
    .bind(m.last_activity)
    .bind(&m.status)
    .bind(Json(&m.capabilities))
    .bind(Json(&m.metadata))
    .bind(m.record_created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| member_err(e, "client_in_room", &m.client_id, &m.room_id, m.id))?;

    let w = &member.webrtc_client;
    sqlx::query(
        "INSERT INTO webrtc_clients (id, client_id, room_id, role, session_id, joined_at, \
         status, metadata, record_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(w.id)
    .bind(&w.client_id)
    .bind(&w.room_id)
    .bind(&w.role)
    .bind(&w.session_id)
    .bind(w.joined_at)
    .bind(&w.status)
    .bind(Json(&w.metadata))
    .bind(w.record_created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| member_err(e, "webrtc_clients", &w.client_id, &w.room_id, w.id))?;
    Ok(())
}

async fn insert_history(
    tx: &mut PgConnection,
    h: &ClientInTerminatedRoomRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO client_in_terminated_room (id, client_id, room_id, joined_at, left_at, \
         termination_reason, terminated_by, final_status, capabilities, metadata, \
         record_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(h.id)
    .bind(&h.client_id)
    .bind(&h.room_id)
    .bind(h.joined_at)
    .bind(h.left_at)
    .bind(&h.termination_reason)
    .bind(&h.terminated_by)
    .bind(&h.final_status)
    .bind(Json(&h.capabilities))
    .bind(Json(&h.metadata))
    .bind(h.record_created_at)
    .execute(&mut *tx)
    .await
    .map_err(|e| {
        insert_err(e, |_| {
            format!("client_in_terminated_room row {} already exists", h.id)
        })
    })?;
    Ok(())
}

/// Appends `events` to the outbox, numbering each room's (the room's counter row stays
/// locked until the transaction ends: a room's events commit in `seq` order).
async fn insert_events(tx: &mut PgConnection, events: &[Event]) -> Result<(), StoreError> {
    for e in events {
        let seq: Option<i64> = match &e.room_id {
            Some(room) => Some(
                sqlx::query_scalar(
                    "INSERT INTO event_room_seq (room_id, last) VALUES ($1, 1) \
                     ON CONFLICT (room_id) DO UPDATE SET last = event_room_seq.last + 1 \
                     RETURNING last",
                )
                .bind(room.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(classify)?,
            ),
            None => None,
        };
        let body = Event {
            seq: None,
            ..e.clone()
        };
        sqlx::query("INSERT INTO event_outbox (id, room_id, seq, body) VALUES ($1, $2, $3, $4)")
            .bind(e.id)
            .bind(e.room_id.as_ref().map(|r| r.as_str()))
            .bind(seq)
            .bind(Json(&body))
            .execute(&mut *tx)
            .await
            .map_err(|err| insert_err(err, |_| format!("event {} is recorded already", e.id)))?;
    }
    Ok(())
}

/// An event read back from the outbox (`seq`, `body` columns).
fn event_from_row(row: &PgRow) -> Result<Event, StoreError> {
    let seq: Option<i64> = row.try_get("seq").map_err(|e| corrupt("seq", e))?;
    let Json(mut e): Json<Event> = row.try_get("body").map_err(|e| corrupt("body", e))?;
    e.seq = seq
        .map(|s| u64::try_from(s).map_err(|e| corrupt("seq", e)))
        .transpose()?;
    Ok(e)
}

async fn delete_member(
    tx: &mut PgConnection,
    client_id: &str,
    room_id: &str,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM client_in_room WHERE client_id = $1 AND room_id = $2",
        "DELETE FROM webrtc_clients WHERE client_id = $1 AND room_id = $2",
    ] {
        sqlx::query(sql)
            .bind(client_id)
            .bind(room_id)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.attempt("health", async {
            sqlx::query("SELECT 1")
                .execute(&self.pool)
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
        self.write("register_client", |mut tx| async move {
            sqlx::query(
                "INSERT INTO registered_clients (id, client_id, auth_token, room_id, \
                 capabilities, registered_at, last_seen, status, metadata, record_created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(c.id)
            .bind(&c.client_id)
            .bind(&c.auth_token)
            .bind(&c.room_id)
            .bind(Json(&c.capabilities))
            .bind(c.registered_at)
            .bind(c.last_seen)
            .bind(&c.status)
            .bind(Json(&c.metadata))
            .bind(c.record_created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                insert_err(e, |constraint| {
                    if constraint == "registered_clients_client_id_key" {
                        format!("client '{}' is already registered", c.client_id)
                    } else {
                        format!("registered_clients row {} already exists", c.id)
                    }
                })
            })?;
            insert_events(&mut tx, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        self.read("get_client", move || async move {
            let row = sqlx::query("SELECT * FROM registered_clients WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            row.as_ref().map(client_from_row).transpose()
        })
        .await
    }

    async fn delete_client(&self, client_id: &str, events: &[Event]) -> Result<bool, StoreError> {
        self.write("delete_client", |mut tx| async move {
            let done = sqlx::query("DELETE FROM registered_clients WHERE client_id = $1")
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            let deleted = done.rows_affected() > 0;
            if deleted {
                insert_events(&mut tx, events).await?;
            }
            Ok((tx, deleted))
        })
        .await
    }

    async fn touch_client(&self, client_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write("touch_client", |mut tx| async move {
            sqlx::query("UPDATE registered_clients SET last_seen = $1 WHERE client_id = $2")
                .bind(at)
                .bind(client_id)
                .execute(&mut *tx)
                .await
                .map_err(classify)?;
            Ok((tx, ()))
        })
        .await
    }

    async fn count_clients(&self) -> Result<u64, StoreError> {
        self.read("count_clients", move || async move {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM registered_clients")
                .fetch_one(&self.pool)
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
        self.write("create_room", |mut tx| async move {
            sqlx::query(
                "INSERT INTO webrtc_rooms (id, room_id, app_id, created_at, status, \
                 sender_client_id, receiver_client_id, session_id, metadata, record_created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(room.id)
            .bind(&room.room_id)
            .bind(&room.app_id)
            .bind(room.created_at)
            .bind(&room.status)
            .bind(&room.sender_client_id)
            .bind(&room.receiver_client_id)
            .bind(&room.session_id)
            .bind(Json(&room.metadata))
            .bind(room.record_created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                insert_err(e, |constraint| {
                    if constraint == "webrtc_rooms_room_id_key" {
                        format!("room '{}' already exists", room.room_id)
                    } else {
                        format!("webrtc_rooms row {} already exists", room.id)
                    }
                })
            })?;
            insert_created(&mut tx, created).await?;
            insert_member(&mut tx, creator).await?;
            insert_events(&mut tx, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn add_member(&self, member: &MemberRecords, events: &[Event]) -> Result<(), StoreError> {
        self.write("add_member", |mut tx| async move {
            insert_member(&mut tx, member).await?;
            let w = &member.webrtc_client;
            let fill_slot = match w.role.to_ascii_lowercase().as_str() {
                "sender" => Some(
                    "UPDATE webrtc_rooms SET sender_client_id = $1 WHERE room_id = $2 \
                     AND (sender_client_id IS NULL OR sender_client_id = '')",
                ),
                "receiver" => Some(
                    "UPDATE webrtc_rooms SET receiver_client_id = $1 WHERE room_id = $2 \
                     AND (receiver_client_id IS NULL OR receiver_client_id = '')",
                ),
                _ => None,
            };
            if let Some(sql) = fill_slot {
                sqlx::query(sql)
                    .bind(&w.client_id)
                    .bind(&w.room_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(classify)?;
            }
            insert_events(&mut tx, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn remove_member(
        &self,
        history: &ClientInTerminatedRoomRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        self.write("remove_member", |mut tx| async move {
            delete_member(&mut tx, &history.client_id, &history.room_id).await?;
            insert_history(&mut tx, history).await?;
            insert_events(&mut tx, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.write("append_events", |mut tx| async move {
            insert_events(&mut tx, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        self.read("pending_events", move || async move {
            let rows = sqlx::query(
                "SELECT seq, body FROM event_outbox WHERE delivered_at IS NULL \
                 ORDER BY position LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            rows.iter().map(event_from_row).collect()
        })
        .await
    }

    async fn mark_delivered(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        self.write("mark_delivered", |mut tx| async move {
            sqlx::query(
                "UPDATE event_outbox SET delivered_at = now() \
                 WHERE delivered_at IS NULL AND id = ANY($1)",
            )
            .bind(ids)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            Ok((tx, ()))
        })
        .await
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.write("prune_events", |mut tx| async move {
            let done = sqlx::query(
                "DELETE FROM event_outbox WHERE delivered_at IS NOT NULL \
                 AND (body ->> 'at')::timestamptz < $1",
            )
            .bind(before)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            Ok((tx, done.rows_affected()))
        })
        .await
    }

    async fn room_events(
        &self,
        room_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let since = i64::try_from(since).unwrap_or(i64::MAX);
        self.read("room_events", move || async move {
            let rows = sqlx::query(
                "SELECT seq, body FROM event_outbox WHERE room_id = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
            )
            .bind(room_id)
            .bind(since)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
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
        self.write("terminate_room", |mut tx| async move {
            for sql in [
                "DELETE FROM client_in_room WHERE room_id = $1",
                "DELETE FROM webrtc_clients WHERE room_id = $1",
                "DELETE FROM webrtc_rooms WHERE room_id = $1",
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
                 metadata, record_created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(record.id)
            .bind(&record.room_id)
            .bind(record.terminated_at)
            .bind(record.termination_recorded_at)
            .bind(Json(&record.room_data))
            .bind(&record.termination_reason)
            .bind(&record.terminated_by)
            .bind(Json(&record.metadata))
            .bind(record.record_created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                insert_err(e, |_| {
                    format!("terminated_rooms row {} already exists", record.id)
                })
            })?;
            for member in members {
                insert_history(&mut tx, member).await?;
            }
            insert_events(&mut tx, events).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn active_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        self.read("active_rooms", move || async move {
            let found = sqlx::query("SELECT * FROM webrtc_rooms ORDER BY created_at, seq")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
            rows(found, room_from_row)
        })
        .await
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        self.read("get_room", move || async move {
            let row = sqlx::query("SELECT * FROM webrtc_rooms WHERE room_id = $1")
                .bind(room_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
            row.as_ref().map(room_from_row).transpose()
        })
        .await
    }

    async fn room_members(&self, room_id: &str) -> Result<Vec<ClientInRoomRecord>, StoreError> {
        self.read("room_members", move || async move {
            let found = sqlx::query(
                "SELECT * FROM client_in_room WHERE room_id = $1 ORDER BY joined_at, seq",
            )
            .bind(room_id)
            .fetch_all(&self.pool)
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
        self.read("room_webrtc_clients", move || async move {
            let found = sqlx::query(
                "SELECT * FROM webrtc_clients WHERE room_id = $1 ORDER BY joined_at, seq",
            )
            .bind(room_id)
            .fetch_all(&self.pool)
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
        self.read("export_clients", move || async move {
            let found = sqlx::query(
                "SELECT * FROM registered_clients WHERE $1::TEXT IS NULL OR client_id > $1 \
                 ORDER BY client_id LIMIT $2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            rows(found, client_from_row)
        })
        .await
    }

    async fn history_room_ids(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        self.read("history_room_ids", move || async move {
            sqlx::query_scalar(
                "SELECT DISTINCT room_id FROM room_created \
                 WHERE $1::TEXT IS NULL OR room_id > $1 ORDER BY room_id LIMIT $2",
            )
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
        })
        .await
    }

    async fn import_room_created(&self, created: &RoomCreatedRecord) -> Result<(), StoreError> {
        self.write("import_room_created", |mut tx| async move {
            insert_created(&mut tx, created).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn room_created(&self, room_id: &str) -> Result<Vec<RoomCreatedRecord>, StoreError> {
        self.read("room_created", move || async move {
            let found = sqlx::query(
                "SELECT * FROM room_created WHERE room_id = $1 ORDER BY created_at, seq",
            )
            .bind(room_id)
            .fetch_all(&self.pool)
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
        self.read("terminated_rooms", move || async move {
            let found = sqlx::query(
                "SELECT * FROM terminated_rooms WHERE room_id = $1 ORDER BY terminated_at, seq",
            )
            .bind(room_id)
            .fetch_all(&self.pool)
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
        self.read("member_history", move || async move {
            let found = sqlx::query(
                "SELECT * FROM client_in_terminated_room WHERE room_id = $1 \
                 ORDER BY left_at, seq",
            )
            .bind(room_id)
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
            rows(found, history_from_row)
        })
        .await
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.pool.close().await;
    }
}
