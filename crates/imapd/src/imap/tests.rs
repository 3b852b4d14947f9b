//! Session logic on a temp Maildir, no sockets.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::Command;
use postern_maildir::{Flags, Maildir};

use super::cmd::list;
use super::session::{Flow, Session, SessionConfig, User};
use super::{PreauthScanner, literal_announcement, recover_tag};

fn cfg() -> SessionConfig {
    SessionConfig {
        hostname: "mx.example.test".into(),
        append_limit: 1 << 20,
        starttls: true,
    }
}

fn cmd(line: &str) -> Command<'static> {
    let raw = format!("{line}\r\n");
    let (rem, c) = CommandCodec::default()
        .decode(raw.as_bytes())
        .unwrap_or_else(|e| panic!("cannot parse {line:?}: {e:?}"));
    assert!(rem.is_empty());
    c.into_static()
}

fn run(s: &mut Session, line: &str) -> String {
    let mut out = Vec::new();
    let mut f = s.handle(cmd(line), &mut out);
    while f == Flow::More {
        f = s.resume(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn session(md: &Maildir) -> Session {
    let mut s = Session::new(cfg(), true, false);
    s.login(User {
        name: "a@example.test".into(),
        maildir: md.clone(),
        quota_bytes: Some(10 << 20),
    });
    s
}

fn msg(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: {subject}\r\nDate: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

fn setup() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    (dir, md)
}

fn deliver(md: &Maildir, subject: &str) {
    md.deliver(None, &msg(subject, "hello world"), &Flags::default())
        .unwrap();
}

#[test]
fn capabilities_follow_state() {
    let s = Session::new(cfg(), false, false);
    let c = s.capabilities();
    assert!(c.contains(&"LOGINDISABLED".into()) && c.contains(&"STARTTLS".into()));
    assert!(!c.iter().any(|x| x.starts_with("AUTH=")));
    assert!(c.contains(&"IMAP4rev1".into()) && c.contains(&"IMAP4rev2".into()));
    let s = Session::new(cfg(), true, false);
    let c = s.capabilities();
    assert!(c.contains(&"AUTH=PLAIN".into()) && !c.contains(&"STARTTLS".into()));
    let s = Session::new(cfg(), false, true);
    assert!(s.capabilities().contains(&"AUTH=PLAIN".into()));
    let g = String::from_utf8(s.greeting()).unwrap();
    assert!(
        g.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 ")
            && g.ends_with("mx.example.test ready\r\n"),
        "{g}"
    );
}

#[test]
fn not_logged_in_refuses_mailbox_commands() {
    let mut s = Session::new(cfg(), true, false);
    assert_eq!(run(&mut s, "a SELECT INBOX"), "a BAD Log in first\r\n");
    assert!(run(&mut s, "b CAPABILITY").contains("b OK"));
    assert!(run(&mut s, "c LOGOUT").starts_with("* BYE"));
}

#[test]
fn special_use_and_list() {
    let (_d, md) = setup();
    let mut s = session(&md);
    let r = run(&mut s, "a LIST \"\" \"*\"");
    for (n, a) in [
        ("Sent", "\\Sent"),
        ("Drafts", "\\Drafts"),
        ("Trash", "\\Trash"),
        ("Junk", "\\Junk"),
        ("Archive", "\\Archive"),
    ] {
        assert!(
            r.contains(&format!("(\\HasNoChildren {a}) \"/\" \"{n}\"")),
            "{r}"
        );
    }
    assert!(
        r.contains("\"INBOX\"") && r.ends_with("a OK LIST completed\r\n"),
        "{r}"
    );
    let r = run(&mut s, "b LSUB \"\" \"*\"");
    assert!(r.contains("* LSUB () \"/\" \"Sent\""), "{r}");
    let r = run(&mut s, "c CREATE a/b/c");
    assert!(r.contains("c OK"), "{r}");
    let r = run(&mut s, "d LIST \"\" %");
    assert!(r.contains("(\\HasChildren) \"/\" \"a\""), "{r}");
    assert!(!r.contains("a/b"), "{r}");
    let r = run(&mut s, "e LIST \"a/\" %");
    assert!(r.contains("\"a/b\"") && !r.contains("a/b/c"), "{r}");
    let r = run(&mut s, "f LIST \"\" \"\"");
    assert!(r.contains("* LIST (\\Noselect) \"/\" \"\""), "{r}");
    // Extended LIST through the fallback parser.
    let Some(list::Extended::List {
        tag,
        reference,
        patterns,
        opts,
    }) = list::reparse(b"g LIST (SUBSCRIBED) \"\" \"*\" RETURN (STATUS (MESSAGES))\r\n")
    else {
        panic!()
    };
    let mut out = Vec::new();
    s.list_extended(&tag, &reference, &patterns, &opts, &mut out);
    let r = String::from_utf8(out).unwrap();
    assert!(
        r.contains("(\\HasNoChildren \\Sent \\Subscribed) \"/\" \"Sent\""),
        "{r}"
    );
    assert!(r.contains("* STATUS \"Sent\" (MESSAGES 0)"), "{r}");
    assert!(!r.contains("\"a\""), "{r}");
}

#[test]
fn mailbox_name_attacks_are_refused() {
    let (d, md) = setup();
    let mut s = session(&md);
    let huge = "x".repeat(5000);
    for name in [
        "\"../x\"",
        "\"/etc\"",
        "\"a/../../b\"",
        "\"a/./b\"",
        "\"..\"",
        "\"a//b\"",
        &format!("\"{huge}\""),
        "\"x.y\"",
    ] {
        let r = run(&mut s, &format!("a CREATE {name}"));
        assert!(r.starts_with("a NO"), "{name}: {r}");
        let r = run(&mut s, &format!("b SELECT {name}"));
        assert!(r.contains("b NO"), "{name}: {r}");
        let r = run(&mut s, &format!("c RENAME Sent {name}"));
        assert!(r.starts_with("c NO"), "{name}: {r}");
    }
    // Control characters arrive as literals.
    let r = run(&mut s, "d CREATE {3+}\r\na\u{1}b");
    assert!(r.starts_with("d NO"), "{r}");
    // Nothing was created outside the Maildir.
    let entries: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
    assert!(!d.path().join("x").exists() && !d.path().join("b").exists());
}

#[test]
fn utf7_and_utf8_names() {
    let (_d, md) = setup();
    let mut s = session(&md);
    assert!(run(&mut s, "a CREATE Entw&APw-rfe").contains("a OK"));
    assert!(run(&mut s, "b CREATE \"Tom &- Jerry\"").contains("b OK"));
    let r = run(&mut s, "c LIST \"\" *");
    assert!(
        r.contains("\"Entw&APw-rfe\"") && r.contains("\"Tom &- Jerry\""),
        "{r}"
    );
    assert!(md.list_folders().unwrap().contains(&"Entwürfe".to_owned()));
    assert!(run(&mut s, "d ENABLE UTF8=ACCEPT").contains("* ENABLED UTF8=ACCEPT"));
    let r = run(&mut s, "e LIST \"\" *");
    assert!(
        r.contains("\"Entwürfe\"") && r.contains("\"Tom & Jerry\""),
        "{r}"
    );
}

#[test]
fn select_fetch_store_search_expunge() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    let mut s = session(&md);
    let r = run(&mut s, "a SELECT INBOX");
    assert!(
        r.contains("* 2 EXISTS")
            && r.contains("* 2 RECENT")
            && r.contains("[UIDVALIDITY ")
            && r.contains("[UIDNEXT 3]"),
        "{r}"
    );
    assert!(
        r.contains("* OK [UNSEEN 1]")
            && r.contains("[HIGHESTMODSEQ ")
            && r.ends_with("a OK [READ-WRITE] SELECT completed\r\n"),
        "{r}"
    );
    let r = run(
        &mut s,
        "b FETCH 1:* (UID FLAGS RFC822.SIZE ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    );
    assert!(
        r.contains("* 1 FETCH (UID 1 FLAGS (\\Recent) RFC822.SIZE "),
        "{r}"
    );
    assert!(r.contains("\"one\"") && r.contains("Subject: two"), "{r}");
    assert!(!r.contains("\\Seen"));
    let r = run(&mut s, "c FETCH 2 BODY[TEXT]");
    assert!(r.contains("hello world") && r.contains("\\Seen"), "{r}");
    let r = run(&mut s, "d SEARCH UNSEEN");
    assert!(r.contains("* SEARCH 1\r\n"), "{r}");
    let r = run(&mut s, "e UID SEARCH SUBJECT two");
    assert!(r.contains("* SEARCH 2\r\n"), "{r}");
    let r = run(&mut s, "f UID STORE 1 +FLAGS (\\Deleted $Work)");
    assert!(
        r.contains("* 1 FETCH (UID 1 FLAGS (\\Deleted $Work \\Recent))"),
        "{r}"
    );
    assert!(r.contains("* FLAGS (") && r.contains("$Work"), "{r}");
    let r = run(&mut s, "g STORE 2 -FLAGS.SILENT (\\Seen)");
    assert_eq!(r, "g OK STORE completed\r\n");
    let r = run(&mut s, "h EXPUNGE");
    assert!(r.contains("* 1 EXPUNGE\r\n") && r.contains("h OK"), "{r}");
    let r = run(&mut s, "i FETCH 1 (UID FLAGS)");
    assert!(r.contains("* 1 FETCH (UID 2 FLAGS (\\Recent))"), "{r}");
    let r = run(&mut s, "j FETCH 5 FLAGS");
    assert!(r.starts_with("j BAD"), "{r}");
    // Flags are on disk: a fresh session sees them.
    let mut s2 = session(&md);
    run(&mut s2, "a SELECT INBOX");
    let r = run(&mut s2, "b FETCH 1 (FLAGS)");
    assert!(r.contains("* 1 FETCH (FLAGS ())"), "{r}");
}

#[test]
fn append_copy_move_uidplus() {
    let (_d, md) = setup();
    let mut s = session(&md);
    let m = msg("appended", "body");
    let r = run(
        &mut s,
        &format!(
            "a APPEND INBOX (\\Seen) {{{}+}}\r\n{}",
            m.len(),
            String::from_utf8_lossy(&m)
        ),
    );
    assert!(
        r.contains("a OK [APPENDUID ") && r.contains(" 1] APPEND completed"),
        "{r}"
    );
    let r = run(&mut s, "b APPEND Nope {1+}\r\nx");
    assert!(r.contains("b NO [TRYCREATE]"), "{r}");
    run(&mut s, "c SELECT INBOX");
    let r = run(&mut s, "d COPY 1 Archive");
    assert!(
        r.contains("d OK [COPYUID ") && r.contains(" 1 1] COPY completed"),
        "{r}"
    );
    let r = run(&mut s, "e UID MOVE 1 Trash");
    assert!(
        r.contains("* OK [COPYUID ")
            && r.contains("* 1 EXPUNGE")
            && r.contains("e OK MOVE completed"),
        "{r}"
    );
    let r = run(&mut s, "f STATUS Archive (MESSAGES UIDNEXT UNSEEN SIZE)");
    assert!(
        r.contains("* STATUS \"Archive\" (MESSAGES 1 UIDNEXT 2 UNSEEN 0 SIZE "),
        "{r}"
    );
    let r = run(&mut s, "g UID COPY 1 Nope");
    assert!(r.starts_with("g NO [TRYCREATE]"), "{r}");
    let r = run(&mut s, "g2 COPY 1 Archive");
    assert!(r.starts_with("g2 BAD"), "{r}");
    let r = run(&mut s, "h GETQUOTAROOT INBOX");
    assert!(
        r.contains("* QUOTAROOT \"INBOX\" \"\"") && r.contains("* QUOTA \"\" (STORAGE "),
        "{r}"
    );
}

#[test]
fn two_sessions_see_each_other() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    let mut a = session(&md);
    let mut b = session(&md);
    run(&mut a, "a SELECT INBOX");
    run(&mut b, "b SELECT INBOX");
    run(&mut a, "a STORE 1 +FLAGS (\\Flagged)");
    let r = run(&mut b, "b NOOP");
    assert!(r.contains("* 1 FETCH (UID 1 FLAGS (\\Flagged"), "{r}");
    deliver(&md, "three");
    let r = run(&mut b, "b NOOP");
    assert!(r.contains("* 3 EXISTS"), "{r}");
    run(&mut a, "a STORE 1 +FLAGS (\\Deleted)");
    run(&mut a, "a EXPUNGE");
    // No EXPUNGE during FETCH/STORE/SEARCH.
    let r = run(&mut b, "b FETCH 2 (UID)");
    assert!(!r.contains("EXPUNGE"), "{r}");
    assert!(r.contains("* 2 FETCH (UID 2)"), "{r}");
    let r = run(&mut b, "b SEARCH ALL");
    assert!(!r.contains("EXPUNGE") && r.contains("* SEARCH 2 3"), "{r}");
    let r = run(&mut b, "b NOOP");
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
    let r = run(&mut b, "b FETCH 1 (UID)");
    assert!(r.contains("* 1 FETCH (UID 2)"), "{r}");
}

#[test]
fn condstore_and_qresync() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    let mut a = session(&md);
    let mut b = session(&md);
    assert!(run(&mut a, "a ENABLE QRESYNC").contains("* ENABLED QRESYNC"));
    run(&mut a, "a SELECT INBOX");
    run(&mut b, "b SELECT INBOX (CONDSTORE)");
    let r = run(&mut b, "b FETCH 1:* (MODSEQ)");
    let ms: u64 = r
        .split("MODSEQ (")
        .skip(1)
        .filter_map(|x| x.split(')').next()?.parse().ok())
        .max()
        .unwrap();
    run(&mut a, "a STORE 1 +FLAGS (\\Seen)");
    let r = run(
        &mut b,
        &format!("b STORE 1 (UNCHANGEDSINCE {ms}) +FLAGS (\\Flagged)"),
    );
    assert!(r.contains("[MODIFIED 1]"), "{r}");
    let r = run(
        &mut b,
        &format!("b UID FETCH 1:* (FLAGS) (CHANGEDSINCE {ms})"),
    );
    assert!(r.contains("UID 1") && !r.contains("UID 2"), "{r}");
    run(&mut b, "b STORE 2 +FLAGS (\\Deleted)");
    run(&mut b, "b EXPUNGE");
    let r = run(&mut a, "a NOOP");
    assert!(r.contains("* VANISHED 2"), "{r}");
}

/// RFC 7162 §3.1: the first CONDSTORE enabling command (here FETCH … MODSEQ and SEARCH MODSEQ)
/// issued with a mailbox selected answers `[HIGHESTMODSEQ n]` in its tagged OK; §3.1.5: with
/// ESEARCH RETURN (MIN) / (MAX) only, the MODSEQ reported is that of the message returned.
#[test]
fn condstore_implicit_enable_and_esearch_modseq() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    deliver(&md, "three");
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run(&mut s, "b FETCH 1 (MODSEQ)");
    assert!(r.contains("b OK [HIGHESTMODSEQ "), "{r}");
    let r = run(&mut s, "c FETCH 1 (MODSEQ)");
    assert!(r.contains("c OK FETCH completed"), "{r}");
    // message 3 gets the highest mod-sequence
    run(&mut s, "d STORE 3 +FLAGS (\\Flagged)");
    let r = run(&mut s, "e FETCH 1:3 (MODSEQ)");
    let ms: Vec<u64> = r
        .split("MODSEQ (")
        .skip(1)
        .filter_map(|x| x.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(ms.len(), 3, "{r}");
    assert!(ms[2] > ms[0], "{r}");
    let esearch = |s: &mut Session, line: &str| {
        let Some(list::Extended::Search { cmd, ret }) = list::reparse(line.as_bytes()) else {
            panic!("{line}")
        };
        let mut out = Vec::new();
        let mut tagged = String::new();
        if let imap_codec::imap_types::command::CommandBody::Search {
            charset,
            criteria,
            uid,
        } = cmd.body
        {
            let t = s.search("t", charset.as_ref(), criteria, uid, &ret, &mut out);
            tagged = format!("{t:?}");
        }
        (String::from_utf8(out).unwrap(), tagged)
    };
    let (r, _) = esearch(&mut s, "t SEARCH RETURN (MIN) MODSEQ 1\r\n");
    assert!(r.contains(&format!("MIN 1 MODSEQ {}\r\n", ms[0])), "{r}");
    let (r, _) = esearch(&mut s, "t SEARCH RETURN (MAX) MODSEQ 1\r\n");
    assert!(r.contains(&format!("MAX 3 MODSEQ {}\r\n", ms[2])), "{r}");
    let (r, _) = esearch(&mut s, "t SEARCH RETURN (MIN COUNT) MODSEQ 1\r\n");
    assert!(r.contains(&format!("MODSEQ {}\r\n", ms[2])), "{r}");
    // SEARCH MODSEQ as the first enabling command
    let mut s2 = session(&md);
    run(&mut s2, "a SELECT INBOX");
    let (_, tagged) = esearch(&mut s2, "t SEARCH RETURN (MIN) MODSEQ 1\r\n");
    assert!(tagged.contains("HIGHESTMODSEQ"), "{tagged}");
}

/// RFC 3516 §4.2: BINARY.SIZE is the size of the decoded part, the same octets BINARY[part]
/// returns (RFC 2046 §5.1.1: the CRLF before a boundary belongs to the boundary).
#[test]
fn binary_size_and_partial() {
    let (_d, md) = setup();
    let m = "From: user@domain.org\r\nMime-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"foo\r\n bar\"\r\n\r\nprologue\r\n\r\n--foo bar\r\nContent-Type: text/x-myown; charset=us-ascii\r\n\r\nhello\r\n\r\n--foo bar\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQh\r\n\r\n--foo bar--\r\nepilogue\r\n";
    md.deliver(None, m.as_bytes(), &Flags::default()).unwrap();
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run(
        &mut s,
        "b FETCH 1 (BINARY.SIZE[1] BINARY.PEEK[1] BODY.PEEK[1])",
    );
    assert!(r.contains("BINARY.SIZE[1] 7 "), "{r}");
    assert!(
        r.contains("BINARY[1] {7}\r\nhello\r\n BODY[1] {7}\r\nhello\r\n)"),
        "{r}"
    );
    // base64: 12 decoded octets; a partial range counts decoded octets (`world` is 6..11)
    let r = run(&mut s, "c FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2]<6.5>)");
    assert!(r.contains("BINARY.SIZE[2] 12 "), "{r}");
    assert!(r.contains("world)"), "{r}");
}

#[test]
fn esearch_sort_thread() {
    let (_d, md) = setup();
    deliver(&md, "banana");
    deliver(&md, "apple");
    deliver(&md, "Re: apple");
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let Some(list::Extended::Search { cmd, ret }) =
        list::reparse(b"t UID SEARCH RETURN (MIN MAX COUNT ALL) ALL\r\n")
    else {
        panic!()
    };
    let mut out = Vec::new();
    if let imap_codec::imap_types::command::CommandBody::Search {
        charset,
        criteria,
        uid,
    } = cmd.body
    {
        s.search("t", charset.as_ref(), criteria, uid, &ret, &mut out);
    }
    let r = String::from_utf8(out).unwrap();
    assert!(
        r.contains("* ESEARCH (TAG \"t\") UID MIN 1 MAX 3 COUNT 3 ALL 1:3"),
        "{r}"
    );
    let r = run(&mut s, "b SORT (SUBJECT) UTF-8 ALL");
    assert!(r.contains("* SORT 2 3 1\r\n"), "{r}");
    let r = run(&mut s, "c THREAD ORDEREDSUBJECT UTF-8 ALL");
    assert!(r.contains("* THREAD "), "{r}");
    let r = run(&mut s, "d SEARCH CHARSET KOI8-R ALL");
    assert!(r.contains("d NO [BADCHARSET"), "{r}");
}

#[test]
fn large_fetch_is_chunked() {
    let (_d, md) = setup();
    let big = "x".repeat(400_000);
    for i in 0..5 {
        md.deliver(None, &msg(&format!("m{i}"), &big), &Flags::default())
            .unwrap();
    }
    let mut s = session(&md);
    let mut out = Vec::new();
    s.handle(cmd("a SELECT INBOX"), &mut out);
    out.clear();
    let mut f = s.handle(cmd("b FETCH 1:* BODY.PEEK[]"), &mut out);
    let mut rounds = 0;
    while f == Flow::More {
        assert!(out.len() < 3 << 20);
        out.clear();
        rounds += 1;
        f = s.resume(&mut out);
    }
    assert!(rounds >= 1);
    assert!(String::from_utf8_lossy(&out).ends_with("b OK FETCH completed\r\n"));
}

#[test]
fn hostile_extended_list() {
    let (_d, md) = setup();
    let mut s = session(&md);
    for i in 0..200 {
        md.create_folder(&format!("{}{i}", "f".repeat(150)))
            .unwrap();
    }
    // 30 000 patterns (one 64 KiB command) were each matched against every folder.
    let pats: String = (0..30_000).map(|i| format!("x{i} ")).collect();
    let raw = format!("h LIST \"\" ({pats}*)\r\n");
    let t = std::time::Instant::now();
    let Some(list::Extended::List {
        tag,
        reference,
        patterns,
        opts,
    }) = list::reparse(raw.as_bytes())
    else {
        panic!()
    };
    let mut out = Vec::new();
    s.list_extended(&tag, &reference, &patterns, &opts, &mut out);
    eprintln!("LIST with 30000 patterns: {:?}", t.elapsed());
    let r = String::from_utf8(out).unwrap();
    assert!(r.starts_with("h BAD"), "{}", &r[..r.len().min(200)]);
    // A few patterns are fine.
    let Some(list::Extended::List {
        tag,
        reference,
        patterns,
        opts,
    }) = list::reparse(b"i LIST \"\" (INBOX f*1 nosuch)\r\n")
    else {
        panic!()
    };
    let mut out = Vec::new();
    s.list_extended(&tag, &reference, &patterns, &opts, &mut out);
    let r = String::from_utf8(out).unwrap();
    assert!(r.contains("\"INBOX\"") && r.contains("i OK"), "{r}");
    assert_eq!(r.matches("* LIST").count(), 1 + 20, "{r}");
    // The fallback parser on hostile shapes of a 64 KiB command: nothing, quickly.
    for raw in [
        format!("a LIST \"\" ({}\r\n", "(".repeat(60_000)),
        format!("a LIST \"\" \"{}\r\n", "\\".repeat(60_000)),
        format!("a LIST ({}) \"\" *\r\n", "SUBSCRIBED ".repeat(6_000)),
        format!("a SEARCH RETURN ({}) ALL\r\n", "MIN ".repeat(15_000)),
        format!("a LIST \"\" * RETURN ({})\r\n", "(".repeat(60_000)),
    ] {
        let t = std::time::Instant::now();
        let _ = list::reparse(raw.as_bytes());
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }
}

#[test]
fn qresync_known_uids_are_looked_up_quickly() {
    // SELECT … (QRESYNC (v m known-uids)): each UID expunged since m was checked against
    // every range of the client's set (30 000 ranges fit in one command).
    use imap_codec::imap_types::sequence::SequenceSet;
    let set: String = (0..30_000u32)
        .map(|i| format!("{}", 4 * i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let set = SequenceSet::try_from(set.as_str()).unwrap();
    let r = super::session::ranges(&set, u32::MAX);
    let t = std::time::Instant::now();
    let hits = (1..=200_000u32)
        .filter(|&u| super::mailboxes::in_ranges(&r, u))
        .count();
    eprintln!("QRESYNC known-uid lookups: {:?}", t.elapsed());
    assert_eq!(hits, 30_000);
    assert!(super::mailboxes::in_ranges(&[(1, 1), (5, 9)], 7));
    assert!(!super::mailboxes::in_ranges(&[(1, 1), (5, 9)], 4));
    assert!(!super::mailboxes::in_ranges(&[], 4));
}

#[test]
fn preauth_scanner() {
    let mut sc = PreauthScanner::default();
    assert!(sc.feed(b"a LOGIN {5}\r\n", 100));
    assert!(sc.feed(b"alice {3}\r\nfoo\r\n", 100));
    assert!(sc.feed(&[b'x'; 90], 100));
    assert!(!sc.feed(&[b'x'; 20], 100));
    let mut sc = PreauthScanner::default();
    assert!(!sc.feed(b"a LOGIN {1000000000}\r\n", 8192));
    let mut sc = PreauthScanner::default();
    assert!(!sc.feed(b"a LOGIN {99999999999999999999999+}\r\n", 8192));
    let mut sc = PreauthScanner::default();
    for _ in 0..1000 {
        assert!(sc.feed(b"a NOOP\r\n", 100));
    }
    // After login only the text outside literals counts, per command.
    let mut sc = PreauthScanner::default();
    assert_eq!(sc.feed_text(b"a APPEND INBOX {500}\r\n", 100, 1000), Ok(()));
    assert_eq!(sc.feed_text(&[b'x'; 500], 100, 1000), Ok(()));
    assert_eq!(sc.feed_text(b" (\\Seen)\r\nb NOOP\r\n", 100, 1000), Ok(()));
    for _ in 0..100 {
        assert_eq!(sc.feed_text(b"c NOOP\r\n", 100, 1000), Ok(()));
    }
    // Too long: the whole commands before it in the same chunk are reported.
    let mut long = b"d NOOP\r\ne NOOP\r\nf STORE ".to_vec();
    long.extend_from_slice(&[b'1'; 200]);
    assert_eq!(sc.feed_text(&long, 100, 1000), Err(16));
    // Text after a literal counts toward the same command.
    let mut sc = PreauthScanner::default();
    assert_eq!(sc.feed_text(b"g SEARCH TEXT {3}\r\nabc", 100, 1000), Ok(()));
    assert_eq!(sc.feed_text(&[b' '; 90], 100, 1000), Err(0));
    // A literal over the literal limit is refused by imap-next: what follows is text.
    let mut sc = PreauthScanner::default();
    assert_eq!(
        sc.feed_text(b"h APPEND INBOX {5000}\r\n", 100, 1000),
        Ok(())
    );
    assert_eq!(sc.feed_text(&[b'y'; 200], 100, 1000), Err(0));
    assert_eq!(literal_announcement(b"a {12}"), Some(12));
    assert_eq!(literal_announcement(b"a ~{12+}"), Some(12));
    assert_eq!(literal_announcement(b"a {x}"), None);
    assert_eq!(recover_tag(b"abc ZZZ\r\n").as_deref(), Some("abc"));
    assert_eq!(recover_tag(b"a{b ZZZ\r\n"), None);
}

#[test]
fn codec_list_wildcards() {
    for l in [
        "a LIST \"\" Projects*",
        "a LIST \"\" \"Projects*\"",
        "a LIST \"\" %",
        "a LIST \"\" *",
    ] {
        let raw = format!("{l}\r\n");
        let r = CommandCodec::default().decode(raw.as_bytes());
        assert!(r.is_ok(), "{l}: {r:?}");
    }
}

#[test]
fn rename_inbox_moves_its_messages() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    run(&mut session(&md), "c CREATE INBOX/keep");
    let mut a = session(&md);
    let mut b = session(&md);
    run(&mut b, "b SELECT INBOX");
    let r = run(&mut a, "a RENAME INBOX Old");
    assert!(r.contains("a OK"), "{r}");
    let r = run(&mut a, "a STATUS Old (MESSAGES)");
    assert!(r.contains("(MESSAGES 2)"), "{r}");
    let r = run(&mut a, "a STATUS INBOX (MESSAGES)");
    assert!(r.contains("(MESSAGES 0)"), "{r}");
    // INBOX's inferiors stay where they are.
    let r = run(&mut a, "a LIST \"\" \"*\"");
    assert!(r.contains("INBOX/keep") && !r.contains("Old/keep"), "{r}");
    // The session that had INBOX selected sees the messages go.
    let r = run(&mut b, "b NOOP");
    assert!(r.matches("EXPUNGE").count() == 2, "{r}");
    // The target must not exist.
    deliver(&md, "three");
    let r = run(&mut a, "a RENAME INBOX Old");
    assert!(r.contains("a NO [ALREADYEXISTS]"), "{r}");
}

#[test]
fn imap4rev2_sessions_have_no_recent() {
    let (_d, md) = setup();
    deliver(&md, "one");
    let mut a = session(&md);
    run(&mut a, "a ENABLE IMAP4rev2");
    let r = run(&mut a, "a SELECT INBOX");
    assert!(!r.contains("RECENT"), "{r}");
    let r = run(&mut a, "a FETCH 1 (FLAGS)");
    assert!(!r.contains("\\Recent"), "{r}");
    deliver(&md, "two");
    let r = run(&mut a, "a FETCH 2 (FLAGS)");
    assert!(!r.contains("\\Recent"), "{r}");
    // The message was not claimed: a rev1 session still sees both as recent.
    let mut b = session(&md);
    let r = run(&mut b, "b SELECT INBOX");
    assert!(r.contains("* 2 RECENT"), "{r}");
}

#[test]
fn status_recent_of_an_unselected_mailbox() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    let mut a = session(&md);
    let r = run(&mut a, "a STATUS INBOX (MESSAGES RECENT)");
    assert!(r.contains("(MESSAGES 2 RECENT 2)"), "{r}");
    // STATUS claims nothing: a SELECT still gets both as recent, then they are claimed.
    let r = run(&mut a, "a SELECT INBOX");
    assert!(r.contains("* 2 RECENT"), "{r}");
    let mut b = session(&md);
    let r = run(&mut b, "b STATUS INBOX (RECENT)");
    assert!(r.contains("(RECENT 0)"), "{r}");
}

/// A message whose file vanished behind imapd's back (RFC 9051 §6.4.5, as Dovecot): the
/// readable messages are answered, then a tagged NO names the ones that could not be read —
/// never a silent OK with a message missing.
#[test]
fn unreadable_message_is_reported_in_fetch() {
    let (_d, md) = setup();
    deliver(&md, "one");
    deliver(&md, "two");
    deliver(&md, "three");
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let mut removed = 0;
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(md.root().join(sub)).unwrap() {
            let p = e.unwrap().path();
            if std::fs::read(&p)
                .unwrap()
                .windows(12)
                .any(|w| w == b"Subject: two")
            {
                std::fs::remove_file(&p).unwrap();
                removed += 1;
            }
        }
    }
    assert_eq!(removed, 1);
    let r = run(&mut s, "b FETCH 1:3 (UID BODY.PEEK[])");
    assert!(
        r.contains("* 1 FETCH (UID 1 BODY[] {") && r.contains("Subject: one"),
        "{r}"
    );
    assert!(
        r.contains("* 3 FETCH (UID 3 BODY[] {") && r.contains("Subject: three"),
        "{r}"
    );
    assert!(!r.contains("* 2 FETCH"), "{r}");
    assert!(
        r.ends_with(
            "b NO [EXPUNGEISSUED] Some of the requested messages no longer exist (UID 2)\r\n"
        ),
        "{r}"
    );
    // The store now knows the message is gone: the next command that may announce
    // expunges does, and the view is whole again.
    let r = run(&mut s, "c NOOP");
    assert!(
        r.contains("* 2 EXPUNGE\r\n") && r.ends_with("c OK NOOP completed\r\n"),
        "{r}"
    );
    let r = run(&mut s, "d FETCH 1:2 (UID BODY.PEEK[])");
    assert!(r.contains("* 2 FETCH (UID 3 BODY[] {"), "{r}");
    assert!(r.ends_with("d OK FETCH completed\r\n"), "{r}");
}

/// LOGIN, STARTTLS and COMPRESS are decided by the session; the driver gets an action only
/// when there is something for it to do.
#[test]
fn login_starttls_compress_are_session_actions() {
    use super::cmd::auth::Action;
    let begin = |s: &mut Session, line: &str| {
        let mut out = Vec::new();
        let a = s.begin(cmd(line), &mut out);
        (a, String::from_utf8_lossy(&out).into_owned())
    };
    // Plain connection, untrusted network, STARTTLS offered.
    let mut s = Session::new(cfg(), false, false);
    assert_eq!(
        s.idle_start(),
        Err(super::tagged::Tagged::bad("Log in first"))
    );
    let (a, r) = begin(&mut s, "a LOGIN u p");
    assert!(matches!(a, Action::Done(Flow::Continue)), "{a:?}");
    assert_eq!(
        r,
        "a NO [PRIVACYREQUIRED] Plaintext LOGIN is disabled; use STARTTLS\r\n"
    );
    let (a, r) = begin(&mut s, "b COMPRESS DEFLATE");
    assert!(
        matches!(a, Action::Done(_)) && r == "b BAD Command not allowed now\r\n",
        "{r}"
    );
    let (a, r) = begin(&mut s, "c STARTTLS");
    assert!(
        matches!(a, Action::StartTls) && r == "c OK Begin TLS negotiation now\r\n",
        "{r}"
    );
    s.tls_started();
    let (_, r) = begin(&mut s, "d STARTTLS");
    assert_eq!(r, "d BAD STARTTLS is not available now\r\n");
    let (a, r) = begin(&mut s, "e LOGIN u p");
    assert!(r.is_empty(), "{r}");
    let Action::Login { tag, user, pass } = a else {
        panic!("{a:?}")
    };
    assert_eq!(
        (tag.as_str(), user.as_str(), pass.as_str()),
        ("e", "u", "p")
    );
    let mut out = Vec::new();
    let failed = s.login_done(&mut out, "e", Err(crate::login::LoginError::Failed(None)));
    assert!(failed && out == b"e NO [AUTHENTICATIONFAILED] Authentication failed\r\n");
    // authd's temporary failure (a lockout, an account being moved): UNAVAILABLE, not
    // counted as a failed login.
    out.clear();
    let temp = crate::login::LoginError::Temporary("Mailbox is being moved".into());
    assert!(!s.login_done(&mut out, "e2", Err(temp)));
    assert_eq!(out, b"e2 NO [UNAVAILABLE] Mailbox is being moved\r\n");
    let (_, md) = setup();
    out.clear();
    let user = User {
        name: "a@example.test".into(),
        maildir: md,
        quota_bytes: None,
    };
    assert!(!s.login_done(&mut out, "f", Ok(user)));
    let r = String::from_utf8_lossy(&out);
    assert!(
        r.starts_with("f OK [CAPABILITY IMAP4rev1 ") && r.ends_with("] Logged in\r\n"),
        "{r}"
    );
    assert_eq!(s.idle_start(), Ok(None));
    let (_, r) = begin(&mut s, "g LOGIN u p");
    assert_eq!(r, "g BAD Already logged in\r\n");
    let (a, r) = begin(&mut s, "h COMPRESS DEFLATE");
    assert!(
        matches!(a, Action::Compress) && r == "h OK DEFLATE active\r\n",
        "{r}"
    );
    s.compress_started();
    let (_, r) = begin(&mut s, "i COMPRESS DEFLATE");
    assert_eq!(r, "i NO [COMPRESSIONACTIVE] Already compressing\r\n");
    // Port 143 without a certificate.
    let mut plain = Session::new(
        SessionConfig {
            starttls: false,
            ..cfg()
        },
        false,
        true,
    );
    let (_, r) = begin(&mut plain, "j STARTTLS");
    assert_eq!(r, "j BAD STARTTLS is not available\r\n");
}
