//! Test helpers: a real server on port 0 over a real SQLite file, and connected clients.
#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use signal_client::Client;
use signal_server::{Running, config::Config};
use tempfile::TempDir;

/// Clients every test server accepts, as `(client_id, token)`.
pub const KEYS: &[(&str, &str)] = &[
    ("alice", "alice-token"),
    ("bob", "bob-token"),
    ("carol", "carol-token"),
    ("dave", "dave-token"),
];

/// The JWT secret of test servers.
pub const JWT_SECRET: &str = "test-jwt-secret";

/// How long tests wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn token(id: &str) -> String {
    format!("{id}-token")
}

#[path = "../../../store-firestore/tests/common/mod.rs"]
pub mod emulator;
#[path = "../../../store-postgres/tests/common/mod.rs"]
pub mod pg;
#[path = "../../../router-redis/tests/common/mod.rs"]
pub mod redis;

/// How many nodes a test server is: `SIGNAL_TEST_NODES` (default 1). With more than one,
/// the nodes form a cluster over a `redis-server` of the test's own, on one PostgreSQL
/// (SQLite cannot be shared), behind a round-robin TCP balancer: a test's first client
/// lands on node 0, its second on node 1, and so on, as behind a load balancer.
pub fn test_nodes() -> usize {
    match std::env::var("SIGNAL_TEST_NODES").as_deref() {
        Err(_) | Ok("") => 1,
        Ok(n) => match n.parse::<usize>() {
            Ok(n) if (1..=8).contains(&n) => n,
            _ => panic!("SIGNAL_TEST_NODES={n:?}: expected a number from 1 to 8"),
        },
    }
}

/// A round-robin TCP balancer in front of a cluster's nodes.
pub struct Balancer {
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Balancer {
    pub async fn start(backends: Vec<std::net::SocketAddr>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the balancer");
        let addr = listener.local_addr().expect("balancer address");
        let task = tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut inbound, _)) = listener.accept().await {
                let backend = backends[next % backends.len()];
                next += 1;
                tokio::spawn(async move {
                    let _ = inbound.set_nodelay(true);
                    if let Ok(mut out) = tokio::net::TcpStream::connect(backend).await {
                        let _ = out.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Self { addr, task }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running server with its own database: a SQLite file; with
/// `SIGNAL_TEST_STORE=postgres` a PostgreSQL server of its own; with
/// `SIGNAL_TEST_STORE=firestore` a database of its own on a Firestore emulator the test
/// binary starts (the test command runs the room suites all three ways).
pub struct TestServer {
    pub running: Option<Running>,
    pub url: String,
    pub dir: TempDir,
    pub config: Config,
    pub pg: Option<pg::PgServer>,
    /// The other nodes of a cluster (see [`test_nodes`]).
    pub others: Vec<Running>,
    pub redis: Option<redis::RedisServer>,
    /// The Redis Cluster the nodes use instead, with `SIGNAL_TEST_REDIS=cluster`.
    pub redis_cluster: Option<std::sync::Arc<redis::RedisCluster>>,
    pub balancer: Option<Balancer>,
}

/// The Redis a cluster of test nodes uses: `SIGNAL_TEST_REDIS` = `single` (one
/// `redis-server`, the default) or `cluster` (a Redis Cluster of three primaries).
pub fn test_redis() -> &'static str {
    match std::env::var("SIGNAL_TEST_REDIS").as_deref() {
        Err(_) | Ok("") | Ok("single") => "single",
        Ok("cluster") => "cluster",
        Ok(other) => panic!("SIGNAL_TEST_REDIS={other:?}: expected single or cluster"),
    }
}

/// The store the tests run on: `SIGNAL_TEST_STORE` = `sqlite` (the default), `postgres`
/// or `firestore`.
pub fn test_store() -> &'static str {
    match std::env::var("SIGNAL_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => "sqlite",
        Ok("postgres") => "postgres",
        Ok("firestore") => "firestore",
        Ok(other) => {
            panic!("SIGNAL_TEST_STORE={other:?}: expected sqlite, postgres or firestore")
        }
    }
}

pub fn base_config(db: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.host = "127.0.0.1".into();
    c.server.port = 0;
    c.auth.api_keys = KEYS.iter().map(|(i, t)| format!("{i}:{t}")).collect();
    c.auth.token_secret = Some(JWT_SECRET.into());
    c.database.url = format!("sqlite://{}", db.display());
    c.metrics.enabled = false;
    c.server.shutdown_timeout = 5;
    c
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        Self::start_nodes(test_nodes(), f).await
    }

    /// One node whatever `SIGNAL_TEST_NODES` says: for what is a node's own (its
    /// connection limit, its store's pool failing).
    pub async fn start_single_with(f: impl FnOnce(&mut Config)) -> Self {
        Self::start_nodes(1, f).await
    }

    pub async fn start_nodes(nodes: usize, f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = base_config(&dir.path().join("signal.db"));
        let default_url = config.database.url.clone();
        f(&mut config);
        // A test that chose its own store keeps it.
        let mut pg = None;
        let nodes = if config.cluster.is_none() { nodes } else { 1 };
        if config.database.url == default_url {
            let store = match test_store() {
                // A cluster shares its store: SQLite cannot be.
                "sqlite" if nodes > 1 => "postgres",
                s => s,
            };
            match store {
                "postgres" => {
                    let server = pg::PgServer::start().await;
                    config.database.url = server.fresh_database().await;
                    pg = Some(server);
                }
                "firestore" => {
                    let host = tokio::task::spawn_blocking(|| emulator::shared().host.clone())
                        .await
                        .expect("the emulator starts");
                    config.database.url = "firestore://demo-signal".into();
                    config.firestore = Some(signal_server::config::FirestoreConfig {
                        database_name: Some(emulator::fresh_database()),
                        emulator_host: Some(host),
                        ..Default::default()
                    });
                }
                _ => {}
            }
        }
        let mut redis = None;
        let mut redis_cluster = None;
        if nodes > 1 {
            let mut cluster = signal_server::config::ClusterConfig {
                presence_ttl: 5,
                ..Default::default()
            };
            if test_redis() == "cluster" {
                let c = tokio::task::spawn_blocking(redis::RedisCluster::start)
                    .await
                    .expect("the Redis Cluster starts");
                cluster.redis_cluster_urls = c.urls();
                redis_cluster = Some(std::sync::Arc::new(c));
            } else {
                let server = redis::RedisServer::start();
                cluster.redis_url = server.url();
                redis = Some(server);
            }
            config.cluster = Some(cluster);
        }
        config.validate().expect("test config is valid");
        let mut s = Self::launch(dir, config, pg, redis, nodes).await;
        s.redis_cluster = redis_cluster;
        s
    }

    async fn launch(
        dir: TempDir,
        config: Config,
        pg: Option<pg::PgServer>,
        redis: Option<redis::RedisServer>,
        nodes: usize,
    ) -> Self {
        let mut running = Vec::with_capacity(nodes);
        for i in 0..nodes {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let mut c = config.clone();
            if let Some(cl) = &mut c.cluster
                && nodes > 1
            {
                cl.node_id = Some(format!("node-{i}"));
            }
            running.push(
                signal_server::start(c, Some(listener))
                    .await
                    .expect("server starts"),
            );
        }
        let balancer = if nodes > 1 {
            Some(Balancer::start(running.iter().map(|r| r.addr).collect()).await)
        } else {
            None
        };
        let addr = balancer.as_ref().map_or(running[0].addr, |b| b.addr);
        let mut it = running.into_iter();
        Self {
            running: it.next(),
            others: it.collect(),
            url: format!("ws://{addr}/"),
            dir,
            config,
            pg,
            redis,
            redis_cluster: None,
            balancer,
        }
    }

    /// How many nodes this server is.
    pub fn nodes(&self) -> usize {
        1 + self.others.len()
    }

    /// Drains the server (every node) and starts it again on the same database.
    pub async fn restart(mut self) -> Self {
        let nodes = self.nodes();
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        for r in std::mem::take(&mut self.others) {
            r.shutdown().await;
        }
        let Self {
            dir,
            config,
            pg,
            redis,
            redis_cluster,
            ..
        } = self;
        let mut s = Self::launch(dir, config, pg, redis, nodes).await;
        s.redis_cluster = redis_cluster;
        s
    }

    /// `http://` of node `i` itself, not through the balancer.
    pub fn node_http(&self, i: usize) -> String {
        let r = if i == 0 {
            self.running()
        } else {
            &self.others[i - 1]
        };
        format!("http://{}/", r.addr)
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("signal.db")
    }

    pub fn http(&self) -> String {
        self.url.replacen("ws://", "http://", 1)
    }

    pub fn running(&self) -> &Running {
        self.running.as_ref().expect("server running")
    }

    /// A raw client, not yet authenticated.
    pub async fn client(&self) -> Client {
        Client::connect(&self.url)
            .await
            .expect("websocket connects")
    }

    /// A client authenticated as `id` with its API key.
    pub async fn connected(&self, id: &str) -> Client {
        let mut c = self.client().await;
        c.authenticate(id, &token(id))
            .await
            .expect("CONNECT accepted");
        c
    }

    /// A client authenticated and registered as `id`.
    pub async fn registered(&self, id: &str) -> Client {
        let c = self.connected(id).await;
        c.register(&token(id)).await.expect("REGISTER accepted");
        c
    }

    /// Waits until `/health` answers 200 (after the database came back), at most 20 s.
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let (status, _) = http_get(&self.http(), "/health").await;
            if status == 200 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server did not recover"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        for r in std::mem::take(&mut self.others) {
            r.shutdown().await;
        }
    }
}

/// Minimal HTTP/1.1 GET over a raw socket: (status, body).
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    http_get_bearer(base, path, None).await
}

/// [`http_get`] with `Authorization: Bearer TOKEN`.
pub async fn http_get_bearer(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(base, "GET", path, token, None).await
}

/// A minimal HTTP/1.1 request over a raw socket, with an optional Bearer token and JSON
/// body: (status, body).
pub async fn http_request(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    json_body: Option<&str>,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .expect("tcp connect");
    let auth = token.map_or_else(String::new, |t| format!("Authorization: Bearer {t}\r\n"));
    let body = json_body.map_or_else(String::new, |b| {
        format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )
    });
    let end = if json_body.is_some() { "" } else { "\r\n" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n{body}{end}"
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    // Chunked bodies: keep only the JSON part.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b >= a => body[a..=b].to_string(),
        _ => body,
    };
    (status, body)
}

// === JSON dialects ===

/// A JWT for `sub` (with an optional `name` claim) signed with the test secret.
pub fn jwt(sub: &str, name: Option<&str>) -> String {
    signal_core::auth::issue_jwt(JWT_SECRET, sub, name, 3600).expect("sign JWT")
}

/// A JWT for `sub` that expired an hour ago.
pub fn expired_jwt(sub: &str) -> String {
    let now = chrono::Utc::now().timestamp() as u64;
    let claims = signal_core::auth::Claims {
        sub: sub.into(),
        exp: now - 3600,
        iat: Some(now - 7200),
        name: None,
        rooms: None,
        admin: None,
    };
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .expect("sign JWT")
}

/// How a JSON test client saw its connection end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsClosed {
    pub code: u16,
    pub reason: String,
}

/// A WebSocket client speaking JSON text messages, as a browser or script would.
pub struct JsonClient {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
}

impl TestServer {
    /// `ws://host:port{path}` (path includes any query).
    pub fn ws_url(&self, path: &str) -> String {
        format!("{}{}", self.url.trim_end_matches('/'), path)
    }

    /// A JSON client on `path` (e.g. `/ws?token=alice-token`).
    pub async fn json(&self, path: &str) -> JsonClient {
        JsonClient::connect(&self.ws_url(path))
            .await
            .expect("websocket connects")
    }

    /// A JSON client on `path` with an `Authorization: Bearer` header.
    pub async fn json_bearer(&self, path: &str, token: &str) -> JsonClient {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = self.ws_url(path).into_client_request().expect("request");
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket connects");
        JsonClient { ws }
    }
}

impl JsonClient {
    pub async fn connect(url: &str) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let (ws, _) = tokio_tungstenite::connect_async(url).await?;
        Ok(Self { ws })
    }

    /// Sends a JSON value as a text message.
    pub async fn send(&mut self, v: &serde_json::Value) {
        self.send_text(&v.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, s: &str) {
        use futures_util::SinkExt;
        self.ws
            .send(tokio_tungstenite::tungstenite::Message::text(s))
            .await
            .expect("send");
    }

    /// The next text message within `d`, parsed; `Err` on timeout or close.
    pub async fn next_within(&mut self, d: Duration) -> Result<serde_json::Value, WsClosed> {
        use futures_util::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = tokio::time::Instant::now() + d;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => {
                    return Err(WsClosed {
                        code: 0,
                        reason: "timeout".into(),
                    });
                }
                Ok(None) => {
                    return Err(WsClosed {
                        code: 1006,
                        reason: String::new(),
                    });
                }
                Ok(Some(Err(e))) => {
                    return Err(WsClosed {
                        code: 1006,
                        reason: e.to_string(),
                    });
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Ok(serde_json::from_str(t.as_str()).expect("server sends JSON"));
                }
                Ok(Some(Ok(Message::Close(f)))) => {
                    return Err(match f {
                        Some(f) => WsClosed {
                            code: u16::from(f.code),
                            reason: f.reason.to_string(),
                        },
                        None => WsClosed {
                            code: 1005,
                            reason: String::new(),
                        },
                    });
                }
                Ok(Some(Ok(Message::Binary(_)))) => panic!("binary message on a JSON endpoint"),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next text message, parsed (panics after [`WAIT`] or on close).
    pub async fn recv(&mut self) -> serde_json::Value {
        match self.next_within(WAIT).await {
            Ok(v) => v,
            Err(c) => panic!("expected a message, connection ended: {c:?}"),
        }
    }

    /// The next message whose `type` is `t`, skipping others.
    pub async fn recv_type(&mut self, t: &str) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await {
                Ok(v) if v["type"] == t => return v,
                Ok(_) => {}
                Err(c) => panic!("expected a '{t}' message, connection ended: {c:?}"),
            }
        }
    }

    /// Asserts nothing arrives for `d`.
    pub async fn expect_silence(&mut self, d: Duration) {
        if let Ok(v) = self.next_within(d).await {
            panic!("expected silence, got {v}");
        }
    }

    /// Waits for the server's close frame, returning what came before it.
    pub async fn closed(&mut self) -> (Vec<serde_json::Value>, WsClosed) {
        let mut before = Vec::new();
        loop {
            match self.next_within(WAIT).await {
                Ok(v) => before.push(v),
                Err(c) => return (before, c),
            }
        }
    }

    /// Closes from the client side.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}

// === the real binary ===

/// A free port on 127.0.0.1 (free when asked; the binary binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Starts the server binary with `--config config`, its output discarded.
pub fn spawn_binary(config: &std::path::Path) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_signal-manager-service"))
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("binary starts")
}

/// Waits until something listens on `port` (20 s at most).
pub async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "server did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
