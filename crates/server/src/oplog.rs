//! The operator's log: every WebSocket connection opened and closed (with its peer
//! address and why it closed) and every refused credential, at `info`, under the
//! `signal_manager::access` target. An attack must not flood the log: at most
//! [`LINES_PER_SECOND`] of these lines are written per second, process-wide; the first
//! line after a suppressed stretch says how many were left out (`suppressed`).

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use signal_core::{CoreError, ErrorCode, hub::Session};

/// Most access lines written per second.
pub const LINES_PER_SECOND: u64 = 100;

/// The current second (since the Unix epoch) and the lines written in it, packed: the
/// second in the high 44 bits, the count in the low 20.
static WINDOW: AtomicU64 = AtomicU64::new(0);
/// Lines left out since the last one written.
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);

const COUNT_BITS: u32 = 20;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// Whether a line may be written now; `Some(n)`: yes, after `n` were left out.
fn admit() -> Option<u64> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut cur = WINDOW.load(Ordering::Relaxed);
    loop {
        let (second, count) = (cur >> COUNT_BITS, cur & COUNT_MASK);
        let next = if second == now {
            if count >= LINES_PER_SECOND {
                SUPPRESSED.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("signal_access_log_suppressed_total").increment(1);
                return None;
            }
            cur + 1
        } else {
            (now << COUNT_BITS) | 1
        };
        match WINDOW.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Some(SUPPRESSED.swap(0, Ordering::Relaxed)),
            Err(seen) => cur = seen,
        }
    }
}

/// A session opened on a connection.
pub(crate) fn opened(peer: SocketAddr, dialect: &'static str, session: &Session, wire: &str) {
    if let Some(suppressed) = admit() {
        tracing::info!(
            target: "signal_manager::access",
            %peer,
            dialect,
            wire,
            client_id = %session.client_id,
            session_id = %session.id,
            suppressed,
            "connection opened"
        );
    }
}

/// A connection closed: its session's client (if it had one), the close code and why.
pub(crate) fn closed(
    peer: SocketAddr,
    dialect: &'static str,
    session: Option<&Session>,
    code: u16,
    reason: &str,
    parked: bool,
) {
    if let Some(suppressed) = admit() {
        let reason = if reason.is_empty() {
            match code {
                1000 => "closed by the client",
                1006 => "connection lost",
                _ => "",
            }
        } else {
            reason
        };
        tracing::info!(
            target: "signal_manager::access",
            %peer,
            dialect,
            client_id = session.map(|s| s.client_id.as_str()),
            session_id = session.map(|s| tracing::field::display(s.id)),
            code,
            reason,
            resumable = parked,
            suppressed,
            "connection closed"
        );
    }
}

/// A credential (or a session) was refused on a connection.
pub(crate) fn refused(peer: SocketAddr, dialect: &'static str, e: &CoreError) {
    if !matches!(
        e.code(),
        ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::BadRequest
    ) {
        return;
    }
    if let Some(suppressed) = admit() {
        tracing::info!(
            target: "signal_manager::access",
            %peer,
            dialect,
            status = e.code().as_u16(),
            reason = %e.message,
            suppressed,
            "credential refused"
        );
    }
}

/// A REST request's credential was refused.
pub(crate) fn refused_http(peer: Option<SocketAddr>, path: &str, reason: &str) {
    if let Some(suppressed) = admit() {
        tracing::info!(
            target: "signal_manager::access",
            peer = peer.map(tracing::field::display),
            path,
            reason,
            suppressed,
            "credential refused"
        );
    }
}
