//! Outbound delivery end to end: smtpd resolves MX hosts through a DNS server on loopback
//! (test zones), talks to receiving SMTP servers on 127.0.0.x (the harness sink, or a second
//! Postern), retries, bounces with the remote text, signs with DKIM, relays with AUTH.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use postern_e2e::{
    DnsServer, Postern, PosternBuilder, SinkBehaviour, SmtpSink, describe_output, run_python,
};

use crate::lmtp::messages;

const HOSTNAME: &str = "mail.example.org";

/// authd + lmtp-deliver + smtpd with example.org and alice; DNS from `dns`.
fn install(builder: PosternBuilder, dns: &DnsServer) -> Postern {
    let pm = builder
        .hostname(HOSTNAME)
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
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

const SEND: &str = r#"
import smtplib, ssl, sys
host, port, user, password, sender, rcpts, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6].split(","), sys.argv[7]
body = sys.argv[8] if len(sys.argv) > 8 else "Hello from Postern.\r\n"
msg = ("From: Alice <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n"
       "Message-ID: <%s@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Transfer-Encoding: 8bit\r\n\r\n%s") % (sender, ", ".join(rcpts), subject, subject.replace(" ", "."), body)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=30)
s.starttls(context=ctx)
s.login(user, password)
try:
    print("REFUSED", s.sendmail(sender, rcpts, msg.encode("utf-8"), mail_options=["BODY=8BITMIME"] if any(ord(c) > 127 for c in body) else []))
except smtplib.SMTPRecipientsRefused as e:
    print("ALLREFUSED", sorted((k, v[0]) for k, v in e.recipients.items()))
except smtplib.SMTPSenderRefused as e:
    print("SENDERREFUSED", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPDataError as e:
    print("DATAERROR", e.smtp_code, e.smtp_error.decode())
s.quit()
"#;

/// Submits a message as alice (port 587, STARTTLS, AUTH); returns the script's output.
fn submit(pm: &Postern, rcpts: &str, subject: &str) -> String {
    submit_body(pm, rcpts, subject, "Hello from Postern.\r\n")
}

fn submit_body(pm: &Postern, rcpts: &str, subject: &str, body: &str) -> String {
    let a = pm.daemon("smtpd").listening_addrs_matching("(submission)")[0];
    let out = run_python(
        SEND,
        &[
            &a.ip().to_string(),
            &a.port().to_string(),
            "alice@example.org",
            "correct horse battery",
            "alice@example.org",
            rcpts,
            subject,
            body,
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alice_maildir(pm: &Postern) -> std::path::PathBuf {
    pm.dir().join("mail/example.org/alice/Maildir")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `n` messages in alice's Maildir (DSNs come back there).
fn wait_dsns(pm: &Postern, n: usize) -> Vec<String> {
    let md = alice_maildir(pm);
    wait_until("DSNs in alice's Maildir", Duration::from_secs(30), || {
        messages(&md, "new").len() >= n
    });
    messages(&md, "new")
}

/// Sinks on 127.0.0.`hosts[i]`, all on one port (smtpd's `outbound_port` is one number).
fn sinks_on(hosts: &[u8], behaviours: &[SinkBehaviour]) -> (Vec<SmtpSink>, u16) {
    for _ in 0..20 {
        let first = SmtpSink::start_on(
            SocketAddr::from(([127, 0, 0, hosts[0]], 0)),
            behaviours[0].clone(),
        )
        .expect("bind a sink");
        let port = first.addr().port();
        let mut sinks = vec![first];
        for (h, b) in hosts.iter().zip(behaviours).skip(1) {
            match SmtpSink::start_on(SocketAddr::from(([127, 0, 0, *h], port)), b.clone()) {
                Ok(s) => sinks.push(s),
                Err(_) => break,
            }
        }
        if sinks.len() == hosts.len() {
            return (sinks, port);
        }
    }
    panic!("no common free port for the sinks");
}

fn queue_len(pm: &Postern) -> usize {
    pm.mailctl_json(&["queue", "list"])
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn best_mx_first_fallback_when_down_connection_reuse_and_dkim() {
    let dns = DnsServer::start();
    // mx1 (best) is down: nothing listens on 127.0.0.2. mx2 and mx3 answer.
    let (sinks, port) = sinks_on(
        &[3, 4],
        &[SinkBehaviour::default(), SinkBehaviour::default()],
    );
    dns.mx("example.net", 10, "mx1.example.net")
        .mx("example.net", 20, "mx2.example.net")
        .mx("example.net", 30, "mx3.example.net")
        .a("mx1.example.net", Ipv4Addr::new(127, 0, 0, 2))
        .a("mx2.example.net", Ipv4Addr::new(127, 0, 0, 3))
        .a("mx3.example.net", Ipv4Addr::new(127, 0, 0, 4))
        // No MX: the implicit MX is the domain's own address.
        .a("implicit.example", Ipv4Addr::new(127, 0, 0, 4));
    let pm = install(
        Postern::builder().set("smtpd.outbound_port", i64::from(port)),
        &dns,
    );
    let out = pm.mailctl_ok(&["dkim", "generate", "example.org", "--selector", "t1"]);
    assert!(
        out.contains("t1._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p="),
        "{out}"
    );

    let out = submit(&pm, "bob@example.net", "first");
    assert!(out.contains("REFUSED {}"), "{out}");
    let got = sinks[0].wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].to, ["bob@example.net"]);
    assert_eq!(got[0].from, "alice@example.org");
    assert_eq!(got[0].helo, HOSTNAME, "EHLO with the configured hostname");
    let data = &got[0].data;
    assert!(data.starts_with("DKIM-Signature:"), "signed first: {data}");
    assert!(
        data.contains("d=example.org") && data.contains("s=t1"),
        "{data}"
    );
    assert!(data.contains("Subject: first"), "{data}");
    assert!(
        sinks[1].messages().is_empty(),
        "mx3 is only the fallback's fallback"
    );

    // The next message to the same domain reuses the connection.
    let out = submit(&pm, "carol@example.net", "second");
    assert!(out.contains("REFUSED {}"), "{out}");
    let got = sinks[0].wait_for(2, Duration::from_secs(30));
    assert_eq!(got[1].to, ["carol@example.net"]);
    assert_eq!(
        sinks[0].connections(),
        1,
        "one connection for both messages"
    );

    // A domain without MX records: its A record.
    let out = submit(&pm, "dave@implicit.example", "implicit");
    assert!(out.contains("REFUSED {}"), "{out}");
    let got = sinks[1].wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].to, ["dave@implicit.example"]);
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_len(&pm) == 0
    });
    let log = pm.daemon("smtpd").log_text();
    assert!(log.contains("mx2.example.net[127.0.0.3]"), "{log}");
}

#[test]
fn retry_after_4xx_keeps_its_schedule_across_a_restart() {
    let dns = DnsServer::start();
    let later = SinkBehaviour {
        rcpt_reply: Some("450 4.2.0 <bob@example.net>: greylisted, try again later".into()),
        ..SinkBehaviour::default()
    };
    let (sinks, port) = sinks_on(&[5], &[later]);
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::new(127, 0, 0, 5));
    let mut pm = install(
        Postern::builder()
            .set("smtpd.outbound_port", i64::from(port))
            .set("smtpd.min_backoff_secs", 6)
            .set("smtpd.max_backoff_secs", 6),
        &dns,
    );
    let out = submit(&pm, "bob@example.net", "greylisted");
    assert!(out.contains("REFUSED {}"), "{out}");
    let mut entry = serde_json::Value::Null;
    wait_until("the deferral", Duration::from_secs(20), || {
        let q = pm.mailctl_json(&["queue", "list"]);
        entry = q[0].clone();
        entry["attempts"].as_u64() == Some(1) && !entry["delivering"].as_bool().unwrap_or(true)
    });
    let last = entry["last_error"].as_str().unwrap_or("").to_owned();
    assert!(
        last.starts_with("450 4.2.0 <bob@example.net>: greylisted"),
        "{entry}"
    );
    let next = entry["next_attempt"].as_i64().unwrap();

    pm.restart_daemon("smtpd");
    let q = pm.mailctl_json(&["queue", "list"]);
    assert_eq!(
        q[0]["next_attempt"].as_i64(),
        Some(next),
        "schedule kept: {q}"
    );
    assert_eq!(q[0]["attempts"].as_u64(), Some(1), "{q}");

    sinks[0].set_behaviour(SinkBehaviour::default());
    let got = sinks[0].wait_for(1, Duration::from_secs(30));
    assert_eq!(got[0].to, ["bob@example.net"]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(now >= next, "not before its time");
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_len(&pm) == 0
    });
}

#[test]
fn bounces_with_the_remote_text_null_mx_and_every_mx_refusing() {
    let dns = DnsServer::start();
    let no_user = SinkBehaviour {
        rcpt_reply: Some(
            "550 5.1.1 <bob@example.net>: Recipient address rejected: no such user".into(),
        ),
        ..SinkBehaviour::default()
    };
    let go_away = SinkBehaviour {
        greeting: Some("554 5.7.1 mx.refusing.example: no mail from you".into()),
        ..SinkBehaviour::default()
    };
    let seven_bit = SinkBehaviour {
        no_8bitmime: true,
        ..SinkBehaviour::default()
    };
    let (_sinks, port) = sinks_on(
        &[6, 7, 8, 9],
        &[no_user, go_away.clone(), go_away, seven_bit],
    );
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::new(127, 0, 0, 6))
        .mx("refusing.example", 10, "a.refusing.example")
        .mx("refusing.example", 20, "b.refusing.example")
        .a("a.refusing.example", Ipv4Addr::new(127, 0, 0, 7))
        .a("b.refusing.example", Ipv4Addr::new(127, 0, 0, 8))
        .null_mx("nomail.example")
        .mx("old.example", 10, "mx.old.example")
        .a("mx.old.example", Ipv4Addr::new(127, 0, 0, 9));
    // Long backoff: a bounce that arrives at all arrived at the first attempt.
    let pm = install(
        Postern::builder()
            .set("smtpd.outbound_port", i64::from(port))
            .set("smtpd.min_backoff_secs", 3600),
        &dns,
    );
    let out = submit(&pm, "bob@example.net", "to a user who is not there");
    assert!(out.contains("REFUSED {}"), "{out}");
    let dsns = wait_dsns(&pm, 1);
    let d = &dsns[0];
    assert!(
        d.contains("Action: failed") && d.contains("Status: 5.1.1"),
        "{d}"
    );
    assert!(d.contains("Remote-MTA: dns; mx.example.net"), "{d}");
    // The remote reply, in the report (folded) and in the human-readable part.
    assert!(
        d.contains("Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>:"),
        "{d}"
    );
    assert!(d.contains("no such user"), "{d}");

    let out = submit(&pm, "x@refusing.example", "everyone says no");
    assert!(out.contains("REFUSED {}"), "{out}");
    let dsns = wait_dsns(&pm, 2);
    let d = dsns
        .iter()
        .find(|m| m.contains("x@refusing.example"))
        .expect("a DSN");
    assert!(
        d.contains("Status: 5.7.1") && d.contains("no mail from you"),
        "{d}"
    );

    let out = submit(&pm, "y@nomail.example", "null mx");
    assert!(out.contains("REFUSED {}"), "{out}");
    let dsns = wait_dsns(&pm, 3);
    let d = dsns
        .iter()
        .find(|m| m.contains("y@nomail.example"))
        .expect("a DSN");
    assert!(d.contains("Status: 5.1.10") && d.contains("null MX"), "{d}");

    // Unknown domain: NXDOMAIN is permanent.
    let out = submit(&pm, "z@nowhere.example", "nxdomain");
    assert!(out.contains("REFUSED {}"), "{out}");
    let dsns = wait_dsns(&pm, 4);
    let d = dsns
        .iter()
        .find(|m| m.contains("z@nowhere.example"))
        .expect("a DSN");
    assert!(d.contains("Status: 5.1.2"), "{d}");

    // 8-bit body to a server without 8BITMIME: an honest bounce, no mangling.
    let out = submit_body(&pm, "w@old.example", "eight bit", "Grüße aus Köln\r\n");
    assert!(out.contains("REFUSED {}"), "{out}");
    let dsns = wait_dsns(&pm, 5);
    let d = dsns
        .iter()
        .find(|m| m.contains("w@old.example"))
        .expect("a DSN");
    assert!(d.contains("Status: 5.6.3"), "{d}");
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_len(&pm) == 0
    });
}

/// A second install: example.net with bob, whose port 25 and 587 offer STARTTLS.
fn receiver() -> Postern {
    let pm = Postern::builder()
        .hostname("mx.example.net")
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    pm.mailctl_ok(&["domain", "add", "example.net"]);
    let out = pm.mailctl_stdin(
        &["user", "add", "bob@example.net"],
        "bob's long passphrase\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    pm
}

fn bob_messages(b: &Postern, n: usize) -> Vec<String> {
    let md = b.dir().join("mail/example.net/bob/Maildir");
    wait_until("bob's mail", Duration::from_secs(30), || {
        messages(&md, "new").len() >= n
    });
    messages(&md, "new")
}

#[test]
fn starttls_to_a_postern_mx_and_relayhost_with_auth() {
    let b = receiver();
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let b587 = b.daemon("smtpd").listening_addrs_matching("(submission)")[0];
    let dns = DnsServer::start();
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::LOCALHOST);
    let mut a = install(
        Postern::builder().set("smtpd.outbound_port", i64::from(b25.port())),
        &dns,
    );
    // MX delivery: STARTTLS is offered, so it is used (the certificate is self-signed:
    // fine for the default opportunistic policy).
    let out = submit(&a, "bob@example.net", "over tls");
    assert!(out.contains("REFUSED {}"), "{out}");
    let got = bob_messages(&b, 1);
    assert!(got[0].contains("Subject: over tls"), "{}", got[0]);
    assert!(
        got[0].contains("with ESMTPS") && got[0].contains("(using version=TLSv1"),
        "received over TLS: {}",
        got[0]
    );
    assert!(got[0].contains("from mail.example.org"), "{}", got[0]);

    // `verify` for example.net: the self-signed certificate is not accepted; the mail waits.
    a.edit_config(|t| {
        let mut policy = toml::Table::new();
        policy.insert("example.net".into(), "verify".into());
        let smtpd = t.get_mut("smtpd").and_then(|v| v.as_table_mut()).unwrap();
        smtpd.insert("tls_policy".into(), policy.into());
    });
    a.restart_daemon("smtpd");
    let out = submit(&a, "bob@example.net", "verify fails");
    assert!(out.contains("REFUSED {}"), "{out}");
    wait_until("a TLS deferral", Duration::from_secs(20), || {
        let q = a.mailctl_json(&["queue", "list"]);
        q[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("4.7.5"))
    });
    let id = a.mailctl_json(&["queue", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.mailctl_ok(&["queue", "delete", &id]);

    // Relayhost: B's submission port, AUTH PLAIN as bob over STARTTLS.
    b.mailctl_ok(&["sender", "add", "alice@example.org", "bob@example.net"]);
    std::fs::write(a.dir().join("relay.pw"), "bob's long passphrase\n").unwrap();
    a.edit_config(|t| {
        let tbl = t.get_mut("smtpd").and_then(|v| v.as_table_mut()).unwrap();
        tbl.remove("tls_policy");
        tbl.insert("relayhost".into(), b587.to_string().into());
        tbl.insert("relayhost_auth_user".into(), "bob@example.net".into());
        tbl.insert("relayhost_password_file".into(), "relay.pw".into());
    });
    a.restart_daemon("smtpd");
    // With a password, the relayhost's certificate must be valid by default: B's self-signed
    // one is not, so the password is never sent and the message waits.
    let out = submit(&a, "bob@example.net", "relayhost not verified");
    assert!(out.contains("REFUSED {}"), "{out}");
    wait_until("a relayhost TLS deferral", Duration::from_secs(20), || {
        let q = a.mailctl_json(&["queue", "list"]);
        q[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("4.7.5"))
    });
    let id = a.mailctl_json(&["queue", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.mailctl_ok(&["queue", "delete", &id]);
    // An explicit `encrypt` (any certificate) still wins.
    a.edit_config(|t| {
        let tbl = t.get_mut("smtpd").and_then(|v| v.as_table_mut()).unwrap();
        tbl.insert("relayhost_tls".into(), "encrypt".into());
    });
    a.restart_daemon("smtpd");
    let out = submit(&a, "bob@example.net", "via the relayhost");
    assert!(out.contains("REFUSED {}"), "{out}");
    let got = bob_messages(&b, 2);
    let m = got
        .iter()
        .find(|m| m.contains("Subject: via the relayhost"))
        .expect("the relayed message");
    assert!(m.contains("with ESMTPSA"), "authenticated submission: {m}");
    assert!(m.contains("(using version=TLSv1"), "{m}");
    let log = a.daemon("smtpd").log_text();
    assert!(
        log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{}", b587.port())),
        "{log}"
    );
    wait_until("an empty queue", Duration::from_secs(10), || {
        queue_len(&a) == 0
    });
}

#[test]
fn submission_limits_per_user_and_queue_cap() {
    let dns = DnsServer::start();
    let later = SinkBehaviour {
        rcpt_reply: Some("451 4.3.0 not now".into()),
        ..SinkBehaviour::default()
    };
    let (_sinks, port) = sinks_on(&[10], &[later]);
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::new(127, 0, 0, 10));
    let pm = install(
        Postern::builder()
            .set("smtpd.outbound_port", i64::from(port))
            .set("smtpd.max_messages_per_hour_per_user", 3)
            .set("smtpd.max_recipients_per_message_per_user", 2)
            .set("smtpd.max_queue_messages", 2),
        &dns,
    );
    // Three recipients: the third is refused with 452 (smtplib reports it).
    let out = submit(&pm, "a@example.net,b@example.net,c@example.net", "one");
    assert!(
        out.contains("REFUSED {'c@example.net': (452, b'4.5.3 Too many recipients"),
        "{out}"
    );
    let out = submit(&pm, "d@example.net", "two");
    assert!(out.contains("REFUSED {}"), "{out}");
    // Two messages wait in the queue (the sink defers them): the cap is reached.
    let out = submit(&pm, "e@example.net", "three");
    assert!(
        out.contains("SENDERREFUSED 452 4.3.1 Mail queue full"),
        "{out}"
    );
    // Once the queue has room, the hourly limit (3, of which 2 used... the refused one did
    // not count) still lets one more through, then says no.
    let ids: Vec<String> = pm
        .mailctl_json(&["queue", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &ids {
        pm.mailctl_ok(&["queue", "delete", id]);
    }
    let out = submit(&pm, "f@example.net", "four");
    assert!(out.contains("REFUSED {}"), "{out}");
    let out = submit(&pm, "g@example.net", "five");
    assert!(
        out.contains("SENDERREFUSED 450 4.7.1 Sending limit reached"),
        "{out}"
    );
}

const DKIM_VERIFY: &str = r#"
import sys, dkim
record = sys.argv[2].encode()
def dnsfunc(name, timeout=5):
    return record if name.decode().rstrip(".") == sys.argv[3] else None
msg = open(sys.argv[1], "rb").read()
header = msg.split(b"\r\n\r\n")[0].split(b"\r\n")
sigs = len([l for l in header if l.lower().startswith(b"dkim-signature:")])
d = dkim.DKIM(msg)
# Only one key is published per run: the signature made with it must verify.
print("SIGNATURES", sigs)
print("VERIFIED" if any(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(sigs)) else "FAILED")
"#;

#[test]
#[ignore = "needs dkimpy (run .ci/run)"]
fn dkim_signature_verifies_with_dkimpy() {
    let dns = DnsServer::start();
    let (sinks, port) = sinks_on(&[11], &[SinkBehaviour::default()]);
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::new(127, 0, 0, 11));
    let pm = install(
        Postern::builder().set("smtpd.outbound_port", i64::from(port)),
        &dns,
    );
    for (sel, alg) in [("rsa1", "rsa"), ("ed1", "ed25519")] {
        pm.mailctl_ok(&["dkim", "generate", "example.org", "-s", sel, "-a", alg]);
    }
    let out = submit_body(
        &pm,
        "bob@example.net",
        "signed",
        "A line.\r\n.A dot line\r\n   spaces   \r\nGrüße\r\n\r\n\r\n",
    );
    assert!(out.contains("REFUSED {}"), "{out}");
    let got = sinks[0].wait_for(1, Duration::from_secs(30));
    let file = pm.dir().join("signed.eml");
    std::fs::write(&file, got[0].data.as_bytes()).unwrap();
    let show = pm.mailctl_json(&["dkim", "show", "example.org"]);
    for key in show.as_array().unwrap() {
        let record = key["dns_record"].as_str().unwrap();
        let value: String = record
            .split_once(" IN TXT ")
            .unwrap()
            .1
            .split('"')
            .skip(1)
            .step_by(2)
            .collect();
        let name = format!(
            "{}._domainkey.example.org",
            key["selector"].as_str().unwrap()
        );
        let out = run_python(DKIM_VERIFY, &[path(&file), &value, &name]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("SIGNATURES 2") && text.contains("VERIFIED"),
            "{name}: {}",
            describe_output(&out)
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Our smtpd finds Debian's Postfix as the MX of another domain and delivers to it, signed.
#[test]
#[ignore = "needs Debian's postfix (run .ci/run)"]
fn delivers_to_debian_postfix_as_the_mx() {
    let dns = DnsServer::start();
    let vmail = tempfile::tempdir().expect("vmail dir");
    std::fs::set_permissions(
        vmail.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod vmail");
    let pf = postern_e2e::Postfix::builder()
        .main_cf(&format!(
            "mydestination =\nvirtual_mailbox_domains = remote.test\n\
             virtual_mailbox_base = {base}\n\
             virtual_mailbox_maps = inline:{{ bob@remote.test=bob/ }}\n\
             virtual_uid_maps = static:65534\nvirtual_gid_maps = static:65534\n\
             smtpd_tls_security_level = none\n",
            base = vmail.path().display()
        ))
        .start();
    let mx = pf.smtp_addr();
    dns.mx("remote.test", 10, "mx.remote.test");
    dns.a("mx.remote.test", Ipv4Addr::new(127, 0, 0, 1));
    let pm = install(
        Postern::builder().set("smtpd.outbound_port", i64::from(mx.port())),
        &dns,
    );
    let out = pm.mailctl(&["dkim", "generate", "example.org", "--selector", "s1"]);
    assert!(out.status.success(), "{}", describe_output(&out));

    let out = submit(&pm, "bob@remote.test", "to postfix");
    assert!(out.contains("REFUSED {}"), "{out}");
    let inbox = vmail.path().join("bob");
    let deadline = Instant::now() + Duration::from_secs(30);
    let delivered = loop {
        let m = messages(&inbox, "new");
        if !m.is_empty() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "nothing in Postfix's Maildir; maillog:\n{}",
            pf.maillog()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(delivered.len(), 1);
    let text = &delivered[0];
    assert!(text.contains("Subject: to postfix"), "{text}");
    // Postfix's Received header names the EHLO we gave: our hostname.
    assert!(text.contains(&format!("from {HOSTNAME}")), "{text}");
    assert!(
        text.contains("DKIM-Signature:") && text.contains("d=example.org") && text.contains("s=s1"),
        "{text}"
    );
    // Postfix logs the delivery after the file is in place.
    pf.wait_for_log("status=sent", Duration::from_secs(20));
}

/// A test CA and certificates from it, in PEM.
pub(crate) struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    pub(crate) fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Postern test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for `names`.
    pub(crate) fn leaf(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A tiny HTTPS server on 127.0.0.1 serving `/.well-known/mta-sts.txt` by Host header.
pub(crate) struct PolicyServer {
    pub(crate) port: u16,
    hits: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl PolicyServer {
    pub(crate) fn start(cert_pem: &str, key_pem: &str, policies: Vec<(String, String)>) -> Self {
        use rustls::pki_types::pem::PemObject;
        use std::io::{Read, Write};
        use std::sync::{Arc, Mutex};
        let cert = rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
        let config = Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let seen = hits.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(conn) = rustls::ServerConnection::new(config.clone()) else {
                    continue;
                };
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req).into_owned();
                let host = req
                    .lines()
                    .find_map(|l| l.strip_prefix("Host:").or_else(|| l.strip_prefix("host:")))
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                seen.lock().unwrap().push(host.clone());
                let body = policies
                    .iter()
                    .find(|(h, _)| *h == host)
                    .map(|(_, p)| p.clone());
                let resp = match body {
                    Some(b) if req.starts_with("GET /.well-known/mta-sts.txt ") => format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
                        b.len()
                    ),
                    _ => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_owned(),
                };
                let _ = tls.write_all(resp.as_bytes());
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        });
        Self { port, hits }
    }

    pub(crate) fn hits(&self) -> Vec<String> {
        self.hits.lock().unwrap().clone()
    }
}

#[test]
fn mta_sts_enforce_matching_mx_refuses_other_mx_and_no_policy_as_before() {
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    // The receiving MX: mx.remote.test, with a certificate from the test CA.
    let mut b = Postern::builder()
        .hostname("mx.remote.test")
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    let (cert, key) = ca.leaf(&["mx.remote.test"]);
    std::fs::write(b.dir().join("tls/cert.pem"), cert).unwrap();
    std::fs::write(b.dir().join("tls/key.pem"), key).unwrap();
    b.start_daemon("smtpd");
    for (domain, user) in [("remote.test", "bob"), ("plain.test", "carol")] {
        b.mailctl_ok(&["domain", "add", domain]);
        let out = b.mailctl_stdin(
            &["user", "add", &format!("{user}@{domain}")],
            "a long passphrase\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];

    let (cert, key) = ca.leaf(&[
        "mta-sts.remote.test",
        "mta-sts.other.test",
        "mta-sts.badcert.test",
    ]);
    let https = PolicyServer::start(
        &cert,
        &key,
        vec![
            (
                "mta-sts.remote.test".into(),
                "version: STSv1\r\nmode: enforce\r\nmx: mx.remote.test\r\nmax_age: 86400\r\n"
                    .into(),
            ),
            (
                "mta-sts.other.test".into(),
                "version: STSv1\r\nmode: enforce\r\nmx: *.remote.test\r\nmax_age: 86400\r\n".into(),
            ),
            (
                "mta-sts.badcert.test".into(),
                "version: STSv1\r\nmode: enforce\r\nmx: mx.badcert.test\r\nmax_age: 86400\r\n"
                    .into(),
            ),
        ],
    );

    let dns = DnsServer::start();
    dns.txt("_mta-sts.remote.test", "v=STSv1; id=20261123T1200;")
        .a("mta-sts.remote.test", Ipv4Addr::LOCALHOST)
        .mx("remote.test", 10, "mx.remote.test")
        .a("mx.remote.test", Ipv4Addr::LOCALHOST)
        .txt("_mta-sts.other.test", "v=STSv1; id=1;")
        .a("mta-sts.other.test", Ipv4Addr::LOCALHOST)
        .mx("other.test", 10, "mx.other.test")
        .a("mx.other.test", Ipv4Addr::LOCALHOST)
        .mx("plain.test", 10, "mx.remote.test")
        // Named by its policy, but the certificate there is for mx.remote.test.
        .txt("_mta-sts.badcert.test", "v=STSv1; id=1;")
        .a("mta-sts.badcert.test", Ipv4Addr::LOCALHOST)
        .mx("badcert.test", 10, "mx.badcert.test")
        .a("mx.badcert.test", Ipv4Addr::LOCALHOST);
    let a = install(
        Postern::builder()
            .set("smtpd.outbound_port", i64::from(b25.port()))
            .set("smtpd.mta_sts_port", i64::from(https.port))
            .set("smtpd.mta_sts_ca_file", path(&ca_file))
            .set("smtpd.min_backoff_secs", 3600),
        &dns,
    );

    // (1) enforce, the MX is named by the policy and has a valid certificate: delivered.
    let out = submit(&a, "bob@remote.test", "sts enforce");
    assert!(out.contains("REFUSED {}"), "{out}");
    let md = b.dir().join("mail/remote.test/bob/Maildir");
    wait_until("bob's mail", Duration::from_secs(30), || {
        messages(&md, "new").len() == 1
    });
    let got = messages(&md, "new");
    assert!(got[0].contains("Subject: sts enforce"), "{}", got[0]);
    assert!(got[0].contains("with ESMTPS"), "over TLS: {}", got[0]);
    assert!(https.hits().contains(&"mta-sts.remote.test".to_owned()));
    let log = a.daemon("smtpd").log_text();
    assert!(log.contains("MTA-STS policy fetched"), "{log}");

    // (2) enforce, the MX is not named by the policy: it waits with 4.7.5, no bounce.
    let out = submit(&a, "x@other.test", "sts mismatch");
    assert!(out.contains("REFUSED {}"), "{out}");
    let mut entry = serde_json::Value::Null;
    wait_until("an MTA-STS deferral", Duration::from_secs(20), || {
        let q = a.mailctl_json(&["queue", "list"]);
        entry = q[0].clone();
        entry["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("4.7.5"))
    });
    let last = entry["last_error"].as_str().unwrap();
    assert!(
        last.contains("MTA-STS") && last.contains("mx.other.test"),
        "{entry}"
    );
    assert_eq!(queue_len(&a), 1, "the message stays queued");
    assert!(
        messages(&alice_maildir(&a), "new").is_empty(),
        "no bounce for MTA-STS"
    );

    // Enforce, the MX is named but its certificate is not valid for its name: it waits.
    let out = submit(&a, "y@badcert.test", "sts bad cert");
    assert!(out.contains("REFUSED {}"), "{out}");
    wait_until("a TLS deferral", Duration::from_secs(20), || {
        a.mailctl_json(&["queue", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|e| {
                e["last_error"].as_str().is_some_and(|t| {
                    t.contains("4.7.5 TLS with mx.badcert.test") && t.contains("MTA-STS policy")
                })
            })
    });
    assert_eq!(queue_len(&a), 2);

    // (3) no _mta-sts record: as before (opportunistic TLS).
    let out = submit(&a, "carol@plain.test", "no policy");
    assert!(out.contains("REFUSED {}"), "{out}");
    let md = b.dir().join("mail/plain.test/carol/Maildir");
    wait_until("carol's mail", Duration::from_secs(30), || {
        messages(&md, "new").len() == 1
    });
    assert!(messages(&md, "new")[0].contains("Subject: no policy"));
    assert_eq!(queue_len(&a), 2, "only the refused messages are left");
    assert!(messages(&alice_maildir(&a), "new").is_empty());
    drop(b);
}
