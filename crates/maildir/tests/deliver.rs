//! Delivery, flags, keywords, folders, crash safety and permissions.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use postern_maildir::filename::{self, hostname};
use postern_maildir::keywords::{DovecotKeywords, KEYWORDS_FILE};
use postern_maildir::{
    DropReason, Flags, Maildir, MaildirError, NameError, TMP_MAX_AGE, crlf_to_lf,
};

const MSG: &[u8] = b"From: a@example.org\nTo: b@example.org\nSubject: hi\n\nHello\n";

fn maildir() -> (tempfile::TempDir, Maildir) {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("example.org/bob/Maildir"), 0o700).unwrap();
    (dir, md)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn deliver_to_new_with_exact_content_and_dovecot_name() {
    let (_t, md) = maildir();
    let d = md.deliver(None, MSG, &Flags::default()).unwrap();
    assert_eq!(d.path, md.root().join("new").join(&d.name));
    assert_eq!(fs::read(&d.path).unwrap(), MSG);
    assert_eq!(names(&md.root().join("new")), vec![d.name.clone()]);
    assert!(names(&md.root().join("tmp")).is_empty());
    assert!(names(&md.root().join("cur")).is_empty());

    let p = filename::parse(&d.name).unwrap();
    let lines = MSG.iter().filter(|&&b| b == b'\n').count() as u64;
    assert_eq!(
        (p.size, p.vsize),
        (Some(MSG.len() as u64), Some(MSG.len() as u64 + lines))
    );
    assert_eq!(
        (d.size, d.vsize),
        (MSG.len() as u64, MSG.len() as u64 + lines)
    );
    assert_eq!(p.pid, Some(std::process::id()));
    assert_eq!(p.host, filename::escape_hostname(hostname()));
    assert!(p.info.is_none());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(p.secs <= now && p.secs + 60 > now);
    let expected = format!(
        "{}.M{}P{}Q{}.{},S={},W={}",
        p.secs,
        p.usecs.unwrap(),
        p.pid.unwrap(),
        p.counter.unwrap(),
        p.host,
        d.size,
        d.vsize
    );
    assert_eq!(d.name, expected);
}

#[test]
fn deliveries_get_distinct_names() {
    let (_t, md) = maildir();
    let a = md.deliver(None, MSG, &Flags::default()).unwrap();
    let b = md.deliver(None, MSG, &Flags::default()).unwrap();
    assert_ne!(a.name, b.name);
    let (ca, cb) = (
        filename::parse(&a.name).unwrap().counter,
        filename::parse(&b.name).unwrap().counter,
    );
    assert!(cb > ca);
    assert_eq!(names(&md.root().join("new")).len(), 2);
}

#[test]
fn crlf_input_is_stored_as_given_lmtp_normalises_first() {
    let (_t, md) = maildir();
    let crlf = b"Subject: x\r\n\r\nbody\r\n";
    let lf = crlf_to_lf(crlf);
    let d = md.deliver(None, &lf, &Flags::default()).unwrap();
    assert_eq!(fs::read(&d.path).unwrap(), b"Subject: x\n\nbody\n");
    assert_eq!((d.size, d.vsize), (17, crlf.len() as u64));
}

#[test]
fn flags_put_the_message_in_cur() {
    let (_t, md) = maildir();
    let flags = Flags {
        seen: true,
        flagged: true,
        answered: true,
        ..Flags::default()
    };
    let d = md.deliver(None, MSG, &flags).unwrap();
    assert!(d.name.ends_with(":2,FRS"), "{}", d.name);
    assert_eq!(d.path.parent().unwrap(), md.root().join("cur"));
    assert!(names(&md.root().join("new")).is_empty());
    let all = Flags {
        draft: true,
        deleted: true,
        ..flags
    };
    assert!(
        md.deliver(None, MSG, &all)
            .unwrap()
            .name
            .ends_with(":2,DFRST")
    );
}

#[test]
fn keywords_use_dovecot_keywords_letters() {
    let (_t, md) = maildir();
    let flags = Flags {
        seen: true,
        keywords: vec!["$Junk".into(), "Work".into()],
        ..Flags::default()
    };
    let d = md.deliver(None, MSG, &flags).unwrap();
    assert!(d.name.ends_with(":2,Sab"), "{}", d.name);
    assert!(d.dropped_keywords.is_empty());
    let file = md.root().join(KEYWORDS_FILE);
    assert_eq!(fs::read_to_string(&file).unwrap(), "0 $Junk\n1 Work\n");
    assert_eq!(mode(&file), 0o600);
    assert!(!md.root().join("dovecot-keywords.lock").exists());
    assert!(!md.root().join("dovecot-uidlist.lock").exists());

    // Known keywords (any case) reuse their letter; a new one gets the next letter.
    let flags = Flags {
        keywords: vec!["work".into(), "Later".into(), "WORK".into()],
        ..Flags::default()
    };
    let d = md.deliver(None, MSG, &flags).unwrap();
    assert!(d.name.ends_with(":2,bc"), "{}", d.name);
    let kw = DovecotKeywords::load(md.root()).unwrap();
    assert_eq!(
        (kw.letter_of("later"), kw.name_of(b'c')),
        (Some(b'c'), Some("Later"))
    );

    // Only keywords: cur/ with keyword letters, no system flags.
    let d = md
        .deliver(
            None,
            MSG,
            &Flags {
                keywords: vec!["$Junk".into()],
                ..Flags::default()
            },
        )
        .unwrap();
    assert!(d.name.ends_with(":2,a") && d.path.starts_with(md.root().join("cur")));
}

#[test]
fn keywords_beyond_26_and_invalid_ones_are_dropped_with_a_warning() {
    let (_t, md) = maildir();
    let many: Vec<String> = (0..28).map(|i| format!("kw{i}")).collect();
    let flags = Flags {
        keywords: [vec!["bad word".to_owned()], many].concat(),
        ..Flags::default()
    };
    let d = md.deliver(None, MSG, &flags).unwrap();
    let reasons: Vec<(&str, &DropReason)> = d
        .dropped_keywords
        .iter()
        .map(|k| (k.keyword.as_str(), &k.reason))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("bad word", &DropReason::InvalidSyntax),
            ("kw26", &DropReason::TooMany),
            ("kw27", &DropReason::TooMany)
        ]
    );
    assert!(
        d.name.ends_with(":2,abcdefghijklmnopqrstuvwxyz"),
        "{}",
        d.name
    );
    assert_eq!(
        fs::read_to_string(md.root().join(KEYWORDS_FILE))
            .unwrap()
            .lines()
            .count(),
        26
    );
}

#[test]
fn keyword_lock_held_by_another_process_drops_new_keywords_only() {
    let (_t, md) = maildir();
    md.deliver(
        None,
        MSG,
        &Flags {
            keywords: vec!["Known".into()],
            ..Flags::default()
        },
    )
    .unwrap();
    // A live lock (our own pid is never judged stale), as Dovecot would hold it.
    let lock = md.root().join("dovecot-uidlist.lock");
    fs::write(&lock, format!("{}:{}", std::process::id(), hostname())).unwrap();
    let flags = Flags {
        keywords: vec!["Known".into(), "New".into()],
        ..Flags::default()
    };
    let d = md.deliver(None, MSG, &flags).unwrap();
    assert!(d.name.ends_with(":2,a"), "{}", d.name);
    assert_eq!(d.dropped_keywords.len(), 1);
    assert_eq!(d.dropped_keywords[0].reason, DropReason::LockTimeout);
    assert!(lock.exists(), "someone else's lock must not be removed");
}

#[test]
fn folders_are_maildir_plus_plus() {
    let (_t, md) = maildir();
    assert!(md.create_folder("Archive/2026").unwrap());
    assert!(!md.create_folder("Archive/2026").unwrap());
    assert!(md.create_folder("Entwürfe").unwrap());
    assert!(!md.create_folder("inbox").unwrap());
    let dir = md.root().join(".Archive.2026");
    assert_eq!(md.folder_dir("Archive/2026").unwrap(), dir);
    assert_eq!(md.folder_dir("INBOX").unwrap(), md.root());
    assert!(md.root().join(".Entw&APw-rfe/cur").is_dir());
    for sub in ["cur", "new", "tmp"] {
        assert!(dir.join(sub).is_dir());
    }
    assert_eq!(fs::read(dir.join("maildirfolder")).unwrap(), b"");
    assert!(md.folder_exists("Archive/2026").unwrap());
    assert!(md.folder_exists("Inbox").unwrap());
    assert!(!md.folder_exists("Archive").unwrap()); // Maildir++ is flat: no parent created
    assert_eq!(
        md.list_folders().unwrap(),
        vec!["Archive/2026".to_owned(), "Entwürfe".to_owned()]
    );

    let d = md
        .deliver(Some("Entwürfe"), MSG, &Flags::default())
        .unwrap();
    assert_eq!(
        d.path.parent().unwrap(),
        md.root().join(".Entw&APw-rfe/new")
    );
    let d = md.deliver(Some("INBOX"), MSG, &Flags::default()).unwrap();
    assert_eq!(d.path.parent().unwrap(), md.root().join("new"));

    assert!(
        matches!(md.deliver(Some("Nope"), MSG, &Flags::default()), Err(MaildirError::NoSuchFolder(n)) if n == "Nope")
    );
    let err = md
        .deliver(Some("../x"), MSG, &Flags::default())
        .unwrap_err();
    assert!(
        matches!(
            err,
            MaildirError::Name {
                source: NameError::DotComponent,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_temporary());
    assert_eq!(md.folder_dir("a.b"), Err(NameError::ContainsDot));

    // Keywords are per mailbox: the folder has its own dovecot-keywords.
    md.deliver(
        Some("Archive/2026"),
        MSG,
        &Flags {
            keywords: vec!["X".into()],
            ..Flags::default()
        },
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(dir.join(KEYWORDS_FILE)).unwrap(),
        "0 X\n"
    );
    assert!(!md.root().join(KEYWORDS_FILE).exists());

    // Junk and non-canonical directories are not listed.
    fs::create_dir(md.root().join(".&AEE-")).unwrap();
    fs::write(md.root().join(".not-a-dir"), b"").unwrap();
    assert_eq!(md.list_folders().unwrap().len(), 2);
}

#[test]
fn open_existing_maildir_as_it_is() {
    let (_t, md) = maildir();
    let d = md.deliver(None, MSG, &Flags::default()).unwrap();
    fs::remove_dir(md.root().join("tmp")).unwrap();
    let again = Maildir::open_or_create(md.root(), Maildir::DEFAULT_DIR_MODE).unwrap();
    assert!(again.root().join("tmp").is_dir());
    assert!(d.path.exists());
}

#[test]
fn crash_leftover_in_tmp_is_invisible_and_cleaned_after_36_hours() {
    let (_t, md) = maildir();
    md.create_folder("Sent").unwrap();
    // A crash after writing tmp/ but before link(): a partial file stays in tmp/.
    let leftover = md.root().join("tmp").join(filename::generate(10, 12));
    fs::write(&leftover, b"partial").unwrap();
    let fresh = md.root().join(".Sent/tmp/fresh");
    fs::write(&fresh, b"in progress").unwrap();
    let delivered = md.deliver(None, MSG, &Flags::default()).unwrap();
    let visible: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|s| names(&md.root().join(s)))
        .collect();
    assert_eq!(visible, vec![delivered.name]);

    assert_eq!(md.clean_tmp(TMP_MAX_AGE).unwrap(), 0);
    let old = SystemTime::now() - TMP_MAX_AGE - Duration::from_secs(60);
    let times = fs::FileTimes::new().set_accessed(old).set_modified(old);
    fs::File::options()
        .write(true)
        .open(&leftover)
        .unwrap()
        .set_times(times)
        .unwrap();
    assert_eq!(md.clean_tmp(TMP_MAX_AGE).unwrap(), 1);
    assert!(!leftover.exists() && fresh.exists());
}

#[test]
fn permissions_are_private() {
    let (t, md) = maildir();
    md.create_folder("Sent").unwrap();
    let d = md
        .deliver(
            None,
            MSG,
            &Flags {
                keywords: vec!["k".into()],
                ..Flags::default()
            },
        )
        .unwrap();
    for dir in [
        md.root().to_path_buf(),
        md.root().join("cur"),
        md.root().join("new"),
        md.root().join("tmp"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    assert_eq!(mode(&t.path().join("example.org")), 0o700);
    assert_eq!(mode(&md.root().join(".Sent")), 0o700);
    assert_eq!(mode(&md.root().join(".Sent/new")), 0o700);
    assert_eq!(mode(&md.root().join(".Sent/maildirfolder")), 0o600);
    assert_eq!(mode(&d.path), 0o600);

    // A group-shared Maildir: files follow the directory mode, like Dovecot.
    let shared = Maildir::open_or_create(t.path().join("shared"), 0o770).unwrap();
    assert_eq!(mode(shared.root()), 0o770);
    let d = shared.deliver(None, MSG, &Flags::default()).unwrap();
    assert_eq!(mode(&d.path), 0o660);
}

#[test]
fn delivery_recreates_missing_subdirectories_and_refuses_a_folder_that_is_a_file() {
    let (_t, md) = maildir();
    md.create_folder("Sent").unwrap();
    // Subdirectories removed after the Maildir was opened: a delivery puts them back.
    for sub in ["tmp", "new"] {
        fs::remove_dir(md.root().join(sub)).unwrap();
        fs::remove_dir(md.root().join(".Sent").join(sub)).unwrap();
    }
    let d = md.deliver(None, MSG, &Flags::default()).unwrap();
    assert_eq!(fs::read(&d.path).unwrap(), MSG);
    assert!(md.root().join("tmp").is_dir() && md.root().join("cur").is_dir());
    let d = md.deliver(Some("Sent"), MSG, &Flags::default()).unwrap();
    assert!(d.path.starts_with(md.root().join(".Sent/new")));
    // Only new/ missing (tmp/ there): the link step notices and creates it.
    fs::remove_dir_all(md.root().join("new")).unwrap();
    let d = md.deliver(None, MSG, &Flags::default()).unwrap();
    assert!(d.path.starts_with(md.root().join("new")));
    assert!(names(&md.root().join("tmp")).is_empty());
    // A "folder" that is a plain file is no folder.
    fs::write(md.root().join(".Junk"), b"").unwrap();
    assert!(matches!(
        md.deliver(Some("Junk"), MSG, &Flags::default()),
        Err(MaildirError::NoSuchFolder(n)) if n == "Junk"
    ));
}
