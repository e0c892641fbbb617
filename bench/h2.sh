#!/usr/bin/env bash
# HTTP/2 comparison (issue 11): Ringway, nginx and HAProxy side by side on one machine.
#
#   bench/h2.sh [--targets ringway,nginx,haproxy] [--duration SECS] [--rounds N] [--out FILE]
#
# Target ringway-b (not in the default set) runs the binary named by RINGWAY_B with ringway's
# config, as in bench/compare.sh: an A/B comparison of two builds in one run, e.g.
#   RINGWAY_B=/tmp/ringway-before bench/h2.sh --targets ringway,ringway-b,haproxy --rounds 3
#
# Layout as bench/compare.sh: bench-backend and the load generators on CPU 0, the proxy on
# CPU 1 with one worker; h2c (prior knowledge) on every proxy, HTTP/1.1 to the backend.
#   h2        h2load -c16 -m10 -t1 through the proxy's HTTP path (/api/ → the backend's 200):
#             req/s, and the proxy's CPU per request
#   h2static  the same on a small static file (Ringway and nginx; HAProxy serves no files)
#   ws1       64 HTTP/1.1 WebSockets, closed-loop echo of 64-byte messages (ringway-bench echo)
#   ws2       64 RFC 8441 WebSockets on one HTTP/2 connection, the same echo (h2ws-bench);
#             nginx does not take WebSockets over HTTP/2 (n/a)
# CPU = the proxy's utime+stime over the measured interval (after the warm-up). Medians of
# --rounds. The table goes to stdout and --out.
set -u -o pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGETS=ringway,nginx,haproxy
DUR=8
WARM=1
ROUNDS=1
OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --targets) TARGETS=$2; shift 2 ;;
    --duration) DUR=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h|--help) awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"; exit 0 ;;
    *) echo "h2.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
log() { echo "h2.sh: $*" >&2; }
for t in ${TARGETS//,/ }; do
  case $t in ringway|ringway-b|nginx|haproxy) ;; *) log "unknown target $t"; exit 2 ;; esac
done
case ",$TARGETS," in *,ringway-b,*) [ -x "${RINGWAY_B:-}" ] || { log "target ringway-b needs RINGWAY_B=/path/to/another/ringway binary"; exit 1; } ;; esac
for t in h2load nginx haproxy taskset; do command -v $t >/dev/null || { log "needs $t (apt-get install nghttp2-client nginx haproxy)"; exit 1; }; done

(cd "$ROOT" && cargo build --release -q --bin ringway && cd bench && cargo build --release -q) || exit 1
TD=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
TD=${TD:-$ROOT/target}
RINGWAY=$TD/release/ringway GEN=$TD/release/ringway-bench H2WS=$TD/release/h2ws-bench BACKEND=$TD/release/bench-backend
CLK_TCK=$(getconf CLK_TCK)

BP=19300; RP=19301; NP=19302; HP=19303
TMP=$(mktemp -d /tmp/ringway-h2.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
wait_port() { local i; for i in $(seq 1 200); do listening "$1" && return 0; sleep 0.05; done; return 1; }
for p in $BP $RP $NP $HP; do listening $p && { log "port $p in use"; exit 1; }; done

mkdir -p "$TMP/www/static" "$TMP/nginx/logs" "$TMP/nginx/tmp"
printf 'hello, world\n' > "$TMP/www/static/hello.txt"
cat > "$TMP/ringway.toml" <<EOF
[runtime]
cores = 1
pin = false
[timeouts]
tunnel_idle = "1h"
[[listener]]
name = "main"
address = "127.0.0.1:$RP"
http2 = true
[[backend]]
name = "app"
servers = ["127.0.0.1:$BP"]
[[vhost]]
name = "bench"
domains = ["*"]
doc_root = "$TMP/www"
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$BP"
[[vhost.context]]
uri = "/api/"
handler = "proxy"
backend = "app"
[[vhost.context]]
uri = "/"
handler = "static"
EOF
# nginx 1.22: a plain `http2` listener is h2c only, so HTTP/1.1 WebSockets (ws1) go to a
# second listener on the same worker.
NP1=19304
cat > "$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes 1;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/tmp/body;
    proxy_temp_path $TMP/nginx/tmp/proxy;
    sendfile on;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    upstream app { server 127.0.0.1:$BP; keepalive 64; }
    server {
        listen 127.0.0.1:$NP http2;
        listen 127.0.0.1:$NP1;
        root $TMP/www;
        location /ws {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
        }
        location /api/ { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
        location /static/ { }
    }
}
EOF
cat > "$TMP/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h
frontend fe
    bind 127.0.0.1:$HP proto h2
    bind 127.0.0.1:$((HP + 2))
    default_backend app
backend app
    server s1 127.0.0.1:$BP
EOF

port_of() { case $1 in ringway|ringway-b) echo $RP ;; nginx) echo $NP ;; haproxy) echo $HP ;; esac; }
# HTTP/1.1 port for ws1 (Ringway serves both on one port).
port1_of() { case $1 in ringway|ringway-b) echo $RP ;; nginx) echo $NP1 ;; haproxy) echo $((HP + 2)) ;; esac; }
PROXY_PID=""
start_proxy() {
  case $1 in
    ringway) taskset -c 1 "$RINGWAY" --config "$TMP/ringway.toml" --log-level warn >>"$TMP/ringway.log" 2>&1 & ;;
    ringway-b) taskset -c 1 "$RINGWAY_B" --config "$TMP/ringway.toml" --log-level warn >>"$TMP/ringway-b.log" 2>&1 & ;;
    nginx) taskset -c 1 nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" >>"$TMP/nginx.log" 2>&1 & ;;
    haproxy) taskset -c 1 haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 & ;;
  esac
  PROXY_PID=$!; PIDS+=("$PROXY_PID")
  wait_port "$(port_of "$1")" || { log "$1 did not start"; tail -3 "$TMP/$1.log" >&2; return 1; }
  sleep 0.2
}
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  for c in $(pgrep -P "$PROXY_PID" 2>/dev/null); do kill "$c" 2>/dev/null; done
  kill "$PROXY_PID" 2>/dev/null; wait "$PROXY_PID" 2>/dev/null; PROXY_PID=""
  local i; for i in $(seq 1 100); do listening "$(port_of "$1")" || break; sleep 0.05; done
}
ticks() {
  local t=0 p
  for p in $PROXY_PID $(pgrep -P "$PROXY_PID" 2>/dev/null); do
    [ -r /proc/$p/stat ] || continue
    set -- $(sed 's/.*) //' /proc/$p/stat); t=$((t + ${12} + ${13}))
  done
  echo $t
}
cat > "$TMP/mark.sh" <<'EOF'
#!/bin/sh
t=0
for p in $(cat "$PIDFILE"); do
  [ -r /proc/$p/stat ] || continue
  set -- $(sed 's/.*) //' /proc/$p/stat); t=$((t + ${12} + ${13}))
done
echo "$RINGWAY_BENCH_PHASE $t" >> "$MARKS"
EOF
marks_cpu() { awk -v hz="$CLK_TCK" '$1 == "start" { s = $2 } $1 == "end" { e = $2 } END { if (s != "" && e != "") printf "%.4f", (e - s) / hz }' "$TMP/marks"; }
jget() { echo "$1" | sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p"; }

declare -A RA
record() { RA["$1.$2"]+="$3"$'\n'; }
median() { printf '%s' "${RA[$1]:-}" | awk '/^[0-9.]+$/ { v[n++] = $1 } END { if (!n) exit; for (i = 1; i < n; i++) { x = v[i]; j = i - 1; while (j >= 0 && v[j] > x) { v[j + 1] = v[j]; j-- } v[j + 1] = x } if (n % 2) print v[int(n / 2)]; else print (v[n / 2 - 1] + v[n / 2]) / 2 }'; }

run_h2load() {   # target test path
  local t=$1 test=$2 path=$3 port c0 c1 out rps
  port=$(port_of "$t")
  taskset -c 0 h2load -c 16 -m 10 -t 1 -D "$DUR" --warm-up-time "$WARM" "http://127.0.0.1:$port$path" >"$TMP/h2load-$t-$test.txt" 2>&1 &
  local p=$!
  sleep "$WARM"; sleep 0.3
  c0=$(ticks)
  sleep "$DUR"
  c1=$(ticks)
  wait $p
  out=$(cat "$TMP/h2load-$t-$test.txt")
  rps=$(echo "$out" | awk '/^finished in/ { gsub(",", "", $4); print $4 }')
  local ok fail
  ok=$(echo "$out" | awk '/^requests:/ { print $8 }'); fail=$(echo "$out" | awk '/^requests:/ { print $10 }')
  local s2xx
  s2xx=$(echo "$out" | awk '/^status codes:/ { gsub(",", "", $3); print $3 }')
  [ "${fail:-0}" != 0 ] && log "$t $test: $fail failed requests"
  [ -z "$rps" ] && { log "$t $test: no result"; tail -3 "$TMP/h2load-$t-$test.txt" >&2; return; }
  record "$t" "${test}_rps" "$rps"
  record "$t" "${test}_2xx" "${s2xx:-0}"
  record "$t" "${test}_cpu" "$(awk -v d=$((c1 - c0)) -v hz="$CLK_TCK" -v r="$rps" -v s="$DUR" 'BEGIN { if (r > 0) printf "%.2f", d / hz * 1e6 / (r * s) }')"
}

run_ws() {   # target test
  local t=$1 test=$2 line
  : > "$TMP/marks"
  echo "$PROXY_PID $(pgrep -P "$PROXY_PID" 2>/dev/null)" > "$TMP/pids"
  local hook="PIDFILE=$TMP/pids MARKS=$TMP/marks sh $TMP/mark.sh"
  if [ "$test" = ws1 ]; then
    line=$(taskset -c 0 "$GEN" echo --url "ws://127.0.0.1:$(port1_of "$t")/ws" --conns 64 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "$hook" --json 2>>"$TMP/gen.log" | head -1)
  else
    line=$(taskset -c 0 "$H2WS" --url "http://127.0.0.1:$(port_of "$t")/ws" --conns 1 --streams 64 --size 64 --duration "${DUR}s" --warmup "${WARM}s" --on-measure "$hook" 2>>"$TMP/gen.log" | head -1)
  fi
  [ -n "$line" ] || { log "$t $test: no result"; return; }
  local msgs cpu failed
  msgs=$(jget "$line" messages); failed=$(jget "$line" failed)
  [ "${failed:-0}" != 0 ] && { log "$t $test: $failed failed"; record "$t" "${test}_note" "failed $failed"; }
  record "$t" "${test}_msgs" "$(jget "$line" msgs_per_s)"
  record "$t" "${test}_p99" "$(jget "$line" p99_us)"
  cpu=$(marks_cpu)
  [ -n "$cpu" ] && [ "${msgs:-0}" -gt 0 ] && record "$t" "${test}_cpu" "$(awk -v c="$cpu" -v m="$msgs" 'BEGIN { printf "%.2f", c * 1e6 / m }')"
}

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
taskset -c 0 "$BACKEND" --listen "127.0.0.1:$BP" >"$TMP/backend.log" 2>&1 &
PIDS+=($!)
wait_port $BP || { log "backend did not start"; exit 1; }
for round in $(seq 1 "$ROUNDS"); do
  for t in ${TARGETS//,/ }; do
    for test in h2 h2static ws1 ws2; do
      [ "$t.$test" = haproxy.h2static ] && continue
      [ "$t.$test" = nginx.ws2 ] && continue
      log "round $round: $t $test"
      start_proxy "$t" || continue
      case $test in
        h2) run_h2load "$t" h2 /api/ ;;
        h2static) run_h2load "$t" h2static /static/hello.txt ;;
        ws1|ws2) run_ws "$t" "$test" ;;
      esac
      stop_proxy "$t"
    done
  done
done

cell() {   # target key decimals
  local v b
  v=$(median "$1.$2"); b=$(median "nginx.$2")
  if [ -z "$v" ]; then echo "n/a"; return; fi
  v=$(awk -v v="$v" -v p="$3" 'BEGIN { printf "%.*f", p, v }')
  if [ "$1" != nginx ] && [ -n "$b" ]; then
    echo "$v ($(awk -v a="$(median "$1.$2")" -v b="$b" 'BEGIN { printf "%.2f", a / b }')×)"
  else
    echo "$v"
  fi
}
{
  echo "HTTP/2 comparison — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, kernel $(uname -r), $(h2load --version 2>/dev/null | head -1); backend + generators on CPU 0, proxy on CPU 1 (one worker); ${DUR}s per run (+${WARM}s warm-up)$([ "$ROUNDS" -gt 1 ] && echo ", median of $ROUNDS rounds"); load average $LOAD at start. Ratios against nginx (ws2: nginx has no RFC 8441, so none)."
  echo
  echo "| target | h2 req/s | h2 CPU µs/req | h2 static req/s | h2 static CPU µs/req | ws1 msg/s | ws1 p99 µs | ws1 CPU µs/msg | ws2 msg/s | ws2 p99 µs | ws2 CPU µs/msg |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in ${TARGETS//,/ }; do
    echo "| $t | $(cell $t h2_rps 0) | $(cell $t h2_cpu 1) | $(cell $t h2static_rps 0) | $(cell $t h2static_cpu 1) | $(cell $t ws1_msgs 0) | $(cell $t ws1_p99 0) | $(cell $t ws1_cpu 2) | $(cell $t ws2_msgs 0) | $(cell $t ws2_p99 0) | $(cell $t ws2_cpu 2) |"
  done
  echo
  echo "h2: \`h2load -c 16 -m 10 -t 1\` on /api/ (proxied, HTTP/1.1 keep-alive to the backend); h2static: the same on a 13-byte file. ws1: 64 HTTP/1.1 WebSockets (ringway-bench echo); ws2: 64 RFC 8441 streams on one HTTP/2 connection (h2ws-bench), 64-byte messages, closed loop."
} > "$TMP/table.md"
cat "$TMP/table.md"
[ -n "$OUT" ] && { mkdir -p "$(dirname "$OUT")"; cp "$TMP/table.md" "$OUT"; log "wrote $OUT"; }
exit 0
