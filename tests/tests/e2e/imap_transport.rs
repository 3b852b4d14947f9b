//! imapd's transport changes and IDLE, byte by byte: STARTTLS and COMPRESS drop what a client
//! (or a man in the middle) pipelined behind them, the same session goes on over the new
//! layer, and IDLE answers with its continuation request before the updates it reports.

use postern_e2e::Postern;

const USER: &str = "alice@example.org";
const PASS: &str = "correct horse battery";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "imapd"])
        .start_with_user(USER, PASS)
}

/// Python prelude: a line reader over a (TLS) socket.
const PRELUDE: &str = r#"
import socket, ssl, sys, zlib
HOST = "127.0.0.1"; IMAP = int(sys.argv[1]); USER, PASS = sys.argv[2], sys.argv[3]
LOGIN = b'LOGIN %s "%s"' % (USER.encode(), PASS.encode())
CTX = ssl.create_default_context(); CTX.check_hostname = False; CTX.verify_mode = ssl.CERT_NONE
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
class Lines:
    def __init__(self, sock, de=None):
        self.s = sock; self.buf = b""; self.de = de
    def line(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d: return b""
            self.buf += self.de.decompress(d) if self.de else d
        l, self.buf = self.buf.split(b"\n", 1)
        return l + b"\n"
    def until(self, tag):
        out = []
        while True:
            l = self.line(); check(l, ("closed waiting for", tag, out)); out.append(l)
            if l.startswith(tag + b" "): return out
def connect():
    s = socket.create_connection((HOST, IMAP), timeout=10); r = Lines(s)
    g = r.line(); check(g.startswith(b"* OK [CAPABILITY "), g)
    return s, r
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let imap = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&imap, USER, PASS])
}

/// STARTTLS command injection (CVE-2011-0411): commands sent in the clear behind STARTTLS, in
/// the same packet, are never executed, not even after the handshake; the session goes on
/// over TLS, still not logged in.
#[test]
fn imapd_starttls_drops_pipelined_commands() {
    let pm = install();
    let out = py(
        &pm,
        r#"
s, r = connect()
s.sendall(b"a STARTTLS\r\nb CAPABILITY\r\nc " + LOGIN + b"\r\nd SELECT INBOX\r\n")
l = r.line(); check(l.startswith(b"a OK"), l)
t = CTX.wrap_socket(s, server_hostname="localhost"); r = Lines(t)
t.sendall(b"e CAPABILITY\r\nf SELECT INBOX\r\n")
lines = r.until(b"e") + r.until(b"f")
check(not any(l.startswith((b"b ", b"c ", b"d ")) for l in lines), lines)
caps = [l for l in lines if l.startswith(b"* CAPABILITY ")]
check(len(caps) == 1 and b"STARTTLS" not in caps[0] and b"AUTH=PLAIN" in caps[0], lines)
check(lines[-1].startswith(b"f BAD"), lines)
t.sendall(b"g " + LOGIN + b"\r\nh SELECT INBOX\r\n")
lines = r.until(b"g") + r.until(b"h")
check(lines[-1].startswith(b"h OK [READ-WRITE]"), lines)
t.sendall(b"i STARTTLS\r\n")
l = r.until(b"i")[-1]; check(l.startswith(b"i BAD"), l)
print("STARTTLS OK")
"#,
    );
    assert!(out.contains("STARTTLS OK"), "{out}");
}

/// COMPRESS=DEFLATE: what the client sent uncompressed behind COMPRESS is dropped; the session
/// goes on compressed.
#[test]
fn imapd_compress_drops_pipelined_commands() {
    let pm = install();
    let out = py(
        &pm,
        r#"
s, r = connect()
s.sendall(b"a " + LOGIN + b"\r\n"); r.until(b"a")
s.sendall(b"b COMPRESS DEFLATE\r\nx NOOP\r\ny LOGOUT\r\n")
l = r.line(); check(l.startswith(b"b OK"), l)
check(r.buf == b"", r.buf)
co = zlib.compressobj(wbits=-15); r = Lines(s, zlib.decompressobj(wbits=-15))
s.sendall(co.compress(b"c SELECT INBOX\r\nd NOOP\r\n") + co.flush(zlib.Z_SYNC_FLUSH))
lines = r.until(b"c") + r.until(b"d")
check(not any(l.startswith((b"x ", b"y ", b"* BYE")) for l in lines), lines)
check(lines[-1].startswith(b"d OK"), lines)
print("COMPRESS OK")
"#,
    );
    assert!(out.contains("COMPRESS OK"), "{out}");
}

/// IDLE: the continuation request comes first, then the updates that were already pending;
/// DONE pipelined right behind IDLE ends it.
#[test]
fn imapd_idle_continuation_before_pending_updates() {
    let pm = install();
    let out = py(
        &pm,
        r#"
a, ra = connect(); b, rb = connect()
for s, r in ((a, ra), (b, rb)):
    s.sendall(b"l " + LOGIN + b"\r\ns SELECT INBOX\r\n"); r.until(b"l"); r.until(b"s")
msg = b"From: z@example.org\r\nSubject: idle\r\n\r\nwake up\r\n"
a.sendall(b"p APPEND INBOX {%d+}\r\n%s\r\n" % (len(msg), msg)); ra.until(b"p")
b.sendall(b"i1 IDLE\r\n")
l = rb.line(); check(l.startswith(b"+ "), l)
l = rb.line(); check(l == b"* 1 EXISTS\r\n", l)
b.sendall(b"DONE\r\n")
l = rb.until(b"i1")[-1]; check(l.startswith(b"i1 OK"), l)
b.sendall(b"i2 IDLE\r\nDONE\r\nn NOOP\r\n")
lines = rb.until(b"i2") + rb.until(b"n")
check(lines[0].startswith(b"+ ") and lines[1].startswith(b"i2 OK"), lines)
check(lines[2].startswith(b"n OK"), lines)
print("IDLE OK")
"#,
    );
    assert!(out.contains("IDLE OK"), "{out}");
}
