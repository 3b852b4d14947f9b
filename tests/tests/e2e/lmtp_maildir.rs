//! lmtp-deliver and the Maildir on disk: a user's first message makes the Maildir, parts
//! removed later are made again by the next delivery, and nothing is left in `tmp/`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use postern_e2e::Postern;

use crate::lmtp::{Lmtp, lmtp_install, maildir, messages};

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn msg(subject: &str) -> String {
    format!(
        "From: Sender <sender@remote.test>\nSubject: {subject}\nMessage-ID: <{subject}@remote.test>\n\nbody\n"
    )
}

fn deliver(c: &mut Lmtp, rcpts: &[&str], subject: &str) {
    let (rcpt, after) = c.transaction("s@remote.test", rcpts, &msg(subject));
    assert!(rcpt.iter().all(|r| r.starts_with("250")), "{rcpt:?}");
    assert!(
        after.len() == rcpts.len() && after.iter().all(|r| r.starts_with("250 2.0.0")),
        "{after:?}"
    );
}

#[test]
fn lmtp_first_delivery_makes_the_maildir_and_missing_parts_are_made_again() {
    let pm = lmtp_install(Postern::builder());
    // bob has a quota: his delivery reads and records usage in a Maildir not made yet.
    pm.mailctl_ok(&["user", "quota", "bob@example.org", "1M"]);
    let (alice, bob) = (maildir(&pm, "alice"), maildir(&pm, "bob"));
    assert!(
        !alice.exists() && !bob.exists(),
        "no Maildir before the first message"
    );
    let mut c = Lmtp::connect(&pm.socket("lmtp"));
    assert!(c.cmd("LHLO client.test").starts_with("250"));

    deliver(&mut c, &["alice@example.org", "bob@example.org"], "first");
    for md in [&alice, &bob] {
        for d in [
            md.to_path_buf(),
            md.join("cur"),
            md.join("new"),
            md.join("tmp"),
        ] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        assert_eq!(messages(md, "new").len(), 1, "{}", md.display());
        assert!(messages(md, "tmp").is_empty());
    }
    let size = fs::read_to_string(bob.join("maildirsize")).expect("bob's maildirsize");
    assert!(
        size.starts_with("1048576S\n") && size.trim_end().ends_with(" 1"),
        "{size:?}"
    );

    // new/ removed: the next delivery makes it again.
    fs::remove_dir_all(alice.join("new")).expect("remove new/");
    // bob's whole Maildir removed: made again, and his quota still works.
    fs::remove_dir_all(&bob).expect("remove bob's Maildir");
    deliver(&mut c, &["alice@example.org", "bob@example.org"], "second");
    let inbox = messages(&alice, "new");
    assert!(
        inbox.len() == 1 && inbox[0].contains("Subject: second"),
        "{inbox:?}"
    );
    assert_eq!(mode(&alice.join("new")), 0o700);
    assert!(
        messages(&alice, "tmp").is_empty(),
        "a delivery left tmp/ a file"
    );
    assert_eq!(messages(&bob, "new").len(), 1);
    assert!(bob.join("tmp").is_dir() && bob.join("cur").is_dir());
    deliver(&mut c, &["bob@example.org"], "third");
    let size = fs::read_to_string(bob.join("maildirsize")).expect("bob's maildirsize");
    let counted: i64 = size
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<i64>().ok())
        .sum();
    assert_eq!(counted, 2, "{size:?}");
    assert!(c.cmd("QUIT").starts_with("221"));
}
