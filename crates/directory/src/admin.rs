//! Write-side operations for `mailctl`: domains, accounts, aliases and sender permissions
//! in Postern's own schema.

use crate::address::{domain_of, normalize_address, normalize_alias_source, normalize_domain};
use crate::sql::{self, SqlArg};
use crate::{Directory, DirectoryError, now, password, policy};

/// An account as `mailctl user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// The address.
    pub address: String,
    /// Quota in bytes; 0 is none.
    pub quota_bytes: i64,
    /// Whether it may log in.
    pub enabled: bool,
    /// The password scheme of the stored hash.
    pub scheme: String,
    /// Creation time, epoch seconds.
    pub created: i64,
    /// The node it lives on (`[proxy]`); empty = this node.
    pub host: String,
    /// The node it is being moved to (`mailctl user move`); empty = not moving.
    pub moving_to: String,
}

/// Where an account lives and whether it is being moved: the two columns `mailctl user
/// move` steps through (see [`Directory::mark_moving`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveState {
    /// The canonical address.
    pub address: String,
    /// The node it lives on; empty = the node whose `[proxy] self` is empty… or any
    /// single node.
    pub host: String,
    /// The node it is being moved to; empty = not moving.
    pub moving_to: String,
}

/// An alias source with its destinations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasInfo {
    /// The source address or `@domain`.
    pub source: String,
    /// Where it delivers.
    pub destinations: Vec<String>,
}

/// One sender permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderInfo {
    /// The address or `@domain` that may be used as sender.
    pub address: String,
    /// The login allowed to use it.
    pub login: String,
}

impl Directory {
    fn require_own_schema(&self) -> Result<(), DirectoryError> {
        if self.inner.own_schema {
            Ok(())
        } else {
            Err(DirectoryError::Config(
                "this directory uses custom SQL queries ([database.queries]); mailctl only manages Postern's own schema"
                    .into(),
            ))
        }
    }

    /// Runs one write; a write that changed rows replaces the change stamp (caches).
    async fn exec(&self, sql: &str, args: &[SqlArg<'_>]) -> Result<u64, DirectoryError> {
        let n = sql::exec_own(&self.inner.pool, self.inner.backend, sql, args).await?;
        if n > 0 {
            self.touch_change_stamp();
        }
        Ok(n)
    }

    async fn rows(
        &self,
        sql: &str,
        args: &[SqlArg<'_>],
    ) -> Result<Vec<sqlx::any::AnyRow>, DirectoryError> {
        sql::rows_own(&self.inner.pool, self.inner.backend, sql, args).await
    }

    async fn count(&self, sql: &str, args: &[SqlArg<'_>]) -> Result<i64, DirectoryError> {
        let rows = self.rows(sql, args).await?;
        Ok(match rows.first() {
            Some(r) => sql::int(r, 0)?.unwrap_or(0),
            None => 0,
        })
    }

    async fn own_domain(&self, domain: &str) -> Result<(), DirectoryError> {
        let n = self
            .count(
                "SELECT COUNT(*) FROM domains WHERE name = ?",
                &[SqlArg::Text(domain)],
            )
            .await?;
        if n == 0 {
            return Err(DirectoryError::NotFound(format!(
                "unknown domain {domain} (add it with `mailctl domain add {domain}`)"
            )));
        }
        Ok(())
    }

    /// Adds a domain.
    pub async fn add_domain(&self, domain: &str) -> Result<String, DirectoryError> {
        self.require_own_schema()?;
        let domain = normalize_domain(domain)?;
        if self.own_domain(&domain).await.is_ok() {
            return Err(DirectoryError::Conflict(format!(
                "domain {domain} exists already"
            )));
        }
        self.exec(
            "INSERT INTO domains (name, created) VALUES (?, ?)",
            &[SqlArg::Text(&domain), SqlArg::Int(now())],
        )
        .await?;
        Ok(domain)
    }

    /// Every domain with its account and alias counts.
    pub async fn list_domains(&self) -> Result<Vec<(String, i64, i64)>, DirectoryError> {
        self.require_own_schema()?;
        let rows = self
            .rows(
                "SELECT d.name, \
                 (SELECT COUNT(*) FROM accounts a WHERE a.domain = d.name), \
                 (SELECT COUNT(*) FROM aliases s WHERE s.domain = d.name) \
                 FROM domains d ORDER BY d.name",
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.push((
                sql::text(r, 0)?.unwrap_or_default(),
                sql::int(r, 1)?.unwrap_or(0),
                sql::int(r, 2)?.unwrap_or(0),
            ));
        }
        Ok(out)
    }

    /// Removes a domain; with `force`, its accounts, aliases and sender permissions too.
    pub async fn remove_domain(&self, domain: &str, force: bool) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let domain = normalize_domain(domain)?;
        self.own_domain(&domain).await?;
        let users = self
            .count(
                "SELECT COUNT(*) FROM accounts WHERE domain = ?",
                &[SqlArg::Text(&domain)],
            )
            .await?;
        let aliases = self
            .count(
                "SELECT COUNT(*) FROM aliases WHERE domain = ?",
                &[SqlArg::Text(&domain)],
            )
            .await?;
        if (users > 0 || aliases > 0) && !force {
            return Err(DirectoryError::Conflict(format!(
                "domain {domain} still has {users} account(s) and {aliases} alias(es); remove them or use --force"
            )));
        }
        let like = format!("%@{domain}");
        self.exec(
            "DELETE FROM sender_logins WHERE address LIKE ? OR login LIKE ?",
            &[SqlArg::Text(&like), SqlArg::Text(&like)],
        )
        .await?;
        self.exec(
            "DELETE FROM aliases WHERE domain = ?",
            &[SqlArg::Text(&domain)],
        )
        .await?;
        self.exec(
            "DELETE FROM accounts WHERE domain = ?",
            &[SqlArg::Text(&domain)],
        )
        .await?;
        self.exec(
            "DELETE FROM domains WHERE name = ?",
            &[SqlArg::Text(&domain)],
        )
        .await?;
        Ok(())
    }

    /// Adds an account with a new password (checked by the policy) or a ready-made hash.
    pub async fn add_user(
        &self,
        address: &str,
        secret: NewSecret<'_>,
        quota_bytes: i64,
    ) -> Result<String, DirectoryError> {
        self.add_user_on(address, secret, quota_bytes, "").await
    }

    /// Like [`Directory::add_user`], on the node `host` (empty = this node; see `[proxy]`).
    pub async fn add_user_on(
        &self,
        address: &str,
        secret: NewSecret<'_>,
        quota_bytes: i64,
        host: &str,
    ) -> Result<String, DirectoryError> {
        self.require_own_schema()?;
        let host = checked_host(host)?;
        let address = normalize_address(address)?;
        let domain = domain_of(&address).to_owned();
        self.own_domain(&domain).await?;
        if self.account(&address).await?.is_some() {
            return Err(DirectoryError::Conflict(format!(
                "account {address} exists already"
            )));
        }
        let hash = self.hash_for(&address, secret).await?;
        self.exec(
            "INSERT INTO accounts (address, domain, password, quota_bytes, enabled, created, host) VALUES (?, ?, ?, ?, 1, ?, ?)",
            &[
                SqlArg::Text(&address),
                SqlArg::Text(&domain),
                SqlArg::Text(&hash),
                SqlArg::Int(quota_bytes.max(0)),
                SqlArg::Int(now()),
                SqlArg::Text(&host),
            ],
        )
        .await?;
        Ok(address)
    }

    async fn hash_for(
        &self,
        address: &str,
        secret: NewSecret<'_>,
    ) -> Result<String, DirectoryError> {
        match secret {
            NewSecret::Hash(h) => {
                let h = h.trim();
                if h.is_empty() || h.contains(['\n', '\r', '\t', '\0']) {
                    return Err(DirectoryError::Conflict(
                        "the given hash is empty or has control characters".into(),
                    ));
                }
                password::validate_stored(h, &self.inner.default_scheme)?;
                Ok(h.to_owned())
            }
            NewSecret::Password(p) => {
                policy::check_new_password(p, address, self.inner.min_length)?;
                let p = p.to_owned();
                tokio::task::spawn_blocking(move || password::hash_new(&p))
                    .await
                    .map_err(|e| DirectoryError::Config(format!("hashing failed: {e}")))?
                    .map_err(DirectoryError::from)
            }
        }
    }

    /// Sets a new password (checked by the policy) or hash.
    pub async fn set_password(
        &self,
        address: &str,
        secret: NewSecret<'_>,
    ) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        let hash = self.hash_for(&address, secret).await?;
        self.exec(
            "UPDATE accounts SET password = ? WHERE address = ?",
            &[SqlArg::Text(&hash), SqlArg::Text(&address)],
        )
        .await?;
        Ok(())
    }

    async fn existing_user(&self, address: &str) -> Result<String, DirectoryError> {
        let address = normalize_address(address)?;
        let n = self
            .count(
                "SELECT COUNT(*) FROM accounts WHERE address = ?",
                &[SqlArg::Text(&address)],
            )
            .await?;
        if n == 0 {
            return Err(DirectoryError::NotFound(format!("no account {address}")));
        }
        Ok(address)
    }

    /// Sets an account's quota in bytes (0 = none).
    pub async fn set_quota(&self, address: &str, quota_bytes: i64) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        self.exec(
            "UPDATE accounts SET quota_bytes = ? WHERE address = ?",
            &[SqlArg::Int(quota_bytes.max(0)), SqlArg::Text(&address)],
        )
        .await?;
        Ok(())
    }

    /// Sets the node an account lives on (`[proxy]`); empty = this node. Daemons caching
    /// lookups see it at once (the change stamp).
    pub async fn set_host(&self, address: &str, host: &str) -> Result<String, DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        let host = checked_host(host)?;
        sql::exec_own(
            &self.inner.pool,
            self.inner.backend,
            "UPDATE accounts SET host = ? WHERE address = ?",
            &[SqlArg::Text(&host), SqlArg::Text(&address)],
        )
        .await?;
        // Replaced even when no row changed (MySQL counts a same-value update as none):
        // no cache may keep an answer from before.
        self.touch_change_stamp();
        Ok(host)
    }

    /// Where `address` lives and whether it is being moved.
    pub async fn move_state(&self, address: &str) -> Result<MoveState, DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        let rows = self
            .rows(
                "SELECT host, moving_to FROM accounts WHERE address = ?",
                &[SqlArg::Text(&address)],
            )
            .await?;
        let Some(r) = rows.first() else {
            return Err(DirectoryError::NotFound(format!("no account {address}")));
        };
        Ok(MoveState {
            host: sql::text(r, 0)?
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase(),
            moving_to: sql::text(r, 1)?
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase(),
            address,
        })
    }

    /// Step 1 of a move: marks `address`, living on `from`, as moving to `to`. Only an
    /// account that lives on `from` and is not moving is changed: `false` when another
    /// `mailctl user move` got there first (or the state is not what the caller read), so
    /// two concurrent moves cannot both proceed. Every node answers a moving account with
    /// a temporary failure.
    pub async fn mark_moving(
        &self,
        address: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, DirectoryError> {
        let (address, from, to) = self.move_names(address, from, to).await?;
        self.move_update(
            "UPDATE accounts SET moving_to = ? WHERE address = ? AND host = ? AND moving_to = ''",
            &[&to, &address, &from],
        )
        .await
    }

    /// Step 2: the copy is committed on `to`; the account now lives there, still marked
    /// moving (so still refused everywhere until [`Directory::release_move`]). `false`
    /// unless it lived on `from` and was moving to `to`.
    pub async fn switch_moving_host(
        &self,
        address: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, DirectoryError> {
        let (address, from, to) = self.move_names(address, from, to).await?;
        self.move_update(
            "UPDATE accounts SET host = ? WHERE address = ? AND host = ? AND moving_to = ?",
            &[&to, &address, &from, &to],
        )
        .await
    }

    /// Step 3: the move to `to` is over; the account is served there. `false` unless it
    /// lived on `to` and was moving to `to`.
    pub async fn release_move(&self, address: &str, to: &str) -> Result<bool, DirectoryError> {
        let (address, _, to) = self.move_names(address, "", to).await?;
        self.move_update(
            "UPDATE accounts SET moving_to = '' WHERE address = ? AND host = ? AND moving_to = ?",
            &[&address, &to, &to],
        )
        .await
    }

    /// Abandons a move to `to` that was not switched yet: the account, still living on
    /// `from`, is served there again. `false` unless it lived on `from` and was moving to
    /// `to` (after the switch a move can only be undone by moving it back).
    pub async fn cancel_move(
        &self,
        address: &str,
        from: &str,
        to: &str,
    ) -> Result<bool, DirectoryError> {
        let (address, from, to) = self.move_names(address, from, to).await?;
        self.move_update(
            "UPDATE accounts SET moving_to = '' WHERE address = ? AND host = ? AND moving_to = ?",
            &[&address, &from, &to],
        )
        .await
    }

    /// The canonical address of an existing account, and the two hosts checked and
    /// lower-cased; the destination must be named and differ from the source.
    async fn move_names(
        &self,
        address: &str,
        from: &str,
        to: &str,
    ) -> Result<(String, String, String), DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        let (from, to) = (checked_host(from)?, checked_host(to)?);
        if to.is_empty() || to == from {
            return Err(DirectoryError::Conflict(format!(
                "a move needs a destination other than the source (from {from:?} to {to:?})"
            )));
        }
        Ok((address, from, to))
    }

    /// One conditional move step; whether it changed a row. The change stamp is replaced
    /// either way, so no cache on this node keeps an answer from before.
    async fn move_update(&self, sql: &str, args: &[&str]) -> Result<bool, DirectoryError> {
        let args: Vec<SqlArg<'_>> = args.iter().map(|a| SqlArg::Text(a)).collect();
        let n = sql::exec_own(&self.inner.pool, self.inner.backend, sql, &args).await?;
        self.touch_change_stamp();
        Ok(n > 0)
    }

    /// Enables or disables logins of an account (mail is still accepted).
    pub async fn set_enabled(&self, address: &str, enabled: bool) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        self.exec(
            "UPDATE accounts SET enabled = ? WHERE address = ?",
            &[SqlArg::Int(i64::from(enabled)), SqlArg::Text(&address)],
        )
        .await?;
        Ok(())
    }

    /// Accounts, optionally of one domain.
    pub async fn list_users(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<AccountInfo>, DirectoryError> {
        self.require_own_schema()?;
        let rows = match domain {
            Some(d) => {
                let d = normalize_domain(d)?;
                self.rows(
                    "SELECT address, quota_bytes, enabled, password, created, host, moving_to FROM accounts WHERE domain = ? ORDER BY address",
                    &[SqlArg::Text(&d)],
                )
                .await?
            }
            None => {
                self.rows(
                    "SELECT address, quota_bytes, enabled, password, created, host, moving_to FROM accounts ORDER BY address",
                    &[],
                )
                .await?
            }
        };
        let mut out = Vec::new();
        for r in &rows {
            let hash = sql::text(r, 3)?.unwrap_or_default();
            out.push(AccountInfo {
                address: sql::text(r, 0)?.unwrap_or_default(),
                quota_bytes: sql::int(r, 1)?.unwrap_or(0),
                enabled: sql::int(r, 2)?.unwrap_or(1) != 0,
                scheme: password::scheme_of(&hash, &self.inner.default_scheme)
                    .unwrap_or("unknown")
                    .to_owned(),
                created: sql::int(r, 4)?.unwrap_or(0),
                host: sql::text(r, 5)?.unwrap_or_default(),
                moving_to: sql::text(r, 6)?.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Removes an account and the sender permissions of its login. Its mail stays on disk.
    pub async fn remove_user(&self, address: &str) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let address = self.existing_user(address).await?;
        self.exec(
            "DELETE FROM sender_logins WHERE login = ?",
            &[SqlArg::Text(&address)],
        )
        .await?;
        self.exec(
            "DELETE FROM accounts WHERE address = ?",
            &[SqlArg::Text(&address)],
        )
        .await?;
        let subject = address.clone();
        self.exec(
            "DELETE FROM auth_failures WHERE scope = 'account' AND subject = ?",
            &[SqlArg::Text(&subject)],
        )
        .await?;
        Ok(())
    }

    /// Adds destinations to an alias (`source` may be `@domain` for a catch-all).
    /// Returns how many were new.
    pub async fn add_alias(
        &self,
        source: &str,
        destinations: &[String],
    ) -> Result<usize, DirectoryError> {
        self.require_own_schema()?;
        let source = normalize_alias_source(source)?;
        let domain = domain_of(&source).to_owned();
        self.own_domain(&domain).await?;
        if destinations.is_empty() {
            return Err(DirectoryError::Conflict(
                "an alias needs at least one destination".into(),
            ));
        }
        let mut dests = Vec::new();
        for d in destinations {
            let d = normalize_address(d)?;
            if !dests.contains(&d) {
                dests.push(d);
            }
        }
        let existing = self.alias_destinations(&source).await?;
        let mut added = 0;
        for d in dests {
            if existing.contains(&d) {
                continue;
            }
            self.exec(
                "INSERT INTO aliases (source, destination, domain, created) VALUES (?, ?, ?, ?)",
                &[
                    SqlArg::Text(&source),
                    SqlArg::Text(&d),
                    SqlArg::Text(&domain),
                    SqlArg::Int(now()),
                ],
            )
            .await?;
            added += 1;
        }
        if added == 0 {
            return Err(DirectoryError::Conflict(format!(
                "alias {source} has every one of those destinations already"
            )));
        }
        Ok(added)
    }

    async fn alias_destinations(&self, source: &str) -> Result<Vec<String>, DirectoryError> {
        let rows = self
            .rows(
                "SELECT destination FROM aliases WHERE source = ? ORDER BY destination",
                &[SqlArg::Text(source)],
            )
            .await?;
        rows.iter()
            .map(|r| sql::text(r, 0).map(Option::unwrap_or_default))
            .collect()
    }

    /// Aliases, optionally of one domain.
    pub async fn list_aliases(
        &self,
        domain: Option<&str>,
    ) -> Result<Vec<AliasInfo>, DirectoryError> {
        self.require_own_schema()?;
        let rows = match domain {
            Some(d) => {
                let d = normalize_domain(d)?;
                self.rows(
                    "SELECT source, destination FROM aliases WHERE domain = ? ORDER BY source, destination",
                    &[SqlArg::Text(&d)],
                )
                .await?
            }
            None => {
                self.rows(
                    "SELECT source, destination FROM aliases ORDER BY source, destination",
                    &[],
                )
                .await?
            }
        };
        let mut out: Vec<AliasInfo> = Vec::new();
        for r in &rows {
            let source = sql::text(r, 0)?.unwrap_or_default();
            let dest = sql::text(r, 1)?.unwrap_or_default();
            match out.last_mut() {
                Some(last) if last.source == source => last.destinations.push(dest),
                _ => out.push(AliasInfo {
                    source,
                    destinations: vec![dest],
                }),
            }
        }
        Ok(out)
    }

    /// Removes an alias, or only some of its destinations.
    pub async fn remove_alias(
        &self,
        source: &str,
        destinations: &[String],
    ) -> Result<u64, DirectoryError> {
        self.require_own_schema()?;
        let source = normalize_alias_source(source)?;
        let n = if destinations.is_empty() {
            self.exec(
                "DELETE FROM aliases WHERE source = ?",
                &[SqlArg::Text(&source)],
            )
            .await?
        } else {
            let mut n = 0;
            for d in destinations {
                let d = normalize_address(d)?;
                n += self
                    .exec(
                        "DELETE FROM aliases WHERE source = ? AND destination = ?",
                        &[SqlArg::Text(&source), SqlArg::Text(&d)],
                    )
                    .await?;
            }
            n
        };
        if n == 0 {
            return Err(DirectoryError::NotFound(format!(
                "no alias {source} with those destinations"
            )));
        }
        Ok(n)
    }

    /// Lets `login` send as `address` (or as anyone at `@domain`).
    pub async fn add_sender(&self, address: &str, login: &str) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let address = normalize_alias_source(address)?;
        let login = self.existing_user(login).await?;
        let n = self
            .count(
                "SELECT COUNT(*) FROM sender_logins WHERE address = ? AND login = ?",
                &[SqlArg::Text(&address), SqlArg::Text(&login)],
            )
            .await?;
        if n > 0 {
            return Err(DirectoryError::Conflict(format!(
                "{login} may already send as {address}"
            )));
        }
        self.exec(
            "INSERT INTO sender_logins (address, login, created) VALUES (?, ?, ?)",
            &[
                SqlArg::Text(&address),
                SqlArg::Text(&login),
                SqlArg::Int(now()),
            ],
        )
        .await?;
        Ok(())
    }

    /// Every explicit sender permission.
    pub async fn list_senders(&self) -> Result<Vec<SenderInfo>, DirectoryError> {
        self.require_own_schema()?;
        let rows = self
            .rows(
                "SELECT address, login FROM sender_logins ORDER BY address, login",
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.push(SenderInfo {
                address: sql::text(r, 0)?.unwrap_or_default(),
                login: sql::text(r, 1)?.unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// Withdraws a sender permission.
    pub async fn remove_sender(&self, address: &str, login: &str) -> Result<(), DirectoryError> {
        self.require_own_schema()?;
        let address = normalize_alias_source(address)?;
        let login = normalize_address(login)?;
        let n = self
            .exec(
                "DELETE FROM sender_logins WHERE address = ? AND login = ?",
                &[SqlArg::Text(&address), SqlArg::Text(&login)],
            )
            .await?;
        if n == 0 {
            return Err(DirectoryError::NotFound(format!(
                "{login} has no permission to send as {address}"
            )));
        }
        Ok(())
    }
}

/// A password for a new account or a password change.
#[derive(Clone, Copy)]
pub enum NewSecret<'a> {
    /// A clear-text password, checked by the policy and hashed with argon2id.
    Password(&'a str),
    /// A ready-made hash (migration from another system), stored as it is.
    Hash(&'a str),
}

impl std::fmt::Debug for NewSecret<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Password(_) => f.write_str("Password(<redacted>)"),
            Self::Hash(_) => f.write_str("Hash(<redacted>)"),
        }
    }
}

/// A host given to `mailctl`: trimmed and lower-cased, empty allowed (this node), else a
/// host name or IP address.
fn checked_host(host: &str) -> Result<String, DirectoryError> {
    let h = host.trim().to_ascii_lowercase();
    if h.is_empty() || postern_config::valid_host(&h) {
        Ok(h)
    } else {
        Err(DirectoryError::Conflict(format!(
            "host {host:?} is not a host name or IP address"
        )))
    }
}
