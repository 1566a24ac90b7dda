//! Lifecycle events end to end: a room's life produces exactly its events, in order,
//! signed, at a webhook receiver of the test's own that checks every signature; a
//! receiver that fails for a while still gets every event in order; events committed by a
//! process killed with SIGKILL before it could deliver them are delivered by the next
//! start; and a consumer reads what it missed from `/api/rooms/{id}/events`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use common::{TestServer, free_port, http_get_bearer, spawn_binary, token, wait_listening};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use signal_client::protocol::MessageType;
use std::sync::Mutex;

const SECRET: &str = "a-webhook-secret-of-some-length";

/// A webhook receiver: checks each request's signature, answers 503 to the first
/// `fail` requests, and keeps the events it acknowledged.
#[derive(Clone, Default)]
struct Receiver {
    fail: Arc<AtomicUsize>,
    got: Arc<Mutex<Vec<Value>>>,
    refused: Arc<AtomicUsize>,
    bad_signatures: Arc<Mutex<Vec<String>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let sig = headers
        .get("x-signal-manager-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let parts: Vec<&str> = sig.split(',').collect();
    let t = parts.first().and_then(|p| p.strip_prefix("t="));
    let v1 = parts.get(1).and_then(|p| p.strip_prefix("v1="));
    let ok = match (t, v1) {
        (Some(t), Some(v1)) => {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(format!("{t}.").as_bytes());
            mac.update(&body);
            let fresh = t
                .parse::<i64>()
                .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
            fresh && hex::decode(v1).is_ok_and(|v| mac.verify_slice(&v).is_ok())
        }
        _ => false,
    };
    if !ok {
        r.bad_signatures.lock().unwrap().push(sig);
        return StatusCode::UNAUTHORIZED;
    }
    if r.fail
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        r.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let event: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        headers["x-signal-manager-event-id"].to_str().unwrap(),
        event["id"].as_str().unwrap()
    );
    r.got.lock().unwrap().push(event);
    StatusCode::NO_CONTENT
}

impl Receiver {
    /// Serves on `addr` (a free port when `None`).
    async fn start(self, addr: Option<SocketAddr>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind(addr.unwrap_or(([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(self);
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (addr, task)
    }

    /// Waits until `n` events were acknowledged; they, in order.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} events arrived: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn with_webhook(c: &mut signal_server::config::Config, addr: SocketAddr) {
    c.events.webhook_url = Some(format!("http://{addr}/hook"));
    c.events.webhook_secret = Some(SECRET.into());
    c.events.retry_initial = 50;
    c.events.retry_max = 200;
    c.events.poll_interval = 20;
}

/// `(type, client_id, room_id, seq)` of each event.
fn steps(events: &[Value]) -> Vec<Step> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["client_id"].as_str().unwrap_or_default().to_owned(),
                e["room_id"].as_str().map(str::to_owned),
                e["seq"].as_u64(),
            )
        })
        .collect()
}

type Step = (String, String, Option<String>, Option<u64>);

/// Steps by what orders them: a room's events (by room), an event of no room (by client).
/// Order is kept within each; events of different rooms and clients may interleave.
fn by_group(steps: Vec<Step>) -> std::collections::BTreeMap<String, Vec<Step>> {
    let mut out: std::collections::BTreeMap<String, Vec<Step>> = Default::default();
    for s in steps {
        let key = match &s.2 {
            Some(r) => format!("room:{r}"),
            None => format!("client:{}", s.1),
        };
        out.entry(key).or_default().push(s);
    }
    out
}

fn step(
    t: &str,
    c: &str,
    room: Option<&str>,
    seq: Option<u64>,
) -> (String, String, Option<String>, Option<u64>) {
    (t.into(), c.into(), room.map(Into::into), seq)
}

/// Alice and Bob register; Alice creates a room, Bob joins, Bob leaves, Alice leaves (the
/// room ends); both disconnect.
async fn room_life(server: &TestServer, room: &str) {
    let mut alice = server.registered("alice").await;
    let mut bob = server.registered("bob").await;
    alice
        .create_room(&token("alice"), Some(room), None)
        .await
        .unwrap();
    bob.join_room(&token("bob"), room).await.unwrap();
    // One offer answered, one not; Bob's first candidate.
    alice
        .send_offer("bob", Some(room), "v=0 offer")
        .await
        .unwrap();
    bob.expect_event(MessageType::SignalOffer, Duration::from_secs(5))
        .await
        .unwrap();
    bob.send_answer("alice", Some(room), "v=0 answer")
        .await
        .unwrap();
    bob.send_candidate(
        "alice",
        Some(room),
        "candidate:1 1 udp 1 10.0.0.1 9 typ host",
        Some("0"),
        Some(0),
    )
    .await
    .unwrap();
    bob.send_candidate(
        "alice",
        Some(room),
        "candidate:2 1 udp 1 10.0.0.2 9 typ host",
        Some("0"),
        Some(0),
    )
    .await
    .unwrap();
    for _ in 0..2 {
        alice
            .expect_event(MessageType::SignalIceCandidate, Duration::from_secs(5))
            .await
            .unwrap();
    }
    alice
        .send_offer("bob", Some(room), "v=0 again")
        .await
        .unwrap();
    bob.expect_event(MessageType::SignalOffer, Duration::from_secs(5))
        .await
        .unwrap();
    bob.leave_room(&token("bob"), room).await.unwrap();
    alice.leave_room(&token("alice"), room).await.unwrap();
    bob.disconnect().await.unwrap();
    alice.disconnect().await.unwrap();
}

fn the_life_of(room: &str) -> Vec<Step> {
    let r = Some(room);
    vec![
        step("session.connected", "alice", None, None),
        step("client.registered", "alice", None, None),
        step("session.connected", "bob", None, None),
        step("client.registered", "bob", None, None),
        step("room.created", "alice", r, Some(1)),
        step("member.joined", "alice", r, Some(2)),
        step("member.joined", "bob", r, Some(3)),
        step("member.left", "bob", r, Some(4)),
        step("member.left", "alice", r, Some(5)),
        step("room.terminated", "alice", r, Some(6)),
        step("session.disconnected", "bob", None, None),
        step("session.disconnected", "alice", None, None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_life_produces_its_events_in_order_signed() {
    let receiver = Receiver::default();
    let (addr, _task) = receiver.clone().start(None).await;
    let server = TestServer::start_single_with(|c| {
        with_webhook(c, addr);
        c.auth.admin_clients = vec!["ops".into()];
    })
    .await;
    room_life(&server, "evented").await;
    let got = receiver.wait_for(12).await;
    assert_eq!(by_group(steps(&got)), by_group(the_life_of("evented")));
    assert!(receiver.bad_signatures.lock().unwrap().is_empty());
    for e in &got {
        let at = e["at"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(at).is_ok() && at.len() == 24,
            "RFC 3339 with milliseconds: {at}"
        );
        assert!(e["node_id"].as_str().is_some_and(|n| !n.is_empty()), "{e}");
        assert!(
            uuid::Uuid::parse_str(e["id"].as_str().unwrap()).is_ok(),
            "{e}"
        );
    }
    let of = |t: &str, c: &str| {
        got.iter()
            .find(|e| e["type"] == t && e["client_id"] == c)
            .unwrap()
            .clone()
    };
    assert_eq!(
        of("room.terminated", "alice")["data"]["participant_count"],
        2
    );
    // The room's negotiations: one offer answered, one left when its sender left.
    let n = &of("room.terminated", "alice")["data"]["negotiation"];
    assert_eq!(n["offers"], 2, "{n}");
    assert_eq!(n["answered"], 1, "{n}");
    assert_eq!(n["unanswered"], 1, "{n}");
    assert_eq!(n["first_candidates"], 1, "only the first of Bob's two: {n}");
    assert!(n["offer_answer_ms_mean"].is_u64(), "{n}");
    assert!(n["join_first_candidate_ms_max"].is_u64(), "{n}");
    assert!(
        of("member.left", "bob")["data"]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "a leave says why"
    );
    // Nothing more comes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.got.lock().unwrap().len(), 12, "each event once");

    // A consumer (with the admin role: the room has ended) catches up from seq 3.
    let http = server.http();
    let admin = signal_core::auth::issue_jwt(common::JWT_SECRET, "ops", None, 300).unwrap();
    let (status, body) =
        http_get_bearer(&http, "/api/rooms/evented/events?since=3", Some(&admin)).await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [4, 5, 6]);
    assert_eq!(page["next_since"], 6);
    assert_eq!(
        page["events"][0],
        of("member.left", "bob"),
        "the same JSON as the webhook got"
    );
    let (status, _) =
        http_get_bearer(&http, "/api/rooms/evented/events?limit=0", Some(&admin)).await;
    assert_eq!(status, 400);
    let (status, _) = http_get_bearer(&http, "/api/rooms/evented/events", None).await;
    assert_eq!(status, 401);
    // Someone no longer in the room, and not an admin, is refused.
    let (status, body) =
        http_get_bearer(&http, "/api/rooms/evented/events", Some(&token("alice"))).await;
    assert_eq!(status, 403, "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_for_a_while_still_gets_every_event_in_order() {
    let receiver = Receiver::default();
    receiver.fail.store(7, Ordering::SeqCst);
    let (addr, _task) = receiver.clone().start(None).await;
    let server = TestServer::start_single_with(|c| with_webhook(c, addr)).await;
    room_life(&server, "flaky").await;
    let got = receiver.wait_for(12).await;
    assert_eq!(receiver.refused.load(Ordering::SeqCst), 7, "it did fail");
    // Each event arrives once it was acknowledged; a room's in seq order, each client's in
    // the order they happened.
    let room: Vec<u64> = got.iter().filter_map(|e| e["seq"].as_u64()).collect();
    assert_eq!(
        room,
        [1, 2, 3, 4, 5, 6],
        "room events in order, none lost or repeated"
    );
    for who in ["alice", "bob"] {
        let mine: Vec<String> = steps(&got)
            .into_iter()
            .filter(|(_, c, r, _)| c == who && r.is_none())
            .map(|(t, ..)| t)
            .collect();
        assert_eq!(
            mine,
            [
                "session.connected",
                "client.registered",
                "session.disconnected"
            ],
            "{who}"
        );
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_committed_before_a_kill_are_delivered_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let hook_port = free_port();
    let port = free_port();
    let config = dir.path().join("events.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nshutdown_timeout = 5\n\n\
             [auth]\napi_keys = [\"alice:alice-token\", \"bob:bob-token\"]\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[metrics]\nenabled = false\n\n\
             [events]\nwebhook_url = \"http://127.0.0.1:{hook_port}/hook\"\n\
             webhook_secret = \"{SECRET}\"\nretry_initial = 50\nretry_max = 200\npoll_interval = 20\n",
            dir.path().join("signal.db").display()
        ),
    )
    .unwrap();
    // Nobody listens on the webhook's port: every event stays in the outbox.
    let mut child = spawn_binary(&config);
    wait_listening(port).await;
    let url = format!("ws://127.0.0.1:{port}/");
    let alice = signal_client::Client::connect(&url).await.unwrap();
    let mut alice = alice;
    alice.authenticate("alice", &token("alice")).await.unwrap();
    alice.register(&token("alice")).await.unwrap();
    alice
        .create_room(&token("alice"), Some("survivor"), None)
        .await
        .unwrap();
    // Killed with the room open and nothing delivered.
    child.kill().unwrap();
    child.wait().unwrap();

    let receiver = Receiver::default();
    let (_, _task) = receiver
        .clone()
        .start(Some(([127, 0, 0, 1], hook_port).into()))
        .await;
    let mut child = spawn_binary(&config);
    wait_listening(port).await;
    // What the killed process committed, then the room closed by this start's recovery.
    let got = receiver.wait_for(6).await;
    let r = Some("survivor");
    assert_eq!(
        by_group(steps(&got)),
        by_group(vec![
            step("session.connected", "alice", None, None),
            step("client.registered", "alice", None, None),
            step("room.created", "alice", r, Some(1)),
            step("member.joined", "alice", r, Some(2)),
            step("member.left", "alice", r, Some(3)),
            step("room.terminated", "", r, Some(4)),
        ])
    );
    let left = got.iter().find(|e| e["type"] == "member.left").unwrap();
    assert_eq!(
        left["data"]["reason"],
        "server restarted while the room was active"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_publishes_each_event_once() {
    let receiver = Receiver::default();
    let (addr, _task) = receiver.clone().start(None).await;
    // Two nodes on one PostgreSQL and one redis-server of the test's own, behind a
    // round-robin balancer: Alice lands on node 0, Bob on node 1.
    let server = TestServer::start_nodes(2, |c| with_webhook(c, addr)).await;
    assert_eq!(server.nodes(), 2);
    room_life(&server, "spread").await;
    let got = receiver.wait_for(12).await;
    assert_eq!(by_group(steps(&got)), by_group(the_life_of("spread")));
    let nodes: std::collections::BTreeSet<&str> =
        got.iter().filter_map(|e| e["node_id"].as_str()).collect();
    assert_eq!(nodes.len(), 2, "events of both nodes: {nodes:?}");
    // Both nodes see the shared outbox; only the lease holder publishes it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.got.lock().unwrap().len(), 12, "each event once");
    server.shutdown().await;
}

/// A Pub/Sub REST call to the emulator at `host`: (status, JSON answer). The emulator
/// keeps connections open, so the answer is read by its `content-length`.
async fn pubsub(host: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let s = tokio::net::TcpStream::connect(host).await.unwrap();
    let mut s = tokio::io::BufReader::new(s);
    let body = body.to_string();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.get_mut().write_all(req.as_bytes()).await.unwrap();
    let read = async {
        let mut status = 0u16;
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            s.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some(code) = l.strip_prefix("HTTP/1.1 ") {
                status = code[..3].parse().unwrap();
            } else if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap();
            }
        }
        let mut buf = vec![0u8; length];
        s.read_exact(&mut buf).await.unwrap();
        (status, serde_json::from_slice(&buf).unwrap_or(Value::Null))
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("the emulator answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_gcp_pub_sub_ordered_by_room() {
    use base64::Engine;
    let emulator = tokio::task::spawn_blocking(common::emulator::Emulator::start_pubsub)
        .await
        .unwrap();
    let host = emulator.host.clone();
    let topic = "projects/demo-signal/topics/lifecycle";
    let sub = "projects/demo-signal/subscriptions/consumer";
    let (status, answer) = pubsub(&host, "PUT", &format!("/v1/{topic}"), json!({})).await;
    assert_eq!(status, 200, "create topic: {answer}");
    let (status, answer) = pubsub(
        &host,
        "PUT",
        &format!("/v1/{sub}"),
        json!({ "topic": topic, "enableMessageOrdering": true, "ackDeadlineSeconds": 60 }),
    )
    .await;
    assert_eq!(status, 200, "create subscription: {answer}");

    let server = TestServer::start_single_with(|c| {
        c.events.pubsub_topic = Some(topic.into());
        c.events.pubsub_emulator_host = Some(host.clone());
        c.events.poll_interval = 20;
    })
    .await;
    room_life(&server, "published").await;

    // Pull until the twelve events are in, acknowledging each batch.
    let mut got: Vec<(Value, Value, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while got.len() < 12 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of 12 messages: {got:#?}",
            got.len()
        );
        let (status, answer) = pubsub(
            &host,
            "POST",
            &format!("/v1/{sub}:pull"),
            json!({ "maxMessages": 100 }),
        )
        .await;
        assert_eq!(status, 200, "pull: {answer}");
        let mut acks = Vec::new();
        for m in answer["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            acks.push(m["ackId"].clone());
            let msg = &m["message"];
            let data = base64::engine::general_purpose::STANDARD
                .decode(msg["data"].as_str().unwrap())
                .unwrap();
            got.push((
                serde_json::from_slice(&data).unwrap(),
                msg["attributes"].clone(),
                msg["orderingKey"].as_str().unwrap_or_default().to_owned(),
            ));
        }
        if !acks.is_empty() {
            let (status, answer) = pubsub(
                &host,
                "POST",
                &format!("/v1/{sub}:acknowledge"),
                json!({ "ackIds": acks }),
            )
            .await;
            assert_eq!(status, 200, "ack: {answer}");
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let events: Vec<Value> = got.iter().map(|(e, ..)| e.clone()).collect();
    assert_eq!(by_group(steps(&events)), by_group(the_life_of("published")));
    for (e, attributes, key) in &got {
        assert_eq!(attributes["type"], e["type"], "{attributes}");
        assert_eq!(attributes["event_id"], e["id"], "{attributes}");
        match e["room_id"].as_str() {
            Some(room) => {
                assert_eq!(attributes["room_id"], room, "{attributes}");
                assert_eq!(key, room, "a room's events share its ordering key");
            }
            None => {
                assert!(attributes.get("room_id").is_none(), "{attributes}");
                assert_eq!(key, &format!("client:{}", e["client_id"].as_str().unwrap()));
            }
        }
    }
    server.shutdown().await;
    drop(emulator);
}
