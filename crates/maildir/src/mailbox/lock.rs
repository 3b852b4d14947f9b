//! The mailbox lock: an in-process queue, then `dovecot-uidlist.lock`.

use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::dotlock::DotLock;
use crate::error::Result;
use crate::keywords::{UIDLIST_FILE, UIDLIST_LOCK_STALE};

use super::{LOCK_WAIT, Mailbox};

// In-process lock: threads of this process queue here before taking the dotlock.

static PROC_LOCKS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static PROC_CV: Condvar = Condvar::new();

struct ProcLock(PathBuf);

impl ProcLock {
    fn acquire(dir: &Path) -> Self {
        let mut held = PROC_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        while held.iter().any(|p| p == dir) {
            held = PROC_CV.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.push(dir.to_path_buf());
        Self(dir.to_path_buf())
    }
}

impl Drop for ProcLock {
    fn drop(&mut self) {
        let mut held = PROC_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = held.iter().position(|p| *p == self.0) {
            held.swap_remove(i);
        }
        PROC_CV.notify_all();
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
