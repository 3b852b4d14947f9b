//! DNS for Postern: the `[dns]` resolver (hickory, caching by TTL) and the lookups smtpd's
//! inbound checks, outbound delivery and `mailctl dns|check` share (addresses, PTR names,
//! TXT records, MX hosts), the DKIM key files ([`dkim`]) and the checks of published
//! SPF/DKIM/DMARC records ([`records`]).
#![forbid(unsafe_code)]

pub mod dane;
pub mod dkim;
pub mod records;

use std::net::IpAddr;

pub use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

/// The resolver of `[dns]` (its name servers, or resolv.conf), caching by TTL.
pub fn resolver(config: &postern_config::Config) -> anyhow::Result<TokioResolver> {
    resolver_with(config, |_| {})
}

/// Builds a resolver from `[dns]`, its options adjusted by `tune` last.
pub fn resolver_with(
    config: &postern_config::Config,
    tune: impl FnOnce(&mut hickory_resolver::config::ResolverOpts),
) -> anyhow::Result<TokioResolver> {
    Ok(builder(config, tune)?.build()?)
}

/// The builder of [`resolver_with`] (for the DNSSEC-validating resolver of [`dane`]).
pub(crate) fn builder(
    config: &postern_config::Config,
    tune: impl FnOnce(&mut hickory_resolver::config::ResolverOpts),
) -> anyhow::Result<hickory_resolver::ResolverBuilder<TokioRuntimeProvider>> {
    let d = &config.dns;
    let mut builder = if d.nameservers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers = d
            .nameservers
            .iter()
            .map(|sa| {
                let mut udp = ConnectionConfig::udp();
                udp.port = sa.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = sa.port();
                NameServerConfig::new(sa.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let explicit = !d.nameservers.is_empty();
    let opts = builder.options_mut();
    if explicit {
        // Name servers given explicitly answer everything (PTR and A of local names too,
        // which /etc/hosts would otherwise answer).
        opts.use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
    }
    opts.timeout = d.timeout_secs.duration();
    opts.attempts = d.attempts.get();
    tune(opts);
    Ok(builder)
}

/// The resolver of the inbound checks: `[dns]`, but a lost packet costs a fraction of a
/// second, not seconds. A query waits `check_timeout_ms` (hickory's own re-sending of
/// unanswered UDP queries backs off to its timeout when answers are mostly negative, which
/// it counts as failures); smtpd's checks ask again
/// within the message's DNS time budget. Negative answers are cached for at least
/// `negative_min_ttl_secs` (those without an SOA would not be cached at all, and every
/// message would ask again). Identical queries in flight are sent once and shared (hickory
/// memoizes them per name server pool), and answers are cached by TTL.
pub fn checks_resolver(config: &postern_config::Config) -> anyhow::Result<TokioResolver> {
    let d = &config.dns;
    resolver_with(config, |opts| {
        opts.timeout = d.check_timeout_ms.duration();
        opts.negative_min_ttl = Some(d.negative_min_ttl_secs.duration());
        opts.cache_size = opts.cache_size.max(32_768);
    })
}

/// The addresses of `host` (IPv4 first); `Err` only for a DNS failure worth retrying.
pub async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![ip]);
    }
    let name = fqdn(host);
    let (v4, v6) = tokio::join!(
        resolver.ipv4_lookup(name.as_str()),
        resolver.ipv6_lookup(name.as_str())
    );
    let mut addrs = Vec::new();
    let mut failure = None;
    for result in [v4, v6] {
        match result {
            Ok(lookup) => addrs.extend(lookup.answers().iter().filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })),
            Err(e) if negative(&e) => {}
            Err(e) => failure = Some(format!("address lookup for {host}: {e}")),
        }
    }
    match failure {
        Some(f) if addrs.is_empty() => Err(f),
        _ => Ok(addrs),
    }
}

/// `name` with exactly one final dot (an absolute name: no search domains).
pub fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// True for "no such name" and "no records of that type": an answer, not a failure.
pub fn negative(e: &NetError) -> bool {
    e.is_nx_domain() || e.is_no_records_found()
}

/// The PTR names of `ip`, lower-case without the final dot; empty when there is none.
pub async fn ptr_names(resolver: &TokioResolver, ip: IpAddr) -> Result<Vec<String>, String> {
    match resolver.reverse_lookup(ip).await {
        Ok(l) => Ok(l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(p) => Some(p.to_lowercase().to_ascii().trim_end_matches('.').to_owned()),
                _ => None,
            })
            .collect()),
        Err(e) if negative(&e) => Ok(Vec::new()),
        Err(e) => Err(format!("PTR lookup for {ip}: {e}")),
    }
}

/// The TXT records at `name`, each one's strings joined; empty when there is none.
pub async fn txt_records(resolver: &TokioResolver, name: &str) -> Result<Vec<String>, String> {
    match resolver.txt_lookup(fqdn(name).as_str()).await {
        Ok(l) => Ok(l
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(t) => Some(
                    t.txt_data
                        .iter()
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect()),
        Err(e) if negative(&e) => Ok(Vec::new()),
        Err(e) => Err(format!("TXT lookup for {name}: {e}")),
    }
}

/// The A records at `name` with the time they may be cached; empty when there is none.
pub async fn a_records(
    resolver: &TokioResolver,
    name: &str,
) -> Result<(Vec<std::net::Ipv4Addr>, Option<std::time::Instant>), String> {
    match resolver.ipv4_lookup(fqdn(name).as_str()).await {
        Ok(l) => Ok((
            l.answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
            Some(l.valid_until()),
        )),
        Err(e) if negative(&e) => Ok((Vec::new(), None)),
        Err(e) => Err(format!("A lookup for {name}: {e}")),
    }
}

/// The MX hosts of `domain` (preference, name without the final dot); empty when none.
pub async fn mx_hosts(
    resolver: &TokioResolver,
    domain: &str,
) -> Result<Vec<(u16, String)>, String> {
    match resolver.mx_lookup(fqdn(domain).as_str()).await {
        Ok(l) => {
            let mut v: Vec<(u16, String)> = l
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((
                        m.preference,
                        m.exchange
                            .to_lowercase()
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_owned(),
                    )),
                    _ => None,
                })
                .collect();
            v.sort();
            Ok(v)
        }
        Err(e) if negative(&e) => Ok(Vec::new()),
        Err(e) => Err(format!("MX lookup for {domain}: {e}")),
    }
}
