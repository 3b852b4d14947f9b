//! The index (`postern-index`): loading it, the change log (reading, applying and
//! appending records), snapshots, compaction, and rebuilding it from the uidlist and a scan.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::cache::{self, Cache};
use crate::error::{IoContext, MaildirError, Result};
use crate::fsutil::{fsync_dir, is_not_found, now_secs};
use crate::index::{
    DirState, Header, INDEX_FILE, INDEX_TMP_FILE, Msg, Rec, Snapshot, decode_recs, decode_snapshot,
    encode_rec, encode_snapshot,
};
use crate::uidlist::{self, Tracker, Uidlist, UidlistRecord};

use super::scan::split_name;
use super::{
    CACHE_REWRITE_MIN, CACHE_TAIL_COMPACT, COMPACT_MIN_LOG, EXPUNGE_HISTORY, FileInfo, IndexFile,
    Mailbox, MessageMeta, Shared,
};

impl Mailbox {
    /// First load: index (rebuilt when needed), uidlist agreement, then a refresh.
    pub(super) fn load(&mut self) -> Result<()> {
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
    pub(super) fn read_index(&mut self, locked: bool) -> Result<bool> {
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

    pub(super) fn index_unusable(&mut self, locked: bool) -> Result<bool> {
        if !locked {
            return Ok(false);
        }
        self.rebuild_locked()?;
        Ok(true)
    }

    /// Replaces the state with a snapshot; after the first load, the differences become
    /// pending news, expunges and changes.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot) {
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
    pub(super) fn apply(&mut self, rec: Rec, report: bool) {
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
    pub(super) fn commit(&mut self, recs: Vec<Rec>, report: bool) -> Result<()> {
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

    pub(super) fn maybe_compact(&mut self) -> Result<()> {
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
    pub(super) fn snapshot(&self) -> Snapshot {
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
    pub(super) fn compact(&mut self) -> Result<()> {
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
    pub(super) fn write_index(&mut self, snap: &Snapshot) -> Result<()> {
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
    pub(super) fn rebuild_locked(&mut self) -> Result<()> {
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
        let listed = names.len();
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| seen.insert(split_name(n).0.to_owned()))
            .collect();
        let no_dups = names.len() == listed;
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
        if no_dups {
            // Duplicates left out are in `cur/` but not in the index: the next sync scans.
            super::watch::confirm(&self.dir.join("cur"));
        }
        Ok(())
    }

    /// Writes a uidlist from the index state (it was missing or broken).
    pub(super) fn recreate_uidlist_from_state(&mut self) -> Result<()> {
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
}

pub(super) fn index_err(dir: &Path) -> MaildirError {
    MaildirError::io(
        "use index",
        dir.join(INDEX_FILE),
        io::Error::other("index not open"),
    )
}
