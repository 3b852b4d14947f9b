//! Waking IDLE and NOTIFY sessions: one inotify instance for the whole process (the per-user
//! limit on inotify instances is small, 128 by default), watching `new/` and `cur/` of the
//! mailboxes that IDLE sessions have selected. Sessions subscribe by mailbox directory and get
//! a `watch` channel that ticks on every change. Without inotify, sessions poll.
//!
//! NOTIFY (RFC 5465, `notify_set.rs`) watches many mailboxes per session through a [`Group`]:
//! one channel for all of them, plus the set of directories that changed since the session
//! last looked. Groups share watches with each other and with IDLE, and together never hold
//! more than [`MAX_GROUP_WATCHES`] inotify watches (the per-user default limit is 8,192, and
//! the maildir crate's own watcher takes up to 1,024), nor the groups of one login name more
//! than [`MAX_USER_WATCHES`] distinct ones: what a group cannot watch, its session polls. A lost event queue (`IN_Q_OVERFLOW`) marks every group as having to look at all.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::watch;
use tracing::warn;

/// Inotify watches that NOTIFY groups may hold together, process-wide (IDLE's are not capped:
/// at most two per IDLE session; small in unit tests, which pass it).
pub(crate) const MAX_GROUP_WATCHES: usize = if cfg!(test) { 64 } else { 4096 };
/// Distinct inotify watches the NOTIFY groups of one user (login name) may hold together,
/// across its sessions, so that one user cannot take the whole [`MAX_GROUP_WATCHES`] and push
/// every other user onto polling (small in unit tests, which pass it).
pub(crate) const MAX_USER_WATCHES: usize = if cfg!(test) { 24 } else { 1024 };

/// What a watch looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// A mailbox: its `new/` and `cur/` (two watches).
    Mailbox,
    /// The directory itself (the Maildir root: folders made, removed or renamed, the
    /// subscriptions and metadata files replaced).
    Dir,
}

type Key = (PathBuf, Kind);

/// The shared watcher.
pub(crate) struct Notifier {
    inner: Mutex<Inner>,
}

struct Inner {
    watches: Watches,
    /// Per watched directory: the tick sender, its watch descriptors and user count.
    dirs: HashMap<Key, Entry>,
    by_wd: HashMap<WatchDescriptor, Key>,
    /// Per user (login name) with NOTIFY groups: how many of its groups hold each directory,
    /// and the inotify watches those distinct directories take (charged against
    /// [`MAX_USER_WATCHES`]).
    per_user: HashMap<Arc<str>, UserShare>,
}

#[derive(Default)]
struct UserShare {
    keys: HashMap<Key, usize>,
    watches: usize,
}

/// Inotify watches a directory of `kind` takes.
fn cost(kind: Kind) -> usize {
    match kind {
        Kind::Mailbox => 2,
        Kind::Dir => 1,
    }
}

struct Entry {
    tx: watch::Sender<u64>,
    wds: Vec<WatchDescriptor>,
    users: usize,
    /// NOTIFY groups watching this directory (each also counted in `users`).
    groups: Vec<Arc<GroupShared>>,
}

/// What a group's session has not looked at yet.
#[derive(Debug, Default)]
pub(crate) struct Dirty {
    /// Directories that changed.
    pub(crate) dirs: HashSet<Key>,
    /// Events were lost: everything may have changed.
    pub(crate) all: bool,
}

struct GroupShared {
    /// The user whose share the group's watches are charged to.
    user: Arc<str>,
    tx: watch::Sender<u64>,
    dirty: Mutex<Dirty>,
}

impl GroupShared {
    fn touch(&self, key: Option<&Key>) {
        if let Ok(mut d) = self.dirty.lock() {
            match key {
                Some(k) => {
                    // Bounded by the group's own watches.
                    d.dirs.insert(k.clone());
                }
                None => d.all = true,
            }
        }
        self.tx.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// One NOTIFY session's watches: many directories, one channel. Unwatches when dropped.
pub(crate) struct Group {
    notifier: Arc<Notifier>,
    shared: Arc<GroupShared>,
    keys: HashSet<Key>,
    /// Ticks on every change in any of the group's directories.
    pub(crate) rx: watch::Receiver<u64>,
}

impl Group {
    /// Watches `dir` for this group; false when it cannot (the group cap is reached or the
    /// watch failed): the session polls that directory instead.
    pub(crate) fn add(&mut self, dir: &Path, kind: Kind) -> bool {
        let key = (dir.to_path_buf(), kind);
        if self.keys.contains(&key) {
            return true;
        }
        if self.notifier.add(&key, Some(&self.shared)).is_none() {
            return false;
        }
        self.keys.insert(key);
        true
    }

    /// Stops watching `dir`.
    pub(crate) fn remove(&mut self, dir: &Path, kind: Kind) {
        let key = (dir.to_path_buf(), kind);
        if self.keys.remove(&key) {
            self.notifier.release(&key, Some(&self.shared));
        }
    }

    /// What changed since the last call.
    pub(crate) fn take_dirty(&self) -> Dirty {
        self.shared
            .dirty
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default()
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for key in std::mem::take(&mut self.keys) {
            self.notifier.release(&key, Some(&self.shared));
        }
    }
}

/// A subscription; unsubscribes when dropped.
pub(crate) struct Subscription {
    notifier: Arc<Notifier>,
    dir: PathBuf,
    /// Ticks on every change in the mailbox.
    pub(crate) rx: watch::Receiver<u64>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.notifier
            .release(&(self.dir.clone(), Kind::Mailbox), None);
    }
}

impl Notifier {
    /// Starts the watcher thread. `None` if inotify is unavailable.
    pub(crate) fn start() -> Option<Arc<Self>> {
        let mut ino = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                warn!(error = %e, "inotify unavailable; IDLE will poll");
                return None;
            }
        };
        let watches = ino.watches();
        let me = Arc::new(Self {
            inner: Mutex::new(Inner {
                watches,
                dirs: HashMap::new(),
                by_wd: HashMap::new(),
                per_user: HashMap::new(),
            }),
        });
        let weak = Arc::downgrade(&me);
        // One thread for the whole process, blocked in read(2) on the inotify descriptor.
        let spawned = std::thread::Builder::new()
            .name("imap-inotify".into())
            .spawn(move || {
                let mut buf = vec![0u8; 8192];
                loop {
                    let mut lost = false;
                    let touched: Vec<WatchDescriptor> = match ino.read_events_blocking(&mut buf) {
                        Ok(events) => events
                            .filter_map(|e| {
                                if e.mask.contains(EventMask::Q_OVERFLOW) {
                                    lost = true;
                                    None
                                } else {
                                    Some(e.wd.clone())
                                }
                            })
                            .collect(),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            warn!(error = %e, "inotify read failed");
                            return;
                        }
                    };
                    let Some(me) = weak.upgrade() else { return };
                    let Ok(inner) = me.inner.lock() else { return };
                    if lost {
                        // The queue overflowed: every watcher must look again.
                        for entry in inner.dirs.values() {
                            entry.tx.send_modify(|n| *n = n.wrapping_add(1));
                            for g in &entry.groups {
                                g.touch(None);
                            }
                        }
                    }
                    for wd in touched {
                        if let Some(key) = inner.by_wd.get(&wd)
                            && let Some(entry) = inner.dirs.get(key)
                        {
                            entry.tx.send_modify(|n| *n = n.wrapping_add(1));
                            for g in &entry.groups {
                                g.touch(Some(key));
                            }
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            warn!(error = %e, "cannot start the inotify thread; IDLE will poll");
            return None;
        }
        Some(me)
    }

    /// Watches `dir/new` and `dir/cur`. `None` if the watches cannot be added.
    pub(crate) fn subscribe(self: &Arc<Self>, dir: &Path) -> Option<Subscription> {
        let rx = self.add(&(dir.to_path_buf(), Kind::Mailbox), None)?;
        Some(Subscription {
            notifier: self.clone(),
            dir: dir.to_path_buf(),
            rx,
        })
    }

    /// A NOTIFY group of `user` (its login name) with nothing watched yet.
    pub(crate) fn group(self: &Arc<Self>, user: &str) -> Group {
        let (tx, rx) = watch::channel(0);
        Group {
            notifier: self.clone(),
            shared: Arc::new(GroupShared {
                user: Arc::from(user),
                tx,
                dirty: Mutex::new(Dirty::default()),
            }),
            keys: HashSet::new(),
            rx,
        }
    }

    /// Inotify watches held now (all users).
    #[cfg(test)]
    pub(crate) fn watch_count(&self) -> usize {
        self.inner.lock().map(|i| i.by_wd.len()).unwrap_or(0)
    }

    /// Adds a user of `key` (for `group`, or an IDLE subscription): the entry's receiver, or
    /// `None` if the watches cannot be added (or, for a group, would pass the process's cap or
    /// its user's share: a directory already held by another group of the same user costs
    /// that user nothing more).
    fn add(&self, key: &Key, group: Option<&Arc<GroupShared>>) -> Option<watch::Receiver<u64>> {
        let mut guard = self.inner.lock().ok()?;
        let inner = &mut *guard;
        if let Some(g) = group {
            let share = inner.per_user.get(&g.user);
            let held = share.is_some_and(|u| u.keys.contains_key(key));
            let used = share.map_or(0, |u| u.watches);
            if !held && used + cost(key.1) > MAX_USER_WATCHES {
                return None;
            }
        }
        let rx = Self::add_locked(inner, key, group)?;
        if let Some(g) = group {
            let share = inner.per_user.entry(g.user.clone()).or_default();
            let n = share.keys.entry(key.clone()).or_insert(0);
            if *n == 0 {
                share.watches += cost(key.1);
            }
            *n += 1;
        }
        Some(rx)
    }

    fn add_locked(
        inner: &mut Inner,
        key: &Key,
        group: Option<&Arc<GroupShared>>,
    ) -> Option<watch::Receiver<u64>> {
        if let Some(e) = inner.dirs.get_mut(key) {
            e.users += 1;
            if let Some(g) = group {
                e.groups.push(g.clone());
            }
            return Some(e.tx.subscribe());
        }
        let (dir, kind) = key;
        let paths: Vec<PathBuf> = match kind {
            Kind::Mailbox => vec![dir.join("new"), dir.join("cur")],
            Kind::Dir => vec![dir.clone()],
        };
        if group.is_some() && inner.by_wd.len() + paths.len() > MAX_GROUP_WATCHES {
            return None;
        }
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::CLOSE_WRITE
            | WatchMask::ATTRIB;
        let mut wds = Vec::new();
        for p in paths {
            match inner.watches.add(&p, mask) {
                Ok(wd) => wds.push(wd),
                Err(e) => {
                    warn!(error = %e, dir = %dir.display(), "inotify watch failed; polling");
                    for wd in wds {
                        let _ = inner.watches.remove(wd);
                    }
                    return None;
                }
            }
        }
        let (tx, rx) = watch::channel(0);
        for wd in &wds {
            inner.by_wd.insert(wd.clone(), key.clone());
        }
        inner.dirs.insert(
            key.clone(),
            Entry {
                tx,
                wds,
                users: 1,
                groups: group.into_iter().cloned().collect(),
            },
        );
        Some(rx)
    }

    fn release(&self, key: &Key, group: Option<&Arc<GroupShared>>) {
        let Ok(mut guard) = self.inner.lock() else {
            return;
        };
        let inner = &mut *guard;
        if let Some(g) = group
            && let Some(share) = inner.per_user.get_mut(&g.user)
        {
            if let Some(n) = share.keys.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    share.keys.remove(key);
                    share.watches -= cost(key.1);
                }
            }
            if share.keys.is_empty() {
                inner.per_user.remove(&g.user);
            }
        }
        let done = match inner.dirs.get_mut(key) {
            Some(e) => {
                if let Some(g) = group
                    && let Some(i) = e.groups.iter().position(|x| Arc::ptr_eq(x, g))
                {
                    e.groups.swap_remove(i);
                }
                e.users -= 1;
                e.users == 0
            }
            None => false,
        };
        if done && let Some(e) = inner.dirs.remove(key) {
            for wd in e.wds {
                inner.by_wd.remove(&wd);
                let _ = inner.watches.remove(wd);
            }
        }
    }
}
