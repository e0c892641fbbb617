#!/usr/bin/env bash
# The Autobahn|Testsuite (fuzzingclient: Ringway as the WebSocket server) against the built
# ringway binary, on loopback only. Run by .ci/run after `cargo test`.
#
#   tests/autobahn.sh            (needs python3 and PyPI for the first setup; ~2 min after it)
#
# Three runs of the cases in $CASES (groups 1-10: everything but permessage-deflate, 12/13):
#   1. the built-in echo endpoint (`handler = "echo"`): no case may fail, in behaviour or in
#      the closing handshake;
#   2. the suite's reference echo server (Python `websockets`, the suite's ref_echo_server.py)
#      directly, and
#   3. the same server behind a Ringway WebSocket route: every case's verdicts (behaviour and
#      close) must equal those of run 2, so whatever differs comes from the proxy. One latitude:
#      OK and NON-STRICT count as the same behaviour. In the cases that allow both (3.x, 4.x,
#      a valid message then a bad frame), NON-STRICT means the server failed the connection
#      before its echo of the valid message went out; the reference server runs that race
#      itself, and its verdicts on 3.4, 4.1.5 and 4.2.5 change from run to run without any
#      proxy (checked: four runs in a row against it alone). A message the proxy lost would
#      still show: as FAILED in every other case, and as a close verdict.
# Exit status 0 when all of that holds, 1 otherwise (2: something did not start).
#
# Environment:
#   RINGWAY_BIN  the binary (default target/debug/ringway, built if missing)
#   ABT_HOME     where the suite is installed and the reports go (default target/autobahn)
#   CASES        case patterns (default: groups 1-7, 9, 10)
#   RUN_TIMEOUT  seconds each suite run may take (default 900)
#
# The suite is a Python 3 port of Autobahn|Testsuite 25.10.1, in ../shared/autobahn (see its
# README.md). Ports are picked free on 127.0.0.1; everything this script starts is stopped by
# its PID when it exits.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The suite ships beside the project (the workplace's shared/ folder, which CI gets as a copy
# beside its clone); AUTOBAHN_SUITE points elsewhere.
SUITE="${AUTOBAHN_SUITE:-$ROOT/../shared/autobahn}"
if [ ! -x "$SUITE/setup.sh" ]; then
    echo "autobahn: no suite at $SUITE (set AUTOBAHN_SUITE to the Python 3 port of Autobahn|Testsuite)" >&2
    exit 2
fi
export ABT_HOME="${ABT_HOME:-$ROOT/target/autobahn}"
CASES="${CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*}"
RUN_TIMEOUT="${RUN_TIMEOUT:-900}"
BIN="${RINGWAY_BIN:-$ROOT/target/debug/ringway}"
PY="$ABT_HOME/venv/bin/python"

say() { echo "autobahn: $*"; }

if [ ! -x "$BIN" ]; then
    say "building $BIN"
    (cd "$ROOT" && cargo build --bin ringway)
fi

# The suite: set up once per version of the port (setup.sh re-installs from its sdists).
mkdir -p "$ABT_HOME"
stamp="$(cat "$SUITE/setup.sh" "$SUITE/requirements-py3.txt" "$SUITE/py3.patch" \
    "$SUITE/autobahn-0.10.9-py3.patch" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$ABT_HOME/venv/bin/wstest" ] || [ "$(cat "$ABT_HOME/.stamp" 2>/dev/null)" != "$stamp" ]; then
    say "setting up the suite in $ABT_HOME"
    if ! timeout 600 "$SUITE/setup.sh" > "$ABT_HOME/setup.log" 2>&1; then
        cat "$ABT_HOME/setup.log" >&2
        say "setup failed" >&2
        exit 2
    fi
    echo "$stamp" > "$ABT_HOME/.stamp"
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until 127.0.0.1:$1 accepts, while process $2 lives (at most 10 s).
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

REF_PORT="$(free_port)"
RW_PORT="$(free_port)"
while [ "$RW_PORT" = "$REF_PORT" ]; do RW_PORT="$(free_port)"; done

# The reference server, without permessage-deflate (no case here offers it), and with no cap on
# the fragments of a message (websockets' default, 4096, fails 9.3.1-9.3.3 and 9.4.1-9.4.3 with
# 1009 at once; lifted, those cases carry 65536 fragments through the proxy).
WEBSOCKETS_MAX_FRAGMENTS=1000000 "$PY" "$SUITE/ref_echo_server.py" "$REF_PORT" --no-compression \
    > "$ABT_HOME/ref_server.log" 2>&1 &
PIDS+=($!)
wait_port "$REF_PORT" "${PIDS[-1]}" || { cat "$ABT_HOME/ref_server.log" >&2; say "the reference server did not start" >&2; exit 2; }

cat > "$WORK/ringway.toml" <<EOF
[runtime]
cores = 1
pin = false

[[listener]]
name = "main"
address = "127.0.0.1:$RW_PORT"

[[backend]]
name = "ref"
servers = ["127.0.0.1:$REF_PORT"]

[[vhost]]
name = "site"
domains = ["*"]

[[vhost.websocket]]
uri = "/ref/"
backend = "ref"

[[vhost.context]]
uri = "/echo"
handler = "echo"
EOF
"$BIN" --config "$WORK/ringway.toml" --log-level warn > "$ABT_HOME/ringway.log" 2>&1 &
PIDS+=($!)
wait_port "$RW_PORT" "${PIDS[-1]}" || { cat "$ABT_HOME/ringway.log" >&2; say "ringway did not start" >&2; exit 2; }

# One suite run: $1 name, $2 URL. Its report goes to $ABT_HOME/$1/reports.
suite() {
    say "$1: $2 (cases $CASES)"
    local start=$SECONDS rc=0
    OUTDIR="$ABT_HOME/$1" TIMEOUT="$RUN_TIMEOUT" "$SUITE/run.sh" "$2" "$CASES" \
        > "$ABT_HOME/$1.txt" 2>&1 || rc=$?
    # run.sh: 0 no case FAILED in behaviour, 1 some did; anything else: no report.
    if [ "$rc" -gt 1 ]; then
        cat "$ABT_HOME/$1.txt" >&2
        say "$1: the suite did not run (exit $rc)" >&2
        exit 2
    fi
    grep -E '^  (group|TOTAL)' "$ABT_HOME/$1.txt" || true
    say "$1: $((SECONDS - start)) s"
}

suite echo "ws://127.0.0.1:$RW_PORT/echo"
suite reference "ws://127.0.0.1:$REF_PORT/"
suite proxied "ws://127.0.0.1:$RW_PORT/ref/"

# The verdicts: the echo endpoint fails nothing; proxied equals reference case by case.
"$PY" - "$ABT_HOME" <<'PYEOF'
import json, sys

home = sys.argv[1]

def verdicts(name):
    with open("%s/%s/reports/index.json" % (home, name)) as f:
        index = json.load(f)
    (cases,) = index.values()
    return {cid: (c["behavior"], c["behaviorClose"]) for cid, c in cases.items()}

def key(cid):
    return tuple(int(x) for x in cid.split("."))

def same(a, b):
    """Equal verdicts, OK and NON-STRICT counting as one behaviour (see the header)."""
    loose = lambda v: v and (("OK" if v[0] == "NON-STRICT" else v[0]), v[1])
    return loose(a) == loose(b)

ok = True
echo = verdicts("echo")
failed = [c for c in sorted(echo, key=key) if "FAILED" in echo[c]]
print("autobahn: echo endpoint: %d cases, %d FAILED (behaviour or close)" % (len(echo), len(failed)))
for c in failed:
    print("    %-9s behaviour %-13s close %s" % (c, *echo[c]))
ok &= not failed and len(echo) > 0

ref, proxied = verdicts("reference"), verdicts("proxied")
cases = sorted(set(ref) | set(proxied), key=key)
differ = [c for c in cases if not same(ref.get(c), proxied.get(c))]
races = [c for c in cases if ref.get(c) != proxied.get(c) and c not in differ]
print("autobahn: proxied route: %d cases, %d with verdicts other than the reference server's"
      % (len(proxied), len(differ)))
for c in differ:
    print("    %-9s reference %s, proxied %s" % (c, ref.get(c), proxied.get(c)))
if races:
    print("autobahn: OK / NON-STRICT (the reference server's own race): %s" % ", ".join(races))
ok &= not differ and len(ref) > 0
sys.exit(0 if ok else 1)
PYEOF
