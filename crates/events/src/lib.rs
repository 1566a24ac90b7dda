//! Sinks of the events port ([`signal_core::events::Events`]): where the publisher
//! delivers the lifecycle events the store's outbox holds.
//!
//! - [`webhook::Webhook`]: one signed HTTP POST per event.

pub mod webhook;
