//! The REST endpoints over real sockets, with real clients in real rooms: seed 002's
//! `/api/stats` and `/api/rooms`, seed 004's `/webrtc/config` and room participants, the
//! Bearer authentication they share, and the OpenAPI document that lists them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{JWT_SECRET, TestServer, WAIT};
use serde_json::{Value, json};
use signal_client::protocol::{MessageType, payload::RoomJoinRequest};
use signal_server::{
    config::{BundlePolicy, IceTransportPolicy, Secret},
    http::{openapi, turn},
};

/// A response: status, lower-cased header block, body.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON: {:?}", self.body))
    }
}

/// `GET path` with an optional `Authorization` header value, over a raw HTTP/1.1 socket.
async fn get(base: &str, path: &str, authorization: Option<&str>) -> Reply {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {hostport}\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("response within the wait")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn jwt(sub: &str, name: Option<&str>) -> String {
    signal_core::auth::issue_jwt(JWT_SECRET, sub, name, 300).unwrap()
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// alice creates `room`, bob joins it with a display name and an endpoint, carol is
/// connected but in no room.
async fn populate(s: &TestServer, room: &str) -> Vec<signal_client::Client> {
    let mut alice = s.registered("alice").await;
    let bob = s.registered("bob").await;
    let carol = s.connected("carol").await;
    alice
        .create_room("alice-token", Some(room), None)
        .await
        .unwrap();
    bob.join_room_with(RoomJoinRequest {
        version: signal_client::protocol::PROTOCOL_VERSION.into(),
        client_id: "bob".into(),
        auth_token: "bob-token".into(),
        room_id: room.into(),
        role: Some("receiver".into()),
        offer_sdp: None,
        capabilities: None,
        metadata: Some(json!({
            "display_name": "Bob",
            "endpoint": {"ip": "203.0.113.1", "port": 12345}
        })),
    })
    .await
    .unwrap();
    alice
        .expect_event(MessageType::PeerJoined, WAIT)
        .await
        .unwrap();
    vec![alice, bob, carol]
}

#[tokio::test]
async fn stats_and_rooms_describe_real_clients_in_real_rooms() {
    // dave, an admin, sees every room (a non-admin only its own: tests/access.rs).
    let s = TestServer::start_with(|c| c.auth.admin_clients = vec!["dave".into()]).await;
    let auth = bearer("dave-token");
    let before = now_ms();

    let empty = get(&s.http(), "/api/stats", Some(&auth)).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_eq!(
        empty.json()["peers"],
        json!({"total": 0, "without_room": 0})
    );
    assert_eq!(
        get(&s.http(), "/api/rooms", Some(&auth)).await.json(),
        json!({"rooms": []})
    );

    let _clients = populate(&s, "lobby").await;

    let stats = get(&s.http(), "/api/stats", Some(&auth)).await;
    assert!(stats.headers.contains("content-type: application/json"));
    let stats = stats.json();
    assert_eq!(stats["peers"], json!({"total": 3, "without_room": 1}));
    assert_eq!(stats["rooms"], json!({"total": 1, "total_peers": 2}));
    let ts = stats["timestamp"].as_i64().unwrap();
    assert!((before..=now_ms()).contains(&ts), "timestamp in ms: {ts}");

    let list = get(&s.http(), "/api/rooms", Some(&auth)).await.json();
    let rooms = list["rooms"].as_array().unwrap();
    assert_eq!(rooms.len(), 1);
    assert_eq!(rooms[0]["id"], "lobby");
    assert_eq!(rooms[0]["peer_count"], 2);
    assert_eq!(rooms[0]["max_peers"], 16);
    let created = rooms[0]["created_at"].as_str().unwrap();
    let created = chrono::DateTime::parse_from_rfc3339(created).unwrap();
    assert!(created.timestamp_millis() >= before - 1000);

    let detail = get(&s.http(), "/api/rooms/lobby", Some(&auth)).await;
    assert_eq!(detail.status, 200);
    let detail = detail.json();
    assert_eq!(detail["id"], "lobby");
    assert_eq!(detail["peer_count"], 2);
    assert_eq!(detail["max_peers"], 16);
    assert_eq!(detail["created_at"], created.timestamp_millis());
    let peers = detail["peers"].as_array().unwrap();
    assert_eq!(peers[0]["peer_id"], "alice");
    assert_eq!(peers[0]["role"], "sender");
    assert_eq!(peers[0]["display_name"], "alice", "no name: the id");
    assert!(peers[0].get("endpoint").is_none(), "no endpoint announced");
    assert_eq!(peers[1]["peer_id"], "bob");
    assert_eq!(peers[1]["role"], "receiver");
    assert_eq!(peers[1]["display_name"], "Bob");
    assert_eq!(
        peers[1]["endpoint"],
        json!({"ip": "203.0.113.1", "port": 12345})
    );
    let joined = peers[1]["joined_at"].as_i64().unwrap();
    assert!(joined >= peers[0]["joined_at"].as_i64().unwrap());
    assert!((before..=now_ms()).contains(&joined));

    let missing = get(&s.http(), "/api/rooms/nowhere", Some(&auth)).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json(), json!({"error": "room 'nowhere' not found"}));

    // The room ends when its sender leaves; the API sees it go.
    drop(_clients);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stats = get(&s.http(), "/api/stats", Some(&auth)).await.json();
        if stats["rooms"]["total"] == 0 && stats["peers"]["total"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        get(&s.http(), "/api/rooms/lobby", Some(&auth)).await.status,
        404
    );
    s.shutdown().await;
}

#[tokio::test]
async fn every_rest_endpoint_needs_a_valid_bearer_token() {
    let s = TestServer::start().await;
    let expired = {
        let exp = chrono::Utc::now().timestamp() as u64 - 600;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "alice", "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .unwrap()
    };
    let forged = signal_core::auth::issue_jwt("another-secret", "alice", None, 300).unwrap();
    let paths = [
        "/api/stats",
        "/api/rooms",
        "/api/rooms/lobby",
        "/webrtc/config",
        "/webrtc/rooms/lobby/participants",
    ];
    for path in paths {
        let r = get(&s.http(), path, None).await;
        assert_eq!(r.status, 401, "{path} without a token");
        assert!(r.headers.contains("www-authenticate: bearer"), "{path}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("Bearer"),
            "{path}: {}",
            r.body
        );
        for (auth, why) in [
            ("Basic YWxpY2U6YWxpY2UtdG9rZW4=".to_owned(), "Bearer"),
            ("Bearer".to_owned(), "Bearer"),
            (bearer("not-a-key"), "Invalid authentication token"),
            (bearer(&expired), "expired"),
            (bearer(&forged), "signature"),
        ] {
            let r = get(&s.http(), path, Some(&auth)).await;
            assert_eq!(r.status, 401, "{path} with {auth:?}: {}", r.body);
            let error = r.json()["error"].as_str().unwrap().to_owned();
            assert!(error.contains(why), "{path} with {auth:?}: {error}");
        }
        for auth in [
            bearer(&jwt("alice", None)),
            bearer("bob-token"),
            "bearer bob-token".into(),
        ] {
            let r = get(&s.http(), path, Some(&auth)).await;
            assert!(
                r.status == 200 || (r.status == 404 && path == "/api/rooms/lobby"),
                "{path} with {auth:?}: {} {}",
                r.status,
                r.body
            );
        }
    }
    // Health checks and the API description stay open.
    assert_eq!(get(&s.http(), "/health", None).await.status, 200);
    assert_eq!(get(&s.http(), "/openapi.json", None).await.status, 200);
    s.shutdown().await;
}

#[tokio::test]
async fn anonymous_mode_opens_the_api_but_still_refuses_bad_tokens() {
    let s = TestServer::start_with(|c| c.auth.allow_anonymous = true).await;
    let r = get(&s.http(), "/api/stats", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&s.http(), "/webrtc/config", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(&s.http(), "/api/stats", Some(&bearer("wrong"))).await;
    assert_eq!(
        r.status, 401,
        "a wrong token is not downgraded to anonymous"
    );
    s.shutdown().await;
}

#[tokio::test]
async fn webrtc_config_defaults_to_public_stun() {
    let s = TestServer::start().await;
    let r = get(
        &s.http(),
        "/webrtc/config",
        Some(&bearer(&jwt("alice", None))),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({
            "ice_servers": [
                {"urls": ["stun:stun.l.google.com:19302", "stun:stun1.l.google.com:19302"]}
            ],
            "ice_transport_policy": "all",
            "bundle_policy": "balanced",
            "rtcp_mux_policy": "require"
        })
    );
    s.shutdown().await;
}

#[tokio::test]
async fn webrtc_config_hands_out_static_turn_and_the_configured_policies() {
    let s = TestServer::start_with(|c| {
        c.webrtc.stun_urls = vec![];
        c.webrtc.turn_urls = vec![
            "turn:turn.example.com:3478?transport=udp".into(),
            "turns:turn.example.com:5349".into(),
        ];
        c.webrtc.turn_username = Some("static-user".into());
        c.webrtc.turn_credential = Some(Secret::new("static-pass"));
        c.webrtc.ice_transport_policy = IceTransportPolicy::Relay;
        c.webrtc.bundle_policy = BundlePolicy::MaxBundle;
    })
    .await;
    let r = get(&s.http(), "/webrtc/config", Some(&bearer("carol-token"))).await;
    assert!(
        r.headers.contains("cache-control: no-store"),
        "{}",
        r.headers
    );
    assert_eq!(
        r.json(),
        json!({
            "ice_servers": [{
                "urls": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
                "username": "static-user",
                "credential": "static-pass"
            }],
            "ice_transport_policy": "relay",
            "bundle_policy": "max-bundle",
            "rtcp_mux_policy": "require"
        })
    );
    s.shutdown().await;
}

#[tokio::test]
async fn webrtc_config_mints_turn_rest_credentials_per_caller() {
    const SECRET: &str = "shared-with-coturn";
    let s = TestServer::start_with(|c| {
        c.webrtc.turn_urls = vec!["turn:127.0.0.1:3478".into()];
        c.webrtc.turn_secret = Some(Secret::new(SECRET));
        c.webrtc.turn_ttl = 600;
    })
    .await;
    for (auth, user) in [
        (bearer(&jwt("alice", Some("Alice"))), "alice"),
        (bearer("bob-token"), "bob"),
    ] {
        let before = turn::unix_now();
        let v = get(&s.http(), "/webrtc/config", Some(&auth)).await.json();
        let servers = v["ice_servers"].as_array().unwrap();
        assert_eq!(servers.len(), 2, "STUN then TURN: {v}");
        assert!(servers[0].get("username").is_none());
        let t = &servers[1];
        assert_eq!(t["urls"], json!(["turn:127.0.0.1:3478"]));
        let username = t["username"].as_str().unwrap();
        let (expiry, who) = username.split_once(':').unwrap();
        assert_eq!(who, user);
        let expiry: u64 = expiry.parse().unwrap();
        assert!(
            (before + 600..=turn::unix_now() + 600).contains(&expiry),
            "{username}"
        );
        let expected = turn::mint(SECRET.as_bytes(), user, expiry).unwrap();
        assert_eq!(t["credential"], expected.credential);
        assert_eq!(expected.username, username);
        assert!(!v.to_string().contains(SECRET), "the secret never leaves");
    }
    s.shutdown().await;
}

#[tokio::test]
async fn participants_of_a_room_in_seed_004_shape() {
    let s = TestServer::start().await;
    let _clients = populate(&s, "call-7").await;
    let auth = bearer(&jwt("dave", None));
    let r = get(&s.http(), "/webrtc/rooms/call-7/participants", Some(&auth)).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({
            "room_id": "call-7",
            "participants": [
                {"user_id": "alice", "username": "alice"},
                {"user_id": "bob", "username": "Bob"}
            ],
            "participant_count": 2
        })
    );
    // An unknown room has no participants (seed 004's presence lookup answers the same).
    let r = get(
        &s.http(),
        "/webrtc/rooms/empty-room/participants",
        Some(&auth),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"room_id": "empty-room", "participants": [], "participant_count": 0})
    );
    // Not a room id at all.
    let r = get(
        &s.http(),
        "/webrtc/rooms/bad%20room/participants",
        Some(&auth),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.json()["error"].as_str().unwrap().contains("room_id"));
    s.shutdown().await;
}

#[tokio::test]
async fn openapi_document_lists_every_rest_path() {
    let s = TestServer::start().await;
    let r = get(&s.http(), "/openapi.json", None).await;
    assert_eq!(r.status, 200);
    assert!(r.headers.contains("content-type: application/json"));
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["title"], "signal-manager");
    let paths = doc["paths"].as_object().unwrap();
    for path in openapi::ROUTES {
        let item = paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the document"));
        assert!(
            ["get", "post", "delete"]
                .iter()
                .any(|m| item.get(*m).is_some()),
            "{path} documents a method"
        );
    }
    assert_eq!(paths.len(), openapi::ROUTES.len(), "{:?}", paths.keys());
    // Every method of every path the document lists answers (not 404/405) on the
    // running server; the admin API refuses bob, who is no admin.
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "lobby")
            .replace("{client_id}", "carol");
        for method in ["get", "post", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let (status, body) = common::http_request(
                &s.http(),
                &method.to_uppercase(),
                &concrete,
                Some("bob-token"),
                None,
            )
            .await;
            // No such room; no [events] sink, so no events recorded (it says so).
            let absent = concrete == "/api/rooms/lobby"
                || concrete == "/api/rooms/lobby/events" && body.contains("[events]");
            let admin_only = concrete.starts_with("/api/admin/");
            assert!(
                status == 200 || absent && status == 404 || admin_only && status == 403,
                "{method} {concrete}: {status}"
            );
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    assert_eq!(
        doc["paths"]["/api/stats"]["get"]["security"],
        json!([{"bearer": []}])
    );
    assert_eq!(
        serde_json::to_value(openapi::document()).unwrap(),
        doc,
        "the served document is the built one"
    );
    s.shutdown().await;
}

/// A raw HTTP/1.1 request; returns the response head, lower-cased.
async fn raw_head(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = base.trim_start_matches("http://").trim_end_matches('/');
    let mut s = tokio::net::TcpStream::connect(hostport).await.unwrap();
    s.write_all(request.replace("{host}", hostport).as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_lowercase();
    text.split("\r\n\r\n").next().unwrap_or("").to_string()
}

#[tokio::test]
async fn browsers_on_allowed_origins_may_call_the_rest_api() {
    let s =
        TestServer::start_with(|c| c.security.allowed_origins = vec!["https://app.example".into()])
            .await;
    let preflight = "OPTIONS /webrtc/config HTTP/1.1\r\nHost: {host}\r\nOrigin: https://app.example\r\n\
        Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: authorization\r\nConnection: close\r\n\r\n";
    let head = raw_head(&s.http(), preflight).await;
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    assert!(head.contains("authorization"), "{head}");
    let other = preflight.replace("https://app.example", "https://evil.example");
    let head = raw_head(&s.http(), &other).await;
    assert!(!head.contains("access-control-allow-origin"), "{head}");
}
