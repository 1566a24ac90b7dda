//! The servers the bench drives and how to speak to each: connecting (from one of several
//! 127.0.0.x source addresses), the hello that proves a connection is established, the
//! signal messages with the send timestamp inside the payload, and classifying what comes
//! back.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    str::FromStr,
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{self, Message, client::IntoClientRequest, protocol::WebSocketConfig},
};

use crate::payload::{self, Kind};

/// A client WebSocket over plain TCP.
pub type Ws = WebSocketStream<TcpStream>;

/// Which server is on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// signal-manager's binary protocol on `/`.
    SignalManager,
    /// The minimal relay of this crate (`signal-bench floor-server`).
    Floor,
    /// PeerJS server (npm `peer`).
    Peerjs,
    /// `matchbox_server`.
    Matchbox,
}

impl Target {
    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::SignalManager => "signal-manager",
            Self::Floor => "floor",
            Self::Peerjs => "peerjs",
            Self::Matchbox => "matchbox",
        }
    }

    /// Whether the server has rooms (storm and fan-out apply).
    pub fn has_rooms(self) -> bool {
        matches!(self, Self::SignalManager | Self::Matchbox | Self::Floor)
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        <Self as clap::ValueEnum>::from_str(s, true)
    }
}

/// What the bench failed at.
#[derive(Debug)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<tungstenite::Error> for BenchError {
    fn from(e: tungstenite::Error) -> Self {
        Self(format!("websocket: {e}"))
    }
}

impl From<std::io::Error> for BenchError {
    fn from(e: std::io::Error) -> Self {
        Self(format!("io: {e}"))
    }
}

/// Shorthand.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Builds an error from anything printable.
pub fn err(e: impl std::fmt::Display) -> BenchError {
    BenchError(e.to_string())
}

/// How to reach a server.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Which server.
    pub target: Target,
    /// Its address; must be in 127.0.0.0/8.
    pub addr: SocketAddr,
    /// Further nodes of the same signal-manager cluster: client `i` connects to node
    /// `i % (1 + also.len())` (`addr` first), so the two peers of a pair are on different
    /// nodes.
    pub also: Vec<SocketAddr>,
    /// HS256 secret for signal-manager JWTs (`auth.token_secret`).
    pub jwt_secret: Option<String>,
    /// Number of source addresses (127.S.0.1 ..= 127.S.0.N).
    pub sources: u8,
    /// S: the second octet of the source addresses. A fresh one per run keeps a run
    /// clear of the previous run's TIME_WAIT sockets, which otherwise make every `bind`
    /// search a crowded port range (seen: connects 20× slower after a 19k run).
    pub source_net: u8,
    /// Prefix of client ids and room names, unique per run.
    pub run_id: String,
    /// Read buffer of client sockets.
    pub read_buffer: usize,
    /// signal-manager: CONNECT asking for resumable sessions (`"resume": true`).
    pub resume: bool,
}

impl Endpoint {
    /// Checks the address is loopback (the workplace rule: load goes to 127.0.0.0/8 only).
    pub fn check(&self) -> Result<()> {
        for a in std::iter::once(&self.addr).chain(&self.also) {
            if !a.ip().is_loopback() {
                return Err(err(format!(
                    "refusing {a}: load tests target loopback (127.0.0.0/8) only"
                )));
            }
        }
        if !self.also.is_empty() && self.target != Target::SignalManager {
            return Err(err("--also-addr: only signal-manager runs as a cluster"));
        }
        if self.target == Target::SignalManager && self.jwt_secret.is_none() {
            return Err(err(
                "signal-manager needs --jwt-secret (the server's auth.token_secret)",
            ));
        }
        Ok(())
    }

    fn source(&self, index: u32) -> IpAddr {
        let n = u32::from(self.sources.max(1));
        IpAddr::V4(Ipv4Addr::new(
            127,
            self.source_net.max(1),
            0,
            1 + (index % n) as u8,
        ))
    }

    /// The id a client with this index uses (signal-manager client_id, PeerJS id).
    pub fn client_id(&self, index: u32) -> String {
        format!("{}-{index}", self.run_id)
    }

    fn ws_config(&self) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(self.read_buffer)
            .write_buffer_size(64 * 1024)
            .max_message_size(Some(1 << 20))
            .max_frame_size(Some(1 << 20))
    }

    /// Opens a WebSocket for client `index` (in `room` where the target has rooms on
    /// its URL) and completes the target's hello. Returns the connected peer.
    pub async fn connect(&self, index: u32, room: Option<&str>) -> Result<Peer> {
        // The node this client goes to (the one server, but for a cluster).
        let node = match index as usize % (1 + self.also.len()) {
            0 => self.addr,
            i => self.also[i - 1],
        };
        let url = match self.target {
            Target::SignalManager => format!("ws://{node}/"),
            Target::Floor => match room {
                Some(r) => format!("ws://{}/{index}?room={r}", self.addr),
                None => format!("ws://{}/{index}", self.addr),
            },
            Target::Peerjs => format!(
                "ws://{}/peerjs?key=peerjs&id={}&token=t{index}",
                self.addr,
                self.client_id(index)
            ),
            Target::Matchbox => format!(
                "ws://{}/{}",
                self.addr,
                room.map(str::to_owned)
                    .unwrap_or_else(|| format!("{}-solo-{index}", self.run_id))
            ),
        };
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::new(self.source(index), 0))?;
        let tcp = sock.connect(node).await?;
        tcp.set_nodelay(true)?;
        let req = url.into_client_request()?;
        let (mut ws, _) = client_async_with_config(req, tcp, Some(self.ws_config())).await?;
        let mut token = String::new();
        let id = match self.target {
            Target::SignalManager => {
                let id = self.client_id(index);
                let secret = self.jwt_secret.as_deref().unwrap_or_default();
                let jwt = signal_core::auth::issue_jwt(secret, &id, None, 24 * 3600)
                    .map_err(|e| err(e.message))?;
                token = jwt.clone();
                let mut body = serde_json::json!({
                    "client_id": id, "auth_token": jwt, "version": "1.0.0",
                });
                if self.resume {
                    body["resume"] = serde_json::Value::Bool(true);
                }
                sm_request(&mut ws, 0x01, &body, 0x02).await?;
                id
            }
            Target::Floor => {
                let m = next_data(&mut ws).await?;
                if m.len() != 4 {
                    return Err(err("floor: expected a 4-byte welcome"));
                }
                index.to_string()
            }
            Target::Peerjs => {
                let m = next_data(&mut ws).await?;
                if !contains(&m, br#""OPEN""#) {
                    return Err(err(format!(
                        "peerjs: expected OPEN, got {}",
                        String::from_utf8_lossy(&m)
                    )));
                }
                self.client_id(index)
            }
            Target::Matchbox => {
                let m = next_data(&mut ws).await?;
                let v: serde_json::Value = serde_json::from_slice(&m).map_err(err)?;
                v.get("IdAssigned")
                    .and_then(|x| x.as_str())
                    .ok_or_else(|| {
                        err(format!(
                            "matchbox: expected IdAssigned, got {}",
                            String::from_utf8_lossy(&m)
                        ))
                    })?
                    .to_owned()
            }
        };
        Ok(Peer {
            ws,
            id,
            index,
            token,
        })
    }
}

/// A connected, authenticated client.
pub struct Peer {
    /// The socket.
    pub ws: Ws,
    /// The id others address it by.
    pub id: String,
    /// Its index in the run.
    pub index: u32,
    /// signal-manager: the JWT it connected with (also good for ROOM_* requests).
    pub token: String,
}

/// The next data message (binary or text) as bytes; pings and pongs are skipped.
pub async fn next_data(ws: &mut Ws) -> Result<Bytes> {
    let fut = async {
        while let Some(m) = ws.next().await {
            match m? {
                Message::Binary(b) => return Ok(b),
                Message::Text(t) => return Ok(Bytes::from(t)),
                Message::Close(c) => return Err(err(format!("closed by server: {c:?}"))),
                _ => {}
            }
        }
        Err(err("connection closed"))
    };
    tokio::time::timeout(Duration::from_secs(30), fut)
        .await
        .map_err(|_| err("timed out waiting for the server"))?
}

/// Sends a signal-manager request frame and waits for the frame answering it (same UUID),
/// skipping events. An ERROR answer or another type than `ack` is an error.
pub async fn sm_request(
    ws: &mut Ws,
    msg_type: u8,
    body: &serde_json::Value,
    ack: u8,
) -> Result<Bytes> {
    let id = uuid::Uuid::new_v4();
    let payload = serde_json::to_vec(body).map_err(err)?;
    ws.send(Message::Binary(sm_frame(
        msg_type,
        *id.as_bytes(),
        &payload,
    )))
    .await?;
    loop {
        let f = next_data(ws).await?;
        if f.len() < 21 || f[2..18] != id.as_bytes()[..] {
            continue;
        }
        if f[1] == ack {
            return Ok(f);
        }
        return Err(err(format!(
            "signal-manager answered 0x{:02X}: {}",
            f[1],
            String::from_utf8_lossy(&f[21..])
        )));
    }
}

/// A binary-protocol frame with a JSON payload.
pub fn sm_frame(msg_type: u8, id: [u8; 16], payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(21 + payload.len());
    b.put_u8(0xAA);
    b.put_u8(msg_type);
    b.put_slice(&id);
    b.put_u8(0x02);
    b.put_u16(payload.len() as u16);
    b.put_slice(payload);
    b.freeze()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Where a signal goes.
#[derive(Debug, Clone)]
pub enum Dest {
    /// One peer, by the id the target knows it by.
    Peer(String),
    /// One peer, naming the room both are in (signal-manager checks membership).
    PeerInRoom(String, String),
    /// Every other member of a room (the floor's broadcast).
    Room(String),
}

/// Prebuilt messages from one sender to one destination, each split around the 13-digit
/// timestamp so that sending costs one copy.
pub struct Templates {
    target: Target,
    parts: [(Bytes, Bytes); 3],
    sm_types: [u8; 3],
    seq: u64,
    sender: u32,
}

impl Templates {
    /// Messages of `sizes` bytes (whole WebSocket message) for candidate, offer, answer.
    pub fn new(target: Target, sender: u32, dest: &Dest, sizes: [usize; 3]) -> Templates {
        let kinds = [Kind::Candidate, Kind::Offer, Kind::Answer];
        let parts = kinds.map(|k| payload::template(target, k, dest, sizes[k as usize]));
        Templates {
            target,
            parts,
            sm_types: [0x12, 0x10, 0x11],
            seq: 0,
            sender,
        }
    }

    /// The message of `kind` carrying `stamp` (ns since the run's epoch).
    pub fn build(&mut self, kind: Kind, stamp: u64) -> Message {
        let (pre, post) = &self.parts[kind as usize];
        let digits = payload::stamp_digits(stamp);
        let mut b = BytesMut::with_capacity(21 + pre.len() + digits.len() + post.len());
        if self.target == Target::SignalManager {
            // Frame UUID from sender and sequence: unique, no RNG on the hot path.
            self.seq += 1;
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&self.sender.to_be_bytes());
            id[4..12].copy_from_slice(&self.seq.to_be_bytes());
            id[6] = (id[6] & 0x0f) | 0x40;
            b.put_u8(0xAA);
            b.put_u8(self.sm_types[kind as usize]);
            b.put_slice(&id);
            b.put_u8(0x02);
            b.put_u16((pre.len() + digits.len() + post.len()) as u16);
        }
        b.put_slice(pre);
        b.put_slice(&digits);
        b.put_slice(post);
        match self.target {
            Target::SignalManager | Target::Floor => Message::Binary(b.freeze()),
            // The templates are ASCII.
            Target::Peerjs | Target::Matchbox => match String::from_utf8(b.to_vec()) {
                Ok(s) => Message::Text(s.into()),
                Err(_) => Message::Binary(b.freeze()),
            },
        }
    }
}

/// What a received message was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A relayed signal with its timestamp.
    Signal(u64),
    /// A peer joined a room this client is in (PEER_JOINED, NewPeer).
    PeerJoined,
    /// An answer to a request (signal-manager ACK; its type byte).
    Ack(u8),
    /// An error reported by the server.
    Error(String),
    /// Anything else.
    Other,
}

/// Classifies a received message.
pub fn classify(target: Target, m: &[u8]) -> Incoming {
    match target {
        Target::SignalManager => {
            if m.len() < 21 {
                return Incoming::Other;
            }
            match m[1] {
                0x10..=0x12 => stamp_or_error(&m[21..], true),
                0x36 => Incoming::PeerJoined,
                0xFF => Incoming::Error(String::from_utf8_lossy(&m[21..]).into_owned()),
                0x02 | 0x21 | 0x31 | 0x33 | 0x35 | 0x05 => Incoming::Ack(m[1]),
                _ => Incoming::Other,
            }
        }
        Target::Floor => {
            if m.len() > 4 {
                stamp_or_error(&m[4..], true)
            } else {
                Incoming::Other
            }
        }
        Target::Peerjs => {
            let head = &m[..m.len().min(24)];
            if contains(head, b"\"OFFER\"")
                || contains(head, b"\"ANSWER\"")
                || contains(head, b"\"CANDIDATE\"")
            {
                stamp_or_error(m, true)
            } else if contains(head, b"\"ERROR\"")
                || contains(head, b"\"EXPIRE\"")
                || contains(head, b"\"LEAVE\"")
                || contains(head, b"\"ID-TAKEN\"")
            {
                Incoming::Error(String::from_utf8_lossy(m).into_owned())
            } else {
                Incoming::Other
            }
        }
        Target::Matchbox => {
            if m.starts_with(b"{\"Signal\"") {
                stamp_or_error(m, false)
            } else if m.starts_with(b"{\"NewPeer\"") {
                Incoming::PeerJoined
            } else {
                Incoming::Other
            }
        }
    }
}

fn stamp_or_error(m: &[u8], from_end: bool) -> Incoming {
    match payload::find_stamp(m, from_end) {
        Some(s) => Incoming::Signal(s),
        None => Incoming::Error(format!(
            "signal without a timestamp: {}",
            String::from_utf8_lossy(&m[..m.len().min(200)])
        )),
    }
}
