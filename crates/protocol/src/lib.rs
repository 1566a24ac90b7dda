//! Wire codecs of signal-manager's binary protocol (seeds 000/001, settled by the project's
//! protocol page): the 21-byte frame header, the message and payload type registries, and
//! the JSON/CBOR payload schemas. Pure functions over bytes: no I/O, no async runtime.

pub mod codec;
pub mod depth;
pub mod frame;
#[doc(hidden)]
pub mod fuzz;
pub mod payload;
pub mod signal_check;
pub mod types;

pub use codec::{PayloadError, decode_payload, encode_payload};
pub use frame::{FRAME_HEADER_LEN, Frame, FrameError, FrameErrorKind, MAX_PAYLOAD_LEN, START_BYTE};
pub use types::{MessageType, PayloadType};

/// The protocol version this crate implements. A client announcing a newer version is refused.
pub const PROTOCOL_VERSION: &str = "1.0.0";
