//! The signal-manager server: the HTTP/WebSocket listener, the binary dialect adapter,
//! configuration, logging, start-up and drain. `main.rs` is a thin shell over [`run`].

pub mod accept;
pub mod app;
pub mod binary;
pub mod config;
pub(crate) mod conn;
pub mod copy;
pub mod demo;
#[doc(hidden)]
pub mod fuzz;
pub mod http;
pub mod json;
pub mod metrics;
pub(crate) mod oplog;
pub mod ops;
pub mod run;
pub mod state;
pub mod telemetry;
pub(crate) mod ws;
pub mod ws_echo;

pub use run::{Running, StartError, start};
