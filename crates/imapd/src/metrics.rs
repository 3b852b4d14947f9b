//! imapd's Prometheus metrics (`[imapd] metrics_listen`, served by
//! [`postern_daemon::metrics`]): connections and logins by protocol, IMAP, POP3 and
//! ManageSieve commands by name with their latency, IDLE sessions. Label values are
//! `&'static str` from fixed sets: an IMAP command is labelled by imap-codec's name of the
//! parsed command (a fixed list), a POP3 or ManageSieve command by its name in the
//! protocol's command list, or `unknown`; never by what the client typed.

use std::sync::LazyLock;
use std::time::Instant;

use imap_codec::imap_types::command::CommandBody;
use postern_daemon::metrics::prometheus_client::metrics::gauge::Gauge;
use postern_daemon::metrics::{Counters, Histograms, Registry};
use tokio_util::sync::CancellationToken;

use crate::Door;

/// imapd's counters.
pub(crate) struct Metrics {
    connections: Counters<1>,
    logins: Counters<2>,
    commands: Counters<1>,
    latency: Histograms<1>,
    idle: Gauge,
    pop3_commands: Counters<1>,
    pop3_latency: Histograms<1>,
    sieve_commands: Counters<1>,
    sieve_latency: Histograms<1>,
}

/// The one set of counters of this process.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    connections: Counters::default(),
    logins: Counters::default(),
    commands: Counters::default(),
    latency: postern_daemon::metrics::histograms(),
    idle: Gauge::default(),
    pop3_commands: Counters::default(),
    pop3_latency: postern_daemon::metrics::histograms(),
    sieve_commands: Counters::default(),
    sieve_latency: postern_daemon::metrics::histograms(),
});

/// A connection accepted on `door` (past the connection limits).
pub(crate) fn connection(door: Door) {
    METRICS
        .connections
        .get_or_create(&[("protocol", door.name())])
        .inc();
}

/// A login through authd for `service` (`imap`, `pop3`, `sieve`): `ok`, `fail` or
/// `tempfail`.
pub(crate) fn login(service: &'static str, result: &'static str) {
    let protocol = match service {
        "imap" => "imap",
        "pop3" => "pop3",
        "sieve" => "managesieve",
        _ => "other",
    };
    METRICS
        .logins
        .get_or_create(&[("protocol", protocol), ("result", result)])
        .inc();
}

/// Times one command from its arrival until it is answered (on drop).
pub(crate) struct CommandTimer {
    name: &'static str,
    started: Instant,
    latency: &'static Histograms<1>,
}

impl CommandTimer {
    /// Counts `body` and starts its timer.
    pub(crate) fn start(body: &CommandBody<'_>) -> Self {
        Self::named(body.name())
    }

    /// Counts a command known by name (`AUTHENTICATE`, `IDLE`, which imap-next reports apart).
    pub(crate) fn named(name: &'static str) -> Self {
        METRICS.commands.get_or_create(&[("command", name)]).inc();
        Self {
            name,
            started: Instant::now(),
            latency: &METRICS.latency,
        }
    }

    /// Counts a POP3 command (its name from [`crate::pop3::session::COMMANDS`] or
    /// `unknown`) and starts its timer.
    pub(crate) fn pop3(name: &'static str) -> Self {
        METRICS
            .pop3_commands
            .get_or_create(&[("command", name)])
            .inc();
        Self {
            name,
            started: Instant::now(),
            latency: &METRICS.pop3_latency,
        }
    }
}

/// ManageSieve commands handled since `started` (the read that completed them): each is
/// counted, and timed from that read until its reply was queued. Names come from
/// `postern_managesieve` (its command list, or `unknown`).
pub(crate) fn managesieve_commands(names: &[&'static str], started: Instant) {
    if names.is_empty() {
        return;
    }
    let seconds = postern_daemon::metrics::seconds_since(started);
    for &name in names {
        METRICS
            .sieve_commands
            .get_or_create(&[("command", name)])
            .inc();
        METRICS
            .sieve_latency
            .get_or_create(&[("command", name)])
            .observe(seconds);
    }
}

impl Drop for CommandTimer {
    fn drop(&mut self) {
        self.latency
            .get_or_create(&[("command", self.name)])
            .observe(postern_daemon::metrics::seconds_since(self.started));
    }
}

/// One session in IDLE while it lives.
pub(crate) struct IdleGuard(());

impl IdleGuard {
    pub(crate) fn new() -> Self {
        METRICS.idle.inc();
        Self(())
    }
}

impl Drop for IdleGuard {
    fn drop(&mut self) {
        METRICS.idle.dec();
    }
}

/// Every metric, under `postern_imapd_`; the series of the fixed label sets (not the
/// commands) start at 0.
fn registry() -> Registry {
    let m = &*METRICS;
    for door in [
        Door::Imap,
        Door::Imaps,
        Door::Pop3,
        Door::Pop3s,
        Door::ManageSieve,
    ] {
        drop(m.connections.get_or_create(&[("protocol", door.name())]));
    }
    for protocol in ["imap", "pop3", "managesieve"] {
        for result in ["ok", "fail", "tempfail"] {
            drop(
                m.logins
                    .get_or_create(&[("protocol", protocol), ("result", result)]),
            );
        }
    }
    let mut r = Registry::with_prefix("postern_imapd");
    r.register(
        "connections",
        "Connections accepted, by protocol (imap, imaps, pop3, pop3s, managesieve)",
        m.connections.clone(),
    );
    r.register(
        "logins",
        "Logins through authd by protocol (imap, pop3, managesieve) and result (ok, fail, \
         tempfail)",
        m.logins.clone(),
    );
    r.register(
        "commands",
        "IMAP commands received, by command name",
        m.commands.clone(),
    );
    r.register(
        "command_duration_seconds",
        "Time from an IMAP command's arrival to its tagged answer, by command name",
        m.latency.clone(),
    );
    r.register("idle_sessions", "IMAP sessions in IDLE now", m.idle.clone());
    r.register(
        "pop3_commands",
        "POP3 commands received, by command name (unknown for one not in RFC 1939/2449/5034)",
        m.pop3_commands.clone(),
    );
    r.register(
        "pop3_command_duration_seconds",
        "Time from a POP3 command's arrival to its answer, by command name",
        m.pop3_latency.clone(),
    );
    r.register(
        "managesieve_commands",
        "ManageSieve commands received, by command name (unknown for one not in RFC 5804)",
        m.sieve_commands.clone(),
    );
    r.register(
        "managesieve_command_duration_seconds",
        "Time from the read that completed a ManageSieve command to its answer, by command name",
        m.sieve_latency.clone(),
    );
    r
}

/// Serves the metrics on `[imapd] metrics_listen` when it is set.
pub(crate) async fn start(
    config: &postern_config::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    postern_daemon::metrics::start(config.imapd.metrics_listen, registry(), None, shutdown).await?;
    Ok(())
}
