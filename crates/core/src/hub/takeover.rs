//! Resume on any node. In a cluster, a resumable session is recorded under its token
//! where every node can read it, and the frames its connection sends are kept there
//! before they are sent ([`super::Mirror`]); every message another node sends this node
//! is kept in this node's inbox stream, and each session's kept frames say how far into
//! it the session had been queued. A RESUME that reaches another node, when the node
//! holding the session was lost (or lets go of it), takes it over: the frames the client
//! missed come from what was kept, then the messages the lost node was sent after them.

use std::{sync::Arc, time::Duration};

use super::{
    Hub, Session,
    event::{CloseReason, Envelope, Event, Outbound},
    mirror::Mirror,
    resume::{ResumeParams, Resumed},
    room::{Member, RemoteMember},
};
use crate::{
    error::{CoreError, ErrorKind},
    ids::{ClientId, RoomId},
    router::{InboxPos, NodeMessage, Recipient, ResumeRecord, RouterError},
};

/// How long a RESUME waits for the node holding the session to let go of it.
const RELEASE_WAIT: Duration = Duration::from_secs(5);

fn unknown() -> CoreError {
    CoreError::new(
        ErrorKind::Unauthenticated,
        "Unknown or expired resume_token: CONNECT anew",
    )
}

fn unavailable(e: RouterError) -> CoreError {
    tracing::warn!(error = %e, "resume: cluster registry unavailable");
    CoreError::new(
        ErrorKind::Unavailable,
        "Cluster registry unavailable (Redis), retry later",
    )
}

impl Hub {
    /// The record of `s` as the cluster keeps it.
    fn record_of(&self, s: &Session, rooms: Vec<RoomId>) -> ResumeRecord {
        ResumeRecord {
            client: s.client_id.clone(),
            session: s.id,
            node: self.inner.router.node_id().to_owned(),
            format: s.format().map_or(0, super::Format::id),
            capabilities: s.capabilities.clone(),
            metadata: s.metadata.clone(),
            display_name: s.display_name.clone(),
            connected_at: s.connected_at,
            rooms,
            released: false,
        }
    }

    /// In a cluster: records resumable session `s` under `token` (in place of
    /// `replaces`), and has its writer keep its frames there (from `hw` in this node's
    /// inbox stream). A failure is logged: the session then resumes on this node only.
    pub(super) async fn keep_in_cluster(
        &self,
        s: &Arc<Session>,
        token: &str,
        replaces: Option<&str>,
        hw: Option<InboxPos>,
    ) {
        let router = &self.inner.router;
        if !router.resumes_across_nodes() {
            return;
        }
        if s.outbox().mirror().is_none() {
            s.outbox().set_mirror(Mirror::new(router.clone(), s.id, hw));
        }
        if let Err(e) = router
            .resume_open(token, &self.record_of(s, Vec::new()), replaces)
            .await
        {
            tracing::warn!(client_id = %s.client_id, error = %e, "resume: could not record the session in the cluster");
        }
    }

    /// RESUME of a session this node does not hold: takes it over from the node that
    /// did, if that node is gone or lets go of it.
    pub(super) async fn resume_elsewhere(&self, p: ResumeParams) -> Result<Resumed, CoreError> {
        let router = self.inner.router.clone();
        let record = router
            .resume_record(&p.token)
            .await
            .map_err(unavailable)?
            .ok_or_else(unknown)?;
        if p.client_id
            .as_deref()
            .is_some_and(|c| c != record.client.as_str())
        {
            return Err(unknown());
        }
        self.check_ban(&record.client).await?;
        let format = p
            .formats
            .unwrap_or(&[])
            .iter()
            .copied()
            .find(|f| f.id() == record.format)
            .ok_or_else(|| {
                CoreError::bad_request(
                    "This session speaks another wire format: resume it on the same endpoint",
                )
            })?;
        let outbox = p.outbox.clone().ok_or_else(unknown)?;
        let me = router.node_id().to_owned();
        let from = record.node.clone();
        if from != me && !record.released {
            // Still held by a node that may be up: ask it to let go (a node that is gone
            // does not listen, and lets go of nothing).
            if router
                .ask_release(&from, &p.token)
                .await
                .map_err(unavailable)?
            {
                let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
                loop {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    match router.resume_record(&p.token).await.map_err(unavailable)? {
                        Some(r) if r.released => break,
                        Some(_) if tokio::time::Instant::now() < deadline => {}
                        Some(_) => {
                            return Err(CoreError::new(
                                ErrorKind::Conflict,
                                "The session's old connection did not let go of it; retry",
                            ));
                        }
                        None => return Err(unknown()),
                    }
                }
            }
        }
        let took = router
            .take_over(&p.token, &from)
            .await
            .map_err(unavailable)?
            .ok_or_else(unknown)?;
        let record = took.record;
        let last_seq = p.last_seq;
        let rooms: Vec<RoomId> = if record.rooms.is_empty() {
            router
                .members_on(&from)
                .await
                .map_err(unavailable)?
                .into_iter()
                .filter(|(_, c)| *c == record.client)
                .map(|(r, _)| r)
                .collect()
        } else {
            record.rooms.clone()
        };
        // What the client missed must all be kept: frames after `last_seq`, unbroken.
        let top = took.frames.last().map_or(0, |f| f.seq);
        let oldest = took.frames.first().map_or(1, |f| f.seq);
        let missed: Vec<_> = took.frames.iter().filter(|f| f.seq > last_seq).collect();
        let broken = missed
            .iter()
            .zip(last_seq + 1..)
            .any(|(f, want)| f.seq != want);
        let refused = if took.frames.is_empty() {
            Some("no frames of this session are kept: CONNECT anew".to_owned())
        } else if last_seq > top {
            Some(format!(
                "last_seq {last_seq} is past the {top} frames sent on this session"
            ))
        } else if last_seq + 1 < oldest || broken {
            Some(format!(
                "frames after {last_seq} are no longer kept (the oldest kept is {oldest}): CONNECT anew"
            ))
        } else {
            None
        };
        if let Some(msg) = refused {
            metrics::counter!("signal_resume_overflows_total").increment(1);
            self.end_taken(&p.token, &record, &from, &rooms, "resume buffer overflow")
                .await;
            return Err(CoreError::new(ErrorKind::Conflict, msg));
        }
        let hw = took.frames.last().and_then(|f| f.hw);
        let mut items: Vec<Outbound> = missed
            .iter()
            .map(|f| Outbound::Frame(f.payload.clone()))
            .collect();

        // The session, here now, in its rooms. What it is sent from now on waits behind
        // what it missed: the queue hands nothing out until `replay` restores.
        outbox.hold();
        outbox.keep_sent(
            self.inner.cfg.resume_buffer,
            self.inner.cfg.resume_buffer_bytes,
        );
        let token = super::resume::new_token();
        let session = Session::taken_over(&record, format, outbox, token.clone());
        session
            .outbox()
            .set_mirror(Mirror::new(router.clone(), session.id, hw));
        let mut joined: Vec<RoomId> = Vec::with_capacity(rooms.len());
        for room_id in &rooms {
            match self.adopt_member(&session, room_id, &from).await {
                Ok(true) => joined.push(room_id.clone()),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(room_id = %room_id, error = %e, "resume: could not move the session's membership here");
                }
            }
        }
        // Reachable here only once it is a member here: a signal naming one of its rooms
        // that found its session before its membership would be refused (404). Until
        // then what is sent to it goes to the old node's inbox, read below.
        self.inner
            .sessions
            .entry(record.client.clone())
            .or_default()
            .push(session.clone());
        self.inner
            .session_count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics::gauge!("signal_sessions", "wire" => session.format_label()).increment(1.0);
        self.inner.resumable.insert(token.clone(), session.clone());
        router.session_moved(&record.client, &from).await;
        // What this node posted for the old node is in its inbox before it is read.
        router.posted_sent().await;
        let sent = match router.inbox_since(&from, hw).await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(lost = %from, error = %e, "resume: could not read what the lost node was sent");
                Vec::new()
            }
        };
        let inbox_items = sent.len();
        for (_, msg) in sent {
            if let Some(item) = self.item_for(&session, &rooms, msg) {
                items.push(item);
            }
        }
        self.keep_in_cluster(&session, &token, Some(&p.token), None)
            .await;
        metrics::counter!("signal_resumes_total").increment(1);
        metrics::counter!("signal_resume_takeovers_total").increment(1);
        tracing::info!(client_id = %record.client, session_id = %record.session, from = %from, rooms = joined.len(), kept = missed.len(), inbox = inbox_items, "resume: session taken over from another node");
        Ok(Resumed {
            session,
            token,
            replayed: 0,
            restore: Some(items),
        })
    }

    /// What a message the lost node was sent becomes for `s`, if it was for it.
    fn item_for(&self, s: &Session, rooms: &[RoomId], msg: NodeMessage) -> Option<Outbound> {
        let NodeMessage {
            id,
            from_node,
            to,
            event,
            raw,
        } = msg;
        match to {
            Recipient::Client { client } if client == s.client_id => {
                super::Inner::client_item(s, id, &from_node, event, raw)
            }
            Recipient::Room { room, except }
                if rooms.contains(&room) && except.as_ref() != Some(&s.client_id) =>
            {
                if let Event::PeerJoined { client, .. } = &event
                    && *client == s.client_id
                {
                    return None;
                }
                Some(Outbound::Event(Envelope::with_id(id, event)))
            }
            _ => None,
        }
    }

    /// Makes `session` this node's member of `room_id`, moved in the registry from node
    /// `from`. False when it is no longer a member there.
    async fn adopt_member(
        &self,
        session: &Arc<Session>,
        room_id: &RoomId,
        from: &str,
    ) -> Result<bool, RouterError> {
        let router = &self.inner.router;
        let Some(entry) = router
            .move_member(room_id, &session.client_id, from)
            .await?
        else {
            return Ok(false);
        };
        let Some((room_entry, members)) = router.room_entry(room_id).await? else {
            return Ok(false);
        };
        let fresh =
            super::cluster::replica_of(room_id, room_entry, self.config().room_messages_per_second);
        let room = self
            .inner
            .rooms
            .entry(room_id.clone())
            .or_insert(fresh)
            .clone();
        let me = router.node_id();
        {
            let mut st = room.state.write();
            st.remote.remove(&session.client_id);
            for m in members
                .iter()
                .filter(|m| m.node != me && m.client != session.client_id)
            {
                st.remote
                    .entry(m.client.clone())
                    .or_insert_with(|| RemoteMember {
                        node: Arc::from(m.node.as_str()),
                        known_since: 0,
                        announced: None,
                    });
            }
            let admission = st.admissions;
            st.members.push(Member {
                session: session.clone(),
                role: entry.role,
                metadata: entry.metadata.clone(),
                capabilities: entry.capabilities.clone(),
                joined_at: entry.joined_at,
                room_session: entry.room_session,
                admission,
            });
        }
        session.add_room(room_id.clone());
        Ok(true)
    }

    /// A session this node took over but cannot resume (or whose window ended after its
    /// node was lost): it leaves its rooms, as it would have on its own node.
    async fn end_taken(
        &self,
        token: &str,
        record: &ResumeRecord,
        from: &str,
        rooms: &[RoomId],
        reason: &str,
    ) {
        let router = &self.inner.router;
        for room_id in rooms {
            // Leaves only a membership still on `from` (not one since moved elsewhere).
            match router.room_entry(room_id).await {
                Ok(Some((_, members)))
                    if members
                        .iter()
                        .any(|m| m.client == record.client && m.node == from) => {}
                _ => continue,
            }
            match router.leave_member(room_id, &record.client).await {
                Ok(v) => {
                    let rec = |gone: &crate::router::MemberEntry| {
                        Some(super::cluster::history_of(
                            room_id,
                            gone,
                            reason,
                            "server",
                            "Disconnected",
                        ))
                    };
                    self.settle_leave(room_id, v, reason, rec).await;
                }
                Err(e) => {
                    tracing::warn!(room_id = %room_id, error = %e, "resume: could not take an ended session out of its room");
                }
            }
        }
        router.resume_close(token, &record.session).await;
        router.session_moved(&record.client, from).await;
        router.session_closed(&record.client).await;
    }

    /// Another node resumes session `token`: this node lets go of it without it leaving
    /// its rooms (its connection, if still open, is closed), then says so.
    pub(super) async fn release(&self, token: &str) {
        let Some(session) = self.inner.resumable.get(token).map(|s| s.value().clone()) else {
            // Not held here (handed to the cluster as this node drained): released if
            // the cluster still says this node holds it.
            self.inner.router.resume_release(token).await;
            return;
        };
        if let Some(r) = session.resumable() {
            if !session.is_parked() {
                let parked = r.on_park.notified();
                tokio::pin!(parked);
                parked.as_mut().enable();
                session.close(CloseReason::Resumed);
                if !session.is_parked() {
                    let _ = tokio::time::timeout(RELEASE_WAIT, parked).await;
                }
            }
            // Whoever holds the park first wins: a RESUME here meanwhile keeps it.
            if r.parked.lock().take().is_none() {
                return;
            }
        }
        self.forget_local(&session, token);
        self.inner.router.resume_release(token).await;
        tracing::info!(client_id = %session.client_id, session_id = %session.id, "resume: session handed to another node");
    }

    /// Whether this node, draining, hands its resumable sessions to the cluster instead
    /// of ending them (their clients resume on another node, or on this one restarted).
    pub fn hands_off(&self) -> bool {
        self.is_shutting_down()
            && self.inner.router.resumes_across_nodes()
            && !self.inner.cfg.resume_window.is_zero()
    }

    /// This node drains: `session` stays in its rooms for its resume window, for its
    /// client to resume on another node (or on this one, restarted); this node forgets it.
    pub async fn hand_off(&self, session: &Arc<Session>) {
        let Some(token) = session.resume_token() else {
            return;
        };
        if let Some(r) = session.resumable() {
            r.parked.lock().take();
        }
        let rooms = session.rooms();
        self.inner
            .router
            .resume_orphaned(&token, &rooms, self.inner.cfg.resume_window)
            .await;
        self.forget_local(session, &token);
        tracing::info!(client_id = %session.client_id, session_id = %session.id, rooms = rooms.len(), "draining: session handed to the cluster");
    }

    /// Forgets a session on this node without it leaving its rooms (another node holds
    /// it, or will).
    fn forget_local(&self, session: &Arc<Session>, token: &str) {
        let session = session.clone();
        self.inner
            .resumable
            .remove_if(token, |_, s| Arc::ptr_eq(s, &session));
        let removed = {
            let mut removed = false;
            if let Some(mut list) = self.inner.sessions.get_mut(&session.client_id) {
                let before = list.len();
                list.retain(|s| !Arc::ptr_eq(s, &session));
                removed = list.len() != before;
            }
            self.inner
                .sessions
                .remove_if(&session.client_id, |_, list| list.is_empty());
            removed
        };
        if removed {
            self.inner
                .session_count
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            metrics::gauge!("signal_sessions", "wire" => session.format_label()).decrement(1.0);
        }
        for room_id in session.rooms() {
            session.remove_room(room_id.as_str());
            if let Some(room) = self.room(room_id.as_str()) {
                let empty = {
                    let mut st = room.state.write();
                    st.members.retain(|m| !Arc::ptr_eq(&m.session, &session));
                    st.members.is_empty()
                };
                if empty {
                    room.state.write().closed = true;
                    self.inner
                        .rooms
                        .remove_if(&room_id, |_, r| Arc::ptr_eq(r, &room));
                }
            }
        }
        session.outbox().close();
    }

    /// At start, in a cluster: sessions a drained predecessor of this node (the same
    /// node id) handed to the cluster wait their window for their clients here, then
    /// leave (see [`orphans`](Self::orphans)).
    pub async fn settle_predecessor(&self) {
        let router = self.inner.router.clone();
        if !router.resumes_across_nodes() {
            return;
        }
        let me = router.node_id().to_owned();
        let members = router.members_on(&me).await.unwrap_or_default();
        let waiting = self.orphans(&me, &members).await;
        if !waiting.is_empty() {
            tracing::info!(
                memberships = waiting.len(),
                "cluster: sessions handed over by this node's last run wait for their clients"
            );
        }
    }

    /// A lost node's resumable sessions: instead of leaving their rooms at once, each
    /// waits the resume window for a RESUME on another node (the members of its rooms
    /// are told it is reconnecting), then leaves unless one took it. Returns the
    /// memberships that wait.
    pub(super) async fn orphans(
        &self,
        node: &str,
        members: &[(RoomId, ClientId)],
    ) -> Vec<(RoomId, ClientId)> {
        let router = self.inner.router.clone();
        if !router.resumes_across_nodes() {
            return Vec::new();
        }
        let records = match router.resumables_on(node).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(lost = %node, error = %e, "cluster: could not list a lost node's resumable sessions");
                return Vec::new();
            }
        };
        let window = self.inner.cfg.resume_window;
        let mut waiting = Vec::new();
        for (token, record) in records {
            let rooms: Vec<RoomId> = members
                .iter()
                .filter(|(_, c)| *c == record.client)
                .map(|(r, _)| r.clone())
                .collect();
            router.resume_orphaned(&token, &rooms, window).await;
            for room_id in &rooms {
                waiting.push((room_id.clone(), record.client.clone()));
                let env = Envelope::new(Event::PeerReconnecting {
                    room: room_id.clone(),
                    client: record.client.clone(),
                    window: window.as_secs(),
                });
                if let Some(r) = self.room(room_id.as_str()) {
                    for m in &r.state.read().members {
                        m.session.deliver(env.clone());
                    }
                }
                self.tell_other_nodes(room_id, Some(&record.client), &env)
                    .await;
            }
            let hub = self.clone();
            let node = node.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep(window).await;
                if hub.inner.router.resume_expire(&token, &node).await {
                    metrics::counter!("signal_resume_windows_expired_total").increment(1);
                    let record = ResumeRecord {
                        rooms: Vec::new(),
                        ..record
                    };
                    hub.end_taken(&token, &record, &node, &rooms, "node lost")
                        .await;
                }
            });
        }
        waiting
    }
}

impl Session {
    /// A session taken over from another node, as its record says.
    pub(super) fn taken_over(
        record: &ResumeRecord,
        format: super::Format,
        outbox: Arc<super::Outbox>,
        token: String,
    ) -> Arc<Self> {
        Self::new_resumable_with(
            record.session,
            record.client.clone(),
            format,
            outbox,
            record.capabilities.clone(),
            record.metadata.clone(),
            record.display_name.clone(),
            token,
            record.connected_at,
        )
    }
}
