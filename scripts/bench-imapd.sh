#!/usr/bin/env bash
# IMAP benchmark: Postern's imapd side by side with Debian's Dovecot (../shared/bench baseline,
# 127.0.0.1:10143), same load from `postern-bench imap` (imaptest-like sessions), same
# messages (an mbox from ../shared/bench/make-mbox.py APPENDed to every user's INBOX).
#
# Prints ops/s for `mixed` (log in, LIST, STATUS, SELECT, FETCH flags, FETCH a message, STORE,
# SEARCH, LOGOUT) and `logged-in` (the same without login/logout), plus CPU and peak memory of
# each server's process tree. Needs root (baseline-setup.sh). Bounded: SECS per run.
# Usage: scripts/bench-imapd.sh [SECS] [CLIENTS] [MSGS]     e.g. 10 20 100
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SECS=${1:-10}
CLIENTS=${2:-20}
MSGS=${3:-100}
USERS=20
BENCH=${BENCH_DIR:-$REPO/../shared/bench}
[ "$(id -u)" = 0 ] || { echo "bench-imapd.sh: run as root (baseline-setup.sh needs it)" >&2; exit 1; }
if [ ! -f /etc/postfix/main.cf ] && [ -f /usr/share/postfix/main.cf.debian ]; then
  cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
fi
if ! pgrep -x dovecot >/dev/null; then
  "$BENCH/baseline-setup.sh" >/dev/null
fi
DOVECOT_PID=$(pgrep -o -x dovecot)

cargo build --release -q -p postern-authd -p postern-mailctl -p postern-imapd -p postern-bench
B=$REPO/target/release
WORK=$(mktemp -d /var/tmp/postern-imapbench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
MBOX=$WORK/bench.mbox
python3 "$BENCH/make-mbox.py" "$MBOX" "$MSGS" 1 >/dev/null
"$B/mailctl" init --dir "$WORK" --domain example.test >/dev/null
sed -i 's/^\[imapd\]$/[imapd]\nmax_connections_per_ip = 1000/' "$WORK/postern.toml"
# The same password scheme as the baseline's users (SHA512-CRYPT, 5000 rounds).
HASH=$(doveadm pw -s SHA512-CRYPT -p benchpass)
for n in $(seq 1 $USERS); do
  "$B/mailctl" --config "$WORK/postern.toml" user add "user$n@example.test" --password-hash "$HASH" >/dev/null
done
PORT=$(sed -n '/^\[imapd\]/,/^\[/p' "$WORK/postern.toml" | grep -m1 '^imap ' | sed 's/.*:\([0-9]*\)".*/\1/')
"$B/authd" --config "$WORK/postern.toml" >"$WORK/authd.log" 2>&1 & PIDS+=($!)
AUTHD=$!
for _ in $(seq 1 100); do [ -S "$WORK/run/auth" ] && break; sleep 0.1; done
"$B/imapd" --config "$WORK/postern.toml" >"$WORK/imapd.log" 2>&1 & PIDS+=($!)
IMAPD=$!
for _ in $(seq 1 100); do grep -q 'ready daemon="imapd"' "$WORK/imapd.log" && break; sleep 0.1; done

run() { # label addr treespec mode
  local label=$1 addr=$2 tree=$3 mode=$4
  python3 "$BENCH/proctree-stat.py" --interval 0.5 --max-secs $((SECS + 30)) $tree >"$WORK/stat" &
  local st=$!
  "$B/postern-bench" imap --addr "$addr" --user 'user%d@example.test' --users $USERS \
    --password benchpass --clients "$CLIENTS" --secs "$SECS" --mode "$mode" --label "$label $mode"
  kill -TERM $st; wait $st 2>/dev/null || true
  sed 's/^/    /' "$WORK/stat"
}
echo "== $(nproc) cores shared by client and servers; $USERS users x $MSGS messages; $CLIENTS clients; ${SECS}s per run"
"$B/postern-bench" imap --addr 127.0.0.1:10143 --user 'user%d@example.test' --users $USERS --password benchpass \
  --clients 1 --secs 1 --mbox "$MBOX" --msgs "$MSGS" --label "dovecot warm-up" >/dev/null
"$B/postern-bench" imap --addr "127.0.0.1:$PORT" --user 'user%d@example.test' --users $USERS --password benchpass \
  --clients 1 --secs 1 --mbox "$MBOX" --msgs "$MSGS" --label "postern warm-up" >/dev/null
for mode in mixed logged-in; do
  run "dovecot" 127.0.0.1:10143 "dovecot=$DOVECOT_PID" $mode
  run "postern" "127.0.0.1:$PORT" "postern-imapd=$IMAPD postern-authd=$AUTHD" $mode
done
