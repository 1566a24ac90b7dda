#!/usr/bin/env bash
# Every check a change must pass: formatting, lints, and the whole test suite.
# Installs what a fresh machine lacks first. CI runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is required (install Rust with rustup)" >&2
    exit 1
fi

# Debian packages the tests use, installed only when missing.
missing=()
command -v sh >/dev/null 2>&1 || missing+=(dash)
# coturn: crates/server/tests/turn.rs runs turnserver and turnutils_uclient.
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
# The TypeScript client and the demo page's browser test.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v curl >/dev/null 2>&1 || missing+=(curl)
# PostgreSQL: crates/store-postgres/tests start their own servers (initdb, postgres) on
# free ports, never the machine's shared instance; setpriv (util-linux) runs them as the
# postgres user when the tests run as root.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# Redis: crates/router-redis/tests and the server's cluster tests start their own
# redis-server on free ports, never the machine's shared instance.
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The Firestore tests sign a service-account JWT with a key openssl makes, and stop the
# emulator's session with pkill.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v pkill >/dev/null 2>&1 || missing+=(procps)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

# Google's Firestore emulator (crates/store-firestore/tests, crates/server/tests/firestore.rs)
# comes with google-cloud-cli and its firestore-emulator component and Java; Google's apt
# source is not among Debian's, so it is not installed here.
if ! command -v gcloud >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    echo "scripts/test.sh: the Firestore tests need Google's emulator: install google-cloud-cli," \
        "google-cloud-cli-firestore-emulator and a Java runtime (17 or newer)" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
# The server's room, session, dialect and HTTP suites again on the other stores: each
# test server gets a PostgreSQL server of its own (initdb on a free port), or a database
# of its own on a Firestore emulator the test binary starts.
for store in postgres firestore; do
    echo "== the server's room, session, dialect and HTTP suites again, on $store"
    SIGNAL_TEST_STORE=$store cargo test --locked -p signal-server \
        --test rooms --test session --test mixed_rooms --test json_dialects --test http_api --test access --test admin
done
# The same suites as a cluster: two nodes over a redis-server of the test's own, on one
# PostgreSQL, behind a round-robin balancer, so a test's first two clients are on
# different nodes.
echo "== the server's room, session, dialect and HTTP suites again, as a cluster of two nodes"
SIGNAL_TEST_NODES=2 cargo test --locked -p signal-server \
    --test rooms --test session --test mixed_rooms --test json_dialects --test http_api --test access --test admin
# And on a Redis Cluster of three primaries (redis-server and redis-cli --cluster create,
# on free ports), whose sharded channels and per-slot registry the nodes then use.
echo "== the same suites as a cluster of two nodes on a Redis Cluster"
SIGNAL_TEST_NODES=2 SIGNAL_TEST_REDIS=cluster cargo test --locked -p signal-server \
    --test rooms --test session --test mixed_rooms --test json_dialects --test http_api --test access --test admin

echo "== TypeScript client (clients/js)"
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)'; then
    echo "scripts/test.sh: Node.js 20 or newer is required, found $(node --version)" >&2
    exit 1
fi
[ -d clients/js/node_modules ] || (cd clients/js && npm ci --no-audit --no-fund)
(cd clients/js && npm run typecheck && npm run check-assets && npm test)

echo "== browser test (/demo in headless Chromium)"
scripts/browser-test.sh
