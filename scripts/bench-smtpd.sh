#!/usr/bin/env bash
# SMTP intake benchmark: Postern's smtpd → lmtp-deliver → Maildir, side by side with
# Debian's Postfix → Dovecot LMTP → Maildir on the same machine and disk, both fsyncing,
# driven by Postfix's smtp-source through ../shared/bench/smtp-load.sh (one message per
# connection): accepted msg/s (250 after DATA) and msg/s all the way into the Maildir.
#
# Needs root: it runs ../shared/bench/baseline-setup.sh once. Bounded: COUNT messages per run.
# Usage: scripts/bench-smtpd.sh [COUNT] [SIZES] [SESSIONS]    e.g. 3000 "5120 102400" "1 20 100"
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
COUNT=${1:-3000}
SIZES=${2:-5120}
SESSIONS=${3:-"1 20 100"}
BENCH=${BENCH_DIR:-$REPO/../shared/bench}
[ -x "$BENCH/smtp-load.sh" ] || { echo "no $BENCH/smtp-load.sh (set BENCH_DIR)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-smtpd.sh: run as root (baseline-setup.sh needs it)" >&2; exit 1; }
if [ ! -f /etc/postfix/main.cf ] && [ -f /usr/share/postfix/main.cf.debian ]; then
  cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
fi
if ! pgrep -x dovecot >/dev/null || [ ! -r /var/spool/postfix/pid/master.pid ] \
   || ! kill -0 "$(tr -d ' \n' < /var/spool/postfix/pid/master.pid)" 2>/dev/null; then
  "$BENCH/baseline-setup.sh" >/dev/null
fi
PF_PID=$(tr -d ' \n' < /var/spool/postfix/pid/master.pid)
DOVECOT_PID=$(pgrep -o -x dovecot)

cargo build --release -q -p postern-authd -p postern-mailctl -p postern-lmtp-deliver -p postern-smtpd
B=$REPO/target/release
WORK=$(mktemp -d /var/tmp/postern-bench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$B/mailctl" init --dir "$WORK" --domain example.test >/dev/null
# Loopback load: allow the load generator's 100 sessions from one address.
sed -i 's/^\[smtpd\]$/[smtpd]\nmax_connections_per_ip = 1000\nmax_connections = 1000/' "$WORK/postern.toml"
echo "bench-password-1" | "$B/mailctl" --config "$WORK/postern.toml" user add user1@example.test >/dev/null
PORT=$(grep -m1 '^listen' "$WORK/postern.toml" | sed 's/.*:\([0-9]*\)".*/\1/')
"$B/authd" --config "$WORK/postern.toml" >"$WORK/authd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/run/socketmap" ] && break; sleep 0.1; done
"$B/lmtp-deliver" --config "$WORK/postern.toml" >"$WORK/lmtp.log" 2>&1 & PIDS+=($!)
"$B/smtpd" --config "$WORK/postern.toml" >"$WORK/smtpd.log" 2>&1 & SMTPD=$!; PIDS+=($SMTPD)
for _ in $(seq 1 100); do grep -q 'ready daemon="smtpd"' "$WORK/smtpd.log" && break; sleep 0.1; done
OURS=$WORK/mail/example.test/user1/Maildir
THEIRS=/var/vmail/example.test/user1/Maildir
echo "== $(nproc) cores; client and servers share them; both fsync (queue file, Maildir file, new/ dir)"
for size in $SIZES; do
  for s in $SESSIONS; do
    echo "-- ${size} B x $COUNT, $s session(s)"
    printf 'postfix+dovecot: '
    MAILDIR=$THEIRS CLEAN_MAILDIR=1 TREES="postfix=$PF_PID dovecot=$DOVECOT_PID" \
      "$BENCH/smtp-load.sh" 127.0.0.1:10025 user1@example.test "$COUNT" "$size" "$s" | grep -v '^RESULT'
    rm -rf "$OURS"
    printf 'postern:         '
    MAILDIR=$OURS TREES="postern-smtpd=$SMTPD postern-lmtp=${PIDS[1]} postern-authd=${PIDS[0]}" \
      "$BENCH/smtp-load.sh" "127.0.0.1:$PORT" user1@example.test "$COUNT" "$size" "$s" | grep -v '^RESULT'
  done
done
