#!/usr/bin/env bash
# Benchmark authd: authentications per second through the Dovecot `auth` socket with an
# argon2id hash (argon2 crate defaults: m=19456 KiB, t=2, p=1) and with SHA512-CRYPT
# (5000 rounds), and socketmap lookups per second on SQLite, and on PostgreSQL when
# POSTERN_TEST_PG_URL names an admin URL (scripts/ci-services.sh prints one).
# Usage: scripts/bench-authd.sh [REQUESTS]      (bounded: REQUESTS per run, default 400)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-400}
cargo build --release -q -p postern-authd -p postern-mailctl -p postern-bench
B=$PWD/target/release
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
  if [ -n "${PGDB:-}" ]; then psql -q "$POSTERN_TEST_PG_URL" -c "DROP DATABASE IF EXISTS $PGDB" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

# setup DIR [DBURL]: an instance with users, aliases; starts authd.
setup() {
  local dir=$1 url=${2:-}
  "$B/mailctl" init --dir "$dir" --domain bench.test ${url:+--database-url "$url"} >/dev/null
  local C=(--config "$dir/postern.toml")
  echo "benchpass-argon2id" | "$B/mailctl" "${C[@]}" user add bench1@bench.test >/dev/null
  "$B/mailctl" "${C[@]}" user add bench2@bench.test --password-hash "{SHA512-CRYPT}$(openssl passwd -6 benchpass-sha512)" >/dev/null
  local h; h="{SHA512-CRYPT}$(openssl passwd -6 x-unused-x)"
  for i in $(seq 1 100); do "$B/mailctl" "${C[@]}" user add "user$i@bench.test" --password-hash "$h" >/dev/null; done
  "$B/mailctl" "${C[@]}" alias add info@bench.test user1@bench.test user2@bench.test >/dev/null
  "$B/mailctl" "${C[@]}" alias add team@bench.test info@bench.test user3@bench.test >/dev/null
  "$B/authd" --config "$dir/postern.toml" >"$dir/authd.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do grep -q ready "$dir/authd.log" && return 0; sleep 0.1; done
  echo "authd did not start:"; cat "$dir/authd.log"; exit 1
}

keys() { for i in $(seq 1 100); do echo "user$i@bench.test"; done; }

echo "== machine: $(nproc) cores, $(uname -r); authd and the load generator share them"
setup "$WORK/sqlite"
S=$WORK/sqlite/run
for c in 1 4; do
  "$B/postern-bench" auth --socket "$S/auth" --user bench1@bench.test --password benchpass-argon2id \
    --requests "$N" --concurrency $c --label "auth argon2id  sqlite c=$c"
  "$B/postern-bench" auth --socket "$S/auth" --user bench2@bench.test --password benchpass-sha512 \
    --requests "$N" --concurrency $c --label "auth sha512-crypt sqlite c=$c"
done
for c in 1 8; do
  "$B/postern-bench" socketmap --socket "$S/socketmap" --map mailboxes --requests $((N * 50)) \
    --concurrency $c --label "socketmap mailboxes sqlite c=$c" --key $(keys)
  "$B/postern-bench" socketmap --socket "$S/socketmap" --map aliases --requests $((N * 10)) \
    --concurrency $c --label "socketmap aliases(2 levels) sqlite c=$c" --key team@bench.test
done

if [ -n "${POSTERN_TEST_PG_URL:-}" ] && command -v psql >/dev/null; then
  PGDB=postern_bench_$$
  psql -q "$POSTERN_TEST_PG_URL" -c "CREATE DATABASE $PGDB" >/dev/null
  setup "$WORK/pg" "${POSTERN_TEST_PG_URL%/*}/$PGDB"
  S=$WORK/pg/run
  for c in 1 8; do
    "$B/postern-bench" socketmap --socket "$S/socketmap" --map mailboxes --requests $((N * 50)) \
      --concurrency $c --label "socketmap mailboxes postgres c=$c" --key $(keys)
  done
  "$B/postern-bench" auth --socket "$S/auth" --user bench2@bench.test --password benchpass-sha512 \
    --requests "$N" --concurrency 4 --label "auth sha512-crypt postgres c=4"
else
  echo "(PostgreSQL skipped: set POSTERN_TEST_PG_URL, e.g. eval \"\$(scripts/ci-services.sh)\")"
fi
