//! `[lmtp]`: the delivery agent.

use std::net::SocketAddr;
use std::num::NonZeroUsize;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration::count;
use crate::{Seconds, SocketSpec};

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
    /// Networks allowed to connect to the TCP listeners (the cluster's front nodes);
    /// others are refused with `554` before anything is read. Empty: loopback only.
    #[serde(default)]
    pub allow_networks: Vec<IpNet>,
    /// Largest message accepted, in bytes (advertised with SIZE).
    #[serde(default = "default_lmtp_max_message")]
    pub max_message_size: u64,
    /// Recipients per transaction.
    #[serde(default = "default_lmtp_max_rcpts")]
    pub max_recipients: usize,
    /// Idle time before the session is closed with 421.
    #[serde(default = "default_lmtp_idle")]
    pub idle_timeout_secs: Seconds<1>,
    /// Total time one session may last.
    #[serde(default = "default_lmtp_session")]
    pub session_timeout_secs: Seconds<1>,
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
    #[serde(
        default = "default_lmtp_connections",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub max_connections: NonZeroUsize,
    /// Prometheus metrics: `GET /metrics` over HTTP on this address (loopback or a private
    /// network: no authentication). Unset (the default) = off.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Lmtp {
    fn default() -> Self {
        Self {
            socket: default_lmtp_socket(),
            listen: Vec::new(),
            allow_networks: Vec::new(),
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
            metrics_listen: None,
        }
    }
}

impl Lmtp {
    /// True when `ip` may connect to the TCP listeners: one of `allow_networks`, or
    /// loopback when that list is empty.
    pub fn tcp_client_allowed(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
            v4 => v4,
        };
        if self.allow_networks.is_empty() {
            return ip.is_loopback();
        }
        self.allow_networks.iter().any(|n| n.contains(&ip))
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
fn default_lmtp_idle() -> Seconds<1> {
    Seconds::new(300)
}
fn default_lmtp_session() -> Seconds<1> {
    Seconds::new(3600)
}
fn default_delimiter() -> String {
    "+".to_owned()
}
fn default_sieve_script() -> String {
    "%h/.dovecot.sieve".to_owned()
}
fn default_lmtp_connections() -> NonZeroUsize {
    count(256)
}
