//! The server's configuration: typed sections with defaults, loaded from an optional TOML
//! file and `SIGNAL_MANAGER_<SECTION>_<KEY>` environment variables, then validated.
//!
//! Loading is strict: an unknown section or key, in the file or in the environment, is an
//! error naming the key and its source. [`Config::validate`] then checks ranges and the
//! relations between keys, reporting every failure with the key it concerns.
//! `config.example.toml` at the repository root documents every key with its default.
//!
//! Environment variables map the first `_` after the prefix to `.` and lowercase the rest:
//! `SIGNAL_MANAGER_SERVER_MAX_CONNECTIONS` sets `server.max_connections`, so section
//! names never contain `_`. Arrays use TOML syntax: `SIGNAL_MANAGER_AUTH_API_KEYS='["a:b"]'`.
//!
//! Every time value is a whole number of seconds unless its key says otherwise
//! (`database.retry_interval` is in milliseconds).

mod auth;
mod checks;
mod database;
mod error;
mod load;
mod secret;
mod sections;
mod server;

use std::path::Path;

use serde::{Deserialize, Serialize};

pub use auth::{AuthConfig, AuthMethod};
pub use database::{DatabaseBackend, DatabaseConfig};
pub use error::{ConfigError, ConfigIssue};
pub use load::ENV_PREFIX;
pub use secret::Secret;
pub use sections::{
    BundlePolicy, CloudflareConfig, ClusterConfig, DEFAULT_STUN_URLS, EventsConfig,
    FirestoreConfig, HeartbeatConfig, IceTransportPolicy, LogFormat, LoggingConfig,
    MAX_TURN_USERNAME_LEN, MediaMode, MetricsConfig, RoomsConfig, RoutingConfig, RtcpMuxPolicy,
    SecurityConfig, SessionConfig, WebrtcConfig,
};
pub use server::{MAX_SIZE_LIMIT, MIN_SIZE_LIMIT, ServerConfig};

use checks::Checks;

/// The seed documents' test credentials, added by [`Config::apply_dev_mode`].
pub const DEV_API_KEYS: [(&str, &str); 2] = [
    ("test_client_1", "test_token_1"),
    ("test_client_2", "test_token_2"),
];

/// The whole configuration, one field per TOML section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// `[server]`: listener, limits, timeouts, TLS.
    pub server: ServerConfig,
    /// `[auth]`: API keys and JWT.
    pub auth: AuthConfig,
    /// `[heartbeat]`: liveness.
    pub heartbeat: HeartbeatConfig,
    /// `[session]`: registered-client sessions.
    pub session: SessionConfig,
    /// `[security]`: rate limits and origins.
    pub security: SecurityConfig,
    /// `[logging]`: tracing output.
    pub logging: LoggingConfig,
    /// `[metrics]`: the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// `[database]`: the store.
    pub database: DatabaseConfig,
    /// `[rooms]`: room limits.
    pub rooms: RoomsConfig,
    /// `[routing]`: who may signal whom.
    pub routing: RoutingConfig,
    /// `[firestore]` (seed 000): the Firestore store's project, database and credentials,
    /// acted on when `database.url` is `firestore://…`.
    pub firestore: Option<FirestoreConfig>,
    /// `[cloudflare]`: accepted and validated, not yet acted on.
    pub cloudflare: Option<CloudflareConfig>,
    /// `[webrtc]` (seeds 001, 004): ICE servers and policies for `/webrtc/config`.
    pub webrtc: WebrtcConfig,
    /// `[cluster]`: many nodes over Redis; absent, one node.
    pub cluster: Option<ClusterConfig>,
    /// `[events]`: lifecycle events to a webhook.
    pub events: EventsConfig,
}

// === impl Config ===

impl Config {
    /// Defaults ← the TOML file at `path` (if `Some`) ← `SIGNAL_MANAGER_*` variables of the
    /// process environment. Does not validate; call [`Config::validate`].
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = std::env::vars_os().map(|(name, value)| {
            (
                name.to_string_lossy().into_owned(),
                value.to_string_lossy().into_owned(),
            )
        });
        load::load(path, env)
    }

    /// Like [`Config::load`], with the environment given as `(name, value)` pairs instead
    /// of read from the process, so tests need not touch the process environment.
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load::load(path, env)
    }

    /// Checks ranges and relations between keys; the error lists every failure, each
    /// naming its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut c = Checks::default();
        self.server.check(&mut c);
        self.auth.check(&mut c);
        self.check_heartbeat(&mut c);
        self.session.check(&mut c);
        self.security.check(&mut c);
        self.logging.check(&mut c);
        self.metrics.check(&mut c);
        self.check_metrics_port(&mut c);
        self.database.check(&mut c);
        self.check_firestore(&mut c);
        self.rooms.check(&mut c);
        if let Some(cloudflare) = &self.cloudflare {
            cloudflare.check(&mut c);
        }
        self.webrtc.check(&mut c);
        if self.webrtc.media == MediaMode::Cloudflare {
            let cf = self.cloudflare.clone().unwrap_or_default();
            if cf.app_id.as_deref().is_none_or(str::is_empty) {
                c.fail(
                    "cloudflare.app_id",
                    "webrtc.media = \"cloudflare\" needs [cloudflare] app_id (the SFU app's id)",
                );
            }
            if cf.app_secret.is_none() {
                c.fail(
                    "cloudflare.app_secret",
                    "webrtc.media = \"cloudflare\" needs [cloudflare] app_secret (the SFU app's secret)",
                );
            }
        }
        self.events.check(&mut c);
        if let Some(cluster) = &self.cluster {
            cluster.check(&mut c);
            if self.database.backend() == DatabaseBackend::Sqlite {
                c.fail(
                    "cluster.redis_url",
                    "cluster mode needs a store every node shares, and database.url names a \
                     SQLite file: set database.url to postgres://… or firestore://…, or remove \
                     [cluster] to run one node",
                );
            }
        }
        let issues = c.into_issues();
        if issues.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid { issues })
        }
    }

    /// What the config sets that this build parses and validates but does not act on:
    /// the section `"firestore"` when present while the store is not Firestore,
    /// `"cloudflare"` when present with neither the SFU mode nor a TURN key,
    /// `"webrtc.session_timeout"` when set, and `"webrtc.cloudflare_timeout"` when set
    /// without the SFU mode.
    pub fn inactive_sections(&self) -> Vec<&'static str> {
        let firestore_unused =
            self.firestore.is_some() && self.database.backend() != DatabaseBackend::Firestore;
        let mut inactive: Vec<&'static str> = [
            ("firestore", firestore_unused),
            (
                "cloudflare",
                self.cloudflare.as_ref().is_some_and(|c| {
                    self.webrtc.media != MediaMode::Cloudflare && c.turn_key_id.is_none()
                }),
            ),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        inactive.extend(self.webrtc.inactive_keys());
        inactive
    }

    /// The Firestore project: the one of `database.url = "firestore://PROJECT_ID"`, else
    /// `[firestore] project_id`.
    pub fn firestore_project(&self) -> Option<String> {
        let from_url = self
            .database
            .url
            .strip_prefix("firestore://")
            .map(|p| p.trim_end_matches('/'))
            .filter(|p| !p.is_empty());
        from_url
            .map(str::to_owned)
            .or_else(|| self.firestore.as_ref()?.project_id.clone())
            .filter(|p| !p.is_empty())
    }

    fn check_firestore(&self, c: &mut Checks) {
        if self.database.backend() != DatabaseBackend::Firestore {
            return;
        }
        match self.firestore_project() {
            None => c.fail(
                "database.url",
                "firestore:// names no project: write firestore://PROJECT_ID or set \
                 [firestore] project_id",
            ),
            Some(p)
                if !p.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b':' | b'_')
                }) =>
            {
                c.fail(
                    "database.url",
                    format!("{p:?} is not a Google Cloud project id"),
                );
            }
            Some(_) => {}
        }
        if let Some(path) = self
            .firestore
            .as_ref()
            .and_then(|f| f.credentials_path.as_ref())
            && !std::path::Path::new(path).is_file()
        {
            c.fail(
                "firestore.credentials_path",
                format!("{path:?} is not a readable file"),
            );
        }
    }

    /// Development mode: adds the seed test credentials ([`DEV_API_KEYS`]) for each
    /// client id not already in `auth.api_keys`, and sets `auth.allow_anonymous`.
    pub fn apply_dev_mode(&mut self) {
        let present: Vec<String> = self
            .auth
            .parsed_api_keys()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        for (id, token) in DEV_API_KEYS {
            if !present.iter().any(|p| p == id) {
                self.auth.api_keys.push(format!("{id}:{token}"));
            }
        }
        self.auth.allow_anonymous = true;
    }

    /// The API keys as `(client_id, token)`, skipping malformed entries (which
    /// [`Config::validate`] reports).
    pub fn api_keys(&self) -> Vec<(String, String)> {
        self.auth.parsed_api_keys()
    }

    /// The heartbeat interval in force, in seconds: `heartbeat.interval`, unless it is left
    /// at its default and seed 000's `server.heartbeat_interval` is set.
    pub fn heartbeat_interval(&self) -> u64 {
        match self.server.heartbeat_interval {
            Some(interval) if self.heartbeat.interval == HeartbeatConfig::default().interval => {
                interval
            }
            _ => self.heartbeat.interval,
        }
    }

    /// The key [`Config::heartbeat_interval`] takes its value from.
    fn heartbeat_interval_key(&self) -> &'static str {
        if self.heartbeat_interval() == self.heartbeat.interval {
            "heartbeat.interval"
        } else {
            "server.heartbeat_interval"
        }
    }

    fn check_heartbeat(&self, c: &mut Checks) {
        c.at_least("heartbeat.interval", self.heartbeat.interval, 1);
        let interval = self.heartbeat_interval();
        if self.heartbeat.timeout <= interval {
            c.fail(
                "heartbeat.timeout",
                format!(
                    "must be greater than {} = {interval} (got {})",
                    self.heartbeat_interval_key(),
                    self.heartbeat.timeout
                ),
            );
        }
    }

    fn check_metrics_port(&self, c: &mut Checks) {
        let (server, metrics) = (&self.server, &self.metrics);
        if metrics.enabled
            && metrics.port != 0
            && metrics.port == server.port
            && metrics.host == server.host
        {
            c.fail(
                "metrics.port",
                format!(
                    "must differ from server.port when both listen on {} (got {})",
                    metrics.host, metrics.port
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests;
