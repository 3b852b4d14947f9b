//! `[authd]`, `[authd.userdb]` and `[authd.lockout]`: the directory daemon.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{Millis, Seconds, SocketSpec};

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
    pub idle_timeout_secs: Seconds<1>,
    /// Password checks (hash computations such as argon2, 19 MiB each) at once; more wait in
    /// line. 0: one per CPU core.
    #[serde(default)]
    pub hash_concurrency: usize,
    /// How long a login waits in that line before it is answered with a temporary failure.
    #[serde(default = "default_hash_queue_timeout_ms")]
    pub hash_queue_timeout_ms: Millis<1>,
    /// A failed login is never answered sooner than this after it arrived, so unknown users,
    /// accounts with fast legacy hashes and argon2 accounts cannot be told apart by timing.
    #[serde(default = "default_failure_delay_ms")]
    pub failure_delay_ms: Millis,
    /// How long socketmap and userdb answers are cached (0: not at all). Changes made with
    /// `mailctl` are seen at once (the directory's change stamp); changes made behind its back
    /// (SQL by hand, another node on a shared database) within this time. authd and its
    /// clients (smtpd, lmtp-deliver) each keep an answer for half of it.
    #[serde(default = "default_cache_ttl_secs")]
    pub cache_ttl_secs: Seconds,
    /// Prometheus metrics: `GET /metrics` over HTTP on this address (loopback or a private
    /// network: no authentication). Unset (the default) = off.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
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
            cache_ttl_secs: default_cache_ttl_secs(),
            metrics_listen: None,
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
fn default_cache_ttl_secs() -> Seconds {
    Seconds::new(10)
}
fn default_max_line() -> usize {
    16384
}
fn default_idle_secs() -> Seconds<1> {
    Seconds::new(600)
}
fn default_hash_queue_timeout_ms() -> Millis<1> {
    Millis::new(5000)
}
fn default_failure_delay_ms() -> Millis {
    Millis::new(1000)
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
