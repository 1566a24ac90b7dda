//! The router port: how this node reaches sessions and rooms held by other nodes.
//!
//! The hub holds this node's sessions and rooms and delivers to them itself; whatever it
//! cannot find here goes through the router. A router knows the nodes (membership), which
//! node holds which client (presence), which room ids are taken (the room registry), and
//! carries [`NodeMessage`]s to the node that must deliver them, where they enter that
//! node's hub through its [`Inbox`].
//!
//! One node uses [`LocalRouter`]: presence and the registry in memory, and no other node
//! to reach. A cluster plugs in a router over Redis behind the same trait. Every
//! implementation passes [`contract`].

use std::sync::Weak;

use async_trait::async_trait;
use dashmap::DashSet;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    hub::Event,
    ids::{ClientId, RoomId},
};

#[cfg(any(test, feature = "contract"))]
pub mod contract;

/// Outcome of a delivery to another node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Handed to the node holding the recipient.
    Delivered,
    /// No node holds the recipient.
    NotFound,
}

/// A router that cannot serve now (its backend is unreachable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("router unavailable: {0}")]
pub struct RouterError(pub String);

/// Who a [`NodeMessage`] is for, on the node that receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Recipient {
    /// The newest session of a client.
    Client {
        /// The client.
        client: ClientId,
    },
    /// Every member of a room on the receiving node, but `except`.
    Room {
        /// The room.
        room: RoomId,
        /// A member not to tell (the sender).
        except: Option<ClientId>,
    },
}

/// An event on its way to another node. Serialisable: it crosses processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMessage {
    /// The event's id, kept end to end (a relayed signal's frame id).
    pub id: Uuid,
    /// The node that sent it.
    pub from_node: String,
    /// Who it is for.
    pub to: Recipient,
    /// What happened.
    pub event: Event,
}

/// Where messages from other nodes enter this node: the hub.
pub trait Inbox: Send + Sync + 'static {
    /// Delivers `msg` to its recipients on this node; returns how many sessions got it.
    fn receive(&self, msg: NodeMessage) -> usize;
}

/// Routing between nodes.
#[async_trait]
pub trait Router: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;

    /// Whether other nodes may exist. When not, the hub builds no [`NodeMessage`] at
    /// all: a single node pays nothing for the router.
    fn has_other_nodes(&self) -> bool {
        true
    }

    /// Sets where messages for this node are delivered (the hub, once, at start). Held
    /// weakly: the router never keeps the hub alive.
    fn attach(&self, inbox: Weak<dyn Inbox>);

    /// A session of `client` opened on this node.
    async fn session_opened(&self, client: &ClientId) -> Result<(), RouterError>;

    /// A session of `client` on this node ended.
    async fn session_closed(&self, client: &ClientId);

    /// The node holding a session of `client`, as the shared registry knows it (this
    /// node included). A single-node router keeps no registry and knows of none.
    async fn locate(&self, client: &ClientId) -> Option<String>;

    /// Carries `msg` to the other node(s) holding its recipient: a message for a client
    /// to the node holding it, a message for a room to every other node holding members
    /// of it. [`Remote::NotFound`] when no other node does (this node's own sessions are
    /// the hub's to deliver, never sent through here).
    async fn send(&self, msg: NodeMessage) -> Remote;

    /// Takes `room` in the registry: true if it was free. Room ids are unique across
    /// every node of the router.
    async fn claim_room(&self, room: &RoomId) -> Result<bool, RouterError>;

    /// Frees `room` in the registry.
    async fn release_room(&self, room: &RoomId);
}

/// The single-node router: the room registry in memory, and no other node to send to or
/// find a client on. It keeps no presence of its own: the hub's sessions are the only
/// ones, and a single node's router holds nothing per connection.
pub struct LocalRouter {
    node_id: String,
    rooms: DashSet<RoomId>,
}

impl std::fmt::Debug for LocalRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRouter")
            .field("node_id", &self.node_id)
            .field("rooms", &self.rooms.len())
            .finish()
    }
}

impl LocalRouter {
    /// A router for the one node `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
            rooms: DashSet::new(),
        }
    }
}

impl Default for LocalRouter {
    fn default() -> Self {
        Self::new("local")
    }
}

#[async_trait]
impl Router for LocalRouter {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn has_other_nodes(&self) -> bool {
        false
    }

    fn attach(&self, _inbox: Weak<dyn Inbox>) {
        // No other node sends here.
    }

    async fn session_opened(&self, _client: &ClientId) -> Result<(), RouterError> {
        Ok(())
    }

    async fn session_closed(&self, _client: &ClientId) {}

    async fn locate(&self, _client: &ClientId) -> Option<String> {
        None
    }

    async fn send(&self, _msg: NodeMessage) -> Remote {
        Remote::NotFound
    }

    async fn claim_room(&self, room: &RoomId) -> Result<bool, RouterError> {
        Ok(self.rooms.insert(room.clone()))
    }

    async fn release_room(&self, room: &RoomId) {
        self.rooms.remove(room);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_local_router_keeps_the_contract() {
        super::contract::run(|node| super::LocalRouter::new(node), false).await;
    }
}
