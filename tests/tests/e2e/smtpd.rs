//! smtpd end to end: authd + lmtp-deliver + smtpd from a temp install; Python's smtplib and
//! raw sockets as clients; results read from the Maildir tree.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use postern_e2e::{Postern, PosternBuilder, describe_output, run_python};

use crate::lmtp::{maildir, messages};

fn install(builder: PosternBuilder) -> Postern {
    let pm = builder.daemons(&["authd", "lmtp-deliver", "smtpd"]).start();
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
    pm.mailctl_ok(&[
        "alias",
        "add",
        "team@example.org",
        "alice@example.org",
        "bob@example.org",
    ]);
    pm.mailctl_ok(&["alias", "add", "all@example.org", "team@example.org"]);
    pm
}

fn addr(pm: &Postern, door: &str) -> SocketAddr {
    pm.daemon("smtpd")
        .listening_addrs_matching(&format!("({door})"))[0]
}

/// Waits until `dir/sub` holds `n` files.
fn wait_messages(dir: &std::path::Path, sub: &str, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let m = messages(dir, sub);
        if m.len() >= n || std::time::Instant::now() > deadline {
            assert_eq!(m.len(), n, "messages in {}/{sub}", dir.display());
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SEND: &str = r#"
import smtplib, ssl, sys
from email.message import EmailMessage
host, port, mode, user, password, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
rcpts = sys.argv[7].split(",")
msg = EmailMessage()
msg["From"] = sender
msg["To"] = ", ".join(rcpts)
msg["Subject"] = "hello via " + mode
msg.set_content("Hi there.\n.leading dot line\n")
msg.add_attachment(b"\x00\x01binary" * 100, maintype="application", subtype="octet-stream", filename="a.bin")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
if mode == "smtps":
    s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=30)
else:
    s = smtplib.SMTP(host, port, timeout=30)
s.ehlo("client.test")
if mode == "starttls":
    print("AUTH-BEFORE-TLS", "auth" in s.esmtp_features)
    s.starttls(context=ctx)
    s.ehlo("client.test")
if user:
    s.login(user, password)
try:
    refused = s.send_message(msg, from_addr=sender, to_addrs=rcpts)
    print("REFUSED", sorted(refused.items()))
except smtplib.SMTPRecipientsRefused as e:
    print("ALLREFUSED", sorted((k, v[0]) for k, v in e.recipients.items()))
except smtplib.SMTPSenderRefused as e:
    print("SENDERREFUSED", e.smtp_code)
s.quit()
"#;

fn send(a: SocketAddr, mode: &str, user: &str, pass: &str, from: &str, rcpts: &str) -> String {
    let out = run_python(
        SEND,
        &[
            &a.ip().to_string(),
            &a.port().to_string(),
            mode,
            user,
            pass,
            from,
            rcpts,
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn mx_and_submission_deliver_into_maildirs_with_aliases() {
    let pm = install(Postern::builder().set("smtpd.trusted_networks", Vec::<String>::new()));
    // MX: mail for our domains from anyone, aliases fanned out, unknown users refused.
    let out = send(
        addr(&pm, "smtp"),
        "plain",
        "",
        "",
        "someone@remote.test",
        "alice@example.org,all@example.org,nobody@example.org",
    );
    assert!(
        out.contains("REFUSED [('nobody@example.org', (550"),
        "{out}"
    );
    let alice = wait_messages(&maildir(&pm, "alice"), "new", 1);
    wait_messages(&maildir(&pm, "bob"), "new", 1);
    let m = &alice[0];
    assert!(
        m.contains("Subject: hello via plain") && m.contains("filename=\"a.bin\""),
        "{m}"
    );
    assert!(
        m.contains("\n..leading dot line") || m.contains("\n.leading dot line"),
        "{m}"
    );
    assert!(
        m.contains("by mail.example.test (Postern) with ESMTP"),
        "{m}"
    );
    // Submission: STARTTLS, then AUTH; AUTH is not offered before TLS.
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "bob@example.org",
        "another good passphrase",
        "bob@example.org",
        "alice@example.org",
    );
    assert!(
        out.contains("AUTH-BEFORE-TLS False") && out.contains("REFUSED []"),
        "{out}"
    );
    let alice = wait_messages(&maildir(&pm, "alice"), "new", 2);
    assert!(
        alice
            .iter()
            .any(|m| m.contains("with ESMTPSA") && m.contains("(using ")),
        "{alice:?}"
    );
    assert!(
        !alice
            .iter()
            .any(|m| m.contains("bob@example.org\r\n\t(authenticated")),
        "login not in headers by default"
    );
    // 465: implicit TLS.
    let out = send(
        addr(&pm, "submissions"),
        "smtps",
        "alice@example.org",
        "correct horse battery",
        "alice@example.org",
        "bob@example.org",
    );
    assert!(out.contains("REFUSED []"), "{out}");
    wait_messages(&maildir(&pm, "bob"), "new", 2);
}

#[test]
fn never_an_open_relay_and_no_spoofing_on_submission() {
    let pm = install(Postern::builder().set("smtpd.trusted_networks", Vec::<String>::new()));
    for door in ["smtp", "submission"] {
        let out = send(
            addr(&pm, door),
            "plain",
            "",
            "",
            "someone@remote.test",
            "victim@elsewhere.test",
        );
        assert!(
            out.contains("554") || out.contains("SENDERREFUSED 530"),
            "{door}: {out}"
        );
    }
    let out = send(
        addr(&pm, "smtp"),
        "plain",
        "",
        "",
        "someone@remote.test",
        "victim@elsewhere.test",
    );
    assert!(
        out.contains("ALLREFUSED [('victim@elsewhere.test', 554"),
        "{out}"
    );
    // Submission without AUTH: 530 at MAIL.
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "",
        "",
        "alice@example.org",
        "bob@example.org",
    );
    assert!(out.contains("SENDERREFUSED 530"), "{out}");
    // Authenticated, but sending as someone else: 553.
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "bob@example.org",
        "another good passphrase",
        "alice@example.org",
        "alice@example.org",
    );
    assert!(out.contains("SENDERREFUSED 553"), "{out}");
    // As an alias the user receives: allowed.
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "bob@example.org",
        "another good passphrase",
        "team@example.org",
        "alice@example.org",
    );
    assert!(out.contains("REFUSED []"), "{out}");
    // Authenticated users may relay (the remote recipient waits in the queue).
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "bob@example.org",
        "another good passphrase",
        "bob@example.org",
        "friend@elsewhere.test",
    );
    assert!(out.contains("REFUSED []"), "{out}");
}

/// A raw SMTP connection for protocol-level checks.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn connect(a: SocketAddr) -> Self {
        let s = TcpStream::connect(a).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut c = Self {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        };
        assert!(c.reply().starts_with("220"));
        c
    }
    fn reply(&mut self) -> String {
        loop {
            let mut l = String::new();
            let n = self.r.read_line(&mut l).expect("read");
            assert!(n > 0, "closed");
            if l.as_bytes().get(3) != Some(&b'-') {
                return l.trim_end().to_owned();
            }
        }
    }
    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).expect("write");
    }
    fn cmd(&mut self, l: &str) -> String {
        self.send(format!("{l}\r\n").as_bytes());
        self.reply()
    }
}

#[test]
fn pipelining_bdat_size_and_bad_input() {
    let pm = install(Postern::builder().set("smtpd.max_message_size", 50_000));
    let mut c = Raw::connect(addr(&pm, "smtp"));
    c.cmd("EHLO client.test");
    // Pipelined transaction in one write.
    c.send(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<ghost@example.org>\r\nDATA\r\n");
    let r: Vec<String> = (0..4).map(|_| c.reply()).collect();
    assert!(
        r[0].starts_with("250")
            && r[1].starts_with("250")
            && r[2].starts_with("550 5.1.1")
            && r[3].starts_with("354"),
        "{r:?}"
    );
    c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n");
    let q = c.reply();
    assert!(q.starts_with("250 2.0.0 Ok: queued as "), "{q}");
    // BDAT.
    assert!(c.cmd("MAIL FROM:<s@remote.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("250"));
    let body = b"Subject: chunked\r\n\r\nin two chunks\r\n";
    c.send(format!("BDAT {}\r\n", 10).as_bytes());
    c.send(&body[..10]);
    assert!(c.reply().starts_with("250"));
    c.send(format!("BDAT {} LAST\r\n", body.len() - 10).as_bytes());
    c.send(&body[10..]);
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued"));
    // SIZE over the limit, a message over the limit, bad addresses, a long line.
    assert!(
        c.cmd("MAIL FROM:<s@remote.test> SIZE=100000")
            .starts_with("552")
    );
    assert!(c.cmd("MAIL FROM:<not an address>").starts_with("501"));
    let long = format!("NOOP {}", "x".repeat(100_000));
    assert!(c.cmd(&long).starts_with("500"));
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("DATA");
    c.send(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "b".repeat(60_000)).as_bytes());
    assert!(c.reply().starts_with("552"));
    assert!(c.cmd("NOOP").starts_with("250"), "still in step");
    assert!(c.cmd("QUIT").starts_with("221"));
    wait_messages(&maildir(&pm, "alice"), "new", 1);
    let bob = wait_messages(&maildir(&pm, "bob"), "new", 1);
    assert!(bob[0].contains("in two chunks"));
}

#[test]
fn acknowledged_mail_survives_sigkill() {
    let mut pm = install(
        Postern::builder()
            .set("smtpd.min_backoff_secs", 1)
            .set("smtpd.max_backoff_secs", 2),
    );
    let a = addr(&pm, "smtp");
    // Stop delivery so messages pile up in the queue.
    pm.stop_daemon("lmtp-deliver");
    let mut acked = 0;
    let mut c = Raw::connect(a);
    c.cmd("EHLO client.test");
    for i in 0..30 {
        c.cmd("MAIL FROM:<s@remote.test>");
        c.cmd("RCPT TO:<alice@example.org>");
        c.cmd("DATA");
        c.send(format!("Subject: m{i}\r\n\r\nbody {i}\r\n.\r\n").as_bytes());
        if c.reply().starts_with("250") {
            acked += 1;
        }
    }
    // Kill in the middle of the next message.
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("DATA");
    c.send(b"Subject: never acknowledged\r\n\r\nhalf");
    pm.daemon("smtpd").signal(nix::sys::signal::Signal::SIGKILL);
    pm.daemon("smtpd")
        .wait_exit(Duration::from_secs(10))
        .expect("smtpd died");
    pm.stop_daemon("smtpd");
    pm.start_daemon("lmtp-deliver");
    pm.start_daemon("smtpd");
    let got = wait_messages(&maildir(&pm, "alice"), "new", acked);
    assert_eq!(acked, 30);
    for i in 0..30 {
        assert!(
            got.iter().any(|m| m.contains(&format!("Subject: m{i}\n"))),
            "m{i} lost"
        );
    }
    assert!(!got.iter().any(|m| m.contains("never acknowledged")));
}

#[test]
fn permanent_failures_bounce_to_the_sender() {
    let pm = install(Postern::builder());
    pm.mailctl_ok(&["user", "quota", "bob@example.org", "1K"]);
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "alice@example.org",
        "correct horse battery",
        "alice@example.org",
        "bob@example.org",
    );
    assert!(out.contains("REFUSED []"), "{out}");
    // bob is over quota (552 from lmtp-deliver): alice gets a DSN.
    let dsn = wait_messages(&maildir(&pm, "alice"), "new", 1);
    let d = &dsn[0];
    assert!(
        d.contains("Return-Path: <>") && d.contains("report-type=delivery-status"),
        "{d}"
    );
    assert!(
        d.contains("Final-Recipient: rfc822; bob@example.org") && d.contains("Status: 5.2.2"),
        "{d}"
    );
    assert!(
        d.contains("Subject: hello via starttls"),
        "original headers included: {d}"
    );
}

#[test]
fn hostile_clients_get_standard_replies_while_others_carry_on() {
    let pm = install(
        Postern::builder()
            .set("smtpd.max_recipients", 5)
            .set("smtpd.max_errors", 8)
            .set("smtpd.idle_timeout_secs", 2)
            .set("smtpd.session_timeout_secs", 4)
            .set("smtpd.max_message_size", 200_000),
    );
    let a = addr(&pm, "smtp");
    // A slow client that says nothing holds no one up, and is dropped with 421 when idle.
    let mut slow = Raw::connect(a);
    let mut c = Raw::connect(a);
    c.cmd("EHLO client.test");
    // Bare LF and NUL in the body; a 1 MB line.
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("DATA");
    c.send(b"Subject: bare lf\nX: 1\n\nline\n.\r\n");
    // The bare-LF "." did not end the data; the real end comes now.
    c.send(b"\r\n.\r\n");
    assert!(c.reply().starts_with("250"));
    c.cmd("MAIL FROM:<s@remote.test>");
    c.cmd("RCPT TO:<alice@example.org>");
    c.cmd("DATA");
    c.send(b"Subject: nul\r\n\r\na\0b\r\n.\r\n");
    assert!(c.reply().starts_with("554 5.6.0"));
    let line = format!("NOOP {}\r\n", "y".repeat(1 << 20));
    c.send(line.as_bytes());
    assert!(c.reply().starts_with("500"));
    // A flood of recipients: 452 after the limit.
    c.cmd("MAIL FROM:<s@remote.test>");
    let replies: Vec<String> = (0..7)
        .map(|_| c.cmd("RCPT TO:<alice@example.org>"))
        .collect();
    assert!(
        replies[..5].iter().all(|r| r.starts_with("250")) && replies[5].starts_with("452 4.5.3"),
        "{replies:?}"
    );
    c.cmd("RSET");
    // Malformed addresses and parameters.
    assert!(c.cmd("MAIL FROM:<a@b.test> FOO=BAR").starts_with("555"));
    assert!(c.cmd("MAIL FROM:<@@>").starts_with("501"));
    // The slow client was dropped.
    let r = slow.reply();
    assert!(r.starts_with("421 4.4.2"), "{r}");
    // A DATA that never ends: cut off by the session time limit.
    let mut endless = Raw::connect(a);
    endless.cmd("EHLO client.test");
    endless.cmd("MAIL FROM:<s@remote.test>");
    endless.cmd("RCPT TO:<alice@example.org>");
    endless.cmd("DATA");
    let chunk = vec![b'z'; 16 * 1024];
    let start = std::time::Instant::now();
    let mut cut = false;
    while start.elapsed() < Duration::from_secs(15) {
        if endless.w.write_all(&chunk).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(cut, "an endless DATA must be cut off");
    // Too many errors: 421 and close.
    let mut bad = Raw::connect(a);
    let mut last = String::new();
    for _ in 0..12 {
        bad.send(b"BOGUS\r\n");
        last = bad.reply();
        if last.starts_with("421") {
            break;
        }
    }
    assert!(last.starts_with("421"), "{last}");
    // Meanwhile, normal mail is still accepted and delivered.
    let mut ok = Raw::connect(a);
    ok.cmd("EHLO client.test");
    ok.cmd("MAIL FROM:<s@remote.test>");
    ok.cmd("RCPT TO:<bob@example.org>");
    ok.cmd("DATA");
    ok.send(b"Subject: fine\r\n\r\nx\r\n.\r\n");
    assert!(ok.reply().starts_with("250"));
    let alice = wait_messages(&maildir(&pm, "alice"), "new", 1);
    assert!(
        alice[0].contains("Subject: bare lf\nX: 1\n\nline\n..\n") || alice[0].contains("line\n.\n"),
        "{}",
        alice[0]
    );
    wait_messages(&maildir(&pm, "bob"), "new", 1);
}

#[test]
#[ignore = "needs swaks (run .ci/run)"]
fn swaks_submits_with_starttls_and_auth() {
    let pm = install(Postern::builder());
    let a = addr(&pm, "submission");
    let out = std::process::Command::new("swaks")
        .args([
            "--server",
            &a.ip().to_string(),
            "--port",
            &a.port().to_string(),
            "--tls",
        ])
        .args([
            "--auth",
            "LOGIN",
            "--auth-user",
            "alice@example.org",
            "--auth-password",
            "correct horse battery",
        ])
        .args([
            "--from",
            "alice@example.org",
            "--to",
            "bob@example.org",
            "--header",
            "Subject: from swaks",
        ])
        .output()
        .expect("run swaks");
    assert!(out.status.success(), "{}", describe_output(&out));
    let bob = wait_messages(&maildir(&pm, "bob"), "new", 1);
    assert!(bob[0].contains("Subject: from swaks"));
}

fn smtp_message(c: &mut Raw, from: &str, to: &str, subject: &str) -> String {
    assert!(c.cmd(&format!("MAIL FROM:<{from}>")).starts_with("250"));
    assert!(c.cmd(&format!("RCPT TO:<{to}>")).starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: {subject}\r\n\r\nx\r\n.\r\n").as_bytes());
    let r = c.reply();
    assert!(r.starts_with("250"), "{r}");
    r.rsplit(' ').next().unwrap_or_default().to_owned()
}

#[test]
fn mailctl_queue_lists_holds_flushes_and_deletes() {
    let mut pm = install(Postern::builder());
    pm.stop_daemon("lmtp-deliver");
    let mut c = Raw::connect(addr(&pm, "smtp"));
    c.cmd("EHLO client.test");
    let a1 = smtp_message(&mut c, "a@remote.test", "alice@example.org", "one");
    let a2 = smtp_message(&mut c, "a@remote.test", "bob@example.org", "two");
    let _b = smtp_message(&mut c, "b@remote.test", "alice@example.org", "three");
    // Wait until each has been tried once (LMTP is down) so they carry an error.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let list = loop {
        let l = pm.mailctl_json(&["queue", "list"]);
        let arr = l.as_array().cloned().unwrap_or_default();
        if arr.len() == 3 && arr.iter().all(|m| !m["last_error"].is_null()) {
            break arr;
        }
        assert!(std::time::Instant::now() < deadline, "queue: {l}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(list.iter().any(|m| m["id"] == a1.as_str()), "{list:?}");
    assert_eq!(
        pm.mailctl_json(&["queue", "list", "--sender", "a@remote.test"])
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(
        pm.mailctl_json(&["queue", "list", "--recipient", "bob@"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let table = pm.mailctl_ok(&["queue", "list"]);
    assert!(table.contains("ID") && table.contains(&a2), "{table}");
    let show = pm.mailctl_json(&["queue", "show", &a1, "--headers"]);
    assert!(
        show.to_string().contains("alice@example.org") && show.to_string().contains("Subject: one"),
        "{show}"
    );
    pm.mailctl_ok(&["queue", "hold", &a1]);
    pm.mailctl_ok(&["queue", "delete", "--all-from", "b@remote.test"]);
    assert_eq!(
        pm.mailctl_json(&["queue", "list"]).as_array().map(Vec::len),
        Some(2)
    );
    pm.start_daemon("lmtp-deliver");
    pm.mailctl_ok(&["queue", "flush"]);
    wait_messages(&maildir(&pm, "bob"), "new", 1);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        messages(&maildir(&pm, "alice"), "new").is_empty(),
        "held and deleted messages stay undelivered"
    );
    pm.mailctl_ok(&["queue", "release", &a1]);
    let alice = wait_messages(&maildir(&pm, "alice"), "new", 1);
    assert!(alice[0].contains("Subject: one"));
    // The queue file goes after the Maildir write (and the LMTP reply): poll, bounded.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = pm.mailctl_json(&["queue", "list"]);
        if list.as_array().map(Vec::len) == Some(0) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivered messages still queued after 20 s: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // With smtpd down, a clear error.
    pm.stop_daemon("smtpd");
    let out = pm.mailctl(&["queue", "list"]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("smtpd is not running")
    );
}

#[test]
fn sendmail_hands_local_mail_to_smtpd() {
    let pm = install(Postern::builder());
    let mut cmd = std::process::Command::new(postern_e2e::bin("sendmail"));
    cmd.args(["-C"])
        .arg(pm.config_path())
        .args(["-t", "-i", "-f", "cron@example.org", "-v"]);
    let out = postern_e2e::run_command(
        &mut cmd,
        Some(b"To: alice@example.org\nBcc: bob@example.org\nSubject: from cron\n\n.\nline after a lone dot\n"),
        postern_e2e::COMMAND_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("queued as"));
    let alice = wait_messages(&maildir(&pm, "alice"), "new", 1);
    let bob = wait_messages(&maildir(&pm, "bob"), "new", 1);
    for m in [&alice[0], &bob[0]] {
        assert!(
            m.contains("Return-Path: <cron@example.org>") && m.contains("with local"),
            "{m}"
        );
        assert!(
            m.contains("line after a lone dot") && !m.contains("Bcc:"),
            "{m}"
        );
        assert!(m.contains("Message-ID:") && m.contains("Date:"), "{m}");
    }
    // The message leaves the queue just after its delivery (the removal follows the LMTP
    // reply), so the queue is asked until it is empty, for a bounded time.
    let deadline = std::time::Instant::now() + postern_e2e::COMMAND_TIMEOUT;
    loop {
        let mut q = std::process::Command::new(postern_e2e::bin("sendmail"));
        q.args(["-C"]).arg(pm.config_path()).arg("-bp");
        let out = postern_e2e::run_command(&mut q, None, postern_e2e::COMMAND_TIMEOUT);
        assert!(out.status.success(), "{}", describe_output(&out));
        if String::from_utf8_lossy(&out.stdout).contains("empty") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never emptied: {}",
            describe_output(&out)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn access_rules_reject_discard_and_hold() {
    let rules: toml::Value = toml::from_str(
        r#"rules = [
            { sender = "bad.test", action = "REJECT", text = "We do not take mail from bad.test" },
            { helo = "*.spam.test", action = "DISCARD" },
            { sender = "held@remote.test", action = "HOLD" },
            { recipient = "bob@example.org", client = "127.0.0.0/8", action = "REJECT" },
        ]"#,
    )
    .expect("rules");
    let rules = rules.get("rules").cloned().expect("rules");
    let pm = install(
        Postern::builder().configure(move |t| postern_e2e::set_key(t, "smtpd.access", rules)),
    );
    let mut c = Raw::connect(addr(&pm, "smtp"));
    c.cmd("EHLO client.test");
    let r = c.cmd("MAIL FROM:<x@mail.bad.test>");
    assert!(r.starts_with("554 5.7.1") && r.contains("bad.test"), "{r}");
    assert!(c.cmd("MAIL FROM:<ok@remote.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<bob@example.org>").starts_with("554"));
    assert!(c.cmd("RCPT TO:<alice@example.org>").starts_with("250"));
    c.cmd("RSET");
    let held = smtp_message(&mut c, "held@remote.test", "alice@example.org", "held one");
    let mut s = Raw::connect(addr(&pm, "smtp"));
    s.cmd("EHLO bot.spam.test");
    smtp_message(
        &mut s,
        "x@remote.test",
        "alice@example.org",
        "discarded one",
    );
    smtp_message(
        &mut c,
        "fine@remote.test",
        "alice@example.org",
        "normal one",
    );
    let alice = wait_messages(&maildir(&pm, "alice"), "new", 1);
    assert!(alice[0].contains("normal one"));
    let q = pm.mailctl_json(&["queue", "list"]);
    let q = q.as_array().expect("array");
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["id"], held.as_str());
    assert_eq!(q[0]["held"], true);
}

#[test]
fn undeliverable_remote_mail_warns_then_expires_with_a_bounce() {
    let pm = install(
        Postern::builder()
            .set("smtpd.min_backoff_secs", 1)
            .set("smtpd.max_backoff_secs", 1)
            .set("smtpd.delay_warning_secs", 1)
            .set("smtpd.max_queue_lifetime_secs", 4),
    );
    // No relayhost and no outbound delivery yet: the remote recipient waits, then expires.
    let out = send(
        addr(&pm, "submission"),
        "starttls",
        "alice@example.org",
        "correct horse battery",
        "alice@example.org",
        "friend@elsewhere.test",
    );
    assert!(out.contains("REFUSED []"), "{out}");
    let got = wait_messages(&maildir(&pm, "alice"), "new", 2);
    let delayed = got
        .iter()
        .find(|m| m.contains("Action: delayed"))
        .expect("a delay warning");
    assert!(
        delayed.contains("Final-Recipient: rfc822; friend@elsewhere.test")
            && delayed.contains("Will-Retry-Until"),
        "{delayed}"
    );
    let failed = got
        .iter()
        .find(|m| m.contains("Action: failed"))
        .expect("a bounce");
    assert!(
        failed.contains("Status: 4.4.7") || failed.contains("Status: 5."),
        "{failed}"
    );
    assert!(failed.contains("Return-Path: <>"));
    // Bounces are never bounced, and the queue empties (the bounce's queue file is removed
    // just after lmtp-deliver answered for it, so it may still be there for a moment).
    let start = std::time::Instant::now();
    loop {
        let left = pm.mailctl_json(&["queue", "list"]);
        let n = left.as_array().map(Vec::len);
        if n == Some(0) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the queue still holds {left}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the openssl command-line tool (run .ci/run)"]
fn sighup_reloads_the_certificate() {
    let pm = install(Postern::builder());
    let a = addr(&pm, "submissions");
    let subject = || {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {a} </dev/null 2>/dev/null | openssl x509 -noout -subject"
            ))
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(!subject().contains("reloaded.test"));
    let tls = pm.dir().join("tls");
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=reloaded.test",
        ])
        .arg("-keyout")
        .arg(tls.join("key.pem"))
        .arg("-out")
        .arg(tls.join("cert.pem"))
        .output()
        .expect("openssl req");
    assert!(out.status.success(), "{}", describe_output(&out));
    pm.daemon("smtpd").signal(nix::sys::signal::Signal::SIGHUP);
    pm.daemon("smtpd")
        .wait_for("TLS certificate reloaded", Duration::from_secs(10));
    let s = subject();
    assert!(s.contains("reloaded.test"), "{s}");
}

#[test]
fn catch_all_and_port_465_without_auth() {
    let pm = install(Postern::builder().set("smtpd.trusted_networks", Vec::<String>::new()));
    pm.mailctl_ok(&["alias", "add", "@example.org", "bob@example.org"]);
    // Any unknown local part goes to the catch-all; real mailboxes keep their own mail.
    let out = send(
        addr(&pm, "smtp"),
        "plain",
        "",
        "",
        "x@remote.test",
        "whoever@example.org,alice@example.org",
    );
    assert!(out.contains("REFUSED []"), "{out}");
    wait_messages(&maildir(&pm, "bob"), "new", 1);
    wait_messages(&maildir(&pm, "alice"), "new", 1);
    // 465 without AUTH: no MAIL, and certainly no relay.
    let out = send(
        addr(&pm, "submissions"),
        "smtps",
        "",
        "",
        "x@remote.test",
        "victim@elsewhere.test",
    );
    assert!(out.contains("SENDERREFUSED 530"), "{out}");
}
