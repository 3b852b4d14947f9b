use mail_parser::{Message, MessageParser, MimeHeaders};

use super::*;

const ORIGINAL: &[u8] = b"From: Alice <alice@example.org>\r\n\
To: bob@x.example, carol@y.example\r\n\
Subject: Lunch?\r\n\
Message-ID: <orig-123@example.org>\r\n\
Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\
\r\n\
Are you free for lunch tomorrow?\r\n\
SECRET-BODY-MARKER\r\n";

fn failed(addr: &str, orcpt: Option<&str>) -> RecipientReport {
    RecipientReport {
        final_recipient: addr.to_owned(),
        original_recipient: orcpt.map(str::to_owned),
        action: Action::Failed,
        status: (5, 2, 2),
        remote_mta: Some("mx.x.example".to_owned()),
        diagnostic: Some(format!("552 5.2.2 <{addr}> Mailbox is full")),
        last_attempt: Some(1_704_110_400),
        will_retry_until: None,
    }
}

fn report(recipients: Vec<RecipientReport>, ret: Ret) -> Report<'static> {
    Report {
        reporting_mta: "mail.example.org",
        postmaster: "Mail Delivery System <MAILER-DAEMON@mail.example.org>",
        to: "alice@example.org",
        envid: Some("ENV-42"),
        arrival: 1_704_103_200,
        recipients,
        original: ORIGINAL,
        ret,
        max_original: 1 << 20,
    }
}

fn parse(raw: &[u8]) -> Message<'_> {
    MessageParser::new().parse(raw).expect("parseable DSN")
}

/// Checks structure common to all DSNs and returns the three parts' raw text.
fn check_structure(raw: &[u8]) -> (String, String, String) {
    let text = std::str::from_utf8(raw).expect("utf-8");
    // Every line ends with CRLF.
    assert!(
        !text.replace("\r\n", "").contains(['\r', '\n']),
        "bare CR/LF"
    );
    let msg = parse(raw);
    let ct = msg.content_type().expect("content-type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some("delivery-status"));
    assert_eq!(
        msg.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert_eq!(
        msg.to().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("alice@example.org")
    );
    assert_eq!(msg.in_reply_to().as_text(), Some("orig-123@example.org"));
    assert_eq!(msg.references().as_text(), Some("orig-123@example.org"));
    assert!(
        msg.message_id()
            .is_some_and(|id| id.ends_with("@mail.example.org"))
    );
    let root = msg.part(0).expect("root");
    let subs = root.sub_parts().expect("multipart");
    assert_eq!(subs.len(), 3, "three parts");
    let p: Vec<_> = subs.iter().map(|&i| msg.part(i).expect("part")).collect();
    let ct0 = p[0].content_type().expect("ct");
    assert_eq!((ct0.ctype(), ct0.subtype()), ("text", Some("plain")));
    let ct1 = p[1].content_type().expect("ct");
    assert_eq!(
        (ct1.ctype(), ct1.subtype()),
        ("message", Some("delivery-status"))
    );
    let human = p[0].text_contents().expect("text").to_owned();
    let status = String::from_utf8(p[1].contents().to_vec()).expect("ascii");
    let third_ct = p[2].content_type().expect("ct");
    let third = format!(
        "{}/{}\n{}",
        third_ct.ctype(),
        third_ct.subtype().unwrap_or_default(),
        String::from_utf8_lossy(p[2].contents())
    );
    (human, status, third)
}

fn status_blocks(status: &str) -> Vec<Vec<(String, String)>> {
    status
        .split("\r\n\r\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            b.replace("\r\n ", " ")
                .lines()
                .map(|l| {
                    let (n, v) = l.split_once(':').expect("field");
                    (n.to_owned(), v.trim().to_owned())
                })
                .collect()
        })
        .collect()
}

fn field<'a>(block: &'a [(String, String)], name: &str) -> Option<&'a str> {
    block
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[test]
fn bounce_two_recipients_headers_only() {
    let r = report(
        vec![
            failed("bob@x.example", Some("rfc822;Bob@X.example")),
            failed("carol@y.example", None),
        ],
        Ret::Headers,
    );
    let raw = build(&r).expect("dsn");
    let msg = parse(&raw);
    assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
    assert_eq!(
        msg.from().and_then(|a| a.first()).and_then(|a| a.address()),
        Some("MAILER-DAEMON@mail.example.org")
    );
    let (human, status, third) = check_structure(&raw);

    assert!(human.contains("<bob@x.example>"), "{human}");
    assert!(human.contains("<carol@y.example>"), "{human}");
    assert!(
        human.contains("552 5.2.2 <bob@x.example> Mailbox is full"),
        "{human}"
    );
    assert!(human.contains("Lunch?"), "{human}");

    let blocks = status_blocks(&status);
    assert_eq!(blocks.len(), 3, "{status}");
    let m = &blocks[0];
    assert_eq!(field(m, "Reporting-MTA"), Some("dns; mail.example.org"));
    assert_eq!(field(m, "Original-Envelope-Id"), Some("ENV-42"));
    assert_eq!(
        field(m, "Arrival-Date"),
        Some(Date::new(1_704_103_200).to_rfc822().as_str())
    );

    let b = &blocks[1];
    assert_eq!(
        field(b, "Original-Recipient"),
        Some("rfc822; Bob@X.example")
    );
    assert_eq!(field(b, "Final-Recipient"), Some("rfc822; bob@x.example"));
    assert_eq!(field(b, "Action"), Some("failed"));
    assert_eq!(field(b, "Status"), Some("5.2.2"));
    assert_eq!(field(b, "Remote-MTA"), Some("dns; mx.x.example"));
    assert_eq!(
        field(b, "Diagnostic-Code"),
        Some("smtp; 552 5.2.2 <bob@x.example> Mailbox is full")
    );
    assert!(field(b, "Last-Attempt-Date").is_some());
    assert!(field(b, "Will-Retry-Until").is_none());

    let c = &blocks[2];
    assert_eq!(field(c, "Original-Recipient"), None);
    assert_eq!(field(c, "Final-Recipient"), Some("rfc822; carol@y.example"));
    assert_eq!(field(c, "Action"), Some("failed"));
    assert_eq!(field(c, "Status"), Some("5.2.2"));
    assert_eq!(
        field(c, "Diagnostic-Code"),
        Some("smtp; 552 5.2.2 <carol@y.example> Mailbox is full")
    );

    assert!(third.starts_with("text/rfc822-headers\n"), "{third}");
    assert!(third.contains("Subject: Lunch?"), "{third}");
    assert!(
        third.contains("Message-ID: <orig-123@example.org>"),
        "{third}"
    );
    assert!(!third.contains("SECRET-BODY-MARKER"), "{third}");
    assert!(!third.contains("lunch tomorrow"), "{third}");
}

#[test]
fn ret_full_includes_body() {
    let r = report(vec![failed("bob@x.example", None)], Ret::Full);
    let raw = build(&r).expect("dsn");
    let (human, _, third) = check_structure(&raw);
    assert!(third.starts_with("message/rfc822\n"), "{third}");
    assert!(third.contains("SECRET-BODY-MARKER"), "{third}");
    assert!(human.contains("original message is attached"), "{human}");

    // The embedded message parses as a message.
    let msg = parse(&raw);
    let third_id = msg.part(0).and_then(|p| p.sub_parts()).expect("multipart")[2];
    let inner = msg.part(third_id).and_then(|p| p.message()).expect("inner");
    assert_eq!(inner.subject(), Some("Lunch?"));
}

#[test]
fn oversized_original_falls_back_to_headers() {
    let mut r = report(vec![failed("bob@x.example", None)], Ret::Full);
    r.max_original = 100;
    let raw = build(&r).expect("dsn");
    let (human, _, third) = check_structure(&raw);
    assert!(third.starts_with("text/rfc822-headers\n"), "{third}");
    assert!(third.contains("Subject: Lunch?"), "{third}");
    assert!(!third.contains("SECRET-BODY-MARKER"), "{third}");
    assert!(human.contains("too large"), "{human}");
}

#[test]
fn delay_warning() {
    let until = 1_704_535_200;
    let rcpt = RecipientReport {
        final_recipient: "bob@x.example".into(),
        original_recipient: None,
        action: Action::Delayed,
        status: (4, 4, 1),
        remote_mta: None,
        diagnostic: Some("connect to mx.x.example: Connection timed out".into()),
        last_attempt: Some(1_704_110_400),
        will_retry_until: Some(until),
    };
    let mut r = report(vec![rcpt], Ret::Headers);
    r.envid = None;
    let raw = build(&r).expect("dsn");
    assert_eq!(
        parse(&raw).subject(),
        Some("Delayed Mail (still being retried)")
    );
    let (human, status, _) = check_structure(&raw);
    let blocks = status_blocks(&status);
    assert_eq!(blocks.len(), 2);
    assert_eq!(field(&blocks[0], "Original-Envelope-Id"), None);
    let b = &blocks[1];
    assert_eq!(field(b, "Action"), Some("delayed"));
    assert_eq!(field(b, "Status"), Some("4.4.1"));
    let date = Date::new(until).to_rfc822();
    assert_eq!(field(b, "Will-Retry-Until"), Some(date.as_str()));
    assert!(human.contains("No action is needed"), "{human}");
    assert!(
        human
            .replace("\n    ", " ")
            .contains(&format!("until {date}")),
        "{human}"
    );
}

#[test]
fn success_notice() {
    let rcpt = RecipientReport {
        final_recipient: "bob@x.example".into(),
        original_recipient: None,
        action: Action::Delivered,
        status: (2, 0, 0),
        remote_mta: None,
        diagnostic: None,
        last_attempt: None,
        will_retry_until: None,
    };
    let raw = build(&report(vec![rcpt], Ret::Headers)).expect("dsn");
    assert_eq!(
        parse(&raw).subject(),
        Some("Successful Mail Delivery Report")
    );
    let (_, status, _) = check_structure(&raw);
    assert_eq!(
        field(&status_blocks(&status)[1], "Action"),
        Some("delivered")
    );
}

#[test]
fn null_sender_refused() {
    for to in ["", "<>", "  ", " <> "] {
        let mut r = report(vec![failed("bob@x.example", None)], Ret::Headers);
        r.to = to;
        assert_eq!(build(&r), Err(DsnError::NullSender), "{to:?}");
    }
}

#[test]
fn no_recipients_and_bad_status_refused() {
    assert_eq!(
        build(&report(vec![], Ret::Headers)),
        Err(DsnError::NoRecipients)
    );
    let mut bad = failed("bob@x.example", None);
    bad.status = (3, 1, 1);
    assert_eq!(
        build(&report(vec![bad], Ret::Headers)),
        Err(DsnError::InvalidStatus(3, 1, 1))
    );
}

#[test]
fn crlf_injection_neutralised() {
    let mut rcpt = failed(
        "bob@x.example\r\nBcc: victim@z.example",
        Some("rfc822;a@b\r\nX-Evil: 1"),
    );
    rcpt.diagnostic =
        Some("552-5.2.2 first line\r\nX-Injected: yes\r\n552 5.2.2 second\nline".into());
    rcpt.remote_mta = Some("mx\r\nX-Mta-Injected: yes".into());
    let mut r = report(vec![rcpt], Ret::Headers);
    r.to = "alice@example.org\r\nBcc: victim@z.example";
    r.envid = Some("id\r\nX-Env-Injected: 1");
    let raw = build(&r).expect("dsn");
    let text = String::from_utf8(raw.clone()).expect("utf-8");
    for line in text.split("\r\n") {
        for bad in [
            "X-Injected",
            "X-Evil",
            "Bcc",
            "X-Mta-Injected",
            "X-Env-Injected",
        ] {
            assert!(!line.starts_with(bad), "injected line {line:?}");
        }
    }
    let msg = parse(&raw);
    assert!(msg.header("Bcc").is_none());
    let (_, status, _) = check_structure_loose(&raw);
    let blocks = status_blocks(&status);
    assert_eq!(blocks.len(), 2, "{status}");
    let b = &blocks[1];
    assert_eq!(
        field(b, "Diagnostic-Code"),
        Some("smtp; 552-5.2.2 first line X-Injected: yes 552 5.2.2 second line")
    );
    assert!(!b.iter().any(|(n, _)| n.starts_with("X-")));
}

/// Like `check_structure` without the envelope-recipient assertions.
fn check_structure_loose(raw: &[u8]) -> (String, String, String) {
    let msg = parse(raw);
    let subs = msg.part(0).and_then(|p| p.sub_parts()).expect("multipart");
    assert_eq!(subs.len(), 3);
    let get = |i: usize| {
        String::from_utf8_lossy(msg.part(subs[i]).expect("part").contents()).into_owned()
    };
    (get(0), get(1), get(2))
}

#[test]
fn non_ascii_is_kept_seven_bit_in_report() {
    let mut rcpt = failed("jörg@exämple.de", None);
    rcpt.diagnostic = Some("550 5.1.1 Empfänger unbekannt".into());
    let raw = build(&report(vec![rcpt], Ret::Headers)).expect("dsn");
    let (human, status, _) = check_structure(&raw);
    assert!(status.is_ascii(), "{status}");
    let b = &status_blocks(&status)[1];
    assert_eq!(
        field(b, "Final-Recipient"),
        Some("utf-8; j\\x{F6}rg@ex\\x{E4}mple.de")
    );
    assert!(human.contains("Empfänger unbekannt"), "{human}");
    assert!(human.contains("<jörg@exämple.de>"), "{human}");
}

#[test]
fn header_section_and_normalisation() {
    assert_eq!(header_section(b"A: b\r\n\r\nbody"), b"A: b\r\n");
    assert_eq!(header_section(b"A: b\nC: d\n\nbody"), b"A: b\nC: d\n");
    assert_eq!(header_section(b"A: b\r\n"), b"A: b\r\n");
    assert_eq!(header_section(b"\r\nbody"), b"");
    assert_eq!(normalize_crlf(b"a\nb\rc\r\nd"), b"a\r\nb\r\nc\r\nd\r\n");
}

#[test]
fn long_diagnostic_is_folded() {
    let mut rcpt = failed("bob@x.example", None);
    let long = format!("550 5.7.1 {}", "blocked ".repeat(40));
    rcpt.diagnostic = Some(long.clone());
    let raw = build(&report(vec![rcpt], Ret::Headers)).expect("dsn");
    let (_, status, _) = check_structure(&raw);
    assert!(status.lines().all(|l| l.len() <= 80), "{status}");
    let b = &status_blocks(&status)[1];
    assert_eq!(
        field(b, "Diagnostic-Code"),
        Some(format!("smtp; {}", long.trim()).as_str())
    );
}

#[test]
#[ignore = "prints a sample"]
fn print_sample() {
    let raw = build(&report(
        vec![failed("bob@x.example", Some("rfc822;bob@x.example"))],
        Ret::Headers,
    ))
    .expect("dsn");
    println!("{}", String::from_utf8_lossy(&raw));
}
