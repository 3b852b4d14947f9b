//! More IMAP clients against imapd: Debian's `mutt` driven through tmux over IMAPS with the
//! `mailctl init` self-signed certificate, and a Thunderbird-like CONDSTORE/QRESYNC resync
//! after offline changes (RFC 7162 §3.2.5, §3.2.6), each effect checked on disk and over IMAP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use postern_e2e::{Postern, describe_output, run_command, run_python};

const USER: &str = "dave@example.org";
const PASS: &str = "mutt pass phrase 2";

fn install() -> Postern {
    Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start_with_user(USER, PASS)
}

fn port(pm: &Postern, door: &str) -> u16 {
    pm.daemon("imapd")
        .listening_addrs_matching(&format!("({door})"))[0]
        .port()
}

fn maildir(pm: &Postern) -> PathBuf {
    pm.dir().join("mail/example.org/dave/Maildir")
}

/// Runs an imaplib script logged in as USER on the plain port (trusted loopback); its stdout.
fn imap(pm: &Postern, body: &str) -> String {
    let script = format!(
        "import imaplib, sys, re\nM = imaplib.IMAP4('127.0.0.1', int(sys.argv[1]))\nM.login(sys.argv[2], sys.argv[3])\n{body}\nM.logout()\n"
    );
    let port = port(pm, "imap").to_string();
    let out = run_python(&script, &[&port, USER, PASS]);
    assert!(
        out.status.success(),
        "{}\nimapd log:\n{}",
        describe_output(&out),
        pm.daemon("imapd").log_text()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn append_subjects(pm: &Postern, subjects: &[&str]) {
    let list = subjects
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    imap(
        pm,
        &format!(
            r#"
for i, s in enumerate([{list}]):
    msg = ("From: a@example.net\r\nTo: dave@example.org\r\nSubject: %s\r\nMessage-ID: <m%d@example.net>\r\nDate: Mon, 1 Jan 2024 10:%02d:00 +0000\r\n\r\nbody of %s\r\n" % (s, i, i, s)).encode()
    typ, _ = M.append("INBOX", None, None, msg)
    assert typ == "OK", typ
"#
        ),
    );
}

/// (file name, Maildir info flags) of every message in `dir`'s new/ and cur/.
fn entries(dir: &Path) -> Vec<(PathBuf, String)> {
    ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).into_iter().flatten())
        .filter_map(|e| e.ok())
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let flags = name.split_once(":2,").map(|(_, f)| f.to_owned());
            (e.path(), flags.unwrap_or_default())
        })
        .collect()
}

/// Maildir flags of the message with `subject` in `dir`, `None` when it is not there.
fn flags_of(dir: &Path, subject: &str) -> Option<String> {
    let header = format!("Subject: {subject}");
    entries(dir).into_iter().find_map(|(path, flags)| {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| t.lines().any(|l| l.trim_end_matches('\r') == header))
            .map(|_| flags)
    })
}

fn poll(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl Fn() -> String,
) {
    let end = Instant::now() + timeout;
    while !cond() {
        if Instant::now() > end {
            panic!("timed out waiting for {what}\n{}", context());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tmux server on its own socket, killed on drop.
struct Tmux {
    sock: PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.sock);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out = run_command(self.cmd().args(args), None, Duration::from_secs(10));
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            describe_output(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pane(&self) -> String {
        let out = run_command(
            self.cmd().args(["capture-pane", "-p", "-t", "mutt"]),
            None,
            Duration::from_secs(10),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run_command(self.cmd().arg("kill-server"), None, Duration::from_secs(10));
    }
}

/// The certificate file `mailctl init` wrote (the `[tls] cert` of the install's config).
fn cert_path(pm: &Postern) -> PathBuf {
    let cfg = pm.config();
    let cert = cfg
        .get("tls")
        .and_then(|t| t.get("cert"))
        .and_then(|c| c.as_str())
        .expect("[tls] cert in the config");
    let p = PathBuf::from(cert);
    if p.is_absolute() { p } else { pm.dir().join(p) }
}

const MACROS: &str = "\
    macro index ,r \"<limit>~s alpha<enter><display-message><exit><sync-mailbox>\"\n\
    macro index ,f \"<limit>~s bravo<enter><flag-message><sync-mailbox>\"\n\
    macro index ,d \"<limit>~s charlie<enter><delete-message><sync-mailbox>\"\n\
    macro index ,c \"<limit>~s delta<enter><copy-message><kill-line>=Saved<enter>\"\n";

/// Starts mutt in a tmux session on `folder` (an imaps:// or imap:// URL) with `extra` muttrc
/// lines, and waits for its index to list all of `subjects`.
fn start_mutt(pm: &Postern, dir: &Path, folder: &str, extra: &str, subjects: &[&str]) -> Tmux {
    let cert = cert_path(pm);
    // mutt compares the server's certificate with the ones in certificate_file (the
    // self-signed leaf); the host name is 127.0.0.1, not the certificate's name.
    let muttrc = dir.join("muttrc");
    std::fs::write(
        &muttrc,
        format!(
            "set imap_user=\"{USER}\"\nset imap_pass=\"{PASS}\"\n\
             set folder=\"{folder}\"\nset spoolfile=\"+INBOX\"\n\
             set certificate_file=\"{cert}\"\nset ssl_verify_host=no\n\
             set header_cache=\"\"\nset message_cachedir=\"\"\n\
             set delete=yes\nset quit=yes\nset confirmcreate=no\nset confirmappend=no\n\
             set move=no\nset mark_old=no\nset wait_key=no\nset sleep_time=0\nset beep=no\n\
             set sort=date\nset mail_check=60\nset timeout=600\nset imap_keepalive=60\n\
             {extra}{MACROS}",
            cert = cert.display(),
        ),
    )
    .unwrap();

    let tmux = Tmux {
        sock: dir.join("tmux.sock"),
    };
    let mut start = tmux.cmd();
    start.env("HOME", dir).args([
        "new-session",
        "-d",
        "-s",
        "mutt",
        "-x",
        "160",
        "-y",
        "40",
        &format!("mutt -n -F {}", muttrc.display()),
    ]);
    let out = run_command(&mut start, None, Duration::from_secs(10));
    assert!(out.status.success(), "tmux: {}", describe_output(&out));
    // The index is up once all subjects show (a certificate prompt would not show them).
    poll(
        "mutt's index",
        Duration::from_secs(30),
        || {
            let p = tmux.pane();
            subjects.iter().all(|s| p.contains(s))
        },
        || {
            format!(
                "pane:\n{}\nimapd log:\n{}",
                tmux.pane(),
                pm.daemon("imapd").log_text()
            )
        },
    );
    tmux
}

/// Sends `q` (quit=yes) and waits for mutt, and with it the tmux session, to end.
fn quit_mutt(tmux: &Tmux) {
    tmux.run(&["send-keys", "-t", "mutt", "q"]);
    poll(
        "mutt to exit",
        Duration::from_secs(30),
        || {
            !run_command(
                tmux.cmd().args(["has-session", "-t", "mutt"]),
                None,
                Duration::from_secs(10),
            )
            .status
            .success()
        },
        || tmux.pane(),
    );
}

#[test]
#[ignore = "needs mutt and tmux (run .ci/run)"]
fn mutt_over_starttls_opens_inbox() {
    let pm = install();
    append_subjects(&pm, &["alpha", "bravo"]);
    let tmp = tempfile::tempdir().unwrap();
    let before = pm.daemon("imapd").log_text().matches("tls=true").count();
    let folder = format!("imap://127.0.0.1:{}/", port(&pm, "imap"));
    let tmux = start_mutt(
        &pm,
        tmp.path(),
        &folder,
        "set ssl_starttls=yes\nset ssl_force_tls=yes\n",
        &["alpha", "bravo"],
    );
    quit_mutt(&tmux);
    let log = pm.daemon("imapd").log_text();
    assert!(
        log.matches("tls=true").count() > before && log.contains("service=\"imap\" tls=true"),
        "mutt logged in without STARTTLS:\n{log}"
    );
}

#[test]
#[ignore = "needs mutt and tmux (run .ci/run)"]
fn mutt_reads_flags_deletes_and_copies_over_imaps() {
    let pm = install();
    let subjects = ["alpha", "bravo", "charlie", "delta"];
    append_subjects(&pm, &subjects);
    let tmp = tempfile::tempdir().unwrap();
    let folder = format!("imaps://127.0.0.1:{}/", port(&pm, "imaps"));
    let tmux = start_mutt(&pm, tmp.path(), &folder, "", &subjects);
    let log = || {
        format!(
            "pane:\n{}\nimapd log:\n{}",
            tmux.pane(),
            pm.daemon("imapd").log_text()
        )
    };
    let md = maildir(&pm);
    assert_eq!(flags_of(&md, "alpha").as_deref(), Some(""), "{}", log());

    // Read alpha: \Seen reaches the Maildir.
    tmux.run(&["send-keys", "-t", "mutt", ",r"]);
    poll(
        "alpha seen on disk",
        Duration::from_secs(30),
        || flags_of(&md, "alpha").is_some_and(|f| f.contains('S')),
        log,
    );
    // Flag bravo.
    tmux.run(&["send-keys", "-t", "mutt", ",f"]);
    poll(
        "bravo flagged on disk",
        Duration::from_secs(30),
        || flags_of(&md, "bravo").is_some_and(|f| f.contains('F')),
        log,
    );
    // Delete charlie and expunge it ($).
    tmux.run(&["send-keys", "-t", "mutt", ",d"]);
    poll(
        "charlie expunged",
        Duration::from_secs(30),
        || flags_of(&md, "charlie").is_none(),
        log,
    );
    // Copy delta to a new folder Saved.
    tmux.run(&["send-keys", "-t", "mutt", ",c"]);
    let saved = md.join(".Saved");
    poll(
        "delta copied to Saved",
        Duration::from_secs(30),
        || flags_of(&saved, "delta").is_some(),
        log,
    );
    // Quit; mutt leaves, and the tmux session with it.
    quit_mutt(&tmux);

    // Disk: untouched ones are unchanged, delta is still in INBOX, nothing else moved.
    assert_eq!(
        flags_of(&md, "delta").as_deref().map(|f| f.contains('T')),
        Some(false)
    );
    assert!(
        !flags_of(&md, "bravo").unwrap().contains('S'),
        "bravo was never opened"
    );
    assert_eq!(entries(&md).len(), 3);
    assert_eq!(entries(&saved).len(), 1);

    // The same state over IMAP.
    let out = imap(
        &pm,
        r#"
for box in ("INBOX", "Saved"):
    typ, d = M.select(box, readonly=True)
    assert typ == "OK", (box, d)
    typ, data = M.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    for item in data:
        if isinstance(item, tuple):
            flags = " ".join(sorted(set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split()) - {"\\Recent"}))
            print(box, item[1].decode().strip(), "[" + flags + "]")
"#,
    );
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "INBOX Subject: alpha [\\Seen]",
            "INBOX Subject: bravo [\\Flagged]",
            "INBOX Subject: delta []",
            "Saved Subject: delta []",
        ],
        "{out}"
    );
}

/// A Thunderbird-like client: it knows a mailbox's state (UIDVALIDITY, HIGHESTMODSEQ, UIDs and
/// flags), goes offline while another client changes flags, expunges and appends, then
/// resynchronises with SELECT (QRESYNC ...) and with UID FETCH (CHANGEDSINCE ... VANISHED).
#[test]
fn qresync_resync_after_offline_changes() {
    let pm = install();
    append_subjects(&pm, &["one", "two", "three", "four", "five", "six"]);
    let script = r#"
import imaplib, socket, sys, re
PORT, USER, PASS = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def check(cond, what):
    if not cond: raise SystemExit("FAILED: " + str(what))

class Raw:
    """A minimal line client (no literals are expected in these replies)."""
    def __init__(self):
        self.s = socket.create_connection(("127.0.0.1", PORT), timeout=30)
        self.f = self.s.makefile("rb")
        self.n = 0
        check(self.f.readline().startswith(b"* OK"), "greeting")
    def cmd(self, line):
        self.n += 1
        tag = "q%d" % self.n
        self.s.sendall(("%s %s\r\n" % (tag, line)).encode())
        untagged = []
        while True:
            l = self.f.readline()
            check(l, "connection closed during " + line)
            l = l.decode().rstrip("\r\n")
            if l.startswith(tag + " "):
                check(l.startswith(tag + " OK"), (line, l, untagged))
                return untagged
            untagged.append(l)
    def close(self):
        self.cmd("LOGOUT"); self.s.close()

def uidset(text):
    out = set()
    for part in text.split(","):
        if ":" in part:
            a, b = part.split(":"); a, b = int(a), int(b)
            out.update(range(min(a, b), max(a, b) + 1))
        else:
            out.add(int(part))
    return out

FETCH = re.compile(r"^\* (\d+) FETCH \((.*)\)$")
def parse_fetch(l):
    m = FETCH.match(l)
    if not m: return None
    body = m.group(2)
    uid = re.search(r"\bUID (\d+)", body)
    flags = re.search(r"\bFLAGS \(([^)]*)\)", body)
    modseq = re.search(r"\bMODSEQ \((\d+)\)", body)
    return (int(uid.group(1)) if uid else None,
            frozenset(flags.group(1).split()) if flags else None,
            int(modseq.group(1)) if modseq else None, l)

def vanished(untagged):
    v = [l for l in untagged if l.startswith("* VANISHED")]
    check(len(v) <= 1, v)
    if not v: return set()
    check(v[0].startswith("* VANISHED (EARLIER) "), v[0])
    return uidset(v[0][len("* VANISHED (EARLIER) "):])

def state(c):
    view = {}
    for l in c.cmd("UID FETCH 1:* (FLAGS)"):
        p = parse_fetch(l)
        if p: view[p[0]] = p[1] - {"\\Recent"}
    return view

# Client 1 online: learns the state.
c1 = Raw()
c1.cmd('LOGIN "%s" "%s"' % (USER, PASS))
check(any(l.split()[:3] == ["*", "ENABLED", "QRESYNC"] for l in c1.cmd("ENABLE QRESYNC")), "ENABLED QRESYNC")
sel = " ".join(c1.cmd("SELECT INBOX"))
uidvalidity = int(re.search(r"\[UIDVALIDITY (\d+)\]", sel).group(1))
modseq0 = int(re.search(r"\[HIGHESTMODSEQ (\d+)\]", sel).group(1))
known = {}
for l in c1.cmd("UID FETCH 1:* (FLAGS MODSEQ)"):
    p = parse_fetch(l)
    if p:
        check(p[2] is not None and p[2] <= modseq0, ("modseq beyond HIGHESTMODSEQ", l, modseq0))
        known[p[0]] = p[1] - {"\\Recent"}
check(sorted(known) == [1, 2, 3, 4, 5, 6], known)
c1.close()
print("OFFLINE uidvalidity=%d modseq=%d" % (uidvalidity, modseq0))

# Client 2 changes things meanwhile.
M = imaplib.IMAP4("127.0.0.1", PORT)
M.login(USER, PASS)
M.select("INBOX")
check(M.uid("STORE", "2", "+FLAGS", "(\\Flagged)")[0] == "OK", "store 2")
check(M.uid("STORE", "3", "+FLAGS", "(\\Seen $Label1)")[0] == "OK", "store 3")
check(M.uid("STORE", "4,5", "+FLAGS", "(\\Deleted)")[0] == "OK", "store 4,5")
check(M.expunge()[0] == "OK", "expunge")
msg = b"From: b@example.net\r\nTo: dave@example.org\r\nSubject: seven\r\n\r\nnew while offline\r\n"
check(M.append("INBOX", "(\\Answered)", None, msg)[0] == "OK", "append")
M.logout()

# Client 1 reconnects and resynchronises with SELECT (QRESYNC ...).
c1 = Raw()
c1.cmd('LOGIN "%s" "%s"' % (USER, PASS))
c1.cmd("ENABLE QRESYNC")
untagged = c1.cmd("SELECT INBOX (QRESYNC (%d %d 1:6))" % (uidvalidity, modseq0))
sel = " ".join(untagged)
modseq1 = int(re.search(r"\[HIGHESTMODSEQ (\d+)\]", sel).group(1))
check(modseq1 > modseq0, ("HIGHESTMODSEQ did not grow", modseq0, modseq1))
check("[UIDVALIDITY %d]" % uidvalidity in sel, sel)
gone = vanished(untagged)
check(gone == {4, 5}, ("VANISHED (EARLIER)", gone, untagged))
changed = {}
for l in untagged:
    p = parse_fetch(l)
    if p:
        check(p[0] is not None and p[1] is not None and p[2] is not None, ("FETCH needs UID FLAGS MODSEQ", l))
        check(modseq0 < p[2] <= modseq1, ("MODSEQ out of range", l, modseq0, modseq1))
        changed[p[0]] = p[1] - {"\\Recent"}
# Every message changed since modseq0 (the two stores and the appended one), none other.
check(set(changed) == {2, 3, 7}, ("changed", sorted(changed), untagged))
view = {u: f for u, f in known.items() if u not in gone}
view.update(changed)
full = state(c1)
check(view == full, ("resynced view", view, "full fetch", full))
check(full[2] == {"\\Flagged"} and full[3] == {"\\Seen", "$Label1"} and full[7] == {"\\Answered"}, full)

# The same answer through UID FETCH (CHANGEDSINCE ... VANISHED) in a selected mailbox.
untagged = c1.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq0)
check(vanished(untagged) == {4, 5}, ("UID FETCH VANISHED", untagged))
got = {}
for l in untagged:
    p = parse_fetch(l)
    if p:
        check(p[2] is not None and p[2] > modseq0, ("CHANGEDSINCE implies MODSEQ", l))
        got[p[0]] = p[1] - {"\\Recent"}
check(set(got) == {2, 3, 7}, ("CHANGEDSINCE", sorted(got), untagged))
# Nothing changed since modseq1: no FETCH, no VANISHED.
untagged = c1.cmd("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d VANISHED)" % modseq1)
check(not any(parse_fetch(l) or l.startswith("* VANISHED") for l in untagged), ("nothing changed", untagged))
c1.close()
print("RESYNC OK", sorted(full.items()))
"#;
    let port = port(&pm, "imap").to_string();
    let out = run_python(script, &[&port, USER, PASS]);
    assert!(
        out.status.success(),
        "{}\nimapd log:\n{}",
        describe_output(&out),
        pm.daemon("imapd").log_text()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("RESYNC OK"),
        "{}",
        describe_output(&out)
    );
}
