//! Access rules (`[[smtpd.access]]`): by client network, HELO name, sender and recipient →
//! OK, REJECT, DISCARD or HOLD. The first rule whose every given condition matches decides.

use std::net::IpAddr;

use postern_config::{AccessAction, AccessRule};
use postern_mail_types::{Domain, same_mailbox, try_split};

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

/// `<>` (the null sender), a whole address (`a@b`), or a domain with its subdomains (`b` or
/// `@b`). Local parts compare without regard to ASCII case, domains as [`Domain`]s (any
/// case, U-labels or A-labels).
fn address_matches(pattern: &str, addr: Option<&str>) -> bool {
    let p = pattern.trim();
    let Some(addr) = addr else {
        return p == "<>";
    };
    if p.contains('@') && !p.starts_with('@') {
        return same_mailbox(p, addr);
    }
    let Some((_, ad)) = try_split(addr) else {
        return false;
    };
    Domain::new(ad).is_within(&Domain::new(p.trim_start_matches('@')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_match_in_any_case_and_label_form() {
        // Compared after ASCII-only lower-casing, `BÜCHER.example` was not `bücher.example`
        // and A-labels were not their U-labels: a REJECT rule was passed by spelling the
        // domain another way.
        for pattern in [
            "@bücher.example",
            "bücher.example",
            "@XN--BCHER-KVA.example",
        ] {
            for addr in [
                "a@bücher.example",
                "a@BÜCHER.example",
                "a@xn--bcher-kva.example",
                "a@mx.Bücher.example",
            ] {
                assert!(address_matches(pattern, Some(addr)), "{pattern} {addr}");
            }
            assert!(!address_matches(pattern, Some("a@bucher.example")));
            assert!(!address_matches(pattern, Some("a@xbücher.example")));
        }
        assert!(address_matches(
            "Abuse@BÜCHER.example",
            Some("abuse@bücher.example")
        ));
        assert!(address_matches(
            "abuse@bücher.example",
            Some("ABUSE@xn--bcher-kva.example")
        ));
        assert!(!address_matches(
            "abuse@bücher.example",
            Some("abuse2@bücher.example")
        ));
        // A domain inside a quoted local part is not the address's domain.
        assert!(!address_matches(
            "@evil.test",
            Some("\"a@evil.test\"@good.example")
        ));
        assert!(address_matches(
            "\"A@evil.test\"@Good.example",
            Some("\"a@evil.test\"@good.example")
        ));
        // The null sender only matches `<>`, and `<>` no address.
        assert!(address_matches(" <> ", None));
        assert!(!address_matches("@example.org", None));
        assert!(!address_matches("<>", Some("a@example.org")));
    }

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
