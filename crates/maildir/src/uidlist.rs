//! Dovecot's `dovecot-uidlist`: the IMAP UIDs of a Maildir's messages.
//!
//! # Format (Dovecot `maildir-uidlist.c`)
//! Version 3, written by Dovecot 1.1 and later:
//! ```text
//! 3 V1700000000 N43 G0123456789abcdef0123456789abcdef
//! 1 :1700000000.M1P2.host,S=1200,W=1230
//! 2 W4711 GAB12… :1700000001.M5P2.host,S=4650
//! ```
//! The header is the version and then space-separated `<key><value>` fields in any order:
//! `V` UIDVALIDITY, `N` next UID, `G` mailbox GUID (32 hex digits); unknown ones are kept.
//! Each record is `<uid> [<key><value> …] :<file name base>`, where the base is the file name
//! up to the `:` of the info part. Record extension keys are `A`..`Z` (`W` virtual size, `S`
//! physical size, `G` message GUID, `P` POP3 UIDL, `O` POP3 order). UIDs ascend. The next UID
//! is the larger of `N` and the last UID + 1: Dovecot appends records without rewriting the
//! header.
//!
//! Version 1 (Dovecot 1.0, Courier's `courierimapuiddb`) is `1 <uidvalidity> <nextuid>` then
//! `<uid> <file name>` lines; it is read, and written back as version 3.
//!
//! # Writing
//! Only while holding the `dovecot-uidlist.lock` dotlock (see [`crate::dotlock`]). Like
//! Dovecot, new records are appended to the file (one write, then `fdatasync`); the whole file
//! is rewritten into `dovecot-uidlist.tmp` and renamed over it when it must change otherwise
//! (missing, older version, no GUID, a torn last line) or when a quarter of its records are of
//! expunged messages.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{IoContext, MaildirError, Result};
use crate::fsutil::{fsync_dir, is_not_found, now_secs};

pub use crate::keywords::UIDLIST_FILE;

/// The temporary file a full rewrite goes through (Dovecot's name).
pub const UIDLIST_TMP_FILE: &str = "dovecot-uidlist.tmp";
/// The per-user UIDVALIDITY counter in the Maildir root (Dovecot's `mailbox-uidvalidity.c`).
pub const UIDVALIDITY_FILE: &str = "dovecot-uidvalidity";

/// A `dovecot-uidlist` that could not be used at all (its header is broken).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broken dovecot-uidlist: {0}")]
pub struct UidlistError(pub String);

/// One message line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidlistRecord {
    /// The UID.
    pub uid: u32,
    /// Extension fields as written (`W1234`, `GABC…`), in file order.
    pub ext: Vec<String>,
    /// The file name base (without the `:2,…` info part).
    pub base: String,
}

impl UidlistRecord {
    /// A record without extension fields.
    pub fn new(uid: u32, base: impl Into<String>) -> Self {
        Self {
            uid,
            ext: Vec::new(),
            base: base.into(),
        }
    }

    /// The value of extension field `key` (`b'W'`, …).
    pub fn ext_value(&self, key: u8) -> Option<&str> {
        self.ext
            .iter()
            .find(|e| e.as_bytes().first() == Some(&key))
            .map(|e| &e[1..])
    }

    /// The virtual (CRLF) size from the `W` field.
    pub fn vsize(&self) -> Option<u64> {
        self.ext_value(b'W').and_then(|v| v.parse().ok())
    }

    /// The record as a version 3 line, with its LF.
    pub fn line(&self) -> String {
        let mut s = self.uid.to_string();
        for e in &self.ext {
            s.push(' ');
            s.push_str(e);
        }
        s.push_str(" :");
        s.push_str(&self.base);
        s.push('\n');
        s
    }
}

/// A parsed `dovecot-uidlist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uidlist {
    /// The file's version (1 or 3); files are always written as 3.
    pub version: u32,
    /// UIDVALIDITY.
    pub uid_validity: u32,
    /// The next UID to assign: the larger of the header's `N` and the last UID + 1.
    pub next_uid: u32,
    /// The mailbox GUID (32 hex digits), when the header has one.
    pub guid: Option<String>,
    /// Header fields other than `V`, `N` and `G`, kept as they are.
    pub header_ext: Vec<String>,
    /// The records, ascending by UID, at most one per file name base.
    pub records: Vec<UidlistRecord>,
    /// Malformed, duplicate or out-of-order lines that were dropped or fixed up: the file
    /// should be rewritten.
    pub problems: usize,
}

impl Uidlist {
    /// An empty version 3 list with a new random mailbox GUID.
    pub fn new(uid_validity: u32) -> Self {
        Self {
            version: 3,
            uid_validity,
            next_uid: 1,
            guid: Some(random_guid()),
            header_ext: Vec::new(),
            records: Vec::new(),
            problems: 0,
        }
    }

    /// Parses a whole file. Lines that do not parse are skipped (counted in
    /// [`Uidlist::problems`]); a last line without LF (a write in progress) is ignored.
    /// Fails only when the header is unusable.
    pub fn parse(data: &[u8]) -> Result<Self, UidlistError> {
        let complete = complete_part(data);
        let text = String::from_utf8_lossy(complete);
        let mut lines = text.split_terminator('\n');
        let header = lines
            .next()
            .ok_or_else(|| UidlistError("empty file".into()))?;
        let mut list = parse_header(header)?;
        let mut state = RecordParser::new(list.version);
        for line in lines {
            state.line(line, &mut list.records);
        }
        list.problems += state.finish(&mut list.records);
        if let Some(last) = list.records.last() {
            list.next_uid = list.next_uid.max(last.uid.saturating_add(1));
        }
        Ok(list)
    }

    /// Reads the uidlist of a mailbox directory: `Ok(None)` when there is none,
    /// `Ok(Some(Err(..)))` when its header is unusable.
    pub fn load(mailbox_dir: &Path) -> Result<Option<Result<Self, UidlistError>>> {
        let path = mailbox_dir.join(UIDLIST_FILE);
        match fs::read(&path) {
            Ok(data) => Ok(Some(Self::parse(&data))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(MaildirError::io("read", &path, e)),
        }
    }

    /// The header line, with its LF.
    pub fn header_line(&self) -> String {
        let mut s = format!("3 V{} N{}", self.uid_validity, self.next_uid);
        if let Some(g) = &self.guid {
            s.push_str(" G");
            s.push_str(g);
        }
        for e in &self.header_ext {
            s.push(' ');
            s.push_str(e);
        }
        s.push('\n');
        s
    }

    /// The whole file in version 3 format.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = self.header_line();
        for r in &self.records {
            s.push_str(&r.line());
        }
        s.into_bytes()
    }

    /// The record of a file name base.
    pub fn find_base(&self, base: &str) -> Option<&UidlistRecord> {
        self.records.iter().find(|r| r.base == base)
    }
}

/// A fresh random mailbox GUID in Dovecot's 32-hex-digit form.
pub fn random_guid() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The bytes up to and including the last LF.
fn complete_part(data: &[u8]) -> &[u8] {
    data.iter()
        .rposition(|&b| b == b'\n')
        .map_or(&data[..0], |p| &data[..=p])
}

fn parse_header(line: &str) -> Result<Uidlist, UidlistError> {
    let mut parts = line.splitn(2, ' ');
    let version: u32 = parts
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| UidlistError("invalid version number".into()))?;
    let rest = parts.next().unwrap_or("");
    let mut list = Uidlist {
        version,
        uid_validity: 0,
        next_uid: 0,
        guid: None,
        header_ext: Vec::new(),
        records: Vec::new(),
        problems: 0,
    };
    match version {
        1 => {
            let mut f = rest.split_whitespace().map(str::parse::<u32>);
            match (f.next(), f.next()) {
                (Some(Ok(v)), Some(Ok(n))) => {
                    list.uid_validity = v;
                    list.next_uid = n;
                }
                _ => return Err(UidlistError("corrupted version 1 header".into())),
            }
        }
        3 => {
            for field in rest.split(' ').filter(|f| !f.is_empty()) {
                // The key is one character; a non-ASCII one (from a damaged file) is kept
                // as an unknown field, never split inside.
                let key_len = field.chars().next().map_or(0, char::len_utf8);
                let (key, value) = field.split_at(key_len);
                match key {
                    "V" => list.uid_validity = value.parse().unwrap_or(0),
                    "N" => list.next_uid = value.parse().unwrap_or(0),
                    "G" if value.len() == 32 && value.bytes().all(|b| b.is_ascii_hexdigit()) => {
                        list.guid = Some(value.to_ascii_lowercase());
                    }
                    "G" => return Err(UidlistError(format!("invalid mailbox GUID {value:?}"))),
                    _ => list.header_ext.push(field.to_owned()),
                }
            }
        }
        v => return Err(UidlistError(format!("unsupported version {v}"))),
    }
    if list.uid_validity == 0 || list.next_uid == 0 {
        return Err(UidlistError(format!(
            "broken header (uidvalidity={}, next_uid={})",
            list.uid_validity, list.next_uid
        )));
    }
    Ok(list)
}

/// Parses record lines, possibly in several pieces (an appended tail).
pub(crate) struct RecordParser {
    version: u32,
    prev_uid: u32,
    unsorted: bool,
    pub(crate) problems: usize,
}

impl RecordParser {
    pub(crate) fn new(version: u32) -> Self {
        Self {
            version,
            prev_uid: 0,
            unsorted: false,
            problems: 0,
        }
    }

    /// Continues after records up to `prev_uid`.
    pub(crate) fn resume(version: u32, prev_uid: u32) -> Self {
        Self {
            prev_uid,
            ..Self::new(version)
        }
    }

    /// Parses one line (without LF) into `out`.
    pub(crate) fn line(&mut self, line: &str, out: &mut Vec<UidlistRecord>) {
        match parse_record(line, self.version) {
            Some(rec) => {
                if rec.uid <= self.prev_uid {
                    self.unsorted = true;
                }
                self.prev_uid = self.prev_uid.max(rec.uid);
                out.push(rec);
            }
            None if line.trim().is_empty() => {}
            None => self.problems += 1,
        }
    }

    /// The highest UID seen.
    pub(crate) fn prev_uid(&self) -> u32 {
        self.prev_uid
    }

    /// Sorts and removes duplicates when lines were out of order; returns the problem count.
    fn finish(self, out: &mut Vec<UidlistRecord>) -> usize {
        let mut problems = self.problems;
        if self.unsorted {
            problems += 1;
            // Later lines win, as in Dovecot: stable sort, then keep the last of equal UIDs.
            out.sort_by_key(|r| r.uid);
            let mut dedup: Vec<UidlistRecord> = Vec::with_capacity(out.len());
            for r in out.drain(..) {
                match dedup.last_mut() {
                    Some(last) if last.uid == r.uid => *last = r,
                    _ => dedup.push(r),
                }
            }
            *out = dedup;
        }
        // One record per base: the later (higher UID) one wins, as in Dovecot.
        let mut seen = HashSet::with_capacity(out.len());
        let before = out.len();
        let mut keep = vec![true; out.len()];
        for (i, r) in out.iter().enumerate().rev() {
            if !seen.insert(r.base.as_str()) {
                keep[i] = false;
            }
        }
        if seen.len() != before {
            problems += before - seen.len();
            let mut i = 0;
            out.retain(|_| {
                i += 1;
                keep[i - 1]
            });
        }
        problems
    }
}

/// Parses one record line; `None` when malformed.
pub(crate) fn parse_record(line: &str, version: u32) -> Option<UidlistRecord> {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || line.as_bytes().get(digits) != Some(&b' ') {
        return None;
    }
    let uid: u32 = line[..digits]
        .parse()
        .ok()
        .filter(|&u| u != 0 && u != u32::MAX)?;
    let mut rest = line[digits..].trim_start_matches(' ');
    let mut ext = Vec::new();
    if version == 3 {
        while !rest.is_empty() && !rest.starts_with(':') {
            let end = rest.find(' ').unwrap_or(rest.len());
            let field = &rest[..end];
            if field.as_bytes()[0].is_ascii_uppercase() {
                ext.push(field.to_owned());
            }
            rest = rest[end..].trim_start_matches(' ');
        }
        rest = rest.strip_prefix(':').unwrap_or(rest);
    }
    let base = rest.split(':').next().unwrap_or("");
    if base.is_empty() || base.contains('/') {
        return None;
    }
    Some(UidlistRecord {
        uid,
        ext,
        base: base.to_owned(),
    })
}

/// Reads only the UIDVALIDITY from a mailbox's uidlist header (cheap: the first line).
/// `Ok(None)` when the file is missing or its header is broken.
pub(crate) fn read_uid_validity(mailbox_dir: &Path) -> Result<Option<u32>> {
    let path = mailbox_dir.join(UIDLIST_FILE);
    let mut f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(MaildirError::io("open", &path, e)),
    };
    let mut buf = vec![0u8; 1024];
    let mut n = 0;
    while n < buf.len() {
        let r = f.read(&mut buf[n..]).ctx("read", &path)?;
        if r == 0 {
            break;
        }
        n += r;
        if buf[..n].contains(&b'\n') {
            break;
        }
    }
    let Some(end) = buf[..n].iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    Ok(parse_header(&String::from_utf8_lossy(&buf[..end]))
        .ok()
        .map(|l| l.uid_validity))
}

/// What we know about the uidlist file on disk, for reading only what was appended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    /// False until the file has been read (or when it is missing).
    pub(crate) loaded: bool,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// Bytes parsed: the end of the last complete line.
    pub(crate) read_len: u64,
    /// The file's size when last looked at (a larger one than `read_len` has a torn line).
    pub(crate) size: u64,
    pub(crate) version: u32,
    pub(crate) has_guid: bool,
    pub(crate) uid_validity: u32,
    pub(crate) next_uid: u32,
    pub(crate) prev_uid: u32,
    /// Record lines in the file.
    pub(crate) lines: usize,
    /// Lines that did not parse or were out of order.
    pub(crate) problems: usize,
}

/// How [`Tracker::refresh`] found the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refreshed {
    /// No uidlist.
    Missing,
    /// The header is unusable.
    Broken,
    /// Same file, nothing new.
    Unchanged,
    /// Same file, records appended (given to the callback).
    Appended,
    /// Read from the start (all records given to the callback).
    Reloaded,
}

impl Tracker {
    /// Brings the tracker up to date; every record read is passed to `on_record`.
    pub(crate) fn refresh(
        &mut self,
        mailbox_dir: &Path,
        mut on_record: impl FnMut(&UidlistRecord),
    ) -> Result<Refreshed> {
        let path = mailbox_dir.join(UIDLIST_FILE);
        let mut f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => {
                *self = Self::default();
                return Ok(Refreshed::Missing);
            }
            Err(e) => return Err(MaildirError::io("open", &path, e)),
        };
        let md = f.metadata().ctx("fstat", &path)?;
        if self.loaded && md.ino() == self.ino && md.dev() == self.dev && md.len() >= self.read_len
        {
            if md.len() == self.read_len {
                self.size = md.len();
                return Ok(Refreshed::Unchanged);
            }
            let mut tail = vec![0u8; (md.len() - self.read_len) as usize];
            f.read_exact_at(&mut tail, self.read_len)
                .ctx("read", &path)?;
            let complete = complete_part(&tail);
            let text = String::from_utf8_lossy(complete);
            let mut parser = RecordParser::resume(self.version, self.prev_uid);
            let mut recs = Vec::new();
            for line in text.split_terminator('\n') {
                parser.line(line, &mut recs);
            }
            for r in &recs {
                on_record(r);
            }
            self.lines += recs.len();
            self.problems += parser.problems;
            self.prev_uid = parser.prev_uid();
            self.next_uid = self.next_uid.max(self.prev_uid.saturating_add(1));
            self.read_len += complete.len() as u64;
            self.size = md.len();
            return Ok(if recs.is_empty() {
                Refreshed::Unchanged
            } else {
                Refreshed::Appended
            });
        }
        let mut data = Vec::with_capacity(md.len() as usize);
        f.read_to_end(&mut data).ctx("read", &path)?;
        let Ok(list) = Uidlist::parse(&data) else {
            *self = Self::default();
            return Ok(Refreshed::Broken);
        };
        for r in &list.records {
            on_record(r);
        }
        *self = Self {
            loaded: true,
            dev: md.dev(),
            ino: md.ino(),
            read_len: complete_part(&data).len() as u64,
            size: data.len() as u64,
            version: list.version,
            has_guid: list.guid.is_some(),
            uid_validity: list.uid_validity,
            next_uid: list.next_uid,
            prev_uid: list.records.last().map_or(0, |r| r.uid),
            lines: list.records.len(),
            problems: list.problems,
        };
        Ok(Refreshed::Reloaded)
    }

    /// True when records can be appended to the file as it is (the caller holds the lock
    /// and has just refreshed): version 3 with a GUID, no torn last line, no problems.
    pub(crate) fn can_append(&self) -> bool {
        self.loaded
            && self.version == 3
            && self.has_guid
            && self.size == self.read_len
            && self.problems == 0
    }

    /// Appends record lines (the caller holds the lock and checked [`Tracker::can_append`]),
    /// with one write and an `fdatasync`.
    pub(crate) fn append(&mut self, mailbox_dir: &Path, records: &[UidlistRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let path = mailbox_dir.join(UIDLIST_FILE);
        let mut text = String::new();
        for r in records {
            text.push_str(&r.line());
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(&path)
            .ctx("open", &path)?;
        let md = f.metadata().ctx("fstat", &path)?;
        if md.ino() != self.ino || md.len() != self.read_len {
            return Err(MaildirError::io(
                "append",
                &path,
                std::io::Error::other("dovecot-uidlist changed under our lock"),
            ));
        }
        f.write_all(text.as_bytes()).ctx("write", &path)?;
        f.sync_data().ctx("fdatasync", &path)?;
        self.read_len += text.len() as u64;
        self.size = self.read_len;
        self.lines += records.len();
        let last = records.iter().map(|r| r.uid).max().unwrap_or(0);
        self.prev_uid = self.prev_uid.max(last);
        self.next_uid = self.next_uid.max(last.saturating_add(1));
        Ok(())
    }

    /// Rewrites the whole file (the caller holds the lock): `dovecot-uidlist.tmp`, fsync,
    /// rename, fsync of the directory.
    pub(crate) fn recreate(
        &mut self,
        mailbox_dir: &Path,
        list: &Uidlist,
        file_mode: u32,
    ) -> Result<()> {
        let tmp = mailbox_dir.join(UIDLIST_TMP_FILE);
        let path = mailbox_dir.join(UIDLIST_FILE);
        let data = list.to_bytes();
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(file_mode)
                .open(&tmp)
                .ctx("create", &tmp)?;
            f.write_all(&data).ctx("write", &tmp)?;
            f.sync_all().ctx("fsync", &tmp)?;
            let md = f.metadata().ctx("fstat", &tmp)?;
            fs::rename(&tmp, &path).ctx("rename", &path)?;
            Ok(md)
        })();
        let md = match result {
            Ok(md) => md,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        };
        fsync_dir(mailbox_dir)?;
        *self = Self {
            loaded: true,
            dev: md.dev(),
            ino: md.ino(),
            read_len: data.len() as u64,
            size: data.len() as u64,
            version: 3,
            has_guid: list.guid.is_some(),
            uid_validity: list.uid_validity,
            next_uid: list.next_uid,
            prev_uid: list.records.last().map_or(0, |r| r.uid),
            lines: list.records.len(),
            problems: 0,
        };
        Ok(())
    }
}

/// The next UIDVALIDITY for a new mailbox, shared with Dovecot through the Maildir root's
/// `dovecot-uidvalidity` file (`%08x`) and its `dovecot-uidvalidity.<hex>` marker, whose
/// atomic rename claims a value: at least the current time, always larger than the last one.
pub(crate) fn next_uid_validity(root: &Path, file_mode: u32) -> u32 {
    let path = root.join(UIDVALIDITY_FILE);
    let now = now_secs() as u32;
    let current = fs::read(&path).ok().and_then(|b| {
        let s = String::from_utf8_lossy(&b);
        u32::from_str_radix(s.trim(), 16).ok()
    });
    let marker = |v: u32| root.join(format!("{UIDVALIDITY_FILE}.{v:08x}"));
    let mut value = match current {
        Some(cur) => {
            // Claim cur+1 (or later) by renaming the marker, as Dovecot does.
            let mut v = cur;
            let mut claimed = None;
            for _ in 0..10 {
                let next = v.wrapping_add(1).max(1);
                if fs::rename(marker(v), marker(next)).is_ok() {
                    claimed = Some(next);
                    break;
                }
                v = next;
            }
            claimed.unwrap_or_else(|| cur.wrapping_add(1).max(now))
        }
        None => now.max(1),
    };
    if current.is_none() {
        // No counter yet: start one at the current time.
        for _ in 0..10 {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o444)
                .open(marker(value))
            {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => value += 1,
                Err(_) => break,
            }
        }
    }
    if let Ok(mut f) = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(file_mode)
        .open(&path)
    {
        let _ = f.write_all_at(format!("{value:08x}").as_bytes(), 0);
        let _ = f.flush();
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as Dovecot 2.3 writes it: header fields, extension fields, appended records
    /// after a stale `N`.
    const DOVECOT: &str = "3 V1699999999 N5 G3f1e0c2a9b8d7e6f5a4b3c2d1e0f9a8b X42\n\
        1 :1700000000.M100P1.mail,S=120,W=124\n\
        3 W2048 S2000 :1700000001.M200P1.mail,S=2000\n\
        4 GAbCd :1700000002.M300P1.mail\n\
        7 :1700000003.M400P1.mail,S=5,W=6\n";

    #[test]
    fn parses_dovecot_files() {
        let l = Uidlist::parse(DOVECOT.as_bytes()).unwrap();
        assert_eq!(l.version, 3);
        assert_eq!(l.uid_validity, 1_699_999_999);
        assert_eq!(l.next_uid, 8, "N is stale after appends");
        assert_eq!(l.guid.as_deref(), Some("3f1e0c2a9b8d7e6f5a4b3c2d1e0f9a8b"));
        assert_eq!(l.header_ext, vec!["X42".to_owned()]);
        assert_eq!(
            l.records.iter().map(|r| r.uid).collect::<Vec<_>>(),
            [1, 3, 4, 7]
        );
        assert_eq!(l.records[1].vsize(), Some(2048));
        assert_eq!(l.records[1].ext, vec!["W2048", "S2000"]);
        assert_eq!(l.records[2].base, "1700000002.M300P1.mail");
        assert_eq!(l.problems, 0);
        assert_eq!(
            l.find_base("1700000003.M400P1.mail,S=5,W=6").unwrap().uid,
            7
        );
    }

    #[test]
    fn round_trip() {
        let l = Uidlist::parse(DOVECOT.as_bytes()).unwrap();
        let again = Uidlist::parse(&l.to_bytes()).unwrap();
        assert_eq!(l.records, again.records);
        assert_eq!(
            (again.uid_validity, again.next_uid, again.guid.clone()),
            (l.uid_validity, l.next_uid, l.guid.clone())
        );
        assert_eq!(again.header_ext, l.header_ext);
        let text = String::from_utf8(l.to_bytes()).unwrap();
        assert!(text.starts_with("3 V1699999999 N8 G3f1e0c2a9b8d7e6f5a4b3c2d1e0f9a8b X42\n"));
        assert!(text.contains("\n3 W2048 S2000 :1700000001.M200P1.mail,S=2000\n"));
        let mut n = Uidlist::new(42);
        n.records.push(UidlistRecord::new(1, "a.b.c"));
        n.next_uid = 2;
        assert_eq!(Uidlist::parse(&n.to_bytes()).unwrap(), n);
    }

    #[test]
    fn version_1_and_damage() {
        let v1 = "1 1234 10\n1 1700000000.1.host:2,S\n2 1700000001.2.host\n";
        let l = Uidlist::parse(v1.as_bytes()).unwrap();
        assert_eq!((l.version, l.uid_validity, l.next_uid), (1, 1234, 10));
        assert_eq!(l.records[0].base, "1700000000.1.host");
        assert_eq!(l.records[1].uid, 2);

        let bad = "3 V5 N3 G00000000000000000000000000000000\n1 :a\nxx\n0 :zero\n5 :../evil/x\n2 :b\n1 :c\n3 :b\n4 :torn";
        let l = Uidlist::parse(bad.as_bytes()).unwrap();
        assert_eq!(
            l.records
                .iter()
                .map(|r| (r.uid, r.base.as_str()))
                .collect::<Vec<_>>(),
            [(1, "c"), (3, "b")]
        );
        assert!(l.problems > 0);
        assert_eq!(l.next_uid, 4);

        for broken in [
            "",
            "x V1 N1\n",
            "3 N5\n",
            "3 V1 N0\n",
            "2 1 1\n",
            "3 V1 N2 Gxyz\n",
        ] {
            assert!(Uidlist::parse(broken.as_bytes()).is_err(), "{broken:?}");
        }
    }

    #[test]
    fn tracker_reads_appended_tails() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(UIDLIST_FILE), DOVECOT).unwrap();
        let mut t = Tracker::default();
        let mut seen = Vec::new();
        assert_eq!(
            t.refresh(dir.path(), |r| seen.push(r.uid)).unwrap(),
            Refreshed::Reloaded
        );
        assert_eq!(seen, [1, 3, 4, 7]);
        assert!(t.can_append());
        t.append(dir.path(), &[UidlistRecord::new(8, "new.one")])
            .unwrap();
        assert_eq!(t.next_uid, 9);
        // Dovecot appends another one, and half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(UIDLIST_FILE))
            .unwrap();
        f.write_all(b"9 W10 :dove.cot\n10 :half").unwrap();
        seen.clear();
        assert_eq!(
            t.refresh(dir.path(), |r| seen.push(r.uid)).unwrap(),
            Refreshed::Appended
        );
        assert_eq!(seen, [9]);
        assert!(!t.can_append(), "torn last line");
        let l = Uidlist::parse(&fs::read(dir.path().join(UIDLIST_FILE)).unwrap()).unwrap();
        assert_eq!(l.records.last().unwrap().uid, 9);
        t.recreate(dir.path(), &l, 0o600).unwrap();
        assert!(t.can_append());
        assert_eq!(read_uid_validity(dir.path()).unwrap(), Some(1_699_999_999));
        assert!(!dir.path().join(UIDLIST_TMP_FILE).exists());
    }

    #[test]
    fn uid_validity_counter_increases() {
        let dir = tempfile::tempdir().unwrap();
        let a = next_uid_validity(dir.path(), 0o600);
        let b = next_uid_validity(dir.path(), 0o600);
        let c = next_uid_validity(dir.path(), 0o600);
        assert!(a >= now_secs() as u32 - 5);
        assert!(b > a && c > b, "{a} {b} {c}");
        let s = fs::read_to_string(dir.path().join(UIDVALIDITY_FILE)).unwrap();
        assert_eq!(s, format!("{c:08x}"));
        assert!(
            dir.path()
                .join(format!("{UIDVALIDITY_FILE}.{c:08x}"))
                .exists()
        );
    }
}
