//! Dotlocks compatible with Dovecot's `file-dotlock.c`.
//!
//! Locking `FILE` means creating `FILE.lock` with `O_CREAT | O_EXCL` (Dovecot's default
//! `dotlock_use_excl = yes`) and writing `<pid>:<hostname>` into it; unlocking removes it.
//! A lock is taken over (removed) when it is stale:
//! - it is older than 2 seconds, names this host and a process id other than ours that no
//!   longer exists (`kill(pid, 0)` fails with `ESRCH`); or
//! - it has not changed for `stale_after` (Dovecot uses 120 s for `dovecot-uidlist.lock`).
//!
//! Our own process id in a lock is never treated as stale: unlike Dovecot we run several
//! threads, so it may be a live lock held by another of our threads.
//! Like Dovecot, there is a small window in which two waiters that both judge a lock stale can
//! race; stale locks only appear after a crash, so this is accepted.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::error::{IoContext, MaildirError, Result};
use crate::filename::hostname;
use crate::fsutil::{create_excl, is_not_found};

/// How long to wait before checking the process id in a fresh lock (Dovecot: 2 s).
const PID_CHECK_AFTER: Duration = Duration::from_secs(2);

/// A held dotlock; dropping it removes the lock file.
#[derive(Debug)]
pub struct DotLock {
    path: PathBuf,
    target: PathBuf,
    ino: u64,
}

impl DotLock {
    /// Locks `file` by creating `file.lock`, waiting up to `wait`, taking over locks that are
    /// stale as described in the module documentation.
    pub fn acquire(file: &Path, wait: Duration, stale_after: Duration, mode: u32) -> Result<Self> {
        let mut lock = file.as_os_str().to_owned();
        lock.push(".lock");
        let path = PathBuf::from(lock);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(5);
        loop {
            match create_excl(&path, mode) {
                Ok(mut f) => {
                    let content = format!("{}:{}", std::process::id(), hostname());
                    // Dovecot leaves the lock empty when it cannot write the pid; so do we.
                    let _ = f.write_all(content.as_bytes());
                    let ino =
                        std::os::unix::fs::MetadataExt::ino(&f.metadata().ctx("fstat", &path)?);
                    return Ok(Self {
                        path,
                        target: file.to_path_buf(),
                        ino,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(MaildirError::io("create lock", &path, e)),
            }
            if is_stale(&path, stale_after)? {
                match fs::remove_file(&path) {
                    Ok(()) => continue,
                    Err(e) if is_not_found(&e) => continue,
                    Err(e) => return Err(MaildirError::io("remove stale lock", &path, e)),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(MaildirError::LockTimeout { path });
            }
            let jitter = Duration::from_micros(rand::random::<u64>() % 5_000);
            std::thread::sleep((pause + jitter).min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the locked file with `data` the way Dovecot's `file_dotlock_replace()` does:
    /// the lock file itself receives the new contents (fsynced) and is renamed over the locked
    /// file, which also releases the lock; then the directory is fsynced. Fails without
    /// touching the file when the lock is no longer ours (taken over as stale).
    pub fn replace(self, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::MetadataExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .ctx("open lock", &self.path)?;
        if f.metadata().ctx("fstat", &self.path)?.ino() != self.ino {
            return Err(MaildirError::LockTimeout {
                path: self.path.clone(),
            });
        }
        f.set_len(0).ctx("truncate", &self.path)?;
        f.write_all(data).ctx("write", &self.path)?;
        f.sync_all().ctx("fsync", &self.path)?;
        drop(f);
        fs::rename(&self.path, &self.target).ctx("rename", &self.target)?;
        if let Some(dir) = self.target.parent() {
            crate::fsutil::fsync_dir(dir)?;
        }
        // The lock file is gone (renamed): Drop finds nothing to remove.
        Ok(())
    }
}

impl Drop for DotLock {
    fn drop(&mut self) {
        // Remove the lock only if it is still ours (not taken over as stale meanwhile).
        if let Ok(md) = fs::symlink_metadata(&self.path)
            && std::os::unix::fs::MetadataExt::ino(&md) == self.ino
        {
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn is_stale(path: &Path, stale_after: Duration) -> Result<bool> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        // Gone already: not stale, just retry the create.
        Err(e) if is_not_found(&e) => return Ok(false),
        Err(e) => return Err(MaildirError::io("stat lock", path, e)),
    };
    let age = md
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or_default();
    if age >= stale_after {
        return Ok(true);
    }
    if age < PID_CHECK_AFTER {
        return Ok(false);
    }
    let Ok(content) = fs::read_to_string(path) else {
        return Ok(false);
    };
    let Some((pid, host)) = content.trim_end_matches('\n').split_once(':') else {
        return Ok(false);
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return Ok(false);
    };
    if host != hostname() || pid <= 0 || pid.unsigned_abs() == std::process::id() {
        return Ok(false);
    }
    Ok(kill(Pid::from_raw(pid), None) == Err(Errno::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_and_releases() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dovecot-uidlist");
        let lock =
            DotLock::acquire(&file, Duration::ZERO, Duration::from_secs(120), 0o600).unwrap();
        let content = fs::read_to_string(lock.path()).unwrap();
        assert_eq!(content, format!("{}:{}", std::process::id(), hostname()));
        let again = DotLock::acquire(
            &file,
            Duration::from_millis(50),
            Duration::from_secs(120),
            0o600,
        );
        assert!(matches!(again, Err(MaildirError::LockTimeout { .. })));
        drop(lock);
        assert!(!dir.path().join("dovecot-uidlist.lock").exists());
        DotLock::acquire(&file, Duration::ZERO, Duration::from_secs(120), 0o600).unwrap();
    }

    #[test]
    fn takes_over_stale_locks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        let lock_path = dir.path().join("f.lock");
        let old = SystemTime::now() - Duration::from_secs(10);

        // Old lock, no pid: stale only after stale_after.
        fs::write(&lock_path, "").unwrap();
        fs::File::options()
            .write(true)
            .open(&lock_path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(DotLock::acquire(&file, Duration::ZERO, Duration::from_secs(60), 0o600).is_err());
        DotLock::acquire(&file, Duration::ZERO, Duration::from_secs(5), 0o600).unwrap();

        // A dead process on this host: stale at once (pid 2^22+ is above Linux's pid_max).
        fs::write(&lock_path, format!("{}:{}", 4_194_305, hostname())).unwrap();
        fs::File::options()
            .write(true)
            .open(&lock_path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        DotLock::acquire(&file, Duration::ZERO, Duration::from_secs(60), 0o600).unwrap();
    }
}
