//! The mailbox lock: an in-process queue, then `dovecot-uidlist.lock`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::dotlock::DotLock;
use crate::error::Result;
use crate::keywords::{UIDLIST_FILE, UIDLIST_LOCK_STALE};

use super::{LOCK_WAIT, Mailbox};

// In-process lock: threads of this process queue here before taking the dotlock. Each
// directory held has a slot with its own condition variable, so a release wakes one thread
// waiting for that directory (not every waiter of every mailbox).

struct Slot {
    dir: PathBuf,
    held: bool,
    waiters: usize,
    cv: Arc<Condvar>,
}

static PROC_LOCKS: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

struct ProcLock(PathBuf);

impl ProcLock {
    fn acquire(dir: &Path) -> Self {
        let mut slots = PROC_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        let Some(i) = slots.iter().position(|s| s.dir == dir) else {
            slots.push(Slot {
                dir: dir.to_path_buf(),
                held: true,
                waiters: 0,
                cv: Arc::new(Condvar::new()),
            });
            return Self(dir.to_path_buf());
        };
        let cv = slots[i].cv.clone();
        slots[i].waiters += 1;
        loop {
            slots = cv.wait(slots).unwrap_or_else(|e| e.into_inner());
            // The slot stays while anyone waits for it (see `drop`).
            if let Some(s) = slots.iter_mut().find(|s| s.dir == dir)
                && !s.held
            {
                s.held = true;
                s.waiters -= 1;
                return Self(dir.to_path_buf());
            }
        }
    }
}

impl Drop for ProcLock {
    fn drop(&mut self) {
        let mut slots = PROC_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = slots.iter().position(|s| s.dir == self.0) {
            if slots[i].waiters == 0 {
                slots.swap_remove(i);
            } else {
                slots[i].held = false;
                slots[i].cv.notify_one();
            }
        }
    }
}

/// The mailbox lock: the uidlist dotlock (dropped first) and the in-process lock.
pub(super) struct MailboxLock {
    _dot: DotLock,
    _proc: ProcLock,
}

impl Mailbox {
    pub(super) fn lock(&self) -> Result<MailboxLock> {
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
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Threads on two directories: at most one holder per directory at any time, the other
    /// directory is not held up, and every thread gets its turn (no lost wake-up).
    #[test]
    fn one_holder_per_directory_and_every_waiter_gets_its_turn() {
        let dirs = [Path::new("/nonexistent/a"), Path::new("/nonexistent/b")];
        let inside = [AtomicUsize::new(0), AtomicUsize::new(0)];
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (dirs, inside, done) = (&dirs, &inside, &done);
                s.spawn(move || {
                    for _ in 0..200 {
                        let d = t % 2;
                        let _l = ProcLock::acquire(dirs[d]);
                        assert_eq!(inside[d].fetch_add(1, Ordering::SeqCst), 0);
                        std::hint::spin_loop();
                        inside[d].fetch_sub(1, Ordering::SeqCst);
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 8);
        let slots = PROC_LOCKS.lock().unwrap();
        assert!(!slots.iter().any(|s| s.dir.starts_with("/nonexistent")));
    }
}
