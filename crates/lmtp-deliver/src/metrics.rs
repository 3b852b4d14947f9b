//! lmtp-deliver's Prometheus metrics (`[lmtp] metrics_listen`, served by
//! [`postern_daemon::metrics`]): deliveries by result with their latency, quota refusals,
//! Sieve actions. Label values are `&'static str` from fixed sets.

use std::sync::LazyLock;
use std::time::Instant;

use postern_daemon::metrics::prometheus_client::metrics::counter::Counter;
use postern_daemon::metrics::prometheus_client::metrics::histogram::Histogram;
use postern_daemon::metrics::{Counters, Registry};
use postern_sieve::Action;
use tokio_util::sync::CancellationToken;

/// lmtp-deliver's counters.
pub(crate) struct Metrics {
    deliveries: Counters<1>,
    latency: Histogram,
    quota: Counter,
    sieve: Counters<1>,
}

/// The one set of counters of this process.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    deliveries: Counters::default(),
    latency: postern_daemon::metrics::histogram(),
    quota: Counter::default(),
    sieve: Counters::default(),
});

/// The name of a reply code's result.
fn result(code: u16) -> &'static str {
    match code {
        200..=299 => "delivered",
        400..=499 => "deferred",
        _ => "refused",
    }
}

/// One recipient's delivery, answered with `code`, that began at `started`.
pub(crate) fn delivery(code: u16, started: Instant) {
    METRICS
        .deliveries
        .get_or_create(&[("result", result(code))])
        .inc();
    METRICS
        .latency
        .observe(postern_daemon::metrics::seconds_since(started));
}

/// A recipient refused (or deferred) because the mailbox is over quota.
pub(crate) fn quota() {
    METRICS.quota.inc();
}

/// One action of a user's Sieve script (or the implicit keep).
pub(crate) fn sieve_action(action: &Action) {
    let name = match action {
        Action::Keep { .. } => "keep",
        Action::FileInto { .. } => "fileinto",
        Action::Redirect { .. } => "redirect",
        Action::Discard => "discard",
        Action::Reject { .. } => "reject",
        Action::Vacation(_) => "vacation",
    };
    METRICS.sieve.get_or_create(&[("action", name)]).inc();
}

/// Every metric, under `postern_lmtp_`; the series of the fixed label sets start at 0.
fn registry() -> Registry {
    let m = &*METRICS;
    for r in ["delivered", "deferred", "refused"] {
        drop(m.deliveries.get_or_create(&[("result", r)]));
    }
    for a in [
        "keep", "fileinto", "redirect", "discard", "reject", "vacation",
    ] {
        drop(m.sieve.get_or_create(&[("action", a)]));
    }
    let mut r = Registry::with_prefix("postern_lmtp");
    r.register(
        "deliveries",
        "Recipients handled after DATA by result (delivered = 2xx, deferred = 4xx, refused = 5xx)",
        m.deliveries.clone(),
    );
    r.register(
        "delivery_duration_seconds",
        "Time to deliver one recipient (Sieve, quota, Maildir writes and fsyncs)",
        m.latency.clone(),
    );
    r.register(
        "quota_refusals",
        "Recipients refused because the mailbox was over quota",
        m.quota.clone(),
    );
    r.register(
        "sieve_actions",
        "Actions of users' Sieve scripts (keep includes the implicit keep)",
        m.sieve.clone(),
    );
    r
}

/// Serves the metrics on `[lmtp] metrics_listen` when it is set.
pub(crate) async fn start(
    config: &postern_config::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    postern_daemon::metrics::start(config.lmtp.metrics_listen, registry(), None, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_by_code() {
        assert_eq!(result(250), "delivered");
        assert_eq!(result(452), "deferred");
        assert_eq!(result(552), "refused");
    }
}
