//! Rooms: creation, joining, leaving and termination in P2P mode, with roles and a
//! participant cap. Each room has a control lock that orders its lifecycle (and the store
//! writes that record it); the member list itself sits behind a short sync lock that the
//! relay path reads without waiting on the store.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use serde_json::{Value, json};
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
    id: RoomId,
    uuid: Uuid,
    created_at: DateTime<Utc>,
    metadata: Value,
    max_participants: usize,
    control: tokio::sync::Mutex<()>,
    state: RwLock<RoomState>,
}

#[derive(Default)]
struct RoomState {
    members: Vec<Member>,
    offer_sdp: Option<String>,
    closed: bool,
    ever_joined: usize,
}

#[derive(Clone)]
struct Member {
    session: Arc<Session>,
    role: Role,
    metadata: Value,
    capabilities: Vec<String>,
    joined_at: DateTime<Utc>,
    room_session: Uuid,
}

impl Member {
    fn client(&self) -> &ClientId {
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

    /// Sessions of every member.
    pub(super) fn sessions(&self) -> Vec<Arc<Session>> {
        self.state
            .read()
            .members
            .iter()
            .map(|m| m.session.clone())
            .collect()
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

fn participant(m: &Member) -> ParticipantInfo {
    ParticipantInfo {
        client_id: m.client().clone(),
        role: m.role,
        display_name: m.session.display_name.clone().or_else(|| {
            m.metadata
                .get("display_name")
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
        metadata: m.metadata.clone(),
        joined_at: m.joined_at,
    }
}

fn member_records(room: &Room, m: &Member) -> MemberRecords {
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

fn history(
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
fn final_status(voluntary: bool) -> &'static str {
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
            })
            .await;
    }
}

/// A media backend's failure as the client sees it; the cause is logged.
fn media_error(context: &str, e: MediaError) -> CoreError {
    match e {
        MediaError::Refused(m) => CoreError::bad_request(format!("Media backend refused: {m}")),
        MediaError::Unavailable(m) => {
            tracing::warn!(error = %m, "{context}: media backend unavailable");
            CoreError::new(
                ErrorKind::Unavailable,
                "Media backend unavailable, retry later",
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
        // The id must be free on every node the router knows, not only here.
        let claimed = self.inner.router.claim_room(&room_id).await;
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
        let member = Member {
            session: session.clone(),
            role,
            metadata: member_metadata,
            capabilities,
            joined_at: now,
            room_session: Uuid::new_v4(),
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
                "creation_type": "p2p",
                "max_participants": max_participants,
                "has_offer": offer_sdp.is_some(),
            }),
            created_by: Some(session.client_id.to_string()),
            metadata: room.metadata.clone(),
            record_created_at: now,
        };
        if let Err(e) = self
            .store()
            .create_room(&record, &created, &member_records(&room, &member))
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
            st.members.push(member);
            st.ever_joined = 1;
        }
        session.add_room(room_id.clone());
        metrics::counter!("signal_rooms_created_total").increment(1);
        tracing::debug!(room_id = %room_id, client_id = %session.client_id, "room created");
        self.publish(events::Kind::RoomCreated, |e| {
            e.room(&room_id).client(&session.client_id).data(json!({
                "max_participants": max_participants,
                "media": self.inner.media.name(),
            }))
        });
        self.publish(events::Kind::MemberJoined, |e| {
            e.room(&room_id)
                .client(&session.client_id)
                .data(json!({ "role": role.as_str() }))
        });
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
        // A room may be created or terminated between the look-up and the lock: retry.
        for _ in 0..4 {
            if self.room(room_id.as_str()).is_some() {
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

    async fn join_inner(
        &self,
        session: &Arc<Session>,
        room_id: RoomId,
        role: Role,
        capabilities: Vec<String>,
        metadata: Option<Value>,
    ) -> Result<RoomJoined, CoreError> {
        let not_found = || {
            CoreError::new(
                ErrorKind::RoomNotFound,
                format!("Room '{room_id}' not found"),
            )
            .with("room_id", room_id.to_string())
        };
        let room = self
            .inner
            .rooms
            .get(&room_id)
            .map(|r| r.clone())
            .ok_or_else(not_found)?;
        let _control = room.control.lock().await;
        let metadata = metadata.unwrap_or_else(|| json!({}));
        {
            let st = room.state.read();
            if st.closed {
                return Err(not_found());
            }
            if st.members.iter().any(|m| m.client() == &session.client_id) {
                return Err(CoreError::new(
                    ErrorKind::AlreadyInRoom,
                    format!(
                        "Client '{}' is already in room '{room_id}'",
                        session.client_id
                    ),
                )
                .with("room_id", room_id.to_string()));
            }
            if st.members.len() >= room.max_participants {
                return Err(CoreError::new(
                    ErrorKind::RoomFull,
                    format!(
                        "Room '{room_id}' is full ({} participants)",
                        room.max_participants
                    ),
                )
                .with("room_id", room_id.to_string())
                .with("max_participants", room.max_participants));
            }
            if role == Role::Sender && st.members.iter().any(|m| m.role == Role::Sender) {
                return Err(CoreError::bad_request(format!(
                    "Role 'sender' is not available: room '{room_id}' already has a sender"
                )));
            }
        }
        let member = Member {
            session: session.clone(),
            role,
            metadata: metadata.clone(),
            capabilities,
            joined_at: Utc::now(),
            room_session: Uuid::new_v4(),
        };
        let media = self
            .inner
            .media
            .member_joined(&room_id, &session.client_id)
            .await
            .map_err(|e| media_error("join_room", e))?;
        if let Err(e) = self
            .store()
            .add_member(&member_records(&room, &member))
            .await
        {
            self.inner
                .media
                .member_left(&room_id, &session.client_id)
                .await;
            return Err(CoreError::from_store("join_room", e));
        }
        let room_session = member.room_session;
        let (others, offer_sdp) = {
            let mut st = room.state.write();
            let others: Vec<Member> = st.members.clone();
            st.members.push(member);
            st.ever_joined += 1;
            (others, st.offer_sdp.clone())
        };
        session.add_room(room_id.clone());
        let env = Envelope::new(Event::PeerJoined {
            room: room_id.clone(),
            client: session.client_id.clone(),
            role,
            metadata,
        });
        for m in &others {
            m.session.deliver(env.clone());
        }
        self.tell_other_nodes(&room_id, Some(&session.client_id), &env)
            .await;
        self.publish(events::Kind::MemberJoined, |e| {
            e.room(&room_id)
                .client(&session.client_id)
                .data(json!({ "role": role.as_str() }))
        });
        Ok(RoomJoined {
            room_id,
            session_id: room_session,
            role,
            created_at: room.created_at,
            participants: others.iter().map(participant).collect(),
            offer_sdp,
            media,
        })
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
        let room = self
            .inner
            .rooms
            .get(&room_id)
            .map(|r| r.clone())
            .ok_or_else(|| {
                CoreError::new(
                    ErrorKind::RoomNotFound,
                    format!("Room '{room_id}' not found"),
                )
                .with("room_id", room_id.to_string())
            })?;
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
        let room = self.room(room_id.as_str()).ok_or_else(|| {
            CoreError::new(
                ErrorKind::RoomNotFound,
                format!("Room '{room_id}' not found"),
            )
            .with("room_id", room_id.to_string())
        })?;
        if !self.leave(&room, session, reason, true).await {
            return Err(CoreError::new(
                ErrorKind::NotMember,
                format!("Client '{}' is not in room '{room_id}'", session.client_id),
            )
            .with("room_id", room_id.to_string()));
        }
        Ok(())
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
    async fn leave(
        &self,
        room: &Arc<Room>,
        session: &Arc<Session>,
        reason: &str,
        voluntary: bool,
    ) -> bool {
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
            let remaining = if terminate {
                st.closed = true;
                std::mem::take(&mut st.members)
            } else {
                st.members.clone()
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
                }),
                termination_reason: Some(why),
                terminated_by: Some(by),
                metadata: room.metadata.clone(),
                record_created_at: now,
            };
            if let Err(e) = self.store().terminate_room(&record, &histories).await {
                tracing::error!(room_id = %room.id, error = %e, "could not record room termination");
            }
            self.publish(events::Kind::MemberLeft, |e| {
                e.room(&room.id)
                    .client(member.client())
                    .data(json!({ "reason": reason }))
            });
            for m in &remaining {
                self.publish(events::Kind::MemberLeft, |e| {
                    e.room(&room.id)
                        .client(m.client())
                        .data(json!({ "reason": why_for_events }))
                });
            }
            self.publish(events::Kind::RoomTerminated, |e| {
                e.room(&room.id)
                    .client(member.client())
                    .data(record.room_data.clone())
            });
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
            for m in &remaining {
                m.session.deliver(env.clone());
            }
            self.tell_other_nodes(&room.id, Some(member.client()), &env)
                .await;
            if let Err(e) = self
                .store()
                .remove_member(&history(
                    room,
                    &member,
                    reason,
                    &by,
                    final_status(voluntary),
                ))
                .await
            {
                tracing::error!(room_id = %room.id, error = %e, "could not record room leave");
            }
            self.publish(events::Kind::MemberLeft, |e| {
                e.room(&room.id)
                    .client(member.client())
                    .data(json!({ "reason": reason }))
            });
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
        let rooms = store
            .active_rooms()
            .await
            .map_err(|e| CoreError::from_store("recover", e))?;
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
            store
                .terminate_room(&record, &histories)
                .await
                .map_err(|e| CoreError::from_store("recover", e))?;
        }
        Ok(rooms.len())
    }

    pub(super) fn room(&self, room_id: &str) -> Option<Arc<Room>> {
        self.inner.rooms.get(room_id).map(|r| r.clone())
    }
}
