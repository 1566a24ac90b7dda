//! Credentials that end on open connections: a session whose credential expires (a JWT,
//! a registered token with an expiry) is warned `expiry_warning` before, and closed when
//! it expires, unless the client hands the server a fresh credential first. The clock
//! skew allowed when a JWT is checked at CONNECT does not extend an open connection.

use std::{sync::Arc, time::Duration};

use chrono::Utc;

use super::{
    Hub,
    event::{CloseReason, Envelope, Event},
    session::Session,
};
use crate::error::CoreError;

/// Longest a watcher sleeps before it looks at its session again (a closed session's
/// watcher ends within this).
const LOOK_AGAIN: Duration = Duration::from_secs(30);

impl Hub {
    /// Watches `session`'s credential in a task of its own: the warning
    /// ([`Event::CredentialExpiring`]) `expiry_warning` before it expires, the close
    /// ([`CloseReason::CredentialExpired`]) when it does, unless a refresh moved the
    /// expiry meanwhile. Ends with the session.
    pub(crate) fn watch_expiry(&self, session: &Arc<Session>) {
        let weak = Arc::downgrade(session);
        let warn_before = i64::try_from(self.inner.cfg.expiry_warning.as_millis()).unwrap_or(0);
        tokio::spawn(async move {
            let mut warned_for: Option<u64> = None;
            loop {
                let (exp, closing) = match weak.upgrade() {
                    Some(s) => (s.grants().expires, s.is_closing()),
                    None => return,
                };
                let Some(exp) = exp.filter(|_| !closing) else {
                    return;
                };
                let exp_ms = i64::try_from(exp).unwrap_or(i64::MAX / 1000) * 1000;
                let left = exp_ms.saturating_sub(Utc::now().timestamp_millis());
                if left <= 0 {
                    if let Some(s) = weak.upgrade()
                        && s.grants().expires == Some(exp)
                    {
                        tracing::info!(client_id = %s.client_id, session_id = %s.id, "credential expired: closing the connection");
                        s.close(CloseReason::CredentialExpired);
                    }
                    continue;
                }
                if warned_for != Some(exp) && left <= warn_before {
                    if let Some(s) = weak.upgrade() {
                        s.deliver(Envelope::new(Event::CredentialExpiring {
                            expires_at: exp_ms / 1000,
                        }));
                    }
                    warned_for = Some(exp);
                    continue;
                }
                let until = if warned_for == Some(exp) {
                    left
                } else {
                    left - warn_before
                };
                let nap = Duration::from_millis(u64::try_from(until.max(1)).unwrap_or(1));
                tokio::time::sleep(nap.min(LOOK_AGAIN)).await;
            }
        });
    }

    /// A token refresh: `token` must authenticate the session's own client; the session
    /// then holds its grants and its expiry (its rooms so far stay; the new grant rules
    /// its next joins). The new expiry, if it has one.
    pub async fn refresh_credential(
        &self,
        session: &Arc<Session>,
        token: &str,
    ) -> Result<Option<i64>, CoreError> {
        if token.is_empty() {
            return Err(CoreError::bad_request(
                "Missing 'auth_token': send the fresh credential",
            ));
        }
        let (_, grants) = self
            .inner
            .auth
            .authenticate_grants(session.client_id.as_str(), token)
            .await?;
        self.check_ban(&session.client_id).await?;
        let expires = grants.expires.and_then(|e| i64::try_from(e).ok());
        if expires.is_some_and(|e| e <= Utc::now().timestamp()) {
            return Err(CoreError::unauthorized(
                "Invalid authentication token: the fresh credential has expired already",
            ));
        }
        let watched = session.grants().expires.is_some();
        session.set_grants(grants);
        if expires.is_some() && !watched {
            self.watch_expiry(session);
        }
        tracing::debug!(client_id = %session.client_id, ?expires, "credential refreshed");
        Ok(expires)
    }
}
