//! `[server]`: the listener, its limits and its timeouts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use signal_protocol::{FRAME_HEADER_LEN, MAX_PAYLOAD_LEN};

use super::checks::Checks;

/// Upper bound for every byte-size key: 16 MiB.
pub const MAX_SIZE_LIMIT: usize = 16 * 1024 * 1024;

/// Lower bound for the message and buffer size keys.
pub const MIN_SIZE_LIMIT: usize = 1024;

/// `[server]`: where the WebSocket listener binds and how each connection is bounded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 asks the OS for any free port.
    pub port: u16,
    /// Connections accepted at once; more are refused.
    pub max_connections: usize,
    /// Seconds a client has to send CONNECT after the WebSocket opens.
    pub connection_timeout: u64,
    /// Seconds a connected client has to complete REGISTER.
    pub registration_timeout: u64,
    /// Heartbeat interval in seconds, where seed 000 puts it. Used only when
    /// `[heartbeat] interval` is left at its default; see [`super::Config::heartbeat_interval`].
    pub heartbeat_interval: Option<u64>,
    /// Serve TLS (wss://) with `tls_cert_path` and `tls_key_path`.
    pub tls_enabled: bool,
    /// PEM certificate chain; required when `tls_enabled`.
    pub tls_cert_path: Option<PathBuf>,
    /// PEM private key; required when `tls_enabled`.
    pub tls_key_path: Option<PathBuf>,
    /// Per-connection read buffer, bytes.
    pub read_buffer_size: usize,
    /// Per-connection write buffer, bytes.
    pub write_buffer_size: usize,
    /// Largest WebSocket message accepted, bytes. The default, 65556, is one binary frame
    /// at its largest: the 21-byte header plus a 65535-byte payload.
    pub max_message_size: usize,
    /// Largest WebSocket frame accepted, bytes; `None` means `max_message_size`.
    pub max_frame_size: Option<usize>,
    /// Messages queued for one connection before it counts as a slow consumer and is
    /// disconnected.
    pub outbound_queue: usize,
    /// Bytes of messages queued for one connection before it counts as a slow consumer
    /// and is disconnected. A single message larger than this is still delivered.
    pub outbound_queue_bytes: usize,
    /// Seconds a graceful shutdown waits for connections to drain; 0 closes them at once.
    pub shutdown_timeout: u64,
    /// Seconds a client has to send the HTTP request headers of the upgrade.
    pub header_read_timeout: u64,
    /// Threads that run connections. Unset: one per CPU the process may use. 1 runs
    /// everything on one thread with a plain first-in-first-out scheduler.
    pub worker_threads: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8080,
            max_connections: 10_000,
            connection_timeout: 30,
            registration_timeout: 10,
            heartbeat_interval: None,
            tls_enabled: false,
            tls_cert_path: None,
            tls_key_path: None,
            read_buffer_size: 8192,
            write_buffer_size: 8192,
            max_message_size: FRAME_HEADER_LEN + MAX_PAYLOAD_LEN,
            max_frame_size: None,
            outbound_queue: 256,
            outbound_queue_bytes: 512 * 1024,
            shutdown_timeout: 10,
            header_read_timeout: 10,
            worker_threads: None,
        }
    }
}

// === impl ServerConfig ===

impl ServerConfig {
    /// Threads to run connections on: `worker_threads`, or one per CPU this process may
    /// use (its affinity mask and cgroup quota count).
    pub fn worker_threads(&self) -> usize {
        self.worker_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        })
    }

    /// The frame size limit in force: `max_frame_size`, or `max_message_size` when unset.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size.unwrap_or(self.max_message_size)
    }

    pub(crate) fn check(&self, c: &mut Checks) {
        c.not_blank("server.host", &self.host);
        c.at_least("server.max_connections", self.max_connections, 1);
        c.at_least("server.connection_timeout", self.connection_timeout, 1);
        c.at_least("server.registration_timeout", self.registration_timeout, 1);
        c.at_least("server.header_read_timeout", self.header_read_timeout, 1);
        if let Some(interval) = self.heartbeat_interval {
            c.at_least("server.heartbeat_interval", interval, 1);
        }
        if let Some(n) = self.worker_threads {
            c.between("server.worker_threads", n, 1, 1024);
        }
        for (key, size) in [
            ("server.read_buffer_size", self.read_buffer_size),
            ("server.write_buffer_size", self.write_buffer_size),
            ("server.max_message_size", self.max_message_size),
        ] {
            c.between(key, size, MIN_SIZE_LIMIT, MAX_SIZE_LIMIT);
        }
        if let Some(frame) = self.max_frame_size {
            if frame > self.max_message_size {
                c.fail(
                    "server.max_frame_size",
                    format!(
                        "must not exceed server.max_message_size = {} (got {frame})",
                        self.max_message_size
                    ),
                );
            } else {
                c.at_least("server.max_frame_size", frame, MIN_SIZE_LIMIT);
            }
        }
        c.between("server.outbound_queue", self.outbound_queue, 1, 65_536);
        c.between(
            "server.outbound_queue_bytes",
            self.outbound_queue_bytes,
            MIN_SIZE_LIMIT,
            MAX_SIZE_LIMIT,
        );
        if self.tls_enabled {
            check_tls_file(c, "server.tls_cert_path", self.tls_cert_path.as_deref());
            check_tls_file(c, "server.tls_key_path", self.tls_key_path.as_deref());
        }
    }
}

fn check_tls_file(c: &mut Checks, key: &str, path: Option<&Path>) {
    match path {
        None => c.fail(key, "required when server.tls_enabled = true"),
        Some(path) if !path.is_file() => {
            c.fail(key, format!("no such file: {}", path.display()));
        }
        Some(_) => {}
    }
}
