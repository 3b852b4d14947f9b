//! `[dns]`: the resolver for outbound delivery and the inbound checks.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::duration::count;
use crate::{Millis, Seconds};

/// `[dns]`: the resolver used for MX and address lookups.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Name servers as `IP:PORT` (UDP, TCP on truncation). Empty: the system's resolv.conf.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
    /// Time for one query before it is retried.
    #[serde(default = "default_dns_timeout")]
    pub timeout_secs: Seconds<1>,
    /// Tries per query.
    #[serde(
        default = "default_dns_attempts",
        deserialize_with = "crate::duration::at_least_one_usize"
    )]
    pub attempts: NonZeroUsize,
    /// For the inbound checks (SPF, DKIM, DMARC, DNSBL, FCrDNS): time for one try of a
    /// query, in milliseconds; a check whose lookup timed out or failed asks again (up to 3
    /// tries) within `[checks] dns_budget_ms`.
    #[serde(default = "default_dns_check_timeout_ms")]
    pub check_timeout_ms: Millis<100>,
    /// For the inbound checks: the shortest time a negative answer (no such name, no such
    /// record) is cached, seconds; it matters for answers without an SOA, which would
    /// otherwise not be cached at all and be asked again for every message.
    #[serde(default = "default_dns_negative_min_ttl")]
    pub negative_min_ttl_secs: Seconds,
    /// Where DANE's DNSSEC verdicts come from (see [`DnssecMode`]).
    #[serde(default)]
    pub dnssec: DnssecMode,
    /// For in-process validation: a file of DNSKEY or DS records (zone-file syntax, one DS
    /// record a line, as IANA and Debian's `/usr/share/dns/root.key` publish the root's)
    /// trusted instead of the IANA root keys hickory ships. A DS record's DNSKEY is fetched at
    /// the first lookup and must match its digest. Unset: the IANA root keys built in.
    #[serde(default)]
    pub trust_anchor: Option<PathBuf>,
}

/// Where DANE (`[smtpd] dane`) gets the DNSSEC status of MX, address and TLSA answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnssecMode {
    /// `ad` when every name server is on loopback (a local validating resolver, which keeps
    /// its root trust anchor up to date itself), `validate` otherwise (an AD bit that crossed a
    /// network proves nothing).
    #[default]
    Auto,
    /// Postern validates the signatures itself (hickory), from `trust_anchor` or the IANA
    /// root keys; the name servers only need to pass DNSSEC records along.
    Validate,
    /// The AD bit of a validating resolver on loopback is believed (Postfix's way); with a
    /// name server off loopback DANE is off.
    Ad,
}

impl Default for Dns {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            timeout_secs: default_dns_timeout(),
            attempts: default_dns_attempts(),
            check_timeout_ms: default_dns_check_timeout_ms(),
            negative_min_ttl_secs: default_dns_negative_min_ttl(),
            dnssec: DnssecMode::Auto,
            trust_anchor: None,
        }
    }
}

fn default_dns_timeout() -> Seconds<1> {
    Seconds::new(5)
}
fn default_dns_attempts() -> NonZeroUsize {
    count(2)
}
fn default_dns_check_timeout_ms() -> Millis<100> {
    Millis::new(500)
}
fn default_dns_negative_min_ttl() -> Seconds {
    Seconds::new(30)
}
