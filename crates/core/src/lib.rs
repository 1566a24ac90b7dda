//! The signaling domain of signal-manager: sessions, peers, rooms, roles and routing, and
//! the ports it depends on (store, router, auth). Knows nothing of WebSocket, JSON framing or
//! SQL: dialect adapters turn wire messages into calls on [`hub::Hub`] and core events back
//! into wire messages.

pub mod auth;

pub mod error;
pub mod hub;
pub mod ids;
pub mod router;
pub mod store;

pub use error::{CoreError, ErrorCode, ErrorKind};
pub use ids::{ClientId, RoomId};
