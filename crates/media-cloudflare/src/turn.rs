//! TURN credentials from Cloudflare (Realtime TURN): `POST
//! /turn/keys/{keyId}/credentials/generate-ice-servers`, an `iceServers` array ready for
//! `RTCConfiguration`. Port 53 URLs, which browsers block, are dropped.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use serde_json::Value;

/// How to mint Cloudflare TURN credentials.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// `https://rtc.live.cloudflare.com/v1`.
    pub base_url: String,
    /// The TURN key id.
    pub key_id: String,
    /// The TURN key's API token (bearer); never logged.
    pub api_token: String,
    /// How long one call may take.
    pub timeout: Duration,
}

/// One ICE server as Cloudflare hands it out.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IceServer {
    /// `stun:`/`turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN password.
    #[serde(default)]
    pub credential: Option<String>,
}

/// A Cloudflare TURN credential minter.
#[derive(Clone)]
pub struct CloudflareTurn {
    http: reqwest::Client,
    config: Arc<TurnConfig>,
}

impl std::fmt::Debug for CloudflareTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudflareTurn")
            .field("base_url", &self.config.base_url)
            .field("key_id", &self.config.key_id)
            .finish_non_exhaustive()
    }
}

impl CloudflareTurn {
    /// A minter for `config`'s key.
    pub fn new(config: TurnConfig) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .timeout(config.timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            http,
            config: Arc::new(config),
        })
    }

    /// Fresh ICE servers valid for `ttl`: STUN and TURN entries, port 53 URLs dropped.
    pub async fn ice_servers(&self, ttl: Duration) -> Result<Vec<IceServer>, String> {
        let url = format!(
            "{}/turn/keys/{}/credentials/generate-ice-servers",
            self.config.base_url.trim_end_matches('/'),
            self.config.key_id
        );
        let started = std::time::Instant::now();
        let result = self.fetch(&url, ttl).await;
        metrics::histogram!("signal_cloudflare_call_seconds", "operation" => "turn/generate-ice-servers")
            .record(started.elapsed().as_secs_f64());
        metrics::counter!(
            "signal_cloudflare_calls_total",
            "operation" => "turn/generate-ice-servers",
            "outcome" => if result.is_ok() { "ok" } else { "error" }
        )
        .increment(1);
        result
    }

    async fn fetch(&self, url: &str, ttl: Duration) -> Result<Vec<IceServer>, String> {
        let resp = self
            .http
            .post(url)
            .bearer_auth(&self.config.api_token)
            .json(&serde_json::json!({ "ttl": ttl.as_secs().clamp(1, 172_800) }))
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    "Cloudflare TURN: no answer in time".to_owned()
                } else {
                    format!("Cloudflare TURN: unreachable ({e})")
                }
            })?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| {
            format!(
                "Cloudflare TURN: HTTP {}: unreadable answer ({e})",
                status.as_u16()
            )
        })?;
        if !status.is_success() {
            return Err(format!(
                "Cloudflare TURN: HTTP {} {}",
                status.as_u16(),
                body.get("errorCode")
                    .and_then(Value::as_str)
                    .unwrap_or("no error code")
            ));
        }
        // The current endpoint answers an array; the legacy one a single object.
        let servers: Vec<IceServer> = match body.get("iceServers") {
            Some(Value::Array(a)) => serde_json::from_value(Value::Array(a.clone())),
            Some(o @ Value::Object(_)) => serde_json::from_value(o.clone()).map(|s| vec![s]),
            _ => return Err("Cloudflare TURN: no iceServers in the answer".into()),
        }
        .map_err(|e| format!("Cloudflare TURN: iceServers: {e}"))?;
        Ok(servers
            .into_iter()
            .filter_map(|mut s| {
                s.urls.retain(|u| !blocked_port(u));
                (!s.urls.is_empty()).then_some(s)
            })
            .collect())
    }
}

/// A URL on port 53, which browsers refuse to use.
fn blocked_port(url: &str) -> bool {
    let host_port = url.split('?').next().unwrap_or(url);
    host_port.rsplit(':').next() == Some("53")
}

#[cfg(test)]
mod tests {
    #[test]
    fn port_53_is_dropped() {
        assert!(super::blocked_port("stun:stun.cloudflare.com:53"));
        assert!(super::blocked_port(
            "turn:turn.cloudflare.com:53?transport=udp"
        ));
        assert!(!super::blocked_port(
            "turn:turn.cloudflare.com:3478?transport=udp"
        ));
        assert!(!super::blocked_port(
            "turns:turn.cloudflare.com:5349?transport=tcp"
        ));
    }
}
