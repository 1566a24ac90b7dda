#!/usr/bin/env bash
# Cross-node relay: the same relay run against one node and against a cluster of two
# nodes over Redis, in one sitting. Starts its own PostgreSQL (initdb on a free port) and
# its own redis-server; every server process is pinned to CPU 0 and signal-bench to CPU 1.
# With two nodes, signal-bench spreads clients over both (--also-addr), so every pair's
# two peers are on different nodes, and counts both nodes' CPU (--also-pid).
#
#   scripts/bench-cluster.sh            # 100 pairs, K=4, 200 B and 4 KB, 3 rounds
#   ROUNDS=1 DURATION=5 scripts/bench-cluster.sh
#   PERF=1 ROUNDS=1 scripts/bench-cluster.sh   # also perf-records the first node
#   STEPS="latency" LAT_RATE=20000 scripts/bench-cluster.sh   # some of: relay storm latency
#   REDIS_CLUSTER=1 scripts/bench-cluster.sh   # the nodes on a Redis Cluster of three primaries
#   STEPS=resume scripts/bench-cluster.sh      # two nodes: resume off, on for the nodes only, on for every client
#
# Prints tables of msgs per server-CPU-second and p99 latency at saturation, joins/s in
# a join storm, and latency at a fixed rate, each cluster beside the single node. The JSON of every run stays in $WORK.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/bench-cluster.XXXXXX)}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
PAIRS=${PAIRS:-100}
SECRET=signal-bench-secret-not-for-production
PGDATA_DIR=$(mktemp -d /tmp/bench-cluster-pg.XXXXXX)
chmod 755 "$PGDATA_DIR"
mkdir -p "$WORK/bin"
log() { echo "[bench-cluster] $*" >&2; }

(cd "$ROOT" && cargo build --release -q -p signal-bench -p signal-server)
cp "$ROOT/target/release/signal-bench" "$ROOT/target/release/signal-manager-service" "$WORK/bin/"

. "$ROOT/scripts/bench/common.sh"

STEPS=${STEPS:-relay storm latency}
PG_PID= REDIS_PID= PIDS=()
stop_servers() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_servers
  [ -n "$REDIS_PID" ] && kill $REDIS_PID 2>/dev/null
  [ -n "$PG_PID" ] && kill -INT "$PG_PID" 2>/dev/null
  sleep 1
  rm -rf "$PGDATA_DIR" "$WORK/bin"
  echo "bench-cluster.sh: runs and server logs in $WORK" >&2
}
trap cleanup EXIT

start_pg "$PGDATA_DIR" "$WORK/pg.log"
REDIS_CLUSTER=${REDIS_CLUSTER:-0}
REDIS_LINE=
if [ "$REDIS_CLUSTER" = 1 ]; then
  # Three primaries on CPU 0 (cluster bus on port + 10000), formed by redis-cli.
  ports=() REDIS_PID=
  for i in 1 2 3; do
    p=$(python3 -c 'import socket
while True:
    s=socket.socket(); s.bind(("127.0.0.1",0)); p=s.getsockname()[1]; s.close()
    if p < 55000:
        b=socket.socket()
        try:
            b.bind(("127.0.0.1",p+10000)); b.close(); print(p); break
        except OSError: pass')
    mkdir -p "$WORK/redis-$p"
    taskset -c 0 redis-server --port "$p" --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$WORK/redis-$p/nodes.conf" --dir "$WORK/redis-$p" \
      --loglevel warning >"$WORK/redis-$p.log" 2>&1 &
    REDIS_PID="$REDIS_PID $!"
    ports+=("$p")
    wait_port "$p"
  done
  redis-cli --cluster create "${ports[@]/#/127.0.0.1:}" --cluster-replicas 0 --cluster-yes >"$WORK/redis-create.log"
  for _ in $(seq 1 100); do
    redis-cli -p "${ports[0]}" cluster info | grep -q cluster_state:ok && break
    sleep 0.1
  done
  REDIS_PORT=${ports[0]}
  REDIS_LINE="redis_cluster_urls = [\"redis://127.0.0.1:${ports[0]}\", \"redis://127.0.0.1:${ports[1]}\", \"redis://127.0.0.1:${ports[2]}\"]"
fi
if [ "$REDIS_CLUSTER" != 1 ]; then
REDIS_PORT=$(free_port)
REDIS_LINE="redis_url = \"redis://127.0.0.1:$REDIS_PORT\""
taskset -c 0 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --loglevel warning >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!
wait_port "$REDIS_PORT"
fi
log "PostgreSQL on $PG_PORT, Redis on $REDIS_PORT"

n=0
node() { # cluster(0|1) node_id [more toml] -> starts a node; sets NODE_PORT and NODE_PID
  n=$((n + 1))
  local f=$WORK/config-$n.toml port
  port=$(free_port)
  cp "$ROOT/scripts/bench/signal-manager.toml" "$f"
  printf '\n[database]\nurl = "postgres://signal@127.0.0.1:%s/postgres"\nmax_connections = 16\n' "$PG_PORT" >>"$f"
  if [ "$1" = 1 ]; then
    printf '\n[cluster]\n%s\nnode_id = "%s"\n' "$REDIS_LINE" "$2" >>"$f"
  fi
  if [ $# -gt 2 ]; then printf '\n%s\n' "$3" >>"$f"; fi
  SIGNAL_MANAGER_SERVER_PORT=$port taskset -c 0 "$WORK/bin/signal-manager-service" -c "$f" \
    >"$WORK/$2-$n.log" 2>&1 &
  NODE_PID=$!
  NODE_PORT=$port
  PIDS+=("$NODE_PID")
  wait_port "$port"
}

relay() { # label size addr pid [also_addr also_pid]
  local label=$1 size=$2 addr=$3 pid=$4
  local extra=(${RELAY_ARGS:-})
  if [ $# -gt 4 ]; then extra+=(--also-addr "$5" --also-pid "$6"); fi
  SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$WORK/bin/signal-bench" relay \
    --target signal-manager --addr "$addr" --server-pid "$pid" "${extra[@]}" \
    --pairs "$PAIRS" --window 4 --duration "$DURATION" --warmup 2 --sdp-every 0 --rate "${RATE:-0}" \
    --candidate-size "$size" --label "$label" --json "$WORK/$label.json" >/dev/null
}

for round in $(seq 1 "$ROUNDS"); do
  [[ " $STEPS " == *" relay "* ]] || break
  for size in 200 4096; do
    node 0 single
    relay "single-$size-r$round" "$size" "127.0.0.1:$NODE_PORT" "$NODE_PID"
    stop_servers
    node 1 "a$round$size"; pa=$NODE_PORT pida=$NODE_PID
    node 1 "b$round$size"; pb=$NODE_PORT pidb=$NODE_PID
    sleep 1
    redis-cli -p "$REDIS_PORT" CONFIG RESETSTAT >/dev/null
    perf_pid=
    if [ -n "${PERF:-}" ]; then
      perf record ${PERF_ARGS:--F 999 -g} -p "$pida" -o "$WORK/perf-a-$size-r$round.data" >/dev/null 2>&1 &
      perf_pid=$!
    fi
    relay "cluster-$size-r$round" "$size" "127.0.0.1:$pa" "$pida" "127.0.0.1:$pb" "$pidb"
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    redis-cli -p "$REDIS_PORT" INFO commandstats | grep -E "cmdstat_(publish|evalsha|hgetall|pipeline|hexists)" >"$WORK/cluster-$size-r$round.redis" || true
    stop_servers
    log "round $round, $size B done"
  done
done

# Resume across nodes, two nodes each time: "roff" with session.resume_window = 0 (nothing
# kept), "rnodes" with resume on but clients that do not ask for it (every message between
# nodes appended to the receiving node's inbox stream), "ron" with every client resumable
# (each batch it is sent kept in Redis before it is written).
for round in $(seq 1 "$ROUNDS"); do
  [[ " $STEPS " == *" resume "* ]] || break
  for size in 200 4096; do
    for mode in roff rnodes ron; do
      more=
      [ "$mode" = roff ] && more=$'[session]\nresume_window = 0'
      args=
      [ "$mode" = ron ] && args=--resume
      node 1 "a$mode$round$size" "$more"; pa=$NODE_PORT pida=$NODE_PID
      node 1 "b$mode$round$size" "$more"; pb=$NODE_PORT pidb=$NODE_PID
      sleep 1
      RELAY_ARGS=$args relay "$mode-$size-r$round" "$size" "127.0.0.1:$pa" "$pida" "127.0.0.1:$pb" "$pidb"
      stop_servers
    done
    log "round $round, resume $size B done"
  done
done

# Join storms: PEERS peers joining rooms of 8, members of a room spread over the nodes.
storm() { # label addr pid [also_addr also_pid]
  local label=$1 addr=$2 pid=$3
  local extra=()
  if [ $# -gt 3 ]; then extra=(--also-addr "$4" --also-pid "$5"); fi
  SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$WORK/bin/signal-bench" storm \
    --target signal-manager --addr "$addr" --server-pid "$pid" "${extra[@]}" \
    --label "$label" --json "$WORK/$label.json" --peers "$PEERS_STORM" --room-size 8 \
    --concurrency 256 >/dev/null
}
PEERS_STORM=${PEERS_STORM:-2000}
for round in $(seq 1 "$ROUNDS"); do
  [[ " $STEPS " == *" storm "* ]] || break
  node 0 "single-storm$round"
  storm "single-j8-r$round" "127.0.0.1:$NODE_PORT" "$NODE_PID"
  stop_servers
  node 1 "a-storm$round"; pa=$NODE_PORT pida=$NODE_PID
  node 1 "b-storm$round"; pb=$NODE_PORT pidb=$NODE_PID
  sleep 1
  storm "cluster-j8-r$round" "127.0.0.1:$pa" "$pida" "127.0.0.1:$pb" "$pidb"
  stop_servers
  log "round $round, join storm done"
done

# Latency at a fixed offered rate both setups carry (LAT_RATE msgs/s over all pairs),
# beside Redis's own round trip as redis-cli measures it.
LAT_RATE=${LAT_RATE:-20000}
for round in $(seq 1 "$ROUNDS"); do
  [[ " $STEPS " == *" latency "* ]] || break
  for size in 200 4096; do
    node 0 "single-lat$round$size"
    RATE=$LAT_RATE relay "single-l$size-r$round" "$size" "127.0.0.1:$NODE_PORT" "$NODE_PID"
    stop_servers
    node 1 "a-lat$round$size"; pa=$NODE_PORT pida=$NODE_PID
    node 1 "b-lat$round$size"; pb=$NODE_PORT pidb=$NODE_PID
    sleep 1
    RATE=$LAT_RATE relay "cluster-l$size-r$round" "$size" "127.0.0.1:$pa" "$pida" "127.0.0.1:$pb" "$pidb"
    stop_servers
  done
  timeout 3 taskset -c 1 redis-cli -p "$REDIS_PORT" --latency --raw >"$WORK/redis-rtt-r$round.txt" 2>/dev/null || true
  log "round $round, latency at $LAT_RATE msgs/s done"
done

python3 - "$WORK" <<'PY'
import json, statistics, sys, glob, os
work = sys.argv[1]
runs = {}
for f in glob.glob(os.path.join(work, "*.json")):
    v = json.load(open(f))
    kind, size, _ = v["label"].split("-")
    runs.setdefault((kind, int(size) if size.isdigit() else size), []).append(v)
print("| size | single node msgs/server-CPU-s | two nodes msgs/server-CPU-s (both nodes' CPU) | ratio | single p99 | two nodes p99 | lost |")
print("|---|---|---|---|---|---|---|")
for size in (200, 4096):
    s, c = runs.get(("single", size), []), runs.get(("cluster", size), [])
    if not s or not c:
        continue
    ws = statistics.median(r["server"]["work_per_cpu_s"] for r in s)
    wc = statistics.median(r["server"]["work_per_cpu_s"] for r in c)
    ps = statistics.median(r["latency"]["p99_us"] for r in s)
    pc = statistics.median(r["latency"]["p99_us"] for r in c)
    lost = sum(r["lost"] for r in s + c)
    print(f"| {size} B | {ws:,.0f} | {wc:,.0f} | {wc/ws:.2f}x | {ps/1000:.2f} ms | {pc/1000:.2f} ms | {lost} |")
if any(("roff", n) in runs for n in (200, 4096)):
    print()
    print("| two nodes, size | resume off: msgs/server-CPU-s | on, clients not resumable | ratio | on, every client resumable | ratio | p99 off / nodes / every client | lost |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (200, 4096):
        o, n, r = (runs.get((m, size), []) for m in ("roff", "rnodes", "ron"))
        if not o or not n or not r:
            continue
        w = lambda rs: statistics.median(x["server"]["work_per_cpu_s"] for x in rs)
        p = lambda rs: statistics.median(x["latency"]["p99_us"] for x in rs) / 1000
        lost = sum(x["lost"] for x in o + n + r)
        print(f"| {size} B | {w(o):,.0f} | {w(n):,.0f} | {w(n)/w(o):.2f}x | {w(r):,.0f} | {w(r)/w(o):.2f}x | {p(o):.2f} / {p(n):.2f} / {p(r):.2f} ms | {lost} |")
s, c = runs.get(("single", "j8"), []), runs.get(("cluster", "j8"), [])
if s and c:
    print()
    print("| join storm, rooms of 8 | single node | two nodes (both nodes' CPU) | ratio |")
    print("|---|---|---|---|")
    for key, name in (("joins_per_s", "joins/s"), ("work_per_cpu_s", "joins per server-CPU-second")):
        pick = (lambda r: r[key]) if key == "joins_per_s" else (lambda r: r["server"][key])
        vs = statistics.median(pick(r) for r in s)
        vc = statistics.median(pick(r) for r in c)
        print(f"| {name} | {vs:,.0f} | {vc:,.0f} | {vc/vs:.2f}x |")
rtts = []
for f in glob.glob(os.path.join(work, "redis-rtt-r*.txt")):
    parts = open(f).read().split()
    if len(parts) >= 3:
        rtts.append(float(parts[2]))  # min max avg samples: the average, ms
if any(("single", f"l{n}") in runs for n in (200, 4096)):
    rtt = statistics.median(rtts) if rtts else float("nan")
    print()
    print(f"| at {os.environ.get('LAT_RATE', '20000')} msgs/s | one node p50 | p99 | two nodes p50 | p99 | bound: (one node p99 + Redis RTT {rtt:.3f} ms) x 1.2 |")
    print("|---|---|---|---|---|---|")
    for size in (200, 4096):
        s, c = runs.get(("single", f"l{size}"), []), runs.get(("cluster", f"l{size}"), [])
        if not s or not c:
            continue
        p = lambda rs, q: statistics.median(r["latency"][q] for r in rs) / 1000
        bound = (p(s, "p99_us") + rtt) * 1.2
        verdict = "within" if p(c, "p99_us") <= bound else "over"
        print(f"| {size} B | {p(s, 'p50_us'):.2f} ms | {p(s, 'p99_us'):.2f} ms | {p(c, 'p50_us'):.2f} ms | {p(c, 'p99_us'):.2f} ms | {bound:.2f} ms ({verdict}) |")
PY
