//! IMAP METADATA (RFC 5464) storage: annotations on the server and on each mailbox.
//!
//! - A mailbox's entries live in [`METADATA_FILE`] in the mailbox's own directory (the Maildir
//!   root for INBOX, `.A.B` for `A/B`), so deleting a folder removes them and renaming it
//!   carries them (the directory moves). Renaming INBOX makes a new mailbox of its messages
//!   and leaves an empty INBOX: its entries go with the messages, as a renamed mailbox's do,
//!   and the INBOX left behind starts without any.
//! - The server's entries (mailbox `""`) live in [`SERVER_METADATA_FILE`] in the root.
//! - Entry names are the full names (`/private/…` and `/shared/…` stay distinct keys); the
//!   caller validates and normalises them (imapd's `cmd/metadata.rs`). Values are bytes.
//!
//! File format (binary-safe, ours; Dovecot keeps METADATA in its own dict and ignores these
//! files): the line `POSTERN-METADATA 1\n`, then per entry `<name length> <value length>\n`,
//! the name bytes, the value bytes and `\n`. A file that does not parse is reported as an
//! `InvalidData` I/O error, never half-read.
//!
//! Writes are serialised per user by the dotlock `postern-metadata-user.lock` in the root (so
//! the per-user limits hold under concurrent sessions) and are durable: the new file is
//! written to a temporary name, fsynced, renamed over the old one and the directory fsynced.
//! Readers take no lock: the rename makes them see the old or the new file, whole.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::dotlock::DotLock;
use crate::error::{MaildirError, Result};
use crate::fsutil::{fsync_dir, is_not_found, random_hex, replace_file};
use crate::store::Maildir;

/// A mailbox's entries, in its directory.
pub const METADATA_FILE: &str = "postern-metadata";
/// The server's entries, in the Maildir root.
pub const SERVER_METADATA_FILE: &str = "postern-metadata-server";
/// The file whose dotlock serialises this user's metadata writes.
const USER_LOCK_FILE: &str = "postern-metadata-user";
const HEADER: &[u8] = b"POSTERN-METADATA 1\n";
const LOCK_WAIT: Duration = Duration::from_secs(30);
const LOCK_STALE: Duration = Duration::from_secs(30);
/// Files larger than this are refused when read (the limits keep ours far smaller).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Entry name → value.
pub type Entries = BTreeMap<String, Vec<u8>>;

/// Whose entries: the server's (`""`) or a mailbox's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetadataTarget<'a> {
    /// Server annotations (mailbox `""`).
    Server,
    /// A mailbox, by name (`/` separator, `INBOX` for the inbox).
    Mailbox(&'a str),
}

/// Limits against abuse, checked under the user's lock before anything is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetadataLimits {
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most entries on one mailbox (or on the server).
    pub max_entries_per_mailbox: usize,
    /// Most entries of one user, server and all mailboxes together.
    pub max_entries_per_user: usize,
    /// Most bytes (names and values) of one user, server and all mailboxes together.
    pub max_bytes_per_user: u64,
}

/// Why a change was refused (nothing was written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetadataRefusal {
    /// A value is larger than [`MetadataLimits::max_value_bytes`] (given).
    ValueTooLarge(usize),
    /// The mailbox or the user would hold too many entries.
    TooManyEntries,
    /// The user's entries would take more than [`MetadataLimits::max_bytes_per_user`].
    TooManyBytes,
}

/// Serialises entries in the file format.
fn encode(entries: &Entries) -> Vec<u8> {
    let size: usize = entries.iter().map(|(k, v)| k.len() + v.len() + 24).sum();
    let mut out = Vec::with_capacity(HEADER.len() + size);
    out.extend_from_slice(HEADER);
    for (k, v) in entries {
        out.extend_from_slice(format!("{} {}\n", k.len(), v.len()).as_bytes());
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out
}

/// Parses the file format; `None` if it is not well formed.
fn decode(data: &[u8]) -> Option<Entries> {
    let mut rest = data.strip_prefix(HEADER)?;
    let mut out = Entries::new();
    while !rest.is_empty() {
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&rest[..nl]).ok()?;
        let (a, b) = line.split_once(' ')?;
        let (klen, vlen): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
        rest = &rest[nl + 1..];
        let end = klen.checked_add(vlen)?;
        if rest.len() <= end || rest[end] != b'\n' {
            return None;
        }
        let key = std::str::from_utf8(&rest[..klen]).ok()?.to_owned();
        out.insert(key, rest[klen..end].to_vec());
        rest = &rest[end + 1..];
    }
    Some(out)
}

fn read_file(path: &Path) -> Result<Entries> {
    let invalid = |what: &str| {
        MaildirError::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::InvalidData, what.to_owned()),
        )
    };
    match fs::metadata(path) {
        Ok(md) if md.len() > MAX_FILE_BYTES => return Err(invalid("metadata file too large")),
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(Entries::new()),
        Err(e) => return Err(MaildirError::io("stat", path, e)),
    }
    match fs::read(path) {
        Ok(d) => decode(&d).ok_or_else(|| invalid("metadata file is malformed")),
        Err(e) if is_not_found(&e) => Ok(Entries::new()),
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}

/// Removes temporary files a crashed writer left in `dir`. Called under the user's lock, when
/// no other write of this user's metadata can be in progress.
fn remove_leftovers(dir: &Path) {
    let prefix = format!("{METADATA_FILE}.tmp.");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn footprint(e: &Entries) -> (usize, u64) {
    let bytes = e.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    (e.len(), bytes)
}

impl Maildir {
    /// The file holding `target`'s entries; for a mailbox, `NoSuchFolder` if it does not exist.
    fn metadata_path(&self, target: MetadataTarget<'_>) -> Result<PathBuf> {
        match target {
            MetadataTarget::Server => Ok(self.root().join(SERVER_METADATA_FILE)),
            MetadataTarget::Mailbox(name) => {
                let dir = if crate::folder::is_inbox(name) {
                    self.root().to_path_buf()
                } else {
                    self.mailbox_dir(Some(name))?
                };
                if !dir.is_dir() {
                    return Err(MaildirError::NoSuchFolder(name.to_owned()));
                }
                Ok(dir.join(METADATA_FILE))
            }
        }
    }

    /// RENAME INBOX: INBOX's entries move to `to_dir`, the folder just made of its messages
    /// (under the user's lock, so a concurrent SETMETADATA on INBOX lands before or after).
    pub(crate) fn move_inbox_metadata(&self, to_dir: &Path) -> Result<()> {
        let from = self.root().join(METADATA_FILE);
        if fs::symlink_metadata(&from).is_err() {
            return Ok(());
        }
        let lock = DotLock::acquire(
            &self.root().join(USER_LOCK_FILE),
            LOCK_WAIT,
            LOCK_STALE,
            self.file_mode(),
        )?;
        match fs::rename(&from, to_dir.join(METADATA_FILE)) {
            Ok(()) => {
                fsync_dir(to_dir)?;
                fsync_dir(self.root())?;
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(MaildirError::io("rename", &from, e)),
        }
        drop(lock);
        Ok(())
    }

    /// The stored entries of the server or a mailbox (`NoSuchFolder` for a missing mailbox).
    pub fn metadata(&self, target: MetadataTarget<'_>) -> Result<Entries> {
        read_file(&self.metadata_path(target)?)
    }

    /// Every metadata file of this user: the server's and each folder's (INBOX's included).
    fn all_metadata_files(&self) -> Result<Vec<PathBuf>> {
        let mut files = vec![
            self.root().join(SERVER_METADATA_FILE),
            self.root().join(METADATA_FILE),
        ];
        for (_, dir) in self.folder_dirs()? {
            files.push(dir.join(METADATA_FILE));
        }
        Ok(files)
    }

    /// Applies `changes` (`Some` sets, `None` removes) to `target`'s entries, all or nothing:
    /// under the user's lock the limits are checked against the user's other entries, then
    /// the new file is written durably. `Ok(Err(_))` is a refusal (nothing changed).
    pub fn set_metadata(
        &self,
        target: MetadataTarget<'_>,
        changes: &[(String, Option<Vec<u8>>)],
        limits: &MetadataLimits,
    ) -> Result<std::result::Result<(), MetadataRefusal>> {
        if changes
            .iter()
            .any(|(_, v)| v.as_ref().is_some_and(|v| v.len() > limits.max_value_bytes))
        {
            return Ok(Err(MetadataRefusal::ValueTooLarge(limits.max_value_bytes)));
        }
        let path = self.metadata_path(target)?;
        let lock = DotLock::acquire(
            &self.root().join(USER_LOCK_FILE),
            LOCK_WAIT,
            LOCK_STALE,
            self.file_mode(),
        )?;
        let old = read_file(&path)?;
        let mut new = old.clone();
        for (k, v) in changes {
            match v {
                Some(v) => new.insert(k.clone(), v.clone()),
                None => new.remove(k),
            };
        }
        if new == old {
            drop(lock);
            return Ok(Ok(()));
        }
        let (old_n, old_b) = footprint(&old);
        let (new_n, new_b) = footprint(&new);
        // Removing (or shrinking) is always allowed, even over a limit lowered since.
        let grows = new_n > old_n || new_b > old_b;
        if grows {
            if new_n > limits.max_entries_per_mailbox && new_n > old_n {
                return Ok(Err(MetadataRefusal::TooManyEntries));
            }
            let (mut user_n, mut user_b) = (0usize, 0u64);
            for f in self.all_metadata_files()? {
                if f == path {
                    continue;
                }
                let (n, b) = footprint(&read_file(&f)?);
                user_n += n;
                user_b += b;
            }
            if new_n > old_n && user_n + new_n > limits.max_entries_per_user {
                return Ok(Err(MetadataRefusal::TooManyEntries));
            }
            if new_b > old_b && user_b + new_b > limits.max_bytes_per_user {
                return Ok(Err(MetadataRefusal::TooManyBytes));
            }
        }
        let dir = path.parent().unwrap_or(self.root());
        remove_leftovers(dir);
        if new.is_empty() {
            match fs::remove_file(&path) {
                Ok(()) => fsync_dir(dir)?,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(MaildirError::io("remove", &path, e)),
            }
        } else {
            let tmp = dir.join(format!("{METADATA_FILE}.tmp.{}", random_hex()));
            replace_file(&tmp, &path, &encode(&new), self.file_mode())?;
        }
        drop(lock);
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: MetadataLimits = MetadataLimits {
        max_value_bytes: 100,
        max_entries_per_mailbox: 3,
        max_entries_per_user: 5,
        max_bytes_per_user: 400,
    };

    fn md() -> (tempfile::TempDir, Maildir) {
        let t = tempfile::tempdir().unwrap();
        let m = Maildir::open_or_create(t.path().join("m"), 0o700).unwrap();
        (t, m)
    }

    fn set(k: &str, v: Option<&[u8]>) -> (String, Option<Vec<u8>>) {
        (k.to_owned(), v.map(<[u8]>::to_vec))
    }

    #[test]
    fn format_round_trip_and_rejects_garbage() {
        let mut e = Entries::new();
        e.insert("/private/a".into(), b"x\ny\0z".to_vec());
        e.insert("/shared/b".into(), Vec::new());
        e.insert("/shared/c d".into(), vec![0xff; 300]);
        let data = encode(&e);
        assert_eq!(decode(&data), Some(e));
        assert_eq!(decode(HEADER), Some(Entries::new()));
        for bad in [
            &b""[..],
            b"POSTERN-METADATA 2\n",
            b"POSTERN-METADATA 1\n3 1\n/abX",
            b"POSTERN-METADATA 1\n3 1\n/abXY",
            b"POSTERN-METADATA 1\n99999999999999999999 1\n",
            b"POSTERN-METADATA 1\n18446744073709551615 1\n",
            b"POSTERN-METADATA 1\nx y\n",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn set_get_delete_server_and_mailboxes() {
        let (_t, m) = md();
        m.create_folder("Work").unwrap();
        let srv = MetadataTarget::Server;
        let inbox = MetadataTarget::Mailbox("INBOX");
        let work = MetadataTarget::Mailbox("Work");
        m.set_metadata(srv, &[set("/private/a", Some(b"1"))], &LIMITS)
            .unwrap()
            .unwrap();
        m.set_metadata(inbox, &[set("/private/a", Some(b"2"))], &LIMITS)
            .unwrap()
            .unwrap();
        m.set_metadata(
            work,
            &[set("/private/a", Some(b"3")), set("/shared/a", Some(b"4"))],
            &LIMITS,
        )
        .unwrap()
        .unwrap();
        assert_eq!(m.metadata(srv).unwrap()["/private/a"], b"1");
        assert_eq!(m.metadata(inbox).unwrap()["/private/a"], b"2");
        let w = m.metadata(work).unwrap();
        assert_eq!(
            (&w["/private/a"][..], &w["/shared/a"][..]),
            (&b"3"[..], &b"4"[..])
        );
        m.set_metadata(work, &[set("/private/a", None)], &LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(m.metadata(work).unwrap().len(), 1);
        m.set_metadata(work, &[set("/shared/a", None)], &LIMITS)
            .unwrap()
            .unwrap();
        assert!(!m.root().join(".Work").join(METADATA_FILE).exists());
        assert!(matches!(
            m.metadata(MetadataTarget::Mailbox("Nope")),
            Err(MaildirError::NoSuchFolder(_))
        ));
        assert!(matches!(
            m.set_metadata(
                MetadataTarget::Mailbox("Nope"),
                &[set("/private/a", Some(b"1"))],
                &LIMITS
            ),
            Err(MaildirError::NoSuchFolder(_))
        ));
        // A crashed writer's temporary file goes with the next write.
        let leftover = m.root().join(format!("{METADATA_FILE}.tmp.0123"));
        fs::write(&leftover, b"half").unwrap();
        m.set_metadata(srv, &[set("/private/b", Some(b"2"))], &LIMITS)
            .unwrap()
            .unwrap();
        assert!(!leftover.exists());
        // No temporary files or lock left behind.
        let left: Vec<_> = fs::read_dir(m.root())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp.") || n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn limits_are_all_or_nothing() {
        let (_t, m) = md();
        m.create_folder("A").unwrap();
        m.create_folder("B").unwrap();
        let a = MetadataTarget::Mailbox("A");
        let b = MetadataTarget::Mailbox("B");
        let big = vec![b'x'; 101];
        assert_eq!(
            m.set_metadata(
                a,
                &[
                    set("/private/ok", Some(b"1")),
                    set("/private/big", Some(&big))
                ],
                &LIMITS
            )
            .unwrap(),
            Err(MetadataRefusal::ValueTooLarge(100))
        );
        assert!(m.metadata(a).unwrap().is_empty());
        let four: Vec<_> = (0..4)
            .map(|i| set(&format!("/private/{i}"), Some(b"v")))
            .collect();
        assert_eq!(
            m.set_metadata(a, &four, &LIMITS).unwrap(),
            Err(MetadataRefusal::TooManyEntries)
        );
        m.set_metadata(a, &four[..3], &LIMITS).unwrap().unwrap();
        m.set_metadata(b, &four[..2], &LIMITS).unwrap().unwrap();
        // User-wide: 5 entries at most.
        assert_eq!(
            m.set_metadata(MetadataTarget::Server, &four[..1], &LIMITS)
                .unwrap(),
            Err(MetadataRefusal::TooManyEntries)
        );
        // Replacing a value keeps the count; deleting is always allowed.
        m.set_metadata(a, &[set("/private/0", Some(b"w"))], &LIMITS)
            .unwrap()
            .unwrap();
        m.set_metadata(a, &[set("/private/0", None)], &LIMITS)
            .unwrap()
            .unwrap();
        // User-wide bytes: 400.
        let v = vec![b'y'; 100];
        let r = m.set_metadata(
            MetadataTarget::Server,
            &[set("/private/0", Some(&v))],
            &LIMITS,
        );
        r.unwrap().unwrap();
        let r = m.set_metadata(
            a,
            &[set("/private/1", Some(&v)), set("/private/2", Some(&v))],
            &LIMITS,
        );
        r.unwrap().unwrap();
        let r = m.set_metadata(b, &[set("/private/0", Some(&v))], &LIMITS);
        assert_eq!(r.unwrap(), Err(MetadataRefusal::TooManyBytes));
        assert_eq!(m.metadata(b).unwrap()["/private/0"], b"v");
    }

    #[test]
    fn delete_removes_and_rename_carries() {
        let (_t, m) = md();
        m.create_folder("Old").unwrap();
        m.create_folder("Old/Kid").unwrap();
        let e = [set("/private/comment", Some(b"c"))];
        m.set_metadata(MetadataTarget::Mailbox("Old"), &e, &LIMITS)
            .unwrap()
            .unwrap();
        m.set_metadata(MetadataTarget::Mailbox("Old/Kid"), &e, &LIMITS)
            .unwrap()
            .unwrap();
        m.rename_folder("Old", "New").unwrap();
        assert_eq!(m.metadata(MetadataTarget::Mailbox("New")).unwrap().len(), 1);
        assert_eq!(
            m.metadata(MetadataTarget::Mailbox("New/Kid"))
                .unwrap()
                .len(),
            1
        );
        m.delete_folder("New").unwrap();
        m.create_folder("New").unwrap();
        assert!(
            m.metadata(MetadataTarget::Mailbox("New"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn concurrent_writers_keep_every_entry() {
        let (_t, m) = md();
        let limits = MetadataLimits {
            max_entries_per_mailbox: 1000,
            max_entries_per_user: 1000,
            max_bytes_per_user: 1 << 20,
            ..LIMITS
        };
        std::thread::scope(|s| {
            for t in 0..4 {
                let m = &m;
                s.spawn(move || {
                    for i in 0..20 {
                        m.set_metadata(
                            MetadataTarget::Server,
                            &[set(&format!("/private/{t}/{i}"), Some(b"v"))],
                            &limits,
                        )
                        .unwrap()
                        .unwrap();
                    }
                });
            }
        });
        assert_eq!(m.metadata(MetadataTarget::Server).unwrap().len(), 80);
    }
}
