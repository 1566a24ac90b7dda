//! A client that resumes by itself: when its connection is lost, it reconnects with
//! backoff and takes its session back (RESUME), so its rooms and every frame sent to it
//! meanwhile survive. Events from every connection come out of one stream, in order.

use std::{sync::Arc, time::Duration};

use signal_protocol::Frame;
use tokio::sync::{mpsc, watch};

use crate::{Client, ClientError, Closed};

/// What a [`Resuming`] client hands out, in order.
#[derive(Debug)]
pub enum Update {
    /// A frame that answers no request (an event, a relayed signal).
    Frame(Frame),
    /// The connection was lost; reconnecting (the first try is after `after`).
    Reconnecting {
        /// How the connection ended.
        closed: Closed,
    },
    /// The session was taken back on a new connection; `replayed` frames the network
    /// had lost were sent again (they follow as [`Update::Frame`]s, with what was queued).
    Resumed {
        /// Frames sent again.
        replayed: u64,
        /// Connections lost so far.
        attempt: u32,
    },
    /// The session is over: closed on purpose by the server, or not resumable any more
    /// (the window ended, the server restarted). Nothing follows.
    Ended {
        /// Why.
        reason: String,
    },
}

/// How a [`Resuming`] client retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    /// The first wait after a lost connection.
    pub first: Duration,
    /// The longest wait between tries.
    pub max: Duration,
    /// Give up after trying this long (the server's `resume_window` by default).
    pub give_up_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
            give_up_after: Duration::from_secs(30),
        }
    }
}

/// A resumable session that reconnects and resumes by itself. Build it with
/// [`Client::resuming`] after [`Client::authenticate_resumable`].
pub struct Resuming {
    current: watch::Receiver<Arc<Client>>,
    updates: mpsc::UnboundedReceiver<Update>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Resuming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Resuming {
    /// The connection in use now, for requests and signals (`send_offer`, `join_room`
    /// ...). After a resume it is a new one; a request in flight when the connection was
    /// lost gets no answer and times out.
    pub fn client(&self) -> Arc<Client> {
        self.current.borrow().clone()
    }

    /// The next update; `None` once [`Update::Ended`] was handed out.
    pub async fn next(&mut self) -> Option<Update> {
        self.updates.recv().await
    }

    /// The next frame within `d`, skipping the connection updates in between.
    pub async fn next_frame_within(&mut self, d: Duration) -> Result<Frame, ClientError> {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match tokio::time::timeout_at(deadline, self.updates.recv()).await {
                Ok(Some(Update::Frame(f))) => return Ok(f),
                Ok(Some(Update::Ended { .. }) | None) => return Err(ClientError::Closed),
                Ok(Some(_)) => {}
                Err(_) => return Err(ClientError::Timeout("a frame")),
            }
        }
    }
}

impl Client {
    /// Turns this (resumable) client into one that resumes by itself on `url` when its
    /// connection is lost, retrying with `backoff`.
    pub fn resuming(mut self, url: &str, backoff: Backoff) -> Result<Resuming, ClientError> {
        if self.resume_token.is_none() {
            return Err(ClientError::Payload(
                "this session is not resumable: CONNECT with authenticate_resumable".into(),
            ));
        }
        let (tx, updates) = mpsc::unbounded_channel();
        let events = std::mem::replace(&mut self.events, mpsc::unbounded_channel().1);
        let closed = self.closed.clone();
        let first = Arc::new(self);
        let (set, current) = watch::channel(first.clone());
        let url = url.to_owned();
        let task = tokio::spawn(drive(first, events, closed, set, tx, url, backoff));
        Ok(Resuming {
            current,
            updates,
            task,
        })
    }
}

/// Forwards one connection's frames until it ends, then resumes on a new one.
async fn drive(
    mut client: Arc<Client>,
    mut events: mpsc::UnboundedReceiver<Frame>,
    mut closed: watch::Receiver<Option<Closed>>,
    set: watch::Sender<Arc<Client>>,
    tx: mpsc::UnboundedSender<Update>,
    url: String,
    backoff: Backoff,
) {
    let mut attempt = 0u32;
    loop {
        while let Some(f) = events.recv().await {
            if tx.send(Update::Frame(f)).is_err() {
                return;
            }
        }
        // The reader ended: how did the connection close?
        let how = loop {
            if let Some(c) = closed.borrow().clone() {
                break c;
            }
            if closed.changed().await.is_err() {
                break Closed {
                    code: 1006,
                    reason: String::new(),
                };
            }
        };
        // Closed on purpose by the server: the session is over (1000: DISCONNECT, a
        // room the connection was bound to closed, or a RESUME took it elsewhere; 1008:
        // replaced, refused, a slow consumer).
        if matches!(how.code, 1000 | 1008) {
            let _ = tx.send(Update::Ended {
                reason: format!("closed by the server: {} {}", how.code, how.reason),
            });
            return;
        }
        let _ = tx.send(Update::Reconnecting { closed: how });
        attempt += 1;
        let started = tokio::time::Instant::now();
        let mut wait = backoff.first;
        let next = loop {
            tokio::time::sleep(wait).await;
            match client.resume(&url).await {
                Ok(next) => break Some(next),
                // Refused: the session is gone.
                Err(ClientError::Server(e)) => {
                    let _ = tx.send(Update::Ended {
                        reason: format!("resume refused: {} {}", e.error_code, e.error_message),
                    });
                    return;
                }
                // Not reachable yet.
                Err(_) if started.elapsed() < backoff.give_up_after => {
                    wait = (wait * 2).min(backoff.max);
                }
                Err(e) => {
                    let _ = tx.send(Update::Ended {
                        reason: format!("could not resume within {:?}: {e}", backoff.give_up_after),
                    });
                    return;
                }
            }
        };
        let Some((mut next, ack)) = next else { return };
        events = std::mem::replace(&mut next.events, mpsc::unbounded_channel().1);
        closed = next.closed.clone();
        client = Arc::new(next);
        let _ = set.send(client.clone());
        if tx
            .send(Update::Resumed {
                replayed: ack.replayed,
                attempt,
            })
            .is_err()
        {
            return;
        }
    }
}
