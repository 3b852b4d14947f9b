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
