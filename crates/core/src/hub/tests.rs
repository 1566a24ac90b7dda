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

async fn connect(hub: &Hub, id: &str, cap: usize) -> (Arc<Session>, Arc<Outbox>) {
    let rx = Outbox::new(cap);
    let tx = rx.clone();
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
            },
            tx,
        )
        .await
        .unwrap();
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
    let steps: Vec<(Kind, Option<String>, Option<String>)> = log
        .events()
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
    let last = log.events();
    let terminated = last
        .iter()
        .find(|e| e.kind == Kind::RoomTerminated)
        .unwrap();
    assert_eq!(terminated.data["participant_count"], 2, "{terminated:?}");
    assert!(last.iter().all(|e| e.node_id == "local"));
}

/// A router standing for a cluster: records what the hub sends other nodes, and says a
/// client named `elsewhere` is on another node.
#[derive(Default)]
struct RecordingRouter {
    sent: parking_lot::Mutex<Vec<NodeMessage>>,
    inbox: parking_lot::Mutex<Option<std::sync::Weak<dyn Inbox>>>,
}

#[async_trait::async_trait]
impl Router for RecordingRouter {
    fn node_id(&self) -> &str {
        "node-a"
    }
    fn attach(&self, inbox: std::sync::Weak<dyn Inbox>) {
        *self.inbox.lock() = Some(inbox);
    }
    async fn session_opened(&self, _: &ClientId) -> Result<(), crate::router::RouterError> {
        Ok(())
    }
    async fn session_closed(&self, _: &ClientId) {}
    async fn locate(&self, _: &ClientId) -> Option<String> {
        None
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
    async fn claim_room(&self, _: &RoomId) -> Result<bool, crate::router::RouterError> {
        Ok(true)
    }
    async fn release_room(&self, _: &RoomId) {}
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
    assert_eq!(sent.len(), 2);
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
            ("room_closed".to_owned(), None),
        ]
    );
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
    });
    assert_eq!(
        n, 1,
        "bob only: alice is excepted, carol is not in the room"
    );
    assert_eq!(event(&rb).event, joined);
    assert!(rc.try_pop().is_none());
}
