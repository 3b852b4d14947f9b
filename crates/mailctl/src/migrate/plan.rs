//! The migration plan: what each Postfix/Dovecot/OpenDKIM setting becomes in Postern, built
//! from configuration text only (no I/O; the caller reads the files [`referenced_files`]
//! names and hands them over in [`Inputs::files`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::dovecot::{self, Section};
use super::postfix::{self, MapSpec};

mod dkim;
mod dovecot_auth;
mod mail_store;
mod outbound;
mod passwd_file;
mod restrictions;
mod sql;

#[cfg(test)]
use outbound::transport;
#[cfg(test)]
use restrictions::octet_prefix;
#[cfg(test)]
use sql::{account_query, connect_url, list_query, update_query};

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
    /// `password_update` (for `[passwords] rehash_to_argon2id`).
    pub(crate) password_update: Option<String>,
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

#[cfg(test)]
mod tests;
