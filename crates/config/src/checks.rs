//! `[checks]`: what is checked on mail arriving on port 25.

use serde::{Deserialize, Serialize};

use crate::{Millis, Seconds};

/// What a check does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckMode {
    /// Not checked.
    Off,
    /// Checked and recorded in a header; the mail is accepted.
    Tag,
    /// Checked; a failure refuses the mail.
    Reject,
}

impl CheckMode {
    /// Anything but `off`.
    pub fn on(self) -> bool {
        self != Self::Off
    }
}

/// `[checks]`: what is checked on port 25, for clients outside `[smtpd] trusted_networks`
/// that have not authenticated (never on 587/465).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Checks {
    /// SPF (RFC 7208) of the MAIL FROM domain (or the HELO name for `<>`); `reject` refuses
    /// an SPF `fail` at MAIL with `550 5.7.23`.
    #[serde(default = "default_tag")]
    pub spf: CheckMode,
    /// DKIM signatures (RFC 6376); `reject` refuses a message whose signatures all fail
    /// (`550 5.7.20`); unsigned mail is never refused for that.
    #[serde(default = "default_tag")]
    pub dkim: CheckMode,
    /// DMARC (RFC 7489) of the From: domain; `reject` applies the domain's policy:
    /// `p=reject` → `550 5.7.1` after DATA, `p=quarantine` → the recipient's Junk folder;
    /// `pct` is honoured. `tag` only records the result.
    #[serde(default = "default_reject")]
    pub dmarc: CheckMode,
    /// DNS blocklists of the client IP (`zen.spamhaus.org`, …): a listed client is refused
    /// at MAIL with `554 5.7.1 … listed at ZONE` (`reject`) or tagged.
    #[serde(default)]
    pub dnsbl_zones: Vec<String>,
    /// Domain blocklists of the sender's domain (`dbl.spamhaus.org`, …), as `dnsbl_zones`.
    #[serde(default)]
    pub dbl_zones: Vec<String>,
    /// What a listing does: `reject` or `tag` (`off` skips the lookups).
    #[serde(default = "default_reject")]
    pub dnsbl: CheckMode,
    /// HELO/EHLO hygiene: invalid names, bare IP addresses, our own name or addresses
    /// claimed by a client (checked at MAIL).
    #[serde(default = "default_reject")]
    pub helo: CheckMode,
    /// Also require forward-confirmed reverse DNS of the client (PTR → A/AAAA back to its
    /// IP); refused with `550 5.7.25` (`helo = "reject"`) or tagged.
    #[serde(default)]
    pub require_fcrdns: bool,
    /// Wait this long before the greeting; a client that talks first is refused with
    /// `554 5.5.0` and disconnected (0: no pause, no early-talker check).
    #[serde(default)]
    pub greet_pause_ms: Millis,
    /// New connections per minute from one IP address (0: no limit); beyond it `421 4.7.0`.
    #[serde(default)]
    pub max_connection_rate_per_ip: u32,
    /// Greylisting (RFC 6647) of (client /24 or /64, sender, recipient).
    #[serde(default)]
    pub greylist: bool,
    /// How long a new triplet is deferred.
    #[serde(default = "default_greylist_delay")]
    pub greylist_delay_secs: Seconds,
    /// How long a deferred triplet waits for its retry before it is forgotten.
    #[serde(default = "default_greylist_window")]
    pub greylist_retry_window_secs: Seconds,
    /// How long a triplet that passed stays allowed after it was last seen.
    #[serde(default = "default_greylist_allow")]
    pub greylist_allow_secs: Seconds,
    /// Longest a message waits for the DNS of all its checks together (at MAIL and after
    /// DATA), milliseconds. Past it, what is not known is a `temperror` (RFC 7208/7489):
    /// tagged in Authentication-Results, or `451 4.7.x` where that check is in `reject` mode.
    #[serde(default = "default_dns_budget_ms")]
    pub dns_budget_ms: Millis,
}

impl Default for Checks {
    fn default() -> Self {
        Self {
            spf: CheckMode::Tag,
            dkim: CheckMode::Tag,
            dmarc: CheckMode::Reject,
            dnsbl_zones: Vec::new(),
            dbl_zones: Vec::new(),
            dnsbl: CheckMode::Reject,
            helo: CheckMode::Reject,
            require_fcrdns: false,
            greet_pause_ms: Millis::new(0),
            max_connection_rate_per_ip: 0,
            greylist: false,
            greylist_delay_secs: default_greylist_delay(),
            greylist_retry_window_secs: default_greylist_window(),
            greylist_allow_secs: default_greylist_allow(),
            dns_budget_ms: default_dns_budget_ms(),
        }
    }
}

fn default_tag() -> CheckMode {
    CheckMode::Tag
}
fn default_reject() -> CheckMode {
    CheckMode::Reject
}
fn default_greylist_delay() -> Seconds {
    Seconds::new(300)
}
fn default_greylist_window() -> Seconds {
    Seconds::new(2 * 86_400)
}
fn default_greylist_allow() -> Seconds {
    Seconds::new(36 * 86_400)
}
fn default_dns_budget_ms() -> Millis {
    Millis::new(2000)
}
