//! imapd conformance (issue 13 §1), from the RFC text: BINARY (RFC 3516) partial fetches,
//! decoded sizes and literal8 APPEND; the CONDSTORE enabling commands (RFC 7162 §3.1);
//! ID (RFC 2971) limits before login; `\Recent` counts on EXAMINE/SELECT (RFC 3501).
//! Driven by a raw-socket Python client (imaplib cannot send literal8) against the real imapd.

use postern_e2e::Postern;

const USER: &str = "dora@example.org";
const PASS: &str = "conformance pass phrase 1";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

/// A raw IMAP client: `C(tag, *parts)` sends text parts as they are and `("lit8", data)` /
/// `("lit", data)` as a synchronizing literal8 / literal (waiting for the continuation), then
/// CRLF, and returns every byte up to and including the tagged line (literals included).
const PRELUDE: &str = r#"
import socket, sys, re
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class C:
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.buf = b""
        self.n = 0
        g = self.line()
        check(g.startswith(b"* OK"), g)
    def fill(self):
        d = self.s.recv(65536)
        if not d: raise SystemExit("FAILED: connection closed; buffered %r" % self.buf[-300:])
        self.buf += d
    def line(self):
        while b"\n" not in self.buf: self.fill()
        i = self.buf.index(b"\n") + 1
        l, self.buf = self.buf[:i], self.buf[i:]
        return l
    def take(self, n):
        while len(self.buf) < n: self.fill()
        r, self.buf = self.buf[:n], self.buf[n:]
        return r
    def until(self, tag):
        out = b""
        while True:
            l = self.line(); out += l
            m = re.search(rb"\{(\d+)\}\r\n$", l)
            if m: out += self.take(int(m.group(1))); continue
            if l.startswith(tag + b" "): return out
    def cmd(self, *parts):
        self.n += 1
        tag = b"t%d" % self.n
        self.s.sendall(tag + b" ")
        for p in parts:
            if isinstance(p, tuple):
                kind, data = p
                self.s.sendall((b"~{%d}\r\n" if kind == "lit8" else b"{%d}\r\n") % len(data))
                l = self.line()
                check(l.startswith(b"+"), b"no continuation: " + l)
                self.s.sendall(data)
            else:
                self.s.sendall(p if isinstance(p, bytes) else p.encode())
        self.s.sendall(b"\r\n")
        return self.until(tag)
    def ok(self, *parts):
        r = self.cmd(*parts)
        check(re.search(rb"\r\nt%d OK[^\r\n]*\r\n$" % self.n, b"\r\n" + r), r)
        return r
    def login(self):
        self.ok('LOGIN "%s" "%s"' % (USER, PASS))
        return self
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS])
}

/// RFC 3516 §4.2/§4.3: a message APPENDed as literal8 with binary content (NULs, 8-bit
/// octets, a bare CR) comes back octet for octet (BODY[], BODY[1], BINARY[1]); BINARY data
/// holding NUL is a literal8; a partial BINARY answers `BINARY[1]<origin>`; BINARY.SIZE is
/// the decoded size.
#[test]
fn binary_literal8_append_round_trips_and_partial_has_origin() {
    let pm = install();
    py(
        &pm,
        r#"
# every octet but LF (a bare LF is not kept by the LF-based Maildir: see below), a lone CR
part = bytes(b for b in range(256) if b != 10) + b"\x00\x00end\r\n"
msg = (b"From: a@example.org\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
       b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
       + part + b"\r\n--b--\r\n")
c = C().login()
c.ok("APPEND INBOX ", ("lit8", msg))
c.ok("SELECT INBOX")
r = c.ok("FETCH 1 (BINARY.PEEK[])")
check(r.startswith(b"* 1 FETCH (BINARY[] ~{%d}\r\n" % len(msg) + msg + b")"), r)
# BODY cannot carry NUL (RFC 3501 literal: CHAR8 except NUL): the same octets, NUL as 0x80
r = c.ok("FETCH 1 (BODY.PEEK[])")
nonul = msg.replace(b"\x00", b"\x80")
check(r.startswith(b"* 1 FETCH (BODY[] {%d}\r\n" % len(msg) + nonul + b")"), r[:200])
r = c.ok("FETCH 1 (BINARY.PEEK[1])")
check(b"BINARY[1] ~{%d}\r\n" % len(part) + part + b")" in r, r[:200])
r = c.ok("FETCH 1 (BODY.PEEK[1])")
check(b"BODY[1] {%d}\r\n" % len(part) + part.replace(b"\x00", b"\x80") + b")" in r, r[:200])
r = c.ok("FETCH 1 (BINARY.SIZE[1])")
check(b"BINARY.SIZE[1] %d)" % len(part) in r, r)
# partial: the origin octet and the window's octets
r = c.ok("FETCH 1 (BINARY.PEEK[1]<0.10>)")
check(b"BINARY[1]<0> ~{10}\r\n" + part[:10] + b")" in r, r)
r = c.ok("FETCH 1 (BINARY.PEEK[1]<250.100>)")
check(b"BINARY[1]<250> ~{%d}\r\n" % len(part[250:]) + part[250:] + b")" in r, r)
# a partial fetch of plain text gets its origin too
r = c.ok("FETCH 1 (BINARY.PEEK[1]<64.4>)")
check(b"BINARY[1]<64> {4}\r\nABCD)" in r, r)
# Binary content this store cannot keep octet for octet (a bare LF in a CRLF message, LF
# being the Maildir's line end) is refused with UNKNOWN-CTE (RFC 3516 §4.3), not altered.
r = c.cmd("APPEND INBOX ", ("lit8", msg.replace(b"\x00\x00end", b"\x00\n\x00end")))
check(re.search(rb"t\d+ NO \[UNKNOWN-CTE\]", r), r)
r = c.ok("NOOP")
check(b"EXISTS" not in r, r)
# the same in a plain literal (no NUL) is text: stored with its line ends normalised
r = c.ok("APPEND INBOX ", ("lit", b"Subject: lf\r\n\r\na\nb\r\n"))
r = c.ok("FETCH 2 (BODY.PEEK[TEXT])")
check(b"BODY[TEXT] {6}\r\na\r\nb\r\n)" in r, r)
c.ok("LOGOUT")
"#,
    );
}

/// RFC 3516 §4.2: BINARY.SIZE and partial ranges count decoded octets of base64 and
/// quoted-printable parts; an encoding the server cannot decode is `NO [UNKNOWN-CTE]`.
#[test]
fn binary_decoded_sizes_partial_ranges_and_unknown_cte() {
    let pm = install();
    py(
        &pm,
        r#"
import base64
b64 = bytes(range(200))
qp_text = "caf\u00e9 au lait, cr\u00e8me br\u00fbl\u00e9e".encode()
qp = b"caf=C3=A9 au lait, cr=C3=A8me br=C3=BBl=C3=\r\n=A9e"
msg = (b"From: a@example.org\r\nSubject: enc\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
       b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       + base64.encodebytes(b64).replace(b"\n", b"\r\n") +
       b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
       + qp + b"\r\n--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n")
c = C().login()
c.ok("APPEND INBOX ", ("lit", msg))
c.ok("SELECT INBOX")
r = c.ok("FETCH 1 (BINARY.SIZE[1] BINARY.SIZE[2])")
check(b"BINARY.SIZE[1] 200" in r and b"BINARY.SIZE[2] %d" % len(qp_text) in r, r)
r = c.ok("FETCH 1 (BINARY.PEEK[1]<0.20>)")
check(b"BINARY[1]<0> ~{20}\r\n" + b64[0:20] + b")" in r, r)
# RFC 3516 §4.3: without NUL the data is a string, not a literal8
r = c.ok("FETCH 1 (BINARY.PEEK[1]<10.20>)")
check(b"BINARY[1]<10> {20}\r\n" + b64[10:30] + b")" in r, r)
r = c.ok("FETCH 1 (BINARY.PEEK[1]<190.50>)")
check(b"BINARY[1]<190> {10}\r\n" + b64[190:] + b")" in r, r)
r = c.ok("FETCH 1 (BINARY.PEEK[2]<4.10>)")
check(b"BINARY[2]<4> {10}\r\n" + qp_text[4:14] + b")" in r, r)
r = c.ok("FETCH 1 (BINARY.PEEK[2]<30.40>)")
check(b"BINARY[2]<30> {%d}\r\n" % len(qp_text[30:]) + qp_text[30:] + b")" in r, r)
r = c.cmd("FETCH 1 (BINARY.PEEK[3])")
check(re.search(rb"t\d+ NO \[UNKNOWN-CTE\]", r), r)
r = c.cmd("FETCH 1 (BINARY.SIZE[3])")
check(re.search(rb"t\d+ NO \[UNKNOWN-CTE\]", r), r)
c.ok("LOGOUT")
"#,
    );
}

/// RFC 7162 §3.1: the first command that implicitly enables CONDSTORE answers
/// `[HIGHESTMODSEQ n]` in its tagged OK: FETCH MODSEQ, FETCH (CHANGEDSINCE), SEARCH MODSEQ and
/// STORE (UNCHANGEDSINCE), each in a fresh session; later commands do not repeat it. §3.1.5:
/// ESEARCH RETURN (MIN) reports the mod-sequence of the message returned.
#[test]
fn condstore_first_enabling_command_reports_highestmodseq() {
    let pm = install();
    py(
        &pm,
        r#"
c = C().login()
for i in range(3):
    c.ok("APPEND INBOX ", ("lit", b"Subject: m%d\r\n\r\nbody\r\n" % i))
c.ok("SELECT INBOX")
c.ok("STORE 3 +FLAGS (\\Flagged)")
r = c.ok("FETCH 1:3 (MODSEQ)")
ms = [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", r)]
check(len(ms) == 3 and ms[2] > ms[0], r)
high = max(ms)
for first in ["FETCH 1 (MODSEQ)", "FETCH 1:* (FLAGS) (CHANGEDSINCE 1)", "SEARCH MODSEQ 1",
              "STORE 1 (UNCHANGEDSINCE %d) +FLAGS (\\Seen)" % (high + 100)]:
    d = C().login()
    d.ok("SELECT INBOX")
    r = d.ok(first)
    check(re.search(rb"t3 OK \[HIGHESTMODSEQ \d+\]", r), (first, r))
    r = d.ok("FETCH 1 (MODSEQ)")
    check(b"HIGHESTMODSEQ" not in r, (first, r))
    d.ok("LOGOUT")
# the STORE above changed message 1: its mod-sequence is now the highest
e = C().login()
e.ok("SELECT INBOX")
ms = [int(x) for x in re.findall(rb"MODSEQ \((\d+)\)", e.ok("FETCH 1:3 (MODSEQ)"))]
check(len(ms) == 3 and ms[0] > ms[2] > ms[1], ms)
d = C().login()
d.ok("SELECT INBOX")
r = d.ok("SEARCH RETURN (MIN) MODSEQ 1")
check(b"MIN 1 MODSEQ %d\r\n" % ms[0] in r, r)
check(re.search(rb"t3 OK \[HIGHESTMODSEQ \d+\]", r), r)
r = d.ok("SEARCH RETURN (MAX) MODSEQ 1")
check(b"MAX 3 MODSEQ %d\r\n" % ms[2] in r, r)
r = d.ok("SEARCH RETURN (MIN) MODSEQ %d" % (ms[1] + 1))
check(b"MIN 1 MODSEQ %d\r\n" % ms[0] in r, r)
r = d.ok("SEARCH RETURN (MAX) MODSEQ 1 NOT 3")
check(b"MAX 2 MODSEQ %d\r\n" % ms[1] in r, r)
# ALL/COUNT: the highest of all the matches
r = d.ok("SEARCH RETURN (COUNT) MODSEQ 1")
check(b"COUNT 3 MODSEQ %d\r\n" % ms[0] in r, r)
"#,
    );
}

/// RFC 2971 §3.3: up to 30 field/value pairs, fields up to 30 octets, values up to 1024
/// octets. A maximal valid ID before login is answered; one past those limits is BAD and the
/// connection stays; a command far beyond any valid ID still closes it.
#[test]
fn id_rfc2971_limits_before_login() {
    let pm = install();
    py(
        &pm,
        r#"
def idcmd(pairs, vlen, flen=8, quoted=True):
    # values of quote characters: each is two octets on the wire when quoted
    parts = ["ID ("]
    for i in range(pairs):
        f = ("f%d" % i).ljust(flen, "x")
        v = (str(i) + '"' * vlen)[:vlen]
        parts.append('%s"%s" ' % (" " if i else "", f))
        parts.append('"%s"' % v.replace('"', '\\"') if quoted else ("lit", v.encode()))
    parts.append(")")
    return parts
c = C()
r = c.ok(*idcmd(30, 1024, flen=30))
check(r.startswith(b"* ID ("), r)
r = c.ok(*idcmd(30, 1024, flen=30, quoted=False))
r = c.cmd(*idcmd(31, 10))
check(re.search(rb"t3 BAD ", r), r)
r = c.cmd(*idcmd(2, 1025))
check(re.search(rb"t4 (BAD|NO) ", r), r)
r = c.cmd(*idcmd(2, 10, flen=31))
check(re.search(rb"t5 (BAD|NO) ", r), r)
c.ok("NOOP")
c.login()
c.ok("LOGOUT")
# Far past any valid ID: the pre-login budget still closes the connection.
d = C()
d.s.sendall(b"x ID (\"a\" {300000}\r\n")
l = d.line()
check(l.startswith(b"* BYE [LIMIT]"), l)
"#,
    );
}

/// RFC 3501 §6.3.1/§6.3.2/§7.3.2: SELECT and EXAMINE report `* n RECENT`; EXAMINE does not
/// take \Recent away from the messages, SELECT claims them for its session only (a second
/// session sees 0); an IMAP4rev2 session gets no RECENT response.
#[test]
fn recent_on_examine_and_select() {
    let pm = install();
    py(
        &pm,
        r#"
c = C().login()
for i in range(2):
    c.ok("APPEND INBOX ", ("lit", b"Subject: r%d\r\n\r\nbody\r\n" % i))
r = c.ok("EXAMINE INBOX")
check(b"* 2 EXISTS\r\n" in r and b"* 2 RECENT\r\n" in r, r)
r = c.ok("FETCH 1:2 (FLAGS)")
check(r.count(b"\\Recent") == 2, r)
r = c.ok("EXAMINE INBOX")
check(b"* 2 RECENT\r\n" in r, r)
v2 = C().login()
v2.ok("ENABLE IMAP4rev2")
r = v2.ok("EXAMINE INBOX")
check(b"RECENT" not in r, r)
r = v2.ok("SELECT INBOX")
check(b"RECENT" not in r, r)
r = c.ok("SELECT INBOX")
check(b"* 2 RECENT\r\n" in r, r)
d = C().login()
r = d.ok("EXAMINE INBOX")
check(b"* 0 RECENT\r\n" in r, r)
r = d.ok("SELECT INBOX")
check(b"* 0 RECENT\r\n" in r, r)
r = c.ok("FETCH 1:2 (FLAGS)")
check(r.count(b"\\Recent") == 2, r)
"#,
    );
}
