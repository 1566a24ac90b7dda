//! The store knows when its database is gone, replaced, read-only or full: writes fail as
//! unavailable instead of being acknowledged into a file that is lost, `health` says so,
//! and the store recovers by itself once the database is back.
//!
//! The full-disk case mounts a small tmpfs (the tests run as root, as the test command and
//! CI do); without the right to mount it fails, naming what is missing. (A read-only
//! episode takes the same path: SQLite's "readonly" errors are "unavailable" like a full
//! disk's, and the same probe clears them. Linux refuses to remount a file system
//! read-only while the database holds files open for writing, so no test stages one.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command, time::Duration};

use chrono::Utc;
use serde_json::json;
use signal_core::store::{RegisteredClient, Store, StoreError};
use signal_store_sqlite::{SqliteOptions, SqliteStore};
use uuid::Uuid;

fn client(client_id: &str) -> RegisteredClient {
    RegisteredClient {
        id: Uuid::new_v4(),
        client_id: client_id.into(),
        auth_token: "c2FsdA$aGFzaA".into(),
        room_id: None,
        capabilities: vec![],
        registered_at: Utc::now(),
        last_seen: None,
        status: "Active".into(),
        metadata: json!({}),
        record_created_at: Utc::now(),
    }
}

async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(
        &format!("sqlite://{}", path.display()),
        SqliteOptions {
            max_connections: 4,
            operation_timeout: Duration::from_secs(3),
            ..SqliteOptions::default()
        },
    )
    .await
    .expect("store opens")
}

fn unavailable(r: Result<(), StoreError>, what: &str) -> String {
    match r {
        Err(StoreError::Unavailable(why)) => why,
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

/// Waits until `f` holds (the monitor looks once a second).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn removed_database_refuses_writes_and_recovers_when_restored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/signal.db");
    let store = open(&db).await;
    store.register_client(&client("before"), &[]).await.unwrap();
    store.health().await.unwrap();

    // The file moved away: nothing may be acknowledged into it.
    let aside = dir.path().join("aside");
    std::fs::rename(dir.path().join("data"), &aside).unwrap();
    let why = unavailable(store.register_client(&client("lost"), &[]).await, "write");
    assert!(why.contains("is gone"), "{why}");
    let why = unavailable(store.health().await, "health");
    assert!(why.contains("is gone"), "{why}");

    // Restored: the store reopens it by itself.
    std::fs::rename(&aside, dir.path().join("data")).unwrap();
    eventually("the store recovers once its file is back", || async {
        store.health().await.is_ok()
    })
    .await;
    store.register_client(&client("after"), &[]).await.unwrap();
    assert!(store.get_client("before").await.unwrap().is_some());
    assert!(store.get_client("lost").await.unwrap().is_none());
    store.close().await;

    // Everything acknowledged is in the file.
    let again = open(&db).await;
    assert!(again.get_client("before").await.unwrap().is_some());
    assert!(again.get_client("after").await.unwrap().is_some());
    assert!(again.get_client("lost").await.unwrap().is_none());
    again.close().await;
}

#[tokio::test]
async fn deleted_directory_stays_unavailable_until_restored() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/signal.db");
    let store = open(&db).await;
    store.register_client(&client("a"), &[]).await.unwrap();
    std::fs::remove_dir_all(dir.path().join("data")).unwrap();
    unavailable(store.register_client(&client("b"), &[]).await, "write");
    // Not silently replaced by an empty database: still refused after the monitor ran.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let why = unavailable(store.health().await, "health");
    assert!(why.contains("is gone"), "{why}");
    unavailable(store.register_client(&client("c"), &[]).await, "write");
    assert!(
        !db.exists(),
        "no new database was created behind the operator's back"
    );
    store.close().await;
}

#[tokio::test]
async fn replaced_database_is_noticed_and_the_new_file_taken() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("signal.db");
    let other_path = dir.path().join("other.db");
    let other = open(&other_path).await;
    other
        .register_client(&client("in-other"), &[])
        .await
        .unwrap();
    other.close().await;

    let store = open(&db).await;
    store
        .register_client(&client("in-first"), &[])
        .await
        .unwrap();
    // Restoring a backup as docs/configuration.md says: the file without its companions.
    std::fs::rename(&other_path, &db).unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("signal.db{ext}")));
    }
    let why = unavailable(store.register_client(&client("x"), &[]).await, "write");
    assert!(why.contains("was replaced"), "{why}");
    eventually("the store reopens the new file", || async {
        store.health().await.is_ok()
    })
    .await;
    assert!(store.get_client("in-other").await.unwrap().is_some());
    store.register_client(&client("y"), &[]).await.unwrap();
    store.close().await;
}

/// A tmpfs mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.path().to_str().unwrap(),
            ],
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap_or_else(|e| {
        panic!("{cmd} {args:?}: {e} (these tests mount a tmpfs and need root)")
    });
    assert!(
        st.success(),
        "{cmd} {args:?} failed: {st} (these tests mount a tmpfs and need root)"
    );
}

#[tokio::test]
async fn full_disk_refuses_writes_and_recovers() {
    let fs = Tmpfs::mount("4m");
    let store = open(&fs.path().join("signal.db")).await;
    store.register_client(&client("a"), &[]).await.unwrap();

    // Fill the file system.
    let filler = fs.path().join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
            "count=1000",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    let mut refused = false;
    for i in 0..200 {
        // Large rows, so the WAL must grow.
        let mut c = client(&format!("big-{i}"));
        c.metadata = json!({ "pad": "x".repeat(16 * 1024) });
        match store.register_client(&c, &[]).await {
            Ok(()) => {}
            Err(StoreError::Unavailable(_)) => {
                refused = true;
                break;
            }
            Err(e) => panic!("expected Unavailable on a full disk, got {e:?}"),
        }
    }
    assert!(refused, "a write on a full disk was refused");
    eventually("health reports the full disk", || async {
        store.health().await.is_err()
    })
    .await;

    std::fs::remove_file(&filler).unwrap();
    eventually("the store recovers once space is free", || async {
        store.health().await.is_ok()
    })
    .await;
    store.register_client(&client("after"), &[]).await.unwrap();
    store.close().await;
}

/// With `retry_attempts`, a read made during a short outage is answered once the file is
/// back instead of failing.
#[tokio::test]
async fn reads_are_retried_through_a_short_outage() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("data/signal.db");
    let store = SqliteStore::open(
        &format!("sqlite://{}", db.display()),
        SqliteOptions {
            max_connections: 4,
            operation_timeout: Duration::from_secs(3),
            retry_attempts: 60,
            retry_interval: Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    store.register_client(&client("kept"), &[]).await.unwrap();

    let aside = dir.path().join("aside");
    std::fs::rename(dir.path().join("data"), &aside).unwrap();
    // Writes are not retried: this one is refused at once.
    unavailable(store.register_client(&client("lost"), &[]).await, "write");

    let back = dir.path().join("data");
    let restore = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        std::fs::rename(&aside, &back).unwrap();
    });
    store.health().await.expect("the read waits out the outage");
    assert!(
        restore.is_finished(),
        "answered only after the file came back"
    );
    assert!(store.get_client("kept").await.unwrap().is_some());
    store.close().await;
}
