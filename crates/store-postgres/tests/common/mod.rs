//! A PostgreSQL server of the test's own: `initdb` into a temporary directory, `postgres`
//! on a free loopback port, killed when dropped. Never the machine's shared instance.
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres` user (through
//! `setpriv`, which keeps the server as the direct child). A missing binary fails loudly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; stopped on drop.
pub struct PgServer {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    as_root: bool,
}

impl PgServer {
    /// `postgres://signal@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://signal@127.0.0.1:{}/postgres", self.port)
    }

    /// A URL to a fresh database of this server, made empty for one test.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&self.url())
            .await
            .unwrap();
        // The name is ours (a UUID's hex digits), not input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        format!("postgres://signal@127.0.0.1:{}/{name}", self.port)
    }

    /// Starts a server and waits until it takes connections.
    pub async fn start() -> Self {
        let bin = bin_dir();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let as_root = is_root();
        if as_root {
            // The postgres user must reach the directory and own the data directory.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            chown_postgres(&data);
        }
        let out = command(as_root, &bin.join("initdb"))
            .args([
                "-D",
                path(&data),
                "-U",
                "signal",
                "-A",
                "trust",
                "-E",
                "UTF8",
            ])
            .args(["--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let child = spawn_postgres(as_root, dir.path(), port);
        let mut server = Self {
            child,
            port,
            dir,
            as_root,
        };
        server.wait_ready().await;
        server
    }

    /// Starts the server again on its data and port (after [`kill`](Self::kill)).
    pub async fn restart(&mut self) {
        self.kill();
        self.child = spawn_postgres(self.as_root, self.dir.path(), self.port);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("postgres exited with {status}: {}", self.log());
            }
            if <sqlx::PgConnection as sqlx::Connection>::connect(&self.url())
                .await
                .is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not take connections within 30 s: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    /// Stops the server at once (as a crash or a lost network would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_postgres(as_root: bool, dir: &Path, port: u16) -> Child {
    let data = dir.join("data");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .unwrap();
    if as_root {
        chown_postgres(&dir.join("postgres.log"));
    }
    command(as_root, &bin_dir().join("postgres"))
        .args([
            "-D",
            path(&data),
            "-p",
            &port.to_string(),
            "-k",
            path(&data),
        ])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        .args(["-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The directory of the newest installed PostgreSQL server binaries.
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                .filter(|b| b.join("initdb").exists() && b.join("postgres").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql: \
             install the Debian package `postgresql` (scripts/test.sh does)"
        )
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn chown_postgres(p: &Path) {
    let ok = Command::new("chown")
        .args(["postgres:postgres", path(p)])
        .status()
        .unwrap()
        .success();
    assert!(
        ok,
        "chown postgres {} failed (is there a postgres user?)",
        p.display()
    );
}

/// `program`, run as the postgres user when we are root.
fn command(as_root: bool, program: &Path) -> Command {
    if as_root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--clear-groups",
            "--",
        ]);
        c.arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
