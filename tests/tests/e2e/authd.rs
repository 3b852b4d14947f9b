//! authd end to end: mailctl fills the directory, authd answers on its three sockets —
//! on SQLite, PostgreSQL and MariaDB — plus the legacy `postfix_accounts` schema, the
//! lockouts, and bad input on every socket.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use postern_auth_proto::client::{AuthClient, AuthOutcome, SocketmapClient, UserdbClient};
use postern_auth_proto::dovecot::AuthParams;
use postern_auth_proto::socketmap::Reply;
use postern_e2e::{DbKind, Postern};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn params(rip: &str, secured: bool) -> AuthParams {
    let mut p = AuthParams::new("smtp");
    p.rip = Some(rip.parse().expect("ip"));
    p.lip = Some("192.0.2.1".parse().expect("ip"));
    p.secured = secured;
    p
}

/// PLAIN through a fresh connection to the auth socket.
fn plain(pm: &Postern, user: &str, pass: &str, rip: &str) -> AuthOutcome {
    rt().block_on(async {
        let mut c = AuthClient::connect(pm.socket("auth"))
            .await
            .expect("connect auth");
        c.plain(user, pass, &params(rip, true))
            .await
            .expect("auth answer")
    })
}

fn is_ok(o: &AuthOutcome, user: &str) -> bool {
    matches!(o, AuthOutcome::Ok { user: u, .. } if u == user)
}

fn lookup(pm: &Postern, map: &str, key: &str) -> Reply {
    rt().block_on(async {
        let mut c = SocketmapClient::connect(pm.socket("socketmap"))
            .await
            .expect("connect socketmap");
        c.lookup(map, key).await.expect("socketmap answer")
    })
}

fn ok_set(r: Reply) -> Vec<String> {
    match r {
        Reply::Ok(v) => {
            let mut v: Vec<String> = v.split(',').map(str::to_owned).collect();
            v.sort();
            v
        }
        other => panic!("expected OK, got {other:?}"),
    }
}

fn add_user(pm: &Postern, addr: &str, pass: &str) {
    let out = pm.mailctl_stdin(&["user", "add", addr], &format!("{pass}\n"));
    assert!(
        out.status.success(),
        "user add {addr}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn fails_with(pm: &Postern, args: &[&str], stdin: &str, needle: &str) {
    let out = pm.mailctl_stdin(args, stdin);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err:?}"
    );
}

/// The whole directory scenario, on one database kind.
fn directory_scenario(kind: DbKind) {
    let pm = Postern::builder()
        .database(kind)
        .set("authd.lockout.account_threshold", 3)
        .set("authd.lockout.delay_after", 100)
        .set("authd.lockout.max_delay_secs", 0)
        .start();
    pm.mailctl_ok(&["domain", "add", "Example.ORG"]);
    pm.mailctl_ok(&["domain", "add", "other.test"]);
    add_user(&pm, "alice@example.org", "correct horse battery");
    add_user(&pm, "Bob@Example.org", "Tr0ub4dor-and-3");
    add_user(&pm, "carol@other.test", "a rather long passphrase");
    pm.mailctl_ok(&["user", "quota", "bob@example.org", "2G"]);
    pm.mailctl_ok(&[
        "alias",
        "add",
        "info@example.org",
        "alice@example.org",
        "bob@example.org",
    ]);
    pm.mailctl_ok(&[
        "alias",
        "add",
        "team@example.org",
        "info@example.org",
        "friend@elsewhere.net",
    ]);
    pm.mailctl_ok(&["alias", "add", "@example.org", "alice@example.org"]);
    pm.mailctl_ok(&["alias", "add", "loop1@other.test", "loop2@other.test"]);
    pm.mailctl_ok(&["alias", "add", "loop2@other.test", "loop1@other.test"]);
    pm.mailctl_ok(&["sender", "add", "@other.test", "bob@example.org"]);

    // Clear errors for bad input, and nothing changed.
    fails_with(
        &pm,
        &["user", "add", "dave@nowhere.test"],
        "long enough pw 1\n",
        "unknown domain",
    );
    fails_with(
        &pm,
        &["user", "add", "not-an-address"],
        "long enough pw 1\n",
        "not an address",
    );
    fails_with(
        &pm,
        &["user", "add", "alice@example.org"],
        "long enough pw 1\n",
        "exists already",
    );
    fails_with(
        &pm,
        &["user", "add", "eve@example.org"],
        "short\n",
        "too short",
    );
    fails_with(
        &pm,
        &["user", "add", "eve@example.org"],
        "eve@example.org\n",
        "address",
    );
    fails_with(
        &pm,
        &["user", "add", "eve@example.org"],
        "password1234\n",
        "common",
    );
    fails_with(&pm, &["domain", "add", "example.org"], "", "exists already");
    fails_with(
        &pm,
        &["domain", "add", "bad domain"],
        "",
        "not a valid domain",
    );
    fails_with(
        &pm,
        &["alias", "add", "x@unknown.test", "alice@example.org"],
        "",
        "unknown domain",
    );
    let users = pm.mailctl_json(&["user", "list"]);
    let users = users.as_array().expect("array");
    assert_eq!(users.len(), 3, "{users:?}");
    assert!(users.iter().all(|u| u["scheme"] == "ARGON2ID"));
    assert_eq!(
        users
            .iter()
            .find(|u| u["address"] == "bob@example.org")
            .expect("bob")["quota_bytes"],
        2i64 << 30
    );

    // Dovecot auth protocol.
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "correct horse battery",
            "198.51.100.7"
        ),
        "alice@example.org"
    ));
    assert!(is_ok(
        &plain(&pm, "BOB@example.org", "Tr0ub4dor-and-3", "198.51.100.7"),
        "bob@example.org"
    ));
    assert!(matches!(
        plain(&pm, "alice@example.org", "wrong", "198.51.100.7"),
        AuthOutcome::Fail { temp: false, .. }
    ));
    assert!(matches!(
        plain(&pm, "nobody@example.org", "whatever1", "198.51.100.7"),
        AuthOutcome::Fail { temp: false, .. }
    ));
    let login = rt().block_on(async {
        let mut c = AuthClient::connect(pm.socket("auth"))
            .await
            .expect("connect");
        c.login(
            "carol@other.test",
            "a rather long passphrase",
            &params("127.0.0.1", false),
        )
        .await
        .expect("answer")
    });
    assert!(is_ok(&login, "carol@other.test"), "{login:?}");
    // Plaintext from a remote address without TLS is refused, even with the right password.
    let insecure = rt().block_on(async {
        let mut c = AuthClient::connect(pm.socket("auth"))
            .await
            .expect("connect");
        c.plain(
            "alice@example.org",
            "correct horse battery",
            &params("198.51.100.7", false),
        )
        .await
        .expect("answer")
    });
    assert!(
        matches!(&insecure, AuthOutcome::Fail { reason: Some(r), .. } if r.contains("Plaintext")),
        "{insecure:?}"
    );

    // socketmap.
    assert_eq!(
        lookup(&pm, "domains", "example.org"),
        Reply::Ok("example.org".into())
    );
    assert_eq!(
        lookup(&pm, "domains", "EXAMPLE.org"),
        Reply::Ok("example.org".into())
    );
    assert_eq!(lookup(&pm, "domains", "nowhere.test"), Reply::NotFound);
    assert_eq!(
        lookup(&pm, "mailboxes", "bob@example.org"),
        Reply::Ok("example.org/bob/Maildir/".into())
    );
    assert_eq!(
        lookup(&pm, "mailboxes", "info@example.org"),
        Reply::NotFound
    );
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "info@example.org")),
        ["alice@example.org", "bob@example.org"]
    );
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "team@example.org")),
        [
            "alice@example.org",
            "bob@example.org",
            "friend@elsewhere.net"
        ]
    );
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "random@example.org")),
        ["alice@example.org"]
    );
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "@example.org")),
        ["alice@example.org"]
    );
    // A real mailbox answers itself, so Postfix's @domain lookup cannot steal its mail.
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "bob@example.org")),
        ["bob@example.org"]
    );
    assert_eq!(lookup(&pm, "aliases", "carol@other.test"), Reply::NotFound);
    assert!(
        matches!(lookup(&pm, "aliases", "loop1@other.test"), Reply::Perm(r) if r.contains("loop"))
    );
    assert_eq!(
        ok_set(lookup(&pm, "senders", "info@example.org")),
        ["alice@example.org", "bob@example.org"]
    );
    assert_eq!(
        ok_set(lookup(&pm, "senders", "alice@example.org")),
        ["alice@example.org"]
    );
    assert_eq!(
        ok_set(lookup(&pm, "senders", "carol@other.test")),
        ["bob@example.org", "carol@other.test"]
    );
    assert!(matches!(lookup(&pm, "nosuchmap", "x"), Reply::Perm(_)));

    // userdb.
    let (alice, bob, nobody, list) = rt().block_on(async {
        let mut c = UserdbClient::connect(pm.socket("auth-userdb"))
            .await
            .expect("connect userdb");
        (
            c.user("alice@example.org", "lmtp").await.expect("answer"),
            c.user("bob@example.org", "imap").await.expect("answer"),
            c.user("nobody@example.org", "lmtp").await.expect("answer"),
            c.list().await.expect("list"),
        )
    });
    let alice = alice.expect("alice found");
    let field =
        |f: &[(String, String)], k: &str| f.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mail_root = pm.dir().join("mail");
    assert_eq!(
        field(&alice, "home"),
        Some(format!("{}/example.org/alice", mail_root.display()))
    );
    assert_eq!(
        field(&alice, "mail"),
        Some(format!(
            "maildir:{}/example.org/alice/Maildir",
            mail_root.display()
        ))
    );
    assert!(field(&alice, "uid").is_some() && field(&alice, "quota_rule").is_none());
    assert_eq!(
        field(&bob.expect("bob found"), "quota_rule"),
        Some(format!("*:storage={}B", 2i64 << 30))
    );
    assert!(nobody.is_none());
    assert_eq!(
        list,
        ["alice@example.org", "bob@example.org", "carol@other.test"]
    );

    // Lockout: three failures lock the account; the right password is then refused too.
    for _ in 0..3 {
        assert!(matches!(
            plain(&pm, "carol@other.test", "guess-guess", "203.0.113.5"),
            AuthOutcome::Fail { .. }
        ));
    }
    let locked = plain(
        &pm,
        "carol@other.test",
        "a rather long passphrase",
        "203.0.113.6",
    );
    assert!(
        matches!(&locked, AuthOutcome::Fail { reason: Some(r), .. } if r.contains("Too many")),
        "{locked:?}"
    );
    let rows = pm.mailctl_json(&["lockout", "list"]);
    let carol = rows
        .as_array()
        .expect("array")
        .iter()
        .find(|r| r["subject"] == "carol@other.test")
        .expect("carol's row")
        .clone();
    assert_eq!(carol["locked"], true, "{rows}");
    pm.authd()
        .wait_for("lockout started", Duration::from_secs(5));
    pm.mailctl_ok(&["lockout", "clear", "carol@other.test"]);
    assert!(is_ok(
        &plain(
            &pm,
            "carol@other.test",
            "a rather long passphrase",
            "203.0.113.6"
        ),
        "carol@other.test"
    ));
    // Other accounts were never affected.
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "correct horse battery",
            "203.0.113.5"
        ),
        "alice@example.org"
    ));

    // Password change takes effect at once; removal too.
    pm.mailctl_stdin(
        &["user", "passwd", "alice@example.org"],
        "a brand new passphrase\n",
    );
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "a brand new passphrase",
            "127.0.0.1"
        ),
        "alice@example.org"
    ));
    pm.mailctl_ok(&["user", "remove", "carol@other.test"]);
    assert_eq!(
        lookup(&pm, "mailboxes", "carol@other.test"),
        Reply::NotFound
    );
    let log = pm.authd().log_text();
    assert!(
        !log.contains("correct horse battery") && !log.contains("guess-guess"),
        "a password reached the log"
    );
}

#[test]
fn directory_on_sqlite() {
    directory_scenario(DbKind::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
fn directory_on_postgres() {
    directory_scenario(DbKind::Postgres);
}

#[test]
#[ignore = "needs MariaDB (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_MYSQL_URL)"]
fn directory_on_mariadb() {
    directory_scenario(DbKind::Mysql);
}

/// DES crypt of "legacy-pass-1" with salt "ab", as MySQL `ENCRYPT('legacy-pass-1','ab')`
/// makes it (produced with Python's crypt module, i.e. glibc crypt(3)).
const DES_LEGACY: &str = "abNrejmOmcv6w";

/// The classic tutorial schema, used as it is through `[database.queries]`.
fn legacy_scenario(kind: DbKind) {
    let pm = Postern::builder()
        .database(kind)
        .set(
            "database.queries.domain",
            "SELECT DomainName FROM domains_table WHERE DomainName = '%d'",
        )
        .set(
            "database.queries.account",
            "SELECT Email, password, 0, 1 FROM accounts_table WHERE Email = '%u'",
        )
        .set(
            "database.queries.alias",
            "SELECT Destination FROM alias_table WHERE Source = '%u'",
        )
        .set(
            "database.queries.list",
            "SELECT Email FROM accounts_table ORDER BY Email",
        )
        .start();
    let (id, text) = match kind {
        DbKind::Postgres => ("SERIAL PRIMARY KEY", "VARCHAR(100)"),
        DbKind::Mysql => ("INT NOT NULL AUTO_INCREMENT PRIMARY KEY", "VARCHAR(100)"),
        DbKind::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "VARCHAR(100)"),
    };
    pm.sql(&format!(
        "CREATE TABLE domains_table (DomainId {id}, DomainName VARCHAR(50) NOT NULL)"
    ));
    pm.sql(&format!(
        "CREATE TABLE accounts_table (AccountId {id}, DomainId INT NOT NULL, password {text} NOT NULL, Email {text} NOT NULL)"
    ));
    pm.sql(&format!(
        "CREATE TABLE alias_table (AliasId {id}, DomainId INT NOT NULL, Source {text} NOT NULL, Destination {text} NOT NULL)"
    ));
    pm.sql("INSERT INTO domains_table (DomainName) VALUES ('legacy.test')");
    let hash = if kind == DbKind::Mysql {
        // The real thing: MariaDB's ENCRYPT() (crypt(3)).
        "ENCRYPT('legacy-pass-1', 'ab')".to_owned()
    } else {
        format!("'{DES_LEGACY}'")
    };
    pm.sql(&format!("INSERT INTO accounts_table (DomainId, password, Email) VALUES (1, {hash}, 'old@legacy.test')"));
    pm.sql(
        "INSERT INTO accounts_table (DomainId, password, Email) VALUES (1, \
         '$6$saltsalt$r.Dq.Z//uVDl/5XNLMpy4BgsTFogINFCGK4jyn0UIwq/9YSxkHMWA5gT5AX79kqvW6DJeHuzeXpGyPbWSrZWn.', 'sha@legacy.test')",
    );
    pm.sql("INSERT INTO alias_table (DomainId, Source, Destination) VALUES (1, 'postmaster@legacy.test', 'old@legacy.test')");
    pm.sql("INSERT INTO alias_table (DomainId, Source, Destination) VALUES (1, 'all@legacy.test', 'old@legacy.test,sha@legacy.test')");

    assert!(is_ok(
        &plain(&pm, "old@legacy.test", "legacy-pass-1", "127.0.0.1"),
        "old@legacy.test"
    ));
    // DES crypt looks at 8 characters only; this differs within them.
    assert!(matches!(
        plain(&pm, "old@legacy.test", "legacy-word", "127.0.0.1"),
        AuthOutcome::Fail { .. }
    ));
    assert!(is_ok(
        &plain(&pm, "sha@legacy.test", "legacy-pass-2", "127.0.0.1"),
        "sha@legacy.test"
    ));
    assert_eq!(
        lookup(&pm, "domains", "legacy.test"),
        Reply::Ok("legacy.test".into())
    );
    assert_eq!(lookup(&pm, "domains", "example.org"), Reply::NotFound);
    assert_eq!(
        lookup(&pm, "mailboxes", "old@legacy.test"),
        Reply::Ok("legacy.test/old/Maildir/".into())
    );
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "postmaster@legacy.test")),
        ["old@legacy.test"]
    );
    assert_eq!(
        ok_set(lookup(&pm, "aliases", "all@legacy.test")),
        ["old@legacy.test", "sha@legacy.test"]
    );
    let users = rt().block_on(async {
        let mut c = UserdbClient::connect(pm.socket("auth-userdb"))
            .await
            .expect("connect");
        c.list().await.expect("list")
    });
    assert_eq!(users, ["old@legacy.test", "sha@legacy.test"]);
    // mailctl refuses to write a schema it does not own.
    fails_with(&pm, &["domain", "add", "new.test"], "", "custom SQL");
}

#[test]
fn postfix_accounts_schema_on_sqlite() {
    legacy_scenario(DbKind::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
fn postfix_accounts_schema_on_postgres() {
    legacy_scenario(DbKind::Postgres);
}

#[test]
#[ignore = "needs MariaDB (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_MYSQL_URL)"]
fn postfix_accounts_schema_on_mariadb() {
    legacy_scenario(DbKind::Mysql);
}

/// Writes `send`, then reads until `expect_lines` newline-terminated lines, EOF, or 5 s.
fn raw(path: &std::path::Path, send: &[u8], expect_lines: usize) -> (String, bool) {
    let mut s = UnixStream::connect(path).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(send).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let mut closed = false;
    while out.iter().filter(|&&b| b == b'\n').count() < expect_lines {
        match s.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A reset (the server closed with our bytes unread) is a close too.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break;
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[test]
fn bad_input_on_every_socket_is_answered_and_the_daemon_keeps_serving() {
    let pm = Postern::builder().start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    add_user(&pm, "alice@example.org", "correct horse battery");
    let auth = pm.socket("auth");
    // Handshake is 7 lines (VERSION, 2×MECH, SPID, CUID, COOKIE, DONE).
    let (out, _) = raw(
        &auth,
        b"VERSION\t1\t0\nAUTH\t1\tCRAM-MD5\tservice=smtp\trip=127.0.0.1\n",
        8,
    );
    assert!(
        out.contains("FAIL\t1\t") && out.contains("Unsupported"),
        "{out}"
    );
    let (out, _) = raw(
        &auth,
        b"VERSION\t1\t0\nAUTH\t2\tPLAIN\tservice=smtp\trip=127.0.0.1\tresp=%%%not-base64\n",
        8,
    );
    assert!(out.contains("FAIL\t2\t"), "{out}");
    let (out, _) = raw(
        &auth,
        b"VERSION\t1\t0\nAUTH\tnot-a-number\tPLAIN\nCONT\t77\tAAAA\n",
        8,
    );
    assert!(out.contains("FAIL\t77\t"), "{out}");
    let mut long = b"VERSION\t1\t0\nAUTH\t3\tPLAIN\tservice=smtp\tx=".to_vec();
    long.extend(std::iter::repeat_n(b'a', 40_000));
    long.push(b'\n');
    let (out, closed) = raw(&auth, &long, 100);
    assert!(closed && !out.contains("OK\t"), "over-long line: {out}");
    let (out, closed) = raw(
        &auth,
        b"\x00\x01\xff garbage\n\n\n\x00\n\n\n\n\n\n\n\n\n",
        100,
    );
    assert!(closed && out.starts_with("VERSION\t1\t"), "{out:?}");

    let sm = pm.socket("socketmap");
    let (out, closed) = raw(&sm, b"3:abcd,", 1);
    assert!(closed && out.contains("PERM "), "wrong length: {out:?}");
    let (out, closed) = raw(&sm, b"x:abc,", 1);
    assert!(closed && out.contains("PERM "), "non-digit length: {out:?}");
    let (out, closed) = raw(&sm, b"99999999:", 1);
    assert!(closed && out.contains("PERM "), "huge length: {out:?}");
    let (out, _) = raw(&sm, b"7:domains,", 1);
    assert!(out.contains("PERM "), "request without a key: {out:?}");

    let udb = pm.socket("auth-userdb");
    let (out, _) = raw(&udb, b"VERSION\t1\t0\nUSER\nUSER\t5\nBOGUS\t6\tx\n", 4);
    assert!(
        out.contains("FAIL\t5\t") && out.contains("FAIL\t6\t"),
        "{out}"
    );
    let mut long = b"VERSION\t1\t0\nUSER\t1\t".to_vec();
    long.extend(std::iter::repeat_n(b'u', 40_000));
    long.push(b'\n');
    let (_, closed) = raw(&udb, &long, 100);
    assert!(closed);

    // Still serving, on every socket.
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "correct horse battery",
            "127.0.0.1"
        ),
        "alice@example.org"
    ));
    assert_eq!(
        lookup(&pm, "domains", "example.org"),
        Reply::Ok("example.org".into())
    );
    assert!(pm.authd().is_running());
}

#[test]
fn authd_stops_cleanly_on_sigterm_and_removes_its_sockets() {
    let mut pm = Postern::builder().start();
    let auth = pm.socket("auth");
    assert!(auth.exists());
    pm.stop_daemon("authd");
    assert!(!auth.exists(), "socket left behind");
}

#[test]
fn ip_lockout_delays_and_allow_list() {
    let pm = Postern::builder()
        .set("authd.lockout.ip_threshold", 4)
        .set("authd.lockout.account_threshold", 100)
        .set("authd.lockout.delay_after", 2)
        .set("authd.lockout.max_delay_secs", 1)
        .set("authd.lockout.allow_networks", vec!["192.0.2.0/24"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    add_user(&pm, "alice@example.org", "correct horse battery");
    // From the allow-listed network: many failures, never delayed nor locked.
    for _ in 0..6 {
        assert!(matches!(
            plain(&pm, "alice@example.org", "nope-nope", "192.0.2.50"),
            AuthOutcome::Fail { .. }
        ));
    }
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "correct horse battery",
            "192.0.2.50"
        ),
        "alice@example.org"
    ));
    // A guesser trying many accounts from one IP: answers slow down, then the IP is locked.
    let mut slow = Duration::ZERO;
    for i in 0..4 {
        let t = std::time::Instant::now();
        let r = plain(
            &pm,
            &format!("guess{i}@example.org"),
            "password-guess",
            "203.0.113.77",
        );
        assert!(matches!(r, AuthOutcome::Fail { .. }));
        if i == 2 {
            slow = t.elapsed();
        }
    }
    assert!(
        slow >= Duration::from_millis(900),
        "third failure answered after {slow:?}, expected the 1 s penalty"
    );
    let locked = plain(
        &pm,
        "alice@example.org",
        "correct horse battery",
        "203.0.113.77",
    );
    assert!(
        matches!(&locked, AuthOutcome::Fail { reason: Some(r), .. } if r.contains("Too many")),
        "{locked:?}"
    );
    // The account itself is fine from elsewhere.
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "correct horse battery",
            "198.51.100.20"
        ),
        "alice@example.org"
    ));
    let rows = pm.mailctl_json(&["lockout", "list"]);
    assert!(
        rows.as_array()
            .expect("array")
            .iter()
            .any(|r| r["scope"] == "ip" && r["subject"] == "203.0.113.77" && r["locked"] == true),
        "{rows}"
    );
    assert!(
        !rows.to_string().contains("192.0.2.50"),
        "allow-listed IP was counted: {rows}"
    );
    pm.mailctl_ok(&["lockout", "clear", "203.0.113.77"]);
    assert!(is_ok(
        &plain(
            &pm,
            "alice@example.org",
            "correct horse battery",
            "203.0.113.77"
        ),
        "alice@example.org"
    ));
}

#[test]
fn old_hashes_are_rehashed_to_argon2id_after_login() {
    let pm = Postern::builder()
        .set("passwords.rehash_to_argon2id", true)
        .start();
    pm.mailctl_ok(&["domain", "add", "legacy.test"]);
    // SHA512-CRYPT of "legacy-pass-2" (glibc crypt(3) via Python's crypt module).
    pm.mailctl_ok(&[
        "user",
        "add",
        "sha@legacy.test",
        "--password-hash",
        "{SHA512-CRYPT}$6$saltsalt$r.Dq.Z//uVDl/5XNLMpy4BgsTFogINFCGK4jyn0UIwq/9YSxkHMWA5gT5AX79kqvW6DJeHuzeXpGyPbWSrZWn.",
    ]);
    fails_with(
        &pm,
        &[
            "user",
            "add",
            "bad@legacy.test",
            "--password-hash",
            "{SHA512-CRYPT}garbage",
        ],
        "",
        "",
    );
    let scheme = |pm: &Postern| {
        pm.mailctl_json(&["user", "list"])[0]["scheme"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(scheme(&pm), "SHA512-CRYPT");
    assert!(is_ok(
        &plain(&pm, "sha@legacy.test", "legacy-pass-2", "127.0.0.1"),
        "sha@legacy.test"
    ));
    pm.authd().wait_for("rehashed", Duration::from_secs(10));
    assert_eq!(scheme(&pm), "ARGON2ID");
    assert!(is_ok(
        &plain(&pm, "sha@legacy.test", "legacy-pass-2", "127.0.0.1"),
        "sha@legacy.test"
    ));
}

#[test]
fn mailctl_run_supervises_and_restarts_authd() {
    let pm = Postern::builder().daemons(&[]).start();
    let mut cmd = std::process::Command::new(postern_e2e::bin("mailctl"));
    cmd.arg("--config").arg(pm.config_path()).arg("run");
    let run = postern_e2e::Daemon::spawn("mailctl-run", cmd);
    // Every daemon found beside mailctl starts (lmtp-deliver too): wait for authd's line.
    run.wait_for("ready daemon=\"authd\"", Duration::from_secs(30));
    let started = run.wait_for("started authd (pid ", Duration::from_secs(10));
    let pid: i32 = started
        .split("(pid ")
        .nth(1)
        .and_then(|s| s.trim_end_matches(')').trim().parse().ok())
        .expect("pid in the start line");
    let mark = run.mark();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill authd");
    run.wait_for_since(mark, "restarting in", Duration::from_secs(10));
    run.wait_for_since(mark, "ready daemon=\"authd\"", Duration::from_secs(20));
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    assert_eq!(
        lookup(&pm, "domains", "example.org"),
        Reply::Ok("example.org".into())
    );
    let status = run.terminate();
    assert!(
        status.success(),
        "mailctl run exited with {status}\n{}",
        run.log_text()
    );
    assert!(
        run.log_text().contains("authd stopped"),
        "{}",
        run.log_text()
    );
}
