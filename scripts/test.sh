#!/usr/bin/env bash
# The whole test suite, on a fresh machine with only the Rust toolchain: installs what the
# end-to-end tests need (scripts/install-test-deps.sh: curl, openssl, wrk, haproxy, chromium,
# nghttp2-client, ...), then runs `cargo test` (unit tests and end-to-end tests against the
# real binary). Arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is missing; install the Rust toolchain (https://rustup.rs)" >&2
    exit 1
fi
exec cargo test "$@"
