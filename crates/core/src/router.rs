//! The router port: how this node reaches sessions and rooms held by other nodes.
//!
//! The hub holds this node's sessions and rooms and delivers to them itself; whatever it
//! cannot find here goes through the router. A router knows the nodes (membership), which
//! node holds which client (presence), which room ids are taken (the room registry), and
//! carries [`NodeMessage`]s to the node that must deliver them, where they enter that
//! node's hub through its [`Inbox`].
//!
//! One node uses [`LocalRouter`]: presence and the registry in memory, and no other node
//! to reach. A cluster plugs in a router over Redis behind the same trait. Every
//! implementation passes [`contract`].

use std::sync::Weak;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use dashmap::DashSet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    hub::{Event, Role},
    ids::{ClientId, RoomId},
};

#[cfg(any(test, feature = "contract"))]
pub mod contract;
pub mod memory;

/// Outcome of a delivery to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Handed to the node holding the recipient.
    Delivered,
    /// No node holds the recipient.
    NotFound,
}

/// A router that cannot serve now (its backend is unreachable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("router unavailable: {0}")]
pub struct RouterError(pub String);

/// Who a [`NodeMessage`] is for, on the node that receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    /// The newest session of a client.
    Client {
        /// The client.
        client: ClientId,
    },
    /// Every member of a room on the receiving node, but `except`.
    Room {
        /// The room.
        room: RoomId,
        /// A member not to tell (the sender).
        except: Option<ClientId>,
    },
}

/// An event on its way to another node. Serialisable: it crosses processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMessage {
    /// The event's id, kept end to end (a relayed signal's frame id).
    pub id: Uuid,
    /// The node that sent it.
    pub from_node: String,
    /// Who it is for.
    pub to: Recipient,
    /// What happened.
    pub event: Event,
    /// A signal as the sender's edge encoded it: a receiver of the same format gets these
    /// bytes, as on one node (the event is for every other receiver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<RawFrame>,
}

/// A signal's frame as its sender's edge encoded it, carried to another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawFrame {
    /// The format's id ([`crate::hub::Format::id`]; every node runs the same build).
    pub format: u8,
    /// The frame's head.
    #[serde(with = "as_bytes")]
    pub head: bytes::Bytes,
    /// The rest of the frame.
    #[serde(with = "as_bytes")]
    pub body: bytes::Bytes,
    /// The message's event carries no signal body: a receiver of another format gets it
    /// from `body`, by the decoder registered for `format`
    /// ([`register_body_decoder`](crate::hub::register_body_decoder)).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_only_here: bool,
}

/// `Bytes` as a byte string (compact in CBOR, an array in JSON).
mod as_bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(b: &bytes::Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(b)
    }

    struct V;

    impl<'de> de::Visitor<'de> for V {
        type Value = bytes::Bytes;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Ok(bytes::Bytes::copy_from_slice(v))
        }
        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 16));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out.into())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bytes::Bytes, D::Error> {
        d.deserialize_bytes(V)
    }
}

/// Where a message from another node sits in this node's inbox stream (cluster mode with
/// resume on): the stream entry's id (`ms-seq`) and the message's place in that entry's
/// batch. Ordered as the node received them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InboxPos {
    /// The entry id's milliseconds.
    pub ms: u64,
    /// The entry id's sequence.
    pub seq: u64,
    /// The message's index in the entry's batch.
    pub idx: u32,
}

impl InboxPos {
    /// The stream entry id, `ms-seq`.
    pub fn entry_id(&self) -> String {
        format!("{}-{}", self.ms, self.seq)
    }

    /// Parses an entry id (`ms-seq`) and an index.
    pub fn parse(entry: &str, idx: u32) -> Option<Self> {
        let (ms, seq) = entry.split_once('-')?;
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
            idx,
        })
    }
}

impl std::fmt::Display for InboxPos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}/{}", self.ms, self.seq, self.idx)
    }
}

impl std::str::FromStr for InboxPos {
    type Err = RouterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split_once('/')
            .and_then(|(e, i)| Self::parse(e, i.parse().ok()?))
            .ok_or_else(|| RouterError(format!("not an inbox position: {s:?}")))
    }
}

/// A resumable session as the cluster keeps it, under its resume token: what any node
/// needs to take it over when its node is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    /// The client.
    pub client: ClientId,
    /// The session's id (kept across resumes).
    pub session: Uuid,
    /// The node holding it; empty once released by a node that let go of it.
    pub node: String,
    /// Its wire format's id.
    pub format: u8,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Its metadata.
    pub metadata: Value,
    /// Its display name.
    pub display_name: Option<String>,
    /// When it connected.
    pub connected_at: DateTime<Utc>,
    /// Its rooms, written when its node was lost (the node's member index is gone then).
    #[serde(default)]
    pub rooms: Vec<RoomId>,
    /// Its node let go of it for another node to take it over.
    #[serde(default)]
    pub released: bool,
}

/// A frame a resumable session's connection sent, as kept in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirroredFrame {
    /// Its sequence number.
    pub seq: u64,
    /// Its payload.
    pub payload: bytes::Bytes,
    /// The last inbox message queued for the session before this frame (see
    /// [`Router::inbox_since`]).
    pub hw: Option<InboxPos>,
}

/// What [`Router::take_over`] took: the session's record and the frames kept of it.
#[derive(Debug, Clone)]
pub struct Takeover {
    /// The record as it was.
    pub record: ResumeRecord,
    /// The frames kept, oldest first.
    pub frames: Vec<MirroredFrame>,
}

/// Where messages from other nodes enter this node: the hub.
pub trait Inbox: Send + Sync + 'static {
    /// Delivers `msg` to its recipients on this node; returns how many sessions got it.
    fn receive(&self, msg: NodeMessage) -> usize;

    /// [`receive`](Self::receive) for a message read from this node's inbox stream at
    /// `pos`: resumable sessions note where they are in it.
    fn receive_at(&self, msg: NodeMessage, _pos: Option<InboxPos>) -> usize {
        self.receive(msg)
    }

    /// Another node is resuming the session `token` names: this node lets go of it
    /// (closes its connection if it has one, and forgets it without it leaving its
    /// rooms), then marks it released ([`Router::resume_release`]).
    fn release(&self, _token: &str) {}

    /// A newer session of `client` opened on another node and the client may hold only
    /// one: this node closes its sessions of `client` (they leave their rooms).
    fn evict(&self, _client: &ClientId) {}

    /// An admin removed `client` on another node: this node closes its sessions of
    /// `client`, or, with `room`, takes them out of that room, telling them `reason`.
    fn kick(&self, _client: &ClientId, _room: Option<&RoomId>, _reason: &str) {}

    /// The router reached its backend again after losing it: this node puts back what
    /// it holds (see [`Router::restore`]) and settles what changed meanwhile.
    fn reconnected(&self) {}

    /// Node `node` holds no session of `clients` (it was sent messages for them), or,
    /// with no clients named, `node` does not answer at all: what this node remembered
    /// of where those clients are is wrong now.
    fn gone(&self, _node: &str, _clients: &[ClientId]) {}

    /// What this node holds, for the cluster's counts.
    fn load(&self) -> NodeLoad {
        NodeLoad::default()
    }

    /// Node `node` was lost (it stopped renewing its presence) and this node was chosen
    /// to clean up after it: its members leave their rooms (see
    /// [`Router::members_on`]).
    fn node_lost(&self, _node: &str) {}
}

/// What one node holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Sessions.
    pub sessions: usize,
    /// Sessions in no room.
    pub sessions_without_room: usize,
    /// Room memberships of its sessions.
    pub members: usize,
}

/// A room as the cluster's registry keeps it (what a node needs to admit a member of a
/// room created on another node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomEntry {
    /// The room's record id.
    pub uuid: Uuid,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Member cap.
    pub max_participants: usize,
    /// Room metadata.
    pub metadata: Value,
    /// The sender's offer, handed to joiners.
    pub offer_sdp: Option<String>,
}

/// A member as the cluster's registry keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The member.
    pub client: ClientId,
    /// The node holding its session.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// Its join metadata.
    pub metadata: Value,
    /// Its capabilities.
    pub capabilities: Vec<String>,
    /// Its display name, if known.
    pub display_name: Option<String>,
    /// When it joined.
    pub joined_at: DateTime<Utc>,
    /// Its room session id.
    pub room_session: Uuid,
    /// What it published on the room's media backend (SFU mode), as the backend
    /// describes it ([`crate::media::Media::published`]), for members on other nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<Value>,
}

/// The registry's answer to one join of [`Router::join_members`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinVerdict {
    /// Admitted.
    Joined,
    /// The room does not exist (any more).
    NoRoom,
    /// The client is a member already.
    AlreadyIn,
    /// The room is at its cap.
    Full,
    /// A sender joined while the room has one.
    SenderTaken,
}

/// The registry's answer to [`Router::leave_member`].
#[derive(Debug, Clone, PartialEq)]
pub enum LeaveVerdict {
    /// The client was not a member (or the room is gone).
    NotMember,
    /// The member left; the room goes on.
    Left(MemberEntry),
    /// The member left and the room ended with it (the sender, or the last member left):
    /// the room is gone from the registry, and the caller alone records its end.
    Terminated {
        /// The room as it was.
        entry: RoomEntry,
        /// The member that left.
        member: MemberEntry,
        /// The members that were still in it, on any node.
        remaining: Vec<MemberEntry>,
        /// Members the room ever had.
        ever_joined: usize,
    },
}

/// Routing between nodes.
#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Whether other nodes may exist. When not, the hub builds no [`NodeMessage`] at
    /// all: a single node pays nothing for the router.
    fn has_other_nodes(&self) -> bool {
        true
    }

    /// Sets where messages for this node are delivered (the hub, once, at start). Held
    /// weakly: the router never keeps the hub alive.
    fn attach(&self, inbox: Weak<dyn Inbox>);

    /// A session of `client` opened on this node. Returns the other nodes that hold
    /// sessions of `client` (none on a single node).
    async fn session_opened(&self, client: &ClientId) -> Result<Vec<String>, RouterError>;

    /// Tells `nodes` to close their sessions of `client` (a newer one opened here and the
    /// client may hold only one).
    async fn evict_elsewhere(&self, _client: &ClientId, _nodes: &[String]) {}

    /// Forgets a lost node once its members have left their rooms: its presence, its
    /// clients' presence, its indexes.
    async fn forget_node(&self, _node: &str) {}

    /// A session of `client` on this node ended.
    async fn session_closed(&self, client: &ClientId);

    /// The node holding a session of `client`, as the shared registry knows it (this
    /// node included). A single-node router keeps no registry and knows of none.
    async fn locate(&self, client: &ClientId) -> Option<String>;

    /// Carries `msg` to the other node(s) holding its recipient: a message for a client
    /// to the node holding it, a message for a room to every other node holding members
    /// of it. [`Remote::NotFound`] when no other node does (this node's own sessions are
    /// the hub's to deliver, never sent through here).
    async fn send(&self, msg: NodeMessage) -> Remote;

    /// Takes `room` in the registry: true if it was free. Room ids are unique across
    /// every node of the router.
    async fn claim_room(&self, room: &RoomId) -> Result<bool, RouterError>;

    /// Frees `room` in the registry.
    async fn release_room(&self, room: &RoomId);

    // --- The cluster's room registry. The hub calls these only when
    // [`has_other_nodes`](Router::has_other_nodes) is true; a single node's rooms are the
    // hub's own, and the defaults say so.

    /// Takes `room` with `creator` as its first member: true if the id was free.
    async fn create_room(
        &self,
        _room: &RoomId,
        _entry: &RoomEntry,
        _creator: &MemberEntry,
    ) -> Result<bool, RouterError> {
        Err(single_node())
    }

    /// The room and its members on every node, if it exists.
    async fn room_entry(
        &self,
        _room: &RoomId,
    ) -> Result<Option<(RoomEntry, Vec<MemberEntry>)>, RouterError> {
        Err(single_node())
    }

    /// Rooms in the registry.
    async fn room_ids(&self) -> Result<Vec<RoomId>, RouterError> {
        Err(single_node())
    }

    /// Admits `joins` to `room` in order, atomically against every other node: a verdict
    /// per join, and the members before the first of them.
    async fn join_members(
        &self,
        _room: &RoomId,
        _joins: &[MemberEntry],
    ) -> Result<(Vec<JoinVerdict>, Vec<MemberEntry>), RouterError> {
        Err(single_node())
    }

    /// Takes `client` out of `room`; when it was the sender or the last member, the room
    /// ends: removed from the registry in the same step, so exactly one caller is told
    /// [`LeaveVerdict::Terminated`].
    async fn leave_member(
        &self,
        _room: &RoomId,
        _client: &ClientId,
    ) -> Result<LeaveVerdict, RouterError> {
        Err(single_node())
    }

    /// Takes `client` out of `room` without ending it (a join undone).
    async fn forget_member(&self, _room: &RoomId, _client: &ClientId) {}

    /// Replaces a member's entry (its [`MemberEntry::media`] changed); nothing if it is
    /// no member of the room (it left meanwhile).
    async fn update_member(&self, _room: &RoomId, _entry: &MemberEntry) -> Result<(), RouterError> {
        Ok(())
    }

    /// Whether `client` is a member of one of `rooms`, on any node.
    async fn in_any_room(
        &self,
        _client: &ClientId,
        _rooms: &[RoomId],
    ) -> Result<bool, RouterError> {
        Err(single_node())
    }

    /// Queues `msg` for `node` (found already, by [`locate`](Router::locate) or from what
    /// the hub learnt) without waiting for it to be sent:
    /// messages posted for one node reach it in the order they were posted, batched with
    /// others on the way. An error when the router cannot take it now (its backend is
    /// unreachable, or too much is waiting already); a message taken may still be lost
    /// if `node` is lost meanwhile.
    fn post(&self, _node: &str, _msg: NodeMessage) -> Result<(), RouterError> {
        Err(single_node())
    }

    /// Sends `msg` to each node of `nodes` but this one (the members of a room that has
    /// just left the registry).
    async fn send_to_nodes(&self, _nodes: &[String], _msg: NodeMessage) {}

    /// The rooms with members on node `node`, and those members (the members a lost node
    /// leaves behind).
    async fn members_on(&self, _node: &str) -> Result<Vec<(RoomId, ClientId)>, RouterError> {
        Err(single_node())
    }

    /// Puts back this node's rooms (with its members) and sessions (client, how many),
    /// after the backend was unreachable or lost its data: what is missing is added,
    /// what is there is left as it is.
    async fn restore(
        &self,
        _rooms: &[(RoomId, RoomEntry, Vec<MemberEntry>)],
        _sessions: &[(ClientId, usize)],
    ) -> Result<(), RouterError> {
        Ok(())
    }

    /// Nodes whose presence is current, this one included.
    async fn nodes(&self) -> Result<Vec<String>, RouterError> {
        Ok(vec![self.node_id().to_owned()])
    }

    /// What every live node holds now, asked of each (a node that does not answer in
    /// time is left out).
    async fn cluster_load(&self) -> Result<Vec<(String, NodeLoad)>, RouterError> {
        Err(single_node())
    }

    // --- Resume across nodes. A single node keeps resumable sessions in memory only,
    // and the defaults say so.

    /// Whether sessions can be resumed on another node (messages to this node are kept
    /// in its inbox stream, and resumable sessions' frames in the cluster).
    fn resumes_across_nodes(&self) -> bool {
        false
    }

    /// Records a resumable session under `token` (held by this node), in place of the
    /// token it `replaces` (a resume).
    async fn resume_open(
        &self,
        _token: &str,
        _record: &ResumeRecord,
        _replaces: Option<&str>,
    ) -> Result<(), RouterError> {
        Err(single_node())
    }

    /// Forgets the resumable session `session` (named by `token`), and the frames kept
    /// of it.
    async fn resume_close(&self, _token: &str, _session: &Uuid) {}

    /// The record `token` names, if any.
    async fn resume_record(&self, _token: &str) -> Result<Option<ResumeRecord>, RouterError> {
        Err(single_node())
    }

    /// Keeps frames a resumable session's connection is about to send (in order), and
    /// drops those older than `oldest`.
    async fn mirror(
        &self,
        _session: &Uuid,
        _frames: Vec<MirroredFrame>,
        _oldest: u64,
    ) -> Result<(), RouterError> {
        Err(single_node())
    }

    /// Takes the session `token` names for this node if `from` still holds it (or it
    /// was released, `from` empty): exactly one caller gets it.
    async fn take_over(&self, _token: &str, _from: &str) -> Result<Option<Takeover>, RouterError> {
        Err(single_node())
    }

    /// The session `token` names was let go of by this node (see [`Inbox::release`]).
    async fn resume_release(&self, _token: &str) {}

    /// Asks `node` to let go of the session `token` names; false when `node` does not
    /// listen (it is gone).
    async fn ask_release(&self, _node: &str, _token: &str) -> Result<bool, RouterError> {
        Err(single_node())
    }

    /// The messages `node` was sent after `after` (all that are kept, without it), in
    /// the order it received them.
    async fn inbox_since(
        &self,
        _node: &str,
        _after: Option<InboxPos>,
    ) -> Result<Vec<(InboxPos, NodeMessage)>, RouterError> {
        Err(single_node())
    }

    /// Moves `client`'s membership of `room` from node `from` to this one: its entry,
    /// as updated, or `None` if it is no longer a member.
    async fn move_member(
        &self,
        _room: &RoomId,
        _client: &ClientId,
        _from: &str,
    ) -> Result<Option<MemberEntry>, RouterError> {
        Err(single_node())
    }

    /// A session of `client` moved here from node `from` (its presence follows).
    async fn session_moved(&self, _client: &ClientId, _from: &str) {}

    /// Resumable sessions `node` held, by token.
    async fn resumables_on(&self, _node: &str) -> Result<Vec<(String, ResumeRecord)>, RouterError> {
        Ok(Vec::new())
    }

    /// `node` was lost holding the session `token` names: its rooms are written into
    /// its record, which now expires after `window` unless taken over.
    async fn resume_orphaned(&self, _token: &str, _rooms: &[RoomId], _window: std::time::Duration) {
    }

    /// Ends the session `token` names if `node` still holds it (nobody took it over):
    /// true when it did (its record and frames are gone then).
    async fn resume_expire(&self, _token: &str, _node: &str) -> bool {
        false
    }

    /// Waits until what this node posted so far was sent.
    async fn posted_sent(&self) {}

    /// Takes or keeps the lease `name` for this node for `ttl`: true while this node
    /// holds it (no other node can take it before it expires unrenewed). A single node
    /// always holds every lease.
    async fn lease(&self, name: &str, ttl: std::time::Duration) -> Result<bool, RouterError> {
        let _ = (name, ttl);
        Ok(true)
    }

    /// Bans `client` on every node until `until_ms` (Unix milliseconds). A single node
    /// keeps its bans itself.
    async fn ban(&self, client: &ClientId, until_ms: i64) -> Result<(), RouterError> {
        let _ = (client, until_ms);
        Ok(())
    }

    /// When `client`'s ban ends (Unix milliseconds), if a node banned it.
    async fn banned_until(&self, client: &ClientId) -> Result<Option<i64>, RouterError> {
        let _ = client;
        Ok(None)
    }

    /// Asks every other node to close its sessions of `client` (or, with `room`, to
    /// take them out of that room), telling them `reason` ([`Inbox::kick`]).
    async fn kick_elsewhere(&self, client: &ClientId, room: Option<&RoomId>, reason: &str) {
        let _ = (client, room, reason);
    }

    /// Whether the router's backend is reachable now (a single node's always is).
    fn is_healthy(&self) -> bool {
        true
    }
}

fn single_node() -> RouterError {
    RouterError("a single node keeps no cluster registry".into())
}

/// The single-node router: the room registry in memory, and no other node to send to or
/// find a client on. It keeps no presence of its own: the hub's sessions are the only
/// ones, and a single node's router holds nothing per connection.
pub struct LocalRouter {
    node_id: String,
    rooms: DashSet<RoomId>,
}

impl std::fmt::Debug for LocalRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRouter")
            .field("node_id", &self.node_id)
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

impl LocalRouter {
    /// A router for the one node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            rooms: DashSet::new(),
        }
    }
}

impl Default for LocalRouter {
    fn default() -> Self {
        Self::new("local")
    }
}

#[async_trait]
impl Router for LocalRouter {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn has_other_nodes(&self) -> bool {
        false
    }

    fn attach(&self, _inbox: Weak<dyn Inbox>) {
        // No other node sends here.
    }

    async fn session_opened(&self, _client: &ClientId) -> Result<Vec<String>, RouterError> {
        Ok(Vec::new())
    }

    async fn session_closed(&self, _client: &ClientId) {}

    async fn locate(&self, _client: &ClientId) -> Option<String> {
        None
    }

    async fn send(&self, _msg: NodeMessage) -> Remote {
        Remote::NotFound
    }

    async fn claim_room(&self, room: &RoomId) -> Result<bool, RouterError> {
        Ok(self.rooms.insert(room.clone()))
    }

    async fn release_room(&self, room: &RoomId) {
        self.rooms.remove(room);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_local_router_keeps_the_contract() {
        super::contract::run(
            |node| std::sync::Arc::new(super::LocalRouter::new(node)),
            false,
        )
        .await;
    }
}
