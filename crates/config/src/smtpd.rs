//! `[smtpd]` and `[[smtpd.access]]`: the MTA.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration::count;
use crate::{Seconds, SocketSpec, TlsPolicy, any, default_true};

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
    /// Prometheus metrics: `GET /metrics` over HTTP on this address (loopback or a private
    /// network: no authentication). Unset (the default) = off.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
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
    #[serde(
        default = "default_smtp_max_conns",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub max_connections: NonZeroUsize,
    /// Connections at once on the submission doors (`submission` and `submissions`, 587 and
    /// 465), a budget of their own so that strangers on port 25 cannot lock users out.
    #[serde(
        default = "default_smtp_max_submission_conns",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub max_submission_connections: NonZeroUsize,
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
    pub idle_timeout_secs: Seconds<1>,
    /// Total time one session may last.
    #[serde(default = "default_smtp_session")]
    pub session_timeout_secs: Seconds<1>,
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
    /// DANE (RFC 7672) for MX delivery: `auto` uses the TLSA records of MX hosts when the
    /// name servers (all on loopback) validate DNSSEC and say so with the AD bit; `off`.
    #[serde(default)]
    pub dane: DaneMode,
    /// Outbound SMTP connections at once, to all destinations.
    #[serde(
        default = "default_outbound_concurrency",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub outbound_concurrency: NonZeroUsize,
    /// Outbound SMTP connections at once to one destination (domain, or the relayhost).
    #[serde(
        default = "default_destination_concurrency",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub outbound_destination_concurrency: NonZeroUsize,
    /// How long an idle outbound connection is kept for the next message to the same place.
    #[serde(default = "default_outbound_cache")]
    pub outbound_connection_cache_secs: Seconds,
    /// Outbound timeouts: making the TCP connection.
    #[serde(default = "default_out_connect")]
    pub outbound_connect_timeout_secs: Seconds<1>,
    /// Outbound timeouts: the greeting and the EHLO/STARTTLS/AUTH replies.
    #[serde(default = "default_out_greeting")]
    pub outbound_greeting_timeout_secs: Seconds<1>,
    /// Outbound timeouts: the reply to each of MAIL, RCPT, DATA, RSET, QUIT.
    #[serde(default = "default_out_command")]
    pub outbound_command_timeout_secs: Seconds<1>,
    /// Outbound timeouts: writing each 64 KiB block of the message.
    #[serde(default = "default_out_data")]
    pub outbound_data_timeout_secs: Seconds<1>,
    /// Outbound timeouts: the reply after the end of the message.
    #[serde(default = "default_out_final")]
    pub outbound_final_timeout_secs: Seconds<1>,
    /// Messages one authenticated user may submit per hour (0: no limit); more get
    /// `450 4.7.1` at MAIL until the hour has room again.
    #[serde(default = "default_user_hourly")]
    pub max_messages_per_hour_per_user: u32,
    /// Where the hourly sending limit and greylisting keep their state: `local` (this
    /// smtpd's memory and `<state_dir>/greylist`), `directory` (the shared database, through
    /// authd's `socketmap` socket, so every cluster front counts alike; on a directory failure
    /// the local state answers), `auto` (directory on a cluster member, `[proxy] self` set).
    #[serde(default)]
    pub shared_policy: SharedPolicyStore,
    /// The tokio runtime smtpd runs on: `current` (one thread runs every session; blocking
    /// work on the blocking pool: fewer wake-ups and context switches per message) or `multi`
    /// (a worker per core: TLS handshakes, DKIM and other CPU work spread over all cores).
    #[serde(default)]
    pub runtime: SmtpdRuntime,
    /// Recipients per message for authenticated users (0: only `max_recipients` applies);
    /// more get `452 4.5.3` at RCPT.
    #[serde(default = "default_user_rcpts")]
    pub max_recipients_per_message_per_user: usize,
    /// Messages in the queue at most (0: no limit); beyond it MAIL gets `452 4.3.1`.
    #[serde(default = "default_max_queue")]
    pub max_queue_messages: usize,
    /// Shortest and longest wait between delivery attempts.
    #[serde(default = "default_min_backoff")]
    pub min_backoff_secs: Seconds,
    /// Longest wait between delivery attempts.
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: Seconds,
    /// How long a message may stay queued before it is bounced.
    #[serde(default = "default_lifetime")]
    pub max_queue_lifetime_secs: Seconds,
    /// Send a delay warning after this long.
    #[serde(default = "default_delay_warning")]
    pub delay_warning_secs: Seconds,
    /// Delivery attempts running at once (local and remote together).
    #[serde(
        default = "default_delivery_concurrency",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub delivery_concurrency: NonZeroUsize,
    /// LMTP transactions to the local delivery agent at once. Local deliveries are short and
    /// disk-bound: a few at a time deliver faster than many fighting over the disk and CPU,
    /// and leave room for receiving.
    #[serde(
        default = "default_lmtp_concurrency",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub lmtp_concurrency: NonZeroUsize,
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
    /// Where mail for the postmaster goes (RFC 5321 §4.5.1): `RCPT TO:<postmaster>`, and
    /// `postmaster@` our hostname or any local domain without an alias or mailbox of its own
    /// for it. Unset: only such aliases (`mailctl domain add` makes them) take it.
    #[serde(default)]
    pub postmaster: Option<String>,
    /// Where mail for `abuse@` a local domain without an alias of its own goes (RFC 2142;
    /// default: `postmaster`).
    #[serde(default)]
    pub abuse: Option<String>,
    /// Accept `abuse@` every local domain (off: only where an alias or mailbox exists).
    #[serde(default = "default_true")]
    pub accept_abuse: bool,
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

/// Where smtpd keeps its sending counts and greylist (`[smtpd] shared_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SharedPolicyStore {
    /// `directory` on a cluster member (`[proxy] self` set), else `local`.
    #[default]
    Auto,
    /// This node's memory and `<state_dir>/greylist`.
    Local,
    /// The shared directory database, through authd.
    Directory,
}

/// The tokio runtime smtpd runs on (`[smtpd] runtime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpdRuntime {
    /// One thread for every task, plus the blocking pool.
    #[default]
    Current,
    /// Work-stealing, one worker thread per core.
    Multi,
}

/// DANE for outbound SMTP (`[smtpd] dane`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DaneMode {
    /// TLSA records of DNSSEC-secure MX hosts make authenticated TLS mandatory, when the
    /// configured name servers are on loopback (a local validating resolver).
    #[default]
    Auto,
    /// TLSA records are never looked up.
    Off,
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
            metrics_listen: None,
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
            dane: DaneMode::Auto,
            outbound_concurrency: default_outbound_concurrency(),
            outbound_destination_concurrency: default_destination_concurrency(),
            outbound_connection_cache_secs: default_outbound_cache(),
            outbound_connect_timeout_secs: default_out_connect(),
            outbound_greeting_timeout_secs: default_out_greeting(),
            outbound_command_timeout_secs: default_out_command(),
            outbound_data_timeout_secs: default_out_data(),
            outbound_final_timeout_secs: default_out_final(),
            max_messages_per_hour_per_user: default_user_hourly(),
            shared_policy: SharedPolicyStore::default(),
            runtime: SmtpdRuntime::default(),
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
            postmaster: None,
            abuse: None,
            accept_abuse: true,
        }
    }
}

pub(crate) fn default_trusted() -> Vec<IpNet> {
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
fn default_smtp_max_conns() -> NonZeroUsize {
    count(500)
}
fn default_smtp_max_submission_conns() -> NonZeroUsize {
    count(200)
}
fn default_smtp_max_conns_ip() -> usize {
    20
}
fn default_smtp_idle() -> Seconds<1> {
    Seconds::new(300)
}
fn default_smtp_session() -> Seconds<1> {
    Seconds::new(3600)
}
fn default_smtp_errors() -> u32 {
    20
}
fn default_min_backoff() -> Seconds {
    Seconds::new(300)
}
fn default_max_backoff() -> Seconds {
    Seconds::new(3600)
}
fn default_lifetime() -> Seconds {
    Seconds::new(5 * 86400)
}
fn default_delay_warning() -> Seconds {
    Seconds::new(4 * 3600)
}
fn default_lmtp_concurrency() -> NonZeroUsize {
    count(4)
}
fn default_delivery_concurrency() -> NonZeroUsize {
    count(20)
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
fn default_outbound_concurrency() -> NonZeroUsize {
    count(100)
}
fn default_destination_concurrency() -> NonZeroUsize {
    count(20)
}
fn default_outbound_cache() -> Seconds {
    Seconds::new(10)
}
fn default_out_connect() -> Seconds<1> {
    Seconds::new(30)
}
fn default_out_greeting() -> Seconds<1> {
    Seconds::new(300)
}
fn default_out_command() -> Seconds<1> {
    Seconds::new(300)
}
fn default_out_data() -> Seconds<1> {
    Seconds::new(180)
}
fn default_out_final() -> Seconds<1> {
    Seconds::new(600)
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

fn default_smtp() -> Vec<SocketAddr> {
    any(25)
}
fn default_submission() -> Vec<SocketAddr> {
    any(587)
}
fn default_smtps() -> Vec<SocketAddr> {
    any(465)
}
