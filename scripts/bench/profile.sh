#!/usr/bin/env bash
# Profiles one server during a relay run at saturation (perf with the cpu-clock software
# event, which works where hardware counters are not exposed). Server on CPU 0, generator
# on CPU 1, as in bench.sh; needs the binaries bench.sh put in the cache dir.
#
#   scripts/bench/profile.sh signal-manager|floor|matchbox [seconds]
#   RELAY_ARGS="--pairs 500 --rate 10000 --window 64" scripts/bench/profile.sh signal-manager
#
# Writes perf.data and a flat report (self time per symbol, kernel included) into
# $SIGNAL_BENCH_CACHE/profile-TARGET/.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${SIGNAL_BENCH_CACHE:-$HOME/.cache/signal-bench}
TARGET=${1:?target}
SECS=${2:-8}
RELAY_ARGS=${RELAY_ARGS:---pairs 100 --window 8}
OUT=$CACHE/profile-$TARGET${PROFILE_TAG:+-$PROFILE_TAG}
PORT=18590
mkdir -p "$OUT"
case $TARGET in
  signal-manager)
    SIGNAL_MANAGER_SERVER_PORT=$PORT SIGNAL_MANAGER_DATABASE_URL="sqlite://$OUT/sm.db" \
      taskset -c 0 "$CACHE/bin/signal-manager-service" -c "$ROOT/scripts/bench/signal-manager.toml" >"$OUT/server.log" 2>&1 & ;;
  floor) taskset -c 0 "$CACHE/bin/signal-bench" floor-server --port $PORT >"$OUT/server.log" 2>&1 & ;;
  matchbox) RUST_LOG=warn taskset -c 0 "$CACHE/matchbox/bin/matchbox_server" 127.0.0.1:$PORT >"$OUT/server.log" 2>&1 & ;;
  *) echo "unknown target $TARGET" >&2; exit 2 ;;
esac
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
sleep 1
SIGNAL_BENCH_JWT_SECRET=signal-bench-secret-not-for-production taskset -c 1 "$CACHE/bin/signal-bench" relay \
  --target "$TARGET" --addr 127.0.0.1:$PORT --server-pid $PID $RELAY_ARGS \
  --duration $((SECS + 2)) --warmup 1 --json "$OUT/relay.json" 2>"$OUT/relay.log" &
GEN=$!
sleep 2
perf record -e cpu-clock -F 2000 -g -p $PID -o "$OUT/perf.data" -- sleep "$SECS" 2>/dev/null
wait $GEN
perf report -i "$OUT/perf.data" --no-children --stdio --sort symbol --percent-limit 0.7 2>/dev/null \
  | grep -v '^$' | grep -E '^ +[0-9]' > "$OUT/flat.txt" || true
perf report -i "$OUT/perf.data" --no-children --stdio --sort dso 2>/dev/null | grep -E '^ +[0-9]' > "$OUT/dso.txt" || true
echo "profile in $OUT (flat.txt, dso.txt, perf.data)" >&2
