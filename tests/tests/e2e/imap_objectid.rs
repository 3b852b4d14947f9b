//! OBJECTID (RFC 8474), SAVEDATE (RFC 8514) and PREVIEW (RFC 8970) against the real imapd,
//! with Python's imaplib (issue 13 §2): MAILBOXID on SELECT/CREATE/STATUS/LIST-STATUS and
//! across RENAME, DELETE+CREATE and RENAME INBOX; EMAILID across MOVE and COPY and SEARCH
//! EMAILID; THREADID of a reply; SAVEDATE after COPY against INTERNALDATE and the SAVED*
//! keys; PREVIEW of a base64 text part and of an HTML-only message; hostile input (a 20 MiB
//! one-line body, `FETCH 1:* PREVIEW` over many messages, bad syntax).

use std::path::PathBuf;

use postern_e2e::Postern;

const USER: &str = "oid@example.org";
const PASS: &str = "object ids 42";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

fn maildir(pm: &Postern) -> PathBuf {
    pm.dir().join("mail/example.org/oid/Maildir")
}

/// `C` is a logged-in imaplib client; `raw(C, cmd)` sends one command and returns
/// `(typ, untagged_lines_as_bytes)`, keeping literals inline.
const PRELUDE: &str = r#"
import imaplib, os, re, sys, time
PORT, USER, PASS, MAILDIR = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
imaplib._MAXLINE = 100 << 20
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def login():
    c = imaplib.IMAP4("127.0.0.1", PORT)
    c.login(USER, PASS)
    return c
def raw(c, cmd):
    tag = c._new_tag()
    c.send(tag + b" " + cmd + b"\r\n")
    got = b""
    while True:
        l = c._get_line()
        while l.endswith(b"}") and b"{" in l:
            n = int(l[l.rindex(b"{") + 1:-1].rstrip(b"+"))
            l = l + b"\r\n" + c.read(n) + c._get_line()
        if l.startswith(tag + b" "):
            return l[len(tag) + 1:], got
        got += l + b"\r\n"
def ok(r):
    check(r[0].startswith(b"OK"), r); return r[1]
def bad(r):
    check(r[0].startswith(b"BAD"), r); return r
def one(pat, data):
    m = re.search(pat, data)
    check(m, (pat, data))
    return m.group(1)
C = login()
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    let md = maildir(pm);
    pm.python_ok("imapd", &script, &[&port, USER, PASS, md.to_str().unwrap()])
}

/// RFC 8474 §4: MAILBOXID in SELECT/EXAMINE (untagged OK), CREATE (tagged OK), STATUS and
/// LIST … RETURN (STATUS (MAILBOXID)); the same after RENAME (§4.2: "the server MUST NOT
/// change the MAILBOXID"), a new one for a name deleted and created again, and RENAME INBOX
/// leaves INBOX its id while the new mailbox gets a new one.
#[test]
fn mailboxid_across_rename_delete_and_rename_inbox() {
    let pm = install();
    py(
        &pm,
        r#"
caps = ok(raw(C, b"CAPABILITY"))
for cap in (b" OBJECTID", b" SAVEDATE", b" PREVIEW"):
    check(cap in caps, caps)
typ, data = C.create("Projects")
check(typ == "OK", data)
mid = one(rb"\[MAILBOXID \(([A-Za-z0-9_-]{1,255})\)\]", data[0])
got = ok(raw(C, b"SELECT Projects"))
check(one(rb"\* OK \[MAILBOXID \(([^)]*)\)\]", got) == mid, got)
got = ok(raw(C, b"EXAMINE Projects"))
check(one(rb"\* OK \[MAILBOXID \(([^)]*)\)\]", got) == mid, got)
ok(raw(C, b"UNSELECT"))
got = ok(raw(C, b"STATUS Projects (MESSAGES MAILBOXID)"))
check(got == b'* STATUS "Projects" (' + b"MESSAGES 0 MAILBOXID (" + mid + b"))\r\n", got)
got = ok(raw(C, b"STATUS Projects (MAILBOXID)"))
check(got == b'* STATUS "Projects" (' + b"MAILBOXID (" + mid + b"))\r\n", got)
got = ok(raw(C, b'LIST "" "Proj*" RETURN (STATUS (MAILBOXID UIDNEXT))'))
check(b'* STATUS "Projects" (' + b"UIDNEXT 1 MAILBOXID (" + mid + b"))" in got, got)
# A mailbox literally named MAILBOXID is a name, not an item.
C.create("MAILBOXID")
got = ok(raw(C, b"STATUS MAILBOXID (MESSAGES)"))
check(got == b'* STATUS "MAILBOXID" (MESSAGES 0)\r\n', got)
# RENAME keeps it.
check(C.rename("Projects", "Archive/Projects")[0] == "OK", "rename")
got = ok(raw(C, b'STATUS "Archive/Projects" (MAILBOXID)'))
check(b"(MAILBOXID (" + mid + b"))" in got, got)
# DELETE and CREATE again: a new mailbox, a new id.
check(C.delete("Archive/Projects")[0] == "OK", "delete")
typ, data = C.create("Archive/Projects")
mid2 = one(rb"\[MAILBOXID \(([^)]*)\)\]", data[0])
check(mid2 != mid, (mid, mid2))
# RENAME INBOX: INBOX stays (with its id), the new mailbox is new.
inbox = one(rb"MAILBOXID \(([^)]*)\)", ok(raw(C, b"STATUS INBOX (MAILBOXID)")))
C.append("INBOX", None, None, b"Subject: keep\r\n\r\nbody\r\n")
check(C.rename("INBOX", "Old")[0] == "OK", "rename inbox")
check(one(rb"MAILBOXID \(([^)]*)\)", ok(raw(C, b"STATUS INBOX (MAILBOXID)"))) == inbox, "inbox id")
old = one(rb"MAILBOXID \(([^)]*)\)", ok(raw(C, b"STATUS Old (MAILBOXID MESSAGES)")))
check(old not in (inbox, mid, mid2), old)
print("ok")
"#,
    );
}

/// RFC 8474 §5.1: EMAILID stays across MOVE (and we keep it across COPY); SEARCH EMAILID
/// finds the message; THREADID is shared by a reply (References) and its parent and differs
/// for an unrelated message; the ids survive an imapd restart.
#[test]
fn emailid_across_move_copy_and_search() {
    let mut pm = install();
    py(
        &pm,
        r#"
C.create("B")
C.append("INBOX", None, None, b"Message-ID: <root@x>\r\nSubject: a\r\n\r\nfirst\r\n")
C.append("INBOX", None, None, b"Message-ID: <reply@x>\r\nIn-Reply-To: <root@x>\r\nReferences: <root@x>\r\nSubject: Re: a\r\n\r\nsecond\r\n")
C.append("INBOX", None, None, b"Message-ID: <other@x>\r\nSubject: b\r\n\r\nthird\r\n")
C.select("INBOX")
got = ok(raw(C, b"UID FETCH 1:* (EMAILID THREADID)"))
ids = re.findall(rb"UID (\d+) EMAILID \((M[0-9a-f]{24})\) THREADID \((T[0-9a-f]{24})\)", got)
check(len(ids) == 3, got)
e1, e2, e3 = ids[0][1], ids[1][1], ids[2][1]
check(len({e1, e2, e3}) == 3, ids)
check(ids[0][2] == ids[1][2] and ids[2][2] != ids[0][2], ids)
# SEARCH EMAILID / THREADID, alone, with other keys, in ESEARCH.
check(ok(raw(C, b"UID SEARCH EMAILID " + e2)) == b"* SEARCH 2\r\n", "search emailid")
check(ok(raw(C, b"SEARCH THREADID " + ids[0][2])) == b"* SEARCH 1 2\r\n", "search threadid")
check(ok(raw(C, b"SEARCH OR EMAILID " + e1 + b" EMAILID " + e3)) == b"* SEARCH 1 3\r\n", "or")
check(ok(raw(C, b"SEARCH EMAILID Mnothere")) == b"* SEARCH\r\n", "none")
check(ok(raw(C, b"SEARCH SUBJECT EMAILID")) == b"* SEARCH\r\n", "a word, not a key")
got = ok(raw(C, b"SEARCH RETURN (COUNT) THREADID " + ids[0][2]))
check(b"COUNT 2" in got, got)
bad(raw(C, b"SEARCH EMAILID bad.id"))
bad(raw(C, b"SEARCH EMAILID"))
bad(raw(C, b"FETCH 1 (PREVIEW (SLOW))"))
# MOVE keeps the EMAILID; COPY too.
ok(raw(C, b"UID MOVE 2 B"))
ok(raw(C, b"UID COPY 3 B"))
C.select("B")
got = ok(raw(C, b"FETCH 1:* (EMAILID THREADID)"))
check(got.count(b"EMAILID (" + e2 + b")") == 1 and got.count(b"EMAILID (" + e3 + b")") == 1, got)
check(b"THREADID (" + ids[0][2] + b")" in got, got)
check(ok(raw(C, b"SEARCH EMAILID " + e3)) == b"* SEARCH 2\r\n", "search in B")
# Moved back again: still the same.
ok(raw(C, b"MOVE 1 INBOX"))
C.select("INBOX")
got = ok(raw(C, b"FETCH 1:* EMAILID"))
check(got.count(b"(" + e2 + b")") == 1, got)
open(os.path.join(MAILDIR, "ids"), "wb").write(e1 + b" " + e2)
print("ok")
"#,
    );
    pm.restart_daemon("imapd");
    py(
        &pm,
        r#"
e1, e2 = open(os.path.join(MAILDIR, "ids"), "rb").read().split()
C.select("INBOX")
got = ok(raw(C, b"FETCH 1:* EMAILID"))
check(b"(" + e1 + b")" in got and b"(" + e2 + b")" in got, got)
print("ok")
"#,
    );
}

/// RFC 8514: SAVEDATE is when the message was saved into this mailbox — not INTERNALDATE
/// (an APPEND date), and a COPY's own; the SAVED* keys compare its date; SAVEDATESUPPORTED
/// matches every message.
#[test]
fn savedate_after_copy_differs_from_internaldate() {
    let pm = install();
    py(
        &pm,
        r#"
C.select("INBOX")
C.create("Copies")
# A message delivered in 2017 (by its file name, as every Maildir writer names a new file).
cur = os.path.join(MAILDIR, "cur")
with open(os.path.join(cur, "1500000000.M1P1.deliverer,S=22:2,"), "wb") as f:
    f.write(b"Subject: old\n\nold body\n")
os.utime(os.path.join(cur, "1500000000.M1P1.deliverer,S=22:2,"), (1400000000, 1400000000))
ok(raw(C, b"NOOP"))
# APPEND with a date in 2020.
C.append("INBOX", None, imaplib.Time2Internaldate(1580000000), b"Subject: appended\r\n\r\nbody\r\n")
ok(raw(C, b"NOOP"))
got = ok(raw(C, b"FETCH 1:2 (INTERNALDATE SAVEDATE)"))
check(b'* 1 FETCH (INTERNALDATE "13-May-2014 16:53:20 +0000" SAVEDATE "14-Jul-2017 02:40:00 +0000")' in got, got)
year = time.strftime("%Y", time.gmtime()).encode()
saved2 = one(rb'\* 2 FETCH \(INTERNALDATE "26-Jan-2020 00:53:20 \+0000" SAVEDATE "([^"]+)"\)', got)
check(year in saved2, saved2)
# SAVED* keys (dates compared in UTC, like BEFORE/ON/SINCE).
check(ok(raw(C, b"SEARCH SAVEDBEFORE 1-Jan-2018")) == b"* SEARCH 1\r\n", "before")
check(ok(raw(C, b'SEARCH SAVEDON "14-Jul-2017"')) == b"* SEARCH 1\r\n", "on")
check(ok(raw(C, b"SEARCH SAVEDSINCE 1-Jan-2018")) == b"* SEARCH 2\r\n", "since")
check(ok(raw(C, b"SEARCH SAVEDATESUPPORTED")) == b"* SEARCH 1 2\r\n", "supported")
check(ok(raw(C, b"SEARCH NOT SAVEDATESUPPORTED")) == b"* SEARCH\r\n", "not supported")
check(ok(raw(C, b"SEARCH SINCE 1-Jan-2018 SAVEDBEFORE 1-Jan-2018")) == b"* SEARCH\r\n", "and")
bad(raw(C, b"SEARCH SAVEDON 31-Feb-2017"))
# COPY: the copy's SAVEDATE is the copy's time, its INTERNALDATE the original's.
ok(raw(C, b"COPY 1 Copies"))
C.select("Copies")
got = ok(raw(C, b"FETCH 1 (INTERNALDATE SAVEDATE)"))
check(b'INTERNALDATE "13-May-2014 16:53:20 +0000"' in got, got)
check(year in one(rb'SAVEDATE "([^"]+)"', got), got)
check(ok(raw(C, b"SEARCH SAVEDSINCE 1-Jan-2018")) == b"* SEARCH 1\r\n", "copy since")
# A flag change renames the file: the save date stays.
before = one(rb'SAVEDATE "([^"]+)"', got)
ok(raw(C, b"STORE 1 +FLAGS (\\Flagged)"))
check(one(rb'SAVEDATE "([^"]+)"', ok(raw(C, b"FETCH 1 SAVEDATE"))) == before, "after STORE")
print("ok")
"#,
    );
}

/// RFC 8970: PREVIEW of a base64 text/plain part, of an HTML-only message, of a message
/// without text (empty string), never over 256 characters, LAZY; a 20 MiB one-line body
/// and `FETCH 1:* PREVIEW` over many messages stay cheap.
#[test]
fn preview_base64_html_and_hostile_sizes() {
    let pm = install();
    let out = py(
        &pm,
        r#"
import base64
C.select("INBOX")
text = "Grüße aus dem Süden, " * 30
b64 = base64.encodebytes(text.encode()).replace(b"\n", b"\r\n")
C.append("INBOX", None, None, b"Subject: b64\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64 + b"--zz\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--zz--\r\n")
C.append("INBOX", None, None, b"Subject: html\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html><head><title>t</title><style>p {x:y}</style></head><body><p>Hello <b>there</b>,</p>\r\n<p>see   you</p></body></html>\r\n")
C.append("INBOX", None, None, b"Subject: none\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n")
ok(raw(C, b"NOOP"))
got = ok(raw(C, b"FETCH 1 PREVIEW"))
m = re.match(rb"\* 1 FETCH \(PREVIEW \{(\d+)\}\r\n", got)
check(m, got)
p = got[m.end():m.end() + int(m.group(1))].decode("utf-8")
check(len(p) == 256 and p.startswith("Grüße aus dem Süden, Grüße"), p)
got = ok(raw(C, b"FETCH 2 (PREVIEW)"))
check(b"PREVIEW \"" in got and b"Hello there" in got and b"see you" in got and b"<" not in got.split(b"PREVIEW")[1], got)
got = ok(raw(C, b"FETCH 3 (UID PREVIEW)"))
check(got == b'* 3 FETCH (UID 3 PREVIEW "")\r\n', got)
got = ok(raw(C, b"FETCH 2 (PREVIEW (LAZY) FLAGS)"))
check(got.startswith(b"* 2 FETCH (FLAGS (") and b"PREVIEW \"Hello there" in got, got)
# PREVIEW does not set \Seen.
check(b"\\Seen" not in ok(raw(C, b"FETCH 1:3 FLAGS")), "seen")
# A 20 MiB single-line body: answered from a bounded prefix.
big = b"Subject: big\r\n\r\n" + b"y" * (20 << 20) + b"\r\n"
C.append("INBOX", None, None, big)
ok(raw(C, b"NOOP"))
t = time.time()
got = ok(raw(C, b"FETCH 4 PREVIEW"))
dt = time.time() - t
check(got == b'* 4 FETCH (PREVIEW "' + b"y" * 256 + b'")\r\n', got[:200])
check(dt < 2.0, dt)
print("big preview %.3f s" % dt)
# Many messages: FETCH 1:* PREVIEW, then LAZY answers from the cache.
for i in range(300):
    C.append("INBOX", None, None, b"Subject: m%d\r\n\r\nmessage number %d\r\n" % (i, i))
ok(raw(C, b"NOOP"))
t = time.time()
got = ok(raw(C, b"FETCH 1:* PREVIEW"))
dt = time.time() - t
check(got.count(b" FETCH (PREVIEW ") == 304 and b'PREVIEW "message number 299"' in got, len(got))
print("304 previews %.3f s" % dt)
t = time.time()
got = ok(raw(C, b"FETCH 1:* (PREVIEW (LAZY))"))
print("304 lazy cached %.3f s" % (time.time() - t))
check(b"NIL" not in got, got[:300])
# LAZY computes a bounded number of uncached previews per command, NIL for the rest.
for i in range(60):
    C.append("INBOX", None, None, b"Subject: n%d\r\n\r\nlazy %d\r\n" % (i, i))
ok(raw(C, b"NOOP"))
got = ok(raw(C, b"FETCH 305:* (PREVIEW (LAZY))"))
check(got.count(b"PREVIEW NIL") == 10 and got.count(b'PREVIEW "lazy ') == 50, got)
got = ok(raw(C, b"FETCH 305:* PREVIEW"))
check(got.count(b"PREVIEW NIL") == 0 and got.count(b'PREVIEW "lazy ') == 60, got)
# Worst case per message: a 300 KiB base64 attachment before the text, so the whole
# 256 KiB prefix is read and parsed (and the text lies beyond it: the empty string).
C.create("Heavy")
att = base64.encodebytes(os.urandom(225 * 1024)).replace(b"\n", b"\r\n")
heavy = (b"Subject: heavy\r\nContent-Type: multipart/mixed; boundary=hh\r\n\r\n--hh\r\n"
         b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
         + att + b"--hh\r\nContent-Type: text/plain\r\n\r\nlate text\r\n--hh--\r\n")
for i in range(100):
    C.append("Heavy", None, None, heavy)
C.select("Heavy")
t = time.time()
got = ok(raw(C, b"FETCH 1:* PREVIEW"))
dt = time.time() - t
check(got.count(b'PREVIEW ""') == 100, got[:300])
print("100 heavy previews (%d KiB each) %.3f s" % (len(heavy) // 1024, dt))
t = time.time()
ok(raw(C, b"FETCH 1:* BODY.PEEK[]"))
print("100 heavy BODY.PEEK[] for comparison %.3f s" % (time.time() - t))
print("ok")
"#,
    );
    // The timings (debug build, a shared machine): see the report.
    eprintln!("{out}");
}

/// The new items as imapclient (a real client library) reads them: FETCH EMAILID, THREADID,
/// SAVEDATE and PREVIEW parsed per message, STATUS MAILBOXID, SEARCH EMAILID.
#[test]
#[ignore = "needs imapclient (run .ci/run)"]
fn imapclient_reads_the_new_items() {
    let pm = install();
    py(
        &pm,
        r#"
from imapclient import IMAPClient
C.append("INBOX", None, None, b"Message-ID: <r@x>\r\nSubject: s\r\n\r\nBonjour, le monde\r\n")
c = IMAPClient("127.0.0.1", port=PORT, ssl=False)
c.login(USER, PASS)
caps = c.capabilities()
check(b"OBJECTID" in caps and b"SAVEDATE" in caps and b"PREVIEW" in caps, caps)
c.select_folder("INBOX")
r = c.fetch([1], ["EMAILID", "THREADID", "SAVEDATE", "PREVIEW"])[1]
eid = r[b"EMAILID"][0]
check(re.fullmatch(rb"M[0-9a-f]{24}", eid), r)
check(re.fullmatch(rb"T[0-9a-f]{24}", r[b"THREADID"][0]), r)
check(re.fullmatch(rb"\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d:\d\d \+0000", r[b"SAVEDATE"]), r)
check(r[b"PREVIEW"] == b"Bonjour, le monde", r)
check(c.search(["EMAILID", eid.decode()]) == [1], "search")
st = c.folder_status("INBOX", ["MESSAGES", "MAILBOXID"])
check(st[b"MESSAGES"] == 1 and re.fullmatch(rb"F[0-9a-f]{32}", st[b"MAILBOXID"][0]), st)
c.logout()
print("ok")
"#,
    );
}

/// Dovecot reads the same identifiers from the Maildir: its mailbox GUID is our MAILBOXID
/// (after the `F`), and the message GUID it reports for a COPY that imapd made is the
/// source's — the `G` field imapd wrote into the copy's `dovecot-uidlist` record — so
/// Dovecot and imapd agree that the copy is the same email.
#[test]
#[ignore = "needs Debian's dovecot-imapd (run .ci/run)"]
fn dovecot_reads_the_ids_imapd_keeps() {
    use crate::dovecot::doveadm;
    let mut pm = crate::lmtp::lmtp_install(
        Postern::builder()
            .set("authd.userdb.uid", 65534)
            .set("authd.userdb.gid", 65534),
    );
    std::fs::create_dir_all(pm.dir().join("mail")).expect("mail root");
    for n in 1..=2 {
        doveadm(
            &pm,
            &["save", "-u", "bob@example.org"],
            Some(&format!("Subject: dovecot {n}\n\nbody {n}\n")),
        );
    }
    pm.start_daemon("imapd");
    let port = pm.imap_port().to_string();
    let script = r#"
import imaplib, re, sys
C = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
C.login("bob@example.org", "another good passphrase")
typ, data = C.create("Copies")
print("COPIES", re.search(rb"MAILBOXID \((F[0-9a-f]{32})\)", data[0]).group(1).decode())
typ, data = C.select("INBOX")
print("INBOX", C.response("MAILBOXID")[1][0].decode().strip("()"))
typ, data = C.uid("COPY", "1", "Copies")
assert typ == "OK", data
typ, data = C.fetch("1:2", "(UID EMAILID)")
for d in data:
    print("E", d.decode())
C.select("Copies")
typ, data = C.fetch("1", "(UID EMAILID)")
print("C", data[0].decode())
C.logout()
"#;
    let text = pm.python_ok("imapd", script, &[&port]);
    let word = |prefix: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("{prefix} in {text}"))
            .trim()
            .to_owned()
    };
    let email = |line: &str| -> String {
        line.split("EMAILID (")
            .nth(1)
            .and_then(|r| r.split(')').next())
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned()
    };
    let inbox_id = word("INBOX ");
    let copies_id = word("COPIES ");
    let (e1, e2) = {
        let es: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("E "))
            .map(email)
            .collect();
        assert_eq!(es.len(), 2, "{text}");
        (es[0].clone(), es[1].clone())
    };
    assert_ne!(e1, e2, "{text}");
    assert_eq!(email(&word("C ")), e1, "the copy keeps the EMAILID: {text}");
    // Dovecot's view of the same tree.
    let guid_of = |mailbox: &str| -> String {
        let out = doveadm(
            &pm,
            &[
                "mailbox",
                "status",
                "-u",
                "bob@example.org",
                "guid",
                mailbox,
            ],
            None,
        );
        out.split_whitespace()
            .find_map(|w| w.strip_prefix("guid="))
            .unwrap_or_else(|| panic!("guid in {out:?}"))
            .to_owned()
    };
    assert_eq!(format!("F{}", guid_of("INBOX")), inbox_id);
    assert_eq!(format!("F{}", guid_of("Copies")), copies_id);
    let fetch = |mailbox: &str| -> Vec<String> {
        let out = doveadm(
            &pm,
            &[
                "fetch",
                "-u",
                "bob@example.org",
                "guid",
                "mailbox",
                mailbox,
                "all",
            ],
            None,
        );
        out.lines()
            .filter_map(|l| l.strip_prefix("guid: "))
            .map(str::to_owned)
            .collect()
    };
    let inbox = fetch("INBOX");
    let copies = fetch("Copies");
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    assert_eq!(copies, vec![inbox[0].clone()], "{inbox:?} {copies:?}");
}
