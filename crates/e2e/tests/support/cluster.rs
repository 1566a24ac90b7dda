//! Nodes of a real signal-manager cluster in this process: one PostgreSQL and one
//! `redis-server` of the test's own (started on free ports, stopped on drop), never the
//! machine's shared services.

#![allow(dead_code)] // used by tests/sfu.rs only

use signal_server::{Running, config::Config};

use super::server::{JWT_SECRET, KEYS};

#[path = "../../../store-postgres/tests/common/mod.rs"]
pub mod pg;
#[path = "../../../router-redis/tests/common/mod.rs"]
pub mod redis;

/// Running nodes sharing a store and a Redis.
pub struct Cluster {
    nodes: Vec<Running>,
    _pg: pg::PgServer,
    _redis: redis::RedisServer,
}

impl Cluster {
    /// `count` nodes, each with `adjust` applied to its configuration.
    pub async fn start(count: usize, adjust: impl Fn(&mut Config)) -> Self {
        let pg = pg::PgServer::start().await;
        let db = pg.fresh_database().await;
        let redis = redis::RedisServer::start();
        let mut nodes = Vec::with_capacity(count);
        for i in 0..count {
            let mut c = Config::default();
            c.server.host = "127.0.0.1".into();
            c.server.port = 0;
            c.server.shutdown_timeout = 5;
            c.auth.api_keys = KEYS.iter().map(|(i, t)| format!("{i}:{t}")).collect();
            c.auth.token_secret = Some(JWT_SECRET.into());
            c.database.url = db.clone();
            c.metrics.enabled = false;
            c.cluster = Some(signal_server::config::ClusterConfig {
                redis_url: redis.url(),
                node_id: Some(format!("node-{i}")),
                presence_ttl: 5,
                ..Default::default()
            });
            adjust(&mut c);
            c.validate().expect("test config is valid");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            nodes.push(
                signal_server::start(c, Some(listener))
                    .await
                    .expect("node starts"),
            );
        }
        Self {
            nodes,
            _pg: pg,
            _redis: redis,
        }
    }

    /// `ws://127.0.0.1:PORT{path}` of node `i`.
    pub fn url(&self, i: usize, path: &str) -> String {
        format!("ws://{}{path}", self.nodes[i].addr)
    }

    /// Drains every node.
    pub async fn shutdown(self) {
        for n in self.nodes {
            n.shutdown().await;
        }
    }
}
