//! DANE for outbound SMTP (RFC 7672, issue 15 §7), end to end: install A delivers to
//! install B's SMTP port, whose certificate is `mailctl init`'s self-signed one.
//!
//! Two ways A learns the DNSSEC status (`[dns] dnssec`), both over the wire from the
//! loopback [`DnsServer`]:
//! - **In-process validation** ([`signed_zones_are_validated_in_process`]): the server
//!   signs (a root zone with one ECDSA P-256 key: RRSIGs, NSEC denials, an insecure
//!   delegation) and A trusts its root DNSKEY by `[dns] trust_anchor`; A's hickory resolver
//!   checks every signature up to that key. Covered: a secure MX, address and TLSA answer
//!   whose record matches B's key (delivered, `dane=pass`), a secure record that does not
//!   match (deferred), a tampered TLSA or MX signature (bogus: deferred, nothing sent), an
//!   unsigned zone (insecure: the usual opportunistic TLS), a signed MX whose host's address
//!   is in an unsigned zone (RFC 7672 §2.2.2: its TLSA records are ignored), and the verdict
//!   cache (a second message makes no new TLSA lookup).
//! - **The AD bit of a validating resolver on loopback** (Postfix's way; the other tests):
//!   the server plays that resolver, setting AD for the zones marked [`DnsServer::secure`]
//!   and answering SERVFAIL for names marked [`DnsServer::bogus`], as unbound does for data
//!   that fails validation; nothing is signed there.
//!
//! In both, A reads the TLSA records, decides, checks B's certificate against them in the
//! TLS handshake, and logs `dane=pass|fail|none|temperror (…)`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use postern_e2e::{DnsServer, Postern, QueryFailure, describe_output, run_command, run_python};

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

const SEND_TO: &str = r#"
import smtplib, ssl, sys
host, port, rcpt, subject = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
msg = ("From: <alice@example.org>\r\nTo: <%s>\r\nSubject: %s\r\n"
       "Message-ID: <%s@example.org>\r\n\r\nhello\r\n") % (rcpt, subject, subject.replace(" ", "."))
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, port, timeout=30)
s.starttls(context=ctx)
s.login("alice@example.org", "correct horse battery")
print("REFUSED", s.sendmail("alice@example.org", [rcpt], msg.encode()))
s.quit()
"#;

fn submit_to(a: &Postern, rcpt: &str, subject: &str) {
    let addr = a.daemon("smtpd").listening_addrs_matching("(submission)")[0];
    let out = run_python(
        SEND_TO,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            rcpt,
            subject,
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("REFUSED {}"),
        "{}",
        describe_output(&out)
    );
}

fn inbox(b: &Postern, domain: &str) -> Vec<String> {
    messages(&b.dir().join(format!("mail/{domain}/bob/Maildir")), "new")
}

/// In-process DNSSEC validation against the signing test server (see the module
/// documentation for what each domain stands for).
#[test]
fn signed_zones_are_validated_in_process() {
    const DOMAINS: [&str; 6] = [
        "signed.example",
        "mismatch.example",
        "bogus.example",
        "badmx.example",
        "plain.example",
        "split.example",
    ];
    let b = receiver();
    for d in DOMAINS {
        b.mailctl_ok(&["domain", "add", d]);
        let out = b.mailctl_stdin(
            &["user", "add", &format!("bob@{d}")],
            "bob's long passphrase\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let key = spki_sha256(&b.dir().join("tls/cert.pem"));
    let mut wrong = key.clone();
    wrong[0] ^= 0xff;
    let tlsa = |host: &str| format!("_{}._tcp.{host}", b25.port());
    let lo = Ipv4Addr::LOCALHOST;
    let dns = DnsServer::start();
    dns.sign();
    for (domain, host, data) in [
        ("signed.example", "mx.signed.example", &key),
        ("mismatch.example", "mx.mismatch.example", &wrong),
        ("bogus.example", "mx.bogus.example", &key),
        ("badmx.example", "mx.signed.example", &key),
        ("plain.example", "mx.plain.example", &wrong),
        ("split.example", "mx.plain.example", &wrong),
    ] {
        dns.mx(domain, 10, host)
            .a(host, lo)
            .tlsa(&tlsa(host), 3, 1, 1, data);
    }
    dns.tamper(&tlsa("mx.bogus.example"))
        .tamper("badmx.example")
        .unsigned_zone("plain.example");
    let anchor = tempfile::tempdir().unwrap();
    let anchor_file = anchor.path().join("root.key");
    std::fs::write(&anchor_file, dns.trust_anchor()).unwrap();
    let a = Postern::builder()
        .hostname("mail.example.org")
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        .set("dns.dnssec", "validate")
        .set("dns.trust_anchor", anchor_file.to_str().unwrap())
        .set("smtpd.outbound_port", i64::from(b25.port()))
        .set("smtpd.outbound_connection_cache_secs", 0)
        .daemons(&["authd", "lmtp-deliver", "smtpd"])
        .start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    let out = a.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    let smtpd = a.daemon("smtpd");
    smtpd.wait_for(
        "DANE: on where DNSSEC-secure, validated in-process from the trust anchor",
        Duration::from_secs(10),
    );
    let hex: String = key[..6].iter().map(|b| format!("{b:02x}")).collect();

    // 1. Secure MX, A/AAAA (the AAAA's absence proven by NSEC) and TLSA, the record matching
    //    B's key: delivered over TLS, the log naming the record.
    let mark = smtpd.mark();
    submit_to(&a, "bob@signed.example", "secure");
    wait_until("the secure message", Duration::from_secs(30), || {
        inbox(&b, "signed.example").len() == 1
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(
        line.contains(&format!("dane=pass (TLSA 3 1 1 {hex}")),
        "{line}"
    );
    assert!(inbox(&b, "signed.example")[0].contains("with ESMTPS"));
    //    Again: the verdict on the host is cached (TTL 60 s), no new TLSA lookup.
    let tlsa_queries = || {
        let name = tlsa("mx.signed.example");
        dns.queries()
            .iter()
            .filter(|(n, t)| *n == name && *t == 52)
            .count()
    };
    let before = tlsa_queries();
    assert!(before >= 1);
    let mark = smtpd.mark();
    submit_to(&a, "bob@signed.example", "secure again");
    wait_until("the second secure message", Duration::from_secs(30), || {
        inbox(&b, "signed.example").len() == 2
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=pass (TLSA 3 1 1"), "{line}");
    assert_eq!(tlsa_queries(), before, "{:?}", dns.queries());

    // 2. Secure, but the record does not match B's key: deferred (4.7.5), not sent.
    let mark = smtpd.mark();
    submit_to(&a, "bob@mismatch.example", "mismatch");
    let why = deferred_with(&a, "4.7.5");
    assert!(why.contains("DANE"), "{why}");
    let line = smtpd.wait_for_since(mark, "dane=fail (", Duration::from_secs(10));
    assert!(line.contains("no TLSA record matches"), "{line}");
    assert!(inbox(&b, "mismatch.example").is_empty());

    // 3. The TLSA RRSIG tampered with: bogus, deferred before any connection.
    let mark = smtpd.mark();
    submit_to(&a, "bob@bogus.example", "bogus tlsa");
    let why = deferred_with(&a, "DNSSEC-bogus");
    assert!(
        why.contains("4.7.5") && why.contains("TLSA lookup"),
        "{why}"
    );
    let line = smtpd.wait_for_since(mark, "dane=temperror (", Duration::from_secs(10));
    assert!(line.contains("mx.bogus.example"), "{line}");
    assert!(inbox(&b, "bogus.example").is_empty());

    // 4. The MX RRSIG tampered with: deferred, whatever the host's records say.
    submit_to(&a, "bob@badmx.example", "bogus mx");
    let why = deferred_with(&a, "no validated MX answer for badmx.example");
    assert!(
        why.contains("4.7.5") && why.contains("DNSSEC-bogus"),
        "{why}"
    );
    assert!(inbox(&b, "badmx.example").is_empty());

    // 5. An unsigned zone (its delegation proven insecure): no DANE, even with a wrong TLSA
    //    record there; opportunistic TLS delivers.
    let mark = smtpd.mark();
    submit_to(&a, "bob@plain.example", "insecure zone");
    wait_until("the insecure-zone message", Duration::from_secs(30), || {
        inbox(&b, "plain.example").len() == 1
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=none (insecure MX)"), "{line}");

    // 6. A signed MX naming a host in the unsigned zone: its address is insecure, so its
    //    TLSA records do not count (RFC 7672 §2.2.2); delivered as usual.
    let mark = smtpd.mark();
    submit_to(&a, "bob@split.example", "insecure address");
    wait_until(
        "the insecure-address message",
        Duration::from_secs(30),
        || inbox(&b, "split.example").len() == 1,
    );
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=none (insecure A/AAAA)"), "{line}");
}

/// In-process validation through name servers that pass no DNSSEC records (here: a server
/// that does not sign, the trust anchor another's): every answer is bogus, so the mail waits
/// (kept in the queue, never sent without DANE's say), and the deferral says why.
#[test]
fn validation_without_dnssec_records_defers_and_says_why() {
    let b = receiver();
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let signer = DnsServer::start();
    signer.sign();
    let dns = DnsServer::start();
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::LOCALHOST);
    let anchor = tempfile::tempdir().unwrap();
    let anchor_file = anchor.path().join("root.key");
    std::fs::write(&anchor_file, signer.trust_anchor()).unwrap();
    let mut a = sender(&dns, b25.port());
    a.edit_config(|t| {
        postern_e2e::set_key(t, "dns.dnssec", "validate".into());
        postern_e2e::set_key(t, "dns.trust_anchor", anchor_file.to_str().unwrap().into());
    });
    a.restart_daemon("smtpd").wait_for(
        "DANE: on where DNSSEC-secure, validated in-process",
        Duration::from_secs(10),
    );
    submit(&a, "stripped");
    let why = deferred_with(&a, "no validated MX answer for example.net");
    assert!(
        why.contains("4.7.5") && why.contains("DNSSEC-bogus") && why.contains("root zone's keys"),
        "{why}"
    );
    assert!(bob(&b).is_empty());
}

/// A: mail.example.org with alice, validating DNSSEC in-process from the trust anchor
/// `anchor_text` (kept in the directory `anchor`), its MX delivery pointed at `port`; `tune`
/// adds settings.
fn validating_sender(
    dns: &DnsServer,
    port: u16,
    anchor: &Path,
    anchor_text: &str,
    tune: impl FnOnce(postern_e2e::PosternBuilder) -> postern_e2e::PosternBuilder,
) -> Postern {
    let anchor_file = anchor.join("root.key");
    std::fs::write(&anchor_file, anchor_text).unwrap();
    let builder = Postern::builder()
        .hostname("mail.example.org")
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        .set("dns.dnssec", "validate")
        .set("dns.trust_anchor", anchor_file.to_str().unwrap())
        .set("smtpd.outbound_port", i64::from(port))
        .set("smtpd.outbound_connection_cache_secs", 0)
        .daemons(&["authd", "lmtp-deliver", "smtpd"]);
    let a = tune(builder).start();
    a.mailctl_ok(&["domain", "add", "example.org"]);
    let out = a.mailctl_stdin(
        &["user", "add", "alice@example.org"],
        "correct horse battery\n",
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    a.daemon("smtpd").wait_for(
        "DANE: on where DNSSEC-secure, validated in-process from the trust anchor",
        Duration::from_secs(10),
    );
    a
}

/// The last error of the queued message for `rcpt` (empty while it has none).
fn last_error_for(a: &Postern, rcpt: &str) -> String {
    let q = a.mailctl_json(&["queue", "list"]);
    q.as_array()
        .into_iter()
        .flatten()
        .find(|e| {
            e["recipients"]
                .as_array()
                .is_some_and(|r| r.iter().any(|x| x.as_str() == Some(rcpt)))
        })
        .and_then(|e| e["last_error"].as_str())
        .unwrap_or("")
        .to_owned()
}

/// RFC 7672 §2.1.1, the downgrade: someone on the path drops or SERVFAILs only the DNSSEC
/// queries (the DO bit) of a signed destination's MX, or its host's TLSA queries. Neither is
/// a proven-insecure answer: the messages are deferred (4.7.5), stay queued and nothing is
/// sent, in clear or otherwise. Once the queries are answered again, the same messages go
/// out under DANE (`dane=pass`). With `[smtpd] dane = "off"` none of it is asked.
///
/// Seen failing before the fix: the two MX cases were delivered at once with
/// `dane=none (insecure MX)` (the lookup failure was taken as "insecure").
#[test]
fn lost_or_failed_dnssec_queries_defer_never_downgrade() {
    const DOMAINS: [&str; 4] = [
        "dropmx.example",
        "failmx.example",
        "droptlsa.example",
        "failtlsa.example",
    ];
    let b = receiver();
    for d in DOMAINS {
        b.mailctl_ok(&["domain", "add", d]);
        let out = b.mailctl_stdin(
            &["user", "add", &format!("bob@{d}")],
            "bob's long passphrase\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let key = spki_sha256(&b.dir().join("tls/cert.pem"));
    let tlsa = |host: &str| format!("_{}._tcp.{host}", b25.port());
    let dns = DnsServer::start();
    dns.sign();
    for d in DOMAINS {
        let host = format!("mx.{d}");
        dns.mx(d, 10, &host)
            .a(&host, Ipv4Addr::LOCALHOST)
            .tlsa(&tlsa(&host), 3, 1, 1, &key);
    }
    const MX: u16 = 15;
    const TLSA: u16 = 52;
    // Only the DO-bit MX queries: the plain MX lookup (no DO) still gets its answer.
    dns.fail_queries("dropmx.example", MX, true, QueryFailure::Drop)
        .fail_queries("failmx.example", MX, true, QueryFailure::ServFail)
        .fail_queries(
            &tlsa("mx.droptlsa.example"),
            TLSA,
            false,
            QueryFailure::Drop,
        )
        .fail_queries(
            &tlsa("mx.failtlsa.example"),
            TLSA,
            false,
            QueryFailure::ServFail,
        );
    let anchor = tempfile::tempdir().unwrap();
    let mut a = validating_sender(&dns, b25.port(), anchor.path(), &dns.trust_anchor(), |b| b);
    let smtpd = a.daemon("smtpd");
    let mark = smtpd.mark();
    for d in DOMAINS {
        submit_to(&a, &format!("bob@{d}"), &format!("via {d}"));
    }
    for (d, needle) in [
        (
            "dropmx.example",
            "DNSSEC status of the MX records of dropmx.example unknown",
        ),
        (
            "failmx.example",
            "DNSSEC status of the MX records of failmx.example unknown",
        ),
        (
            "droptlsa.example",
            "no usable DNSSEC answer for mx.droptlsa.example",
        ),
        (
            "failtlsa.example",
            "no usable DNSSEC answer for mx.failtlsa.example",
        ),
    ] {
        let rcpt = format!("bob@{d}");
        let mut last = String::new();
        wait_until(&format!("{d}'s deferral"), Duration::from_secs(40), || {
            last = last_error_for(&a, &rcpt);
            last.contains(needle)
        });
        assert!(last.contains("451 4.7.5"), "{d}: {last}");
        assert!(inbox(&b, d).is_empty(), "{d}: nothing sent");
    }
    assert!(dns.failed_queries() >= 4, "{:?}", dns.queries());
    assert_eq!(
        a.mailctl_json(&["queue", "list"]).as_array().unwrap().len(),
        4,
        "every message stays queued"
    );
    let since = smtpd.lines()[mark..].join("\n");
    assert!(!since.contains("status=\"sent\""), "{since}");

    // The queries are answered again: the same messages go out under DANE.
    dns.answer_again();
    let mark = smtpd.mark();
    a.mailctl_ok(&["queue", "flush"]);
    for d in DOMAINS {
        wait_until(&format!("{d}'s delivery"), Duration::from_secs(40), || {
            inbox(&b, d).len() == 1
        });
        assert!(inbox(&b, d)[0].contains("with ESMTPS"), "{d}");
    }
    wait_until("the queue empty", Duration::from_secs(20), || {
        a.mailctl_json(&["queue", "list"])
            .as_array()
            .is_some_and(Vec::is_empty)
    });
    let log = smtpd.lines()[mark..].join("\n");
    let passes = log
        .lines()
        .filter(|l| l.contains("status=\"sent\"") && l.contains("dane=pass (TLSA 3 1 1"))
        .count();
    assert_eq!(passes, 4, "{log}");

    // `[smtpd] dane = "off"`: no DNSSEC query is made, so a dropped one changes nothing.
    a.edit_config(|t| postern_e2e::set_key(t, "smtpd.dane", "off".into()));
    a.restart_daemon("smtpd").wait_for(
        "DANE: off ([smtpd] dane = \"off\")",
        Duration::from_secs(10),
    );
    dns.fail_queries("dropmx.example", MX, true, QueryFailure::Drop);
    let failed = dns.failed_queries();
    let smtpd = a.daemon("smtpd");
    let mark = smtpd.mark();
    submit_to(&a, "bob@dropmx.example", "dane off");
    wait_until("the dane-off message", Duration::from_secs(30), || {
        inbox(&b, "dropmx.example").len() == 2
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=none (off)"), "{line}");
    assert_eq!(dns.failed_queries(), failed, "no DO-bit MX query asked");
}

/// RFC 8461 §2: where a domain has both an MTA-STS policy and DNSSEC-signed TLSA records,
/// DANE decides, and MTA-STS "MUST NOT" override a failing DANE check. B's certificate is
/// from a CA that A trusts for MTA-STS and names every MX host, each domain's policy is
/// `enforce` naming its MX: MTA-STS alone accepts B everywhere (as for `stsonly.example`,
/// whose zone is unsigned). With a matching TLSA record: `dane=pass`. With a TLSA record
/// that does not match B's key: deferred 4.7.5 (`dane=fail`), although MTA-STS would
/// accept the certificate by its name.
#[test]
fn dane_wins_over_mta_sts() {
    use crate::outbound::{PolicyServer, TestCa};
    const DOMAINS: [&str; 3] = ["sts.example", "stsfail.example", "stsonly.example"];
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let ca_file = certs.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let mut b = Postern::builder()
        .hostname("mx.sts.example")
        .daemons(&["authd", "lmtp-deliver"])
        .start();
    let (cert, key_pem) = ca.leaf(&["mx.sts.example", "mx.stsfail.example", "mx.stsonly.example"]);
    std::fs::write(b.dir().join("tls/cert.pem"), cert).unwrap();
    std::fs::write(b.dir().join("tls/key.pem"), key_pem).unwrap();
    b.start_daemon("smtpd");
    for d in DOMAINS {
        b.mailctl_ok(&["domain", "add", d]);
        let out = b.mailctl_stdin(
            &["user", "add", &format!("bob@{d}")],
            "bob's long passphrase\n",
        );
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let key = spki_sha256(&b.dir().join("tls/cert.pem"));
    let mut wrong = key.clone();
    wrong[0] ^= 0xff;
    let names: Vec<String> = DOMAINS.iter().map(|d| format!("mta-sts.{d}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (https_cert, https_key) = ca.leaf(&names);
    let https = PolicyServer::start(
        &https_cert,
        &https_key,
        DOMAINS
            .iter()
            .map(|d| {
                (
                    format!("mta-sts.{d}"),
                    format!("version: STSv1\r\nmode: enforce\r\nmx: mx.{d}\r\nmax_age: 86400\r\n"),
                )
            })
            .collect(),
    );
    let tlsa = |host: &str| format!("_{}._tcp.{host}", b25.port());
    let dns = DnsServer::start();
    dns.sign();
    for (d, data) in [
        ("sts.example", &key),
        ("stsfail.example", &wrong),
        ("stsonly.example", &wrong),
    ] {
        let host = format!("mx.{d}");
        dns.mx(d, 10, &host)
            .a(&host, Ipv4Addr::LOCALHOST)
            .tlsa(&tlsa(&host), 3, 1, 1, data)
            .txt(&format!("_mta-sts.{d}"), "v=STSv1; id=20261206T1800;")
            .a(&format!("mta-sts.{d}"), Ipv4Addr::LOCALHOST);
    }
    dns.unsigned_zone("stsonly.example");
    let anchor = tempfile::tempdir().unwrap();
    let a = validating_sender(
        &dns,
        b25.port(),
        anchor.path(),
        &dns.trust_anchor(),
        |builder| {
            builder
                .set("smtpd.mta_sts_port", i64::from(https.port))
                .set("smtpd.mta_sts_ca_file", ca_file.to_str().unwrap())
        },
    );
    let smtpd = a.daemon("smtpd");
    let hex: String = key[..6].iter().map(|b| format!("{b:02x}")).collect();

    // MTA-STS alone (unsigned zone, its wrong TLSA record not DANE's): B's certificate is
    // accepted by its name under the enforced policy.
    let mark = smtpd.mark();
    submit_to(&a, "bob@stsonly.example", "sts only");
    wait_until("the MTA-STS-only message", Duration::from_secs(30), || {
        inbox(&b, "stsonly.example").len() == 1
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=none (insecure MX)"), "{line}");
    assert!(https.hits().contains(&"mta-sts.stsonly.example".to_owned()));

    // Both, the TLSA record matching: DANE's check, logged as such.
    let mark = smtpd.mark();
    submit_to(&a, "bob@sts.example", "sts and dane");
    wait_until("the DANE+MTA-STS message", Duration::from_secs(30), || {
        inbox(&b, "sts.example").len() == 1
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(
        line.contains(&format!("dane=pass (TLSA 3 1 1 {hex}")),
        "{line}"
    );
    assert!(https.hits().contains(&"mta-sts.sts.example".to_owned()));

    // Both, the TLSA record not matching: deferred, whatever MTA-STS would say.
    let mark = smtpd.mark();
    submit_to(&a, "bob@stsfail.example", "dane fails");
    let mut last = String::new();
    wait_until("the DANE deferral", Duration::from_secs(30), || {
        last = last_error_for(&a, "bob@stsfail.example");
        last.contains("4.7.5")
    });
    assert!(last.contains("DANE"), "{last}");
    let line = smtpd.wait_for_since(mark, "dane=fail (", Duration::from_secs(10));
    assert!(line.contains("no TLSA record matches"), "{line}");
    assert!(https.hits().contains(&"mta-sts.stsfail.example".to_owned()));
    assert!(inbox(&b, "stsfail.example").is_empty());
}

/// `[dns] trust_anchor` with the root's DS record instead of its DNSKEY (as IANA and Debian's
/// `dns-root-data` publish it): the root's DNSKEY RRset is fetched at the first lookup and the
/// key whose digest the DS gives becomes the anchor; validation then runs as with a DNSKEY
/// anchor (`dane=pass`). A DS record no key matches (a rollover the file missed, or another
/// root): nothing validates, the mail waits (4.7.5) and the deferral says why.
#[test]
fn ds_trust_anchor_is_matched_against_the_root_keys() {
    let b = receiver();
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let key = spki_sha256(&b.dir().join("tls/cert.pem"));
    let dns = DnsServer::start();
    dns.sign()
        .mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::LOCALHOST)
        .tlsa(&tlsa_name(&b), 3, 1, 1, &key);
    let ds = dns.trust_anchor_ds();
    assert!(ds.starts_with(". 60 IN DS "), "{ds}");
    let anchor = tempfile::tempdir().unwrap();
    let mut a = validating_sender(&dns, b25.port(), anchor.path(), &ds, |b| b);
    let smtpd = a.daemon("smtpd");
    let mark = smtpd.mark();
    submit(&a, "ds anchor");
    wait_until("the DS-anchored message", Duration::from_secs(30), || {
        bob(&b).len() == 1
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=pass (TLSA 3 1 1"), "{line}");

    // Another root's DS: no key of this root matches it.
    let other = DnsServer::start();
    other.sign();
    let other_file = anchor.path().join("other.key");
    std::fs::write(&other_file, other.trust_anchor_ds()).unwrap();
    a.edit_config(|t| {
        postern_e2e::set_key(t, "dns.trust_anchor", other_file.to_str().unwrap().into());
    });
    a.restart_daemon("smtpd").wait_for(
        "DANE: on where DNSSEC-secure, validated in-process from the trust anchor",
        Duration::from_secs(10),
    );
    submit(&a, "wrong ds");
    let why = deferred_with(&a, "matches its DS records");
    assert!(
        why.contains("4.7.5") && why.contains("no DNSKEY of . matches"),
        "{why}"
    );
    assert_eq!(bob(&b).len(), 1, "nothing more sent");
}

/// The same downgrade with the AD bit of a validating resolver on loopback (`[dns] dnssec`
/// auto): the resolver's answers to the DO-bit MX queries are lost. Each is asked twice,
/// then the message waits (4.7.5), kept queued, nothing sent; answered again, it goes out
/// with `dane=pass`.
#[test]
fn ad_mode_lost_dnssec_mx_answers_defer() {
    let b = receiver();
    let b25 = b.daemon("smtpd").listening_addrs_matching("(smtp)")[0];
    let key = spki_sha256(&b.dir().join("tls/cert.pem"));
    let tlsa = tlsa_name(&b);
    let dns = DnsServer::start();
    dns.mx("example.net", 10, "mx.example.net")
        .a("mx.example.net", Ipv4Addr::LOCALHOST)
        .tlsa(&tlsa, 3, 1, 1, &key)
        .secure("example.net")
        .secure(&tlsa)
        .fail_queries("example.net", 15, true, QueryFailure::Drop);
    let a = sender(&dns, b25.port());
    let smtpd = a.daemon("smtpd");
    smtpd.wait_for("DANE: on where their AD bit", Duration::from_secs(10));
    submit(&a, "ad lost");
    let mut last = String::new();
    wait_until("the deferral", Duration::from_secs(30), || {
        last = last_error_for(&a, "bob@example.net");
        !last.is_empty()
    });
    assert!(
        last.contains("451 4.7.5")
            && last.contains("DNSSEC status of the MX records of example.net unknown"),
        "{last}"
    );
    assert!(
        dns.failed_queries() >= 2,
        "asked again: {:?}",
        dns.queries()
    );
    assert!(bob(&b).is_empty(), "nothing sent");
    dns.answer_again();
    let mark = smtpd.mark();
    a.mailctl_ok(&["queue", "flush"]);
    wait_until("the delivery", Duration::from_secs(30), || {
        bob(&b).len() == 1
    });
    let line = smtpd.wait_for_since(mark, "status=\"sent\"", Duration::from_secs(10));
    assert!(line.contains("dane=pass (TLSA 3 1 1"), "{line}");
}
