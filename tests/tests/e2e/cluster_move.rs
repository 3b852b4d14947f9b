//! Scenario 5 of issue 14: `mailctl user move` while mail keeps arriving, on the cluster of
//! `cluster_netns` (two fronts, two backends, one PostgreSQL; network namespaces, or
//! loopback aliases without them). The backends run imapd's move receiver (`[proxy]
//! move_listen`, a shared secret, the test network allowed); every authd caches for 1 s.
//!
//! bob lives on backend 1 with flagged mail (a keyword too), a subscribed folder, a Sieve
//! script and a bulky folder (so that a copy takes a moment). A bounded sender mails him
//! numbered messages through both fronts for the whole scenario:
//!
//! 1. a move to backend 2 whose receiver is SIGKILLed in the middle of the copy: the command
//!    fails, bob stays "moving" — logins are refused for now at the fronts and on backend 1,
//!    LMTP answers 451, authd's `transport` TEMP (`recipient` still OK), the fronts accept
//!    mail and defer it; `user list` shows the move;
//! 2. the same command again, once the receiver is back: it resumes from the partial copy
//!    and completes; after a queue flush every numbered message is on backend 2 exactly once,
//!    the old messages keep UIDs, UIDVALIDITY, flags and keywords (IMAP through a front lands
//!    on backend 2), the subscription and the Sieve script are there (and filter), and bob's
//!    live home on backend 1 is gone (kept aside under `.moved-…`);
//! 3. carol's move to backend 1 fails (its receiver is down) and `--abort` restores normal
//!    service on backend 2, mail sent meanwhile included.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use postern_e2e::{LineClient, Postern, describe_output, free_port};

use crate::cluster_netns::{
    BOB, CAROL, Cluster, PW, count, queue_len, smtp, sock, subjects, wait_until,
};

/// Files in bob's bulky folder: enough that a copy is still running when it is interrupted.
const BULK: usize = 2000;
/// Numbered messages sent at most.
const MAX_LOAD: usize = 800;

fn home(pm: &Postern, user: &str) -> PathBuf {
    pm.dir().join("mail/example.org").join(user)
}

fn staging(pm: &Postern, user: &str) -> PathBuf {
    pm.dir()
        .join("mail/example.org")
        .join(format!("{user}.postern-move"))
}

/// Files below `dir` (recursively); 0 when it does not exist.
fn files_below(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => files_below(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

/// `mailctl user list --json`: bob's or carol's (host, moving_to).
fn move_state(pm: &Postern, address: &str) -> (String, String) {
    let list = pm.mailctl_json(&["user", "list"]);
    let u = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["address"] == address)
        .unwrap_or_else(|| panic!("{address} not listed: {list}"))
        .clone();
    (
        u["host"].as_str().unwrap().to_owned(),
        u["moving_to"].as_str().unwrap().to_owned(),
    )
}

/// The UIDVALIDITY in a SELECT answer.
fn uidvalidity(select: &[String]) -> String {
    select
        .iter()
        .find_map(|l| {
            l.split("[UIDVALIDITY ")
                .nth(1)
                .and_then(|r| r.split(']').next())
        })
        .unwrap_or_else(|| panic!("no UIDVALIDITY: {select:?}"))
        .to_owned()
}

/// The HIGHESTMODSEQ in a SELECT (CONDSTORE) answer.
fn highestmodseq(select: &[String]) -> String {
    select
        .iter()
        .find_map(|l| {
            l.split("[HIGHESTMODSEQ ")
                .nth(1)
                .and_then(|r| r.split(']').next())
        })
        .unwrap_or_else(|| panic!("no HIGHESTMODSEQ: {select:?}"))
        .to_owned()
}

/// The untagged FETCH lines, `\Recent` left out (it belongs to a session, not a message).
fn fetch_lines(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.starts_with("* ") && l.contains(" FETCH "))
        .map(|l| {
            l.replace("\\Recent", "")
                .replace("( ", "(")
                .replace(" )", ")")
                .replace("  ", " ")
        })
        .collect()
}

/// `mailctl ARGS` on `pm` in the background, its output in `logs/out` and `logs/err`.
fn mailctl_child(pm: &Postern, args: &[&str], logs: &Path) -> std::process::Child {
    Command::new(postern_e2e::bin("mailctl"))
        .arg("--config")
        .arg(pm.config_path())
        .args(args)
        .current_dir(pm.dir())
        .env_remove("POSTERN_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(logs.join("out")).unwrap())
        .stderr(std::fs::File::create(logs.join("err")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits (at most 60 s) for a [`mailctl_child`] to end: whether it succeeded, and its
/// stderr.
fn wait_child(child: &mut std::process::Child, logs: &Path) -> (bool, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mailctl did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status.success(),
        std::fs::read_to_string(logs.join("err")).unwrap_or_default(),
    )
}

/// LMTP to backend `i` for `rcpt`: the RCPT reply.
fn lmtp_rcpt(addr: std::net::SocketAddr, rcpt: &str) -> String {
    let mut c = LineClient::connect(addr);
    assert!(c.line().starts_with("220"));
    c.send("LHLO test.example\r\n");
    loop {
        let l = c.line();
        assert!(l.starts_with("250"), "{l}");
        if l.starts_with("250 ") {
            break;
        }
    }
    c.send("MAIL FROM:<sender@remote.test>\r\n");
    assert!(c.line().starts_with("250"));
    c.send(&format!("RCPT TO:<{rcpt}>\r\n"));
    let r = c.line();
    c.send("QUIT\r\n");
    r
}

#[test]
#[ignore = "needs root, ip netns, postgresql"]
fn a_user_moved_while_mail_keeps_arriving() {
    let started = Instant::now();
    let secrets = tempfile::tempdir().unwrap();
    let secret = secrets.path().join("move.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef-move-test\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let move_port = free_port();
    let secret_path = secret.display().to_string();
    let mut cluster = Cluster::start_with(&move |b, i| {
        let b = b.set("authd.cache_ttl_secs", 1);
        if i < 2 {
            return b;
        }
        b.set("proxy.move_port", i64::from(move_port))
            .set("proxy.move_secret_file", secret_path.clone())
            .configure(move |t| {
                // The backend's own address, as its other listeners use it.
                let ip = t["proxy"]["self"].as_str().unwrap().to_owned();
                postern_e2e::set_key(
                    t,
                    "proxy.move_listen",
                    toml::Value::from(format!("{ip}:{move_port}")),
                );
                let nets = t["lmtp"]["allow_networks"].clone();
                postern_e2e::set_key(t, "proxy.move_networks", nets);
            })
    });
    let Cluster {
        f1,
        f2,
        b1,
        b2,
        net,
        ports,
        ..
    } = &mut cluster;
    let (net, ports) = (&*net, &*ports);
    let (ip1, ip2) = (net.ips[2].clone(), net.ips[3].clone());
    let smtp_at = |i: usize| sock(net, i, ports.smtp);
    println!("cluster_move: 4 nodes up after {:?}", started.elapsed());

    // bob's mailbox on backend 1: 3 messages, flags and a keyword, a subscribed folder, a
    // Sieve script, and a bulky folder.
    for k in 0..3 {
        smtp(smtp_at(k % 2), &[BOB], &format!("seed {k}")).unwrap();
    }
    wait_until("the seeds on backend 1", Duration::from_secs(30), || {
        count(b1, "bob") == 3
    });
    let mut c = LineClient::connect(sock(net, 0, ports.imap));
    assert!(c.line().starts_with("* OK"));
    c.ok("a", &format!("LOGIN {BOB} \"{PW}\""));
    let validity = uidvalidity(&c.ok("b", "SELECT INBOX"));
    c.ok("c", "STORE 1 +FLAGS (\\Flagged $Project)");
    c.ok("d", "STORE 2 +FLAGS (\\Seen \\Answered)");
    c.ok("e", "CREATE Projects");
    c.ok("f", "SUBSCRIBE Projects");
    let before = fetch_lines(&c.ok("g", "FETCH 1:3 (UID FLAGS)"));
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before[0].contains("$Project"), "{before:?}");
    c.ok("z", "LOGOUT");
    let script = "require [\"fileinto\"];\nif header :contains \"subject\" \"sieve-marker\" { fileinto \"Projects\"; }\n";
    let out = b1.mailctl_stdin(&["sieve", "put", BOB], script);
    assert!(out.status.success(), "{}", describe_output(&out));
    let bulk = home(b1, "bob").join("Maildir/.Bulk");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(bulk.join(sub)).unwrap();
    }
    let body = format!("Subject: bulk\r\n\r\n{}\r\n", "x".repeat(2000));
    for k in 0..BULK {
        std::fs::write(
            bulk.join("cur")
                .join(format!("1700000000.M{k}P1.bulk,S=2020:2,S")),
            &body,
        )
        .unwrap();
    }

    // Numbered mail through both fronts for the whole scenario (bounded).
    let stop = AtomicBool::new(false);
    let load = |stop: &AtomicBool| {
        let (mut ok, mut refused) = (Vec::new(), Vec::new());
        for k in 0..MAX_LOAD {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let subject = format!("numbered {k}");
            match smtp(smtp_at(k % 2), &[BOB], &subject) {
                Ok(_) => ok.push(subject),
                Err(r) => refused.push(r),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        (ok, refused)
    };
    let (accepted, refused) = std::thread::scope(|s| {
        let sender = s.spawn(|| load(&stop));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            interrupted_then_resumed(b1, b2, f1, f2, net, ports, &ip1, &ip2);
        }));
        stop.store(true, Ordering::Relaxed);
        let sent = sender.join().unwrap();
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
        sent
    });
    println!(
        "cluster_move: {} numbered messages accepted, {} refused, moved at {:?}",
        accepted.len(),
        refused.len(),
        started.elapsed()
    );
    assert!(refused.is_empty(), "refused while moving: {refused:?}");
    assert!(accepted.len() >= 20, "too little load: {}", accepted.len());

    // Everything the fronts hold goes to backend 2 now.
    let fronts = [&*f1, &*f2];
    for f in fronts {
        f.mailctl_ok(&["queue", "flush"]);
    }
    wait_until("the fronts' queues empty", Duration::from_secs(60), || {
        fronts.iter().all(|f| queue_len(f) == 0)
    });
    let got = subjects(b2, "bob");
    for s in accepted
        .iter()
        .map(String::as_str)
        .chain(["seed 0", "seed 1", "seed 2"])
    {
        let n = got.iter().filter(|g| *g == s).count();
        assert_eq!(n, 1, "{s:?} on backend 2 {n} times");
    }
    assert_eq!(
        got.len(),
        accepted.len() + 3,
        "nothing else in bob's INBOX on backend 2"
    );
    assert!(!home(b1, "bob").exists(), "bob's live home on backend 1");
    assert!(count(b1, "bob") == 0);

    // IMAP through front 2 lands on backend 2: same UIDVALIDITY, UIDs, flags, keyword;
    // the subscription is there.
    let mut c = LineClient::connect(sock(net, 1, ports.imap));
    assert!(c.line().starts_with("* OK"));
    c.ok("a", &format!("LOGIN {BOB} \"{PW}\""));
    assert_eq!(uidvalidity(&c.ok("b", "SELECT INBOX")), validity);
    let after = fetch_lines(&c.ok("c", "FETCH 1:3 (UID FLAGS)"));
    assert_eq!(after, before, "UIDs and flags after the move");
    let lsub = c.ok("d", "LSUB \"\" \"*\"");
    assert!(lsub.iter().any(|l| l.contains("Projects")), "{lsub:?}");
    c.ok("z", "LOGOUT");
    // The Sieve script came along and files on backend 2.
    let out = b2.mailctl_ok(&["sieve", "get", BOB]);
    assert_eq!(out.trim_end(), script.trim_end());
    smtp(smtp_at(0), &[BOB], "sieve-marker after the move").unwrap();
    let archive = home(b2, "bob").join("Maildir/.Projects");
    wait_until(
        "the Sieve-filed message on backend 2",
        Duration::from_secs(30),
        || files_below(&archive.join("new")) + files_below(&archive.join("cur")) == 1,
    );
    assert_eq!(move_state(f1, BOB), (ip2.clone(), String::new()));
    println!("cluster_move: bob done at {:?}", started.elapsed());
    let logs = tempfile::tempdir().unwrap();

    // 3. carol (backend 2) to backend 1, whose receiver dies once carol is marked: the
    // command fails with carol marked; --abort serves her on backend 2 again.
    let carol0 = count(b2, "carol");
    let mut child = mailctl_child(b2, &["user", "move", CAROL, "--to", &ip1], logs.path());
    wait_until("carol marked as moving", Duration::from_secs(30), || {
        move_state(b2, CAROL).1 == ip1
    });
    b1.daemon("imapd").signal(Signal::SIGKILL);
    assert!(
        b1.daemon("imapd")
            .wait_exit(Duration::from_secs(10))
            .is_some()
    );
    let (ok, err) = wait_child(&mut child, logs.path());
    assert!(!ok, "carol's move succeeded without a receiver?\n{err}");
    assert_eq!(move_state(b2, CAROL), (ip2.clone(), ip1.clone()));
    smtp(smtp_at(1), &[CAROL], "while carol moves").unwrap();
    wait_until("carol's mail deferred", Duration::from_secs(30), || {
        let q = f2.mailctl_json(&["queue", "list"]);
        q.as_array().is_some_and(|q| {
            q.len() == 1
                && q[0]["last_error"]
                    .as_str()
                    .is_some_and(|e| e.starts_with('4'))
        })
    });
    b1.stop_daemon("imapd");
    b1.start_daemon("imapd");
    let out = b2.mailctl(&["user", "move", CAROL, "--abort"]);
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("aborted"),
        "{}",
        describe_output(&out)
    );
    assert_eq!(move_state(b2, CAROL), (ip2.clone(), String::new()));
    // A second abort has nothing to do; a move already switched cannot be aborted.
    let again = b2.mailctl_ok(&["user", "move", CAROL, "--abort"]);
    assert!(again.contains("not being moved"), "{again}");
    f2.mailctl_ok(&["queue", "flush"]);
    smtp(smtp_at(0), &[CAROL], "after the abort").unwrap();
    wait_until("carol's mail on backend 2", Duration::from_secs(30), || {
        count(b2, "carol") == carol0 + 2
    });
    let mut c = LineClient::connect(sock(net, 0, ports.imap));
    assert!(c.line().starts_with("* OK"));
    c.ok("a", &format!("LOGIN {CAROL} \"{PW}\""));
    c.ok("z", "LOGOUT");
    println!(
        "cluster_move: whole test {:?} ({})",
        started.elapsed(),
        if net.netns {
            "netns"
        } else {
            "loopback aliases"
        }
    );
}

/// Part 1 and 2: the move interrupted mid-copy (with the checks of the "moving" state),
/// then resumed to the end.
#[allow(clippy::too_many_arguments)]
fn interrupted_then_resumed(
    b1: &Postern,
    b2: &mut Postern,
    f1: &Postern,
    f2: &Postern,
    net: &crate::cluster_netns::Net,
    ports: &crate::cluster_netns::Ports,
    ip1: &str,
    ip2: &str,
) {
    // A destination without a receiver (a front): refused before anything is marked.
    let out = b1.mailctl(&["user", "move", BOB, "--to", &net.ips[0]]);
    let text = describe_output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(move_state(b1, BOB), (ip1.to_owned(), String::new()));

    // mailctl in the background; backend 2's imapd killed once the copy has begun.
    let logs = tempfile::tempdir().unwrap();
    let mut child = mailctl_child(b1, &["user", "move", BOB, "--to", ip2], logs.path());
    let stage = staging(b2, "bob");
    let deadline = Instant::now() + Duration::from_secs(30);
    while files_below(&stage.join("Maildir/.Bulk/cur")) < 20 {
        if child.try_wait().unwrap().is_some() {
            let (_, err) = wait_child(&mut child, logs.path());
            panic!("mailctl ended before the copy could be interrupted:\n{err}");
        }
        assert!(Instant::now() < deadline, "the copy never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    b2.daemon("imapd").signal(Signal::SIGKILL);
    assert!(
        b2.daemon("imapd")
            .wait_exit(Duration::from_secs(10))
            .is_some()
    );
    let (ok, err) = wait_child(&mut child, logs.path());
    assert!(!ok, "the interrupted move succeeded?\n{err}");
    println!(
        "cluster_move: interrupted with {} files staged; mailctl said: {}",
        files_below(&stage),
        err.lines().last().unwrap_or("")
    );

    // The "moving" state: bob lives on backend 1, moving to backend 2.
    assert_eq!(move_state(b1, BOB), (ip1.to_owned(), ip2.to_owned()));
    let table = b1.mailctl_ok(&["user", "list"]);
    assert!(
        table.contains(&format!("{ip1} \u{2192} {ip2} (moving)")),
        "{table}"
    );
    assert!(
        !home(b2, "bob").exists(),
        "a live home on backend 2 already"
    );
    // Logins are refused for now: IMAP and POP3 at the fronts, IMAP on backend 1 itself.
    for (i, what) in [(0, "front 1"), (2, "backend 1")] {
        let mut c = LineClient::connect(sock(net, i, ports.imap));
        assert!(c.line().starts_with("* OK"));
        let no = c.cmd("a", &format!("LOGIN {BOB} \"{PW}\""));
        assert!(
            no.last().unwrap().starts_with("a NO [UNAVAILABLE]"),
            "{what}: {no:?}"
        );
    }
    let mut p = LineClient::connect(sock(net, 1, ports.pop3));
    assert!(p.line().starts_with("+OK"));
    p.send(&format!("USER {BOB}\r\n"));
    assert!(p.line().starts_with("+OK"));
    p.send(&format!("PASS {PW}\r\n"));
    let pass = p.line();
    assert!(pass.starts_with("-ERR [SYS/TEMP]"), "{pass}");
    // A wrong password is still just wrong.
    let mut c = LineClient::connect(sock(net, 0, ports.imap));
    assert!(c.line().starts_with("* OK"));
    let no = c.cmd("a", &format!("LOGIN {BOB} \"not the password\""));
    assert!(
        no.last()
            .unwrap()
            .starts_with("a NO [AUTHENTICATIONFAILED]"),
        "{no:?}"
    );
    // Deliveries: LMTP 451 on backend 1; authd's transport TEMP, recipient still OK.
    let r = lmtp_rcpt(sock(net, 2, ports.lmtp), BOB);
    assert!(r.starts_with("451 4."), "{r}");
    let t = b1.socketmap("transport", BOB, Duration::from_secs(5));
    assert!(t.starts_with("TEMP "), "{t}");
    let t = f1.socketmap("recipient", BOB, Duration::from_secs(5));
    assert_eq!(t, "OK mailbox");
    // The fronts accept and defer.
    wait_until(
        "numbered mail deferred on both fronts",
        Duration::from_secs(30),
        || {
            [f1, f2].iter().all(|f| {
                let q = f.mailctl_json(&["queue", "list"]);
                q.as_array().is_some_and(|q| {
                    q.iter().any(|m| {
                        m["last_error"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("451") || e.contains(" 4."))
                    })
                })
            })
        },
    );

    // The same command again, with the receiver back: resumes and completes.
    b2.stop_daemon("imapd");
    b2.start_daemon("imapd");
    let out = b1.mailctl(&["user", "move", BOB, "--to", ip2]);
    let text = describe_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("earlier attempt"), "not resumed: {text}");
    assert!(text.contains(&format!("moved to {ip2}")), "{text}");
    println!(
        "cluster_move: resumed: {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert!(!staging(b2, "bob").exists());
    let aside: Vec<_> = std::fs::read_dir(b1.dir().join("mail/example.org"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("bob.moved-"))
        .collect();
    assert_eq!(aside.len(), 1, "the old home kept aside once");
    assert_eq!(move_state(f2, BOB), (ip2.to_owned(), String::new()));
}

/// One request on authd's `auth-userdb` socket; the answer line for id 1.
fn userdb_line(pm: &Postern, request: &str) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(pm.socket("auth-userdb")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("VERSION\t1\t0\n{request}\n").as_bytes())
        .unwrap();
    let mut r = BufReader::new(s);
    loop {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0, "userdb closed");
        let greeting = l.starts_with("VERSION\t") || l.starts_with("SPID\t");
        if !greeting && l.split('\t').nth(1) == Some("1") {
            return l.trim_end().to_owned();
        }
    }
}

/// The "moving" answers on one node, on each database: the migration's column, the
/// account query that reads it, and every daemon's temporary answer; then `--abort` with
/// the destination unreachable clears the mark (the source home is intact).
fn moving_answers(kind: postern_e2e::DbKind) {
    let pm = Postern::builder()
        .database(kind)
        .set("authd.cache_ttl_secs", 0)
        .daemons(&["authd", "lmtp-deliver", "imapd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    pm.add_user(BOB, PW);
    assert!(userdb_line(&pm, &format!("USER\t1\t{BOB}\tservice=lmtp")).starts_with("USER\t1\t"));
    // As `mailctl user move` marks it (a loopback destination nobody listens on).
    pm.sql("UPDATE accounts SET moving_to = '127.0.0.9' WHERE address = 'bob@example.org'");
    let users = pm.mailctl_json(&["user", "list"]);
    assert_eq!(users[0]["moving_to"], "127.0.0.9");
    let table = pm.mailctl_ok(&["user", "list"]);
    assert!(table.contains("- \u{2192} 127.0.0.9 (moving)"), "{table}");
    let fail = userdb_line(&pm, &format!("USER\t1\t{BOB}\tservice=lmtp"));
    assert!(fail.starts_with("FAIL\t1\t"), "{fail}");
    let fail = userdb_line(&pm, &format!("PASS\t1\t{BOB}\tservice=imap"));
    assert!(fail.starts_with("FAIL\t1\t"), "{fail}");
    let t = pm.socketmap("transport", BOB, Duration::from_secs(5));
    assert!(t.starts_with("TEMP "), "{t}");
    assert_eq!(
        pm.socketmap("recipient", BOB, Duration::from_secs(5)),
        "OK mailbox"
    );
    let mut c = LineClient::connect(format!("127.0.0.1:{}", pm.imap_port()).parse().unwrap());
    assert!(c.line().starts_with("* OK"));
    let no = c.cmd("a", &format!("LOGIN {BOB} \"{PW}\""));
    assert!(
        no.last().unwrap().starts_with("a NO [UNAVAILABLE]"),
        "{no:?}"
    );
    let no = c.cmd("b", &format!("LOGIN {BOB} \"wrong\""));
    assert!(
        no.last()
            .unwrap()
            .starts_with("b NO [AUTHENTICATIONFAILED]"),
        "{no:?}"
    );
    // LMTP over the local socket: 451, nothing stored.
    {
        use std::io::{BufRead, BufReader, Write};
        let s = std::os::unix::net::UnixStream::connect(pm.socket("lmtp")).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut line = || {
            let mut l = String::new();
            r.read_line(&mut l).unwrap();
            l
        };
        assert!(line().starts_with("220"));
        w.write_all(b"LHLO t\r\n").unwrap();
        while !line().starts_with("250 ") {}
        w.write_all(b"MAIL FROM:<s@remote.test>\r\n").unwrap();
        assert!(line().starts_with("250"));
        w.write_all(format!("RCPT TO:<{BOB}>\r\n").as_bytes())
            .unwrap();
        let r = line();
        assert!(r.starts_with("451 4.3.0"), "{r}");
    }
    // --abort: the destination cannot be reached; the mark is cleared anyway.
    let out = pm.mailctl(&["user", "move", BOB, "--abort"]);
    let text = describe_output(&out);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("could not clean up"), "{text}");
    assert_eq!(pm.mailctl_json(&["user", "list"])[0]["moving_to"], "");
    assert!(userdb_line(&pm, &format!("USER\t1\t{BOB}\tservice=lmtp")).starts_with("USER\t1\t"));
    assert_eq!(
        pm.socketmap("transport", BOB, Duration::from_secs(5)),
        "NOTFOUND "
    );
    c.ok("c", &format!("LOGIN {BOB} \"{PW}\""));
}

#[test]
fn moving_answers_on_sqlite() {
    moving_answers(postern_e2e::DbKind::Sqlite);
}

#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
fn moving_answers_on_postgres() {
    moving_answers(postern_e2e::DbKind::Postgres);
}

#[test]
#[ignore = "needs MariaDB (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_MYSQL_URL)"]
fn moving_answers_on_mariadb() {
    moving_answers(postern_e2e::DbKind::Mysql);
}

/// A whole move without root or PostgreSQL, over TLS (`[proxy] tls = "may"`): two nodes on
/// loopback sharing one SQLite directory. Node A (`self` = "node-a") holds bob's mailbox;
/// node B (`self` = "127.0.0.1") receives the move on its imapd. After `mailctl user move`
/// on A, bob logs in on B and finds the same UIDVALIDITY, UIDs, flags, keyword, MODSEQs and
/// HIGHESTMODSEQ (CONDSTORE); A keeps the old home aside only.
#[test]
fn a_move_between_two_loopback_nodes_over_tls() {
    let shared = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/shared.db", shared.path().display());
    let secret = shared.path().join("move.secret");
    std::fs::write(&secret, "a shared secret of more than thirty-two bytes\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let port = free_port();
    let node = |name: &str, receiver: bool| {
        let mut b = Postern::builder()
            .set("database.url", db.clone())
            .set("proxy.self", name)
            .set("proxy.tls", "may")
            .set("proxy.move_port", i64::from(port))
            .set("proxy.move_secret_file", secret.display().to_string())
            .set("authd.cache_ttl_secs", 0)
            .daemons(&["authd", "imapd"]);
        if receiver {
            b = b.set("proxy.move_listen", format!("127.0.0.1:{port}"));
        }
        b.start()
    };
    let a = node("node-a", false);
    a.mailctl_ok(&["domain", "add", "example.org"]);
    let out = a.mailctl_stdin(
        &["user", "add", BOB, "--host", "node-a"],
        &format!("{PW}\n"),
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let b = node("127.0.0.1", true);
    let imap = |pm: &Postern| {
        let mut c = LineClient::connect(format!("127.0.0.1:{}", pm.imap_port()).parse().unwrap());
        assert!(c.line().starts_with("* OK"));
        c.ok("a", &format!("LOGIN {BOB} \"{PW}\""));
        c
    };
    let mut c = imap(&a);
    for k in 0..3 {
        let msg = format!("From: x@remote.test\r\nSubject: kept {k}\r\n\r\nbody {k}\r\n");
        c.send(&format!("p{k} APPEND INBOX {{{}}}\r\n", msg.len()));
        assert!(c.line().starts_with('+'));
        c.send(&format!("{msg}\r\n"));
        let done = c.until_tagged(&format!("p{k}"));
        assert!(done.last().unwrap().contains(" OK"), "{done:?}");
    }
    c.ok("s", "SELECT INBOX");
    c.ok("c", "STORE 2 +FLAGS (\\Flagged $Later)");
    let select = c.ok("b", "SELECT INBOX (CONDSTORE)");
    let validity = uidvalidity(&select);
    let modseq = highestmodseq(&select);
    let before = fetch_lines(&c.ok("d", "FETCH 1:* (UID FLAGS MODSEQ)"));
    assert_eq!(before.len(), 3);
    assert!(before[1].contains("MODSEQ ("), "{before:?}");
    c.ok("z", "LOGOUT");

    // A symbolic link pointing outside the home is not carried (ManageSieve's
    // `sieve/NAME.sieve` link is): refused before anything is marked, naming it.
    let link = home(&a, "bob").join(".dovecot.sieve");
    std::os::unix::fs::symlink("/etc/passwd", &link).unwrap();
    let out = a.mailctl(&["user", "move", BOB, "--to", "127.0.0.1"]);
    let text = describe_output(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(".dovecot.sieve") && text.contains("nothing was changed"),
        "{text}"
    );
    assert_eq!(move_state(&a, BOB), ("node-a".to_owned(), String::new()));
    std::fs::remove_file(&link).unwrap();
    // ManageSieve's own link (relative, inside the home) is carried as a link.
    std::os::unix::fs::symlink("sieve/x.sieve", &link).unwrap();

    let out = a.mailctl(&["--json", "user", "move", BOB, "--to", "127.0.0.1"]);
    let text = describe_output(&out);
    assert!(out.status.success(), "{text}");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["moved"], true, "{text}");
    assert_eq!(summary["late_changes"], serde_json::json!([]), "{text}");
    assert!(summary["files"].as_u64().unwrap() >= 3, "{text}");
    assert_eq!(move_state(&a, BOB), ("127.0.0.1".to_owned(), String::new()));
    assert!(!home(&a, "bob").exists());
    assert_eq!(
        std::fs::read_link(home(&b, "bob").join(".dovecot.sieve")).unwrap(),
        Path::new("sieve/x.sieve")
    );
    assert!(
        Path::new(summary["old_home"].as_str().unwrap()).is_dir(),
        "{text}"
    );
    let mut c = imap(&b);
    let select = c.ok("b", "SELECT INBOX (CONDSTORE)");
    assert_eq!(uidvalidity(&select), validity);
    assert_eq!(
        highestmodseq(&select),
        modseq,
        "HIGHESTMODSEQ after the move"
    );
    assert_eq!(
        fetch_lines(&c.ok("d", "FETCH 1:* (UID FLAGS MODSEQ)")),
        before,
        "UIDs, flags and MODSEQs after the move"
    );
    c.ok("z", "LOGOUT");
    // Done is done: again, it has nothing to do.
    let again = a.mailctl_ok(&["user", "move", BOB, "--to", "127.0.0.1"]);
    assert!(again.contains("already"), "{again}");
}
