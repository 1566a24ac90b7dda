//! Rooms across nodes. In a cluster the router's registry holds every room and every
//! member on any node, and decides what must be decided once (a room id taken, the cap,
//! the one sender, the one node that records a room's end); each node keeps a replica of
//! a room with its own members, which its relay path reads as on a single node. Events
//! for members elsewhere go through the router to their nodes.

use std::sync::Arc;

use chrono::Utc;
use parking_lot::{Mutex, RwLock};
use serde_json::json;
use uuid::Uuid;

use super::{
    Hub, Inner,
    event::{CloseReason, Envelope, Event},
    room::{
        Member, ParticipantInfo, PendingJoin, RemoteMember, Room, RoomState, already_in,
        final_status, history, not_found, room_full, sender_taken,
    },
    session::Session,
};
use crate::{
    error::{CoreError, ErrorKind},
    events,
    hub::Role,
    ids::{ClientId, RoomId},
    router::{JoinVerdict, LeaveVerdict, MemberEntry, RoomEntry},
    store::{ClientInTerminatedRoomRecord, TerminatedRoomRecord},
};

/// What [`Hub::admit`] returns: the admitted joins, the members the first of them
/// finds, and what those on other nodes published on the media backend.
pub(super) type Admitted = (
    Vec<(PendingJoin, Member)>,
    Vec<ParticipantInfo>,
    Vec<(ClientId, serde_json::Value)>,
);

fn registry_unavailable() -> CoreError {
    CoreError::new(
        ErrorKind::Unavailable,
        "Cluster registry unavailable (Redis), retry later",
    )
}

/// A member of another node as joiners and the REST API see it.
pub(super) fn participant_of(e: &MemberEntry) -> ParticipantInfo {
    ParticipantInfo {
        client_id: e.client.clone(),
        role: e.role,
        display_name: super::room::shown_name(e.display_name.as_ref(), &e.metadata),
        metadata: e.metadata.clone(),
        joined_at: e.joined_at,
    }
}

pub(super) fn history_of(
    room: &RoomId,
    e: &MemberEntry,
    reason: &str,
    by: &str,
    status: &str,
) -> ClientInTerminatedRoomRecord {
    let now = Utc::now();
    ClientInTerminatedRoomRecord {
        id: Uuid::new_v4(),
        client_id: e.client.to_string(),
        room_id: room.to_string(),
        joined_at: e.joined_at,
        left_at: now,
        termination_reason: reason.into(),
        terminated_by: by.into(),
        final_status: status.into(),
        capabilities: e.capabilities.clone(),
        metadata: e.metadata.clone(),
        record_created_at: now,
    }
}

impl Hub {
    /// Whether other nodes may hold members of this node's rooms.
    pub(super) fn clustered(&self) -> bool {
        self.inner.router.has_other_nodes()
    }

    /// A member of this node as the registry keeps it.
    pub(super) fn member_entry(&self, room: &RoomId, m: &Member) -> MemberEntry {
        MemberEntry {
            media: self.inner.media.published(room, m.client()),
            client: m.client().clone(),
            node: self.inner.router.node_id().to_owned(),
            role: m.role,
            metadata: m.metadata.clone(),
            capabilities: m.capabilities.clone(),
            display_name: m.session.display_name.clone(),
            joined_at: m.joined_at,
            room_session: m.room_session,
        }
    }

    /// This node's replica of a room the registry holds: 404 if it holds none, 503 if
    /// it cannot be asked.
    pub(super) async fn replica(&self, room_id: &RoomId) -> Result<Arc<Room>, CoreError> {
        let (entry, _) = self
            .inner
            .router
            .room_entry(room_id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "join_room: cluster registry unavailable");
                registry_unavailable()
            })?
            .ok_or_else(|| not_found(room_id))?;
        let room = replica_of(room_id, entry, self.config().room_messages_per_second);
        Ok(self
            .inner
            .rooms
            .entry(room_id.clone())
            .or_insert(room)
            .clone())
    }

    /// Has the registry admit a batch of joins checked here: answers the refused ones,
    /// and returns the admitted ones with the members the first of them finds, and what
    /// those on other nodes published on the media backend. `None` when every join was
    /// answered (the registry could not be asked).
    pub(super) async fn admit(
        &self,
        room: &Arc<Room>,
        accepted: Vec<(PendingJoin, Member)>,
    ) -> Option<Admitted> {
        let entries: Vec<MemberEntry> = accepted
            .iter()
            .map(|(_, m)| self.member_entry(&room.id, m))
            .collect();
        let (verdicts, before) = match self.inner.router.join_members(&room.id, &entries).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(room_id = %room.id, error = %e, "join_room: cluster registry unavailable");
                for (j, _) in accepted {
                    let _ = j.reply.send(Err(registry_unavailable()));
                }
                return None;
            }
        };
        let room_id = &room.id;
        let admission = {
            // The members elsewhere, for signals straight to their nodes. Those this
            // batch finds already are not announced to it again.
            let me = self.inner.router.node_id();
            let mut st = room.state.write();
            st.admissions += 1;
            let admission = st.admissions;
            for m in before.iter().filter(|m| m.node != me) {
                if !st.departed.contains_key(&m.client) && !st.remote.contains_key(&m.client) {
                    st.remote.insert(
                        m.client.clone(),
                        RemoteMember {
                            node: Arc::from(m.node.as_str()),
                            known_since: admission,
                            announced: None,
                        },
                    );
                }
            }
            admission
        };
        let mut admitted = Vec::with_capacity(accepted.len());
        for ((j, mut m), v) in accepted.into_iter().zip(verdicts) {
            let client = &j.session.client_id;
            let refused = match v {
                JoinVerdict::Joined => {
                    m.admission = admission;
                    admitted.push((j, m));
                    continue;
                }
                JoinVerdict::NoRoom => {
                    // The room ended elsewhere and this replica missed it.
                    self.retire(room);
                    not_found(room_id)
                }
                JoinVerdict::AlreadyIn => already_in(client, room_id),
                JoinVerdict::Full => room_full(room_id, room.max_participants),
                JoinVerdict::SenderTaken => sender_taken(room_id),
            };
            let _ = j.reply.send(Err(refused));
        }
        let me = self.inner.router.node_id();
        let published = before
            .iter()
            .filter(|m| m.node != me)
            .filter_map(|m| Some((m.client.clone(), m.media.clone()?)))
            .collect();
        Some((
            admitted,
            before.iter().map(participant_of).collect(),
            published,
        ))
    }

    /// Tells the other nodes what `client` published on the room's media backend (SFU
    /// mode): its registry entry first, which a later joiner there reads, then the nodes
    /// holding members now, which pull the tracks for them.
    pub(super) async fn share_published(&self, room: &Arc<Room>, client: &ClientId) {
        if !self.clustered() {
            return;
        }
        let Some(tracks) = self.inner.media.published(&room.id, client) else {
            return;
        };
        let entry = {
            let st = room.state.read();
            st.members
                .iter()
                .find(|m| m.client() == client)
                .map(|m| self.member_entry(&room.id, m))
        };
        let Some(entry) = entry else { return };
        if let Err(e) = self.inner.router.update_member(&room.id, &entry).await {
            tracing::warn!(room_id = %room.id, client_id = %client, error = %e, "cluster: could not record a member's SFU tracks; joiners on other nodes will not pull them");
        }
        let env = Envelope::new(Event::MediaPublished {
            room: room.id.clone(),
            client: client.clone(),
            tracks,
        });
        self.tell_other_nodes(&room.id, Some(client), &env).await;
    }

    /// A member on another node published tracks: this node's members pull them.
    pub(super) async fn remote_published(
        &self,
        room_id: &RoomId,
        client: &ClientId,
        tracks: serde_json::Value,
    ) {
        let Some(r) = self.room(room_id.as_str()) else {
            return;
        };
        let offers = self
            .inner
            .media
            .remote_published(room_id, client, &tracks)
            .await;
        self.deliver_sfu_offers(&r, offers);
    }

    /// Forgets this node's replica of `room` (closed, so a join queued on it looks again).
    fn retire(&self, room: &Arc<Room>) {
        room.state.write().closed = true;
        self.inner
            .rooms
            .remove_if(&room.id, |_, r| Arc::ptr_eq(r, room));
    }

    /// [`leave`](Hub::leave) in a cluster: the registry says whether the room ends, and
    /// only the node it tells so records the end.
    pub(super) async fn leave_clustered(
        &self,
        room: &Arc<Room>,
        session: &Arc<Session>,
        reason: &str,
        voluntary: bool,
    ) -> bool {
        let _control = room.control.lock().await;
        let member = {
            let mut st = room.state.write();
            let Some(pos) = st
                .members
                .iter()
                .position(|m| Arc::ptr_eq(&m.session, session))
            else {
                return false;
            };
            st.members.remove(pos)
        };
        session.remove_room(room.id.as_str());
        let verdict = self
            .inner
            .router
            .leave_member(&room.id, member.client())
            .await;
        let by = member.client().to_string();
        let record = history(room, &member, reason, &by, final_status(voluntary));
        match verdict {
            Ok(v @ (LeaveVerdict::Left(_) | LeaveVerdict::Terminated { .. })) => {
                self.settle_leave(&room.id, v, reason, |_| Some(record))
                    .await;
            }
            other => {
                if let Err(e) = other {
                    tracing::warn!(room_id = %room.id, error = %e, "leave: cluster registry unavailable; told this node's members only");
                }
                let entry = self.member_entry(&room.id, &member);
                self.member_gone(&room.id, &entry, reason, Some(record))
                    .await;
            }
        }
        true
    }

    /// Acts on the registry's answer to a leave: PEER_LEFT to the rest, or the room's
    /// end; `record` gives the leaver's history to write (`None` if written already).
    /// False if the client was not a member.
    pub(super) async fn settle_leave(
        &self,
        room_id: &RoomId,
        verdict: LeaveVerdict,
        reason: &str,
        record: impl FnOnce(&MemberEntry) -> Option<ClientInTerminatedRoomRecord>,
    ) -> bool {
        match verdict {
            LeaveVerdict::Left(gone) => {
                let r = record(&gone);
                self.member_gone(room_id, &gone, reason, r).await;
                true
            }
            LeaveVerdict::Terminated {
                entry,
                member: gone,
                remaining,
                ever_joined,
            } => {
                let r = record(&gone);
                self.end_room(room_id, entry, &gone, remaining, ever_joined, reason, r)
                    .await;
                true
            }
            LeaveVerdict::NotMember => false,
        }
    }

    /// A member left a room that goes on: PEER_LEFT to the rest, on every node; the
    /// history written; this node's replica retired if it has no member left.
    async fn member_gone(
        &self,
        room_id: &RoomId,
        gone: &MemberEntry,
        reason: &str,
        record: Option<ClientInTerminatedRoomRecord>,
    ) {
        // On its node its tracks end; here, other members stop pulling them.
        self.inner.media.member_left(room_id, &gone.client).await;
        let env = Envelope::new(Event::PeerLeft {
            room: room_id.clone(),
            client: gone.client.clone(),
            reason: reason.to_owned(),
        });
        if let Some(r) = self.room(room_id.as_str()) {
            let empty = {
                let mut st = r.state.write();
                if gone.node != self.inner.router.node_id() {
                    st.remote_left(&gone.client, &env);
                }
                for m in &st.members {
                    m.session.deliver(env.clone());
                }
                st.members.is_empty()
            };
            if empty {
                self.retire(&r);
            }
        }
        self.tell_other_nodes(room_id, Some(&gone.client), &env)
            .await;
        // Without a record the leave was recorded (with its event) when it happened.
        if let Some(record) = record {
            let ev: Vec<events::Event> = self
                .event(events::Kind::MemberLeft, |e| {
                    e.room(room_id)
                        .client(&gone.client)
                        .data(json!({ "reason": reason }))
                })
                .into_iter()
                .collect();
            if let Err(e) = self.store().remove_member(&record, &ev).await {
                tracing::error!(room_id = %room_id, error = %e, "could not record room leave");
            }
        }
    }

    /// The room ended with `gone`'s leave, and the registry chose this node to record
    /// it: ROOM_CLOSED to every member left on any node, one termination record with
    /// every member's history.
    #[allow(clippy::too_many_arguments)]
    async fn end_room(
        &self,
        room_id: &RoomId,
        entry: RoomEntry,
        gone: &MemberEntry,
        remaining: Vec<MemberEntry>,
        ever_joined: usize,
        reason: &str,
        record: Option<ClientInTerminatedRoomRecord>,
    ) {
        let by = gone.client.to_string();
        let why = if gone.role == Role::Sender && !remaining.is_empty() {
            format!("sender '{by}' left ({reason})")
        } else {
            format!("last member '{by}' left ({reason})")
        };
        let env = Envelope::new(Event::RoomClosed {
            room: room_id.clone(),
            reason: why.clone(),
        });
        // The negotiations this node saw; its members' offers there end unanswered.
        let negotiation = self.room(room_id.as_str()).map(|r| {
            let sessions: Vec<Arc<Session>> = r
                .state
                .read()
                .members
                .iter()
                .map(|m| m.session.clone())
                .collect();
            for s in &sessions {
                self.offers_abandoned(&r, s);
            }
            r.figures.summary()
        });
        self.inner.close_replica(room_id, &env);
        self.inner.media.room_ended(room_id).await;
        let nodes: Vec<String> = remaining.iter().map(|m| m.node.clone()).collect();
        if !nodes.is_empty() {
            self.inner
                .router
                .send_to_nodes(
                    &nodes,
                    crate::router::NodeMessage {
                        id: env.id,
                        from_node: self.inner.router.node_id().to_owned(),
                        to: crate::router::Recipient::Room {
                            room: room_id.clone(),
                            except: None,
                        },
                        event: env.event.clone(),
                        raw: None,
                    },
                )
                .await;
        }
        let now = Utc::now();
        let record_given = record.is_some();
        let mut histories: Vec<ClientInTerminatedRoomRecord> = record.into_iter().collect();
        histories.extend(
            remaining
                .iter()
                .map(|m| history_of(room_id, m, &why, &by, "Disconnected")),
        );
        let terminated = TerminatedRoomRecord {
            id: Uuid::new_v4(),
            room_id: room_id.to_string(),
            terminated_at: now,
            termination_recorded_at: now,
            room_data: json!({
                "room_uuid": entry.uuid.to_string(),
                "session_duration": (now - entry.created_at).num_seconds(),
                "participant_count": ever_joined,
                "final_status": "completed",
                "negotiation": negotiation,
            }),
            termination_reason: Some(why.clone()),
            terminated_by: Some(by),
            metadata: entry.metadata.clone(),
            record_created_at: now,
        };
        let mut ev: Vec<events::Event> = Vec::new();
        // The leaver's own event, unless its leave was recorded already.
        if record_given {
            ev.extend(self.event(events::Kind::MemberLeft, |e| {
                e.room(room_id)
                    .client(&gone.client)
                    .data(json!({ "reason": reason }))
            }));
        }
        for m in &remaining {
            ev.extend(self.event(events::Kind::MemberLeft, |e| {
                e.room(room_id)
                    .client(&m.client)
                    .data(json!({ "reason": why }))
            }));
        }
        ev.extend(self.event(events::Kind::RoomTerminated, |e| {
            e.room(room_id)
                .client(&gone.client)
                .data(terminated.room_data.clone())
        }));
        if let Err(e) = self
            .store()
            .terminate_room(&terminated, &histories, &ev)
            .await
        {
            tracing::error!(room_id = %room_id, error = %e, "could not record room termination");
        }
        metrics::counter!("signal_rooms_terminated_total").increment(1);
    }

    /// Cleans up after a lost node: each of its members leaves its room with reason
    /// "node lost" (the rooms it ended recorded once), then the router forgets it.
    pub(super) async fn reap_node(&self, node: &str) {
        let members = match self.inner.router.members_on(node).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(lost = %node, error = %e, "cluster: could not list a lost node's members");
                return;
            }
        };
        let reason = "node lost";
        let mut left = 0usize;
        // Resumable sessions wait for a RESUME on another node first.
        let waiting = self.orphans(node, &members).await;
        for (room_id, client) in members {
            if waiting.contains(&(room_id.clone(), client.clone())) {
                continue;
            }
            match self.inner.router.leave_member(&room_id, &client).await {
                Ok(v) => {
                    let record = |gone: &MemberEntry| {
                        Some(history_of(&room_id, gone, reason, "server", "Disconnected"))
                    };
                    if self.settle_leave(&room_id, v, reason, record).await {
                        left += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(lost = %node, error = %e, "cluster: could not take a lost node's member out");
                    return;
                }
            }
        }
        self.inner.router.forget_node(node).await;
        metrics::counter!("signal_cluster_nodes_lost_total").increment(1);
        tracing::warn!(lost = %node, members = left, "cluster: a lost node's members left their rooms");
    }

    /// After the registry was unreachable (or lost its data): puts back this node's rooms,
    /// members and sessions, then takes out the members the registry still lists here
    /// that left meanwhile (their leave was recorded then; the other nodes are told now).
    pub(super) async fn resync(&self) {
        let router = &self.inner.router;
        let rooms: Vec<(RoomId, RoomEntry, Vec<MemberEntry>)> = self
            .inner
            .rooms
            .iter()
            .map(|r| {
                let room = r.value();
                let st = room.state.read();
                (
                    room.id.clone(),
                    RoomEntry {
                        uuid: room.uuid,
                        created_at: room.created_at,
                        max_participants: room.max_participants,
                        metadata: room.metadata.clone(),
                        offer_sdp: st.offer_sdp.clone(),
                    },
                    st.members
                        .iter()
                        .map(|m| self.member_entry(&room.id, m))
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, _, m)| !m.is_empty())
            .collect();
        let sessions: Vec<(ClientId, usize)> = self
            .inner
            .sessions
            .iter()
            .map(|e| (e.key().clone(), e.value().len()))
            .collect();
        if let Err(e) = router.restore(&rooms, &sessions).await {
            tracing::warn!(error = %e, "cluster: could not restore this node's rooms in Redis");
            return;
        }
        let here: std::collections::HashSet<(RoomId, ClientId)> = rooms
            .iter()
            .flat_map(|(id, _, ms)| ms.iter().map(move |m| (id.clone(), m.client.clone())))
            .collect();
        let listed = match router.members_on(router.node_id()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: could not list this node's members in Redis");
                return;
            }
        };
        // Events from other nodes may have been lost meanwhile: each replica's view of
        // the members elsewhere is read again.
        let me = router.node_id();
        for (room_id, _, _) in &rooms {
            let (Ok(Some((_, members))), Some(r)) = (
                router.room_entry(room_id).await,
                self.room(room_id.as_str()),
            ) else {
                continue;
            };
            let mut st = r.state.write();
            let known: std::collections::HashMap<ClientId, RemoteMember> = members
                .iter()
                .filter(|m| m.node != me)
                .map(|m| {
                    let known = st.remote.get(&m.client);
                    (
                        m.client.clone(),
                        RemoteMember {
                            node: Arc::from(m.node.as_str()),
                            known_since: known.map_or(0, |r| r.known_since),
                            announced: known.and_then(|r| r.announced.clone()),
                        },
                    )
                })
                .collect();
            st.remote = known;
        }
        // Sessions handed to the cluster (a drained predecessor of this node) wait for
        // their clients: they are not gone.
        let waiting: std::collections::HashSet<ClientId> = router
            .resumables_on(router.node_id())
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|(_, r)| r.client)
            .filter(|c| !self.inner.sessions.contains_key(c))
            .collect();
        let mut ghosts = 0usize;
        for (room_id, client) in listed {
            if here.contains(&(room_id.clone(), client.clone())) || waiting.contains(&client) {
                continue;
            }
            ghosts += 1;
            // Their leave was recorded when it happened: the others are told now.
            if let Ok(v) = router.leave_member(&room_id, &client).await {
                self.settle_leave(&room_id, v, "left", |_| None).await;
            }
        }
        tracing::info!(
            rooms = rooms.len(),
            sessions = sessions.len(),
            departed = ghosts,
            "cluster: Redis reachable again; this node's rooms and sessions restored"
        );
    }

    /// Ends this node's sessions of `client`: a newer one opened on another node.
    pub(super) async fn evict_local(&self, client: &ClientId) {
        for s in self.sessions_of(client.as_str()) {
            tracing::info!(client_id = %client, old_session = %s.id, "session replaced on another node");
            self.leave_all(&s, "replaced", false).await;
            s.close(CloseReason::Replaced);
        }
    }

    /// Rooms across the cluster, with members on every node (or this node's rooms only
    /// when the registry cannot be asked, or on a single node).
    pub async fn cluster_rooms(&self) -> Vec<super::RoomInfo> {
        if !self.clustered() {
            return self.list_rooms();
        }
        let Ok(ids) = self.inner.router.room_ids().await else {
            return self.list_rooms();
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(info) = self.cluster_room(id.as_str()).await {
                out.push(info);
            }
        }
        out
    }

    /// One room across the cluster (this node's replica when the registry cannot be
    /// asked, or on a single node).
    pub async fn cluster_room(&self, room_id: &str) -> Option<super::RoomInfo> {
        if !self.clustered() {
            return self.room_info(room_id);
        }
        let id = RoomId::parse(room_id).ok()?;
        match self.inner.router.room_entry(&id).await {
            Ok(Some((entry, members))) => Some(super::RoomInfo {
                room_id: id,
                created_at: entry.created_at,
                max_participants: entry.max_participants,
                participants: members.iter().map(participant_of).collect(),
            }),
            Ok(None) => None,
            Err(_) => self.room_info(room_id),
        }
    }
}

/// A fresh replica of a room as the registry keeps it, with no member yet.
pub(super) fn replica_of(
    room_id: &RoomId,
    entry: RoomEntry,
    messages_per_second: u32,
) -> Arc<Room> {
    Arc::new(Room {
        id: room_id.clone(),
        uuid: entry.uuid,
        created_at: entry.created_at,
        metadata: entry.metadata,
        max_participants: entry.max_participants,
        control: tokio::sync::Mutex::new(()),
        state: RwLock::new(RoomState {
            offer_sdp: entry.offer_sdp,
            ..RoomState::default()
        }),
        joins: Mutex::new(Default::default()),
        figures: Default::default(),
        messages: super::room::message_limiter(messages_per_second),
    })
}

impl Inner {
    /// Ends this node's replica of a room that ended: its members are told, and leave it.
    pub(super) fn close_replica(&self, room_id: &RoomId, env: &Arc<Envelope>) -> usize {
        let Some((_, r)) = self.rooms.remove(room_id) else {
            return 0;
        };
        let members: Vec<Member> = {
            let mut st = r.state.write();
            st.closed = true;
            std::mem::take(&mut st.members)
        };
        for m in &members {
            m.session.remove_room(room_id.as_str());
        }
        let mut told = 0;
        for m in &members {
            told += usize::from(m.session.deliver(env.clone()));
            m.session.room_terminated();
        }
        told
    }
}
