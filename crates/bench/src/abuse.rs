//! The abuse scenario: healthy pairs relay at a fixed rate, once alone and once while
//! hostile clients attack the same server from another loopback address. Reports the
//! healthy pairs' latency in both rounds (the ratio of their p99s) and the server's peak
//! RSS in each.
//!
//! The attackers, each a loop that reconnects whenever the server closes it:
//! * **ping flooders** upgrade and send 125-byte pings without ever reading;
//! * **nesting bombers** send a CONNECT whose CBOR metadata nests 4,000 arrays deep,
//!   read the 400, and send it again;
//! * **slowloris** clients send a request head one byte a second;
//! * **silent** sockets connect and send nothing;
//! * **idle upgrades** open WebSockets and never send CONNECT, up to the per-IP maximum
//!   together with the others (all attackers share one source address).

use std::{
    cell::Cell,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    rc::Rc,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};

use crate::{
    procfs,
    scenario::{Common, RelayOpts, relay},
    target::{Endpoint, Result, err},
};

/// Abuse options.
#[derive(Debug, Clone)]
pub struct AbuseOpts {
    /// The healthy load (use a fixed `rate`).
    pub relay: RelayOpts,
    /// Ping flooders.
    pub ping_flooders: u32,
    /// Nesting bombers.
    pub bombers: u32,
    /// Slowloris clients.
    pub slowloris: u32,
    /// Silent sockets.
    pub silent: u32,
    /// Idle upgraded WebSockets.
    pub idle_upgrades: u32,
    /// Pairs of rounds (alone, attacked).
    pub rounds: u32,
}

/// What the attackers did and met.
#[derive(Default)]
struct Tally {
    connects: AtomicU64,
    refused: AtomicU64,
    closed_by_server: AtomicU64,
    ping_bytes: AtomicU64,
    bombs_answered: AtomicU64,
}

fn add(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// One measured round: the relay's result and the server's peak RSS.
struct Round {
    relay: Value,
    peak_rss_kib: u64,
}

fn p99(v: &Value) -> f64 {
    v["latency"]["p99_us"].as_f64().unwrap_or(f64::NAN)
}

/// A copy of `ep` with its own client ids and source addresses, for round `n`.
fn round_endpoint(ep: &Endpoint, n: u32) -> Endpoint {
    let mut e = ep.clone();
    e.run_id = format!("{}-r{n}", ep.run_id);
    e.source_net = ep.source_net.wrapping_add(n as u8).max(1);
    e
}

/// The healthy relay with the server's RSS sampled, while `attack` (if any) runs.
async fn round(
    ep: &Endpoint,
    o: &AbuseOpts,
    common: &Common,
    attack_from: Option<IpAddr>,
    tally: &Arc<Tally>,
) -> Result<Round> {
    let peak = Rc::new(Cell::new(0u64));
    let sampler_stop = Rc::new(Cell::new(false));
    let sampler = spawn_rss(common.server_pid, peak.clone(), sampler_stop.clone());
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = attack_from.map(|from| spawn_attackers(o, ep.addr, from, &stop, tally));
    if attackers.is_some() {
        // Let the attack build up before the healthy pairs connect.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let relay = relay(ep, &o.relay, common).await;
    stop.store(true, Ordering::Relaxed);
    sampler_stop.set(true);
    let _ = sampler.await;
    if let Some(t) = attackers {
        match t.join() {
            Ok(r) => r?,
            Err(_) => return Err(err("abuse: the attackers' thread panicked")),
        }
    }
    Ok(Round {
        relay: relay?,
        peak_rss_kib: peak.get(),
    })
}

/// Starts the attackers on a thread of their own, so their loops never delay the healthy
/// pairs' tasks (they share the generator's CPU through the OS scheduler).
fn spawn_attackers(
    o: &AbuseOpts,
    server: SocketAddr,
    from: IpAddr,
    stop: &Arc<AtomicBool>,
    tally: &Arc<Tally>,
) -> std::thread::JoinHandle<Result<()>> {
    let (stop, tally, o) = (stop.clone(), tally.clone(), o.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(err)?;
        tokio::task::LocalSet::new().block_on(&rt, async move {
            let kinds: [(u32, Attack); 5] = [
                (o.ping_flooders, Attack::PingFlood),
                (o.bombers, Attack::Bomb),
                (o.slowloris, Attack::Slowloris),
                (o.silent, Attack::Silent),
                (o.idle_upgrades, Attack::IdleUpgrade),
            ];
            let mut tasks = Vec::new();
            for (n, kind) in kinds {
                for _ in 0..n {
                    let (stop, tally) = (stop.clone(), tally.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        attack(kind, server, from, &stop, &tally).await;
                    }));
                }
            }
            for t in tasks {
                let _ = t.await;
            }
        });
        Ok(())
    })
}

/// A warm-up round, then `rounds` pairs of rounds, each the healthy relay alone and then
/// under attack; the ratio reported is the median of the pairs' p99 ratios (rounds next
/// to each other share the machine's state, which on a shared machine drifts).
pub async fn abuse(ep: &Endpoint, o: &AbuseOpts, common: &Common) -> Result<Value> {
    ep.check()?;
    if o.relay.rate <= 0.0 {
        return Err(err("abuse: give the healthy pairs a fixed --rate"));
    }
    let attacker = IpAddr::V4(Ipv4Addr::new(
        127,
        ep.source_net.wrapping_add(100).max(1),
        0,
        9,
    ));
    let tally = Arc::new(Tally::default());
    eprintln!("[abuse] warm-up round (not measured)");
    let mut warm = o.clone();
    warm.relay.duration = warm.relay.duration.min(3.0);
    round(&round_endpoint(ep, 0), &warm, common, None, &tally).await?;
    let mut pairs = Vec::new();
    for r in 0..o.rounds.max(1) {
        eprintln!("[abuse] round {}: the healthy pairs alone", r + 1);
        let quiet = round(&round_endpoint(ep, 2 * r + 1), o, common, None, &tally).await?;
        eprintln!("[abuse] round {}: the same pairs while attacked", r + 1);
        let loud = round(
            &round_endpoint(ep, 2 * r + 2),
            o,
            common,
            Some(attacker),
            &tally,
        )
        .await?;
        eprintln!(
            "[abuse] round {}: healthy p99 {:.0} us alone, {:.0} us attacked ({:.2}x); server peak RSS {} KiB alone, {} KiB attacked",
            r + 1,
            p99(&quiet.relay),
            p99(&loud.relay),
            p99(&loud.relay) / p99(&quiet.relay),
            quiet.peak_rss_kib,
            loud.peak_rss_kib
        );
        pairs.push((quiet, loud));
    }
    let mut ratios: Vec<f64> = pairs
        .iter()
        .map(|(q, l)| p99(&l.relay) / p99(&q.relay))
        .collect();
    ratios.sort_by(f64::total_cmp);
    let median = ratios[ratios.len() / 2];
    let peak_alone = pairs.iter().map(|(q, _)| q.peak_rss_kib).max().unwrap_or(0);
    let peak_attacked = pairs.iter().map(|(_, l)| l.peak_rss_kib).max().unwrap_or(0);
    eprintln!(
        "[abuse] median p99 ratio {median:.2}x (rounds: {ratios:.2?}); server peak RSS {peak_alone} KiB alone, {peak_attacked} KiB attacked"
    );
    Ok(json!({
        "scenario": "abuse",
        "target": ep.target.name(),
        "label": common.label,
        "params": {
            "ping_flooders": o.ping_flooders, "bombers": o.bombers, "slowloris": o.slowloris,
            "silent": o.silent, "idle_upgrades": o.idle_upgrades, "rounds": o.rounds,
            "pairs": o.relay.pairs, "rate": o.relay.rate, "duration_s": o.relay.duration,
        },
        "p99_ratio_median": median,
        "p99_ratios": ratios,
        "server_peak_rss_kib": { "alone": peak_alone, "attacked": peak_attacked },
        "rounds": pairs.iter().map(|(q, l)| json!({
            "alone": { "relay": q.relay, "server_peak_rss_kib": q.peak_rss_kib },
            "attacked": { "relay": l.relay, "server_peak_rss_kib": l.peak_rss_kib },
        })).collect::<Vec<_>>(),
        "attackers": {
            "connects": tally.connects.load(Ordering::Relaxed),
            "refused": tally.refused.load(Ordering::Relaxed),
            "closed_by_server": tally.closed_by_server.load(Ordering::Relaxed),
            "ping_bytes_sent": tally.ping_bytes.load(Ordering::Relaxed),
            "nesting_bombs_answered": tally.bombs_answered.load(Ordering::Relaxed),
        },
    }))
}

/// Samples the server's RSS every 100 ms into `peak` until `stop`.
fn spawn_rss(
    pid: Option<u32>,
    peak: Rc<Cell<u64>>,
    stop: Rc<Cell<bool>>,
) -> tokio::task::JoinHandle<()> {
    tokio::task::spawn_local(async move {
        let Some(pid) = pid else { return };
        while !stop.get() {
            if let Some(s) = procfs::sample(pid) {
                peak.set(peak.get().max(s.rss_kib));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

#[derive(Debug, Clone, Copy)]
enum Attack {
    PingFlood,
    Bomb,
    Slowloris,
    Silent,
    IdleUpgrade,
}

/// One attacker: connects, attacks until the server closes it, reconnects; until `stop`.
async fn attack(kind: Attack, server: SocketAddr, from: IpAddr, stop: &AtomicBool, t: &Tally) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = connect(server, from).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        add(&t.connects, 1);
        let outcome = match kind {
            Attack::Silent => hold(&mut s, stop).await,
            Attack::Slowloris => slowloris(&mut s, stop).await,
            Attack::PingFlood => match upgrade(&mut s).await {
                Ok(()) => ping_flood(&mut s, stop, t).await,
                Err(e) => Err(e),
            },
            Attack::Bomb => match upgrade(&mut s).await {
                Ok(()) => bomb(&mut s, stop, t).await,
                Err(e) => Err(e),
            },
            Attack::IdleUpgrade => match upgrade(&mut s).await {
                Ok(()) => hold(&mut s, stop).await,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(()) => {}
            Err(Refused) => {
                add(&t.refused, 1);
                // Over the per-IP limit: the slot frees when the server closes another.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        if !stop.load(Ordering::Relaxed) {
            add(&t.closed_by_server, 1);
        }
    }
}

/// The server answered with a refusal (429/503) instead of serving the attacker.
struct Refused;

async fn connect(server: SocketAddr, from: IpAddr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(from, 0))?;
    sock.connect(server).await
}

/// Waits until the server closes the socket or `stop`; a refusal answer is reported.
async fn hold(s: &mut TcpStream, stop: &AtomicBool) -> std::result::Result<(), Refused> {
    let mut b = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await {
            Err(_) => {}
            Ok(Ok(n)) if n > 0 => {
                if b.starts_with(b"HTTP/1.1 4") || b.starts_with(b"HTTP/1.1 5") {
                    return Err(Refused);
                }
            }
            Ok(_) => return Ok(()),
        }
    }
    Ok(())
}

async fn slowloris(s: &mut TcpStream, stop: &AtomicBool) -> std::result::Result<(), Refused> {
    let head = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    for &b in head.iter().chain(std::iter::repeat(&b'a')) {
        if stop.load(Ordering::Relaxed) || s.write_all(&[b]).await.is_err() {
            return Ok(());
        }
        let mut r = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(1), s.read(&mut r)).await {
            Err(_) => {}
            Ok(Ok(n))
                if n > 0 && (r.starts_with(b"HTTP/1.1 4") || r.starts_with(b"HTTP/1.1 5")) =>
            {
                return Err(Refused);
            }
            Ok(_) => return Ok(()),
        }
    }
    Ok(())
}

async fn upgrade(s: &mut TcpStream) -> std::result::Result<(), Refused> {
    let req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    if s.write_all(req).await.is_err() {
        return Err(Refused);
    }
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => return Err(Refused),
        }
    }
    if head.starts_with(b"HTTP/1.1 101") {
        Ok(())
    } else {
        Err(Refused)
    }
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x5e, 0x1f, 0x0c, 0x77];
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n.min(0xffff) as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

async fn ping_flood(
    s: &mut TcpStream,
    stop: &AtomicBool,
    t: &Tally,
) -> std::result::Result<(), Refused> {
    let one = client_frame(0x9, &[0x42; 125]);
    let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 500).collect();
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), s.write_all(&batch)).await {
            Ok(Ok(())) => add(&t.ping_bytes, batch.len() as u64),
            // Stalled: the server stopped reading (it does while our pongs go unread).
            Err(_) => {}
            Ok(Err(_)) => return Ok(()),
        }
        // Has the server closed us?
        let mut b = [0u8; 1];
        if let Ok(0) = s.try_read(&mut b) {
            return Ok(());
        }
    }
    Ok(())
}

/// CBOR CONNECT with metadata nested 4,000 arrays deep, framed for the binary protocol.
fn bomb_frame() -> Vec<u8> {
    let mut p = vec![0xa3, 0x69];
    p.extend_from_slice(b"client_id");
    p.push(0x66);
    p.extend_from_slice(b"attack");
    p.push(0x6a);
    p.extend_from_slice(b"auth_token");
    p.push(0x61);
    p.push(b'x');
    p.push(0x68);
    p.extend_from_slice(b"metadata");
    p.extend(std::iter::repeat_n(0x81, 4000));
    p.push(0x01);
    let frame = crate::target::sm_frame(0x01, *uuid::Uuid::new_v4().as_bytes(), &p);
    // sm_frame writes JSON's payload type; this payload is CBOR (0x05).
    let mut frame = frame.to_vec();
    frame[18] = 0x05;
    client_frame(0x2, &frame)
}

async fn bomb(s: &mut TcpStream, stop: &AtomicBool, t: &Tally) -> std::result::Result<(), Refused> {
    let frame = bomb_frame();
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        if s.write_all(&frame).await.is_err() {
            return Ok(());
        }
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => add(&t.bombs_answered, 1),
            Ok(_) => return Ok(()),
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
