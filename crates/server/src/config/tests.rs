//! Unit tests of the config module: defaults, derived values and helpers. Loading real
//! files is tested in `tests/config_files.rs`.

use super::*;

#[test]
fn defaults_validate() {
    Config::default().validate().unwrap();
}

#[test]
fn default_message_size_is_one_full_binary_frame() {
    let server = ServerConfig::default();
    let largest_frame = signal_protocol::FRAME_HEADER_LEN + signal_protocol::MAX_PAYLOAD_LEN;
    assert_eq!(largest_frame, 65_556);
    assert_eq!(server.max_message_size, largest_frame);
    assert_eq!(server.max_frame_size(), largest_frame);
    let server = ServerConfig {
        max_frame_size: Some(4096),
        ..server
    };
    assert_eq!(server.max_frame_size(), 4096);
}

#[test]
fn heartbeat_interval_prefers_the_heartbeat_section() {
    let mut config = Config::default();
    assert_eq!(config.heartbeat_interval(), 30);

    config.server.heartbeat_interval = Some(20);
    assert_eq!(config.heartbeat_interval(), 20);

    config.heartbeat.interval = 45;
    assert_eq!(config.heartbeat_interval(), 45);
}

#[test]
fn heartbeat_timeout_is_checked_against_the_interval_in_force() {
    let mut config = Config::default();
    config.server.heartbeat_interval = Some(90);
    let error = config.validate().unwrap_err().to_string();
    assert!(
        error.contains("heartbeat.timeout: must be greater than server.heartbeat_interval = 90"),
        "{error}"
    );
    config.heartbeat.timeout = 91;
    config.validate().unwrap();
}

#[test]
fn dev_mode_adds_seed_credentials_once() {
    let mut config = Config::default();
    config.auth.api_keys = vec!["test_client_2:custom".to_owned(), "x:y".to_owned()];
    config.apply_dev_mode();
    config.apply_dev_mode();
    assert!(config.auth.allow_anonymous);
    assert_eq!(
        config.auth.api_keys,
        ["test_client_2:custom", "x:y", "test_client_1:test_token_1"]
    );
    config.validate().unwrap();
}

#[test]
fn api_keys_skip_malformed_entries() {
    let mut config = Config::default();
    config.auth.api_keys = vec!["a:b".to_owned(), "broken".to_owned(), "c:d:e".to_owned()];
    assert_eq!(
        config.api_keys(),
        [
            ("a".to_owned(), "b".to_owned()),
            ("c".to_owned(), "d:e".to_owned())
        ]
    );
}

#[test]
fn inactive_sections_in_order() {
    let mut config = Config::default();
    assert!(config.inactive_sections().is_empty());
    config.firestore = Some(FirestoreConfig::default());
    assert_eq!(config.inactive_sections(), ["firestore"]);
    config.cloudflare = Some(CloudflareConfig::default());
    assert_eq!(config.inactive_sections(), ["firestore", "cloudflare"]);
    // With the Firestore store, [firestore] is what it reads.
    config.database.url = "firestore://demo-project".to_owned();
    assert_eq!(config.inactive_sections(), ["cloudflare"]);
}

#[test]
fn firestore_needs_a_project_from_the_url_or_its_section() {
    let mut config = Config::default();
    config.database.url = "firestore://".to_owned();
    let err = config.validate().unwrap_err().to_string();
    assert!(
        err.contains("database.url") && err.contains("project"),
        "{err}"
    );
    config.firestore = Some(FirestoreConfig {
        project_id: Some("seed-project".to_owned()),
        ..FirestoreConfig::default()
    });
    config.validate().unwrap();
    assert_eq!(config.firestore_project().as_deref(), Some("seed-project"));
    config.database.url = "firestore://from-url".to_owned();
    assert_eq!(config.firestore_project().as_deref(), Some("from-url"));
    config.database.url = "firestore://bad project".to_owned();
    assert!(config.validate().is_err());
    config.database.url = "firestore://ok".to_owned();
    config.firestore = Some(FirestoreConfig {
        credentials_path: Some("/nonexistent/key.json".to_owned()),
        ..FirestoreConfig::default()
    });
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("firestore.credentials_path"), "{err}");
}

#[test]
fn only_the_sfu_keys_of_webrtc_are_inactive() {
    let mut config = Config::default();
    // The ICE keys are served by /webrtc/config: setting them is not "inactive".
    config.webrtc.stun_urls = vec!["stun:stun.example.com:3478".to_owned()];
    config.webrtc.bundle_policy = BundlePolicy::MaxBundle;
    assert!(config.inactive_sections().is_empty());
    config.webrtc.cloudflare_timeout = Some(10);
    assert_eq!(config.inactive_sections(), ["webrtc.cloudflare_timeout"]);
    config.webrtc.session_timeout = Some(300);
    config.firestore = Some(FirestoreConfig::default());
    assert_eq!(
        config.inactive_sections(),
        [
            "firestore",
            "webrtc.session_timeout",
            "webrtc.cloudflare_timeout"
        ]
    );
}

#[test]
fn webrtc_defaults_fall_back_to_public_stun() {
    let webrtc = WebrtcConfig::default();
    assert_eq!(webrtc.stun_urls, DEFAULT_STUN_URLS);
    assert!(webrtc.turn_urls.is_empty());
    assert_eq!(webrtc.turn_ttl, 86_400);
    assert_eq!(webrtc.ice_transport_policy, IceTransportPolicy::All);
    assert_eq!(webrtc.bundle_policy, BundlePolicy::Balanced);
    assert_eq!(webrtc.rtcp_mux_policy, RtcpMuxPolicy::Require);
}

/// The keys of every validation failure of `config`.
fn failing_keys(config: &Config) -> Vec<String> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(e) => e.issues().iter().map(|i| i.key.clone()).collect(),
    }
}

#[test]
fn webrtc_turn_settings_are_checked_together() {
    let turn = |f: &dyn Fn(&mut WebrtcConfig)| {
        let mut config = Config::default();
        config.webrtc.turn_urls = vec!["turn:turn.example.com:3478?transport=udp".to_owned()];
        f(&mut config.webrtc);
        failing_keys(&config)
    };
    // TURN URLs without credentials: browsers would throw InvalidAccessError.
    assert_eq!(turn(&|_| {}), ["webrtc.turn_urls"]);
    assert!(turn(&|w| w.turn_secret = Some(Secret::new("s"))).is_empty());
    assert!(
        turn(&|w| {
            w.turn_username = Some("user".to_owned());
            w.turn_credential = Some(Secret::new("pass"));
        })
        .is_empty()
    );
    assert_eq!(
        turn(&|w| w.turn_username = Some("user".to_owned())),
        ["webrtc.turn_credential"]
    );
    assert_eq!(
        turn(&|w| w.turn_credential = Some(Secret::new("pass"))),
        ["webrtc.turn_username"]
    );
    assert_eq!(
        turn(&|w| {
            w.turn_secret = Some(Secret::new("s"));
            w.turn_username = Some("user".to_owned());
            w.turn_credential = Some(Secret::new("pass"));
        }),
        ["webrtc.turn_username"]
    );
    assert_eq!(
        turn(&|w| w.turn_secret = Some(Secret::new(""))),
        ["webrtc.turn_secret"]
    );
    assert_eq!(
        turn(&|w| {
            w.turn_username = Some("u".repeat(MAX_TURN_USERNAME_LEN + 1));
            w.turn_credential = Some(Secret::new("pass"));
        }),
        ["webrtc.turn_username"]
    );
    assert_eq!(
        turn(&|w| {
            w.turn_secret = Some(Secret::new("s"));
            w.turn_ttl = 59;
        }),
        ["webrtc.turn_ttl"]
    );
    assert!(
        turn(&|w| {
            w.turn_secret = Some(Secret::new("s"));
            w.ice_transport_policy = IceTransportPolicy::Relay;
            w.stun_urls.clear();
        })
        .is_empty()
    );

    let mut config = Config::default();
    config.webrtc.turn_secret = Some(Secret::new("s"));
    assert_eq!(failing_keys(&config), ["webrtc.turn_urls"]);
    config.webrtc.turn_secret = None;
    config.webrtc.ice_transport_policy = IceTransportPolicy::Relay;
    assert_eq!(failing_keys(&config), ["webrtc.ice_transport_policy"]);
}

#[test]
fn webrtc_urls_need_the_right_scheme() {
    let mut config = Config::default();
    config.webrtc.stun_urls = vec![
        "stun:ok.example".to_owned(),
        "turn:wrong.example".to_owned(),
        "stun:".to_owned(),
        "stuns:ok.example:5349".to_owned(),
        "stun:has space".to_owned(),
    ];
    config.webrtc.turn_urls = vec!["stun:x".to_owned(), "turns:ok.example".to_owned()];
    config.webrtc.turn_secret = Some(Secret::new("s"));
    assert_eq!(
        failing_keys(&config),
        [
            "webrtc.stun_urls[1]",
            "webrtc.stun_urls[2]",
            "webrtc.stun_urls[4]",
            "webrtc.turn_urls[0]"
        ]
    );
}

#[test]
fn database_backend_and_redaction() {
    let mut database = DatabaseConfig::default();
    assert_eq!(database.backend(), DatabaseBackend::Sqlite);
    database.url = "postgres://app:hunter2@db/app".to_owned();
    assert_eq!(database.backend(), DatabaseBackend::Postgres);
    assert_eq!(database.redacted_url(), "postgres://app:***@db/app");
    assert!(!format!("{database:?}").contains("hunter2"));
}

#[test]
fn secrets_are_redacted_in_debug() {
    let mut config = Config::default();
    config.auth.token_secret = Some(Secret::new("jwt-key"));
    config.cloudflare = Some(CloudflareConfig {
        app_secret: Some(Secret::new("cf-key")),
        ..CloudflareConfig::default()
    });
    config.webrtc.turn_secret = Some(Secret::new("turn-key"));
    config.webrtc.turn_credential = Some(Secret::new("turn-pass"));
    let debug = format!("{config:?}");
    for secret in ["jwt-key", "cf-key", "turn-key", "turn-pass"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn issue_display_names_key_and_origin() {
    let issue = ConfigIssue {
        key: "server.prot".to_owned(),
        origin: Some("TOML file c.toml".to_owned()),
        message: "unknown key".to_owned(),
    };
    assert_eq!(
        issue.to_string(),
        "server.prot (from TOML file c.toml): unknown key"
    );
    let error = ConfigError::Invalid {
        issues: vec![
            ConfigIssue::new("a.b", "bad"),
            ConfigIssue::new("c.d", "worse"),
        ],
    };
    assert_eq!(
        error.to_string(),
        "invalid configuration: a.b: bad; c.d: worse"
    );
}

#[test]
fn sfu_mode_needs_the_app() {
    let mut config = Config::default();
    config.webrtc.media = MediaMode::Cloudflare;
    assert_eq!(
        failing_keys(&config),
        ["cloudflare.app_id", "cloudflare.app_secret"]
    );
    config.cloudflare = Some(CloudflareConfig {
        app_id: Some("app".into()),
        app_secret: Some(Secret::new("secret")),
        ..CloudflareConfig::default()
    });
    config.webrtc.cloudflare_timeout = Some(5);
    assert!(failing_keys(&config).is_empty());
    assert!(
        config.inactive_sections().is_empty(),
        "[cloudflare] and webrtc.cloudflare_timeout are acted on in SFU mode"
    );
    config.database.url = "postgres://db/app".into();
    config.cluster = Some(ClusterConfig {
        redis_url: "redis://127.0.0.1:6379".into(),
        ..ClusterConfig::default()
    });
    assert!(
        failing_keys(&config).is_empty(),
        "SFU rooms span the nodes of a cluster"
    );

    let config = Config {
        cloudflare: Some(CloudflareConfig {
            turn_key_id: Some("key".into()),
            ..CloudflareConfig::default()
        }),
        ..Config::default()
    };
    assert_eq!(failing_keys(&config), ["cloudflare.turn_key_id"]);
}

#[test]
fn events_need_a_signed_webhook() {
    let mut config = Config::default();
    config.events.webhook_url = Some("ftp://hooks.example".into());
    assert_eq!(
        failing_keys(&config),
        ["events.webhook_url", "events.webhook_secret"]
    );
    config.events.webhook_url = Some("https://hooks.example/signal".into());
    config.events.webhook_secret = Some(Secret::new("short"));
    assert_eq!(failing_keys(&config), ["events.webhook_secret"]);
    config.events.webhook_secret = Some(Secret::new("sixteen-bytes-or-more"));
    assert!(failing_keys(&config).is_empty());
    config.events.retry_max = 10;
    assert_eq!(failing_keys(&config), ["events.retry_max"]);
    config.events.retry_max = 60_000;
    config.database.url = "postgres://db/app".into();
    config.cluster = Some(ClusterConfig {
        redis_url: "redis://127.0.0.1:6379".into(),
        ..ClusterConfig::default()
    });
    assert!(
        failing_keys(&config).is_empty(),
        "a cluster's nodes share the outbox; one of them publishes"
    );
    let mut config = Config::default();
    config.events.webhook_secret = Some(Secret::new("sixteen-bytes-or-more"));
    assert_eq!(failing_keys(&config), ["events.webhook_url"]);
}
