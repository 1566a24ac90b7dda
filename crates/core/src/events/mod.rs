//! The events port: the lifecycle of clients, sessions, rooms and members, told to
//! whoever listens (webhooks, GCP Pub/Sub).
//!
//! The hub builds an [`Event`] at each step of a lifecycle and hands it to the store with
//! the write the step makes, in the same transaction (the outbox): an event is recorded
//! exactly when its step committed. The store numbers a room's events (`seq`, gapless);
//! a publisher drains the outbox into the sinks, at least once and in order per room.
//! Without a sink configured, [`NoEvents`] says so and the hub builds no events at all.

mod publisher;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::ids::{ClientId, RoomId};

/// Which step of a lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// REGISTER committed.
    #[serde(rename = "client.registered")]
    ClientRegistered,
    /// UNREGISTER committed.
    #[serde(rename = "client.unregistered")]
    ClientUnregistered,
    /// A session opened.
    #[serde(rename = "session.connected")]
    SessionConnected,
    /// A session ended (`data.reason`).
    #[serde(rename = "session.disconnected")]
    SessionDisconnected,
    /// A room was created.
    #[serde(rename = "room.created")]
    RoomCreated,
    /// A room ended (`data`: its summary).
    #[serde(rename = "room.terminated")]
    RoomTerminated,
    /// A member joined a room.
    #[serde(rename = "member.joined")]
    MemberJoined,
    /// A member left a room (`data.reason`).
    #[serde(rename = "member.left")]
    MemberLeft,
}

impl Kind {
    /// The type's name on the wire (`room.created`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientRegistered => "client.registered",
            Self::ClientUnregistered => "client.unregistered",
            Self::SessionConnected => "session.connected",
            Self::SessionDisconnected => "session.disconnected",
            Self::RoomCreated => "room.created",
            Self::RoomTerminated => "room.terminated",
            Self::MemberJoined => "member.joined",
            Self::MemberLeft => "member.left",
        }
    }
}

/// One lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique.
    pub id: Uuid,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// The room, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_id: Option<RoomId>,
    /// The client, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<ClientId>,
    /// Its place among its room's events (1, 2, ...; gapless), given by the store when it
    /// is recorded; none for an event of no room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The node it happened on.
    pub node_id: String,
    /// When (RFC 3339, milliseconds, UTC).
    #[serde(with = "millis")]
    pub at: DateTime<Utc>,
    /// What else there is to say (a reason, a room's summary).
    pub data: Value,
}

impl Event {
    /// An event of `kind` now, on `node_id`.
    pub fn new(kind: Kind, node_id: &str) -> Self {
        Self {
            id: Uuid::new_v4(),
            kind,
            room_id: None,
            client_id: None,
            seq: None,
            node_id: node_id.to_owned(),
            at: Utc::now().trunc_subsecs(3),
            data: Value::Object(Default::default()),
        }
    }

    /// With its room.
    pub fn room(mut self, room: &RoomId) -> Self {
        self.room_id = Some(room.clone());
        self
    }

    /// With its client.
    pub fn client(mut self, client: &ClientId) -> Self {
        self.client_id = Some(client.clone());
        self
    }

    /// With its data.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// `at` as RFC 3339 with milliseconds (`2026-12-04T17:33:00.123Z`).
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&at.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(D::Error::custom)
    }
}

pub use publisher::{Publisher, PublisherConfig};

/// A sink that did not take an event (it will be offered again).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Where lifecycle events go: a sink the [`Publisher`] delivers the outbox to. The hub
/// only asks [`is_enabled`](Events::is_enabled), to know whether to build events.
#[async_trait]
pub trait Events: Send + Sync + 'static {
    /// Whether anything listens: when not, the hub does not build events at all.
    fn is_enabled(&self) -> bool {
        true
    }

    /// `webhook`, `pubsub`, ...: for logs and metrics.
    fn name(&self) -> &'static str;

    /// Delivers one event; `Ok` once the receiver acknowledged it. Called for one room's
    /// events one at a time, in `seq` order.
    async fn deliver(&self, event: &Event) -> Result<(), SinkError>;
}

/// No sink: no event is built.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

#[async_trait]
impl Events for NoEvents {
    fn is_enabled(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "none"
    }

    async fn deliver(&self, _event: &Event) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Several sinks as one port: enabled if any is.
pub struct Sinks(pub Vec<Arc<dyn Events>>);

#[async_trait]
impl Events for Sinks {
    fn is_enabled(&self) -> bool {
        self.0.iter().any(|s| s.is_enabled())
    }

    fn name(&self) -> &'static str {
        "sinks"
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        for s in &self.0 {
            s.deliver(event).await?;
        }
        Ok(())
    }
}

/// Keeps every event in memory, in order: for tests, and for a process that reads its
/// own lifecycle.
#[derive(Debug, Clone, Default)]
pub struct MemoryEvents {
    events: Arc<Mutex<Vec<Event>>>,
}

impl MemoryEvents {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// What was published so far, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().clone()
    }
}

#[async_trait]
impl Events for MemoryEvents {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn deliver(&self, event: &Event) -> Result<(), SinkError> {
        self.events.lock().push(event.clone());
        Ok(())
    }
}

/// The events contract: publishing never fails or blocks the caller, and a sink that can
/// be read back (`read`) has every event, intact and in order.
#[cfg(any(test, feature = "contract"))]
pub mod contract {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use serde_json::json;

    use super::{Event, Events, Kind};
    use crate::ids::{ClientId, RoomId};

    /// Delivers a room's lifecycle to `sink`; with `read`, checks what arrived.
    pub async fn run(sink: &dyn Events, read: Option<&dyn Fn() -> Vec<Event>>) {
        let room = RoomId::generate();
        let alice = ClientId::parse("client_id", "contract-alice").unwrap();
        let sent: Vec<Event> = [
            Kind::SessionConnected,
            Kind::RoomCreated,
            Kind::MemberJoined,
            Kind::MemberLeft,
            Kind::RoomTerminated,
            Kind::SessionDisconnected,
        ]
        .into_iter()
        .enumerate()
        .map(|(i, k)| Event {
            seq: Some(i as u64 + 1),
            ..Event::new(k, "contract")
                .room(&room)
                .client(&alice)
                .data(json!({"step": k.name()}))
        })
        .collect();
        for e in &sent {
            sink.deliver(e).await.unwrap();
        }
        if let Some(read) = read {
            let got: Vec<Event> = read()
                .into_iter()
                .filter(|e| e.room_id.as_ref() == Some(&room))
                .collect();
            assert_eq!(got, sent, "every event arrives, intact and in order");
        }
        let text = serde_json::to_string(&sent[1]).unwrap();
        assert!(text.contains("\"type\":\"room.created\""), "{text}");
        assert!(text.contains("\"seq\":2"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let at = v["at"].as_str().unwrap();
        assert!(
            at.len() == 24 && at.ends_with('Z') && at.as_bytes()[19] == b'.',
            "RFC 3339 with milliseconds: {at}"
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), sent[1]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_sinks_keep_the_contract() {
        contract::run(&NoEvents, None).await;
        let m = MemoryEvents::new();
        let read = || m.events();
        contract::run(&m, Some(&read)).await;
    }
}
