#!/usr/bin/env bash
# The whole test suite, on a fresh machine with only the Rust toolchain: installs what the
# end-to-end tests need (scripts/install-test-deps.sh: curl, openssl, wrk, haproxy, chromium,
# nghttp2-client, ...), then runs `cargo test` (unit tests and end-to-end tests against the
# real binary), then the fleet test alone (it is ignored by the plain run). Arguments go to
# `cargo test` (and then the fleet test is left out).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is missing; install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi
cargo test "$@"
# The fleet test (tests/e2e/fleet.rs, about 2 minutes, root for its network namespaces) loads
# the whole machine, so it is ignored by the run above and runs alone here, after the suite.
if [ $# -eq 0 ]; then
    cargo test --test e2e fleet::fleet_short -- --exact --ignored
fi
