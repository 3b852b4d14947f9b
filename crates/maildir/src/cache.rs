//! The `postern-cache` file: opaque per-message blobs (imapd keeps parsed ENVELOPE,
//! BODYSTRUCTURE and headers there).
//!
//! ```text
//! "PSTNCCH1" uid_validity u32, reserved u32          16-byte header
//! records: "PCB1" uid u32, len u32, check u32, blob   appended with O_APPEND, no lock
//! ```
//! The file is self-describing: a session learns of blobs that other sessions added by reading
//! the record headers appended since it last looked; the index snapshot stores the offsets
//! known at compaction time, so opening a mailbox only reads what came after. A blob is
//! verified (uid, length, check value) each time it is read; a damaged one is a cache miss.
//! The latest blob for a UID wins. Compaction (with the index, under the mailbox lock) copies
//! the live blobs into a new file and renames it over the old one.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{IoContext, MaildirError, Result};
use crate::fsutil::is_not_found;
use crate::index::hash64;

pub(crate) const CACHE_FILE: &str = "postern-cache";
pub(crate) const CACHE_TMP_FILE: &str = "postern-cache.tmp";
const MAGIC: &[u8; 8] = b"PSTNCCH1";
pub(crate) const HEADER_LEN: u64 = 16;
const REC_MAGIC: [u8; 4] = *b"PCB1";
const REC_HDR: u64 = 16;
/// Largest blob stored; larger ones are silently not cached.
pub(crate) const MAX_BLOB: usize = 16 << 20;

/// An open cache file.
#[derive(Debug)]
pub(crate) struct Cache {
    file: File,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// Record headers have been read up to here.
    pub(crate) pos: u64,
    /// An incomplete record at `pos` when the file had this size: if the file has grown
    /// past it by the next scan, the record is torn (a crash), not being written.
    stuck: Option<(u64, u64)>,
}

fn check(uid: u32, blob: &[u8]) -> u32 {
    (hash64(blob) as u32) ^ uid.rotate_left(7) ^ (blob.len() as u32)
}

fn header(uid_validity: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&uid_validity.to_le_bytes());
    h
}

fn record(uid: u32, blob: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(REC_HDR as usize + blob.len());
    r.extend_from_slice(&REC_MAGIC);
    r.extend_from_slice(&uid.to_le_bytes());
    r.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    r.extend_from_slice(&check(uid, blob).to_le_bytes());
    r.extend_from_slice(blob);
    r
}

impl Cache {
    /// Opens the mailbox's cache file when it exists with this UIDVALIDITY, or creates it when
    /// `create` is set and there is none. `Ok(None)`: no usable cache file (missing, header not
    /// written yet by its creator, or of another UIDVALIDITY).
    pub(crate) fn open(
        dir: &Path,
        uid_validity: u32,
        create: bool,
        mode: u32,
    ) -> Result<Option<Self>> {
        let path = dir.join(CACHE_FILE);
        let file = match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) && create => {
                match OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&path)
                {
                    Ok(mut f) => {
                        f.write_all(&header(uid_validity)).ctx("write", &path)?;
                        f
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(None),
                    Err(e) => return Err(MaildirError::io("create", &path, e)),
                }
            }
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(MaildirError::io("open", &path, e)),
        };
        let mut h = [0u8; HEADER_LEN as usize];
        if file.read_exact_at(&mut h, 0).is_err() || h != header(uid_validity) {
            return Ok(None);
        }
        let md = file.metadata().ctx("fstat", &path)?;
        Ok(Some(Self {
            file,
            dev: md.dev(),
            ino: md.ino(),
            pos: HEADER_LEN,
            stuck: None,
        }))
    }

    /// True when the file at the path is still the one open here.
    pub(crate) fn is_current(&self, dir: &Path) -> bool {
        fs::metadata(dir.join(CACHE_FILE)).is_ok_and(|m| m.ino() == self.ino && m.dev() == self.dev)
    }

    /// Appends a blob; returns its record offset.
    pub(crate) fn append(&mut self, uid: u32, blob: &[u8]) -> std::io::Result<u64> {
        let rec = record(uid, blob);
        // One write with O_APPEND: concurrent writers do not interleave on a local file
        // system, and the file offset afterwards is the end of our record.
        self.file.write_all(&rec)?;
        let end = self.file.stream_position()?;
        Ok(end - rec.len() as u64)
    }

    /// Reads and verifies the blob of `uid` whose record starts at `off`.
    pub(crate) fn get(&self, uid: u32, off: u64, len: u32) -> Option<Vec<u8>> {
        let mut buf = vec![0u8; REC_HDR as usize + len as usize];
        self.file.read_exact_at(&mut buf, off).ok()?;
        let u = u32::from_le_bytes(buf[4..8].try_into().ok()?);
        let l = u32::from_le_bytes(buf[8..12].try_into().ok()?);
        let c = u32::from_le_bytes(buf[12..16].try_into().ok()?);
        let blob = buf.split_off(REC_HDR as usize);
        (buf[..4] == REC_MAGIC && u == uid && l == len && c == check(uid, &blob)).then_some(blob)
    }

    /// Reads the record headers appended since `pos`, calling `on(uid, offset, len)` for each.
    /// Stops before an incomplete record (one being written); skips damaged bytes.
    pub(crate) fn scan(&mut self, mut on: impl FnMut(u32, u64, u32)) -> Result<()> {
        let size = self.file.metadata().map_or(0, |m| m.len());
        if size <= self.pos {
            return Ok(());
        }
        let mut rd = BufReader::with_capacity(64 * 1024, &self.file);
        rd.seek(SeekFrom::Start(self.pos))
            .map_err(|e| MaildirError::io("seek", Path::new(CACHE_FILE), e))?;
        let mut pos = self.pos;
        let mut hdr = [0u8; REC_HDR as usize];
        while size - pos >= REC_HDR {
            if rd.read_exact(&mut hdr).is_err() {
                break;
            }
            let uid = u32::from_le_bytes(hdr[4..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(hdr[8..12].try_into().unwrap_or_default());
            let incomplete = size - pos - REC_HDR < u64::from(len);
            let torn = incomplete && self.stuck.is_some_and(|(p, s)| p == pos && size > s);
            if hdr[..4] != REC_MAGIC || len as usize > MAX_BLOB || torn {
                // Damage (a torn write followed by others): look for the next record.
                match find_magic(&self.file, pos + 1, size) {
                    Some(p) => {
                        pos = p;
                        rd.seek(SeekFrom::Start(pos))
                            .map_err(|e| MaildirError::io("seek", Path::new(CACHE_FILE), e))?;
                        continue;
                    }
                    None => {
                        pos = size;
                        break;
                    }
                }
            }
            if incomplete {
                // Being written, or torn: decided at the next scan.
                self.stuck = Some((pos, size));
                break;
            }
            on(uid, pos, len);
            rd.seek_relative(i64::from(len))
                .map_err(|e| MaildirError::io("seek", Path::new(CACHE_FILE), e))?;
            pos += REC_HDR + u64::from(len);
        }
        self.pos = pos;
        Ok(())
    }

    /// Current file size.
    pub(crate) fn size(&self) -> u64 {
        self.file.metadata().map_or(0, |m| m.len())
    }

    /// Writes a new cache file with the given blobs (the caller holds the mailbox lock) and
    /// renames it over the old one; returns it and each blob's offset.
    pub(crate) fn rewrite(
        dir: &Path,
        uid_validity: u32,
        blobs: &[(u32, Vec<u8>)],
        mode: u32,
    ) -> Result<(Self, Vec<u64>)> {
        let tmp = dir.join(CACHE_TMP_FILE);
        let _ = fs::remove_file(&tmp);
        let mut data = header(uid_validity).to_vec();
        let mut offs = Vec::with_capacity(blobs.len());
        for (uid, blob) in blobs {
            offs.push(data.len() as u64);
            data.extend_from_slice(&record(*uid, blob));
        }
        let result = (|| {
            let mut f = OpenOptions::new()
                .read(true)
                .append(true)
                .create_new(true)
                .mode(mode)
                .open(&tmp)
                .ctx("create", &tmp)?;
            f.write_all(&data).ctx("write", &tmp)?;
            f.sync_data().ctx("fsync", &tmp)?;
            fs::rename(&tmp, dir.join(CACHE_FILE)).ctx("rename", &tmp)?;
            let md = f.metadata().ctx("fstat", &tmp)?;
            Ok(Self {
                file: f,
                dev: md.dev(),
                ino: md.ino(),
                pos: data.len() as u64,
                stuck: None,
            })
        })();
        match result {
            Ok(c) => Ok((c, offs)),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

fn find_magic(file: &File, from: u64, size: u64) -> Option<u64> {
    let mut pos = from;
    let mut buf = vec![0u8; 64 * 1024];
    while pos + 4 <= size {
        let n = ((size - pos) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], pos).ok()?;
        if let Some(i) = buf[..n].windows(4).position(|w| w == REC_MAGIC) {
            return Some(pos + i as u64);
        }
        if n < 4 {
            return None;
        }
        pos += (n - 3) as u64;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_scan_get_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cache::open(dir.path(), 5, false, 0o600).unwrap().is_none());
        let mut a = Cache::open(dir.path(), 5, true, 0o600).unwrap().unwrap();
        let mut b = Cache::open(dir.path(), 5, false, 0o600).unwrap().unwrap();
        assert!(Cache::open(dir.path(), 6, false, 0o600).unwrap().is_none());
        let o1 = a.append(1, b"one").unwrap();
        let o2 = b.append(2, b"two!").unwrap();
        assert_eq!(a.get(2, o2, 4).as_deref(), Some(&b"two!"[..]));
        assert_eq!(a.get(1, o2, 4), None, "wrong uid");
        // A torn write, then another record.
        let mut raw = OpenOptions::new()
            .append(true)
            .open(dir.path().join(CACHE_FILE))
            .unwrap();
        raw.write_all(b"PCB1\x03\0\0\0\xff\xff\0\0junk").unwrap();
        let o3 = a.append(3, b"three").unwrap();
        let mut seen = Vec::new();
        b.scan(|u, o, l| seen.push((u, o, l))).unwrap();
        assert_eq!(seen, [(1, o1, 3), (2, o2, 4)], "stops at the torn record");
        let o4 = a.append(4, b"four").unwrap();
        b.scan(|u, o, l| seen.push((u, o, l))).unwrap();
        assert_eq!(*seen.last().unwrap(), (4, o4, 4));
        assert!(seen.contains(&(3, o3, 5)), "{seen:?}");
        assert_eq!(b.get(3, o3, 5).as_deref(), Some(&b"three"[..]));
        let (c, offs) = Cache::rewrite(
            dir.path(),
            5,
            &[(1, b"one".to_vec()), (3, b"3".to_vec())],
            0o600,
        )
        .unwrap();
        assert_eq!(c.get(3, offs[1], 1).as_deref(), Some(&b"3"[..]));
        assert!(!a.is_current(dir.path()) && c.is_current(dir.path()));
    }
}
