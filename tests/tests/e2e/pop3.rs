//! POP3 end to end: authd + lmtp-deliver + smtpd + imapd from a temp install; mail delivered
//! through smtpd, read back with Python's poplib, raw sockets and (with `.ci/run`) fetchmail;
//! results checked against the Maildir on disk.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postern_e2e::{Postern, PosternBuilder, describe_output, run_python};

use crate::lmtp::maildir;

const ALICE: &str = "alice@example.org";
const ALICE_PW: &str = "correct horse battery";

fn install(builder: PosternBuilder) -> Postern {
    let pm = builder
        .daemons(&["authd", "lmtp-deliver", "smtpd", "imapd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    for (u, p) in [("alice", ALICE_PW), ("bob", "another good passphrase")] {
        let out = pm.mailctl_stdin(
            &["user", "add", &format!("{u}@example.org")],
            &format!("{p}\n"),
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    pm
}

fn addr(pm: &Postern, daemon: &str, door: &str) -> SocketAddr {
    pm.daemon(daemon)
        .listening_addrs_matching(&format!("({door})"))[0]
}

/// The three test messages, as sent (CRLF line ends).
fn test_messages() -> Vec<String> {
    let mut body1 = String::from("line 1\r\nline 2\r\n.leading dot\r\n..two dots\r\n");
    for i in 4..=40 {
        body1.push_str(&format!("line {i} of a longer body\r\n"));
    }
    [
        format!(
            "From: sender@remote.test\r\nTo: {ALICE}\r\nSubject: first\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <m1@remote.test>\r\n\r\n{body1}"
        ),
        format!(
            "From: sender@remote.test\r\nTo: {ALICE}\r\nSubject: second\r\nDate: Mon, 1 Jan 2024 10:01:00 +0000\r\nMessage-ID: <m2@remote.test>\r\n\r\nshort body\r\n"
        ),
        format!(
            "From: sender@remote.test\r\nTo: {ALICE}\r\nSubject: third\r\nDate: Mon, 1 Jan 2024 10:02:00 +0000\r\nMessage-ID: <m3@remote.test>\r\n\r\n.\r\nonly a dot above\r\n"
        ),
    ]
    .into()
}

const SEND: &str = r#"
import smtplib, sys
host, port, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = smtplib.SMTP(host, port, timeout=30)
s.ehlo("client.test")
for m in sys.argv[4:]:
    s.sendmail("sender@remote.test", [rcpt], m.encode())
s.quit()
"#;

/// Sends `msgs` to `rcpt` through smtpd (MX port), one at a time so that the UIDs follow
/// the order given (the queue may deliver a batch in parallel), waiting for each to land.
fn deliver(pm: &Postern, rcpt: &str, msgs: &[String]) {
    let a = addr(pm, "smtpd", "smtp");
    let user = rcpt.split('@').next().unwrap_or(rcpt);
    let dir = maildir(pm, user);
    for m in msgs {
        let before = files(&dir).len();
        let out = run_python(SEND, &[&a.ip().to_string(), &a.port().to_string(), rcpt, m]);
        assert!(out.status.success(), "{}", describe_output(&out));
        wait_files(&dir, before + 1);
    }
}

/// The message files of INBOX (`new/` and `cur/`), sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|s| {
            std::fs::read_dir(dir.join(s))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

fn wait_files(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = files(dir);
        if f.len() == n || Instant::now() > deadline {
            assert_eq!(f.len(), n, "messages in {}", dir.display());
            return f;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A file's message as POP3 should give it: CRLF line ends.
fn crlf(path: &Path) -> String {
    let s = std::fs::read_to_string(path).expect("read a message file");
    s.replace("\r\n", "\n").replace('\n', "\r\n")
}

/// The UIDVALIDITY from `dovecot-uidlist` (`3 V<uidvalidity> N<next> …`).
fn uid_validity(dir: &Path) -> u32 {
    let text = std::fs::read_to_string(dir.join("dovecot-uidlist")).expect("dovecot-uidlist");
    let first = text.lines().next().unwrap_or_default();
    first
        .split(' ')
        .find_map(|f| f.strip_prefix('V'))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no V field in {first:?}"))
}

/// A raw POP3 client.
struct Pop {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Pop {
    fn connect(a: SocketAddr) -> Self {
        let s = TcpStream::connect(a).expect("connect to pop3");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut p = Self {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        };
        let greeting = p.line();
        assert!(greeting.starts_with("+OK"), "{greeting}");
        p
    }

    /// One reply line without CRLF; empty at EOF.
    fn line(&mut self) -> String {
        let mut buf = Vec::new();
        self.r.read_until(b'\n', &mut buf).expect("read a reply");
        String::from_utf8_lossy(&buf).trim_end().to_owned()
    }

    fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write");
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.line()
    }

    /// The lines of a multi-line reply after its first line, up to the `.`.
    fn multi(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let l = self.line();
            assert!(!l.is_empty() || out.len() < 100_000, "unterminated reply");
            if l == "." {
                return out;
            }
            out.push(l);
        }
    }

    /// True if the server closed the connection (reads EOF) within the timeout.
    fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        self.r.read_to_end(&mut rest).is_ok()
    }
}

const READ_ALL: &str = r#"
import poplib, sys, json
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
out = {}
p = poplib.POP3(host, port, timeout=30)
out["welcome"] = p.getwelcome().decode()
out["capa"] = sorted(p.capa().keys())
out["user"] = p.user(user).decode()
out["pass"] = p.pass_(pw).decode()
out["stat"] = list(p.stat())
out["list"] = [l.decode() for l in p.list()[1]]
out["list2"] = p.list(2).decode()
out["uidl"] = [l.decode() for l in p.uidl()[1]]
out["uidl3"] = p.uidl(3).decode()
out["top"] = (b"\r\n".join(p.top(1, 2)[1]) + b"\r\n").decode()
retr = []
for i in (1, 2, 3):
    resp, lines, octets = p.retr(i)
    retr.append({"resp": resp.decode(), "text": (b"\r\n".join(lines) + b"\r\n").decode()})
out["retr"] = retr
out["dele1"] = p.dele(1).decode()
out["stat_after_dele"] = list(p.stat())
try:
    p.retr(1)
    out["retr_deleted"] = "no error"
except poplib.error_proto as e:
    out["retr_deleted"] = str(e)
out["rset"] = p.rset().decode()
out["stat_after_rset"] = list(p.stat())
out["dele2"] = p.dele(2).decode()
# RSET undid the \Seen of the RETRs above (as Dovecot does); read 3 again.
p.retr(3)
out["noop"] = p.noop().decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

const AUTH_PLAIN: &str = r#"
import poplib, sys, json, base64
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
token = base64.b64encode(b"\0" + user.encode() + b"\0" + pw.encode()).decode()
out = {}
# AUTH PLAIN with an initial response.
p = poplib.POP3(host, port, timeout=30)
out["initial"] = p._shortcmd("AUTH PLAIN " + token).decode()
out["uidl_initial"] = [l.decode() for l in p.uidl()[1]]
p.quit()
# AUTH PLAIN with the credentials after the "+ " continuation; a cancelled one first.
p = poplib.POP3(host, port, timeout=30)
p._putcmd("AUTH PLAIN")
out["cont"] = p._getresp().decode()
p._putcmd("*")
try:
    p._getresp()
    out["cancel"] = "no error"
except poplib.error_proto as e:
    out["cancel"] = str(e)
p._putcmd("AUTH PLAIN")
p._getresp()
p._putcmd(token)
out["continued"] = p._getresp().decode()
out["stat_continued"] = list(p.stat())
p.quit()
# AUTH LOGIN.
p = poplib.POP3(host, port, timeout=30)
p._putcmd("AUTH LOGIN")
out["login_c1"] = p._getresp().decode()
p._putcmd(base64.b64encode(user.encode()).decode())
out["login_c2"] = p._getresp().decode()
p._putcmd(base64.b64encode(pw.encode()).decode())
out["login"] = p._getresp().decode()
p.quit()
print(json.dumps(out))
"#;

fn py_json(script: &str, a: SocketAddr, user: &str, pw: &str) -> serde_json::Value {
    let out = run_python(
        script,
        &[&a.ip().to_string(), &a.port().to_string(), user, pw],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe_output(&out)))
}

fn strs(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

#[test]
fn pop3_read_top_delete_rset_quit_and_stable_uidl() {
    let pm = install(Postern::builder());
    let sent = test_messages();
    deliver(&pm, ALICE, &sent);
    let dir = maildir(&pm, "alice");
    let on_disk: Vec<String> = files(&dir).iter().map(|f| crlf(f)).collect();
    let pop3 = addr(&pm, "imapd", "pop3");

    let r = py_json(READ_ALL, pop3, ALICE, ALICE_PW);
    assert!(r["welcome"].as_str().unwrap().starts_with("+OK"), "{r}");
    let capa = strs(&r["capa"]);
    for c in [
        "TOP",
        "UIDL",
        "USER",
        "SASL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "STLS",
        "IMPLEMENTATION",
    ] {
        assert!(capa.iter().any(|x| x == c), "{c} in {capa:?}");
    }
    assert!(r["pass"].as_str().unwrap().starts_with("+OK"), "{r}");

    // RETR gives each message byte for byte as sent, below the trace headers, and equal to
    // the file on disk; the order is delivery order.
    let retr: Vec<String> = r["retr"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap().to_owned())
        .collect();
    for (i, text) in retr.iter().enumerate() {
        assert!(text.ends_with(&sent[i]), "message {}:\n{text}", i + 1);
        assert!(text.contains("Received: "), "{text}");
        assert!(
            on_disk.contains(text),
            "message {} differs from the file",
            i + 1
        );
        let resp = r["retr"][i]["resp"].as_str().unwrap();
        assert_eq!(resp, format!("+OK {} octets", text.len()));
    }
    let sizes: Vec<usize> = retr.iter().map(String::len).collect();
    let total: usize = sizes.iter().sum();
    assert_eq!(r["stat"], serde_json::json!([3, total]), "{r}");
    let list = strs(&r["list"]);
    assert_eq!(
        list,
        (1..=3)
            .map(|i| format!("{i} {}", sizes[i - 1]))
            .collect::<Vec<_>>()
    );
    assert_eq!(r["list2"], format!("+OK 2 {}", sizes[1]));

    // UIDL: Dovecot's default `%08Xu%08Xv` (lower-case hex, as Dovecot's %X gives it), from
    // the UID and UIDVALIDITY in dovecot-uidlist.
    let v = uid_validity(&dir);
    let uidl = strs(&r["uidl"]);
    assert_eq!(
        uidl,
        (1..=3)
            .map(|i| format!("{i} {i:08x}{v:08x}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(r["uidl3"], format!("+OK 3 00000003{v:08x}"));

    // TOP 1 2: the header, the blank line, two body lines; dot-stuffing undone by poplib.
    let top = r["top"].as_str().unwrap();
    let header_end = retr[0].find("\r\n\r\n").unwrap() + 4;
    assert_eq!(
        top,
        format!("{}line 1\r\nline 2\r\n", &retr[0][..header_end])
    );

    assert_eq!(
        r["stat_after_dele"],
        serde_json::json!([2, total - sizes[0]])
    );
    assert!(r["retr_deleted"].as_str().unwrap().contains("-ERR"), "{r}");
    assert_eq!(r["stat_after_rset"], serde_json::json!([3, total]));
    assert!(r["quit"].as_str().unwrap().starts_with("+OK"), "{r}");

    // QUIT expunged message 2 only; 3 was retrieved after the RSET, so it is \Seen now,
    // 1 is not (its RETR was undone by RSET).
    assert_eq!(r["quit"], "+OK Logging out, messages deleted.");
    let left = files(&dir);
    assert_eq!(left.len(), 2, "{left:?}");
    for f in &left {
        let text = crlf(f);
        assert!(!text.contains("Subject: second"));
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let seen = name
            .rsplit_once(":2,")
            .is_some_and(|(_, flags)| flags.contains('S'));
        assert_eq!(seen, text.contains("Subject: third"), "\\Seen on {name}");
    }

    // A new session: the rest keep their UIDLs (renumbered 1, 2).
    let mut p = Pop::connect(pop3);
    assert_eq!(p.cmd(&format!("USER {ALICE}")), "+OK");
    assert!(p.cmd(&format!("PASS {ALICE_PW}")).starts_with("+OK"));
    assert!(p.cmd("UIDL").starts_with("+OK"));
    assert_eq!(
        p.multi(),
        vec![format!("1 00000001{v:08x}"), format!("2 00000003{v:08x}")]
    );
    assert_eq!(p.cmd("STAT"), format!("+OK 2 {}", sizes[0] + sizes[2]));
    assert!(p.cmd("QUIT").starts_with("+OK"));
}

#[test]
fn pop3_auth_plain_and_login() {
    let pm = install(Postern::builder());
    deliver(&pm, ALICE, &test_messages()[1..2]);
    let pop3 = addr(&pm, "imapd", "pop3");
    let r = py_json(AUTH_PLAIN, pop3, ALICE, ALICE_PW);
    assert_eq!(r["initial"], "+OK Logged in.", "{r}");
    assert_eq!(strs(&r["uidl_initial"]).len(), 1, "{r}");
    assert_eq!(r["cont"], "+ ", "{r}");
    assert!(r["cancel"].as_str().unwrap().starts_with("b'-ERR"), "{r}");
    assert_eq!(r["continued"], "+OK Logged in.", "{r}");
    assert_eq!(r["stat_continued"][0], 1, "{r}");
    assert!(r["login_c1"].as_str().unwrap().starts_with("+ "), "{r}");
    assert!(r["login_c2"].as_str().unwrap().starts_with("+ "), "{r}");
    assert_eq!(r["login"], "+OK Logged in.", "{r}");
}

const STLS: &str = r#"
import poplib, ssl, sys, json
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
out = {}
p = poplib.POP3(host, port, timeout=30)
out["capa_before"] = sorted(p.capa().keys())
for cmd in ("USER " + user, "AUTH PLAIN AGFAYg=="):
    try:
        p._shortcmd(cmd)
        out.setdefault("refused", []).append("accepted")
    except poplib.error_proto as e:
        out.setdefault("refused", []).append(e.args[0].decode())
out["stls"] = p.stls(ctx).decode()
out["capa_after"] = sorted(p.capa().keys())
out["user"] = p.user(user).decode()
out["pass"] = p.pass_(pw).decode()
out["stat"] = list(p.stat())
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

#[test]
fn pop3_stls_required_when_not_trusted() {
    let pm = install(Postern::builder().set("imapd.trusted_networks", Vec::<String>::new()));
    deliver(&pm, ALICE, &test_messages()[..1]);
    let r = py_json(STLS, addr(&pm, "imapd", "pop3"), ALICE, ALICE_PW);
    let before = strs(&r["capa_before"]);
    assert!(before.contains(&"STLS".to_owned()), "{r}");
    assert!(!before.contains(&"USER".to_owned()), "{r}");
    for refused in strs(&r["refused"]) {
        assert_eq!(
            refused, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.",
            "{r}"
        );
    }
    assert!(r["stls"].as_str().unwrap().starts_with("+OK"), "{r}");
    let after = strs(&r["capa_after"]);
    assert!(
        after.contains(&"USER".to_owned()) && !after.contains(&"STLS".to_owned()),
        "{r}"
    );
    assert!(r["pass"].as_str().unwrap().starts_with("+OK"), "{r}");
    assert_eq!(r["stat"][0], 1, "{r}");
}

const POP3S: &str = r#"
import poplib, ssl, sys, json
host, port, user, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
out = {}
p = poplib.POP3_SSL(host, port, timeout=30, context=ctx)
out["capa"] = sorted(p.capa().keys())
try:
    p._shortcmd("STLS")
    out["stls"] = "accepted"
except poplib.error_proto as e:
    out["stls"] = e.args[0].decode()
out["user"] = p.user(user).decode()
out["pass"] = p.pass_(pw).decode()
out["stat"] = list(p.stat())
resp, lines, octets = p.retr(1)
out["retr"] = (b"\r\n".join(lines) + b"\r\n").decode()
out["quit"] = p.quit().decode()
print(json.dumps(out))
"#;

#[test]
fn pop3s_implicit_tls() {
    let pm = install(Postern::builder().set("imapd.trusted_networks", Vec::<String>::new()));
    let sent = test_messages();
    deliver(&pm, ALICE, &sent[2..]);
    let r = py_json(POP3S, addr(&pm, "imapd", "pop3s"), ALICE, ALICE_PW);
    let capa = strs(&r["capa"]);
    assert!(
        capa.contains(&"USER".to_owned()) && !capa.contains(&"STLS".to_owned()),
        "{r}"
    );
    assert!(r["stls"].as_str().unwrap().starts_with("-ERR"), "{r}");
    assert!(r["pass"].as_str().unwrap().starts_with("+OK"), "{r}");
    assert_eq!(r["stat"][0], 1, "{r}");
    assert!(r["retr"].as_str().unwrap().ends_with(&sent[2]), "{r}");
}

#[test]
fn pop3_wrong_password_garbage_and_long_lines() {
    let mut pm = install(Postern::builder());
    let pop3 = addr(&pm, "imapd", "pop3");

    // Wrong passwords: [AUTH]; the third failure (max_auth_failures) closes the connection.
    let mut p = Pop::connect(pop3);
    for i in 1..=3 {
        assert_eq!(p.cmd(&format!("USER {ALICE}")), "+OK");
        assert_eq!(
            p.cmd("PASS not the password"),
            "-ERR [AUTH] Authentication failed.",
            "attempt {i}"
        );
    }
    assert!(p.closed());
    let mut p = Pop::connect(pop3);
    assert_eq!(p.cmd("PASS x"), "-ERR No username given.");
    assert_eq!(p.cmd("USER nobody@example.org"), "+OK");
    assert_eq!(p.cmd("PASS x"), "-ERR [AUTH] Authentication failed.");

    // Garbage gets a clear -ERR and the session goes on.
    for bad in [
        &b"\r\n"[..],
        b"XYZZY\r\n",
        b"NO\0OP\r\n",
        b"\xff\xfe\xfd\r\n",
        b"STAT\r\n",
        b"RETR 1\r\n",
        b"AUTH CRAM-MD5\r\n",
    ] {
        p.send(bad);
        let l = p.line();
        assert!(l.starts_with("-ERR "), "{bad:?} -> {l}");
    }
    // A bare LF ends a line too (as in Dovecot).
    p.send(b"NOOP\n");
    assert_eq!(p.line(), "+OK");
    // 300 octets: over RFC 2449's 255.
    let long = format!("USER {}\r\n", "a".repeat(300));
    p.send(long.as_bytes());
    assert_eq!(p.line(), "-ERR Line too long.");
    assert_eq!(p.cmd("NOOP"), "+OK");
    // Pipelined commands are answered in order.
    p.send(b"NOOP\r\nCAPA\r\nNOOP\r\n");
    assert_eq!(p.line(), "+OK");
    assert!(p.line().starts_with("+OK"));
    let capa = p.multi();
    assert!(capa.contains(&"PIPELINING".to_owned()), "{capa:?}");
    assert_eq!(p.line(), "+OK");
    // A line that never ends is cut off.
    let flood = vec![b'x'; 200 * 1024];
    let _ = p.w.write_all(&flood);
    // The reply may be lost to the reset caused by the unread rest; the close may not.
    let mut last = Vec::new();
    let r = p.r.read_to_end(&mut last);
    assert!(
        !matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the connection stayed open"
    );
    let last = String::from_utf8_lossy(&last);
    assert!(
        last.is_empty() || last == "-ERR Line too long, closing connection.\r\n",
        "{last}"
    );

    // Still serving others.
    let mut p = Pop::connect(pop3);
    assert_eq!(p.cmd(&format!("USER {ALICE}")), "+OK");
    assert_eq!(p.cmd(&format!("PASS {ALICE_PW}")), "+OK Logged in.");
    assert_eq!(p.cmd("STAT"), "+OK 0 0");
    assert_eq!(p.cmd("RETR 1"), "-ERR There's no message 1.");
    assert_eq!(p.cmd("QUIT"), "+OK Logging out.");

    // authd down: a temporary error, not a failed login.
    pm.stop_daemon("authd");
    let mut p = Pop::connect(pop3);
    assert_eq!(p.cmd(&format!("USER {ALICE}")), "+OK");
    let r = p.cmd(&format!("PASS {ALICE_PW}"));
    assert!(r.starts_with("-ERR [SYS/TEMP] "), "{r}");
    assert_eq!(p.cmd("NOOP"), "+OK");
}

#[test]
fn pop3_snapshot_at_login_and_message_deleted_meanwhile() {
    let pm = install(Postern::builder());
    let sent = test_messages();
    deliver(&pm, ALICE, &sent[..2]);
    let dir = maildir(&pm, "alice");
    let pop3 = addr(&pm, "imapd", "pop3");

    let mut a = Pop::connect(pop3);
    assert_eq!(a.cmd(&format!("USER {ALICE}")), "+OK");
    assert_eq!(a.cmd(&format!("PASS {ALICE_PW}")), "+OK Logged in.");
    assert!(a.cmd("STAT").starts_with("+OK 2 "));

    // A delivery during the session is not shown until the next one.
    deliver(&pm, ALICE, &sent[2..]);
    assert!(a.cmd("STAT").starts_with("+OK 2 "));
    assert_eq!(a.cmd("LIST 3"), "-ERR There's no message 3.");

    // Another client removes message 1 behind our back: -ERR for it, no crash.
    let first = files(&dir)
        .into_iter()
        .find(|f| crlf(f).contains("Subject: first"))
        .expect("message 1 on disk");
    std::fs::remove_file(&first).expect("remove message 1");
    assert_eq!(a.cmd("RETR 1"), "-ERR Message 1 expunged.");
    assert!(a.cmd("RETR 2").starts_with("+OK"));
    let body = a.multi();
    assert!(body.contains(&"Subject: second".to_owned()), "{body:?}");
    // Deleting it anyway is fine; QUIT removes 2 too.
    assert!(a.cmd("DELE 1").starts_with("+OK"));
    assert!(a.cmd("DELE 2").starts_with("+OK"));
    assert!(a.cmd("QUIT").starts_with("+OK"));

    let mut b = Pop::connect(pop3);
    assert_eq!(b.cmd(&format!("USER {ALICE}")), "+OK");
    assert_eq!(b.cmd(&format!("PASS {ALICE_PW}")), "+OK Logged in.");
    assert!(b.cmd("STAT").starts_with("+OK 1 "));
    assert!(b.cmd("TOP 1 0").starts_with("+OK"));
    let top = b.multi();
    assert!(top.contains(&"Subject: third".to_owned()), "{top:?}");
    assert_eq!(top.last().map(String::as_str), Some(""), "{top:?}");
    assert!(b.cmd("QUIT").starts_with("+OK"));
    assert_eq!(files(&dir).len(), 1);
}

#[test]
#[ignore = "needs Debian's fetchmail (run .ci/run)"]
fn fetchmail_pulls_over_pop3() {
    let pm = install(Postern::builder());
    let sent = test_messages();
    deliver(&pm, ALICE, &sent);
    let pop3 = addr(&pm, "imapd", "pop3");
    let out_file = pm.dir().join("fetched.mbox");
    let rc = pm.dir().join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no syslog\npoll 127.0.0.1 protocol pop3 port {port} auth password\n  user \"{ALICE}\" password \"{ALICE_PW}\" is root here\n  sslproto '' fetchall nokeep\n  mda \"cat >> {file}\"\n",
            port = pop3.port(),
            file = out_file.display()
        ),
    )
    .expect("write fetchmailrc");
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod fetchmailrc");
    let mut cmd = std::process::Command::new("fetchmail");
    cmd.arg("--fetchmailrc")
        .arg(&rc)
        .arg("--idfile")
        .arg(pm.dir().join("fetchids"))
        .arg("--pidfile")
        .arg(pm.dir().join("fetchmail.pid"))
        .args(["-v", "--nodetach"])
        .env("FETCHMAILHOME", pm.dir())
        .env("HOME", pm.dir());
    let out = postern_e2e::run_command(&mut cmd, None, postern_e2e::COMMAND_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let got = std::fs::read_to_string(&out_file).expect("fetchmail wrote the mbox");
    for s in [
        "Subject: first",
        "Subject: second",
        "Subject: third",
        ".leading dot",
        "only a dot above",
    ] {
        assert!(got.contains(s), "{s} in {got}");
    }
    // nokeep: deleted from the server.
    assert!(files(&maildir(&pm, "alice")).is_empty());
}

/// Runs Debian's Dovecot POP3 server pre-authenticated on the same Maildir (its userdb
/// lookups going to our authd, as in `dovecot.rs`) and returns its answer to UIDL.
fn dovecot_uidl(pm: &Postern, user: &str) -> Vec<String> {
    let conf = pm.dir().join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "mail_location = maildir:~/Maildir\nfirst_valid_uid = 0\nssl = no\nbase_dir = {run}\nlog_path = {dir}/dovecot.log\npop3_uidl_format = %08Xu%08Xv\n",
            run = pm.run_dir().display(),
            dir = pm.dir().display()
        ),
    )
    .expect("write dovecot.conf");
    // Dovecot refuses uid 0 from a userdb; authd answers 65534 here.
    let mut chown = std::process::Command::new("chown");
    chown.args(["-R", "65534:65534"]).arg(pm.dir().join("mail"));
    let out = postern_e2e::run_command(&mut chown, None, postern_e2e::COMMAND_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let mut cmd = std::process::Command::new("doveadm");
    cmd.arg("-c").arg(&conf).args(["exec", "pop3", "-u", user]);
    let out = postern_e2e::run_command(
        &mut cmd,
        Some(b"UIDL\r\nQUIT\r\n"),
        postern_e2e::COMMAND_TIMEOUT,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("+OK"), "{}", describe_output(&out));
    text.lines()
        .map(str::trim_end)
        .filter(|l| {
            l.split_once(' ')
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
#[ignore = "needs Debian's dovecot-pop3d (run .ci/run)"]
fn uidl_matches_dovecot_on_the_same_maildir() {
    let pm = install(
        Postern::builder()
            .set("authd.userdb.uid", 65534)
            .set("authd.userdb.gid", 65534),
    );
    deliver(&pm, ALICE, &test_messages());
    let pop3 = addr(&pm, "imapd", "pop3");
    // Delete message 2, so the UIDs have a gap.
    let mut p = Pop::connect(pop3);
    assert_eq!(p.cmd(&format!("USER {ALICE}")), "+OK");
    assert_eq!(p.cmd(&format!("PASS {ALICE_PW}")), "+OK Logged in.");
    assert!(p.cmd("DELE 2").starts_with("+OK"));
    assert!(p.cmd("QUIT").starts_with("+OK"));
    let mut p = Pop::connect(pop3);
    assert_eq!(p.cmd(&format!("USER {ALICE}")), "+OK");
    assert_eq!(p.cmd(&format!("PASS {ALICE_PW}")), "+OK Logged in.");
    assert!(p.cmd("UIDL").starts_with("+OK"));
    let ours = p.multi();
    assert_eq!(ours.len(), 2, "{ours:?}");
    assert!(p.cmd("QUIT").starts_with("+OK"));
    assert_eq!(dovecot_uidl(&pm, ALICE), ours);
}

#[test]
fn pop3_login_timeout_closes() {
    let pm = Postern::builder()
        .set("imapd.login_timeout_secs", 1)
        .daemons(&["authd", "imapd"])
        .start();
    let mut p = Pop::connect(addr(&pm, "imapd", "pop3"));
    assert_eq!(p.cmd("NOOP"), "+OK");
    let started = Instant::now();
    assert_eq!(p.line(), "-ERR Disconnected: login timeout.");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(p.closed());
}
