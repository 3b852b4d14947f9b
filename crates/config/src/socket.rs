//! Unix sockets the daemons listen on (`[authd.auth_socket]`, `[lmtp.socket]`, …).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// A Unix socket to listen on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSpec {
    /// File name; a relative one lives in the run directory.
    pub path: PathBuf,
    /// Permission bits, octal as a string (`"0660"`).
    #[serde(default = "default_socket_mode")]
    pub mode: String,
    /// Owner user name (needs root to change); unset keeps the daemon's own.
    #[serde(default)]
    pub owner: Option<String>,
    /// Owner group name; unset keeps the daemon's own.
    #[serde(default)]
    pub group: Option<String>,
}

impl SocketSpec {
    pub(crate) fn named(name: &str) -> Self {
        Self {
            path: PathBuf::from(name),
            mode: default_socket_mode(),
            owner: None,
            group: None,
        }
    }

    /// The mode bits.
    pub fn mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                ConfigError::Invalid(format!("socket mode {:?} is not octal", self.mode))
            })
    }
}

fn default_socket_mode() -> String {
    "0660".to_owned()
}
