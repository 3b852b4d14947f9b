//! One message, one trace (issue 12 §3): grepping a queue id in the daemons' logs shows the
//! message's whole life — the SMTP session that accepted it (span `smtp{client=…}`), each
//! delivery attempt (span `delivery{id=…}`: delivered, deferred, the DSN it caused) and
//! lmtp-deliver's store (span `deliver{id=…}`, the id read from smtpd's `Received:` field).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use postern_e2e::{Postern, describe_output};

use crate::lmtp::{maildir, messages};

/// Reads one (possibly multi-line) SMTP reply; returns its last line.
fn reply(r: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read a reply");
        assert!(n > 0, "connection closed while waiting for a reply");
        if line.as_bytes().get(3) != Some(&b'-') {
            return line.trim_end().to_owned();
        }
    }
}

fn cmd(w: &mut TcpStream, r: &mut BufReader<TcpStream>, line: &str) -> String {
    w.write_all(format!("{line}\r\n").as_bytes())
        .expect("write");
    reply(r)
}

/// The lines of `log` that mention `id`.
fn grep<'a>(log: &'a str, id: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(id)).collect()
}

#[test]
fn grep_queue_id_shows_accept_attempts_store_and_dsn() {
    let pm = Postern::builder()
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        // Mail for dead.test goes to a port nobody listens on: the attempt is deferred.
        .configure(|t| {
            let smtpd = t
                .entry("smtpd")
                .or_insert_with(|| toml::Table::new().into())
                .as_table_mut()
                .unwrap();
            let mut tr = toml::Table::new();
            tr.insert("dead.test".into(), "smtp:[127.0.0.1]:1".into());
            smtpd.insert("transports".into(), tr.into());
        })
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));

    // From loopback (trusted): one local recipient asking for a success DSN, one remote.
    let smtp = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let s = TcpStream::connect(smtp).expect("connect to smtpd");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    assert!(reply(&mut r).starts_with("220"));
    assert!(cmd(&mut w, &mut r, "EHLO client.test").starts_with("250"));
    assert!(cmd(&mut w, &mut r, "MAIL FROM:<alice@example.org>").starts_with("250"));
    let a = cmd(&mut w, &mut r, "RCPT TO:<alice@example.org> NOTIFY=SUCCESS");
    assert!(a.starts_with("250"), "{a}");
    let b = cmd(&mut w, &mut r, "RCPT TO:<bob@dead.test>");
    assert!(b.starts_with("250"), "{b}");
    assert!(cmd(&mut w, &mut r, "DATA").starts_with("354"));
    let done = cmd(
        &mut w,
        &mut r,
        "From: <alice@example.org>\r\nTo: <alice@example.org>\r\nSubject: trace me\r\n\r\nhello\r\n.",
    );
    assert!(done.starts_with("250"), "{done}");
    let id = done
        .rsplit_once("queued as ")
        .map(|(_, id)| id.trim().to_owned())
        .expect("queue id in the reply");
    assert_eq!(id.len(), 20, "{done}");
    drop(cmd(&mut w, &mut r, "QUIT"));

    // The message and the success DSN reach alice; bob's attempt is deferred.
    let dir = maildir(&pm, "alice");
    let start = Instant::now();
    while messages(&dir, "new").len() < 2 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stored = messages(&dir, "new");
    assert_eq!(stored.len(), 2, "message and DSN stored");
    assert!(
        stored
            .iter()
            .any(|m| m.contains("Subject: trace me") && m.contains(&format!(" id {id}"))),
        "smtpd's Received: names the queue id: {stored:?}"
    );
    let smtpd = pm.daemon("smtpd");
    smtpd.wait_for(
        &format!("delivery{{id={id}}}: deferred"),
        Duration::from_secs(30),
    );
    let lmtp = pm.daemon("lmtp-deliver");
    lmtp.wait_for(&format!("deliver{{id={id}}}"), Duration::from_secs(30));

    let smtpd_log = smtpd.log_text();
    let lines = grep(&smtpd_log, &id);
    let has = |what: &[&str]| lines.iter().any(|l| what.iter().all(|w| l.contains(w)));
    let all = lines.join("\n");
    // Accepted, in the session's span.
    assert!(
        has(&["smtp{client=127.0.0.1:", "queued", &format!("id={id}")]),
        "accept line in the SMTP session's span:\n{all}"
    );
    // The attempt: alice delivered over LMTP, bob deferred, the success DSN queued.
    let span = format!("delivery{{id={id}}}");
    assert!(
        has(&[&span, "delivered", "rcpt=alice@example.org"]),
        "LMTP delivery in the attempt's span:\n{all}"
    );
    assert!(
        has(&[&span, "deferred"]),
        "deferral in the attempt's span:\n{all}"
    );
    assert!(
        has(&[&span, "delivery status notification queued", "dsn="]),
        "the DSN it caused:\n{all}"
    );
    // The outbound attempt to the dead server, and the id once per line (the span gives it).
    assert!(
        has(&[&span, "server not usable", "relay=127.0.0.1[127.0.0.1]:1"]),
        "outbound attempt in the attempt's span:\n{all}"
    );
    assert!(
        lines.iter().all(|l| l.matches(id.as_str()).count() == 1),
        "the queue id once per line:\n{all}"
    );
    // No line of smtpd's says `peer=` or `to=` any more: `client` and `rcpt`.
    assert!(
        !smtpd_log.contains(" peer=") && !smtpd_log.contains(" to="),
        "old field names:\n{smtpd_log}"
    );

    // The DSN has its own id, in its own Received: field, so its store is traced too.
    let dsn = lines
        .iter()
        .find_map(|l| l.split_once("dsn=").map(|(_, r)| r[..20].to_owned()))
        .expect("the DSN's id");
    lmtp.wait_for(
        &format!("deliver{{id={dsn}}}: saved"),
        Duration::from_secs(30),
    );
    assert!(
        grep(&smtpd.log_text(), &dsn)
            .iter()
            .any(|l| l.contains(&format!("delivery{{id={dsn}}}")) && l.contains("delivered")),
        "the DSN's own delivery"
    );

    // lmtp-deliver's store, under the same id.
    let lmtp_log = lmtp.log_text();
    let stores = grep(&lmtp_log, &id);
    assert!(
        stores.iter().any(|l| l.contains("lmtp{")
            && l.contains(&format!("deliver{{id={id}}}"))
            && l.contains("saved")
            && l.contains("rcpt=alice@example.org")),
        "lmtp-deliver's store line:\n{lmtp_log}"
    );
}
