#!/usr/bin/env bash
# Benchmarks signal-manager against the floor (a minimal tokio-tungstenite relay),
# PeerJS (npm `peer`) and matchbox_server, in one run on this machine, over loopback.
#
#   scripts/bench.sh            # everything (about 10 minutes), results in docs/benchmarks/
#   QUICK=1 scripts/bench.sh    # small sizes and 3-second windows, results in the cache dir only
#
# What it does: builds the release binaries (copied to the cache dir so a rebuild in the
# tree cannot change them mid-run), installs the peers when missing (npm `peer` and
# `cargo install matchbox_server` into $SIGNAL_BENCH_CACHE, default ~/.cache/signal-bench,
# and matplotlib into a venv there), then for each scenario and target starts a fresh
# server pinned to CPU 0 and the generator pinned to CPU 1, and writes one JSON per run.
# scripts/bench/report.py merges them into docs/benchmarks/results.json and draws the
# charts. Every load goes to 127.0.0.1, bounded in size and duration.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SIGNAL_BENCH_CACHE:-$HOME/.cache/signal-bench}
QUICK=${QUICK:-0}
STAMP=$(date +%Y%m%d-%H%M%S)
RUNS=$CACHE/runs/$STAMP
OUT=${SIGNAL_BENCH_OUT:-$ROOT/docs/benchmarks}
[ "$QUICK" = 1 ] && OUT=$RUNS/out
BIN=$CACHE/bin
PEER_VERSION=1.0.2
MATCHBOX_VERSION=0.15.0
SECRET=signal-bench-secret-not-for-production
PORT=18480
T0=$(date +%s)

# Sizes: bounded in count and time (loopback only).
if [ "$QUICK" = 1 ]; then
  ROUNDS=1; DUR=3; WARM=1; PAIRS=20; RATE_PAIRS=100; RATE=5000
  IDLE_MAX=2000; STORM_PEERS=400; FAN_ROOMS=5; FAN_SIZE=20
else
  ROUNDS=3; DUR=10; WARM=2; PAIRS=100; RATE_PAIRS=500; RATE=10000
  IDLE_MAX=19000; STORM_PEERS=2000; FAN_ROOMS=20; FAN_SIZE=50
fi
WINDOW=8

log() { printf '\n== %s (%ss)\n' "$*" "$(( $(date +%s) - T0 ))" >&2; }

mkdir -p "$CACHE" "$RUNS" "$OUT" "$BIN"

# --- tools -------------------------------------------------------------------------------
if ! command -v taskset >/dev/null; then
  log "installing util-linux (taskset)"
  apt-get update -qq && apt-get install -y -qq util-linux >/dev/null
fi
command -v node >/dev/null || { echo "bench.sh: node and npm are needed for PeerJS" >&2; exit 1; }
if [ "$(nproc)" -lt 2 ]; then
  echo "bench.sh: needs 2 CPUs (server on CPU 0, generator on CPU 1)" >&2; exit 1
fi

log "building release binaries"
(cd "$ROOT" && cargo build --release -q -p signal-bench -p signal-server)
cp "$ROOT/target/release/signal-bench" "$ROOT/target/release/signal-manager-service" "$BIN/"

if [ ! -f "$CACHE/peerjs/node_modules/peer/package.json" ] ||
   ! grep -q "\"version\": \"$PEER_VERSION\"" "$CACHE/peerjs/node_modules/peer/package.json"; then
  log "installing npm peer@$PEER_VERSION"
  mkdir -p "$CACHE/peerjs"
  (cd "$CACHE/peerjs" && { [ -f package.json ] || npm init -y >/dev/null; } &&
     npm install --no-audit --no-fund "peer@$PEER_VERSION" >/dev/null)
fi
if [ ! -x "$CACHE/matchbox/bin/matchbox_server" ]; then
  log "installing matchbox_server $MATCHBOX_VERSION"
  cargo install matchbox_server --version "$MATCHBOX_VERSION" --locked --root "$CACHE/matchbox"
fi
if ! "$CACHE/venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
  log "installing matplotlib into $CACHE/venv"
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q matplotlib
fi

# Descriptors: the idle scenario holds N sockets in the server and N in the generator.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
IDLE_CONNS=$(( NOFILE - 1000 < IDLE_MAX ? NOFILE - 1000 : IDLE_MAX ))
echo "descriptor limit $NOFILE: idle scenario at $IDLE_CONNS connections" >&2

# --- servers -----------------------------------------------------------------------------
SERVER_PID=
EXTRA_ENV=()  # extra VAR=value for the next server
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench.sh: nothing listens on $1" >&2; return 1
}

start_server() { # target
  PORT=$((PORT + 1))
  local log=$RUNS/server-$1-$PORT.log
  case $1 in
    signal-manager)
      env "${EXTRA_ENV[@]}" SIGNAL_MANAGER_SERVER_PORT=$PORT SIGNAL_MANAGER_DATABASE_URL="sqlite://$RUNS/sm-$PORT.db" \
        taskset -c 0 "$BIN/signal-manager-service" -c "$ROOT/scripts/bench/signal-manager.toml" >"$log" 2>&1 &
      ;;
    floor) taskset -c 0 "$BIN/signal-bench" floor-server --port "$PORT" >"$log" 2>&1 & ;;
    peerjs)
      NODE_PATH="$CACHE/peerjs/node_modules" taskset -c 0 node "$ROOT/scripts/bench/peerjs-server.cjs" "$PORT" >"$log" 2>&1 &
      ;;
    matchbox) RUST_LOG=warn taskset -c 0 "$CACHE/matchbox/bin/matchbox_server" "127.0.0.1:$PORT" >"$log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  wait_port "$PORT"
  sleep 0.3
}

stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

# run NAME TARGET SCENARIO ARGS...: a fresh server, one generator run, one JSON.
# (EXTRA_ENV, if set, goes to that server's environment.)
run() {
  local name=$1 target=$2 scenario=$3; shift 3
  log "$name"
  start_server "$target"
  if ! SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$BIN/signal-bench" "$scenario" \
      --target "$target" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" \
      --label "$name" --json "$RUNS/$name.json" "$@"; then
    echo "bench.sh: $name failed" >&2
  fi
  stop_server
  EXTRA_ENV=()
}

TARGETS="floor signal-manager peerjs matchbox"

# 1. Relay at saturation (window-limited), interleaved rounds.
for r in $(seq 1 "$ROUNDS"); do
  for t in $TARGETS; do
    run "relay-sat-$t-r$r" "$t" relay --pairs "$PAIRS" --window "$WINDOW" --duration "$DUR" --warmup "$WARM"
  done
done

# 2. Relay at one fixed offered load every target sustains: latency without saturation.
for t in $TARGETS; do
  run "relay-rate-$t" "$t" relay --pairs "$RATE_PAIRS" --rate "$RATE" --window 64 --duration "$DUR" --warmup "$WARM"
done

# 3. Idle connections.
for t in $TARGETS; do
  run "idle-$t" "$t" idle --conns "$IDLE_CONNS" --hold 5 --concurrency 64 --sources 8
done
# What signal-manager's per-connection socket buffers cost: the smallest the config allows.
EXTRA_ENV=(SIGNAL_MANAGER_SERVER_READ_BUFFER_SIZE=1024 SIGNAL_MANAGER_SERVER_WRITE_BUFFER_SIZE=1024)
run "idle-signal-manager-buf1k" signal-manager idle --conns "$IDLE_CONNS" --hold 5 --concurrency 64 --sources 8

# 4. Join storms (targets with rooms and join events).
for t in signal-manager matchbox; do
  for m in 8 50; do
    run "storm-$t-m$m" "$t" storm --peers "$STORM_PEERS" --room-size "$m" --concurrency 256
  done
done

# 5. Fan-out: one sender per room, per-receiver sends (and the floor's broadcast).
for t in floor signal-manager matchbox; do
  run "fanout-$t" "$t" fanout --rooms "$FAN_ROOMS" --room-size "$FAN_SIZE" --window 4 --duration "$DUR" --warmup "$WARM"
done
run "fanout-floor-broadcast" floor fanout --rooms "$FAN_ROOMS" --room-size "$FAN_SIZE" --window 4 --duration "$DUR" --warmup "$WARM" --broadcast

# --- results -----------------------------------------------------------------------------
log "report"
TOTAL=$(( $(date +%s) - T0 ))
"$CACHE/venv/bin/python" "$ROOT/scripts/bench/report.py" "$RUNS" "$OUT" --total-seconds "$TOTAL" \
  --peer-version "$PEER_VERSION" --matchbox-version "$MATCHBOX_VERSION" | tee "$RUNS/summary.md"
echo "bench.sh: done in ${TOTAL}s; runs in $RUNS, results in $OUT" >&2
