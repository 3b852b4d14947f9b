//! Inputs the fuzz targets (`fuzz/`, target `maildir_files`) found crashing; each must now be
//! handled without a panic.

use postern_maildir::uidlist::Uidlist;
use postern_maildir::{Flags, Maildir};

/// A `dovecot-uidlist` header field starting with a multi-byte character (here the
/// replacement character that a non-UTF-8 byte becomes) was split inside the character:
/// `byte index 1 is not a char boundary`, a panic on every open of the mailbox.
#[test]
fn uidlist_header_field_starting_with_multibyte_char() {
    for data in [
        &b"3 \x81 V1796560888 N4\n1 :1.M1P1.host\n"[..],
        "3 V1796560888 N4 \u{e9}t\u{e9}\n".as_bytes(),
        "3 \u{1f600}\n".as_bytes(),
    ] {
        let parsed = Uidlist::parse(data);
        if let Ok(list) = parsed {
            assert_eq!(list.uid_validity, 1_796_560_888);
        }
    }
}

/// The same header on disk: the mailbox still opens with its messages.
#[test]
fn mailbox_with_such_a_uidlist_opens() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
    md.deliver(None, b"Subject: a\r\n\r\nbody\r\n", &Flags::default())
        .unwrap();
    drop(md.open_mailbox("INBOX").unwrap());
    let path = md.root().join("dovecot-uidlist");
    let old = std::fs::read(&path).unwrap();
    let mut new = b"3 \x81\xff ".to_vec();
    new.extend_from_slice(&old[2..]);
    std::fs::write(&path, new).unwrap();
    let inbox = md.open_mailbox("INBOX").unwrap();
    assert_eq!(inbox.messages().len(), 1);
}
