//! An SQL setup: the old database, used as it is through `[database.queries]` translated
//! from Dovecot's and Postfix's SQL.

use super::*;

impl Builder<'_> {
    pub(super) fn sql_accounts(&mut self, args: &str, userdbs: &[(String, String, Section)]) {
        let path = args.split_whitespace().last().unwrap_or("").to_owned();
        let Some(text) = self.file(&path) else {
            self.plan.blockers.push(format!(
                "Dovecot's passdb sql config {path} could not be read"
            ));
            return;
        };
        let conf = dovecot::parse(text, &mut |_| Vec::new());
        let driver = conf.get("driver").unwrap_or("").to_owned();
        let connect = conf.get("connect").unwrap_or("").to_owned();
        let (url, password) = match connect_url(&driver, &connect) {
            Ok(u) => u,
            Err(e) => {
                self.plan.blockers.push(format!("{path}: {e}"));
                return;
            }
        };
        self.row(
            format!("dovecot: passdb sql ({path}) connect"),
            redact_connect(&connect),
            format!("[database] url = {url} (password into password_file)"),
        );
        if let Some(s) = conf.get("default_pass_scheme") {
            self.plan.default_scheme = Some(s.to_ascii_uppercase());
            self.row(
                "dovecot: default_pass_scheme",
                s,
                "[passwords] default_scheme",
            );
        }
        let mut queries = QueriesPlan::default();
        let mut user_expr = None;
        match conf
            .get("password_query")
            .map(|q| account_query(q, self.plan.quota_bytes))
        {
            Some(Ok((q, user))) => {
                self.row(
                    "dovecot: password_query",
                    conf.get("password_query").unwrap_or(""),
                    format!("[database.queries] account = {q}"),
                );
                queries.account = Some(q);
                user_expr = user;
                let pq = conf.get("password_query").unwrap_or("").to_owned();
                match update_query(&pq) {
                    Ok(u) => {
                        self.row(
                            "dovecot: password_query (its table and password column)",
                            &pq,
                            format!("[database.queries] password_update = {u}"),
                        );
                        queries.password_update = Some(u);
                    }
                    Err(why) => {
                        self.skip("dovecot: password_query (rehashing to Argon2id)", &pq, why)
                    }
                }
            }
            Some(Err(e)) => self.plan.blockers.push(format!("password_query: {}", e.0)),
            None => self
                .plan
                .blockers
                .push(format!("{path} has no password_query")),
        }
        if let Some(q) = conf.get("iterate_query") {
            match list_query(q) {
                Ok(l) => {
                    self.row(
                        "dovecot: iterate_query",
                        q,
                        format!("[database.queries] list = {l}"),
                    );
                    queries.list = Some(l);
                }
                Err(e) => self.skip("dovecot: iterate_query", q, e.0),
            }
        }
        if queries.list.is_none()
            && let (Some(u), Some(pq)) = (&user_expr, conf.get("password_query"))
            && let Some((_, rest)) = dovecot::split_select(pq)
        {
            // All users: the password query's table without its WHERE.
            let from = cut_where(&rest);
            queries.list = Some(format!("SELECT {u} {from}"));
        }
        if let Some(uq) = conf.get("user_query") {
            self.user_query(uq);
        }
        self.userdb_settings(userdbs);
        // Postfix's maps over the same database.
        let domains = self.postfix_sql_query("virtual_mailbox_domains");
        if let Some((q, _)) = domains {
            queries.domain = Some(q);
        } else if let Some(v) = self.pf("virtual_mailbox_domains").map(str::to_owned) {
            let names: Vec<String> = postfix::list(&v)
                .into_iter()
                .filter(|d| !d.contains(':') && !d.starts_with('/'))
                .collect();
            if !names.is_empty() {
                let quoted: Vec<String> = names.iter().map(|d| format!("'{d}'")).collect();
                let q = format!(
                    "SELECT 1 FROM (SELECT 1 AS one) AS t WHERE %d IN ({})",
                    quoted.join(", ")
                );
                self.row(
                    "postfix: virtual_mailbox_domains",
                    &v,
                    format!("[database.queries] domain = {q}"),
                );
                queries.domain = Some(q);
            }
        }
        if let Some((q, _)) = self.postfix_sql_query("virtual_alias_maps") {
            queries.alias = Some(q);
        }
        if self.pf("virtual_mailbox_maps").is_some() {
            let v = self.pf("virtual_mailbox_maps").unwrap_or("").to_owned();
            self.row(
                "postfix: virtual_mailbox_maps",
                v,
                "not needed: the mailboxes are the accounts of the account query (lmtp-deliver asks authd for the path)",
            );
        }
        if queries.domain.is_none() {
            self.plan
                .blockers
                .push("no domain list found (virtual_mailbox_domains)".into());
        }
        self.plan.database = DatabasePlan::Sql {
            url,
            password,
            queries,
        };
    }

    /// The first SQL map of a `*_maps`/domains parameter, translated; the others are listed
    /// as not carried.
    pub(super) fn postfix_sql_query(&mut self, param: &str) -> Option<(String, String)> {
        let v = self.pf(param)?.to_owned();
        let mut out = None;
        for entry in postfix::list(&v) {
            let Some(spec) = MapSpec::parse(&entry) else {
                continue;
            };
            if !spec.is_sql() {
                self.skip(
                    format!("postfix: {param}"),
                    &entry,
                    "the accounts are in SQL: a file table next to them is not carried (add its entries to the database)",
                );
                continue;
            }
            if out.is_some() {
                self.skip(
                    format!("postfix: {param}"),
                    &entry,
                    "Postern takes one query per lookup; mailboxes are found before aliases, so a map returning each mailbox's own address (seed-style email2email) is not needed",
                );
                continue;
            }
            let Some(text) = self.file(&spec.arg) else {
                self.plan
                    .blockers
                    .push(format!("{param}: cannot read {}", spec.arg));
                continue;
            };
            let map = postfix::parse_sql_map(text);
            for u in &map.unsupported {
                self.skip(
                    format!("postfix: {param} ({})", spec.arg),
                    u,
                    "changes the map's answer; Postern's queries have no such setting: write it into the SQL",
                );
            }
            let Some(query) = map.query.clone() else {
                self.plan.blockers.push(format!("{}: no query", spec.arg));
                continue;
            };
            match postfix::translate_postfix_query(&query) {
                Ok(q) => {
                    let key = match param {
                        "virtual_mailbox_domains" => "domain",
                        _ => "alias",
                    };
                    self.row(
                        format!("postfix: {param} ({spec})"),
                        &query,
                        format!("[database.queries] {key} = {q}"),
                    );
                    out = Some((q, spec.arg.clone()));
                }
                Err(e) => self
                    .plan
                    .blockers
                    .push(format!("{param} ({}): {}", spec.arg, e.0)),
            }
        }
        out
    }
}

/// The password query as Postern's account query (`address, password, quota_bytes,
/// enabled`), and the user expression (for the list query).
pub(super) fn account_query(
    q: &str,
    quota: Option<u64>,
) -> Result<(String, Option<String>), dovecot::Untranslatable> {
    let q = dovecot::translate_vars(q)?;
    let (items, rest) = dovecot::split_select(&q).ok_or_else(|| {
        dovecot::Untranslatable("password_query is not a SELECT … FROM … Postern can read".into())
    })?;
    let password = items.iter().find(|i| i.name == "password").ok_or_else(|| {
        dovecot::Untranslatable("password_query returns no password column".into())
    })?;
    let user = items
        .iter()
        .find(|i| i.name == "user")
        .map(|i| i.expr.clone());
    if items
        .iter()
        .any(|i| i.name == "username" || i.name == "domain")
        && user.is_none()
    {
        return Err(dovecot::Untranslatable(
            "password_query returns username and domain separately: rewrite it to return the whole address as user".into(),
        ));
    }
    if items
        .iter()
        .any(|i| i.name == "nopassword" || i.name == "allow_nets")
    {
        return Err(dovecot::Untranslatable(
            "password_query returns nopassword/allow_nets, which have no equivalent".into(),
        ));
    }
    let user_col = user.clone().unwrap_or_else(|| "NULL".into());
    Ok((
        format!(
            "SELECT {user_col}, {}, {}, 1 {rest}",
            password.expr,
            quota.unwrap_or(0)
        ),
        user,
    ))
}

/// The password query as Postern's `password_update` query (`UPDATE t SET col = %p WHERE
/// …`), when that can be derived safely: the password is a plain column of the one table
/// named by `FROM`, and the `WHERE` clause is plain conditions that single out the user
/// (`%u`, or `%n` and `%d`), kept as written so the same row is updated. Otherwise why not,
/// with the query the admin should write.
pub(super) fn update_query(q: &str) -> Result<String, String> {
    let template = |table: &str, column: &str| {
        format!(
            "not derived safely: for [passwords] rehash_to_argon2id write [database.queries] \
             password_update = \"UPDATE {table} SET {column} = '%p' WHERE <address column> = '%u'\" \
             (the column must hold 110 characters)"
        )
    };
    let Ok(tq) = dovecot::translate_vars(q) else {
        return Err(template("<table>", "<password column>"));
    };
    let Some((items, rest)) = dovecot::split_select(&tq) else {
        return Err(template("<table>", "<password column>"));
    };
    let ident = |w: &str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_`\"".contains(&b))
            && !w.starts_with(|c: char| c.is_ascii_digit())
    };
    let column = items
        .iter()
        .find(|i| i.name == "password")
        .map(|i| i.expr.trim())
        .filter(|e| ident(e));
    // `FROM table WHERE …`, nothing else between them (no alias, join or second table).
    let words: Vec<&str> = rest.split_whitespace().collect();
    let table = match words.as_slice() {
        [from, t, more @ ..]
            if from.eq_ignore_ascii_case("FROM")
                && more.first().is_none_or(|w| w.eq_ignore_ascii_case("WHERE"))
                && t.split('.').all(ident) =>
        {
            Some(*t)
        }
        _ => None,
    };
    let (Some(table), Some(column)) = (table, column) else {
        return Err(template(
            table.unwrap_or("<table>"),
            column.unwrap_or("<password column>"),
        ));
    };
    // The conditions as written (after the third word, `WHERE`).
    let mut cond = rest.as_str();
    for _ in 0..3 {
        cond = cond.trim_start();
        cond = &cond[cond.find(char::is_whitespace).unwrap_or(cond.len())..];
    }
    let cond = cond.trim();
    let upper = cond.to_ascii_uppercase();
    let plain = !cond.is_empty()
        && !cond.contains(['(', ')', ';'])
        && !upper
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .any(|w| {
                matches!(
                    w,
                    "SELECT" | "GROUP" | "ORDER" | "LIMIT" | "UNION" | "HAVING" | "OR" | "JOIN"
                )
            });
    let keyed = cond.contains("%u") || (cond.contains("%n") && cond.contains("%d"));
    if !plain || !keyed {
        return Err(template(table, column));
    }
    Ok(format!("UPDATE {table} SET {column} = %p WHERE {cond}"))
}

/// The iterate query as Postern's list query.
pub(super) fn list_query(q: &str) -> Result<String, dovecot::Untranslatable> {
    let q = dovecot::translate_vars(q)?;
    let (items, rest) = dovecot::split_select(&q)
        .ok_or_else(|| dovecot::Untranslatable("not a SELECT … FROM … Postern can read".into()))?;
    let user = items.iter().find(|i| i.name == "user").ok_or_else(|| {
        dovecot::Untranslatable(
            "returns no user column (username and domain apart have no equivalent)".into(),
        )
    })?;
    Ok(format!("SELECT {} {rest}", user.expr))
}

/// `FROM t WHERE …` without its WHERE clause.
pub(super) fn cut_where(from: &str) -> String {
    let upper = from.to_ascii_uppercase();
    match upper.find(" WHERE ") {
        Some(i) => from[..i].to_owned(),
        None => from.to_owned(),
    }
}

/// A Dovecot `connect` string (`host=… dbname=… user=… password=…`) as a database URL
/// without the password, and the password.
pub(super) fn connect_url(driver: &str, connect: &str) -> Result<(String, Option<String>), String> {
    let mut kv = BTreeMap::new();
    for w in connect.split_whitespace() {
        if let Some((k, v)) = w.split_once('=') {
            kv.insert(k.to_owned(), v.trim_matches('\'').to_owned());
        }
    }
    let get = |k: &str| kv.get(k).cloned();
    match driver {
        "sqlite" => {
            let path = connect.trim();
            if path.is_empty() {
                return Err("sqlite connect names no file".into());
            }
            Ok((format!("sqlite://{path}"), None))
        }
        "mysql" | "pgsql" => {
            let scheme = if driver == "mysql" {
                "mysql"
            } else {
                "postgres"
            };
            let host = get("host").unwrap_or_else(|| "localhost".into());
            let user = get("user").ok_or("connect names no user")?;
            let db = get("dbname").ok_or("connect names no dbname")?;
            let port = get("port").map(|p| format!(":{p}")).unwrap_or_default();
            let url = if host.starts_with('/') {
                let param = if driver == "mysql" { "socket" } else { "host" };
                format!("{scheme}://{user}@localhost/{db}?{param}={host}")
            } else {
                format!("{scheme}://{user}@{host}{port}/{db}")
            };
            Ok((url, get("password")))
        }
        other => Err(format!(
            "database driver {other:?} is not one Postern speaks"
        )),
    }
}

pub(super) fn redact_connect(connect: &str) -> String {
    connect
        .split_whitespace()
        .map(|w| {
            if w.starts_with("password=") {
                "password=…"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
