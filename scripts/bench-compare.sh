#!/usr/bin/env bash
# Two builds of signal-manager side by side, with the floor (a minimal tokio-tungstenite
# relay) as the common baseline, in one run: relay at saturation in interleaved rounds,
# and idle memory per connection. For "did this change cost anything?".
#
#   scripts/bench-compare.sh BEFORE_BINARY [AFTER_BINARY]
#
# AFTER_BINARY defaults to this tree's release build. Each run gets a fresh server pinned
# to CPU 0 and the generator pinned to CPU 1; every load goes to 127.0.0.1, bounded in
# size and duration. Prints, per round, relayed messages per server-CPU-second for the
# floor, BEFORE and AFTER, then the medians and the ratios AFTER/BEFORE and AFTER/floor,
# and the idle RSS per connection of both builds. JSON per run in $OUT (default a
# temporary directory, printed at the end).
#
#   ROUNDS=3 DUR=10 PAIRS=100 IDLE=5000 scripts/bench-compare.sh /tmp/old-server
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BEFORE=${1:?usage: scripts/bench-compare.sh BEFORE_BINARY [AFTER_BINARY]}
AFTER=${2:-$ROOT/target/release/signal-manager-service}
ROUNDS=${ROUNDS:-3}; DUR=${DUR:-10}; WARM=${WARM:-2}; PAIRS=${PAIRS:-100}; IDLE=${IDLE:-5000}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
SECRET=signal-bench-secret-not-for-production
PORT=18560

[ -x "$BEFORE" ] || { echo "bench-compare.sh: $BEFORE is not an executable" >&2; exit 1; }
if [ "$#" -lt 2 ]; then
  (cd "$ROOT" && cargo build --release -q --locked -p signal-server -p signal-bench)
fi
(cd "$ROOT" && cargo build --release -q --locked -p signal-bench)
BENCH=$ROOT/target/release/signal-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

SERVER_PID=
stop_server() {
  [ -n "$SERVER_PID" ] || return 0
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
trap stop_server EXIT

start_server() { # floor | PATH_TO_SIGNAL_MANAGER
  PORT=$((PORT + 1))
  if [ "$1" = floor ]; then
    taskset -c 0 "$BENCH" floor-server --port "$PORT" >"$OUT/server-$PORT.log" 2>&1 &
  else
    env SIGNAL_MANAGER_SERVER_PORT=$PORT SIGNAL_MANAGER_DATABASE_URL="sqlite://$OUT/sm-$PORT.db" \
      taskset -c 0 "$1" -c "$ROOT/scripts/bench/signal-manager.toml" >"$OUT/server-$PORT.log" 2>&1 &
  fi
  SERVER_PID=$!
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
  done
  sleep 0.3
}

run() { # NAME SERVER SCENARIO ARGS...
  local name=$1 server=$2 scenario=$3 target=signal-manager; shift 3
  [ "$server" = floor ] && target=floor
  start_server "$server"
  SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$BENCH" "$scenario" --target "$target" \
    --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --label "$name" \
    --json "$OUT/$name.json" "$@" >/dev/null 2>"$OUT/$name.log" ||
    { echo "bench-compare.sh: $name failed (see $OUT/$name.log)" >&2; exit 1; }
  stop_server
}

for r in $(seq 1 "$ROUNDS"); do
  for who in floor before after; do
    case $who in floor) s=floor ;; before) s=$BEFORE ;; after) s=$AFTER ;; esac
    echo "round $r: relay at saturation, $who" >&2
    run "relay-$who-r$r" "$s" relay --pairs "$PAIRS" --window 8 --duration "$DUR" --warmup "$WARM"
  done
done
for who in before after; do
  case $who in before) s=$BEFORE ;; after) s=$AFTER ;; esac
  echo "idle, $who" >&2
  run "idle-$who" "$s" idle --conns "$IDLE" --hold 5 --concurrency 64 --sources 8
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(n): return json.load(open(f"{out}/{n}.json"))
def rate(d): return d["server"]["work_per_cpu_s"]
table = {w: [rate(load(f"relay-{w}-r{r}")) for r in range(1, rounds + 1)] for w in ("floor", "before", "after")}
p99 = {w: [load(f"relay-{w}-r{r}")["latency"]["p99_us"] for r in range(1, rounds + 1)] for w in ("floor", "before", "after")}
for r in range(rounds):
    print(f"round {r+1}: msgs per server-CPU-s  floor {table['floor'][r]:,.0f}  before {table['before'][r]:,.0f}  after {table['after'][r]:,.0f}   p99 µs {p99['floor'][r]:.0f} / {p99['before'][r]:.0f} / {p99['after'][r]:.0f}")
m = {w: statistics.median(v) for w, v in table.items()}
print(f"median: floor {m['floor']:,.0f}  before {m['before']:,.0f}  after {m['after']:,.0f}")
print(f"after/before {m['after']/m['before']:.3f}x   after/floor {m['after']/m['floor']:.3f}x   before/floor {m['before']/m['floor']:.3f}x")
idle = {w: load(f"idle-{w}")["server"]["rss_per_conn_bytes"] for w in ("before", "after")}
print(f"idle RSS per connection: before {idle['before']:,.0f} B  after {idle['after']:,.0f} B  ({idle['after']/idle['before']:.3f}x)")
PY
echo "runs in $OUT" >&2
