//! The crate's error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::id::QueueId;

/// Result with a [`QueueError`].
pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
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
    /// A spool file failed its format checks.
    #[error("corrupt queue file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The message is larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Size of the message.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The envelope does not fit in [`MAX_ENVELOPE_JSON`](crate::MAX_ENVELOPE_JSON) bytes.
    #[error("envelope of {size} bytes exceeds the limit of {max} bytes")]
    EnvelopeTooLarge {
        /// Size of the JSON envelope.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// No message with this id is in the spool.
    #[error("queue id {0} not found")]
    NotFound(QueueId),
    /// The committer's background task is gone (shut down or panicked).
    #[error("queue committer is not running")]
    Closed,
}

impl QueueError {
    /// Whether this error says the message does not exist.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::NotFound(_) => true,
            Self::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            _ => false,
        }
    }

    /// A copy of this error for a second receiver (`io::Error` is not `Clone`).
    pub(crate) fn duplicate(&self) -> Self {
        match self {
            Self::Io { op, path, source } => Self::Io {
                op,
                path: path.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Self::Corrupt { path, reason } => Self::Corrupt {
                path: path.clone(),
                reason: reason.clone(),
            },
            Self::TooLarge { size, max } => Self::TooLarge {
                size: *size,
                max: *max,
            },
            Self::EnvelopeTooLarge { size, max } => Self::EnvelopeTooLarge {
                size: *size,
                max: *max,
            },
            Self::NotFound(id) => Self::NotFound(*id),
            Self::Closed => Self::Closed,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        Self::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}

/// Attaches the operation and path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| QueueError::Io {
            op,
            path: path.to_path_buf(),
            source,
        })
    }
}
