#!/usr/bin/env bash
# Lifecycle events on against off, in one sitting: join storms (rooms of 8 and 50) and
# relay at saturation, signal-manager on SQLite with no [events] sink, then with a webhook
# sink POSTing every event to a local receiver.
#
#   scripts/bench-events.sh                      # 2,000-peer storms, 10 s relay, 3 rounds
#   ROUNDS=2 PEERS=1000 DUR=5 scripts/bench-events.sh
#
# Each run starts a fresh server pinned to CPU 0 on a fresh database and runs
# `signal-bench` pinned to CPU 1; the webhook receiver (a keep-alive HTTP/1.1 server
# answering 204, counting what it got) also runs on CPU 1. Off and on alternate within a
# round. Prints the medians and the ratios on/off, and how many events the receiver had
# when each run ended. The runs' JSON and server logs stay in
# $SIGNAL_BENCH_CACHE/events/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SIGNAL_BENCH_CACHE:-$HOME/.cache/signal-bench}
ROUNDS=${ROUNDS:-3}
PEERS=${PEERS:-2000}
SIZES=${SIZES:-"8 50"}
PAIRS=${PAIRS:-100}
WINDOW=${WINDOW:-8}
DUR=${DUR:-10}
WARM=${WARM:-2}
SECRET=signal-bench-secret-not-for-production
HOOK_SECRET=bench-webhook-secret-0123456789
WORK=$CACHE/events/$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"
PORT=19680

log() { printf '== %s\n' "$*" >&2; }

(cd "$ROOT" && cargo build --release -q -p signal-bench -p signal-server)
mkdir -p "$WORK/bin"
cp "$ROOT/target/release/signal-bench" "$ROOT/target/release/signal-manager-service" "$WORK/bin/"

. "$ROOT/scripts/bench/common.sh"

HOOK_PORT=$(free_port)
SERVER_PID= HOOK_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
  [ -n "$HOOK_PID" ] && kill "$HOOK_PID" 2>/dev/null
  rm -rf "$WORK"/sm-*.db* "$WORK/bin"
  echo "bench-events.sh: runs and server logs in $WORK" >&2
}
trap cleanup EXIT

taskset -c 1 python3 - "$HOOK_PORT" >"$WORK/receiver.log" 2>&1 <<'PY' &
import sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
count = 0
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global count
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            count += 1
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()
    def do_GET(self):
        body = str(count).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
HOOK_PID=$!
wait_port "$HOOK_PORT"
received() { curl -s "http://127.0.0.1:$HOOK_PORT/"; }

run() { # label events(on|off) scenario args...
  local label=$1 events=$2 scenario=$3; shift 3
  PORT=$((PORT + 1))
  local env=(SIGNAL_MANAGER_SERVER_PORT=$PORT SIGNAL_MANAGER_DATABASE_URL="sqlite://$WORK/sm-$PORT.db")
  if [ "$events" = on ]; then
    env+=(SIGNAL_MANAGER_EVENTS_WEBHOOK_URL="http://127.0.0.1:$HOOK_PORT/hook"
          SIGNAL_MANAGER_EVENTS_WEBHOOK_SECRET=$HOOK_SECRET)
  fi
  env "${env[@]}" taskset -c 0 "$WORK/bin/signal-manager-service" \
    -c "$ROOT/scripts/bench/signal-manager.toml" >"$WORK/$label.log" 2>&1 &
  SERVER_PID=$!
  wait_port "$PORT"
  sleep 0.3
  local before; before=$(received)
  log "$label"
  SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$WORK/bin/signal-bench" "$scenario" \
    --target signal-manager --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --label "$label" \
    --json "$WORK/$label.json" "$@" >/dev/null || echo "bench-events.sh: $label failed" >&2
  echo $(( $(received) - before )) >"$WORK/$label.events"
  kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

for r in $(seq 1 "$ROUNDS"); do
  for e in off on; do
    for m in $SIZES; do
      run "storm-m$m-$e-r$r" "$e" storm --peers "$PEERS" --room-size "$m" --concurrency 256
    done
    run "relay-$e-r$r" "$e" relay --pairs "$PAIRS" --window "$WINDOW" --duration "$DUR" --warmup "$WARM"
  done
done

python3 - "$WORK" "$ROUNDS" "$SIZES" <<'PY'
import json, statistics, sys
work, rounds, sizes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def load(name):
    try:
        j = json.load(open(f"{work}/{name}.json"))
    except FileNotFoundError:
        return None
    j["_events"] = int(open(f"{work}/{name}.events").read())
    return j
rows = [(f"storm, rooms of {m}", f"storm-m{m}", "joins_per_s", "joins/s") for m in sizes]
rows.append(("relay at saturation", "relay", "throughput_per_s", "msgs/s"))
print("| scenario | events | median | per server CPU-s (median) | rounds | events received during the run |")
print("|---|---|---|---|---|---|")
ratios = []
for title, key, field, unit in rows:
    med = {}
    for e in ["off", "on"]:
        runs = [load(f"{key}-{e}-r{r}") for r in range(1, rounds + 1)]
        runs = [x for x in runs if x]
        if not runs:
            print(f"| {title} | {e} | failed | | | |"); continue
        vals = [x[field] for x in runs]
        cpu = [x["server"]["work_per_cpu_s"] or 0 for x in runs]
        med[e] = (statistics.median(vals), statistics.median(cpu))
        print(f"| {title} | {e} | {med[e][0]:,.0f} {unit} | {med[e][1]:,.0f} | "
              f"{', '.join(f'{v:,.0f}' for v in vals)} | {', '.join(str(x['_events']) for x in runs)} |")
    if "off" in med and "on" in med:
        ratios.append(f"{title}: {med['on'][0] / med['off'][0]:.2f}x throughput, "
                      f"{med['on'][1] / med['off'][1]:.2f}x per server CPU-s")
print()
print("events on / off: " + "; ".join(ratios))
PY
