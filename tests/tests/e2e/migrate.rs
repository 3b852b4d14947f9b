//! `mailctl migrate`: a private Postfix + Dovecot set up the way passwd-file virtual-mail
//! installs are (Postfix `hash:` tables, Dovecot passwd-file with crypt hashes, LMTP into
//! Maildir, a Sieve script where Pigeonhole keeps it, an OpenDKIM key table) carries mail
//! first (Debian's dovecot-sieve, Pigeonhole's LMTP plugin, is not installed here: the
//! script is run by Postern only); then `migrate
//! plan`, `apply` and `check` run, Postern's daemons serve the same users with their old
//! passwords and UIDs, run the same Sieve script, and Dovecot reads the mailbox again after
//! Postern delivered into it (the way back).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use postern_e2e::{
    COMMAND_TIMEOUT, DbKind, DnsServer, Postern, Postfix, SinkBehaviour, SmtpSink, TestDb,
    describe_output, exec_sql, free_port, run_command, run_python, set_key,
};
use toml::Value;

/// The uid/gid of Debian's `vmail`-style mail owner the old setup uses.
const VMAIL: u32 = 5000;

fn run_ok(cmd: &mut Command) -> String {
    let out = run_command(cmd, None, COMMAND_TIMEOUT);
    assert!(out.status.success(), "{cmd:?}\n{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn chown_vmail(path: &Path) {
    run_ok(
        Command::new("chown")
            .arg("-R")
            .arg(format!("{VMAIL}:{VMAIL}"))
            .arg(path),
    );
}

/// A private Dovecot (IMAP on a free port, LMTP on a socket), stopped on drop.
struct Dovecot {
    conf: PathBuf,
    imap_port: u16,
    running: bool,
}

impl Dovecot {
    /// `auth`: the passdb and userdb sections.
    fn write(dir: &Path, auth: &str) -> Self {
        let imap_port = free_port();
        let d = dir.display();
        let conf = dir.join("dovecot.conf");
        for sub in ["run", "state"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dovecot dirs");
        }
        std::fs::write(
            &conf,
            format!(
                "protocols = imap lmtp\nlisten = 127.0.0.1\nbase_dir = {d}/run\nstate_dir = {d}/state\n\
                 log_path = {d}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
                 auth_mechanisms = plain login\nmail_location = maildir:~/Maildir\nfirst_valid_uid = {VMAIL}\n\
                 {auth}\
                 plugin {{\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n}}\n\
                 service imap-login {{\n  inet_listener imap {{\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
                 service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n}}\n\
                 service auth {{\n  unix_listener auth-userdb {{\n    mode = 0666\n  }}\n}}\n"
            ),
        )
        .expect("write dovecot.conf");
        Self {
            conf,
            imap_port,
            running: false,
        }
    }

    fn dir(&self) -> &Path {
        self.conf.parent().expect("conf in a dir")
    }

    fn lmtp_socket(&self) -> PathBuf {
        self.dir().join("run/lmtp")
    }

    fn start(&mut self) {
        run_ok(Command::new("dovecot").arg("-c").arg(&self.conf));
        self.running = true;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Dovecot does not listen\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if self.running {
            self.running = false;
            run_ok(
                Command::new("doveadm")
                    .arg("-c")
                    .arg(&self.conf)
                    .arg("stop"),
            );
            // The master removes its pid file last.
            let pid = self.dir().join("run/master.pid");
            let deadline = Instant::now() + Duration::from_secs(20);
            while pid.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    fn doveadm(&self, args: &[&str]) -> String {
        run_ok(Command::new("doveadm").arg("-c").arg(&self.conf).args(args))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = run_command(
                Command::new("doveadm")
                    .arg("-c")
                    .arg(&self.conf)
                    .arg("stop"),
                None,
                COMMAND_TIMEOUT,
            );
        }
        for line in self.log().lines() {
            eprintln!("SRV:dovecot: {line}");
        }
    }
}

/// `UID subject` of every message of `folder`, through IMAP with a password login.
fn imap_list(port: u16, user: &str, password: &str, folder: &str) -> Vec<(u32, String)> {
    let script = r#"
import imaplib, sys, email
port, user, pw, folder = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
c = imaplib.IMAP4("127.0.0.1", port)
c.login(user, pw)
typ, _ = c.select('"' + folder + '"', readonly=True)
assert typ == "OK", typ
typ, data = c.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for item in data:
    if isinstance(item, tuple):
        uid = item[0].decode().split("UID ")[1].split()[0]
        subj = email.message_from_bytes(item[1])["Subject"]
        print(uid, subj)
c.logout()
"#;
    let out = run_python(script, &[&port.to_string(), user, password, folder]);
    assert!(
        out.status.success(),
        "IMAP as {user} on {port}\n{}",
        describe_output(&out)
    );
    let mut v: Vec<(u32, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (u, s) = l.split_once(' ')?;
            Some((u.parse().ok()?, s.to_owned()))
        })
        .collect();
    v.sort();
    v
}

fn imap_login_fails(port: u16, user: &str, password: &str) -> bool {
    let script = r#"
import imaplib, sys
c = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
try:
    c.login(sys.argv[2], sys.argv[3])
    print("LOGGED-IN")
except imaplib.IMAP4.error:
    print("REFUSED")
"#;
    let out = run_python(script, &[&port.to_string(), user, password]);
    String::from_utf8_lossy(&out.stdout).contains("REFUSED")
}

fn smtp_send(pf: &Postfix, to: &str, subject: &str) {
    let script = r#"
import smtplib, sys
host, port, to, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with smtplib.SMTP(host, port) as s:
    s.sendmail("sender@remote.test", [to], "From: sender@remote.test\r\nTo: %s\r\nSubject: %s\r\n\r\nbody\r\n" % (to, subject))
"#;
    let addr = pf.smtp_addr();
    let out = run_python(
        script,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            to,
            subject,
        ],
    );
    assert!(
        out.status.success(),
        "sending to {to} through Postfix\n{}\n--- maillog ---\n{}",
        describe_output(&out),
        pf.maillog()
    );
}

/// Message files in a Maildir folder (new/ and cur/).
fn count_messages(folder: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|d| {
            std::fs::read_dir(folder.join(d))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum()
}

fn wait_messages(folder: &Path, n: usize, what: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_messages(folder) < n {
        assert!(
            Instant::now() < deadline,
            "{} has {} message(s), expected {n}\n{}",
            folder.display(),
            count_messages(folder),
            what()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn password_hash(scheme: &str, password: &str) -> String {
    run_ok(Command::new("doveadm").args(["pw", "-s", scheme, "-p", password]))
        .trim()
        .to_owned()
}

fn mailctl(pm: &Postern, args: &[&str]) -> Output {
    pm.mailctl(args)
}

#[test]
#[ignore = "needs postfix, dovecot-imapd, dovecot-lmtpd, opendkim-tools (run .ci/run), root"]
fn passwd_file_install_is_taken_over_and_given_back() {
    // Postern's side first: an empty install whose config apply replaces.
    let mut pm = Postern::builder().daemons(&[]).start();
    let root = pm.dir().to_owned();
    let old = root.join("old");
    let mail = old.join("vmail");
    std::fs::create_dir_all(&mail).expect("mail root");
    chown_vmail(&mail);

    // The old setup: passwd-file with Dovecot's own hashes (alice SHA512-CRYPT, bob MD5-CRYPT
    // without a {SCHEME} prefix, read as the passdb's scheme= says).
    let alice_hash = password_hash("SHA512-CRYPT", "alice-old-pass");
    let bob_hash = password_hash("MD5-CRYPT", "bob-old-pass");
    let bob_hash = bob_hash
        .strip_prefix("{MD5-CRYPT}")
        .unwrap_or(&bob_hash)
        .to_owned();
    let users = old.join("users");
    let m = mail.display();
    std::fs::write(
        &users,
        format!(
            "alice@example.org:{alice_hash}:{VMAIL}:{VMAIL}::{m}/example.org/alice::\n\
             bob@example.org:{{MD5-CRYPT}}{bob_hash}:{VMAIL}:{VMAIL}::{m}/example.org/bob::\n"
        ),
    )
    .expect("users");
    let u = users.display();
    let mut dovecot = Dovecot::write(
        &old.join("dovecot"),
        &format!(
            "passdb {{\n  driver = passwd-file\n  args = scheme=SHA512-CRYPT username_format=%u {u}\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {u}\n}}\n"
        ),
    );

    // alice's Sieve script, where Pigeonhole keeps it.
    let alice_home = mail.join("example.org/alice");
    std::fs::create_dir_all(alice_home.join("sieve")).expect("sieve dir");
    std::fs::write(
        alice_home.join("sieve/main.sieve"),
        "require [\"fileinto\"];\nif header :contains \"subject\" \"filed\" { fileinto \"Filed\"; }\n",
    )
    .expect("script");
    std::os::unix::fs::symlink("sieve/main.sieve", alice_home.join(".dovecot.sieve"))
        .expect("active link");
    chown_vmail(&mail);

    // OpenDKIM's tables and key, the key made by Debian's opendkim-genkey as on a real install
    // (mail.private, and mail.txt with the record to publish).
    let dkim = old.join("opendkim");
    std::fs::create_dir_all(&dkim).expect("dkim dir");
    let key = dkim.join("mail.private");
    run_ok(
        Command::new("opendkim-genkey")
            .args(["-b", "2048", "-d", "example.org", "-s", "mail", "-D"])
            .arg(&dkim),
    );
    assert!(key.is_file() && dkim.join("mail.txt").is_file());
    std::fs::write(
        dkim.join("key.table"),
        format!(
            "mail._domainkey.example.org example.org:mail:{}\n",
            key.display()
        ),
    )
    .expect("key table");
    std::fs::write(
        dkim.join("signing.table"),
        "*@example.org mail._domainkey.example.org\n",
    )
    .expect("signing table");
    let opendkim_conf = dkim.join("opendkim.conf");
    std::fs::write(
        &opendkim_conf,
        format!(
            "Syslog yes\nKeyTable refile:{d}/key.table\nSigningTable refile:{d}/signing.table\n",
            d = dkim.display()
        ),
    )
    .expect("opendkim.conf");

    // Postfix's tables.
    let vmailbox = old.join("vmailbox");
    let virtual_ = old.join("virtual");
    std::fs::write(&vmailbox, "alice@example.org x\nbob@example.org x\n").expect("vmailbox");
    std::fs::write(
        &virtual_,
        "postmaster@example.org alice@example.org\nteam@example.org alice@example.org, bob@example.org\n",
    )
    .expect("virtual");
    // Built before Postfix starts: its first smtpd (the harness's readiness probe) would
    // otherwise find the tables missing and keep answering 451 for them. postmap is given
    // a config directory of its own: a fresh Debian install of postfix may have no
    // /etc/postfix/main.cf at all (debconf's "No configuration"), and postmap without -c
    // stops there.
    let postmap_etc = old.join("postmap-etc");
    std::fs::create_dir_all(&postmap_etc).expect("postmap config dir");
    std::fs::write(postmap_etc.join("main.cf"), "compatibility_level = 3.6\n").expect("main.cf");
    for t in [&vmailbox, &virtual_] {
        run_ok(
            Command::new("/usr/sbin/postmap")
                .arg("-c")
                .arg(&postmap_etc)
                .arg(t),
        );
    }
    dovecot.start();
    let mut pf = Postfix::builder()
        .main_cf(&format!(
            "myhostname = mx.example.org\nmydomain = example.org\n\
             virtual_mailbox_domains = example.org\n\
             virtual_mailbox_maps = hash:{}\nvirtual_alias_maps = hash:{}\n\
             virtual_transport = lmtp:unix:{}\nmessage_size_limit = 20480000\n",
            vmailbox.display(),
            virtual_.display(),
            dovecot.lmtp_socket().display()
        ))
        .start();
    dovecot.doveadm(&["mailbox", "create", "-u", "alice@example.org", "Filed"]);

    // Mail through the old stack: Postfix, Dovecot LMTP (with Sieve), read through Dovecot.
    let alice_inbox = alice_home.join("Maildir");
    smtp_send(&pf, "alice@example.org", "before the move");
    smtp_send(&pf, "team@example.org", "to the team");
    wait_messages(&alice_inbox, 2, &|| pf.maillog() + &dovecot.log());
    wait_messages(&mail.join("example.org/bob/Maildir"), 1, &|| pf.maillog());
    let before = imap_list(
        dovecot.imap_port,
        "alice@example.org",
        "alice-old-pass",
        "INBOX",
    );
    assert_eq!(before.len(), 2, "{before:?}");
    let bob_before = imap_list(
        dovecot.imap_port,
        "bob@example.org",
        "bob-old-pass",
        "INBOX",
    );
    assert_eq!(bob_before.len(), 1, "{bob_before:?}");

    // plan: read through postconf/doveconf.
    let postfix_dir = pf.config_dir().display().to_string();
    let dovecot_dir = dovecot.dir().display().to_string();
    let opendkim = opendkim_conf.display().to_string();
    let src = [
        "--postfix",
        postfix_dir.as_str(),
        "--dovecot",
        dovecot_dir.as_str(),
        "--opendkim",
        opendkim.as_str(),
    ];
    let mut args = vec!["migrate", "plan"];
    args.extend(src);
    let plan = pm.mailctl_json(&args);
    assert_eq!(plan["hostname"], "mx.example.org", "{plan:#}");
    assert_eq!(plan["database"]["kind"], "import", "{plan:#}");
    assert_eq!(
        plan["database"]["accounts"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(plan["userdb"]["uid"], VMAIL);
    assert_eq!(plan["dkim"][0]["selector"], "mail");
    assert_eq!(plan["smtpd"]["max_message_size"], 20_480_000);
    assert!(
        plan["blockers"].as_array().is_some_and(Vec::is_empty),
        "{plan:#}"
    );
    assert!(
        !plan.to_string().contains(&alice_hash),
        "a hash reached the plan's JSON"
    );
    let table = pm.mailctl_ok(&{
        let mut a = vec!["migrate", "plan"];
        a.extend(src);
        a
    });
    assert!(
        table.contains("| postfix: myhostname | mx.example.org | hostname |"),
        "{table}"
    );
    assert!(table.contains("## Not carried over"), "{table}");
    // The files read without postconf/doveconf give the same plan for what matters.
    let mut args = vec!["migrate", "plan", "--no-tools"];
    args.extend(src);
    let by_files = pm.mailctl_json(&args);
    for key in [
        "hostname",
        "trusted_networks",
        "database",
        "userdb",
        "default_scheme",
        "dkim",
    ] {
        assert_eq!(by_files[key], plan[key], "{key}: {by_files:#}");
    }

    // apply: writes the config (loaded by Postern's loader), imports, copies the DKIM key.
    let config = pm.config_path().display().to_string();
    let state = root.join("state").display().to_string();
    let run = pm.run_dir().display().to_string();
    let mut args = vec![
        "migrate",
        "apply",
        "--out",
        config.as_str(),
        "--state-dir",
        state.as_str(),
        "--run-dir",
        run.as_str(),
    ];
    args.extend(src);
    let refused = mailctl(&pm, &args);
    assert!(
        !refused.status.success(),
        "apply replaced a config without --force"
    );
    args.push("--force");
    let out = pm.mailctl_ok(&args);
    assert!(
        out.contains("imported 1 domain(s), 2 account(s), 2 alias(es)"),
        "{out}"
    );
    assert!(out.contains("rollback:"), "{out}");
    assert!(out.contains("virtual_transport = lmtp:unix:"), "{out}");
    let written = std::fs::read_to_string(pm.config_path()).expect("config");
    assert!(written.contains(&format!("uid = {VMAIL}")), "{written}");
    let dkim_key = root.join("state/dkim/example.org/mail.key");
    assert_eq!(
        std::fs::read(&dkim_key).expect("copied key"),
        std::fs::read(&key).expect("old key")
    );
    let shown = pm.mailctl_ok(&["dkim", "show", "example.org"]);
    assert!(shown.contains("mail._domainkey.example.org"), "{shown}");
    // The old configuration is untouched, and apply never writes into it.
    let mut into_old = vec!["migrate", "apply", "--out"];
    let inside = format!("{postfix_dir}/postern.toml");
    into_old.push(&inside);
    into_old.extend(src);
    let refused = mailctl(&pm, &into_old);
    assert!(!refused.status.success());
    assert!(!Path::new(&inside).exists());

    // check: the same answers through Postern's directory, postmap -q and doveadm user.
    let mut args = vec!["migrate", "check", "--no-dns"];
    args.extend(src);
    let out = mailctl(&pm, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(text.contains("OK   alias     team@example.org"), "{text}");
    assert!(text.contains("doveadm user agrees"), "{text}");
    assert!(text.contains("SHA512-CRYPT"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    // A difference is found and fails the check.
    pm.mailctl_ok(&["alias", "remove", "team@example.org", "bob@example.org"]);
    let out = mailctl(&pm, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "a mismatch passed\n{text}");
    assert!(text.contains("FAIL alias     team@example.org"), "{text}");
    pm.mailctl_ok(&["alias", "add", "team@example.org", "bob@example.org"]);

    // The copied DKIM key against the published record, through [dns].
    let dkim_dns = DnsServer::start();
    let der = old.join("pub.der");
    run_ok(
        Command::new("openssl")
            .args(["rsa", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&der),
    );
    let p = run_ok(
        Command::new("openssl")
            .args(["base64", "-A", "-in"])
            .arg(&der),
    );
    let record = format!("v=DKIM1; k=rsa; p={}", p.trim());
    dkim_dns.txt("mail._domainkey.example.org", &record);
    let dkim_ns = Value::from(vec![dkim_dns.addr().to_string()]);
    pm.edit_config(|t| set_key(t, "dns.nameservers", dkim_ns.clone()));
    let mut args = vec!["migrate", "check"];
    args.extend(src);
    let out = mailctl(&pm, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(text.contains("OK   dkim      example.org/mail"), "{text}");
    dkim_dns.remove("mail._domainkey.example.org");
    dkim_dns.txt(
        "mail._domainkey.example.org",
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAnotthesamekey",
    );
    let out = mailctl(&pm, &args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL dkim      example.org/mail"), "{text}");
    dkim_dns.remove("mail._domainkey.example.org");
    dkim_dns.txt("mail._domainkey.example.org", &record);

    // Postern instead of Dovecot: the same users, passwords, UIDs; the same Sieve script.
    dovecot.stop();
    // smtpd signs with the copied key, same selector: dkimpy verifies it against the record.
    let sink = SmtpSink::start_on(
        std::net::SocketAddr::from(([127, 0, 0, 12], 0)),
        SinkBehaviour::default(),
    )
    .expect("a sink on 127.0.0.12");
    dkim_dns.mx("remote.test", 10, "mx.sink.test");
    dkim_dns.a("mx.sink.test", std::net::Ipv4Addr::new(127, 0, 0, 12));
    pm.edit_config(|t| {
        set_key(t, "dns.nameservers", dkim_ns.clone());
        set_key(t, "smtpd.listen", Value::from(vec!["127.0.0.1:0"]));
        for k in ["submission", "submissions"] {
            set_key(t, &format!("smtpd.{k}"), Value::Array(Vec::new()));
        }
        set_key(
            t,
            "smtpd.outbound_port",
            Value::from(i64::from(sink.addr().port())),
        );
        // Mail from the trusted network is signed too (the way to test signing without TLS).
        set_key(t, "smtpd.sign_trusted_networks", Value::from(true));
        set_key(t, "imapd.imap", Value::from(vec!["127.0.0.1:0"]));
        for k in ["imaps", "pop3", "pop3s", "managesieve_listen"] {
            set_key(t, &format!("imapd.{k}"), Value::Array(Vec::new()));
        }
        set_key(t, "authd.failure_delay_ms", Value::from(50));
        // Postfix's lmtp client (user postfix) connects to it.
        set_key(t, "lmtp.socket.path", Value::from("lmtp"));
        set_key(t, "lmtp.socket.mode", Value::from("0666"));
    });
    pm.start_daemon("authd");
    pm.start_daemon("lmtp-deliver");
    let imapd = pm.start_daemon("imapd");
    let port = imapd.listening_addrs()[0].port();
    let smtp = pm.start_daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let send = r#"
import smtplib, sys
with smtplib.SMTP(sys.argv[1], int(sys.argv[2])) as s:
    s.sendmail("alice@example.org", ["friend@remote.test"],
        "From: alice@example.org\r\nTo: friend@remote.test\r\nSubject: signed\r\n"
        "Date: Sun, 06 Dec 2026 12:00:00 +0000\r\nMessage-ID: <m1@example.org>\r\n\r\nHello.\r\n")
"#;
    let out = run_python(send, &[&smtp.ip().to_string(), &smtp.port().to_string()]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let sunk = sink.wait_for(1, Duration::from_secs(30));
    let data = &sunk[0].data;
    assert!(
        data.contains("s=mail;") && data.contains("d=example.org;"),
        "{data}"
    );
    let eml = root.join("signed.eml");
    std::fs::write(&eml, data).expect("write the message");
    let verify = r#"
import sys, dkim
record = sys.argv[2].encode()
def dnsfunc(name, timeout=5):
    return record if name.decode().rstrip(".") == "mail._domainkey.example.org" else None
print("VERIFIED" if dkim.DKIM(open(sys.argv[1], "rb").read()).verify(dnsfunc=dnsfunc) else "FAILED")
"#;
    let out = run_python(verify, &[eml.to_str().expect("utf-8 path"), &record]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("VERIFIED"),
        "{}",
        describe_output(&out)
    );
    let after = imap_list(port, "alice@example.org", "alice-old-pass", "INBOX");
    assert_eq!(after, before, "Postern's UIDs differ from Dovecot's");
    assert_eq!(
        imap_list(port, "bob@example.org", "bob-old-pass", "INBOX"),
        bob_before
    );
    assert!(imap_login_fails(port, "alice@example.org", "wrong-pass"));
    assert!(imap_list(port, "alice@example.org", "alice-old-pass", "Filed").is_empty());

    // Delivery through Postern's lmtp-deliver, behind the same Postfix (switch step 2).
    let lmtp = pm.socket("lmtp").display().to_string();
    let out = pf.run(
        "postconf",
        &["-e", &format!("virtual_transport = lmtp:unix:{lmtp}")],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = pf.run("postfix", &["reload"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    smtp_send(&pf, "alice@example.org", "filed by postern");
    smtp_send(&pf, "alice@example.org", "after the move");
    wait_messages(&alice_inbox.join(".Filed"), 1, &|| pf.maillog());
    wait_messages(&alice_inbox, 3, &|| pf.maillog());
    let after = imap_list(port, "alice@example.org", "alice-old-pass", "INBOX");
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(after[..2], before[..], "old UIDs changed");

    // The way back: Dovecot reads the mailbox Postern delivered into.
    for d in ["smtpd", "imapd", "lmtp-deliver", "authd"] {
        pm.stop_daemon(d);
    }
    pf.stop();
    // lmtp-deliver ran as root here; in production it runs as the mail user.
    chown_vmail(&mail);
    dovecot.start();
    let back = imap_list(
        dovecot.imap_port,
        "alice@example.org",
        "alice-old-pass",
        "INBOX",
    );
    assert_eq!(back, after, "Dovecot sees other UIDs than Postern gave");
    let filed = imap_list(
        dovecot.imap_port,
        "alice@example.org",
        "alice-old-pass",
        "Filed",
    );
    let subjects: Vec<&str> = filed.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(subjects, ["filed by postern"]);
    dovecot.stop();
}

/// The parts of a `mysql://user:password@host:port/db` URL.
fn mysql_parts(url: &str) -> (String, String, String, String, String) {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let rest = rest.split('?').next().unwrap_or(rest);
    let (auth, hostdb) = rest.rsplit_once('@').expect("user@host");
    let (user, pw) = auth.split_once(':').unwrap_or((auth, ""));
    let (hostport, db) = hostdb.split_once('/').expect("/db");
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    (
        user.to_owned(),
        pw.to_owned(),
        host.to_owned(),
        port.to_owned(),
        db.to_owned(),
    )
}

#[test]
#[ignore = "needs postfix, postfix-mysql, dovecot-imapd, dovecot-lmtpd, dovecot-mysql and MariaDB (scripts/ci-services.sh), root"]
fn mariadb_install_with_encrypt_passwords_is_taken_over() {
    let mut pm = Postern::builder().daemons(&[]).start();
    let root = pm.dir().to_owned();
    let old = root.join("old");
    let mail = old.join("vmail");
    std::fs::create_dir_all(&mail).expect("mail root");
    chown_vmail(&mail);

    // The classic `postfix_accounts` schema, passwords made by MariaDB's ENCRYPT() (crypt(3):
    // DES for alice, SHA512-CRYPT for bob).
    let db = TestDb::create(DbKind::Mysql);
    exec_sql(
        db.url(),
        "CREATE TABLE domains_table (DomainId INT NOT NULL AUTO_INCREMENT PRIMARY KEY, DomainName VARCHAR(50) NOT NULL);\n\
         CREATE TABLE accounts_table (AccountId INT NOT NULL AUTO_INCREMENT PRIMARY KEY, DomainId INT NOT NULL, password VARCHAR(300) NOT NULL, Email VARCHAR(100) NOT NULL);\n\
         CREATE TABLE alias_table (AliasId INT NOT NULL AUTO_INCREMENT PRIMARY KEY, DomainId INT NOT NULL, Source VARCHAR(100) NOT NULL, Destination VARCHAR(100) NOT NULL);\n\
         INSERT INTO domains_table (DomainName) VALUES ('example.org');\n\
         INSERT INTO accounts_table (DomainId, password, Email) VALUES (1, ENCRYPT('alice-pw', 'ab'), 'alice@example.org');\n\
         INSERT INTO accounts_table (DomainId, password, Email) VALUES (1, ENCRYPT('bob-old-pass', '$6$saltsalt$'), 'bob@example.org');\n\
         INSERT INTO alias_table (DomainId, Source, Destination) VALUES (1, 'postmaster@example.org', 'alice@example.org');\n\
         INSERT INTO alias_table (DomainId, Source, Destination) VALUES (1, 'team@example.org', 'alice@example.org,bob@example.org');\n",
    );
    let (user, pw, host, port, dbname) = mysql_parts(db.url());
    let m = mail.display();
    let sql_conf = old.join("dovecot-sql.conf.ext");
    std::fs::write(
        &sql_conf,
        format!(
            "driver = mysql\nconnect = host={host} port={port} dbname={dbname} user={user} password={pw}\n\
             default_pass_scheme = CRYPT\n\
             password_query = SELECT Email as User, password FROM accounts_table WHERE Email='%u';\n\
             user_query = SELECT {VMAIL} AS uid, {VMAIL} AS gid, '{m}/%d/%n' AS home FROM accounts_table WHERE Email='%u';\n\
             iterate_query = SELECT Email AS user FROM accounts_table;\n"
        ),
    )
    .expect("sql conf");
    let s = sql_conf.display();
    let mut dovecot = Dovecot::write(
        &old.join("dovecot"),
        &format!(
            "passdb {{\n  driver = sql\n  args = {s}\n}}\nuserdb {{\n  driver = sql\n  args = {s}\n}}\n"
        ),
    );
    let map = |name: &str, query: &str| {
        let p = old.join(name);
        std::fs::write(
            &p,
            format!("user = {user}\npassword = {pw}\nhosts = {host}:{port}\ndbname = {dbname}\nquery = {query}\n"),
        )
        .expect("map file");
        p.display().to_string()
    };
    let domains = map(
        "mysql_virtual_domains_maps.cf",
        "SELECT DomainName FROM domains_table WHERE DomainName='%s'",
    );
    let mailboxes = map(
        "mysql_virtual_mailbox_maps.cf",
        "SELECT 1 FROM accounts_table WHERE Email='%s'",
    );
    let aliases = map(
        "mysql_virtual_alias_maps.cf",
        "SELECT Destination FROM alias_table WHERE Source='%s'",
    );
    dovecot.start();
    let mut pf = Postfix::builder()
        .main_cf(&format!(
            "myhostname = mx.example.org\nmydomain = example.org\n\
             virtual_mailbox_domains = mysql:{domains}\nvirtual_mailbox_maps = mysql:{mailboxes}\n\
             virtual_alias_maps = mysql:{aliases}\nvirtual_transport = lmtp:unix:{}\n",
            dovecot.lmtp_socket().display()
        ))
        .start();

    let alice_inbox = mail.join("example.org/alice/Maildir");
    smtp_send(&pf, "alice@example.org", "before the move");
    smtp_send(&pf, "team@example.org", "to the team");
    wait_messages(&alice_inbox, 2, &|| pf.maillog() + &dovecot.log());
    wait_messages(&mail.join("example.org/bob/Maildir"), 1, &|| pf.maillog());
    let before = imap_list(dovecot.imap_port, "alice@example.org", "alice-pw", "INBOX");
    assert_eq!(before.len(), 2, "{before:?}");

    let postfix_dir = pf.config_dir().display().to_string();
    let dovecot_dir = dovecot.dir().display().to_string();
    let src = [
        "--postfix",
        postfix_dir.as_str(),
        "--dovecot",
        dovecot_dir.as_str(),
    ];
    let mut args = vec!["migrate", "plan"];
    args.extend(src);
    let plan = pm.mailctl_json(&args);
    assert_eq!(plan["database"]["kind"], "sql", "{plan:#}");
    assert_eq!(
        plan["database"]["url"],
        format!("mysql://{user}@{host}:{port}/{dbname}")
    );
    assert_eq!(
        plan["database"]["queries"]["account"],
        "SELECT Email, password, 0, 1 FROM accounts_table WHERE Email='%u'"
    );
    assert_eq!(
        plan["database"]["queries"]["alias"],
        "SELECT Destination FROM alias_table WHERE Source='%u'"
    );
    assert_eq!(plan["default_scheme"], "CRYPT");
    assert_eq!(plan["userdb"]["home"], format!("{m}/%d/%n"));
    assert!(!plan.to_string().contains(&format!("password={pw}")) || pw.is_empty());

    let dns = pm.config()["dns"]["nameservers"].clone();
    let config = pm.config_path().display().to_string();
    let state = root.join("state").display().to_string();
    let run = pm.run_dir().display().to_string();
    let mut args = vec![
        "migrate",
        "apply",
        "--out",
        &config,
        "--state-dir",
        &state,
        "--run-dir",
        &run,
        "--force",
    ];
    args.extend(src);
    let out = pm.mailctl_ok(&args);
    assert!(out.contains("rollback:"), "{out}");
    let secret = std::fs::read_to_string(root.join("db-password")).expect("db-password");
    assert_eq!(secret.trim(), pw);

    let mut args = vec!["migrate", "check", "--no-dns"];
    args.extend(src);
    let out = pm.mailctl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(text.contains("OK   alias     team@example.org"), "{text}");
    assert!(text.contains("OK   domain    example.org"), "{text}");
    assert!(text.contains("doveadm user agrees"), "{text}");
    assert!(text.contains("CRYPT"), "{text}");
    // A difference behind Postern's back is found.
    exec_sql(
        db.url(),
        "INSERT INTO accounts_table (DomainId, password, Email) VALUES (1, 'not-a-hash!', 'eve@example.org')",
    );
    let out = pm.mailctl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("FAIL password  eve@example.org"), "{text}");
    exec_sql(
        db.url(),
        "DELETE FROM accounts_table WHERE Email = 'eve@example.org'",
    );

    // Postern's authd and imapd on the same database: old passwords, same UIDs.
    dovecot.stop();
    pm.edit_config(|t| {
        set_key(t, "dns.nameservers", dns.clone());
        set_key(t, "imapd.imap", Value::from(vec!["127.0.0.1:0"]));
        for k in ["imaps", "pop3", "pop3s", "managesieve_listen"] {
            set_key(t, &format!("imapd.{k}"), Value::Array(Vec::new()));
        }
        set_key(t, "authd.failure_delay_ms", Value::from(50));
        set_key(t, "lmtp.socket.path", Value::from("lmtp"));
        set_key(t, "lmtp.socket.mode", Value::from("0666"));
    });
    pm.start_daemon("authd");
    pm.start_daemon("lmtp-deliver");
    let imapd = pm.start_daemon("imapd");
    let iport = imapd.listening_addrs()[0].port();
    assert_eq!(
        imap_list(iport, "alice@example.org", "alice-pw", "INBOX"),
        before
    );
    assert_eq!(
        imap_list(iport, "bob@example.org", "bob-old-pass", "INBOX").len(),
        1
    );
    assert!(imap_login_fails(iport, "bob@example.org", "bob-wrong"));

    // lmtp-deliver behind Postfix, then Dovecot reads it back.
    let lmtp = pm.socket("lmtp").display().to_string();
    let out = pf.run(
        "postconf",
        &["-e", &format!("virtual_transport = lmtp:unix:{lmtp}")],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let out = pf.run("postfix", &["reload"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    smtp_send(&pf, "team@example.org", "after the move");
    wait_messages(&alice_inbox, 3, &|| pf.maillog());
    let after = imap_list(iport, "alice@example.org", "alice-pw", "INBOX");
    for d in ["imapd", "lmtp-deliver", "authd"] {
        pm.stop_daemon(d);
    }
    pf.stop();
    chown_vmail(&mail);
    dovecot.start();
    assert_eq!(
        imap_list(dovecot.imap_port, "alice@example.org", "alice-pw", "INBOX"),
        after
    );
    dovecot.stop();
}

#[test]
#[ignore = "needs postfix, postfix-pgsql, dovecot-imapd, dovecot-lmtpd, dovecot-pgsql and PostgreSQL (scripts/ci-services.sh), root"]
fn postgres_postfixadmin_install_is_taken_over() {
    let mut pm = Postern::builder().daemons(&[]).start();
    let root = pm.dir().to_owned();
    let old = root.join("old");
    let mail = old.join("vmail");
    std::fs::create_dir_all(&mail).expect("mail root");
    chown_vmail(&mail);

    // PostfixAdmin's tables (the columns the queries use), hashes made by doveadm pw with
    // their {SCHEME} prefix, and an inactive mailbox the queries leave out.
    let db = TestDb::create(DbKind::Postgres);
    let alice = password_hash("SHA512-CRYPT", "alice-pg-pass");
    let bob = password_hash("BLF-CRYPT", "bob-pg-pass");
    exec_sql(
        db.url(),
        &format!(
            "CREATE TABLE domain (domain VARCHAR(255) PRIMARY KEY, active BOOLEAN NOT NULL DEFAULT TRUE);\n\
             CREATE TABLE mailbox (username VARCHAR(255) PRIMARY KEY, password VARCHAR(255) NOT NULL, maildir VARCHAR(255) NOT NULL, domain VARCHAR(255) NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE);\n\
             CREATE TABLE alias (address VARCHAR(255) PRIMARY KEY, goto TEXT NOT NULL, domain VARCHAR(255) NOT NULL, active BOOLEAN NOT NULL DEFAULT TRUE);\n\
             INSERT INTO domain (domain) VALUES ('example.org');\n\
             INSERT INTO mailbox (username, password, maildir, domain) VALUES ('alice@example.org', '{alice}', 'example.org/alice/', 'example.org');\n\
             INSERT INTO mailbox (username, password, maildir, domain) VALUES ('bob@example.org', '{bob}', 'example.org/bob/', 'example.org');\n\
             INSERT INTO alias (address, goto, domain) VALUES ('team@example.org', 'alice@example.org,bob@example.org', 'example.org');\n"
        ),
    );
    let url = db.url().to_owned();
    let rest = url.strip_prefix("postgres://").expect("postgres URL");
    let (auth, hostdb) = rest.rsplit_once('@').expect("user@host");
    let (user, pw) = auth.split_once(':').expect("user:password");
    let (hostport, dbname) = hostdb.split_once('/').expect("/db");
    let dbname = dbname.split('?').next().unwrap_or(dbname);
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "5432"));
    let m = mail.display();
    let sql_conf = old.join("dovecot-sql.conf.ext");
    std::fs::write(
        &sql_conf,
        format!(
            "driver = pgsql\nconnect = host={host} port={port} dbname={dbname} user={user} password={pw}\n\
             default_pass_scheme = SHA512-CRYPT\n\
             password_query = SELECT username AS user, password FROM mailbox WHERE username = '%u' AND active = true\n\
             user_query = SELECT '{m}/%d/%n' AS home, {VMAIL} AS uid, {VMAIL} AS gid FROM mailbox WHERE username = '%u' AND active = true\n\
             iterate_query = SELECT username AS user FROM mailbox WHERE active = true\n"
        ),
    )
    .expect("sql conf");
    let s = sql_conf.display();
    let mut dovecot = Dovecot::write(
        &old.join("dovecot"),
        &format!(
            "passdb {{\n  driver = sql\n  args = {s}\n}}\nuserdb {{\n  driver = sql\n  args = {s}\n}}\n"
        ),
    );
    let map = |name: &str, query: &str| {
        let p = old.join(name);
        std::fs::write(
            &p,
            format!(
                "user = {user}\npassword = {pw}\nhosts = {host}:{port}\ndbname = {dbname}\nquery = {query}\n"
            ),
        )
        .expect("map file");
        p.display().to_string()
    };
    let domains = map(
        "pgsql_virtual_domains_maps.cf",
        "SELECT domain FROM domain WHERE domain = '%s' AND active = true",
    );
    let mailboxes = map(
        "pgsql_virtual_mailbox_maps.cf",
        "SELECT maildir FROM mailbox WHERE username = '%s' AND active = true",
    );
    let aliases = map(
        "pgsql_virtual_alias_maps.cf",
        "SELECT goto FROM alias WHERE address = '%s' AND active = true",
    );
    dovecot.start();
    let pf = Postfix::builder()
        .main_cf(&format!(
            "myhostname = mx.example.org\nmydomain = example.org\n\
             virtual_mailbox_domains = proxy:pgsql:{domains}\nvirtual_mailbox_maps = proxy:pgsql:{mailboxes}\n\
             virtual_alias_maps = proxy:pgsql:{aliases}\nvirtual_transport = lmtp:unix:{}\n",
            dovecot.lmtp_socket().display()
        ))
        .start();
    smtp_send(&pf, "team@example.org", "to the team");
    smtp_send(&pf, "alice@example.org", "to alice");
    wait_messages(&mail.join("example.org/alice/Maildir"), 2, &|| {
        pf.maillog() + &dovecot.log()
    });
    let before = imap_list(
        dovecot.imap_port,
        "alice@example.org",
        "alice-pg-pass",
        "INBOX",
    );
    assert_eq!(before.len(), 2, "{before:?}");

    let postfix_dir = pf.config_dir().display().to_string();
    let dovecot_dir = dovecot.dir().display().to_string();
    let src = [
        "--postfix",
        postfix_dir.as_str(),
        "--dovecot",
        dovecot_dir.as_str(),
    ];
    let mut args = vec!["migrate", "plan"];
    args.extend(src);
    let plan = pm.mailctl_json(&args);
    assert_eq!(
        plan["database"]["url"],
        format!("postgres://{user}@{host}:{port}/{dbname}"),
        "{plan:#}"
    );
    assert_eq!(
        plan["database"]["queries"]["alias"],
        "SELECT goto FROM alias WHERE address = '%u' AND active = true"
    );
    assert_eq!(
        plan["database"]["queries"]["list"],
        "SELECT username FROM mailbox WHERE active = true"
    );
    assert_eq!(
        plan["database"]["queries"]["password_update"],
        "UPDATE mailbox SET password = %p WHERE username = '%u' AND active = true"
    );

    let dns = pm.config()["dns"]["nameservers"].clone();
    let config = pm.config_path().display().to_string();
    let state = root.join("state").display().to_string();
    let run = pm.run_dir().display().to_string();
    let mut args = vec![
        "migrate",
        "apply",
        "--out",
        &config,
        "--state-dir",
        &state,
        "--run-dir",
        &run,
        "--force",
    ];
    args.extend(src);
    pm.mailctl_ok(&args);
    let mut args = vec!["migrate", "check", "--no-dns"];
    args.extend(src);
    let out = pm.mailctl(&args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(text.contains("OK   alias     team@example.org"), "{text}");
    assert!(
        text.contains("BLF-CRYPT") && text.contains("SHA512-CRYPT"),
        "{text}"
    );
    assert!(text.contains("doveadm user agrees"), "{text}");
    // check only read: the old database has its three tables and none of Postern's.
    exec_sql(
        db.url(),
        "DO $$ BEGIN IF (SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public') <> 'alias,domain,mailbox' THEN RAISE EXCEPTION 'tables after migrate check: %', (SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables WHERE table_schema = 'public'); END IF; END $$",
    );

    dovecot.stop();
    pm.edit_config(|t| {
        set_key(t, "dns.nameservers", dns.clone());
        set_key(t, "imapd.imap", Value::from(vec!["127.0.0.1:0"]));
        for k in ["imaps", "pop3", "pop3s", "managesieve_listen"] {
            set_key(t, &format!("imapd.{k}"), Value::Array(Vec::new()));
        }
        set_key(t, "authd.failure_delay_ms", Value::from(50));
        set_key(t, "passwords.rehash_to_argon2id", Value::from(true));
    });
    pm.start_daemon("authd");
    let imapd = pm.start_daemon("imapd");
    let iport = imapd.listening_addrs()[0].port();
    assert_eq!(
        imap_list(iport, "alice@example.org", "alice-pg-pass", "INBOX"),
        before
    );
    // The login rehashed alice's row in the old table through the derived password_update;
    // bob has not logged in yet.
    exec_sql(
        db.url(),
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM mailbox WHERE username = 'alice@example.org' AND password LIKE '{ARGON2ID}$argon2id%') OR NOT EXISTS (SELECT 1 FROM mailbox WHERE username = 'bob@example.org' AND password LIKE '{BLF-CRYPT}%') THEN RAISE EXCEPTION 'not rehashed as expected'; END IF; END $$",
    );
    assert_eq!(
        imap_list(iport, "alice@example.org", "alice-pg-pass", "INBOX"),
        before
    );
    assert!(imap_login_fails(iport, "alice@example.org", "alice-wrong"));
    assert_eq!(
        imap_list(iport, "bob@example.org", "bob-pg-pass", "INBOX").len(),
        1
    );
    // An inactive mailbox stays out, as the old queries kept it out.
    exec_sql(
        db.url(),
        "UPDATE mailbox SET active = false WHERE username = 'bob@example.org'",
    );
    pm.stop_daemon("imapd");
    pm.restart_daemon("authd");
    let imapd = pm.start_daemon("imapd");
    let iport = imapd.listening_addrs()[0].port();
    assert!(imap_login_fails(iport, "bob@example.org", "bob-pg-pass"));
}
