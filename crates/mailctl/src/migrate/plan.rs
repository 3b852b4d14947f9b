//! The migration plan: what each Postfix/Dovecot/OpenDKIM setting becomes in Postern, built
//! from configuration text only (no I/O; the caller reads the files [`referenced_files`]
//! names and hands them over in [`Inputs::files`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::dovecot::{self, Section};
use super::postfix::{self, MapSpec};

/// Everything the plan is made from.
#[derive(Debug, Default)]
pub(crate) struct Inputs {
    /// Postfix's parameters in effect (`$name` already expanded).
    pub(crate) postfix: BTreeMap<String, String>,
    /// The names set explicitly in main.cf (`postconf -n`): the others are Postfix defaults.
    pub(crate) postfix_explicit: BTreeSet<String>,
    /// master.cf services `(name, type, command)`.
    pub(crate) master: Vec<(String, String, String)>,
    /// Dovecot's configuration.
    pub(crate) dovecot: Section,
    /// opendkim.conf (`Key value` lines), when given.
    pub(crate) opendkim: Option<BTreeMap<String, String>>,
    /// The text of the files named by the settings (map files, table sources, SQL config,
    /// passwd-files, KeyTable/SigningTable); a missing one is absent.
    pub(crate) files: BTreeMap<String, String>,
    /// The system's user and group ids by name (for `vmail`); `None` when unknown.
    pub(crate) uid_of: BTreeMap<String, u32>,
    /// See `uid_of`.
    pub(crate) gid_of: BTreeMap<String, u32>,
}

/// The plan.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Plan {
    /// `hostname`.
    pub(crate) hostname: String,
    /// `[smtpd] trusted_networks`.
    pub(crate) trusted_networks: Vec<String>,
    /// `[tls]`.
    pub(crate) tls: Option<TlsPlan>,
    /// Where accounts come from.
    pub(crate) database: DatabasePlan,
    /// `[passwords] default_scheme`.
    pub(crate) default_scheme: Option<String>,
    /// `[authd.userdb]` and `[paths] mail_root`.
    pub(crate) userdb: UserdbPlan,
    /// One quota for every account (bytes; 0 none), when the old setup had one.
    pub(crate) quota_bytes: Option<u64>,
    /// `[lmtp] sieve_script`, when not Postern's default.
    pub(crate) sieve_script: Option<String>,
    /// `[lmtp] recipient_delimiter`.
    pub(crate) recipient_delimiter: Option<String>,
    /// `[smtpd]` settings.
    pub(crate) smtpd: SmtpdPlan,
    /// `[checks]` settings.
    pub(crate) checks: ChecksPlan,
    /// DKIM keys to copy into `[dkim] key_dir`.
    pub(crate) dkim: Vec<DkimPlan>,
    /// The table: what each old setting becomes.
    pub(crate) rows: Vec<Row>,
    /// What has no equivalent, and why.
    pub(crate) not_carried: Vec<Row>,
    /// What stops the migration until it is dealt with (a mailbox format Postern cannot
    /// read, no password database found, …).
    pub(crate) blockers: Vec<String>,
}

/// `[tls]`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct TlsPlan {
    /// Certificate chain (PEM).
    pub(crate) cert: String,
    /// Private key (PEM).
    pub(crate) key: String,
}

/// Where accounts, domains and aliases come from after the move.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum DatabasePlan {
    /// Nothing found.
    #[default]
    None,
    /// The old SQL database, used as it is through `[database.queries]`.
    Sql {
        /// `[database] url`, without a password.
        url: String,
        /// The password, written to `password_file` by apply (never printed).
        #[serde(skip)]
        password: Option<String>,
        /// `[database.queries]`.
        queries: QueriesPlan,
    },
    /// Postern's own SQLite database, filled from passwd-files and `hash:` tables.
    Import(Import),
}

/// `[database.queries]`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct QueriesPlan {
    /// `domain`.
    pub(crate) domain: Option<String>,
    /// `account`.
    pub(crate) account: Option<String>,
    /// `alias`.
    pub(crate) alias: Option<String>,
    /// `list`.
    pub(crate) list: Option<String>,
}

/// Rows to import into Postern's SQLite.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Import {
    /// Domains.
    pub(crate) domains: Vec<String>,
    /// Accounts with their existing hashes.
    pub(crate) accounts: Vec<ImportAccount>,
    /// Aliases: source (`@domain` for a catch-all) and destinations.
    pub(crate) aliases: Vec<(String, Vec<String>)>,
}

/// An account to import.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ImportAccount {
    /// The address.
    pub(crate) address: String,
    /// The stored hash as Postern reads it (never printed).
    #[serde(skip)]
    pub(crate) hash: String,
    /// Its scheme, for the report.
    pub(crate) scheme: String,
    /// Quota in bytes (0 none).
    pub(crate) quota_bytes: u64,
}

/// `[authd.userdb]`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct UserdbPlan {
    /// uid of mail files.
    pub(crate) uid: Option<u32>,
    /// gid of mail files.
    pub(crate) gid: Option<u32>,
    /// Home template (`/var/vmail/%d/%n`).
    pub(crate) home: Option<String>,
    /// Mail template (`maildir:/var/vmail/%d/%n/Maildir`).
    pub(crate) mail: Option<String>,
    /// `[paths] mail_root`: the fixed part of the home template.
    pub(crate) mail_root: Option<String>,
}

/// `[smtpd]`.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct SmtpdPlan {
    /// `max_message_size` (also `[lmtp] max_message_size`).
    pub(crate) max_message_size: Option<u64>,
    /// `[[smtpd.access]]`.
    pub(crate) access: Vec<AccessPlan>,
    /// `relayhost`.
    pub(crate) relayhost: Option<String>,
    /// `relayhost_auth_user`.
    pub(crate) relayhost_auth_user: Option<String>,
    /// Written to `relayhost_password_file` by apply (never printed).
    #[serde(skip)]
    pub(crate) relayhost_password: Option<String>,
    /// `relayhost_tls`.
    pub(crate) relayhost_tls: Option<String>,
    /// `[smtpd.transports]`.
    pub(crate) transports: BTreeMap<String, String>,
    /// `outbound_tls`.
    pub(crate) outbound_tls: Option<String>,
    /// `[smtpd.tls_policy]`.
    pub(crate) tls_policy: BTreeMap<String, String>,
}

/// One `[[smtpd.access]]` rule.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct AccessPlan {
    /// `client`.
    pub(crate) client: Option<String>,
    /// `helo`.
    pub(crate) helo: Option<String>,
    /// `sender`.
    pub(crate) sender: Option<String>,
    /// `recipient`.
    pub(crate) recipient: Option<String>,
    /// `OK`, `REJECT`, `DISCARD`, `HOLD`.
    pub(crate) action: String,
    /// `text`.
    pub(crate) text: Option<String>,
}

/// `[checks]`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub(crate) struct ChecksPlan {
    /// `dnsbl_zones`.
    pub(crate) dnsbl_zones: Vec<String>,
    /// `dbl_zones`.
    pub(crate) dbl_zones: Vec<String>,
    /// `dnsbl` mode.
    pub(crate) dnsbl: Option<String>,
    /// `helo` mode.
    pub(crate) helo: Option<String>,
    /// `require_fcrdns`.
    pub(crate) require_fcrdns: bool,
}

/// A DKIM key to copy.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct DkimPlan {
    /// The signing domain (`d=`), also the From: domain it signs for.
    pub(crate) domain: String,
    /// The selector.
    pub(crate) selector: String,
    /// The key file to copy.
    pub(crate) key_file: String,
}

/// One line of the table.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Row {
    /// `postfix: name`, `dovecot: name`, `opendkim: name`.
    pub(crate) old: String,
    /// Its value (secrets left out).
    pub(crate) value: String,
    /// What it becomes, or why it is not carried over.
    pub(crate) new: String,
}

/// Postfix parameters that are the MTA's own housekeeping (paths, owners, compatibility),
/// with nothing to carry.
const POSTFIX_HOUSEKEEPING: &[&str] = &[
    "alias_database",
    "alias_maps",
    "append_dot_mydomain",
    "biff",
    "command_directory",
    "compatibility_level",
    "config_directory",
    "daemon_directory",
    "data_directory",
    "html_directory",
    "inet_interfaces",
    "inet_protocols",
    "mail_owner",
    "mailbox_size_limit",
    "mailq_path",
    "maillog_file",
    "maillog_file_prefixes",
    "manpage_directory",
    "meta_directory",
    "myorigin",
    "newaliases_path",
    "queue_directory",
    "readme_directory",
    "sample_directory",
    "sendmail_path",
    "setgid_group",
    "shlib_directory",
    "smtp_tls_CApath",
    "smtp_tls_CAfile",
    "smtp_tls_session_cache_database",
    "smtpd_banner",
    "smtpd_tls_session_cache_database",
    "smtpd_sasl_auth_enable",
    "smtpd_sasl_path",
    "smtpd_sasl_type",
    "smtpd_tls_auth_only",
    "smtpd_tls_security_level",
    "smtpd_use_tls",
    "smtp_sasl_auth_enable",
    "smtp_sasl_security_options",
    "smtp_sasl_tls_security_options",
    "smtp_use_tls",
    "virtual_transport",
    "virtual_minimum_uid",
    "virtual_uid_maps",
    "virtual_gid_maps",
    "virtual_mailbox_base",
];

/// Restrictions Postern applies by design (relay control, unknown recipients).
const BUILT_IN_RESTRICTIONS: &[&str] = &[
    "permit_mynetworks",
    "permit_sasl_authenticated",
    "reject_unauth_destination",
    "defer_unauth_destination",
    "reject_unlisted_recipient",
    "reject_unauth_pipelining",
    "reject_non_fqdn_recipient",
    "permit",
    "reject_unverified_recipient",
];

/// The restriction lists read for checks and access maps.
const RESTRICTION_LISTS: &[&str] = &[
    "smtpd_client_restrictions",
    "smtpd_helo_restrictions",
    "smtpd_sender_restrictions",
    "smtpd_relay_restrictions",
    "smtpd_recipient_restrictions",
    "smtpd_data_restrictions",
];

/// Postfix `*_maps` parameters whose files the plan reads.
const MAP_PARAMS: &[&str] = &[
    "virtual_mailbox_domains",
    "virtual_alias_domains",
    "virtual_mailbox_maps",
    "virtual_alias_maps",
    "transport_maps",
    "smtp_sasl_password_maps",
    "smtp_tls_policy_maps",
];

/// The files the settings name, for the caller to read before [`build`].
pub(crate) fn referenced_files(inputs: &Inputs) -> Vec<String> {
    let mut out = BTreeSet::new();
    let mut specs: Vec<String> = MAP_PARAMS
        .iter()
        .filter_map(|p| inputs.postfix.get(*p))
        .flat_map(|v| postfix::list(v))
        .collect();
    for l in RESTRICTION_LISTS {
        if let Some(v) = inputs.postfix.get(*l) {
            specs.extend(postfix::list(v));
        }
    }
    for s in specs {
        if s.starts_with('/') {
            out.insert(s);
        } else if let Some(m) = MapSpec::parse(&s) {
            if m.is_sql() || m.kind == "cidr" {
                out.insert(m.arg.clone());
            } else if let Some(src) = m.text_source() {
                out.insert(src.to_owned());
            }
        }
    }
    for kind in ["passdb", "userdb"] {
        let mut found = Vec::new();
        inputs.dovecot.all_sections(kind, &mut found);
        for s in found {
            if let Some(args) = s.get("args") {
                let (_, rest) = dovecot::split_args(args);
                out.extend(rest.into_iter().filter(|r| r.starts_with('/')));
            }
        }
    }
    if let Some(o) = &inputs.opendkim {
        for k in ["KeyTable", "SigningTable"] {
            if let Some(v) = o.get(k) {
                out.insert(table_path(v).to_owned());
            }
        }
    }
    out.into_iter().collect()
}

fn table_path(v: &str) -> &str {
    v.strip_prefix("refile:")
        .or_else(|| v.strip_prefix("file:"))
        .unwrap_or(v)
}

/// Parses opendkim.conf (`Key value` lines, `#` comments).
pub(crate) fn parse_opendkim(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(char::is_whitespace)?;
            Some((k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// Builds the plan.
pub(crate) fn build(inputs: &Inputs) -> Plan {
    let mut b = Builder {
        inputs,
        plan: Plan::default(),
        used: BTreeSet::new(),
    };
    b.identity();
    b.tls();
    b.accounts();
    b.mail_store();
    b.restrictions();
    b.outbound();
    b.dkim();
    b.leftovers();
    b.plan
}

struct Builder<'a> {
    inputs: &'a Inputs,
    plan: Plan,
    /// Postfix parameters accounted for.
    used: BTreeSet<String>,
}

impl Builder<'_> {
    fn pf(&self, name: &str) -> Option<&str> {
        self.inputs
            .postfix
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn row(&mut self, old: impl Into<String>, value: impl Into<String>, new: impl Into<String>) {
        self.plan.rows.push(Row {
            old: old.into(),
            value: value.into(),
            new: new.into(),
        });
    }

    fn skip(&mut self, old: impl Into<String>, value: impl Into<String>, why: impl Into<String>) {
        self.plan.not_carried.push(Row {
            old: old.into(),
            value: value.into(),
            new: why.into(),
        });
    }

    fn file(&self, path: &str) -> Option<&str> {
        self.inputs.files.get(path).map(String::as_str)
    }

    fn identity(&mut self) {
        self.used
            .extend(["myhostname", "mydomain", "mynetworks", "mydestination"].map(String::from));
        let host = self.pf("myhostname").unwrap_or("localhost").to_owned();
        self.row("postfix: myhostname", &host, "hostname");
        self.plan.hostname = host;
        if let Some(d) = self.pf("mydomain").map(str::to_owned) {
            self.row(
                "postfix: mydomain",
                d,
                "not needed: Postern's domains are the ones in its database",
            );
        }
        if let Some(n) = self.pf("mynetworks").map(str::to_owned) {
            for e in postfix::list(&n) {
                match postfix::network(&e) {
                    Some(net) => self.plan.trusted_networks.push(net),
                    None => self.skip(
                        "postfix: mynetworks",
                        e,
                        "only literal networks are carried (no tables or host names)",
                    ),
                }
            }
            let nets = self.plan.trusted_networks.join(" ");
            self.row("postfix: mynetworks", nets, "[smtpd] trusted_networks");
        }
        if let Some(d) = self.pf("mydestination").map(str::to_owned) {
            self.skip(
                "postfix: mydestination",
                d,
                "delivery to local Unix accounts has no equivalent: Postern serves virtual domains (make them domains and accounts)",
            );
        }
        if let Some(v) = self.pf("recipient_delimiter").map(str::to_owned) {
            self.used.insert("recipient_delimiter".into());
            self.row(
                "postfix: recipient_delimiter",
                &v,
                "[lmtp] recipient_delimiter",
            );
            self.plan.recipient_delimiter = Some(v);
        }
        if let Some(v) = self.pf("message_size_limit").map(str::to_owned) {
            self.used.insert("message_size_limit".into());
            match postfix::bytes(&v) {
                Some(n) if n > 0 => {
                    self.plan.smtpd.max_message_size = Some(n);
                    self.row(
                        "postfix: message_size_limit",
                        v,
                        "[smtpd] and [lmtp] max_message_size",
                    );
                }
                _ => self.skip(
                    "postfix: message_size_limit",
                    v,
                    "no limit (0) is not allowed: Postern keeps its default (50 MB)",
                ),
            }
        }
    }

    fn tls(&mut self) {
        self.used.extend(
            [
                "smtpd_tls_cert_file",
                "smtpd_tls_key_file",
                "smtpd_tls_chain_files",
            ]
            .map(String::from),
        );
        let pf = match (
            self.pf("smtpd_tls_cert_file"),
            self.pf("smtpd_tls_key_file"),
            self.pf("smtpd_tls_chain_files"),
        ) {
            (Some(c), Some(k), _) => Some((c.to_owned(), k.to_owned())),
            (_, _, Some(chain)) => {
                // One file or key first: key, then certificates.
                let files = postfix::list(chain);
                match files.as_slice() {
                    [one] => Some((one.clone(), one.clone())),
                    [key, cert, ..] => Some((cert.clone(), key.clone())),
                    [] => None,
                }
            }
            _ => None,
        };
        let dc = |k: &str| {
            self.inputs
                .dovecot
                .get(k)
                .map(|v| v.trim_start_matches('<').trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let dv = dc("ssl_cert").zip(dc("ssl_key"));
        if let Some((c, k)) = &pf {
            self.row("postfix: smtpd_tls_cert_file/key_file", c, "[tls] cert/key");
            self.plan.tls = Some(TlsPlan {
                cert: c.clone(),
                key: k.clone(),
            });
            if let Some((dc, _)) = &dv
                && dc != c
            {
                self.skip(
                    "dovecot: ssl_cert/ssl_key",
                    dc,
                    "Postern's listeners share one certificate: Postfix's is used",
                );
            }
        } else if let Some((c, k)) = dv {
            self.row("dovecot: ssl_cert/ssl_key", &c, "[tls] cert/key");
            self.plan.tls = Some(TlsPlan { cert: c, key: k });
        }
    }

    /// Domains, accounts and aliases: the old SQL database through queries, or an import.
    fn accounts(&mut self) {
        self.used
            .extend(MAP_PARAMS[..4].iter().map(|s| (*s).to_owned()));
        self.mail_store_quota();
        let passdbs = self.dovecot_dbs("passdb");
        let userdbs = self.dovecot_dbs("userdb");
        let sql_passdb = passdbs.iter().find(|(d, _, _)| d == "sql").cloned();
        let file_passdb = passdbs.iter().find(|(d, _, _)| d == "passwd-file").cloned();
        for (driver, args, _) in &passdbs {
            if !matches!(driver.as_str(), "sql" | "passwd-file") {
                self.skip(
                    "dovecot: passdb",
                    format!("driver = {driver} {args}"),
                    "only sql and passwd-file password databases are carried (pam/system users have no equivalent)",
                );
            }
        }
        if let Some((_, args, _)) = sql_passdb {
            self.sql_accounts(&args, &userdbs);
        } else if let Some((_, args, _)) = file_passdb {
            self.passwd_file_accounts(&args, &userdbs);
        } else {
            self.plan.blockers.push(
                "no sql or passwd-file passdb found in Dovecot's configuration: there are no accounts to carry over".into(),
            );
        }
    }

    /// `(driver, args, section)` of each passdb/userdb.
    fn dovecot_dbs(&self, kind: &str) -> Vec<(String, String, Section)> {
        let mut found = Vec::new();
        self.inputs.dovecot.all_sections(kind, &mut found);
        found
            .into_iter()
            .map(|s| {
                (
                    s.get("driver").unwrap_or("").to_owned(),
                    s.get("args").unwrap_or("").to_owned(),
                    s.clone(),
                )
            })
            .collect()
    }

    fn sql_accounts(&mut self, args: &str, userdbs: &[(String, String, Section)]) {
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
    fn postfix_sql_query(&mut self, param: &str) -> Option<(String, String)> {
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

    fn user_query(&mut self, uq: &str) {
        let Some((items, _)) = dovecot::split_select(uq) else {
            self.skip(
                "dovecot: user_query",
                uq,
                "not a SELECT Postern can read: home and mail come from [authd.userdb]",
            );
            return;
        };
        for it in items {
            let c = dovecot::constant(&it.expr);
            match (it.name.as_str(), c) {
                ("uid", Some(v)) => self.plan.userdb.uid = self.resolve_id(&v, true),
                ("gid", Some(v)) => self.plan.userdb.gid = self.resolve_id(&v, false),
                ("home", Some(v)) => match dovecot::translate_vars(&v) {
                    Ok(h) => self.plan.userdb.home = Some(h),
                    Err(e) => self.skip("dovecot: user_query home", v, e.0),
                },
                ("mail", Some(v)) => self.mail_location(&v, "dovecot: user_query mail"),
                (name, None) if ["uid", "gid", "home", "mail"].contains(&name) => self.skip(
                    format!("dovecot: user_query {name}"),
                    &it.expr,
                    "computed per user in SQL: Postern uses one template for every account (migrate check compares the paths)",
                ),
                (name, _) if name.starts_with("quota") || name.ends_with("quota_rule") => {
                    self.skip(
                        format!("dovecot: user_query {name}"),
                        &it.expr,
                        "per-user quota rules have no equivalent in a custom account query: one quota for all (or import into Postern's schema)",
                    );
                }
                _ => {}
            }
        }
        self.row(
            "dovecot: user_query",
            uq,
            "[authd.userdb] uid/gid/home/mail where constant",
        );
    }

    fn resolve_id(&mut self, v: &str, user: bool) -> Option<u32> {
        if let Ok(n) = v.parse() {
            return Some(n);
        }
        let map = if user {
            &self.inputs.uid_of
        } else {
            &self.inputs.gid_of
        };
        let id = map.get(v).copied();
        if id.is_none() {
            self.plan.blockers.push(format!(
                "{} {v:?} does not exist on this system",
                if user { "user" } else { "group" }
            ));
        }
        id
    }

    /// Userdb static args and default_fields/override_fields, mail_uid/mail_gid.
    fn userdb_settings(&mut self, userdbs: &[(String, String, Section)]) {
        for (driver, args, section) in userdbs {
            match driver.as_str() {
                "static" => self.userdb_fields(args, "dovecot: userdb static"),
                "prefetch" | "sql" | "passwd-file" => {}
                other => self.skip(
                    "dovecot: userdb",
                    format!("driver = {other}"),
                    "no equivalent: Postern's userdb answers from its account database",
                ),
            }
            for key in ["default_fields", "override_fields"] {
                if let Some(f) = section.get(key) {
                    self.userdb_fields(f, &format!("dovecot: userdb {key}"));
                }
            }
        }
        for (key, user) in [("mail_uid", true), ("mail_gid", false)] {
            if let Some(v) = self.inputs.dovecot.get(key).filter(|v| !v.is_empty()) {
                let v = v.to_owned();
                let id = self.resolve_id(&v, user);
                let slot = if user {
                    &mut self.plan.userdb.uid
                } else {
                    &mut self.plan.userdb.gid
                };
                if slot.is_none() {
                    *slot = id;
                }
                self.row(
                    format!("dovecot: {key}"),
                    v,
                    format!("[authd.userdb] {}", if user { "uid" } else { "gid" }),
                );
            }
        }
    }

    /// `uid=… gid=… home=… mail=…` fields of a userdb.
    fn userdb_fields(&mut self, fields: &str, label: &str) {
        let (opts, _) = dovecot::split_args(fields);
        for (k, v) in opts {
            match k.as_str() {
                "uid" => self.plan.userdb.uid = self.resolve_id(&v, true),
                "gid" => self.plan.userdb.gid = self.resolve_id(&v, false),
                "home" => match dovecot::translate_vars(&v) {
                    Ok(h) => self.plan.userdb.home = Some(h),
                    Err(e) => self.skip(format!("{label} home"), v, e.0),
                },
                "mail" => self.mail_location(&v, &format!("{label} mail")),
                "allow_all_users" | "username_format" => {}
                other => self.skip(
                    format!("{label} {other}"),
                    v,
                    "no equivalent in [authd.userdb]",
                ),
            }
        }
        self.row(label, fields, "[authd.userdb] uid/gid/home/mail");
    }

    fn passwd_file_accounts(&mut self, args: &str, userdbs: &[(String, String, Section)]) {
        let (opts, rest) = dovecot::split_args(args);
        let path = rest.last().cloned().unwrap_or_default();
        let scheme = opts
            .iter()
            .find(|(k, _)| k == "scheme")
            .map(|(_, v)| v.to_ascii_uppercase());
        if let Some((_, f)) = opts.iter().find(|(k, _)| k == "username_format")
            && f != "%u"
            && f != "%Lu"
        {
            self.skip(
                "dovecot: passdb passwd-file username_format",
                f,
                "Postern looks accounts up by the whole address",
            );
        }
        let Some(text) = self.file(&path) else {
            self.plan
                .blockers
                .push(format!("Dovecot's passwd-file {path} could not be read"));
            return;
        };
        let entries = dovecot::parse_passwd_file(text);
        self.row(
            "dovecot: passdb passwd-file",
            &path,
            format!(
                "import of {} account(s) into Postern's SQLite, hashes kept",
                entries.len()
            ),
        );
        if let Some(s) = &scheme {
            self.row(
                "dovecot: passwd-file scheme",
                s,
                "[passwords] default_scheme",
            );
            self.plan.default_scheme = Some(s.clone());
        }
        self.userdb_settings(userdbs);
        let default_quota = self.plan.quota_bytes.unwrap_or(0);
        let mut import = Import::default();
        let mut homes = BTreeSet::new();
        let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
        for e in &entries {
            let Some((local, domain)) = e.user.rsplit_once('@') else {
                self.skip(
                    format!("dovecot: passwd-file {path}"),
                    &e.user,
                    "not an address: Postern's logins are addresses",
                );
                continue;
            };
            let mut hash = e.password.clone();
            if !hash.starts_with('{')
                && !hash.starts_with('$')
                && let Some(s) = &scheme
            {
                hash = format!("{{{s}}}{hash}");
            }
            let quota = e
                .extra
                .iter()
                .find_map(|x| {
                    x.strip_prefix("userdb_quota_rule=")
                        .or_else(|| x.strip_prefix("quota_rule="))
                })
                .and_then(dovecot::quota_rule_storage)
                .unwrap_or(default_quota);
            let scheme_name =
                postern_directory::password::scheme_of(&hash, scheme.as_deref().unwrap_or("CRYPT"))
                    .unwrap_or("unknown")
                    .to_owned();
            if !e.home.is_empty() {
                homes.insert(
                    e.home
                        .replace(&format!("{domain}/{local}"), "%d/%n")
                        .replace(&e.user, "%u"),
                );
            }
            if !e.uid.is_empty() {
                uids.insert(e.uid.clone());
            }
            if !e.gid.is_empty() {
                gids.insert(e.gid.clone());
            }
            let d = domain.to_ascii_lowercase();
            if !import.domains.contains(&d) {
                import.domains.push(d);
            }
            import.accounts.push(ImportAccount {
                address: e.user.to_ascii_lowercase(),
                hash,
                scheme: scheme_name,
                quota_bytes: quota,
            });
        }
        match homes.len() {
            0 => {}
            1 => {
                if let Some(h) = homes.into_iter().next() {
                    self.plan.userdb.home.get_or_insert(h);
                }
            }
            _ => self.plan.blockers.push(format!(
                "the passwd-file's home directories follow no single pattern ({}): Postern uses one template",
                homes.into_iter().collect::<Vec<_>>().join(", ")
            )),
        }
        for (set, user) in [(uids, true), (gids, false)] {
            match set.len() {
                0 => {}
                1 => {
                    let v = set.into_iter().next().unwrap_or_default();
                    let id = self.resolve_id(&v, user);
                    let slot = if user {
                        &mut self.plan.userdb.uid
                    } else {
                        &mut self.plan.userdb.gid
                    };
                    slot.get_or_insert_with(|| id.unwrap_or(0));
                }
                _ => self.plan.blockers.push(format!(
                    "the passwd-file's accounts have different {}s: Postern gives every mailbox one",
                    if user { "uid" } else { "gid" }
                )),
            }
        }
        // Domains and aliases from Postfix's file tables.
        if let Some(v) = self.pf("virtual_mailbox_domains").map(str::to_owned) {
            for d in self.table_keys_or_list(&v, "virtual_mailbox_domains") {
                let d = d.to_ascii_lowercase();
                if !import.domains.contains(&d) {
                    import.domains.push(d);
                }
            }
            self.row("postfix: virtual_mailbox_domains", v, "imported as domains");
        }
        if let Some(v) = self.pf("virtual_alias_domains").map(str::to_owned) {
            for d in self.table_keys_or_list(&v, "virtual_alias_domains") {
                let d = d.to_ascii_lowercase();
                if !import.domains.contains(&d) {
                    import.domains.push(d);
                }
            }
            self.used.insert("virtual_alias_domains".into());
            self.row("postfix: virtual_alias_domains", v, "imported as domains");
        }
        if let Some(v) = self.pf("virtual_alias_maps").map(str::to_owned) {
            for entry in postfix::list(&v) {
                let spec = MapSpec::parse(&entry);
                let Some(src) = spec.as_ref().and_then(MapSpec::text_source) else {
                    self.skip(
                        "postfix: virtual_alias_maps",
                        &entry,
                        "only hash:/texthash: tables are imported next to a passwd-file",
                    );
                    continue;
                };
                let Some(text) = self.file(src) else {
                    self.plan.blockers.push(format!("cannot read {src}"));
                    continue;
                };
                let mut n = 0;
                for (k, val) in postfix::parse_table(text) {
                    let dests: Vec<String> = postfix::list(&val)
                        .into_iter()
                        .filter(|d| !d.eq_ignore_ascii_case(&k))
                        .collect();
                    if !k.contains('@') {
                        self.skip(
                            format!("postfix: virtual_alias_maps {src}"),
                            &k,
                            "a bare local part (or a domain line of a 'sender-style' table) has no equivalent",
                        );
                        continue;
                    }
                    if dests.is_empty() {
                        continue;
                    }
                    n += 1;
                    import.aliases.push((k.to_ascii_lowercase(), dests));
                }
                self.row(
                    "postfix: virtual_alias_maps",
                    &entry,
                    format!("{n} alias(es) imported"),
                );
            }
        }
        if let Some(v) = self.pf("virtual_mailbox_maps").map(str::to_owned) {
            self.row(
                "postfix: virtual_mailbox_maps",
                v,
                "not needed: the mailboxes are the imported accounts",
            );
        }
        import.domains.sort();
        self.plan.database = DatabasePlan::Import(import);
    }

    /// Keys of the `hash:` tables in a domains parameter, or its literal names.
    fn table_keys_or_list(&mut self, value: &str, param: &str) -> Vec<String> {
        let mut out = Vec::new();
        for entry in postfix::list(value) {
            if let Some(spec) = MapSpec::parse(&entry) {
                match spec.text_source().and_then(|s| self.file(s)) {
                    Some(text) => {
                        out.extend(postfix::parse_table(text).into_iter().map(|(k, _)| k))
                    }
                    None => self.skip(
                        format!("postfix: {param}"),
                        &entry,
                        "not a readable hash:/texthash: table",
                    ),
                }
            } else if let Some(text) = entry.starts_with('/').then(|| self.file(&entry)).flatten() {
                out.extend(postfix::parse_table(text).into_iter().map(|(k, _)| k));
            } else if !entry.starts_with('/') {
                out.push(entry);
            }
        }
        out
    }

    fn mail_location(&mut self, v: &str, old: &str) {
        let (format, rest) = v.split_once(':').unwrap_or(("maildir", v));
        if format != "maildir" {
            self.plan.blockers.push(format!(
                "{old} = {v}: Postern reads Maildir only; convert first (doveadm sync -u USER maildir:~/Maildir), then migrate"
            ));
            return;
        }
        let mut parts = rest.split(':');
        let path = parts.next().unwrap_or("");
        for opt in parts {
            if opt.starts_with("LAYOUT=") && opt != "LAYOUT=maildir++" {
                self.plan.blockers.push(format!(
                    "{old}: {opt}: Postern reads the Maildir++ layout only"
                ));
            } else if !opt.is_empty() {
                self.skip(
                    old,
                    opt,
                    "Dovecot's own index/control location: Postern keeps its files in the Maildir",
                );
            }
        }
        let path = match path.strip_prefix("~/") {
            Some(r) => format!("%h/{r}"),
            None => path.to_owned(),
        };
        match dovecot::translate_vars(&path) {
            Ok(p) => {
                self.row(old, v, "[authd.userdb] mail");
                self.plan.userdb.mail = Some(p);
            }
            Err(e) => self.plan.blockers.push(format!("{old} = {v}: {}", e.0)),
        }
    }

    fn mail_store_quota(&mut self) {
        let mut plugins = Vec::new();
        self.inputs.dovecot.all_sections("plugin", &mut plugins);
        plugins.insert(0, &self.inputs.dovecot);
        let get = |k: &str| {
            plugins
                .iter()
                .rev()
                .find_map(|p| p.get(k))
                .map(str::to_owned)
        };
        if let Some(q) = get("quota") {
            if !q.starts_with("maildir") {
                self.skip(
                    "dovecot: quota",
                    &q,
                    "Postern keeps quota usage in maildirsize (Dovecot's maildir backend); usage is recounted from the files",
                );
            } else {
                self.row("dovecot: quota", &q, "Postern's maildirsize (same format)");
            }
        }
        if let Some(r) = get("quota_rule") {
            match dovecot::quota_rule_storage(&r) {
                Some(b) => {
                    self.row(
                        "dovecot: quota_rule",
                        &r,
                        format!("quota of every account: {b} bytes"),
                    );
                    self.plan.quota_bytes = Some(b);
                }
                None => self.skip(
                    "dovecot: quota_rule",
                    r,
                    "no storage limit Postern can read",
                ),
            }
        }
    }

    fn mail_store(&mut self) {
        if let Some(v) = self.inputs.dovecot.get("mail_location").map(str::to_owned)
            && self.plan.userdb.mail.is_none()
        {
            self.mail_location(&v, "dovecot: mail_location");
        }
        // `%h` in the mail template: put the home template in.
        if let Some(m) = self.plan.userdb.mail.clone() {
            if m.contains("%h") {
                match &self.plan.userdb.home {
                    Some(h) => self.plan.userdb.mail = Some(m.replace("%h", h)),
                    None => {
                        self.plan.blockers.push(format!(
                            "mail_location is relative to the home directory ({m}) but no home template was found"
                        ));
                        self.plan.userdb.mail = None;
                    }
                }
            }
            if let Some(m) = &mut self.plan.userdb.mail {
                *m = format!("maildir:{m}");
            }
        }
        let root_of = |t: &str| {
            let fixed = t.split('%').next().unwrap_or("");
            let fixed = fixed.strip_prefix("maildir:").unwrap_or(fixed);
            let root = fixed.trim_end_matches('/');
            (!root.is_empty() && root.starts_with('/')).then(|| root.to_owned())
        };
        self.plan.userdb.mail_root = self
            .plan
            .userdb
            .home
            .as_deref()
            .and_then(root_of)
            .or_else(|| self.plan.userdb.mail.as_deref().and_then(root_of));
        if let Some(v) = self.inputs.dovecot.get("first_valid_uid") {
            let v = v.to_owned();
            let ok = match (v.parse::<u32>(), self.plan.userdb.uid) {
                (Ok(min), Some(uid)) => uid >= min,
                _ => true,
            };
            if ok {
                self.row(
                    "dovecot: first_valid_uid",
                    v,
                    "not needed: every mailbox has [authd.userdb] uid",
                );
            } else {
                self.plan
                    .blockers
                    .push(format!("the mail uid is below first_valid_uid = {v}"));
            }
        }
        // Sieve.
        let mut plugins = Vec::new();
        self.inputs.dovecot.all_sections("plugin", &mut plugins);
        let get = |k: &str| {
            plugins
                .iter()
                .rev()
                .find_map(|p| p.get(k))
                .map(str::to_owned)
        };
        if let Some(s) = get("sieve") {
            let (dir, active) = match s.strip_prefix("file:") {
                Some(r) => {
                    let mut parts = r.split(';');
                    let dir = parts.next().unwrap_or("").to_owned();
                    let active = parts
                        .find_map(|p| p.strip_prefix("active="))
                        .map(str::to_owned);
                    (Some(dir), active)
                }
                None => (get("sieve_dir"), Some(s.clone())),
            };
            match active.as_deref().map(|a| a.replacen("~/", "%h/", 1)) {
                Some(a) => match dovecot::translate_vars(&a) {
                    Ok(t) => {
                        self.row("dovecot: sieve", &s, format!("[lmtp] sieve_script = {t}"));
                        if t != "%h/.dovecot.sieve" {
                            self.plan.sieve_script = Some(t);
                        }
                    }
                    Err(e) => self.skip("dovecot: sieve", &s, e.0),
                },
                None => self.skip(
                    "dovecot: sieve",
                    &s,
                    "no active script named: Postern's default %h/.dovecot.sieve applies",
                ),
            }
            if let Some(d) = dir
                && !d.is_empty()
                && d != "~/sieve"
            {
                self.skip(
                    "dovecot: sieve script directory",
                    d,
                    "ManageSieve keeps scripts in ~/sieve: move them there",
                );
            }
        }
        for k in [
            "sieve_before",
            "sieve_after",
            "sieve_global",
            "sieve_default",
            "sieve_extensions",
        ] {
            if let Some(v) = get(k) {
                self.skip(
                    format!("dovecot: {k}"),
                    v,
                    "global Sieve scripts and extension lists have no equivalent",
                );
            }
        }
    }

    fn restrictions(&mut self) {
        let mut rbl_reject = false;
        for list in RESTRICTION_LISTS {
            let Some(v) = self.pf(list).map(str::to_owned) else {
                continue;
            };
            self.used.insert((*list).to_owned());
            let tokens = postfix::list(&v);
            let mut i = 0;
            while i < tokens.len() {
                let t = tokens[i].as_str();
                let arg = tokens.get(i + 1).cloned();
                i += 1;
                let old = format!("postfix: {list}");
                match t {
                    _ if BUILT_IN_RESTRICTIONS.contains(&t) => {}
                    "reject_rbl_client"
                    | "reject_rhsbl_sender"
                    | "reject_rhsbl_client"
                    | "reject_rhsbl_helo"
                    | "reject_rhsbl_reverse_client" => {
                        i += 1;
                        let zone = arg.unwrap_or_default();
                        let zone = zone.split('=').next().unwrap_or("").to_owned();
                        if t == "reject_rbl_client" {
                            rbl_reject = true;
                            if !self.plan.checks.dnsbl_zones.contains(&zone) {
                                self.plan.checks.dnsbl_zones.push(zone.clone());
                            }
                            self.row(
                                old,
                                format!("{t} {zone}"),
                                "[checks] dnsbl_zones, dnsbl = \"reject\"",
                            );
                        } else if t == "reject_rhsbl_sender" {
                            if !self.plan.checks.dbl_zones.contains(&zone) {
                                self.plan.checks.dbl_zones.push(zone.clone());
                            }
                            self.row(old, format!("{t} {zone}"), "[checks] dbl_zones");
                        } else {
                            self.skip(old, format!("{t} {zone}"), "Postern checks the sender domain (dbl_zones) and the client IP (dnsbl_zones) only");
                        }
                    }
                    "reject_unknown_helo_hostname"
                    | "reject_invalid_helo_hostname"
                    | "reject_non_fqdn_helo_hostname" => {
                        self.plan.checks.helo = Some("reject".into());
                        let note = if t == "reject_unknown_helo_hostname" {
                            "[checks] helo = \"reject\" (invalid names, bare IPs and our own name; a name without DNS records is not refused)"
                        } else {
                            "[checks] helo = \"reject\""
                        };
                        self.row(old, t, note);
                    }
                    "reject_unknown_client_hostname" | "reject_unknown_reverse_client_hostname" => {
                        self.plan.checks.require_fcrdns = true;
                        self.plan.checks.helo.get_or_insert_with(|| "reject".into());
                        self.row(old, t, "[checks] require_fcrdns = true");
                    }
                    "check_client_access"
                    | "check_sender_access"
                    | "check_recipient_access"
                    | "check_helo_access" => {
                        i += 1;
                        let map = arg.unwrap_or_default();
                        self.access_map(&old, t, &map);
                    }
                    "check_policy_service" => {
                        i += 1;
                        self.skip(old, format!("{t} {}", arg.unwrap_or_default()), "policy services have no equivalent (a greylisting one: [checks] greylist = true)");
                    }
                    _ if t.starts_with("check_")
                        || t == "reject_rbl"
                        || t.starts_with("warn_if") =>
                    {
                        i += 1;
                        self.skip(
                            old,
                            format!("{t} {}", arg.unwrap_or_default()),
                            "no equivalent",
                        );
                    }
                    _ => self.skip(old, t, "no equivalent restriction in Postern"),
                }
            }
        }
        if rbl_reject {
            self.plan.checks.dnsbl = Some("reject".into());
        }
        // postscreen.
        let postscreen = self
            .inputs
            .master
            .iter()
            .any(|(_, _, cmd)| cmd == "postscreen");
        self.used.extend(
            [
                "postscreen_dnsbl_sites",
                "postscreen_dnsbl_action",
                "postscreen_dnsbl_threshold",
            ]
            .map(String::from),
        );
        if postscreen && let Some(sites) = self.pf("postscreen_dnsbl_sites").map(str::to_owned) {
            for s in postfix::list(&sites) {
                let zone = s.split(['=', '*']).next().unwrap_or("").to_owned();
                if !zone.is_empty() && !self.plan.checks.dnsbl_zones.contains(&zone) {
                    self.plan.checks.dnsbl_zones.push(zone);
                }
            }
            let action = self
                .pf("postscreen_dnsbl_action")
                .unwrap_or("ignore")
                .to_owned();
            let mode = if action == "ignore" { "tag" } else { "reject" };
            if self.plan.checks.dnsbl.is_none() || mode == "reject" {
                self.plan.checks.dnsbl = Some(mode.into());
            }
            self.row(
                "postfix: postscreen_dnsbl_sites",
                &sites,
                format!("[checks] dnsbl_zones, dnsbl = \"{mode}\" (postscreen_dnsbl_action = {action}; weights, reply filters and the threshold are not carried: any listing counts)"),
            );
        }
        if postscreen {
            self.skip(
                "postfix: master.cf smtp inet … postscreen",
                "postscreen",
                "its other tests (pregreet, pipelining, bare newline) map only in part: [checks] greet_pause_ms, [smtpd] reject_bare_newline",
            );
        }
    }

    fn access_map(&mut self, old: &str, check: &str, map: &str) {
        let Some(spec) = MapSpec::parse(map) else {
            self.skip(
                old.to_owned(),
                format!("{check} {map}"),
                "not a lookup table",
            );
            return;
        };
        let path = if spec.kind == "cidr" {
            Some(spec.arg.as_str())
        } else {
            spec.text_source()
        };
        let Some(text) = path.and_then(|p| self.file(p)) else {
            self.skip(
                old.to_owned(),
                format!("{check} {map}"),
                "only readable hash:/texthash:/cidr: access tables are carried",
            );
            return;
        };
        let mut n = 0;
        for (key, value) in postfix::parse_table(text) {
            let (action, rest) = value
                .split_once(char::is_whitespace)
                .map_or((value.as_str(), ""), |(a, r)| (a, r.trim()));
            let text = (!rest.is_empty()).then(|| rest.to_owned());
            let act = match action.to_ascii_uppercase().as_str() {
                "OK" | "PERMIT" => Some(("OK", None)),
                "REJECT" => Some(("REJECT", text)),
                "DISCARD" => Some(("DISCARD", None)),
                "HOLD" => Some(("HOLD", None)),
                a if a.len() == 3
                    && a.starts_with('5')
                    && a.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    Some(("REJECT", text))
                }
                _ => None,
            };
            let Some((action, text)) = act else {
                self.skip(
                    format!("postfix: {check} {map}"),
                    format!("{key} {value}"),
                    "only OK, REJECT (5xx), DISCARD and HOLD actions are carried",
                );
                continue;
            };
            let mut rules = Vec::new();
            let base = AccessPlan {
                action: action.into(),
                text,
                ..AccessPlan::default()
            };
            match check {
                "check_client_access" => {
                    let net = postfix::network(&key).or_else(|| octet_prefix(&key));
                    match net {
                        Some(n) => rules.push(AccessPlan {
                            client: Some(n),
                            ..base
                        }),
                        None => {
                            self.skip(
                                format!("postfix: {check} {map}"),
                                &key,
                                "client host names are not matched by Postern's access rules (networks only)",
                            );
                            continue;
                        }
                    }
                }
                "check_helo_access" => {
                    let name = key.trim_start_matches('.').to_ascii_lowercase();
                    if !key.starts_with('.') {
                        rules.push(AccessPlan {
                            helo: Some(name.clone()),
                            ..base.clone()
                        });
                    }
                    rules.push(AccessPlan {
                        helo: Some(format!("*.{name}")),
                        ..base
                    });
                }
                _ => {
                    if key.ends_with('@') {
                        self.skip(
                            format!("postfix: {check} {map}"),
                            &key,
                            "local-part keys (user@) have no equivalent",
                        );
                        continue;
                    }
                    let k = key.trim_start_matches('.').to_ascii_lowercase();
                    let (sender, recipient) = if check == "check_sender_access" {
                        (Some(k), None)
                    } else {
                        (None, Some(k))
                    };
                    rules.push(AccessPlan {
                        sender,
                        recipient,
                        ..base
                    });
                }
            }
            n += rules.len();
            self.plan.smtpd.access.extend(rules);
        }
        self.row(
            old.to_owned(),
            format!("{check} {map}"),
            format!("{n} [[smtpd.access]] rule(s)"),
        );
    }

    fn outbound(&mut self) {
        self.used.extend(
            [
                "relayhost",
                "transport_maps",
                "smtp_tls_security_level",
                "smtp_sasl_password_maps",
                "smtp_tls_policy_maps",
            ]
            .map(String::from),
        );
        if let Some(r) = self.pf("relayhost").map(str::to_owned) {
            match postfix::next_hop(&r) {
                Some(h) => {
                    let note = if h.mx {
                        " (Postfix looked up its MX records; Postern connects to the name itself)"
                    } else {
                        ""
                    };
                    self.row(
                        "postfix: relayhost",
                        &r,
                        format!("[smtpd] relayhost = {}{note}", h.host_port),
                    );
                    self.plan.smtpd.relayhost = Some(h.host_port.clone());
                    self.relay_auth(&r, &h.host_port);
                }
                None => self.skip("postfix: relayhost", r, "not a host[:port] Postern can use"),
            }
        }
        if let Some(v) = self.pf("smtp_tls_security_level").map(str::to_owned) {
            let (policy, note) = match v.as_str() {
                "none" | "may" | "encrypt" | "verify" => (Some(v.clone()), String::new()),
                "secure" => (
                    Some("verify".into()),
                    " (verify: the name is checked)".into(),
                ),
                "dane" => (
                    Some("may".into()),
                    " (may, with [smtpd] dane = \"auto\", the default)".into(),
                ),
                _ => (None, String::new()),
            };
            match policy {
                Some(p) => {
                    self.row(
                        "postfix: smtp_tls_security_level",
                        &v,
                        format!("[smtpd] outbound_tls = \"{p}\"{note}"),
                    );
                    self.plan.smtpd.outbound_tls = Some(p);
                }
                None => self.skip("postfix: smtp_tls_security_level", v, "no equivalent level"),
            }
        }
        // Postern sends a relay password only over a verified certificate by default; a
        // Postfix that required TLS without verifying it keeps working with "encrypt".
        if self.plan.smtpd.relayhost_auth_user.is_some()
            && self.plan.smtpd.outbound_tls.as_deref() == Some("encrypt")
        {
            self.plan.smtpd.relayhost_tls = Some("encrypt".into());
        }
        for (param, kind) in [
            ("transport_maps", "transport"),
            ("smtp_tls_policy_maps", "policy"),
        ] {
            let Some(v) = self.pf(param).map(str::to_owned) else {
                continue;
            };
            for entry in postfix::list(&v) {
                let Some(text) = MapSpec::parse(&entry)
                    .and_then(|s| s.text_source().map(str::to_owned))
                    .and_then(|p| self.file(&p).map(str::to_owned))
                else {
                    self.skip(
                        format!("postfix: {param}"),
                        &entry,
                        "only readable hash:/texthash: tables are carried",
                    );
                    continue;
                };
                for (k, val) in postfix::parse_table(&text) {
                    let old = format!("postfix: {param} {entry}");
                    if k.starts_with('.') || k == "*" || k.contains('@') {
                        self.skip(
                            old,
                            format!("{k} {val}"),
                            "only whole domains are routed (a default route is [smtpd] relayhost)",
                        );
                        continue;
                    }
                    let dom = k.to_ascii_lowercase();
                    if kind == "transport" {
                        match transport(&val) {
                            Some(t) => {
                                self.row(
                                    old,
                                    format!("{k} {val}"),
                                    format!("[smtpd.transports] \"{dom}\" = \"{t}\""),
                                );
                                self.plan.smtpd.transports.insert(dom, t);
                            }
                            None => self.skip(
                                old,
                                format!("{k} {val}"),
                                "only smtp:[host]:port and lmtp: routes have an equivalent",
                            ),
                        }
                    } else {
                        let level = val.split_whitespace().next().unwrap_or("");
                        let p = match level {
                            "none" | "may" | "encrypt" | "verify" => level,
                            "secure" => "verify",
                            _ => {
                                self.skip(old, format!("{k} {val}"), "no equivalent level");
                                continue;
                            }
                        };
                        self.row(
                            old,
                            format!("{k} {val}"),
                            format!("[smtpd.tls_policy] \"{dom}\" = \"{p}\""),
                        );
                        self.plan.smtpd.tls_policy.insert(dom, p.to_owned());
                    }
                }
            }
        }
    }

    fn relay_auth(&mut self, relayhost: &str, host_port: &str) {
        let Some(v) = self.pf("smtp_sasl_password_maps").map(str::to_owned) else {
            return;
        };
        if self.pf("smtp_sasl_auth_enable") != Some("yes") {
            self.skip(
                "postfix: smtp_sasl_password_maps",
                v,
                "smtp_sasl_auth_enable is not yes: Postfix does not use it",
            );
            return;
        }
        let bare = relayhost
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or("")
            .to_owned();
        for entry in postfix::list(&v) {
            let Some(text) = MapSpec::parse(&entry)
                .and_then(|s| s.text_source().map(str::to_owned))
                .and_then(|p| self.file(&p).map(str::to_owned))
            else {
                self.skip(
                    "postfix: smtp_sasl_password_maps",
                    &entry,
                    "only readable hash:/texthash: tables are carried",
                );
                continue;
            };
            let found = postfix::parse_table(&text)
                .into_iter()
                .find(|(k, _)| k == relayhost || *k == bare);
            if let Some((_, cred)) = found
                && let Some((user, pass)) = cred.split_once(':')
            {
                self.row(
                    "postfix: smtp_sasl_password_maps",
                    format!("{entry} ({relayhost} {user}:…)"),
                    format!("[smtpd] relayhost_auth_user = {user}, relayhost_password_file (written by apply); relayhost_tls = \"verify\" for {host_port} unless the provider's certificate does not verify"),
                );
                self.plan.smtpd.relayhost_auth_user = Some(user.to_owned());
                self.plan.smtpd.relayhost_password = Some(pass.to_owned());
                return;
            }
        }
        self.skip(
            "postfix: smtp_sasl_password_maps",
            v,
            "no entry for the relayhost",
        );
    }

    fn dkim(&mut self) {
        let Some(o) = self.inputs.opendkim.clone() else {
            return;
        };
        if let (Some(domain), Some(selector), Some(key)) =
            (o.get("Domain"), o.get("Selector"), o.get("KeyFile"))
        {
            for d in postfix::list(domain) {
                self.row(
                    "opendkim: Domain/Selector/KeyFile",
                    format!("{d} {selector} {key}"),
                    "key copied into [dkim] key_dir",
                );
                self.plan.dkim.push(DkimPlan {
                    domain: d.to_ascii_lowercase(),
                    selector: selector.clone(),
                    key_file: key.clone(),
                });
            }
        }
        let (Some(kt), Some(st)) = (o.get("KeyTable"), o.get("SigningTable")) else {
            return;
        };
        let (Some(keys), Some(signing)) = (self.file(table_path(kt)), self.file(table_path(st)))
        else {
            self.plan
                .blockers
                .push("opendkim KeyTable/SigningTable could not be read".into());
            return;
        };
        let keys: BTreeMap<String, String> = postfix::parse_table(keys).into_iter().collect();
        for (pattern, keyname) in postfix::parse_table(signing) {
            let from = pattern
                .trim_start_matches("*@")
                .trim_start_matches('@')
                .to_ascii_lowercase();
            let Some(entry) = keys.get(&keyname) else {
                self.skip(
                    "opendkim: SigningTable",
                    format!("{pattern} {keyname}"),
                    "names no KeyTable entry",
                );
                continue;
            };
            let mut f = entry.splitn(3, ':');
            let (Some(d), Some(sel), Some(file)) = (f.next(), f.next(), f.next()) else {
                self.skip("opendkim: KeyTable", entry, "not domain:selector:keyfile");
                continue;
            };
            let d = d.to_ascii_lowercase();
            if from.contains('*') || from.contains('@') || from != d {
                self.skip(
                    "opendkim: SigningTable",
                    format!("{pattern} {keyname}"),
                    "Postern signs mail from a domain with that domain's own keys (d= is the From: domain)",
                );
                continue;
            }
            let plan = DkimPlan {
                domain: d,
                selector: sel.to_owned(),
                key_file: file.to_owned(),
            };
            if !self.plan.dkim.contains(&plan) {
                self.row(
                    "opendkim: KeyTable/SigningTable",
                    format!("{pattern} {sel} {file}"),
                    format!("[dkim] key_dir/{}/{sel}.key (same selector)", plan.domain),
                );
                self.plan.dkim.push(plan);
            }
        }
    }

    fn leftovers(&mut self) {
        let explicit: Vec<String> = self
            .inputs
            .postfix_explicit
            .iter()
            .filter(|n| !self.used.contains(*n))
            .cloned()
            .collect();
        for name in explicit {
            let value = self.inputs.postfix.get(&name).cloned().unwrap_or_default();
            let why = if POSTFIX_HOUSEKEEPING.contains(&name.as_str()) {
                "Postfix's own housekeeping (paths, owners, SASL/LMTP plumbing): nothing to carry"
            } else if name.contains("password") || name.contains("secret") {
                "no equivalent"
            } else {
                "no equivalent setting in Postern"
            };
            let value = if name.contains("password") {
                "…".into()
            } else {
                value
            };
            self.skip(format!("postfix: {name}"), value, why);
        }
        let dovecot_used = [
            "mail_location",
            "first_valid_uid",
            "mail_uid",
            "mail_gid",
            "ssl_cert",
            "ssl_key",
        ];
        let settings: Vec<(String, String)> = self.inputs.dovecot.settings.clone();
        for (k, v) in settings {
            if dovecot_used.contains(&k.as_str()) {
                continue;
            }
            let why = match k.as_str() {
                "protocols" | "listen" => {
                    "Postern's listeners are in [imapd] (IMAP, POP3, ManageSieve) and [lmtp]"
                }
                "ssl"
                | "ssl_min_protocol"
                | "ssl_cipher_list"
                | "ssl_prefer_server_ciphers"
                | "ssl_dh" => "Postern's TLS settings are fixed (TLS 1.2+ with rustls defaults)",
                "disable_plaintext_auth" | "auth_mechanisms" => {
                    "Postern requires TLS for logins outside [imapd] trusted_networks; PLAIN and LOGIN are offered"
                }
                "last_valid_uid"
                | "mail_privileged_group"
                | "log_path"
                | "info_log_path"
                | "auth_verbose"
                | "mail_debug" => "Dovecot's own housekeeping: nothing to carry",
                _ => "no equivalent setting in Postern",
            };
            self.skip(format!("dovecot: {k}"), v, why);
        }
        let kinds: Vec<(String, Option<String>)> = self
            .inputs
            .dovecot
            .children
            .iter()
            .map(|c| (c.kind.clone(), c.name.clone()))
            .collect();
        for (kind, name) in kinds {
            let why = match kind.as_str() {
                "passdb" | "userdb" | "plugin" => continue,
                "service" => {
                    "listeners and sockets: Postern's are in [imapd], [lmtp] and [authd] (see the switch steps)"
                }
                "namespace" => {
                    "folders: Postern finds special-use folders by name (Sent, Drafts, Trash, Junk, Archive)"
                }
                "protocol" => "per-protocol settings have no equivalent",
                _ => "no equivalent",
            };
            let label = match name {
                Some(n) => format!("dovecot: {kind} {n} {{…}}"),
                None => format!("dovecot: {kind} {{…}}"),
            };
            self.skip(label, "", why);
        }
    }
}

/// The password query as Postern's account query (`address, password, quota_bytes,
/// enabled`), and the user expression (for the list query).
fn account_query(
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

/// The iterate query as Postern's list query.
fn list_query(q: &str) -> Result<String, dovecot::Untranslatable> {
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
fn cut_where(from: &str) -> String {
    let upper = from.to_ascii_uppercase();
    match upper.find(" WHERE ") {
        Some(i) => from[..i].to_owned(),
        None => from.to_owned(),
    }
}

/// A Dovecot `connect` string (`host=… dbname=… user=… password=…`) as a database URL
/// without the password, and the password.
fn connect_url(driver: &str, connect: &str) -> Result<(String, Option<String>), String> {
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

fn redact_connect(connect: &str) -> String {
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

/// `192.168.1` (Postfix's octet prefix in access tables) as a network.
fn octet_prefix(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() >= 4 || parts.iter().any(|p| p.parse::<u8>().is_err()) {
        return None;
    }
    let mut octets = parts.clone();
    while octets.len() < 4 {
        octets.push("0");
    }
    Some(format!("{}/{}", octets.join("."), parts.len() * 8))
}

/// A transport table value as a Postern transport.
fn transport(v: &str) -> Option<String> {
    let (kind, hop) = v.trim().split_once(':')?;
    match kind {
        "smtp" | "relay" => {
            let h = postfix::next_hop(hop)?;
            Some(format!("smtp:{}", h.host_port))
        }
        "lmtp" => {
            if let Some(p) = hop.strip_prefix("unix:") {
                return p.starts_with('/').then(|| format!("lmtp:unix:{p}"));
            }
            let hop = hop.strip_prefix("inet:").unwrap_or(hop);
            let h = postfix::next_hop(hop)?;
            Some(format!("lmtp:{}", h.host_port))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
