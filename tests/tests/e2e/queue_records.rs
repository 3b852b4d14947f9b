//! The queue's delivery records end to end: a spool written by the previous release is
//! delivered by today's smtpd (nothing lost), and the local/remote decision made at `RCPT`
//! is kept in the queue with each recipient.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postern_e2e::{Postern, PosternBuilder, SinkBehaviour, SmtpSink, describe_output};

use crate::lmtp::{maildir, messages};

/// authd, lmtp-deliver and smtpd; example.org with `users`; mail for example.net goes to
/// `sink` (a `transports` entry); no delay warnings, no expiry (the fixture's arrival time
/// is fixed).
fn install(sink: SocketAddr, users: &[&str]) -> Postern {
    let builder: PosternBuilder = Postern::builder()
        .set("smtpd.min_backoff_secs", 1)
        .set("smtpd.max_backoff_secs", 2)
        .set("smtpd.delay_warning_secs", 0)
        .set("smtpd.max_queue_lifetime_secs", 20 * 365 * 86400)
        .configure(move |t| {
            let smtpd = t
                .entry("smtpd")
                .or_insert_with(|| toml::Table::new().into())
                .as_table_mut()
                .unwrap();
            let mut tr = toml::Table::new();
            tr.insert("example.net".into(), format!("smtp:{sink}").into());
            smtpd.insert("transports".into(), tr.into());
        });
    let pm = builder.daemons(&["authd", "lmtp-deliver", "smtpd"]).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    for u in users {
        let out = pm.mailctl_stdin(
            &["user", "add", &format!("{u}@example.org")],
            "a good long passphrase\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    pm
}

/// The spool's `active/` directory under the install.
fn active_dir(root: &Path) -> PathBuf {
    fn find(dir: &Path) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()? {
            let p = e.ok()?.path();
            if p.is_dir() {
                if p.ends_with("queue/active") {
                    return Some(p);
                }
                if let Some(found) = find(&p) {
                    return Some(found);
                }
            }
        }
        None
    }
    find(root).expect("the queue's active directory")
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_spool_written_by_the_previous_release_is_delivered() {
    let sink = SmtpSink::start();
    let mut pm = install(sink.addr(), &["alice", "bob", "c", "carol", "e"]);
    // Today's smtpd created the spool; the previous release's files go in while it is down.
    pm.stop_daemon("smtpd");
    let active = active_dir(pm.dir());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/queue/tests/fixtures/spool-v1/active");
    for f in std::fs::read_dir(&fixture).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), active.join(f.file_name())).unwrap();
    }
    pm.start_daemon("smtpd");

    // 1 (no `origin`): a@example.net to the sink, c@example.org locally; b bounced and d
    // delivered before are not sent again. 2: carol locally (NOTIFY=SUCCESS: bob is told),
    // dave@example.net to the sink.
    let sunk = sink.wait_for(2, Duration::from_secs(20));
    let mut to: Vec<&str> = sunk
        .iter()
        .flat_map(|m| m.to.iter().map(String::as_str))
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["a@example.net", "dave@example.net"]);
    assert!(sunk.iter().all(|m| m.data.contains("body of ")));
    let c = wait_until("c's message", || {
        let m = messages(&maildir(&pm, "c"), "new");
        (!m.is_empty()).then_some(m)
    });
    assert!(c[0].contains("Subject: one"), "{}", c[0]);
    let carol = wait_until("carol's message", || {
        let m = messages(&maildir(&pm, "carol"), "new");
        (!m.is_empty()).then_some(m)
    });
    assert!(carol[0].contains("Subject: two"));
    let dsn = wait_until("bob's success notice", || {
        messages(&maildir(&pm, "bob"), "new").into_iter().next()
    });
    assert!(
        dsn.contains("Action: delivered")
            && dsn.contains("Final-Recipient: rfc822; carol@example.org"),
        "{dsn}"
    );
    // 3 is held as it was; released, it is delivered (its null sender gets no notice).
    let list = wait_until("only the held message left", || {
        let list = pm.mailctl_json(&["queue", "list"]);
        let list = list.as_array()?.clone();
        (list.len() == 1).then_some(list)
    });
    assert_eq!(list[0]["held"], true);
    let id = list[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, "0661f6bf5207210000bf");
    let shown = pm.mailctl_json(&["queue", "show", &id]);
    let text = shown.to_string();
    assert!(
        text.contains("4.4.7 message expired in the queue; last error: 421 4.3.2 shutting down (remote-mta mx1.example.net[192.0.2.7])"),
        "queue show keeps the previous text: {text}"
    );
    pm.mailctl_ok(&["queue", "release", &id]);
    let e = wait_until("e's message", || {
        messages(&maildir(&pm, "e"), "new").into_iter().next()
    });
    assert!(e.contains("Subject: three"));
    let sunk = sink.wait_for(3, Duration::from_secs(20));
    assert!(
        sunk[2].to == ["g@example.net"] && sunk[2].from.is_empty(),
        "{:?}",
        sunk[2].to
    );
    wait_until("an empty queue", || {
        pm.mailctl_json(&["queue", "list"])
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
    });
    assert!(
        messages(&maildir(&pm, "alice"), "new").is_empty(),
        "no notice for message 1"
    );
}

struct Smtp {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Smtp {
    fn connect(a: SocketAddr) -> Self {
        let w = TcpStream::connect(a).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut s = Self {
            r: BufReader::new(w.try_clone().unwrap()),
            w,
        };
        assert!(s.reply().starts_with("220"));
        s
    }

    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.r.read_line(&mut line).unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        self.reply()
    }
}

#[test]
fn the_destination_decided_at_rcpt_is_kept_in_the_queue() {
    // The sink defers, LMTP is down: both recipients stay queued after an attempt.
    let sink = SmtpSink::start_on(
        "127.0.0.1:0".parse().unwrap(),
        SinkBehaviour {
            rcpt_reply: Some("450 4.2.0 try later".into()),
            ..SinkBehaviour::default()
        },
    )
    .unwrap();
    let mut pm = install(sink.addr(), &["alice"]);
    pm.mailctl_ok(&["alias", "add", "fwd@example.org", "friend@example.com"]);
    pm.stop_daemon("lmtp-deliver");
    let a = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let mut c = Smtp::connect(a);
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<s@remote.test>").starts_with("250"));
    // Loopback is a trusted network: relaying to example.net is allowed.
    for rcpt in ["alice@example.org", "friend@example.net", "fwd@example.org"] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "{rcpt}: {r}");
    }
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: kept\r\n\r\nbody\r\n.").starts_with("250"));
    c.cmd("QUIT");

    let active = active_dir(pm.dir());
    let state = wait_until("the state after an attempt", || {
        let f = std::fs::read_dir(&active)
            .ok()?
            .filter_map(Result::ok)
            .find(|e| e.file_name().to_string_lossy().ends_with(".state"))?;
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f.path()).ok()?).ok()?;
        Some(v)
    });
    let rcpts = state["recipients"].as_array().unwrap();
    let dest = |addr: &str| {
        rcpts
            .iter()
            .find(|r| r["address"] == addr)
            .unwrap_or_else(|| panic!("{addr} in {state}"))["destination"]
            .clone()
    };
    assert_eq!(dest("alice@example.org"), "local");
    assert_eq!(dest("friend@example.net"), "remote");
    // An alias target in another domain: decided at delivery.
    assert_eq!(dest("friend@example.com"), serde_json::Value::Null);
    // The replies are kept as values.
    let friend = rcpts
        .iter()
        .find(|r| r["address"] == "friend@example.net")
        .unwrap();
    assert_eq!(friend["last_reply"]["code"], 450, "{friend}");
    assert_eq!(friend["last_reply"]["status"], "4.2.0");
    assert_eq!(friend["last_reply"]["remote_mta"]["ip"], "127.0.0.1");

    // Delivery goes on as decided: LMTP back, the sink accepting.
    sink.set_behaviour(SinkBehaviour::default());
    pm.start_daemon("lmtp-deliver");
    pm.mailctl_ok(&["queue", "flush"]);
    wait_until("alice's message", || {
        messages(&maildir(&pm, "alice"), "new").into_iter().next()
    });
    sink.wait_for(1, Duration::from_secs(20));
}
