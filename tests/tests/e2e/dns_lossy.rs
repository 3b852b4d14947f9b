//! The MX path under lossy DNS (issue 17): a loopback DNS server that drops queries and
//! leaves out the SOA; the checks' resolver retries quickly, shares identical queries in
//! flight, caches negative answers for a short floor, and no message waits past the DNS
//! time budget.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use postern_e2e::{DnsServer, Postern, PosternBuilder, describe_output};

use crate::lmtp::messages;

const HOSTNAME: &str = "mail.example.org";
const TXT: u16 = 16;
/// `[checks] dns_budget_ms` (the default), and what a message may take on top of it here
/// (a debug build on a shared machine: queueing, socketmap lookups, the fsyncs).
const BUDGET: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_millis(700);

fn install(dns: &DnsServer) -> Postern {
    install_with(dns, |b| b)
}

fn install_with(dns: &DnsServer, edit: impl FnOnce(PosternBuilder) -> PosternBuilder) -> Postern {
    let pm = edit(Postern::builder())
        .hostname(HOSTNAME)
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("smtpd.trusted_networks", Vec::<String>::new())
        .set("smtpd.max_connections_per_ip", 100)
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    pm
}

fn mx(pm: &Postern) -> SocketAddr {
    pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0]
}

fn alice(pm: &Postern) -> PathBuf {
    pm.dir().join("mail/example.org/alice/Maildir")
}

/// A plain SMTP client that times each reply.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).expect("connect to smtpd");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut c = Self {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        let greeting = c.reply();
        assert!(greeting.starts_with("220"), "{greeting}");
        let ehlo = c.cmd("EHLO client.test").0;
        assert!(ehlo.starts_with("250"), "{ehlo}");
        c
    }

    fn send(&mut self, line: &str) {
        self.w.write_all(line.as_bytes()).unwrap();
        self.w.write_all(b"\r\n").unwrap();
    }

    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut l = String::new();
            assert!(self.r.read_line(&mut l).unwrap() > 0, "connection closed");
            reply.push_str(&l);
            if l.len() < 4 || l.as_bytes()[3] != b'-' {
                return reply;
            }
        }
    }

    /// A command, its reply, and how long the reply took.
    fn cmd(&mut self, line: &str) -> (String, Duration) {
        let t = Instant::now();
        self.send(line);
        let r = self.reply();
        (r, t.elapsed())
    }

    /// One message from `sender` to alice; the time spent waiting for the MAIL reply and
    /// for the final reply after the data (where the checks run), and that final reply.
    fn message(&mut self, sender: &str, subject: &str) -> (Duration, String) {
        let (r, at_mail) = self.cmd(&format!("MAIL FROM:<{sender}>"));
        assert!(r.starts_with("250"), "MAIL: {r}");
        let (r, _) = self.cmd("RCPT TO:<alice@example.org>");
        assert!(r.starts_with("250"), "RCPT: {r}");
        let (r, _) = self.cmd("DATA");
        assert!(r.starts_with("354"), "DATA: {r}");
        let body = format!(
            "From: <{sender}>\r\nTo: <alice@example.org>\r\nSubject: {subject}\r\n\
             Message-ID: <{}@test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\nHello.\r\n.",
            subject.replace(' ', ".")
        );
        let (r, at_data) = self.cmd(&body);
        (at_mail + at_data, r)
    }
}

fn wait_for_messages(pm: &Postern, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = messages(&alice(pm), "new");
        if m.len() >= n {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages arrived",
            m.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn queries_for(dns: &DnsServer, name: &str, qtype: u16) -> usize {
    dns.queries()
        .iter()
        .filter(|(n, t)| n == name && *t == qtype)
        .count()
}

#[test]
fn lost_queries_cost_no_message_more_than_the_budget_and_are_asked_again() {
    // One query in four is never answered, and negative answers carry no SOA.
    let dns = DnsServer::start();
    dns.set_drop_one_in(4);
    let pm = install(&dns);
    let mut c = Client::connect(mx(&pm));
    let n = 16;
    let mut waits = Vec::new();
    for i in 0..n {
        // A new sender domain each time: nothing is cached, every message asks.
        let (wait, r) = c.message(&format!("x@d{i}.test"), &format!("lossy {i}"));
        assert!(r.starts_with("250"), "message {i}: {r}");
        waits.push(wait);
    }
    c.send("QUIT");
    let (seen, dropped) = dns.counts();
    assert!(
        dropped >= 3,
        "the server lost queries: {seen} seen, {dropped} dropped"
    );
    let worst = waits.iter().max().copied().unwrap_or_default();
    assert!(
        worst < BUDGET + SLACK,
        "a message waited {worst:?} for its checks: {waits:?}"
    );
    // Each lost query was asked again in time: every result is known, none temperror.
    let all = wait_for_messages(&pm, n);
    for m in &all {
        let ar: String = m
            .lines()
            .skip_while(|l| !l.starts_with("Authentication-Results: mail.example.org;"))
            .take_while(|l| !l.is_empty())
            .take(4)
            .collect();
        assert!(ar.contains("spf=none"), "{ar}\n{m}");
        assert!(ar.contains("dmarc=none"), "{ar}\n{m}");
        assert!(!ar.contains("temperror"), "{ar}\n{m}");
    }
    eprintln!("{n} messages, {seen} queries, {dropped} dropped; waits {waits:?}");
}

#[test]
fn negative_answers_without_soa_are_cached_and_identical_queries_in_flight_shared() {
    // Answers take 300 ms, so that concurrent identical queries overlap.
    let dns = DnsServer::start();
    dns.set_delay_ms(300);
    let pm = install(&dns);

    // The same unknown sender domain five times: asked once (NXDOMAIN without SOA is
    // cached for negative_min_ttl_secs).
    let mut c = Client::connect(mx(&pm));
    for i in 0..5 {
        let (_, r) = c.message("x@cached.test", &format!("cached {i}"));
        assert!(r.starts_with("250"), "{r}");
    }
    c.send("QUIT");
    assert_eq!(
        queries_for(&dns, "cached.test", TXT),
        1,
        "SPF of cached.test asked once: {:?}",
        dns.queries()
    );

    // Eight sessions ask about the same new domain at the same moment: one query.
    let mut clients: Vec<Client> = (0..8).map(|_| Client::connect(mx(&pm))).collect();
    for c in &mut clients {
        c.send("MAIL FROM:<x@burst.test>");
    }
    for c in &mut clients {
        let r = c.reply();
        assert!(r.starts_with("250"), "{r}");
        c.send("QUIT");
    }
    assert_eq!(
        queries_for(&dns, "burst.test", TXT),
        1,
        "SPF of burst.test asked once for 8 sessions: {:?}",
        dns.queries()
    );
}

/// Accepted messages per second: `sessions` threads each sending `per` messages from
/// `sender`, one connection per message (as smtp-source does).
fn intake_rate(pm: &Postern, sessions: usize, per: usize, sender: &str) -> f64 {
    let addr = mx(pm);
    let t = Instant::now();
    let threads: Vec<_> = (0..sessions)
        .map(|s| {
            let sender = sender.to_owned();
            std::thread::spawn(move || {
                for i in 0..per {
                    let mut c = Client::connect(addr);
                    let (_, r) = c.message(&sender, &format!("rate {s} {i}"));
                    assert!(r.starts_with("250"), "{r}");
                    c.send("QUIT");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a sender thread");
    }
    (sessions * per) as f64 / t.elapsed().as_secs_f64()
}

#[test]
fn mx_intake_under_lossy_dns_keeps_at_least_half_its_clean_rate() {
    // Clean: every query answered, NXDOMAIN with an SOA (cacheable).
    let clean_dns = DnsServer::start();
    clean_dns.set_soa(true);
    let clean = install(&clean_dns);
    // Lossy: 1 query in 50 dropped, NXDOMAIN without an SOA (issue 17's reproduction).
    let lossy_dns = DnsServer::start();
    lossy_dns.set_drop_one_in(50);
    let lossy = install(&lossy_dns);
    let (sessions, per) = (10, 20);
    // Measured in alternation, the best of each kept: a burst of load from elsewhere on a
    // shared CI machine slows one measurement, not the comparison (at most 3 rounds).
    let (mut clean_rate, mut lossy_rate) = (0.0_f64, 0.0_f64);
    let mut rounds = 0;
    while rounds < 3 && (rounds == 0 || lossy_rate < 0.5 * clean_rate) {
        clean_rate = clean_rate.max(intake_rate(&clean, sessions, per, "sender@remote.test"));
        lossy_rate = lossy_rate.max(intake_rate(&lossy, sessions, per, "sender@remote.test"));
        rounds += 1;
    }
    eprintln!(
        "MX path, {} messages over {sessions} sessions: clean DNS {clean_rate:.0} msg/s, \
         lossy DNS {lossy_rate:.0} msg/s ({:.0} %); queries clean {:?}, lossy {:?}",
        sessions * per,
        100.0 * lossy_rate / clean_rate,
        clean_dns.counts(),
        lossy_dns.counts()
    );
    assert!(
        lossy_rate >= 0.5 * clean_rate,
        "lossy {lossy_rate:.0} msg/s < half of clean {clean_rate:.0} msg/s"
    );
    wait_for_messages(&lossy, rounds * sessions * per);
}

#[test]
fn past_the_budget_results_are_temperror_or_451_in_reject_mode() {
    // Every answer comes after 3 s: later than the whole budget.
    let dns = DnsServer::start();
    dns.set_delay_ms(3000);

    // Defaults (spf = "tag", dmarc = "reject"): SPF is a temperror at MAIL, and DMARC,
    // unknown, defers the message with 451 — within the budget, not after DNS gives up.
    let pm = install(&dns);
    let mut c = Client::connect(mx(&pm));
    let (wait, r) = c.message("x@slow.test", "too slow");
    assert!(r.starts_with("451 4.7.1"), "{r}");
    assert!(r.contains("temperror"), "{r}");
    assert!(wait < BUDGET + SLACK, "waited {wait:?}");
    c.send("QUIT");

    // dmarc = "tag": accepted, both results tagged temperror.
    let pm = install_with(&dns, |b| b.set("checks.dmarc", "tag"));
    let mut c = Client::connect(mx(&pm));
    let (wait, r) = c.message("x@slow.test", "tagged slow");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait < BUDGET + SLACK, "waited {wait:?}");
    c.send("QUIT");
    let m = wait_for_messages(&pm, 1).remove(0);
    let ar: String = m
        .lines()
        .skip_while(|l| !l.starts_with("Authentication-Results: mail.example.org;"))
        .take(4)
        .collect();
    assert!(ar.contains("spf=temperror"), "{ar}");
    assert!(ar.contains("dmarc=temperror"), "{ar}");

    // spf = "reject": 451 4.7.24 at MAIL when SPF could not be completed in time.
    let pm = install_with(&dns, |b| b.set("checks.spf", "reject"));
    let mut c = Client::connect(mx(&pm));
    let (r, wait) = c.cmd("MAIL FROM:<x@slow2.test>");
    assert!(r.starts_with("451 4.7.24"), "{r}");
    assert!(wait < BUDGET + SLACK, "waited {wait:?}");
    c.send("QUIT");
}
