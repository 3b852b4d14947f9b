#!/usr/bin/env bash
# Build Postern, lay out ./postern-demo on first run (demo domain example.test and a user
# demo@example.test whose password is printed), then run every daemon in the foreground.
# Ctrl-C stops them. DIR may be given as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-postern-demo}
cargo build --workspace --bins
# Where cargo put the binaries (CARGO_TARGET_DIR moves them).
BIN=${CARGO_TARGET_DIR:-target}/debug
if [ ! -f "$DIR/postern.toml" ]; then
  "$BIN/mailctl" init --dir "$DIR" --demo
  echo "(the password is shown once; set a new one with: $BIN/mailctl --config $DIR/postern.toml user passwd demo@example.test)"
fi
exec "$BIN/mailctl" --config "$DIR/postern.toml" run
