//! smtpd's cluster-wide policy state on the `socketmap` socket: two maps of our own that
//! smtpd asks when it runs as a cluster member (`[smtpd] shared_policy`), so that every
//! front counts a user's messages and greylists a triplet alike, in the shared database.
//!
//! | map | key | answers |
//! |-----|-----|---------|
//! | `sendlimit` | `LIMIT USER` | `ok N` (counted: N sent in the hour, this one included) or `full N SECS` (nothing counted; room again in SECS) |
//! | `greylist` | `DELAY WINDOW ALLOW NET\|SENDER\|RCPT` | `pass` or `defer SECS` |
//!
//! A database failure is `TEMP` (smtpd then falls back to its own node-local state), a
//! malformed key `PERM`. These answers are never cached.
//!
//! Unlike the other maps, a lookup here changes state (it counts a message, records a
//! triplet). That is acceptable because they are internal maps of our own authd: the keys
//! carry smtpd's settings, so a Postfix table lookup (a bare address) can only get `PERM`
//! for a malformed key and changes nothing, and they are never named in Postfix's
//! `main.cf`. A new request on the same socket keeps the one connection pool smtpd already
//! has for its RCPT lookups, and the socketmap framing (netstrings, bounded request size)
//! that already guards it; a separate socket or protocol would have added both again.
//! smtpd retries a lookup once on a broken connection, so a reply lost on the wire may count
//! one message twice: that errs on the safe side of a sending limit.

use postern_auth_proto::socketmap::Reply;
use postern_directory::{GreylistTiming, GreylistVerdict, SendCount, SharedPolicy};
use tracing::warn;

/// Longest timing accepted in a `greylist` key (ten years, in seconds).
const MAX_SECS: u64 = 10 * 366 * 86_400;

/// The answer when `map` is one of the policy maps; `None` for any other map.
pub(crate) async fn answer(policy: &SharedPolicy, map: &str, key: &str) -> Option<Reply> {
    match map {
        "sendlimit" => Some(sendlimit(policy, key).await),
        "greylist" => Some(greylist(policy, key).await),
        _ => None,
    }
}

fn temp(map: &str, e: &postern_directory::DirectoryError) -> Reply {
    warn!(map, error = %e, "shared policy lookup failed");
    Reply::Temp("directory temporarily unavailable".into())
}

async fn sendlimit(policy: &SharedPolicy, key: &str) -> Reply {
    let mut f = key.trim().splitn(2, ' ');
    let (Some(limit), Some(user)) = (f.next(), f.next()) else {
        return Reply::Perm("sendlimit key: LIMIT USER".into());
    };
    let Ok(limit) = limit.parse::<u32>() else {
        return Reply::Perm("sendlimit key: LIMIT USER (LIMIT a number)".into());
    };
    let user = user.trim();
    if user.is_empty() || user.len() > 320 || user.chars().any(char::is_whitespace) {
        return Reply::Perm("sendlimit key: USER of 1 to 320 bytes, no spaces".into());
    }
    match policy.count_message(user, limit).await {
        Ok(SendCount::Counted(n)) => Reply::Ok(format!("ok {n}")),
        Ok(SendCount::Full(n, secs)) => Reply::Ok(format!("full {n} {secs}")),
        Err(e) => temp("sendlimit", &e),
    }
}

async fn greylist(policy: &SharedPolicy, key: &str) -> Reply {
    let f: Vec<&str> = key.trim().splitn(4, ' ').collect();
    let num = |s: &str| s.parse::<u64>().ok().filter(|v| *v <= MAX_SECS);
    let (Some(delay), Some(window), Some(allow), Some(triplet)) = (
        f.first().and_then(|s| num(s)),
        f.get(1).and_then(|s| num(s)),
        f.get(2).and_then(|s| num(s)),
        f.get(3).map(|s| s.trim()),
    ) else {
        return Reply::Perm("greylist key: DELAY WINDOW ALLOW NET|SENDER|RCPT".into());
    };
    if triplet.is_empty()
        || triplet.len() > 600
        || triplet.split('|').count() < 3
        || triplet.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Reply::Perm("greylist key: a triplet NET|SENDER|RCPT of at most 600 bytes".into());
    }
    let t = GreylistTiming {
        delay,
        window,
        allow,
    };
    match policy.greylist(triplet, t).await {
        Ok(GreylistVerdict::Pass) => Reply::Ok("pass".into()),
        Ok(GreylistVerdict::Defer(secs)) => Reply::Ok(format!("defer {secs}")),
        Err(e) => temp("greylist", &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn directory(dir: &std::path::Path, url: &str) -> postern_directory::Directory {
        let text = format!(
            "hostname = \"mx.example.org\"\n[paths]\nstate_dir = \"{d}\"\nrun_dir = \"{d}\"\n[database]\nurl = \"{url}\"\n",
            d = dir.display()
        );
        let config = postern_config::Config::parse(&text, dir).unwrap();
        postern_directory::Directory::open(&config).await.unwrap()
    }

    #[tokio::test]
    async fn policy_maps_count_greylist_and_refuse_nonsense() {
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/postern.db", tmp.path().display());
        let dir = directory(tmp.path(), &url).await;
        let p = dir.shared_policy();
        let ok = |s: &str| Some(Reply::Ok(s.into()));
        // Counting: two allowed, the third is full; never a cached answer (each asks again).
        assert_eq!(
            answer(&p, "sendlimit", "2 Alice@example.org").await,
            ok("ok 1")
        );
        assert_eq!(
            answer(&p, "sendlimit", "2 alice@example.org").await,
            ok("ok 2")
        );
        let Some(Reply::Ok(full)) = answer(&p, "sendlimit", "2 alice@example.org").await else {
            panic!("not OK");
        };
        assert!(full.starts_with("full 2 "), "{full}");
        // Greylisting with no delay: deferred once, then passed.
        let key = "0 3600 86400 127.0.0.0/24|a@x.test|b@y.test";
        assert_eq!(answer(&p, "greylist", key).await, ok("defer 0"));
        assert_eq!(answer(&p, "greylist", key).await, ok("pass"));
        // Postfix-style lookups (a bare address) and other nonsense: PERM, nothing written.
        for (map, key) in [
            ("sendlimit", "alice@example.org"),
            ("sendlimit", "-1 alice@example.org"),
            ("sendlimit", "5 a b"),
            ("greylist", "alice@example.org"),
            ("greylist", "1 2 3 no-triplet"),
            ("greylist", "1 2 99999999999999 a|b|c"),
        ] {
            assert!(
                matches!(answer(&p, map, key).await, Some(Reply::Perm(_))),
                "{map} {key}"
            );
        }
        let long = format!("1 2 3 {}|b|c", "a".repeat(600));
        assert!(matches!(
            answer(&p, "greylist", &long).await,
            Some(Reply::Perm(_))
        ));
        assert_eq!(answer(&p, "domains", "example.org").await, None);
        // A database that is gone: TEMP (smtpd falls back to its local state).
        dir.close().await;
        assert!(matches!(
            answer(&p, "sendlimit", "2 bob@example.org").await,
            Some(Reply::Temp(_))
        ));
        assert!(matches!(
            answer(&p, "greylist", key).await,
            Some(Reply::Temp(_))
        ));
    }
}
