//! APPEND's guarantees as a client sees them (issue 13 §3, the faster APPEND path): a tagged
//! OK with its APPENDUID means the message and its UID are kept, even when imapd is killed
//! (SIGKILL) right after sending it; concurrent APPENDs to one mailbox from many sessions get
//! distinct, consecutive UIDs, and every message is there exactly once.
//! Driven by Python's imaplib.

use std::time::Duration;

use postern_e2e::Postern;

const USER: &str = "ann@example.org";
const PASS: &str = "append phrase 7";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "imapd"])
        .start_with_user(USER, PASS)
}

/// `login()`, `check(cond, what)`, `append(M, subject)` → UID (from APPENDUID),
/// `subjects(M)` → {uid: subject} of INBOX.
const PRELUDE: &str = r#"
import imaplib, re, sys
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ARG = sys.argv[4] if len(sys.argv) > 4 else ""
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def login():
    M = imaplib.IMAP4("127.0.0.1", PORT); M.login(USER, PASS); return M
def append(M, subject):
    msg = ("From: a@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\nbody of %s\r\n" % (USER, subject, subject)).encode()
    typ, d = M.append("INBOX", None, None, msg)
    check(typ == "OK", (typ, d))
    m = re.search(rb"APPENDUID (\d+) (\d+)", d[0])
    check(m, d)
    return int(m.group(2))
def subjects(M):
    typ, d = M.select("INBOX")
    check(typ == "OK", d)
    out = {}
    if int(d[0]) == 0:
        return out
    typ, d = M.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    check(typ == "OK", d)
    for item in d:
        if isinstance(item, tuple):
            uid = int(re.search(rb"UID (\d+)", item[0]).group(1))
            s = item[1].decode().strip()
            check(s.startswith("Subject: "), s)
            check(uid not in out, ("UID twice", uid))
            out[uid] = s[len("Subject: "):]
    return out
"#;

fn py(pm: &Postern, body: &str, arg: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS, arg])
}

/// imapd is killed with SIGKILL by the client the moment it has read the tagged OK of an
/// APPEND (no graceful shutdown, nothing flushed later): after a restart the message is there
/// under the UID the APPENDUID named, with its content, and UIDs go on above it.
#[test]
fn an_acknowledged_append_survives_sigkill_right_after_the_ok() {
    let mut pm = install();
    let pid = pm.daemon("imapd").pid().to_string();
    let out = py(
        &pm,
        r#"
import os, signal
M = login()
first = append(M, "before")
# Built by hand so that nothing runs between reading the tagged OK and the kill.
msg = ("From: a@example.net\r\nSubject: killed\r\n\r\n" + "k" * 3000 + "\r\n").encode()
M.send(b"K1 APPEND INBOX (\\Flagged) {%d}\r\n" % len(msg))
check(M.readline().startswith(b"+"), "continuation")
M.send(msg + b"\r\n")
line = M.readline()
os.kill(int(ARG), signal.SIGKILL)
check(line.startswith(b"K1 OK"), line)
uid = int(re.search(rb"APPENDUID \d+ (\d+)", line).group(1))
print(first, uid)
"#,
        &pid,
    );
    let (first, uid) = out
        .trim()
        .split_once(' ')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .expect("two UIDs");
    pm.daemon("imapd")
        .wait_exit(Duration::from_secs(10))
        .expect("imapd died");
    pm.restart_daemon("imapd");
    py(
        &pm,
        &format!(
            r#"
M = login()
s = subjects(M)
check(s == {{{first}: "before", {uid}: "killed"}}, s)
typ, d = M.uid("FETCH", "{uid}", "(FLAGS BODY.PEEK[TEXT])")
check(typ == "OK" and d[0] is not None, d)
check(b"\\Flagged" in d[0][0], d[0][0])
check(d[0][1] == b"k" * 3000 + b"\r\n", len(d[0][1]))
check(append(M, "after") > {uid}, "UIDs go on above the kept one")
"#
        ),
        "",
    );
}

/// Ten sessions APPEND ten messages each to one INBOX at the same time: the hundred
/// APPENDUIDs are 1..=100 (distinct and consecutive), and INBOX holds each message once under
/// the UID its APPEND reported.
#[test]
fn concurrent_appends_to_one_mailbox_get_distinct_consecutive_uids() {
    let pm = install();
    py(
        &pm,
        r#"
import threading
got, errors = {}, []
lock = threading.Lock()
def client(c):
    try:
        M = login()
        if c % 2:
            M.select("INBOX")
        for i in range(10):
            subj = "c%d-m%d" % (c, i)
            uid = append(M, subj)
            with lock:
                check(uid not in got, ("UID given twice", uid))
                got[uid] = subj
        M.logout()
    except BaseException as e:
        errors.append(repr(e))
ts = [threading.Thread(target=client, args=(c,)) for c in range(10)]
for t in ts: t.start()
for t in ts: t.join()
check(not errors, errors)
check(sorted(got) == list(range(1, 101)), sorted(got))
M = login()
check(subjects(M) == got, "INBOX holds every message once, under its APPENDUID")
"#,
        "",
    );
}
