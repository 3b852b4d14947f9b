//! RFC duties (issue 15 §4): postmaster (RFC 5321 §4.5.1) and abuse@ (RFC 2142) accepted on
//! every door without opening a relay or skipping a check, the aliases `mailctl domain add`
//! makes for them; and `sendmail -bs` (SMTP on stdin/stdout).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use postern_e2e::{DnsServer, Postern, PosternBuilder, describe_output, run_python};

use crate::lmtp::messages;

const HOSTNAME: &str = "mx.example.org";

fn door(pm: &Postern, name: &str) -> SocketAddr {
    pm.daemon("smtpd")
        .listening_addrs_matching(&format!("({name})"))[0]
}

fn mailbox(pm: &Postern, domain: &str, user: &str) -> PathBuf {
    pm.dir()
        .join("mail")
        .join(domain)
        .join(user)
        .join("Maildir")
}

/// Waits (bounded) until `dir/new` holds `n` messages; returns them.
fn wait_for(dir: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = messages(dir, "new");
        if m.len() >= n || Instant::now() > deadline {
            assert_eq!(m.len(), n, "messages in {}", dir.display());
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One session with smtplib: `mode` plain / starttls / smtps, from `source`, optional
/// login; one transaction per recipient, each printed as `RCPT <addr> <code>` (then
/// `DATA <code>` when accepted), or `MAIL <code> <text>` when the sender is refused.
const SESSION: &str = r#"
import smtplib, ssl, sys
host, port, mode, source, user, password, sender = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
rcpts = sys.argv[8].split(",")
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
if mode == "smtps":
    s = smtplib.SMTP_SSL(host, port, context=ctx, timeout=30, source_address=(source, 0))
else:
    s = smtplib.SMTP(host, port, timeout=30, source_address=(source, 0))
s.ehlo("client.remote.test")
if mode == "starttls":
    s.starttls(context=ctx)
    s.ehlo("client.remote.test")
if user:
    s.login(user, password)
for rcpt in rcpts:
    code, text = s.mail(sender)
    if code != 250:
        print("MAIL", code, text.decode()); s.rset(); continue
    code, text = s.rcpt(rcpt)
    print("RCPT", rcpt, code)
    if code == 250:
        msg = "From: <%s>\r\nTo: <%s>\r\nSubject: to %s via %s\r\n\r\nhello\r\n" % (sender, rcpt, rcpt, mode)
        code, text = s.data(msg.encode())
        print("DATA", code)
    else:
        s.rset()
s.quit()
"#;

#[allow(clippy::too_many_arguments)]
fn session(
    pm: &Postern,
    name: &str,
    mode: &str,
    source: &str,
    login: Option<(&str, &str)>,
    sender: &str,
    rcpts: &[&str],
) -> String {
    let a = door(pm, name);
    let (user, pass) = login.unwrap_or(("", ""));
    let out = run_python(
        SESSION,
        &[
            &a.ip().to_string(),
            &a.port().to_string(),
            mode,
            source,
            user,
            pass,
            sender,
            &rcpts.join(","),
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn users(pm: &Postern, names: &[&str]) {
    for u in names {
        let out = pm.mailctl_stdin(
            &["user", "add", &format!("{u}@example.org")],
            "correct horse battery\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
}

fn install(builder: PosternBuilder, dns: &DnsServer) -> Postern {
    builder
        .hostname(HOSTNAME)
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        // Loopback is a stranger: the port-25 rules and checks apply to the test clients.
        .set("smtpd.trusted_networks", Vec::<String>::new())
        .set("checks.dnsbl_zones", vec!["zen.test"])
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start()
}

/// Regression (issue 15 §4): `RCPT TO:<postmaster>` got `554 Relay access denied` on port
/// 25 (it means postmaster@hostname, not a local domain) and `postmaster@`/`abuse@` a
/// domain got `550 User unknown`.
#[test]
fn postmaster_and_abuse_are_accepted_on_every_door_without_relaying_or_skipping_checks() {
    let dns = DnsServer::start();
    dns.a("2.0.0.127.zen.test", Ipv4Addr::new(127, 0, 0, 2));
    let pm = install(
        Postern::builder().set("smtpd.postmaster", "admin@example.org"),
        &dns,
    );
    let said = pm.mailctl_ok(&["domain", "add", "example.org"]);
    assert!(
        said.contains("postmaster@example.org: to admin@example.org ([smtpd] postmaster)")
            && said.contains("abuse@example.org: to admin@example.org"),
        "{said}"
    );
    users(&pm, &["alice", "admin", "bob"]);
    // A second domain whose own aliases point elsewhere: they win over [smtpd] postmaster.
    let said = pm.mailctl_ok(&[
        "domain",
        "add",
        "example.net",
        "--postmaster",
        "bob@example.org",
    ]);
    assert!(
        said.contains("alias postmaster@example.net -> bob@example.org added")
            && said.contains("alias abuse@example.net -> bob@example.org added"),
        "{said}"
    );

    // Port 25, a stranger.
    let out = session(
        &pm,
        "smtp",
        "plain",
        "127.0.0.1",
        None,
        "someone@remote.test",
        &[
            "postmaster",
            "PostMaster@example.org",
            "abuse@example.org",
            "postmaster@example.net",
            "ABUSE@example.net",
            "postmaster@mx.example.org",
            "postmaster@remote.test",
            "nobody@example.org",
        ],
    );
    for rcpt in [
        "postmaster",
        "PostMaster@example.org",
        "abuse@example.org",
        "postmaster@example.net",
        "ABUSE@example.net",
        "postmaster@mx.example.org",
    ] {
        assert!(
            out.contains(&format!("RCPT {rcpt} 250\nDATA 250")),
            "{rcpt}: {out}"
        );
    }
    // Someone else's postmaster is not ours to take: no relay.
    assert!(out.contains("RCPT postmaster@remote.test 554"), "{out}");
    assert!(out.contains("RCPT nobody@example.org 550"), "{out}");

    // A DNSBL-listed client is refused at MAIL, postmaster or not (as Postfix does).
    let out = session(
        &pm,
        "smtp",
        "plain",
        "127.0.0.2",
        None,
        "someone@remote.test",
        &["postmaster"],
    );
    assert!(
        out.starts_with("MAIL 554") && out.contains("zen.test"),
        "{out}"
    );

    // Submission doors, authenticated: the bare postmaster is ours, never relayed to the
    // hostname's MX.
    let alice = Some(("alice@example.org", "correct horse battery"));
    let out = session(
        &pm,
        "submission",
        "starttls",
        "127.0.0.1",
        alice,
        "alice@example.org",
        &["postmaster"],
    );
    assert!(out.contains("RCPT postmaster 250\nDATA 250"), "{out}");
    let out = session(
        &pm,
        "submissions",
        "smtps",
        "127.0.0.1",
        alice,
        "alice@example.org",
        &["postmaster@example.net"],
    );
    assert!(
        out.contains("RCPT postmaster@example.net 250\nDATA 250"),
        "{out}"
    );

    // [smtpd] postmaster: <postmaster>, postmaster@/abuse@example.org and @hostname, 587.
    let admin = wait_for(&mailbox(&pm, "example.org", "admin"), 5);
    // The domain's own aliases: postmaster@/abuse@example.net, and 465.
    let bob = wait_for(&mailbox(&pm, "example.org", "bob"), 3);
    for s in [
        "Subject: to postmaster via plain",
        "Subject: to PostMaster@example.org via plain",
        "Subject: to abuse@example.org via plain",
        "Subject: to postmaster@mx.example.org via plain",
        "Subject: to postmaster via starttls",
    ] {
        assert!(admin.iter().any(|m| m.contains(s)), "{s}: {admin:?}");
    }
    for s in [
        "Subject: to postmaster@example.net via plain",
        "Subject: to ABUSE@example.net via plain",
        "Subject: to postmaster@example.net via smtps",
    ] {
        assert!(bob.iter().any(|m| m.contains(s)), "{s}: {bob:?}");
    }
    // The checks ran on postmaster mail from outside: SPF/DMARC results are in the header.
    let from_outside = admin
        .iter()
        .find(|m| m.contains("Subject: to postmaster via plain"))
        .expect("found above");
    assert!(
        from_outside.contains("Authentication-Results:") && from_outside.contains("spf="),
        "{from_outside}"
    );
    assert!(wait_for(&mailbox(&pm, "example.org", "alice"), 0).is_empty());
    // Nothing is left in the queue (nothing was sent on to mx.example.org's MX).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = pm.mailctl_ok(&["queue", "list"]);
        if list.contains("the queue is empty") {
            break;
        }
        assert!(Instant::now() < deadline, "{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn abuse_can_be_turned_off_and_domain_add_makes_the_aliases() {
    let dns = DnsServer::start();
    let pm = install(Postern::builder().set("smtpd.accept_abuse", false), &dns);
    let said = pm.mailctl_ok(&["domain", "add", "example.org"]);
    assert!(
        said.contains("no postmaster@example.org alias made"),
        "{said}"
    );
    users(&pm, &["alice"]);
    // No alias and no [smtpd] postmaster: refused as before (there is nowhere to put it).
    let out = session(
        &pm,
        "smtp",
        "plain",
        "127.0.0.1",
        None,
        "someone@remote.test",
        &["postmaster@example.org", "postmaster"],
    );
    assert!(out.contains("RCPT postmaster@example.org 550"), "{out}");
    assert!(out.contains("RCPT postmaster 550"), "{out}");
    // A domain with --postmaster, then one that takes the same destination by default.
    let said = pm.mailctl_ok(&[
        "domain",
        "add",
        "example.com",
        "--postmaster",
        "alice@example.org",
    ]);
    assert!(
        said.contains("alias postmaster@example.com -> alice@example.org added")
            && !said.contains("abuse@"),
        "{said}"
    );
    let said = pm.mailctl_ok(&["domain", "add", "example.net"]);
    assert!(
        said.contains("alias postmaster@example.net -> alice@example.org added"),
        "{said}"
    );
    let said = pm.mailctl_ok(&["domain", "add", "example.info", "--no-role-aliases"]);
    assert_eq!(said.trim(), "domain example.info added");
    let out = session(
        &pm,
        "smtp",
        "plain",
        "127.0.0.1",
        None,
        "someone@remote.test",
        &[
            "postmaster@example.net",
            "abuse@example.net",
            "postmaster@example.info",
        ],
    );
    assert!(
        out.contains("RCPT postmaster@example.net 250\nDATA 250"),
        "{out}"
    );
    // accept_abuse = false: only where an alias exists.
    assert!(out.contains("RCPT abuse@example.net 550"), "{out}");
    assert!(out.contains("RCPT postmaster@example.info 550"), "{out}");
    let alice = wait_for(&mailbox(&pm, "example.org", "alice"), 1);
    assert!(alice[0].contains("Subject: to postmaster@example.net via plain"));
}

/// Regression (issue 15 §4): a fresh `mailctl init --demo` install had no alias for
/// postmaster@ and no `[smtpd] postmaster`, so `RCPT TO:<postmaster>` got `550 User unknown`
/// (RFC 5321 §4.5.1 says it must be accepted). `init` now makes the demo user the postmaster.
#[test]
fn a_fresh_demo_install_accepts_postmaster() {
    let dns = DnsServer::start();
    let pm = Postern::builder()
        .demo()
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        // Loopback is a stranger, as a remote postmaster's server would be.
        .set("smtpd.trusted_networks", Vec::<String>::new())
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    let pm_table = pm.config();
    let postmaster = pm_table["smtpd"].get("postmaster").and_then(|v| v.as_str());
    assert_eq!(postmaster, Some("demo@example.test"), "{pm_table:#?}");
    let out = session(
        &pm,
        "smtp",
        "plain",
        "127.0.0.1",
        None,
        "someone@remote.test",
        &[
            "postmaster",
            "postmaster@example.test",
            "abuse@example.test",
        ],
    );
    assert!(out.contains("RCPT postmaster 250\nDATA 250"), "{out}");
    assert!(
        out.contains("RCPT postmaster@example.test 250\nDATA 250"),
        "{out}"
    );
    assert!(
        out.contains("RCPT abuse@example.test 250\nDATA 250"),
        "{out}"
    );
    let demo = wait_for(&mailbox(&pm, "example.test", "demo"), 3);
    assert!(
        demo.iter()
            .any(|m| m.contains("Subject: to postmaster via plain")),
        "{demo:?}"
    );
}

/// Runs `sendmail -bs` with `dialogue` on stdin; returns its exit status and stdout.
fn sendmail_bs(pm: &Postern, dialogue: &[u8]) -> (bool, String) {
    let mut cmd = std::process::Command::new(postern_e2e::bin("sendmail"));
    cmd.arg("-C").arg(pm.config_path()).arg("-bs");
    let out = postern_e2e::run_command(&mut cmd, Some(dialogue), postern_e2e::COMMAND_TIMEOUT);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Regression (issue 15 §4): `sendmail -bs` was refused ("-bs (SMTP on stdin) is not
/// supported", exit 64).
#[test]
fn sendmail_bs_speaks_smtp_on_stdin_and_submits_locally() {
    let mut pm = Postern::builder()
        .set("smtpd.max_message_size", 100_000)
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    users(&pm, &["alice", "bob"]);
    let mut dialogue = b"EHLO app.local\r\n\
        MAIL FROM:<cron@example.org>\r\n\
        RCPT TO:<alice@example.org>\r\n\
        RCPT TO:<bob@example.org>\r\n\
        DATA\r\n\
        Subject: via sendmail -bs\r\n\r\n..a dot-stuffed line\r\n.\r\n"
        .to_vec();
    // A command line far past the limit, NUL bytes, a message over max_message_size: each
    // gets its reply and the session goes on.
    dialogue.extend(std::iter::repeat_n(b'A', 1_000_000));
    dialogue.extend_from_slice(b"\r\nNO\0OP\r\n");
    dialogue.extend_from_slice(
        b"MAIL FROM:<cron@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: nul\r\n\r\na \0 b\r\n.\r\n",
    );
    dialogue.extend_from_slice(
        b"MAIL FROM:<cron@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: big\r\n\r\n",
    );
    for _ in 0..2000 {
        dialogue.extend_from_slice(&[b'x'; 100]);
        dialogue.extend_from_slice(b"\r\n");
    }
    dialogue.extend_from_slice(b".\r\nRCPT TO:<not an address>\r\nQUIT\r\n");
    let (ok, out) = sendmail_bs(&pm, &dialogue);
    assert!(ok, "{out}");
    let finals: Vec<&str> = out
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .collect();
    assert!(
        finals[0].starts_with("220 ") && finals[0].contains("ESMTP"),
        "{out}"
    );
    assert!(
        finals
            .iter()
            .any(|l| l.starts_with("250 ") && l.contains("queued as")),
        "{out}"
    );
    assert!(
        finals.iter().any(|l| l.starts_with("500 ")),
        "long line: {out}"
    );
    assert!(
        finals.iter().any(|l| l.starts_with("552 ")),
        "too big: {out}"
    );
    assert_eq!(finals.last().map(|l| &l[..3]), Some("221"), "{out}");
    assert!(!out.contains("STARTTLS") && !out.contains("AUTH"), "{out}");
    let alice = wait_for(&mailbox(&pm, "example.org", "alice"), 1);
    let bob = wait_for(&mailbox(&pm, "example.org", "bob"), 1);
    for m in [&alice[0], &bob[0]] {
        // The local submission path: smtpd's Received says so, the header was completed.
        assert!(
            m.contains("Return-Path: <cron@example.org>")
                && m.contains("with local")
                && m.contains("Subject: via sendmail -bs")
                && m.contains("\n.a dot-stuffed line")
                && m.contains("Message-ID:")
                && m.contains("Date:"),
            "{m}"
        );
    }
    // smtpd down: the end of the data gets a temporary failure, not silence.
    pm.stop_daemon("smtpd");
    let (ok, out) = sendmail_bs(
        &pm,
        b"HELO x\r\nMAIL FROM:<cron@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\nSubject: s\r\n\r\nb\r\n.\r\nQUIT\r\n",
    );
    assert!(ok, "{out}");
    assert!(out.contains("\r\n451 4.3.0 smtpd is not running"), "{out}");
}
