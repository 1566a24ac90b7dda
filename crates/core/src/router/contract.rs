//! The router contract: what every [`Router`] implementation must do, as a suite each
//! implementation runs against itself. `make(node_id)` builds a router for node
//! `node_id`; with `shared`, routers it builds share one backend (a cluster), and the
//! suite also checks what one node sees of another.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use uuid::Uuid;

use super::{Inbox, NodeMessage, Recipient, Remote, Router};
use crate::{
    hub::{Event, Signal, SignalBody, SignalKind},
    ids::{ClientId, RoomId},
};

/// Runs every check. Ids are fresh per run, so a shared backend may be reused.
pub async fn run<R: Router>(make: impl Fn(&str) -> R, shared: bool) {
    node_id(&make).await;
    room_ids_are_claimed_once(&make, shared).await;
    presence_follows_sessions(&make, shared).await;
    delivery(&make, shared).await;
    messages_cross_processes_intact();
}

fn fresh(prefix: &str) -> String {
    format!("{prefix}-{}", &Uuid::new_v4().simple().to_string()[..12])
}

fn client(prefix: &str) -> ClientId {
    ClientId::parse("client_id", &fresh(prefix)).unwrap()
}

async fn node_id<R: Router>(make: &impl Fn(&str) -> R) {
    let n = fresh("node");
    assert_eq!(make(&n).node_id(), n, "a router names its node");
}

async fn room_ids_are_claimed_once<R: Router>(make: &impl Fn(&str) -> R, shared: bool) {
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

async fn presence_follows_sessions<R: Router>(make: &impl Fn(&str) -> R, shared: bool) {
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

async fn delivery<R: Router>(make: &impl Fn(&str) -> R, shared: bool) {
    let a = make(&fresh("a"));
    let inbox_a = Arc::new(Recorder::default());
    a.attach(Arc::downgrade(&inbox_a) as Weak<dyn Inbox>);
    let (from, to) = (client("from"), client("to"));
    let msg = |to: &ClientId| NodeMessage {
        id: Uuid::new_v4(),
        from_node: a.node_id().to_owned(),
        to: Recipient::Client { client: to.clone() },
        event: signal(&from, to),
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
        let got = inbox_a.0.lock().clone();
        assert_eq!(got, vec![sent], "the holding node receives it, intact");
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
