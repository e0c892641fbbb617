#!/usr/bin/env bash
# Profiles Ringway under the WebSocket echo load (64 connections x 64 B by default):
#   perf/profile.sh [--seconds N] [--conns C] [--size S] [--out DIR] [--callgrind] [--proxy bare]
# Layout as in bench/compare.sh: bench-backend and the load generator on CPU 0, Ringway
# (cores = 1) on CPU 1. Writes into DIR (default perf/out):
#   report.txt      perf report --stdio (top symbols, self time), from perf record -g
#   stat.txt        perf stat of the Ringway process during a second load run (software counters;
#                   hardware counters where the machine exposes them)
#   per-message.txt CPU time of the Ringway process per echoed message (utime+stime / messages)
#   symbols.txt     every symbol's share of the samples (perf report --no-children --sort sym),
#                   the input of perf/profile-diff.py
#   flame.svg       if inferno-flamegraph is on PATH (cargo install inferno)
# With --proxy bare: the same for bare-forwarder (the epoll floor) in Ringway's place, so
# `perf/profile-diff.py DIR_BARE DIR_RINGWAY` shows where Ringway's extra CPU per message goes.
# With --callgrind: runs Ringway under valgrind --tool=callgrind instead and reports
# instructions per message (deterministic; counters zeroed after warm-up).
# RINGWAY_BIN=PATH profiles that Ringway binary instead of target/release/ringway (e.g. a copy of
# the build before a change, for before/after callgrind counts in one sitting); Ringway is then
# not built (the bench binaries still are). --no-build builds nothing (uses what target/release
# holds).
#
# HTTP/2 proxying (issue 22 §2): perf/profile.sh --h2 [--requests N] [--callgrind | --strace]
# drives `h2load -c16 -m10 -t1 -n N` (default 20,000, after a 2,000-request warm-up) at
# Ringway's `/api/` proxy route as bench/h2.sh sets it up (h2c, HTTP/1.1 keep-alive to
# bench-backend) and writes DIR/h2-per-request.txt: with --callgrind, user-space instructions
# per request (counters zeroed after the warm-up); with --strace, system calls per request
# (strace -c -f attached for the measured run only; DIR/strace.txt has the table); with
# neither, both, one after the other.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=10 conns=64 size=64 out=perf/out callgrind=0 proxy=ringway h2=0 requests=20000 strace=0 nobuild=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --conns) conns=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --callgrind) callgrind=1; shift ;;
        --proxy) proxy=$2; shift 2 ;;
        --h2) h2=1; shift ;;
        --requests) requests=$2; shift 2 ;;
        --strace) strace=1; shift ;;
        --no-build) nobuild=1; shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
case $proxy in ringway|bare) ;; *) echo "--proxy: ringway or bare" >&2; exit 2 ;; esac
[ "$callgrind" = 1 ] && [ "$proxy" = bare ] && { echo "--callgrind profiles Ringway only" >&2; exit 2; }
mkdir -p "$out"
if [ "$nobuild" = 1 ]; then
    :
elif [ -n "${RINGWAY_BIN:-}" ]; then
    cargo build --release -q -p ringway-bench
else
    cargo build --release -q -p ringway -p ringway-bench
fi
bin=target/release
ringway_bin=${RINGWAY_BIN:-$bin/ringway}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

backend_port=$(free_port) proxy_port=$(free_port)
taskset -c 0 "$bin/bench-backend" --listen "127.0.0.1:$backend_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$backend_port"

if [ "$h2" = 1 ]; then
    [ "$proxy" = ringway ] || { echo "--h2 profiles Ringway only" >&2; exit 2; }
    command -v h2load >/dev/null || { echo "--h2 needs h2load (apt-get install nghttp2-client)" >&2; exit 1; }
    [ "$callgrind" = 0 ] && [ "$strace" = 0 ] && { callgrind=1; strace=1; }
    cfg="$out/ringway-h2.toml"
    cat > "$cfg" <<TOML
[runtime]
cores = 1
pin = false
[[listener]]
name = "main"
address = "127.0.0.1:$proxy_port"
http2 = true
[[backend]]
name = "app"
servers = ["127.0.0.1:$backend_port"]
[[vhost]]
name = "bench"
domains = ["*"]
[[vhost.context]]
uri = "/api/"
handler = "proxy"
backend = "app"
TOML
    url="http://127.0.0.1:$proxy_port/api/"
    load() { taskset -c 0 h2load -c 16 -m 10 -t 1 -n "$1" "$url" 2>&1; }
    done_ok() { awk '/^requests:/ { print $8 }'; }
    : > "$out/h2-per-request.txt"
    if [ "$callgrind" = 1 ]; then
        command -v valgrind >/dev/null || { echo "valgrind is needed for --callgrind" >&2; exit 1; }
        rm -f "$out"/callgrind.out*
        taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
            "$ringway_bin" --config "$cfg" --log-level warn 2>"$out/valgrind.log" & pids+=($!)
        vg=${pids[-1]}
        wait_port "$proxy_port"
        load 2000 >/dev/null
        callgrind_control --zero "$vg" >/dev/null
        ok=$(load "$requests" | tee "$out/h2load.txt" | done_ok)
        callgrind_control --dump "$vg" >/dev/null
        sleep 1
        kill "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
        ir=$(for f in "$out"/callgrind.out*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; done | sort -n | tail -1)
        python3 - "$ir" "$ok" <<'PY' | tee -a "$out/h2-per-request.txt"
import sys
ir, n = int(sys.argv[1]), int(sys.argv[2])
print(f"h2 instructions (Ir, Ringway process, user space) {ir} over {n} requests: {ir / max(n, 1):.0f} per request")
PY
    fi
    if [ "$strace" = 1 ]; then
        command -v strace >/dev/null || { echo "--strace needs strace" >&2; exit 1; }
        taskset -c 1 "$ringway_bin" --config "$cfg" --log-level warn & pids+=($!)
        rw=${pids[-1]}
        wait_port "$proxy_port"
        load 2000 >/dev/null
        strace -c -f -p "$rw" -o "$out/strace.txt" & st=$!
        sleep 1
        ok=$(load "$requests" | tee "$out/h2load.txt" | done_ok)
        kill -INT "$st"; wait "$st" 2>/dev/null || true
        calls=$(awk '$NF == "total" { print $4 }' "$out/strace.txt")   # % seconds usecs/call calls
        python3 - "$calls" "$ok" <<'PY' | tee -a "$out/h2-per-request.txt"
import sys
calls, n = int(sys.argv[1]), int(sys.argv[2])
print(f"h2 system calls (strace -c -f, Ringway process) {calls} over {n} requests: {calls / max(n, 1):.2f} per request")
PY
    fi
    exit 0
fi
cfg="$out/ringway.toml"
cat > "$cfg" <<TOML
[runtime]
cores = 1
pin = false
[[listener]]
name = "main"
address = "127.0.0.1:$proxy_port"
[[vhost]]
name = "bench"
domains = ["*"]
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$backend_port"
TOML

if [ "$callgrind" = 1 ]; then
    command -v valgrind >/dev/null || { echo "valgrind is needed for --callgrind" >&2; exit 1; }
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
        "$ringway_bin" --config "$cfg" --log-level warn 2>"$out/valgrind.log" & pids+=($!)
    wait_port "$proxy_port"
    "$bin/ringway-bench" echo --url "ws://127.0.0.1:$proxy_port/ws" --conns "$conns" --size "$size" --duration 2s >/dev/null
    callgrind_control --zero "${pids[-1]}" >/dev/null
    result=$(taskset -c 0 "$bin/ringway-bench" echo --url "ws://127.0.0.1:$proxy_port/ws" --conns "$conns" \
        --size "$size" --duration "${seconds}s" --warmup 0s --json)
    callgrind_control --dump "${pids[-1]}" >/dev/null
    sleep 1
    messages=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["messages"])')
    ir=$(for f in "$out"/callgrind.out*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; done | sort -n | tail -1)
    python3 - "$ir" "$messages" <<'PY' | tee "$out/instructions-per-message.txt"
import sys
ir, msgs = int(sys.argv[1]), int(sys.argv[2])
print(f"instructions (Ir, Ringway process, user space) {ir} over {msgs} echoed messages: {ir / max(msgs, 1):.0f} per message")
PY
    exit 0
fi

if [ "$proxy" = bare ]; then
    taskset -c 1 "$bin/bare-forwarder" --listen "127.0.0.1:$proxy_port" \
        --backend "127.0.0.1:$backend_port" 2>/dev/null & pids+=($!)
else
    taskset -c 1 "$ringway_bin" --config "$cfg" --log-level warn & pids+=($!)
fi
rw=${pids[-1]}
wait_port "$proxy_port"
"$bin/ringway-bench" echo --url "ws://127.0.0.1:$proxy_port/ws" --conns "$conns" --size "$size" --duration 2s >/dev/null
cpu() { awk '{print $14 + $15}' "/proc/$rw/stat"; }
ticks=$(getconf CLK_TCK)
before=$(cpu)
perf record -F 999 -g -p "$rw" -o "$out/perf.data" -- sleep "$seconds" >/dev/null 2>&1 &
rec=$!
result=$(taskset -c 0 "$bin/ringway-bench" echo --url "ws://127.0.0.1:$proxy_port/ws" --conns "$conns" \
    --size "$size" --duration "${seconds}s" --warmup 0s --json)
after=$(cpu)
wait "$rec" || true
echo "$result" > "$out/echo.json"
# perf stat in a second load run of its own: attached during the first, its per-thread
# counters raised Ringway's CPU per message from 10.2 to 13.4 us (the bare forwarder's far less).
perf stat -p "$rw" -o "$out/stat.txt" -- sleep "$seconds" >/dev/null 2>&1 &
st=$!
taskset -c 0 "$bin/ringway-bench" echo --url "ws://127.0.0.1:$proxy_port/ws" --conns "$conns" \
    --size "$size" --duration "${seconds}s" --warmup 0s >/dev/null
wait "$st" || true
python3 - "$before" "$after" "$ticks" "$result" "$proxy" <<'PY' | tee "$out/per-message.txt"
import json, sys
before, after, ticks = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
r = json.loads(sys.argv[4])
cpu_s = (after - before) / ticks
msgs = r["messages"]
print(f"echo {r['conns']} conns x {r['size']} B: {r['msgs_per_s']:.0f} msg/s, p99 {r['p99_us']} us; "
      f"{sys.argv[5]} CPU {cpu_s:.2f} s over {msgs} messages = {cpu_s * 1e6 / max(msgs, 1):.2f} us per message")
PY
perf report -i "$out/perf.data" --stdio --no-children --percent-limit 0.5 2>/dev/null | head -120 > "$out/report.txt" || true
perf report -i "$out/perf.data" --stdio --no-children --sort sym 2>/dev/null |
    grep -E '^ +[0-9.]+%' > "$out/symbols.txt" || true
if command -v inferno-collapse-perf >/dev/null && command -v inferno-flamegraph >/dev/null; then
    perf script -i "$out/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph > "$out/flame.svg"
fi
echo "wrote $out/{report.txt,symbols.txt,stat.txt,per-message.txt}"
