//! The Cloudflare Realtime HTTPS API: one client per app, each call timed, retried when
//! Cloudflare says it may be, and serialised per session as Cloudflare requires.
//!
//! Paths, schemas and error codes follow the published OpenAPI schema
//! (`realtime-api-2024-05-21.yaml`).

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use signal_core::media::MediaError;

/// How to reach one Cloudflare Realtime app.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `https://rtc.live.cloudflare.com/v1` (no trailing slash needed).
    pub base_url: String,
    /// The app id (public).
    pub app_id: String,
    /// The app secret (bearer token); never logged.
    pub app_secret: String,
    /// How long one HTTP call may take.
    pub timeout: Duration,
    /// Attempts per call (at least 1); only retryable failures are retried.
    pub attempts: u32,
    /// Pause between attempts.
    pub retry_interval: Duration,
}

/// `SessionDescription`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDescription {
    /// `offer` or `answer`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The SDP.
    pub sdp: String,
}

impl SessionDescription {
    /// An offer.
    pub fn offer(sdp: &str) -> Self {
        Self {
            kind: "offer".into(),
            sdp: sdp.to_owned(),
        }
    }

    /// An answer.
    pub fn answer(sdp: &str) -> Self {
        Self {
            kind: "answer".into(),
            sdp: sdp.to_owned(),
        }
    }
}

/// `TrackObject` (with the per-item error fields of responses).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackObject {
    /// `local` (publish) or `remote` (pull another session's track).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The transceiver's mid on this session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    /// The publishing session (remote tracks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The track's name within its publishing session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_name: Option<String>,
    /// Per-item failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Per-item failure, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// `TracksResponse` (also what renegotiate and tracks/close answer).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TracksResponse {
    /// Whole-request failure.
    pub error_code: Option<String>,
    /// Whole-request failure, in words.
    pub error_description: Option<String>,
    /// The SFU must be answered (`renegotiate`) before the next change.
    #[serde(default)]
    pub requires_immediate_renegotiation: bool,
    /// The SFU's answer (publish) or offer (pull).
    pub session_description: Option<SessionDescription>,
    /// One entry per requested track.
    #[serde(default)]
    pub tracks: Vec<TrackObject>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewSessionResponse {
    session_id: Option<String>,
}

/// A failure as the API client sees it, before it becomes a [`MediaError`].
#[derive(Debug)]
enum Failure {
    /// The request did not reach Cloudflare (connect failure): safe to retry.
    Unreachable(String),
    /// No answer in time: not retried (a mutation may have been applied).
    Timeout,
    /// An answer with an error status.
    Status {
        status: StatusCode,
        code: Option<String>,
        description: Option<String>,
    },
    /// A 2xx whose body is not what the schema says.
    Body(String),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Timeout | Self::Body(_) => false,
            Self::Status { status, code, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || code.as_deref().is_some_and(retryable_code)
            }
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Self::Unreachable(_) => "unreachable",
            Self::Timeout => "timeout",
            Self::Status { .. } | Self::Body(_) => "error",
        }
    }

    fn into_media_error(self, op: &str) -> MediaError {
        match self {
            Self::Unreachable(e) => {
                MediaError::Unavailable(format!("Cloudflare {op}: unreachable ({e})"))
            }
            Self::Timeout => MediaError::Timeout(format!("Cloudflare {op}: no answer in time")),
            Self::Body(e) => {
                MediaError::Failed(format!("Cloudflare {op}: unexpected answer ({e})"))
            }
            Self::Status {
                status,
                code,
                description,
            } => {
                let code_text = code.as_deref().unwrap_or("no error code");
                let text = match &description {
                    Some(d) if !d.is_empty() => {
                        format!("Cloudflare {op}: HTTP {} {code_text}: {d}", status.as_u16())
                    }
                    _ => format!("Cloudflare {op}: HTTP {} {code_text}", status.as_u16()),
                };
                if code.as_deref() == Some("invalid_session_description") {
                    MediaError::Refused(text)
                } else if status == StatusCode::SERVICE_UNAVAILABLE
                    || code.as_deref().is_some_and(retryable_code)
                {
                    MediaError::Unavailable(text)
                } else {
                    MediaError::Failed(text)
                }
            }
        }
    }
}

/// Cloudflare's service error codes that say "try again".
fn retryable_code(code: &str) -> bool {
    matches!(
        code,
        "retryable_transient_error"
            | "temporarily_unavailable_error"
            | "transport_unavailable_error"
    )
}

/// A client of one Cloudflare Realtime app.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    config: Arc<ApiConfig>,
    /// One lock per session: Cloudflare rejects overlapping changes to a session (406).
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base_url", &self.config.base_url)
            .field("app_id", &self.config.app_id)
            .finish_non_exhaustive()
    }
}

impl Api {
    /// A client for `config`'s app.
    pub fn new(config: ApiConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            config: Arc::new(config),
            locks: Arc::default(),
        })
    }

    /// The app id.
    pub fn app_id(&self) -> &str {
        &self.config.app_id
    }

    /// Holds `session`'s lock: no other change to the session runs until it is dropped.
    pub async fn lock(&self, session: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .entry(session.to_owned())
            .or_default()
            .clone();
        lock.lock_owned().await
    }

    /// Forgets `session`'s lock (the session is done with).
    pub fn forget(&self, session: &str) {
        let mut locks = self.locks.lock();
        if locks
            .get(session)
            .is_some_and(|l| Arc::strong_count(l) == 1)
        {
            locks.remove(session);
        }
    }

    /// `POST /apps/{appId}/sessions/new`: a new session's id.
    pub async fn new_session(&self) -> Result<String, MediaError> {
        let r: NewSessionResponse = self
            .call("sessions/new", Method::POST, "sessions/new", None)
            .await?;
        r.session_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| MediaError::Failed("Cloudflare sessions/new: no sessionId".into()))
    }

    /// `POST .../sessions/{id}/tracks/new`. The caller holds the session's lock.
    pub async fn tracks_new(
        &self,
        session: &str,
        description: Option<SessionDescription>,
        tracks: Vec<TrackObject>,
    ) -> Result<TracksResponse, MediaError> {
        let mut body = serde_json::Map::new();
        if let Some(d) = description {
            body.insert("sessionDescription".into(), to_value(&d));
        }
        body.insert("tracks".into(), to_value(&tracks));
        let r: TracksResponse = self
            .call(
                "tracks/new",
                Method::POST,
                &format!("sessions/{session}/tracks/new"),
                Some(Value::Object(body)),
            )
            .await?;
        whole_request("tracks/new", &r)?;
        Ok(r)
    }

    /// `PUT .../sessions/{id}/renegotiate` with the endpoint's answer. The caller holds
    /// the session's lock.
    pub async fn renegotiate(&self, session: &str, answer_sdp: &str) -> Result<(), MediaError> {
        let r: TracksResponse = self
            .call(
                "renegotiate",
                Method::PUT,
                &format!("sessions/{session}/renegotiate"),
                Some(serde_json::json!({
                    "sessionDescription": SessionDescription::answer(answer_sdp)
                })),
            )
            .await?;
        whole_request("renegotiate", &r)
    }

    /// `PUT .../sessions/{id}/tracks/close` with `force: true` (no SDP exchange). Tracks
    /// Cloudflare says are already gone count as closed. The caller holds the lock.
    pub async fn close_tracks(&self, session: &str, mids: &[String]) -> Result<(), MediaError> {
        if mids.is_empty() {
            return Ok(());
        }
        let tracks: Vec<Value> = mids.iter().map(|m| serde_json::json!({"mid": m})).collect();
        let r: TracksResponse = self
            .call(
                "tracks/close",
                Method::PUT,
                &format!("sessions/{session}/tracks/close"),
                Some(serde_json::json!({ "tracks": tracks, "force": true })),
            )
            .await?;
        whole_request("tracks/close", &r)?;
        if let Some(t) = r.tracks.iter().find(|t| {
            t.error_code
                .as_deref()
                .is_some_and(|c| c != "close_track_error")
        }) {
            return Err(MediaError::Failed(format!(
                "Cloudflare tracks/close: track {}: {}",
                t.mid.as_deref().unwrap_or("?"),
                t.error_code.as_deref().unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// One call, timed and retried.
    async fn call<T: DeserializeOwned>(
        &self,
        op: &'static str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, MediaError> {
        let url = format!(
            "{}/apps/{}/{path}",
            self.config.base_url.trim_end_matches('/'),
            self.config.app_id
        );
        let attempts = self.config.attempts.max(1);
        let mut attempt = 1;
        loop {
            let started = std::time::Instant::now();
            let result = self.once::<T>(method.clone(), &url, body.as_ref()).await;
            metrics::histogram!("signal_cloudflare_call_seconds", "operation" => op)
                .record(started.elapsed().as_secs_f64());
            let failure = match result {
                Ok(v) => {
                    metrics::counter!("signal_cloudflare_calls_total", "operation" => op, "outcome" => "ok")
                        .increment(1);
                    return Ok(v);
                }
                Err(f) => f,
            };
            metrics::counter!(
                "signal_cloudflare_calls_total",
                "operation" => op,
                "outcome" => failure.outcome()
            )
            .increment(1);
            if !failure.retryable() || attempt >= attempts {
                let e = failure.into_media_error(op);
                tracing::warn!(operation = op, attempt, error = %e, "Cloudflare call failed");
                return Err(e);
            }
            tracing::debug!(operation = op, attempt, failure = ?failure, "Cloudflare call failed; retrying");
            attempt += 1;
            tokio::time::sleep(self.config.retry_interval).await;
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<T, Failure> {
        let mut req = self
            .http
            .request(method, url)
            .bearer_auth(&self.config.app_secret)
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        let exchange = async {
            let resp = req.send().await.map_err(|e| {
                if e.is_timeout() {
                    Failure::Timeout
                } else if e.is_connect() {
                    Failure::Unreachable(e.to_string())
                } else {
                    Failure::Body(e.to_string())
                }
            })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| {
                if e.is_timeout() {
                    Failure::Timeout
                } else {
                    Failure::Body(e.to_string())
                }
            })?;
            Ok::<_, Failure>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.config.timeout, exchange)
            .await
            .map_err(|_| Failure::Timeout)??;
        if !status.is_success() {
            let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(Failure::Status {
                status,
                code: err.error_code,
                description: err.error_description,
            });
        }
        let bytes = if bytes.is_empty() {
            bytes::Bytes::from_static(b"{}")
        } else {
            bytes
        };
        serde_json::from_slice(&bytes).map_err(|e| Failure::Body(e.to_string()))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody {
    error_code: Option<String>,
    error_description: Option<String>,
}

fn to_value<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// A 200 that carries a whole-request error is a failure.
fn whole_request(op: &str, r: &TracksResponse) -> Result<(), MediaError> {
    match &r.error_code {
        Some(code) => {
            let text = format!(
                "Cloudflare {op}: {code}: {}",
                r.error_description.as_deref().unwrap_or_default()
            );
            Err(if code == "invalid_session_description" {
                MediaError::Refused(text)
            } else {
                MediaError::Failed(text)
            })
        }
        None => Ok(()),
    }
}
