//! `signal-bench`: a load generator for signal-manager and the servers it is compared
//! with (PeerJS, matchbox, and the floor: a minimal tokio-tungstenite relay in this
//! crate). Open-loop constant-rate senders, latency from the intended send time into an
//! HdrHistogram, client sockets spread over several 127.0.0.x source addresses, and the
//! server's CPU time and RSS read from `/proc` before and after each measured window.
//!
//! Loopback only: every scenario refuses a target outside 127.0.0.0/8.

pub mod abuse;
pub mod floor;
pub mod group;
pub mod payload;
pub mod procfs;
pub mod scenario;
pub mod stats;
pub mod target;

pub use abuse::{AbuseOpts, abuse};
pub use scenario::{
    Common, FanoutOpts, IdleOpts, RelayOpts, StormOpts, fanout, idle, relay, run_local, storm,
};
pub use target::{Endpoint, Target};

/// A run id: a short random hex string, so client ids and room names never collide with
/// a previous run against the same server.
pub fn run_id() -> String {
    let u = uuid::Uuid::new_v4().simple().to_string();
    format!("b{}", &u[..8])
}

/// A second octet for source addresses (127.S.0.x), random per run, never 0 or 255.
pub fn source_net() -> u8 {
    1 + uuid::Uuid::new_v4().as_bytes()[0] % 254
}
