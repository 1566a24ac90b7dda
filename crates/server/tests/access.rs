//! Who may do what: a credential's room grants, checked in every dialect; the admin
//! role; which rooms and members the REST API shows to whom.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{JWT_SECRET, TestServer, http_get_bearer, jwt};
use serde_json::{Value, json};

/// A JWT for `sub` with extra claims (`rooms`, `admin`), signed with the test secret.
fn jwt_with(sub: &str, extra: Value) -> String {
    let mut claims = json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 3600});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn team_only(sub: &str) -> String {
    jwt_with(sub, json!({"rooms": ["team-*", "lobby"]}))
}

#[tokio::test]
async fn binary_clients_enter_only_the_rooms_their_jwt_grants() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.authenticate("erin", &team_only("erin")).await.unwrap();
    c.register("erin-registered-token-9f2c1d7e").await.unwrap();
    c.create_room("erin-registered-token-9f2c1d7e", Some("team-red"), None)
        .await
        .unwrap();
    c.create_room("erin-registered-token-9f2c1d7e", Some("lobby"), None)
        .await
        .unwrap();
    let e = c
        .create_room("erin-registered-token-9f2c1d7e", Some("board"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("board") && msg.contains("team-*, lobby"),
        "names the room and what is granted: {msg}"
    );
    // A room someone else made is refused too, and nothing of it is handed over.
    let alice = s.registered("alice").await;
    alice
        .create_room("alice-token", Some("board"), Some("v=0 alice's offer"))
        .await
        .unwrap();
    let e = c
        .join_room("erin-registered-token-9f2c1d7e", "board")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    // A prefix matches only at the start; an exact id only itself.
    let e = c
        .create_room("erin-registered-token-9f2c1d7e", Some("my-team-x"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    let e = c
        .create_room("erin-registered-token-9f2c1d7e", Some("lobby2"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    // The connection stays usable.
    c.heartbeat().await.unwrap();

    // The token registered over the JWT keeps its grant: connecting with it instead of
    // the JWT does not open other rooms.
    drop(c);
    let mut again = s.client().await;
    again
        .authenticate("erin", "erin-registered-token-9f2c1d7e")
        .await
        .unwrap();
    let e = again
        .join_room("erin-registered-token-9f2c1d7e", "board")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    again
        .create_room("erin-registered-token-9f2c1d7e", Some("team-blue"), None)
        .await
        .unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn without_a_rooms_claim_every_room_stays_open() {
    let s = TestServer::start().await;
    let mut c = s.client().await;
    c.authenticate("frank", &jwt("frank", None)).await.unwrap();
    // Without a `rooms` claim every room is open, as before grants existed.
    c.register("frank-registered-token-4b8e2a61").await.unwrap();
    c.create_room("frank-registered-token-4b8e2a61", Some("anything"), None)
        .await
        .unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn json_dialects_enter_only_the_rooms_their_jwt_grants() {
    let s = TestServer::start().await;
    // altair (seed 002): a JOIN outside the grant is an ERROR, the connection stays.
    let mut a = s.json(&format!("/ws?token={}", team_only("gina"))).await;
    a.send(&json!({"type": "JOIN", "room_id": "board", "payload": {}, "request_id": "r1"}))
        .await;
    let v = a.recv().await;
    assert_eq!(v["type"], "ERROR", "{v}");
    assert_eq!(
        v["payload"]["code"], "UNAUTHORIZED",
        "seed 002 has no other code for it: {v}"
    );
    assert_eq!(v["request_id"], "r1");
    assert!(
        v["payload"]["message"].as_str().unwrap().contains("board"),
        "{v}"
    );
    a.send(&json!({"type": "JOIN", "room_id": "team-a", "payload": {}, "request_id": "r2"}))
        .await;
    let v = a.recv().await;
    assert_ne!(v["type"], "ERROR", "{v}");

    // simple (seed 003).
    let mut b = s.json(&format!("/ws?token={}", team_only("hank"))).await;
    b.send_text(r#"{"type":"join","room":"board","sender":"hank"}"#)
        .await;
    let v = b.recv().await;
    assert_eq!(v["type"], "error", "{v}");
    assert!(v.to_string().contains("board"), "{v}");
    b.send_text(r#"{"type":"join","room":"team-a","sender":"hank"}"#)
        .await;
    let v = b.recv_type("joined").await;
    assert_eq!(v["room"], "team-a");

    // room-path (seed 004): the room is the path; refused with an error, then 1008.
    let mut c = s
        .json(&format!("/webrtc/ws/board?token={}", team_only("ivan")))
        .await;
    let (before, closed) = c.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert!(
        before
            .iter()
            .any(|m| m["type"] == "error" && m.to_string().contains("board")),
        "{before:?}"
    );
    let mut d = s
        .json(&format!("/webrtc/ws/team-a?token={}", team_only("ivan")))
        .await;
    d.recv_type("room_state").await;
    s.shutdown().await;
}

#[tokio::test]
async fn rooms_and_members_are_shown_to_members_and_admins_only() {
    let s = TestServer::start_with(|c| c.auth.admin_clients = vec!["dave".into()]).await;
    let alice = s.registered("alice").await;
    let bob = s.registered("bob").await;
    alice
        .create_room("alice-token", Some("private"), None)
        .await
        .unwrap();
    bob.join_room("bob-token", "private").await.unwrap();
    let carol = s.registered("carol").await;
    carol
        .create_room("carol-token", Some("carols"), None)
        .await
        .unwrap();
    let ids = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let http = s.http();
    // A member sees its rooms only.
    let (st, body) = http_get_bearer(&http, "/api/rooms", Some("bob-token")).await;
    assert_eq!(st, 200);
    assert_eq!(ids(&body), ["private"]);
    let (st, body) = http_get_bearer(&http, "/api/rooms", Some("carol-token")).await;
    assert_eq!(st, 200);
    assert_eq!(ids(&body), ["carols"]);
    // An authenticated stranger sees none, and a room's detail is not found for it.
    let stranger = jwt("mallory", None);
    let (st, body) = http_get_bearer(&http, "/api/rooms", Some(&stranger)).await;
    assert_eq!((st, ids(&body).len()), (200, 0), "{body}");
    let (st, body) = http_get_bearer(&http, "/api/rooms/private", Some(&stranger)).await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = http_get_bearer(&http, "/api/rooms/private", Some("carol-token")).await;
    assert_eq!(st, 404, "{body}");
    let (st, body) = http_get_bearer(&http, "/api/rooms/private", Some("bob-token")).await;
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"peer_id\":\"alice\""), "{body}");
    // Admins see every room: by auth.admin_clients (an API key here) or a JWT's claim.
    let (_, body) = http_get_bearer(&http, "/api/rooms", Some("dave-token")).await;
    assert_eq!(ids(&body), ["private", "carols"]);
    let admin = jwt_with("ops", json!({"admin": true}));
    let (_, body) = http_get_bearer(&http, "/api/rooms", Some(&admin)).await;
    assert_eq!(ids(&body), ["private", "carols"]);
    let (st, _) = http_get_bearer(&http, "/api/rooms/carols", Some(&admin)).await;
    assert_eq!(st, 200);
    // Participants: to whoever may join the room.
    let (st, body) =
        http_get_bearer(&http, "/webrtc/rooms/private/participants", Some(&stranger)).await;
    assert_eq!(st, 200, "no rooms claim: any room may be joined: {body}");
    let (st, body) = http_get_bearer(
        &http,
        "/webrtc/rooms/private/participants",
        Some(&team_only("judy")),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("private"), "{body}");
    let (st, _) = http_get_bearer(
        &http,
        "/webrtc/rooms/team-x/participants",
        Some(&team_only("judy")),
    )
    .await;
    assert_eq!(st, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn a_token_registered_over_a_jwt_dies_with_the_jwt() {
    let s = TestServer::start().await;
    let exp = chrono::Utc::now().timestamp() + 2;
    let short = {
        let claims = json!({"sub": "kate", "exp": exp});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let mut c = s.client().await;
    c.authenticate("kate", &short).await.unwrap();
    let ack = c.register("kate-wants-this-forever-7c1e").await.unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(ack.token_expires_at.as_deref().unwrap())
        .unwrap()
        .timestamp();
    assert_eq!(at, exp, "the registered token expires with the JWT");
    // Before the JWT's expiry the registered token works; after it, it is refused.
    let mut ok = s.client().await;
    ok.authenticate("kate", "kate-wants-this-forever-7c1e")
        .await
        .unwrap();
    drop(ok);
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::try_from((exp - chrono::Utc::now().timestamp() + 1) * 1000).unwrap_or(0),
    ))
    .await;
    let mut late = s.client().await;
    let e = late
        .authenticate("kate", "kate-wants-this-forever-7c1e")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    // With a fresh credential, REGISTER again replaces the expired registration.
    let mut again = s.client().await;
    again
        .authenticate("kate", &jwt("kate", None))
        .await
        .unwrap();
    again.register("kate-second-token-5d9a0b").await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn the_server_issues_a_token_for_an_empty_one_and_ttl_ends_tokens() {
    // Long enough for the steps before the expiry on a slow store (PostgreSQL, in a
    // debug build).
    let s = TestServer::start_with(|c| c.auth.registered_token_ttl = 5).await;
    let mut c = s.client().await;
    c.authenticate("alice", "alice-token").await.unwrap();
    let ack = c.register("").await.unwrap();
    let issued = ack.auth_token.expect("an issued token");
    assert_eq!(issued.len(), 64, "{issued}");
    assert!(issued.bytes().all(|b| b.is_ascii_hexdigit()), "{issued}");
    let expires = chrono::DateTime::parse_from_rfc3339(
        ack.token_expires_at.as_deref().expect("the TTL applies"),
    )
    .unwrap()
    .timestamp();
    drop(c);
    let mut c = s.client().await;
    c.authenticate("alice", &issued).await.unwrap();
    // A room request on it works while it lasts.
    c.create_room(&issued, Some("issued-room"), None)
        .await
        .unwrap();
    drop(c);
    while chrono::Utc::now().timestamp() <= expires {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let mut c = s.client().await;
    let e = c.authenticate("alice", &issued).await.unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    assert!(e.to_string().contains("expired"), "{e}");
    s.shutdown().await;
}

#[tokio::test]
async fn room_joins_per_client_and_messages_per_room_are_limited() {
    let s = TestServer::start_with(|c| {
        c.security.room_joins_per_minute = 3;
        c.security.room_messages_per_second = 5;
    })
    .await;
    let mut alice = s.registered("alice").await;
    for room in ["rate-1", "rate-2", "rate-3"] {
        alice
            .create_room("alice-token", Some(room), None)
            .await
            .unwrap();
    }
    let e = alice
        .create_room("alice-token", Some("rate-4"), None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(429), "{e}");
    assert!(e.to_string().contains("3 rooms a minute"), "{e}");
    // Another client's joins are its own.
    let mut bob = s.registered("bob").await;
    bob.join_room("bob-token", "rate-1").await.unwrap();
    let carol = s.registered("carol").await;
    carol.join_room("carol-token", "rate-2").await.unwrap();

    // 40 offers at once into one room: about 5 get through, the sender is told why
    // for the rest.
    for i in 0..40 {
        alice
            .send_offer("bob", Some("rate-1"), &format!("v=0 {i}"))
            .await
            .unwrap();
    }
    let mut refused = 0;
    while let Ok(f) = alice
        .next_event_within(std::time::Duration::from_millis(500))
        .await
    {
        if f.msg_type == signal_client::protocol::MessageType::Error {
            let p: signal_client::protocol::payload::ErrorPayload =
                signal_client::decode(&f).unwrap();
            assert_eq!(p.error_code, 429, "{p:?}");
            assert!(p.error_message.contains("rate-1"), "{p:?}");
            refused += 1;
        }
    }
    let mut got = 0;
    while let Ok(f) = bob
        .next_event_within(std::time::Duration::from_millis(300))
        .await
    {
        if f.msg_type == signal_client::protocol::MessageType::SignalOffer {
            got += 1;
        }
    }
    assert!(
        (5..=10).contains(&got),
        "a burst of 5, a few refilled: {got}"
    );
    assert_eq!(got + refused, 40, "each offer relayed or refused");
    // Another room is untouched.
    alice
        .send_offer("carol", Some("rate-2"), "v=0 elsewhere")
        .await
        .unwrap();
    let mut carol = carol;
    carol
        .expect_event(
            signal_client::protocol::MessageType::SignalOffer,
            common::WAIT,
        )
        .await
        .unwrap();
    s.shutdown().await;
}
