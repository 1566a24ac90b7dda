//! Loads real config files (the seed documents' examples, `config.example.toml`, and files
//! written to a temporary directory) with real environment parsing.

// Helpers outside `#[test]` functions panic on setup failures too; that is their job here.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use signal_server::config::{
    AuthMethod, BundlePolicy, CloudflareConfig, ClusterConfig, Config, ConfigError,
    DEFAULT_STUN_URLS, DatabaseBackend, FirestoreConfig, IceTransportPolicy, LogFormat,
    RtcpMuxPolicy, Secret,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config.example.toml")
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Writes `contents` to `config.toml` in a fresh temporary directory.
fn write_config(contents: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, contents).unwrap();
    (dir, path)
}

/// Loads `contents` (with no environment) and returns the load error's message.
fn load_error(contents: &str, vars: &[(&str, &str)]) -> String {
    let (_dir, path) = write_config(contents);
    match Config::load_with_env(Some(&path), env(vars)) {
        Ok(config) => panic!("expected a load error for {contents:?}, got {config:?}"),
        Err(error) => {
            assert!(matches!(error, ConfigError::Load { .. }), "{error:?}");
            error.to_string()
        }
    }
}

/// Loads `contents`, which must load, and returns the validation error's message.
fn validation_error(contents: &str) -> String {
    let (_dir, path) = write_config(contents);
    let config = Config::load_with_env(Some(&path), env(&[])).unwrap();
    match config.validate() {
        Ok(()) => panic!("expected a validation error for {contents:?}"),
        Err(error) => {
            assert!(matches!(error, ConfigError::Invalid { .. }), "{error:?}");
            error.to_string()
        }
    }
}

// === the seeds' example configs ===

#[test]
fn seed000_config_loads_and_validates() {
    let config = Config::load_with_env(Some(&fixture("seed000.toml")), env(&[])).unwrap();
    config.validate().unwrap();
    assert_eq!(config.inactive_sections(), ["firestore", "cloudflare"]);
    assert_eq!(config.server.max_connections, 1000);
    assert_eq!(config.server.max_message_size, 1_048_576);
    assert_eq!(config.server.heartbeat_interval, Some(30));
    assert_eq!(config.heartbeat_interval(), 30);
    assert_eq!(config.auth.auth_method, AuthMethod::Token);
    assert_eq!(
        config.api_keys(),
        [
            ("test_client_1".to_owned(), "test_token_1".to_owned()),
            ("test_client_2".to_owned(), "test_token_2".to_owned()),
        ]
    );
    assert_eq!(config.logging.format, LogFormat::Json);
    assert_eq!(config.security.max_connections_per_ip, 10);
    let firestore = config.firestore.as_ref().unwrap();
    assert_eq!(firestore.region.as_deref(), Some("us-central1"));
    let cloudflare = config.cloudflare.as_ref().unwrap();
    assert_eq!(
        cloudflare.app_secret.as_ref().map(Secret::expose),
        Some("your-cloudflare-app-secret")
    );
    assert_eq!(cloudflare.timeout, 10);
}

#[test]
fn seed001_timeouts_config_loads_and_validates() {
    let config = Config::load_with_env(Some(&fixture("seed001_timeouts.toml")), env(&[])).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.inactive_sections(),
        ["webrtc.session_timeout", "webrtc.cloudflare_timeout"]
    );
    assert_eq!(config.server.connection_timeout, 30);
    assert_eq!(config.server.registration_timeout, 10);
    assert_eq!(
        (config.heartbeat.interval, config.heartbeat.timeout),
        (30, 90)
    );
    assert_eq!(config.webrtc.session_timeout, Some(300));
    assert_eq!(config.webrtc.cloudflare_timeout, Some(10));
    // The seed sets no ICE keys: /webrtc/config serves the public STUN fallback.
    assert_eq!(config.webrtc.stun_urls, DEFAULT_STUN_URLS);
    assert_eq!(config.database.retry_interval, 100);
    // The seed sets no URL: the embedded SQLite default stays.
    assert_eq!(config.database.backend(), DatabaseBackend::Sqlite);
}

#[test]
fn seed001_app_config_loads_and_validates() {
    let config = Config::load_with_env(Some(&fixture("seed001_app.toml")), env(&[])).unwrap();
    config.validate().unwrap();
    assert_eq!(
        config.inactive_sections(),
        ["webrtc.session_timeout", "webrtc.cloudflare_timeout"]
    );
    assert!(!config.server.tls_enabled);
    assert_eq!(config.api_keys().len(), 2);
    assert_eq!(
        config.auth.token_secret.as_ref().map(Secret::expose),
        Some("your-secret-key-change-in-production")
    );
    assert_eq!(config.metrics.port, 9090);
}

// === config.example.toml ===

#[test]
fn example_config_loads_validates_and_equals_the_defaults() {
    let config = Config::load_with_env(Some(&example_path()), env(&[])).unwrap();
    config.validate().unwrap();
    assert_eq!(config, Config::default());
    assert!(config.inactive_sections().is_empty());
}

#[test]
fn example_config_documents_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    // Every optional section present, so its keys are serialized too (unset ones as null).
    let full = Config {
        firestore: Some(FirestoreConfig::default()),
        cloudflare: Some(CloudflareConfig::default()),
        cluster: Some(ClusterConfig::default()),
        ..Config::default()
    };
    let serde_json::Value::Object(sections) = serde_json::to_value(&full).unwrap() else {
        panic!("config serializes as an object");
    };
    for (section, keys) in sections {
        let body = section_body(&text, &section)
            .unwrap_or_else(|| panic!("config.example.toml has no [{section}] section"));
        let serde_json::Value::Object(keys) = keys else {
            panic!("[{section}] serializes as an object");
        };
        for key in keys.keys() {
            let documented = body.lines().any(|line| {
                let line = line.trim_start_matches('#').trim_start();
                line.strip_prefix(key.as_str())
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            });
            assert!(
                documented,
                "config.example.toml does not show {section}.{key}"
            );
        }
    }
}

/// The lines of `[section]` (or of a commented-out `# [section]`) up to the next header.
fn section_body<'a>(text: &'a str, section: &str) -> Option<&'a str> {
    let is_header = |line: &str| {
        let line = line.trim_start_matches('#').trim();
        line.starts_with('[') && line.ends_with(']') && !line.contains('=')
    };
    let header = format!("[{section}]");
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        if is_header(line) {
            if let Some(start) = start {
                return Some(&text[start..offset]);
            }
            if line.trim_start_matches('#').trim() == header {
                start = Some(offset + line.len());
            }
        }
        offset += line.len();
    }
    start.map(|start| &text[start..])
}

// === strictness ===

#[test]
fn unknown_key_in_file_is_named_with_its_file() {
    let (_dir, path) = write_config("[server]\nprot = 1\n");
    let error = Config::load_with_env(Some(&path), env(&[])).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("server.prot"), "{message}");
    assert!(message.contains("unknown key"), "{message}");
    assert!(message.contains(&path.display().to_string()), "{message}");
}

#[test]
fn unknown_section_in_file_is_named() {
    let message = load_error("[server]\nport = 1\n\n[nosuch]\nx = 1\n", &[]);
    assert!(message.contains("nosuch"), "{message}");
    assert!(message.contains("unknown section"), "{message}");
}

#[test]
fn unknown_env_var_is_named() {
    let message = load_error("", &[("SIGNAL_MANAGER_SERVER_PROT", "1")]);
    assert!(message.contains("SIGNAL_MANAGER_SERVER_PROT"), "{message}");
    assert!(message.contains("server.prot"), "{message}");

    let message = load_error("", &[("SIGNAL_MANAGER_NOSUCH_KEY", "1")]);
    assert!(message.contains("SIGNAL_MANAGER_NOSUCH_KEY"), "{message}");
    assert!(message.contains("unknown section"), "{message}");
}

#[test]
fn env_var_without_section_and_key_is_an_error() {
    let message = load_error("", &[("SIGNAL_MANAGER_CONFIG", "x.toml")]);
    assert!(message.contains("SIGNAL_MANAGER_CONFIG"), "{message}");
    assert!(message.contains("<SECTION>_<KEY>"), "{message}");
}

#[test]
fn two_env_vars_for_one_key_is_an_error() {
    let message = load_error(
        "",
        &[
            ("SIGNAL_MANAGER_SERVER_PORT", "1"),
            ("signal_manager_server_port", "2"),
        ],
    );
    assert!(message.contains("server.port"), "{message}");
    assert!(message.contains("SIGNAL_MANAGER_SERVER_PORT"), "{message}");
    assert!(message.contains("signal_manager_server_port"), "{message}");
}

#[test]
fn unrelated_env_vars_are_ignored() {
    let config = Config::load_with_env(
        None,
        env(&[("PATH", "/usr/bin"), ("SIGNAL_MANAGERX_SERVER_PORT", "1")]),
    )
    .unwrap();
    assert_eq!(config, Config::default());
}

#[test]
fn wrong_type_is_named() {
    let message = load_error("[server]\nport = \"abc\"\n", &[]);
    assert!(message.contains("server.port"), "{message}");
    assert!(message.contains("TOML file"), "{message}");

    let message = load_error("", &[("SIGNAL_MANAGER_SERVER_PORT", "abc")]);
    assert!(message.contains("server.port"), "{message}");
    assert!(message.contains("SIGNAL_MANAGER_SERVER_PORT"), "{message}");

    let message = load_error("[server]\nport = 70000\n", &[]);
    assert!(message.contains("server.port"), "{message}");

    let message = load_error("[auth]\napi_keys = [\"a:b\", 3]\n", &[]);
    assert!(message.contains("auth.api_keys[1]"), "{message}");

    let message = load_error("[logging]\nformat = \"fancy\"\n", &[]);
    assert!(message.contains("logging.format"), "{message}");
    assert!(message.contains("json"), "{message}");
}

#[test]
fn missing_file_is_a_read_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let error = Config::load_with_env(Some(&path), env(&[])).unwrap_err();
    assert!(matches!(error, ConfigError::Read { .. }), "{error:?}");
    assert!(error.to_string().contains("absent.toml"), "{error}");
}

#[test]
fn no_file_means_defaults() {
    let config = Config::load_with_env(None, env(&[])).unwrap();
    assert_eq!(config, Config::default());
    config.validate().unwrap();
}

// === environment overrides ===

#[test]
fn env_overrides_file() {
    let (_dir, path) = write_config(
        "[server]\nport = 1\nmax_connections = 2\n\n[auth]\ntoken_secret = \"from-file\"\napi_keys = [\"x:y\", \"z:w\"]\n",
    );
    let config = Config::load_with_env(
        Some(&path),
        env(&[
            ("SIGNAL_MANAGER_SERVER_PORT", "9000"),
            ("SIGNAL_MANAGER_SERVER_MAX_CONNECTIONS", "5"),
            ("SIGNAL_MANAGER_AUTH_API_KEYS", r#"["a:b"]"#),
            ("SIGNAL_MANAGER_AUTH_TOKEN_SECRET", "s"),
        ]),
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.server.port, 9000);
    assert_eq!(config.server.max_connections, 5);
    assert_eq!(config.auth.api_keys, ["a:b"]);
    assert_eq!(config.auth.token_secret, Some(Secret::new("s")));
}

#[test]
fn env_values_reach_keys_of_every_type() {
    let config = Config::load_with_env(
        None,
        env(&[
            ("SIGNAL_MANAGER_SERVER_HOST", "0.0.0.0"),
            ("SIGNAL_MANAGER_SERVER_TLS_ENABLED", "false"),
            ("SIGNAL_MANAGER_SERVER_HEARTBEAT_INTERVAL", "15"),
            ("SIGNAL_MANAGER_AUTH_API_KEYS", r#"["a:b","c:d"]"#),
            ("SIGNAL_MANAGER_AUTH_AUTH_METHOD", "jwt"),
            // Numeric-looking values stay strings where the key is a string.
            ("SIGNAL_MANAGER_AUTH_TOKEN_SECRET", "1.50"),
            ("SIGNAL_MANAGER_LOGGING_LEVEL", "info,signal_core=debug"),
            (
                "SIGNAL_MANAGER_SECURITY_ALLOWED_ORIGINS",
                r#"["https://a.example"]"#,
            ),
            ("SIGNAL_MANAGER_DATABASE_URL", "sqlite::memory:"),
            ("SIGNAL_MANAGER_FIRESTORE_PROJECT_ID", "123456"),
        ]),
    )
    .unwrap();
    config.validate().unwrap();
    assert_eq!(config.server.host, "0.0.0.0");
    assert!(!config.server.tls_enabled);
    assert_eq!(config.heartbeat_interval(), 15);
    assert_eq!(config.api_keys().len(), 2);
    assert_eq!(config.auth.auth_method, AuthMethod::Jwt);
    assert_eq!(config.auth.token_secret, Some(Secret::new("1.50")));
    assert_eq!(config.logging.level, "info,signal_core=debug");
    assert_eq!(config.security.allowed_origins, ["https://a.example"]);
    assert_eq!(config.database.url, "sqlite::memory:");
    assert_eq!(config.inactive_sections(), ["firestore"]);
    assert_eq!(
        config.firestore.and_then(|f| f.project_id).as_deref(),
        Some("123456")
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment::Jail's closure returns figment's own Result.
fn process_environment_is_read_by_load() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("config.toml", "[server]\nport = 1\n")?;
        jail.set_env("SIGNAL_MANAGER_SERVER_PORT", "9100");
        jail.set_env("SIGNAL_MANAGER_AUTH_API_KEYS", r#"["a:b","c:d"]"#);
        let config = Config::load(Some(Path::new("config.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(config.server.port, 9100);
        assert_eq!(config.auth.api_keys, ["a:b", "c:d"]);

        jail.set_env("SIGNAL_MANAGER_SERVER_PROT", "1");
        let error = Config::load(None).unwrap_err().to_string();
        assert!(error.contains("SIGNAL_MANAGER_SERVER_PROT"), "{error}");
        Ok(())
    });
}

// === validation ===

#[test]
fn validation_failures_name_their_key() {
    let cases = [
        (
            "[heartbeat]\ninterval = 30\ntimeout = 10\n",
            "heartbeat.timeout",
        ),
        ("[heartbeat]\ninterval = 0\n", "heartbeat.interval"),
        (
            "[server]\nheartbeat_interval = 120\n",
            "server.heartbeat_interval",
        ),
        (
            "[auth]\napi_keys = [\"a:b\", \"no-colon\"]\n",
            "auth.api_keys[1]",
        ),
        ("[auth]\napi_keys = [\"a:b\", \":t\"]\n", "auth.api_keys[1]"),
        (
            "[auth]\napi_keys = [\"a:b\", \"a:c\"]\n",
            "auth.api_keys[1]",
        ),
        ("[auth]\nauth_method = \"jwt\"\n", "auth.token_secret"),
        ("[auth]\ntoken_secret = \"\"\n", "auth.token_secret"),
        ("[server]\ntls_enabled = true\n", "server.tls_cert_path"),
        ("[server]\ntls_enabled = true\n", "server.tls_key_path"),
        (
            "[server]\ntls_enabled = true\ntls_cert_path = \"/nonexistent/cert.pem\"\ntls_key_path = \"/nonexistent/key.pem\"\n",
            "/nonexistent/cert.pem",
        ),
        (
            "[server]\nmax_message_size = 100\n",
            "server.max_message_size",
        ),
        (
            "[server]\nmax_message_size = 16777217\n",
            "server.max_message_size",
        ),
        (
            "[server]\nmax_frame_size = 70000\n",
            "server.max_frame_size",
        ),
        (
            "[server]\nread_buffer_size = 0\n",
            "server.read_buffer_size",
        ),
        ("[server]\noutbound_queue = 0\n", "server.outbound_queue"),
        ("[server]\nworker_threads = 0\n", "server.worker_threads"),
        (
            "[server]\noutbound_queue = 65537\n",
            "server.outbound_queue",
        ),
        ("[server]\nmax_connections = 0\n", "server.max_connections"),
        (
            "[server]\nconnection_timeout = 0\n",
            "server.connection_timeout",
        ),
        ("[server]\nhost = \"\"\n", "server.host"),
        (
            "[session]\nmax_sessions_per_client = 0\n",
            "session.max_sessions_per_client",
        ),
        (
            "[security]\nmax_messages_per_minute = 0\n",
            "security.max_messages_per_minute",
        ),
        (
            "[security]\nallowed_origins = [\"example.com\"]\n",
            "security.allowed_origins[0]",
        ),
        ("[logging]\nlevel = \"loud\"\n", "logging.level"),
        ("[metrics]\nport = 8080\n", "metrics.port"),
        (
            "[database]\nurl = \"mysql://localhost/db\"\n",
            "database.url",
        ),
        ("[database]\nurl = \"signal.db\"\n", "database.url"),
        (
            "[database]\nmax_connections = 0\n",
            "database.max_connections",
        ),
        ("[rooms]\nmax_participants = 1\n", "rooms.max_participants"),
        (
            "[rooms]\nmax_participants = 10001\n",
            "rooms.max_participants",
        ),
        (
            "[cloudflare]\nstun_url = \"turn:x\"\n",
            "cloudflare.stun_url",
        ),
        (
            "[cloudflare]\nbase_url = \"rtc.example\"\n",
            "cloudflare.base_url",
        ),
        ("[webrtc]\nsession_timeout = 0\n", "webrtc.session_timeout"),
        (
            "[webrtc]\nstun_urls = [\"stun.example.com\"]\n",
            "webrtc.stun_urls[0]",
        ),
        (
            "[webrtc]\nturn_urls = [\"turn:turn.example.com\"]\n",
            "webrtc.turn_urls",
        ),
        ("[webrtc]\nturn_secret = \"s\"\n", "webrtc.turn_urls"),
        (
            "[webrtc]\nturn_urls = [\"turn:t.example\"]\nturn_secret = \"s\"\nturn_ttl = 10\n",
            "webrtc.turn_ttl",
        ),
        (
            "[webrtc]\nice_transport_policy = \"relay\"\n",
            "webrtc.ice_transport_policy",
        ),
    ];
    for (contents, key) in cases {
        let message = validation_error(contents);
        assert!(
            message.contains(key),
            "{contents:?}: {message:?} does not name {key}"
        );
    }
}

#[test]
fn heartbeat_message_shows_both_values() {
    let message = validation_error("[heartbeat]\ninterval = 30\ntimeout = 10\n");
    assert!(message.contains("heartbeat.timeout"), "{message}");
    assert!(message.contains("heartbeat.interval = 30"), "{message}");
    assert!(message.contains("10"), "{message}");
}

#[test]
fn validation_reports_every_failure() {
    let (_dir, path) =
        write_config("[server]\noutbound_queue = 0\n\n[rooms]\nmax_participants = 1\n");
    let error = Config::load_with_env(Some(&path), env(&[]))
        .unwrap()
        .validate()
        .unwrap_err();
    let keys: Vec<&str> = error.issues().iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["server.outbound_queue", "rooms.max_participants"]);
}

#[test]
fn tls_with_existing_files_validates() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, "not checked here").unwrap();
    std::fs::write(&key, "not checked here").unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\ntls_enabled = true\ntls_cert_path = {:?}\ntls_key_path = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    )
    .unwrap();
    let config = Config::load_with_env(Some(&path), env(&[])).unwrap();
    config.validate().unwrap();
    assert_eq!(config.server.tls_cert_path.as_deref(), Some(cert.as_path()));
}

#[test]
fn postgres_url_selects_postgres() {
    let (_dir, path) = write_config("[database]\nurl = \"postgresql://u:p@db.internal/signal\"\n");
    let config = Config::load_with_env(Some(&path), env(&[])).unwrap();
    config.validate().unwrap();
    assert_eq!(config.database.backend(), DatabaseBackend::Postgres);
}

// === secrets ===

#[test]
fn debug_output_hides_secrets() {
    let (_dir, path) = write_config(
        r#"
[auth]
token_secret = "jwt-signing-key-S3CRET"

[cloudflare]
app_id = "app"
app_secret = "cf-app-secret-S3CRET"

[database]
url = "postgres://signal:pg-password-S3CRET@db.internal:5432/signal"
"#,
    );
    let config = Config::load_with_env(Some(&path), env(&[])).unwrap();
    config.validate().unwrap();
    let debug = format!("{config:?}");
    let pretty = format!("{config:#?}");
    for secret in [
        "jwt-signing-key-S3CRET",
        "cf-app-secret-S3CRET",
        "pg-password-S3CRET",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
        assert!(!pretty.contains(secret), "{secret} in {pretty}");
    }
    assert!(
        debug.contains("postgres://signal:***@db.internal:5432/signal"),
        "{debug}"
    );
    assert_eq!(
        config.auth.token_secret.as_ref().map(Secret::expose),
        Some("jwt-signing-key-S3CRET")
    );
}

#[test]
fn errors_hide_secrets() {
    let message = validation_error("[database]\nurl = \"mysql://root:my-S3CRET@db/x\"\n");
    assert!(message.contains("database.url"), "{message}");
    assert!(!message.contains("my-S3CRET"), "{message}");

    let message = load_error("[auth]\ntoken_secret = 98765432123\n", &[]);
    assert!(message.contains("auth.token_secret"), "{message}");
    assert!(!message.contains("98765432123"), "{message}");

    // A TOML syntax error quotes the source line; that excerpt is dropped.
    let message = load_error("[auth]\ntoken_secret = unquoted-S3CRET\n", &[]);
    assert!(message.contains("line 2"), "{message}");
    assert!(!message.contains("S3CRET"), "{message}");

    // An api key entry holds a token: a malformed one is not echoed.
    let message = validation_error("[auth]\napi_keys = [\"client token-S3CRET\"]\n");
    assert!(message.contains("auth.api_keys[0]"), "{message}");
    assert!(!message.contains("S3CRET"), "{message}");
}

// === [webrtc] ===

#[test]
fn webrtc_ice_keys_load_from_file_and_env() {
    let (_dir, path) = write_config(
        r#"
[webrtc]
stun_urls = ["stun:stun.example.com:3478"]
turn_urls = ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"]
turn_secret = "coturn-static-auth-secret"
turn_ttl = 3600
ice_transport_policy = "relay"
bundle_policy = "max-bundle"
rtcp_mux_policy = "negotiate"
"#,
    );
    let config = Config::load_with_env(
        Some(&path),
        env(&[
            ("SIGNAL_MANAGER_WEBRTC_TURN_TTL", "7200"),
            ("SIGNAL_MANAGER_WEBRTC_STUN_URLS", "[]"),
        ]),
    )
    .unwrap();
    config.validate().unwrap();
    assert!(config.inactive_sections().is_empty());
    let w = &config.webrtc;
    assert!(w.stun_urls.is_empty());
    assert_eq!(w.turn_urls.len(), 2);
    assert_eq!(
        w.turn_secret.as_ref().map(Secret::expose),
        Some("coturn-static-auth-secret")
    );
    assert_eq!(w.turn_ttl, 7200);
    assert_eq!(w.ice_transport_policy, IceTransportPolicy::Relay);
    assert_eq!(w.bundle_policy, BundlePolicy::MaxBundle);
    assert_eq!(w.rtcp_mux_policy, RtcpMuxPolicy::Negotiate);
}

#[test]
fn webrtc_policies_outside_their_sets_are_load_errors() {
    let message = load_error("[webrtc]\nbundle_policy = \"max_bundle\"\n", &[]);
    assert!(message.contains("webrtc.bundle_policy"), "{message}");
    assert!(message.contains("max-bundle"), "{message}");
    let message = load_error(
        "",
        &[("SIGNAL_MANAGER_WEBRTC_ICE_TRANSPORT_POLICY", "none")],
    );
    assert!(message.contains("webrtc.ice_transport_policy"), "{message}");
}

#[test]
fn turn_secrets_never_show() {
    let (_dir, path) = write_config(
        r#"
[webrtc]
turn_urls = ["turn:turn.example.com"]
turn_username = "user"
turn_credential = "turn-password-S3CRET"
"#,
    );
    let config = Config::load_with_env(Some(&path), env(&[])).unwrap();
    config.validate().unwrap();
    assert!(!format!("{config:?}").contains("S3CRET"));

    let message = load_error("[webrtc]\nturn_secret = 12345678987\n", &[]);
    assert!(message.contains("webrtc.turn_secret"), "{message}");
    assert!(!message.contains("12345678987"), "{message}");
    let message = load_error("[webrtc]\nturn_credential = [\"S3CRET\"]\n", &[]);
    assert!(message.contains("webrtc.turn_credential"), "{message}");
    assert!(!message.contains("S3CRET"), "{message}");
}

#[test]
fn a_redis_ca_needs_a_tls_url_and_a_file() {
    let pg = "[database]\nurl = \"postgres://signal@127.0.0.1:5432/signal\"\n";
    let e = validation_error(&format!(
        "{pg}[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\nredis_ca_file = \"/etc/hosts\"\n"
    ));
    assert!(
        e.contains("cluster.redis_ca_file") && e.contains("rediss://"),
        "{e}"
    );
    let e = validation_error(&format!(
        "{pg}[cluster]\nredis_url = \"rediss://127.0.0.1:6379\"\nredis_ca_file = \"/no/such/ca.pem\"\n"
    ));
    assert!(
        e.contains("cluster.redis_ca_file") && e.contains("/no/such/ca.pem"),
        "{e}"
    );
}

#[test]
fn a_redis_cluster_is_named_by_its_seed_nodes_and_only_one_redis_is_set() {
    let pg = "[database]\nurl = \"postgres://signal@127.0.0.1:5432/signal\"\n";
    let e = validation_error(&format!(
        "{pg}[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n\
         redis_cluster_urls = [\"redis://127.0.0.1:7000\"]\n"
    ));
    assert!(
        e.contains("cluster.redis_cluster_urls") && e.contains("not both"),
        "{e}"
    );
    let e = validation_error(&format!(
        "{pg}[cluster]\nredis_cluster_urls = [\"redis://127.0.0.1:7000\", \"127.0.0.1:7001\"]\n"
    ));
    assert!(
        e.contains("cluster.redis_cluster_urls") && e.contains("\"127.0.0.1:7001\""),
        "{e}"
    );
    let e = validation_error(&format!("{pg}[cluster]\nnode_id = \"a\"\n"));
    assert!(
        e.contains("cluster.redis_url") && e.contains("redis_cluster_urls"),
        "{e}"
    );
}
