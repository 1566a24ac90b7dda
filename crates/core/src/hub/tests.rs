//! Hub unit tests over channels and the in-memory store: no sockets, no wire format.

use std::sync::Arc;

use serde_json::json;

use super::*;
use crate::{
    ErrorCode,
    auth::Authenticator,
    events::{Kind, MemoryEvents},
    router::{Inbox, NodeMessage, Recipient, Router},
    store::MemoryStore,
};

static JSON_SPEC: FormatSpec = FormatSpec::new(0, "json");
static CBOR_SPEC: FormatSpec = FormatSpec::new(1, "cbor");
const JSON: Format = Format::of(&JSON_SPEC);
const CBOR: Format = Format::of(&CBOR_SPEC);

fn ports(store: Arc<MemoryStore>) -> Ports {
    let keys = ["alice", "bob", "carol"].map(|k| (k.to_owned(), format!("{k}-token")));
    let auth = Arc::new(Authenticator::new(keys, None, store.clone()));
    Ports::single_node(store, auth)
}

fn hub_with(store: Arc<MemoryStore>, cfg: HubConfig) -> Hub {
    Hub::new(cfg, ports(store))
}

fn creds(id: &str) -> Credentials {
    Credentials {
        version: "1.0.0".into(),
        client_id: id.into(),
        auth_token: format!("{id}-token"),
    }
}

/// A session of a new client: CONNECT, then REGISTER.
async fn connect(hub: &Hub, id: &str, cap: usize) -> (Arc<Session>, Arc<Outbox>) {
    let (s, rx) = reconnect(hub, id, cap).await;
    hub.register(
        &s,
        RegisterParams {
            creds: creds(id),
            room_id: None,
            capabilities: vec![],
            metadata: json!({}),
        },
    )
    .await
    .unwrap();
    (s, rx)
}

/// A session of a client registered before (CONNECT only).
async fn reconnect(hub: &Hub, id: &str, cap: usize) -> (Arc<Session>, Arc<Outbox>) {
    let rx = Outbox::new(cap);
    let s = hub
        .connect(
            ConnectParams {
                client_id: id.into(),
                auth_token: format!("{id}-token"),
                version: Some("1.0.0".into()),
                format: JSON,
                capabilities: vec![],
                metadata: json!({}),
                display_name: None,
                anonymous: false,
                resume: false,
            },
            rx.clone(),
        )
        .await
        .unwrap();
    (s, rx)
}

fn create(id: &str, room: &str) -> CreateRoomParams {
    CreateRoomParams {
        creds: creds(id),
        room_id: Some(room.into()),
        role: None,
        offer_sdp: Some("v=0".into()),
        capabilities: vec![],
        metadata: None,
    }
}

fn join(id: &str, room: &str) -> JoinRoomParams {
    JoinRoomParams {
        creds: creds(id),
        room_id: room.into(),
        role: None,
        capabilities: vec![],
        metadata: None,
    }
}

fn event(rx: &Outbox) -> Arc<Envelope> {
    match rx.try_pop() {
        Some(Outbound::Event(e)) => e,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[tokio::test]
async fn a_store_outage_leaves_nothing_half_done() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub_with(store.clone(), HubConfig::default());
    let (a, _ra) = connect(&hub, "alice", 8).await;
    let (b, rb) = connect(&hub, "bob", 8).await;

    store.set_unavailable(true);
    let e = hub.create_room(&a, create("alice", "r")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert!(
        hub.room_info("r").is_none(),
        "a failed create leaves no room behind"
    );
    assert!(a.rooms().is_empty());

    store.set_unavailable(false);
    hub.create_room(&a, create("alice", "r")).await.unwrap();
    store.set_unavailable(true);
    let e = hub.join_room(&b, join("bob", "r")).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unavailable);
    assert_eq!(
        hub.room_info("r").unwrap().participants.len(),
        1,
        "a failed join adds no member"
    );
    assert!(!b.in_room("r"));
    assert!(rb.try_pop().is_none());

    store.set_unavailable(false);
    hub.join_room(&b, join("bob", "r")).await.unwrap();
    assert_eq!(store.room_members("r").await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_broadcast_is_one_shared_envelope_encoded_once_per_wire() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub_with(store, HubConfig::default());
    let (a, _ra) = connect(&hub, "alice", 8).await;
    let (b, rb) = connect(&hub, "bob", 8).await;
    let (c, rc) = connect(&hub, "carol", 8).await;
    hub.create_room(&a, create("alice", "r")).await.unwrap();
    hub.join_room(&b, join("bob", "r")).await.unwrap();
    hub.join_room(&c, join("carol", "r")).await.unwrap();
    assert!(matches!(event(&rb).event, Event::PeerJoined { .. }));
    hub.leave_room(&a, creds("alice"), "r", None).await.unwrap();
    let x = event(&rb);
    let y = event(&rc);
    assert!(matches!(x.event, Event::RoomClosed { .. }));
    assert!(Arc::ptr_eq(&x, &y), "one envelope for every receiver");
    let mut calls = 0;
    let one = x.encoded(JSON, |_| {
        calls += 1;
        Some(bytes::Bytes::from_static(b"encoded"))
    });
    let two = y.encoded(JSON, |_| {
        calls += 1;
        Some(bytes::Bytes::from_static(b"again"))
    });
    assert_eq!(calls, 1, "encoded once for the wire format");
    assert_eq!(one, two);
    let cbor = y.encoded(CBOR, |_| Some(bytes::Bytes::from_static(b"cbor")));
    assert_eq!(
        cbor.as_deref(),
        Some(&b"cbor"[..]),
        "each wire format has its own encoding"
    );
}

#[tokio::test]
async fn a_full_queue_closes_the_slow_session_only() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub_with(store, HubConfig::default());
    let (a, _ra) = connect(&hub, "alice", 64).await;
    let (b, _rb_never_read) = connect(&hub, "bob", 2).await;
    hub.create_room(&a, create("alice", "r")).await.unwrap();
    hub.join_room(&b, join("bob", "r")).await.unwrap();
    for _ in 0..3 {
        hub.signal(
            &a,
            SignalRequest {
                id: uuid::Uuid::new_v4(),
                kind: SignalKind::Offer,
                target: Some("bob".into()),
                room: Some("r".into()),
                body: SignalBody::default(),
            },
        )
        .await
        .unwrap();
    }
    assert!(b.is_closing());
    let reason = b.closed().await;
    assert!(matches!(reason, CloseReason::SlowConsumer(_)), "{reason:?}");
    assert!(!a.is_closing());
}

#[tokio::test]
async fn a_replaced_session_leaves_its_rooms_before_the_new_one_is_acknowledged() {
    let store = Arc::new(MemoryStore::new());
    let hub = hub_with(store, HubConfig::default());
    let (a, _ra) = connect(&hub, "alice", 8).await;
    let (old_b, _rb) = connect(&hub, "bob", 8).await;
    hub.create_room(&a, create("alice", "r")).await.unwrap();
    hub.join_room(&old_b, join("bob", "r")).await.unwrap();
    let tx = Outbox::new(8);
    let new_b = hub
        .connect(
            ConnectParams {
                client_id: "bob".into(),
                auth_token: "bob-token".into(),
                version: None,
                format: CBOR,
                capabilities: vec![],
                metadata: json!({}),
                display_name: None,
                anonymous: false,
                resume: false,
            },
            tx,
        )
        .await
        .unwrap();
    assert!(old_b.is_closing());
    assert_eq!(
        old_b.closed().await.error().map(|e| e.kind),
        Some(ErrorKind::SessionReplaced)
    );
    hub.join_room(&new_b, join("bob", "r"))
        .await
        .expect("the new session can rejoin at once");
    assert_eq!(hub.stats().sessions, 2);
    hub.disconnect(&old_b, "disconnected", false).await;
    assert_eq!(
        hub.stats().sessions,
        2,
        "the old session's cleanup does not remove the new one"
    );
    assert!(new_b.in_room("r"));
}

/// Alice creates room `r`, Bob joins, Bob drops, Alice leaves (the room ends).
async fn room_life(hub: &Hub) {
    let (a, _ra) = connect(hub, "alice", 8).await;
    let (b, _rb) = connect(hub, "bob", 8).await;
    hub.create_room(&a, create("alice", "r")).await.unwrap();
    hub.join_room(&b, join("bob", "r")).await.unwrap();
    hub.disconnect(&b, "disconnected", false).await;
    hub.disconnect(&a, "left", true).await;
}

#[tokio::test]
async fn every_lifecycle_step_is_published_in_order() {
    let store = Arc::new(MemoryStore::new());
    let log = MemoryEvents::new();
    let hub = Hub::new(
        HubConfig::default(),
        Ports {
            events: Arc::new(log.clone()),
            ..ports(store.clone())
        },
    );
    room_life(&hub).await;
    let recorded = store.pending_events(100).await.unwrap();
    let steps: Vec<(Kind, Option<String>, Option<String>)> = recorded
        .clone()
        .into_iter()
        .map(|e| {
            (
                e.kind,
                e.client_id.map(|c| c.to_string()),
                e.room_id.map(|r| r.to_string()),
            )
        })
        .collect();
    let step = |k, c: &str, r: Option<&str>| (k, Some(c.to_owned()), r.map(str::to_owned));
    assert_eq!(
        steps,
        [
            step(Kind::SessionConnected, "alice", None),
            step(Kind::ClientRegistered, "alice", None),
            step(Kind::SessionConnected, "bob", None),
            step(Kind::ClientRegistered, "bob", None),
            step(Kind::RoomCreated, "alice", Some("r")),
            step(Kind::MemberJoined, "alice", Some("r")),
            step(Kind::MemberJoined, "bob", Some("r")),
            step(Kind::MemberLeft, "bob", Some("r")),
            step(Kind::SessionDisconnected, "bob", None),
            step(Kind::MemberLeft, "alice", Some("r")),
            step(Kind::RoomTerminated, "alice", Some("r")),
            step(Kind::SessionDisconnected, "alice", None),
        ]
    );
    let last = recorded;
    assert_eq!(
        last.iter().filter_map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6],
        "the room's events are numbered in order"
    );
    let terminated = last
        .iter()
        .find(|e| e.kind == Kind::RoomTerminated)
        .unwrap();
    assert_eq!(terminated.data["participant_count"], 2, "{terminated:?}");
    assert!(last.iter().all(|e| e.node_id == "local"));
}

/// A router standing for a cluster: records what the hub sends other nodes, and says a
/// client named `elsewhere` is on another node; its room registry is an in-memory
/// cluster's.
struct RecordingRouter {
    sent: parking_lot::Mutex<Vec<NodeMessage>>,
    inbox: parking_lot::Mutex<Option<std::sync::Weak<dyn Inbox>>>,
    registry: crate::router::memory::MemoryRouter,
}

impl Default for RecordingRouter {
    fn default() -> Self {
        Self {
            sent: Default::default(),
            inbox: Default::default(),
            registry: crate::router::memory::MemoryCluster::new().node("node-a"),
        }
    }
}

#[async_trait::async_trait]
impl Router for RecordingRouter {
    fn node_id(&self) -> &str {
        "node-a"
    }
    fn attach(&self, inbox: std::sync::Weak<dyn Inbox>) {
        *self.inbox.lock() = Some(inbox);
    }
    async fn session_opened(
        &self,
        _: &ClientId,
    ) -> Result<Vec<String>, crate::router::RouterError> {
        Ok(Vec::new())
    }
    async fn session_closed(&self, _: &ClientId) {}
    async fn locate(&self, c: &ClientId) -> Option<String> {
        (c.as_str() == "elsewhere").then(|| "node-b".to_owned())
    }
    async fn send(&self, msg: NodeMessage) -> crate::router::Remote {
        let found =
            matches!(&msg.to, Recipient::Client { client } if client.as_str() == "elsewhere");
        self.sent.lock().push(msg);
        if found {
            crate::router::Remote::Delivered
        } else {
            crate::router::Remote::NotFound
        }
    }
    fn post(&self, _: &str, msg: NodeMessage) -> Result<(), crate::router::RouterError> {
        self.sent.lock().push(msg);
        Ok(())
    }
    async fn claim_room(&self, _: &RoomId) -> Result<bool, crate::router::RouterError> {
        Ok(true)
    }
    async fn release_room(&self, _: &RoomId) {}
    async fn create_room(
        &self,
        room: &RoomId,
        entry: &crate::router::RoomEntry,
        creator: &crate::router::MemberEntry,
    ) -> Result<bool, crate::router::RouterError> {
        self.registry.create_room(room, entry, creator).await
    }
    async fn room_entry(
        &self,
        room: &RoomId,
    ) -> Result<
        Option<(crate::router::RoomEntry, Vec<crate::router::MemberEntry>)>,
        crate::router::RouterError,
    > {
        self.registry.room_entry(room).await
    }
    async fn join_members(
        &self,
        room: &RoomId,
        joins: &[crate::router::MemberEntry],
    ) -> Result<
        (
            Vec<crate::router::JoinVerdict>,
            Vec<crate::router::MemberEntry>,
        ),
        crate::router::RouterError,
    > {
        self.registry.join_members(room, joins).await
    }
    async fn leave_member(
        &self,
        room: &RoomId,
        client: &ClientId,
    ) -> Result<crate::router::LeaveVerdict, crate::router::RouterError> {
        self.registry.leave_member(room, client).await
    }
}

fn clustered(cfg: HubConfig) -> (Hub, Arc<RecordingRouter>) {
    let router = Arc::new(RecordingRouter::default());
    let hub = Hub::new(
        cfg,
        Ports {
            router: router.clone(),
            ..ports(Arc::new(MemoryStore::new()))
        },
    );
    (hub, router)
}

fn offer(target: &str, room: Option<&str>) -> SignalRequest {
    SignalRequest {
        id: uuid::Uuid::new_v4(),
        kind: SignalKind::Offer,
        target: Some(target.into()),
        room: room.map(str::to_owned),
        body: SignalBody {
            sdp: Some("v=0".into()),
            ..SignalBody::default()
        },
    }
}

#[tokio::test]
async fn a_target_on_no_session_here_goes_to_the_router() {
    let (hub, router) = clustered(HubConfig {
        require_shared_room: false,
        ..HubConfig::default()
    });
    let (a, _ra) = connect(&hub, "alice", 8).await;
    let req = offer("elsewhere", None);
    let id = req.id;
    hub.signal(&a, req).await.unwrap();
    let e = hub.signal(&a, offer("nowhere", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PeerNotFound, "{e:?}");
    let sent = router.sent.lock().clone();
    assert_eq!(sent.len(), 1, "a client no node holds is sent nowhere");
    assert_eq!(sent[0].id, id, "the frame id is kept end to end");
    assert_eq!(sent[0].from_node, "node-a");
    match &sent[0].event {
        Event::Signal(s) => {
            assert_eq!(s.from.as_str(), "alice", "stamped with the sender");
            assert_eq!(s.body.sdp.as_deref(), Some("v=0"));
        }
        other => panic!("not a signal: {other:?}"),
    }
}

#[tokio::test]
async fn room_events_go_to_the_other_nodes_too() {
    let (hub, router) = clustered(HubConfig::default());
    room_life(&hub).await;
    let sent: Vec<(String, Option<String>)> = router
        .sent
        .lock()
        .iter()
        .map(|m| match (&m.to, &m.event) {
            (Recipient::Room { room, except }, e) => {
                assert_eq!(room.as_str(), "r");
                let kind = match e {
                    Event::PeerJoined { .. } => "peer_joined",
                    Event::PeerLeft { .. } => "peer_left",
                    Event::RoomClosed { .. } => "room_closed",
                    Event::Signal(_) => "signal",
                    Event::PeerReconnecting { .. } => "peer_reconnecting",
                    Event::MediaPublished { .. } => "media_published",
                    Event::CredentialExpiring { .. } => "credential_expiring",
                };
                (kind.to_owned(), except.as_ref().map(|c| c.to_string()))
            }
            (to, _) => panic!("not for a room: {to:?}"),
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("peer_joined".to_owned(), Some("bob".to_owned())),
            ("peer_left".to_owned(), Some("bob".to_owned())),
        ],
        "a room that ends with no member on another node tells no other node"
    );
}

/// Two hubs as two nodes of one in-memory cluster.
fn two_nodes(
    cfg: HubConfig,
) -> (
    Hub,
    Hub,
    Arc<MemoryStore>,
    crate::router::memory::MemoryCluster,
) {
    let cluster = crate::router::memory::MemoryCluster::new();
    let store = Arc::new(MemoryStore::new());
    let node = |id: &str| {
        Hub::new(
            cfg.clone(),
            Ports {
                router: Arc::new(cluster.node(id)),
                ..ports(store.clone())
            },
        )
    };
    (node("a"), node("b"), store, cluster)
}

#[tokio::test]
async fn a_room_spans_nodes() {
    let (a, b, store, _cluster) = two_nodes(HubConfig::default());
    let (alice, ra) = connect(&a, "alice", 16).await;
    let (bob, rb) = connect(&b, "bob", 16).await;
    let (carol, rc) = connect(&b, "carol", 16).await;
    a.create_room(&alice, create("alice", "r")).await.unwrap();
    let e = b.create_room(&bob, create("bob", "r")).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::RoomExists, "ids are unique across nodes");
    let joined = b.join_room(&bob, join("bob", "r")).await.unwrap();
    assert_eq!(
        joined
            .participants
            .iter()
            .map(|p| p.client_id.as_str())
            .collect::<Vec<_>>(),
        ["alice"],
        "a joiner sees members on other nodes"
    );
    assert!(
        matches!(event(&ra).event, Event::PeerJoined { ref client, .. } if client.as_str() == "bob")
    );
    b.join_room(&carol, join("carol", "r")).await.unwrap();
    assert!(
        matches!(event(&ra).event, Event::PeerJoined { ref client, .. } if client.as_str() == "carol")
    );
    assert!(
        matches!(event(&rb).event, Event::PeerJoined { ref client, .. } if client.as_str() == "carol")
    );
    let info = a.cluster_room("r").await.unwrap();
    assert_eq!(
        info.participants.len(),
        3,
        "every node's members are listed"
    );

    // Signals cross nodes, by target and to the room.
    a.signal(&alice, offer("bob", Some("r"))).await.unwrap();
    assert!(matches!(event(&rb).event, Event::Signal(ref s) if s.from.as_str() == "alice"));
    let e = a
        .signal(&alice, offer("dave", Some("r")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::PeerNotFound);

    // The sender on node a leaves: the room ends on node b too, recorded once.
    a.leave_room(&alice, creds("alice"), "r", None)
        .await
        .unwrap();
    for rx in [&rb, &rc] {
        assert!(matches!(event(rx).event, Event::RoomClosed { .. }));
    }
    assert!(!bob.in_room("r") && !carol.in_room("r"));
    assert!(b.room_info("r").is_none(), "node b's replica is gone");
    assert_eq!(store.terminated_rooms("r").await.unwrap().len(), 1);
    assert_eq!(
        store.member_history("r").await.unwrap().len(),
        3,
        "every member's history, once"
    );
}

/// The members elsewhere each node knows, by client id.
fn known_elsewhere(hub: &Hub, room: &str) -> Vec<(String, String)> {
    let Some(r) = hub.room(room) else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = r
        .state
        .read()
        .remote
        .iter()
        .map(|(c, m)| (c.to_string(), m.node.to_string()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn each_node_knows_where_the_members_elsewhere_are() {
    let (a, b, _store, _cluster) = two_nodes(HubConfig::default());
    let (alice, _ra) = connect(&a, "alice", 16).await;
    let (bob, rb) = connect(&b, "bob", 16).await;
    let (carol, rc) = connect(&b, "carol", 16).await;
    a.create_room(&alice, create("alice", "r")).await.unwrap();
    b.join_room(&bob, join("bob", "r")).await.unwrap();
    b.join_room(&carol, join("carol", "r")).await.unwrap();
    assert!(matches!(event(&rb).event, Event::PeerJoined { .. }));
    let pair = |c: &str, n: &str| (c.to_owned(), n.to_owned());
    assert_eq!(
        known_elsewhere(&a, "r"),
        [pair("bob", "b"), pair("carol", "b")],
        "from PEER_JOINED"
    );
    assert_eq!(
        known_elsewhere(&b, "r"),
        [pair("alice", "a")],
        "from the members before the join"
    );
    // Straight to the node, with and without the room named.
    a.signal(&alice, offer("bob", Some("r"))).await.unwrap();
    assert!(matches!(event(&rb).event, Event::Signal(ref s) if s.from.as_str() == "alice"));
    a.signal(&alice, offer("carol", None)).await.unwrap();
    assert!(matches!(event(&rc).event, Event::Signal(ref s) if s.from.as_str() == "alice"));
    // A member that left is forgotten, and refused as before.
    b.leave_room(&bob, creds("bob"), "r", None).await.unwrap();
    assert_eq!(known_elsewhere(&a, "r"), [pair("carol", "b")]);
    let e = a.signal(&alice, offer("bob", Some("r"))).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PeerNotFound, "{e:?}");
    let e = a.signal(&alice, offer("bob", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NoSharedRoom, "{e:?}");
}

#[tokio::test]
async fn without_rooms_a_node_remembers_where_a_client_is_until_told_otherwise() {
    let cfg = HubConfig {
        require_shared_room: false,
        ..HubConfig::default()
    };
    let cluster = crate::router::memory::MemoryCluster::new();
    let store = Arc::new(MemoryStore::new());
    let node = |id: &str| {
        Hub::new(
            cfg.clone(),
            Ports {
                router: Arc::new(cluster.node(id)),
                ..ports(store.clone())
            },
        )
    };
    let (a, b, c) = (node("a"), node("b"), node("c"));
    let (alice, _ra) = connect(&a, "alice", 16).await;
    let (bob, rb) = connect(&b, "bob", 16).await;
    a.signal(&alice, offer("bob", None)).await.unwrap();
    assert!(matches!(event(&rb).event, Event::Signal(_)));
    let known = |h: &Hub| h.inner.located.get("bob").map(|n| n.to_string());
    assert_eq!(
        known(&a).as_deref(),
        Some("b"),
        "found once in the registry"
    );
    // Bob moves to node c: node b tells node a it holds him no more, and node a finds
    // him again.
    b.disconnect(&bob, "gone", true).await;
    let (bob2, rb2) = reconnect(&c, "bob", 16).await;
    a.signal(&alice, offer("bob", None)).await.unwrap();
    assert_eq!(known(&a), None, "node b said bob is not there");
    a.signal(&alice, offer("bob", None)).await.unwrap();
    assert!(matches!(event(&rb2).event, Event::Signal(_)));
    assert_eq!(known(&a).as_deref(), Some("c"));
    // A client no node holds any more is refused again.
    c.disconnect(&bob2, "gone", true).await;
    a.signal(&alice, offer("bob", None)).await.unwrap();
    let e = a.signal(&alice, offer("bob", None)).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::PeerNotFound, "{e:?}");
}

#[tokio::test]
async fn a_lost_nodes_members_leave_their_rooms() {
    let (a, b, store, cluster) = two_nodes(HubConfig::default());
    let (alice, ra) = connect(&a, "alice", 16).await;
    let (bob, _rb) = connect(&b, "bob", 16).await;
    a.create_room(&alice, create("alice", "r")).await.unwrap();
    b.join_room(&bob, join("bob", "r")).await.unwrap();
    let _ = event(&ra);
    cluster.lose("b", "a");
    let mut left = None;
    for _ in 0..100 {
        if let Some(o) = ra.try_pop() {
            left = Some(o);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let Some(Outbound::Event(left)) = left else {
        panic!("alice hears bob left");
    };
    assert!(
        matches!(left.event, Event::PeerLeft { ref client, ref reason, .. } if client.as_str() == "bob" && reason == "node lost"),
        "{left:?}"
    );
    assert_eq!(a.cluster_room("r").await.unwrap().participants.len(), 1);
    assert_eq!(
        store.member_history("r").await.unwrap().len(),
        1,
        "the lost member's leave is recorded"
    );
}

#[tokio::test]
async fn a_newer_session_on_another_node_replaces_the_older() {
    let (a, b, _store, _cluster) = two_nodes(HubConfig::default());
    let (old, _ro) = connect(&a, "alice", 16).await;
    let (x, _rx) = connect(&a, "carol", 16).await;
    a.create_room(&x, create("carol", "r")).await.unwrap();
    a.join_room(&old, join("alice", "r")).await.unwrap();
    let rn = Outbox::new(16);
    let _new = b
        .connect(
            ConnectParams {
                client_id: "alice".into(),
                auth_token: "alice-token".into(),
                version: None,
                format: JSON,
                capabilities: vec![],
                metadata: json!({}),
                display_name: None,
                anonymous: false,
                resume: false,
            },
            rn,
        )
        .await
        .unwrap();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(5), old.closed())
        .await
        .expect("the older session is closed");
    assert_eq!(
        closed.error().map(|e| e.kind),
        Some(ErrorKind::SessionReplaced)
    );
    assert!(!old.in_room("r"), "the replaced session left its rooms");
}

#[tokio::test]
async fn messages_from_other_nodes_reach_this_nodes_sessions() {
    let (hub, router) = clustered(HubConfig::default());
    let (a, _ra) = connect(&hub, "alice", 8).await;
    let (b, rb) = connect(&hub, "bob", 8).await;
    let (_c, rc) = connect(&hub, "carol", 8).await;
    hub.create_room(&a, create("alice", "r")).await.unwrap();
    hub.join_room(&b, join("bob", "r")).await.unwrap();
    while rb.try_pop().is_some() {}
    let inbox = router.inbox.lock().clone().unwrap().upgrade().unwrap();
    let from = ClientId::parse("from", "dave").unwrap();
    let signal = Event::Signal(Signal {
        kind: SignalKind::Answer,
        from: from.clone(),
        target: Some(ClientId::parse("to", "bob").unwrap()),
        room: None,
        body: SignalBody::default(),
    });
    let id = uuid::Uuid::new_v4();
    let n = inbox.receive(NodeMessage {
        id,
        from_node: "node-b".into(),
        to: Recipient::Client {
            client: ClientId::parse("to", "bob").unwrap(),
        },
        event: signal.clone(),
        raw: None,
    });
    assert_eq!(n, 1);
    let got = event(&rb);
    assert_eq!((got.id, &got.event), (id, &signal));
    let joined = Event::PeerJoined {
        room: RoomId::parse("r").unwrap(),
        client: from,
        role: Role::Receiver,
        metadata: json!({}),
    };
    let n = inbox.receive(NodeMessage {
        id: uuid::Uuid::new_v4(),
        from_node: "node-b".into(),
        to: Recipient::Room {
            room: RoomId::parse("r").unwrap(),
            except: Some(ClientId::parse("x", "alice").unwrap()),
        },
        event: joined.clone(),
        raw: None,
    });
    assert_eq!(
        n, 1,
        "bob only: alice is excepted, carol is not in the room"
    );
    assert_eq!(event(&rb).event, joined);
    assert!(rc.try_pop().is_none());
}
