#!/usr/bin/env bash
# Multi-core scaling of Ringway's WebSocket echo path (the curve issue 5 asks for on a big machine):
#   bench/scaling.sh [--cores "1 2 4 8 16"] [--duration SECS] [--conns-per-core C]
#                    [--idle-conns N] [--out FILE]
# For each N in --cores (those above `nproc` are skipped): Ringway with `cores = N`, `pin = true`,
# started under `taskset` on CPUs 0..N-1, so shard i runs on CPU i. N bench-backend processes
# (Ringway's backend pool, round robin) and N ringway-bench echo generators (C connections of
# 64 B messages each, default 64) run on the CPUs left over (N..nproc-1), round robin; when none
# are left they share every CPU with Ringway, and the table says so ("shared").
# Per N: total msg/s, msg/s per proxy core, scaling efficiency (msg/s per core against N = 1),
# Ringway's CPU µs per message (utime+stime over the first generator's measured interval), and the
# worst generator's p99. With --idle-conns N (e.g. 100000): after the curve, Ringway on every core
# of the largest N holds N idle proxied WebSocket connections (source addresses 127.0.0.2… as
# needed) and the table reports how many opened and echoed, and Ringway's RSS per connection.
# Output: a Markdown table, printed and written to --out (default bench/results/scaling-DATE.md),
# with the raw generator JSON lines next to it (FILE.jsonl). Loopback only.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CORES="1 2 4 8 16" DUR=10 CPC=64 IDLE=0 OUT=""
usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case $1 in
    --cores) CORES=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --conns-per-core) CPC=$2; shift 2 ;;
    --idle-conns) IDLE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) usage ;;
    *) echo "scaling.sh: unknown option $1" >&2; usage 2 ;;
  esac
done
for v in "$DUR" "$CPC" "$IDLE"; do
  case $v in ''|*[!0-9]*) echo "scaling.sh: --duration, --conns-per-core and --idle-conns take whole numbers" >&2; exit 2 ;; esac
done
NPROC=$(nproc)
OUT=${OUT:-$ROOT/bench/results/scaling-$(date -u +%Y-%m-%d-%H%M).md}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
log() { echo "scaling.sh: $*" >&2; }

( cd "$ROOT" && cargo build --release -q -p ringway -p ringway-bench ) || { log "build failed"; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

TMP=$(mktemp -d /tmp/ringway-scaling.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; return 1; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get(sys.argv[2], ""))' "$1" "$2"; }

# CPUs for the helpers (backends, generators) when Ringway has CPUs 0..n-1.
helper_cpus() {
  local n=$1
  if [ "$n" -lt "$NPROC" ]; then seq "$n" $((NPROC - 1)); else seq 0 $((NPROC - 1)); fi
}

# Starts n backends and Ringway (cores = n, on CPUs 0..n-1). Sets RW_PID, RW_PORT.
start_proxy() {
  local n=$1 cpus i port servers=""
  mapfile -t cpus < <(helper_cpus "$n")
  for i in $(seq 0 $((n - 1))); do
    port=$(free_port)
    taskset -c "${cpus[$((i % ${#cpus[@]}))]}" "$BIN/bench-backend" --listen "127.0.0.1:$port" \
      >/dev/null 2>&1 & PIDS+=($!)
    wait_port "$port" || { log "backend on $port did not start"; return 1; }
    servers+="${servers:+, }\"127.0.0.1:$port\""
  done
  RW_PORT=$(free_port)
  cat > "$TMP/ringway.toml" <<TOML
[runtime]
cores = $n
pin = true
[[listener]]
name = "main"
address = "127.0.0.1:$RW_PORT"
[[backend]]
name = "echo"
servers = [$servers]
[[vhost]]
name = "bench"
domains = ["*"]
[[vhost.websocket]]
uri = "/ws"
backend = "echo"
TOML
  taskset -c "0-$((n - 1))" "$BIN/ringway" --config "$TMP/ringway.toml" --log-level warn \
    2>"$TMP/ringway-$n.log" & RW_PID=$!; PIDS+=("$RW_PID")
  wait_port "$RW_PORT" || { log "ringway did not start (cores = $n)"; cat "$TMP/ringway-$n.log" >&2; return 1; }
}

stop_all() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; PIDS=(); }

RAW=$TMP/raw.jsonl
: > "$RAW"
ROWS=()
BASE_PER_CORE=""
for n in $CORES; do
  if [ "$n" -gt "$NPROC" ]; then log "cores = $n: skipped, this machine has $NPROC CPUs"; continue; fi
  log "cores = $n"
  start_proxy "$n" || { stop_all; continue; }
  mapfile -t cpus < <(helper_cpus "$n")
  : > "$TMP/marks"
  echo "echo \"\$RINGWAY_BENCH_PHASE \$(awk '{print \$14 + \$15}' /proc/$RW_PID/stat)\" >> $TMP/marks" > "$TMP/mark.sh"
  gens=()
  for i in $(seq 0 $((n - 1))); do
    hook=()
    [ "$i" = 0 ] && hook=(--on-measure "sh $TMP/mark.sh")
    taskset -c "${cpus[$(((i + n) % ${#cpus[@]}))]}" "$BIN/ringway-bench" echo \
      --url "ws://127.0.0.1:$RW_PORT/ws" --conns "$CPC" --size 64 --duration "${DUR}s" \
      --warmup 2s --json "${hook[@]}" > "$TMP/gen-$n-$i.json" 2>"$TMP/gen-$n-$i.log" &
    gens+=($!)
  done
  wait "${gens[@]}"
  stop_all
  msgs=0 rate=0 p99=0 failed=0
  for i in $(seq 0 $((n - 1))); do
    line=$(head -1 "$TMP/gen-$n-$i.json")
    [ -n "$line" ] || { log "cores = $n: generator $i printed nothing"; tail -3 "$TMP/gen-$n-$i.log" >&2; continue; }
    echo "{\"cores\":$n,\"generator\":$i,\"result\":$line}" >> "$RAW"
    msgs=$((msgs + $(jget "$line" messages)))
    rate=$(awk -v a="$rate" -v b="$(jget "$line" msgs_per_s)" 'BEGIN { print a + b }')
    p99=$(awk -v a="$p99" -v b="$(jget "$line" p99_us)" 'BEGIN { print (b > a) ? b : a }')
    failed=$((failed + $(jget "$line" failed)))
  done
  cpu_us=$(awk -v hz="$(getconf CLK_TCK)" -v m="$msgs" '
    $1 == "start" { s = $2 } $1 == "end" { e = $2 }
    END { if (s == "" || e == "" || m == 0) print "n/a"; else printf "%.2f", (e - s) / hz * 1e6 / m }' "$TMP/marks")
  per_core=$(awk -v r="$rate" -v n="$n" 'BEGIN { printf "%.0f", r / n }')
  [ -z "$BASE_PER_CORE" ] && BASE_PER_CORE=$per_core
  eff=$(awk -v p="$per_core" -v b="$BASE_PER_CORE" 'BEGIN { printf "%.2f", p / b }')
  first=$(helper_cpus "$n" | head -1) last=$(helper_cpus "$n" | tail -1)
  helpers="CPUs $first-$last"
  [ "$first" = "$last" ] && helpers="CPU $first"
  [ "$n" -ge "$NPROC" ] && helpers="shared (all CPUs)"
  ROWS+=("| $n | $helpers | $((n * CPC)) | $(printf '%.0f' "$rate") | $per_core | $eff | $cpu_us | $p99 | $failed |")
done

IDLE_ROW=""
if [ "$IDLE" -gt 0 ]; then
  n=0; for c in $CORES; do [ "$c" -le "$NPROC" ] && [ "$c" -gt "$n" ] && n=$c; done
  log "idle: $IDLE connections, cores = $n"
  if start_proxy "$n"; then
    before=$(awk '/^VmRSS/ {print $2}' "/proc/$RW_PID/status")
    taskset -c "$(helper_cpus "$n" | paste -sd,)" "$BIN/ringway-bench" idle --url "ws://127.0.0.1:$RW_PORT/ws" \
      --conns "$IDLE" --hold 0s --timeout 60s --json \
      --during "sleep 1; awk '/^VmRSS/ {print \$2}' /proc/$RW_PID/status > $TMP/rss" > "$TMP/idle.json" 2>"$TMP/idle.log"
    line=$(head -1 "$TMP/idle.json")
    if [ -n "$line" ] && [ -s "$TMP/rss" ]; then
      echo "{\"cores\":$n,\"idle\":$IDLE,\"result\":$line}" >> "$RAW"
      ok=$(jget "$line" ok)
      IDLE_ROW="Idle: $ok of $IDLE proxied WebSocket connections opened and echoed on $n cores; Ringway RSS $(awk -v a="$before" -v b="$(cat "$TMP/rss")" -v o="$ok" 'BEGIN { printf "%.2f", (b - a) / (o > 0 ? o : 1) }') KiB per connection."
    else
      IDLE_ROW="Idle: the run printed nothing (see ringway-bench idle --help; fd limit $(ulimit -n))."
      tail -5 "$TMP/idle.log" >&2
    fi
  fi
  stop_all
fi

{
  echo "Ringway scaling — $(date -u '+%Y-%m-%d %H:%M UTC'), $NPROC CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), kernel $(uname -r); WebSocket echo, 64 B messages, $CPC connections per generator, one generator and one backend per proxy core, ${DUR}s per point."
  echo
  echo "| cores | backends + generators on | connections | msg/s | msg/s per core | efficiency | Ringway CPU µs/msg | worst p99 µs | failed |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for r in "${ROWS[@]}"; do echo "$r"; done
  echo
  echo "Efficiency = msg/s per core relative to the first row. Where backends and generators share CPUs with Ringway (or with each other), msg/s measures the machine, not the proxy; CPU per message stays meaningful."
  [ -n "$IDLE_ROW" ] && { echo; echo "$IDLE_ROW"; }
} | tee "$OUT"
cp "$RAW" "${OUT%.md}.jsonl"
log "wrote $OUT and ${OUT%.md}.jsonl"
