#!/usr/bin/env bash
# WebSocket conformance run with the Autobahn TestSuite (`wstest -m fuzzingclient`).
#
# Usage: scripts/autobahn.sh WS_URL OUTPUT_DIR
#   e.g. scripts/autobahn.sh ws://127.0.0.1:9001 target/autobahn-report
#
# The server under test must echo every message back unchanged (text as text,
# binary as binary) and accept messages of at least 16 MiB (2^24 bytes) in one
# frame (cases 9.1.6 / 9.2.6); see the notes above CASES below.
#
# What it does:
#   1. Installs wstest (PyPI `autobahntestsuite`, Python 2.7 only) into a
#      virtualenv cached under target/ (created only when missing, rebuilt when
#      the pins below change), with exact pinned versions.
#   2. Writes OUTPUT_DIR/spec.json, runs wstest under `timeout`, and keeps its
#      log in OUTPUT_DIR/wstest.log and its report in OUTPUT_DIR/report/
#      (index.json, index.html and one file per case).
#   3. Parses OUTPUT_DIR/report/index.json and prints per-behavior counts and
#      the ids of failing cases; exits non-zero on any failing case or on a
#      missing/incomplete report.
#
# Exit status: 0 all cases passed; 1 some case failed; 2 usage error or a
# missing prerequisite; 3 wstest did not finish (timeout / crash) or its report
# is missing or incomplete.
#
# Environment (all optional):
#   AUTOBAHN_TIMEOUT  seconds allowed for the whole wstest run (default 1200)
#   AUTOBAHN_AGENT    agent name used in the report (default signal-manager)
#   AUTOBAHN_CASES    JSON list of case patterns replacing the default list,
#                     e.g. '["1.*","2.*"]' for a quick partial run
#   AUTOBAHN_VENV     where to keep the virtualenv (default target/autobahn-venv)
#   PYTHON2           Python 2.7 interpreter to use (default: pyenv's 2.7.18)
#   PYTHON3           Python 3 used only to bootstrap `virtualenv` (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROG="scripts/autobahn.sh"

die() { # die EXIT_CODE MESSAGE...
    local code="$1"
    shift
    echo "$PROG: error: $*" >&2
    exit "$code"
}

if [ $# -ne 2 ]; then
    echo "usage: $PROG WS_URL OUTPUT_DIR   (e.g. $PROG ws://127.0.0.1:9001 target/autobahn-report)" >&2
    exit 2
fi
URL="$1"
OUT_ARG="$2"
case "$URL" in
    ws://* | wss://*) ;;
    *) die 2 "server URL must start with ws:// or wss://, got '$URL'" ;;
esac

RUN_TIMEOUT="${AUTOBAHN_TIMEOUT:-1200}"
AGENT="${AUTOBAHN_AGENT:-signal-manager}"
VENV="${AUTOBAHN_VENV:-$ROOT/target/autobahn-venv}"

# Cases to run: sections 1-7 (framing, pings/pongs, reserved bits, opcodes,
# fragmentation, UTF-8, closing), 9 (limits/performance) and 10 (auto-
# fragmentation). Nothing is excluded. The suite has no sections 8 and 11;
# 12 and 13 (permessage-deflate compression) are not run.
# Sizes the server must handle (from the autobahntestsuite 25.10.1 source):
#   1.*  up to 65536-byte messages, single frame (1.1.8/1.2.8 arrive in
#        997-byte TCP chops)
#   7.1.6  one 256 KiB (262144-byte) text frame (INFORMATIONAL case)
#   9.1.*/9.2.*  single-frame text/binary messages of 64 KiB, 256 KiB, 1 MiB,
#        4 MiB, 8 MiB and 16 MiB  -> max message AND frame size >= 16777216
#   9.3.*/9.4.*  4 MiB messages fragmented into frames of 64 B .. 4 MiB; the
#        sender adds an empty FIN frame when the size divides evenly, so 9.3.1
#        and 9.4.1 send 65536 x 64 B + 1 = 65537 frames in one message (a
#        fragment-count limit must be >= 65537; e.g. Python `websockets`
#        defaults to 4096 and fails 9.3.1-9.3.3 / 9.4.1-9.4.3)
#   9.5.*/9.6.*  1 MiB single-frame messages sent in TCP chops of 64 B .. 4 KiB
#   9.7.*/9.8.*  1000 round trips each of 0 .. 4096-byte messages
#   10.1.1  65536-byte text message sent as 51 frames (50 x 1300 + 536)
# A 9.* case FAILS if the full echo has not come back within its limit:
# 10 s (9.1.1-9.1.2, 9.2.1-9.2.4), 100 s (other 9.1-9.4), 1000 s (9.5, 9.6),
# 60-480 s for the 1000 round trips of 9.7/9.8. Against a fast echo server the
# whole run takes about 25 s, of which 9.* about 12 s; AUTOBAHN_TIMEOUT bounds
# the run when a server is slow or stuck.
DEFAULT_CASES='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"]'
CASES="${AUTOBAHN_CASES:-$DEFAULT_CASES}"

# ---------------------------------------------------------------------------
# Pinned versions. autobahntestsuite is Python 2.7 code (print statements,
# Twisted-based); 25.10.1 is its newest release and ships this same pin set for
# Python 2.7 (its requirements.txt). Transitive dependencies are pinned too, to
# the versions pip resolved on Debian 12 / Python 2.7.18. All come as
# cp27mu/py2 wheels (cryptography 3.3.2 bundles its own OpenSSL 1.1.1, so no
# libssl-dev is needed) except four sdists: autobahn, txaio and PyHamcrest are
# pure Python; wsaccel is a C extension (needs gcc and Python.h). wsaccel is
# pulled in by autobahn[accelerate] and is worth having: it does the XOR masking
# and UTF-8 validation of the 16 MiB messages in section 9 in C.
PY2_PINS=(
    autobahntestsuite==25.10.1
    "autobahn[twisted,accelerate]==0.10.9" # quoted: [..] is a glob
    txaio==2.1.0
    wsaccel==0.6.6
    ujson==2.0.3
    Twisted==19.10.0
    zope.interface==4.6.0
    incremental==16.10.1
    constantly==15.1.0
    Automat==22.10.0
    hyperlink==21.0.0
    PyHamcrest==1.10.1
    attrs==21.4.0
    idna==2.10
    typing==3.10.0.0
    pyOpenSSL==19.1.0
    cryptography==3.3.2
    cffi==1.15.1
    pycparser==2.21
    enum34==1.1.10
    ipaddress==1.0.23
    service-identity==18.1.0
    pyasn1==0.5.1
    pyasn1-modules==0.3.0
    klein==17.10.0
    Werkzeug==1.0.1
    Jinja2==2.11.3
    MarkupSafe==1.1.1
    unittest2==1.1.0
    linecache2==1.0.0
    traceback2==1.4.0
    argparse==1.4.0
    six==1.16.0
    setuptools==44.0.0
)
# virtualenv 20.21.1 is the last release that can create Python 2.7
# environments (it embeds pip 20.3.4 / setuptools 44.1.1 / wheel 0.37.1 for
# 2.7). Debian 12 has no python2 and the pyenv 2.7.18 has no venv module, so a
# Python 3 runs it, from a small bootstrap venv of its own.
BOOTSTRAP_PINS=(
    virtualenv==20.21.1
    distlib==0.3.8
    filelock==3.12.2
    platformdirs==3.11.0
)

# Install Debian packages, refreshing the package lists once first.
APT_UPDATED=0
apt_install() {
    local sudo=()
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || die 2 "need root (or sudo) to apt-get install $*"
        sudo=(sudo)
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        "${sudo[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    echo "== apt-get install $*"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

command -v timeout >/dev/null 2>&1 || die 2 "'timeout' not found (Debian package coreutils)"

# --- Python 2.7 ------------------------------------------------------------
# Debian 12 has no Python 2 package: it must come from pyenv (the project's
# machine image has /root/.pyenv/versions/2.7.18) or PYTHON2.
find_python2() {
    if [ -n "${PYTHON2:-}" ]; then
        echo "$PYTHON2"
        return
    fi
    local root="${PYENV_ROOT:-$HOME/.pyenv}" cand
    for cand in "$root/versions/2.7.18/bin/python" "$root"/versions/2.7.*/bin/python; do
        if [ -x "$cand" ]; then
            echo "$cand"
            return
        fi
    done
    command -v python2.7 || true
}
PY2="$(find_python2)"
if [ -z "$PY2" ] || ! command -v "$PY2" >/dev/null 2>&1; then
    die 2 "no Python 2.7 found (looked at \$PYTHON2, \$PYENV_ROOT/versions/2.7.*, python2.7). autobahntestsuite runs only on Python 2.7 and Debian 12 does not package it; install it with pyenv (pyenv install 2.7.18) or set PYTHON2."
fi
"$PY2" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (2, 7) else 1)' 2>/dev/null ||
    die 2 "$PY2 is not a working Python 2.7"

case "$VENV" in
    "" | /) die 2 "AUTOBAHN_VENV must name a directory of its own, got '$VENV'" ;;
esac
# The venv is reused only if it finished installing with exactly these pins.
PINS_STAMP="${BOOTSTRAP_PINS[*]} ${PY2_PINS[*]}"
venv_ok() {
    [ -x "$VENV/py27/bin/wstest" ] && [ -f "$VENV/.autobahn-pins" ] &&
        [ "$(cat "$VENV/.autobahn-pins")" = "$PINS_STAMP" ]
}

if venv_ok; then
    echo "== using cached Autobahn TestSuite venv: $VENV"
else
    echo "== installing Autobahn TestSuite into $VENV"
    install_start=$SECONDS

    # wsaccel is compiled: needs a C compiler and libc headers...
    if ! command -v gcc >/dev/null 2>&1 || [ ! -e /usr/include/stdio.h ]; then
        apt_install gcc libc6-dev
    fi
    # ...and Python 2.7's own headers, which pyenv installs with the interpreter.
    py2_include="$("$PY2" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    [ -f "$py2_include/Python.h" ] ||
        die 2 "$py2_include/Python.h is missing: the Python 2.7 at $PY2 has no development headers (needed to build wsaccel)"

    # Python 3 with venv + pip, only to run virtualenv.
    PY3="${PYTHON3:-python3}"
    if ! command -v "$PY3" >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
    if ! "$PY3" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3-venv
    fi
    "$PY3" -c 'import sys, venv, ensurepip; sys.exit(0 if sys.version_info >= (3, 7) else 1)' ||
        die 2 "$PY3 must be Python >= 3.7 with the venv and ensurepip modules (Debian: python3-venv)"

    rm -rf "$VENV"
    mkdir -p "$VENV"
    echo "-- bootstrap venv ($("$PY3" --version 2>&1)) with ${BOOTSTRAP_PINS[*]}"
    "$PY3" -m venv "$VENV/bootstrap"
    "$VENV/bootstrap/bin/python" -m pip install -q --disable-pip-version-check "${BOOTSTRAP_PINS[@]}" ||
        die 2 "pip could not install ${BOOTSTRAP_PINS[*]} (is PyPI reachable?)"

    echo "-- Python 2.7 virtualenv from $PY2"
    "$VENV/bootstrap/bin/python" -m virtualenv -q --no-periodic-update -p "$PY2" "$VENV/py27" ||
        die 2 "virtualenv could not create a Python 2.7 environment from $PY2"

    echo "-- pip install (Python 2.7): ${PY2_PINS[*]}"
    # PYTHONWARNINGS silences pip's Python 2 end-of-life banner.
    PYTHONWARNINGS=ignore "$VENV/py27/bin/python" -m pip install -q --disable-pip-version-check \
        --no-python-version-warning "${PY2_PINS[@]}" ||
        die 2 "pip could not install the pinned autobahntestsuite dependencies (see above)"
    PYTHONWARNINGS=ignore "$VENV/py27/bin/python" -m pip check --no-python-version-warning ||
        die 2 "the installed autobahntestsuite dependencies are inconsistent (pip check)"

    PYTHONWARNINGS=ignore "$VENV/py27/bin/wstest" --autobahnversion >/dev/null 2>&1 ||
        die 2 "wstest was installed but does not start: $VENV/py27/bin/wstest --autobahnversion"
    # Written last: a half-finished install is redone on the next run.
    echo "$PINS_STAMP" >"$VENV/.autobahn-pins"
    echo "== installed in $((SECONDS - install_start)) s"
fi
WSTEST="$VENV/py27/bin/wstest"
PY="$VENV/py27/bin/python"
# Twisted/cryptography print Python 2 deprecation warnings on every start.
export PYTHONWARNINGS=ignore
# Python 2 block-buffers stdout into a pipe: unbuffer it so progress shows live.
export PYTHONUNBUFFERED=1

# --- Run -------------------------------------------------------------------
mkdir -p "$OUT_ARG"
OUT="$(cd "$OUT_ARG" && pwd)"
REPORT_DIR="$OUT/report"
rm -rf "$REPORT_DIR"
rm -f "$OUT/wstest.log"

# Preflight: a server that is not listening makes wstest end at once with an
# empty report; say so plainly instead.
"$PY" - "$URL" <<'EOF' || die 2 "cannot open a TCP connection to $URL: is the server running?"
import socket, sys
from urlparse import urlparse
try:
    u = urlparse(sys.argv[1])
    port = u.port or (443 if u.scheme == "wss" else 80)
    socket.create_connection((u.hostname, port), timeout=5).close()
except Exception as e:
    sys.stderr.write("%s\n" % e)
    sys.exit(1)
EOF

# failByDrop=false is what wstest sets for fuzzing anyway (close with a close
# frame when failing the connection); stated here to make the spec explicit.
"$PY" - "$OUT/spec.json" "$URL" "$AGENT" "$REPORT_DIR" "$CASES" <<'EOF' || die 2 "bad AUTOBAHN_CASES (must be a JSON list of strings): $CASES"
import json, sys
path, url, agent, outdir, cases = sys.argv[1:]
try:
    cases = json.loads(cases)
except ValueError as e:
    sys.stderr.write("%s\n" % e)
    sys.exit(1)
if not (isinstance(cases, list) and cases and all(isinstance(c, basestring) for c in cases)):
    sys.exit(1)
spec = {
    "outdir": outdir,
    "options": {"failByDrop": False},
    "servers": [{"agent": agent, "url": url}],
    "cases": cases,
    "exclude-cases": [],
    "exclude-agent-cases": {},
}
with open(path, "w") as f:
    json.dump(spec, f, indent=2)
    f.write("\n")
EOF

echo "== wstest -m fuzzingclient against $URL (cases $CASES, timeout ${RUN_TIMEOUT}s)"
echo "   spec: $OUT/spec.json  log: $OUT/wstest.log  report: $REPORT_DIR/index.html"
run_start=$SECONDS
set +e
# Run from OUT so nothing wstest may write lands in the caller's directory.
# Only the per-case lines go to the terminal; the full output is in the log.
(cd "$OUT" && timeout --kill-after=30 "$RUN_TIMEOUT" "$WSTEST" -m fuzzingclient -s "$OUT/spec.json") 2>&1 |
    tee "$OUT/wstest.log" |
    { grep --line-buffered -E '^(Running test case|Connection to|Traceback)' | sed -u 's/^/   /' || true; }
rc=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - run_start))
echo "== wstest finished in ${elapsed} s (exit status $rc)"
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    die 3 "wstest did not finish within ${RUN_TIMEOUT} s (AUTOBAHN_TIMEOUT); last lines of $OUT/wstest.log:
$(tail -n 5 "$OUT/wstest.log")"
fi
if [ "$rc" != 0 ]; then
    die 3 "wstest exited with status $rc; last lines of $OUT/wstest.log:
$(tail -n 20 "$OUT/wstest.log")"
fi

# --- Summary -----------------------------------------------------------------
# index.json maps agent -> case id -> {behavior, behaviorClose, duration (ms),
# remoteCloseCode, reportfile}. Every case selected by the spec must be there.
# Exit 1 when any case has behavior FAILED, or behaviorClose FAILED / WRONG CODE
# (server closed with a code the case does not allow) / UNCLEAN (TCP dropped
# where a clean close was required) / FAILED BY CLIENT (server never closed
# the TCP connection; the client had to). OK, NON-STRICT, INFORMATIONAL and
# UNIMPLEMENTED pass.
"$PY" - "$OUT/spec.json" "$REPORT_DIR/index.json" "$AGENT" "$elapsed" <<'EOF'
import json, os, sys
from collections import defaultdict

spec_path, index_path, agent, elapsed = sys.argv[1:]

def die(msg):
    sys.stderr.write("scripts/autobahn.sh: error: %s\n" % msg)
    sys.exit(3)

if not os.path.isfile(index_path):
    die("no report: %s is missing (see wstest.log beside spec.json)" % index_path)
try:
    with open(index_path) as f:
        index = json.load(f)
except ValueError as e:
    die("%s is not valid JSON: %s" % (index_path, e))
results = index.get(agent) or {}
if not results:
    die("%s has no results for agent %r (agents: %s); did every connection fail? "
        "See wstest.log" % (index_path, agent, ", ".join(sorted(index)) or "none"))

# The cases the spec selects, resolved the same way wstest does.
from autobahntestsuite.caseset import CaseSet
from autobahntestsuite.case import Cases, CaseCategories, CaseSubCategories, CaseSetname, CaseBasename
with open(spec_path) as f:
    spec = json.load(f)
case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
expected = case_set.parseSpecCases(spec)

def key(case_id):
    return tuple(int(p) for p in case_id.split("."))

PASS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED")
ORDER = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED",
         "WRONG CODE", "UNCLEAN", "FAILED BY CLIENT"]

counts = {"behavior": defaultdict(int), "behaviorClose": defaultdict(int)}
bad = defaultdict(list)  # "<field> <value>" -> case ids
section_ms = defaultdict(int)
for case_id in sorted(results, key=key):
    r = results[case_id]
    for field in ("behavior", "behaviorClose"):
        value = r.get(field, "?")
        counts[field][value] += 1
        if value not in PASS:
            bad["%s %s" % (field, value)].append(case_id)
    # A case whose connection never opened reports "now - 0" as its duration.
    duration = r.get("duration", 0)
    if 0 <= duration <= (int(elapsed) + 60) * 1000:
        section_ms[case_id.split(".")[0]] += duration

missing = sorted(set(expected) - set(results), key=key)

print("")
print("Autobahn summary for %s: %d cases in report, %d selected by the spec, wstest ran %s s"
      % (agent, len(results), len(expected), elapsed))
for field in ("behavior", "behaviorClose"):
    values = sorted(counts[field], key=lambda v: ORDER.index(v) if v in ORDER else len(ORDER))
    print("  %-14s %s" % (field + ":", ", ".join("%s %d" % (v, counts[field][v]) for v in values)))
print("  time per section (sum of case durations): " + ", ".join(
    "%s.* %.1f s" % (s, section_ms[s] / 1000.0) for s in sorted(section_ms, key=int)))
nonstrict = [c for c in sorted(results, key=key) if results[c].get("behavior") == "NON-STRICT"]
if nonstrict:
    print("  NON-STRICT (passes): " + " ".join(nonstrict))

status = 0
for label in sorted(bad):
    print("  FAILING %s: %s" % (label, " ".join(bad[label])))
    status = 1
if missing:
    print("  MISSING from the report: %d cases (%s%s); wstest stopped early: did the server "
          "die or refuse a connection? See 'Connection to' in wstest.log"
          % (len(missing), " ".join(missing[:20]), " ..." if len(missing) > 20 else ""))
    status = 3
print("  report: %s" % os.path.join(os.path.dirname(index_path), "index.html"))
print("RESULT: %s" % ("PASS" if status == 0 else "FAIL"))
sys.exit(status)
EOF
