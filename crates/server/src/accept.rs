//! Every accepted socket is counted and on a clock from the moment it is accepted.
//!
//! The connection limits (`server.max_connections`, `security.max_connections_per_ip`,
//! `security.new_connections_per_ip_per_second`) count sockets, not WebSockets: a socket that never sends a byte, or never finishes
//! its upgrade, holds a slot like any other, so silent sockets cannot exhaust the
//! process's descriptors behind the limits' back. A socket over a limit is answered at
//! once with an HTTP status (503 or 429; plain connections only, a TLS one is closed) and
//! closed.
//!
//! hyper's own header timeout starts only once it reads a request head, after the
//! HTTP/1-or-2 detection in front of it has seen enough bytes; a socket that sends nothing
//! (or one byte of the HTTP/2 preface) would wait there forever. [`Guarded`] closes such a
//! socket when `server.header_read_timeout` passes before the first bytes tell the
//! protocol; from there hyper's header timeout takes over.

use std::{
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum_server::accept::Accept;
use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    time::Sleep,
};

/// Open sockets on the main port, in total and per client IP, and upgraded WebSockets.
#[derive(Debug, Default)]
pub struct ConnCounts {
    sockets: AtomicUsize,
    per_ip: DashMap<IpAddr, usize>,
    websockets: AtomicUsize,
}

impl ConnCounts {
    /// Open WebSocket connections.
    pub fn websockets(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }

    /// Open sockets (HTTP requests, upgrades in progress and WebSockets).
    pub fn sockets(&self) -> usize {
        self.sockets.load(Ordering::Relaxed)
    }

    /// Takes a socket slot for `ip`, or says which limit is reached.
    fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max: usize,
        per_ip_max: usize,
    ) -> Result<SocketSlot, Refusal> {
        if self.sockets.fetch_add(1, Ordering::Relaxed) >= max {
            self.sockets.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Total);
        }
        let mut n = self.per_ip.entry(ip).or_insert(0);
        if per_ip_max > 0 && *n >= per_ip_max {
            drop(n);
            self.sockets.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::PerIp);
        }
        *n += 1;
        Ok(SocketSlot {
            counts: self.clone(),
            ip,
        })
    }

    /// Counts an upgraded WebSocket until the returned slot is dropped.
    pub(crate) fn websocket(self: &Arc<Self>, endpoint: &'static str) -> WsSlot {
        self.websockets.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("signal_connections", "endpoint" => endpoint).increment(1.0);
        WsSlot {
            counts: self.clone(),
            endpoint,
        }
    }
}

/// Which limit refused a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerIp,
    Rate,
}

impl Refusal {
    fn response(self) -> &'static [u8] {
        match self {
            Self::Total => {
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 36\r\nconnection: close\r\n\r\n{\"error\":\"connection limit reached\"}"
            }
            Self::PerIp => {
                b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\ncontent-length: 48\r\nconnection: close\r\n\r\n{\"error\":\"too many connections from this address\"}"
            }
            Self::Rate => {
                b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: 52\r\nconnection: close\r\n\r\n{\"error\":\"too many new connections from this address\"}"
            }
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerIp => "per_ip",
            Self::Rate => "per_ip_rate",
        }
    }
}

/// A socket's place in the counts, released when the socket closes.
#[derive(Debug)]
pub(crate) struct SocketSlot {
    counts: Arc<ConnCounts>,
    ip: IpAddr,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        self.counts.sockets.fetch_sub(1, Ordering::Relaxed);
        self.counts.per_ip.remove_if_mut(&self.ip, |_, n| {
            *n -= 1;
            *n == 0
        });
    }
}

/// A WebSocket's place in the counts.
pub(crate) struct WsSlot {
    counts: Arc<ConnCounts>,
    endpoint: &'static str,
}

impl Drop for WsSlot {
    fn drop(&mut self) {
        self.counts.websockets.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("signal_connections", "endpoint" => self.endpoint).decrement(1.0);
    }
}

/// The acceptor of the main port: counts the socket against the limits, sets
/// `TCP_NODELAY`, and puts it on the first-bytes clock.
#[derive(Clone)]
pub(crate) struct Admit {
    pub(crate) counts: Arc<ConnCounts>,
    pub(crate) max_connections: usize,
    pub(crate) max_per_ip: usize,
    pub(crate) first_bytes_timeout: Duration,
    /// Refusals are answered with an HTTP status (not on TLS sockets).
    pub(crate) answer_refusals: bool,
    /// New sockets per second per IP (`security.new_connections_per_ip_per_second`).
    pub(crate) rate: Option<Arc<NewConnectionRate>>,
}

/// The per-IP rate of new sockets: a token bucket per address, forgotten once full again.
pub(crate) struct NewConnectionRate {
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicUsize,
}

impl NewConnectionRate {
    pub(crate) fn new(per_second: u32) -> Option<Arc<Self>> {
        let n = std::num::NonZeroU32::new(per_second)?;
        Some(Arc::new(Self {
            limiter: governor::RateLimiter::keyed(governor::Quota::per_second(n)),
            checks: AtomicUsize::new(0),
        }))
    }

    fn allows(&self, ip: IpAddr) -> bool {
        // Addresses whose buckets are full again are dropped now and then, so the map
        // holds only the addresses seen lately.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter.check_key(&ip).is_ok()
    }
}

impl<S: Send + 'static> Accept<TcpStream, S> for Admit {
    type Stream = Guarded<TcpStream>;
    type Service = S;
    type Future = BoxFuture<'static, io::Result<(Self::Stream, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let peer = stream.peer_addr()?;
            let admitted = match &this.rate {
                Some(rate) if !rate.allows(peer.ip()) => Err(Refusal::Rate),
                _ => this
                    .counts
                    .admit(peer.ip(), this.max_connections, this.max_per_ip),
            };
            match admitted {
                Ok(slot) => {
                    // Signaling messages are small and latency-bound: no Nagle delay.
                    stream.set_nodelay(true)?;
                    Ok((
                        Guarded::new(stream, slot, this.first_bytes_timeout),
                        service,
                    ))
                }
                Err(refusal) => {
                    metrics::counter!("signal_connections_refused_total", "reason" => refusal.label())
                        .increment(1);
                    tracing::debug!(%peer, reason = refusal.label(), "connection refused");
                    if this.answer_refusals {
                        refuse(stream, refusal).await;
                    }
                    Err(io::Error::other(refusal.label()))
                }
            }
        })
    }
}

/// Answers a refused socket and closes it, reading (and dropping) what the client sent
/// for a moment so the close does not reset the answer away.
async fn refuse(mut stream: TcpStream, refusal: Refusal) {
    let answer = async {
        stream.write_all(refusal.response()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// The HTTP/2 connection preface: while what a socket sent is a prefix of it, the
/// protocol detection in front of hyper keeps waiting.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// An accepted socket with its slot in the counts and, until its first bytes tell the
/// protocol, a deadline.
pub(crate) struct Guarded<T> {
    io: T,
    /// Armed from accept until the first bytes that are not a prefix of the HTTP/2
    /// preface (or all of it) arrive; then dropped.
    deadline: Option<Pin<Box<Sleep>>>,
    matched: usize,
    _slot: SocketSlot,
}

impl<T> Guarded<T> {
    fn new(io: T, slot: SocketSlot, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            matched: 0,
            _slot: slot,
        }
    }
}

/// Looks at newly read bytes: whether they still leave the protocol untold (a prefix of
/// the HTTP/2 preface, and not all of it).
fn still_untold(matched: &mut usize, bytes: &[u8]) -> bool {
    for &b in bytes {
        if H2_PREFACE.get(*matched) != Some(&b) {
            return false;
        }
        *matched += 1;
    }
    *matched < H2_PREFACE.len()
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    let fresh = &buf.filled()[before..];
                    if fresh.is_empty() || !still_untold(&mut this.matched, fresh) {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(d) = this.deadline.as_mut()
                    && d.as_mut().poll(cx).is_ready()
                {
                    this.deadline = None;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no request within server.header_read_timeout",
                    )));
                }
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
