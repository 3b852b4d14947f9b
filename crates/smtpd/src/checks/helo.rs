//! HELO/EHLO hygiene: a syntactically valid host name or an address literal; never a bare
//! IP address; never our own name, `localhost`, or one of our addresses. And forward-
//! confirmed reverse DNS of the client (PTR, then A/AAAA of that name back to the client).

use std::net::IpAddr;

use hickory_resolver::TokioResolver;

use super::Budget;

/// What is wrong with a HELO name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Not a host name nor an address literal.
    Invalid,
    /// An IP address without the brackets of an address literal.
    BareIp,
    /// Our own host name (or localhost).
    OurName,
    /// One of our own addresses.
    OurIp,
}

impl Problem {
    /// The reason's name in logs and statistics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Invalid => "helo_invalid",
            Self::BareIp => "helo_bare_ip",
            Self::OurName => "helo_our_name",
            Self::OurIp => "helo_our_ip",
        }
    }

    /// The refusal, for the client.
    pub(crate) fn text(&self, helo: &str) -> String {
        let helo = super::clean(helo);
        match self {
            Self::Invalid => format!("<{helo}>: Helo command rejected: invalid host name"),
            Self::BareIp => format!(
                "<{helo}>: Helo command rejected: an IP address must be an address literal ([{helo}])"
            ),
            Self::OurName => format!("<{helo}>: Helo command rejected: that is my name, not yours"),
            Self::OurIp => {
                format!("<{helo}>: Helo command rejected: that is my address, not yours")
            }
        }
    }

    /// The reply code and enhanced code.
    pub(crate) fn code(&self) -> (u16, (u8, u16, u16)) {
        match self {
            Self::Invalid | Self::BareIp => (504, (5, 5, 2)),
            Self::OurName | Self::OurIp => (550, (5, 7, 1)),
        }
    }
}

/// Checks `helo` from a remote client; `hostname` is ours, `own_ips` our addresses (the
/// local end of the connection among them).
pub(crate) fn check(helo: &str, hostname: &str, own_ips: &[IpAddr]) -> Option<Problem> {
    let h = helo.trim();
    if let Some(inner) = h.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        let ip = match inner.get(..5) {
            Some(p) if p.eq_ignore_ascii_case("ipv6:") => inner[5..]
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6),
            _ => inner.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
        };
        return match ip {
            None => Some(Problem::Invalid),
            Some(ip) if own_ips.iter().any(|o| same_ip(*o, ip)) => Some(Problem::OurIp),
            Some(_) => None,
        };
    }
    if h.parse::<IpAddr>().is_ok() {
        return Some(Problem::BareIp);
    }
    if !valid_hostname(h) {
        return Some(Problem::Invalid);
    }
    let name = h.trim_end_matches('.').to_ascii_lowercase();
    if name == hostname.trim_end_matches('.').to_ascii_lowercase()
        || name == "localhost"
        || name == "localhost.localdomain"
    {
        return Some(Problem::OurName);
    }
    None
}

fn same_ip(a: IpAddr, b: IpAddr) -> bool {
    a.to_canonical() == b.to_canonical()
}

/// A host name as RFC 1123 has them (underscores tolerated, as Postfix does): labels of
/// 1–63 letters, digits, `-` and `_`, not starting or ending with `-`; at most 255 octets;
/// a last label that is not all digits.
pub(crate) fn valid_hostname(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    if n.is_empty() || n.len() > 255 {
        return false;
    }
    let labels: Vec<&str> = n.split('.').collect();
    let ok = labels.iter().all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok && !labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

/// What forward-confirmed reverse DNS found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fcrdns {
    /// A PTR name whose addresses include the client's.
    Pass(String),
    /// No PTR, or none of the names leads back.
    Fail(String),
    /// DNS failed.
    TempError(String),
}

/// PTR of `ip`, then the addresses of (at most 5 of) those names, within the message's
/// DNS time `budget` (past it: a temporary error).
pub(crate) async fn fcrdns(resolver: &TokioResolver, budget: &Budget, ip: IpAddr) -> Fcrdns {
    const LATE: &str = "DNS time budget exceeded";
    let names = match budget
        .retrying(|| postern_dns::ptr_names(resolver, ip), Result::is_err)
        .await
    {
        None => return Fcrdns::TempError(format!("PTR lookup for {ip}: {LATE}")),
        Some(Ok(n)) if n.is_empty() => return Fcrdns::Fail(format!("no PTR record for {ip}")),
        Some(Ok(n)) => n,
        Some(Err(e)) => return Fcrdns::TempError(e),
    };
    let mut temp = None;
    for name in names.iter().take(5) {
        let Some(answer) = budget
            .retrying(|| postern_dns::addresses(resolver, name), Result::is_err)
            .await
        else {
            temp = Some(format!("address lookup for {name}: {LATE}"));
            break;
        };
        match answer {
            Ok(addrs) if addrs.iter().any(|a| same_ip(*a, ip)) => {
                return Fcrdns::Pass(name.clone());
            }
            Ok(_) => {}
            Err(e) => temp = Some(e),
        }
    }
    match temp {
        Some(e) => Fcrdns::TempError(e),
        None => Fcrdns::Fail(format!(
            "{ip} has PTR {} but that name does not resolve back to it",
            names.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names() {
        let own: Vec<IpAddr> = vec![
            "192.0.2.25".parse().unwrap(),
            "2001:db8::25".parse().unwrap(),
        ];
        let c = |h| check(h, "mail.example.org", &own);
        assert_eq!(c("client.example.net"), None);
        assert_eq!(c("client.example.net."), None);
        assert_eq!(c("host_1.example.net"), None);
        assert_eq!(c("mailhost"), None, "a single label is valid syntax");
        assert_eq!(c("[198.51.100.7]"), None);
        assert_eq!(c("[IPv6:2001:db8::7]"), None);
        assert_eq!(c("bad name!"), Some(Problem::Invalid));
        assert_eq!(c("-bad.example"), Some(Problem::Invalid));
        assert_eq!(c("a..b"), Some(Problem::Invalid));
        assert_eq!(c("example.123"), Some(Problem::Invalid));
        assert_eq!(c("[300.1.1.1]"), Some(Problem::Invalid));
        assert_eq!(c(""), Some(Problem::Invalid));
        assert_eq!(c("198.51.100.7"), Some(Problem::BareIp));
        assert_eq!(c("2001:db8::7"), Some(Problem::BareIp));
        assert_eq!(c("MAIL.example.org"), Some(Problem::OurName));
        assert_eq!(c("localhost"), Some(Problem::OurName));
        assert_eq!(c("[192.0.2.25]"), Some(Problem::OurIp));
        assert_eq!(c("[IPv6:2001:DB8::25]"), Some(Problem::OurIp));
        assert!(
            Problem::BareIp.text("1.2.3.4").contains("[1.2.3.4]"),
            "the fix is in the text"
        );
    }
}
