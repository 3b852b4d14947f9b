//! imapd conformance (issue 13 §1), LIST and LSUB from the RFC text: LIST-EXTENDED
//! (RFC 5258) selection and return options, RECURSIVEMATCH and CHILDINFO, `\NonExistent`
//! subscriptions, LIST-STATUS (RFC 5819), SPECIAL-USE (RFC 6154), and LSUB's `\Noselect`
//! (RFC 3501 §6.3.9). Driven by Python's imaplib against the real imapd.

use postern_e2e::Postern;

const USER: &str = "lena@example.org";
const PASS: &str = "conformance list phrase 7";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

/// `run(M, "LIST", args…)` sends one command as written (imaplib adds no quoting) and
/// returns `(typ, {"LIST": [lines], "STATUS": [lines]})`, or `("BAD", text)` for a tagged BAD.
/// `rows(r)` maps each LIST/LSUB line's mailbox name to `(attrs, extended-data)`.
/// `fruit(M)` builds RFC 5258 §5's hierarchy: Fruit/Peach subscribed, then deleted.
const PRELUDE: &str = r#"
import imaplib, re, sys
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def login():
    M = imaplib.IMAP4("127.0.0.1", PORT); M.login(USER, PASS); return M
def run(M, name, *args):
    M.untagged_responses.clear()
    try:
        typ, dat = M._simple_command(name, *args)
    except M.error as e:
        return "BAD", str(e)
    got = {}
    for k, v in M.untagged_responses.items():
        got[k] = [x.decode() if isinstance(x, bytes) else x for x in v]
    M.untagged_responses.clear()
    return typ, got
LINE = re.compile(r'^\(([^)]*)\) (?:"/"|NIL) ("(?:[^"\\]|\\.)*"|[^ ]+)(?: (.*))?$')
def rows(r, kind="LIST"):
    typ, got = r
    check(typ == "OK", r)
    out = {}
    for l in got.get(kind, []):
        m = LINE.match(l)
        check(m, l)
        name = m.group(2)
        if name.startswith('"'): name = name[1:-1]
        check(name not in out, ("listed twice", name, r))
        out[name] = (m.group(1).split(), m.group(3) or "")
    return out
def fruit(M):
    for n in ["Fruit", "Fruit/Apple", "Fruit/Banana", "Fruit/Peach", "Tofu", "Vegetable",
              "Vegetable/Broccoli", "Vegetable/Corn"]:
        check(M.create(n)[0] == "OK", n)
    for n in ["Fruit/Banana", "Fruit/Peach", "Vegetable", "Vegetable/Broccoli"]:
        check(M.subscribe(n)[0] == "OK", n)
    check(M.delete("Fruit/Peach")[0] == "OK", "delete")
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, USER, PASS])
}

/// RFC 5258 §3: "The RECURSIVEMATCH option MUST NOT occur as the only selection option (or
/// only with REMOTE) … The server MUST return BAD tagged response in such case." Unknown
/// selection and return options are BAD too; REMOTE alone is fine.
#[test]
fn list_extended_recursivematch_alone_is_bad() {
    let pm = install();
    py(
        &pm,
        r#"
M = login()
for sel in ["(RECURSIVEMATCH)", "(RECURSIVEMATCH REMOTE)", "(REMOTE RECURSIVEMATCH)", "(BOGUS)"]:
    r = run(M, "LIST", sel, '""', '"*"')
    check(r[0] == "BAD", (sel, r))
r = run(M, "LIST", '""', '"*"', "RETURN", "(BOGUS)")
check(r[0] == "BAD", r)
check("INBOX" in rows(run(M, "LIST", "(REMOTE)", '""', "%")), "remote")
r = rows(run(M, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '"*"'))
check("INBOX" in r, r)
check(M.noop()[0] == "OK", "session still usable")
"#,
    );
}

/// RFC 5258 §3 (SUBSCRIBED): subscribed names are listed "even if the mailbox does not
/// exist", with `\NonExistent` (which implies `\Noselect`, so that one is not added) and
/// `\Subscribed`; RFC 3501 §6.3.6: the server "MUST NOT unilaterally remove an existing
/// mailbox name from the subscription list even if a mailbox by that name no longer
/// exists", so DELETE leaves the subscription (it used to drop it: Fruit/Peach missing).
#[test]
fn list_subscribed_shows_deleted_mailbox_nonexistent() {
    let pm = install();
    py(
        &pm,
        r#"
M = login()
fruit(M)
check(M.subscribe("Never/Created")[0] == "OK", "subscribe")
r = rows(run(M, "LIST", "(SUBSCRIBED)", '""', '"*"'))
check(set(r["Fruit/Peach"][0]) >= {"\\NonExistent", "\\Subscribed"}, r)
check("\\Noselect" not in r["Fruit/Peach"][0], r)
check(set(r["Never/Created"][0]) >= {"\\NonExistent", "\\Subscribed"}, r)
for n in ["Fruit/Banana", "Vegetable", "Vegetable/Broccoli", "INBOX"]:
    check("\\Subscribed" in r[n][0] and "\\NonExistent" not in r[n][0], (n, r))
for n in ["Fruit", "Fruit/Apple", "Tofu", "Vegetable/Corn", "Never"]:
    check(n not in r, (n, r))
# LSUB lists it too (RFC 3501 §6.3.9 lists subscribed names, existing or not)
r = rows(run(M, "LSUB", '""', '"Fruit/*"'), "LSUB")
check(set(r) == {"Fruit/Banana", "Fruit/Peach"}, r)
# a plain LIST does not: the mailbox is gone
r = rows(run(M, "LIST", '""', '"*"', "RETURN", "(SUBSCRIBED)"))
check("Fruit/Peach" not in r and "\\Subscribed" in r["Fruit/Banana"][0], r)
check("\\Subscribed" not in r["Fruit/Apple"][0], r)
# UNSUBSCRIBE removes it
check(M.unsubscribe("Fruit/Peach")[0] == "OK", "unsubscribe")
r = rows(run(M, "LIST", "(SUBSCRIBED)", '""', '"Fruit/*"'))
check(set(r) == {"Fruit/Banana"}, r)
"#,
    );
}

/// RFC 5258 §3/§3.5 and the examples of §5 (`LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"`):
/// a parent that matches the pattern but is not subscribed itself is returned with
/// `CHILDINFO ("SUBSCRIBED")` when a subscribed descendant is not returned itself; a
/// subscribed parent gets it too; nothing gets it when the descendants match themselves.
#[test]
fn list_recursivematch_childinfo_for_parent_of_subscribed() {
    let pm = install();
    py(
        &pm,
        r#"
M = login()
fruit(M)
CI = re.compile(r'^\("CHILDINFO" \("SUBSCRIBED"\)\)$', re.I)
r = rows(run(M, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '"%"'))
check(CI.match(r["Fruit"][1]) and "\\Subscribed" not in r["Fruit"][0], r)
check(CI.match(r["Vegetable"][1]) and "\\Subscribed" in r["Vegetable"][0], r)
check("\\Subscribed" in r["INBOX"][0] and r["INBOX"][1] == "", r)
check("Tofu" not in r and "Fruit/Banana" not in r, r)
# "*" returns the subscribed children themselves: no CHILDINFO, no unsubscribed Fruit
r = rows(run(M, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '"*"'))
check("Fruit" not in r, r)
check(all(v[1] == "" for v in r.values()), r)
check("\\NonExistent" in r["Fruit/Peach"][0], r)
# several patterns: Vegetable/Broccoli is returned itself, so subscribed Vegetable gets no
# CHILDINFO; with the child left out of the patterns it does
r = rows(run(M, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '(Vegetable Vegetable/Broccoli Tofu)'))
check(set(r) == {"Vegetable", "Vegetable/Broccoli"}, r)
check(all(v[1] == "" for v in r.values()), r)
r = rows(run(M, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '(Fruit Vegetable)'))
check(set(r) == {"Fruit", "Vegetable"} and all(CI.match(v[1]) for v in r.values()), r)
# the parent of a subscribed child that does not exist (Fruit/Peach) counts as well
check(M.unsubscribe("Fruit/Banana")[0] == "OK", "unsubscribe")
r = rows(run(M, "LIST", "(SUBSCRIBED RECURSIVEMATCH)", '""', '"Fruit"'))
check(set(r) == {"Fruit"} and CI.match(r["Fruit"][1]), r)
# without RECURSIVEMATCH: no CHILDINFO, no unsubscribed parent
r = rows(run(M, "LIST", "(SUBSCRIBED)", '""', '"%"'))
check("Fruit" not in r and all(v[1] == "" for v in r.values()), r)
"#,
    );
}

/// RFC 3501 §6.3.9: "if "foo/bar" is subscribed but "foo" is not, a "%" wildcard to LSUB
/// must return foo, not foo/bar, in the LSUB response, and it MUST be flagged with the
/// \Noselect attribute." Here foo exists as a mailbox (it used to come back without
/// `\Noselect`), and `*`, which reaches foo/bar itself, returns no parent.
#[test]
fn lsub_percent_returns_unsubscribed_parent_noselect() {
    let pm = install();
    py(
        &pm,
        r#"
M = login()
for n in ["m", "m/test", "m/test2", "m/test2/test", "m/test3/test3"]:
    check(M.create(n)[0] == "OK", n)
for n in ["m/test", "m/test2/test", "m/test3/test3"]:
    check(M.subscribe(n)[0] == "OK", n)
r = rows(run(M, "LSUB", '""', '"m/%"'), "LSUB")
check(set(r) == {"m/test", "m/test2", "m/test3"}, r)
check(r["m/test"][0] == [], r)
check(r["m/test2"][0] == ["\\Noselect"], r)
check(r["m/test3"][0] == ["\\Noselect"], r)
r = rows(run(M, "LSUB", '""', '"*test"'), "LSUB")
check(set(r) == {"m/test", "m/test2/test"}, r)
r = rows(run(M, "LSUB", '""', '"m/*"'), "LSUB")
check(set(r) == {"m/test", "m/test2/test", "m/test3/test3"}, r)
check(all(v[0] == [] for v in r.values()), r)
# the top level: "m" is not subscribed, its children are
r = rows(run(M, "LSUB", '""', '"%"'), "LSUB")
check(r["m"][0] == ["\\Noselect"] and "INBOX" in r and r["INBOX"][0] == [], r)
check(M.unsubscribe("m/test2/test")[0] == "OK", "unsubscribe")
r = rows(run(M, "LSUB", '""', '"m/%"'), "LSUB")
check(set(r) == {"m/test", "m/test3"}, r)
"#,
    );
}

/// The return options: CHILDREN (RFC 5258 §4: `\HasChildren`/`\HasNoChildren`),
/// SUBSCRIBED (`\Subscribed`), SPECIAL-USE (RFC 6154 §2: the use attributes; as a
/// selection option only the mailboxes that have one) and STATUS (RFC 5819: a STATUS
/// response after the LIST line of each selectable mailbox, none for the others).
#[test]
fn list_return_options_children_subscribed_special_use_status() {
    let pm = install();
    py(
        &pm,
        r#"
M = login()
fruit(M)
check(M.append("Fruit/Banana", None, None, b"Subject: x\r\n\r\nhi\r\n")[0] == "OK", "append")
typ, got = run(M, "LIST", '""', '"*"', "RETURN", "(CHILDREN SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UIDNEXT))")
check(typ == "OK", got)
r = rows((typ, got))
check(set(r["Fruit"][0]) == {"\\HasChildren"}, r)
check(set(r["Fruit/Banana"][0]) == {"\\HasNoChildren", "\\Subscribed"}, r)
check(set(r["Sent"][0]) >= {"\\HasNoChildren", "\\Sent", "\\Subscribed"}, r)
for n, a in [("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")]:
    check(a in r[n][0], (n, r))
status = {}
for l in got.get("STATUS", []):
    m = re.match(r'^("(?:[^"\\]|\\.)*"|[^ ]+) \((.*)\)$', l)
    check(m, l)
    status[m.group(1).strip('"')] = m.group(2)
check(set(status) == set(r), (status, r))
check(status["Fruit/Banana"] == "MESSAGES 1 UIDNEXT 2", status)
check(status["Tofu"].startswith("MESSAGES 0 "), status)
# no STATUS for a name that is not a mailbox
typ, got = run(M, "LIST", "(SUBSCRIBED)", '""', '"Fruit/*"', "RETURN", "(STATUS (MESSAGES))")
r = rows((typ, got))
check("Fruit/Peach" in r, r)
st = " ".join(got.get("STATUS", []))
check("Fruit/Peach" not in st and "Fruit/Banana" in st, got)
# SPECIAL-USE selection: only the special-use mailboxes
r = rows(run(M, "LIST", "(SPECIAL-USE)", '""', '"*"', "RETURN", "(SPECIAL-USE)"))
check(set(r) == {"Sent", "Drafts", "Trash", "Junk", "Archive"}, r)
# several patterns in one LIST, each mailbox once
r = rows(run(M, "LIST", '""', '(INBOX "Fruit/*" "*")'))
check("INBOX" in r and "Fruit/Apple" in r, r)
"#,
    );
}

/// WITHIN (RFC 5032): `OLDER n` / `YOUNGER n` compare the INTERNALDATE with the server's
/// time minus n seconds (§2), in SEARCH, UID SEARCH, ESEARCH and SORT alike; the interval is
/// a nz-number (§3: `YOUNGER 0` is BAD); CAPABILITY lists WITHIN. They were BAD before.
#[test]
fn search_within_older_younger() {
    let pm = install();
    py(
        &pm,
        r#"
import time
M = login()
typ, caps = M.capability()
check("WITHIN" in caps[0].decode().split(), caps)
now = time.time()
for age, subj in [(10 * 86400, "old"), (3600, "hour"), (0, "new")]:
    msg = ("Subject: %s\r\nFrom: a@example.org\r\n\r\nx\r\n" % subj).encode()
    check(M.append("INBOX", None, imaplib.Time2Internaldate(now - age), msg)[0] == "OK", subj)
M.select("INBOX")
def search(*crit):
    r = run(M, "SEARCH", *crit)
    check(r[0] == "OK", (crit, r))
    return r[1].get("SEARCH", [""])[0].split()
check(search("YOUNGER", "7200") == ["2", "3"], search("YOUNGER", "7200"))
check(search("OLDER", "7200") == ["1"], search("OLDER", "7200"))
check(search("OLDER", "86400") == ["1"], "older a day")
check(search("YOUNGER", "%d" % (30 * 86400)) == ["1", "2", "3"], "a month")
check(search("OLDER", "%d" % (30 * 86400)) == [], "older than a month")
check(search("NOT", "YOUNGER", "7200") == ["1"], "not")
check(search("OR", "OLDER", "86400", "YOUNGER", "60") == ["1", "3"], "or")
check(search("UNSEEN", "YOUNGER", "7200") == ["2", "3"], "with unseen")
r = run(M, "UID", "SEARCH", "YOUNGER", "7200")
check(r[0] == "OK" and r[1]["SEARCH"][0].split() == ["2", "3"], r)
r = run(M, "SEARCH", "RETURN", "(COUNT)", "YOUNGER", "7200")
check(r[0] == "OK" and "COUNT 2" in " ".join(r[1].get("ESEARCH", [])), r)
r = run(M, "SORT", "(REVERSE ARRIVAL)", "UTF-8", "OLDER", "60")
check(r[0] == "OK" and r[1]["SORT"][0].split() == ["2", "1"], r)
for bad in [("YOUNGER", "0"), ("OLDER", "-5"), ("OLDER",), ("YOUNGER", "99999999999")]:
    check(run(M, "SEARCH", *bad)[0] == "BAD", bad)
check(M.noop()[0] == "OK", "still usable")
"#,
    );
}
