#!/usr/bin/env bash
# Join storms on each store, beside matchbox, in one sitting:
#
#   scripts/bench-storm-stores.sh                 # 2,000 peers, rooms of 8 and 50, 2 rounds
#   ROUNDS=3 PEERS=1000 scripts/bench-storm-stores.sh
#
# Starts its own PostgreSQL (initdb on a free port, in a temporary directory) and its own
# Firestore emulator (gcloud, stopped by session when the script ends): never a shared
# service. For each round, store and room size it starts a fresh signal-manager pinned to
# CPU 0 on that store and runs `signal-bench storm` pinned to CPU 1, and does the same for
# matchbox; then prints one table (medians over the rounds) and the ratios to matchbox.
# The release binaries are copied aside first, so a rebuild cannot change them mid-run.
# matchbox_server is installed into $SIGNAL_BENCH_CACHE like scripts/bench.sh does; the
# runs' JSON and the servers' logs are kept in $SIGNAL_BENCH_CACHE/storm-stores/.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SIGNAL_BENCH_CACHE:-$HOME/.cache/signal-bench}
ROUNDS=${ROUNDS:-2}
PEERS=${PEERS:-2000}
SIZES=${SIZES:-"8 50"}
STORES=${STORES:-"sqlite postgres firestore"}
MATCHBOX_VERSION=0.15.0
SECRET=signal-bench-secret-not-for-production
WORK=$CACHE/storm-stores/$(date +%Y%m%d-%H%M%S)
mkdir -p "$WORK"
# PostgreSQL's data directory: where the postgres user can reach it (not under /root).
PGDATA_DIR=$(mktemp -d /tmp/storm-pg.XXXXXX)
chmod 755 "$PGDATA_DIR"
PORT=19480

log() { printf '== %s\n' "$*" >&2; }

(cd "$ROOT" && cargo build --release -q -p signal-bench -p signal-server)
mkdir -p "$WORK/bin"
cp "$ROOT/target/release/signal-bench" "$ROOT/target/release/signal-manager-service" "$WORK/bin/"
if [ ! -x "$CACHE/matchbox/bin/matchbox_server" ]; then
  log "installing matchbox_server $MATCHBOX_VERSION"
  cargo install matchbox_server --version "$MATCHBOX_VERSION" --locked --root "$CACHE/matchbox"
fi

. "$ROOT/scripts/bench/common.sh"

PG_PID= FS_SID= SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null
  [ -n "$PG_PID" ] && kill -INT "$PG_PID" 2>/dev/null
  [ -n "$FS_SID" ] && pkill -KILL -s "$FS_SID" 2>/dev/null
  sleep 1
  # The runs' JSON and server logs stay; the databases go.
  rm -rf "$PGDATA_DIR" "$WORK"/sm-*.db* "$WORK/bin"
  echo "bench-storm-stores.sh: runs and server logs in $WORK" >&2
}
trap cleanup EXIT

# --- the stores ------------------------------------------------------------------------
case " $STORES " in *" postgres "*)
  start_pg "$PGDATA_DIR" "$WORK/pg.log" -c fsync=on -c synchronous_commit=on
  sleep 1
  log "PostgreSQL on $PG_PORT"
esac
case " $STORES " in *" firestore "*)
  FS_PORT=$(free_port)
  setsid sh -c "exec gcloud emulators firestore start --host-port=127.0.0.1:$FS_PORT" >"$WORK/fs.log" 2>&1 &
  FS_SID=$!
  wait_port "$FS_PORT"
  sleep 2
  log "Firestore emulator on $FS_PORT"
esac

n=0
config_for() { # store -> path of a config file
  n=$((n + 1))
  local f=$WORK/config-$n.toml
  cp "$ROOT/scripts/bench/signal-manager.toml" "$f"
  case $1 in
    sqlite) printf '\n[database]\nurl = "sqlite://%s/sm-%s.db"\n' "$WORK" "$n" >>"$f" ;;
    postgres)
      "$PGBIN/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U signal -d postgres -c "CREATE DATABASE s$n" >/dev/null
      printf '\n[database]\nurl = "postgres://signal@127.0.0.1:%s/s%s"\nmax_connections = 16\n' "$PG_PORT" "$n" >>"$f" ;;
    firestore)
      printf '\n[database]\nurl = "firestore://demo-bench"\n\n[firestore]\ndatabase_name = "s%s"\nemulator_host = "127.0.0.1:%s"\n' "$n" "$FS_PORT" >>"$f" ;;
  esac
  echo "$f"
}

run() { # label target store size
  local label=$1 target=$2 store=$3 m=$4
  PORT=$((PORT + 1))
  if [ "$target" = matchbox ]; then
    RUST_LOG=warn taskset -c 0 "$CACHE/matchbox/bin/matchbox_server" "127.0.0.1:$PORT" >"$WORK/$label.log" 2>&1 &
  else
    SIGNAL_MANAGER_SERVER_PORT=$PORT taskset -c 0 "$WORK/bin/signal-manager-service" \
      -c "$(config_for "$store")" >"$WORK/$label.log" 2>&1 &
  fi
  SERVER_PID=$!
  wait_port "$PORT"
  sleep 0.3
  log "$label"
  SIGNAL_BENCH_JWT_SECRET=$SECRET taskset -c 1 "$WORK/bin/signal-bench" storm \
    --target "$target" --addr "127.0.0.1:$PORT" --server-pid "$SERVER_PID" --label "$label" \
    --json "$WORK/$label.json" --peers "$PEERS" --room-size "$m" --concurrency 256 >/dev/null ||
    echo "bench-storm-stores.sh: $label failed" >&2
  kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

for r in $(seq 1 "$ROUNDS"); do
  for m in $SIZES; do
    run "matchbox-m$m-r$r" matchbox - "$m"
    for s in $STORES; do
      run "$s-m$m-r$r" signal-manager "$s" "$m"
    done
  done
done

python3 - "$WORK" "$ROUNDS" "$SIZES" "$STORES" <<'EOF'
import json, statistics, sys
work, rounds, sizes, stores = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4].split()
def load(name):
    try:
        return json.load(open(f"{work}/{name}.json"))
    except FileNotFoundError:
        return None
print("| target | room size | joins/s (median) | rounds | all joins ACKed | all join events seen | join p99 | errors |")
print("|---|---|---|---|---|---|---|---|")
med = {}
for m in sizes:
    for t in ["matchbox"] + [f"signal-manager on {s}" for s in stores]:
        key = "matchbox" if t == "matchbox" else t.split()[-1]
        runs = [load(f"{key}-m{m}-r{r}") for r in range(1, rounds + 1)]
        runs = [x for x in runs if x]
        if not runs:
            print(f"| {t} | {m} | failed | | | | | |"); continue
        rates = [x["joins_per_s"] for x in runs]
        med[(key, m)] = statistics.median(rates)
        x = sorted(runs, key=lambda x: x["joins_per_s"])[len(runs) // 2]
        p99 = round((x["join_latency"].get("p99_us") or 0) / 1000)
        print(f"| {t} | {m} | {med[(key, m)]:,.0f} | {', '.join(f'{v:,.0f}' for v in rates)} | "
              f"{x['all_acked_s']:.3f} s | {x['all_peer_joined_s']:.3f} s ({x['peer_joined_seen']:,}/{x['peer_joined_expected']:,}) | "
              f"{p99} ms | {sum(r['errors'] for r in runs)} |")
print()
for m in sizes:
    if ("matchbox", m) in med:
        print(f"rooms of {m}: " + ", ".join(
            f"{s} {med[(s, m)] / med[('matchbox', m)]:.2f}x" for s in stores if (s, m) in med) + " matchbox's joins/s")
EOF
