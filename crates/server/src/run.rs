//! Starting and draining the server. `start` takes a validated configuration (and an
//! optional already-bound listener, so tests can bind port 0) and returns a handle whose
//! `shutdown` performs the staged drain: stop accepting, close every WebSocket with 1001
//! (members leave their rooms, which writes the room history), wait for the connection
//! tasks, close the store, stop the metrics listener (`/metrics` and `/health` on
//! `metrics.host:metrics.port`, started with the server when `metrics.enabled`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use signal_core::{
    auth::Authenticator,
    hub::{Hub, HubConfig, Ports},
    store::{Store, StoreError},
};
use signal_store_firestore::{FirestoreOptions, FirestoreStore};
use signal_store_postgres::{PostgresOptions, PostgresStore};
use signal_store_sqlite::{SqliteOptions, SqliteStore};
use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    accept::{Admit, ConnCounts},
    app::app,
    config::{Config, DatabaseBackend},
    ops::MetricsListener,
    state::AppState,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The store could not be opened.
    #[error("database: {0}")]
    Store(String),
    /// The listener could not be bound or served.
    #[error("listener {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// An events sink could not be set up.
    #[error("events: {0}")]
    Events(String),
    /// The metrics recorder could not be installed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// The cluster's router could not be set up.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The media backend could not be set up.
    #[error("media: {0}")]
    Media(String),
}

/// A running server.
pub struct Running {
    /// The address the main listener is bound to.
    pub addr: SocketAddr,
    /// The address the metrics listener is bound to (`None` with `metrics.enabled = false`).
    pub metrics_addr: Option<SocketAddr>,
    state: AppState,
    handle: axum_server::Handle<SocketAddr>,
    join: JoinHandle<std::io::Result<()>>,
    metrics: Option<MetricsListener>,
    /// The events publisher: its stop signal and task.
    publisher: Option<(tokio::sync::watch::Sender<bool>, JoinHandle<()>)>,
}

/// Opens the store named by `database.url`.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    match config.database.backend() {
        DatabaseBackend::Sqlite => {
            let opts = SqliteOptions {
                max_connections: config.database.max_connections,
                operation_timeout: Duration::from_secs(config.database.operation_timeout.max(1)),
                retry_attempts: config.database.retry_attempts,
                retry_interval: Duration::from_millis(config.database.retry_interval),
            };
            let store = SqliteStore::open(&config.database.url, opts)
                .await
                .map_err(|e: StoreError| {
                    StartError::Store(format!("{} ({})", e, config.database.redacted_url()))
                })?;
            Ok(Arc::new(store))
        }
        DatabaseBackend::Postgres => {
            let opts = PostgresOptions {
                max_connections: config.database.max_connections,
                operation_timeout: Duration::from_secs(config.database.operation_timeout.max(1)),
                retry_attempts: config.database.retry_attempts,
                retry_interval: Duration::from_millis(config.database.retry_interval),
            };
            let store = PostgresStore::open(&config.database.url, opts)
                .await
                .map_err(|e: StoreError| {
                    StartError::Store(format!("{} ({})", e, config.database.redacted_url()))
                })?;
            Ok(Arc::new(store))
        }
        DatabaseBackend::Firestore => {
            let project = config.firestore_project().unwrap_or_default();
            let section = config.firestore.clone().unwrap_or_default();
            let opts = FirestoreOptions {
                database_name: section
                    .database_name
                    .unwrap_or_else(|| "(default)".to_owned()),
                credentials_path: section.credentials_path.map(Into::into),
                emulator_host: section.emulator_host,
                operation_timeout: Duration::from_secs(config.database.operation_timeout.max(1)),
                retry_attempts: config.database.retry_attempts,
                retry_interval: Duration::from_millis(config.database.retry_interval),
                ..FirestoreOptions::default()
            };
            let store = FirestoreStore::open(&format!("firestore://{project}"), opts)
                .await
                .map_err(|e: StoreError| StartError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

/// Joins the cluster named by `[cluster]`: a router over Redis for this node. Redis need
/// not be reachable yet: the node serves its own clients and joins when it is.
async fn start_router(
    cluster: &crate::config::ClusterConfig,
    resume_window: u64,
) -> Result<Arc<dyn signal_core::router::Router>, StartError> {
    let node_id = cluster.node_id.clone().unwrap_or_else(|| {
        let host = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 40
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            })
            .unwrap_or_else(|| "node".to_owned());
        format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    });
    let router = signal_router_redis::RedisRouter::start(signal_router_redis::RedisRouterConfig {
        redis: cluster.redis_target(),
        node_id: node_id.clone(),
        presence_ttl: Duration::from_secs(cluster.presence_ttl.max(1)),
        command_timeout: Duration::from_secs(cluster.command_timeout.max(1)),
        ca_file: cluster.redis_ca_file.clone(),
        resume_window: (resume_window > 0).then(|| Duration::from_secs(resume_window)),
    })
    .await
    .map_err(|e| StartError::Cluster(e.0))?;
    use signal_core::router::Router as _;
    if router.is_healthy() {
        tracing::info!(node_id = %node_id, "cluster: joined over Redis");
    } else {
        tracing::warn!(node_id = %node_id, "cluster: Redis unreachable at start; serving this node's clients until it is");
    }
    Ok(router)
}

/// Builds the hub's settings from the configuration.
pub fn hub_config(config: &Config) -> HubConfig {
    HubConfig {
        heartbeat_interval: config.heartbeat_interval(),
        max_sessions_per_client: config.session.max_sessions_per_client.max(1) as usize,
        default_max_participants: config.rooms.max_participants as usize,
        max_rooms: config.rooms.max_rooms as usize,
        require_shared_room: config.routing.require_shared_room,
        resume_window: Duration::from_secs(config.session.resume_window),
        resume_buffer: config.session.resume_buffer as usize,
        resume_buffer_bytes: usize::try_from(config.session.resume_buffer_bytes)
            .unwrap_or(usize::MAX),
        registered_token_ttl: Duration::from_secs(config.auth.registered_token_ttl),
        room_joins_per_minute: config.security.room_joins_per_minute,
        room_messages_per_second: config.security.room_messages_per_second,
        expiry_warning: Duration::from_secs(config.auth.expiry_warning),
        ..sfu_settings(config)
    }
}

/// What room ACKs tell members in SFU mode: Cloudflare's app id and STUN URL.
fn sfu_settings(config: &Config) -> HubConfig {
    match (&config.webrtc.media, &config.cloudflare) {
        (crate::config::MediaMode::Cloudflare, Some(cf)) => HubConfig {
            app_id: cf.app_id.clone().unwrap_or_default(),
            stun_url: Some(cf.stun_url.clone()),
            ..HubConfig::default()
        },
        _ => HubConfig::default(),
    }
}

/// Seconds one Cloudflare call may take: seed 001's `webrtc.cloudflare_timeout`, else
/// `cloudflare.timeout`.
pub(crate) fn cloudflare_timeout(config: &Config) -> Duration {
    let cf = config.cloudflare.clone().unwrap_or_default();
    Duration::from_secs(
        config
            .webrtc
            .cloudflare_timeout
            .unwrap_or(cf.timeout)
            .max(1),
    )
}

/// Cloudflare TURN, when `[cloudflare] turn_key_id` is set.
fn start_cloudflare_turn(
    config: &Config,
) -> Result<Option<signal_media_cloudflare::CloudflareTurn>, StartError> {
    let Some(cf) = &config.cloudflare else {
        return Ok(None);
    };
    let (Some(key_id), Some(token)) = (&cf.turn_key_id, &cf.turn_key_api_token) else {
        return Ok(None);
    };
    let turn = signal_media_cloudflare::CloudflareTurn::new(signal_media_cloudflare::TurnConfig {
        base_url: cf.base_url.clone(),
        key_id: key_id.clone(),
        api_token: token.expose().to_owned(),
        timeout: cloudflare_timeout(config),
    })
    .map_err(StartError::Media)?;
    tracing::info!(key_id = %key_id, "TURN: /webrtc/config hands out Cloudflare TURN credentials");
    Ok(Some(turn))
}

/// The media backend `webrtc.media` names.
fn start_media(config: &Config) -> Result<Option<Arc<dyn signal_core::media::Media>>, StartError> {
    if config.webrtc.media != crate::config::MediaMode::Cloudflare {
        return Ok(None);
    }
    let cf = config.cloudflare.clone().unwrap_or_default();
    let api = signal_media_cloudflare::Api::new(signal_media_cloudflare::ApiConfig {
        base_url: cf.base_url.clone(),
        app_id: cf.app_id.clone().unwrap_or_default(),
        app_secret: cf
            .app_secret
            .as_ref()
            .map(|s| s.expose().to_owned())
            .unwrap_or_default(),
        timeout: cloudflare_timeout(config),
        attempts: cf.retry_attempts.max(1),
        retry_interval: Duration::from_millis(cf.retry_interval),
    })
    .map_err(StartError::Media)?;
    tracing::info!(app_id = %api.app_id(), base_url = %cf.base_url, "media: rooms run on Cloudflare Realtime's SFU");
    Ok(Some(Arc::new(signal_media_cloudflare::CloudflareSfu::new(
        api,
    ))))
}

/// The sinks `[events]` sets (none: no event is recorded).
fn event_sinks(config: &Config) -> Result<Vec<Arc<dyn signal_core::events::Events>>, StartError> {
    let ev = &config.events;
    let mut sinks: Vec<Arc<dyn signal_core::events::Events>> = Vec::new();
    if let (Some(url), Some(secret)) = (&ev.webhook_url, &ev.webhook_secret) {
        let webhook = signal_events::webhook::Webhook::new(signal_events::webhook::WebhookConfig {
            url: url.clone(),
            secret: secret.expose().to_owned(),
            timeout: Duration::from_secs(ev.webhook_timeout.max(1)),
        })
        .map_err(StartError::Events)?;
        tracing::info!(url = %url, "events: delivered to a webhook");
        sinks.push(Arc::new(webhook));
    }
    if let Some(topic) = &ev.pubsub_topic {
        let pubsub = signal_events::pubsub::PubSub::new(signal_events::pubsub::PubSubConfig {
            topic: topic.clone(),
            credentials_path: ev.pubsub_credentials_path.clone(),
            emulator_host: ev.pubsub_emulator_host.clone(),
            base_url: "https://pubsub.googleapis.com".into(),
            timeout: Duration::from_secs(ev.pubsub_timeout.max(1)),
        })
        .map_err(StartError::Events)?;
        tracing::info!(topic = %pubsub.describe(), "events: published to GCP Pub/Sub");
        sinks.push(Arc::new(pubsub));
    }
    Ok(sinks)
}

/// Starts the server on `listener` (or binds `server.host:server.port`).
pub async fn start(
    config: Config,
    listener: Option<std::net::TcpListener>,
) -> Result<Running, StartError> {
    let config = Arc::new(config);
    if config.metrics.enabled {
        // Before anything registers a metric handle (the hub, the connections' handles).
        crate::metrics::recorder().map_err(|e| StartError::Metrics(e.to_string()))?;
    }
    let store = open_store(&config).await?;
    let auth = Arc::new(
        Authenticator::new(
            config.api_keys(),
            config.auth.token_secret.as_ref().map(|s| s.expose()),
            store.clone(),
        )
        .with_admins(config.auth.admin_clients.iter().cloned()),
    );
    let sinks = event_sinks(&config)?;
    let mut ports = Ports::single_node(store.clone(), auth);
    if !sinks.is_empty() {
        ports.events = Arc::new(signal_core::events::Sinks(sinks.clone()));
    }
    if let Some(cluster) = &config.cluster {
        ports.router = start_router(cluster, config.session.resume_window).await?;
    }
    if let Some(media) = start_media(&config)? {
        ports.media = media;
    }
    crate::binary::register_formats();
    let router = ports.router.clone();
    let hub = Hub::new(hub_config(&config), ports);
    hub.settle_predecessor().await;
    match hub.recover_rooms().await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(rooms = n, "closed rooms left active by a previous run"),
        Err(e) => {
            tracing::error!(error = %e.message, "could not recover rooms left by a previous run")
        }
    }
    let publisher = (!sinks.is_empty()).then(|| {
        let ev = &config.events;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut p = signal_core::events::Publisher::new(
            store.clone(),
            sinks,
            signal_core::events::PublisherConfig {
                batch: ev.batch_size,
                poll: Duration::from_millis(ev.poll_interval),
                retry_initial: Duration::from_millis(ev.retry_initial),
                retry_max: Duration::from_millis(ev.retry_max),
                concurrency: ev.concurrency,
                retention: (ev.retention_days > 0)
                    .then(|| Duration::from_secs(ev.retention_days.saturating_mul(86_400))),
            },
        );
        if config.cluster.is_some() {
            // One node publishes: the one holding the lease, long enough to outlast a
            // pass of slow deliveries.
            let ttl = Duration::from_secs((3 * ev.slowest_sink()).max(15));
            p = p.with_lease(router.clone(), ttl);
        }
        (stop, tokio::spawn(p.run(stopped)))
    });
    let state = AppState {
        hub,
        config: config.clone(),
        shutdown: CancellationToken::new(),
        drain: CancellationToken::new(),
        tracker: TaskTracker::new(),
        conns: Arc::new(ConnCounts::default()),
        metrics: Arc::new(crate::metrics::HotMetrics::new()),
        cloudflare_turn: start_cloudflare_turn(&config)?,
    };
    let addr_text = format!("{}:{}", config.server.host, config.server.port);
    let listener = match listener {
        Some(l) => l,
        None => std::net::TcpListener::bind(&addr_text).map_err(|source| StartError::Bind {
            addr: addr_text.clone(),
            source,
        })?,
    };
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            addr: addr_text.clone(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr_text.clone(),
        source,
    })?;
    let header_timeout = Duration::from_secs(config.server.header_read_timeout.max(1));
    let metrics = if config.metrics.enabled {
        Some(start_metrics(&state, header_timeout)?)
    } else {
        None
    };
    let handle = axum_server::Handle::new();
    let make = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let join = if config.server.tls_enabled {
        let (Some(cert), Some(key)) = (&config.server.tls_cert_path, &config.server.tls_key_path)
        else {
            return Err(StartError::Tls(
                "server.tls_cert_path and server.tls_key_path are required".into(),
            ));
        };
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let acceptor =
            axum_server::tls_rustls::RustlsAcceptor::new(tls).acceptor(admit(&state, false));
        let server = axum_server::from_tcp(listener)
            .map_err(|source| StartError::Bind {
                addr: addr_text,
                source,
            })?
            .acceptor(acceptor);
        tokio::spawn(
            with_header_timeout(server, header_timeout)
                .handle(handle.clone())
                .serve(make),
        )
    } else {
        let server = axum_server::from_tcp(listener)
            .map_err(|source| StartError::Bind {
                addr: addr_text,
                source,
            })?
            .acceptor(admit(&state, true));
        tokio::spawn(
            with_header_timeout(server, header_timeout)
                .handle(handle.clone())
                .serve(make),
        )
    };
    Ok(Running {
        addr,
        metrics_addr: metrics.as_ref().map(|m| m.addr),
        state,
        handle,
        join,
        metrics,
        publisher,
    })
}

/// The main port's acceptor: the connection limits and the first-bytes clock, from accept.
fn admit(state: &AppState, answer_refusals: bool) -> Admit {
    let config = &state.config;
    Admit {
        counts: state.conns.clone(),
        max_connections: config.server.max_connections,
        max_per_ip: config.security.max_connections_per_ip as usize,
        first_bytes_timeout: Duration::from_secs(config.server.header_read_timeout.max(1)),
        answer_refusals,
        rate: crate::accept::NewConnectionRate::new(
            config.security.new_connections_per_ip_per_second,
        ),
    }
}

/// Bounds how long a client may take to send its request headers (slowloris): axum's own
/// `serve` sets no timer, so the HTTP/1 builder gets one here, and HTTP/2 connections a
/// ping deadline.
fn with_header_timeout<A: axum_server::Address, Acc>(
    mut server: axum_server::Server<A, Acc>,
    timeout: Duration,
) -> axum_server::Server<A, Acc> {
    server
        .http_builder()
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(timeout);
    // An HTTP/2 connection has no request-head clock: one that does not answer the
    // server's pings within the same timeout is closed, so a silent socket that sent
    // the HTTP/2 preface is not held forever either.
    server
        .http_builder()
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Some(timeout))
        .keep_alive_timeout(timeout);
    server
}

/// Installs the recorder (once per process) and serves `/metrics` and `/health` on
/// `metrics.host:metrics.port`.
fn start_metrics(
    state: &AppState,
    header_timeout: Duration,
) -> Result<MetricsListener, StartError> {
    let recorder = crate::metrics::recorder().map_err(|e| StartError::Metrics(e.to_string()))?;
    let cfg = &state.config.metrics;
    let addr = format!("{}:{}", cfg.host, cfg.port);
    let bind_error = |source| StartError::Bind {
        addr: addr.clone(),
        source,
    };
    let listener = std::net::TcpListener::bind(&addr).map_err(bind_error)?;
    crate::ops::serve(state.clone(), recorder, listener, header_timeout).map_err(bind_error)
}

// === impl Running ===

impl Running {
    /// The hub (for in-process inspection).
    pub fn hub(&self) -> &Hub {
        &self.state.hub
    }

    /// Resolves when an admin asked this node to drain (`POST /api/admin/drain`): the
    /// caller then calls [`shutdown`](Self::shutdown), as on SIGTERM.
    pub async fn drain_requested(&self) {
        self.state.drain.cancelled().await;
    }

    /// Drains and stops: no new connections, every WebSocket closed with 1001 after its
    /// session left its rooms, then the store is closed. Bounded by `server.shutdown_timeout`.
    pub async fn shutdown(self) {
        let timeout = Duration::from_secs(self.state.config.server.shutdown_timeout.max(1));
        tracing::info!("draining: closing connections");
        // Stop accepting; upgraded WebSockets are not tracked by hyper, we close them.
        self.handle.graceful_shutdown(Some(timeout));
        self.state.hub.begin_shutdown();
        self.state.hub.end_parked().await;
        self.state.shutdown.cancel();
        self.state.tracker.close();
        if tokio::time::timeout(timeout, self.state.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.state.tracker.len(),
                "drain timed out; closing the store with connections still open"
            );
        }
        let _ = tokio::time::timeout(timeout, self.join).await;
        // The rooms' last events are in the outbox: one last pass hands them over.
        if let Some((stop, task)) = self.publisher {
            let _ = stop.send(true);
            if tokio::time::timeout(timeout, task).await.is_err() {
                tracing::warn!("events: the last delivery timed out; the rest waits in the outbox");
            }
        }
        self.state.hub.store().close().await;
        // Last, so the drain itself can be watched.
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        tracing::info!("drained");
    }
}
