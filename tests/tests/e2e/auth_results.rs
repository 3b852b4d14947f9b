//! Authentication-Results that cannot be forged (issue 11 §4), end to end: results
//! claiming our authserv-id in folded or nested-comment forms are removed on port 25 and
//! from local submissions, and what the client sent (MAIL FROM) cannot add a result to
//! the header we write.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use postern_e2e::{DnsServer, Postern, describe_output};

use crate::lmtp::messages;

const HOSTNAME: &str = "mail.example.org";

fn install(dns: &DnsServer) -> Postern {
    let pm = Postern::builder()
        .hostname(HOSTNAME)
        .set("dns.nameservers", vec![dns.addr().to_string()])
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

fn alice(pm: &Postern) -> PathBuf {
    pm.dir().join("mail/example.org/alice/Maildir")
}

fn delivered(pm: &Postern, subject: &str) -> String {
    let needle = format!("Subject: {subject}\n");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = messages(&alice(pm), "new")
            .into_iter()
            .find(|m| m.contains(&needle))
        {
            return m;
        }
        assert!(Instant::now() < deadline, "{subject:?} never arrived");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One SMTP command (or the DATA body) and the whole reply.
fn cmd(w: &mut TcpStream, r: &mut BufReader<TcpStream>, line: &str) -> String {
    if !line.is_empty() {
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\r\n").unwrap();
    }
    let mut reply = String::new();
    loop {
        let mut l = String::new();
        assert!(r.read_line(&mut l).unwrap() > 0, "connection closed");
        reply.push_str(&l);
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return reply;
        }
    }
}

/// The header fields of `message` named `name`, unfolded (line breaks removed).
fn fields(message: &str, name: &str) -> Vec<String> {
    let head = message.split("\n\n").next().unwrap_or("");
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(c) = current.as_mut() {
                c.push_str(line);
            }
            continue;
        }
        out.extend(current.take());
        if line
            .split(':')
            .next()
            .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        {
            current = Some(line.to_owned());
        }
    }
    out.extend(current);
    out
}

/// The resinfos of an unfolded Authentication-Results field as RFC 8601 reads them:
/// split at `;` outside quoted-strings and (nested) comments, comments dropped and each
/// quoted-string replaced by `Q`; each as its whitespace-separated tokens.
fn resinfos(field: &str) -> Vec<Vec<String>> {
    let value = field.split_once(':').map_or("", |(_, v)| v);
    let mut parts = vec![String::new()];
    let (mut depth, mut quoted, mut escaped) = (0usize, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => escaped = true,
            '"' if depth == 0 => {
                if !quoted {
                    parts.last_mut().unwrap().push('Q');
                }
                quoted = !quoted;
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            ';' if !quoted && depth == 0 => parts.push(String::new()),
            _ if !quoted && depth == 0 => parts.last_mut().unwrap().push(c),
            _ => {}
        }
    }
    parts
        .into_iter()
        .skip(1) // the authserv-id
        .map(|p| p.split_whitespace().map(str::to_owned).collect())
        .collect()
}

#[test]
fn forged_results_in_every_form_are_removed_and_client_values_stay_values() {
    let dns = DnsServer::start();
    let pm = install(&dns);
    let mx: SocketAddr = pm.daemon("smtpd").listening_addrs_matching("(smtp)")[0];

    // Port 25: folded, nested-comment and quoted forms of our authserv-id, one that does
    // not parse, and another host's result, which stays.
    let s = TcpStream::connect(mx).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    assert!(cmd(&mut w, &mut r, "").starts_with("220"));
    assert!(cmd(&mut w, &mut r, "EHLO client.test").starts_with("250"));
    let reply = cmd(&mut w, &mut r, "MAIL FROM:<\"x;dkim=pass\"@evil.test>");
    assert!(reply.starts_with("250"), "{reply}");
    assert!(cmd(&mut w, &mut r, "RCPT TO:<alice@example.org>").starts_with("250"));
    assert!(cmd(&mut w, &mut r, "DATA").starts_with("354"));
    let body = format!(
        "Authentication-Results:\r\n\t{HOSTNAME}; dkim=pass header.d=folded.test\r\n\
         Authentication-Results: (a(b)c) {HOSTNAME}; dkim=pass header.d=nested.test\r\n\
         Authentication-Results: \"{HOSTNAME}\"; dkim=pass header.d=quoted.test\r\n\
         Authentication-Results: (unterminated {HOSTNAME}; dkim=pass header.d=broken.test\r\n\
         Authentication-Results: other.test; spf=pass smtp.mailfrom=x@other.test\r\n\
         From: <x@evil.test>\r\nTo: <alice@example.org>\r\nSubject: forged forms\r\n\
         Message-ID: <forged.forms@test>\r\nDate: Mon, 23 Nov 2026 12:00:00 +0000\r\n\r\nHello.\r\n.",
    );
    let reply = cmd(&mut w, &mut r, &body);
    assert!(reply.starts_with("250"), "{reply}");
    cmd(&mut w, &mut r, "QUIT");

    let m = delivered(&pm, "forged forms");
    for forged in ["folded.test", "nested.test", "quoted.test", "broken.test"] {
        assert!(!m.contains(forged), "{forged} survived:\n{m}");
    }
    let ar = fields(&m, "Authentication-Results");
    assert_eq!(ar.len(), 2, "ours and other.test's: {ar:?}\n{m}");
    assert!(
        ar[0].starts_with(&format!("Authentication-Results: {HOSTNAME};")),
        "{ar:?}"
    );
    assert!(ar[1].contains("other.test"), "{ar:?}");
    // Ours: exactly spf, dkim=none, dmarc, each `method=result` then only
    // `ptype.property=value` tokens: what the sender wrote stayed inside a value.
    let infos = resinfos(&ar[0]);
    let methods: Vec<&str> = infos
        .iter()
        .map(|i| i[0].split('=').next().unwrap_or(""))
        .collect();
    assert_eq!(methods, ["spf", "dkim", "dmarc"], "{infos:?}\n{}", ar[0]);
    assert_eq!(infos[1][0], "dkim=none", "{infos:?}");
    for info in &infos {
        for t in &info[1..] {
            let ptype = t.split('.').next().unwrap_or("");
            assert!(
                ["smtp", "header", "policy"].contains(&ptype) && t.contains('='),
                "{t:?} is not a property: {}",
                ar[0]
            );
        }
    }
    assert!(
        ar[0].contains("smtp.mailfrom=\""),
        "quoted as a value: {}",
        ar[0]
    );

    // Local submission (sendmail → control socket): the same stripping.
    let mut sm = std::process::Command::new(postern_e2e::bin("sendmail"));
    sm.arg("-C")
        .arg(pm.config_path())
        .args(["-t", "-i", "-f", "cron@example.org"]);
    let msg = format!(
        "Authentication-Results:\n\t{HOSTNAME}; dkim=pass header.d=local-folded.test\n\
         Authentication-Results: (x(y)) {HOSTNAME}; dmarc=pass header.from=local-nested.test\n\
         X-Postern-Junk: no\n\
         To: alice@example.org\nSubject: local forged\n\nHi.\n"
    );
    let out = postern_e2e::run_command(&mut sm, Some(msg.as_bytes()), postern_e2e::COMMAND_TIMEOUT);
    assert!(out.status.success(), "{}", describe_output(&out));
    let m = delivered(&pm, "local forged");
    for forged in ["local-folded.test", "local-nested.test", "X-Postern-Junk"] {
        assert!(
            !m.contains(forged),
            "{forged} survived a local submission:\n{m}"
        );
    }
}
