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
    router::{NodeMessage, Recipient, Remote},
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
}

impl Hub {
    /// Routes a signal to its target (or to the rest of its room), stamped with the
    /// sender's id, wherever the target is.
    pub async fn signal(&self, from: &Arc<Session>, req: SignalRequest) -> Result<(), CoreError> {
        let target = req.target.as_deref().filter(|t| !t.is_empty());
        let room = req.room.as_deref().filter(|r| !r.is_empty());
        let kind = req.kind;
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
        if let (Some(s), Some((format, e))) = (&to, encoded)
            && s.format() == Some(format)
        {
            s.send(Outbound::Encoded(e));
            self.count_relayed(kind);
            return Ok(Routed::Delivered);
        }
        let target = ClientId::parse("target_client_id", target)?;
        let env = Envelope::with_id(
            id,
            Event::Signal(Signal {
                kind,
                from: from.client_id.clone(),
                target: Some(target.clone()),
                room: room.map(RoomId::parse).transpose()?,
                body: body()?,
            }),
        );
        match to {
            Some(s) => {
                s.deliver(env);
                self.count_relayed(kind);
                Ok(Routed::Delivered)
            }
            None => Ok(Routed::Elsewhere(Elsewhere { target, env, kind })),
        }
    }

    /// Sends a signal [`relay`](Self::relay) found no session for here to the node
    /// holding its target; 404 when no node does.
    pub async fn send_elsewhere(&self, e: Elsewhere) -> Result<(), CoreError> {
        let not_found = |target: &ClientId| {
            CoreError::new(
                ErrorKind::PeerNotFound,
                format!("Target client '{target}' not found"),
            )
            .with("target_client_id", target.to_string())
        };
        if !self.inner.router.has_other_nodes() {
            return Err(not_found(&e.target));
        }
        let msg = NodeMessage {
            id: e.env.id,
            from_node: self.inner.router.node_id().to_owned(),
            to: Recipient::Client {
                client: e.target.clone(),
            },
            event: e.env.event.clone(),
        };
        match self.inner.router.send(msg).await {
            Remote::Delivered => {
                self.count_relayed(e.kind);
                Ok(())
            }
            Remote::NotFound => Err(not_found(&e.target)),
        }
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
        Ok(r)
    }
}
