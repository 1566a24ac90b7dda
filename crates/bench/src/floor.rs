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
    /// Index → (connection id, outbound queue). A connection id is unique for the
    /// process's life, so a connection that ends after another took its index (a
    /// client that reconnected, the next run against the same floor) leaves the newer
    /// one's entries alone.
    conns: RwLock<HashMap<u32, (u64, mpsc::Sender<Bytes>)>>,
    rooms: RwLock<HashMap<String, Vec<(u64, u32)>>>,
    next_id: std::sync::atomic::AtomicU64,
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
            let id = reg
                .next_id
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (tx, mut rx) = mpsc::channel::<Bytes>(QUEUE);
            let _ = tx.try_send(Bytes::copy_from_slice(&index.to_be_bytes()));
            if let Ok(mut m) = reg.conns.write() {
                m.insert(index, (id, tx));
            }
            if let Some(r) = &room
                && let Ok(mut rooms) = reg.rooms.write()
            {
                rooms.entry(r.clone()).or_default().push((id, index));
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
                        for (m_id, m) in members.into_iter().filter(|(m_id, _)| *m_id != id) {
                            if let Some((c_id, q)) = conns.get(&m)
                                && *c_id == m_id
                            {
                                let _ = q.try_send(b.clone());
                            }
                        }
                    }
                } else if let Ok(conns) = reg.conns.read()
                    && let Some((_, q)) = conns.get(&to)
                {
                    let _ = q.try_send(b);
                }
            }
            if let Ok(mut m) = reg.conns.write()
                && m.get(&index).is_some_and(|(c_id, _)| *c_id == id)
            {
                m.remove(&index);
            }
            if let Some(r) = &room
                && let Ok(mut rooms) = reg.rooms.write()
                && let Some(v) = rooms.get_mut(r)
            {
                v.retain(|(m_id, _)| *m_id != id);
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

    async fn open(
        addr: std::net::SocketAddr,
        path: &str,
    ) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>
    {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
            .await
            .expect("connects");
        let welcome = ws.next().await.expect("welcome").expect("welcome frame");
        assert_eq!(welcome.into_data().len(), 4);
        ws
    }

    /// A connection that ends after a newer one took its index must not take the newer
    /// one out of the relay (a second run against the same floor lost messages so).
    #[tokio::test]
    async fn an_old_connection_ending_leaves_the_newer_one_with_its_index() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener));
        let mut old = open(addr, "/0?room=r").await;
        let mut new = open(addr, "/0?room=r").await;
        let mut sender = open(addr, "/1?room=r").await;
        old.close(None).await.expect("close");
        while old.next().await.is_some() {}
        // Let the floor run the old connection's clean-up.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        for to in [0u32, u32::MAX] {
            let mut msg = to.to_be_bytes().to_vec();
            msg.extend_from_slice(b"hello");
            sender
                .send(Message::Binary(msg.into()))
                .await
                .expect("send");
            let got = tokio::time::timeout(std::time::Duration::from_secs(5), new.next())
                .await
                .expect("the newer connection still gets messages")
                .expect("frame")
                .expect("frame");
            assert_eq!(&got.into_data()[4..], b"hello");
        }
    }
}
