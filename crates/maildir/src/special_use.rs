//! Special-use attributes (RFC 6154) given to a folder when it is created
//! (`CREATE name (USE (\Sent))`, RFC 6154 §3), kept with the folder.
//!
//! A folder's attribute is the one line of [`SPECIAL_USE_FILE`] in its own directory, so
//! deleting the folder removes it and renaming the folder carries it (the directory moves).
//! The folders created at first login ([`crate::folder::SPECIAL_USE`]: `Sent`, `Drafts`, …)
//! have their attribute by name; a stored attribute takes precedence, and a name's default
//! attribute is dropped when another folder holds it stored (one folder per attribute).
//!
//! The root holds an empty [`SPECIAL_USE_FILE`] once any folder was given an attribute: until
//! then LIST opens no attribute file per folder (the common case costs one `stat`).
//!
//! Creation is serialised per user by the dotlock `postern-special-use.lock` in the root, so
//! two sessions cannot both give `\Sent` to a new folder. The folder is created (fsynced),
//! then the attribute file is written (temporary name, fsync, rename, directory fsync); when
//! that fails the folder is removed again. A crash between the two leaves the folder without
//! its attribute.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::time::Duration;

use crate::dotlock::DotLock;
use crate::error::{MaildirError, Result};
use crate::folder::SPECIAL_USE;
use crate::fsutil::{create_excl, fsync_dir, is_not_found, random_hex, replace_file};
use crate::store::Maildir;

/// The file in a folder's directory that holds its special-use attribute.
pub const SPECIAL_USE_FILE: &str = "postern-special-use";
/// Longest attribute read from a file (the registered ones are far shorter).
const MAX_ATTR: usize = 64;
const LOCK_WAIT: Duration = Duration::from_secs(30);
const LOCK_STALE: Duration = Duration::from_secs(30);

/// What [`Maildir::create_folder_with_special_use`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecialUseCreated {
    /// The folder was created with the attribute.
    Created,
    /// A folder of that name exists already; nothing was changed.
    Exists,
    /// Another folder (named here) has the attribute; nothing was created.
    InUse(String),
}

impl Maildir {
    /// The attribute stored for a folder (`None` for INBOX, for a folder without one, and for
    /// a file that does not hold one attribute).
    pub fn stored_special_use(&self, name: &str) -> Result<Option<String>> {
        let dir = self.mailbox_dir(Some(name))?;
        if dir == self.root() {
            return Ok(None);
        }
        let path = dir.join(SPECIAL_USE_FILE);
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(MaildirError::io("open", &path, e)),
        };
        let mut buf = Vec::with_capacity(MAX_ATTR);
        f.take(MAX_ATTR as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| MaildirError::io("read", &path, e))?;
        let text = String::from_utf8_lossy(&buf);
        let attr = text.trim_end_matches('\n');
        Ok(valid_attr(attr).then(|| attr.to_owned()))
    }

    /// The special-use attribute of each of `folders` that has one (see the
    /// [module documentation](self)): stored attributes, then the default ones by name for
    /// attributes no folder holds stored. One attribute file opened per folder.
    pub fn special_uses<'a>(
        &self,
        folders: impl IntoIterator<Item = &'a str>,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut defaults = Vec::new();
        // No folder was ever given an attribute: nothing to open per folder.
        let any_stored = self.root().join(SPECIAL_USE_FILE).exists();
        for name in folders {
            let stored = if any_stored {
                self.stored_special_use(name).ok().flatten()
            } else {
                None
            };
            match stored {
                Some(a) => {
                    out.insert(name.to_owned(), a);
                }
                None => {
                    if let Some((_, a)) = SPECIAL_USE.iter().find(|(n, _)| *n == name) {
                        defaults.push((name.to_owned(), *a));
                    }
                }
            }
        }
        for (name, attr) in defaults {
            if !out.values().any(|a| a.eq_ignore_ascii_case(attr)) {
                out.insert(name, attr.to_owned());
            }
        }
        out
    }

    /// Creates a folder holding `attr` (one attribute, `\Name` syntax), unless a folder of
    /// that name exists or another existing folder holds `attr` (stored, or by its default
    /// name). Parents are not created (as [`Maildir::create_folder`]).
    pub fn create_folder_with_special_use(
        &self,
        name: &str,
        attr: &str,
    ) -> Result<SpecialUseCreated> {
        if !valid_attr(attr) {
            return Err(MaildirError::NotPermitted(format!(
                "{attr:?} is no special-use attribute"
            )));
        }
        let dir = self.mailbox_dir(Some(name))?;
        if dir == self.root() {
            return Ok(SpecialUseCreated::Exists);
        }
        let _lock = DotLock::acquire(
            &self.root().join(SPECIAL_USE_FILE),
            LOCK_WAIT,
            LOCK_STALE,
            self.file_mode(),
        )?;
        if dir.is_dir() {
            return Ok(SpecialUseCreated::Exists);
        }
        let folders = self.list_folders()?;
        let uses = self.special_uses(folders.iter().map(String::as_str));
        if let Some((holder, _)) = uses.iter().find(|(_, a)| a.eq_ignore_ascii_case(attr)) {
            return Ok(SpecialUseCreated::InUse(holder.clone()));
        }
        self.mark_special_use_stored()?;
        if !self.create_folder(name)? {
            return Ok(SpecialUseCreated::Exists);
        }
        let tmp = dir.join(format!("tmp/{SPECIAL_USE_FILE}.{}", random_hex()));
        let target = dir.join(SPECIAL_USE_FILE);
        if let Err(e) = replace_file(
            &tmp,
            &target,
            format!("{attr}\n").as_bytes(),
            self.file_mode(),
        ) {
            let _ = self.delete_folder(name);
            return Err(e);
        }
        Ok(SpecialUseCreated::Created)
    }
}

impl Maildir {
    /// Creates the root's [`SPECIAL_USE_FILE`] (durably), which says some folder may have an
    /// attribute stored: without it, [`Maildir::special_uses`] opens no file per folder.
    fn mark_special_use_stored(&self) -> Result<()> {
        let marker = self.root().join(SPECIAL_USE_FILE);
        match create_excl(&marker, self.file_mode()) {
            Ok(f) => {
                f.sync_all()
                    .map_err(|e| MaildirError::io("fsync", &marker, e))?;
                fsync_dir(self.root())
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(MaildirError::io("create", &marker, e)),
        }
    }
}

/// `\` and 1–[`MAX_ATTR`] atom characters.
fn valid_attr(a: &str) -> bool {
    a.len() <= MAX_ATTR
        && a.strip_prefix('\\').is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_graphic() && !b"(){%*\"\\]".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Maildir) {
        let dir = tempfile::tempdir().unwrap();
        let md = Maildir::open_or_create(dir.path().join("Maildir"), 0o700).unwrap();
        (dir, md)
    }

    /// RFC 6154 §3: the attribute is the mailbox's, persistently: it survives a new
    /// `Maildir` value, follows a rename and goes with the folder.
    #[test]
    fn the_attribute_is_kept_with_the_folder() {
        let (_d, md) = setup();
        let marker = md.root().join(SPECIAL_USE_FILE);
        // An attribute file nobody announced (no marker) is not looked at.
        md.create_folder("Stray").unwrap();
        fs::write(md.root().join(".Stray").join(SPECIAL_USE_FILE), "\\Junk\n").unwrap();
        assert!(md.special_uses(["Stray"]).is_empty());
        assert_eq!(
            md.create_folder_with_special_use("Outgoing", "\\Sent")
                .unwrap(),
            SpecialUseCreated::Created
        );
        assert!(marker.is_file());
        assert_eq!(
            md.special_uses(["Stray"]).get("Stray").map(String::as_str),
            Some("\\Junk")
        );
        let again = Maildir::open_or_create(md.root(), 0o700).unwrap();
        assert_eq!(
            again.stored_special_use("Outgoing").unwrap().as_deref(),
            Some("\\Sent")
        );
        again.rename_folder("Outgoing", "Gone out").unwrap();
        assert_eq!(
            again.stored_special_use("Gone out").unwrap().as_deref(),
            Some("\\Sent")
        );
        let uses = again.special_uses(["Gone out", "Sent", "Trash"]);
        // The default Sent loses \Sent to the stored one; Trash keeps its default.
        assert_eq!(uses.get("Gone out").map(String::as_str), Some("\\Sent"));
        assert_eq!(uses.get("Sent"), None);
        assert_eq!(uses.get("Trash").map(String::as_str), Some("\\Trash"));
        again.delete_folder("Gone out").unwrap();
        again.create_folder("Gone out").unwrap();
        assert_eq!(again.stored_special_use("Gone out").unwrap(), None);
    }

    /// One folder per attribute: the default folder by name holds its attribute, and so
    /// does a folder created with it; a folder that exists is left alone.
    #[test]
    fn an_attribute_in_use_or_an_existing_name_creates_nothing() {
        let (_d, md) = setup();
        md.create_folder("Drafts").unwrap();
        assert_eq!(
            md.create_folder_with_special_use("Entwürfe", "\\Drafts")
                .unwrap(),
            SpecialUseCreated::InUse("Drafts".into())
        );
        assert!(!md.folder_exists("Entwürfe").unwrap());
        assert_eq!(
            md.create_folder_with_special_use("Drafts", "\\Junk")
                .unwrap(),
            SpecialUseCreated::Exists
        );
        assert_eq!(md.stored_special_use("Drafts").unwrap(), None);
        md.create_folder_with_special_use("Spam", "\\Junk").unwrap();
        assert_eq!(
            md.create_folder_with_special_use("Junk2", "\\junk")
                .unwrap(),
            SpecialUseCreated::InUse("Spam".into())
        );
        assert!(md.create_folder_with_special_use("X", "Sent").is_err());
        assert!(md.create_folder_with_special_use("../x", "\\Sent").is_err());
    }
}
