//! DNS for outbound delivery (the resolver and address lookups are `postern-dns`): MX lookup (preference order, equal preferences shuffled),
//! the implicit MX, null MX (RFC 7505), and A/AAAA for each host. hickory-resolver asks the
//! configured name servers (or those in resolv.conf) and caches answers by their TTL.

use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use rand::seq::SliceRandom;

/// At most this many MX hosts are looked at (Postfix: `smtp_mx_address_limit` counts
/// addresses; hosts beyond a handful never get tried in practice).
const MAX_HOSTS: usize = 10;

/// One mail server to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Host {
    /// Its name (for logs, TLS SNI/verification and the DSN's `Remote-MTA`).
    pub(crate) name: String,
    /// Its addresses, IPv4 first.
    pub(crate) addrs: Vec<IpAddr>,
}

/// What DNS says about delivering to a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Servers to try, best first.
    Hosts(Vec<Host>),
    /// The domain says it takes no mail (`MX 0 .`).
    NullMx,
    /// No such domain, or no MX and no address: not a mail domain (a permanent failure).
    NoSuchDomain(String),
    /// DNS failed; try again later.
    TempFail(String),
}

use postern_dns::fqdn;
pub(crate) use postern_dns::{addresses, resolver};

/// The MX records ordered: by preference, equal preferences shuffled (RFC 5321 §5.1).
pub(crate) fn order(mut records: Vec<(u16, String)>, rng: &mut impl rand::Rng) -> Vec<String> {
    records.shuffle(rng);
    records.sort_by_key(|r| r.0); // stable: the shuffle stays within each preference
    let mut names: Vec<String> = Vec::new();
    for (_, name) in records {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// Where mail for `domain` goes, by DNS. `myself` is our own host name: an MX pointing at
/// it as the best choice is a loop.
pub(crate) async fn lookup(resolver: &TokioResolver, domain: &str, myself: &str) -> Answer {
    let records: Vec<(u16, String)> = match resolver.mx_lookup(fqdn(domain).as_str()).await {
        Ok(lookup) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((
                    mx.preference,
                    if mx.exchange.is_root() {
                        ".".to_owned()
                    } else {
                        mx.exchange
                            .to_lowercase()
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_owned()
                    },
                )),
                _ => None,
            })
            .collect(),
        Err(e) if e.is_nx_domain() => {
            return Answer::NoSuchDomain(format!("domain {domain} not found (NXDOMAIN)"));
        }
        Err(e) if e.is_no_records_found() => Vec::new(),
        Err(e) => return Answer::TempFail(format!("MX lookup for {domain}: {e}")),
    };
    // RFC 7505: a lone "MX 0 ." says no mail; a "." among real MX records is ignored.
    if records.len() == 1 && records[0].1 == "." {
        return Answer::NullMx;
    }
    let implicit = records.is_empty();
    let names = if implicit {
        vec![domain.trim_end_matches('.').to_ascii_lowercase()]
    } else {
        let real: Vec<(u16, String)> = records.into_iter().filter(|r| r.1 != ".").collect();
        order(real, &mut rand::rng())
    };
    if !implicit
        && names
            .first()
            .is_some_and(|n| n.eq_ignore_ascii_case(myself.trim_end_matches('.')))
    {
        return Answer::NoSuchDomain(format!(
            "mail for {domain} loops back to myself (its best MX is {myself})"
        ));
    }
    let mut hosts = Vec::new();
    let mut failures = Vec::new();
    for name in names.into_iter().take(MAX_HOSTS) {
        match addresses(resolver, &name).await {
            Ok(addrs) if !addrs.is_empty() => hosts.push(Host { name, addrs }),
            Ok(_) => failures.push(format!("{name} has no address")),
            Err(e) => failures.push(e),
        }
    }
    if !hosts.is_empty() {
        return Answer::Hosts(hosts);
    }
    if implicit && failures.iter().all(|f| f.ends_with("has no address")) {
        return Answer::NoSuchDomain(format!(
            "{domain} has no MX and no address record: not a mail domain"
        ));
    }
    Answer::TempFail(format!(
        "no usable MX host for {domain}: {}",
        failures.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn preference_order_with_equal_ones_shuffled() {
        let records = vec![
            (20, "c.example".to_owned()),
            (10, "a.example".to_owned()),
            (10, "b.example".to_owned()),
            (30, "d.example".to_owned()),
            (10, "a.example".to_owned()),
        ];
        let mut seen_first = std::collections::HashSet::new();
        for seed in 0..64 {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let o = order(records.clone(), &mut rng);
            assert_eq!(o.len(), 4, "{o:?}");
            assert!(o[0] == "a.example" || o[0] == "b.example");
            assert!(o[1] == "a.example" || o[1] == "b.example");
            assert_eq!(&o[2..], ["c.example", "d.example"]);
            seen_first.insert(o[0].clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
    }
}
