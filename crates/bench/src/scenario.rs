//! The four scenarios: relay, idle, storm and fan-out. Each returns its result as JSON.
//! They run on one thread (a current-thread runtime with a `LocalSet`, see [`run_local`]),
//! which is what a generator pinned to one CPU gets anyway.

use std::{collections::HashMap, rc::Rc, time::Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::task::LocalSet;
use tokio_tungstenite::tungstenite::Message;

use crate::{
    group::{Plan, Shared, instant_at, run_group},
    payload::{Kind, now_ns},
    procfs::{self, Window},
    stats,
    target::{
        Dest, Endpoint, Incoming, Peer, Result, Target, Templates, Ws, classify, err, sm_frame,
        sm_request,
    },
};

/// Runs a scenario future on a fresh current-thread runtime with a `LocalSet`.
pub fn run_local<F: std::future::Future<Output = Result<Value>>>(f: F) -> Result<Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(err)?;
    LocalSet::new().block_on(&rt, f)
}

/// Prints a progress line to stderr.
fn progress(what: &str, line: &str) {
    eprintln!("[{what}] {line}");
}

/// Options common to every scenario.
#[derive(Debug, Clone)]
pub struct Common {
    /// The server's pid, for CPU and RSS readings.
    pub server_pid: Option<u32>,
    /// The pids of the cluster's other nodes (`--also-pid`): their CPU and RSS are added.
    pub also_pids: Vec<u32>,
    /// Handshakes (or requests) in flight at once while setting up.
    pub concurrency: usize,
    /// Free-form label stored in the result.
    pub label: Option<String>,
}

impl Common {
    /// Every server process measured: the server's, then the other nodes'.
    pub fn pids(&self) -> Vec<u32> {
        self.server_pid
            .into_iter()
            .chain(self.also_pids.iter().copied())
            .collect()
    }
}

/// The processes' CPU and RSS, summed; `None` without a process or when one is gone.
fn sample(pids: &[u32]) -> Option<procfs::ProcSample> {
    if pids.is_empty() {
        return None;
    }
    let mut total = procfs::ProcSample {
        cpu_s: 0.0,
        rss_kib: 0,
    };
    for pid in pids {
        let s = procfs::sample(*pid)?;
        total.cpu_s += s.cpu_s;
        total.rss_kib += s.rss_kib;
    }
    Some(total)
}

/// Connects clients `indices` (with their rooms), `concurrency` handshakes at a time.
/// Returns the peers by index and the handshake latency histogram.
async fn connect_many(
    ep: &Endpoint,
    items: Vec<(u32, Option<String>)>,
    concurrency: usize,
    what: &str,
) -> Result<(HashMap<u32, Peer>, hdrhistogram::Histogram<u64>, f64)> {
    let total = items.len();
    let t0 = Instant::now();
    let mut hist = stats::histogram();
    let mut peers = HashMap::with_capacity(total);
    let mut s = futures_util::stream::iter(items.into_iter().map(|(i, room)| async move {
        let t = Instant::now();
        let r = ep.connect(i, room.as_deref()).await;
        (i, r, t.elapsed())
    }))
    .buffer_unordered(concurrency.max(1));
    let mut last = Instant::now();
    while let Some((i, r, took)) = s.next().await {
        let p = r.map_err(|e| err(format!("client {i}: {e}")))?;
        stats::record(&mut hist, took.as_nanos() as u64);
        peers.insert(i, p);
        if last.elapsed().as_secs_f64() >= 1.0 {
            last = Instant::now();
            progress(
                what,
                &format!(
                    "{} / {total} connected ({:.0}/s)",
                    peers.len(),
                    peers.len() as f64 / t0.elapsed().as_secs_f64()
                ),
            );
        }
    }
    Ok((peers, hist, t0.elapsed().as_secs_f64()))
}

/// Prints a line per second while a measured run is going.
fn spawn_progress(what: String, sh: Rc<Shared>, pid: Vec<u32>) {
    tokio::task::spawn_local(async move {
        let mut last_cpu = sample(&pid).map(|s| s.cpu_s);
        let mut t = sh.start_ns;
        loop {
            t += 1_000_000_000;
            tokio::time::sleep_until(instant_at(t)).await;
            if t > sh.drain_end_ns {
                break;
            }
            let n = sh.interval_received.replace(0);
            let brief = {
                let mut h = sh.interval.borrow_mut();
                let b = stats::brief(&h);
                h.reset();
                b
            };
            let cpu = sample(&pid).map(|s| s.cpu_s);
            let cpu_txt = match (last_cpu, cpu) {
                (Some(a), Some(b)) => format!(" server cpu {:.0}%", (b - a) * 100.0),
                _ => String::new(),
            };
            last_cpu = cpu;
            let phase = if t <= sh.measure_start_ns {
                "warmup"
            } else if t <= sh.measure_end_ns {
                "measure"
            } else {
                "drain"
            };
            progress(
                &what,
                &format!(
                    "{phase} t={:.0}s {n} msg/s {brief}{cpu_txt} errors {}",
                    (t - sh.start_ns) as f64 / 1e9,
                    sh.errors.get()
                ),
            );
            if sh.received.get() + sh.lost.get() >= sh.sent.get() && t > sh.measure_end_ns {
                break;
            }
        }
    });
}

type WindowReadings = (Window, procfs::ProcSample, procfs::ProcSample);

/// Measures the server (and this process) over the window of a [`Shared`] run; await
/// the handle once the run is over.
fn spawn_window(sh: &Shared, pid: Vec<u32>) -> tokio::task::JoinHandle<WindowReadings> {
    let (a, b) = (sh.measure_start_ns, sh.measure_end_ns);
    tokio::task::spawn_local(async move {
        tokio::time::sleep_until(instant_at(a)).await;
        let before = sample(&pid);
        let gen_before = procfs::own();
        tokio::time::sleep_until(instant_at(b)).await;
        let w = Window {
            before,
            after: sample(&pid),
        };
        (w, gen_before, procfs::own())
    })
}

#[allow(clippy::too_many_arguments)]
fn measured_result(
    scenario: &str,
    ep: &Endpoint,
    common: &Common,
    params: Value,
    sh: &Shared,
    window: &WindowReadings,
    duration: f64,
    extra: Value,
) -> Value {
    let measured = sh.measured.get();
    let server = window.0.to_json(Some(measured as f64));
    let mut v = json!({
        "scenario": scenario,
        "target": ep.target.name(),
        "label": common.label,
        "params": params,
        "duration_s": duration,
        "sent": sh.sent.get(),
        "received": sh.received.get(),
        "measured": measured,
        "lost": sh.lost.get(),
        "errors": sh.errors.get(),
        "error_samples": *sh.error_samples.borrow(),
        "throughput_per_s": measured as f64 / duration,
        "latency": stats::summary(&sh.hist.borrow()),
        "server": server,
        "generator_cpu_s": window.2.cpu_s - window.1.cpu_s,
    });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v
}

// ---------------------------------------------------------------------------------------
// relay

/// Relay options.
#[derive(Debug, Clone)]
pub struct RelayOpts {
    /// Peer pairs.
    pub pairs: u32,
    /// Measured seconds.
    pub duration: f64,
    /// Seconds before measuring.
    pub warmup: f64,
    /// Offered messages per second over all pairs; 0 sends as fast as the window allows.
    pub rate: f64,
    /// Messages in flight per pair.
    pub window: u32,
    /// Every Nth message of each direction is an SDP offer/answer (0: candidates only).
    pub sdp_every: u32,
    /// Size of a candidate message, bytes.
    pub candidate_size: usize,
    /// Size of an offer or answer, bytes.
    pub sdp_size: usize,
}

struct PairPlan {
    a_to_b: Templates,
    b_to_a: Templates,
    sdp_every: u64,
}

impl Plan for PairPlan {
    fn tick(&mut self, seq: u64, stamp: u64, out: &mut Vec<(usize, Message)>) {
        let kind = if self.sdp_every == 0 {
            Kind::Candidate
        } else {
            match seq % (2 * self.sdp_every) {
                0 => Kind::Offer,
                1 => Kind::Answer,
                _ => Kind::Candidate,
            }
        };
        if seq.is_multiple_of(2) {
            out.push((0, self.a_to_b.build(kind, stamp)));
        } else {
            out.push((1, self.b_to_a.build(kind, stamp)));
        }
    }
    fn deliveries_per_tick(&self) -> u32 {
        1
    }
}

/// P pairs exchanging candidates and SDP, K in flight per pair, for D seconds.
pub async fn relay(ep: &Endpoint, o: &RelayOpts, common: &Common) -> Result<Value> {
    ep.check()?;
    let what = format!("relay {}", ep.target.name());
    let items: Vec<(u32, Option<String>)> = (0..o.pairs * 2)
        .map(|i| (i, Some(format!("{}-p{}", ep.run_id, i / 2))))
        .collect();
    let (mut peers, hs, _) = connect_many(ep, items, common.concurrency, &what).await?;
    progress(&what, &format!("{} connections ready", peers.len()));
    let sizes = [o.candidate_size, o.sdp_size, o.sdp_size];
    let sh = Shared::new(ep.target, o.warmup, o.duration);
    let window = spawn_window(&sh, common.pids());
    spawn_progress(what.clone(), sh.clone(), common.pids());
    let period = if o.rate > 0.0 {
        (1e9 * f64::from(o.pairs) / o.rate) as u64
    } else {
        0
    };
    let mut tasks = Vec::new();
    for p in 0..o.pairs {
        let (Some(a), Some(b)) = (peers.remove(&(2 * p)), peers.remove(&(2 * p + 1))) else {
            return Err(err("missing peer"));
        };
        let plan = PairPlan {
            a_to_b: Templates::new(ep.target, a.index, &Dest::Peer(b.id.clone()), sizes),
            b_to_a: Templates::new(ep.target, b.index, &Dest::Peer(a.id.clone()), sizes),
            sdp_every: u64::from(o.sdp_every),
        };
        // Spread the pairs' schedules over one period so they don't all fire together.
        let offset = if period > 0 {
            period * u64::from(p) / u64::from(o.pairs.max(1))
        } else {
            0
        };
        let sh = sh.clone();
        let window_k = o.window;
        tasks.push(tokio::task::spawn_local(async move {
            let r = run_group(vec![a.ws, b.ws], plan, period, window_k, offset, sh.clone()).await;
            if let Err(e) = r {
                sh.error(e.to_string());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let w = window.await.map_err(err)?;
    let params = json!({
        "pairs": o.pairs, "rate": o.rate, "window": o.window, "sdp_every": o.sdp_every,
        "candidate_size": o.candidate_size, "sdp_size": o.sdp_size, "warmup_s": o.warmup,
        "sources": ep.sources,
    });
    Ok(measured_result(
        "relay",
        ep,
        common,
        params,
        &sh,
        &w,
        o.duration,
        json!({"handshake": stats::summary(&hs)}),
    ))
}

// ---------------------------------------------------------------------------------------
// fan-out

/// Fan-out options.
#[derive(Debug, Clone)]
pub struct FanoutOpts {
    /// Rooms.
    pub rooms: u32,
    /// Members per room (one sender, the rest receive).
    pub room_size: u32,
    /// Measured seconds.
    pub duration: f64,
    /// Seconds before measuring.
    pub warmup: f64,
    /// Messages per second per room; 0 sends as fast as the window allows.
    pub rate: f64,
    /// Messages in flight per room.
    pub window: u32,
    /// Message size, bytes.
    pub size: usize,
    /// Floor only: one message to the room (`u32::MAX`) instead of one per receiver.
    pub broadcast: bool,
}

struct FanPlan {
    /// One template per destination (one per receiver for matchbox, else one room-wide).
    templates: Vec<Templates>,
    receivers: u32,
}

impl Plan for FanPlan {
    fn tick(&mut self, _seq: u64, stamp: u64, out: &mut Vec<(usize, Message)>) {
        for t in &mut self.templates {
            out.push((0, t.build(Kind::Candidate, stamp)));
        }
    }
    fn deliveries_per_tick(&self) -> u32 {
        self.receivers
    }
}

/// One sender per room of M members; every message reaches the M-1 others.
pub async fn fanout(ep: &Endpoint, o: &FanoutOpts, common: &Common) -> Result<Value> {
    ep.check()?;
    if ep.target == Target::Peerjs {
        return Err(err("fanout: PeerJS has no rooms"));
    }
    let what = format!("fanout {}", ep.target.name());
    let m = o.room_size.max(2);
    let room_name = |r: u32| format!("{}-f{r}", ep.run_id);
    let items: Vec<(u32, Option<String>)> = (0..o.rooms * m)
        .map(|i| (i, Some(room_name(i / m))))
        .collect();
    // matchbox tells existing members about newcomers: connect each room's sender first.
    let (mut peers, hs, _) = if ep.target == Target::Matchbox {
        let (first, rest): (Vec<_>, Vec<_>) = items.into_iter().partition(|(i, _)| i % m == 0);
        let (mut a, h, _) = connect_many(ep, first, common.concurrency, &what).await?;
        let (b, _, _) = connect_many(ep, rest, common.concurrency, &what).await?;
        a.extend(b);
        (a, h, 0.0)
    } else {
        connect_many(ep, items, common.concurrency, &what).await?
    };
    if ep.target == Target::SignalManager {
        sm_rooms(
            &mut peers,
            o.rooms,
            m,
            &room_name,
            common.concurrency,
            &what,
        )
        .await?;
    }
    progress(&what, &format!("{} rooms of {m} ready", o.rooms));
    let sh = Shared::new(ep.target, o.warmup, o.duration);
    let window = spawn_window(&sh, common.pids());
    spawn_progress(what.clone(), sh.clone(), common.pids());
    let period = if o.rate > 0.0 {
        (1e9 / o.rate) as u64
    } else {
        0
    };
    let mut tasks = Vec::new();
    for r in 0..o.rooms {
        let mut members = Vec::with_capacity(m as usize);
        for k in 0..m {
            members.push(
                peers
                    .remove(&(r * m + k))
                    .ok_or_else(|| err("missing peer"))?,
            );
        }
        let sizes = [o.size, o.size, o.size];
        // signal-manager's binary protocol and matchbox have no room-wide signal: the
        // sender addresses each member. The floor does the same unless --broadcast.
        let templates = if ep.target == Target::Floor && o.broadcast {
            vec![Templates::new(
                ep.target,
                members[0].index,
                &Dest::Room(room_name(r)),
                sizes,
            )]
        } else {
            members[1..]
                .iter()
                .map(|p| {
                    Templates::new(
                        ep.target,
                        members[0].index,
                        &Dest::PeerInRoom(p.id.clone(), room_name(r)),
                        sizes,
                    )
                })
                .collect()
        };
        let plan = FanPlan {
            templates,
            receivers: m - 1,
        };
        let offset = if period > 0 {
            period * u64::from(r) / u64::from(o.rooms.max(1))
        } else {
            0
        };
        let sh = sh.clone();
        let k = o.window;
        let ws: Vec<Ws> = members.into_iter().map(|p| p.ws).collect();
        tasks.push(tokio::task::spawn_local(async move {
            if let Err(e) = run_group(ws, plan, period, k, offset, sh.clone()).await {
                sh.error(e.to_string());
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let w = window.await.map_err(err)?;
    let params = json!({
        "rooms": o.rooms, "room_size": m, "rate_per_room": o.rate, "window": o.window,
        "size": o.size, "warmup_s": o.warmup, "sources": ep.sources,
        "sends_per_message": if ep.target == Target::Floor && o.broadcast { 1 } else { m - 1 },
    });
    Ok(measured_result(
        "fanout",
        ep,
        common,
        params,
        &sh,
        &w,
        o.duration,
        json!({"handshake": stats::summary(&hs)}),
    ))
}

/// signal-manager: REGISTER everyone, create each room with its first member and join the
/// rest (setup, not measured).
async fn sm_rooms(
    peers: &mut HashMap<u32, Peer>,
    rooms: u32,
    m: u32,
    room_name: &dyn Fn(u32) -> String,
    concurrency: usize,
    what: &str,
) -> Result<()> {
    progress(what, "registering and joining rooms");
    let list: Vec<&mut Peer> = peers.values_mut().collect();
    futures_util::stream::iter(list.into_iter().map(|p| async move { register(p).await }))
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>>>()?;
    let mut by_room: Vec<Vec<&mut Peer>> = (0..rooms).map(|_| Vec::new()).collect();
    for (i, p) in peers.iter_mut() {
        if let Some(v) = by_room.get_mut((i / m) as usize) {
            v.push(p);
        }
    }
    for v in &mut by_room {
        v.sort_by_key(|p| p.index);
    }
    futures_util::stream::iter(by_room.into_iter().enumerate().map(|(r, mut v)| {
        let room = room_name(r as u32);
        async move {
            let Some((first, rest)) = v.split_first_mut() else {
                return Ok(());
            };
            create_room(first, &room, m).await?;
            for p in rest {
                join_room(p, &room).await?;
            }
            Ok::<(), crate::target::BenchError>(())
        }
    }))
    .buffer_unordered(concurrency.max(1))
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<Vec<_>>>()?;
    Ok(())
}

async fn register(p: &mut Peer) -> Result<()> {
    let body = json!({"version": "1.0.0", "client_id": p.id, "auth_token": "bench-registered"});
    sm_request(&mut p.ws, 0x20, &body, 0x21).await.map(|_| ())
}

fn create_body(p: &Peer, room: &str, m: u32) -> Value {
    json!({
        "version": "1.0.0", "client_id": p.id, "auth_token": p.token,
        "room_id": room, "metadata": {"max_participants": m},
    })
}

fn join_body(p: &Peer, room: &str) -> Value {
    json!({"version": "1.0.0", "client_id": p.id, "auth_token": p.token, "room_id": room})
}

async fn create_room(p: &mut Peer, room: &str, m: u32) -> Result<()> {
    let body = create_body(p, room, m);
    sm_request(&mut p.ws, 0x30, &body, 0x31).await.map(|_| ())
}

async fn join_room(p: &mut Peer, room: &str) -> Result<()> {
    let body = join_body(p, room);
    sm_request(&mut p.ws, 0x32, &body, 0x33).await.map(|_| ())
}

// ---------------------------------------------------------------------------------------
// idle

/// Idle options.
#[derive(Debug, Clone)]
pub struct IdleOpts {
    /// Connections to open and hold.
    pub conns: u32,
    /// Seconds to hold them once all are open (idle CPU is measured here).
    pub hold: f64,
}

/// N authenticated connections held: connect rate and server RSS per connection.
pub async fn idle(ep: &Endpoint, o: &IdleOpts, common: &Common) -> Result<Value> {
    ep.check()?;
    let what = format!("idle {}", ep.target.name());
    let base = sample(&common.pids());
    let slab0 = procfs::slab_kib();
    let gen0 = procfs::own();
    // matchbox: two members per room (as a pair waiting to connect).
    let items: Vec<(u32, Option<String>)> = (0..o.conns)
        .map(|i| (i, Some(format!("{}-i{}", ep.run_id, i / 2))))
        .collect();
    let (peers, hs, secs) = connect_many(ep, items, common.concurrency, &what).await?;
    let gen1 = procfs::own();
    progress(
        &what,
        &format!(
            "{} connections in {secs:.2}s ({:.0}/s); holding {}s",
            peers.len(),
            peers.len() as f64 / secs,
            o.hold
        ),
    );
    // Let the server settle (its allocator, lazily freed handshake buffers), then hold.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let held = sample(&common.pids());
    tokio::time::sleep(std::time::Duration::from_secs_f64(o.hold)).await;
    let end = sample(&common.pids());
    let slab1 = procfs::slab_kib();
    let n = peers.len() as f64;
    let rss_per_conn = match (base, held) {
        (Some(b), Some(h)) => Some((h.rss_kib as f64 - b.rss_kib as f64) * 1024.0 / n),
        _ => None,
    };
    let idle_cpu = match (held, end) {
        (Some(a), Some(b)) => Some((b.cpu_s - a.cpu_s) / o.hold),
        _ => None,
    };
    let connect_cpu = match (base, held) {
        (Some(a), Some(b)) => Some(b.cpu_s - a.cpu_s),
        _ => None,
    };
    drop(peers);
    Ok(json!({
        "scenario": "idle",
        "target": ep.target.name(),
        "label": common.label,
        "params": {"conns": o.conns, "hold_s": o.hold, "concurrency": common.concurrency, "sources": ep.sources},
        "connections": n,
        "connect_s": secs,
        "connects_per_s": n / secs,
        "handshake": stats::summary(&hs),
        "server": {
            "rss_before_kib": base.map(|s| s.rss_kib),
            "rss_held_kib": held.map(|s| s.rss_kib),
            "rss_end_kib": end.map(|s| s.rss_kib),
            "rss_per_conn_bytes": rss_per_conn,
            "connect_cpu_s": connect_cpu,
            "connects_per_cpu_s": connect_cpu.filter(|c| *c > 0.0).map(|c| n / c),
            "idle_cpu_fraction": idle_cpu,
        },
        "kernel_slab_per_conn_bytes": match (slab0, slab1) {
            (Some(a), Some(b)) => Some((b as f64 - a as f64) * 1024.0 / n),
            _ => None,
        },
        "generator_cpu_s": gen1.cpu_s - gen0.cpu_s,
        "errors": 0,
    }))
}

// ---------------------------------------------------------------------------------------
// storm

/// Storm options.
#[derive(Debug, Clone)]
pub struct StormOpts {
    /// Peers.
    pub peers: u32,
    /// Members per room.
    pub room_size: u32,
    /// Seconds to wait for every PEER_JOINED before giving up.
    pub timeout: f64,
}

/// N peers joining rooms of M as fast as possible: joins/s, and the time until every
/// member saw every PEER_JOINED (NewPeer for matchbox).
pub async fn storm(ep: &Endpoint, o: &StormOpts, common: &Common) -> Result<Value> {
    ep.check()?;
    let what = format!("storm {}", ep.target.name());
    let m = o.room_size.max(2);
    let rooms = o.peers / m;
    let n = rooms * m;
    let room_name = |r: u32| format!("{}-s{r}", ep.run_id);
    let expected_events = u64::from(rooms) * u64::from(m) * u64::from(m - 1) / 2;
    let sh = Rc::new(StormState::new());
    let (t0, before, gen0) = match ep.target {
        Target::SignalManager => {
            // Setup (not measured): connect and REGISTER everyone.
            let items = (0..n).map(|i| (i, None)).collect();
            let (mut peers, _, _) = connect_many(ep, items, common.concurrency, &what).await?;
            progress(&what, "registering");
            let list: Vec<&mut Peer> = peers.values_mut().collect();
            futures_util::stream::iter(list.into_iter().map(|p| async move { register(p).await }))
                .buffer_unordered(common.concurrency.max(1))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
            progress(&what, &format!("storm: {rooms} rooms of {m}"));
            let before = sample(&common.pids());
            let gen0 = procfs::own();
            let t0 = now_ns();
            let mut tasks = Vec::new();
            for r in 0..rooms {
                let mut members = Vec::new();
                for k in 0..m {
                    members.push(
                        peers
                            .remove(&(r * m + k))
                            .ok_or_else(|| err("missing peer"))?,
                    );
                }
                let sh = sh.clone();
                let room = room_name(r);
                tasks.push(tokio::task::spawn_local(async move {
                    if let Err(e) = sm_storm_room(members, room, m, sh.clone()).await {
                        sh.error(e.to_string());
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            (t0, before, gen0)
        }
        Target::Matchbox => {
            let before = sample(&common.pids());
            let gen0 = procfs::own();
            let t0 = now_ns();
            let sem = Rc::new(tokio::sync::Semaphore::new(common.concurrency.max(1)));
            let mut tasks = Vec::new();
            for r in 0..rooms {
                let sh = sh.clone();
                let ep = ep.clone();
                let room = room_name(r);
                let sem = sem.clone();
                tasks.push(tokio::task::spawn_local(async move {
                    if let Err(e) = mb_storm_room(&ep, r * m, room, m, sh.clone(), sem).await {
                        sh.error(e.to_string());
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            (t0, before, gen0)
        }
        _ => {
            return Err(err(
                "storm applies to targets with rooms and join events: signal-manager, matchbox",
            ));
        }
    };
    let after = sample(&common.pids());
    let gen1 = procfs::own();
    let last_ack = sh.last_ack.get().saturating_sub(t0) as f64 / 1e9;
    let last_event = sh.last_event.get().saturating_sub(t0) as f64 / 1e9;
    let joins = sh.acks.get();
    let w = Window { before, after };
    Ok(json!({
        "scenario": "storm",
        "target": ep.target.name(),
        "label": common.label,
        "params": {"peers": n, "room_size": m, "rooms": rooms, "sources": ep.sources,
                   "join_op": if ep.target == Target::Matchbox { "websocket connect to /ROOM (join = connect)" } else { "ROOM_CREATE / ROOM_JOIN on connected, registered sessions" }},
        "joins": joins,
        "joins_per_s": if last_ack > 0.0 { joins as f64 / last_ack } else { 0.0 },
        "all_acked_s": last_ack,
        "peer_joined_expected": expected_events,
        "peer_joined_seen": sh.events.get(),
        "all_peer_joined_s": last_event,
        "join_latency": stats::summary(&sh.hist.borrow()),
        "server": w.to_json(Some(joins as f64)),
        "generator_cpu_s": gen1.cpu_s - gen0.cpu_s,
        "errors": sh.errors.get(),
        "error_samples": *sh.samples.borrow(),
    }))
}

struct StormState {
    acks: std::cell::Cell<u64>,
    events: std::cell::Cell<u64>,
    last_ack: std::cell::Cell<u64>,
    last_event: std::cell::Cell<u64>,
    errors: std::cell::Cell<u64>,
    samples: std::cell::RefCell<Vec<String>>,
    hist: std::cell::RefCell<hdrhistogram::Histogram<u64>>,
}

impl StormState {
    fn new() -> Self {
        Self {
            acks: Default::default(),
            events: Default::default(),
            last_ack: Default::default(),
            last_event: Default::default(),
            errors: Default::default(),
            samples: Default::default(),
            hist: std::cell::RefCell::new(stats::histogram()),
        }
    }
    fn error(&self, e: String) {
        self.errors.set(self.errors.get() + 1);
        let mut s = self.samples.borrow_mut();
        if s.len() < 5 {
            s.push(e);
        }
    }
    fn ack(&self, sent: u64) {
        let now = now_ns();
        self.acks.set(self.acks.get() + 1);
        self.last_ack.set(self.last_ack.get().max(now));
        stats::record(&mut self.hist.borrow_mut(), now.saturating_sub(sent));
    }
    fn event(&self) {
        self.events.set(self.events.get() + 1);
        self.last_event.set(self.last_event.get().max(now_ns()));
    }
}

async fn sm_storm_room(members: Vec<Peer>, room: String, m: u32, sh: Rc<StormState>) -> Result<()> {
    let expected = u64::from(m) * u64::from(m - 1) / 2;
    let mut members = members;
    // The creator first (the room must exist before anyone joins).
    let t = now_ns();
    let body = create_body(&members[0], &room, m);
    sm_request(&mut members[0].ws, 0x30, &body, 0x31).await?;
    sh.ack(t);
    let mut sinks = Vec::new();
    let mut streams = Vec::new();
    let mut sent_at = vec![0u64; members.len()];
    let bodies: Vec<Value> = members.iter().map(|p| join_body(p, &room)).collect();
    for (i, p) in members.into_iter().enumerate() {
        let (tx, rx) = p.ws.split();
        sinks.push(tx);
        streams.push(rx.map(move |x| (i, x)));
    }
    for (i, tx) in sinks.iter_mut().enumerate().skip(1) {
        let payload = serde_json::to_vec(&bodies[i]).map_err(err)?;
        sent_at[i] = now_ns();
        tx.send(Message::Binary(sm_frame(
            0x32,
            *uuid::Uuid::new_v4().as_bytes(),
            &payload,
        )))
        .await?;
    }
    let mut rx = futures_util::stream::select_all(streams);
    let (mut acks, mut events) = (0u32, 0u64);
    let deadline = instant_at(now_ns() + 30_000_000_000);
    while acks < m - 1 || events < expected {
        let next = tokio::time::timeout_at(deadline, rx.next()).await;
        let Ok(Some((i, msg))) = next else {
            return Err(err(format!(
                "room {room}: {acks} acks, {events}/{expected} PEER_JOINED before the deadline"
            )));
        };
        let msg = msg?;
        let Message::Binary(b) = msg else { continue };
        match classify(Target::SignalManager, &b) {
            Incoming::Ack(0x33) => {
                acks += 1;
                sh.ack(sent_at[i]);
            }
            Incoming::PeerJoined => {
                events += 1;
                sh.event();
            }
            Incoming::Error(e) => return Err(err(e)),
            _ => {}
        }
    }
    Ok(())
}

async fn mb_storm_room(
    ep: &Endpoint,
    first: u32,
    room: String,
    m: u32,
    sh: Rc<StormState>,
    sem: Rc<tokio::sync::Semaphore>,
) -> Result<()> {
    let expected = u64::from(m) * u64::from(m - 1) / 2;
    let joins = (0..m).map(|k| {
        let (sh, sem, room) = (sh.clone(), sem.clone(), room.clone());
        async move {
            let _permit = sem.acquire().await.map_err(err)?;
            let t = now_ns();
            let p = ep.connect(first + k, Some(&room)).await?;
            sh.ack(t);
            Ok::<Ws, crate::target::BenchError>(p.ws)
        }
    });
    let conns = futures_util::future::join_all(joins)
        .await
        .into_iter()
        .collect::<Result<Vec<Ws>>>()?;
    let mut rx = futures_util::stream::select_all(conns);
    let mut events = 0u64;
    let deadline = instant_at(now_ns() + 30_000_000_000);
    while events < expected {
        let next = tokio::time::timeout_at(deadline, rx.next()).await;
        let Ok(Some(msg)) = next else {
            return Err(err(format!(
                "room {room}: {events}/{expected} NewPeer before the deadline"
            )));
        };
        let msg = msg?;
        if let Message::Text(t) = &msg
            && classify(Target::Matchbox, t.as_bytes()) == Incoming::PeerJoined
        {
            events += 1;
            sh.event();
        }
    }
    Ok(())
}
