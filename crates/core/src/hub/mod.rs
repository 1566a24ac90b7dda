//! The hub: who is connected, which rooms exist and who is in them, and how signals get
//! from one peer to another. One cheap-to-clone handle over sharded state; no lock is held
//! across an `.await` except a room's own control lock, which orders that room's
//! lifecycle writes to the store.

mod admin;
mod cluster;
mod event;
mod expiry;
mod mirror;
mod outbox;
mod resume;
mod room;
mod session;
mod signal;
mod takeover;
pub use admin::Kicked;
pub use signal::{Elsewhere, Routed, SignalRequest};

pub use event::{
    BodyDecoder, CloseReason, Encoded, Envelope, Event, Format, FormatSpec, Outbound, Role, Signal,
    SignalBody, SignalKind, register_body_decoder,
};
pub use mirror::{BatchFrame, Mirror};
pub use outbox::{Outbox, Overflow, PushError, Sent};
pub use resume::{ResumeParams, Resumed};
pub use room::{
    CreateRoomParams, JoinRoomParams, ParticipantInfo, RoomCreated, RoomInfo, RoomJoined,
};
pub use session::{QueueFull, Session};

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicUsize, Ordering},
};

use chrono::Utc;
use dashmap::DashMap;
use serde_json::Value;

use crate::{
    auth::{Authenticator, hash_token, verify_token},
    error::{CoreError, ErrorKind},
    events::{self, Events, NoEvents},
    ids::{ClientId, RoomId},
    media::{Media, P2p},
    router::{Inbox, LocalRouter, NodeMessage, Recipient, Router},
    store::{RegisteredClient, Store},
};
use room::Room;

/// Hub settings, taken from the server configuration.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// The protocol version the server speaks; newer client versions are refused.
    pub protocol_version: semver::Version,
    /// Seconds between heartbeats, told to clients.
    pub heartbeat_interval: u64,
    /// Sessions one client id may hold at once; a newer one replaces the oldest.
    pub max_sessions_per_client: usize,
    /// Members per room when the creator does not set `metadata.max_participants`.
    pub default_max_participants: usize,
    /// Upper bound for `metadata.max_participants`.
    pub max_participants_limit: usize,
    /// Rooms that may exist at once on this node.
    pub max_rooms: usize,
    /// Whether signal sender and target must share a room.
    pub require_shared_room: bool,
    /// Media backend application id (empty in P2P mode).
    pub app_id: String,
    /// STUN URL told to room members, if any.
    pub stun_url: Option<String>,
    /// Capabilities announced in CONNECT_ACK.
    pub capabilities: Vec<String>,
    /// How long a resumable session whose connection dropped waits for its RESUME
    /// (zero: sessions are never resumable).
    pub resume_window: std::time::Duration,
    /// Frames a resumable session keeps after sending them, for a RESUME to send again.
    pub resume_buffer: usize,
    /// Bytes of those frames at most.
    pub resume_buffer_bytes: usize,
    /// How long a registered token lasts (zero: until UNREGISTER); a token registered
    /// over an expiring credential (a JWT) never outlives it.
    pub registered_token_ttl: std::time::Duration,
    /// Room creations and joins one client may make per minute on this node (0: no
    /// limit).
    pub room_joins_per_minute: u32,
    /// Signals per second one room may carry on this node (0: no limit).
    pub room_messages_per_second: u32,
    /// How long before its credential expires a session is warned
    /// ([`Event::CredentialExpiring`]).
    pub expiry_warning: std::time::Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            protocol_version: semver::Version::new(1, 0, 0),
            heartbeat_interval: 30,
            max_sessions_per_client: 1,
            default_max_participants: 16,
            max_participants_limit: 10_000,
            max_rooms: 100_000,
            require_shared_room: true,
            app_id: String::new(),
            stun_url: None,
            capabilities: vec!["websocket".into(), "heartbeat".into(), "webrtc".into()],
            resume_window: std::time::Duration::from_secs(30),
            resume_buffer: 128,
            resume_buffer_bytes: 64 << 10,
            registered_token_ttl: std::time::Duration::ZERO,
            room_joins_per_minute: 0,
            room_messages_per_second: 0,
            expiry_warning: std::time::Duration::from_secs(60),
        }
    }
}

/// Counts for `/health` and stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubStats {
    /// Authenticated sessions on this node.
    pub sessions: usize,
    /// Active rooms.
    pub rooms: usize,
    /// Room memberships, summed over rooms.
    pub members: usize,
}

/// CONNECT, in core terms.
#[derive(Debug, Clone)]
pub struct ConnectParams {
    /// Claimed client id.
    pub client_id: String,
    /// Credential.
    pub auth_token: String,
    /// Client protocol version, if sent.
    pub version: Option<String>,
    /// Wire format of the connection.
    pub format: Format,
    /// Announced capabilities.
    pub capabilities: Vec<String>,
    /// Announced metadata.
    pub metadata: Value,
    /// Display name, if the dialect or credential carries one.
    pub display_name: Option<String>,
    /// Admit without credentials under a server-assigned id (only where configuration
    /// allows anonymous access; the caller decides).
    pub anonymous: bool,
    /// The client asks for a resumable session (granted while the resume window is not
    /// zero: see [`Session::resume_token`]).
    pub resume: bool,
}

/// REGISTER / UNREGISTER / ROOM_* share these request fields.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Client protocol version.
    pub version: String,
    /// Must equal the session's client.
    pub client_id: String,
    /// The client's token.
    pub auth_token: String,
}

/// REGISTER, in core terms.
#[derive(Debug, Clone)]
pub struct RegisterParams {
    /// Version, client id, token to store.
    pub creds: Credentials,
    /// Associated room, informational.
    pub room_id: Option<String>,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Metadata.
    pub metadata: Value,
}

/// What REGISTER did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// The token the server issued (the request's `auth_token` was empty).
    pub auth_token: Option<String>,
    /// When the token expires (Unix seconds), if it does.
    pub expires_at: Option<i64>,
}

/// The backends the hub works through, each chosen by configuration.
#[derive(Clone)]
pub struct Ports {
    /// Where clients and room history are kept.
    pub store: Arc<dyn Store>,
    /// Who is who.
    pub auth: Arc<Authenticator>,
    /// How other nodes are reached.
    pub router: Arc<dyn Router>,
    /// What carries the media.
    pub media: Arc<dyn Media>,
    /// Who hears of lifecycle events.
    pub events: Arc<dyn Events>,
}

impl Ports {
    /// One node: the given store and authenticator, the local router, peer-to-peer media
    /// and no event sink.
    pub fn single_node(store: Arc<dyn Store>, auth: Arc<Authenticator>) -> Self {
        Self {
            store,
            auth,
            router: Arc::new(LocalRouter::default()),
            media: Arc::new(P2p),
            events: Arc::new(NoEvents),
        }
    }
}

/// The hub handle. Clone freely.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// This hub, weakly: what other nodes ask of it runs as tasks of their own.
    me: std::sync::Weak<Inner>,
    cfg: HubConfig,
    store: Arc<dyn Store>,
    auth: Arc<Authenticator>,
    router: Arc<dyn Router>,
    media: Arc<dyn Media>,
    events: Arc<dyn Events>,
    sessions: DashMap<ClientId, Vec<Arc<Session>>>,
    rooms: DashMap<RoomId, Arc<Room>>,
    /// In a cluster without the shared-room rule: the node of clients on other nodes
    /// that were signalled, as the registry said, until that node says it holds them no
    /// more ([`Inbox::gone`]). Bounded by [`LOCATED_CAP`].
    located: DashMap<ClientId, Arc<str>>,
    /// Resumable sessions by their resume token.
    resumable: DashMap<String, Arc<Session>>,
    /// Clients banned by an admin on this node, until when (Unix ms).
    bans: DashMap<ClientId, i64>,
    /// Room joins per client (`room_joins_per_minute`), and the checks since its last
    /// sweep of clients idle long enough to forget.
    join_limiter: Option<(
        governor::DefaultKeyedRateLimiter<ClientId>,
        std::sync::atomic::AtomicU32,
    )>,
    session_count: AtomicUsize,
    shutting_down: AtomicBool,
    /// `signal_relayed_total` by kind, registered once (a labelled lookup per message
    /// costs as much as the relay's own work).
    relayed: [metrics::Counter; 3],
    /// The negotiation metrics by wire format id (the last: sessions of no format),
    /// registered at first use, for the same reason.
    negotiation: [std::sync::OnceLock<NegotiationMetrics>; Format::MAX + 1],
}

/// The negotiation metrics of one wire format.
struct NegotiationMetrics {
    offer_answer: metrics::Histogram,
    first_candidate: metrics::Histogram,
    unanswered: metrics::Counter,
}

/// Clients on other nodes whose node a hub keeps at most; past it, it starts again.
const LOCATED_CAP: usize = 65_536;

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

// === impl Hub ===

impl Hub {
    /// A hub over the given ports. The hub attaches itself to the router as the inbox of
    /// messages other nodes send here.
    pub fn new(cfg: HubConfig, ports: Ports) -> Self {
        let Ports {
            store,
            auth,
            router,
            media,
            events,
        } = ports;
        let join_limiter = std::num::NonZeroU32::new(cfg.room_joins_per_minute).map(|n| {
            (
                governor::RateLimiter::keyed(governor::Quota::per_minute(n)),
                std::sync::atomic::AtomicU32::new(0),
            )
        });
        let hub = Self {
            inner: Arc::new_cyclic(|me| Inner {
                me: me.clone(),
                cfg,
                store,
                auth,
                router,
                media,
                events,
                sessions: DashMap::new(),
                rooms: DashMap::new(),
                located: DashMap::new(),
                resumable: DashMap::new(),
                bans: DashMap::new(),
                join_limiter,
                session_count: AtomicUsize::new(0),
                shutting_down: AtomicBool::new(false),
                relayed: [
                    SignalKind::Offer,
                    SignalKind::Answer,
                    SignalKind::IceCandidate,
                ]
                .map(|k| metrics::counter!("signal_relayed_total", "kind" => k.label())),
                negotiation: [const { std::sync::OnceLock::new() }; Format::MAX + 1],
            }),
        };
        let inbox: std::sync::Weak<dyn Inbox> = Arc::downgrade(&hub.inner) as _;
        hub.inner.router.attach(inbox);
        hub
    }

    /// The router port.
    pub fn router(&self) -> &Arc<dyn Router> {
        &self.inner.router
    }

    /// The media port.
    pub fn media(&self) -> &Arc<dyn Media> {
        &self.inner.media
    }

    /// A lifecycle event of `kind` stamped with this node, for the store write of its
    /// step; none when no sink listens.
    pub(crate) fn event(
        &self,
        kind: events::Kind,
        build: impl FnOnce(events::Event) -> events::Event,
    ) -> Option<events::Event> {
        self.inner
            .events
            .is_enabled()
            .then(|| build(events::Event::new(kind, self.inner.router.node_id())))
    }

    /// Records the events of a step that writes nothing else (a session opening or
    /// closing). Such a step does not depend on the store: if the outbox cannot be
    /// written, the event is logged and counted as lost.
    pub(crate) async fn record_events(&self, events: Option<events::Event>) {
        let Some(e) = events else { return };
        if let Err(err) = self
            .inner
            .store
            .append_events(std::slice::from_ref(&e))
            .await
        {
            metrics::counter!("signal_events_unrecorded_total").increment(1);
            tracing::error!(event = e.kind.name(), error = %err, "could not record a lifecycle event");
        }
    }

    /// The configuration.
    pub fn config(&self) -> &HubConfig {
        &self.inner.cfg
    }

    /// The store port.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The authenticator.
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.inner.auth
    }

    /// Current counts.
    pub fn stats(&self) -> HubStats {
        let members = self
            .inner
            .rooms
            .iter()
            .map(|r| r.value().member_count())
            .sum();
        HubStats {
            sessions: self.inner.session_count.load(Ordering::Relaxed),
            rooms: self.inner.rooms.len(),
            members,
        }
    }

    /// Authenticates and opens a session. With `max_sessions_per_client` reached, the
    /// oldest session of the client leaves its rooms and is closed with an ERROR 409.
    pub async fn connect(
        &self,
        p: ConnectParams,
        outbox: Arc<Outbox>,
    ) -> Result<Arc<Session>, CoreError> {
        if self.inner.shutting_down.load(Ordering::Acquire) {
            return Err(CoreError::new(
                ErrorKind::ShuttingDown,
                "Server is shutting down",
            ));
        }
        let mut grants = crate::auth::Grants::default();
        let client_id = if p.anonymous {
            let id = uuid::Uuid::new_v4().simple().to_string();
            ClientId::parse("client_id", &format!("anon-{}", &id[..12]))?
        } else {
            let id = ClientId::parse("client_id", &p.client_id)?;
            if p.auth_token.is_empty() {
                return Err(CoreError::bad_request(
                    "Missing or invalid 'auth_token' field",
                ));
            }
            if let Some(v) = &p.version {
                self.check_version(v)?;
            }
            grants = self
                .inner
                .auth
                .authenticate_grants(&p.client_id, &p.auth_token)
                .await?
                .1;
            self.check_ban(&id).await?;
            id
        };
        let session = if p.resume && !self.inner.cfg.resume_window.is_zero() {
            outbox.keep_sent(
                self.inner.cfg.resume_buffer,
                self.inner.cfg.resume_buffer_bytes,
            );
            let token = resume::new_token();
            let s = Session::new_resumable(
                client_id.clone(),
                p.format,
                outbox,
                p.capabilities,
                p.metadata,
                p.display_name,
                token.clone(),
            );
            self.inner.resumable.insert(token.clone(), s.clone());
            self.keep_in_cluster(&s, &token, None, None).await;
            s
        } else {
            Session::new(
                client_id.clone(),
                p.format,
                outbox,
                p.capabilities,
                p.metadata,
                p.display_name,
            )
        };
        let expires = grants.expires;
        session.set_grants(grants);
        if expires.is_some() {
            self.watch_expiry(&session);
        }
        let evicted: Vec<Arc<Session>> = {
            let mut list = self.inner.sessions.entry(client_id).or_default();
            list.push(session.clone());
            let excess = list
                .len()
                .saturating_sub(self.inner.cfg.max_sessions_per_client.max(1));
            list.drain(..excess).collect()
        };
        self.inner.session_count.fetch_add(1, Ordering::Relaxed);
        match self.inner.router.session_opened(&session.client_id).await {
            // Sessions of the client on other nodes: with one session per client, the
            // newer one (this) replaces them.
            Ok(elsewhere)
                if !elsewhere.is_empty() && self.inner.cfg.max_sessions_per_client <= 1 =>
            {
                self.inner
                    .router
                    .evict_elsewhere(&session.client_id, &elsewhere)
                    .await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "router: could not record the session's presence");
            }
        }
        for old in evicted {
            self.inner.session_count.fetch_sub(1, Ordering::Relaxed);
            self.inner.router.session_closed(&old.client_id).await;
            tracing::info!(client_id = %old.client_id, old_session = %old.id, "session replaced");
            self.leave_all(&old, "replaced", false).await;
            old.close(CloseReason::Replaced);
        }
        metrics::gauge!("signal_sessions", "wire" => session.format_label()).increment(1.0);
        let ev = self.event(events::Kind::SessionConnected, |e| {
            e.client(&session.client_id).data(serde_json::json!({
                "session_id": session.id.to_string(),
                "wire": session.format_label(),
            }))
        });
        self.record_events(ev).await;
        Ok(session)
    }

    /// Ends a session: it leaves every room (members are told) and is forgotten.
    /// `voluntary` when the client said goodbye (DISCONNECT), for the history records.
    /// Idempotent.
    pub async fn disconnect(&self, session: &Arc<Session>, reason: &str, voluntary: bool) {
        let removed = {
            let mut removed = false;
            if let Some(mut list) = self.inner.sessions.get_mut(&session.client_id) {
                let before = list.len();
                list.retain(|s| !Arc::ptr_eq(s, session));
                removed = list.len() != before;
            }
            self.inner
                .sessions
                .remove_if(&session.client_id, |_, list| list.is_empty());
            removed
        };
        if let Some(r) = session.resumable() {
            // Not resumable any more, whether it waited for a RESUME or not.
            r.parked.lock().take();
            let token = r.token.lock().clone();
            let removed = self
                .inner
                .resumable
                .remove_if(token.as_str(), |_, s| Arc::ptr_eq(s, session));
            if removed.is_some() && session.outbox().mirror().is_some() {
                self.inner.router.resume_close(&token, &session.id).await;
            }
        }
        if removed {
            self.inner.session_count.fetch_sub(1, Ordering::Relaxed);
            self.inner.router.session_closed(&session.client_id).await;
            metrics::gauge!("signal_sessions", "wire" => session.format_label()).decrement(1.0);
        }
        self.leave_all(session, reason, voluntary).await;
        let left = session.offers_left();
        if left > 0 {
            self.inner
                .negotiation_metrics(session)
                .unanswered
                .increment(left as u64);
        }
        if removed {
            let ev = self.event(events::Kind::SessionDisconnected, |e| {
                e.client(&session.client_id).data(serde_json::json!({
                    "session_id": session.id.to_string(),
                    "reason": reason,
                }))
            });
            self.record_events(ev).await;
        }
        if let Err(e) = self
            .inner
            .store
            .touch_client(session.client_id.as_str(), Utc::now())
            .await
        {
            tracing::debug!(error = %e, "could not record last_seen");
        }
    }

    /// REGISTER: persists the client (token hashed) and returns once committed. An
    /// empty `auth_token` has the server issue one (256 random bits). The token expires
    /// with `registered_token_ttl`, and never after the credential the session connected
    /// with (a JWT's `exp`); a registration whose token expired is replaced.
    pub async fn register(
        &self,
        session: &Session,
        mut p: RegisterParams,
    ) -> Result<Registered, CoreError> {
        let issued = p.creds.auth_token.is_empty();
        if issued {
            p.creds.auth_token = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
        }
        self.check_creds(session, &p.creds)?;
        let now = Utc::now();
        let ttl = self.inner.cfg.registered_token_ttl;
        let by_ttl = (!ttl.is_zero()).then(|| {
            now.timestamp()
                .saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX))
        });
        let by_credential = session.grants().expires.and_then(|e| i64::try_from(e).ok());
        let expires = match (by_ttl, by_credential) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The token keeps the rooms the session's credential grants; a client's own
        // value of the key is not kept.
        let mut metadata = p.metadata;
        if let Some(m) = metadata.as_object_mut() {
            m.remove(crate::auth::GRANTED_ROOMS_KEY);
            m.remove(crate::auth::TOKEN_EXPIRES_KEY);
        }
        if let Some(at) = expires {
            if !metadata.is_object() {
                metadata = serde_json::json!({});
            }
            if let Some(m) = metadata.as_object_mut() {
                m.insert(crate::auth::TOKEN_EXPIRES_KEY.into(), at.into());
            }
        }
        if let Some(rooms) = session.grants().rooms {
            if !metadata.is_object() {
                metadata = serde_json::json!({});
            }
            if let Some(m) = metadata.as_object_mut() {
                m.insert(crate::auth::GRANTED_ROOMS_KEY.into(), rooms.into());
            }
        }
        let client = RegisteredClient {
            id: uuid::Uuid::new_v4(),
            client_id: p.creds.client_id.clone(),
            auth_token: hash_token(&p.creds.auth_token),
            room_id: p.room_id,
            capabilities: p.capabilities,
            registered_at: now,
            last_seen: Some(now),
            status: "Active".into(),
            metadata,
            record_created_at: now,
        };
        let ev: Vec<events::Event> = self
            .event(events::Kind::ClientRegistered, |e| {
                e.client(&session.client_id)
            })
            .into_iter()
            .collect();
        let done = Registered {
            auth_token: issued.then(|| p.creds.auth_token.clone()),
            expires_at: expires,
        };
        match self.inner.store.register_client(&client, &ev).await {
            Ok(()) => Ok(done),
            Err(crate::store::StoreError::Conflict(_)) => {
                // A registration whose token expired gives way to the new one.
                let old = self
                    .inner
                    .store
                    .get_client(&p.creds.client_id)
                    .await
                    .map_err(|e| CoreError::from_store("register", e))?;
                let expired = old
                    .as_ref()
                    .is_some_and(|c| crate::auth::token_expired(&c.metadata, now.timestamp()));
                if !expired {
                    return Err(CoreError::new(
                        ErrorKind::AlreadyRegistered,
                        "Client already registered",
                    )
                    .with("client_id", p.creds.client_id));
                }
                self.inner
                    .store
                    .delete_client(&p.creds.client_id, &[])
                    .await
                    .map_err(|e| CoreError::from_store("register", e))?;
                match self.inner.store.register_client(&client, &ev).await {
                    Ok(()) => Ok(done),
                    Err(crate::store::StoreError::Conflict(_)) => Err(CoreError::new(
                        ErrorKind::AlreadyRegistered,
                        "Client already registered",
                    )
                    .with("client_id", p.creds.client_id)),
                    Err(e) => Err(CoreError::from_store("register", e)),
                }
            }
            Err(e) => Err(CoreError::from_store("register", e)),
        }
    }

    /// UNREGISTER: checks the registered token, deletes the client and takes it out of
    /// its rooms.
    pub async fn unregister(
        &self,
        session: &Arc<Session>,
        creds: Credentials,
    ) -> Result<(), CoreError> {
        self.check_creds(session, &creds)?;
        let store = &self.inner.store;
        let Some(client) = store
            .get_client(&creds.client_id)
            .await
            .map_err(|e| CoreError::from_store("unregister", e))?
        else {
            return Err(
                CoreError::new(ErrorKind::ClientNotFound, "Client not found")
                    .with("client_id", creds.client_id),
            );
        };
        if !verify_token(&creds.auth_token, &client.auth_token) {
            return Err(CoreError::unauthorized("Invalid client_id or auth_token"));
        }
        let ev: Vec<events::Event> = self
            .event(events::Kind::ClientUnregistered, |e| {
                e.client(&session.client_id)
            })
            .into_iter()
            .collect();
        if !store
            .delete_client(&creds.client_id, &ev)
            .await
            .map_err(|e| CoreError::from_store("unregister", e))?
        {
            return Err(
                CoreError::new(ErrorKind::ClientNotFound, "Client not found")
                    .with("client_id", creds.client_id),
            );
        }
        let sessions: Vec<Arc<Session>> = self
            .inner
            .sessions
            .get(&session.client_id)
            .map(|l| l.clone())
            .unwrap_or_default();
        for s in sessions {
            self.leave_all(&s, "unregistered", true).await;
        }
        Ok(())
    }

    /// Stops admitting sessions and asks every connection to close with 1001. The
    /// connection tasks then disconnect their sessions, which terminates their rooms.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        for entry in self.inner.sessions.iter() {
            for s in entry.value() {
                s.close(CloseReason::ShuttingDown);
            }
        }
    }

    /// Whether [`begin_shutdown`](Self::begin_shutdown) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Sessions of a client on this node, oldest first.
    /// Whether `client` has a session on this node.
    pub fn has_session(&self, client: &str) -> bool {
        self.inner.sessions.contains_key(client)
    }

    /// The newest session of `client` that satisfies `pred`, without copying the list.
    pub fn newest_session(
        &self,
        client: &str,
        pred: impl Fn(&Session) -> bool,
    ) -> Option<Arc<Session>> {
        self.inner
            .sessions
            .get(client)
            .and_then(|l| l.iter().rev().find(|s| pred(s)).cloned())
    }

    /// The signaling metrics of a signal `from` sends (to `target`, whose session here
    /// is `to`, in `room` if named): offer→answer time, join→first candidate time, offers
    /// left unanswered, for the wire format's metrics and the room's summary.
    pub(crate) fn observe_negotiation(
        &self,
        from: &Session,
        kind: SignalKind,
        target: Option<&str>,
        room: Option<&str>,
        to: Option<&Session>,
    ) {
        match kind {
            SignalKind::Offer => {
                let r = match room {
                    Some(id) => self.room(id),
                    None => from.only_room().and_then(|id| self.room(id.as_str())),
                };
                if let Some(r) = &r {
                    r.figures.offer();
                }
                let replaced = from.offer_sent(target, r.map(|r| r.id.clone()));
                if let Some(o) = replaced.filter(|o| o.waited >= UNANSWERED_AFTER) {
                    self.inner.negotiation_metrics(from).unanswered.increment(1);
                    if let Some(r) = o.room.and_then(|id| self.room(id.as_str())) {
                        r.figures.unanswered(1);
                    }
                }
            }
            SignalKind::Answer => {
                if let Some(offerer) = to {
                    self.inner.answered(offerer, from.client_id.as_str());
                }
            }
            SignalKind::IceCandidate => {
                if let Some((after, room)) = from.candidate_sent() {
                    self.inner
                        .negotiation_metrics(from)
                        .first_candidate
                        .record(after.as_secs_f64());
                    if let Some(r) = self.room(room.as_str()) {
                        r.figures.first_candidate(after);
                    }
                }
            }
        }
    }

    /// `session` leaves `room` (or the room ends): its offers there that got no answer
    /// count as unanswered.
    pub(in crate::hub) fn offers_abandoned(&self, room: &room::Room, session: &Session) {
        let n = session.offers_left_in(room.id.as_str());
        if n > 0 {
            room.figures.unanswered(n);
            self.inner
                .negotiation_metrics(session)
                .unanswered
                .increment(n as u64);
        }
    }

    /// Counts one relayed signal (`signal_relayed_total`).
    pub fn count_relayed(&self, kind: SignalKind) {
        let i = match kind {
            SignalKind::Offer => 0,
            SignalKind::Answer => 1,
            SignalKind::IceCandidate => 2,
        };
        self.inner.relayed[i].increment(1);
    }

    /// Every session of `client` on this node, oldest first.
    pub fn sessions_of(&self, client: &str) -> Vec<Arc<Session>> {
        self.inner
            .sessions
            .get(client)
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    fn check_version(&self, v: &str) -> Result<(), CoreError> {
        let parsed = semver::Version::parse(v.trim()).map_err(|e| {
            CoreError::bad_request(format!(
                "Invalid 'version' field '{v}': {e} (expected semver such as 1.0.0)"
            ))
        })?;
        let server = &self.inner.cfg.protocol_version;
        if parsed > *server {
            return Err(CoreError::new(
                ErrorKind::UnsupportedVersion,
                format!(
                    "Unsupported protocol version {parsed}: this server speaks {server} or older"
                ),
            )
            .with("server_version", server.to_string()));
        }
        Ok(())
    }

    /// Version, identity and token presence checks shared by REGISTER, UNREGISTER, ROOM_*.
    /// 429 when `client` created or joined more rooms this minute than
    /// `room_joins_per_minute` allows.
    fn check_join_rate(&self, client: &ClientId) -> Result<(), CoreError> {
        let Some((limiter, checks)) = &self.inner.join_limiter else {
            return Ok(());
        };
        if checks.fetch_add(1, Ordering::Relaxed) % 1024 == 1023 {
            limiter.retain_recent();
        }
        if limiter.check_key(client).is_ok() {
            return Ok(());
        }
        metrics::counter!("signal_rate_limited_total", "limit" => "room_joins").increment(1);
        Err(CoreError::new(
            ErrorKind::RateLimited,
            format!(
                "Too many room joins: client '{client}' may create or join {} rooms a minute",
                self.inner.cfg.room_joins_per_minute
            ),
        ))
    }

    /// Whether `session` may create or join `room`: 403 if its credential's `rooms`
    /// do not name it.
    fn check_grant(&self, session: &Session, room: &str) -> Result<(), CoreError> {
        let grants = session.grants();
        if grants.allows_room(room) {
            return Ok(());
        }
        Err(CoreError::forbidden(format!(
            "Room '{room}' is not granted to client '{}': its credential allows {}",
            session.client_id,
            grants.rooms_label()
        ))
        .with("room_id", room.to_owned()))
    }

    fn check_creds(&self, session: &Session, c: &Credentials) -> Result<(), CoreError> {
        self.check_version(&c.version)?;
        ClientId::parse("client_id", &c.client_id)?;
        if c.auth_token.is_empty() {
            return Err(CoreError::bad_request(
                "Missing or invalid 'auth_token' field",
            ));
        }
        if c.client_id != session.client_id.as_str() {
            return Err(CoreError::forbidden(format!(
                "client_id '{}' is not the client authenticated on this connection ('{}')",
                c.client_id, session.client_id
            )));
        }
        Ok(())
    }
}

/// Messages other nodes send here: delivered to this node's sessions like the hub's own.
impl Inner {
    /// Runs `f` on the media backend in a task of its own, when the backend takes part
    /// in rooms (an SFU); peer-to-peer media has nothing to do.
    fn media_task<F, Fut>(&self, f: F)
    where
        F: FnOnce(Arc<dyn Media>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.media.takes_room_signals() {
            tokio::spawn(f(self.media.clone()));
        }
    }

    /// What a message for a client from another node becomes in `s`'s queue: the
    /// sender's own bytes for a receiver of the same format, as on one node, or the
    /// event. `None` if its body does not decode.
    pub(super) fn client_item(
        s: &Session,
        id: uuid::Uuid,
        from_node: &str,
        mut event: Event,
        raw: Option<crate::router::RawFrame>,
    ) -> Option<Outbound> {
        let Event::Signal(sig) = &mut event else {
            return Some(Outbound::Event(Envelope::with_id(id, event)));
        };
        if let Some(raw) = raw {
            if s.format().map(Format::id) == Some(raw.format) && raw.head.len() <= Encoded::HEAD {
                let mut head = [0u8; Encoded::HEAD];
                head[..raw.head.len()].copy_from_slice(&raw.head);
                return Some(Outbound::Encoded(Encoded {
                    head,
                    head_len: raw.head.len() as u8,
                    kind: sig.kind,
                    parts: [raw.body, bytes::Bytes::new()],
                    accepted_at: std::time::Instant::now(),
                }));
            }
            // A frame that travelled alone: its body read back for this receiver.
            if raw.body_only_here {
                let decoded = event::body_decoder(raw.format)
                    .ok_or_else(|| {
                        CoreError::bad_request(format!("no decoder for format {}", raw.format))
                    })
                    .and_then(|decode| decode(&raw.body));
                match decoded {
                    Ok(body) => sig.body = body,
                    Err(e) => {
                        tracing::warn!(from_node = %from_node, error = %e, "cluster: a signal from another node does not decode");
                        return None;
                    }
                }
            }
        }
        Some(Outbound::Event(Envelope::with_id(id, event)))
    }
}

/// An offer with no answer this long counts as unanswered.
pub const UNANSWERED_AFTER: std::time::Duration = std::time::Duration::from_secs(30);

impl Inner {
    /// The negotiation metrics of `s`'s wire format.
    fn negotiation_metrics(&self, s: &Session) -> &NegotiationMetrics {
        let i = s
            .format()
            .map_or(Format::MAX, |f| usize::from(f.id()).min(Format::MAX));
        self.negotiation[i].get_or_init(|| {
            let wire = s.format_label();
            NegotiationMetrics {
                offer_answer: metrics::histogram!("signal_offer_answer_seconds", "wire" => wire),
                first_candidate: metrics::histogram!(
                    "signal_join_first_candidate_seconds",
                    "wire" => wire
                ),
                unanswered: metrics::counter!("signal_offers_unanswered_total", "wire" => wire),
            }
        })
    }

    /// `answerer` answers `offerer`: the time since the offer, or an unanswered offer if
    /// it came too late.
    fn answered(&self, offerer: &Session, answerer: &str) {
        let Some(o) = offerer.answer_from(answerer) else {
            return;
        };
        let m = self.negotiation_metrics(offerer);
        let room = o
            .room
            .and_then(|id| self.rooms.get(&id).map(|r| r.value().clone()));
        if o.waited >= UNANSWERED_AFTER {
            m.unanswered.increment(1);
            if let Some(r) = room {
                r.figures.unanswered(1);
            }
        } else {
            m.offer_answer.record(o.waited.as_secs_f64());
            if let Some(r) = room {
                r.figures.answered(o.waited);
            }
        }
    }
}

/// Marks `s`'s queue with where the next item came from in this node's inbox stream,
/// for a session whose frames are kept in the cluster.
fn mark(s: &Session, pos: Option<crate::router::InboxPos>) {
    if let Some(p) = pos
        && s.outbox().mirror().is_some()
    {
        s.outbox().push_mark(p);
    }
}

impl Inbox for Inner {
    fn receive(&self, msg: NodeMessage) -> usize {
        self.receive_at(msg, None)
    }

    fn receive_at(&self, msg: NodeMessage, pos: Option<crate::router::InboxPos>) -> usize {
        let NodeMessage {
            id,
            from_node,
            to,
            event,
            raw,
        } = msg;
        match to {
            Recipient::Client { client } => {
                let newest = self
                    .sessions
                    .get(client.as_str())
                    .and_then(|l| l.last().cloned());
                let Some(s) = newest else { return 0 };
                // An answer from another node to an offer sent from here.
                if let Event::Signal(sig) = &event
                    && sig.kind == SignalKind::Answer
                {
                    self.answered(&s, sig.from.as_str());
                }
                let Some(item) = Self::client_item(&s, id, &from_node, event, raw) else {
                    return 0;
                };
                mark(&s, pos);
                usize::from(s.send(item))
            }
            Recipient::Room { room, .. } if matches!(event, Event::MediaPublished { .. }) => {
                if let (Event::MediaPublished { client, tracks, .. }, Some(inner)) =
                    (event, self.me.upgrade())
                {
                    tokio::spawn(async move {
                        Hub { inner }.remote_published(&room, &client, tracks).await;
                    });
                }
                0
            }
            Recipient::Room { room, .. } if matches!(event, Event::RoomClosed { .. }) => {
                let ended = room.clone();
                self.media_task(move |media| async move { media.room_ended(&ended).await });
                if let Some(r) = pos.and_then(|_| self.rooms.get(room.as_str()).map(|r| r.clone()))
                {
                    for m in &r.state.read().members {
                        mark(&m.session, pos);
                    }
                }
                self.close_replica(&room, &Envelope::with_id(id, event))
            }
            Recipient::Room { room, except } => {
                let Some(r) = self.rooms.get(room.as_str()).map(|r| r.value().clone()) else {
                    return 0;
                };
                // Members admitted knowing of a joiner already are not told again.
                let env = Envelope::with_id(id, event);
                let known_since = match &env.event {
                    Event::PeerJoined { client, .. } => {
                        r.state.write().remote_joined(client, &from_node, &env)
                    }
                    Event::PeerLeft { client, .. } => {
                        r.state.write().remote_left(client, &env);
                        let (room, client) = (room.clone(), client.clone());
                        self.media_task(move |media| async move {
                            media.member_left(&room, &client).await;
                        });
                        None
                    }
                    _ => None,
                };
                let to: Vec<Arc<Session>> = r
                    .state
                    .read()
                    .members
                    .iter()
                    .filter(|m| known_since.is_none_or(|k| m.admission < k))
                    .filter(|m| except.as_ref() != Some(m.client()))
                    .map(|m| m.session.clone())
                    .collect();
                to.into_iter()
                    .map(|s| {
                        mark(&s, pos);
                        usize::from(s.deliver(env.clone()))
                    })
                    .sum()
            }
        }
    }

    fn load(&self) -> crate::router::NodeLoad {
        let mut load = crate::router::NodeLoad::default();
        for entry in self.sessions.iter() {
            for s in entry.value() {
                load.sessions += 1;
                let rooms = s.rooms().len();
                load.members += rooms;
                if rooms == 0 {
                    load.sessions_without_room += 1;
                }
            }
        }
        load
    }

    fn gone(&self, node: &str, clients: &[ClientId]) {
        if clients.is_empty() {
            self.located.retain(|_, n| &**n != node);
        } else {
            for c in clients {
                self.located.remove_if(c, |_, n| &**n == node);
            }
        }
        // Replicas no longer send to those members there: where they are is looked up
        // again (a resumed session moves to another node).
        let unknown: Arc<str> = Arc::from("");
        for r in self.rooms.iter() {
            let mut st = r.value().state.write();
            for (c, m) in st.remote.iter_mut() {
                if &*m.node == node && (clients.is_empty() || clients.contains(c)) {
                    m.node = unknown.clone();
                }
            }
        }
    }

    fn release(&self, token: &str) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        let token = token.to_owned();
        tokio::spawn(async move { Hub { inner }.release(&token).await });
    }

    fn kick(&self, client: &ClientId, room: Option<&RoomId>, reason: &str) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        let (client, room, reason) = (client.clone(), room.cloned(), reason.to_owned());
        tokio::spawn(async move {
            Hub { inner }
                .remove_here(&client, room.as_ref(), &reason)
                .await;
        });
    }

    fn evict(&self, client: &ClientId) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        let client = client.clone();
        tokio::spawn(async move { Hub { inner }.evict_local(&client).await });
    }

    fn reconnected(&self) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move { Hub { inner }.resync().await });
    }

    fn node_lost(&self, node: &str) {
        let Some(inner) = self.me.upgrade() else {
            return;
        };
        let node = node.to_owned();
        tokio::spawn(async move { Hub { inner }.reap_node(&node).await });
    }
}

#[cfg(test)]
mod tests;
