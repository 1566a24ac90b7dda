//! Two real WebRTC peers (webrtc-rs, loopback UDP only) find each other through a real
//! signal-manager server and open a data channel, in every dialect and across dialects.
//!
//! Each test starts its own server (port 0, fresh SQLite file), puts two clients in one
//! room, lets the one that sees the other join send the offer, trickles ICE candidates
//! through the server, and checks what a user would notice: the data channel opens on
//! both sides and a message crosses it each way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::{
    peer::{LABEL, Options, Peer, Role},
    server::TestServer,
    signaling::{Altair, Binary, RoomPath, Simple, Transport},
};

/// Upper bound on one test, connection and messages included.
const LIMIT: Duration = Duration::from_secs(30);

async fn within<F: Future<Output = ()>>(what: &str, f: F) {
    tokio::time::timeout(LIMIT, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {LIMIT:?}"));
}

/// `offerer` saw `answerer` join: both start, the offerer offers, and the data channel
/// must open on both sides and carry one message each way.
async fn connect(mut offerer: Transport, answerer: Transport, options: Options) -> (Peer, Peer) {
    let joined = offerer.peer_joined().await.expect("the other peer joins");
    assert_eq!(joined, answerer.id(), "the joiner is announced by its id");
    let a = Peer::start(offerer, Role::Offerer { to: joined }, options).await;
    let b = Peer::start(answerer, Role::Answerer, options).await;
    (a, b)
}

async fn talk(a: &mut Peer, b: &mut Peer) {
    tokio::join!(a.open(), b.open());
    assert_eq!(
        b.label().await,
        LABEL,
        "the answerer got the offerer's channel"
    );
    let (hello_a, hello_b) = (
        format!("hello from {}", a.id),
        format!("hello from {}", b.id),
    );
    a.send_text(&hello_a).await;
    b.send_text(&hello_b).await;
    assert_eq!(b.recv_text().await, hello_a);
    assert_eq!(a.recv_text().await, hello_b);
    assert_eq!(a.record().remote.as_deref(), Some(b.id.as_str()));
    assert_eq!(b.record().remote.as_deref(), Some(a.id.as_str()));
}

async fn connect_and_talk(offerer: Transport, answerer: Transport) {
    let (mut a, mut b) = connect(offerer, answerer, Options::default()).await;
    talk(&mut a, &mut b).await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_peers_open_a_data_channel() {
    within("binary ↔ binary", async {
        let s = TestServer::start().await;
        // alice creates the room without an offer; she offers once bob is in.
        let alice = Binary::create_room(&s, "alice", "e2e-binary").await;
        let bob = Binary::join_room(&s, "bob", "e2e-binary").await;
        connect_and_talk(alice, bob).await;
        s.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn altair_peers_open_a_data_channel() {
    within("altair ↔ altair", async {
        let s = TestServer::start().await;
        let alice = Altair::join(&s, "alice", "e2e-altair").await;
        let bob = Altair::join(&s, "bob", "e2e-altair").await;
        connect_and_talk(alice, bob).await;
        s.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_peers_open_a_data_channel() {
    within("simple ↔ simple", async {
        let s = TestServer::start().await;
        let alice = Simple::join(&s, "alice", "e2e-simple").await;
        let bob = Simple::join(&s, "bob", "e2e-simple").await;
        connect_and_talk(alice, bob).await;
        s.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_path_peers_open_a_data_channel() {
    within("room-path ↔ room-path", async {
        let s = TestServer::start().await;
        let alice = RoomPath::join(&s, "alice", "e2e-room-path").await;
        let bob = RoomPath::join(&s, "bob", "e2e-room-path").await;
        connect_and_talk(alice, bob).await;
        s.shutdown().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_and_room_path_peers_open_a_data_channel_in_one_room() {
    within("binary ↔ room-path", async {
        let s = TestServer::start().await;
        let alice = Binary::create_room(&s, "alice", "e2e-mixed").await;
        let bob = RoomPath::join(&s, "bob", "e2e-mixed").await;
        assert_eq!((alice.dialect(), bob.dialect()), ("binary", "room-path"));
        connect_and_talk(alice, bob).await;
        s.shutdown().await;
    })
    .await;
}

/// Every candidate a peer trickles reaches the other, stamped with the sender's id, with
/// its m-line index intact. Three loopback sockets per peer (127.0.0.1 to .3) give three host
/// candidates each. The room is opened by a room-path peer and joined by a binary one, which makes
/// the room-path peer the offerer: the opposite direction of the cross-dialect test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trickled_candidate_arrives_stamped_with_its_sender() {
    const SOCKETS: u8 = 3;
    within("candidate accounting", async {
        let s = TestServer::start().await;
        let alice = RoomPath::join(&s, "alice", "e2e-candidates").await;
        let bob = Binary::join_room(&s, "bob", "e2e-candidates").await;
        let options = Options {
            udp_sockets: SOCKETS,
        };
        let (mut a, mut b) = connect(alice, bob, options).await;
        tokio::join!(a.connected(), b.connected());
        talk(&mut a, &mut b).await;

        for (from, to) in [(&a, &b), (&b, &a)] {
            let sent = from
                .record_until(Duration::from_secs(5), |r| r.gathering_complete)
                .await
                .sent_candidates;
            assert_eq!(
                sent.len(),
                usize::from(SOCKETS),
                "{} trickled one host candidate per socket: {sent:?}",
                from.id
            );
            let got = to
                .record_until(Duration::from_secs(5), |r| {
                    r.received_candidates.len() >= sent.len()
                })
                .await
                .received_candidates;
            assert_eq!(
                got.len(),
                sent.len(),
                "{} got every candidate: {got:?}",
                to.id
            );
            for (stamp, _) in &got {
                assert_eq!(stamp, &from.id, "candidates are stamped with their sender");
            }
            let mut got: Vec<_> = got.into_iter().map(|(_, c)| c).collect();
            let mut sent = sent;
            got.sort_by(|x, y| x.candidate.cmp(&y.candidate));
            sent.sort_by(|x, y| x.candidate.cmp(&y.candidate));
            assert_eq!(got, sent, "candidates arrive as they were sent");
            assert!(
                got.iter()
                    .all(|c| c.candidate.contains(" 127.0.0.") && c.candidate.contains("typ host")),
                "loopback host candidates only: {got:?}"
            );
        }
        a.close().await;
        b.close().await;
        s.shutdown().await;
    })
    .await;
}
