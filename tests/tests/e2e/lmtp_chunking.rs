//! LMTP with CHUNKING between smtpd's queue manager and lmtp-deliver: a transaction is
//! `MAIL`, `RCPT`s and `BDAT <size> LAST` with the body in one write, and its replies come
//! back in one write. Raw sockets against lmtp-deliver; smtpd → lmtp-deliver end to end for
//! one recipient, many, and a 1 MiB message.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use postern_e2e::{Postern, describe_output, run_python};

use crate::lmtp::{Lmtp, lmtp_install, maildir, messages};

/// Reads from `s` until `want` complete reply lines (not continuation lines) arrived;
/// returns them and how many reads it took.
fn read_replies(s: &mut UnixStream, want: usize) -> (Vec<String>, usize) {
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = vec![0; 64 * 1024];
    while String::from_utf8_lossy(&got)
        .lines()
        .filter(|l| l.as_bytes().get(3) == Some(&b' '))
        .count()
        < want
    {
        let n = s.read(&mut buf).expect("read the replies");
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&got));
        reads += 1;
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    (text.lines().map(str::to_owned).collect(), reads)
}

fn connect(pm: &Postern) -> UnixStream {
    let mut s = UnixStream::connect(pm.socket("lmtp")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let (greeting, _) = read_replies(&mut s, 1);
    assert!(greeting[0].starts_with("220 "), "{greeting:?}");
    s.write_all(b"LHLO client.test\r\n").expect("LHLO");
    let (caps, _) = read_replies(&mut s, 1);
    assert!(
        caps.iter()
            .any(|l| l == "250-CHUNKING" || l == "250 CHUNKING"),
        "{caps:?}"
    );
    assert!(caps.iter().any(|l| l.ends_with("PIPELINING")), "{caps:?}");
    s
}

fn bdat_transaction(rcpts: &[&str], body: &[u8]) -> Vec<u8> {
    let mut out = b"MAIL FROM:<sender@remote.test>\r\n".to_vec();
    for r in rcpts {
        out.extend_from_slice(format!("RCPT TO:<{r}>\r\n").as_bytes());
    }
    out.extend_from_slice(format!("BDAT {} LAST\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// What smtpd sends in one write gets its replies in one write: the read that brings the
/// first reply brings the last (before, the `MAIL`/`RCPT` replies went out on their own,
/// ahead of the delivery). One reply per accepted recipient after the body; the body
/// arrives as sent, its dot lines untouched.
#[test]
fn lmtp_deliver_answers_a_pipelined_bdat_transaction_in_one_write() {
    let pm = lmtp_install(Postern::builder());
    let mut s = connect(&pm);
    let body = b"Subject: chunked\r\n\r\n.\r\n..two dots\r\nlast\r\n";
    s.write_all(&bdat_transaction(
        &["alice@example.org", "nobody@example.org", "bob@example.org"],
        body,
    ))
    .expect("write");
    let (replies, reads) = read_replies(&mut s, 6);
    assert_eq!(replies.len(), 6, "{replies:?}");
    assert!(replies[0].starts_with("250 2.1.0"), "{replies:?}");
    assert!(replies[1].starts_with("250 2.1.5"), "{replies:?}");
    assert!(replies[2].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[3].starts_with("250 2.1.5"), "{replies:?}");
    assert!(
        replies[4].starts_with("250 2.0.0") && replies[4].contains("alice@example.org"),
        "{replies:?}"
    );
    assert!(
        replies[5].starts_with("250 2.0.0") && replies[5].contains("bob@example.org"),
        "{replies:?}"
    );
    assert_eq!(reads, 1, "all replies in one read: {replies:?}");
    for user in ["alice", "bob"] {
        let inbox = messages(&maildir(&pm, user), "new");
        assert_eq!(inbox.len(), 1, "{user}");
        assert!(
            inbox[0].ends_with("Subject: chunked\n\n.\n..two dots\nlast\n"),
            "{}",
            inbox[0]
        );
    }
}

/// A refused `MAIL`, or no accepted recipient: the `BDAT` gets one refusal and its octets
/// are skipped (commands inside the body are never run); the connection stays in step.
#[test]
fn a_refused_bdat_skips_its_chunk_and_stays_in_step() {
    let pm = lmtp_install(Postern::builder());
    let mut s = connect(&pm);
    let evil =
        b"RSET\r\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<alice@example.org>\r\nBDAT 3 LAST\r\nhi\n";
    // No valid recipient.
    let mut t = bdat_transaction(&["nobody@example.org"], evil);
    t.extend_from_slice(b"NOOP\r\n");
    s.write_all(&t).expect("write");
    let (replies, _) = read_replies(&mut s, 4);
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(replies[1].starts_with("550 5.1.1"), "{replies:?}");
    assert!(replies[2].starts_with("503"), "{replies:?}");
    assert!(replies[3].starts_with("250"), "NOOP: {replies:?}");
    assert_eq!(replies.len(), 4, "{replies:?}");
    s.write_all(b"RSET\r\n").expect("RSET");
    assert!(read_replies(&mut s, 1).0[0].starts_with("250"));
    // MAIL refused: RCPT and BDAT refused, the chunk skipped.
    let mut t = b"MAIL FROM:<bad address>\r\nRCPT TO:<alice@example.org>\r\n".to_vec();
    t.extend_from_slice(format!("BDAT {} LAST\r\n", evil.len()).as_bytes());
    t.extend_from_slice(evil);
    t.extend_from_slice(b"NOOP\r\n");
    s.write_all(&t).expect("write");
    let (replies, _) = read_replies(&mut s, 4);
    assert!(replies[0].starts_with('5'), "{replies:?}");
    assert!(replies[1].starts_with("503"), "{replies:?}");
    assert!(replies[2].starts_with("503"), "{replies:?}");
    assert!(replies[3].starts_with("250"), "NOOP: {replies:?}");
    assert_eq!(replies.len(), 4, "{replies:?}");
    assert!(messages(&maildir(&pm, "alice"), "new").is_empty());
    // And DATA still works.
    drop(s);
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    c.cmd("LHLO client.test");
    let (_, after) = c.transaction(
        "s@remote.test",
        &["alice@example.org"],
        "Subject: data\n\nx\n",
    );
    assert!(after[0].starts_with("250 2.0.0"), "{after:?}");
}

const SEND: &str = r#"
import smtplib, sys
host, port, rcpts, size = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
lines = ["From: s@remote.test", "Subject: chunked %d" % size, ""]
n = 0
while sum(len(l) + 2 for l in lines) < size:
    lines.append(".%06d a line of the body, starting with a dot" % n)
    n += 1
msg = "\r\n".join(lines) + "\r\n"
s = smtplib.SMTP(host, port, timeout=60)
s.ehlo("client.test")
print("REFUSED", sorted(s.sendmail("s@remote.test", rcpts, msg).items()))
s.quit()
"#;

/// Sends a message of about `size` octets from `s@remote.test` through smtpd at `mx`, its
/// lines starting with a dot; returns what smtplib says was refused.
fn send(mx: std::net::SocketAddr, rcpts: &str, size: usize) -> String {
    let out = run_python(
        SEND,
        &[
            &mx.ip().to_string(),
            &mx.port().to_string(),
            rcpts,
            &size.to_string(),
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Waits until `dir/new` holds `n` messages; returns them.
fn wait_new(dir: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = messages(dir, "new");
        if m.len() >= n || std::time::Instant::now() > deadline {
            assert_eq!(m.len(), n, "{}", dir.display());
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The body lines [`SEND`] wrote, checked in order.
fn check_body(message: &str) {
    let body = message.split_once("\n\n").expect("a body").1;
    let lines: Vec<&str> = body.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            *l,
            format!(".{i:06} a line of the body, starting with a dot"),
            "line {i}"
        );
    }
}

/// smtpd → lmtp-deliver (over BDAT now): one recipient, many (an alias and several users in
/// one transaction), and a 1 MiB message; every message arrives whole.
#[test]
fn smtpd_delivers_one_many_and_large_messages_over_chunking() {
    let pm = Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    for u in users {
        let out = pm.mailctl_stdin(
            &["user", "add", &format!("{u}@example.org")],
            "a long enough passphrase\n",
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
    let mx = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let send = |rcpts: &str, size: usize| assert_eq!(send(mx, rcpts, size), "REFUSED []");
    let wait = |user: &str, n: usize| wait_new(&maildir(&pm, user), n);
    send("alice@example.org", 5 * 1024);
    wait("alice", 1);
    send(
        "team@example.org,carol@example.org,dave@example.org,erin@example.org,frank@example.org",
        5 * 1024,
    );
    for u in users {
        wait(u, if u == "alice" { 2 } else { 1 });
    }
    send("bob@example.org", 1 << 20);
    let inbox = wait("bob", 2);
    let big = inbox
        .iter()
        .find(|m| m.contains("Subject: chunked 1048576"))
        .expect("the 1 MiB message");
    check_body(big);
    // 1 MiB sent with CRLF line ends, stored with LF.
    assert!(big.len() + big.lines().count() >= 1 << 20, "{}", big.len());
}

/// smtpd → Dovecot's LMTP (which offers CHUNKING too): a transaction where Dovecot refuses
/// one recipient (unknown to its userdb) delivers to the others and bounces that one; the
/// pooled connection stays in step for the next messages, a 1 MiB one included.
#[test]
#[ignore = "needs Debian's dovecot-lmtpd (run .ci/run)"]
fn smtpd_delivers_over_chunking_into_dovecot_lmtp() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::create_dir_all(d.join("vmail")).expect("vmail");
    let out = std::process::Command::new("chown")
        .arg("65534:65534")
        .arg(d.join("vmail"))
        .output()
        .expect("chown");
    assert!(out.status.success());
    // alice and bob exist for Dovecot; carol only for Postern's directory.
    let users: String = ["alice", "bob"]
        .iter()
        .map(|u| {
            format!(
                "{u}@example.org::65534:65534::{}/vmail/{u}::\n",
                d.display()
            )
        })
        .collect();
    std::fs::write(d.join("users"), users).expect("users");
    let conf = d.join("dovecot.conf");
    std::fs::write(
        &conf,
        format!(
            "protocols = lmtp\nbase_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nssl = no\n\
             mail_location = maildir:~/Maildir\nfirst_valid_uid = 1\n\
             passdb {{\n  driver = static\n  args = nopassword=y\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = {d}/users\n}}\n\
             service lmtp {{\n  unix_listener lmtp {{\n    mode = 0666\n  }}\n}}\n",
            d = d.display()
        ),
    )
    .expect("dovecot.conf");
    let mut cmd = std::process::Command::new("dovecot");
    cmd.arg("-F").arg("-c").arg(&conf);
    let dovecot = postern_e2e::Daemon::spawn("dovecot", cmd);
    let sock = d.join("run/lmtp");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "Dovecot's lmtp socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pm = Postern::builder()
        .set("smtpd.lmtp", format!("unix:{}", sock.display()))
        .daemons(&["authd", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    for u in ["alice", "bob", "carol"] {
        let out = pm.mailctl_stdin(
            &["user", "add", &format!("{u}@example.org")],
            "a long enough passphrase\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let mx = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let inbox = |u: &str| d.join("vmail").join(u).join("Maildir");
    assert_eq!(
        send(
            mx,
            "alice@example.org,carol@example.org,bob@example.org",
            5 * 1024
        ),
        "REFUSED []"
    );
    let a = wait_new(&inbox("alice"), 1);
    wait_new(&inbox("bob"), 1);
    check_body(&a[0]);
    pm.daemon("smtpd")
        .wait_for("bounced", Duration::from_secs(10));
    for n in 2..=3 {
        assert_eq!(send(mx, "alice@example.org", 5 * 1024), "REFUSED []");
        wait_new(&inbox("alice"), n);
    }
    assert_eq!(send(mx, "bob@example.org", 1 << 20), "REFUSED []");
    let b = wait_new(&inbox("bob"), 2);
    let big = b
        .iter()
        .find(|m| m.contains("Subject: chunked 1048576"))
        .expect("the 1 MiB message");
    check_body(big);
    dovecot.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(
        dovecot.wait_exit(Duration::from_secs(10)).is_some(),
        "dovecot did not stop"
    );
}
