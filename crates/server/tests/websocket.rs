//! The WebSocket layer on a raw TCP socket: the upgrade handshake, and the frames a
//! well-behaved client library would never send (unmasked, oversized, invalid UTF-8),
//! each answered with its RFC 6455 close code; fragmented messages and pings in
//! between are served like any other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::{TestServer, WAIT};
use serde_json::json;
use sha1::{Digest as _, Sha1};
use signal_client::protocol::{self, MessageType, PayloadType};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;

/// Opens `path` and completes the upgrade, checking the server's accept key.
async fn handshake(s: &TestServer, path: &str) -> TcpStream {
    let addr = s.running().addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut b))
            .await
            .expect("handshake answered")
            .unwrap();
        head.push(b[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let accept = base64::engine::general_purpose::STANDARD.encode(sha.finalize());
    assert!(
        head.contains(&format!(
            "sec-websocket-accept: {}",
            accept.to_ascii_lowercase()
        )),
        "{head}"
    );
    tcp
}

/// A client frame: FIN as given, masked with `mask` (or unmasked when `None`).
fn frame(fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// The next server frame: (opcode, payload). Server frames are unmasked.
async fn read_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, async {
        let mut h = [0u8; 2];
        tcp.read_exact(&mut h).await.unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are not masked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut l = [0u8; 2];
                tcp.read_exact(&mut l).await.unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => {
                let mut l = [0u8; 8];
                tcp.read_exact(&mut l).await.unwrap();
                u64::from_be_bytes(l) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        (h[0] & 0x0F, payload)
    })
    .await
    .expect("a frame within the wait")
}

/// Reads until a close frame; returns its code and reason.
async fn read_close(tcp: &mut TcpStream) -> (u16, String) {
    loop {
        let (op, p) = read_frame(tcp).await;
        if op == 0x8 {
            let code = u16::from_be_bytes([p[0], p[1]]);
            return (code, String::from_utf8(p[2..].to_vec()).unwrap());
        }
    }
}

fn connect_frame(client: &str) -> Vec<u8> {
    let payload =
        serde_json::to_vec(&json!({"client_id": client, "auth_token": format!("{client}-token")}))
            .unwrap();
    protocol::frame::encode_parts(
        MessageType::Connect,
        Uuid::new_v4(),
        PayloadType::Json,
        &payload,
    )
    .unwrap()
    .to_vec()
}

#[tokio::test]
async fn a_fragmented_connect_with_a_ping_in_between_is_served() {
    let s = TestServer::start().await;
    let mut tcp = handshake(&s, "/").await;
    let connect = connect_frame("alice");
    let (a, rest) = connect.split_at(10);
    let (b, c) = rest.split_at(20);
    let mut bytes = frame(false, 0x2, a, MASK);
    bytes.extend(frame(false, 0x0, b, MASK));
    bytes.extend(frame(true, 0x9, b"are you there", MASK));
    bytes.extend(frame(true, 0x0, c, MASK));
    // Byte by byte: the server must reassemble across reads too.
    for byte in bytes {
        tcp.write_all(&[byte]).await.unwrap();
    }
    let (op, payload) = read_frame(&mut tcp).await;
    assert_eq!(
        (op, payload.as_slice()),
        (0xA, &b"are you there"[..]),
        "pong first"
    );
    let (op, payload) = read_frame(&mut tcp).await;
    assert_eq!(op, 0x2);
    let ack = protocol::Frame::decode(payload.into()).unwrap();
    assert_eq!(ack.msg_type, MessageType::ConnectAck);

    // A clean close is answered with 1000.
    tcp.write_all(&frame(true, 0x8, &1000u16.to_be_bytes(), MASK))
        .await
        .unwrap();
    assert_eq!(read_close(&mut tcp).await.0, 1000);
}

#[tokio::test]
async fn an_unmasked_client_frame_is_closed_with_1002() {
    let s = TestServer::start().await;
    let mut tcp = handshake(&s, "/").await;
    tcp.write_all(&frame(true, 0x2, &connect_frame("alice"), None))
        .await
        .unwrap();
    assert_eq!(
        read_close(&mut tcp).await,
        (1002, "unmasked client frame".to_owned())
    );
}

#[tokio::test]
async fn an_oversized_frame_is_refused_from_its_header_with_1009() {
    let s = TestServer::start().await;
    let limit = s.config.server.max_message_size;
    let mut tcp = handshake(&s, "/").await;
    // Only the header: the server must not wait for a payload it will refuse.
    let mut header = vec![0x82, 0x80 | 127];
    header.extend_from_slice(&((limit + 1) as u64).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    tcp.write_all(&header).await.unwrap();
    assert_eq!(
        read_close(&mut tcp).await,
        (1009, format!("message larger than {limit} bytes"))
    );
}

#[tokio::test]
async fn text_that_is_not_utf8_is_closed_with_1007_and_others_carry_on() {
    let s = TestServer::start().await;
    let other = s.registered("bob").await;
    let mut tcp = handshake(&s, "/ws").await;
    tcp.write_all(&frame(true, 0x1, b"{\"type\":\"\xff\"}", MASK))
        .await
        .unwrap();
    assert_eq!(read_close(&mut tcp).await.0, 1007);
    other.heartbeat().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    other.heartbeat().await.unwrap();
}

#[tokio::test]
async fn a_request_that_is_not_an_upgrade_says_what_is_missing() {
    let s = TestServer::start().await;
    let addr = s.running().addr;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut body = String::new();
    tokio::time::timeout(WAIT, tcp.read_to_string(&mut body))
        .await
        .unwrap()
        .unwrap();
    assert!(body.starts_with("HTTP/1.1 426"), "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains("sec-websocket-version: 13"),
        "{body}"
    );
    assert!(body.contains("unsupported Sec-WebSocket-Version"), "{body}");
}
