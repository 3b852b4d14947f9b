//! SEARCHRES (RFC 5182) and UIDONLY (RFC 9586) at the session level, each test quoting the
//! requirement it checks. Commands go the driver's way: imap-codec first, the extension
//! parsers of `cmd/ext.rs` for what it refuses. The e2e twins are in
//! `tests/tests/e2e/imap_searchres.rs`.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use postern_maildir::{Flags, Maildir};

use crate::imap::cmd::ext;
use crate::imap::session::{Flow, Session, SessionConfig, User};

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

/// Delivers `n` messages `Subject: m<i>`; those whose 1-based index is in `flagged` get
/// \Flagged.
fn fill(md: &Maildir, n: u32, flagged: &[u32]) {
    for i in 1..=n {
        let flags = Flags {
            flagged: flagged.contains(&i),
            ..Flags::default()
        };
        let m = format!("From: a@example.test\r\nSubject: m{i}\r\n\r\nbody {i}\r\n");
        md.deliver(None, m.as_bytes(), &flags).unwrap();
    }
}

/// Runs one command line as the driver does (imap-codec, else the extension parsers, else
/// `BAD`), returning what the server wrote.
fn run(s: &mut Session, line: &str) -> String {
    let raw = format!("{line}\r\n").into_bytes();
    let mut out = Vec::new();
    let mut f = match CommandCodec::default().decode(&raw) {
        Ok((b"", c)) => s.handle(c.into_static(), &mut out),
        _ => match ext::reparse(&raw) {
            Some(job) => job(s, &mut out),
            None => {
                let tag = line.split(' ').next().unwrap_or("*");
                out.extend_from_slice(format!("{tag} BAD Syntax error\r\n").as_bytes());
                Flow::Continue
            }
        },
    };
    while f == Flow::More {
        f = s.resume(&mut out);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The sequence numbers of `* n FETCH` lines, in order.
fn fetched(r: &str) -> Vec<u32> {
    r.lines()
        .filter(|l| l.contains(" FETCH ("))
        .filter_map(|l| l.split(' ').nth(1)?.parse().ok())
        .collect()
}

/// RFC 5182 §2.1 and §2.2: "SAVE … tells the server to remember the result of the SEARCH";
/// with SAVE alone "the server MUST NOT return ESEARCH"; `$` then stands for the saved
/// messages in FETCH — as sequence numbers in a non-UID command (no UID item added), as
/// UIDs in a UID command — and the commands run in the order sent (§2.1's pipelining).
#[test]
fn save_alone_answers_no_esearch_and_dollar_is_the_saved_messages() {
    let (_d, md) = setup();
    fill(&md, 5, &[2, 4]);
    // Sent as one pipeline, through the real framing.
    let out = crate::imap::fuzzing::run_imap(
        b"a SELECT INBOX\r\nb SEARCH RETURN (SAVE) FLAGGED\r\nc FETCH $ (FLAGS)\r\n\
          d UID FETCH $ (FLAGS)\r\n",
        Some(&md),
        1 << 16,
    );
    let out = String::from_utf8_lossy(&out);
    assert!(
        !out.contains("* ESEARCH") && !out.contains("* SEARCH"),
        "{out}"
    );
    assert!(out.contains("b OK"), "{out}");
    let (c, d) = out.split_once("c OK").unwrap();
    let c = c.split_once("b OK").unwrap().1;
    assert_eq!(fetched(c), vec![2, 4], "{out}");
    assert!(
        c.contains("* 2 FETCH (FLAGS (\\Flagged \\Recent))\r\n"),
        "{out}"
    );
    assert_eq!(fetched(d), vec![2, 4], "{out}");
    assert!(
        d.contains("* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))\r\n"),
        "{out}"
    );
    assert!(d.contains("d OK"), "{out}");
}

/// RFC 5182 §2.4: "If the SAVE result option is combined with the MIN or MAX result option,
/// and none of the other ESEARCH result options are present, the corresponding MIN/MAX is
/// returned …, but the "$" marker would contain a single message"; with both, "one or two
/// messages"; "If the SAVE result option is combined with the ALL and/or COUNT result
/// option(s), the "$" marker would always contain all messages found".
#[test]
fn save_with_min_max_keeps_those_and_with_all_or_count_everything() {
    let (_d, md) = setup();
    fill(&md, 6, &[2, 3, 5]);
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    let r = run(&mut s, "b SEARCH RETURN (SAVE MIN) FLAGGED");
    assert!(r.contains("* ESEARCH (TAG \"b\") MIN 2\r\n"), "{r}");
    assert_eq!(fetched(&run(&mut s, "c FETCH $ FLAGS")), vec![2]);
    let r = run(&mut s, "d UID SEARCH RETURN (MAX SAVE) FLAGGED");
    assert!(r.contains("* ESEARCH (TAG \"d\") UID MAX 5\r\n"), "{r}");
    assert_eq!(fetched(&run(&mut s, "e FETCH $ FLAGS")), vec![5]);
    run(&mut s, "f SEARCH RETURN (MIN MAX SAVE) FLAGGED");
    assert_eq!(fetched(&run(&mut s, "g FETCH $ FLAGS")), vec![2, 5]);
    let r = run(&mut s, "h SEARCH RETURN (SAVE MIN COUNT) FLAGGED");
    assert!(r.contains("MIN 2 COUNT 3"), "{r}");
    assert_eq!(fetched(&run(&mut s, "i FETCH $ FLAGS")), vec![2, 3, 5]);
    run(&mut s, "j SEARCH RETURN (SAVE MAX) FLAGGED");
    run(&mut s, "k SEARCH RETURN (SAVE ALL MAX) FLAGGED");
    assert_eq!(fetched(&run(&mut s, "l FETCH $ FLAGS")), vec![2, 3, 5]);
    // A SEARCH that finds nothing saves the empty list.
    run(&mut s, "m SEARCH RETURN (SAVE MIN) DELETED");
    let r = run(&mut s, "n FETCH $ FLAGS");
    assert!(fetched(&r).is_empty() && r.contains("n OK"), "{r}");
}

/// RFC 5182 §3 (`sequence-set =/ seq-last-command`): `$` works wherever a sequence set does
/// — STORE, COPY, MOVE, UID EXPUNGE — with the answers of the numbers it stands for
/// (COPYUID, FETCH of the new flags), and §2.1: "When a message listed in the search result
/// variable is expunged, it is automatically removed from the list."
#[test]
fn dollar_in_store_copy_move_and_uid_expunge() {
    let (_d, md) = setup();
    fill(&md, 5, &[1, 3]);
    md.create_folder("Archive").unwrap();
    md.create_folder("Moved").unwrap();
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    run(&mut s, "b SEARCH RETURN (SAVE) FLAGGED");
    let r = run(&mut s, "c STORE $ +FLAGS (\\Seen)");
    assert_eq!(fetched(&r), vec![1, 3], "{r}");
    let r = run(&mut s, "d COPY $ Archive");
    assert!(r.contains("d OK [COPYUID "), "{r}");
    assert!(r.contains(" 1,3 1:2]"), "{r}");
    run(&mut s, "e UID STORE $ +FLAGS.SILENT (\\Deleted)");
    run(&mut s, "f STORE 2 +FLAGS.SILENT (\\Deleted)");
    let r = run(&mut s, "g UID EXPUNGE $");
    // Only the saved messages go (3 first, numbers stay valid), 2 stays.
    assert_eq!(r.matches(" EXPUNGE\r\n").count(), 2, "{r}");
    assert!(r.contains("* 3 EXPUNGE\r\n* 1 EXPUNGE\r\n"), "{r}");
    // The expunged messages left `$`: nothing to fetch, move or expunge.
    let r = run(&mut s, "h FETCH $ FLAGS");
    assert!(fetched(&r).is_empty() && r.contains("h OK"), "{r}");
    let r = run(&mut s, "i MOVE $ Moved");
    assert!(r.contains("i OK") && !r.contains("EXPUNGE"), "{r}");
    // MOVE of a saved result, announced by sequence number.
    run(&mut s, "j SEARCH RETURN (SAVE) NOT DELETED");
    let r = run(&mut s, "k MOVE $ Moved");
    assert!(r.contains("* OK [COPYUID "), "{r}");
    assert!(r.contains("* 3 EXPUNGE\r\n* 2 EXPUNGE\r\n"), "{r}");
    assert_eq!(md.open_mailbox("Moved").unwrap().messages().len(), 2);
}

/// RFC 5182 §3: `$` as a search key (a sequence set) and as the set of `UID`, combined with
/// other keys; a bare `$` in a string position (`SUBJECT $`) stays a string, and so does a
/// literal `$`.
#[test]
fn dollar_as_search_key_uid_key_and_strings() {
    let (_d, md) = setup();
    fill(&md, 5, &[1, 2, 4]);
    md.deliver(
        None,
        b"From: a@example.test\r\nSubject: costs $ 5\r\n\r\nx\r\n",
        &Flags {
            flagged: true,
            ..Flags::default()
        },
    )
    .unwrap();
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    run(&mut s, "b SEARCH RETURN (SAVE) FLAGGED");
    run(&mut s, "c STORE 2 +FLAGS (\\Seen)");
    let r = run(&mut s, "d SEARCH $ UNSEEN");
    assert!(r.contains("* SEARCH 1 4 6\r\n"), "{r}");
    let r = run(&mut s, "e UID SEARCH UID $ SEEN");
    assert!(r.contains("* SEARCH 2\r\n"), "{r}");
    let r = run(&mut s, "f SEARCH OR $ 3 NOT 1");
    assert!(r.contains("* SEARCH 2 3 4 6\r\n"), "{r}");
    // `SUBJECT $` is imap-codec's (a string); the second `$` below is the marker.
    let r = run(&mut s, "g SEARCH SUBJECT $");
    assert!(r.contains("* SEARCH 6\r\n"), "{r}");
    let r = run(&mut s, "h SEARCH SUBJECT $ $");
    assert!(r.contains("* SEARCH 6\r\n"), "{r}");
    let r = run(&mut s, "i SEARCH NOT $ HEADER Subject $");
    assert!(r.contains("* SEARCH\r\n"), "{r}");
    // A `$` inside a literal is data, never a marker.
    let out = crate::imap::fuzzing::run_imap(
        b"a SELECT INBOX\r\nb SEARCH RETURN (SAVE) SUBJECT m\r\nc SEARCH SUBJECT {1}\r\n$ $\r\n",
        Some(&md),
        1 << 16,
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("* SEARCH\r\nc OK"), "{out}");
    // ESEARCH with `$` in the criteria, and SAVE replacing `$` with part of itself.
    let r = run(&mut s, "j SEARCH RETURN (SAVE COUNT) $ NOT 1");
    assert!(r.contains("* ESEARCH (TAG \"j\") COUNT 3\r\n"), "{r}");
    assert_eq!(fetched(&run(&mut s, "k FETCH $ FLAGS")), vec![2, 4, 6]);
    // SORT and THREAD take `$` too.
    let r = run(&mut s, "l UID SORT (REVERSE SUBJECT) UTF-8 $");
    assert!(r.contains("* SORT 4 2 6\r\n"), "{r}");
    let r = run(&mut s, "m THREAD ORDEREDSUBJECT UTF-8 UID $");
    assert!(r.contains("* THREAD "), "{r}");
}

/// RFC 5182 §2.1: "Upon successful completion of a SELECT or EXAMINE command …, the
/// current search result variable is reset to the empty sequence" (and leaving the
/// selected state drops it with the mailbox: CLOSE, UNSELECT).
#[test]
fn select_examine_close_unselect_reset_the_saved_result() {
    let (_d, md) = setup();
    fill(&md, 3, &[1, 2, 3]);
    let mut s = session(&md);
    for (again, what) in [
        ("SELECT INBOX", "SELECT"),
        ("EXAMINE INBOX", "EXAMINE"),
        ("UNSELECT", "UNSELECT"),
        ("CLOSE", "CLOSE"),
    ] {
        run(&mut s, "a SELECT INBOX");
        run(&mut s, "b SEARCH RETURN (SAVE) ALL");
        assert_eq!(fetched(&run(&mut s, "c FETCH $ FLAGS")), vec![1, 2, 3]);
        run(&mut s, &format!("d {again}"));
        run(&mut s, "e SELECT INBOX");
        let r = run(&mut s, "f FETCH $ FLAGS");
        assert!(
            fetched(&r).is_empty() && r.contains("f OK"),
            "after {what}: {r}"
        );
    }
    // Outside the selected state `$` is as BAD as any message command.
    run(&mut s, "g UNSELECT");
    let r = run(&mut s, "h FETCH $ FLAGS");
    assert!(r.starts_with("h BAD"), "{r}");
}

/// RFC 5182 §2.1: "A SEARCH command with the SAVE result option that caused the server to
/// return the NO tagged response sets the value of the search result variable to the empty
/// sequence", while "a SEARCH command that caused the server to return the BAD tagged
/// response" and "a successful SEARCH command with no SAVE result option" "MUST NOT change
/// the search result variable".
#[test]
fn a_failed_save_empties_the_result_bad_and_plain_searches_keep_it() {
    let (_d, md) = setup();
    fill(&md, 4, &[2, 3]);
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    run(&mut s, "b SEARCH RETURN (SAVE) FLAGGED");
    let r = run(&mut s, "c SEARCH RETURN (SAVE) BOGUS");
    assert!(r.starts_with("c BAD"), "{r}");
    let r = run(&mut s, "d SEARCH RETURN (SAVE) SINCE $");
    assert!(r.starts_with("d BAD"), "{r}");
    run(&mut s, "e SEARCH ALL");
    run(&mut s, "f SEARCH RETURN (COUNT) ALL");
    run(&mut s, "g UID SEARCH RETURN () ALL");
    assert_eq!(fetched(&run(&mut s, "h FETCH $ FLAGS")), vec![2, 3]);
    let r = run(&mut s, "i SEARCH RETURN (SAVE) CHARSET X-NOSUCH ALL");
    assert!(r.contains("i NO [BADCHARSET"), "{r}");
    let r = run(&mut s, "j FETCH $ FLAGS");
    assert!(fetched(&r).is_empty() && r.contains("j OK"), "{r}");
}

/// RFC 5182 §2.1: "If the server decides to send a new EXISTS response, it MUST NOT add any
/// new messages to the search result variable."
#[test]
fn new_messages_never_join_the_saved_result() {
    let (_d, md) = setup();
    fill(&md, 2, &[]);
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    run(&mut s, "b SEARCH RETURN (SAVE) ALL");
    fill(&md, 2, &[]);
    let r = run(&mut s, "c NOOP");
    assert!(r.contains("* 4 EXISTS"), "{r}");
    assert_eq!(fetched(&run(&mut s, "d FETCH $ FLAGS")), vec![1, 2]);
    let r = run(&mut s, "e UID SEARCH UID $");
    assert!(r.contains("* SEARCH 1 2\r\n"), "{r}");
}

/// Hostile input: `$` only as a whole sequence set (`1,$`, `$:3`, `$ $` are BAD and change
/// nothing), `$` in a date or number position is BAD, a SEARCH with more `$` than
/// [`super::MAX_MARKERS`] is refused with `NO [LIMIT]` before any work.
#[test]
fn dollar_where_it_is_not_allowed_is_bad() {
    let (_d, md) = setup();
    fill(&md, 3, &[1]);
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    run(&mut s, "b SEARCH RETURN (SAVE) FLAGGED");
    for (i, bad) in [
        "FETCH 1,$ FLAGS",
        "FETCH $,1 FLAGS",
        "FETCH $:3 FLAGS",
        "STORE $ $ +FLAGS (\\Deleted)",
        "STORE $ +FLAGS (\\Deleted) $",
        "UID COPY $ $ INBOX",
        "EXPUNGE $",
        "SEARCH LARGER $",
        "SEARCH $$",
        "SEARCH RETURN ($) ALL",
        "FETCH ($) FLAGS",
    ]
    .iter()
    .enumerate()
    {
        let r = run(&mut s, &format!("x{i} {bad}"));
        assert!(r.starts_with(&format!("x{i} BAD")), "{bad}: {r}");
    }
    // Nothing was changed by those.
    let r = run(&mut s, "c FETCH 1:* FLAGS");
    assert!(!r.contains("Deleted"), "{r}");
    assert_eq!(fetched(&run(&mut s, "d FETCH $ FLAGS")), vec![1]);
    let many = vec!["$"; 17].join(" ");
    let r = run(&mut s, &format!("e SEARCH {many}"));
    assert!(r.starts_with("e NO [LIMIT]"), "{r}");
    let ok = vec!["$"; 16].join(" ");
    let r = run(&mut s, &format!("f SEARCH {ok}"));
    assert!(r.contains("* SEARCH 1\r\nf OK"), "{r}");
}

/// The saved result costs at most one pair of UIDs per run of consecutive messages found,
/// whatever the client sends: every other message of 300 gives 150 runs, all of them one
/// run; `$` over it answers like the explicit set.
#[test]
fn a_large_saved_result_is_kept_as_runs() {
    let (_d, md) = setup();
    let flagged: Vec<u32> = (1..=300).filter(|i| i % 2 == 0).collect();
    fill(&md, 300, &flagged);
    let mut s = session(&md);
    run(&mut s, "a SELECT INBOX");
    run(&mut s, "b SEARCH RETURN (SAVE) FLAGGED");
    assert_eq!(s.state.sel().unwrap().saved.len(), 150);
    let r = run(&mut s, "c FETCH $ (FLAGS)");
    assert_eq!(fetched(&r), flagged);
    run(&mut s, "d SEARCH RETURN (SAVE) ALL");
    assert_eq!(s.state.sel().unwrap().saved, vec![(1, 300)]);
    // Expunging from the middle: a run now spans a gap, `$` still names what is left.
    run(&mut s, "e STORE 100:200 +FLAGS.SILENT (\\Deleted)");
    run(&mut s, "f EXPUNGE");
    let r = run(&mut s, "g FETCH $ (UID)");
    assert_eq!(fetched(&r), (1..=199).collect::<Vec<u32>>());
    let r = run(&mut s, "h UID SEARCH UID $ UID 95:205");
    assert!(
        r.contains("* SEARCH 95 96 97 98 99 201 202 203 204 205\r\n"),
        "{r}"
    );
}

/// RFC 9586 §3: "Once the UIDONLY extension is enabled …, the client MUST NOT use message
/// sequence numbers (including the special marker "*") in any arguments to IMAP commands,
/// and the server MUST return tagged BAD response if the client uses message sequence
/// numbers", with the UIDREQUIRED response code; nothing is done.
#[test]
fn uidonly_refuses_sequence_numbers_with_uidrequired() {
    let (_d, md) = setup();
    fill(&md, 3, &[1]);
    md.create_folder("Archive").unwrap();
    let mut s = session(&md);
    let r = run(&mut s, "a CAPABILITY");
    assert!(r.contains(" UIDONLY") && r.contains(" SEARCHRES"), "{r}");
    let r = run(&mut s, "b ENABLE UIDONLY");
    assert!(r.contains("* ENABLED UIDONLY\r\n"), "{r}");
    run(&mut s, "c SELECT INBOX");
    for (i, bad) in [
        "FETCH 1 FLAGS",
        "FETCH 1:* FLAGS",
        "STORE 1 +FLAGS (\\Deleted)",
        "COPY 1 Archive",
        "MOVE 1 Archive",
        "SEARCH ALL",
        "SEARCH RETURN (ALL) ALL",
        "UID SEARCH 1:2",
        "UID SEARCH RETURN (COUNT) OR 1 SEEN",
        "SORT (ARRIVAL) UTF-8 ALL",
        "UID SORT (ARRIVAL) UTF-8 NOT 1",
        "THREAD REFERENCES UTF-8 ALL",
        "FETCH $ FLAGS",
        "STORE $ +FLAGS (\\Deleted)",
    ]
    .iter()
    .enumerate()
    {
        let r = run(&mut s, &format!("x{i} {bad}"));
        assert!(
            r.starts_with(&format!("x{i} BAD [UIDREQUIRED]")),
            "{bad}: {r}"
        );
    }
    assert_eq!(md.open_mailbox("Archive").unwrap().messages().len(), 0);
    assert!(
        md.open_mailbox("INBOX")
            .unwrap()
            .messages()
            .iter()
            .all(|m| !m.flags.deleted)
    );
    // UID forms, `UID` keys and `$` in UID commands are fine.
    let r = run(&mut s, "d UID SEARCH UID 1:* FLAGGED");
    assert!(r.contains("* SEARCH 1\r\nd OK"), "{r}");
    let r = run(&mut s, "e UID SEARCH RETURN (SAVE MIN) ALL");
    assert!(r.contains("* ESEARCH (TAG \"e\") UID MIN 1\r\n"), "{r}");
    let r = run(&mut s, "f UID FETCH $ (FLAGS)");
    assert!(
        r.contains("* 1 UIDFETCH (FLAGS (\\Flagged \\Recent))\r\nf OK"),
        "{r}"
    );
    let r = run(&mut s, "g UID SORT (ARRIVAL) UTF-8 UID 2:3");
    assert!(r.contains("* SORT 2 3\r\n"), "{r}");
}

/// RFC 9586 §3.3: FETCH responses are replaced by `* <uid> UIDFETCH (…)`, for UID FETCH,
/// UID STORE and unsolicited flag changes alike; §3.2: expunges are reported with VANISHED
/// (never `* n EXPUNGE`), even without QRESYNC; SELECT sends no `[UNSEEN n]`.
#[test]
fn uidonly_answers_uidfetch_and_vanished() {
    let (_d, md) = setup();
    fill(&md, 4, &[]);
    let mut other = session(&md);
    run(&mut other, "a SELECT INBOX");
    run(&mut other, "b STORE 1 +FLAGS (\\Deleted)");
    run(&mut other, "c EXPUNGE");
    let mut s = session(&md);
    run(&mut s, "a ENABLE UIDONLY");
    let r = run(&mut s, "b SELECT INBOX");
    assert!(!r.contains("UNSEEN"), "{r}");
    // Sequence number 1 is UID 2 now: the UIDFETCH line names the UID.
    let r = run(&mut s, "c UID FETCH 2:3 (FLAGS)");
    assert!(
        r.contains("* 2 UIDFETCH (FLAGS ())\r\n* 3 UIDFETCH (FLAGS ())\r\nc OK"),
        "{r}"
    );
    let r = run(
        &mut s,
        "d UID FETCH 4 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])",
    );
    assert!(r.starts_with("* 4 UIDFETCH (UID 4 RFC822.SIZE "), "{r}");
    assert!(r.contains("Subject: m4"), "{r}");
    assert!(!r.contains(" FETCH ("), "{r}");
    let r = run(&mut s, "e UID STORE 3 +FLAGS (\\Seen)");
    assert!(r.contains("* 3 UIDFETCH (FLAGS (\\Seen))\r\ne OK"), "{r}");
    // Another session's change arrives as UIDFETCH, its expunge as VANISHED.
    run(&mut other, "d STORE 3 +FLAGS (\\Flagged)");
    run(&mut other, "e STORE 1 +FLAGS.SILENT (\\Deleted)");
    run(&mut other, "f EXPUNGE");
    let r = run(&mut s, "f NOOP");
    assert!(r.contains("* VANISHED 2\r\n"), "{r}");
    assert!(r.contains("* 4 UIDFETCH (FLAGS (\\Flagged))\r\n"), "{r}");
    assert!(!r.contains("EXPUNGE") && !r.contains(" FETCH ("), "{r}");
    let r = run(&mut s, "g UID STORE 3 +FLAGS.SILENT (\\Deleted)");
    assert!(r.starts_with("g OK"), "{r}");
    let r = run(&mut s, "h EXPUNGE");
    assert!(r.contains("* VANISHED 3\r\nh OK"), "{r}");
    // CONDSTORE: MODSEQ rides in the UIDFETCH response.
    let r = run(&mut s, "i UID FETCH 4 (FLAGS MODSEQ)");
    assert!(
        r.starts_with("* 4 UIDFETCH (FLAGS (\\Flagged) MODSEQ ("),
        "{r}"
    );
}

/// The marker scan skips quoted strings (with escapes) and literal data (synchronising,
/// LITERAL+ and literal8 announcements), and finds a `$` only standing alone; a literal
/// announcing more than the command holds ends the scan.
#[test]
fn markers_are_found_outside_strings_and_literals_only() {
    let raw = b"a SEARCH SUBJECT \"x \\\" $ \" TEXT {3+}\r\n$ $ $ (~{1}\r\n$ $) $$ $1\r\n";
    let found = super::markers(raw, 17);
    let text = String::from_utf8_lossy(raw);
    assert_eq!(found.len(), 2, "{found:?} in {text}");
    for &i in &found {
        assert_eq!(raw[i], b'$');
    }
    // The `$` after `{3+}\r\n$ $` (the literal holds `$ $`) and the one closing the list.
    assert_eq!(found[0], text.find("$ $ (~").unwrap() + 2);
    assert_eq!(found[1], text.find("$) $$").unwrap());
    assert!(super::markers(b"a SEARCH {99999999999}\r\n$\r\n", 17).is_empty());
    assert_eq!(
        super::markers(&[b" $".repeat(40), b"\r\n".to_vec()].concat(), 17).len(),
        17
    );
}
