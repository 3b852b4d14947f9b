//! Durable delivery (`tmp/` → `new/` or `cur/`) and cleaning of `tmp/`.
//!
//! # Line endings
//! The bytes given are stored exactly. Like Dovecot, which keeps LF line endings in Maildir
//! files, lmtp-deliver passes messages through [`crlf_to_lf`] first. `S=` is the stored size and
//! `W=` the size with every bare LF counted as CRLF ([`virtual_size`]), which is right for
//! either kind of input.
//!
//! # Crash safety
//! 1. The message is written to `tmp/<name>` (created with `O_EXCL`), then `fsync`ed: only a
//!    complete file ever gets past this step.
//! 2. It is moved to `new/<name>` (`cur/<name>:2,<flags>` when flags are set) with
//!    `renameat2(RENAME_NOREPLACE)`, which is atomic and never replaces an existing file: the
//!    name appears whole or not at all, and a name that is taken (`EEXIST`) is tried again
//!    with a new one. Where that flag is not supported the file is hard-linked instead (also
//!    atomic, also `EEXIST`), and where hard links are not supported either, renamed after
//!    checking the target is absent.
//! 3. The target directory is `fsync`ed, making the new entry durable. Only then is `Ok`
//!    returned, so an acknowledged message survives a crash.
//! 4. After a link, the `tmp/` name is removed (no fsync needed: a leftover is only a second
//!    name). A move left nothing there to remove. Neither the move's removal of the `tmp/`
//!    name nor this one is made durable: after a power cut the old `tmp/` name may be back
//!    beside the new one, as a second name of the same complete file.
//!
//! A crash before step 2 leaves at most a file in `tmp/`, which readers never look at and
//! [`Maildir::clean_tmp`] removes after 36 hours. A crash between 2 and 3 leaves either no
//! entry or an entry to a complete, fsynced file. On any error the `tmp/` file is removed, and
//! if the directory fsync fails the new entry is removed too, so a retry does not duplicate it.
//!
//! (An unnamed file, `O_TMPFILE`, linked into `new/` was tried for issue 17 and dropped: on
//! ext4 without a journal the directory's fsync does not write the linked inode's link count,
//! so it needs a second file fsync after the link — three flushes per message against two —
//! and it measured slower: ~700 against ~1,200 msg/s into the Maildir at 20 SMTP sessions.)
//!
//! # Directories
//! A delivery does not stat the mailbox directories first: they are looked at only when a step
//! finds something missing. Then INBOX's root is created with its parents, a folder must exist
//! ([`MaildirError::NoSuchFolder`]), missing `cur/ new/ tmp/` are created (each directory
//! created is made durable by an fsync of its parent), and the step is tried again, once.
//! So [`Maildir::at`] (which touches nothing) is enough to deliver to a user's first message.

use std::borrow::Cow;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

use crate::error::{IoContext, MaildirError, Result};
use crate::filename;
use crate::flags::{Flags, info_suffix};
use crate::fsutil::{create_excl, fsync_dir, is_not_found, now_secs};
use crate::keywords::{DroppedKeyword, letters_for};
use crate::quota::{Quota, QuotaLimit};
use crate::store::Maildir;

/// The Maildir rule: files in `tmp/` untouched for 36 hours are leftovers.
pub const TMP_MAX_AGE: Duration = Duration::from_secs(36 * 3600);

/// A delivered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// Full path of the message file.
    pub path: PathBuf,
    /// Its file name (including `:2,<flags>` when it went to `cur/`).
    pub name: String,
    /// Bytes stored (`S=`).
    pub size: u64,
    /// Size with CRLF line endings (`W=`).
    pub vsize: u64,
    /// Keywords that were not stored, with the reason (the message was delivered anyway).
    pub dropped_keywords: Vec<DroppedKeyword>,
}

/// Where one copy of a message goes ([`Maildir::deliver_copies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// INBOX.
    Inbox,
    /// This folder when it exists, else INBOX (plus-addressing, Sieve `fileinto`).
    Folder(String),
    /// This folder, created first when it is missing (Sieve `fileinto :create`).
    CreateFolder(String),
}

/// One copy to store ([`Maildir::deliver_copies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCopy {
    /// The folder.
    pub destination: Destination,
    /// Flags and keywords to store it with.
    pub flags: Flags,
}

impl MessageCopy {
    /// A copy without flags.
    pub fn to(destination: Destination) -> Self {
        Self {
            destination,
            flags: Flags::default(),
        }
    }
}

/// How [`Maildir::deliver_copies`] treats the Maildir++ quota (`maildirsize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPolicy {
    /// No quota: `maildirsize` is neither read nor written.
    Unlimited,
    /// Refuse the message when it does not fit; record what was stored.
    Enforce(QuotaLimit),
    /// Store without checking (the check was made before), and record what was stored.
    Record(QuotaLimit),
}

/// What [`Maildir::deliver_copies`] did.
#[derive(Debug)]
pub enum RecipientDelivery {
    /// The message does not fit in the quota; nothing was stored.
    OverQuota,
    /// Every copy was tried.
    Stored(StoredCopies),
}

/// The copies of one delivery.
#[derive(Debug, Default)]
pub struct StoredCopies {
    /// The copies stored, in order: the folder (as asked for; `INBOX` for INBOX and for a
    /// folder that does not exist) and the file.
    pub copies: Vec<(String, Delivered)>,
    /// The error of the first copy that could not be stored (the others were tried).
    pub first_error: Option<MaildirError>,
    /// `maildirsize` could not be updated (the copies are stored; the next recalculation
    /// corrects the usage).
    pub quota_error: Option<MaildirError>,
}

/// Converts CRLF line endings to LF; lone CRs are kept. Borrows when there is nothing to do.
pub fn crlf_to_lf(data: &[u8]) -> Cow<'_, [u8]> {
    // Whole runs between CRLFs are copied, not byte by byte.
    let crlf = |lf: usize| lf > 0 && data[lf - 1] == b'\r';
    let mut lfs = memchr::memchr_iter(b'\n', data);
    let Some(first) = lfs.find(|&lf| crlf(lf)) else {
        return Cow::Borrowed(data);
    };
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(&data[..first - 1]);
    let mut start = first;
    for lf in lfs {
        if crlf(lf) {
            out.extend_from_slice(&data[start..lf - 1]);
            start = lf;
        }
    }
    out.extend_from_slice(&data[start..]);
    Cow::Owned(out)
}

/// The size of `data` with every LF not preceded by CR counted as CRLF (Dovecot's `W=`).
pub fn virtual_size(data: &[u8]) -> u64 {
    let bare_lf = memchr::memchr_iter(b'\n', data)
        .filter(|&i| i == 0 || data[i - 1] != b'\r')
        .count();
    (data.len() + bare_lf) as u64
}

impl Maildir {
    /// Delivers `message` into a folder (`None` = INBOX) and returns once it is durable.
    ///
    /// Without flags the message goes to `new/`; with any flag or keyword to
    /// `cur/<name>:2,<letters>`. Keywords get letters from the folder's `dovecot-keywords`
    /// (registered there when new); those that cannot be stored are reported in
    /// [`Delivered::dropped_keywords`]. The folder must exist ([`MaildirError::NoSuchFolder`]).
    pub fn deliver(
        &self,
        folder: Option<&str>,
        message: &[u8],
        flags: &Flags,
    ) -> Result<Delivered> {
        let dir = self.mailbox_dir(folder)?;
        let mut check = Check {
            maildir: self,
            dir: &dir,
            folder,
            done: false,
        };
        if !flags.keywords.is_empty() {
            check.run()?;
        }
        let (letters, dropped_keywords) = letters_for(&dir, &flags.keywords, self.file_mode())?;
        let info = info_suffix(flags, &letters);

        let size = message.len() as u64;
        let vsize = virtual_size(message);
        let target_dir = dir.join(if info.is_empty() { "new" } else { "cur" });
        let (name, path) =
            self.store_via_tmp(&dir, &target_dir, message, &info, size, vsize, &mut check)?;
        Ok(Delivered {
            path,
            name,
            size,
            vsize,
            dropped_keywords,
        })
    }

    /// Steps 1–4 (see the crate text).
    #[allow(clippy::too_many_arguments)]
    fn store_via_tmp(
        &self,
        dir: &Path,
        target_dir: &Path,
        message: &[u8],
        info: &str,
        size: u64,
        vsize: u64,
        check: &mut Check<'_>,
    ) -> Result<(String, PathBuf)> {
        let tmp_dir = dir.join("tmp");
        let (mut base, tmp_path) = match self.write_tmp(&tmp_dir, message, size, vsize) {
            Err(MaildirError::Io {
                op: "create",
                source,
                ..
            }) if missing(&source) && check.again()? => {
                self.write_tmp(&tmp_dir, message, size, vsize)?
            }
            r => r?,
        };
        before_link();
        let mut tries = 0;
        let linked = loop {
            if tries == NAME_TRIES {
                break Err(MaildirError::NameCollision {
                    dir: target_dir.to_path_buf(),
                });
            }
            tries += 1;
            let name = format!("{base}{info}");
            let path = target_dir.join(&name);
            match move_no_replace(&tmp_path, &path) {
                Ok(tmp_left) => break Ok((name, path, tmp_left)),
                // Taken in new/ or cur/ (by another writer): another name for the link.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    base = next_base(size, vsize);
                }
                Err(e) if missing(&e) => match check.again() {
                    Ok(true) => tries -= 1,
                    Ok(false) => break Err(MaildirError::io("link", &path, e)),
                    Err(e) => break Err(e),
                },
                Err(e) => break Err(MaildirError::io("link", &path, e)),
            }
        };
        let (name, path, tmp_left) = match linked {
            Ok(l) => l,
            Err(e) => {
                let _ = fs::remove_file(&tmp_path);
                return Err(e);
            }
        };
        if let Err(e) = fsync_dir(target_dir) {
            let _ = fs::remove_file(&path);
            if tmp_left {
                let _ = fs::remove_file(&tmp_path);
            }
            return Err(e);
        }
        if tmp_left {
            let _ = fs::remove_file(&tmp_path);
        }
        Ok((name, path))
    }

    /// One recipient's delivery in one call: the quota checked (per `quota`), then each copy's
    /// folder resolved ([`Destination`]) and the message stored there durably, as
    /// [`Maildir::deliver`] does, then the stored bytes recorded in `maildirsize` once.
    ///
    /// `Err` only when the quota usage cannot be read (nothing was stored). A copy that
    /// cannot be stored does not stop the others ([`StoredCopies::first_error`]).
    pub fn deliver_copies(
        &self,
        message: &[u8],
        copies: &[MessageCopy],
        quota: QuotaPolicy,
    ) -> Result<RecipientDelivery> {
        let limit = match quota {
            QuotaPolicy::Unlimited => None,
            QuotaPolicy::Enforce(limit) => {
                let usage = Quota::usage(self)?;
                if !limit.allows(usage, message.len() as u64) {
                    return Ok(RecipientDelivery::OverQuota);
                }
                Some(limit)
            }
            QuotaPolicy::Record(limit) => Some(limit),
        };
        let mut out = StoredCopies::default();
        for copy in copies {
            let target = match &copy.destination {
                Destination::Inbox => Ok(None),
                Destination::Folder(name) if self.folder_exists(name).unwrap_or(false) => {
                    Ok(Some(name.as_str()))
                }
                Destination::Folder(_) => Ok(None),
                Destination::CreateFolder(name) => {
                    self.create_folder(name).map(|_| Some(name.as_str()))
                }
            };
            match target.and_then(|t| self.deliver(t, message, &copy.flags).map(|d| (t, d))) {
                Ok((t, d)) => out.copies.push((t.unwrap_or("INBOX").to_owned(), d)),
                Err(e) => {
                    out.first_error.get_or_insert(e);
                }
            }
        }
        if let Some(limit) = limit
            && !out.copies.is_empty()
        {
            let bytes: u64 = out.copies.iter().map(|(_, d)| d.size).sum();
            let n = out.copies.len() as i64;
            if let Err(e) = Quota::add(self, limit, i64::try_from(bytes).unwrap_or(i64::MAX), n) {
                out.quota_error = Some(e);
            }
        }
        Ok(RecipientDelivery::Stored(out))
    }

    /// Writes the message to a fresh `tmp/` file and fsyncs it; returns the base name and path.
    fn write_tmp(
        &self,
        tmp_dir: &Path,
        message: &[u8],
        size: u64,
        vsize: u64,
    ) -> Result<(String, PathBuf)> {
        for _ in 0..NAME_TRIES {
            let base = next_base(size, vsize);
            let path = tmp_dir.join(&base);
            let mut file = match create_excl(&path, self.file_mode()) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(MaildirError::io("create", &path, e)),
            };
            let written = file
                .write_all(message)
                .ctx("write", &path)
                .and_then(|()| file.sync_all().ctx("fsync", &path));
            drop(file);
            return match written {
                Ok(()) => Ok((base, path)),
                Err(e) => {
                    let _ = fs::remove_file(&path);
                    Err(e)
                }
            };
        }
        Err(MaildirError::NameCollision {
            dir: tmp_dir.to_path_buf(),
        })
    }

    /// Removes files in the `tmp/` directories of INBOX and every folder whose access and
    /// modification times are both older than `older_than` (use [`TMP_MAX_AGE`]).
    /// Returns how many were removed.
    pub fn clean_tmp(&self, older_than: Duration) -> Result<usize> {
        let cutoff = now_secs().saturating_sub(older_than.as_secs());
        let mut removed = 0;
        for dir in self.mailbox_dirs()? {
            let tmp = dir.join("tmp");
            let entries = match fs::read_dir(&tmp) {
                Ok(e) => e,
                Err(e) if is_not_found(&e) => continue,
                Err(e) => return Err(MaildirError::io("read directory", &tmp, e)),
            };
            for entry in entries {
                let entry = entry.ctx("read directory", &tmp)?;
                let Ok(md) = entry.metadata() else { continue };
                let newest = md.atime().max(md.mtime());
                if md.is_file() && newest < cutoff as i64 {
                    match fs::remove_file(entry.path()) {
                        Ok(()) => removed += 1,
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(MaildirError::io("remove", entry.path(), e)),
                    }
                }
            }
        }
        Ok(removed)
    }
}

/// Names tried before giving up with [`MaildirError::NameCollision`].
const NAME_TRIES: usize = 8;

/// Looks at the mailbox directory once per delivery, and only when a step found something
/// missing: INBOX's root is then created with its parents (as [`Maildir::open_or_create`]
/// does), a folder must exist, and missing `cur/ new/ tmp/` are created, all durably.
struct Check<'a> {
    maildir: &'a Maildir,
    dir: &'a Path,
    folder: Option<&'a str>,
    done: bool,
}

impl Check<'_> {
    fn run(&mut self) -> Result<()> {
        self.done = true;
        if self.dir == self.maildir.root() {
            return self.maildir.ensure_root();
        }
        if !self.dir.is_dir() {
            return Err(MaildirError::NoSuchFolder(
                self.folder.unwrap_or("INBOX").to_owned(),
            ));
        }
        self.maildir.ensure_subdirs(self.dir)
    }

    /// After a step found something missing: `Ok(true)` when the step should be tried again
    /// (the check ran now), `Ok(false)` when the check had run already.
    fn again(&mut self) -> Result<bool> {
        if self.done {
            return Ok(false);
        }
        self.run().map(|()| true)
    }
}

#[cfg(test)]
thread_local! {
    static TEST_NAMES: std::cell::RefCell<std::collections::VecDeque<String>> =
        const { std::cell::RefCell::new(std::collections::VecDeque::new()) };
    /// Set: `renameat2(RENAME_NOREPLACE)` answers as on a file system without it (`EINVAL`).
    static TEST_NO_RENAME2: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static TEST_BEFORE_LINK: std::cell::RefCell<Option<Box<dyn Fn()>>> =
        const { std::cell::RefCell::new(None) };
}

/// A new base name ([`filename::generate`]; in tests, the queued ones first).
fn next_base(size: u64, vsize: u64) -> String {
    #[cfg(test)]
    if let Some(name) = TEST_NAMES.with_borrow_mut(|q| q.pop_front()) {
        return name;
    }
    filename::generate(size, vsize)
}

/// Between the durable write and the link (tests change the directories there).
fn before_link() {
    #[cfg(test)]
    TEST_BEFORE_LINK.with_borrow(|hook| {
        if let Some(hook) = hook {
            hook()
        }
    });
}

/// An error saying a directory on the path is not there (or is not a directory).
fn missing(e: &io::Error) -> bool {
    is_not_found(e) || e.kind() == io::ErrorKind::NotADirectory
}

/// Moves `from` to `to` in one step that never replaces an existing `to`: `renameat2` with
/// `RENAME_NOREPLACE` (one system call where link + unlink took two, and the `tmp/` name is
/// gone at once). On a file system or kernel without that flag ([`link_or_rename`]) the file
/// is linked instead. `Ok(true)`: `from` is still there (linked) and is for the caller to
/// remove after the directory's fsync.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn move_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    #[cfg(test)]
    if TEST_NO_RENAME2.get() {
        return link_or_rename(from, to);
    }
    match renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(false),
        Err(Errno::EINVAL | Errno::ENOSYS | Errno::ENOTSUP) => link_or_rename(from, to),
        Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn move_no_replace(from: &Path, to: &Path) -> io::Result<bool> {
    link_or_rename(from, to)
}

/// Hard-links `from` to `to`; falls back to `rename` on file systems without hard links.
/// Neither replaces an existing `to` silently: `link` fails with `EEXIST`, and `rename` is only
/// tried after checking `to` is absent (names are unique, so this check is a safety net).
fn link_or_rename(from: &Path, to: &Path) -> io::Result<bool> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(true),
        Err(e)
            if [Errno::EPERM, Errno::ENOTSUP, Errno::EMLINK]
                .iter()
                .any(|&n| e.raw_os_error() == Some(n as i32)) =>
        {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to).map(|()| false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::os::unix::fs::PermissionsExt;

    const MSG: &[u8] = b"From: a@example.org\nSubject: hi\n\nHello\n";

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

    fn before_link_do(hook: impl Fn() + 'static) {
        TEST_BEFORE_LINK.set(Some(Box::new(hook)));
    }

    #[test]
    fn delivery_names_modes_and_an_empty_tmp() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(t.path().join("Maildir"), 0o700).unwrap();
        let seen = Flags {
            seen: true,
            ..Flags::default()
        };
        let a = md.deliver(None, MSG, &Flags::default()).unwrap();
        let b = md.deliver(None, MSG, &seen).unwrap();
        assert_eq!(fs::read(&a.path).unwrap(), MSG);
        assert_eq!(fs::read(&b.path).unwrap(), MSG);
        assert_eq!(names(&md.root().join("new")), vec![a.name.clone()]);
        assert_eq!(names(&md.root().join("cur")), vec![b.name.clone()]);
        assert!(b.name.ends_with(":2,S"), "{}", b.name);
        assert_eq!((mode(&a.path), mode(&b.path)), (0o600, 0o600));
        assert!(names(&md.root().join("tmp")).is_empty());
        assert_eq!(fs::metadata(&a.path).unwrap().nlink(), 1);

        // A group-shared Maildir: 0660 files although the umask (022) narrows the create.
        let shared = Maildir::open_or_create(t.path().join("shared"), 0o770).unwrap();
        let d = shared.deliver(None, MSG, &Flags::default()).unwrap();
        assert_eq!(mode(&d.path), 0o660);
        assert!(names(&shared.root().join("tmp")).is_empty());
    }

    #[test]
    fn a_name_taken_in_new_or_cur_is_never_replaced() {
        taken_names_are_tried_again();
    }

    /// Where `RENAME_NOREPLACE` is not supported, link + unlink keep the same guarantees:
    /// nothing replaced, one name per message, `tmp/` left empty.
    #[test]
    fn without_rename_noreplace_the_file_is_linked_with_the_same_guarantees() {
        TEST_NO_RENAME2.set(true);
        taken_names_are_tried_again();
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(t.path().join("Maildir"), 0o700).unwrap();
        let d = md.deliver(None, MSG, &Flags::default()).unwrap();
        assert_eq!(fs::read(&d.path).unwrap(), MSG);
        assert_eq!(fs::metadata(&d.path).unwrap().nlink(), 1);
        assert!(names(&md.root().join("tmp")).is_empty());
        TEST_NO_RENAME2.set(false);
    }

    fn taken_names_are_tried_again() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(t.path().join("Maildir"), 0o700).unwrap();
        let taken = filename::generate(MSG.len() as u64, MSG.len() as u64 + 4);
        fs::write(md.root().join("new").join(&taken), b"older message").unwrap();
        fs::write(md.root().join("cur").join(format!("{taken}:2,S")), b"older").unwrap();
        for flags in [
            Flags::default(),
            Flags {
                seen: true,
                ..Flags::default()
            },
        ] {
            TEST_NAMES.with_borrow_mut(|q| q.push_back(taken.clone()));
            let d = md.deliver(None, MSG, &flags).unwrap();
            assert!(!d.name.starts_with(&taken), "{}", d.name);
            assert_eq!(fs::read(&d.path).unwrap(), MSG);
        }
        assert_eq!(
            fs::read(md.root().join("new").join(&taken)).unwrap(),
            b"older message"
        );
        assert_eq!(
            fs::read(md.root().join("cur").join(format!("{taken}:2,S"))).unwrap(),
            b"older"
        );
        assert_eq!(names(&md.root().join("new")).len(), 2);
        assert_eq!(names(&md.root().join("cur")).len(), 2);
        assert!(names(&md.root().join("tmp")).is_empty());
        // Every name taken: an error, nothing left behind.
        let dir = md.root().join("new");
        let many: Vec<String> = (0..8)
            .map(|i| {
                let n = format!("{taken}{i}");
                fs::write(dir.join(&n), b"x").unwrap();
                n
            })
            .collect();
        TEST_NAMES.with_borrow_mut(|q| q.extend(many));
        let err = md.deliver(None, MSG, &Flags::default()).unwrap_err();
        assert!(matches!(err, MaildirError::NameCollision { .. }), "{err}");
        assert_eq!(names(&dir).len(), 10);
        assert!(names(&md.root().join("tmp")).is_empty());
    }

    #[test]
    fn a_failure_after_the_write_leaves_no_file_anywhere() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(t.path().join("Maildir"), 0o700).unwrap();
        // new/ replaced by a plain file between the write and the link.
        let new = md.root().join("new");
        let hook_new = new.clone();
        before_link_do(move || {
            fs::remove_dir_all(&hook_new).unwrap();
            fs::write(&hook_new, b"").unwrap();
        });
        let err = md.deliver(None, MSG, &Flags::default()).unwrap_err();
        TEST_BEFORE_LINK.set(None);
        assert!(err.is_temporary(), "{err}");
        assert!(names(&md.root().join("tmp")).is_empty());
        assert!(names(&md.root().join("cur")).is_empty());
        assert_eq!(fs::read(&new).unwrap(), b"");

        // new/ removed between the write and the link: it is made again, durably.
        fs::remove_file(&new).unwrap();
        fs::create_dir(&new).unwrap();
        let hook_new = new.clone();
        before_link_do(move || fs::remove_dir_all(&hook_new).unwrap());
        let d = md.deliver(None, MSG, &Flags::default()).unwrap();
        TEST_BEFORE_LINK.set(None);
        assert_eq!(names(&new), vec![d.name.clone()]);
        assert_eq!(fs::read(&d.path).unwrap(), MSG);
        assert_eq!(mode(&new), 0o700);
        assert!(names(&md.root().join("tmp")).is_empty());
    }

    #[test]
    fn a_maildir_not_there_yet_is_made_by_the_first_delivery() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("example.org/bob/Maildir");
        let md = Maildir::at(&root, 0o700);
        assert!(
            !t.path().join("example.org").exists(),
            "at() creates nothing"
        );
        // Quota of a Maildir that is not there: empty, and nothing is created.
        assert_eq!(Quota::usage(&md).unwrap(), crate::Usage::default());
        assert!(!t.path().join("example.org").exists());

        let limit = QuotaLimit::from(1_000_000);
        let RecipientDelivery::Stored(done) = md
            .deliver_copies(
                MSG,
                &[
                    MessageCopy::to(Destination::Inbox),
                    MessageCopy::to(Destination::Folder("Nope".into())),
                ],
                QuotaPolicy::Enforce(limit),
            )
            .unwrap()
        else {
            panic!("over quota")
        };
        assert!(done.first_error.is_none() && done.quota_error.is_none());
        assert_eq!(done.copies.len(), 2);
        for dir in [
            t.path().join("example.org"),
            t.path().join("example.org/bob"),
            root.clone(),
            root.join("cur"),
            root.join("new"),
            root.join("tmp"),
        ] {
            assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        }
        assert_eq!(names(&root.join("new")).len(), 2);
        assert!(names(&root.join("tmp")).is_empty());
        let usage = Quota::usage_with_limit(&md, limit).unwrap();
        assert_eq!((usage.bytes, usage.messages), (2 * MSG.len() as u64, 2));

        // new/ gone: made again.
        fs::remove_dir_all(root.join("new")).unwrap();
        let d = md.deliver(None, MSG, &Flags::default()).unwrap();
        assert_eq!(names(&root.join("new")), vec![d.name]);
        // The whole Maildir gone: made again, here by a delivery to cur/.
        fs::remove_dir_all(&root).unwrap();
        let seen = Flags {
            seen: true,
            ..Flags::default()
        };
        let d = md.deliver(None, MSG, &seen).unwrap();
        assert_eq!(names(&root.join("cur")), vec![d.name]);
        assert!(root.join("new").is_dir() && root.join("tmp").is_dir());
        // A folder of a Maildir that is not there: none, or made with the Maildir.
        fs::remove_dir_all(&root).unwrap();
        assert!(matches!(
            md.deliver(Some("Sent"), MSG, &Flags::default()),
            Err(MaildirError::NoSuchFolder(_))
        ));
        assert!(!root.exists());
        assert!(md.create_folder("Sent").unwrap());
        assert!(root.join("tmp").is_dir() && root.join(".Sent/new").is_dir());
        md.deliver(Some("Sent"), MSG, &Flags::default()).unwrap();

        // tmp/ missing and maildirsize to be recalculated: tmp/ is made again.
        fs::remove_dir_all(root.join("tmp")).unwrap();
        fs::write(root.join(crate::quota::MAILDIRSIZE_FILE), b"garbage").unwrap();
        let usage = Quota::usage_with_limit(&md, limit).unwrap();
        assert_eq!(usage.messages, 1);
        assert!(root.join("tmp").is_dir());
    }

    /// Runs a command, panicking with its output when it fails.
    fn run(cmd: &str, args: &[&str]) -> String {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{cmd} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// An ext4 file system without a journal on a loop device, unmounted when dropped.
    struct LoopFs {
        dir: tempfile::TempDir,
    }

    impl LoopFs {
        fn new() -> Self {
            let dir = tempfile::tempdir_in("/var/tmp").unwrap();
            let img = dir.path().join("img");
            fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
            let img = img.to_str().unwrap();
            run(
                "mkfs.ext4",
                &["-q", "-F", "-O", "^has_journal", "-b", "4096", img],
            );
            fs::create_dir(dir.path().join("mnt")).unwrap();
            run(
                "mount",
                &["-o", "loop", img, dir.path().join("mnt").to_str().unwrap()],
            );
            Self { dir }
        }

        fn mnt(&self) -> PathBuf {
            self.dir.path().join("mnt")
        }

        /// What the file system has written of a file's inode: its link count, read by
        /// debugfs from the image (blocks ext4 has not written yet are not there).
        fn links_on_disk(&self, path: &Path) -> u32 {
            let inside = Path::new("/").join(path.strip_prefix(self.mnt()).unwrap());
            let img = self.dir.path().join("img");
            let stat = run(
                "debugfs",
                &[
                    "-R",
                    &format!("stat {}", inside.display()),
                    img.to_str().unwrap(),
                ],
            );
            let links = stat
                .split("Links: ")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .unwrap_or_else(|| panic!("{stat}"));
            links.parse().unwrap()
        }
    }

    impl Drop for LoopFs {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg(self.mnt())
                .status();
        }
    }

    /// A power cut right after `deliver` returned keeps the message: the entry in `new/` and
    /// an inode with a link. On ext4 without a journal the directory's fsync does not write
    /// the file's inode, whose link count went from 0 to 1 with the link; without a second
    /// fsync of the file the disk had the entry and an inode with 0 links (fsck deletes it).
    #[test]
    #[ignore = "needs root, loop devices and e2fsprogs (mkfs.ext4, debugfs)"]
    fn an_acknowledged_message_has_its_link_on_disk_on_ext4_without_a_journal() {
        let lfs = LoopFs::new();
        let md = Maildir::open_or_create(lfs.mnt().join("Maildir"), 0o700).unwrap();
        // Other inodes between the directories' and the messages': not in one block.
        fs::create_dir(lfs.mnt().join("filler")).unwrap();
        for i in 0..100 {
            fs::write(lfs.mnt().join(format!("filler/{i}")), b"").unwrap();
        }
        run("sync", &[]);
        let seen = Flags {
            seen: true,
            ..Flags::default()
        };
        for flags in [Flags::default(), seen] {
            let d = md.deliver(None, MSG, &flags).unwrap();
            assert!(
                lfs.links_on_disk(&d.path) >= 1,
                "{} has no link on disk",
                d.name
            );
        }
    }

    #[test]
    fn line_endings() {
        assert!(matches!(crlf_to_lf(b"a\nb\n"), Cow::Borrowed(_)));
        assert_eq!(&*crlf_to_lf(b"a\r\nb\r\n\r\nc\rd\r"), b"a\nb\n\nc\rd\r");
        assert_eq!(&*crlf_to_lf(b"\r\n\r\n"), b"\n\n");
        assert_eq!(&*crlf_to_lf(b"\n\r\r\nx\ny\r"), b"\n\r\nx\ny\r");
        assert!(matches!(crlf_to_lf(b"a\rb\n\r"), Cow::Borrowed(_)));
        // The same as the byte-by-byte definition, on every short mix of CR, LF and x.
        for n in 0..4u32.pow(6) {
            let input: Vec<u8> = (0..6)
                .map(|k| [b'\r', b'\n', b'x', b'\r'][(n / 4u32.pow(k) % 4) as usize])
                .collect();
            let mut want = Vec::new();
            for (i, &b) in input.iter().enumerate() {
                if !(b == b'\r' && input.get(i + 1) == Some(&b'\n')) {
                    want.push(b);
                }
            }
            assert_eq!(&*crlf_to_lf(&input), &want[..], "{input:?}");
        }
        assert_eq!(virtual_size(b"a\nb\n"), 6);
        assert_eq!(virtual_size(b"a\r\nb\n"), 6);
        assert_eq!(virtual_size(b"\n"), 2);
        assert_eq!(virtual_size(b""), 0);
    }
}
