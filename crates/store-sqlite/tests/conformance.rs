//! The store contract (`signal_core::store::contract`) against a `SqliteStore` on a
//! temporary file and a `SqliteStore` in memory, then SQLite-only checks (durability,
//! URLs, pragmas, timeouts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use signal_core::store::{
    Store, StoreError,
    contract::{client, created, member, room},
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
        s.register_client(&a).await.unwrap();
        s.create_room(&r, &c, &m).await.unwrap();
        s.close().await;
    }
    let s = open_file(&path).await;
    assert_eq!(s.get_client("abc").await.unwrap(), Some(a));
    assert_eq!(s.active_rooms().await.unwrap(), vec![r]);
    assert_eq!(s.room_created("r1").await.unwrap(), vec![c]);
    assert_eq!(s.room_members("r1").await.unwrap(), vec![m.client_in_room]);
    // Reopening reruns no migration and keeps unique keys.
    assert!(matches!(
        s.register_client(&client("abc")).await,
        Err(StoreError::Conflict(_))
    ));
    s.close().await;
}

#[tokio::test]
async fn sqlite_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("store.db");
    let s = open_file(&path).await;
    s.register_client(&client("abc")).await.unwrap();
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
        s.register_client(&client("abc")).await.unwrap();
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
    a.register_client(&client("abc")).await.unwrap();
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
    s.register_client(&c).await.unwrap();
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
        },
    )
    .await
    .unwrap();
    // Another writer holds the write lock longer than the operation timeout.
    let mut blocker = s.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    match s.register_client(&client("abc")).await {
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
    s.register_client(&client("abc")).await.unwrap();
    s.close().await;
}

#[tokio::test]
async fn concurrent_writes_commit_together_and_a_failing_one_is_undone_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(open_file(&dir.path().join("store.db")).await);
    s.register_client(&client("taken")).await.unwrap();
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
            (id.clone(), s.register_client(&client(&id)).await)
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
    )
    .await
    .unwrap();
    let first = member("first", "r1", "receiver", 1);
    s.add_member(&first).await.unwrap();
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
        tasks.push(tokio::spawn(async move { s.add_member(&m).await }));
    }
    let results: Vec<_> = futures_join(tasks).await;
    assert_eq!(results.iter().filter(|r| r.is_err()).count(), 1);
    let members = s.room_members("r1").await.unwrap();
    assert_eq!(members.len(), 2 + 39, "owner, first and the 39 good joins");
    assert!(members.iter().all(|m| m.client_id != "broken"));
    // Alone (a batch of one) too.
    broken.client_in_room.id = Uuid::new_v4();
    assert!(s.add_member(&broken).await.is_err());
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
    b.store.register_client(&c).await.unwrap();
    let got = b.store.get_client("precise").await.unwrap().unwrap();
    assert_eq!(got.registered_at, c.registered_at);
}
