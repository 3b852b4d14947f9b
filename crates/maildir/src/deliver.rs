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
//! 2. It is hard-linked to `new/<name>` (`cur/<name>:2,<flags>` when flags are set). `link` is
//!    atomic and never replaces an existing file: the name appears whole or not at all. Where
//!    hard links are not supported, `rename` (also atomic) is used instead.
//! 3. The target directory is `fsync`ed, making the new entry durable. Only then is `Ok`
//!    returned, so an acknowledged message survives a crash.
//! 4. The `tmp/` name is removed (no fsync needed: a leftover is only a second name).
//!
//! A crash before step 2 leaves at most a file in `tmp/`, which readers never look at and
//! [`Maildir::clean_tmp`] removes after 36 hours. A crash between 2 and 3 leaves either no
//! entry or an entry to a complete, fsynced file. On any error the `tmp/` file is removed, and
//! if the directory fsync fails the new entry is removed too, so a retry does not duplicate it.

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
    let mut lfs = data
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i);
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
    let bare_lf = data
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || data[i - 1] != b'\r'))
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
        // The folder and its `cur/ new/ tmp/` are looked at only when a step finds something
        // missing (not with a stat and a mkdir of each per message): then the folder must
        // exist, the missing subdirectories are created as before, and the step is retried.
        let mut checked = false;
        let check = |checked: &mut bool| -> Result<()> {
            *checked = true;
            if !dir.is_dir() {
                return Err(MaildirError::NoSuchFolder(
                    folder.unwrap_or("INBOX").to_owned(),
                ));
            }
            self.ensure_subdirs(&dir)
        };
        if !flags.keywords.is_empty() {
            check(&mut checked)?;
        }
        let (letters, dropped_keywords) = letters_for(&dir, &flags.keywords, self.file_mode())?;
        let info = info_suffix(flags, &letters);

        let size = message.len() as u64;
        let vsize = virtual_size(message);
        let tmp_dir = dir.join("tmp");
        let (base, tmp_path) = match self.write_tmp(&tmp_dir, message, size, vsize) {
            Err(MaildirError::Io {
                op: "create",
                source,
                ..
            }) if !checked && missing(&source) => {
                check(&mut checked)?;
                self.write_tmp(&tmp_dir, message, size, vsize)?
            }
            r => r?,
        };

        let (target_dir, name) = if info.is_empty() {
            (dir.join("new"), base)
        } else {
            (dir.join("cur"), format!("{base}{info}"))
        };
        let path = target_dir.join(&name);
        let mut linked = link_or_rename(&tmp_path, &path);
        if let Err(e) = &linked
            && !checked
            && missing(e)
        {
            linked = match check(&mut checked) {
                Ok(()) => link_or_rename(&tmp_path, &path),
                Err(e) => {
                    let _ = fs::remove_file(&tmp_path);
                    return Err(e);
                }
            };
        }
        if let Err(e) = linked {
            let _ = fs::remove_file(&tmp_path);
            return Err(MaildirError::io("link", &path, e));
        }
        if let Err(e) = fsync_dir(&target_dir) {
            let _ = fs::remove_file(&path);
            let _ = fs::remove_file(&tmp_path);
            return Err(e);
        }
        let _ = fs::remove_file(&tmp_path);
        Ok(Delivered {
            path,
            name,
            size,
            vsize,
            dropped_keywords,
        })
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
        for _ in 0..8 {
            let base = filename::generate(size, vsize);
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

/// An error saying a directory on the path is not there (or is not a directory).
fn missing(e: &io::Error) -> bool {
    is_not_found(e) || e.kind() == io::ErrorKind::NotADirectory
}

/// Hard-links `from` to `to`; falls back to `rename` on file systems without hard links.
/// Neither replaces an existing `to` silently: `link` fails with `EEXIST`, and `rename` is only
/// tried after checking `to` is absent (names are unique, so this check is a safety net).
fn link_or_rename(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e)
            if [Errno::EPERM, Errno::ENOTSUP, Errno::EMLINK]
                .iter()
                .any(|&n| e.raw_os_error() == Some(n as i32)) =>
        {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
