//! DANE for outbound SMTP (RFC 7672, issue 15 §7), end to end: install A delivers to
//! install B's SMTP port, whose certificate is `mailctl init`'s self-signed one.
//!
//! What this covers, layer by layer: A's smtpd asks the loopback [`DnsServer`] for the MX
//! and `_PORT._tcp.mx.example.net` TLSA records over the wire with the AD bit set, reads the
//! AD bit and the TLSA records of the answers, decides, checks B's certificate against the
//! records in the TLS handshake, and logs `dane=…`. What it does not cover: DNSSEC
//! signature validation. Postern leaves that to a validating resolver on loopback (as
//! Postfix does) and trusts its AD bit; here the test server plays that resolver, setting
//! AD for the names marked [`DnsServer::secure`] and answering SERVFAIL for those marked
//! [`DnsServer::bogus`], as unbound does for data that fails validation. Nothing is signed.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use postern_e2e::{DnsServer, Postern, describe_output, run_command, run_python};

use crate::lmtp::messages;

/// The TLSA name of B's SMTP port (`_25._tcp.…` in production; B listens elsewhere here).
fn tlsa_name(b: &Postern) -> String {
    let port = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0].port();
    format!("_{port}._tcp.mx.example.net")
}

const SEND: &str = r#"
import smtplib, ssl, sys
host, port, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3]
msg = ("From: <alice@example.org>\r\nTo: <bob@example.net>\r\nSubject: %s\r\n"
       "Message-ID: <%s@example.org>\r\n\r\nhello\r\n") % (subject, subject.replace(" ", "."))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=30)
s.starttls(context=ctx)
s.login("alice@example.org", "correct horse battery")
print("REFUSED", s.sendmail("alice@example.org", ["bob@example.net"], msg.encode()))
s.quit()
"#;

/// B: mx.example.net, taking mail for bob@example.net on port 25 with STARTTLS.
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

/// A: mail.example.org with alice, its MX delivery pointed at B's port 25; connections are
/// not kept open (each message is a new handshake, with the TLSA records of the moment).
fn sender(dns: &DnsServer, port: u16) -> Postern {
    let pm = Postern::builder()
        .hostname("mail.example.org")
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        .set("smtpd.outbound_port", i64::from(port))
        .set("smtpd.outbound_connection_cache_secs", 0)
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

fn submit(a: &Postern, subject: &str) {
    let addr = a.daemon("smtpd").listening_addrs_matching("(submission)")[0];
    let out = run_python(
        SEND,
        &[&addr.ip().to_string(), &addr.port().to_string(), subject],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REFUSED {}"),
        "{}",
        describe_output(&out)
    );
}

/// SHA-256 of the SubjectPublicKeyInfo of the certificate in `pem` (TLSA 3 1 1 data).
fn spki_sha256(pem: &Path) -> Vec<u8> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -noout -pubkey | openssl pkey -pubin -outform DER \
             | openssl dgst -sha256 -hex",
        )
        .arg("sh")
        .arg(pem);
    let out = run_command(&mut cmd, None, Duration::from_secs(20));
    assert!(out.status.success(), "{}", describe_output(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.rsplit(' ').next().unwrap().trim();
    assert_eq!(hex.len(), 64, "{text}");
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn bob(b: &Postern) -> Vec<String> {
    messages(&b.dir().join("mail/example.net/bob/Maildir"), "new")
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for the queue's one message to be deferred with an error containing `needle`;
/// returns the error and deletes the message.
fn deferred_with(a: &Postern, needle: &str) -> String {
    let mut last = String::new();
    wait_until(
        &format!("a deferral mentioning {needle:?}"),
        Duration::from_secs(20),
        || {
            let q = a.mailctl_json(&["queue", "list"]);
            last = q[0]["last_error"].as_str().unwrap_or("").to_owned();
            last.contains(needle)
        },
    );
    let id = a.mailctl_json(&["queue", "list"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    a.mailctl_ok(&["queue", "delete", &id]);
    last
}

#[test]
fn tlsa_records_make_tls_mandatory_with_the_published_key() {
    let b = receiver();
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let key = spki_sha256(&b.dir().join("tls/cert.pem"));
    let tlsa = tlsa_name(&b);
    let tlsa = tlsa.as_str();
    let mut wrong = key.clone();
    wrong[0] ^= 0xff;
    let dns = DnsServer::start();
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::LOCALHOST)
        .tlsa(tlsa, 3, 1, 1, &wrong);
    let a = sender(&dns, b25.port());
    let smtpd = a.daemon("smtpd");
    smtpd.wait_for("DANE: on where their AD bit", Duration::from_secs(10));

    // 1. Insecure MX answer (no AD bit): DANE does not apply, not even a wrong TLSA record;
    //    the usual opportunistic TLS takes B's self-signed certificate.
    submit(&a, "insecure");
    wait_until("the insecure message", Duration::from_secs(30), || {
        bob(&b).len() == 1
    });
    let line = smtpd.wait_for("status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=none (insecure MX)"), "{line}");

    // 2. Secure MX and TLSA answers, the TLSA record not matching B's key: deferred (4.7.5),
    //    never sent in plain text instead.
    dns.secure("example.net").secure(tlsa);
    let mark = smtpd.mark();
    submit(&a, "mismatch");
    let why = deferred_with(&a, "4.7.5");
    assert!(why.contains("DANE"), "{why}");
    let line = smtpd.wait_for_since(mark, "dane=fail (", Duration::from_secs(10));
    assert!(line.contains("no TLSA record matches"), "{line}");
    assert_eq!(bob(&b).len(), 1, "nothing more reached B");

    // 3. The right key as TLSA 3 1 1: delivered over TLS although the certificate is
    //    self-signed and names another host; the log says which record matched.
    dns.remove(tlsa).tlsa(tlsa, 3, 1, 1, &key);
    let mark = smtpd.mark();
    submit(&a, "dane pass");
    wait_until("the DANE message", Duration::from_secs(30), || {
        bob(&b).len() == 2
    });
    let got = bob(&b);
    let m = got
        .iter()
        .find(|m| m.contains("Subject: dane pass"))
        .unwrap();
    assert!(m.contains("with ESMTPS"), "received over TLS: {m}");
    let hex: String = key[..6].iter().map(|b| format!("{b:02x}")).collect();
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(
        line.contains(&format!("dane=pass (TLSA 3 1 1 {hex}")),
        "{line}"
    );

    // 4. Only PKIX usages published (unusable for SMTP, RFC 7672 §3.1.3): TLS still
    //    required, any certificate; delivered, logged as such.
    dns.remove(tlsa).tlsa(tlsa, 1, 1, 1, &key);
    let mark = smtpd.mark();
    submit(&a, "unusable");
    wait_until("the unusable-TLSA message", Duration::from_secs(30), || {
        bob(&b).len() == 3
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("unusable: TLS required"), "{line}");

    // 5. A bogus TLSA answer (the validating resolver's SERVFAIL): deferred.
    dns.bogus(tlsa);
    submit(&a, "bogus");
    let why = deferred_with(&a, "TLSA lookup");
    assert!(why.contains("4.7.5") && why.contains("SERVFAIL"), "{why}");
    assert_eq!(bob(&b).len(), 3);

    // 6. A bogus MX answer: deferred too, before any connection.
    dns.bogus("example.net");
    submit(&a, "bogus mx");
    let why = deferred_with(&a, "validated MX");
    assert!(
        why.contains("4.7.5") && why.contains("no validated MX answer for example.net"),
        "{why}"
    );
    assert_eq!(bob(&b).len(), 3);
}

/// `dane = "off"`: TLSA records are not even looked up.
#[test]
fn dane_off_looks_up_no_tlsa() {
    let b = receiver();
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let tlsa = tlsa_name(&b);
    let tlsa = tlsa.as_str();
    let dns = DnsServer::start();
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::LOCALHOST)
        .tlsa(tlsa, 3, 1, 1, &[0u8; 32])
        .secure("example.net")
        .secure(tlsa);
    let mut a = sender(&dns, b25.port());
    a.edit_config(|t| {
        postern_e2e::set_key(t, "smtpd.dane", "off".into());
    });
    a.restart_daemon("smtpd").wait_for(
        "DANE: off ([smtpd] dane = \"off\")",
        Duration::from_secs(10),
    );
    submit(&a, "dane off");
    wait_until("the message", Duration::from_secs(30), || {
        bob(&b).len() == 1
    });
    assert!(
        !dns.queries().iter().any(|(n, t)| n == tlsa && *t == 52),
        "{:?}",
        dns.queries()
    );
}
