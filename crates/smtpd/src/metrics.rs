//! smtpd's Prometheus metrics (`[smtpd] metrics_listen`, served by
//! [`postern_daemon::metrics`]). Counters live in [`METRICS`] and are bumped where things
//! happen; the check refusals are not counted twice but read from [`Stats`] (what
//! `mailctl stats` shows) at each scrape, and the queue's length and oldest message are
//! asked of the queue manager then.
//!
//! Every label value is a `&'static str` from a fixed set (doors, results, transports; the
//! reasons of [`Stats`] are a fixed set plus one per configured DNSBL zone).

use std::sync::{Arc, LazyLock};

use postern_daemon::metrics::prometheus_client::collector::Collector;
use postern_daemon::metrics::prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use postern_daemon::metrics::prometheus_client::metrics::counter::{ConstCounter, Counter};
use postern_daemon::metrics::prometheus_client::metrics::gauge::Gauge;
use postern_daemon::metrics::{Counters, Refresh, Registry};
use postern_queue::{Destination, Filter};
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::checks::Stats;
use crate::outbound::Outcome;
use crate::policy::Door;
use crate::qmgr::{QueueAnswer, QueueCmd};

/// smtpd's counters.
pub(crate) struct Metrics {
    connections: Counters<1>,
    messages: Counters<2>,
    bytes: Counter,
    deliveries: Counters<2>,
    dsns: Counter,
    outbound: Counters<1>,
    queue_messages: Gauge,
    queue_oldest: Gauge,
}

/// The one set of counters of this process.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    connections: Counters::default(),
    messages: Counters::default(),
    bytes: Counter::default(),
    deliveries: Counters::default(),
    dsns: Counter::default(),
    outbound: Counters::default(),
    queue_messages: Gauge::default(),
    queue_oldest: Gauge::default(),
});

/// A connection accepted on `door` (past the connection limits).
pub(crate) fn connection(door: Door) {
    METRICS
        .connections
        .get_or_create(&[("door", door.name())])
        .inc();
}

/// The end of one message's DATA on `door`: accepted when `code` is 2xx, else refused (5xx)
/// or deferred (4xx).
pub(crate) fn message(door: Door, code: u16) {
    let result = match code {
        200..=299 => "accepted",
        500..=599 => "refused",
        _ => "deferred",
    };
    METRICS
        .messages
        .get_or_create(&[("door", door.name()), ("result", result)])
        .inc();
}

/// `size` bytes of an accepted message committed to the queue.
pub(crate) fn received(size: u64) {
    METRICS.bytes.inc_by(size);
}

/// One recipient's delivery attempt ended with `outcome`.
pub(crate) fn delivery(destination: Option<Destination>, outcome: &Outcome) {
    let transport = match destination {
        Some(Destination::Local) => "lmtp",
        Some(Destination::Remote) => "smtp",
        None => "unrouted",
    };
    let result = match outcome {
        Outcome::Delivered(_) => "delivered",
        Outcome::Bounced(_) => "bounced",
        Outcome::Deferred(_) => "deferred",
    };
    METRICS
        .deliveries
        .get_or_create(&[("result", result), ("transport", transport)])
        .inc();
}

/// `recipients` handed to another domain's server in one SMTP transaction, over TLS or not.
pub(crate) fn outbound(tls: bool, recipients: usize) {
    let tls = if tls { "yes" } else { "no" };
    METRICS
        .outbound
        .get_or_create(&[("tls", tls)])
        .inc_by(u64::try_from(recipients).unwrap_or(u64::MAX));
}

/// A delivery status notification queued.
pub(crate) fn dsn() {
    METRICS.dsns.inc();
}

/// The refusals of the checks by reason, read from [`Stats`] at each scrape.
struct StatsCollector(Arc<Ctx>);

impl std::fmt::Debug for StatsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsCollector")
    }
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_stats(&self.0.checks.stats, &mut encoder)
    }
}

fn encode_stats(stats: &Stats, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let counts = stats.snapshot();
    let counter = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(
        "postern_smtpd_check_results",
        "Outcomes of the port-25 checks by reason, as `mailctl stats` shows them: refusals \
         (rate_limit, early_talker, helo, dnsbl, spf, dmarc, greylist ...) and dmarc_quarantine",
        None,
        counter.metric_type(),
    )?;
    for (reason, n) in counts {
        let labels = [("reason", reason.as_str())];
        ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Reads the queue's length and its oldest message's age into the gauges.
async fn refresh_queue(ctx: Arc<Ctx>) {
    if let Ok(QueueAnswer::List(entries)) =
        ctx.queue.control(QueueCmd::List(Filter::default())).await
    {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let oldest = entries.iter().map(|e| e.arrival).min();
        METRICS
            .queue_messages
            .set(i64::try_from(entries.len()).unwrap_or(i64::MAX));
        METRICS
            .queue_oldest
            .set(oldest.map_or(0, |a| now.saturating_sub(a).max(0)));
    }
}

/// Every metric of smtpd, under `postern_smtpd_`; the series of the fixed label sets
/// start at 0, so that rates and dashboards see them before the first event.
fn registry(ctx: &Arc<Ctx>) -> Registry {
    let m = &*METRICS;
    for door in [Door::Mx, Door::Submission, Door::Submissions] {
        drop(m.connections.get_or_create(&[("door", door.name())]));
        for result in ["accepted", "refused", "deferred"] {
            drop(
                m.messages
                    .get_or_create(&[("door", door.name()), ("result", result)]),
            );
        }
    }
    for tls in ["yes", "no"] {
        drop(m.outbound.get_or_create(&[("tls", tls)]));
    }
    for result in ["delivered", "deferred", "bounced"] {
        for transport in ["lmtp", "smtp"] {
            drop(
                m.deliveries
                    .get_or_create(&[("result", result), ("transport", transport)]),
            );
        }
    }
    let mut r = Registry::default();
    let s = r.sub_registry_with_prefix("postern_smtpd");
    s.register(
        "connections",
        "Connections accepted, by door (smtp = port 25, submission = 587, submissions = 465)",
        m.connections.clone(),
    );
    s.register(
        "messages",
        "Messages at the end of DATA/BDAT by door and result (accepted, refused = 5xx, \
         deferred = 4xx)",
        m.messages.clone(),
    );
    s.register(
        "received_bytes",
        "Bytes of the messages accepted into the queue",
        m.bytes.clone(),
    );
    s.register(
        "deliveries",
        "Delivery attempts per recipient by result (delivered, deferred, bounced) and \
         transport (lmtp = local, smtp = other domains)",
        m.deliveries.clone(),
    );
    s.register(
        "dsns",
        "Delivery status notifications (bounces, delays, successes) queued",
        m.dsns.clone(),
    );
    s.register(
        "outbound_recipients",
        "Recipients sent in SMTP transactions to other domains' servers, by TLS use (yes, no)",
        m.outbound.clone(),
    );
    s.register(
        "queue_messages",
        "Messages in the queue (as of the last scrape)",
        m.queue_messages.clone(),
    );
    s.register(
        "queue_oldest_seconds",
        "Age of the oldest message in the queue, in seconds (0: empty)",
        m.queue_oldest.clone(),
    );
    r.register_collector(Box::new(StatsCollector(ctx.clone())));
    r
}

/// Serves the metrics on `[smtpd] metrics_listen` when it is set.
pub(crate) async fn start(ctx: &Arc<Ctx>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = ctx.config.smtpd.metrics_listen else {
        return Ok(());
    };
    let c = ctx.clone();
    let refresh: Refresh = Arc::new(move || Box::pin(refresh_queue(c.clone())));
    postern_daemon::metrics::start(Some(addr), registry(ctx), Some(refresh), shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_daemon::metrics::prometheus_client::encoding::prometheus_text::encode;

    struct Only(Arc<Stats>);
    impl std::fmt::Debug for Only {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Only")
        }
    }
    impl Collector for Only {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
            encode_stats(&self.0, &mut encoder)
        }
    }

    #[test]
    fn check_results_come_from_the_stats() {
        let stats = Arc::new(Stats::default());
        stats.count("greylist");
        stats.count("greylist");
        stats.count("dnsbl:zen.example");
        let mut r = Registry::default();
        r.register_collector(Box::new(Only(stats.clone())));
        let mut out = String::new();
        encode(&mut out, &r).unwrap();
        assert!(
            out.contains("# TYPE postern_smtpd_check_results_total counter\n"),
            "{out}"
        );
        assert!(
            out.contains("postern_smtpd_check_results_total{reason=\"greylist\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("{reason=\"dnsbl:zen.example\"} 1\n"), "{out}");
    }
}
