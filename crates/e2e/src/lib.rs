//! End-to-end tests of signal-manager with real WebRTC peers.
//!
//! This crate has no code of its own: its tests (`tests/`) start a real server on a
//! loopback port with a real SQLite file, connect two [webrtc-rs](https://webrtc.rs)
//! peers through it in each signaling dialect (binary, altair, simple, room-path, and
//! binary with room-path in one room), and check that a data channel opens between them
//! and carries messages both ways. The test peer and the per-dialect signaling
//! transports are in `tests/support/`.
