//! The smaller sections: heartbeat, session, security, logging, metrics, rooms, routing,
//! and the parsed-but-inactive firestore, cloudflare and webrtc.

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
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            session_timeout: 3600,
            cleanup_interval: 300,
            max_sessions_per_client: 1,
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
    /// `Origin` values accepted on the WebSocket upgrade; `"*"` accepts any.
    pub allowed_origins: Vec<String>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            rate_limit_enabled: true,
            max_messages_per_minute: 6000,
            max_connections_per_ip: 1000,
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

/// `[firestore]` (seed 000): parsed and type-checked; this build stores data in SQL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FirestoreConfig {
    /// Google Cloud project.
    pub project_id: Option<String>,
    /// Service account credentials file.
    pub credentials_path: Option<String>,
    /// Firestore database name.
    pub database_name: Option<String>,
    /// How to authenticate (`service_account`, …).
    pub auth_method: Option<String>,
    /// Google Cloud region.
    pub region: Option<String>,
    /// `host:port` of a Firestore emulator.
    pub emulator_host: Option<String>,
}

/// `[cloudflare]`: Cloudflare Realtime (SFU) credentials. Parsed and validated; not yet
/// acted on by this build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudflareConfig {
    /// Realtime app id.
    pub app_id: Option<String>,
    /// Realtime app secret (API token).
    pub app_secret: Option<Secret>,
    /// Realtime API base URL.
    pub base_url: String,
    /// STUN server handed to clients.
    pub stun_url: String,
    /// Seconds one API call may take.
    pub timeout: u64,
}

impl Default for CloudflareConfig {
    fn default() -> Self {
        Self {
            app_id: None,
            app_secret: None,
            base_url: "https://rtc.live.cloudflare.com/v1".to_owned(),
            stun_url: "stun:stun.cloudflare.com:3478".to_owned(),
            timeout: 10,
        }
    }
}

/// `[webrtc]` (seed 001): WebRTC session timeouts. Parsed and validated; not yet acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebrtcConfig {
    /// Seconds before an inactive WebRTC session is terminated.
    pub session_timeout: u64,
    /// Seconds one Cloudflare API call may take.
    pub cloudflare_timeout: u64,
}

impl Default for WebrtcConfig {
    fn default() -> Self {
        Self {
            session_timeout: 300,
            cloudflare_timeout: 10,
        }
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
    }
}

impl WebrtcConfig {
    pub(crate) fn check(&self, c: &mut Checks) {
        c.at_least("webrtc.session_timeout", self.session_timeout, 1);
        c.at_least("webrtc.cloudflare_timeout", self.cloudflare_timeout, 1);
    }
}
