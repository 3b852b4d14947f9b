#!/usr/bin/env bash
# Build the Debian package of Postern: target/debian/postern_<version>-1_<arch>.deb.
#
#   scripts/build-deb.sh            # release build of the six binaries, then cargo-deb
#
# The packaging is [package.metadata.deb] in crates/mailctl/Cargo.toml, the maintainer
# scripts are deploy/deb/. Installs cargo-deb (crates.io, --locked) when it is missing.
# Prints the .deb's path on its last line. Test it with scripts/test-deb.sh.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."

# cargo-deb 3.8.0 builds with Rust 1.95 (its rust-version is 1.85).
CARGO_DEB_VERSION=${CARGO_DEB_VERSION:-3.8.0}
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    echo "build-deb: installing cargo-deb $CARGO_DEB_VERSION" >&2
    cargo install cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2
fi
# cargo-deb runs dpkg-shlibdeps for the $auto dependencies when dpkg-dev is there.
command -v dpkg-shlibdeps >/dev/null || echo "build-deb: no dpkg-dev: Depends without shared-library versions" >&2

# The binaries the package holds (cargo-deb alone would build only postern-mailctl's).
cargo build --release \
    -p postern-authd -p postern-lmtp-deliver -p postern-smtpd -p postern-imapd \
    -p postern-mailctl -p postern-sendmail >&2
# --no-build: the binaries above. --strip: without it the line tables of [profile.release] stay (3x the size).
# gzip -1 by the system's gzip: the built-in xz and zopfli took many minutes on 2 cores.
out=$(cargo deb -p postern-mailctl --no-build --strip -Z gz --fast --compress-system 2>&1 | tee -a /dev/stderr | tail -n 1)
[[ -f $out ]] || { echo "build-deb: cargo deb did not name a .deb (got: $out)" >&2; exit 1; }
echo "$out"
