//! A hostile client cannot hurt the server or the other clients: each test runs the real
//! binary and attacks it from outside as the findings of a probe did, then checks what a
//! user would notice: the process is still up, its memory stayed bounded, other clients
//! still work, and the attacker got a precise error or close code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{process::Child, time::Duration};

use common::{free_port, http_get, spawn_binary, wait_listening};
use signal_client::{
    Client, ClientError, decode,
    protocol::{self, MessageType, PayloadType, payload::ErrorPayload},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;

/// The server binary, run with its own config and database in a temporary directory.
struct Proc {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Proc {
    /// Starts the binary; `extra` is TOML appended to the config (whole tables).
    async fn start(server_keys: &str, extra: &str) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = format!(
            "[server]\nhost = \"127.0.0.1\"\nport = {port}\nshutdown_timeout = 2\n{server_keys}\n\n\
             [auth]\napi_keys = [\"alice:alice-token\", \"bob:bob-token\", \"carol:carol-token\"]\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[metrics]\nenabled = false\n\n{extra}\n",
            dir.path().join("data/service.db").display()
        );
        let path = dir.path().join("config.toml");
        std::fs::write(&path, config).unwrap();
        let p = Proc {
            child: spawn_binary(&path),
            port,
            dir,
        };
        wait_listening(port).await;
        assert_eq!(http_get(&p.http(), "/health").await.0, 200);
        p
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    fn http(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Resident memory in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// Panics if the process has exited.
    fn assert_alive(&mut self) {
        if let Some(st) = self.child.try_wait().unwrap() {
            panic!("the server process died: {st}");
        }
    }

    /// A client that can still do a full round trip: the server serves others.
    async fn assert_serves(&mut self, id: &str) {
        self.assert_alive();
        let mut c = Client::connect(&self.url()).await.expect("connects");
        c.authenticate(id, &format!("{id}-token"))
            .await
            .expect("CONNECT");
        c.heartbeat().await.expect("HEARTBEAT");
        assert_eq!(http_get(&self.http(), "/health").await.0, 200);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw TCP connection upgraded to a WebSocket by hand, so a test can send without
/// reading and frame exactly what it wants.
async fn raw_ws(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(
        format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "upgrade answer");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    s
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// Reads server frames until a close frame: its code and reason (`None` if the stream
/// ended without one).
async fn close_frame(s: &mut TcpStream, within: Duration) -> Option<(u16, String)> {
    let mut buf = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        // Parse what is buffered.
        let mut at = 0;
        while buf.len() >= at + 2 {
            let op = buf[at] & 0x0f;
            let (len, hl) = match buf[at + 1] & 0x7f {
                126 if buf.len() >= at + 4 => {
                    (u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as usize, 4)
                }
                127 if buf.len() >= at + 10 => (
                    u64::from_be_bytes(buf[at + 2..at + 10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < at + hl + len {
                break;
            }
            if op == 0x8 {
                let p = &buf[at + hl..at + hl + len];
                let code = if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                };
                return Some((
                    code,
                    String::from_utf8_lossy(p.get(2..).unwrap_or(&[])).into(),
                ));
            }
            at += hl + len;
        }
        buf.drain(..at);
        let mut chunk = vec![0u8; 64 * 1024];
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => panic!("no close frame within {within:?}"),
        }
    }
}

/// CBOR: {"client_id": "alice", "auth_token": "alice-token", "metadata": [[…1…]]} with
/// `levels` levels of arrays under metadata.
fn cbor_connect(levels: usize) -> Vec<u8> {
    let mut b = vec![0xa3];
    b.push(0x69);
    b.extend_from_slice(b"client_id");
    b.push(0x65);
    b.extend_from_slice(b"alice");
    b.push(0x6a);
    b.extend_from_slice(b"auth_token");
    b.push(0x6b);
    b.extend_from_slice(b"alice-token");
    b.push(0x68);
    b.extend_from_slice(b"metadata");
    b.extend(std::iter::repeat_n(0x81, levels));
    b.push(0x01);
    b
}

async fn error_of(c: &Client, t: MessageType, pt: PayloadType, payload: &[u8]) -> ErrorPayload {
    let id = Uuid::new_v4();
    let bytes = protocol::frame::encode_parts(t, id, pt, payload).unwrap();
    let f = c.request_raw(id, bytes).await.expect("an answer");
    assert_eq!(f.msg_type, MessageType::Error, "{f:?}");
    decode(&f).unwrap()
}

#[tokio::test]
async fn nesting_bombs_get_a_400_and_the_server_stays_up() {
    let mut p = Proc::start("", "").await;

    // The probe's crash: a 4 KB CBOR CONNECT nesting metadata 4,000 arrays deep.
    let c = Client::connect(&p.url()).await.unwrap();
    let e = error_of(
        &c,
        MessageType::Connect,
        PayloadType::Cbor,
        &cbor_connect(4000),
    )
    .await;
    assert_eq!(e.error_code, 400);
    assert!(
        e.error_message.contains("nesting deeper than 64 levels"),
        "{}",
        e.error_message
    );
    p.assert_alive();

    // At the limit it is accepted (the top-level map is level 1): 63 arrays.
    let c = Client::connect(&p.url()).await.unwrap();
    let id = Uuid::new_v4();
    let bytes = protocol::frame::encode_parts(
        MessageType::Connect,
        id,
        PayloadType::Cbor,
        &cbor_connect(63),
    )
    .unwrap();
    let f = c.request_raw(id, bytes).await.unwrap();
    assert_eq!(f.msg_type, MessageType::ConnectAck, "{f:?}");

    // The same limit for JSON: 65 levels refused, with the same words.
    let c = Client::connect(&p.url()).await.unwrap();
    let json = format!(
        "{{\"client_id\":\"bob\",\"auth_token\":\"bob-token\",\"metadata\":{}1{}}}",
        "[".repeat(64),
        "]".repeat(64)
    );
    let e = error_of(&c, MessageType::Connect, PayloadType::Json, json.as_bytes()).await;
    assert_eq!(e.error_code, 400);
    assert!(
        e.error_message.contains("nesting deeper than 64 levels"),
        "{}",
        e.error_message
    );

    // And for the JSON dialects.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/ws?token=carol-token&client_id=carol",
        p.port
    ))
    .await
    .unwrap();
    use futures_util::{SinkExt, StreamExt};
    let deep = format!(
        "{{\"type\":\"JOIN_ROOM\",\"room_id\":\"r\",\"payload\":{}1{}}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    ws.send(tokio_tungstenite::tungstenite::Message::text(deep))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => {}
                other => panic!("no reply: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert!(reply.contains("nesting deeper than 64 levels"), "{reply}");

    p.assert_serves("bob").await;
}

/// Sends masked pings without ever reading, until `total` bytes went out or the server
/// stopped taking them for a second; returns the bytes sent and the peak RSS seen.
async fn flood_pings(p: &Proc, s: &mut TcpStream, total: usize) -> (usize, u64) {
    let one = client_frame(0x9, &[0x5a; 125]);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 8000).collect();
    let mut sent = 0;
    let mut peak = 0;
    while sent < total {
        match tokio::time::timeout(Duration::from_secs(1), s.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch.len(),
            // Stalled (the server stopped reading) or closed by the server.
            Err(_) | Ok(Err(_)) => break,
        }
        peak = peak.max(p.rss_kib());
    }
    (sent, peak.max(p.rss_kib()))
}

/// A raw WebSocket that sent CONNECT as alice (and reads nothing).
async fn connected_raw(port: u16) -> TcpStream {
    let mut s = raw_ws(port).await;
    let connect = protocol::frame::encode_parts(
        MessageType::Connect,
        Uuid::new_v4(),
        PayloadType::Json,
        br#"{"client_id":"alice","auth_token":"alice-token"}"#,
    )
    .unwrap();
    s.write_all(&client_frame(0x2, &connect)).await.unwrap();
    s
}

#[tokio::test]
async fn a_ping_flood_that_never_reads_does_not_grow_memory() {
    // Without a rate limit (which would end the flood by itself), so what is seen is
    // the backpressure alone.
    let mut p = Proc::start(
        "connection_timeout = 3",
        "[security]\nrate_limit_enabled = false\n\n[heartbeat]\ninterval = 1\ntimeout = 3\n",
    )
    .await;
    p.assert_serves("bob").await;
    let base = p.rss_kib();

    // Before CONNECT a client gets a handful of pings, not a flood.
    let mut s = raw_ws(p.port).await;
    let (_, peak) = flood_pings(&p, &mut s, 64 << 20).await;
    assert!(peak < base + 24 * 1024, "RSS {base} KiB -> {peak} KiB");
    let (code, reason) = close_frame(&mut s, Duration::from_secs(10))
        .await
        .expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert_eq!(reason, "more than 16 pings before CONNECT");

    // After CONNECT: up to 200 MiB of pings, never reading a pong.
    let mut s = connected_raw(p.port).await;
    let (sent, peak) = flood_pings(&p, &mut s, 200 << 20).await;
    assert!(
        peak < base + 24 * 1024,
        "RSS grew from {base} KiB to {peak} KiB after {sent} bytes of pings"
    );
    // Reading paused once pongs were not read: the flood stalled long before 200 MiB.
    assert!(
        sent < 100 << 20,
        "the server kept reading: {sent} bytes taken"
    );
    p.assert_serves("bob").await;
    // Stalled, the flooder sends nothing the server reads: the heartbeat deadline ends
    // it (its close frame may not get through the unread pongs).
    assert!(
        closed_by_server(&mut s, Duration::from_secs(20)).await,
        "the stalled flooder was never closed"
    );
    p.assert_alive();
}

#[tokio::test]
async fn pings_count_toward_the_rate_limit() {
    let mut p = Proc::start("", "[security]\nmax_messages_per_minute = 300\n").await;
    let mut s = connected_raw(p.port).await;
    // A flood of pings after CONNECT, never reading: the rate limit ends it.
    let base = p.rss_kib();
    let (_, peak) = flood_pings(&p, &mut s, 64 << 20).await;
    assert!(peak < base + 24 * 1024, "RSS {base} KiB -> {peak} KiB");
    let (code, reason) = close_frame(&mut s, Duration::from_secs(10))
        .await
        .expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("rate limit"), "{reason}");
    p.assert_serves("bob").await;
}

/// Opens `n` TCP connections that never send a byte and that the server admitted. (A
/// socket of the start-up probe may still hold its slot for a moment after it closed:
/// one refused then is opened again.)
async fn silent(port: u16, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while v.len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "silent sockets refused"
        );
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut b = [0u8; 1];
        match s.try_read(&mut b) {
            // Nothing to read: admitted and waiting for a request.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => v.push(s),
            // Answered (429/503) or closed: refused.
            _ => {}
        }
    }
    v
}

/// Whether the server closes `s` within `d` (end of stream or reset), whatever it sends
/// before.
async fn closed_by_server(s: &mut TcpStream, d: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + d;
    let mut b = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

/// The answer to a request made while silent sockets hold every slot. Sockets are
/// admitted in tasks of their own, so on a busy machine the request may be admitted before
/// the last silent socket: it is retried for a moment (well within the header timeout).
async fn refusal(port: u16) -> String {
    let mut answer = String::new();
    for _ in 0..10 {
        answer = request(port).await;
        if !answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answer
}

async fn request(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn silent_sockets_count_toward_the_limits_and_are_closed() {
    let mut p = Proc::start(
        "header_read_timeout = 2\nmax_connections = 50",
        "[security]\nmax_connections_per_ip = 4\n",
    )
    .await;
    let mut quiet = silent(p.port, 4).await;
    // The per-IP limit counts them: the fifth socket is answered 429 at once.
    let answer = refusal(p.port).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.contains("too many connections from this address"),
        "{answer}"
    );
    // They are on a clock from accept: closed after the header timeout.
    for s in &mut quiet {
        assert!(
            closed_by_server(s, Duration::from_secs(6)).await,
            "a silent socket was left open"
        );
    }
    // One byte of the HTTP/2 preface, and a request head never finished: closed too.
    let mut one = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    one.write_all(b"P").await.unwrap();
    let mut half = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    half.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // The whole HTTP/2 preface, then silence: closed when the server's ping goes
    // unanswered.
    let mut h2 = TcpStream::connect(("127.0.0.1", p.port)).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_by_server(&mut one, Duration::from_secs(6)).await);
    assert!(closed_by_server(&mut half, Duration::from_secs(6)).await);
    assert!(closed_by_server(&mut h2, Duration::from_secs(10)).await);
    p.assert_serves("alice").await;

    // The total limit counts them as well: 503 once max_connections sockets are open.
    let mut q = Proc::start(
        "header_read_timeout = 2\nmax_connections = 3",
        "[security]\nmax_connections_per_ip = 100\n",
    )
    .await;
    let _held = silent(q.port, 3).await;
    let answer = refusal(q.port).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("connection limit reached"), "{answer}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    q.assert_serves("bob").await;
}

#[tokio::test]
async fn a_client_reconnecting_as_fast_as_it_can_is_slowed_down() {
    let mut p = Proc::start("", "[security]\nnew_connections_per_ip_per_second = 5\n").await;
    // The start-up probe used part of the budget: wait for it to refill.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..5 {
        drop(TcpStream::connect(("127.0.0.1", p.port)).await.unwrap());
    }
    // (Sockets are admitted in tasks of their own: the request may be admitted before
    // the last of the five, so it is retried.)
    let answer = refusal(p.port).await;
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        answer.contains("too many new connections from this address"),
        "{answer}"
    );
    // A second later the address may connect again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    p.assert_serves("alice").await;
}

#[tokio::test]
async fn a_lost_database_fails_writes_and_health_with_503() {
    let mut p = Proc::start("", "").await;
    let mut a = Client::connect(&p.url()).await.unwrap();
    a.authenticate("alice", "alice-token").await.unwrap();
    a.register("alice-token").await.unwrap();

    std::fs::remove_dir_all(p.dir.path().join("data")).unwrap();
    let mut b = Client::connect(&p.url()).await.unwrap();
    b.authenticate("bob", "bob-token").await.unwrap();
    match b.register("bob-token").await {
        Err(ClientError::Server(e)) => assert_eq!(e.error_code, 503, "{e:?}"),
        other => panic!("REGISTER into a deleted database: {other:?}"),
    }
    match a
        .create_room("alice-token", Some("lost"), Some("v=0"))
        .await
    {
        Err(ClientError::Server(e)) => assert_eq!(e.error_code, 503, "{e:?}"),
        other => panic!("ROOM_CREATE into a deleted database: {other:?}"),
    }
    let (status, body) = http_get(&p.http(), "/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("unhealthy"), "{body}");
    p.assert_alive();
}

#[tokio::test]
async fn look_alike_client_ids_are_refused_by_name() {
    let p = Proc::start("", "").await;
    for (id, code) in [("ali\u{202E}ce", "U+202E"), ("\u{200B}bob", "U+200B")] {
        let mut c = Client::connect(&p.url()).await.unwrap();
        match c.authenticate(id, "alice-token").await {
            Err(ClientError::Server(e)) => {
                assert_eq!(e.error_code, 400, "{e:?}");
                assert!(e.error_message.contains(code), "{}", e.error_message);
            }
            other => panic!("CONNECT as {id:?}: {other:?}"),
        }
    }
}
