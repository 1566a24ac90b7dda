//! `signal-manager-service`: configuration → logging → bind → serve → drain on SIGTERM/SIGINT.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use signal_server::{config::Config, telemetry};

/// A WebRTC signaling server: binary protocol over WebSocket, rooms, persistence.
#[derive(Parser, Debug)]
#[command(
    name = "signal-manager-service",
    version,
    about = "WebRTC signaling server: clients connect over WebSocket, join rooms and exchange offers, answers and ICE candidates"
)]
struct Cli {
    /// TOML configuration file (every key optional; `SIGNAL_MANAGER_<SECTION>_<KEY>`
    /// environment variables override it).
    #[arg(long, short, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Development mode: accept the seed test credentials (test_client_1/test_token_1,
    /// test_client_2/test_token_2). Never use in production.
    #[arg(long)]
    dev: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Load and validate the configuration, print the effective settings, and exit.
    CheckConfig,
    /// Bring the database's schema up to date (`database.url`), and exit. The server
    /// does this at start as well; run it ahead of a deployment to migrate once.
    Migrate,
    /// Copy registrations and room history from one store to another, empty one (for
    /// instance from SQLite to PostgreSQL), then exit. Other settings (`[firestore]`,
    /// timeouts) come from the configuration. Stop the server using the source first.
    CopyStore {
        /// The source's URL (`sqlite://…`, `postgres://…`, `firestore://…`); only read.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The target's URL; its schema is created if needed, and it must hold no data.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Print an HS256 JWT for a client id, signed with `auth.token_secret`.
    Token {
        /// The client id (`sub` claim).
        #[arg(long)]
        sub: String,
        /// Display name (`name` claim).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime in seconds (default `auth.token_expiry`).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

/// Exit status for a configuration error (EX_CONFIG is 78; sysexits' EX_USAGE, 64, is what
/// operators of the seed expect for bad input).
const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("signal-manager-service: configuration error: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if cli.dev {
        config.apply_dev_mode();
    }
    if let Err(e) = config.validate() {
        eprintln!("signal-manager-service: configuration error: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Some(Command::CheckConfig) => {
            use std::io::Write;
            // Secrets print as *** (and API keys as id:***); a closed pipe is not an error.
            let _ = writeln!(std::io::stdout(), "{config:#?}");
            return ExitCode::SUCCESS;
        }
        Some(Command::Token { sub, name, ttl }) => {
            let Some(secret) = config.auth.token_secret.as_ref() else {
                eprintln!(
                    "signal-manager-service: auth.token_secret is not set; cannot sign a JWT"
                );
                return ExitCode::from(EXIT_CONFIG);
            };
            let ttl = ttl.unwrap_or(config.auth.token_expiry);
            return match signal_core::auth::issue_jwt(secret.expose(), &sub, name.as_deref(), ttl) {
                Ok(t) => {
                    use std::io::Write;
                    let _ = writeln!(std::io::stdout(), "{t}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("signal-manager-service: {}", e.message);
                    ExitCode::FAILURE
                }
            };
        }
        Some(Command::Migrate) => {
            telemetry::init(&config.logging);
            let runtime = match one_thread_runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            return runtime.block_on(async {
                match signal_server::run::open_store(&config).await {
                    Ok(store) => {
                        store.close().await;
                        println!(
                            "signal-manager-service: the schema of {} is up to date",
                            config.database.redacted_url()
                        );
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("signal-manager-service: {e}");
                        ExitCode::FAILURE
                    }
                }
            });
        }
        Some(Command::CopyStore { from, to }) => {
            telemetry::init(&config.logging);
            return copy_store(&config, &from, &to);
        }
        None => {}
    }
    telemetry::init(&config.logging);
    // One thread: tokio's single-threaded scheduler. Its run queue is one FIFO; the
    // multi-threaded one with a single worker moves tasks that overflow its 256-slot
    // local queue to a global queue it polls only every 31 turns, so under overload
    // some connections wait tens of milliseconds while others are served at once.
    let threads = config.server.worker_threads();
    let mut builder = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("signal-manager-service: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(serve(config, cli.dev))
}

/// The runtime of a one-off command (`migrate`, `copy-store`).
fn one_thread_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("signal-manager-service: cannot start the runtime: {e}");
            ExitCode::FAILURE
        })
}

/// `copy-store`: opens both stores (each URL checked like `database.url`), copies, and
/// says what it copied.
fn copy_store(config: &Config, from: &str, to: &str) -> ExitCode {
    let mut configs = Vec::new();
    for (flag, url) in [("--from", from), ("--to", to)] {
        let mut c = config.clone();
        c.database.url = url.to_owned();
        if let Err(e) = c.validate() {
            eprintln!("signal-manager-service: copy-store {flag}: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        configs.push(c);
    }
    let runtime = match one_thread_runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    runtime.block_on(async {
        let (source, target) = (&configs[0].database, &configs[1].database);
        let from = match signal_server::run::open_store(&configs[0]).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("signal-manager-service: copy-store --from: {e}");
                return ExitCode::FAILURE;
            }
        };
        let to = match signal_server::run::open_store(&configs[1]).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("signal-manager-service: copy-store --to: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = signal_server::copy::copy_store(&from, &to).await;
        from.close().await;
        to.close().await;
        match result {
            Ok(r) => {
                println!(
                    "signal-manager-service: copied {} registered clients, {} room creations, \
                     {} room terminations and {} memberships from {} to {}",
                    r.clients,
                    r.rooms_created,
                    r.rooms_terminated,
                    r.memberships,
                    source.redacted_url(),
                    target.redacted_url()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("signal-manager-service: copy-store: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn serve(config: Config, dev: bool) -> ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    for key in config.inactive_sections() {
        tracing::warn!(
            key,
            "configuration parsed and validated but not acted on in this version"
        );
    }
    if dev {
        tracing::warn!("development mode: the seed test credentials are accepted");
    }
    if config.api_keys().is_empty() && config.auth.token_secret.is_none() {
        tracing::warn!(
            "no auth.api_keys and no auth.token_secret: only registered clients can connect, and none can register; \
             configure credentials or start with --dev"
        );
    }
    let running = match signal_server::start(config.clone(), None).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("signal-manager-service: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        addr = %running.addr,
        database = %config.database.redacted_url(),
        version = env!("CARGO_PKG_VERSION"),
        "listening: {}",
        endpoints(&config, running.addr, running.metrics_addr)
    );
    tokio::select! {
        () = wait_for_signal() => {}
        () = running.drain_requested() => tracing::info!("drain requested by an admin"),
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}

/// Every endpoint the server answers on, for the start-up line.
fn endpoints(
    config: &signal_server::config::Config,
    addr: std::net::SocketAddr,
    metrics: Option<std::net::SocketAddr>,
) -> String {
    let (ws, http) = if config.server.tls_enabled {
        ("wss", "https")
    } else {
        ("ws", "http")
    };
    let metrics = metrics.map_or_else(
        || "metrics off".to_owned(),
        |m| format!("metrics on http://{m}/metrics"),
    );
    format!(
        "binary protocol on {ws}://{addr}/, altair and simple JSON on {ws}://{addr}/ws, \
         room-path JSON on {ws}://{addr}/webrtc/ws/{{room_id}}, \
         REST on {http}://{addr}/api/ and {http}://{addr}/webrtc/ (OpenAPI at /openapi.json; admin API at /api/admin/), \
         health at /health and /ready, demo page at {http}://{addr}/demo, {metrics}"
    )
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
