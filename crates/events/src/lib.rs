//! Sinks of the events port ([`signal_core::events::Events`]): where the publisher
//! delivers the lifecycle events the store's outbox holds.
//!
//! - [`webhook::Webhook`]: one signed HTTP POST per event.
//! - [`pubsub::PubSub`]: one GCP Pub/Sub message per event, ordered by room.

pub mod pubsub;
pub mod webhook;
