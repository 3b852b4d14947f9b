//! smtpd next to the real thing: Debian's Postfix relays to our port 25, and our smtpd
//! delivers into Debian's Dovecot LMTP.

use std::process::Command;
use std::time::{Duration, Instant};

use postern_e2e::{Daemon, Postern, Postfix, describe_output, run_python};

use crate::lmtp::{maildir, messages};

const SEND: &str = r#"
import smtplib, sys
host, port, rcpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = "From: someone@remote.test\r\nTo: %s\r\nSubject: interop\r\n\r\nthrough the real thing\r\n" % rcpt
s = smtplib.SMTP(host, port, timeout=30)
print("REFUSED", s.sendmail("someone@remote.test", [rcpt], msg))
s.quit()
"#;

fn install(builder: postern_e2e::PosternBuilder, daemons: &[&str]) -> Postern {
    let pm = builder.daemons(daemons).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    pm
}

fn wait_for(mut f: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postfix_relays_to_our_port_25() {
    let pm = install(Postern::builder(), &["authd", "lmtp-deliver", "smtpd"]);
    let mx = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let pf = Postfix::builder()
        .main_cf(&format!(
            "mydestination =\nmynetworks = 127.0.0.0/8\nrelayhost = [{}]:{}\nsmtp_host_lookup = native\nsmtp_tls_security_level = none\n",
            mx.ip(),
            mx.port()
        ))
        .start();
    let a = pf.smtp_addr();
    let out = run_python(
        SEND,
        &[
            &a.ip().to_string(),
            &a.port().to_string(),
            "alice@example.org",
        ],
    );
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("REFUSED {}"),
        "{}",
        describe_output(&out)
    );
    pf.wait_for_log("status=sent", Duration::from_secs(30));
    let md = maildir(&pm, "alice");
    wait_for(
        || messages(&md, "new").len() == 1,
        "the message in alice's Maildir",
    );
    let m = &messages(&md, "new")[0];
    assert!(
        m.contains("Subject: interop") && m.contains("(Postern) with ESMTP"),
        "{m}"
    );
    // Postfix's Received header is there too: it really went through Postfix.
    assert!(m.matches("Received:").count() >= 2, "{m}");
}

#[test]
#[ignore = "needs Debian's dovecot-lmtpd (run .ci/run)"]
fn our_smtpd_delivers_into_dovecot_lmtp() {
    // A private Dovecot serving only LMTP, with a static userdb.
    let pm0 = tempfile::tempdir().expect("tempdir");
    let dir = pm0.path();
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let conf = dir.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols = lmtp\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nssl = no\n\
             mail_location = maildir:~/Maildir\nfirst_valid_uid = 1\n\
             passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
             userdb {{\n  driver = static\n  args = uid=65534 gid=65534 home={d}/vmail/%d/%n\n}}\n\
             service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n}}\n",
            d = dir.display()
        ),
    )
    .expect("dovecot.conf");
    std::fs::create_dir_all(dir.join("vmail")).expect("vmail");
    let out = Command::new("chown")
        .args(["65534:65534"])
        .arg(dir.join("vmail"))
        .output()
        .expect("chown");
    assert!(out.status.success());
    let mut cmd = Command::new("dovecot");
    cmd.arg("-F").arg("-c").arg(&conf);
    let dovecot = Daemon::spawn("dovecot", cmd);
    let sock = dir.join("run/lmtp");
    wait_for(|| sock.exists(), "Dovecot's lmtp socket");
    let pm = install(
        Postern::builder().set("smtpd.lmtp", format!("unix:{}", sock.display())),
        &["authd", "smtpd"],
    );
    let mx = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let out = run_python(
        SEND,
        &[
            &mx.ip().to_string(),
            &mx.port().to_string(),
            "alice@example.org",
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let md = dir.join("vmail/example.org/alice/Maildir");
    wait_for(
        || messages(&md, "new").len() == 1,
        "the message in Dovecot's Maildir",
    );
    assert!(messages(&md, "new")[0].contains("Subject: interop"));
    pm.daemon("smtpd")
        .wait_for("delivered", Duration::from_secs(5));
    dovecot.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        dovecot.wait_exit(Duration::from_secs(10)).is_some(),
        "dovecot did not stop"
    );
}
