//! `[proxy]`: where users live in a cluster, and how front nodes reach the backends.
//!
//! Each account has a `host` (Dovecot's passdb/userdb field): empty means "this node".
//! An account whose host is empty or equal to [`Proxy::self_name`] is local; any other
//! host is a backend this node proxies to (IMAP/POP3) or routes mail to (LMTP).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;

use serde::{Deserialize, Serialize};

use crate::Seconds;

/// TLS on the hop from a front node to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HopTls {
    /// Plain text (a private network between the nodes).
    #[default]
    None,
    /// STARTTLS when the backend offers it, any certificate; plain text otherwise.
    May,
    /// TLS required, with a certificate valid for the backend's host name and issued by
    /// `ca_file` (else the attempt fails temporarily).
    Verify,
}

/// Whether smtpd's queue manager asks authd where each local recipient lives (`transport`)
/// and sends a remote account's mail straight to its backend. Without, local mail goes to
/// this node's lmtp-deliver, whose LMTP proxy forwards it (one hop more, no lookup more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpdRouting {
    /// On a cluster member (`self` is set), or when `[smtpd] lmtp` names the delivery agent
    /// (which may not be Postern's lmtp-deliver); off on a single node.
    #[default]
    Auto,
    /// Always (a front node where nobody lives, so with `self` empty).
    Always,
    /// Never: lmtp-deliver's proxy forwards every remote account's mail.
    Never,
}

/// `[proxy]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    /// This node's name as accounts' `host` names it. Accounts whose host is empty or
    /// equal to it (ignoring ASCII case) are served here; others are proxied. Empty (the
    /// default): only accounts with an empty host are local.
    #[serde(default, rename = "self")]
    pub self_name: String,
    /// The backends' LMTP port (lmtp-deliver's `[lmtp] listen`).
    #[serde(default = "default_lmtp_port")]
    pub lmtp_port: u16,
    /// The backends' IMAP port.
    #[serde(default = "default_imap_port")]
    pub imap_port: u16,
    /// The backends' POP3 port.
    #[serde(default = "default_pop3_port")]
    pub pop3_port: u16,
    /// The backends' ManageSieve port.
    #[serde(default = "default_managesieve_port")]
    pub managesieve_port: u16,
    /// TLS towards the backends.
    #[serde(default)]
    pub tls: HopTls,
    /// PEM CA certificates the backends' certificates must chain to (`tls = "verify"`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Making a connection to a backend.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: Seconds<1>,
    /// Silence on a proxied connection before it is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: Seconds<1>,
    /// Routing in smtpd's queue manager (see [`SmtpdRouting`]).
    #[serde(default)]
    pub smtpd_routing: SmtpdRouting,
    /// Where imapd receives mailboxes moved here (`mailctl user move`), e.g.
    /// `"0.0.0.0:24244"`; empty (the default): no receiver.
    #[serde(default)]
    pub move_listen: String,
    /// The port `mailctl user move` connects to on the destination node.
    #[serde(default = "default_move_port")]
    pub move_port: u16,
    /// The shared secret of the move protocol (the same file on every node, mode 0600 or
    /// stricter, at least 32 bytes); required when `move_listen` is set. Empty: unset.
    #[serde(default)]
    pub move_secret_file: PathBuf,
    /// Peers allowed to connect to `move_listen`; empty (the default): loopback only.
    #[serde(default)]
    pub move_networks: Vec<IpNet>,
}

impl Default for Proxy {
    fn default() -> Self {
        Self {
            self_name: String::new(),
            lmtp_port: default_lmtp_port(),
            imap_port: default_imap_port(),
            pop3_port: default_pop3_port(),
            managesieve_port: default_managesieve_port(),
            tls: HopTls::None,
            ca_file: None,
            connect_timeout_secs: default_connect_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            smtpd_routing: SmtpdRouting::Auto,
            move_listen: String::new(),
            move_port: default_move_port(),
            move_secret_file: PathBuf::new(),
            move_networks: Vec::new(),
        }
    }
}

fn default_lmtp_port() -> u16 {
    24
}
fn default_imap_port() -> u16 {
    143
}
fn default_pop3_port() -> u16 {
    110
}
fn default_managesieve_port() -> u16 {
    4190
}
fn default_move_port() -> u16 {
    24244
}
fn default_connect_timeout() -> Seconds<1> {
    Seconds::new(10)
}
fn default_idle_timeout() -> Seconds<1> {
    Seconds::new(1800)
}

impl Proxy {
    /// The backend an account with this `host` lives on: `None` when it is local (empty,
    /// or this node's own name).
    pub fn remote_host<'a>(&self, host: &'a str) -> Option<&'a str> {
        let host = host.trim();
        if host.is_empty() || host.eq_ignore_ascii_case(self.self_name.trim()) {
            None
        } else {
            Some(host)
        }
    }

    /// The backend port for a Dovecot service name (`imap`, `pop3`, `lmtp`, `sieve`).
    pub fn port_for(&self, service: &str) -> Option<u16> {
        match service {
            "imap" => Some(self.imap_port),
            "pop3" => Some(self.pop3_port),
            "lmtp" => Some(self.lmtp_port),
            "sieve" | "managesieve" => Some(self.managesieve_port),
            _ => None,
        }
    }

    /// The move receiver's address (`move_listen`), `None` when it is off. Checked by the
    /// config's validation.
    pub fn move_listen_addr(&self) -> Option<SocketAddr> {
        let l = self.move_listen.trim();
        if l.is_empty() { None } else { l.parse().ok() }
    }

    /// The move secret's path as written (`None` when unset); relative to the config file's
    /// directory, like every path (`Config::resolve`).
    pub fn move_secret_path(&self) -> Option<&Path> {
        (!self.move_secret_file.as_os_str().is_empty()).then_some(self.move_secret_file.as_path())
    }

    /// Whether a peer at `ip` may connect to the move receiver: one of `move_networks`, or
    /// loopback when that list is empty (IPv4-mapped IPv6 counts as IPv4).
    pub fn move_peer_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        if self.move_networks.is_empty() {
            return ip.is_loopback();
        }
        self.move_networks.iter().any(|n| n.contains(&ip))
    }

    pub(crate) fn validate(&self) -> Result<(), crate::ConfigError> {
        let l = self.move_listen.trim();
        if !l.is_empty() {
            if l.parse::<SocketAddr>().is_err() {
                return Err(crate::ConfigError::Invalid(format!(
                    "proxy.move_listen = {l:?}: expected ADDRESS:PORT, e.g. \"0.0.0.0:24244\""
                )));
            }
            if self.move_secret_path().is_none() {
                return Err(crate::ConfigError::Invalid(
                    "proxy.move_listen needs proxy.move_secret_file (the nodes' shared secret)"
                        .into(),
                ));
            }
        }
        let s = self.self_name.trim();
        if !s.is_empty() && !valid_host(s) {
            return Err(crate::ConfigError::Invalid(format!(
                "proxy.self = {s:?}: expected a host name or IP address"
            )));
        }
        if self.tls == HopTls::Verify && self.ca_file.is_none() {
            return Err(crate::ConfigError::Invalid(
                "proxy.tls = \"verify\" needs proxy.ca_file".into(),
            ));
        }
        Ok(())
    }
}

/// True for a value usable as an account's `host`: a host name, an IPv4 address or an
/// IPv6 address (without brackets); at most 253 characters, nothing that could break the
/// protocols it is written into (tabs, spaces, brackets, colons in a name).
pub fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_or_remote() {
        let p = Proxy {
            self_name: "Backend1.example".into(),
            ..Proxy::default()
        };
        assert_eq!(p.remote_host(""), None);
        assert_eq!(p.remote_host("backend1.example"), None);
        assert_eq!(p.remote_host("backend2.example"), Some("backend2.example"));
        let none = Proxy::default();
        assert_eq!(none.remote_host("  "), None);
        assert_eq!(none.remote_host("10.0.0.2"), Some("10.0.0.2"));
        assert_eq!(none.port_for("imap"), Some(143));
        assert_eq!(none.port_for("smtp"), None);
    }

    #[test]
    fn lmtp_tcp_clients() {
        let mut l = crate::Lmtp::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Empty list: loopback only (v4, v6, v4-mapped).
        assert!(l.tcp_client_allowed(ip("127.0.0.1")));
        assert!(l.tcp_client_allowed(ip("::1")));
        assert!(l.tcp_client_allowed(ip("::ffff:127.0.0.2")));
        assert!(!l.tcp_client_allowed(ip("10.0.0.5")));
        l.allow_networks = vec!["10.0.0.0/24".parse().unwrap()];
        assert!(l.tcp_client_allowed(ip("10.0.0.5")));
        assert!(l.tcp_client_allowed(ip("::ffff:10.0.0.9")));
        assert!(!l.tcp_client_allowed(ip("10.0.1.5")));
        // Named networks replace the loopback default.
        assert!(!l.tcp_client_allowed(ip("127.0.0.1")));
    }

    #[test]
    fn section_parses() {
        let c = crate::Config::parse(
            "hostname = \"f1.example\"\n[proxy]\nself = \"f1\"\nlmtp_port = 2424\ntls = \"may\"\nconnect_timeout_secs = 3\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.proxy.self_name, "f1");
        assert_eq!(c.proxy.lmtp_port, 2424);
        assert_eq!(c.proxy.tls, HopTls::May);
        assert_eq!(c.proxy.connect_timeout_secs.get(), 3);
        assert_eq!(c.proxy.smtpd_routing, SmtpdRouting::Auto);
        let c = crate::Config::parse(
            "hostname = \"f1.example\"\n[proxy]\nsmtpd_routing = \"always\"\n",
            Path::new("/"),
        )
        .unwrap();
        assert_eq!(c.proxy.smtpd_routing, SmtpdRouting::Always);
        let bad = crate::Config::parse(
            "hostname = \"f1.example\"\n[proxy]\ntls = \"verify\"\n",
            Path::new("/"),
        );
        assert!(bad.is_err(), "verify without ca_file");
    }

    #[test]
    fn move_receiver_settings() {
        let parse = |extra: &str| {
            crate::Config::parse(
                &format!("hostname = \"b2.example\"\n[proxy]\n{extra}"),
                Path::new("/etc/postern"),
            )
        };
        let c = parse("").unwrap();
        assert_eq!(c.proxy.move_listen_addr(), None);
        assert_eq!(c.proxy.move_port, 24244);
        assert!(c.proxy.move_secret_path().is_none());
        let c = parse(
            "move_listen = \"0.0.0.0:2424\"\nmove_secret_file = \"move.secret\"\nmove_port = 2424\nmove_networks = [\"10.1.0.0/16\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.proxy.move_listen_addr(),
            Some("0.0.0.0:2424".parse().unwrap())
        );
        assert_eq!(c.proxy.move_secret_path(), Some(Path::new("move.secret")));
        assert_eq!(c.proxy.move_port, 2424);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(c.proxy.move_peer_allowed(ip("10.1.2.3")));
        assert!(c.proxy.move_peer_allowed(ip("::ffff:10.1.2.3")));
        assert!(!c.proxy.move_peer_allowed(ip("10.2.0.1")));
        assert!(!c.proxy.move_peer_allowed(ip("127.0.0.1")));
        let open = Proxy::default();
        assert!(open.move_peer_allowed(ip("127.0.0.1")));
        assert!(open.move_peer_allowed(ip("::1")));
        assert!(!open.move_peer_allowed(ip("192.0.2.1")));
        // A receiver without a secret, or on a bad address, is a config error.
        let err = parse("move_listen = \"0.0.0.0:24244\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("move_secret_file"), "{err}");
        assert!(parse("move_listen = \"somewhere\"\nmove_secret_file = \"s\"\n").is_err());
    }

    #[test]
    fn hosts() {
        for ok in [
            "b1",
            "backend-2.example.org",
            "10.0.0.2",
            "::1",
            "2001:db8::5",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a\tb",
            "[::1]",
            "host:24",
            "-x.example",
            "a..b",
            &"a".repeat(254),
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
