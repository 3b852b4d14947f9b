//! METADATA (RFC 5464, issue 13 §2) against the real imapd: GETMETADATA/SETMETADATA on the
//! server and on mailboxes, DEPTH and MAXSIZE, NIL deletion, the RFC's errors and our limits,
//! binary values (literal8), the server entries from the config, `/private/specialuse`, and
//! the entries' life: they survive an imapd restart, go with DELETE and move with RENAME.
//! imaplib has no METADATA helpers, so the client is a raw socket in Python that sends
//! LITERAL+ literals and reads responses with their literals.

use postern_e2e::Postern;

const USER: &str = "mira@example.org";
const PASS: &str = "metadata phrase 9";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .set("smtpd.postmaster", "hostmaster@example.org")
        .set("imapd.metadata_comment", "Postern test server")
        .start_with_user(USER, PASS)
}

/// `C = Client()` logs in; `C.run(b'GETMETADATA ...')` sends one command (tag added) and
/// returns `(status_line, untagged_bytes)`; `lit(b)` / `lit8(b)` are LITERAL+ literals.
/// `ok(r)`, `no(r, code)`, `bad(r)` check the tagged status.
const PRELUDE: &str = r#"
import socket, sys
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def lit(b): return b"{%d+}\r\n" % len(b) + b
def lit8(b): return b"~{%d+}\r\n" % len(b) + b
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
    def run(self, cmd):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        got = b""
        while True:
            l = self.line()
            # A line ending in a literal announcement continues after the literal.
            while l.endswith(b"}") and b"{" in l:
                n = int(l[l.rindex(b"{") + 1:-1].rstrip(b"+"))
                l = l + b"\r\n" + self.take(n) + self.line()
            if l.startswith(tag + b" "):
                return l[len(tag) + 1:], got
            got += l + b"\r\n"
def ok(r):
    check(r[0].startswith(b"OK"), r); return r[1]
def no(r, code):
    check(r[0].startswith(b"NO [" + code + b"]"), (code, r)); return r
def bad(r):
    check(r[0].startswith(b"BAD"), r); return r
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS])
}

/// Server and mailbox entries: set, read back (DEPTH 0/1/infinity, MAXSIZE with
/// LONGENTRIES), NIL deletion, private and shared kept apart, the server's own entries, the
/// SPECIAL-USE entry, binary values; then the values survive an imapd restart.
#[test]
fn set_get_depth_maxsize_and_restart() {
    let mut pm = install();
    py(
        &pm,
        r#"
C = Client()
caps = ok(C.run(b"CAPABILITY"))
check(b" METADATA " in caps and b" METADATA-SERVER" in caps, caps)
# Server entries from the config: admin from [smtpd] postmaster, comment from [imapd].
got = ok(C.run(b'GETMETADATA "" (/shared/admin /shared/comment /private/nothing)'))
check(got == b'* METADATA "" (/private/nothing NIL /shared/admin "mailto:hostmaster@example.org" /shared/comment "Postern test server")\r\n', got)
no(C.run(b'SETMETADATA "" (/shared/admin "mailto:me@evil.example")'), b"NOPERM")
# Server entries of the user's own.
ok(C.run(b'SETMETADATA "" (/private/vendor/vendor.test/a "one" /shared/vendor/vendor.test/a "shared one")'))
got = ok(C.run(b'GETMETADATA "" (/private/vendor/vendor.test/a /shared/vendor/vendor.test/a)'))
check(got == b'* METADATA "" (/private/vendor/vendor.test/a "one" /shared/vendor/vendor.test/a "shared one")\r\n', got)
# Mailbox entries, names case-insensitive.
ok(C.run(b'SETMETADATA INBOX (/private/comment "my inbox" /shared/comment "our inbox")'))
ok(C.run(b'SETMETADATA INBOX (/private/a/b "ab" /private/a/b/c "abc" /private/a/d ' + lit(b"x" * 300) + b')'))
got = ok(C.run(b'GETMETADATA INBOX /PRIVATE/Comment'))
check(got == b'* METADATA "INBOX" (/private/comment "my inbox")\r\n', got)
got = ok(C.run(b'GETMETADATA (DEPTH 1) INBOX /private/a'))
check(got == b'* METADATA "INBOX" (/private/a NIL /private/a/b "ab" /private/a/d "' + b"x" * 300 + b'")\r\n', got)
got = ok(C.run(b'GETMETADATA (DEPTH infinity) INBOX /private/a'))
check(b'/private/a/b/c "abc"' in got and b"/private/a/d" in got, got)
got = ok(C.run(b'GETMETADATA (DEPTH 0) INBOX /private/a'))
check(got == b'* METADATA "INBOX" (/private/a NIL)\r\n', got)
r = C.run(b'GETMETADATA (MAXSIZE 10 DEPTH infinity) INBOX /private')
check(r[0].startswith(b"OK [METADATA LONGENTRIES 300]"), r)
check(b"/private/a/b/c" in r[1] and b"/private/a/d" not in r[1], r)
r = C.run(b'GETMETADATA (MAXSIZE 1000) INBOX /private/a/d')
check(r[0].startswith(b"OK GETMETADATA"), r)
# Private and shared entries are distinct.
got = ok(C.run(b'GETMETADATA INBOX (/private/comment /shared/comment)'))
check(got == b'* METADATA "INBOX" (/private/comment "my inbox" /shared/comment "our inbox")\r\n', got)
# NIL deletes.
ok(C.run(b'SETMETADATA INBOX (/shared/comment NIL)'))
got = ok(C.run(b'GETMETADATA INBOX /shared/comment'))
check(got == b'* METADATA "INBOX" (/shared/comment NIL)\r\n', got)
# Binary values (literal8) come back as literal8.
ok(C.run(b'SETMETADATA INBOX (/private/bin ' + lit8(b"a\x00b\r\nc") + b')'))
got = ok(C.run(b'GETMETADATA INBOX /private/bin'))
check(got == b'* METADATA "INBOX" (/private/bin ~{6}\r\na\x00b\r\nc)\r\n', got)
# SPECIAL-USE: read-only, per mailbox.
got = ok(C.run(b'GETMETADATA Sent /private/specialuse'))
check(got == b'* METADATA "Sent" (/private/specialuse "\\\\Sent")\r\n', got)
no(C.run(b'SETMETADATA Sent (/private/specialuse "\\\\Trash")'), b"NOPERM")
got = ok(C.run(b'GETMETADATA INBOX /private/specialuse'))
check(got == b'* METADATA "INBOX" (/private/specialuse NIL)\r\n', got)
print("done")
"#,
    );
    pm.restart_daemon("imapd");
    py(
        &pm,
        r#"
C = Client()
got = ok(C.run(b'GETMETADATA INBOX (/private/comment /private/bin)'))
check(got == b'* METADATA "INBOX" (/private/bin ~{6}\r\na\x00b\r\nc /private/comment "my inbox")\r\n', got)
got = ok(C.run(b'GETMETADATA "" /private/vendor/vendor.test/a'))
check(got == b'* METADATA "" (/private/vendor/vendor.test/a "one")\r\n', got)
"#,
    );
}

/// §3.2's name rules are BAD; missing mailboxes are NONEXISTENT; MAXSIZE and TOOMANY limits
/// hold and a refused SETMETADATA changes nothing.
#[test]
fn errors_and_limits() {
    let pm = install();
    py(
        &pm,
        r#"
C = Client()
for e in [b"/private/a*", b"/private/%", b"/private//a", b"/private/a/", b"/other/a",
          b"private/a", b"/shared/vendor", b"/private", b'"/private/a\x01"']:
    bad(C.run(b'SETMETADATA INBOX (' + e + b' "v")'))
for e in [b"/private/a*", b"/private//a", b"/public"]:
    bad(C.run(b'GETMETADATA INBOX ' + e))
no(C.run(b'GETMETADATA Nope /private/comment'), b"NONEXISTENT")
no(C.run(b'SETMETADATA Nope (/private/comment "x")'), b"NONEXISTENT")
# Values up to 64 KiB; a larger one is refused with the limit, and nothing of the command
# is stored.
ok(C.run(b'SETMETADATA INBOX (/private/max ' + lit(b"m" * 65536) + b')'))
no(C.run(b'SETMETADATA INBOX (/private/first "1" /private/big ' + lit(b"m" * 65537) + b')'), b"METADATA MAXSIZE 65536")
got = ok(C.run(b'GETMETADATA INBOX /private/first'))
check(got == b'* METADATA "INBOX" (/private/first NIL)\r\n', got)
ok(C.run(b'SETMETADATA INBOX (/private/max NIL)'))
# 128 entries per mailbox.
ents = b" ".join(b'/private/n/%d "v"' % i for i in range(128))
ok(C.run(b'SETMETADATA INBOX (' + ents + b')'))
no(C.run(b'SETMETADATA INBOX (/private/one-more "v")'), b"METADATA TOOMANY")
ok(C.run(b'SETMETADATA INBOX (/private/n/0 "replaced")'))
got = ok(C.run(b'GETMETADATA (DEPTH 1) INBOX /private/n'))
check(got.count(b"/private/n/") == 128 and b'/private/n/0 "replaced"' in got, got[:200])
# 1 MiB per user: sixteen 64 KiB values fill it, the seventeenth is refused.
for i in range(15):
    check(C.run(b"CREATE Box%d" % i)[0].startswith(b"OK"), i)
    ok(C.run(b'SETMETADATA Box%d (/private/blob ' % i + lit(b"b" * 65536) + b')'))
r = C.run(b'SETMETADATA "" (/private/blob ' + lit(b"b" * 65536) + b')')
no(r, b"METADATA TOOMANY")
# Deleting is always possible and makes room again.
ok(C.run(b'SETMETADATA Box0 (/private/blob NIL)'))
ok(C.run(b'SETMETADATA "" (/private/blob ' + lit(b"b" * 65536) + b')'))
"#,
    );
}

/// DELETE removes a mailbox's entries (a new mailbox of that name starts empty); RENAME
/// carries them, with a child mailbox's.
#[test]
fn delete_removes_and_rename_carries() {
    let pm = install();
    py(
        &pm,
        r#"
C = Client()
for n in [b"Proj", b"Proj/Sub", b"Gone"]:
    check(C.run(b"CREATE " + n)[0].startswith(b"OK"), n)
ok(C.run(b'SETMETADATA Proj (/private/comment "project")'))
ok(C.run(b'SETMETADATA Proj/Sub (/shared/comment "sub")'))
ok(C.run(b'SETMETADATA Gone (/private/comment "bye")'))
check(C.run(b"DELETE Gone")[0].startswith(b"OK"), "delete")
no(C.run(b'GETMETADATA Gone /private/comment'), b"NONEXISTENT")
check(C.run(b"CREATE Gone")[0].startswith(b"OK"), "recreate")
got = ok(C.run(b'GETMETADATA Gone /private/comment'))
check(got == b'* METADATA "Gone" (/private/comment NIL)\r\n', got)
check(C.run(b"RENAME Proj Moved")[0].startswith(b"OK"), "rename")
got = ok(C.run(b'GETMETADATA Moved /private/comment'))
check(got == b'* METADATA "Moved" (/private/comment "project")\r\n', got)
got = ok(C.run(b'GETMETADATA Moved/Sub /shared/comment'))
check(got == b'* METADATA "Moved/Sub" (/shared/comment "sub")\r\n', got)
no(C.run(b'GETMETADATA Proj /private/comment'), b"NONEXISTENT")
# In the selected state too, and a second session sees the first one's change at once.
check(C.run(b"SELECT Moved")[0].startswith(b"OK"), "select")
D = Client()
ok(D.run(b'SETMETADATA Moved (/private/comment "from D")'))
got = ok(C.run(b'GETMETADATA Moved /private/comment'))
check(got == b'* METADATA "Moved" (/private/comment "from D")\r\n', got)
# Not before login.
s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
f = s.makefile("rb")
f.readline()
s.sendall(b'x GETMETADATA "" /shared/comment\r\n')
l = f.readline()
check(l.startswith(b"x BAD"), l)
"#,
    );
}
