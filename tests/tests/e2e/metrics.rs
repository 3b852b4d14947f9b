//! Metrics for Prometheus (issue 15 §2): every daemon serves `GET /metrics` on its
//! `metrics_listen` address (`mailctl init` sets loopback ports; the harness makes them port
//! 0, logged as `listening on ADDR (metrics)`). A message goes through smtpd to
//! lmtp-deliver, a user reads it over POP3 and checks a script over ManageSieve (each with
//! an unknown command too), logs in over IMAP (once wrongly) and IDLEs; then all four are
//! scraped and their counters must have moved. `promtool check metrics` (Debian's
//! `prometheus` package) checks each output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use postern_e2e::{Postern, describe_output};

use crate::lmtp::{maildir, messages};

const DAEMONS: [&str; 4] = ["authd", "lmtp-deliver", "smtpd", "imapd"];

fn metrics_addr(pm: &Postern, daemon: &str) -> SocketAddr {
    let a = pm.daemon(daemon).listening_addrs_matching("(metrics)");
    assert_eq!(a.len(), 1, "{daemon}: one metrics listener: {a:?}");
    a[0]
}

/// One HTTP exchange: the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

fn scrape(pm: &Postern, daemon: &str) -> String {
    let (status, body) = http(
        metrics_addr(pm, daemon),
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n",
    );
    assert_eq!(status, "HTTP/1.1 200 OK", "{daemon}");
    body
}

/// The value of one series (`name{labels}` exactly as exposed), if present.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn at_least(text: &str, series: &str, min: f64) {
    let v = value(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"));
    assert!(v >= min, "{series} = {v}, expected at least {min}\n{text}");
}

/// Polls `daemon`'s metrics until `series` reaches `min` (bounded: 20 s).
fn wait_for(pm: &Postern, daemon: &str, series: &str, min: f64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = scrape(pm, daemon);
        if value(&text, series).is_some_and(|v| v >= min) || Instant::now() > deadline {
            at_least(&text, series, min);
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A line-oriented client (SMTP or IMAP) over TCP.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(a: SocketAddr) -> Self {
        let s = TcpStream::connect(a).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        Self {
            w: s.try_clone().expect("clone"),
            r: BufReader::new(s),
        }
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        let n = self.r.read_line(&mut l).expect("read a line");
        assert!(n > 0, "the server closed the connection");
        l.trim_end().to_owned()
    }

    fn send(&mut self, line: &str) {
        self.w
            .write_all(format!("{line}\r\n").as_bytes())
            .expect("write");
    }

    /// An SMTP reply's last line.
    fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if l.as_bytes().get(3) != Some(&b'-') {
                return l;
            }
        }
    }

    fn smtp(&mut self, line: &str) -> String {
        self.send(line);
        self.reply()
    }

    /// POP3 or ManageSieve: sends `line`, returns the status line (`+OK`/`-ERR`, or
    /// `OK`/`NO`/`BYE` after any data lines).
    fn status(&mut self, line: &str) -> String {
        self.send(line);
        self.status_line()
    }

    fn status_line(&mut self) -> String {
        loop {
            let l = self.line();
            if ["+OK", "-ERR", "OK", "NO", "BYE"]
                .iter()
                .any(|w| l == *w || l.starts_with(&format!("{w} ")))
            {
                return l;
            }
        }
    }

    /// IMAP: sends `tag line`, returns the tagged reply.
    fn imap(&mut self, tag: &str, line: &str) -> String {
        self.send(&format!("{tag} {line}"));
        loop {
            let l = self.line();
            if l.starts_with(&format!("{tag} ")) {
                return l;
            }
        }
    }
}

/// Four daemons with metrics on; a message delivered to alice; an IMAP session that failed
/// a login, logged in, selected INBOX and is now in IDLE (returned, so it stays there).
fn scenario() -> (Postern, Client) {
    let pm = Postern::builder().daemons(&DAEMONS).start();
    pm.mailctl_ok(&["domain", "add", "example.org"]);
    let out = pm.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));

    let smtp = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let mut c = Client::connect(smtp);
    assert!(c.reply().starts_with("220"));
    assert!(c.smtp("EHLO metrics.test").starts_with("250"));
    assert!(c.smtp("MAIL FROM:<bob@remote.test>").starts_with("250"));
    assert!(c.smtp("RCPT TO:<alice@example.org>").starts_with("250"));
    assert!(c.smtp("DATA").starts_with("354"));
    c.w.write_all(b"Subject: metrics\r\nX-Metrics: 1\r\n\r\nhello\r\n.\r\n")
        .expect("write");
    assert!(c.reply().starts_with("250"), "message accepted");
    assert!(c.smtp("QUIT").starts_with("221"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while messages(&maildir(&pm, "alice"), "new").is_empty() {
        assert!(Instant::now() < deadline, "the message was not delivered");
        std::thread::sleep(Duration::from_millis(50));
    }

    // POP3 from loopback (trusted: plaintext allowed), with one unknown command.
    let pop3 = pm.daemon("imapd").listening_addrs_matching("(pop3)")[0];
    let mut p = Client::connect(pop3);
    assert!(p.line().starts_with("+OK"));
    assert!(p.status("USER alice@example.org").starts_with("+OK"));
    let r = p.status("PASS correct horse battery");
    assert!(r.starts_with("+OK"), "{r}");
    assert!(p.status("STAT").starts_with("+OK 1 "));
    assert!(p.status("XYZZY-attacker-label").starts_with("-ERR"));
    assert!(p.status("QUIT").starts_with("+OK"));

    // ManageSieve: AUTHENTICATE PLAIN, a script with editheader checked, an unknown command.
    let sieve = pm.daemon("imapd").listening_addrs_matching("(managesieve)")[0];
    let mut m = Client::connect(sieve);
    assert!(m.status_line().starts_with("OK"), "greeting");
    let r = m.status(
        "AUTHENTICATE \"PLAIN\" \"AGFsaWNlQGV4YW1wbGUub3JnAGNvcnJlY3QgaG9yc2UgYmF0dGVyeQ==\"",
    );
    assert!(r.starts_with("OK"), "{r}");
    let r = m.status(r#"CHECKSCRIPT "require \"editheader\"; addheader \"X-A\" \"b\";""#);
    assert!(r.starts_with("OK"), "{r}");
    assert!(m.status("XYZZY-attacker-label").starts_with("NO"));
    assert!(m.status("LOGOUT").starts_with("OK"));

    let imap = pm.daemon("imapd").listening_addrs_matching("(imap)")[0];
    let mut i = Client::connect(imap);
    assert!(i.line().starts_with("* OK"));
    let bad = i.imap("a", "LOGIN alice@example.org \"wrong password\"");
    assert!(bad.starts_with("a NO"), "{bad}");
    let ok = i.imap("b", "LOGIN alice@example.org \"correct horse battery\"");
    assert!(ok.starts_with("b OK"), "{ok}");
    assert!(i.imap("c", "SELECT INBOX").starts_with("c OK"));
    assert!(i.imap("d", "NOOP").starts_with("d OK"));
    i.send("e IDLE");
    let cont = i.line();
    assert!(cont.starts_with('+'), "{cont}");
    (pm, i)
}

#[test]
fn every_daemon_counts_what_happened() {
    let (pm, mut idle) = scenario();

    let smtpd = wait_for(
        &pm,
        "smtpd",
        "postern_smtpd_deliveries_total{result=\"delivered\",transport=\"lmtp\"}",
        1.0,
    );
    at_least(
        &smtpd,
        "postern_smtpd_connections_total{door=\"smtp\"}",
        1.0,
    );
    at_least(
        &smtpd,
        "postern_smtpd_messages_total{door=\"smtp\",result=\"accepted\"}",
        1.0,
    );
    at_least(&smtpd, "postern_smtpd_received_bytes_total", 30.0);
    // Read from the queue manager at the scrape: delivered, so empty again.
    assert_eq!(value(&smtpd, "postern_smtpd_queue_messages"), Some(0.0));
    assert_eq!(
        value(&smtpd, "postern_smtpd_queue_oldest_seconds"),
        Some(0.0)
    );
    assert!(smtpd.contains("# TYPE postern_smtpd_dsns_total counter"));

    let lmtp = scrape(&pm, "lmtp-deliver");
    at_least(
        &lmtp,
        "postern_lmtp_deliveries_total{result=\"delivered\"}",
        1.0,
    );
    at_least(&lmtp, "postern_lmtp_delivery_duration_seconds_count", 1.0);
    at_least(
        &lmtp,
        "postern_lmtp_delivery_duration_seconds_bucket{le=\"+Inf\"}",
        1.0,
    );
    at_least(
        &lmtp,
        "postern_lmtp_sieve_actions_total{action=\"keep\"}",
        1.0,
    );
    assert_eq!(value(&lmtp, "postern_lmtp_quota_refusals_total"), Some(0.0));

    let imapd = scrape(&pm, "imapd");
    at_least(
        &imapd,
        "postern_imapd_connections_total{protocol=\"imap\"}",
        1.0,
    );
    at_least(
        &imapd,
        "postern_imapd_logins_total{protocol=\"imap\",result=\"ok\"}",
        1.0,
    );
    at_least(
        &imapd,
        "postern_imapd_logins_total{protocol=\"imap\",result=\"fail\"}",
        1.0,
    );
    at_least(
        &imapd,
        "postern_imapd_commands_total{command=\"LOGIN\"}",
        2.0,
    );
    at_least(
        &imapd,
        "postern_imapd_commands_total{command=\"SELECT\"}",
        1.0,
    );
    at_least(
        &imapd,
        "postern_imapd_commands_total{command=\"IDLE\"}",
        1.0,
    );
    at_least(
        &imapd,
        "postern_imapd_command_duration_seconds_count{command=\"NOOP\"}",
        1.0,
    );
    assert_eq!(value(&imapd, "postern_imapd_idle_sessions"), Some(1.0));

    // POP3 and ManageSieve commands by name; an unknown one is "unknown", never its text.
    // (The last command of each is recorded once its answer is out: polled.)
    wait_for(
        &pm,
        "imapd",
        "postern_imapd_pop3_command_duration_seconds_count{command=\"QUIT\"}",
        1.0,
    );
    let imapd = wait_for(
        &pm,
        "imapd",
        "postern_imapd_managesieve_commands_total{command=\"LOGOUT\"}",
        1.0,
    );
    for command in ["USER", "PASS", "STAT", "QUIT", "unknown"] {
        at_least(
            &imapd,
            &format!("postern_imapd_pop3_commands_total{{command=\"{command}\"}}"),
            1.0,
        );
    }
    at_least(
        &imapd,
        "postern_imapd_pop3_command_duration_seconds_count{command=\"STAT\"}",
        1.0,
    );
    for command in ["AUTHENTICATE", "CHECKSCRIPT", "LOGOUT", "unknown"] {
        at_least(
            &imapd,
            &format!("postern_imapd_managesieve_commands_total{{command=\"{command}\"}}"),
            1.0,
        );
    }
    at_least(
        &imapd,
        "postern_imapd_managesieve_command_duration_seconds_count{command=\"CHECKSCRIPT\"}",
        1.0,
    );
    for protocol in ["pop3", "managesieve"] {
        at_least(
            &imapd,
            &format!("postern_imapd_logins_total{{protocol=\"{protocol}\",result=\"ok\"}}"),
            1.0,
        );
        at_least(
            &imapd,
            &format!("postern_imapd_connections_total{{protocol=\"{protocol}\"}}"),
            1.0,
        );
    }
    assert!(!imapd.contains("XYZZY"), "{imapd}");

    let authd = scrape(&pm, "authd");
    at_least(
        &authd,
        "postern_authd_requests_total{socket=\"auth\",result=\"ok\"}",
        1.0,
    );
    at_least(
        &authd,
        "postern_authd_requests_total{socket=\"auth\",result=\"fail\"}",
        1.0,
    );
    at_least(
        &authd,
        "postern_authd_requests_total{socket=\"socketmap\",result=\"found\"}",
        1.0,
    );
    at_least(
        &authd,
        "postern_authd_requests_total{socket=\"userdb\",result=\"found\"}",
        1.0,
    );
    at_least(
        &authd,
        "postern_authd_request_duration_seconds_count{socket=\"auth\"}",
        2.0,
    );
    assert_eq!(
        value(
            &authd,
            "postern_authd_database_errors_total{socket=\"auth\"}"
        ),
        Some(0.0)
    );

    // Leaving IDLE (and the session) takes it off the gauge.
    idle.send("DONE");
    let done = idle.line();
    assert!(done.starts_with("e OK"), "{done}");
    assert!(idle.imap("f", "LOGOUT").starts_with("f OK"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while value(&scrape(&pm, "imapd"), "postern_imapd_idle_sessions") != Some(0.0) {
        assert!(Instant::now() < deadline, "still counted in IDLE");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Only GET /metrics is served; no client string becomes a label.
    let a = metrics_addr(&pm, "smtpd");
    assert_eq!(
        http(a, "GET / HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        http(a, "POST /metrics HTTP/1.1\r\n\r\n").0,
        "HTTP/1.1 405 Method Not Allowed"
    );
    let imapd = scrape(&pm, "imapd");
    for text in [&imapd, &scrape(&pm, "authd")] {
        assert!(!text.contains("alice"), "{text}");
    }

    // Every series the Grafana dashboard in deploy/ queries is exposed.
    let all: String = DAEMONS.iter().map(|d| scrape(&pm, d)).collect();
    let dashboard = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-postern.json"),
    )
    .expect("deploy/grafana-postern.json");
    let json: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut names = Vec::new();
    for panel in json["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("postern_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[at + name.len()..];
                names.push(name);
            }
        }
    }
    assert!(names.len() >= 20, "{names:?}");
    for n in names {
        // A family without samples yet (the check results before the first refusal) still
        // has its TYPE line.
        let exposed = all.lines().any(|l| {
            l.starts_with(&format!("{n}{{"))
                || l.starts_with(&format!("{n} "))
                || l.starts_with(&format!("# TYPE {n} "))
        });
        assert!(
            exposed,
            "the dashboard queries {n}, which no daemon exposes"
        );
    }
}

/// `promtool check metrics` (Debian's `prometheus` package) finds nothing wrong with any
/// daemon's output.
#[test]
#[ignore = "needs promtool (Debian package prometheus)"]
fn promtool_accepts_every_daemons_output() {
    let (pm, _idle) = scenario();
    wait_for(
        &pm,
        "smtpd",
        "postern_smtpd_deliveries_total{result=\"delivered\",transport=\"lmtp\"}",
        1.0,
    );
    for d in DAEMONS {
        let text = scrape(&pm, d);
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (apt-get install prometheus)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to promtool");
        let out = child.wait_with_output().expect("promtool ran");
        assert!(
            out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
            "promtool check metrics on {d}:\n{}\n{text}",
            describe_output(&out)
        );
    }
}

/// Stops the child on drop.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        drop(self.0.kill());
        drop(self.0.wait());
    }
}

/// Percent-encodes a PromQL query for a URL.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The samples of an instant query to Prometheus's HTTP API: (job, value).
fn prom_query(prom: SocketAddr, query: &str) -> Vec<(String, f64)> {
    let Ok(mut s) = TcpStream::connect(prom) else {
        return Vec::new();
    };
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // HTTP/1.0: no chunked encoding, the server closes after the answer.
    let req = format!(
        "GET /api/v1/query?query={} HTTP/1.0\r\nHost: {prom}\r\n\r\n",
        url_encode(query)
    );
    if s.write_all(req.as_bytes()).is_err() {
        return Vec::new();
    }
    let mut out = String::new();
    drop(s.read_to_string(&mut out));
    let Some((_, body)) = out.split_once("\r\n\r\n") else {
        return Vec::new();
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return Vec::new();
    };
    json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let job = r["metric"]["job"].as_str()?.to_owned();
            let v = r["value"][1].as_str()?.parse().ok()?;
            Some((job, v))
        })
        .collect()
}

/// A real Prometheus (Debian's `prometheus`) scrapes all four daemons on loopback: every
/// target is up and the delivery is seen in its database.
#[test]
#[ignore = "needs prometheus (Debian package prometheus)"]
fn prometheus_scrapes_all_four() {
    let (pm, _idle) = scenario();
    let dir = pm.dir().join("prometheus");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut cfg =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for d in DAEMONS {
        cfg.push_str(&format!(
            "  - job_name: postern-{d}\n    static_configs:\n      - targets: ['{}']\n",
            metrics_addr(&pm, d)
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), cfg).expect("write prometheus.yml");
    let prom = SocketAddr::from(([127, 0, 0, 1], postern_e2e::free_port()));
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log");
    let _child = Killed(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("prometheus (apt-get install prometheus)"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom_query(prom, "up");
        let delivered = prom_query(prom, "postern_lmtp_deliveries_total{result=\"delivered\"}");
        let all_up = up.len() == DAEMONS.len() && up.iter().all(|(_, v)| *v == 1.0);
        if all_up && delivered.iter().any(|(_, v)| *v >= 1.0) {
            let jobs: Vec<&str> = up.iter().map(|(j, _)| j.as_str()).collect();
            for d in DAEMONS {
                assert!(jobs.contains(&format!("postern-{d}").as_str()), "{jobs:?}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not see all four up and the delivery: up {up:?}, delivered \
             {delivered:?}\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
