//! Postfix's configuration as text: `main.cf` (or `postconf -n` output, the same syntax),
//! map specs (`mysql:/etc/postfix/x.cf, hash:/etc/postfix/virtual`), SQL map files and the
//! source text of `hash:`/`texthash:` tables. No I/O.

use std::collections::BTreeMap;

/// Longest `$name` expansion chain followed (Postfix's own limit is 100).
const MAX_EXPANSION_DEPTH: usize = 20;

/// `name = value` parameters, as `main.cf` and the SQL map files write them: a logical line
/// starts in column one, lines starting with whitespace continue it, `#` lines are comments.
pub(crate) fn parse_params(text: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some(v) = last.as_ref().and_then(|k| out.get_mut(k)) {
                if !v.is_empty() {
                    v.push(' ');
                }
                v.push_str(trimmed);
            }
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            last = None;
            continue;
        };
        let name = name.trim().to_owned();
        out.insert(name.clone(), value.trim().to_owned());
        last = Some(name);
    }
    out
}

/// `value` with `$name`, `${name}` and `$(name)` replaced from `params` (unknown names become
/// empty, as in Postfix; `$$` is a dollar sign).
pub(crate) fn expand(value: &str, params: &BTreeMap<String, String>) -> String {
    expand_depth(value, params, 0)
}

fn expand_depth(value: &str, params: &BTreeMap<String, String>, depth: usize) -> String {
    if depth > MAX_EXPANSION_DEPTH || !value.contains('$') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, consumed) = if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        } else if let Some(r) = after.strip_prefix('{').or_else(|| after.strip_prefix('(')) {
            let close = if after.starts_with('{') { '}' } else { ')' };
            match r.find(close) {
                Some(j) => (&r[..j], j + 2),
                None => (r, r.len() + 1),
            }
        } else {
            let n = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..n], n)
        };
        if let Some(v) = params.get(name) {
            out.push_str(&expand_depth(v, params, depth + 1));
        }
        rest = &after[consumed.min(after.len())..];
    }
    out.push_str(rest);
    out
}

/// Splits a Postfix list value (commas and/or whitespace).
pub(crate) fn list(value: &str) -> Vec<String> {
    value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// One lookup table of a `*_maps` parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapSpec {
    /// The table type (`hash`, `mysql`, …), `proxy:` removed.
    pub(crate) kind: String,
    /// The file (or other argument) after the type.
    pub(crate) arg: String,
}

impl MapSpec {
    /// A list entry: `type:arg`, or `proxy:type:arg`; `None` without a type.
    pub(crate) fn parse(entry: &str) -> Option<Self> {
        let entry = entry.strip_prefix("proxy:").unwrap_or(entry);
        let (kind, arg) = entry.split_once(':')?;
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        Some(Self {
            kind: kind.to_ascii_lowercase(),
            arg: arg.to_owned(),
        })
    }

    /// The text source of an indexed table (`hash:/etc/postfix/virtual` is built from
    /// `/etc/postfix/virtual`), or the file itself for `texthash:`; `None` for other types.
    pub(crate) fn text_source(&self) -> Option<&str> {
        match self.kind.as_str() {
            "hash" | "btree" | "lmdb" | "cdb" | "dbm" | "texthash" => Some(&self.arg),
            _ => None,
        }
    }

    /// True for SQL tables with a config file.
    pub(crate) fn is_sql(&self) -> bool {
        matches!(self.kind.as_str(), "mysql" | "pgsql" | "sqlite")
    }
}

impl std::fmt::Display for MapSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.arg)
    }
}

/// The entries of a `hash:`/`texthash:` source file: `key value…` per logical line (lines
/// starting with whitespace continue the previous one), `#` comments, in file order.
pub(crate) fn parse_table(text: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(trimmed);
            }
            continue;
        }
        let (k, v) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        out.push((k.to_owned(), v.trim().to_owned()));
    }
    out
}

/// A SQL table's settings (`mysql_table(5)`, `pgsql_table(5)`, `sqlite_table(5)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SqlMap {
    /// `hosts` (the first one), `dbname`, `user`; `dbpath` for SQLite.
    pub(crate) host: Option<String>,
    /// Database name.
    pub(crate) dbname: Option<String>,
    /// Login.
    pub(crate) user: Option<String>,
    /// Password (never printed).
    pub(crate) password: Option<String>,
    /// SQLite's file.
    pub(crate) dbpath: Option<String>,
    /// The query (built from the pre-2.2 `table`/`select_field`/`where_field` form when
    /// there is no `query`).
    pub(crate) query: Option<String>,
    /// Settings that change the answer and have no equivalent (`result_format`, `domain`, …).
    pub(crate) unsupported: Vec<String>,
}

/// Parses a SQL map file.
pub(crate) fn parse_sql_map(text: &str) -> SqlMap {
    let p = parse_params(text);
    let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
    let query = get("query").or_else(|| {
        let table = get("table")?;
        let select = get("select_field")?;
        let wh = get("where_field")?;
        let extra = get("additional_conditions").unwrap_or_default();
        Some(
            format!("SELECT {select} FROM {table} WHERE {wh} = '%s' {extra}")
                .trim_end()
                .to_owned(),
        )
    });
    let unsupported = ["result_format", "domain", "expansion_limit"]
        .into_iter()
        .filter(|k| {
            p.get(*k)
                .is_some_and(|v| !(v.is_empty() || *k == "result_format" && v == "%s"))
        })
        .map(|k| format!("{k} = {}", p[k]))
        .collect();
    SqlMap {
        host: get("hosts").and_then(|h| list(&h).into_iter().next()),
        dbname: get("dbname"),
        user: get("user"),
        password: get("password"),
        dbpath: get("dbpath"),
        query,
        unsupported,
    }
}

/// Why a query cannot be carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untranslatable(pub(crate) String);

/// A Postfix SQL map query in Postern's placeholder syntax: `%s` (the key) → `%u`, `%u`
/// (its local part) → `%n`, `%d` → `%d`. `%%`, `%S`/`%U`/`%D` and `%1`…`%9` have no
/// equivalent. A trailing `;` is dropped.
pub(crate) fn translate_postfix_query(query: &str) -> Result<String, Untranslatable> {
    let mut out = String::with_capacity(query.len());
    let mut chars = query.trim().trim_end_matches(';').trim_end().chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('s') => out.push_str("%u"),
            Some('u') => out.push_str("%n"),
            Some('d') => out.push_str("%d"),
            other => {
                return Err(Untranslatable(format!(
                    "placeholder %{} has no equivalent in Postern's queries (%u, %n, %d)",
                    other.map(String::from).unwrap_or_default()
                )));
            }
        }
    }
    Ok(out)
}

/// A `mynetworks` entry as a CIDR network (`[::1]/128` → `::1/128`, a bare address gets
/// its full prefix); `None` for tables and host names.
pub(crate) fn network(entry: &str) -> Option<String> {
    let e = entry.trim();
    let (addr, prefix) = match e.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (e, None),
    };
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: std::net::IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        Some(p) => p.parse().ok().filter(|&p| p <= max)?,
        None => max,
    };
    Some(format!("{ip}/{prefix}"))
}

/// A `relayhost`/transport next hop as Postern's `host:port`: `[host]:port` keeps its
/// brackets off for names and on for IPv6; `mx` tells whether Postfix looked up MX records
/// (no brackets), which Postern does not do for a relayhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NextHop {
    /// `host:port` (`[v6]:port`).
    pub(crate) host_port: String,
    /// Postfix would have looked up MX records for it.
    pub(crate) mx: bool,
}

/// Parses `[host]:port`, `host:port`, `[host]`, `host`.
pub(crate) fn next_hop(value: &str) -> Option<NextHop> {
    let v = value.trim();
    if v.is_empty() {
        return None;
    }
    let (host, port, mx) = if let Some(r) = v.strip_prefix('[') {
        let (h, tail) = r.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p,
            None if tail.is_empty() => "25",
            None => return None,
        };
        (h, port, false)
    } else {
        match v.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, p, true),
            _ => (v, "25", true),
        }
    };
    let port: u16 = port.parse().ok()?;
    if host.is_empty() || host.contains(char::is_whitespace) {
        return None;
    }
    let host = if host.contains(':') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Some(NextHop {
        host_port: format!("{host}:{port}"),
        mx,
    })
}

/// A `message_size_limit`-style byte count.
pub(crate) fn bytes(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

/// Services of `postconf -M` output (or master.cf): `(name, type, command)`.
pub(crate) fn master_services(text: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.starts_with(char::is_whitespace) {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() >= 8 {
            out.push((f[0].to_owned(), f[1].to_owned(), f[7].to_owned()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn main_cf_lines_continuations_and_expansion() {
        let p = parse_params(
            "# Debian\nmyhostname = mail.example.org\nmydomain = example.org\n\
             myorigin = $mydomain\nmynetworks = 127.0.0.0/8 [::ffff:127.0.0.0]/104\n    [::1]/128\n\
             smtpd_banner = ${myhostname} ESMTP $(mail_name)\nmail_name = Postfix\ncost = $$5\n",
        );
        assert_eq!(
            p["mynetworks"],
            "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128"
        );
        assert_eq!(expand(&p["myorigin"], &p), "example.org");
        assert_eq!(
            expand(&p["smtpd_banner"], &p),
            "mail.example.org ESMTP Postfix"
        );
        assert_eq!(expand(&p["cost"], &p), "$5");
        // A loop ends.
        let l = parse_params("a = $b\nb = $a\n");
        let _ = expand("$a", &l);
    }

    #[test]
    fn map_specs_and_tables() {
        let l = list(
            "proxy:mysql:/etc/postfix/mysql-virtual-alias-maps.cf,\thash:/etc/postfix/virtual",
        );
        let specs: Vec<_> = l.iter().filter_map(|e| MapSpec::parse(e)).collect();
        assert_eq!(specs[0].kind, "mysql");
        assert!(specs[0].is_sql());
        assert_eq!(specs[1].text_source(), Some("/etc/postfix/virtual"));
        assert_eq!(MapSpec::parse("example.org"), None);
        let t = parse_table(
            "# aliases\npostmaster@example.org  alice@example.org\n\
             all@example.org alice@example.org,\n    bob@example.org\n@example.net catch@example.org\n",
        );
        assert_eq!(t.len(), 3);
        assert_eq!(t[1].1, "alice@example.org, bob@example.org");
        assert_eq!(t[2].0, "@example.net");
    }

    #[test]
    fn sql_maps_translate() {
        let m = parse_sql_map(
            "user = mailuser\npassword = mailuserpass\nhosts = 127.0.0.1\ndbname = mailserver\n\
             query = SELECT 1 FROM virtual_domains WHERE name='%s'\n",
        );
        assert_eq!(m.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(m.password.as_deref(), Some("mailuserpass"));
        assert_eq!(
            translate_postfix_query(m.query.as_deref().unwrap()).unwrap(),
            "SELECT 1 FROM virtual_domains WHERE name='%u'"
        );
        assert_eq!(
            translate_postfix_query(
                "SELECT destination FROM aliases WHERE local = '%u' AND dom = '%d';"
            )
            .unwrap(),
            "SELECT destination FROM aliases WHERE local = '%n' AND dom = '%d'"
        );
        assert!(translate_postfix_query("SELECT x FROM t WHERE a LIKE '%%s'").is_err());
        assert!(translate_postfix_query("SELECT x FROM t WHERE a = '%1'").is_err());
        let old = parse_sql_map(
            "hosts = unix:/run/mysqld/mysqld.sock\ntable = alias_table\nselect_field = Destination\n\
             where_field = Source\nresult_format = %s@example.org\n",
        );
        assert_eq!(
            old.query.as_deref(),
            Some("SELECT Destination FROM alias_table WHERE Source = '%s'")
        );
        assert_eq!(old.unsupported, ["result_format = %s@example.org"]);
    }

    #[test]
    fn networks_and_next_hops() {
        assert_eq!(network("[::1]/128").as_deref(), Some("::1/128"));
        assert_eq!(network("192.0.2.7").as_deref(), Some("192.0.2.7/32"));
        assert_eq!(network("10.0.0.0/40"), None);
        assert_eq!(network("hash:/etc/postfix/network_table"), None);
        let h = next_hop("[smtp.provider.example]:587").unwrap();
        assert_eq!(h.host_port, "smtp.provider.example:587");
        assert!(!h.mx);
        let h = next_hop("relay.example").unwrap();
        assert_eq!(h.host_port, "relay.example:25");
        assert!(h.mx);
        assert_eq!(
            next_hop("[2001:db8::1]:25").unwrap().host_port,
            "[2001:db8::1]:25"
        );
        assert_eq!(next_hop("[192.0.2.1]").unwrap().host_port, "[192.0.2.1]:25");
        assert_eq!(next_hop(""), None);
        assert_eq!(next_hop("[x]:port"), None);
    }

    #[test]
    fn master_cf_services() {
        let s = master_services(
            "smtp      inet  n       -       y       -       1       postscreen\n\
             smtpd     pass  -       -       y       -       -       smtpd\n  -o x=y\n\
             # comment\n",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].2, "postscreen");
    }
}
