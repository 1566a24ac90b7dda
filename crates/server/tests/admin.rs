//! The admin API with real clients: every room, taking a member out, closing a room,
//! kicking and banning a client, draining a node; and that only admins may.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, WAIT, free_port, http_request, spawn_binary, wait_listening};
use serde_json::{Value, json};
use signal_client::{
    Client, decode,
    protocol::{
        MessageType,
        payload::{PeerLeft, RoomClosed},
    },
};

/// `auth.admin_clients = ["dave"]`: dave's API key token is an admin credential.
async fn server() -> TestServer {
    TestServer::start_with(|c| c.auth.admin_clients = vec!["dave".into()]).await
}

async fn admin(s: &TestServer, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let (st, body) = http_request(&s.http(), method, path, Some("dave-token"), body).await;
    (st, serde_json::from_str(&body).unwrap_or(Value::Null))
}

/// alice creates `room` (the sender), bob joins it.
async fn room_of_two(s: &TestServer, room: &str) -> (Client, Client) {
    let mut alice = s.registered("alice").await;
    let bob = s.registered("bob").await;
    alice
        .create_room("alice-token", Some(room), None)
        .await
        .unwrap();
    bob.join_room("bob-token", room).await.unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    (alice, bob)
}

#[tokio::test]
async fn only_admins_reach_the_admin_api() {
    let s = server().await;
    let routes = [
        ("GET", "/api/admin/rooms"),
        ("DELETE", "/api/admin/rooms/lobby"),
        ("DELETE", "/api/admin/rooms/lobby/members/bob"),
        ("POST", "/api/admin/clients/bob/kick"),
        ("POST", "/api/admin/drain"),
    ];
    for (method, path) in routes {
        let (st, _) = http_request(&s.http(), method, path, None, None).await;
        assert_eq!(st, 401, "{method} {path} without a token");
        let (st, body) = http_request(&s.http(), method, path, Some("bob-token"), None).await;
        assert_eq!(st, 403, "{method} {path} as bob: {body}");
        assert!(body.contains("admin"), "{body}");
    }
    let (st, body) = admin(&s, "GET", "/api/admin/rooms", None).await;
    assert_eq!((st, body), (200, json!({"rooms": []})));
    s.shutdown().await;
}

#[tokio::test]
async fn an_admin_sees_every_room_with_its_members() {
    let s = server().await;
    let _pair = room_of_two(&s, "standup").await;
    let carol = s.registered("carol").await;
    carol
        .create_room("carol-token", Some("solo"), None)
        .await
        .unwrap();
    let (st, body) = admin(&s, "GET", "/api/admin/rooms", None).await;
    assert_eq!(st, 200, "{body}");
    let rooms = body["rooms"].as_array().unwrap();
    let ids: Vec<&str> = rooms.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["standup", "solo"]);
    let peers: Vec<&str> = rooms[0]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["alice", "bob"]);
    s.shutdown().await;
}

#[tokio::test]
async fn a_member_taken_out_is_told_the_others_see_it_leave_and_it_may_return() {
    let s = server().await;
    let (mut alice, mut bob) = room_of_two(&s, "desk").await;
    let (st, body) = admin(
        &s,
        "DELETE",
        "/api/admin/rooms/desk/members/bob?reason=off%20topic",
        None,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let f = bob
        .expect_event(MessageType::RoomClosed, WAIT)
        .await
        .unwrap();
    let rc: RoomClosed = decode(&f).unwrap();
    assert_eq!(rc.room_id, "desk");
    assert_eq!(rc.reason, "off topic (admin 'dave')");
    let f = alice
        .expect_event(MessageType::PeerLeft, WAIT)
        .await
        .unwrap();
    let pl: PeerLeft = decode(&f).unwrap();
    assert_eq!(pl.client_id, "bob");
    assert_eq!(pl.reason, "off topic (admin 'dave')");
    // Still connected, and may join again (no ban).
    bob.heartbeat().await.unwrap();
    bob.join_room("bob-token", "desk").await.unwrap();
    // Not a member, or no such room: 404.
    let (st, _) = admin(&s, "DELETE", "/api/admin/rooms/desk/members/carol", None).await;
    assert_eq!(st, 404);
    let (st, _) = admin(&s, "DELETE", "/api/admin/rooms/nowhere/members/bob", None).await;
    assert_eq!(st, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn a_closed_room_tells_every_member_and_ends() {
    let s = server().await;
    let (mut alice, mut bob) = room_of_two(&s, "town-hall").await;
    let (st, body) = admin(&s, "DELETE", "/api/admin/rooms/town-hall", None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["members"], 2);
    for c in [&mut alice, &mut bob] {
        let f = c.expect_event(MessageType::RoomClosed, WAIT).await.unwrap();
        let rc: RoomClosed = decode(&f).unwrap();
        assert_eq!(rc.room_id, "town-hall");
        assert!(rc.reason.contains("admin 'dave'"), "{}", rc.reason);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (st, _) = admin(&s, "GET", "/api/admin/rooms", None).await;
        let (_, body) = admin(&s, "GET", "/api/admin/rooms", None).await;
        if st == 200 && body["rooms"] == json!([]) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (st, _) = admin(&s, "DELETE", "/api/admin/rooms/town-hall", None).await;
    assert_eq!(st, 404);
    s.shutdown().await;
}

#[tokio::test]
async fn a_kicked_and_banned_client_cannot_come_back_within_the_ban() {
    let s = server().await;
    let (mut alice, mut bob) = room_of_two(&s, "court").await;
    let (st, body) = admin(
        &s,
        "POST",
        "/api/admin/clients/bob/kick",
        Some(r#"{"reason": "spam", "ban_minutes": 10}"#),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["unregistered"], true, "{body}");
    let until = chrono::DateTime::parse_from_rfc3339(body["banned_until"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let in_ten = chrono::Utc::now().timestamp() + 600;
    assert!((in_ten - 5..=in_ten + 5).contains(&until), "{body}");
    let closed = bob.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert!(closed.reason.contains("spam"), "{closed:?}");
    let f = alice
        .expect_event(MessageType::PeerLeft, WAIT)
        .await
        .unwrap();
    let pl: PeerLeft = decode(&f).unwrap();
    assert_eq!(pl.client_id, "bob");
    // Within the ban: CONNECT is refused, on every credential and dialect.
    let mut c = s.client().await;
    let e = c.authenticate("bob", "bob-token").await.unwrap_err();
    assert_eq!(e.code(), Some(403), "{e}");
    assert!(e.to_string().contains("banned until"), "{e}");
    let mut j = s.json("/ws?token=bob-token").await;
    j.send(&json!({"type": "JOIN", "room_id": "court", "payload": {}, "request_id": "2"}))
        .await;
    let (before, closed) = j.closed().await;
    assert!(
        before.iter().any(|m| m.to_string().contains("banned")) || closed.reason.contains("banned"),
        "{before:?} {closed:?}"
    );
    // Its registered token died with the ban: it must register again after it.
    assert!(
        s.running()
            .hub()
            .store()
            .get_client("bob")
            .await
            .unwrap()
            .is_none(),
        "registration deleted"
    );
    // Others are untouched.
    alice.heartbeat().await.unwrap();
    // A kick without a ban, here of a JSON (altair) session, lets it back at once.
    let mut carol = s.json("/ws?token=carol-token").await;
    carol
        .send(&json!({"type": "JOIN", "room_id": "court", "payload": {}, "request_id": "1"}))
        .await;
    carol.recv().await;
    let (st, body) = admin(&s, "POST", "/api/admin/clients/carol/kick", None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["banned_until"], Value::Null);
    let (_, closed) = carol.closed().await;
    assert_eq!(closed.code, 1008, "{closed:?}");
    assert!(
        closed.reason.contains("admin 'dave' kicked you"),
        "{closed:?}"
    );
    s.connected("carol").await;
    // Bad bodies are refused precisely.
    let (st, body) = admin(
        &s,
        "POST",
        "/api/admin/clients/carol/kick",
        Some(r#"{"ban_minutes": 9999999}"#),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    let (st, _) = admin(
        &s,
        "POST",
        "/api/admin/clients/carol/kick",
        Some(r#"{"ban": 5}"#),
    )
    .await;
    assert!(st == 400 || st == 422, "unknown field: {st}");
    s.shutdown().await;
}

#[tokio::test]
async fn an_admin_drains_a_node_and_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("drain.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nshutdown_timeout = 5\n\n\
             [auth]\napi_keys = [\"alice:alice-token\", \"ops:ops-token\"]\nadmin_clients = [\"ops\"]\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[metrics]\nenabled = false\n",
            dir.path().join("drain.db").display()
        ),
    )
    .unwrap();
    let mut child = spawn_binary(&config);
    wait_listening(port).await;
    let mut alice = Client::connect(&format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap();
    alice.authenticate("alice", "alice-token").await.unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let (st, _) = http_request(&base, "POST", "/api/admin/drain", Some("alice-token"), None).await;
    assert_eq!(st, 403);
    let (st, body) = http_request(&base, "POST", "/api/admin/drain", Some("ops-token"), None).await;
    assert_eq!(st, 202, "{body}");
    assert!(body.contains("draining"), "{body}");
    let closed = alice.closed().await;
    assert_eq!(closed.code, 1001, "{closed:?}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(std::time::Instant::now() < deadline, "did not exit");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

/// The operator's log of a real binary: connections opened and closed with their peer
/// address, refused credentials with their reason, every endpoint at start-up, and an
/// attack's refusals capped rather than flooding it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_and_refusals_are_logged_for_the_operator() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("log.toml");
    let log = dir.path().join("server.log");
    std::fs::write(
        &config,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nshutdown_timeout = 5\n\n\
             [auth]\napi_keys = [\"alice:alice-token\"]\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[metrics]\nenabled = false\n\n\
             [security]\nnew_connections_per_ip_per_second = 10000\nmax_connections_per_ip = 10000\n\n\
             [logging]\nlevel = \"info\"\nformat = \"json\"\nfile = \"{}\"\n",
            dir.path().join("log.db").display(),
            log.display()
        ),
    )
    .unwrap();
    let mut child = spawn_binary(&config);
    wait_listening(port).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let mut alice = Client::connect(&url).await.unwrap();
    alice.authenticate("alice", "alice-token").await.unwrap();
    let mut mallory = Client::connect(&url).await.unwrap();
    mallory.authenticate("mallory", "guess").await.unwrap_err();
    let _ = mallory.closed().await;
    let (st, _) = http_request(
        &format!("http://127.0.0.1:{port}"),
        "GET",
        "/api/rooms",
        Some("not-a-token"),
        None,
    )
    .await;
    assert_eq!(st, 401);
    alice.disconnect().await.unwrap();
    // A burst of refused logins: the log keeps at most 100 such lines a second.
    let burst = (0..400).map(|_| {
        let url = url.clone();
        async move {
            let mut c = Client::connect(&url).await.unwrap();
            let _ = c.authenticate("mallory", "guess").await;
        }
    });
    futures_util::future::join_all(burst).await;
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    // One more after the burst says how many were left out.
    let mut late = Client::connect(&url).await.unwrap();
    let _ = late.authenticate("mallory", "late").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let msg = |l: &Value| l["fields"]["message"].as_str().unwrap_or("").to_owned();
    let start = lines
        .iter()
        .map(msg)
        .find(|m| m.starts_with("listening"))
        .expect("a start-up line");
    for endpoint in [
        "/ws",
        "/webrtc/ws/{room_id}",
        "/api/",
        "/demo",
        "/health",
        "metrics off",
    ] {
        assert!(start.contains(endpoint), "{endpoint} in {start}");
    }
    let of = |m: &str| -> Vec<&Value> { lines.iter().filter(|l| msg(l) == m).collect() };
    let opened = of("connection opened");
    let alice_open = opened
        .iter()
        .find(|l| l["fields"]["client_id"] == "alice")
        .expect("alice's connection opened");
    assert!(
        alice_open["fields"]["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{alice_open}"
    );
    assert_eq!(alice_open["level"], "INFO");
    assert_eq!(alice_open["fields"]["dialect"], "binary");
    let alice_closed = of("connection closed")
        .into_iter()
        .find(|l| l["fields"]["client_id"] == "alice")
        .expect("alice's connection closed");
    assert_eq!(alice_closed["fields"]["code"], 1000, "{alice_closed}");
    assert!(alice_closed["fields"]["peer"].is_string());
    let refused = of("credential refused");
    assert!(
        refused.iter().any(|l| l["fields"]["status"] == 401
            && l["fields"]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("Invalid"))
            && l["fields"]["peer"].is_string()),
        "{refused:?}"
    );
    assert!(
        refused.iter().any(|l| l["fields"]["path"] == "/api/rooms"),
        "the REST refusal: {refused:?}"
    );
    assert!(
        refused.len() < 300,
        "the burst of 400 refusals was capped: {} lines",
        refused.len()
    );
    // The first access line written after a capped stretch (a refusal, or the close of
    // a refused connection) carries the count.
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["suppressed"].as_u64().is_some_and(|n| n > 0)),
        "a line after the cap says how many were left out"
    );
}
