//! The router contract against a real `redis-server` this test starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use signal_router_redis::{RedisRouter, RedisRouterConfig, RedisTarget};

fn config(url: &str, node: &str) -> RedisRouterConfig {
    RedisRouterConfig {
        redis: RedisTarget::Single(url.to_owned()),
        node_id: node.to_owned(),
        presence_ttl: Duration::from_secs(3),
        command_timeout: Duration::from_secs(2),
        ca_file: None,
        resume_window: Some(Duration::from_secs(30)),
    }
}

/// A router per node, sharing one Redis; built outside the async contract's closure.
struct Nodes {
    redis: RedisTarget,
    ca: Option<std::path::PathBuf>,
    rt: tokio::runtime::Handle,
}

impl Nodes {
    fn make(&self, node: &str) -> Arc<RedisRouter> {
        let cfg = RedisRouterConfig {
            redis: self.redis.clone(),
            ca_file: self.ca.clone(),
            ..config("", node)
        };
        tokio::task::block_in_place(|| self.rt.block_on(RedisRouter::start(cfg))).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_router_keeps_the_contract() {
    let redis = common::RedisServer::start();
    let nodes = Nodes {
        redis: RedisTarget::Single(redis.url()),
        ca: None,
        rt: tokio::runtime::Handle::current(),
    };
    signal_core::router::contract::run(|node| nodes.make(node), true).await;
}

#[derive(Default)]
struct Lost(parking_lot::Mutex<Vec<String>>, parking_lot::Mutex<usize>);

impl signal_core::router::Inbox for Lost {
    fn receive(&self, _msg: signal_core::router::NodeMessage) -> usize {
        *self.1.lock() += 1;
        1
    }
    fn node_lost(&self, node: &str) {
        self.0.lock().push(node.to_owned());
    }
}

async fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The whole contract on a Redis Cluster of three primaries: the registry's scripts run
/// where their room's or client's slot lives, node channels are sharded, and what spans
/// slots (a lost node's clients, the list of rooms) is split per slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_on_a_redis_cluster() {
    let redis = common::RedisCluster::start();
    let nodes = Nodes {
        redis: RedisTarget::Cluster(redis.urls()),
        ca: None,
        rt: tokio::runtime::Handle::current(),
    };
    signal_core::router::contract::run(|node| nodes.make(node), true).await;
}

/// A node that stops renewing its presence is reported lost, once, to one live node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_is_reported_lost_once() {
    use signal_core::router::Router;
    let redis = common::RedisServer::start();
    let ttl = |node: &str| RedisRouterConfig {
        presence_ttl: Duration::from_secs(1),
        ..config(&redis.url(), node)
    };
    let a = RedisRouter::start(ttl("a")).await.unwrap();
    let c = RedisRouter::start(ttl("c")).await.unwrap();
    let b = RedisRouter::start(ttl("b")).await.unwrap();
    let (la, lc) = (Arc::new(Lost::default()), Arc::new(Lost::default()));
    a.attach(Arc::downgrade(&la) as _);
    c.attach(Arc::downgrade(&lc) as _);
    wait_for("the nodes see each other", 5, || {
        futures_executor_nodes(&a).len() == 3
    })
    .await;
    drop(b);
    wait_for("b is reported lost", 10, || {
        la.0.lock().len() + lc.0.lock().len() == 1
    })
    .await;
    // The reaper forgets the node once its members are out (the hub does so).
    a.forget_node("b").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let reports: Vec<String> =
        la.0.lock()
            .iter()
            .chain(lc.0.lock().iter())
            .cloned()
            .collect();
    assert_eq!(reports, ["b"], "one node reaps, once");
}

fn futures_executor_nodes(r: &RedisRouter) -> Vec<String> {
    use signal_core::router::Router;
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(r.nodes())).unwrap()
}

/// Redis going away: the router says so, keeps the node up, and once Redis is back
/// (empty, as after a crash) renews its presence and its subscription by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_router_recovers_when_redis_returns() {
    use signal_core::router::{NodeMessage, Recipient, Remote, Router};
    let mut redis = common::RedisServer::start();
    let a = RedisRouter::start(config(&redis.url(), "a")).await.unwrap();
    let b = RedisRouter::start(config(&redis.url(), "b")).await.unwrap();
    let inbox = Arc::new(Lost::default());
    a.attach(Arc::downgrade(&inbox) as _);
    assert!(a.is_healthy());
    redis.kill();
    let alice = signal_core::ClientId::parse("c", "alice").unwrap();
    assert!(
        a.session_opened(&alice).await.is_err(),
        "a clear error while Redis is away"
    );
    wait_for("unhealthy while Redis is away", 10, || !a.is_healthy()).await;
    redis.restart();
    wait_for("healthy again", 15, || a.is_healthy() && b.is_healthy()).await;
    // Presence is re-made by the sessions' owners; the channel is subscribed again.
    a.session_opened(&alice).await.unwrap();
    let msg = NodeMessage {
        id: uuid::Uuid::new_v4(),
        from_node: "b".into(),
        to: Recipient::Client {
            client: alice.clone(),
        },
        event: signal_core::hub::Event::PeerLeft {
            room: signal_core::RoomId::parse("r").unwrap(),
            client: alice.clone(),
            reason: "x".into(),
        },
        raw: None,
    };
    let mut delivered = false;
    for _ in 0..100 {
        if b.send(msg.clone()).await == Remote::Delivered {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(delivered, "node a's channel is subscribed again");
    wait_for("node a receives", 5, || *inbox.1.lock() >= 1).await;
}

/// The whole contract again over TLS (`rediss://`), trusting Redis's CA from a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_contract_holds_over_tls() {
    let redis = common::RedisServer::start_tls();
    let nodes = Nodes {
        redis: RedisTarget::Single(redis.tls_url()),
        ca: Some(redis.ca_file()),
        rt: tokio::runtime::Handle::current(),
    };
    signal_core::router::contract::run(|node| nodes.make(node), true).await;
}

/// A Redis whose certificate no trusted CA signed is never reached: the router reports
/// unhealthy and its calls fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    use signal_core::router::Router;
    let redis = common::RedisServer::start_tls();
    let r = RedisRouter::start(config(&redis.tls_url(), "a"))
        .await
        .unwrap();
    let client = signal_core::ClientId::parse("client_id", "alice").unwrap();
    assert!(r.session_opened(&client).await.is_err());
    assert!(!r.is_healthy());
}
