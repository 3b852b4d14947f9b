//! DNS blocklists: the client IP against `dnsbl_zones` (IPv4 as reversed octets, IPv6 as
//! reversed nibbles, RFC 5782) and the sender's domain against `dbl_zones`. A name is
//! listed when it has an A record in 127.0.0.0/8 (127.255.255.0/24 are the lists' error
//! codes, such as "refused: open resolver", and are not listings). Answers are cached for
//! their TTL (negative ones and failures for [`NEGATIVE_TTL`]); a failed lookup lists
//! nobody.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use tracing::debug;

use super::Budget;

/// How long "not listed" (or a failed lookup) is remembered.
pub(crate) const NEGATIVE_TTL: Duration = Duration::from_secs(300);
/// Longest a positive answer is remembered, whatever its TTL.
const MAX_TTL: Duration = Duration::from_secs(3600);

/// Cached answers: query name → (the listing's A record, until when).
#[derive(Default)]
pub(crate) struct Cache(Mutex<HashMap<String, (Option<Ipv4Addr>, Instant)>>);

/// The name to look up for `ip` in `zone`.
pub(crate) fn ip_query(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_matches('.');
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(64 + zone.len());
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str(zone);
            s
        }
    }
}

/// The name to look up for `domain` in a domain list `zone`.
pub(crate) fn domain_query(domain: &str, zone: &str) -> String {
    format!(
        "{}.{}",
        domain.trim_matches('.').to_ascii_lowercase(),
        zone.trim_matches('.')
    )
}

/// A listing answer, not an error code.
fn is_listing(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 127 && !(o[1] == 255 && o[2] == 255)
}

impl Cache {
    /// The listing record of `name`, if listed (not listed when the message's DNS time
    /// `budget` runs out first; that is not remembered).
    pub(crate) async fn lookup(
        &self,
        resolver: &TokioResolver,
        budget: &Budget,
        name: &str,
    ) -> Option<Ipv4Addr> {
        let now = Instant::now();
        if let Some((hit, until)) = self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            && until > now
        {
            return hit;
        }
        let Some(answer) = budget
            .retrying(|| postern_dns::a_records(resolver, name), Result::is_err)
            .await
        else {
            debug!(name, "DNSBL lookup out of time; taken as not listed");
            return None;
        };
        let (hit, until) = match answer {
            Ok((addrs, valid)) => match addrs.into_iter().find(|a| is_listing(*a)) {
                Some(a) => (
                    Some(a),
                    valid.map_or(now + NEGATIVE_TTL, |v| v.min(now + MAX_TTL)),
                ),
                None => (None, now + NEGATIVE_TTL),
            },
            Err(e) => {
                debug!(name, error = %e, "DNSBL lookup failed; taken as not listed");
                (None, now + Duration::from_secs(30))
            }
        };
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() > 50_000 {
            m.retain(|_, (_, u)| *u > now);
        }
        m.insert(name.to_owned(), (hit, until));
        hit
    }

    /// The first of `zones` listing `ip`: (zone, its answer).
    pub(crate) async fn client(
        &self,
        resolver: &TokioResolver,
        budget: &Budget,
        zones: &[String],
        ip: IpAddr,
    ) -> Option<(String, Ipv4Addr)> {
        for zone in zones {
            if let Some(a) = self.lookup(resolver, budget, &ip_query(ip, zone)).await {
                return Some((zone.trim_matches('.').to_owned(), a));
            }
        }
        None
    }

    /// The first of `zones` listing `domain`.
    pub(crate) async fn domain(
        &self,
        resolver: &TokioResolver,
        budget: &Budget,
        zones: &[String],
        domain: &str,
    ) -> Option<(String, Ipv4Addr)> {
        for zone in zones {
            if let Some(a) = self
                .lookup(resolver, budget, &domain_query(domain, zone))
                .await
            {
                return Some((zone.trim_matches('.').to_owned(), a));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names() {
        assert_eq!(
            ip_query("127.0.0.2".parse().unwrap(), "zen.test."),
            "2.0.0.127.zen.test"
        );
        assert_eq!(
            ip_query("::ffff:192.0.2.1".parse().unwrap(), "zen.test"),
            "1.2.0.192.zen.test",
            "IPv4-mapped addresses are checked as IPv4"
        );
        assert_eq!(
            ip_query("2001:db8::1".parse().unwrap(), "bl.test"),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test"
        );
        assert_eq!(
            domain_query("Spam.Example.", "dbl.test"),
            "spam.example.dbl.test"
        );
        assert!(is_listing("127.0.0.2".parse().unwrap()));
        assert!(!is_listing("127.255.255.254".parse().unwrap()));
        assert!(!is_listing("10.0.0.1".parse().unwrap()));
    }
}
