//! Error types.

use std::io;
use std::path::{Path, PathBuf};

/// Why a folder name was refused.
///
/// Names use `/` as the hierarchy separator (the IMAP view). On disk, Maildir++ joins the
/// components with `.`, so a `.` inside a component cannot be stored: Dovecot can escape it
/// (the `listescape` plugin), we refuse it instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("folder name is empty")]
    Empty,
    /// The name starts or ends with the separator `/`.
    #[error("folder name starts or ends with '/'")]
    EdgeSeparator,
    /// Two separators in a row (`a//b`).
    #[error("folder name has an empty component")]
    EmptyComponent,
    /// A component is `.` or `..`.
    #[error("folder name has a '.' or '..' component")]
    DotComponent,
    /// A component starts with `.`.
    #[error("folder name component starts with '.'")]
    LeadingDot,
    /// A component contains `.`, the Maildir++ on-disk separator.
    #[error("folder name contains '.', the Maildir++ separator on disk")]
    ContainsDot,
    /// The name contains a control character.
    #[error("folder name contains a control character")]
    ControlChar,
    /// The name, or its on-disk directory name, is too long.
    #[error("folder name is too long ({len} bytes, at most {max})")]
    TooLong {
        /// Length found.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// An on-disk directory name is not the one we would write for its folder name.
    #[error("directory name is not in canonical form")]
    NonCanonical,
    /// An on-disk name is not canonical modified UTF-7.
    #[error("directory name is not valid modified UTF-7: {0}")]
    Encoding(#[from] crate::mutf7::Mutf7Error),
}

/// Errors of the Maildir store.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    /// A file system operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation (`open`, `write`, `fsync`, …).
        op: &'static str,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A folder name was refused.
    #[error("invalid folder name {name:?}: {source}")]
    Name {
        /// The name as given.
        name: String,
        /// Why.
        #[source]
        source: NameError,
    },
    /// The folder does not exist (deliver does not create folders).
    #[error("folder {0:?} does not exist")]
    NoSuchFolder(String),
    /// A dotlock could not be taken in time.
    #[error("timed out waiting for lock {}", path.display())]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
    },
    /// The message is gone: expunged, possibly by another process, since the mailbox was
    /// last synced.
    #[error("message UID {0} has been expunged")]
    Expunged(u32),
    /// A folder of that name exists already (rename target).
    #[error("folder {0:?} already exists")]
    FolderExists(String),
    /// The operation is not allowed on that folder (deleting INBOX, renaming a folder into
    /// its own child, …).
    #[error("not permitted: {0}")]
    NotPermitted(String),
    /// The subscription list holds its most names (given) already: a new one is refused.
    #[error("too many subscriptions (at most {0})")]
    TooManySubscriptions(usize),
    /// A unique file name was already taken several times in a row.
    #[error("could not find a free unique name in {}", dir.display())]
    NameCollision {
        /// The `tmp/` directory.
        dir: PathBuf,
    },
}

impl MaildirError {
    /// Builds an [`MaildirError::Io`].
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: io::Error) -> Self {
        Self::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    /// The underlying I/O error kind, if this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Self::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// True when the error is worth retrying later (an LMTP 4xx rather than 5xx): I/O errors
    /// and lock timeouts are; a refused name or a missing folder is not.
    pub fn is_temporary(&self) -> bool {
        !matches!(
            self,
            Self::Name { .. }
                | Self::NoSuchFolder(_)
                | Self::Expunged(_)
                | Self::FolderExists(_)
                | Self::NotPermitted(_)
                | Self::TooManySubscriptions(_)
        )
    }
}

/// `Result` with [`MaildirError`].
pub type Result<T, E = MaildirError> = std::result::Result<T, E>;

/// Adds the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|e| MaildirError::io(op, path, e))
    }
}
