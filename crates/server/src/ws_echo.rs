//! An echo server on the server's own WebSocket layer (the upgrade and the framing of
//! [`crate::ws`]), for conformance testing: every text or binary message comes back
//! unchanged, every ping gets its pong, and protocol errors close the connection with the
//! codes the signaling endpoints use. `scripts/autobahn.sh` runs the Autobahn TestSuite
//! against it (`cargo run -p signal-server --example ws_echo`).

use std::io;

use axum::{
    Router,
    response::{IntoResponse, Response},
    routing::any,
};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ws::{
    NotUpgrade, Socket, Upgrade,
    frame::{self, Decoder, Limits, Msg, Opcode},
};

/// Largest message and frame echoed: the conformance suite sends 16 MiB messages.
pub const ECHO_MAX_MESSAGE: usize = 64 << 20;

/// Serves the echo endpoint on `/` of `listener` until the process ends.
pub async fn serve(listener: std::net::TcpListener) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let app = Router::new().route("/", any(endpoint));
    axum_server::from_tcp(listener)?
        .serve(app.into_make_service())
        .await
}

async fn endpoint(ws: Result<Upgrade, NotUpgrade>) -> Response {
    match ws {
        Ok(ws) => ws.on_upgrade(echo),
        Err(e) => e.into_response(),
    }
}

async fn echo(mut io: Socket) {
    let mut decoder = Decoder::new(Limits {
        max_frame: ECHO_MAX_MESSAGE,
        max_message: ECHO_MAX_MESSAGE,
    });
    let mut rbuf = BytesMut::new();
    let mut wbuf = BytesMut::new();
    loop {
        let mut close = None;
        loop {
            match decoder.decode(&mut rbuf) {
                Ok(None) => break,
                Ok(Some(Msg::Text(b))) => frame::write_frame(&mut wbuf, Opcode::Text, &b),
                Ok(Some(Msg::Binary(b))) => frame::write_frame(&mut wbuf, Opcode::Binary, &b),
                Ok(Some(Msg::Ping(p))) => frame::write_frame(&mut wbuf, Opcode::Pong, &p),
                Ok(Some(Msg::Pong(_))) => {}
                Ok(Some(Msg::Close(_))) => {
                    close = Some((1000, String::new()));
                    break;
                }
                Err(e) => {
                    close = Some((e.close_code(), e.reason()));
                    break;
                }
            }
        }
        if let Some((code, reason)) = &close {
            frame::write_frame(
                &mut wbuf,
                Opcode::Close,
                &frame::close_payload(*code, reason),
            );
        }
        if !wbuf.is_empty() {
            if io.write_all(&wbuf).await.is_err() {
                return;
            }
            wbuf.clear();
        }
        if close.is_some() {
            // The server closes the TCP connection first (RFC 6455 §7.1.1).
            let _ = io.shutdown().await;
            return;
        }
        rbuf.reserve(64 * 1024);
        match io.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
