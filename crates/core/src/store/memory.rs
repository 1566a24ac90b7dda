//! An in-memory [`Store`] for unit tests of the core and for running without a database.
//!
//! It follows the SQLite store's semantics: the same unique keys (`Conflict`), the same
//! "member rows need an active room" rule (`Internal`), the same orderings, and every method
//! is atomic (all checks happen before any change, under one lock). [`MemoryStore::close`]
//! makes later calls fail with `Unavailable`, and [`MemoryStore::set_unavailable`] simulates a
//! database outage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use uuid::Uuid;

use super::{
    ClientInRoomRecord, ClientInTerminatedRoomRecord, MemberRecords, RegisteredClient,
    RoomCreatedRecord, RoomRecord, Store, StoreError, TerminatedRoomRecord, WebrtcClientRecord,
};
use crate::events::Event;

/// The seven tables; `Vec`s keep insertion order, which breaks ties in orderings like the
/// SQLite store's `rowid` does.
#[derive(Debug, Default)]
struct Tables {
    registered_clients: HashMap<String, RegisteredClient>,
    webrtc_rooms: Vec<RoomRecord>,
    webrtc_clients: Vec<WebrtcClientRecord>,
    room_created: Vec<RoomCreatedRecord>,
    client_in_room: Vec<ClientInRoomRecord>,
    terminated_rooms: Vec<TerminatedRoomRecord>,
    client_in_terminated_room: Vec<ClientInTerminatedRoomRecord>,
    /// The event outbox, in the order recorded, each with whether it was delivered.
    events: Vec<(Event, bool)>,
    /// The last `seq` given per room id.
    seqs: HashMap<String, u64>,
}

impl Tables {
    /// Appends `events` to the outbox, numbering each room's.
    fn record(&mut self, events: &[Event]) {
        for e in events {
            let mut e = e.clone();
            e.seq = e.room_id.as_ref().map(|r| {
                let n = self.seqs.entry(r.to_string()).or_default();
                *n += 1;
                *n
            });
            self.events.push((e, false));
        }
    }

    fn room_is_active(&self, room_id: &str) -> bool {
        self.webrtc_rooms.iter().any(|r| r.room_id == room_id)
    }

    /// Checks that `member` can be inserted, `pending_room` being a room inserted in the same
    /// unit of work. Mirrors the SQLite constraints (primary keys, `(client_id, room_id)`
    /// unique keys, foreign keys to `webrtc_rooms.room_id`).
    fn check_member(
        &self,
        member: &MemberRecords,
        pending_room: Option<&str>,
    ) -> Result<(), StoreError> {
        let cir = &member.client_in_room;
        let wc = &member.webrtc_client;
        for room_id in [&cir.room_id, &wc.room_id] {
            if pending_room != Some(room_id.as_str()) && !self.room_is_active(room_id) {
                return Err(StoreError::NoRoom(format!(
                    "room '{room_id}' is not active"
                )));
            }
        }
        if self
            .client_in_room
            .iter()
            .any(|r| r.client_id == cir.client_id && r.room_id == cir.room_id)
        {
            return Err(StoreError::Conflict(format!(
                "client '{}' is already in room '{}'",
                cir.client_id, cir.room_id
            )));
        }
        if self.client_in_room.iter().any(|r| r.id == cir.id) {
            return Err(StoreError::Conflict(format!(
                "client_in_room row {} already exists",
                cir.id
            )));
        }
        if self
            .webrtc_clients
            .iter()
            .any(|r| r.client_id == wc.client_id && r.room_id == wc.room_id)
        {
            return Err(StoreError::Conflict(format!(
                "client '{}' already has a WebRTC session in room '{}'",
                wc.client_id, wc.room_id
            )));
        }
        if self.webrtc_clients.iter().any(|r| r.id == wc.id) {
            return Err(StoreError::Conflict(format!(
                "webrtc_clients row {} already exists",
                wc.id
            )));
        }
        Ok(())
    }

    fn check_history(&self, history: &ClientInTerminatedRoomRecord) -> Result<(), StoreError> {
        if self
            .client_in_terminated_room
            .iter()
            .any(|r| r.id == history.id)
        {
            return Err(StoreError::Conflict(format!(
                "client_in_terminated_room row {} already exists",
                history.id
            )));
        }
        Ok(())
    }

    fn insert_member(&mut self, member: &MemberRecords) {
        self.client_in_room.push(member.client_in_room.clone());
        self.webrtc_clients.push(member.webrtc_client.clone());
    }

    fn delete_member(&mut self, client_id: &str, room_id: &str) {
        self.client_in_room
            .retain(|r| !(r.client_id == client_id && r.room_id == room_id));
        self.webrtc_clients
            .retain(|r| !(r.client_id == client_id && r.room_id == room_id));
    }
}

/// An in-memory [`Store`]: `parking_lot::Mutex`-guarded tables with the SQLite store's
/// semantics.
#[derive(Debug, Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    closed: AtomicBool,
    unavailable: AtomicBool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// While `true`, every call fails with [`StoreError::Unavailable`], as if the database
    /// could not be reached. Data is kept and is visible again once set back to `false`.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.unavailable.store(unavailable, Ordering::SeqCst);
    }

    /// Locks the tables, or fails when closed or set unavailable.
    fn tables(&self) -> Result<parking_lot::MutexGuard<'_, Tables>, StoreError> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(
                "the database is unreachable (simulated outage)".into(),
            ));
        }
        Ok(self.tables.lock())
    }
}

/// Sorts by `key`, keeping insertion order among equal keys.
fn sorted_by<T, K: Ord>(rows: impl Iterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut rows: Vec<T> = rows.collect();
    rows.sort_by_key(|r| key(r));
    rows
}

#[async_trait]
impl Store for MemoryStore {
    async fn health(&self) -> Result<(), StoreError> {
        self.tables().map(|_| ())
    }

    async fn register_client(
        &self,
        client: &RegisteredClient,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        if t.registered_clients.contains_key(&client.client_id) {
            return Err(StoreError::Conflict(format!(
                "client '{}' is already registered",
                client.client_id
            )));
        }
        if t.registered_clients.values().any(|c| c.id == client.id) {
            return Err(StoreError::Conflict(format!(
                "registered_clients row {} already exists",
                client.id
            )));
        }
        t.registered_clients
            .insert(client.client_id.clone(), client.clone());
        t.record(events);
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        Ok(self.tables()?.registered_clients.get(client_id).cloned())
    }

    async fn delete_client(&self, client_id: &str, events: &[Event]) -> Result<bool, StoreError> {
        let mut t = self.tables()?;
        let deleted = t.registered_clients.remove(client_id).is_some();
        if deleted {
            t.record(events);
        }
        Ok(deleted)
    }

    async fn touch_client(&self, client_id: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        if let Some(c) = self.tables()?.registered_clients.get_mut(client_id) {
            c.last_seen = Some(at);
        }
        Ok(())
    }

    async fn count_clients(&self) -> Result<u64, StoreError> {
        Ok(self.tables()?.registered_clients.len() as u64)
    }

    async fn create_room(
        &self,
        room: &RoomRecord,
        created: &RoomCreatedRecord,
        creator: &MemberRecords,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        if t.room_is_active(&room.room_id) {
            return Err(StoreError::Conflict(format!(
                "room '{}' already exists",
                room.room_id
            )));
        }
        if t.webrtc_rooms.iter().any(|r| r.id == room.id) {
            return Err(StoreError::Conflict(format!(
                "webrtc_rooms row {} already exists",
                room.id
            )));
        }
        if t.room_created.iter().any(|r| r.id == created.id) {
            return Err(StoreError::Conflict(format!(
                "room_created row {} already exists",
                created.id
            )));
        }
        t.check_member(creator, Some(&room.room_id))?;
        t.webrtc_rooms.push(room.clone());
        t.room_created.push(created.clone());
        t.insert_member(creator);
        t.record(events);
        Ok(())
    }

    async fn add_member(&self, member: &MemberRecords, events: &[Event]) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        t.check_member(member, None)?;
        t.insert_member(member);
        let wc = &member.webrtc_client;
        let role = wc.role.to_ascii_lowercase();
        if let Some(room) = t.webrtc_rooms.iter_mut().find(|r| r.room_id == wc.room_id) {
            let slot = match role.as_str() {
                "sender" => Some(&mut room.sender_client_id),
                "receiver" => Some(&mut room.receiver_client_id),
                _ => None,
            };
            if let Some(slot) = slot
                && slot.as_deref().is_none_or(str::is_empty)
            {
                *slot = Some(wc.client_id.clone());
            }
        }
        t.record(events);
        Ok(())
    }

    async fn remove_member(
        &self,
        history: &ClientInTerminatedRoomRecord,
        events: &[Event],
    ) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        t.check_history(history)?;
        t.delete_member(&history.client_id, &history.room_id);
        t.client_in_terminated_room.push(history.clone());
        t.record(events);
        Ok(())
    }

    async fn terminate_room(
        &self,
        record: &TerminatedRoomRecord,
        members: &[ClientInTerminatedRoomRecord],
        events: &[Event],
    ) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        if t.terminated_rooms.iter().any(|r| r.id == record.id) {
            return Err(StoreError::Conflict(format!(
                "terminated_rooms row {} already exists",
                record.id
            )));
        }
        for (i, m) in members.iter().enumerate() {
            t.check_history(m)?;
            if members[..i].iter().any(|o| o.id == m.id) {
                return Err(StoreError::Conflict(format!(
                    "client_in_terminated_room row {} already exists",
                    m.id
                )));
            }
        }
        let room_id = record.room_id.as_str();
        t.client_in_room.retain(|r| r.room_id != room_id);
        t.webrtc_clients.retain(|r| r.room_id != room_id);
        t.webrtc_rooms.retain(|r| r.room_id != room_id);
        t.terminated_rooms.push(record.clone());
        t.client_in_terminated_room.extend(members.iter().cloned());
        t.record(events);
        Ok(())
    }

    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError> {
        self.tables()?.record(events);
        Ok(())
    }

    async fn pending_events(&self, limit: u32) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .tables()?
            .events
            .iter()
            .filter(|(_, done)| !done)
            .take(limit as usize)
            .map(|(e, _)| e.clone())
            .collect())
    }

    async fn mark_delivered(&self, ids: &[Uuid]) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        for (e, done) in &mut t.events {
            if ids.contains(&e.id) {
                *done = true;
            }
        }
        Ok(())
    }

    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut t = self.tables()?;
        let n = t.events.len();
        t.events.retain(|(e, done)| !*done || e.at >= before);
        Ok((n - t.events.len()) as u64)
    }

    async fn room_events(
        &self,
        room_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .tables()?
            .events
            .iter()
            .map(|(e, _)| e)
            .filter(|e| e.room_id.as_ref().is_some_and(|r| r.as_str() == room_id))
            .filter(|e| e.seq.is_some_and(|s| s > since))
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn active_rooms(&self) -> Result<Vec<RoomRecord>, StoreError> {
        let t = self.tables()?;
        Ok(sorted_by(t.webrtc_rooms.iter().cloned(), |r| r.created_at))
    }

    async fn get_room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError> {
        let t = self.tables()?;
        Ok(t.webrtc_rooms
            .iter()
            .find(|r| r.room_id == room_id)
            .cloned())
    }

    async fn room_members(&self, room_id: &str) -> Result<Vec<ClientInRoomRecord>, StoreError> {
        let t = self.tables()?;
        Ok(sorted_by(
            t.client_in_room
                .iter()
                .filter(|r| r.room_id == room_id)
                .cloned(),
            |r| r.joined_at,
        ))
    }

    async fn room_webrtc_clients(
        &self,
        room_id: &str,
    ) -> Result<Vec<WebrtcClientRecord>, StoreError> {
        let t = self.tables()?;
        Ok(sorted_by(
            t.webrtc_clients
                .iter()
                .filter(|r| r.room_id == room_id)
                .cloned(),
            |r| r.joined_at,
        ))
    }

    async fn export_clients(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RegisteredClient>, StoreError> {
        let t = self.tables()?;
        let mut clients: Vec<RegisteredClient> = t
            .registered_clients
            .values()
            .filter(|c| after.is_none_or(|a| c.client_id.as_str() > a))
            .cloned()
            .collect();
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        clients.truncate(limit as usize);
        Ok(clients)
    }

    async fn history_room_ids(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let t = self.tables()?;
        let ids: std::collections::BTreeSet<&str> = t
            .room_created
            .iter()
            .map(|r| r.room_id.as_str())
            .filter(|id| after.is_none_or(|a| *id > a))
            .collect();
        Ok(ids
            .into_iter()
            .take(limit as usize)
            .map(str::to_owned)
            .collect())
    }

    async fn import_room_created(&self, created: &RoomCreatedRecord) -> Result<(), StoreError> {
        let mut t = self.tables()?;
        if t.room_created.iter().any(|r| r.id == created.id) {
            return Err(StoreError::Conflict(format!(
                "room_created row {} already exists",
                created.id
            )));
        }
        t.room_created.push(created.clone());
        Ok(())
    }

    async fn room_created(&self, room_id: &str) -> Result<Vec<RoomCreatedRecord>, StoreError> {
        let t = self.tables()?;
        Ok(sorted_by(
            t.room_created
                .iter()
                .filter(|r| r.room_id == room_id)
                .cloned(),
            |r| r.created_at,
        ))
    }

    async fn terminated_rooms(
        &self,
        room_id: &str,
    ) -> Result<Vec<TerminatedRoomRecord>, StoreError> {
        let t = self.tables()?;
        Ok(sorted_by(
            t.terminated_rooms
                .iter()
                .filter(|r| r.room_id == room_id)
                .cloned(),
            |r| r.terminated_at,
        ))
    }

    async fn member_history(
        &self,
        room_id: &str,
    ) -> Result<Vec<ClientInTerminatedRoomRecord>, StoreError> {
        let t = self.tables()?;
        Ok(sorted_by(
            t.client_in_terminated_room
                .iter()
                .filter(|r| r.room_id == room_id)
                .cloned(),
            |r| r.left_at,
        ))
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
crate::store_contract!(
    contract,
    (
        std::sync::Arc::new(MemoryStore::new()) as std::sync::Arc<dyn crate::store::Store>,
        (),
    )
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::contract::{self, at, client, created, member};
    use serde_json::json;
    use uuid::Uuid;

    fn room(room_id: &str, secs: i64) -> RoomRecord {
        contract::room(room_id, secs, None)
    }

    fn history(client_id: &str, room_id: &str, secs: i64) -> ClientInTerminatedRoomRecord {
        ClientInTerminatedRoomRecord {
            id: Uuid::new_v4(),
            client_id: client_id.into(),
            room_id: room_id.into(),
            joined_at: at(0),
            left_at: at(secs),
            termination_reason: "left".into(),
            terminated_by: client_id.into(),
            final_status: "VoluntaryDisconnect".into(),
            capabilities: vec![],
            metadata: json!({}),
            record_created_at: at(secs),
        }
    }

    fn terminated(room_id: &str, secs: i64) -> TerminatedRoomRecord {
        TerminatedRoomRecord {
            id: Uuid::new_v4(),
            room_id: room_id.into(),
            terminated_at: at(secs),
            termination_recorded_at: at(secs),
            room_data: json!({"participant_count": 2}),
            termination_reason: Some("closed".into()),
            terminated_by: Some("a".into()),
            metadata: json!({}),
            record_created_at: at(secs),
        }
    }

    #[tokio::test]
    async fn register_get_touch_delete() {
        let s = MemoryStore::new();
        let c = client("a");
        s.register_client(&c, &[]).await.unwrap();
        assert_eq!(s.get_client("a").await.unwrap(), Some(c.clone()));
        assert!(matches!(
            s.register_client(&client("a"), &[]).await,
            Err(StoreError::Conflict(m)) if m.contains("'a'")
        ));
        assert_eq!(s.count_clients().await.unwrap(), 1);
        s.touch_client("a", at(10)).await.unwrap();
        s.touch_client("nobody", at(10)).await.unwrap();
        assert_eq!(
            s.get_client("a").await.unwrap().unwrap().last_seen,
            Some(at(10))
        );
        assert!(s.delete_client("a", &[]).await.unwrap());
        assert!(!s.delete_client("a", &[]).await.unwrap());
        assert_eq!(s.count_clients().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn room_lifecycle() {
        let s = MemoryStore::new();
        let r = room("r1", 0);
        s.create_room(&r, &created(&r, "a"), &member("a", "r1", "sender", 0), &[])
            .await
            .unwrap();
        assert!(matches!(
            s.create_room(&r, &created(&r, "a"), &member("a", "r1", "sender", 0), &[])
                .await,
            Err(StoreError::Conflict(_))
        ));
        s.add_member(&member("b", "r1", "receiver", 1), &[])
            .await
            .unwrap();
        s.add_member(&member("c", "r1", "receiver", 2), &[])
            .await
            .unwrap();
        assert!(matches!(
            s.add_member(&member("c", "r1", "receiver", 3), &[]).await,
            Err(StoreError::Conflict(_))
        ));
        assert!(matches!(
            s.add_member(&member("d", "nope", "receiver", 3), &[]).await,
            Err(StoreError::NoRoom(_))
        ));
        let got = s.get_room("r1").await.unwrap().unwrap();
        assert_eq!(got.receiver_client_id.as_deref(), Some("b"));
        assert_eq!(got.sender_client_id, None);

        s.remove_member(&history("c", "r1", 4), &[]).await.unwrap();
        let members: Vec<_> = s
            .room_members("r1")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.client_id)
            .collect();
        assert_eq!(members, ["a", "b"]);
        assert_eq!(s.room_webrtc_clients("r1").await.unwrap().len(), 2);

        s.terminate_room(
            &terminated("r1", 5),
            &[history("a", "r1", 5), history("b", "r1", 5)],
            &[],
        )
        .await
        .unwrap();
        assert!(s.get_room("r1").await.unwrap().is_none());
        assert!(s.active_rooms().await.unwrap().is_empty());
        assert!(s.room_members("r1").await.unwrap().is_empty());
        assert!(s.room_webrtc_clients("r1").await.unwrap().is_empty());
        assert_eq!(s.terminated_rooms("r1").await.unwrap().len(), 1);
        let hist: Vec<_> = s
            .member_history("r1")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.client_id)
            .collect();
        assert_eq!(hist, ["c", "a", "b"]);

        let r2 = room("r1", 10);
        s.create_room(
            &r2,
            &created(&r2, "z"),
            &member("z", "r1", "sender", 10),
            &[],
        )
        .await
        .unwrap();
        assert_eq!(s.room_created("r1").await.unwrap().len(), 2);
        assert_eq!(s.active_rooms().await.unwrap(), vec![r2]);
    }

    #[tokio::test]
    async fn failed_write_changes_nothing() {
        let s = MemoryStore::new();
        let r = room("r1", 0);
        // The creator refers to another room: nothing may be written.
        assert!(
            s.create_room(
                &r,
                &created(&r, "a"),
                &member("a", "other", "sender", 0),
                &[]
            )
            .await
            .is_err()
        );
        assert!(s.get_room("r1").await.unwrap().is_none());
        assert!(s.room_created("r1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn unavailable_and_close() {
        let s = MemoryStore::new();
        s.register_client(&client("a"), &[]).await.unwrap();
        s.set_unavailable(true);
        assert!(matches!(s.health().await, Err(StoreError::Unavailable(_))));
        assert!(matches!(
            s.get_client("a").await,
            Err(StoreError::Unavailable(_))
        ));
        s.set_unavailable(false);
        s.health().await.unwrap();
        assert!(s.get_client("a").await.unwrap().is_some());
        s.close().await;
        assert!(matches!(
            s.count_clients().await,
            Err(StoreError::Unavailable(_))
        ));
    }
}
