//! Scanning a home into a [`Manifest`], and comparing two manifests.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::path::{check_link_target, check_path};
use crate::{Action, CHUNK, Entry, Kind, MAX_ENTRIES, Manifest, TransferError};

/// Walks the home at `root` (no symlink is followed; a symbolic link is carried as a
/// [`Kind::Symlink`] entry when its target stays inside the home ([`check_link_target`]);
/// any other link, a socket, FIFO or device anywhere below is an error naming it), with the
/// SHA-256 of every file when `hashes`.
/// Entries that vanish while the walk runs are left out. Sorted by path.
pub fn scan(root: &Path, hashes: bool) -> Result<Manifest, TransferError> {
    let meta = std::fs::symlink_metadata(root)?;
    if !meta.file_type().is_dir() {
        return Err(TransferError::Path(format!(
            "{}: not a directory",
            root.display()
        )));
    }
    let mut entries = Vec::new();
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let reader = match std::fs::read_dir(&dir) {
            Ok(r) => r,
            // A directory removed during the walk (not the root: checked above).
            Err(e) if e.kind() == io::ErrorKind::NotFound && !prefix.is_empty() => continue,
            Err(e) => return Err(io_at(&dir, e)),
        };
        for item in reader {
            let item = item.map_err(|e| io_at(&dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else {
                return Err(TransferError::Path(format!(
                    "{}: a file name that is not UTF-8",
                    item.path().display()
                )));
            };
            let rel = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            check_path(&rel)?;
            // Not following symlinks: DirEntry::metadata is an lstat.
            let meta = match item.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_at(&item.path(), e)),
            };
            let ft = meta.file_type();
            let mode = meta.mode() & 0o777;
            if ft.is_dir() {
                stack.push((item.path(), rel.clone()));
                entries.push(Entry {
                    path: rel,
                    kind: Kind::Dir,
                    size: 0,
                    mtime: meta.mtime(),
                    mode,
                    sha256: None,
                    target: None,
                });
            } else if ft.is_file() {
                let (size, sha256) = if hashes {
                    match hash_file(&item.path()) {
                        Ok((size, sum)) => (size, Some(sum)),
                        Err(TransferError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                } else {
                    (meta.len(), None)
                };
                entries.push(Entry {
                    path: rel,
                    kind: Kind::File,
                    size,
                    mtime: meta.mtime(),
                    mode,
                    sha256,
                    target: None,
                });
            } else if ft.is_symlink() {
                // The link itself is read, never followed.
                let target = match std::fs::read_link(item.path()) {
                    Ok(t) => t,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_at(&item.path(), e)),
                };
                let target = target.to_str().map(str::to_owned).ok_or_else(|| {
                    TransferError::Path(format!(
                        "{}: a symbolic link whose target is not UTF-8",
                        item.path().display()
                    ))
                })?;
                check_link_target(&rel, &target).map_err(|e| {
                    TransferError::Path(format!(
                        "{}: a symbolic link that is not carried: {e}",
                        item.path().display()
                    ))
                })?;
                entries.push(Entry {
                    path: rel,
                    kind: Kind::Symlink,
                    size: 0,
                    mtime: meta.mtime(),
                    mode: 0o777,
                    sha256: None,
                    target: Some(target),
                });
            } else {
                return Err(TransferError::Path(format!(
                    "{}: a socket, FIFO or device (a home may hold only files, directories and \
                     links inside it)",
                    item.path().display()
                )));
            }
            if entries.len() > MAX_ENTRIES {
                return Err(TransferError::Path(format!(
                    "{}: more than {MAX_ENTRIES} entries",
                    root.display()
                )));
            }
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Manifest { entries })
}

fn io_at(path: &Path, e: io::Error) -> TransferError {
    TransferError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Opens a regular file without following a symlink at its last component.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// The size and lowercase hex SHA-256 of a file, read in [`CHUNK`]-sized pieces.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String), TransferError> {
    let mut file = match open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(TransferError::Path(format!(
                "{}: a symbolic link",
                path.display()
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(TransferError::Io(e)),
        Err(e) => return Err(io_at(path, e)),
    };
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; CHUNK];
    let mut size = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_at(path, e)),
        };
        ctx.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, crate::wire::hex(ctx.finish().as_ref())))
}

impl Manifest {
    /// What to do so that `dest` becomes `source`, in an order that works: first every
    /// delete (children before their directory: reverse path order), then the directories
    /// and files to create or replace in path order (a directory before its contents).
    /// Files differ by kind, size, mtime or mode; directories by kind or mode (a directory's
    /// mtime changes whenever its content does, so it is not compared); symbolic links by
    /// kind or target (a `Put` of a link entry creates the link).
    pub fn diff(source: &Self, dest: &Self) -> Vec<Action> {
        let src: BTreeMap<&str, &Entry> = source
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e))
            .collect();
        let dst: BTreeMap<&str, &Entry> =
            dest.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let mut actions = Vec::new();
        for (path, d) in dst.iter().rev() {
            match src.get(path) {
                Some(s) if s.kind == d.kind => {}
                _ => actions.push(Action::Delete((*path).to_owned())),
            }
        }
        for (path, s) in &src {
            let action = match (dst.get(path), &s.kind) {
                (Some(d), Kind::Dir) if d.kind == Kind::Dir => {
                    (d.mode != s.mode).then(|| Action::Mkdir((*s).clone()))
                }
                (Some(d), Kind::File) if d.kind == Kind::File => {
                    (d.size != s.size || d.mtime != s.mtime || d.mode != s.mode)
                        .then(|| Action::Put((*s).clone()))
                }
                (Some(d), Kind::Symlink) if d.kind == Kind::Symlink => {
                    (d.target != s.target).then(|| Action::Put((*s).clone()))
                }
                (_, Kind::Dir) => Some(Action::Mkdir((*s).clone())),
                (_, Kind::File | Kind::Symlink) => Some(Action::Put((*s).clone())),
            };
            actions.extend(action);
        }
        actions
    }

    /// Whether `a` and `b` hold the same paths with the same kind, size, mode and SHA-256,
    /// and links the same target (mtimes are not compared). Both must carry hashes. `Err` names the first difference.
    pub fn same_content(a: &Self, b: &Self) -> Result<(), String> {
        let left: BTreeMap<&str, &Entry> = a.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        let right: BTreeMap<&str, &Entry> =
            b.entries.iter().map(|e| (e.path.as_str(), e)).collect();
        if left.len() != a.entries.len() || right.len() != b.entries.len() {
            return Err("a manifest names a path twice".into());
        }
        let mut l = left.values().peekable();
        let mut r = right.values().peekable();
        loop {
            match (l.peek(), r.peek()) {
                (None, None) => return Ok(()),
                (Some(x), None) => return Err(format!("{}: only on the first side", x.path)),
                (None, Some(y)) => return Err(format!("{}: only on the second side", y.path)),
                (Some(x), Some(y)) => {
                    if x.path < y.path {
                        return Err(format!("{}: only on the first side", x.path));
                    }
                    if y.path < x.path {
                        return Err(format!("{}: only on the second side", y.path));
                    }
                    entry_same(x, y)?;
                    l.next();
                    r.next();
                }
            }
        }
    }
}

/// The comparison of [`Manifest::same_content`] for one path.
pub(crate) fn entry_same(x: &Entry, y: &Entry) -> Result<(), String> {
    let p = &x.path;
    if x.path != y.path {
        return Err(format!("{p} vs {}: different paths", y.path));
    }
    if x.kind != y.kind {
        return Err(format!("{p}: {:?} vs {:?}", x.kind, y.kind));
    }
    if x.mode != y.mode {
        return Err(format!("{p}: mode {:o} vs {:o}", x.mode, y.mode));
    }
    if x.target != y.target {
        return Err(format!(
            "{p}: link target {:?} vs {:?}",
            x.target.as_deref().unwrap_or(""),
            y.target.as_deref().unwrap_or("")
        ));
    }
    if x.kind == Kind::File {
        if x.size != y.size {
            return Err(format!("{p}: {} vs {} bytes", x.size, y.size));
        }
        match (&x.sha256, &y.sha256) {
            (Some(h), Some(k)) if h == k => {}
            (Some(_), Some(_)) => return Err(format!("{p}: content differs (SHA-256)")),
            _ => return Err(format!("{p}: no SHA-256 to compare")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, size: u64, mtime: i64) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            size,
            mtime,
            mode: 0o600,
            sha256: None,
            target: None,
        }
    }
    fn l(path: &str, target: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Symlink,
            size: 0,
            mtime: 5,
            mode: 0o777,
            sha256: None,
            target: Some(target.into()),
        }
    }
    fn d(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            size: 0,
            mtime: 5,
            mode: 0o700,
            sha256: None,
            target: None,
        }
    }
    fn m(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest { entries }
    }

    #[test]
    fn diff_orders_deletes_children_first_then_creates_parents_first() {
        let source = m(vec![
            d("cur"),
            f("cur/a", 10, 1),
            f("cur/b", 20, 2),
            d("new"),
            d("x"), // a file on the destination: delete, then mkdir
            f("x/inside", 1, 1),
            f("y", 3, 3), // a directory with content on the destination
            d("z"),
            d("z/deep"),
            f("z/deep/f", 1, 1),
            f("mode", 1, 1),
        ]);
        let mut mode_changed = f("mode", 1, 1);
        mode_changed.mode = 0o644;
        let mut dir_mode = d("new");
        dir_mode.mode = 0o755;
        let mut dir_mtime = d("cur");
        dir_mtime.mtime = 99;
        let dest = m(vec![
            dir_mtime,           // only its mtime differs: nothing to do
            f("cur/a", 10, 1),   // same: nothing
            f("cur/b", 20, 1),   // mtime differs: put
            f("cur/gone", 1, 1), // delete
            dir_mode,            // mode differs: mkdir fixes it
            f("x", 1, 1),
            d("y"),
            d("y/sub"),
            f("y/sub/file", 1, 1),
            f("y-file", 1, 1),
            mode_changed,
        ]);
        let actions = Manifest::diff(&source, &dest);
        let names: Vec<String> = actions
            .iter()
            .map(|a| match a {
                Action::Mkdir(e) => format!("mkdir {}", e.path),
                Action::Put(e) => format!("put {}", e.path),
                Action::Delete(p) => format!("delete {p}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "delete y/sub/file",
                "delete y/sub",
                "delete y-file",
                "delete y",
                "delete x",
                "delete cur/gone",
                "put cur/b",
                "put mode",
                "mkdir new",
                "mkdir x",
                "put x/inside",
                "put y",
                "mkdir z",
                "mkdir z/deep",
                "put z/deep/f",
            ]
        );
        // Applying the diff to the destination gives the source.
        assert!(Manifest::diff(&source, &source).is_empty());
    }

    #[test]
    fn same_content_names_the_first_difference() {
        let mut a = f("a", 1, 1);
        a.sha256 = Some("00".into());
        let mut b = a.clone();
        b.mtime = 7;
        let one = m(vec![d("d"), a.clone()]);
        let two = m(vec![d("d"), b.clone()]);
        assert_eq!(Manifest::same_content(&one, &two), Ok(()));
        b.sha256 = Some("01".into());
        let two = m(vec![d("d"), b.clone()]);
        assert!(
            Manifest::same_content(&one, &two)
                .unwrap_err()
                .contains("a: content")
        );
        let three = m(vec![d("d"), a.clone(), d("e")]);
        assert_eq!(
            Manifest::same_content(&one, &three).unwrap_err(),
            "e: only on the second side"
        );
        let mut no_hash = a.clone();
        no_hash.sha256 = None;
        assert!(Manifest::same_content(&one, &m(vec![d("d"), no_hash])).is_err());
    }

    #[test]
    fn links_differ_by_target_and_kind_only() {
        let source = m(vec![
            d("sieve"),
            l(".dovecot.sieve", "sieve/a.sieve"),
            l("same", "sieve/a.sieve"),
            l("was-file", "sieve/a.sieve"),
            f("was-link", 1, 1),
        ]);
        let mut moved = l("same", "sieve/a.sieve");
        moved.mtime = 99;
        let dest = m(vec![
            d("sieve"),
            l(".dovecot.sieve", "sieve/b.sieve"),
            moved,
            f("was-file", 1, 1),
            l("was-link", "sieve/a.sieve"),
        ]);
        let names: Vec<String> = Manifest::diff(&source, &dest)
            .iter()
            .map(|a| match a {
                Action::Mkdir(e) => format!("mkdir {}", e.path),
                Action::Put(e) => format!("put {:?} {}", e.kind, e.path),
                Action::Delete(p) => format!("delete {p}"),
            })
            .collect();
        assert_eq!(
            names,
            [
                "delete was-link",
                "delete was-file",
                "put Symlink .dovecot.sieve",
                "put Symlink was-file",
                "put File was-link",
            ]
        );
        let one = m(vec![l("x", "sieve/a.sieve")]);
        assert_eq!(Manifest::same_content(&one, &one.clone()), Ok(()));
        let two = m(vec![l("x", "sieve/b.sieve")]);
        let err = Manifest::same_content(&one, &two).unwrap_err();
        assert!(err.contains("x: link target"), "{err}");
    }
}
