//! Rooms: creation, joining, leaving and termination in P2P mode, with roles and a
//! participant cap. Each room has a control lock that orders its lifecycle (and the store
//! writes that record it); the member list itself sits behind a short sync lock that the
//! relay path reads without waiting on the store.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use chrono::{DateTime, Utc};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use uuid::Uuid;

use super::{
    Credentials, Hub,
    event::{Envelope, Event, Role},
    session::Session,
};
use crate::{
    auth::verify_token,
    error::{CoreError, ErrorCode, ErrorKind},
    events,
    ids::{ClientId, RoomId},
    media::{MediaError, MediaSession},
    router::{NodeMessage, Recipient},
    store::{
        ClientInRoomRecord, ClientInTerminatedRoomRecord, MemberRecords, RoomCreatedRecord,
        RoomRecord, TerminatedRoomRecord, WebrtcClientRecord,
    },
};

pub(super) struct Room {
    pub(super) id: RoomId,
    pub(super) uuid: Uuid,
    pub(super) created_at: DateTime<Utc>,
    pub(super) metadata: Value,
    pub(super) max_participants: usize,
    pub(super) control: tokio::sync::Mutex<()>,
    pub(super) state: RwLock<RoomState>,
    pub(super) joins: Mutex<JoinQueue>,
    /// Its negotiations as this node saw them, for its termination summary.
    pub(super) figures: NegotiationFigures,
    /// Its signals per second on this node (`room_messages_per_second`); boxed, absent
    /// when there is no limit.
    pub(super) messages: Option<Box<governor::DefaultDirectRateLimiter>>,
}

/// A room's message limiter, if `per_second` sets one.
pub(super) fn message_limiter(per_second: u32) -> Option<Box<governor::DefaultDirectRateLimiter>> {
    std::num::NonZeroU32::new(per_second).map(|n| {
        Box::new(governor::RateLimiter::direct(governor::Quota::per_second(
            n,
        )))
    })
}

/// A room's negotiation figures: offers, their answers and the time each took, offers
/// never answered, and members' first ICE candidates after joining.
#[derive(Default)]
pub(super) struct NegotiationFigures {
    offers: AtomicU64,
    answered: AtomicU64,
    unanswered: AtomicU64,
    answer_ms_total: AtomicU64,
    answer_ms_max: AtomicU64,
    first_candidates: AtomicU64,
    first_candidate_ms_total: AtomicU64,
    first_candidate_ms_max: AtomicU64,
}

impl NegotiationFigures {
    pub(super) fn offer(&self) {
        self.offers.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn answered(&self, waited: std::time::Duration) {
        let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
        self.answered.fetch_add(1, Ordering::Relaxed);
        self.answer_ms_total.fetch_add(ms, Ordering::Relaxed);
        self.answer_ms_max.fetch_max(ms, Ordering::Relaxed);
    }

    pub(super) fn unanswered(&self, n: usize) {
        self.unanswered.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn first_candidate(&self, after: std::time::Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        self.first_candidates.fetch_add(1, Ordering::Relaxed);
        self.first_candidate_ms_total
            .fetch_add(ms, Ordering::Relaxed);
        self.first_candidate_ms_max.fetch_max(ms, Ordering::Relaxed);
    }

    /// The figures as `room_data.negotiation` and `room.terminated` carry them (means
    /// and maxima in milliseconds, `null` when nothing was timed).
    pub(super) fn summary(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mean = |total: u64, n: u64| total.checked_div(n).map_or(Value::Null, |m| json!(m));
        let max = |m: u64, n: u64| if n == 0 { Value::Null } else { json!(m) };
        let (answered, candidates) = (get(&self.answered), get(&self.first_candidates));
        json!({
            "offers": get(&self.offers),
            "answered": answered,
            "unanswered": get(&self.unanswered),
            "offer_answer_ms_mean": mean(get(&self.answer_ms_total), answered),
            "offer_answer_ms_max": max(get(&self.answer_ms_max), answered),
            "first_candidates": candidates,
            "join_first_candidate_ms_mean": mean(get(&self.first_candidate_ms_total), candidates),
            "join_first_candidate_ms_max": max(get(&self.first_candidate_ms_max), candidates),
        })
    }
}

/// Joins waiting for the room's control lock; one task at a time runs them.
#[derive(Default)]
pub(super) struct JoinQueue {
    waiting: Vec<PendingJoin>,
    /// A task is running the queue (it clears this only when it finds the queue empty).
    running: bool,
}

pub(super) struct PendingJoin {
    pub(super) session: Arc<Session>,
    role: Role,
    capabilities: Vec<String>,
    metadata: Value,
    pub(super) reply: oneshot::Sender<Result<RoomJoined, CoreError>>,
}

/// Frees a room's join queue if its task ends any other way than finding it empty (a
/// panic, or the runtime shutting down): the joins it held are answered with an error
/// (their reply is dropped), and the next join starts a new task.
struct JoinRunner<'a> {
    room: &'a Room,
    armed: bool,
}

impl Drop for JoinRunner<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut q = self.room.joins.lock();
            q.running = false;
            q.waiting.clear();
        }
    }
}

/// A room's members on this node. In a cluster, a room's members on other nodes are in
/// the router's registry: each node holding members keeps this replica of the room for
/// its own.
#[derive(Default)]
pub(super) struct RoomState {
    pub(super) members: Vec<Member>,
    pub(super) offer_sdp: Option<String>,
    pub(super) closed: bool,
    pub(super) ever_joined: usize,
    /// In a cluster: the room's members on other nodes and the node of each, as this
    /// node learnt them (the members before its first join, then every PEER_JOINED and
    /// PEER_LEFT). A signal to one of them goes straight to its node; a member missing
    /// here is looked up in the registry.
    pub(super) remote: HashMap<ClientId, RemoteMember>,
    /// Members elsewhere seen leaving, with the PEER_LEFT that said so: the members
    /// before a join, read earlier, do not bring them back, and a member admitted
    /// meanwhile is told.
    pub(super) departed: HashMap<ClientId, Arc<Envelope>>,
    /// Batches of joins the registry admitted here, counted: a member's
    /// [`Member::admission`].
    pub(super) admissions: u64,
}

/// A member on another node, as a replica knows it.
pub(super) struct RemoteMember {
    /// Its node.
    pub(super) node: Arc<str>,
    /// The admission (see [`RoomState::admissions`]) whose members found it in the room
    /// already (0: none did, it was announced): those members are not told it joined.
    pub(super) known_since: u64,
    /// The PEER_JOINED that announced it, if one did: a member of this node admitted
    /// before it, but added to the replica after the announcement, is told then.
    pub(super) announced: Option<Arc<Envelope>>,
}

impl RoomState {
    /// A member on `node` joined (announced by its node). Returns the admission from
    /// which this node's members knew of it already, if one did: only members admitted
    /// before it are to be told.
    pub(super) fn remote_joined(
        &mut self,
        client: &ClientId,
        node: &str,
        env: &Arc<Envelope>,
    ) -> Option<u64> {
        self.departed.remove(client);
        if let Some(m) = self.remote.get_mut(client)
            && &*m.node == node
            && m.known_since > 0
        {
            m.announced = Some(env.clone());
            return Some(m.known_since);
        }
        self.remote.insert(
            client.clone(),
            RemoteMember {
                node: Arc::from(node),
                known_since: 0,
                announced: Some(env.clone()),
            },
        );
        None
    }

    /// A member on another node left (`env`: the PEER_LEFT saying so).
    pub(super) fn remote_left(&mut self, client: &ClientId, env: &Arc<Envelope>) {
        self.remote.remove(client);
        self.departed.insert(client.clone(), env.clone());
    }

    /// What a member admitted by the registry when `before` were the room's members
    /// (on any node) missed while it was being admitted: PEER_JOINED of members
    /// elsewhere admitted after it, PEER_LEFT of those in `before` that left since.
    pub(super) fn missed_by(&self, before: &[ParticipantInfo]) -> Vec<Arc<Envelope>> {
        let listed = |c: &ClientId| before.iter().any(|p| &p.client_id == c);
        let mut out: Vec<Arc<Envelope>> = before
            .iter()
            .filter_map(|p| self.departed.get(&p.client_id).cloned())
            .collect();
        out.extend(
            self.remote
                .iter()
                .filter(|(c, _)| !listed(c))
                .filter_map(|(_, m)| m.announced.clone()),
        );
        out
    }
}

#[derive(Clone)]
pub(super) struct Member {
    pub(super) session: Arc<Session>,
    pub(super) role: Role,
    pub(super) metadata: Value,
    pub(super) capabilities: Vec<String>,
    pub(super) joined_at: DateTime<Utc>,
    pub(super) room_session: Uuid,
    /// In a cluster, the admission that let it in (0 on a single node, or for the
    /// creator): see [`RemoteMember::known_since`].
    pub(super) admission: u64,
}

impl Member {
    pub(super) fn client(&self) -> &ClientId {
        &self.session.client_id
    }
}

/// A member as listed to joiners and over REST.
#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantInfo {
    /// The member.
    pub client_id: ClientId,
    /// Its role.
    pub role: Role,
    /// Its display name, if known.
    pub display_name: Option<String>,
    /// Its join metadata.
    pub metadata: Value,
    /// When it joined.
    pub joined_at: DateTime<Utc>,
}

/// A snapshot of a room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomInfo {
    /// The room.
    pub room_id: RoomId,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// Member cap.
    pub max_participants: usize,
    /// Members, by join time.
    pub participants: Vec<ParticipantInfo>,
}

/// ROOM_CREATE's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomCreated {
    /// The room's id.
    pub room_id: RoomId,
    /// The creator's room session.
    pub session_id: Uuid,
    /// The creator's role.
    pub role: Role,
    /// When created.
    pub created_at: DateTime<Utc>,
    /// What the media backend set up for the creator.
    pub media: MediaSession,
}

/// ROOM_JOIN's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomJoined {
    /// The room.
    pub room_id: RoomId,
    /// The joiner's room session.
    pub session_id: Uuid,
    /// The joiner's role.
    pub role: Role,
    /// When the room was created.
    pub created_at: DateTime<Utc>,
    /// The other members.
    pub participants: Vec<ParticipantInfo>,
    /// The sender's stored offer.
    pub offer_sdp: Option<String>,
    /// What the media backend set up for the joiner.
    pub media: MediaSession,
}

/// ROOM_CREATE, in core terms.
#[derive(Debug, Clone)]
pub struct CreateRoomParams {
    /// Version, client id, token.
    pub creds: Credentials,
    /// Custom id, or generated.
    pub room_id: Option<String>,
    /// `sender` (default) or `receiver`.
    pub role: Option<String>,
    /// Offer handed to joiners.
    pub offer_sdp: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Room metadata (`max_participants`).
    pub metadata: Option<Value>,
}

/// ROOM_JOIN, in core terms.
#[derive(Debug, Clone)]
pub struct JoinRoomParams {
    /// Version, client id, token.
    pub creds: Credentials,
    /// The room.
    pub room_id: String,
    /// `receiver` (default) or `sender`.
    pub role: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Join metadata.
    pub metadata: Option<Value>,
}

// === impl Room ===

impl Room {
    pub(super) fn member_count(&self) -> usize {
        self.state.read().members.len()
    }

    /// Which of `sessions` (one client's) is a member: pointer comparisons, no string
    /// compared per member.
    pub(super) fn member_among(&self, sessions: &[Arc<Session>]) -> Option<Arc<Session>> {
        self.state
            .read()
            .members
            .iter()
            .find(|m| sessions.iter().any(|s| Arc::ptr_eq(&m.session, s)))
            .map(|m| m.session.clone())
    }

    /// Sessions of every member but `me`.
    pub(super) fn other_sessions(&self, me: &Session) -> Vec<Arc<Session>> {
        self.state
            .read()
            .members
            .iter()
            .filter(|m| !std::ptr::eq(Arc::as_ptr(&m.session), me))
            .map(|m| m.session.clone())
            .collect()
    }

    fn info(&self) -> RoomInfo {
        let st = self.state.read();
        RoomInfo {
            room_id: self.id.clone(),
            created_at: self.created_at,
            max_participants: self.max_participants,
            participants: st.members.iter().map(participant).collect(),
        }
    }
}

/// A member's name to show: the one its session carries, else `display_name` in its
/// join metadata.
pub(super) fn shown_name(name: Option<&String>, metadata: &Value) -> Option<String> {
    name.cloned().or_else(|| {
        metadata
            .get("display_name")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
}

pub(super) fn participant(m: &Member) -> ParticipantInfo {
    ParticipantInfo {
        client_id: m.client().clone(),
        role: m.role,
        display_name: shown_name(m.session.display_name.as_ref(), &m.metadata),
        metadata: m.metadata.clone(),
        joined_at: m.joined_at,
    }
}

pub(super) fn member_records(room: &Room, m: &Member) -> MemberRecords {
    MemberRecords {
        client_in_room: ClientInRoomRecord {
            id: m.room_session,
            client_id: m.client().to_string(),
            room_id: room.id.to_string(),
            joined_at: m.joined_at,
            last_activity: m.joined_at,
            status: "Active".into(),
            capabilities: m.capabilities.clone(),
            metadata: m.metadata.clone(),
            record_created_at: Utc::now(),
        },
        webrtc_client: WebrtcClientRecord {
            id: Uuid::new_v4(),
            client_id: m.client().to_string(),
            room_id: room.id.to_string(),
            role: m.role.as_str().into(),
            session_id: Some(m.room_session.to_string()),
            joined_at: m.joined_at,
            status: "Active".into(),
            metadata: m.metadata.clone(),
            record_created_at: Utc::now(),
        },
    }
}

pub(super) fn history(
    room: &Room,
    m: &Member,
    reason: &str,
    by: &str,
    final_status: &str,
) -> ClientInTerminatedRoomRecord {
    let now = Utc::now();
    ClientInTerminatedRoomRecord {
        id: Uuid::new_v4(),
        client_id: m.client().to_string(),
        room_id: room.id.to_string(),
        joined_at: m.joined_at,
        left_at: now,
        termination_reason: reason.into(),
        terminated_by: by.into(),
        final_status: final_status.into(),
        capabilities: m.capabilities.clone(),
        metadata: m.metadata.clone(),
        record_created_at: now,
    }
}

/// `VoluntaryDisconnect` for a leave the client asked for, `Disconnected` otherwise.
pub(super) fn final_status(voluntary: bool) -> &'static str {
    if voluntary {
        "VoluntaryDisconnect"
    } else {
        "Disconnected"
    }
}

// === impl Hub: rooms ===

impl Hub {
    /// Hands a room event to the router for the room's members on other nodes (this
    /// node's were told already); `except` is not told.
    pub(super) async fn tell_other_nodes(
        &self,
        room: &RoomId,
        except: Option<&ClientId>,
        env: &Envelope,
    ) {
        let router = &self.inner.router;
        if !router.has_other_nodes() {
            return;
        }
        let _ = router
            .send(NodeMessage {
                id: env.id,
                from_node: router.node_id().to_owned(),
                to: Recipient::Room {
                    room: room.clone(),
                    except: except.cloned(),
                },
                event: env.event.clone(),
                raw: None,
            })
            .await;
    }
}

/// A join of a client that is a member already.
pub(super) fn already_in(client: &ClientId, room_id: &RoomId) -> CoreError {
    CoreError::new(
        ErrorKind::AlreadyInRoom,
        format!("Client '{client}' is already in room '{room_id}'"),
    )
    .with("room_id", room_id.to_string())
}

/// A join of a room at its cap.
pub(super) fn room_full(room_id: &RoomId, max: usize) -> CoreError {
    CoreError::new(
        ErrorKind::RoomFull,
        format!("Room '{room_id}' is full ({max} participants)"),
    )
    .with("room_id", room_id.to_string())
    .with("max_participants", max)
}

/// A second sender.
pub(super) fn sender_taken(room_id: &RoomId) -> CoreError {
    CoreError::bad_request(format!(
        "Role 'sender' is not available: room '{room_id}' already has a sender"
    ))
}

pub(super) fn not_found(room_id: &RoomId) -> CoreError {
    CoreError::new(
        ErrorKind::RoomNotFound,
        format!("Room '{room_id}' not found"),
    )
    .with("room_id", room_id.to_string())
}

/// A media backend's failure as the client sees it (the backend's messages name its
/// error code and never carry secrets); logged as well.
pub(super) fn media_error(context: &str, e: MediaError) -> CoreError {
    match e {
        MediaError::Refused(m) => CoreError::bad_request(format!("Media backend refused: {m}")),
        MediaError::Unavailable(m) => {
            tracing::warn!(error = %m, "{context}: media backend unavailable");
            CoreError::new(
                ErrorKind::Unavailable,
                format!("Media backend unavailable, retry later: {m}"),
            )
        }
        MediaError::Failed(m) => {
            tracing::warn!(error = %m, "{context}: media backend failed");
            CoreError::new(ErrorKind::MediaFailed, format!("Media backend failed: {m}"))
        }
        MediaError::Timeout(m) => {
            tracing::warn!(error = %m, "{context}: media backend timed out");
            CoreError::new(
                ErrorKind::MediaTimeout,
                format!("Media backend timed out: {m}"),
            )
        }
    }
}

impl Hub {
    /// Checks a ROOM_* request: version, identity, registration and token.
    async fn authorize_member(
        &self,
        session: &Session,
        creds: &Credentials,
    ) -> Result<(), CoreError> {
        self.check_creds(session, creds)?;
        let client = self
            .store()
            .get_client(&creds.client_id)
            .await
            .map_err(|e| CoreError::from_store("room request", e))?
            .ok_or_else(|| {
                CoreError::new(ErrorKind::Unauthenticated, "Client not registered")
                    .with("client_id", creds.client_id.clone())
            })?;
        if verify_token(&creds.auth_token, &client.auth_token) {
            if crate::auth::token_expired(&client.metadata, Utc::now().timestamp()) {
                return Err(CoreError::unauthorized(
                    "Registered token expired: connect with another credential and REGISTER again",
                ));
            }
            return Ok(());
        }
        // A client may present the credential it connected with instead of its
        // registered token (an API key or a JWT).
        self.auth()
            .authenticate(&creds.client_id, &creds.auth_token)
            .await
            .map(|_| ())
            .map_err(|_| CoreError::unauthorized("Invalid client_id or auth_token"))
    }

    fn max_participants(&self, metadata: Option<&Value>) -> Result<usize, CoreError> {
        let cfg = self.config();
        match metadata.and_then(|m| m.get("max_participants")) {
            None | Some(Value::Null) => Ok(cfg.default_max_participants),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 && n as usize <= cfg.max_participants_limit => Ok(n as usize),
                _ => Err(CoreError::bad_request(format!(
                    "Invalid 'metadata.max_participants': expected an integer from 1 to {}",
                    cfg.max_participants_limit
                ))),
            },
        }
    }

    /// ROOM_CREATE: creates a room with the caller as its first member, persisted before
    /// returning. A custom id that is already active is 409.
    pub async fn create_room(
        &self,
        session: &Arc<Session>,
        p: CreateRoomParams,
    ) -> Result<RoomCreated, CoreError> {
        self.authorize_member(session, &p.creds).await?;
        let role = p
            .role
            .as_deref()
            .map(Role::parse)
            .transpose()?
            .unwrap_or(Role::Sender);
        let room_id = match p.room_id.as_deref() {
            Some(id) => RoomId::parse(id)?,
            None => RoomId::generate(),
        };
        self.check_grant(session, room_id.as_str())?;
        self.check_ban_here(&session.client_id).await?;
        self.check_join_rate(&session.client_id)?;
        let max_participants = self.max_participants(p.metadata.as_ref())?;
        self.create_inner(
            session,
            room_id,
            role,
            p.offer_sdp,
            p.capabilities,
            p.metadata,
            // The creator's own member metadata is what it announced on CONNECT.
            if session.metadata.is_object() {
                session.metadata.clone()
            } else {
                json!({})
            },
            max_participants,
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_inner(
        &self,
        session: &Arc<Session>,
        room_id: RoomId,
        role: Role,
        offer_sdp: Option<String>,
        capabilities: Vec<String>,
        metadata: Option<Value>,
        member_metadata: Value,
        max_participants: usize,
    ) -> Result<RoomCreated, CoreError> {
        if self.inner.rooms.len() >= self.config().max_rooms {
            return Err(CoreError::new(
                ErrorKind::Unavailable,
                format!("Room limit reached ({} rooms)", self.config().max_rooms),
            ));
        }
        let now = Utc::now();
        let room = Arc::new(Room {
            id: room_id.clone(),
            uuid: Uuid::new_v4(),
            created_at: now,
            metadata: metadata.clone().unwrap_or_else(|| json!({})),
            max_participants,
            control: tokio::sync::Mutex::new(()),
            state: RwLock::new(RoomState::default()),
            joins: Mutex::new(JoinQueue::default()),
            figures: NegotiationFigures::default(),
            messages: message_limiter(self.config().room_messages_per_second),
        });
        // Held until the room is committed: joiners that find it wait here.
        let Ok(_control) = room.control.try_lock() else {
            return Err(CoreError::internal());
        };
        match self.inner.rooms.entry(room_id.clone()) {
            dashmap::Entry::Occupied(_) => {
                return Err(CoreError::new(
                    ErrorKind::RoomExists,
                    format!("Room '{room_id}' already exists"),
                )
                .with("room_id", room_id.to_string()));
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(room.clone());
            }
        }
        let member = Member {
            session: session.clone(),
            role,
            metadata: member_metadata,
            capabilities,
            joined_at: now,
            room_session: Uuid::new_v4(),
            admission: 0,
        };
        // The id must be free on every node the router knows, not only here. In a
        // cluster the registry takes the room and its first member at once.
        let claimed = if self.clustered() {
            let entry = crate::router::RoomEntry {
                uuid: room.uuid,
                created_at: now,
                max_participants,
                metadata: room.metadata.clone(),
                offer_sdp: if role == Role::Sender {
                    offer_sdp.clone()
                } else {
                    None
                },
            };
            self.inner
                .router
                .create_room(&room_id, &entry, &self.member_entry(&room_id, &member))
                .await
        } else {
            self.inner.router.claim_room(&room_id).await
        };
        if !matches!(claimed, Ok(true)) {
            room.state.write().closed = true;
            self.inner
                .rooms
                .remove_if(&room_id, |_, r| Arc::ptr_eq(r, &room));
            return Err(match claimed {
                Err(e) => {
                    tracing::warn!(error = %e, "create_room: router unavailable");
                    CoreError::new(
                        ErrorKind::Unavailable,
                        "Room registry unavailable, retry later",
                    )
                }
                _ => CoreError::new(
                    ErrorKind::RoomExists,
                    format!("Room '{room_id}' already exists"),
                )
                .with("room_id", room_id.to_string()),
            });
        }
        let media = match self
            .inner
            .media
            .room_created(&room_id, &session.client_id, offer_sdp.as_deref())
            .await
        {
            Ok(m) => m,
            Err(e) => {
                room.state.write().closed = true;
                self.inner
                    .rooms
                    .remove_if(&room_id, |_, r| Arc::ptr_eq(r, &room));
                self.inner.router.release_room(&room_id).await;
                return Err(media_error("create_room", e));
            }
        };
        let record = RoomRecord {
            id: room.uuid,
            room_id: room_id.to_string(),
            app_id: self.config().app_id.clone(),
            created_at: now,
            status: "Active".into(),
            sender_client_id: (role == Role::Sender).then(|| session.client_id.to_string()),
            receiver_client_id: (role == Role::Receiver).then(|| session.client_id.to_string()),
            session_id: media.session_id.clone(),
            metadata: room.metadata.clone(),
            record_created_at: now,
        };
        let created = RoomCreatedRecord {
            id: Uuid::new_v4(),
            room_uuid: room.uuid,
            room_id: room_id.to_string(),
            created_at: now,
            room_data: json!({
                "room_id": room_id.as_str(),
                "app_id": self.config().app_id,
                "initial_participants": 1,
                "creation_type": self.inner.media.name(),
                "max_participants": max_participants,
                "has_offer": offer_sdp.is_some(),
            }),
            created_by: Some(session.client_id.to_string()),
            metadata: room.metadata.clone(),
            record_created_at: now,
        };
        let mut records = member_records(&room, &member);
        if let Some(sfu_session) = &media.session_id {
            records.webrtc_client.session_id = Some(sfu_session.clone());
        }
        let ev: Vec<events::Event> = [
            self.event(events::Kind::RoomCreated, |e| {
                e.room(&room_id).client(&session.client_id).data(json!({
                    "max_participants": max_participants,
                    "media": self.inner.media.name(),
                }))
            }),
            self.event(events::Kind::MemberJoined, |e| {
                e.room(&room_id)
                    .client(&session.client_id)
                    .data(json!({ "role": role.as_str() }))
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        if let Err(e) = self
            .store()
            .create_room(&record, &created, &records, &ev)
            .await
        {
            room.state.write().closed = true;
            self.inner
                .rooms
                .remove_if(&room_id, |_, r| Arc::ptr_eq(r, &room));
            self.inner.router.release_room(&room_id).await;
            self.inner.media.room_ended(&room_id).await;
            return Err(match e {
                crate::store::StoreError::Conflict(_) => CoreError::new(
                    ErrorKind::RoomExists,
                    format!("Room '{room_id}' already exists"),
                )
                .with("room_id", room_id.to_string()),
                e => CoreError::from_store("create_room", e),
            });
        }
        let room_session = member.room_session;
        {
            let mut st = room.state.write();
            st.offer_sdp = if role == Role::Sender {
                offer_sdp
            } else {
                None
            };
            // Members other nodes admitted (and announced) while the room was being
            // recorded: the creator found nobody, so each is news to it.
            if self.clustered() {
                for missed in st.missed_by(&[]) {
                    session.deliver(missed);
                }
            }
            st.members.push(member);
            st.ever_joined = 1;
        }
        session.add_room(room_id.clone());
        session.joined_room(room_id.clone());
        self.share_published(&room, &session.client_id).await;
        metrics::counter!("signal_rooms_created_total").increment(1);
        tracing::debug!(room_id = %room_id, client_id = %session.client_id, "room created");
        Ok(RoomCreated {
            room_id,
            session_id: room_session,
            role,
            created_at: now,
            media,
        })
    }

    /// ROOM_JOIN: adds the caller to a room, persisted before returning; the other members
    /// get PEER_JOINED.
    pub async fn join_room(
        &self,
        session: &Arc<Session>,
        p: JoinRoomParams,
    ) -> Result<RoomJoined, CoreError> {
        self.authorize_member(session, &p.creds).await?;
        let room_id = RoomId::parse(&p.room_id)?;
        self.check_grant(session, room_id.as_str())?;
        self.check_ban_here(&session.client_id).await?;
        self.check_join_rate(&session.client_id)?;
        let role = p
            .role
            .as_deref()
            .map(Role::parse)
            .transpose()?
            .unwrap_or(Role::Receiver);
        self.join_inner(session, room_id, role, p.capabilities, p.metadata)
            .await
    }

    /// Joins a room, creating it first if it does not exist (the JSON dialects' rule:
    /// seeds 002, 003 and 004 create rooms on first join). The member is a receiver; a
    /// room created this way has no sender and ends when its last member leaves.
    pub async fn enter_room(
        &self,
        session: &Arc<Session>,
        room_id: &str,
        metadata: Option<Value>,
    ) -> Result<RoomJoined, CoreError> {
        let room_id = RoomId::parse(room_id)?;
        self.check_grant(session, room_id.as_str())?;
        self.check_ban_here(&session.client_id).await?;
        self.check_join_rate(&session.client_id)?;
        // A room may be created or terminated between the look-up and the lock: retry.
        for _ in 0..4 {
            if self.room(room_id.as_str()).is_some() || self.clustered() {
                match self
                    .join_inner(
                        session,
                        room_id.clone(),
                        Role::Receiver,
                        Vec::new(),
                        metadata.clone(),
                    )
                    .await
                {
                    // A cluster found no room in the registry: create it.
                    Err(e) if e.kind == ErrorKind::RoomNotFound && self.clustered() => {}
                    Err(e) if e.kind == ErrorKind::RoomNotFound => continue,
                    other => return other,
                }
            }
            let max = self.config().default_max_participants;
            match self
                .create_inner(
                    session,
                    room_id.clone(),
                    Role::Receiver,
                    None,
                    Vec::new(),
                    None,
                    metadata.clone().unwrap_or_else(|| json!({})),
                    max,
                )
                .await
            {
                Ok(c) => {
                    return Ok(RoomJoined {
                        room_id: c.room_id,
                        session_id: c.session_id,
                        role: c.role,
                        created_at: c.created_at,
                        participants: Vec::new(),
                        offer_sdp: None,
                        media: c.media,
                    });
                }
                Err(e) if e.kind == ErrorKind::RoomExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CoreError::new(
            ErrorKind::Internal,
            "Room changed too often while joining; retry",
        ))
    }

    /// Queues a join on the room and waits for its answer. Joins are run in batches by
    /// one task per room at a time (see [`run_joins`](Self::run_joins)): every join
    /// waiting when the room's control lock comes free is checked, written to the store
    /// together (one group commit for the batch) and answered after that commit.
    async fn join_inner(
        &self,
        session: &Arc<Session>,
        room_id: RoomId,
        role: Role,
        capabilities: Vec<String>,
        metadata: Option<Value>,
    ) -> Result<RoomJoined, CoreError> {
        let metadata = metadata.unwrap_or_else(|| json!({}));
        if !self.clustered() {
            let room = self
                .inner
                .rooms
                .get(&room_id)
                .map(|r| r.clone())
                .ok_or_else(|| not_found(&room_id))?;
            return self
                .queue_join(session, room, role, capabilities, metadata)
                .await;
        }
        // A cluster: this node's replica of the room, made from the registry if this node
        // holds none yet. A replica retired while the join waited (its last member here
        // left) is made again.
        let mut last = None;
        for _ in 0..3 {
            let room = match self.inner.rooms.get(&room_id).map(|r| r.clone()) {
                Some(r) => r,
                None => self.replica(&room_id).await?,
            };
            match self
                .queue_join(session, room, role, capabilities.clone(), metadata.clone())
                .await
            {
                Err(e) if e.kind == ErrorKind::RoomNotFound => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| not_found(&room_id)))
    }

    /// Queues a join on `room` and waits for its answer.
    async fn queue_join(
        &self,
        session: &Arc<Session>,
        room: Arc<Room>,
        role: Role,
        capabilities: Vec<String>,
        metadata: Value,
    ) -> Result<RoomJoined, CoreError> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut q = room.joins.lock();
            q.waiting.push(PendingJoin {
                session: session.clone(),
                role,
                capabilities,
                metadata,
                reply,
            });
            !std::mem::replace(&mut q.running, true)
        };
        if start {
            // A task of its own, so that a caller that goes away (its connection closed)
            // cannot leave a batch half done.
            let hub = self.clone();
            tokio::spawn(async move { hub.run_joins(room).await });
        }
        answer.await.unwrap_or_else(|_| Err(CoreError::internal()))
    }

    /// Writes a member's records. In a cluster, a room the registry admitted the member to
    /// may not be committed yet by its creator's node: the write is tried again for about
    /// a second before the room counts as gone.
    async fn add_member_record(
        &self,
        r: &crate::store::MemberRecords,
        ev: &[events::Event],
    ) -> Result<(), crate::store::StoreError> {
        let mut wait = std::time::Duration::from_millis(20);
        for _ in 0..6 {
            match self.store().add_member(r, ev).await {
                Err(crate::store::StoreError::NoRoom(_)) if self.clustered() => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
                other => return other,
            }
        }
        self.store().add_member(r, ev).await
    }

    /// Runs a room's queued joins, a batch per turn of the control lock, until none is
    /// left.
    async fn run_joins(&self, room: Arc<Room>) {
        let mut runner = JoinRunner {
            room: &room,
            armed: true,
        };
        loop {
            let _control = room.control.lock().await;
            let batch = {
                let mut q = room.joins.lock();
                if q.waiting.is_empty() {
                    q.running = false;
                    runner.armed = false;
                    return;
                }
                std::mem::take(&mut q.waiting)
            };
            self.join_batch(&room, batch).await;
        }
    }

    /// Checks each join of a batch in order against the room as the joins before it
    /// leave it, then commits the accepted ones together and adds them in order: each
    /// joiner's list of participants, and who gets its PEER_JOINED, are what they would
    /// be had the joins run one by one. (If a store write fails, a later join of the same
    /// batch may have been refused for a slot the failed one would have taken.)
    async fn join_batch(&self, room: &Arc<Room>, batch: Vec<PendingJoin>) {
        let room_id = &room.id;
        let clustered = self.clustered();
        let mut accepted: Vec<(PendingJoin, Member)> = Vec::with_capacity(batch.len());
        {
            let st = room.state.read();
            let mut count = st.members.len();
            let mut has_sender = st.members.iter().any(|m| m.role == Role::Sender);
            for mut j in batch {
                let client = &j.session.client_id;
                let refused = if st.closed {
                    Some(not_found(room_id))
                } else if st.members.iter().any(|m| m.client() == client)
                    || accepted.iter().any(|(a, _)| &a.session.client_id == client)
                {
                    Some(already_in(client, room_id))
                } else if !clustered && count >= room.max_participants {
                    Some(room_full(room_id, room.max_participants))
                } else if !clustered && j.role == Role::Sender && has_sender {
                    Some(sender_taken(room_id))
                } else {
                    None
                };
                if let Some(e) = refused {
                    let _ = j.reply.send(Err(e));
                    continue;
                }
                count += 1;
                has_sender |= j.role == Role::Sender;
                let member = Member {
                    session: j.session.clone(),
                    role: j.role,
                    metadata: j.metadata.clone(),
                    capabilities: std::mem::take(&mut j.capabilities),
                    joined_at: Utc::now(),
                    room_session: Uuid::new_v4(),
                    admission: 0,
                };
                accepted.push((j, member));
            }
        }
        if accepted.is_empty() {
            return;
        }
        // In a cluster, the registry admits them against every node's members, and lists
        // the members the first of them finds.
        let mut cluster_before: Option<Vec<ParticipantInfo>> = None;
        if clustered {
            let Some((admitted, before, published)) = self.admit(room, accepted).await else {
                return;
            };
            accepted = admitted;
            cluster_before = Some(before);
            if accepted.is_empty() {
                return;
            }
            // What members on other nodes published, for the joiners to pull.
            for (publisher, tracks) in published {
                let offers = self
                    .inner
                    .media
                    .remote_published(room_id, &publisher, &tracks)
                    .await;
                self.deliver_sfu_offers(room, offers);
            }
        }
        // The media backend, then the store: the writes go to the store together, so
        // that a store committing in groups commits them at once.
        let mut media = Vec::with_capacity(accepted.len());
        for (j, _) in &accepted {
            media.push(
                self.inner
                    .media
                    .member_joined(room_id, &j.session.client_id)
                    .await
                    .map_err(|e| media_error("join_room", e)),
            );
        }
        let records: Vec<Option<(MemberRecords, Vec<events::Event>)>> = accepted
            .iter()
            .zip(&media)
            .map(|((j, m), md)| {
                let md = md.as_ref().ok()?;
                let mut r = member_records(room, m);
                if let Some(sfu_session) = &md.session_id {
                    r.webrtc_client.session_id = Some(sfu_session.clone());
                }
                let ev = self
                    .event(events::Kind::MemberJoined, |e| {
                        e.room(room_id)
                            .client(&j.session.client_id)
                            .data(json!({ "role": j.role.as_str() }))
                    })
                    .into_iter()
                    .collect();
                Some((r, ev))
            })
            .collect();
        let stored = futures_util::future::join_all(records.iter().map(|r| async move {
            match r {
                Some((r, ev)) => Some(self.add_member_record(r, ev).await),
                None => None,
            }
        }))
        .await;
        for (((j, member), media), stored) in accepted.into_iter().zip(media).zip(stored) {
            let media = match (media, stored) {
                (Err(e), _) => {
                    if clustered {
                        self.inner
                            .router
                            .forget_member(room_id, &j.session.client_id)
                            .await;
                    }
                    let _ = j.reply.send(Err(e));
                    continue;
                }
                (Ok(_), Some(Err(e))) => {
                    self.inner
                        .media
                        .member_left(room_id, &j.session.client_id)
                        .await;
                    if clustered {
                        self.inner
                            .router
                            .forget_member(room_id, &j.session.client_id)
                            .await;
                    }
                    let _ = j.reply.send(Err(CoreError::from_store("join_room", e)));
                    continue;
                }
                (Ok(media), _) => media,
            };
            let PendingJoin {
                session,
                role,
                metadata,
                reply,
                ..
            } = j;
            let room_session = member.room_session;
            let env = Envelope::new(Event::PeerJoined {
                room: room_id.clone(),
                client: session.client_id.clone(),
                role,
                metadata,
            });
            let (participants, offer_sdp) = {
                let mut st = room.state.write();
                let participants: Vec<ParticipantInfo> = match &mut cluster_before {
                    Some(list) => {
                        let now = list.clone();
                        list.push(participant(&member));
                        now
                    }
                    None => st.members.iter().map(participant).collect(),
                };
                for m in &st.members {
                    m.session.deliver(env.clone());
                }
                // What other nodes announced while it was being admitted.
                if let Some(list) = &cluster_before {
                    for missed in st.missed_by(list) {
                        session.deliver(missed);
                    }
                }
                st.members.push(member);
                st.ever_joined += 1;
                // An SFU room's joiner answers the SFU's offer, not the sender's.
                let offer = if self.inner.media.takes_room_signals() {
                    media.offer_sdp.clone()
                } else {
                    st.offer_sdp.clone()
                };
                (participants, offer)
            };
            session.add_room(room_id.clone());
            session.joined_room(room_id.clone());
            self.tell_other_nodes(room_id, Some(&session.client_id), &env)
                .await;
            let _ = reply.send(Ok(RoomJoined {
                room_id: room_id.clone(),
                session_id: room_session,
                role,
                created_at: room.created_at,
                participants,
                offer_sdp,
                media,
            }));
            if self.inner.media.takes_room_signals() {
                let update = self
                    .inner
                    .media
                    .member_admitted(room_id, &session.client_id)
                    .await;
                self.deliver_media_update(room, &session, update);
            }
        }
    }

    /// ROOM_LEAVE: the caller leaves; PEER_LEFT to the rest, or, when the sender or the
    /// last member leaves, the room terminates (ROOM_CLOSED to anyone left).
    pub async fn leave_room(
        &self,
        session: &Arc<Session>,
        creds: Credentials,
        room_id: &str,
        reason: Option<String>,
    ) -> Result<(), CoreError> {
        self.check_creds(session, &creds)?;
        self.auth()
            .authenticate(&creds.client_id, &creds.auth_token)
            .await
            .map_err(|e| match e.code() {
                ErrorCode::Unauthorized => {
                    CoreError::unauthorized("Invalid client_id or auth_token")
                }
                _ => e,
            })?;
        let room_id = RoomId::parse(room_id)?;
        let room = self.room_to_leave(session, &room_id).await?;
        let reason = reason
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "left".into());
        if !self.leave(&room, session, &reason, true).await {
            return Err(CoreError::new(
                ErrorKind::NotMember,
                format!("Client '{}' is not in room '{room_id}'", session.client_id),
            )
            .with("room_id", room_id.to_string()));
        }
        Ok(())
    }

    /// Leaves a room without credentials: the JSON dialects' LEAVE (and an altair JOIN of
    /// another room), whose session proved its identity when it connected. The same
    /// effects as [`leave_room`](Self::leave_room): PEER_LEFT to the rest, or the room
    /// terminates. 404 for an unknown room, 403 if the session is not a member.
    pub async fn exit_room(
        &self,
        session: &Arc<Session>,
        room_id: &str,
        reason: &str,
    ) -> Result<(), CoreError> {
        let room_id = RoomId::parse(room_id)?;
        let room = self.room_to_leave(session, &room_id).await?;
        if !self.leave(&room, session, reason, true).await {
            return Err(CoreError::new(
                ErrorKind::NotMember,
                format!("Client '{}' is not in room '{room_id}'", session.client_id),
            )
            .with("room_id", room_id.to_string()));
        }
        Ok(())
    }

    /// The room `session` asks to leave: 404 if no node holds it; 403 if it exists (in a
    /// cluster, perhaps only on other nodes) and this session is not in it.
    async fn room_to_leave(
        &self,
        session: &Session,
        room_id: &RoomId,
    ) -> Result<Arc<Room>, CoreError> {
        if let Some(r) = self.room(room_id.as_str()) {
            return Ok(r);
        }
        let elsewhere =
            self.clustered() && matches!(self.inner.router.room_entry(room_id).await, Ok(Some(_)));
        Err(if elsewhere {
            CoreError::new(
                ErrorKind::NotMember,
                format!("Client '{}' is not in room '{room_id}'", session.client_id),
            )
            .with("room_id", room_id.to_string())
        } else {
            not_found(room_id)
        })
    }

    /// Takes a session out of every room it is in; `voluntary` when the client asked.
    pub(super) async fn leave_all(&self, session: &Arc<Session>, reason: &str, voluntary: bool) {
        for room_id in session.rooms() {
            let room = self.inner.rooms.get(&room_id).map(|r| r.clone());
            match room {
                Some(room) => {
                    self.leave(&room, session, reason, voluntary).await;
                }
                None => session.remove_room(room_id.as_str()),
            }
        }
    }

    /// Removes `session` from `room`; false if it was not a member.
    pub(super) async fn leave(
        &self,
        room: &Arc<Room>,
        session: &Arc<Session>,
        reason: &str,
        voluntary: bool,
    ) -> bool {
        self.offers_abandoned(room, session);
        if self.clustered() {
            return self.leave_clustered(room, session, reason, voluntary).await;
        }
        let _control = room.control.lock().await;
        let (member, remaining, terminate) = {
            let mut st = room.state.write();
            let Some(pos) = st
                .members
                .iter()
                .position(|m| Arc::ptr_eq(&m.session, session))
            else {
                return false;
            };
            let member = st.members.remove(pos);
            let terminate = member.role == Role::Sender || st.members.is_empty();
            // The members themselves only if the room ends (their history is written);
            // otherwise the others are only told, and their sessions are enough.
            let remaining = if terminate {
                st.closed = true;
                std::mem::take(&mut st.members)
            } else {
                Vec::new()
            };
            (member, remaining, terminate)
        };
        session.remove_room(room.id.as_str());
        let by = member.client().to_string();
        if terminate {
            self.inner
                .rooms
                .remove_if(&room.id, |_, r| Arc::ptr_eq(r, room));
            self.inner.router.release_room(&room.id).await;
            self.inner.media.room_ended(&room.id).await;
            for m in &remaining {
                m.session.remove_room(room.id.as_str());
            }
            let why = if member.role == Role::Sender && !remaining.is_empty() {
                format!("sender '{by}' left ({reason})")
            } else {
                format!("last member '{by}' left ({reason})")
            };
            let why_for_events = why.clone();
            let env = Envelope::new(Event::RoomClosed {
                room: room.id.clone(),
                reason: why.clone(),
            });
            for m in &remaining {
                m.session.deliver(env.clone());
                m.session.room_terminated();
                self.offers_abandoned(room, &m.session);
            }
            self.tell_other_nodes(&room.id, None, &env).await;
            let now = Utc::now();
            let mut histories = vec![history(room, &member, reason, &by, final_status(voluntary))];
            histories.extend(
                remaining
                    .iter()
                    .map(|m| history(room, m, &why, &by, "Disconnected")),
            );
            let record = TerminatedRoomRecord {
                id: Uuid::new_v4(),
                room_id: room.id.to_string(),
                terminated_at: now,
                termination_recorded_at: now,
                room_data: json!({
                    "room_uuid": room.uuid.to_string(),
                    "session_duration": (now - room.created_at).num_seconds(),
                    "participant_count": room.state.read().ever_joined,
                    "final_status": "completed",
                    "negotiation": room.figures.summary(),
                }),
                termination_reason: Some(why),
                terminated_by: Some(by),
                metadata: room.metadata.clone(),
                record_created_at: now,
            };
            let mut ev: Vec<events::Event> = Vec::new();
            ev.extend(self.event(events::Kind::MemberLeft, |e| {
                e.room(&room.id)
                    .client(member.client())
                    .data(json!({ "reason": reason }))
            }));
            for m in &remaining {
                ev.extend(self.event(events::Kind::MemberLeft, |e| {
                    e.room(&room.id)
                        .client(m.client())
                        .data(json!({ "reason": why_for_events }))
                }));
            }
            ev.extend(self.event(events::Kind::RoomTerminated, |e| {
                e.room(&room.id)
                    .client(member.client())
                    .data(record.room_data.clone())
            }));
            if let Err(e) = self.store().terminate_room(&record, &histories, &ev).await {
                tracing::error!(room_id = %room.id, error = %e, "could not record room termination");
            }
            metrics::counter!("signal_rooms_terminated_total").increment(1);
        } else {
            self.inner
                .media
                .member_left(&room.id, member.client())
                .await;
            let env = Envelope::new(Event::PeerLeft {
                room: room.id.clone(),
                client: member.client().clone(),
                reason: reason.to_owned(),
            });
            for m in &room.state.read().members {
                m.session.deliver(env.clone());
            }
            self.tell_other_nodes(&room.id, Some(member.client()), &env)
                .await;
            let ev: Vec<events::Event> = self
                .event(events::Kind::MemberLeft, |e| {
                    e.room(&room.id)
                        .client(member.client())
                        .data(json!({ "reason": reason }))
                })
                .into_iter()
                .collect();
            if let Err(e) = self
                .store()
                .remove_member(
                    &history(room, &member, reason, &by, final_status(voluntary)),
                    &ev,
                )
                .await
            {
                tracing::error!(room_id = %room.id, error = %e, "could not record room leave");
            }
        }
        true
    }

    /// A snapshot of one room.
    pub fn room_info(&self, room_id: &str) -> Option<RoomInfo> {
        self.inner.rooms.get(room_id).map(|r| r.info())
    }

    /// Snapshots of every room.
    pub fn list_rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self.inner.rooms.iter().map(|r| r.value().clone()).collect();
        rooms.iter().map(|r| r.info()).collect()
    }

    /// Terminates rooms a previous run left active in the store (a crash, or a kill
    /// without drain): their members are long gone. Returns how many were closed.
    pub async fn recover_rooms(&self) -> Result<usize, CoreError> {
        let store = self.store();
        let mut rooms = store
            .active_rooms()
            .await
            .map_err(|e| CoreError::from_store("recover", e))?;
        if self.clustered() {
            // Other nodes hold rooms of the shared store: only rooms the registry no
            // longer knows were left behind (by a whole cluster stopping at once, or a
            // registry lost with Redis's data).
            let live: std::collections::HashSet<RoomId> = self
                .inner
                .router
                .room_ids()
                .await
                .map_err(|e| {
                    CoreError::new(
                        ErrorKind::Unavailable,
                        format!("recover: cluster registry unavailable: {e}"),
                    )
                })?
                .into_iter()
                .collect();
            rooms.retain(|r| RoomId::parse(&r.room_id).map_or(true, |id| !live.contains(&id)));
        }
        let now = Utc::now();
        for r in &rooms {
            let members = store
                .room_members(&r.room_id)
                .await
                .map_err(|e| CoreError::from_store("recover", e))?;
            let reason = "server restarted while the room was active";
            let histories: Vec<_> = members
                .iter()
                .map(|m| ClientInTerminatedRoomRecord {
                    id: Uuid::new_v4(),
                    client_id: m.client_id.clone(),
                    room_id: m.room_id.clone(),
                    joined_at: m.joined_at,
                    left_at: now,
                    termination_reason: reason.into(),
                    terminated_by: "server".into(),
                    final_status: "Disconnected".into(),
                    capabilities: m.capabilities.clone(),
                    metadata: m.metadata.clone(),
                    record_created_at: now,
                })
                .collect();
            let record = TerminatedRoomRecord {
                id: Uuid::new_v4(),
                room_id: r.room_id.clone(),
                terminated_at: now,
                termination_recorded_at: now,
                room_data: json!({
                    "room_uuid": r.id.to_string(),
                    "session_duration": (now - r.created_at).num_seconds(),
                    "participant_count": members.len(),
                    "final_status": "recovered",
                }),
                termination_reason: Some(reason.into()),
                terminated_by: Some("server".into()),
                metadata: r.metadata.clone(),
                record_created_at: now,
            };
            // Its members left when the server stopped; the room ends now.
            let mut ev: Vec<events::Event> = Vec::new();
            if let Ok(room_id) = RoomId::parse(&r.room_id) {
                for m in &members {
                    if let Ok(client) = ClientId::parse("client_id", &m.client_id) {
                        ev.extend(self.event(events::Kind::MemberLeft, |e| {
                            e.room(&room_id)
                                .client(&client)
                                .data(json!({ "reason": reason }))
                        }));
                    }
                }
                ev.extend(self.event(events::Kind::RoomTerminated, |e| {
                    e.room(&room_id).data(record.room_data.clone())
                }));
            }
            store
                .terminate_room(&record, &histories, &ev)
                .await
                .map_err(|e| CoreError::from_store("recover", e))?;
        }
        Ok(rooms.len())
    }

    pub(super) fn room(&self, room_id: &str) -> Option<Arc<Room>> {
        self.inner.rooms.get(room_id).map(|r| r.clone())
    }
}
