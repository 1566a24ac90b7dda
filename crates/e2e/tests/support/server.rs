//! A real signal-manager server on a loopback port 0 over a real SQLite file.
//!
//! A trimmed copy of `crates/server/tests/common/mod.rs`'s `TestServer`: that module also
//! pulls in `chrono` and `jsonwebtoken` (for its expired-token helper), which these tests
//! do not need.

use signal_server::{Running, config::Config};
use tempfile::TempDir;

/// Clients every test server accepts by API key, as `(client_id, token)`.
pub const KEYS: &[(&str, &str)] = &[("alice", "alice-token"), ("bob", "bob-token")];

/// The JWT secret of test servers.
pub const JWT_SECRET: &str = "e2e-jwt-secret";

/// The API key of `id` (see [`KEYS`]).
pub fn token(id: &str) -> String {
    format!("{id}-token")
}

/// An HS256 JWT for `sub`, signed with the test secret, valid for an hour.
pub fn jwt(sub: &str) -> String {
    signal_core::auth::issue_jwt(JWT_SECRET, sub, None, 3600).expect("sign JWT")
}

/// A running server with its own database file.
pub struct TestServer {
    running: Option<Running>,
    /// `ws://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    /// `sqlite://…` of its database file.
    #[allow(dead_code)] // read by some test binaries only
    pub db_url: String,
    /// Its metrics listener, when `metrics.enabled`.
    #[allow(dead_code)] // read by some test binaries only
    pub metrics_addr: Option<std::net::SocketAddr>,
    _dir: TempDir,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0` with API keys, a JWT secret and no metrics listener.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// [`start`](Self::start), with `adjust` applied to the configuration first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = Config::default();
        c.server.host = "127.0.0.1".into();
        c.server.port = 0;
        c.auth.api_keys = KEYS.iter().map(|(i, t)| format!("{i}:{t}")).collect();
        c.auth.token_secret = Some(JWT_SECRET.into());
        let db_url = format!("sqlite://{}", dir.path().join("signal.db").display());
        c.database.url = db_url.clone();
        c.metrics.enabled = false;
        c.server.shutdown_timeout = 5;
        adjust(&mut c);
        c.validate().expect("test config is valid");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let running = signal_server::start(c, Some(listener))
            .await
            .expect("server starts");
        let base = format!("ws://{}", running.addr);
        Self {
            metrics_addr: running.metrics_addr,
            running: Some(running),
            base,
            db_url,
            _dir: dir,
        }
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Drains the server.
    pub async fn shutdown(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}
