#!/usr/bin/env bash
# Counts a proxy's system calls and io_uring requests per echoed message at a fixed rate:
#   perf/syscalls.sh TARGET [RATE] [SECONDS]
# TARGET: a Ringway binary (e.g. target/release/ringway or a copy of an earlier build), `bare`
# (bare-forwarder) or `nginx`. Layout as in bench/compare.sh: bench-backend and the load
# (`ringway-bench echo --conns 64 --size 64 --rate RATE`, open loop) on CPU 0, the proxy on CPU 1
# (Ringway `cores = 1`, nginx one worker). `perf stat` counts on the proxy's process for SECONDS
# (default 5) after a 1.5 s start; the figures are divided by RATE × SECONDS messages. Counts do
# not depend on the machine's load the way CPU time does, except through how many messages
# arrive per wake-up: compare per wake-up (`io_uring:io_uring_cqring_wait` for Ringway,
# `epoll_wait` for the others) when two runs woke at different rates.
set -u
T=${1:?usage: perf/syscalls.sh TARGET [RATE] [SECONDS]}; RATE=${2:-7000}; DUR=${3:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
R=${CARGO_TARGET_DIR:-$ROOT/target}/release
for b in bench-backend bare-forwarder ringway-bench; do
  [ -x "$R/$b" ] || { echo "build first: cargo build --release -p ringway-bench" >&2; exit 1; }
done
D=$(mktemp -d /tmp/ringway-syscalls.XXXX)
BP=$((20000 + RANDOM % 5000)); PP=$((BP + 1))
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
taskset -c 0 "$R/bench-backend" --listen "127.0.0.1:$BP" >"$D/backend.log" 2>&1 & PIDS+=($!)
sleep 0.5
case $T in
  bare) taskset -c 1 "$R/bare-forwarder" --listen "127.0.0.1:$PP" --backend "127.0.0.1:$BP" >"$D/proxy.log" 2>&1 & ;;
  nginx)
    mkdir -p "$D/nginx/logs"
    cat >"$D/nginx/nginx.conf" <<N
worker_processes 1; daemon off; master_process off; error_log $D/nginx/logs/error.log; pid $D/nginx/nginx.pid;
events { worker_connections 4096; }
http { access_log off; map \$http_upgrade \$cu { default upgrade; '' close; }
 server { listen 127.0.0.1:$PP; location /ws { proxy_pass http://127.0.0.1:$BP; proxy_http_version 1.1;
  proxy_set_header Upgrade \$http_upgrade; proxy_set_header Connection \$cu; proxy_read_timeout 1h; } } }
N
    taskset -c 1 nginx -p "$D/nginx" -c "$D/nginx/nginx.conf" >"$D/proxy.log" 2>&1 & ;;
  *)
    cat >"$D/ringway.toml" <<C
[runtime]
cores = 1
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$PP"
[[vhost]]
name = "bench"
domains = ["*"]
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$BP"
C
    taskset -c 1 "$T" --config "$D/ringway.toml" --log-level warn >"$D/proxy.log" 2>&1 & ;;
esac
PID=$!; PIDS+=("$PID")
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$PP") 2>/dev/null && break; sleep 0.2; done
sleep 0.3
taskset -c 0 "$R/ringway-bench" echo --conns 64 --size 64 --rate "$RATE" --duration "$((DUR + 2))s" \
  --warmup 1s --url "ws://127.0.0.1:$PP/ws" --json >"$D/gen.json" 2>"$D/gen.log" & GEN=$!
sleep 1.5
perf stat -x, -p "$PID" -o "$D/perf.csv" -e 'raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_membarrier,syscalls:sys_enter_epoll_wait,io_uring:io_uring_submit_req,io_uring:io_uring_complete,io_uring:io_uring_local_work_run,io_uring:io_uring_cqring_wait,context-switches' -- sleep "$DUR"
wait "$GEN"
echo "target=$T rate=$RATE seconds=$DUR generator: $(head -c 300 "$D/gen.json")"
awk -F, -v n="$((RATE * DUR))" '$1 ~ /^[0-9]/ { printf "%-40s %10d  %7.3f per message\n", $3, $1, $1 / n }' "$D/perf.csv"
