//! Webhooks: each event is POSTed as JSON to one URL, signed; a 2xx answer is the
//! acknowledgement, anything else (or no answer in time) a failure the publisher retries.
//!
//! The signature header is `X-Signal-Manager-Signature: t=<unix seconds>,v1=<hex>`, where
//! `<hex>` is HMAC-SHA256 keyed with the webhook secret over `"<t>.<body>"`: a receiver
//! recomputes it over the raw body it got and compares in constant time, and refuses a
//! `t` too far from its clock (replays). `X-Signal-Manager-Event-Id` and
//! `X-Signal-Manager-Event-Type` repeat the event's `id` and `type`.

use std::time::Duration;

use async_trait::async_trait;
use hmac::{KeyInit, Mac};
use signal_core::events::{Event, Events, SinkError};

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Signal-Manager-Signature";

/// Where and how to POST.
#[derive(Clone)]
pub struct WebhookConfig {
    /// `http(s)://...`
    pub url: String,
    /// The HMAC key; never logged.
    pub secret: String,
    /// How long one POST may take.
    pub timeout: Duration,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The webhook sink.
#[derive(Debug)]
pub struct Webhook {
    cfg: WebhookConfig,
    http: reqwest::Client,
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    // HMAC takes a key of any length: `new_from_slice` cannot fail for it.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    /// A sink POSTing to `cfg.url`.
    pub fn new(cfg: WebhookConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Self { cfg, http })
    }
}

#[async_trait]
impl Events for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        let body = serde_json::to_vec(event)
            .map_err(|e| SinkError(format!("encoding event {}: {e}", event.id)))?;
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let answer = self
            .http
            .post(&self.cfg.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature(&self.cfg.secret, t, &body))
            .header("X-Signal-Manager-Event-Id", event.id.to_string())
            .header("X-Signal-Manager-Event-Type", event.kind.name())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                SinkError(if e.is_timeout() {
                    format!("no answer in {:?}", self.cfg.timeout)
                } else {
                    format!("could not POST: {}", without_url(&e))
                })
            })?;
        let status = answer.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(SinkError(format!("HTTP {}", status.as_u16())))
        }
    }
}

/// A reqwest error's text without its URL (which may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_time_dot_body() {
        // Computed independently:
        // printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature("secret", 1_700_000_000, br#"{"a":1}"#),
            "t=1700000000,v1=\
             49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }
}
