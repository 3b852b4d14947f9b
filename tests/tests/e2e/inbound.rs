//! Trust at the door, end to end: port 25 checks (SPF, DKIM, DMARC, DNSBL, HELO, early
//! talkers, greylisting) against test zones on the loopback DNS server; `mailctl stats`,
//! `mailctl dns` and `mailctl check`.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use postern_e2e::{DnsServer, Postern, PosternBuilder, describe_output, run_python};

use crate::lmtp::messages;

const HOSTNAME: &str = "mail.example.org";

/// authd + lmtp-deliver + smtpd for example.org (alice), loopback untrusted so that the
/// checks apply to the test clients, DNS from `dns`.
fn install(builder: PosternBuilder, dns: &DnsServer) -> Postern {
    let pm = builder
        .hostname(HOSTNAME)
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        .set("smtpd.trusted_networks", Vec::<String>::new())
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

/// Sends one message over port 25 with smtplib from `source` (a 127.x address); prints
/// `OK <reply>` or `<STAGE> <code> <text>`. With a key file, the message is DKIM-signed
/// (dkimpy) as `selector._domainkey.domain` first.
const SEND: &str = r#"
import smtplib, sys
host, port, source, helo, sender, rcpt, message = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7]
data = message.encode()
if len(sys.argv) > 8:
    import dkim
    key, selector, domain = open(sys.argv[8], "rb").read(), sys.argv[9].encode(), sys.argv[10].encode()
    sig = dkim.sign(data, selector, domain, key, include_headers=[b"from", b"to", b"subject", b"date"])
    data = sig + data
try:
    s = smtplib.SMTP(timeout=30, source_address=(source, 0))
    code, text = s.connect(host, port)
except smtplib.SMTPConnectError as e:
    print("CONNECT", e.smtp_code, e.smtp_error.decode()); sys.exit(0)
except smtplib.SMTPServerDisconnected as e:
    print("CONNECT closed", e); sys.exit(0)
code, text = s.ehlo(helo)
code, text = s.mail(sender)
if code != 250:
    print("MAIL", code, text.decode()); sys.exit(0)
code, text = s.rcpt(rcpt)
if code != 250:
    print("RCPT", code, text.decode()); sys.exit(0)
code, text = s.data(data)
if code != 250:
    print("DATA", code, text.decode()); sys.exit(0)
print("OK", code, text.decode())
s.quit()
"#;

struct Msg<'a> {
    source: &'a str,
    helo: &'a str,
    sender: &'a str,
    from: &'a str,
    subject: &'a str,
    extra_headers: &'a str,
    dkim: Option<(&'a Path, &'a str, &'a str)>,
}

impl Default for Msg<'_> {
    fn default() -> Self {
        Self {
            source: "127.0.0.1",
            helo: "client.test",
            sender: "someone@pass.test",
            from: "someone@pass.test",
            subject: "hello",
            extra_headers: "",
            dkim: None,
        }
    }
}

fn send(pm: &Postern, m: &Msg<'_>) -> String {
    let a = mx(pm);
    let message = format!(
        "{}From: <{}>\r\nTo: <alice@example.org>\r\nSubject: {}\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\nMessage-ID: <{}@test>\r\n\r\nHello.\r\n",
        m.extra_headers,
        m.from,
        m.subject,
        m.subject.replace(' ', ".")
    );
    let (ip, port) = (a.ip().to_string(), a.port().to_string());
    let mut args = vec![
        ip.as_str(),
        port.as_str(),
        m.source,
        m.helo,
        m.sender,
        "alice@example.org",
        message.as_str(),
    ];
    let key;
    if let Some((path, sel, dom)) = m.dkim {
        key = path.display().to_string();
        args.extend([key.as_str(), sel, dom]);
    }
    let out = run_python(SEND, &args);
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The delivered message with `subject` in `sub` of alice's Maildir.
fn delivered(pm: &Postern, sub: &str, subject: &str) -> String {
    let dir = alice(pm);
    let needle = format!("Subject: {subject}\n");
    let mut found = None;
    wait_until(
        &format!("{subject:?} in {sub}"),
        Duration::from_secs(20),
        || {
            found = messages(&dir, sub)
                .into_iter()
                .find(|m| m.contains(&needle));
            found.is_some()
        },
    );
    found.unwrap_or_default()
}

/// The Authentication-Results field of a stored message, unfolded.
fn auth_results(message: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur: Option<String> = None;
    for line in message.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(c) = cur.as_mut() {
                c.push(' ');
                c.push_str(line.trim());
            }
            continue;
        }
        if let Some(c) = cur.take() {
            fields.push(c);
        }
        if line
            .to_ascii_lowercase()
            .starts_with("authentication-results:")
        {
            cur = Some(line.to_owned());
        }
    }
    fields.extend(cur);
    fields
}

fn zones(dns: &DnsServer) {
    dns.txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all");
    dns.txt("_dmarc.pass.test", "v=DMARC1; p=reject");
    dns.txt("fail.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt("soft.test", "v=spf1 ip4:192.0.2.1 ~all");
    dns.txt("bank.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt(
        "_dmarc.bank.test",
        "v=DMARC1; p=reject; rua=mailto:d@bank.test",
    );
    dns.txt("shady.test", "v=spf1 ip4:192.0.2.1 -all");
    dns.txt("_dmarc.shady.test", "v=DMARC1; p=quarantine");
    dns.txt("signed.test", "v=spf1 -all");
    dns.txt("_dmarc.signed.test", "v=DMARC1; p=reject; adkim=s");
}

#[test]
#[ignore = "needs dkimpy (run .ci/run)"]
fn spf_dkim_dmarc_results_and_policies() {
    let dns = DnsServer::start();
    zones(&dns);
    let pm = install(Postern::builder(), &dns);
    // A Junk folder for the quarantined message.
    for sub in ["cur", "new", "tmp", ".Junk/cur", ".Junk/new", ".Junk/tmp"] {
        std::fs::create_dir_all(alice(&pm).join(sub)).unwrap();
    }

    // SPF pass (and DMARC pass through aligned SPF); a forged result is removed.
    let forged = format!(
        "Authentication-Results: {HOSTNAME}; spf=pass smtp.mailfrom=x@forged.test; dkim=pass header.d=forged.test\r\n\
         Authentication-Results: other.test; spf=pass\r\nX-Postern-Junk: forged\r\n"
    );
    let r = send(
        &pm,
        &Msg {
            subject: "spf pass",
            extra_headers: &forged,
            ..Msg::default()
        },
    );
    assert!(r.starts_with("OK 250"), "{r}");
    let m = delivered(&pm, "new", "spf pass");
    let ar = auth_results(&m);
    assert_eq!(ar.len(), 2, "ours and other.test's: {ar:?}\n{m}");
    assert!(
        ar[0].starts_with(&format!("Authentication-Results: {HOSTNAME};")),
        "{ar:?}"
    );
    assert!(
        ar[0].contains("spf=pass smtp.mailfrom=someone@pass.test"),
        "{ar:?}"
    );
    assert!(ar[0].contains("dkim=none"), "{ar:?}");
    assert!(ar[0].contains("dmarc=pass header.from=pass.test"), "{ar:?}");
    assert!(
        !m.contains("forged.test"),
        "the forged result is gone:\n{m}"
    );
    assert!(!m.contains("X-Postern-Junk"), "{m}");
    assert!(ar[1].contains("other.test"), "others' results stay: {ar:?}");

    // SPF fail and softfail (tagged only: spf = "tag").
    for (sender, subject, want) in [
        (
            "x@fail.test",
            "spf fail",
            "spf=fail smtp.mailfrom=x@fail.test",
        ),
        (
            "x@soft.test",
            "spf softfail",
            "spf=softfail smtp.mailfrom=x@soft.test",
        ),
    ] {
        let r = send(
            &pm,
            &Msg {
                sender,
                from: sender,
                subject,
                ..Msg::default()
            },
        );
        assert!(r.starts_with("OK 250"), "{subject}: {r}");
        let ar = auth_results(&delivered(&pm, "new", subject));
        assert!(ar[0].contains(want), "{subject}: {ar:?}");
    }

    // DKIM: a message signed with a known key passes, and DMARC passes by DKIM alignment
    // although SPF fails.
    let out = pm.mailctl_ok(&["dkim", "generate", "signed.test", "--selector", "s1"]);
    let record = out.lines().find(|l| l.contains(" IN TXT ")).unwrap();
    let value: String = record
        .split_once(" IN TXT ")
        .unwrap()
        .1
        .split('"')
        .skip(1)
        .step_by(2)
        .collect();
    dns.txt("s1._domainkey.signed.test", &value);
    let key = pm.dir().join("state/dkim/signed.test/s1.key");
    let key = if key.exists() {
        key
    } else {
        let cfg = pm.config();
        let state = cfg["paths"]["state_dir"].as_str().unwrap().to_owned();
        pm.dir().join(state).join("dkim/signed.test/s1.key")
    };
    let r = send(
        &pm,
        &Msg {
            sender: "news@signed.test",
            from: "news@signed.test",
            subject: "dkim signed",
            dkim: Some((&key, "s1", "signed.test")),
            ..Msg::default()
        },
    );
    assert!(r.starts_with("OK 250"), "{r}");
    let ar = auth_results(&delivered(&pm, "new", "dkim signed"));
    assert!(ar[0].contains("spf=fail"), "{ar:?}");
    assert!(
        ar[0].contains("dkim=pass header.d=signed.test header.s=s1"),
        "{ar:?}"
    );
    assert!(
        ar[0].contains("dmarc=pass header.from=signed.test"),
        "{ar:?}"
    );

    // A spoofed From: with p=reject is refused after DATA with 550 5.7.1.
    let r = send(
        &pm,
        &Msg {
            sender: "x@fail.test",
            from: "ceo@bank.test",
            subject: "spoofed",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("DATA 550 5.7.1"), "{r}");
    assert!(r.contains("DMARC policy of bank.test is reject"), "{r}");

    // p=quarantine: delivered into Junk, marked.
    let r = send(
        &pm,
        &Msg {
            sender: "x@shady.test",
            from: "x@shady.test",
            subject: "quarantined",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("OK 250"), "{r}");
    let m = delivered(&pm, ".Junk/new", "quarantined");
    assert!(
        m.contains("X-Postern-Junk: dmarc-quarantine (shady.test)"),
        "{m}"
    );
    assert!(auth_results(&m)[0].contains("dmarc=fail header.from=shady.test"));
    assert!(
        !messages(&alice(&pm), "new")
            .iter()
            .any(|m| m.contains("Subject: quarantined")),
        "not in INBOX"
    );

    // Counted, and shown by `mailctl stats`.
    let stats = pm.mailctl_json(&["stats"]);
    assert_eq!(stats["dmarc_reject"], 1, "{stats}");
    assert_eq!(stats["dmarc_quarantine"], 1, "{stats}");
    let text = pm.mailctl_ok(&["stats"]);
    assert!(text.contains("dmarc_reject"), "{text}");
    pm.daemon("smtpd")
        .wait_for("reason=\"dmarc_reject\"", Duration::from_secs(5));
}

#[test]
fn spf_reject_mode_refuses_at_mail() {
    let dns = DnsServer::start();
    zones(&dns);
    let pm = install(Postern::builder().set("checks.spf", "reject"), &dns);
    let r = send(
        &pm,
        &Msg {
            sender: "x@fail.test",
            from: "x@fail.test",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("MAIL 550 5.7.23"), "{r}");
    let r = send(
        &pm,
        &Msg {
            sender: "x@soft.test",
            from: "x@soft.test",
            subject: "soft passes",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("OK 250"), "softfail is not refused: {r}");
}

#[test]
fn dnsbl_listed_client_is_refused_with_the_zone() {
    let dns = DnsServer::start();
    zones(&dns);
    dns.a("2.0.0.127.zen.test", Ipv4Addr::new(127, 0, 0, 2));
    dns.a("listed.test.dbl.test", Ipv4Addr::new(127, 0, 1, 2));
    dns.txt("listed.test", "v=spf1 ip4:127.0.0.0/8 -all");
    let pm = install(
        Postern::builder()
            .set("checks.dnsbl_zones", vec!["zen.test"])
            .set("checks.dbl_zones", vec!["dbl.test"]),
        &dns,
    );
    let r = send(
        &pm,
        &Msg {
            source: "127.0.0.2",
            ..Msg::default()
        },
    );
    assert_eq!(
        r, "MAIL 554 5.7.1 Service unavailable; client [127.0.0.2] listed at zen.test",
        "{r}"
    );
    // Another address is not listed; a listed sender domain is refused.
    let r = send(&pm, &Msg::default());
    assert!(r.starts_with("OK 250"), "{r}");
    let r = send(
        &pm,
        &Msg {
            sender: "x@listed.test",
            ..Msg::default()
        },
    );
    assert!(
        r.starts_with("MAIL 554 5.7.1") && r.contains("listed.test listed at dbl.test"),
        "{r}"
    );
    let stats = pm.mailctl_json(&["stats"]);
    assert_eq!(stats["dnsbl:zen.test"], 1, "{stats}");
    assert_eq!(stats["dbl:dbl.test"], 1, "{stats}");
}

#[test]
fn dnsbl_tag_mode_only_tags() {
    let dns = DnsServer::start();
    zones(&dns);
    dns.a("2.0.0.127.zen.test", Ipv4Addr::new(127, 0, 0, 2));
    let pm = install(
        Postern::builder()
            .set("checks.dnsbl_zones", vec!["zen.test"])
            .set("checks.dnsbl", "tag"),
        &dns,
    );
    let r = send(
        &pm,
        &Msg {
            source: "127.0.0.2",
            subject: "tagged",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("OK 250"), "{r}");
    let m = delivered(&pm, "new", "tagged");
    assert!(
        m.contains("X-Postern-Tag: dnsbl client [127.0.0.2] listed at zen.test"),
        "{m}"
    );
}

#[test]
fn bad_helo_is_refused_and_fcrdns() {
    let dns = DnsServer::start();
    zones(&dns);
    let pm = install(Postern::builder(), &dns);
    for (helo, want) in [
        ("bad_name!", "MAIL 504 5.5.2"),
        ("192.0.2.7", "MAIL 504 5.5.2"),
        (HOSTNAME, "MAIL 550 5.7.1"),
        ("[127.0.0.1]", "MAIL 550 5.7.1"),
    ] {
        let r = send(
            &pm,
            &Msg {
                helo,
                ..Msg::default()
            },
        );
        assert!(r.starts_with(want), "HELO {helo}: {r}");
        assert!(r.contains("Helo command rejected"), "HELO {helo}: {r}");
    }
    let r = send(
        &pm,
        &Msg {
            helo: "[192.0.2.7]",
            subject: "literal ok",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("OK 250"), "{r}");
    let stats = pm.mailctl_json(&["stats"]);
    assert_eq!(stats["helo_invalid"], 1, "{stats}");
    assert_eq!(stats["helo_bare_ip"], 1, "{stats}");
    assert_eq!(stats["helo_our_name"], 1, "{stats}");
    assert_eq!(stats["helo_our_ip"], 1, "{stats}");

    // Forward-confirmed reverse DNS. hickory answers PTR under 127.in-addr.arpa itself
    // with `localhost` (RFC 6761), whose address is 127.0.0.1: so 127.0.0.1 is confirmed
    // and 127.0.0.2 is not.
    let dns2 = DnsServer::start();
    zones(&dns2);
    let pm = install(Postern::builder().set("checks.require_fcrdns", true), &dns2);
    let r = send(&pm, &Msg::default());
    assert!(r.starts_with("OK 250"), "{r}");
    let r = send(
        &pm,
        &Msg {
            source: "127.0.0.2",
            ..Msg::default()
        },
    );
    assert!(r.starts_with("MAIL 550 5.7.25"), "{r}");
}

#[test]
fn early_talker_and_connection_rate() {
    let dns = DnsServer::start();
    let pm = install(
        Postern::builder()
            .set("checks.greet_pause_ms", 700)
            .set("checks.max_connection_rate_per_ip", 3),
        &dns,
    );
    let a = mx(&pm);
    // Talks first: refused.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"EHLO hasty.test\r\n").unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    assert!(buf.starts_with("554 5.5.0"), "{buf:?}");
    // Waits: greeted.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut b = [0u8; 512];
    let n = s.read(&mut b).unwrap();
    assert!(
        b[..n].starts_with(b"220 "),
        "{:?}",
        String::from_utf8_lossy(&b[..n])
    );
    drop(s);
    // The third connection of this minute is the last one allowed.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let n = s.read(&mut b).unwrap();
    assert!(b[..n].starts_with(b"220 "));
    drop(s);
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    assert!(buf.starts_with("421 4.7.0"), "{buf:?}");
    let stats = pm.mailctl_json(&["stats"]);
    assert_eq!(stats["early_talker"], 1, "{stats}");
    assert_eq!(stats["rate_limit"], 1, "{stats}");
}

#[test]
fn greylisting_defers_then_accepts_and_survives_a_restart() {
    // The delay is long enough that two sends fit in it even on a loaded machine; each
    // "too early" check counts only when both sends provably happened within it (a send's
    // Instant bounds bracket the server's clock; it counts whole seconds, so "within" means
    // under DELAY - 1 s), and each "after the delay" send waits for the delay from the end
    // of the first send (the latest the server can have noted it).
    const DELAY: Duration = Duration::from_secs(5);
    const EARLY: Duration = Duration::from_secs(4);
    let dns = DnsServer::start();
    zones(&dns);
    let mut pm = install(
        Postern::builder()
            .set("checks.greylist", true)
            .set("checks.greylist_delay_secs", DELAY.as_secs() as i64),
        &dns,
    );
    let msg = |subject| Msg {
        subject,
        ..Msg::default()
    };
    let sleep_until = |t: Instant| {
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
    };
    let margin = Duration::from_millis(300);
    let started = Instant::now();
    let r = send(&pm, &msg("grey 1"));
    let first_done = Instant::now();
    assert!(r.starts_with("RCPT 450 4.7.1"), "{r}");
    assert!(r.contains("Greylisted"), "{r}");
    // A retry within the delay is deferred again. Under heavy load the second send may come
    // after the delay: then try again with a new triplet (bounded: 3 triplets).
    let mut early_checked = false;
    let senders = ["someone@pass.test", "early1@pass.test", "early2@pass.test"];
    for (i, sender) in senders.iter().enumerate() {
        let m = Msg {
            sender,
            subject: "grey 2",
            ..Msg::default()
        };
        let t0 = if i == 0 { started } else { Instant::now() };
        if i > 0 {
            let r = send(&pm, &m);
            assert!(r.starts_with("RCPT 450 4.7.1"), "{r}");
        }
        let r = send(&pm, &m);
        if t0.elapsed() < EARLY {
            assert!(r.starts_with("RCPT 450 4.7.1"), "too early: {r}");
            early_checked = true;
            break;
        }
        eprintln!("greylist retry {i} took {:?}, not conclusive", t0.elapsed());
    }
    assert!(
        early_checked,
        "the machine was too slow to send twice within {EARLY:?}"
    );
    sleep_until(first_done + DELAY + margin);
    let r = send(&pm, &msg("grey 3"));
    assert!(r.starts_with("OK 250"), "after the delay: {r}");
    // Another sender is a new triplet; the state outlives a restart.
    let other = Msg {
        sender: "other@pass.test",
        subject: "grey other",
        ..Msg::default()
    };
    let other_started = Instant::now();
    let r = send(&pm, &other);
    let other_done = Instant::now();
    assert!(r.starts_with("RCPT 450"), "{r}");
    pm.restart_daemon("smtpd");
    let r = send(&pm, &msg("grey 4"));
    assert!(r.starts_with("OK 250"), "allowed triplet kept: {r}");
    // Still deferred after the restart while within the delay (when provably so).
    if other_started.elapsed() < EARLY {
        let r = send(&pm, &other);
        if other_started.elapsed() < EARLY {
            assert!(
                r.starts_with("RCPT 450"),
                "too early after the restart: {r}"
            );
        }
    }
    sleep_until(other_done + DELAY + margin);
    let r = send(&pm, &other);
    assert!(
        r.starts_with("OK 250"),
        "the deferred one passes after the restart: {r}"
    );
}

/// `mailctl dns --json`, published on `dns` (the records as printed).
fn publish(pm: &Postern, dns: &DnsServer, domain: &str) -> serde_json::Value {
    let out = pm.mailctl_json(&["dns", domain, "--ip", "192.0.2.25"]);
    for r in out["records"].as_array().unwrap() {
        let (name, t, v) = (
            r["name"].as_str().unwrap(),
            r["type"].as_str().unwrap(),
            r["value"].as_str().unwrap(),
        );
        let f: Vec<&str> = v.split_whitespace().collect();
        match t {
            "MX" => {
                dns.mx(name, f[0].parse().unwrap(), f[1]);
            }
            "A" => {
                dns.a(name, v.parse().unwrap());
            }
            "TXT" => {
                dns.txt(name, v);
            }
            "CNAME" => {
                dns.cname(name, v);
            }
            "SRV" => {
                dns.srv(
                    name,
                    f[0].parse().unwrap(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3],
                );
            }
            "PTR" => {
                assert_eq!(name, "25.2.0.192.in-addr.arpa");
                dns.ptr(IpAddr::from([192, 0, 2, 25]), v);
            }
            other => panic!("unexpected record type {other}"),
        }
    }
    out
}

/// The server's public address in these tests (never connected to: every lookup goes to
/// the loopback DNS server, and the port checks use the configured listeners). Not a
/// 127/8 address: hickory answers PTR queries under 127.in-addr.arpa itself (RFC 6761).
///
/// authd + smtpd + imapd, with the real (ephemeral) listening addresses written back into
/// the config so that `mailctl check` can connect to them.
fn check_install(dns: &DnsServer) -> Postern {
    let pm = Postern::builder()
        .hostname(HOSTNAME)
        .domain("example.org")
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        .daemons(&["authd", "smtpd", "imapd"])
        .start();
    let s = pm.daemon("smtpd");
    let i = pm.daemon("imapd");
    let addr = |d: &postern_e2e::Daemon, door: &str| {
        toml::Value::from(vec![
            d.listening_addrs_matching(&format!("({door})"))[0].to_string(),
        ])
    };
    let (smtp, sub, subs, imaps) = (
        addr(s, "smtp"),
        addr(s, "submission"),
        addr(s, "submissions"),
        addr(i, "imaps"),
    );
    pm.edit_config(|t| {
        postern_e2e::set_key(t, "smtpd.listen", smtp);
        postern_e2e::set_key(t, "smtpd.submission", sub);
        postern_e2e::set_key(t, "smtpd.submissions", subs);
        postern_e2e::set_key(t, "imapd.imaps", imaps);
    });
    pm.mailctl_ok(&["dkim", "generate", "example.org", "--selector", "s1"]);
    pm
}

fn check_lines(pm: &Postern, args: &[&str]) -> (bool, String) {
    let out = pm.mailctl(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn mailctl_dns_published_makes_mailctl_check_pass_and_breakage_fails() {
    let dns = DnsServer::start();
    let mut pm = check_install(&dns);
    let out = publish(&pm, &dns, "example.org");
    let types: Vec<&str> = out["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for t in ["MX", "A", "TXT", "SRV", "CNAME", "PTR"] {
        assert!(types.contains(&t), "{t} in {types:?}");
    }
    assert!(
        out["mta_sts_policy"]
            .as_str()
            .unwrap()
            .contains("mx: mail.example.org"),
        "{out}"
    );

    let (ok, text) = check_lines(&pm, &["check", "example.org", "--ip", "192.0.2.25"]);
    assert!(
        ok,
        "mailctl check fails on what mailctl dns printed:\n{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
    for c in [
        "hostname", "ptr", "mx", "spf-ip", "dkim", "dmarc", "tls-name", "port-25", "port-993",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("OK") && l.contains(c)),
            "OK {c}:\n{text}"
        );
    }

    // Break everything it knows.
    dns.remove("example.org"); // MX and SPF
    dns.txt("example.org", "v=spf1 include:i1.test include:i2.test include:i3.test include:i4.test include:i5.test include:i6.test include:i7.test include:i8.test include:i9.test include:i10.test include:i11.test ?all");
    dns.remove("_dmarc.example.org");
    dns.remove("s1._domainkey.example.org");
    dns.txt(
        "s1._domainkey.example.org",
        "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwrong",
    );
    dns.remove("25.2.0.192.in-addr.arpa");
    dns.ptr(IpAddr::from([192, 0, 2, 25]), "other.test");
    dns.remove(HOSTNAME);
    dns.a(HOSTNAME, Ipv4Addr::new(192, 0, 2, 1));
    dns.a("25.2.0.192.zen.test", Ipv4Addr::new(127, 0, 0, 2));
    pm.stop_daemon("imapd");
    pm.edit_config(|t| {
        postern_e2e::set_key(t, "checks.dnsbl_zones", vec!["zen.test"].into());
        postern_e2e::set_key(t, "tls.cert", "tls/missing.pem".into());
    });
    let (ok, text) = check_lines(&pm, &["check", "example.org", "--ip", "192.0.2.25"]);
    assert!(!ok, "{text}");
    for c in [
        "a ",
        "ptr",
        "mx",
        "spf-ip",
        "spf-lookups",
        "dkim",
        "dmarc",
        "dnsbl",
        "tls",
        "port-993",
    ] {
        assert!(
            text.lines().any(|l| l.starts_with("FAIL") && l.contains(c)),
            "FAIL {c}:\n{text}"
        );
    }
    assert!(text.contains("fix:"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("WARN") && l.contains("spf-all")),
        "{text}"
    );
    // A domain without any record; a host name that is not a FQDN.
    let (ok, text) = check_lines(&pm, &["check", "nothing.test", "--ip", "192.0.2.25"]);
    assert!(!ok);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("no SPF record")),
        "{text}"
    );
    pm.edit_config(|t| postern_e2e::set_key(t, "hostname", "localhost".into()));
    let (ok, text) = check_lines(&pm, &["check", "example.org", "--ip", "192.0.2.25"]);
    assert!(!ok);
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("hostname")),
        "{text}"
    );
}

/// The zone-file output of `mailctl dns` read by an independent parser (dnspython).
#[test]
#[ignore = "needs dnspython (run .ci/run)"]
fn mailctl_dns_zone_file_parses_with_dnspython() {
    let dns = DnsServer::start();
    let pm = check_install(&dns);
    let text = pm.mailctl_ok(&[
        "dns",
        "example.org",
        "--ip",
        "192.0.2.25",
        "--ip",
        "2001:db8::25",
    ]);
    let script = r#"
import sys, dns.rdata, dns.rdataclass, dns.rdatatype, dns.name
for line in sys.argv[1].splitlines():
    if not line.strip() or line.startswith(";"):
        continue
    name, ttl, cls, rtype, rest = line.split(None, 4)
    n = dns.name.from_text(name)
    t = dns.rdatatype.from_text(rtype)
    rd = dns.rdata.from_text(dns.rdataclass.from_text(cls), t, rest)
    v = b"".join(rd.strings).decode() if t == dns.rdatatype.TXT else rd.to_text()
    print(n.to_text(), dns.rdatatype.to_text(t), v)
"#;
    let out = run_python(script, &[&text]);
    assert!(out.status.success(), "{}", describe_output(&out));
    let parsed = String::from_utf8_lossy(&out.stdout);
    for want in [
        "example.org. MX 10 mail.example.org.",
        "mail.example.org. A 192.0.2.25",
        "mail.example.org. AAAA 2001:db8::25",
        "example.org. TXT v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all",
        "_dmarc.example.org. TXT v=DMARC1; p=none; rua=mailto:dmarc-reports@example.org",
        "_smtp._tls.example.org. TXT v=TLSRPTv1; rua=mailto:tls-reports@example.org",
        "_submission._tcp.example.org. SRV 0 1 ",
        "_imaps._tcp.example.org. SRV 0 1 ",
        "autoconfig.example.org. CNAME mail.example.org.",
        "25.2.0.192.in-addr.arpa. PTR mail.example.org.",
        "s1._domainkey.example.org. TXT v=DKIM1; k=rsa; p=",
    ] {
        assert!(
            parsed.contains(want),
            "{want:?} not in:\n{parsed}\n--- from ---\n{text}"
        );
    }
}
