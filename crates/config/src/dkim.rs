//! `[dkim]`: signing outbound mail.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::default_true;

/// `[dkim]`: signing outbound mail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// Sign outbound mail whose From: domain has a key.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Keys: `KEY_DIR/DOMAIN/SELECTOR.key` (PEM; RSA or Ed25519), as `mailctl dkim generate`
    /// writes them. Every key of a domain signs (an RSA and an Ed25519 key make two
    /// signatures). Default: `<state_dir>/dkim`.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
}

impl Default for Dkim {
    fn default() -> Self {
        Self {
            enabled: true,
            key_dir: None,
        }
    }
}
