//! Hostile input to the extension parsers of [`super`] (`ext.rs`): what a stranger with a
//! login can send in one command, through the driver's path (`fuzzing::run_imap`: imap-next
//! framing, imap-codec, then the parsers of `ext::PARSERS`).

use postern_maildir::{Flags, Maildir};

fn setup() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    for i in 1..=3 {
        let m = format!("From: a@example.test\r\nSubject: m{i}\r\n\r\nbody {i}\r\n");
        md.deliver(None, m.as_bytes(), &Flags::default()).unwrap();
    }
    (dir, md)
}

fn run(md: &Maildir, input: &[u8]) -> String {
    String::from_utf8_lossy(&crate::imap::fuzzing::run_imap(input, Some(md), 1 << 16)).into_owned()
}

/// RFC 9051 §9: `tag = 1*<any ASTRING-CHAR except "+">`, and §2.2.1: the server's tagged
/// response carries the client's tag. A command whose "tag" is no tag — one holding a
/// literal (`a{5}\r\nxxxxx SEARCH …`, so a CRLF the server would echo and a client would
/// read as a line of its own), `+` (echoed as `+ NO …`, a continuation request) or `*` (an
/// untagged response) — is answered `* BAD` and nothing runs.
#[test]
fn a_tag_that_is_not_an_imap_tag_is_never_echoed() {
    let (_d, md) = setup();
    let dollars = " $".repeat(17);
    for (input, forbidden) in [
        (
            format!("s SELECT INBOX\r\na{{5}}\r\nxxxxx SEARCH{dollars}\r\n"),
            "\r\nxxxxx ",
        ),
        (
            format!("s SELECT INBOX\r\n+ SEARCH{dollars}\r\n"),
            "\r\n+ NO",
        ),
        (
            format!("s SELECT INBOX\r\n* SEARCH{dollars}\r\n"),
            "\r\n* NO [LIMIT]",
        ),
        (
            "a{1}\r\nx CREATE Foo (USE (\\Junk))\r\n".to_owned(),
            "\r\nx ",
        ),
        ("+ CREATE Bar (USE (\\Junk))\r\n".to_owned(), "\r\n+ "),
    ] {
        let out = run(&md, input.as_bytes());
        assert!(!out.contains(forbidden), "{input:?}:\n{out}");
        assert!(out.ends_with("* BAD Syntax error\r\n"), "{input:?}:\n{out}");
    }
    let folders = md.list_folders().unwrap();
    assert!(
        !folders.iter().any(|f| f == "Foo" || f == "Bar"),
        "{folders:?}"
    );
}

/// CATENATE (RFC 4469) work per command is bounded by the read budget (4 × APPENDLIMIT of
/// source bytes): a URL with a section parses the whole source message to find the part,
/// so each such URL counts the message's size, also when the message was read for an
/// earlier URL. Before, 1000 URLs to one small part of one large message (`/INBOX/;UID=1/
/// ;SECTION=1`, a few bytes each in the result) parsed the large message 1000 times for
/// one read charged: with the default 50 MiB APPENDLIMIT, 50 GB of MIME parsing from a
/// 40 KB command. Many sections of a small message stay fine.
#[test]
fn catenate_sections_of_one_large_message_spend_the_budget() {
    let (_d, md) = setup();
    let mut big = b"Subject: big\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
        Content-Type: text/plain\r\n\r\nsmall\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        .to_vec();
    big.extend(std::iter::repeat_n(b'x', 600 * 1024));
    big.extend_from_slice(b"\r\n--b--\r\n");
    let mut inbox = md.open_mailbox("INBOX").unwrap();
    let uid = inbox.append(&big, &Flags::default(), None).unwrap();
    let urls = |uid: u32, n: usize| -> Vec<u8> {
        let mut input = b"a APPEND Drafts CATENATE (".to_vec();
        for _ in 0..n {
            input.extend_from_slice(format!("URL \"/INBOX/;UID={uid}/;SECTION=1\" ").as_bytes());
        }
        input.extend_from_slice(b"TEXT {1}\r\nx)\r\n");
        input
    };
    // 40 × 600 KiB parsed > 4 × 1 MiB.
    let out = run(&md, &urls(uid, 40));
    let tagged = out
        .lines()
        .find(|l| l.starts_with("a "))
        .unwrap_or_default();
    assert!(tagged.starts_with("a NO [LIMIT]"), "{out}");
    let mut drafts = md.open_mailbox("Drafts").unwrap();
    drafts.sync().unwrap();
    assert_eq!(drafts.messages().len(), 0);
    // A few sections of it, and many of a small message, are fine.
    let out = run(&md, &urls(uid, 3));
    assert!(out.contains("a OK [APPENDUID"), "{out}");
    let out = run(&md, &urls(1, 40));
    assert!(out.contains("a OK [APPENDUID"), "{out}");
}
