//! One open mailbox as an IMAP session sees it: UIDs, flags, MODSEQs, \Recent, expunges, and
//! a per-message cache, kept consistent between any number of sessions in any number of
//! processes, with Dovecot and lmtp-deliver writing into the same Maildir.
//!
//! # Files in each mailbox directory
//! - `dovecot-uidlist` ([`crate::uidlist`]): the UID authority, shared with Dovecot.
//! - `postern-index` (format below): a snapshot of every message
//!   (UID, file name base, info part, MODSEQ, size, internal date, cache offset) and of the
//!   header (UIDVALIDITY, next UID, highest MODSEQ, first unclaimed \Recent UID, the last 10,000
//!   expunges, the `cur/` and `new/` mtimes the index reflects), followed by an append-only log
//!   of changes. Compacted into a new snapshot (temporary file, fsync, rename) when the log
//!   grows past half the snapshot (at least 64 KiB). Missing or damaged → rebuilt from
//!   `dovecot-uidlist` and a directory scan, keeping every UID the uidlist knows.
//! - `postern-cache`: the cache blobs, appended without a lock (one `O_APPEND` write per
//!   blob, each verified by a check value when read); the snapshot keeps their offsets.
//!
//! # Locking and consistency
//! Every change to the index and the uidlist is made while holding `dovecot-uidlist.lock`
//! (the dotlock Dovecot uses, so Dovecot's syncs and keyword changes are excluded too), plus an
//! in-process mutex so threads of this process queue instead of polling. Under the lock a
//! session first reads what other sessions appended to the log, so MODSEQs are assigned in one
//! sequence that all sessions share.
//!
//! Readers need no lock: a session reads the log records appended since it last looked (a
//! record is only accepted whole, with a matching checksum), or the whole file when it was
//! replaced by a compaction. Changes made without the index — deliveries into `new/`, flag
//! renames and expunges by Dovecot or by hand — are found by comparing the `cur/` and `new/`
//! mtimes with those the index last recorded: when they differ, the directories are scanned
//! under the lock, and what was found is logged for every session (new messages get UIDs in
//! `dovecot-uidlist`, changed info parts a new MODSEQ, missing files an expunge MODSEQ). An
//! mtime that was less than the file system's timestamp granularity old when it was read
//! cannot rule out a later change with the same time: such a state is marked unsafe and
//! scanned again at the next sync. So a `sync()` with nothing changed is four `stat` calls.
//!
//! Each process keeps an inotify watch on the `cur/` it scanned last (`watch`): while nobody
//! but this process's own index-recorded changes touched `cur/` since that scan, a sync that
//! finds `new/` changed moves those files to `cur/` and logs them without listing `cur/`
//! (new mail costs the new mail, not the mailbox), and the verifying scan after own changes
//! is not needed. Any other change of `cur/` (or no watch) means the full scan as above.
//!
//! # What a session sees
//! [`Mailbox::messages`] changes only in [`Mailbox::sync`] (which reports new and expunged
//! UIDs) and [`Mailbox::expunge`] (which returns the UIDs it removed). Messages expunged by
//! others stay visible until the next `sync()` (reading them then fails with
//! [`MaildirError::Expunged`]); messages added by anyone — also by this session's
//! [`Mailbox::append`] or a [`Mailbox::copy_to`] into it — appear at the next `sync()`, in
//! [`SyncReport::new`]. Flag changes by others are visible at once and reported in
//! [`SyncReport::changed`] by the next `sync()`; this session's own flag changes are not
//! reported back.
//!
//! # Index file format
//! ```text
//! "PSTNIDX1"                     magic, 8 bytes
//! body_len: u64, body_hash: u64  the snapshot
//! body:                          header, then messages, then expunge history
//!   uid_validity u32, uid_next u32, highest_modseq u64, first_recent u32, expunge_floor u64,
//!   dirs (cur sec i64, cur nsec u32, new sec i64, new nsec u32, safe u8),
//!   cache_ino u64, cache_pos u64, message count u32, expunge count u32
//!   per message: uid u32, modseq u64, size u64, date i64, cache_off u64, cache_len u32,
//!                base (u16 length + bytes), suffix (u8 length + bytes)
//!   per expunge: uid u32, modseq u64
//! log records, appended:         len u32 (type + payload), hash u32, type u8, payload
//!   1 new message (uid, modseq, size, date, base, suffix)   2 flags (uid, modseq, suffix)
//!   3 expunge (uid, modseq)   4 \Recent claimed below uid   5 directory mtimes   6 next UID
//! ```
//! Little-endian. A log record is accepted only whole and with a matching hash; a damaged
//! tail is cut off by the next writer (under the lock). The cache file is
//! `"PSTNCCH1" uid_validity u32 reserved u32`, then records `"PCB1" uid u32 len u32 check u32
//! blob`.
//!
//! # Durability
//! Message files, `dovecot-uidlist` and index snapshots are fsynced; log records are written
//! without fsync (as Dovecot writes its transaction log): after a power loss, a lost record is
//! found again by the directory scan (the file's state on disk is the truth), though its
//! MODSEQ may then be assigned again.
//!
//! # Code layout
//! This file holds the types and opening; the rest of `impl Mailbox` is split by seam:
//! `lock` (in-process queue and uidlist dotlock), `changelog` (the index: snapshot, log
//! records, compaction, rebuild), `scan` (directory mtimes and scans), `uids` (the uidlist),
//! `view` (what a session sees, \Recent, keywords), `blob_cache` (the cache file),
//! `messages` (read, flags, append, copy, expunge) and `watch` (the inotify watches).

mod batch;
mod blob_cache;
mod changelog;
mod lock;
mod messages;
mod objectid;
mod scan;
mod uids;
mod view;
mod watch;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cache::Cache;
use crate::error::{MaildirError, Result};
use crate::flags::Flags;
use crate::folder;
use crate::index::DirState;
use crate::keywords::DovecotKeywords;
use crate::store::Maildir;
use crate::uidlist::Tracker;

/// How long an IMAP operation waits for the mailbox lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);
/// How many expunges the index remembers for [`Mailbox::expunged_since`].
pub const EXPUNGE_HISTORY: usize = 10_000;
/// Log size below which the index is never compacted.
const COMPACT_MIN_LOG: u64 = 64 * 1024;
/// Cache bytes appended since the last snapshot that trigger a compaction (which records
/// their offsets, so openers need not read them).
const CACHE_TAIL_COMPACT: u64 = 4 << 20;
/// A cache file at least this large is rewritten at compaction when over half of it is dead.
const CACHE_REWRITE_MIN: u64 = 1 << 20;
/// Margin after a directory mtime before it is trusted (nanosecond time stamps).
const SAFE_MARGIN: Duration = Duration::from_millis(50);

/// A message as a session sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// The UID.
    pub uid: u32,
    /// System flags and keyword names (from the file name's info letters via
    /// `dovecot-keywords`).
    pub flags: Flags,
    /// CONDSTORE mod-sequence, at least 1.
    pub modseq: u64,
    /// RFC822.SIZE: the size with CRLF line endings (`W=` from the name, else computed once
    /// and kept in the index).
    pub size: u64,
    /// INTERNALDATE, unix seconds: the file's mtime (Dovecot's convention).
    pub internal_date: i64,
}

/// What [`Mailbox::sync`] found since the previous sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// UIDs that joined [`Mailbox::messages`], ascending.
    pub new: Vec<u32>,
    /// UIDs removed from [`Mailbox::messages`] (expunged by another session or process),
    /// ascending.
    pub expunged: Vec<u32>,
    /// UIDs still present whose flags and MODSEQ were changed by someone else, ascending.
    pub changed: Vec<u32>,
}

impl SyncReport {
    /// True when nothing happened.
    pub fn is_empty(&self) -> bool {
        self.new.is_empty() && self.expunged.is_empty() && self.changed.is_empty()
    }
}

/// How [`Mailbox::store_flags`] combines the given flags with the current ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// `FLAGS`: set exactly these.
    Replace,
    /// `+FLAGS`: add these.
    Add,
    /// `-FLAGS`: remove these.
    Remove,
}

/// Where a message's file is and its cached blob.
#[derive(Debug, Clone)]
struct FileInfo {
    base: Box<str>,
    /// From the `:` of the info part, or empty.
    suffix: Box<str>,
    cache_off: u64,
    cache_len: u32,
    /// Expunged (by someone else), not yet reported by `sync()`.
    gone: bool,
}

/// State shared by all sessions through the index.
#[derive(Debug, Clone, Default)]
struct Shared {
    uid_validity: u32,
    uid_next: u32,
    highest_modseq: u64,
    first_recent: u32,
    expunge_floor: u64,
    expunges: VecDeque<(u32, u64)>,
    dirs: DirState,
}

#[derive(Debug)]
struct IndexFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes applied.
    pos: u64,
    /// End of the snapshot, start of the log.
    snap_end: u64,
    /// File size at which an undecodable tail was seen without the lock (not re-read until
    /// the file changes).
    bad_size: u64,
}

/// One open mailbox. See the [module documentation](self).
pub struct Mailbox {
    md: Maildir,
    name: String,
    dir: PathBuf,
    metas: Vec<MessageMeta>,
    files: Vec<FileInfo>,
    /// In the shared state, not yet in the view; ascending UID.
    pending: Vec<(MessageMeta, FileInfo)>,
    changed: BTreeSet<u32>,
    ghosts: usize,
    view_uid_next: u32,
    view_highest: u64,
    st: Shared,
    idx: Option<IndexFile>,
    uidlist: Tracker,
    /// Uidlist records of file name bases not (yet) in the state: base → (uid, vsize).
    uid_map: HashMap<String, (u32, Option<u64>)>,
    keywords: DovecotKeywords,
    kw_stamp: Option<(u64, i64, i64, u64)>,
    kw_checked: bool,
    cache: Option<Cache>,
    /// The cache file inode and position the index snapshot's offsets are for.
    cache_snap: (u64, u64),
    /// A flag change renamed a file in `cur/` since the last [`Mailbox::sync_flag_changes`].
    flags_unsynced: bool,
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("messages", &self.metas.len())
            .field("uid_validity", &self.st.uid_validity)
            .field("uid_next", &self.view_uid_next)
            .field("highest_modseq", &self.view_highest)
            .finish_non_exhaustive()
    }
}

pub use batch::AppendBatch;
pub(crate) use messages::quota_adjust;

// ---------------------------------------------------------------------------------------

impl Maildir {
    /// Opens a mailbox by its IMAP name (`INBOX` in any case is the root). The name is
    /// checked as [`folder::dir_name`] does; a missing folder is
    /// [`MaildirError::NoSuchFolder`]. Builds or repairs the index when needed, then picks up
    /// new deliveries.
    pub fn open_mailbox(&self, name: &str) -> Result<Mailbox> {
        let dir = self.mailbox_dir(Some(name))?;
        let name = if folder::is_inbox(name) {
            "INBOX".to_owned()
        } else {
            name.to_owned()
        };
        if !dir.is_dir() {
            return Err(MaildirError::NoSuchFolder(name));
        }
        self.ensure_subdirs(&dir)?;
        let mut mb = Mailbox {
            md: self.clone(),
            name,
            dir,
            metas: Vec::new(),
            files: Vec::new(),
            pending: Vec::new(),
            changed: BTreeSet::new(),
            ghosts: 0,
            view_uid_next: 1,
            view_highest: 1,
            st: Shared::default(),
            idx: None,
            uidlist: Tracker::default(),
            uid_map: HashMap::new(),
            keywords: DovecotKeywords::default(),
            kw_stamp: None,
            kw_checked: false,
            cache: None,
            cache_snap: (0, 0),
            flags_unsynced: false,
        };
        mb.reload_keywords();
        mb.load()?;
        Ok(mb)
    }
}

impl Mailbox {
    /// The mailbox name (`INBOX` normalised).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The mailbox directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// UIDVALIDITY (from `dovecot-uidlist`).
    pub fn uid_validity(&self) -> u32 {
        self.st.uid_validity
    }

    /// UIDNEXT as of the last sync.
    pub fn uid_next(&self) -> u32 {
        self.view_uid_next
    }

    /// HIGHESTMODSEQ as of the last sync (or this session's own last change).
    pub fn highest_modseq(&self) -> u64 {
        self.view_highest
    }

    /// The messages, ascending by UID.
    pub fn messages(&self) -> &[MessageMeta] {
        &self.metas
    }

    /// A message by UID.
    pub fn get(&self, uid: u32) -> Option<&MessageMeta> {
        self.find(uid).map(|i| &self.metas[i])
    }

    /// Picks up changes made by others (see the [module documentation](self)).
    pub fn sync(&mut self) -> Result<SyncReport> {
        self.refresh()?;
        Ok(self.finish_view())
    }
}
