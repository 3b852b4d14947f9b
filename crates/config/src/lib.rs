//! The one Postern configuration file, `postern.toml`: a section per daemon.
//!
//! Each daemon reads only the sections it needs. Parsing is strict (`deny_unknown_fields`),
//! so a typo is an error instead of a silently ignored setting. Relative paths are resolved
//! against the directory holding the config file, so a self-contained install made by
//! `mailctl init --dir DIR` can be moved as a whole.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The default location of the config file.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/postern/postern.toml";

/// Errors while loading a config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's words.
        message: String,
    },
    /// The values are well-formed but make no sense together.
    #[error("{0}")]
    Invalid(String),
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This server's fully qualified host name (HELO name, authserv-id, greetings).
    pub hostname: String,
    /// Where things live on disk.
    #[serde(default)]
    pub paths: Paths,
    /// The account database.
    #[serde(default)]
    pub database: Database,
    /// The TLS certificate shared by the listeners.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// Password policy and hashing.
    #[serde(default)]
    pub passwords: Passwords,
    /// The directory daemon.
    #[serde(default)]
    pub authd: Authd,
    /// The MTA (listener addresses; the rest comes with the smtpd issue).
    #[serde(default)]
    pub smtpd: Smtpd,
    /// The IMAP/POP3 server (listener addresses; the rest comes with the imapd issue).
    #[serde(default)]
    pub imapd: Imapd,
    /// The LMTP delivery agent.
    #[serde(default)]
    pub lmtp: Lmtp,
    /// DNS for outbound delivery (MX, A/AAAA lookups).
    #[serde(default)]
    pub dns: Dns,
    /// DKIM signing of outbound mail.
    #[serde(default)]
    pub dkim: Dkim,
    /// Checks on mail arriving on port 25 (SPF, DKIM, DMARC, DNSBL, HELO, greylisting, …).
    #[serde(default)]
    pub checks: Checks,
    /// The mail-client autoconfiguration listener served by smtpd (off unless configured).
    #[serde(default)]
    pub autoconfig: Autoconfig,
    /// The directory the config file was loaded from; relative paths are resolved against it.
    #[serde(skip)]
    pub base_dir: PathBuf,
}

/// `[paths]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paths {
    /// The run directory holding every socket (`auth`, `auth-userdb`, `socketmap`, `lmtp`, `smtpd`).
    #[serde(default = "default_run_dir")]
    pub run_dir: PathBuf,
    /// State: queue, keys, database file for SQLite installs.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// The root of the Maildir tree (`%d/%n/Maildir` below it by default).
    #[serde(default = "default_mail_root")]
    pub mail_root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            run_dir: default_run_dir(),
            state_dir: default_state_dir(),
            mail_root: default_mail_root(),
        }
    }
}

fn default_run_dir() -> PathBuf {
    PathBuf::from("/run/postern")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/postern")
}
fn default_mail_root() -> PathBuf {
    PathBuf::from("/var/vmail")
}

/// `[database]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `sqlite:///path/postern.db`, `postgres://user@host/db` or `mysql://user@host/db`.
    /// A relative SQLite path is relative to the config file's directory.
    #[serde(default = "default_db_url")]
    pub url: String,
    /// A file whose first line is the database password; it replaces any password in `url`.
    /// The environment variable `POSTERN_DB_PASSWORD` does the same and wins over the file.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections in the pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Lookup SQL to use instead of Postern's own schema (for an existing Postfix/Dovecot database).
    #[serde(default)]
    pub queries: Queries,
}

impl Default for Database {
    fn default() -> Self {
        Self {
            url: default_db_url(),
            password_file: None,
            max_connections: default_max_connections(),
            queries: Queries::default(),
        }
    }
}

fn default_db_url() -> String {
    "sqlite:///var/lib/postern/postern.db".to_owned()
}
fn default_max_connections() -> u32 {
    8
}

/// `[database.queries]`: each lookup's SQL, overridable.
///
/// Placeholders: `%u` the key looked up (a whole address, or `@domain` for catch-alls),
/// `%d` its domain, `%n` its local part. They become bound parameters, never text pasted
/// into the SQL, so they need no quoting (`'%u'` is accepted and means the same).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Queries {
    /// Returns a row when `%d` is one of our domains.
    pub domain: Option<String>,
    /// Returns `address, password, quota_bytes, enabled` for the account `%u`.
    pub account: Option<String>,
    /// Returns one or more rows of destinations (each may be a comma-separated list) for `%u`.
    pub alias: Option<String>,
    /// Returns the logins allowed to send as `%u`, besides the account itself and alias owners.
    pub sender: Option<String>,
    /// Returns the address of every account (userdb LIST).
    pub list: Option<String>,
    /// Stores a new hash: `%p` the hash, `%u` the address. Used when rehashing after login.
    pub password_update: Option<String>,
}

impl Queries {
    /// True when any lookup is overridden (Postern's own schema may not be there).
    pub fn any_overridden(&self) -> bool {
        self.domain.is_some()
            || self.account.is_some()
            || self.alias.is_some()
            || self.sender.is_some()
            || self.list.is_some()
    }
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[passwords]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Passwords {
    /// Shortest password `mailctl` accepts.
    #[serde(default = "default_min_length")]
    pub min_length: usize,
    /// Replace an old-scheme hash with argon2id after a successful login.
    #[serde(default)]
    pub rehash_to_argon2id: bool,
    /// Scheme assumed for a stored hash with no `{SCHEME}` prefix that is not recognisable
    /// by its shape (`$6$…`, `$argon2id$…`, …). Dovecot's `default_pass_scheme`.
    #[serde(default = "default_scheme")]
    pub default_scheme: String,
}

impl Default for Passwords {
    fn default() -> Self {
        Self {
            min_length: default_min_length(),
            rehash_to_argon2id: false,
            default_scheme: default_scheme(),
        }
    }
}

fn default_min_length() -> usize {
    10
}
fn default_scheme() -> String {
    "CRYPT".to_owned()
}

/// A Unix socket to listen on.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SocketSpec {
    /// File name; a relative one lives in the run directory.
    pub path: PathBuf,
    /// Permission bits, octal as a string (`"0660"`).
    #[serde(default = "default_socket_mode")]
    pub mode: String,
    /// Owner user name (needs root to change); unset keeps the daemon's own.
    #[serde(default)]
    pub owner: Option<String>,
    /// Owner group name; unset keeps the daemon's own.
    #[serde(default)]
    pub group: Option<String>,
}

impl SocketSpec {
    fn named(name: &str) -> Self {
        Self {
            path: PathBuf::from(name),
            mode: default_socket_mode(),
            owner: None,
            group: None,
        }
    }

    /// The mode bits.
    pub fn mode_bits(&self) -> Result<u32, ConfigError> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                ConfigError::Invalid(format!("socket mode {:?} is not octal", self.mode))
            })
    }
}

fn default_socket_mode() -> String {
    "0660".to_owned()
}

/// `[authd]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Authd {
    /// Dovecot auth protocol (client side: Postfix SASL, smtpd, imapd).
    #[serde(default = "default_auth_socket")]
    pub auth_socket: SocketSpec,
    /// Dovecot userdb protocol (lmtp-deliver, imapd).
    #[serde(default = "default_userdb_socket")]
    pub userdb_socket: SocketSpec,
    /// Postfix socketmap protocol (domains, mailboxes, aliases, senders).
    #[serde(default = "default_socketmap_socket")]
    pub socketmap_socket: SocketSpec,
    /// Allow PLAIN/LOGIN from a non-local client over an unencrypted connection.
    #[serde(default)]
    pub allow_plaintext_insecure: bool,
    /// Longest request line accepted on any authd socket.
    #[serde(default = "default_max_line")]
    pub max_line: usize,
    /// Idle time after which a client connection is closed.
    #[serde(default = "default_idle_secs")]
    pub idle_timeout_secs: u64,
    /// Password checks (hash computations such as argon2, 19 MiB each) at once; more wait in
    /// line. 0: one per CPU core.
    #[serde(default)]
    pub hash_concurrency: usize,
    /// How long a login waits in that line before it is answered with a temporary failure.
    #[serde(default = "default_hash_queue_timeout_ms")]
    pub hash_queue_timeout_ms: u64,
    /// A failed login is never answered sooner than this after it arrived, so unknown users,
    /// accounts with fast legacy hashes and argon2 accounts cannot be told apart by timing.
    #[serde(default = "default_failure_delay_ms")]
    pub failure_delay_ms: u64,
    /// What userdb lookups answer.
    #[serde(default)]
    pub userdb: Userdb,
    /// Brute-force defence.
    #[serde(default)]
    pub lockout: Lockout,
}

impl Default for Authd {
    fn default() -> Self {
        Self {
            auth_socket: default_auth_socket(),
            userdb_socket: default_userdb_socket(),
            socketmap_socket: default_socketmap_socket(),
            allow_plaintext_insecure: false,
            max_line: default_max_line(),
            idle_timeout_secs: default_idle_secs(),
            hash_concurrency: 0,
            hash_queue_timeout_ms: default_hash_queue_timeout_ms(),
            failure_delay_ms: default_failure_delay_ms(),
            userdb: Userdb::default(),
            lockout: Lockout::default(),
        }
    }
}

fn default_auth_socket() -> SocketSpec {
    SocketSpec::named("auth")
}
fn default_userdb_socket() -> SocketSpec {
    SocketSpec::named("auth-userdb")
}
fn default_socketmap_socket() -> SocketSpec {
    SocketSpec::named("socketmap")
}
fn default_max_line() -> usize {
    16384
}
fn default_idle_secs() -> u64 {
    600
}
fn default_hash_queue_timeout_ms() -> u64 {
    5000
}
fn default_failure_delay_ms() -> u64 {
    1000
}

/// `[authd.userdb]`: the fields of a USER reply.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Userdb {
    /// Unix uid owning the mail; unset means authd's own.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Unix gid owning the mail; unset means authd's own.
    #[serde(default)]
    pub gid: Option<u32>,
    /// Home template (`%d`, `%n`, `%u`); default `<mail_root>/%d/%n`.
    #[serde(default)]
    pub home: Option<String>,
    /// Mail location template; default `maildir:<mail_root>/%d/%n/Maildir`.
    #[serde(default)]
    pub mail: Option<String>,
}

/// `[authd.lockout]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lockout {
    /// Failures (per IP or per account) before answers to that IP/account are delayed.
    #[serde(default = "default_delay_after")]
    pub delay_after: u32,
    /// Longest delay before a failure answer (Postfix's client gives up after 10 s).
    #[serde(default = "default_max_delay")]
    pub max_delay_secs: u64,
    /// Failures of one account within `window_secs` that lock it.
    #[serde(default = "default_account_threshold")]
    pub account_threshold: u32,
    /// Failures from one IP within `window_secs` that lock it.
    #[serde(default = "default_ip_threshold")]
    pub ip_threshold: u32,
    /// Failures older than this are forgotten.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// Length of a first lockout; each further lockout of the same subject doubles it.
    #[serde(default = "default_lockout_secs")]
    pub lockout_secs: u64,
    /// Longest lockout.
    #[serde(default = "default_max_lockout")]
    pub max_lockout_secs: u64,
    /// Networks never delayed or locked out (their failures are still logged).
    #[serde(default)]
    pub allow_networks: Vec<IpNet>,
}

impl Default for Lockout {
    fn default() -> Self {
        Self {
            delay_after: default_delay_after(),
            max_delay_secs: default_max_delay(),
            account_threshold: default_account_threshold(),
            ip_threshold: default_ip_threshold(),
            window_secs: default_window(),
            lockout_secs: default_lockout_secs(),
            max_lockout_secs: default_max_lockout(),
            allow_networks: Vec::new(),
        }
    }
}

fn default_delay_after() -> u32 {
    3
}
fn default_max_delay() -> u64 {
    8
}
fn default_account_threshold() -> u32 {
    10
}
fn default_ip_threshold() -> u32 {
    30
}
fn default_window() -> u64 {
    3600
}
fn default_lockout_secs() -> u64 {
    900
}
fn default_max_lockout() -> u64 {
    86400
}

impl Lockout {
    /// True when `ip` is on the allow-list.
    pub fn allowed(&self, ip: IpAddr) -> bool {
        self.allow_networks.iter().any(|n| n.contains(&ip))
    }
}

/// `[smtpd]`: the MTA.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Smtpd {
    /// MX (port 25): mail for our domains from anyone; never relays.
    #[serde(default = "default_smtp")]
    pub listen: Vec<SocketAddr>,
    /// Submission with STARTTLS (587): AUTH required.
    #[serde(default = "default_submission")]
    pub submission: Vec<SocketAddr>,
    /// Submission with implicit TLS (465): AUTH required.
    #[serde(default = "default_smtps")]
    pub submissions: Vec<SocketAddr>,
    /// Networks that may relay without AUTH and may use AUTH before TLS.
    #[serde(default = "default_trusted")]
    pub trusted_networks: Vec<IpNet>,
    /// Largest message accepted (advertised with SIZE).
    #[serde(default = "default_smtp_max_message")]
    pub max_message_size: u64,
    /// Recipients per message.
    #[serde(default = "default_smtp_max_rcpts")]
    pub max_recipients: usize,
    /// Connections at once on the MX door (`listen`, port 25).
    #[serde(default = "default_smtp_max_conns")]
    pub max_connections: usize,
    /// Connections at once on the submission doors (`submission` and `submissions`, 587 and
    /// 465), a budget of their own so that strangers on port 25 cannot lock users out.
    #[serde(default = "default_smtp_max_submission_conns")]
    pub max_submission_connections: usize,
    /// Connections at once from one client (an IPv6 client's /64), counted apart on port 25
    /// and on the submission ports; `trusted_networks` are exempt.
    #[serde(default = "default_smtp_max_conns_ip")]
    pub max_connections_per_ip: usize,
    /// Refuse a message sent with `DATA` that has a bare CR or LF (`550 5.5.2`), as
    /// Postfix's `smtpd_forbid_bare_newline = reject`; `trusted_networks` are exempt. Off:
    /// bare LF becomes CRLF ("normalize"); the end of data is `CRLF . CRLF` either way.
    #[serde(default)]
    pub reject_bare_newline: bool,
    /// Idle time before `421 4.4.2`.
    #[serde(default = "default_smtp_idle")]
    pub idle_timeout_secs: u64,
    /// Total time one session may last.
    #[serde(default = "default_smtp_session")]
    pub session_timeout_secs: u64,
    /// Errors in one session before it is closed.
    #[serde(default = "default_smtp_errors")]
    pub max_errors: u32,
    /// Where local mail is delivered over LMTP: `unix:/path` or `host:port`
    /// (default: the lmtp socket in the run directory).
    #[serde(default)]
    pub lmtp: Option<String>,
    /// Name the authenticated user in the `Received` header.
    #[serde(default)]
    pub received_show_auth: bool,
    /// A smarthost (`host:port`) for mail to other domains (those without a `transports`
    /// entry). Unset: mail goes to each domain's MX hosts.
    #[serde(default)]
    pub relayhost: Option<String>,
    /// The login for AUTH (PLAIN or LOGIN) at the relayhost; needs `relayhost_password_file`.
    #[serde(default)]
    pub relayhost_auth_user: Option<String>,
    /// A file whose first line is the relayhost password.
    #[serde(default)]
    pub relayhost_password_file: Option<PathBuf>,
    /// TLS to the relayhost: `none`, `may`, `encrypt` or `verify` (default: `verify` when
    /// AUTH is configured, so the password only goes to a certificate valid for the
    /// relayhost's name; else `outbound_tls`). AUTH is only sent over TLS unless this is `none`.
    #[serde(default)]
    pub relayhost_tls: Option<TlsPolicy>,
    /// Per destination domain, where its mail goes instead of MX lookup or the relayhost:
    /// `smtp:host:port`, `lmtp:unix:/path` or `lmtp:host:port`.
    #[serde(default)]
    pub transports: BTreeMap<String, String>,
    /// The port outbound SMTP connects to on MX hosts (25; tests point it elsewhere).
    #[serde(default = "default_outbound_port")]
    pub outbound_port: u16,
    /// TLS for outbound SMTP when no `tls_policy` entry names the domain.
    #[serde(default = "default_outbound_tls")]
    pub outbound_tls: TlsPolicy,
    /// Per destination domain TLS policy: `none`, `may` (opportunistic STARTTLS, certificate
    /// not checked), `encrypt` (TLS required, any certificate), `verify` (TLS required, the
    /// certificate must be valid for the MX host name, checked against the webpki roots).
    #[serde(default)]
    pub tls_policy: BTreeMap<String, TlsPolicy>,
    /// MTA-STS (RFC 8461) for MX delivery: a domain's published policy can require verified
    /// TLS to named MX hosts. A `tls_policy` entry for the domain wins over it.
    #[serde(default = "default_true")]
    pub mta_sts: bool,
    /// The port MTA-STS policies are fetched from over HTTPS (443; tests point it elsewhere).
    #[serde(default = "default_mta_sts_port")]
    pub mta_sts_port: u16,
    /// A PEM file of extra trust roots (besides the webpki roots) for MTA-STS: the policy
    /// fetch and the MX certificate check under an enforced policy.
    #[serde(default)]
    pub mta_sts_ca_file: Option<PathBuf>,
    /// Outbound SMTP connections at once, to all destinations.
    #[serde(default = "default_outbound_concurrency")]
    pub outbound_concurrency: usize,
    /// Outbound SMTP connections at once to one destination (domain, or the relayhost).
    #[serde(default = "default_destination_concurrency")]
    pub outbound_destination_concurrency: usize,
    /// How long an idle outbound connection is kept for the next message to the same place.
    #[serde(default = "default_outbound_cache")]
    pub outbound_connection_cache_secs: u64,
    /// Outbound timeouts: making the TCP connection.
    #[serde(default = "default_out_connect")]
    pub outbound_connect_timeout_secs: u64,
    /// Outbound timeouts: the greeting and the EHLO/STARTTLS/AUTH replies.
    #[serde(default = "default_out_greeting")]
    pub outbound_greeting_timeout_secs: u64,
    /// Outbound timeouts: the reply to each of MAIL, RCPT, DATA, RSET, QUIT.
    #[serde(default = "default_out_command")]
    pub outbound_command_timeout_secs: u64,
    /// Outbound timeouts: writing each 64 KiB block of the message.
    #[serde(default = "default_out_data")]
    pub outbound_data_timeout_secs: u64,
    /// Outbound timeouts: the reply after the end of the message.
    #[serde(default = "default_out_final")]
    pub outbound_final_timeout_secs: u64,
    /// Messages one authenticated user may submit per hour (0: no limit); more get
    /// `450 4.7.1` at MAIL until the hour has room again.
    #[serde(default = "default_user_hourly")]
    pub max_messages_per_hour_per_user: u32,
    /// Recipients per message for authenticated users (0: only `max_recipients` applies);
    /// more get `452 4.5.3` at RCPT.
    #[serde(default = "default_user_rcpts")]
    pub max_recipients_per_message_per_user: usize,
    /// Messages in the queue at most (0: no limit); beyond it MAIL gets `452 4.3.1`.
    #[serde(default = "default_max_queue")]
    pub max_queue_messages: usize,
    /// Shortest and longest wait between delivery attempts.
    #[serde(default = "default_min_backoff")]
    pub min_backoff_secs: u64,
    /// Longest wait between delivery attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
    /// How long a message may stay queued before it is bounced.
    #[serde(default = "default_lifetime")]
    pub max_queue_lifetime_secs: u64,
    /// Send a delay warning after this long.
    #[serde(default = "default_delay_warning")]
    pub delay_warning_secs: u64,
    /// Delivery attempts running at once (local and remote together).
    #[serde(default = "default_delivery_concurrency")]
    pub delivery_concurrency: usize,
    /// LMTP transactions to the local delivery agent at once. Local deliveries are short and
    /// disk-bound: a few at a time deliver faster than many fighting over the disk and CPU,
    /// and leave room for receiving.
    #[serde(default = "default_lmtp_concurrency")]
    pub lmtp_concurrency: usize,
    /// Access rules, in the spirit of sendmail's access file; the first rule whose every
    /// given condition matches decides.
    #[serde(default)]
    pub access: Vec<AccessRule>,
    /// The control socket (`mailctl queue`, `sendmail`): whoever can connect may submit
    /// mail (recorded as their Unix user); listing and changing the queue needs root or
    /// smtpd's own user. Its `group` is the group of the local submitters (Postfix's
    /// `postdrop`: `sendmail` installed setgid to it), not the daemons' group.
    #[serde(default = "default_control_socket")]
    pub control_socket: SocketSpec,
    /// Sign mail from `trusted_networks` that did not authenticate (its header From: is not
    /// checked against anyone, so any host there could sign as any hosted domain). Off:
    /// such mail is relayed unsigned; authenticate, or use `sendmail`, to get signatures.
    #[serde(default)]
    pub sign_trusted_networks: bool,
    /// Local submission (`sendmail`): the header From: addresses each Unix user may have
    /// signed, besides `user@hostname`: `"user@domain"`, or `"@domain"` for every address
    /// of a domain. Other From: addresses are delivered unsigned.
    #[serde(default)]
    pub local_senders: BTreeMap<String, Vec<String>>,
    /// Unix users (names or numeric uids) that may hand over forwarded mail and automatic
    /// replies on the control socket (lmtp-deliver's user); root and smtpd's own user always may.
    #[serde(default = "default_forward_users")]
    pub forward_users: Vec<String>,
    /// Rewrite the envelope sender of mail forwarded to other domains (Sieve redirect, aliases
    /// to remote addresses) with SRS, so SPF passes at the next hop; bounces to those
    /// addresses are checked and sent on to the original sender.
    #[serde(default = "default_true")]
    pub srs: bool,
    /// The domain of SRS addresses (default: `hostname`). Its MX must be this server.
    #[serde(default)]
    pub srs_domain: Option<String>,
    /// How long an SRS address stays valid for bounces, in days.
    #[serde(default = "default_srs_max_age")]
    pub srs_max_age_days: u32,
}

fn default_forward_users() -> Vec<String> {
    vec!["vmail".to_owned()]
}
fn default_srs_max_age() -> u32 {
    21
}

fn default_control_socket() -> SocketSpec {
    SocketSpec::named("smtpd")
}

/// One `[[smtpd.access]]` rule.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    /// The client's network.
    #[serde(default)]
    pub client: Option<IpNet>,
    /// The HELO/EHLO name: exact, or `*.example.com` for any name below it.
    #[serde(default)]
    pub helo: Option<String>,
    /// The envelope sender: `user@domain`, or a domain (`example.com`, `@example.com`) which
    /// also covers its subdomains; `<>` is the null sender.
    #[serde(default)]
    pub sender: Option<String>,
    /// A recipient, as for `sender` (checked at RCPT).
    #[serde(default)]
    pub recipient: Option<String>,
    /// What to do.
    pub action: AccessAction,
    /// The text of a REJECT reply.
    #[serde(default)]
    pub text: Option<String>,
}

/// What an access rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AccessAction {
    /// Stop looking at access rules (other checks still apply).
    Ok,
    /// Refuse with `554 5.7.1`.
    Reject,
    /// Accept and throw away.
    Discard,
    /// Accept into the queue, held until `mailctl queue release`.
    Hold,
}

impl Default for Smtpd {
    fn default() -> Self {
        Self {
            listen: default_smtp(),
            submission: default_submission(),
            submissions: default_smtps(),
            trusted_networks: default_trusted(),
            max_message_size: default_smtp_max_message(),
            max_recipients: default_smtp_max_rcpts(),
            max_connections: default_smtp_max_conns(),
            max_submission_connections: default_smtp_max_submission_conns(),
            max_connections_per_ip: default_smtp_max_conns_ip(),
            reject_bare_newline: false,
            idle_timeout_secs: default_smtp_idle(),
            session_timeout_secs: default_smtp_session(),
            max_errors: default_smtp_errors(),
            lmtp: None,
            received_show_auth: false,
            relayhost: None,
            relayhost_auth_user: None,
            relayhost_password_file: None,
            relayhost_tls: None,
            transports: BTreeMap::new(),
            outbound_port: default_outbound_port(),
            outbound_tls: default_outbound_tls(),
            tls_policy: BTreeMap::new(),
            mta_sts: true,
            mta_sts_port: default_mta_sts_port(),
            mta_sts_ca_file: None,
            outbound_concurrency: default_outbound_concurrency(),
            outbound_destination_concurrency: default_destination_concurrency(),
            outbound_connection_cache_secs: default_outbound_cache(),
            outbound_connect_timeout_secs: default_out_connect(),
            outbound_greeting_timeout_secs: default_out_greeting(),
            outbound_command_timeout_secs: default_out_command(),
            outbound_data_timeout_secs: default_out_data(),
            outbound_final_timeout_secs: default_out_final(),
            max_messages_per_hour_per_user: default_user_hourly(),
            max_recipients_per_message_per_user: default_user_rcpts(),
            max_queue_messages: default_max_queue(),
            min_backoff_secs: default_min_backoff(),
            max_backoff_secs: default_max_backoff(),
            max_queue_lifetime_secs: default_lifetime(),
            delay_warning_secs: default_delay_warning(),
            delivery_concurrency: default_delivery_concurrency(),
            lmtp_concurrency: default_lmtp_concurrency(),
            access: Vec::new(),
            control_socket: default_control_socket(),
            sign_trusted_networks: false,
            local_senders: BTreeMap::new(),
            forward_users: default_forward_users(),
            srs: true,
            srs_domain: None,
            srs_max_age_days: default_srs_max_age(),
        }
    }
}

fn default_trusted() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}
fn default_smtp_max_message() -> u64 {
    50 * 1024 * 1024
}
fn default_smtp_max_rcpts() -> usize {
    1000
}
fn default_smtp_max_conns() -> usize {
    500
}
fn default_smtp_max_submission_conns() -> usize {
    200
}
fn default_smtp_max_conns_ip() -> usize {
    20
}
fn default_smtp_idle() -> u64 {
    300
}
fn default_smtp_session() -> u64 {
    3600
}
fn default_smtp_errors() -> u32 {
    20
}
fn default_min_backoff() -> u64 {
    300
}
fn default_max_backoff() -> u64 {
    3600
}
fn default_lifetime() -> u64 {
    5 * 86400
}
fn default_delay_warning() -> u64 {
    4 * 3600
}
fn default_lmtp_concurrency() -> usize {
    4
}
fn default_delivery_concurrency() -> usize {
    20
}
fn default_outbound_port() -> u16 {
    25
}
fn default_mta_sts_port() -> u16 {
    443
}
fn default_outbound_tls() -> TlsPolicy {
    TlsPolicy::May
}
fn default_outbound_concurrency() -> usize {
    100
}
fn default_destination_concurrency() -> usize {
    20
}
fn default_outbound_cache() -> u64 {
    10
}
fn default_out_connect() -> u64 {
    30
}
fn default_out_greeting() -> u64 {
    300
}
fn default_out_command() -> u64 {
    300
}
fn default_out_data() -> u64 {
    180
}
fn default_out_final() -> u64 {
    600
}
fn default_user_hourly() -> u32 {
    500
}
fn default_user_rcpts() -> usize {
    100
}
fn default_max_queue() -> usize {
    100_000
}

/// TLS for one outbound destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered; any certificate; plain text when not offered or it fails.
    May,
    /// TLS required (else the delivery is deferred); any certificate.
    Encrypt,
    /// TLS required with a certificate valid for the host name (webpki roots).
    Verify,
}

/// `[dns]`: the resolver used for MX and address lookups.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Name servers as `IP:PORT` (UDP, TCP on truncation). Empty: the system's resolv.conf.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Time for one query before it is retried.
    #[serde(default = "default_dns_timeout")]
    pub timeout_secs: u64,
    /// Tries per query.
    #[serde(default = "default_dns_attempts")]
    pub attempts: usize,
    /// For the inbound checks (SPF, DKIM, DMARC, DNSBL, FCrDNS): time for one try of a
    /// query, in milliseconds; a check whose lookup timed out or failed asks again (up to 3
    /// tries) within `[checks] dns_budget_ms`.
    #[serde(default = "default_dns_check_timeout_ms")]
    pub check_timeout_ms: u64,
    /// For the inbound checks: the shortest time a negative answer (no such name, no such
    /// record) is cached, seconds; it matters for answers without an SOA, which would
    /// otherwise not be cached at all and be asked again for every message.
    #[serde(default = "default_dns_negative_min_ttl")]
    pub negative_min_ttl_secs: u64,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_secs: default_dns_timeout(),
            attempts: default_dns_attempts(),
            check_timeout_ms: default_dns_check_timeout_ms(),
            negative_min_ttl_secs: default_dns_negative_min_ttl(),
        }
    }
}

fn default_dns_timeout() -> u64 {
    5
}
fn default_dns_attempts() -> usize {
    2
}
fn default_dns_check_timeout_ms() -> u64 {
    500
}
fn default_dns_negative_min_ttl() -> u64 {
    30
}

/// `[dkim]`: signing outbound mail.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dkim {
    /// Sign outbound mail whose From: domain has a key.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Keys: `KEY_DIR/DOMAIN/SELECTOR.key` (PEM; RSA or Ed25519), as `mailctl dkim generate`
    /// writes them. Every key of a domain signs (an RSA and an Ed25519 key make two
    /// signatures). Default: `<state_dir>/dkim`.
    #[serde(default)]
    pub key_dir: Option<PathBuf>,
}

impl Default for Dkim {
    fn default() -> Self {
        Self {
            enabled: true,
            key_dir: None,
        }
    }
}

fn default_true() -> bool {
    true
}

/// What a check does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckMode {
    /// Not checked.
    Off,
    /// Checked and recorded in a header; the mail is accepted.
    Tag,
    /// Checked; a failure refuses the mail.
    Reject,
}

impl CheckMode {
    /// Anything but `off`.
    pub fn on(self) -> bool {
        self != Self::Off
    }
}

/// `[checks]`: what is checked on port 25, for clients outside `[smtpd] trusted_networks`
/// that have not authenticated (never on 587/465).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// SPF (RFC 7208) of the MAIL FROM domain (or the HELO name for `<>`); `reject` refuses
    /// an SPF `fail` at MAIL with `550 5.7.23`.
    #[serde(default = "default_tag")]
    pub spf: CheckMode,
    /// DKIM signatures (RFC 6376); `reject` refuses a message whose signatures all fail
    /// (`550 5.7.20`); unsigned mail is never refused for that.
    #[serde(default = "default_tag")]
    pub dkim: CheckMode,
    /// DMARC (RFC 7489) of the From: domain; `reject` applies the domain's policy:
    /// `p=reject` → `550 5.7.1` after DATA, `p=quarantine` → the recipient's Junk folder;
    /// `pct` is honoured. `tag` only records the result.
    #[serde(default = "default_reject")]
    pub dmarc: CheckMode,
    /// DNS blocklists of the client IP (`zen.spamhaus.org`, …): a listed client is refused
    /// at MAIL with `554 5.7.1 … listed at ZONE` (`reject`) or tagged.
    #[serde(default)]
    pub dnsbl_zones: Vec<String>,
    /// Domain blocklists of the sender's domain (`dbl.spamhaus.org`, …), as `dnsbl_zones`.
    #[serde(default)]
    pub dbl_zones: Vec<String>,
    /// What a listing does: `reject` or `tag` (`off` skips the lookups).
    #[serde(default = "default_reject")]
    pub dnsbl: CheckMode,
    /// HELO/EHLO hygiene: invalid names, bare IP addresses, our own name or addresses
    /// claimed by a client (checked at MAIL).
    #[serde(default = "default_reject")]
    pub helo: CheckMode,
    /// Also require forward-confirmed reverse DNS of the client (PTR → A/AAAA back to its
    /// IP); refused with `550 5.7.25` (`helo = "reject"`) or tagged.
    #[serde(default)]
    pub require_fcrdns: bool,
    /// Wait this long before the greeting; a client that talks first is refused with
    /// `554 5.5.0` and disconnected (0: no pause, no early-talker check).
    #[serde(default)]
    pub greet_pause_ms: u64,
    /// New connections per minute from one IP address (0: no limit); beyond it `421 4.7.0`.
    #[serde(default)]
    pub max_connection_rate_per_ip: u32,
    /// Greylisting (RFC 6647) of (client /24 or /64, sender, recipient).
    #[serde(default)]
    pub greylist: bool,
    /// How long a new triplet is deferred.
    #[serde(default = "default_greylist_delay")]
    pub greylist_delay_secs: u64,
    /// How long a deferred triplet waits for its retry before it is forgotten.
    #[serde(default = "default_greylist_window")]
    pub greylist_retry_window_secs: u64,
    /// How long a triplet that passed stays allowed after it was last seen.
    #[serde(default = "default_greylist_allow")]
    pub greylist_allow_secs: u64,
    /// Longest a message waits for the DNS of all its checks together (at MAIL and after
    /// DATA), milliseconds. Past it, what is not known is a `temperror` (RFC 7208/7489):
    /// tagged in Authentication-Results, or `451 4.7.x` where that check is in `reject` mode.
    #[serde(default = "default_dns_budget_ms")]
    pub dns_budget_ms: u64,
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            spf: CheckMode::Tag,
            dkim: CheckMode::Tag,
            dmarc: CheckMode::Reject,
            dnsbl_zones: Vec::new(),
            dbl_zones: Vec::new(),
            dnsbl: CheckMode::Reject,
            helo: CheckMode::Reject,
            require_fcrdns: false,
            greet_pause_ms: 0,
            max_connection_rate_per_ip: 0,
            greylist: false,
            greylist_delay_secs: default_greylist_delay(),
            greylist_retry_window_secs: default_greylist_window(),
            greylist_allow_secs: default_greylist_allow(),
            dns_budget_ms: default_dns_budget_ms(),
        }
    }
}

fn default_tag() -> CheckMode {
    CheckMode::Tag
}
fn default_reject() -> CheckMode {
    CheckMode::Reject
}
fn default_greylist_delay() -> u64 {
    300
}
fn default_greylist_window() -> u64 {
    2 * 86_400
}
fn default_greylist_allow() -> u64 {
    36 * 86_400
}
fn default_dns_budget_ms() -> u64 {
    2000
}

fn any(port: u16) -> Vec<SocketAddr> {
    vec![SocketAddr::from(([0, 0, 0, 0], port))]
}
fn default_smtp() -> Vec<SocketAddr> {
    any(25)
}
fn default_submission() -> Vec<SocketAddr> {
    any(587)
}
fn default_smtps() -> Vec<SocketAddr> {
    any(465)
}

/// `[imapd]`: IMAP and POP3.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Imapd {
    /// IMAP with STARTTLS (143).
    #[serde(default = "default_imap")]
    pub imap: Vec<SocketAddr>,
    /// IMAP with implicit TLS (993).
    #[serde(default = "default_imaps")]
    pub imaps: Vec<SocketAddr>,
    /// POP3 with STLS (110).
    #[serde(default = "default_pop3")]
    pub pop3: Vec<SocketAddr>,
    /// POP3 with implicit TLS (995).
    #[serde(default = "default_pop3s")]
    pub pop3s: Vec<SocketAddr>,
    /// Clients that may log in without TLS (plaintext LOGIN/USER/PASS/AUTHENTICATE PLAIN).
    /// Everyone else must use STARTTLS/STLS or the TLS ports first.
    #[serde(default = "default_trusted")]
    pub trusted_networks: Vec<IpNet>,
    /// Connections served at once (IMAP and POP3 together).
    #[serde(default = "default_imap_max_conns")]
    pub max_connections: usize,
    /// Connections from one IP address at once (IMAP and POP3 together);
    /// `trusted_networks` are exempt.
    #[serde(default = "default_imap_max_conns_ip")]
    pub max_connections_per_ip: usize,
    /// Connections not yet logged in, at once.
    #[serde(default = "default_imap_max_unauth")]
    pub max_unauthenticated: usize,
    /// Idle time of a logged-in session (RFC 9051 asks for at least 30 minutes).
    #[serde(default = "default_imap_idle")]
    pub idle_timeout_secs: u64,
    /// Time a client has to log in after connecting.
    #[serde(default = "default_imap_login_timeout")]
    pub login_timeout_secs: u64,
    /// Longest command line (without literals), in bytes.
    #[serde(default = "default_imap_max_command")]
    pub max_command_size: u32,
    /// Largest literal, in bytes; also the APPENDLIMIT.
    #[serde(default = "default_imap_max_literal")]
    pub max_literal_size: u32,
    /// Bytes a client may send before it has logged in (commands and literals together,
    /// per command); more closes the connection.
    #[serde(default = "default_imap_max_preauth")]
    pub max_preauth_command_size: u32,
    /// Failed logins in one connection before it is closed.
    #[serde(default = "default_imap_max_auth_failures")]
    pub max_auth_failures: u32,
}

impl Default for Imapd {
    fn default() -> Self {
        Self {
            imap: default_imap(),
            imaps: default_imaps(),
            pop3: default_pop3(),
            pop3s: default_pop3s(),
            trusted_networks: default_trusted(),
            max_connections: default_imap_max_conns(),
            max_connections_per_ip: default_imap_max_conns_ip(),
            max_unauthenticated: default_imap_max_unauth(),
            idle_timeout_secs: default_imap_idle(),
            login_timeout_secs: default_imap_login_timeout(),
            max_command_size: default_imap_max_command(),
            max_literal_size: default_imap_max_literal(),
            max_preauth_command_size: default_imap_max_preauth(),
            max_auth_failures: default_imap_max_auth_failures(),
        }
    }
}

fn default_imap_max_conns() -> usize {
    2000
}
fn default_imap_max_conns_ip() -> usize {
    50
}
fn default_imap_max_unauth() -> usize {
    200
}
fn default_imap_idle() -> u64 {
    30 * 60
}
fn default_imap_login_timeout() -> u64 {
    60
}
fn default_imap_max_command() -> u32 {
    64 * 1024
}
fn default_imap_max_literal() -> u32 {
    50 * 1024 * 1024
}
fn default_imap_max_preauth() -> u32 {
    8 * 1024
}
fn default_imap_max_auth_failures() -> u32 {
    3
}
fn default_imap() -> Vec<SocketAddr> {
    any(143)
}
fn default_imaps() -> Vec<SocketAddr> {
    any(993)
}
fn default_pop3() -> Vec<SocketAddr> {
    any(110)
}
fn default_pop3s() -> Vec<SocketAddr> {
    any(995)
}

/// `[autoconfig]`: a small HTTP listener in smtpd serving Thunderbird autoconfig
/// (`/mail/config-v1.1.xml`) and Outlook autodiscover (POX) for our domains.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Autoconfig {
    /// Plain-HTTP listeners (usually `0.0.0.0:80` behind or instead of a web server).
    /// Empty (the default) = off.
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
}

/// `[lmtp]`: the delivery agent.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Lmtp {
    /// The LMTP Unix socket (Postfix: `virtual_transport = lmtp:unix:/run/postern/lmtp`).
    #[serde(default = "default_lmtp_socket")]
    pub socket: SocketSpec,
    /// Optional TCP listeners (loopback or a private network only: LMTP has no auth).
    #[serde(default)]
    pub listen: Vec<SocketAddr>,
    /// Largest message accepted, in bytes (advertised with SIZE).
    #[serde(default = "default_lmtp_max_message")]
    pub max_message_size: u64,
    /// Recipients per transaction.
    #[serde(default = "default_lmtp_max_rcpts")]
    pub max_recipients: usize,
    /// Idle time before the session is closed with 421.
    #[serde(default = "default_lmtp_idle")]
    pub idle_timeout_secs: u64,
    /// Total time one session may last.
    #[serde(default = "default_lmtp_session")]
    pub session_timeout_secs: u64,
    /// Separator of plus-addressing: `user+folder@domain` files into `folder` when it exists.
    /// Empty switches it off.
    #[serde(default = "default_delimiter")]
    pub recipient_delimiter: String,
    /// Answer a full mailbox with `452 4.2.2` (retry later) instead of `552 5.2.2`.
    #[serde(default)]
    pub quota_full_tempfail: bool,
    /// Let plus-addressing file into special-use folders (Sent, Drafts, Trash, Junk,
    /// Archive and their usual other names). Off: such mail goes to INBOX, so a stranger
    /// cannot put mail where the user does not look for it, or where it is deleted.
    #[serde(default)]
    pub plus_address_special_use: bool,
    /// The user's active Sieve script (`%h` the home directory from the userdb, `%d`, `%n`, `%u`).
    /// The default is Pigeonhole's, so scripts carry over from Dovecot.
    #[serde(default = "default_sieve_script")]
    pub sieve_script: String,
    /// Where Sieve `redirect` and `vacation` hand new messages: `"control"` (smtpd's control
    /// socket, which marks them as forwarded: never DKIM-signed as their From: domain, SRS
    /// envelope sender), `"unix:/PATH"` (that control socket), or an SMTP server `host:port`
    /// (an MTA that relays for this host, e.g. Postfix with postsrsd). Unset: those actions
    /// are logged and the message is kept instead.
    #[serde(default)]
    pub submit_to: Option<String>,
    /// Connections served at once.
    #[serde(default = "default_lmtp_connections")]
    pub max_connections: usize,
}

impl Default for Lmtp {
    fn default() -> Self {
        Self {
            socket: default_lmtp_socket(),
            listen: Vec::new(),
            max_message_size: default_lmtp_max_message(),
            max_recipients: default_lmtp_max_rcpts(),
            idle_timeout_secs: default_lmtp_idle(),
            session_timeout_secs: default_lmtp_session(),
            recipient_delimiter: default_delimiter(),
            quota_full_tempfail: false,
            plus_address_special_use: false,
            sieve_script: default_sieve_script(),
            submit_to: None,
            max_connections: default_lmtp_connections(),
        }
    }
}

fn default_lmtp_socket() -> SocketSpec {
    SocketSpec::named("lmtp")
}
fn default_lmtp_max_message() -> u64 {
    50 * 1024 * 1024
}
fn default_lmtp_max_rcpts() -> usize {
    1000
}
fn default_lmtp_idle() -> u64 {
    300
}
fn default_lmtp_session() -> u64 {
    3600
}
fn default_delimiter() -> String {
    "+".to_owned()
}
fn default_sieve_script() -> String {
    "%h/.dovecot.sieve".to_owned()
}
fn default_lmtp_connections() -> usize {
    256
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        let base = std::fs::canonicalize(&base).unwrap_or(base);
        Self::parse(&text, &base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.base_dir = base_dir.to_owned();
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let h = self.hostname.trim();
        if h.is_empty() || h.contains(char::is_whitespace) {
            return Err(ConfigError::Invalid(
                "hostname must be a host name without spaces".into(),
            ));
        }
        for s in [
            &self.authd.auth_socket,
            &self.authd.userdb_socket,
            &self.authd.socketmap_socket,
            &self.lmtp.socket,
            &self.smtpd.control_socket,
        ] {
            s.mode_bits()?;
        }
        if self.authd.max_line < 1024 {
            return Err(ConfigError::Invalid(
                "authd.max_line must be at least 1024".into(),
            ));
        }
        let scheme = self.database.url.split(':').next().unwrap_or("");
        if !matches!(
            scheme,
            "sqlite" | "postgres" | "postgresql" | "mysql" | "mariadb"
        ) {
            return Err(ConfigError::Invalid(format!(
                "database.url must start with sqlite:, postgres:, or mysql: (got {scheme:?})"
            )));
        }
        if self.smtpd.relayhost_auth_user.is_some() != self.smtpd.relayhost_password_file.is_some()
        {
            return Err(ConfigError::Invalid(
                "smtpd.relayhost_auth_user and smtpd.relayhost_password_file go together".into(),
            ));
        }
        for (domain, t) in &self.smtpd.transports {
            let ok = t
                .strip_prefix("smtp:")
                .or_else(|| t.strip_prefix("lmtp:"))
                .is_some_and(|rest| {
                    rest.starts_with("unix:/")
                        || rest
                            .rsplit_once(':')
                            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
                });
            if !ok || t.starts_with("smtp:unix:") {
                return Err(ConfigError::Invalid(format!(
                    "smtpd.transports: {domain} = {t:?}: expected smtp:HOST:PORT, lmtp:HOST:PORT or lmtp:unix:/PATH"
                )));
            }
        }
        if self.passwords.min_length < 6 {
            return Err(ConfigError::Invalid(
                "passwords.min_length below 6 is not allowed".into(),
            ));
        }
        Ok(())
    }

    /// A path from the config, made absolute against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    /// The run directory, absolute.
    pub fn run_dir(&self) -> PathBuf {
        self.resolve(&self.paths.run_dir)
    }

    /// The Maildir root, absolute.
    pub fn mail_root(&self) -> PathBuf {
        self.resolve(&self.paths.mail_root)
    }

    /// The state directory, absolute.
    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.paths.state_dir)
    }

    /// The DKIM key directory, absolute (`[dkim] key_dir`, or `<state_dir>/dkim`).
    pub fn dkim_key_dir(&self) -> PathBuf {
        match &self.dkim.key_dir {
            Some(d) => self.resolve(d),
            None => self.state_dir().join("dkim"),
        }
    }

    /// The TLS policy for mail to `domain` (`[smtpd] tls_policy`, else `outbound_tls`).
    pub fn tls_policy_for(&self, domain: &str) -> TlsPolicy {
        self.explicit_tls_policy(domain)
            .unwrap_or(self.smtpd.outbound_tls)
    }

    /// The `[smtpd] tls_policy` entry for `domain`, if there is one.
    pub fn explicit_tls_policy(&self, domain: &str) -> Option<TlsPolicy> {
        let d = domain.trim_end_matches('.');
        self.smtpd
            .tls_policy
            .iter()
            .find(|(k, _)| k.trim_end_matches('.').eq_ignore_ascii_case(d))
            .map(|(_, p)| *p)
    }

    /// The home directory template of userdb replies (`[authd.userdb] home`, or
    /// `<mail_root>/%d/%n`).
    pub fn home_template(&self) -> String {
        self.authd
            .userdb
            .home
            .clone()
            .unwrap_or_else(|| format!("{}/%d/%n", self.mail_root().display()))
    }

    /// The mail location template of userdb replies (`[authd.userdb] mail`, or
    /// `maildir:<mail_root>/%d/%n/Maildir`).
    pub fn mail_template(&self) -> String {
        self.authd
            .userdb
            .mail
            .clone()
            .unwrap_or_else(|| format!("maildir:{}/%d/%n/Maildir", self.mail_root().display()))
    }

    /// The active Sieve script of `address` whose home is `home`.
    pub fn sieve_script_path(&self, address: &str, home: &str) -> PathBuf {
        PathBuf::from(expand_template_home(
            &self.lmtp.sieve_script,
            address,
            Some(home),
        ))
    }

    /// A socket's path, absolute (relative ones live in the run directory).
    pub fn socket_path(&self, s: &SocketSpec) -> PathBuf {
        if s.path.is_absolute() {
            s.path.clone()
        } else {
            self.run_dir().join(&s.path)
        }
    }

    /// The database URL with the secret filled in and a relative SQLite path made absolute.
    pub fn database_url(&self) -> Result<String, ConfigError> {
        let mut url = self.database.url.clone();
        let sqlite_path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"));
        if let Some(rest) = sqlite_path.filter(|r| !r.starts_with('/') && !r.starts_with(':')) {
            url = format!("sqlite://{}", self.base_dir.join(rest).display());
        }
        let secret = match std::env::var("POSTERN_DB_PASSWORD") {
            Ok(s) if !s.is_empty() => Some(s),
            _ => match &self.database.password_file {
                Some(f) => {
                    let f = self.resolve(f);
                    let text = std::fs::read_to_string(&f).map_err(|source| ConfigError::Read {
                        path: f.clone(),
                        source,
                    })?;
                    Some(text.lines().next().unwrap_or("").to_owned())
                }
                None => None,
            },
        };
        if let Some(secret) = secret {
            url = with_password(&url, &secret)?;
        }
        Ok(url)
    }
}

/// Puts `secret` (percent-encoded) as the password into a `scheme://user[:pw]@host/…` URL.
fn with_password(url: &str, secret: &str) -> Result<String, ConfigError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| ConfigError::Invalid("database.url has no ://".into()))?;
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let (userinfo, host) = authority.rsplit_once('@').ok_or_else(|| {
        ConfigError::Invalid("database.url needs a user (user@host) to take a password".into())
    })?;
    let user = userinfo.split(':').next().unwrap_or("");
    let mut enc = String::new();
    for b in secret.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            enc.push(b as char);
        } else {
            enc.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("{scheme}://{user}:{enc}@{host}{tail}"))
}

/// Expands Dovecot-style placeholders in a path template: `%u` address, `%n` local part,
/// `%d` domain, `%%` a percent sign. Unknown `%x` stays as it is.
pub fn expand_template(template: &str, address: &str) -> String {
    expand_template_home(template, address, None)
}

/// Like [`expand_template`], with `%h` the home directory when given.
pub fn expand_template_home(template: &str, address: &str, home: Option<&str>) -> String {
    let (local, domain) = address.rsplit_once('@').unwrap_or((address, ""));
    let mut out = String::with_capacity(template.len() + address.len());
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('u') => out.push_str(address),
            Some('n') => out.push_str(local),
            Some('d') => out.push_str(domain),
            Some('h') => out.push_str(home.unwrap_or("%h")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(
            "hostname = \"mail.example.org\"\n",
            Path::new("/etc/postern"),
        )
        .unwrap();
        assert_eq!(c.authd.auth_socket.path, PathBuf::from("auth"));
        assert_eq!(
            c.socket_path(&c.authd.userdb_socket),
            PathBuf::from("/run/postern/auth-userdb")
        );
        assert_eq!(c.authd.auth_socket.mode_bits().unwrap(), 0o660);
        assert_eq!(c.smtpd.listen[0].port(), 25);
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = Config::parse(
            "hostname = \"m\"\n[authd]\nauth_sockt = 1\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("auth_sockt"), "{e}");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let c = Config::parse(
            "hostname = \"m.example\"\n[paths]\nrun_dir = \"run\"\n[database]\nurl = \"sqlite://postern.db\"\n",
            Path::new("/srv/p"),
        )
        .unwrap();
        assert_eq!(c.run_dir(), PathBuf::from("/srv/p/run"));
        assert_eq!(c.database_url().unwrap(), "sqlite:///srv/p/postern.db");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(Config::parse("hostname = \"\"\n", Path::new("/")).is_err());
        assert!(
            Config::parse(
                "hostname = \"m\"\n[database]\nurl = \"oracle://x\"\n",
                Path::new("/")
            )
            .is_err()
        );
        assert!(
            Config::parse(
                "hostname = \"m\"\n[authd.auth_socket]\npath = \"a\"\nmode = \"999\"\n",
                Path::new("/")
            )
            .is_err()
        );
    }

    #[test]
    fn password_goes_into_url_encoded() {
        assert_eq!(
            with_password("postgres://postern@db.local:5432/mail", "p@ss word").unwrap(),
            "postgres://postern:p%40ss%20word@db.local:5432/mail"
        );
        assert!(with_password("postgres://db.local/mail", "x").is_err());
    }

    #[test]
    fn deploy_example_parses() {
        let text = include_str!("../../../deploy/postern.toml");
        let c = Config::parse(text, Path::new("/etc/postern")).unwrap();
        assert_eq!(c.hostname, "mail.example.org");
        assert_eq!(c.smtpd.listen.len(), 2);
        assert!(c.autoconfig.listen.is_empty());
        // The commented postfix_accounts example, uncommented, parses too.
        let uncommented: String = text
            .lines()
            .map(|l| {
                l.strip_prefix("# ")
                    .filter(|r| {
                        r.starts_with("[database.queries]")
                            || r.starts_with("domain  =")
                            || r.starts_with("account =")
                            || r.starts_with("alias   =")
                            || r.starts_with("list    =")
                    })
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::parse(&uncommented, Path::new("/etc/postern")).unwrap();
        assert!(
            c.database
                .queries
                .account
                .as_deref()
                .unwrap()
                .contains("accounts_table")
        );
    }

    #[test]
    fn outbound_settings() {
        let c = Config::parse(
            "hostname = \"m.example\"\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n[smtpd]\nouthound = 1\n",
            Path::new("/"),
        );
        assert!(c.is_err());
        let c = Config::parse(
            concat!(
                "hostname = \"m.example\"\n[dns]\nnameservers = [\"127.0.0.1:5353\"]\n",
                "[smtpd]\noutbound_port = 2525\n",
                "[smtpd.transports]\n\"lists.example\" = \"smtp:[::1]:26\"\n\"b.example\" = \"lmtp:unix:/run/x\"\n",
                "[smtpd.tls_policy]\n\"Bank.Example\" = \"verify\"\n",
            ),
            Path::new("/srv"),
        )
        .unwrap();
        assert_eq!(c.dns.nameservers[0].port(), 5353);
        assert_eq!(c.smtpd.outbound_port, 2525);
        assert_eq!(c.tls_policy_for("bank.example."), TlsPolicy::Verify);
        assert_eq!(c.tls_policy_for("other.example"), TlsPolicy::May);
        assert_eq!(c.dkim_key_dir(), PathBuf::from("/var/lib/postern/dkim"));
        for bad in ["smtp:nohost", "ftp:h:1", "smtp:unix:/x", "lmtp:h:port"] {
            let text = format!("hostname = \"m\"\n[smtpd.transports]\n\"a.example\" = \"{bad}\"\n");
            assert!(Config::parse(&text, Path::new("/")).is_err(), "{bad}");
        }
        let half = "hostname = \"m\"\n[smtpd]\nrelayhost_auth_user = \"u\"\n";
        assert!(Config::parse(half, Path::new("/")).is_err());
    }

    #[test]
    fn autoconfig_section() {
        let c = Config::parse(
            "hostname = \"m\"\n[autoconfig]\nlisten = [\"127.0.0.1:8080\", \"[::1]:80\"]\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.autoconfig.listen.len(), 2);
        assert_eq!(c.autoconfig.listen[0].port(), 8080);
        let c = Config::parse("hostname = \"m\"\n", Path::new("/")).unwrap();
        assert!(c.autoconfig.listen.is_empty());
        let bad = "hostname = \"m\"\n[autoconfig]\nport = 80\n";
        assert!(Config::parse(bad, Path::new("/")).is_err());
    }

    #[test]
    fn templates_expand() {
        assert_eq!(
            expand_template("/v/%d/%n/Maildir", "al@ex.org"),
            "/v/ex.org/al/Maildir"
        );
        assert_eq!(expand_template("%u %% %x", "a@b"), "a@b % %x");
        assert_eq!(
            expand_template_home("%h/.dovecot.sieve", "a@b", Some("/v/b/a")),
            "/v/b/a/.dovecot.sieve"
        );
        assert_eq!(expand_template("%h/x", "a@b"), "%h/x");
    }
}
