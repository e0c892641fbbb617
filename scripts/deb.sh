#!/usr/bin/env bash
# Builds the Debian package (target/debian/ringway_*.deb) with cargo-deb: the release binary,
# its man page (`ringway man`, gzipped), the systemd unit, /etc/ringway/ringway.toml and the
# postinst that creates the `ringway` user (Cargo.toml [package.metadata.deb]).
#
#   scripts/deb.sh            build the .deb
#   scripts/deb.sh --test     build it, install it with dpkg -i, run `ringway --version` and
#                             `ringway check --config /etc/ringway/ringway.toml`, then purge it
#                             (root; Debian/Ubuntu). cargo-deb is installed first if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "deb.sh: installing cargo-deb"
    cargo install cargo-deb --locked --quiet
fi
cargo build --release --bin ringway
mkdir -p target/man
target/release/ringway man > target/man/ringway.1
gzip -9nf target/man/ringway.1
# Stripped: the release profile keeps debug info for profiling, the package does not need it.
cargo deb --no-build --strip --output target/debian/
deb=$(ls -t target/debian/ringway_*.deb | head -1)
echo "deb.sh: built $deb"
[ "${1:-}" = "--test" ] || exit 0

# The install test.
export DEBIAN_FRONTEND=noninteractive
command -v adduser >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq adduser; }
dpkg -i "$deb"
trap 'dpkg --purge ringway >/dev/null 2>&1 || true' EXIT
test "$(command -v ringway)" = /usr/bin/ringway
ringway --version
ringway --version | grep -q "^ringway $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)$"
getent passwd ringway >/dev/null || { echo "deb.sh: no ringway user after install" >&2; exit 1; }
dpkg-query -L ringway | grep -qx /lib/systemd/system/ringway.service
dpkg-query -L ringway | grep -qx /usr/share/man/man1/ringway.1.gz
dpkg-query -W -f='${Conffiles}\n' ringway | grep -q /etc/ringway/ringway.toml
zcat /usr/share/man/man1/ringway.1.gz | grep -q '^\.TH ringway'
ringway check --config /etc/ringway/ringway.toml
echo "deb.sh: installed, ringway --version and ringway check pass"
