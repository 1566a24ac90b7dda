//! The store contract: what every [`Store`] implementation must do, as checks each
//! implementation runs against itself with [`store_contract!`](crate::store_contract):
//! every operation, its conflicts, the races two nodes would run (two registrations of
//! one client id, two creators of one room id: one wins, the other gets a conflict), and
//! a closed store answering unavailable. Each check starts from an empty store.

// The checks are named for what they assert; the fixtures for what they build.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::{
    events::{Event, Kind},
    ids::{ClientId, RoomId},
};

use super::{
    ClientInRoomRecord, ClientInTerminatedRoomRecord, MemberRecords, RegisteredClient,
    RoomCreatedRecord, RoomRecord, Store, StoreError, TerminatedRoomRecord, WebrtcClientRecord,
};

/// Runs every check of the contract against a backend, one `#[tokio::test]` each, in a
/// module named `$module`. `$make` is an expression (it may `.await`) giving a pair: a
/// fresh, empty `Arc<dyn Store>`, and anything that must live as long as the test (a
/// temporary directory, a database server).
///
/// ```ignore
/// signal_core::store_contract!(memory_store, (Arc::new(MemoryStore::new()) as Arc<dyn Store>, ()));
/// ```
#[macro_export]
macro_rules! store_contract {
    ($module:ident, $make:expr) => {
        $crate::store_contract!(@module $module, $make;
            health_answers,
            clients_register_get_touch_delete,
            duplicate_client_is_conflict,
            create_room_round_trips,
            create_room_conflicts,
            failed_create_room_writes_nothing,
            add_member_fills_empty_role_slots,
            add_member_errors,
            remove_member_moves_member_to_history,
            terminate_room_empties_active_tables,
            room_id_reusable_after_termination,
            active_rooms_oldest_first,
            close_makes_store_unavailable,
            export_pages_and_imports_history,
            concurrent_registrations_all_succeed,
            concurrent_duplicate_registration_one_wins,
            concurrent_rooms_and_members,
            concurrent_creators_of_one_room_one_wins,
            events_are_recorded_with_their_writes,
            failed_writes_record_no_events,
            concurrent_room_events_are_numbered_without_gaps,
            delivered_events_are_pruned_by_age
        );
    };
    (@module $module:ident, $make:expr; $($name:ident),* $(,)?) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (store, _keep) = $make;
                    $crate::store::contract::$name(&store).await;
                }
            )*
        }
    };
}

// ----- fixtures -----

/// A fixed instant plus `secs`, with microseconds: every store keeps timestamps to the
/// microsecond (PostgreSQL and Firestore keep no finer digits; SQLite keeps nanoseconds,
/// which its own tests check).
pub fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_717_243_200 + secs, 123_456_000)
        .single()
        .unwrap()
}

pub fn client(client_id: &str) -> RegisteredClient {
    RegisteredClient {
        id: Uuid::new_v4(),
        client_id: client_id.into(),
        auth_token: "c2FsdA$aGFzaA".into(),
        room_id: Some("lobby".into()),
        capabilities: vec!["websocket".into(), "heartbeat".into(), "webrtc".into()],
        registered_at: at(0),
        last_seen: None,
        status: "Active".into(),
        metadata: json!({"platform": "web", "version": "1.0.0", "nested": {"n": [1, 2.5, null]}}),
        record_created_at: at(1),
    }
}

pub fn room(room_id: &str, secs: i64, sender: Option<&str>) -> RoomRecord {
    RoomRecord {
        id: Uuid::new_v4(),
        room_id: room_id.into(),
        app_id: "app-1".into(),
        created_at: at(secs),
        status: "Active".into(),
        sender_client_id: sender.map(Into::into),
        receiver_client_id: None,
        session_id: Some(format!("session-{room_id}")),
        metadata: json!({"platform": "web", "created_at": at(secs).to_rfc3339()}),
        record_created_at: at(secs + 1),
    }
}

pub fn created(room: &RoomRecord, by: &str) -> RoomCreatedRecord {
    RoomCreatedRecord {
        id: Uuid::new_v4(),
        room_uuid: room.id,
        room_id: room.room_id.clone(),
        created_at: room.created_at,
        room_data: json!({"room_id": room.room_id, "app_id": room.app_id, "initial_participants": 1}),
        created_by: Some(by.into()),
        metadata: json!({"version": "1.0.0"}),
        record_created_at: room.record_created_at,
    }
}

pub fn member(client_id: &str, room_id: &str, role: &str, secs: i64) -> MemberRecords {
    MemberRecords {
        client_in_room: ClientInRoomRecord {
            id: Uuid::new_v4(),
            client_id: client_id.into(),
            room_id: room_id.into(),
            joined_at: at(secs),
            last_activity: at(secs + 2),
            status: "Active".into(),
            capabilities: vec!["webrtc".into()],
            metadata: json!({"user_agent": "test/1.0"}),
            record_created_at: at(secs),
        },
        webrtc_client: WebrtcClientRecord {
            id: Uuid::new_v4(),
            client_id: client_id.into(),
            room_id: room_id.into(),
            role: role.into(),
            session_id: Some(format!("s-{client_id}")),
            joined_at: at(secs),
            status: "Active".into(),
            metadata: json!({"role": role}),
            record_created_at: at(secs),
        },
    }
}

pub fn history(
    m: &MemberRecords,
    left: i64,
    by: &str,
    status: &str,
) -> ClientInTerminatedRoomRecord {
    let c = &m.client_in_room;
    ClientInTerminatedRoomRecord {
        id: Uuid::new_v4(),
        client_id: c.client_id.clone(),
        room_id: c.room_id.clone(),
        joined_at: c.joined_at,
        left_at: at(left),
        termination_reason: "Room terminated".into(),
        terminated_by: by.into(),
        final_status: status.into(),
        capabilities: c.capabilities.clone(),
        metadata: c.metadata.clone(),
        record_created_at: at(left),
    }
}

pub fn terminated(room: &RoomRecord, secs: i64, by: &str) -> TerminatedRoomRecord {
    TerminatedRoomRecord {
        id: Uuid::new_v4(),
        room_id: room.room_id.clone(),
        terminated_at: at(secs),
        termination_recorded_at: at(secs + 1),
        room_data: json!({
            "session_duration": secs - room.created_at.timestamp() + 1_717_243_200,
            "participant_count": 2,
            "final_status": "completed",
            "room_uuid": room.id,
        }),
        termination_reason: Some("User initiated".into()),
        terminated_by: Some(by.into()),
        metadata: room.metadata.clone(),
        record_created_at: at(secs + 1),
    }
}

/// An event of `kind` about `client`, in `room` if given, with some data.
pub fn event(kind: Kind, client: &str, room: Option<&str>) -> Event {
    let e = Event::new(kind, "node-a")
        .client(&ClientId::parse("client_id", client).unwrap())
        .data(json!({"reason": "left", "n": [1, 2.5, null], "nested": {"ok": true}}));
    match room {
        Some(r) => e.room(&RoomId::parse(r).unwrap()),
        None => e,
    }
}

/// `e` as the store gives it back: numbered `seq`.
pub fn numbered(e: &Event, seq: Option<u64>) -> Event {
    Event { seq, ..e.clone() }
}

pub fn ids<T>(rows: &[T], f: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| f(r).to_owned()).collect()
}

// ----- backends -----

// ----- the checks -----

pub async fn health_answers(s: &Arc<dyn Store>) {
    s.health().await.unwrap();
}

pub async fn clients_register_get_touch_delete(s: &Arc<dyn Store>) {
    assert_eq!(s.count_clients().await.unwrap(), 0);
    assert_eq!(s.get_client("abc").await.unwrap(), None);

    let a = client("abc");
    let mut b = client("def");
    b.room_id = None;
    b.capabilities = vec![];
    b.last_seen = Some(at(5));
    b.metadata = json!({});
    s.register_client(&a, &[]).await.unwrap();
    s.register_client(&b, &[]).await.unwrap();
    assert_eq!(s.count_clients().await.unwrap(), 2);
    assert_eq!(s.get_client("abc").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_client("def").await.unwrap(), Some(b.clone()));

    s.touch_client("abc", at(60)).await.unwrap();
    let touched = s.get_client("abc").await.unwrap().unwrap();
    assert_eq!(touched.last_seen, Some(at(60)));
    assert_eq!(
        RegisteredClient {
            last_seen: None,
            ..touched
        },
        a
    );
    // Touching an unknown client is not an error and creates nothing.
    s.touch_client("nobody", at(60)).await.unwrap();
    assert_eq!(s.count_clients().await.unwrap(), 2);

    assert!(s.delete_client("abc", &[]).await.unwrap());
    assert!(!s.delete_client("abc", &[]).await.unwrap());
    assert_eq!(s.get_client("abc").await.unwrap(), None);
    assert_eq!(s.count_clients().await.unwrap(), 1);
    // A deleted id can register again.
    s.register_client(&client("abc"), &[]).await.unwrap();
    assert_eq!(s.count_clients().await.unwrap(), 2);
}

pub async fn duplicate_client_is_conflict(s: &Arc<dyn Store>) {
    let first = client("abc");
    s.register_client(&first, &[]).await.unwrap();
    let mut second = client("abc");
    second.auth_token = "c2VjcmV0LXRva2Vu".into();
    match s.register_client(&second, &[]).await {
        Err(StoreError::Conflict(msg)) => {
            assert_eq!(msg, "client 'abc' is already registered");
            assert!(!msg.contains(&second.auth_token));
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    // The first registration is untouched.
    assert_eq!(s.get_client("abc").await.unwrap(), Some(first));
    assert_eq!(s.count_clients().await.unwrap(), 1);
}

pub async fn create_room_round_trips(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    let c = created(&r, "alice");
    let alice = member("alice", "r1", "sender", 0);
    s.create_room(&r, &c, &alice, &[]).await.unwrap();

    assert_eq!(s.get_room("r1").await.unwrap(), Some(r.clone()));
    assert_eq!(s.get_room("r2").await.unwrap(), None);
    assert_eq!(s.active_rooms().await.unwrap(), vec![r.clone()]);
    assert_eq!(s.room_created("r1").await.unwrap(), vec![c]);
    assert_eq!(
        s.room_members("r1").await.unwrap(),
        vec![alice.client_in_room.clone()]
    );
    assert_eq!(
        s.room_webrtc_clients("r1").await.unwrap(),
        vec![alice.webrtc_client.clone()]
    );
    assert!(s.terminated_rooms("r1").await.unwrap().is_empty());
    assert!(s.member_history("r1").await.unwrap().is_empty());

    // Options that are None and empty JSON round-trip too.
    let mut bare = room("r2", 1, None);
    bare.app_id = String::new();
    bare.session_id = None;
    bare.metadata = json!({});
    let mut bare_created = created(&bare, "bob");
    bare_created.created_by = None;
    let mut bob = member("bob", "r2", "receiver", 1);
    bob.webrtc_client.session_id = None;
    bob.client_in_room.capabilities = vec![];
    s.create_room(&bare, &bare_created, &bob, &[])
        .await
        .unwrap();
    // The room is stored as given: create_room does not fill role slots.
    assert_eq!(s.get_room("r2").await.unwrap(), Some(bare));
    assert_eq!(s.room_created("r2").await.unwrap(), vec![bare_created]);
    assert_eq!(
        s.room_members("r2").await.unwrap(),
        vec![bob.client_in_room]
    );
    assert_eq!(
        s.room_webrtc_clients("r2").await.unwrap(),
        vec![bob.webrtc_client]
    );
}

pub async fn create_room_conflicts(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    s.create_room(
        &r,
        &created(&r, "alice"),
        &member("alice", "r1", "sender", 0),
        &[],
    )
    .await
    .unwrap();
    let again = room("r1", 5, Some("bob"));
    match s
        .create_room(
            &again,
            &created(&again, "bob"),
            &member("bob", "r1", "sender", 5),
            &[],
        )
        .await
    {
        Err(StoreError::Conflict(msg)) => assert_eq!(msg, "room 'r1' already exists"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    // Nothing of the failed creation was written.
    assert_eq!(s.get_room("r1").await.unwrap(), Some(r));
    assert_eq!(s.room_created("r1").await.unwrap().len(), 1);
    assert_eq!(
        ids(&s.room_members("r1").await.unwrap(), |m| &m.client_id),
        ["alice"]
    );
}

pub async fn failed_create_room_writes_nothing(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    // The creator's rows point at a room that does not exist: the whole unit fails.
    let err = s
        .create_room(
            &r,
            &created(&r, "alice"),
            &member("alice", "elsewhere", "sender", 0),
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NoRoom(m) | StoreError::Internal(m) if m.contains("'elsewhere'")),
        "{err:?}"
    );
    assert_eq!(s.get_room("r1").await.unwrap(), None);
    assert!(s.active_rooms().await.unwrap().is_empty());
    assert!(s.room_created("r1").await.unwrap().is_empty());
    assert!(s.room_members("elsewhere").await.unwrap().is_empty());
    // And the room can then be created for real.
    s.create_room(
        &r,
        &created(&r, "alice"),
        &member("alice", "r1", "sender", 0),
        &[],
    )
    .await
    .unwrap();
}

pub async fn add_member_fills_empty_role_slots(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    s.create_room(
        &r,
        &created(&r, "alice"),
        &member("alice", "r1", "sender", 0),
        &[],
    )
    .await
    .unwrap();

    let bob = member("bob", "r1", "receiver", 1);
    s.add_member(&bob, &[]).await.unwrap();
    let got = s.get_room("r1").await.unwrap().unwrap();
    assert_eq!(got.receiver_client_id.as_deref(), Some("bob"));
    assert_eq!(got.sender_client_id.as_deref(), Some("alice"));

    // Occupied slots are kept.
    s.add_member(&member("carol", "r1", "receiver", 2), &[])
        .await
        .unwrap();
    s.add_member(&member("dave", "r1", "sender", 3), &[])
        .await
        .unwrap();
    let got = s.get_room("r1").await.unwrap().unwrap();
    assert_eq!(got.receiver_client_id.as_deref(), Some("bob"));
    assert_eq!(got.sender_client_id.as_deref(), Some("alice"));
    assert_eq!(
        RoomRecord {
            receiver_client_id: None,
            ..got
        },
        r
    );

    // Members in join order, in both active tables.
    assert_eq!(
        ids(&s.room_members("r1").await.unwrap(), |m| &m.client_id),
        ["alice", "bob", "carol", "dave"]
    );
    let webrtc = s.room_webrtc_clients("r1").await.unwrap();
    assert_eq!(
        ids(&webrtc, |m| &m.client_id),
        ["alice", "bob", "carol", "dave"]
    );
    assert_eq!(webrtc[1], bob.webrtc_client);

    // An empty sender slot is filled by a sender; the role match ignores case.
    let r2 = room("r2", 10, None);
    s.create_room(
        &r2,
        &created(&r2, "erin"),
        &member("erin", "r2", "receiver", 10),
        &[],
    )
    .await
    .unwrap();
    s.add_member(&member("frank", "r2", "Sender", 11), &[])
        .await
        .unwrap();
    let got = s.get_room("r2").await.unwrap().unwrap();
    assert_eq!(got.sender_client_id.as_deref(), Some("frank"));
    assert_eq!(got.receiver_client_id, None);
}

pub async fn add_member_errors(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    s.create_room(
        &r,
        &created(&r, "alice"),
        &member("alice", "r1", "sender", 0),
        &[],
    )
    .await
    .unwrap();
    let bob = member("bob", "r1", "receiver", 1);
    s.add_member(&bob, &[]).await.unwrap();

    match s.add_member(&member("bob", "r1", "receiver", 2), &[]).await {
        Err(StoreError::Conflict(msg)) => {
            assert_eq!(msg, "client 'bob' is already in room 'r1'");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match s
        .add_member(&member("carol", "nope", "receiver", 2), &[])
        .await
    {
        Err(StoreError::NoRoom(msg)) => assert_eq!(msg, "room 'nope' is not active"),
        other => panic!("expected NoRoom, got {other:?}"),
    }
    // Neither failure left a row behind.
    let members = s.room_members("r1").await.unwrap();
    assert_eq!(ids(&members, |m| &m.client_id), ["alice", "bob"]);
    assert_eq!(members[1], bob.client_in_room);
    assert_eq!(s.room_webrtc_clients("r1").await.unwrap().len(), 2);
    assert!(s.room_members("nope").await.unwrap().is_empty());
    assert!(s.room_webrtc_clients("nope").await.unwrap().is_empty());
    assert_eq!(
        s.get_room("r1")
            .await
            .unwrap()
            .unwrap()
            .receiver_client_id
            .as_deref(),
        Some("bob")
    );
}

pub async fn remove_member_moves_member_to_history(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    s.create_room(
        &r,
        &created(&r, "alice"),
        &member("alice", "r1", "sender", 0),
        &[],
    )
    .await
    .unwrap();
    let bob = member("bob", "r1", "receiver", 1);
    s.add_member(&bob, &[]).await.unwrap();

    let left = history(&bob, 30, "bob", "VoluntaryDisconnect");
    s.remove_member(&left, &[]).await.unwrap();

    assert_eq!(
        ids(&s.room_members("r1").await.unwrap(), |m| &m.client_id),
        ["alice"]
    );
    assert_eq!(
        ids(&s.room_webrtc_clients("r1").await.unwrap(), |m| &m
            .client_id),
        ["alice"]
    );
    assert_eq!(s.member_history("r1").await.unwrap(), vec![left]);
    // The room goes on.
    assert!(s.get_room("r1").await.unwrap().is_some());
    assert!(s.terminated_rooms("r1").await.unwrap().is_empty());
    // The member may come back.
    s.add_member(&member("bob", "r1", "receiver", 40), &[])
        .await
        .unwrap();
    assert_eq!(s.room_members("r1").await.unwrap().len(), 2);
}

pub async fn terminate_room_empties_active_tables(s: &Arc<dyn Store>) {
    let r1 = room("r1", 0, Some("alice"));
    let alice = member("alice", "r1", "sender", 0);
    s.create_room(&r1, &created(&r1, "alice"), &alice, &[])
        .await
        .unwrap();
    let bob = member("bob", "r1", "receiver", 1);
    s.add_member(&bob, &[]).await.unwrap();
    let carol = member("carol", "r1", "receiver", 2);
    s.add_member(&carol, &[]).await.unwrap();
    let carol_left = history(&carol, 10, "carol", "Disconnected");
    s.remove_member(&carol_left, &[]).await.unwrap();

    // Another room must not be touched.
    let r2 = room("r2", 3, Some("zed"));
    let zed = member("zed", "r2", "sender", 3);
    s.create_room(&r2, &created(&r2, "zed"), &zed, &[])
        .await
        .unwrap();

    let record = terminated(&r1, 20, "alice");
    let finals = [
        history(&alice, 20, "alice", "Disconnected"),
        history(&bob, 20, "alice", "Kicked"),
    ];
    s.terminate_room(&record, &finals, &[]).await.unwrap();

    assert_eq!(s.get_room("r1").await.unwrap(), None);
    assert!(s.room_members("r1").await.unwrap().is_empty());
    assert!(s.room_webrtc_clients("r1").await.unwrap().is_empty());
    assert_eq!(s.terminated_rooms("r1").await.unwrap(), vec![record]);
    let mut expected = vec![carol_left];
    expected.extend(finals);
    assert_eq!(s.member_history("r1").await.unwrap(), expected);
    // History of the creation stays.
    assert_eq!(s.room_created("r1").await.unwrap().len(), 1);

    assert_eq!(s.active_rooms().await.unwrap(), vec![r2.clone()]);
    assert_eq!(
        s.room_members("r2").await.unwrap(),
        vec![zed.client_in_room]
    );
    assert_eq!(s.room_webrtc_clients("r2").await.unwrap().len(), 1);
    assert!(s.member_history("r2").await.unwrap().is_empty());
}

pub async fn room_id_reusable_after_termination(s: &Arc<dyn Store>) {
    let first = room("r1", 0, Some("alice"));
    let first_created = created(&first, "alice");
    let alice = member("alice", "r1", "sender", 0);
    s.create_room(&first, &first_created, &alice, &[])
        .await
        .unwrap();
    let first_end = terminated(&first, 10, "alice");
    s.terminate_room(
        &first_end,
        &[history(&alice, 10, "alice", "Disconnected")],
        &[],
    )
    .await
    .unwrap();

    let second = room("r1", 20, Some("bob"));
    let second_created = created(&second, "bob");
    let bob = member("bob", "r1", "sender", 20);
    s.create_room(&second, &second_created, &bob, &[])
        .await
        .unwrap();

    assert_eq!(s.get_room("r1").await.unwrap(), Some(second.clone()));
    assert_eq!(
        s.room_created("r1").await.unwrap(),
        vec![first_created, second_created]
    );
    assert_ne!(first.id, second.id);
    assert_eq!(
        s.room_members("r1").await.unwrap(),
        vec![bob.client_in_room.clone()]
    );

    // And terminated again.
    let second_end = terminated(&second, 30, "bob");
    s.terminate_room(
        &second_end,
        &[history(&bob, 30, "bob", "Disconnected")],
        &[],
    )
    .await
    .unwrap();
    assert_eq!(
        s.terminated_rooms("r1").await.unwrap(),
        vec![first_end, second_end]
    );
    assert_eq!(
        ids(&s.member_history("r1").await.unwrap(), |m| &m.client_id),
        ["alice", "bob"]
    );
    assert!(s.active_rooms().await.unwrap().is_empty());
}

pub async fn active_rooms_oldest_first(s: &Arc<dyn Store>) {
    for (name, secs) in [("young", 30), ("old", 10), ("middle", 20)] {
        let r = room(name, secs, Some("x"));
        s.create_room(
            &r,
            &created(&r, "x"),
            &member("x", name, "sender", secs),
            &[],
        )
        .await
        .unwrap();
    }
    assert_eq!(
        ids(&s.active_rooms().await.unwrap(), |r| &r.room_id),
        ["old", "middle", "young"]
    );
}

pub async fn export_pages_and_imports_history(s: &Arc<dyn Store>) {
    assert!(s.export_clients(None, 10).await.unwrap().is_empty());
    assert!(s.history_room_ids(None, 10).await.unwrap().is_empty());
    for id in ["carol", "alice", "dave", "bob"] {
        s.register_client(&client(id), &[]).await.unwrap();
    }
    let page = s.export_clients(None, 3).await.unwrap();
    assert_eq!(ids(&page, |c| &c.client_id), ["alice", "bob", "carol"]);
    assert_eq!(page[0], s.get_client("alice").await.unwrap().unwrap());
    let page = s.export_clients(Some("carol"), 3).await.unwrap();
    assert_eq!(ids(&page, |c| &c.client_id), ["dave"]);
    assert!(s.export_clients(Some("dave"), 3).await.unwrap().is_empty());

    // r1 twice (created, terminated, created again), r2 once: two distinct ids.
    for (name, secs) in [("r1", 0), ("r2", 5)] {
        let r = room(name, secs, Some("alice"));
        let m = member("alice", name, "sender", secs);
        s.create_room(&r, &created(&r, "alice"), &m, &[])
            .await
            .unwrap();
        if name == "r1" {
            s.terminate_room(
                &terminated(&r, 2, "alice"),
                &[history(&m, 2, "alice", "Disconnected")],
                &[],
            )
            .await
            .unwrap();
            let again = room(name, 3, Some("bob"));
            s.create_room(
                &again,
                &created(&again, "bob"),
                &member("bob", name, "sender", 3),
                &[],
            )
            .await
            .unwrap();
        }
    }
    assert_eq!(s.history_room_ids(None, 10).await.unwrap(), ["r1", "r2"]);
    assert_eq!(s.history_room_ids(None, 1).await.unwrap(), ["r1"]);
    assert_eq!(s.history_room_ids(Some("r1"), 1).await.unwrap(), ["r2"]);
    assert!(s.history_room_ids(Some("r2"), 1).await.unwrap().is_empty());

    // A creation record copied from another store, for a room long gone.
    let gone = room("gone", -100, Some("zed"));
    let record = created(&gone, "zed");
    s.import_room_created(&record).await.unwrap();
    assert_eq!(s.room_created("gone").await.unwrap(), vec![record.clone()]);
    assert_eq!(s.get_room("gone").await.unwrap(), None);
    match s.import_room_created(&record).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.room_created("gone").await.unwrap().len(), 1);
    assert_eq!(
        s.history_room_ids(None, 10).await.unwrap(),
        ["gone", "r1", "r2"]
    );
    assert_eq!(s.active_rooms().await.unwrap().len(), 2);
}

pub async fn close_makes_store_unavailable(s: &Arc<dyn Store>) {
    s.register_client(&client("abc"), &[]).await.unwrap();
    s.close().await;
    assert!(matches!(s.health().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(
        s.get_client("abc").await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        s.register_client(&client("def"), &[]).await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(matches!(
        s.active_rooms().await,
        Err(StoreError::Unavailable(_))
    ));
}

/// Fifty registrations at once all commit.
pub async fn concurrent_registrations_all_succeed(s: &Arc<dyn Store>) {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.register_client(&client(&format!("client-{i}")), &[])
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.count_clients().await.unwrap(), 50);
}

/// Twenty registrations of one client id at once: exactly one wins, the others get a
/// conflict.
pub async fn concurrent_duplicate_registration_one_wins(s: &Arc<dyn Store>) {
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.register_client(&client("same"), &[]).await })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(StoreError::Conflict(msg)) => {
                assert_eq!(msg, "client 'same' is already registered");
                conflicts += 1;
            }
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 19));
    assert_eq!(s.count_clients().await.unwrap(), 1);
}

/// Ten rooms filled at once, each by its own task.
pub async fn concurrent_rooms_and_members(s: &Arc<dyn Store>) {
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let name = format!("room-{i}");
                let r = room(&name, i, Some("host"));
                s.create_room(
                    &r,
                    &created(&r, "host"),
                    &member("host", &name, "sender", i),
                    &[],
                )
                .await?;
                for j in 0..5 {
                    s.add_member(
                        &member(&format!("guest-{j}"), &name, "receiver", i + j + 1),
                        &[],
                    )
                    .await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(s.active_rooms().await.unwrap().len(), 10);
    assert_eq!(s.room_members("room-3").await.unwrap().len(), 6);
}

/// Two creators of one room id at once: exactly one wins, the other gets a conflict,
/// and the room holds the winner alone.
pub async fn concurrent_creators_of_one_room_one_wins(s: &Arc<dyn Store>) {
    let tasks: Vec<_> = ["alice", "bob"]
        .into_iter()
        .enumerate()
        .map(|(i, who)| {
            let s = s.clone();
            tokio::spawn(async move {
                let r = room("contested", i as i64, Some(who));
                s.create_room(
                    &r,
                    &created(&r, who),
                    &member(who, "contested", "sender", 0),
                    &[],
                )
                .await
                .map(|()| who)
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(who) => winners.push(who),
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert_eq!((winners.len(), conflicts), (1, 1), "one creator wins");
    let members = s.room_members("contested").await.unwrap();
    assert_eq!(
        ids(&members, |m| &m.client_id),
        [winners[0]],
        "the room holds the winner alone"
    );
    assert_eq!(s.active_rooms().await.unwrap().len(), 1);
}

/// Each lifecycle write records its events in the same unit of work; a room's events are
/// numbered 1, 2, ... across the room id's uses; the outbox gives them back in order until
/// they are marked delivered; a room's events are read back from any `seq`.
pub async fn events_are_recorded_with_their_writes(s: &Arc<dyn Store>) {
    let registered = event(Kind::ClientRegistered, "alice", None);
    s.register_client(&client("alice"), std::slice::from_ref(&registered))
        .await
        .unwrap();
    let r = room("r1", 0, Some("alice"));
    let opened = [
        event(Kind::RoomCreated, "alice", Some("r1")),
        event(Kind::MemberJoined, "alice", Some("r1")),
    ];
    let alice = member("alice", "r1", "sender", 0);
    s.create_room(&r, &created(&r, "alice"), &alice, &opened)
        .await
        .unwrap();
    let joined = event(Kind::MemberJoined, "bob", Some("r1"));
    let bob = member("bob", "r1", "receiver", 1);
    s.add_member(&bob, std::slice::from_ref(&joined))
        .await
        .unwrap();
    let session = event(Kind::SessionConnected, "carol", None);
    s.append_events(std::slice::from_ref(&session))
        .await
        .unwrap();
    let left = event(Kind::MemberLeft, "bob", Some("r1"));
    s.remove_member(
        &history(&bob, 2, "bob", "Left"),
        std::slice::from_ref(&left),
    )
    .await
    .unwrap();
    let ended = [
        event(Kind::MemberLeft, "alice", Some("r1")),
        event(Kind::RoomTerminated, "alice", Some("r1")),
    ];
    s.terminate_room(
        &terminated(&r, 3, "alice"),
        &[history(&alice, 3, "alice", "Left")],
        &ended,
    )
    .await
    .unwrap();
    let unregistered = event(Kind::ClientUnregistered, "alice", None);
    assert!(
        s.delete_client("alice", std::slice::from_ref(&unregistered))
            .await
            .unwrap()
    );
    let want = vec![
        numbered(&registered, None),
        numbered(&opened[0], Some(1)),
        numbered(&opened[1], Some(2)),
        numbered(&joined, Some(3)),
        numbered(&session, None),
        numbered(&left, Some(4)),
        numbered(&ended[0], Some(5)),
        numbered(&ended[1], Some(6)),
        numbered(&unregistered, None),
    ];
    assert_eq!(
        s.pending_events(100).await.unwrap(),
        want,
        "intact, in order"
    );
    assert_eq!(s.pending_events(2).await.unwrap(), want[..2]);
    s.mark_delivered(&[want[0].id, want[2].id, Uuid::new_v4()])
        .await
        .unwrap();
    let pending = s.pending_events(100).await.unwrap();
    assert_eq!(
        pending.iter().map(|e| e.id).collect::<Vec<_>>(),
        want.iter()
            .filter(|e| e.id != want[0].id && e.id != want[2].id)
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        "delivered events leave the outbox"
    );
    // A room's events, delivered or not, from a seq on.
    assert_eq!(
        s.room_events("r1", 0, 100).await.unwrap(),
        want[1..4]
            .iter()
            .chain(&want[5..8])
            .cloned()
            .collect::<Vec<_>>()
    );
    assert_eq!(s.room_events("r1", 4, 100).await.unwrap(), want[6..8]);
    assert_eq!(s.room_events("r1", 2, 1).await.unwrap(), want[3..4]);
    assert!(s.room_events("elsewhere", 0, 100).await.unwrap().is_empty());
    // The id used again: its numbering goes on.
    let again = room("r1", 10, Some("bob"));
    let reopened = event(Kind::RoomCreated, "bob", Some("r1"));
    s.create_room(
        &again,
        &created(&again, "bob"),
        &member("bob", "r1", "sender", 10),
        std::slice::from_ref(&reopened),
    )
    .await
    .unwrap();
    assert_eq!(
        s.room_events("r1", 6, 100).await.unwrap(),
        [numbered(&reopened, Some(7))]
    );
}

/// A write that fails records none of its events, and takes no number.
pub async fn failed_writes_record_no_events(s: &Arc<dyn Store>) {
    let r = room("r1", 0, Some("alice"));
    let first = event(Kind::RoomCreated, "alice", Some("r1"));
    s.create_room(
        &r,
        &created(&r, "alice"),
        &member("alice", "r1", "sender", 0),
        std::slice::from_ref(&first),
    )
    .await
    .unwrap();
    let again = room("r1", 5, Some("bob"));
    let refused = event(Kind::RoomCreated, "bob", Some("r1"));
    assert!(matches!(
        s.create_room(
            &again,
            &created(&again, "bob"),
            &member("bob", "r1", "sender", 5),
            std::slice::from_ref(&refused),
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    let orphan = event(Kind::MemberJoined, "carol", Some("nowhere"));
    assert!(
        s.add_member(
            &member("carol", "nowhere", "receiver", 1),
            std::slice::from_ref(&orphan)
        )
        .await
        .is_err()
    );
    s.register_client(&client("dave"), &[]).await.unwrap();
    let twice = event(Kind::ClientRegistered, "dave", None);
    assert!(
        s.register_client(&client("dave"), std::slice::from_ref(&twice))
            .await
            .is_err()
    );
    let gone = event(Kind::ClientUnregistered, "erin", None);
    assert!(
        !s.delete_client("erin", std::slice::from_ref(&gone))
            .await
            .unwrap()
    );
    let next = event(Kind::MemberJoined, "bob", Some("r1"));
    s.add_member(
        &member("bob", "r1", "receiver", 2),
        std::slice::from_ref(&next),
    )
    .await
    .unwrap();
    assert_eq!(
        s.pending_events(100).await.unwrap(),
        [numbered(&first, Some(1)), numbered(&next, Some(2))],
        "only the committed writes' events, numbered without a gap"
    );
}

/// Members joining one room at once: their events are numbered 2..=21, each once.
pub async fn concurrent_room_events_are_numbered_without_gaps(s: &Arc<dyn Store>) {
    let r = room("busy", 0, Some("host"));
    s.create_room(
        &r,
        &created(&r, "host"),
        &member("host", "busy", "sender", 0),
        &[event(Kind::RoomCreated, "host", Some("busy"))],
    )
    .await
    .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let who = format!("guest-{i}");
                s.add_member(
                    &member(&who, "busy", "receiver", i + 1),
                    &[event(Kind::MemberJoined, &who, Some("busy"))],
                )
                .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut seqs: Vec<u64> = s
        .room_events("busy", 0, 100)
        .await
        .unwrap()
        .iter()
        .filter_map(|e| e.seq)
        .collect();
    let in_order = seqs.clone();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=21).collect::<Vec<_>>());
    assert_eq!(in_order, seqs, "read back in seq order");
}

/// Pruning deletes delivered events older than the cutoff, and nothing else.
pub async fn delivered_events_are_pruned_by_age(s: &Arc<dyn Store>) {
    let old = |kind, client: &str| Event {
        at: chrono::Utc::now() - chrono::Duration::days(10),
        ..event(kind, client, Some("r1"))
    };
    let (delivered_old, pending_old) = (old(Kind::MemberJoined, "a"), old(Kind::MemberJoined, "b"));
    let recent = event(Kind::MemberLeft, "a", Some("r1"));
    s.append_events(&[delivered_old.clone(), pending_old.clone(), recent.clone()])
        .await
        .unwrap();
    s.mark_delivered(&[delivered_old.id, recent.id])
        .await
        .unwrap();
    let cutoff = chrono::Utc::now() - chrono::Duration::days(1);
    assert_eq!(s.prune_events(cutoff).await.unwrap(), 1);
    let left: Vec<Uuid> = s
        .room_events("r1", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(
        left,
        [pending_old.id, recent.id],
        "pending and recent events stay"
    );
    assert_eq!(s.prune_events(cutoff).await.unwrap(), 0);
    assert_eq!(
        s.pending_events(10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [pending_old.id]
    );
}
