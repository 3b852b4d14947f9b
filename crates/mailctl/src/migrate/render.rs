//! The plan as text: the table `migrate plan` prints, and the `postern.toml` `migrate
//! apply` writes. No I/O.

use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::plan::{DatabasePlan, Plan, Row};

/// Where apply puts the files the config names, and optional `[paths]`.
#[derive(Debug, Clone, Default)]
pub(crate) struct OutPaths {
    /// `[database] password_file` (written when the database has a password).
    pub(crate) db_password_file: Option<PathBuf>,
    /// `[smtpd] relayhost_password_file`.
    pub(crate) relay_password_file: Option<PathBuf>,
    /// `[paths] state_dir`, when not Postern's default.
    pub(crate) state_dir: Option<PathBuf>,
    /// `[paths] run_dir`, when not Postern's default.
    pub(crate) run_dir: Option<PathBuf>,
    /// `[database] url` for an import (default: Postern's SQLite under the state dir).
    pub(crate) sqlite_url: Option<String>,
}

/// The table (Markdown), then what is not carried over and the blockers.
pub(crate) fn table(plan: &Plan) -> String {
    let mut out = String::new();
    let section = |out: &mut String, title: &str, head: &str, rows: &[Row]| {
        if rows.is_empty() {
            return;
        }
        out.push_str(&format!(
            "\n## {title}\n\n| old setting | value | {head} |\n|---|---|---|\n"
        ));
        for r in rows {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                cell(&r.old),
                cell(&r.value),
                cell(&r.new)
            ));
        }
    };
    out.push_str(&format!("# Migration plan for {}\n", plan.hostname));
    section(&mut out, "Carried over", "what the plan does", &plan.rows);
    if !plan.dkim.is_empty() {
        out.push_str("\n## DKIM keys (same selectors: the published records stay valid)\n\n");
        for k in &plan.dkim {
            out.push_str(&format!(
                "- {} selector {} from {}\n",
                k.domain, k.selector, k.key_file
            ));
        }
    }
    if let DatabasePlan::Import(i) = &plan.database {
        out.push_str(&format!(
            "\n## Import into Postern's database\n\n{} domain(s), {} account(s), {} alias(es)\n",
            i.domains.len(),
            i.accounts.len(),
            i.aliases.len()
        ));
    }
    section(&mut out, "Not carried over", "why", &plan.not_carried);
    if !plan.blockers.is_empty() {
        out.push_str("\n## Blockers (deal with these first)\n\n");
        for b in &plan.blockers {
            out.push_str(&format!("- {b}\n"));
        }
    }
    out
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The `postern.toml` for the plan: only what differs from Postern's defaults.
pub(crate) fn config_toml(plan: &Plan, out: &OutPaths, source: &str) -> String {
    let mut root = Table::new();
    root.insert("hostname".into(), plan.hostname.clone().into());

    let mut paths = Table::new();
    if let Some(r) = &plan.userdb.mail_root {
        paths.insert("mail_root".into(), r.clone().into());
    }
    if let Some(s) = &out.state_dir {
        paths.insert("state_dir".into(), path(s));
    }
    if let Some(r) = &out.run_dir {
        paths.insert("run_dir".into(), path(r));
    }
    put(&mut root, "paths", paths);

    let mut db = Table::new();
    match &plan.database {
        DatabasePlan::Sql {
            url,
            password,
            queries,
        } => {
            db.insert("url".into(), url.clone().into());
            if password.is_some()
                && let Some(f) = &out.db_password_file
            {
                db.insert("password_file".into(), path(f));
            }
            let mut q = Table::new();
            for (k, v) in [
                ("domain", &queries.domain),
                ("account", &queries.account),
                ("alias", &queries.alias),
                ("list", &queries.list),
                ("password_update", &queries.password_update),
            ] {
                if let Some(v) = v {
                    q.insert(k.into(), v.clone().into());
                }
            }
            put(&mut db, "queries", q);
        }
        DatabasePlan::Import(_) => {
            if let Some(u) = &out.sqlite_url {
                db.insert("url".into(), u.clone().into());
            }
        }
        DatabasePlan::None => {}
    }
    put(&mut root, "database", db);

    if let Some(t) = &plan.tls {
        let mut tls = Table::new();
        tls.insert("cert".into(), t.cert.clone().into());
        tls.insert("key".into(), t.key.clone().into());
        root.insert("tls".into(), tls.into());
    }
    if let Some(s) = &plan.default_scheme {
        let mut p = Table::new();
        p.insert("default_scheme".into(), s.clone().into());
        root.insert("passwords".into(), p.into());
    }

    let mut userdb = Table::new();
    if let Some(u) = plan.userdb.uid {
        userdb.insert("uid".into(), i64::from(u).into());
    }
    if let Some(g) = plan.userdb.gid {
        userdb.insert("gid".into(), i64::from(g).into());
    }
    if let Some(h) = &plan.userdb.home {
        userdb.insert("home".into(), h.clone().into());
    }
    if let Some(m) = &plan.userdb.mail {
        userdb.insert("mail".into(), m.clone().into());
    }
    if !userdb.is_empty() {
        let mut authd = Table::new();
        authd.insert("userdb".into(), userdb.into());
        root.insert("authd".into(), authd.into());
    }

    let mut lmtp = Table::new();
    if let Some(s) = &plan.sieve_script {
        lmtp.insert("sieve_script".into(), s.clone().into());
    }
    if let Some(d) = &plan.recipient_delimiter {
        lmtp.insert("recipient_delimiter".into(), d.clone().into());
    }
    if let Some(n) = plan.smtpd.max_message_size {
        lmtp.insert("max_message_size".into(), int(n));
    }
    put(&mut root, "lmtp", lmtp);

    let s = &plan.smtpd;
    let mut smtpd = Table::new();
    if !plan.trusted_networks.is_empty() {
        smtpd.insert("trusted_networks".into(), strings(&plan.trusted_networks));
    }
    if let Some(n) = s.max_message_size {
        smtpd.insert("max_message_size".into(), int(n));
    }
    if let Some(r) = &s.relayhost {
        smtpd.insert("relayhost".into(), r.clone().into());
        if let (Some(u), Some(f)) = (&s.relayhost_auth_user, &out.relay_password_file)
            && s.relayhost_password.is_some()
        {
            smtpd.insert("relayhost_auth_user".into(), u.clone().into());
            smtpd.insert("relayhost_password_file".into(), path(f));
        }
        if let Some(t) = &s.relayhost_tls {
            smtpd.insert("relayhost_tls".into(), t.clone().into());
        }
    }
    if let Some(t) = &s.outbound_tls {
        smtpd.insert("outbound_tls".into(), t.clone().into());
    }
    if !s.transports.is_empty() {
        let t: Table = s
            .transports
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        smtpd.insert("transports".into(), t.into());
    }
    if !s.tls_policy.is_empty() {
        let t: Table = s
            .tls_policy
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        smtpd.insert("tls_policy".into(), t.into());
    }
    if !s.access.is_empty() {
        let rules: Vec<Value> = s
            .access
            .iter()
            .map(|a| {
                let mut t = Table::new();
                for (k, v) in [
                    ("client", &a.client),
                    ("helo", &a.helo),
                    ("sender", &a.sender),
                    ("recipient", &a.recipient),
                ] {
                    if let Some(v) = v {
                        t.insert(k.into(), v.clone().into());
                    }
                }
                t.insert("action".into(), a.action.clone().into());
                if let Some(x) = &a.text {
                    t.insert("text".into(), x.clone().into());
                }
                Value::Table(t)
            })
            .collect();
        smtpd.insert("access".into(), Value::Array(rules));
    }
    put(&mut root, "smtpd", smtpd);

    let c = &plan.checks;
    let mut checks = Table::new();
    if !c.dnsbl_zones.is_empty() {
        checks.insert("dnsbl_zones".into(), strings(&c.dnsbl_zones));
    }
    if !c.dbl_zones.is_empty() {
        checks.insert("dbl_zones".into(), strings(&c.dbl_zones));
    }
    if let Some(m) = &c.dnsbl {
        checks.insert("dnsbl".into(), m.clone().into());
    }
    if let Some(m) = &c.helo {
        checks.insert("helo".into(), m.clone().into());
    }
    if c.require_fcrdns {
        checks.insert("require_fcrdns".into(), true.into());
    }
    put(&mut root, "checks", checks);

    let body = toml::to_string(&root).unwrap_or_default();
    format!(
        "# Written by `mailctl migrate apply` from {source}.\n\
         # Every option not set here has Postern's default (see deploy/postern.toml for all of them).\n\
         # The old configuration was not changed.\n\n{body}"
    )
}

fn put(parent: &mut Table, key: &str, t: Table) {
    if !t.is_empty() {
        parent.insert(key.into(), t.into());
    }
}

fn path(p: &Path) -> Value {
    p.display().to_string().into()
}

fn int(n: u64) -> Value {
    i64::try_from(n).unwrap_or(i64::MAX).into()
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::from).collect())
}
