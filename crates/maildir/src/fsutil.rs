//! Small durable file-system helpers shared by the modules.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{IoContext, Result};

/// fsyncs a directory, making the entries created or removed in it durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx("open directory", dir)?;
    f.sync_all().ctx("fsync directory", dir)
}

/// Creates one directory with exactly `mode` (not narrowed by the umask).
/// Returns `false` when it already existed (as a directory).
pub(crate) fn mkdir_mode(dir: &Path, mode: u32) -> Result<bool> {
    // The usual case (every delivery checks `cur/ new/ tmp/`): it exists, one stat instead
    // of a failing mkdir and a stat.
    if dir.is_dir() {
        return Ok(false);
    }
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, Permissions::from_mode(mode)).ctx("chmod", dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e).ctx("mkdir", dir),
    }
}

/// Creates `dir` and its missing parents with `mode`, then fsyncs the parent of each directory
/// created so the new entries survive a crash. Returns `true` when `dir` itself was created.
pub(crate) fn mkdir_parents(dir: &Path, mode: u32) -> Result<bool> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    let mut created_last = false;
    for d in missing.iter().rev() {
        created_last = mkdir_mode(d, mode)?;
        if created_last && let Some(parent) = d.parent() {
            // A relative top-level directory's parent is the current directory.
            fsync_dir(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            })?;
        }
    }
    Ok(created_last)
}

/// Creates a new file with `O_CREAT | O_EXCL` and exactly the given mode: when the mode grants
/// group or other access, which the umask may have narrowed, it is set again with `fchmod`.
pub(crate) fn create_excl(path: &Path, mode: u32) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if mode & 0o077 != 0
        && let Err(e) = f.set_permissions(Permissions::from_mode(mode))
    {
        drop(f);
        let _ = fs::remove_file(path);
        return Err(e);
    }
    Ok(f)
}

/// Writes `data` to `tmp` (created exclusively), fsyncs it and renames it over `target`,
/// then fsyncs the target's directory. On error the temporary file is removed.
pub(crate) fn replace_file(tmp: &Path, target: &Path, data: &[u8], mode: u32) -> Result<()> {
    let result = (|| {
        let mut f = create_excl(tmp, mode).ctx("create", tmp)?;
        f.write_all(data).ctx("write", tmp)?;
        f.sync_all().ctx("fsync", tmp)?;
        drop(f);
        fs::rename(tmp, target).ctx("rename", target)
    })();
    if result.is_err() {
        let _ = fs::remove_file(tmp);
        return result;
    }
    if let Some(dir) = target.parent() {
        fsync_dir(dir)?;
    }
    Ok(())
}

/// Seconds since the epoch, now.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A short random hex string for temporary file names.
pub(crate) fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Returns `true` if the error means "the file is not there".
pub(crate) fn is_not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}
