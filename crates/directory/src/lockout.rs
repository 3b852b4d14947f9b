//! Brute-force defence: failed logins counted per remote IP and per account in the
//! database (so several authd instances agree), a growing delay past a threshold, then a
//! lockout that expires and doubles when it recurs.
//!
//! The decision logic ([`next_state`], [`delay_for`]) is pure; the SQL around it is a
//! read, a computed update, and an insert when the row is new.

use std::net::IpAddr;
use std::time::Duration;

use postern_config::Lockout as Policy;

use crate::address::normalize_address;
use crate::sql::{self, Backend, SqlArg};
use crate::{DirectoryError, now};

/// The subject an IP's failures are counted under: the address itself for IPv4, the /64 for
/// IPv6 (`2001:db8:1:2::/64`), so one host cannot rotate through its own /64.
pub fn ip_subject(ip: IpAddr) -> String {
    postern_daemon::per_ip::client_key_text(ip)
}

/// Longest account subject stored (logins longer than an address can be are cut).
const MAX_SUBJECT: usize = 320;

/// The subject an account's failures are counted under. `resolved` is the canonical address
/// the account lookup returned for `login`; without one (no such account), the normalised
/// address (`Alice@Example.ORG.` → `alice@example.org`), else the trimmed, lower-cased login,
/// cut to 320 bytes. Every spelling that reaches one account shares its key.
pub fn account_subject(login: &str, resolved: Option<&str>) -> String {
    if let Some(r) = resolved.map(str::trim).filter(|r| !r.is_empty()) {
        return r.to_lowercase();
    }
    if let Ok(a) = normalize_address(login) {
        return a;
    }
    let mut s = login.trim().to_lowercase();
    if s.len() > MAX_SUBJECT {
        let mut end = MAX_SUBJECT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Whether a login attempt may proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead; a failure answer should wait `delay` first.
    Open {
        /// The delay before a failure answer.
        delay: Duration,
        /// Recent failures of the IP or account (the larger); 0 means nothing to clear on success.
        failures: u32,
    },
    /// Refused without checking the password.
    Locked {
        /// `ip` or `account`.
        scope: &'static str,
        /// The locked IP or account.
        subject: String,
        /// Epoch seconds when it ends.
        until: i64,
    },
}

/// What recording a failure led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// Wait this long before answering.
    pub delay: Duration,
    /// Failures now counted for the IP and the account.
    pub ip_failures: u32,
    /// Failures now counted for the account.
    pub account_failures: u32,
    /// Set when this failure started a lockout: (scope, subject, until).
    pub locked: Option<(&'static str, String, i64)>,
}

/// One row of lockout state, for `mailctl lockout list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockoutRow {
    /// `ip` or `account`.
    pub scope: String,
    /// The IP or the account.
    pub subject: String,
    /// Failures in the current window.
    pub failures: i64,
    /// Last failure, epoch seconds.
    pub last_failure: i64,
    /// End of the lockout (0 or past: not locked).
    pub locked_until: i64,
    /// How many lockouts this subject has had recently.
    pub lockouts: i64,
}

/// The state of one subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct State {
    pub(crate) failures: u32,
    pub(crate) first_failure: i64,
    pub(crate) last_failure: i64,
    pub(crate) locked_until: i64,
    pub(crate) lockouts: u32,
}

/// The state after one more failure at `now`, with `threshold` failures per window.
pub(crate) fn next_state(policy: &Policy, old: Option<State>, now: i64, threshold: u32) -> State {
    let window = i64::try_from(policy.window_secs).unwrap_or(i64::MAX);
    let mut s = old.unwrap_or_default();
    if s.last_failure > 0
        && now.saturating_sub(s.last_failure)
            > i64::try_from(policy.max_lockout_secs).unwrap_or(i64::MAX)
        && s.locked_until <= now
    {
        s.lockouts = 0;
    }
    if s.failures == 0 || now.saturating_sub(s.first_failure) > window {
        s.failures = 0;
        s.first_failure = now;
    }
    s.failures = s.failures.saturating_add(1);
    s.last_failure = now;
    if threshold > 0 && s.failures >= threshold && s.locked_until <= now {
        s.lockouts = s.lockouts.saturating_add(1);
        let factor = 1u64 << (s.lockouts - 1).min(20);
        let secs = policy
            .lockout_secs
            .saturating_mul(factor)
            .min(policy.max_lockout_secs);
        s.locked_until = now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
        s.failures = 0;
        s.first_failure = now;
    }
    s
}

/// The delay before answering after `failures` failures.
pub(crate) fn delay_for(policy: &Policy, failures: u32) -> Duration {
    if failures < policy.delay_after.max(1) {
        return Duration::ZERO;
    }
    let step = (failures - policy.delay_after.max(1)).min(16);
    Duration::from_secs((1u64 << step).min(policy.max_delay_secs))
}

/// The lockout state in the database.
#[derive(Debug, Clone)]
pub struct Lockouts {
    pool: crate::db::Db,
    backend: Backend,
    policy: Policy,
}

impl Lockouts {
    pub(crate) fn new(pool: crate::db::Db, backend: Backend, policy: Policy) -> Self {
        Self {
            pool,
            backend,
            policy,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn load(&self, scope: &str, subject: &str) -> Result<Option<State>, DirectoryError> {
        let rows = sql::rows_own(
            &self.pool,
            self.backend,
            "SELECT failures, first_failure, last_failure, locked_until, lockouts FROM auth_failures WHERE scope = ? AND subject = ?",
            &[SqlArg::Text(scope), SqlArg::Text(subject)],
        )
        .await?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let n = |i| sql::int(r, i).map(|v| v.unwrap_or(0));
        Ok(Some(State {
            failures: u32::try_from(n(0)?.max(0)).unwrap_or(u32::MAX),
            first_failure: n(1)?,
            last_failure: n(2)?,
            locked_until: n(3)?,
            lockouts: u32::try_from(n(4)?.max(0)).unwrap_or(u32::MAX),
        }))
    }

    async fn store(
        &self,
        scope: &str,
        subject: &str,
        old: Option<State>,
        s: State,
    ) -> Result<bool, DirectoryError> {
        let args = [
            SqlArg::Int(i64::from(s.failures)),
            SqlArg::Int(s.first_failure),
            SqlArg::Int(s.last_failure),
            SqlArg::Int(s.locked_until),
            SqlArg::Int(i64::from(s.lockouts)),
            SqlArg::Text(scope),
            SqlArg::Text(subject),
        ];
        if let Some(old) = old {
            // Optimistic: another authd may have written since we read.
            let n = sql::exec_own(
                &self.pool,
                self.backend,
                "UPDATE auth_failures SET failures = ?, first_failure = ?, last_failure = ?, locked_until = ?, lockouts = ? \
                 WHERE scope = ? AND subject = ? AND last_failure = ? AND failures = ?",
                &[&args[..], &[SqlArg::Int(old.last_failure), SqlArg::Int(i64::from(old.failures))]].concat(),
            )
            .await?;
            return Ok(n > 0);
        }
        let r = sql::exec_own(
            &self.pool,
            self.backend,
            "INSERT INTO auth_failures (failures, first_failure, last_failure, locked_until, lockouts, scope, subject) VALUES (?, ?, ?, ?, ?, ?, ?)",
            &args,
        )
        .await;
        match r {
            Ok(_) => Ok(true),
            // A concurrent insert won: read again and retry.
            Err(DirectoryError::Db(sqlx::Error::Database(e))) if e.is_unique_violation() => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts one failure for `subject`; returns the new state.
    async fn bump(
        &self,
        scope: &'static str,
        subject: &str,
        threshold: u32,
    ) -> Result<State, DirectoryError> {
        let now = now();
        for _ in 0..5 {
            let old = self.load(scope, subject).await?;
            let new = next_state(&self.policy, old, now, threshold);
            if self.store(scope, subject, old, new).await? {
                return Ok(new);
            }
        }
        Err(DirectoryError::Conflict(format!(
            "lockout state of {subject} keeps changing"
        )))
    }

    /// Checks whether a login of `account` from `ip` may proceed, before the password is looked at.
    pub async fn check(&self, ip: Option<IpAddr>, account: &str) -> Result<Gate, DirectoryError> {
        if ip.is_some_and(|ip| self.policy.allowed(ip)) {
            return Ok(Gate::Open {
                delay: Duration::ZERO,
                failures: 0,
            });
        }
        let now = now();
        let (mut worst, mut any) = (0, 0);
        let ip_s = ip.map(ip_subject);
        let subjects = [
            ("ip", ip_s.as_deref()),
            ("account", Some(account).filter(|a| !a.is_empty())),
        ];
        for (scope, subject) in subjects {
            let Some(subject) = subject else { continue };
            if let Some(s) = self.load(scope, subject).await? {
                if s.locked_until > now {
                    return Ok(Gate::Locked {
                        scope,
                        subject: subject.to_owned(),
                        until: s.locked_until,
                    });
                }
                any = any.max(s.failures);
                if now.saturating_sub(s.first_failure)
                    <= i64::try_from(self.policy.window_secs).unwrap_or(i64::MAX)
                {
                    worst = worst.max(s.failures);
                }
            }
        }
        Ok(Gate::Open {
            delay: delay_for(&self.policy, worst),
            failures: any,
        })
    }

    /// Records a failed login. Failures from allow-listed networks are not counted.
    pub async fn record_failure(
        &self,
        ip: Option<IpAddr>,
        account: &str,
    ) -> Result<FailureRecord, DirectoryError> {
        let mut rec = FailureRecord {
            delay: Duration::ZERO,
            ip_failures: 0,
            account_failures: 0,
            locked: None,
        };
        if ip.is_some_and(|ip| self.policy.allowed(ip)) {
            return Ok(rec);
        }
        let now = now();
        if let Some(ip) = ip {
            let subject = ip_subject(ip);
            let s = self.bump("ip", &subject, self.policy.ip_threshold).await?;
            rec.ip_failures = s.failures;
            if s.locked_until > now && s.failures == 0 {
                rec.locked = Some(("ip", subject, s.locked_until));
            }
        }
        if !account.is_empty() {
            let s = self
                .bump("account", account, self.policy.account_threshold)
                .await?;
            rec.account_failures = s.failures;
            if s.locked_until > now && s.failures == 0 && rec.locked.is_none() {
                rec.locked = Some(("account", account.to_owned(), s.locked_until));
            }
        }
        let worst = rec.ip_failures.max(rec.account_failures);
        rec.delay = if rec.locked.is_some() {
            Duration::from_secs(self.policy.max_delay_secs)
        } else {
            delay_for(&self.policy, worst)
        };
        Ok(rec)
    }

    /// A successful login clears the failure counts (not an active lockout).
    pub async fn record_success(
        &self,
        ip: Option<IpAddr>,
        account: &str,
    ) -> Result<(), DirectoryError> {
        let now = now();
        let ip_s = ip.map(ip_subject);
        for (scope, subject) in [("ip", ip_s.as_deref()), ("account", Some(account))] {
            let Some(subject) = subject else { continue };
            sql::exec_own(
                &self.pool,
                self.backend,
                "UPDATE auth_failures SET failures = 0 WHERE scope = ? AND subject = ? AND locked_until <= ? AND failures > 0",
                &[SqlArg::Text(scope), SqlArg::Text(subject), SqlArg::Int(now)],
            )
            .await?;
        }
        Ok(())
    }

    /// Every row, locked ones first.
    pub async fn list(&self) -> Result<Vec<LockoutRow>, DirectoryError> {
        let rows = sql::rows_own(
            &self.pool,
            self.backend,
            "SELECT scope, subject, failures, last_failure, locked_until, lockouts FROM auth_failures ORDER BY locked_until DESC, last_failure DESC",
            &[],
        )
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            out.push(LockoutRow {
                scope: sql::text(r, 0)?.unwrap_or_default(),
                subject: sql::text(r, 1)?.unwrap_or_default(),
                failures: sql::int(r, 2)?.unwrap_or(0),
                last_failure: sql::int(r, 3)?.unwrap_or(0),
                locked_until: sql::int(r, 4)?.unwrap_or(0),
                lockouts: sql::int(r, 5)?.unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// Clears the state of one IP or account, or of everything; returns rows removed. The
    /// subject is taken as [`Lockouts::check`] keys it: any address of an IPv6 /64 clears the
    /// /64, any spelling of an address clears the address.
    pub async fn clear(&self, subject: Option<&str>) -> Result<u64, DirectoryError> {
        match subject {
            Some(s) => {
                let s = match s.trim().parse::<IpAddr>() {
                    Ok(ip) => ip_subject(ip),
                    Err(_) => match s
                        .trim()
                        .strip_suffix("/64")
                        .and_then(|ip| ip.parse::<std::net::Ipv6Addr>().ok())
                    {
                        Some(v6) => ip_subject(IpAddr::V6(v6)),
                        None => account_subject(s, None),
                    },
                };
                sql::exec_own(
                    &self.pool,
                    self.backend,
                    "DELETE FROM auth_failures WHERE subject = ?",
                    &[SqlArg::Text(&s)],
                )
                .await
            }
            None => sql::exec_own(&self.pool, self.backend, "DELETE FROM auth_failures", &[]).await,
        }
    }

    /// Forgets rows with no lockout and no failure in the window.
    pub async fn purge_expired(&self) -> Result<u64, DirectoryError> {
        let now = now();
        let keep = i64::try_from(self.policy.window_secs.max(self.policy.max_lockout_secs))
            .unwrap_or(i64::MAX);
        sql::exec_own(
            &self.pool,
            self.backend,
            "DELETE FROM auth_failures WHERE locked_until < ? AND last_failure < ?",
            &[SqlArg::Int(now), SqlArg::Int(now.saturating_sub(keep))],
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            account_threshold: 3,
            lockout_secs: 60,
            max_lockout_secs: 200,
            window_secs: 100,
            delay_after: 2,
            max_delay_secs: 8,
            ..Policy::default()
        }
    }

    #[test]
    fn threshold_locks_and_lockouts_double_up_to_the_cap() {
        let p = policy();
        let mut s = None;
        for t in 0..2 {
            s = Some(next_state(&p, s, 1000 + t, 3));
            assert_eq!(s.unwrap().locked_until, 0);
        }
        let st = next_state(&p, s, 1002, 3);
        assert_eq!(st.locked_until, 1062);
        assert_eq!(st.failures, 0);
        // After it expires, three more failures lock for twice as long, then capped.
        let mut s = Some(st);
        for t in 0..3 {
            s = Some(next_state(&p, s, 1100 + t, 3));
        }
        assert_eq!(s.unwrap().locked_until, 1102 + 120);
        let mut s2 = s;
        for t in 0..3 {
            s2 = Some(next_state(&p, s2, 1300 + t, 3));
        }
        assert_eq!(s2.unwrap().locked_until, 1302 + 200);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let p = policy();
        let s = next_state(&p, None, 1000, 3);
        let s = next_state(&p, Some(s), 1001, 3);
        let s = next_state(&p, Some(s), 1200, 3);
        assert_eq!(s.failures, 1);
        assert_eq!(s.locked_until, 0);
    }

    #[test]
    fn subjects_are_canonical() {
        for login in [
            "alice@example.org",
            "Alice@Example.ORG",
            "alice@example.org.",
            "alice@example.org..",
            "alice@ example.org",
            "alice@\u{a0}Example.org",
            " alice@example.org\u{3000}",
        ] {
            assert_eq!(
                account_subject(login, None),
                "alice@example.org",
                "{login:?}"
            );
        }
        // What the account lookup resolved wins (a case- or accent-insensitive collation).
        assert_eq!(
            account_subject("\u{e4}lice@example.org", Some("Alice@example.org")),
            "alice@example.org"
        );
        // Not an address: trimmed, lower-cased, bounded.
        assert_eq!(account_subject(" Bob ", None), "bob");
        let long = "\u{e9}".repeat(400);
        let s = account_subject(&long, None);
        assert!(s.len() <= MAX_SUBJECT && s.chars().all(|c| c == '\u{e9}'));
        assert_eq!(
            ip_subject("2001:db8:1:2:3:4:5:6".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            ip_subject("::ffff:198.51.100.7".parse().unwrap()),
            "198.51.100.7"
        );
    }

    #[test]
    fn delay_grows_and_is_capped() {
        let p = policy();
        assert_eq!(delay_for(&p, 1), Duration::ZERO);
        assert_eq!(delay_for(&p, 2), Duration::from_secs(1));
        assert_eq!(delay_for(&p, 3), Duration::from_secs(2));
        assert_eq!(delay_for(&p, 10), Duration::from_secs(8));
    }
}
