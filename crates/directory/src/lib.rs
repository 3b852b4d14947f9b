//! The account directory: domains, accounts, aliases, sender permissions and lockout
//! state in SQL (SQLite, PostgreSQL or MySQL/MariaDB through one sqlx `Any` code path),
//! plus password hashing and policy.
//!
//! Only `authd` and `mailctl` use this crate; every other daemon asks `authd` over its
//! sockets. Lookups go through SQL templates that the config may override, so an existing
//! Postfix/Dovecot database can be used unchanged; the admin commands (`admin` module)
//! write Postern's own schema.
#![forbid(unsafe_code)]

mod address;
mod admin;
mod db;
mod lockout;
mod lookup;
pub mod password;
pub mod policy;
mod shared_policy;
mod sql;

use std::sync::Arc;
use std::time::Duration;

use postern_config::Config;
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};

pub use address::{
    AddressError, domain_of, normalize_address, normalize_alias_source, normalize_domain,
};
pub use admin::{AccountInfo, AliasInfo, MoveState, NewSecret, SenderInfo};
pub use lockout::{FailureRecord, Gate, LockoutRow, Lockouts, account_subject, ip_subject};
pub use lookup::{Account, AliasExpansion, AuthOutcome};
pub use shared_policy::{GreylistTiming, GreylistVerdict, SendCount, SharedPolicy};
pub use sql::Backend;

/// Errors of the directory.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The database failed or is unreachable (a temporary failure for clients).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migrations failed.
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A column had a type we cannot read.
    #[error("column {0} of the result is not {1}")]
    Column(usize, &'static str),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// An address or domain is malformed.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// Something the admin asked for conflicts with what exists.
    #[error("{0}")]
    Conflict(String),
    /// Something the admin named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A password was refused by the policy.
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
    /// Hashing failed.
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    /// Too much work waiting (password checks): a temporary failure for clients.
    #[error("busy: {0}")]
    Busy(String),
}

/// The queries in use, compiled for the backend.
#[derive(Debug)]
struct Queries {
    domain: sql::Query,
    account: sql::Query,
    alias: sql::Query,
    sender: sql::Query,
    list: sql::Query,
    password_update: Option<sql::Query>,
    /// The node an account lives on, when asked apart from the account query
    /// (`[database.queries] host`); `None`: the account query's 5th column, if any.
    host: Option<sql::Query>,
}

/// A handle on the directory database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The pool, behind the breaker that makes queries fail fast while the database is down.
    pool: db::Db,
    backend: Backend,
    queries: Queries,
    own_schema: bool,
    default_scheme: String,
    rehash: bool,
    min_length: usize,
    lockout: postern_config::Lockout,
    /// One permit per password check allowed to run at once.
    hashing: Arc<tokio::sync::Semaphore>,
    /// How long a password check waits for a permit.
    hash_wait: Duration,
    /// Rewritten after every change made through this handle (see [`Directory::change_stamp`]).
    stamp: std::path::PathBuf,
    /// Its public copy in the run directory, rewritten right after it (`None` when the run
    /// directory is the state directory).
    public_stamp: Option<std::path::PathBuf>,
}

impl Directory {
    /// Connects to the database named by the config and brings its schema up to date.
    pub async fn open(config: &Config) -> Result<Self, DirectoryError> {
        let url = config
            .database_url()
            .map_err(|e| DirectoryError::Config(e.to_string()))?;
        Self::open_url(&url, config).await
    }

    /// Like [`Directory::open`], with an explicit URL.
    pub async fn open_url(url: &str, config: &Config) -> Result<Self, DirectoryError> {
        Self::connect(url, config, true).await
    }

    /// Like [`Directory::open`], but leaves the database as it is: no schema migrations (so
    /// none of Postern's own tables are created in another system's database), no SQLite
    /// journal-mode change, and a SQLite file that is not there is not created. For tools
    /// that only read (`mailctl migrate check`); writes through it may find tables missing.
    pub async fn open_existing(config: &Config) -> Result<Self, DirectoryError> {
        let url = config
            .database_url()
            .map_err(|e| DirectoryError::Config(e.to_string()))?;
        Self::connect(&url, config, false).await
    }

    async fn connect(url: &str, config: &Config, migrate: bool) -> Result<Self, DirectoryError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                let mode = if migrate { "rwc" } else { "rw" };
                format!("{url}{sep}mode={mode}")
            }
            _ => url.to_owned(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(config.database.max_connections.get())
            .acquire_timeout(config.database.acquire_timeout_ms.duration())
            .connect(&url)
            .await?;
        if backend == Backend::Sqlite {
            // Several processes (authd instances, mailctl) share the file.
            sqlx::query("PRAGMA busy_timeout = 5000")
                .execute(&pool)
                .await?;
            if migrate {
                sqlx::query("PRAGMA journal_mode = WAL")
                    .execute(&pool)
                    .await?;
            }
        }
        if migrate {
            migrator(backend).run(&pool).await?;
        }
        if migrate
            && backend == Backend::Sqlite
            && let Some(path) = sqlite_file(&url)
        {
            give_to_directory_owner(path);
        }
        let q = &config.database.queries;
        let c = |custom: &Option<String>, own: &str| {
            sql::Query::compile(custom.as_deref().unwrap_or(own), backend)
        };
        let queries = Queries {
            domain: c(&q.domain, "SELECT name FROM domains WHERE name = %d")?,
            account: c(
                &q.account,
                "SELECT address, password, quota_bytes, enabled, host, moving_to FROM accounts WHERE address = %u",
            )?,
            alias: c(
                &q.alias,
                "SELECT destination FROM aliases WHERE source = %u",
            )?,
            sender: c(
                &q.sender,
                "SELECT login FROM sender_logins WHERE address = %u",
            )?,
            list: c(&q.list, "SELECT address FROM accounts ORDER BY address")?,
            password_update: match (&q.password_update, &q.account) {
                (Some(custom), _) => Some(sql::Query::compile(custom, backend)?),
                (None, None) => Some(sql::Query::compile(
                    "UPDATE accounts SET password = %p WHERE address = %u",
                    backend,
                )?),
                (None, Some(_)) => None,
            },
            host: q
                .host
                .as_deref()
                .map(|h| sql::Query::compile(h, backend))
                .transpose()?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                pool: db::Db::new(pool, config.database.down_retry_ms.duration()),
                backend,
                queries,
                own_schema: !q.any_overridden(),
                default_scheme: config.passwords.default_scheme.clone(),
                rehash: config.passwords.rehash_to_argon2id,
                min_length: config.passwords.min_length,
                lockout: config.authd.lockout.clone(),
                hashing: Arc::new(tokio::sync::Semaphore::new(hash_concurrency(
                    config.authd.hash_concurrency,
                ))),
                hash_wait: config.authd.hash_queue_timeout_ms.duration(),
                stamp: config.directory_stamp(),
                public_stamp: Some(config.public_directory_stamp())
                    .filter(|p| *p != config.directory_stamp()),
            }),
        })
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The connection pool, for tests and tools that need raw SQL.
    pub fn pool(&self) -> &AnyPool {
        self.inner.pool.pool()
    }

    /// The brute-force defence state kept in this database.
    pub fn lockouts(&self) -> Lockouts {
        Lockouts::new(
            self.inner.pool.clone(),
            self.inner.backend,
            self.inner.lockout.clone(),
        )
    }

    /// smtpd's policy state shared by a cluster: sending counts and greylisting.
    pub fn shared_policy(&self) -> SharedPolicy {
        SharedPolicy::new(self.inner.pool.clone(), self.inner.backend)
    }

    /// The directory's change stamp, `<state_dir>/directory.stamp`: replaced (by rename)
    /// after every write made through a [`Directory`] — `mailctl` changing domains, accounts,
    /// aliases or senders — so that a daemon caching lookups (authd) sees the change at once.
    pub fn change_stamp(&self) -> &std::path::Path {
        &self.inner.stamp
    }

    /// The public copy of the change stamp, `<run_dir>/directory.stamp` (mode 0644), replaced
    /// right after [`Directory::change_stamp`]: what smtpd and lmtp-deliver watch when their
    /// user cannot read the state directory. `None` when the run directory is the state
    /// directory (one file serves both).
    pub fn public_change_stamp(&self) -> Option<&std::path::Path> {
        self.inner.public_stamp.as_deref()
    }

    /// Replaces the change stamp, then its public copy. A directory that does not exist (no
    /// daemon can be watching it: a tmpfs run directory is made again at boot, by systemd's
    /// `RuntimeDirectory`, and the caches start empty) is not an error; other failures are
    /// logged: caches then see the change within their TTL only.
    ///
    /// The order matters. A client of authd that watches the public copy re-asks authd as
    /// soon as it sees it replaced; authd's own cache must not answer that request from
    /// before the change. The state stamp's inotify event is queued in authd's descriptor
    /// inside its rename, before the public rename, so before the client can see anything
    /// and send its request: authd's event loop hands that request over with the stamp's
    /// change already marked, and authd's lookup drops its stale answers first (see
    /// `postern_auth_proto::cache`). An answer a client fetched from before the change is
    /// not kept either: the public stamp's rename comes after the state's, and the client
    /// stores an answer only if its stamp did not move meanwhile.
    pub(crate) fn touch_change_stamp(&self) {
        let body = format!("{}\n", now());
        let stamps = std::iter::once(&self.inner.stamp).chain(self.inner.public_stamp.as_ref());
        for stamp in stamps {
            if let Err(e) = replace_stamp(stamp, &body)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %stamp.display(), error = %e, "cannot update the directory change stamp; caches see the change within their TTL");
            }
        }
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.inner.pool.pool().close().await;
    }
}

fn migrator(backend: Backend) -> Migrator {
    use sqlx::SqlSafeStr;
    let [directory, host, moving, shared]: [&'static str; 4] = match backend {
        Backend::Sqlite => [
            include_str!("../../../migrations/sqlite/0001_directory.sql"),
            include_str!("../../../migrations/sqlite/0002_host.sql"),
            include_str!("../../../migrations/sqlite/0003_moving.sql"),
            include_str!("../../../migrations/sqlite/0004_shared_policy.sql"),
        ],
        Backend::Postgres => [
            include_str!("../../../migrations/postgres/0001_directory.sql"),
            include_str!("../../../migrations/postgres/0002_host.sql"),
            include_str!("../../../migrations/postgres/0003_moving.sql"),
            include_str!("../../../migrations/postgres/0004_shared_policy.sql"),
        ],
        Backend::Mysql => [
            include_str!("../../../migrations/mysql/0001_directory.sql"),
            include_str!("../../../migrations/mysql/0002_host.sql"),
            include_str!("../../../migrations/mysql/0003_moving.sql"),
            include_str!("../../../migrations/mysql/0004_shared_policy.sql"),
        ],
    };
    // MySQL DDL is not transactional; run it outside a transaction there.
    let no_tx = backend == Backend::Mysql;
    let step = |version: i64, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            no_tx,
        )
    };
    Migrator::with_migrations(vec![
        step(1, "directory", directory),
        step(2, "host", host),
        step(3, "moving", moving),
        step(4, "shared_policy", shared),
    ])
}

/// The file of a `sqlite://PATH[?…]` URL (`None` for an in-memory or relative one).
fn sqlite_file(url: &str) -> Option<&std::path::Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    path.starts_with('/').then(|| std::path::Path::new(path))
}

/// SQLite files owned by root in a directory that belongs to another user are given to that
/// user. Typically `mailctl`, run as root, was the first to open the database in
/// `/var/lib/postern` (owned by `postern`): left root's, authd — running as `postern` —
/// could read it but not record failed logins, nor open its WAL index. Only root can change
/// an owner, so elsewhere this does nothing.
///
/// That directory's owner controls its names, so root must not be led into giving away some
/// other file: the owner is changed through the opened file itself (not its name, which
/// could be swapped meanwhile), only for a regular file owned by root with no other name
/// (a hard link to a file elsewhere has two), and only if the name still leads to it.
fn give_to_directory_owner(db: &std::path::Path) {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = db.parent() else {
        return;
    };
    let Ok(d) = std::fs::metadata(dir) else {
        return;
    };
    if d.uid() == 0 {
        return;
    }
    let name = db.as_os_str().to_owned();
    for suffix in ["", "-wal", "-shm"] {
        let mut f = name.clone();
        f.push(suffix);
        let f = std::path::PathBuf::from(f);
        let Ok(file) = std::fs::File::open(&f) else {
            continue;
        };
        let (Ok(m), Ok(named)) = (file.metadata(), std::fs::symlink_metadata(&f)) else {
            continue;
        };
        let same = m.dev() == named.dev() && m.ino() == named.ino();
        if !(same && m.is_file() && m.nlink() == 1 && m.uid() == 0) {
            continue;
        }
        if let Err(e) = std::os::unix::fs::fchown(&file, Some(d.uid()), Some(d.gid()))
            && e.kind() != std::io::ErrorKind::PermissionDenied
        {
            tracing::warn!(path = %f.display(), error = %e, "cannot give the database file to its directory's owner");
        }
    }
}

/// The change stamp's file name in the state directory.
pub const CHANGE_STAMP: &str = postern_config::DIRECTORY_STAMP;

/// Replaces `stamp` by a new file (mode 0644 whatever the umask) holding `body`: written
/// under a temporary name beside it, then renamed over it.
///
/// root's mailctl writes into directories that belong to the daemons' user (`postern` owns
/// `/var/lib/postern` and `/run/postern`), so the temporary is made anew (`O_EXCL`: never a
/// file or symlink planted under that name) after a leftover of a crashed run is removed.
/// The rename needs only write permission on the directory, so a stamp root left can be
/// replaced by the next mailctl run as `postern`, and the other way round.
fn replace_stamp(stamp: &std::path::Path, body: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = stamp.with_extension(format!("stamp.{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            f.write_all(body.as_bytes())
        })
        .and_then(|()| std::fs::rename(&tmp, stamp));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Password checks at once: `configured`, or one per CPU core when 0.
fn hash_concurrency(configured: usize) -> usize {
    if configured > 0 {
        return configured;
    }
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
