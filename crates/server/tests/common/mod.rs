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

/// A running server with its own database file.
pub struct TestServer {
    pub running: Option<Running>,
    pub url: String,
    pub dir: TempDir,
    pub config: Config,
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
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = base_config(&dir.path().join("signal.db"));
        f(&mut config);
        config.validate().expect("test config is valid");
        Self::launch(dir, config).await
    }

    async fn launch(dir: TempDir, config: Config) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let running = signal_server::start(config.clone(), Some(listener))
            .await
            .expect("server starts");
        let url = format!("ws://{}/", running.addr);
        Self {
            running: Some(running),
            url,
            dir,
            config,
        }
    }

    /// Drains the server and starts a new one on the same database file.
    pub async fn restart(mut self) -> Self {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
        let Self { dir, config, .. } = self;
        Self::launch(dir, config).await
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

    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Minimal HTTP/1.1 GET over a raw socket: (status, body).
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport)
        .await
        .expect("tcp connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\nConnection: close\r\n\r\n");
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
