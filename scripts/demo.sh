#!/usr/bin/env bash
# Build Postern, lay out ./postern-demo on first run (demo domain example.test and a user
# demo@example.test whose password is printed), then run every daemon in the foreground.
# Ctrl-C stops them. DIR may be given as the first argument.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-postern-demo}
cargo build --workspace --bins
if [ ! -f "$DIR/postern.toml" ]; then
  target/debug/mailctl init --dir "$DIR" --demo
  echo "(the password is shown once; set a new one with: target/debug/mailctl --config $DIR/postern.toml user passwd demo@example.test)"
fi
exec target/debug/mailctl --config "$DIR/postern.toml" run
