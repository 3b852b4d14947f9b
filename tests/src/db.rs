//! Per-test databases on the PostgreSQL and MySQL/MariaDB servers from
//! `scripts/ci-services.sh`, and raw SQL for tests that look behind the daemons' backs.
//!
//! The servers are reached through admin URLs in `POSTERN_TEST_PG_URL` and
//! `POSTERN_TEST_MYSQL_URL`; each [`TestDb`] is a fresh database `postern_t_<random>`,
//! dropped again when the value is dropped (best effort). SQL goes through sqlx's `any`
//! driver on a runtime of its own, so the harness stays synchronous.

use std::future::Future;
use std::time::Duration;

use sqlx::{AnyConnection, AssertSqlSafe, Connection};

/// Deadline for one database operation (connect, create, drop, a test's SQL).
const DB_TIMEOUT: Duration = Duration::from_secs(30);

/// Which database a [`Postern`](crate::Postern) runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DbKind {
    /// A SQLite file in the test directory (what `mailctl init` sets up by default).
    #[default]
    Sqlite,
    /// A fresh database on the server in `POSTERN_TEST_PG_URL`.
    Postgres,
    /// A fresh database on the server in `POSTERN_TEST_MYSQL_URL`.
    Mysql,
}

impl DbKind {
    /// The environment variable holding this kind's admin URL (none for SQLite).
    pub const fn env_var(self) -> Option<&'static str> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some("POSTERN_TEST_PG_URL"),
            Self::Mysql => Some("POSTERN_TEST_MYSQL_URL"),
        }
    }

    /// The admin URL from the environment, if set.
    pub fn admin_url(self) -> Option<String> {
        std::env::var(self.env_var()?)
            .ok()
            .filter(|u| !u.is_empty())
    }
}

/// A database created for one test on a PostgreSQL or MySQL server; dropped on drop.
#[derive(Debug)]
pub struct TestDb {
    kind: DbKind,
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    /// Creates a fresh, empty database. Panics for [`DbKind::Sqlite`] (it needs no server),
    /// when the admin URL is not set, or when the server refuses.
    pub fn create(kind: DbKind) -> Self {
        let var = kind
            .env_var()
            .unwrap_or_else(|| panic!("TestDb is for database servers, not {kind:?}"));
        let admin_url = kind.admin_url().unwrap_or_else(|| {
            panic!(
                "{var} is not set: start the database servers with \
                 `eval \"$(scripts/ci-services.sh)\"` (as root), or run .ci/run"
            )
        });
        let name = format!("postern_t_{:016x}", rand::random::<u64>());
        let create = match kind {
            DbKind::Postgres => format!("CREATE DATABASE \"{name}\""),
            _ => format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        };
        exec_sql(&admin_url, &create);
        let url = with_database(&admin_url, &name);
        Self {
            kind,
            admin_url,
            name,
            url,
        }
    }

    /// Which server it is on.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The database name (`postern_t_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for the database, with the admin URL's credentials.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = &self.name;
        let drop = match self.kind {
            // WITH (FORCE) (PostgreSQL 13+) ends sessions a killed daemon may have left.
            DbKind::Postgres => format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
            _ => format!("DROP DATABASE IF EXISTS `{name}`"),
        };
        if let Err(e) = try_exec_sql(&self.admin_url, &drop) {
            eprintln!("warning: could not drop test database {name}: {e}");
        }
    }
}

/// Runs `sql` (one or more statements, no results) against the database at `url`
/// (`sqlite://`, `postgres://` or `mysql://`). Panics on error or after 30 s.
pub fn exec_sql(url: &str, sql: &str) {
    try_exec_sql(url, sql).unwrap_or_else(|e| panic!("{e}"));
}

/// [`exec_sql`] returning the error instead of panicking.
pub fn try_exec_sql(url: &str, sql: &str) -> Result<(), String> {
    let sql = sql.to_owned();
    block_on(&format!("SQL {sql:?} on {}", redact(url)), async move {
        let mut conn = AnyConnection::connect(url).await?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
        conn.close().await
    })
}

/// Runs a database future on a private runtime with [`DB_TIMEOUT`].
fn block_on<T>(what: &str, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, String> {
    sqlx::any::install_default_drivers();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("{what}: cannot build a tokio runtime: {e}"))?;
    rt.block_on(async {
        match tokio::time::timeout(DB_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(format!("{what}: {e}")),
            Err(_) => Err(format!("{what}: no answer within {DB_TIMEOUT:?}")),
        }
    })
}

/// `url` with its database (path) replaced by `name`; credentials and query kept.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{host}{}", &rest[authority_end..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_swapped() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("mysql://u:p@h:3306/mysql?ssl-mode=disabled", "t2"),
            "mysql://u:p@h:3306/t2?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://u@h", "t3"), "mysql://u@h/t3");
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact("postgres://postern:secret@127.0.0.1:5432/postgres"),
            "postgres://postern:***@127.0.0.1:5432/postgres"
        );
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
