//! A cluster in one process: routers for several nodes over one shared in-memory
//! registry, delivering to each other's inboxes directly. What the Redis router does, with
//! nothing to lose in between: for tests of the hub's cluster logic, and as the
//! reference the router contract holds others to.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{Arc, Weak},
};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{
    Inbox, JoinVerdict, LeaveVerdict, MemberEntry, NodeMessage, Recipient, Remote, RoomEntry,
    Router, RouterError,
};
use crate::{
    hub::Role,
    ids::{ClientId, RoomId},
};

#[derive(Default)]
struct RoomReg {
    entry: Option<RoomEntry>,
    max: usize,
    sender: Option<ClientId>,
    ever: usize,
    members: Vec<MemberEntry>,
}

#[derive(Default)]
struct State {
    inboxes: HashMap<String, Weak<dyn Inbox>>,
    /// client → node → sessions there; and the node of the newest session.
    presence: HashMap<ClientId, (HashMap<String, usize>, String)>,
    rooms: HashMap<RoomId, RoomReg>,
    down: HashSet<String>,
    /// Leases: name → (holder, until).
    leases: HashMap<String, (String, std::time::Instant)>,
    /// Bans: client → until (Unix ms).
    bans: HashMap<ClientId, i64>,
}

/// The shared backend of an in-process cluster. Clone to share.
#[derive(Clone, Default)]
pub struct MemoryCluster {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemoryCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCluster").finish_non_exhaustive()
    }
}

impl MemoryCluster {
    /// A new, empty cluster.
    pub fn new() -> Self {
        Self::default()
    }

    /// A router for node `node_id` of this cluster.
    pub fn node(&self, node_id: &str) -> MemoryRouter {
        MemoryRouter {
            node_id: node_id.to_owned(),
            cluster: self.clone(),
        }
    }

    /// Node `node` stops (as a kill would): nothing reaches it any more, and `reaper`
    /// is told to clean up after it.
    pub fn lose(&self, node: &str, reaper: &str) {
        let inbox = {
            let mut st = self.state.lock();
            st.down.insert(node.to_owned());
            st.inboxes.get(reaper).and_then(Weak::upgrade)
        };
        if let Some(i) = inbox {
            i.node_lost(node);
        }
    }
}

/// One node's router of a [`MemoryCluster`].
#[derive(Debug, Clone)]
pub struct MemoryRouter {
    node_id: String,
    cluster: MemoryCluster,
}

impl MemoryRouter {
    fn deliver(&self, node: &str, msg: NodeMessage) -> bool {
        let inbox = {
            let st = self.cluster.state.lock();
            if st.down.contains(node) {
                return false;
            }
            st.inboxes.get(node).and_then(Weak::upgrade)
        };
        match inbox {
            Some(i) => {
                i.receive(msg);
                true
            }
            None => false,
        }
    }

    fn locate_now(&self, client: &ClientId) -> Option<String> {
        let st = self.cluster.state.lock();
        let (nodes, last) = st.presence.get(client)?;
        let alive = |n: &String| !st.down.contains(n) && nodes.get(n).is_some_and(|c| *c > 0);
        if alive(last) {
            return Some(last.clone());
        }
        nodes.keys().find(|n| alive(n)).cloned()
    }
}

#[async_trait]
impl Router for MemoryRouter {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn attach(&self, inbox: Weak<dyn Inbox>) {
        self.cluster
            .state
            .lock()
            .inboxes
            .insert(self.node_id.clone(), inbox);
    }

    async fn session_opened(&self, client: &ClientId) -> Result<Vec<String>, RouterError> {
        let mut st = self.cluster.state.lock();
        let down = st.down.clone();
        let (nodes, last) = st
            .presence
            .entry(client.clone())
            .or_insert_with(|| (HashMap::new(), self.node_id.clone()));
        *nodes.entry(self.node_id.clone()).or_default() += 1;
        *last = self.node_id.clone();
        Ok(nodes
            .iter()
            .filter(|(n, c)| **n != self.node_id && **c > 0 && !down.contains(*n))
            .map(|(n, _)| n.clone())
            .collect())
    }

    async fn evict_elsewhere(&self, client: &ClientId, nodes: &[String]) {
        for n in nodes.iter().filter(|n| **n != self.node_id) {
            let inbox = self
                .cluster
                .state
                .lock()
                .inboxes
                .get(n)
                .and_then(Weak::upgrade);
            if let Some(i) = inbox {
                i.evict(client);
            }
        }
    }

    async fn session_closed(&self, client: &ClientId) {
        let mut st = self.cluster.state.lock();
        if let Some((nodes, last)) = st.presence.get_mut(client) {
            if let Some(c) = nodes.get_mut(&self.node_id) {
                *c = c.saturating_sub(1);
                if *c == 0 {
                    nodes.remove(&self.node_id);
                }
            }
            if nodes.is_empty() {
                st.presence.remove(client);
            } else if *last == self.node_id
                && !nodes.contains_key(&self.node_id)
                && let Some(n) = nodes.keys().next()
            {
                *last = n.clone();
            }
        }
    }

    async fn locate(&self, client: &ClientId) -> Option<String> {
        self.locate_now(client)
    }

    async fn send(&self, msg: NodeMessage) -> Remote {
        let nodes: BTreeSet<String> = match &msg.to {
            Recipient::Client { client } => self.locate_now(client).into_iter().collect(),
            Recipient::Room { room, .. } => self
                .cluster
                .state
                .lock()
                .rooms
                .get(room)
                .map(|r| r.members.iter().map(|m| m.node.clone()).collect())
                .unwrap_or_default(),
        };
        let mut any = false;
        for n in nodes.iter().filter(|n| **n != self.node_id) {
            any |= self.deliver(n, msg.clone());
        }
        if any {
            Remote::Delivered
        } else {
            Remote::NotFound
        }
    }

    fn post(&self, node: &str, msg: NodeMessage) -> Result<(), RouterError> {
        if node == self.node_id {
            return Ok(());
        }
        let (inbox, mine) = {
            let st = self.cluster.state.lock();
            let inbox = (!st.down.contains(node))
                .then(|| st.inboxes.get(node).and_then(Weak::upgrade))
                .flatten();
            (inbox, st.inboxes.get(&self.node_id).and_then(Weak::upgrade))
        };
        let client = match &msg.to {
            Recipient::Client { client } => Some(client.clone()),
            Recipient::Room { .. } => None,
        };
        let Some(inbox) = inbox else {
            if let Some(mine) = mine {
                mine.gone(node, &[]);
            }
            return Ok(());
        };
        if inbox.receive(msg) == 0
            && let (Some(client), Some(mine)) = (client, mine)
        {
            mine.gone(node, &[client]);
        }
        Ok(())
    }

    async fn claim_room(&self, room: &RoomId) -> Result<bool, RouterError> {
        let mut st = self.cluster.state.lock();
        if st.rooms.contains_key(room) {
            return Ok(false);
        }
        st.rooms.insert(room.clone(), RoomReg::default());
        Ok(true)
    }

    async fn release_room(&self, room: &RoomId) {
        self.cluster.state.lock().rooms.remove(room);
    }

    async fn create_room(
        &self,
        room: &RoomId,
        entry: &RoomEntry,
        creator: &MemberEntry,
    ) -> Result<bool, RouterError> {
        let mut st = self.cluster.state.lock();
        if st.rooms.contains_key(room) {
            return Ok(false);
        }
        st.rooms.insert(
            room.clone(),
            RoomReg {
                entry: Some(entry.clone()),
                max: entry.max_participants,
                sender: (creator.role == Role::Sender).then(|| creator.client.clone()),
                ever: 1,
                members: vec![creator.clone()],
            },
        );
        Ok(true)
    }

    async fn room_entry(
        &self,
        room: &RoomId,
    ) -> Result<Option<(RoomEntry, Vec<MemberEntry>)>, RouterError> {
        let st = self.cluster.state.lock();
        Ok(st
            .rooms
            .get(room)
            .and_then(|r| Some((r.entry.clone()?, r.members.clone()))))
    }

    async fn room_ids(&self) -> Result<Vec<RoomId>, RouterError> {
        let mut ids: Vec<RoomId> = self.cluster.state.lock().rooms.keys().cloned().collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(ids)
    }

    async fn join_members(
        &self,
        room: &RoomId,
        joins: &[MemberEntry],
    ) -> Result<(Vec<JoinVerdict>, Vec<MemberEntry>), RouterError> {
        let mut st = self.cluster.state.lock();
        let Some(r) = st.rooms.get_mut(room) else {
            return Ok((vec![JoinVerdict::NoRoom; joins.len()], Vec::new()));
        };
        let before = r.members.clone();
        let verdicts = joins
            .iter()
            .map(|j| {
                if r.members.iter().any(|m| m.client == j.client) {
                    JoinVerdict::AlreadyIn
                } else if r.members.len() >= r.max {
                    JoinVerdict::Full
                } else if j.role == Role::Sender && r.sender.is_some() {
                    JoinVerdict::SenderTaken
                } else {
                    if j.role == Role::Sender {
                        r.sender = Some(j.client.clone());
                    }
                    r.members.push(j.clone());
                    r.ever += 1;
                    JoinVerdict::Joined
                }
            })
            .collect();
        Ok((verdicts, before))
    }

    async fn leave_member(
        &self,
        room: &RoomId,
        client: &ClientId,
    ) -> Result<LeaveVerdict, RouterError> {
        let mut st = self.cluster.state.lock();
        let Some(r) = st.rooms.get_mut(room) else {
            return Ok(LeaveVerdict::NotMember);
        };
        let Some(pos) = r.members.iter().position(|m| &m.client == client) else {
            return Ok(LeaveVerdict::NotMember);
        };
        let member = r.members.remove(pos);
        if r.sender.as_ref() == Some(client) || r.members.is_empty() {
            let Some(r) = st.rooms.remove(room) else {
                return Ok(LeaveVerdict::NotMember);
            };
            let Some(entry) = r.entry else {
                return Ok(LeaveVerdict::NotMember);
            };
            return Ok(LeaveVerdict::Terminated {
                entry,
                member,
                remaining: r.members,
                ever_joined: r.ever,
            });
        }
        Ok(LeaveVerdict::Left(member))
    }

    async fn forget_member(&self, room: &RoomId, client: &ClientId) {
        let mut st = self.cluster.state.lock();
        if let Some(r) = st.rooms.get_mut(room) {
            r.members.retain(|m| &m.client != client);
            if r.sender.as_ref() == Some(client) {
                r.sender = None;
            }
        }
    }

    async fn ban(&self, client: &ClientId, until_ms: i64) -> Result<(), RouterError> {
        self.cluster
            .state
            .lock()
            .bans
            .insert(client.clone(), until_ms);
        Ok(())
    }

    async fn banned_until(&self, client: &ClientId) -> Result<Option<i64>, RouterError> {
        let now = chrono::Utc::now().timestamp_millis();
        Ok(self
            .cluster
            .state
            .lock()
            .bans
            .get(client)
            .copied()
            .filter(|until| *until > now))
    }

    async fn kick_elsewhere(&self, client: &ClientId, room: Option<&RoomId>, reason: &str) {
        let inboxes: Vec<Arc<dyn Inbox>> = {
            let st = self.cluster.state.lock();
            st.inboxes
                .iter()
                .filter(|(n, _)| **n != self.node_id && !st.down.contains(*n))
                .filter_map(|(_, i)| i.upgrade())
                .collect()
        };
        for i in inboxes {
            i.kick(client, room, reason);
        }
    }

    async fn lease(&self, name: &str, ttl: std::time::Duration) -> Result<bool, RouterError> {
        let mut st = self.cluster.state.lock();
        let now = std::time::Instant::now();
        let held = st
            .leases
            .get(name)
            .is_some_and(|(holder, until)| *holder != self.node_id && *until > now);
        if !held {
            st.leases
                .insert(name.to_owned(), (self.node_id.clone(), now + ttl));
        }
        Ok(!held)
    }

    async fn update_member(&self, room: &RoomId, entry: &MemberEntry) -> Result<(), RouterError> {
        let mut st = self.cluster.state.lock();
        if let Some(m) = st
            .rooms
            .get_mut(room)
            .and_then(|r| r.members.iter_mut().find(|m| m.client == entry.client))
        {
            *m = entry.clone();
        }
        Ok(())
    }

    async fn in_any_room(&self, client: &ClientId, rooms: &[RoomId]) -> Result<bool, RouterError> {
        let st = self.cluster.state.lock();
        Ok(rooms.iter().any(|r| {
            st.rooms
                .get(r)
                .is_some_and(|r| r.members.iter().any(|m| &m.client == client))
        }))
    }

    async fn send_to_nodes(&self, nodes: &[String], msg: NodeMessage) {
        let targets: BTreeSet<&String> = nodes.iter().filter(|n| **n != self.node_id).collect();
        for n in targets {
            self.deliver(n, msg.clone());
        }
    }

    async fn members_on(&self, node: &str) -> Result<Vec<(RoomId, ClientId)>, RouterError> {
        let st = self.cluster.state.lock();
        let mut out = Vec::new();
        for (id, r) in &st.rooms {
            for m in r.members.iter().filter(|m| m.node == node) {
                out.push((id.clone(), m.client.clone()));
            }
        }
        Ok(out)
    }

    async fn forget_node(&self, node: &str) {
        let mut st = self.cluster.state.lock();
        st.inboxes.remove(node);
        for (nodes, _) in st.presence.values_mut() {
            nodes.remove(node);
        }
        st.presence.retain(|_, (nodes, _)| !nodes.is_empty());
    }

    async fn cluster_load(&self) -> Result<Vec<(String, super::NodeLoad)>, RouterError> {
        let inboxes: Vec<(String, Weak<dyn Inbox>)> = {
            let st = self.cluster.state.lock();
            st.inboxes
                .iter()
                .filter(|(n, _)| !st.down.contains(*n))
                .map(|(n, i)| (n.clone(), i.clone()))
                .collect()
        };
        let mut out: Vec<(String, super::NodeLoad)> = inboxes
            .into_iter()
            .filter_map(|(n, i)| Some((n, i.upgrade()?.load())))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn nodes(&self) -> Result<Vec<String>, RouterError> {
        let st = self.cluster.state.lock();
        let mut v: Vec<String> = st
            .inboxes
            .keys()
            .filter(|n| !st.down.contains(*n))
            .cloned()
            .collect();
        if !v.contains(&self.node_id) {
            v.push(self.node_id.clone());
        }
        v.sort();
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_memory_cluster_keeps_the_contract() {
        let cluster = super::MemoryCluster::new();
        super::super::contract::run(|node| std::sync::Arc::new(cluster.node(node)), true).await;
    }
}
