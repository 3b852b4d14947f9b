//! lmtp-deliver end to end: authd + lmtp-deliver started from a temp install, spoken to
//! over the LMTP Unix socket; results read from the Maildir tree on disk.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_e2e::{Postern, PosternBuilder, SmtpSink, describe_output};

/// A raw LMTP connection.
pub(crate) struct Lmtp {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Lmtp {
    pub(crate) fn connect(path: &Path) -> Self {
        let s = UnixStream::connect(path).expect("connect to the lmtp socket");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut c = Self {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220 "), "{greeting}");
        c
    }

    /// Reads one (possibly multi-line) reply; returns its last line.
    pub(crate) fn reply(&mut self) -> String {
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).expect("read a reply");
            assert!(n > 0, "connection closed while waiting for a reply");
            if line.as_bytes().get(3) != Some(&b'-') {
                return line.trim_end().to_owned();
            }
        }
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).expect("write");
    }

    pub(crate) fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.reply()
    }

    /// A whole transaction; returns the RCPT replies and the replies after DATA.
    pub(crate) fn transaction(
        &mut self,
        from: &str,
        rcpts: &[&str],
        message: &str,
    ) -> (Vec<String>, Vec<String>) {
        assert!(self.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
        let rcpt: Vec<String> = rcpts
            .iter()
            .map(|r| self.cmd(&format!("RCPT TO:<{r}>")))
            .collect();
        let accepted = rcpt.iter().filter(|r| r.starts_with("250")).count();
        if accepted == 0 {
            assert!(self.cmd("RSET").starts_with("250"));
            return (rcpt, Vec::new());
        }
        let go = self.cmd("DATA");
        assert!(go.starts_with("354"), "{go}");
        let mut body = message.replace("\r\n", "\n").replace('\n', "\r\n");
        if !body.ends_with("\r\n") {
            body.push_str("\r\n");
        }
        let body = body.replace("\r\n.", "\r\n..");
        self.send(body.as_bytes());
        self.send(b".\r\n");
        let after = (0..accepted).map(|_| self.reply()).collect();
        (rcpt, after)
    }
}

pub(crate) fn lmtp_install(builder: PosternBuilder) -> Postern {
    let pm = builder.daemons(&["authd", "lmtp-deliver"]).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    for (u, p) in [
        ("alice", "correct horse battery"),
        ("bob", "another good passphrase"),
    ] {
        let out = pm.mailctl_stdin(
            &["user", "add", &format!("{u}@example.org")],
            &format!("{p}\n"),
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    pm
}

pub(crate) fn maildir(pm: &Postern, user: &str) -> PathBuf {
    pm.dir().join("mail/example.org").join(user).join("Maildir")
}

/// The messages (file contents) in `sub` ("new", "cur", ".Folder/new", …) of a Maildir.
pub(crate) fn messages(dir: &Path, sub: &str) -> Vec<String> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(dir.join(sub))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        std::fs::read_to_string(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.into_iter().map(|(_, c)| c).collect()
}

fn file_names(dir: &Path, sub: &str) -> Vec<String> {
    std::fs::read_dir(dir.join(sub))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn msg(subject: &str, body: &str) -> String {
    format!(
        "From: Sender <sender@remote.test>\nTo: alice@example.org\nSubject: {subject}\nMessage-ID: <{subject}@remote.test>\n\n{body}\n"
    )
}

#[test]
fn one_transaction_accepted_unknown_and_over_quota() {
    let pm = lmtp_install(Postern::builder());
    pm.mailctl_ok(&["user", "quota", "bob@example.org", "1K"]);
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    let lhlo = c.cmd("LHLO client.test");
    assert!(lhlo.starts_with("250 "), "{lhlo}");
    let big = msg("hello", &"x".repeat(2000));
    let (rcpt, after) = c.transaction(
        "sender@remote.test",
        &["alice@example.org", "nobody@example.org", "bob@example.org"],
        &big,
    );
    assert!(rcpt[0].starts_with("250 2.1.5"), "{rcpt:?}");
    assert!(rcpt[1].starts_with("550 5.1.1"), "{rcpt:?}");
    assert!(rcpt[2].starts_with("250"), "{rcpt:?}");
    assert_eq!(
        after.len(),
        2,
        "one reply per accepted recipient: {after:?}"
    );
    assert!(
        after[0].starts_with("250 2.0.0") && after[0].contains("alice@example.org"),
        "{after:?}"
    );
    assert!(after[1].starts_with("552 5.2.2"), "{after:?}");
    let inbox = messages(&maildir(&pm, "alice"), "new");
    assert_eq!(inbox.len(), 1);
    let m = &inbox[0];
    assert!(m.starts_with("Return-Path: <sender@remote.test>\nDelivered-To: alice@example.org\nReceived: from client.test"), "{m}");
    assert!(
        m.contains("Subject: hello\n") && m.contains(&"x".repeat(2000)) && !m.contains('\r'),
        "stored with LF line ends"
    );
    assert!(messages(&maildir(&pm, "bob"), "new").is_empty());
    // With a SIZE hint the quota is enforced at RCPT already.
    assert!(
        c.cmd("MAIL FROM:<s@remote.test> SIZE=5000")
            .starts_with("250")
    );
    let r = c.cmd("RCPT TO:<bob@example.org>");
    assert!(r.starts_with("552 5.2.2"), "{r}");
    assert!(c.cmd("RSET").starts_with("250"));
    // A Dovecot-compatible name and quota bookkeeping.
    let name = file_names(&maildir(&pm, "alice"), "new")
        .pop()
        .expect("a file");
    assert!(name.contains(",S=") && name.contains(",W="), "{name}");
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn over_quota_can_be_a_temporary_failure_and_authd_down_is_451() {
    let mut pm = lmtp_install(Postern::builder().set("lmtp.quota_full_tempfail", true));
    pm.mailctl_ok(&["user", "quota", "bob@example.org", "1K"]);
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let (_, after) = c.transaction(
        "s@remote.test",
        &["bob@example.org"],
        &msg("big", &"y".repeat(3000)),
    );
    assert!(after[0].starts_with("452 4.2.2"), "{after:?}");
    pm.stop_daemon("authd");
    assert!(c.cmd("MAIL FROM:<s@remote.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<alice@example.org>");
    assert!(r.starts_with("451 4.3.0"), "{r}");
}

#[test]
fn plus_addressing_files_into_an_existing_folder() {
    let pm = lmtp_install(Postern::builder());
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    // First delivery creates the Maildir; then make the folder as an IMAP client would.
    let (_, after) = c.transaction("s@remote.test", &["alice@example.org"], &msg("first", "x"));
    assert!(after[0].starts_with("250"));
    let lists = maildir(&pm, "alice").join(".Lists");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(lists.join(sub)).expect("mkdir");
    }
    std::fs::write(lists.join("maildirfolder"), b"").expect("maildirfolder");
    let (rcpt, after) = c.transaction(
        "s@remote.test",
        &["alice+lists@example.org", "alice+nosuch@example.org"],
        &msg("plus", "x"),
    );
    assert!(rcpt.iter().all(|r| r.starts_with("250")), "{rcpt:?}");
    assert!(after.iter().all(|r| r.starts_with("250")), "{after:?}");
    assert_eq!(messages(&maildir(&pm, "alice"), ".Lists/new").len(), 1);
    let inbox = messages(&maildir(&pm, "alice"), "new");
    assert_eq!(inbox.len(), 2, "the unknown folder falls back to INBOX");
    assert!(
        inbox
            .iter()
            .any(|m| m.contains("Delivered-To: alice+nosuch@example.org"))
    );
}

const SCRIPT: &str = r#"require ["fileinto", "mailbox", "imap4flags", "variables", "vacation", "reject", "envelope", "copy"];
if header :contains "subject" "work" { fileinto :create "Work"; stop; }
if envelope :is "from" "spammer@remote.test" { discard; stop; }
if header :is "subject" "forward me" { redirect "carol@elsewhere.test"; stop; }
if header :is "subject" "reject me" { reject "No thanks."; stop; }
if header :matches "subject" "flag *" { addflag "\\Flagged"; addflag "$Important"; keep; stop; }
if envelope :is "from" "friend@remote.test" { vacation :days 3 :subject "Away" "I am away until Monday."; }
"#;

#[test]
fn sieve_actions() {
    let sink = SmtpSink::start();
    let pm = lmtp_install(Postern::builder().set("lmtp.submit_to", sink.addr().to_string()));
    let dir = pm.dir().join("script.sieve");
    std::fs::write(&dir, SCRIPT).expect("write script");
    pm.mailctl_ok(&[
        "sieve",
        "put",
        "alice@example.org",
        dir.to_str().expect("utf8"),
    ]);
    assert!(
        pm.mailctl_ok(&["sieve", "get", "alice@example.org"])
            .contains("fileinto :create")
    );
    let md = maildir(&pm, "alice");
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let mut deliver = |from: &str, subject: &str| {
        let (_, after) = c.transaction(from, &["alice@example.org"], &msg(subject, "body"));
        after.into_iter().next().expect("a reply")
    };
    assert!(deliver("a@remote.test", "about work").starts_with("250"));
    assert_eq!(messages(&md, ".Work/new").len(), 1, "fileinto :create");
    assert!(md.join(".Work/maildirfolder").exists());
    assert!(deliver("spammer@remote.test", "buy").starts_with("250"));
    assert!(deliver("a@remote.test", "forward me").starts_with("250"));
    let r = deliver("a@remote.test", "reject me");
    assert!(
        r.starts_with("550 5.7.1") && r.contains("No thanks."),
        "{r}"
    );
    assert!(deliver("a@remote.test", "flag this").starts_with("250"));
    let flagged = file_names(&md, "cur");
    assert_eq!(flagged.len(), 1, "flags put the message in cur/");
    assert!(flagged[0].ends_with(":2,Fa"), "{flagged:?}");
    assert!(
        std::fs::read_to_string(md.join("dovecot-keywords"))
            .expect("keywords")
            .contains("0 $Important")
    );
    assert!(deliver("friend@remote.test", "hello").starts_with("250"));
    assert!(deliver("friend@remote.test", "hello again").starts_with("250"));
    // INBOX: the two from the friend only (spam discarded, forward redirected, reject refused).
    let inbox = messages(&md, "new");
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    let sent = sink.wait_for(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let sent_now = sink.messages();
    assert_eq!(
        sent_now.len(),
        2,
        "one redirect and exactly one vacation reply: {sent_now:?}"
    );
    let redirect = sent
        .iter()
        .find(|m| m.to == ["carol@elsewhere.test"])
        .expect("the redirect");
    assert_eq!(redirect.from, "a@remote.test");
    assert!(
        redirect.data.contains("Subject: forward me")
            && redirect.data.contains("Delivered-To: alice@example.org")
    );
    assert!(!redirect.data.contains("Return-Path:"));
    let vacation = sent
        .iter()
        .find(|m| m.to == ["friend@remote.test"])
        .expect("the vacation reply");
    assert_eq!(vacation.from, "", "vacation replies use the null sender");
    assert!(
        vacation.data.contains("Subject: Away")
            && vacation.data.contains("I am away until Monday."),
        "{}",
        vacation.data
    );
    assert!(vacation.data.contains("Auto-Submitted: auto-replied"));
    assert!(
        vacation.data.contains("In-Reply-To: <hello@remote.test>"),
        "{}",
        vacation.data
    );
    // A list message never gets a vacation reply.
    let list = "From: friend@remote.test\nTo: alice@example.org\nList-Id: <l.remote.test>\nSubject: list\n\nx\n";
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    c.transaction("other-friend@remote.test", &["alice@example.org"], list);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn a_broken_script_never_loses_mail() {
    let pm = lmtp_install(Postern::builder());
    let bad = pm.dir().join("bad.sieve");
    std::fs::write(&bad, "if header :contains \"subject\" { keep").expect("write");
    let out = pm.mailctl(&[
        "sieve",
        "put",
        "alice@example.org",
        bad.to_str().expect("utf8"),
    ]);
    assert!(!out.status.success(), "a broken script must be refused");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        describe_output(&out)
    );
    let out = pm.mailctl(&["sieve", "check", bad.to_str().expect("utf8")]);
    assert!(!out.status.success());
    // Put one in place behind mailctl's back, as a hand edit would.
    let home = pm.dir().join("mail/example.org/alice");
    std::fs::create_dir_all(&home).expect("home");
    std::fs::write(
        home.join(".dovecot.sieve"),
        "require \"fileinto\";\nfileinto \"x\"\nkeep;",
    )
    .expect("write");
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let (_, after) = c.transaction(
        "s@remote.test",
        &["alice@example.org"],
        &msg("still here", "x"),
    );
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(messages(&maildir(&pm, "alice"), "new").len(), 1);
    pm.daemon("lmtp-deliver")
        .wait_for("does not compile", Duration::from_secs(5));
    // A script that fails at run time (reject + keep conflict) keeps the message too.
    std::fs::write(
        home.join(".dovecot.sieve"),
        "require \"reject\";\nkeep;\nreject \"no\";",
    )
    .expect("write");
    let (_, after) = c.transaction(
        "s@remote.test",
        &["alice@example.org"],
        &msg("runtime", "x"),
    );
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(messages(&maildir(&pm, "alice"), "new").len(), 2);
}

#[test]
fn bad_input_gets_the_right_codes_and_the_daemon_keeps_serving() {
    let pm = lmtp_install(Postern::builder().set("lmtp.max_message_size", 20_000));
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    assert!(
        c.cmd("EHLO client.test").starts_with("500"),
        "EHLO is not LMTP"
    );
    assert!(
        c.cmd("MAIL FROM:<a@b.test>").starts_with("503"),
        "MAIL before LHLO"
    );
    c.cmd("LHLO client.test");
    // An over-long command line.
    let long = format!("RCPT TO:<{}@example.org>", "a".repeat(10_000));
    assert!(c.cmd(&long).starts_with("500 5.5.2"));
    // NUL in a command.
    assert!(c.cmd("NOOP\0x").starts_with("500"));
    // Pipelined junk: every command answered in order.
    c.send(b"FOO\r\nNOOP\r\nMAIL FROM:<bad address>\r\nRSET\r\n");
    let replies: Vec<String> = (0..4).map(|_| c.reply()).collect();
    assert!(
        replies[0].starts_with("500")
            && replies[1].starts_with("250")
            && replies[2].starts_with("501")
            && replies[3].starts_with("250"),
        "{replies:?}"
    );
    // Bare LF in the body: stored with normalised line ends.
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("DATA");
    c.send(b"Subject: bare\nX: y\r\n\r\nline1\nline2\r\n.\r\n");
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    // NUL in the body: refused per recipient.
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("RCPT TO:<bob@example.org>");
    c.cmd("DATA");
    c.send(b"Subject: nul\r\n\r\nbad\0byte\r\n.\r\n");
    let (a, b) = (c.reply(), c.reply());
    assert!(
        a.starts_with("554 5.6.0") && b.starts_with("554 5.6.0"),
        "{a} / {b}"
    );
    // Over the size limit: consumed, refused, still in step.
    let (_, after) = c.transaction(
        "s@remote.test",
        &["alice@example.org"],
        &msg("huge", &"z".repeat(30_000)),
    );
    assert!(after[0].starts_with("552 5.3.4"), "{after:?}");
    assert!(
        c.cmd("MAIL FROM:<s@remote.test> SIZE=999999")
            .starts_with("552 5.3.4")
    );
    assert!(c.cmd("NOOP").starts_with("250"));
    let inbox = messages(&maildir(&pm, "alice"), "new");
    assert_eq!(inbox.len(), 1, "only the bare-LF message was stored");
    assert!(
        inbox[0].contains("Subject: bare\nX: y\n\nline1\nline2\n"),
        "{}",
        inbox[0]
    );
    // A new connection is served normally.
    let mut c2 = Lmtp::connect(&pm.socket("lmtp"));
    c2.cmd("LHLO client.test");
    let (_, after) = c2.transaction("s@remote.test", &["bob@example.org"], &msg("fine", "x"));
    assert!(after[0].starts_with("250"));
}

#[test]
fn a_killed_daemon_leaves_no_partial_message_and_keeps_what_it_acknowledged() {
    let mut pm = lmtp_install(Postern::builder());
    let md = maildir(&pm, "alice");
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let (_, after) = c.transaction("s@remote.test", &["alice@example.org"], &msg("acked", "x"));
    assert!(after[0].starts_with("250"));
    // Kill it in the middle of the next message's data.
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("DATA");
    c.send(format!("Subject: half\r\n\r\n{}\r\n", "h".repeat(100_000)).as_bytes());
    pm.daemon("lmtp-deliver")
        .signal(nix::sys::signal::Signal::SIGKILL);
    pm.daemon("lmtp-deliver")
        .wait_exit(Duration::from_secs(10))
        .expect("it died");
    let new = messages(&md, "new");
    assert_eq!(new.len(), 1, "exactly the acknowledged message");
    assert!(new[0].contains("Subject: acked"));
    assert!(messages(&md, "cur").is_empty());
    // Restarted, it serves again (the stale socket is replaced).
    pm.restart_daemon("lmtp-deliver");
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let (_, after) = c.transaction(
        "s@remote.test",
        &["alice@example.org"],
        &msg("after restart", "x"),
    );
    assert!(after[0].starts_with("250"));
    assert_eq!(messages(&md, "new").len(), 2);
}

#[test]
fn lmtp_over_tcp_too() {
    use std::io::Read;
    let pm = lmtp_install(Postern::builder().set("lmtp.listen", vec!["127.0.0.1:0"]));
    let a = pm.daemon("lmtp-deliver").listening_addrs()[0];
    let mut s = std::net::TcpStream::connect(a).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"LHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<bob@example.org>\r\nDATA\r\n",
    )
    .expect("write");
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while !got.contains("354") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "{got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    s.write_all(b"Subject: tcp\r\n\r\nx\r\n.\r\n")
        .expect("write");
    let mut tail = String::new();
    while !tail.contains("\r\n") {
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0);
        tail.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(tail.starts_with("250 2.0.0"), "{tail}");
    assert_eq!(messages(&maildir(&pm, "bob"), "new").len(), 1);
}
