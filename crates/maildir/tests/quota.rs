//! Maildir++ quota (`maildirsize`).

use std::fs;
use std::time::{Duration, SystemTime};

use postern_maildir::quota::{MAILDIRSIZE_FILE, STALE_AFTER};
use postern_maildir::{Flags, Maildir, Quota, QuotaLimit, Usage};

fn maildir() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    (dir, md)
}

/// Delivers 3 messages (INBOX new, INBOX cur, a folder) of 100, 200 and 300 bytes.
fn fill(md: &Maildir) -> Usage {
    md.create_folder("Trash").unwrap();
    md.deliver(None, &[b'x'; 100], &Flags::default()).unwrap();
    md.deliver(
        None,
        &[b'y'; 200],
        &Flags {
            seen: true,
            ..Flags::default()
        },
    )
    .unwrap();
    md.deliver(Some("Trash"), &[b'z'; 300], &Flags::default())
        .unwrap();
    Usage {
        bytes: 600,
        messages: 3,
    }
}

fn write_maildirsize(md: &Maildir, body: &str, age: Duration) {
    let path = md.root().join(MAILDIRSIZE_FILE);
    fs::write(&path, body).unwrap();
    let f = fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

fn read_maildirsize(md: &Maildir) -> String {
    fs::read_to_string(md.root().join(MAILDIRSIZE_FILE)).unwrap()
}

#[test]
fn scan_counts_every_folder_and_writes_maildirsize() {
    let (_t, md) = maildir();
    let want = fill(&md);
    // A file without ,S= is stat()ed; tmp/ is not counted.
    fs::write(md.root().join("cur/foreign:2,S"), [0u8; 50]).unwrap();
    fs::write(md.root().join("tmp/partial"), [0u8; 999]).unwrap();
    let want = Usage {
        bytes: want.bytes + 50,
        messages: want.messages + 1,
    };
    assert_eq!(Quota::scan(&md).unwrap(), want);
    assert!(!md.root().join(MAILDIRSIZE_FILE).exists());
    assert_eq!(Quota::usage(&md).unwrap(), want);
    assert_eq!(read_maildirsize(&md), "0S\n650 4\n");
    assert!(
        fs::read_dir(md.root().join("tmp")).unwrap().count() == 1,
        "no temp file left"
    );
}

#[test]
fn deltas_are_summed_without_scanning() {
    let (_t, md) = maildir();
    fill(&md);
    // The file is trusted: its numbers win over what is on disk.
    write_maildirsize(&md, "1000000S,1000C\n5000 10\n-1000 -2\n", Duration::ZERO);
    assert_eq!(
        Quota::usage(&md).unwrap(),
        Usage {
            bytes: 4000,
            messages: 8
        }
    );
    Quota::add(
        &md,
        QuotaLimit {
            bytes: 1_000_000,
            messages: 1000,
        },
        123,
        1,
    )
    .unwrap();
    assert_eq!(
        read_maildirsize(&md),
        "1000000S,1000C\n5000 10\n-1000 -2\n123 1\n"
    );
    assert_eq!(
        Quota::usage(&md).unwrap(),
        Usage {
            bytes: 4123,
            messages: 9
        }
    );
    // A last line without LF (an append in progress) is ignored.
    write_maildirsize(&md, "0S\n10 1\n20 2", Duration::ZERO);
    assert_eq!(
        Quota::usage(&md).unwrap(),
        Usage {
            bytes: 10,
            messages: 1
        }
    );
}

#[test]
fn add_recalculates_when_missing_or_limit_changed() {
    let (_t, md) = maildir();
    let want = fill(&md);
    Quota::add(&md, 1_000_000, 300, 1).unwrap();
    assert_eq!(read_maildirsize(&md), "1000000S\n600 3\n");
    Quota::add(&md, 1_000_000, 10, 1).unwrap();
    assert_eq!(read_maildirsize(&md), "1000000S\n600 3\n10 1\n");
    Quota::add(
        &md,
        QuotaLimit {
            bytes: 0,
            messages: 50,
        },
        10,
        1,
    )
    .unwrap();
    assert_eq!(read_maildirsize(&md), "50C\n600 3\n");
    assert_eq!(
        Quota::usage_with_limit(&md, QuotaLimit::from(2000)).unwrap(),
        want
    );
    assert_eq!(read_maildirsize(&md), "2000S\n600 3\n");
}

#[test]
fn recalculates_broken_or_too_big_files() {
    let (_t, md) = maildir();
    let want = fill(&md);
    let mut big = String::from("1000000S\n");
    while big.len() < 5120 {
        big.push_str("1 0\n");
    }
    for body in [
        big.as_str(),
        "1000000S\n-700 -1\n",
        "1000000S\nabc\n",
        "1000000S\n1 1\0\n",
        "",
    ] {
        write_maildirsize(&md, body, Duration::ZERO);
        assert_eq!(Quota::usage(&md).unwrap(), want, "{body:?}");
        let expect = if body.is_empty() {
            "0S\n600 3\n"
        } else {
            "1000000S\n600 3\n"
        };
        assert_eq!(read_maildirsize(&md), expect, "{body:?}");
    }
}

#[test]
fn over_quota_files_are_recalculated_when_old_or_long() {
    let (_t, md) = maildir();
    let want = fill(&md);
    let limit = 1000;
    // Over quota, one delta line, fresh: trusted.
    write_maildirsize(&md, "1000S\n5000 3\n", Duration::ZERO);
    assert_eq!(Quota::usage(&md).unwrap().bytes, 5000);
    // Over quota and older than 15 minutes: recalculated.
    write_maildirsize(
        &md,
        "1000S\n5000 3\n",
        STALE_AFTER + Duration::from_secs(60),
    );
    assert_eq!(Quota::usage(&md).unwrap(), want);
    assert!(Quota::check(limit, want, 400));
    assert!(!Quota::check(limit, want, 401));
    // Over quota with more than one delta line: recalculated.
    write_maildirsize(&md, "1000S\n4000 2\n1000 1\n", Duration::ZERO);
    assert_eq!(Quota::usage(&md).unwrap(), want);
    // Under quota and old: trusted (the Maildir++ rule only distrusts over-quota results).
    write_maildirsize(&md, "1000S\n10 1\n20 1\n", STALE_AFTER * 2);
    assert_eq!(
        Quota::usage(&md).unwrap(),
        Usage {
            bytes: 30,
            messages: 2
        }
    );
}

#[test]
fn limits() {
    assert_eq!(
        QuotaLimit::parse("1000000S,1000C"),
        QuotaLimit {
            bytes: 1_000_000,
            messages: 1000
        }
    );
    assert_eq!(
        QuotaLimit::parse("1000C"),
        QuotaLimit {
            bytes: 0,
            messages: 1000
        }
    );
    assert_eq!(
        QuotaLimit::parse("junk,5S"),
        QuotaLimit {
            bytes: 5,
            messages: 0
        }
    );
    let odd = QuotaLimit::parse("5\u{fc},,S,-1C,+2C");
    assert_eq!((odd.bytes, odd.messages), (0, 2));
    assert_eq!(QuotaLimit::default().header(), "0S");
    assert_eq!(
        QuotaLimit {
            bytes: 7,
            messages: 9
        }
        .header(),
        "7S,9C"
    );
    let usage = Usage {
        bytes: 90,
        messages: 9,
    };
    assert!(Quota::check(0, usage, u64::MAX));
    assert!(Quota::check(100, usage, 10) && !Quota::check(100, usage, 11));
    assert!(
        !QuotaLimit {
            bytes: 0,
            messages: 9
        }
        .allows(usage, 1)
    );
    assert!(
        QuotaLimit {
            bytes: 100,
            messages: 10
        }
        .allows(usage, 10)
    );
}

/// One recipient's delivery: the quota checked before anything is stored, each copy's folder
/// resolved (missing folder → INBOX, `CreateFolder` creates it), `maildirsize` updated once.
#[test]
fn deliver_copies_checks_the_quota_then_stores_every_copy() {
    use postern_maildir::{Destination, MessageCopy, QuotaPolicy, RecipientDelivery};
    let (_t, md) = maildir();
    let want = fill(&md);
    md.create_folder("Lists").unwrap();
    let limit = QuotaLimit::from(want.bytes + 250);
    let copies = vec![
        MessageCopy::to(Destination::Inbox),
        MessageCopy::to(Destination::Folder("Lists".into())),
        MessageCopy::to(Destination::Folder("Nosuch".into())),
        MessageCopy {
            destination: Destination::CreateFolder("New/Sub".into()),
            flags: Flags {
                seen: true,
                ..Flags::default()
            },
        },
    ];
    // 300 bytes do not fit: nothing stored, no folder created.
    let big = [b'b'; 300];
    let r = md
        .deliver_copies(&big, &copies, QuotaPolicy::Enforce(limit))
        .unwrap();
    assert!(matches!(r, RecipientDelivery::OverQuota), "{r:?}");
    assert!(!md.folder_exists("New/Sub").unwrap());
    assert_eq!(Quota::usage(&md).unwrap(), want);

    // 50 bytes fit: four copies.
    let small = [b's'; 50];
    let RecipientDelivery::Stored(done) = md
        .deliver_copies(&small, &copies, QuotaPolicy::Enforce(limit))
        .unwrap()
    else {
        panic!("refused");
    };
    assert!(done.first_error.is_none() && done.quota_error.is_none());
    let folders: Vec<&str> = done.copies.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(folders, ["INBOX", "Lists", "INBOX", "New/Sub"]);
    assert!(
        done.copies[3]
            .1
            .path
            .starts_with(md.root().join(".New.Sub/cur"))
    );
    assert_eq!(fs::read(&done.copies[1].1.path).unwrap(), small);
    assert_eq!(
        Quota::usage(&md).unwrap(),
        Usage {
            bytes: want.bytes + 200,
            messages: want.messages + 4,
        }
    );
    // The limit line was new: maildirsize was recalculated (it counts all four copies).
    assert_eq!(read_maildirsize(&md), "850S\n800 7\n");

    // Record: no check (already over the limit now), but counted; a bad name fails that copy
    // only.
    let copies = vec![
        MessageCopy::to(Destination::CreateFolder("a/../b".into())),
        MessageCopy::to(Destination::Inbox),
    ];
    let RecipientDelivery::Stored(done) = md
        .deliver_copies(&big, &copies, QuotaPolicy::Record(limit))
        .unwrap()
    else {
        panic!("refused");
    };
    assert_eq!(done.copies.len(), 1);
    assert!(done.first_error.is_some());
    assert_eq!(Quota::usage(&md).unwrap().bytes, want.bytes + 500);

    // Unlimited: maildirsize is left alone.
    let before = read_maildirsize(&md);
    md.deliver_copies(
        &small,
        &[MessageCopy::to(Destination::Inbox)],
        QuotaPolicy::Unlimited,
    )
    .unwrap();
    assert_eq!(read_maildirsize(&md), before);
}

/// The usage is kept per process and the file only read again when it changed: every
/// change by any writer (a delta appended by lmtp-deliver or Dovecot, a rewrite by a
/// recalculation, an edit in place) is seen at the next check.
#[test]
fn usage_follows_every_change_of_maildirsize() {
    let (_t, md) = maildir();
    let path = md.root().join(MAILDIRSIZE_FILE);
    write_maildirsize(&md, "1000S\n100 1\n", Duration::ZERO);
    let u = |bytes, messages| Usage { bytes, messages };
    // Past the time stamp margin the parse is kept (the cached path is what follows).
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(Quota::usage(&md).unwrap(), u(100, 1));
    assert_eq!(Quota::usage(&md).unwrap(), u(100, 1));
    // Another process appends a delta.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"250 2\n").unwrap();
    drop(f);
    assert_eq!(Quota::usage(&md).unwrap(), u(350, 3));
    // A delta being written (no LF yet) is not counted until it is complete.
    let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"50").unwrap();
    assert_eq!(Quota::usage(&md).unwrap(), u(350, 3));
    std::io::Write::write_all(&mut f, b" 1\n").unwrap();
    drop(f);
    assert_eq!(Quota::usage(&md).unwrap(), u(400, 4));
    // Our own delta.
    Quota::add(&md, QuotaLimit::from(1000), -100, -1).unwrap();
    assert_eq!(Quota::usage(&md).unwrap(), u(300, 3));
    // Replaced (a recalculation elsewhere), then edited in place to the same length.
    let tmp = md.root().join("tmp/ms");
    fs::write(&tmp, "1000S\n900 9\n").unwrap();
    fs::rename(&tmp, &path).unwrap();
    std::thread::sleep(Duration::from_millis(60));
    assert_eq!(Quota::usage(&md).unwrap(), u(900, 9));
    assert_eq!(Quota::usage(&md).unwrap(), u(900, 9));
    fs::write(&path, "1000S\n800 8\n").unwrap();
    assert_eq!(Quota::usage(&md).unwrap(), u(800, 8));
}
