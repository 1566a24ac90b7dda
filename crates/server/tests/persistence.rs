//! What survives: registrations across a restart, the seven tables written through the
//! room lifecycle, the drain on shutdown (in process and on SIGTERM to the real binary),
//! and recovery of rooms a killed process left active.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    process::{Child, Command},
    time::Duration,
};

use common::{TestServer, WAIT, free_port, http_get, spawn_binary, wait_listening};
use signal_client::{
    Client, decode,
    protocol::{MessageType, payload::RoomClosed},
};
use signal_core::store::Store;
use signal_store_sqlite::{SqliteOptions, SqliteStore};

async fn open_db(path: &std::path::Path) -> SqliteStore {
    SqliteStore::open(
        &format!("sqlite://{}", path.display()),
        SqliteOptions::default(),
    )
    .await
    .expect("database file opens")
}

#[tokio::test]
async fn registrations_survive_a_restart() {
    let s = TestServer::start().await;
    let c = s.connected("alice").await;
    c.register("alice-registered-secret").await.unwrap();
    drop(c);
    let s = s.restart().await;

    // Not an API key: only the stored (hashed) registration can authenticate this.
    let mut c = s.client().await;
    c.authenticate("alice", "alice-registered-secret")
        .await
        .expect("registered token works after restart");
    assert_eq!(
        c.register("alice-registered-secret")
            .await
            .unwrap_err()
            .code(),
        Some(409)
    );
    let created = c
        .create_room("alice-registered-secret", Some("after-restart"), None)
        .await
        .unwrap();
    assert_eq!(created.room_id, "after-restart");
    let (_, body) = http_get(&s.http(), "/health").await;
    assert!(body.contains("\"registered_clients\":1"), "{body}");
}

#[tokio::test]
async fn the_room_lifecycle_is_written_to_the_seven_tables() {
    let s = TestServer::start().await;
    let mut a = s.registered("alice").await;
    let b = s.registered("bob").await;
    let c = s.registered("carol").await;
    a.create_room("alice-token", Some("audit"), Some("v=0"))
        .await
        .unwrap();
    b.join_room("bob-token", "audit").await.unwrap();
    c.join_room("carol-token", "audit").await.unwrap();

    let db = open_db(&s.db_path()).await;
    let room = db
        .get_room("audit")
        .await
        .unwrap()
        .expect("webrtc_rooms row");
    assert_eq!(room.status, "Active");
    assert_eq!(room.sender_client_id.as_deref(), Some("alice"));
    assert_eq!(room.receiver_client_id.as_deref(), Some("bob"));
    let created = db.room_created("audit").await.unwrap();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].created_by.as_deref(), Some("alice"));
    assert_eq!(created[0].room_uuid, room.id);
    let members: Vec<String> = db
        .room_members("audit")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.client_id)
        .collect();
    assert_eq!(members, ["alice", "bob", "carol"]);
    let roles: Vec<(String, String)> = db
        .room_webrtc_clients("audit")
        .await
        .unwrap()
        .into_iter()
        .map(|w| (w.client_id, w.role))
        .collect();
    assert!(roles.contains(&("alice".into(), "sender".into())));
    assert!(roles.contains(&("carol".into(), "receiver".into())));

    b.leave_room("bob-token", "audit").await.unwrap();
    a.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
    let history = db.member_history("audit").await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(
        (
            history[0].client_id.as_str(),
            history[0].final_status.as_str()
        ),
        ("bob", "VoluntaryDisconnect")
    );
    assert_eq!(db.room_members("audit").await.unwrap().len(), 2);

    a.leave_room("alice-token", "audit").await.unwrap();
    let mut c = c;
    c.expect_event(MessageType::RoomClosed, WAIT).await.unwrap();
    assert!(
        db.get_room("audit").await.unwrap().is_none(),
        "no longer active"
    );
    assert!(db.room_members("audit").await.unwrap().is_empty());
    assert!(db.room_webrtc_clients("audit").await.unwrap().is_empty());
    let ended = db.terminated_rooms("audit").await.unwrap();
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0].terminated_by.as_deref(), Some("alice"));
    assert_eq!(ended[0].room_data["participant_count"], 3);
    let history = db.member_history("audit").await.unwrap();
    let who: Vec<&str> = history.iter().map(|h| h.client_id.as_str()).collect();
    assert_eq!(history.len(), 3, "{who:?}");
    assert!(who.contains(&"alice") && who.contains(&"carol"));
}

#[tokio::test]
async fn an_in_process_drain_closes_clients_with_1001_and_records_the_rooms() {
    let s = TestServer::start().await;
    let mut a = s.registered("alice").await;
    let mut b = s.registered("bob").await;
    a.create_room("alice-token", Some("drain"), None)
        .await
        .unwrap();
    b.join_room("bob-token", "drain").await.unwrap();
    let db_path = s.db_path();
    let TestServer { running, dir, .. } = s;
    running.expect("running").shutdown().await;
    assert_eq!(a.closed_within(WAIT).await.unwrap().code, 1001);
    assert_eq!(b.closed_within(WAIT).await.unwrap().code, 1001);
    let db = open_db(&db_path).await;
    assert!(db.get_room("drain").await.unwrap().is_none());
    let ended = db.terminated_rooms("drain").await.unwrap();
    assert_eq!(ended.len(), 1);
    assert!(
        ended[0]
            .termination_reason
            .as_deref()
            .unwrap_or("")
            .contains("server shutting down")
    );
    assert_eq!(db.count_clients().await.unwrap(), 2);
    drop(dir);
}

struct Proc {
    child: Child,
    port: u16,
}

impl Proc {
    fn start(dir: &std::path::Path, port: u16) -> Proc {
        Proc::start_with(dir, port, "")
    }

    /// Starts the binary with `server_keys` (TOML lines) added to its `[server]` table.
    fn start_with(dir: &std::path::Path, port: u16, server_keys: &str) -> Proc {
        let config = format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nshutdown_timeout = 5\n{server_keys}\n[auth]\napi_keys = [\"alice:alice-token\", \"bob:bob-token\"]\n\n[database]\nurl = \"sqlite://{}\"\n\n[metrics]\nenabled = false\n\n[logging]\nlevel = \"info\"\nformat = \"compact\"\n",
            dir.join("service.db").display()
        );
        let path = dir.join("config.toml");
        std::fs::write(&path, config).unwrap();
        let child = spawn_binary(&path);
        Proc { child, port }
    }

    async fn ready(&self) {
        wait_listening(self.port).await;
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    fn signal(&self, sig: i32) {
        let rc = unsafe_free_kill(self.child.id() as i32, sig);
        assert_eq!(rc, 0, "kill failed");
    }

    async fn exit_status(mut self) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not exit"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `kill(2)` through the shell's built-in `kill`, keeping the tests free of unsafe code.
fn unsafe_free_kill(pid: i32, sig: i32) -> i32 {
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("kill -{sig} {pid}"))
        .status()
        .expect("sh runs");
    if st.success() { 0 } else { 1 }
}

async fn pair_in_room(url: &str, room: &str) -> (Client, Client) {
    let mut a = Client::connect(url).await.unwrap();
    a.authenticate("alice", "alice-token").await.unwrap();
    let _ = a.register("alice-token").await;
    let mut b = Client::connect(url).await.unwrap();
    b.authenticate("bob", "bob-token").await.unwrap();
    let _ = b.register("bob-token").await;
    a.create_room("alice-token", Some(room), Some("v=0"))
        .await
        .unwrap();
    b.join_room("bob-token", room).await.unwrap();
    (a, b)
}

#[tokio::test]
async fn sigterm_drains_the_real_binary() {
    drains_on_sigterm("").await;
}

/// The single-threaded scheduler (`worker_threads = 1`) serves the same session: rooms,
/// store writes on their writer task, and the drain.
#[tokio::test]
async fn sigterm_drains_the_real_binary_on_one_thread() {
    drains_on_sigterm("worker_threads = 1\n").await;
}

async fn drains_on_sigterm(server_keys: &str) {
    let dir = tempfile::tempdir().unwrap();
    let p = Proc::start_with(dir.path(), free_port(), server_keys);
    p.ready().await;
    let (mut a, mut b) = pair_in_room(&p.url(), "sigterm-room").await;
    p.signal(15);
    let ca = a.closed_within(Duration::from_secs(10)).await.unwrap();
    let cb = b.closed_within(Duration::from_secs(10)).await.unwrap();
    assert_eq!((ca.code, cb.code), (1001, 1001));
    assert_eq!(ca.reason, "server shutting down");
    let status = p.exit_status().await;
    assert!(status.success(), "clean exit after drain: {status:?}");

    let db = open_db(&dir.path().join("service.db")).await;
    assert_eq!(
        db.count_clients().await.unwrap(),
        2,
        "registrations flushed"
    );
    assert!(db.get_room("sigterm-room").await.unwrap().is_none());
    let ended = db.terminated_rooms("sigterm-room").await.unwrap();
    assert_eq!(ended.len(), 1, "the room's end is recorded before exit");
    assert_eq!(db.member_history("sigterm-room").await.unwrap().len(), 2);
}

#[tokio::test]
async fn rooms_left_active_by_a_killed_process_are_closed_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let p = Proc::start(dir.path(), port);
    p.ready().await;
    let (_a, _b) = pair_in_room(&p.url(), "crashed-room").await;
    p.signal(9);
    assert!(!p.exit_status().await.success());

    {
        let db = open_db(&dir.path().join("service.db")).await;
        assert!(
            db.get_room("crashed-room").await.unwrap().is_some(),
            "a kill -9 leaves the room active"
        );
        db.close().await;
    }
    let p = Proc::start(dir.path(), port);
    p.ready().await;
    let db = open_db(&dir.path().join("service.db")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while db.get_room("crashed-room").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "recovery did not close the room"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ended = db.terminated_rooms("crashed-room").await.unwrap();
    assert_eq!(ended.len(), 1);
    assert!(
        ended[0]
            .termination_reason
            .as_deref()
            .unwrap_or("")
            .contains("server restarted")
    );
    assert_eq!(db.member_history("crashed-room").await.unwrap().len(), 2);
    // The id is usable again and registrations are intact.
    let mut a = Client::connect(&p.url()).await.unwrap();
    a.authenticate("alice", "alice-token").await.unwrap();
    a.create_room("alice-token", Some("crashed-room"), None)
        .await
        .unwrap();
    p.signal(15);
    assert!(p.exit_status().await.success());
}

#[tokio::test]
async fn a_bad_config_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nprot = 8080\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signal-manager-service"))
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.prot"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_signal-manager-service"))
        .arg("check-config")
        .env("SIGNAL_MANAGER_HEARTBEAT_TIMEOUT", "5")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat.timeout"));
}

#[tokio::test]
async fn closed_room_events_decode() {
    // ROOM_CLOSED reaches a member whose sender disconnects abruptly.
    let s = TestServer::start().await;
    let a = s.registered("alice").await;
    let mut b = s.registered("bob").await;
    a.create_room("alice-token", Some("abrupt"), None)
        .await
        .unwrap();
    b.join_room("bob-token", "abrupt").await.unwrap();
    drop(a);
    let f = b.expect_event(MessageType::RoomClosed, WAIT).await.unwrap();
    let rc: RoomClosed = decode(&f).unwrap();
    assert!(
        rc.reason.contains("sender 'alice' left (disconnected)"),
        "{}",
        rc.reason
    );
}
