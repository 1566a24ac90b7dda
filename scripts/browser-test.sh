#!/usr/bin/env bash
# End-to-end test of the TypeScript client and the /demo page against a real server:
# builds signal-manager-service, starts it in development mode on a free loopback port with
# a throw-away SQLite database, runs the client's integration test (Node) and the demo page
# in two headless Chromium pages (WebRTC data channel, chat both ways, video), then stops
# the server. Screenshots go to target/browser/.
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
fi
exit "$status"
