//! Interop with Debian's Dovecot: Dovecot reads the Maildir lmtp-deliver writes, and
//! lmtp-deliver delivers into a Maildir Dovecot already serves — with Dovecot asking
//! Postern's authd for its userdb (Dovecot's `base_dir` pointed at our run directory,
//! where `auth-userdb` speaks Dovecot's own protocol).

use std::process::Command;

use postern_e2e::{Postern, describe_output, run_command, run_python};

use crate::lmtp::{Lmtp, lmtp_install, maildir, messages};

pub(crate) fn doveadm(pm: &Postern, args: &[&str], stdin: Option<&str>) -> String {
    let conf = pm.dir().join("dovecot.conf");
    if !conf.exists() {
        std::fs::write(
            &conf,
            format!(
                "mail_location = maildir:~/Maildir\nfirst_valid_uid = 0\nssl = no\nbase_dir = {run}\nlog_path = {dir}/dovecot.log\n",
                run = pm.run_dir().display(),
                dir = pm.dir().display()
            ),
        )
        .expect("write dovecot.conf");
    }
    // Dovecot refuses uid 0 from a userdb; authd answers 65534 here, and the tree is handed
    // to that user before each doveadm run (lmtp-deliver runs as root in this test).
    // imapd may be working in the tree meanwhile: a lock file that vanished between chown's
    // listing and its chown is not a failure (it is tried again), anything else is.
    for attempt in 1.. {
        let mut chown = Command::new("chown");
        chown.args(["-R", "65534:65534"]).arg(pm.dir().join("mail"));
        let out = run_command(&mut chown, None, postern_e2e::COMMAND_TIMEOUT);
        if out.status.success() {
            break;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let vanished = stderr
            .lines()
            .all(|l| l.trim().is_empty() || l.contains("No such file or directory"));
        assert!(vanished && attempt < 5, "{}", describe_output(&out));
    }
    let mut cmd = Command::new("doveadm");
    cmd.arg("-c").arg(&conf).args(args);
    let out = run_command(
        &mut cmd,
        stdin.map(str::as_bytes),
        postern_e2e::COMMAND_TIMEOUT,
    );
    assert!(
        out.status.success(),
        "doveadm {args:?}\n{}",
        describe_output(&out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs Debian's dovecot-imapd (run .ci/run)"]
fn dovecot_reads_our_maildir_and_we_deliver_into_its_maildir() {
    let pm = lmtp_install(
        Postern::builder()
            .set("authd.userdb.uid", 65534)
            .set("authd.userdb.gid", 65534),
    );
    std::fs::create_dir_all(pm.dir().join("mail")).expect("mail root");
    // Dovecot first: it creates bob's Maildir, its uidlist and index.
    doveadm(
        &pm,
        &["save", "-u", "bob@example.org"],
        Some("Subject: saved by dovecot\n\nfirst\n"),
    );
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    for (rcpt, subject) in [
        ("bob@example.org", "delivered by postern"),
        ("alice@example.org", "to alice"),
    ] {
        let (_, after) = c.transaction(
            "s@remote.test",
            &[rcpt],
            &format!("Subject: {subject}\n\nbody\n"),
        );
        assert!(after[0].starts_with("250"), "{after:?}");
    }
    // A folder with a non-ASCII name, created by delivery (Sieve fileinto :create).
    let script = pm.dir().join("s.sieve");
    std::fs::write(&script, "require [\"fileinto\", \"mailbox\", \"imap4flags\"];\nfileinto :create :flags \"\\\\Seen\" \"Entwürfe\";\n").expect("script");
    pm.mailctl_ok(&[
        "sieve",
        "put",
        "alice@example.org",
        script.to_str().expect("utf8"),
    ]);
    let (_, after) = c.transaction(
        "s@remote.test",
        &["alice@example.org"],
        "Subject: filed\n\nbody\n",
    );
    assert!(after[0].starts_with("250"), "{after:?}");
    assert_eq!(
        messages(&maildir(&pm, "alice"), ".Entw&APw-rfe/cur").len(),
        1
    );

    let bob = doveadm(
        &pm,
        &[
            "fetch",
            "-u",
            "bob@example.org",
            "uid hdr.subject",
            "mailbox",
            "INBOX",
        ],
        None,
    );
    assert!(
        bob.contains("uid: 1") && bob.contains("saved by dovecot"),
        "{bob}"
    );
    assert!(
        bob.contains("uid: 2") && bob.contains("delivered by postern"),
        "{bob}"
    );
    let alice = doveadm(
        &pm,
        &[
            "fetch",
            "-u",
            "alice@example.org",
            "mailbox flags hdr.subject",
            "ALL",
        ],
        None,
    );
    assert!(
        alice.contains("mailbox: INBOX") && alice.contains("to alice"),
        "{alice}"
    );
    assert!(
        alice.contains("mailbox: Entwürfe") && alice.contains("filed") && alice.contains("\\Seen"),
        "{alice}"
    );
    // Dovecot's userdb lookups went to authd.
    let user = doveadm(&pm, &["user", "alice@example.org"], None);
    assert!(
        user.contains(&format!(
            "home      : {}",
            pm.dir().join("mail/example.org/alice").display()
        )) || user.contains("mail/example.org/alice"),
        "{user}"
    );
}

#[test]
#[ignore = "needs Debian's dovecot-imapd (run .ci/run)"]
fn imapd_keeps_the_uids_dovecot_gave() {
    let mut pm = lmtp_install(
        Postern::builder()
            .set("authd.userdb.uid", 65534)
            .set("authd.userdb.gid", 65534),
    );
    std::fs::create_dir_all(pm.dir().join("mail")).expect("mail root");
    // Dovecot makes the Maildir, its dovecot-uidlist and index: UIDs 1, 2, 3; then 2 is
    // expunged and 3 flagged.
    for n in 1..=3 {
        doveadm(
            &pm,
            &["save", "-u", "bob@example.org"],
            Some(&format!("Subject: dovecot {n}\n\nbody {n}\n")),
        );
    }
    doveadm(
        &pm,
        &[
            "expunge",
            "-u",
            "bob@example.org",
            "mailbox",
            "INBOX",
            "uid",
            "2",
        ],
        None,
    );
    doveadm(
        &pm,
        &[
            "flags",
            "add",
            "-u",
            "bob@example.org",
            "\\Flagged",
            "mailbox",
            "INBOX",
            "uid",
            "3",
        ],
        None,
    );
    let status = doveadm(
        &pm,
        &[
            "mailbox",
            "status",
            "-u",
            "bob@example.org",
            "uidvalidity uidnext",
            "INBOX",
        ],
        None,
    );
    let field = |name: &str| -> String {
        status
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {status:?}"))
            .to_owned()
    };
    let (validity, uidnext) = (field("uidvalidity"), field("uidnext"));
    assert_eq!(uidnext, "4", "{status}");

    pm.start_daemon("imapd");
    let port = pm.daemon("imapd").listening_addrs_matching("(imap)")[0]
        .port()
        .to_string();
    let out = run_python(
        r#"
import imaplib, sys
M = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
M.login("bob@example.org", "another good passphrase")
typ, data = M.select("INBOX")
print("EXISTS", data[0].decode())
print("UIDVALIDITY", M.response("UIDVALIDITY")[1][0].decode())
print("UIDNEXT", M.response("UIDNEXT")[1][0].decode())
typ, data = M.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
for item in data:
    if isinstance(item, tuple):
        print("MSG", item[0].decode(), item[1].decode().strip())
M.logout()
"#,
        &[&port],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("EXISTS 2"), "{text}");
    assert!(text.contains(&format!("UIDVALIDITY {validity}")), "{text}");
    assert!(text.contains("UIDNEXT 4"), "{text}");
    let msgs: Vec<&str> = text.lines().filter(|l| l.starts_with("MSG")).collect();
    assert_eq!(msgs.len(), 2, "{text}");
    assert!(
        msgs[0].contains("UID 1 ") && msgs[0].contains("Subject: dovecot 1"),
        "{text}"
    );
    assert!(
        msgs[1].contains("UID 3 ")
            && msgs[1].contains("\\Flagged")
            && msgs[1].contains("Subject: dovecot 3"),
        "{text}"
    );
}

/// Dovecot and imapd adding messages to one Maildir at the same time agree on every UID
/// (both take Dovecot's `dovecot-uidlist.lock`).
#[test]
#[ignore = "needs Debian's dovecot-imapd (run .ci/run)"]
fn dovecot_and_imapd_append_to_one_maildir_at_once() {
    let mut pm = lmtp_install(
        Postern::builder()
            .set("authd.userdb.uid", 65534)
            .set("authd.userdb.gid", 65534),
    );
    std::fs::create_dir_all(pm.dir().join("mail")).expect("mail root");
    doveadm(
        &pm,
        &["save", "-u", "bob@example.org"],
        Some("Subject: first\n\nbody\n"),
    );
    pm.start_daemon("imapd");
    let port = pm.daemon("imapd").listening_addrs_matching("(imap)")[0]
        .port()
        .to_string();
    const N: usize = 25;
    let appender = std::thread::spawn(move || {
        run_python(
            r#"
import imaplib, sys
M = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
M.login("bob@example.org", "another good passphrase")
for i in range(int(sys.argv[2])):
    typ, data = M.append("INBOX", None, None, ("Subject: imapd %d\r\n\r\nbody\r\n" % i).encode())
    assert typ == "OK", (typ, data)
M.logout()
"#,
            &[&port, &N.to_string()],
        )
    });
    for i in 0..N {
        doveadm(
            &pm,
            &["save", "-u", "bob@example.org"],
            Some(&format!("Subject: dovecot {i}\n\nbody\n")),
        );
    }
    let out = appender.join().expect("appender thread");
    assert!(out.status.success(), "{}", describe_output(&out));

    let theirs = doveadm(
        &pm,
        &["fetch", "-u", "bob@example.org", "uid", "mailbox", "INBOX"],
        None,
    );
    let mut dovecot_uids: Vec<u32> = theirs
        .lines()
        .filter_map(|l| l.strip_prefix("uid: "))
        .map(|u| u.trim().parse().expect("uid"))
        .collect();
    dovecot_uids.sort_unstable();
    let port = pm.daemon("imapd").listening_addrs_matching("(imap)")[0]
        .port()
        .to_string();
    let out = run_python(
        r#"
import imaplib, sys
M = imaplib.IMAP4("127.0.0.1", int(sys.argv[1]))
M.login("bob@example.org", "another good passphrase")
M.select("INBOX")
typ, data = M.uid("SEARCH", None, "ALL")
print(" ".join(data[0].decode().split()))
M.logout()
"#,
        &[&port],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let ours: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|u| u.parse().expect("uid"))
        .collect();
    assert_eq!(ours.len(), 2 * N + 1, "imapd sees {ours:?}");
    let mut dedup = ours.clone();
    dedup.dedup();
    assert_eq!(dedup, ours, "UIDs unique and ascending");
    assert_eq!(dovecot_uids, ours, "Dovecot and imapd agree on the UIDs");
}
