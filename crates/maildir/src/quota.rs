//! Maildir++ quota: the `maildirsize` file in the Maildir root, as Courier, maildrop, Exim and
//! Dovecot's `quota = maildir` backend keep it.
//!
//! Format: the first line holds the limits, `<bytes>S` and/or `<count>C` joined by `,`
//! (0 or absent = unlimited; with no limit at all Dovecot writes `0S`); every further line is
//! a delta `<bytes> <count>` (either may be negative) and the usage is their sum.
//!
//! The file is trusted unless (rules of the Maildir++ spec, as Dovecot applies them):
//! it is missing or unreadable, is 5120 bytes or longer, holds a NUL byte or a malformed delta
//! line, sums to a negative value, or says the Maildir is *over quota* while it either has more
//! than one delta line or was last modified more than 15 minutes ago. Then the usage is
//! recalculated by scanning `cur/` and `new/` of INBOX and of every folder (all of them count,
//! Trash too, as in Dovecot's default), taking each size from `,S=` in the file name or else
//! from `stat()`, and the file is rewritten atomically (temporary file in `tmp/`, fsync, rename)
//! with a single delta line. If a scanned directory changed during the scan the file is not
//! rewritten (the next call scans again), as Dovecot does.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime};

use crate::error::{IoContext, MaildirError, Result};
use crate::filename::{hostname, size_field};
use crate::fsutil::{is_not_found, random_hex, replace_file};
use crate::store::Maildir;

/// Name of the quota file in the Maildir root.
pub const MAILDIRSIZE_FILE: &str = "maildirsize";
/// A `maildirsize` this long or longer is recalculated.
pub const MAX_FILE_SIZE: usize = 5120;
/// An over-quota `maildirsize` older than this is recalculated.
pub const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// Quota limits; 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuotaLimit {
    /// Storage limit in bytes (`S`).
    pub bytes: u64,
    /// Message count limit (`C`).
    pub messages: u64,
}

impl From<u64> for QuotaLimit {
    fn from(bytes: u64) -> Self {
        Self { bytes, messages: 0 }
    }
}

impl QuotaLimit {
    /// Parses a limits line (`1000000S,1000C`), leniently: unknown parts are ignored.
    pub fn parse(line: &str) -> Self {
        let mut limit = Self::default();
        for part in line.trim().split(',') {
            if let Some(Ok(v)) = part.strip_suffix('S').map(str::parse::<u64>) {
                limit.bytes = v;
            } else if let Some(Ok(v)) = part.strip_suffix('C').map(str::parse::<u64>) {
                limit.messages = v;
            }
        }
        limit
    }

    /// The limits line as Dovecot writes it.
    pub fn header(&self) -> String {
        let mut s = String::new();
        if self.bytes != 0 || self.messages == 0 {
            s.push_str(&format!("{}S", self.bytes));
        }
        if self.messages != 0 {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(&format!("{}C", self.messages));
        }
        s
    }

    /// True if one more message of `incoming` bytes fits.
    pub fn allows(&self, usage: Usage, incoming: u64) -> bool {
        Quota::check(self.bytes, usage, incoming)
            && (self.messages == 0 || usage.messages < self.messages)
    }

    fn exceeded_by(&self, usage: Usage) -> bool {
        (self.bytes != 0 && usage.bytes > self.bytes)
            || (self.messages != 0 && usage.messages > self.messages)
    }
}

/// Storage in use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes (sum of `S=` sizes).
    pub bytes: u64,
    /// Messages.
    pub messages: u64,
}

/// Maildir++ quota operations (associated functions only).
#[derive(Debug, Clone, Copy)]
pub struct Quota;

#[derive(Clone, Copy)]
enum FileState {
    Valid {
        limit: QuotaLimit,
        usage: Usage,
        deltas: usize,
        age: Duration,
    },
    Invalid {
        limit: Option<QuotaLimit>,
    },
}

impl Quota {
    /// Current usage, keeping the limits line found in `maildirsize` (`0S` if there is none).
    pub fn usage(maildir: &Maildir) -> Result<Usage> {
        Self::usage_inner(maildir, None)
    }

    /// Current usage; the file is also rewritten when its limits line differs from `limit`.
    pub fn usage_with_limit(maildir: &Maildir, limit: QuotaLimit) -> Result<Usage> {
        Self::usage_inner(maildir, Some(limit))
    }

    fn usage_inner(maildir: &Maildir, wanted: Option<QuotaLimit>) -> Result<Usage> {
        match read_file(&maildir.root().join(MAILDIRSIZE_FILE))? {
            FileState::Valid {
                limit,
                usage,
                deltas,
                age,
            } => {
                if let Some(w) = wanted
                    && w != limit
                {
                    return Self::recalculate(maildir, w);
                }
                if limit.exceeded_by(usage) && (deltas > 1 || age > STALE_AFTER) {
                    return Self::recalculate(maildir, limit);
                }
                Ok(usage)
            }
            FileState::Invalid { limit } => {
                Self::recalculate(maildir, wanted.or(limit).unwrap_or_default())
            }
        }
    }

    /// Scans the Maildir and rewrites `maildirsize` with `limit` and the result.
    pub fn recalculate(maildir: &Maildir, limit: QuotaLimit) -> Result<Usage> {
        let (usage, unchanged) = scan(maildir)?;
        if unchanged {
            let tmp = maildir.root().join("tmp").join(format!(
                "{MAILDIRSIZE_FILE}.{}.{}.{}",
                hostname().replace('/', "_"),
                std::process::id(),
                random_hex()
            ));
            let body = format!("{}\n{} {}\n", limit.header(), usage.bytes, usage.messages);
            let target = maildir.root().join(MAILDIRSIZE_FILE);
            match replace_file(&tmp, &target, body.as_bytes(), maildir.file_mode()) {
                // `tmp/` is missing (`Maildir::at` creates nothing): made again, as
                // `Maildir::open_or_create` would have.
                Err(MaildirError::Io {
                    op: "create",
                    source,
                    ..
                }) if is_not_found(&source) => {
                    maildir.ensure_root()?;
                    replace_file(&tmp, &target, body.as_bytes(), maildir.file_mode())?;
                }
                r => r?,
            }
        }
        Ok(usage)
    }

    /// Records a change (after it is on disk: call it once the message is in `new/`/`cur/`, or
    /// removed) by appending `<bytes> <messages>` to `maildirsize` with one `O_APPEND` write.
    /// When the file is missing or its limits line is not `limit`, it is recalculated instead
    /// (the scan already sees the change). The append is not fsynced: a lost delta is corrected
    /// by the next recalculation.
    pub fn add(
        maildir: &Maildir,
        limit: impl Into<QuotaLimit>,
        bytes: i64,
        messages: i64,
    ) -> Result<()> {
        let limit = limit.into();
        let path = maildir.root().join(MAILDIRSIZE_FILE);
        let mut file = match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Self::recalculate(maildir, limit).map(drop),
            Err(e) => return Err(MaildirError::io("open", &path, e)),
        };
        let mut head = [0u8; 256];
        let n = file.read(&mut head).ctx("read", &path)?;
        let first = head[..n].split(|&b| b == b'\n').next().unwrap_or_default();
        if n == 0 || QuotaLimit::parse(&String::from_utf8_lossy(first)) != limit {
            drop(file);
            return Self::recalculate(maildir, limit).map(drop);
        }
        if bytes == 0 && messages == 0 {
            return Ok(());
        }
        let line = format!("{bytes} {messages}\n");
        let written = file.write(line.as_bytes()).ctx("append", &path)?;
        if written != line.len() {
            return Err(MaildirError::io(
                "append",
                &path,
                std::io::Error::from(std::io::ErrorKind::WriteZero),
            ));
        }
        Ok(())
    }

    /// True if a message of `incoming` bytes fits under `limit_bytes` (0 = unlimited).
    pub fn check(limit_bytes: u64, usage: Usage, incoming: u64) -> bool {
        limit_bytes == 0 || usage.bytes.saturating_add(incoming) <= limit_bytes
    }

    /// Scans the Maildir without touching `maildirsize`.
    pub fn scan(maildir: &Maildir) -> Result<Usage> {
        scan(maildir).map(|(u, _)| u)
    }
}

/// What identifies one content of `maildirsize`: every writer either appends (the length
/// grows) or replaces the file by a rename (another inode); the times catch anything else.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileId {
    fn of(md: &fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            mtime: (md.mtime(), md.mtime_nsec()),
            ctime: (md.ctime(), md.ctime_nsec()),
        }
    }
}

/// Per process: the last parse of each `maildirsize`, so that a check (every APPEND, every
/// delivery) whose file did not change since costs one `stat`.
static PARSED: LazyLock<Mutex<HashMap<PathBuf, (FileId, FileState)>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));
/// Files remembered at most (all forgotten when full: a forgotten one is read again).
const PARSED_MAX: usize = 4096;

/// Reads and judges `maildirsize`, from the cache when the file is unchanged.
fn read_file(path: &Path) -> Result<FileState> {
    let md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e) if is_not_found(&e) => return Ok(FileState::Invalid { limit: None }),
        Err(e) => return Err(MaildirError::io("stat", path, e)),
    };
    let id = FileId::of(&md);
    let cached = {
        let map = PARSED.lock().unwrap_or_else(|e| e.into_inner());
        map.get(path).filter(|(c, _)| *c == id).map(|(_, s)| *s)
    };
    if let Some(state) = cached {
        return Ok(match state {
            FileState::Valid {
                limit,
                usage,
                deltas,
                ..
            } => FileState::Valid {
                limit,
                usage,
                deltas,
                age: age_of(&md),
            },
            invalid => invalid,
        });
    }
    let (state, id) = parse_file(path)?;
    if let (Some(id), FileState::Valid { .. }) = (id, state) {
        let mut map = PARSED.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= PARSED_MAX && !map.contains_key(path) {
            map.clear();
        }
        map.insert(path.to_path_buf(), (id, state));
    }
    Ok(state)
}

/// True when `now` is at least 50 ms after the time `(sec, nsec)` (coarse file system
/// clocks tick every few milliseconds; a second for whole-second time stamps).
fn settled((sec, nsec): (i64, i64), now: SystemTime) -> bool {
    let (Ok(sec), Ok(nsec)) = (u64::try_from(sec), u32::try_from(nsec)) else {
        return false;
    };
    let margin = if nsec == 0 {
        Duration::from_millis(1050)
    } else {
        Duration::from_millis(50)
    };
    now.duration_since(SystemTime::UNIX_EPOCH)
        .is_ok_and(|n| n >= Duration::new(sec, nsec.min(999_999_999)) + margin)
}

fn age_of(md: &fs::Metadata) -> Duration {
    md.modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default()
}

/// Reads and judges `maildirsize`; also returns the identity of what was read (`None`: it
/// changed while being read).
fn parse_file(path: &Path) -> Result<(FileState, Option<FileId>)> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Ok((FileState::Invalid { limit: None }, None)),
        Err(e) => return Err(MaildirError::io("open", path, e)),
    };
    let now = SystemTime::now();
    let before = file.metadata().ok().map(|m| FileId::of(&m));
    let mut buf = Vec::with_capacity(1024);
    let read = (&mut file).take(MAX_FILE_SIZE as u64).read_to_end(&mut buf);
    let after = file.metadata().ok();
    let age = after.as_ref().map(age_of).unwrap_or_default();
    // Kept only when a later change must show in the times: the last one is at least a time
    // stamp granule old.
    let id = after
        .map(|m| FileId::of(&m))
        .filter(|a| Some(*a) == before && a.len == buf.len() as u64 && settled(a.ctime, now));
    Ok((judge(&buf, read.is_err(), age), id))
}

/// The state a `maildirsize` content stands for.
fn judge(buf: &[u8], read_failed: bool, age: Duration) -> FileState {
    // Ignore a last line without LF: an append may be in progress.
    let complete = buf
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&buf[..0], |p| &buf[..p]);
    let text = String::from_utf8_lossy(complete);
    let mut lines = text.split('\n');
    let limit = lines
        .next()
        .filter(|l| !l.is_empty())
        .map(QuotaLimit::parse);
    let Some(limit) = limit else {
        return FileState::Invalid { limit: None };
    };
    if read_failed || buf.len() >= MAX_FILE_SIZE || buf.contains(&0) {
        return FileState::Invalid { limit: Some(limit) };
    }
    let (mut bytes, mut count, mut deltas) = (0i64, 0i64, 0usize);
    for line in lines {
        let mut fields = line.split_whitespace().map(str::parse::<i64>);
        let (Some(Ok(b)), Some(Ok(c))) = (fields.next(), fields.next()) else {
            return FileState::Invalid { limit: Some(limit) };
        };
        bytes = bytes.saturating_add(b);
        count = count.saturating_add(c);
        deltas += 1;
    }
    if bytes < 0 || count < 0 {
        return FileState::Invalid { limit: Some(limit) };
    }
    let usage = Usage {
        bytes: bytes as u64,
        messages: count as u64,
    };
    FileState::Valid {
        limit,
        usage,
        deltas,
        age,
    }
}

/// Sums `cur/` and `new/` of every mailbox; also says whether no directory changed meanwhile.
fn scan(maildir: &Maildir) -> Result<(Usage, bool)> {
    let mut usage = Usage::default();
    let mut seen: Vec<(PathBuf, Option<SystemTime>)> = Vec::new();
    let mailboxes = match maildir.mailbox_dirs() {
        Ok(dirs) => dirs,
        // A Maildir not created yet (`Maildir::at`): empty, and no `maildirsize` to write.
        Err(MaildirError::Io { source, .. }) if is_not_found(&source) => {
            return Ok((usage, false));
        }
        Err(e) => return Err(e),
    };
    for mailbox in mailboxes {
        for sub in ["new", "cur"] {
            let dir = mailbox.join(sub);
            let before = fs::metadata(&dir).and_then(|m| m.modified()).ok();
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if is_not_found(&e) || e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
                    continue;
                }
                Err(e) => return Err(MaildirError::io("read directory", &dir, e)),
            };
            for entry in entries {
                let entry = entry.ctx("read directory", &dir)?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') {
                    continue;
                }
                let size = match size_field(&name, 'S') {
                    Some(s) => s,
                    None => match entry.metadata() {
                        Ok(md) => md.len(),
                        Err(e) if is_not_found(&e) => continue,
                        Err(e) => return Err(MaildirError::io("stat", entry.path(), e)),
                    },
                };
                usage.bytes += size;
                usage.messages += 1;
            }
            seen.push((dir, before));
        }
    }
    let unchanged = seen
        .iter()
        .all(|(dir, before)| fs::metadata(dir).and_then(|m| m.modified()).ok() == *before);
    Ok((usage, unchanged))
}
