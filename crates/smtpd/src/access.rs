//! Access rules (`[[smtpd.access]]`): by client network, HELO name, sender and recipient →
//! OK, REJECT, DISCARD or HOLD. The first rule whose every given condition matches decides.

use std::net::IpAddr;

use postern_config::{AccessAction, AccessRule};

/// What the rules say about a transaction so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// No rule matched, or an OK rule did.
    Pass,
    /// Refuse, with this text.
    Reject(String),
    /// Accept and drop.
    Discard,
    /// Accept and hold in the queue.
    Hold,
}

/// What is known when the rules are asked.
pub(crate) struct Facts<'a> {
    pub(crate) client: IpAddr,
    pub(crate) helo: &'a str,
    /// `None` is the null sender.
    pub(crate) sender: Option<&'a str>,
    /// Set at RCPT.
    pub(crate) recipient: Option<&'a str>,
}

/// The decision of the first matching rule. At MAIL (`recipient` None), rules with a
/// recipient condition are skipped; at RCPT only those rules are looked at.
pub(crate) fn decide(rules: &[AccessRule], f: &Facts<'_>) -> Decision {
    for r in rules {
        if r.recipient.is_some() != f.recipient.is_some() {
            continue;
        }
        let ok = r.client.is_none_or(|n| n.contains(&f.client))
            && r.helo.as_deref().is_none_or(|h| helo_matches(h, f.helo))
            && r.sender
                .as_deref()
                .is_none_or(|p| address_matches(p, f.sender))
            && r.recipient
                .as_deref()
                .is_none_or(|p| address_matches(p, f.recipient));
        if ok {
            return match r.action {
                AccessAction::Ok => Decision::Pass,
                AccessAction::Reject => {
                    Decision::Reject(r.text.clone().unwrap_or_else(|| "Access denied".into()))
                }
                AccessAction::Discard => Decision::Discard,
                AccessAction::Hold => Decision::Hold,
            };
        }
    }
    Decision::Pass
}

fn helo_matches(pattern: &str, helo: &str) -> bool {
    let (p, h) = (pattern.to_ascii_lowercase(), helo.to_ascii_lowercase());
    match p.strip_prefix("*.") {
        Some(suffix) => h.ends_with(&format!(".{suffix}")),
        None => p == h,
    }
}

fn address_matches(pattern: &str, addr: Option<&str>) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    let Some(addr) = addr.map(str::to_ascii_lowercase) else {
        return p == "<>";
    };
    if p.contains('@') && !p.starts_with('@') {
        return p == addr;
    }
    let dom = p.trim_start_matches('@');
    let Some((_, ad)) = addr.rsplit_once('@') else {
        return false;
    };
    ad == dom || ad.ends_with(&format!(".{dom}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml: &str) -> AccessRule {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn first_match_wins_and_all_conditions_must_hold() {
        let rules = vec![
            rule("client = \"192.0.2.0/24\"\nsender = \"example.com\"\naction = \"OK\""),
            rule("client = \"192.0.2.0/24\"\naction = \"REJECT\"\ntext = \"go away\""),
            rule("helo = \"*.spam.test\"\naction = \"DISCARD\""),
            rule("sender = \"<>\"\naction = \"HOLD\""),
            rule("recipient = \"abuse@example.org\"\naction = \"OK\""),
            rule("recipient = \"@blocked.example.org\"\naction = \"REJECT\""),
        ];
        let f = |ip: &str, helo, sender, rcpt| Facts {
            client: ip.parse().unwrap(),
            helo,
            sender,
            recipient: rcpt,
        };
        assert_eq!(
            decide(
                &rules,
                &f("192.0.2.7", "x", Some("a@mail.example.com"), None)
            ),
            Decision::Pass
        );
        assert_eq!(
            decide(&rules, &f("192.0.2.7", "x", Some("a@other.test"), None)),
            Decision::Reject("go away".into())
        );
        assert_eq!(
            decide(
                &rules,
                &f("198.51.100.1", "mx.spam.test", Some("a@b.test"), None)
            ),
            Decision::Discard
        );
        assert_eq!(
            decide(
                &rules,
                &f("198.51.100.1", "spam.test", Some("a@b.test"), None)
            ),
            Decision::Pass
        );
        assert_eq!(
            decide(&rules, &f("198.51.100.1", "x", None, None)),
            Decision::Hold
        );
        assert_eq!(
            decide(
                &rules,
                &f(
                    "198.51.100.1",
                    "x",
                    Some("a@b.test"),
                    Some("abuse@example.org")
                )
            ),
            Decision::Pass
        );
        assert!(matches!(
            decide(
                &rules,
                &f(
                    "198.51.100.1",
                    "x",
                    Some("a@b.test"),
                    Some("x@blocked.example.org")
                )
            ),
            Decision::Reject(_)
        ));
    }
}
