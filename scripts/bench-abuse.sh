#!/usr/bin/env bash
# The abuse benchmark: healthy pairs relay at a fixed rate through signal-manager, once
# alone and once while hostile clients (ping floods, CBOR nesting bombs, slowloris,
# silent sockets, idle upgrades up to the per-IP maximum) attack it from another
# loopback address. Prints the healthy pairs' p99 in both rounds, their ratio, and the
# server's peak RSS; writes the JSON to docs/benchmarks/abuse.json (or $SIGNAL_BENCH_OUT).
#
#   scripts/bench-abuse.sh              # 50 pairs at 2,000 msgs/s, 10 s rounds
#   DUR=3 scripts/bench-abuse.sh        # shorter rounds
#
# The server runs with the production defaults for rate limits, with the per-IP limit at
# 200 and short connect/header timeouts, pinned to CPU 0; the generator to CPU 1. Every
# load goes to 127.0.0.0/8, bounded in count and time.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${SIGNAL_BENCH_OUT:-$ROOT/docs/benchmarks}
DUR=${DUR:-10}
PORT=18470
SECRET=signal-bench-secret-not-for-production
WORK=$(mktemp -d)
trap 'kill "$SERVER_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

cargo build --release --locked -p signal-server -p signal-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

env SIGNAL_MANAGER_SERVER_PORT=$PORT \
  SIGNAL_MANAGER_DATABASE_URL="sqlite://$WORK/abuse.db" \
  SIGNAL_MANAGER_SECURITY_RATE_LIMIT_ENABLED=true \
  SIGNAL_MANAGER_SECURITY_MAX_CONNECTIONS_PER_IP=200 \
  SIGNAL_MANAGER_SECURITY_NEW_CONNECTIONS_PER_IP_PER_SECOND=100 \
  SIGNAL_MANAGER_SERVER_CONNECTION_TIMEOUT=5 \
  SIGNAL_MANAGER_SERVER_HEADER_READ_TIMEOUT=3 \
  taskset -c 0 "$ROOT/target/release/signal-manager-service" \
  -c "$ROOT/scripts/bench/signal-manager.toml" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 200); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done

mkdir -p "$OUT"
taskset -c 1 "$ROOT/target/release/signal-bench" abuse --target signal-manager \
  --addr "127.0.0.1:$PORT" --jwt-secret "$SECRET" --server-pid "$SERVER_PID" \
  --duration "$DUR" --json "$OUT/abuse.json" ${ABUSE_ARGS:-}
kill -0 "$SERVER_PID" || { echo "bench-abuse.sh: the server died" >&2; exit 1; }
