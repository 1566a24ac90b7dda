//! The binary protocol's connection layer over real sockets: CONNECT and its
//! credentials, heartbeats and timeouts, registration, malformed frames (including the
//! seed documents' own vectors), session replacement, limits, and /health.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{TestServer, WAIT, http_get, token};
use protocol::{
    Frame, MessageType, PayloadType,
    frame::encode_parts,
    payload::{ConnectAck, ErrorPayload, HeartbeatAck, RegisterAck, UnregisterAck},
};
use serde_json::{Value, json};
use signal_client::{Client, ClientError, decode, decode_answer, protocol};
use uuid::Uuid;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.replace(' ', "")).expect("hex")
}

fn error_of(f: &Frame) -> ErrorPayload {
    assert_eq!(
        f.msg_type,
        MessageType::Error,
        "expected an ERROR frame, got {:?}",
        f.msg_type
    );
    decode(f).expect("ERROR payload decodes")
}

async fn raw_request(c: &Client, bytes: Vec<u8>) -> Frame {
    // The UUID sits at bytes 2..18 of any frame long enough to carry one.
    let id = if bytes.len() >= 18 {
        Uuid::from_slice(&bytes[2..18]).expect("uuid")
    } else {
        Uuid::nil()
    };
    c.request_raw(id, bytes).await.expect("an answer frame")
}

fn frame(t: MessageType, pt: PayloadType, payload: &[u8]) -> (Uuid, Vec<u8>) {
    let id = Uuid::new_v4();
    (
        id,
        encode_parts(t, id, pt, payload).expect("encodes").to_vec(),
    )
}

#[tokio::test]
async fn connect_ack_carries_the_session_and_echoes_the_uuid() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let (id, bytes) = frame(
        MessageType::Connect,
        PayloadType::Json,
        br#"{"client_id":"alice","auth_token":"alice-token","version":"1.0.0","capabilities":["webrtc"]}"#,
    );
    let f = c.request_raw(id, bytes).await.unwrap();
    assert_eq!(f.msg_type, MessageType::ConnectAck);
    assert_eq!(f.id, id, "the ACK carries the request's UUID");
    let ack: ConnectAck = decode(&f).unwrap();
    assert_eq!(ack.status, 200);
    assert_eq!(ack.message, "Connection established");
    assert!(Uuid::parse_str(&ack.session_id).is_ok());
    assert_eq!(ack.server_version, "1.0.0");
    assert_eq!(ack.heartbeat_interval, 30);
    assert!(ack.capabilities.contains(&"webrtc".to_string()));
}

#[tokio::test]
async fn connect_without_version_is_accepted_as_in_the_seed_example() {
    let s = TestServer::start().await;
    let c = s.client().await;
    let (id, bytes) = frame(
        MessageType::Connect,
        PayloadType::Json,
        br#"{"client_id":"bob","auth_token":"bob-token"}"#,
    );
    assert_eq!(
        c.request_raw(id, bytes).await.unwrap().msg_type,
        MessageType::ConnectAck
    );
}

#[tokio::test]
async fn bad_credentials_get_401_then_close_1008() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let err = c.authenticate("alice", "wrong").await.unwrap_err();
    let ClientError::Server(e) = err else {
        panic!("expected ERROR, got {err:?}")
    };
    assert_eq!(e.error_code, 401);
    assert_eq!(e.details["request_type"], "CONNECT");
    assert_eq!(c.closed_within(WAIT).await.unwrap().code, 1008);

    let mut c = s.client().await;
    let e = c.authenticate("mallory", "anything").await.unwrap_err();
    assert_eq!(e.code(), Some(401));
}

#[tokio::test]
async fn jwt_credentials_follow_sub_and_exp() {
    let s = TestServer::start().await;
    let good = signal_core::auth::issue_jwt(common::JWT_SECRET, "erin", None, 60).unwrap();
    let mut c = s.client().await;
    c.authenticate("erin", &good)
        .await
        .expect("valid JWT for its subject");

    let mut c = s.client().await;
    let e = c.authenticate("frank", &good).await.unwrap_err();
    assert_eq!(e.code(), Some(401));
    assert!(e.to_string().contains("subject"), "{e}");

    let claims = signal_core::auth::Claims {
        sub: "erin".into(),
        exp: 1_000_000,
        iat: None,
        name: None,
        rooms: None,
        admin: None,
    };
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(common::JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let mut c = s.client().await;
    let e = c.authenticate("erin", &expired).await.unwrap_err();
    assert!(e.to_string().contains("expired"), "{e}");
    assert_eq!(c.closed_within(WAIT).await.unwrap().code, 1008);

    let forged = signal_core::auth::issue_jwt("another-secret", "erin", None, 60).unwrap();
    let mut c = s.client().await;
    assert!(
        c.authenticate("erin", &forged)
            .await
            .unwrap_err()
            .to_string()
            .contains("signature")
    );
}

#[tokio::test]
async fn nothing_but_connect_is_processed_before_connect() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    let e = c.heartbeat().await.unwrap_err();
    let ClientError::Server(e) = e else { panic!() };
    assert_eq!(e.error_code, 401);
    assert!(
        e.error_message.contains("CONNECT must be the first frame"),
        "{}",
        e.error_message
    );
    assert_eq!(e.details["request_type"], "HEARTBEAT");
    // The connection still works.
    c.authenticate("alice", "alice-token").await.unwrap();
    c.heartbeat().await.unwrap();
}

#[tokio::test]
async fn no_connect_within_the_timeout_closes_the_socket() {
    let s = TestServer::start_with(|c| c.server.connection_timeout = 1).await;
    let mut c = s.client().await;
    let closed = c.closed_within(WAIT).await.unwrap();
    assert_eq!(closed.code, 1008);
    assert!(
        closed.reason.contains("CONNECT not received"),
        "{}",
        closed.reason
    );
}

#[tokio::test]
async fn heartbeat_ack_echoes_and_adds_server_time_in_json_and_cbor() {
    let s = TestServer::start().await;
    let c = s.connected("alice").await;
    let before = chrono::Utc::now().timestamp_millis();
    let ack = c.heartbeat().await.unwrap();
    assert!(
        ack.server_time >= before - 1000
            && ack.server_time <= chrono::Utc::now().timestamp_millis() + 1000
    );

    let (id, bytes) = frame(
        MessageType::Heartbeat,
        PayloadType::Json,
        br#"{"timestamp":1704067200000}"#,
    );
    let f = c.request_raw(id, bytes).await.unwrap();
    assert_eq!(
        (f.msg_type, f.id, f.payload_type),
        (MessageType::HeartbeatAck, id, PayloadType::Json)
    );
    let ack: HeartbeatAck = decode(&f).unwrap();
    assert_eq!(ack.timestamp, 1_704_067_200_000);

    let cbor = minicbor_serde::to_vec(json!({"timestamp": 42})).unwrap();
    let (id, bytes) = frame(MessageType::Heartbeat, PayloadType::Cbor, &cbor);
    let f = c.request_raw(id, bytes).await.unwrap();
    assert_eq!(
        f.payload_type,
        PayloadType::Cbor,
        "answered in the request's payload type"
    );
    let ack: HeartbeatAck = decode(&f).unwrap();
    assert_eq!(ack.timestamp, 42);
}

#[tokio::test]
async fn silence_past_the_heartbeat_timeout_drops_the_session_and_its_rooms() {
    let s = TestServer::start_with(|c| {
        c.heartbeat.interval = 1;
        c.heartbeat.timeout = 2;
    })
    .await;
    let mut alive = s.registered("alice").await;
    let mut silent = s.registered("bob").await;
    alive
        .create_room("alice-token", Some("hb-room"), None)
        .await
        .unwrap();
    silent.join_room("bob-token", "hb-room").await.unwrap();
    alive
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    // Alice keeps talking for longer than the timeout; Bob says nothing.
    let start = tokio::time::Instant::now();
    while start.elapsed() < Duration::from_millis(3500) {
        alive.heartbeat().await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let closed = silent.closed_within(WAIT).await.unwrap();
    assert_eq!(closed.code, 1008);
    assert!(
        closed.reason.contains("heartbeat timeout"),
        "{}",
        closed.reason
    );
    let left = alive
        .expect_event(MessageType::PeerLeft, WAIT)
        .await
        .unwrap();
    let left: Value = decode(&left).unwrap();
    assert_eq!(left["client_id"], "bob");
    assert_eq!(left["reason"], "heartbeat timeout");
    alive
        .heartbeat()
        .await
        .expect("the talking client is still connected");
}

#[tokio::test]
async fn seed_vectors_as_printed_get_a_precise_400_and_the_connection_survives() {
    let s = TestServer::start_with(|c| {
        c.auth
            .api_keys
            .push("unique_client_identifier:authentication_token".into())
    })
    .await;
    let mut c = s.client().await;
    c.authenticate("unique_client_identifier", "authentication_token")
        .await
        .unwrap();
    let cases = [
        (
            "AA 04 550E8400E29B41D4A716446655440002 02 0018 7B2274696D657374616D70223A313730343036373230303030307D",
            "payload length field says 24, frame carries 27",
            "HEARTBEAT",
        ),
        (
            "AA 20 550E8400E29B41D4A716446655440000 02 00C8 7B2276657273696F6E223A22312E302E30222C22636C69656E745F6964223A22756E697175655F636C69656E745F6964656E746966696572222C22617574685F746F6B656E223A2261757468656E7469636174696F6E5F746F6B656E222C226361706162696C6974696573223A5B22776562736F636B6574222C22686561727462656174222C22776562727463225D2C226D65746164617461223A7B22706C6174666F726D223A22776562222C2276657273696F6E223A22312E302E30227D7D",
            "payload length field says 200, frame carries 192",
            "REGISTER",
        ),
        (
            "AA 22 550E8400E29B41D4A716446655440001 02 0048 7B2276657273696F6E223A22312E302E30222C22636C69656E745F6964223A22756E697175655F636C69656E745F6964656E746966696572222C22617574685F746F6B656E223A2261757468656E7469636174696F6E5F746F6B656E227D",
            "payload length field says 72, frame carries 94",
            "UNREGISTER",
        ),
    ];
    for (vector, message, request_type) in cases {
        let bytes = hex(vector);
        let f = raw_request(&c, bytes.clone()).await;
        assert_eq!(
            f.id,
            Uuid::from_slice(&bytes[2..18]).unwrap(),
            "the ERROR carries the frame's UUID"
        );
        let e = error_of(&f);
        assert_eq!(e.error_code, 400);
        assert_eq!(e.error_message, message);
        assert_eq!(e.details["request_type"], request_type);
    }
    c.heartbeat()
        .await
        .expect("still connected after three bad frames");
}

#[tokio::test]
async fn seed_vectors_with_corrected_lengths_work() {
    let s = TestServer::start_with(|c| {
        c.auth
            .api_keys
            .push("unique_client_identifier:authentication_token".into())
    })
    .await;
    let mut c = s.client().await;
    c.authenticate("unique_client_identifier", "authentication_token")
        .await
        .unwrap();

    let hb = hex(
        "AA 04 550E8400E29B41D4A716446655440002 02 001B 7B2274696D657374616D70223A313730343036373230303030307D",
    );
    let f = raw_request(&c, hb).await;
    assert_eq!(f.msg_type, MessageType::HeartbeatAck);
    assert_eq!(f.id.to_string(), "550e8400-e29b-41d4-a716-446655440002");

    let reg = hex(
        "AA 20 550E8400E29B41D4A716446655440000 02 00C0 7B2276657273696F6E223A22312E302E30222C22636C69656E745F6964223A22756E697175655F636C69656E745F6964656E746966696572222C22617574685F746F6B656E223A2261757468656E7469636174696F6E5F746F6B656E222C226361706162696C6974696573223A5B22776562736F636B6574222C22686561727462656174222C22776562727463225D2C226D65746164617461223A7B22706C6174666F726D223A22776562222C2276657273696F6E223A22312E302E30227D7D",
    );
    let f = raw_request(&c, reg).await;
    let ack: RegisterAck = decode_answer(&f).unwrap();
    assert_eq!(
        (ack.status, ack.client_id.as_str()),
        (200, "unique_client_identifier")
    );
    assert_eq!(ack.message, "Registration successful");

    let unreg = hex(
        "AA 22 550E8400E29B41D4A716446655440001 02 005E 7B2276657273696F6E223A22312E302E30222C22636C69656E745F6964223A22756E697175655F636C69656E745F6964656E746966696572222C22617574685F746F6B656E223A2261757468656E7469636174696F6E5F746F6B656E227D",
    );
    let f = raw_request(&c, unreg).await;
    let ack: UnregisterAck = decode_answer(&f).unwrap();
    assert_eq!(ack.message, "Unregistration successful");
}

#[tokio::test]
async fn malformed_frames_each_get_a_400_naming_the_fault() {
    let s = TestServer::start().await;
    let c = s.connected("alice").await;
    let id = Uuid::new_v4();
    let good = encode_parts(
        MessageType::Heartbeat,
        id,
        PayloadType::Json,
        br#"{"timestamp":1}"#,
    )
    .unwrap()
    .to_vec();

    let mut bad_start = good.clone();
    bad_start[0] = 0xAB;
    let mut unknown_type = good.clone();
    unknown_type[1] = 0x42;
    let mut unknown_pt = good.clone();
    unknown_pt[18] = 0x09;
    let truncated = good[..20].to_vec();
    let (_, bad_json) = frame(
        MessageType::Heartbeat,
        PayloadType::Json,
        b"{\"timestamp\":",
    );
    let (_, wrong_type) = frame(
        MessageType::Register,
        PayloadType::Json,
        br#"{"version":"1.0.0","client_id":5,"auth_token":"x"}"#,
    );
    let (_, missing) = frame(
        MessageType::Register,
        PayloadType::Json,
        br#"{"version":"1.0.0","auth_token":"x"}"#,
    );
    let (_, text_pt) = frame(MessageType::Register, PayloadType::Text, b"hello");
    let (_, bad_cbor) = frame(MessageType::Heartbeat, PayloadType::Cbor, &[0xff, 0xff]);
    let (_, server_type) = frame(MessageType::ConnectAck, PayloadType::Json, b"{}");

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bad_start, "bad start byte 0xAB"),
        (unknown_type, "unknown message type 0x42"),
        (unknown_pt, "unknown payload type 0x09"),
        (truncated, "truncated frame: 20 bytes received"),
        (bad_json, "invalid JSON payload: EOF while parsing"),
        (wrong_type, "invalid type: integer `5`, expected a string"),
        (missing, "missing field `client_id`"),
        (
            text_pt,
            "payload type TEXT (0x03) cannot carry this message",
        ),
        (bad_cbor, "invalid CBOR payload"),
        (
            server_type,
            "CONNECT_ACK (0x02) is sent by the server, not by clients",
        ),
    ];
    for (bytes, expected) in cases {
        let f = raw_request(&c, bytes).await;
        let e = error_of(&f);
        assert_eq!(e.error_code, 400, "{expected}");
        assert!(
            e.error_message.contains(expected),
            "expected {expected:?} in {:?}",
            e.error_message
        );
    }
    // An empty WebSocket message, and a text message.
    c.send_raw(Vec::<u8>::new()).await.unwrap();
    c.send_text("{\"type\":\"JOIN\"}").await.unwrap();
    c.heartbeat()
        .await
        .expect("the connection survives every bad frame");
}

#[tokio::test]
async fn a_second_connect_on_one_connection_is_409() {
    let s = TestServer::start().await;
    let mut c = s.connected("alice").await;
    let e = c.authenticate("alice", "alice-token").await.unwrap_err();
    assert_eq!(e.code(), Some(409));
    c.heartbeat().await.unwrap();
}

#[tokio::test]
async fn registration_rules() {
    let s = TestServer::start().await;
    let c = s.connected("alice").await;
    let ack = c.register("alice-token").await.unwrap();
    assert_eq!(
        (ack.status, ack.client_id.as_str(), ack.version.as_str()),
        (200, "alice", "1.0.0")
    );
    assert!(Uuid::parse_str(&ack.session_id).is_ok());
    let e = c.register("alice-token").await.unwrap_err();
    assert_eq!(e.code(), Some(409));
    assert!(e.to_string().contains("Client already registered"));

    // Another client's id on this connection.
    let f = c
        .request_frame(
            MessageType::Register,
            &json!({"version":"1.0.0","client_id":"bob","auth_token":"bob-token"}),
        )
        .await
        .unwrap();
    assert_eq!(error_of(&f).error_code, 403);
    // Versions.
    for (v, needle) in [
        ("2.0.0", "Unsupported protocol version 2.0.0"),
        ("abc", "Invalid 'version' field"),
    ] {
        let f = c
            .request_frame(
                MessageType::Register,
                &json!({"version": v,"client_id":"alice","auth_token":"t"}),
            )
            .await
            .unwrap();
        let e = error_of(&f);
        assert_eq!(e.error_code, 400);
        assert!(e.error_message.contains(needle), "{}", e.error_message);
    }
    let f = c
        .request_frame(
            MessageType::Register,
            &json!({"version":"1.0.0","client_id":"","auth_token":"t"}),
        )
        .await
        .unwrap();
    assert!(
        error_of(&f)
            .error_message
            .contains("Missing or invalid 'client_id' field")
    );

    assert_eq!(
        c.unregister("wrong-token").await.unwrap_err().code(),
        Some(401)
    );
    assert_eq!(c.unregister("alice-token").await.unwrap().status, 200);
    let e = c.unregister("alice-token").await.unwrap_err();
    assert_eq!(e.code(), Some(404));
    assert!(e.to_string().contains("Client not found"));
}

#[tokio::test]
async fn the_same_client_connecting_again_replaces_the_old_session() {
    let s = TestServer::start().await;
    let mut old = s.connected("alice").await;
    let new = s.connected("alice").await;
    let e = old.next_event_within(WAIT).await.unwrap();
    let e = error_of(&e);
    assert_eq!(e.error_code, 409);
    assert!(e.error_message.contains("Session replaced"));
    assert_eq!(old.closed_within(WAIT).await.unwrap().code, 1008);
    new.heartbeat().await.unwrap();
}

#[tokio::test]
async fn max_sessions_per_client_above_one_keeps_both() {
    let s = TestServer::start_with(|c| c.session.max_sessions_per_client = 2).await;
    let a = s.connected("alice").await;
    let b = s.connected("alice").await;
    a.heartbeat().await.unwrap();
    b.heartbeat().await.unwrap();
}

#[tokio::test]
async fn disconnect_closes_with_1000() {
    let s = TestServer::start().await;
    let c = s.connected("alice").await;
    assert_eq!(c.disconnect().await.unwrap().code, 1000);
}

#[tokio::test]
async fn cbor_sessions_are_answered_in_cbor() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.use_cbor();
    c.authenticate("alice", "alice-token").await.unwrap();
    let ack = c.register("alice-token").await.unwrap();
    assert_eq!(ack.status, 200);
    let f = c
        .request_frame(MessageType::Heartbeat, &json!({"timestamp": 7}))
        .await
        .unwrap();
    assert_eq!(f.payload_type, PayloadType::Cbor);
    let e = c.register("alice-token").await.unwrap_err();
    assert_eq!(e.code(), Some(409), "errors decode from CBOR too");
}

#[tokio::test]
async fn message_rate_is_limited_per_connection() {
    let s = TestServer::start_with(|c| c.security.max_messages_per_minute = 5).await;
    let c = s.connected("alice").await;
    let other = s.connected("bob").await;
    let mut codes = Vec::new();
    for _ in 0..6 {
        let f = c
            .request_frame(
                MessageType::Register,
                &json!({"version":"9.0.0","client_id":"alice","auth_token":"x"}),
            )
            .await
            .unwrap();
        codes.push(error_of(&f).error_code);
    }
    // CONNECT took one of the five.
    assert_eq!(codes, vec![400, 400, 400, 400, 429, 429]);
    c.heartbeat()
        .await
        .expect("heartbeats are not rate limited");
    other
        .register("bob-token")
        .await
        .expect("other connections are unaffected");
}

#[tokio::test]
async fn connection_limit_refuses_the_upgrade_with_503() {
    // A node's own limit: one node, whatever the suite runs as.
    let s = TestServer::start_single_with(|c| c.server.max_connections = 2).await;
    let _a = s.client().await;
    let _b = s.client().await;
    match Client::connect(&s.url).await {
        Err(ClientError::Ws(tokio_tungstenite::tungstenite::Error::Http(r))) => {
            assert_eq!(r.status(), 503)
        }
        other => panic!("expected HTTP 503, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn health_reports_counts_and_plain_get_on_root_says_upgrade() {
    let s = TestServer::start().await;
    let a = s.registered("alice").await;
    let b = s.registered("bob").await;
    a.create_room("alice-token", Some("h"), None).await.unwrap();
    b.join_room("bob-token", "h").await.unwrap();
    let (status, body) = http_get(&s.http(), "/health").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["registered_clients"], 2);
    if s.nodes() > 1 {
        // This node's counts, and the cluster's.
        assert_eq!(v["cluster"]["sessions"], 2, "{v}");
        assert_eq!(v["cluster"]["webrtc_sessions"], 2, "{v}");
        assert_eq!(v["cluster"]["rooms"], 1, "{v}");
        assert_eq!(v["cluster"]["nodes"].as_array().unwrap().len(), s.nodes());
        assert_eq!(v["cluster"]["redis"], "ok");
    } else {
        assert_eq!(v["active_connections"], 2);
        assert_eq!(v["webrtc_sessions"], 2);
        assert!(
            v.get("cluster").is_none(),
            "one node says nothing of a cluster"
        );
    }
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let (status, _) = http_get(&s.http(), "/").await;
    assert_eq!(status, 426);

    s.running().hub().store().close().await;
    let (status, body) = http_get(&s.node_http(0), "/health").await;
    assert_eq!(status, 503);
    assert!(body.contains("unhealthy"));
    let e = s
        .connected("carol")
        .await
        .register("carol-token")
        .await
        .unwrap_err();
    assert_eq!(
        e.code(),
        Some(503),
        "a store outage is a 503, not a hang or a 500"
    );
}

#[tokio::test]
async fn tokens_never_leave_the_server_and_are_stored_hashed() {
    let s = TestServer::start().await;
    let c = s.connected("alice").await;
    c.register("a-very-secret-registration-token")
        .await
        .unwrap();
    let row = s
        .running()
        .hub()
        .store()
        .get_client("alice")
        .await
        .unwrap()
        .unwrap();
    assert!(!row.auth_token.contains("a-very-secret"), "stored hashed");
    assert!(row.auth_token.starts_with("sha256$"));
    // The registered token now authenticates a CONNECT.
    let mut again = s.client().await;
    again
        .authenticate("alice", "a-very-secret-registration-token")
        .await
        .unwrap();
    let _ = token("alice");
}
