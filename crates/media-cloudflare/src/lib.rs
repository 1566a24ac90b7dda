//! Cloudflare Realtime behind signal-manager's media port: rooms on Cloudflare's SFU
//! ([`CloudflareSfu`]) and TURN credentials from Cloudflare ([`CloudflareTurn`]).
//!
//! Each member of an SFU room gets its own Cloudflare session. A member's offer publishes
//! its tracks; every other member pulls them and answers the SFU's offer; leaving closes
//! the member's tracks and the room's end closes every session's. Calls are timed,
//! retried when Cloudflare says the failure is transient, and serialised per session.

pub mod api;
pub mod sdp;
mod sfu;
pub mod turn;

pub use api::{Api, ApiConfig};
pub use sfu::CloudflareSfu;
pub use turn::{CloudflareTurn, IceServer, TurnConfig};
