//! NOTIFY (RFC 5465, issue 13 §2) against the real imapd: a client in IDLE on INBOX with
//! `NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge)) (personal (MessageNew
//! MessageExpunge))` learns of mail delivered through lmtp-deliver (`user+Work` files into
//! Work) and APPENDed by a second session into another folder from untagged STATUS responses,
//! within a bound; new mail in INBOX comes as EXISTS and the FETCH (UID FLAGS) it asked for;
//! outside IDLE the STATUS arrives too, between commands; NOTIFY NONE stops it. A user with
//! 600 folders under `personal` costs imapd a bounded number of inotify watches (counted in
//! `/proc/PID/fdinfo`), and a folder beyond the watch cap is still reported (polled).
//! The client is a raw socket in Python (imaplib has no NOTIFY).

use postern_e2e::Postern;

const USER: &str = "nora@example.org";
const PASS: &str = "notify phrase 3";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

/// `Client()` logs in; `run(cmd)` → `(tagged_rest, untagged_bytes)`; `send(raw)`;
/// `wait_for(pred, secs)` reads untagged lines until `pred(line)` (returns the line and the
/// seconds it took) or fails after `secs`; `quiet(secs)` returns what arrives in `secs`;
/// `deliver(rcpt, subject)` over LMTP.
const PRELUDE: &str = r#"
import os, select, smtplib, socket, sys, time
PORT, LMTP, MAILDIR, PID, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
class Client:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.buf = b""; self.n = 0
        self.line()
        r = self.run(b'LOGIN "%s" "%s"' % (USER.encode(), PASS.encode()))
        check(r[0].startswith(b"OK"), r)
    def fill(self, deadline=None):
        if deadline is not None:
            left = deadline - time.time()
            if left <= 0: return False
            r, _, _ = select.select([self.s], [], [], left)
            if not r: return False
        d = self.s.recv(65536)
        check(d, "connection closed")
        self.buf += d
        return True
    def line(self, deadline=None):
        while b"\r\n" not in self.buf:
            if not self.fill(deadline): return None
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def send(self, raw): self.s.sendall(raw)
    def run(self, cmd):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        got = b""
        while True:
            l = self.line()
            if l.startswith(tag + b" "):
                return l[len(tag) + 1:], got
            got += l + b"\r\n"
    def wait_for(self, pred, secs):
        start = time.time(); deadline = start + secs; seen = []
        while True:
            l = self.line(deadline)
            check(l is not None, ("nothing matching within %ss" % secs, seen))
            seen.append(l)
            if pred(l): return l, time.time() - start, seen
    def quiet(self, secs):
        deadline = time.time() + secs; seen = []
        while True:
            l = self.line(deadline)
            if l is None: return seen
            seen.append(l)
def ok(r):
    check(r[0].startswith(b"OK"), r); return r[1]
def deliver(rcpt, subject):
    msg = "From: a@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\nhello\r\n" % (rcpt, subject)
    c = smtplib.LMTP(LMTP)
    try: c.sendmail("a@example.net", [rcpt], msg)
    finally:
        try: c.quit()
        except Exception: pass
def inotify_watches(pid):
    n = 0
    for fd in os.listdir("/proc/%d/fdinfo" % pid):
        try:
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                n += sum(1 for l in f if l.startswith("inotify wd:"))
        except OSError: pass
    return n
WORK_PLUS = USER.replace("@", "+Work@")
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    let lmtp = pm.socket("lmtp");
    let maildir = pm.dir().join("mail/example.org/nora/Maildir");
    let pid = pm.daemon("imapd").pid().to_string();
    pm.python_ok(
        "imapd",
        &script,
        &[
            &port,
            &lmtp.to_string_lossy(),
            &maildir.to_string_lossy(),
            &pid,
            USER,
            PASS,
        ],
    )
}

/// RFC 5465 §5.2/§4: during IDLE on INBOX, mail delivered through lmtp-deliver into Work and
/// an APPEND by a second session each bring `* STATUS "Work" (MESSAGES n UIDNEXT n
/// UIDVALIDITY n)` within 5 s; mail to INBOX brings EXISTS and `FETCH (UID FLAGS)`. After
/// DONE, with no command running, a delivery into Work still brings its STATUS (§5: between
/// commands). NOTIFY NONE stops the STATUS responses (none in 3 s, none with the next NOOP).
#[test]
fn notify_reports_other_folders_during_idle_and_between_commands() {
    let pm = install();
    let out = py(
        &pm,
        r#"
A = Client()
caps = ok(A.run(b"CAPABILITY"))
check(b" NOTIFY" in caps, caps)
ok(A.run(b"CREATE Work"))
ok(A.run(b"SELECT INBOX"))
r = ok(A.run(b"NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge)) (personal (MessageNew MessageExpunge))"))
check(b"STATUS" not in r, r)
validity = ok(A.run(b'STATUS Work (UIDVALIDITY)')).split(b"UIDVALIDITY ")[1].split(b")")[0]
A.send(b"i1 IDLE\r\n")
l, _, _ = A.wait_for(lambda l: l.startswith(b"+"), 5)
deliver(WORK_PLUS, "to work")
want = b'* STATUS "Work" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ' + validity + b')'
l, t1, seen = A.wait_for(lambda l: l.startswith(b'* STATUS "Work"'), 5)
check(l == want, (l, want, seen))
B = Client()
ok(B.run(b"APPEND Work {5+}\r\nhi\r\n"))
l, t2, seen = A.wait_for(lambda l: l.startswith(b'* STATUS "Work"'), 5)
check(l.startswith(b'* STATUS "Work" (MESSAGES 2 UIDNEXT 3 '), (l, seen))
deliver(USER, "to inbox")
l, t3, seen = A.wait_for(lambda l: b" FETCH " in l, 5)
check(l == b"* 1 FETCH (UID 1 FLAGS (\\Recent))", (l, seen))
check(any(x == b"* 1 EXISTS" for x in seen), seen)
A.send(b"DONE\r\n")
l, _, seen = A.wait_for(lambda l: l.startswith(b"i1 "), 5)
check(l.startswith(b"i1 OK"), (l, seen))
# Not in IDLE, no command running: the STATUS still comes.
deliver(WORK_PLUS, "between commands")
l, t4, seen = A.wait_for(lambda l: l.startswith(b'* STATUS "Work"'), 5)
check(l.startswith(b'* STATUS "Work" (MESSAGES 3 UIDNEXT 4 '), (l, seen))
# The session's own APPEND is not reported back to it.
ok(A.run(b"APPEND Work {4+}\r\nme\r\n"))
seen = A.quiet(3)
check(not any(b"STATUS" in x for x in seen), seen)
ok(A.run(b"NOTIFY NONE"))
deliver(WORK_PLUS, "after none")
seen = A.quiet(3)
check(not any(b"STATUS" in x for x in seen), seen)
r = ok(A.run(b"NOOP"))
check(b"STATUS" not in r, r)
print("latency delivery %.3f s, append %.3f s, inbox %.3f s, between commands %.3f s" % (t1, t2, t3, t4))
"#,
    );
    eprintln!("{out}");
}

/// Refusals over the wire: an unknown event is `NO [BADEVENT (…)]` listing the supported
/// ones; MessageNew without MessageExpunge is BAD (§5); 1,001 mailbox names are `NO [LIMIT]`;
/// none of them ends the session or changes the active NOTIFY.
#[test]
fn notify_refusals_over_the_wire() {
    let pm = install();
    py(
        &pm,
        r#"
A = Client()
ok(A.run(b"CREATE Work"))
ok(A.run(b"NOTIFY SET (mailboxes Work (MessageNew MessageExpunge))"))
r = A.run(b"NOTIFY SET (personal (MessageNew MessageExpunge Bogus))")
check(r[0].startswith(b"NO [BADEVENT (MessageNew MessageExpunge FlagChange"), r)
r = A.run(b"NOTIFY SET (personal (MessageNew))")
check(r[0].startswith(b"BAD"), r)
names = b" ".join(b"m%d" % i for i in range(1001))
r = A.run(b"NOTIFY SET (mailboxes (" + names + b") (MessageNew MessageExpunge))")
check(r[0].startswith(b"NO [LIMIT]"), r)
r = A.run(b"NOTIFY SET (selected (MessageNew (UID (((((((((((FLAGS)))))))))))) MessageExpunge))")
check(r[0].startswith(b"BAD"), r)
deliver(WORK_PLUS, "still on")
l, _, _ = A.wait_for(lambda l: l.startswith(b'* STATUS "Work"'), 5)
ok(A.run(b"LOGOUT"))
"#,
    );
}

/// 600 folders under `personal`: imapd holds at most 1 + 2 × 256 more inotify watches for
/// this session (INBOX and the first 255 folders by name; the rest are polled), gives them
/// back on NOTIFY NONE, and mail to a polled folder is still reported (within the polling
/// bound: 500 folders per 2 s round, so under 10 s here).
#[test]
fn many_folders_cost_bounded_watches_and_polled_ones_are_reported() {
    let pm = install();
    let out = py(
        &pm,
        r#"
A = Client()
for i in range(600):
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(MAILDIR, ".f%03d" % i, sub), exist_ok=True)
before = inotify_watches(PID)
ok(A.run(b"NOTIFY SET (personal (MessageNew MessageExpunge))"))
during = inotify_watches(PID)
added = during - before
check(0 < added <= 1 + 2 * 256, (before, during))
deliver(USER.replace("@", "+f599@"), "polled")
l, t, seen = A.wait_for(lambda l: l.startswith(b'* STATUS "f599"'), 10)
check(l.startswith(b'* STATUS "f599" (MESSAGES 1 UIDNEXT 2 '), (l, seen))
deliver(USER.replace("@", "+f000@"), "watched")
l, t0, seen = A.wait_for(lambda l: l.startswith(b'* STATUS "f000"'), 5)
# Following 600 folders while nothing happens: polling rounds cost little CPU.
def cpu(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
c0 = cpu(PID)
seen = A.quiet(6)
idle_cpu = cpu(PID) - c0
check(not any(b"STATUS" in x for x in seen), seen)
check(idle_cpu < 1.5, idle_cpu)
ok(A.run(b"NOTIFY NONE"))
after = inotify_watches(PID)
# The maildir crate's own watcher keeps a watch on cur/ of the two folders opened.
check(after <= before + 2, (before, during, after))
print("watches before %d, with NOTIFY %d (+%d), after NONE %d; polled folder seen in %.2f s, watched in %.2f s; imapd CPU over 6 s quiet: %.2f s" % (before, during, added, after, t, t0, idle_cpu))
"#,
    );
    eprintln!("{out}");
}

/// A `selected` group alone: between commands (no IDLE), a delivery to the selected INBOX
/// brings `* n EXISTS` and the FETCH asked for within 5 s (the selected mailbox is watched);
/// with `selected-delayed`, another session's expunge is not sent between commands (§6) but
/// with the next NOOP.
#[test]
fn a_selected_group_pushes_new_mail_and_delays_expunges_when_asked() {
    let pm = install();
    py(
        &pm,
        r#"
A = Client()
ok(A.run(b"SELECT INBOX"))
ok(A.run(b"NOTIFY SET (selected (MessageNew (UID) MessageExpunge))"))
deliver(USER, "one")
l, _, seen = A.wait_for(lambda l: b" FETCH " in l, 5)
check(l == b"* 1 FETCH (UID 1)", (l, seen))
check(b"* 1 EXISTS" in seen, seen)
deliver(USER, "two")
l, _, seen = A.wait_for(lambda l: b" FETCH " in l, 5)
check(l == b"* 2 FETCH (UID 2)", (l, seen))
ok(A.run(b"NOTIFY SET (selected-delayed (MessageNew MessageExpunge))"))
B = Client()
ok(B.run(b"SELECT INBOX"))
ok(B.run(b"STORE 1 +FLAGS.SILENT (\\Deleted)"))
ok(B.run(b"EXPUNGE"))
seen = A.quiet(3)
check(not any(b"EXPUNGE" in x for x in seen), seen)
r = ok(A.run(b"NOOP"))
check(b"* 1 EXPUNGE" in r, r)
"#,
    );
}

/// Cost of `NOTIFY SET STATUS` (§3.1: a STATUS for every followed mailbox at once) with
/// 2,000 folders of one new message each under `personal`: every one is answered, and the
/// figure (wall time of the command, and of a NOOP of another session meanwhile) is printed.
#[test]
fn set_status_over_two_thousand_folders() {
    let pm = install();
    let out = py(
        &pm,
        r#"
A = Client()
B = Client()
N = 2000
for i in range(N):
    d = os.path.join(MAILDIR, ".s%04d" % i)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    with open(os.path.join(d, "new", "1700000000.M%dP1.test" % i), "wb") as f:
        f.write(b"From: a@example.net\r\nSubject: s%d\r\n\r\nhello\r\n" % i)
t0 = time.time()
A.n += 1
A.send(b"t%d NOTIFY SET STATUS (personal (MessageNew MessageExpunge))\r\n" % A.n)
tag = b"t%d " % A.n
# Another session of the same user meanwhile.
t1 = time.time()
ok(B.run(b"NOOP"))
noop = time.time() - t1
statuses = 0
while True:
    l = A.line()
    if l.startswith(tag):
        check(l[len(tag):].startswith(b"OK"), l)
        break
    if l.startswith(b"* STATUS \"s"):
        check(b"(MESSAGES 1 UIDNEXT 2 " in l, l)
        statuses += 1
cold = time.time() - t0
check(statuses == N, statuses)
t0 = time.time()
r = A.run(b"NOTIFY SET STATUS (personal (MessageNew MessageExpunge))")
ok(r)
warm = time.time() - t0
check(r[1].count(b"* STATUS \"s") == N, len(r[1]))
print("NOTIFY SET STATUS over %d folders: first %.2f s (another session's NOOP meanwhile %.3f s), again %.2f s" % (N, cold, noop, warm))
"#,
    );
    eprintln!("{out}");
}

/// RFC 5465 §5.4 over the wire: a RENAME by a second session reaches a client in IDLE with
/// `NOTIFY SET (personal (MailboxName))` as one extended LIST with OLDNAME within 5 s, with
/// nothing for the old name or its child.
#[test]
fn a_rename_by_another_session_arrives_with_oldname() {
    let pm = install();
    let out = py(
        &pm,
        r#"
A = Client()
B = Client()
ok(B.run(b"CREATE Old"))
ok(B.run(b"CREATE Old/kid"))
ok(A.run(b"NOTIFY SET (personal (MailboxName))"))
A.n += 1
A.send(b"t%d IDLE\r\n" % A.n)
l = A.line()
check(l.startswith(b"+"), l)
ok(B.run(b"RENAME Old New"))
l, t, seen = A.wait_for(lambda l: b"OLDNAME" in l, 5)
check(l == b'* LIST () "/" "New" ("OLDNAME" ("Old"))', (l, seen))
rest = A.quiet(3)
check(not any(b"LIST" in x for x in seen[:-1] + rest), (seen, rest))
A.send(b"DONE\r\n")
print("rename announced with OLDNAME in %.2f s" % t)
"#,
    );
    eprintln!("{out}");
}
