//! Cluster mode with real parts: nodes of the real binary (and in-process nodes) on one
//! PostgreSQL and one `redis-server` (or a Redis Cluster of three), all started by the
//! test. A node killed with SIGKILL, Redis killed and restarted, and a rolling restart
//! with SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    process::{Child, Command},
    time::Duration,
};

use common::{TestServer, WAIT, free_port, http_get, spawn_binary, wait_listening};
use serde_json::Value;
use signal_client::{
    Client, decode,
    protocol::{
        MessageType,
        payload::{ErrorPayload, PeerLeft, RoomClosed, SignalPayload},
    },
};

/// A node of the real binary.
struct Node {
    child: Child,
    port: u16,
}

impl Node {
    /// `redis` is the `[cluster]` line naming Redis.
    /// `extra`: more TOML, appended.
    fn start(
        dir: &std::path::Path,
        name: &str,
        db: &str,
        redis: &str,
        port: u16,
        extra: &str,
    ) -> Node {
        let config = format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nshutdown_timeout = 5\n\n\
             [auth]\napi_keys = [\"alice:alice-token\", \"bob:bob-token\", \"carol:carol-token\", \"dave:dave-token\"]\n\n\
             [database]\nurl = \"{db}\"\n\n[metrics]\nenabled = false\n\n\
             [cluster]\n{redis}\nnode_id = \"{name}\"\npresence_ttl = 3\n\n{extra}"
        );
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        Node {
            child: spawn_binary(&path),
            port,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, sig: i32) {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("kill -{sig} {}", self.child.id()))
            .status()
            .unwrap();
        assert!(st.success(), "kill -{sig} failed");
    }

    async fn exited(mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(tokio::time::Instant::now() < deadline, "node did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Redis, or a Redis Cluster.
enum Redis {
    Single(common::redis::RedisServer),
    Cluster(common::redis::RedisCluster),
}

impl Redis {
    /// The `[cluster]` line that names it.
    fn config_line(&self) -> String {
        match self {
            Redis::Single(r) => format!("redis_url = \"{}\"", r.url()),
            Redis::Cluster(c) => format!("redis_cluster_urls = {:?}", c.urls()),
        }
    }
}

/// PostgreSQL and Redis of the test's own, and a directory for node configs.
struct Backing {
    pg: common::pg::PgServer,
    db: String,
    redis: Redis,
    dir: tempfile::TempDir,
}

impl Backing {
    async fn start() -> Self {
        Self::start_on(Redis::Single(common::redis::RedisServer::start())).await
    }

    async fn start_on(redis: Redis) -> Self {
        let pg = common::pg::PgServer::start().await;
        let db = pg.fresh_database().await;
        Self {
            pg,
            db,
            redis,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    async fn node(&self, name: &str) -> Node {
        self.node_on(name, free_port()).await
    }

    async fn node_on(&self, name: &str, port: u16) -> Node {
        self.node_with(name, port, "").await
    }

    async fn node_with(&self, name: &str, port: u16, extra: &str) -> Node {
        let n = Node::start(
            self.dir.path(),
            name,
            &self.db,
            &self.redis.config_line(),
            port,
            extra,
        );
        wait_listening(n.port).await;
        n
    }

    async fn pg(&self) -> sqlx::PgConnection {
        <sqlx::PgConnection as sqlx::Connection>::connect(&self.db)
            .await
            .unwrap()
    }

    async fn count(&self, sql: &'static str, room: &str) -> i64 {
        let mut c = self.pg().await;
        sqlx::query_scalar::<_, i64>(sql)
            .bind(room)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }

    /// (terminated_rooms rows, client_in_terminated_room rows, active members) of `room`.
    async fn records(&self, room: &str) -> (i64, i64, i64) {
        let _ = &self.pg;
        (
            self.count(
                "SELECT count(*) FROM terminated_rooms WHERE room_id = $1",
                room,
            )
            .await,
            self.count(
                "SELECT count(*) FROM client_in_terminated_room WHERE room_id = $1",
                room,
            )
            .await,
            self.count(
                "SELECT count(*) FROM client_in_room WHERE room_id = $1",
                room,
            )
            .await,
        )
    }
}

async fn member(url: &str, id: &str) -> Client {
    let mut c = Client::connect(url).await.unwrap();
    c.authenticate(id, &format!("{id}-token")).await.unwrap();
    let _ = c.register(&format!("{id}-token")).await;
    c
}

async fn peer_left(c: &mut Client, within: Duration) -> PeerLeft {
    let f = c.expect_event(MessageType::PeerLeft, within).await.unwrap();
    decode(&f).unwrap()
}

/// Three nodes of the real binary; the one holding bob is killed with SIGKILL. The others
/// notice within the presence TTL: bob leaves the room with reason "node lost", alice and
/// carol are told, and the store records bob's leave once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_detected_and_its_members_leave_once() {
    a_killed_node_case(Backing::start().await).await;
}

/// The same on a Redis Cluster of three primaries: node channels are sharded, and each
/// room's and client's registry entries live on the primary owning their slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_killed_node_is_detected_and_its_members_leave_once() {
    a_killed_node_case(
        Backing::start_on(Redis::Cluster(common::redis::RedisCluster::start())).await,
    )
    .await;
}

async fn a_killed_node_case(b: Backing) {
    let (na, nb, nc) = (b.node("a").await, b.node("b").await, b.node("c").await);
    let mut alice = member(&na.url(), "alice").await;
    let bob = member(&nb.url(), "bob").await;
    let mut carol = member(&nc.url(), "carol").await;
    alice
        .create_room("alice-token", Some("spread"), Some("v=0"))
        .await
        .unwrap();
    bob.join_room("bob-token", "spread").await.unwrap();
    carol.join_room("carol-token", "spread").await.unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();

    // A signal from a to c, across nodes.
    alice
        .send_offer("carol", Some("spread"), "v=0 a-to-c")
        .await
        .unwrap();
    let f = carol
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    let got: SignalPayload = decode(&f).unwrap();
    assert_eq!(got.from_client_id.as_deref(), Some("alice"));

    nb.signal(9);
    assert!(!nb.exited().await.success());
    // presence_ttl is 3 s; a node renews every second and reaps on its next renewal.
    let within = Duration::from_secs(10);
    for c in [&mut alice, &mut carol] {
        let pl = peer_left(c, within).await;
        assert_eq!(
            (pl.client_id.as_str(), pl.reason.as_str()),
            ("bob", "node lost")
        );
    }
    let (health, body) = http_get(&na.http(), "/health").await;
    assert_eq!(health, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["cluster"]["nodes"],
        serde_json::json!(["a", "c"]),
        "the lost node is gone from the cluster: {v}"
    );
    // Give a second reaper the chance to (wrongly) act, then count the records.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(b.records("spread").await, (0, 1, 2), "bob's leave, once");
    // The room goes on for the others.
    alice
        .send_offer("carol", Some("spread"), "v=0 still")
        .await
        .unwrap();
    carol
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    drop(nc);
    drop(na);
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("v=0 n={i}")).collect()
}

fn offer_sdp(f: &signal_client::protocol::Frame) -> Option<String> {
    (f.msg_type == MessageType::SignalOffer)
        .then(|| decode::<SignalPayload>(f).ok()?.sdp)
        .flatten()
}

/// Alice's node is killed with SIGKILL while bob, on another node, sends her 100 offers.
/// Alice resumes on bob's node and gets all 100 (what her old connection got, then the
/// rest), in order, none twice; nobody is told she left, and the session goes on there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_node_when_its_node_is_killed() {
    resume_after_kill_case(Backing::start().await).await;
}

/// The same on a Redis Cluster of three primaries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_a_session_resumes_on_another_node_when_its_node_is_killed() {
    resume_after_kill_case(
        Backing::start_on(Redis::Cluster(common::redis::RedisCluster::start())).await,
    )
    .await;
}

async fn resume_after_kill_case(b: Backing) {
    let (na, nb) = (b.node("a").await, b.node("b").await);
    let mut bob = member(&nb.url(), "bob").await;
    bob.create_room("bob-token", Some("phone"), Some("v=0"))
        .await
        .unwrap();
    let mut alice = Client::connect(&na.url()).await.unwrap();
    let first = alice
        .authenticate_resumable("alice", "alice-token")
        .await
        .unwrap();
    assert!(first.resume_token.is_some());
    let _ = alice.register("alice-token").await;
    alice.join_room("alice-token", "phone").await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();

    let sent = numbered(0..100);
    for (i, sdp) in sent.iter().enumerate() {
        if i == 30 {
            na.signal(9);
        }
        bob.send_offer("alice", Some("phone"), sdp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // What alice's old connection delivered before it died.
    let mut got: Vec<String> = Vec::new();
    while let Ok(f) = alice.next_event_within(Duration::from_millis(500)).await {
        got.extend(offer_sdp(&f));
    }
    assert!(got.len() < 100, "the node died before it sent everything");
    let (mut back, ack) = alice.resume(&nb.url()).await.unwrap();
    assert_eq!(ack.session_id, first.session_id, "the same session");
    while got.len() < 100 {
        let f = back.next_event_within(WAIT).await.unwrap();
        got.extend(offer_sdp(&f));
    }
    assert_eq!(got, sent, "all 100, in order, none twice");
    assert!(
        back.next_event_within(Duration::from_millis(500))
            .await
            .is_err(),
        "nothing more"
    );
    // The session goes on on its new node, both ways.
    bob.send_offer("alice", Some("phone"), "v=0 after")
        .await
        .unwrap();
    let f = back
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(offer_sdp(&f).as_deref(), Some("v=0 after"));
    back.send_offer("bob", Some("phone"), "v=0 back")
        .await
        .unwrap();
    let f = bob
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(offer_sdp(&f).as_deref(), Some("v=0 back"));
    // Past the lost node's reaping (presence_ttl 3 s): alice is still in the room.
    tokio::time::sleep(Duration::from_secs(5)).await;
    bob.send_offer("alice", Some("phone"), "v=0 later")
        .await
        .unwrap();
    let f = back
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(offer_sdp(&f).as_deref(), Some("v=0 later"));
    while let Ok(f) = bob.next_event_within(Duration::from_millis(200)).await {
        assert_ne!(
            f.msg_type,
            MessageType::PeerLeft,
            "bob was never told alice left"
        );
    }
}

/// Alice's node is killed and she never comes back: the node that reaps it tells bob
/// she is reconnecting, waits her resume window (3 s here), then she leaves the room
/// with reason "node lost", recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_nodes_session_that_never_resumes_leaves_after_its_window() {
    let b = Backing::start().await;
    let window = "[session]\nresume_window = 3\n";
    let na = b.node_with("a", free_port(), window).await;
    let nb = b.node_with("b", free_port(), window).await;
    let mut bob = member(&nb.url(), "bob").await;
    bob.create_room("bob-token", Some("gone"), Some("v=0"))
        .await
        .unwrap();
    let mut alice = Client::connect(&na.url()).await.unwrap();
    alice
        .authenticate_resumable("alice", "alice-token")
        .await
        .unwrap();
    let _ = alice.register("alice-token").await;
    alice.join_room("alice-token", "gone").await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    na.signal(9);
    assert!(!na.exited().await.success());
    let t0 = tokio::time::Instant::now();
    let f = bob
        .expect_event(MessageType::PeerReconnecting, Duration::from_secs(10))
        .await
        .unwrap();
    let r: signal_client::protocol::payload::PeerReconnecting = decode(&f).unwrap();
    assert_eq!((r.client_id.as_str(), r.window), ("alice", 3));
    let pl = peer_left(&mut bob, Duration::from_secs(10)).await;
    assert_eq!(
        (pl.client_id.as_str(), pl.reason.as_str()),
        ("alice", "node lost")
    );
    assert!(
        t0.elapsed() >= Duration::from_millis(2500),
        "she left after her window, not at once"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(b.records("gone").await, (0, 1, 1), "alice's leave, once");
}

/// A node drained with SIGTERM hands its resumable sessions to the cluster: alice's
/// connection closes with 1001, and she resumes on the other node, still in her room,
/// with what bob sent her meanwhile; bob is never told she left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_node_hands_its_resumable_sessions_to_the_cluster() {
    let b = Backing::start().await;
    let (na, nb) = (b.node("a").await, b.node("b").await);
    let mut bob = member(&nb.url(), "bob").await;
    bob.create_room("bob-token", Some("drain"), Some("v=0"))
        .await
        .unwrap();
    let mut alice = Client::connect(&na.url()).await.unwrap();
    alice
        .authenticate_resumable("alice", "alice-token")
        .await
        .unwrap();
    let _ = alice.register("alice-token").await;
    alice.join_room("alice-token", "drain").await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    bob.send_offer("alice", Some("drain"), "v=0 n=0")
        .await
        .unwrap();
    let f = alice
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(offer_sdp(&f).as_deref(), Some("v=0 n=0"));

    na.signal(15);
    assert!(na.exited().await.success(), "a clean drain");
    assert!(alice.next_event_within(WAIT).await.is_err(), "closed");
    bob.send_offer("alice", Some("drain"), "v=0 n=1")
        .await
        .unwrap();
    let (mut back, ack) = alice.resume(&nb.url()).await.unwrap();
    assert_eq!(ack.status, 200);
    let f = back
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(offer_sdp(&f).as_deref(), Some("v=0 n=1"));
    back.send_offer("bob", Some("drain"), "v=0 back")
        .await
        .unwrap();
    let f = bob
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    assert_eq!(offer_sdp(&f).as_deref(), Some("v=0 back"));
    // Past the drained node's presence (3 s): nobody reaps alice.
    tokio::time::sleep(Duration::from_secs(5)).await;
    while let Ok(f) = bob.next_event_within(Duration::from_millis(200)).await {
        assert_ne!(
            f.msg_type,
            MessageType::PeerLeft,
            "bob was never told alice left"
        );
    }
    assert_eq!(b.records("drain").await, (0, 0, 2), "nobody left");
}

/// Nodes stopped one after another with SIGTERM (a rolling restart) and started again:
/// members of a stopped node leave at once, a restarted node takes clients into rooms
/// that lived on, and the room ends once, recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_keeps_every_room_consistent() {
    let b = Backing::start().await;
    let (na, nb) = (b.node("a").await, b.node("b").await);
    let mut alice = member(&na.url(), "alice").await;
    let mut bob = member(&nb.url(), "bob").await;
    alice
        .create_room("alice-token", Some("rolling"), Some("v=0"))
        .await
        .unwrap();
    bob.join_room("bob-token", "rolling").await.unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();

    // Node b restarts: bob is closed with 1001 and leaves; alice is told at once.
    let port_b = nb.port;
    nb.signal(15);
    assert_eq!(
        bob.closed_within(Duration::from_secs(10))
            .await
            .unwrap()
            .code,
        1001
    );
    assert!(nb.exited().await.success(), "a clean drain");
    let pl = peer_left(&mut alice, WAIT).await;
    assert_eq!(pl.client_id, "bob");
    let nb = b.node_on("b", port_b).await;
    let mut bob = member(&nb.url(), "bob").await;
    let joined = bob.join_room("bob-token", "rolling").await.unwrap();
    assert_eq!(
        joined.participants.len(),
        1,
        "alice, on node a, is still there"
    );

    // Node a restarts: alice, the sender, leaves; the room ends for bob on node b.
    na.signal(15);
    let f = bob
        .expect_event(MessageType::RoomClosed, WAIT)
        .await
        .unwrap();
    let rc: RoomClosed = decode(&f).unwrap();
    assert_eq!(rc.room_id, "rolling");
    assert!(na.exited().await.success());
    assert_eq!(
        b.records("rolling").await,
        (1, 3, 0),
        "one end, every leave once"
    );
    let (status, body) = http_get(&nb.http(), "/api/rooms").await;
    assert!(status == 200 || status == 401, "{status} {body}");
}

/// Redis killed and started again, empty: the nodes stay up and serve clients on the same
/// node, say `degraded` and not ready, refuse what needs the registry with 503, and put
/// their rooms back by themselves when Redis returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_loss_degrades_and_the_cluster_recovers_by_itself() {
    let mut s = TestServer::start_nodes(2, |c| {
        c.heartbeat.interval = 30;
    })
    .await;
    let redis_port = s.redis.as_ref().unwrap().port;
    // Through the balancer: alice on node 0, bob on node 1, carol on node 0.
    let mut alice = s.registered("alice").await;
    let mut bob = s.registered("bob").await;
    let carol = s.registered("carol").await;
    let dave = s.registered("dave").await;
    alice
        .create_room("alice-token", Some("kept"), Some("v=0"))
        .await
        .unwrap();
    carol.join_room("carol-token", "kept").await.unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    // Dave, on node 1, in the room: node 0 knows where he is.
    dave.join_room("dave-token", "kept").await.unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();

    s.redis.as_mut().unwrap().kill();
    // Same-node signals still flow.
    alice
        .send_offer("carol", Some("kept"), "v=0 local")
        .await
        .unwrap();
    let mut carol = carol;
    carol
        .expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    // What needs the registry is a clear 503.
    let e = bob.join_room("bob-token", "kept").await.unwrap_err();
    assert_eq!(e.code(), Some(503), "{e}");
    for i in 0..2 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = http_get(&s.node_http(i), "/health").await;
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if status == 200 && v["status"] == "degraded" {
                assert_eq!(v["cluster"]["redis"], "unreachable");
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i} did not report degraded: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (status, body) = http_get(&s.node_http(i), "/ready").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("Redis"), "{body}");
    }
    // A signal to a member on the other node is refused, not lost in silence.
    alice
        .send_offer("dave", Some("kept"), "v=0 across")
        .await
        .unwrap();
    let f = alice.expect_event(MessageType::Error, WAIT).await.unwrap();
    let refused: ErrorPayload = decode(&f).unwrap();
    assert_eq!(refused.error_code, 503, "{refused:?}");
    assert!(
        refused.error_message.contains("Cluster link unavailable"),
        "{refused:?}"
    );

    s.redis.as_mut().unwrap().restart();
    assert_eq!(s.redis.as_ref().unwrap().port, redis_port);
    // Both nodes come back by themselves; node 0 puts its room back.
    for i in 0..2 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = http_get(&s.node_http(i), "/ready").await;
            if status == 200 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i} did not recover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let joined = loop {
        match bob.join_room("bob-token", "kept").await {
            Ok(j) => break j,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the room did not come back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut names: Vec<String> = joined
        .participants
        .iter()
        .map(|p| p.client_id.clone())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["alice", "carol", "dave"],
        "no ghost, no one missing"
    );
    // Across nodes again, both ways.
    alice
        .send_offer("bob", Some("kept"), "v=0 again")
        .await
        .unwrap();
    bob.expect_event(MessageType::SignalOffer, WAIT)
        .await
        .unwrap();
    let _ = &mut alice;
    s.shutdown().await;
}

#[test]
fn a_cluster_on_sqlite_is_refused_naming_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[database]\nurl = \"sqlite://x.db\"\n\n[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signal-manager-service"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cluster.redis_url") && err.contains("database.url"),
        "{err}"
    );
}

/// Two clients on two nodes join the same new room at the same moment (the simple
/// dialect's join creates a room that does not exist): both get in, whichever node's
/// creation wins, and each learns of the other. The loser's join may reach the store
/// before the winner committed the room; it waits for it instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_joining_one_new_room_at_once_both_get_in() {
    use serde_json::json;
    let s = TestServer::start_nodes(2, |_| {}).await;
    let n0 = s.running().addr;
    let n1 = s.others[0].addr;
    for round in 0..5 {
        let room = format!("race-{round}");
        let mut a = common::JsonClient::connect(&format!("ws://{n0}/ws?token=alice-token"))
            .await
            .unwrap();
        let mut b = common::JsonClient::connect(&format!("ws://{n1}/ws?token=bob-token"))
            .await
            .unwrap();
        let (ja, jb) = (
            json!({"type": "join", "room": room, "sender": "alice"}),
            json!({"type": "join", "room": room, "sender": "bob"}),
        );
        tokio::join!(a.send(&ja), b.send(&jb));
        for (c, other) in [(&mut a, "bob"), (&mut b, "alice")] {
            let joined = c.recv_type("joined").await;
            let peers = joined["payload"]["peers"].to_string();
            if !peers.contains(other) {
                let j = c.recv_type("join").await;
                assert_eq!(j["sender"], other, "round {round}");
            }
        }
        a.close().await;
        b.close().await;
    }
}
