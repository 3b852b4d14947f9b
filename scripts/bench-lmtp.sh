#!/usr/bin/env bash
# LMTP delivery benchmark: Postern's lmtp-deliver side by side with Dovecot's LMTP on the
# same machine and disk, both fsyncing, driven by Postfix's smtp-source -L through
# ../shared/bench/smtp-load.sh: 5 KiB and 100 KiB messages, 1 and 20 concurrent sessions,
# one message per connection (as Postfix's lmtp client does without connection caching).
#
# Needs root: it runs ../shared/bench/baseline-setup.sh (Debian's Postfix + Dovecot on
# loopback) once. Bounded: COUNT messages per run (default 2000 at 5 KiB, COUNT/4 at 100 KiB).
# Usage: scripts/bench-lmtp.sh [COUNT]     BENCH_DIR=… overrides ../shared/bench
# BUILD=0: use the release binaries already built; BIN_DIR=…: take them from that directory.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
COUNT=${1:-2000}
BENCH=${BENCH_DIR:-$REPO/../shared/bench}
[ -x "$BENCH/smtp-load.sh" ] || { echo "no $BENCH/smtp-load.sh (set BENCH_DIR)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench-lmtp.sh: run as root (baseline-setup.sh needs it)" >&2; exit 1; }

# Postfix installed with "No configuration" (as .ci/run does) has no main.cf yet.
if [ ! -f /etc/postfix/main.cf ] && [ -f /usr/share/postfix/main.cf.debian ]; then
  cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
fi
if [ ! -S /var/spool/postfix/private/dovecot-lmtp ] || ! pgrep -x dovecot >/dev/null; then
  "$BENCH/baseline-setup.sh" >/dev/null
fi
DOVECOT_PID=$(pgrep -o -x dovecot)

if [ "${BUILD:-1}" != 0 ]; then
  cargo build --release -q -p postern-authd -p postern-mailctl -p postern-lmtp-deliver
fi
# BUILD=0: the binaries already built; BIN_DIR=… runs binaries from elsewhere (a before/after).
B=${BIN_DIR:-$REPO/target/release}
# The Maildirs live on the same file system as Dovecot's /var/vmail.
WORK=$(mktemp -d /var/tmp/postern-bench-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$B/mailctl" init --dir "$WORK" --domain example.test >/dev/null
echo "bench-password-1" | "$B/mailctl" --config "$WORK/postern.toml" user add user1@example.test >/dev/null
"$B/authd" --config "$WORK/postern.toml" >"$WORK/authd.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/run/auth-userdb" ] && break; sleep 0.1; done
"$B/lmtp-deliver" --config "$WORK/postern.toml" >"$WORK/lmtp.log" 2>&1 &
LMTP_PID=$!
PIDS+=($LMTP_PID)
for _ in $(seq 1 100); do grep -q ready "$WORK/lmtp.log" && break; sleep 0.1; done

OURS=$WORK/mail/example.test/user1/Maildir
THEIRS=/var/vmail/example.test/user1/Maildir
echo "== $(nproc) cores; client and servers share them; both servers fsync file and directory"
for size in 5120 102400; do
  n=$COUNT
  [ "$size" -gt 10000 ] && n=$((COUNT / 4))
  for s in 1 20; do
    echo "-- ${size} B x $n, $s session(s)"
    printf 'dovecot-lmtp: '
    SMTP_SOURCE_OPTS=-L MAILDIR=$THEIRS CLEAN_MAILDIR=1 TREES="dovecot=$DOVECOT_PID" \
      "$BENCH/smtp-load.sh" unix:/var/spool/postfix/private/dovecot-lmtp user1@example.test "$n" "$size" "$s" | grep -v '^RESULT'
    rm -rf "$OURS"
    printf 'postern-lmtp: '
    SMTP_SOURCE_OPTS=-L MAILDIR=$OURS TREES="postern=$LMTP_PID" \
      "$BENCH/smtp-load.sh" "unix:$WORK/run/lmtp" user1@example.test "$n" "$size" "$s" | grep -v '^RESULT'
  done
done
