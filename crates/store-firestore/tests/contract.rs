//! The store contract against Google's Firestore emulator, and Firestore going away.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use signal_core::store::{Store, StoreError, contract};
use signal_store_firestore::{FirestoreOptions, FirestoreStore};

async fn open(host: &str, database: String) -> FirestoreStore {
    FirestoreStore::open(
        "firestore://demo-signal",
        FirestoreOptions {
            database_name: database,
            emulator_host: Some(host.to_owned()),
            operation_timeout: Duration::from_secs(10),
            ..FirestoreOptions::default()
        },
    )
    .await
    .unwrap()
}

async fn fresh() -> (Arc<dyn Store>, ()) {
    let host = tokio::task::spawn_blocking(|| common::shared().host.clone())
        .await
        .unwrap();
    (
        Arc::new(open(&host, common::fresh_database()).await) as Arc<dyn Store>,
        (),
    )
}

signal_core::store_contract!(firestore, fresh().await);

/// Firestore going away: a clear `Unavailable`, and service again when it returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_down_is_unavailable_then_recovers() {
    let mut emu = tokio::task::spawn_blocking(common::Emulator::start)
        .await
        .unwrap();
    let store = FirestoreStore::open(
        "firestore://demo-signal",
        FirestoreOptions {
            database_name: "gone".into(),
            emulator_host: Some(emu.host.clone()),
            operation_timeout: Duration::from_secs(2),
            retry_attempts: 1,
            retry_interval: Duration::from_millis(50),
            ..FirestoreOptions::default()
        },
    )
    .await
    .unwrap();
    store
        .register_client(&contract::client("abc"), &[])
        .await
        .unwrap();

    let mut emu = tokio::task::spawn_blocking(move || {
        emu.kill();
        emu
    })
    .await
    .unwrap();
    for r in [
        store.health().await,
        store.get_client("abc").await.map(drop),
        store.register_client(&contract::client("def"), &[]).await,
    ] {
        match r {
            Err(StoreError::Unavailable(m)) => assert!(m.contains("Firestore"), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    let emu = tokio::task::spawn_blocking(move || {
        emu.restart();
        emu
    })
    .await
    .unwrap();
    // The emulator's first answers after a restart can be slow (a cold JVM): the store
    // recovers once it answers, without being reopened.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Err(e) = store.health().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the store did not recover within 30 s of the emulator's return: {e}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    store
        .register_client(&contract::client("def"), &[])
        .await
        .unwrap();
    assert!(store.get_client("def").await.unwrap().is_some());
    drop(emu);
}

/// Opening fails at once, and clearly, when nothing answers.
#[tokio::test]
async fn open_fails_when_nothing_answers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = FirestoreStore::open(
        "firestore://demo-signal",
        FirestoreOptions {
            emulator_host: Some(format!("127.0.0.1:{port}")),
            retry_attempts: 0,
            ..FirestoreOptions::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = FirestoreStore::open("firestore://", FirestoreOptions::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("firestore://PROJECT_ID"), "{err}");
}
