//! The per-mailbox `dovecot-keywords` file: keyword names for the flag letters `a`..=`z`.
//!
//! Format (Dovecot `maildir-keywords.c`): one line per keyword, `<index> <name>\n`, index 0 is
//! letter `a`, 25 is `z`; lines that do not parse are ignored; names compare case-insensitively.
//! The file lives in each mailbox's own directory (the Maildir root for INBOX, `.Folder/` for a
//! folder), next to `dovecot-uidlist`.
//!
//! Adding a keyword follows Dovecot's protocol so that a running Dovecot and we never lose each
//! other's keywords: Dovecot changes `dovecot-keywords` only while holding the mailbox's
//! `dovecot-uidlist.lock` dotlock, and writes the new contents into `dovecot-keywords.lock`
//! (removing any leftover first), then renames that over `dovecot-keywords`. We take the same
//! uidlist dotlock (waiting up to [`LOCK_WAIT`], stale after [`UIDLIST_LOCK_STALE`], Dovecot's
//! value), re-read the file under it, assign free letters, write `dovecot-keywords.lock`
//! (mode as the mailbox files, fsynced), rename it, and fsync the directory. The new file's
//! mtime is made larger than the old one's, because Dovecot re-reads the file only when its
//! mtime (whole seconds) changes.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::dotlock::DotLock;
use crate::error::{IoContext, MaildirError, Result};
use crate::flags::is_valid_keyword;
use crate::fsutil::{create_excl, fsync_dir, is_not_found};

/// Name of the keywords file.
pub const KEYWORDS_FILE: &str = "dovecot-keywords";
/// The file whose dotlock guards changes to the keywords file.
pub const UIDLIST_FILE: &str = "dovecot-uidlist";
/// Keyword letters available per mailbox (`a`..=`z`).
pub const MAX_KEYWORDS: usize = 26;
/// How long a delivery waits for the uidlist lock before dropping new keywords.
pub const LOCK_WAIT: Duration = Duration::from_secs(2);
/// When an unchanged `dovecot-uidlist.lock` counts as stale (Dovecot: 2 minutes).
pub const UIDLIST_LOCK_STALE: Duration = Duration::from_secs(120);

/// Why a keyword was not stored with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DropReason {
    /// Not a valid IMAP keyword (atom).
    InvalidSyntax,
    /// All 26 letters of the mailbox are taken by other keywords.
    TooMany,
    /// The mailbox's `dovecot-uidlist.lock` could not be taken in time.
    LockTimeout,
    /// Writing `dovecot-keywords` failed (the error text).
    WriteFailed(String),
}

/// A keyword that was not stored, and why (a warning: the message itself was delivered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedKeyword {
    /// The keyword as given.
    pub keyword: String,
    /// Why it was dropped.
    pub reason: DropReason,
}

/// The contents of a `dovecot-keywords` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DovecotKeywords {
    slots: [Option<String>; MAX_KEYWORDS],
}

impl DovecotKeywords {
    /// Parses the file contents, ignoring malformed lines as Dovecot does.
    pub fn parse(text: &str) -> Self {
        let mut kw = Self::default();
        for line in text.lines() {
            let Some((idx, name)) = line.split_once(' ') else {
                continue;
            };
            let Ok(idx) = idx.parse::<usize>() else {
                continue;
            };
            if idx < MAX_KEYWORDS && !name.is_empty() {
                kw.slots[idx] = Some(name.to_owned());
            }
        }
        kw
    }

    /// Reads `dovecot-keywords` from a mailbox directory; a missing file is an empty map.
    pub fn load(mailbox_dir: &Path) -> Result<Self> {
        let path = mailbox_dir.join(KEYWORDS_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Self::parse(&String::from_utf8_lossy(&bytes))),
            Err(e) if is_not_found(&e) => Ok(Self::default()),
            Err(e) => Err(MaildirError::io("read", &path, e)),
        }
    }

    /// The file contents in Dovecot's format.
    pub fn to_file_contents(&self) -> String {
        let mut s = String::new();
        for (i, name) in self.slots.iter().enumerate() {
            if let Some(name) = name {
                s.push_str(&format!("{i} {name}\n"));
            }
        }
        s
    }

    /// The letter (`b'a'..=b'z'`) of a keyword, compared case-insensitively.
    pub fn letter_of(&self, keyword: &str) -> Option<u8> {
        let i = self.slots.iter().position(|s| {
            s.as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(keyword))
        })?;
        Some(b'a' + i as u8)
    }

    /// The keyword of a letter.
    pub fn name_of(&self, letter: u8) -> Option<&str> {
        let i = letter
            .checked_sub(b'a')
            .map(usize::from)
            .filter(|&i| i < MAX_KEYWORDS)?;
        self.slots[i].as_deref()
    }

    fn assign(&mut self, keyword: &str) -> Option<u8> {
        let i = self.slots.iter().position(Option::is_none)?;
        self.slots[i] = Some(keyword.to_owned());
        Some(b'a' + i as u8)
    }
}

/// Maps keywords to letters for a delivery into `mailbox_dir`, registering new ones.
/// Returns the letters and the keywords that could not be stored.
pub(crate) fn letters_for(
    mailbox_dir: &Path,
    keywords: &[String],
    file_mode: u32,
) -> Result<(Vec<u8>, Vec<DroppedKeyword>)> {
    let mut dropped = Vec::new();
    let mut wanted: Vec<&str> = Vec::new();
    for kw in keywords {
        if !is_valid_keyword(kw) {
            dropped.push(DroppedKeyword {
                keyword: kw.clone(),
                reason: DropReason::InvalidSyntax,
            });
        } else if !wanted.iter().any(|w| w.eq_ignore_ascii_case(kw)) {
            wanted.push(kw);
        }
    }
    if wanted.is_empty() {
        return Ok((Vec::new(), dropped));
    }
    let known = DovecotKeywords::load(mailbox_dir)?;
    if wanted.iter().all(|w| known.letter_of(w).is_some()) {
        return Ok((
            wanted.iter().filter_map(|w| known.letter_of(w)).collect(),
            dropped,
        ));
    }

    let drop_new =
        |dropped: &mut Vec<DroppedKeyword>, known: &DovecotKeywords, reason: DropReason| {
            let letters: Vec<u8> = wanted.iter().filter_map(|w| known.letter_of(w)).collect();
            for w in wanted.iter().filter(|w| known.letter_of(w).is_none()) {
                dropped.push(DroppedKeyword {
                    keyword: (*w).to_owned(),
                    reason: reason.clone(),
                });
            }
            letters
        };
    let lock = match DotLock::acquire(
        &mailbox_dir.join(UIDLIST_FILE),
        LOCK_WAIT,
        UIDLIST_LOCK_STALE,
        file_mode,
    ) {
        Ok(lock) => lock,
        Err(MaildirError::LockTimeout { .. }) => {
            let letters = drop_new(&mut dropped, &known, DropReason::LockTimeout);
            return Ok((letters, dropped));
        }
        Err(e) => return Err(e),
    };
    let mut current = DovecotKeywords::load(mailbox_dir)?;
    let before = current.clone();
    let mut letters = Vec::new();
    for w in &wanted {
        match current.letter_of(w).or_else(|| current.assign(w)) {
            Some(l) => letters.push(l),
            None => dropped.push(DroppedKeyword {
                keyword: (*w).to_owned(),
                reason: DropReason::TooMany,
            }),
        }
    }
    if current != before
        && let Err(e) = write_keywords(mailbox_dir, &current, file_mode)
    {
        let letters = drop_new(
            &mut dropped,
            &before,
            DropReason::WriteFailed(e.to_string()),
        );
        drop(lock);
        return Ok((letters, dropped));
    }
    drop(lock);
    Ok((letters, dropped))
}

/// Like [`letters_for`], for a caller that already holds the mailbox's uidlist lock: keywords
/// are registered as needed, those that cannot be stored are returned as dropped. Also returns
/// the keyword map as it is after the call.
pub(crate) fn letters_locked(
    mailbox_dir: &Path,
    keywords: &[String],
    file_mode: u32,
) -> Result<(Vec<u8>, Vec<DroppedKeyword>, DovecotKeywords)> {
    let mut dropped = Vec::new();
    let mut current = DovecotKeywords::load(mailbox_dir)?;
    let before = current.clone();
    let mut letters = Vec::new();
    for kw in keywords {
        if !is_valid_keyword(kw) {
            dropped.push(DroppedKeyword {
                keyword: kw.clone(),
                reason: DropReason::InvalidSyntax,
            });
            continue;
        }
        match current.letter_of(kw).or_else(|| current.assign(kw)) {
            Some(l) => {
                if !letters.contains(&l) {
                    letters.push(l);
                }
            }
            None => dropped.push(DroppedKeyword {
                keyword: kw.clone(),
                reason: DropReason::TooMany,
            }),
        }
    }
    if current != before
        && let Err(e) = write_keywords(mailbox_dir, &current, file_mode)
    {
        letters.retain(|&l| before.name_of(l).is_some());
        for kw in keywords {
            if is_valid_keyword(kw) && before.letter_of(kw).is_none() {
                dropped.push(DroppedKeyword {
                    keyword: kw.clone(),
                    reason: DropReason::WriteFailed(e.to_string()),
                });
            }
        }
        return Ok((letters, dropped, before));
    }
    Ok((letters, dropped, current))
}

/// Replaces `dovecot-keywords` the way Dovecot does; the caller holds the uidlist lock.
fn write_keywords(mailbox_dir: &Path, kw: &DovecotKeywords, file_mode: u32) -> Result<()> {
    let path = mailbox_dir.join(KEYWORDS_FILE);
    let tmp = mailbox_dir.join(format!("{KEYWORDS_FILE}.lock"));
    let old_mtime = fs::metadata(&path).and_then(|m| m.modified()).ok();
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = create_excl(&tmp, file_mode).ctx("create", &tmp)?;
        f.write_all(kw.to_file_contents().as_bytes())
            .ctx("write", &tmp)?;
        let now = SystemTime::now();
        if let Some(old) = old_mtime
            && !now
                .duration_since(old)
                .is_ok_and(|d| d >= Duration::from_secs(1))
        {
            f.set_modified(old + Duration::from_secs(1))
                .ctx("utime", &tmp)?;
        }
        f.sync_all().ctx("fsync", &tmp)?;
        fs::rename(&tmp, &path).ctx("rename", &path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
        return result;
    }
    fsync_dir(mailbox_dir)
}
