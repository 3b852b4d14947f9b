//! Folder management for IMAP: DELETE, RENAME, subscriptions.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::dotlock::DotLock;
use crate::error::{IoContext, MaildirError, Result};
use crate::filename::size_field;
use crate::folder;
use crate::fsutil::{fsync_dir, is_not_found, random_hex};
use crate::mailbox::quota_adjust;
use crate::store::Maildir;
use crate::subscriptions::{self, SUBSCRIPTIONS_FILE};

/// Prefix of the directory a deleted folder is moved to before it is removed.
const TRASH_PREFIX: &str = "POSTERN-TRASHED.";
/// Dovecot's timeouts for the subscriptions lock.
const SUBS_LOCK_WAIT: Duration = Duration::from_secs(30);
const SUBS_LOCK_STALE: Duration = Duration::from_secs(30);

fn not_inbox(name: &str, what: &str) -> Result<()> {
    if folder::is_inbox(name) {
        return Err(MaildirError::NotPermitted(format!(
            "INBOX cannot be {what}"
        )));
    }
    Ok(())
}

/// Message names in `cur/` and `new/` of a mailbox directory, with their stored sizes.
fn message_usage(dir: &Path) -> (i64, i64) {
    let (mut bytes, mut count) = (0i64, 0i64);
    for sub in ["cur", "new"] {
        let Ok(entries) = fs::read_dir(dir.join(sub)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let size = size_field(&name, 'S')
                .or_else(|| e.metadata().ok().map(|m| m.len()))
                .unwrap_or(0);
            bytes += size as i64;
            count += 1;
        }
    }
    (bytes, count)
}

impl Maildir {
    /// Deletes a folder (not INBOX) with its messages: its directory is first renamed out of
    /// sight (fsynced, so the deletion is durable and atomic), then removed. Maildir++ is
    /// flat, so child folders (`name/x`) stay.
    pub fn delete_folder(&self, name: &str) -> Result<()> {
        not_inbox(name, "deleted")?;
        let dir = self.mailbox_dir(Some(name))?;
        if dir == self.root() || !dir.starts_with(self.root()) {
            return Err(MaildirError::NotPermitted("INBOX cannot be deleted".into()));
        }
        if !dir.is_dir() {
            return Err(MaildirError::NoSuchFolder(name.to_owned()));
        }
        self.remove_trash_leftovers();
        let (bytes, count) = message_usage(&dir);
        let trash = self.root().join(format!("{TRASH_PREFIX}{}", random_hex()));
        fs::rename(&dir, &trash).ctx("rename", &dir)?;
        fsync_dir(self.root())?;
        // Not following symlinks: a symlinked folder loses only its link.
        let _ = fs::remove_dir_all(&trash);
        if count > 0 {
            quota_adjust(self, -bytes, -count);
        }
        Ok(())
    }

    fn remove_trash_leftovers(&self) {
        let Ok(entries) = fs::read_dir(self.root()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(TRASH_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Renames a folder and its children (`from/x` → `to/x`). Renaming INBOX moves all its
    /// messages into a new folder `to` and leaves INBOX empty (RFC 3501). Fails with
    /// [`MaildirError::FolderExists`] when `to` (or a child's new name) exists.
    /// The folder keeps its UIDs and UIDVALIDITY (they live in its directory).
    pub fn rename_folder(&self, from: &str, to: &str) -> Result<()> {
        let from_dir = self.mailbox_dir(Some(from))?;
        let to_dir = self.mailbox_dir(Some(to))?;
        if folder::is_inbox(to) || to_dir == self.root() {
            return Err(MaildirError::FolderExists("INBOX".into()));
        }
        if !from_dir.is_dir() {
            return Err(MaildirError::NoSuchFolder(from.to_owned()));
        }
        if fs::symlink_metadata(&to_dir).is_ok() {
            return Err(MaildirError::FolderExists(to.to_owned()));
        }
        if from_dir == self.root() {
            return self.move_inbox_messages(&to_dir, to);
        }
        let (Some(from_name), Some(to_name)) = (
            folder::dir_name(from).ok().flatten(),
            folder::dir_name(to).ok().flatten(),
        ) else {
            return Err(MaildirError::NotPermitted("invalid rename".into()));
        };
        if to_name.starts_with(&format!("{from_name}.")) {
            return Err(MaildirError::NotPermitted(
                "a folder cannot be moved into itself".into(),
            ));
        }
        let prefix = format!("{from_name}.");
        let mut children = Vec::new();
        for (dir_name, path) in self.folder_dirs()? {
            if let Some(rest) = dir_name.strip_prefix(&prefix) {
                let target = format!("{to_name}.{rest}");
                if target.len() > folder::MAX_DIR_NAME_BYTES {
                    return Err(MaildirError::Name {
                        name: to.to_owned(),
                        source: crate::NameError::TooLong {
                            len: target.len(),
                            max: folder::MAX_DIR_NAME_BYTES,
                        },
                    });
                }
                let target_path = self.root().join(&target);
                if fs::symlink_metadata(&target_path).is_ok() {
                    let shown = folder::from_dir_name(&target).unwrap_or(target);
                    return Err(MaildirError::FolderExists(shown));
                }
                children.push((path, target_path));
            }
        }
        fs::rename(&from_dir, &to_dir).ctx("rename", &from_dir)?;
        for (src, dst) in children {
            fs::rename(&src, &dst).ctx("rename", &src)?;
        }
        fsync_dir(self.root())
    }

    fn move_inbox_messages(&self, to_dir: &Path, to: &str) -> Result<()> {
        self.create_folder(to)?;
        for sub in ["new", "cur"] {
            let src = self.root().join(sub);
            let dst = to_dir.join(sub);
            let entries = fs::read_dir(&src).ctx("read directory", &src)?;
            let mut moved = false;
            for e in entries {
                let e = e.ctx("read directory", &src)?;
                let name = e.file_name();
                if name.to_string_lossy().starts_with('.') {
                    continue;
                }
                match fs::rename(e.path(), dst.join(&name)) {
                    Ok(()) => moved = true,
                    Err(err) if is_not_found(&err) => {}
                    Err(err) => return Err(MaildirError::io("rename", e.path(), err)),
                }
            }
            if moved {
                fsync_dir(&dst)?;
                fsync_dir(&src)?;
            }
        }
        self.move_inbox_metadata(to_dir)
    }

    /// The subscribed mailbox names (`/` separator), from Dovecot's `subscriptions` file.
    pub fn subscriptions(&self) -> Result<Vec<String>> {
        let path = self.root().join(SUBSCRIPTIONS_FILE);
        match fs::read(&path) {
            Ok(d) => Ok(subscriptions::parse(&d)),
            Err(e) if is_not_found(&e) => Ok(Vec::new()),
            Err(e) => Err(MaildirError::io("read", &path, e)),
        }
    }

    /// Subscribes or unsubscribes a name (which need not exist, but must be a valid name),
    /// durably: the new file is written and fsynced under Dovecot's `subscriptions.lock`
    /// dotlock and renamed over the old one.
    pub fn set_subscribed(&self, name: &str, on: bool) -> Result<()> {
        folder::dir_name(name).map_err(|source| MaildirError::Name {
            name: name.to_owned(),
            source,
        })?;
        let name = if folder::is_inbox(name) {
            "INBOX"
        } else {
            name
        };
        let path = self.root().join(SUBSCRIPTIONS_FILE);
        let lock = DotLock::acquire(&path, SUBS_LOCK_WAIT, SUBS_LOCK_STALE, self.file_mode())?;
        let mut names = self.subscriptions()?;
        let before = names.len();
        if on {
            if !names.iter().any(|n| n == name) {
                if names.len() >= subscriptions::MAX_SUBSCRIPTIONS {
                    return Err(MaildirError::TooManySubscriptions(
                        subscriptions::MAX_SUBSCRIPTIONS,
                    ));
                }
                names.push(name.to_owned());
            }
        } else {
            names.retain(|n| n != name);
        }
        if names.len() == before {
            drop(lock);
            return Ok(());
        }
        lock.replace(subscriptions::format(&names).as_bytes())
    }

    /// Renames subscribed names (`(old, new)` pairs; an old name not subscribed is skipped),
    /// with one rewrite of the file for all of them (a RENAME of a folder with many
    /// subscribed children rewrote it twice per child). The count does not grow.
    pub fn rename_subscriptions(&self, pairs: &[(String, String)]) -> Result<()> {
        let norm = |n: &str| {
            if folder::is_inbox(n) {
                "INBOX".to_owned()
            } else {
                n.to_owned()
            }
        };
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(old, new)| (norm(old), norm(new)))
            .collect();
        let path = self.root().join(SUBSCRIPTIONS_FILE);
        let lock = DotLock::acquire(&path, SUBS_LOCK_WAIT, SUBS_LOCK_STALE, self.file_mode())?;
        let names = self.subscriptions()?;
        if !names.iter().any(|n| map.contains_key(n)) {
            drop(lock);
            return Ok(());
        }
        let mut seen = std::collections::HashSet::new();
        let renamed: Vec<String> = names
            .into_iter()
            .map(|n| map.get(&n).cloned().unwrap_or(n))
            .filter(|n| seen.insert(n.clone()))
            .collect();
        lock.replace(subscriptions::format(&renamed).as_bytes())
    }
}
