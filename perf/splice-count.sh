#!/usr/bin/env bash
# Issue 22 §4: system calls and bytes copied through user space per MB in a fixed bulk run
# (the compare.sh bulk shape: 4 WebSockets, 64 KiB messages, 4 in flight each), counted, not
# timed, so a busy machine does not change the figures much.
#
#   perf/splice-count.sh [RINGWAY_BINARY] [SECONDS]     (default target/release/ringway, 4)
#
# Starts bench-backend (CPU 0), Ringway with one core (CPU 1) and ringway-bench bulk (CPU 0),
# counts Ringway's system calls with `perf stat` (tracepoints) over the whole run, and reads
# ringway_bytes_total and ringway_tunnel_spliced_bytes_total from /metrics before and after.
# MB moved = client-side bytes in + out (each also crosses the backend side once); bytes copied
# through user space = 2 × (moved − spliced) (a copied byte is copied in by recv and out by send).
set -euo pipefail
BIN=${1:-target/release/ringway}
SECS=${2:-4}
T=$(dirname "$0")/../target/release
TMP=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT
P=$((20000 + RANDOM % 20000)); B=$((P + 1)); A=$((P + 2))
taskset -c 0 "$T/bench-backend" --listen "127.0.0.1:$B" >"$TMP/backend.log" 2>&1 &
cat >"$TMP/ringway.toml" <<CONF
[runtime]
cores = 1
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$P"
[[listener]]
name = "admin"
address = "127.0.0.1:$A"
[admin]
listener = "admin"
[[vhost]]
name = "bench"
domains = ["*"]
listeners = ["main"]
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$B"
CONF
taskset -c 1 "$BIN" --config "$TMP/ringway.toml" --log-level warn >"$TMP/ringway.log" 2>&1 &
RW=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$A/metrics" && break; sleep 0.1; done
metric() { curl -s "http://127.0.0.1:$A/metrics" | awk -v n="$1" -v d="$2" '$1 ~ "^"n"[{ ]" && $1 ~ d { s += $2 } END { printf "%.0f", s }'; }
in0=$(metric ringway_bytes_total 'direction="in"'); out0=$(metric ringway_bytes_total 'direction="out"')
sp0=$(metric ringway_tunnel_spliced_bytes_total '')
EV=raw_syscalls:sys_enter,syscalls:sys_enter_splice,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_io_uring_enter,task-clock
perf stat -x, -e "$EV" -p "$RW" -o "$TMP/perf.csv" -- \
  taskset -c 0 "$T/ringway-bench" bulk --url "ws://127.0.0.1:$P/ws" --conns 4 --size 65536 \
  --window 4 --duration "${SECS}s" --warmup 1s >"$TMP/bench.out" 2>&1
in1=$(metric ringway_bytes_total 'direction="in"'); out1=$(metric ringway_bytes_total 'direction="out"')
sp1=$(metric ringway_tunnel_spliced_bytes_total '')
awk -F, -v moved=$(( (in1 - in0) + (out1 - out0) )) -v spliced=$((sp1 - sp0)) -v bin="$BIN" '
  /^#/ || NF < 3 { next }
  { v[$3] = $1 }
  END {
    mb = moved / 1048576
    printf "%s: %.1f MB moved (client side, in+out), %.1f MB spliced (%.1f %%)\n", bin, mb, spliced / 1048576, 100 * spliced / (moved ? moved : 1)
    printf "bytes copied through user space per MB moved: %.3f MB\n", 2 * (moved - spliced) / (moved ? moved : 1)
    printf "system calls per MB: all %.1f", v["raw_syscalls:sys_enter"] / mb
    split("splice recvfrom sendto sendmsg io_uring_enter", n, " ")
    for (i = 1; i <= 5; i++) printf ", %s %.1f", n[i], v["syscalls:sys_enter_" n[i]] / mb
    printf "\nCPU (task-clock, not a measurement on a busy machine): %.0f µs per MB\n", v["task-clock"] * 1000 / mb
  }' "$TMP/perf.csv"
grep -i "MB/s" "$TMP/bench.out" | head -3 || cat "$TMP/bench.out"
