//! The LMTP proxy (issue 14 §2, Dovecot's `lmtp_proxy`): an LMTP client such as Postfix
//! delivers to a whole cluster through one front's lmtp-deliver socket. A recipient whose
//! userdb answer names another node (`host=`) is forwarded to that node's lmtp-deliver over
//! LMTP/TCP, and the client gets that backend's reply for it; a backend that is down gives
//! its recipients `451 4.4.0` while the local ones are delivered. With `[proxy] tls =
//! "verify"` the hop is STARTTLS to a certificate from `[proxy] ca_file`.
//!
//! Two installs on loopback, as in `cluster_routing`: B (the backend: authd + lmtp-deliver
//! on `127.0.0.1:PORT`, bob's Maildir) and A (the front: authd + lmtp-deliver; alice lives
//! here, bob and dave on 127.0.0.1 — B, which knows bob but not dave).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_e2e::{Postern, describe_output, free_port};

use crate::lmtp::{maildir, messages};

fn add_user(pm: &Postern, address: &str, host: Option<&str>) {
    let mut args = vec!["user", "add", address];
    if let Some(h) = host {
        args.extend(["--host", h]);
    }
    let out = pm.mailctl_stdin(&args, "a long enough passphrase\n");
    assert!(out.status.success(), "{}", describe_output(&out));
}

/// B: bob's backend, lmtp-deliver on `127.0.0.1:port` (open to 127.0.0.1), with `tls` as
/// its `[tls]` certificate and key when given.
fn backend(port: u16, tls: Option<(&Path, &Path)>) -> Postern {
    let mut b = Postern::builder()
        .hostname("b.example.org")
        .set("lmtp.listen", vec![format!("127.0.0.1:{port}")])
        .set("lmtp.allow_networks", vec!["127.0.0.1/32".to_owned()]);
    if let Some((cert, key)) = tls {
        b = b
            .set("tls.cert", cert.display().to_string())
            .set("tls.key", key.display().to_string());
    }
    let pm = b.daemons(&["authd", "lmtp-deliver"]).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    add_user(&pm, "bob@example.org", None);
    pm
}

/// A: the front whose lmtp socket the client uses; `proxy` are more `[proxy]` keys.
fn front(port: u16, proxy: &[(&str, String)]) -> Postern {
    let mut a = Postern::builder()
        .hostname("front.example.org")
        .set("proxy.self", "front.example.org")
        .set("proxy.lmtp_port", i64::from(port))
        .set("proxy.connect_timeout_secs", 3);
    for (k, v) in proxy {
        a = a.set(&format!("proxy.{k}"), v.clone());
    }
    let pm = a.daemons(&["authd", "lmtp-deliver"]).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    add_user(&pm, "alice@example.org", None);
    add_user(&pm, "bob@example.org", Some("127.0.0.1"));
    add_user(&pm, "dave@example.org", Some("127.0.0.1"));
    pm
}

/// One LMTP transaction on `socket` the way Postfix's lmtp client makes it (LHLO, then
/// MAIL, the RCPTs and DATA pipelined, the body, one reply per accepted recipient): the
/// RCPT replies and the replies after the body, in order.
fn lmtp(socket: &Path, rcpts: &[&str], subject: &str) -> (Vec<String>, Vec<String>) {
    let s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = || {
        let mut lines = String::new();
        loop {
            let mut l = String::new();
            assert!(r.read_line(&mut l).unwrap() > 0, "closed after {lines:?}");
            let last = l.as_bytes().get(3) == Some(&b' ');
            lines.push_str(l.trim_end());
            if last {
                return lines;
            }
            lines.push('\n');
        }
    };
    assert!(reply().starts_with("220 "));
    w.write_all(b"LHLO postfix.front.example\r\n").unwrap();
    let caps = reply();
    assert!(caps.contains("PIPELINING"), "{caps}");
    let mut batch = String::from("MAIL FROM:<carol@example.net>\r\n");
    for r in rcpts {
        batch.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    batch.push_str("DATA\r\n");
    w.write_all(batch.as_bytes()).unwrap();
    assert!(reply().starts_with("250 "));
    let rcpt: Vec<String> = rcpts.iter().map(|_| reply()).collect();
    let accepted = rcpt.iter().filter(|r| r.starts_with('2')).count();
    let data = reply();
    if accepted == 0 {
        return (rcpt, Vec::new());
    }
    assert!(data.starts_with("354 "), "{data}");
    w.write_all(
        format!(
            "From: <carol@example.net>\r\nSubject: {subject}\r\nMessage-ID: <{}@client.test>\r\n\r\nhello through the proxy\r\n..dot line\r\n.\r\n",
            subject.replace(' ', ".")
        )
        .as_bytes(),
    )
    .unwrap();
    let finals = (0..accepted).map(|_| reply()).collect();
    w.write_all(b"QUIT\r\n").unwrap();
    assert!(reply().starts_with("221 "));
    (rcpt, finals)
}

/// A CA and a server certificate it issued for 127.0.0.1 (B's address), in `dir`:
/// (ca.pem, cert.pem, key.pem).
pub(crate) fn cluster_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, leaf.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

#[test]
fn one_socket_delivers_local_and_remote_recipients_with_the_backends_replies() {
    let port = free_port();
    let mut b = backend(port, None);
    let a = front(port, &[]);
    let socket = a.socket("lmtp");

    let (rcpt, finals) = lmtp(
        &socket,
        &["alice@example.org", "bob@example.org", "dave@example.org"],
        "through the front",
    );
    assert!(rcpt.iter().all(|r| r.starts_with("250 ")), "{rcpt:?}");
    // alice here; bob taken by B; dave refused by B (it does not know him), with B's
    // own reply, permanent: the client bounces dave only.
    assert!(finals[0].starts_with("250 2.0.0"), "{finals:?}");
    assert!(finals[1].starts_with("250 2.0.0"), "{finals:?}");
    assert!(
        finals[2].starts_with("550 5.1.1") && finals[2].contains("dave@example.org"),
        "{finals:?}"
    );
    let alice = messages(&maildir(&a, "alice"), "new");
    assert_eq!(alice.len(), 1);
    assert!(alice[0].contains("through the front") && alice[0].contains("\n.dot line\n"));
    let bob = messages(&maildir(&b, "bob"), "new");
    assert_eq!(bob.len(), 1, "bob's copy on B");
    let m = &bob[0];
    assert!(m.contains("Subject: through the front"), "{m}");
    // B's trace field, then the front's (the hop is in the message's history), and the
    // body as sent (dot-stuffing undone once).
    assert!(m.contains("by b.example.org (Postern) with LMTP"), "{m}");
    assert!(
        m.contains("by front.example.org (Postern LMTP proxy) with LMTP"),
        "{m}"
    );
    assert!(m.contains("\n.dot line\n"), "{m}");
    assert!(
        messages(&maildir(&a, "bob"), "new").is_empty(),
        "bob's mail was delivered on the front"
    );
    assert!(messages(&maildir(&a, "dave"), "new").is_empty());

    // B down: bob's recipient gets 451 (the client keeps the mail and retries), alice's
    // copy is delivered all the same, and nothing of bob's lands on the front.
    b.stop_daemon("lmtp-deliver");
    let (rcpt, finals) = lmtp(
        &socket,
        &["bob@example.org", "alice@example.org"],
        "while B is down",
    );
    assert!(rcpt.iter().all(|r| r.starts_with("250 ")), "{rcpt:?}");
    assert!(finals[0].starts_with("451 4.4.0"), "{finals:?}");
    assert!(finals[1].starts_with("250 2.0.0"), "{finals:?}");
    assert_eq!(messages(&maildir(&a, "alice"), "new").len(), 2);
    assert!(messages(&maildir(&a, "bob"), "new").is_empty());
    assert_eq!(messages(&maildir(&b, "bob"), "new").len(), 1);

    // B back: the retry is delivered, once.
    b.start_daemon("lmtp-deliver");
    let (_, finals) = lmtp(&socket, &["bob@example.org"], "after B returned");
    assert!(finals[0].starts_with("250 2.0.0"), "{finals:?}");
    let bob = messages(&maildir(&b, "bob"), "new");
    assert_eq!(bob.len(), 2);
    assert_eq!(
        bob.iter()
            .filter(|m| m.contains("after B returned"))
            .count(),
        1
    );
}

/// `[proxy] tls = "verify"` on the LMTP proxy's hop: B's lmtp-deliver offers STARTTLS with
/// its `[tls]` certificate; with the CA that issued it the mail crosses encrypted (B's trace
/// field says LMTPS), with another CA it is deferred (451), never sent in clear.
#[test]
fn the_proxy_hop_verifies_the_backends_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = cluster_ca(certs.path());
    let port = free_port();
    let b = backend(port, Some((&cert, &key)));
    let mut a = front(
        port,
        &[
            ("tls", "verify".to_owned()),
            ("ca_file", ca.display().to_string()),
        ],
    );
    let (_, finals) = lmtp(&a.socket("lmtp"), &["bob@example.org"], "over tls");
    assert!(finals[0].starts_with("250 2.0.0"), "{finals:?}");
    let bob = messages(&maildir(&b, "bob"), "new");
    assert_eq!(bob.len(), 1);
    assert!(
        bob[0].contains("by b.example.org (Postern) with LMTPS"),
        "{}",
        bob[0]
    );

    // Another CA (A's own self-signed certificate from mailctl init): refused, deferred.
    let wrong = a.dir().join("tls/cert.pem");
    a.edit_config(|t| postern_e2e::set_key(t, "proxy.ca_file", wrong.display().to_string().into()));
    a.restart_daemon("lmtp-deliver");
    let (_, finals) = lmtp(&a.socket("lmtp"), &["bob@example.org"], "wrong ca");
    assert!(finals[0].starts_with("451 4.4.0"), "{finals:?}");
    assert_eq!(messages(&maildir(&b, "bob"), "new").len(), 1);
    assert!(messages(&maildir(&a, "bob"), "new").is_empty());
}

/// One SMTP transaction with `addr` (all replies asserted positive).
fn smtp(addr: std::net::SocketAddr, from: &str, rcpts: &[&str], subject: &str) {
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut expect = |code: char, what: &str| loop {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0, "closed at {what}");
        assert!(l.starts_with(code), "{what}: {l}");
        if l.as_bytes().get(3) == Some(&b' ') {
            return;
        }
    };
    expect('2', "greeting");
    let mut cmds = vec![("EHLO client.test\r\n".to_owned(), '2')];
    cmds.push((format!("MAIL FROM:<{from}>\r\n"), '2'));
    for r in rcpts {
        cmds.push((format!("RCPT TO:<{r}>\r\n"), '2'));
    }
    cmds.push(("DATA\r\n".into(), '3'));
    cmds.push((
        format!("From: <{from}>\r\nSubject: {subject}\r\n\r\nhello via postfix\r\n.\r\n"),
        '2',
    ));
    cmds.push(("QUIT\r\n".into(), '2'));
    for (c, code) in cmds {
        w.write_all(c.as_bytes()).unwrap();
        expect(code, &c);
    }
}

/// Debian's Postfix as the client: `virtual_transport = lmtp:unix:` A's socket and nothing
/// else about the cluster (no `transport_maps`). bob's mail reaches B through A's proxy,
/// dave's is bounced with B's 5.1.1 (Postfix's DSN to alice names dave), and while B is
/// down Postfix defers bob's copy on the proxy's 451 4.4.0 and delivers it after B returns.
#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postfix_delivers_to_the_cluster_through_one_lmtp_socket() {
    let port = free_port();
    let mut b = backend(port, None);
    let a = Postern::builder()
        .hostname("front.example.org")
        .set("proxy.self", "front.example.org")
        .set("proxy.lmtp_port", i64::from(port))
        .set("proxy.connect_timeout_secs", 3)
        .set("authd.socketmap_socket.mode", "0666")
        .set("lmtp.socket.mode", "0666")
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    add_user(&a, "alice@example.org", None);
    add_user(&a, "bob@example.org", Some("127.0.0.1"));
    add_user(&a, "dave@example.org", Some("127.0.0.1"));
    let sm = a.socket("socketmap");
    let mut pf = postern_e2e::Postfix::builder()
        .main_cf(&format!(
            "virtual_mailbox_domains = socketmap:unix:{sm}:domains\n\
             virtual_mailbox_maps = socketmap:unix:{sm}:mailboxes\n\
             virtual_transport = lmtp:unix:{lmtp}\n\
             default_transport = error:no mail leaves this test\n",
            sm = sm.display(),
            lmtp = a.socket("lmtp").display()
        ))
        .start();
    smtp(
        pf.smtp_addr(),
        "alice@example.org",
        &["alice@example.org", "bob@example.org", "dave@example.org"],
        "via postfix",
    );
    let bounced = pf.wait_for_log("dsn=5.1.1, status=bounced", Duration::from_secs(30));
    assert!(bounced.contains("to=<dave@example.org>"), "{bounced}");
    let wait = |what: &str, f: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait("bob's copy on B", &|| {
        messages(&maildir(&b, "bob"), "new").len() == 1
    });
    // alice: her copy and Postfix's DSN about dave.
    wait("alice's copy and the DSN", &|| {
        messages(&maildir(&a, "alice"), "new").len() == 2
    });
    let alice = messages(&maildir(&a, "alice"), "new");
    assert!(
        alice
            .iter()
            .any(|m| m.contains("dave@example.org") && m.contains("5.1.1")),
        "{alice:?}"
    );
    assert!(messages(&maildir(&a, "bob"), "new").is_empty());
    assert!(messages(&maildir(&a, "dave"), "new").is_empty());

    b.stop_daemon("lmtp-deliver");
    smtp(
        pf.smtp_addr(),
        "alice@example.org",
        &["bob@example.org", "alice@example.org"],
        "while B is down",
    );
    let deferred = pf.wait_for_log("dsn=4.4.0, status=deferred", Duration::from_secs(30));
    assert!(deferred.contains("to=<bob@example.org>"), "{deferred}");
    wait("alice's second copy", &|| {
        messages(&maildir(&a, "alice"), "new").len() == 3
    });
    assert_eq!(messages(&maildir(&b, "bob"), "new").len(), 1);
    assert!(messages(&maildir(&a, "bob"), "new").is_empty());
    b.start_daemon("lmtp-deliver");
    let out = pf.run("postqueue", &["-f"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    wait("bob's copy after B returned", &|| {
        messages(&maildir(&b, "bob"), "new").len() == 2
    });
    pf.stop();
}

/// A misconfigured node: bob's host is this node's own address but `[proxy] self` does not
/// name it, so lmtp-deliver forwards bob's mail to itself. Each hop adds its `Received:`
/// field; at 50 the message is refused `554 5.4.6` instead of going round forever, and the
/// daemon keeps serving.
#[test]
fn a_node_forwarding_to_itself_stops_at_the_hop_limit() {
    let port = free_port();
    let pm = Postern::builder()
        .hostname("confused.example.org")
        .set("lmtp.listen", vec![format!("127.0.0.1:{port}")])
        .set("proxy.lmtp_port", i64::from(port))
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    add_user(&pm, "alice@example.org", None);
    add_user(&pm, "bob@example.org", Some("127.0.0.1"));
    let (_, finals) = lmtp(
        &pm.socket("lmtp"),
        &["bob@example.org", "alice@example.org"],
        "round and round",
    );
    assert!(finals[0].starts_with("554 5.4.6"), "{finals:?}");
    assert!(finals[1].starts_with("250 2.0.0"), "{finals:?}");
    assert!(messages(&maildir(&pm, "bob"), "new").is_empty());
    assert_eq!(messages(&maildir(&pm, "alice"), "new").len(), 1);
    let (_, finals) = lmtp(&pm.socket("lmtp"), &["alice@example.org"], "still serving");
    assert!(finals[0].starts_with("250 2.0.0"), "{finals:?}");
}
