//! A `redis-server` of the test's own: on a free loopback port, with no persistence, in
//! a temporary directory, killed when dropped. Never the machine's shared instance. A
//! missing binary fails loudly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server; stopped on drop.
pub struct RedisServer {
    /// Extra arguments (a cluster node's settings).
    extra: Vec<String>,
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// Serving TLS only, with a certificate for `127.0.0.1` and `localhost` signed by the
    /// CA at [`ca_file`](Self::ca_file).
    tls: bool,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> Self {
        let mut s = Self::unstarted(false);
        s.spawn();
        s
    }

    fn unstarted(tls: bool) -> Self {
        Self {
            extra: Vec::new(),
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            tls,
        }
    }

    /// Starts a server that speaks TLS only (`rediss://`), with a CA and a server
    /// certificate made for it by `openssl`.
    pub fn start_tls() -> Self {
        let mut s = Self::unstarted(true);
        let d = s.dir.path();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .unwrap_or_else(|e| {
                    panic!("openssl could not run ({e}); install the Debian package openssl")
                });
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
        ]);
        std::fs::write(
            d.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "redis.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "redis.crt",
        ]);
        s.spawn();
        s
    }

    /// The CA that signed a TLS server's certificate (PEM).
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// `rediss://127.0.0.1:PORT` for a TLS server.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let d = self.dir.path();
        let file = |f: &str| d.join(f).to_str().unwrap().to_owned();
        let listen: Vec<String> = if self.tls {
            vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.clone(),
                "--tls-cert-file".into(),
                file("redis.crt"),
                "--tls-key-file".into(),
                file("redis.key"),
                "--tls-ca-cert-file".into(),
                file("ca.crt"),
                "--tls-auth-clients".into(),
                "no".into(),
            ]
        } else {
            vec!["--port".into(), port.clone()]
        };
        let child = Command::new("redis-server")
            .args(&listen)
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir.path().to_str().unwrap(),
                "--loglevel",
                "warning",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-server could not start ({e}); install the Debian package redis-server"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        if self.tls {
            // Listening is as far as a plain socket can tell.
            return true;
        }
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// Kills the server (as a crash would); its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Redis Cluster of three primaries (no replicas), each a `redis-server` of the test's
/// own on a free port, formed with `redis-cli --cluster create`; stopped on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three primaries, forms the cluster (16,384 slots split among them), and
    /// waits until every node reports `cluster_state:ok`.
    pub fn start() -> Self {
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut s = RedisServer::unstarted(false);
            // The cluster bus listens on port + 10000: keep it below 65,536.
            while s.port > 55_000 || TcpListener::bind(("127.0.0.1", s.port + 10_000)).is_err() {
                s.port = free_port();
            }
            s.extra = vec![
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                s.dir.path().join("nodes.conf").to_str().unwrap().to_owned(),
                "--cluster-node-timeout".into(),
                "2000".into(),
            ];
            s.spawn();
            nodes.push(s);
        }
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|e| {
                panic!("redis-cli could not run ({e}); install the Debian package redis-tools")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let c = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !c.nodes.iter().all(|n| n.cluster_ok()) {
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not become ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    /// The seed nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

impl RedisServer {
    fn cluster_ok(&self) -> bool {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "cluster", "info"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
    }
}
