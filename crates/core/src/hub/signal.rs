//! The relay path: a signal from one session to a target peer, or to every other member
//! of a room. No store round trip, no global lock: one shard read for the target, short
//! per-session locks for the shared-room rule, one bounded queue push per receiver, and
//! one shared envelope for all of them.
//!
//! Every signal goes through here, the edges' zero-copy relay included: [`Hub::relay`]
//! routes, delivers on this node, and hands what is not on this node to the router, so a
//! rule about where a signal may go is written once.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Hub,
    event::{Encoded, Envelope, Event, Format, Outbound, Signal, SignalBody, SignalKind},
    session::Session,
};
use crate::{
    error::{CoreError, ErrorKind},
    ids::{ClientId, RoomId},
    media::{MediaUpdate, SFU_PEER},
    router::{NodeMessage, Recipient},
};

/// A signal as a dialect hands it to the hub.
#[derive(Debug, Clone)]
pub struct SignalRequest {
    /// Frame id, kept end to end.
    pub id: Uuid,
    /// Offer, answer or candidate.
    pub kind: SignalKind,
    /// Target peer; absent to reach every other member of `room`.
    pub target: Option<String>,
    /// Room, if named.
    pub room: Option<String>,
    /// Payload.
    pub body: SignalBody,
}

/// Where [`Hub::relay`] put a signal.
#[derive(Debug)]
#[must_use = "a signal for another node is sent only by `Hub::send_elsewhere`"]
pub enum Routed {
    /// Queued for the target's session on this node.
    Delivered,
    /// The target has no session on this node: [`Hub::send_elsewhere`] sends it on.
    Elsewhere(Elsewhere),
}

/// A signal whose target is not on this node, ready for the router.
#[derive(Debug)]
pub struct Elsewhere {
    target: ClientId,
    env: Arc<Envelope>,
    kind: SignalKind,
    /// The sender's rooms, for the shared-room rule on another node.
    from_rooms: Vec<RoomId>,
    /// The frame as the sender's edge encoded it, if it did.
    raw: Option<crate::router::RawFrame>,
}

impl Hub {
    /// Routes a signal to its target (or to the rest of its room), stamped with the
    /// sender's id, wherever the target is.
    pub async fn signal(&self, from: &Arc<Session>, req: SignalRequest) -> Result<(), CoreError> {
        let target = req.target.as_deref().filter(|t| !t.is_empty());
        let room = req.room.as_deref().filter(|r| !r.is_empty());
        let kind = req.kind;
        // SFU mode: a signal without a target (or to the SFU's id) is for the media
        // backend, not for the room's other members.
        if target.is_none_or(|t| t == SFU_PEER) && self.inner.media.takes_room_signals() {
            return self.media_signal(from, kind, room, req.body).await;
        }
        let Some(target) = target else {
            let Some(room) = room else {
                return Err(CoreError::bad_request(
                    "Missing or invalid 'target_client_id' field: name a target peer, or a room to reach its other members",
                ));
            };
            let room_id = RoomId::parse(room)?;
            let r = self.member_room(from, room)?;
            let env = Envelope::with_id(
                req.id,
                Event::Signal(Signal {
                    kind,
                    from: from.client_id.clone(),
                    target: None,
                    room: Some(room_id.clone()),
                    body: req.body,
                }),
            );
            self.observe_negotiation(from, kind, None, Some(room), None);
            for s in r.other_sessions(from) {
                s.deliver(env.clone());
            }
            // Members on other nodes, if any node holds some.
            self.tell_other_nodes(&room_id, Some(&from.client_id), &env)
                .await;
            self.count_relayed(kind);
            return Ok(());
        };
        let body = req.body;
        match self.relay(from, req.id, kind, target, room, None, || Ok(body))? {
            Routed::Delivered => Ok(()),
            Routed::Elsewhere(e) => self.send_elsewhere(e).await,
        }
    }

    /// Routes a signal to `target` (within `room`, if named) and queues it for the
    /// target's session on this node, or says it is elsewhere. The edge may hand the
    /// signal pre-encoded for one format (`encoded`): a receiver of that format gets those
    /// bytes, with nothing decoded or allocated; any other receiver, or another node, gets
    /// the event built from `body`, which is called only then.
    #[allow(clippy::too_many_arguments)]
    pub fn relay(
        &self,
        from: &Session,
        id: Uuid,
        kind: SignalKind,
        target: &str,
        room: Option<&str>,
        encoded: Option<(Format, Encoded)>,
        body: impl FnOnce() -> Result<SignalBody, CoreError>,
    ) -> Result<Routed, CoreError> {
        let to = self.route(from, target, room)?;
        self.observe_negotiation(from, kind, Some(target), room, to.as_deref());
        let encoded = match (&to, encoded) {
            (Some(s), Some((format, e))) if s.format() == Some(format) => {
                s.send(Outbound::Encoded(e));
                self.count_relayed(kind);
                return Ok(Routed::Delivered);
            }
            (_, e) => e,
        };
        let target = ClientId::parse("target_client_id", target)?;
        // For another node, a frame its format can read back travels alone: the body is
        // decoded there, and only for a receiver of another format.
        let clustered = to.is_none() && self.clustered();
        let raw_only = clustered
            && encoded
                .as_ref()
                .is_some_and(|(f, _)| super::event::body_decoder(f.id()).is_some());
        let env = Envelope::with_id(
            id,
            Event::Signal(Signal {
                kind,
                from: from.client_id.clone(),
                target: Some(target.clone()),
                room: room.map(RoomId::parse).transpose()?,
                body: if raw_only {
                    SignalBody::default()
                } else {
                    body()?
                },
            }),
        );
        match to {
            Some(s) => {
                s.deliver(env);
                self.count_relayed(kind);
                Ok(Routed::Delivered)
            }
            None => Ok(Routed::Elsewhere(Elsewhere {
                target,
                env,
                kind,
                // Only a cluster sends it on: a single node answers 404 at once.
                from_rooms: if clustered { from.rooms() } else { Vec::new() },
                raw: encoded
                    .filter(|_| clustered)
                    .map(|(format, e)| raw_frame(format, &e, raw_only)),
            })),
        }
    }

    /// Sends a signal [`relay`](Self::relay) found no session for here on to the node
    /// holding its target, without waiting, when this node knows that node already (the
    /// target is a member elsewhere of a room the signal names, or of one the sender is
    /// in): `Ok(None)` once queued. `Ok(Some(e))` when the target must be looked up in
    /// the registry first: [`send_elsewhere`](Self::send_elsewhere) does that.
    pub fn post_elsewhere(&self, e: Elsewhere) -> Result<Option<Elsewhere>, CoreError> {
        if !self.clustered() {
            return Err(peer_not_found(&e.target));
        }
        let Some(node) = self.known_node(&e) else {
            return Ok(Some(e));
        };
        self.post(&node, e)?;
        Ok(None)
    }

    /// The node of `e`'s target as this node's replicas know it, if the rules let the
    /// signal reach it there.
    fn known_node(&self, e: &Elsewhere) -> Option<Arc<str>> {
        let Event::Signal(sig) = &e.env.event else {
            return None;
        };
        // A member whose node went away is looked up again (an empty node).
        let lookup = |room: &RoomId| {
            self.room(room.as_str()).and_then(|r| {
                r.state
                    .read()
                    .remote
                    .get(&e.target)
                    .map(|m| m.node.clone())
                    .filter(|n| !n.is_empty())
            })
        };
        match &sig.room {
            Some(r) => lookup(r),
            None => e.from_rooms.iter().find_map(lookup).or_else(|| {
                if self.config().require_shared_room {
                    None
                } else {
                    self.inner.located.get(&e.target).map(|n| n.value().clone())
                }
            }),
        }
    }

    /// Remembers the node the registry gave for `client`, where no shared room is needed
    /// to reach it.
    fn remember_node(&self, client: &ClientId, node: &str) {
        if self.config().require_shared_room {
            return;
        }
        let located = &self.inner.located;
        if located.len() >= super::LOCATED_CAP {
            located.clear();
        }
        located.insert(client.clone(), Arc::from(node));
    }

    /// Queues `e` for `node`.
    fn post(&self, node: &str, e: Elsewhere) -> Result<(), CoreError> {
        let id = e.env.id;
        // The envelope is this signal's alone: its event moves on, uncopied.
        let event = Arc::try_unwrap(e.env).map_or_else(|env| env.event.clone(), |env| env.event);
        let msg = NodeMessage {
            id,
            from_node: self.inner.router.node_id().to_owned(),
            to: Recipient::Client { client: e.target },
            event,
            raw: e.raw,
        };
        self.inner.router.post(node, msg).map_err(|err| {
            tracing::warn!(node = %node, error = %err, "signal: could not send to another node");
            CoreError::new(
                ErrorKind::Unavailable,
                format!("Cluster link unavailable ({}), retry later", err.0),
            )
        })?;
        self.count_relayed(e.kind);
        Ok(())
    }

    /// Sends a signal [`relay`](Self::relay) found no session for here to the node
    /// holding its target, looking it up in the registry when this node does not know
    /// it; 404 when no node holds it.
    pub async fn send_elsewhere(&self, e: Elsewhere) -> Result<(), CoreError> {
        let Some(e) = self.post_elsewhere(e)? else {
            return Ok(());
        };
        let Some(node) = self.inner.router.locate(&e.target).await else {
            return Err(peer_not_found(&e.target));
        };
        // The routing rules [`route`](Self::route) checks here, checked against the
        // registry for a target on another node.
        if let Event::Signal(sig) = &e.env.event {
            let rooms: Option<Vec<RoomId>> = match &sig.room {
                Some(r) => Some(vec![r.clone()]),
                None if self.config().require_shared_room => Some(e.from_rooms.clone()),
                None => None,
            };
            if let Some(rooms) = rooms {
                let shared = self
                    .inner
                    .router
                    .in_any_room(&e.target, &rooms)
                    .await
                    .map_err(|err| {
                        tracing::warn!(error = %err, "signal: cluster registry unavailable");
                        CoreError::new(
                            ErrorKind::Unavailable,
                            "Cluster registry unavailable (Redis), retry later",
                        )
                    })?;
                if !shared {
                    return Err(match &sig.room {
                        Some(r) => CoreError::new(
                            ErrorKind::PeerNotFound,
                            format!("Target client '{}' is not in room '{r}'", e.target),
                        )
                        .with("target_client_id", e.target.to_string())
                        .with("room_id", r.to_string()),
                        None => CoreError::new(
                            ErrorKind::NoSharedRoom,
                            format!("Clients '{}' and '{}' share no room", sig.from, e.target),
                        )
                        .with("target_client_id", e.target.to_string()),
                    });
                }
            }
        }
        self.remember_node(&e.target, &node);
        // Replicas that lost track of the target's node know it again.
        for room in e.from_rooms.iter() {
            if let Some(r) = self.room(room.as_str()) {
                let mut st = r.state.write();
                if let Some(m) = st.remote.get_mut(&e.target)
                    && *m.node != *node
                {
                    m.node = Arc::from(node.as_str());
                }
            }
        }
        self.post(&node, e)
    }

    /// Where a signal from `from` to `target` (within `room`, if named) goes: the
    /// target's session on this node, or `None` when it has none here (another node may
    /// hold it). Checks every routing rule and allocates nothing.
    fn route(
        &self,
        from: &Session,
        target: &str,
        room: Option<&str>,
    ) -> Result<Option<Arc<Session>>, CoreError> {
        ClientId::check("target_client_id", target)?;
        if let Some(room) = room {
            RoomId::check(room)?;
        }
        if target == from.client_id.as_str() {
            return Err(CoreError::bad_request(
                "Cannot signal yourself: target_client_id is the sender",
            ));
        }
        match room {
            Some(room_id) => {
                let r = self.member_room(from, room_id)?;
                // The target's sessions by hash, then the member among them by pointer. A
                // target with no session here may be on another node: the caller decides.
                let Some(list) = self.inner.sessions.get(target) else {
                    return Ok(None);
                };
                match r.member_among(&list) {
                    Some(s) => Ok(Some(s)),
                    None => Err(CoreError::new(
                        ErrorKind::PeerNotFound,
                        format!("Target client '{target}' is not in room '{room_id}'"),
                    )
                    .with("target_client_id", target.to_owned())
                    .with("room_id", room_id.to_owned())),
                }
            }
            None if !self.config().require_shared_room => Ok(self.newest_session(target, |_| true)),
            None => {
                if !self.has_session(target) {
                    return Ok(None);
                }
                match self.newest_session(target, |s| from.shares_room_with(s)) {
                    Some(s) => Ok(Some(s)),
                    None => Err(CoreError::new(
                        ErrorKind::NoSharedRoom,
                        format!("Clients '{}' and '{target}' share no room", from.client_id),
                    )
                    .with("target_client_id", target.to_owned())),
                }
            }
        }
    }

    /// A member's signal to the room's media backend (SFU mode): its offer publishes
    /// tracks, its answer completes an offer the backend made it. Trickled candidates are
    /// dropped: the SFU is ICE-lite and learns the member's address from its checks.
    async fn media_signal(
        &self,
        from: &Arc<Session>,
        kind: SignalKind,
        room: Option<&str>,
        body: SignalBody,
    ) -> Result<(), CoreError> {
        let room_id = match room {
            Some(r) => RoomId::parse(r)?,
            None => {
                let rooms = from.rooms();
                match rooms.as_slice() {
                    [only] => only.clone(),
                    _ => {
                        return Err(CoreError::bad_request(
                            "Missing 'room_id' field: name the room whose media this signal is for",
                        ));
                    }
                }
            }
        };
        let r = self.member_room(from, room_id.as_str())?;
        if kind == SignalKind::IceCandidate {
            metrics::counter!("signal_sfu_candidates_dropped_total").increment(1);
            return Ok(());
        }
        let sdp = body
            .sdp
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| CoreError::bad_request("Missing or empty 'sdp' field"))?;
        let media = &self.inner.media;
        let update = if kind == SignalKind::Offer {
            media.offer(&room_id, &from.client_id, sdp).await
        } else {
            media.answer(&room_id, &from.client_id, sdp).await
        }
        .map_err(|e| super::room::media_error("media signal", e))?;
        self.deliver_media_update(&r, from, update);
        if kind == SignalKind::Offer {
            self.share_published(&r, &from.client_id).await;
        }
        Ok(())
    }

    /// The SFU's offer (a join's `media.offer_sdp`) as a signal from it, for edges whose
    /// join replies carry no SDP (the JSON dialects).
    pub fn offer_from_sfu(&self, session: &Arc<Session>, room: &RoomId, sdp: String) {
        if let Some(r) = self.room(room.as_str()) {
            self.deliver_media_update(
                &r,
                session,
                MediaUpdate {
                    answer_sdp: None,
                    offers: vec![(session.client_id.clone(), sdp)],
                },
            );
        }
    }

    /// Tells members what the media backend made of a change: its answer to `caller`,
    /// and its offers to each member named (members on this node).
    pub(super) fn deliver_media_update(
        &self,
        room: &super::room::Room,
        caller: &Arc<Session>,
        update: MediaUpdate,
    ) {
        if let Some(sdp) = update.answer_sdp {
            let sfu = ClientId::sfu();
            caller.deliver(sfu_signal(&sfu, SignalKind::Answer, caller, room, sdp));
        }
        self.deliver_sfu_offers_with(room, Some(caller), update.offers);
    }

    /// The media backend's offers to members of `room` on this node.
    pub(super) fn deliver_sfu_offers(
        &self,
        room: &super::room::Room,
        offers: Vec<(ClientId, String)>,
    ) {
        self.deliver_sfu_offers_with(room, None, offers);
    }

    fn deliver_sfu_offers_with(
        &self,
        room: &super::room::Room,
        caller: Option<&Arc<Session>>,
        offers: Vec<(ClientId, String)>,
    ) {
        let sfu = ClientId::sfu();
        for (client, sdp) in offers {
            let target = match caller {
                Some(c) if c.client_id == client => Some(c.clone()),
                _ => room
                    .state
                    .read()
                    .members
                    .iter()
                    .find(|m| m.session.client_id == client)
                    .map(|m| m.session.clone()),
            };
            match target {
                Some(t) => {
                    t.deliver(sfu_signal(&sfu, SignalKind::Offer, &t, room, sdp));
                }
                None => tracing::debug!(
                    room_id = %room.id,
                    client_id = %client,
                    "SFU offer for a member not on this node: it pulls the tracks when it next joins"
                ),
            }
        }
    }

    /// The room `room_id`, checking it exists (404) and `from` is a member (403).
    fn member_room(
        &self,
        from: &Session,
        room_id: &str,
    ) -> Result<Arc<super::room::Room>, CoreError> {
        let r = self.room(room_id).ok_or_else(|| {
            CoreError::new(
                ErrorKind::RoomNotFound,
                format!("Room '{room_id}' not found"),
            )
            .with("room_id", room_id.to_string())
        })?;
        if !from.in_room(room_id) {
            return Err(CoreError::new(
                ErrorKind::NotMember,
                format!("Client '{}' is not in room '{room_id}'", from.client_id),
            )
            .with("room_id", room_id.to_string()));
        }
        if let Some(limit) = &r.messages
            && limit.check().is_err()
        {
            metrics::counter!("signal_rate_limited_total", "limit" => "room_messages").increment(1);
            return Err(CoreError::new(
                ErrorKind::RateLimited,
                format!(
                    "Room '{room_id}' is over its message rate ({} signals a second): send more slowly",
                    self.config().room_messages_per_second
                ),
            )
            .with("room_id", room_id.to_string()));
        }
        Ok(r)
    }
}

fn peer_not_found(target: &ClientId) -> CoreError {
    CoreError::new(
        ErrorKind::PeerNotFound,
        format!("Target client '{target}' not found"),
    )
    .with("target_client_id", target.to_string())
}

/// A signal's encoded frame, as it travels to another node.
fn raw_frame(format: Format, e: &Encoded, body_only_here: bool) -> crate::router::RawFrame {
    crate::router::RawFrame {
        body_only_here,
        format: format.id(),
        head: bytes::Bytes::copy_from_slice(&e.head[..usize::from(e.head_len)]),
        body: if e.parts[1].is_empty() {
            e.parts[0].clone()
        } else {
            let mut b = bytes::BytesMut::with_capacity(e.parts[0].len() + e.parts[1].len());
            b.extend_from_slice(&e.parts[0]);
            b.extend_from_slice(&e.parts[1]);
            b.freeze()
        },
    }
}

/// A signal from the media backend to one member.
fn sfu_signal(
    sfu: &ClientId,
    kind: SignalKind,
    to: &Session,
    room: &super::room::Room,
    sdp: String,
) -> Arc<Envelope> {
    Envelope::new(Event::Signal(Signal {
        kind,
        from: sfu.clone(),
        target: Some(to.client_id.clone()),
        room: Some(room.id.clone()),
        body: SignalBody {
            sdp: Some(sdp),
            ..SignalBody::default()
        },
    }))
}
