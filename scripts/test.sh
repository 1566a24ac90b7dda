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
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
