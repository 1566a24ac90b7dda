//! The three JSON dialects over real sockets, each driven the way its seed's own client
//! snippets drive it: altair (seed 002) and simple (seed 003) on `/ws`, room-path
//! (seed 004) on `/webrtc/ws/{room_id}`; their authentication, errors and close codes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{JsonClient, TestServer, expired_jwt, jwt};
use serde_json::{Value, json};

const QUIET: Duration = Duration::from_millis(300);

async fn altair(s: &TestServer, id: &str) -> JsonClient {
    s.json(&format!("/ws?token={id}-token")).await
}

/// Seed 002's JOIN, as its JavaScript client sends it.
async fn altair_join(c: &mut JsonClient, room: &str, name: &str, request_id: &str) -> Value {
    c.send(&json!({
        "type": "JOIN",
        "room_id": room,
        "payload": { "display_name": name, "endpoint": { "ip": "203.0.113.1", "port": 12345 } },
        "request_id": request_id,
    }))
    .await;
    c.recv().await
}

fn assert_error(v: &Value, code: &str, request_id: Option<&str>) {
    assert_eq!(v["type"], "ERROR", "{v}");
    assert_eq!(v["payload"]["code"], code, "{v}");
    assert!(v["payload"]["message"].is_string(), "{v}");
    assert!(
        v["payload"]["details"].is_string(),
        "details is a string: {v}"
    );
    assert!(v["timestamp"].is_i64(), "{v}");
    match request_id {
        Some(r) => assert_eq!(v["request_id"], r, "{v}"),
        None => assert!(v.get("request_id").is_none(), "{v}"),
    }
}

// === altair (seed 002) ===

#[tokio::test]
async fn altair_join_discover_offer_answer_candidate_leave() {
    let s = TestServer::start().await;
    let mut a = altair(&s, "alice").await;
    let ack = altair_join(&mut a, "my-room", "Alice", "req-1").await;
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["peer_id"], "alice", "the ACK tells the peer its id");
    assert_eq!(ack["room_id"], "my-room");
    assert_eq!(ack["request_id"], "req-1");
    assert_eq!(ack["payload"]["peers"], json!([]));
    assert!(ack["timestamp"].as_i64().unwrap() > 1_600_000_000_000, "ms");

    let mut b = altair(&s, "bob").await;
    let ack = altair_join(&mut b, "my-room", "Bob", "req-2").await;
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["peer_id"], "bob");
    let peers = ack["payload"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1, "{ack}");
    assert_eq!(peers[0]["peer_id"], "alice");
    assert_eq!(peers[0]["display_name"], "Alice");
    assert_eq!(
        peers[0]["endpoint"],
        json!({"ip": "203.0.113.1", "port": 12345})
    );
    assert!(peers[0]["joined_at"].is_i64());

    // Seed 002's JavaScript: on PEER_JOINED, send an OFFER to msg.peer_id.
    let pj = a.recv().await;
    assert_eq!(pj["type"], "PEER_JOINED");
    assert_eq!(pj["peer_id"], "bob");
    assert_eq!(pj["room_id"], "my-room");
    assert_eq!(pj["payload"]["peer_id"], "bob");
    assert_eq!(pj["payload"]["display_name"], "Bob");
    assert!(pj["payload"]["joined_at"].is_i64());
    a.send(&json!({
        "type": "OFFER",
        "target_id": pj["peer_id"],
        "payload": {
            "endpoint": { "ip": "203.0.113.1", "port": 12345 },
            "session_id": "sess-abc123",
            "initiator_id": "alice",
        },
    }))
    .await;

    // ... and on OFFER, answer msg.peer_id with the same session id.
    let offer = b.recv().await;
    assert_eq!(offer["type"], "OFFER");
    assert_eq!(offer["peer_id"], "alice", "peer_id is the sender");
    assert_eq!(offer["target_id"], "bob");
    assert_eq!(offer["room_id"], "my-room");
    assert_eq!(offer["payload"]["session_id"], "sess-abc123");
    assert_eq!(offer["payload"]["initiator_id"], "alice");
    assert_eq!(offer["payload"]["endpoint"]["port"], 12345);
    assert!(offer["timestamp"].is_i64());
    b.send(&json!({
        "type": "ANSWER",
        "target_id": offer["peer_id"],
        "payload": {
            "endpoint": { "ip": "198.51.100.1", "port": 54321 },
            "session_id": offer["payload"]["session_id"],
            "accepted": true,
        },
    }))
    .await;
    let answer = a.recv().await;
    assert_eq!(answer["type"], "ANSWER");
    assert_eq!(answer["peer_id"], "bob");
    assert_eq!(answer["target_id"], "alice");
    assert_eq!(answer["payload"]["accepted"], true);
    assert_eq!(answer["payload"]["session_id"], "sess-abc123");

    // A browser's candidate comes out usable by addIceCandidate in either spelling.
    a.send(&json!({
        "type": "CANDIDATE",
        "target_id": "bob",
        "payload": { "candidate": "candidate:1 1 UDP 2122260223 10.0.0.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0 },
    }))
    .await;
    let cand = b.recv().await;
    assert_eq!(cand["type"], "CANDIDATE");
    assert_eq!(cand["peer_id"], "alice");
    let p = &cand["payload"];
    assert_eq!(
        p["candidate"],
        "candidate:1 1 UDP 2122260223 10.0.0.1 5000 typ host"
    );
    assert_eq!((&p["sdpMid"], &p["sdp_mid"]), (&json!("0"), &json!("0")));
    assert_eq!(
        (&p["sdpMLineIndex"], &p["sdp_m_line_index"]),
        (&json!(0), &json!(0))
    );

    // DISCOVER without room_id lists the other peers of the current room.
    a.send(&json!({"type": "DISCOVER", "request_id": "d-1"}))
        .await;
    let list = a.recv().await;
    assert_eq!(list["type"], "PEER_LIST");
    assert_eq!(list["request_id"], "d-1");
    assert_eq!(list["room_id"], "my-room");
    let peers = list["payload"]["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(peers[0]["peer_id"], "bob");
    // With room_id, from outside the room too.
    let mut c = altair(&s, "carol").await;
    c.send(&json!({"type": "DISCOVER", "room_id": "my-room", "request_id": 7}))
        .await;
    let list = c.recv().await;
    assert_eq!(list["type"], "PEER_LIST");
    assert_eq!(list["request_id"], 7, "request_id is echoed as sent");
    assert_eq!(list["payload"]["peers"].as_array().unwrap().len(), 2);

    b.send(&json!({"type": "KEEP_ALIVE", "request_id": "ka"}))
        .await;
    let ka = b.recv().await;
    assert_eq!(ka["type"], "ACK");
    assert_eq!(ka["request_id"], "ka");
    assert!(ka["payload"].is_object(), "every ACK has a payload: {ka}");

    b.send(&json!({"type": "LEAVE", "request_id": "l-1"})).await;
    let ack = b.recv().await;
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["request_id"], "l-1");
    assert_eq!(ack["room_id"], "my-room");
    let left = a.recv().await;
    assert_eq!(left["type"], "PEER_LEFT");
    assert_eq!(left["peer_id"], "bob");
    assert_eq!(left["room_id"], "my-room");
    b.expect_silence(QUIET).await;

    b.send(&json!({"type": "LEAVE", "request_id": "l-2"})).await;
    assert_error(&b.recv().await, "NOT_IN_ROOM", Some("l-2"));
}

#[tokio::test]
async fn altair_errors_echo_the_request_id_and_keep_the_connection() {
    let s = TestServer::start().await;
    let mut a = altair(&s, "alice").await;

    a.send_text("{not json").await;
    assert_error(&a.recv().await, "INVALID_MESSAGE", None);

    a.send(&json!({"type": "JOIN", "request_id": "no-room"}))
        .await;
    assert_error(&a.recv().await, "INVALID_MESSAGE", Some("no-room"));

    a.send(&json!({"type": "OFFER", "target_id": "bob", "payload": {}, "request_id": "o-0"}))
        .await;
    assert_error(&a.recv().await, "NOT_IN_ROOM", Some("o-0"));

    let ack = altair_join(&mut a, "room-e", "Alice", "j-1").await;
    assert_eq!(ack["type"], "ACK");
    let again = altair_join(&mut a, "room-e", "Alice", "j-2").await;
    assert_error(&again, "ALREADY_IN_ROOM", Some("j-2"));

    a.send(&json!({"type": "OFFER", "payload": {"sdp": "v=0"}, "request_id": "o-1"}))
        .await;
    let e = a.recv().await;
    assert_error(&e, "INVALID_MESSAGE", Some("o-1"));
    assert!(
        e["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("target_id"),
        "{e}"
    );

    a.send(&json!({"type": "OFFER", "target_id": "xyz123", "payload": {"sdp": "v=0"}, "request_id": "o-2"}))
        .await;
    let e = a.recv().await;
    assert_error(&e, "PEER_NOT_FOUND", Some("o-2"));
    assert_eq!(e["payload"]["details"], "peer_id: xyz123");

    a.send(&json!({"type": "DISCOVER", "room_id": "no-such-room", "request_id": "d"}))
        .await;
    assert_error(&a.recv().await, "ROOM_NOT_FOUND", Some("d"));

    // The connection speaks altair now: a simple-shaped message is invalid here.
    a.send(&json!({"type": "join", "room": "x", "sender": "alice"}))
        .await;
    assert_error(&a.recv().await, "INVALID_MESSAGE", None);

    a.send(
        &json!({"type": "JOIN", "room_id": "room-e", "peer_id": "mallory", "request_id": "spoof"}),
    )
    .await;
    assert_error(&a.recv().await, "UNAUTHORIZED", Some("spoof"));

    a.send(&json!({"type": "KEEP_ALIVE", "request_id": "still-open"}))
        .await;
    let ka = a.recv().await;
    assert_eq!(ka["type"], "ACK");
    assert_eq!(ka["request_id"], "still-open");
}

#[tokio::test]
async fn altair_join_of_another_room_leaves_the_first_and_full_rooms_refuse() {
    let s = TestServer::start_with(|c| c.rooms.max_participants = 2).await;
    let mut a = altair(&s, "alice").await;
    let mut b = altair(&s, "bob").await;
    altair_join(&mut a, "first", "Alice", "1").await;
    altair_join(&mut b, "first", "Bob", "2").await;
    assert_eq!(a.recv().await["type"], "PEER_JOINED");

    let ack = altair_join(&mut a, "second", "Alice", "3").await;
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["room_id"], "second");
    let left = b.recv().await;
    assert_eq!(left["type"], "PEER_LEFT");
    assert_eq!(left["peer_id"], "alice");
    assert_eq!(left["room_id"], "first");
    a.send(&json!({"type": "DISCOVER", "request_id": "d"}))
        .await;
    assert_eq!(a.recv().await["room_id"], "second");

    let mut c = altair(&s, "carol").await;
    altair_join(&mut c, "first", "Carol", "4").await;
    let mut d = altair(&s, "dave").await;
    let full = altair_join(&mut d, "first", "Dave", "5").await;
    assert_error(&full, "ROOM_FULL", Some("5"));
}

// === simple (seed 003) ===

/// A simple client authenticated as `id` (a JWT whose subject is `id`).
async fn simple(s: &TestServer, id: &str) -> JsonClient {
    s.json(&format!("/ws?token={}", jwt(id, None))).await
}

#[tokio::test]
async fn simple_join_offer_candidate_leave() {
    let s = TestServer::start().await;
    // The seed's wscat session, verbatim.
    let mut c1 = simple(&s, "client1").await;
    c1.send_text(r#"{"type":"join","room":"test-room","sender":"client1"}"#)
        .await;
    let joined = c1.recv().await;
    assert_eq!(
        joined,
        json!({"type": "joined", "room": "test-room", "recipient": "client1",
               "payload": {"client_id": "client1", "peers": []}})
    );

    let mut c2 = simple(&s, "client2").await;
    c2.send_text(r#"{"type":"join","room":"test-room","sender":"client2"}"#)
        .await;
    let joined = c2.recv().await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["payload"]["peers"], json!(["client1"]));
    let j = c1.recv().await;
    assert_eq!(j["type"], "join");
    assert_eq!(j["room"], "test-room");
    assert_eq!(j["sender"], "client2");

    c2.send_text(r#"{"type":"offer","room":"test-room","sender":"client2","recipient":"client1","payload":{"sdp":"example SDP data"}}"#).await;
    let offer = c1.recv().await;
    assert_eq!(
        offer,
        json!({"type": "offer", "room": "test-room", "sender": "client2", "recipient": "client1",
               "payload": {"type": "offer", "sdp": "example SDP data"}})
    );

    let mut c3 = simple(&s, "client3").await;
    c3.send(&json!({"type": "join", "room": "test-room", "sender": "client3"}))
        .await;
    assert_eq!(
        c3.recv().await["payload"]["peers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(c1.recv().await["sender"], "client3");
    assert_eq!(c2.recv().await["sender"], "client3");

    // Without recipient: the rest of the room.
    c1.send(&json!({"type": "candidate", "room": "test-room", "sender": "client1",
                    "payload": {"candidate": "candidate:2 1 UDP 1 10.0.0.2 6000 typ host", "sdpMid": "0", "sdpMLineIndex": 0}}))
        .await;
    for c in [&mut c2, &mut c3] {
        let cand = c.recv().await;
        assert_eq!(cand["type"], "candidate");
        assert_eq!(cand["sender"], "client1");
        assert!(cand.get("recipient").is_none(), "{cand}");
        assert_eq!(
            cand["payload"]["candidate"],
            "candidate:2 1 UDP 1 10.0.0.2 6000 typ host"
        );
        assert_eq!(cand["payload"]["sdp_mid"], "0");
        assert_eq!(cand["payload"]["sdpMLineIndex"], 0);
    }
    c1.expect_silence(QUIET).await;

    // answer back to one peer only.
    c1.send(&json!({"type": "answer", "room": "test-room", "sender": "client1", "recipient": "client2", "payload": {"sdp": "v=0 answer"}}))
        .await;
    let ans = c2.recv().await;
    assert_eq!(ans["type"], "answer");
    assert_eq!(ans["payload"]["type"], "answer");
    assert_eq!(ans["payload"]["sdp"], "v=0 answer");
    c3.expect_silence(QUIET).await;

    // sender must be the authenticated client.
    c2.send(&json!({"type": "offer", "room": "test-room", "sender": "client1", "recipient": "client3", "payload": {"sdp": "x"}}))
        .await;
    let e = c2.recv().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["payload"]["code"], "UNAUTHORIZED");
    c3.expect_silence(QUIET).await;

    c2.send(&json!({"type": "leave", "room": "test-room", "sender": "client2"}))
        .await;
    assert_eq!(
        c2.recv().await,
        json!({"type": "left", "room": "test-room", "recipient": "client2"})
    );
    for c in [&mut c1, &mut c3] {
        assert_eq!(
            c.recv().await,
            json!({"type": "leave", "room": "test-room", "sender": "client2"})
        );
    }
}

#[tokio::test]
async fn simple_errors() {
    let s = TestServer::start().await;
    let mut c = simple(&s, "client1").await;
    c.send(&json!({"type": "join", "room": "r-1", "sender": "client1"}))
        .await;
    assert_eq!(c.recv().await["type"], "joined");

    let err = |v: Value, code: &str| {
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["payload"]["code"], code, "{v}");
        assert!(v["payload"]["message"].is_string(), "{v}");
    };
    c.send_text("nope").await;
    err(c.recv().await, "INVALID_MESSAGE");
    c.send(&json!({"type": "join", "room": "r-1", "sender": "client1"}))
        .await;
    err(c.recv().await, "ALREADY_IN_ROOM");
    c.send(&json!({"type": "JOIN", "room_id": "r-2"})).await;
    err(c.recv().await, "INVALID_MESSAGE");
    c.send(&json!({"type": "offer", "room": "elsewhere", "sender": "client1", "payload": {"sdp": "x"}}))
        .await;
    err(c.recv().await, "NOT_IN_ROOM");
    c.send(&json!({"type": "offer", "room": "r-1", "sender": "client1", "recipient": "ghost", "payload": {"sdp": "x"}}))
        .await;
    err(c.recv().await, "PEER_NOT_FOUND");
    c.send(&json!({"type": "join", "room": "bad room!", "sender": "client1"}))
        .await;
    err(c.recv().await, "INVALID_MESSAGE");
    c.send(&json!({"type": "leave", "room": "r-9", "sender": "client1"}))
        .await;
    err(c.recv().await, "NOT_IN_ROOM");
}

// === /ws authentication ===

#[tokio::test]
async fn ws_without_a_valid_token_is_refused_in_the_dialect_of_its_first_message() {
    let s = TestServer::start().await;
    let mut a = s.json("/ws").await;
    a.send(&json!({"type": "JOIN", "room_id": "r", "request_id": "x"}))
        .await;
    let (before, closed) = a.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["type"], "ERROR");
    assert_eq!(before[0]["payload"]["code"], "UNAUTHORIZED");

    let mut b = s.json("/ws?token=wrong-token").await;
    b.send(&json!({"type": "join", "room": "r", "sender": "bob"}))
        .await;
    let (before, closed) = b.closed().await;
    assert_eq!(closed.code, 1008);
    assert_eq!(before[0]["type"], "error");
    assert_eq!(before[0]["payload"]["code"], "UNAUTHORIZED");

    // A JWT for another client_id hint is refused too.
    let mut c = s
        .json(&format!("/ws?token={}&client_id=bob", jwt("alice", None)))
        .await;
    c.send(&json!({"type": "KEEP_ALIVE"})).await;
    assert_eq!(c.closed().await.1.code, 1008);
}

#[tokio::test]
async fn ws_accepts_a_bearer_header() {
    let s = TestServer::start().await;
    let mut a = s.json_bearer("/ws", "alice-token").await;
    let ack = altair_join(&mut a, "hdr", "A", "1").await;
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["peer_id"], "alice");
    let mut b = s.json_bearer("/ws", &jwt("bob", Some("Bob"))).await;
    b.send(&json!({"type": "join", "room": "hdr", "sender": "bob"}))
        .await;
    assert_eq!(b.recv().await["type"], "joined");
    let pj = a.recv().await;
    assert_eq!(pj["peer_id"], "bob");
    assert_eq!(pj["payload"]["display_name"], "Bob", "the JWT's name");
}

#[tokio::test]
async fn ws_admits_anonymous_clients_only_when_configured() {
    let s = TestServer::start_with(|c| c.auth.allow_anonymous = true).await;
    // Seed 002's JavaScript client connects without any credential.
    let mut a = s.json("/ws").await;
    let ack = altair_join(&mut a, "open", "Alice", "1").await;
    assert_eq!(ack["type"], "ACK");
    let id = ack["peer_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("anon-"), "server-assigned: {id}");
    // Seed 003's wscat session: the sender names are not checked for anonymous clients,
    // and `joined` tells the client its id.
    let mut b = s.json("/ws").await;
    b.send_text(r#"{"type":"join","room":"open","sender":"client2"}"#)
        .await;
    let joined = b.recv().await;
    let bid = joined["recipient"].as_str().unwrap().to_owned();
    assert!(bid.starts_with("anon-"));
    assert_eq!(joined["payload"]["peers"], json!([id]));
    let pj = a.recv().await;
    assert_eq!(pj["peer_id"], bid.as_str());
    b.send(&json!({"type": "offer", "room": "open", "sender": "client2", "recipient": id, "payload": {"sdp": "v=0"}}))
        .await;
    let offer = a.recv().await;
    assert_eq!(offer["type"], "OFFER");
    assert_eq!(offer["peer_id"], bid.as_str());

    // A bad token is still refused: anonymous means no token, not any token.
    let mut c = s.json("/ws?token=bogus").await;
    c.send(&json!({"type": "KEEP_ALIVE"})).await;
    assert_eq!(c.closed().await.1.code, 1008);

    let strict = TestServer::start().await;
    let mut d = strict.json("/webrtc/ws/open").await;
    assert_eq!(d.closed().await.1.code, 1008);
    let mut e = s.json("/webrtc/ws/open").await;
    let st = e.recv().await;
    assert_eq!(st["type"], "room_state");
    assert_eq!(st["payload"]["participant_count"], 3);
}

#[tokio::test]
async fn a_replaced_session_is_told_in_its_dialect() {
    let s = TestServer::start().await;
    let mut first = altair(&s, "alice").await;
    altair_join(&mut first, "r", "A", "1").await;
    let mut second = altair(&s, "alice").await;
    altair_join(&mut second, "r", "A", "2").await;
    let (before, closed) = first.closed().await;
    assert_eq!(closed.code, 1008);
    assert_eq!(
        before.last().unwrap()["payload"]["code"],
        "SESSION_REPLACED"
    );
}

// === room-path (seed 004) ===

async fn room_path(s: &TestServer, room: &str, sub: &str, name: &str) -> JsonClient {
    s.json(&format!("/webrtc/ws/{room}?token={}", jwt(sub, Some(name))))
        .await
}

fn assert_iso(ts: &Value) {
    let t = ts.as_str().expect("timestamp is a string");
    chrono::DateTime::parse_from_rfc3339(t).expect("ISO 8601");
}

#[tokio::test]
async fn room_path_state_join_offer_answer_candidate_leave() {
    let s = TestServer::start().await;
    let mut u1 = room_path(&s, "room-123", "user_1", "Alice").await;
    // Seed 004's Python client: the first message is the room state.
    let st = u1.recv().await;
    assert_eq!(st["type"], "room_state");
    assert_eq!(st["payload"]["room_id"], "room-123");
    assert_eq!(
        st["payload"]["participants"],
        json!([{"user_id": "user_1", "username": "Alice"}])
    );
    assert_eq!(st["payload"]["participant_count"], 1);

    let mut u2 = room_path(&s, "room-123", "user_2", "Bob").await;
    let st = u2.recv().await;
    assert_eq!(st["type"], "room_state");
    assert_eq!(
        st["payload"]["participants"],
        json!([{"user_id": "user_1", "username": "Alice"}, {"user_id": "user_2", "username": "Bob"}])
    );
    assert_eq!(st["payload"]["participant_count"], 2);
    let joined = u1.recv().await;
    assert_eq!(joined["type"], "user_joined");
    assert_eq!(
        joined["payload"],
        json!({"user_id": "user_2", "username": "Bob"})
    );
    assert_eq!(joined["sender_id"], "server");
    assert_eq!(joined["room_id"], "room-123");
    assert_iso(&joined["timestamp"]);

    // The Python client's offer, verbatim (no target: the rest of the room).
    u1.send(&json!({
        "type": "offer",
        "payload": { "type": "offer", "sdp": "v=0\r\n..." },
        "room_id": "room-123",
        "timestamp": "2024-01-01T00:00:00Z",
    }))
    .await;
    let offer = u2.recv().await;
    assert_eq!(offer["type"], "offer");
    assert_eq!(offer["sender_id"], "user_1");
    assert_eq!(offer["room_id"], "room-123");
    assert_eq!(
        offer["payload"],
        json!({"type": "offer", "sdp": "v=0\r\n..."}),
        "setRemoteDescription(message.payload) works"
    );
    assert_ne!(offer["timestamp"], "2024-01-01T00:00:00Z", "server-set");
    assert_iso(&offer["timestamp"]);

    // The browser client's answer (an RTCSessionDescription), targeted.
    u2.send(&json!({
        "type": "answer",
        "payload": { "type": "answer", "sdp": "v=0\r\nanswer", "target_user_id": "user_1" },
        "room_id": "room-123",
    }))
    .await;
    let answer = u1.recv().await;
    assert_eq!(answer["type"], "answer");
    assert_eq!(answer["sender_id"], "user_2");
    assert_eq!(answer["payload"]["type"], "answer");
    assert_eq!(answer["payload"]["sdp"], "v=0\r\nanswer");
    assert_eq!(answer["payload"]["target_user_id"], "user_1");

    // The browser's onicecandidate: payload is event.candidate.toJSON().
    u1.send(&json!({
        "type": "ice_candidate",
        "payload": { "candidate": "candidate:842163049 1 udp 1677729535 1.2.3.4 46154 typ srflx", "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "EsT1" },
        "room_id": "room-123",
    }))
    .await;
    let cand = u2.recv().await;
    assert_eq!(cand["type"], "ice_candidate");
    assert_eq!(cand["sender_id"], "user_1");
    let p = &cand["payload"];
    assert_eq!(
        p["candidate"],
        "candidate:842163049 1 udp 1677729535 1.2.3.4 46154 typ srflx"
    );
    assert_eq!(p["sdpMid"], "0");
    assert_eq!(p["sdp_mid"], "0");
    assert_eq!(p["sdpMLineIndex"], 0);
    assert_eq!(p["sdp_m_line_index"], 0);
    assert_eq!(p["usernameFragment"], "EsT1");

    // Seed 004's documented candidate shape, targeted.
    u2.send(&json!({
        "type": "ice_candidate",
        "payload": { "candidate": "candidate:1 1 UDP 1 5.6.7.8 9 typ host", "sdp_mid": "1", "sdp_m_line_index": 1, "target_user_id": "user_1" },
    }))
    .await;
    let cand = u1.recv().await;
    assert_eq!(cand["payload"]["sdpMid"], "1");
    assert_eq!(cand["payload"]["sdpMLineIndex"], 1);

    // Errors keep the connection.
    u1.send(&json!({"type": "chat", "payload": {}})).await;
    let e = u1.recv().await;
    assert_eq!(e["type"], "error");
    assert_eq!(e["payload"]["code"], "INVALID_MESSAGE");
    u1.send(&json!({"type": "offer", "payload": {"sdp": "x", "target_user_id": "nobody"}}))
        .await;
    let e = u1.recv().await;
    assert_eq!(e["payload"]["code"], "PEER_NOT_FOUND");

    u2.close().await;
    let left = u1.recv().await;
    assert_eq!(left["type"], "user_left");
    assert_eq!(left["payload"]["user_id"], "user_2");
    assert_eq!(left["sender_id"], "server");
}

#[tokio::test]
async fn room_path_refusals_close_with_1008() {
    let s = TestServer::start_with(|c| c.rooms.max_participants = 2).await;
    let close_of = |path: String| {
        let s = &s;
        async move {
            let mut c = s.json(&path).await;
            c.closed().await
        }
    };

    let (before, c) = close_of("/webrtc/ws/room-1".into()).await;
    assert_eq!((c.code, before.len()), (1008, 0), "no token: {c:?}");
    let (_, c) = close_of("/webrtc/ws/room-1?token=not-a-token".into()).await;
    assert_eq!(c.code, 1008, "bad token: {c:?}");
    let forged = signal_core::auth::issue_jwt("another-secret", "user_1", None, 60).unwrap();
    let (_, c) = close_of(format!("/webrtc/ws/room-1?token={forged}")).await;
    assert_eq!(c.code, 1008, "forged token: {c:?}");
    let (_, c) = close_of(format!("/webrtc/ws/room-1?token={}", expired_jwt("user_1"))).await;
    assert_eq!(c.code, 1008);
    assert!(c.reason.contains("expired"), "{c:?}");
    let (_, c) = close_of(format!("/webrtc/ws/bad$room?token={}", jwt("user_1", None))).await;
    assert_eq!(c.code, 1008);
    assert!(c.reason.contains("room id"), "{c:?}");
    let long = "a".repeat(65);
    let (_, c) = close_of(format!("/webrtc/ws/{long}?token={}", jwt("user_1", None))).await;
    assert_eq!(c.code, 1008, "65 characters: {c:?}");

    // Room full: an error message, then 1008.
    let mut a = room_path(&s, "full-room", "user_1", "A").await;
    a.recv_type("room_state").await;
    let mut b = room_path(&s, "full-room", "user_2", "B").await;
    b.recv_type("room_state").await;
    let mut c = room_path(&s, "full-room", "user_3", "C").await;
    let (before, closed) = c.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["type"], "error");
    assert_eq!(before[0]["payload"]["code"], "ROOM_FULL");
    // The full room's members heard nothing of it.
    a.recv_type("user_joined").await;
    a.expect_silence(QUIET).await;
}

#[tokio::test]
async fn room_path_accepts_a_bearer_header_and_api_key_tokens() {
    let s = TestServer::start().await;
    let mut a = s
        .json_bearer("/webrtc/ws/hdr-room", &jwt("user_1", Some("Alice")))
        .await;
    let st = a.recv().await;
    assert_eq!(st["type"], "room_state");
    assert_eq!(st["payload"]["participants"][0]["username"], "Alice");
    // Without a name claim the username is the id.
    let mut b = s.json("/webrtc/ws/hdr-room?token=bob-token").await;
    let st = b.recv().await;
    assert_eq!(
        st["payload"]["participants"][1],
        json!({"user_id": "bob", "username": "bob"})
    );
}

#[tokio::test]
async fn idle_browsers_are_kept_alive_by_server_pings() {
    // A browser cannot send WebSocket pings, and seeds 003/004 have no keep-alive
    // message: the server pings text connections each heartbeat interval, and the
    // browser's automatic pong counts as activity.
    let s = TestServer::start_with(|c| {
        c.heartbeat.interval = 1;
        c.heartbeat.timeout = 2;
    })
    .await;
    let mut a = room_path(&s, "idle-room", "user_1", "A").await;
    a.recv_type("room_state").await;
    let mut b = simple(&s, "client2").await;
    b.send(&json!({"type": "join", "room": "idle-room", "sender": "client2"}))
        .await;
    b.recv_type("joined").await;
    a.recv_type("user_joined").await;
    // Both only read (answering pings) for twice the heartbeat timeout.
    let (ra, rb) = tokio::join!(
        a.next_within(Duration::from_secs(4)),
        b.next_within(Duration::from_secs(4))
    );
    assert_eq!(ra.unwrap_err().reason, "timeout", "still open");
    assert_eq!(rb.unwrap_err().reason, "timeout", "still open");
    b.send(&json!({"type": "offer", "room": "idle-room", "sender": "client2", "payload": {"sdp": "v=0"}}))
        .await;
    assert_eq!(a.recv_type("offer").await["sender_id"], "client2");
}

#[tokio::test]
async fn an_internal_failure_closes_room_path_with_1011_and_altair_gets_internal_error() {
    // The node's own store failing: one node, whatever the suite runs as.
    let s = TestServer::start_single_with(|_| {}).await;
    let mut a = altair(&s, "alice").await;
    a.send(&json!({"type": "KEEP_ALIVE"})).await;
    assert_eq!(a.recv().await["type"], "ACK");
    s.running().hub().store().close().await;

    // Opening a room needs the database: room-path is told with 1011, after an error.
    let mut c = room_path(&s, "down-room", "user_1", "A").await;
    let (before, closed) = c.closed().await;
    assert_eq!(closed.code, 1011, "{closed:?}");
    assert_eq!(before[0]["payload"]["code"], "INTERNAL_ERROR");

    // altair keeps its connection and gets INTERNAL_ERROR.
    let ack = altair_join(&mut a, "down-room", "A", "j").await;
    assert_error(&ack, "INTERNAL_ERROR", Some("j"));
}

#[tokio::test]
async fn json_messages_are_rate_limited_except_keep_alive() {
    let s = TestServer::start_with(|c| {
        c.security.rate_limit_enabled = true;
        c.security.max_messages_per_minute = 3;
    })
    .await;
    let mut a = altair(&s, "alice").await;
    altair_join(&mut a, "rl", "A", "j").await;
    let mut codes = Vec::new();
    for i in 0..4 {
        a.send(&json!({"type": "DISCOVER", "request_id": i})).await;
        let v = a.recv().await;
        codes.push(
            v["payload"]["code"]
                .as_str()
                .unwrap_or(v["type"].as_str().unwrap())
                .to_owned(),
        );
    }
    assert_eq!(
        codes,
        ["PEER_LIST", "PEER_LIST", "RATE_LIMITED", "RATE_LIMITED"]
    );
    a.send(&json!({"type": "KEEP_ALIVE", "request_id": "k"}))
        .await;
    assert_eq!(a.recv().await["type"], "ACK", "KEEP_ALIVE is never limited");

    let mut u = room_path(&s, "rl", "user_1", "U").await;
    u.recv_type("room_state").await;
    for _ in 0..4 {
        u.send(&json!({"type": "offer", "payload": {"sdp": "x"}}))
            .await;
    }
    let e = u.recv_type("error").await;
    assert_eq!(e["payload"]["code"], "RATE_LIMITED");
}
