//! `[passwords]`: password policy and hashing.

use serde::{Deserialize, Serialize};

/// `[passwords]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Passwords {
    /// Shortest password `mailctl` accepts.
    #[serde(default = "default_min_length")]
    pub min_length: usize,
    /// Replace an old-scheme hash with argon2id after a successful login.
    #[serde(default)]
    pub rehash_to_argon2id: bool,
    /// Scheme assumed for a stored hash with no `{SCHEME}` prefix that is not recognisable
    /// by its shape (`$6$…`, `$argon2id$…`, …). Dovecot's `default_pass_scheme`.
    #[serde(default = "default_scheme")]
    pub default_scheme: String,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            min_length: default_min_length(),
            rehash_to_argon2id: false,
            default_scheme: default_scheme(),
        }
    }
}

fn default_min_length() -> usize {
    10
}
fn default_scheme() -> String {
    "CRYPT".to_owned()
}
