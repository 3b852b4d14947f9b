//! Dovecot's configuration as text: `doveconf -n` output or `dovecot.conf` with its
//! includes, the `dovecot-sql.conf.ext` files and passwd-files. No I/O: includes are read
//! through a closure the caller gives.

/// Deepest section nesting and include depth accepted.
const MAX_DEPTH: usize = 16;

/// A section (`passdb { … }`, `plugin { … }`, `service imap-login { … }`) or the top level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Section {
    /// `passdb`, `plugin`, … (empty for the top level).
    pub(crate) kind: String,
    /// The name after the kind (`service imap-login`), if any.
    pub(crate) name: Option<String>,
    /// `key = value` in file order (a later one wins).
    pub(crate) settings: Vec<(String, String)>,
    /// Nested sections.
    pub(crate) children: Vec<Self>,
}

impl Section {
    /// The last value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Child sections of a kind.
    #[cfg(test)]
    pub(crate) fn sections<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Self> + 'a {
        self.children.iter().filter(move |s| s.kind == kind)
    }

    /// Every section of a kind at any depth (e.g. `protocol lmtp { plugin {} }` is rare;
    /// `passdb` inside `protocol` is common enough).
    pub(crate) fn all_sections<'a>(&'a self, kind: &str, out: &mut Vec<&'a Self>) {
        for c in &self.children {
            if c.kind == kind {
                out.push(c);
            }
            c.all_sections(kind, out);
        }
    }
}

/// Parses Dovecot config text. `include(pattern)` returns the text of each file an
/// `!include`/`!include_try` names (relative patterns are the caller's to resolve).
pub(crate) fn parse(text: &str, include: &mut dyn FnMut(&str) -> Vec<String>) -> Section {
    let mut stack = vec![Section::default()];
    parse_into(text, include, &mut stack, 0);
    while stack.len() > 1 {
        let s = stack.pop().unwrap_or_default();
        if let Some(parent) = stack.last_mut() {
            parent.children.push(s);
        }
    }
    stack.pop().unwrap_or_default()
}

fn parse_into(
    text: &str,
    include: &mut dyn FnMut(&str) -> Vec<String>,
    stack: &mut Vec<Section>,
    depth: usize,
) {
    let mut pending = String::new();
    for raw in text.lines() {
        // `\` at the end continues the line (used for long SQL queries).
        if let Some(head) = raw.trim_end().strip_suffix('\\') {
            pending.push_str(head.trim());
            pending.push(' ');
            continue;
        }
        let joined;
        let line = if pending.is_empty() {
            raw.trim()
        } else {
            pending.push_str(raw.trim());
            joined = std::mem::take(&mut pending);
            joined.trim()
        };
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(pat) = line
            .strip_prefix("!include_try ")
            .or_else(|| line.strip_prefix("!include "))
        {
            if depth < MAX_DEPTH {
                for t in include(pat.trim()) {
                    parse_into(&t, include, stack, depth + 1);
                }
            }
            continue;
        }
        if line == "}" {
            if stack.len() > 1 {
                let s = stack.pop().unwrap_or_default();
                if let Some(parent) = stack.last_mut() {
                    parent.children.push(s);
                }
            }
            continue;
        }
        if let Some(head) = line.strip_suffix('{') {
            if stack.len() > MAX_DEPTH {
                continue;
            }
            let mut words = head.split_whitespace();
            let kind = words.next().unwrap_or("").to_owned();
            let name = words.collect::<Vec<_>>().join(" ");
            stack.push(Section {
                kind,
                name: (!name.is_empty()).then(|| unquote(&name).to_owned()),
                ..Section::default()
            });
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && let Some(top) = stack.last_mut()
        {
            top.settings
                .push((k.trim().to_owned(), unquote(v.trim()).to_owned()));
        }
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// A passdb/userdb `args` string: `key=value` options and the remaining words (a file).
pub(crate) fn split_args(args: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut opts = Vec::new();
    let mut rest = Vec::new();
    for w in args.split_whitespace() {
        match w.split_once('=') {
            Some((k, v)) if !k.starts_with('/') => opts.push((k.to_owned(), v.to_owned())),
            _ => rest.push(w.to_owned()),
        }
    }
    (opts, rest)
}

/// One passwd-file line: `user:password:uid:gid:gecos:home:shell:extra fields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    /// The login (an address in virtual setups).
    pub(crate) user: String,
    /// The stored hash, with its `{SCHEME}` prefix if any.
    pub(crate) password: String,
    /// uid, gid (may be empty: the userdb's defaults apply).
    pub(crate) uid: String,
    /// See `uid`.
    pub(crate) gid: String,
    /// Home directory (may be empty).
    pub(crate) home: String,
    /// Extra fields (`userdb_quota_rule=*:storage=1G`, …).
    pub(crate) extra: Vec<String>,
}

/// Parses a passwd-file (comments and blank lines skipped).
pub(crate) fn parse_passwd_file(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(8, ':').collect();
            let field = |i: usize| f.get(i).copied().unwrap_or("").to_owned();
            let user = field(0);
            (!user.is_empty()).then(|| PasswdEntry {
                user,
                password: field(1),
                uid: field(2),
                gid: field(3),
                home: field(5),
                extra: field(7).split_whitespace().map(str::to_owned).collect(),
            })
        })
        .collect()
}

/// Why a Dovecot value cannot be carried over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Untranslatable(pub(crate) String);

/// Dovecot `%` variables in Postern's template syntax: `%u`, `%n`, `%d` (and `%{user}`,
/// `%{username}`, `%{domain}`, with the `L` lower-case modifier: Postern's keys are lower
/// case already). Anything else (`%w`, `%r`, `%{service}`, …) has no equivalent.
pub(crate) fn translate_vars(text: &str) -> Result<String, Untranslatable> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let mut after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('L') {
            after = a;
        }
        let (var, used) = if let Some(a) = after.strip_prefix('{') {
            let end = a
                .find('}')
                .ok_or_else(|| Untranslatable("unclosed %{".into()))?;
            let name = a[..end].trim_start_matches("lc:");
            let v = match name {
                "user" => "%u",
                "username" => "%n",
                "domain" => "%d",
                "home" => "%h",
                other => {
                    return Err(Untranslatable(format!(
                        "%{{{other}}} has no equivalent (Postern knows %u, %n, %d)"
                    )));
                }
            };
            (v, end + 2)
        } else {
            match after.chars().next() {
                Some('u') => ("%u", 1),
                Some('n') => ("%n", 1),
                Some('d') => ("%d", 1),
                Some('h') => ("%h", 1),
                Some('%') => ("%%", 1),
                other => {
                    return Err(Untranslatable(format!(
                        "%{} has no equivalent (Postern knows %u, %n, %d)",
                        other.map(String::from).unwrap_or_default()
                    )));
                }
            }
        };
        out.push_str(var);
        rest = &after[used..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A quota limit (`1G`, `500M`, `1024k`, `2T`, `1073741824`, with an optional `B`) in bytes.
pub(crate) fn quota_bytes(limit: &str) -> Option<u64> {
    let l = limit.trim();
    let l = l.strip_suffix(['B', 'b']).unwrap_or(l);
    let (num, mult) = match l.chars().last()? {
        'k' | 'K' => (&l[..l.len() - 1], 1u64 << 10),
        'M' | 'm' => (&l[..l.len() - 1], 1 << 20),
        'G' | 'g' => (&l[..l.len() - 1], 1 << 30),
        'T' | 't' => (&l[..l.len() - 1], 1 << 40),
        _ => (l, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// The storage limit of a `quota_rule` (`*:storage=1G`), in bytes; `Some(0)` for
/// `*:ignore` or `storage=0` (no limit).
pub(crate) fn quota_rule_storage(rule: &str) -> Option<u64> {
    let (_, body) = rule.split_once(':')?;
    if body.trim() == "ignore" {
        return Some(0);
    }
    body.split(':')
        .find_map(|part| part.trim().strip_prefix("storage="))
        .and_then(quota_bytes)
}

/// One item of a SQL `SELECT` list: the expression and its name (alias or column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SelectItem {
    /// The expression as written.
    pub(crate) expr: String,
    /// The alias, or the column name, lower-cased.
    pub(crate) name: String,
}

/// A `SELECT items FROM rest` query split at its top level; `None` when it is not one.
pub(crate) fn split_select(query: &str) -> Option<(Vec<SelectItem>, String)> {
    let q = query.trim().trim_end_matches(';').trim_end();
    let upper = q.to_ascii_uppercase();
    if !upper.starts_with("SELECT ") {
        return None;
    }
    // The first top-level FROM.
    let bytes = q.as_bytes();
    let (mut depth, mut quote) = (0i32, None::<u8>);
    let mut from = None;
    let mut commas = Vec::new();
    let mut i = 7;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(qc) if b == qc => quote = None,
            Some(_) => {}
            None => match b {
                b'\'' | b'"' | b'`' => quote = Some(b),
                b'(' => depth += 1,
                b')' => depth -= 1,
                b',' if depth == 0 => commas.push(i),
                _ if depth == 0
                    && upper[i..].starts_with("FROM")
                    && bytes[i - 1].is_ascii_whitespace()
                    && bytes.get(i + 4).is_some_and(u8::is_ascii_whitespace) =>
                {
                    from = Some(i);
                    break;
                }
                _ => {}
            },
        }
        i += 1;
    }
    let from = from?;
    let mut items = Vec::new();
    let mut start = 7;
    for end in commas.into_iter().chain(std::iter::once(from)) {
        let expr = q[start..end].trim();
        start = end + 1;
        if expr.is_empty() {
            return None;
        }
        items.push(select_item(expr));
    }
    Some((items, q[from..].to_owned()))
}

fn select_item(expr: &str) -> SelectItem {
    let words: Vec<&str> = expr.split_whitespace().collect();
    let n = words.len();
    let clean = |w: &str| {
        w.trim_matches(|c| c == '`' || c == '"' || c == '\'')
            .to_ascii_lowercase()
    };
    if n >= 3 && words[n - 2].eq_ignore_ascii_case("as") {
        return SelectItem {
            expr: words[..n - 2].join(" "),
            name: clean(words[n - 1]),
        };
    }
    let last = words.last().copied().unwrap_or("");
    // `table.column` names `column`.
    let name = clean(last.rsplit('.').next().unwrap_or(last));
    SelectItem {
        expr: expr.to_owned(),
        name,
    }
}

/// The constant value of a select expression (`5000`, `'5000'`, `'/var/vmail/%d/%n'`).
pub(crate) fn constant(expr: &str) -> Option<String> {
    let e = expr.trim();
    if let Some(s) = e.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return (!s.contains('\'')).then(|| s.to_owned());
    }
    e.bytes().all(|b| b.is_ascii_digit()).then(|| e.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doveconf_output_parses() {
        let text = "# 2.3.19.1 (9b53102964): /etc/dovecot/dovecot.conf\n\
            mail_location = maildir:/var/vmail/%d/%n/Maildir\nfirst_valid_uid = 5000\n\
            namespace inbox {\n  inbox = yes\n  mailbox \"Sent Messages\" {\n    special_use = \\Sent\n  }\n}\n\
            passdb {\n  args = /etc/dovecot/dovecot-sql.conf.ext\n  driver = sql\n}\n\
            plugin {\n  sieve = file:~/sieve;active=~/.dovecot.sieve\n  quota_rule = *:storage=1G\n}\n\
            protocol lmtp {\n  mail_plugins = \" quota sieve\"\n}\nssl_cert = </etc/ssl/certs/mail.pem\n\
            userdb {\n  args = uid=vmail gid=vmail home=/var/vmail/%d/%n\n  driver = static\n}\n";
        let c = parse(text, &mut |_| Vec::new());
        assert_eq!(c.get("first_valid_uid"), Some("5000"));
        assert_eq!(c.get("ssl_cert"), Some("</etc/ssl/certs/mail.pem"));
        let p: Vec<_> = c.sections("passdb").collect();
        assert_eq!(p[0].get("driver"), Some("sql"));
        let ns = c.sections("namespace").next().unwrap();
        assert_eq!(ns.children[0].name.as_deref(), Some("Sent Messages"));
        let plugin = c.sections("plugin").next().unwrap();
        assert_eq!(
            plugin.get("sieve"),
            Some("file:~/sieve;active=~/.dovecot.sieve")
        );
        let lmtp = c.sections("protocol").next().unwrap();
        assert_eq!(lmtp.get("mail_plugins"), Some(" quota sieve"));
        let (opts, rest) = split_args(c.sections("userdb").next().unwrap().get("args").unwrap());
        assert_eq!(opts[2], ("home".into(), "/var/vmail/%d/%n".into()));
        assert!(rest.is_empty());
    }

    #[test]
    fn includes_and_continuations() {
        let main = "protocols = imap lmtp\n!include conf.d/*.conf\n!include_try local.conf\n";
        let mut asked = Vec::new();
        let c = parse(main, &mut |p| {
            asked.push(p.to_owned());
            if p == "conf.d/*.conf" {
                vec![
                    "mail_location = maildir:~/Maildir\n".into(),
                    "passdb {\n  driver = passwd-file\n  args = scheme=CRYPT username_format=%u /etc/dovecot/users\n}\n".into(),
                ]
            } else {
                Vec::new()
            }
        });
        assert_eq!(asked, ["conf.d/*.conf", "local.conf"]);
        assert_eq!(c.get("mail_location"), Some("maildir:~/Maildir"));
        let sql = parse(
            "driver = mysql\nconnect = host=127.0.0.1 dbname=mailserver user=mailuser password=pw\n\
             password_query = \\\n  SELECT email as user, password \\\n  FROM virtual_users WHERE email='%u';\n",
            &mut |_| Vec::new(),
        );
        assert_eq!(
            sql.get("password_query"),
            Some("SELECT email as user, password FROM virtual_users WHERE email='%u';")
        );
    }

    #[test]
    fn passwd_file_entries() {
        let e = parse_passwd_file(
            "# users\nalice@example.org:{SHA512-CRYPT}$6$abc$def:5000:5000::/var/vmail/example.org/alice::userdb_quota_rule=*:storage=2G\n\
             bob@example.org:{PLAIN}secret::::::\n",
        );
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].password, "{SHA512-CRYPT}$6$abc$def");
        assert_eq!(e[0].uid, "5000");
        assert_eq!(e[0].home, "/var/vmail/example.org/alice");
        assert_eq!(e[0].extra, ["userdb_quota_rule=*:storage=2G"]);
        assert_eq!(e[1].home, "");
    }

    #[test]
    fn variables_and_quotas() {
        assert_eq!(
            translate_vars("/var/vmail/%Ld/%{username}/Maildir").unwrap(),
            "/var/vmail/%d/%n/Maildir"
        );
        assert!(translate_vars("WHERE ip = '%r'").is_err());
        assert!(translate_vars("%{service}").is_err());
        assert_eq!(quota_rule_storage("*:storage=1G"), Some(1 << 30));
        assert_eq!(
            quota_rule_storage("*:storage=512M:messages=1000"),
            Some(512 << 20)
        );
        assert_eq!(quota_rule_storage("*:ignore"), Some(0));
        assert_eq!(quota_bytes("100B"), Some(100));
        assert_eq!(quota_bytes("x"), None);
    }

    #[test]
    fn select_lists() {
        let (items, rest) = split_select(
            "SELECT email as user, password, CONCAT('*:storage=', quota) AS userdb_quota_rule FROM virtual_users WHERE email='%u';",
        )
        .unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].expr, "email");
        assert_eq!(items[0].name, "user");
        assert_eq!(items[1].name, "password");
        assert_eq!(items[2].name, "userdb_quota_rule");
        assert_eq!(rest, "FROM virtual_users WHERE email='%u'");
        let (items, _) = split_select(
            "SELECT '5000' AS uid, 5000 as gid, '/var/vmail/%d/%n' as home FROM accounts_table WHERE Email = '%u'",
        )
        .unwrap();
        assert_eq!(constant(&items[0].expr).as_deref(), Some("5000"));
        assert_eq!(constant(&items[1].expr).as_deref(), Some("5000"));
        assert_eq!(
            constant(&items[2].expr).as_deref(),
            Some("/var/vmail/%d/%n")
        );
        let (items, _) = split_select("SELECT u.password FROM users u WHERE u.email='%u'").unwrap();
        assert_eq!(items[0].name, "password");
        assert!(split_select("UPDATE x SET y = 1").is_none());
    }
}
