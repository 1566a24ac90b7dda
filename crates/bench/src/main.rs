//! `signal-bench`: see the library docs. Progress goes to stderr, the result (JSON) to
//! stdout or `--json FILE`.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};
use signal_bench::{
    AbuseOpts, Common, Endpoint, FanoutOpts, IdleOpts, RelayOpts, StormOpts, Target, abuse, fanout,
    idle, relay, run_id, run_local, source_net, storm,
};

/// Load generator for signaling servers over loopback.
#[derive(Parser, Debug)]
#[command(name = "signal-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// P pairs exchanging candidates and SDP: relayed msgs/s, msgs per server-CPU-second,
    /// latency percentiles.
    Relay {
        #[command(flatten)]
        g: Global,
        /// Peer pairs.
        #[arg(long, default_value_t = 100)]
        pairs: u32,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds of warm-up before measuring.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Offered messages/s over all pairs (constant rate); 0 = as fast as the window allows.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Messages in flight per pair.
        #[arg(long, default_value_t = 8)]
        window: u32,
        /// Every Nth message of each direction is an offer/answer (0: candidates only).
        #[arg(long, default_value_t = 6)]
        sdp_every: u32,
        /// Candidate message size, bytes.
        #[arg(long, default_value_t = 200)]
        candidate_size: usize,
        /// Offer/answer message size, bytes.
        #[arg(long, default_value_t = 4096)]
        sdp_size: usize,
    },
    /// N authenticated connections held: connect rate, server RSS per connection, idle CPU.
    Idle {
        #[command(flatten)]
        g: Global,
        /// Connections.
        #[arg(long, default_value_t = 1000)]
        conns: u32,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 5.0)]
        hold: f64,
    },
    /// N peers joining rooms of M as fast as possible: joins/s and time until every member
    /// saw every join event.
    Storm {
        #[command(flatten)]
        g: Global,
        /// Peers.
        #[arg(long, default_value_t = 1000)]
        peers: u32,
        /// Members per room.
        #[arg(long, default_value_t = 8)]
        room_size: u32,
    },
    /// One sender per room of M: deliveries/s and latency to every member.
    Fanout {
        #[command(flatten)]
        g: Global,
        /// Rooms.
        #[arg(long, default_value_t = 20)]
        rooms: u32,
        /// Members per room.
        #[arg(long, default_value_t = 50)]
        room_size: u32,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds of warm-up.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Messages/s per room; 0 = as fast as the window allows.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        /// Messages in flight per room.
        #[arg(long, default_value_t = 4)]
        window: u32,
        /// Message size, bytes.
        #[arg(long, default_value_t = 200)]
        size: usize,
        /// Floor only: one message per tick to the whole room (encode-once lower bound)
        /// instead of one per receiver.
        #[arg(long)]
        broadcast: bool,
    },
    /// Healthy pairs relaying at a fixed rate, alone and then while hostile clients attack
    /// from another address: the pairs' p99 in both rounds and the server's peak RSS.
    Abuse {
        #[command(flatten)]
        g: Global,
        /// Healthy pairs.
        #[arg(long, default_value_t = 50)]
        pairs: u32,
        /// Offered messages/s over all healthy pairs.
        #[arg(long, default_value_t = 2000.0)]
        rate: f64,
        /// Measured seconds of each round.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Seconds of warm-up of each round.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Ping flooders (pings without reading).
        #[arg(long, default_value_t = 4)]
        ping_flooders: u32,
        /// Clients sending CBOR nesting bombs.
        #[arg(long, default_value_t = 2)]
        bombers: u32,
        /// Slowloris clients (a request head a byte a second).
        #[arg(long, default_value_t = 20)]
        slowloris: u32,
        /// Sockets that never send a byte.
        #[arg(long, default_value_t = 100)]
        silent: u32,
        /// WebSockets upgraded and never sent CONNECT.
        #[arg(long, default_value_t = 100)]
        idle_upgrades: u32,
        /// Pairs of rounds (alone, then attacked); the median ratio is reported.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Runs the floor relay (see `signal_bench::floor`) until killed.
    FloorServer {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Address to bind (loopback).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Leave Nagle's algorithm on (no TCP_NODELAY on accepted sockets), to show what
        /// it costs a relay.
        #[arg(long)]
        nagle: bool,
    },
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// The server under test.
    #[arg(long, value_enum)]
    target: Target,
    /// Its address (127.0.0.0/8 only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// signal-manager's `auth.token_secret`, to mint one JWT per simulated client.
    #[arg(long, env = "SIGNAL_BENCH_JWT_SECRET")]
    jwt_secret: Option<String>,
    /// Bind client sockets to N source addresses 127.S.0.1 ..= 127.S.0.N, S random per run
    /// (past ~28k ephemeral ports per address).
    #[arg(long, default_value_t = 4)]
    sources: u8,
    /// The server's pid: CPU seconds and RSS are read from /proc before and after.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Another node of the same signal-manager cluster (repeat for more): clients are
    /// spread over `--addr` and these, so a pair's two peers are on different nodes.
    #[arg(long = "also-addr")]
    also_addr: Vec<SocketAddr>,
    /// The pid of another node (repeat): its CPU and RSS are added to the server's.
    #[arg(long = "also-pid")]
    also_pid: Vec<u32>,
    /// Handshakes (or setup requests) in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Read buffer of each client socket, bytes.
    #[arg(long, default_value_t = 16384)]
    read_buffer: usize,
    /// signal-manager: every client asks for a resumable session (CONNECT `resume: true`),
    /// so the server keeps what it sends each one for a RESUME.
    #[arg(long)]
    resume: bool,
    /// Free-form label stored in the result.
    #[arg(long)]
    label: Option<String>,
    /// Write the JSON result here instead of stdout.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl Global {
    fn endpoint(&self) -> Endpoint {
        Endpoint {
            target: self.target,
            addr: self.addr,
            also: self.also_addr.clone(),
            jwt_secret: self.jwt_secret.clone(),
            sources: self.sources.max(1),
            source_net: source_net(),
            run_id: run_id(),
            read_buffer: self.read_buffer,
            resume: self.resume,
        }
    }
    fn common(&self) -> Common {
        Common {
            server_pid: self.server_pid,
            also_pids: self.also_pid.clone(),
            concurrency: self.concurrency,
            label: self.label.clone(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (g, result) = match cli.command {
        Command::FloorServer { port, host, nagle } => {
            if !host.is_loopback() {
                eprintln!("signal-bench: the floor server binds loopback only");
                return ExitCode::from(2);
            }
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("signal-bench: runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let r = rt.block_on(async move {
                let l = tokio::net::TcpListener::bind((host, port)).await?;
                eprintln!("floor relay listening on {}", l.local_addr()?);
                signal_bench::floor::serve_with(l, !nagle).await
            });
            if let Err(e) = r {
                eprintln!("signal-bench floor-server: {e}");
                return ExitCode::FAILURE;
            }
            return ExitCode::SUCCESS;
        }
        Command::Relay {
            g,
            pairs,
            duration,
            warmup,
            rate,
            window,
            sdp_every,
            candidate_size,
            sdp_size,
        } => {
            let o = RelayOpts {
                pairs,
                duration,
                warmup,
                rate,
                window,
                sdp_every,
                candidate_size,
                sdp_size,
            };
            let (ep, c) = (g.endpoint(), g.common());
            let r = run_local(async move { relay(&ep, &o, &c).await });
            (g, r)
        }
        Command::Abuse {
            g,
            pairs,
            rate,
            duration,
            warmup,
            ping_flooders,
            bombers,
            slowloris,
            silent,
            idle_upgrades,
            rounds,
        } => {
            let o = AbuseOpts {
                relay: RelayOpts {
                    pairs,
                    duration,
                    warmup,
                    rate,
                    window: 64,
                    sdp_every: 6,
                    candidate_size: 200,
                    sdp_size: 4096,
                },
                ping_flooders,
                bombers,
                slowloris,
                silent,
                idle_upgrades,
                rounds,
            };
            let (ep, c) = (g.endpoint(), g.common());
            let r = run_local(async move { abuse(&ep, &o, &c).await });
            (g, r)
        }
        Command::Idle { g, conns, hold } => {
            let o = IdleOpts { conns, hold };
            let (mut ep, c) = (g.endpoint(), g.common());
            // Idle clients read almost nothing: keep the generator lean too.
            ep.read_buffer = ep.read_buffer.min(4096);
            let r = run_local(async move { idle(&ep, &o, &c).await });
            (g, r)
        }
        Command::Storm {
            g,
            peers,
            room_size,
        } => {
            let o = StormOpts {
                peers,
                room_size,
                timeout: 30.0,
            };
            let (ep, c) = (g.endpoint(), g.common());
            let r = run_local(async move { storm(&ep, &o, &c).await });
            (g, r)
        }
        Command::Fanout {
            g,
            rooms,
            room_size,
            duration,
            warmup,
            rate,
            window,
            size,
            broadcast,
        } => {
            let o = FanoutOpts {
                broadcast,
                rooms,
                room_size,
                duration,
                warmup,
                rate,
                window,
                size,
            };
            let (ep, c) = (g.endpoint(), g.common());
            let r = run_local(async move { fanout(&ep, &o, &c).await });
            (g, r)
        }
    };
    let value = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("signal-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = match serde_json::to_string_pretty(&value) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("signal-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match &g.json {
        Some(p) => {
            if let Err(e) = std::fs::write(p, text + "\n") {
                eprintln!("signal-bench: writing {}: {e}", p.display());
                return ExitCode::FAILURE;
            }
        }
        None => println!("{text}"),
    }
    let errors = value["errors"].as_u64().unwrap_or(0);
    if errors > 0 {
        eprintln!("signal-bench: {errors} errors (see error_samples)");
    }
    ExitCode::SUCCESS
}
