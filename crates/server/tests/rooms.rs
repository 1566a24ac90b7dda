//! Rooms and signals over real sockets: two and more clients creating, joining and
//! leaving rooms, exchanging offers, answers and candidates, and every error a room or a
//! signal can produce.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestServer, WAIT, token};
use protocol::{
    MessageType, PayloadType,
    payload::{
        ErrorPayload, PeerJoined, PeerLeft, RoomClosed, RoomCreateRequest, RoomJoinRequest,
        SignalPayload,
    },
};
use serde_json::{Value, json};
use signal_client::{Client, ClientError, decode, protocol};
use uuid::Uuid;

async fn pair(s: &TestServer, room: &str) -> (Client, Client) {
    let mut a = s.registered("alice").await;
    let b = s.registered("bob").await;
    a.create_room("alice-token", Some(room), Some("v=0 offer-from-alice"))
        .await
        .unwrap();
    b.join_room("bob-token", room).await.unwrap();
    a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
    (a, b)
}

async fn next_error(c: &mut Client) -> (Uuid, ErrorPayload) {
    let f = c.expect_event(MessageType::Error, WAIT).await.unwrap();
    (f.id, decode(&f).unwrap())
}

#[tokio::test]
async fn two_clients_exchange_offer_answer_and_candidates() {
    let s = TestServer::start().await;
    let mut alice = s.registered("alice").await;
    let mut bob = s.registered("bob").await;

    let created = alice
        .create_room(
            "alice-token",
            Some("meeting-room-123"),
            Some("v=0 alice-offer"),
        )
        .await
        .unwrap();
    assert_eq!(created.status, 200);
    assert_eq!(created.message, "Room created successfully");
    assert_eq!(created.room_id, "meeting-room-123");
    assert_eq!(created.connection_info.role, "sender");
    assert_eq!(created.connection_info.room_id, "meeting-room-123");
    assert_eq!(created.connection_info.metadata.client_id, "alice");

    let joined = bob
        .join_room("bob-token", "meeting-room-123")
        .await
        .unwrap();
    assert_eq!(joined.message, "Successfully joined room");
    assert_eq!(
        joined.offer_sdp.as_deref(),
        Some("v=0 alice-offer"),
        "the stored offer is handed to joiners"
    );
    assert_eq!(joined.participants.len(), 1);
    assert_eq!(joined.participants[0].client_id, "alice");
    assert_eq!(joined.participants[0].role, "sender");
    assert_eq!(joined.connection_info.role, "receiver");

    let f = alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    let pj: PeerJoined = decode(&f).unwrap();
    assert_eq!(
        (pj.room_id.as_str(), pj.client_id.as_str(), pj.role.as_str()),
        ("meeting-room-123", "bob", "receiver")
    );
    assert_eq!(pj.metadata["platform"], "rust");

    // Offer, with a spoofed sender and a field the server does not know.
    let offer = SignalPayload {
        target_client_id: Some("bob".into()),
        room_id: Some("meeting-room-123".into()),
        sdp: Some("v=0 renegotiated".into()),
        from_client_id: Some("mallory".into()),
        extra: serde_json::from_value(json!({"ice_restart": true})).unwrap(),
        ..Default::default()
    };
    let id = alice
        .signal(MessageType::SignalOffer, &offer)
        .await
        .unwrap();
    let f = bob
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(f.id, id, "a relayed signal keeps the sender's UUID");
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(
        got.from_client_id.as_deref(),
        Some("alice"),
        "the server stamps the real sender"
    );
    assert_eq!(got.sdp.as_deref(), Some("v=0 renegotiated"));
    assert_eq!(got.target_client_id.as_deref(), Some("bob"));
    assert_eq!(got.extra.get("ice_restart"), Some(&Value::Bool(true)));

    let id = bob
        .send_answer("alice", Some("meeting-room-123"), "v=0 bob-answer")
        .await
        .unwrap();
    let f = alice
        .expect_event(MessageType::SignalAnswer, WAIT)
        .await
        .unwrap();
    assert_eq!(f.id, id);
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(
        (got.from_client_id.as_deref(), got.sdp.as_deref()),
        (Some("bob"), Some("v=0 bob-answer"))
    );

    let cand = "candidate:1 1 UDP 2122252543 127.0.0.1 50000 typ host";
    let id = alice
        .send_candidate("bob", None, cand, Some("0"), Some(0))
        .await
        .unwrap();
    let f = bob
        .expect_event(MessageType::SignalIceCandidate, WAIT)
        .await
        .unwrap();
    assert_eq!(f.id, id);
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(got.candidate, Some(Value::from(cand)));
    assert_eq!(
        (got.sdp_mid.as_deref(), got.sdp_m_line_index),
        (Some("0"), Some(0))
    );
    assert_eq!(got.from_client_id.as_deref(), Some("alice"));
    let id = bob
        .send_candidate("alice", Some("meeting-room-123"), cand, Some("1"), Some(1))
        .await
        .unwrap();
    let f = alice
        .expect_event(MessageType::SignalIceCandidate, WAIT)
        .await
        .unwrap();
    assert_eq!(f.id, id);
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(
        (got.sdp_mid.as_deref(), got.sdp_m_line_index),
        (Some("1"), Some(1))
    );
    assert_eq!(got.from_client_id.as_deref(), Some("bob"));
}

#[tokio::test]
async fn room_requests_need_a_registered_client_and_valid_fields() {
    let s = TestServer::start().await;
    let unregistered = s.connected("carol").await;
    let e = unregistered
        .create_room("carol-token", Some("x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(401));
    assert!(e.to_string().contains("Client not registered"), "{e}");

    let a = s.registered("alice").await;
    let e = a
        .create_room("not-alice-token", Some("x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(401), "the payload's auth_token is checked");

    let bad_id = a
        .create_room("alice-token", Some("room/with/slashes"), None)
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Some(400));
    assert!(bad_id.to_string().contains("'room_id'"));

    let mut req = RoomCreateRequest {
        version: "1.0.0".into(),
        client_id: "alice".into(),
        auth_token: "alice-token".into(),
        room_id: Some("r".into()),
        role: Some("director".into()),
        offer_sdp: None,
        capabilities: None,
        metadata: None,
    };
    let e = a.create_room_with(req.clone()).await.unwrap_err();
    assert!(e.to_string().contains("Invalid role 'director'"), "{e}");
    req.role = None;
    req.metadata = Some(json!({"max_participants": "ten"}));
    let e = a.create_room_with(req.clone()).await.unwrap_err();
    assert!(e.to_string().contains("max_participants"), "{e}");
    req.metadata = None;
    req.client_id = "bob".into();
    assert_eq!(a.create_room_with(req).await.unwrap_err().code(), Some(403));

    let generated = a.create_room("alice-token", None, None).await.unwrap();
    assert_eq!(
        generated.room_id.len(),
        32,
        "a room id is generated when none is given"
    );
    a.create_room("alice-token", Some("taken"), None)
        .await
        .unwrap();
    let b = s.registered("bob").await;
    let e = b
        .create_room("bob-token", Some("taken"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(409));
    assert!(e.to_string().contains("Room 'taken' already exists"));
}

#[tokio::test]
async fn join_errors_not_found_twice_full_and_second_sender() {
    let s = TestServer::start().await;
    let a = s.registered("alice").await;
    let b = s.registered("bob").await;
    let c = s.registered("carol").await;
    let e = b.join_room("bob-token", "nowhere").await.unwrap_err();
    assert_eq!(e.code(), Some(404));
    assert!(e.to_string().contains("Room 'nowhere' not found"));

    a.create_room_with(RoomCreateRequest {
        version: "1.0.0".into(),
        client_id: "alice".into(),
        auth_token: "alice-token".into(),
        room_id: Some("small".into()),
        role: None,
        offer_sdp: None,
        capabilities: None,
        metadata: Some(json!({"max_participants": 2})),
    })
    .await
    .unwrap();
    let sender_join = RoomJoinRequest {
        version: "1.0.0".into(),
        client_id: "bob".into(),
        auth_token: "bob-token".into(),
        room_id: "small".into(),
        role: Some("sender".into()),
        offer_sdp: None,
        capabilities: None,
        metadata: None,
    };
    let e = b.join_room_with(sender_join).await.unwrap_err();
    assert_eq!(e.code(), Some(400));
    assert!(e.to_string().contains("already has a sender"), "{e}");

    b.join_room("bob-token", "small").await.unwrap();
    let e = b.join_room("bob-token", "small").await.unwrap_err();
    assert_eq!(e.code(), Some(409));
    assert!(e.to_string().contains("already in room"));
    let e = c.join_room("carol-token", "small").await.unwrap_err();
    assert_eq!(e.code(), Some(403));
    assert!(e.to_string().contains("is full (2 participants)"), "{e}");
}

#[tokio::test]
async fn default_room_capacity_comes_from_config() {
    let s = TestServer::start_with(|c| c.rooms.max_participants = 2).await;
    let a = s.registered("alice").await;
    let b = s.registered("bob").await;
    let c = s.registered("carol").await;
    a.create_room("alice-token", Some("r"), None).await.unwrap();
    b.join_room("bob-token", "r").await.unwrap();
    assert_eq!(
        c.join_room("carol-token", "r").await.unwrap_err().code(),
        Some(403)
    );
}

#[tokio::test]
async fn receivers_leaving_are_announced_and_the_sender_leaving_closes_the_room() {
    let s = TestServer::start().await;
    let (mut a, b) = pair(&s, "lifecycle").await;
    let mut c = s.registered("carol").await;
    c.join_room("carol-token", "lifecycle").await.unwrap();
    a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();

    let ack = b.leave_room("bob-token", "lifecycle").await.unwrap();
    assert_eq!(
        (ack.room_id.as_str(), ack.client_id.as_str()),
        ("lifecycle", "bob")
    );
    for m in [&mut a, &mut c] {
        let f = m.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
        let pl: PeerLeft = decode(&f).unwrap();
        assert_eq!((pl.client_id.as_str(), pl.reason.as_str()), ("bob", "done"));
    }
    let e = b.leave_room("bob-token", "lifecycle").await.unwrap_err();
    assert_eq!(e.code(), Some(403));
    assert!(e.to_string().contains("is not in room"));

    a.leave_room("alice-token", "lifecycle").await.unwrap();
    let f = c.expect_event(MessageType::RoomClosed, WAIT).await.unwrap();
    let rc: RoomClosed = decode(&f).unwrap();
    assert_eq!(rc.room_id, "lifecycle");
    assert!(rc.reason.contains("sender 'alice' left"), "{}", rc.reason);
    assert_eq!(
        c.join_room("carol-token", "lifecycle")
            .await
            .unwrap_err()
            .code(),
        Some(404)
    );
    assert_eq!(
        c.leave_room("carol-token", "lifecycle")
            .await
            .unwrap_err()
            .code(),
        Some(404)
    );
    // The id is free again.
    b.create_room("bob-token", Some("lifecycle"), None)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_last_member_leaving_terminates_a_room_without_a_sender() {
    let s = TestServer::start().await;
    let a = s.registered("alice").await;
    a.create_room_with(RoomCreateRequest {
        version: "1.0.0".into(),
        client_id: "alice".into(),
        auth_token: "alice-token".into(),
        room_id: Some("recv-only".into()),
        role: Some("receiver".into()),
        offer_sdp: Some("ignored: receivers offer nothing to joiners".into()),
        capabilities: None,
        metadata: None,
    })
    .await
    .unwrap();
    let b = s.registered("bob").await;
    let joined = b.join_room("bob-token", "recv-only").await.unwrap();
    assert_eq!(joined.offer_sdp, None);
    a.leave_room("alice-token", "recv-only").await.unwrap();
    b.leave_room("bob-token", "recv-only").await.unwrap();
    assert!(s.running().hub().room_info("recv-only").is_none());
}

#[tokio::test]
async fn a_dropped_socket_leaves_its_rooms() {
    let s = TestServer::start().await;
    let (mut a, b) = pair(&s, "drop").await;
    drop(b);
    let f = a.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
    let pl: PeerLeft = decode(&f).unwrap();
    assert_eq!(
        (pl.client_id.as_str(), pl.reason.as_str()),
        ("bob", "disconnected")
    );
}

#[tokio::test]
async fn unregistering_leaves_rooms() {
    let s = TestServer::start().await;
    let (mut a, b) = pair(&s, "unreg").await;
    b.unregister("bob-token").await.unwrap();
    let f = a.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
    let pl: PeerLeft = decode(&f).unwrap();
    assert_eq!(pl.reason, "unregistered");
}

#[tokio::test]
async fn signal_errors_name_what_is_wrong() {
    let s = TestServer::start().await;
    let (mut a, _b) = pair(&s, "sig").await;
    let _outsider = s.registered("carol").await;

    let id = a
        .signal(
            MessageType::SignalOffer,
            &SignalPayload {
                sdp: Some("v=0".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (eid, e) = next_error(&mut a).await;
    assert_eq!((eid, e.error_code), (id, 400));
    assert!(e.error_message.contains("target_client_id"));
    assert_eq!(e.details["request_type"], "SIGNAL_OFFER");

    a.send_offer("alice", None, "v=0").await.unwrap();
    assert!(
        next_error(&mut a)
            .await
            .1
            .error_message
            .contains("Cannot signal yourself")
    );

    let id = a.send_offer("nobody", None, "v=0").await.unwrap();
    let (eid, e) = next_error(&mut a).await;
    assert_eq!((eid, e.error_code), (id, 404));
    assert_eq!(e.details["target_client_id"], "nobody");

    a.send_offer("carol", None, "v=0").await.unwrap();
    let (_, e) = next_error(&mut a).await;
    assert_eq!(e.error_code, 403);
    assert!(
        e.error_message.contains("share no room"),
        "{}",
        e.error_message
    );

    a.send_offer("carol", Some("sig"), "v=0").await.unwrap();
    let (_, e) = next_error(&mut a).await;
    assert_eq!(e.error_code, 404);
    assert!(
        e.error_message.contains("is not in room 'sig'"),
        "{}",
        e.error_message
    );

    a.send_offer("bob", Some("elsewhere"), "v=0").await.unwrap();
    assert_eq!(next_error(&mut a).await.1.error_code, 404);

    let mut carol = s.registered("dave").await;
    carol
        .create_room("dave-token", Some("other"), None)
        .await
        .unwrap();
    carol.send_offer("bob", Some("sig"), "v=0").await.unwrap();
    let (_, e) = next_error(&mut carol).await;
    assert_eq!(
        e.error_code, 403,
        "a non-member cannot signal through a room"
    );

    let huge = "x".repeat(65_470);
    a.send_offer("bob", Some("sig"), &huge).await.unwrap();
    let (_, e) = next_error(&mut a).await;
    assert_eq!(e.error_code, 413);
}

#[tokio::test]
async fn direct_routing_when_shared_rooms_are_not_required() {
    let s = TestServer::start_with(|c| c.routing.require_shared_room = false).await;
    let a = s.connected("alice").await;
    let mut b = s.connected("bob").await;
    let id = a.send_offer("bob", None, "v=0 direct").await.unwrap();
    let f = b
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(f.id, id);
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(got.from_client_id.as_deref(), Some("alice"));
}

#[tokio::test]
async fn json_and_cbor_members_each_get_events_in_their_own_encoding() {
    let s = TestServer::start().await;
    let mut a = s.registered("alice").await;
    let mut b = s.client().await;
    b.use_cbor();
    b.authenticate("bob", "bob-token").await.unwrap();
    b.register("bob-token").await.unwrap();
    let c = s.registered("carol").await;
    a.create_room("alice-token", Some("mixed"), None)
        .await
        .unwrap();
    b.join_room("bob-token", "mixed").await.unwrap();
    c.join_room("carol-token", "mixed").await.unwrap();
    let f = a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
    assert_eq!(f.payload_type, PayloadType::Json);
    let f = b.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
    assert_eq!(f.payload_type, PayloadType::Cbor);
    let pj: PeerJoined = decode(&f).unwrap();
    assert_eq!(pj.client_id, "carol");
    let _ = a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();

    let id = b
        .send_offer("alice", Some("mixed"), "v=0 from-cbor")
        .await
        .unwrap();
    let f = a
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(
        (f.id, f.payload_type),
        (id, PayloadType::Json),
        "CBOR in, JSON out to a JSON peer"
    );
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(got.sdp.as_deref(), Some("v=0 from-cbor"));
    c.send_candidate("bob", Some("mixed"), "candidate:x", None, None)
        .await
        .unwrap();
    let f = b
        .expect_event(MessageType::SignalIceCandidate, WAIT)
        .await
        .unwrap();
    assert_eq!(f.payload_type, PayloadType::Cbor);
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_others_carry_on() {
    cut_off_when_not_reading(|c| c.server.outbound_queue = 8).await;
}

#[tokio::test]
async fn a_queue_is_bounded_in_bytes_as_well_as_messages() {
    // 65,536 queued 60 KB offers would be 3.9 GB: the byte bound cuts Bob off first.
    cut_off_when_not_reading(|c| {
        c.server.outbound_queue = 65_536;
        c.server.outbound_queue_bytes = 256 * 1024;
    })
    .await;
}

async fn cut_off_when_not_reading(f: impl FnOnce(&mut signal_server::config::Config)) {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;

    let s = TestServer::start_with(|c| {
        f(c);
        c.security.rate_limit_enabled = false;
    })
    .await;
    let mut a = s.registered("alice").await;
    let mut c = s.registered("carol").await;
    a.create_room("alice-token", Some("flood"), None)
        .await
        .unwrap();
    c.join_room("carol-token", "flood").await.unwrap();
    a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();

    // Bob joins with a raw socket and then never reads again.
    let (mut raw, _) = tokio_tungstenite::connect_async(&s.url).await.unwrap();
    let send = |t: MessageType, v: Value| {
        let payload = serde_json::to_vec(&v).unwrap();
        protocol::frame::encode_parts(t, Uuid::new_v4(), PayloadType::Json, &payload).unwrap()
    };
    raw.send(Message::Binary(send(
        MessageType::Connect,
        json!({"client_id":"bob","auth_token":"bob-token"}),
    )))
    .await
    .unwrap();
    raw.send(Message::Binary(send(
        MessageType::Register,
        json!({"version":"1.0.0","client_id":"bob","auth_token":"bob-token"}),
    )))
    .await
    .unwrap();
    raw.send(Message::Binary(send(
        MessageType::RoomJoin,
        json!({"version":"1.0.0","client_id":"bob","auth_token":"bob-token","room_id":"flood"}),
    )))
    .await
    .unwrap();
    let f = a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
    assert_eq!(decode::<PeerJoined>(&f).unwrap().client_id, "bob");

    // Alice floods Bob with 60 KB offers until the server gives up on him.
    let big = "x".repeat(60_000);
    let mut left = None;
    for _ in 0..2000 {
        a.send_offer("bob", Some("flood"), &big).await.unwrap();
        if let Ok(f) = a.next_event_within(Duration::from_millis(1)).await
            && f.msg_type == MessageType::PeerLeft
        {
            left = Some(f);
            break;
        }
    }
    let left = match left {
        Some(f) => f,
        None => a
            .expect_event(MessageType::PeerLeft, Duration::from_secs(10))
            .await
            .unwrap(),
    };
    let pl: PeerLeft = decode(&left).unwrap();
    assert_eq!(
        (pl.client_id.as_str(), pl.reason.as_str()),
        ("bob", "disconnected")
    );
    // Everyone else is unaffected.
    let id = a
        .send_candidate("carol", Some("flood"), "candidate:ok", None, None)
        .await
        .unwrap();
    let f = c
        .expect_event(MessageType::SignalIceCandidate, WAIT)
        .await
        .unwrap();
    assert_eq!(f.id, id);
    a.heartbeat().await.unwrap();
    drop(raw);
}

#[tokio::test]
async fn many_members_all_see_each_join() {
    let s = TestServer::start_with(|c| {
        c.auth.api_keys = (0..12).map(|i| format!("peer{i}:peer{i}-token")).collect();
    })
    .await;
    let mut members: Vec<Client> = Vec::new();
    for i in 0..12 {
        let id = format!("peer{i}");
        let mut c = s.client().await;
        c.authenticate(&id, &format!("{id}-token")).await.unwrap();
        c.register(&format!("{id}-token")).await.unwrap();
        if i == 0 {
            c.create_room("peer0-token", Some("big"), None)
                .await
                .unwrap();
        } else {
            let ack = c.join_room(&format!("{id}-token"), "big").await.unwrap();
            assert_eq!(ack.participants.len(), i);
        }
        members.push(c);
    }
    for (i, m) in members.iter_mut().enumerate() {
        for _ in i + 1..12 {
            m.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
        }
        assert!(
            matches!(
                m.next_event_within(Duration::from_millis(50)).await,
                Err(ClientError::Timeout(_))
            ),
            "nobody is told about their own join"
        );
    }
}

#[tokio::test]
async fn a_member_list_too_long_for_one_frame_is_cut_not_refused() {
    let s = TestServer::start_with(|c| {
        c.auth.api_keys = (0..30).map(|i| format!("p{i}:p{i}-token")).collect();
    })
    .await;
    let big = "m".repeat(3000);
    let mut last = None;
    let mut clients = Vec::new();
    for i in 0..30 {
        let id = format!("p{i}");
        let tok = format!("{id}-token");
        let mut c = s.client().await;
        c.authenticate(&id, &tok).await.unwrap();
        c.register(&tok).await.unwrap();
        if i == 0 {
            c.create_room_with(RoomCreateRequest {
                version: "1.0.0".into(),
                client_id: id.clone(),
                auth_token: tok.clone(),
                room_id: Some("crowd".into()),
                role: None,
                offer_sdp: None,
                capabilities: None,
                metadata: Some(json!({"max_participants": 40})),
            })
            .await
            .unwrap();
        } else {
            let ack = c
                .join_room_with(RoomJoinRequest {
                    version: "1.0.0".into(),
                    client_id: id.clone(),
                    auth_token: tok.clone(),
                    room_id: "crowd".into(),
                    role: None,
                    offer_sdp: None,
                    capabilities: None,
                    metadata: Some(json!({"bio": big})),
                })
                .await
                .expect("the join is acknowledged even when the list is long");
            last = Some(ack);
        }
        clients.push(c);
    }
    let ack = last.unwrap();
    assert!(
        ack.participants_truncated,
        "30 × 3 KB of metadata cannot fit one frame"
    );
    assert_eq!(
        ack.participants.len(),
        29,
        "without metadata every member still fits"
    );
    assert!(ack.participants.iter().all(|p| p.metadata == json!({})));
}

#[tokio::test]
async fn leaving_checks_the_token_and_members_show_their_own_metadata() {
    let s = TestServer::start().await;
    let (_a, b) = pair(&s, "meta").await;
    let e = b.leave_room("wrong-token", "meta").await.unwrap_err();
    assert_eq!(e.code(), Some(401));
    let c = s.registered("carol").await;
    let ack = c.join_room("carol-token", "meta").await.unwrap();
    let creator = ack
        .participants
        .iter()
        .find(|p| p.client_id == "alice")
        .unwrap();
    assert_eq!(
        creator.metadata["client"], "signal-client",
        "the creator's CONNECT metadata, not the room's"
    );
    b.leave_room("bob-token", "meta").await.unwrap();
}

/// A SIGNAL_OFFER frame around `payload`, whatever it holds.
fn raw_offer(payload: &[u8]) -> bytes::Bytes {
    protocol::frame::encode_parts(
        MessageType::SignalOffer,
        Uuid::new_v4(),
        PayloadType::Json,
        payload,
    )
    .unwrap()
}

#[tokio::test]
async fn a_relayed_json_signal_is_the_senders_text_with_the_sender_stamped_first() {
    let s = TestServer::start().await;
    let (a, mut b) = pair(&s, "raw").await;
    // Member order, spacing, a number too big for f64 and unknown members are kept.
    let sent = r#"{ "target_client_id":"bob", "room_id":"raw", "sdp":"v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\n", "n": 12345678901234567890123, "x":[1, 2.50]}"#;
    a.send_raw(raw_offer(sent.as_bytes())).await.unwrap();
    let f = b
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&f.payload).unwrap(),
        format!(r#"{{"from_client_id":"alice",{}"#, &sent[1..])
    );
}

#[tokio::test]
async fn signals_the_fast_path_would_mistake_are_refused_as_the_decoder_refuses_them() {
    let s = TestServer::start().await;
    let (mut a, mut b) = pair(&s, "raw").await;
    for (bad, why) in [
        (r#"{"target_client_id":"bob","sdp":5}"#, "invalid type"),
        (r#"{"target_client_id":"bob","sdp":"\ud800"}"#, "hex escape"),
        (
            r#"{"target_client_id":"bob","x":"\udc00 tail"}"#,
            "surrogate",
        ),
        (r#"["bob","v=0"]"#, "invalid type"),
        // A number a skipping check would pass, and the decoder cannot hold.
        (
            r#"{"target_client_id":"bob","candidate":{"sdpMLineIndex":1e400}}"#,
            "number out of range",
        ),
        (
            r#"{"target_client_id":"bob","sdp":"a","sdp":"b"}"#,
            "duplicate field",
        ),
    ] {
        a.send_raw(raw_offer(bad.as_bytes())).await.unwrap();
        let e = a.expect_event(MessageType::Error, WAIT).await.unwrap();
        let e: ErrorPayload = decode(&e).unwrap();
        assert_eq!(e.error_code, 400, "{bad}");
        assert!(
            e.error_message.starts_with("SIGNAL_OFFER: ") && e.error_message.contains(why),
            "{bad}: {}",
            e.error_message
        );
    }
    // Non-UTF-8 bytes inside a string.
    let mut bytes = br#"{"target_client_id":"bob","sdp":"v=0 "#.to_vec();
    bytes.extend_from_slice(&[0xff, b'"', b'}']);
    a.send_raw(raw_offer(&bytes)).await.unwrap();
    let e = a.expect_event(MessageType::Error, WAIT).await.unwrap();
    assert_eq!(decode::<ErrorPayload>(&e).unwrap().error_code, 400);
    assert!(
        b.next_event_within(Duration::from_millis(200))
            .await
            .is_err(),
        "nothing refused reached the target"
    );
}

/// Many joins at once, into rooms whose members are spread over every node of the test
/// server: each member learns of each other member exactly once, from its join's
/// participants or from a PEER_JOINED, never both and never neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_tell_each_member_of_each_other_exactly_once() {
    const ROOMS: usize = 4;
    const SIZE: usize = 8;
    let s = TestServer::start_with(|c| {
        c.auth
            .api_keys
            .extend((0..ROOMS * SIZE).map(|i| format!("c{i}:c{i}-token")));
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..ROOMS * SIZE {
        clients.push(s.registered(&format!("c{i}")).await);
    }
    let id = |i: usize| format!("c{i}");
    let room = |i: usize| format!("storm-{}", i / SIZE);
    let mut known: Vec<Vec<String>> = vec![Vec::new(); clients.len()];
    for r in 0..ROOMS {
        let creator = r * SIZE;
        clients[creator]
            .create_room(&token(&id(creator)), Some(&room(creator)), Some("v=0"))
            .await
            .unwrap();
    }
    // Every other member of every room joins at once.
    let joins = clients
        .iter()
        .enumerate()
        .filter(|(i, _)| i % SIZE != 0)
        .map(|(i, c)| async move {
            let ack = c.join_room(&token(&id(i)), &room(i)).await.unwrap();
            (i, ack.participants)
        });
    for (i, participants) in futures_util::future::join_all(joins).await {
        known[i].extend(participants.into_iter().map(|p| p.client_id));
    }
    // Each client reads PEER_JOINEDs until it knows every other member, then a little
    // longer for any it should not get.
    let reads =
        clients
            .iter_mut()
            .zip(known.iter_mut())
            .enumerate()
            .map(|(i, (c, k))| async move {
                let deadline = tokio::time::Instant::now() + WAIT;
                loop {
                    let wait = if k.len() < SIZE - 1 {
                        deadline.saturating_duration_since(tokio::time::Instant::now())
                    } else {
                        Duration::from_millis(300)
                    };
                    let Ok(f) = c.next_event_within(wait).await else {
                        break;
                    };
                    assert_eq!(f.msg_type, MessageType::PeerJoined, "client {i}: {f:?}");
                    let pj: PeerJoined = decode(&f).unwrap();
                    k.push(pj.client_id);
                }
            });
    futures_util::future::join_all(reads).await;
    for (i, k) in known.iter_mut().enumerate() {
        k.sort();
        let mut others: Vec<String> = (0..SIZE)
            .map(|j| (i / SIZE) * SIZE + j)
            .filter(|&j| j != i)
            .map(id)
            .collect();
        others.sort();
        assert_eq!(*k, others, "client {i} knows each other member once");
    }
}
