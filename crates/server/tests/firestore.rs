//! The server on Firestore, as seed 000 runs it: `database.url = "firestore://PROJECT"`
//! against Google's Firestore emulator, which the test starts on a free port (never a
//! shared one). Clients register, a room lives and ends, everything lands in the seed's
//! seven collections and survives a restart of the server; an emulator that goes away
//! makes writes and `/health` answer 503, and the server recovers when it comes back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::emulator::{self, Emulator};
use common::{TestServer, WAIT, http_get};
use signal_core::store::Store;
use signal_store_firestore::{FirestoreOptions, FirestoreStore};

async fn start_emulator() -> Emulator {
    tokio::task::spawn_blocking(Emulator::start).await.unwrap()
}

fn use_firestore(c: &mut signal_server::config::Config, host: &str, database: &str) {
    c.database.url = "firestore://demo-signal".into();
    c.firestore = Some(signal_server::config::FirestoreConfig {
        database_name: Some(database.into()),
        emulator_host: Some(host.into()),
        ..Default::default()
    });
}

#[tokio::test]
async fn the_server_keeps_its_clients_and_rooms_in_firestore() {
    let emu = start_emulator().await;
    let database = emulator::fresh_database();
    let s = TestServer::start_with(|c| use_firestore(c, &emu.host, &database)).await;
    let a = s.connected("alice").await;
    a.register("alice-registered-secret").await.unwrap();
    let b = s.registered("bob").await;
    a.create_room("alice-registered-secret", Some("fs-room"), Some("v=0"))
        .await
        .unwrap();
    b.join_room(&common::token("bob"), "fs-room").await.unwrap();
    let store = FirestoreStore::open(
        "firestore://demo-signal",
        FirestoreOptions {
            database_name: database.clone(),
            emulator_host: Some(emu.host.clone()),
            ..FirestoreOptions::default()
        },
    )
    .await
    .unwrap();
    let room = store.get_room("fs-room").await.unwrap().unwrap();
    assert_eq!(room.sender_client_id.as_deref(), Some("alice"));
    assert_eq!(room.receiver_client_id.as_deref(), Some("bob"));
    assert_eq!(store.room_members("fs-room").await.unwrap().len(), 2);
    drop(b);
    drop(a);
    let s = s.restart().await;

    // Only the stored (hashed) registration can authenticate this.
    let mut c = s.client().await;
    c.authenticate("alice", "alice-registered-secret")
        .await
        .expect("a registration kept in Firestore works after a restart");
    let (status, body) = http_get(&s.http(), "/health").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"registered_clients\":2"), "{body}");

    let created = store.room_created("fs-room").await.unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].created_by.as_deref(), Some("alice"));
    let ended = store.terminated_rooms("fs-room").await.unwrap();
    assert_eq!(ended.len(), 1, "the room ended once, when its members left");
    let history = store.member_history("fs-room").await.unwrap();
    let mut who: Vec<_> = history.iter().map(|h| h.client_id.as_str()).collect();
    who.sort_unstable();
    assert_eq!(who, ["alice", "bob"]);
    assert!(store.active_rooms().await.unwrap().is_empty());
    s.shutdown().await;
}

#[tokio::test]
async fn a_lost_firestore_is_a_503_until_it_comes_back() {
    let emu = start_emulator().await;
    let s = TestServer::start_with(|c| {
        use_firestore(c, &emu.host, "(default)");
        c.database.operation_timeout = 2;
    })
    .await;
    let a = s.connected("alice").await;
    let mut emu = tokio::task::spawn_blocking(move || {
        let mut emu = emu;
        emu.kill();
        emu
    })
    .await
    .unwrap();
    let (status, body) = http_get(&s.http(), "/health").await;
    assert_eq!(status, 503, "{body}");
    let e = a.register("alice-secret").await.unwrap_err();
    assert_eq!(e.code(), Some(503), "{e:?}");

    emu = tokio::task::spawn_blocking(move || {
        emu.restart();
        emu
    })
    .await
    .unwrap();
    s.wait_healthy().await;
    tokio::time::timeout(WAIT, a.register("alice-secret"))
        .await
        .unwrap()
        .expect("writes work again once Firestore is back");
    s.shutdown().await;
    drop(emu);
}
