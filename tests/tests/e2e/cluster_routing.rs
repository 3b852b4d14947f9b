//! Cluster routing (issue 14 §1–2): where a user lives (`host`), and mail for local users
//! who live on another node going over LMTP/TCP to that backend.
//!
//! Two installs on loopback: B is a mailbox backend (authd + lmtp-deliver listening on TCP,
//! bob's Maildir); A is a front (authd + lmtp-deliver + smtpd) whose directory says bob
//! lives on 127.0.0.1, B's address, and whose `[proxy] lmtp_port` is B's LMTP port. The
//! installs have separate SQLite databases, so only A's says where bob lives (a cluster
//! shares one PostgreSQL database; [`host_fields_on_postgres`] runs the directory part
//! there).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use postern_e2e::{DbKind, Postern, describe_output, free_port, run_python};

use crate::lmtp::{maildir, messages};

const ALICE_PW: &str = "correct horse battery";
const BOB_PW: &str = "another good passphrase";

/// B: the backend holding bob's mailbox; lmtp-deliver on `127.0.0.1:lmtp_port`, open to
/// 127.0.0.1 only.
fn backend(lmtp_port: u16) -> Postern {
    let pm = Postern::builder()
        .hostname("b.example.org")
        .set("lmtp.listen", vec![format!("127.0.0.1:{lmtp_port}")])
        .set("lmtp.allow_networks", vec!["127.0.0.1/32".to_owned()])
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user("bob@example.org", BOB_PW);
    pm
}

/// A: the front; alice lives here, bob on 127.0.0.1 (B).
fn front(lmtp_port: u16) -> Postern {
    let pm = Postern::builder()
        .hostname("front.example.org")
        .set("proxy.self", "front.example.org")
        .set("proxy.lmtp_port", i64::from(lmtp_port))
        .set("proxy.connect_timeout_secs", 3)
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user("alice@example.org", ALICE_PW);
    pm.add_user_on_host("bob@example.org", BOB_PW, Some("127.0.0.1"));
    pm
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One SMTP transaction on A's port-25 door (loopback: a trusted network); the replies.
fn send(a: &Postern, from: &str, rcpts: &[&str], subject: &str) -> Vec<String> {
    send_to(
        a.daemon("smtpd").listening_addrs_matching("(smtp)")[0],
        from,
        rcpts,
        subject,
    )
}

/// One SMTP transaction with the server at `addr`; the replies (all asserted positive).
fn send_to(addr: SocketAddr, from: &str, rcpts: &[&str], subject: &str) -> Vec<String> {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = || {
        let mut last = String::new();
        loop {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            if l.len() < 4 || l.as_bytes()[3] == b' ' {
                last.push_str(l.trim_end());
                return last;
            }
        }
    };
    let mut out = vec![reply()];
    let mut cmd = |c: String, out: &mut Vec<String>, reply: &mut dyn FnMut() -> String| {
        w.write_all(c.as_bytes()).unwrap();
        out.push(reply());
    };
    cmd("EHLO client.test\r\n".into(), &mut out, &mut reply);
    cmd(format!("MAIL FROM:<{from}>\r\n"), &mut out, &mut reply);
    for r in rcpts {
        cmd(format!("RCPT TO:<{r}>\r\n"), &mut out, &mut reply);
    }
    cmd("DATA\r\n".into(), &mut out, &mut reply);
    let body = format!(
        "From: <{from}>\r\nTo: <{}>\r\nSubject: {subject}\r\nMessage-ID: <{}@client.test>\r\n\r\nhello cluster\r\n.\r\n",
        rcpts.join(">, <"),
        subject.replace(' ', ".")
    );
    cmd(body, &mut out, &mut reply);
    cmd("QUIT\r\n".into(), &mut out, &mut reply);
    for (i, r) in out.iter().enumerate().take(out.len() - 1) {
        assert!(
            r.starts_with('2') || r.starts_with('3'),
            "reply {i} refused: {out:?}"
        );
    }
    out
}

/// A raw client of authd's `auth` socket: one `AUTH PLAIN`, the server's answer line.
fn auth_plain(pm: &Postern, service: &str, user: &str, password: &str) -> String {
    let resp = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    let mut s = UnixStream::connect(pm.socket("auth")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        format!(
            "VERSION\t1\t0\nCPID\t{}\nAUTH\t1\tPLAIN\tservice={service}\tnologin\trip=127.0.0.1\tresp={resp}\n",
            std::process::id()
        )
        .as_bytes(),
    )
    .unwrap();
    let r = BufReader::new(s);
    for line in r.lines() {
        let line = line.unwrap();
        if line.starts_with("OK\t1") || line.starts_with("FAIL\t1") {
            return line;
        }
    }
    panic!("auth socket closed without an answer");
}

/// One socketmap lookup on authd's `socketmap` socket: the reply body (`OK …`, `NOTFOUND `).
fn socketmap(pm: &Postern, map: &str, key: &str) -> String {
    pm.socketmap(map, key, Duration::from_secs(10))
}

/// A userdb `USER` lookup on `auth-userdb`: the reply line.
fn userdb(pm: &Postern, user: &str) -> String {
    userdb_request(pm, &format!("USER\t1\t{user}\tservice=lmtp"))
}

/// One request on `auth-userdb` (id 1): the reply line.
fn userdb_request(pm: &Postern, request: &str) -> String {
    let mut s = UnixStream::connect(pm.socket("auth-userdb")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("VERSION\t1\t0\n{request}\n").as_bytes())
        .unwrap();
    for line in BufReader::new(s).lines() {
        let line = line.unwrap();
        if line.starts_with("USER\t1")
            || line.starts_with("NOTFOUND\t1")
            || line.starts_with("FAIL\t1")
            || line.starts_with("PASS\t1")
        {
            return line;
        }
    }
    panic!("userdb closed without an answer");
}

fn fields(line: &str) -> Vec<&str> {
    line.split('\t').collect()
}

fn queue_len(pm: &Postern) -> usize {
    pm.mailctl_json(&["queue", "list"])
        .as_array()
        .map_or(0, Vec::len)
}

fn bob_on(pm: &Postern) -> std::path::PathBuf {
    maildir(pm, "bob")
}

#[test]
fn a_front_delivers_a_remote_users_mail_to_the_backend() {
    let port = free_port();
    let b = backend(port);
    let a = front(port);

    // Where bob lives: shown by user list, answered by authd in every form.
    let users = a.mailctl_json(&["user", "list"]);
    let host_of = |u: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["address"] == u)
            .map(|x| x["host"].as_str().unwrap().to_owned())
    };
    assert_eq!(host_of("bob@example.org").as_deref(), Some("127.0.0.1"));
    assert_eq!(host_of("alice@example.org").as_deref(), Some(""));
    let table = a.mailctl_ok(&["user", "list"]);
    assert!(
        table.contains("HOST") && table.contains("127.0.0.1"),
        "{table}"
    );

    let ok = auth_plain(&a, "imap", "bob@example.org", BOB_PW);
    let f = fields(&ok);
    assert!(
        f.contains(&"user=bob@example.org")
            && f.contains(&"host=127.0.0.1")
            && f.contains(&"port=143")
            && f.contains(&"proxy"),
        "{ok:?}"
    );
    let ok = auth_plain(&a, "imap", "alice@example.org", ALICE_PW);
    assert!(
        ok.starts_with("OK\t1\t") && !ok.contains("proxy") && !ok.contains("host="),
        "{ok:?}"
    );
    // A wrong password gets no routing information.
    let fail = auth_plain(&a, "imap", "bob@example.org", "wrong one");
    assert!(
        fail.starts_with("FAIL\t1") && !fail.contains("host="),
        "{fail:?}"
    );
    assert!(
        fields(&userdb(&a, "bob@example.org")).contains(&"host=127.0.0.1"),
        "userdb"
    );
    assert!(!userdb(&a, "alice@example.org").contains("host="), "userdb");
    assert_eq!(
        socketmap(&a, "transport", "bob@example.org"),
        format!("OK lmtp:[127.0.0.1]:{port}")
    );
    assert_eq!(socketmap(&a, "transport", "alice@example.org"), "NOTFOUND ");
    assert_eq!(
        socketmap(&a, "transport", "nobody@example.org"),
        "NOTFOUND "
    );
    // On the backend itself bob is local.
    assert_eq!(socketmap(&b, "transport", "bob@example.org"), "NOTFOUND ");

    // One message to both: alice's copy stays here, bob's goes to B over LMTP/TCP; a
    // plus-address follows its base account.
    send(
        &a,
        "carol@example.net",
        &[
            "alice@example.org",
            "bob@example.org",
            "bob+news@example.org",
        ],
        "first cluster message",
    );
    wait_until("bob's two copies on B", Duration::from_secs(30), || {
        messages(&bob_on(&b), "new").len() == 2
    });
    wait_until("alice's copy on A", Duration::from_secs(30), || {
        messages(&maildir(&a, "alice"), "new").len() == 1
    });
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
    assert!(
        messages(&bob_on(&b), "new")
            .iter()
            .all(|m| m.contains("first cluster message")),
        "bob's mail on B"
    );
    assert!(
        messages(&bob_on(&a), "new").is_empty(),
        "bob's mail stayed on the front"
    );

    // set-host takes effect at once (authd's cache is invalidated): bob comes home.
    a.mailctl_ok(&["user", "set-host", "bob@example.org", ""]);
    assert_eq!(socketmap(&a, "transport", "bob@example.org"), "NOTFOUND ");
    assert!(!auth_plain(&a, "imap", "bob@example.org", BOB_PW).contains("proxy"));
    send(&a, "carol@example.net", &["bob@example.org"], "home again");
    wait_until("bob's mail on A", Duration::from_secs(30), || {
        messages(&bob_on(&a), "new").len() == 1
    });
    assert_eq!(messages(&bob_on(&b), "new").len(), 2);
    // Not a host name: refused, nothing changed.
    let out = a.mailctl(&["user", "set-host", "bob@example.org", "evil\tproxy"]);
    assert!(!out.status.success(), "{}", describe_output(&out));
    assert_eq!(socketmap(&a, "transport", "bob@example.org"), "NOTFOUND ");
}

#[test]
fn a_backend_that_is_down_keeps_the_mail_queued_until_it_returns() {
    let port = free_port();
    let mut b = backend(port);
    let a = front(port);
    // A first message leaves A a pooled connection to B, which B's stop makes stale.
    send(
        &a,
        "alice@example.org",
        &["bob@example.org"],
        "before B stops",
    );
    wait_until("the first message on B", Duration::from_secs(30), || {
        messages(&bob_on(&b), "new").len() == 1
    });
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
    b.stop_daemon("lmtp-deliver");

    send(
        &a,
        "alice@example.org",
        &["bob@example.org"],
        "while B is down",
    );
    // Deferred (connection refused), not bounced: it waits in A's queue.
    let mut last = String::new();
    wait_until("the deferral", Duration::from_secs(30), || {
        let q = a.mailctl_json(&["queue", "list"]);
        last = q[0]["last_error"].as_str().unwrap_or("").to_owned();
        !last.is_empty()
    });
    assert!(last.contains("451") || last.contains("4.4.1"), "{last}");
    assert_eq!(queue_len(&a), 1);
    assert_eq!(messages(&bob_on(&b), "new").len(), 1);
    assert!(
        messages(&bob_on(&a), "new").is_empty(),
        "delivered on the front"
    );
    assert!(
        messages(&maildir(&a, "alice"), "new").is_empty(),
        "a bounce or delay notice went to the sender"
    );

    // B returns on the same port: the quick retry delivers it, exactly once.
    b.start_daemon("lmtp-deliver");
    wait_until("delivery after B's return", Duration::from_secs(60), || {
        messages(&bob_on(&b), "new").len() == 2
    });
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
    std::thread::sleep(Duration::from_millis(500));
    let got = messages(&bob_on(&b), "new");
    assert_eq!(got.len(), 2, "each delivered once");
    assert_eq!(
        got.iter().filter(|m| m.contains("while B is down")).count(),
        1
    );
    assert!(messages(&maildir(&a, "alice"), "new").is_empty(), "no DSN");
}

/// Per-recipient results over the hop, as on the local socket: in one transaction to B,
/// bob is taken and dave (whom B does not know) is refused with 5xx; bob's copy is
/// delivered once, alice (the sender) gets a failure DSN naming dave only.
#[test]
fn a_backend_refusal_bounces_like_the_local_socket() {
    let port = free_port();
    let b = backend(port);
    let a = front(port);
    a.add_user_on_host("dave@example.org", BOB_PW, Some("127.0.0.1"));
    send(
        &a,
        "alice@example.org",
        &["bob@example.org", "dave@example.org"],
        "one taken one refused",
    );
    wait_until("bob's copy on B", Duration::from_secs(30), || {
        messages(&bob_on(&b), "new").len() == 1
    });
    wait_until("the DSN to alice", Duration::from_secs(30), || {
        messages(&maildir(&a, "alice"), "new").len() == 1
    });
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
    let dsn = &messages(&maildir(&a, "alice"), "new")[0];
    assert!(
        dsn.contains("dave@example.org") && dsn.contains("5.1.1"),
        "{dsn}"
    );
    assert!(
        !dsn.contains("Final-Recipient: rfc822; bob@example.org"),
        "{dsn}"
    );
    assert!(messages(&maildir(&a, "dave"), "new").is_empty());
    assert_eq!(messages(&bob_on(&b), "new").len(), 1);
}

/// `[proxy] tls = "verify"` never falls back to plain text. B's lmtp-deliver offers
/// STARTTLS on its TCP listener with its `[tls]` certificate (since the LMTP proxy work;
/// before, it offered none and this test saw `verify` defer for want of STARTTLS). Against
/// another CA (A's own self-signed certificate) bob's mail waits in A's queue (4xx); with the
/// CA that issued B's certificate it is delivered over TLS (B's trace field says LMTPS);
/// `"may"` delivers too.
#[test]
fn hop_tls_verify_never_falls_back_to_plain_text() {
    let port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = crate::cluster_lmtp_proxy::cluster_ca(certs.path());
    let mut b = backend(port);
    b.edit_config(|t| {
        postern_e2e::set_key(t, "tls.cert", cert.display().to_string().into());
        postern_e2e::set_key(t, "tls.key", key.display().to_string().into());
    });
    b.restart_daemon("lmtp-deliver");
    let mut a = front(port);
    let wrong = a.dir().join("tls/cert.pem");
    a.edit_config(|t| {
        postern_e2e::set_key(t, "proxy.tls", "verify".into());
        postern_e2e::set_key(t, "proxy.ca_file", wrong.display().to_string().into());
    });
    a.restart_daemon("smtpd");
    send(
        &a,
        "alice@example.org",
        &["bob@example.org"],
        "tls required",
    );
    let mut last = String::new();
    wait_until("the deferral", Duration::from_secs(30), || {
        let q = a.mailctl_json(&["queue", "list"]);
        last = q[0]["last_error"].as_str().unwrap_or("").to_owned();
        !last.is_empty()
    });
    assert!(last.contains("TLS") && last.contains("451"), "{last}");
    assert!(messages(&bob_on(&b), "new").is_empty(), "sent in clear");
    // The CA that issued B's certificate: delivered, encrypted.
    a.edit_config(|t| postern_e2e::set_key(t, "proxy.ca_file", ca.display().to_string().into()));
    a.restart_daemon("smtpd");
    a.mailctl_ok(&["queue", "flush"]);
    wait_until(
        "delivery with tls = verify",
        Duration::from_secs(30),
        || messages(&bob_on(&b), "new").len() == 1,
    );
    let m = &messages(&bob_on(&b), "new")[0];
    assert!(m.contains("by b.example.org (Postern) with LMTPS"), "{m}");
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
    // "may": TLS when offered, any certificate.
    a.edit_config(|t| postern_e2e::set_key(t, "proxy.tls", "may".into()));
    a.restart_daemon("smtpd");
    send(&a, "alice@example.org", &["bob@example.org"], "tls may");
    wait_until("delivery with tls = may", Duration::from_secs(30), || {
        messages(&bob_on(&b), "new").len() == 2
    });
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
}

#[test]
fn the_backend_lmtp_listener_takes_only_the_named_networks() {
    let port = free_port();
    let b = backend(port);
    // From 127.0.0.1 (named): the greeting. From 127.0.0.3 (not named): 554, nothing read.
    let out = run_python(
        r#"
import socket, sys
port = int(sys.argv[1])
for src in ("127.0.0.1", "127.0.0.3"):
    s = socket.socket()
    s.settimeout(10)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    print(src, s.recv(200).decode().strip())
    s.close()
"#,
        &[&port.to_string()],
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(text.contains("127.0.0.1 220 "), "{text}");
    assert!(text.contains("127.0.0.3 554 5.7.1"), "{text}");
    let log = b.daemon("lmtp-deliver").log_text();
    assert!(log.contains("allow_networks"), "{log}");
}

/// Postfix as the front: its `transport_maps` is authd's socketmap map `transport`, so
/// bob's mail goes over LMTP/TCP to B (`lmtp:[127.0.0.1]:PORT`) while alice's takes the
/// usual `virtual_transport` to A's lmtp-deliver.
#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postfix_routes_with_the_transport_map() {
    let port = free_port();
    let b = backend(port);
    let a = Postern::builder()
        .hostname("front.example.org")
        .set("proxy.lmtp_port", i64::from(port))
        .set("authd.socketmap_socket.mode", "0666")
        .set("lmtp.socket.mode", "0666")
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    a.add_user("alice@example.org", ALICE_PW);
    a.add_user_on_host("bob@example.org", BOB_PW, Some("127.0.0.1"));
    let sm = a.socket("socketmap");
    let pf = postern_e2e::Postfix::builder()
        .main_cf(&format!(
            "mydestination =\n\
             mynetworks = 127.0.0.0/8\n\
             virtual_mailbox_domains = socketmap:unix:{sm}:domains\n\
             virtual_mailbox_maps = socketmap:unix:{sm}:mailboxes\n\
             transport_maps = socketmap:unix:{sm}:transport\n\
             virtual_transport = lmtp:unix:{lmtp}\n",
            sm = sm.display(),
            lmtp = a.socket("lmtp").display()
        ))
        .start();
    send_to(
        pf.smtp_addr(),
        "carol@example.net",
        &["alice@example.org", "bob@example.org"],
        "through postfix",
    );
    wait_until("bob's copy on B", Duration::from_secs(30), || {
        messages(&bob_on(&b), "new").len() == 1
    });
    wait_until("alice's copy on A", Duration::from_secs(30), || {
        messages(&maildir(&a, "alice"), "new").len() == 1
    });
    let log = pf.wait_for_log("to=<bob@example.org>, relay=", Duration::from_secs(30));
    assert!(
        log.contains(&format!("127.0.0.1[127.0.0.1]:{port}")),
        "{log}"
    );
    assert!(messages(&bob_on(&a), "new").is_empty());
}

/// The production shape: two nodes on one PostgreSQL directory. bob's host is B's name
/// (127.0.0.1, B's `[proxy] self`): the front sends his mail to B and answers his logins
/// with `proxy`; B, reading the same row, finds him local and delivers.
#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
fn two_nodes_share_one_postgresql_directory() {
    let port = free_port();
    let a = Postern::builder()
        .database(DbKind::Postgres)
        .hostname("front.example.org")
        .set("proxy.self", "front.example.org")
        .set("proxy.lmtp_port", i64::from(port))
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    a.add_user_on_host("bob@example.org", BOB_PW, Some("127.0.0.1"));
    let b = Postern::builder()
        .hostname("b.example.org")
        .set("database.url", a.db_url())
        .set("proxy.self", "127.0.0.1")
        .set("lmtp.listen", vec![format!("127.0.0.1:{port}")])
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    let on_a = auth_plain(&a, "imap", "bob@example.org", BOB_PW);
    assert!(fields(&on_a).contains(&"proxy"), "{on_a:?}");
    let on_b = auth_plain(&b, "imap", "bob@example.org", BOB_PW);
    assert!(
        on_b.starts_with("OK\t1\t") && !on_b.contains("proxy"),
        "{on_b:?}"
    );
    assert_eq!(socketmap(&b, "transport", "bob@example.org"), "NOTFOUND ");
    assert!(!userdb(&b, "bob@example.org").contains("host="));
    send(
        &a,
        "carol@example.net",
        &["bob@example.org"],
        "shared directory",
    );
    wait_until("bob's mail on B", Duration::from_secs(30), || {
        messages(&bob_on(&b), "new").len() == 1
    });
    wait_until("A's queue empty", Duration::from_secs(30), || {
        queue_len(&a) == 0
    });
    assert!(messages(&bob_on(&a), "new").is_empty());
    drop(b);
}

/// The directory part on a database shared by cluster nodes: the migration adds the
/// column, mailctl sets it, authd answers with it.
fn host_fields(kind: DbKind) {
    let pm = Postern::builder()
        .database(kind)
        .set("proxy.self", "b1.example.org")
        .set("proxy.lmtp_port", 2424)
        .daemons(&["authd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user_on_host("bob@example.org", BOB_PW, Some("B2.example.org"));
    pm.add_user_on_host("carol@example.org", ALICE_PW, Some("b1.example.org"));
    assert_eq!(
        socketmap(&pm, "transport", "bob@example.org"),
        "OK lmtp:[b2.example.org]:2424"
    );
    // Her host is this node's own name: local.
    assert_eq!(
        socketmap(&pm, "transport", "carol@example.org"),
        "NOTFOUND "
    );
    let ok = auth_plain(&pm, "pop3", "bob@example.org", BOB_PW);
    let f = fields(&ok);
    assert!(
        f.contains(&"host=b2.example.org") && f.contains(&"port=110") && f.contains(&"proxy"),
        "{ok:?}"
    );
    // A passdb lookup (auth-master PASS) carries them too.
    let pass = userdb_request(&pm, "PASS\t1\tbob@example.org\tservice=imap");
    let f = fields(&pass);
    assert!(
        f.contains(&"host=b2.example.org") && f.contains(&"port=143") && f.contains(&"proxy"),
        "{pass:?}"
    );
    let pass = userdb_request(&pm, "PASS\t1\tcarol@example.org\tservice=imap");
    assert!(
        pass.starts_with("PASS\t1") && !pass.contains("proxy"),
        "{pass:?}"
    );
    pm.mailctl_ok(&["user", "set-host", "bob@example.org", "b1.example.org"]);
    assert_eq!(socketmap(&pm, "transport", "bob@example.org"), "NOTFOUND ");
    let users = pm.mailctl_json(&["user", "list"]);
    assert_eq!(users[0]["host"], "b1.example.org");
}

#[test]
fn host_fields_on_sqlite() {
    host_fields(DbKind::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
fn host_fields_on_postgres() {
    host_fields(DbKind::Postgres);
}

#[test]
#[ignore = "needs MariaDB (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_MYSQL_URL)"]
fn host_fields_on_mariadb() {
    host_fields(DbKind::Mysql);
}

/// authd's socketmap requests so far, by result (`found`, `notfound`), from its metrics.
/// authd counts a request before it writes the answer, so once smtpd has delivered a
/// message every lookup made for it is counted.
fn socketmap_requests(pm: &Postern) -> (u64, u64) {
    let addr = pm.daemon("authd").listening_addrs_matching("(metrics)")[0];
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let series = |result: &str| {
        let name =
            format!("postern_authd_requests_total{{socket=\"socketmap\",result=\"{result}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
    };
    (series("found"), series("notfound"))
}

/// Sends one message to `rcpt` through A and waits until `dir` holds `total` messages; the
/// socketmap requests (found, notfound) that message cost.
fn lookups_for_one(a: &Postern, rcpt: &str, dir: &std::path::Path, total: usize) -> (u64, u64) {
    let (f0, n0) = socketmap_requests(a);
    send(a, "carol@remote.test", &[rcpt], "counted");
    wait_until(
        "the message in the Maildir",
        Duration::from_secs(30),
        || messages(dir, "new").len() == total,
    );
    wait_until("an empty queue", Duration::from_secs(30), || {
        queue_len(a) == 0
    });
    let (f1, n1) = socketmap_requests(a);
    (f1 - f0, n1 - n0)
}

/// Issue 17: a node that is no cluster member (`[proxy] self` empty, `smtpd_routing`
/// "auto") asks authd nothing when it delivers: the socketmap requests per message are
/// RCPT's, all found (`recipient` and `domains` on the first message; smtpd keeps authd's
/// answers, so a recipient seen before costs none); no `transport` lookup (notfound for a
/// local user, found for a remote one) follows. bob's account names another node all the same:
/// A's lmtp-deliver forwards his mail to B (its LMTP proxy), nothing lands on A. The same
/// node with `smtpd_routing = "always"` pays one request more per message, which is the
/// lookup the default saves. Seen failing with `cluster::routes` returning true (the
/// routing before issue 17): one notfound request per message more.
#[test]
fn a_single_node_asks_authd_nothing_at_delivery() {
    let port = free_port();
    let b = backend(port);
    let mut a = Postern::builder()
        .hostname("single.example.org")
        .set("proxy.lmtp_port", i64::from(port))
        .set("proxy.connect_timeout_secs", 3)
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    a.add_user("alice@example.org", ALICE_PW);
    a.add_user_on_host("bob@example.org", BOB_PW, Some("127.0.0.1"));
    let alice = maildir(&a, "alice");

    for n in 1..=3 {
        assert_eq!(
            lookups_for_one(&a, "alice@example.org", &alice, n),
            (if n == 1 { 2 } else { 0 }, 0),
            "message {n} to a local user: RCPT's lookups only"
        );
    }
    // bob's mail reaches B through A's lmtp-deliver, with no more lookups.
    assert_eq!(
        lookups_for_one(&a, "bob@example.org", &bob_on(&b), 1),
        (1, 0)
    );
    assert!(messages(&bob_on(&a), "new").is_empty(), "bob's mail on A");

    // Routing asked for: one `transport` lookup more per message (notfound for alice).
    a.edit_config(|t| postern_e2e::set_key(t, "proxy.smtpd_routing", "always".into()));
    a.restart_daemon("smtpd");
    assert_eq!(
        lookups_for_one(&a, "alice@example.org", &alice, 4),
        (2, 1),
        "smtpd_routing = \"always\": RCPT's two (a new smtpd) + transport"
    );
}

/// A cluster front (`[proxy] self` set) still routes in smtpd: one `transport` lookup per
/// message, and bob's mail goes straight to B: it arrives there while A's own lmtp-deliver
/// (whose proxy could otherwise have forwarded it) is stopped.
#[test]
fn a_cluster_front_still_routes_directly() {
    let port = free_port();
    let b = backend(port);
    let mut a = front(port);
    let alice = maildir(&a, "alice");
    assert_eq!(
        lookups_for_one(&a, "alice@example.org", &alice, 1),
        (2, 1),
        "RCPT's two (found) + transport (notfound)"
    );
    a.stop_daemon("lmtp-deliver");
    assert_eq!(
        lookups_for_one(&a, "bob@example.org", &bob_on(&b), 1),
        (2, 0),
        "recipient + transport, both found (the domain is remembered)"
    );
}
