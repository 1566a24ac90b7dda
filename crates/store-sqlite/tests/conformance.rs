//! The store contract (`signal_core::store::contract`) against a `SqliteStore` on a
//! temporary file and a `SqliteStore` in memory, then SQLite-only checks (durability,
//! URLs, pragmas, timeouts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use signal_core::store::{
    Store, StoreError,
    contract::{client, created, history, member, room},
};
use signal_store_sqlite::{SqliteOptions, SqliteStore};
use uuid::Uuid;

/// A store under test; keeps its temporary directory alive.
struct Backend {
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite_file() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = SqliteStore::open(&url, SqliteOptions::default())
        .await
        .unwrap();
    Backend {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

async fn sqlite_memory() -> Backend {
    let store = SqliteStore::open("sqlite::memory:", SqliteOptions::default())
        .await
        .unwrap();
    Backend {
        store: Arc::new(store),
        _dir: None,
    }
}

// The shared contract (`signal_core::store::contract`), against SQLite on a file and
// SQLite in memory (signal-core runs it against the in-memory store).
signal_core::store_contract!(sqlite_file_store, {
    let b = sqlite_file().await;
    (b.store, b._dir)
});
signal_core::store_contract!(sqlite_memory_store, {
    let b = sqlite_memory().await;
    (b.store, b._dir)
});

// ----- SQLite only -----

async fn open_file(path: &Path) -> SqliteStore {
    SqliteStore::open(
        &format!("sqlite://{}", path.display()),
        SqliteOptions::default(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let a = client("abc");
    let r = room("r1", 0, Some("abc"));
    let c = created(&r, "abc");
    let m = member("abc", "r1", "sender", 0);
    {
        let s = open_file(&path).await;
        s.register_client(&a, &[]).await.unwrap();
        s.create_room(&r, &c, &m, &[]).await.unwrap();
        s.close().await;
    }
    let s = open_file(&path).await;
    assert_eq!(s.get_client("abc").await.unwrap(), Some(a));
    assert_eq!(s.active_rooms().await.unwrap(), vec![r]);
    assert_eq!(s.room_created("r1").await.unwrap(), vec![c]);
    assert_eq!(s.room_members("r1").await.unwrap(), vec![m.client_in_room]);
    // Reopening reruns no migration and keeps unique keys.
    assert!(matches!(
        s.register_client(&client("abc"), &[]).await,
        Err(StoreError::Conflict(_))
    ));
    s.close().await;
}

#[tokio::test]
async fn sqlite_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("store.db");
    let s = open_file(&path).await;
    s.register_client(&client("abc"), &[]).await.unwrap();
    s.close().await;
    assert!(path.is_file());
}

/// `to` relative to the current directory (`..` as needed).
fn relative_to_cwd(to: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
    let to = to.canonicalize().unwrap();
    let (a, b): (Vec<Component>, Vec<Component>) =
        (cwd.components().collect(), to.components().collect());
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut rel = PathBuf::new();
    for _ in common..a.len() {
        rel.push("..");
    }
    for c in &b[common..] {
        rel.push(c);
    }
    rel
}

#[tokio::test]
async fn sqlite_accepts_url_forms() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().join("plain.db");
    let rel = relative_to_cwd(dir.path()).join("sub").join("relative.db");
    assert!(rel.is_relative());
    for url in [
        format!("sqlite:{}", abs.display()),
        format!("sqlite://{}", rel.display()),
        format!("sqlite:{}", rel.with_file_name("relative2.db").display()),
        "sqlite::memory:".to_owned(),
    ] {
        let s = SqliteStore::open(&url, SqliteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        s.register_client(&client("abc"), &[]).await.unwrap();
        s.close().await;
    }
    assert!(abs.is_file());
    assert!(dir.path().join("sub").join("relative.db").is_file());
    assert!(dir.path().join("sub").join("relative2.db").is_file());
}

#[tokio::test]
async fn sqlite_rejects_other_urls_without_echoing_them() {
    for url in ["postgres://user:hunter2@db/x", "hunter2.db", "sqlite://"] {
        match SqliteStore::open(url, SqliteOptions::default()).await {
            Err(StoreError::Internal(msg)) => assert!(!msg.contains("hunter2"), "{msg}"),
            other => panic!("{url}: expected Internal, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn sqlite_memory_databases_are_private() {
    let a = SqliteStore::open("sqlite::memory:", SqliteOptions::default())
        .await
        .unwrap();
    let b = SqliteStore::open("sqlite::memory:", SqliteOptions::default())
        .await
        .unwrap();
    a.register_client(&client("abc"), &[]).await.unwrap();
    assert_eq!(b.count_clients().await.unwrap(), 0);
}

#[tokio::test]
async fn sqlite_pragmas_and_storage_format() {
    let dir = tempfile::tempdir().unwrap();
    let s = open_file(&dir.path().join("store.db")).await;
    let pool = &s.pool();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(sync, 1, "synchronous=NORMAL");
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(busy, 5000);

    let mut c = client("abc");
    c.registered_at = chrono::DateTime::from_timestamp(1_717_243_200, 123_456_789).unwrap();
    s.register_client(&c, &[]).await.unwrap();
    let (id, registered, caps, meta): (String, String, String, String) =
        sqlx::query_as("SELECT id, registered_at, capabilities, metadata FROM registered_clients")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(id, c.id.to_string());
    assert_eq!(registered, "2024-06-01T12:00:00.123456789Z");
    assert_eq!(caps, r#"["websocket","heartbeat","webrtc"]"#);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&meta).unwrap(),
        c.metadata
    );
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' \
         AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "client_in_room",
            "client_in_terminated_room",
            "event_outbox",
            "event_room_seq",
            "registered_clients",
            "room_created",
            "terminated_rooms",
            "webrtc_clients",
            "webrtc_rooms",
        ]
    );
    s.close().await;
}

#[tokio::test]
async fn sqlite_operation_timeout_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let s = SqliteStore::open(
        &url,
        SqliteOptions {
            max_connections: 4,
            operation_timeout: Duration::from_millis(300),
            ..SqliteOptions::default()
        },
    )
    .await
    .unwrap();
    // Another writer holds the write lock longer than the operation timeout.
    let mut blocker = s.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    match s.register_client(&client("abc"), &[]).await {
        Err(StoreError::Unavailable(msg)) => {
            assert_eq!(msg, "register_client timed out after 300ms");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    // Reads are not blocked by a writer (WAL).
    assert_eq!(s.count_clients().await.unwrap(), 0);
    sqlx::query("SELECT 1")
        .execute(&mut *blocker)
        .await
        .unwrap();
    blocker.rollback().await.unwrap();
    s.register_client(&client("abc"), &[]).await.unwrap();
    s.close().await;
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_a_failing_one_is_undone_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_file(&dir.path().join("store.db")).await);
    s.register_client(&client("taken"), &[]).await.unwrap();
    // 60 writes at once (the writer commits them in batches), one of them a duplicate.
    let mut tasks = Vec::new();
    for i in 0..60 {
        let s = s.clone();
        let id = if i == 30 {
            "taken".to_owned()
        } else {
            format!("c{i}")
        };
        tasks.push(tokio::spawn(async move {
            (id.clone(), s.register_client(&client(&id), &[]).await)
        }));
    }
    for t in tasks {
        let (id, r) = t.await.unwrap();
        if id == "taken" {
            match r {
                Err(StoreError::Conflict(msg)) => {
                    assert_eq!(msg, "client 'taken' is already registered")
                }
                other => panic!("expected Conflict, got {other:?}"),
            }
        } else {
            r.unwrap();
        }
    }
    assert_eq!(s.count_clients().await.unwrap(), 60, "59 new and the first");
    for i in [0, 29, 31, 59] {
        assert!(s.get_client(&format!("c{i}")).await.unwrap().is_some());
    }
    s.close().await;
}

#[tokio::test]
async fn a_join_whose_second_row_fails_leaves_no_first_row_even_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_file(&dir.path().join("store.db")).await);
    let r = room("r1", 0, Some("owner"));
    s.create_room(
        &r,
        &created(&r, "owner"),
        &member("owner", "r1", "sender", 0),
        &[],
    )
    .await
    .unwrap();
    let first = member("first", "r1", "receiver", 1);
    s.add_member(&first, &[]).await.unwrap();
    // Its client_in_room row is new; its webrtc_clients row reuses an id, so the second
    // insert fails after the first succeeded.
    let mut broken = member("broken", "r1", "receiver", 2);
    broken.webrtc_client.id = first.webrtc_client.id;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        let m = if i == 20 {
            broken.clone()
        } else {
            member(&format!("m{i}"), "r1", "receiver", 3)
        };
        tasks.push(tokio::spawn(async move { s.add_member(&m, &[]).await }));
    }
    let results: Vec<_> = futures_join(tasks).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    let members = s.room_members("r1").await.unwrap();
    assert_eq!(members.len(), 2 + 39, "owner, first and the 39 good joins");
    assert!(members.iter().all(|m| m.client_id != "broken"));
    // Alone (a batch of one) too.
    broken.client_in_room.id = Uuid::new_v4();
    assert!(s.add_member(&broken, &[]).await.is_err());
    assert!(
        s.room_members("r1")
            .await
            .unwrap()
            .iter()
            .all(|m| m.client_id != "broken")
    );
    s.close().await;
}

async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn sqlite_keeps_nanoseconds() {
    let b = sqlite_file().await;
    let mut c = client("precise");
    c.registered_at = chrono::DateTime::from_timestamp(1_717_243_200, 123_456_789).unwrap();
    b.store.register_client(&c, &[]).await.unwrap();
    let got = b.store.get_client("precise").await.unwrap().unwrap();
    assert_eq!(got.registered_at, c.registered_at);
}

/// Writes at once (the writer takes them in one batch) and returns their results.
async fn at_once<T: Clone + Send + 'static, R: Send + 'static, F>(
    s: &Arc<SqliteStore>,
    items: &[T],
    f: F,
) -> Vec<R>
where
    F: Fn(Arc<SqliteStore>, T) -> futures_box::BoxFuture<R>,
{
    let tasks = items
        .iter()
        .map(|t| tokio::spawn(f(s.clone(), t.clone())))
        .collect();
    futures_join(tasks).await
}

mod futures_box {
    pub type BoxFuture<R> = std::pin::Pin<Box<dyn std::future::Future<Output = R> + Send>>;
}

#[tokio::test]
async fn creates_and_joins_written_together_read_back_as_written_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open_file(&dir.path().join("store.db")).await);
    let new_room = |i: i64| {
        let id = format!("room-{i}");
        let r = room(&id, i, Some(&format!("owner-{i}")));
        let c = created(&r, &format!("owner-{i}"));
        let m = member(&format!("owner-{i}"), &id, "sender", i);
        (r, c, m)
    };
    let create = |s: Arc<SqliteStore>, (r, c, m): (_, _, _)| -> futures_box::BoxFuture<_> {
        Box::pin(async move { s.create_room(&r, &c, &m, &[]).await })
    };
    let join =
        |s: Arc<SqliteStore>, m: signal_core::store::MemberRecords| -> futures_box::BoxFuture<_> {
            Box::pin(async move { s.add_member(&m, &[]).await })
        };
    // 19 rooms created at once: one run of creations, written together.
    let rooms: Vec<_> = (0..19).map(new_room).collect();
    for r in at_once(&s, &rooms, create).await {
        r.unwrap();
    }
    // Then 5 receivers per room at once.
    let mut joins = Vec::new();
    for i in 0..19 {
        for k in 0..5 {
            joins.push(member(
                &format!("m{i}-{k}"),
                &format!("room-{i}"),
                "receiver",
                100 + k,
            ));
        }
    }
    for r in at_once(&s, &joins, join).await {
        r.unwrap();
    }
    // A run with failures: each write is then run alone and fails alone.
    let mut again = new_room(3);
    again.0.id = Uuid::new_v4();
    let r19 = new_room(19);
    let results = at_once(&s, &[again, r19.clone()], create).await;
    assert!(
        matches!(&results[0], Err(StoreError::Conflict(m)) if m == "room 'room-3' already exists"),
        "{results:?}"
    );
    results[1].as_ref().unwrap();
    let late = vec![
        member("late-sender", "room-0", "Sender", 200),
        member("nowhere", "room-none", "receiver", 200),
        member("m1-0", "room-1", "receiver", 200),
        member("first-of-19", "room-19", "receiver", 200),
    ];
    let results = at_once(&s, &late, join).await;
    results[0].as_ref().unwrap();
    assert!(
        matches!(&results[1], Err(StoreError::NoRoom(m)) if m == "room 'room-none' is not active"),
        "{results:?}"
    );
    assert!(
        matches!(&results[2], Err(StoreError::Conflict(m)) if m == "client 'm1-0' is already in room 'room-1'"),
        "{results:?}"
    );
    results[3].as_ref().unwrap();
    joins.push(late[0].clone());
    joins.push(late[3].clone());
    let mut rooms = rooms;
    rooms.push(r19);
    for (i, (r, c, m)) in rooms.iter().enumerate() {
        let room_id = &r.room_id;
        let mut expect = r.clone();
        expect.receiver_client_id = Some(if i == 19 {
            "first-of-19".to_owned()
        } else {
            format!("m{i}-0")
        });
        assert_eq!(s.get_room(room_id).await.unwrap().unwrap(), expect);
        assert_eq!(s.room_created(room_id).await.unwrap(), vec![c.clone()]);
        let mut in_room = vec![m.client_in_room.clone()];
        let mut webrtc = vec![m.webrtc_client.clone()];
        for j in joins
            .iter()
            .filter(|j| &j.client_in_room.room_id == room_id)
        {
            in_room.push(j.client_in_room.clone());
            webrtc.push(j.webrtc_client.clone());
        }
        assert_eq!(s.room_members(room_id).await.unwrap(), in_room);
        assert_eq!(s.room_webrtc_clients(room_id).await.unwrap(), webrtc);
    }
    // room-0 had a sender: the late one joined but did not take its slot.
    let r0 = s.get_room("room-0").await.unwrap().unwrap();
    assert_eq!(r0.sender_client_id.as_deref(), Some("owner-0"));
    s.close().await;
}

#[tokio::test]
async fn client_look_ups_at_once_each_get_their_own_client() {
    let b = sqlite_file().await;
    let s = b.store;
    for i in 0..50 {
        s.register_client(&client(&format!("c{i}")), &[])
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..100 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            (i, s.get_client(&format!("c{}", i % 60)).await)
        }));
    }
    for (i, r) in futures_join(tasks).await {
        let got = r.unwrap();
        if i % 60 < 50 {
            assert_eq!(got.unwrap().client_id, format!("c{}", i % 60));
        } else {
            assert!(got.is_none(), "c{} was never registered", i % 60);
        }
    }
}

#[tokio::test]
async fn leaves_and_touches_written_together_read_back_as_written_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(open_file(&dir.path().join("store.db")).await);
    let mut members = Vec::new();
    for i in 0..4 {
        let id = format!("room-{i}");
        let r = room(&id, i, Some("owner"));
        let owner = member(&format!("owner-{i}"), &id, "sender", i);
        s.create_room(&r, &created(&r, "owner"), &owner, &[])
            .await
            .unwrap();
        for k in 0..5 {
            let m = member(&format!("m{i}-{k}"), &id, "receiver", 10 + k);
            s.add_member(&m, &[]).await.unwrap();
            members.push(m);
        }
    }
    for i in 0..10 {
        s.register_client(&client(&format!("c{i}")), &[])
            .await
            .unwrap();
    }
    // Every other member leaves, all at once.
    let leaving: Vec<_> = members
        .iter()
        .step_by(2)
        .map(|m| history(m, 100, &m.client_in_room.client_id, "VoluntaryDisconnect"))
        .collect();
    let leave = |s: Arc<SqliteStore>,
                 h: signal_core::store::ClientInTerminatedRoomRecord|
     -> futures_box::BoxFuture<_> {
        Box::pin(async move { s.remove_member(&h, &[]).await })
    };
    for r in at_once(&s, &leaving, leave).await {
        r.unwrap();
    }
    for i in 0..4 {
        let id = format!("room-{i}");
        let stayed: Vec<_> = members
            .iter()
            .enumerate()
            .filter(|(n, m)| n % 2 == 1 && m.client_in_room.room_id == id)
            .map(|(_, m)| m.client_in_room.client_id.clone())
            .collect();
        let got: Vec<_> = s
            .room_members(&id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.client_id)
            .filter(|c| !c.starts_with("owner"))
            .collect();
        assert_eq!(got, stayed);
        assert_eq!(
            s.room_webrtc_clients(&id).await.unwrap().len(),
            1 + stayed.len()
        );
        let left: Vec<_> = leaving
            .iter()
            .filter(|h| h.room_id == id)
            .cloned()
            .collect();
        assert_eq!(s.member_history(&id).await.unwrap(), left);
    }
    // Touches at once, c3 twice: the later one stays.
    let touches: Vec<(String, i64)> = (0..10)
        .map(|i| (format!("c{i}"), 1000 + i))
        .chain([("c3".to_owned(), 5000), ("nobody".to_owned(), 1)])
        .collect();
    let touch = |s: Arc<SqliteStore>, (c, t): (String, i64)| -> futures_box::BoxFuture<_> {
        Box::pin(async move {
            let at = chrono::DateTime::from_timestamp(1_717_243_200 + t, 0).unwrap();
            s.touch_client(&c, at).await
        })
    };
    for r in at_once(&s, &touches, touch).await {
        r.unwrap();
    }
    for i in 0..10 {
        let got = s.get_client(&format!("c{i}")).await.unwrap().unwrap();
        let t = if i == 3 { 5000 } else { 1000 + i };
        assert_eq!(
            got.last_seen,
            chrono::DateTime::from_timestamp(1_717_243_200 + t, 0)
        );
    }
    s.close().await;
}
