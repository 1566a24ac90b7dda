//! The router contract: what every [`Router`] implementation must do, as a suite each
//! implementation runs against itself. `make(node_id)` builds a router for node
//! `node_id`; with `shared`, routers it builds share one backend (a cluster), and the
//! suite also checks what one node sees of another.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use uuid::Uuid;

use super::{
    Inbox, JoinVerdict, LeaveVerdict, MemberEntry, NodeMessage, Recipient, Remote, RoomEntry,
    Router,
};
use crate::{
    hub::{Event, Role, Signal, SignalBody, SignalKind},
    ids::{ClientId, RoomId},
};

/// Runs every check. Ids are fresh per run, so a shared backend may be reused.
pub async fn run<R: Router>(make: impl Fn(&str) -> Arc<R>, shared: bool) {
    node_id(&make).await;
    room_ids_are_claimed_once(&make, shared).await;
    presence_follows_sessions(&make, shared).await;
    delivery(&make, shared).await;
    messages_cross_processes_intact();
    if shared {
        registry(&make).await;
        registry_races(&make).await;
        leases(&make).await;
    }
}

/// A lease is held by one node at a time; its holder keeps it by renewing; it passes to
/// another node once it expires unrenewed.
async fn leases<R: Router>(make: &impl Fn(&str) -> Arc<R>) {
    let (a, b) = (make(&fresh("a")), make(&fresh("b")));
    let name = fresh("lease");
    let ttl = std::time::Duration::from_millis(600);
    assert!(a.lease(&name, ttl).await.unwrap(), "a free lease is taken");
    assert!(
        !b.lease(&name, ttl).await.unwrap(),
        "a held lease is refused"
    );
    assert!(a.lease(&name, ttl).await.unwrap(), "its holder renews it");
    tokio::time::sleep(ttl / 2).await;
    assert!(a.lease(&name, ttl).await.unwrap());
    tokio::time::sleep(ttl / 2).await;
    assert!(
        !b.lease(&name, ttl).await.unwrap(),
        "renewed: still held after the first ttl"
    );
    tokio::time::sleep(ttl + std::time::Duration::from_millis(200)).await;
    assert!(
        b.lease(&name, ttl).await.unwrap(),
        "expired: another node takes it"
    );
    assert!(
        !a.lease(&name, ttl).await.unwrap(),
        "and the former holder is refused"
    );
}

fn member(client: &ClientId, node: &str, role: Role) -> MemberEntry {
    MemberEntry {
        client: client.clone(),
        node: node.to_owned(),
        role,
        metadata: serde_json::json!({"n": node}),
        capabilities: vec!["webrtc".into()],
        display_name: None,
        joined_at: chrono::Utc::now(),
        room_session: Uuid::new_v4(),
        media: None,
    }
}

fn entry(max: usize) -> RoomEntry {
    RoomEntry {
        uuid: Uuid::new_v4(),
        created_at: chrono::Utc::now(),
        max_participants: max,
        metadata: serde_json::json!({"k": "v"}),
        offer_sdp: Some("v=0\r\n".into()),
    }
}

/// The cluster's room registry: one creator per id, the cap, the one sender, and the
/// one leaver told the room ended, whichever node asks.
async fn registry<R: Router>(make: &impl Fn(&str) -> Arc<R>) {
    let (a, b) = (make(&fresh("a")), make(&fresh("b")));
    let room = RoomId::parse(&fresh("room")).unwrap();
    let (alice, bob, carol, dave) = (
        client("alice"),
        client("bob"),
        client("carol"),
        client("dave"),
    );
    let e = entry(3);
    let creator = member(&alice, a.node_id(), Role::Sender);
    assert!(a.create_room(&room, &e, &creator).await.unwrap());
    assert!(
        !b.create_room(&room, &entry(3), &member(&bob, b.node_id(), Role::Sender))
            .await
            .unwrap(),
        "an id taken on one node is taken on every node"
    );
    let (got, members) = b
        .room_entry(&room)
        .await
        .unwrap()
        .expect("another node sees the room");
    assert_eq!(got, e);
    assert_eq!(members, vec![creator.clone()]);
    assert!(b.room_ids().await.unwrap().contains(&room));

    let joins = [
        member(&bob, b.node_id(), Role::Receiver),
        member(&bob, b.node_id(), Role::Receiver),
        member(&carol, b.node_id(), Role::Sender),
        member(&carol, b.node_id(), Role::Receiver),
        member(&dave, b.node_id(), Role::Receiver),
    ];
    let (verdicts, before) = b.join_members(&room, &joins).await.unwrap();
    assert_eq!(
        verdicts,
        [
            JoinVerdict::Joined,
            JoinVerdict::AlreadyIn,
            JoinVerdict::SenderTaken,
            JoinVerdict::Joined,
            JoinVerdict::Full,
        ]
    );
    assert_eq!(
        before,
        vec![creator.clone()],
        "the members before the batch"
    );
    assert!(
        a.in_any_room(&carol, std::slice::from_ref(&room))
            .await
            .unwrap()
    );
    assert!(
        !a.in_any_room(&dave, std::slice::from_ref(&room))
            .await
            .unwrap()
    );
    // A member's entry changes (what it published on the SFU); other nodes read it.
    let mut published = member(&alice, a.node_id(), Role::Sender);
    published.room_session = creator.room_session;
    published.joined_at = creator.joined_at;
    published.media = Some(serde_json::json!([{"session": "s1", "track": "0"}]));
    a.update_member(&room, &published).await.unwrap();
    let (_, members) = b.room_entry(&room).await.unwrap().unwrap();
    let seen = members.iter().find(|m| m.client == alice).unwrap();
    assert_eq!(seen.media, published.media, "a member's media is shared");
    a.update_member(&room, &creator).await.unwrap();
    let stranger = member(&client("stranger"), a.node_id(), Role::Receiver);
    a.update_member(&room, &stranger).await.unwrap();
    let (_, members) = b.room_entry(&room).await.unwrap().unwrap();
    assert!(
        members.iter().all(|m| m.client != stranger.client),
        "updating a member that is not one adds nothing"
    );
    // Many rooms at once (on a Redis Cluster, in different slots).
    let others: Vec<RoomId> = (0..6)
        .map(|_| RoomId::parse(&fresh("elsewhere")).unwrap())
        .collect();
    let mut several = others.clone();
    several.insert(3, room.clone());
    assert!(a.in_any_room(&carol, &several).await.unwrap());
    assert!(!a.in_any_room(&carol, &others).await.unwrap());
    let mut on_b: Vec<String> = a
        .members_on(b.node_id())
        .await
        .unwrap()
        .into_iter()
        .filter(|(r, _)| *r == room)
        .map(|(_, c)| c.to_string())
        .collect();
    on_b.sort();
    let mut want = vec![bob.to_string(), carol.to_string()];
    want.sort();
    assert_eq!(on_b, want, "a node's members are listed for its reaper");

    match a.leave_member(&room, &bob).await.unwrap() {
        LeaveVerdict::Left(m) => assert_eq!(m.client, bob),
        other => panic!("a receiver leaves, the room goes on: {other:?}"),
    }
    assert_eq!(
        a.leave_member(&room, &bob).await.unwrap(),
        LeaveVerdict::NotMember
    );
    match b.leave_member(&room, &alice).await.unwrap() {
        LeaveVerdict::Terminated {
            entry: got,
            member,
            remaining,
            ever_joined,
        } => {
            assert_eq!(got, e);
            assert_eq!(member, creator);
            assert_eq!(
                remaining
                    .iter()
                    .map(|m| m.client.clone())
                    .collect::<Vec<_>>(),
                vec![carol.clone()]
            );
            assert_eq!(ever_joined, 3);
        }
        other => panic!("the sender leaving ends the room: {other:?}"),
    }
    assert_eq!(a.room_entry(&room).await.unwrap(), None);
    assert!(!a.room_ids().await.unwrap().contains(&room));
    assert_eq!(
        a.join_members(&room, &[member(&dave, a.node_id(), Role::Receiver)])
            .await
            .unwrap()
            .0,
        vec![JoinVerdict::NoRoom]
    );
    assert!(
        a.members_on(b.node_id())
            .await
            .unwrap()
            .iter()
            .all(|(r, _)| *r != room),
        "an ended room leaves nothing in the index"
    );
    // The last member leaving ends a room with no sender; a join undone frees its place.
    let open = RoomId::parse(&fresh("room")).unwrap();
    assert!(
        a.create_room(
            &open,
            &entry(2),
            &member(&alice, a.node_id(), Role::Receiver)
        )
        .await
        .unwrap()
    );
    let (v, _) = b
        .join_members(&open, &[member(&bob, b.node_id(), Role::Sender)])
        .await
        .unwrap();
    assert_eq!(v, [JoinVerdict::Joined]);
    b.forget_member(&open, &bob).await;
    let (v, _) = b
        .join_members(&open, &[member(&carol, b.node_id(), Role::Sender)])
        .await
        .unwrap();
    assert_eq!(
        v,
        [JoinVerdict::Joined],
        "a forgotten join frees its place and its role"
    );
    assert!(matches!(
        a.leave_member(&open, &alice).await.unwrap(),
        LeaveVerdict::Left(_)
    ));
    assert!(matches!(
        b.leave_member(&open, &carol).await.unwrap(),
        LeaveVerdict::Terminated { .. }
    ));
}

/// Many nodes joining one room at once: the cap holds, and exactly one leaver ends it.
async fn registry_races<R: Router>(make: &impl Fn(&str) -> Arc<R>) {
    let nodes: Vec<Arc<R>> = (0..4).map(|i| make(&fresh(&format!("n{i}")))).collect();
    let room = RoomId::parse(&fresh("room")).unwrap();
    let creator = client("creator");
    assert!(
        nodes[0]
            .create_room(
                &room,
                &entry(5),
                &member(&creator, nodes[0].node_id(), Role::Receiver)
            )
            .await
            .unwrap()
    );
    let joiners: Vec<(usize, ClientId)> = (0..12).map(|i| (i % 4, client("j"))).collect();
    let verdicts = futures_util::future::join_all(joiners.iter().map(|(n, c)| {
        let r = &nodes[*n];
        let m = member(c, r.node_id(), Role::Receiver);
        let room = &room;
        async move { r.join_members(room, &[m]).await.unwrap().0[0].clone() }
    }))
    .await;
    let joined = verdicts
        .iter()
        .filter(|v| **v == JoinVerdict::Joined)
        .count();
    assert_eq!(
        joined, 4,
        "a cap of 5 admits 4 beside the creator: {verdicts:?}"
    );
    let mut members: Vec<ClientId> = vec![creator];
    members.extend(
        joiners
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == JoinVerdict::Joined)
            .map(|((_, c), _)| c.clone()),
    );
    let outcomes = futures_util::future::join_all(members.iter().enumerate().map(|(i, c)| {
        let r = &nodes[i % 4];
        let room = &room;
        async move { r.leave_member(room, c).await.unwrap() }
    }))
    .await;
    let ended = outcomes
        .iter()
        .filter(|o| matches!(o, LeaveVerdict::Terminated { .. }))
        .count();
    assert_eq!(ended, 1, "exactly one leaver ends the room: {outcomes:?}");
}

fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12])
}

fn client(prefix: &str) -> ClientId {
    ClientId::parse("client_id", &fresh(prefix)).unwrap()
}

async fn node_id<R: Router>(make: &impl Fn(&str) -> Arc<R>) {
    let n = fresh("node");
    assert_eq!(make(&n).node_id(), n, "a router names its node");
}

async fn room_ids_are_claimed_once<R: Router>(make: &impl Fn(&str) -> Arc<R>, shared: bool) {
    let a = make(&fresh("a"));
    let room = RoomId::parse(&fresh("room")).unwrap();
    assert!(a.claim_room(&room).await.unwrap(), "a free id is taken");
    assert!(!a.claim_room(&room).await.unwrap(), "a taken id is refused");
    if shared {
        let b = make(&fresh("b"));
        assert!(
            !b.claim_room(&room).await.unwrap(),
            "a taken id is refused on every node"
        );
    }
    a.release_room(&room).await;
    assert!(
        a.claim_room(&room).await.unwrap(),
        "a released id is free again"
    );
    a.release_room(&room).await;
}

async fn presence_follows_sessions<R: Router>(make: &impl Fn(&str) -> Arc<R>, shared: bool) {
    let a = make(&fresh("a"));
    let c = client("c");
    assert_eq!(a.locate(&c).await, None, "an unknown client is nowhere");
    if !shared {
        // One node: the hub's sessions are the registry; the router keeps none.
        a.session_opened(&c).await.unwrap();
        assert_eq!(a.locate(&c).await, None);
        a.session_closed(&c).await;
        return;
    }
    a.session_opened(&c).await.unwrap();
    a.session_opened(&c).await.unwrap();
    assert_eq!(a.locate(&c).await.as_deref(), Some(a.node_id()));
    let b = make(&fresh("b"));
    assert_eq!(
        b.locate(&c).await.as_deref(),
        Some(a.node_id()),
        "another node finds the client"
    );
    a.session_closed(&c).await;
    assert_eq!(
        a.locate(&c).await.as_deref(),
        Some(a.node_id()),
        "one of two sessions ended: still here"
    );
    a.session_closed(&c).await;
    assert_eq!(a.locate(&c).await, None, "the last session ended");

    // A lost node's clients are forgotten, however many there are (on a Redis Cluster,
    // their presence spans many slots).
    let lost: Vec<ClientId> = (0..8).map(|i| client(&format!("lost{i}"))).collect();
    for c in &lost {
        b.session_opened(c).await.unwrap();
    }
    assert_eq!(a.locate(&lost[7]).await.as_deref(), Some(b.node_id()));
    a.forget_node(b.node_id()).await;
    for c in &lost {
        assert_eq!(a.locate(c).await, None, "{c} was only on the lost node");
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<NodeMessage>>);

impl Inbox for Recorder {
    fn receive(&self, msg: NodeMessage) -> usize {
        self.0.lock().push(msg);
        1
    }
}

fn signal(from: &ClientId, to: &ClientId) -> Event {
    Event::Signal(Signal {
        kind: SignalKind::Offer,
        from: from.clone(),
        target: Some(to.clone()),
        room: None,
        body: SignalBody {
            sdp: Some("v=0\r\n".into()),
            ..SignalBody::default()
        },
    })
}

async fn delivery<R: Router>(make: &impl Fn(&str) -> Arc<R>, shared: bool) {
    let a = make(&fresh("a"));
    let inbox_a = Arc::new(Recorder::default());
    a.attach(Arc::downgrade(&inbox_a) as Weak<dyn Inbox>);
    let (from, to) = (client("from"), client("to"));
    let msg = |to: &ClientId| NodeMessage {
        id: Uuid::new_v4(),
        from_node: a.node_id().to_owned(),
        to: Recipient::Client { client: to.clone() },
        event: signal(&from, to),
        // The sender's frame travels byte for byte, whatever its bytes.
        raw: Some(super::RawFrame {
            format: 3,
            head: bytes::Bytes::from_static(&[0x01, 0x00, 0xff]),
            body: bytes::Bytes::from_static(b"{\"n\": 12345678901234567890123}\x00\xfe"),
            body_only_here: true,
        }),
    };
    assert_eq!(
        a.send(msg(&to)).await,
        Remote::NotFound,
        "a client with no session anywhere is not found"
    );
    a.session_opened(&to).await.unwrap();
    assert_eq!(
        a.send(msg(&to)).await,
        Remote::NotFound,
        "this node's own sessions are not sent through the router"
    );
    let room = RoomId::parse(&fresh("room")).unwrap();
    let to_room = NodeMessage {
        to: Recipient::Room { room, except: None },
        ..msg(&to)
    };
    assert_eq!(
        a.send(to_room).await,
        Remote::NotFound,
        "a room no other node holds members of is not found"
    );
    if shared {
        let b = make(&fresh("b"));
        let sent = NodeMessage {
            from_node: b.node_id().to_owned(),
            ..msg(&to)
        };
        assert_eq!(b.send(sent.clone()).await, Remote::Delivered);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while inbox_a.0.lock().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let got = inbox_a.0.lock().clone();
        assert_eq!(got, vec![sent], "the holding node receives it, intact");
        inbox_a.0.lock().clear();

        // Posted messages arrive, all of them and in the order posted.
        let posted: Vec<NodeMessage> = (0..300)
            .map(|_| NodeMessage {
                from_node: b.node_id().to_owned(),
                ..msg(&to)
            })
            .collect();
        for m in &posted {
            b.post(a.node_id(), m.clone()).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while inbox_a.0.lock().len() < posted.len() && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let got = inbox_a.0.lock().clone();
        assert_eq!(got.len(), posted.len(), "every posted message arrives");
        assert!(got == posted, "posted messages arrive in order, intact");
    } else {
        assert!(inbox_a.0.lock().is_empty());
    }
    a.session_closed(&to).await;
}

/// A message survives serialisation as any router would carry it.
fn messages_cross_processes_intact() {
    let (from, to) = (client("from"), client("to"));
    let mut body = SignalBody {
        candidate: Some(serde_json::json!({"candidate": "candidate:1 1 UDP 1 1.2.3.4 5 typ host"})),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        ..SignalBody::default()
    };
    body.extra
        .insert("x".into(), serde_json::json!([1, {"y": null}]));
    let msg = NodeMessage {
        id: Uuid::new_v4(),
        from_node: "n".into(),
        to: Recipient::Room {
            room: RoomId::parse("r-1").unwrap(),
            except: Some(from.clone()),
        },
        event: Event::Signal(Signal {
            kind: SignalKind::IceCandidate,
            from,
            target: Some(to),
            room: Some(RoomId::parse("r-1").unwrap()),
            body,
        }),
        raw: None,
    };
    let text = serde_json::to_string(&msg).unwrap();
    let back: NodeMessage = serde_json::from_str(&text).unwrap();
    assert_eq!(back, msg);
    let bad = text.replace("r-1", "bad id with spaces");
    assert!(
        serde_json::from_str::<NodeMessage>(&bad).is_err(),
        "ids are validated when read back"
    );
}
