#!/usr/bin/env bash
# End-to-end test of the TypeScript client and the /demo page against a real server:
# builds signal-manager-service, starts it in development mode on a free loopback port with
# a throw-away SQLite database, runs the client's integration test (Node) and the demo page
# in two headless Chromium pages (WebRTC data channel, chat both ways, video), then stops
# the server. Then two nodes in a cluster (a PostgreSQL and a redis-server of the run's
# own): the demo's call goes on through a restart of one node. Screenshots go to
# target/browser/.
#
# Needs Node.js 20+, Debian's chromium (/usr/bin/chromium, or CHROMIUM=path), and
# `npm ci` in clients/js.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "scripts/browser-test.sh: $chromium not found (apt-get install chromium)" >&2
    exit 1
fi
if [ ! -d clients/js/node_modules ]; then
    echo "scripts/browser-test.sh: run 'npm ci' in clients/js first" >&2
    exit 1
fi

echo "== cargo build -p signal-server"
cargo build -p signal-server --locked

tmp=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        # Give the drain a moment, then make sure it is gone.
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

port=$(node -e 'const s = require("net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); })')
# No STUN servers: the browsers find each other through host candidates on loopback, and
# nothing tries to reach the outside network.
printf '[webrtc]\nstun_urls = []\n' >"$tmp/config.toml"

echo "== starting signal-manager-service --dev on 127.0.0.1:$port"
SIGNAL_MANAGER_SERVER_HOST=127.0.0.1 \
SIGNAL_MANAGER_SERVER_PORT=$port \
SIGNAL_MANAGER_DATABASE_URL="sqlite://$tmp/db.sqlite" \
SIGNAL_MANAGER_METRICS_ENABLED=false \
    "$root/target/debug/signal-manager-service" --dev --config "$tmp/config.toml" \
    >"$tmp/server.log" 2>&1 &
server_pid=$!

healthy=
for _ in $(seq 150); do
    if curl -fsS --max-time 1 "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
        healthy=1
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then break; fi
    sleep 0.2
done
if [ -z "$healthy" ]; then
    echo "scripts/browser-test.sh: the server did not become healthy within 30 s; its log:" >&2
    cat "$tmp/server.log" >&2
    exit 1
fi

status=0
(
    cd clients/js
    echo "== client integration test (Node)"
    npm run --silent build:lib
    SIGNAL_URL="ws://127.0.0.1:$port/" timeout 120 \
        node --experimental-websocket --test test/integration.test.mjs
    echo "== demo page in headless Chromium"
    SIGNAL_HTTP_URL="http://127.0.0.1:$port" CHROMIUM="$chromium" timeout 180 \
        node --test test/browser.e2e.mjs
) || status=$?

if [ "$status" -ne 0 ]; then
    echo "scripts/browser-test.sh: failed; the server's log:" >&2
    tail -n 100 "$tmp/server.log" >&2
    exit "$status"
fi

# === The demo across a node restart, in a two-node cluster ===
# Two nodes on a PostgreSQL and a redis-server of this run's own; the page on node a
# keeps its call while node a is stopped (SIGTERM) and started again.
echo "== two-node cluster (PostgreSQL, Redis): the demo through a node restart"
# shellcheck source=scripts/bench/common.sh
. scripts/bench/common.sh
chmod 755 "$tmp"
start_pg "$tmp" "$tmp/pg.log"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no \
    >"$tmp/redis.log" 2>&1 &
redis_pid=$!
wait_port "$redis_port"
cluster_cleanup() {
    for f in "$tmp"/node-*.pid; do
        [ -f "$f" ] || continue
        local pid
        pid=$(cat "$f")
        kill -TERM "$pid" 2>/dev/null || continue
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    kill "$redis_pid" 2>/dev/null || true
    kill -INT "$PG_PID" 2>/dev/null || true
    cleanup
}
trap cluster_cleanup EXIT INT TERM

# node NAME PORT: starts node NAME on PORT, waits until it is healthy.
node_up() {
    local name=$1 port=$2
    cat >"$tmp/$name.toml" <<TOML
[server]
host = "127.0.0.1"
port = $port
shutdown_timeout = 5

[database]
url = "postgres://signal@127.0.0.1:$PG_PORT/postgres"

[cluster]
redis_url = "redis://127.0.0.1:$redis_port"
node_id = "$name"
presence_ttl = 3

[webrtc]
stun_urls = []

[metrics]
enabled = false
TOML
    "$root/target/debug/signal-manager-service" --dev --config "$tmp/$name.toml" \
        >>"$tmp/node-$name.log" 2>&1 &
    echo $! >"$tmp/node-$name.pid"
    for _ in $(seq 150); do
        if curl -fsS --max-time 1 "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    echo "scripts/browser-test.sh: node $name did not become ready; its log:" >&2
    tail -n 50 "$tmp/node-$name.log" >&2
    return 1
}
port_a=$(free_port)
port_b=$(free_port)
node_up a "$port_a"
node_up b "$port_b"
# What the test runs to restart node a: SIGTERM, wait for the exit, start it again.
cat >"$tmp/restart-a.sh" <<SH
#!/usr/bin/env bash
set -euo pipefail
pid=\$(cat "$tmp/node-a.pid")
kill -TERM "\$pid"
for _ in \$(seq 100); do kill -0 "\$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "\$pid" 2>/dev/null; then echo "node a did not stop" >&2; exit 1; fi
"$root/target/debug/signal-manager-service" --dev --config "$tmp/a.toml" >>"$tmp/node-a.log" 2>&1 &
echo \$! >"$tmp/node-a.pid"
for _ in \$(seq 150); do
    curl -fsS --max-time 1 "http://127.0.0.1:$port_a/ready" >/dev/null 2>&1 && exit 0
    sleep 0.2
done
echo "node a did not come back" >&2
exit 1
SH
chmod +x "$tmp/restart-a.sh"
status=0
(
    cd clients/js
    SIGNAL_HTTP_URL_A="http://127.0.0.1:$port_a" SIGNAL_HTTP_URL_B="http://127.0.0.1:$port_b" \
    SIGNAL_RESTART_A="$tmp/restart-a.sh" CHROMIUM="$chromium" timeout 240 \
        node --test test/browser-cluster.e2e.mjs
) || status=$?
if [ "$status" -ne 0 ]; then
    echo "scripts/browser-test.sh: the cluster test failed; the nodes' logs:" >&2
    tail -n 60 "$tmp/node-a.log" "$tmp/node-b.log" >&2
fi
exit "$status"
