#!/usr/bin/env bash
# smtpd memory under a stranger's load (issue 11 §6). Bounded; loopback only.
#
#  1. CLIENTS clients at once on port 25, each sending one SIZE_MB MB message with DATA
#     (accepted and held in the queue by an access rule, so that intake alone is measured):
#     smtpd's peak RSS (VmHWM) and the time until every 250.
#  2. IDLE idle connections on port 25 from untrusted loopback addresses (127.0.0.2…, at most
#     20 per address, the default per-client limit), then one authenticated submission on
#     587 while they stay open: its reply, and smtpd's RSS with them all open.
#
# Each scenario runs a fresh smtpd (authd serves the login). SMTPD=path compares another
# build (e.g. the one before a change); PROFILE=release builds and uses release binaries;
# PER_IP=N sets max_connections_per_ip (builds before the trusted-network exemption limited
# the 127.0.0.1 clients of scenario 1 to 20).
# Usage: scripts/bench-smtpd-memory.sh [CLIENTS] [SIZE_MB] [IDLE]     (defaults: 50 20 500)
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-50}
SIZE_MB=${2:-20}
IDLE=${3:-500}
PROFILE=${PROFILE:-debug}
[ "$CLIENTS" -le 200 ] && [ "$SIZE_MB" -le 64 ] && [ "$IDLE" -le 2000 ] \
  || { echo "bench-smtpd-memory.sh: at most 200 clients, 64 MB, 2000 idle" >&2; exit 1; }
if [ "$PROFILE" = release ]; then
  cargo build --release -q -p postern-authd -p postern-mailctl -p postern-smtpd
else
  cargo build -q -p postern-authd -p postern-mailctl -p postern-smtpd
fi
B=$PWD/target/$PROFILE
SMTPD=${SMTPD:-$B/smtpd}
WORK=$(mktemp -d /var/tmp/postern-memory-XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
"$B/mailctl" init --dir "$WORK" --domain example.test >/dev/null
MX=$(free_port); SUB=$(free_port); SUBS=$(free_port)
python3 - "$WORK/postern.toml" "$MX" "$SUB" "$SUBS" "$SIZE_MB" "${PER_IP:-}" <<'EOF'
import re, sys
path, mx, sub, subs, mb, per_ip = sys.argv[1:]
t = open(path).read()
t = re.sub(r'listen = \["127.0.0.1:\d+"\]', f'listen = ["127.0.0.1:{mx}"]', t)
t = re.sub(r'submission = \["127.0.0.1:\d+"\]', f'submission = ["127.0.0.1:{sub}"]', t)
t = re.sub(r'submissions = \["127.0.0.1:\d+"\]', f'submissions = ["127.0.0.1:{subs}"]', t)
# Only 127.0.0.1 is trusted: the idle strangers come from 127.0.0.2 and up. Everything is
# held in the queue (nothing is delivered: intake alone is measured).
extra = f'''trusted_networks = ["127.0.0.1/32"]
max_message_size = {int(mb) * 1048576 + 1048576}
'''
if per_ip:
    extra += f"max_connections_per_ip = {int(per_ip)}\n"
t = t.replace("[smtpd]\n", "[smtpd]\n" + extra, 1)
t += "\n[[smtpd.access]]\naction = \"HOLD\"\n"
open(path, "w").write(t)
EOF
echo "bench-password-1" | "$B/mailctl" --config "$WORK/postern.toml" user add user1@example.test >/dev/null
"$B/authd" --config "$WORK/postern.toml" >"$WORK/authd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 1 100); do [ -S "$WORK/run/auth" ] && break; sleep 0.1; done

STATE=$(python3 -c 'import sys,tomllib; c=tomllib.load(open(sys.argv[1],"rb")); print(c.get("paths",{}).get("state_dir","state"))' "$WORK/postern.toml")
case $STATE in /*) ;; *) STATE=$WORK/$STATE ;; esac
start_smtpd() {
  "$SMTPD" --config "$WORK/postern.toml" >"$WORK/smtpd.log" 2>&1 & SMTPD_PID=$!; PIDS+=($SMTPD_PID)
  for _ in $(seq 1 100); do grep -q 'ready daemon="smtpd"' "$WORK/smtpd.log" && return; sleep 0.1; done
  echo "smtpd did not start:" >&2; cat "$WORK/smtpd.log" >&2; exit 1
}
stop_smtpd() { kill "$SMTPD_PID"; wait "$SMTPD_PID" 2>/dev/null || true; }
mem() { awk '/^VmHWM|^VmRSS/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$SMTPD_PID/status"; }

echo "== smtpd: $SMTPD ($(nproc) cores, shared with the clients)"
start_smtpd
printf 'idle smtpd: %s\n' "$(mem)"
echo "-- $CLIENTS clients x $SIZE_MB MB at once over DATA on port 25"
python3 - "$MX" "$CLIENTS" "$SIZE_MB" <<'EOF'
import socket, sys, threading, time
port, clients, mb = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
line = b"x" * 76 + b"\r\n"
body = b"From: <big@remote.test>\r\nTo: <user1@example.test>\r\nSubject: big\r\n\r\n" + line * (mb * 1048576 // len(line)) + b".\r\n"
replies = []
def one(i):
    s = socket.create_connection(("127.0.0.1", port), timeout=600)
    f = s.makefile("rb")
    def reply():
        while True:
            l = f.readline().decode()
            if l[3:4] != "-":
                return l.strip()
    reply()
    for c in (b"EHLO client.test", b"MAIL FROM:<big@remote.test>", b"RCPT TO:<user1@example.test>", b"DATA"):
        s.sendall(c + b"\r\n"); reply()
    s.sendall(body)
    replies.append(reply())
    s.sendall(b"QUIT\r\n"); s.close()
t0 = time.time()
ts = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
for t in ts: t.start()
for t in ts: t.join()
ok = sum(r.startswith("250") for r in replies)
print(f"accepted {ok}/{clients} in {time.time() - t0:.1f} s ({clients * mb / (time.time() - t0):.0f} MB/s)")
if ok != clients: print("replies:", sorted(set(replies)))
EOF
printf 'after: %s\n' "$(mem)"
stop_smtpd
rm -rf "$STATE/queue"   # the held messages

start_smtpd
echo "-- $IDLE idle connections on port 25 (20 per address from 127.0.0.2 up), then a submission on 587"
python3 - "$MX" "$SUB" "$IDLE" "$SMTPD_PID" <<'EOF'
import smtplib, socket, sys
mx, sub, idle, pid = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
held, greetings = [], {}
for i in range(idle):
    src = f"127.0.0.{2 + i // 20}"
    try:
        s = socket.create_connection(("127.0.0.1", mx), timeout=30, source_address=(src, 0))
        g = s.makefile("rb").readline().decode()[:3]
        held.append(s)
    except OSError as e:
        g = type(e).__name__
    greetings[g] = greetings.get(g, 0) + 1
print("port 25 greetings:", greetings)
def rss():
    return " ".join(l.split()[0] + " " + str(int(l.split()[1]) // 1024) + " MiB" for l in open(f"/proc/{pid}/status") if l.startswith(("VmRSS", "VmHWM")))
print("with them open:", rss())
try:
    c = smtplib.SMTP("127.0.0.1", sub, timeout=30)
    c.ehlo("client.test")
    c.login("user1@example.test", "bench-password-1")
    refused = c.sendmail("user1@example.test", ["user1@example.test"], b"Subject: while 25 is full\r\n\r\nhi\r\n")
    print("submission on 587:", "250 accepted" if not refused else refused)
    c.quit()
except Exception as e:
    print("submission on 587 FAILED:", e)
for s in held: s.close()
EOF
printf 'after: %s\n' "$(mem)"
stop_smtpd
