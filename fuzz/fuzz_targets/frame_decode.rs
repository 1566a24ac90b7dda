//! The binary frame parser and the payload decoders behind it.
//! Run: `cargo +nightly fuzz run frame_decode -- -runs=10000000` (see docs/hardening.md).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signal_protocol::fuzz::frame_decode(data));
