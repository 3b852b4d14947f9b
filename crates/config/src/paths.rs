//! `[paths]`: where things live on disk.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[paths]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// The run directory holding every socket (`auth`, `auth-userdb`, `socketmap`, `lmtp`, `smtpd`).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// State: queue, keys, database file for SQLite installs.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The root of the Maildir tree (`%d/%n/Maildir` below it by default).
    #[serde(default = "default_mail_root")]
    pub mail_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            run_dir: default_run_dir(),
            state_dir: default_state_dir(),
            mail_root: default_mail_root(),
        }
    }
}

fn default_run_dir() -> PathBuf {
    PathBuf::from("/run/postern")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/postern")
}
fn default_mail_root() -> PathBuf {
    PathBuf::from("/var/vmail")
}
