//! GCP Pub/Sub: each event is published to one topic as a message whose data is the
//! event's JSON, with the attributes `type`, `event_id` and (for a room's events)
//! `room_id`, and the ordering key of its room (an event of no room: `client:ID`). A
//! subscription with message ordering gets a room's events in `seq` order.
//!
//! Credentials come from the standard Google environment (`GOOGLE_APPLICATION_CREDENTIALS`,
//! `gcloud`'s application default credentials, or the metadata server) or a key file;
//! with `PUBSUB_EMULATOR_HOST` (or an emulator host given), the emulator, without
//! credentials.

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde_json::{Value, json};
use signal_core::events::{Event, Events, SinkError};
use signal_store_firestore::auth::{Credentials, TokenCache};

/// The audience of a self-signed service-account JWT for Pub/Sub.
const AUDIENCE: &str = "https://pubsub.googleapis.com/";

/// Where to publish.
#[derive(Debug, Clone)]
pub struct PubSubConfig {
    /// `projects/PROJECT/topics/TOPIC`.
    pub topic: String,
    /// A key file; `None` for the standard Google environment.
    pub credentials_path: Option<PathBuf>,
    /// `HOST:PORT` of an emulator; `None` reads `PUBSUB_EMULATOR_HOST`.
    pub emulator_host: Option<String>,
    /// `https://pubsub.googleapis.com` unless an emulator is used.
    pub base_url: String,
    /// How long one publish may take.
    pub timeout: Duration,
}

/// The Pub/Sub sink.
pub struct PubSub {
    topic: String,
    url: String,
    creds: Credentials,
    tokens: TokenCache,
    http: reqwest::Client,
    timeout: Duration,
}

/// Whether `topic` is `projects/P/topics/T` with both parts non-empty and no other `/`.
pub fn is_topic(topic: &str) -> bool {
    let parts: Vec<&str> = topic.split('/').collect();
    matches!(parts.as_slice(), ["projects", p, "topics", t] if !p.is_empty() && !t.is_empty())
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("topic", &self.topic)
            .field("credentials", &self.creds)
            .finish_non_exhaustive()
    }
}

impl PubSub {
    /// A sink publishing to `cfg.topic`.
    pub fn new(cfg: PubSubConfig) -> Result<Self, String> {
        if !is_topic(&cfg.topic) {
            return Err(format!(
                "pubsub topic '{}' is not projects/PROJECT/topics/TOPIC",
                cfg.topic
            ));
        }
        let emulator = cfg
            .emulator_host
            .clone()
            .or_else(|| std::env::var("PUBSUB_EMULATOR_HOST").ok())
            .filter(|h| !h.is_empty());
        let (base, creds) = match emulator {
            Some(host) => (format!("http://{host}"), Credentials::Emulator),
            None => (
                cfg.base_url.trim_end_matches('/').to_owned(),
                Credentials::discover(cfg.credentials_path.as_deref())
                    .map_err(|e| format!("Google credentials for Pub/Sub: {e}"))?,
            ),
        };
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .build()
            .map_err(|e| format!("Pub/Sub HTTP client: {e}"))?;
        Ok(Self {
            url: format!("{base}/v1/{}:publish", cfg.topic),
            topic: cfg.topic,
            creds,
            tokens: TokenCache::default(),
            http,
            timeout: cfg.timeout,
        })
    }

    /// The topic, and where the credentials come from (for logs).
    pub fn describe(&self) -> String {
        format!("{} ({})", self.topic, self.creds.describe())
    }

    /// The message for `event`.
    fn message(event: &Event) -> Result<Value, SinkError> {
        let data = serde_json::to_vec(event)
            .map_err(|e| SinkError(format!("encoding event {}: {e}", event.id)))?;
        let mut attributes = json!({
            "type": event.kind.name(),
            "event_id": event.id.to_string(),
        });
        let key = match (&event.room_id, &event.client_id) {
            (Some(r), _) => {
                attributes["room_id"] = json!(r.as_str());
                r.as_str().to_owned()
            }
            (None, Some(c)) => format!("client:{c}"),
            (None, None) => String::new(),
        };
        Ok(json!({
            "data": base64::engine::general_purpose::STANDARD.encode(data),
            "attributes": attributes,
            "orderingKey": key,
        }))
    }
}

#[async_trait]
impl Events for PubSub {
    fn name(&self) -> &'static str {
        "pubsub"
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        let body = json!({ "messages": [Self::message(event)?] });
        let bearer = self
            .tokens
            .bearer(&self.creds, &self.http, self.timeout, AUDIENCE)
            .await
            .map_err(|e| SinkError(e.to_string()))?;
        let answer = self
            .http
            .post(&self.url)
            .header("authorization", bearer)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                SinkError(if e.is_timeout() {
                    format!("Pub/Sub: no answer in {:?}", self.timeout)
                } else {
                    format!("Pub/Sub: could not publish: {e}")
                })
            })?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        let text = answer.text().await.unwrap_or_default();
        let why = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| {
                let e = v.get("error")?;
                Some(format!(
                    "{} {}",
                    e.get("status").and_then(Value::as_str).unwrap_or_default(),
                    e.get("message").and_then(Value::as_str).unwrap_or_default()
                ))
            })
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(SinkError(format!(
            "Pub/Sub: HTTP {}: {why}",
            status.as_u16()
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use signal_core::{
        events::Kind,
        ids::{ClientId, RoomId},
    };

    #[test]
    fn topics_are_checked() {
        assert!(is_topic("projects/p/topics/t"));
        for bad in [
            "",
            "projects//topics/t",
            "projects/p/topics/",
            "p/t",
            "projects/p/topics/t/x",
        ] {
            assert!(!is_topic(bad), "{bad}");
        }
    }

    #[test]
    fn a_message_carries_the_event_its_attributes_and_its_rooms_key() {
        let e = Event::new(Kind::MemberJoined, "n")
            .room(&RoomId::parse("r1").unwrap())
            .client(&ClientId::parse("client_id", "alice").unwrap());
        let m = PubSub::message(&e).unwrap();
        assert_eq!(m["orderingKey"], "r1");
        assert_eq!(m["attributes"]["type"], "member.joined");
        assert_eq!(m["attributes"]["room_id"], "r1");
        let data = base64::engine::general_purpose::STANDARD
            .decode(m["data"].as_str().unwrap())
            .unwrap();
        assert_eq!(serde_json::from_slice::<Event>(&data).unwrap(), e);
        let s = Event::new(Kind::SessionConnected, "n")
            .client(&ClientId::parse("client_id", "bob").unwrap());
        let m = PubSub::message(&s).unwrap();
        assert_eq!(m["orderingKey"], "client:bob");
        assert!(m["attributes"].get("room_id").is_none());
    }
}
