//! RESUME → RESUME_ACK: take a dropped session back on this connection.

use bytes::Bytes;
use signal_core::{
    CoreError,
    hub::{Outbound, ResumeParams},
};
use signal_protocol::{
    Frame, MessageType,
    payload::{ResumeAck, ResumeRequest},
};

use crate::{
    binary::{codec, payload},
    conn::Conn,
};

/// Takes the session back and puts RESUME_ACK, then the frames the client missed, at the
/// front of its queue; this connection drains that queue from now on. Nothing is returned
/// to queue: the ACK is already in the session's queue.
pub(crate) async fn handle(conn: &mut Conn, frame: &Frame) -> Result<Option<Bytes>, CoreError> {
    if let Some(s) = &conn.session {
        return Err(CoreError::new(
            signal_core::ErrorKind::Conflict,
            format!("Already connected: this connection has session {}", s.id),
        ));
    }
    let req: ResumeRequest = payload(frame)?;
    let hub = conn.state.hub.clone();
    let mut resumed = hub
        .resume(ResumeParams {
            client_id: Some(req.client_id),
            formats: Some(&[crate::binary::JSON, crate::binary::CBOR]),
            token: req.resume_token,
            last_seq: req.last_seq,
            outbox: Some(conn.outbox.clone()),
        })
        .await?;
    let (id, pt) = (frame.id, codec::reply_type(frame.payload_type));
    let heartbeat_interval = hub.config().heartbeat_interval;
    let last_seq = req.last_seq;
    hub.replay(&mut resumed, last_seq, |session, token, replayed| {
        let ack = ResumeAck {
            status: 200,
            message: "Session resumed".into(),
            session_id: session.id.to_string(),
            resume_token: token.to_owned(),
            last_seq,
            replayed,
            heartbeat_interval,
        };
        codec::encode(MessageType::ResumeAck, id, pt, &ack).map(Outbound::Frame)
    })
    .await?;
    conn.adopt(resumed.session);
    Ok(None)
}
