//! Google's Firestore emulator (or its Pub/Sub emulator, [`Emulator::start_pubsub`]),
//! started by the tests themselves on a free port (never a shared instance):
//! `gcloud emulators firestore start`, in its own process group, under a watchdog shell
//! that stops the group when the test process ends, however it ends. Each test uses its
//! own database on the emulator, so tests share one emulator per test binary and still
//! start empty.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A running emulator.
pub struct Emulator {
    /// `127.0.0.1:PORT`.
    pub host: String,
    port: u16,
    /// The watchdog shell: the leader of the emulator's session.
    sid: u32,
    watchdog: Option<std::process::Child>,
    log: std::path::PathBuf,
    /// The `gcloud` subcommand that starts it.
    command: &'static str,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `GET /` answers `Ok`.
fn answers(host: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    // The emulator keeps the connection open: read until its short answer is in.
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = s.read(&mut buf) {
        out.extend_from_slice(&buf[..n]);
        if out.ends_with(b"Ok\n") || out.ends_with(b"Ok") {
            break;
        }
    }
    out.starts_with(b"HTTP/1.1 200") && (out.ends_with(b"Ok\n") || out.ends_with(b"Ok"))
}

impl Emulator {
    /// Starts a Firestore emulator on a free port and waits until it answers.
    pub fn start() -> Self {
        Self::start_with("emulators firestore start")
    }

    /// Starts a Pub/Sub emulator on a free port and waits until it answers.
    pub fn start_pubsub() -> Self {
        Self::start_with("beta emulators pubsub start")
    }

    fn start_with(command: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut e = Self {
            host: format!("127.0.0.1:{port}"),
            port,
            sid: 0,
            watchdog: None,
            log: dir.path().join("emulator.log"),
            command,
            _dir: dir,
        };
        e.spawn();
        e
    }

    fn spawn(&mut self) {
        assert!(
            Command::new("gcloud")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "these tests need Google's emulators: `gcloud` (google-cloud-cli with \
             google-cloud-cli-firestore-emulator and google-cloud-cli-pubsub-emulator, and \
             Java) is not installed"
        );
        // The shell ignores TERM so it can stop the whole group after its first signal.
        let script = format!(
            "trap '' TERM; \
             gcloud {command} --host-port=127.0.0.1:{port} >>'{log}' 2>&1 & e=$!; \
             while kill -0 {watch} 2>/dev/null && kill -0 $e 2>/dev/null; do sleep 1; done; \
             pkill -TERM -s $$; sleep 2; pkill -KILL -s $$",
            port = self.port,
            command = self.command,
            log = self.log.display(),
            watch = std::process::id(),
        );
        let child = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setsid (util-linux) must be installed");
        self.sid = child.id();
        self.watchdog = Some(child);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !answers(&self.host) {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                self.kill();
                panic!(
                    "`gcloud {}` did not answer within 120 s; its log:\n{log}",
                    self.command
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Kills the emulator (every process of its session) at once, and waits until its
    /// port is closed.
    pub fn kill(&mut self) {
        let _ = Command::new("pkill")
            .args(["-KILL", "-s", &self.sid.to_string()])
            .status();
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&self.host).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts it again on the same port (empty: the emulator keeps data in memory).
    pub fn restart(&mut self) {
        self.spawn();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One emulator for the whole test binary, stopped by its watchdog when the process ends.
pub fn shared() -> &'static Emulator {
    static SHARED: OnceLock<Emulator> = OnceLock::new();
    SHARED.get_or_init(Emulator::start)
}

/// A database name no other test uses.
pub fn fresh_database() -> String {
    format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..20])
}
