#!/usr/bin/env bash
# SMTP intake benchmark: Postern's smtpd → lmtp-deliver → Maildir, side by side with
# Debian's Postfix → Dovecot LMTP → Maildir on the same machine and disk, both fsyncing,
# driven by Postfix's smtp-source through ../shared/bench/smtp-load.sh (one message per
# connection): accepted msg/s (250 after DATA) and msg/s all the way into the Maildir.
#
# Postern runs three ways side by side:
# - "trusted": loopback in trusted_networks (the default), so no port 25 checks;
# - "MX, clean DNS": trusted_networks = [], every check on (SPF, DKIM, DMARC, HELO), DNS from
#   a loopback server (postern-bench dns-server) answering NXDOMAIN with an SOA;
# - "MX, lossy DNS": the same, but the DNS server drops 1 query in 50 and leaves out the SOA
#   (issue 17's reproduction). The DNS server's counts of queries seen/dropped follow.
#
# Needs root: it runs ../shared/bench/baseline-setup.sh once (SKIP_POSTFIX=1: Postern only,
# no root needed). MX=0 leaves out the MX rows. PROFILE=debug: debug binaries (a quick try);
# BUILD=0: use the binaries already built; BIN_DIR=DIR: use the binaries in DIR, nothing built
# (copies of two builds, for alternating A/B runs while others rebuild target/).
# Bounded: COUNT messages per run for sizes up to 64 KiB; larger sizes send COUNT/10 (at
# least 100) up to 512 KiB and COUNT/100 (at least 50) beyond, so a 1 MiB row stays a few GB.
# After each run: the server CPU per message (sum of the process trees' CPU / COUNT), and for
# Postern the context switches per message (steadier than CPU time on a shared machine).
# REPS=N repeats each size and session count N times, alternating the order: odd
# repetitions run Postern's paths first and Postfix last, even ones the reverse, so that no
# path always runs right after another one's file-system churn (ext4 pays for creating
# files right after many were deleted). At the end, a table: per size and session count,
# accepted / into-Maildir msg/s with Postern's ratio to Postfix, server CPU ms per message,
# peak RSS of the process trees and context switches per message (medians over the
# repetitions). PERF_DIR=DIR / TRACE_DIR=DIR record perf profiles / system call counts of
# Postern's daemons during its runs (see run_one).
# The floor (FLOOR=1, the default; FLOOR=0 leaves it out): the CPU per message that talking
# SMTP and making a message durable cost on this machine before any of Postern's own work.
# Postfix's smtp-sink (a one-process SMTP server that stores nothing) runs under the same
# load as a path of its own ("sink"), and `postern-bench fs-floor` does the durable writes of
# one message alone in a loop on the same file system: a queue slot's pwritev + fdatasync and
# a Maildir file's create + write + fsync, rename to new/, fsync of new/. Their sum is a
# floor under the "server CPU per message" of any server that answers the same SMTP dialogue
# and keeps the same durability; Postern's figure minus it is Postern's own work (both
# daemons, the LMTP hop between them included).
# Usage: scripts/bench-smtpd.sh [COUNT] [SIZES] [SESSIONS]    e.g. 3000 "5120 102400" "1 20 100"
# Issue 17's full table: REPS=2 scripts/bench-smtpd.sh 20000 "5120 102400 1048576" "1 20 100"
# Deleted files cost the next run on ext4 without a journal (see settle): the script settles
# at its start, after emptying a Maildir and after each Postfix run (a queue file deleted
# per message), so that back-to-back invocations (A/B runs of two builds) and paths do not
# pay for each other's deletions.
# The "user" figure beside Postern's and smtp-sink's CPU is the part spent in user space
# (utime): the daemons' own code; the rest is the kernel working for them.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
COUNT=${1:-3000}
SIZES=${2:-5120}
SESSIONS=${3:-"1 20 100"}
BENCH=${BENCH_DIR:-$REPO/../shared/bench}
SKIP_POSTFIX=${SKIP_POSTFIX:-0}
MX=${MX:-1}
[ -x "$BENCH/smtp-load.sh" ] || { echo "no $BENCH/smtp-load.sh (set BENCH_DIR)" >&2; exit 1; }
if [ "$SKIP_POSTFIX" != 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench-smtpd.sh: run as root (baseline-setup.sh needs it), or SKIP_POSTFIX=1" >&2; exit 1; }
  if [ ! -f /etc/postfix/main.cf ] && [ -f /usr/share/postfix/main.cf.debian ]; then
    cp /usr/share/postfix/main.cf.debian /etc/postfix/main.cf
  fi
  if ! pgrep -x dovecot >/dev/null || [ ! -r /var/spool/postfix/pid/master.pid ] \
     || ! kill -0 "$(tr -d ' \n' < /var/spool/postfix/pid/master.pid)" 2>/dev/null; then
    "$BENCH/baseline-setup.sh" >/dev/null
  fi
  PF_PID=$(tr -d ' \n' < /var/spool/postfix/pid/master.pid)
  DOVECOT_PID=$(pgrep -o -x dovecot)
fi

PROFILE=${PROFILE:-release}   # PROFILE=debug for a quick try (figures are for release)
if [ -n "${BIN_DIR:-}" ] || [ "${BUILD:-1}" = 0 ]; then
  :   # BUILD=0: the binaries already in target/$PROFILE
elif [ "$PROFILE" = release ]; then
  cargo build --release -q -p postern-authd -p postern-mailctl -p postern-lmtp-deliver -p postern-smtpd -p postern-bench
else
  cargo build -q -p postern-authd -p postern-mailctl -p postern-lmtp-deliver -p postern-smtpd -p postern-bench
fi
B=${BIN_DIR:-$REPO/target/$PROFILE}
WORK=$(mktemp -d "${WORK_ROOT:-/var/tmp}/postern-bench-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
# settle: after many files were deleted, make ext4 (without a journal, as `/` is here) stop
# skipping their inodes. Until then every file created in their group scans past them:
# recently_deleted() in find_inode_bit does not reuse an inode freed within the last 60 s
# (300 s while its inode table block is dirty) as long as that block is in the buffer
# cache. That was charged to whichever run came next (the durable-writes floor measured
# 0.60-0.68 ms per message instead of 0.16 right after a previous run's cleanup). As root:
# write everything back and drop the clean page cache (the inode table blocks with it);
# otherwise write back and wait out the 60 s. SETTLE=0 skips it.
settle() {
  [ "${SETTLE:-1}" = 0 ] && return
  sync
  # (A container may refuse the write even to root.)
  if [ "$(id -u)" != 0 ] || ! { echo 1 > /proc/sys/vm/drop_caches; } 2>/dev/null; then
    sleep 61
  fi
}
# A previous run (of this script or another) may have just deleted its files.
settle
trap cleanup EXIT

# install NAME PORT_PREFIX [DNS_ARGS]: a Postern install in $WORK/NAME (authd, lmtp-deliver,
# smtpd) on ports PORT_PREFIX525/587/465; trusted loopback without DNS_ARGS; with them, the MX
# path: trusted_networks = [] and a loopback DNS server started with DNS_ARGS.
# Sets PORT_<NAME>, TREES_<NAME>, DNSLOG_<NAME>.
install() {
  local name=$1 prefix=$2 dns_args=${3:-} dir=$WORK/$1
  "$B/mailctl" init --dir "$dir" --domain example.test >/dev/null
  sed -i "s/127\.0\.0\.1:2\([0-9][0-9][0-9]\)\"/127.0.0.1:$prefix\1\"/g" "$dir/postern.toml"
  # Several installs run at once: no /metrics or ManageSieve listeners (fixed ports).
  sed -i -e '/^metrics_listen = /d' -e 's/^managesieve_listen = .*/managesieve_listen = []/' "$dir/postern.toml"
  # Loopback load: allow the load generator's 100 sessions from one address.
  sed -i 's/^\[smtpd\]$/[smtpd]\nmax_connections_per_ip = 1000\nmax_connections = 1000/' "$dir/postern.toml"
  if [ -n "$dns_args" ]; then
    # shellcheck disable=SC2086
    "$B/postern-bench" dns-server $dns_args --secs 86400 > "$dir/dns.log" & PIDS+=($!)
    for _ in $(seq 1 100); do grep -q '^listening on' "$dir/dns.log" && break; sleep 0.1; done
    local dns; dns=$(sed -n 's/^listening on //p' "$dir/dns.log")
    sed -i 's/^\[smtpd\]$/[smtpd]\ntrusted_networks = []/' "$dir/postern.toml"
    printf '\n[dns]\nnameservers = ["%s"]\n\n[checks]\nspf = "tag"\ndkim = "tag"\ndmarc = "reject"\nhelo = "reject"\n' \
      "$dns" >> "$dir/postern.toml"
    printf -v "DNSLOG_$name" '%s' "$dir/dns.log"
  fi
  echo "bench-password-1" | "$B/mailctl" --config "$dir/postern.toml" user add user1@example.test >/dev/null
  printf -v "PORT_$name" '%s' "$(grep -m1 '^listen' "$dir/postern.toml" | sed 's/.*:\([0-9]*\)".*/\1/')"
  "$B/authd" --config "$dir/postern.toml" >"$dir/authd.log" 2>&1 & local authd=$!; PIDS+=($authd)
  for _ in $(seq 1 100); do [ -S "$dir/run/socketmap" ] && break; sleep 0.1; done
  "$B/lmtp-deliver" --config "$dir/postern.toml" >"$dir/lmtp.log" 2>&1 & local lmtp=$!; PIDS+=($lmtp)
  "$B/smtpd" --config "$dir/postern.toml" >"$dir/smtpd.log" 2>&1 & local smtpd=$!; PIDS+=($smtpd)
  for _ in $(seq 1 100); do grep -q 'ready daemon="smtpd"' "$dir/smtpd.log" && break; sleep 0.1; done
  grep -q 'ready daemon="smtpd"' "$dir/smtpd.log" \
    || { echo "smtpd ($name) did not start:" >&2; tail -3 "$dir/smtpd.log" >&2; exit 1; }
  printf -v "TREES_$name" '%s' "postern-smtpd=$smtpd postern-lmtp=$lmtp postern-authd=$authd"
}
# PORT_PREFIX=N: the installs listen on N525, (N+1)525, (N+2)525 (default 2), so that two runs
# can go at once, e.g. builds A and B side by side under the same machine conditions (this
# VM's speed drifts by ±15% over minutes, more than a small change's effect).
P0=${PORT_PREFIX:-2}
install trusted "$P0"
KINDS=trusted
if [ "$MX" = 1 ]; then
  install mxclean $((P0 + 1)) "--soa"
  install mxlossy $((P0 + 2)) "--drop-one-in 50"
  KINDS="trusted mxclean mxlossy"
fi
# count_for SIZE: the messages sent at that size (see above).
count_for() {
  local size=$1
  if [ "$size" -le 65536 ]; then echo "$COUNT"
  elif [ "$size" -le 524288 ]; then echo $(( COUNT / 10 > 100 ? COUNT / 10 : 100 ))
  else echo $(( COUNT / 100 > 50 ? COUNT / 100 : 50 )); fi
}
# per_message N: smtp-load.sh's lines (RESULT lines dropped), then the server CPU per message
# over the process trees it measured.
per_message() {
  awk -v n="$1" '
    /^RESULT/ { next }
    { print }
    /cpu_s=/ && $1 != "machine" {
      for (i = 1; i <= NF; i++) if ($i ~ /^cpu_s=/) {
        v = substr($i, 7); total += v
        parts = parts sprintf("%s%s %.3f", sep, $1, v * 1000 / n); sep = " + "
      }
    }
    END { if (total > 0) printf "  server CPU per message: %.3f ms (%s)\n", total * 1000 / n, parts }'
}
# ctx_switches TREES: "label=count ..." context switches so far of each daemon (all threads).
# Unlike CPU seconds on a shared machine, these per message barely move from run to run.
ctx_switches() {
  local t
  for t in $1; do
    printf '%s=%s ' "${t%%=*}" "$(cat /proc/"${t#*=}"/task/*/status 2>/dev/null \
      | awk '/ctxt_switches/ { s += $2 } END { print s + 0 }')"
  done
}
# user_ticks TREES: the user-space CPU so far, in clock ticks, summed over the daemons of
# TREES (each one process; /proc/PID/stat's utime counts all its threads, ended ones too).
# The rest of a daemon's CPU is the kernel's work on its behalf: system calls, TCP over
# loopback, the file system, the block layer, switching and waking tasks.
user_ticks() {
  local t sum=0 u
  for t in $1; do
    u=$(sed 's/.*) //' /proc/"${t#*=}"/stat 2>/dev/null | awk '{ print $12 }')
    sum=$((sum + ${u:-0}))
  done
  echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK)
# ctx_per_message N BEFORE AFTER: the line for the context switches per message.
ctx_per_message() {
  awk -v n="$1" -v b="$2" -v a="$3" 'BEGIN {
    split(b, B, " "); split(a, A, " ")
    for (i in B) { split(B[i], x, "="); before[x[1]] = x[2] }
    for (i in A) { split(A[i], x, "="); d = x[2] - before[x[1]]; total += d
      parts = parts sprintf("%s%s %.1f", sep, x[1], d / n); sep = " + " }
    printf "  context switches per message: %.1f (%s)\n", total / n, parts }'
}
declare -A LABEL=([postfix]='postfix+dovecot:  ' [trusted]='postern:          ' [mxclean]='postern MX clean: ' [mxlossy]='postern MX lossy: ' [sink]='smtp-sink floor:  ')
THEIRS=/var/vmail/example.test/user1/Maildir
RESULTS=$WORK/results
: > "$RESULTS"
declare -A CLEANED=()
# run_one KIND SIZE N SESSIONS REP: one smtp-load.sh run against KIND (postfix or a Postern
# install); prints its lines and appends "size sessions kind rep accepted e2e cpu_ms ctx rss"
# to $RESULTS. PERF_DIR=DIR: Postern's three daemons are recorded with perf (call graphs)
# during the run, into DIR/KIND-SIZE-SESSIONS-REP.data; TRACE_DIR=DIR: their system calls are
# counted (strace -c -f), into DIR/KIND-SIZE-SESSIONS-REP-DAEMON.txt. Both slow the run.
run_one() {
  local k=$1 size=$2 n=$3 s=$4 rep=$5 out=$WORK/run.out cs0="" ctx=- perf_pid="" user=- ut0
  printf '%s' "${LABEL[$k]}"
  # The Maildirs are emptied before a path's first run only (CLEAN=each: before every run).
  # On ext4 without a journal, creating a file within ~30 s of many deletions scans past the
  # recently freed inodes (recently_deleted() in find_inode_bit: up to a third of the
  # delivery agent's CPU in a profile), so emptying a Maildir right before a run made
  # whichever path ran next pay for it. The count of new files is taken before each run.
  local clean=0
  if [ "${CLEAN:-start}" = each ] || [ -z "${CLEANED[$k]:-}" ]; then clean=1; CLEANED[$k]=1; fi
  if [ "$k" = postfix ]; then
    # Emptied here rather than by smtp-load.sh (CLEAN_MAILDIR), so that the run starts
    # after settle.
    if [ "$clean" = 1 ] && [ -e "$THEIRS" ]; then rm -rf "$THEIRS"; settle; fi
    MAILDIR=$THEIRS CLEAN_MAILDIR=0 TREES="postfix=$PF_PID dovecot=$DOVECOT_PID" \
      "$BENCH/smtp-load.sh" 127.0.0.1:10025 user1@example.test "$n" "$size" "$s" > "$out" || true
    # Postfix deleted a queue file per message: the path after it would pay for that.
    settle
  elif [ "$k" = sink ]; then
    ut0=$(user_ticks "smtp-sink=$SINK_PID")
    MAILDIR=none TREES="smtp-sink=$SINK_PID" \
      "$BENCH/smtp-load.sh" "127.0.0.1:$SINK_PORT" user1@example.test "$n" "$size" "$s" > "$out" || true
    user=$(( $(user_ticks "smtp-sink=$SINK_PID") - ut0 ))
  else
    local ours=$WORK/$k/mail/example.test/user1/Maildir port=PORT_$k trees=TREES_$k sender=sender@example.test
    if [ "$clean" = 1 ] && [ -e "$ours" ]; then rm -rf "$ours"; settle; fi
    [ "$k" = trusted ] || sender=sender@example.net
    if [ -n "${PERF_DIR:-}" ]; then
      mkdir -p "$PERF_DIR"
      local pids; pids=$(echo "${!trees}" | tr ' ' '\n' | sed 's/.*=//' | paste -sd,)
      perf record -q -F "${PERF_FREQ:-999}" ${PERF_CALLGRAPH---call-graph dwarf,16384} -p "$pids" \
        -o "$PERF_DIR/$k-$size-$s-$rep.data" >/dev/null 2>&1 & perf_pid=$!
      sleep 0.5
    fi
    local tracers=()
    if [ -n "${TRACE_DIR:-}" ]; then
      mkdir -p "$TRACE_DIR"
      local t
      for t in ${!trees}; do
        strace -c -f -p "${t#*=}" -o "$TRACE_DIR/$k-$size-$s-$rep-${t%%=*}.txt" >/dev/null 2>&1 & tracers+=($!)
      done
      sleep 0.5
    fi
    cs0=$(ctx_switches "${!trees}")
    ut0=$(user_ticks "${!trees}")
    SENDER=$sender MAILDIR=$ours TREES="${!trees}" \
      "$BENCH/smtp-load.sh" "127.0.0.1:${!port}" user1@example.test "$n" "$size" "$s" > "$out" || true
    user=$(( $(user_ticks "${!trees}") - ut0 ))
    ctx=$(ctx_per_message "$n" "$cs0" "$(ctx_switches "${!trees}")")
    if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; fi
    for t in "${tracers[@]}"; do kill -INT "$t"; wait "$t" || true; done
  fi
  per_message "$n" < "$out"
  [ "$ctx" = - ] || echo "$ctx"
  local user_ms=-
  if [ "$user" != - ]; then
    user_ms=$(awk -v t="$user" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.3f", t * 1000 / hz / n }')
    echo "  of it in user space: $user_ms ms per message (the rest is the kernel's)"
  fi
  awk -v size="$size" -v s="$s" -v k="$k" -v rep="$rep" -v n="$n" -v ctx="$ctx" -v user="$user_ms" '
    /^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); r[kv[1]] = kv[2] } }
    /cpu_s=/ && $1 != "machine" {
      for (i = 2; i <= NF; i++) {
        split($i, kv, "=")
        if (kv[1] == "cpu_s") cpu += kv[2]
        if (kv[1] == "peak_rss_mib") rss += kv[2]
      }
    }
    END {
      c = "-"; if (ctx != "-") { split(ctx, w, " "); c = w[5] }
      printf "%s %s %s %s %s %s %.3f %s %.0f %s\n", size, s, k, rep, r["accept_mps"],
        (r["e2e_mps"] == "" ? "-" : r["e2e_mps"]), cpu * 1000 / n, c, rss, user
    }' "$out" >> "$RESULTS"
}
PATHS=$KINDS
[ "$SKIP_POSTFIX" = 1 ] || PATHS="$KINDS postfix"
FSFLOOR=$WORK/fsfloor
: > "$FSFLOOR"
if [ "${FLOOR:-1}" = 1 ]; then
  SINK=${SMTP_SINK:-/usr/sbin/smtp-sink}
  if [ -x "$SINK" ]; then
    SINK_PORT=${SINK_PORT:-$((P0 + 27))525}
    # smtp-sink refuses to run as root without -u; the backlog covers 100 sessions.
    sink_user=(); [ "$(id -u)" = 0 ] && sink_user=(-u nobody)
    "$SINK" "${sink_user[@]}" "127.0.0.1:$SINK_PORT" 1024 & SINK_PID=$!; PIDS+=($SINK_PID)
    sleep 0.3
    kill -0 "$SINK_PID" 2>/dev/null || { echo "smtp-sink did not start" >&2; exit 1; }
    PATHS="$PATHS sink"
  else
    echo "== no $SINK (Debian's postfix package): the floor column is left out" >&2
  fi
fi
REPS=${REPS:-1}
echo "== $(nproc) cores; client and servers share them; both fsync (queue file, Maildir file, new/ dir)"
[ "$MX" = 1 ] && echo "== MX rows: port 25 checks on (SPF, DKIM, DMARC, HELO) from sender@example.net; DNS: clean = NXDOMAIN with SOA, lossy = 1 query in 50 dropped, no SOA"
echo "== $REPS repetition(s): odd ones run Postern first, even ones Postfix first (all paths in reverse), so that no path always follows the same one's file-system churn"
for size in $SIZES; do
  n=$(count_for "$size")
  if [ "${FLOOR:-1}" = 1 ]; then
    # --keep: its files go with $WORK at the end, not right before a run (see run_one).
    "$B/postern-bench" fs-floor --dir "$WORK/floor-$size" --keep --count $(( n < 3000 ? n : 3000 )) \
      --size "$size" | tee -a "$FSFLOOR"
  fi
  for s in $SESSIONS; do
    for rep in $(seq 1 "$REPS"); do
      order=$PATHS
      [ $((rep % 2)) = 0 ] && order=$(echo "$PATHS" | tr ' ' '\n' | tac | paste -sd' ')
      echo "-- ${size} B x $n, $s session(s), repetition $rep: $order"
      for k in $order; do run_one "$k" "$size" "$n" "$s" "$rep"; done
    done
  done
done
if [ "$MX" = 1 ]; then
  echo "== DNS queries (seen, dropped): clean $(tail -1 "$DNSLOG_mxclean"), lossy $(tail -1 "$DNSLOG_mxlossy")"
fi
# The issue's table: per size and sessions, accepted / into-Maildir msg/s (Postern's ratio to
# Postfix in brackets), server CPU ms per message, peak RSS of the process trees (summed), and
# context switches per message (Postern); medians over the repetitions.
echo
echo "== summary, medians over $REPS repetition(s): accepted / into Maildir msg/s (× Postfix), server CPU ms/msg (user: the part in user space, for Postern and smtp-sink), peak RSS MiB, context switches/msg"
[ -s "$FSFLOOR" ] && echo "== floor: CPU ms/msg of smtp-sink (SMTP dialogue, nothing stored) + the durable writes alone (fs-floor) = their sum"
python3 - "$RESULTS" "$PATHS" "$FSFLOOR" <<'EOF'
import statistics
import sys

rows = [line.split() for line in open(sys.argv[1]) if line.strip()]
paths = sys.argv[2].split()
writes = {}
for line in open(sys.argv[3]):
    kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
    if "size" in kv:
        writes[int(kv["size"])] = float(kv["slot_cpu_ms"]) + float(kv["maildir_cpu_ms"])
names = {"postfix": "Postfix + Dovecot", "trusted": "Postern trusted",
         "mxclean": "Postern MX clean", "mxlossy": "Postern MX lossy",
         "sink": "Floor (smtp-sink + durable writes)"}
order = [p for p in names if p in paths]


def med(values):
    v = [float(x) for x in values if x not in ("-", "")]
    return statistics.median(v) if v else None


cells = {}
for size, s, k, _rep, acc, e2e, cpu, ctx, rss, user in rows:
    cells.setdefault((int(size), int(s), k), []).append((acc, e2e, cpu, ctx, rss, user))
print("| size, sessions | " + " | ".join(names[p] for p in order) + " |")
print("|---" * (len(order) + 1) + "|")
for size, s in sorted({(a, b) for a, b, _ in cells}):
    base = cells.get((size, s, "postfix"))
    bacc = med([c[0] for c in base]) if base else None
    be2e = med([c[1] for c in base]) if base else None
    out = []
    for p in order:
        c = cells.get((size, s, p))
        if not c:
            out.append("-")
            continue
        acc, e2e, cpu, ctx, rss, user = (med([x[i] for x in c]) for i in range(6))
        mine = f" (user {user:.2f})" if user is not None else ""
        if p == "sink":
            w = writes.get(size)
            out.append(f"{cpu:.2f}{mine} + {w:.2f} = {cpu + w:.2f} ms"
                       if w is not None and cpu is not None else "-")
            continue
        if acc is None:
            out.append("failed")
            continue
        t = f"{acc:,.0f}" + (f" ({acc / bacc:.2f}×)" if p != "postfix" and bacc else "")
        if e2e is not None:
            t += f" / {e2e:,.0f}" + (f" ({e2e / be2e:.2f}×)" if p != "postfix" and be2e else "")
        t += f", {cpu:.2f} ms{mine}, {rss:,.0f} MiB"
        if ctx is not None:
            t += f", {ctx:.1f} cs"
        out.append(t)
    label = f"{size >> 20} MiB" if size >= 1 << 20 else f"{size // 1024} KiB"
    print(f"| {label}, {s} | " + " | ".join(out) + " |")
EOF
