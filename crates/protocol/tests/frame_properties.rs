//! Properties of the frame codec over arbitrary input: decoding never panics, a frame that
//! decodes re-encodes to the same bytes, and every encoded frame decodes to itself, also
//! when a transport splits or concatenates messages. The corpus under `fuzz/corpus` is
//! replayed here, so CI exercises what the fuzzer found without running it.

use bytes::Bytes;
use proptest::prelude::*;
use signal_protocol::{Frame, MessageType, PayloadType, frame::encode_parts};
use uuid::Uuid;

fn any_type() -> impl Strategy<Value = MessageType> {
    prop::sample::select(MessageType::ALL.to_vec())
}

fn any_pt() -> impl Strategy<Value = PayloadType> {
    prop::sample::select(vec![
        PayloadType::Binary,
        PayloadType::Json,
        PayloadType::Text,
        PayloadType::Protobuf,
        PayloadType::Cbor,
    ])
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(f) = Frame::decode(Bytes::from(bytes.clone())) {
            prop_assert_eq!(f.encode().unwrap().to_vec(), bytes);
        }
    }

    #[test]
    fn encoded_frames_decode_to_themselves(t in any_type(), pt in any_pt(), id in any::<u128>(), payload in prop::collection::vec(any::<u8>(), 0..2048)) {
        let id = Uuid::from_u128(id);
        let bytes = encode_parts(t, id, pt, &payload).unwrap();
        let f = Frame::decode(bytes).unwrap();
        prop_assert_eq!((f.msg_type, f.id, f.payload_type), (t, id, pt));
        prop_assert_eq!(&f.payload[..], &payload[..]);
    }

    #[test]
    fn a_frame_split_or_joined_is_refused_not_misread(payload in prop::collection::vec(any::<u8>(), 1..256), cut in 1usize..276) {
        let bytes = encode_parts(MessageType::SignalOffer, Uuid::nil(), PayloadType::Json, &payload).unwrap();
        let cut = cut.min(bytes.len() - 1);
        prop_assert!(Frame::decode(bytes.slice(..cut)).is_err());
        let mut doubled = bytes.to_vec();
        doubled.extend_from_slice(&bytes);
        prop_assert!(Frame::decode(Bytes::from(doubled)).is_err());
    }
}

#[test]
fn fuzz_corpus_replays_without_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/frame_decode");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory exists") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("readable");
        let _ = Frame::decode(Bytes::from(bytes));
        n += 1;
    }
    assert!(n > 0, "the corpus is not empty");
}
