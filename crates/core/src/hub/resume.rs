//! Resumable sessions: a session whose connection drops waits for a RESUME for the
//! resume window, in its rooms, its queue taking what is sent to it; a new connection
//! that brings its token takes it back, with the frames the old connection sent that the
//! client did not receive sent again first.

use std::{sync::Arc, time::Duration};

use super::{
    Hub, Session,
    event::{CloseReason, Envelope, Event, Outbound},
    outbox::RewindError,
};
use crate::error::{CoreError, ErrorKind};

/// How long a RESUME waits for the session's old connection to let go of it.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

/// A fresh resume token: two random (v4) UUIDs, 244 random bits, as 64 hex digits.
pub(super) fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// RESUME, in core terms.
#[derive(Debug, Clone)]
pub struct ResumeParams {
    /// The client whose session it is, when the connection says (the binary protocol's
    /// RESUME, a JSON dialect's credential).
    pub client_id: Option<String>,
    /// The wire formats the connection resuming speaks: a session is resumed in its own.
    pub formats: Option<&'static [super::Format]>,
    /// The token from CONNECT_ACK or the last RESUME_ACK.
    pub token: String,
    /// The resuming connection's queue: a session taken over from another node is
    /// given it.
    pub outbox: Option<Arc<super::Outbox>>,
    /// How many frames the client received on the session.
    pub last_seq: u64,
}

/// What a RESUME took back.
#[derive(Debug, Clone)]
pub struct Resumed {
    /// The session, now on the caller's connection (its queue is the caller's to drain).
    pub session: Arc<Session>,
    /// The token for the next resume.
    pub token: String,
    /// Frames sent again.
    pub replayed: u64,
    /// A session taken over from another node: what to put at the front of its queue
    /// (the frames kept in the cluster, then the messages its node was sent).
    pub(super) restore: Option<Vec<Outbound>>,
}

impl Hub {
    /// Seconds a dropped resumable session waits for its RESUME (0: resume is off).
    pub fn resume_window(&self) -> Duration {
        self.inner.cfg.resume_window
    }

    /// The connection of a resumable session dropped: it stays in its rooms, the other
    /// members are told it is reconnecting, and unless a RESUME takes it back within the
    /// window it leaves with `reason`, as it would have at once. Overflowing its queue
    /// meanwhile ends the window early (reason `resume buffer overflow`).
    /// `announce`: tell the rooms (not when a RESUME is already taking it back).
    pub async fn park(&self, session: &Arc<Session>, reason: &str, announce: bool) {
        let Some(r) = session.resumable() else {
            self.disconnect(session, reason, false).await;
            return;
        };
        let park = r.parks.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        *r.parked.lock() = Some(park);
        session.reopen();
        r.on_park.notify_waiters();
        let window = self.inner.cfg.resume_window;
        tracing::debug!(client_id = %session.client_id, session_id = %session.id, window = window.as_secs(), "connection dropped: waiting for a resume");
        for room_id in session.rooms().into_iter().filter(|_| announce) {
            let Some(room) = self.inner.rooms.get(&room_id).map(|r| r.clone()) else {
                continue;
            };
            let env = Envelope::new(Event::PeerReconnecting {
                room: room_id.clone(),
                client: session.client_id.clone(),
                window: window.as_secs(),
            });
            for m in &room.state.read().members {
                if !Arc::ptr_eq(&m.session, session) {
                    m.session.deliver(env.clone());
                }
            }
            self.tell_other_nodes(&room_id, Some(&session.client_id), &env)
                .await;
        }
        let hub = self.clone();
        let session = session.clone();
        let reason = reason.to_owned();
        tokio::spawn(async move {
            let closed = tokio::select! {
                () = tokio::time::sleep(window) => None,
                r = session.closed() => Some(r),
            };
            // Still this park (not resumed meanwhile): the window ends.
            let still = session
                .resumable()
                .is_some_and(|r| *r.parked.lock() == Some(park));
            if !still {
                return;
            }
            let why = match closed {
                None => {
                    metrics::counter!("signal_resume_windows_expired_total").increment(1);
                    reason.as_str()
                }
                Some(CloseReason::SlowConsumer(_)) => {
                    metrics::counter!("signal_resume_overflows_total").increment(1);
                    "resume buffer overflow"
                }
                // Replaced by a new CONNECT, or the server drains.
                Some(other) => other.leave_reason(),
            };
            tracing::debug!(client_id = %session.client_id, session_id = %session.id, reason = why, "resume window ended");
            hub.disconnect(&session, why, false).await;
        });
    }

    /// Ends every session waiting for a RESUME (the server drains: nobody would resume
    /// them here). Each leaves its rooms with reason `server shutting down`; in a
    /// cluster, each is handed to the cluster instead ([`hand_off`](Self::hand_off)).
    pub async fn end_parked(&self) {
        let parked: Vec<Arc<Session>> = self
            .inner
            .resumable
            .iter()
            .filter(|e| e.value().is_parked())
            .map(|e| e.value().clone())
            .collect();
        for s in parked {
            if self.hands_off() {
                self.hand_off(&s).await;
                continue;
            }
            if let Some(r) = s.resumable() {
                r.parked.lock().take();
            }
            self.disconnect(&s, "server shutting down", false).await;
        }
    }

    /// RESUME: takes a session back for a new connection. A session whose old connection
    /// is still open (the server has not seen it drop) is taken from it: that connection
    /// is closed first.
    pub async fn resume(&self, p: ResumeParams) -> Result<Resumed, CoreError> {
        let unknown = || {
            CoreError::new(
                ErrorKind::Unauthenticated,
                "Unknown or expired resume_token: CONNECT anew",
            )
        };
        let local = self
            .inner
            .resumable
            .get(p.token.as_str())
            .map(|s| s.value().clone());
        let session = match local {
            Some(s) => s,
            None if self.inner.router.resumes_across_nodes() => {
                return self.resume_elsewhere(p).await;
            }
            None => return Err(unknown()),
        };
        if p.client_id
            .as_deref()
            .is_some_and(|c| c != session.client_id.as_str())
        {
            return Err(unknown());
        }
        self.check_ban(&session.client_id).await?;
        if let (Some(want), Some(have)) = (p.formats, session.format())
            && !want.contains(&have)
        {
            return Err(CoreError::bad_request(format!(
                "This session speaks {}: resume it on the same endpoint",
                have.label()
            )));
        }
        let Some(r) = session.resumable() else {
            return Err(unknown());
        };
        if !session.is_parked() {
            // The old connection still holds it: close that one, and wait until it lets go.
            let parked = r.on_park.notified();
            tokio::pin!(parked);
            parked.as_mut().enable();
            session.close(CloseReason::Resumed);
            if !session.is_parked()
                && tokio::time::timeout(TAKEOVER_WAIT, parked).await.is_err()
                && !session.is_parked()
            {
                return Err(CoreError::new(
                    ErrorKind::Conflict,
                    "The session's old connection did not let go of it; retry",
                ));
            }
        }
        // Take it: whoever holds the park first wins; the window's timer finds it gone.
        if r.parked.lock().take().is_none() {
            return Err(unknown());
        }
        session.reopen();
        let token = new_token();
        let old = std::mem::replace(&mut *r.token.lock(), token.clone());
        self.inner.resumable.remove(old.as_str());
        self.inner.resumable.insert(token.clone(), session.clone());
        if session.outbox().mirror().is_some() {
            self.keep_in_cluster(&session, &token, Some(&old), None)
                .await;
        }
        metrics::counter!("signal_resumes_total").increment(1);
        Ok(Resumed {
            session,
            token,
            replayed: 0,
            restore: None,
        })
    }

    /// After [`resume`](Self::resume): puts the dialect's acknowledgement (`ack`, given
    /// the session, its new token and how many frames are sent again; not counted) and
    /// then the frames sent after `last_seq` at the front of the session's queue. A client
    /// that missed frames no longer kept (or claims frames never sent), or an
    /// acknowledgement that cannot be made, ends the session as its window would have:
    /// it is never left taken and unattached.
    pub async fn replay(
        &self,
        resumed: &mut Resumed,
        last_seq: u64,
        ack: impl FnOnce(&Session, &str, u64) -> Result<Outbound, CoreError>,
    ) -> Result<(), CoreError> {
        let outbox = resumed.session.outbox().clone();
        if let Some(items) = resumed.restore.take() {
            let n = items.len() as u64;
            let first = match ack(&resumed.session, &resumed.token, n) {
                Ok(first) => first,
                Err(e) => {
                    outbox.release();
                    self.disconnect(&resumed.session, "resume failed", false)
                        .await;
                    return Err(e);
                }
            };
            outbox.restore(last_seq, first, items);
            resumed.replayed = n;
            metrics::counter!("signal_resume_replayed_total").increment(n);
            tracing::info!(client_id = %resumed.session.client_id, session_id = %resumed.session.id, replayed = n, "session resumed from another node");
            return Ok(());
        }
        let missed = outbox.sent_count().saturating_sub(last_seq);
        let first = match ack(&resumed.session, &resumed.token, missed) {
            Ok(first) => first,
            Err(e) => {
                self.disconnect(&resumed.session, "resume failed", false)
                    .await;
                return Err(e);
            }
        };
        match outbox.rewind(last_seq, first) {
            Ok(n) => {
                resumed.replayed = n;
                metrics::counter!("signal_resume_replayed_total").increment(n);
                tracing::debug!(client_id = %resumed.session.client_id, session_id = %resumed.session.id, replayed = n, "session resumed");
                Ok(())
            }
            Err(e) => {
                let msg = match e {
                    RewindError::Ahead { sent } => format!(
                        "last_seq {last_seq} is past the {sent} frames sent on this session"
                    ),
                    RewindError::Dropped { oldest } => format!(
                        "frames after {last_seq} are no longer kept (the oldest kept is {oldest}): CONNECT anew"
                    ),
                };
                metrics::counter!("signal_resume_overflows_total").increment(1);
                self.disconnect(&resumed.session, "resume buffer overflow", false)
                    .await;
                Err(CoreError::new(ErrorKind::Conflict, msg))
            }
        }
    }
}
