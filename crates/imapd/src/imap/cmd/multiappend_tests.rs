//! MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) and CREATE-SPECIAL-USE (RFC 6154 §3), through
//! the whole input path (imap-next framing, `ext.rs`) with `fuzzing::run_imap`.

use std::fs;
use std::path::Path;

use postern_maildir::Maildir;

use super::parse;
use crate::imap::fuzzing::run_imap;
use crate::imap::session::{Session, SessionConfig, User};

fn setup() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    (dir, md)
}

fn run(md: &Maildir, input: &[u8]) -> String {
    String::from_utf8_lossy(&run_imap(input, Some(md), 1 << 16)).into_owned()
}

/// `{n}\r\n` + data, as a client sends a synchronising literal.
fn lit(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{{{}}}\r\n", data.len()).into_bytes();
    v.extend_from_slice(data);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn uidlist_records(dir: &Path) -> usize {
    fs::read_to_string(dir.join("dovecot-uidlist"))
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count()
}

/// The tagged line of `tag`.
fn tagged<'a>(out: &'a str, tag: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{tag} ")))
        .unwrap_or_else(|| panic!("no {tag} line in {out}"))
}

fn uidvalidity(md: &Maildir, name: &str) -> u32 {
    md.open_mailbox(name).unwrap().uid_validity()
}

const M1: &[u8] = b"Date: Mon, 7 Feb 1994 21:52:25 -0800 (PST)\r\nFrom: Fred Foobar <foobar@Blurdybloop.example.COM>\r\nSubject: afternoon meeting\r\nTo: mooch@owatagu.example.net\r\nMessage-Id: <B27397-0100000@Blurdybloop.example.COM>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\nHello Joe, do you think we can meet at 3:30 tomorrow?\r\n";
const M2: &[u8] = b"Date: Mon, 7 Feb 1994 22:43:04 -0800 (PST)\r\nFrom: Joe Mooch <mooch@OWaTaGu.example.net>\r\nSubject: Re: afternoon meeting\r\nTo: foobar@blurdybloop.example.com\r\nMessage-Id: <a0434793874930@OWaTaGu.example.net>\r\nMIME-Version: 1.0\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n3:30 is fine with me.\r\n";

/// RFC 3502 §6.3.11's example: two messages, each with its flags and date, in one APPEND;
/// with UIDPLUS (RFC 4315 §3) the tagged OK has `[APPENDUID uidvalidity uid-set]`.
#[test]
fn multiappend_appends_every_message_with_its_flags_and_date() {
    let (_d, md) = setup();
    md.create_folder("saved-messages").unwrap();
    let v = uidvalidity(&md, "saved-messages");
    let input = cat(&[
        b"A003 APPEND saved-messages (\\Seen) ",
        &lit(M1),
        b" (\\Seen $Work) \" 7-Feb-1994 22:43:04 -0800\" ",
        &lit(M2),
        b"\r\nA004 SELECT saved-messages\r\nA005 FETCH 1:* (FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])\r\n",
    ]);
    let out = run(&md, &input);
    assert_eq!(out.matches("\r\n+ ").count(), 2, "{out}");
    assert_eq!(
        tagged(&out, "A003"),
        format!("A003 OK [APPENDUID {v} 1:2] APPEND completed")
    );
    assert!(out.contains("* 2 EXISTS"), "{out}");
    assert!(out.contains("FLAGS (\\Seen \\Recent)"), "{out}");
    assert!(out.contains("FLAGS (\\Seen $Work \\Recent)"), "{out}");
    assert!(
        out.contains("INTERNALDATE \"08-Feb-1994 06:43:04 +0000\""),
        "{out}"
    );
    assert!(out.contains(&format!("RFC822.SIZE {}", M1.len())), "{out}");
    assert!(out.contains("Subject: Re: afternoon meeting"), "{out}");
    assert!(tagged(&out, "A005").contains("OK"), "{out}");
    assert_eq!(uidlist_records(&md.root().join(".saved-messages")), 2);
}

/// Non-synchronising literals (LITERAL+) and literal8 (RFC 3516) per message; the selected
/// mailbox learns of them at the command's end (EXISTS before the tagged OK).
#[test]
fn multiappend_to_the_selected_mailbox_with_literal_plus_and_literal8() {
    let (_d, md) = setup();
    let input = cat(&[
        b"s SELECT INBOX\r\na APPEND INBOX {4+}\r\nm1\r\n ~{4+}\r\nm2\r\n () {4}\r\nm3\r\n\r\nf FETCH 1:* BODY.PEEK[]\r\n",
    ]);
    let out = run(&md, &input);
    let v = uidvalidity(&md, "INBOX");
    assert_eq!(
        tagged(&out, "a"),
        format!("a OK [APPENDUID {v} 1:3] APPEND completed"),
        "{out}"
    );
    let ok = out.find("a OK").unwrap();
    assert!(out[..ok].contains("* 3 EXISTS"), "{out}");
    assert!(out.contains("m3\r\n"), "{out}");
}

/// RFC 3502, Introduction: "A MULTIAPPEND APPEND operation is atomic; either all messages
/// are successfully appended, or no messages are appended". A MULTIAPPEND that fails on
/// its third message (binary content that cannot be stored as it is, RFC 3516 §4.3) leaves
/// no message, no file in `tmp/` or `cur/`, and no uidlist record; so does one whose third
/// message is a CATENATE over APPENDLIMIT, and one whose third message has a URL that does
/// not resolve.
#[test]
fn multiappend_failing_on_its_third_message_appends_none() {
    let (_d, md) = setup();
    let big = vec![b'x'; (1 << 19) + 1];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (cat(&[b"~", &lit(b"a\nb\r\n")]), "NO [UNKNOWN-CTE]"),
        (
            cat(&[b"CATENATE (TEXT ", &lit(&big), b" TEXT ", &lit(&big), b")"]),
            "NO [TOOBIG]",
        ),
        (
            cat(&[b"CATENATE (TEXT ", &lit(b"x"), b" URL \"/INBOX/;UID=999\")"]),
            "NO [BADURL /INBOX/;UID=999]",
        ),
    ];
    for (third, want) in cases {
        let input = cat(&[
            b"a APPEND INBOX ",
            &lit(M1),
            b" (\\Flagged) ",
            &lit(M2),
            b" ",
            &third,
            b" ",
            &lit(M1),
            b"\r\n",
        ]);
        let out = run(&md, &input);
        assert!(tagged(&out, "a").starts_with(&format!("a {want}")), "{out}");
        let root = md.root();
        assert!(names(&root.join("cur")).is_empty(), "{want}");
        assert!(names(&root.join("new")).is_empty(), "{want}");
        assert!(names(&root.join("tmp")).is_empty(), "{want}");
        assert_eq!(uidlist_records(root), 0, "{want}");
        let out = run(&md, b"s STATUS INBOX (MESSAGES UIDNEXT)\r\n");
        assert!(out.contains("(MESSAGES 0 UIDNEXT 1)"), "{out}");
    }
}

/// RFC 3502 §6.3.11: a destination that does not exist is `NO [TRYCREATE]` and is not
/// created; a syntax error anywhere is BAD and nothing is stored.
#[test]
fn multiappend_trycreate_and_syntax_errors() {
    let (_d, md) = setup();
    let input = cat(&[
        b"a APPEND Nowhere ",
        &lit(b"x\r\n"),
        b" ",
        &lit(b"y\r\n"),
        b"\r\n",
    ]);
    let out = run(&md, &input);
    assert!(tagged(&out, "a").starts_with("a NO [TRYCREATE]"), "{out}");
    assert!(!md.folder_exists("Nowhere").unwrap());
    for (i, bad) in [
        // Two literals without a space.
        cat(&[b"b APPEND INBOX ", &lit(b"x"), &lit(b"y"), b"\r\n"]),
        // \Recent may be ignored, an unknown system flag may not.
        cat(&[
            b"b APPEND INBOX ",
            &lit(b"x"),
            b" (\\Bogus) ",
            &lit(b"y"),
            b"\r\n",
        ]),
        // A date that is no date-time.
        cat(&[
            b"b APPEND INBOX ",
            &lit(b"x"),
            b" \"yesterday\" ",
            &lit(b"y"),
            b"\r\n",
        ]),
        // Flags after the date.
        cat(&[
            b"b APPEND INBOX ",
            &lit(b"x"),
            b" \"07-Feb-1994 22:43:04 -0800\" (\\Seen) ",
            &lit(b"y"),
            b"\r\n",
        ]),
        // Trailing garbage.
        cat(&[
            b"b APPEND INBOX ",
            &lit(b"x"),
            b" ",
            &lit(b"y"),
            b" junk\r\n",
        ]),
    ]
    .into_iter()
    .enumerate()
    {
        let out = run(&md, &bad);
        assert!(tagged(&out, "b").starts_with("b BAD"), "case {i}: {out}");
    }
    assert_eq!(uidlist_records(md.root()), 0);
    assert!(names(&md.root().join("tmp")).is_empty());
}

/// Hostile input: 1,000 one-octet literals are one APPEND of 1,000 messages (one lock, one
/// uidlist write); 1,001 are refused as BAD before anything is written. Parsing is linear.
#[test]
fn a_thousand_tiny_literals() {
    let (_d, md) = setup();
    let mut input = b"a APPEND INBOX".to_vec();
    for _ in 0..super::MAX_MESSAGES {
        input.extend_from_slice(b" {1+}\r\nx");
    }
    input.extend_from_slice(b"\r\n");
    let t = std::time::Instant::now();
    let out = run(&md, &input);
    let v = uidvalidity(&md, "INBOX");
    assert_eq!(
        tagged(&out, "a"),
        format!("a OK [APPENDUID {v} 1:1000] APPEND completed")
    );
    assert_eq!(uidlist_records(md.root()), 1000);
    eprintln!("1000 messages appended in {:?}", t.elapsed());
    let mut more = b"b APPEND INBOX".to_vec();
    for _ in 0..=super::MAX_MESSAGES {
        more.extend_from_slice(b" {1+}\r\nx");
    }
    more.extend_from_slice(b"\r\n");
    let out = run(&md, &more);
    assert!(tagged(&out, "b").starts_with("b BAD"), "{out}");
    assert_eq!(uidlist_records(md.root()), 1000);
    // The parser alone on 200,000 literals: linear (well under a second even in debug).
    let mut huge = b"c APPEND INBOX".to_vec();
    for _ in 0..200_000 {
        huge.extend_from_slice(b" {1+}\r\nx");
    }
    huge.extend_from_slice(b"\r\n");
    let t = std::time::Instant::now();
    assert!(matches!(parse(&huge), Err(Some(_))));
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
}

/// The quota counts all messages of one APPEND together (`NO [OVERQUOTA]`, nothing
/// stored), though each alone would fit.
#[test]
fn quota_counts_every_message() {
    let (_d, md) = setup();
    let mut s = Session::new(
        SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: false,
        },
        true,
        false,
    );
    s.login(User {
        name: "q@example.test".into(),
        maildir: md.clone(),
        quota_bytes: Some(1000),
    });
    let m = vec![b'x'; 600];
    let raw = cat(&[b"a APPEND INBOX ", &lit(&m), b" ", &lit(&m), b"\r\n"]);
    let cmd = parse(&raw).unwrap();
    let mut out = Vec::new();
    let t = s.multiappend(&cmd, &raw, &mut out);
    t.write(&mut out, "a");
    assert!(String::from_utf8_lossy(&out).starts_with("a NO [OVERQUOTA]"));
    // Also when the sizes are known only once CATENATE built them.
    let raw = cat(&[
        b"a APPEND INBOX CATENATE (TEXT ",
        &lit(&m),
        b") CATENATE (TEXT ",
        &lit(&m),
        b")\r\n",
    ]);
    let cmd = parse(&raw).unwrap();
    let mut out = Vec::new();
    s.multiappend(&cmd, &raw, &mut out).write(&mut out, "a");
    assert!(String::from_utf8_lossy(&out).starts_with("a NO [OVERQUOTA]"));
    assert_eq!(uidlist_records(md.root()), 0);
    assert!(names(&md.root().join("tmp")).is_empty());
    let raw = cat(&[b"a APPEND INBOX ", &lit(&m), b"\r\n"]);
    let mut out = Vec::new();
    s.multiappend(&parse(&raw).unwrap(), &raw, &mut out)
        .write(&mut out, "a");
    assert!(String::from_utf8_lossy(&out).starts_with("a OK [APPENDUID"));
}

const MIXED: &[u8] = b"From: a@example.test\r\nSubject: with attachment\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nThe text part.\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b1--\r\n";

fn with_source(md: &Maildir) -> u32 {
    let mut inbox = md.open_mailbox("INBOX").unwrap();
    inbox
        .append(MIXED, &postern_maildir::Flags::default(), None)
        .unwrap();
    inbox.uid_validity()
}

/// RFC 4469 §3 and Appendix A example 1: a draft rebuilt from the original's header and
/// first part (URLs with UIDVALIDITY and `section=` in any case) and new text. The octets
/// are exactly those FETCH BODY[section] returns; the source is not marked \Seen.
#[test]
fn catenate_builds_a_message_from_urls_and_text() {
    let (_d, md) = setup();
    let v = with_source(&md);
    let sep = b"\r\n--b2\r\n";
    let input = cat(&[
        format!("a APPEND Drafts (\\Seen \\Draft $MDNSent) CATENATE (URL \"/INBOX;UIDVALIDITY={v}/;UID=1/;section=HEADER\" TEXT ").as_bytes(),
        &lit(sep),
        format!(" URL \"/INBOX;UIDVALIDITY={v}/;UID=1/;SECTION=1.MIME\" URL \"/INBOX;UIDVALIDITY={v}/;UID=1/;Section=1\" TEXT ").as_bytes(),
        &lit(b"\r\n--b2--\r\n"),
        b")\r\ns SELECT Drafts\r\nf FETCH 1 (BODY.PEEK[] FLAGS)\r\ng EXAMINE INBOX\r\nh FETCH 1 FLAGS\r\n",
    ]);
    let out = run(&md, &input);
    let dv = uidvalidity(&md, "Drafts");
    assert_eq!(
        tagged(&out, "a"),
        format!("a OK [APPENDUID {dv} 1] APPEND completed"),
        "{out}"
    );
    let header_end = MIXED.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let expected = cat(&[
        &MIXED[..header_end],
        sep,
        b"Content-Type: text/plain\r\n\r\n",
        b"The text part.",
        b"\r\n--b2--\r\n",
    ]);
    let want = format!(
        "BODY[] {{{}}}\r\n{}",
        expected.len(),
        String::from_utf8_lossy(&expected)
    );
    assert!(out.contains(&want), "{out}\nwant {want}");
    assert!(
        out.contains("FLAGS (\\Seen \\Draft $MDNSent \\Recent)"),
        "{out}"
    );
    // The source stays unseen.
    assert!(out.contains("* 1 FETCH (FLAGS (\\Recent))"), "{out}");
}

/// RFC 5092 relative URLs against the selected mailbox (`;UID=n`, RFC 4469 §3: "When in the
/// selected state, the base URL is … the currently selected mailbox"), PARTIAL, whole
/// messages; MULTIAPPEND and CATENATE in one command; literal8 with NULs in TEXT.
#[test]
fn catenate_relative_urls_partial_and_multiappend() {
    let (_d, md) = setup();
    with_source(&md);
    let input = cat(&[
        b"s SELECT INBOX\r\n",
        b"a APPEND INBOX CATENATE (URL \";UID=1/;SECTION=1/;PARTIAL=4.4\" TEXT ~",
        &lit(b"\0\x01\r\n"),
        b") (\\Answered) CATENATE (URL \"/inbox/;UID=1\") ",
        &lit(b"plain\r\n"),
        b"\r\nf FETCH 2:4 (BINARY.PEEK[] FLAGS)\r\n",
    ]);
    let out = run(&md, &input);
    let v = uidvalidity(&md, "INBOX");
    assert_eq!(
        tagged(&out, "a"),
        format!("a OK [APPENDUID {v} 2:4] APPEND completed"),
        "{out}"
    );
    assert!(out.contains("BINARY[] ~{8}\r\ntext\0\x01\r\n"), "{out}");
    assert!(
        out.contains(&format!("BINARY[] {{{}}}", MIXED.len())),
        "{out}"
    );
    assert!(out.contains("FLAGS (\\Answered \\Recent)"), "{out}");
}

/// RFC 4469 §4.1: BADURL carries the first URL that failed, and nothing is appended: a
/// `../` path, a nonexistent UID, a UIDVALIDITY that does not match, another user, another
/// server, a section that does not exist, a relative URL without a selected mailbox, a
/// mailbox that does not exist.
#[test]
fn catenate_bad_urls() {
    let (_d, md) = setup();
    let v = with_source(&md);
    for url in [
        "/../INBOX/;UID=1".to_owned(),
        "/INBOX/../../..;UIDVALIDITY=1/;UID=1".to_owned(),
        "/INBOX/;UID=2".to_owned(),
        format!("/INBOX;UIDVALIDITY={}/;UID=1", v.wrapping_add(1)),
        "imap://other@mx.example.test/INBOX/;UID=1".to_owned(),
        "imap://fuzz%40example.test@elsewhere.example/INBOX/;UID=1".to_owned(),
        "/INBOX/;UID=1/;SECTION=7".to_owned(),
        "/INBOX/;UID=1/;SECTION=1.2.3.4".to_owned(),
        ";UID=1".to_owned(),
        "/NoSuchBox/;UID=1".to_owned(),
        "/%2Fetc%2Fpasswd/;UID=1".to_owned(),
    ] {
        let input = format!(
            "a APPEND Drafts CATENATE (TEXT {{2}}\r\nok URL \"/INBOX/;UID=1\" URL \"{url}\" URL \"/INBOX/;UID=3\")\r\n"
        );
        let out = run(&md, input.as_bytes());
        assert_eq!(
            tagged(&out, "a"),
            format!("a NO [BADURL {url}] Invalid URL"),
            "{out}"
        );
        assert_eq!(uidlist_records(&md.root().join(".Drafts")), 0);
    }
    // The own user on this server, absolute, is fine.
    let out = run(
        &md,
        b"a APPEND Drafts CATENATE (URL \"imap://fuzz%40example.test@mx.example.test/INBOX/;UID=1/;SECTION=1\")\r\n",
    );
    assert!(tagged(&out, "a").starts_with("a OK [APPENDUID"), "{out}");
}

/// Hostile CATENATE syntax is BAD with nothing stored: nested lists, an empty list, parts
/// other than TEXT and URL, NUL in a plain literal (RFC 3501 §9 CHAR8), a URL as a literal8.
#[test]
fn catenate_bad_syntax() {
    let (_d, md) = setup();
    for bad in [
        &b"a APPEND INBOX CATENATE (TEXT {1}\r\nx (URL \"/INBOX/;UID=1\"))\r\n"[..],
        b"a APPEND INBOX CATENATE ((TEXT {1}\r\nx))\r\n",
        b"a APPEND INBOX CATENATE ()\r\n",
        b"a APPEND INBOX CATENATE (FILE \"/etc/passwd\")\r\n",
        b"a APPEND INBOX CATENATE (TEXT {3}\r\na\0b)\r\n",
        b"a APPEND INBOX CATENATE (URL ~{13}\r\n/INBOX/;UID=1)\r\n",
        b"a APPEND INBOX CATENATE (TEXT {1}\r\nx\r\n",
    ] {
        let out = run(&md, bad);
        assert!(
            tagged(&out, "a").starts_with("a BAD"),
            "{}: {out}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(uidlist_records(md.root()), 0);
}

/// Hostile CATENATE work is bounded: URLs alternating between two large messages re-read
/// them until the read budget (4 × APPENDLIMIT) is spent, URLs to many mailboxes stop at 32
/// opens; both `NO [LIMIT]`, nothing appended. A NUL in a plain message literal of a
/// MULTIAPPEND is BAD (RFC 3501 §9: CHAR8), as in a TEXT part.
#[test]
fn catenate_work_is_bounded() {
    let (_d, md) = setup();
    let mut inbox = md.open_mailbox("INBOX").unwrap();
    let big = cat(&[b"Subject: big\r\n\r\n", &vec![b'b'; 300 * 1024], b"\r\n"]);
    for _ in 0..2 {
        inbox
            .append(&big, &postern_maildir::Flags::default(), None)
            .unwrap();
    }
    let mut input = b"a APPEND INBOX CATENATE (".to_vec();
    for i in 0..40 {
        input.extend_from_slice(
            format!("URL \"/INBOX/;UID={}/;PARTIAL=0.1\" ", 1 + i % 2).as_bytes(),
        );
    }
    input.extend_from_slice(b"TEXT {1}\r\nx)\r\n");
    let out = run(&md, &input);
    assert!(tagged(&out, "a").starts_with("a NO [LIMIT]"), "{out}");
    let mut input = b"b APPEND INBOX CATENATE (".to_vec();
    for i in 0..40 {
        md.create_folder(&format!("F{i}")).unwrap();
        let mut f = md.open_mailbox(&format!("F{i}")).unwrap();
        f.append(
            b"Subject: s\r\n\r\nx\r\n",
            &postern_maildir::Flags::default(),
            None,
        )
        .unwrap();
        input.extend_from_slice(format!("URL \"/F{i}/;UID=1\" ").as_bytes());
    }
    input.extend_from_slice(b"TEXT {1}\r\nx)\r\n");
    let out = run(&md, &input);
    assert!(tagged(&out, "b").starts_with("b NO [LIMIT]"), "{out}");
    // 32 mailboxes are fine.
    let mut input = b"c APPEND INBOX CATENATE (".to_vec();
    for i in 0..32 {
        input.extend_from_slice(format!("URL \"/F{i}/;UID=1/;SECTION=TEXT\" ").as_bytes());
    }
    input.extend_from_slice(b"TEXT {1}\r\nx)\r\n");
    let out = run(&md, &input);
    assert!(tagged(&out, "c").starts_with("c OK [APPENDUID"), "{out}");
    let out = run(&md, b"d APPEND INBOX {1}\r\nx {3}\r\na\0b\r\n");
    assert!(tagged(&out, "d").starts_with("d BAD"), "{out}");
    let out = run(&md, b"s STATUS INBOX (MESSAGES)\r\n");
    assert!(out.contains("(MESSAGES 3)"), "{out}");
}

/// A relative URL to a message another session appended after this session's view was last
/// synced still resolves (the mailbox is read as it is now, RFC 4469 §3: the URL names a
/// message "on the current IMAP server").
#[test]
fn catenate_sees_messages_newer_than_the_view() {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::IntoStatic;
    let (_d, md) = setup();
    let mut s = Session::new(
        SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: false,
        },
        true,
        false,
    );
    s.login(User {
        name: "v@example.test".into(),
        maildir: md.clone(),
        quota_bytes: None,
    });
    let (_, sel) = CommandCodec::default()
        .decode(b"s SELECT INBOX\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.handle(sel.into_static(), &mut out);
    // Another session appends UID 1 now.
    with_source(&md);
    let raw = b"a APPEND Drafts CATENATE (URL \";UID=1/;SECTION=1\")\r\n";
    let cmd = parse(raw).unwrap();
    let mut out = Vec::new();
    s.multiappend(&cmd, raw, &mut out).write(&mut out, "a");
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("a OK [APPENDUID"), "{out}");
    let mut drafts = md.open_mailbox("Drafts").unwrap();
    drafts.sync().unwrap();
    assert_eq!(drafts.read(1).unwrap(), b"The text part.");
}

/// Only the user's own mailboxes: with another user's mailbox selected (a shared mailbox,
/// whose rights this code does not check), a MULTIAPPEND naming it does not write into it
/// and a relative URL does not read from it; both are looked up in the user's own Maildir.
#[test]
fn a_foreign_selected_mailbox_is_neither_written_nor_read() {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_codec::imap_types::IntoStatic;
    let (_d, md) = setup();
    let (_d2, bob) = setup();
    with_source(&bob);
    let mut s = Session::new(
        SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: false,
        },
        true,
        false,
    );
    s.login(User {
        name: "v@example.test".into(),
        maildir: md.clone(),
        quota_bytes: None,
    });
    let (_, sel) = CommandCodec::default()
        .decode(b"s SELECT INBOX\r\n")
        .unwrap();
    let mut out = Vec::new();
    s.handle(sel.into_static(), &mut out);
    // As shared.rs selects another user's mailbox: its handle, under a name of ours.
    let sel = s.state.sel_mut().unwrap();
    sel.mbox = bob.open_mailbox("INBOX").unwrap();
    sel.name = "Elsewhere".into();
    for (raw, want) in [
        (
            &b"a APPEND Elsewhere {3}\r\nx\r\n {3}\r\ny\r\n\r\n"[..],
            "a NO [TRYCREATE]",
        ),
        (
            b"a APPEND Drafts CATENATE (URL \";UID=1\")\r\n",
            "a NO [BADURL ;UID=1]",
        ),
    ] {
        let cmd = parse(raw).unwrap();
        let mut out = Vec::new();
        s.multiappend(&cmd, raw, &mut out).write(&mut out, "a");
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with(want), "{out}");
    }
    let mut b = bob.open_mailbox("INBOX").unwrap();
    b.sync().unwrap();
    assert_eq!(b.messages().len(), 1);
    assert_eq!(uidlist_records(md.root()), 0);
}

/// The capabilities are advertised once logged in.
#[test]
fn capabilities_are_advertised() {
    let (_d, md) = setup();
    let out = run(&md, b"c CAPABILITY\r\n");
    for cap in [" MULTIAPPEND", " CATENATE", " CREATE-SPECIAL-USE"] {
        assert!(out.contains(cap), "{out}");
    }
}

/// RFC 6154 §3: CREATE with USE gives the mailbox the attribute, which LIST then shows
/// (persistently: it follows RENAME and shows in METADATA); an attribute the server does not
/// support, one another mailbox holds, or several are `NO [USEATTR]` and nothing is created.
#[test]
fn create_special_use() {
    let (_d, md) = setup();
    let out = run(
        &md,
        b"a CREATE Old (USE (\\Archive))\r\n\
          b DELETE Archive\r\n\
          c CREATE Old (USE (\\Archive))\r\n\
          d CREATE V (USE (\\All))\r\n\
          e CREATE W (USE (\\Sent \\Drafts))\r\n\
          f CREATE X (USE (\\Bogus))\r\n\
          g CREATE Y (USE ())\r\n\
          h CREATE Old2 (USE (\\Archive))\r\n\
          i CREATE Old (USE (\\Junk))\r\n\
          j LIST \"\" *\r\n\
          k RENAME Old Older\r\n\
          l LIST (SPECIAL-USE) \"\" *\r\n\
          m GETMETADATA Older /private/specialuse\r\n\
          n CREATE P/Q (USE (\\Archive))\r\n\
          o CREATE Z (FOO (\\Archive))\r\n\
          p DELETE Junk\r\n\
          q CREATE Deep/Box (USE (\\Junk))\r\n\
          r LIST \"\" Deep/*\r\n",
    );
    // A nested mailbox shows its attribute too.
    assert!(tagged(&out, "q").starts_with("q OK"), "{out}");
    assert!(
        out.contains("* LIST (\\HasNoChildren \\Junk) \"/\" \"Deep/Box\"\r\n"),
        "{out}"
    );
    assert!(tagged(&out, "a").starts_with("a NO [USEATTR]"), "{out}");
    assert!(tagged(&out, "c").starts_with("c OK"), "{out}");
    assert!(tagged(&out, "d").starts_with("d NO [USEATTR]"), "{out}");
    assert!(tagged(&out, "e").starts_with("e NO [USEATTR]"), "{out}");
    assert!(tagged(&out, "f").starts_with("f NO [USEATTR]"), "{out}");
    assert!(tagged(&out, "g").starts_with("g OK"), "{out}");
    assert!(tagged(&out, "h").starts_with("h NO [USEATTR]"), "{out}");
    assert!(
        tagged(&out, "i").starts_with("i NO [ALREADYEXISTS]"),
        "{out}"
    );
    for n in ["V", "W", "X", "Old2"] {
        assert!(!md.folder_exists(n).unwrap(), "{n}");
    }
    assert!(
        out.contains("* LIST (\\HasNoChildren \\Archive) \"/\" \"Old\"\r\n"),
        "{out}"
    );
    assert!(
        out.contains("* LIST (\\HasNoChildren) \"/\" \"Y\"\r\n"),
        "{out}"
    );
    assert!(
        out.contains("* LIST (\\HasNoChildren \\Archive) \"/\" \"Older\"\r\n"),
        "{out}"
    );
    assert!(
        out.contains("* METADATA \"Older\" (/private/specialuse \"\\\\Archive\")"),
        "{out}"
    );
    assert!(tagged(&out, "n").starts_with("n NO [USEATTR]"), "{out}");
    assert!(tagged(&out, "o").starts_with("o BAD"), "{out}");
    // Persistent: a new session sees it.
    let out = run(&md, b"a LIST (SPECIAL-USE) \"\" *\r\n");
    assert!(out.contains("\\Archive) \"/\" \"Older\"\r\n"), "{out}");
    assert!(!out.contains("\"/\" \"Archive\"\r\n"), "{out}");
}
