//! Syncing with the directories: noticing a change by the `cur/` and `new/` mtimes, moving
//! `new/` into `cur/`, and logging what others added, renamed or removed.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::deliver::virtual_size;
use crate::error::{IoContext, MaildirError, Result};
use crate::filename::{self, size_field};
use crate::fsutil::is_not_found;
use crate::index::{DirState, Rec, Stamp};

use super::{CACHE_TAIL_COMPACT, Mailbox, SAFE_MARGIN, watch};

impl Mailbox {
    pub(super) fn refresh(&mut self) -> Result<()> {
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
            if watch::is_clean(&self.dir.join("cur")) {
                self.pickup_locked()?;
            } else {
                self.scan_locked()?;
            }
        }
        Ok(())
    }

    /// With a clean watch on `cur/` (see [`watch`]: `cur/` holds what the index says): moves
    /// what `new/` holds into `cur/` and logs it, without listing `cur/` — the cost of new
    /// mail is the new mail, not the mailbox. Falls back to [`Self::scan_locked`] when a moved
    /// file's base is already known (a duplicate) or the watch saw someone else's change.
    pub(super) fn pickup_locked(&mut self) -> Result<()> {
        let cur = self.dir.join("cur");
        let new = self.dir.join("new");
        let own = watch::Own::new(&cur);
        let mut moved = Vec::new();
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
                own.expect(&target);
                match fs::rename(new.join(&n), cur.join(&target)) {
                    Ok(()) => moved.push(target),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(MaildirError::io("rename", new.join(&n), e)),
                }
            }
        }
        let (cur_stamp, cur_now) = stat_dir(&cur)?;
        if !watch::is_clean(&cur) || self.knows_a_base_of(&moved) {
            drop(own);
            return self.scan_locked();
        }
        self.reload_keywords();
        let mut modseq = self.st.highest_modseq;
        let mut recs = Vec::new();
        if !moved.is_empty() {
            self.refresh_uidlist()?;
            if self.uidlist.loaded && self.uidlist.uid_validity != self.st.uid_validity {
                drop(own);
                return self.scan_locked();
            }
            let uid_next = self.st.uid_next;
            let news = self.resolve_new(moved, &mut modseq, None, uid_next)?;
            recs.extend(news.into_iter().map(Rec::New));
        }
        if self.uidlist.loaded && self.uidlist.next_uid > self.st.uid_next {
            recs.push(Rec::UidNext(self.uidlist.next_uid));
        }
        let safe = new_state.is_some_and(|(s, n)| is_safe(s, n)) && is_safe(cur_stamp, cur_now);
        recs.push(Rec::Dirs(DirState {
            cur: cur_stamp,
            new: new_state.map_or_else(Stamp::default, |s| s.0),
            safe,
        }));
        self.commit(recs, true)?;
        own.done();
        // As good as a scan: own changes may move the recorded time along again.
        Seen::scanned(&self.dir);
        Ok(())
    }

    /// Whether a file name base in `names` is one the state holds already.
    fn knows_a_base_of(&self, names: &[String]) -> bool {
        if names.is_empty() {
            return false;
        }
        let bases: Vec<&str> = names.iter().map(|n| split_name(n).0).collect();
        let set: HashSet<&str> = bases.iter().copied().collect();
        let mut known = self
            .files
            .iter()
            .filter(|f| !f.gone)
            .chain(self.pending.iter().map(|(_, f)| f))
            .map(|f| &*f.base);
        if bases.len() <= 4 {
            known.any(|b| bases.contains(&b))
        } else {
            known.any(|b| set.contains(b))
        }
    }

    pub(super) fn dirs_changed(&self) -> Result<bool> {
        let stat = |sub: &str| -> Result<Stamp> {
            let p = self.dir.join(sub);
            match fs::metadata(&p) {
                Ok(md) => Ok(stamp_of(&md)),
                Err(e) if is_not_found(&e) => Err(MaildirError::NoSuchFolder(self.name.clone())),
                Err(e) => Err(MaildirError::io("stat", &p, e)),
            }
        };
        let d = self.st.dirs;
        Ok(!d.safe
            || stat("cur")? != d.cur
            || stat("new")? != d.new
            || (Seen::verify_due(&self.dir) && !watch::is_clean(&self.dir.join("cur"))))
    }

    /// Under the lock with the index read, before this session changes `cur/` itself (a flag
    /// rename, an append's link, an expunge's unlink): whether the recorded `cur/` time may
    /// follow the change ([`Self::followed_cur`]) instead of making every session scan `cur/`
    /// again. Only when `cur/` is exactly as recorded and this process scanned it within
    /// [`OWN_CHANGES_TRUSTED`].
    pub(super) fn cur_as_recorded(&self) -> bool {
        Seen::may_follow(&self.dir)
            && stat_dir(&self.dir.join("cur")).is_ok_and(|(s, _)| s == self.st.dirs.cur)
    }

    /// After this session's own change of `cur/` (see [`Self::cur_as_recorded`]): the record
    /// that moves the recorded `cur/` time along, committed with the change's records.
    /// Another change (by a writer that does not take the lock) within the same time stamp
    /// granule would hide behind it, so the directories are verified by a scan once the
    /// changes pause for [`SAFE_MARGIN`], and at least every [`OWN_CHANGES_TRUSTED`].
    pub(super) fn followed_cur(&self) -> Option<Rec> {
        let (cur, _) = stat_dir(&self.dir.join("cur")).ok()?;
        Seen::followed(&self.dir);
        // Within the same time stamp granule: the record would say nothing new.
        if cur == self.st.dirs.cur && self.st.dirs.safe {
            return None;
        }
        Some(Rec::Dirs(DirState {
            cur,
            new: self.st.dirs.new,
            safe: true,
        }))
    }

    /// Moves `new/` into `cur/` and lists `cur/`; returns the names, the directory state seen
    /// before listing, and whether `cur/` stayed unchanged while it was listed.
    pub(super) fn scan_dirs(&self) -> Result<(Vec<String>, DirState, bool)> {
        Seen::scanned(&self.dir);
        let cur = self.dir.join("cur");
        let new = self.dir.join("new");
        // From here on, every change of `cur/` is either in the listing below or an event.
        watch::arm(&cur);
        #[cfg(test)]
        watch::count_scan(&self.dir);
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
                watch::expect(&cur, &target);
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
    pub(super) fn scan_locked(&mut self) -> Result<()> {
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
        let had_dups = !dups.is_empty();
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
        self.commit(recs, true)?;
        if trusted || !had_dups {
            watch::confirm(&self.dir.join("cur"));
        }
        Ok(())
    }

    /// Gives a second file with a known base a new unique base; returns its new name.
    pub(super) fn rename_duplicate(&self, name: &str) -> Result<Option<String>> {
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
        watch::expect(&cur, &new_name);
        watch::expect(&cur, name);
        match fs::hard_link(&path, &to) {
            Ok(()) => {
                let _ = fs::remove_file(&path);
            }
            Err(_) => fs::rename(&path, &to).ctx("rename", &to)?,
        }
        Ok(Some(new_name))
    }

    /// Finds a message file by base in `cur/` (it was renamed by someone else).
    pub(super) fn locate(&self, base: &str) -> Result<Option<String>> {
        let cur = self.dir.join("cur");
        Ok(list_names(&cur)?
            .into_iter()
            .find(|n| split_name(n).0 == base))
    }

    /// base → file name for everything in `cur/`.
    pub(super) fn base_listing(&self) -> Result<HashMap<String, String>> {
        let cur = self.dir.join("cur");
        Ok(list_names(&cur)?
            .into_iter()
            .map(|n| (split_name(&n).0.to_owned(), n))
            .collect())
    }
}

/// How long after this process last scanned a mailbox's directories its own changes may move
/// the recorded `cur/` time along (a bound on how long a racing foreign change can hide).
pub(super) const OWN_CHANGES_TRUSTED: Duration = Duration::from_secs(1);

/// Per process and mailbox directory: when it was last scanned here and when an own change
/// last moved its recorded `cur/` time (not verified by a scan since).
#[derive(Clone, Copy)]
struct Seen {
    scanned: Instant,
    followed: Option<Instant>,
}

/// At most this many directories are remembered (older entries are dropped first; a
/// forgotten one only costs a scan).
const SEEN_MAX: usize = 4096;

static SEEN: LazyLock<Mutex<HashMap<PathBuf, Seen>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

impl Seen {
    fn with<R>(f: impl FnOnce(&mut HashMap<PathBuf, Self>) -> R) -> R {
        let mut map = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut map)
    }

    fn scanned(dir: &Path) {
        Self::with(|m| {
            if m.len() >= SEEN_MAX && !m.contains_key(dir) {
                let horizon = OWN_CHANGES_TRUSTED * 10;
                m.retain(|_, s| {
                    s.scanned.elapsed() < horizon
                        || s.followed.is_some_and(|f| f.elapsed() < horizon)
                });
                if m.len() >= SEEN_MAX {
                    m.clear();
                }
            }
            m.insert(
                dir.to_path_buf(),
                Self {
                    scanned: Instant::now(),
                    followed: None,
                },
            );
        });
    }

    fn may_follow(dir: &Path) -> bool {
        Self::with(|m| {
            m.get(dir)
                .is_some_and(|s| s.scanned.elapsed() < OWN_CHANGES_TRUSTED)
        })
    }

    fn followed(dir: &Path) {
        Self::with(|m| {
            if let Some(s) = m.get_mut(dir) {
                s.followed = Some(Instant::now());
            }
        });
    }

    /// An own change moved the recorded time and the changes have paused since: scan once.
    fn verify_due(dir: &Path) -> bool {
        Self::with(|m| {
            m.get(dir).is_some_and(|s| {
                s.followed.is_some_and(|f| f.elapsed() >= SAFE_MARGIN)
                    || (s.followed.is_some() && s.scanned.elapsed() >= OWN_CHANGES_TRUSTED)
            })
        })
    }
}

pub(super) fn split_name(name: &str) -> (&str, &str) {
    match name.find(':') {
        Some(i) => name.split_at(i),
        None => (name, ""),
    }
}

pub(super) fn stamp_of(md: &fs::Metadata) -> Stamp {
    Stamp {
        sec: md.mtime(),
        nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
    }
}

/// Stats a directory; the time returned was taken before the stat.
pub(super) fn stat_dir(dir: &Path) -> Result<(Stamp, SystemTime)> {
    let now = SystemTime::now();
    let md = fs::metadata(dir).ctx("stat", dir)?;
    Ok((stamp_of(&md), now))
}

/// True when any later change of the directory must give it a different mtime: the stat was
/// made at least one time stamp granule after the mtime.
pub(super) fn is_safe(stamp: Stamp, now: SystemTime) -> bool {
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
pub(super) fn list_names(dir: &Path) -> Result<Vec<String>> {
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
pub(super) fn stat_mtimes(dir: &Path, names: &[String]) -> Result<Vec<Option<i64>>> {
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
pub(super) fn compute_vsize(path: &Path) -> Result<Option<u64>> {
    match fs::read(path) {
        Ok(d) => Ok(Some(virtual_size(&d))),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(MaildirError::io("read", path, e)),
    }
}
