//! The relay path: a signal from one session to a target peer, or to every other member
//! of a room. No store round trip, no global lock: one shard read for the target, short
//! per-session locks for the shared-room rule, one bounded queue push per receiver, and
//! one shared envelope for all of them.

use std::sync::Arc;

use uuid::Uuid;

use super::{
    Hub,
    event::{Envelope, Event, Signal, SignalBody, SignalKind},
    session::Session,
};
use crate::{
    bus::Remote,
    error::{CoreError, ErrorKind},
    ids::{ClientId, RoomId},
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

impl Hub {
    /// Routes a signal to its target (or to the rest of its room), stamped with the
    /// sender's id.
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
                    room: Some(room_id),
                    body: req.body,
                }),
            );
            for s in r.other_sessions(from) {
                s.deliver(env.clone());
            }
            self.count_relayed(kind);
            return Ok(());
        };
        let to = self.route(from, target, room)?;
        let target = ClientId::parse("target_client_id", target)?;
        let env = Envelope::with_id(
            req.id,
            Event::Signal(Signal {
                kind,
                from: from.client_id.clone(),
                target: Some(target.clone()),
                room: room.map(RoomId::parse).transpose()?,
                body: req.body,
            }),
        );
        match to {
            Some(s) => {
                s.deliver(env);
            }
            None => {
                // Not on this node. Another node may hold it (only when rooms don't
                // constrain routing, since room membership here is node-local).
                let not_connected = || {
                    CoreError::new(
                        ErrorKind::PeerNotFound,
                        format!("Target client '{target}' not found"),
                    )
                    .with("target_client_id", target.to_string())
                };
                if self.config().require_shared_room {
                    return Err(not_connected());
                }
                if self.inner.bus.deliver_remote(&target, env).await == Remote::NotFound {
                    return Err(not_connected());
                }
            }
        }
        self.count_relayed(kind);
        Ok(())
    }

    /// Where a signal from `from` to `target` (within `room`, if named) goes: the
    /// target's session on this node, or `None` when it has none here (another node may
    /// hold it). Checks every routing rule, with the errors [`signal`](Self::signal)
    /// gives, and allocates nothing: the relay path of the binary dialect uses it to
    /// forward a frame without decoding it.
    pub fn route(
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
