//! The bus port: how a signal reaches a peer connected to another node. A single node uses
//! [`LocalBus`], which knows no other node; a clustered deployment plugs in an
//! implementation over Redis (presence with TTL, a channel per node) behind this seam.

use std::sync::Arc;

use async_trait::async_trait;

use crate::{hub::Envelope, ids::ClientId};

/// Outcome of a remote delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remote {
    /// Handed to the node holding the target.
    Delivered,
    /// No node holds the target.
    NotFound,
}

/// Routing between nodes.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// This node's id.
    fn node_id(&self) -> &str;
    /// Delivers an event to `target` on whichever other node holds it.
    async fn deliver_remote(&self, target: &ClientId, env: Arc<Envelope>) -> Remote;
}

/// The single-node bus: there are no other nodes.
#[derive(Debug, Clone)]
pub struct LocalBus {
    node_id: String,
}

impl LocalBus {
    /// A local bus named `node_id`.
    pub fn new(node_id: impl Into<String>) -> Self {
        Self {
            node_id: node_id.into(),
        }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new("local")
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    async fn deliver_remote(&self, _target: &ClientId, _env: Arc<Envelope>) -> Remote {
        Remote::NotFound
    }
}
