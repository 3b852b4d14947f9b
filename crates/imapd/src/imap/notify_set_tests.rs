//! NOTIFY (RFC 5465) on a temp Maildir, no sockets. Without a notifier the session polls, so
//! each `wake` looks at every followed mailbox; `watches_are_capped_and_the_rest_polled` runs
//! the real inotify group.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use postern_maildir::metadata::{MetadataLimits, MetadataTarget};
use postern_maildir::{Flags, Maildir};

use super::super::cmd::auth::Action;
use super::super::cmd::notify_cmd;
use super::super::notify::Notifier;
use super::super::session::{Flow, Session, SessionConfig, User};
use super::*;

fn session(md: &Maildir) -> Session {
    let mut s = Session::new(
        SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: true,
        },
        true,
        false,
    );
    s.login(User {
        name: "a@example.test".into(),
        maildir: md.clone(),
        quota_bytes: None,
    });
    s
}

/// Runs one command as the driver does (`begin`, so the session's own changes are absorbed;
/// NOTIFY through its ext parser).
fn run(s: &mut Session, line: &str) -> String {
    let raw = format!("{line}\r\n");
    let mut out = Vec::new();
    if let Some(job) = notify_cmd::job(raw.as_bytes()) {
        let mut f = job(s, &mut out);
        while f == Flow::More {
            f = s.resume(&mut out);
        }
        return String::from_utf8_lossy(&out).into_owned();
    }
    let (rem, c) = CommandCodec::default()
        .decode(raw.as_bytes())
        .unwrap_or_else(|e| panic!("cannot parse {line:?}: {e:?}"));
    assert!(rem.is_empty());
    match s.begin(c.into_static(), &mut out) {
        Action::Done(mut f) => {
            while f == Flow::More {
                f = s.resume(&mut out);
            }
        }
        _ => panic!("unexpected action"),
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn wake(s: &mut Session) -> String {
    let mut out = Vec::new();
    s.notify_wake(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` has begun the RENAME `line` (tag and CRLF included): what it will touch is known and
/// the rename logged, as when its command starts; the directories have not moved yet.
fn rename_begun(s: &Session, line: &[u8]) -> Option<Touched> {
    let (_, cmd) = CommandCodec::default().decode(line).expect("RENAME parses");
    s.notify_touched(&cmd.into_static().body)
}

fn msg(subject: &str) -> Vec<u8> {
    format!("From: a@example.test\r\nSubject: {subject}\r\n\r\nhello\r\n").into_bytes()
}

fn deliver(md: &Maildir, folder: Option<&str>, subject: &str) {
    md.deliver(folder, &msg(subject), &Flags::default())
        .unwrap();
}

fn setup() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    (dir, md)
}

const SET: &str = "n NOTIFY SET (selected (MessageNew (UID FLAGS) MessageExpunge)) \
                   (personal (MessageNew MessageExpunge))";

/// §5.2/§5.3: mail delivered to a non-selected mailbox is a STATUS with MESSAGES, UIDNEXT and
/// UIDVALIDITY; an expunge there likewise; the selected mailbox gets EXISTS and MessageNew's
/// FETCH (UID FLAGS); NOTIFY NONE ends it all.
#[test]
fn new_mail_elsewhere_is_a_status_and_in_the_selected_mailbox_exists_and_fetch() {
    let (_d, md) = setup();
    md.create_folder("Work").unwrap();
    let mut s = session(&md);
    run(&mut s, "s SELECT INBOX");
    let r = run(&mut s, SET);
    assert!(r.contains("n OK"), "{r}");
    assert_eq!(wake(&mut s), "", "nothing changed yet");

    deliver(&md, Some("Work"), "one");
    let r = wake(&mut s);
    let v = md.open_mailbox("Work").unwrap().uid_validity();
    assert_eq!(
        r,
        format!("* STATUS \"Work\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY {v})\r\n"),
        "{r}"
    );
    assert_eq!(wake(&mut s), "", "reported once");

    deliver(&md, None, "inbox");
    let r = wake(&mut s);
    assert!(r.contains("* 1 EXISTS\r\n"), "{r}");
    assert!(r.contains("* 1 FETCH (UID 1 FLAGS (\\Recent))"), "{r}");
    assert!(
        !r.contains("STATUS"),
        "§3: never STATUS for the selected mailbox: {r}"
    );
    assert!(
        !r.contains("N OK"),
        "the internal FETCH's tagged line stays inside: {r}"
    );

    // Another session expunges in Work.
    let mut other = md.open_mailbox("Work").unwrap();
    other.expunge(&[1]).unwrap();
    let r = wake(&mut s);
    assert!(
        r.starts_with("* STATUS \"Work\" (MESSAGES 0 UIDNEXT 2 "),
        "{r}"
    );

    let r = run(&mut s, "x NOTIFY NONE");
    assert!(r.contains("x OK"), "{r}");
    deliver(&md, Some("Work"), "two");
    assert_eq!(wake(&mut s), "");
}

/// §3.1 STATUS indicator: the followed mailboxes' STATUS at once (not the selected one); with
/// CONDSTORE HIGHESTMODSEQ too.
#[test]
fn the_status_option_reports_every_followed_mailbox_first() {
    let (_d, md) = setup();
    md.create_folder("A").unwrap();
    md.create_folder("B").unwrap();
    deliver(&md, Some("A"), "a");
    let mut s = session(&md);
    run(&mut s, "e ENABLE CONDSTORE");
    run(&mut s, "s SELECT B");
    let r = run(
        &mut s,
        "n NOTIFY SET STATUS (selected (MessageNew MessageExpunge)) \
         (personal (MessageNew MessageExpunge))",
    );
    assert!(
        r.contains("* STATUS \"A\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "),
        "{r}"
    );
    assert!(r.contains("HIGHESTMODSEQ"), "{r}");
    assert!(r.contains("* STATUS \"INBOX\" (MESSAGES 0 "), "{r}");
    assert!(!r.contains("* STATUS \"B\""), "{r}");
    assert!(r.ends_with("n OK NOTIFY completed\r\n"), "{r}");
}

/// The session's own APPEND, CREATE and SUBSCRIBE are not reported back to it; another
/// party's are (§5.4 MailboxName, §5.5 SubscriptionChange).
#[test]
fn own_changes_are_not_reported_and_others_are() {
    let (_d, md) = setup();
    md.create_folder("Work").unwrap();
    let mut s = session(&md);
    run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge MailboxName SubscriptionChange))",
    );
    let r = run(&mut s, "a APPEND Work {4+}\r\nhi\r\n");
    assert!(r.contains("a OK"), "{r}");
    run(&mut s, "c CREATE Mine");
    run(&mut s, "u SUBSCRIBE Mine");
    assert_eq!(wake(&mut s), "", "own changes");

    deliver(&md, Some("Work"), "x");
    md.create_folder("Theirs").unwrap();
    md.set_subscribed("Theirs", true).unwrap();
    let r = wake(&mut s);
    assert!(
        r.contains("* STATUS \"Work\" (MESSAGES 2 UIDNEXT 3 "),
        "{r}"
    );
    assert!(r.contains("* LIST () \"/\" \"Theirs\"\r\n"), "{r}");
    assert!(
        r.contains("* LIST (\\Subscribed) \"/\" \"Theirs\"\r\n"),
        "{r}"
    );
    // A new folder is followed: mail to it is reported.
    deliver(&md, Some("Theirs"), "y");
    let r = wake(&mut s);
    assert!(
        r.contains("* STATUS \"Theirs\" (MESSAGES 1 UIDNEXT 2 "),
        "{r}"
    );

    md.delete_folder("Theirs").unwrap();
    let r = wake(&mut s);
    assert!(
        r.contains("* LIST (\\NonExistent) \"/\" \"Theirs\"\r\n"),
        "{r}"
    );
}

/// §5.1: a flag change elsewhere is reported only with FlagChange; the first group that
/// matches a mailbox decides (NONE excludes it).
#[test]
fn flag_changes_need_flagchange_and_the_first_matching_group_wins() {
    let (_d, md) = setup();
    md.create_folder("F").unwrap();
    md.create_folder("G").unwrap();
    md.create_folder("Quiet").unwrap();
    deliver(&md, Some("F"), "f");
    deliver(&md, Some("G"), "g");
    let mut s = session(&md);
    run(
        &mut s,
        "n NOTIFY SET STATUS (mailboxes Quiet NONE) (mailboxes F (MessageNew MessageExpunge \
         FlagChange)) (personal (MessageNew MessageExpunge))",
    );
    let seen = Flags {
        seen: true,
        ..Flags::default()
    };
    for name in ["F", "G"] {
        let mut m = md.open_mailbox(name).unwrap();
        m.store_flags(1, postern_maildir::FlagOp::Add, &seen, None)
            .unwrap();
        m.sync_flag_changes().unwrap();
    }
    let r = wake(&mut s);
    assert!(r.contains("* STATUS \"F\" "), "{r}");
    assert!(!r.contains("* STATUS \"G\" "), "{r}");
    deliver(&md, Some("Quiet"), "q");
    assert_eq!(wake(&mut s), "");
}

/// §6 selected-delayed: an expunge by another session waits for a command that allows it;
/// `selected` sends it between commands.
#[test]
fn selected_delayed_holds_expunges_until_a_command_allows_them() {
    let (_d, md) = setup();
    deliver(&md, None, "1");
    deliver(&md, None, "2");
    let mut s = session(&md);
    run(&mut s, "s SELECT INBOX");
    run(
        &mut s,
        "n NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))",
    );
    md.open_mailbox("INBOX").unwrap().expunge(&[1]).unwrap();
    let r = wake(&mut s);
    assert!(!r.contains("EXPUNGE"), "{r}");
    let r = run(&mut s, "x NOOP");
    assert!(r.contains("* 1 EXPUNGE"), "{r}");

    run(
        &mut s,
        "n NOTIFY SET (selected (MessageNew MessageExpunge))",
    );
    md.open_mailbox("INBOX").unwrap().expunge(&[2]).unwrap();
    let r = wake(&mut s);
    assert!(r.contains("* 1 EXPUNGE"), "{r}");
}

/// §5.6/§5.7: metadata written by someone else is a METADATA response naming the entries.
#[test]
fn metadata_changes_name_their_entries() {
    let (_d, md) = setup();
    md.create_folder("M").unwrap();
    let mut s = session(&md);
    run(
        &mut s,
        "n NOTIFY SET (personal (MailboxMetadataChange ServerMetadataChange))",
    );
    let limits = MetadataLimits {
        max_value_bytes: 1024,
        max_entries_per_mailbox: 10,
        max_entries_per_user: 100,
        max_bytes_per_user: 1 << 20,
    };
    md.set_metadata(
        MetadataTarget::Mailbox("M"),
        &[("/private/comment".into(), Some(b"hi".to_vec()))],
        &limits,
    )
    .unwrap()
    .unwrap();
    md.set_metadata(
        MetadataTarget::Server,
        &[("/shared/vendor/x".into(), Some(b"1".to_vec()))],
        &limits,
    )
    .unwrap()
    .unwrap();
    let r = wake(&mut s);
    assert!(
        r.contains("* METADATA \"M\" (\"/private/comment\")\r\n"),
        "{r}"
    );
    assert!(
        r.contains("* METADATA \"\" (\"/shared/vendor/x\")\r\n"),
        "{r}"
    );
    assert_eq!(wake(&mut s), "");
}

/// Limits: more followed mailboxes than MAX_TRACKED is NO [LIMIT] at SET (nothing changed);
/// growing past it later is `* OK [NOTIFICATIONOVERFLOW]` and NOTIFY ends (§3.1).
#[test]
fn too_many_mailboxes_is_limit_then_overflow() {
    let (_d, md) = setup();
    // INBOX and the five special-use folders made at login count too.
    for i in 0..MAX_TRACKED - 6 - 5 {
        md.create_folder(&format!("f{i}")).unwrap();
    }
    let mut s = session(&md);
    let r = run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    assert!(r.contains("n OK"), "{r}");
    for i in 0..10 {
        md.create_folder(&format!("g{i}")).unwrap();
    }
    let r = wake(&mut s);
    assert!(r.contains("* OK [NOTIFICATIONOVERFLOW]"), "{r}");
    assert!(s.notify.state.is_none());
    let r = run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    assert!(r.contains("n NO [LIMIT]"), "{r}");
    assert!(s.notify.state.is_none());
    // A smaller filter still works.
    let r = run(&mut s, "n NOTIFY SET (inboxes (MessageNew MessageExpunge))");
    assert!(r.contains("n OK"), "{r}");
}

/// Refusals through the real command path: BADEVENT lists what is supported, BAD for the
/// rules, LIMIT for thousands of names; a refused SET leaves the active one as it was.
#[test]
fn refusals_change_nothing() {
    let (_d, md) = setup();
    md.create_folder("Work").unwrap();
    let mut s = session(&md);
    run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    let r = run(
        &mut s,
        "b NOTIFY SET (personal (MessageNew MessageExpunge Nope))",
    );
    assert!(
        r.starts_with("b NO [BADEVENT (MessageNew MessageExpunge FlagChange"),
        "{r}"
    );
    let r = run(&mut s, "c NOTIFY SET (personal (MessageNew))");
    assert!(r.starts_with("c BAD"), "{r}");
    let many: Vec<String> = (0..3000).map(|i| format!("m{i}")).collect();
    let r = run(
        &mut s,
        &format!("d NOTIFY SET (mailboxes ({}) NONE)", many.join(" ")),
    );
    assert!(r.starts_with("d NO [LIMIT]"), "{r}");
    deliver(&md, Some("Work"), "w");
    assert!(
        wake(&mut s).contains("* STATUS \"Work\""),
        "the first SET is still on"
    );
    // Through the fuzzing entry too (imap-codec refuses NOTIFY; the ext hook answers).
    let out = crate::imap::fuzzing::run_imap(
        b"a NOTIFY SET (inboxes (Foo))\r\nb NOTIFY NONE\r\n",
        Some(&md),
        1 << 16,
    );
    let out = String::from_utf8_lossy(&out);
    assert!(out.contains("a NO [BADEVENT ("), "{out}");
    assert!(out.contains("b OK"), "{out}");
}

/// With the real inotify group: INBOX and the first MAX_WATCHED mailboxes are watched (two
/// watches each, plus one for the root), the rest polled in rounds; a delivery to a watched
/// folder ticks the group at once and names its directory, one to a polled folder is found by
/// the polling. Dropping the state gives every watch back.
#[test]
fn watches_are_capped_and_the_rest_polled() {
    let Some(n) = Notifier::start() else {
        eprintln!("no inotify here; skipped");
        return;
    };
    let (_d, md) = setup();
    // MAX_TRACKED is 40 in tests: 30 folders, INBOX and the five special-use folders.
    for i in 0..30 {
        md.create_folder(&format!("f{i:02}")).unwrap();
    }
    let mut s = session(&md);
    s.notify.notifier = Some(n.clone());
    let before = n.watch_count();
    let r = run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    assert!(r.contains("n OK"), "{r}");
    let (watched, tracked) = watched_count(&s);
    assert_eq!(tracked, 36);
    assert_eq!(watched, MAX_WATCHED);
    assert!(st_watched(&s, "INBOX") && st_watched(&s, "f00"));
    assert_eq!(n.watch_count() - before, 1 + 2 * watched);
    let mut rx = s
        .notify
        .state
        .as_ref()
        .unwrap()
        .waker
        .group
        .as_ref()
        .unwrap()
        .rx
        .clone();
    rx.mark_unchanged();
    deliver(&md, Some("f01"), "x");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), rx.changed())
            .await
            .expect("the group ticks")
            .unwrap();
    });
    // f01 is watched, not polled, and no full round is due: only its dirty mark gets it
    // looked at.
    assert!(st_watched(&s, "f01"));
    let r = wake(&mut s);
    assert!(r.contains("* STATUS \"f01\" (MESSAGES 1 "), "{r}");
    // f29 is beyond the watch cap: polled.
    assert!(!st_watched(&s, "f29"));
    deliver(&md, Some("f29"), "y");
    // Found within the rounds it takes to go round the polled ones.
    let r: String = (0..(tracked - watched).div_ceil(POLL_BATCH))
        .map(|_| wake(&mut s))
        .collect();
    assert!(r.contains("* STATUS \"f29\" (MESSAGES 1 "), "{r}");
    s.notify.state = None;
    assert_eq!(n.watch_count(), before);
}

/// Polling rounds: each wake looks at POLL_BATCH polled mailboxes from where the last one
/// stopped, so changes everywhere are all reported within ceil(n / POLL_BATCH) wakes, none
/// twice.
#[test]
fn polling_rounds_cover_every_mailbox_in_turn() {
    let (_d, md) = setup();
    for i in 0..30 {
        md.create_folder(&format!("p{i:02}")).unwrap();
    }
    let mut s = session(&md);
    run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    let (_, tracked) = watched_count(&s);
    assert_eq!(tracked, 36);
    for name in md.list_folders().unwrap() {
        deliver(&md, Some(&name), "x");
    }
    deliver(&md, None, "x");
    let mut seen = BTreeSet::new();
    for round in 0..tracked.div_ceil(POLL_BATCH) {
        let r = wake(&mut s);
        let lines: Vec<&str> = r.lines().filter(|l| l.starts_with("* STATUS")).collect();
        assert!(lines.len() <= POLL_BATCH, "round {round}: {r}");
        for l in lines {
            assert!(seen.insert(l.to_owned()), "reported twice: {l}");
        }
    }
    assert_eq!(seen.len(), tracked, "{seen:?}");
    assert_eq!(wake(&mut s), "");
}

/// Commands recovered by cmd/ext.rs: a MULTIAPPEND of the session into a followed mailbox
/// is taken in like a plain APPEND (the driver calls notify_touched_raw/notify_absorb).
#[test]
fn own_multiappend_is_not_reported() {
    let (_d, md) = setup();
    md.create_folder("Work").unwrap();
    let mut s = session(&md);
    run(
        &mut s,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    let raw = b"m APPEND \"Work\" {2+}\r\nab {2+}\r\ncd\r\n";
    let touched = s.notify_touched_raw(raw);
    assert!(touched.is_some());
    let job = crate::imap::cmd::ext::reparse(raw).expect("MULTIAPPEND is recovered");
    let mut out = Vec::new();
    assert_eq!(job(&mut s, &mut out), Flow::Continue);
    let r = String::from_utf8_lossy(&out).into_owned();
    assert!(r.contains("m OK"), "{r}");
    s.notify_absorb(touched, &mut out);
    assert_eq!(wake(&mut s), "");
    // Without the absorption the two messages would be reported.
    deliver(&md, Some("Work"), "x");
    assert!(wake(&mut s).contains("MESSAGES 3 "));
}

fn st_watched(s: &Session, name: &str) -> bool {
    s.notify.state.as_ref().unwrap().tracked[name].watched
}

/// MessageNew with a fetch-att list (§5.2) on many large new messages: one wake answers at
/// most about one FETCH chunk (1 MiB, plus the message that crosses it), not every new
/// message's `BODY[]` in one buffer (memory per session would grow with the mail that
/// arrived); the rest follow on the next wakes, which come at once, each message exactly
/// once.
#[test]
fn message_new_fetches_are_bounded_per_wake() {
    let (_d, md) = setup();
    let mut s = session(&md);
    run(&mut s, "s SELECT INBOX");
    let r = run(
        &mut s,
        "n NOTIFY SET (selected (MessageNew (UID BODY.PEEK[]) MessageExpunge))",
    );
    assert!(r.contains("n OK"), "{r}");
    let body = "x".repeat(400 * 1024);
    for i in 1..=8 {
        let m = format!("Subject: big {i}\r\n\r\n{body}\r\n");
        md.deliver(None, m.as_bytes(), &Flags::default()).unwrap();
    }
    let mut seen = Vec::new();
    for round in 0..20 {
        if round > 0 {
            // The rest is not left waiting for the next change or the 30 s recheck: the
            // session is woken again at once.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let w = s.notify_waker().unwrap();
            let soon = rt.block_on(async {
                tokio::time::timeout(Duration::from_millis(500), w.changed()).await
            });
            assert!(soon.is_ok(), "round {round}: no wake for the rest");
        }
        let r = wake(&mut s);
        assert!(
            r.len() < (1 << 20) + 600 * 1024,
            "round {round}: {} bytes in one wake",
            r.len()
        );
        for i in 1..=8 {
            if r.contains(&format!("Subject: big {i}\r\n")) {
                seen.push(i);
            }
        }
        if seen.len() >= 8 {
            break;
        }
    }
    assert_eq!(seen, (1..=8).collect::<Vec<_>>());
    assert_eq!(wake(&mut s), "", "each message once");
}

fn session_as(md: &Maildir, name: &str) -> Session {
    let mut s = Session::new(
        SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: true,
        },
        true,
        false,
    );
    s.login(User {
        name: name.into(),
        maildir: md.clone(),
        quota_bytes: None,
    });
    s
}

/// Fairness of the process-wide watch cap (issue 13): one user's many NOTIFY sessions, each
/// following different folders, cannot take every watch of the process (MAX_GROUP_WATCHES,
/// 64 in tests): a user holds at most MAX_USER_WATCHES distinct watches (24 in tests), the rest
/// of its mailboxes polled, and another user's session afterwards still gets its full
/// MAX_WATCHED. Seen failing before the per-user share: the second user got 0 of 8 watched
/// (`left: 0, right: 8`).
#[test]
fn one_user_cannot_take_every_watch_of_the_process() {
    let Some(n) = Notifier::start() else {
        eprintln!("no inotify here; skipped");
        return;
    };
    let (_d, greedy_md) = setup();
    for g in 0..4 {
        for i in 0..8 {
            greedy_md.create_folder(&format!("g{g}/f{i}")).unwrap();
        }
    }
    let mut greedy = Vec::new();
    for g in 0..4 {
        let mut s = session_as(&greedy_md, "greedy@example.test");
        s.notify.notifier = Some(n.clone());
        let r = run(
            &mut s,
            &format!("n NOTIFY SET (subtree g{g} (MessageNew MessageExpunge))"),
        );
        assert!(r.contains("n OK"), "{r}");
        greedy.push(s);
    }
    // Still followed, by polling: a delivery into an unwatched one is found.
    let s = greedy.last_mut().unwrap();
    let (w, t) = watched_count(s);
    assert!(w < t, "{w} {t}");
    deliver(&greedy_md, Some("g3/f7"), "x");
    let r: String = (0..t.div_ceil(POLL_BATCH)).map(|_| wake(s)).collect();
    assert!(r.contains("* STATUS \"g3/f7\" (MESSAGES 1 "), "{r}");

    let (_d2, md) = setup();
    for i in 0..10 {
        md.create_folder(&format!("f{i:02}")).unwrap();
    }
    let mut other = session_as(&md, "other@example.test");
    other.notify.notifier = Some(n.clone());
    let r = run(
        &mut other,
        "n NOTIFY SET (personal (MessageNew MessageExpunge))",
    );
    assert!(r.contains("n OK"), "{r}");
    assert_eq!(watched_count(&other).0, MAX_WATCHED);
    let greedy_watched: usize = greedy.iter().map(|s| watched_count(s).0).sum();
    assert!(
        2 * greedy_watched < super::super::notify::MAX_USER_WATCHES,
        "{greedy_watched}"
    );
    drop(greedy);
    drop(other);
}

/// §3.1 STATUS indicator over many mailboxes: the command answers them in chunks of at most
/// STATUS_CHUNK opened mailboxes (4 in tests; 100 in the server) per call, each chunk going
/// out before the next is worked out (`Flow::More`, as FETCH does), so one command's work per
/// step and the output held at once stay bounded however many mailboxes (up to 10,000) are
/// followed; every mailbox is answered exactly once and the tagged OK comes last. Seen
/// failing before the chunking: the first call answered all 36 mailboxes and the tagged OK
/// (`Flow::Continue`).
#[test]
fn set_status_is_answered_in_bounded_chunks() {
    let (_d, md) = setup();
    for i in 0..30 {
        md.create_folder(&format!("c{i:02}")).unwrap();
    }
    deliver(&md, Some("c29"), "x");
    let mut s = session(&md);
    let job =
        notify_cmd::job(b"n NOTIFY SET STATUS (personal (MessageNew MessageExpunge))\r\n").unwrap();
    let mut out = Vec::new();
    let mut f = job(&mut s, &mut out);
    let mut calls = 1;
    let first = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(f, Flow::More, "{first}");
    assert!(
        first.matches("* STATUS ").count() <= STATUS_CHUNK,
        "{first}"
    );
    assert!(!first.contains("n OK"), "{first}");
    // Nothing is followed until the command completes.
    assert!(s.notify.state.is_none());
    while f == Flow::More {
        let before = out.len();
        f = s.resume(&mut out);
        calls += 1;
        let chunk = String::from_utf8_lossy(&out[before..]).into_owned();
        assert!(
            chunk.matches("* STATUS ").count() <= STATUS_CHUNK,
            "{chunk}"
        );
        assert!(calls < 100);
    }
    let all = String::from_utf8_lossy(&out).into_owned();
    assert_eq!(all.matches("* STATUS ").count(), 36, "{all}");
    for i in 0..30 {
        assert_eq!(
            all.matches(&format!("* STATUS \"c{i:02}\" ")).count(),
            1,
            "{all}"
        );
    }
    assert!(
        all.contains("* STATUS \"c29\" (MESSAGES 1 UIDNEXT 2 "),
        "{all}"
    );
    assert!(all.ends_with("n OK NOTIFY completed\r\n"), "{all}");
    assert_eq!(all.matches("n OK").count(), 1, "{all}");
    assert!(calls >= 36 / STATUS_CHUNK, "{calls}");
    // Then followed as usual: a later delivery is reported once.
    deliver(&md, Some("c00"), "y");
    let r = (0..36usize.div_ceil(POLL_BATCH))
        .map(|_| wake(&mut s))
        .collect::<String>();
    assert_eq!(r.matches("* STATUS \"c00\" (MESSAGES 1 ").count(), 1, "{r}");
}

/// RFC 5465 §5.4 MailboxName: "For each LISTable mailbox renamed, the server sends an
/// extended LIST response [RFC5258] for the new mailbox name, containing the OLDNAME extended
/// data item with the old mailbox name"; its children are renamed with it and get no events
/// of their own. A RENAME by another session of this process is known to it: the follower
/// gets `* LIST () "/" "B" ("OLDNAME" ("A"))` and neither a `\NonExistent` for A nor a plain
/// LIST for B or the children. A rename done outside imapd stays a removal and a creation.
/// Seen failing before: the follower got `* LIST () "/" "B"`, `* LIST () "/" "B/c"`,
/// `* LIST (\NonExistent) "/" "A"` and `* LIST (\NonExistent) "/" "A/c"`.
#[test]
fn a_rename_by_another_session_is_one_list_with_oldname() {
    let (_d, md) = setup();
    md.create_folder("A").unwrap();
    md.create_folder("A/c").unwrap();
    md.create_folder("X").unwrap();
    let mut follower = session(&md);
    let r = run(&mut follower, "n NOTIFY SET (personal (MailboxName))");
    assert!(r.contains("n OK"), "{r}");
    let mut other = session(&md);
    let r = run(&mut other, "r RENAME A B");
    assert!(r.contains("r OK"), "{r}");
    let r = wake(&mut follower);
    assert_eq!(r, "* LIST () \"/\" \"B\" (\"OLDNAME\" (\"A\"))\r\n");
    assert_eq!(wake(&mut follower), "");
    // Outside imapd: a removal and a creation.
    md.rename_folder("X", "Y").unwrap();
    let r = wake(&mut follower);
    assert!(r.contains("* LIST () \"/\" \"Y\"\r\n"), "{r}");
    assert!(r.contains("* LIST (\\NonExistent) \"/\" \"X\"\r\n"), "{r}");
    assert!(!r.contains("OLDNAME"), "{r}");
    // A failed RENAME is not announced.
    let r = run(&mut other, "r RENAME Nope Z");
    assert!(r.contains("r NO"), "{r}");
    assert_eq!(wake(&mut follower), "");
}

/// §5.4 with the other race the e2e test met: on disk a RENAME moves the folder and then
/// each child (Maildir++ keeps them side by side), so a follower can look in between. It
/// gets the LIST with OLDNAME when it sees the folder moved, and nothing when it later sees
/// the children moved with it. Seen failing in `.ci/run`: `* LIST (\NonExistent) "/"
/// "Old/kid"` and `* LIST () "/" "New/kid"` after the OLDNAME line.
#[test]
fn children_seen_moving_after_their_renamed_parent_stay_quiet() {
    let (d, md) = setup();
    md.create_folder("A").unwrap();
    md.create_folder("A/c").unwrap();
    let mut follower = session(&md);
    let r = run(&mut follower, "n NOTIFY SET (personal (MailboxName))");
    assert!(r.contains("n OK"), "{r}");
    let mut other = session(&md);
    let touched = rename_begun(&other, b"r RENAME A B\r\n");
    // The folder has moved, its child not yet.
    std::fs::rename(md.root().join(".A"), md.root().join(".B")).unwrap();
    let r = wake(&mut follower);
    assert_eq!(r, "* LIST () \"/\" \"B\" (\"OLDNAME\" (\"A\"))\r\n");
    std::fs::rename(md.root().join(".A.c"), md.root().join(".B.c")).unwrap();
    assert_eq!(wake(&mut follower), "");
    let mut out = Vec::new();
    other.notify_absorb(touched, &mut out);
    assert_eq!(wake(&mut follower), "");
    // A child moved by itself outside imapd is still a removal and a creation.
    md.rename_folder("B/c", "D").unwrap();
    let r = wake(&mut follower);
    assert!(r.contains("* LIST () \"/\" \"D\"\r\n"), "{r}");
    assert!(
        r.contains("* LIST (\\NonExistent) \"/\" \"B/c\"\r\n"),
        "{r}"
    );
    // A directory read during a rename may see neither name: the old one gone is quiet, the
    // new one is announced with OLDNAME when it shows up, its child when moved is quiet.
    md.create_folder("E").unwrap();
    md.create_folder("E/k").unwrap();
    assert!(wake(&mut follower).contains("\"E/k\""));
    let touched = rename_begun(&other, b"r RENAME E F\r\n");
    let parked = d.path().join("parked");
    std::fs::rename(md.root().join(".E"), &parked).unwrap();
    assert_eq!(wake(&mut follower), "");
    std::fs::rename(&parked, md.root().join(".F")).unwrap();
    let r = wake(&mut follower);
    assert_eq!(r, "* LIST () \"/\" \"F\" (\"OLDNAME\" (\"E\"))\r\n");
    std::fs::rename(md.root().join(".E.k"), md.root().join(".F.k")).unwrap();
    assert_eq!(wake(&mut follower), "");
    let mut out = Vec::new();
    other.notify_absorb(touched, &mut out);
    assert_eq!(wake(&mut follower), "");
    // A folder made later under the new name is announced as usual.
    md.create_folder("F/new").unwrap();
    assert_eq!(wake(&mut follower), "* LIST () \"/\" \"F/new\"\r\n");
}

/// §5.4 with the race the e2e test met under load: the follower's watch fires when the
/// directory moves, while the renaming session's command is still running (before it
/// returns and takes in its own change). The rename must already be known then, or the
/// follower reports a creation and a removal instead of one LIST with OLDNAME. Seen failing
/// while the rename was logged only after the command (`* LIST () "/" "B"` and
/// `* LIST (\NonExistent) "/" "A"`).
#[test]
fn a_rename_seen_before_the_renaming_command_returns_has_oldname() {
    let (_d, md) = setup();
    md.create_folder("A").unwrap();
    let mut follower = session(&md);
    let r = run(&mut follower, "n NOTIFY SET (personal (MailboxName))");
    assert!(r.contains("n OK"), "{r}");
    let mut other = session(&md);
    // The command has begun: what it will touch is known, then the directory moves.
    let touched = rename_begun(&other, b"r RENAME A B\r\n");
    md.rename_folder("A", "B").unwrap();
    let r = wake(&mut follower);
    assert_eq!(r, "* LIST () \"/\" \"B\" (\"OLDNAME\" (\"A\"))\r\n");
    let mut out = Vec::new();
    other.notify_absorb(touched, &mut out);
    assert_eq!(wake(&mut follower), "");
    // A RENAME that does not take place is taken back from the log: a later removal and
    // creation of those names done outside imapd are not announced as a rename.
    let touched = rename_begun(&other, b"r RENAME B C\r\n");
    let mut out = Vec::new();
    other.notify_absorb(touched, &mut out);
    md.delete_folder("B").unwrap();
    md.create_folder("C").unwrap();
    let r = wake(&mut follower);
    assert!(!r.contains("OLDNAME"), "{r}");
}
