//! Waking IDLE sessions: one inotify instance for the whole process (the per-user limit on
//! inotify instances is small, 128 by default), watching `new/` and `cur/` of the mailboxes
//! that IDLE sessions have selected. Sessions subscribe by mailbox directory and get a
//! `watch` channel that ticks on every change. Without inotify, sessions poll.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::watch;
use tracing::warn;

/// The shared watcher.
pub(crate) struct Notifier {
    inner: Mutex<Inner>,
}

struct Inner {
    watches: Watches,
    /// Per mailbox directory: the tick sender, its watch descriptors and user count.
    dirs: HashMap<PathBuf, Entry>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

struct Entry {
    tx: watch::Sender<u64>,
    wds: Vec<WatchDescriptor>,
    users: usize,
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
        self.notifier.release(&self.dir);
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
            }),
        });
        let weak = Arc::downgrade(&me);
        // One thread for the whole process, blocked in read(2) on the inotify descriptor.
        let spawned = std::thread::Builder::new()
            .name("imap-inotify".into())
            .spawn(move || {
                let mut buf = vec![0u8; 8192];
                loop {
                    let touched: Vec<WatchDescriptor> = match ino.read_events_blocking(&mut buf) {
                        Ok(events) => events.map(|e| e.wd.clone()).collect(),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            warn!(error = %e, "inotify read failed");
                            return;
                        }
                    };
                    let Some(me) = weak.upgrade() else { return };
                    let Ok(inner) = me.inner.lock() else { return };
                    for wd in touched {
                        if let Some(dir) = inner.by_wd.get(&wd)
                            && let Some(entry) = inner.dirs.get(dir)
                        {
                            entry.tx.send_modify(|n| *n = n.wrapping_add(1));
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
        let mut inner = self.inner.lock().ok()?;
        if let Some(e) = inner.dirs.get_mut(dir) {
            e.users += 1;
            let rx = e.tx.subscribe();
            return Some(Subscription {
                notifier: self.clone(),
                dir: dir.to_path_buf(),
                rx,
            });
        }
        let mask = WatchMask::CREATE
            | WatchMask::DELETE
            | WatchMask::MOVED_FROM
            | WatchMask::MOVED_TO
            | WatchMask::CLOSE_WRITE
            | WatchMask::ATTRIB;
        let mut wds = Vec::new();
        for sub in ["new", "cur"] {
            match inner.watches.add(dir.join(sub), mask) {
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
            inner.by_wd.insert(wd.clone(), dir.to_path_buf());
        }
        inner
            .dirs
            .insert(dir.to_path_buf(), Entry { tx, wds, users: 1 });
        Some(Subscription {
            notifier: self.clone(),
            dir: dir.to_path_buf(),
            rx,
        })
    }

    fn release(&self, dir: &Path) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let done = match inner.dirs.get_mut(dir) {
            Some(e) => {
                e.users -= 1;
                e.users == 0
            }
            None => false,
        };
        if done && let Some(e) = inner.dirs.remove(dir) {
            for wd in e.wds {
                inner.by_wd.remove(&wd);
                let _ = inner.watches.remove(wd);
            }
        }
    }
}
