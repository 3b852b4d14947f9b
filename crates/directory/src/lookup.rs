//! Read-side lookups: domains, accounts, authentication, alias expansion, sender logins.

use std::collections::HashSet;
use std::sync::OnceLock;

use tracing::{info, warn};

use crate::address::{domain_of, normalize_address, normalize_alias_source};
use crate::password::{self, Verified};
use crate::{Directory, DirectoryError, sql};

/// How deep alias chains are followed.
const MAX_ALIAS_DEPTH: usize = 16;
/// How many destinations one expansion may produce.
const MAX_ALIAS_RESULTS: usize = 1000;

/// One account as the account query returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The canonical address (the login name).
    pub address: String,
    /// The stored hash (with or without a `{SCHEME}` prefix).
    pub password: String,
    /// Quota in bytes; 0 means none.
    pub quota_bytes: i64,
    /// Whether the account may log in.
    pub enabled: bool,
    /// The node the account lives on (`[proxy]`); empty = this node.
    pub host: String,
    /// The node the account is being moved to (`mailctl user move`); empty = not moving.
    /// While set, every node answers the account with a temporary failure (logins,
    /// deliveries, cluster routes). An account query without this column (a custom one of
    /// 4 or 5 columns) never moves.
    pub moving_to: String,
}

impl Account {
    /// True while `mailctl user move` has the account marked as moving.
    pub fn is_moving(&self) -> bool {
        !self.moving_to.is_empty()
    }
}

/// The answer to a login attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// The password matched; `user` is the canonical login.
    Ok {
        /// The canonical address.
        user: String,
    },
    /// No such account (or the login is not an address).
    UnknownUser,
    /// Wrong password.
    BadPassword,
    /// The account exists but is disabled.
    Disabled,
}

/// The result of expanding an alias key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasExpansion {
    /// The key is not an alias (and no catch-all applies).
    NotAlias,
    /// Final destinations: mailboxes, or foreign addresses mail is forwarded to.
    Targets(Vec<String>),
    /// Every path of the expansion ends in a loop.
    Loop,
}

impl Directory {
    /// True when `domain` is one of ours.
    pub async fn domain_exists(&self, domain: &str) -> Result<bool, DirectoryError> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Ok(false);
        }
        Ok(!self
            .inner
            .queries
            .domain
            .fetch(&self.inner.pool, &domain, None)
            .await?
            .is_empty())
    }

    /// The account `address`, if it exists.
    pub async fn account(&self, address: &str) -> Result<Option<Account>, DirectoryError> {
        self.account_with(address, true).await
    }

    /// The account; its host asked for too (a query of its own when `[database.queries]
    /// host` is set) when `with_host`.
    async fn account_with(
        &self,
        address: &str,
        with_host: bool,
    ) -> Result<Option<Account>, DirectoryError> {
        let Ok(address) = normalize_address(address) else {
            return Ok(None);
        };
        let rows = self
            .inner
            .queries
            .account
            .fetch(&self.inner.pool, &address, None)
            .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mut account = Account {
            address: sql::text(row, 0)?.unwrap_or(address).to_lowercase(),
            password: sql::text(row, 1)?.unwrap_or_default(),
            quota_bytes: sql::int(row, 2)?.unwrap_or(0).max(0),
            enabled: sql::int(row, 3)?.unwrap_or(1) != 0,
            host: if sqlx::Row::len(row) > 4 {
                sql::text(row, 4)?.unwrap_or_default()
            } else {
                String::new()
            },
            moving_to: if sqlx::Row::len(row) > 5 {
                sql::text(row, 5)?.unwrap_or_default()
            } else {
                String::new()
            },
        };
        if with_host && let Some(q) = &self.inner.queries.host {
            // The host query: the host, and optionally the move target as a 2nd column
            // (else the account query's, if it has one).
            let rows = q.fetch(&self.inner.pool, &account.address, None).await?;
            account.host = match rows.first() {
                Some(r) => {
                    if sqlx::Row::len(r) > 1 {
                        account.moving_to = sql::text(r, 1)?.unwrap_or_default();
                    }
                    sql::text(r, 0)?.unwrap_or_default()
                }
                None => String::new(),
            };
        }
        account.host = clean_host(&account.host);
        account.moving_to = clean_host(&account.moving_to);
        Ok(Some(account))
    }

    /// Checks a login and password. Unknown users cost as much time as known ones.
    pub async fn authenticate(
        &self,
        login: &str,
        secret: &str,
    ) -> Result<AuthOutcome, DirectoryError> {
        let account = self.account(login).await?;
        self.verify_account(account, secret).await
    }

    /// Checks `secret` against `account` (from [`Directory::account`]); `None` (no such
    /// account) is checked against a dummy argon2id hash, so it costs the same. Password
    /// checks run at most `hash_concurrency` at once; one that waits longer than
    /// `hash_queue_timeout_ms` for its turn fails with [`DirectoryError::Busy`].
    pub async fn verify_account(
        &self,
        account: Option<Account>,
        secret: &str,
    ) -> Result<AuthOutcome, DirectoryError> {
        // The dummy hash is made (once, an argon2id computation) on the blocking pool too,
        // never on the runtime's thread.
        let stored = account.as_ref().map(|a| a.password.clone());
        let scheme = self.inner.default_scheme.clone();
        let secret_owned = secret.to_owned();
        let verified = self
            .hashing(move || {
                let stored = match &stored {
                    Some(s) => s.as_str(),
                    None => dummy_hash(),
                };
                password::verify(stored, &secret_owned, &scheme)
            })
            .await?;
        let Some(account) = account else {
            return Ok(AuthOutcome::UnknownUser);
        };
        match verified? {
            Verified::Mismatch => Ok(AuthOutcome::BadPassword),
            Verified::Match { .. } if !account.enabled => Ok(AuthOutcome::Disabled),
            Verified::Match { rehash } => {
                if rehash && self.inner.rehash {
                    self.rehash(&account.address, secret).await;
                }
                Ok(AuthOutcome::Ok {
                    user: account.address,
                })
            }
        }
    }

    async fn rehash(&self, address: &str, secret: &str) {
        let Some(update) = &self.inner.queries.password_update else {
            return;
        };
        let secret = secret.to_owned();
        let Ok(Ok(hash)) = self.hashing(move || password::hash_new(&secret)).await else {
            return;
        };
        match update.execute(&self.inner.pool, address, Some(&hash)).await {
            Ok(_) => info!(user = address, "password rehashed to argon2id"),
            Err(e) => warn!(user = address, error = %e, "rehash failed"),
        }
    }

    /// Runs one password hash computation on the blocking pool once a hashing slot is free.
    async fn hashing<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DirectoryError> {
        let Ok(Ok(permit)) = tokio::time::timeout(
            self.inner.hash_wait,
            self.inner.hashing.clone().acquire_owned(),
        )
        .await
        else {
            return Err(DirectoryError::Busy(
                "too many password checks waiting".into(),
            ));
        };
        tokio::task::spawn_blocking(move || {
            let out = job();
            drop(permit);
            out
        })
        .await
        .map_err(|e| DirectoryError::Config(format!("password check failed: {e}")))
    }

    /// Every account address (userdb LIST).
    pub async fn list_logins(&self) -> Result<Vec<String>, DirectoryError> {
        let rows = self
            .inner
            .queries
            .list
            .fetch(&self.inner.pool, "", None)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            if let Some(a) = sql::text(r, 0)? {
                out.push(a.to_lowercase());
            }
        }
        Ok(out)
    }

    /// The raw destinations stored for an alias key (comma-separated values split).
    async fn alias_rows(&self, key: &str) -> Result<Vec<String>, DirectoryError> {
        let rows = self
            .inner
            .queries
            .alias
            .fetch(&self.inner.pool, key, None)
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let Some(v) = sql::text(r, 0)? else { continue };
            for part in v
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                match normalize_address(part) {
                    Ok(a) => out.push(a),
                    Err(e) => {
                        warn!(alias = key, error = %e, "ignoring malformed alias destination")
                    }
                }
            }
        }
        Ok(out)
    }

    /// True when `address` is an account.
    pub async fn is_mailbox(&self, address: &str) -> Result<bool, DirectoryError> {
        Ok(self.account_with(address, false).await?.is_some())
    }

    /// Expands an alias key (an address or `@domain`) recursively, loop-safe, with catch-alls.
    ///
    /// Explicit aliases win over mailboxes (an alias of a mailbox to itself plus others
    /// keeps a copy). An account with no alias of its own answers itself when its domain
    /// has a catch-all, so that Postfix, which also looks up `@domain`, does not send a
    /// real mailbox's mail to the catch-all.
    pub async fn expand_alias(&self, key: &str) -> Result<AliasExpansion, DirectoryError> {
        let Ok(key) = normalize_alias_source(key) else {
            return Ok(AliasExpansion::NotAlias);
        };
        let direct = self.alias_rows(&key).await?;
        let mut visited = HashSet::from([key.clone()]);
        let start = if !direct.is_empty() {
            direct
        } else if key.starts_with('@') {
            return Ok(AliasExpansion::NotAlias);
        } else {
            let catch_all = format!("@{}", domain_of(&key));
            if self.is_mailbox(&key).await? {
                return Ok(if self.alias_rows(&catch_all).await?.is_empty() {
                    AliasExpansion::NotAlias
                } else {
                    AliasExpansion::Targets(vec![key])
                });
            }
            let rows = self.alias_rows(&catch_all).await?;
            if rows.is_empty() {
                return Ok(AliasExpansion::NotAlias);
            }
            visited.insert(catch_all);
            rows
        };
        let mut out = Vec::new();
        let mut looped = false;
        self.resolve(&key, start, &mut visited, 0, &mut out, &mut looped)
            .await?;
        if out.is_empty() && looped {
            return Ok(AliasExpansion::Loop);
        }
        Ok(AliasExpansion::Targets(out))
    }

    /// Follows `pending` destinations to their final addresses.
    fn resolve<'a>(
        &'a self,
        origin: &'a str,
        pending: Vec<String>,
        visited: &'a mut HashSet<String>,
        depth: usize,
        out: &'a mut Vec<String>,
        looped: &'a mut bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), DirectoryError>> + Send + 'a>> {
        Box::pin(async move {
            for dest in pending {
                if out.len() >= MAX_ALIAS_RESULTS {
                    warn!(
                        alias = origin,
                        "alias expansion truncated at {MAX_ALIAS_RESULTS} destinations"
                    );
                    return Ok(());
                }
                if visited.contains(&dest) {
                    if dest == origin && depth == 0 {
                        // An alias naming itself keeps its own copy.
                        push_unique(out, dest);
                    } else {
                        *looped = true;
                    }
                    continue;
                }
                let rows = self.alias_rows(&dest).await?;
                if !rows.is_empty() {
                    if depth + 1 >= MAX_ALIAS_DEPTH {
                        warn!(alias = origin, "alias chain deeper than {MAX_ALIAS_DEPTH}");
                        *looped = true;
                        continue;
                    }
                    visited.insert(dest);
                    self.resolve(origin, rows, visited, depth + 1, out, looped)
                        .await?;
                    continue;
                }
                if !self.is_mailbox(&dest).await? && self.domain_exists(domain_of(&dest)).await? {
                    let catch_all = format!("@{}", domain_of(&dest));
                    if !visited.contains(&catch_all) {
                        let rows = self.alias_rows(&catch_all).await?;
                        if !rows.is_empty() {
                            visited.insert(catch_all);
                            self.resolve(origin, rows, visited, depth + 1, out, looped)
                                .await?;
                            continue;
                        }
                    }
                }
                push_unique(out, dest);
            }
            Ok(())
        })
    }

    /// The logins allowed to send as `address`: the account itself, explicit sender
    /// permissions (for the address or its `@domain`), and the accounts an explicit alias
    /// delivers to.
    pub async fn senders(&self, address: &str) -> Result<Vec<String>, DirectoryError> {
        let Ok(address) = normalize_address(address) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(a) = self.account(&address).await? {
            out.push(a.address);
        }
        let domain_key = format!("@{}", domain_of(&address));
        for key in [address.as_str(), domain_key.as_str()] {
            self.sender_rows(key, &mut out).await?;
        }
        if !self.alias_rows(&address).await?.is_empty()
            && let AliasExpansion::Targets(targets) = self.expand_alias(&address).await?
        {
            for t in targets {
                if self.is_mailbox(&t).await? {
                    push_unique(&mut out, t);
                }
            }
        }
        Ok(out)
    }
}

impl Directory {
    /// The logins allowed to send as anyone at `domain` (sender permissions for `@domain`).
    pub async fn domain_senders(&self, domain: &str) -> Result<Vec<String>, DirectoryError> {
        let mut out = Vec::new();
        self.sender_rows(
            &format!("@{}", domain.trim().to_ascii_lowercase()),
            &mut out,
        )
        .await?;
        Ok(out)
    }

    /// Adds the logins the sender query gives for `key` to `out`.
    async fn sender_rows(&self, key: &str, out: &mut Vec<String>) -> Result<(), DirectoryError> {
        for r in self
            .inner
            .queries
            .sender
            .fetch(&self.inner.pool, key, None)
            .await?
        {
            if let Some(v) = sql::text(&r, 0)? {
                for login in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    push_unique(out, login.to_lowercase());
                }
            }
        }
        Ok(())
    }
}

fn push_unique(out: &mut Vec<String>, v: String) {
    if !out.contains(&v) {
        out.push(v);
    }
}

/// A valid argon2id hash of a random password, verified against for unknown users so that
/// they take as long as known ones.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| password::hash_new("postern-dummy-password-for-timing").unwrap_or_default())
}

/// A stored host as the daemons use it: trimmed, lower-cased; a value that is no host name
/// or address (hand-edited SQL) is logged and read as empty, so it is never written into a
/// protocol line or a connection target.
fn clean_host(raw: &str) -> String {
    let h = raw.trim().to_ascii_lowercase();
    if h.is_empty() || postern_config::valid_host(&h) {
        h
    } else {
        warn!(host = %raw.escape_debug(), "ignoring an account host that is no host name or address");
        String::new()
    }
}
