//! Test support: a real server, signaling transports per dialect, and a WebRTC test peer.

pub mod cluster;
pub mod peer;
pub mod server;
pub mod sfu;
pub mod signaling;
