#!/usr/bin/env bash
# Outbound benchmark: messages per second from the queue to a local SMTP server, Postern's
# smtpd side by side with a private Debian Postfix instance, both relaying to the same
# Postfix smtp-sink on loopback (nothing leaves the machine).
#
# For each system: COUNT messages are injected with smtp-source while the sink is down (so
# they all wait in the queue, deferred), then the sink starts, the queue is flushed
# (`mailctl queue flush` / `postqueue -f`) and the time until the queue is empty gives
# msg/s from queue to sink. Postern relays with `[smtpd] relayhost`, Postfix with
# `relayhost = [127.0.0.1]:PORT`; both at their default concurrency (20 per destination)
# with connection reuse.
#
# Needs root (Postfix's master and smtp-sink -u). Bounded: COUNT messages per run.
# Usage: scripts/bench-outbound.sh [COUNT] [SIZE]     e.g. 2000 5120
# PROFILE=debug uses the debug binaries (a quick check that the script works, not figures).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
COUNT=${1:-2000}
SIZE=${2:-5120}
SBIN=/usr/sbin
[ "$(id -u)" = 0 ] || { echo "bench-outbound.sh: run as root (Postfix and smtp-sink need it)" >&2; exit 1; }
for p in postfix postqueue smtp-sink smtp-source; do
  [ -x "$SBIN/$p" ] || { echo "bench-outbound.sh: $SBIN/$p missing (apt-get install postfix)" >&2; exit 1; }
done

PROFILE=${PROFILE:-release}
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p postern-authd -p postern-mailctl -p postern-lmtp-deliver -p postern-smtpd
else
  cargo build -q -p postern-authd -p postern-mailctl -p postern-lmtp-deliver -p postern-smtpd
fi
B=$REPO/target/$PROFILE
WORK=$(mktemp -d /var/tmp/postern-bench-out-XXXXXX)
chmod 755 "$WORK"
PIDS=()
SINK=""
PF_STARTED=""
cleanup() {
  [ -n "$SINK" ] && kill "$SINK" 2>/dev/null || true
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$PF_STARTED" ] && "$SBIN/postfix" -c "$WORK/pf/etc" stop >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
now() { date +%s.%N; }
SINK_PORT=$(free_port)
start_sink() {
  "$SBIN/smtp-sink" -u postfix -m 1000 "127.0.0.1:$SINK_PORT" 1024 >"$WORK/sink.log" 2>&1 &
  SINK=$!
  for _ in $(seq 1 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $SINK_PORT), 1)" 2>/dev/null && return
    sleep 0.05
  done
  echo "smtp-sink did not start" >&2; exit 1
}
stop_sink() { kill "$SINK" 2>/dev/null || true; wait "$SINK" 2>/dev/null || true; SINK=""; }
inject() { # ADDR
  "$SBIN/smtp-source" -s 20 -m "$COUNT" -l "$SIZE" -f sender@example.test -t rcpt@remote.test "$1"
}
wait_empty() { # COMMAND… printing the queue length; bounded to 10 minutes
  local deadline=$((SECONDS + 600))
  while [ "$("$@")" != 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "queue not empty after 10 minutes" >&2; exit 1; }
    sleep 0.05
  done
}
rate() { python3 -c "import sys; n, t = int(sys.argv[1]), float(sys.argv[2]); print(f'{n} msgs in {t:.2f} s = {n/t:.0f} msg/s')" "$@"; }

# ---------------------------------------------------------------- Postern
"$B/mailctl" init --dir "$WORK/p" --domain example.test >/dev/null
P=$WORK/p/postern.toml
sed -i "s/^\[smtpd\]$/[smtpd]\nmax_connections_per_ip = 1000\nmax_connections = 1000\nrelayhost = \"127.0.0.1:$SINK_PORT\"\nmax_queue_messages = 0/" "$P"
# Free ports (init writes fixed ones, which another install on this machine may hold).
PORT=$(free_port)
sed -i "s/^listen = .*/listen = [\"127.0.0.1:$PORT\"]/; s/^submission = .*/submission = [\"127.0.0.1:$(free_port)\"]/; s/^submissions = .*/submissions = [\"127.0.0.1:$(free_port)\"]/" "$P"
"$B/authd" --config "$P" >"$WORK/authd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/p/run/socketmap" ] && break; sleep 0.1; done
"$B/lmtp-deliver" --config "$P" >"$WORK/lmtp.log" 2>&1 & PIDS+=($!)
RUST_LOG=warn "$B/smtpd" --config "$P" >"$WORK/smtpd.log" 2>&1 & SMTPD=$!; PIDS+=($SMTPD)
for _ in $(seq 1 100); do [ -S "$WORK/p/run/smtpd" ] && break; sleep 0.1; done
kill -0 $SMTPD 2>/dev/null || { echo "smtpd did not start:" >&2; cat "$WORK/smtpd.log" >&2; exit 1; }
sleep 0.5
postern_queue() {
  "$B/mailctl" --config "$P" queue list --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)))'
}
postern_unattempted() {
  "$B/mailctl" --config "$P" queue list --json \
    | python3 -c 'import json, sys; q = json.load(sys.stdin); print(sum(1 for e in q if e["attempts"] == 0 or e["delivering"]))'
}

# ---------------------------------------------------------------- Postfix (private instance)
PFPORT=$(free_port)
mkdir -p "$WORK/pf/etc" "$WORK/pf/queue"
chmod 755 "$WORK/pf" "$WORK/pf/etc" "$WORK/pf/queue"
cat >"$WORK/pf/etc/main.cf" <<EOF
compatibility_level = 3.6
mail_owner = postfix
setgid_group = postdrop
queue_directory = $WORK/pf/queue
data_directory = $WORK/pf/data
maillog_file = $WORK/pf/maillog
maillog_file_prefixes = $WORK
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.postfix.test
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:$SINK_PORT
smtp_tls_security_level = none
alias_maps =
alias_database =
biff = no
EOF
{
  echo "127.0.0.1:$PFPORT inet n - n - - smtpd"
  sed -n '/^pickup /,$p' "$REPO/tests/src/postfix.rs" | sed -n '1,/^";/p' | grep -v '^";'
} >"$WORK/pf/etc/master.cf"
"$SBIN/postfix" -c "$WORK/pf/etc" check >/dev/null
"$SBIN/postfix" -c "$WORK/pf/etc" start >/dev/null 2>&1
PF_STARTED=1
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $PFPORT), 1)" 2>/dev/null && break
  sleep 0.1
done
postfix_queue() {
  find "$WORK/pf/queue/incoming" "$WORK/pf/queue/active" "$WORK/pf/queue/deferred" \
    "$WORK/pf/queue/maildrop" -type f 2>/dev/null | wc -l
}
postfix_unattempted() {
  find "$WORK/pf/queue/incoming" "$WORK/pf/queue/active" "$WORK/pf/queue/maildrop" -type f 2>/dev/null | wc -l
}

echo "== $(nproc) cores shared by the load generator, both servers and the sink; $COUNT x $SIZE B"
for sys in postfix postern; do
  if [ $sys = postern ]; then addr=127.0.0.1:$PORT; q=postern_queue; u=postern_unattempted
  else addr=127.0.0.1:$PFPORT; q=postfix_queue; u=postfix_unattempted; fi
  # Fill the queue while the sink is down: every message deferred once.
  inject "$addr"
  wait_until_n() { local deadline=$((SECONDS + 300)); while [ "$("$1")" != "$COUNT" ]; do
    [ $SECONDS -lt $deadline ] || { echo "$sys: queue did not fill" >&2; exit 1; }; sleep 0.1; done; }
  wait_until_n $q
  wait_empty $u
  start_sink
  t0=$(now)
  if [ $sys = postern ]; then "$B/mailctl" --config "$P" queue flush >/dev/null
  else "$SBIN/postqueue" -c "$WORK/pf/etc" -f; fi
  wait_empty $q
  t1=$(now)
  stop_sink
  printf '%-8s queue -> smtp-sink: ' "$sys"
  rate "$COUNT" "$(python3 -c "print($t1 - $t0)")"
done
