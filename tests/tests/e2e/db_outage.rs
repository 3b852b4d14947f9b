//! The directory database goes away and comes back (issue 14 §2): authd answers a
//! temporary failure — never "unknown" — and answers it at once while the database is known
//! to be down, then answers again as soon as the database is back, with no restart.
//!
//! The outage is played by a TCP relay in this process between authd and the shared test
//! PostgreSQL server: "down" cuts every relayed connection and drops new ones at once, so
//! the server itself (shared with other tests) is never stopped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_e2e::{DbKind, Postern, describe_output};

/// A loopback TCP relay that can be switched off (cutting its live connections).
struct Relay {
    port: u16,
    up: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
    accepted: Arc<AtomicUsize>,
}

impl Relay {
    fn start(target: String) -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let live = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (up2, live2, acc2) = (up.clone(), live.clone(), accepted.clone());
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                acc2.fetch_add(1, Ordering::SeqCst);
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(s) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut live = live2.lock().unwrap();
                live.push(c.try_clone().unwrap());
                live.push(s.try_clone().unwrap());
                drop(live);
                pipe(c.try_clone().unwrap(), s.try_clone().unwrap());
                pipe(s, c);
            }
        });
        Self {
            port,
            up,
            live,
            accepted,
        }
    }

    fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for s in self.live.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut b = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut b) {
            if n == 0 || to.write_all(&b[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// One socketmap lookup on authd's `socketmap` socket: the reply body.
fn socketmap(pm: &Postern, map: &str, key: &str) -> String {
    pm.socketmap(map, key, Duration::from_secs(30))
}

#[test]
#[ignore = "needs PostgreSQL (run .ci/run, or scripts/ci-services.sh and POSTERN_TEST_PG_URL)"]
fn authd_fails_fast_during_a_database_outage_and_recovers_without_restart() {
    // The database, set up through an install that runs no daemon.
    let owner = Postern::builder()
        .database(DbKind::Postgres)
        .daemons(&[])
        .start();
    owner.mailctl_ok(&["domain", "add", "example.org"]);
    let out = owner.mailctl_stdin(
        &["user", "add", "bob@example.org"],
        "another good passphrase\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let url = owner.db_url();
    let hostport = url
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap()
        .to_owned();
    let relay = Relay::start(hostport.clone());
    let relayed = url.replacen(&hostport, &format!("127.0.0.1:{}", relay.port), 1);
    let pm = Postern::builder()
        .set("database.url", relayed)
        .set("database.down_retry_ms", 3_600_000)
        .set("database.acquire_timeout_ms", 2000)
        .set("authd.cache_ttl_secs", 0)
        .daemons(&["authd"])
        .start();
    assert!(
        socketmap(&pm, "mailboxes", "bob@example.org").starts_with("OK "),
        "up: an answer"
    );

    relay.down();
    // The first lookup finds the database gone: a temporary failure, not NOTFOUND.
    let first = socketmap(&pm, "mailboxes", "bob@example.org");
    assert!(first.starts_with("TEMP"), "{first:?}");
    // While it is known to be down, lookups fail at once without trying to connect: 20 of
    // them would take 20 x acquire_timeout (40 s) if each waited for the pool.
    let tried = relay.accepted.load(Ordering::SeqCst);
    let t0 = Instant::now();
    for key in ["bob@example.org", "nobody@example.org"]
        .iter()
        .cycle()
        .take(20)
    {
        let r = socketmap(&pm, "mailboxes", key);
        assert!(r.starts_with("TEMP"), "{key}: {r:?}");
    }
    let took = t0.elapsed();
    assert_eq!(
        relay.accepted.load(Ordering::SeqCst),
        tried,
        "no connection attempt during the back-off"
    );
    eprintln!("20 lookups during the outage: {took:?} (shared machine)");
    assert!(took < Duration::from_secs(20), "{took:?}");
    drop(pm);

    // Recovery, with a short back-off: the same daemon answers again once it is back.
    relay.up();
    let pm = Postern::builder()
        .set(
            "database.url",
            url.replacen(&hostport, &format!("127.0.0.1:{}", relay.port), 1),
        )
        .set("database.down_retry_ms", 200)
        .set("authd.cache_ttl_secs", 0)
        .daemons(&["authd"])
        .start();
    assert!(socketmap(&pm, "mailboxes", "bob@example.org").starts_with("OK "));
    relay.down();
    let r = socketmap(&pm, "mailboxes", "bob@example.org");
    assert!(r.starts_with("TEMP"), "{r:?}");
    relay.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = socketmap(&pm, "mailboxes", "bob@example.org");
        if r.starts_with("OK ") {
            break;
        }
        assert!(r.starts_with("TEMP"), "never a wrong answer: {r:?}");
        assert!(Instant::now() < deadline, "no recovery: {r:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(socketmap(&pm, "mailboxes", "nobody@example.org").starts_with("NOTFOUND"));
    drop(pm);
}
