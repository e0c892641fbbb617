#!/usr/bin/env bash
# Soak run (issue 13): Ringway under mixed load for a long stretch, checking that nothing is
# lost and nothing grows. Not part of CI.
#
#   bench/soak.sh [--minutes 30] [--sample 30] [--reload 60] [--cores 2] [--nice] [--out FILE]
#                 [--port 19600] [--env NAME=VALUE]... [--rss-slack 256]
#
# Load, all at once for the whole run (loopback only), against one Ringway (release build, the
# given cores) in front of bench-backend:
#   http     wrk -t1 -c32 keep-alive through the HTTP proxy path (/api/): non-2xx and socket
#            errors are counted
#   echo     ringway-bench echo --verify, 64 tunnels: every message has a payload of its own
#            and every echoed byte is compared (bad_echo), tunnels lost are counted (dropped)
#   churn    ringway-bench churn --verify, 8 loops of connect, upgrade, one message, close
#   static   a 4 MiB file (sendfile path) fetched with curl every 2 s, its SHA-256 compared
#   metrics  /metrics scraped every 10 s from the [admin] listener
#   reload   SIGHUP every --reload seconds, each confirmed in Ringway's log
# Every --sample seconds: Ringway's RSS (VmRSS), the allocator's live and free heap bytes
# (ringway_memory_bytes), the buffer pools, open descriptors, tunnels active. The resident
# memory by mapping ([heap], other anonymous, files) is reported at the first and last sample.
# --port: the first of three ports used (Ringway, backend, admin), so two soaks can run side
# by side. --env: set in Ringway's environment only (e.g. GLIBC_TUNABLES=... to compare
# allocator settings).
# --nice runs Ringway and the load at nice 19 (so other work on the machine keeps its CPU: the
# throughput figures then mean little, the checks still hold).
# Output: a Markdown report (samples, totals, verdict) printed and written to --out (default
# bench/results/<date>-soak.md). Exit status 0 only when every check holds: errors = 0,
# bad_echo = 0, dropped = 0, every static fetch intact, every reload confirmed, and RSS flat
# over the second half of the run: at the last sample at most --rss-slack KiB (default 256)
# above the sample at half time. The first half is warm-up (pools, allocator arenas and
# per-core tables reach their working size) and is reported, not judged.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MINUTES=30
SAMPLE=30
RELOAD=60
CORES=2
NICE=""
OUT=""
PORT=19600
RW_ENV=()
RSS_SLACK=256

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --sample) SAMPLE=$2; shift 2 ;;
    --reload) RELOAD=$2; shift 2 ;;
    --cores) CORES=$2; shift 2 ;;
    --nice) NICE="nice -n 19"; shift ;;
    --out) OUT=$2; shift 2 ;;
    --port) PORT=$2; shift 2 ;;
    --env) RW_ENV+=("$2"); shift 2 ;;
    --rss-slack) RSS_SLACK=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "soak.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
BACKEND_PORT=$(( PORT + 1 ))
ADMIN_PORT=$(( PORT + 2 ))
log() { echo "soak.sh: $*" >&2; }
for t in wrk curl sha256sum ss; do command -v $t >/dev/null || { log "needs $t"; exit 1; }; done

SECS=$(( MINUTES * 60 ))
STAMP=$(date -u '+%Y-%m-%d-%H%M')
OUT=${OUT:-$ROOT/bench/results/$STAMP-soak.md}
TMP=$(mktemp -d /tmp/ringway-soak.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "building (release)"
(cd "$ROOT" && cargo build --release -q --bin ringway && cd bench && cargo build --release -q) || exit 1
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-$ROOT/target}
RINGWAY=$TARGET_DIR/release/ringway
GEN=$TARGET_DIR/release/ringway-bench
BACKEND=$TARGET_DIR/release/bench-backend

port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
wait_port() { local i; for i in $(seq 1 200); do port_listening "$1" && return 0; sleep 0.05; done; return 1; }
for p in $PORT $BACKEND_PORT $ADMIN_PORT; do port_listening $p && { log "port $p is in use"; exit 1; }; done

mkdir -p "$TMP/www/api"
head -c $(( 4 << 20 )) /dev/urandom > "$TMP/www/big.bin"
BIG_SUM=$(sha256sum < "$TMP/www/big.bin" | cut -d' ' -f1)
cat > "$TMP/ringway.toml" <<EOF
[runtime]
cores = $CORES
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$PORT"
[[listener]]
name = "admin"
address = "127.0.0.1:$ADMIN_PORT"
[admin]
listener = "admin"
[[backend]]
name = "app"
servers = ["127.0.0.1:$BACKEND_PORT"]
[[vhost]]
name = "soak"
domains = ["*"]
listeners = ["main"]
doc_root = "$TMP/www"
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$BACKEND_PORT"
[[vhost.context]]
uri = "/api/"
handler = "proxy"
backend = "app"
[[vhost.context]]
uri = "/"
handler = "static"
EOF

$NICE "$BACKEND" --listen "127.0.0.1:$BACKEND_PORT" >"$TMP/backend.log" 2>&1 &
PIDS+=($!)
wait_port $BACKEND_PORT || { log "bench-backend did not start"; exit 1; }
$NICE env ${RW_ENV[@]+"${RW_ENV[@]}"} "$RINGWAY" --config "$TMP/ringway.toml" >"$TMP/ringway.log" 2>&1 &
RW=$!
PIDS+=($RW)
wait_port $PORT || { log "ringway did not start"; cat "$TMP/ringway.log" >&2; exit 1; }
log "ringway pid $RW on :$PORT, $CORES cores, $MINUTES min"

rss_kib() { awk '/^VmRSS/ { print $2 }' /proc/$RW/status 2>/dev/null; }
fds() { ls /proc/$RW/fd 2>/dev/null | wc -l; }
tunnels() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^ringway_tunnels_active/ { s += $2 } END { print s + 0 }'; }
# One scrape per sample: pools, live heap, free heap (KiB).
mem_kib() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
    /^ringway_buffer_pool_bytes/ { p += $2 }
    /^ringway_memory_bytes\{kind="heap_in_use"\}/ { u = $2 }
    /^ringway_memory_bytes\{kind="heap_free"\}/ { f = $2 }
    END { printf "%d | %d | %d\n", p / 1024, u / 1024, f / 1024 }'
}
# Resident KiB by mapping: [heap] (brk), other anonymous (thread arenas, mmap'd blocks,
# stacks, rings), file-backed.
smaps_kib() {
  awk '/^[0-9a-f]+-[0-9a-f]+ / { kind = ($6 == "[heap]") ? "heap" : ($6 == "" ? "anon" : "file"); next }
       /^Rss:/ { s[kind] += $2 }
       END { printf "[heap] %d, other anonymous %d, files %d", s["heap"], s["anon"], s["file"] }' /proc/$RW/smaps 2>/dev/null
}

$NICE wrk -t1 -c32 -d${SECS}s --timeout 30s "http://127.0.0.1:$PORT/api/soak" >"$TMP/wrk.txt" 2>&1 &
PIDS+=($!)
$NICE "$GEN" echo --verify --url "ws://127.0.0.1:$PORT/ws" --conns 64 --size 512 --warmup 1s \
  --duration ${SECS}s --timeout 60s --json >"$TMP/echo.json" 2>"$TMP/echo.err" &
PIDS+=($!)
$NICE "$GEN" churn --verify --url "ws://127.0.0.1:$PORT/ws" --conns 8 --size 64 --warmup 1s \
  --duration ${SECS}s --timeout 60s --json >"$TMP/churn.json" 2>"$TMP/churn.err" &
PIDS+=($!)

START=$(date +%s)
END=$(( START + SECS + 3 ))
static_ok=0; static_bad=0; scrapes_ok=0; scrapes_bad=0; reloads=0
next_sample=$START; next_static=$START; next_scrape=$START; next_reload=$(( START + RELOAD ))
echo "| t (s) | RSS (KiB) | buffer pools (KiB) | heap in use (KiB) | heap free (KiB) | fds | tunnels |" > "$TMP/samples.md"
echo "|---|---|---|---|---|---|---|" >> "$TMP/samples.md"
first_smaps=""
first_rss=""; last_rss=""; max_rss=0; mid_rss=""; mid_t=""
while :; do
  now=$(date +%s)
  [ "$now" -ge "$END" ] && break
  kill -0 $RW 2>/dev/null || { log "ringway exited"; break; }
  if [ "$now" -ge "$next_sample" ]; then
    r=$(rss_kib); f=$(fds); t=$(tunnels); mk=$(mem_kib)
    echo "| $(( now - START )) | $r | $mk | $f | $t |" >> "$TMP/samples.md"
    # The first sample is taken once the load is up (the echo warm-up is 1 s).
    if [ -z "$first_rss" ] && [ "$now" -gt "$START" ]; then first_rss=$r; first_smaps=$(smaps_kib); fi
    last_smaps=$(smaps_kib)
    if [ -z "$mid_rss" ] && [ $(( now - START )) -ge $(( SECS / 2 )) ]; then mid_rss=$r; mid_t=$(( now - START )); fi
    last_rss=$r; [ "${r:-0}" -gt "$max_rss" ] && max_rss=$r
    next_sample=$(( next_sample + SAMPLE ))
  fi
  if [ "$now" -ge "$next_static" ]; then
    got=$(curl -s --max-time 30 "http://127.0.0.1:$PORT/big.bin" | sha256sum | cut -d' ' -f1)
    if [ "$got" = "$BIG_SUM" ]; then static_ok=$(( static_ok + 1 )); else static_bad=$(( static_bad + 1 )); fi
    next_static=$(( now + 2 ))
  fi
  if [ "$now" -ge "$next_scrape" ]; then
    body=$(curl -sf --max-time 10 "http://127.0.0.1:$ADMIN_PORT/metrics")
    if grep -q '^ringway_requests_total' <<<"$body"; then
      scrapes_ok=$(( scrapes_ok + 1 )); else scrapes_bad=$(( scrapes_bad + 1 )); fi
    next_scrape=$(( now + 10 ))
  fi
  if [ "$now" -ge "$next_reload" ]; then
    kill -HUP $RW; reloads=$(( reloads + 1 ))
    next_reload=$(( now + RELOAD ))
  fi
  sleep 0.5
done
wait "${PIDS[@]:2}" 2>/dev/null
sleep 1
alive=yes; kill -0 $RW 2>/dev/null || alive=no
final_rss=$(rss_kib); final_fds=$(fds); final_tunnels=$(tunnels)
# One line per core and one from the control thread (no core= field) once all have swapped.
confirmed=$(grep 'configuration reloaded' "$TMP/ringway.log" | grep -vc 'core=')
panics=$(grep -ci 'panick' "$TMP/ringway.log")

json() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1" | head -1; }
wrk_req=$(awk '/requests in/ { print $1 }' "$TMP/wrk.txt")
wrk_non2xx=$(awk '/Non-2xx/ { print $NF }' "$TMP/wrk.txt"); wrk_non2xx=${wrk_non2xx:-0}
wrk_sockerr=$(awk '/Socket errors/ { gsub(",", ""); print $4 + $6 + $8 + $10 }' "$TMP/wrk.txt"); wrk_sockerr=${wrk_sockerr:-0}
e_msgs=$(json "$TMP/echo.json" messages); e_bad=$(json "$TMP/echo.json" bad_echo); e_drop=$(json "$TMP/echo.json" failed)
c_cycles=$(json "$TMP/churn.json" handshakes); c_bad=$(json "$TMP/churn.json" bad_echo); c_fail=$(json "$TMP/churn.json" failed)
e_err=$(grep -c 'ringway-bench: [0-9]* ×' "$TMP/echo.err"); c_err=$(grep -c 'ringway-bench: [0-9]* ×' "$TMP/churn.err")

verdict=PASS; why=()
[ "$alive" = yes ] || { verdict=FAIL; why+=("ringway exited"); }
[ "$panics" = 0 ] || { verdict=FAIL; why+=("panic in the log"); }
[ "${wrk_non2xx}" = 0 ] && [ "${wrk_sockerr}" = 0 ] || { verdict=FAIL; why+=("http errors"); }
[ -n "$wrk_req" ] && [ "$wrk_req" != 0 ] || { verdict=FAIL; why+=("no wrk result (the http load died)"); }
[ "${e_bad:-x}" = 0 ] && [ "${e_drop:-x}" = 0 ] && [ "$e_err" = 0 ] || { verdict=FAIL; why+=("echo errors"); }
[ "${c_bad:-x}" = 0 ] && [ "${c_fail:-x}" = 0 ] && [ "$c_err" = 0 ] || { verdict=FAIL; why+=("churn errors"); }
[ "$static_bad" = 0 ] || { verdict=FAIL; why+=("static fetch mismatch"); }
[ "$scrapes_bad" = 0 ] || { verdict=FAIL; why+=("metrics scrape failed"); }
[ "$confirmed" = "$reloads" ] || { verdict=FAIL; why+=("reloads $confirmed of $reloads confirmed"); }
second_half="?"
if [ -n "$mid_rss" ] && [ -n "$last_rss" ]; then
  second_half=$(( last_rss - mid_rss ))
  [ "$second_half" -le "$RSS_SLACK" ] || { verdict=FAIL; why+=("RSS grew ${second_half} KiB over the second half (slack $RSS_SLACK)"); }
else
  verdict=FAIL; why+=("no RSS samples")
fi

{
  echo "## Soak — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r)"
  echo
  echo "\`bench/soak.sh --minutes $MINUTES --sample $SAMPLE --reload $RELOAD --cores $CORES${NICE:+ --nice}${RW_ENV[*]:+ --env ${RW_ENV[*]}}\`: Ringway ($CORES cores) in front of bench-backend, all loads at once for $MINUTES min."
  echo
  echo "| load | done | errors |"
  echo "|---|---|---|"
  echo "| http (wrk -c32, /api/) | $wrk_req requests | non-2xx $wrk_non2xx, socket errors $wrk_sockerr |"
  echo "| echo --verify (64 tunnels, 512 B) | ${e_msgs:-?} messages, every byte compared | bad_echo ${e_bad:-?}, failed ${e_drop:-?}, other $e_err |"
  echo "| churn --verify (8 loops) | ${c_cycles:-?} handshakes | bad_echo ${c_bad:-?}, failed ${c_fail:-?}, other $c_err |"
  echo "| static 4 MiB (SHA-256) | $static_ok fetches | $static_bad mismatched |"
  echo "| /metrics scrapes | $scrapes_ok | $scrapes_bad failed |"
  echo "| reloads (SIGHUP) | $reloads sent | $confirmed confirmed |"
  echo
  echo "RSS: ${first_rss:-?} KiB at the first sample, ${mid_rss:-?} at half time (${mid_t:-?} s), $last_rss at the last, max $max_rss: ${second_half} KiB over the second half (slack $RSS_SLACK). After the load stopped: ${final_rss:-?} KiB, $final_fds fds, $final_tunnels tunnels. Ringway alive at the end: $alive."
  echo
  echo "Resident by mapping (KiB): first sample ${first_smaps:-?}; last sample ${last_smaps:-?}."
  [ ${#RW_ENV[@]} -gt 0 ] && { echo; echo "Ringway's environment: ${RW_ENV[*]}"; }
  echo
  echo "**$verdict**${why[*]:+: ${why[*]}}"
  echo
  echo "<details><summary>samples</summary>"
  echo
  cat "$TMP/samples.md"
  echo
  echo "</details>"
} > "$OUT.tmp"
mkdir -p "$(dirname "$OUT")"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
[ "$verdict" = PASS ]
