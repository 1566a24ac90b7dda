//! The WebSocket layer: the HTTP/1.1 upgrade (RFC 6455 §4) on hyper's upgrade machinery,
//! and the framing ([`frame`]) the connection driver reads and writes with.
//!
//! The server owns its framing instead of going through tungstenite's `WebSocket` so a
//! connection holds no buffer while it is idle: tungstenite keeps a read buffer (and a
//! write buffer once used) for the connection's whole life, which at tens of thousands
//! of idle signaling connections is most of the server's memory. Here the read buffer
//! exists only while bytes are in it, and the write buffer only while bytes wait for the
//! socket. tungstenite stays the reference: the framing tests check against it, and the
//! integration tests' clients are tokio-tungstenite (and Chromium in the browser test).

pub(crate) mod close;
pub(crate) mod frame;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;

/// The byte stream of an upgraded connection.
pub(crate) type Socket = TokioIo<Upgraded>;

/// One data message from a client.
#[derive(Debug)]
pub(crate) enum Message {
    /// A text message (UTF-8, checked).
    Text(Text),
    /// A binary message.
    Binary(Bytes),
}

/// The payload of a text message: bytes known to be UTF-8.
#[derive(Debug, Clone)]
pub(crate) struct Text(Bytes);

impl Text {
    /// Wraps bytes the decoder checked are UTF-8.
    pub(crate) fn new(b: Bytes) -> Self {
        Self(b)
    }

    /// The text. (The decoder checked it is UTF-8; the check here cannot fail.)
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A valid WebSocket upgrade request, ready to be answered with 101.
pub(crate) struct Upgrade {
    on_upgrade: OnUpgrade,
    accept: HeaderValue,
}

/// The request is not a WebSocket upgrade (or not one this server speaks).
#[derive(Debug)]
pub(crate) struct NotUpgrade(pub(crate) &'static str);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = NotUpgrade;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, NotUpgrade> {
        if parts.method != Method::GET {
            return Err(NotUpgrade("a WebSocket upgrade is a GET request"));
        }
        let h = &parts.headers;
        if !has_token(h, header::CONNECTION, "upgrade") {
            return Err(NotUpgrade("missing 'Connection: upgrade'"));
        }
        if !has_token(h, header::UPGRADE, "websocket") {
            return Err(NotUpgrade("missing 'Upgrade: websocket'"));
        }
        if h.get(header::SEC_WEBSOCKET_VERSION)
            .map(HeaderValue::as_bytes)
            != Some(b"13")
        {
            return Err(NotUpgrade(
                "unsupported Sec-WebSocket-Version (this server speaks 13)",
            ));
        }
        let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
            return Err(NotUpgrade("missing Sec-WebSocket-Key"));
        };
        let accept = HeaderValue::from_str(&frame::accept_key(key.as_bytes()))
            .map_err(|_| NotUpgrade("invalid Sec-WebSocket-Key"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotUpgrade("this connection cannot be upgraded"))?;
        Ok(Self { on_upgrade, accept })
    }
}

impl IntoResponse for NotUpgrade {
    fn into_response(self) -> Response {
        (
            StatusCode::UPGRADE_REQUIRED,
            [
                (header::UPGRADE, "websocket"),
                (header::SEC_WEBSOCKET_VERSION, "13"),
            ],
            format!("{}\n", self.0),
        )
            .into_response()
    }
}

impl Upgrade {
    /// Answers 101 and runs `serve` on the upgraded connection in its own task (the
    /// connection's only task).
    pub(crate) fn on_upgrade<F, Fut>(self, serve: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        // The connection's task is spawned once the upgrade completes, so it holds the
        // connection's future alone, without the upgrade's.
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    tokio::spawn(serve(TokioIo::new(upgraded)));
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, self.accept),
            ],
        )
            .into_response()
    }
}

/// Whether the comma-separated header `name` lists `token` (case-insensitive).
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}
