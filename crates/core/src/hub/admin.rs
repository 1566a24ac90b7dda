//! What an admin may do to clients and rooms, on every node of a cluster: take a member
//! out of a room, close a room, kick a client off the service and ban it for a while.

use std::sync::Arc;

use chrono::{SecondsFormat, TimeZone, Utc};

use super::{
    Hub,
    event::{CloseReason, Envelope, Event},
    session::Session,
};
use crate::{
    error::{CoreError, ErrorKind},
    events,
    hub::Role,
    ids::{ClientId, RoomId},
};

/// What [`Hub::kick`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kicked {
    /// Sessions closed on this node (other nodes close theirs as they are told).
    pub sessions_here: usize,
    /// When the ban ends (Unix milliseconds), if the client was banned.
    pub banned_until: Option<i64>,
    /// Whether its registration (and so its registered token) was deleted.
    pub unregistered: bool,
}

impl Hub {
    /// Takes `client` out of `room` on every node: its sessions there are told the room
    /// closed for them (`reason`) and leave it; the others see it leave, and the room
    /// ends if that leave ends it.
    pub async fn remove_member(&self, room: &RoomId, client: &ClientId, reason: &str) {
        self.remove_here(client, Some(room), reason).await;
        if self.clustered() {
            self.inner
                .router
                .kick_elsewhere(client, Some(room), reason)
                .await;
        }
    }

    /// Closes `room`: every member, on every node, is taken out of it with `reason`, its
    /// senders first (a sender's leave ends the room and tells the rest at once). The
    /// members it had, or `None` if no node holds it.
    pub async fn close_room(&self, room: &RoomId, reason: &str) -> Option<usize> {
        let mut members = self.cluster_room(room.as_str()).await?.participants;
        members.sort_by_key(|m| m.role != Role::Sender);
        for m in &members {
            self.remove_member(room, &m.client_id, reason).await;
        }
        Some(members.len())
    }

    /// Kicks `client` off the service: its sessions on every node are closed (with
    /// `reason`) and leave their rooms. With `ban`, it may not connect, join a room or
    /// resume until the ban ends, and its registration is deleted (its registered token
    /// dies with it).
    pub async fn kick(
        &self,
        client: &ClientId,
        reason: &str,
        ban: Option<std::time::Duration>,
    ) -> Result<Kicked, CoreError> {
        let mut banned_until = None;
        let mut unregistered = false;
        if let Some(ban) = ban.filter(|b| !b.is_zero()) {
            let ms = i64::try_from(ban.as_millis()).unwrap_or(i64::MAX);
            let until = Utc::now().timestamp_millis().saturating_add(ms);
            self.inner.bans.insert(client.clone(), until);
            if self.clustered() {
                self.inner.router.ban(client, until).await.map_err(|e| {
                    CoreError::new(
                        ErrorKind::Unavailable,
                        format!("Could not record the ban in the cluster: {e}"),
                    )
                })?;
            }
            banned_until = Some(until);
            let ev: Vec<events::Event> = self
                .event(events::Kind::ClientUnregistered, |e| {
                    e.client(client)
                        .data(serde_json::json!({ "reason": "banned" }))
                })
                .into_iter()
                .collect();
            unregistered = self
                .store()
                .delete_client(client.as_str(), &ev)
                .await
                .map_err(|e| CoreError::from_store("ban", e))?;
        }
        let sessions_here = self.remove_here(client, None, reason).await;
        if self.clustered() {
            self.inner.router.kick_elsewhere(client, None, reason).await;
        }
        Ok(Kicked {
            sessions_here,
            banned_until,
            unregistered,
        })
    }

    /// This node's part of a kick: `client`'s sessions here close (or, with `room`, leave
    /// that room, told it closed). How many sessions it touched.
    pub(crate) async fn remove_here(
        &self,
        client: &ClientId,
        room: Option<&RoomId>,
        reason: &str,
    ) -> usize {
        let sessions = self.sessions_of(client.as_str());
        let mut n = 0;
        for s in &sessions {
            match room {
                None => {
                    n += 1;
                    s.close(CloseReason::Kicked(reason.to_owned()));
                    self.disconnect(s, reason, false).await;
                }
                Some(room_id) => {
                    if self.take_out(s, room_id, reason).await {
                        n += 1;
                    }
                }
            }
        }
        n
    }

    /// Takes session `s` out of `room_id`, telling it the room closed for it.
    async fn take_out(&self, s: &Arc<Session>, room_id: &RoomId, reason: &str) -> bool {
        if !s.rooms().iter().any(|r| r == room_id) {
            return false;
        }
        let Some(room) = self.room(room_id.as_str()) else {
            return false;
        };
        s.deliver(Envelope::new(Event::RoomClosed {
            room: room_id.clone(),
            reason: reason.to_owned(),
        }));
        let left = self.leave(&room, s, reason, false).await;
        s.room_terminated();
        left
    }

    /// 403 while `client` is banned (on this node, or anywhere in a cluster: the
    /// cluster's bans are asked for while Redis is reachable).
    pub(crate) async fn check_ban(&self, client: &ClientId) -> Result<(), CoreError> {
        self.check_ban_in(client, true).await
    }

    /// [`check_ban`](Self::check_ban) with this node's bans only: a kick closed the
    /// client's sessions on every node, so a join needs no round trip to Redis.
    pub(crate) async fn check_ban_here(&self, client: &ClientId) -> Result<(), CoreError> {
        self.check_ban_in(client, false).await
    }

    async fn check_ban_in(&self, client: &ClientId, cluster: bool) -> Result<(), CoreError> {
        let now = Utc::now().timestamp_millis();
        let mut until = None;
        if let Some(u) = self.inner.bans.get(client).map(|u| *u) {
            if u > now {
                until = Some(u);
            } else {
                self.inner.bans.remove_if(client, |_, v| *v <= now);
            }
        }
        if until.is_none() && cluster && self.clustered() && self.inner.router.is_healthy() {
            match self.inner.router.banned_until(client).await {
                Ok(u) => until = u.filter(|u| *u > now),
                Err(e) => {
                    tracing::warn!(client_id = %client, error = %e, "could not check the cluster's bans; this node's apply");
                }
            }
        }
        match until {
            None => Ok(()),
            Some(u) => Err(CoreError::forbidden(format!(
                "Client '{client}' is banned until {}",
                rfc3339(u)
            ))
            .with("client_id", client.to_string())),
        }
    }
}

fn rfc3339(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}
