//! The IMAP view of a Maildir: UIDs, flags, MODSEQs, expunges, \Recent, cache, index.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postern_maildir::keywords::DovecotKeywords;
use postern_maildir::uidlist::{UIDLIST_FILE, Uidlist};
use postern_maildir::{FlagOp, Flags, Mailbox, Maildir, MaildirError, SyncReport};

const MSG: &[u8] = b"From: a@example.org\nSubject: hi\n\nHello\nworld\n";

fn maildir() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    (dir, md)
}

fn seen() -> Flags {
    Flags {
        seen: true,
        ..Flags::default()
    }
}

fn kw(k: &str) -> Flags {
    Flags {
        keywords: vec![k.to_owned()],
        ..Flags::default()
    }
}

fn uids(mb: &Mailbox) -> Vec<u32> {
    mb.messages().iter().map(|m| m.uid).collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in data {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

#[test]
fn deliveries_get_uids_in_order_and_move_to_cur() {
    let (_t, md) = maildir();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    assert!(mb.messages().is_empty());
    assert_eq!(mb.uid_next(), 1);
    assert!(mb.uid_validity() > 0);
    assert!(mb.highest_modseq() >= 1);
    for i in 0..3 {
        md.deliver(
            None,
            format!("Subject: {i}\n\nbody\n").as_bytes(),
            &Flags::default(),
        )
        .unwrap();
    }
    md.deliver(None, MSG, &seen()).unwrap();
    let r = mb.sync().unwrap();
    assert_eq!(r.new, [1, 2, 3, 4]);
    assert!(r.expunged.is_empty() && r.changed.is_empty());
    assert_eq!(uids(&mb), [1, 2, 3, 4]);
    assert_eq!(mb.uid_next(), 5);
    assert!(names(&md.root().join("new")).is_empty());
    assert!(
        names(&md.root().join("cur"))
            .iter()
            .all(|n| n.contains(":2,"))
    );
    assert!(mb.get(4).unwrap().flags.seen);
    assert_eq!(mb.get(4).unwrap().size, postern_maildir::virtual_size(MSG));
    let modseqs: Vec<u64> = mb.messages().iter().map(|m| m.modseq).collect();
    assert!(modseqs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(mb.highest_modseq(), modseqs[3]);

    // The uidlist is Dovecot's format and names the files.
    let list = Uidlist::parse(&fs::read(md.root().join(UIDLIST_FILE)).unwrap()).unwrap();
    assert_eq!(list.version, 3);
    assert_eq!(list.uid_validity, mb.uid_validity());
    assert!(list.guid.is_some());
    let cur = names(&md.root().join("cur"));
    for r in &list.records {
        assert!(cur.iter().any(|n| n.starts_with(&format!("{}:", r.base))));
    }
    assert_eq!(list.records.len(), 4);

    // Nothing changed: an empty report; a second session sees the same.
    assert!(mb.sync().unwrap().is_empty());
    let other = md.open_mailbox("inbox").unwrap();
    assert_eq!(other.name(), "INBOX");
    assert_eq!(other.messages(), mb.messages());
}

#[test]
fn dovecot_uidlist_keeps_its_uids_and_uidvalidity() {
    let (_t, md) = maildir();
    let cur = md.root().join("cur");
    let files = [
        "1700000000.M1P10.mail,S=46,W=51:2,S",
        "1700000001.M2P10.mail,S=46,W=51:2,",
        "1700000002.M3P10.mail:2,RS",
    ];
    for f in files {
        fs::write(cur.join(f), MSG).unwrap();
    }
    // Dovecot's format: extension fields, records appended after a stale N, one record of a
    // message that is gone.
    let uidlist = "3 V1234567 N8 G0123456789abcdef0123456789abcdef\n\
        5 :1700000000.M1P10.mail,S=46,W=51\n\
        6 W51 :1699999999.M9P10.mail,S=46,W=51\n\
        9 :1700000001.M2P10.mail,S=46,W=51\n\
        12 W51 GAAAA :1700000002.M3P10.mail\n";
    fs::write(md.root().join(UIDLIST_FILE), uidlist).unwrap();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    assert_eq!(mb.uid_validity(), 1_234_567);
    assert_eq!(uids(&mb), [5, 9, 12]);
    assert_eq!(mb.uid_next(), 13);
    assert!(mb.get(12).unwrap().flags.answered);
    assert_eq!(mb.get(12).unwrap().size, 51, "W from the uidlist record");
    md.deliver(None, MSG, &Flags::default()).unwrap();
    assert_eq!(mb.sync().unwrap().new, [13]);
    let list = Uidlist::parse(&fs::read(md.root().join(UIDLIST_FILE)).unwrap()).unwrap();
    assert_eq!(list.uid_validity, 1_234_567);
    assert_eq!(
        list.guid.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        list.records.iter().map(|r| r.uid).collect::<Vec<_>>(),
        [5, 6, 9, 12, 13]
    );
    assert_eq!(
        list.find_base("1700000002.M3P10.mail").unwrap().ext,
        ["W51", "GAAAA"]
    );

    // Dovecot assigns a UID to a new file meanwhile: we take it.
    fs::write(cur.join("1700000100.M5P11.mail,S=46,W=51:2,F"), MSG).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(md.root().join(UIDLIST_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, b"20 :1700000100.M5P11.mail,S=46,W=51\n").unwrap();
    let r = mb.sync().unwrap();
    assert_eq!(r.new, [20]);
    assert!(mb.get(20).unwrap().flags.flagged);
    assert_eq!(mb.uid_next(), 21);
}

/// A session that has not read the uidlist starts from another session's full read of it
/// (this process) and reads what was appended since: a UID Dovecot gave a file that arrived
/// in `new/` meanwhile is still taken, by the new session's pickup of new mail.
#[test]
fn a_new_session_takes_dovecots_uid_for_new_mail() {
    let (_t, md) = maildir();
    for _ in 0..2 {
        md.deliver(None, MSG, &Flags::default()).unwrap();
    }
    let mut a = md.open_mailbox("INBOX").unwrap();
    assert_eq!(uids(&a), [1, 2]);
    // Dovecot's LMTP stores a file in new/ and gives it a UID at once.
    let base = "1700000200.M7P12.mail,S=46,W=51";
    fs::write(md.root().join("new").join(base), MSG).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(md.root().join(UIDLIST_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, format!("9 :{base}\n").as_bytes()).unwrap();
    drop(f);
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let b = md.open_mailbox("INBOX").unwrap();
    assert_eq!(uids(&b), [1, 2, 9, 10]);
    assert_eq!(a.sync().unwrap().new, [9, 10]);
    assert_eq!(a.messages(), b.messages());
    // Again, with a session that starts from b's read of the whole uidlist.
    let base = "1700000300.M8P12.mail,S=46,W=51";
    fs::write(md.root().join("new").join(base), MSG).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(md.root().join(UIDLIST_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, format!("14 :{base}\n").as_bytes()).unwrap();
    drop(f);
    let c = md.open_mailbox("INBOX").unwrap();
    assert_eq!(uids(&c), [1, 2, 9, 10, 14]);
    assert_eq!(a.sync().unwrap().new, [14]);
    assert_eq!(a.messages(), c.messages());
}

#[test]
fn two_sessions_see_each_others_flags_and_expunges() {
    let (_t, md) = maildir();
    for _ in 0..3 {
        md.deliver(None, MSG, &Flags::default()).unwrap();
    }
    let mut a = md.open_mailbox("INBOX").unwrap();
    let mut b = md.open_mailbox("INBOX").unwrap();
    assert_eq!(uids(&a), [1, 2, 3]);
    assert_eq!(a.messages(), b.messages());

    let before = a.get(2).unwrap().modseq;
    let m = a
        .store_flags(2, FlagOp::Add, &seen(), None)
        .unwrap()
        .unwrap()
        .clone();
    assert!(m.flags.seen && m.modseq > before);
    assert_eq!(a.highest_modseq(), m.modseq);
    assert!(a.sync().unwrap().is_empty(), "own changes are not reported");

    let r = b.sync().unwrap();
    assert_eq!(r.changed, [2]);
    assert_eq!(b.get(2).unwrap(), &m);
    assert_eq!(b.highest_modseq(), m.modseq);

    // A keyword from b, seen by a with its name.
    let m2 = b
        .store_flags(1, FlagOp::Replace, &kw("$Junk"), None)
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(m2.flags.keywords, ["$Junk"]);
    assert!(m2.modseq > m.modseq);
    assert_eq!(a.sync().unwrap().changed, [1]);
    assert_eq!(a.get(1).unwrap().flags.keywords, ["$Junk"]);
    let kws = DovecotKeywords::load(md.root()).unwrap();
    assert_eq!(kws.letter_of("$junk"), Some(b'a'));

    // Expunge in b: a still shows the message until it syncs, then reports it.
    assert_eq!(b.expunge(&[3, 99]).unwrap(), [3]);
    assert_eq!(uids(&b), [1, 2]);
    assert_eq!(uids(&a), [1, 2, 3]);
    assert!(matches!(a.read(3), Err(MaildirError::Expunged(3))));
    assert!(matches!(
        a.store_flags(3, FlagOp::Add, &seen(), None),
        Err(MaildirError::Expunged(3))
    ));
    let r = a.sync().unwrap();
    assert_eq!(
        r,
        SyncReport {
            expunged: vec![3],
            ..SyncReport::default()
        }
    );
    assert_eq!(uids(&a), [1, 2]);
    assert_eq!(a.highest_modseq(), b.highest_modseq());
    assert_eq!(a.messages(), b.messages());
}

#[test]
fn changes_by_other_programs_are_found() {
    let (_t, md) = maildir();
    for _ in 0..3 {
        md.deliver(None, MSG, &Flags::default()).unwrap();
    }
    let mut mb = md.open_mailbox("INBOX").unwrap();
    let cur = md.root().join("cur");
    let files = names(&cur);
    // Dovecot (or a person) flags one message and removes another.
    let (base, _) = files[0].split_once(':').unwrap();
    fs::rename(cur.join(&files[0]), cur.join(format!("{base}:2,FS"))).unwrap();
    fs::remove_file(cur.join(&files[2])).unwrap();
    let before = mb.highest_modseq();
    let r = mb.sync().unwrap();
    assert_eq!(r.changed, [1]);
    assert_eq!(r.expunged, [3]);
    let m = mb.get(1).unwrap();
    assert!(m.flags.seen && m.flags.flagged && m.modseq > before);
    assert_eq!(mb.expunged_since(before), Some(vec![3]));
    // Another session agrees on the MODSEQs.
    let other = md.open_mailbox("INBOX").unwrap();
    assert_eq!(other.messages(), mb.messages());
}

/// A session's own STORE moves the recorded `cur/` time along (no rescan of `cur/` by every
/// session after it); a foreign rename hidden behind it — the same directory mtime, as within
/// one time stamp granule — is still found by the verifying scan once the changes pause.
#[test]
fn a_foreign_change_hidden_behind_an_own_store_is_found() {
    let (_t, md) = maildir();
    for _ in 0..2 {
        md.deliver(None, MSG, &Flags::default()).unwrap();
    }
    let mut mb = md.open_mailbox("INBOX").unwrap();
    assert_eq!(uids(&mb), [1, 2]);
    let cur = md.root().join("cur");
    mb.store_flags(1, FlagOp::Add, &seen(), None).unwrap();
    // Dovecot (or a person) flags message 2 at the same directory mtime.
    let mtime = fs::metadata(&cur).unwrap().modified().unwrap();
    let file2 = names(&cur)
        .into_iter()
        .find(|n| !n.ends_with(":2,S"))
        .unwrap();
    let (base, _) = file2.split_once(':').unwrap();
    fs::rename(cur.join(&file2), cur.join(format!("{base}:2,F"))).unwrap();
    fs::File::open(&cur).unwrap().set_modified(mtime).unwrap();
    assert_eq!(fs::metadata(&cur).unwrap().modified().unwrap(), mtime);
    std::thread::sleep(Duration::from_millis(120));
    let other = md.open_mailbox("INBOX").unwrap();
    assert!(
        other.get(2).unwrap().flags.flagged,
        "hidden rename not found"
    );
    assert!(other.get(1).unwrap().flags.seen);
    let r = mb.sync().unwrap();
    assert_eq!(r.changed, [2]);
    assert!(mb.get(2).unwrap().flags.flagged);
}

#[test]
fn flag_changes_are_synced_once_and_a_failed_sync_is_reported_and_kept() {
    let (_t, md) = maildir();
    md.deliver(None, MSG, &Flags::default()).unwrap();
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    let cur = md.root().join("cur");
    let aside = md.root().join("cur.aside");
    // Nothing changed: nothing to sync, even when cur/ cannot be opened.
    fs::rename(&cur, &aside).unwrap();
    mb.sync_flag_changes().unwrap();
    fs::rename(&aside, &cur).unwrap();
    mb.store_flags(1, FlagOp::Add, &seen(), None).unwrap();
    mb.store_flags(2, FlagOp::Add, &seen(), None).unwrap();
    // The fsync of cur/ fails: the STORE must not be acknowledged, and the changes stay
    // unsynced for the next attempt.
    fs::rename(&cur, &aside).unwrap();
    assert!(mb.sync_flag_changes().is_err());
    assert!(
        mb.sync_flag_changes().is_err(),
        "a failed sync is tried again"
    );
    fs::rename(&aside, &cur).unwrap();
    mb.sync_flag_changes().unwrap();
    fs::rename(&cur, &aside).unwrap();
    mb.sync_flag_changes().unwrap();
    fs::rename(&aside, &cur).unwrap();
}

#[test]
fn store_flags_unchanged_since_and_no_op() {
    let (_t, md) = maildir();
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    let m0 = mb.get(1).unwrap().modseq;
    assert!(
        mb.store_flags(1, FlagOp::Add, &seen(), Some(m0 - 1))
            .unwrap()
            .is_none(),
        "MODIFIED"
    );
    assert!(!mb.get(1).unwrap().flags.seen);
    assert_eq!(mb.get(1).unwrap().modseq, m0);
    let m1 = mb
        .store_flags(1, FlagOp::Add, &seen(), Some(m0))
        .unwrap()
        .unwrap()
        .modseq;
    assert!(m1 > m0);
    // No-op: no new MODSEQ.
    let again = mb
        .store_flags(1, FlagOp::Add, &seen(), None)
        .unwrap()
        .unwrap();
    assert_eq!(again.modseq, m1);
    assert!(
        mb.store_flags(1, FlagOp::Add, &seen(), Some(m0))
            .unwrap()
            .is_none()
    );
    let flagged = Flags {
        flagged: true,
        keywords: vec!["Work".into(), "Later".into()],
        ..Flags::default()
    };
    let m = mb
        .store_flags(1, FlagOp::Add, &flagged, None)
        .unwrap()
        .unwrap()
        .clone();
    assert!(m.flags.seen && m.flags.flagged);
    assert_eq!(m.flags.keywords, ["Work", "Later"]);
    let m = mb
        .store_flags(1, FlagOp::Remove, &kw("work"), None)
        .unwrap()
        .unwrap()
        .clone();
    assert_eq!(m.flags.keywords, ["Later"]);
    let m = mb
        .store_flags(1, FlagOp::Replace, &Flags::default(), None)
        .unwrap()
        .unwrap()
        .clone();
    assert!(m.flags.is_empty());
    let name = names(&md.root().join("cur")).remove(0);
    assert!(name.ends_with(":2,"), "{name}");
}

#[test]
fn append_and_read_give_crlf_of_the_announced_size() {
    let (_t, md) = maildir();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    let date = 1_600_000_000;
    let data = crlf(MSG);
    let flags = Flags {
        seen: true,
        draft: true,
        keywords: vec!["$Forwarded".into()],
        ..Flags::default()
    };
    let uid = mb.append(&data, &flags, Some(date)).unwrap();
    assert_eq!(uid, 1);
    assert!(mb.get(1).is_none(), "joins the view at the next sync");
    let uid2 = mb.append(MSG, &Flags::default(), None).unwrap();
    assert_eq!(uid2, 2);
    assert_eq!(mb.sync().unwrap().new, [1, 2]);
    let m = mb.get(1).unwrap().clone();
    assert_eq!(m.internal_date, date);
    assert!(m.flags.seen && m.flags.draft);
    assert_eq!(m.flags.keywords, ["$Forwarded"]);
    let body = mb.read(1).unwrap();
    assert_eq!(body, data);
    assert_eq!(body.len() as u64, m.size);
    let body2 = mb.read(2).unwrap();
    assert_eq!(body2, data, "LF input is served as CRLF too");
    assert_eq!(body2.len() as u64, mb.get(2).unwrap().size);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((mb.get(2).unwrap().internal_date - now).abs() < 60);
    // Stored with LF, with S= and W= in the name.
    for n in names(&md.root().join("cur")) {
        assert_eq!(fs::read(md.root().join("cur").join(&n)).unwrap(), MSG);
        assert!(
            n.contains(&format!(",S={},W={}", MSG.len(), data.len())),
            "{n}"
        );
    }
    assert!(names(&md.root().join("tmp")).is_empty());
    assert!(matches!(mb.read(7), Err(MaildirError::Expunged(7))));
}

#[test]
fn copy_keeps_flags_and_dates_with_new_uids() {
    let (_t, md) = maildir();
    md.create_folder("Archive").unwrap();
    let mut inbox = md.open_mailbox("INBOX").unwrap();
    let mut archive = md.open_mailbox("Archive").unwrap();
    // Give Archive a keyword first so the letters differ between the mailboxes.
    archive.append(MSG, &kw("Other"), None).unwrap();
    archive.sync().unwrap();
    inbox.append(MSG, &kw("Work"), Some(1_500_000_000)).unwrap();
    inbox
        .append(b"Subject: 2\n\nx\n", &seen(), Some(1_500_000_100))
        .unwrap();
    inbox.sync().unwrap();
    let pairs = inbox.copy_to(&[2, 1, 42], &mut archive).unwrap();
    assert_eq!(pairs, [(2, 2), (1, 3)]);
    assert!(archive.get(2).is_none());
    assert_eq!(archive.sync().unwrap().new, [2, 3]);
    let a3 = archive.get(3).unwrap();
    assert_eq!(a3.flags.keywords, ["Work"]);
    assert_eq!(a3.internal_date, 1_500_000_000);
    assert_eq!(a3.size, inbox.get(1).unwrap().size);
    let a2 = archive.get(2).unwrap();
    assert!(a2.flags.seen);
    assert_eq!(a2.internal_date, 1_500_000_100);
    assert_eq!(archive.read(2).unwrap(), inbox.read(2).unwrap());
    assert_eq!(
        DovecotKeywords::load(&md.root().join(".Archive"))
            .unwrap()
            .letter_of("Work"),
        Some(b'b')
    );
    // Copy within the same mailbox, through a second value.
    let mut inbox2 = md.open_mailbox("INBOX").unwrap();
    assert_eq!(inbox.copy_to(&[1], &mut inbox2).unwrap(), [(1, 3)]);
    assert_eq!(inbox.sync().unwrap().new, [3]);
}

#[test]
fn expunged_since_and_history() {
    let (_t, md) = maildir();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    assert_eq!(mb.expunged_since(0), Some(vec![]));
    for _ in 0..5 {
        mb.append(MSG, &Flags::default(), None).unwrap();
    }
    mb.sync().unwrap();
    let m0 = mb.highest_modseq();
    assert_eq!(mb.expunge(&[2, 4]).unwrap(), [2, 4]);
    let m1 = mb.highest_modseq();
    assert!(m1 > m0);
    assert_eq!(mb.expunge(&[2]).unwrap(), Vec::<u32>::new());
    mb.store_flags(1, FlagOp::Add, &seen(), None).unwrap();
    assert_eq!(mb.expunge(&[5]).unwrap(), [5]);
    assert_eq!(mb.expunged_since(0), Some(vec![2, 4, 5]));
    assert_eq!(mb.expunged_since(m0), Some(vec![2, 4, 5]));
    assert_eq!(mb.expunged_since(m1), Some(vec![5]));
    assert_eq!(mb.expunged_since(mb.highest_modseq()), Some(vec![]));
    assert_eq!(uids(&mb), [1, 3]);
    // Persisted: a new session knows the history.
    let other = md.open_mailbox("INBOX").unwrap();
    assert_eq!(other.expunged_since(m0), Some(vec![2, 4, 5]));
    assert_eq!(other.uid_next(), 6);
    assert_eq!(names(&md.root().join("cur")).len(), 2);
}

#[test]
fn recent_is_claimed_once() {
    let (_t, md) = maildir();
    md.deliver(None, MSG, &Flags::default()).unwrap();
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let mut a = md.open_mailbox("INBOX").unwrap();
    let mut b = md.open_mailbox("INBOX").unwrap();
    assert_eq!(a.claim_recent(), [1, 2]);
    assert!(b.claim_recent().is_empty());
    assert!(a.claim_recent().is_empty());
    md.deliver(None, MSG, &Flags::default()).unwrap();
    b.sync().unwrap();
    a.sync().unwrap();
    assert_eq!(b.claim_recent(), [3]);
    assert!(a.claim_recent().is_empty());
    let mut c = md.open_mailbox("INBOX").unwrap();
    assert!(c.claim_recent().is_empty());
}

#[test]
fn cache_survives_reopen_and_is_shared() {
    let (_t, md) = maildir();
    for _ in 0..3 {
        md.deliver(None, MSG, &Flags::default()).unwrap();
    }
    let mut a = md.open_mailbox("INBOX").unwrap();
    let mut b = md.open_mailbox("INBOX").unwrap();
    assert_eq!(a.cache_get(1), None);
    a.cache_put(1, b"envelope one").unwrap();
    a.cache_put(2, b"two").unwrap();
    a.cache_put(2, b"two, again").unwrap();
    a.cache_put(99, b"unknown uid").unwrap();
    assert_eq!(a.cache_get(1).as_deref(), Some(&b"envelope one"[..]));
    assert_eq!(a.cache_get(2).as_deref(), Some(&b"two, again"[..]));
    assert_eq!(b.cache_get(1), None);
    b.sync().unwrap();
    assert_eq!(b.cache_get(2).as_deref(), Some(&b"two, again"[..]));
    drop((a, b));
    let mut c = md.open_mailbox("INBOX").unwrap();
    assert_eq!(c.cache_get(1).as_deref(), Some(&b"envelope one"[..]));
    assert_eq!(c.cache_get(2).as_deref(), Some(&b"two, again"[..]));
    assert_eq!(c.cache_get(3), None);
    c.expunge(&[1]).unwrap();
    assert_eq!(c.cache_get(1), None);
    let d = md.open_mailbox("INBOX").unwrap();
    assert_eq!(d.cache_get(2).as_deref(), Some(&b"two, again"[..]));
}

#[test]
fn many_changes_compact_the_index_and_keep_everything() {
    let (_t, md) = maildir();
    let mut a = md.open_mailbox("INBOX").unwrap();
    for _ in 0..20 {
        a.append(MSG, &Flags::default(), None).unwrap();
    }
    a.sync().unwrap();
    let mut b = md.open_mailbox("INBOX").unwrap();
    a.cache_put(5, &vec![b'x'; 3000]).unwrap();
    let index = md.root().join("postern-index");
    for round in 0..3000 {
        let uid = 1 + round % 20;
        let op = if round % 2 == 0 {
            FlagOp::Add
        } else {
            FlagOp::Remove
        };
        a.store_flags(uid, op, &seen(), None).unwrap();
    }
    // 3000 log records of over 30 bytes: compacted on the way.
    assert!(fs::metadata(&index).unwrap().len() < 70_000, "compacted");
    let r = b.sync().unwrap();
    assert!(r.new.is_empty() && r.expunged.is_empty());
    assert_eq!(a.messages(), b.messages());
    assert_eq!(b.highest_modseq(), a.highest_modseq());
    assert_eq!(b.cache_get(5).map(|v| v.len()), Some(3000));
    let c = md.open_mailbox("INBOX").unwrap();
    assert_eq!(c.messages(), a.messages());
    assert_eq!(c.cache_get(5).map(|v| v.len()), Some(3000));
}

#[test]
fn lost_or_damaged_index_is_rebuilt_with_the_same_uids() {
    let (_t, md) = maildir();
    for i in 0..6 {
        let f = if i % 2 == 0 { seen() } else { Flags::default() };
        md.deliver(None, MSG, &f).unwrap();
    }
    let mut mb = md.open_mailbox("INBOX").unwrap();
    mb.expunge(&[2]).unwrap();
    mb.store_flags(3, FlagOp::Add, &kw("Work"), None).unwrap();
    let want: Vec<(u32, Flags)> = mb
        .messages()
        .iter()
        .map(|m| (m.uid, m.flags.clone()))
        .collect();
    let uv = mb.uid_validity();
    let highest = mb.highest_modseq();
    let index = md.root().join("postern-index");
    let check = |label: &str| {
        let again = md.open_mailbox("INBOX").unwrap();
        let got: Vec<(u32, Flags)> = again
            .messages()
            .iter()
            .map(|m| (m.uid, m.flags.clone()))
            .collect();
        assert_eq!(got, want, "{label}");
        assert_eq!(again.uid_validity(), uv, "{label}");
        assert_eq!(again.uid_next(), 7, "{label}");
        assert!(
            again.highest_modseq() > highest,
            "{label}: MODSEQs only go up"
        );
        again
    };
    fs::remove_file(&index).unwrap();
    check("deleted");
    let len = fs::metadata(&index).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&index)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    check("truncated");
    fs::write(&index, b"garbage, not an index at all").unwrap();
    check("garbage");
    let mut data = fs::read(&index).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0x55;
    fs::write(&index, &data).unwrap();
    check("flipped bit");
    // A torn log record at the end is ignored (and cut off by the next writer).
    let mut f = fs::OpenOptions::new().append(true).open(&index).unwrap();
    std::io::Write::write_all(&mut f, &[9, 0, 0, 0, 1, 2]).unwrap();
    let mut again = check("torn tail");
    again
        .store_flags(1, FlagOp::Add, &kw("Later"), None)
        .unwrap();
    let mut b = md.open_mailbox("INBOX").unwrap();
    assert_eq!(b.get(1).unwrap().flags.keywords, ["Later"]);
    // A session open while the index is deleted carries on.
    fs::remove_file(&index).unwrap();
    let r = b.sync().unwrap();
    assert!(r.new.is_empty() && r.expunged.is_empty(), "{r:?}");
    assert_eq!(uids(&b), [1, 3, 4, 5, 6]);
}

#[test]
fn folders_rename_and_delete_with_children() {
    let (_t, md) = maildir();
    for f in ["A", "A/B", "A/B/C", "Other"] {
        md.create_folder(f).unwrap();
    }
    md.deliver(Some("A/B"), MSG, &seen()).unwrap();
    let before = {
        let mut mb = md.open_mailbox("A/B").unwrap();
        mb.sync().unwrap();
        (mb.uid_validity(), uids(&mb))
    };
    md.rename_folder("A", "Z").unwrap();
    assert_eq!(md.list_folders().unwrap(), ["Other", "Z", "Z/B", "Z/B/C"]);
    let mb = md.open_mailbox("Z/B").unwrap();
    assert_eq!((mb.uid_validity(), uids(&mb)), before);
    assert!(matches!(
        md.open_mailbox("A/B"),
        Err(MaildirError::NoSuchFolder(_))
    ));
    assert!(matches!(
        md.rename_folder("Z", "Other"),
        Err(MaildirError::FolderExists(_))
    ));
    assert!(matches!(
        md.rename_folder("Z", "Z/B/D"),
        Err(MaildirError::NotPermitted(_))
    ));
    assert!(matches!(
        md.rename_folder("Nope", "X"),
        Err(MaildirError::NoSuchFolder(_))
    ));
    assert!(matches!(
        md.rename_folder("Other", "INBOX"),
        Err(MaildirError::FolderExists(_))
    ));
    md.create_folder("Y/B").unwrap();
    assert!(
        matches!(md.rename_folder("Z", "Y"), Err(MaildirError::FolderExists(n)) if n == "Y/B"),
        "a child's target exists"
    );

    md.delete_folder("Z/B").unwrap();
    assert_eq!(md.list_folders().unwrap(), ["Other", "Y/B", "Z", "Z/B/C"]);
    assert!(!md.root().join(".Z.B").exists());
    assert!(
        fs::read_dir(md.root()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("TRASH")),
    );
    assert!(matches!(
        md.delete_folder("INBOX"),
        Err(MaildirError::NotPermitted(_))
    ));
    assert!(matches!(
        md.delete_folder("Z/B"),
        Err(MaildirError::NoSuchFolder(_))
    ));
    // A new folder of the same name gets a new UIDVALIDITY.
    md.create_folder("Z/B").unwrap();
    assert!(md.open_mailbox("Z/B").unwrap().uid_validity() > before.0);
}

#[test]
fn renaming_inbox_moves_its_messages() {
    let (_t, md) = maildir();
    md.create_folder("INBOX/Sub").unwrap();
    md.deliver(None, MSG, &seen()).unwrap();
    md.deliver(None, b"Subject: 2\n\nx\n", &Flags::default())
        .unwrap();
    let mut inbox = md.open_mailbox("INBOX").unwrap();
    inbox.sync().unwrap();
    assert_eq!(uids(&inbox), [1, 2]);
    md.rename_folder("INBOX", "Old Mail").unwrap();
    assert_eq!(inbox.sync().unwrap().expunged, [1, 2]);
    let old = md.open_mailbox("Old Mail").unwrap();
    assert_eq!(uids(&old), [1, 2]);
    assert!(old.get(1).unwrap().flags.seen);
    assert_eq!(md.list_folders().unwrap(), ["INBOX/Sub", "Old Mail"]);
}

/// RFC 5464 with RFC 3501 §6.3.5: renaming INBOX makes a new mailbox of its messages and
/// leaves an empty INBOX; INBOX's METADATA entries go with the messages (as a renamed
/// mailbox's do), the INBOX left behind has none.
#[test]
fn renaming_inbox_carries_its_metadata() {
    use postern_maildir::metadata::{MetadataLimits, MetadataTarget};
    let (_t, md) = maildir();
    let limits = MetadataLimits {
        max_value_bytes: 1000,
        max_entries_per_mailbox: 10,
        max_entries_per_user: 10,
        max_bytes_per_user: 10_000,
    };
    let set = |target, k: &str, v: &[u8]| {
        md.set_metadata(target, &[(k.to_owned(), Some(v.to_vec()))], &limits)
            .unwrap()
            .unwrap();
    };
    set(
        MetadataTarget::Mailbox("INBOX"),
        "/private/comment",
        b"mine",
    );
    set(MetadataTarget::Server, "/shared/comment", b"server");
    md.deliver(None, MSG, &Flags::default()).unwrap();
    md.rename_folder("INBOX", "Old Mail").unwrap();
    let old = md.metadata(MetadataTarget::Mailbox("Old Mail")).unwrap();
    assert_eq!(
        old.get("/private/comment").map(Vec::as_slice),
        Some(&b"mine"[..])
    );
    assert!(
        md.metadata(MetadataTarget::Mailbox("INBOX"))
            .unwrap()
            .is_empty()
    );
    // The server's entries stay where they are.
    assert_eq!(md.metadata(MetadataTarget::Server).unwrap().len(), 1);
}

/// The subscription list is capped (every SUBSCRIBE rewrites the whole file, so an
/// unbounded list makes the n-th SUBSCRIBE cost O(n): quadratic I/O): a new name beyond
/// [`MAX_SUBSCRIPTIONS`] is refused; names already in, and unsubscribing, still work.
#[test]
fn subscriptions_are_capped() {
    use postern_maildir::subscriptions::MAX_SUBSCRIPTIONS;
    let (_t, md) = maildir();
    let names: Vec<String> = (0..MAX_SUBSCRIPTIONS).map(|i| format!("f{i}")).collect();
    fs::write(
        md.root().join("subscriptions"),
        postern_maildir::subscriptions::format(&names),
    )
    .unwrap();
    assert!(matches!(
        md.set_subscribed("one-more", true),
        Err(MaildirError::TooManySubscriptions(n)) if n == MAX_SUBSCRIPTIONS
    ));
    assert_eq!(md.subscriptions().unwrap().len(), MAX_SUBSCRIPTIONS);
    md.set_subscribed("f7", true).unwrap();
    md.set_subscribed("f7", false).unwrap();
    md.set_subscribed("one-more", true).unwrap();
    assert_eq!(md.subscriptions().unwrap().len(), MAX_SUBSCRIPTIONS);
    // Renames rewrite the file once for all the names they change.
    md.rename_subscriptions(&[
        ("f1".to_owned(), "g1".to_owned()),
        ("f2".to_owned(), "g2".to_owned()),
        ("absent".to_owned(), "g3".to_owned()),
    ])
    .unwrap();
    let subs = md.subscriptions().unwrap();
    assert_eq!(subs.len(), MAX_SUBSCRIPTIONS);
    assert!(subs.contains(&"g1".to_owned()) && subs.contains(&"g2".to_owned()));
    assert!(!subs.contains(&"f1".to_owned()) && !subs.contains(&"g3".to_owned()));
}

#[test]
fn subscriptions_in_dovecot_format() {
    let (_t, md) = maildir();
    assert!(md.subscriptions().unwrap().is_empty());
    md.set_subscribed("inbox", true).unwrap();
    md.set_subscribed("Archive/2026", true).unwrap();
    md.set_subscribed("Entwürfe", true).unwrap();
    md.set_subscribed("Archive/2026", true).unwrap();
    assert_eq!(
        md.subscriptions().unwrap(),
        ["INBOX", "Archive/2026", "Entwürfe"]
    );
    let file = fs::read_to_string(md.root().join("subscriptions")).unwrap();
    assert_eq!(file, "V\t2\n\nINBOX\nArchive\t2026\nEntwürfe\n");
    md.set_subscribed("Archive/2026", false).unwrap();
    md.set_subscribed("Never", false).unwrap();
    assert_eq!(md.subscriptions().unwrap(), ["INBOX", "Entwürfe"]);
    assert!(!md.root().join("subscriptions.lock").exists());
    // An old-format file from an older Dovecot is read and upgraded.
    fs::write(md.root().join("subscriptions"), "Sent\nArchive.2025\n").unwrap();
    assert_eq!(md.subscriptions().unwrap(), ["Sent", "Archive/2025"]);
    md.set_subscribed("Trash", true).unwrap();
    assert_eq!(
        fs::read_to_string(md.root().join("subscriptions")).unwrap(),
        "V\t2\n\nSent\nArchive\t2025\nTrash\n"
    );
}

#[test]
fn hostile_names_are_refused_and_nothing_outside_is_touched() {
    let (t, md) = maildir();
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("cur")).unwrap();
    fs::create_dir_all(outside.join("new")).unwrap();
    fs::create_dir_all(outside.join("tmp")).unwrap();
    fs::write(outside.join("cur/victim"), b"keep me").unwrap();
    let long = "x".repeat(300);
    let bad = [
        "../outside",
        "..",
        "/etc",
        "/tmp",
        "a//b",
        "a/../../outside",
        "nul\0x",
        "cr\rx",
        "lf\nx",
        "",
        long.as_str(),
    ];
    for name in bad {
        let refused = |r: Result<(), MaildirError>| matches!(r, Err(MaildirError::Name { .. }));
        assert!(
            matches!(md.open_mailbox(name), Err(MaildirError::Name { .. })),
            "open {name:?}"
        );
        assert!(refused(md.delete_folder(name)), "delete {name:?}");
        assert!(
            refused(md.rename_folder(name, "Fine")),
            "rename from {name:?}"
        );
        assert!(
            refused(md.rename_folder("INBOX", name)),
            "rename to {name:?}"
        );
        assert!(refused(md.set_subscribed(name, true)), "subscribe {name:?}");
    }
    assert_eq!(names(&outside), ["cur", "new", "tmp"]);
    assert_eq!(names(&outside.join("cur")), ["victim"]);
    assert_eq!(
        names(t.path()),
        ["Maildir", "outside"],
        "nothing created next to the Maildir"
    );
    assert!(md.subscriptions().unwrap().is_empty());
    assert!(md.list_folders().unwrap().is_empty());
}

#[test]
fn concurrent_sessions_in_threads_agree() {
    let (_t, md) = maildir();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let md = md.clone();
            std::thread::spawn(move || {
                let mut mb = md.open_mailbox("INBOX").unwrap();
                let mut mine = Vec::new();
                for i in 0..10 {
                    mine.push(mb.append(MSG, &Flags::default(), None).unwrap());
                    if i % 3 == 0 {
                        md.deliver(None, MSG, &Flags::default()).unwrap();
                    }
                    mb.sync().unwrap();
                    let uid = mb.messages()[mb.messages().len() / 2].uid;
                    let _ = mb.store_flags(uid, FlagOp::Add, &kw(&format!("T{t}")), None);
                }
                mine
            })
        })
        .collect();
    let mut all: Vec<u32> = threads
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 40, "appended UIDs are unique");
    let mut a = md.open_mailbox("INBOX").unwrap();
    let b = md.open_mailbox("INBOX").unwrap();
    a.sync().unwrap();
    assert_eq!(a.messages().len(), 40 + 16);
    assert_eq!(a.messages(), b.messages());
    assert_eq!(uids(&a), (1..=56).collect::<Vec<u32>>());
    let list = Uidlist::parse(&fs::read(md.root().join(UIDLIST_FILE)).unwrap()).unwrap();
    assert_eq!(list.records.len(), 56);
}

/// Creates `n` message files straight in `cur/`, as a migrated mailbox would have them.
fn fill_cur(cur: &Path, n: usize) {
    let host = "bench.example";
    for i in 0..n {
        let name = format!(
            "{}.M{}P1.{host},S={},W={}:2,{}",
            1_600_000_000 + i,
            i,
            MSG.len(),
            postern_maildir::virtual_size(MSG),
            if i % 3 == 0 { "S" } else { "" }
        );
        fs::write(cur.join(name), MSG).unwrap();
    }
}

#[test]
#[ignore = "benchmark: run with --ignored"]
fn bench_100k_messages() {
    let (_t, md) = maildir();
    let n = 100_000;
    let t = Instant::now();
    fill_cur(&md.root().join("cur"), n);
    eprintln!("created {n} files in {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(200));

    let t = Instant::now();
    let mb = md.open_mailbox("INBOX").unwrap();
    eprintln!("first open (builds uidlist + index): {:?}", t.elapsed());
    assert_eq!(mb.messages().len(), n);
    assert_eq!(mb.messages().last().unwrap().uid, n as u32);
    drop(mb);

    let t = Instant::now();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    let open = t.elapsed();
    eprintln!("second open: {open:?}");
    assert_eq!(mb.messages().len(), n);

    let t = Instant::now();
    let r = mb.sync().unwrap();
    let sync = t.elapsed();
    eprintln!("no-change sync: {sync:?}");
    assert!(r.is_empty());

    let mut other = md.open_mailbox("INBOX").unwrap();
    let t = Instant::now();
    mb.store_flags(500, FlagOp::Add, &seen(), None).unwrap();
    eprintln!("one STORE: {:?}", t.elapsed());
    let t = Instant::now();
    mb.sync().unwrap();
    eprintln!("sync after own STORE: {:?}", t.elapsed());
    let t = Instant::now();
    assert_eq!(other.sync().unwrap().changed, [500]);
    let other_sync = t.elapsed();
    eprintln!("another session's sync after the STORE: {other_sync:?}");
    drop(other);
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let t = Instant::now();
    assert_eq!(mb.sync().unwrap().new, [n as u32 + 1]);
    eprintln!("sync picking up one delivery: {:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(200));
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let t = Instant::now();
    assert_eq!(mb.sync().unwrap().new, [n as u32 + 2]);
    eprintln!("sync picking up another delivery: {:?}", t.elapsed());
    // A session that has not read the uidlist yet picks up the next delivery: it starts
    // from this process's last full read of the uidlist.
    let mut fresh = md.open_mailbox("INBOX").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let t = Instant::now();
    assert_eq!(fresh.sync().unwrap().new, [n as u32 + 3]);
    eprintln!("another session's first pickup: {:?}", t.elapsed());
    assert_eq!(mb.sync().unwrap().new, [n as u32 + 3]);
    drop(fresh);
    // What every delivery cost before `cur/` was watched, and still costs after a foreign
    // change of `cur/`: a full scan.
    let cur = md.root().join("cur");
    let name = fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| n.ends_with(":2,"))
        .unwrap();
    fs::rename(cur.join(&name), cur.join(format!("{name}F"))).unwrap();
    md.deliver(None, MSG, &Flags::default()).unwrap();
    let t = Instant::now();
    let r = mb.sync().unwrap();
    assert_eq!((r.new.len(), r.changed.len()), (1, 1));
    eprintln!(
        "sync picking up a delivery and a foreign rename (full scan): {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    mb.sync().unwrap();
    let t = Instant::now();
    assert!(mb.sync().unwrap().is_empty());
    eprintln!("no-change sync again: {:?}", t.elapsed());
    let t = Instant::now();
    let again = md.open_mailbox("INBOX").unwrap();
    eprintln!("third open: {:?}", t.elapsed());
    assert_eq!(again.messages().len(), n + 4);
    assert!(open < Duration::from_secs(1), "open took {open:?}");
    assert!(sync < Duration::from_millis(100), "sync took {sync:?}");
}

#[test]
fn mailbox_can_move_to_a_blocking_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Mailbox>();
    assert_send::<SyncReport>();
}

#[test]
fn version_1_uidlist_is_read_and_upgraded() {
    let (_t, md) = maildir();
    md.create_folder("Old").unwrap();
    let dir = md.root().join(".Old");
    fs::write(dir.join("cur/1600000000.111.host:2,S"), MSG).unwrap();
    fs::write(dir.join("cur/1600000001.222.host:2,"), MSG).unwrap();
    fs::write(
        dir.join(UIDLIST_FILE),
        "1 777 40\n31 1600000000.111.host:2,S\n35 1600000001.222.host\n",
    )
    .unwrap();
    let mut mb = md.open_mailbox("Old").unwrap();
    assert_eq!((mb.uid_validity(), uids(&mb)), (777, vec![31, 35]));
    assert_eq!(mb.uid_next(), 40);
    assert_eq!(mb.get(35).unwrap().size, postern_maildir::virtual_size(MSG));
    mb.append(MSG, &Flags::default(), None).unwrap();
    assert_eq!(mb.sync().unwrap().new, [40]);
    let list = Uidlist::parse(&fs::read(dir.join(UIDLIST_FILE)).unwrap()).unwrap();
    assert_eq!(
        (list.version, list.uid_validity, list.next_uid),
        (3, 777, 41)
    );
    assert_eq!(
        list.records.iter().map(|r| r.uid).collect::<Vec<_>>(),
        [31, 35, 40]
    );
}

/// APPEND's latency (release, `--ignored --nocapture`): one thread appending alone, and 8
/// threads appending to one mailbox (each with its own `Mailbox`, as IMAP sessions). The
/// time is the disk's flushes (file, `cur/`, uidlist) and, with 8 threads, the lock.
#[test]
#[ignore = "benchmark: run with --ignored"]
fn bench_append_latency() {
    fn p50(mut v: Vec<Duration>) -> Duration {
        v.sort_unstable();
        v[v.len() / 2]
    }
    let (_t, md) = maildir();
    let mut mb = md.open_mailbox("INBOX").unwrap();
    let alone: Vec<Duration> = (0..100)
        .map(|_| {
            let t = Instant::now();
            mb.append(MSG, &Flags::default(), None).unwrap();
            t.elapsed()
        })
        .collect();
    let t = Instant::now();
    let shared: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let md = md.clone();
                s.spawn(move || {
                    let mut mb = md.open_mailbox("INBOX").unwrap();
                    (0..40)
                        .map(|_| {
                            let t = Instant::now();
                            mb.append(MSG, &Flags::default(), None).unwrap();
                            t.elapsed()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = t.elapsed();
    println!(
        "append alone p50 {:?}; 8 threads on one mailbox p50 {:?}, {:.0} appends/s",
        p50(alone),
        p50(shared),
        320.0 / wall.as_secs_f64()
    );
    mb.sync().unwrap();
    assert_eq!(mb.messages().len(), 420);
}
