//! Issue 13 §1 conformance faults, at the session level (no sockets): BINARY (RFC 3516),
//! CONDSTORE enabling by STORE (RFC 7162 §3.1), ID limits (RFC 2971), \Recent on EXAMINE
//! (RFC 3501 §6.3.2). The e2e twins are in `tests/tests/e2e/imap_conformance_fetch.rs`.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;
use postern_maildir::{Flags, Maildir};

use super::scanner::{ID_MAX_WIRE, PreauthScanner};
use super::session::{Flow, Session, SessionConfig, User};

fn cmd(raw: &[u8]) -> Command<'static> {
    let (rem, c) = CommandCodec::default()
        .decode(raw)
        .unwrap_or_else(|e| panic!("cannot parse {:?}: {e:?}", String::from_utf8_lossy(raw)));
    assert!(rem.is_empty());
    c.into_static()
}

fn run_raw(s: &mut Session, raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut f = s.handle(cmd(raw), &mut out);
    while f == Flow::More {
        f = s.resume(&mut out);
    }
    out
}

fn run(s: &mut Session, line: &str) -> String {
    String::from_utf8_lossy(&run_raw(s, format!("{line}\r\n").as_bytes())).into_owned()
}

fn setup() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    (dir, md)
}

fn session(md: &Maildir) -> Session {
    let cfg = SessionConfig {
        hostname: "mx.example.test".into(),
        append_limit: 1 << 20,
        starttls: true,
    };
    let mut s = Session::new(cfg, true, false);
    s.login(User {
        name: "a@example.test".into(),
        maildir: md.clone(),
        quota_bytes: Some(10 << 20),
    });
    s
}

/// A message whose part 1 is `Content-Transfer-Encoding: binary` holding `part`.
fn binary_message(part: &[u8]) -> Vec<u8> {
    let mut m = b"From: a@example.test\r\nSubject: bin\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
        Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        .to_vec();
    m.extend_from_slice(part);
    m.extend_from_slice(b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nplain text\r\n--b--\r\n");
    m
}

/// RFC 3516 §4.2/§4.3: a partial BINARY names its origin octet (`BINARY[1]<2>`) and counts
/// decoded octets; data with NUL is a literal8 (`~{n}`), data without NUL a plain literal.
/// Before: `BINARY[1] …` without `<2>` (imap-types' BINARY item has no origin).
#[test]
fn binary_partial_has_origin_and_nul_is_literal8() {
    let (_d, md) = setup();
    let part = b"ab\0cd\x80\xffefgh\r\nij";
    md.deliver(None, &binary_message(part), &Flags::default())
        .unwrap();
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run_raw(
        &mut s,
        b"b FETCH 1 (BINARY.PEEK[1]<2.4> BINARY.SIZE[1])\r\n",
    );
    let mut want = b"* 1 FETCH (BINARY[1]<2> ~{4}\r\n\0cd\x80 BINARY.SIZE[1] ".to_vec();
    want.extend_from_slice(format!("{})\r\nb OK FETCH completed\r\n", part.len()).as_bytes());
    assert_eq!(String::from_utf8_lossy(&r), String::from_utf8_lossy(&want));
    // No NUL in the window: a plain literal, still with its origin; past the end: empty.
    let r = run(
        &mut s,
        "c FETCH 1 (BINARY.PEEK[1]<7.4> BINARY.PEEK[2]<100.5>)",
    );
    assert!(
        r.starts_with("* 1 FETCH (BINARY[1]<7> {4}\r\nefgh BINARY[2]<100> {0}\r\n)"),
        "{r}"
    );
    // A part that does not exist is NIL; nested part numbers are dotted.
    let r = run(&mut s, "d FETCH 1 (BINARY.PEEK[7] BINARY.PEEK[1.1])");
    assert!(r.contains("BINARY[7] NIL"), "{r}");
    // Items imap-codec writes keep their form next to a BINARY one.
    let r = run(&mut s, "e FETCH 1 (UID BINARY.PEEK[2]<0.5> RFC822.SIZE)");
    assert!(
        r.starts_with("* 1 FETCH (UID 1 BINARY[2]<0> {5}\r\nplain RFC822.SIZE "),
        "{r}"
    );
}

/// RFC 9051 §4.3: a literal is CHAR8 without NUL. BODY[] of a message stored with NULs (an
/// APPEND with literal8) sends them as 0x80; BINARY[] sends them unchanged in a literal8.
/// Before: the debug build panicked in `Literal::unvalidated` (the connection dropped: the
/// "BODY[1] came back empty" of the issue), a release build sent NUL in a plain literal.
#[test]
fn body_of_binary_content_is_a_valid_literal() {
    let (_d, md) = setup();
    let part = b"x\0y";
    let m = binary_message(part);
    md.deliver(None, &m, &Flags::default()).unwrap();
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run_raw(&mut s, b"b FETCH 1 (BODY.PEEK[1] BINARY.PEEK[1])\r\n");
    assert_eq!(
        String::from_utf8_lossy(&r),
        String::from_utf8_lossy(
            b"* 1 FETCH (BODY[1] {3}\r\nx\x80y BINARY[1] ~{3}\r\nx\0y)\r\nb OK FETCH completed\r\n"
        )
    );
    let r = run_raw(&mut s, b"c FETCH 1 (BODY.PEEK[])\r\n");
    assert!(!r.contains(&0), "{}", String::from_utf8_lossy(&r));
}

/// RFC 3516 §4.3: a literal8 APPEND is stored octet for octet or refused with UNKNOWN-CTE;
/// the LF-based Maildir cannot keep a bare LF (or CR before CRLF) in a CRLF message.
#[test]
fn append_literal8_round_trips_or_is_refused() {
    let (_d, md) = setup();
    let mut s = session(&md);
    let part: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
    let m = binary_message(&part);
    let mut line = format!("a APPEND INBOX ~{{{}}}\r\n", m.len()).into_bytes();
    line.extend_from_slice(&m);
    line.extend_from_slice(b"\r\n");
    let r = String::from_utf8_lossy(&run_raw(&mut s, &line)).into_owned();
    assert!(r.contains("a OK [APPENDUID "), "{r}");
    run(&mut s, "b SELECT INBOX");
    let r = run_raw(&mut s, b"c FETCH 1 (BINARY.PEEK[] BINARY.PEEK[1])\r\n");
    let mut want = format!("* 1 FETCH (BINARY[] ~{{{}}}\r\n", m.len()).into_bytes();
    want.extend_from_slice(&m);
    want.extend_from_slice(format!(" BINARY[1] ~{{{}}}\r\n", part.len()).as_bytes());
    want.extend_from_slice(&part);
    want.extend_from_slice(b")\r\nc OK FETCH completed\r\n");
    assert_eq!(String::from_utf8_lossy(&r), String::from_utf8_lossy(&want));
    for bad in [&b"a\nb"[..], b"a\r\r\nb"] {
        let m = binary_message(bad);
        let mut line = format!("d APPEND INBOX ~{{{}}}\r\n", m.len()).into_bytes();
        line.extend_from_slice(&m);
        line.extend_from_slice(b"\r\n");
        let r = String::from_utf8_lossy(&run_raw(&mut s, &line)).into_owned();
        assert!(r.starts_with("d NO [UNKNOWN-CTE] "), "{r}");
    }
    let r = run(&mut s, "e NOOP");
    assert!(!r.contains("EXISTS"), "{r}");
    use super::cmd::mailboxes::stored_exactly;
    assert!(stored_exactly(b"a\r\nb\r\n\r\nc\rd"));
    assert!(stored_exactly(b"LF only\nlines\n"));
    assert!(!stored_exactly(b"a\r\nb\nc"));
    assert!(!stored_exactly(b"a\r\nb\r\r\nc"));
}

/// RFC 7162 §3.1: STORE (UNCHANGEDSINCE) as the first CONDSTORE enabling command reports
/// `[HIGHESTMODSEQ n]`, in the tagged OK, or untagged when `[MODIFIED]` is the tagged code.
/// Before: `OK STORE completed` without it.
#[test]
fn store_unchangedsince_first_reports_highestmodseq() {
    let (_d, md) = setup();
    for _ in 0..2 {
        md.deliver(None, b"Subject: x\r\n\r\nbody\r\n", &Flags::default())
            .unwrap();
    }
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run(&mut s, "b STORE 1 (UNCHANGEDSINCE 1000) +FLAGS (\\Seen)");
    assert!(r.contains("b OK [HIGHESTMODSEQ "), "{r}");
    let r = run(&mut s, "c STORE 2 (UNCHANGEDSINCE 1000) +FLAGS (\\Seen)");
    assert!(r.contains("c OK STORE completed"), "{r}");
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run(&mut s, "b STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)");
    assert!(
        r.contains("* OK [HIGHESTMODSEQ ") && r.contains("b OK [MODIFIED 1]"),
        "{r}"
    );
}

/// RFC 2971 §3.3: 30 pairs, fields of 30 octets and values of 1024 are answered; one more
/// pair, octet of field or octet of value is BAD (before: any size was answered).
#[test]
fn id_rfc2971_limits() {
    let (_d, md) = setup();
    let mut s = session(&md);
    let id = |pairs: usize, flen: usize, vlen: usize| {
        let mut l = String::from("a ID (");
        for i in 0..pairs {
            if i > 0 {
                l.push(' ');
            }
            let f = format!("{i:0>flen$}");
            l.push_str(&format!("\"{f}\" \"{}\"", "v".repeat(vlen)));
        }
        l.push(')');
        l
    };
    assert!(run(&mut s, &id(30, 30, 1024)).contains("a OK ID completed"));
    assert!(run(&mut s, "a ID NIL").contains("a OK ID completed"));
    for (p, f, v) in [(31, 2, 1), (1, 31, 1), (1, 2, 1025)] {
        let r = run(&mut s, &id(p, f, v));
        assert!(r.starts_with("a BAD ID: "), "{p} {f} {v}: {r}");
    }
}

/// The pre-login budget: a maximal valid ID (every octet escaped) fits, even with a small
/// `max_preauth_command_size`; any other command of that size, or an ID past the allowance
/// (in text or in a literal announcement), does not.
#[test]
fn preauth_budget_fits_a_maximal_id_and_no_more() {
    let limit = 8192;
    let mut id = b"a1 ID (".to_vec();
    for i in 0..30 {
        if i > 0 {
            id.push(b' ');
        }
        id.push(b'"');
        id.extend_from_slice(&b"\\\"".repeat(30));
        id.extend_from_slice(b"\" \"");
        id.extend_from_slice(&b"\\\\".repeat(1024));
        id.push(b'"');
    }
    id.extend_from_slice(b")\r\n");
    assert!(id.len() as u64 <= ID_MAX_WIRE + 3, "{}", id.len());
    let mut sc = PreauthScanner::default();
    assert!(sc.feed(&id, limit));
    // byte by byte too, then a following command gets the normal budget again
    let mut sc = PreauthScanner::default();
    assert!(id.chunks(1).all(|c| sc.feed(c, limit)));
    assert!(!sc.feed(&[b'x'; 9000], limit));
    // the same size as another command
    let mut other = id.clone();
    other[3..5].copy_from_slice(b"XX");
    assert!(!PreauthScanner::default().feed(&other, limit));
    // past the allowance
    let mut sc = PreauthScanner::default();
    assert!(!sc.feed(&[&b"b id ("[..], &[b'x'; 80_000]].concat(), limit));
    let mut sc = PreauthScanner::default();
    assert!(!sc.feed(b"c ID (\"a\" {80000}\r\n", limit));
    let mut sc = PreauthScanner::default();
    assert!(sc.feed(b"c ID (\"a\" {1024}\r\n", limit));
}

/// RFC 3501 §6.3.2: EXAMINE reports `* n RECENT` and leaves the messages \Recent for the
/// next SELECT; SELECT claims them for its session only (before: EXAMINE said `0 RECENT`).
#[test]
fn examine_reports_recent_without_claiming() {
    let (_d, md) = setup();
    for _ in 0..2 {
        md.deliver(None, b"Subject: x\r\n\r\nbody\r\n", &Flags::default())
            .unwrap();
    }
    let mut a = session(&md);
    let r = run(&mut a, "a EXAMINE INBOX");
    assert!(r.contains("* 2 RECENT\r\n"), "{r}");
    let r = run(&mut a, "b FETCH 1:2 (FLAGS)");
    assert_eq!(r.matches("\\Recent").count(), 2, "{r}");
    // a message arriving while EXAMINEd is \Recent there too, still unclaimed
    md.deliver(None, b"Subject: y\r\n\r\nbody\r\n", &Flags::default())
        .unwrap();
    let r = run(&mut a, "c NOOP");
    assert!(r.contains("* 3 EXISTS\r\n* 3 RECENT\r\n"), "{r}");
    let mut b = session(&md);
    let r = run(&mut b, "a SELECT INBOX");
    assert!(r.contains("* 3 RECENT\r\n"), "{r}");
    let mut c = session(&md);
    let r = run(&mut c, "a EXAMINE INBOX");
    assert!(r.contains("* 0 RECENT\r\n"), "{r}");
    let r = run(&mut c, "b SELECT INBOX");
    assert!(r.contains("* 0 RECENT\r\n"), "{r}");
}
