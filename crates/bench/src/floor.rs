//! The floor: the least a WebSocket relay on this stack (tokio + tokio-tungstenite) has to
//! do. A client connects to `/INDEX` (optionally `?room=NAME`), gets a 4-byte welcome
//! (its index), and sends binary messages `[u32 target index, big-endian][payload]`; the
//! message goes unchanged to the connection with that index, or to every other member
//! of the sender's room when the index is `u32::MAX`. No parsing, no auth, no state beyond
//! a map from index to outbound queue. Same buffer sizes and the same writer batching
//! (queue → feed → one flush) as signal-manager.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_tungstenite::{
    accept_hdr_async_with_config,
    tungstenite::{
        Message,
        handshake::server::{Request, Response},
        protocol::WebSocketConfig,
    },
};

#[derive(Default)]
struct Registry {
    conns: RwLock<HashMap<u32, mpsc::Sender<Bytes>>>,
    rooms: RwLock<HashMap<String, Vec<u32>>>,
}

/// Per-connection outbound queue length (as signal-manager's `server.outbound_queue`).
const QUEUE: usize = 256;

/// Serves the floor relay on `listener` until the process ends.
pub async fn serve(listener: TcpListener) -> std::io::Result<()> {
    serve_with(listener, true).await
}

/// [`serve`], choosing whether accepted sockets get `TCP_NODELAY` (`false` leaves
/// Nagle's algorithm on, as axum-server's default acceptor does).
pub async fn serve_with(listener: TcpListener, nodelay: bool) -> std::io::Result<()> {
    let reg = Arc::new(Registry::default());
    loop {
        let (tcp, _) = listener.accept().await?;
        if nodelay {
            let _ = tcp.set_nodelay(true);
        }
        let reg = reg.clone();
        tokio::spawn(async move {
            let mut path = String::new();
            #[allow(clippy::result_large_err)] // the signature tungstenite's callback requires
            let cb = |req: &Request, resp: Response| {
                path = req.uri().to_string();
                Ok(resp)
            };
            let cfg = WebSocketConfig::default()
                .read_buffer_size(8192)
                .write_buffer_size(8192)
                .max_message_size(Some(65556))
                .max_frame_size(Some(65556));
            let Ok(ws) = accept_hdr_async_with_config(tcp, cb, Some(cfg)).await else {
                return;
            };
            let (index, room) = parse_path(&path);
            let Some(index) = index else { return };
            let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
            let _ = tx.try_send(Bytes::copy_from_slice(&index.to_be_bytes()));
            if let Ok(mut m) = reg.conns.write() {
                m.insert(index, tx);
            }
            if let Some(r) = &room
                && let Ok(mut rooms) = reg.rooms.write()
            {
                rooms.entry(r.clone()).or_default().push(index);
            }
            let (mut sink, mut stream) = ws.split();
            let writer = tokio::spawn(async move {
                while let Some(b) = rx.recv().await {
                    if sink.feed(Message::Binary(b)).await.is_err() {
                        return;
                    }
                    let mut n = 1;
                    while n < 64 {
                        match rx.try_recv() {
                            Ok(b) => {
                                if sink.feed(Message::Binary(b)).await.is_err() {
                                    return;
                                }
                                n += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
            });
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Binary(b) = msg else {
                    if msg.is_close() {
                        break;
                    }
                    continue;
                };
                if b.len() < 4 {
                    continue;
                }
                let to = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if to == u32::MAX {
                    let members = room
                        .as_ref()
                        .and_then(|r| reg.rooms.read().ok()?.get(r).cloned())
                        .unwrap_or_default();
                    if let Ok(conns) = reg.conns.read() {
                        for m in members.into_iter().filter(|m| *m != index) {
                            if let Some(q) = conns.get(&m) {
                                let _ = q.try_send(b.clone());
                            }
                        }
                    }
                } else if let Ok(conns) = reg.conns.read()
                    && let Some(q) = conns.get(&to)
                {
                    let _ = q.try_send(b);
                }
            }
            if let Ok(mut m) = reg.conns.write() {
                m.remove(&index);
            }
            if let Some(r) = &room
                && let Ok(mut rooms) = reg.rooms.write()
                && let Some(v) = rooms.get_mut(r)
            {
                v.retain(|m| *m != index);
                if v.is_empty() {
                    rooms.remove(r);
                }
            }
            writer.abort();
        });
    }
}

fn parse_path(uri: &str) -> (Option<u32>, Option<String>) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let index = path.trim_start_matches('/').parse::<u32>().ok();
    let room = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("room="))
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    (index, room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(parse_path("/12"), (Some(12), None));
        assert_eq!(parse_path("/3?room=a"), (Some(3), Some("a".into())));
        assert_eq!(parse_path("/x"), (None, None));
    }
}
