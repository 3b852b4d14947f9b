//! `[imapd]`: IMAP and POP3.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::duration::{count, count_u32};
use crate::smtpd::default_trusted;
use crate::{Seconds, any};

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
    /// Front nodes (issue 14 proxies) whose word on the real client is believed: their IMAP
    /// `ID ("x-originating-ip" …)` and POP3 `XCLIENT ADDR=…`, as Dovecot's
    /// `login_trusted_networks`. authd then sees (and locks out) the client, not the proxy.
    /// They are exempt from `max_connections_per_ip`. Empty (the default): nobody.
    #[serde(default)]
    pub proxy_networks: Vec<IpNet>,
    /// Connections served at once (IMAP and POP3 together).
    #[serde(
        default = "default_imap_max_conns",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub max_connections: NonZeroUsize,
    /// Connections from one IP address at once (IMAP and POP3 together);
    /// `trusted_networks` are exempt.
    #[serde(default = "default_imap_max_conns_ip")]
    pub max_connections_per_ip: usize,
    /// Connections not yet logged in, at once.
    #[serde(
        default = "default_imap_max_unauth",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub max_unauthenticated: NonZeroUsize,
    /// Idle time of a logged-in session (RFC 9051 asks for at least 30 minutes).
    #[serde(default = "default_imap_idle")]
    pub idle_timeout_secs: Seconds<60>,
    /// Time a client has to log in after connecting.
    #[serde(default = "default_imap_login_timeout")]
    pub login_timeout_secs: Seconds<1>,
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
    #[serde(
        default = "default_imap_max_auth_failures",
        deserialize_with = "crate::duration::at_least_one_u32"
    )]
    pub max_auth_failures: NonZeroU32,
    /// ManageSieve (RFC 5804, STARTTLS) listeners, usually port 4190. Empty (the default) = off.
    #[serde(default)]
    pub managesieve_listen: Vec<SocketAddr>,
    /// Prometheus metrics: `GET /metrics` over HTTP on this address (loopback or a private
    /// network: no authentication). Unset (the default) = off.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Largest Sieve script ManageSieve accepts, in bytes (at most 1 MiB, what lmtp-deliver reads).
    #[serde(default = "default_managesieve_max_script_size")]
    pub managesieve_max_script_size: u32,
    /// Most Sieve scripts one user may keep through ManageSieve.
    #[serde(default = "default_managesieve_max_scripts")]
    pub managesieve_max_scripts: u32,
    /// METADATA (RFC 5464) server entry `/shared/admin`: how to reach the administrator
    /// (a URI such as `mailto:postmaster@example.org`). Unset: `mailto:` and
    /// `[smtpd] postmaster` when that is set, else no entry.
    #[serde(default)]
    pub metadata_admin: Option<String>,
    /// METADATA server entry `/shared/comment`: a note about the server. Unset = no entry.
    #[serde(default)]
    pub metadata_comment: Option<String>,
}

impl Default for Imapd {
    fn default() -> Self {
        Self {
            imap: default_imap(),
            imaps: default_imaps(),
            pop3: default_pop3(),
            pop3s: default_pop3s(),
            trusted_networks: default_trusted(),
            proxy_networks: Vec::new(),
            max_connections: default_imap_max_conns(),
            max_connections_per_ip: default_imap_max_conns_ip(),
            max_unauthenticated: default_imap_max_unauth(),
            idle_timeout_secs: default_imap_idle(),
            login_timeout_secs: default_imap_login_timeout(),
            max_command_size: default_imap_max_command(),
            max_literal_size: default_imap_max_literal(),
            max_preauth_command_size: default_imap_max_preauth(),
            max_auth_failures: default_imap_max_auth_failures(),
            managesieve_listen: Vec::new(),
            metrics_listen: None,
            managesieve_max_script_size: default_managesieve_max_script_size(),
            managesieve_max_scripts: default_managesieve_max_scripts(),
            metadata_admin: None,
            metadata_comment: None,
        }
    }
}

fn default_imap_max_conns() -> NonZeroUsize {
    count(2000)
}
fn default_imap_max_conns_ip() -> usize {
    50
}
fn default_imap_max_unauth() -> NonZeroUsize {
    count(200)
}
fn default_imap_idle() -> Seconds<60> {
    Seconds::new(30 * 60)
}
fn default_imap_login_timeout() -> Seconds<1> {
    Seconds::new(60)
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
fn default_imap_max_auth_failures() -> NonZeroU32 {
    count_u32(3)
}
fn default_managesieve_max_script_size() -> u32 {
    1024 * 1024
}
fn default_managesieve_max_scripts() -> u32 {
    100
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
