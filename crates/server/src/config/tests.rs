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
    config.webrtc = Some(WebrtcConfig::default());
    config.firestore = Some(FirestoreConfig::default());
    assert_eq!(config.inactive_sections(), ["firestore", "webrtc"]);
    config.cloudflare = Some(CloudflareConfig::default());
    assert_eq!(
        config.inactive_sections(),
        ["firestore", "cloudflare", "webrtc"]
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
    let debug = format!("{config:?}");
    assert!(
        !debug.contains("jwt-key") && !debug.contains("cf-key"),
        "{debug}"
    );
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
