//! Reading a message and the operations that change messages: flags, append, copy, expunge.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use crate::deliver::{crlf_to_lf, virtual_size};
use crate::error::{IoContext, MaildirError, Result};
use crate::filename::{self, size_field};
use crate::flags::Flags;
use crate::fsutil::{create_excl, fsync_dir, is_not_found};
use crate::index::{Msg, Rec};
use crate::quota::{MAILDIRSIZE_FILE, Quota, QuotaLimit};
use crate::store::Maildir;

use super::{FlagOp, Mailbox, MessageMeta, watch};

impl Mailbox {
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
        let mut follow = self.cur_as_recorded();
        let own = watch::Own::new(&cur);
        own.expect(&format!("{base}{old_suffix}"));
        own.expect(&format!("{base}{new_suffix}"));
        match fs::rename(cur.join(format!("{base}{old_suffix}")), &to) {
            Ok(()) => {}
            Err(e) if is_not_found(&e) => match self.locate(&base)? {
                Some(actual) => {
                    follow = false;
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
        self.flags_unsynced = true;
        let modseq = self.st.highest_modseq + 1;
        let mut recs = vec![Rec::Flags {
            uid,
            modseq,
            suffix: new_suffix,
        }];
        recs.extend(follow.then(|| self.followed_cur()).flatten());
        self.commit(recs, false)?;
        own.done();
        self.view_highest = self.view_highest.max(modseq);
        Ok(Some(&self.metas[i]))
    }

    /// Makes the flag changes of [`Mailbox::store_flags`] since the last call durable: one
    /// fsync of `cur/` for all of them (a flag lives in its file's name, so a rename that a
    /// power cut loses is a lost flag). IMAP's STORE calls it once before its tagged OK.
    pub fn sync_flag_changes(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.flags_unsynced) {
            return Ok(());
        }
        let cur = self.dir.join("cur");
        fsync_dir(&cur).inspect_err(|_| self.flags_unsynced = true)
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
        // The UID is returned only once the file, its name in `cur/` and the uidlist record
        // are all on disk, and the lock is held across the uidlist's sync only: `cur/` is
        // fsynced outside it. An append alone in this process has `cur/` fsynced by a helper
        // thread while it writes and fdatasyncs the uidlist record (the two flushes overlap);
        // with other appends in flight, after the lock is released (their directory syncs
        // then coalesce instead of queueing behind the lock). Before the directory sync a
        // crash can lose the link of a message that no APPEND acknowledged; other sessions
        // then see it expunged (its UID stays taken in the uidlist and is never given again).
        let cur = self.dir.join("cur");
        let in_flight = InFlight::enter();
        let (result, dir_synced) = std::thread::scope(|s| {
            if !in_flight.alone {
                return (self.append_locked(&base, &tmp, flags, vsize, || {}), None);
            }
            let (linked, go) = std::sync::mpsc::channel::<()>();
            let cur = &cur;
            let syncer = s.spawn(move || go.recv().ok().map(|()| fsync_dir(cur)));
            let result = self.append_locked(&base, &tmp, flags, vsize, || {
                let _ = linked.send(());
            });
            drop(linked);
            let dir_synced = syncer.join().unwrap_or_else(|_| {
                Some(Err(MaildirError::io(
                    "fsync directory",
                    cur,
                    io::Error::other("fsync thread panicked"),
                )))
            });
            (result, dir_synced)
        });
        let _ = fs::remove_file(&tmp);
        let (uid, name) = result?;
        if let Err(e) = dir_synced.unwrap_or_else(|| fsync_dir(&cur)) {
            // Not acknowledged: take the message back (found as an expunge by every session)
            // so that a client retrying the APPEND does not store it twice.
            let _ = fs::remove_file(cur.join(&name));
            return Err(e);
        }
        quota_adjust(&self.md, size as i64, 1);
        Ok(uid)
    }

    /// Under the lock: links the fsynced `tmp` into `cur/` (then calls `linked`), gives it a
    /// UID in the uidlist (fdatasynced) and logs it in the index. Returns the UID and the
    /// name in `cur/`; the caller has `cur/` fsynced (from `linked` on) before the UID may
    /// be reported.
    pub(super) fn append_locked(
        &mut self,
        base: &str,
        tmp: &Path,
        flags: &Flags,
        vsize: u64,
        linked: impl FnOnce(),
    ) -> Result<(u32, String)> {
        let _lock = self.lock()?;
        self.read_index(true)?;
        let letters = self.letters_locked(&flags.keywords)?;
        let suffix = build_suffix("", flags, &letters);
        let cur = self.dir.join("cur");
        let name = format!("{base}{suffix}");
        let path = cur.join(&name);
        let follow = self.cur_as_recorded();
        let own = watch::Own::new(&cur);
        own.expect(&name);
        match fs::hard_link(tmp, &path) {
            Ok(()) => {}
            Err(_) if fs::symlink_metadata(&path).is_err() => {
                fs::rename(tmp, &path).ctx("rename", &path)?;
            }
            Err(e) => return Err(MaildirError::io("link", &path, e)),
        }
        linked();
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
            return Ok((uid, name));
        }
        let modseq = self.st.highest_modseq + 1;
        let mut recs = vec![Rec::New(Msg {
            uid,
            modseq,
            size: vsize,
            date,
            base: base.to_owned(),
            suffix,
            cache_off: 0,
            cache_len: 0,
        })];
        recs.extend(follow.then(|| self.followed_cur()).flatten());
        self.commit(recs, false)?;
        own.done();
        Ok((uid, name))
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
        let own = watch::Own::new(&dest_cur);
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
            own.expect(&format!("{base}{suffix}"));
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
        // The copies keep the source's message GUID (OBJECTID's EMAILID: see `objectid`).
        let src_guids = self.mail_guids(uids).unwrap_or_default();
        let guids: Vec<Option<String>> =
            made.iter().map(|m| src_guids.get(&m.0).cloned()).collect();
        let new_uids = dest.assign_uids_with(&bases, &guids)?;
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
        if failure.is_none() {
            own.done();
        }
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
        let follow = self.cur_as_recorded();
        let own = watch::Own::new(&cur);
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
                own.expect(&name);
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
        // Every file was where the index said (no listing needed): the recorded time may
        // follow this change.
        if follow && listing.is_none() && failure.is_none() && count > 0 {
            recs.extend(self.followed_cur());
        }
        self.commit(recs, false)?;
        if failure.is_none() {
            own.done();
        }
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
}

/// LF line endings to CRLF (lone LFs only).
pub(super) fn lf_to_crlf(data: &[u8], hint: u64) -> Vec<u8> {
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
pub(super) fn build_suffix(old: &str, flags: &Flags, keyword_letters: &[u8]) -> String {
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

pub(super) fn has_keyword(list: &[String], kw: &str) -> bool {
    list.iter().any(|k| k.eq_ignore_ascii_case(kw))
}

pub(super) fn apply_op(cur: &Flags, op: FlagOp, f: &Flags) -> Flags {
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
pub(super) fn link_or_copy(from: &Path, to: &Path, tmp_dir: &Path, mode: u32) -> io::Result<()> {
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

/// Appends of this process between their file's sync and their directory's sync.
static APPENDS_IN_FLIGHT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// One append counted in [`APPENDS_IN_FLIGHT`]; `alone` when no other was.
struct InFlight {
    alone: bool,
}

impl InFlight {
    fn enter() -> Self {
        let before = APPENDS_IN_FLIGHT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self { alone: before == 0 }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        APPENDS_IN_FLIGHT.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
