//! SFU mode end to end: real webrtc-rs clients publish and subscribe through a
//! signal-manager server whose rooms run on "Cloudflare Realtime" (a double of its
//! published API, backed by real webrtc-rs peers that forward the media), and the
//! failures Cloudflare can answer with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
mod support;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use rtc::rtp;
use signal_client::{
    Client,
    protocol::{MessageType, payload::SignalPayload},
};
use support::{
    cluster::Cluster,
    server::{TestServer, token},
    sfu::{self, Fault, SfuDouble},
};
use tokio::sync::{mpsc, watch};
use webrtc::{
    media_stream::{
        track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{
        PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
        RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
    },
};

const WAIT: Duration = Duration::from_secs(20);

/// `c` with its rooms on `double`.
fn on_sfu(c: &mut signal_server::config::Config, double: &SfuDouble, timeout: u64) {
    c.webrtc.media = signal_server::config::MediaMode::Cloudflare;
    c.cloudflare = Some(signal_server::config::CloudflareConfig {
        app_id: Some(sfu::APP_ID.into()),
        app_secret: Some(sfu::APP_SECRET.into()),
        base_url: double.base_url.clone(),
        retry_interval: 50,
        timeout,
        ..Default::default()
    });
}

/// A server whose rooms run on `double`.
async fn sfu_server(double: &SfuDouble, timeout: u64) -> TestServer {
    TestServer::start_with(move |c| {
        c.metrics.enabled = true;
        c.metrics.port = 0;
        on_sfu(c, double, timeout);
    })
    .await
}

/// A registered binary client.
async fn client(server: &TestServer, id: &str) -> Client {
    client_at(&server.url("/"), id).await
}

/// A registered binary client of the server at `url`.
async fn client_at(url: &str, id: &str) -> Client {
    let mut c = Client::connect(url).await.expect("connects");
    c.authenticate(id, &token(id)).await.expect("CONNECT");
    match c.register(&token(id)).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(409) => {} // registered by an earlier connection
        Err(e) => panic!("REGISTER: {e}"),
    }
    c
}

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    payloads: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let tx = self.payloads.clone();
        tokio::spawn(async move {
            while let Some(e) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = e {
                    let _ = tx.send(p.payload.to_vec());
                }
            }
        });
    }
}

/// A WebRTC client with VP8 only, on loopback.
struct MediaPeer {
    pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    payloads: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl MediaPeer {
    async fn new() -> Self {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (tx, payloads) = mpsc::unbounded_channel();
        let settings = SettingEngineBuilder::new()
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
            .build();
        let pc: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_setting_engine(settings)
                .with_media_engine(sfu::media_engine())
                .with_handler(Arc::new(Handler {
                    state: state_tx,
                    payloads: tx,
                }))
                .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
                .build()
                .await
                .expect("peer connection builds"),
        );
        Self {
            pc,
            state,
            payloads,
        }
    }

    /// Adds a VP8 track and sends `label-N` frames on it every 20 ms until the peer closes.
    async fn publish(&self, label: &'static str) {
        let ssrc = rand::random::<u32>();
        let track: Arc<TrackLocalStaticRTP> = sfu::vp8_track("stream", label, ssrc);
        self.pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add_track");
        tokio::spawn(async move {
            for n in 0u32.. {
                let p = rtp::Packet {
                    header: rtp::header::Header {
                        version: 2,
                        marker: true,
                        payload_type: 96,
                        sequence_number: n as u16,
                        timestamp: n.wrapping_mul(3000),
                        ssrc,
                        ..Default::default()
                    },
                    payload: Bytes::from(format!("{label}-{n}")),
                };
                // Unbound until negotiated: keep trying.
                let _ = track.write_rtp(p).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }

    async fn offer(&self) -> String {
        let offer = self.pc.create_offer(None).await.expect("create_offer");
        self.pc
            .set_local_description(offer.clone())
            .await
            .expect("set_local_description(offer)");
        offer.sdp
    }

    async fn take_answer(&self, sdp: &str) {
        self.pc
            .set_remote_description(RTCSessionDescription::answer(sdp.to_owned()).expect("answer"))
            .await
            .expect("set_remote_description(answer)");
    }

    async fn answer(&self, offer: &str) -> String {
        self.pc
            .set_remote_description(RTCSessionDescription::offer(offer.to_owned()).expect("offer"))
            .await
            .expect("set_remote_description(offer)");
        let answer = self.pc.create_answer(None).await.expect("create_answer");
        self.pc
            .set_local_description(answer.clone())
            .await
            .expect("set_local_description(answer)");
        answer.sdp
    }

    async fn connected(&mut self) {
        tokio::time::timeout(
            WAIT,
            self.state
                .wait_for(|s| *s == RTCPeerConnectionState::Connected),
        )
        .await
        .expect("connected in time")
        .expect("state channel open");
    }

    /// The next frame received whose payload starts with `label`.
    async fn frame_of(&mut self, label: &str) -> String {
        tokio::time::timeout(WAIT, async {
            loop {
                let p = self.payloads.recv().await.expect("media flows");
                let text = String::from_utf8_lossy(&p).into_owned();
                if text.starts_with(label) {
                    return text;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {label} frame arrived"))
    }
}

/// The next SIGNAL_OFFER or SIGNAL_ANSWER from the SFU: its SDP.
async fn sfu_signal(c: &mut Client, kind: MessageType) -> String {
    loop {
        let f = c.next_event_within(WAIT).await.expect("an SFU signal");
        if f.msg_type == kind {
            let p: SignalPayload = signal_client::decode(&f).expect("signal payload");
            assert_eq!(p.from_client_id.as_deref(), Some("sfu"));
            return p.sdp.expect("SDP");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_flows_from_the_creator_to_a_joiner_through_the_sfu() {
    let double = SfuDouble::start().await;
    let server = sfu_server(&double, 10).await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;

    // Alice creates the room with her offer: Cloudflare answers it.
    let mut publisher = MediaPeer::new().await;
    publisher.publish("cam").await;
    let offer = publisher.offer().await;
    let created = alice
        .create_room(&token("alice"), Some("sfu-room"), Some(&offer))
        .await
        .expect("ROOM_CREATE");
    let answer = created
        .answer_sdp
        .clone()
        .expect("answer_sdp in ROOM_CREATE_ACK");
    assert_eq!(created.app_id, sfu::APP_ID);
    assert_eq!(
        created.stun_url.as_deref(),
        Some("stun:stun.cloudflare.com:3478")
    );
    let alice_session = created.session_id.clone();
    assert_eq!(created.connection_info.session_id, alice_session);
    assert!(
        double.calls_of("sessions/new").len() == 1,
        "one Cloudflare session for the creator"
    );
    publisher.take_answer(&answer).await;
    publisher.connected().await;

    // Bob joins: his own session pulls Alice's track; he answers the SFU's offer.
    let mut subscriber = MediaPeer::new().await;
    let joined = bob
        .join_room(&token("bob"), "sfu-room")
        .await
        .expect("ROOM_JOIN");
    assert_ne!(
        joined.session_id, alice_session,
        "a joiner gets its own session"
    );
    let sfu_offer = joined
        .offer_sdp
        .clone()
        .expect("the SFU's offer in ROOM_JOIN_ACK");
    let bob_answer = subscriber.answer(&sfu_offer).await;
    bob.signal(
        MessageType::SignalAnswer,
        &SignalPayload {
            room_id: Some("sfu-room".into()),
            sdp: Some(bob_answer),
            ..Default::default()
        },
    )
    .await
    .expect("answer sent");
    subscriber.connected().await;
    let frame = subscriber.frame_of("cam-").await;
    assert!(frame.starts_with("cam-"), "{frame}");

    // Seed 000's tables name the Cloudflare sessions.
    let store = signal_store_sqlite::SqliteStore::open(&server.db_url, Default::default())
        .await
        .expect("open the server's database");
    use signal_core::store::Store as _;
    let room = store.get_room("sfu-room").await.unwrap().expect("room row");
    assert_eq!(room.session_id.as_deref(), Some(alice_session.as_str()));
    let mut sessions: Vec<(String, Option<String>)> = store
        .room_webrtc_clients("sfu-room")
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.client_id, c.session_id))
        .collect();
    sessions.sort();
    assert_eq!(
        sessions,
        [
            ("alice".to_owned(), Some(alice_session.clone())),
            ("bob".to_owned(), Some(joined.session_id.clone())),
        ]
    );

    let renegotiated = double.calls_of("renegotiate");
    assert_eq!(renegotiated.len(), 1, "Bob's answer went to renegotiate");
    assert_eq!(
        renegotiated[0].session.as_deref(),
        Some(joined.session_id.as_str())
    );
    let pulls = double.calls_of("tracks/new");
    assert_eq!(pulls[1].body["tracks"][0]["location"], "remote");
    assert_eq!(
        pulls[1].body["tracks"][0]["sessionId"],
        alice_session.as_str()
    );

    // Bob leaves: his tracks close. Alice leaves: the room's end closes hers.
    bob.leave_room(&token("bob"), "sfu-room")
        .await
        .expect("leave");
    alice
        .leave_room(&token("alice"), "sfu-room")
        .await
        .expect("leave");
    let closed: Vec<Option<String>> = double
        .calls_of("tracks/close")
        .into_iter()
        .map(|c| c.session)
        .collect();
    assert!(
        closed.contains(&Some(joined.session_id.clone())),
        "{closed:?}"
    );
    assert!(closed.contains(&Some(alice_session.clone())), "{closed:?}");
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_track_published_later_reaches_every_member() {
    let double = SfuDouble::start().await;
    let server = sfu_server(&double, 10).await;
    let alice = client(&server, "alice").await;
    let mut bob = client(&server, "bob").await;
    let mut alice_events = alice;

    // A room with no media yet; Bob joins it; then Alice publishes with a signal to the room.
    let publisher = MediaPeer::new().await;
    alice_events
        .create_room(&token("alice"), Some("later"), None)
        .await
        .expect("ROOM_CREATE");
    let joined = bob
        .join_room(&token("bob"), "later")
        .await
        .expect("ROOM_JOIN");
    assert!(
        joined.offer_sdp.is_none(),
        "nothing published yet: {joined:?}"
    );
    publisher.publish("late").await;
    let offer = publisher.offer().await;
    alice_events
        .send_offer("sfu", Some("later"), &offer)
        .await
        .expect("offer to the SFU");
    let answer = sfu_signal(&mut alice_events, MessageType::SignalAnswer).await;
    publisher.take_answer(&answer).await;

    // Bob is offered the new track by the SFU, and answers it.
    let mut subscriber = MediaPeer::new().await;
    let sfu_offer = sfu_signal(&mut bob, MessageType::SignalOffer).await;
    let bob_answer = subscriber.answer(&sfu_offer).await;
    bob.send_answer("sfu", Some("later"), &bob_answer)
        .await
        .expect("answer sent");
    subscriber.connected().await;
    subscriber.frame_of("late-").await;
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    server.shutdown().await;
}

/// Waits until `double` was asked to close tracks on `session`.
async fn tracks_closed_on(double: &SfuDouble, session: &str) {
    let closed = || {
        double
            .calls_of("tracks/close")
            .iter()
            .any(|c| c.session.as_deref() == Some(session))
    };
    tokio::time::timeout(WAIT, async {
        while !closed() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no tracks/close on session {session}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sfu_rooms_span_the_nodes_of_a_cluster() {
    let double = SfuDouble::start().await;
    let cluster = Cluster::start(2, |c| on_sfu(c, &double, 10)).await;
    let mut alice = client_at(&cluster.url(0, "/"), "alice").await;
    let mut bob = client_at(&cluster.url(1, "/"), "bob").await;

    // Bob publishes on node 1 as he creates the room.
    let mut bob_cam = MediaPeer::new().await;
    bob_cam.publish("cam").await;
    let offer = bob_cam.offer().await;
    let created = bob
        .create_room(&token("bob"), Some("span"), Some(&offer))
        .await
        .expect("ROOM_CREATE on node 1");
    bob_cam
        .take_answer(&created.answer_sdp.clone().expect("answer_sdp"))
        .await;
    bob_cam.connected().await;

    // Alice joins on node 0, which has never seen the room's media: it reads Bob's
    // tracks from the cluster's registry and pulls them into her session.
    let mut alice_view = MediaPeer::new().await;
    let joined = alice
        .join_room(&token("alice"), "span")
        .await
        .expect("ROOM_JOIN on node 0");
    let sfu_offer = joined
        .offer_sdp
        .clone()
        .expect("node 0 offers the tracks published on node 1");
    let answer = alice_view.answer(&sfu_offer).await;
    alice
        .send_answer("sfu", Some("span"), &answer)
        .await
        .expect("answer to the SFU");
    alice_view.connected().await;
    alice_view.frame_of("cam-").await;

    // A second room, created on node 1 with nothing published; Alice joins on node 0
    // and publishes later: node 1 is told and offers Bob her track.
    bob.create_room(&token("bob"), Some("span-later"), None)
        .await
        .expect("ROOM_CREATE");
    let later = alice
        .join_room(&token("alice"), "span-later")
        .await
        .expect("ROOM_JOIN");
    assert!(
        later.offer_sdp.is_none(),
        "nothing published yet: {later:?}"
    );
    let alice_mic = MediaPeer::new().await;
    alice_mic.publish("late").await;
    let offer = alice_mic.offer().await;
    alice
        .send_offer("sfu", Some("span-later"), &offer)
        .await
        .expect("offer to the SFU");
    let answer = sfu_signal(&mut alice, MessageType::SignalAnswer).await;
    alice_mic.take_answer(&answer).await;
    let mut bob_view = MediaPeer::new().await;
    let sfu_offer = sfu_signal(&mut bob, MessageType::SignalOffer).await;
    let answer = bob_view.answer(&sfu_offer).await;
    bob.send_answer("sfu", Some("span-later"), &answer)
        .await
        .expect("answer to the SFU");
    bob_view.connected().await;
    bob_view.frame_of("late-").await;
    let bob_later_session = double
        .calls_of("renegotiate")
        .last()
        .and_then(|c| c.session.clone())
        .expect("Bob's answer renegotiated his session");

    // Alice leaves the second room on node 0: node 1 closes Bob's pulls of her track.
    alice
        .leave_room(&token("alice"), "span-later")
        .await
        .expect("leave");
    tracks_closed_on(&double, &bob_later_session).await;

    // Bob, the first room's sender, leaves it on node 1: the room ends, and node 0
    // closes what Alice pulled.
    bob.leave_room(&token("bob"), "span").await.expect("leave");
    tracks_closed_on(&double, &joined.session_id).await;
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    cluster.shutdown().await;
}

/// The error a ROOM_CREATE with an offer gets, with `fault` played on `op`.
async fn create_fails(double: &SfuDouble, server: &TestServer, room: &str) -> (u16, String) {
    let alice = client(server, "alice").await;
    let publisher = MediaPeer::new().await;
    publisher.publish("cam").await;
    let offer = publisher.offer().await;
    let e = alice
        .create_room(&token("alice"), Some(room), Some(&offer))
        .await
        .expect_err("ROOM_CREATE fails");
    let _ = double;
    (e.code().expect("an ERROR with a code"), e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudflare_failures_become_clear_errors_and_leave_no_room_behind() {
    let double = SfuDouble::start().await;
    let server = sfu_server(&double, 1).await;

    // 5xx three times: retried three times, then 502 with Cloudflare's code.
    double.fail("sessions/new", Fault::Status(500, "internal_error"), 3);
    let (code, msg) = create_fails(&double, &server, "r5xx").await;
    assert_eq!(code, 502, "{msg}");
    assert!(msg.contains("internal_error"), "{msg}");
    assert_eq!(double.calls_of("sessions/new").len(), 3, "three attempts");

    // A transient failure retried into success: the room is made.
    double.fail(
        "sessions/new",
        Fault::Status(503, "temporarily_unavailable_error"),
        1,
    );
    let alice = client(&server, "alice").await;
    let publisher = MediaPeer::new().await;
    publisher.publish("cam").await;
    let offer = publisher.offer().await;
    alice
        .create_room(&token("alice"), Some("retried"), Some(&offer))
        .await
        .expect("a retried call succeeds");

    // 406 (overlapping or invalid): not retried, 502 naming invalid_params.
    let before = double.calls_of("tracks/new").len();
    double.fail("tracks/new", Fault::Status(406, "invalid_params"), 1);
    let (code, msg) = create_fails(&double, &server, "r406").await;
    assert_eq!(code, 502, "{msg}");
    assert!(msg.contains("invalid_params"), "{msg}");
    assert_eq!(
        double.calls_of("tracks/new").len(),
        before + 1,
        "a 406 is not retried"
    );

    // A timeout: 504, not retried (the change may have been applied).
    let before = double.calls_of("tracks/new").len();
    double.fail("tracks/new", Fault::Delay(Duration::from_secs(3)), 1);
    let (code, msg) = create_fails(&double, &server, "rslow").await;
    assert_eq!(code, 504, "{msg}");
    assert_eq!(double.calls_of("tracks/new").len(), before + 1);

    // None of the failed rooms exists: the same ids can be created now.
    for room in ["r5xx", "r406", "rslow"] {
        let c = client(&server, "alice").await;
        let p = MediaPeer::new().await;
        p.publish("cam").await;
        let offer = p.offer().await;
        c.create_room(&token("alice"), Some(room), Some(&offer))
            .await
            .unwrap_or_else(|e| panic!("room {room} was left half-made: {e}"));
        c.leave_room(&token("alice"), room).await.expect("leave");
    }

    // 410 on a joiner's pull: the join fails with 502 session_error; the joiner is not in
    // the room and the room goes on.
    let alice = client(&server, "alice").await;
    let publisher = MediaPeer::new().await;
    publisher.publish("cam").await;
    let offer = publisher.offer().await;
    alice
        .create_room(&token("alice"), Some("r410"), Some(&offer))
        .await
        .expect("ROOM_CREATE");
    let mut bob = client(&server, "bob").await;
    double.fail("tracks/new", Fault::Status(410, "session_error"), 1);
    let e = bob
        .join_room(&token("bob"), "r410")
        .await
        .expect_err("join fails");
    assert_eq!(e.code(), Some(502), "{e}");
    assert!(e.to_string().contains("session_error"), "{e}");
    let joined = bob
        .join_room(&token("bob"), "r410")
        .await
        .expect("a second join works");
    assert!(joined.offer_sdp.is_some());
    let _ = bob.next_event_within(Duration::from_millis(10)).await;
    assert!(double.violations().is_empty(), "{:?}", double.violations());

    // Every attempt is counted by operation and outcome, and timed.
    let metrics = reqwest::get(format!(
        "http://{}/metrics",
        server.metrics_addr.expect("metrics listener")
    ))
    .await
    .expect("GET /metrics")
    .text()
    .await
    .expect("metrics text");
    for line in [
        r#"signal_cloudflare_calls_total{operation="sessions/new",outcome="error"}"#,
        r#"signal_cloudflare_calls_total{operation="tracks/new",outcome="timeout"}"#,
        r#"signal_cloudflare_calls_total{operation="sessions/new",outcome="ok"}"#,
        r#"signal_cloudflare_call_seconds_count{operation="tracks/new"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webrtc_config_hands_out_cloudflare_turn_and_survives_its_outage() {
    let double = SfuDouble::start().await;
    let base = double.base_url.clone();
    let server = TestServer::start_with(move |c| {
        c.cloudflare = Some(signal_server::config::CloudflareConfig {
            base_url: base,
            turn_key_id: Some(sfu::TURN_KEY.into()),
            turn_key_api_token: Some(sfu::TURN_TOKEN.into()),
            timeout: 2,
            ..Default::default()
        });
        c.webrtc.turn_ttl = 600;
    })
    .await;
    let http = server.base.replacen("ws://", "http://", 1);
    let get = || async {
        reqwest::Client::new()
            .get(format!("{http}/webrtc/config"))
            .bearer_auth(support::server::jwt("alice"))
            .send()
            .await
            .expect("GET /webrtc/config")
    };
    let r = get().await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("JSON");
    let servers = body["ice_servers"].as_array().expect("ice_servers").clone();
    let turn = servers
        .iter()
        .find(|s| s["username"].is_string())
        .expect("a Cloudflare TURN entry");
    assert_eq!(turn["username"], "user-600", "minted for webrtc.turn_ttl");
    let urls: Vec<&str> = servers
        .iter()
        .flat_map(|s| {
            s["urls"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u.as_str().unwrap())
        })
        .collect();
    assert!(
        urls.contains(&"turns:turn.cloudflare.com:443?transport=tcp"),
        "{urls:?}"
    );
    assert!(
        !urls.iter().any(|u| u.contains(":53")),
        "port 53 is dropped: {urls:?}"
    );
    assert_eq!(double.calls_of("turn")[0].body["ttl"], 600);

    // Cloudflare down: STUN still served, no TURN entry, still 200.
    double.fail("turn", Fault::Status(500, "internal_error"), 1);
    let r = get().await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("JSON");
    let servers = body["ice_servers"].as_array().expect("ice_servers");
    assert!(!servers.is_empty(), "STUN is still there");
    assert!(
        servers.iter().all(|s| s["username"].is_null()),
        "{servers:?}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_dialect_members_get_the_sfus_offer_and_answer_it() {
    use support::signaling::{Altair, RoomPath, Signal, Simple};
    let double = SfuDouble::start().await;
    let server = sfu_server(&double, 10).await;
    let alice = client(&server, "alice").await;
    let mut publisher = MediaPeer::new().await;
    publisher.publish("cam").await;
    let offer = publisher.offer().await;
    let created = alice
        .create_room(&token("alice"), Some("mixed"), Some(&offer))
        .await
        .expect("ROOM_CREATE");
    publisher
        .take_answer(&created.answer_sdp.expect("answer_sdp"))
        .await;
    publisher.connected().await;

    for dialect in ["altair", "simple", "room-path"] {
        let id = format!("viewer-{dialect}");
        let mut t = match dialect {
            "altair" => Altair::join(&server, &id, "mixed").await,
            "simple" => Simple::join(&server, &id, "mixed").await,
            _ => RoomPath::join(&server, &id, "mixed").await,
        };
        // The SFU's offer arrives as a signal from "sfu"; the answer goes back to it.
        let incoming = tokio::time::timeout(WAIT, t.recv())
            .await
            .expect("the SFU's offer in time")
            .expect("signaling");
        assert_eq!(incoming.from, "sfu", "{dialect}");
        let Signal::Offer(sfu_offer) = incoming.signal else {
            panic!("{dialect}: expected an offer, got {:?}", incoming.signal);
        };
        let mut viewer = MediaPeer::new().await;
        let answer = viewer.answer(&sfu_offer).await;
        t.send("sfu", &Signal::Answer(answer))
            .await
            .expect("answer to the SFU");
        viewer.connected().await;
        viewer.frame_of("cam-").await;
    }
    assert_eq!(double.calls_of("renegotiate").len(), 3);
    assert!(double.violations().is_empty(), "{:?}", double.violations());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudflare_backend_keeps_the_media_contract() {
    let double = SfuDouble::start().await;
    let backend = || {
        let api = signal_media_cloudflare::Api::new(signal_media_cloudflare::ApiConfig {
            base_url: double.base_url.clone(),
            app_id: sfu::APP_ID.into(),
            app_secret: sfu::APP_SECRET.into(),
            timeout: Duration::from_secs(10),
            attempts: 3,
            retry_interval: Duration::from_millis(50),
        })
        .expect("API client");
        signal_media_cloudflare::CloudflareSfu::new(api)
    };
    let publisher = MediaPeer::new().await;
    publisher.publish("contract").await;
    let offer = publisher.offer().await;
    signal_core::media::contract::run(&backend(), Some(&offer)).await;
    // Two nodes: two backends over one Cloudflare app.
    let publisher = MediaPeer::new().await;
    publisher.publish("contract-2").await;
    let offer = publisher.offer().await;
    signal_core::media::contract::run_across_nodes(&backend(), &backend(), Some(&offer)).await;
    assert!(
        !double.calls_of("tracks/close").is_empty(),
        "leaving closed tracks"
    );
    assert!(double.violations().is_empty(), "{:?}", double.violations());
}
