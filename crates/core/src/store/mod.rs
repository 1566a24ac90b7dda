//! The store port: what the hub persists, as records named after the seed's seven
//! collections, and the trait a database implements. No SQL here: an implementation may be
//! SQLite, PostgreSQL or Firestore. Each method is one atomic unit of work; a method that
//! returns `Ok` has committed.
//!
//! Active-state tables (`webrtc_rooms`, `webrtc_clients`, `client_in_room`) hold only live
//! state and lose their rows when that state ends; history tables (`room_created`,
//! `terminated_rooms`, `client_in_terminated_room`) are append-only.
//!
//! Every lifecycle write takes the [`Event`]s it describes and appends them to the event
//! outbox in the same transaction, numbering each room's events (`seq`, from 1, gapless,
//! in commit order, continued when a room id is used again). A publisher reads the outbox
//! ([`Store::pending_events`]) and marks what it delivered ([`Store::mark_delivered`]).

#[cfg(any(test, feature = "contract"))]
pub mod contract;
mod memory;
mod records;

pub use memory::MemoryStore;
pub use records::*;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::events::Event;

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique key already exists (e.g. the client is already registered).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database cannot be reached or timed out; retrying later may work.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A member was written for a room that has no active record (it ended, or, in a
    /// cluster, its creator's node has not committed it yet).
    #[error("no active room: {0}")]
    NoRoom(String),
    /// Anything else: a bug or corrupt data.
    #[error("database error: {0}")]
    Internal(String),
}

/// The persistence port of the hub.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip proving the database answers.
    async fn health(&self) -> Result<(), StoreError>;

    /// Inserts a `registered_clients` row. `Conflict` if the client_id exists.
    async fn register_client(
        &self,
        client: &RegisteredClient,
        events: &[Event],
    ) -> Result<(), StoreError>;
    /// Reads a `registered_clients` row by client_id.
    async fn get_client(&self, client_id: &str) -> Result<Option<RegisteredClient>, StoreError>;
    /// Deletes a `registered_clients` row; `false` if there was none (and `events` are not
    /// recorded).
    async fn delete_client(&self, client_id: &str, events: &[Event]) -> Result<bool, StoreError>;
    /// Sets `last_seen` of a registered client (no error if absent).
    async fn touch_client(&self, client_id: &str, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Number of registered clients.
    async fn count_clients(&self) -> Result<u64, StoreError>;

    /// Creates a room: `webrtc_rooms` + `room_created` + the creator's `client_in_room`
    /// and `webrtc_clients` rows, in one transaction.
    async fn create_room(
        &self,
        room: &RoomRecord,
        created: &RoomCreatedRecord,
        creator: &MemberRecords,
        events: &[Event],
    ) -> Result<(), StoreError>;
    /// Adds a member: `client_in_room` + `webrtc_clients`, and sets the room's
    /// `sender_client_id`/`receiver_client_id` if `member`'s role slot is empty.
    async fn add_member(&self, member: &MemberRecords, events: &[Event]) -> Result<(), StoreError>;
    /// Removes one member of a room that goes on: deletes its `client_in_room` and
    /// `webrtc_clients` rows and appends its `client_in_terminated_room` history.
    async fn remove_member(
        &self,
        history: &ClientInTerminatedRoomRecord,
        events: &[Event],
    ) -> Result<(), StoreError>;
    /// Terminates a room: deletes its `webrtc_rooms`, `client_in_room` and `webrtc_clients`
    /// rows, appends `terminated_rooms` and one `client_in_terminated_room` per member still
    /// in it, in one transaction.
    async fn terminate_room(
        &self,
        record: &TerminatedRoomRecord,
        members: &[ClientInTerminatedRoomRecord],
        events: &[Event],
    ) -> Result<(), StoreError>;

    // ----- the event outbox -----

    /// Appends events of a step that writes nothing else (a session opened or closed).
    async fn append_events(&self, events: &[Event]) -> Result<(), StoreError>;
    /// Undelivered events, oldest first (the order they were recorded), at most `limit`,
    /// each with its `seq`.
    async fn pending_events(&self, limit: u32) -> Result<Vec<Event>, StoreError>;
    /// Marks events delivered: [`pending_events`](Self::pending_events) no longer returns
    /// them. Unknown ids are ignored.
    async fn mark_delivered(&self, ids: &[Uuid]) -> Result<(), StoreError>;
    /// Deletes the delivered events that happened (`at`) before `before`; how many. An
    /// undelivered event is kept however old.
    async fn prune_events(&self, before: DateTime<Utc>) -> Result<u64, StoreError>;
    /// A room's events (delivered or not) with `seq` above `since`, in order, at most
    /// `limit`.
    async fn room_events(
        &self,
        room_id: &str,
        since: u64,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;

    /// Active rooms (`webrtc_rooms`), oldest first.
    async fn active_rooms(&self) -> Result<Vec<RoomRecord>, StoreError>;
    /// One active room.
    async fn get_room(&self, room_id: &str) -> Result<Option<RoomRecord>, StoreError>;
    /// Current members of an active room (`client_in_room`), by join time.
    async fn room_members(&self, room_id: &str) -> Result<Vec<ClientInRoomRecord>, StoreError>;
    /// `webrtc_clients` rows of a room.
    async fn room_webrtc_clients(
        &self,
        room_id: &str,
    ) -> Result<Vec<WebrtcClientRecord>, StoreError>;
    /// `room_created` rows for a room id (one per time the id was used).
    async fn room_created(&self, room_id: &str) -> Result<Vec<RoomCreatedRecord>, StoreError>;
    /// `terminated_rooms` rows for a room id.
    async fn terminated_rooms(
        &self,
        room_id: &str,
    ) -> Result<Vec<TerminatedRoomRecord>, StoreError>;
    /// `client_in_terminated_room` rows for a room id, by `left_at`.
    async fn member_history(
        &self,
        room_id: &str,
    ) -> Result<Vec<ClientInTerminatedRoomRecord>, StoreError>;

    // ----- copying a store (`copy-store`) -----

    /// Registered clients ordered by client id, at most `limit`, those after `after`.
    async fn export_clients(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RegisteredClient>, StoreError>;
    /// The distinct room ids that have `room_created` history, in order, at most `limit`,
    /// those after `after`. Every room that ever existed has one.
    async fn history_room_ids(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>, StoreError>;
    /// Inserts a `room_created` row copied from another store (its room need not be
    /// active). `Conflict` if a row with its id exists.
    async fn import_room_created(&self, created: &RoomCreatedRecord) -> Result<(), StoreError>;

    /// Flushes and closes; later calls fail with `Unavailable`.
    async fn close(&self);
}
