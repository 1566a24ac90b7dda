//! What the hub tells connections: events shared by every receiver and encoded at most
//! once per wire format, and the close reasons that end a connection.

use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::{
    error::CoreError,
    ids::{ClientId, RoomId},
};

/// A wire format as an edge declares it: a small id below [`Format::MAX`], unique among
/// the edges, and a label for metrics. Declared once, as a `static`, and used through
/// [`Format`].
#[derive(Debug)]
pub struct FormatSpec {
    id: u8,
    label: &'static str,
}

impl FormatSpec {
    /// Format `id`, labelled `label` in metrics.
    pub const fn new(id: u8, label: &'static str) -> Self {
        assert!(
            (id as usize) < Format::MAX,
            "format ids run below Format::MAX"
        );
        Self { id, label }
    }
}

/// Reads a signal's body back out of a frame an edge encoded in its format (the frame's
/// body, as [`crate::router::RawFrame::body`] carries it).
pub type BodyDecoder = fn(&[u8]) -> Result<SignalBody, CoreError>;

static DECODERS: [std::sync::OnceLock<BodyDecoder>; Format::MAX] =
    [const { std::sync::OnceLock::new() }; Format::MAX];

/// Registers how frames of `format` give back a signal's body. With one registered, a
/// signal whose frame is relayed to another node travels as those bytes alone: a
/// receiver of the same format writes them as they are, any other decodes them with
/// this. The first registration for a format stands.
pub fn register_body_decoder(format: Format, decode: BodyDecoder) {
    let _ = DECODERS[usize::from(format.id())].set(decode);
}

/// The decoder registered for format `id`.
pub(crate) fn body_decoder(id: u8) -> Option<BodyDecoder> {
    DECODERS.get(usize::from(id))?.get().copied()
}

/// A wire format, as the edges define it: opaque to core, which only keys the per-event
/// encode cache by it. One pointer wide, so every connection can hold one cheaply.
#[derive(Debug, Clone, Copy)]
pub struct Format(&'static FormatSpec);

impl Format {
    /// How many formats there may be: ids run from 0 to `MAX - 1`.
    pub const MAX: usize = 8;

    /// The format `spec` declares.
    pub const fn of(spec: &'static FormatSpec) -> Self {
        Self(spec)
    }

    /// The id.
    pub fn id(self) -> u8 {
        self.0.id
    }

    /// Metric label.
    pub fn label(self) -> &'static str {
        self.0.label
    }
}

impl PartialEq for Format {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for Format {}

impl std::hash::Hash for Format {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.id.hash(h);
    }
}

/// A member's role in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The room's one media sender (the creator by default).
    Sender,
    /// Any other member.
    Receiver,
}

impl Role {
    /// Parses `sender` / `receiver` (case-insensitive).
    pub fn parse(s: &str) -> Result<Self, CoreError> {
        if s.eq_ignore_ascii_case("sender") {
            Ok(Self::Sender)
        } else if s.eq_ignore_ascii_case("receiver") {
            Ok(Self::Receiver)
        } else {
            Err(CoreError::bad_request(format!(
                "Invalid role '{s}': expected 'sender' or 'receiver'"
            )))
        }
    }

    /// `sender` / `receiver`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sender => "sender",
            Self::Receiver => "receiver",
        }
    }
}

/// Which kind of signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// SDP offer.
    Offer,
    /// SDP answer.
    Answer,
    /// ICE candidate.
    IceCandidate,
}

impl SignalKind {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::IceCandidate => "ice_candidate",
        }
    }
}

/// The opaque body of a signal: SDP and candidates are carried, never interpreted.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SignalBody {
    /// SDP of an offer or answer.
    pub sdp: Option<String>,
    /// ICE candidate, a string or an object.
    pub candidate: Option<Value>,
    /// Candidate's media stream id.
    pub sdp_mid: Option<String>,
    /// Candidate's m-line index.
    pub sdp_m_line_index: Option<u32>,
    /// Fields the server does not interpret, passed through.
    pub extra: Map<String, Value>,
}

/// A signal on its way to a peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Offer, answer or candidate.
    pub kind: SignalKind,
    /// The sender, stamped by the hub.
    pub from: ClientId,
    /// The target peer; `None` for a signal to every other member of `room`.
    pub target: Option<ClientId>,
    /// The room it belongs to, if the sender named one.
    pub room: Option<RoomId>,
    /// The payload.
    pub body: SignalBody,
}

/// Something that happened, told to one or more connections. Serialisable: it crosses
/// nodes (see [`crate::router`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Another member joined a room.
    PeerJoined {
        /// The room.
        room: RoomId,
        /// Who joined.
        client: ClientId,
        /// Their role.
        role: Role,
        /// Their join metadata.
        metadata: Value,
    },
    /// Another member left a room.
    PeerLeft {
        /// The room.
        room: RoomId,
        /// Who left.
        client: ClientId,
        /// Why.
        reason: String,
    },
    /// Another member's connection dropped; its session waits `window` seconds for a
    /// RESUME before it leaves.
    PeerReconnecting {
        /// The room.
        room: RoomId,
        /// Whose connection dropped.
        client: ClientId,
        /// Seconds it has to come back.
        window: u64,
    },
    /// A room the receiver was in has terminated.
    RoomClosed {
        /// The room.
        room: RoomId,
        /// Why.
        reason: String,
    },
    /// The credential the session connected with expires soon: hand the server a fresh
    /// one (a token refresh) before `expires_at`, or the connection closes then.
    CredentialExpiring {
        /// When it expires, Unix seconds.
        expires_at: i64,
    },
    /// A relayed offer, answer or candidate.
    Signal(Signal),
    /// Between nodes only, never told to a connection: a member published tracks on the
    /// room's media backend (SFU mode), which each node pulls for its own members.
    MediaPublished {
        /// The room.
        room: RoomId,
        /// Who published.
        client: ClientId,
        /// What, as the backend describes it ([`crate::media::Media::published`]).
        tracks: Value,
    },
}

impl Event {
    /// An estimate of the event's encoded size in bytes: its strings and values plus a
    /// fixed allowance for the envelope.
    pub fn size(&self) -> usize {
        const ENVELOPE: usize = 128;
        ENVELOPE
            + match self {
                Self::PeerJoined {
                    room,
                    client,
                    metadata,
                    ..
                } => room.as_str().len() + client.as_str().len() + value_size(metadata),
                Self::PeerLeft {
                    room,
                    client,
                    reason,
                } => room.as_str().len() + client.as_str().len() + reason.len(),
                Self::RoomClosed { room, reason } => room.as_str().len() + reason.len(),
                Self::CredentialExpiring { .. } => 16,
                Self::PeerReconnecting { room, client, .. } => {
                    room.as_str().len() + client.as_str().len() + 8
                }
                Self::MediaPublished {
                    room,
                    client,
                    tracks,
                } => room.as_str().len() + client.as_str().len() + value_size(tracks),
                Self::Signal(s) => {
                    let b = &s.body;
                    s.from.as_str().len()
                        + s.target.as_ref().map_or(0, |t| t.as_str().len())
                        + s.room.as_ref().map_or(0, |r| r.as_str().len())
                        + b.sdp.as_ref().map_or(0, String::len)
                        + b.candidate.as_ref().map_or(0, value_size)
                        + b.sdp_mid.as_ref().map_or(0, String::len)
                        + b.extra
                            .iter()
                            .map(|(k, v)| k.len() + 4 + value_size(v))
                            .sum::<usize>()
                }
            }
    }

    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PeerJoined { .. } => "peer_joined",
            Self::PeerLeft { .. } => "peer_left",
            Self::RoomClosed { .. } => "room_closed",
            Self::PeerReconnecting { .. } => "peer_reconnecting",
            Self::CredentialExpiring { .. } => "credential_expiring",
            Self::MediaPublished { .. } => "media_published",
            Self::Signal(s) => s.kind.label(),
        }
    }
}

/// Roughly the bytes of `v` encoded as JSON. Payloads are bounded in nesting before they
/// are decoded, so the recursion is too.
fn value_size(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 8,
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| value_size(x) + 1).sum::<usize>(),
        Value::Object(o) => {
            2 + o
                .iter()
                .map(|(k, x)| k.len() + 4 + value_size(x))
                .sum::<usize>()
        }
    }
}

/// An event plus its id, shared by all receivers, with a lazily filled cache of its
/// encoding per wire format: a broadcast is encoded once per format present, and the
/// encoded `Bytes` are shared by every receiver of that format.
#[derive(Debug)]
pub struct Envelope {
    /// Frame id: fresh for hub events, the sender's for relayed signals.
    pub id: Uuid,
    /// The event.
    pub event: Event,
    /// When the hub accepted the event: writers measure relay latency from here.
    pub accepted_at: Instant,
    /// An estimate of the event's encoded size, counted against queues' byte limits.
    pub size: usize,
    cache: [OnceLock<Option<Bytes>>; Format::MAX],
}

impl Envelope {
    /// Wraps an event with a fresh id.
    pub fn new(event: Event) -> Arc<Self> {
        Self::with_id(Uuid::new_v4(), event)
    }

    /// Wraps an event with a given id.
    pub fn with_id(id: Uuid, event: Event) -> Arc<Self> {
        Arc::new(Self {
            id,
            size: event.size(),
            event,
            accepted_at: Instant::now(),
            cache: Default::default(),
        })
    }

    /// The event encoded for `format`, computed by `encode` the first time any receiver
    /// of that format asks. `None` if the format cannot express the event.
    pub fn encoded(
        &self,
        format: Format,
        encode: impl FnOnce(&Envelope) -> Option<Bytes>,
    ) -> Option<Bytes> {
        self.cache[usize::from(format.id())]
            .get_or_init(|| encode(self))
            .clone()
    }
}

/// Why the hub ends a session's connection. Each edge maps a reason to its close code in
/// one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client's outbound queue overflowed.
    SlowConsumer(super::outbox::Overflow),
    /// A new session of the same client replaced this one.
    Replaced,
    /// The connection's room terminated (dialects bound to one room).
    RoomClosed,
    /// The server is shutting down.
    ShuttingDown,
    /// A new connection resumed the session: this one ends without it.
    Resumed,
    /// An admin kicked the client, saying why.
    Kicked(String),
    /// The credential the session connected with expired, and no fresh one came.
    CredentialExpired,
}

impl CloseReason {
    /// The reason for a person (a close frame's text: at most 123 bytes).
    pub fn text(&self) -> String {
        match self {
            Self::SlowConsumer(over) => format!("slow consumer: {over} queued and unread"),
            Self::Replaced => "session replaced by a newer connection".into(),
            Self::RoomClosed => "room closed".into(),
            Self::ShuttingDown => "server shutting down".into(),
            Self::Resumed => "session resumed on another connection".into(),
            Self::CredentialExpired => "credential expired: reconnect with a fresh token".into(),
            Self::Kicked(why) => {
                let mut t = format!("kicked by an admin: {why}");
                if t.len() > 123 {
                    let mut end = 120;
                    while !t.is_char_boundary(end) {
                        end -= 1;
                    }
                    t.truncate(end);
                    t.push_str("...");
                }
                t
            }
        }
    }

    /// The error the client is sent before the close, if any.
    pub fn error(&self) -> Option<CoreError> {
        match self {
            Self::Kicked(why) => Some(CoreError::forbidden(format!("Kicked by an admin: {why}"))),
            Self::CredentialExpired => Some(CoreError::unauthorized(
                "Credential expired: reconnect with a fresh token (or refresh it before it expires)",
            )),
            Self::Replaced => Some(CoreError::new(
                crate::error::ErrorKind::SessionReplaced,
                "Session replaced: the same client_id connected again",
            )),
            _ => None,
        }
    }

    /// The reason the session's rooms are told when it leaves them.
    pub fn leave_reason(&self) -> &'static str {
        match self {
            Self::ShuttingDown => "server shutting down",
            _ => "disconnected",
        }
    }
}

impl Outbound {
    /// The bytes this item holds, as counted against a queue's byte limit: the frame's
    /// length for encoded items, an estimate of the encoding for events.
    pub fn size(&self) -> usize {
        match self {
            Self::Frame(b) => b.len(),
            Self::Encoded(e) => e.len(),
            Self::Event(env) => env.size,
            Self::Mark(_) => 0,
        }
    }
}

/// One item of a connection's outbound queue.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A shared event, encoded by the writer for its wire format.
    Event(Arc<Envelope>),
    /// Bytes already encoded for this connection (a response).
    Frame(Bytes),
    /// A relayed signal an edge encoded for receivers of one format, without decoding it.
    Encoded(Encoded),
    /// Not a frame: the next item came from this node's inbox stream at this place
    /// (cluster mode, resumable sessions; the writer keeps it with the frames it mirrors).
    Mark(crate::router::InboxPos),
}

/// A relayed signal pre-encoded by an edge for connections of one [`Format`] (the hub
/// hands it only to receivers of that format): a short head copied by value, then shared
/// pieces (the sender's stamp, a slice of the bytes read), written in order. Nothing is
/// allocated for the pieces. Kept as small as an event's queue slot allows: queues hold
/// these by value.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// The head (a frame header): at most [`Encoded::HEAD`] bytes, `head_len` used.
    pub head: [u8; Encoded::HEAD],
    /// Bytes of `head` in use.
    pub head_len: u8,
    /// Offer, answer or candidate (for metrics).
    pub kind: SignalKind,
    /// The pieces after the head.
    pub parts: [Bytes; 2],
    /// When the hub accepted it (for the relay latency).
    pub accepted_at: Instant,
}

impl Encoded {
    /// The largest head.
    pub const HEAD: usize = 22;

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.head_len) + self.parts.iter().map(Bytes::len).sum::<usize>()
    }

    /// Whether it holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The head in use.
    pub fn head(&self) -> &[u8] {
        &self.head[..usize::from(self.head_len)]
    }
}
