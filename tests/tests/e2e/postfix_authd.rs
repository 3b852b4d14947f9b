//! Interop with Debian's Postfix: `postmap -q` against authd's socketmap, and Postfix's
//! smtpd authenticating SMTP AUTH through authd (`smtpd_sasl_type = dovecot`).

use postern_e2e::{Postern, Postfix, describe_output, run_python};

fn directory() -> Postern {
    // Postfix's daemons run as `postfix`: let them reach the sockets.
    let pm = Postern::builder()
        .set("authd.auth_socket.mode", "0666")
        .set("authd.socketmap_socket.mode", "0666")
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    pm.mailctl_ok(&["alias", "add", "info@example.org", "alice@example.org"]);
    pm.mailctl_ok(&[
        "alias",
        "add",
        "staff@example.org",
        "info@example.org",
        "boss@elsewhere.test",
    ]);
    pm
}

#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postmap_queries_authd_socketmap() {
    let pm = directory();
    let pf = Postfix::start();
    let sm = pm.socket("socketmap");
    let q = |name: &str, key: &str| {
        let out = pf.postmap_query(&format!("socketmap:unix:{}:{name}", sm.display()), key);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        )
    };
    assert_eq!(
        q("domains", "example.org"),
        (Some(0), "example.org".to_owned())
    );
    // postmap -q exits 1 for "not found".
    assert_eq!(q("domains", "nowhere.test").0, Some(1));
    assert_eq!(
        q("mailboxes", "alice@example.org"),
        (Some(0), "example.org/alice/Maildir/".to_owned())
    );
    assert_eq!(
        q("aliases", "info@example.org"),
        (Some(0), "alice@example.org".to_owned())
    );
    let (code, staff) = q("aliases", "staff@example.org");
    assert_eq!(code, Some(0));
    let mut staff: Vec<&str> = staff.split(',').collect();
    staff.sort_unstable();
    assert_eq!(staff, ["alice@example.org", "boss@elsewhere.test"]);
    assert_eq!(
        q("senders", "info@example.org"),
        (Some(0), "alice@example.org".to_owned())
    );
    assert_eq!(q("aliases", "alice@example.org").0, Some(1));
}

/// Python smtplib: EHLO, AUTH with MECH, print the reply code.
const SMTP_AUTH: &str = r#"
import smtplib, sys
host, port, user, password, mech = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
s = smtplib.SMTP(host, port, timeout=30)
s.ehlo("client.example")
print("EHLO-AUTH", s.esmtp_features.get("auth", ""))
s.user, s.password = user, password
try:
    if mech == "PLAIN":
        code, msg = s.auth("PLAIN", s.auth_plain)
    else:
        code, msg = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    print("RESULT", code)
except smtplib.SMTPAuthenticationError as e:
    print("RESULT", e.smtp_code, e.smtp_error.decode(errors="replace"))
s.quit()
"#;

#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postfix_smtpd_authenticates_through_authd() {
    let pm = directory();
    let pf = Postfix::builder()
        .main_cf(&format!(
            "smtpd_sasl_type = dovecot\n\
             smtpd_sasl_path = {}\n\
             smtpd_sasl_auth_enable = yes\n\
             smtpd_tls_security_level = none\n\
             smtpd_tls_auth_only = no\n\
             smtpd_sasl_security_options = noanonymous\n",
            pm.socket("auth").display()
        ))
        .start();
    let addr = pf.smtp_addr();
    let run = |user: &str, pass: &str, mech: &str| {
        let out = run_python(
            SMTP_AUTH,
            &[
                &addr.ip().to_string(),
                &addr.port().to_string(),
                user,
                pass,
                mech,
            ],
        );
        assert!(
            out.status.success(),
            "{}\n{}",
            describe_output(&out),
            pf.maillog()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ok = run("alice@example.org", "correct horse battery", "PLAIN");
    let offered = ok
        .lines()
        .find(|l| l.starts_with("EHLO-AUTH"))
        .unwrap_or_default();
    assert!(
        offered.contains("PLAIN") && offered.contains("LOGIN"),
        "{ok}"
    );
    assert!(ok.contains("RESULT 235"), "PLAIN: {ok}\n{}", pf.maillog());
    let ok = run("alice@example.org", "correct horse battery", "LOGIN");
    assert!(ok.contains("RESULT 235"), "LOGIN: {ok}\n{}", pf.maillog());
    let bad = run("alice@example.org", "not the password", "PLAIN");
    assert!(bad.contains("RESULT 535"), "{bad}");
    pm.authd()
        .wait_for("authentication failed", std::time::Duration::from_secs(5));
    let log = pm.authd().log_text();
    assert!(log.contains("service=smtp"), "{log}");
}

/// smtplib: one message to several recipients through Postfix.
const SMTP_SEND: &str = r#"
import smtplib, sys
host, port, rcpts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
msg = "From: sender@remote.test\r\nTo: team\r\nSubject: via postfix\r\n\r\n" + "p" * 3000 + "\r\n"
s = smtplib.SMTP(host, port, timeout=30)
refused = s.sendmail("", rcpts, msg)
print("REFUSED", refused)
s.quit()
"#;

#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postfix_delivers_through_lmtp_deliver_with_per_recipient_results() {
    let pm = Postern::builder()
        .set("authd.socketmap_socket.mode", "0666")
        .set("lmtp.socket.mode", "0666")
        .daemons(&["authd", "lmtp-deliver"])
        .start();
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
    pm.mailctl_ok(&["user", "quota", "bob@example.org", "1K"]);
    pm.mailctl_ok(&["alias", "add", "info@example.org", "alice@example.org"]);
    let sm = pm.socket("socketmap");
    let pf = Postfix::builder()
        .main_cf(&format!(
            "mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             virtual_mailbox_domains = socketmap:unix:{sm}:domains\n\
             virtual_mailbox_maps = socketmap:unix:{sm}:mailboxes\n\
             virtual_alias_maps = socketmap:unix:{sm}:aliases\n\
             virtual_transport = lmtp:unix:{lmtp}\n",
            sm = sm.display(),
            lmtp = pm.socket("lmtp").display()
        ))
        .start();
    let addr = pf.smtp_addr();
    let out = run_python(
        SMTP_SEND,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            "alice@example.org,bob@example.org,info@example.org,nobody@example.org",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe_output(&out));
    // Postfix refuses the unknown user itself, from authd's mailboxes map.
    assert!(
        stdout.contains("nobody@example.org") && stdout.contains("550"),
        "{stdout}"
    );
    let timeout = std::time::Duration::from_secs(30);
    pf.wait_for_log("to=<bob@example.org>, relay=", timeout);
    pf.wait_for_log("status=sent", timeout);
    let maillog = pf.maillog();
    let sent_alice = maillog
        .lines()
        .filter(|l| l.contains("to=<alice@example.org>") && l.contains("status=sent"))
        .count();
    assert_eq!(sent_alice, 2, "alice directly and through info@: {maillog}");
    assert!(
        maillog.lines().any(|l| l.contains("to=<bob@example.org>")
            && l.contains("status=bounced")
            && l.contains("552 5.2.2")),
        "bob's over-quota answer must reach Postfix as a permanent failure: {maillog}"
    );
    let inbox = std::fs::read_dir(pm.dir().join("mail/example.org/alice/Maildir/new"))
        .expect("alice's Maildir")
        .count();
    assert_eq!(inbox, 2);
    assert!(
        !pm.dir().join("mail/example.org/bob/Maildir/new").exists()
            || std::fs::read_dir(pm.dir().join("mail/example.org/bob/Maildir/new"))
                .expect("dir")
                .count()
                == 0
    );
}
