//! `[database]`: the account database and its overridable lookup SQL.

use std::num::NonZeroU32;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ConfigError;
use crate::Millis;
use crate::duration::count_u32;

/// `[database]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite:///path/postern.db`, `postgres://user@host/db` or `mysql://user@host/db`.
    /// A relative SQLite path is relative to the config file's directory.
    #[serde(default = "default_db_url")]
    pub url: String,
    /// A file whose first line is the database password; it replaces any password in `url`.
    /// The environment variable `POSTERN_DB_PASSWORD` does the same and wins over the file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections in the pool.
    #[serde(
        default = "default_max_connections",
        deserialize_with = "crate::duration::at_least_one_u32"
    )]
    pub max_connections: NonZeroU32,
    /// How long a query waits for a pooled connection (including connecting one) before
    /// it fails with a temporary failure.
    #[serde(default = "default_acquire_timeout_ms")]
    pub acquire_timeout_ms: Millis<1>,
    /// After the database was found unreachable, queries fail at once (a temporary
    /// failure) for this long; then one query at a time tries to reconnect.
    #[serde(default = "default_down_retry_ms")]
    pub down_retry_ms: Millis<1>,
    /// Lookup SQL to use instead of Postern's own schema (for an existing Postfix/Dovecot database).
    #[serde(default)]
    pub queries: Queries,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: default_db_url(),
            password_file: None,
            max_connections: default_max_connections(),
            acquire_timeout_ms: default_acquire_timeout_ms(),
            down_retry_ms: default_down_retry_ms(),
            queries: Queries::default(),
        }
    }
}

fn default_db_url() -> String {
    "sqlite:///var/lib/postern/postern.db".to_owned()
}
fn default_max_connections() -> NonZeroU32 {
    count_u32(8)
}
fn default_acquire_timeout_ms() -> Millis<1> {
    Millis::new(2000)
}
fn default_down_retry_ms() -> Millis<1> {
    Millis::new(1000)
}

/// `[database.queries]`: each lookup's SQL, overridable.
///
/// Placeholders: `%u` the key looked up (a whole address, or `@domain` for catch-alls),
/// `%d` its domain, `%n` its local part. They become bound parameters, never text pasted
/// into the SQL, so they need no quoting (`'%u'` is accepted and means the same).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    /// Returns a row when `%d` is one of our domains.
    pub domain: Option<String>,
    /// Returns `address, password, quota_bytes, enabled` for the account `%u`.
    pub account: Option<String>,
    /// Returns one or more rows of destinations (each may be a comma-separated list) for `%u`.
    pub alias: Option<String>,
    /// Returns the logins allowed to send as `%u`, besides the account itself and alias owners.
    pub sender: Option<String>,
    /// Returns the address of every account (userdb LIST).
    pub list: Option<String>,
    /// Stores a new hash: `%p` the hash, `%u` the address. Used when rehashing after login.
    pub password_update: Option<String>,
    /// Returns the node the account `%u` lives on (`[proxy]`; empty or NULL = this node).
    /// Unset with a custom `account` query: a 5th column of that query, if any, is the host.
    /// A 2nd column of this query (or a 6th of the account query) is the node the account
    /// is being moved to (`mailctl user move`; empty = not moving); without one it never moves.
    pub host: Option<String>,
}

impl Queries {
    /// True when any lookup is overridden (Postern's own schema may not be there).
    pub fn any_overridden(&self) -> bool {
        self.domain.is_some()
            || self.account.is_some()
            || self.alias.is_some()
            || self.sender.is_some()
            || self.list.is_some()
            || self.host.is_some()
    }
}

/// Puts `secret` (percent-encoded) as the password into a `scheme://user[:pw]@host/…` URL.
pub(crate) fn with_password(url: &str, secret: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ConfigError::Invalid("database.url has no ://".into()))?;
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = authority.rsplit_once('@').ok_or_else(|| {
        ConfigError::Invalid("database.url needs a user (user@host) to take a password".into())
    })?;
    let user = userinfo.split(':').next().unwrap_or("");
    let mut enc = String::new();
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{enc}@{host}{tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_goes_into_url_encoded() {
        assert_eq!(
            with_password("postgres://postern@db.local:5432/mail", "p@ss word").unwrap(),
            "postgres://postern:p%40ss%20word@db.local:5432/mail"
        );
        assert!(with_password("postgres://db.local/mail", "x").is_err());
    }

    #[test]
    fn outage_timeouts_default_and_parse() {
        let base = std::path::Path::new("/etc/postern");
        let c = crate::Config::parse("hostname = \"mx.example.org\"\n", base).unwrap();
        assert_eq!(c.database.acquire_timeout_ms.get(), 2000);
        assert_eq!(c.database.down_retry_ms.get(), 1000);
        let c = crate::Config::parse(
            "hostname = \"mx.example.org\"\n[database]\nacquire_timeout_ms = 300\ndown_retry_ms = 0\n",
            base,
        )
        .unwrap();
        assert_eq!(c.database.acquire_timeout_ms.get(), 300);
        // 0 would mean no back-off at all: raised to the floor, 1 ms.
        assert_eq!(c.database.down_retry_ms.get(), 1);
    }
}
