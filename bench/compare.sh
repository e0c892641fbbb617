#!/usr/bin/env bash
# Compare Ringway with a blind forwarder, nginx and HAProxy on one machine (loopback only).
#
#   bench/compare.sh [--targets direct,bare,ringway,nginx,haproxy]
#                    [--tests http,static,static-gzip,echo,bulk,idle,churn,https,wss-echo,wss-churn,wss-resume]
#                    [--quick] [--duration SECS] [--rounds N] [--idle-conns N] [--out FILE] [--keep]
#
# Target ringway-b (not in the default set) runs the binary named by RINGWAY_B with the same
# config as ringway: an A/B comparison of two builds in one run. RINGWAY_B_CORE="KEY = VALUE ..."
# (newline- or ';'-separated) gives ringway-b a [[runtime.core]] entry for its one core on top of
# that config, e.g. RINGWAY_B=target/release/ringway RINGWAY_B_CORE='read_buffer = "16KiB"': an
# A/B comparison of two per-core settings of one build.
# Target ringway-admin (not in the default set) runs this build with an [admin] listener (the
# metrics endpoint) added to ringway's config, and scrapes /metrics once a second during the
# measured interval (the scrapes' CPU counts against it).
#
# --rounds N repeats every (target, test) pair N times, round after round (so the targets
# share the machine's quiet and noisy stretches alike), and reports each figure's median.
#
# --tests also takes `tls` (= https,wss-echo,wss-churn,wss-resume) and `all`; aliases mix with names
# (`--tests echo,tls`). The default is the plain tests only: TLS tests are opt-in.
#
# Layout: bench-backend pinned to CPU 0, the proxy to CPU 1 with one worker (nginx
# worker_processes 1, HAProxy nbthread 1, Ringway cores = 1 / pin = false), the load generator
# (ringway-bench, or wrk for HTTP and HTTPS) on CPU 0. Each (target, test) pair gets a freshly
# started proxy, so CPU and memory figures do not carry over between tests.
#
# Figures per target:
#   http     wrk -t1 -c64 through the proxy's HTTP path (/api/ → backend's fixed 200)
#   static   wrk -t1 -c64 on a small static file (Ringway and nginx only)
#   static-gzip  wrk -t1 -c64 -H 'Accept-Encoding: gzip' on a 100 KiB JavaScript file (Ringway
#            and nginx only), twice: compressed on the fly (Ringway compress = ["gzip"], nginx
#            gzip on, both at gzip level 5) and precompressed (app.js.gz beside it: Ringway
#            precompressed = ["gzip"], nginx gzip_static on); CPU per request is the figure
#   echo     64 connections × 64-byte messages, closed loop: msgs/s, p50/p99 µs
#   bulk     4 connections × 64 KiB messages, 4 in flight each: MB/s of payload received
#   idle     N proxied WebSocket connections held open: proxy RSS per connection
#            ((VmRSS with them − VmRSS before) / open count, summed over the proxy's processes),
#            and how many still echo at the end
#   churn    32 loops of connect → handshake → one message → close: handshakes/s
#   echo-rate (opt-in, not in the default set) echo at partial load: first the floor's maximum
#            (bare-forwarder, closed-loop echo as above, once per run), then every target at
#            25 %, 50 % and 100 % of it, open loop (ringway-bench --rate: 64 connections × 64 B,
#            a fixed schedule, latency from the scheduled send time): msg/s, p99 µs and CPU
#            µs/msg per level, in a table of its own with ratios to bare and to nginx
#   cpu      the proxy's own CPU time (utime+stime of all its processes and threads, from
#            /proc/PID/stat) over the measured interval, per request / message / MB / handshake
#   TLS tests (ringway, nginx and HAProxy only; TLS 1.3, one throwaway ECDSA P-256 certificate
#   for 127.0.0.1/localhost made with openssl in the run's temp dir, the same for all three):
#   https      wrk -t1 -c64 over https (keep-alive) through the HTTP proxy path (/api/)
#   wss-echo   as echo, over wss:// (ringway-bench with rustls, certificate verified)
#   wss-resume as wss-churn, but the client keeps its TLS sessions (tickets) and resumes them
#              on every reconnect (nginx: ssl_session_tickets on + a shared session cache;
#              HAProxy: its defaults, tickets on): handshakes/s, CPU µs/handshake, and how many
#              resumed (ringway-bench --resume)
#   wss-churn  as churn, over wss://: every loop is a full TLS handshake (no resumption) +
#              upgrade + one message + close: handshakes/s
# Output: one Markdown table (values, and ratios against nginx in parentheses), a second one for
# the TLS tests when any ran, printed and written to --out; the raw JSON lines of every run go
# next to it (FILE.jsonl), each with its round and the proxy's CPU seconds over the measured
# interval (proxy_cpu_s; null without a proxy), so rounds can be compared pair by pair.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ALL_TARGETS="direct,bare,ringway,nginx,haproxy"
PLAIN_TESTS="http,static,static-gzip,echo,bulk,idle,churn"
TLS_TESTS="https,wss-echo,wss-churn,wss-resume"
EXTRA_TESTS="echo-rate"
ALL_TESTS="$PLAIN_TESTS,$TLS_TESTS,$EXTRA_TESTS"
TARGETS=$ALL_TARGETS
TESTS=$PLAIN_TESTS
QUICK=0
DURATION=""
ROUNDS=1
IDLE_CONNS=""
OUT=""
KEEP=0
PORT_BASE=19000

usage() { awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit "${1:-0}"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --targets) TARGETS=$2; shift 2 ;;
    --targets=*) TARGETS=${1#*=}; shift ;;
    --tests) TESTS=$2; shift 2 ;;
    --tests=*) TESTS=${1#*=}; shift ;;
    --quick) QUICK=1; shift ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --idle-conns) IDLE_CONNS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --out=*) OUT=${1#*=}; shift ;;
    --port-base) PORT_BASE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "compare.sh: unknown argument $1" >&2; usage 2 ;;
  esac
done
case $ROUNDS in ''|*[!0-9]*|0) echo "compare.sh: --rounds wants a positive whole number" >&2; exit 2 ;; esac

has() { case ",$1," in *",$2,"*) return 0 ;; *) return 1 ;; esac; }
is_tls_test() { has "$TLS_TESTS" "$1"; }
tls_capable() { case $1 in ringway|ringway-b|ringway-admin|nginx|haproxy) return 0 ;; *) return 1 ;; esac; }

# Aliases: tls, all.
expanded=""
for t in ${TESTS//,/ }; do
  case $t in tls) t=$TLS_TESTS ;; all) t=$ALL_TESTS ;; esac
  expanded="$expanded,$t"
done
TESTS=${expanded#,}
any_tls_test() { local t; for t in ${TLS_TESTS//,/ }; do has "$TESTS" "$t" && return 0; done; return 1; }

for t in ${TARGETS//,/ }; do
  case ",$ALL_TARGETS,ringway-b,ringway-admin," in *",$t,"*) ;; *) echo "compare.sh: unknown target $t" >&2; exit 2 ;; esac
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
ADMIN_PORT=$((PORT_BASE + 89))
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
if has "$TESTS" http || has "$TESTS" static || has "$TESTS" static-gzip || has "$TESTS" https; then ensure_tool wrk wrk || HAVE_WRK=0; fi
if any_tls_test; then ensure_tool openssl openssl || { log "openssl is required for the TLS tests"; exit 1; }; fi
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
if has "$TARGETS" ringway-b && [ ! -x "${RINGWAY_B:-}" ]; then
  log "target ringway-b needs RINGWAY_B=/path/to/another/ringway binary"; exit 1
fi

for p in $BACKEND_PORT $BARE_PORT $RINGWAY_PORT $NGINX_PORT $HAPROXY_PORT; do
  if port_listening "$p"; then log "port $p is in use (try --port-base)"; exit 1; fi
done

# ---- configs ---------------------------------------------------------------------------------

WWW=$TMP/www
mkdir -p "$WWW/static" "$TMP/nginx/logs" "$TMP/nginx/tmp"
printf 'hello, world\n' > "$WWW/static/hello.txt"
# static-gzip: a 100 KiB JavaScript bundle (repetitive like real code), served compressed on
# the fly from gz/ and precompressed from pre/ (app.js.gz beside it, made by the gzip tool).
mkdir -p "$WWW/static/gz" "$WWW/static/pre"
awk 'BEGIN { srand(7); while (n < 102400) { l = sprintf("export function f%d(a, b) { return a * %d + b - \"%d\"; }\n", int(rand() * 5000), int(rand() * 1000), int(rand() * 77)); printf "%s", l; n += length(l) } }' |
  head -c 102400 > "$WWW/static/gz/app.js"
cp "$WWW/static/gz/app.js" "$WWW/static/pre/app.js"
gzip -5 -k -n "$WWW/static/pre/app.js"
touch -r "$WWW/static/pre/app.js" "$WWW/static/pre/app.js.gz"
chmod -R a+rX "$TMP"

# TLS tests: a throwaway CA and one ECDSA P-256 server certificate for localhost and 127.0.0.1,
# used by all three proxies (HAProxy wants certificate and key in one file).
TLS=$TMP/tls
make_certs() {
  mkdir -p "$TLS"
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -sha256 \
      -keyout "$TLS/ca.key" -out "$TLS/ca.crt" -subj "/CN=ringway compare.sh throwaway CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$TLS/server.key" -out "$TLS/server.csr" -subj "/CN=localhost" &&
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$TLS/server.ext" &&
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" \
      -set_serial "0x$(openssl rand -hex 8)" -days 2 -sha256 -extfile "$TLS/server.ext" -out "$TLS/server.crt" &&
    cat "$TLS/server.crt" "$TLS/server.key" > "$TLS/server.pem"
  } >"$TMP/openssl.log" 2>&1 || { log "making the test certificate failed:"; cat "$TMP/openssl.log" >&2; exit 1; }
}
any_tls_test && make_certs

# The same TLS 1.3 parameters for every proxy, in rustls's default order (Ringway has no
# setting for them): suites AES-256-GCM, AES-128-GCM, ChaCha20; groups X25519, P-256, P-384;
# ALPN http/1.1. Both clients (rustls in ringway-bench, OpenSSL in wrk) put AES-256-GCM and
# X25519 first, so that is what every proxy negotiates; the run logs what it saw.
TLS13_SUITES="TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"

ringway_conf() {   # tls (0|1)
  local listener_tls="" vhost_tls=""
  if [ "$1" = 1 ]; then
    listener_tls="tls = true"
    vhost_tls="[vhost.tls]
cert = \"$TLS/server.crt\"
key = \"$TLS/server.key\""
  fi
  cat <<EOF
[runtime]
cores = 1
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$RINGWAY_PORT"
$listener_tls
[[backend]]
name = "app"
servers = ["127.0.0.1:$BACKEND_PORT"]
# Ringway's default (no cap on idle keep-alive connections) holds wrk's 64 without churn.
# BENCH_KEEPALIVE=N sets keepalive_per_server = N (an A/B with a build from before that
# default, whose 32 closed and reopened backend connections under -c64, wants 64).
${BENCH_KEEPALIVE:+keepalive_per_server = $BENCH_KEEPALIVE}
[[vhost]]
name = "bench"
domains = ["*"]
doc_root = "$WWW"
$vhost_tls
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$BACKEND_PORT"
[[vhost.context]]
uri = "/api/"
handler = "proxy"
backend = "app"
[[vhost.context]]
uri = "/static/gz/"
handler = "static"
compress = ["gzip"]
[[vhost.context]]
uri = "/static/pre/"
handler = "static"
precompressed = ["gzip"]
[[vhost.context]]
uri = "/"
handler = "static"
EOF
}
ringway_conf 0 > "$TMP/ringway.toml"
any_tls_test && ringway_conf 1 > "$TMP/ringway-tls.toml"
ringway_b_conf() {   # tls (0|1): ringway's config, plus RINGWAY_B_CORE as core 0's entry
  ringway_conf "$1"
  [ -n "${RINGWAY_B_CORE:-}" ] && printf '[[runtime.core]]\nid = 0\n%s\n' "$(printf '%s' "$RINGWAY_B_CORE" | tr ';' '\n')"
  return 0
}
ringway_b_conf 0 > "$TMP/ringway-b.toml"
any_tls_test && ringway_b_conf 1 > "$TMP/ringway-b-tls.toml"
admin_conf() {   # tls (0|1): ringway's config plus the admin listener (the vhost stays on main)
  ringway_conf "$1" | sed '/^\[\[backend\]\]/,$d'
  printf '[[listener]]\nname = "admin"\naddress = "127.0.0.1:%s"\n[admin]\nlistener = "admin"\n' "$ADMIN_PORT"
  ringway_conf "$1" | sed -n '/^\[\[backend\]\]/,$p' | sed 's/^domains = \["\*"\]$/domains = ["*"]\nlisteners = ["main"]/'
}
admin_conf 0 > "$TMP/ringway-admin.toml"
any_tls_test && admin_conf 1 > "$TMP/ringway-admin-tls.toml"

# nginx ran short of worker_connections ("not enough, reusing connections", resets) at 2 × 9,500
# proxied connections with 19,900 under a 20,000 fd limit, so give it more slots than descriptors:
# the fd limit is the real bound (it then warns that worker_connections exceed it).
NGINX_CONNS=$(( HARD_NOFILE * 3 / 2 ))
nginx_conf() {   # tls (0|1)
  local ssl="" ssl_conf=""
  if [ "$1" = 1 ]; then
    ssl=" ssl"
    ssl_conf="ssl_certificate $TLS/server.crt;
        ssl_certificate_key $TLS/server.key;
        ssl_protocols TLSv1.3;
        ssl_session_tickets on;
        ssl_session_cache shared:SSL:10m;
        ssl_conf_command Ciphersuites $TLS13_SUITES;
        ssl_ecdh_curve X25519:prime256v1:secp384r1;"
  fi
  cat <<EOF
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
    types { text/plain txt; text/javascript js; }
    upstream app {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT$ssl backlog=4096;
        $ssl_conf
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
        location /static/gz/ {
            gzip on;
            gzip_comp_level 5;
            gzip_min_length 1024;
            gzip_types text/javascript;
            gzip_vary on;
        }
        location /static/pre/ {
            gzip_static on;
            gzip_vary on;
        }
    }
}
EOF
}
nginx_conf 0 > "$TMP/nginx/nginx.conf"
any_tls_test && nginx_conf 1 > "$TMP/nginx/nginx-tls.conf"

HAPROXY_MAXCONN=$(( IDLE_N + 100 ))
haproxy_conf() {   # tls (0|1)
  local ssl=""
  [ "$1" = 1 ] && ssl=" ssl crt $TLS/server.pem ssl-min-ver TLSv1.3 ciphersuites $TLS13_SUITES curves X25519:P-256:P-384 alpn http/1.1"
  cat <<EOF
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
    bind 127.0.0.1:$HAPROXY_PORT$ssl
    default_backend app
backend app
    server s1 127.0.0.1:$BACKEND_PORT
EOF
}
haproxy_conf 0 > "$TMP/haproxy.cfg"
any_tls_test && haproxy_conf 1 > "$TMP/haproxy-tls.cfg"

if has "$TARGETS" ringway; then
  for conf in "$TMP/ringway.toml" "$TMP/ringway-tls.toml"; do
    [ -f "$conf" ] || continue
    if ! "$RINGWAY" check --config "$conf" >"$TMP/ringway-check.log" 2>&1; then
      log "ringway check rejected the generated config $(basename "$conf"):"; cat "$TMP/ringway-check.log" >&2
    fi
  done
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
    direct) echo "$BACKEND_PORT" ;; bare) echo "$BARE_PORT" ;; ringway|ringway-b|ringway-admin) echo "$RINGWAY_PORT" ;;
    nginx) echo "$NGINX_PORT" ;; haproxy) echo "$HAPROXY_PORT" ;;
  esac
}

start_proxy() {   # target [tls] → PROXY_PID (empty for direct); tls=1: the TLS config
  local t=$1 port sfx=""
  [ "${2:-0}" = 1 ] && sfx="-tls"
  PROXY_PID=""
  port=$(proxy_port "$t")
  case $t in
    direct) return 0 ;;
    bare) taskset -c 1 "$BARE" --listen "127.0.0.1:$port" --backend "127.0.0.1:$BACKEND_PORT" >>"$TMP/$t.log" 2>&1 & ;;
    ringway) taskset -c 1 "$RINGWAY" --config "$TMP/ringway$sfx.toml" --log-level warn >>"$TMP/$t.log" 2>&1 & ;;
    ringway-b) taskset -c 1 "$RINGWAY_B" --config "$TMP/ringway-b$sfx.toml" --log-level warn >>"$TMP/$t.log" 2>&1 & ;;
    ringway-admin) taskset -c 1 "$RINGWAY" --config "$TMP/ringway-admin$sfx.toml" --log-level warn >>"$TMP/$t.log" 2>&1 & ;;
    nginx) taskset -c 1 nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx$sfx.conf" -e "$TMP/nginx/logs/error.log" >>"$TMP/$t.log" 2>&1 & ;;
    haproxy) taskset -c 1 haproxy -db -f "$TMP/haproxy$sfx.cfg" >>"$TMP/$t.log" 2>&1 & ;;
  esac
  PROXY_PID=$!; PIDS+=("$PROXY_PID")
  if ! wait_port "$port" 15 "$PROXY_PID"; then
    log "$t did not start listening on $port"; tail -5 "$TMP/$t.log" >&2
    stop_pid "$PROXY_PID"; PROXY_PID=""; return 1
  fi
  SCRAPER_PID=""
  if [ "$t" = ringway-admin ]; then
    # A Prometheus-like scraper: /metrics once a second, on the load generator's CPU.
    taskset -c 0 sh -c "while :; do curl -s -o /dev/null http://127.0.0.1:$ADMIN_PORT/metrics; sleep 1; done" &
    SCRAPER_PID=$!; PIDS+=("$SCRAPER_PID")
  fi
  sleep 0.2
}

SCRAPER_PID=""
stop_proxy() {
  local port
  [ -n "$SCRAPER_PID" ] && { stop_pid "$SCRAPER_PID"; SCRAPER_PID=""; }
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

declare -A RA  # RA[target.metric] = every round's value, one per line
record() { R["$1.$2"]=$3; RA["$1.$2"]+="$3"$'\n'; }

# With --rounds: each numeric figure becomes the median of its rounds; others keep the last.
take_medians() {
  local k med
  for k in "${!RA[@]}"; do
    med=$(printf '%s' "${RA[$k]}" | awk '
      /^-?[0-9]+(\.[0-9]+)?$/ { v[n++] = $1; next } { bad = 1 }
      END {
        if (bad || n == 0) exit
        # insertion sort: a handful of values
        for (i = 1; i < n; i++) { x = v[i]; j = i - 1; while (j >= 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x }
        if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2
      }')
    [ -n "$med" ] && R[$k]=$med
  done
}

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
  local port url
  port=$(proxy_port "$t")
  url=(--url "ws://127.0.0.1:$port/ws")
  # wss: the certificate is verified against the throwaway CA, for the name sent as SNI.
  is_tls_test "$test" && url=(--url "wss://127.0.0.1:$port/ws" --ca "$TLS/ca.crt" --sni localhost)
  : > "$TMP/marks"
  proxy_pids > "$TMP/pids"
  run_bg "$TMP/out-$t-$test.json" "$TMP/gen-$t-$test.log" \
    timeout 600 taskset -c 0 "$GEN" "$@" "${url[@]}" --json
  GEN_LINE=$(head -1 "$TMP/out-$t-$test.json")
  if [ "$BG_RC" -ne 0 ]; then
    log "$t $test: ringway-bench exited $BG_RC"; tail -5 "$TMP/gen-$t-$test.log" >&2
  fi
  local cpu=null
  [ -n "$PROXY_PID" ] && [ -s "$TMP/marks" ] && cpu=$(marks_cpu_s)
  echo "{\"target\":\"$t\",\"test\":\"$test\",\"round\":$round,\"proxy_cpu_s\":${cpu:-null},\"result\":${GEN_LINE:-null}}" >> "$RAW"
}

marks_cpu_s() {   # CPU seconds between the start and end marks
  awk -v hz="$CLK_TCK" '$1 == "start" { s = $2 } $1 == "end" { e = $2 } END { if (s != "" && e != "") printf "%.4f", (e - s) / hz }' "$TMP/marks"
}

run_wrk() {   # target test path [scheme [header]]
  local t=$1 test=$2 path=$3 scheme=${4:-http} header=${5:-} port out c0 c1 reqs rps code
  port=$(proxy_port "$t")
  local curl_tls=() hdr=()
  [ "$scheme" = https ] && curl_tls=(--cacert "$TLS/ca.crt")
  [ -n "$header" ] && hdr=(-H "$header")
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${curl_tls[@]}" "${hdr[@]}" "$scheme://127.0.0.1:$port$path" || true)
  if [ -n "$header" ] && [ "$code" = 200 ]; then
    # A compression test measures nothing if the answer is not compressed.
    local enc
    enc=$(curl -s -o /dev/null -D - --max-time 5 "${hdr[@]}" "$scheme://127.0.0.1:$port$path" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }')
    if [ "$enc" != gzip ]; then
      log "$t $test: GET $path with $header answered Content-Encoding '${enc}': n/a"
      record "$t" "${test}_note" "not gzip"
      return 0
    fi
  fi
  if [ "$scheme" = https ]; then
    # What an OpenSSL client (as wrk is) negotiates with this proxy.
    local neg
    neg=$(timeout 10 openssl s_client -connect "127.0.0.1:$port" -CAfile "$TLS/ca.crt" -brief </dev/null 2>&1 |
      awk -F': ' '/^Protocol version/ { v = $2 } /^Ciphersuite/ { c = $2 } /^(Server|Peer) Temp Key/ { split($2, a, ","); g = a[1] } END { print v, c, g }')
    record "$t" https_tls "$neg"
  fi
  if [ "$code" != 200 ]; then
    log "$t $test: GET $path answered ${code:-nothing}: n/a"
    record "$t" "${test}_note" "HTTP $code"
    return 0
  fi
  c0=$(cpu_ticks)
  run_bg "$TMP/wrk-$t-$test.txt" "$TMP/wrk-$t-$test.err" \
    timeout $((DUR + 60)) taskset -c 0 wrk -t1 -c64 -d"${DUR}s" --latency "${hdr[@]}" "$scheme://127.0.0.1:$port$path"
  c1=$(cpu_ticks)
  out=$(cat "$TMP/wrk-$t-$test.txt")
  reqs=$(echo "$out" | awk '/requests in/ {print $1}')
  rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  local errs non2xx
  errs=$(echo "$out" | awk '/Socket errors/ {print}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  local cpu=null
  [ -n "$PROXY_PID" ] && cpu=$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" 'BEGIN { printf "%.4f", d / hz }')
  echo "{\"target\":\"$t\",\"test\":\"$test\",\"round\":$round,\"proxy_cpu_s\":$cpu,\"result\":{\"requests\":${reqs:-0},\"rps\":${rps:-0},\"non2xx\":${non2xx:-0}}}" >> "$RAW"
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
      case $t in ringway|ringway-b|ringway-admin|nginx) run_wrk "$t" static /static/hello.txt ;; *) return 0 ;; esac ;;
    static-gzip)
      [ "$HAVE_WRK" = 1 ] || return 0
      case $t in ringway|ringway-b|ringway-admin|nginx) ;; *) return 0 ;; esac
      run_wrk "$t" static-gzip /static/gz/app.js http "Accept-Encoding: gzip"
      run_wrk "$t" static-gzip-pre /static/pre/app.js http "Accept-Encoding: gzip" ;;
    echo-rate)
      local pct rate
      for pct in 25 50 100; do
        rate=$(awk -v m="$FLOOR_MAX" -v p="$pct" 'BEGIN { printf "%.0f", m * p / 100 }')
        run_gen "$t" "echo-rate$pct" echo --conns 64 --size 64 --rate "$rate" --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
        line=$GEN_LINE; [ -n "$line" ] || continue
        record "$t" "echo-rate${pct}_msgs" "$(jget "$line" msgs_per_s)"
        record "$t" "echo-rate${pct}_p99" "$(jget "$line" p99_us)"
        record "$t" "echo-rate${pct}_skipped" "$(jget "$line" skipped)"
        record "$t" echo-rate_failed "$(jget "$line" failed)"
        cpu=$(marks_cpu_s)
        [ -n "$PROXY_PID" ] && record "$t" "echo-rate${pct}_cpu" "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(jget "$line" messages)")"
      done
      ;;
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
    https)
      [ "$HAVE_WRK" = 1 ] || return 0
      run_wrk "$t" https /api/ https ;;
    wss-echo)
      run_gen "$t" wss-echo echo --conns 64 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      record "$t" wss-echo_msgs "$(jget "$line" msgs_per_s)"
      record "$t" wss-echo_p50 "$(jget "$line" p50_us)"
      record "$t" wss-echo_p99 "$(jget "$line" p99_us)"
      record "$t" wss-echo_failed "$(jget "$line" failed)"
      record "$t" wss_tls "$(jget "$line" tls)"
      cpu=$(marks_cpu_s)
      [ -n "$PROXY_PID" ] && record "$t" wss-echo_cpu "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(jget "$line" messages)")"
      ;;
    wss-churn)
      run_gen "$t" wss-churn churn --conns 32 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      record "$t" wss-churn_hs "$(jget "$line" handshakes_per_s)"
      record "$t" wss-churn_failed "$(jget "$line" failed)"
      record "$t" wss_tls "$(jget "$line" tls)"
      cpu=$(marks_cpu_s)
      [ -n "$PROXY_PID" ] && record "$t" wss-churn_cpu "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(jget "$line" handshakes)")"
      ;;
    wss-resume)
      run_gen "$t" wss-resume churn --resume --conns 32 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "sh $TMP/mark.sh"
      line=$GEN_LINE; [ -n "$line" ] || return 0
      record "$t" wss-resume_hs "$(jget "$line" handshakes_per_s)"
      record "$t" wss-resume_failed "$(jget "$line" failed)"
      record "$t" wss-resume_pct "$(awk -v r="$(jget "$line" resumed)" -v h="$(jget "$line" handshakes)" 'BEGIN { if (h > 0) printf "%.1f", 100 * r / h }')"
      cpu=$(marks_cpu_s)
      [ -n "$PROXY_PID" ] && record "$t" wss-resume_cpu "$(div "$(awk -v c="$cpu" 'BEGIN { print c * 1e6 }')" "$(jget "$line" handshakes)")"
      ;;
  esac
}

# ---- run -------------------------------------------------------------------------------------

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_START%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average is $LOAD_START before starting; other work on these CPUs will skew throughput and latency (CPU-per-operation figures suffer least)"
fi
# echo-rate: the floor's maximum (bare-forwarder, closed loop), once, before the rounds.
FLOOR_MAX=""
if has "$TESTS" echo-rate; then
  round=0
  start_backend
  if start_proxy bare 0; then
    log "echo-rate: measuring the floor's maximum (bare, closed-loop echo)"
    run_gen bare echo-rate-floor echo --conns 64 --size 64 --duration "${DUR}s" --warmup "${WARM}s"
    FLOOR_MAX=$(jget "$GEN_LINE" msgs_per_s)
    stop_proxy bare
  fi
  stop_pid "$BACKEND_PID"
  wait_gone "$BACKEND_PORT" || true
  if [ -z "$FLOOR_MAX" ]; then
    log "echo-rate: the floor's maximum could not be measured: echo-rate left out"
    TESTS=$(echo ",$TESTS," | sed 's/,echo-rate,/,/; s/^,//; s/,$//')
  else
    log "echo-rate: the floor echoes $FLOOR_MAX msg/s at most; levels 25, 50, 100 % of it"
  fi
fi
log "targets=$TARGETS tests=$TESTS duration=${DUR}s warmup=${WARM}s idle=$IDLE_N rounds=$ROUNDS (tmp $TMP)"
for round in $(seq 1 "$ROUNDS"); do
[ "$ROUNDS" -gt 1 ] && log "round $round of $ROUNDS"
for t in ${TARGETS//,/ }; do
  # direct and bare have no TLS: skip them when only TLS tests were asked for.
  if ! tls_capable "$t"; then
    plain=0; for test in ${TESTS//,/ }; do is_tls_test "$test" || plain=1; done
    [ "$plain" = 1 ] || continue
  fi
  start_backend
  for test in ${TESTS//,/ }; do
    case $test in static|static-gzip) case $t in ringway|ringway-b|ringway-admin|nginx) ;; *) continue ;; esac ;; esac
    tls=0
    if is_tls_test "$test"; then tls_capable "$t" || continue; tls=1; fi
    log "$t: $test"
    if ! start_proxy "$t" "$tls"; then record "$t" "${test}_note" "did not start"; continue; fi
    run_test "$t" "$test"
    stop_proxy "$t"
  done
  stop_pid "$BACKEND_PID"
  wait_gone "$BACKEND_PORT" || true
done
done
[ "$ROUNDS" -gt 1 ] && take_medians

# ---- table -----------------------------------------------------------------------------------

# column: key, title, decimals, better (hi|lo), tests it belongs to
COLS=(
  "http_rps|HTTP req/s|0|hi|http"
  "http_cpu|HTTP CPU µs/req|1|lo|http"
  "static_rps|static req/s|0|hi|static"
  "static_cpu|static CPU µs/req|1|lo|static"
  "static-gzip_rps|gzip on the fly req/s|0|hi|static-gzip"
  "static-gzip_cpu|gzip on the fly CPU µs/req|1|lo|static-gzip"
  "static-gzip-pre_rps|gzip precompressed req/s|0|hi|static-gzip"
  "static-gzip-pre_cpu|gzip precompressed CPU µs/req|1|lo|static-gzip"
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
TLS_COLS=(
  "https_rps|HTTPS req/s|0|hi|https"
  "https_cpu|HTTPS CPU µs/req|1|lo|https"
  "wss-echo_msgs|wss echo msg/s|0|hi|wss-echo"
  "wss-echo_p50|wss echo p50 µs|0|lo|wss-echo"
  "wss-echo_p99|wss echo p99 µs|0|lo|wss-echo"
  "wss-echo_cpu|wss echo CPU µs/msg|2|lo|wss-echo"
  "wss-churn_hs|wss churn handshakes/s|0|hi|wss-churn"
  "wss-churn_cpu|wss churn CPU µs/handshake|1|lo|wss-churn"
  "wss-resume_hs|wss resume handshakes/s|0|hi|wss-resume"
  "wss-resume_cpu|wss resume CPU µs/handshake|1|lo|wss-resume"
  "wss-resume_pct|wss resume % resumed|1|hi|wss-resume"
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

emit_table() {   # only_tls_capable (0|1) column specs... (columns of tests not run are left out)
  local only_tls=$1; shift
  local hdr="| target |" sep="|---|" row c t key title dec better tests
  for c in "$@"; do
    IFS='|' read -r key title dec better tests <<<"$c"
    has "$TESTS" "$tests" || continue
    hdr="$hdr $title |"; sep="$sep---:|"
  done
  echo "$hdr"; echo "$sep"
  for t in ${TARGETS//,/ }; do
    [ "$only_tls" = 1 ] && ! tls_capable "$t" && continue
    row="| $t |"
    for c in "$@"; do
      IFS='|' read -r key title dec better tests <<<"$c"
      has "$TESTS" "$tests" || continue
      row="$row $(cell "$t" "$key" "$dec") |"
    done
    echo "$row"
  done
}

failures_note() {   # tests... → one line per (target, test) whose generator counted failures
  local t test f
  for t in ${TARGETS//,/ }; do
    for test in "$@"; do
      has "$TESTS" "$test" || continue
      f=${R["$t.${test}_failed"]:-}
      [ -n "$f" ] && [ "$f" != 0 ] && echo "- $t $test: $f connections failed (reasons in gen-$t-$test.log, kept with --keep)"
    done
  done
  return 0
}

any_plain_test() { local t; for t in ${TESTS//,/ }; do is_tls_test "$t" || [ "$t" = echo-rate ] || return 0; done; return 1; }

rate_ratio() {   # value base → "0.93×" or empty
  awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b + 0 > 0) printf "%.2f×", a / b }'
}

emit_rate_table() {   # echo-rate: per level msg/s, p99 and CPU µs/msg (× bare, × nginx)
  local hdr="| target |" sep="|---|" row t pct v c rb rn
  for pct in 25 50 100; do
    hdr="$hdr ${pct} % msg/s | ${pct} % p99 µs | ${pct} % CPU µs/msg |"; sep="$sep---:|---:|---:|"
  done
  echo "$hdr"; echo "$sep"
  for t in ${TARGETS//,/ }; do
    row="| $t |"
    for pct in 25 50 100; do
      v=${R["$t.echo-rate${pct}_msgs"]:-}
      row="$row $([ -n "$v" ] && fmt "$v" 0 || echo n/a) |"
      v=${R["$t.echo-rate${pct}_p99"]:-}
      row="$row $([ -n "$v" ] && fmt "$v" 0 || echo n/a) |"
      c=${R["$t.echo-rate${pct}_cpu"]:-}
      if [ -z "$c" ]; then row="$row n/a |"; continue; fi
      rb=""; rn=""
      [ "$t" != bare ] && rb=$(rate_ratio "$c" "${R["bare.echo-rate${pct}_cpu"]:-}")
      [ "$t" != nginx ] && rn=$(rate_ratio "$c" "${R["nginx.echo-rate${pct}_cpu"]:-}")
      local paren="${rb:+$rb bare}${rb:+${rn:+, }}${rn:+$rn nginx}"
      row="$row $(fmt "$c" 2)${paren:+ ($paren)} |"
    done
    echo "$row"
  done
}
any_tls_target() { local t; for t in ${TARGETS//,/ }; do tls_capable "$t" && return 0; done; return 1; }

TABLE=$TMP/table.md
{
  echo "Ringway comparison — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r); backend + load generator on CPU 0, proxy on CPU 1; ${DUR}s per run (+${WARM}s warm-up)$([ "$ROUNDS" -gt 1 ] && echo ", median of $ROUNDS rounds"), idle = $IDLE_N connections; load average $LOAD_START at start, $(cut -d' ' -f1-3 /proc/loadavg) at end. Ratios are against nginx."
  if any_plain_test; then
    echo
    emit_table 0 "${COLS[@]}"
    echo
    echo "CPU = the proxy's utime+stime (all processes and threads) over the measured interval. direct = no proxy (CPU and RSS n/a). static: HAProxy serves no files; direct/bare have no static path. static-gzip: a 100 KiB JavaScript file with Accept-Encoding: gzip, compressed on the fly at gzip level 5 (both) or served from app.js.gz."
    failures_note echo churn
  fi
  if has "$TESTS" echo-rate; then
    echo
    echo "echo-rate: open-loop echo (ringway-bench --rate, 64 connections × 64 B) at 25, 50 and 100 % of the floor's maximum, $FLOOR_MAX msg/s (bare-forwarder, closed loop, measured once at the start). p99 from each message's scheduled send time. CPU ratios are to bare (the floor) and to nginx at the same level."
    echo
    emit_rate_table
    echo
    for t in ${TARGETS//,/ }; do
      for pct in 25 50 100; do
        sk=${R["$t.echo-rate${pct}_skipped"]:-0}
        [ "$sk" != 0 ] && echo "- $t at $pct %: $sk scheduled messages skipped (64 already in flight on their connection): the target fell behind the schedule"
      done
    done
    failures_note echo-rate
  fi
  if any_tls_test && any_tls_target; then
    echo
    echo "TLS 1.3, terminated by the proxy (plain TCP to the backend); the same ECDSA P-256 certificate for every proxy. The load generator (ringway-bench: rustls; wrk: OpenSSL) shares CPU 0 with the backend and pays the client side of the crypto. wss churn: a full handshake per connection (no resumption); wss resume: the client resumes its sessions (tickets)."
    echo
    emit_table 1 "${TLS_COLS[@]}"
    echo
    for t in ${TARGETS//,/ }; do
      tls_capable "$t" || continue
      neg=""
      [ -n "${R["$t.wss_tls"]:-}" ] && neg="ringway-bench: ${R["$t.wss_tls"]}"
      [ -n "${R["$t.https_tls"]:-}" ] && neg="${neg:+$neg; }OpenSSL client (as wrk): ${R["$t.https_tls"]}"
      [ -n "$neg" ] && echo "- negotiated with $t: $neg"
    done
    failures_note wss-echo wss-churn wss-resume
  fi
} > "$TABLE"

cat "$TABLE"
if [ -n "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$TABLE" "$OUT"
  cp "$RAW" "${OUT%.md}.jsonl"
  log "wrote $OUT and ${OUT%.md}.jsonl"
fi
