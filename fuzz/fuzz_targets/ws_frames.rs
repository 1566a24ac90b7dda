//! The server's WebSocket frame decoder, fed whole and in pieces.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signal_server::fuzz::ws_frames(data));
