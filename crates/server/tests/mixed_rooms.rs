//! Every dialect in one room: a binary client, an altair peer, a simple peer and a
//! room-path peer. Joins and leaves reach each member in its own shape; offers, answers
//! and candidates cross between every pair of dialects with the true sender's id and
//! payload fields a browser can use.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{JsonClient, TestServer, WAIT, jwt};
use serde_json::{Value, json};
use signal_client::{
    Client, decode,
    protocol::{
        MessageType,
        payload::{PeerJoined, PeerLeft, SignalPayload},
    },
};

const ROOM: &str = "mixed-room";
const QUIET: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Offer,
    Answer,
    Candidate,
}

const KINDS: [Kind; 3] = [Kind::Offer, Kind::Answer, Kind::Candidate];

enum Peer {
    Binary(Client),
    Altair(JsonClient),
    Simple(JsonClient),
    RoomPath(JsonClient),
}

struct Member {
    id: &'static str,
    peer: Peer,
}

/// A signal as a receiver saw it, in dialect-neutral terms.
#[derive(Debug)]
struct Got {
    from: String,
    target: Option<String>,
    payload: Value,
}

fn sdp(tag: &str) -> String {
    format!("v=0\r\no=- {tag} 2 IN IP4 127.0.0.1\r\n")
}

fn cand(tag: &str) -> String {
    format!("candidate:{tag} 1 UDP 2122260223 10.0.0.1 5000 typ host")
}

impl Member {
    fn dialect(&self) -> &'static str {
        match self.peer {
            Peer::Binary(_) => "binary",
            Peer::Altair(_) => "altair",
            Peer::Simple(_) => "simple",
            Peer::RoomPath(_) => "room-path",
        }
    }

    /// Sends a signal the way a client of this dialect would; `None` targets the rest
    /// of the room (not possible in binary or altair).
    async fn send(&mut self, kind: Kind, target: Option<&str>, tag: &str) {
        let id = self.id;
        match &mut self.peer {
            Peer::Binary(c) => {
                let t = target.expect("binary signals name a target");
                match kind {
                    Kind::Offer => c.send_offer(t, Some(ROOM), &sdp(tag)).await,
                    Kind::Answer => c.send_answer(t, Some(ROOM), &sdp(tag)).await,
                    Kind::Candidate => {
                        c.send_candidate(t, Some(ROOM), &cand(tag), Some("0"), Some(0))
                            .await
                    }
                }
                .unwrap();
            }
            Peer::Altair(c) => {
                let (t, payload) = match kind {
                    Kind::Offer => ("OFFER", json!({"sdp": sdp(tag), "session_id": tag})),
                    Kind::Answer => ("ANSWER", json!({"sdp": sdp(tag), "accepted": true})),
                    Kind::Candidate => (
                        "CANDIDATE",
                        json!({"candidate": cand(tag), "sdpMid": "0", "sdpMLineIndex": 0}),
                    ),
                };
                c.send(&json!({"type": t, "target_id": target.expect("altair signals name a target"), "payload": payload}))
                    .await;
            }
            Peer::Simple(c) => {
                let (t, payload) = match kind {
                    Kind::Offer => ("offer", json!({"type": "offer", "sdp": sdp(tag)})),
                    Kind::Answer => ("answer", json!({"type": "answer", "sdp": sdp(tag)})),
                    // `{candidate: event.candidate}`: the browser's object, nested.
                    Kind::Candidate => (
                        "candidate",
                        json!({"candidate": {"candidate": cand(tag), "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": "uf"}}),
                    ),
                };
                let mut m = json!({"type": t, "room": ROOM, "sender": id, "payload": payload});
                if let Some(r) = target {
                    m["recipient"] = json!(r);
                }
                c.send(&m).await;
            }
            Peer::RoomPath(c) => {
                let (t, mut payload) = match kind {
                    Kind::Offer => ("offer", json!({"type": "offer", "sdp": sdp(tag)})),
                    Kind::Answer => ("answer", json!({"type": "answer", "sdp": sdp(tag)})),
                    // Seed 004's own candidate shape.
                    Kind::Candidate => (
                        "ice_candidate",
                        json!({"candidate": cand(tag), "sdp_mid": "0", "sdp_m_line_index": 0}),
                    ),
                };
                if let Some(r) = target {
                    payload["target_user_id"] = json!(r);
                }
                c.send(&json!({"type": t, "payload": payload, "room_id": ROOM}))
                    .await;
            }
        }
    }

    /// Receives the next signal of `kind`.
    async fn recv(&mut self, kind: Kind) -> Got {
        match &mut self.peer {
            Peer::Binary(c) => {
                let t = match kind {
                    Kind::Offer => MessageType::SignalOffer,
                    Kind::Answer => MessageType::SignalAnswer,
                    Kind::Candidate => MessageType::SignalIceCandidate,
                };
                let f = c.expect_event(t, WAIT).await.unwrap();
                let p: SignalPayload = decode(&f).unwrap();
                let mut payload = serde_json::to_value(&p).unwrap();
                payload.as_object_mut().unwrap().remove("from_client_id");
                Got {
                    from: p.from_client_id.unwrap(),
                    target: p.target_client_id,
                    payload,
                }
            }
            Peer::Altair(c) => {
                let t = match kind {
                    Kind::Offer => "OFFER",
                    Kind::Answer => "ANSWER",
                    Kind::Candidate => "CANDIDATE",
                };
                let v = c.recv_type(t).await;
                assert_eq!(v["room_id"], ROOM, "{v}");
                assert!(v["timestamp"].is_i64(), "{v}");
                Got {
                    from: v["peer_id"].as_str().unwrap().into(),
                    target: v["target_id"].as_str().map(str::to_owned),
                    payload: v["payload"].clone(),
                }
            }
            Peer::Simple(c) => {
                let t = match kind {
                    Kind::Offer => "offer",
                    Kind::Answer => "answer",
                    Kind::Candidate => "candidate",
                };
                let v = c.recv_type(t).await;
                assert_eq!(v["room"], ROOM, "{v}");
                Got {
                    from: v["sender"].as_str().unwrap().into(),
                    target: v["recipient"].as_str().map(str::to_owned),
                    payload: v["payload"].clone(),
                }
            }
            Peer::RoomPath(c) => {
                let t = match kind {
                    Kind::Offer => "offer",
                    Kind::Answer => "answer",
                    Kind::Candidate => "ice_candidate",
                };
                let v = c.recv_type(t).await;
                assert_eq!(v["room_id"], ROOM, "{v}");
                assert!(v["timestamp"].is_string(), "{v}");
                Got {
                    from: v["sender_id"].as_str().unwrap().into(),
                    target: v["payload"]["target_user_id"].as_str().map(str::to_owned),
                    payload: v["payload"].clone(),
                }
            }
        }
    }

    /// Checks a received signal's payload in this member's dialect.
    fn check(&self, got: &Got, kind: Kind, tag: &str, ctx: &str) {
        let p = &got.payload;
        match kind {
            Kind::Offer | Kind::Answer => {
                assert_eq!(p["sdp"], sdp(tag), "{ctx}: {p}");
                if !matches!(self.peer, Peer::Binary(_)) {
                    let t = if kind == Kind::Offer {
                        "offer"
                    } else {
                        "answer"
                    };
                    assert_eq!(p["type"], t, "{ctx}: setRemoteDescription needs type: {p}");
                }
            }
            Kind::Candidate => {
                assert_eq!(p["candidate"], cand(tag), "{ctx}: {p}");
                assert_eq!(p["sdp_mid"], "0", "{ctx}: {p}");
                assert_eq!(p["sdp_m_line_index"], 0, "{ctx}: {p}");
                if !matches!(self.peer, Peer::Binary(_)) {
                    assert_eq!(p["sdpMid"], "0", "{ctx}: addIceCandidate needs sdpMid: {p}");
                    assert_eq!(p["sdpMLineIndex"], 0, "{ctx}: {p}");
                }
            }
        }
        for routing in ["target_user_id", "from_client_id"] {
            if routing == "target_user_id" && matches!(self.peer, Peer::RoomPath(_)) {
                continue;
            }
            assert!(p.get(routing).is_none(), "{ctx}: {routing} leaked: {p}");
        }
    }
}

/// What a member saw of another's arrival or departure: (who, joined?).
async fn membership(m: &mut Member) -> (String, bool) {
    match &mut m.peer {
        Peer::Binary(c) => loop {
            let f = c.next_event_within(WAIT).await.unwrap();
            match f.msg_type {
                MessageType::PeerJoined => {
                    return (decode::<PeerJoined>(&f).unwrap().client_id, true);
                }
                MessageType::PeerLeft => {
                    return (decode::<PeerLeft>(&f).unwrap().client_id, false);
                }
                _ => {}
            }
        },
        Peer::Altair(c) => loop {
            let v = c.recv().await;
            match v["type"].as_str() {
                Some("PEER_JOINED") => {
                    assert_eq!(v["payload"]["peer_id"], v["peer_id"]);
                    return (v["peer_id"].as_str().unwrap().into(), true);
                }
                Some("PEER_LEFT") => return (v["peer_id"].as_str().unwrap().into(), false),
                _ => {}
            }
        },
        Peer::Simple(c) => loop {
            let v = c.recv().await;
            match v["type"].as_str() {
                Some("join") => return (v["sender"].as_str().unwrap().into(), true),
                Some("leave") => return (v["sender"].as_str().unwrap().into(), false),
                _ => {}
            }
        },
        Peer::RoomPath(c) => loop {
            let v = c.recv().await;
            assert_eq!(v["sender_id"], "server");
            match v["type"].as_str() {
                Some("user_joined") => {
                    return (v["payload"]["user_id"].as_str().unwrap().into(), true);
                }
                Some("user_left") => {
                    return (v["payload"]["user_id"].as_str().unwrap().into(), false);
                }
                _ => {}
            }
        },
    }
}

/// Alice (binary, the room's creator), Bob (altair), Carol (simple), Dave (room-path),
/// joined in that order, each join checked at every earlier member.
async fn four_dialects(s: &TestServer) -> Vec<Member> {
    let alice = s.registered("alice").await;
    alice
        .create_room("alice-token", Some(ROOM), None)
        .await
        .unwrap();
    let mut members = vec![Member {
        id: "alice",
        peer: Peer::Binary(alice),
    }];

    let mut bob = s.json("/ws?token=bob-token").await;
    bob.send(&json!({"type": "JOIN", "room_id": ROOM, "payload": {"display_name": "Bob"}, "request_id": "b"}))
        .await;
    let ack = bob.recv().await;
    assert_eq!(ack["type"], "ACK");
    let peers: Vec<&str> = ack["payload"]["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap())
        .collect();
    assert_eq!(peers, ["alice"]);
    if let Peer::Binary(a) = &mut members[0].peer {
        let f = a.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
        let pj: PeerJoined = decode(&f).unwrap();
        assert_eq!(pj.client_id, "bob");
        assert_eq!(pj.room_id, ROOM);
        assert_eq!(pj.metadata["display_name"], "Bob");
    }
    members.push(Member {
        id: "bob",
        peer: Peer::Altair(bob),
    });

    let mut carol = s.json("/ws?token=carol-token").await;
    carol
        .send(&json!({"type": "join", "room": ROOM, "sender": "carol"}))
        .await;
    let joined = carol.recv().await;
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["payload"]["peers"], json!(["alice", "bob"]));
    for m in members.iter_mut() {
        assert_eq!(
            membership(m).await,
            ("carol".into(), true),
            "{}",
            m.dialect()
        );
    }
    members.push(Member {
        id: "carol",
        peer: Peer::Simple(carol),
    });

    let mut dave = s
        .json(&format!(
            "/webrtc/ws/{ROOM}?token={}",
            jwt("dave", Some("Dave"))
        ))
        .await;
    let st = dave.recv().await;
    assert_eq!(st["type"], "room_state");
    assert_eq!(
        st["payload"]["participants"],
        json!([
            {"user_id": "alice", "username": "alice"},
            {"user_id": "bob", "username": "Bob"},
            {"user_id": "carol", "username": "carol"},
            {"user_id": "dave", "username": "Dave"},
        ])
    );
    assert_eq!(st["payload"]["participant_count"], 4);
    for m in members.iter_mut() {
        assert_eq!(
            membership(m).await,
            ("dave".into(), true),
            "{}",
            m.dialect()
        );
    }
    members.push(Member {
        id: "dave",
        peer: Peer::RoomPath(dave),
    });
    members
}

#[tokio::test]
async fn join_announcements_reach_each_member_in_its_own_shape() {
    let s = TestServer::start().await;
    let mut m = four_dialects(&s).await;
    // The shapes themselves, beyond who joined.
    let Peer::RoomPath(dave) = &mut m[3].peer else {
        unreachable!()
    };
    dave.expect_silence(QUIET).await;
    // A fifth, late altair peer: everyone hears it in their own dialect.
    let mut eve = s
        .json(&format!("/ws?token={}", jwt("eve", Some("Eve"))))
        .await;
    eve.send(&json!({"type": "JOIN", "room_id": ROOM, "request_id": 1}))
        .await;
    let ack = eve.recv().await;
    assert_eq!(ack["payload"]["peers"].as_array().unwrap().len(), 4);
    match &mut m[0].peer {
        Peer::Binary(c) => {
            let f = c.expect_event(MessageType::PeerJoined, WAIT).await.unwrap();
            let pj: PeerJoined = decode(&f).unwrap();
            assert_eq!(
                (pj.client_id.as_str(), pj.role.as_str()),
                ("eve", "receiver")
            );
            assert_eq!(pj.metadata["display_name"], "Eve", "the JWT's name");
        }
        _ => unreachable!(),
    }
    match &mut m[1].peer {
        Peer::Altair(c) => {
            let v = c.recv().await;
            assert_eq!(v["type"], "PEER_JOINED");
            assert_eq!(v["peer_id"], "eve");
            assert_eq!(v["room_id"], ROOM);
            assert_eq!(v["payload"]["display_name"], "Eve");
        }
        _ => unreachable!(),
    }
    match &mut m[2].peer {
        Peer::Simple(c) => {
            let v = c.recv().await;
            assert_eq!(v["type"], "join");
            assert_eq!(v["room"], ROOM);
            assert_eq!(v["sender"], "eve");
        }
        _ => unreachable!(),
    }
    match &mut m[3].peer {
        Peer::RoomPath(c) => {
            let v = c.recv().await;
            assert_eq!(v["type"], "user_joined");
            assert_eq!(v["payload"], json!({"user_id": "eve", "username": "Eve"}));
            assert_eq!(v["room_id"], ROOM);
        }
        _ => unreachable!(),
    }
    // Eve was not told about her own join.
    eve.expect_silence(QUIET).await;
}

#[tokio::test]
async fn offers_answers_and_candidates_cross_between_every_pair_of_dialects() {
    let s = TestServer::start().await;
    let mut m = four_dialects(&s).await;
    let n = m.len();
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            for kind in KINDS {
                let tag = format!("{}-{}-{kind:?}", m[i].id, m[j].id);
                let (from, to) = (m[i].id, m[j].id);
                let ctx = format!("{kind:?} {} -> {}", m[i].dialect(), m[j].dialect());
                m[i].send(kind, Some(to), &tag).await;
                let got = m[j].recv(kind).await;
                assert_eq!(got.from, from, "{ctx}: sender id");
                assert_eq!(got.target.as_deref(), Some(to), "{ctx}: target");
                m[j].check(&got, kind, &tag, &ctx);
            }
        }
    }

    // Room-wide (no target): from room-path and from simple, to everyone else.
    for (i, kind) in [(3, Kind::Offer), (2, Kind::Candidate)] {
        let tag = format!("{}-all", m[i].id);
        m[i].send(kind, None, &tag).await;
        for j in (0..n).filter(|j| *j != i) {
            let ctx = format!(
                "room-wide {kind:?} {} -> {}",
                m[i].dialect(),
                m[j].dialect()
            );
            let got = m[j].recv(kind).await;
            assert_eq!(got.from, m[i].id, "{ctx}");
            assert_eq!(got.target, None, "{ctx}");
            m[j].check(&got, kind, &tag, &ctx);
        }
    }

    // Nobody got anything that was not theirs.
    for member in m.iter_mut() {
        match &mut member.peer {
            Peer::Binary(c) => assert!(c.next_event_within(QUIET).await.is_err()),
            Peer::Altair(c) | Peer::Simple(c) | Peer::RoomPath(c) => c.expect_silence(QUIET).await,
        }
    }
}

#[tokio::test]
async fn leaves_reach_each_member_in_its_own_shape() {
    let s = TestServer::start().await;
    let mut m = four_dialects(&s).await;

    // Carol (simple) leaves.
    if let Peer::Simple(c) = &mut m[2].peer {
        c.send(&json!({"type": "leave", "room": ROOM, "sender": "carol"}))
            .await;
        assert_eq!(c.recv().await["type"], "left");
    }
    for k in [0, 1, 3] {
        assert_eq!(
            membership(&mut m[k]).await,
            ("carol".into(), false),
            "{}",
            m[k].dialect()
        );
    }
    // Bob (altair) leaves.
    if let Peer::Altair(c) = &mut m[1].peer {
        c.send(&json!({"type": "LEAVE"})).await;
        assert_eq!(c.recv().await["type"], "ACK");
    }
    for k in [0, 3] {
        assert_eq!(
            membership(&mut m[k]).await,
            ("bob".into(), false),
            "{}",
            m[k].dialect()
        );
    }
    // Dave (room-path) disconnects.
    let dave = m.pop().unwrap();
    if let Peer::RoomPath(c) = dave.peer {
        c.close().await;
    }
    assert_eq!(membership(&mut m[0]).await, ("dave".into(), false));
    if let Peer::Binary(c) = &mut m[0].peer {
        let f = c.next_event_within(QUIET).await;
        assert!(f.is_err(), "nothing else: {f:?}");
    }
}

#[tokio::test]
async fn a_binary_room_ending_is_told_to_json_members_and_closes_room_path() {
    let s = TestServer::start().await;
    let mut m = four_dialects(&s).await;
    let mut it = m.iter_mut().map(|m| &mut m.peer);
    let (
        Some(Peer::Binary(alice)),
        Some(Peer::Altair(bob)),
        Some(Peer::Simple(carol)),
        Some(Peer::RoomPath(dave)),
    ) = (it.next(), it.next(), it.next(), it.next())
    else {
        unreachable!()
    };
    // The sender leaving terminates a binary-created room.
    alice.leave_room("alice-token", ROOM).await.unwrap();
    let v = bob.recv().await;
    assert_eq!(v["type"], "ROOM_CLOSED");
    assert_eq!(v["room_id"], ROOM);
    let v = carol.recv().await;
    assert_eq!(v["type"], "room_closed");
    assert_eq!(v["room"], ROOM);
    let (before, closed) = dave.closed().await;
    assert_eq!(before.len(), 1, "{before:?}");
    assert_eq!(before[0]["type"], "error");
    assert_eq!(before[0]["payload"]["code"], "ROOM_CLOSED");
    assert_eq!(closed.code, 1000, "{closed:?}");

    // The altair and simple peers are in no room now and may start it again.
    bob.send(&json!({"type": "JOIN", "room_id": ROOM, "request_id": "again"}))
        .await;
    let ack = bob.recv().await;
    assert_eq!(ack["type"], "ACK");
    assert_eq!(ack["payload"]["peers"], json!([]));
}

#[tokio::test]
async fn a_binary_client_joins_a_room_a_json_peer_opened() {
    let s = TestServer::start().await;
    let mut dave = s
        .json(&format!(
            "/webrtc/ws/json-room?token={}",
            jwt("dave", Some("Dave"))
        ))
        .await;
    assert_eq!(dave.recv().await["type"], "room_state");
    let mut bob = s.registered("bob").await;
    let ack = bob.join_room("bob-token", "json-room").await.unwrap();
    assert_eq!(ack.participants.len(), 1);
    assert_eq!(ack.participants[0].client_id, "dave");
    let v = dave.recv().await;
    assert_eq!(v["type"], "user_joined");
    assert_eq!(v["payload"]["user_id"], "bob");

    bob.send_offer("dave", Some("json-room"), "v=0 from bob")
        .await
        .unwrap();
    let v = dave.recv_type("offer").await;
    assert_eq!(v["sender_id"], "bob");
    assert_eq!(v["payload"]["sdp"], "v=0 from bob");
    assert_eq!(v["payload"]["type"], "offer");

    // The room has no sender: it ends only when its last member leaves.
    dave.close().await;
    let f = bob.expect_event(MessageType::PeerLeft, WAIT).await.unwrap();
    assert_eq!(decode::<PeerLeft>(&f).unwrap().client_id, "dave");
    bob.leave_room("bob-token", "json-room").await.unwrap();
    assert!(
        bob.next_event_within(QUIET)
            .await
            .map(|f| f.msg_type != MessageType::RoomClosed)
            .unwrap_or(true),
        "the last member is not told about its own leave"
    );
}
