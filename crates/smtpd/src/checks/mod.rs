//! Trust at the door: checks on mail arriving on port 25 from clients outside
//! `[smtpd] trusted_networks` that have not authenticated (never on 587/465).
//!
//! - [`helo`]: HELO/EHLO hygiene and forward-confirmed reverse DNS (at MAIL);
//! - [`dnsbl`]: DNS blocklists of the client IP and the sender's domain (at MAIL);
//! - [`spf_dkim_dmarc`]: SPF at MAIL; DKIM and DMARC after DATA; the
//!   `Authentication-Results` header; DMARC `p=reject` / `p=quarantine` (Junk);
//! - [`greylist`]: greylisting of (network, sender, recipient) at RCPT, kept in a file;
//! - early talkers and per-IP connection rates (at connect), here.
//!
//! Every refusal is logged with its reason and counted in [`Stats`] (`mailctl stats`).

pub(crate) mod dnsbl;
pub(crate) mod greylist;
pub(crate) mod helo;
pub(crate) mod spf_dkim_dmarc;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use mail_auth::MessageAuthenticator;
use postern_config::Config;

/// Counts of refusals (and other outcomes) by reason, since smtpd started.
#[derive(Default)]
pub(crate) struct Stats(Mutex<BTreeMap<String, u64>>);

impl Stats {
    /// Adds one to `reason`.
    pub(crate) fn count(&self, reason: &str) {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Reasons are a fixed set plus one per configured zone: bounded.
        *m.entry(reason.to_owned()).or_insert(0) += 1;
    }

    /// A copy of the counts.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the checks share: the settings, one resolver, caches and state.
pub(crate) struct Checks {
    pub(crate) cfg: postern_config::Checks,
    pub(crate) hostname: String,
    /// SPF/DKIM/DMARC over the `[dns]` resolver.
    pub(crate) auth: MessageAuthenticator,
    pub(crate) dnsbl: dnsbl::Cache,
    pub(crate) greylist: Option<greylist::Greylist>,
    /// Our own listening addresses (a client claiming one in HELO is lying).
    pub(crate) own_ips: Vec<IpAddr>,
    rate: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    pub(crate) stats: Stats,
}

impl Checks {
    pub(crate) fn new(config: &Config) -> anyhow::Result<Self> {
        let resolver = postern_dns::checks_resolver(config)?;
        let greylist = if config.checks.greylist {
            Some(
                greylist::Greylist::open(
                    config.state_dir().join("greylist"),
                    greylist::Timing {
                        delay: config.checks.greylist_delay_secs.get(),
                        window: config.checks.greylist_retry_window_secs.get(),
                        allow: config.checks.greylist_allow_secs.get(),
                    },
                )?
                .in_directory(crate::limits::in_directory(config)),
            )
        } else {
            None
        };
        let own_ips = config
            .smtpd
            .listen
            .iter()
            .chain(&config.smtpd.submission)
            .chain(&config.smtpd.submissions)
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified())
            .collect();
        Ok(Self {
            cfg: config.checks.clone(),
            hostname: config.hostname.trim_end_matches('.').to_ascii_lowercase(),
            auth: MessageAuthenticator(resolver),
            dnsbl: dnsbl::Cache::default(),
            greylist,
            own_ips,
            rate: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        })
    }

    pub(crate) fn resolver(&self) -> &TokioResolver {
        &self.auth.0
    }

    /// Counts a new connection from `ip` (an IPv6 client by its /64); false when it exceeds
    /// `max_connection_rate_per_ip` in the current minute.
    pub(crate) fn rate_ok(&self, ip: IpAddr) -> bool {
        rate_ok(
            &self.rate,
            postern_daemon::per_ip::client_key(ip),
            self.cfg.max_connection_rate_per_ip,
            Instant::now(),
        )
    }

    /// Logs (in the session's span, which names the client) and counts a refusal.
    pub(crate) fn refused(&self, reason: &str, detail: &str) {
        tracing::info!(reason, detail, "refused by check");
        self.stats.count(reason);
    }
}

impl Checks {
    /// A fresh DNS time budget for one transaction (`dns_budget_ms`).
    pub(crate) fn budget(&self) -> Budget {
        Budget::new(self.cfg.dns_budget_ms.duration())
    }
}

/// The time one message may wait for the DNS of its checks, all of them together (at MAIL
/// and after DATA). Each lookup runs [`Budget::within`] what is left; once it is spent,
/// lookups end at once as unknown, which the checks report as `temperror`.
#[derive(Debug)]
pub(crate) struct Budget {
    /// Microseconds left.
    left_us: AtomicU64,
}

impl Default for Budget {
    fn default() -> Self {
        Self::new(Duration::from_secs(2))
    }
}

impl Budget {
    pub(crate) fn new(total: Duration) -> Self {
        Self {
            left_us: AtomicU64::new(u64::try_from(total.as_micros()).unwrap_or(u64::MAX)),
        }
    }

    /// Runs `lookup` within the time left; `None` when it did not finish in time (then
    /// nothing is left). The time it took is taken off the budget.
    pub(crate) async fn within<T>(&self, lookup: impl Future<Output = T>) -> Option<T> {
        let left = Duration::from_micros(self.left_us.load(Ordering::Relaxed));
        if left.is_zero() {
            return None;
        }
        let start = Instant::now();
        let out = tokio::time::timeout(left, lookup).await.ok();
        let spent = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .left_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| {
                Some(l.saturating_sub(spent))
            });
        if out.is_none() {
            self.left_us.store(0, Ordering::Relaxed);
        }
        out
    }
    /// Runs `lookup` [within](Self::within) the budget, again (up to [`TRIES`] in all) while
    /// its answer is a temporary failure (`temporary` says which are): a lost UDP packet
    /// costs one short resolver timeout, then the question is asked again (answers already
    /// received are cached, so only what was lost goes out again). `None` when the budget
    /// ran out first.
    pub(crate) async fn retrying<T, F>(
        &self,
        mut lookup: impl FnMut() -> F,
        temporary: impl Fn(&T) -> bool,
    ) -> Option<T>
    where
        F: Future<Output = T>,
    {
        let mut tries = 1;
        loop {
            let out = self.within(lookup()).await?;
            if tries >= TRIES || !temporary(&out) {
                return Some(out);
            }
            tries += 1;
        }
    }
}

/// Tries of a check's lookups that fail temporarily (a lost packet, SERVFAIL), within the
/// message's DNS time budget.
pub(crate) const TRIES: u32 = 3;

const MINUTE: Duration = Duration::from_secs(60);

fn rate_ok(
    rate: &Mutex<HashMap<IpAddr, (Instant, u32)>>,
    ip: IpAddr,
    limit: u32,
    now: Instant,
) -> bool {
    if limit == 0 {
        return true;
    }
    let mut m = rate.lock().unwrap_or_else(|e| e.into_inner());
    if m.len() > 100_000 {
        m.retain(|_, (start, _)| now.saturating_duration_since(*start) < MINUTE);
    }
    let e = m.entry(ip).or_insert((now, 0));
    if now.saturating_duration_since(e.0) >= MINUTE {
        *e = (now, 0);
    }
    e.1 += 1;
    e.1 <= limit
}

/// Keeps header text to one safe line: no control characters, at most 200 characters.
pub(crate) fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && *c != ';')
        .take(200)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_rate_per_minute() {
        let m = Mutex::new(HashMap::new());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(rate_ok(&m, ip, 3, t0));
        }
        assert!(!rate_ok(&m, ip, 3, t0 + Duration::from_secs(10)));
        assert!(rate_ok(&m, other, 3, t0));
        assert!(
            rate_ok(&m, ip, 3, t0 + Duration::from_secs(61)),
            "new minute"
        );
        assert!(rate_ok(&m, ip, 0, t0), "0 = no limit");
    }

    #[tokio::test]
    async fn budget_is_shared_by_the_lookups_of_a_message() {
        let b = Budget::new(Duration::from_millis(300));
        assert_eq!(b.within(async { 1 }).await, Some(1));
        let t = Instant::now();
        let slow = b.within(tokio::time::sleep(Duration::from_secs(5))).await;
        assert!(slow.is_none(), "cut at the budget");
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        let t = Instant::now();
        assert!(
            b.within(tokio::time::sleep(Duration::from_secs(5)))
                .await
                .is_none()
        );
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "nothing left: at once"
        );
    }

    #[tokio::test]
    async fn temporary_failures_are_asked_again_within_the_budget() {
        let b = Budget::new(Duration::from_secs(2));
        let mut calls = 0;
        let out = b
            .retrying(
                || {
                    calls += 1;
                    let n = calls;
                    async move { if n < 2 { Err("lost") } else { Ok(n) } }
                },
                Result::is_err,
            )
            .await;
        assert_eq!(out, Some(Ok(2)), "the second try answered");
        let mut calls = 0;
        let out: Option<Result<u32, &str>> = b
            .retrying(
                || {
                    calls += 1;
                    async { Err("servfail") }
                },
                Result::is_err,
            )
            .await;
        assert_eq!(out, Some(Err("servfail")));
        assert_eq!(calls, TRIES, "bounded");
    }

    #[test]
    fn stats_count_by_reason() {
        let s = Stats::default();
        s.count("helo");
        s.count("helo");
        s.count("dnsbl:zen.test");
        let snap = s.snapshot();
        assert_eq!(snap["helo"], 2);
        assert_eq!(snap["dnsbl:zen.test"], 1);
    }
}
