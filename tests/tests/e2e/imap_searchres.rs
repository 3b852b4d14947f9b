//! SEARCHRES (RFC 5182) and UIDONLY (RFC 9586) against the real imapd (issue 13 §2): a
//! pipelined `SEARCH RETURN (SAVE)` followed by FETCH/STORE/COPY/MOVE/UID EXPUNGE `$`, `$`
//! inside SEARCH criteria, the saved result's life (SELECT resets it, expunged messages
//! leave it, a failed SAVE empties it), `$` where it is not allowed; then ENABLE UIDONLY:
//! message numbers refused with `BAD [UIDREQUIRED]`, UIDFETCH and VANISHED responses.
//! imaplib has no helpers for these, so the client is a raw socket in Python (as in
//! `imap_metadata.rs`) that also sends pipelines in one write.

use postern_e2e::Postern;

const USER: &str = "sara@example.org";
const PASS: &str = "searchres phrase 4";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

/// `C = Client()` logs in; `C.run(b'FETCH ...')` sends one command (tag added) and returns
/// `(status_line, untagged_bytes)`; `C.pipeline([cmd, …])` sends all of them in one write
/// and returns their results in order; `C.append(subject, flags)` adds a message.
const PRELUDE: &str = r#"
import socket, sys, re
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
class Client:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
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
    def result(self, tag):
        got = b""
        while True:
            l = self.line()
            while l.endswith(b"}") and b"{" in l:
                n = int(l[l.rindex(b"{") + 1:-1].rstrip(b"+"))
                l = l + b"\r\n" + self.take(n) + self.line()
            if l.startswith(tag + b" "):
                return l[len(tag) + 1:], got
            got += l + b"\r\n"
    def pipeline(self, cmds):
        tags = []
        data = b""
        for c in cmds:
            self.n += 1
            tags.append(b"t%d" % self.n)
            data += tags[-1] + b" " + c + b"\r\n"
        self.s.sendall(data)
        return [self.result(t) for t in tags]
    def run(self, cmd):
        return self.pipeline([cmd])[0]
    def append(self, subject, flags=b""):
        m = b"From: a@example.org\r\nSubject: " + subject + b"\r\n\r\nbody\r\n"
        ok(self.run(b"APPEND INBOX (" + flags + b") {%d+}\r\n" % len(m) + m))
def norec(b):
    # \Recent depends on which session saw a message first: not what these tests check.
    return b.replace(b" \\Recent", b"").replace(b"(\\Recent", b"(")
def ok(r):
    check(r[0].startswith(b"OK"), r); return norec(r[1])
def bad(r, code=b""):
    check(r[0].startswith(b"BAD" + (b" [" + code + b"]" if code else b"")), (code, r)); return r
def seqs(untagged, word=b"FETCH"):
    return [int(m) for m in re.findall(rb"^\* (\d+) " + word + rb" \(", untagged, re.M)]
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS])
}

/// RFC 5182 §2.1/§2.2/§2.4 over a socket: the pipeline of §2.1's example (SEARCH with SAVE,
/// then commands on `$` sent before its answer), SAVE alone answering no ESEARCH, MIN/MAX,
/// `$` in STORE/COPY/MOVE/UID EXPUNGE and in criteria, expunged messages leaving `$`, the
/// reset by SELECT, a failed SAVE emptying it, `$` where it is not allowed.
#[test]
fn searchres_pipeline_and_lifetime() {
    let pm = install();
    py(
        &pm,
        r#"
C = Client()
caps = ok(C.run(b"CAPABILITY"))
check(b" SEARCHRES" in caps and b" UIDONLY" in caps, caps)
ok(C.run(b"CREATE Keep"))
ok(C.run(b"CREATE Moved"))
for i in range(1, 7):
    C.append(b"m%d" % i, b"\\Flagged" if i in (2, 3, 5) else b"")
ok(C.run(b"SELECT INBOX"))
r = C.pipeline([
    b"SEARCH RETURN (SAVE) FLAGGED",
    b"FETCH $ (FLAGS)",
    b"UID FETCH $ (FLAGS)",
    b"STORE $ +FLAGS (\\Seen)",
    b"COPY $ Keep",
    b"SEARCH $ SEEN",
    b"UID SEARCH UID $ NOT 3",
])
check(all(x[0].startswith(b"OK") for x in r), r)
check(b"ESEARCH" not in r[0][1] and b"SEARCH" not in r[0][1], r[0])
check(seqs(r[1][1]) == [2, 3, 5] and b"UID" not in r[1][1], r[1])
check(b"* 2 FETCH (UID 2 FLAGS (\\Flagged))" in norec(r[2][1]), r[2])
check(seqs(r[3][1]) == [2, 3, 5], r[3])
check(r[4][0].startswith(b"OK [COPYUID ") and b" 2:3,5 1:3]" in r[4][0], r[4])
check(r[5][1] == b"* SEARCH 2 3 5\r\n", r[5])
check(r[6][1] == b"* SEARCH 2 5\r\n", r[6])
# MIN / MAX keep only what they return (section 2.4).
got = ok(C.run(b"SEARCH RETURN (SAVE MAX) FLAGGED"))
check(got.startswith(b'* ESEARCH (TAG "t') and got.endswith(b'") MAX 5\r\n'), got)
check(seqs(ok(C.run(b"FETCH $ (FLAGS)"))) == [5], "max")
ok(C.run(b"SEARCH RETURN (SAVE MIN MAX) FLAGGED"))
check(seqs(ok(C.run(b"FETCH $ (FLAGS)"))) == [2, 5], "min max")
# Expunged messages leave $; UID EXPUNGE $ takes only the saved ones.
ok(C.run(b"SEARCH RETURN (SAVE) FLAGGED"))
ok(C.run(b"STORE 1:* +FLAGS.SILENT (\\Deleted)"))
got = ok(C.run(b"UID EXPUNGE $"))
check(got == b"* 5 EXPUNGE\r\n* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n", got)
r = C.run(b"FETCH $ (FLAGS)")
check(r[0].startswith(b"OK") and r[1] == b"", r)
ok(C.run(b"STORE 1:* -FLAGS.SILENT (\\Deleted)"))
ok(C.run(b"SEARCH RETURN (SAVE) ALL"))
got = ok(C.run(b"MOVE $ Moved"))
check(b"* OK [COPYUID " in got and got.endswith(b"* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n* 1 EXPUNGE\r\n"), got)
got = ok(C.run(b"STATUS Moved (MESSAGES)"))
check(b"MESSAGES 3" in got, got)
# SELECT resets $; a SEARCH with SAVE that fails with NO empties it, a BAD one does not.
for i in range(7, 10):
    C.append(b"m%d" % i, b"\\Flagged")
ok(C.run(b"SELECT INBOX"))
ok(C.run(b"SEARCH RETURN (SAVE) ALL"))
ok(C.run(b"SELECT INBOX"))
check(ok(C.run(b"FETCH $ (FLAGS)")) == b"", "reset by SELECT")
ok(C.run(b"SEARCH RETURN (SAVE) FLAGGED"))
bad(C.run(b"SEARCH RETURN (SAVE) NOSUCHKEY"))
check(seqs(ok(C.run(b"FETCH $ (FLAGS)"))) == [1, 2, 3], "kept after BAD")
r = C.run(b"SEARCH RETURN (SAVE) CHARSET X-NOSUCH ALL")
check(r[0].startswith(b"NO [BADCHARSET"), r)
check(ok(C.run(b"FETCH $ (FLAGS)")) == b"", "emptied by NO")
# $ only where a whole sequence set may stand.
for c in [b"FETCH 1,$ FLAGS", b"FETCH $:2 FLAGS", b"EXPUNGE $", b"SEARCH SINCE $", b"STORE $ $ +FLAGS (\\Deleted)"]:
    bad(C.run(c))
r = C.run(b"SEARCH " + b" ".join([b"$"] * 17))
check(r[0].startswith(b"NO [LIMIT]"), r)
ok(C.run(b"LOGOUT"))
print("searchres ok")
"#,
    );
}

/// RFC 9586 §3 over a socket: after ENABLE UIDONLY, commands with message numbers are
/// `BAD [UIDREQUIRED]` and change nothing; UID FETCH and flag changes (ours and another
/// session's) come as `* <uid> UIDFETCH`, expunges as VANISHED; SEARCHRES's `$` works with
/// UID commands.
#[test]
fn uidonly_refuses_numbers_and_answers_uidfetch_and_vanished() {
    let pm = install();
    py(
        &pm,
        r#"
C = Client()
for i in range(1, 5):
    C.append(b"m%d" % i)
# UID 1 goes first so that numbers and UIDs differ.
ok(C.run(b"SELECT INBOX"))
ok(C.run(b"STORE 1 +FLAGS.SILENT (\\Deleted)"))
ok(C.run(b"EXPUNGE"))
ok(C.run(b"UNSELECT"))
got = ok(C.run(b"ENABLE UIDONLY"))
check(got == b"* ENABLED UIDONLY\r\n", got)
got = ok(C.run(b"SELECT INBOX"))
check(b"UNSEEN" not in got, got)
for c in [b"FETCH 1 (FLAGS)", b"STORE 1 +FLAGS (\\Seen)", b"COPY 1 INBOX", b"MOVE 1:* INBOX",
          b"SEARCH ALL", b"UID SEARCH 1", b"SEARCH RETURN (COUNT) ALL", b"SORT (DATE) UTF-8 ALL",
          b"FETCH $ (FLAGS)"]:
    bad(C.run(c), b"UIDREQUIRED")
got = ok(C.run(b"UID FETCH 1:* (FLAGS)"))
check(got == b"* 2 UIDFETCH (FLAGS ())\r\n* 3 UIDFETCH (FLAGS ())\r\n* 4 UIDFETCH (FLAGS ())\r\n", got)
got = ok(C.run(b"UID FETCH 3 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
check(got.startswith(b"* 3 UIDFETCH (UID 3 BODY[HEADER.FIELDS (SUBJECT)] {") and b"Subject: m3" in got, got)
got = ok(C.run(b"UID STORE 2 +FLAGS (\\Flagged)"))
check(got == b"* 2 UIDFETCH (FLAGS (\\Flagged))\r\n", got)
got = ok(C.run(b"UID SEARCH RETURN (SAVE ALL) FLAGGED"))
check(got.endswith(b" UID ALL 2\r\n"), got)
got = ok(C.run(b"UID FETCH $ (FLAGS)"))
check(got == b"* 2 UIDFETCH (FLAGS (\\Flagged))\r\n", got)
# Another session's changes.
D = Client()
ok(D.run(b"SELECT INBOX"))
ok(D.run(b"UID STORE 4 +FLAGS (\\Seen)"))
ok(D.run(b"UID STORE 3 +FLAGS.SILENT (\\Deleted)"))
ok(D.run(b"EXPUNGE"))
got = ok(C.run(b"NOOP"))
check(b"* VANISHED 3\r\n" in got and b"* 4 UIDFETCH (FLAGS (\\Seen))\r\n" in got, got)
check(b"EXPUNGE" not in got and b" FETCH " not in got, got)
ok(C.run(b"UID STORE 2 +FLAGS.SILENT (\\Deleted)"))
got = ok(C.run(b"UID EXPUNGE $"))
check(got == b"* VANISHED 2\r\n", got)
print("uidonly ok")
"#,
    );
}
