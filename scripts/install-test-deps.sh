#!/usr/bin/env bash
# Installs (apt) what the test suite needs beyond the Rust toolchain: the clients, servers and
# tools the end-to-end tests run. Used by scripts/test.sh (the README's test command) and by
# .ci/run. Debian/Ubuntu; as root, or with sudo.
set -euo pipefail

need_apt=()
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v cc >/dev/null 2>&1 || need_apt+=(gcc)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
# The DNS discovery tests run a real DNS server on loopback.
command -v dnsmasq >/dev/null 2>&1 || need_apt+=(dnsmasq-base)
# The edge-server tests make bcrypt users files with htpasswd -B.
command -v htpasswd >/dev/null 2>&1 || need_apt+=(apache2-utils)
# The dashboard test loads the admin page in headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# nginx serves the same tree as Ringway in the static_edge side-by-side test (gzip_static).
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx)
# strace counts the system calls of a static request in the static_cost test.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
# HAProxy sends the PROXY protocol in the edge tests, and is the L4 balancer of the fleet test.
command -v haproxy >/dev/null 2>&1 || need_apt+=(haproxy)
# The fleet test builds its data centre with network namespaces and veth pairs (ip netns).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
# The HTTP/2 tests run an h2load smoke load (curl's HTTP/2 comes with Debian's curl).
command -v h2load >/dev/null 2>&1 || need_apt+=(nghttp2-client)
# The Autobahn|Testsuite (tests/autobahn.sh) runs in a Python 3 venv, patched with patch(1).
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v patch >/dev/null 2>&1 || need_apt+=(patch)
# The systemd unit test runs `systemd-analyze verify` on config/ringway.service.
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
# The seccomp profile test traces Ringway's system calls.
command -v strace >/dev/null 2>&1 || need_apt+=(strace)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "install-test-deps: installing ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need_apt[@]}"
fi
