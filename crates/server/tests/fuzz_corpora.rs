//! Replays the fuzz targets' corpora (`fuzz/corpus/TARGET/`, the seeds and every input the
//! fuzzer kept, crashes it found included) through the targets' own entry points, so a
//! regression of anything the fuzzer once reached fails `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let r = std::panic::catch_unwind(|| run(&data));
        assert!(r.is_ok(), "{target}: {} fails", path.display());
        n += 1;
    }
    assert!(n > 0, "{target}: empty corpus at {}", dir.display());
}

#[test]
fn frame_decode_corpus() {
    replay("frame_decode", signal_protocol::fuzz::frame_decode);
}

#[test]
fn payload_decode_corpus() {
    replay("payload_decode", signal_protocol::fuzz::payload_decode);
}

#[test]
fn ws_frames_corpus() {
    replay("ws_frames", signal_server::fuzz::ws_frames);
}

#[test]
fn dialect_message_corpus() {
    replay("dialect_message", signal_server::fuzz::dialect_message);
}
