//! The SQL layer shared by every lookup: backend detection, query templates with
//! `%u`/`%d`/`%n`/`%p` placeholders turned into bound parameters, and column getters
//! that accept whatever type each backend hands back.

use sqlx::Any;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{AssertSqlSafe, Row};

use crate::DirectoryError;
use crate::db::Db;

/// A query on the Any driver.
pub(crate) type AnyQuery<'q> = sqlx::query::Query<'q, Any, AnyArguments>;

/// Which SQL dialect the database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite (the default).
    Sqlite,
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB.
    Mysql,
}

impl Backend {
    /// The backend a database URL names.
    pub fn from_url(url: &str) -> Result<Self, DirectoryError> {
        let scheme = url.split(':').next().unwrap_or("");
        match scheme {
            "sqlite" => Ok(Self::Sqlite),
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::Mysql),
            other => Err(DirectoryError::Config(format!(
                "unsupported database scheme {other:?}"
            ))),
        }
    }
}

/// A value a template placeholder stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    /// `%u`: the whole key.
    Key,
    /// `%d`: the domain part of the key.
    Domain,
    /// `%n`: the local part of the key.
    Local,
    /// `%p`: a password hash (updates only).
    Hash,
}

/// A query template compiled for one backend.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    sql: String,
    params: Vec<Param>,
}

impl Query {
    /// Compiles a template: each `%u`, `%d`, `%n`, `%p` (optionally wrapped in single quotes,
    /// as Dovecot configs write them) becomes a positional parameter for `backend`.
    pub(crate) fn compile(template: &str, backend: Backend) -> Result<Self, DirectoryError> {
        let mut sql = String::with_capacity(template.len());
        let mut params = Vec::new();
        let bytes = template.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let quoted = bytes[i] == b'\''
                && bytes.get(i + 1) == Some(&b'%')
                && bytes.get(i + 3) == Some(&b'\'');
            let start = if quoted { i + 1 } else { i };
            if bytes[start] == b'%' {
                let p = match bytes.get(start + 1) {
                    Some(b'u') => Some(Param::Key),
                    Some(b'd') => Some(Param::Domain),
                    Some(b'n') => Some(Param::Local),
                    Some(b'p') => Some(Param::Hash),
                    _ => None,
                };
                if let Some(p) = p {
                    params.push(p);
                    match backend {
                        Backend::Postgres => sql.push_str(&format!("${}", params.len())),
                        Backend::Sqlite | Backend::Mysql => sql.push('?'),
                    }
                    i = start + 2 + usize::from(quoted);
                    continue;
                }
            }
            // Copy one UTF-8 character.
            let ch_len = template[i..].chars().next().map_or(1, char::len_utf8);
            sql.push_str(&template[i..i + ch_len]);
            i += ch_len;
        }
        Ok(Self { sql, params })
    }

    /// Runs the query for `key` and returns every row.
    pub(crate) async fn fetch(
        &self,
        db: &Db,
        key: &str,
        hash: Option<&str>,
    ) -> Result<Vec<AnyRow>, DirectoryError> {
        let q = self.bound(key, hash);
        Ok(db.run(|pool| q.fetch_all(pool)).await?)
    }

    /// Runs a statement (update) for `key`.
    pub(crate) async fn execute(
        &self,
        db: &Db,
        key: &str,
        hash: Option<&str>,
    ) -> Result<u64, DirectoryError> {
        let q = self.bound(key, hash);
        Ok(db.run(|pool| q.execute(pool)).await?.rows_affected())
    }

    fn bound(&self, key: &str, hash: Option<&str>) -> AnyQuery<'static> {
        let (local, domain) = split_key(key);
        let mut q = sqlx::query(AssertSqlSafe(self.sql.clone()));
        for p in &self.params {
            let v = match p {
                Param::Key => key,
                Param::Domain => domain,
                Param::Local => local,
                Param::Hash => hash.unwrap_or(""),
            };
            q = q.bind(v.to_owned());
        }
        q
    }

    #[cfg(test)]
    fn sql(&self) -> &str {
        &self.sql
    }
}

/// `local@domain` → (local, domain); `@domain` → ("", domain); `domain` → ("", domain).
fn split_key(key: &str) -> (&str, &str) {
    postern_mail_types::try_split(key).unwrap_or(("", key))
}

/// Rewrites Postern's own `?` placeholders for `backend`.
pub(crate) fn own_sql(sql: &str, backend: Backend) -> String {
    match backend {
        Backend::Sqlite | Backend::Mysql => sql.to_owned(),
        Backend::Postgres => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// A bound value for Postern's own SQL.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SqlArg<'a> {
    Text(&'a str),
    Int(i64),
}

pub(crate) fn bind_own(backend: Backend, sql: &str, args: &[SqlArg<'_>]) -> AnyQuery<'static> {
    let mut q = sqlx::query(AssertSqlSafe(own_sql(sql, backend)));
    for a in args {
        q = match a {
            SqlArg::Text(t) => q.bind((*t).to_owned()),
            SqlArg::Int(i) => q.bind(*i),
        };
    }
    q
}

/// Runs one of Postern's own statements (`?` placeholders); returns the rows affected.
pub(crate) async fn exec_own(
    db: &Db,
    backend: Backend,
    sql: &str,
    args: &[SqlArg<'_>],
) -> Result<u64, DirectoryError> {
    let q = bind_own(backend, sql, args);
    Ok(db.run(|pool| q.execute(pool)).await?.rows_affected())
}

/// Runs one of Postern's own queries (`?` placeholders).
pub(crate) async fn rows_own(
    db: &Db,
    backend: Backend,
    sql: &str,
    args: &[SqlArg<'_>],
) -> Result<Vec<AnyRow>, DirectoryError> {
    let q = bind_own(backend, sql, args);
    Ok(db.run(|pool| q.fetch_all(pool)).await?)
}

/// A text column, whatever the backend made of it (text, binary string, number).
pub(crate) fn text(row: &AnyRow, idx: usize) -> Result<Option<String>, DirectoryError> {
    if let Ok(v) = row.try_get::<Option<String>, _>(idx) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<Vec<u8>>, _>(idx) {
        return Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()));
    }
    if let Ok(v) = row.try_get::<Option<i64>, _>(idx) {
        return Ok(v.map(|n| n.to_string()));
    }
    Err(DirectoryError::Column(idx, "text"))
}

/// An integer column: integers of any width, booleans, or numeric text.
pub(crate) fn int(row: &AnyRow, idx: usize) -> Result<Option<i64>, DirectoryError> {
    if let Ok(v) = row.try_get::<Option<i64>, _>(idx) {
        return Ok(v);
    }
    if let Ok(v) = row.try_get::<Option<bool>, _>(idx) {
        return Ok(v.map(i64::from));
    }
    if let Ok(Some(s)) = text(row, idx) {
        let s = s.trim();
        return match s {
            "t" | "true" | "y" | "yes" => Ok(Some(1)),
            "f" | "false" | "n" | "no" => Ok(Some(0)),
            _ => s
                .parse()
                .map(Some)
                .map_err(|_| DirectoryError::Column(idx, "integer")),
        };
    }
    Err(DirectoryError::Column(idx, "integer"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_parameters() {
        let q = Query::compile(
            "SELECT password FROM t WHERE Email = '%u' AND d = %d",
            Backend::Postgres,
        )
        .unwrap();
        assert_eq!(
            q.sql(),
            "SELECT password FROM t WHERE Email = $1 AND d = $2"
        );
        assert_eq!(q.params, vec![Param::Key, Param::Domain]);
        let q = Query::compile("SELECT 1 WHERE a=%n AND b='%d' -- 100% é", Backend::Mysql).unwrap();
        assert_eq!(q.sql(), "SELECT 1 WHERE a=? AND b=? -- 100% é");
        assert_eq!(q.params, vec![Param::Local, Param::Domain]);
    }

    #[test]
    fn keys_split() {
        assert_eq!(split_key("a@b.c"), ("a", "b.c"));
        assert_eq!(split_key("@b.c"), ("", "b.c"));
        assert_eq!(split_key("b.c"), ("", "b.c"));
        // `%n`/`%d` of a quoted local part: split at the domain's `@`, not inside the quotes
        // (`"a@b"` was `%n` = `"a`, `%d` = `b"`).
        assert_eq!(split_key("\"a@b\"@c.d"), ("\"a@b\"", "c.d"));
        assert_eq!(split_key("\"a@b\""), ("", "\"a@b\""));
    }

    #[test]
    fn own_sql_numbers_postgres_params() {
        assert_eq!(
            own_sql("a = ? AND b = ?", Backend::Postgres),
            "a = $1 AND b = $2"
        );
        assert_eq!(own_sql("a = ?", Backend::Sqlite), "a = ?");
    }
}
