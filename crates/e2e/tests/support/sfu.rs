//! A Cloudflare Realtime double: the published HTTPS API's paths, bearer secret, bodies
//! and per-session serialisation rule, answered by real webrtc-rs peer connections that
//! terminate the media and forward each published track's RTP to its subscribers.
//!
//! What it proves: the server drives the API as published (sessions/new, tracks/new local
//! with the client's offer, tracks/new remote answered by `renegotiate`, tracks/close),
//! never overlaps two changes to one session, and the SDP it relays lets a real WebRTC
//! client connect to an SFU and receive another client's track. What it does not prove:
//! Cloudflare's own SDP (simulcast, its codec and extension choices), its limits and
//! timings, anything beyond loopback.
#![allow(dead_code)]

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{post, put},
};
use rtc::{
    media_stream::MediaStreamTrack,
    rtp,
    rtp_transceiver::rtp_sender::{
        RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
        RtpCodecKind,
    },
};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use webrtc::{
    media_stream::{
        track_local::{TrackLocal, static_rtp::TrackLocalStaticRTP},
        track_remote::{TrackRemote, TrackRemoteEvent},
    },
    peer_connection::{
        MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
        RTCConfigurationBuilder, RTCIceGatheringState, RTCPeerConnectionState,
        RTCSessionDescription, SettingEngineBuilder,
    },
};

/// The app id of the double.
pub const APP_ID: &str = "double-app-0123456789abcdef0123";
/// The app secret the double accepts.
pub const APP_SECRET: &str = "double-secret";
/// The TURN key id of the double.
pub const TURN_KEY: &str = "double-turn-key";
/// The TURN key's API token.
pub const TURN_TOKEN: &str = "double-turn-token";

/// The one codec every peer here speaks: VP8 at payload type 96.
pub fn vp8() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: "video/VP8".to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: 96,
    }
}

/// A media engine with [`vp8`] only.
pub fn media_engine() -> MediaEngine {
    let mut m = MediaEngine::default();
    m.register_codec(vp8(), RtpCodecKind::Video)
        .expect("register VP8");
    m
}

/// A VP8 track to send RTP on.
pub fn vp8_track(stream: &str, id: &str, ssrc: u32) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream.to_owned(),
        id.to_owned(),
        id.to_owned(),
        RtpCodecKind::Video,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: vp8().rtp_codec,
            ..Default::default()
        }],
    )))
}

/// A failure the double plays instead of answering.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer with this status and Cloudflare error code.
    Status(u16, &'static str),
    /// Answer only after this long (the real answer).
    Delay(Duration),
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `sessions/new`, `tracks/new`, `renegotiate`, `tracks/close`, `turn`.
    pub op: String,
    /// The session, if the path names one.
    pub session: Option<String>,
    /// The JSON body.
    pub body: Value,
}

/// A running double.
#[derive(Clone)]
pub struct SfuDouble {
    inner: Arc<Inner>,
    /// `http://127.0.0.1:PORT/v1`.
    pub base_url: String,
}

#[derive(Default)]
struct Inner {
    sessions: Mutex<HashMap<String, Arc<SfuSession>>>,
    /// `(session, trackName)` → the publisher's track id (its `a=msid`).
    names: Mutex<HashMap<(String, String), String>>,
    /// Track id → its RTP, for subscribers.
    feeds: Mutex<HashMap<String, broadcast::Sender<rtp::Packet>>>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    calls: Mutex<Vec<Call>>,
    violations: Mutex<Vec<String>>,
    counter: AtomicU64,
}

impl Inner {
    fn feed(&self, track_id: &str) -> broadcast::Sender<rtp::Packet> {
        self.feeds
            .lock()
            .expect("feeds")
            .entry(track_id.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }
}

/// One SFU session: its peer connection, created on first use.
struct SfuSession {
    id: String,
    pc: tokio::sync::Mutex<Option<Arc<dyn PeerConnection>>>,
    gathered: watch::Receiver<bool>,
    gathered_tx: watch::Sender<bool>,
    /// A change is being made (the serialisation rule).
    busy: Mutex<bool>,
    /// The SFU's offer awaits the endpoint's answer.
    awaiting_answer: Mutex<bool>,
    /// Forwarding tasks by mid.
    forwarders: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    state: watch::Sender<RTCPeerConnectionState>,
}

struct Handler {
    inner: Arc<Inner>,
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let feed = self.inner.feed(&track.track_id().await);
        tokio::spawn(async move {
            while let Some(e) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = e {
                    let _ = feed.send(p);
                }
            }
        });
    }
}

impl SfuSession {
    async fn pc(&self, inner: &Arc<Inner>) -> Arc<dyn PeerConnection> {
        let mut pc = self.pc.lock().await;
        if let Some(pc) = &*pc {
            return pc.clone();
        }
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_network_types(vec![rtc::ice::network_type::NetworkType::Udp4])
            .build();
        let built: Arc<dyn PeerConnection> = Arc::new(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_setting_engine(settings)
                .with_media_engine(media_engine())
                .with_handler(Arc::new(Handler {
                    inner: inner.clone(),
                    gathered: self.gathered_tx.clone(),
                    state: self.state.clone(),
                }))
                .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
                .build()
                .await
                .expect("SFU peer connection builds"),
        );
        *pc = Some(built.clone());
        built
    }

    async fn wait_gathered(&self) {
        let mut g = self.gathered.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), g.wait_for(|d| *d)).await;
    }
}

fn error(status: u16, code: &str, description: &str) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(json!({ "errorCode": code, "errorDescription": description })),
    )
        .into_response()
}

/// `(stream, track id)` of each m-section by mid, from `a=mid` and `a=msid` lines.
fn msids(sdp: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut mid: Option<String> = None;
    let mut msid: Option<String> = None;
    let mut flush = |mid: &mut Option<String>, msid: &mut Option<String>| {
        if let (Some(m), Some(t)) = (mid.take(), msid.take()) {
            out.insert(m, t);
        }
    };
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            flush(&mut mid, &mut msid);
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim().to_owned());
        } else if let Some(m) = line.strip_prefix("a=msid:") {
            msid = m.split_whitespace().nth(1).map(str::to_owned);
        }
    }
    flush(&mut mid, &mut msid);
    out
}

impl SfuDouble {
    /// Starts the double on a loopback port.
    pub async fn start() -> Self {
        let inner = Arc::new(Inner::default());
        let app = Router::new()
            .route("/v1/apps/{app}/sessions/new", post(new_session))
            .route("/v1/apps/{app}/sessions/{sid}/tracks/new", post(tracks_new))
            .route(
                "/v1/apps/{app}/sessions/{sid}/renegotiate",
                put(renegotiate),
            )
            .route(
                "/v1/apps/{app}/sessions/{sid}/tracks/close",
                put(tracks_close),
            )
            .route(
                "/v1/turn/keys/{key}/credentials/generate-ice-servers",
                post(turn),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the double");
        let addr = listener.local_addr().expect("double address");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            inner,
            base_url: format!("http://{addr}/v1"),
        }
    }

    /// Plays `fault` for the next `times` calls of `op`.
    pub fn fail(&self, op: &str, fault: Fault, times: usize) {
        let mut f = self.inner.faults.lock().expect("faults");
        let q = f.entry(op.to_owned()).or_default();
        for _ in 0..times {
            q.push_back(fault.clone());
        }
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.inner.calls.lock().expect("calls").clone()
    }

    /// Calls of `op`.
    pub fn calls_of(&self, op: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|c| c.op == op).collect()
    }

    /// Breaches of the API's rules the double saw (overlapping changes, a change while an
    /// offer awaits its answer, bodies off the schema).
    pub fn violations(&self) -> Vec<String> {
        self.inner.violations.lock().expect("violations").clone()
    }
}

/// Checks the bearer secret, the app id and records the call; a fault if one is queued.
async fn admit(
    inner: &Inner,
    headers: &HeaderMap,
    op: &str,
    app: Option<&str>,
    session: Option<&str>,
    body: &Value,
    token: &str,
) -> Option<Response> {
    inner.calls.lock().expect("calls").push(Call {
        op: op.to_owned(),
        session: session.map(str::to_owned),
        body: body.clone(),
    });
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if auth != format!("Bearer {token}") {
        return Some(error(401, "unauthorized", "bad bearer token"));
    }
    if app.is_some_and(|a| a != APP_ID) {
        return Some(error(404, "not_found", "app not found"));
    }
    let fault = inner
        .faults
        .lock()
        .expect("faults")
        .get_mut(op)
        .and_then(VecDeque::pop_front);
    match fault {
        Some(Fault::Status(status, code)) => Some(error(status, code, "played by the double")),
        Some(Fault::Delay(d)) => {
            tokio::time::sleep(d).await;
            None
        }
        None => None,
    }
}

async fn new_session(
    State(inner): State<Arc<Inner>>,
    Path(app): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(r) = admit(
        &inner,
        &headers,
        "sessions/new",
        Some(&app),
        None,
        &Value::Null,
        APP_SECRET,
    )
    .await
    {
        return r;
    }
    let n = inner.counter.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:032x}", 0xc0ffee_u128 << 64 | u128::from(n));
    let (gathered_tx, gathered) = watch::channel(false);
    let session = Arc::new(SfuSession {
        id: id.clone(),
        pc: tokio::sync::Mutex::new(None),
        gathered,
        gathered_tx,
        busy: Mutex::new(false),
        awaiting_answer: Mutex::new(false),
        forwarders: Mutex::default(),
        state: watch::channel(RTCPeerConnectionState::New).0,
    });
    inner
        .sessions
        .lock()
        .expect("sessions")
        .insert(id.clone(), session);
    (StatusCode::CREATED, Json(json!({ "sessionId": id }))).into_response()
}

#[allow(clippy::result_large_err)] // a test double's error path
/// The session, marked busy for the change (406 if another change is running or an
/// offer awaits its answer).
fn begin(
    inner: &Inner,
    sid: &str,
    op: &str,
    needs_idle: bool,
) -> Result<Arc<SfuSession>, Response> {
    let s = inner
        .sessions
        .lock()
        .expect("sessions")
        .get(sid)
        .cloned()
        .ok_or_else(|| error(410, "session_error", "session not found or expired"))?;
    let mut busy = s.busy.lock().expect("busy");
    if *busy {
        inner
            .violations
            .lock()
            .expect("violations")
            .push(format!("{op} on {sid} overlapped another change"));
        return Err(error(
            406,
            "invalid_params",
            "overlapping request on this session",
        ));
    }
    if needs_idle && *s.awaiting_answer.lock().expect("awaiting") {
        inner.violations.lock().expect("violations").push(format!(
            "{op} on {sid} while the SFU's offer awaited its answer"
        ));
        return Err(error(
            406,
            "invalid_params",
            "renegotiation pending on this session",
        ));
    }
    *busy = true;
    drop(busy);
    Ok(s)
}

/// A change to session `sid`: admitted ([`admit`]) and begun ([`begin`]).
#[allow(clippy::result_large_err)] // a test double's error path
async fn change(
    inner: &Inner,
    headers: &HeaderMap,
    op: &str,
    app: &str,
    sid: &str,
    body: &Value,
    needs_idle: bool,
) -> Result<Arc<SfuSession>, Response> {
    if let Some(r) = admit(inner, headers, op, Some(app), Some(sid), body, APP_SECRET).await {
        return Err(r);
    }
    begin(inner, sid, op, needs_idle)
}

fn end(s: &SfuSession) {
    *s.busy.lock().expect("busy") = false;
}

async fn tracks_new(
    State(inner): State<Arc<Inner>>,
    Path((app, sid)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let s = match change(&inner, &headers, "tracks/new", &app, &sid, &body, true).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let r = tracks_new_inner(&inner, &s, &body).await;
    end(&s);
    r
}

async fn tracks_new_inner(inner: &Arc<Inner>, s: &Arc<SfuSession>, body: &Value) -> Response {
    let tracks = body["tracks"].as_array().cloned().unwrap_or_default();
    if tracks.is_empty() {
        return error(400, "invalid_params", "tracks is required");
    }
    let locations: Vec<&str> = tracks
        .iter()
        .filter_map(|t| t["location"].as_str())
        .collect();
    if locations.len() != tracks.len()
        || !(locations.iter().all(|l| *l == "local") || locations.iter().all(|l| *l == "remote"))
    {
        inner
            .violations
            .lock()
            .expect("violations")
            .push("tracks/new mixed or missing locations".into());
        return error(400, "invalid_params", "all tracks local or all remote");
    }
    let pc = s.pc(inner).await;
    if locations[0] == "local" {
        let Some(offer) = body["sessionDescription"]["sdp"].as_str() else {
            return error(
                400,
                "invalid_params",
                "local tracks need the endpoint's offer",
            );
        };
        if body["sessionDescription"]["type"] != "offer" {
            return error(400, "invalid_session_description", "expected an offer");
        }
        let by_mid = msids(offer);
        let desc = match RTCSessionDescription::offer(offer.to_owned()) {
            Ok(d) => d,
            Err(e) => return error(400, "invalid_session_description", &e.to_string()),
        };
        if let Err(e) = pc.set_remote_description(desc).await {
            return error(400, "invalid_session_description", &e.to_string());
        }
        let answer = match pc.create_answer(None).await {
            Ok(a) => a,
            Err(e) => return error(500, "internal_error", &e.to_string()),
        };
        if let Err(e) = pc.set_local_description(answer).await {
            return error(500, "internal_error", &e.to_string());
        }
        s.wait_gathered().await;
        let Some(local) = pc.local_description().await else {
            return error(500, "internal_error", "no local description");
        };
        let mut out = Vec::new();
        for t in &tracks {
            let (Some(mid), Some(name)) = (t["mid"].as_str(), t["trackName"].as_str()) else {
                out.push(json!({"errorCode": "invalid_params", "errorDescription": "mid and trackName are required"}));
                continue;
            };
            match by_mid.get(mid) {
                Some(track_id) => {
                    inner
                        .names
                        .lock()
                        .expect("names")
                        .insert((s.id.clone(), name.to_owned()), track_id.clone());
                    out.push(json!({"location": "local", "mid": mid, "trackName": name, "sessionId": s.id}));
                }
                None => out.push(json!({"mid": mid, "trackName": name, "errorCode": "empty_track_error", "errorDescription": "no track in the offer at this mid"})),
            }
        }
        return Json(json!({
            "requiresImmediateRenegotiation": false,
            "sessionDescription": {"type": "answer", "sdp": local.sdp},
            "tracks": out,
        }))
        .into_response();
    }
    // Remote: pull published tracks; the SFU offers.
    if !body["sessionDescription"].is_null() {
        return error(400, "invalid_params", "remote tracks take no SDP here");
    }
    let mut pulled = Vec::new();
    let mut out = Vec::new();
    for t in &tracks {
        let (Some(publisher), Some(name)) = (t["sessionId"].as_str(), t["trackName"].as_str())
        else {
            out.push(json!({"errorCode": "invalid_params", "errorDescription": "sessionId and trackName are required"}));
            continue;
        };
        let found = inner
            .names
            .lock()
            .expect("names")
            .get(&(publisher.to_owned(), name.to_owned()))
            .cloned();
        let Some(track_id) = found else {
            out.push(json!({"sessionId": publisher, "trackName": name, "errorCode": "not_found_track_error", "errorDescription": "no such track"}));
            continue;
        };
        let ssrc = rand::random::<u32>();
        let local_id = format!("{publisher}-{name}-{ssrc}");
        let local = vp8_track(publisher, &local_id, ssrc);
        if let Err(e) = pc.add_track(local.clone() as Arc<dyn TrackLocal>).await {
            return error(500, "internal_error", &e.to_string());
        }
        pulled.push((
            publisher.to_owned(),
            name.to_owned(),
            track_id,
            local_id,
            local,
            ssrc,
        ));
        out.push(Value::Null);
    }
    if pulled.is_empty() {
        return Json(json!({ "tracks": out })).into_response();
    }
    let offer = match pc.create_offer(None).await {
        Ok(o) => o,
        Err(e) => return error(500, "internal_error", &e.to_string()),
    };
    if let Err(e) = pc.set_local_description(offer).await {
        return error(500, "internal_error", &e.to_string());
    }
    s.wait_gathered().await;
    let Some(local_desc) = pc.local_description().await else {
        return error(500, "internal_error", "no local description");
    };
    let by_mid = msids(&local_desc.sdp);
    let mut pulled = pulled.into_iter();
    for slot in out.iter_mut().filter(|v| v.is_null()) {
        let Some((publisher, name, track_id, local_id, local, ssrc)) = pulled.next() else {
            break;
        };
        let mid = by_mid
            .iter()
            .find(|(_, t)| **t == local_id)
            .map(|(m, _)| m.clone())
            .unwrap_or_default();
        let mut rx = inner.feed(&track_id).subscribe();
        let task = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(mut p) => {
                        p.header.ssrc = ssrc;
                        // Before the subscriber answered the track is unbound: drop.
                        let _ = local.write_rtp(p).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        s.forwarders
            .lock()
            .expect("forwarders")
            .insert(mid.clone(), task);
        *slot =
            json!({"location": "remote", "sessionId": publisher, "trackName": name, "mid": mid});
    }
    *s.awaiting_answer.lock().expect("awaiting") = true;
    Json(json!({
        "requiresImmediateRenegotiation": true,
        "sessionDescription": {"type": "offer", "sdp": local_desc.sdp},
        "tracks": out,
    }))
    .into_response()
}

async fn renegotiate(
    State(inner): State<Arc<Inner>>,
    Path((app, sid)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let s = match change(&inner, &headers, "renegotiate", &app, &sid, &body, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let r = async {
        if !*s.awaiting_answer.lock().expect("awaiting") {
            return error(400, "invalid_params", "no offer awaits an answer");
        }
        let (Some("answer"), Some(sdp)) = (
            body["sessionDescription"]["type"].as_str(),
            body["sessionDescription"]["sdp"].as_str(),
        ) else {
            return error(
                400,
                "invalid_params",
                "sessionDescription must be an answer",
            );
        };
        let pc = s.pc(&inner).await;
        let desc = match RTCSessionDescription::answer(sdp.to_owned()) {
            Ok(d) => d,
            Err(e) => return error(400, "invalid_session_description", &e.to_string()),
        };
        if let Err(e) = pc.set_remote_description(desc).await {
            return error(400, "invalid_session_description", &e.to_string());
        }
        *s.awaiting_answer.lock().expect("awaiting") = false;
        Json(json!({})).into_response()
    }
    .await;
    end(&s);
    r
}

async fn tracks_close(
    State(inner): State<Arc<Inner>>,
    Path((app, sid)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let s = match change(&inner, &headers, "tracks/close", &app, &sid, &body, false).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let tracks = body["tracks"].as_array().cloned().unwrap_or_default();
    let r = if tracks.is_empty() || !body["force"].is_boolean() {
        inner
            .violations
            .lock()
            .expect("violations")
            .push("tracks/close without tracks or force".into());
        error(
            400,
            "invalid_params",
            "tracks (1 or more) and force are required",
        )
    } else {
        let mut out = Vec::new();
        for t in tracks {
            let mid = t["mid"].as_str().unwrap_or_default().to_owned();
            if let Some(task) = s.forwarders.lock().expect("forwarders").remove(&mid) {
                task.abort();
            }
            out.push(json!({ "mid": mid }));
        }
        Json(json!({ "tracks": out, "requiresImmediateRenegotiation": false })).into_response()
    };
    end(&s);
    r
}

async fn turn(
    State(inner): State<Arc<Inner>>,
    Path(key): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(r) = admit(&inner, &headers, "turn", None, None, &body, TURN_TOKEN).await {
        return r;
    }
    if key != TURN_KEY {
        return error(404, "not_found", "no such TURN key");
    }
    let Some(ttl) = body["ttl"].as_u64() else {
        return error(400, "invalid_params", "ttl is required");
    };
    (
        StatusCode::CREATED,
        Json(json!({"iceServers": [
            {"urls": ["stun:stun.cloudflare.com:3478", "stun:stun.cloudflare.com:53"]},
            {"urls": [
                "turn:turn.cloudflare.com:3478?transport=udp",
                "turn:turn.cloudflare.com:53?transport=udp",
                "turns:turn.cloudflare.com:443?transport=tcp"
            ], "username": format!("user-{ttl}"), "credential": "secret-credential"}
        ]})),
    )
        .into_response()
}
