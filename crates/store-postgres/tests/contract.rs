//! The store contract (`signal_core::store::contract`) against PostgreSQL (a server the
//! test starts), then what only a server database shows: data shared by two stores (two
//! nodes), migrations run once by several nodes at once, a server that goes away and
//! comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::PgServer;
use signal_core::store::{
    Store, StoreError,
    contract::{client, created, member, room},
};
use signal_store_postgres::{PostgresOptions, PostgresStore};

/// A fresh database on a server of its own; the server lives as long as the pair.
async fn postgres() -> (Arc<dyn Store>, PgServer) {
    let server = PgServer::start().await;
    let url = server.fresh_database().await;
    let store = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap();
    (Arc::new(store), server)
}

signal_core::store_contract!(postgres_store, postgres().await);

fn opts() -> PostgresOptions {
    PostgresOptions {
        max_connections: 4,
        operation_timeout: Duration::from_secs(2),
        ..PostgresOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_one_database_and_race_fairly() {
    let server = PgServer::start().await;
    let url = server.fresh_database().await;
    // Two nodes start at once: the migrations run once, both stores work.
    let (a, b) = tokio::join!(
        PostgresStore::open(&url, opts()),
        PostgresStore::open(&url, opts())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    a.register_client(&client("shared"), &[]).await.unwrap();
    assert!(b.get_client("shared").await.unwrap().is_some());
    // Both create one room id at once: one wins.
    let r1 = room("contested", 0, Some("alice"));
    let r2 = room("contested", 1, Some("bob"));
    let (c1, c2) = (created(&r1, "alice"), created(&r2, "bob"));
    let m1 = member("alice", "contested", "sender", 0);
    let m2 = member("bob", "contested", "sender", 1);
    let (x, y) = tokio::join!(
        a.create_room(&r1, &c1, &m1, &[]),
        b.create_room(&r2, &c2, &m2, &[])
    );
    let conflicts = [&x, &y]
        .iter()
        .filter(
            |r| matches!(r, Err(StoreError::Conflict(m)) if m == "room 'contested' already exists"),
        )
        .count();
    assert_eq!(
        (x.is_ok() as u8 + y.is_ok() as u8, conflicts),
        (1, 1),
        "{x:?} {y:?}"
    );
    assert_eq!(a.room_members("contested").await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_lost_server_is_unavailable_and_a_bad_url_is_refused() {
    let mut server = PgServer::start().await;
    let url = server.fresh_database().await;
    let store = PostgresStore::open(&url, opts()).await.unwrap();
    store.register_client(&client("before"), &[]).await.unwrap();
    server.kill();
    assert!(
        matches!(store.health().await, Err(StoreError::Unavailable(_))),
        "a dead server is unavailable, not an internal error"
    );
    assert!(matches!(
        store.register_client(&client("after"), &[]).await,
        Err(StoreError::Unavailable(_))
    ));
    // Nothing listens there now.
    let refused = PostgresStore::open(&url, opts()).await.unwrap_err();
    assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
    let bad = PostgresStore::open("postgres://", opts()).await;
    assert!(bad.is_err());
}

#[tokio::test]
async fn timestamps_keep_microseconds() {
    let (s, _server) = postgres().await;
    let mut c = client("precise");
    c.registered_at = chrono::DateTime::from_timestamp(1_717_243_200, 123_456_789).unwrap();
    s.register_client(&c, &[]).await.unwrap();
    let got = s.get_client("precise").await.unwrap().unwrap();
    assert_eq!(
        got.registered_at,
        chrono::DateTime::from_timestamp(1_717_243_200, 123_456_000).unwrap(),
        "PostgreSQL keeps microseconds and drops finer digits"
    );
}

#[tokio::test]
async fn operations_retry_while_the_database_restarts() {
    let mut server = PgServer::start().await;
    let url = server.fresh_database().await;
    let store = Arc::new(
        PostgresStore::open(
            &url,
            PostgresOptions {
                max_connections: 2,
                operation_timeout: Duration::from_secs(2),
                retry_attempts: 40,
                retry_interval: Duration::from_millis(100),
            },
        )
        .await
        .unwrap(),
    );
    store.register_client(&client("before"), &[]).await.unwrap();
    server.kill();
    // A read and a write start while the database is down...
    let read = tokio::spawn({
        let s = store.clone();
        async move { s.get_client("before").await }
    });
    let write = tokio::spawn({
        let s = store.clone();
        async move { s.register_client(&client("during"), &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...and finish once it is back, each applied once.
    server.restart().await;
    assert!(read.await.unwrap().unwrap().is_some());
    write.await.unwrap().unwrap();
    assert_eq!(store.count_clients().await.unwrap(), 2);

    // Without retries, the same outage is an immediate 503.
    let once = PostgresStore::open(
        &url,
        PostgresOptions {
            retry_attempts: 0,
            ..opts()
        },
    )
    .await
    .unwrap();
    server.kill();
    assert!(matches!(
        once.get_client("before").await,
        Err(StoreError::Unavailable(_))
    ));
}
