#!/usr/bin/env bash
# IMAP benchmark: Postern's imapd side by side with Debian's Dovecot (the ../shared/bench
# baseline on 127.0.0.1:10143), the same load from `postern-bench imap` against both, the same
# messages (an mbox from ../shared/bench/make-mbox.py APPENDed to every user's INBOX):
#
#  (a) mixed sessions with 20 and 100 clients: LOGIN, LIST, STATUS, SELECT, FETCH 1:* FLAGS,
#      FETCH ENVELOPE+BODY of one message, STORE, SEARCH, APPEND, UID STORE \Deleted,
#      UID EXPUNGE, LOGOUT; and logged-in sessions with 20 clients (one LOGIN each, then
#      cycles of SELECT, FETCH flags, FETCH envelope+body, STORE, APPEND + STORE \Deleted +
#      UID EXPUNGE, LIST, STATUS) — ops/s, p50/p99 overall and per command, and each server's
#      CPU (utime+stime from /proc) and RSS for the run;
#  (b) SELECT + UID FETCH 1:* (FLAGS) on a 100,000-message INBOX (copies of one Maildir):
#      cold (no index yet, page cache dropped), warm, and the index built with the page cache
#      dropped;
#  (c) memory with many connections idling in IDLE (Postern: IDLE_CONNS; Dovecot, one process
#      per connection: DOVECOT_IDLE_CONNS, its process_limit raised for the run and restored).
#
# CPU and peak memory of each server's process tree come from proctree-stat.py.
# Needs root (baseline-setup.sh, Dovecot's config, drop_caches). Every run is bounded.
# PARTS=abc selects the parts (e.g. PARTS=c for the memory test only).
# (a) knobs: CLIENT_COUNTS (default "20 100"; logged-in runs with 20 only), MAX_OPS (bound
# on operations per run, default 2000000), WEIGHTS (postern-bench imap --weights for the
# logged-in runs, e.g. "store=2,list=0"), USERS (default 20). NO_BUILD=1 skips the build;
# IMAPD_BIN=path runs another imapd binary (e.g. a saved one, for a before/after table).
# Usage: scripts/bench-imapd.sh [SECS] [MSGS] [BIG] [IDLE_CONNS] [DOVECOT_IDLE_CONNS]
#        defaults:               10     1000   100000 5000        1000
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SECS=${1:-10}
MSGS=${2:-1000}
BIG=${3:-100000}
IDLE_CONNS=${4:-5000}
DOVECOT_IDLE_CONNS=${5:-1000}
USERS=${USERS:-20}
CLIENT_COUNTS=${CLIENT_COUNTS:-20 100}
MAX_OPS=${MAX_OPS:-2000000}
WEIGHTS=${WEIGHTS:-}
BIGUSER=user100@example.test
BENCH=${BENCH_DIR:-$REPO/../shared/bench}
[ "$(id -u)" = 0 ] || { echo "bench-imapd.sh: run as root (baseline-setup.sh needs it)" >&2; exit 1; }
if [ ! -f /etc/postfix/main.cf ] && [ -f /usr/share/postfix/main.cf.debian ]; then
  cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
fi
# The baseline Dovecot listens on 127.0.0.1:10143 (a dovecot process elsewhere, e.g. a
# test's own instance, is not it).
dovecot_pid() {
  local p
  for p in $(ss -ltnpH 'sport = :10143' | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = dovecot ] && { echo "$p"; return; }
    p=$(awk '{print $4}' /proc/$p/stat 2>/dev/null)
    [ "$(cat /proc/$p/comm 2>/dev/null)" = dovecot ] && { echo "$p"; return; }
  done
}
if [ -z "$(dovecot_pid)" ]; then
  "$BENCH/baseline-setup.sh" >/dev/null
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# NO_BUILD=1: use the release binaries as they are (e.g. to measure a binary swapped in).
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p postern-authd -p postern-mailctl -p postern-imapd -p postern-bench
B=$REPO/target/release
WORK=$(mktemp -d /var/tmp/postern-imapbench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -f /etc/dovecot/local.conf.bench-orig ]; then
    mv /etc/dovecot/local.conf.bench-orig /etc/dovecot/local.conf
    doveadm reload 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
MBOX=$WORK/bench.mbox
python3 "$BENCH/make-mbox.py" "$MBOX" "$MSGS" 1 >/dev/null
"$B/mailctl" init --dir "$WORK" --domain example.test >/dev/null
sed -i "s/^\[imapd\]$/[imapd]\nmax_connections_per_ip = $((IDLE_CONNS + 100))\nmax_connections = $((IDLE_CONNS + 100))\nmax_unauthenticated = 1000/" "$WORK/postern.toml"
# The same password scheme as the baseline's users (SHA512-CRYPT, 5000 rounds).
HASH=$(doveadm pw -s SHA512-CRYPT -p benchpass)
for n in $(seq 1 $USERS) 100; do
  "$B/mailctl" --config "$WORK/postern.toml" user add "user$n@example.test" --password-hash "$HASH" >/dev/null
done
PORT=$(sed -n '/^\[imapd\]/,/^\[/p' "$WORK/postern.toml" | grep -m1 '^imap ' | sed 's/.*:\([0-9]*\)".*/\1/')
"$B/authd" --config "$WORK/postern.toml" >"$WORK/authd.log" 2>&1 & AUTHD=$!; PIDS+=($AUTHD)
for _ in $(seq 1 100); do [ -S "$WORK/run/auth" ] && break; sleep 0.1; done
"${IMAPD_BIN:-$B/imapd}" --config "$WORK/postern.toml" >"$WORK/imapd.log" 2>&1 & IMAPD=$!; PIDS+=($IMAPD)
for _ in $(seq 1 100); do grep -q 'ready daemon="imapd"' "$WORK/imapd.log" && break; sleep 0.1; done
DOVECOT_PID=$(dovecot_pid)
OURS="127.0.0.1:$PORT"
THEIRS=127.0.0.1:10143
bench() { "$B/postern-bench" imap --password benchpass "$@"; }
stat_start() { python3 "$BENCH/proctree-stat.py" --interval 0.5 --max-secs 600 "$@" >"$WORK/stat" & STAT=$!; }
stat_end() { kill -TERM $STAT; wait $STAT 2>/dev/null || true; sed 's/^/    /' "$WORK/stat"; }

echo "== $(nproc) cores shared by client and servers"
PARTS=${PARTS:-abc}   # which of (a) (b) (c) to run
if [[ $PARTS == *a* ]]; then
echo "== (a) mixed load: $USERS users x $MSGS messages; ${SECS}s per run"
for srv in "dovecot $THEIRS" "postern $OURS"; do
  set -- $srv
  bench --addr "$2" --user 'user%d@example.test' --users $USERS --clients 1 --secs 1 \
    --mbox "$MBOX" --msgs "$MSGS" --label "$1 warm-up" >/dev/null
done
for clients in $CLIENT_COUNTS; do
  for mode in mixed logged-in; do
    [ "$mode" = logged-in ] && [ "$clients" != 20 ] && continue
    w=""; [ "$mode" = logged-in ] && w=$WEIGHTS
    stat_start "dovecot=$DOVECOT_PID"
    bench --addr $THEIRS --user 'user%d@example.test' --users $USERS --clients $clients --secs "$SECS" --max-ops "$MAX_OPS" --mode $mode --weights "$w" --label "dovecot $mode"
    stat_end
    stat_start "postern-imapd=$IMAPD" "postern-authd=$AUTHD"
    bench --addr $OURS --user 'user%d@example.test' --users $USERS --clients $clients --secs "$SECS" --max-ops "$MAX_OPS" --mode $mode --weights "$w" --label "postern $mode"
    stat_end
  done
done

fi

if [[ $PARTS == *b* ]]; then
echo "== (b) SELECT + UID FETCH 1:* (FLAGS), $BIG messages in INBOX (the same files in both)"
TMPL=$WORK/big
python3 - "$TMPL" "$BIG" <<'PY'
import os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
for d in ("cur", "new", "tmp"):
    os.makedirs(os.path.join(root, d), exist_ok=True)
t0 = 1700000000
for i in range(n):
    body = (f"From: Sender {i % 97} <s{i % 97}@example.org>\nTo: user100@example.test\n"
            f"Subject: message {i} about topic {i % 13}\nMessage-ID: <m{i}@example.org>\n"
            f"Date: Tue, 14 Nov 2023 22:13:20 +0000\n\n" + ("line of text %d\n" % i) * 20)
    data = body.encode()
    vsize = len(data) + data.count(b"\n")
    flags = "S" if i % 3 else ""
    if i % 17 == 0:
        flags = "FS"
    name = f"{t0 + i}.M{i}P1.bench,S={len(data)},W={vsize}:2,{flags}"
    p = os.path.join(root, "cur", name)
    with open(p, "wb") as f:
        f.write(data)
    os.utime(p, (t0 + i, t0 + i))
PY
DOVE_BIG=/var/vmail/example.test/user100/Maildir
OUR_BIG=$WORK/mail/example.test/user100/Maildir
rm -rf "$DOVE_BIG" "$OUR_BIG"
mkdir -p "$(dirname "$DOVE_BIG")" "$(dirname "$OUR_BIG")"
cp -a "$TMPL" "$DOVE_BIG"; chown -R vmail:vmail "$(dirname "$DOVE_BIG")"
cp -a "$TMPL" "$OUR_BIG"
rm -rf "$TMPL"
for srv in "dovecot $THEIRS" "postern $OURS"; do
  set -- $srv
  sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true
  bench --addr "$2" --user $BIGUSER --select-all 3 --label "$1" | sed 's/round 1:/round 1 (no index, page cache dropped):/'
  if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
    bench --addr "$2" --user $BIGUSER --select-all 1 --label "$1" | sed 's/round 1:/index built, page cache dropped:/'
  fi
done

fi

if [[ $PARTS == *c* ]]; then
echo "== (c) connections idling in IDLE: resident memory"
cp /etc/dovecot/local.conf /etc/dovecot/local.conf.bench-orig
cat >> /etc/dovecot/local.conf <<EOF2
# bench-imapd.sh (temporary): room for $DOVECOT_IDLE_CONNS IMAP processes
service imap {
  process_limit = $((DOVECOT_IDLE_CONNS + 100))
}
default_client_limit = $((DOVECOT_IDLE_CONNS * 2 + 100))
protocol imap {
  mail_max_userip_connections = $((DOVECOT_IDLE_CONNS + 100))
}
EOF2
doveadm reload; sleep 2
DOVECOT_PID=$(dovecot_pid)
stat_start "dovecot=$DOVECOT_PID"
bench --addr $THEIRS --user 'user%d@example.test' --users $USERS --clients "$DOVECOT_IDLE_CONNS" --secs 10 --idle --label "dovecot idle"
stat_end
stat_start "postern-imapd=$IMAPD"
bench --addr $OURS --user 'user%d@example.test' --users $USERS --clients "$IDLE_CONNS" --secs 10 --idle --label "postern idle"
stat_end
fi
