//! imapd's fast paths and limits, seen from a client (issue 13 §3 and hardening): SELECT of
//! the mailbox already selected (its index is reused) still sends every untagged response
//! with the mailbox's current state and \Recent as a new selection has it; APPEND's quota
//! check follows what lmtp-deliver recorded in `maildirsize`; the subscription list is capped
//! with `NO [LIMIT]`; RENAME INBOX carries INBOX's METADATA entries to the new mailbox.
//! Driven by Python's imaplib and smtplib's LMTP client on lmtp-deliver's socket.

use postern_e2e::Postern;

const USER: &str = "sam@example.org";
const PASS: &str = "speed paths phrase 4";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

/// `login()`, `deliver(subject, size)` over LMTP (returns the reply code), `check`,
/// `resp(M, name)` (untagged responses of the last command), `tagged_ok(M, typ)`.
const PRELUDE: &str = r#"
import imaplib, smtplib, sys, time
PORT, LMTP, MAILDIR, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def login():
    M = imaplib.IMAP4("127.0.0.1", PORT); M.login(USER, PASS); return M
def deliver(subject, size=100):
    body = ("x" * 70 + "\r\n") * (size // 72 + 1)
    msg = "From: a@example.net\r\nTo: %s\r\nSubject: %s\r\n\r\n%s" % (USER, subject, body)
    c = smtplib.LMTP(LMTP)
    try:
        c.sendmail("a@example.net", [USER], msg)
        return 250
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]
    except smtplib.SMTPDataError as e:
        return e.smtp_code
    finally:
        try: c.quit()
        except Exception: pass
def resp(M, name):
    return [x for x in M.untagged_responses.get(name, []) if x is not None]
def select(M, box="INBOX", readonly=False):
    M.untagged_responses.clear()
    typ, d = M.select(box, readonly=readonly)
    check(typ == "OK", (box, typ, d))
    r = {k: list(v) for k, v in M.untagged_responses.items()}
    return r
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    let lmtp = pm.socket("lmtp");
    let maildir = pm.dir().join("mail/example.org/sam/Maildir");
    pm.python_ok(
        "imapd",
        &script,
        &[
            &port,
            &lmtp.to_string_lossy(),
            &maildir.to_string_lossy(),
            USER,
            PASS,
        ],
    )
}

/// SELECT/EXAMINE of the mailbox already selected answers as a new selection does: FLAGS,
/// PERMANENTFLAGS (none for EXAMINE), EXISTS, RECENT (what no session claimed yet; claimed by
/// SELECT only), UNSEEN, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, READ-WRITE/READ-ONLY — with
/// deliveries and other sessions' changes made in between, and the same answers as a
/// session that selects it for the first time.
#[test]
fn select_again_sends_the_current_state() {
    let pm = install();
    py(
        &pm,
        r#"
for i in range(2): check(deliver("m%d" % i) == 250, "delivery")
M = login()
r = select(M)
check(r["EXISTS"] == [b"2"] and r["RECENT"] == [b"2"], r)
validity = r["UIDVALIDITY"]
check(r["UIDNEXT"] == [b"3"], r)
check(M.store("1", "+FLAGS", "(\\Seen $Work)")[0] == "OK", "store")
O = login(); select(O)
check(O.store("2", "+FLAGS", "(\\Flagged)")[0] == "OK", "other store")
check(deliver("m2") == 250, "delivery")
# SELECT again: the delivery and the other session's flag are there; only the new message
# is \Recent (the first SELECT claimed the others; the other session ran no command since
# the delivery, so the message is still unclaimed).
r = select(M)
check(r["EXISTS"] == [b"3"] and r["RECENT"] == [b"1"], r)
check(r["UIDVALIDITY"] == validity and r["UIDNEXT"] == [b"4"], r)
check(r["UNSEEN"] == [b"2"], r)
check(b"$Work" in r["FLAGS"][0], r)
check(any(b"PERMANENTFLAGS" in x for x in r.get("OK", [])), r)
check(r["READ-WRITE"] == [b""], r)
check(any(b"HIGHESTMODSEQ" in x for x in r.get("OK", [])), r)
typ, d = M.fetch("1:3", "(FLAGS)")
check(b"\\Flagged" in d[1] and b"\\Seen" in d[0] and b"\\Recent" in d[2], d)
# EXAMINE of the same mailbox: read-only, nothing left unclaimed.
r = select(M, readonly=True)
check(r["EXISTS"] == [b"3"] and r["RECENT"] == [b"0"], r)
check(r["READ-ONLY"] == [b""], r)
check(not any(b"PERMANENTFLAGS (\\" in x for x in r.get("OK", [])), r)
# A delivery: EXAMINE reports it \Recent without claiming it, SELECT then claims it.
check(deliver("m3") == 250, "delivery")
r = select(M, readonly=True)
check(r["EXISTS"] == [b"4"] and r["RECENT"] == [b"1"], r)
r = select(M)
check(r["EXISTS"] == [b"4"] and r["RECENT"] == [b"1"], r)
r = select(M)
check(r["EXISTS"] == [b"4"] and r["RECENT"] == [b"0"], r)
# An expunge by the other session: gone at the next SELECT, sequence numbers renumbered.
check(O.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK" and O.expunge()[0] == "OK", "expunge")
r = select(M)
check(r["EXISTS"] == [b"3"], r)
typ, d = M.fetch("1", "(UID)")
check(b"UID 2" in d[0], d)
# A first selection in a new session agrees.
N = login(); r2 = select(N)
check(r2["EXISTS"] == r["EXISTS"] and r2["UIDNEXT"] == r["UIDNEXT"], (r, r2))
check(r2["UNSEEN"] == r["UNSEEN"] and r2["UIDVALIDITY"] == r["UIDVALIDITY"], (r, r2))
for c in (M, O, N): c.logout()
"#,
    );
}

/// APPEND's quota check and lmtp-deliver's share `maildirsize`: once deliveries filled the
/// quota (lmtp-deliver refused the next one), APPEND is refused with `[OVERQUOTA]`; an
/// expunge frees room for it; a delivery that takes the room again makes it refused again.
#[test]
fn append_over_quota_after_deliveries_is_refused() {
    let pm = install();
    pm.mailctl_ok(&["user", "quota", USER, "10K"]);
    py(
        &pm,
        r#"
codes = [deliver("fill %d" % i, 3000) for i in range(5)]
check(codes[:3] == [250, 250, 250] and 552 in codes[3:], codes)
n = codes.count(250)
M = login(); select(M)
small = b"From: me@example.org\r\nSubject: draft\r\n\r\n" + b"y" * 1500 + b"\r\n"
# The file is left to age past the cache's time stamp margin between steps, so the
# remembered usage is what the next check starts from.
time.sleep(0.1)
typ, d = M.append("INBOX", None, None, small)
check(typ == "NO" and b"[OVERQUOTA]" in d[0], (typ, d))
check(M.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK" and M.expunge()[0] == "OK", "expunge")
time.sleep(0.1)
typ, d = M.append("INBOX", None, None, small)
check(typ == "OK", (typ, d))
time.sleep(0.1)
check(deliver("refill", 1000) == 250, "a delivery into the freed room")
time.sleep(0.1)
typ, d = M.append("INBOX", None, None, small)
check(typ == "NO" and b"[OVERQUOTA]" in d[0], (typ, d))
M.logout()
"#,
    );
}

/// The subscription list is capped at 10,000 names: one more is `NO [LIMIT]`, names already
/// there and UNSUBSCRIBE still work, and a freed place can be taken again.
#[test]
fn subscriptions_beyond_the_cap_are_refused_with_limit() {
    let pm = install();
    py(
        &pm,
        r#"
import os
M = login()
path = os.path.join(MAILDIR, "subscriptions")
check(os.path.isdir(MAILDIR), MAILDIR)
with open(path, "w") as f:
    f.write("V\t2\n\n" + "".join("f%d\n" % i for i in range(10000)))
typ, d = M.subscribe("one-more")
check(typ == "NO" and b"[LIMIT]" in d[0], (typ, d))
check(M.subscribe("f7")[0] == "OK", "already subscribed")
check(M.unsubscribe("f7")[0] == "OK", "unsubscribe")
check(M.subscribe("one-more")[0] == "OK", "room again")
typ, d = M.subscribe("and-another")
check(typ == "NO" and b"[LIMIT]" in d[0], (typ, d))
typ, d = M.lsub('""', "*")
check(typ == "OK" and len([x for x in d if x]) == 10000, len(d))
M.logout()
"#,
    );
}

/// RENAME INBOX makes a new mailbox of INBOX's messages and leaves an empty INBOX; INBOX's
/// METADATA entries go with the messages (the regression: they stayed on the empty INBOX).
#[test]
fn rename_inbox_carries_its_metadata() {
    let pm = install();
    py(
        &pm,
        r#"
check(deliver("keep me") == 250, "delivery")
imaplib.Commands["SETMETADATA"] = imaplib.Commands["GETMETADATA"] = ("AUTH", "SELECTED")
M = login()
typ, d = M._simple_command("SETMETADATA", "INBOX", '(/private/comment "my inbox")')
check(typ == "OK", (typ, d))
check(M.rename("INBOX", "Old")[0] == "OK", "rename")
def comment(box):
    M.untagged_responses.pop("METADATA", None)
    typ, d = M._simple_command("GETMETADATA", box, "/private/comment")
    check(typ == "OK", (typ, d))
    return b" ".join(x if isinstance(x, bytes) else b"".join(x) for x in M.untagged_responses.get("METADATA", []) if x)
got = comment("Old")
check(b"my inbox" in got, got)
got = comment("INBOX")
check(b"my inbox" not in got and b"NIL" in got, got)
typ, d = M.select("Old")
check(typ == "OK" and d == [b"1"], (typ, d))
typ, d = M.select("INBOX")
check(typ == "OK" and d == [b"0"], (typ, d))
M.logout()
"#,
    );
}
