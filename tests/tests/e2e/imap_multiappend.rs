//! MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) and CREATE-SPECIAL-USE (RFC 6154 §3) against
//! the real imapd (issue 13 §2), from a raw-socket Python client (imaplib sends one message
//! per APPEND): several messages with their own flags and dates in one APPEND, all or none,
//! `APPENDUID` with a UID set; messages built from URLs to the user's own messages with
//! `BADURL` and `TOOBIG` for the rest; a MULTIAPPEND acknowledged just before a SIGKILL is
//! there whole after a restart, and one that fails on its third message leaves nothing on
//! disk; a mailbox created with a special-use attribute keeps it across restarts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_e2e::Postern;

const USER: &str = "mona@example.org";
const PASS: &str = "multiappend phrase 3";
/// APPENDLIMIT for these tests (imapd's `max_literal_size`).
const LIMIT: u32 = 64 * 1024;

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "imapd"])
        .set("imapd.max_literal_size", i64::from(LIMIT))
        .start_with_user(USER, PASS)
}

fn maildir(pm: &Postern) -> PathBuf {
    pm.dir().join("mail/example.org/mona/Maildir")
}

/// `C = Client()` logs in; `C.run(b'APPEND …')` sends a command (tag added; literals are
/// LITERAL+ through `lit`/`lit8`) and returns `(status_line, untagged_bytes)`; `C.sync(parts)`
/// sends a command whose parts are joined with synchronising literals, each sent after its
/// continuation request. `ok`, `no(r, code)`, `bad` check the tagged status.
const PRELUDE: &str = r#"
import os, re, signal, socket, sys
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ARG = sys.argv[4] if len(sys.argv) > 4 else ""
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def lit(b): return b"{%d+}\r\n" % len(b) + b
def lit8(b): return b"~{%d+}\r\n" % len(b) + b
class Client:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.buf = b""; self.n = 0
        self.line()
        r = self.run(b'LOGIN "%s" "%s"' % (USER.encode(), PASS.encode()))
        check(r[0].startswith(b"OK"), r)
    def fill(self):
        d = self.s.recv(65536)
        check(d, "connection closed")
        self.buf += d
    def line(self):
        while b"\r\n" not in self.buf: self.fill()
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l
    def take(self, n):
        while len(self.buf) < n: self.fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d
    def answer(self, tag):
        got = b""
        while True:
            l = self.line()
            while l.endswith(b"}") and b"{" in l:
                n = int(l[l.rindex(b"{") + 1:-1].rstrip(b"+"))
                l = l + b"\r\n" + self.take(n) + self.line()
            if l.startswith(tag + b" "):
                return l[len(tag) + 1:], got
            got += l + b"\r\n"
    def run(self, cmd):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        return self.answer(tag)
    def sync(self, first, *rest):
        # first ends with "{n}"; each of rest is (literal bytes, text up to the next "{n}" or the end)
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + first + b"\r\n")
        for data, after in rest:
            l = self.line()
            check(l.startswith(b"+"), ("continuation", l))
            self.s.sendall(data + after + (b"\r\n" if after.endswith(b"}") else b""))
        self.s.sendall(b"\r\n")
        return tag
def ok(r):
    check(r[0].startswith(b"OK"), r); return r
def no(r, code):
    check(r[0].startswith(b"NO [" + code), (code, r)); return r
def bad(r):
    check(r[0].startswith(b"BAD"), r); return r
def msg(subject, body=b"body"):
    return b"From: a@example.net\r\nTo: mona@example.org\r\nSubject: " + subject + b"\r\n\r\n" + body + b"\r\n"
def appenduid(r):
    m = re.match(rb"OK \[APPENDUID (\d+) ([0-9:,]+)\]", r[0])
    check(m, r)
    return int(m.group(1)), m.group(2).decode()
def subjects(C, box):
    r = ok(C.run(b"EXAMINE " + box))
    r = C.run(b"UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    return re.findall(rb"Subject: ([^\r]*)", r[1])
"#;

fn py(pm: &Postern, body: &str, arg: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS, arg])
}

fn listing(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn uidlist_records(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("dovecot-uidlist"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The three extensions as a client uses them: advertised; a MULTIAPPEND of three messages
/// (each with its flags and date; synchronising literals answered one by one) gets
/// `APPENDUID v 1:3`; a CATENATE draft from the header and first part of one of them plus new
/// text comes back octet for octet; BADURL (another user, `../`, a UID that does not exist, a
/// wrong UIDVALIDITY) and TOOBIG (over APPENDLIMIT) append nothing; CREATE with USE shows the
/// attribute in LIST, refuses attributes in use or unsupported, and keeps it across a restart.
#[test]
fn multiappend_catenate_and_create_special_use() {
    let mut pm = install();
    py(
        &pm,
        &format!(
            r#"
LIMIT = {LIMIT}
C = Client()
caps = C.run(b"CAPABILITY")[1]
for c in [b" MULTIAPPEND", b" CATENATE", b" CREATE-SPECIAL-USE", b" APPENDLIMIT=%d" % LIMIT]:
    check(c in caps, (c, caps))
ok(C.run(b"CREATE Work"))
m1 = b"From: a@example.net\r\nSubject: mixed\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\npart one\r\n--x\r\nContent-Type: text/plain\r\n\r\npart two\r\n--x--\r\n"
m2, m3 = msg(b"second"), msg(b"third")
tag = C.sync(b"APPEND Work (\\Seen) \"01-Jan-2020 10:00:00 +0000\" {{%d}}" % len(m1),
             (m1, b" (\\Flagged $Todo) {{%d}}" % len(m2)),
             (m2, b" {{%d}}" % len(m3)),
             (m3, b""))
r = C.answer(tag)
v, uids = appenduid(r)
check(uids == "1:3", r)
r = ok(C.run(b"SELECT Work"))
r = C.run(b"FETCH 1:3 (FLAGS INTERNALDATE)")
check(b'1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE "01-Jan-2020 10:00:00 +0000")' in r[1], r)
check(b"2 FETCH (FLAGS (\\Flagged $Todo \\Recent)" in r[1], r)
check(subjects(C, b"Work") == [b"mixed", b"second", b"third"], subjects(C, b"Work"))
# CATENATE: header and part 1 of message 1, new text between (RFC 4469 Appendix A).
r = ok(C.run(b'APPEND Drafts (\\Draft) CATENATE (URL "/Work;UIDVALIDITY=%d/;UID=1/;SECTION=HEADER" TEXT ' % v
             + lit(b"--x\r\n") + b' URL "/Work/;UID=1/;SECTION=1.MIME" URL "/Work/;UID=1/;SECTION=1" TEXT '
             + lit(b"\r\n--x--\r\n") + b")"))
dv, duid = appenduid(r)
ok(C.run(b"SELECT Drafts"))
r = C.run(b"UID FETCH %s BODY.PEEK[]" % duid.encode())
want = m1[:m1.index(b"\r\n\r\n") + 4] + b"--x\r\nContent-Type: text/plain\r\n\r\npart one\r\n--x--\r\n"
check(b"BODY[] {{%d}}\r\n" % len(want) + want in r[1], (r, want))
# Relative to the selected mailbox, and MULTIAPPEND with CATENATE.
ok(C.run(b"SELECT Work"))
r = ok(C.run(b'APPEND Drafts CATENATE (URL ";UID=2") CATENATE (URL ";UID=3/;SECTION=TEXT")'))
check(appenduid(r)[1] == "%d:%d" % (int(duid) + 1, int(duid) + 2), r)
before = subjects(C, b"Drafts")
for url in [b"imap://eve%40example.org@localhost/INBOX/;UID=1", b"/Work/../INBOX/;UID=1",
            b"/Work/;UID=99", b"/Work;UIDVALIDITY=%d/;UID=1" % (v + 1), b"/Nope/;UID=1"]:
    r = no(C.run(b'APPEND Drafts ' + lit(msg(b"ok")) + b' CATENATE (URL "/Work/;UID=2" URL "' + url + b'")'), b"BADURL")
    check(r[0].startswith(b"NO [BADURL " + url + b"]"), r)
big = b"x" * (LIMIT - 100)
no(C.run(b'APPEND Drafts CATENATE (TEXT ' + lit(big) + b' URL "/Work/;UID=1")'), b"TOOBIG")
no(C.run(b'APPEND Nope ' + lit(msg(b"a")) + b" " + lit(msg(b"b"))), b"TRYCREATE")
check(subjects(C, b"Drafts") == before, "nothing appended by the refused commands")
# CREATE-SPECIAL-USE.
no(C.run(b"CREATE Outbox (USE (\\Sent))"), b"USEATTR")
no(C.run(b"CREATE Everything (USE (\\All))"), b"USEATTR")
ok(C.run(b"DELETE Archive"))
ok(C.run(b"CREATE Old/Mail (USE (\\Archive))"))
r = ok(C.run(b'LIST "" "Old/*"'))
check(b'(\\HasNoChildren \\Archive) "/" "Old/Mail"' in r[1], r)
r = ok(C.run(b'LIST (SPECIAL-USE) "" "*"'))
check(r[1].count(b"\\Archive") == 1, r)
"#
        ),
        "",
    );
    pm.restart_daemon("imapd");
    py(
        &pm,
        r#"
C = Client()
r = ok(C.run(b'LIST "" "Old/*"'))
check(b'\\Archive) "/" "Old/Mail"' in r[1], r)
ok(C.run(b"RENAME Old/Mail Older"))
r = ok(C.run(b'LIST (SPECIAL-USE) "" "*"'))
check(b'\\Archive) "/" "Older"' in r[1], r)
"#,
        "",
    );
}

/// RFC 3502 §6.3.11, all or none, on disk: a MULTIAPPEND whose third message has a URL that
/// does not resolve is NO and leaves no file in `cur/`, `new/` or `tmp/` and no uidlist
/// record; a MULTIAPPEND whose tagged OK the client reads just before it SIGKILLs imapd has
/// all its messages after a restart, under the UIDs APPENDUID named.
#[test]
fn all_or_none_and_an_acknowledged_multiappend_survives_sigkill() {
    let mut pm = install();
    let md = maildir(&pm);
    let pid = pm.daemon("imapd").pid().to_string();
    py(
        &pm,
        r#"
C = Client()
r = C.run(b"APPEND INBOX " + lit(msg(b"one")) + b" (\\Seen) " + lit(msg(b"two"))
          + b' CATENATE (TEXT ' + lit(msg(b"three")) + b' URL "/INBOX/;UID=1")')
no(r, b"BADURL")
r = C.run(b"STATUS INBOX (MESSAGES UIDNEXT)")
check(b"(MESSAGES 0 UIDNEXT 1)" in r[1], r)
"#,
        "",
    );
    for sub in ["cur", "new", "tmp"] {
        assert!(
            listing(&md.join(sub)).is_empty(),
            "{sub}: {:?}",
            listing(&md.join(sub))
        );
    }
    assert_eq!(uidlist_records(&md), 0);
    let out = py(
        &pm,
        r#"
C = Client()
cmd = b"K1 APPEND INBOX"
for i in range(5):
    cmd += b" (\\Flagged) " + lit(msg(b"kept %d" % i, b"k" * 2000))
C.s.sendall(cmd + b"\r\n")
line = C.line()
while line.startswith(b"*"):
    line = C.line()
os.kill(int(ARG), signal.SIGKILL)
check(line.startswith(b"K1 OK [APPENDUID"), line)
print(re.search(rb"APPENDUID \d+ ([0-9:]+)", line).group(1).decode())
"#,
        &pid,
    );
    assert_eq!(out.trim(), "1:5");
    pm.daemon("imapd")
        .wait_exit(Duration::from_secs(10))
        .expect("imapd died");
    assert_eq!(uidlist_records(&md), 5);
    assert!(listing(&md.join("tmp")).is_empty());
    pm.restart_daemon("imapd");
    py(
        &pm,
        r#"
C = Client()
check(subjects(C, b"INBOX") == [b"kept %d" % i for i in range(5)], subjects(C, b"INBOX"))
r = C.run(b"UID FETCH 1:5 (FLAGS RFC822.SIZE)")
check(r[1].count(b"\\Flagged") == 5, r)
"#,
        "",
    );
}
