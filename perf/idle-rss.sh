#!/usr/bin/env bash
# Memory per idle proxied WebSocket without a build step (bench/compare.sh's `idle` test builds
# first): Ringway's VmRSS before and 1 s after N connections are open, per connection.
#   perf/idle-rss.sh [BINARY] [N]      (default target/release/ringway, 9500)
# Same config, layout and generator options as compare.sh's idle test.
set -euo pipefail
cd "$(dirname "$0")/.."
rw_bin=${1:-target/release/ringway} n=${2:-9500} bin=target/release
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
tmp=$(mktemp -d)
bp=$(free_port) pp=$(free_port)
taskset -c 0 "$bin/bench-backend" --listen "127.0.0.1:$bp" >/dev/null 2>&1 & pids+=($!)
wait_port "$bp"
cat > "$tmp/ringway.toml" <<TOML
[runtime]
cores = 1
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$pp"
[[vhost]]
name = "bench"
domains = ["*"]
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$bp"
TOML
taskset -c 1 "$rw_bin" --config "$tmp/ringway.toml" --log-level warn 2>/dev/null & pids+=($!)
rw=${pids[-1]}
wait_port "$pp"
rss() { awk '/^VmRSS:/ {print $2}' /proc/"$rw"/status; }
before=$(rss)
taskset -c 0 "$bin/ringway-bench" idle --url "ws://127.0.0.1:$pp/ws" --conns "$n" --hold 0s --timeout 30s \
    --during "sleep 1; awk '/^VmRSS:/ {print \$2}' /proc/$rw/status > $tmp/during; echo \$RINGWAY_BENCH_OPEN > $tmp/open" \
    --json > "$tmp/out.json" 2>/dev/null
during=$(cat "$tmp/during") open=$(cat "$tmp/open")
python3 -c "import sys; b,d,o=map(int,sys.argv[1:]); print(f'idle: {o} open, RSS {b} -> {d} KiB: {(d-b)/o:.3f} KiB per connection')" "$before" "$during" "$open"
rm -rf "$tmp"
