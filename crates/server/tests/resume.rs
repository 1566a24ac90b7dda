//! Resume: a session whose connection drops waits for a RESUME in its rooms, and takes
//! back everything sent to it meanwhile, in order, once. The connection is cut with a
//! TCP proxy of the test's own between the client and the server.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use common::{TestServer, WAIT};
use signal_client::{
    Client, ClientError, decode,
    protocol::{
        MessageType,
        payload::{PeerLeft, PeerReconnecting, SignalPayload},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A TCP proxy for one connection at a time: bytes flow both ways until [`cut`]; while
/// [`hold`] is on, what the server sends is read and thrown away, as bytes lost in the
/// network when a phone changes networks.
struct Proxy {
    addr: std::net::SocketAddr,
    hold: Arc<AtomicBool>,
    tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(server: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = Arc::new(AtomicBool::new(false));
        let tasks: Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let (h, t) = (hold.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = TcpStream::connect(server).await.unwrap();
                let (mut cr, mut cw) = client.into_split();
                let (mut ur, mut uw) = upstream.into_split();
                let up = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut cr, &mut uw).await;
                });
                let hold = h.clone();
                let down = tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = match ur.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        if !hold.load(Ordering::Acquire) && cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                t.lock().unwrap().extend([up, down]);
            }
        });
        Proxy {
            addr,
            hold,
            tasks,
            accept,
        }
    }

    fn url(&self) -> String {
        format!("ws://{}/", self.addr)
    }

    /// Throws away what the server sends from now on.
    fn hold(&self) {
        self.hold.store(true, Ordering::Release);
    }

    /// Drops both sides of every connection, without a WebSocket close.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn member(url: &str, id: &str) -> Client {
    let mut c = Client::connect(url).await.unwrap();
    c.authenticate(id, &format!("{id}-token")).await.unwrap();
    c.register(&format!("{id}-token")).await.unwrap();
    c
}

/// Bob (direct) creates room `room`; alice, resumable, joins it through `proxy`.
async fn pair(s: &TestServer, proxy: &Proxy, room: &str) -> (Client, Client) {
    let mut bob = member(&s.url, "bob").await;
    bob.create_room("bob-token", Some(room), Some("v=0"))
        .await
        .unwrap();
    let mut alice = Client::connect(&proxy.url()).await.unwrap();
    // A frame before CONNECT (an ERROR) counts like any other.
    alice.heartbeat().await.unwrap_err();
    let ack = alice
        .authenticate_resumable("alice", "alice-token")
        .await
        .unwrap();
    assert!(
        ack.resume_token.is_some(),
        "a resumable session gets a token"
    );
    assert_eq!(ack.resume_window, Some(s.config.session.resume_window));
    alice.register("alice-token").await.unwrap();
    alice.join_room("alice-token", room).await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    (alice, bob)
}

async fn offers(c: &mut Client, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let f = c
            .expect_event(MessageType::SignalOffer, WAIT)
            .await
            .unwrap();
        let p: SignalPayload = decode(&f).unwrap();
        got.push(p.sdp.unwrap_or_default());
    }
    got
}

fn numbered(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("v=0 n={i}")).collect()
}

/// 100 offers to alice while her connection is lost: the first 50 are sent by the server
/// into a connection that no longer delivers, the rest while her session waits. Alice
/// resumes on a new connection and gets all 100, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_resumes_and_misses_nothing() {
    let s = TestServer::start_single_with(|_| {}).await;
    let proxy = Proxy::start(s.running().addr).await;
    let (alice, mut bob) = pair(&s, &proxy, "resume-r").await;

    proxy.hold();
    for sdp in numbered(0..50) {
        bob.send_offer("alice", Some("resume-r"), &sdp)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    // The others are told the connection dropped, not that alice left.
    let f = bob
        .expect_event(MessageType::PeerReconnecting, WAIT)
        .await
        .unwrap();
    let r: PeerReconnecting = decode(&f).unwrap();
    assert_eq!(
        (r.room_id.as_str(), r.client_id.as_str(), r.window),
        ("resume-r", "alice", 30)
    );
    for sdp in numbered(50..100) {
        bob.send_offer("alice", Some("resume-r"), &sdp)
            .await
            .unwrap();
    }

    let (mut back, ack) = alice.resume(&s.url).await.unwrap();
    assert!(
        ack.replayed >= 50,
        "the 50 lost in the network are sent again: {ack:?}"
    );
    assert_ne!(Some(ack.resume_token.as_str()), alice.resume_token());
    assert_eq!(offers(&mut back, 100).await, numbered(0..100));
    assert!(
        back.next_event_within(Duration::from_millis(500))
            .await
            .is_err(),
        "nothing twice"
    );
    // The session goes on: signals both ways, and nobody was told alice left.
    bob.send_offer("alice", Some("resume-r"), "v=0 after")
        .await
        .unwrap();
    assert_eq!(offers(&mut back, 1).await, ["v=0 after"]);
    back.send_offer("bob", Some("resume-r"), "v=0 back")
        .await
        .unwrap();
    assert_eq!(offers(&mut bob, 1).await, ["v=0 back"]);
    assert!(
        bob.next_event_within(Duration::from_millis(300))
            .await
            .is_err(),
        "bob was never told alice left"
    );
}

/// A second resume of the same session works too (the token changes each time), and a
/// spent token is refused with 401 while the connection stays open for a CONNECT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_resume_gives_a_new_token_and_a_spent_one_is_refused() {
    let s = TestServer::start_single_with(|_| {}).await;
    let proxy = Proxy::start(s.running().addr).await;
    let (alice, bob) = pair(&s, &proxy, "twice").await;
    let spent = alice.resume_token().unwrap().to_owned();
    proxy.cut();
    let (mut back, _) = alice.resume(&proxy.url()).await.unwrap();
    bob.send_offer("alice", Some("twice"), "v=0 one")
        .await
        .unwrap();
    assert_eq!(offers(&mut back, 1).await, ["v=0 one"]);
    proxy.cut();
    let (mut again, _) = back.resume(&s.url).await.unwrap();
    bob.send_offer("alice", Some("twice"), "v=0 two")
        .await
        .unwrap();
    assert_eq!(offers(&mut again, 1).await, ["v=0 two"]);

    let mut other = Client::connect(&s.url).await.unwrap();
    let f = other
        .request_frame(
            MessageType::Resume,
            &signal_client::protocol::payload::ResumeRequest {
                client_id: "alice".into(),
                resume_token: spent,
                last_seq: 0,
            },
        )
        .await
        .unwrap();
    assert_eq!(f.msg_type, MessageType::Error);
    let e: signal_client::protocol::payload::ErrorPayload = decode(&f).unwrap();
    assert_eq!(e.error_code, 401, "{e:?}");
    assert!(e.error_message.contains("resume_token"), "{e:?}");
    other.authenticate("carol", "carol-token").await.unwrap();
}

/// A window that ends without a RESUME ends as a lost connection always did: the others
/// get PEER_LEFT ("disconnected"), and the token no longer works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_expires_ends_in_an_ordinary_leave() {
    let s = TestServer::start_single_with(|c| c.session.resume_window = 1).await;
    let proxy = Proxy::start(s.running().addr).await;
    let (alice, mut bob) = pair(&s, &proxy, "expire").await;
    proxy.cut();
    let f = bob
        .expect_event(MessageType::PeerReconnecting, WAIT)
        .await
        .unwrap();
    assert_eq!(decode::<PeerReconnecting>(&f).unwrap().window, 1);
    let f = bob.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
    let left: PeerLeft = decode(&f).unwrap();
    assert_eq!(
        (left.client_id.as_str(), left.reason.as_str()),
        ("alice", "disconnected")
    );
    match alice.resume(&s.url).await {
        Err(ClientError::Server(e)) => assert_eq!(e.error_code, 401),
        other => panic!("an expired window cannot be resumed: {:?}", other.err()),
    }
}

/// A client that did not ask for resume sees exactly what it always did: its connection
/// dropping makes it leave at once, and CONNECT_ACK has no resume fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_resume_a_lost_connection_leaves_at_once() {
    let s = TestServer::start_single_with(|_| {}).await;
    let proxy = Proxy::start(s.running().addr).await;
    let mut alice = Client::connect(&proxy.url()).await.unwrap();
    let ack = alice.authenticate("alice", "alice-token").await.unwrap();
    assert_eq!((ack.resume_token, ack.resume_window), (None, None));
    alice.register("alice-token").await.unwrap();
    let mut bob = member(&s.url, "bob").await;
    bob.create_room("bob-token", Some("plain"), Some("v=0"))
        .await
        .unwrap();
    alice.join_room("alice-token", "plain").await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    proxy.cut();
    let f = bob.next_event_within(WAIT).await.unwrap();
    assert_eq!(
        f.msg_type,
        MessageType::PeerLeft,
        "no PEER_RECONNECTING first"
    );
    assert_eq!(decode::<PeerLeft>(&f).unwrap().reason, "disconnected");
}

/// A RESUME while the old connection is still open (the server has not seen it drop)
/// takes the session from it: the old connection is closed, the new one carries on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_takes_the_session_from_a_connection_still_open() {
    let s = TestServer::start_single_with(|_| {}).await;
    let proxy = Proxy::start(s.running().addr).await;
    let (mut alice, bob) = pair(&s, &proxy, "takeover").await;
    let (mut back, ack) = alice.resume(&s.url).await.unwrap();
    assert_eq!(ack.replayed, 0);
    let closed = alice.closed_within(WAIT).await.unwrap();
    assert_eq!(closed.code, 1000);
    assert!(closed.reason.contains("resumed"), "{closed:?}");
    bob.send_offer("alice", Some("takeover"), "v=0 new")
        .await
        .unwrap();
    assert_eq!(offers(&mut back, 1).await, ["v=0 new"]);
}

/// More queued for a waiting session than its queue holds ends the window at once,
/// with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflowing_a_waiting_session_ends_its_window() {
    let s = TestServer::start_single_with(|c| c.server.outbound_queue = 16).await;
    let proxy = Proxy::start(s.running().addr).await;
    let (alice, mut bob) = pair(&s, &proxy, "overflow").await;
    proxy.cut();
    bob.expect_event(MessageType::PeerReconnecting, WAIT)
        .await
        .unwrap();
    for sdp in numbered(0..40) {
        bob.send_offer("alice", Some("overflow"), &sdp)
            .await
            .unwrap();
    }
    let f = bob.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
    let left: PeerLeft = decode(&f).unwrap();
    assert_eq!(left.reason, "resume buffer overflow");
    assert!(alice.resume(&s.url).await.is_err());
}

/// The Rust client resumes by itself: its connection is cut twice while bob keeps
/// signalling; it reconnects (through the same proxy) and gets every offer, in order,
/// once, without the application doing anything but read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rust_client_resumes_by_itself() {
    let s = TestServer::start_single_with(|_| {}).await;
    let proxy = Proxy::start(s.running().addr).await;
    let (alice, bob) = pair(&s, &proxy, "auto").await;
    let mut alice = alice
        .resuming(
            &proxy.url(),
            signal_client::Backoff {
                first: Duration::from_millis(50),
                ..Default::default()
            },
        )
        .unwrap();
    let mut resumed = 0;
    let mut got = Vec::new();
    for (i, sdp) in numbered(0..90).into_iter().enumerate() {
        bob.send_offer("alice", Some("auto"), &sdp).await.unwrap();
        if i == 30 || i == 60 {
            proxy.cut();
        }
    }
    while got.len() < 90 {
        match tokio::time::timeout(WAIT, alice.next()).await.unwrap() {
            Some(signal_client::Update::Frame(f)) => {
                if f.msg_type == MessageType::SignalOffer {
                    got.push(decode::<SignalPayload>(&f).unwrap().sdp.unwrap_or_default());
                }
            }
            Some(signal_client::Update::Resumed { .. }) => resumed += 1,
            Some(signal_client::Update::Reconnecting { .. }) => {}
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(got, numbered(0..90));
    assert!(resumed >= 1, "it resumed");
    // And it still sends, on whatever connection it holds now.
    alice
        .client()
        .send_offer("bob", Some("auto"), "v=0 from alice")
        .await
        .unwrap();
}

/// A JSON dialect resumes too: a simple-dialect client that connected with `?resume=1`
/// gets a `session` message with its token; after its connection is cut it reconnects
/// with `?resume_token=…&last_seq=…` (how many messages it had received) and gets
/// `resumed`, then every offer sent meanwhile, in order, once. Its peer was told
/// `reconnecting`, never `leave`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_dialect_client_resumes() {
    use serde_json::json;
    let s = TestServer::start_single_with(|_| {}).await;
    let proxy = Proxy::start(s.running().addr).await;
    let mut bob = s.json("/ws?token=bob-token").await;
    bob.send(&json!({"type": "join", "room": "jr", "sender": "bob"}))
        .await;
    // Bob is in before alice joins: otherwise her join may create the room and bob,
    // joining second, is told of her in his `joined` list instead of by a `join`.
    bob.recv_type("joined").await;
    let mut alice = common::JsonClient::connect(&format!(
        "ws://{}/ws?token=alice-token&resume=1",
        proxy.addr
    ))
    .await
    .unwrap();
    alice
        .send(&json!({"type": "join", "room": "jr", "sender": "alice"}))
        .await;
    // Every message alice receives counts, whatever it is.
    let mut received = 0u64;
    let mut token = None;
    while let Ok(m) = alice.next_within(Duration::from_millis(300)).await {
        received += 1;
        if m["type"] == "session" {
            assert_eq!(m["payload"]["resume_window"], 30);
            token = m["payload"]["resume_token"].as_str().map(str::to_owned);
        }
    }
    let token = token.expect("a resumable session gets its token");
    let joined = bob.recv_type("join").await;
    assert_eq!(joined["sender"], "alice");

    proxy.cut();
    let told = bob.recv_type("reconnecting").await;
    assert_eq!(told["sender"], "alice");
    for i in 0..10 {
        bob.send(
            &json!({"type": "offer", "room": "jr", "sender": "bob", "recipient": "alice",
                         "payload": {"sdp": format!("v=0 n={i}")}}),
        )
        .await;
    }
    let mut back = s
        .json(&format!("/ws?resume_token={token}&last_seq={received}"))
        .await;
    let first = back.recv().await;
    assert_eq!(first["type"], "resumed", "{first}");
    assert_ne!(
        first["payload"]["resume_token"].as_str(),
        Some(token.as_str())
    );
    let mut got = Vec::new();
    while got.len() < 10 {
        let m = back.recv().await;
        if m["type"] == "offer" {
            got.push(m["payload"]["sdp"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(got, numbered(0..10));
    assert!(
        back.next_within(Duration::from_millis(300)).await.is_err(),
        "nothing twice"
    );
    // A resume token that does not parse with its count is refused precisely.
    let mut bad = s.json(&format!("/ws?resume_token={token}")).await;
    let e = bad.recv().await;
    assert!(e.to_string().contains("last_seq"), "{e}");
}

/// In a cluster, a session waiting for its RESUME on one node is reached from the others:
/// bob, on the other node, is told alice is reconnecting, and his offers to her while
/// she is away reach her when she resumes on her node, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_nodes_a_waiting_session_gets_what_other_nodes_send() {
    let s = TestServer::start_nodes(2, |_| {}).await;
    let node1 = format!("ws://{}/", s.others[0].addr);
    let proxy = Proxy::start(s.running().addr).await;
    let mut bob = member(&node1, "bob").await;
    bob.create_room("bob-token", Some("spread"), Some("v=0"))
        .await
        .unwrap();
    let mut alice = Client::connect(&proxy.url()).await.unwrap();
    alice
        .authenticate_resumable("alice", "alice-token")
        .await
        .unwrap();
    alice.register("alice-token").await.unwrap();
    alice.join_room("alice-token", "spread").await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();

    proxy.cut();
    let f = bob
        .expect_event(MessageType::PeerReconnecting, WAIT)
        .await
        .unwrap();
    assert_eq!(decode::<PeerReconnecting>(&f).unwrap().client_id, "alice");
    for sdp in numbered(0..20) {
        bob.send_offer("alice", Some("spread"), &sdp).await.unwrap();
    }
    let node0 = format!("ws://{}/", s.running().addr);
    let (mut back, _) = alice.resume(&node0).await.unwrap();
    assert_eq!(offers(&mut back, 20).await, numbered(0..20));
    back.send_offer("bob", Some("spread"), "v=0 back")
        .await
        .unwrap();
    assert_eq!(offers(&mut bob, 1).await, ["v=0 back"]);
}

/// Alice's connection to her node drops and she resumes on the other node, while her
/// node is up: it lets go of her session, and the other node takes it over with what it
/// was sent meanwhile, in order. She is in the room there, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_resumes_on_another_node_while_its_node_is_up() {
    let s = TestServer::start_nodes(2, |_| {}).await;
    let node1 = format!("ws://{}/", s.others[0].addr);
    let proxy = Proxy::start(s.running().addr).await;
    let mut bob = member(&node1, "bob").await;
    bob.create_room("bob-token", Some("hop"), Some("v=0"))
        .await
        .unwrap();
    let mut alice = Client::connect(&proxy.url()).await.unwrap();
    alice
        .authenticate_resumable("alice", "alice-token")
        .await
        .unwrap();
    alice.register("alice-token").await.unwrap();
    alice.join_room("alice-token", "hop").await.unwrap();
    bob.expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();

    proxy.hold();
    for sdp in numbered(0..10) {
        bob.send_offer("alice", Some("hop"), &sdp).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    bob.expect_event(MessageType::PeerReconnecting, WAIT)
        .await
        .unwrap();
    for sdp in numbered(10..20) {
        bob.send_offer("alice", Some("hop"), &sdp).await.unwrap();
    }
    let (mut back, ack) = alice.resume(&node1).await.unwrap();
    assert!(
        ack.replayed >= 10,
        "what the network lost, and after: {ack:?}"
    );
    assert_eq!(offers(&mut back, 20).await, numbered(0..20));
    assert!(
        back.next_event_within(Duration::from_millis(500))
            .await
            .is_err(),
        "nothing twice"
    );
    back.send_offer("bob", Some("hop"), "v=0 back")
        .await
        .unwrap();
    assert_eq!(offers(&mut bob, 1).await, ["v=0 back"]);
    bob.send_offer("alice", Some("hop"), "v=0 after")
        .await
        .unwrap();
    assert_eq!(offers(&mut back, 1).await, ["v=0 after"]);
    // Her old node holds nothing of her any more; the room lists her once.
    let (st, body) =
        common::http_get_bearer(&s.node_http(1), "/api/rooms/hop", Some("bob-token")).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body.matches("\"peer_id\":\"alice\"").count(), 1, "{body}");
    assert!(
        bob.next_event_within(Duration::from_millis(300))
            .await
            .is_err(),
        "bob was never told alice left"
    );
}

/// A JSON dialect session resumes on another node too: the simple dialect's alice,
/// on node 0, resumes with her query parameters on node 1, where bob is, and gets what he
/// sent her meanwhile, in order, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simple_dialect_client_resumes_on_another_node() {
    use serde_json::json;
    let s = TestServer::start_nodes(2, |_| {}).await;
    let node1 = s.others[0].addr;
    let proxy = Proxy::start(s.running().addr).await;
    let mut bob = common::JsonClient::connect(&format!("ws://{node1}/ws?token=bob-token"))
        .await
        .unwrap();
    bob.send(&json!({"type": "join", "room": "jx", "sender": "bob"}))
        .await;
    // Bob's join (which creates the room) is done before alice's: the race of two joins
    // creating one room is `cluster.rs`'s.
    while bob.next_within(Duration::from_millis(300)).await.is_ok() {}
    let mut alice = common::JsonClient::connect(&format!(
        "ws://{}/ws?token=alice-token&resume=1",
        proxy.addr
    ))
    .await
    .unwrap();
    alice
        .send(&json!({"type": "join", "room": "jx", "sender": "alice"}))
        .await;
    let mut received = 0u64;
    let mut token = None;
    while let Ok(m) = alice.next_within(Duration::from_millis(300)).await {
        received += 1;
        if m["type"] == "session" {
            token = m["payload"]["resume_token"].as_str().map(str::to_owned);
        }
    }
    let token = token.expect("a resumable session gets its token");
    assert_eq!(bob.recv_type("join").await["sender"], "alice");

    proxy.cut();
    assert_eq!(bob.recv_type("reconnecting").await["sender"], "alice");
    for i in 0..10 {
        bob.send(
            &json!({"type": "offer", "room": "jx", "sender": "bob", "recipient": "alice",
                         "payload": {"sdp": format!("v=0 n={i}")}}),
        )
        .await;
    }
    let mut back = common::JsonClient::connect(&format!(
        "ws://{node1}/ws?resume_token={token}&last_seq={received}"
    ))
    .await
    .unwrap();
    let first = back.recv().await;
    assert_eq!(first["type"], "resumed", "{first}");
    let mut got = Vec::new();
    while got.len() < 10 {
        let m = match back.next_within(Duration::from_secs(5)).await {
            Ok(m) => m,
            Err(e) => panic!("after {got:?}: {e:?}"),
        };
        if m["type"] == "offer" {
            got.push(m["payload"]["sdp"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(got, numbered(0..10));
    assert!(
        back.next_within(Duration::from_millis(300)).await.is_err(),
        "nothing twice"
    );
    back.send(
        &json!({"type": "answer", "room": "jx", "sender": "alice", "recipient": "bob",
                     "payload": {"sdp": "v=0 back"}}),
    )
    .await;
    assert_eq!(bob.recv_type("answer").await["payload"]["sdp"], "v=0 back");
}
