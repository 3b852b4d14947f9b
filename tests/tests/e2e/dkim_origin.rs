//! DKIM never lends our name to mail we did not originate (issue 11 §1), end to end:
//! a spoofed `From: ceo@example.org` redirected by Sieve leaves unsigned with an SRS
//! envelope sender, and a bounce to that SRS address comes back to the original sender;
//! an authenticated user cannot sign as another hosted domain; local `sendmail` is signed
//! only for the uid's own addresses. Signatures are checked with dkimpy.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use postern_e2e::{
    DnsServer, Postern, PosternBuilder, SinkBehaviour, SmtpSink, SunkMessage, describe_output,
    run_python,
};

const HOSTNAME: &str = "mail.example.org";
/// The address outsiders connect from (not in trusted_networks; 127.0.0.1 is).
const OUTSIDER: &str = "127.0.0.5";
/// The sink's address: MX of remote.test and spoofer.test.
const SINK_IP: [u8; 4] = [127, 0, 0, 12];

/// authd + lmtp-deliver + smtpd for example.org (alice) and other.test (boss), as
/// `mailctl init` makes it (the forwarding channel is its default), loopback 127.0.0.1 the
/// only trusted network, remote.test and spoofer.test at a sink.
fn install(edit: impl FnOnce(PosternBuilder) -> PosternBuilder) -> (Postern, SmtpSink, DnsServer) {
    let dns = DnsServer::start();
    let (sink, port) = (0..20)
        .find_map(|_| {
            let s = SmtpSink::start_on(SocketAddr::from((SINK_IP, 0)), SinkBehaviour::default())
                .ok()?;
            let p = s.addr().port();
            Some((s, p))
        })
        .expect("a sink on 127.0.0.12");
    for d in ["remote.test", "spoofer.test"] {
        dns.mx(d, 10, "mx.sink.test");
    }
    dns.a("mx.sink.test", Ipv4Addr::from(SINK_IP));
    let builder = Postern::builder()
        .hostname(HOSTNAME)
        .set("dns.nameservers", vec![dns.addr().to_string()])
        .set("dns.timeout_secs", 2)
        .set("smtpd.outbound_port", i64::from(port))
        .set("smtpd.trusted_networks", vec!["127.0.0.1/32".to_owned()])
        .daemons(&["authd", "lmtp-deliver", "smtpd"]);
    let pm = edit(builder).start();
    for d in ["example.org", "other.test"] {
        pm.mailctl_ok(&["domain", "add", d]);
    }
    for u in ["alice@example.org", "boss@other.test"] {
        let out = pm.mailctl_stdin(&["user", "add", u], "correct horse battery\n");
        assert!(out.status.success(), "{}", describe_output(&out));
    }
    (pm, sink, dns)
}

/// One SMTP transaction with smtplib: `mx` (port 25 from `source`) or `submission` (587,
/// STARTTLS, AUTH as `login`). Prints `OK <code>` or `<STAGE> <code> <text>`.
const SMTP: &str = r#"
import smtplib, ssl, sys
mode, host, port, source, login, sender, rcpt, message = sys.argv[1:9]
s = smtplib.SMTP(host, int(port), timeout=30, source_address=(source, 0))
s.ehlo("client.test")
if mode == "submission":
    ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
    s.starttls(context=ctx); s.ehlo("client.test")
    s.login(login, "correct horse battery")
code, text = s.mail(sender)
if code != 250:
    print("MAIL", code, text.decode()); sys.exit(0)
code, text = s.rcpt(rcpt)
if code != 250:
    print("RCPT", code, text.decode()); sys.exit(0)
code, text = s.data(message.encode())
if code != 250:
    print("DATA", code, text.decode()); sys.exit(0)
print("OK", code, text.decode())
s.quit()
"#;

fn smtp(pm: &Postern, mode: &str, login: &str, sender: &str, rcpt: &str, msg: &str) -> String {
    let (door, source) = match mode {
        "mx" => ("(smtp)", OUTSIDER),
        _ => ("(submission)", "127.0.0.1"),
    };
    let a = pm.daemon("smtpd").listening_addrs_matching(door)[0];
    let out = run_python(
        SMTP,
        &[
            mode,
            &a.ip().to_string(),
            &a.port().to_string(),
            source,
            login,
            sender,
            rcpt,
            msg,
        ],
    );
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn message(from: &str, to: &str, subject: &str) -> String {
    format!(
        "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: Sun, 06 Dec 2026 12:00:00 +0000\r\n\
         Message-ID: <{}@client.test>\r\n\r\nHello.\r\n",
        subject.replace(' ', ".")
    )
}

/// The `d=` of every DKIM-Signature field in the header, lower-cased.
fn signing_domains(data: &str) -> Vec<String> {
    let header = data.split("\r\n\r\n").next().unwrap_or("");
    let mut fields: Vec<String> = Vec::new();
    for line in header.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(f) = fields.last_mut() {
                f.push_str(line);
            }
        } else {
            fields.push(line.to_owned());
        }
    }
    fields
        .iter()
        .filter(|f| f.to_ascii_lowercase().starts_with("dkim-signature:"))
        .filter_map(|f| {
            f.split(';')
                .map(|t| t.split_whitespace().collect::<String>())
                .find_map(|t| t.strip_prefix("d=").map(str::to_ascii_lowercase))
        })
        .collect()
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
print("VERIFIED" if any(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(sigs)) else "FAILED")
"#;

/// Makes an RSA key for `domain` (selector s1); returns its TXT record value.
fn dkim_key(pm: &Postern, domain: &str) -> String {
    pm.mailctl_ok(&["dkim", "generate", domain, "--selector", "s1"]);
    let show = pm.mailctl_json(&["dkim", "show", domain]);
    let record = show[0]["dns_record"].as_str().expect("a DNS record");
    record
        .split_once(" IN TXT ")
        .expect("TXT")
        .1
        .split('"')
        .skip(1)
        .step_by(2)
        .collect()
}

/// dkimpy verifies a signature of `domain` (selector s1, `record`) on `data`.
fn dkimpy_verifies(pm: &Postern, data: &str, domain: &str, record: &str) -> bool {
    let file = pm.dir().join("verify.eml");
    std::fs::write(&file, data.as_bytes()).expect("write the message");
    let name = format!("s1._domainkey.{domain}");
    let out = run_python(DKIM_VERIFY, &[path(&file), record, &name]);
    assert!(out.status.success(), "{}", describe_output(&out));
    String::from_utf8_lossy(&out.stdout).contains("VERIFIED")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

fn wait_for(sink: &SmtpSink, what: &str, f: impl Fn(&SunkMessage) -> bool) -> SunkMessage {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(m) = sink.messages().into_iter().find(|m| f(m)) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            sink.messages()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn queue_len(pm: &Postern) -> usize {
    pm.mailctl_json(&["queue", "list"])
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
#[ignore = "needs dkimpy (run .ci/run)"]
fn spoofed_mail_redirected_by_sieve_is_unsigned_with_srs_and_its_bounce_comes_back() {
    let (pm, sink, _dns) = install(|b| b);
    let record = dkim_key(&pm, "example.org");
    let script = pm.dir().join("redirect.sieve");
    std::fs::write(&script, "redirect \"carol@remote.test\";\n").expect("script");
    pm.mailctl_ok(&["sieve", "put", "alice@example.org", path(&script)]);

    // An outsider on port 25 claims to be our CEO, to alice, who forwards to carol.
    let msg = message(
        "CEO <ceo@example.org>",
        "alice@example.org",
        "wire the money",
    );
    let out = smtp(
        &pm,
        "mx",
        "",
        "someone@spoofer.test",
        "alice@example.org",
        &msg,
    );
    assert!(out.starts_with("OK 250"), "{out}");
    let fwd = wait_for(&sink, "the redirect", |m| m.to == ["carol@remote.test"]);
    assert!(fwd.data.contains("Subject: wire the money"), "{}", fwd.data);
    assert!(
        !signing_domains(&fwd.data).contains(&"example.org".to_owned()),
        "forwarded mail must not carry our signature: {}",
        fwd.data
    );
    assert!(
        !dkimpy_verifies(&pm, &fwd.data, "example.org", &record),
        "dkimpy finds no valid example.org signature"
    );
    // Nor an SRS sender of mail.example.org, which relaxed DMARC would align with the
    // From: example.org: it keeps the spoofer's own sender.
    assert_eq!(fwd.from, "someone@spoofer.test");

    // Ordinary mail forwarded the same way gets an SRS envelope sender (SPF passes at the
    // next hop), and still no signature of ours.
    let msg = message(
        "Friend <friend@spoofer.test>",
        "alice@example.org",
        "hello alice",
    );
    let out = smtp(
        &pm,
        "mx",
        "",
        "someone@spoofer.test",
        "alice@example.org",
        &msg,
    );
    assert!(out.starts_with("OK 250"), "{out}");
    let fwd = wait_for(&sink, "the second redirect", |m| {
        m.data.contains("hello alice")
    });
    assert!(signing_domains(&fwd.data).is_empty(), "{}", fwd.data);
    let srs = fwd.from.clone();
    assert!(
        srs.starts_with("SRS0=") && srs.ends_with("=spoofer.test=someone@mail.example.org"),
        "SRS envelope sender: {srs}"
    );

    // The next hop bounces to the SRS address: reversed, the bounce goes to the sender.
    let bounce = message(
        "MAILER-DAEMON@remote.test",
        &srs,
        "Undelivered Mail Returned to Sender",
    );
    let out = smtp(&pm, "mx", "", "", &srs, &bounce);
    assert!(out.starts_with("OK 250"), "{out}");
    let back = wait_for(&sink, "the reversed bounce", |m| {
        m.to == ["someone@spoofer.test"]
    });
    assert_eq!(back.from, "", "a bounce keeps the null sender");
    assert!(
        back.data.contains("Subject: Undelivered Mail"),
        "{}",
        back.data
    );

    // A forged or tampered SRS address is refused.
    let (hash_end, _) = srs[5..].split_once('=').expect("SRS0=HASH=");
    let forged = srs.replacen(hash_end, "AAAA", 1);
    let out = smtp(&pm, "mx", "", "", &forged, &bounce);
    assert!(
        out.starts_with("RCPT 550") && out.contains("5.1.1"),
        "{out}"
    );
    let out = smtp(
        &pm,
        "mx",
        "",
        "",
        "SRS0=xxxx=AA=evil.test=x@mail.example.org",
        &bounce,
    );
    assert!(
        out.starts_with("RCPT 550") && out.contains("5.1.1"),
        "{out}"
    );
    // An alias of ours pointing to another provider forwards the same way: no signature of
    // ours on the outsider's message, SRS envelope sender.
    pm.mailctl_ok(&["alias", "add", "info@example.org", "dave@remote.test"]);
    let msg = message(
        "Friend <friend@spoofer.test>",
        "info@example.org",
        "via the alias",
    );
    let out = smtp(
        &pm,
        "mx",
        "",
        "other@spoofer.test",
        "info@example.org",
        &msg,
    );
    assert!(out.starts_with("OK 250"), "{out}");
    let fwd = wait_for(&sink, "the alias forward", |m| m.to == ["dave@remote.test"]);
    assert!(signing_domains(&fwd.data).is_empty(), "{}", fwd.data);
    assert!(
        fwd.from.starts_with("SRS0=") && fwd.from.ends_with("=spoofer.test=other@mail.example.org"),
        "{}",
        fwd.from
    );

    // The secret was made once, readable by smtpd only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(pm.dir().join("state/srs.secret"))
            .expect("the SRS secret")
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

/// A vacation reply also goes through the control socket (as an automatic reply for the
/// mailbox): signed, since its From: is the mailbox itself, with the null sender.
#[test]
#[ignore = "needs dkimpy (run .ci/run)"]
fn vacation_reply_is_signed_as_the_mailbox_it_answers_for() {
    let (pm, sink, _dns) = install(|b| b);
    let record = dkim_key(&pm, "example.org");
    let script = pm.dir().join("vacation.sieve");
    std::fs::write(
        &script,
        "require \"vacation\";\nvacation :days 1 :subject \"Away\" \"I am away.\";\n",
    )
    .expect("script");
    pm.mailctl_ok(&["sieve", "put", "alice@example.org", path(&script)]);
    let msg = message(
        "Friend <friend@remote.test>",
        "alice@example.org",
        "are you there",
    );
    let out = smtp(
        &pm,
        "mx",
        "",
        "friend@remote.test",
        "alice@example.org",
        &msg,
    );
    assert!(out.starts_with("OK 250"), "{out}");
    let reply = wait_for(&sink, "the vacation reply", |m| {
        m.to == ["friend@remote.test"]
    });
    assert_eq!(reply.from, "", "null sender, not rewritten");
    assert!(reply.data.contains("Subject: Away"), "{}", reply.data);
    assert_eq!(
        signing_domains(&reply.data),
        ["example.org"],
        "{}",
        reply.data
    );
    assert!(dkimpy_verifies(&pm, &reply.data, "example.org", &record));
}

#[test]
#[ignore = "needs dkimpy (run .ci/run)"]
fn submission_may_sign_only_its_own_from() {
    let (pm, sink, _dns) = install(|b| b);
    let record_a = dkim_key(&pm, "example.org");
    dkim_key(&pm, "other.test");

    // alice (example.org) writes as boss@other.test: refused after DATA, nothing queued.
    let msg = message("Boss <boss@other.test>", "bob@remote.test", "from the boss");
    let out = smtp(
        &pm,
        "submission",
        "alice@example.org",
        "alice@example.org",
        "bob@remote.test",
        &msg,
    );
    assert!(
        out.starts_with("DATA 553") && out.contains("5.7.1"),
        "{out}"
    );
    assert_eq!(queue_len(&pm), 0, "nothing queued");
    // Two From: fields, one of them hers: refused too.
    let two = format!("From: alice@example.org\r\n{msg}");
    let out = smtp(
        &pm,
        "submission",
        "alice@example.org",
        "alice@example.org",
        "bob@remote.test",
        &two,
    );
    assert!(out.starts_with("DATA 553"), "{out}");

    // Her own From: leaves signed d=example.org, and dkimpy verifies it.
    let msg = message("Alice <alice@example.org>", "bob@remote.test", "from alice");
    let out = smtp(
        &pm,
        "submission",
        "alice@example.org",
        "alice@example.org",
        "bob@remote.test",
        &msg,
    );
    assert!(out.starts_with("OK 250"), "{out}");
    let got = wait_for(&sink, "alice's message", |m| m.data.contains("from alice"));
    assert_eq!(
        got.from, "alice@example.org",
        "submitted mail is not SRS-rewritten"
    );
    assert_eq!(signing_domains(&got.data), ["example.org"], "{}", got.data);
    assert!(dkimpy_verifies(&pm, &got.data, "example.org", &record_a));
    assert!(
        sink.messages()
            .iter()
            .all(|m| !m.data.contains("from the boss")),
        "the refused message never left"
    );
}

/// Runs `sendmail -t -f SENDER` with `message`.
fn sendmail(pm: &Postern, sender: &str, message: &str) {
    let mut cmd = std::process::Command::new(postern_e2e::bin("sendmail"));
    cmd.args(["-C"])
        .arg(pm.config_path())
        .args(["-t", "-i", "-f", sender]);
    let out = postern_e2e::run_command(
        &mut cmd,
        Some(message.as_bytes()),
        postern_e2e::COMMAND_TIMEOUT,
    );
    assert!(out.status.success(), "{}", describe_output(&out));
}

#[test]
#[ignore = "needs dkimpy (run .ci/run)"]
fn local_sendmail_is_signed_only_for_the_uids_own_addresses() {
    let me = nix_user();
    let allowed = me.clone();
    let (pm, sink, _dns) = install(move |b| {
        b.set(
            &format!("smtpd.local_senders.{allowed}"),
            vec!["@other.test".to_owned()],
        )
    });
    let record_host = dkim_key(&pm, HOSTNAME);
    dkim_key(&pm, "example.org");
    let record_other = dkim_key(&pm, "other.test");

    // The uid's own address at the hostname: signed, and it verifies.
    let own = format!("{me}@{HOSTNAME}");
    sendmail(&pm, &own, &message(&own, "bob@remote.test", "own address"));
    let got = wait_for(&sink, "the own-address message", |m| {
        m.data.contains("own address")
    });
    assert_eq!(signing_domains(&got.data), [HOSTNAME], "{}", got.data);
    assert!(dkimpy_verifies(&pm, &got.data, HOSTNAME, &record_host));

    // Another hosted domain's address it was not given: delivered, but not signed.
    sendmail(
        &pm,
        &own,
        &message("CEO <ceo@example.org>", "bob@remote.test", "ceo address"),
    );
    let got = wait_for(&sink, "the ceo message", |m| m.data.contains("ceo address"));
    assert!(signing_domains(&got.data).is_empty(), "{}", got.data);

    // A domain the allow-list gives this uid: signed.
    sendmail(
        &pm,
        &own,
        &message("news@other.test", "bob@remote.test", "allowed domain"),
    );
    let got = wait_for(&sink, "the allow-listed message", |m| {
        m.data.contains("allowed domain")
    });
    assert_eq!(signing_domains(&got.data), ["other.test"], "{}", got.data);
    assert!(dkimpy_verifies(&pm, &got.data, "other.test", &record_other));
}

/// The name of the user running the tests (what smtpd sees as the peer).
fn nix_user() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
