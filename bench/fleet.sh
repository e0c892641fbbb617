#!/usr/bin/env bash
# The fleet test (issue 23 §3, tests/e2e/fleet.rs) run longer: the same data centre in network
# namespaces (HAProxy in mode tcp, three Ringways with shared ticket_keys, backends found
# through dnsmasq) and the same checks, with the scenario repeated ROUNDS times in one run.
# Needs root (ip netns), haproxy, dnsmasq, openssl. Not part of CI (CI runs one round:
# scripts/test.sh runs fleet::fleet_short after the suite).
#
#   bench/fleet.sh [--rounds 5] [--clients 2000] [--polls 40] [--every-ms 4000] [--out FILE]
#
# A round: a rolling deploy of the backends (DNS records added and removed, the old servers
# drained with 1012 spread over 10 s), a binary upgrade of one instance (the next one each
# round), a rolling restart of the three (SIGTERM, lame duck, drain with 1001 spread over
# 10 s). About 110 s a round on 2 cores. The figures are printed (and saved to --out, default
# bench/results/<date>-fleet.txt); exit status 0 only when every check held.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=5
clients=2000
polls=40
every_ms=4000
out="bench/results/$(date +%Y%m%d-%H%M%S)-fleet.txt"
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds="$2"; shift 2 ;;
        --clients) clients="$2"; shift 2 ;;
        --polls) polls="$2"; shift 2 ;;
        --every-ms) every_ms="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        *) echo "fleet.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "fleet.sh: needs root (it makes network namespaces with ip netns)" >&2
    exit 1
fi
for tool in ip haproxy dnsmasq openssl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "fleet.sh: $tool is missing (scripts/install-test-deps.sh)" >&2; exit 1; }
done
mkdir -p "$(dirname "$out")"
set +e
RINGWAY_FLEET_ROUNDS="$rounds" RINGWAY_FLEET_CLIENTS="$clients" RINGWAY_FLEET_POLLS="$polls" \
RINGWAY_FLEET_EVERY_MS="$every_ms" \
    cargo test --test e2e fleet::fleet_short -- --exact --ignored --nocapture --test-threads 1 2>&1 | tee "$out.log"
status=${PIPESTATUS[0]}
set -e
grep '^fleet:' "$out.log" > "$out" || true
rm -f "$out.log"
echo "fleet.sh: figures in $out; $([ "$status" = 0 ] && echo PASS || echo FAIL)"
exit "$status"
