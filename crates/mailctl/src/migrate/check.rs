//! `mailctl migrate check`: the live data through Postern's directory, compared with what
//! Postfix (`postmap -q`) and Dovecot (`doveadm user`) answer. Starts no listeners.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;
use base64::Engine as _;
use postern_config::{Config, expand_template, expand_template_home};
use postern_directory::{AliasExpansion, Directory, password};
use serde::Serialize;

use super::plan::{DatabasePlan, Plan};
use super::postfix::{self, MapSpec};
use super::{CheckArgs, read_source, run_tool, tool};

/// Deepest alias chain followed through `postmap -q`.
const MAX_ALIAS_DEPTH: usize = 16;
/// Most aliases compared (each costs `postmap` runs).
const MAX_ALIASES: usize = 10_000;
/// Most `postmap -q` runs for one alias (a wide, deep alias graph is not followed further).
const MAX_LOOKUPS_PER_ALIAS: usize = 200;

#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Line {
    status: Status,
    check: &'static str,
    subject: String,
    detail: String,
}

#[derive(Default)]
struct Report(Vec<Line>);

impl Report {
    fn add(
        &mut self,
        status: Status,
        check: &'static str,
        subject: &str,
        detail: impl Into<String>,
    ) {
        self.0.push(Line {
            status,
            check,
            subject: subject.to_owned(),
            detail: detail.into(),
        });
    }
}

pub(super) fn run(a: &CheckArgs, config_path: &Path, json: bool) -> anyhow::Result<()> {
    let source = read_source(&a.source)?;
    let plan = super::plan::build(&source.inputs);
    let config = Config::load(config_path)?;
    let mut report = Report::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(checks(a, &source, &plan, &config, &mut report))?;
    let fails = report.0.iter().filter(|l| l.status == Status::Fail).count();
    if json {
        println!("{}", serde_json::to_string_pretty(&report.0)?);
    } else {
        for l in &report.0 {
            let s = match l.status {
                Status::Ok => "OK  ",
                Status::Warn => "WARN",
                Status::Fail => "FAIL",
            };
            println!("{s} {:<9} {:<30} {}", l.check, l.subject, l.detail);
        }
    }
    if fails > 0 {
        bail!("{fails} mismatch(es)");
    }
    Ok(())
}

struct Postmap {
    exe: Option<PathBuf>,
    dir: PathBuf,
}

impl Postmap {
    /// The first answer of the tables of `param` for `key`: `Ok(None)` not found.
    fn query(&self, specs: &[String], key: &str) -> anyhow::Result<Option<String>> {
        let Some(exe) = &self.exe else {
            bail!("postmap is not installed");
        };
        for spec in specs {
            let out = Command::new(exe)
                .arg("-c")
                .arg(&self.dir)
                .args(["-q", key, spec])
                .stdin(std::process::Stdio::null())
                .output()?;
            match out.status.code() {
                Some(0) => return Ok(Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())),
                Some(1) => {}
                _ => bail!(
                    "postmap -q {key} {spec}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            }
        }
        Ok(None)
    }
}

async fn checks(
    a: &CheckArgs,
    source: &super::Source,
    plan: &Plan,
    config: &Config,
    report: &mut Report,
) -> anyhow::Result<()> {
    // Read-only: no migrations, so the old database gets none of Postern's tables.
    let dir = Directory::open_existing(config).await?;
    let pm = Postmap {
        exe: tool("postmap"),
        dir: a.source.postfix.clone(),
    };
    let pf = |name: &str| -> Vec<String> {
        source
            .inputs
            .postfix
            .get(name)
            .map(|v| postfix::list(v))
            .unwrap_or_default()
    };
    let mailbox_maps = pf("virtual_mailbox_maps");
    let domain_param = pf("virtual_mailbox_domains");
    let alias_maps = pf("virtual_alias_maps");
    let mut doveadm = (!a.no_doveadm).then(|| tool("doveadm")).flatten();
    let default_scheme = &config.passwords.default_scheme;

    // Accounts.
    let accounts = dir.list_logins().await?;
    if accounts.is_empty() {
        report.add(
            Status::Fail,
            "accounts",
            "-",
            "Postern's directory lists no account",
        );
    }
    let mut domains: BTreeSet<String> = BTreeSet::new();
    let mut schemes: BTreeSet<&'static str> = BTreeSet::new();
    for addr in &accounts {
        if let Some((_, d)) = addr.rsplit_once('@') {
            domains.insert(d.to_ascii_lowercase());
        }
        match dir.account(addr).await? {
            None => report.add(
                Status::Fail,
                "account",
                addr,
                "listed but not found by the account query",
            ),
            Some(acc) => match password::validate_stored(&acc.password, default_scheme) {
                Ok(s) => {
                    schemes.insert(s);
                }
                Err(e) => report.add(
                    Status::Fail,
                    "password",
                    addr,
                    format!("Postern cannot verify this hash: {e}"),
                ),
            },
        }
        if !mailbox_maps.is_empty() {
            let ours = dir.is_mailbox(addr).await?;
            match pm.query(&mailbox_maps, addr) {
                Ok(theirs) if theirs.is_some() == ours => {
                    report.add(
                        Status::Ok,
                        "mailbox",
                        addr,
                        "a mailbox for Postfix and Postern",
                    );
                }
                Ok(theirs) => report.add(
                    Status::Fail,
                    "mailbox",
                    addr,
                    format!(
                        "Postfix: {}, Postern: {}",
                        found(theirs.is_some()),
                        found(ours)
                    ),
                ),
                Err(e) => report.add(
                    Status::Warn,
                    "mailbox",
                    addr,
                    format!("not compared: {e:#}"),
                ),
            }
        }
        // The address becomes part of paths and of doveadm's arguments.
        if !path_safe(addr) {
            report.add(
                Status::Fail,
                "account",
                addr,
                "not usable in a path or as an argument (/, .., NUL, leading - or .): Maildir and doveadm not checked",
            );
            continue;
        }
        let home = expand_template(&config.home_template(), addr);
        let mail = expand_template_home(&config.mail_template(), addr, Some(&home));
        let maildir = mail
            .strip_prefix("maildir:")
            .unwrap_or(&mail)
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        if let Some(exe) = &doveadm
            && !dovecot_user(
                exe,
                &source.dovecot_conf,
                addr,
                config,
                &home,
                &maildir,
                report,
            )
        {
            // Dovecot's auth is not there: one warning, not one per account.
            doveadm = None;
        }
        maildir_check(Path::new(&maildir), addr, report);
    }
    if !schemes.is_empty() {
        report.add(
            Status::Ok,
            "password",
            "-",
            format!(
                "schemes in the data, all verified by Postern: {}",
                schemes.into_iter().collect::<Vec<_>>().join(", ")
            ),
        );
    }

    // Domains.
    if let DatabasePlan::Import(i) = &plan.database {
        domains.extend(i.domains.iter().cloned());
    }
    for d in &domains {
        let ours = dir.domain_exists(d).await?;
        let specs: Vec<String> = domain_param
            .iter()
            .filter(|e| MapSpec::parse(e).is_some())
            .cloned()
            .collect();
        let theirs = if specs.is_empty() {
            Ok(domain_param.iter().any(|e| e.eq_ignore_ascii_case(d)))
        } else {
            pm.query(&specs, d).map(|r| r.is_some())
        };
        match theirs {
            Ok(t) if t == ours => {
                report.add(Status::Ok, "domain", d, "ours for Postfix and Postern")
            }
            Ok(t) => report.add(
                Status::Fail,
                "domain",
                d,
                format!("Postfix: {}, Postern: {}", found(t), found(ours)),
            ),
            Err(e) => report.add(Status::Warn, "domain", d, format!("not compared: {e:#}")),
        }
    }

    // Aliases.
    let keys = alias_keys(plan, &dir, &source.inputs).await;
    for key in keys.iter().take(MAX_ALIASES) {
        let ours: BTreeSet<String> = match dir.expand_alias(key).await? {
            AliasExpansion::Targets(t) => t.into_iter().map(|x| x.to_ascii_lowercase()).collect(),
            AliasExpansion::NotAlias => BTreeSet::new(),
            AliasExpansion::Loop => {
                report.add(Status::Fail, "alias", key, "Postern finds a loop");
                continue;
            }
        };
        let mut budget = MAX_LOOKUPS_PER_ALIAS;
        match postfix_expand(&pm, &alias_maps, key, 0, &mut budget) {
            Ok(theirs) if theirs == ours => report.add(
                Status::Ok,
                "alias",
                key,
                format!("→ {}", theirs.into_iter().collect::<Vec<_>>().join(", ")),
            ),
            Ok(theirs) => report.add(
                Status::Fail,
                "alias",
                key,
                format!(
                    "Postfix → {}; Postern → {}",
                    theirs.into_iter().collect::<Vec<_>>().join(", "),
                    ours.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ),
            Err(e) => report.add(Status::Warn, "alias", key, format!("not compared: {e:#}")),
        }
    }
    dir.close().await;

    // DKIM.
    for k in &plan.dkim {
        let subject = format!("{}/{}", k.domain, k.selector);
        let keys = postern_dns::dkim::load_domain(&config.dkim_key_dir(), &k.domain)?;
        let Some(key) = keys.into_iter().find(|x| x.selector == k.selector) else {
            report.add(
                Status::Fail,
                "dkim",
                &subject,
                "not in [dkim] key_dir: run migrate apply",
            );
            continue;
        };
        if a.no_dns {
            report.add(Status::Ok, "dkim", &subject, "key in place (DNS not asked)");
            continue;
        }
        let r = postern_dns::resolver(config)?;
        let name = format!("{}._domainkey.{}", k.selector, k.domain);
        let want = base64::engine::general_purpose::STANDARD.encode(&key.public_key);
        match postern_dns::txt_records(&r, &name).await {
            Ok(recs) => {
                let published = recs.iter().find_map(|t| {
                    t.split(';')
                        .filter_map(|x| x.split_once('='))
                        .find(|(k, _)| k.trim() == "p")
                        .map(|(_, v)| v.split_whitespace().collect::<String>())
                });
                match published {
                    Some(p) if p == want => report.add(
                        Status::Ok,
                        "dkim",
                        &subject,
                        format!("{name} matches the copied key"),
                    ),
                    Some(_) => report.add(
                        Status::Fail,
                        "dkim",
                        &subject,
                        format!("{name} publishes another key"),
                    ),
                    None => report.add(
                        Status::Fail,
                        "dkim",
                        &subject,
                        format!("{name} has no DKIM record"),
                    ),
                }
            }
            Err(e) => report.add(Status::Fail, "dkim", &subject, format!("{name}: {e}")),
        }
    }
    Ok(())
}

/// An address that can be put into a path template and passed as an argument.
fn path_safe(addr: &str) -> bool {
    !addr.is_empty()
        && !addr.starts_with('-')
        && !addr.contains(['/', '\\', '\0'])
        && addr
            .split('@')
            .all(|part| !part.is_empty() && !part.starts_with('.'))
}

fn found(b: bool) -> &'static str {
    if b { "found" } else { "not found" }
}

/// Postfix's virtual alias expansion: each answer looked up again (an address that maps to
/// itself stays), as `postmap -q` gives one level only.
fn postfix_expand(
    pm: &Postmap,
    specs: &[String],
    key: &str,
    depth: usize,
    budget: &mut usize,
) -> anyhow::Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    if specs.is_empty() {
        return Ok(out);
    }
    if *budget == 0 {
        bail!("more than {MAX_LOOKUPS_PER_ALIAS} lookups: not followed to the end");
    }
    *budget -= 1;
    let Some(answer) = pm.query(specs, key)? else {
        if depth > 0 {
            out.insert(key.to_ascii_lowercase());
        }
        return Ok(out);
    };
    for d in postfix::list(&answer) {
        if d.eq_ignore_ascii_case(key) || depth >= MAX_ALIAS_DEPTH {
            out.insert(d.to_ascii_lowercase());
        } else {
            out.extend(postfix_expand(pm, specs, &d, depth + 1, budget)?);
        }
    }
    Ok(out)
}

/// The alias keys to compare: the imported ones, or the source column of the alias table
/// (from the Postfix map's `WHERE col = '%s'`).
async fn alias_keys(plan: &Plan, dir: &Directory, inputs: &super::plan::Inputs) -> Vec<String> {
    if let DatabasePlan::Import(i) = &plan.database {
        return i.aliases.iter().map(|(k, _)| k.clone()).collect();
    }
    let DatabasePlan::Sql { queries, .. } = &plan.database else {
        return Vec::new();
    };
    let Some(q) = &queries.alias else {
        return Vec::new();
    };
    let _ = inputs;
    let Some(sql) = keys_query(q) else {
        return Vec::new();
    };
    use sqlx::Row as _;
    match sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(dir.pool())
        .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| {
                r.try_get::<String, _>(0).ok().or_else(|| {
                    r.try_get::<Vec<u8>, _>(0)
                        .ok()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                })
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// `SELECT destination FROM t WHERE source = '%u'` → `SELECT source FROM t`.
fn keys_query(alias_query: &str) -> Option<String> {
    let upper = alias_query.to_ascii_uppercase();
    let from = upper.find(" FROM ")?;
    let wh = upper.find(" WHERE ")?;
    let table = &alias_query[from..wh];
    let cond = &alias_query[wh + 7..];
    let idx = cond.find("%u")?;
    let before = cond[..idx].trim_end().trim_end_matches('\'').trim_end();
    let before = before.strip_suffix('=')?.trim_end();
    let col: String = before
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.' || *c == '`')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!col.is_empty()).then(|| format!("SELECT {col}{table}"))
}

fn dovecot_user(
    exe: &Path,
    conf: &Path,
    addr: &str,
    config: &Config,
    home: &str,
    maildir: &str,
    report: &mut Report,
) -> bool {
    let out = run_tool(Command::new(exe).arg("-c").arg(conf).args(["user", addr]));
    let text = match out {
        Ok(t) => t,
        Err(e) => {
            report.add(
                Status::Warn,
                "dovecot",
                addr,
                format!("doveadm user not usable, not asked for the other accounts: {e:#}"),
            );
            return false;
        }
    };
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_owned())
    };
    let mut diffs = Vec::new();
    if let (Some(uid), Some(ours)) = (field("uid"), config.authd.userdb.uid)
        && uid != ours.to_string()
    {
        diffs.push(format!("uid Dovecot {uid}, Postern {ours}"));
    }
    if let (Some(gid), Some(ours)) = (field("gid"), config.authd.userdb.gid)
        && gid != ours.to_string()
    {
        diffs.push(format!("gid Dovecot {gid}, Postern {ours}"));
    }
    let dv_home = field("home");
    if let Some(h) = &dv_home
        && h.trim_end_matches('/') != home.trim_end_matches('/')
    {
        diffs.push(format!("home Dovecot {h}, Postern {home}"));
    }
    if let Some(m) = field("mail") {
        let m = m
            .strip_prefix("maildir:")
            .unwrap_or(&m)
            .split(':')
            .next()
            .unwrap_or("")
            .to_owned();
        let m = match (m.strip_prefix("~/"), &dv_home) {
            (Some(r), Some(h)) => format!("{}/{r}", h.trim_end_matches('/')),
            _ => m,
        };
        if m.trim_end_matches('/') != maildir.trim_end_matches('/') {
            diffs.push(format!("Maildir Dovecot {m}, Postern {maildir}"));
        }
    }
    if diffs.is_empty() {
        report.add(
            Status::Ok,
            "dovecot",
            addr,
            "doveadm user agrees (uid, gid, home, mail)",
        );
    } else {
        report.add(Status::Fail, "dovecot", addr, diffs.join("; "));
    }
    true
}

/// Every folder of the Maildir has a readable `dovecot-uidlist` with a usable header.
fn maildir_check(maildir: &Path, addr: &str, report: &mut Report) {
    if !maildir.is_dir() {
        report.add(
            Status::Warn,
            "maildir",
            addr,
            format!(
                "{} does not exist yet (made at the first delivery)",
                maildir.display()
            ),
        );
        return;
    }
    let mut folders = vec![maildir.to_owned()];
    if let Ok(rd) = std::fs::read_dir(maildir) {
        let mut subs: Vec<PathBuf> = rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_dir()
                    && p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect();
        subs.sort();
        folders.extend(subs);
    }
    let mut bad = Vec::new();
    let mut missing = 0;
    for f in &folders {
        let path = f.join("dovecot-uidlist");
        match read_head(&path) {
            Ok(data) => {
                if !uidlist_header_ok(&data) {
                    bad.push(format!("{}: unusable header", path.display()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => missing += 1,
            Err(e) => bad.push(format!("{}: {e}", path.display())),
        }
    }
    if !bad.is_empty() {
        report.add(Status::Fail, "maildir", addr, bad.join("; "));
    } else if missing > 0 {
        report.add(
            Status::Warn,
            "maildir",
            addr,
            format!("{missing} of {} folder(s) have no dovecot-uidlist yet (never opened over IMAP: UIDs are given at the first open)", folders.len()),
        );
    } else {
        report.add(
            Status::Ok,
            "maildir",
            addr,
            format!("{} folder(s), dovecot-uidlist readable", folders.len()),
        );
    }
}

/// The first 4 KiB of a file (a uidlist header is one short line).
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut buf = Vec::new();
    std::fs::File::open(path)?
        .take(4096)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// `3 V<validity> N<next> …` (version 3) or `1 <validity> <next>` (version 1).
fn uidlist_header_ok(data: &[u8]) -> bool {
    let line = data.split(|&b| b == b'\n').next().unwrap_or(b"");
    let text = String::from_utf8_lossy(line);
    let mut w = text.split_whitespace();
    match w.next() {
        Some("3") => {
            let rest: Vec<&str> = w.collect();
            let num = |p: char| {
                rest.iter()
                    .find_map(|x| x.strip_prefix(p))
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            };
            num('V') && num('N')
        }
        Some("1") => w.take(2).filter(|n| n.parse::<u32>().is_ok()).count() == 2,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_keys_from_the_alias_query() {
        assert_eq!(
            keys_query("SELECT destination FROM virtual_aliases WHERE source='%u'").as_deref(),
            Some("SELECT source FROM virtual_aliases")
        );
        assert_eq!(
            keys_query("SELECT Destination FROM alias_table WHERE Source = '%u'").as_deref(),
            Some("SELECT Source FROM alias_table")
        );
        assert_eq!(keys_query("SELECT 1"), None);
    }

    #[test]
    fn addresses_unsafe_in_paths_are_refused() {
        assert!(path_safe("alice@example.org"));
        assert!(path_safe("a.b+c@example.org"));
        for bad in [
            "../x@example.org",
            "a/b@example.org",
            "-A@example.org",
            "x@..",
            ".x@example.org",
            "a\0b@x.org",
            "",
        ] {
            assert!(!path_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn uidlist_headers() {
        assert!(uidlist_header_ok(
            b"3 V1700000000 N5 G0123abcd\n1 :1700000000.M1P2.host\n"
        ));
        assert!(uidlist_header_ok(b"1 1700000000 5\n"));
        assert!(!uidlist_header_ok(b"garbage\n"));
        assert!(!uidlist_header_ok(b""));
    }
}
