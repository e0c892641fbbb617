#!/usr/bin/env bash
# Runs fuzz targets with cargo-fuzz (nightly).
#
#   fuzz/run.sh [--runs N | --seconds S] [TARGET...]     (default: every target, 20 s each)
#
# Each target starts from fuzz/corpus/<target>/ (seeds and everything found before) and writes
# new inputs there; a crash, a hang (> 1 s per input, -timeout=1) or a leak (AddressSanitizer's
# leak check) fails the run, leaving the input in fuzz/artifacts/<target>/. Prints one summary
# line per target: executions, seconds, coverage (libFuzzer's cov/ft), corpus size.
set -euo pipefail
cd "$(dirname "$0")"
LIMIT=(-max_total_time=20)
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) LIMIT=(-runs="$2"); shift 2 ;;
    --seconds) LIMIT=(-max_total_time="$2"); shift 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || mapfile -t TARGETS < <(cargo +nightly fuzz list)
mkdir -p logs
cargo +nightly fuzz build -O >/dev/null
status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "corpus/$t"
  if cargo +nightly fuzz run -O "$t" -- "${LIMIT[@]}" -timeout=1 -rss_limit_mb=2048 \
      -print_final_stats=1 >"logs/$t.log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  runs=$(grep -oE '^Done [0-9]+ runs in [0-9]+ second' "logs/$t.log" | tail -1 | awk '{print $2, $5}')
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "logs/$t.log" | tail -1)
  echo "$t: $result; runs/seconds: ${runs:-?}; ${cov:-no stats}"
  [ "$result" = ok ] || grep -E 'panicked at|ERROR: |SUMMARY' "logs/$t.log" | head -5
done
exit $status
