//! The signaling domain of signal-manager: sessions, peers, rooms, roles and routing, and
//! the ports it depends on, each a trait with its contract suite: [`store`], [`router`],
//! [`media`], [`events`] and [`auth`]. Knows nothing of WebSocket, wire formats, SQL or
//! Redis: dialect adapters turn wire messages into calls on [`hub::Hub`] and core events
//! back into wire messages.

pub mod auth;
pub mod error;
pub mod events;
pub mod hub;
pub mod ids;
pub mod media;
pub mod router;
pub mod store;

pub use error::{CoreError, ErrorCode, ErrorKind};
pub use ids::{ClientId, RoomId};
