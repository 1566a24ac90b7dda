//! JSON and CBOR payloads decoded as every request type, nesting bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| signal_protocol::fuzz::payload_decode(data));
