#!/usr/bin/env bash
# Counts what one WebSocket churn cycle (connect → upgrade → one 64 B message → close, plain
# ws://) costs Ringway in load-independent units:
#   perf/churn-count.sh [--loops N] [--seconds S] [--out DIR] [--strace] [--tls | --resume]
# Default: user-space instructions per cycle under callgrind (counters zeroed after a warm-up
# run). With --strace: system calls per cycle (strace -c -f attached after the warm-up).
# --tls: over wss:// (TLS 1.3, a throwaway ECDSA P-256 certificate as in bench/compare.sh), a
# full handshake per cycle (wss-churn); --resume: the client resumes its sessions (wss-resume).
# RINGWAY_BIN=PATH counts that binary instead of target/release/ringway (before/after A/B).
# Layout as perf/profile.sh: bench-backend and ringway-bench on CPU 0, Ringway (cores = 1) on 1.
set -euo pipefail
cd "$(dirname "$0")/.."
loops=8 seconds=5 out=perf/out-churn mode=callgrind tls=0 resume=()
while [ $# -gt 0 ]; do
    case "$1" in
        --loops) loops=$2; shift 2 ;;
        --seconds) seconds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --strace) mode=strace; shift ;;
        --tls) tls=1; shift ;;
        --resume) tls=1; resume=(--resume); shift ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$out"
bin=target/release
ringway_bin=${RINGWAY_BIN:-$bin/ringway}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 400); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
backend_port=$(free_port) proxy_port=$(free_port)
taskset -c 0 "$bin/bench-backend" --listen "127.0.0.1:$backend_port" >/dev/null 2>&1 & pids+=($!)
wait_port "$backend_port"
cfg="$out/ringway.toml"
listener_tls="" vhost_tls="" url="ws://127.0.0.1:$proxy_port/ws" tls_args=()
if [ "$tls" = 1 ]; then
    t="$out/tls"; mkdir -p "$t"
    {
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -sha256 \
            -keyout "$t/ca.key" -out "$t/ca.crt" -subj "/CN=churn-count CA" \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout "$t/server.key" -out "$t/server.csr" -subj "/CN=localhost"
        printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" > "$t/server.ext"
        openssl x509 -req -in "$t/server.csr" -CA "$t/ca.crt" -CAkey "$t/ca.key" \
            -set_serial "0x$(openssl rand -hex 8)" -days 2 -sha256 -extfile "$t/server.ext" -out "$t/server.crt"
    } >"$out/openssl.log" 2>&1
    listener_tls="tls = true"
    vhost_tls="[vhost.tls]
cert = \"$t/server.crt\"
key = \"$t/server.key\""
    url="wss://127.0.0.1:$proxy_port/ws" tls_args=(--ca "$t/ca.crt" --sni localhost)
fi
cat > "$cfg" <<TOML
[runtime]
cores = 1
pin = false
[[listener]]
name = "main"
address = "127.0.0.1:$proxy_port"
$listener_tls
[[vhost]]
name = "bench"
domains = ["*"]
$vhost_tls
[[vhost.websocket]]
uri = "/ws"
address = "127.0.0.1:$backend_port"
TOML
churn() { taskset -c 0 "$bin/ringway-bench" churn --url "$url" "${tls_args[@]}" "${resume[@]}" --conns "$loops" --size 64 "$@"; }
if [ "$mode" = callgrind ]; then
    taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$out/callgrind.out" \
        "$ringway_bin" --config "$cfg" --log-level warn 2>"$out/valgrind.log" & pids+=($!)
    rw=${pids[-1]}
    wait_port "$proxy_port"
    churn --duration 2s --warmup 0s >/dev/null
    callgrind_control --zero "$rw" >/dev/null
    result=$(churn --duration "${seconds}s" --warmup 0s --json)
    callgrind_control --dump "$rw" >/dev/null
    sleep 1
    ir=$(for f in "$out"/callgrind.out*; do callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}'; done | sort -n | tail -1)
    n=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["handshakes"])')
    echo "$result" > "$out/churn.json"
    python3 -c "import sys; ir,n=int(sys.argv[1]),int(sys.argv[2]); print(f'instructions (Ir, Ringway, user space) {ir} over {n} churn cycles: {ir/max(n,1):.0f} per cycle')" "$ir" "$n" | tee "$out/instructions-per-cycle.txt"
else
    taskset -c 1 "$ringway_bin" --config "$cfg" --log-level warn & pids+=($!)
    rw=${pids[-1]}
    wait_port "$proxy_port"
    churn --duration 2s --warmup 0s >/dev/null
    strace -c -f -p "$rw" -o "$out/strace.txt" & st=$!
    sleep 1
    result=$(churn --duration "${seconds}s" --warmup 0s --json)
    sleep 0.5
    kill -INT "$st"; wait "$st" || true
    n=$(echo "$result" | python3 -c 'import json,sys; print(json.load(sys.stdin)["handshakes"])')
    echo "$result" > "$out/churn.json"
    total=$(awk '/^100.00|total/ {print $4}' "$out/strace.txt" | tail -1)
    python3 -c "import sys; t,n=int(sys.argv[1]),int(sys.argv[2]); print(f'system calls (strace -c -f, Ringway) {t} over {n} churn cycles: {t/max(n,1):.2f} per cycle')" "$total" "$n" | tee "$out/syscalls-per-cycle.txt"
    cat "$out/strace.txt"
fi
