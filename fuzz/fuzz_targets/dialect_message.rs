//! A JSON dialect message: parsed, its dialect told, its payload translated for every wire.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signal_server::fuzz::dialect_message(data));
