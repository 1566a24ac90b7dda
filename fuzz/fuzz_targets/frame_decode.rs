//! Fuzz the frame parser and the payload decoders behind it.
//! Run: `cargo fuzz run frame_decode --sanitizer none -- -max_total_time=60`
#![no_main]

use libfuzzer_sys::fuzz_target;
use signal_protocol::{Frame, decode_payload, payload::{ConnectRequest, SignalPayload}};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = Frame::decode(bytes::Bytes::copy_from_slice(data)) {
        assert_eq!(f.encode().ok().as_deref(), Some(data));
        let _ = decode_payload::<ConnectRequest>(f.payload_type, &f.payload);
        let _ = decode_payload::<SignalPayload>(f.payload_type, &f.payload);
    }
});
