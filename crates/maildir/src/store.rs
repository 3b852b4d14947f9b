//! The Maildir root (INBOX) and its Maildir++ folders.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{IoContext, MaildirError, NameError, Result};
use crate::folder;
use crate::fsutil::{create_excl, fsync_dir, is_not_found, mkdir_mode, mkdir_parents};

/// The three directories of every mailbox.
pub const SUBDIRS: [&str; 3] = ["cur", "new", "tmp"];
/// The empty marker file Maildir++ puts in every folder (not in the root).
pub const MAILDIRFOLDER_FILE: &str = "maildirfolder";

/// One user's Maildir: the root directory is INBOX, folders are `.Name` directories in it.
///
/// Files are created with the directory mode minus the execute bits (`0o700` → `0o600`,
/// `0o770` → `0o660`), which is how Dovecot derives file permissions from directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maildir {
    root: PathBuf,
    dir_mode: u32,
    file_mode: u32,
}

impl Maildir {
    /// The usual directory mode.
    pub const DEFAULT_DIR_MODE: u32 = 0o700;

    /// Opens the Maildir at `path`, creating it (and missing parents) with `mode_dirs` when
    /// needed. An existing Maildir is used as it is; only missing `cur/ new/ tmp/` are added.
    /// Every directory created is made durable (its parent is fsynced).
    pub fn open_or_create(path: impl AsRef<Path>, mode_dirs: u32) -> Result<Self> {
        let md = Self::at(path, mode_dirs);
        md.ensure_root()?;
        Ok(md)
    }

    /// The Maildir at `path`, with `mode_dirs` for what it creates, touching nothing on disk.
    ///
    /// For delivery, which then makes what is missing only when a step finds it missing:
    /// [`Maildir::deliver`] creates the root (with its parents, as [`Maildir::open_or_create`]
    /// does) and `cur/ new/ tmp/` durably; [`Quota`](crate::Quota) counts a missing Maildir as
    /// empty; [`Maildir::create_folder`] creates the root first when it is missing.
    pub fn at(path: impl AsRef<Path>, mode_dirs: u32) -> Self {
        let dir_mode = (mode_dirs & 0o7777) | 0o700;
        Self {
            root: path.as_ref().to_path_buf(),
            dir_mode,
            file_mode: (dir_mode & 0o666) | 0o600,
        }
    }

    /// Creates the root with its missing parents and its missing `cur/ new/ tmp/`, durably.
    pub(crate) fn ensure_root(&self) -> Result<()> {
        mkdir_parents(&self.root, self.dir_mode)?;
        self.ensure_subdirs(&self.root)
    }

    /// The root directory (INBOX).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Mode for new directories.
    pub fn dir_mode(&self) -> u32 {
        self.dir_mode
    }

    /// Mode for new files.
    pub fn file_mode(&self) -> u32 {
        self.file_mode
    }

    /// Creates missing `cur/ new/ tmp/` in a mailbox directory; fsyncs it if any was created.
    pub(crate) fn ensure_subdirs(&self, dir: &Path) -> Result<()> {
        let mut created = false;
        for sub in SUBDIRS {
            created |= mkdir_mode(&dir.join(sub), self.dir_mode)?;
        }
        if created {
            fsync_dir(dir)?;
        }
        Ok(())
    }

    /// The directory of a folder: the root for INBOX, `<root>/.A.B` for `A/B`.
    pub fn folder_dir(&self, name: &str) -> Result<PathBuf, NameError> {
        Ok(match folder::dir_name(name)? {
            None => self.root.clone(),
            Some(dir) => self.root.join(dir),
        })
    }

    /// Like [`Maildir::folder_dir`], for `None` meaning INBOX, with the name error wrapped.
    pub(crate) fn mailbox_dir(&self, name: Option<&str>) -> Result<PathBuf> {
        match name {
            None => Ok(self.root.clone()),
            Some(n) => self.folder_dir(n).map_err(|source| MaildirError::Name {
                name: n.to_owned(),
                source,
            }),
        }
    }

    /// True if the folder's directory exists (INBOX always does once opened).
    pub fn folder_exists(&self, name: &str) -> Result<bool, NameError> {
        Ok(self.folder_dir(name)?.is_dir())
    }

    /// Creates a folder: its directory with `cur/ new/ tmp/` and an empty `maildirfolder` file,
    /// all fsynced. Maildir++ is flat, so parents (`A` for `A/B`) are not created, as in
    /// Dovecot. Missing parts of an existing folder are added. Returns `true` when the folder
    /// directory was created by this call, `false` when it existed (or is INBOX).
    pub fn create_folder(&self, name: &str) -> Result<bool> {
        let dir = self.mailbox_dir(Some(name))?;
        if dir == self.root {
            return Ok(false);
        }
        let created = match mkdir_mode(&dir, self.dir_mode) {
            // The Maildir itself is not there yet ([`Maildir::at`]).
            Err(MaildirError::Io {
                op: "mkdir",
                source,
                ..
            }) if is_not_found(&source) => {
                self.ensure_root()?;
                mkdir_mode(&dir, self.dir_mode)?
            }
            r => r?,
        };
        self.ensure_subdirs(&dir)?;
        let marker = dir.join(MAILDIRFOLDER_FILE);
        match create_excl(&marker, self.file_mode) {
            Ok(f) => {
                f.sync_all().ctx("fsync", &marker)?;
                fsync_dir(&dir)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(MaildirError::io("create", &marker, e)),
        }
        if created {
            fsync_dir(&self.root)?;
        }
        Ok(created)
    }

    /// Names of all folders (not INBOX), decoded and sorted. Directories whose names are not
    /// canonical Maildir++/modified UTF-7 are left out.
    pub fn list_folders(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .folder_dirs()?
            .iter()
            .filter_map(|(dir_name, _)| folder::from_dir_name(dir_name).ok())
            .filter(|n| n != "INBOX")
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every `.name` directory under the root, with its path, whether or not its name decodes.
    pub(crate) fn folder_dirs(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        let entries = fs::read_dir(&self.root).ctx("read directory", &self.root)?;
        for entry in entries {
            let entry = entry.ctx("read directory", &self.root)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !name.starts_with('.') || name == "." || name == ".." {
                continue;
            }
            let path = entry.path();
            // Follows symlinks, as Dovecot does for Maildir++ folders.
            match fs::metadata(&path) {
                Ok(md) if md.is_dir() => out.push((name, path)),
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(MaildirError::io("stat", &path, e)),
            }
        }
        Ok(out)
    }

    /// The root and every folder directory: what quota counts.
    pub(crate) fn mailbox_dirs(&self) -> Result<Vec<PathBuf>> {
        let mut dirs = vec![self.root.clone()];
        dirs.extend(self.folder_dirs()?.into_iter().map(|(_, p)| p));
        Ok(dirs)
    }
}
