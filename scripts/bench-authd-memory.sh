#!/usr/bin/env bash
# authd memory under a login storm (issue 11 §6): RSS after N concurrent argon2id logins
# (each a connection of its own), then after IDLE seconds without traffic.
# Usage: scripts/bench-authd-memory.sh [N] [IDLE] [debug|release] [HASH_QUEUE_TIMEOUT_MS] [HASH_CONCURRENCY]
#        (defaults 200 60 release 5000 0; a long timeout lets every login of the wave be hashed;
#        concurrency 0 is one per core)
# Bounded: N logins in one wave, then one wait.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200}
IDLE=${2:-60}
PROFILE=${3:-release}
WAIT_MS=${4:-5000}
CONC=${5:-0}
if [ -z "${SKIP_BUILD:-}" ]; then
  if [ "$PROFILE" = release ]; then
    cargo build --release -q -p postern-authd -p postern-mailctl
  else
    cargo build -q -p postern-authd -p postern-mailctl
  fi
fi
B=$PWD/target/$PROFILE
# mailctl only lays out the instance and adds the user (SKIP_BUILD=1 MAILCTL=… reuses one).
MAILCTL=${MAILCTL:-$B/mailctl}
WORK=$(mktemp -d)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"$MAILCTL" init --dir "$WORK" --domain bench.test >/dev/null
sed -i "s/^\[authd.auth_socket\]/[authd]\nhash_queue_timeout_ms = $WAIT_MS\nhash_concurrency = $CONC\n\n[authd.auth_socket]/" "$WORK/postern.toml"
# No failure floor or lockouts in the way: every login is a right password.
echo "gale-force-pass-argon2id" | "$MAILCTL" --config "$WORK/postern.toml" user add storm@bench.test >/dev/null
"$B/authd" --config "$WORK/postern.toml" >"$WORK/authd.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do grep -q ready "$WORK/authd.log" && break; sleep 0.1; done
rss() { awk '/VmRSS|VmHWM/ {printf "%s %d MiB  ", $1, $2/1024}' "/proc/$PID/status"; echo; }
echo "== $PROFILE authd, $(nproc) cores; hash_concurrency $CONC (0: one per core), hash_queue_timeout_ms $WAIT_MS"
echo -n "after start:           "; rss
python3 - "$WORK/run/auth" "$N" <<'PY'
import asyncio, base64, sys, time
path, n = sys.argv[1], int(sys.argv[2])
async def login(i):
    r, w = await asyncio.open_unix_connection(path)
    w.write(b"VERSION\t1\t2\nCPID\t%d\n" % (10000 + i))
    while (await r.readline()).strip() != b"DONE":
        pass
    resp = base64.b64encode(b"\0storm@bench.test\0gale-force-pass-argon2id").decode()
    w.write(f"AUTH\t1\tPLAIN\tservice=imap\tsecured\trip=127.0.0.1\tresp={resp}\n".encode())
    await w.drain()
    f = (await r.readline()).decode().rstrip("\n").split("\t")
    w.close()
    reason = [x for x in f if x.startswith("reason=")]
    return f[0] + (" " + reason[0] if reason else "")
async def main():
    t = time.time()
    res = await asyncio.gather(*(login(i) for i in range(n)))
    print(f"{n} concurrent logins in {time.time() - t:.1f} s:",
          {k: res.count(k) for k in set(res)})
asyncio.run(main())
PY
echo -n "after the storm:       "; rss
sleep "$IDLE"
echo -n "after ${IDLE} s idle:        "; rss
