//! The server on PostgreSQL, as an operator would run it: `database.url = "postgres://…"`
//! on a server the test starts (never the machine's shared one). Clients register, rooms
//! live and end, everything lands in the seven tables and survives a restart; `migrate`
//! prepares a database ahead of time; a database that goes away makes writes and
//! `/health` answer 503, and the server recovers by itself when it comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::pg::PgServer;
use common::{TestServer, WAIT, http_get};
use signal_core::store::Store;
use signal_store_postgres::{PostgresOptions, PostgresStore};

#[tokio::test]
async fn the_server_keeps_its_clients_and_rooms_in_postgresql() {
    let db = PgServer::start().await;
    let url = db.fresh_database().await;
    let s = TestServer::start_with(|c| c.database.url = url.clone()).await;
    let a = s.connected("alice").await;
    a.register("alice-registered-secret").await.unwrap();
    let b = s.registered("bob").await;
    a.create_room("alice-registered-secret", Some("pg-room"), Some("v=0"))
        .await
        .unwrap();
    b.join_room(&common::token("bob"), "pg-room").await.unwrap();
    drop(b);
    drop(a);
    let s = s.restart().await;

    // Only the stored (hashed) registration can authenticate this.
    let mut c = s.client().await;
    c.authenticate("alice", "alice-registered-secret")
        .await
        .expect("a registration kept in PostgreSQL works after a restart");
    let (status, body) = http_get(&s.http(), "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"registered_clients\":2"), "{body}");

    let store = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap();
    assert_eq!(store.room_created("pg-room").await.unwrap().len(), 1);
    let ended = store.terminated_rooms("pg-room").await.unwrap();
    assert_eq!(ended.len(), 1, "the room ended once, when its members left");
    assert_eq!(store.member_history("pg-room").await.unwrap().len(), 2);
    assert!(store.active_rooms().await.unwrap().is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn a_lost_database_is_a_503_until_it_comes_back() {
    let mut db = PgServer::start().await;
    let url = db.fresh_database().await;
    let s = TestServer::start_with(|c| {
        c.database.url = url.clone();
        c.database.operation_timeout = 2;
    })
    .await;
    let a = s.connected("alice").await;
    db.kill();
    let (status, body) = http_get(&s.http(), "/health").await;
    assert_eq!(status, 503, "{body}");
    let e = a.register("alice-secret").await.unwrap_err();
    assert_eq!(e.code(), Some(503), "{e:?}");

    db.restart().await;
    s.wait_healthy().await;
    tokio::time::timeout(WAIT, a.register("alice-secret"))
        .await
        .unwrap()
        .expect("writes work again once the database is back");
    s.shutdown().await;
}

/// `signal-manager-service --config CONFIG migrate`.
fn migrate(config: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_signal-manager-service"))
        .arg("--config")
        .arg(config)
        .arg("migrate")
        .output()
        .unwrap()
}

#[tokio::test]
async fn migrate_prepares_a_database_and_says_so() {
    let db = PgServer::start().await;
    let url = db.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{url}\"\n")).unwrap();
    let out = migrate(&config);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("is up to date"),
        "{out:?}"
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' \
         AND table_name IN ('registered_clients', 'webrtc_rooms', 'webrtc_clients', \
         'client_in_room', 'room_created', 'terminated_rooms', 'client_in_terminated_room')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, 7);

    // A database that is not there: a clear failure, exit status 1, no password shown.
    let dead = url.replace("signal@", "signal:hunter2@").replace(
        &format!(":{}/", db.port),
        &format!(":{}/", common::free_port()),
    );
    std::fs::write(&config, format!("[database]\nurl = \"{dead}\"\n")).unwrap();
    let out = migrate(&config);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("database unavailable"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is never shown: {err}"
    );
}
