//! Shared mailboxes (issue 13 §2: ACL, RFC 4314, and the `Shared/` namespace) against the
//! real imapd, authd and mailctl: alice shares a folder with bob through SETACL, then with
//! more rights through `mailctl share add`, then revokes it; carol, a third user, sees
//! nothing at any time and cannot tell the folder exists. The client is a raw socket in
//! Python (imaplib refuses a SELECT that answers READ-ONLY).

use postern_e2e::Postern;

const ALICE: &str = "alice@example.org";
const BOB: &str = "bob@example.org";
const CAROL: &str = "carol@example.org";
const PASS: &str = "shared phrase 7";

const PRELUDE: &str = r#"
import socket, sys
PORT, PASS = int(sys.argv[1]), sys.argv[2]
TEAM = b'"Shared/alice@example.org/Team"'
NOPE = b'"Shared/alice@example.org/Nope"'
def check(cond, what):
    if not cond: raise SystemExit("FAILED: %r" % (what,))
def lit(b): return b"{%d+}\r\n" % len(b) + b
MSG = b"From: alice@example.org\r\nSubject: team\r\n\r\nteam body\r\n"
class Client:
    def __init__(self, user):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=20)
        self.buf = b""; self.n = 0
        self.line()
        r = self.run(b'LOGIN "%s" "%s"' % (user.encode(), PASS.encode()))
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
def carol_sees_nothing():
    C = Client("carol@example.org")
    check(b"Shared" not in ok(C.run(b'LIST "" "*"')), "carol LIST")
    check(b"Shared" not in ok(C.run(b'LIST "" "Shared/%/%"')), "carol LIST %")
    # The same answer for the real folder and one that does not exist.
    for cmd in [b"SELECT %s", b"EXAMINE %s", b"STATUS %s (MESSAGES)", b"MYRIGHTS %s",
                b"GETACL %s", b"SETACL %s carol@example.org lr", b"DELETE %s", b"SUBSCRIBE %s",
                b"APPEND %s " + lit(MSG)]:
        real = C.run(cmd.replace(b"%s", TEAM))
        fake = C.run(cmd.replace(b"%s", NOPE))
        check(real[0] == fake[0] and real[0].startswith(b"NO [NONEXISTENT]"), (cmd, real, fake))
        check(b"Team" not in real[1], (cmd, real))
"#;

fn py(pm: &Postern, body: &str) -> String {
    let script = format!("{PRELUDE}\n{body}\n");
    let port = pm.imap_port().to_string();
    pm.python_ok("imapd", &script, &[&port, PASS])
}

/// alice grants bob `lr` with SETACL → bob lists `Shared/alice@…/Team`, SELECT is
/// read-only, STORE and APPEND are `NO`; `mailctl share add … lrswi` → bob can APPEND and set
/// flags; alice revokes with DELETEACL → bob sees nothing. carol never sees anything.
#[test]
fn share_read_only_then_read_write_then_revoke() {
    let pm = Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(ALICE, PASS);
    pm.add_user(BOB, PASS);
    pm.add_user(CAROL, PASS);

    py(
        &pm,
        r#"
A = Client("alice@example.org")
caps = ok(A.run(b"CAPABILITY"))
check(b" ACL " in caps and b" RIGHTS=texk" in caps, caps)
ns = ok(A.run(b"NAMESPACE"))
check(ns == b'* NAMESPACE (("" "/")) NIL (("Shared/" "/"))\r\n', ns)
ok(A.run(b"CREATE Team"))
ok(A.run(b"APPEND Team " + lit(MSG)))
# Before any grant, bob (and carol) learn nothing.
B = Client("bob@example.org")
check(b"Shared" not in ok(B.run(b'LIST "" "*"')), "bob before")
no(B.run(b"SELECT " + TEAM), b"NONEXISTENT")
carol_sees_nothing()
# RFC 4314 §3.1 SETACL; a right the server does not know is BAD.
check(A.run(b"SETACL Team bob@example.org lrq")[0].startswith(b"BAD"), "BAD right")
ok(A.run(b"SETACL Team bob@example.org lr"))
acl = ok(A.run(b"GETACL Team"))
check(acl == b"* ACL Team alice@example.org lrswipkxtea bob@example.org lr\r\n", acl)
lr = ok(A.run(b"LISTRIGHTS Team bob@example.org"))
check(lr.startswith(b'* LISTRIGHTS Team bob@example.org "" l r s w i p k x t e a'), lr)
# bob: LIST, read-only SELECT, no STORE, no APPEND.
got = ok(B.run(b'LIST "" "*"'))
check(b'* LIST (\\Noselect \\HasChildren) "/" "Shared"\r\n' in got, got)
check(b'"/" "Shared/alice@example.org/Team"\r\n' in got, got)
check(b"Shared/alice@example.org/INBOX" not in got, got)
r = B.run(b"SELECT " + TEAM)
check(r[0].startswith(b"OK [READ-ONLY]"), r)
check(b"* 1 EXISTS" in r[1] and b"[PERMANENTFLAGS ()]" in r[1], r)
my = ok(B.run(b"MYRIGHTS " + TEAM))
check(my == b"* MYRIGHTS Shared/alice@example.org/Team lr\r\n", my)
body = ok(B.run(b"FETCH 1 (BODY[TEXT])"))
check(b"team body" in body, body)
check(B.run(b"STORE 1 +FLAGS (\\Flagged)")[0].startswith(b"NO"), "STORE read-only")
no(B.run(b"APPEND " + TEAM + b" " + lit(MSG)), b"NOPERM")
no(B.run(b"GETACL " + TEAM), b"NOPERM")
no(B.run(b"SETACL " + TEAM + b" bob@example.org lrswipkxtea"), b"NOPERM")
# FETCH BODY[] did not mark alice's message \Seen (no "s").
flags = ok(A.run(b"EXAMINE Team")) and ok(A.run(b"FETCH 1 FLAGS"))
check(b"\\Seen" not in flags, flags)
carol_sees_nothing()
"#,
    );
    let acl_file = pm
        .dir()
        .join("mail/example.org/alice/Maildir/.Team/dovecot-acl");
    let acl_text = std::fs::read_to_string(&acl_file)
        .unwrap_or_else(|e| panic!("{}: {e}", acl_file.display()));
    assert_eq!(acl_text, "user=bob@example.org lr\n");

    // The admin gives bob more through mailctl (Dovecot's file format, the same index). Run
    // as root, mailctl gives what it writes the owner of the Maildir (the mail user imapd
    // runs as in production; here alice's tree is handed to 65534 first).
    let is_root = nix::unistd::geteuid().is_root();
    if is_root {
        let alice_home = pm.dir().join("mail/example.org/alice");
        let mut chown = std::process::Command::new("chown");
        chown.args(["-R", "65534:65534"]).arg(&alice_home);
        let o = postern_e2e::run_command(&mut chown, None, postern_e2e::COMMAND_TIMEOUT);
        assert!(o.status.success(), "{}", postern_e2e::describe_output(&o));
    }
    let out = pm.mailctl_json(&["share", "add", ALICE, "Team", BOB, "lrswi"]);
    assert_eq!(out["rights"], "lrswi", "{out}");
    assert_eq!(out["shared_as"], "Shared/alice@example.org/Team", "{out}");
    if is_root {
        use std::os::unix::fs::MetadataExt;
        for f in [&acl_file, &pm.dir().join("mail/.shared-mailboxes")] {
            let m = std::fs::metadata(f).unwrap();
            assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", f.display());
        }
    }
    assert_eq!(
        std::fs::read_to_string(&acl_file).unwrap(),
        "user=bob@example.org lrwsi\n"
    );
    let list = pm.mailctl_json(&["share", "list", ALICE]);
    let entries = list.as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["grantee"] == BOB && e["rights"] == "lrswi" && e["mailbox"] == "Team"),
        "{list}"
    );
    let all = pm.mailctl_json(&["share", "list"]);
    assert_eq!(all.as_array().unwrap().len(), entries.len(), "{all}");
    // Refused by mailctl: a bad right, a grantee with a space, a path trick, no such owner.
    for bad in [
        vec!["share", "add", ALICE, "Team", BOB, "lrz"],
        vec!["share", "add", ALICE, "Team", "bob example", "lr"],
        vec!["share", "add", ALICE, "../bob/Maildir", BOB, "lr"],
        vec!["share", "add", "nobody@example.org", "Team", BOB, "lr"],
        vec!["share", "add", ALICE, "Nope", BOB, "lr"],
    ] {
        assert!(!pm.mailctl(&bad).status.success(), "{bad:?} accepted");
    }
    assert_eq!(
        std::fs::read_to_string(&acl_file).unwrap(),
        "user=bob@example.org lrwsi\n"
    );

    py(
        &pm,
        r#"
B = Client("bob@example.org")
r = B.run(b"SELECT " + TEAM)
check(r[0].startswith(b"OK [READ-WRITE]"), r)
# No "t": \Deleted is not among the flags bob may change.
check(b"[PERMANENTFLAGS (\\Answered \\Flagged \\Seen \\Draft \\*)]" in r[1], r)
ok(B.run(b"STORE 1 +FLAGS (\\Flagged \\Seen)"))
no(B.run(b"STORE 1 +FLAGS (\\Deleted)"), b"NOPERM")
no(B.run(b"EXPUNGE"), b"NOPERM")
r = B.run(b"APPEND " + TEAM + b" " + lit(MSG))
check(r[0].startswith(b"OK [APPENDUID"), r)
st = ok(B.run(b"STATUS " + TEAM + b" (MESSAGES)"))
check(st == b'* STATUS "Shared/alice@example.org/Team" (MESSAGES 2)\r\n', st)
ok(B.run(b"SUBSCRIBE " + TEAM))
check(b'"Shared/alice@example.org/Team"' in ok(B.run(b'LSUB "" "*"')), "LSUB")
# alice sees what bob did in her own folder.
A = Client("alice@example.org")
ok(A.run(b"EXAMINE Team"))
f = ok(A.run(b"FETCH 1:* FLAGS"))
check(f.count(b"FETCH") == 2 and b"\\Flagged" in f and b"\\Deleted" not in f, f)
carol_sees_nothing()
# Revoked (§3.2 DELETEACL): bob sees nothing any more, not even through LSUB.
ok(A.run(b"DELETEACL Team bob@example.org"))
check(b"Shared" not in ok(B.run(b'LIST "" "*"')), "bob after revoke")
check(b"Shared" not in ok(B.run(b'LSUB "" "*"')), "bob LSUB after revoke")
no(B.run(b"STATUS " + TEAM + b" (MESSAGES)"), b"NONEXISTENT")
no(B.run(b"APPEND " + TEAM + b" " + lit(MSG)), b"NONEXISTENT")
B2 = Client("bob@example.org")
no(B2.run(b"SELECT " + TEAM), b"NONEXISTENT")
carol_sees_nothing()
"#,
    );
    assert!(!acl_file.exists());
    let index_file = pm.dir().join("mail/.shared-mailboxes");
    let index = std::fs::read_to_string(&index_file).unwrap_or_default();
    assert!(!index.contains("bob@example.org"), "{index}");

    // `anyone` (RFC 4314 §2) through mailctl: every user finds it (here dave, a fourth
    // user), and `mailctl share remove` takes it back.
    pm.add_user("dave@example.org", PASS);
    pm.mailctl_ok(&["share", "add", ALICE, "Team", "anyone", "lr"]);
    assert_eq!(
        std::fs::read_to_string(&index_file).unwrap(),
        "shared/shared-boxes/anyone/alice@example.org\n1\n"
    );
    py(
        &pm,
        r#"
D = Client("dave@example.org")
check(b'"Shared/alice@example.org/Team"' in ok(D.run(b'LIST "" "*"')), "dave LIST anyone")
my = ok(D.run(b"MYRIGHTS " + TEAM))
check(my == b"* MYRIGHTS Shared/alice@example.org/Team lr\r\n", my)
"#,
    );
    let out = pm.mailctl_json(&["share", "remove", ALICE, "Team", "anyone"]);
    assert_eq!(out["ok"], true, "{out}");
    assert!(!acl_file.exists());
    assert_eq!(std::fs::read_to_string(&index_file).unwrap(), "");
    py(
        &pm,
        r#"
D = Client("dave@example.org")
check(b"Shared" not in ok(D.run(b'LIST "" "*"')), "dave LIST after remove")
no(D.run(b"SELECT " + TEAM), b"NONEXISTENT")
"#,
    );
}

/// `doveadm` with Dovecot's acl plugin on the same tree, its userdb from our authd (as in
/// `dovecot.rs`), its `acl_shared_dict` our sharing index.
fn doveadm(pm: &Postern, args: &[&str]) -> String {
    use std::process::Command;
    let conf = pm.dir().join("dovecot-acl.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            format!(
                "mail_location = maildir:~/Maildir\nfirst_valid_uid = 0\nssl = no\nbase_dir = {run}\nlog_path = {dir}/dovecot.log\nmail_plugins = acl\nplugin {{\n  acl = vfile\n  acl_shared_dict = file:{dir}/mail/.shared-mailboxes\n}}\n",
                run = pm.run_dir().display(),
                dir = pm.dir().display()
            ),
        )
        .expect("write dovecot-acl.conf");
    }
    // Dovecot refuses uid 0 from a userdb; authd answers 65534 here (see dovecot.rs).
    for attempt in 1.. {
        let mut chown = Command::new("chown");
        chown.args(["-R", "65534:65534"]).arg(pm.dir().join("mail"));
        let out = postern_e2e::run_command(&mut chown, None, postern_e2e::COMMAND_TIMEOUT);
        if out.status.success() {
            break;
        }
        assert!(attempt < 5, "{}", postern_e2e::describe_output(&out));
    }
    let mut cmd = Command::new("doveadm");
    cmd.arg("-c").arg(&conf).args(args);
    let out = postern_e2e::run_command(&mut cmd, None, postern_e2e::COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "doveadm {args:?}\n{}",
        postern_e2e::describe_output(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Dovecot reads the ACL imapd wrote (`doveadm acl get`), and imapd honours an ACL and a
/// sharing-index entry Dovecot wrote (`doveadm acl set` + `acl recalc`): the same files, both
/// ways.
#[test]
#[ignore = "needs Debian's dovecot-imapd (run .ci/run)"]
fn dovecot_and_imapd_read_each_others_acls() {
    let pm = Postern::builder()
        .set("authd.userdb.uid", 65534)
        .set("authd.userdb.gid", 65534)
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(ALICE, PASS);
    pm.add_user(BOB, PASS);
    pm.add_user(CAROL, PASS);
    py(
        &pm,
        r#"
A = Client("alice@example.org")
ok(A.run(b"CREATE Team"))
ok(A.run(b"SETACL Team bob@example.org lrs"))
Client("carol@example.org")
"#,
    );
    let got = doveadm(&pm, &["acl", "get", "-u", ALICE, "Team"]);
    let line = got
        .lines()
        .find(|l| l.contains("user=bob@example.org"))
        .unwrap_or_else(|| panic!("{got}"));
    for right in ["lookup", "read", "write-seen"] {
        assert!(line.contains(right), "{got}");
    }
    assert!(!line.contains("insert"), "{got}");
    doveadm(
        &pm,
        &[
            "acl",
            "set",
            "-u",
            ALICE,
            "Team",
            "user=carol@example.org",
            "lookup",
            "read",
            "insert",
        ],
    );
    doveadm(&pm, &["acl", "recalc", "-u", ALICE]);
    py(
        &pm,
        r#"
C = Client("carol@example.org")
my = ok(C.run(b"MYRIGHTS " + TEAM))
check(my == b"* MYRIGHTS Shared/alice@example.org/Team lri\r\n", my)
check(b'"Shared/alice@example.org/Team"' in ok(C.run(b'LIST "" "*"')), "carol LIST")
ok(C.run(b"APPEND " + TEAM + b" " + lit(MSG)))
"#,
    );
}
