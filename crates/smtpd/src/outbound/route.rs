//! Where mail for a domain goes: a `[smtpd] transports` entry, else the relayhost, else
//! the domain's MX hosts.

use postern_config::{Config, TlsPolicy};
use postern_smtp_client::Target;

/// The next hop for one destination domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// LMTP to a fixed place (`transports`: `lmtp:unix:/path` or `lmtp:host:port`).
    Lmtp(Target),
    /// SMTP to a fixed `host` and `port` (`transports`: `smtp:host:port`); no MX lookup.
    Fixed { host: String, port: u16 },
    /// The relayhost, with AUTH when configured.
    Relay { host: String, port: u16 },
    /// The domain's MX hosts (or its address: the implicit MX), on `outbound_port`.
    Mx { domain: String },
}

impl Route {
    /// For mail to `domain`.
    pub(crate) fn for_domain(config: &Config, domain: &str) -> Self {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let s = &config.smtpd;
        if let Some(t) = s
            .transports
            .iter()
            .find(|(k, _)| k.trim_end_matches('.').eq_ignore_ascii_case(&domain))
            .map(|(_, t)| t.as_str())
            && let Some(route) = parse_transport(t)
        {
            return route;
        }
        if let Some(relay) = &s.relayhost
            && let Some((host, port)) = split_host_port(relay, 25)
        {
            return Self::Relay { host, port };
        }
        Self::Mx { domain }
    }

    /// The key connections are pooled and counted under (one per destination).
    pub(crate) fn key(&self) -> String {
        match self {
            Self::Lmtp(t) => format!("lmtp:{t}"),
            Self::Fixed { host, port } => format!("smtp:{host}:{port}"),
            Self::Relay { host, port } => format!("relay:{host}:{port}"),
            Self::Mx { domain } => format!("mx:{domain}"),
        }
    }

    /// The TLS policy for this route when delivering to `domain`.
    pub(crate) fn tls_policy(&self, config: &Config, domain: &str) -> TlsPolicy {
        match self {
            // With a password to send, only to a certificate valid for the relayhost.
            Self::Relay { .. } => config.smtpd.relayhost_tls.unwrap_or(
                if config.smtpd.relayhost_auth_user.is_some() {
                    TlsPolicy::Verify
                } else {
                    config.smtpd.outbound_tls
                },
            ),
            _ => config.tls_policy_for(domain),
        }
    }
}

/// `smtp:host:port`, `lmtp:unix:/path`, `lmtp:host:port`.
pub(crate) fn parse_transport(t: &str) -> Option<Route> {
    if let Some(rest) = t.strip_prefix("lmtp:") {
        if let Some(path) = rest.strip_prefix("unix:") {
            return Some(Route::Lmtp(Target::Unix(path.into())));
        }
        let (host, port) = split_host_port(rest, 24)?;
        return Some(Route::Lmtp(Target::Tcp(join_host_port(&host, port))));
    }
    let rest = t.strip_prefix("smtp:")?;
    let (host, port) = split_host_port(rest, 25)?;
    Some(Route::Fixed { host, port })
}

/// `host:port`, `[v6]:port`, `host` (the default port); the host without brackets.
pub(crate) fn split_host_port(s: &str, default_port: u16) -> Option<(String, u16)> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        return Some((host.to_owned(), port));
    }
    match s.rsplit_once(':') {
        // A bare IPv6 address has several colons: no port then.
        Some((h, _)) if h.contains(':') => Some((s.to_owned(), default_port)),
        Some((h, p)) if !h.is_empty() => Some((h.to_owned(), p.parse().ok()?)),
        Some(_) => None,
        None if !s.is_empty() => Some((s.to_owned(), default_port)),
        None => None,
    }
}

/// `host:port`, with brackets around an IPv6 address.
pub(crate) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!("hostname = \"mx.example.org\"\n{extra}"),
            Path::new("/"),
        )
        .unwrap()
    }

    #[test]
    fn transports_then_relayhost_then_mx() {
        let c = config(concat!(
            "[smtpd]\nrelayhost = \"[192.0.2.1]:587\"\n",
            "[smtpd.transports]\n",
            "\"lists.example\" = \"smtp:[2001:db8::1]:2525\"\n",
            "\"lmtp.example\" = \"lmtp:unix:/run/dovecot/lmtp\"\n",
            "\"tcp.example\" = \"lmtp:127.0.0.1:24\"\n",
        ));
        assert_eq!(
            Route::for_domain(&c, "Lists.Example."),
            Route::Fixed {
                host: "2001:db8::1".into(),
                port: 2525
            }
        );
        assert_eq!(
            Route::for_domain(&c, "lmtp.example"),
            Route::Lmtp(Target::Unix("/run/dovecot/lmtp".into()))
        );
        assert_eq!(
            Route::for_domain(&c, "tcp.example"),
            Route::Lmtp(Target::Tcp("127.0.0.1:24".into()))
        );
        let relay = Route::for_domain(&c, "gmail.example");
        assert_eq!(
            relay,
            Route::Relay {
                host: "192.0.2.1".into(),
                port: 587
            }
        );
        assert_eq!(relay.key(), "relay:192.0.2.1:587");
        let c = config("");
        assert_eq!(
            Route::for_domain(&c, "Example.NET"),
            Route::Mx {
                domain: "example.net".into()
            }
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("h.example", 25),
            Some(("h.example".into(), 25))
        );
        assert_eq!(
            split_host_port("h.example:26", 25),
            Some(("h.example".into(), 26))
        );
        assert_eq!(split_host_port("[::1]:26", 25), Some(("::1".into(), 26)));
        assert_eq!(split_host_port("[::1]", 25), Some(("::1".into(), 25)));
        assert_eq!(split_host_port("::1", 25), Some(("::1".into(), 25)));
        assert_eq!(split_host_port("h:x", 25), None);
        assert_eq!(split_host_port(":25", 25), None);
        assert_eq!(join_host_port("::1", 25), "[::1]:25");
    }

    #[test]
    fn relay_tls_defaults_to_verify_with_auth() {
        // A password is only sent over TLS whose certificate is valid for the relayhost: with
        // `encrypt` (any certificate) a man in the middle collects the credentials.
        let auth = "[smtpd]\nrelayhost = \"r.example:587\"\nrelayhost_auth_user = \"u\"\nrelayhost_password_file = \"/p\"\n";
        let c = config(auth);
        let r = Route::for_domain(&c, "x.example");
        assert_eq!(r.tls_policy(&c, "x.example"), TlsPolicy::Verify);
        // An explicit setting still wins.
        let c = config(&format!("{auth}relayhost_tls = \"encrypt\"\n"));
        assert_eq!(r.tls_policy(&c, "x.example"), TlsPolicy::Encrypt);
        let c = config(
            "[smtpd]\nrelayhost = \"r.example:25\"\n[smtpd.tls_policy]\n\"x.example\" = \"verify\"\n",
        );
        let r = Route::for_domain(&c, "x.example");
        assert_eq!(r.tls_policy(&c, "x.example"), TlsPolicy::May);
        let mx = Route::for_domain(
            &config("[smtpd.tls_policy]\n\"x.example\" = \"none\"\n"),
            "x.example",
        );
        assert_eq!(
            mx.tls_policy(
                &config("[smtpd.tls_policy]\n\"x.example\" = \"none\"\n"),
                "x.example"
            ),
            TlsPolicy::None
        );
    }
}
