//! authd's Prometheus metrics (`[authd] metrics_listen`, served by
//! [`postern_daemon::metrics`]): requests by socket and result with their latency,
//! lockouts, database errors. Label values are `&'static str` from fixed sets; users,
//! keys and map names a client sends are never labels.

use std::sync::LazyLock;
use std::time::Instant;

use postern_auth_proto::socketmap::Reply;
use postern_daemon::metrics::{Counters, Histograms, Registry};
use tokio_util::sync::CancellationToken;

/// authd's counters.
pub(crate) struct Metrics {
    requests: Counters<2>,
    latency: Histograms<1>,
    lockouts: Counters<1>,
    db_errors: Counters<1>,
}

/// The one set of counters of this process.
pub(crate) static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Counters::default(),
    latency: postern_daemon::metrics::histograms(),
    lockouts: Counters::default(),
    db_errors: Counters::default(),
});

fn request(socket: &'static str, result: &'static str, started: Instant) {
    METRICS
        .requests
        .get_or_create(&[("socket", socket), ("result", result)])
        .inc();
    METRICS
        .latency
        .get_or_create(&[("socket", socket)])
        .observe(postern_daemon::metrics::seconds_since(started));
}

/// What an `auth` reply line says: `ok`, `fail`, `tempfail`, or `locked` (refused during a
/// lockout).
pub(crate) fn auth_result(reply: &str) -> &'static str {
    if reply.starts_with("OK\t") {
        "ok"
    } else if reply.contains("temporarily locked") {
        "locked"
    } else if reply.contains("\ttemp") || reply.contains("code=temp_fail") {
        "tempfail"
    } else {
        "fail"
    }
}

/// One password check answered with `reply`.
pub(crate) fn auth(reply: &str, started: Instant) {
    request("auth", auth_result(reply), started);
}

/// What a userdb reply says: `found`, `notfound`, `tempfail`, or `none` (no reply).
pub(crate) fn userdb_result(reply: Option<&str>) -> &'static str {
    let Some(r) = reply else { return "none" };
    let last = r.trim_end_matches('\n').rsplit('\n').next().unwrap_or("");
    if last.starts_with("USER\t") || last.starts_with("PASS\t") {
        "found"
    } else if last.starts_with("NOTFOUND\t") {
        "notfound"
    } else if last.starts_with("DONE\t") && !last.ends_with("\tfail") {
        "found"
    } else {
        "tempfail"
    }
}

/// One userdb request answered with `reply` (a temporary failure is a database error).
pub(crate) fn userdb(reply: Option<&str>, started: Instant) {
    let result = userdb_result(reply);
    if result == "tempfail" {
        db_error("userdb");
    }
    request("userdb", result, started);
}

/// One socketmap request answered with `reply`.
pub(crate) fn socketmap(reply: &Reply, started: Instant) {
    let result = match reply {
        Reply::Ok(_) => "found",
        Reply::NotFound => "notfound",
        Reply::Perm(_) => "perm",
        Reply::Temp(_) | Reply::Timeout(_) => {
            db_error("socketmap");
            "tempfail"
        }
    };
    request("socketmap", result, started);
}

/// A lockout started (`scope`: `ip` or `account`).
pub(crate) fn lockout(scope: &'static str) {
    let scope = if scope == "ip" { "ip" } else { "account" };
    METRICS.lockouts.get_or_create(&[("scope", scope)]).inc();
}

/// A database query failed while serving `socket`.
pub(crate) fn db_error(socket: &'static str) {
    METRICS.db_errors.get_or_create(&[("socket", socket)]).inc();
}

/// Every metric, under `postern_authd_`; the series of the fixed label sets start at 0.
fn registry() -> Registry {
    let m = &*METRICS;
    let results: [(&str, &[&str]); 3] = [
        ("auth", &["ok", "fail", "tempfail", "locked"]),
        ("userdb", &["found", "notfound", "tempfail"]),
        ("socketmap", &["found", "notfound", "perm", "tempfail"]),
    ];
    for (socket, rs) in results {
        for r in rs {
            drop(
                m.requests
                    .get_or_create(&[("socket", socket), ("result", r)]),
            );
        }
        drop(m.db_errors.get_or_create(&[("socket", socket)]));
    }
    for scope in ["ip", "account"] {
        drop(m.lockouts.get_or_create(&[("scope", scope)]));
    }
    let mut r = Registry::with_prefix("postern_authd");
    r.register(
        "requests",
        "Requests by socket (auth, userdb, socketmap) and result (auth: ok, fail, tempfail, \
         locked; userdb: found, notfound, tempfail; socketmap: found, notfound, perm, tempfail)",
        m.requests.clone(),
    );
    r.register(
        "request_duration_seconds",
        "Time to answer one request, by socket (auth: the password hash and the lockout \
         delays, not the failure_delay_ms floor)",
        m.latency.clone(),
    );
    r.register(
        "lockouts",
        "Lockouts started, by scope (ip, account)",
        m.lockouts.clone(),
    );
    r.register(
        "database_errors",
        "Failed directory database queries, by socket (the temporary failures of each)",
        m.db_errors.clone(),
    );
    r
}

/// Serves the metrics on `[authd] metrics_listen` when it is set.
pub(crate) async fn start(
    config: &postern_config::Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    postern_daemon::metrics::start(config.authd.metrics_listen, registry(), None, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_auth_proto::{dovecot, userdb};

    #[test]
    fn results_of_replies() {
        assert_eq!(auth_result(&dovecot::ok::<&str, &str>(1, "a@b", &[])), "ok");
        assert_eq!(
            auth_result(&dovecot::fail(1, Some("x"), None, false)),
            "fail"
        );
        assert_eq!(
            auth_result(&dovecot::fail(1, Some("x"), None, true)),
            "tempfail"
        );
        assert_eq!(
            auth_result(&crate::auth::locked_reply(1, "ip", "a@b")),
            "locked"
        );
        assert_eq!(userdb_result(Some(&userdb::not_found(3))), "notfound");
        assert_eq!(userdb_result(Some(&userdb::fail(3, "db"))), "tempfail");
        let ok = format!(
            "{}{}",
            userdb::list_entry(4, "a@b"),
            userdb::list_done(4, false)
        );
        assert_eq!(userdb_result(Some(&ok)), "found");
        assert_eq!(userdb_result(Some(&userdb::list_done(4, true))), "tempfail");
        let user = userdb::user_found::<&str, &str>(5, "a@b", &[]);
        assert_eq!(userdb_result(Some(&user)), "found");
        assert_eq!(userdb_result(None), "none");
    }
}
