//! A user's Sieve scripts on disk, laid out as Pigeonhole lays them out, so lmtp-deliver,
//! `mailctl sieve` and Dovecot read the same active script:
//!
//! - every script is `<home>/sieve/<name>.sieve`;
//! - the active one is the symbolic link `[lmtp] sieve_script` (by default
//!   `<home>/.dovecot.sieve`), pointing at `sieve/<name>.sieve` (relative when the link is
//!   in the home directory, as Pigeonhole makes it; absolute otherwise); no link, no
//!   active script. lmtp-deliver opens the link and so reads the script it points at;
//!   `mailctl sieve put` writes through it.
//! - A regular file where the link belongs (written by `mailctl sieve put` before any
//!   ManageSieve use, or by hand) is kept: the first look moves it into the storage as
//!   `dovecot.orig`, as Pigeonhole does, and links it, so mail goes on being filtered by
//!   the same script.
//!
//! Writes are atomic: a script is written to a temporary name in `sieve/`, fsynced and
//! renamed into place, then the directory is fsynced; the link is replaced by making a new
//! link under a temporary name and renaming it over the old one. lmtp-deliver therefore
//! sees the old script or the new one, never a part.
//!
//! Every name reaching this module has passed [`postern_managesieve::valid_script_name`]
//! (no `/`, no `..`, no leading dot, no control characters, bounded); it is checked again
//! here before any path is built.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use postern_managesieve::{Request, StoreError, StoreReply, valid_script_name};

/// Name given to a regular active-script file moved into the storage.
pub const MIGRATED_NAME: &str = "dovecot.orig";
const EXT: &str = ".sieve";

/// One user's scripts.
#[derive(Debug, Clone)]
pub struct ScriptStore {
    /// The user's home directory.
    pub home: PathBuf,
    /// `<home>/sieve`.
    pub dir: PathBuf,
    /// The active-script link (`[lmtp] sieve_script`).
    pub active: PathBuf,
    /// Most scripts.
    pub max_scripts: usize,
    /// Largest script, in bytes.
    pub max_size: u64,
}

fn try_later(what: &str, e: &io::Error) -> StoreError {
    tracing::warn!(error = %e, "managesieve: {what} failed");
    StoreError::TryLater(format!("{what} failed"))
}

impl ScriptStore {
    /// The store of a user whose home is `home` and whose active link is `active`.
    pub fn new(home: PathBuf, active: PathBuf, max_scripts: usize, max_size: u64) -> Self {
        Self {
            dir: home.join("sieve"),
            home,
            active,
            max_scripts,
            max_size,
        }
    }

    fn path(&self, name: &str) -> Result<PathBuf, StoreError> {
        valid_script_name(name).map_err(|_| StoreError::NonExistent)?;
        Ok(self.dir.join(format!("{name}{EXT}")))
    }

    /// What the active link points to for `name`.
    fn link_target(&self, name: &str) -> PathBuf {
        let file = format!("{name}{EXT}");
        if self.active.parent() == Some(self.home.as_path()) {
            Path::new("sieve").join(file)
        } else {
            self.dir.join(file)
        }
    }

    /// Carries out one request. `compile` checks a script (Ok, or the error with its line).
    pub fn handle(
        &self,
        req: Request,
        compile: &dyn Fn(&str) -> Result<(), String>,
    ) -> Result<StoreReply, StoreError> {
        match req {
            Request::Check(script) => {
                compile(&script).map_err(StoreError::Invalid)?;
                Ok(StoreReply::Done(None))
            }
            Request::List => self.list().map(StoreReply::Listed),
            Request::Get(name) => self.get(&name).map(StoreReply::Script),
            Request::Put { name, script } => {
                if script.len() as u64 > self.max_size {
                    return Err(StoreError::MaxSize);
                }
                compile(&script).map_err(StoreError::Invalid)?;
                self.put(&name, script.as_bytes())?;
                Ok(StoreReply::Done(None))
            }
            Request::SetActive(name) => {
                self.set_active(name.as_deref())?;
                Ok(StoreReply::Done(None))
            }
            Request::Delete(name) => {
                self.delete(&name)?;
                Ok(StoreReply::Done(None))
            }
            Request::Rename { from, to } => {
                self.rename(&from, &to)?;
                Ok(StoreReply::Done(None))
            }
            Request::HaveSpace { name, size } => {
                if size > self.max_size {
                    return Err(StoreError::MaxSize);
                }
                self.check_count(&name)?;
                Ok(StoreReply::Done(None))
            }
        }
    }

    /// The script names, sorted.
    fn names(&self) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(try_later("reading the script directory", &e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| try_later("reading the script directory", &e))?;
            let Ok(file) = entry.file_name().into_string() else {
                continue;
            };
            let Some(name) = file.strip_suffix(EXT) else {
                continue;
            };
            if valid_script_name(name).is_err() {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The active script's name: the link points at `sieve/<name>.sieve` and it exists.
    pub fn active_name(&self) -> Option<String> {
        let target = fs::read_link(&self.active).ok()?;
        let target = match self.active.parent() {
            Some(p) if target.is_relative() => p.join(target),
            _ => target,
        };
        let parent = target.parent()?;
        if parent != self.dir
            && fs::canonicalize(parent).ok()? != fs::canonicalize(&self.dir).ok()?
        {
            return None;
        }
        let name = target.file_name()?.to_str()?.strip_suffix(EXT)?;
        valid_script_name(name).ok()?;
        target.is_file().then(|| name.to_owned())
    }

    fn list(&self) -> Result<Vec<(String, bool)>, StoreError> {
        self.migrate()?;
        let active = self.active_name();
        Ok(self
            .names()?
            .into_iter()
            .map(|n| {
                let a = active.as_deref() == Some(n.as_str());
                (n, a)
            })
            .collect())
    }

    fn get(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        self.migrate()?;
        let path = self.path(name)?;
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::NonExistent),
            Err(e) => return Err(try_later("reading the script", &e)),
        };
        if !f.metadata().is_ok_and(|m| m.is_file()) {
            return Err(StoreError::NonExistent);
        }
        // Scripts put there by hand may be larger than what we accept; send at most 1 MiB
        // more than the limit rather than reading without end.
        let cap = self.max_size.max(1 << 20);
        let mut out = Vec::new();
        f.take(cap + 1)
            .read_to_end(&mut out)
            .map_err(|e| try_later("reading the script", &e))?;
        if out.len() as u64 > cap {
            return Err(StoreError::TryLater(
                "the stored script is too large".into(),
            ));
        }
        Ok(out)
    }

    fn exists(&self, name: &str) -> Result<bool, StoreError> {
        let path = self.path(name)?;
        match fs::symlink_metadata(&path) {
            Ok(m) => Ok(m.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(try_later("looking up the script", &e)),
        }
    }

    /// Refuses a new script beyond the count limit (replacing one is always fine).
    fn check_count(&self, name: &str) -> Result<(), StoreError> {
        if self.exists(name)? {
            return Ok(());
        }
        let mut count = self.names()?.len();
        // A regular active file becomes a script at the first change.
        if self.regular_active_file() {
            count += 1;
        }
        if count >= self.max_scripts {
            return Err(StoreError::MaxScripts);
        }
        Ok(())
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        match fs::create_dir(&self.dir) {
            Ok(()) => {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| try_later("creating the script directory", &e))?;
                sync_dir(&self.home).map_err(|e| try_later("syncing the home directory", &e))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(try_later("creating the script directory", &e)),
        }
    }

    /// Writes `bytes` as `<dir>/<file>` atomically (temporary file, fsync, rename, fsync dir).
    fn write_atomic(&self, file: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.ensure_dir()?;
        let tmp = self.dir.join(temp_name(file));
        let r = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, self.dir.join(file))?;
            sync_dir(&self.dir)
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(try_later("storing the script", &e));
        }
        Ok(())
    }

    fn put(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.path(name)?;
        self.migrate()?;
        self.check_count(name)?;
        self.write_atomic(&format!("{name}{EXT}"), bytes)
    }

    /// Points the active link at `name`, or removes it.
    fn set_active(&self, name: Option<&str>) -> Result<(), StoreError> {
        self.migrate()?;
        let Some(name) = name else {
            return match fs::symlink_metadata(&self.active) {
                Ok(m) if m.file_type().is_symlink() => fs::remove_file(&self.active)
                    .and_then(|()| sync_parent(&self.active))
                    .map_err(|e| try_later("deactivating the script", &e)),
                // Nothing active (migrate() left no regular file behind).
                _ => Ok(()),
            };
        };
        if !self.exists(name)? {
            return Err(StoreError::NonExistent);
        }
        self.link_active(name)
    }

    /// Makes the active link point at `name`, replacing any link atomically.
    fn link_active(&self, name: &str) -> Result<(), StoreError> {
        let Some(parent) = self.active.parent() else {
            return Err(StoreError::TryLater(
                "no place for the active script".into(),
            ));
        };
        let file = self
            .active
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = parent.join(temp_name(&file));
        let r = (|| -> io::Result<()> {
            fs::create_dir_all(parent)?;
            std::os::unix::fs::symlink(self.link_target(name), &tmp)?;
            fs::rename(&tmp, &self.active)?;
            sync_dir(parent)
        })();
        if let Err(e) = r {
            let _ = fs::remove_file(&tmp);
            return Err(try_later("activating the script", &e));
        }
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.migrate()?;
        if !self.exists(name)? {
            return Err(StoreError::NonExistent);
        }
        if self.active_name().as_deref() == Some(name) {
            return Err(StoreError::Active);
        }
        fs::remove_file(self.path(name)?)
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| try_later("deleting the script", &e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        self.migrate()?;
        let (old, new) = (self.path(from)?, self.path(to)?);
        if !self.exists(from)? {
            return Err(StoreError::NonExistent);
        }
        if from == to {
            return Ok(());
        }
        // A hard link never replaces an existing file, so a race cannot clobber `to`; the
        // active link is moved before the old name goes, so it never dangles.
        match fs::hard_link(&old, &new) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StoreError::AlreadyExists);
            }
            Err(e) => return Err(try_later("renaming the script", &e)),
        }
        if self.active_name().as_deref() == Some(from)
            && let Err(e) = self.link_active(to)
        {
            let _ = fs::remove_file(&new);
            return Err(e);
        }
        fs::remove_file(&old)
            .and_then(|()| sync_dir(&self.dir))
            .map_err(|e| try_later("renaming the script", &e))
    }

    fn regular_active_file(&self) -> bool {
        fs::symlink_metadata(&self.active).is_ok_and(|m| m.is_file())
    }

    /// A regular file where the active link belongs becomes the script [`MIGRATED_NAME`]
    /// (or `dovecot.orig-N` if that is taken), linked as the active one.
    fn migrate(&self) -> Result<(), StoreError> {
        if !self.regular_active_file() {
            return Ok(());
        }
        let mut text = Vec::new();
        File::open(&self.active)
            .and_then(|f| f.take(self.max_size.max(1 << 20)).read_to_end(&mut text))
            .map_err(|e| try_later("reading the active script", &e))?;
        let mut name = MIGRATED_NAME.to_owned();
        let mut n = 1;
        while self.exists(&name)? {
            n += 1;
            name = format!("{MIGRATED_NAME}-{n}");
        }
        self.write_atomic(&format!("{name}{EXT}"), &text)?;
        // The link replaces the file in one rename: delivery never sees no script.
        self.link_active(&name)?;
        tracing::info!(active = %self.active.display(), script = %name, "managesieve: moved the active script file into the script storage");
        Ok(())
    }
}

/// A temporary name in the same directory: hidden (never a valid script name), unique.
fn temp_name(file: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        ".{file}.{}.{}.{nanos}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) => sync_dir(p),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(home: &Path) -> ScriptStore {
        ScriptStore::new(home.to_owned(), home.join(".dovecot.sieve"), 3, 100)
    }

    fn ok(_: &str) -> Result<(), String> {
        Ok(())
    }

    fn put(s: &ScriptStore, name: &str, text: &str) -> Result<StoreReply, StoreError> {
        s.handle(
            Request::Put {
                name: name.into(),
                script: text.into(),
            },
            &ok,
        )
    }

    fn list(s: &ScriptStore) -> Vec<(String, bool)> {
        match s.handle(Request::List, &ok) {
            Ok(StoreReply::Listed(l)) => l,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pigeonhole_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        assert_eq!(list(&s), vec![]);
        put(&s, "main", "keep;\n").unwrap();
        put(&s, "vacation", "discard;\n").unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("sieve/main.sieve")).unwrap(),
            "keep;\n"
        );
        s.handle(Request::SetActive(Some("main".into())), &ok)
            .unwrap();
        assert_eq!(
            fs::read_link(tmp.path().join(".dovecot.sieve")).unwrap(),
            Path::new("sieve/main.sieve")
        );
        // What lmtp-deliver reads: the link opened as a file.
        assert_eq!(
            fs::read_to_string(tmp.path().join(".dovecot.sieve")).unwrap(),
            "keep;\n"
        );
        assert_eq!(
            list(&s),
            vec![("main".into(), true), ("vacation".into(), false)]
        );
        // Replacing the active script keeps it active, with the new text.
        put(&s, "main", "stop;\n").unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join(".dovecot.sieve")).unwrap(),
            "stop;\n"
        );
        assert_eq!(
            s.handle(Request::Delete("main".into()), &ok),
            Err(StoreError::Active)
        );
        assert_eq!(
            s.handle(Request::Get("main".into()), &ok),
            Ok(StoreReply::Script(b"stop;\n".to_vec()))
        );
        // No temporary files are left behind.
        let leftovers: Vec<_> = fs::read_dir(tmp.path().join("sieve"))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn rename_delete_and_deactivate() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        put(&s, "a", "keep;").unwrap();
        put(&s, "b", "keep;").unwrap();
        s.handle(Request::SetActive(Some("a".into())), &ok).unwrap();
        let rename = |from: &str, to: &str| {
            s.handle(
                Request::Rename {
                    from: from.into(),
                    to: to.into(),
                },
                &ok,
            )
        };
        assert_eq!(rename("a", "b"), Err(StoreError::AlreadyExists));
        assert_eq!(rename("x", "y"), Err(StoreError::NonExistent));
        rename("a", "c").unwrap();
        // The active script follows its new name.
        assert_eq!(s.active_name().as_deref(), Some("c"));
        assert_eq!(list(&s), vec![("b".into(), false), ("c".into(), true)]);
        assert_eq!(
            s.handle(Request::Delete("nope".into()), &ok),
            Err(StoreError::NonExistent)
        );
        s.handle(Request::Delete("b".into()), &ok).unwrap();
        s.handle(Request::SetActive(None), &ok).unwrap();
        assert!(fs::symlink_metadata(tmp.path().join(".dovecot.sieve")).is_err());
        s.handle(Request::Delete("c".into()), &ok).unwrap();
        assert_eq!(list(&s), vec![]);
        assert_eq!(
            s.handle(Request::SetActive(Some("c".into())), &ok),
            Err(StoreError::NonExistent)
        );
    }

    #[test]
    fn limits_and_validation() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        for n in ["a", "b", "c"] {
            put(&s, n, "keep;").unwrap();
        }
        assert_eq!(put(&s, "d", "keep;"), Err(StoreError::MaxScripts));
        assert_eq!(
            s.handle(
                Request::HaveSpace {
                    name: "d".into(),
                    size: 10
                },
                &ok
            ),
            Err(StoreError::MaxScripts)
        );
        // Replacing one is fine at the limit.
        put(&s, "a", "discard;").unwrap();
        assert_eq!(
            s.handle(
                Request::HaveSpace {
                    name: "a".into(),
                    size: 100
                },
                &ok
            ),
            Ok(StoreReply::Done(None))
        );
        assert_eq!(
            s.handle(
                Request::HaveSpace {
                    name: "a".into(),
                    size: 101
                },
                &ok
            ),
            Err(StoreError::MaxSize)
        );
        assert_eq!(put(&s, "a", &"#".repeat(101)), Err(StoreError::MaxSize));
        let bad = |_: &str| Err("line 2: unknown command 'kep'".to_owned());
        assert_eq!(
            s.handle(
                Request::Put {
                    name: "a".into(),
                    script: "x".into()
                },
                &bad
            ),
            Err(StoreError::Invalid("line 2: unknown command 'kep'".into()))
        );
        assert_eq!(
            s.handle(Request::Check("x".into()), &bad),
            Err(StoreError::Invalid("line 2: unknown command 'kep'".into()))
        );
        // A failed PUTSCRIPT leaves the old text.
        assert_eq!(
            fs::read_to_string(tmp.path().join("sieve/a.sieve")).unwrap(),
            "discard;"
        );
        // Names that escape the directory never become paths.
        assert_eq!(
            s.handle(Request::Get("../../etc/passwd".into()), &ok),
            Err(StoreError::NonExistent)
        );
    }

    #[test]
    fn a_regular_active_file_is_kept_as_a_script() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        // As `mailctl sieve put` leaves it when no link exists.
        fs::write(tmp.path().join(".dovecot.sieve"), "keep;\n").unwrap();
        assert_eq!(list(&s), vec![(MIGRATED_NAME.into(), true)]);
        assert!(
            fs::symlink_metadata(tmp.path().join(".dovecot.sieve"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::read_to_string(tmp.path().join(".dovecot.sieve")).unwrap(),
            "keep;\n"
        );
        // `mailctl sieve put` writes through the link (canonicalised path): we see it.
        let target = fs::canonicalize(tmp.path().join(".dovecot.sieve")).unwrap();
        fs::write(&target, "discard;\n").unwrap();
        assert_eq!(
            s.handle(Request::Get(MIGRATED_NAME.into()), &ok),
            Ok(StoreReply::Script(b"discard;\n".to_vec()))
        );
    }

    #[test]
    fn a_link_elsewhere_is_not_an_active_script() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        put(&s, "a", "keep;").unwrap();
        fs::write(tmp.path().join("other.sieve"), "keep;").unwrap();
        std::os::unix::fs::symlink("other.sieve", tmp.path().join(".dovecot.sieve")).unwrap();
        assert_eq!(list(&s), vec![("a".into(), false)]);
        s.handle(Request::SetActive(Some("a".into())), &ok).unwrap();
        assert_eq!(list(&s), vec![("a".into(), true)]);
        // An active link outside the home directory is absolute.
        let elsewhere = tmp.path().join("links/active.sieve");
        let s2 = ScriptStore::new(tmp.path().to_owned(), elsewhere.clone(), 3, 100);
        s2.handle(Request::SetActive(Some("a".into())), &ok)
            .unwrap();
        assert_eq!(
            fs::read_link(&elsewhere).unwrap(),
            tmp.path().join("sieve/a.sieve")
        );
        assert_eq!(s2.active_name().as_deref(), Some("a"));
    }
}
