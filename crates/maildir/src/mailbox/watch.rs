//! Per process: an inotify watch on each recently scanned `cur/`, so that picking up new mail
//! need not list `cur/` again.
//!
//! A directory's mtime cannot tell an own change from a foreign one made within the same time
//! stamp granule; the watch can. It is armed (under the mailbox lock) before a full scan lists
//! `cur/`, so from then on every change of `cur/` queues an event. This process's own changes
//! (flag renames, appends, expunges, copies, moves out of `new/`) announce their names first
//! ([`Own`]) and their events are consumed; any other event makes the watch *dirty*. While a
//! watch is clean, `cur/` holds exactly what the scan found plus this process's own changes,
//! all of them in the index: a sync that finds only `new/` changed moves those files and logs
//! them without listing `cur/` ([`Mailbox::pickup_locked`](super::Mailbox)).
//!
//! A dirty watch, a lost event queue (`IN_Q_OVERFLOW`), a failed own change, a watch that could
//! not be added (limits) or an inotify instance that could not be made all fall back to the
//! full scan, which re-arms the watch. At most [`MAX_WATCHES`] directories are watched (least
//! recently used dropped first).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

/// Directories watched at most per process.
pub(super) const MAX_WATCHES: usize = 1024;

struct State {
    path: PathBuf,
    /// The directory watched (a watch follows its inode: a folder renamed away and another
    /// made under the old name must not pass for the watched one).
    inode: (u64, u64),
    clean: bool,
    /// The scan that armed the watch was committed to the index.
    confirmed: bool,
    /// Names of own changes announced and not yet seen as events.
    expected: HashMap<String, u32>,
    used: Instant,
}

struct Watcher {
    fd: Inotify,
    by_wd: HashMap<WatchDescriptor, State>,
    by_path: HashMap<PathBuf, WatchDescriptor>,
}

/// `None` inside: inotify is not available (the full scan is used).
static WATCHER: LazyLock<Mutex<Option<Watcher>>> = LazyLock::new(|| {
    Mutex::new(
        Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .map(|fd| Watcher {
                fd,
                by_wd: HashMap::new(),
                by_path: HashMap::new(),
            }),
    )
});

fn with<R>(f: impl FnOnce(&mut Watcher) -> R) -> Option<R> {
    let mut guard = WATCHER.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_mut().map(f)
}

impl Watcher {
    /// Reads every queued event and books it against its watch.
    fn drain(&mut self) {
        loop {
            let events = match self.fd.read_events() {
                Ok(ev) if !ev.is_empty() => ev,
                Ok(_) | Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => continue,
                Err(_) => {
                    self.all_dirty();
                    return;
                }
            };
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    self.all_dirty();
                    continue;
                }
                if ev.mask.contains(AddWatchFlags::IN_IGNORED) {
                    if let Some(st) = self.by_wd.remove(&ev.wd) {
                        self.by_path.remove(&st.path);
                    }
                    continue;
                }
                let Some(st) = self.by_wd.get_mut(&ev.wd) else {
                    continue;
                };
                if ev
                    .mask
                    .intersects(AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_MOVE_SELF)
                {
                    st.clean = false;
                    continue;
                }
                if ev.mask.contains(AddWatchFlags::IN_ISDIR) {
                    continue;
                }
                // Names a scan ignores (see `list_names`) change nothing it would see.
                let Some(name) = ev.name.and_then(|n| n.into_string().ok()) else {
                    continue;
                };
                if name.starts_with('.') || name.contains(['\n', '\r']) {
                    continue;
                }
                match st.expected.get_mut(&name) {
                    Some(n) if *n > 1 => *n -= 1,
                    Some(_) => {
                        st.expected.remove(&name);
                    }
                    None => st.clean = false,
                }
            }
        }
    }

    fn all_dirty(&mut self) {
        for st in self.by_wd.values_mut() {
            st.clean = false;
        }
    }

    fn state(&mut self, dir: &Path) -> Option<&mut State> {
        let wd = self.by_path.get(dir)?;
        self.by_wd.get_mut(wd)
    }

    fn evict_one(&mut self) {
        let Some((&wd, _)) = self.by_wd.iter().min_by_key(|(_, s)| s.used) else {
            return;
        };
        let _ = self.fd.rm_watch(wd);
        if let Some(st) = self.by_wd.remove(&wd) {
            self.by_path.remove(&st.path);
        }
    }
}

/// Watches `cur` (again) and starts it clean; the caller holds the mailbox lock and lists
/// `cur/` after this. False when no watch could be set.
pub(super) fn arm(cur: &Path) -> bool {
    with(|w| {
        w.drain();
        if !w.by_path.contains_key(cur) && w.by_wd.len() >= MAX_WATCHES {
            w.evict_one();
        }
        let mask = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR;
        let Ok(wd) = w.fd.add_watch(cur, mask) else {
            if let Some(wd) = w.by_path.remove(cur) {
                let _ = w.fd.rm_watch(wd);
                w.by_wd.remove(&wd);
            }
            return false;
        };
        let Ok(md) = std::fs::metadata(cur) else {
            let _ = w.fd.rm_watch(wd);
            return false;
        };
        // Events queued before the listing that follows are in that listing.
        w.drain();
        if let Some(old) = w.by_path.remove(cur)
            && old != wd
        {
            // The directory once watched under this path is elsewhere now.
            w.by_wd.remove(&old);
            let _ = w.fd.rm_watch(old);
        }
        if let Some(prev) = w.by_wd.remove(&wd) {
            // The same directory under another path (a renamed folder).
            w.by_path.remove(&prev.path);
        }
        w.by_wd.insert(
            wd,
            State {
                path: cur.to_path_buf(),
                inode: (md.dev(), md.ino()),
                clean: true,
                confirmed: false,
                expected: HashMap::new(),
                used: Instant::now(),
            },
        );
        w.by_path.insert(cur.to_path_buf(), wd);
        true
    })
    .unwrap_or(false)
}

/// The scan after [`arm`] is in the index: from now on the watch may vouch for `cur/`.
pub(super) fn confirm(cur: &Path) {
    with(|w| {
        w.drain();
        if let Some(s) = w.state(cur) {
            s.expected.clear();
            s.confirmed = true;
        }
    });
}

/// True when `cur` is watched, the scan that armed it is in the index and nobody else
/// changed `cur/` since.
pub(super) fn is_clean(cur: &Path) -> bool {
    let Ok(md) = std::fs::metadata(cur) else {
        return false;
    };
    with(|w| {
        w.drain();
        w.state(cur).is_some_and(|s| {
            s.used = Instant::now();
            s.clean && s.confirmed && s.inode == (md.dev(), md.ino())
        })
    })
    .unwrap_or(false)
}

/// Announces a name this process is about to add to or remove from `cur/` (the caller holds
/// the mailbox lock).
pub(super) fn expect(cur: &Path, name: &str) {
    with(|w| {
        if let Some(s) = w.state(cur) {
            *s.expected.entry(name.to_owned()).or_insert(0) += 1;
        }
    });
}

/// Full scans of `cur/` per mailbox directory (tests count them).
#[cfg(test)]
pub(super) static SCANS: LazyLock<Mutex<HashMap<PathBuf, u32>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

#[cfg(test)]
pub(super) fn count_scan(dir: &Path) {
    *SCANS.lock().unwrap().entry(dir.to_path_buf()).or_insert(0) += 1;
}

#[cfg(test)]
fn scans(dir: &Path) -> u32 {
    SCANS.lock().unwrap().get(dir).copied().unwrap_or(0)
}

/// An own change of `cur/` in progress (the caller holds the mailbox lock): its names are
/// announced with [`Own::expect`] before each file system call. Dropped without
/// [`Own::done`] (an error, an early return): the watch is made dirty, since the index may
/// not say what `cur/` now holds.
pub(super) struct Own {
    cur: PathBuf,
    ok: bool,
}

impl Own {
    pub(super) fn new(cur: &Path) -> Self {
        Self {
            cur: cur.to_path_buf(),
            ok: false,
        }
    }

    /// Announces a name that is about to appear in or vanish from `cur/`.
    pub(super) fn expect(&self, name: &str) {
        expect(&self.cur, name);
    }

    /// The change is complete and recorded in the index.
    pub(super) fn done(mut self) {
        self.ok = true;
    }
}

impl Drop for Own {
    fn drop(&mut self) {
        let ok = self.ok;
        with(|w| {
            w.drain();
            if let Some(s) = w.state(&self.cur) {
                // An announced change that made no event (it failed) must not hide a later
                // foreign one of the same name.
                s.expected.clear();
                if !ok {
                    s.clean = false;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FlagOp, Flags, Maildir};

    const MSG: &[u8] = b"From: a@example.org\nSubject: hi\n\nHello\n";

    fn seen() -> Flags {
        Flags {
            seen: true,
            ..Flags::default()
        }
    }

    /// New mail is picked up without listing `cur/` (no full scan), also after own flag
    /// changes, appends and expunges; every session agrees on the result.
    #[test]
    fn new_mail_is_picked_up_without_a_scan_of_cur() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(t.path().join("Maildir"), 0o700).unwrap();
        for _ in 0..3 {
            md.deliver(None, MSG, &Flags::default()).unwrap();
        }
        let mut a = md.open_mailbox("INBOX").unwrap();
        let mut b = md.open_mailbox("INBOX").unwrap();
        let dir = a.path().to_path_buf();
        let before = scans(&dir);
        assert!(before >= 1, "the first open scans");
        md.deliver(None, MSG, &Flags::default()).unwrap();
        let r = a.sync().unwrap();
        assert_eq!(r.new, [4]);
        a.store_flags(1, FlagOp::Add, &seen(), None).unwrap();
        a.append(MSG, &Flags::default(), None).unwrap();
        assert_eq!(a.expunge(&[2]).unwrap(), [2]);
        md.deliver(None, MSG, &Flags::default()).unwrap();
        md.deliver(None, MSG, &Flags::default()).unwrap();
        let r = a.sync().unwrap();
        assert_eq!(r.new, [5, 6, 7]);
        let r = b.sync().unwrap();
        assert_eq!(r.new, [4, 5, 6, 7]);
        assert_eq!(r.expunged, [2]);
        assert_eq!(r.changed, [1]);
        // Past the time stamp margins, nothing is left unsafe.
        std::thread::sleep(std::time::Duration::from_millis(120));
        assert!(a.sync().unwrap().is_empty());
        assert!(b.sync().unwrap().is_empty());
        assert_eq!(scans(&dir), before, "no full scan after the first");
        assert_eq!(a.messages(), b.messages());
        let names: Vec<String> = std::fs::read_dir(dir.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 6);
        assert!(std::fs::read_dir(dir.join("new")).unwrap().next().is_none());
        // A fresh opener (another process would read the same index) agrees.
        let c = md.open_mailbox("INBOX").unwrap();
        assert_eq!(c.messages(), a.messages());
    }

    /// A foreign rename in `cur/` whose mtime change is hidden (the directory time set back,
    /// as within one time stamp granule) is found when new mail arrives: the watch saw it.
    #[test]
    fn a_foreign_change_hidden_behind_a_delivery_is_found() {
        let t = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(t.path().join("Maildir"), 0o700).unwrap();
        for _ in 0..2 {
            md.deliver(None, MSG, &Flags::default()).unwrap();
        }
        let mut mb = md.open_mailbox("INBOX").unwrap();
        let dir = mb.path().to_path_buf();
        let cur = dir.join("cur");
        let before = scans(&dir);
        let mtime = std::fs::metadata(&cur).unwrap().modified().unwrap();
        let file2 = std::fs::read_dir(&cur)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .max()
            .unwrap();
        let (base, _) = file2.split_once(':').unwrap();
        std::fs::rename(cur.join(&file2), cur.join(format!("{base}:2,F"))).unwrap();
        std::fs::File::open(&cur)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        md.deliver(None, MSG, &Flags::default()).unwrap();
        let r = mb.sync().unwrap();
        assert_eq!(r.new, [3]);
        assert_eq!(r.changed, [2], "hidden rename not found");
        assert!(mb.get(2).unwrap().flags.flagged);
        assert_eq!(scans(&dir), before + 1, "found by a full scan");
    }

    #[test]
    fn own_changes_keep_the_watch_clean_and_foreign_ones_do_not() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("cur");
        std::fs::create_dir(&cur).unwrap();
        assert!(!is_clean(&cur), "not armed yet");
        assert!(arm(&cur));
        assert!(!is_clean(&cur), "the scan is not committed yet");
        confirm(&cur);
        assert!(is_clean(&cur));
        let own = Own::new(&cur);
        own.expect("a:2,");
        std::fs::write(cur.join("a:2,"), b"x").unwrap();
        own.done();
        assert!(is_clean(&cur));
        // Dot files and directories are not messages.
        std::fs::write(cur.join(".tmp"), b"x").unwrap();
        std::fs::create_dir(cur.join("sub")).unwrap();
        assert!(is_clean(&cur));
        std::fs::rename(cur.join("a:2,"), cur.join("a:2,S")).unwrap();
        assert!(!is_clean(&cur), "a foreign rename");
        assert!(arm(&cur));
        confirm(&cur);
        assert!(is_clean(&cur));
        // A failed own change leaves the watch dirty.
        let own = Own::new(&cur);
        own.expect("b:2,");
        drop(own);
        assert!(!is_clean(&cur));
    }

    /// A watch follows its directory: after the folder is renamed away and another made under
    /// the old name, the new one is not taken for the watched one.
    #[test]
    fn a_directory_replaced_under_the_same_path_is_not_clean() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("box/cur");
        std::fs::create_dir_all(&cur).unwrap();
        assert!(arm(&cur));
        confirm(&cur);
        assert!(is_clean(&cur));
        std::fs::rename(t.path().join("box"), t.path().join("moved")).unwrap();
        std::fs::create_dir_all(&cur).unwrap();
        assert!(!is_clean(&cur));
        assert!(arm(&cur));
        confirm(&cur);
        assert!(is_clean(&cur));
    }

    #[test]
    fn an_announced_name_that_never_came_does_not_hide_a_later_foreign_change() {
        let t = tempfile::tempdir().unwrap();
        let cur = t.path().join("cur");
        std::fs::create_dir(&cur).unwrap();
        assert!(arm(&cur));
        confirm(&cur);
        let own = Own::new(&cur);
        own.expect("c:2,");
        own.done();
        std::fs::write(cur.join("c:2,"), b"x").unwrap();
        assert!(!is_clean(&cur));
    }
}
