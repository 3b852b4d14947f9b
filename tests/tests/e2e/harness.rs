//! Smoke tests of the harness itself: binary lookup, the `Daemon` wrapper (driven by a
//! shell script standing in for a daemon), the private Postfix, the per-test databases.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use postern_e2e::{
    BUILD_HINT, Daemon, DbKind, Postfix, TestDb, bin, bin_dir, exec_sql, find_bin, run_python,
    try_exec_sql,
};

/// A stand-in daemon: `sh -c SCRIPT`.
fn sh(name: &str, script: &str) -> Daemon {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    Daemon::spawn(name, cmd)
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("expected a panic");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_default()
}

#[test]
fn missing_binary_says_how_to_build() {
    let err = find_bin(&bin_dir(), "postern-no-such-binary").unwrap_err();
    assert!(err.contains("postern-no-such-binary"), "{err}");
    assert!(
        err.ends_with("run `cargo build --workspace --bins` first"),
        "{err}"
    );
    assert!(err.contains(BUILD_HINT));
}

#[test]
#[should_panic(expected = "run `cargo build --workspace --bins` first")]
fn bin_panics_with_the_build_hint() {
    bin("postern-no-such-binary");
}

#[test]
fn bin_dir_is_the_cargo_profile_dir() {
    if std::env::var_os("POSTERN_BIN_DIR").is_some() {
        return;
    }
    let dir = bin_dir();
    assert!(
        dir.join("deps").is_dir(),
        "{} should be target/<profile>",
        dir.display()
    );
}

#[test]
fn daemon_logs_addresses_and_stops_on_sigterm() {
    let d = sh(
        "fake",
        "trap 'echo bye >&2; exit 0' TERM
         echo 'INFO fake: listening on 127.0.0.1:40001' >&2
         echo 'INFO fake: listening on addr=[::1]:40002' >&2
         echo 'INFO fake: listening on /tmp/fake/run/auth' >&2
         echo 'on stdout'
         echo 'INFO fake: ready' >&2
         while :; do sleep 0.05; done",
    );
    d.wait_ready();
    assert_eq!(
        d.listening_addrs(),
        [
            "127.0.0.1:40001".parse::<SocketAddr>().unwrap(),
            "[::1]:40002".parse().unwrap()
        ]
    );
    assert_eq!(d.listening_paths(), [PathBuf::from("/tmp/fake/run/auth")]);
    assert_eq!(d.listening_addrs_matching("[::1]").len(), 1);
    d.wait_for("on stdout", Duration::from_secs(10));
    let mark = d.mark();
    d.stop();
    d.wait_for_since(mark, "bye", Duration::from_secs(10));
    assert!(!d.is_running());
}

#[test]
fn daemon_that_exits_early_fails_with_its_log() {
    let d = sh("early", "echo 'cannot bind: no such thing' >&2; exit 3");
    let msg = panic_message(|| d.wait_ready());
    assert!(msg.contains("early exited"), "{msg}");
    assert!(msg.contains("exit status: 3"), "{msg}");
    assert!(msg.contains("cannot bind: no such thing"), "{msg}");
}

#[test]
fn daemon_wait_is_bounded() {
    let d = sh("quiet", "echo starting >&2; exec sleep 30");
    let msg = panic_message(|| {
        d.wait_for("never", Duration::from_millis(300));
    });
    assert!(msg.contains("did not log"), "{msg}");
    assert!(msg.contains("starting"), "{msg}");
    // Dropping `d` kills the sleep.
}

#[test]
fn daemon_stop_asserts_exit_status_zero() {
    let d = sh(
        "grumpy",
        "trap 'exit 7' TERM; echo ready >&2; while :; do sleep 0.05; done",
    );
    d.wait_ready();
    let msg = panic_message(|| d.stop());
    assert!(msg.contains("exit status: 7"), "{msg}");
}

#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn postfix_instance_answers_220() {
    let mut pf = Postfix::builder()
        .main_cf("smtpd_banner = $myhostname ESMTP postern-e2e")
        .start();

    let stream = TcpStream::connect(pf.smtp_addr()).expect("connect to Postfix");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("220 mx.postfix.test ESMTP postern-e2e"),
        "{line:?}"
    );
    (&stream).write_all(b"QUIT\r\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("221 "), "{line:?}");

    let found = pf.postmap_query("inline:{ key=value }", "key");
    assert!(found.status.success());
    assert_eq!(String::from_utf8_lossy(&found.stdout).trim(), "value");
    let missing = pf.postmap_query("inline:{ key=value }", "other");
    assert_eq!(missing.status.code(), Some(1));

    let port = pf.smtp_addr().port().to_string();
    let py = run_python(
        "import smtplib, sys\n\
         with smtplib.SMTP('127.0.0.1', int(sys.argv[1]), timeout=30) as s:\n\
         \x20   code, _ = s.ehlo('client.test')\n\
         \x20   print(code, s.has_extn('pipelining'))\n",
        &[&port],
    );
    assert!(py.status.success(), "{py:?}");
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "250 True");

    pf.wait_for_log("daemon started", Duration::from_secs(10));
    pf.wait_for_log("connect from localhost[127.0.0.1]", Duration::from_secs(10));
    pf.stop();
}

fn database_roundtrip(kind: DbKind) {
    let db = TestDb::create(kind);
    assert!(db.name().starts_with("postern_t_"));
    exec_sql(
        db.url(),
        "CREATE TABLE t (x INTEGER); INSERT INTO t (x) VALUES (1)",
    );
    let url = db.url().to_owned();
    drop(db);
    assert!(
        try_exec_sql(&url, "SELECT 1").is_err(),
        "the database should be gone"
    );
}

#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or eval \"$(scripts/ci-services.sh)\")"]
fn postgres_test_database_is_created_and_dropped() {
    database_roundtrip(DbKind::Postgres);
}

#[test]
#[ignore = "needs MariaDB (run .ci/run, or eval \"$(scripts/ci-services.sh)\")"]
fn mysql_test_database_is_created_and_dropped() {
    database_roundtrip(DbKind::Mysql);
}
