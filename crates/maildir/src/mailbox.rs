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

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cache::{self, Cache};
use crate::deliver::{crlf_to_lf, virtual_size};
use crate::dotlock::DotLock;
use crate::error::{IoContext, MaildirError, Result};
use crate::filename::{self, size_field};
use crate::flags::Flags;
use crate::folder;
use crate::fsutil::{create_excl, fsync_dir, is_not_found, now_secs};
use crate::index::{
    DirState, Header, INDEX_FILE, INDEX_TMP_FILE, Msg, Rec, Snapshot, Stamp, decode_recs,
    decode_snapshot, encode_rec, encode_snapshot,
};
use crate::keywords::{DovecotKeywords, KEYWORDS_FILE, UIDLIST_FILE, UIDLIST_LOCK_STALE};
use crate::quota::{MAILDIRSIZE_FILE, Quota, QuotaLimit};
use crate::store::Maildir;
use crate::uidlist::{self, Refreshed, Tracker, Uidlist, UidlistRecord};

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

// ---------------------------------------------------------------------------------------
// In-process lock: threads of this process queue here before taking the dotlock.

static PROC_LOCKS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static PROC_CV: Condvar = Condvar::new();

struct ProcLock(PathBuf);

impl ProcLock {
    fn acquire(dir: &Path) -> Self {
        let mut held = PROC_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        while held.iter().any(|p| p == dir) {
            held = PROC_CV.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.push(dir.to_path_buf());
        Self(dir.to_path_buf())
    }
}

impl Drop for ProcLock {
    fn drop(&mut self) {
        let mut held = PROC_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = held.iter().position(|p| *p == self.0) {
            held.swap_remove(i);
        }
        PROC_CV.notify_all();
    }
}

/// The mailbox lock: the uidlist dotlock (dropped first) and the in-process lock.
struct MailboxLock {
    _dot: DotLock,
    _proc: ProcLock,
}

// ---------------------------------------------------------------------------------------
// Small helpers.

fn split_name(name: &str) -> (&str, &str) {
    match name.find(':') {
        Some(i) => name.split_at(i),
        None => (name, ""),
    }
}

fn stamp_of(md: &fs::Metadata) -> Stamp {
    Stamp {
        sec: md.mtime(),
        nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
    }
}

/// Stats a directory; the time returned was taken before the stat.
fn stat_dir(dir: &Path) -> Result<(Stamp, SystemTime)> {
    let now = SystemTime::now();
    let md = fs::metadata(dir).ctx("stat", dir)?;
    Ok((stamp_of(&md), now))
}

/// True when any later change of the directory must give it a different mtime: the stat was
/// made at least one time stamp granule after the mtime.
fn is_safe(stamp: Stamp, now: SystemTime) -> bool {
    let Ok(now) = now.duration_since(UNIX_EPOCH) else {
        return false;
    };
    let m = Duration::new(stamp.sec.max(0) as u64, stamp.nsec);
    let granule = if stamp.nsec == 0 {
        Duration::from_secs(1) + SAFE_MARGIN
    } else {
        SAFE_MARGIN
    };
    now >= m + granule
}

/// Message file names in a directory (dot files, directories and odd names left out).
fn list_names(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let entries = fs::read_dir(dir).ctx("read directory", dir)?;
    for entry in entries {
        let entry = entry.ctx("read directory", dir)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') || name.contains(['\n', '\r']) {
            continue;
        }
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        out.push(name);
    }
    Ok(out)
}

/// The modification times of `names` in `dir` (`None`: gone or not a regular file). The
/// files are stat'ed relative to the directory (no path walk each), by several threads when
/// there are many: a first open of a big mailbox stats every file once, and on a cold inode
/// cache that is disk reads the device can serve in parallel.
fn stat_mtimes(dir: &Path, names: &[String]) -> Result<Vec<Option<i64>>> {
    const PER_THREAD: usize = 4096;
    const THREADS: usize = 8;
    let dir_fd = File::open(dir).ctx("open", dir)?;
    let stat_chunk = |chunk: &[String]| -> Result<Vec<Option<i64>>> {
        chunk
            .iter()
            .map(|name| {
                match nix::sys::stat::fstatat(
                    &dir_fd,
                    name.as_str(),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                ) {
                    Ok(st) if st.st_mode & nix::libc::S_IFMT == nix::libc::S_IFREG => {
                        Ok(Some(st.st_mtime))
                    }
                    Ok(_) | Err(nix::errno::Errno::ENOENT) => Ok(None),
                    Err(e) => Err(MaildirError::io("stat", dir.join(name), e.into())),
                }
            })
            .collect()
    };
    if names.len() <= PER_THREAD {
        return stat_chunk(names);
    }
    let chunk = names.len().div_ceil(THREADS).max(PER_THREAD);
    std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(chunk)
            .map(|part| scope.spawn(move || stat_chunk(part)))
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for h in handles {
            match h.join() {
                Ok(r) => out.extend(r?),
                Err(_) => {
                    return Err(MaildirError::io(
                        "stat",
                        dir,
                        io::Error::other("stat thread panicked"),
                    ));
                }
            }
        }
        Ok(out)
    })
}

/// The CRLF size of a file; `None` if it is gone.
fn compute_vsize(path: &Path) -> Result<Option<u64>> {
    match fs::read(path) {
        Ok(d) => Ok(Some(virtual_size(&d))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}

/// LF line endings to CRLF (lone LFs only).
fn lf_to_crlf(data: &[u8], hint: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity((hint as usize).max(data.len()));
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' && (i == 0 || data[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// The info suffix for new flags, keeping letters we do not know (`P`) and anything after the
/// letters from the old suffix.
fn build_suffix(old: &str, flags: &Flags, keyword_letters: &[u8]) -> String {
    let (old_letters, rest) = match old.strip_prefix(":2,") {
        Some(info) => match info.find(',') {
            Some(i) => (&info[..i], &info[i..]),
            None => (info, ""),
        },
        None => ("", ""),
    };
    let mut letters: Vec<u8> = flags.system_letters().into_bytes();
    letters.extend(keyword_letters.iter().filter(|b| b.is_ascii_lowercase()));
    letters.extend(
        old_letters
            .bytes()
            .filter(|b| !b.is_ascii_lowercase() && !b"DFRST".contains(b)),
    );
    letters.sort_unstable();
    letters.dedup();
    let mut s = String::from(":2,");
    s.extend(letters.iter().map(|&b| char::from(b)));
    s.push_str(rest);
    s
}

fn has_keyword(list: &[String], kw: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(kw))
}

fn apply_op(cur: &Flags, op: FlagOp, f: &Flags) -> Flags {
    let mut out = match op {
        FlagOp::Replace => Flags {
            keywords: Vec::new(),
            ..f.clone()
        },
        FlagOp::Add => Flags {
            seen: cur.seen || f.seen,
            answered: cur.answered || f.answered,
            flagged: cur.flagged || f.flagged,
            deleted: cur.deleted || f.deleted,
            draft: cur.draft || f.draft,
            keywords: cur.keywords.clone(),
        },
        FlagOp::Remove => Flags {
            seen: cur.seen && !f.seen,
            answered: cur.answered && !f.answered,
            flagged: cur.flagged && !f.flagged,
            deleted: cur.deleted && !f.deleted,
            draft: cur.draft && !f.draft,
            keywords: cur
                .keywords
                .iter()
                .filter(|k| !has_keyword(&f.keywords, k))
                .cloned()
                .collect(),
        },
    };
    if op != FlagOp::Remove {
        for k in &f.keywords {
            if !has_keyword(&out.keywords, k) {
                out.keywords.push(k.clone());
            }
        }
    }
    out
}

/// Hard-links `from` to `to`, or copies it (fsynced, same mtime) where links do not work.
fn link_or_copy(from: &Path, to: &Path, tmp_dir: &Path, mode: u32) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.kind() == io::ErrorKind::AlreadyExists =>
        {
            Err(e)
        }
        Err(_) => {
            let data = fs::read(from)?;
            let mtime = fs::metadata(from)?.modified()?;
            let tmp = tmp_dir.join(format!(
                "copy.{}.{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ));
            let result = (|| {
                let mut f = create_excl(&tmp, mode)?;
                f.write_all(&data)?;
                f.set_modified(mtime)?;
                f.sync_all()?;
                drop(f);
                match fs::hard_link(&tmp, to) {
                    Ok(()) => Ok(()),
                    Err(_) if fs::symlink_metadata(to).is_err() => fs::rename(&tmp, to),
                    Err(e) => Err(e),
                }
            })();
            let _ = fs::remove_file(&tmp);
            result
        }
    }
}

/// Records a Maildir++ quota change when a `maildirsize` file is in use (best effort).
pub(crate) fn quota_adjust(md: &Maildir, bytes: i64, count: i64) {
    let path = md.root().join(MAILDIRSIZE_FILE);
    let Ok(mut f) = File::open(&path) else {
        return;
    };
    let mut head = [0u8; 256];
    let n = f.read(&mut head).unwrap_or(0);
    let first = head[..n].split(|&b| b == b'\n').next().unwrap_or_default();
    let limit = QuotaLimit::parse(&String::from_utf8_lossy(first));
    let _ = Quota::add(md, limit, bytes, count);
}

fn index_err(dir: &Path) -> MaildirError {
    MaildirError::io(
        "use index",
        dir.join(INDEX_FILE),
        io::Error::other("index not open"),
    )
}

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

    /// The whole message with CRLF line endings. [`MaildirError::Expunged`] when its file
    /// is gone.
    pub fn read(&self, uid: u32) -> Result<Vec<u8>> {
        let i = self.find(uid).ok_or(MaildirError::Expunged(uid))?;
        let f = &self.files[i];
        let cur = self.dir.join("cur");
        let path = cur.join(format!("{}{}", f.base, f.suffix));
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => match self.locate(&f.base)? {
                Some(name) => match fs::read(cur.join(&name)) {
                    Ok(d) => d,
                    Err(e) if is_not_found(&e) => return Err(MaildirError::Expunged(uid)),
                    Err(e) => return Err(MaildirError::io("read", cur.join(name), e)),
                },
                None => return Err(MaildirError::Expunged(uid)),
            },
            Err(e) => return Err(MaildirError::io("read", &path, e)),
        };
        Ok(lf_to_crlf(&data, self.metas[i].size))
    }

    /// Changes a message's flags by renaming its file; new keywords get letters in
    /// `dovecot-keywords` (keywords that cannot be stored — invalid, or beyond 26 — are
    /// left out; the returned flags are the truth). Bumps the MODSEQ unless nothing changes.
    /// With `unchanged_since` (CONDSTORE `UNCHANGEDSINCE`), returns `Ok(None)` and changes
    /// nothing when the message's MODSEQ is larger. [`MaildirError::Expunged`] when the
    /// message is gone (or not in this view).
    pub fn store_flags(
        &mut self,
        uid: u32,
        op: FlagOp,
        flags: &Flags,
        unchanged_since: Option<u64>,
    ) -> Result<Option<&MessageMeta>> {
        let i = self.find(uid).ok_or(MaildirError::Expunged(uid))?;
        if self.files[i].gone {
            return Err(MaildirError::Expunged(uid));
        }
        let _lock = self.lock()?;
        self.read_index(true)?;
        if self.files[i].gone {
            return Err(MaildirError::Expunged(uid));
        }
        if unchanged_since.is_some_and(|us| self.metas[i].modseq > us) {
            return Ok(None);
        }
        let want = apply_op(&self.metas[i].flags, op, flags);
        let letters = self.letters_locked(&want.keywords)?;
        let old_suffix = self.files[i].suffix.to_string();
        let new_suffix = build_suffix(&old_suffix, &want, &letters);
        if new_suffix == old_suffix {
            return Ok(Some(&self.metas[i]));
        }
        let cur = self.dir.join("cur");
        let base = self.files[i].base.to_string();
        let to = cur.join(format!("{base}{new_suffix}"));
        match fs::rename(cur.join(format!("{base}{old_suffix}")), &to) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => match self.locate(&base)? {
                Some(actual) => {
                    if actual != format!("{base}{new_suffix}") {
                        fs::rename(cur.join(&actual), &to).ctx("rename", &to)?;
                    }
                }
                None => {
                    let modseq = self.st.highest_modseq + 1;
                    self.commit(vec![Rec::Expunge { uid, modseq }], true)?;
                    return Err(MaildirError::Expunged(uid));
                }
            },
            Err(e) => return Err(MaildirError::io("rename", &to, e)),
        }
        let modseq = self.st.highest_modseq + 1;
        self.commit(
            vec![Rec::Flags {
                uid,
                modseq,
                suffix: new_suffix,
            }],
            false,
        )?;
        self.view_highest = self.view_highest.max(modseq);
        Ok(Some(&self.metas[i]))
    }

    /// Stores a new message (CRLF or LF line endings; kept with LF, as `deliver()` does) with
    /// flags and an internal date (default: now), durably (file and directory fsynced, UID in
    /// `dovecot-uidlist` fsynced) before returning its UID. The message joins
    /// [`Mailbox::messages`] at the next [`Mailbox::sync`], which reports it as new.
    pub fn append(
        &mut self,
        data: &[u8],
        flags: &Flags,
        internal_date: Option<i64>,
    ) -> Result<u32> {
        let body = crlf_to_lf(data);
        let size = body.len() as u64;
        let vsize = virtual_size(&body);
        let tmp_dir = self.dir.join("tmp");
        let mut made = None;
        for _ in 0..8 {
            let base = filename::generate(size, vsize);
            let path = tmp_dir.join(&base);
            let mut f = match create_excl(&path, self.md.file_mode()) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(MaildirError::io("create", &path, e)),
            };
            let written = (|| {
                f.write_all(&body)?;
                if let Some(t) = internal_date {
                    let when = if t >= 0 {
                        UNIX_EPOCH.checked_add(Duration::from_secs(t.unsigned_abs()))
                    } else {
                        UNIX_EPOCH.checked_sub(Duration::from_secs(t.unsigned_abs()))
                    };
                    if let Some(when) = when {
                        f.set_modified(when)?;
                    }
                }
                f.sync_all()
            })();
            if let Err(e) = written {
                drop(f);
                let _ = fs::remove_file(&path);
                return Err(MaildirError::io("write", &path, e));
            }
            made = Some((base, path));
            break;
        }
        let Some((base, tmp)) = made else {
            return Err(MaildirError::NameCollision { dir: tmp_dir });
        };
        let result = self.append_locked(&base, &tmp, flags, vsize);
        let _ = fs::remove_file(&tmp);
        let uid = result?;
        quota_adjust(&self.md, size as i64, 1);
        Ok(uid)
    }

    fn append_locked(&mut self, base: &str, tmp: &Path, flags: &Flags, vsize: u64) -> Result<u32> {
        let _lock = self.lock()?;
        self.read_index(true)?;
        let letters = self.letters_locked(&flags.keywords)?;
        let suffix = build_suffix("", flags, &letters);
        let cur = self.dir.join("cur");
        let path = cur.join(format!("{base}{suffix}"));
        match fs::hard_link(tmp, &path) {
            Ok(()) => {}
            Err(_) if fs::symlink_metadata(&path).is_err() => {
                fs::rename(tmp, &path).ctx("rename", &path)?;
            }
            Err(e) => return Err(MaildirError::io("link", &path, e)),
        }
        if let Err(e) = fsync_dir(&cur) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let date = fs::metadata(&path).ctx("stat", &path)?.mtime();
        let uids = self.assign_uids(&[base.to_owned()])?;
        let Some(&uid) = uids.first() else {
            return Err(MaildirError::io(
                "assign UID",
                &path,
                io::Error::other("message vanished"),
            ));
        };
        if self.find_any(uid) {
            // A rebuild picked the message up already.
            return Ok(uid);
        }
        let modseq = self.st.highest_modseq + 1;
        self.commit(
            vec![Rec::New(Msg {
                uid,
                modseq,
                size: vsize,
                date,
                base: base.to_owned(),
                suffix,
                cache_off: 0,
                cache_len: 0,
            })],
            false,
        )?;
        Ok(uid)
    }

    /// Copies messages into `dest` (another mailbox, or another `Mailbox` value of this one)
    /// by hard links (a copy where links do not work), keeping flags (keywords mapped through
    /// the destination's `dovecot-keywords`) and internal dates, durably. Returns
    /// `(source UID, new UID)` pairs in the order given; UIDs not in this view or whose file
    /// is gone are left out. The copies join `dest`'s view at its next [`Mailbox::sync`].
    pub fn copy_to(&self, uids: &[u32], dest: &mut Self) -> Result<Vec<(u32, u32)>> {
        let srcs: Vec<usize> = uids.iter().filter_map(|&u| self.find(u)).collect();
        if srcs.is_empty() {
            return Ok(Vec::new());
        }
        let _lock = dest.lock()?;
        dest.read_index(true)?;
        let mut all_kw: Vec<String> = Vec::new();
        for &i in &srcs {
            for k in &self.metas[i].flags.keywords {
                if !has_keyword(&all_kw, k) {
                    all_kw.push(k.clone());
                }
            }
        }
        if !all_kw.is_empty() {
            dest.letters_locked(&all_kw)?;
        }
        let src_cur = self.dir.join("cur");
        let dest_cur = dest.dir.join("cur");
        let dest_tmp = dest.dir.join("tmp");
        let mut listing: Option<HashMap<String, String>> = None;
        // (src uid, base, suffix, vsize, date, stored bytes)
        let mut made: Vec<(u32, String, String, u64, i64, u64)> = Vec::new();
        let mut failure = None;
        for &i in &srcs {
            let meta = &self.metas[i];
            let f = &self.files[i];
            let mut src = src_cur.join(format!("{}{}", f.base, f.suffix));
            let md = match fs::metadata(&src) {
                Ok(md) => md,
                Err(e) if is_not_found(&e) => {
                    if listing.is_none() {
                        listing = Some(self.base_listing()?);
                    }
                    let Some(map) = &listing else { continue };
                    match map.get(&*f.base).map(|n| src_cur.join(n)) {
                        Some(p) => match fs::metadata(&p) {
                            Ok(md) => {
                                src = p;
                                md
                            }
                            Err(_) => continue,
                        },
                        None => continue,
                    }
                }
                Err(e) => return Err(MaildirError::io("stat", &src, e)),
            };
            let stored = size_field(&f.base, 'S').unwrap_or(md.len());
            let base = filename::generate(stored, meta.size);
            let letters: Vec<u8> = meta
                .flags
                .keywords
                .iter()
                .filter_map(|k| dest.keywords.letter_of(k))
                .collect();
            let suffix = build_suffix("", &meta.flags, &letters);
            let to = dest_cur.join(format!("{base}{suffix}"));
            match link_or_copy(&src, &to, &dest_tmp, dest.md.file_mode()) {
                Ok(()) => {}
                Err(e) if is_not_found(&e) => continue,
                Err(e) => {
                    failure = Some(MaildirError::io("link", &to, e));
                    break;
                }
            }
            made.push((meta.uid, base, suffix, meta.size, md.mtime(), stored));
        }
        if made.is_empty() {
            return failure.map_or(Ok(Vec::new()), Err);
        }
        fsync_dir(&dest_cur)?;
        let bases: Vec<String> = made.iter().map(|m| m.1.clone()).collect();
        let new_uids = dest.assign_uids(&bases)?;
        let mut recs = Vec::new();
        let mut pairs = Vec::new();
        let mut modseq = dest.st.highest_modseq;
        let mut bytes = 0i64;
        for ((src_uid, base, suffix, vsize, date, stored), uid) in made.into_iter().zip(new_uids) {
            pairs.push((src_uid, uid));
            bytes += stored as i64;
            if dest.find_any(uid) {
                continue;
            }
            modseq += 1;
            recs.push(Rec::New(Msg {
                uid,
                modseq,
                size: vsize,
                date,
                base,
                suffix,
                cache_off: 0,
                cache_len: 0,
            }));
        }
        dest.commit(recs, false)?;
        quota_adjust(&dest.md, bytes, pairs.len() as i64);
        match failure {
            Some(e) if pairs.is_empty() => Err(e),
            _ => Ok(pairs),
        }
    }

    /// Removes messages (their files; already gone is fine) and records their expunge
    /// MODSEQ. Returns the UIDs removed from this view, ascending: those given that were in
    /// it (including ones already expunged by others and not yet reported).
    pub fn expunge(&mut self, uids: &[u32]) -> Result<Vec<u32>> {
        let mut want: Vec<u32> = uids
            .iter()
            .copied()
            .filter(|&u| self.find(u).is_some())
            .collect();
        want.sort_unstable();
        want.dedup();
        if want.is_empty() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        self.read_index(true)?;
        let cur = self.dir.join("cur");
        let mut recs = Vec::new();
        let mut removed = Vec::new();
        let mut listing: Option<HashMap<String, String>> = None;
        let mut modseq = self.st.highest_modseq;
        let mut bytes = 0i64;
        let mut count = 0i64;
        let mut failure = None;
        for uid in want {
            let Some(i) = self.find(uid) else { continue };
            let f = &self.files[i];
            if f.gone {
                removed.push(uid);
                continue;
            }
            let mut name = format!("{}{}", f.base, f.suffix);
            let mut unlinked = false;
            for attempt in 0..2 {
                let path = cur.join(&name);
                let size = size_field(&name, 'S')
                    .map_or_else(|| fs::symlink_metadata(&path).map(|m| m.len()), Ok);
                match fs::remove_file(&path) {
                    Ok(()) => {
                        bytes += size.unwrap_or(0) as i64;
                        count += 1;
                        unlinked = true;
                        break;
                    }
                    Err(e) if is_not_found(&e) && attempt == 0 => {
                        if listing.is_none() {
                            listing = Some(self.base_listing()?);
                        }
                        let Some(map) = &listing else { break };
                        match map.get(&*self.files[i].base) {
                            Some(n) => name = n.clone(),
                            None => break,
                        }
                    }
                    Err(e) if is_not_found(&e) => break,
                    Err(e) => {
                        failure = Some(MaildirError::io("unlink", &path, e));
                        break;
                    }
                }
            }
            if failure.is_some() {
                break;
            }
            // Not `unlinked`: already gone (removed by someone else); recorded here anyway.
            let _ = unlinked;
            modseq += 1;
            recs.push(Rec::Expunge { uid, modseq });
            removed.push(uid);
        }
        if count > 0 {
            fsync_dir(&cur)?;
        }
        self.commit(recs, false)?;
        let set: HashSet<u32> = removed.iter().copied().collect();
        let keep_files: Vec<bool> = self.metas.iter().map(|m| !set.contains(&m.uid)).collect();
        let mut k = keep_files.iter();
        self.metas.retain(|_| *k.next().unwrap_or(&true));
        let mut k = keep_files.iter();
        self.files.retain(|_| *k.next().unwrap_or(&true));
        self.ghosts = self.files.iter().filter(|f| f.gone).count();
        self.changed.retain(|u| !set.contains(u));
        self.view_highest = self.view_highest.max(modseq);
        if count > 0 {
            quota_adjust(&self.md, -bytes, -count);
        }
        match failure {
            Some(e) if removed.is_empty() => Err(e),
            _ => Ok(removed),
        }
    }

    /// UIDs expunged with a MODSEQ above `modseq`, ascending (QRESYNC `VANISHED (EARLIER)`);
    /// `None` when the history no longer reaches back that far.
    pub fn expunged_since(&self, modseq: u64) -> Option<Vec<u32>> {
        if modseq < self.st.expunge_floor {
            return None;
        }
        let mut v: Vec<u32> = self
            .st
            .expunges
            .iter()
            .filter(|&&(_, m)| m > modseq)
            .map(|&(u, _)| u)
            .collect();
        v.sort_unstable();
        v.dedup();
        Some(v)
    }

    /// IMAP4rev1 `\Recent`: the UIDs of this view that no session has claimed yet; they are
    /// claimed now (persisted in the index), so no other session sees them as recent.
    /// Empty when the lock cannot be had.
    pub fn claim_recent(&mut self) -> Vec<u32> {
        let Some(last) = self.metas.last().map(|m| m.uid) else {
            return Vec::new();
        };
        if last < self.st.first_recent {
            return Vec::new();
        }
        let Ok(_lock) = self.lock() else {
            return Vec::new();
        };
        if self.read_index(true).is_err() {
            return Vec::new();
        }
        let first = self.st.first_recent;
        if last < first {
            return Vec::new();
        }
        if self.commit(vec![Rec::Recent(last + 1)], false).is_err() {
            return Vec::new();
        }
        self.metas
            .iter()
            .zip(&self.files)
            .filter(|(m, f)| m.uid >= first && !f.gone)
            .map(|(m, _)| m.uid)
            .collect()
    }

    /// How many messages no session has claimed as \Recent yet (STATUS RECENT of a mailbox
    /// that is not selected); claims nothing.
    pub fn unclaimed_recent(&self) -> usize {
        let first = self.st.first_recent;
        self.metas
            .iter()
            .zip(&self.files)
            .filter(|(m, f)| m.uid >= first && !f.gone)
            .count()
    }

    /// The cached blob of a message, if any (and intact).
    pub fn cache_get(&self, uid: u32) -> Option<Vec<u8>> {
        let f = match self.find(uid) {
            Some(i) => &self.files[i],
            None => {
                let p = self.find_pending(uid).ok()?;
                &self.pending[p].1
            }
        };
        if f.cache_len == 0 && f.cache_off == 0 {
            return None;
        }
        self.cache.as_ref()?.get(uid, f.cache_off, f.cache_len)
    }

    /// Stores a blob for a message (replacing an earlier one). Unknown UIDs and blobs over
    /// 16 MiB are ignored.
    pub fn cache_put(&mut self, uid: u32, blob: &[u8]) -> Result<()> {
        if !self.find_any(uid) || blob.len() > cache::MAX_BLOB {
            return Ok(());
        }
        if self
            .cache
            .as_ref()
            .is_some_and(|c| !c.is_current(&self.dir))
        {
            self.refresh_cache()?;
        }
        if self.cache.is_none() {
            self.cache = Cache::open(&self.dir, self.st.uid_validity, true, self.md.file_mode())?;
            if let Some(c) = &mut self.cache
                && c.ino == self.cache_snap.0
            {
                c.pos = c.pos.max(self.cache_snap.1);
            }
        }
        let Some(c) = &mut self.cache else {
            return Ok(());
        };
        let path = self.dir.join(cache::CACHE_FILE);
        let off = c.append(uid, blob).ctx("append", &path)?;
        self.set_cache_loc(uid, off, blob.len() as u32);
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Lookups.

    fn find(&self, uid: u32) -> Option<usize> {
        self.metas.binary_search_by_key(&uid, |m| m.uid).ok()
    }

    fn find_pending(&self, uid: u32) -> std::result::Result<usize, usize> {
        self.pending.binary_search_by_key(&uid, |(m, _)| m.uid)
    }

    /// True when `uid` is in the shared state (in the view and not gone, or pending).
    fn find_any(&self, uid: u32) -> bool {
        self.find(uid).is_some_and(|i| !self.files[i].gone) || self.find_pending(uid).is_ok()
    }

    fn set_cache_loc(&mut self, uid: u32, off: u64, len: u32) {
        let f = match self.find(uid) {
            Some(i) => &mut self.files[i],
            None => match self.find_pending(uid) {
                Ok(p) => &mut self.pending[p].1,
                Err(_) => return,
            },
        };
        f.cache_off = off;
        f.cache_len = len;
    }

    /// Finds a message file by base in `cur/` (it was renamed by someone else).
    fn locate(&self, base: &str) -> Result<Option<String>> {
        let cur = self.dir.join("cur");
        Ok(list_names(&cur)?
            .into_iter()
            .find(|n| split_name(n).0 == base))
    }

    /// base → file name for everything in `cur/`.
    fn base_listing(&self) -> Result<HashMap<String, String>> {
        let cur = self.dir.join("cur");
        Ok(list_names(&cur)?
            .into_iter()
            .map(|n| (split_name(&n).0.to_owned(), n))
            .collect())
    }

    // -----------------------------------------------------------------------------------
    // Keywords.

    fn reload_keywords(&mut self) {
        let path = self.dir.join(KEYWORDS_FILE);
        let stamp = fs::metadata(&path)
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
        if stamp != self.kw_stamp || stamp.is_none() {
            self.keywords = DovecotKeywords::load(&self.dir).unwrap_or_default();
            self.kw_stamp = stamp;
        }
    }

    fn flags_of(&mut self, suffix: &str) -> Flags {
        let (mut f, letters) = Flags::from_info(suffix);
        if letters.is_empty() {
            return f;
        }
        if !self.kw_checked && letters.iter().any(|&l| self.keywords.name_of(l).is_none()) {
            self.kw_checked = true;
            self.reload_keywords();
        }
        f.keywords = letters
            .iter()
            .filter_map(|&l| self.keywords.name_of(l).map(str::to_owned))
            .collect();
        f
    }

    /// Letters for keywords, registering new ones (the caller holds the lock).
    fn letters_locked(&mut self, keywords: &[String]) -> Result<Vec<u8>> {
        if keywords.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(l) = keywords
            .iter()
            .map(|k| self.keywords.letter_of(k))
            .collect::<Option<Vec<u8>>>()
        {
            return Ok(l);
        }
        let (letters, _dropped, kw) =
            crate::keywords::letters_locked(&self.dir, keywords, self.md.file_mode())?;
        self.keywords = kw;
        self.kw_stamp = fs::metadata(self.dir.join(KEYWORDS_FILE))
            .ok()
            .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.len()));
        Ok(letters)
    }

    fn meta(&mut self, m: &Msg) -> MessageMeta {
        MessageMeta {
            uid: m.uid,
            flags: self.flags_of(&m.suffix),
            modseq: m.modseq.max(1),
            size: m.size,
            internal_date: m.date,
        }
    }

    // -----------------------------------------------------------------------------------
    // Locking and the index.

    fn lock(&self) -> Result<MailboxLock> {
        let proc_lock = ProcLock::acquire(&self.dir);
        let dot = DotLock::acquire(
            &self.dir.join(UIDLIST_FILE),
            LOCK_WAIT,
            UIDLIST_LOCK_STALE,
            self.md.file_mode(),
        )?;
        Ok(MailboxLock {
            _dot: dot,
            _proc: proc_lock,
        })
    }

    /// First load: index (rebuilt when needed), uidlist agreement, then a refresh.
    fn load(&mut self) -> Result<()> {
        let ok = self.read_index(false)?;
        let uv = uidlist::read_uid_validity(&self.dir)?;
        if !ok || uv != Some(self.st.uid_validity) {
            let _lock = self.lock()?;
            self.read_index(true)?;
            match uidlist::read_uid_validity(&self.dir)? {
                Some(v) if v != self.st.uid_validity => self.rebuild_locked()?,
                Some(_) => {}
                None => self.recreate_uidlist_from_state()?,
            }
        }
        self.refresh()?;
        self.finish_view();
        self.view_highest = self.st.highest_modseq.max(1);
        Ok(())
    }

    /// Brings the state up to date with the index file. Without the lock, a missing or
    /// damaged index returns `false`; with it, the index is rebuilt.
    fn read_index(&mut self, locked: bool) -> Result<bool> {
        // Records read now may use keyword letters registered since the last look.
        self.kw_checked = false;
        let path = self.dir.join(INDEX_FILE);
        let md = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if is_not_found(&e) => return self.index_unusable(locked),
            Err(e) => return Err(MaildirError::io("stat", &path, e)),
        };
        if let Some(idx) = &mut self.idx
            && idx.ino == md.ino()
            && idx.dev == md.dev()
            && md.len() >= idx.pos
        {
            if md.len() == idx.pos || (!locked && md.len() == idx.bad_size) {
                return Ok(true);
            }
            let mut buf = vec![0u8; (md.len() - idx.pos) as usize];
            idx.file
                .read_exact_at(&mut buf, idx.pos)
                .ctx("read", &path)?;
            let (recs, used) = decode_recs(&buf);
            idx.pos += used as u64;
            if used < buf.len() {
                if locked {
                    // Nobody writes while we hold the lock: a crash left this.
                    idx.file.set_len(idx.pos).ctx("truncate", &path)?;
                    idx.bad_size = 0;
                } else {
                    idx.bad_size = md.len();
                }
            }
            for r in recs {
                self.apply(r, true);
            }
            return Ok(true);
        }
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return self.index_unusable(locked),
            Err(e) => return Err(MaildirError::io("open", &path, e)),
        };
        let fmd = file.metadata().ctx("fstat", &path)?;
        let mut data = Vec::with_capacity(fmd.len() as usize);
        (&file).read_to_end(&mut data).ctx("read", &path)?;
        let Some((snap, end)) = decode_snapshot(&data) else {
            return self.index_unusable(locked);
        };
        let (recs, used) = decode_recs(&data[end..]);
        let pos = (end + used) as u64;
        let mut bad_size = 0;
        if pos < data.len() as u64 {
            if locked {
                file.set_len(pos).ctx("truncate", &path)?;
            } else {
                bad_size = data.len() as u64;
            }
        }
        self.install_snapshot(snap);
        for r in recs {
            self.apply(r, true);
        }
        self.idx = Some(IndexFile {
            file,
            dev: fmd.dev(),
            ino: fmd.ino(),
            pos,
            snap_end: end as u64,
            bad_size,
        });
        Ok(true)
    }

    fn index_unusable(&mut self, locked: bool) -> Result<bool> {
        if !locked {
            return Ok(false);
        }
        self.rebuild_locked()?;
        Ok(true)
    }

    /// Replaces the state with a snapshot; after the first load, the differences become
    /// pending news, expunges and changes.
    fn install_snapshot(&mut self, snap: Snapshot) {
        let initial = self.idx.is_none() && self.metas.is_empty() && self.pending.is_empty();
        let h = &snap.hdr;
        self.st = Shared {
            uid_validity: h.uid_validity,
            uid_next: h.uid_next.max(1),
            highest_modseq: h.highest_modseq.max(1),
            first_recent: h.first_recent,
            expunge_floor: h.expunge_floor,
            expunges: snap.expunges.iter().copied().collect(),
            dirs: h.dirs,
        };
        let same_cache = self.cache.as_ref().is_some_and(|c| c.ino == h.cache_ino);
        if !same_cache {
            self.cache = None;
        }
        self.cache_snap = (h.cache_ino, h.cache_pos);
        if initial {
            self.metas.reserve(snap.msgs.len());
            self.files.reserve(snap.msgs.len());
            for m in snap.msgs {
                let meta = self.meta(&m);
                self.metas.push(meta);
                self.files.push(FileInfo {
                    base: m.base.into_boxed_str(),
                    suffix: m.suffix.into_boxed_str(),
                    cache_off: m.cache_off,
                    cache_len: m.cache_len,
                    gone: false,
                });
            }
            return;
        }
        let mut i = 0;
        let mut pending = Vec::new();
        for m in snap.msgs {
            while i < self.metas.len() && self.metas[i].uid < m.uid {
                if !self.files[i].gone {
                    self.files[i].gone = true;
                    self.ghosts += 1;
                }
                i += 1;
            }
            if i < self.metas.len() && self.metas[i].uid == m.uid {
                if self.files[i].gone {
                    self.files[i].gone = false;
                    self.ghosts -= 1;
                }
                let f = &self.files[i];
                let (off, len) = if same_cache && f.cache_off > m.cache_off {
                    (f.cache_off, f.cache_len)
                } else {
                    (m.cache_off, m.cache_len)
                };
                if *f.suffix != *m.suffix || self.metas[i].modseq != m.modseq.max(1) {
                    let meta = self.meta(&m);
                    self.metas[i] = meta;
                    self.changed.insert(m.uid);
                }
                let f = &mut self.files[i];
                f.suffix = m.suffix.into_boxed_str();
                f.base = m.base.into_boxed_str();
                f.cache_off = off;
                f.cache_len = len;
                i += 1;
            } else {
                let meta = self.meta(&m);
                pending.push((
                    meta,
                    FileInfo {
                        base: m.base.into_boxed_str(),
                        suffix: m.suffix.into_boxed_str(),
                        cache_off: m.cache_off,
                        cache_len: m.cache_len,
                        gone: false,
                    },
                ));
            }
        }
        while i < self.metas.len() {
            if !self.files[i].gone {
                self.files[i].gone = true;
                self.ghosts += 1;
            }
            i += 1;
        }
        self.pending = pending;
    }

    /// Applies one change; `report`: it was made by someone else.
    fn apply(&mut self, rec: Rec, report: bool) {
        match rec {
            Rec::New(m) => {
                self.st.highest_modseq = self.st.highest_modseq.max(m.modseq);
                self.st.uid_next = self.st.uid_next.max(m.uid.saturating_add(1));
                if self.find(m.uid).is_some() {
                    return;
                }
                let meta = self.meta(&m);
                let info = FileInfo {
                    base: m.base.into_boxed_str(),
                    suffix: m.suffix.into_boxed_str(),
                    cache_off: 0,
                    cache_len: 0,
                    gone: false,
                };
                match self.find_pending(m.uid) {
                    Ok(p) => self.pending[p] = (meta, info),
                    Err(p) => self.pending.insert(p, (meta, info)),
                }
            }
            Rec::Flags {
                uid,
                modseq,
                suffix,
            } => {
                self.st.highest_modseq = self.st.highest_modseq.max(modseq);
                let flags = self.flags_of(&suffix);
                if let Some(i) = self.find(uid) {
                    if self.files[i].gone {
                        return;
                    }
                    self.files[i].suffix = suffix.into_boxed_str();
                    self.metas[i].flags = flags;
                    self.metas[i].modseq = modseq;
                    if report {
                        self.changed.insert(uid);
                    }
                } else if let Ok(p) = self.find_pending(uid) {
                    self.pending[p].1.suffix = suffix.into_boxed_str();
                    self.pending[p].0.flags = flags;
                    self.pending[p].0.modseq = modseq;
                }
            }
            Rec::Expunge { uid, modseq } => {
                self.st.highest_modseq = self.st.highest_modseq.max(modseq);
                self.st.expunges.push_back((uid, modseq));
                while self.st.expunges.len() > EXPUNGE_HISTORY {
                    if let Some((_, m)) = self.st.expunges.pop_front() {
                        self.st.expunge_floor = self.st.expunge_floor.max(m);
                    }
                }
                if let Some(i) = self.find(uid) {
                    if !self.files[i].gone {
                        self.files[i].gone = true;
                        self.ghosts += 1;
                    }
                } else if let Ok(p) = self.find_pending(uid) {
                    self.pending.remove(p);
                }
            }
            Rec::Recent(u) => self.st.first_recent = self.st.first_recent.max(u),
            Rec::Dirs(d) => self.st.dirs = d,
            Rec::UidNext(n) => self.st.uid_next = self.st.uid_next.max(n),
        }
    }

    /// Writes records to the log (the caller holds the lock and has read the index) and
    /// applies them.
    fn commit(&mut self, recs: Vec<Rec>, report: bool) -> Result<()> {
        if recs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for r in &recs {
            encode_rec(r, &mut buf);
        }
        let path = self.dir.join(INDEX_FILE);
        let idx = self.idx.as_mut().ok_or_else(|| index_err(&self.dir))?;
        idx.file.write_all_at(&buf, idx.pos).ctx("write", &path)?;
        idx.pos += buf.len() as u64;
        for r in recs {
            self.apply(r, report);
        }
        self.maybe_compact()
    }

    fn cache_tail(&self) -> u64 {
        match &self.cache {
            Some(c) if c.ino == self.cache_snap.0 => c.pos.saturating_sub(self.cache_snap.1),
            Some(c) => c.pos,
            None => 0,
        }
    }

    fn maybe_compact(&mut self) -> Result<()> {
        let Some(idx) = &self.idx else {
            return Ok(());
        };
        let log = idx.pos - idx.snap_end;
        if log > COMPACT_MIN_LOG.max(idx.snap_end / 2) || self.cache_tail() > CACHE_TAIL_COMPACT {
            self.compact()?;
        }
        Ok(())
    }

    /// The shared state as a snapshot.
    fn snapshot(&self) -> Snapshot {
        let (cache_ino, cache_pos) = self.cache.as_ref().map_or((0, 0), |c| (c.ino, c.pos));
        let mut msgs = Vec::with_capacity(self.metas.len() + self.pending.len());
        let view = self.metas.iter().zip(&self.files).filter(|(_, f)| !f.gone);
        let mut pend = self.pending.iter().map(|(m, f)| (m, f)).peekable();
        let to_msg = |m: &MessageMeta, f: &FileInfo| Msg {
            uid: m.uid,
            modseq: m.modseq,
            size: m.size,
            date: m.internal_date,
            base: f.base.to_string(),
            suffix: f.suffix.to_string(),
            cache_off: f.cache_off,
            cache_len: f.cache_len,
        };
        for (m, f) in view {
            while let Some((pm, pf)) = pend.next_if(|(pm, _)| pm.uid < m.uid) {
                msgs.push(to_msg(pm, pf));
            }
            msgs.push(to_msg(m, f));
        }
        for (pm, pf) in pend {
            msgs.push(to_msg(pm, pf));
        }
        Snapshot {
            hdr: Header {
                uid_validity: self.st.uid_validity,
                uid_next: self.st.uid_next,
                highest_modseq: self.st.highest_modseq,
                first_recent: self.st.first_recent,
                expunge_floor: self.st.expunge_floor,
                dirs: self.st.dirs,
                cache_ino,
                cache_pos,
            },
            msgs,
            expunges: self.st.expunges.iter().copied().collect(),
        }
    }

    /// Writes a new index holding only a snapshot of the state (the caller holds the lock and
    /// is up to date); rewrites the cache file first when it is mostly dead.
    fn compact(&mut self) -> Result<()> {
        let _ = self.refresh_cache();
        if let Some(c) = &self.cache {
            let size = c.size();
            let live: u64 = self
                .files
                .iter()
                .filter(|f| !f.gone)
                .chain(self.pending.iter().map(|(_, f)| f))
                .filter(|f| f.cache_off != 0)
                .map(|f| 16 + u64::from(f.cache_len))
                .sum();
            if size > CACHE_REWRITE_MIN && live * 2 < size {
                let mut blobs = Vec::new();
                let uids: Vec<u32> = self
                    .metas
                    .iter()
                    .zip(&self.files)
                    .filter(|(_, f)| !f.gone && f.cache_off != 0)
                    .map(|(m, _)| m.uid)
                    .chain(
                        self.pending
                            .iter()
                            .filter(|(_, f)| f.cache_off != 0)
                            .map(|(m, _)| m.uid),
                    )
                    .collect();
                for uid in &uids {
                    if let Some(b) = self.cache_get(*uid) {
                        blobs.push((*uid, b));
                    }
                    self.set_cache_loc(*uid, 0, 0);
                }
                let (c, offs) =
                    Cache::rewrite(&self.dir, self.st.uid_validity, &blobs, self.md.file_mode())?;
                for ((uid, b), off) in blobs.iter().zip(offs) {
                    self.set_cache_loc(*uid, off, b.len() as u32);
                }
                self.cache = Some(c);
            }
        }
        let snap = self.snapshot();
        let hdr = (snap.hdr.cache_ino, snap.hdr.cache_pos);
        self.write_index(&snap)?;
        self.cache_snap = hdr;
        Ok(())
    }

    /// Replaces the index file with `snap` (temporary file, fsync, rename) and uses it.
    fn write_index(&mut self, snap: &Snapshot) -> Result<()> {
        let data = encode_snapshot(snap);
        let tmp = self.dir.join(INDEX_TMP_FILE);
        let path = self.dir.join(INDEX_FILE);
        let _ = fs::remove_file(&tmp);
        let result = (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(self.md.file_mode())
                .open(&tmp)
                .ctx("create", &tmp)?;
            f.write_all(&data).ctx("write", &tmp)?;
            f.sync_all().ctx("fsync", &tmp)?;
            let md = f.metadata().ctx("fstat", &tmp)?;
            fs::rename(&tmp, &path).ctx("rename", &path)?;
            Ok((f, md))
        })();
        let (file, md) = match result {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fsync_dir(&self.dir)?;
        self.idx = Some(IndexFile {
            file,
            dev: md.dev(),
            ino: md.ino(),
            pos: data.len() as u64,
            snap_end: data.len() as u64,
            bad_size: 0,
        });
        Ok(())
    }

    /// Rebuilds the index from `dovecot-uidlist` and a scan (the caller holds the lock).
    fn rebuild_locked(&mut self) -> Result<()> {
        let index_existed = self.idx.is_some() || self.dir.join(INDEX_FILE).exists();
        let (list, uidlist_existed) = match Uidlist::load(&self.dir)? {
            Some(Ok(l)) => (l, true),
            Some(Err(_)) => (
                Uidlist::new(uidlist::next_uid_validity(
                    self.md.root(),
                    self.md.file_mode(),
                )),
                true,
            ),
            None => (
                Uidlist::new(uidlist::next_uid_validity(
                    self.md.root(),
                    self.md.file_mode(),
                )),
                false,
            ),
        };
        // MODSEQs handed out before cannot be known: start above any of them, unless this
        // mailbox never had UIDs.
        let base = if uidlist_existed || index_existed || self.st.highest_modseq > 1 {
            (now_secs() << 16).max(self.st.highest_modseq + 1)
        } else {
            1
        };
        self.uid_map = list
            .records
            .iter()
            .map(|r| (r.base.clone(), (r.uid, r.vsize())))
            .collect();
        self.uidlist = Tracker::default();
        if uidlist_existed {
            let _ = self.uidlist.refresh(&self.dir, |_| {})?;
            if self.uidlist.uid_validity != list.uid_validity {
                self.uidlist = Tracker::default();
            }
        }
        let mut hdr = Header {
            uid_validity: list.uid_validity,
            uid_next: list.next_uid,
            highest_modseq: base,
            first_recent: list.next_uid,
            expunge_floor: if base == 1 { 0 } else { base },
            dirs: DirState::default(),
            cache_ino: 0,
            cache_pos: 0,
        };
        let (names, dirs, _stable) = self.scan_dirs()?;
        let mut seen = HashSet::new();
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| seen.insert(split_name(n).0.to_owned()))
            .collect();
        let mut next_modseq = base;
        let msgs = self.resolve_new(names, &mut next_modseq, Some(&list), hdr.uid_next)?;
        hdr.highest_modseq = next_modseq;
        hdr.uid_next = msgs
            .last()
            .map_or(hdr.uid_next, |m| m.uid + 1)
            .max(hdr.uid_next)
            .max(self.uidlist.next_uid);
        hdr.dirs = dirs;
        // A cache of another UIDVALIDITY is useless.
        if Cache::open(&self.dir, hdr.uid_validity, false, self.md.file_mode())?.is_none() {
            let _ = fs::remove_file(self.dir.join(cache::CACHE_FILE));
        }
        let snap = Snapshot {
            hdr,
            msgs,
            expunges: Vec::new(),
        };
        self.write_index(&snap)?;
        let idx = self.idx.take();
        self.install_snapshot(snap);
        self.idx = idx;
        self.cache = None;
        self.cache_snap = (0, 0);
        Ok(())
    }

    /// Writes a uidlist from the index state (it was missing or broken).
    fn recreate_uidlist_from_state(&mut self) -> Result<()> {
        let mut list = Uidlist::new(self.st.uid_validity);
        list.next_uid = self.st.uid_next;
        let snap = self.snapshot();
        list.records = snap
            .msgs
            .iter()
            .map(|m| UidlistRecord::new(m.uid, m.base.clone()))
            .collect();
        self.uidlist.recreate(&self.dir, &list, self.md.file_mode())
    }

    // -----------------------------------------------------------------------------------
    // Syncing with the directories.

    fn refresh(&mut self) -> Result<()> {
        if !self.read_index(false)? {
            let _lock = self.lock()?;
            self.read_index(true)?;
        }
        let _ = self.refresh_cache();
        if !self.dirs_changed()? {
            if self.cache_tail() > CACHE_TAIL_COMPACT {
                let _lock = self.lock()?;
                self.read_index(true)?;
                self.compact()?;
            }
            return Ok(());
        }
        let _lock = self.lock()?;
        self.read_index(true)?;
        if self.dirs_changed()? {
            self.scan_locked()?;
        }
        Ok(())
    }

    fn dirs_changed(&self) -> Result<bool> {
        let stat = |sub: &str| -> Result<Stamp> {
            let p = self.dir.join(sub);
            match fs::metadata(&p) {
                Ok(md) => Ok(stamp_of(&md)),
                Err(e) if is_not_found(&e) => Err(MaildirError::NoSuchFolder(self.name.clone())),
                Err(e) => Err(MaildirError::io("stat", &p, e)),
            }
        };
        let d = self.st.dirs;
        Ok(!d.safe || stat("cur")? != d.cur || stat("new")? != d.new)
    }

    fn refresh_cache(&mut self) -> Result<()> {
        if self
            .cache
            .as_ref()
            .is_some_and(|c| !c.is_current(&self.dir))
        {
            self.cache = None;
        }
        if self.cache.is_none() {
            self.cache = Cache::open(&self.dir, self.st.uid_validity, false, self.md.file_mode())?;
            match &mut self.cache {
                Some(c) if c.ino == self.cache_snap.0 => c.pos = c.pos.max(self.cache_snap.1),
                Some(_) => {}
                None => return Ok(()),
            }
        }
        let mut found = Vec::new();
        if let Some(c) = &mut self.cache {
            c.scan(|u, o, l| found.push((u, o, l)))?;
        }
        for (u, o, l) in found {
            self.set_cache_loc(u, o, l);
        }
        Ok(())
    }

    /// Moves `new/` into `cur/` and lists `cur/`; returns the names, the directory state seen
    /// before listing, and whether `cur/` stayed unchanged while it was listed.
    fn scan_dirs(&self) -> Result<(Vec<String>, DirState, bool)> {
        let cur = self.dir.join("cur");
        let new = self.dir.join("new");
        let mut new_state = None;
        for _ in 0..4 {
            let (stamp, now) = stat_dir(&new)?;
            let names = list_names(&new)?;
            if names.is_empty() {
                new_state = Some((stamp, now));
                break;
            }
            for n in names {
                let target = if n.contains(':') {
                    n.clone()
                } else {
                    format!("{n}:2,")
                };
                match fs::rename(new.join(&n), cur.join(&target)) {
                    Ok(()) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(MaildirError::io("rename", new.join(&n), e)),
                }
            }
        }
        let mut names = Vec::new();
        let mut cur_state = (Stamp::default(), UNIX_EPOCH);
        let mut stable = false;
        for _ in 0..3 {
            let (s1, now) = stat_dir(&cur)?;
            names = list_names(&cur)?;
            let (s2, _) = stat_dir(&cur)?;
            cur_state = (s1, now);
            if s1 == s2 {
                stable = true;
                break;
            }
        }
        let safe = stable
            && new_state.is_some_and(|(s, n)| is_safe(s, n))
            && is_safe(cur_state.0, cur_state.1);
        let dirs = DirState {
            cur: cur_state.0,
            new: new_state.map_or_else(Stamp::default, |s| s.0),
            safe,
        };
        Ok((names, dirs, stable && safe))
    }

    /// Compares the directories with the state and logs what others changed (the caller
    /// holds the lock and has read the index).
    fn scan_locked(&mut self) -> Result<()> {
        self.reload_keywords();
        let (names, dirs, trusted) = self.scan_dirs()?;
        let n_view = self.files.len();
        let mut seen = vec![false; n_view + self.pending.len()];
        let mut flag_changes: Vec<(u32, String)> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        let mut dups: Vec<String> = Vec::new();
        let mut missing: Vec<(u32, String)> = Vec::new();
        {
            let mut known: HashMap<&str, (usize, u32, &str)> =
                HashMap::with_capacity(n_view + self.pending.len());
            for (i, (m, f)) in self.metas.iter().zip(&self.files).enumerate() {
                if !f.gone {
                    known.insert(&f.base, (i, m.uid, &f.suffix));
                }
            }
            for (j, (m, f)) in self.pending.iter().enumerate() {
                known.insert(&f.base, (n_view + j, m.uid, &f.suffix));
            }
            // Pass 1: files exactly as known.
            let mut rest = Vec::new();
            for name in &names {
                let (base, suffix) = split_name(name);
                match known.get(base) {
                    Some(&(slot, _, s)) if s == suffix && !seen[slot] => seen[slot] = true,
                    _ => rest.push(name),
                }
            }
            // Pass 2: renamed, new and duplicate files.
            let mut unknown_bases = HashSet::new();
            for name in rest {
                let (base, suffix) = split_name(name);
                match known.get(base) {
                    Some(&(slot, uid, _)) => {
                        if seen[slot] {
                            dups.push(name.clone());
                        } else {
                            seen[slot] = true;
                            flag_changes.push((uid, suffix.to_owned()));
                        }
                    }
                    None => {
                        if unknown_bases.insert(base) {
                            unknown.push(name.clone());
                        } else {
                            dups.push(name.clone());
                        }
                    }
                }
            }
            for (slot, &s) in seen.iter().enumerate() {
                if s {
                    continue;
                }
                let (uid, f) = if slot < n_view {
                    (self.metas[slot].uid, &self.files[slot])
                } else {
                    let (m, f) = &self.pending[slot - n_view];
                    (m.uid, f)
                };
                if slot < n_view && f.gone {
                    continue;
                }
                missing.push((uid, format!("{}{}", f.base, f.suffix)));
            }
        }
        // A file missing from a listing that may have raced with a rename is checked again.
        let cur = self.dir.join("cur");
        missing.retain(|(_, name)| fs::symlink_metadata(cur.join(name)).is_err());
        if !missing.is_empty() && !trusted {
            let listing = self.base_listing()?;
            missing.retain(|(_, name)| !listing.contains_key(split_name(name).0));
        }
        let mut modseq = self.st.highest_modseq;
        let mut recs = Vec::new();
        for (uid, suffix) in flag_changes {
            modseq += 1;
            recs.push(Rec::Flags {
                uid,
                modseq,
                suffix,
            });
        }
        for (uid, _) in missing {
            modseq += 1;
            recs.push(Rec::Expunge { uid, modseq });
        }
        if trusted {
            for d in dups {
                if let Some(n) = self.rename_duplicate(&d)? {
                    unknown.push(n);
                }
            }
        }
        if !unknown.is_empty() {
            self.refresh_uidlist()?;
            if self.uidlist.loaded && self.uidlist.uid_validity != self.st.uid_validity {
                // Someone recreated the uidlist with a new UIDVALIDITY: start over.
                return self.rebuild_locked();
            }
            let uid_next = self.st.uid_next;
            let news = self.resolve_new(unknown, &mut modseq, None, uid_next)?;
            recs.extend(news.into_iter().map(Rec::New));
        }
        if self.uidlist.loaded && self.uidlist.next_uid > self.st.uid_next {
            recs.push(Rec::UidNext(self.uidlist.next_uid));
        }
        recs.push(Rec::Dirs(dirs));
        self.commit(recs, true)
    }

    /// Gives a second file with a known base a new unique base; returns its new name.
    fn rename_duplicate(&self, name: &str) -> Result<Option<String>> {
        let cur = self.dir.join("cur");
        let path = cur.join(name);
        let Ok(md) = fs::symlink_metadata(&path) else {
            return Ok(None);
        };
        let s = size_field(name, 'S').unwrap_or(md.len());
        let w = match size_field(name, 'W') {
            Some(w) => w,
            None => match compute_vsize(&path)? {
                Some(w) => w,
                None => return Ok(None),
            },
        };
        let (_, suffix) = split_name(name);
        let new_name = format!("{}{suffix}", filename::generate(s, w));
        let to = cur.join(&new_name);
        match fs::hard_link(&path, &to) {
            Ok(()) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => fs::rename(&path, &to).ctx("rename", &to)?,
        }
        Ok(Some(new_name))
    }

    /// Reads what was appended to the uidlist (or all of it) and notes the records of bases
    /// not in the state. The caller holds the lock.
    fn refresh_uidlist(&mut self) -> Result<()> {
        let mut recs: Vec<(u32, String, Option<u64>)> = Vec::new();
        let how = self
            .uidlist
            .refresh(&self.dir, |r| recs.push((r.uid, r.base.clone(), r.vsize())))?;
        if matches!(
            how,
            Refreshed::Reloaded | Refreshed::Missing | Refreshed::Broken
        ) {
            self.uid_map.clear();
        }
        // Only UIDs above what the index knows can be taken for unknown files.
        let floor = self.st.uid_next;
        for (uid, base, vsize) in recs {
            if uid >= floor && !self.find_any(uid) {
                self.uid_map.insert(base, (uid, vsize));
            }
        }
        Ok(())
    }

    /// UIDs for files found in `cur/` that the index does not know: the uidlist's when it has
    /// one for the base (Dovecot assigned it), otherwise new ones in arrival order, appended
    /// to the uidlist. `rebuild`: the uidlist of a rebuild (its UIDs are all taken). Returns
    /// the messages, ascending, with MODSEQs from `modseq` on.
    fn resolve_new(
        &mut self,
        names: Vec<String>,
        modseq: &mut u64,
        rebuild: Option<&Uidlist>,
        uid_next: u32,
    ) -> Result<Vec<Msg>> {
        if rebuild.is_none() {
            self.refresh_uidlist()?;
        }
        let cur = self.dir.join("cur");
        struct Item {
            uid: u32,
            base: String,
            suffix: String,
            size: u64,
            date: i64,
            key: (u64, u32, String),
            cand: Option<u32>,
        }
        let mut items = Vec::new();
        let mtimes = stat_mtimes(&cur, &names)?;
        for (name, mtime) in names.into_iter().zip(mtimes) {
            let path = cur.join(&name);
            let Some(mtime) = mtime else { continue };
            let (base, suffix) = split_name(&name);
            let cand = self.uid_map.get(base).copied();
            let size = match size_field(&name, 'W').or(cand.and_then(|c| c.1)) {
                Some(s) => s,
                None => match compute_vsize(&path)? {
                    Some(s) => s,
                    None => continue,
                },
            };
            let p = filename::parse(&name);
            items.push(Item {
                uid: 0,
                base: base.to_owned(),
                suffix: suffix.to_owned(),
                size,
                date: mtime,
                key: (
                    p.as_ref().map_or(u64::MAX, |p| p.secs),
                    p.as_ref().and_then(|p| p.usecs).unwrap_or(0),
                    name.clone(),
                ),
                cand: cand.map(|c| c.0),
            });
        }
        // UIDs the uidlist already has for these files. Outside a rebuild, only UIDs above
        // what the index knows: an expunged UID never comes back.
        let mut used = HashSet::new();
        for it in &mut items {
            if let Some(u) = it.cand
                && (rebuild.is_some() || (u >= uid_next && !self.find_any(u)))
                && used.insert(u)
            {
                it.uid = u;
            }
        }
        let mut order: Vec<usize> = (0..items.len()).filter(|&i| items[i].uid == 0).collect();
        order.sort_by(|&a, &b| items[a].key.cmp(&items[b].key));
        let mut next = uid_next
            .max(self.uidlist.next_uid)
            .max(rebuild.map_or(1, |l| l.next_uid))
            .max(used.iter().max().map_or(1, |u| u + 1));
        let mut new_recs = Vec::new();
        for i in order {
            items[i].uid = next;
            new_recs.push(UidlistRecord::new(next, items[i].base.clone()));
            next += 1;
        }
        let live: HashSet<u32> = items.iter().map(|i| i.uid).collect();
        self.write_uidlist(&new_recs, next, &live, rebuild)?;
        for it in &items {
            self.uid_map.remove(&it.base);
        }
        items.sort_by_key(|i| i.uid);
        Ok(items
            .into_iter()
            .map(|it| {
                *modseq += 1;
                Msg {
                    uid: it.uid,
                    modseq: *modseq,
                    size: it.size,
                    date: it.date,
                    base: it.base,
                    suffix: it.suffix,
                    cache_off: 0,
                    cache_len: 0,
                }
            })
            .collect())
    }

    /// New UIDs for files already linked into `cur/` by this session (the caller holds the
    /// lock), appended to the uidlist.
    fn assign_uids(&mut self, bases: &[String]) -> Result<Vec<u32>> {
        self.refresh_uidlist()?;
        if self.uidlist.loaded && self.uidlist.uid_validity != self.st.uid_validity {
            self.rebuild_locked()?;
            let known: HashMap<&str, u32> = self
                .pending
                .iter()
                .map(|(m, f)| (&*f.base, m.uid))
                .chain(
                    self.metas
                        .iter()
                        .zip(&self.files)
                        .map(|(m, f)| (&*f.base, m.uid)),
                )
                .collect();
            return Ok(bases
                .iter()
                .filter_map(|b| known.get(b.as_str()).copied())
                .collect());
        }
        let mut next = self.st.uid_next.max(self.uidlist.next_uid);
        let mut recs = Vec::new();
        for b in bases {
            recs.push(UidlistRecord::new(next, b.clone()));
            next += 1;
        }
        let live: HashSet<u32> = recs.iter().map(|r| r.uid).collect();
        self.write_uidlist(&recs, next, &live, None)?;
        Ok(recs.iter().map(|r| r.uid).collect())
    }

    /// Adds records to the uidlist: appended when the file allows it, else a full rewrite
    /// that also drops records of expunged messages.
    fn write_uidlist(
        &mut self,
        recs: &[UidlistRecord],
        next_uid: u32,
        live: &HashSet<u32>,
        rebuild: Option<&Uidlist>,
    ) -> Result<()> {
        let state_count = if rebuild.is_some() {
            0
        } else {
            self.metas.len() - self.ghosts + self.pending.len()
        };
        let lines = self.uidlist.lines + recs.len();
        let want_compress = lines > 100 && (state_count + live.len()) * 4 < lines * 3;
        if self.uidlist.can_append() && !want_compress {
            return self.uidlist.append(&self.dir, recs);
        }
        let uv = rebuild.map_or(self.st.uid_validity, |l| l.uid_validity);
        let mut list = match Uidlist::load(&self.dir)? {
            Some(Ok(l)) if l.uid_validity == uv => l,
            _ => {
                // Missing or unusable: start from what the index knows.
                let mut l = Uidlist::new(uv);
                if rebuild.is_none() {
                    l.records = self
                        .snapshot()
                        .msgs
                        .into_iter()
                        .map(|m| UidlistRecord::new(m.uid, m.base))
                        .collect();
                }
                l
            }
        };
        let known_next = if rebuild.is_some() {
            u32::MAX
        } else {
            self.st.uid_next
        };
        list.records.retain(|r| {
            live.contains(&r.uid)
                || r.uid >= known_next
                || (rebuild.is_none() && self.find_any(r.uid))
        });
        list.records.extend(recs.iter().cloned());
        list.records.sort_by_key(|r| r.uid);
        list.records.dedup_by_key(|r| r.uid);
        list.version = 3;
        list.next_uid = list
            .next_uid
            .max(next_uid)
            .max(list.records.last().map_or(1, |r| r.uid + 1));
        if list.guid.is_none() {
            list.guid = Some(uidlist::random_guid());
        }
        list.problems = 0;
        self.uidlist.recreate(&self.dir, &list, self.md.file_mode())
    }

    /// Moves pending changes into the view and reports them.
    fn finish_view(&mut self) -> SyncReport {
        let mut r = SyncReport::default();
        if self.ghosts > 0 {
            let mut keep = Vec::with_capacity(self.files.len());
            for (m, f) in self.metas.iter().zip(&self.files) {
                if f.gone {
                    r.expunged.push(m.uid);
                }
                keep.push(!f.gone);
            }
            let mut k = keep.iter();
            self.metas.retain(|_| *k.next().unwrap_or(&true));
            let mut k = keep.iter();
            self.files.retain(|_| *k.next().unwrap_or(&true));
            self.ghosts = 0;
        }
        let changed = std::mem::take(&mut self.changed);
        if !self.pending.is_empty() {
            let pend = std::mem::take(&mut self.pending);
            r.new = pend.iter().map(|(m, _)| m.uid).collect();
            if self.metas.last().is_none_or(|l| l.uid < pend[0].0.uid) {
                for (m, f) in pend {
                    self.metas.push(m);
                    self.files.push(f);
                }
            } else {
                let old_m = std::mem::take(&mut self.metas);
                let old_f = std::mem::take(&mut self.files);
                let mut a = old_m.into_iter().zip(old_f).peekable();
                let mut b = pend.into_iter().peekable();
                loop {
                    let take_a = match (a.peek(), b.peek()) {
                        (Some((x, _)), Some((y, _))) => x.uid < y.uid,
                        (Some(_), None) => true,
                        (None, Some(_)) => false,
                        (None, None) => break,
                    };
                    let next = if take_a { a.next() } else { b.next() };
                    if let Some((m, f)) = next {
                        self.metas.push(m);
                        self.files.push(f);
                    }
                }
            }
        }
        r.changed = changed
            .into_iter()
            .filter(|u| self.find(*u).is_some() && r.new.binary_search(u).is_err())
            .collect();
        let last = self.metas.last().map_or(0, |m| m.uid);
        self.view_uid_next = self.st.uid_next.max(last + 1);
        self.view_highest = self.view_highest.max(self.st.highest_modseq);
        r
    }
}
