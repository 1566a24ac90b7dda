//! Resume across nodes over a real `redis-server` (and a Redis Cluster) this test
//! starts: a node's inbox stream, a session's kept frames, and taking a session over.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use parking_lot::Mutex;
use signal_core::{
    ClientId, RoomId,
    hub::Event,
    router::{Inbox, InboxPos, MirroredFrame, NodeMessage, Recipient, ResumeRecord, Router},
};
use signal_router_redis::{RedisRouter, RedisRouterConfig, RedisTarget};

async fn router(redis: &RedisTarget, node: &str) -> Arc<RedisRouter> {
    RedisRouter::start(RedisRouterConfig {
        redis: redis.clone(),
        node_id: node.to_owned(),
        presence_ttl: Duration::from_secs(3),
        command_timeout: Duration::from_secs(2),
        ca_file: None,
        resume_window: Some(Duration::from_secs(30)),
    })
    .await
    .unwrap()
}

/// Records what reaches a node, with where it sits in the node's inbox stream.
#[derive(Default)]
struct Received(Mutex<Vec<(String, Option<InboxPos>)>>);

impl Inbox for Received {
    fn receive(&self, msg: NodeMessage) -> usize {
        self.receive_at(msg, None)
    }
    fn receive_at(&self, msg: NodeMessage, pos: Option<InboxPos>) -> usize {
        if let Event::PeerLeft { reason, .. } = msg.event {
            self.0.lock().push((reason, pos));
        }
        1
    }
}

fn client(id: &str) -> ClientId {
    ClientId::parse("client_id", id).unwrap()
}

fn message(n: usize) -> NodeMessage {
    NodeMessage {
        id: uuid::Uuid::new_v4(),
        from_node: "b".into(),
        to: Recipient::Client {
            client: client("alice"),
        },
        event: Event::PeerLeft {
            room: RoomId::parse("r").unwrap(),
            client: client("bob"),
            reason: format!("m{n}"),
        },
        raw: None,
    }
}

fn record(node: &str) -> ResumeRecord {
    ResumeRecord {
        client: client("alice"),
        session: uuid::Uuid::new_v4(),
        node: node.to_owned(),
        format: 1,
        capabilities: vec![],
        metadata: serde_json::json!({}),
        display_name: None,
        connected_at: chrono::Utc::now(),
        rooms: vec![],
        released: false,
    }
}

fn frame(seq: u64, hw: Option<InboxPos>) -> MirroredFrame {
    MirroredFrame {
        seq,
        payload: Bytes::from(format!("frame {seq}")),
        hw,
    }
}

async fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn case(redis: RedisTarget) {
    let a = router(&redis, "a").await;
    let b = router(&redis, "b").await;
    let c = router(&redis, "c").await;
    let got = Arc::new(Received::default());
    a.attach(Arc::downgrade(&got) as _);

    // Messages for node a are kept in its stream, in the order a received them.
    for n in 0..5 {
        b.post("a", message(n)).unwrap();
    }
    b.posted_sent().await;
    wait_for("a receives 5", || got.0.lock().len() == 5).await;
    let received = got.0.lock().clone();
    assert_eq!(
        received.iter().map(|(r, _)| r.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2", "m3", "m4"]
    );
    let positions: Vec<InboxPos> = received.iter().map(|(_, p)| p.unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    let kept = c.inbox_since("a", None).await.unwrap();
    assert_eq!(
        kept.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        positions,
        "the stream holds them where a saw them"
    );
    let after = c.inbox_since("a", Some(positions[2])).await.unwrap();
    assert_eq!(after.len(), 2, "only what came after a place");
    assert_eq!(after[0].0, positions[3]);

    // A session's frames: in order, sent-again frames not kept twice, old ones dropped.
    let token = "t".repeat(64);
    let rec = record("a");
    a.resume_open(&token, &rec, None).await.unwrap();
    a.mirror(&rec.session, (1..=4).map(|s| frame(s, None)).collect(), 1)
        .await
        .unwrap();
    a.mirror(
        &rec.session,
        vec![frame(3, None), frame(4, None), frame(5, Some(positions[1]))],
        2,
    )
    .await
    .unwrap();
    let got_rec = b.resume_record(&token).await.unwrap().unwrap();
    assert_eq!((got_rec.node.as_str(), got_rec.session), ("a", rec.session));

    // Two nodes take it over at once: exactly one gets it, with the frames kept.
    let (tb, tc) = tokio::join!(b.take_over(&token, "a"), c.take_over(&token, "a"));
    let (tb, tc) = (tb.unwrap(), tc.unwrap());
    assert!(tb.is_some() != tc.is_some(), "exactly one takes it");
    let took = tb.or(tc).unwrap();
    assert_eq!(
        took.frames.iter().map(|f| f.seq).collect::<Vec<_>>(),
        [2, 3, 4, 5],
        "frame 1 was dropped, 3 and 4 kept once"
    );
    assert_eq!(took.frames[3].payload, Bytes::from("frame 5"));
    assert_eq!(took.frames[3].hw, Some(positions[1]));
    assert_eq!(took.record.client, client("alice"));
    // Taken: the lost node's window can no longer end it.
    assert!(!a.resume_expire(&token, "a").await);
    assert!(b.take_over(&token, "a").await.unwrap().is_none());

    // A session nobody takes over ends once, for the node that held it.
    let token2 = "u".repeat(64);
    let rec2 = record("a");
    a.resume_open(&token2, &rec2, None).await.unwrap();
    assert_eq!(a.resumables_on("a").await.unwrap().len(), 1);
    assert!(!b.resume_expire(&token2, "b").await, "not b's");
    assert!(a.resume_expire(&token2, "a").await);
    assert!(!a.resume_expire(&token2, "a").await, "once");
    assert!(b.resume_record(&token2).await.unwrap().is_none());
    assert!(c.take_over(&token2, "a").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_kept_and_taken_over_once() {
    let redis = common::RedisServer::start();
    case(RedisTarget::Single(redis.url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_sessions_are_kept_and_taken_over_once() {
    let redis = common::RedisCluster::start();
    case(RedisTarget::Cluster(redis.urls())).await;
}
