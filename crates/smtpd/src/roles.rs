//! RFC duties at `RCPT`: mail for the postmaster (RFC 5321 §4.5.1: `RCPT TO:<postmaster>`,
//! which the session turns into `postmaster@` our hostname, and `postmaster@` each of our
//! domains) and for `abuse@` each of our domains (RFC 2142, unless `[smtpd] accept_abuse`
//! is off) is accepted on every door.
//!
//! Where it goes: a domain's own alias or mailbox for the address wins (the usual lookup);
//! otherwise `[smtpd] postmaster` (or `abuse`), looked up in turn like any recipient, so it
//! may be an alias or an address elsewhere that the admin chose. Nothing else changes: the
//! address is only a recipient, looked up after the access rules and before greylisting,
//! like any other; `postmaster@` someone else's domain is relayed or refused as usual; and
//! our hostname's postmaster never goes to the hostname's MX (a relay path back to us).

use postern_config::Config;
use postern_smtp_session::{Address, Reply};
use tracing::{info, warn};

use crate::policy::{Lookups, Target};

/// A role address of RFC 5321 / RFC 2142.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Postmaster,
    Abuse,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Self::Postmaster => "postmaster",
            Self::Abuse => "abuse",
        }
    }
}

/// The role `rcpt` names, whatever its domain (the caller checks the domain is ours).
pub(crate) fn role_of(config: &Config, rcpt: &Address) -> Option<Role> {
    let local = rcpt.local_part();
    if local.eq_ignore_ascii_case("postmaster") {
        Some(Role::Postmaster)
    } else if local.eq_ignore_ascii_case("abuse") && config.smtpd.accept_abuse {
        Some(Role::Abuse)
    } else {
        None
    }
}

/// The configured address for `role` (`abuse` falls back to `postmaster`).
pub(crate) fn configured(config: &Config, role: Role) -> Option<&str> {
    let s = &config.smtpd;
    match role {
        Role::Postmaster => s.postmaster.as_deref(),
        Role::Abuse => s.abuse.as_deref().or(s.postmaster.as_deref()),
    }
    .map(str::trim)
    .filter(|a| !a.is_empty())
}

/// Whether a lookup's refusal means "no such user" (and not a temporary failure or an
/// alias that is refused on purpose).
fn user_unknown(r: &Reply) -> bool {
    r.code() == 550 && r.enhanced() == Some((5, 1, 1).into())
}

/// Where mail for `rcpt` goes: [`Lookups::recipient`], with the role addresses above.
pub(crate) async fn recipient(
    lookups: &mut Lookups,
    config: &Config,
    rcpt: &Address,
    relay_allowed: bool,
    delimiter: &str,
) -> Result<Vec<Target>, Reply> {
    let Some(role) = role_of(config, rcpt) else {
        return lookups.recipient(rcpt, relay_allowed, delimiter).await;
    };
    let our_host = role == Role::Postmaster && rcpt.domain().eq_ignore_ascii_case(&config.hostname);
    let local = match lookups.is_local_domain(rcpt.domain()).await {
        Ok(l) => l,
        Err(why) => {
            warn!(rcpt = %rcpt, reason = %why, "recipient lookup failed");
            return Err(Reply::new(
                451,
                (4, 3, 0),
                format!("<{rcpt}> Temporary lookup failure, try again later"),
            ));
        }
    };
    if !local && !our_host {
        // Someone else's postmaster: relayed or refused like any address there.
        return lookups.recipient(rcpt, relay_allowed, delimiter).await;
    }
    if local {
        // The domain's own alias (or mailbox) wins; never relayed from here.
        match lookups.recipient(rcpt, false, delimiter).await {
            Ok(t) => return Ok(t),
            Err(r) if user_unknown(&r) => {}
            Err(r) => return Err(r),
        }
    }
    let unknown = || {
        Reply::new(
            550,
            (5, 1, 1),
            format!("<{rcpt}> Recipient address rejected: User unknown"),
        )
    };
    let Some(to) = configured(config, role) else {
        info!(
            rcpt = %rcpt,
            "no alias for this {} address and no [smtpd] postmaster: refused",
            role.name()
        );
        return Err(unknown());
    };
    let misconfigured = |why: String| {
        warn!(rcpt = %rcpt, to, reason = %why, "[smtpd] {} address not usable", role.name());
        Reply::new(
            451,
            (4, 3, 5),
            format!("<{rcpt}> Temporary local problem, try again later"),
        )
    };
    let to_addr = Address::parse(to).map_err(|e| misconfigured(e.to_string()))?;
    // The admin's choice: it may be an alias, or an address elsewhere.
    match lookups.recipient(&to_addr, true, delimiter).await {
        Ok(t) => {
            info!(rcpt = %rcpt, to, "{} address: to [smtpd] {}", role.name(), role.name());
            Ok(t)
        }
        Err(r) => Err(misconfigured(r.lines().join(" "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!("hostname = \"mail.example.org\"\n[smtpd]\n{extra}\n"),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap()
    }

    fn addr(a: &str) -> Address {
        Address::parse(a).unwrap()
    }

    #[test]
    fn role_addresses_in_any_case() {
        let c = config("");
        assert_eq!(
            role_of(&c, &addr("postmaster@example.org")),
            Some(Role::Postmaster)
        );
        assert_eq!(
            role_of(&c, &addr("PostMaster@Mail.Example.org")),
            Some(Role::Postmaster)
        );
        assert_eq!(role_of(&c, &addr("ABUSE@example.org")), Some(Role::Abuse));
        assert_eq!(role_of(&c, &addr("postmaster+x@example.org")), None);
        assert_eq!(role_of(&c, &addr("post.master@example.org")), None);
        assert_eq!(role_of(&c, &addr("alice@example.org")), None);
        let off = config("accept_abuse = false");
        assert_eq!(role_of(&off, &addr("abuse@example.org")), None);
        assert_eq!(
            role_of(&off, &addr("postmaster@example.org")),
            Some(Role::Postmaster)
        );
    }

    #[test]
    fn configured_addresses() {
        let c = config("");
        assert_eq!(configured(&c, Role::Postmaster), None);
        assert_eq!(configured(&c, Role::Abuse), None);
        let c = config("postmaster = \"admin@example.org\"");
        assert_eq!(configured(&c, Role::Postmaster), Some("admin@example.org"));
        assert_eq!(configured(&c, Role::Abuse), Some("admin@example.org"));
        let c = config("postmaster = \"admin@example.org\"\nabuse = \"desk@example.org\"");
        assert_eq!(configured(&c, Role::Abuse), Some("desk@example.org"));
    }

    #[test]
    fn only_user_unknown_falls_through() {
        assert!(user_unknown(&Reply::new(550, (5, 1, 1), "x")));
        assert!(!user_unknown(&Reply::new(451, (4, 3, 0), "x")));
        assert!(!user_unknown(&Reply::new(550, (5, 4, 6), "alias loop")));
        assert!(!user_unknown(&Reply::new(554, (5, 7, 1), "relay")));
    }

    #[test]
    fn the_config_refuses_a_role_address_that_is_not_one() {
        for bad in ["admin", "<admin@x>", "a b@x", "@x", "a@"] {
            let text = format!("hostname = \"h\"\n[smtpd]\npostmaster = \"{bad}\"\n");
            assert!(
                Config::parse(&text, std::path::Path::new("/nonexistent")).is_err(),
                "{bad}"
            );
        }
    }
}
