//! The smaller sections: heartbeat, session, security, logging, metrics, rooms, routing,
//! webrtc (ICE servers for `/webrtc/config`), and the parsed-but-inactive firestore and
//! cloudflare.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::checks::Checks;
use super::secret::Secret;

/// `[heartbeat]`: liveness of connected clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Seconds between heartbeats a client is expected to send.
    pub interval: u64,
    /// Seconds without any message before a connection is declared dead; must exceed
    /// the interval.
    pub timeout: u64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: 30,
            timeout: 90,
        }
    }
}

/// `[session]`: registered-client sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds an idle session lives.
    pub session_timeout: u64,
    /// Seconds between sweeps of expired sessions.
    pub cleanup_interval: u64,
    /// Concurrent sessions one `client_id` may hold.
    pub max_sessions_per_client: u32,
    /// Seconds a resumable session whose connection dropped waits for its RESUME, in its
    /// rooms; 0 turns resume off.
    pub resume_window: u64,
    /// Frames a resumable session keeps after sending them, for a RESUME to send again.
    pub resume_buffer: u32,
    /// Bytes of those frames at most.
    pub resume_buffer_bytes: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            session_timeout: 3600,
            cleanup_interval: 300,
            max_sessions_per_client: 1,
            resume_window: 30,
            resume_buffer: 128,
            resume_buffer_bytes: 64 << 10,
        }
    }
}

/// `[security]`: rate limits and browser origins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Enforce `max_messages_per_minute`.
    pub rate_limit_enabled: bool,
    /// Messages one connection may send per minute.
    pub max_messages_per_minute: u32,
    /// Concurrent connections from one IP address.
    pub max_connections_per_ip: u32,
    /// New connections accepted per second from one IP address (as a burst of this many,
    /// refilled evenly); 0 turns the limit off.
    pub new_connections_per_ip_per_second: u32,
    /// Room creations and joins one client may make per minute (per node); 0: no limit.
    pub room_joins_per_minute: u32,
    /// Signals per second one room may carry (per node); 0: no limit.
    pub room_messages_per_second: u32,
    /// `Origin` values accepted on the WebSocket upgrade; `"*"` accepts any.
    pub allowed_origins: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            rate_limit_enabled: true,
            max_messages_per_minute: 6000,
            max_connections_per_ip: 1000,
            new_connections_per_ip_per_second: 100,
            room_joins_per_minute: 120,
            room_messages_per_second: 0,
            allowed_origins: vec!["*".to_owned()],
        }
    }
}

/// Output format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Multi-line, human-oriented.
    #[default]
    Pretty,
    /// One short line per event.
    Compact,
}

/// `[logging]`: tracing output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// A level (`trace`, `debug`, `info`, `warn`, `error`, `off`) or an `EnvFilter`
    /// directive list such as `info,signal_core=debug`.
    pub level: String,
    /// Line format.
    pub format: LogFormat,
    /// Write logs to stderr.
    pub console_output: bool,
    /// Also write logs to this file.
    pub file: Option<PathBuf>,
    /// Bytes after which the log file is rotated.
    pub max_file_size: u64,
    /// Rotated log files kept.
    pub max_files: u32,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Pretty,
            console_output: true,
            file: None,
            max_file_size: 10 * 1024 * 1024,
            max_files: 5,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint, on its own listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics`.
    pub enabled: bool,
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 asks the OS for any free port.
    pub port: u16,
    /// Seconds between connection statistics samples.
    pub connection_stats_interval: u64,
    /// Seconds between message statistics samples.
    pub message_stats_interval: u64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            host: "127.0.0.1".to_owned(),
            port: 9090,
            connection_stats_interval: 60,
            message_stats_interval: 30,
        }
    }
}

/// `[rooms]`: room limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Members per room when the creator does not set `metadata.max_participants`.
    pub max_participants: u32,
    /// Rooms that may exist at once.
    pub max_rooms: u32,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            max_participants: 16,
            max_rooms: 100_000,
        }
    }
}

/// `[routing]`: who may signal whom.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Relay a peer-to-peer message only when sender and recipient share a room.
    pub require_shared_room: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            require_shared_room: true,
        }
    }
}

/// `[firestore]` (seed 000): where the Firestore store (`database.url = "firestore://…"`)
/// finds its project, database and credentials. `auth_method` and `region` are accepted
/// for seed 000's files and not needed: credentials come from `credentials_path` or the
/// standard Google environment, and a database's region is fixed when it is created.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirestoreConfig {
    /// Google Cloud project (when `database.url` is just `firestore://`).
    pub project_id: Option<String>,
    /// Service account (or authorized user) key file; unset: `GOOGLE_APPLICATION_CREDENTIALS`,
    /// gcloud's application default credentials, then the metadata server.
    pub credentials_path: Option<String>,
    /// Firestore database name (default `(default)`).
    pub database_name: Option<String>,
    /// How to authenticate (`service_account`, …).
    pub auth_method: Option<String>,
    /// Google Cloud region.
    pub region: Option<String>,
    /// `host:port` of a Firestore emulator (else `FIRESTORE_EMULATOR_HOST`).
    pub emulator_host: Option<String>,
}

/// `[cloudflare]`: Cloudflare Realtime. With `webrtc.media = "cloudflare"`, rooms run on
/// Cloudflare's SFU (`app_id`, `app_secret`); with `turn_key_id` and `turn_key_api_token`,
/// `GET /webrtc/config` hands out Cloudflare TURN credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudflareConfig {
    /// Realtime SFU app id.
    pub app_id: Option<String>,
    /// Realtime SFU app secret (API bearer token).
    pub app_secret: Option<Secret>,
    /// Realtime API base URL.
    pub base_url: String,
    /// STUN server handed to members of SFU rooms (`stun_url` of room ACKs).
    pub stun_url: String,
    /// Seconds one API call may take (`webrtc.cloudflare_timeout`, seed 001's key, wins
    /// when set).
    pub timeout: u64,
    /// Attempts per API call; only what Cloudflare says is transient (5xx, 429,
    /// `retryable_transient_error`, ..., or a connection that never opened) is retried.
    pub retry_attempts: u32,
    /// Milliseconds between attempts.
    pub retry_interval: u64,
    /// Realtime TURN key id: `/webrtc/config` mints TURN credentials with it.
    pub turn_key_id: Option<String>,
    /// The TURN key's API token.
    pub turn_key_api_token: Option<Secret>,
}

impl Default for CloudflareConfig {
    fn default() -> Self {
        Self {
            app_id: None,
            app_secret: None,
            base_url: "https://rtc.live.cloudflare.com/v1".to_owned(),
            stun_url: "stun:stun.cloudflare.com:3478".to_owned(),
            timeout: 10,
            retry_attempts: 3,
            retry_interval: 1000,
            turn_key_id: None,
            turn_key_api_token: None,
        }
    }
}

/// `webrtc.media`: what carries a room's media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaMode {
    /// Peers send media to each other; the server relays their signals.
    #[default]
    P2p,
    /// Rooms run on Cloudflare Realtime's SFU (`[cloudflare] app_id, app_secret`).
    Cloudflare,
}

/// `iceTransportPolicy` handed to browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IceTransportPolicy {
    /// Host, server-reflexive and relay candidates.
    #[default]
    All,
    /// Relay (TURN) candidates only.
    Relay,
}

/// `bundlePolicy` handed to browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BundlePolicy {
    /// One transport per media type unless the remote side bundles.
    #[default]
    Balanced,
    /// One transport per track.
    MaxCompat,
    /// All media on one transport.
    MaxBundle,
}

/// `rtcpMuxPolicy` handed to browsers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtcpMuxPolicy {
    /// RTP and RTCP on one port (the only value in the W3C standard).
    #[default]
    Require,
    /// Non-standard; seed 004 accepts it, browsers may refuse it.
    Negotiate,
}

/// The STUN servers handed out when `webrtc.stun_urls` is not set: seed 004's fallback.
pub const DEFAULT_STUN_URLS: [&str; 2] = [
    "stun:stun.l.google.com:19302",
    "stun:stun1.l.google.com:19302",
];

/// Longest TURN username browsers accept (RFC 8489), in bytes.
pub const MAX_TURN_USERNAME_LEN: usize = 509;

/// `[webrtc]`: the ICE configuration served at `GET /webrtc/config` (seed 004), and the
/// SFU session timeouts of seed 001 (parsed and validated, not acted on yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// `stun:`/`stuns:` URLs, one ICE server entry for all of them. Defaults to Google's
    /// public STUN servers (seed 004's fallback); `[]` hands out no STUN server.
    pub stun_urls: Vec<String>,
    /// `turn:`/`turns:` URLs, one ICE server entry with credentials.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): each request gets a TURN REST
    /// credential valid for `turn_ttl` seconds. Excludes `turn_username`/`turn_credential`.
    pub turn_secret: Option<Secret>,
    /// A fixed TURN username, handed to every client (with `turn_credential`).
    pub turn_username: Option<String>,
    /// The password of `turn_username`.
    pub turn_credential: Option<Secret>,
    /// Seconds a credential minted from `turn_secret` stays valid.
    pub turn_ttl: u64,
    /// `all` or `relay` (TURN only).
    pub ice_transport_policy: IceTransportPolicy,
    /// `balanced`, `max-compat` or `max-bundle`.
    pub bundle_policy: BundlePolicy,
    /// `require` or `negotiate`.
    pub rtcp_mux_policy: RtcpMuxPolicy,
    /// Seed 001: seconds before an inactive SFU session is terminated. Not acted on yet.
    pub session_timeout: Option<u64>,
    /// Seed 001: seconds one Cloudflare API call may take (overrides
    /// `cloudflare.timeout`).
    pub cloudflare_timeout: Option<u64>,
    /// `p2p` (default) or `cloudflare`.
    pub media: MediaMode,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            stun_urls: DEFAULT_STUN_URLS.iter().map(|u| (*u).to_owned()).collect(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_username: None,
            turn_credential: None,
            turn_ttl: 86_400,
            ice_transport_policy: IceTransportPolicy::All,
            bundle_policy: BundlePolicy::Balanced,
            rtcp_mux_policy: RtcpMuxPolicy::Require,
            session_timeout: None,
            cloudflare_timeout: None,
            media: MediaMode::P2p,
        }
    }
}

impl WebrtcConfig {
    /// Keys that are set but that this build does not act on (`webrtc.session_timeout`;
    /// `webrtc.cloudflare_timeout` without the SFU mode).
    pub fn inactive_keys(&self) -> Vec<&'static str> {
        [
            ("webrtc.session_timeout", self.session_timeout.is_some()),
            (
                "webrtc.cloudflare_timeout",
                self.cloudflare_timeout.is_some() && self.media != MediaMode::Cloudflare,
            ),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

// === checks ===

impl SessionConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        c.at_least("session.session_timeout", self.session_timeout, 1);
        c.at_least("session.cleanup_interval", self.cleanup_interval, 1);
        c.at_least(
            "session.max_sessions_per_client",
            self.max_sessions_per_client,
            1,
        );
        c.between("session.resume_window", self.resume_window, 0, 3600);
        c.between("session.resume_buffer", self.resume_buffer, 1, 65_536);
        c.between(
            "session.resume_buffer_bytes",
            self.resume_buffer_bytes,
            1024,
            1 << 30,
        );
    }
}

impl SecurityConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        if self.rate_limit_enabled {
            c.at_least(
                "security.max_messages_per_minute",
                self.max_messages_per_minute,
                1,
            );
        }
        c.at_least(
            "security.max_connections_per_ip",
            self.max_connections_per_ip,
            1,
        );
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            let is_origin = origin
                .split_once("://")
                .is_some_and(|(scheme, host)| !scheme.is_empty() && !host.is_empty());
            if origin != "*" && (!is_origin || origin.chars().any(char::is_whitespace)) {
                c.fail(
                    format!("security.allowed_origins[{i}]"),
                    format!(
                        "expected \"*\" or an origin like \"https://example.com\", got {origin:?}"
                    ),
                );
            }
        }
    }
}

/// Levels accepted on their own by `logging.level`.
const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

impl LoggingConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        let level = self.level.trim();
        if !level.contains('=') && !LOG_LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
            c.fail(
                "logging.level",
                format!(
                    "expected one of {} or a filter like \"info,signal_core=debug\", got {:?}",
                    LOG_LEVELS.join(", "),
                    self.level
                ),
            );
        }
        if self.file.is_some() {
            c.at_least("logging.max_file_size", self.max_file_size, 1);
            c.at_least("logging.max_files", self.max_files, 1);
        }
    }
}

impl MetricsConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        if self.enabled {
            c.not_blank("metrics.host", &self.host);
        }
        c.at_least(
            "metrics.connection_stats_interval",
            self.connection_stats_interval,
            1,
        );
        c.at_least(
            "metrics.message_stats_interval",
            self.message_stats_interval,
            1,
        );
    }
}

impl RoomsConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        c.between("rooms.max_participants", self.max_participants, 2, 10_000);
        c.at_least("rooms.max_rooms", self.max_rooms, 1);
    }
}

impl CloudflareConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            c.fail(
                "cloudflare.base_url",
                format!("expected an http(s):// URL, got {:?}", self.base_url),
            );
        }
        if !(self.stun_url.starts_with("stun:") || self.stun_url.starts_with("stuns:")) {
            c.fail(
                "cloudflare.stun_url",
                format!("expected a stun: or stuns: URL, got {:?}", self.stun_url),
            );
        }
        c.at_least("cloudflare.timeout", self.timeout, 1);
        c.at_least(
            "cloudflare.retry_attempts",
            u64::from(self.retry_attempts),
            1,
        );
        if self.turn_key_id.is_some() != self.turn_key_api_token.is_some() {
            c.fail(
                "cloudflare.turn_key_id",
                "cloudflare.turn_key_id and cloudflare.turn_key_api_token go together",
            );
        }
    }
}

impl WebrtcConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        check_ice_urls(c, "webrtc.stun_urls", &self.stun_urls, &["stun:", "stuns:"]);
        check_ice_urls(c, "webrtc.turn_urls", &self.turn_urls, &["turn:", "turns:"]);
        let has_static = self.turn_username.is_some() || self.turn_credential.is_some();
        if let Some(secret) = &self.turn_secret {
            if secret.is_empty() {
                c.fail("webrtc.turn_secret", "must not be empty");
            }
            if has_static {
                c.fail(
                    "webrtc.turn_username",
                    "set either webrtc.turn_secret (time-limited credentials) or \
                     webrtc.turn_username + webrtc.turn_credential (static), not both",
                );
            }
        } else if has_static {
            match (&self.turn_username, &self.turn_credential) {
                (Some(user), Some(_)) => {
                    c.not_blank("webrtc.turn_username", user);
                    if user.len() > MAX_TURN_USERNAME_LEN {
                        c.fail(
                            "webrtc.turn_username",
                            format!("must be at most {MAX_TURN_USERNAME_LEN} bytes (RFC 8489)"),
                        );
                    }
                }
                (Some(_), None) => c.fail(
                    "webrtc.turn_credential",
                    "is required with webrtc.turn_username",
                ),
                (None, _) => c.fail(
                    "webrtc.turn_username",
                    "is required with webrtc.turn_credential",
                ),
            }
        }
        let has_credentials = self.turn_secret.is_some() || has_static;
        if !self.turn_urls.is_empty() && !has_credentials {
            c.fail(
                "webrtc.turn_urls",
                "TURN servers need credentials (browsers refuse a TURN URL without them): \
                 set webrtc.turn_secret, or webrtc.turn_username and webrtc.turn_credential",
            );
        }
        if self.turn_urls.is_empty() && has_credentials {
            c.fail(
                "webrtc.turn_urls",
                "TURN credentials are set but no TURN URL is: add turn: or turns: URLs",
            );
        }
        c.between("webrtc.turn_ttl", self.turn_ttl, 60, 30 * 86_400);
        if self.ice_transport_policy == IceTransportPolicy::Relay && self.turn_urls.is_empty() {
            c.fail(
                "webrtc.ice_transport_policy",
                "\"relay\" allows TURN candidates only, and webrtc.turn_urls is empty: \
                 no connection could be made",
            );
        }
        if let Some(v) = self.session_timeout {
            c.at_least("webrtc.session_timeout", v, 1);
        }
        if let Some(v) = self.cloudflare_timeout {
            c.at_least("webrtc.cloudflare_timeout", v, 1);
        }
    }
}

/// Each URL must start with one of `schemes`, name a host, and hold no whitespace.
fn check_ice_urls(c: &mut Checks, key: &str, urls: &[String], schemes: &[&str]) {
    for (i, url) in urls.iter().enumerate() {
        let host = schemes.iter().find_map(|s| url.strip_prefix(s));
        let valid = host.is_some_and(|h| {
            let h = h.trim_start_matches("//");
            !h.is_empty() && !h.starts_with(':') && !h.starts_with('?')
        }) && !url.chars().any(char::is_whitespace);
        if !valid {
            c.fail(
                format!("{key}[{i}]"),
                format!(
                    "expected a {} URL such as \"{}example.com:3478\", got {url:?}",
                    schemes.join(" or "),
                    schemes[0]
                ),
            );
        }
    }
}

/// `[cluster]`: many nodes as one service over Redis. Present (with `redis_url`, or
/// `redis_cluster_urls` for a Redis Cluster), it turns cluster mode on; the store must then be one every node shares (PostgreSQL or
/// Firestore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://HOST:PORT[/DB]`, or `rediss://` for TLS.
    pub redis_url: String,
    /// A Redis Cluster instead of one Redis: seed nodes (`redis://HOST:PORT` each), from
    /// which the cluster's other nodes are found.
    pub redis_cluster_urls: Vec<String>,
    /// This node's id, unique in the cluster; unset: generated at start and logged.
    pub node_id: Option<String>,
    /// Seconds a node's presence lasts without renewal; a node silent this long is lost
    /// and its members leave their rooms (seed 004's `WEBRTC_ROOM_PRESENCE_TTL`).
    pub presence_ttl: u64,
    /// Seconds one Redis command may take before it counts as failed.
    pub command_timeout: u64,
    /// With a `rediss://` URL: the CA (PEM) that signed Redis's certificate, when it is
    /// not one the system trusts.
    pub redis_ca_file: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            redis_url: String::new(),
            redis_cluster_urls: Vec::new(),
            node_id: None,
            presence_ttl: 30,
            command_timeout: 2,
            redis_ca_file: None,
        }
    }
}

impl ClusterConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        let url = self.redis_url.trim();
        let is_redis = |u: &str| u.starts_with("redis://") || u.starts_with("rediss://");
        match (url.is_empty(), self.redis_cluster_urls.is_empty()) {
            (true, true) => c.fail(
                "cluster.redis_url",
                "must be set in [cluster] (redis://HOST:PORT), or cluster.redis_cluster_urls \
                 for a Redis Cluster",
            ),
            (false, false) => c.fail(
                "cluster.redis_cluster_urls",
                "set either cluster.redis_url (one Redis) or cluster.redis_cluster_urls (a \
                 Redis Cluster), not both",
            ),
            (false, true) if !is_redis(url) => c.fail(
                "cluster.redis_url",
                format!("{url:?} is not a redis:// or rediss:// URL"),
            ),
            _ => {}
        }
        for u in &self.redis_cluster_urls {
            if !is_redis(u.trim()) {
                c.fail(
                    "cluster.redis_cluster_urls",
                    format!("{u:?} is not a redis:// or rediss:// URL"),
                );
            }
        }
        let tls = url.starts_with("rediss://")
            || self
                .redis_cluster_urls
                .iter()
                .any(|u| u.trim().starts_with("rediss://"));
        if let Some(id) = &self.node_id
            && (id.is_empty()
                || id.len() > 64
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            c.fail(
                "cluster.node_id",
                format!("{id:?}: use 1 to 64 letters, digits, '-', '_' or '.'"),
            );
        }
        if let Some(ca) = &self.redis_ca_file {
            if !tls {
                c.fail(
                    "cluster.redis_ca_file",
                    "only with rediss:// Redis URLs (TLS)",
                );
            } else if !ca.is_file() {
                c.fail(
                    "cluster.redis_ca_file",
                    format!("no such file: {}", ca.display()),
                );
            }
        }
        c.between("cluster.presence_ttl", self.presence_ttl, 3, 3600);
        c.between("cluster.command_timeout", self.command_timeout, 1, 60);
    }
}

impl ClusterConfig {
    /// The Redis the router uses, as configured.
    pub fn redis_target(&self) -> signal_router_redis::RedisTarget {
        if self.redis_cluster_urls.is_empty() {
            signal_router_redis::RedisTarget::Single(self.redis_url.trim().to_owned())
        } else {
            signal_router_redis::RedisTarget::Cluster(
                self.redis_cluster_urls
                    .iter()
                    .map(|u| u.trim().to_owned())
                    .collect(),
            )
        }
    }
}

/// `[events]`: lifecycle events (client registered, room created, member joined, ...)
/// delivered from the store's outbox, at least once and in order per room. With no sink
/// set, no event is recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Each event is POSTed here as JSON, signed with `webhook_secret`.
    pub webhook_url: Option<String>,
    /// The key of the `X-Signal-Manager-Signature` HMAC (at least 16 bytes).
    pub webhook_secret: Option<Secret>,
    /// Seconds one POST may take.
    pub webhook_timeout: u64,
    /// Each event is published to this GCP Pub/Sub topic (`projects/P/topics/T`).
    pub pubsub_topic: Option<String>,
    /// A Google credentials file for Pub/Sub; unset: the standard Google environment.
    pub pubsub_credentials_path: Option<PathBuf>,
    /// `HOST:PORT` of a Pub/Sub emulator; unset: `PUBSUB_EMULATOR_HOST`, else Google.
    pub pubsub_emulator_host: Option<String>,
    /// Seconds one publish may take.
    pub pubsub_timeout: u64,
    /// Milliseconds before a failed delivery is tried again; doubles with each failure.
    pub retry_initial: u64,
    /// Longest pause between attempts, in milliseconds.
    pub retry_max: u64,
    /// Events read from the outbox per pass.
    pub batch_size: u32,
    /// Rooms (and clients) whose events are delivered at once, each over a connection of
    /// its own.
    pub concurrency: usize,
    /// Milliseconds between looks at an empty outbox.
    pub poll_interval: u64,
    /// Days delivered events are kept (for `GET /api/rooms/{id}/events`); 0: for ever.
    pub retention_days: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: 10,
            pubsub_topic: None,
            pubsub_credentials_path: None,
            pubsub_emulator_host: None,
            pubsub_timeout: 10,
            retry_initial: 500,
            retry_max: 60_000,
            batch_size: 256,
            concurrency: 32,
            poll_interval: 100,
            retention_days: 7,
        }
    }
}

impl EventsConfig {
    /// Whether a sink is set (events are recorded and delivered).
    pub fn enabled(&self) -> bool {
        self.webhook_url.is_some() || self.pubsub_topic.is_some()
    }

    /// The longest a sink may take to answer, in seconds.
    pub fn slowest_sink(&self) -> u64 {
        self.webhook_timeout.max(self.pubsub_timeout).max(1)
    }

    pub(crate) fn check(&self, c: &mut Checks) {
        if let Some(url) = &self.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                c.fail("events.webhook_url", "must be an http:// or https:// URL");
            }
            match &self.webhook_secret {
                None => c.fail(
                    "events.webhook_secret",
                    "must be set with events.webhook_url: receivers check each event's signature",
                ),
                Some(s) if s.expose().len() < 16 => {
                    c.fail("events.webhook_secret", "must be at least 16 bytes")
                }
                Some(_) => {}
            }
        } else if self.webhook_secret.is_some() {
            c.fail(
                "events.webhook_url",
                "must be set with events.webhook_secret (where to POST events)",
            );
        }
        if self.webhook_timeout == 0 {
            c.fail("events.webhook_timeout", "must be at least 1 (seconds)");
        }
        if let Some(topic) = &self.pubsub_topic
            && !signal_events::pubsub::is_topic(topic)
        {
            c.fail(
                "events.pubsub_topic",
                "must be projects/PROJECT_ID/topics/TOPIC_ID",
            );
        }
        if self.pubsub_timeout == 0 {
            c.fail("events.pubsub_timeout", "must be at least 1 (seconds)");
        }
        if self.retry_initial == 0 {
            c.fail("events.retry_initial", "must be at least 1 (milliseconds)");
        }
        if self.retry_max < self.retry_initial {
            c.fail("events.retry_max", "must be at least events.retry_initial");
        }
        if !(1..=10_000).contains(&self.batch_size) {
            c.fail("events.batch_size", "must be between 1 and 10000");
        }
        if self.poll_interval == 0 {
            c.fail("events.poll_interval", "must be at least 1 (milliseconds)");
        }
        if self.retention_days > 36_500 {
            c.fail(
                "events.retention_days",
                "must be at most 36500 (0 keeps events for ever)",
            );
        }
        if !(1..=1024).contains(&self.concurrency) {
            c.fail("events.concurrency", "must be between 1 and 1024");
        }
    }
}
