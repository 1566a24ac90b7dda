//! The Redis router: how the nodes of a cluster find each other, each other's clients and
//! rooms, and reach each other.
//!
//! - **Membership and liveness**: every node renews its score in `sm:nodes` (a sorted set
//!   of node id → last renewal, milliseconds) every third of `presence_ttl`. A node whose
//!   score is older than `presence_ttl` is lost; the first live node to take its reaper
//!   lock (`SET NX`) cleans up after it.
//! - **Presence**: `sm:{client:ID}` is a hash of node → sessions there, and `@last` → the
//!   node of the newest session. Opening and closing are Lua scripts, so two nodes never
//!   interleave their counts. `sm:node:ID:clients` indexes a node's clients for its reaper.
//! - **The room registry**: `sm:{room:ID}:meta` (the room's entry, its cap, its sender,
//!   how many ever joined) and `sm:{room:ID}:members` (client → member entry). Creating,
//!   joining and leaving are Lua scripts over those two keys (one hash slot, so Redis
//!   Cluster can run them): ids are unique, the cap and the single sender hold however
//!   many nodes admit at once, and exactly one leaver is told the room ended.
//!   `sm:rooms` lists room ids; `sm:node:ID:members` indexes a node's memberships.
//! - **Delivery**: one channel per node, `sm:node:ID`, one subscription per node on a
//!   RESP3 connection that resubscribes by itself after a reconnect. Signals are posted
//!   without waiting ([`Router::post`]) and one task sends them in batches: one
//!   `PUBLISH` per destination node per round trip, pipelined, in the compact form of
//!   `batch`; control messages are serde CBOR. A node that receives messages for clients
//!   it does not hold answers the sender with `Gone`. Pub/sub is at-most-once: a message
//!   published while a node is cut off is lost, which is why nothing that must not be
//!   lost travels only this way.
//!
//! Every command goes through one multiplexed [`ConnectionManager`], which reconnects
//! with backoff; while Redis is away the calls fail with [`RouterError`], the hub answers
//! what needs another node with 503, and [`Router::is_healthy`] is false.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

mod batch;
mod resume;

use async_trait::async_trait;
use parking_lot::RwLock;
use redis::{
    AsyncCommands, Client, FromRedisValue, PushInfo, PushKind, RedisFuture, RedisResult, Script,
    Value as RedisValue,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::{ClusterClientBuilder, ClusterConfig},
    cluster_async::ClusterConnection,
};
use serde::{Deserialize, Serialize};
use signal_core::{
    ClientId, RoomId,
    hub::Role,
    router::{
        Inbox, InboxPos, JoinVerdict, LeaveVerdict, MemberEntry, NodeLoad, NodeMessage, Recipient,
        Remote, RoomEntry, Router, RouterError,
    },
};

/// How a [`RedisRouter`] is set up.
#[derive(Debug, Clone)]
pub struct RedisRouterConfig {
    /// The Redis to use: one server, or a Redis Cluster.
    pub redis: RedisTarget,
    /// This node's id, unique in the cluster.
    pub node_id: String,
    /// A node that has not renewed its presence for this long is lost.
    pub presence_ttl: Duration,
    /// How long one Redis command may take before it counts as a failure.
    pub command_timeout: Duration,
    /// With `rediss://` URLs, the CA (PEM) that signed Redis's certificates, when the
    /// system's roots do not hold it.
    pub ca_file: Option<std::path::PathBuf>,
    /// Resume across nodes, with this resume window: messages to each node are kept in
    /// its inbox stream, and resumable sessions' frames in Redis. `None`: off.
    pub resume_window: Option<Duration>,
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (or a primary behind a fixed address): `redis://HOST:PORT[/DB]`, or
    /// `rediss://` for TLS.
    Single(String),
    /// A Redis Cluster, found from these seed nodes (`redis://HOST:PORT` each; any one
    /// that answers is enough). Node channels are sharded (`SSUBSCRIBE`, `SPUBLISH`),
    /// so each message crosses only the shard that owns its channel.
    Cluster(Vec<String>),
}

impl RedisTarget {
    fn is_tls(&self) -> bool {
        match self {
            Self::Single(u) => u.starts_with("rediss://"),
            Self::Cluster(us) => us.iter().any(|u| u.starts_with("rediss://")),
        }
    }
}

/// One connection to Redis, multiplexed, reconnecting by itself: to one server, or to
/// every primary of a Redis Cluster (commands routed by their keys' hash slots).
#[derive(Clone)]
enum Con {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Con {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, RedisValue> {
        match self {
            Con::Single(c) => c.req_packed_command(cmd),
            Con::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<RedisValue>> {
        match self {
            Con::Single(c) => c.req_packed_commands(cmd, offset, count),
            Con::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Con::Single(c) => c.get_db(),
            Con::Cluster(c) => c.get_db(),
        }
    }
}

/// What travels on a node's channel.
#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    /// An event for sessions on the receiving node.
    Deliver(Box<NodeMessage>),
    /// Close the receiving node's sessions of `client`: a newer one opened elsewhere.
    Evict { client: ClientId },
    /// An admin removed `client`: close its sessions (or take them out of `room`).
    Kick {
        client: ClientId,
        room: Option<RoomId>,
        reason: String,
    },
    /// Let go of the resumable session `token` names: another node resumes it.
    Release { token: String },
    /// Answer with your load to `reply_to`.
    LoadRequest { id: u64, reply_to: String },
    /// A node's load, answering request `id`.
    LoadReply {
        id: u64,
        node: String,
        load: NodeLoad,
    },
    /// `node` holds no session of `clients`: an answer to a batch with messages for them.
    Gone {
        node: String,
        clients: Vec<ClientId>,
    },
}

/// Messages posted and not yet sent at most (each is one signal): past this, a post is
/// refused rather than letting a slow Redis grow this node's memory without bound.
const OUTBOX_CAP: usize = 8192;

/// Messages taken from the outbox for one round trip to Redis at most.
const OUT_BATCH: usize = 512;

/// Load requests waiting for their answers.
#[derive(Default)]
struct LoadRequests {
    next: u64,
    waiting: std::collections::HashMap<u64, tokio::sync::mpsc::UnboundedSender<(String, NodeLoad)>>,
}

/// The router over Redis. Build with [`RedisRouter::start`].
pub struct RedisRouter {
    node_id: String,
    channel: String,
    ttl: Duration,
    con: Con,
    inbox: RwLock<Option<Weak<dyn Inbox>>>,
    /// Nodes seen alive at the last renewal (this one included).
    alive: RwLock<HashSet<String>>,
    healthy: AtomicBool,
    scripts: Scripts,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    loads: parking_lot::Mutex<LoadRequests>,
    me: Weak<RedisRouter>,
    /// No node is reaped before this: after a start or a reconnect, every live node
    /// gets a whole `presence_ttl` to renew its presence first.
    reap_after: parking_lot::Mutex<tokio::time::Instant>,
    /// Messages posted for other nodes, sent by one task in batches.
    outbox: tokio::sync::mpsc::Sender<Posted>,
    /// Resumable sessions' frames to keep, written by one task in pipelines.
    mirrors: tokio::sync::mpsc::Sender<resume::MirrorRequest>,
    /// The SHA1 of the script that keeps them.
    mirror_sha: String,
    /// See [`RedisRouterConfig::resume_window`].
    resume_window: Option<Duration>,
}

/// What is posted to the task sending to other nodes (by value: the queue holds
/// messages, and a barrier is rare).
#[allow(clippy::large_enum_variant)]
enum Posted {
    /// A message for a node.
    Message(String, NodeMessage),
    /// Answered once what was posted before it was sent.
    Barrier(tokio::sync::oneshot::Sender<()>),
}

impl std::fmt::Debug for RedisRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRouter")
            .field("node_id", &self.node_id)
            .field("healthy", &self.is_healthy())
            .finish()
    }
}

impl Drop for RedisRouter {
    fn drop(&mut self) {
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
    }
}

struct Scripts {
    mirror: Script,
    open: Script,
    close: Script,
    create: Script,
    join: Script,
    leave: Script,
    forget: Script,
    update: Script,
    lease: Script,
    restore_room: Script,
    restore_presence: Script,
}

const OPEN: &str = r"
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HSET', KEYS[1], '@last', ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local others = {}
for i = 1, #all, 2 do
  if all[i] ~= '@last' and all[i] ~= ARGV[1] and tonumber(all[i + 1]) > 0 then
    table.insert(others, all[i])
  end
end
return others
";

// One session of a client on a node ended (ARGV[2] = 1), or all of them (a lost node's,
// ARGV[2] = 'all'). KEYS: presence. ARGV: node, how many.
const CLOSE: &str = r"
if ARGV[2] ~= 'all' then
  local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
  if n > 0 then return n end
end
redis.call('HDEL', KEYS[1], ARGV[1])
local all = redis.call('HGETALL', KEYS[1])
local other = nil
for i = 1, #all, 2 do
  if all[i] ~= '@last' then other = all[i] end
end
if other == nil then
  redis.call('DEL', KEYS[1])
elseif redis.call('HGET', KEYS[1], '@last') == ARGV[1] then
  redis.call('HSET', KEYS[1], '@last', other)
end
return 0
";

// Puts back a room and its members on one node. KEYS: meta, members. ARGV: entry, max,
// then (client, role, member) per member.
const RESTORE_ROOM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'entry', ARGV[1], 'max', ARGV[2], 'sender', '', 'ever', 0)
end
local sender = redis.call('HGET', KEYS[1], 'sender') or ''
for i = 3, #ARGV, 3 do
  local c, role, m = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HSETNX', KEYS[2], c, m) == 1 then
    redis.call('HINCRBY', KEYS[1], 'ever', 1)
    if role == 'sender' and sender == '' then
      sender = c
      redis.call('HSET', KEYS[1], 'sender', c)
    end
  end
end
return 1
";

// Replaces a member's entry if it is still a member. KEYS: members. ARGV: client, entry.
const UPDATE: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0
";

// Takes or renews a lease for a node. KEYS: the lease. ARGV: node, ttl (ms).
const LEASE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

// Puts back one node's sessions of a client. KEYS: presence. ARGV: node, count.
const RESTORE_PRESENCE: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('HGET', KEYS[1], '@last') then
  redis.call('HSET', KEYS[1], '@last', ARGV[1])
end
return 1
";

// KEYS: meta, members. ARGV: entry, max, client, member, sender ('' if none).
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'entry', ARGV[1], 'max', ARGV[2], 'sender', ARGV[5], 'ever', 1)
if ARGV[3] ~= '' then redis.call('HSET', KEYS[2], ARGV[3], ARGV[4]) end
return 1
";

// KEYS: meta, members. ARGV: then (client, role, member) per join.
// Returns the verdicts, then the members before the first join.
const JOIN: &str = r"
local n = #ARGV / 3
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 1, n do out[i] = 'no_room' end
  return out
end
local before = redis.call('HVALS', KEYS[2])
local count = #before
local max = tonumber(redis.call('HGET', KEYS[1], 'max'))
local sender = redis.call('HGET', KEYS[1], 'sender') or ''
for i = 1, n do
  local client, role, member = ARGV[3 * i - 2], ARGV[3 * i - 1], ARGV[3 * i]
  if redis.call('HEXISTS', KEYS[2], client) == 1 then
    out[i] = 'already_in'
  elseif count >= max then
    out[i] = 'full'
  elseif role == 'sender' and sender ~= '' then
    out[i] = 'sender_taken'
  else
    redis.call('HSET', KEYS[2], client, member)
    if role == 'sender' then
      sender = client
      redis.call('HSET', KEYS[1], 'sender', client)
    end
    redis.call('HINCRBY', KEYS[1], 'ever', 1)
    count = count + 1
    out[i] = 'joined'
  end
end
for i = 1, #before do out[n + i] = before[i] end
return out
";

// KEYS: meta, members. ARGV: client.
const LEAVE: &str = r"
local m = redis.call('HGET', KEYS[2], ARGV[1])
if not m then return {'not_member'} end
redis.call('HDEL', KEYS[2], ARGV[1])
local sender = redis.call('HGET', KEYS[1], 'sender') or ''
if sender == ARGV[1] or redis.call('HLEN', KEYS[2]) == 0 then
  local rest = redis.call('HVALS', KEYS[2])
  local ever = redis.call('HGET', KEYS[1], 'ever') or '0'
  local entry = redis.call('HGET', KEYS[1], 'entry') or ''
  redis.call('DEL', KEYS[1], KEYS[2])
  local out = {'terminated', m, ever, entry}
  for i = 1, #rest do out[4 + i] = rest[i] end
  return out
end
return {'left', m}
";

// KEYS: meta, members. ARGV: client.
const FORGET: &str = r"
redis.call('HDEL', KEYS[2], ARGV[1])
if redis.call('HGET', KEYS[1], 'sender') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'sender', '')
end
return 1
";

/// A URL asking for RESP3, which push messages (subscriptions) need.
fn with_resp3(url: &str) -> String {
    let mut url = url.to_owned();
    if !url.contains("protocol=") {
        url.push_str(if url.contains('?') { "&" } else { "?" });
        url.push_str("protocol=resp3");
    }
    url
}

fn client_key(c: &ClientId) -> String {
    format!("sm:{{client:{c}}}")
}

fn meta_key(r: &RoomId) -> String {
    format!("sm:{{room:{r}}}:meta")
}

/// A banned client: its value is when the ban ends (Unix ms); it expires then.
fn ban_key(c: &ClientId) -> String {
    format!("sm:ban:{{client:{c}}}")
}

fn members_key(r: &RoomId) -> String {
    format!("sm:{{room:{r}}}:members")
}

fn node_channel(node: &str) -> String {
    format!("sm:node:{node}")
}

fn node_clients_key(node: &str) -> String {
    format!("sm:node:{node}:clients")
}

fn node_members_key(node: &str) -> String {
    format!("sm:node:{node}:members")
}

const NODES: &str = "sm:nodes";
const ROOMS: &str = "sm:rooms";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn err(e: impl std::fmt::Display) -> RouterError {
    RouterError(e.to_string())
}

fn decode_member(s: &str) -> Result<MemberEntry, RouterError> {
    serde_json::from_str(s).map_err(|e| err(format!("a member entry that does not parse: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<String, RouterError> {
    serde_json::to_string(v).map_err(err)
}

impl RedisRouter {
    /// Connects to Redis and starts this node's presence renewal and its channel's
    /// subscription. Redis need not be reachable yet: the router reconnects by itself
    /// and reports unhealthy until it is.
    pub async fn start(cfg: RedisRouterConfig) -> Result<Arc<Self>, RouterError> {
        if cfg.redis.is_tls() {
            // The TLS connections' crypto (one process-wide default; the first to
            // install it wins, and every part of the server installs this one).
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        }
        let certs = match &cfg.ca_file {
            None => None,
            Some(ca) => Some(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(
                    std::fs::read(ca)
                        .map_err(|e| err(format!("cluster.redis_ca_file {}: {e}", ca.display())))?,
                ),
            }),
        };
        let (push_tx, mut push_rx) = tokio::sync::mpsc::unbounded_channel::<PushInfo>();
        let con = match &cfg.redis {
            RedisTarget::Single(u) => {
                let url = with_resp3(u);
                let client = match certs {
                    None => Client::open(url.as_str()),
                    Some(certs) => Client::build_with_tls(url.as_str(), certs),
                }
                .map_err(|e| err(format!("invalid cluster.redis_url '{u}': {e}")))?;
                let mcfg = ConnectionManagerConfig::new()
                    .set_push_sender(push_tx)
                    .set_automatic_resubscription()
                    .set_response_timeout(Some(cfg.command_timeout))
                    .set_connection_timeout(Some(cfg.command_timeout))
                    .set_max_delay(Duration::from_secs(2));
                Con::Single(ConnectionManager::new_lazy_with_config(client, mcfg).map_err(err)?)
            }
            RedisTarget::Cluster(urls) => {
                if urls.is_empty() {
                    return Err(err("cluster.redis_cluster_urls lists no seed node"));
                }
                let mut builder = ClusterClientBuilder::new(urls.iter().map(|u| with_resp3(u)))
                    .use_protocol(redis::ProtocolVersion::RESP3)
                    .retries(2)
                    .max_retry_wait(2000);
                if let Some(certs) = certs {
                    builder = builder.certs(certs);
                }
                let client = builder.build().map_err(|e| {
                    err(format!("invalid cluster.redis_cluster_urls {urls:?}: {e}"))
                })?;
                // Subscriptions are kept by the connection and made again on whichever
                // node owns their slot after a reconnect or a resharding.
                let ccfg = ClusterConfig::new()
                    .set_push_sender(push_tx)
                    .set_connection_timeout(cfg.command_timeout)
                    .set_response_timeout(cfg.command_timeout);
                Con::Cluster(client.get_pending_async_connection_with_config(ccfg))
            }
        };
        let (outbox, out_rx) = tokio::sync::mpsc::channel(OUTBOX_CAP);
        let (mirrors, mirror_rx) = tokio::sync::mpsc::channel(OUTBOX_CAP);
        let router = Arc::new_cyclic(|me| Self {
            outbox,
            mirrors,
            mirror_sha: Script::new(resume::MIRROR).get_hash().to_owned(),
            resume_window: cfg.resume_window,
            me: me.clone(),
            loads: parking_lot::Mutex::new(LoadRequests::default()),
            reap_after: parking_lot::Mutex::new(tokio::time::Instant::now() + cfg.presence_ttl),
            channel: node_channel(&cfg.node_id),
            node_id: cfg.node_id,
            ttl: cfg.presence_ttl,
            con,
            inbox: RwLock::new(None),
            alive: RwLock::new(HashSet::new()),
            healthy: AtomicBool::new(false),
            scripts: Scripts {
                mirror: Script::new(resume::MIRROR),
                open: Script::new(OPEN),
                close: Script::new(CLOSE),
                create: Script::new(CREATE),
                join: Script::new(JOIN),
                leave: Script::new(LEAVE),
                forget: Script::new(FORGET),
                update: Script::new(UPDATE),
                lease: Script::new(LEASE),
                restore_room: Script::new(RESTORE_ROOM),
                restore_presence: Script::new(RESTORE_PRESENCE),
            },
            tasks: parking_lot::Mutex::new(Vec::new()),
        });
        router.alive.write().insert(router.node_id.clone());
        // Subscribe now if Redis is there; the renewal loop retries until it is.
        let subscribed = router.subscribe().await.is_ok();
        let _ = router.renew().await;

        let weak = Arc::downgrade(&router);
        let reader = tokio::spawn(async move {
            while let Some(push) = push_rx.recv().await {
                let Some(r) = weak.upgrade() else { return };
                r.on_push(push);
            }
        });
        let weak = Arc::downgrade(&router);
        let period = (cfg.presence_ttl / 3).max(Duration::from_millis(100));
        let renewer = tokio::spawn(async move {
            let mut subscribed = subscribed;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(r) = weak.upgrade() else { return };
                if !subscribed {
                    subscribed = r.subscribe().await.is_ok();
                }
                if let Err(e) = r.renew().await {
                    tracing::debug!(error = %e, "cluster: presence renewal failed");
                }
            }
        });
        let writer = tokio::spawn(write_out(Arc::downgrade(&router), out_rx));
        let mirror = tokio::spawn(resume::write_mirrors(Arc::downgrade(&router), mirror_rx));
        router
            .tasks
            .lock()
            .extend([reader, renewer, writer, mirror]);
        Ok(router)
    }

    async fn subscribe(&self) -> Result<(), RouterError> {
        match self.con.clone() {
            Con::Single(mut c) => c.subscribe(&self.channel).await.map_err(err),
            Con::Cluster(mut c) => c.ssubscribe(&self.channel).await.map_err(err),
        }
    }

    /// `PUBLISH` on one server, `SPUBLISH` (to the shard owning the channel) on a cluster.
    fn publish_cmd(&self, node: &str, payload: Vec<u8>) -> redis::Cmd {
        let mut c = redis::cmd(match self.con {
            Con::Single(_) => "PUBLISH",
            Con::Cluster(_) => "SPUBLISH",
        });
        c.arg(node_channel(node)).arg(payload);
        c
    }

    /// Runs commands whose keys may lie in different hash slots, and returns their
    /// answers in order: one pipeline on a single server; on a cluster, each command on
    /// its own, all in flight at once (the connection to each primary pipelines them).
    async fn query_all<T: FromRedisValue>(&self, cmds: Vec<redis::Cmd>) -> RedisResult<Vec<T>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        match &self.con {
            Con::Single(c) => {
                let mut p = redis::pipe();
                for cmd in cmds {
                    p.add_command(cmd);
                }
                p.query_async(&mut c.clone()).await
            }
            Con::Cluster(c) => {
                futures_util::future::try_join_all(cmds.into_iter().map(|cmd| {
                    let mut c = c.clone();
                    async move { cmd.query_async::<T>(&mut c).await }
                }))
                .await
            }
        }
    }

    fn set_healthy(&self, ok: bool) {
        let was = self.healthy.swap(ok, Ordering::AcqRel);
        if was != ok {
            if ok {
                tracing::info!(node_id = %self.node_id, "cluster: Redis reachable");
                *self.reap_after.lock() = tokio::time::Instant::now() + self.ttl;
                // Put back what this node holds: Redis may have lost it, or missed
                // what changed meanwhile.
                if let Some(inbox) = self.inbox.read().as_ref().and_then(Weak::upgrade) {
                    inbox.reconnected();
                }
            } else {
                tracing::warn!(node_id = %self.node_id, "cluster: Redis unreachable; serving this node's clients only");
            }
        }
    }

    /// Wraps a command's result, keeping [`Router::is_healthy`] current.
    fn checked<T>(&self, r: redis::RedisResult<T>) -> Result<T, RouterError> {
        match r {
            Ok(v) => {
                self.set_healthy(true);
                Ok(v)
            }
            Err(e) => {
                if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() {
                    self.set_healthy(false);
                }
                Err(err(e))
            }
        }
    }

    /// Renews this node's presence, reads who else is alive, and reaps nodes that are
    /// not.
    async fn renew(&self) -> Result<(), RouterError> {
        let mut con = self.con.clone();
        let now = now_ms();
        let cutoff = now - self.ttl.as_millis() as i64;
        let (_, alive, lost): ((), Vec<String>, Vec<String>) = {
            let r = redis::pipe()
                .zadd(NODES, &self.node_id, now)
                .ignore()
                .cmd("PING")
                .zrangebyscore(NODES, cutoff, "+inf")
                .zrangebyscore(NODES, "-inf", format!("({cutoff}"))
                .query_async::<(String, Vec<String>, Vec<String>)>(&mut con)
                .await;
            let (_, a, l) = self.checked(r)?;
            ((), a, l)
        };
        self.set_healthy(true);
        {
            let mut set = self.alive.write();
            set.clear();
            set.extend(alive);
            set.insert(self.node_id.clone());
        }
        if tokio::time::Instant::now() < *self.reap_after.lock() {
            return Ok(());
        }
        for node in lost {
            if node == self.node_id {
                continue;
            }
            // One reaper per lost node: whoever takes the lock.
            let lock = format!("sm:reap:{node}");
            let took: Option<String> = self.checked(
                redis::cmd("SET")
                    .arg(&lock)
                    .arg(&self.node_id)
                    .arg("NX")
                    .arg("PX")
                    .arg((self.ttl.as_millis() as u64 * 3).max(5000))
                    .query_async(&mut con)
                    .await,
            )?;
            if took.is_some() {
                tracing::warn!(node_id = %self.node_id, lost = %node, "cluster: node lost; cleaning up after it");
                let inbox = self.inbox.read().as_ref().and_then(Weak::upgrade);
                match inbox {
                    Some(inbox) => inbox.node_lost(&node),
                    None => self.forget_node(&node).await,
                }
            }
        }
        Ok(())
    }

    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {}
            PushKind::Disconnection => {
                self.set_healthy(false);
                return;
            }
            _ => return,
        }
        // [channel, payload]
        let Some(RedisValue::BulkString(payload)) = push.data.into_iter().nth(1) else {
            return;
        };
        let Some(inbox) = self.inbox.read().as_ref().and_then(Weak::upgrade) else {
            return;
        };
        // Kept in this node's inbox stream: the entry's id comes first.
        let (entry, payload) = match resume::split_kept(bytes::Bytes::from(payload)) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: a kept message on this node's channel does not parse");
                return;
            }
        };
        if payload.first() == Some(&batch::TAG) {
            match batch::decode(&payload) {
                Ok((from, msgs)) => self.receive_batch(inbox.as_ref(), from, msgs, entry),
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: a batch on this node's channel does not parse");
                }
            }
            return;
        }
        let wire: Wire = match minicbor_serde::from_slice(&payload) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: a message on this node's channel does not parse");
                return;
            }
        };
        match wire {
            Wire::Deliver(msg) => {
                inbox.receive_at(*msg, entry.and_then(|e| InboxPos::parse(&e, 0)));
            }
            Wire::Release { token } => inbox.release(&token),
            Wire::Gone { node, clients } => {
                if !clients.is_empty() {
                    inbox.gone(&node, &clients);
                }
            }
            Wire::Evict { client } => inbox.evict(&client),
            Wire::Kick {
                client,
                room,
                reason,
            } => inbox.kick(&client, room.as_ref(), &reason),
            Wire::LoadRequest { id, reply_to } => {
                let reply = Wire::LoadReply {
                    id,
                    node: self.node_id.clone(),
                    load: inbox.load(),
                };
                let Some(me) = self.me.upgrade() else { return };
                tokio::spawn(async move {
                    let _ = me.publish(&reply_to, &reply).await;
                });
            }
            Wire::LoadReply { id, node, load } => {
                if let Some(tx) = self.loads.lock().waiting.get(&id) {
                    let _ = tx.send((node, load));
                }
            }
        }
    }

    /// Hands a batch's messages to the hub, and tells each sender of messages for
    /// clients this node does not hold.
    fn receive_batch(
        &self,
        inbox: &dyn Inbox,
        from: String,
        msgs: Vec<NodeMessage>,
        entry: Option<String>,
    ) {
        // Clients this node does not hold, told to the node that thought it did.
        let mut gone: Vec<ClientId> = Vec::new();
        for (i, msg) in msgs.into_iter().enumerate() {
            let pos = entry
                .as_deref()
                .and_then(|e| InboxPos::parse(e, u32::try_from(i).unwrap_or(u32::MAX)));
            let client = match &msg.to {
                Recipient::Client { client } => Some(client.clone()),
                Recipient::Room { .. } => None,
            };
            if inbox.receive_at(msg, pos) == 0
                && let Some(client) = client
                && !gone.contains(&client)
            {
                gone.push(client);
            }
        }
        if !gone.is_empty()
            && let Some(me) = self.me.upgrade()
        {
            tokio::spawn(async move {
                let wire = Wire::Gone {
                    node: me.node_id.clone(),
                    clients: gone,
                };
                let _ = me.publish(&from, &wire).await;
            });
        }
    }

    /// Sends what was posted, one batch per node in one round trip (pipelined).
    async fn flush(&self, posted: &mut Vec<(String, NodeMessage)>) {
        let mut groups: Vec<(String, Vec<NodeMessage>)> = Vec::new();
        for (node, msg) in posted.drain(..) {
            match groups.iter_mut().find(|(n, _)| *n == node) {
                Some((_, msgs)) => msgs.push(msg),
                None => groups.push((node, vec![msg])),
            }
        }
        let mut cmds = Vec::with_capacity(groups.len());
        let mut count = 0usize;
        let mut sent_to = Vec::with_capacity(groups.len());
        for (node, msgs) in groups {
            let n = msgs.len();
            match batch::encode(&self.node_id, &msgs) {
                Ok(payload) => {
                    cmds.push(self.deliver_cmd(&node, payload));
                    sent_to.push(node);
                    count += n;
                }
                Err(e) => {
                    tracing::warn!(node = %node, error = %e, "cluster: could not encode messages")
                }
            }
        }
        match self.checked(self.query_all::<i64>(cmds).await) {
            Ok(receivers) => {
                metrics::counter!("signal_cluster_messages_sent_total").increment(count as u64);
                metrics::histogram!("signal_cluster_batch_size").record(count as f64);
                // A node that no longer listens holds none of the clients it was sent.
                let inbox = self.inbox.read().as_ref().and_then(Weak::upgrade);
                if let Some(inbox) = inbox {
                    for (node, n) in sent_to.iter().zip(receivers) {
                        if n == 0 {
                            inbox.gone(node, &[]);
                        }
                    }
                }
            }
            Err(e) => {
                metrics::counter!("signal_cluster_messages_lost_total").increment(count as u64);
                tracing::warn!(messages = count, error = %e, "cluster: messages for other nodes lost");
            }
        }
    }

    async fn publish(&self, node: &str, wire: &Wire) -> Result<bool, RouterError> {
        // CBOR: compact, and a relayed frame's bytes travel as bytes.
        let payload = minicbor_serde::to_vec(wire).map_err(err)?;
        let mut con = self.con.clone();
        let cmd = match wire {
            Wire::Deliver(_) => self.deliver_cmd(node, payload),
            _ => self.publish_cmd(node, payload),
        };
        let n: i64 = self.checked(cmd.query_async(&mut con).await)?;
        Ok(n > 0)
    }

    /// Whether `node`'s presence is current: as of the last renewal, or, for a node that
    /// joined since, as Redis has it now.
    async fn is_alive(&self, node: &str) -> bool {
        if self.alive.read().contains(node) {
            return true;
        }
        let mut con = self.con.clone();
        let score: Option<i64> = self.checked(con.zscore(NODES, node).await).ok().flatten();
        let alive = score.is_some_and(|s| s >= now_ms() - self.ttl.as_millis() as i64);
        if alive {
            self.alive.write().insert(node.to_owned());
        }
        alive
    }

    /// Nodes other than this one holding members of `room`.
    async fn room_nodes(&self, room: &RoomId) -> Result<BTreeSet<String>, RouterError> {
        let mut con = self.con.clone();
        let vals: Vec<String> = self.checked(con.hvals(members_key(room)).await)?;
        let mut nodes = BTreeSet::new();
        for v in vals {
            let m = decode_member(&v)?;
            if m.node != self.node_id {
                nodes.insert(m.node);
            }
        }
        Ok(nodes)
    }

    async fn index_members(&self, room: &RoomId, members: &[&MemberEntry], add: bool) {
        if members.is_empty() {
            return;
        }
        let cmds = members
            .iter()
            .map(|m| {
                let mut c = redis::cmd(if add { "SADD" } else { "SREM" });
                c.arg(node_members_key(&m.node))
                    .arg(format!("{room}\n{}", m.client));
                c
            })
            .collect();
        if let Err(e) = self.checked(self.query_all::<RedisValue>(cmds).await) {
            tracing::debug!(error = %e, "cluster: could not index members");
        }
    }
}

#[async_trait]
impl Router for RedisRouter {
    fn node_id(&self) -> &str {
        &self.node_id
    }

    fn attach(&self, inbox: Weak<dyn Inbox>) {
        *self.inbox.write() = Some(inbox);
    }

    async fn session_opened(&self, client: &ClientId) -> Result<Vec<String>, RouterError> {
        let mut con = self.con.clone();
        let others: Vec<String> = self.checked(
            self.scripts
                .open
                .key(client_key(client))
                .arg(&self.node_id)
                .invoke_async(&mut con)
                .await,
        )?;
        let _ = self.checked(
            con.sadd::<_, _, ()>(node_clients_key(&self.node_id), client.as_str())
                .await,
        );
        let mut alive = Vec::with_capacity(others.len());
        for n in others {
            if self.is_alive(&n).await {
                alive.push(n);
            }
        }
        Ok(alive)
    }

    async fn evict_elsewhere(&self, client: &ClientId, nodes: &[String]) {
        let wire = Wire::Evict {
            client: client.clone(),
        };
        for n in nodes.iter().filter(|n| **n != self.node_id) {
            if let Err(e) = self.publish(n, &wire).await {
                tracing::warn!(node = %n, error = %e, "cluster: could not end a replaced session");
            }
        }
    }

    async fn forget_node(&self, node: &str) {
        let mut con = self.con.clone();
        let clients: Vec<String> = con
            .smembers(node_clients_key(node))
            .await
            .unwrap_or_default();
        let closes = clients
            .iter()
            .filter_map(|c| ClientId::parse("client_id", c).ok())
            .map(|c| {
                let mut con = con.clone();
                let script = &self.scripts.close;
                async move {
                    script
                        .key(client_key(&c))
                        .arg(node)
                        .arg("all")
                        .invoke_async::<RedisValue>(&mut con)
                        .await
                }
            });
        let closed = futures_util::future::try_join_all(closes).await;
        let mut cmds = Vec::with_capacity(3);
        for key in [node_clients_key(node), node_members_key(node)] {
            let mut c = redis::cmd("DEL");
            c.arg(key);
            cmds.push(c);
        }
        let mut zrem = redis::cmd("ZREM");
        zrem.arg(NODES).arg(node);
        cmds.push(zrem);
        let r = match closed {
            Ok(_) => self.query_all::<RedisValue>(cmds).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = self.checked(r) {
            tracing::warn!(lost = %node, error = %e, "cluster: could not forget a lost node");
        }
    }

    async fn session_closed(&self, client: &ClientId) {
        let mut con = self.con.clone();
        let left: Result<i64, _> = self.checked(
            self.scripts
                .close
                .key(client_key(client))
                .arg(&self.node_id)
                .arg(1)
                .invoke_async(&mut con)
                .await,
        );
        if matches!(left, Ok(0)) {
            let _ = self.checked(
                con.srem::<_, _, ()>(node_clients_key(&self.node_id), client.as_str())
                    .await,
            );
        }
    }

    async fn locate(&self, client: &ClientId) -> Option<String> {
        let mut con = self.con.clone();
        let all: Vec<(String, String)> =
            self.checked(con.hgetall(client_key(client)).await).ok()?;
        let last = all
            .iter()
            .find(|(k, _)| k == "@last")
            .map(|(_, v)| v.clone());
        let holding: Vec<&String> = all
            .iter()
            .filter(|(k, v)| k != "@last" && v.parse::<i64>().unwrap_or(0) > 0)
            .map(|(k, _)| k)
            .collect();
        // The newest session's node first, then any other holding one.
        let mut order: Vec<&String> = Vec::with_capacity(holding.len());
        if let Some(l) = &last
            && let Some(n) = holding.iter().find(|n| **n == l)
        {
            order.push(n);
        }
        order.extend(holding.iter().filter(|n| Some(**n) != last.as_ref()));
        for n in order {
            if self.is_alive(n).await {
                return Some(n.clone());
            }
        }
        None
    }

    async fn send(&self, msg: NodeMessage) -> Remote {
        let nodes: Vec<String> = match &msg.to {
            Recipient::Client { client } => match self.locate(client).await {
                Some(n) if n != self.node_id => vec![n],
                _ => return Remote::NotFound,
            },
            Recipient::Room { room, .. } => match self.room_nodes(room).await {
                Ok(n) => n.into_iter().collect(),
                Err(_) => return Remote::NotFound,
            },
        };
        if nodes.is_empty() {
            return Remote::NotFound;
        }
        let wire = Wire::Deliver(Box::new(msg));
        let mut any = false;
        for n in &nodes {
            if let Ok(true) = self.publish(n, &wire).await {
                any = true;
            }
        }
        if any {
            Remote::Delivered
        } else {
            Remote::NotFound
        }
    }

    fn post(&self, node: &str, msg: NodeMessage) -> Result<(), RouterError> {
        if !self.is_healthy() {
            return Err(err("Redis unreachable"));
        }
        self.outbox
            .try_send(Posted::Message(node.to_owned(), msg))
            .map_err(|e| match e {
                tokio::sync::mpsc::error::TrySendError::Full(_) => {
                    metrics::counter!("signal_cluster_outbox_full_total").increment(1);
                    err("too many messages waiting for Redis")
                }
                tokio::sync::mpsc::error::TrySendError::Closed(_) => err("router stopped"),
            })
    }

    async fn claim_room(&self, room: &RoomId) -> Result<bool, RouterError> {
        let entry = RoomEntry {
            uuid: uuid::Uuid::new_v4(),
            created_at: chrono::Utc::now(),
            max_participants: 0,
            metadata: serde_json::Value::Null,
            offer_sdp: None,
        };
        let mut con = self.con.clone();
        let took: i64 = self.checked(
            self.scripts
                .create
                .key(meta_key(room))
                .key(members_key(room))
                .arg(encode(&entry)?)
                .arg(0)
                .arg("")
                .arg("")
                .arg("")
                .invoke_async(&mut con)
                .await,
        )?;
        if took == 1 {
            let _ = self.checked(con.sadd::<_, _, ()>(ROOMS, room.as_str()).await);
        }
        Ok(took == 1)
    }

    async fn release_room(&self, room: &RoomId) {
        let mut con = self.con.clone();
        let members: Vec<String> = con.hvals(members_key(room)).await.unwrap_or_default();
        let entries: Vec<MemberEntry> = members
            .iter()
            .filter_map(|m| decode_member(m).ok())
            .collect();
        // The room's two keys share a hash slot; the list of rooms has its own.
        let _ = self.checked(
            redis::pipe()
                .del(meta_key(room))
                .ignore()
                .del(members_key(room))
                .ignore()
                .query_async::<()>(&mut con)
                .await,
        );
        let _ = self.checked(con.srem::<_, _, ()>(ROOMS, room.as_str()).await);
        self.index_members(room, &entries.iter().collect::<Vec<_>>(), false)
            .await;
    }

    async fn create_room(
        &self,
        room: &RoomId,
        entry: &RoomEntry,
        creator: &MemberEntry,
    ) -> Result<bool, RouterError> {
        let mut con = self.con.clone();
        let took: i64 = self.checked(
            self.scripts
                .create
                .key(meta_key(room))
                .key(members_key(room))
                .arg(encode(entry)?)
                .arg(entry.max_participants)
                .arg(creator.client.as_str())
                .arg(encode(creator)?)
                .arg(if creator.role == Role::Sender {
                    creator.client.as_str()
                } else {
                    ""
                })
                .invoke_async(&mut con)
                .await,
        )?;
        if took != 1 {
            return Ok(false);
        }
        let _ = self.checked(con.sadd::<_, _, ()>(ROOMS, room.as_str()).await);
        self.index_members(room, &[creator], true).await;
        Ok(true)
    }

    async fn room_entry(
        &self,
        room: &RoomId,
    ) -> Result<Option<(RoomEntry, Vec<MemberEntry>)>, RouterError> {
        let mut con = self.con.clone();
        let (entry, members): (Option<String>, Vec<String>) = self.checked(
            redis::pipe()
                .hget(meta_key(room), "entry")
                .hvals(members_key(room))
                .query_async(&mut con)
                .await,
        )?;
        let Some(entry) = entry else { return Ok(None) };
        let entry: RoomEntry = serde_json::from_str(&entry)
            .map_err(|e| err(format!("a room entry that does not parse: {e}")))?;
        let mut members = members
            .iter()
            .map(|m| decode_member(m))
            .collect::<Result<Vec<_>, _>>()?;
        members.sort_by_key(|m| m.joined_at);
        Ok(Some((entry, members)))
    }

    async fn room_ids(&self) -> Result<Vec<RoomId>, RouterError> {
        let mut con = self.con.clone();
        let ids: Vec<String> = self.checked(con.smembers(ROOMS).await)?;
        let mut out: Vec<RoomId> = ids.iter().filter_map(|i| RoomId::parse(i).ok()).collect();
        out.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        Ok(out)
    }

    async fn join_members(
        &self,
        room: &RoomId,
        joins: &[MemberEntry],
    ) -> Result<(Vec<JoinVerdict>, Vec<MemberEntry>), RouterError> {
        let mut inv = self.scripts.join.prepare_invoke();
        inv.key(meta_key(room)).key(members_key(room));
        for j in joins {
            inv.arg(j.client.as_str())
                .arg(j.role.as_str())
                .arg(encode(j)?);
        }
        let mut con = self.con.clone();
        let out: Vec<String> = self.checked(inv.invoke_async(&mut con).await)?;
        if out.len() < joins.len() {
            return Err(err("the join script answered short"));
        }
        let verdicts: Vec<JoinVerdict> = out[..joins.len()]
            .iter()
            .map(|v| match v.as_str() {
                "joined" => JoinVerdict::Joined,
                "already_in" => JoinVerdict::AlreadyIn,
                "full" => JoinVerdict::Full,
                "sender_taken" => JoinVerdict::SenderTaken,
                _ => JoinVerdict::NoRoom,
            })
            .collect();
        let mut before = out[joins.len()..]
            .iter()
            .map(|m| decode_member(m))
            .collect::<Result<Vec<_>, _>>()?;
        before.sort_by_key(|m| m.joined_at);
        let joined: Vec<&MemberEntry> = joins
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == JoinVerdict::Joined)
            .map(|(j, _)| j)
            .collect();
        self.index_members(room, &joined, true).await;
        Ok((verdicts, before))
    }

    async fn leave_member(
        &self,
        room: &RoomId,
        client: &ClientId,
    ) -> Result<LeaveVerdict, RouterError> {
        let mut con = self.con.clone();
        let out: Vec<String> = self.checked(
            self.scripts
                .leave
                .key(meta_key(room))
                .key(members_key(room))
                .arg(client.as_str())
                .invoke_async(&mut con)
                .await,
        )?;
        match out.first().map(String::as_str) {
            Some("left") if out.len() >= 2 => {
                let m = decode_member(&out[1])?;
                self.index_members(room, &[&m], false).await;
                Ok(LeaveVerdict::Left(m))
            }
            Some("terminated") if out.len() >= 4 => {
                let member = decode_member(&out[1])?;
                let ever_joined = out[2].parse().unwrap_or(0);
                let entry: RoomEntry = serde_json::from_str(&out[3])
                    .map_err(|e| err(format!("a room entry that does not parse: {e}")))?;
                let mut remaining = out[4..]
                    .iter()
                    .map(|m| decode_member(m))
                    .collect::<Result<Vec<_>, _>>()?;
                remaining.sort_by_key(|m| m.joined_at);
                let _ = self.checked(con.srem::<_, _, ()>(ROOMS, room.as_str()).await);
                let mut all: Vec<&MemberEntry> = remaining.iter().collect();
                all.push(&member);
                self.index_members(room, &all, false).await;
                Ok(LeaveVerdict::Terminated {
                    entry,
                    member,
                    remaining,
                    ever_joined,
                })
            }
            _ => Ok(LeaveVerdict::NotMember),
        }
    }

    async fn forget_member(&self, room: &RoomId, client: &ClientId) {
        let mut con = self.con.clone();
        let _ = self.checked(
            self.scripts
                .forget
                .key(meta_key(room))
                .key(members_key(room))
                .arg(client.as_str())
                .invoke_async::<i64>(&mut con)
                .await,
        );
        let _ = self.checked(
            con.srem::<_, _, ()>(node_members_key(&self.node_id), format!("{room}\n{client}"))
                .await,
        );
    }

    async fn ban(&self, client: &ClientId, until_ms: i64) -> Result<(), RouterError> {
        let ttl_ms = until_ms
            .saturating_sub(chrono::Utc::now().timestamp_millis())
            .max(1);
        let mut con = self.con.clone();
        self.checked(
            con.pset_ex::<_, _, ()>(ban_key(client), until_ms, ttl_ms.unsigned_abs())
                .await,
        )
    }

    async fn banned_until(&self, client: &ClientId) -> Result<Option<i64>, RouterError> {
        let mut con = self.con.clone();
        self.checked(con.get::<_, Option<i64>>(ban_key(client)).await)
    }

    async fn kick_elsewhere(&self, client: &ClientId, room: Option<&RoomId>, reason: &str) {
        let wire = Wire::Kick {
            client: client.clone(),
            room: room.cloned(),
            reason: reason.to_owned(),
        };
        let nodes = match self.nodes().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cluster: could not list the nodes to remove a client from");
                return;
            }
        };
        for n in nodes.iter().filter(|n| **n != self.node_id) {
            if let Err(e) = self.publish(n, &wire).await {
                tracing::warn!(node = %n, error = %e, "cluster: could not remove a client on another node");
            }
        }
    }

    async fn lease(&self, name: &str, ttl: Duration) -> Result<bool, RouterError> {
        let mut con = self.con.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self.checked(
            self.scripts
                .lease
                .key(format!("sm:lease:{name}"))
                .arg(self.node_id.as_str())
                .arg(ttl_ms)
                .invoke_async(&mut con)
                .await,
        )?;
        Ok(held == 1)
    }

    async fn update_member(&self, room: &RoomId, entry: &MemberEntry) -> Result<(), RouterError> {
        let mut con = self.con.clone();
        self.checked(
            self.scripts
                .update
                .key(members_key(room))
                .arg(entry.client.as_str())
                .arg(encode(entry)?)
                .invoke_async::<i64>(&mut con)
                .await,
        )?;
        Ok(())
    }

    async fn in_any_room(&self, client: &ClientId, rooms: &[RoomId]) -> Result<bool, RouterError> {
        if rooms.is_empty() {
            return Ok(false);
        }
        let cmds = rooms
            .iter()
            .map(|r| {
                let mut c = redis::cmd("HEXISTS");
                c.arg(members_key(r)).arg(client.as_str());
                c
            })
            .collect();
        let found: Vec<bool> = self.checked(self.query_all(cmds).await)?;
        Ok(found.into_iter().any(|f| f))
    }

    async fn send_to_nodes(&self, nodes: &[String], msg: NodeMessage) {
        let wire = Wire::Deliver(Box::new(msg));
        let targets: BTreeSet<&String> = nodes.iter().filter(|n| **n != self.node_id).collect();
        for n in targets {
            if let Err(e) = self.publish(n, &wire).await {
                tracing::warn!(node = %n, error = %e, "cluster: could not tell a node");
            }
        }
    }

    async fn members_on(&self, node: &str) -> Result<Vec<(RoomId, ClientId)>, RouterError> {
        let mut con = self.con.clone();
        let items: Vec<String> = self.checked(con.smembers(node_members_key(node)).await)?;
        Ok(items
            .iter()
            .filter_map(|i| {
                let (r, c) = i.split_once('\n')?;
                Some((
                    RoomId::parse(r).ok()?,
                    ClientId::parse("client_id", c).ok()?,
                ))
            })
            .collect())
    }

    async fn restore(
        &self,
        rooms: &[(RoomId, RoomEntry, Vec<MemberEntry>)],
        sessions: &[(ClientId, usize)],
    ) -> Result<(), RouterError> {
        let mut con = self.con.clone();
        for (room, entry, members) in rooms {
            let mut inv = self.scripts.restore_room.prepare_invoke();
            inv.key(meta_key(room))
                .key(members_key(room))
                .arg(encode(entry)?)
                .arg(entry.max_participants);
            for m in members {
                inv.arg(m.client.as_str())
                    .arg(m.role.as_str())
                    .arg(encode(m)?);
            }
            self.checked(inv.invoke_async::<i64>(&mut con).await)?;
            self.checked(con.sadd::<_, _, ()>(ROOMS, room.as_str()).await)?;
            self.index_members(room, &members.iter().collect::<Vec<_>>(), true)
                .await;
        }
        for (client, n) in sessions {
            self.checked(
                self.scripts
                    .restore_presence
                    .key(client_key(client))
                    .arg(&self.node_id)
                    .arg(*n)
                    .invoke_async::<i64>(&mut con)
                    .await,
            )?;
            self.checked(
                con.sadd::<_, _, ()>(node_clients_key(&self.node_id), client.as_str())
                    .await,
            )?;
        }
        Ok(())
    }

    async fn cluster_load(&self) -> Result<Vec<(String, NodeLoad)>, RouterError> {
        let mut con = self.con.clone();
        let cutoff = now_ms() - self.ttl.as_millis() as i64;
        let nodes: Vec<String> = self.checked(con.zrangebyscore(NODES, cutoff, "+inf").await)?;
        let mut out = Vec::with_capacity(nodes.len());
        if let Some(inbox) = self.inbox.read().as_ref().and_then(Weak::upgrade) {
            out.push((self.node_id.clone(), inbox.load()));
        }
        let others: Vec<&String> = nodes.iter().filter(|n| **n != self.node_id).collect();
        if !others.is_empty() {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let id = {
                let mut l = self.loads.lock();
                l.next += 1;
                let id = l.next;
                l.waiting.insert(id, tx);
                id
            };
            let request = Wire::LoadRequest {
                id,
                reply_to: self.node_id.clone(),
            };
            for n in &others {
                let _ = self.publish(n, &request).await;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(800);
            while out.len() < others.len() + 1 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(reply)) => out.push(reply),
                    _ => break,
                }
            }
            self.loads.lock().waiting.remove(&id);
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn nodes(&self) -> Result<Vec<String>, RouterError> {
        let mut con = self.con.clone();
        let cutoff = now_ms() - self.ttl.as_millis() as i64;
        if let Ok(alive) = self.checked(
            con.zrangebyscore::<_, _, _, Vec<String>>(NODES, cutoff, "+inf")
                .await,
        ) {
            let mut set = self.alive.write();
            set.clear();
            set.extend(alive);
            set.insert(self.node_id.clone());
        }
        let mut v: Vec<String> = self.alive.read().iter().cloned().collect();
        v.sort();
        Ok(v)
    }

    fn resumes_across_nodes(&self) -> bool {
        self.resume_on()
    }

    async fn resume_open(
        &self,
        token: &str,
        record: &signal_core::router::ResumeRecord,
        replaces: Option<&str>,
    ) -> Result<(), RouterError> {
        self.r_open(token, record, replaces).await
    }

    async fn resume_close(&self, token: &str, session: &uuid::Uuid) {
        self.r_close(token, session).await;
    }

    async fn resume_record(
        &self,
        token: &str,
    ) -> Result<Option<signal_core::router::ResumeRecord>, RouterError> {
        self.r_record(token).await
    }

    async fn mirror(
        &self,
        session: &uuid::Uuid,
        frames: Vec<signal_core::router::MirroredFrame>,
        oldest: u64,
    ) -> Result<(), RouterError> {
        self.r_mirror(session, frames, oldest).await
    }

    async fn take_over(
        &self,
        token: &str,
        from: &str,
    ) -> Result<Option<signal_core::router::Takeover>, RouterError> {
        self.r_take_over(token, from).await
    }

    async fn resume_release(&self, token: &str) {
        self.r_release(token).await;
    }

    async fn ask_release(&self, node: &str, token: &str) -> Result<bool, RouterError> {
        self.r_ask_release(node, token).await
    }

    async fn inbox_since(
        &self,
        node: &str,
        after: Option<InboxPos>,
    ) -> Result<Vec<(InboxPos, NodeMessage)>, RouterError> {
        self.r_inbox_since(node, after).await
    }

    async fn move_member(
        &self,
        room: &RoomId,
        client: &ClientId,
        from: &str,
    ) -> Result<Option<MemberEntry>, RouterError> {
        self.r_move_member(room, client, from).await
    }

    async fn session_moved(&self, client: &ClientId, from: &str) {
        self.r_session_moved(client, from).await;
        let _ = self.session_opened(client).await;
    }

    async fn resumables_on(
        &self,
        node: &str,
    ) -> Result<Vec<(String, signal_core::router::ResumeRecord)>, RouterError> {
        self.r_resumables_on(node).await
    }

    async fn resume_orphaned(&self, token: &str, rooms: &[RoomId], window: Duration) {
        self.r_orphaned(token, rooms, window).await;
    }

    async fn resume_expire(&self, token: &str, node: &str) -> bool {
        self.r_expire(token, node).await
    }

    async fn posted_sent(&self) {
        self.r_posted_sent().await;
    }

    fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }
}

/// Sends what nodes post, in batches: whatever was posted while the previous batch was on
/// its way goes in the next.
async fn write_out(router: Weak<RedisRouter>, mut posted: tokio::sync::mpsc::Receiver<Posted>) {
    let mut buf = Vec::with_capacity(OUT_BATCH);
    let mut msgs = Vec::with_capacity(OUT_BATCH);
    while posted.recv_many(&mut buf, OUT_BATCH).await > 0 {
        let Some(r) = router.upgrade() else { return };
        for p in buf.drain(..) {
            match p {
                Posted::Message(node, msg) => msgs.push((node, msg)),
                Posted::Barrier(done) => {
                    if !msgs.is_empty() {
                        r.flush(&mut msgs).await;
                    }
                    let _ = done.send(());
                }
            }
        }
        if !msgs.is_empty() {
            r.flush(&mut msgs).await;
        }
    }
}
