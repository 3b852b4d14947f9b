//! The move protocol against the real imapd (issue 14 §3): a home made by real deliveries and
//! real IMAP commands on node A is copied with `postern-transfer`'s client to node B's move
//! receiver (`[proxy] move_listen`), committed, and B's imapd serves it with the same
//! UIDVALIDITY, UIDs, flags, keywords and MODSEQs; and imapd's kick socket ends a user's
//! IMAP (in IDLE), POP3 and ManageSieve sessions — also one a front relays — leaving other
//! users' sessions alone.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_e2e::{LineClient, Postern};
use postern_transfer::{Action, Client, Kind, Manifest, Status, TransferError, scan};

const BOB: &str = "bob@example.org";
const BOB_PW: &str = "correct-horse-7";
const ALICE: &str = "alice@example.org";
const ALICE_PW: &str = "battery-staple-9";
const SECRET: &str = "0123456789abcdef0123456789abcdef-the-cluster-secret";

fn addr(pm: &Postern, daemon: &str, door: &str) -> SocketAddr {
    pm.daemon(daemon)
        .listening_addrs_matching(&format!("({door})"))[0]
}

fn home(pm: &Postern, user: &str) -> PathBuf {
    pm.dir().join("mail/example.org").join(user)
}

/// Writes the shared secret (mode 0600) into `pm`'s directory; returns its path.
fn write_secret(pm: &Postern, secret: &str) -> PathBuf {
    let path = pm.dir().join("move.secret");
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// A node with bob and alice; `receiver`: with a move receiver on loopback.
fn node(name: &str, receiver: bool) -> Postern {
    let mut b = Postern::builder().hostname(&format!("{name}.example.org"));
    if receiver {
        b = b
            .set("proxy.move_listen", "127.0.0.1:0")
            .set("proxy.move_secret_file", "move.secret");
    }
    // The secret must exist before imapd starts: start imapd after writing it.
    let mut pm = b.daemons(&["authd", "lmtp-deliver"]).start();
    write_secret(&pm, SECRET);
    pm.start_daemon("imapd");
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user(BOB, BOB_PW);
    pm.add_user(ALICE, ALICE_PW);
    pm
}

/// Delivers one message to `rcpt` through `pm`'s lmtp socket.
fn deliver(pm: &Postern, rcpt: &str, subject: &str) {
    let s = UnixStream::connect(pm.socket("lmtp")).expect("lmtp socket");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let reply = |r: &mut BufReader<UnixStream>| loop {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return l;
        }
    };
    assert!(reply(&mut r).starts_with("220"));
    for (cmd, code) in [
        ("LHLO test".to_owned(), "250"),
        ("MAIL FROM:<sender@remote.test>".to_owned(), "250"),
        (format!("RCPT TO:<{rcpt}>"), "250"),
        ("DATA".to_owned(), "354"),
    ] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let l = reply(&mut r);
        assert!(l.starts_with(code), "{cmd}: {l}");
    }
    let msg = format!(
        "From: sender@remote.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n\r\nbody of {subject}\r\n.\r\n"
    );
    w.write_all(msg.as_bytes()).unwrap();
    let l = reply(&mut r);
    assert!(l.starts_with("250"), "after DATA: {l}");
}

fn imap_login(pm: &Postern, user: &str, pw: &str) -> LineClient {
    let mut c = LineClient::connect(addr(pm, "imapd", "imap"));
    assert!(c.line().starts_with("* OK"));
    c.ok("l", &format!("LOGIN {user} {pw}"));
    c
}

/// What a client sees of a mailbox: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and every message's
/// UID, FLAGS (but `\Recent`), MODSEQ, INTERNALDATE and size.
fn state_of(c: &mut LineClient, mailbox: &str) -> Vec<String> {
    let select = c.ok("s", &format!("SELECT {mailbox} (CONDSTORE)"));
    let mut out: Vec<String> = select
        .iter()
        .filter(|l| {
            l.contains("[UIDVALIDITY ") || l.contains("[UIDNEXT ") || l.contains("[HIGHESTMODSEQ ")
        })
        .map(|l| l.split(']').next().unwrap().to_owned())
        .collect();
    out.sort();
    let fetched = c.ok(
        "f",
        "UID FETCH 1:* (UID FLAGS MODSEQ INTERNALDATE RFC822.SIZE)",
    );
    // \Recent belongs to a session (the first to see a message), not to the mailbox.
    out.extend(
        fetched
            .into_iter()
            .filter(|l| l.starts_with("* "))
            .map(|l| {
                l.replace(" \\Recent", "")
                    .replace("\\Recent ", "")
                    .replace("\\Recent", "")
            }),
    );
    out
}

/// Copies `source` (bob's home) to the receiver at `to` as the sender would: passes until
/// one sends nothing, a hashed comparison, commit. Returns the number of passes.
fn copy_home(source: &Path, to: SocketAddr) -> usize {
    let s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut c = Client::handshake(s, SECRET.as_bytes()).expect("handshake");
    let mut dest = match c.begin(BOB).expect("begin") {
        Status::Fresh => Manifest::default(),
        Status::Staging(m) => m,
        Status::HomeExists(_) => panic!("bob's home exists on the destination"),
    };
    let mut passes = 0;
    loop {
        passes += 1;
        assert!(passes <= 5, "the copy does not settle");
        let src = scan(source, false).unwrap();
        let actions = Manifest::diff(&src, &dest);
        if actions.is_empty() {
            break;
        }
        for a in &actions {
            match a {
                Action::Mkdir(e) => c.mkdir(e).unwrap(),
                Action::Put(e) if e.kind == Kind::Symlink => c.symlink(e).unwrap(),
                Action::Put(e) => {
                    let mut f = std::fs::File::open(source.join(&e.path)).unwrap();
                    c.put(e, &mut f).unwrap();
                }
                Action::Delete(p) => c.delete(p).unwrap(),
            }
        }
        dest = src;
    }
    let verified = c.verify().unwrap();
    Manifest::same_content(&scan(source, true).unwrap(), &verified).expect("the copy verifies");
    c.commit().expect("commit");
    passes
}

#[test]
fn a_home_moved_with_the_protocol_keeps_uids_flags_and_modseqs() {
    let a = node("a", false);
    let b = node("b", true);
    for i in 1..=4 {
        deliver(&a, BOB, &format!("m{i}"));
    }
    // Flags, a keyword, a folder with a copied message, a subscription, a Sieve script.
    let mut c = imap_login(&a, BOB, BOB_PW);
    c.ok("e", "SELECT INBOX");
    c.ok("t1", "UID STORE 1 +FLAGS (\\Flagged $Important)");
    c.ok("t2", "UID STORE 2 +FLAGS (\\Seen)");
    c.ok("t3", "UID STORE 4 +FLAGS (\\Deleted)");
    c.ok("x", "EXPUNGE");
    c.ok("m", "CREATE Projects");
    c.ok("k", "UID COPY 3 Projects");
    c.ok("u", "SUBSCRIBE Projects");
    let inbox = state_of(&mut c, "INBOX");
    let archive = state_of(&mut c, "Projects");
    let subscribed = c.ok("ls", "LSUB \"\" \"*\"");
    c.ok("o", "LOGOUT");
    assert!(
        inbox
            .iter()
            .any(|l| l.contains("UID 1 ") && l.contains("$Important") && l.contains("\\Flagged")),
        "{inbox:?}"
    );
    assert!(!inbox.iter().any(|l| l.contains("UID 4 ")), "{inbox:?}");
    std::fs::create_dir_all(home(&a, "bob").join("sieve")).unwrap();
    std::fs::write(home(&a, "bob").join("sieve/main.sieve"), "keep;\n").unwrap();
    // A script activated through ManageSieve (as Roundcube's filters do): `.dovecot.sieve`
    // becomes the symbolic link `sieve/filters.sieve`, which the move carries as a link.
    let mut sieve = sieve_login(&a);
    let r = sieve_cmd(
        &mut sieve,
        &format!("PUTSCRIPT \"filters\" {{{}+}}\r\n{FILTER}", FILTER.len()),
    );
    assert!(r.last().unwrap().starts_with("OK"), "{r:?}");
    let r = sieve_cmd(&mut sieve, "SETACTIVE \"filters\"");
    assert!(r.last().unwrap().starts_with("OK"), "{r:?}");
    sieve_cmd(&mut sieve, "LOGOUT");
    assert_eq!(
        std::fs::read_link(home(&a, "bob").join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/filters.sieve")
    );

    // The destination holds no home for bob (an empty directory would be fine too).
    let dest_home = home(&b, "bob");
    if dest_home.exists() {
        std::fs::remove_dir_all(&dest_home).unwrap();
    }
    let passes = copy_home(&home(&a, "bob"), addr(&b, "imapd", "move"));
    assert_eq!(passes, 2, "one pass copies, the next finds nothing to do");
    b.daemon("imapd")
        .wait_for("move: receiving", Duration::from_secs(5));
    assert!(!dest_home.with_file_name("bob.postern-move").exists());
    assert_eq!(
        std::fs::read(dest_home.join("sieve/main.sieve")).unwrap(),
        b"keep;\n"
    );
    assert_eq!(
        std::fs::read_link(dest_home.join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/filters.sieve"),
        "the active script is still a link, relative to the new home"
    );
    // B's ManageSieve sees the script active.
    let mut sieve = sieve_login(&b);
    let listed = sieve_cmd(&mut sieve, "LISTSCRIPTS");
    assert!(
        listed.iter().any(|l| l == "\"filters\" ACTIVE"),
        "{listed:?}"
    );
    let got = sieve_cmd(&mut sieve, "GETSCRIPT \"filters\"").join("\n");
    assert!(got.contains("fileinto \"Projects\""), "{got}");
    sieve_cmd(&mut sieve, "LOGOUT");

    // B's imapd serves the same mailbox state, byte for byte where it matters.
    let mut c = imap_login(&b, BOB, BOB_PW);
    assert_eq!(state_of(&mut c, "INBOX"), inbox);
    assert_eq!(state_of(&mut c, "Projects"), archive);
    assert_eq!(c.ok("ls", "LSUB \"\" \"*\""), subscribed);
    c.ok("s2", "SELECT INBOX");
    let body = c.ok("b", "UID FETCH 3 BODY.PEEK[HEADER.FIELDS (SUBJECT)]");
    assert!(body.iter().any(|l| l.contains("Subject: m3")), "{body:?}");
    // New mail on B continues the UIDs.
    deliver(&b, BOB, "m5");
    let after = state_of(&mut c, "INBOX");
    assert!(after.iter().any(|l| l.contains("UID 5 ")), "{after:?}");
    // B's lmtp-deliver files by the carried active script.
    deliver(&b, BOB, "filtered-m6");
    let inbox_now = state_of(&mut c, "INBOX");
    assert_eq!(inbox_now.len(), after.len(), "{inbox_now:?}");
    c.ok("s3", "SELECT Projects");
    let found = c.ok("f3", "UID SEARCH SUBJECT filtered-m6");
    assert!(
        found
            .iter()
            .any(|l| l.starts_with("* SEARCH ") && l.len() > "* SEARCH ".len()),
        "{found:?}"
    );
    c.ok("o", "LOGOUT");

    // A second copy attempt finds the committed home and does not touch it.
    let s = TcpStream::connect(addr(&b, "imapd", "move")).unwrap();
    let mut client = Client::handshake(s, SECRET.as_bytes()).unwrap();
    assert!(matches!(client.begin(BOB).unwrap(), Status::HomeExists(_)));
}

#[test]
fn the_receiver_refuses_a_wrong_secret_and_peers_outside_move_networks() {
    let mut b = node("b", true);
    let to = addr(&b, "imapd", "move");
    let s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let err = Client::handshake(s, b"not-the-secret-not-the-secret-not-the-secret")
        .err()
        .expect("refused");
    assert!(matches!(err, TransferError::Auth), "{err:?}");
    b.daemon("imapd")
        .wait_for("move: authentication failed", Duration::from_secs(5));
    // Only 10.x may connect now: loopback is closed before anything is read.
    b.edit_config(|t| {
        postern_e2e::set_key(
            t,
            "proxy.move_networks",
            toml::Value::from(vec!["10.0.0.0/8".to_owned()]),
        );
    });
    b.restart_daemon("imapd");
    let to = addr(&b, "imapd", "move");
    let s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let err = Client::handshake(s, SECRET.as_bytes())
        .err()
        .expect("refused");
    assert!(matches!(err, TransferError::Io(_)), "{err:?}");
    b.daemon("imapd")
        .wait_for("not in [proxy] move_networks", Duration::from_secs(5));
    // A secret readable by others keeps imapd from starting with a receiver.
    std::fs::set_permissions(
        b.dir().join("move.secret"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    b.stop_daemon("imapd");
    let mut cmd = std::process::Command::new(postern_e2e::bin("imapd"));
    cmd.current_dir(b.dir())
        .env_remove("POSTERN_CONFIG")
        .arg("--config")
        .arg(b.config_path());
    let out = postern_e2e::run_command(&mut cmd, None, postern_e2e::COMMAND_TIMEOUT);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("group or others") || stdout.contains("group or others"),
        "{stderr}{stdout}"
    );
}

/// The Sieve script the copy test activates through ManageSieve.
const FILTER: &str = "require [\"fileinto\"];\r\nif header :contains \"subject\" \"filtered\" {\r\n  fileinto \"Projects\";\r\n}\r\n";

/// bob's ManageSieve session on `pm`'s imapd, authenticated.
fn sieve_login(pm: &Postern) -> LineClient {
    let mut sieve = LineClient::connect(addr(pm, "imapd", "managesieve"));
    line_starting(&mut sieve, "OK");
    let ir = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{BOB}\0{BOB_PW}"))
    };
    sieve.send(&format!("AUTHENTICATE \"PLAIN\" \"{ir}\"\r\n"));
    let ok = line_starting(&mut sieve, "OK");
    assert!(ok.starts_with("OK"), "{ok}");
    sieve
}

/// Sends one ManageSieve command (`cmd` without its final CRLF); returns the reply's lines
/// up to and including the final OK, NO or BYE.
fn sieve_cmd(c: &mut LineClient, cmd: &str) -> Vec<String> {
    c.send(&format!("{cmd}\r\n"));
    let mut lines = Vec::new();
    loop {
        let l = c.line();
        assert!(lines.len() < 1000, "no final reply to {cmd}: {lines:?}");
        let done = l.starts_with("OK") || l.starts_with("NO") || l.starts_with("BYE");
        lines.push(l);
        if done {
            return lines;
        }
    }
}

/// Reads lines until one starts with `prefix`; panics at EOF.
fn line_starting(c: &mut LineClient, prefix: &str) -> String {
    loop {
        let l = c.line();
        assert!(!l.is_empty(), "EOF before {prefix}");
        if l.starts_with(prefix) {
            return l;
        }
    }
}

#[test]
fn a_kick_ends_the_users_imap_pop3_and_managesieve_sessions_only() {
    let a = node("a", false);
    deliver(&a, BOB, "hello");
    // bob in IDLE.
    let mut idle = imap_login(&a, BOB, BOB_PW);
    idle.ok("s", "SELECT INBOX");
    idle.send("i IDLE\r\n");
    assert!(idle.line().starts_with("+ "));
    // bob over POP3.
    let mut pop = LineClient::connect(addr(&a, "imapd", "pop3"));
    assert!(pop.line().starts_with("+OK"));
    pop.send(&format!("USER {BOB}\r\n"));
    assert!(pop.line().starts_with("+OK"));
    pop.send(&format!("PASS {BOB_PW}\r\n"));
    assert!(pop.line().starts_with("+OK"));
    // bob over ManageSieve.
    let mut sieve = LineClient::connect(addr(&a, "imapd", "managesieve"));
    line_starting(&mut sieve, "OK");
    let ir = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("\0{BOB}\0{BOB_PW}"))
    };
    sieve.send(&format!("AUTHENTICATE \"PLAIN\" \"{ir}\"\r\n"));
    assert!(line_starting(&mut sieve, "OK").starts_with("OK"));
    // alice, selected, and another bob session that never logged in.
    let mut alice = imap_login(&a, ALICE, ALICE_PW);
    alice.ok("s", "SELECT INBOX");
    let mut anonymous = LineClient::connect(addr(&a, "imapd", "imap"));
    assert!(anonymous.line().starts_with("* OK"));

    let socket = postern_control::imapd::socket_path(&postern_config_of(&a));
    assert_eq!(socket, a.socket("imapd"));
    let n = postern_control::imapd::kick(&socket, "BOB@Example.org").expect("kick");
    assert_eq!(n, 3);

    let bye = idle.line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    assert_eq!(idle.rest(), "");
    let err = pop.line();
    assert!(err.starts_with("-ERR [SYS/TEMP]"), "{err}");
    assert_eq!(pop.rest(), "");
    let bye = sieve.line();
    assert!(bye.starts_with("BYE (TRYLATER)"), "{bye}");
    assert_eq!(sieve.rest(), "");
    // Others go on.
    alice.ok("n", "NOOP");
    anonymous.ok("c", "CAPABILITY");
    // No session left: nothing to kick.
    assert_eq!(postern_control::imapd::kick(&socket, BOB).unwrap(), 0);
    // bob may log in again (the move would have marked the account; this test did not).
    let mut again = imap_login(&a, BOB, BOB_PW);
    again.ok("s", "SELECT INBOX");
    let a_log = a.daemon("imapd").log_text();
    assert!(a_log.contains("kicked the user's sessions"), "{a_log}");
}

/// Loads `pm`'s config file as the daemons do.
fn postern_config_of(pm: &Postern) -> postern_config::Config {
    postern_config::Config::load(pm.config_path()).expect("the config loads")
}

#[test]
fn a_kick_on_the_backend_ends_a_session_a_front_relays() {
    let backend = {
        let pm = Postern::builder()
            .hostname("b.example.org")
            .set("imapd.proxy_networks", vec!["127.0.0.1/32".to_owned()])
            .daemons(&["authd", "lmtp-deliver", "imapd"])
            .start();
        pm.mailctl_ok(&["domain", "add", "example.org"]);
        pm.add_user(BOB, BOB_PW);
        pm
    };
    let front = {
        let pm = Postern::builder()
            .hostname("front.example.org")
            .set("proxy.self", "front.example.org")
            .set(
                "proxy.imap_port",
                i64::from(addr(&backend, "imapd", "imap").port()),
            )
            .daemons(&["authd", "imapd"])
            .start();
        pm.mailctl_ok(&["domain", "add", "example.org"]);
        pm.add_user_on_host(BOB, BOB_PW, Some("127.0.0.1"));
        pm
    };
    deliver(&backend, BOB, "hello");
    let mut c = imap_login(&front, BOB, BOB_PW);
    c.ok("s", "SELECT INBOX");
    c.send("i IDLE\r\n");
    assert!(c.line().starts_with("+ "));
    // The front has nothing to kick; the backend ends the relayed session.
    assert_eq!(
        postern_control::imapd::kick(&front.socket("imapd"), BOB).unwrap(),
        0
    );
    assert_eq!(
        postern_control::imapd::kick(&backend.socket("imapd"), BOB).unwrap(),
        1
    );
    let bye = c.line();
    assert!(bye.starts_with("* BYE [UNAVAILABLE]"), "{bye}");
    assert_eq!(c.rest(), "");
}

/// A test CA and a leaf certificate from it, in PEM.
fn ca_and_leaf(name: &str) -> (String, String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Postern move test CA");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca =
        rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    leaf.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), cert.pem(), key.serialize_pem())
}

/// `[proxy] tls = "verify"`: the receiver speaks implicit TLS with imapd's certificate; a
/// client that verifies it against the CA copies a home, a plain-text client gets nowhere.
#[test]
fn with_hop_tls_the_receiver_requires_tls() {
    use rustls::pki_types::pem::PemObject as _;
    use std::sync::Arc;
    let mut b = node("b", true);
    let (ca, cert, key) = ca_and_leaf("127.0.0.1");
    std::fs::write(b.dir().join("tls/cert.pem"), cert).unwrap();
    std::fs::write(b.dir().join("tls/key.pem"), key).unwrap();
    std::fs::write(b.dir().join("cluster-ca.pem"), &ca).unwrap();
    b.edit_config(|t| {
        postern_e2e::set_key(t, "proxy.tls", "verify".into());
        postern_e2e::set_key(t, "proxy.ca_file", "cluster-ca.pem".into());
    });
    b.restart_daemon("imapd");
    let to = addr(&b, "imapd", "move");

    // Plain text: no greeting comes (the receiver waits for a TLS ClientHello).
    let s = TcpStream::connect(to).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert!(Client::handshake(s, SECRET.as_bytes()).is_err());

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(to).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let tls = rustls::StreamOwned::new(conn, tcp);
    let mut c = Client::handshake(tls, SECRET.as_bytes()).expect("handshake over TLS");
    let dest_home = home(&b, "carol");
    assert_eq!(c.begin("carol@example.org").unwrap(), Status::Fresh);
    let e = postern_transfer::Entry {
        path: "dovecot-uidlist".into(),
        kind: Kind::File,
        size: 6,
        mtime: 1_700_000_000,
        mode: 0o600,
        sha256: None,
        target: None,
    };
    c.put(&e, &mut &b"3 V1 \n"[..]).unwrap();
    c.commit().unwrap();
    assert_eq!(
        std::fs::read(dest_home.join("dovecot-uidlist")).unwrap(),
        b"3 V1 \n"
    );
}
