#!/usr/bin/env bash
# Relay with resumable sessions against relay without, in one sitting: the same server
# (SQLite, one node), the same relay (100 pairs, K=4 in flight per pair, candidates of
# 200 B and 4 KB), every client CONNECTing with "resume": true or not. The server is
# pinned to CPU 0 and signal-bench to CPU 1; rounds alternate off/on.
#
#   scripts/bench-resume.sh                 # 3 rounds of 8 s
#   ROUNDS=1 DURATION=5 scripts/bench-resume.sh
#
# Prints msgs per server-CPU-second and p99 for each, and the on/off ratio (median of
# the rounds). The JSON of every run stays in $WORK.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-$(mktemp -d /tmp/bench-resume.XXXXXX)}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
PAIRS=${PAIRS:-100}
SECRET=signal-bench-secret-not-for-production
mkdir -p "$WORK/bin"
log() { echo "[bench-resume] $*" >&2; }

(cd "$ROOT" && cargo build --release -q -p signal-bench -p signal-server)
cp "$ROOT/target/release/signal-bench" "$ROOT/target/release/signal-manager-service" "$WORK/bin/"

. "$ROOT/scripts/bench/common.sh"

PID=
stop() { [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; PID=; return 0; }
trap 'stop; rm -rf "$WORK/bin"; echo "bench-resume.sh: runs in $WORK" >&2' EXIT

run() { # label size resume(0|1)
  local port; port=$(free_port)
  SIGNAL_MANAGER_SERVER_PORT=$port SIGNAL_MANAGER_DATABASE_URL="sqlite://$WORK/$1.db" \
    taskset -c 0 "$WORK/bin/signal-manager-service" -c "$ROOT/scripts/bench/signal-manager.toml" \
    >"$WORK/$1.log" 2>&1 &
  PID=$!
  wait_port "$port"
  local extra=()
  [ "$3" = 1 ] && extra=(--resume)
  SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$WORK/bin/signal-bench" relay \
    --target signal-manager --addr "127.0.0.1:$port" --server-pid "$PID" "${extra[@]}" \
    --pairs "$PAIRS" --window 4 --duration "$DURATION" --warmup 2 \
    --candidate-size "$2" --label "$1" --json "$WORK/$1.json" >/dev/null
  stop
}

for round in $(seq 1 "$ROUNDS"); do
  for size in 200 4096; do
    run "off-$size-r$round" "$size" 0
    run "on-$size-r$round" "$size" 1
    log "round $round, $size B done"
  done
done

python3 - "$WORK" "$ROUNDS" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    return json.load(open(f"{work}/{name}.json"))
print("| size | off: msgs per server-CPU-second | on | ratio on/off | off p99 | on p99 | lost |")
print("|---|---|---|---|---|---|---|")
for size in (200, 4096):
    vals, lost = {}, 0
    for mode in ("off", "on"):
        rs = [load(f"{mode}-{size}-r{i}") for i in range(1, rounds + 1)]
        lost += sum(r.get("lost", 0) for r in rs)
        vals[mode] = (
            statistics.median(r["server"]["work_per_cpu_s"] for r in rs),
            statistics.median(r["latency"]["p99_us"] for r in rs) / 1000,
        )
    (off, offp), (on, onp) = vals["off"], vals["on"]
    print(f"| {size} B | {off:,.0f} | {on:,.0f} | {on/off:.2f}x | {offp:.2f} ms | {onp:.2f} ms | {lost} |")
PY
