//! A batch of messages for one node, as one payload on its channel.
//!
//! The payload is the byte [`TAG`], then CBOR: the sending node's id, then an array of
//! items in the order they were posted. A signal whose frame travels alone (the common
//! case: see [`RawFrame::body_only_here`]) is a flat array of its ids and the frame's
//! bytes; any other message is its serde CBOR form, nested as a byte string. A receiver
//! reads the frames' bytes as slices of the payload, without copying them.
//!
//! Every other payload on a node's channel is serde CBOR of the router's `Wire`, whose
//! first byte is never [`TAG`] (the CBOR of an enum is a map or a text string).

use bytes::Bytes;
use minicbor::{Decoder, Encoder, data::Type};
use signal_core::{
    ClientId, RoomId,
    hub::{Event, Signal, SignalBody, SignalKind},
    router::{NodeMessage, RawFrame, Recipient},
};
use uuid::Uuid;

/// The first byte of a batch payload.
pub(crate) const TAG: u8 = 0x01;

const SIGNAL: u8 = 0;
const OTHER: u8 = 1;

fn kind_code(k: SignalKind) -> u8 {
    match k {
        SignalKind::Offer => 0,
        SignalKind::Answer => 1,
        SignalKind::IceCandidate => 2,
    }
}

fn kind_of(c: u8) -> Option<SignalKind> {
    Some(match c {
        0 => SignalKind::Offer,
        1 => SignalKind::Answer,
        2 => SignalKind::IceCandidate,
        _ => return None,
    })
}

/// A signal to a client whose frame alone says everything: its parts, borrowed.
struct Flat<'a> {
    client: &'a ClientId,
    sig: &'a Signal,
    raw: &'a RawFrame,
}

fn flat(m: &NodeMessage) -> Option<Flat<'_>> {
    let (Recipient::Client { client }, Event::Signal(sig), Some(raw)) = (&m.to, &m.event, &m.raw)
    else {
        return None;
    };
    (raw.body_only_here && sig.target.as_ref() == Some(client) && sig.body == SignalBody::default())
        .then_some(Flat { client, sig, raw })
}

/// Encodes `msgs` from node `from` as one payload.
pub(crate) fn encode(from: &str, msgs: &[NodeMessage]) -> Result<Vec<u8>, String> {
    let size: usize = msgs
        .iter()
        .map(|m| 96 + m.raw.as_ref().map_or(256, |r| r.head.len() + r.body.len()))
        .sum();
    let mut out = Vec::with_capacity(1 + from.len() + size);
    out.push(TAG);
    let mut e = Encoder::new(out);
    let err = |e: minicbor::encode::Error<std::convert::Infallible>| e.to_string();
    e.str(from)
        .map_err(err)?
        .array(msgs.len() as u64)
        .map_err(err)?;
    for m in msgs {
        match flat(m) {
            Some(f) => {
                e.array(8)
                    .and_then(|e| e.u8(SIGNAL))
                    .and_then(|e| e.bytes(m.id.as_bytes()))
                    .and_then(|e| e.str(f.client.as_str()))
                    .and_then(|e| e.str(f.sig.from.as_str()))
                    .and_then(|e| e.u8(kind_code(f.sig.kind)))
                    .and_then(|e| match &f.sig.room {
                        Some(r) => e.str(r.as_str()),
                        None => e.null(),
                    })
                    .and_then(|e| e.u8(f.raw.format))
                    .and_then(|e| e.bytes(&f.raw.head))
                    .and_then(|e| e.bytes(&f.raw.body))
                    .map_err(err)?;
            }
            None => {
                let nested = minicbor_serde::to_vec(m).map_err(|e| e.to_string())?;
                e.array(2)
                    .and_then(|e| e.u8(OTHER))
                    .and_then(|e| e.bytes(&nested))
                    .map_err(err)?;
            }
        }
    }
    Ok(e.into_writer())
}

/// Decodes a payload [`encode`] made (`payload[0]` is [`TAG`]): the sending node and its
/// messages, in order.
pub(crate) fn decode(payload: &Bytes) -> Result<(String, Vec<NodeMessage>), String> {
    let body = payload.get(1..).ok_or("empty payload")?;
    let mut d = Decoder::new(body);
    let err = |e: minicbor::decode::Error| e.to_string();
    let from = d.str().map_err(err)?.to_owned();
    let n = d.array().map_err(err)?.ok_or("indefinite array")?;
    let mut msgs = Vec::with_capacity(n.min(4096) as usize);
    for _ in 0..n {
        let len = d.array().map_err(err)?;
        match (d.u8().map_err(err)?, len) {
            (SIGNAL, Some(8)) => {
                let id = Uuid::from_slice(d.bytes().map_err(err)?).map_err(|e| e.to_string())?;
                let client = ClientId::parse("client_id", d.str().map_err(err)?)
                    .map_err(|e| e.to_string())?;
                let sender = ClientId::parse("from_client_id", d.str().map_err(err)?)
                    .map_err(|e| e.to_string())?;
                let kind = kind_of(d.u8().map_err(err)?).ok_or("unknown signal kind")?;
                let room = if d.datatype().map_err(err)? == Type::Null {
                    d.null().map_err(err)?;
                    None
                } else {
                    Some(RoomId::parse(d.str().map_err(err)?).map_err(|e| e.to_string())?)
                };
                let format = d.u8().map_err(err)?;
                let head = payload.slice_ref(d.bytes().map_err(err)?);
                let frame = payload.slice_ref(d.bytes().map_err(err)?);
                msgs.push(NodeMessage {
                    id,
                    from_node: from.clone(),
                    to: Recipient::Client {
                        client: client.clone(),
                    },
                    event: Event::Signal(Signal {
                        kind,
                        from: sender,
                        target: Some(client),
                        room,
                        body: SignalBody::default(),
                    }),
                    raw: Some(RawFrame {
                        format,
                        head,
                        body: frame,
                        body_only_here: true,
                    }),
                });
            }
            (OTHER, Some(2)) => {
                let nested = d.bytes().map_err(err)?;
                msgs.push(minicbor_serde::from_slice(nested).map_err(|e| e.to_string())?);
            }
            (t, _) => return Err(format!("unknown batch item {t}")),
        }
    }
    Ok((from, msgs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> ClientId {
        ClientId::parse("client_id", s).unwrap()
    }

    fn flat_signal(room: Option<&str>) -> NodeMessage {
        NodeMessage {
            id: Uuid::new_v4(),
            from_node: "a".into(),
            to: Recipient::Client {
                client: client("bob"),
            },
            event: Event::Signal(Signal {
                kind: SignalKind::IceCandidate,
                from: client("alice"),
                target: Some(client("bob")),
                room: room.map(|r| RoomId::parse(r).unwrap()),
                body: SignalBody::default(),
            }),
            raw: Some(RawFrame {
                format: 0,
                head: Bytes::from_static(&[1, 2, 3]),
                body: Bytes::from_static(b"{\"from_client_id\":\"alice\",\"candidate\":\"c\"}"),
                body_only_here: true,
            }),
        }
    }

    #[test]
    fn a_batch_reads_back_as_it_was_posted() {
        let mut with_body = flat_signal(None);
        if let Event::Signal(s) = &mut with_body.event {
            s.body.sdp = Some("v=0".into());
        }
        let room_event = NodeMessage {
            to: Recipient::Room {
                room: RoomId::parse("r").unwrap(),
                except: None,
            },
            event: Event::PeerLeft {
                room: RoomId::parse("r").unwrap(),
                client: client("carol"),
                reason: "left".into(),
            },
            raw: None,
            ..flat_signal(None)
        };
        let msgs = vec![
            flat_signal(Some("r")),
            with_body,
            room_event,
            flat_signal(None),
        ];
        let payload = Bytes::from(encode("a", &msgs).unwrap());
        assert_eq!(payload[0], TAG);
        let (from, back) = decode(&payload).unwrap();
        assert_eq!(from, "a");
        assert_eq!(back, msgs);
    }

    #[test]
    fn a_damaged_batch_is_an_error_not_a_panic() {
        let payload = encode("a", &[flat_signal(Some("r"))]).unwrap();
        for cut in 1..payload.len() {
            assert!(decode(&Bytes::copy_from_slice(&payload[..cut])).is_err());
        }
        let mut bad = payload.clone();
        let at = bad.len() - 60;
        bad[at] = 0xff;
        let _ = decode(&Bytes::from(bad));
        let mut bad_id = payload;
        if let Some(p) = bad_id.windows(3).position(|w| w == b"bob") {
            bad_id[p] = b' ';
        }
        assert!(
            decode(&Bytes::from(bad_id)).is_err(),
            "ids are checked as they are read"
        );
    }
}
