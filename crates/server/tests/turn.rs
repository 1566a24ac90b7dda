//! TURN REST credentials proven against a real coturn: `turnserver` on loopback with
//! `use-auth-secret`, our server with the same secret, `/webrtc/config` fetched with a JWT,
//! and `turnutils_uclient` allocating a relay with the minted username and credential.
//! An expired credential and a tampered one are refused.
//!
//! coturn must be installed (`scripts/test.sh` installs Debian's `coturn`); without it
//! this test fails and says so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{
    net::{TcpListener, TcpStream, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{JWT_SECRET, TestServer, WAIT};
use serde_json::Value;
use signal_server::{config::Secret, http::turn};

const SECRET: &str = "coturn-static-auth-secret-for-tests";

/// Finds `program` on `PATH`.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn require(program: &str) -> PathBuf {
    which(program).unwrap_or_else(|| {
        panic!(
            "`{program}` not found on PATH: this test needs coturn. \
             scripts/test.sh installs it (Debian: apt-get install coturn)"
        )
    })
}

/// A port free for both UDP and TCP on 127.0.0.1 (TURN listens on both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// A running `turnserver`, killed when dropped.
struct Coturn {
    child: Child,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Coturn {
    fn start(secret: &str) -> Self {
        let bin = require("turnserver");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        // Relay ports: a small range of its own, away from the ephemeral ports.
        let min_port = 40_000 + (port % 200) * 100;
        let log = dir.path().join("turn.log");
        let child = Command::new(bin)
            .args([
                "-n",
                "--listening-ip=127.0.0.1",
                "--relay-ip=127.0.0.1",
                &format!("--listening-port={port}"),
                &format!("--min-port={min_port}"),
                &format!("--max-port={}", min_port + 99),
                "--realm=test",
                "--use-auth-secret",
                &format!("--static-auth-secret={secret}"),
                "--allow-loopback-peers",
                "--no-cli",
                "--no-tls",
                "--no-dtls",
                "--simple-log",
                "--log-file=stdout",
            ])
            .arg(format!("--db={}", dir.path().join("turndb").display()))
            .arg(format!(
                "--pidfile={}",
                dir.path().join("turn.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        let mut coturn = Coturn {
            child,
            port,
            log,
            _dir: dir,
        };
        coturn.wait_ready();
        coturn
    }

    /// Waits (bounded) until the TCP side of the listener accepts and the UDP relay
    /// servers exist: coturn opens its TCP listener before the per-CPU UDP threads, and
    /// logs "Total General servers" once those are created. An allocation sent before
    /// that meets "Connection refused".
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("turnserver exited with {status}:\n{}", self.log_text());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && self.log_text().contains("Total General servers")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "turnserver not listening on {} after 15s:\n{}",
                self.port,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What `turnutils_uclient` made of a username and password.
struct Allocation {
    ok: bool,
    output: String,
}

/// Allocates relays with `username`/`password` over UDP and sends a few messages between
/// two clients through them (`-y`). Bounded by a timeout.
async fn allocate(port: u16, username: &str, password: &str) -> Allocation {
    let bin = require("turnutils_uclient");
    let run = tokio::process::Command::new(bin)
        .args(["-y", "-n", "2", "-m", "1", "-X"])
        .args(["-u", username, "-w", password, "-p", &port.to_string()])
        .arg("127.0.0.1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("turnutils_uclient finishes within 60s")
        .expect("turnutils_uclient runs");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Allocation {
        ok: out.status.success(),
        output,
    }
}

async fn webrtc_config(s: &TestServer, jwt: &str) -> Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hostport = s.running().addr.to_string();
    let mut sock = tokio::net::TcpStream::connect(&hostport).await.unwrap();
    let req = format!(
        "GET /webrtc/config HTTP/1.1\r\nHost: {hostport}\r\nAuthorization: Bearer {jwt}\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    serde_json::from_str(body).unwrap()
}

#[tokio::test]
async fn minted_credentials_allocate_on_coturn_and_expired_or_tampered_ones_do_not() {
    // Fail loudly before anything starts if coturn is missing.
    require("turnserver");
    require("turnutils_uclient");
    let coturn = Coturn::start(SECRET);
    let turn_url = format!("turn:127.0.0.1:{}?transport=udp", coturn.port);
    let s = TestServer::start_with(|c| {
        c.webrtc.turn_urls = vec![turn_url.clone()];
        c.webrtc.turn_secret = Some(Secret::new(SECRET));
        c.webrtc.turn_ttl = 3600;
    })
    .await;

    let jwt = signal_core::auth::issue_jwt(JWT_SECRET, "alice", Some("Alice"), 300).unwrap();
    let config = webrtc_config(&s, &jwt).await;
    let server = config["ice_servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["urls"][0] == turn_url.as_str())
        .unwrap_or_else(|| panic!("no TURN entry in {config}"))
        .clone();
    let username = server["username"].as_str().unwrap().to_owned();
    let credential = server["credential"].as_str().unwrap().to_owned();
    assert!(username.ends_with(":alice"), "{username}");

    let good = allocate(coturn.port, &username, &credential).await;
    assert!(
        good.ok,
        "coturn refused the minted credential {username}:\n{}\n-- turnserver log --\n{}",
        good.output,
        coturn.log_text()
    );
    assert!(
        good.output.contains("Total lost packets 0"),
        "{}",
        good.output
    );

    // Expired a minute ago, minted by the same function the endpoint uses.
    let expired = turn::mint(SECRET.as_bytes(), "alice", turn::unix_now() - 60).unwrap();
    let refused = allocate(coturn.port, &expired.username, &expired.credential).await;
    assert!(
        !refused.ok,
        "an expired credential allocated:\n{}",
        refused.output
    );
    assert!(
        refused.output.contains("Cannot complete Allocation"),
        "{}",
        refused.output
    );

    // The right username with a credential that is off by one character.
    let mut tampered = credential.clone().into_bytes();
    tampered[0] = if tampered[0] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let refused = allocate(coturn.port, &username, &tampered).await;
    assert!(
        !refused.ok,
        "a tampered credential allocated:\n{}",
        refused.output
    );

    // Alice's credential under another user's name.
    let (expiry, _) = username.split_once(':').unwrap();
    let refused = allocate(coturn.port, &format!("{expiry}:mallory"), &credential).await;
    assert!(
        !refused.ok,
        "a credential worked for another user:\n{}",
        refused.output
    );

    // A credential minted with another secret.
    let foreign = turn::mint_for(b"not-the-coturn-secret", "alice", 3600).unwrap();
    let refused = allocate(coturn.port, &foreign.username, &foreign.credential).await;
    assert!(
        !refused.ok,
        "a foreign secret allocated:\n{}",
        refused.output
    );

    assert!(
        coturn
            .log_text()
            .contains("Cannot find credentials of user"),
        "coturn logged the refusals:\n{}",
        coturn.log_text()
    );
    s.shutdown().await;
    drop(coturn);
}

/// The guard really kills coturn: nothing keeps listening after the test.
#[test]
fn the_coturn_guard_kills_on_drop() {
    let coturn = Coturn::start("another-secret");
    let port = coturn.port;
    let pid = coturn.child.id();
    drop(coturn);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "turnserver {pid} still runs"
    );
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}
