#!/usr/bin/env bash
# Compare Ringway with a blind forwarder, nginx and HAProxy on one machine (loopback only).
#
#   bench/compare.sh [--targets direct,bare,ringway,nginx,haproxy]
#                    [--tests http,static,echo,bulk,idle,churn]
#                    [--quick] [--duration SECS] [--idle-conns N] [--out FILE] [--keep]
#
# Layout: bench-backend pinned to CPU 0, the proxy to CPU 1 with one worker (nginx
# worker_processes 1, HAProxy nbthread 1, Ringway cores = 1 / pin = false), the load generator
# (ringway-bench, or wrk for plain HTTP) on CPU 0. Each (target, test) pair gets a freshly started
# proxy, so CPU and memory figures do not carry over between tests.
#
# Figures per target:
#   http     wrk -t1 -c64 through the proxy's HTTP path (/api/ → backend's fixed 200)
#   static   wrk -t1 -c64 on a small static file (Ringway and nginx only)
#   echo     64 connections × 64-byte messages, closed loop: msgs/s, p50/p99 µs
#   bulk     4 connections × 64 KiB messages, 4 in flight each: MB/s of payload received
#   idle     N proxied WebSocket connections held open: proxy RSS per connection
#            ((VmRSS with them − VmRSS before) / open count, summed over the proxy's processes),
#            and how many still echo at the end
#   churn    32 loops of connect → handshake → one message → close: handshakes/s
#   cpu      the proxy's own CPU time (utime+stime of all its processes and threads, from
#            /proc/PID/stat) over the measured interval, per request / message / MB / handshake
# Output: one Markdown table (values, and ratios against nginx in parentheses), printed and
# written to --out; the raw JSON lines of every run go next to it (FILE.jsonl).
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_TARGETS="direct,bare,ringway,nginx,haproxy"
ALL_TESTS="http,static,echo,bulk,idle,churn"
TARGETS=$ALL_TARGETS
TESTS=$ALL_TESTS
QUICK=0
DURATION=""
IDLE_CONNS=""
OUT=""
KEEP=0
PORT_BASE=19000

usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --targets) TARGETS=$2; shift 2 ;;
    --targets=*) TARGETS=${1#*=}; shift ;;
    --tests) TESTS=$2; shift 2 ;;
    --tests=*) TESTS=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --port-base) PORT_BASE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done

has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }

for t in ${TARGETS//,/ }; do
  case ",$ALL_TARGETS," in *",$t,"*) ;; *) echo "compare.sh: unknown target $t" >&2; exit 2 ;; esac
done
for t in ${TESTS//,/ }; do
  case ",$ALL_TESTS," in *",$t,"*) ;; *) echo "compare.sh: unknown test $t" >&2; exit 2 ;; esac
done

if [ "$QUICK" = 1 ]; then
  DUR=${DURATION:-2}; WARM=0.5; DEF_IDLE=2000
else
  DUR=${DURATION:-10}; WARM=1; DEF_IDLE=10000
fi
# A proxy holds two descriptors per proxied connection; stay under the hard fd limit.
HARD_NOFILE=$(ulimit -Hn)
[ "$HARD_NOFILE" = unlimited ] && HARD_NOFILE=1048576
# (1000 spare: listeners, logs, connections still closing; HAProxy wants 2 × maxconn + a few.)
MAX_IDLE=$(( (HARD_NOFILE - 1000) / 2 ))
IDLE_N=${IDLE_CONNS:-$DEF_IDLE}
if [ "$IDLE_N" -gt "$MAX_IDLE" ]; then
  has "$TESTS" idle && \
  echo "compare.sh: idle: $IDLE_N connections need $((2 * IDLE_N)) descriptors in the proxy; the hard limit is $HARD_NOFILE: using $MAX_IDLE" >&2
  IDLE_N=$MAX_IDLE
fi

BACKEND_PORT=$((PORT_BASE + 1))
BARE_PORT=$((PORT_BASE + 90))
RINGWAY_PORT=$((PORT_BASE + 88))
NGINX_PORT=$((PORT_BASE + 81))
HAPROXY_PORT=$((PORT_BASE + 82))
CLK_TCK=$(getconf CLK_TCK)

TMP=$(mktemp -d /tmp/ringway-compare.XXXXXX)
PIDS=()          # everything we started, killed on exit
PROXY_PID=""     # the running proxy's main pid (nginx: master)

log() { echo "compare.sh: $*" >&2; }

is_ours() {   # pid: still running and still our child (never signal a recycled pid)
  [ "$(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ')" = "$$" ]
}

forget_pid() {
  local keep=() q
  for q in "${PIDS[@]}"; do [ "$q" = "$1" ] || keep+=("$q"); done
  PIDS=("${keep[@]}")
}

stop_pid() {
  local p=$1 i
  if is_ours "$p"; then
    # Its children too (the load generator under timeout): two signals make it exit at once.
    for c in $(pgrep -P "$p" 2>/dev/null); do kill -TERM "$c" 2>/dev/null; done
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 1 40); do is_ours "$p" || break; sleep 0.05; done
    if is_ours "$p"; then kill -KILL "$p" 2>/dev/null; fi
    wait "$p" 2>/dev/null || true
  fi
  forget_pid "$p"
}

cleanup() {
  local p c
  for p in "${PIDS[@]}"; do
    # nginx workers are the master's children; they exit with it, but make sure.
    if is_ours "$p"; then
      for c in $(pgrep -P "$p" 2>/dev/null); do kill -KILL "$c" 2>/dev/null; done
    fi
    stop_pid "$p"
  done
  if [ "$KEEP" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }

wait_port() {   # port, seconds, pid
  local i
  for i in $(seq 1 $(( $2 * 20 ))); do
    port_listening "$1" && return 0
    is_ours "$3" || return 1
    sleep 0.05
  done
  return 1
}

wait_gone() {   # port: until nothing listens there (5 s at most)
  local i
  for i in $(seq 1 100); do port_listening "$1" || return 0; sleep 0.05; done
  return 1
}

# ---- tools -----------------------------------------------------------------------------------

APT_UPDATED=0
ensure_tool() {   # command, package candidates...
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "$cmd missing and cannot install it (not root or no apt-get)"; return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    timeout 300 apt-get update -qq >/dev/null 2>&1 || log "apt-get update failed"
    APT_UPDATED=1
  fi
  local pkg
  for pkg in "$@"; do
    if apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
      log "installing $pkg"
      DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "$pkg" >/dev/null 2>&1 || true
      command -v "$cmd" >/dev/null 2>&1 && return 0
    fi
  done
  log "could not install $cmd"; return 1
}

HAVE_WRK=1
if has "$TESTS" http || has "$TESTS" static; then ensure_tool wrk wrk || HAVE_WRK=0; fi
if has "$TARGETS" nginx; then ensure_tool nginx nginx-light nginx-core nginx || TARGETS=$(echo ",$TARGETS," | sed 's/,nginx,/,/; s/^,//; s/,$//'); fi
if has "$TARGETS" haproxy; then ensure_tool haproxy haproxy || TARGETS=$(echo ",$TARGETS," | sed 's/,haproxy,/,/; s/^,//; s/,$//'); fi
command -v taskset >/dev/null || { log "taskset (util-linux) is required"; exit 1; }

log "building (release)"
( cd "$ROOT" && timeout 1800 cargo build --release -q ) || { log "cargo build --release failed"; exit 1; }
( cd "$ROOT" && timeout 1800 cargo build -p ringway-bench --release -q ) || { log "building ringway-bench failed"; exit 1; }
TARGET_DIR=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TARGET_DIR=${TARGET_DIR:-$ROOT/target}
RINGWAY=$TARGET_DIR/release/ringway
GEN=$TARGET_DIR/release/ringway-bench
BACKEND=$TARGET_DIR/release/bench-backend
BARE=$TARGET_DIR/release/bare-forwarder
for b in "$RINGWAY" "$GEN" "$BACKEND" "$BARE"; do [ -x "$b" ] || { log "missing $b"; exit 1; }; done

for p in $BACKEND_PORT $BARE_PORT $RINGWAY_PORT $NGINX_PORT $HAPROXY_PORT; do
  if port_listening "$p"; then log "port $p is in use (try --port-base)"; exit 1; fi
done

# ---- configs ---------------------------------------------------------------------------------

WWW=$TMP/www
mkdir -p "$WWW/static" "$TMP/nginx/logs" "$TMP/nginx/tmp"
printf 'hello, world\n' > "$WWW/static/hello.txt"
chmod -R a+rX "$TMP"

cat > "$TMP/ringway.toml" <<EOF
[runtime]
cores = 1
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$RINGWAY_PORT"
[[backend]]
name = "app"
servers = ["127.0.0.1:$BACKEND_PORT"]
# As many idle keep-alive connections as wrk's 64 (nginx: keepalive 64); Ringway's default, 32,
# makes it close and reopen backend connections under -c64.
keepalive_per_server = 64
[[vhost]]
name = "bench"
domains = ["*"]
doc_root = "$WWW"
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

# nginx ran short of worker_connections ("not enough, reusing connections", resets) at 2 × 9,500
# proxied connections with 19,900 under a 20,000 fd limit, so give it more slots than descriptors:
# the fd limit is the real bound (it then warns that worker_connections exceed it).
NGINX_CONNS=$(( HARD_NOFILE * 3 / 2 ))
cat > "$TMP/nginx/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $HARD_NOFILE;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events {
    worker_connections $NGINX_CONNS;
    use epoll;
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    fastcgi_temp_path $TMP/nginx/tmp/fastcgi;
    uwsgi_temp_path $TMP/nginx/tmp/uwsgi;
    scgi_temp_path $TMP/nginx/tmp/scgi;
    sendfile on;
    keepalive_requests 1000000;
    upstream app {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        root $WWW;
        location /ws {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }
        location /api/ {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /static/ { }
    }
}
EOF

HAPROXY_MAXCONN=$(( IDLE_N + 100 ))
cat > "$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn $HAPROXY_MAXCONN
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
    timeout http-keep-alive 60s
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend app
backend app
    server s1 127.0.0.1:$BACKEND_PORT
EOF

if has "$TARGETS" ringway && ! "$RINGWAY" check --config "$TMP/ringway.toml" >"$TMP/ringway-check.log" 2>&1; then
  log "ringway check rejected the generated config:"; cat "$TMP/ringway-check.log" >&2
fi

# ---- processes -------------------------------------------------------------------------------

BACKEND_PID=""
start_backend() {
  taskset -c 0 "$BACKEND" --listen "127.0.0.1:$BACKEND_PORT" >"$TMP/backend.log" 2>&1 &
  BACKEND_PID=$!; PIDS+=("$BACKEND_PID")
  wait_port "$BACKEND_PORT" 10 "$BACKEND_PID" || { log "bench-backend did not start"; cat "$TMP/backend.log" >&2; exit 1; }
}

proxy_port() {
  case $1 in
    direct) echo "$BACKEND_PORT" ;; bare) echo "$BARE_PORT" ;; ringway) echo "$RINGWAY_PORT" ;;
    nginx) echo "$NGINX_PORT" ;; haproxy) echo "$HAPROXY_PORT" ;;
  esac
}

start_proxy() {   # target → PROXY_PID (empty for direct)
  local t=$1 port
  PROXY_PID=""
  port=$(proxy_port "$t")
  case $t in
    direct) return 0 ;;
    bare) taskset -c 1 "$BARE" --listen "127.0.0.1:$port" --backend "127.0.0.1:$BACKEND_PORT" >>"$TMP/$t.log" 2>&1 & ;;
    ringway) taskset -c 1 "$RINGWAY" --config "$TMP/ringway.toml" --log-level warn >>"$TMP/$t.log" 2>&1 & ;;
    nginx) taskset -c 1 nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" >>"$TMP/$t.log" 2>&1 & ;;
    haproxy) taskset -c 1 haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/$t.log" 2>&1 & ;;
  esac
  PROXY_PID=$!; PIDS+=("$PROXY_PID")
  if ! wait_port "$port" 15 "$PROXY_PID"; then
    log "$t did not start listening on $port"; tail -5 "$TMP/$t.log" >&2
    stop_pid "$PROXY_PID"; PROXY_PID=""; return 1
  fi
  sleep 0.2
}

stop_proxy() {
  local port
  [ -n "$PROXY_PID" ] || return 0
  port=$(proxy_port "$1")
  if is_ours "$PROXY_PID"; then
    for c in $(pgrep -P "$PROXY_PID" 2>/dev/null); do kill -TERM "$c" 2>/dev/null; done
  fi
  stop_pid "$PROXY_PID"
  PROXY_PID=""
  wait_gone "$port" || log "$1 still listening on $port"
}

proxy_pids() {   # main pid plus its children (nginx workers)
  [ -n "$PROXY_PID" ] && is_ours "$PROXY_PID" || return 0
  echo "$PROXY_PID"
  pgrep -P "$PROXY_PID" 2>/dev/null || true
}

# Helpers the generator runs: CPU ticks and RSS of the pids listed in $TMP/pids.
cat > "$TMP/cpu_ticks.sh" <<'EOF'
#!/bin/sh
t=0
for p in $(cat "$1"); do
  [ -r /proc/$p/stat ] || continue
  set -- $(sed 's/.*) //' /proc/$p/stat)
  t=$((t + ${12} + ${13}))
done
echo "$t"
EOF
cat > "$TMP/rss_kb.sh" <<'EOF'
#!/bin/sh
t=0
for p in $(cat "$1"); do
  r=$(awk '/^VmRSS:/ {print $2}' /proc/$p/status 2>/dev/null)
  t=$((t + ${r:-0}))
done
echo "$t"
EOF
cat > "$TMP/mark.sh" <<EOF
#!/bin/sh
echo "\$RINGWAY_BENCH_PHASE \$(sh $TMP/cpu_ticks.sh $TMP/pids)" >> $TMP/marks
EOF
chmod +x "$TMP"/*.sh

cpu_ticks() { proxy_pids > "$TMP/pids"; sh "$TMP/cpu_ticks.sh" "$TMP/pids"; }
rss_kb() { proxy_pids > "$TMP/pids"; sh "$TMP/rss_kb.sh" "$TMP/pids"; }

# ---- results ---------------------------------------------------------------------------------

declare -A R   # R[target.metric] = value
RAW=$TMP/raw.jsonl
: > "$RAW"

jget() {   # json line, key → value (numbers and plain strings)
  echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"
}
fmt() { awk -v v="$1" -v p="${2:-0}" 'BEGIN { if (v == "") print ""; else printf "%.*f", p, v }'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print ""; else printf "%.6f", a / b }'; }

record() { R["$1.$2"]=$3; }

# Runs a command in the background and waits for it, so that a signal to this script is handled
# at once (bash defers traps while a foreground child or a $(...) runs). Sets BG_RC.
run_bg() {   # outfile errfile cmd...
  local out=$1 err=$2; shift 2
  "$@" >"$out" 2>>"$err" &
  local p=$!
  PIDS+=("$p")
  wait "$p"; BG_RC=$?
  forget_pid "$p"
}

GEN_LINE=""
run_gen() {   # target test args... → GEN_LINE (one JSON line, or empty)
  local t=$1 test=$2; shift 2
  local port
  port=$(proxy_port "$t")
  : > "$TMP/marks"
  proxy_pids > "$TMP/pids"
  run_bg "$TMP/out-$t-$test.json" "$TMP/gen-$t-$test.log" \
    timeout 600 taskset -c 0 "$GEN" "$@" --url "ws://127.0.0.1:$port/ws" --json
  GEN_LINE=$(head -1 "$TMP/out-$t-$test.json")
  if [ "$BG_RC" -ne 0 ]; then
    log "$t $test: ringway-bench exited $BG_RC"; tail -5 "$TMP/gen-$t-$test.log" >&2
  fi
  echo "{\"target\":\"$t\",\"test\":\"$test\",\"result\":${GEN_LINE:-null}}" >> "$RAW"
}

marks_cpu_s() {   # CPU seconds between the start and end marks
  awk -v hz="$CLK_TCK" '$1 == "start" { s = $2 } $1 == "end" { e = $2 } END { if (s != "" && e != "") printf "%.4f", (e - s) / hz }' "$TMP/marks"
}

run_wrk() {   # target test path
  local t=$1 test=$2 path=$3 port out c0 c1 reqs rps code
  port=$(proxy_port "$t")
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port$path" || true)
  if [ "$code" != 200 ]; then
    log "$t $test: GET $path answered ${code:-nothing}: n/a"
    record "$t" "${test}_note" "HTTP $code"
    return 0
  fi
  c0=$(cpu_ticks)
  run_bg "$TMP/wrk-$t-$test.txt" "$TMP/wrk-$t-$test.err" \
    timeout $((DUR + 60)) taskset -c 0 wrk -t1 -c64 -d"${DUR}s" --latency "http://127.0.0.1:$port$path"
  c1=$(cpu_ticks)
  out=$(cat "$TMP/wrk-$t-$test.txt")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  local errs non2xx
  errs=$(echo "$out" | awk '/Socket errors/ {print}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  echo "{\"target\":\"$t\",\"test\":\"$test\",\"result\":{\"requests\":${reqs:-0},\"rps\":${rps:-0},\"non2xx\":${non2xx:-0}}}" >> "$RAW"
  [ -n "$errs" ] && log "$t $test: $errs"
  [ -n "$non2xx" ] && log "$t $test: $non2xx non-2xx responses"
  record "$t" "${test}_rps" "$rps"
  if [ -n "$PROXY_PID" ] && [ -n "$reqs" ]; then
    record "$t" "${test}_cpu" "$(div "$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { print d / hz * 1e6 }')" "$reqs")"
  fi
}

run_test() {   # target test
  local t=$1 test=$2 line cpu
  case $test in
    http)
      [ "$HAVE_WRK" = 1 ] || return 0
      run_wrk "$t" http /api/ ;;
    static)
      [ "$HAVE_WRK" = 1 ] || return 0
      case $t in ringway|nginx) run_wrk "$t" static /static/hello.txt ;; *) return 0 ;; esac ;;
    echo)
      run_gen "$t" echo echo --conns 64 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      record "$t" echo_msgs "$(jget "$line" msgs_per_s)"
      record "$t" echo_p50 "$(jget "$line" p50_us)"
      record "$t" echo_p99 "$(jget "$line" p99_us)"
      record "$t" echo_failed "$(jget "$line" failed)"
      cpu=$(marks_cpu_s)
      [ -n "$PROXY_PID" ] && record "$t" echo_cpu "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(jget "$line" messages)")"
      ;;
    bulk)
      run_gen "$t" bulk bulk --conns 4 --size 65536 --window 4 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      local mbs dur
      mbs=$(jget "$line" mb_per_s); dur=$(jget "$line" duration_s)
      record "$t" bulk_mbs "$mbs"
      cpu=$(marks_cpu_s)
      [ -n "$PROXY_PID" ] && record "$t" bulk_cpu "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(awk -v m="$mbs" -v d="$dur" 'BEGIN { print m * d }')")"
      ;;
    idle)
      local before during open
      before=$(rss_kb)
      rm -f "$TMP/rss_during"
      run_gen "$t" idle idle --conns "$IDLE_N" --hold 0s --timeout 30s \
        --during "sleep 1; sh $TMP/rss_kb.sh $TMP/pids > $TMP/rss_during; echo \$RINGWAY_BENCH_OPEN > $TMP/idle_open"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      record "$t" idle_ok "$(jget "$line" ok)/$IDLE_N"
      if [ -n "$PROXY_PID" ] && [ -s "$TMP/rss_during" ]; then
        during=$(cat "$TMP/rss_during"); open=$(cat "$TMP/idle_open")
        record "$t" idle_rss "$(div $((during - before)) "$open")"
        record "$t" idle_rss_total "$during"
      fi
      ;;
    churn)
      run_gen "$t" churn churn --conns 32 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      record "$t" churn_hs "$(jget "$line" handshakes_per_s)"
      record "$t" churn_failed "$(jget "$line" failed)"
      cpu=$(marks_cpu_s)
      [ -n "$PROXY_PID" ] && record "$t" churn_cpu "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(jget "$line" handshakes)")"
      ;;
  esac
}

# ---- run -------------------------------------------------------------------------------------

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average is $LOAD_START before starting; other work on these CPUs will skew throughput and latency (CPU-per-operation figures suffer least)"
fi
log "targets=$TARGETS tests=$TESTS duration=${DUR}s warmup=${WARM}s idle=$IDLE_N (tmp $TMP)"
for t in ${TARGETS//,/ }; do
  start_backend
  for test in ${TESTS//,/ }; do
    case $test in static) case $t in ringway|nginx) ;; *) continue ;; esac ;; esac
    log "$t: $test"
    if ! start_proxy "$t"; then record "$t" "${test}_note" "did not start"; continue; fi
    run_test "$t" "$test"
    stop_proxy "$t"
  done
  stop_pid "$BACKEND_PID"
  wait_gone "$BACKEND_PORT" || true
done

# ---- table -----------------------------------------------------------------------------------

# column: key, title, decimals, better (hi|lo), tests it belongs to
COLS=(
  "http_rps|HTTP req/s|0|hi|http"
  "http_cpu|HTTP CPU µs/req|1|lo|http"
  "static_rps|static req/s|0|hi|static"
  "static_cpu|static CPU µs/req|1|lo|static"
  "echo_msgs|echo msg/s|0|hi|echo"
  "echo_p50|echo p50 µs|0|lo|echo"
  "echo_p99|echo p99 µs|0|lo|echo"
  "echo_cpu|echo CPU µs/msg|2|lo|echo"
  "bulk_mbs|bulk MB/s|0|hi|bulk"
  "bulk_cpu|bulk CPU µs/MB|0|lo|bulk"
  "idle_ok|idle ok|0|-|idle"
  "idle_rss|idle RSS KiB/conn|2|lo|idle"
  "churn_hs|churn handshakes/s|0|hi|churn"
  "churn_cpu|churn CPU µs/handshake|1|lo|churn"
)

cell() {   # target key decimals
  local v=${R["$1.$2"]:-} base=${R["nginx.$2"]:-} r
  if [ -z "$v" ]; then
    local test=${2%%_*}
    if [ -n "${R["$1.${test}_note"]:-}" ]; then echo "n/a (${R["$1.${test}_note"]})"; else echo "n/a"; fi
    return
  fi
  case $2 in idle_ok) echo "$v"; return ;; esac
  v=$(fmt "$v" "$3")
  if [ "$1" != nginx ] && [ -n "$base" ] && awk -v b="$base" 'BEGIN { exit !(b + 0 > 0) }'; then
    r=$(awk -v a="${R["$1.$2"]}" -v b="$base" 'BEGIN { printf "%.2f", a / b }')
    echo "$v (${r}×)"
  else
    echo "$v"
  fi
}

TABLE=$TMP/table.md
{
  echo "Ringway comparison — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r); backend + load generator on CPU 0, proxy on CPU 1; ${DUR}s per run (+${WARM}s warm-up), idle = $IDLE_N connections; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end. Ratios are against nginx."
  echo
  hdr="| target |"; sep="|---|"
  for c in "${COLS[@]}"; do
    IFS='|' read -r key title dec better tests <<<"$c"
    has "$TESTS" "$tests" || continue
    hdr="$hdr $title |"; sep="$sep---:|"
  done
  echo "$hdr"; echo "$sep"
  for t in ${TARGETS//,/ }; do
    row="| $t |"
    for c in "${COLS[@]}"; do
      IFS='|' read -r key title dec better tests <<<"$c"
      has "$TESTS" "$tests" || continue
      row="$row $(cell "$t" "$key" "$dec") |"
    done
    echo "$row"
  done
  echo
  echo "CPU = the proxy's utime+stime (all processes and threads) over the measured interval. direct = no proxy (CPU and RSS n/a). static: HAProxy serves no files; direct/bare have no static path."
} > "$TABLE"

cat "$TABLE"
if [ -n "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$TABLE" "$OUT"
  cp "$RAW" "${OUT%.md}.jsonl"
  log "wrote $OUT and ${OUT%.md}.jsonl"
fi
