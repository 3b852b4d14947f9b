//! The cost of one FETCH of one message: its MIME part tree is parsed once whatever the
//! number of items, repeated items are answered once, and the output of one message is
//! bounded (`fetch.rs`).

use postern_imap_message as msg;
use postern_maildir::{Flags, Maildir};

/// A multipart/mixed message: a text part, a base64 part and a message/rfc822 part.
fn message() -> Vec<u8> {
    b"From: a@example.test\r\nTo: b@example.test\r\nSubject: parts\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n\
Content-Type: text/plain\r\n\r\nhello one\r\n--XX\r\nContent-Type: application/octet-stream\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gdHdv\r\n--XX\r\nContent-Type: message/rfc822\r\n\r\n\
From: c@example.test\r\nSubject: inner\r\n\r\ninner body\r\n--XX--\r\n"
        .to_vec()
}

fn setup(m: &[u8]) -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    md.deliver(None, m, &Flags::default()).unwrap();
    (dir, md)
}

fn run(md: &Maildir, input: &[u8]) -> Vec<u8> {
    crate::imap::fuzzing::run_imap(input, Some(md), 1 << 16)
}

/// RFC 9051 §6.4.5 lets a FETCH name any number of items; a command of 64 KiB holds about
/// 5,000 `BODY.PEEK[1]`. Each section item used to parse the whole message again (2,000
/// items on a 900 KiB message: 0.84 s), so one command cost items × message size. Now the
/// part tree of a message is parsed at most once per FETCH, and each item is answered once
/// (RFC 9051 §7.5.2 `msg-att`: a list of data items and values; a repeated item names the
/// same value; Dovecot likewise answers a repeated UID or FLAGS once).
#[test]
fn many_section_items_parse_the_message_once() {
    let (_d, md) = setup(&message());
    let mut items = String::new();
    for _ in 0..300 {
        items.push_str("BODY.PEEK[1] BODY.PEEK[2.MIME] BINARY.PEEK[2] ");
    }
    items.push_str(
        "BINARY.SIZE[2] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.HEADER.FIELDS (SUBJECT)] \
         BODY.PEEK[1]<0.5> BODY.PEEK[2] BODY.PEEK[3] UID UID FLAGS",
    );
    let input = format!("a SELECT INBOX\r\nb UID FETCH 1 ({items})\r\n");
    let before = msg::parse_count();
    let out = run(&md, input.as_bytes());
    let parses = msg::parse_count() - before;
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("b OK"), "{text}");
    assert!(parses <= 1, "{parses} parses for one message");
    // Each item answered, once, with the right data.
    let fetch = text
        .lines()
        .find(|l| l.starts_with("* 1 FETCH"))
        .map(|_| text.split("* 1 FETCH").nth(1).unwrap_or_default())
        .unwrap_or_default();
    for (item, n) in [
        ("BODY[1] {9}\r\nhello one", 1),
        ("BODY[2.MIME] {", 1),
        ("BINARY[2] {9}\r\nhello two", 1),
        ("BINARY.SIZE[2] 9", 1),
        ("BODY[3.HEADER] {", 1),
        ("BODY[3.TEXT] {10}\r\ninner body ", 1),
        (
            "BODY[3.HEADER.FIELDS (SUBJECT)] {18}\r\nSubject: inner\r\n\r\n",
            1,
        ),
        ("BODY[1]<0> {5}\r\nhello", 1),
        ("BODY[2] {12}\r\naGVsbG8gdHdv ", 1),
        ("UID 1", 1),
        ("FLAGS (", 1),
    ] {
        assert_eq!(fetch.matches(item).count(), n, "{item:?} in {fetch}");
    }
}

/// The output of one message's FETCH is bounded: it is built in memory before it is written
/// (the chunked `Flow::More` output yields between messages only), so `BODY.PEEK[]<k.n>`
/// repeated with distinct origins over a large message (5,000 × a 50 MiB message would be
/// 250 GB) would exhaust memory. Past 4 × the message size + 1 MiB the message is not
/// answered and the tagged result is `NO [LIMIT]` (RFC 5530 §3: LIMIT, "the operation ran
/// into a limit the server imposes"); the command's other messages are answered, and a
/// usual set of items is not affected.
#[test]
fn one_message_fetch_output_is_bounded() {
    let mut m = b"From: a@example.test\r\nSubject: big\r\n\r\n".to_vec();
    while m.len() < 100_000 {
        m.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    let (_d, md) = setup(&m);
    md.deliver(
        None,
        b"From: a@example.test\r\nSubject: small\r\n\r\nsmall\r\n",
        &Flags::default(),
    )
    .unwrap();
    let items: Vec<String> = (0..20)
        .map(|k| format!("BODY.PEEK[]<{k}.100000>"))
        .collect();
    let input = format!("a SELECT INBOX\r\nb FETCH 1:2 ({})\r\n", items.join(" "));
    let out = run(&md, input.as_bytes());
    let text = String::from_utf8_lossy(&out);
    assert!(out.len() < 600_000, "{} octets of output", out.len());
    assert!(
        !text.contains("* 1 FETCH"),
        "{}",
        &text[..text.len().min(2000)]
    );
    assert!(text.contains("* 2 FETCH"), "{text}");
    assert!(text.contains("b NO [LIMIT]"), "{text}");
    // A usual FETCH of the same large message is answered in full.
    let out = run(
        &md,
        b"a SELECT INBOX\r\nb FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] RFC822.SIZE BODYSTRUCTURE ENVELOPE)\r\n",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("b OK"),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    assert!(out.len() > 2 * 100_000);
}
