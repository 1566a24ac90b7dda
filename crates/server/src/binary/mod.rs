//! The binary dialect (seeds 000/001) on `/`: frames decoded and dispatched to one module
//! per request type; the connection itself (timeouts, queue, writer, drain) is the shared
//! driver in [`crate::conn`].

mod cmd;
pub mod codec;

use std::net::SocketAddr;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use signal_core::{
    CoreError, ErrorKind,
    hub::{Envelope, Format, FormatSpec},
};
use signal_protocol::{Frame, MessageType, PayloadType};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    conn::{self, Conn, Dialect, Flow, Guard, Step},
    state::AppState,
    ws::{Message, Socket},
};
use codec::{closes, error_frame, reply_type, request_type_name};

/// Serves one upgraded WebSocket speaking the binary protocol until it closes.
pub(crate) fn serve(
    socket: Socket,
    state: AppState,
    peer: SocketAddr,
    guard: Guard,
) -> impl Future<Output = ()> + Send {
    let span =
        tracing::debug_span!("conn", dialect = "binary", %peer, client_id = tracing::field::Empty);
    conn::drive(socket, state, Binary, guard, peer).instrument(span)
}

static JSON_SPEC: FormatSpec = FormatSpec::new(0, "binary_json");
static CBOR_SPEC: FormatSpec = FormatSpec::new(1, "binary_cbor");
/// Binary frames with JSON payloads.
pub const JSON: Format = Format::of(&JSON_SPEC);
/// Binary frames with CBOR payloads.
pub const CBOR: Format = Format::of(&CBOR_SPEC);

/// Lets the hub read a binary-JSON frame's signal body back, so signals between
/// binary-JSON clients cross nodes as their frames alone.
pub(crate) fn register_formats() {
    signal_core::hub::register_body_decoder(JSON, cmd::signal::json_body);
}

struct Binary;

impl Dialect for Binary {
    const LABEL: &'static str = "binary";
    const TEXT: bool = false;

    fn on_message<'a>(&'a mut self, conn: &'a mut Conn, msg: Message) -> Step<'a> {
        match msg {
            Message::Binary(b) => on_frame(conn, b),
            Message::Text(_) => {
                let err = CoreError::bad_request(
                    "Text message on the binary endpoint: send binary frames [0xAA][type][uuid][payload_type][length][payload]",
                );
                conn.reply(error_frame(
                    Uuid::nil(),
                    PayloadType::Json,
                    serde_json::Value::Null,
                    &err,
                ));
                Step::Done(Flow::Continue)
            }
        }
    }

    fn close_error(&self, conn: &Conn, err: &CoreError) -> Option<Bytes> {
        Some(error_frame(
            Uuid::new_v4(),
            reply_pt(conn),
            serde_json::Value::Null,
            err,
        ))
    }

    fn encode_event(format: Format, env: &Envelope) -> Option<Bytes> {
        let pt = if format == CBOR {
            PayloadType::Cbor
        } else {
            PayloadType::Json
        };
        codec::encode_event(env, pt)
    }
}

/// The payload type for unsolicited frames: the session's choice, JSON before CONNECT.
fn reply_pt(conn: &Conn) -> PayloadType {
    if conn.format() == Some(CBOR) {
        PayloadType::Cbor
    } else {
        PayloadType::Json
    }
}

/// Decodes a frame and dispatches it: heartbeats and relayed signals are handled at
/// once, requests that wait on the store as a boxed step.
fn on_frame(conn: &mut Conn, bytes: Bytes) -> Step<'_> {
    let frame = match Frame::decode(bytes) {
        Ok(f) => f,
        Err(e) => {
            let err = CoreError::bad_request(e.kind.to_string());
            let frame = error_frame(
                e.id.unwrap_or(Uuid::nil()),
                reply_pt(conn),
                request_type_name(e.msg_type),
                &err,
            );
            conn.reply(frame);
            return Step::Done(Flow::Continue);
        }
    };
    let t = frame.msg_type;
    conn.state.metrics.frames_in[t as usize].increment(1);
    if t != MessageType::Heartbeat && !conn.within_rate() {
        let n = conn.state.config.security.max_messages_per_minute;
        let err = CoreError::new(
            ErrorKind::RateLimited,
            format!("Rate limit exceeded: at most {n} messages per minute"),
        );
        return Step::Done(finish(conn, &frame, Err(err)));
    }
    if !t.is_client_request() {
        let err = CoreError::bad_request(format!("{t} is sent by the server, not by clients"));
        return Step::Done(finish(conn, &frame, Err(err)));
    }
    if conn.session.is_none() && t != MessageType::Connect && t != MessageType::Resume {
        let err = CoreError::unauthorized(format!(
            "Not connected: CONNECT must be the first frame, got {t}"
        ));
        return Step::Done(finish(conn, &frame, Err(err)));
    }
    match t {
        MessageType::Disconnect => Step::Done(Flow::Close(
            crate::ws::close::NORMAL,
            "client disconnect".into(),
        )),
        MessageType::Heartbeat => {
            let r = cmd::heartbeat::handle(conn, &frame);
            Step::Done(finish(conn, &frame, r))
        }
        MessageType::SignalOffer | MessageType::SignalAnswer | MessageType::SignalIceCandidate => {
            match cmd::signal::forward(conn, &frame) {
                Some(Ok(None)) => Step::Done(finish(conn, &frame, Ok(None))),
                Some(Err(e)) => Step::Done(finish(conn, &frame, Err(e))),
                Some(Ok(Some(elsewhere))) => match conn.state.hub.post_elsewhere(elsewhere) {
                    Ok(None) => Step::Done(finish(conn, &frame, Ok(None))),
                    Err(e) => Step::Done(finish(conn, &frame, Err(e))),
                    // Looked up in the registry first.
                    Ok(Some(elsewhere)) => Step::wait(async move {
                        let hub = conn.state.hub.clone();
                        let r = hub.send_elsewhere(elsewhere).await;
                        finish(conn, &frame, r.map(|()| None))
                    }),
                },
                None => Step::wait(async move {
                    let r = cmd::signal::handle(conn, &frame).await;
                    finish(conn, &frame, r)
                }),
            }
        }
        _ => Step::wait(async move {
            let r = match t {
                MessageType::Connect => cmd::connect::handle(conn, &frame).await,
                MessageType::Resume => cmd::resume::handle(conn, &frame).await,
                MessageType::Register => cmd::register::handle(conn, &frame).await,
                MessageType::Unregister => cmd::unregister::handle(conn, &frame).await,
                MessageType::RoomCreate => cmd::room_create::handle(conn, &frame).await,
                MessageType::RoomJoin => cmd::room_join::handle(conn, &frame).await,
                MessageType::RoomLeave => cmd::room_leave::handle(conn, &frame).await,
                MessageType::TokenRefresh => cmd::token_refresh::handle(conn, &frame).await,
                // Every other client request was dispatched above.
                _ => Err(CoreError::bad_request(format!(
                    "{t} is sent by the server, not by clients"
                ))),
            };
            finish(conn, &frame, r)
        }),
    }
}

/// Queues a request's ACK or ERROR.
fn finish(conn: &mut Conn, frame: &Frame, result: Result<Option<Bytes>, CoreError>) -> Flow {
    let (id, t) = (frame.id, frame.msg_type);
    let pt = reply_type(frame.payload_type);
    match result {
        Ok(Some(bytes)) => {
            metrics::counter!("signal_frames_out_total", "type" => t.ack().map(|a| a.name()).unwrap_or("none")).increment(1);
            conn.reply(bytes);
            Flow::Continue
        }
        Ok(None) => Flow::Continue,
        Err(e) => {
            conn.reply(error_frame(id, pt, t.name().into(), &e));
            match closes(t, &e) {
                Some((code, reason)) => Flow::Close(code, reason.into()),
                None => Flow::Continue,
            }
        }
    }
}

/// Decodes a structured payload, turning any fault into a 400 that names it.
pub(crate) fn payload<T: DeserializeOwned>(frame: &Frame) -> Result<T, CoreError> {
    signal_protocol::decode_payload(frame.payload_type, &frame.payload)
        .map_err(|e| CoreError::bad_request(format!("{}: {e}", frame.msg_type.name())))
}
