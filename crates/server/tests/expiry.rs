//! Credentials that expire on open connections, in every dialect: a warning before, a
//! close at expiry, and a fresh credential handed over the open socket that keeps it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{JWT_SECRET, TestServer, jwt};
use serde_json::json;
use signal_client::{
    decode,
    protocol::{MessageType, payload::TokenExpiring},
};

/// A JWT for `sub` that expires `secs` seconds from now.
fn jwt_for(sub: &str, secs: i64) -> (String, i64) {
    let exp = chrono::Utc::now().timestamp() + secs;
    let t = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    (t, exp)
}

/// Warned 2 s before expiry.
async fn server() -> TestServer {
    TestServer::start_with(|c| c.auth.expiry_warning = 2).await
}

const LONG: Duration = Duration::from_secs(8);

#[tokio::test]
async fn a_binary_connection_is_warned_then_closed_when_its_jwt_expires() {
    let s = server().await;
    let (token, exp) = jwt_for("alice", 3);
    let mut c = s.client().await;
    c.authenticate("alice", &token).await.unwrap();
    let f = c
        .expect_event(MessageType::TokenExpiring, LONG)
        .await
        .unwrap();
    let w: TokenExpiring = decode(&f).unwrap();
    assert_eq!(
        chrono::DateTime::parse_from_rfc3339(&w.expires_at)
            .unwrap()
            .timestamp(),
        exp
    );
    assert!(w.seconds_left <= 2, "{w:?}");
    let closed = tokio::time::timeout(LONG, c.closed()).await.unwrap();
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert!(closed.reason.contains("credential expired"), "{closed:?}");
    assert!(
        chrono::Utc::now().timestamp() >= exp,
        "not closed before the expiry"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn a_fresh_jwt_over_the_open_socket_keeps_the_connection() {
    let s = server().await;
    let (token, exp) = jwt_for("bob", 3);
    let mut c = s.client().await;
    c.authenticate("bob", &token).await.unwrap();
    c.expect_event(MessageType::TokenExpiring, LONG)
        .await
        .unwrap();
    // Another client's token, or a bad one, is refused and changes nothing.
    let e = c.refresh_token(&jwt("carol", None)).await.unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    let e = c.refresh_token("not-a-token").await.unwrap_err();
    assert_eq!(e.code(), Some(401), "{e}");
    let ack = c.refresh_token(&jwt("bob", None)).await.unwrap();
    assert!(ack.expires_at.is_some(), "{ack:?}");
    // Past the first token's expiry the connection still works.
    while chrono::Utc::now().timestamp() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.heartbeat().await.unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn json_dialects_are_warned_closed_or_refreshed() {
    let s = server().await;
    // altair: warned, then closed.
    let (token, _) = jwt_for("dora", 3);
    let mut a = s.json(&format!("/ws?token={token}")).await;
    a.send(&json!({"type": "KEEP_ALIVE"})).await;
    a.recv_type("ACK").await;
    let w = a.recv_type("TOKEN_EXPIRING").await;
    assert!(w["payload"]["expires_at"].is_string(), "{w}");
    let (_, closed) = a.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");

    // simple: refreshed, stays.
    let (token, exp) = jwt_for("eve", 3);
    let mut b = s.json(&format!("/ws?token={token}")).await;
    b.send_text(r#"{"type":"join","room":"expiry-room","sender":"eve"}"#)
        .await;
    b.recv_type("joined").await;
    b.recv_type("token_expiring").await;
    b.send(&json!({"type": "refresh_token", "payload": {"token": jwt("eve", None)}}))
        .await;
    let r = b.recv_type("token_refreshed").await;
    assert!(r["payload"]["expires_at"].is_string(), "{r}");
    while chrono::Utc::now().timestamp() <= exp + 1 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.send_text(r#"{"type":"leave","room":"expiry-room","sender":"eve"}"#)
        .await;
    b.recv_type("left").await;

    // room-path: warned, then an error-free close 1008.
    let (token, _) = jwt_for("finn", 3);
    let mut c = s.json(&format!("/webrtc/ws/expiry-2?token={token}")).await;
    c.recv_type("room_state").await;
    c.recv_type("token_expiring").await;
    let (_, closed) = c.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    s.shutdown().await;
}
