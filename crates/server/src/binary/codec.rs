//! Binary dialect encoding: core events, responses and errors as frames. The one place a
//! [`CoreError`] becomes an ERROR frame.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use signal_core::{
    CoreError, ErrorKind,
    hub::{Envelope, Event, SignalKind},
};
use signal_protocol::{
    FrameError, MessageType, PayloadType,
    frame::encode_parts,
    payload::{ErrorPayload, PeerJoined, PeerLeft, RoomClosed, SignalPayload},
};
use uuid::Uuid;

/// The payload type a response uses: the request's if structured, else JSON.
pub fn reply_type(request: PayloadType) -> PayloadType {
    if request == PayloadType::Cbor {
        PayloadType::Cbor
    } else {
        PayloadType::Json
    }
}

/// Encodes a structured message; `None` only if it cannot fit a frame (logged).
pub fn encode<T: Serialize>(
    msg_type: MessageType,
    id: Uuid,
    pt: PayloadType,
    value: &T,
) -> Result<Bytes, CoreError> {
    let payload = signal_protocol::encode_payload(pt, value).map_err(|e| {
        tracing::error!(error = %e, %msg_type, "payload encoding failed");
        CoreError::internal()
    })?;
    encode_parts(msg_type, id, pt, &payload).map_err(|e: FrameError| {
        CoreError::new(
            ErrorKind::TooLarge,
            format!("{msg_type} too large: {}", e.kind),
        )
    })
}

/// `request_type` detail value for a raw type byte.
pub fn request_type_name(raw: Option<u8>) -> Value {
    match raw {
        Some(b) => match MessageType::from_u8(b) {
            Some(t) => Value::from(t.name()),
            None => Value::from(format!("0x{b:02X}")),
        },
        None => Value::Null,
    }
}

/// The binary protocol's error table. An ERROR frame's `error_code` is the kind's status
/// class ([`ErrorKind::code`]); the error closes the connection (1008) only when it
/// refuses CONNECT's credentials. The one place either is decided.
pub fn closes(request: MessageType, err: &CoreError) -> Option<(u16, &'static str)> {
    (request == MessageType::Connect && err.kind == ErrorKind::Unauthenticated)
        .then_some((crate::ws::close::POLICY, "authentication failed"))
}

/// An ERROR frame answering request `id`.
pub fn error_frame(id: Uuid, pt: PayloadType, request_type: Value, err: &CoreError) -> Bytes {
    metrics::counter!("signal_errors_total", "code" => err.code().label()).increment(1);
    let mut details: Map<String, Value> = err.details.clone();
    details.insert("request_type".into(), request_type);
    details.insert(
        "timestamp".into(),
        Value::from(chrono::Utc::now().timestamp_millis()),
    );
    let payload = ErrorPayload {
        error_code: err.code().as_u16(),
        error_message: err.message.clone(),
        details,
    };
    let bytes =
        signal_protocol::encode_payload(pt, &payload).unwrap_or_else(|_| Bytes::from_static(b"{}"));
    // An ERROR payload is small; if the details made it huge, drop them.
    encode_parts(MessageType::Error, id, pt, &bytes).unwrap_or_else(|_| {
        let short = ErrorPayload {
            error_code: payload.error_code,
            error_message: "error details too large".into(),
            details: Map::new(),
        };
        let b = signal_protocol::encode_payload(pt, &short).unwrap_or_default();
        encode_parts(MessageType::Error, id, pt, &b).unwrap_or_default()
    })
}

/// A hub event as a frame for a binary client using `pt` payloads.
pub fn encode_event(env: &Envelope, pt: PayloadType) -> Option<Bytes> {
    let res = match &env.event {
        Event::PeerJoined {
            room,
            client,
            role,
            metadata,
        } => encode(
            MessageType::PeerJoined,
            env.id,
            pt,
            &PeerJoined {
                room_id: room.to_string(),
                client_id: client.to_string(),
                role: role.as_str().into(),
                metadata: metadata.clone(),
            },
        ),
        Event::PeerLeft {
            room,
            client,
            reason,
        } => encode(
            MessageType::PeerLeft,
            env.id,
            pt,
            &PeerLeft {
                room_id: room.to_string(),
                client_id: client.to_string(),
                reason: reason.clone(),
            },
        ),
        Event::PeerReconnecting {
            room,
            client,
            window,
        } => encode(
            MessageType::PeerReconnecting,
            env.id,
            pt,
            &signal_protocol::payload::PeerReconnecting {
                room_id: room.to_string(),
                client_id: client.to_string(),
                window: *window,
            },
        ),
        // Between nodes only.
        Event::MediaPublished { .. } => return None,
        Event::CredentialExpiring { expires_at } => encode(
            MessageType::TokenExpiring,
            env.id,
            pt,
            &signal_protocol::payload::TokenExpiring {
                expires_at: crate::binary::codec::rfc3339(*expires_at).unwrap_or_default(),
                seconds_left: seconds_left(*expires_at),
            },
        ),
        Event::RoomClosed { room, reason } => encode(
            MessageType::RoomClosed,
            env.id,
            pt,
            &RoomClosed {
                room_id: room.to_string(),
                reason: reason.clone(),
            },
        ),
        Event::Signal(s) => {
            let t = match s.kind {
                SignalKind::Offer => MessageType::SignalOffer,
                SignalKind::Answer => MessageType::SignalAnswer,
                SignalKind::IceCandidate => MessageType::SignalIceCandidate,
            };
            encode(
                t,
                env.id,
                pt,
                &SignalPayload {
                    target_client_id: s.target.as_ref().map(|t| t.to_string()),
                    room_id: s.room.as_ref().map(|r| r.to_string()),
                    sdp: s.body.sdp.clone(),
                    candidate: s.body.candidate.clone(),
                    sdp_mid: s.body.sdp_mid.clone(),
                    sdp_m_line_index: s.body.sdp_m_line_index,
                    from_client_id: Some(s.from.to_string()),
                    extra: s.body.extra.clone(),
                },
            )
        }
    };
    match res {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e.message, event = env.event.label(), "event could not be encoded; dropped");
            None
        }
    }
}

/// Seconds from now until `at` (Unix seconds), 0 if it passed.
pub(crate) fn seconds_left(at: i64) -> u64 {
    u64::try_from(at.saturating_sub(chrono::Utc::now().timestamp())).unwrap_or(0)
}

/// Unix seconds as RFC 3339.
pub(crate) fn rfc3339(at: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}
