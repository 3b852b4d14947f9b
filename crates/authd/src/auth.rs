//! The `auth` socket driver: reads lines, feeds [`AuthSession`], runs password checks with
//! the lockout rules, writes replies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_auth_proto::dovecot;
use postern_directory::{AuthOutcome, DirectoryError, Gate, account_subject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::Ctx;
use crate::auth_session::{AuthSession, Out, Verify};

/// Serves one client connection until it closes, idles out, or shutdown.
pub(crate) async fn serve(stream: UnixStream, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<String>(128);
    let writer = tokio::spawn(async move {
        while let Some(line) = rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let hello = dovecot::handshake(
        &AuthSession::mechanisms(),
        std::process::id(),
        ctx.next_connection_id(),
        rand::random(),
    );
    if tx.send(hello).await.is_err() {
        return;
    }
    let mut session = AuthSession::new(ctx.config.authd.allow_plaintext_insecure);
    let mut lines = postern_auth_proto::LineBuffer::new(ctx.config.authd.max_line);
    let mut checks: JoinSet<()> = JoinSet::new();
    let idle = ctx.config.authd.idle_timeout_secs.duration();
    let mut buf = vec![0u8; 4096];
    'conn: loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = checks.join_next(), if !checks.is_empty() => {
                session.verified();
                continue;
            }
            r = tokio::time::timeout(idle, rd.read(&mut buf)) => {
                let n = match r {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(n)) => n,
                    Err(_) if session.busy() => continue,
                    Err(_) => { debug!("auth client idle, closing"); break }
                };
                lines.push(&buf[..n]);
            }
        }
        while let Some(line) = lines.next_line() {
            let outs = match line {
                Ok(l) => session.line(&l),
                Err(postern_auth_proto::LineError::TooLong) => session.too_long(),
                Err(e) => {
                    warn!(error = %e, "auth client sent an unreadable line");
                    session.line("\u{1}")
                }
            };
            for out in outs {
                match out {
                    Out::Line(l) => {
                        if tx.send(l).await.is_err() {
                            break 'conn;
                        }
                    }
                    Out::Warn(w) => warn!("auth protocol: {w}"),
                    Out::Verify(v) => {
                        checks.spawn(check(v, ctx.clone(), tx.clone()));
                    }
                    Out::Close(why) => {
                        warn!("closing auth connection: {why}");
                        break 'conn;
                    }
                }
            }
        }
    }
    // Finish the checks in flight so their clients get an answer.
    while checks.join_next().await.is_some() {}
    drop(tx);
    drop(writer.await);
}

/// Runs one password check and sends its `OK` or `FAIL`.
async fn check(v: Verify, ctx: Arc<Ctx>, tx: mpsc::Sender<String>) {
    let started = Instant::now();
    let reply = decide(&v, &ctx).await;
    crate::metrics::auth(&reply, started);
    // No failure is answered sooner than `failure_delay_ms` after the request arrived: an
    // unknown user, an account with a fast legacy hash and an argon2 account look the same.
    if !reply.starts_with("OK\t") {
        let floor = ctx.config.authd.failure_delay_ms.duration();
        tokio::time::sleep(floor.saturating_sub(started.elapsed())).await;
    }
    drop(tx.send(reply).await);
}

/// Longest password checked; longer ones fail without being hashed.
pub(crate) const MAX_PASSWORD: usize = 1024;

/// The reply to a refused login whose IP or account is locked out. It is a temporary
/// failure (`code=temp_fail`, and the older bare `temp`), so that clients say so: Postern's
/// smtpd `454 4.7.0`, imapd `NO [UNAVAILABLE]` (as Dovecot's login processes do), rather than
/// "wrong password". Postfix 3.7 reads no failure code and answers `535 5.7.8` with the
/// reason text, which names the lockout.
pub(crate) fn locked_reply(id: u32, scope: &str, user: &str) -> String {
    let reason = if scope == "ip" {
        "Too many failed logins from your network; temporarily locked, try again later"
    } else {
        "Too many failed logins; account temporarily locked, try again later"
    };
    let mut line = dovecot::fail(id, Some(reason), Some(user), true);
    line.pop();
    line.push_str("\ttemp\n");
    line
}

/// The reply to a correct password for an account `mailctl user move` is moving: a
/// temporary failure in the same form as [`locked_reply`] (imapd `NO [UNAVAILABLE]`, POP3
/// `-ERR [SYS/TEMP]`, smtpd `454 4.7.0`), so that the client tries again later, when the
/// account is served on its new node.
pub(crate) fn moving_reply(id: u32, user: &str) -> String {
    let mut line = dovecot::fail(
        id,
        Some("Mailbox is being moved to another server; try again in a few minutes"),
        Some(user),
        true,
    );
    line.pop();
    line.push_str("\ttemp\n");
    line
}

/// The `OK` of a successful login. A user who lives on another node gets Dovecot's proxy
/// passdb fields: `proxy`, `host=` and, when the service has a backend port in `[proxy]`,
/// `port=`, so that a login process (Postern's or Dovecot's) logs in to the backend instead.
pub(crate) fn ok_reply(
    proxy: &postern_config::Proxy,
    id: u32,
    user: &str,
    host: &str,
    service: &str,
) -> String {
    let Some(fields) = proxy_fields(proxy, host, service) else {
        return dovecot::ok::<&str, &str>(id, user, &[]);
    };
    let mut line = dovecot::ok(id, user, &fields);
    line.pop();
    line.push_str("\tproxy\n");
    line
}

/// `host=` and (when `service` has a backend port) `port=` for an account on another node;
/// `None` when it lives here. The caller adds the `proxy` flag.
pub(crate) fn proxy_fields(
    proxy: &postern_config::Proxy,
    host: &str,
    service: &str,
) -> Option<Vec<(&'static str, String)>> {
    let host = proxy.remote_host(host)?;
    let mut fields = vec![("host", host.to_owned())];
    if let Some(port) = proxy.port_for(service) {
        fields.push(("port", port.to_string()));
    }
    Some(fields)
}

async fn decide(v: &Verify, ctx: &Ctx) -> String {
    let lockouts = ctx.directory.lockouts();
    let max_delay = Duration::from_secs(lockouts.policy().max_delay_secs);
    let ip = v.rip.map_or_else(|| "-".to_owned(), |i| i.to_string());
    if v.password.expose().len() > MAX_PASSWORD {
        warn!(user = %v.login, %ip, service = %v.service, reason = "password longer than 1 KiB",
            "authentication failed");
        return dovecot::fail(v.id, Some("Authentication failed"), None, false);
    }
    let temp = |what: &str, e: &dyn std::fmt::Display| {
        warn!(user = %v.login, %ip, service = %v.service, error = %e, "{what}");
        crate::metrics::db_error("auth");
        dovecot::fail(v.id, Some("Temporary authentication failure"), None, true)
    };
    // The account the login reaches, found first: its canonical address is the lockout key,
    // so `alice@example.org.`, `Alice@Example.ORG` and `alice@ example.org` count as one.
    let account = match ctx.directory.account(&v.login).await {
        Ok(a) => a,
        Err(e) => return temp("account lookup failed", &e),
    };
    let key = account_subject(&v.login, account.as_ref().map(|a| a.address.as_str()));
    let gate = match lockouts.check(v.rip, &key).await {
        Ok(g) => g,
        Err(e) => return temp("lockout check failed", &e),
    };
    let (delay, earlier_failures) = match gate {
        Gate::Locked {
            scope,
            subject,
            until,
        } => {
            warn!(user = %v.login, account = %key, %ip, service = %v.service, scope, subject = %subject, until,
                reason = "locked out", "authentication refused");
            tokio::time::sleep(max_delay).await;
            return locked_reply(v.id, scope, &key);
        }
        Gate::Open { delay, failures } => (delay, failures),
    };
    let host = account.as_ref().map(|a| a.host.clone()).unwrap_or_default();
    let moving = account
        .as_ref()
        .is_some_and(postern_directory::Account::is_moving);
    let outcome = match ctx
        .directory
        .verify_account(account, v.password.expose())
        .await
    {
        Ok(o) => o,
        Err(e @ DirectoryError::Busy(_)) => {
            warn!(user = %v.login, %ip, service = %v.service, error = %e, "password check not started");
            return dovecot::fail(v.id, Some("Server busy; try again later"), None, true);
        }
        Err(e) => return temp("authentication backend failed", &e),
    };
    let reason = match outcome {
        AuthOutcome::Ok { user } => {
            if earlier_failures > 0
                && let Err(e) = lockouts.record_success(v.rip, &key).await
            {
                warn!(user = %v.login, error = %e, "could not clear failure count");
            }
            if moving {
                // Only after the password matched: a stranger learns nothing of the move.
                info!(user = %user, %ip, service = %v.service, reason = "account moving",
                    "authentication refused for now");
                return moving_reply(v.id, &user);
            }
            info!(user = %user, %ip, service = %v.service, mechanism = v.mechanism, secured = v.secured,
                "authentication succeeded");
            return ok_reply(&ctx.config.proxy, v.id, &user, &host, &v.service);
        }
        AuthOutcome::UnknownUser => "unknown user",
        AuthOutcome::BadPassword => "wrong password",
        AuthOutcome::Disabled => "account disabled",
    };
    let rec = match lockouts.record_failure(v.rip, &key).await {
        Ok(r) => Some(r),
        Err(e) => {
            warn!(user = %v.login, error = %e, "could not record failure");
            None
        }
    };
    warn!(user = %v.login, account = %key, %ip, service = %v.service, mechanism = v.mechanism, reason,
        ip_failures = rec.as_ref().map_or(0, |r| r.ip_failures),
        account_failures = rec.as_ref().map_or(0, |r| r.account_failures),
        "authentication failed");
    if let Some((scope, subject, until)) = rec.as_ref().and_then(|r| r.locked.clone()) {
        warn!(scope, subject = %subject, until, %ip, service = %v.service, "lockout started");
        crate::metrics::lockout(scope);
    }
    let wait = rec.map_or(delay, |r| r.delay.max(delay)).min(max_delay);
    tokio::time::sleep(wait).await;
    dovecot::fail(v.id, Some("Authentication failed"), Some(&key), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_auth_proto::dovecot::{ServerLine, parse_server_line};

    #[test]
    fn a_remote_user_gets_the_proxy_fields() {
        let proxy = postern_config::Proxy {
            self_name: "b1.example".into(),
            ..Default::default()
        };
        // Local: empty host, or this node's own name.
        for host in ["", "B1.example"] {
            assert_eq!(
                ok_reply(&proxy, 3, "bob@example.org", host, "imap"),
                "OK\t3\tuser=bob@example.org\n"
            );
        }
        let line = ok_reply(&proxy, 4, "bob@example.org", "b2.example", "imap");
        assert_eq!(
            line,
            "OK\t4\tuser=bob@example.org\thost=b2.example\tport=143\tproxy\n"
        );
        let Ok(ServerLine::Ok(ok)) = parse_server_line(line.trim_end_matches('\n')) else {
            panic!("not an OK: {line:?}");
        };
        assert_eq!(ok.user.as_deref(), Some("bob@example.org"));
        assert!(ok.params.has("proxy"));
        // A service without a backend port: no port= (the client uses its own default).
        assert_eq!(
            ok_reply(&proxy, 5, "bob@example.org", "b2.example", "smtp"),
            "OK\t5\tuser=bob@example.org\thost=b2.example\tproxy\n"
        );
    }

    #[test]
    fn a_moving_account_is_a_temporary_failure_that_says_so() {
        let line = moving_reply(9, "bob@example.org");
        assert!(line.ends_with("\ttemp\n"), "{line:?}");
        let Ok(ServerLine::Fail(f)) = parse_server_line(line.trim_end_matches('\n')) else {
            panic!("not a FAIL: {line:?}");
        };
        assert_eq!(f.id, 9);
        assert!(f.is_temp());
        assert_eq!(f.code.as_deref(), Some("temp_fail"));
        assert_eq!(f.user.as_deref(), Some("bob@example.org"));
        assert!(
            f.reason
                .as_deref()
                .is_some_and(|r| r.contains("being moved")),
            "{f:?}"
        );
    }

    #[test]
    fn a_lockout_is_a_temporary_failure_that_says_so() {
        for (scope, words) in [
            ("account", "account temporarily locked"),
            ("ip", "your network"),
        ] {
            let line = locked_reply(7, scope, "alice@example.org");
            assert!(line.ends_with("\ttemp\n"), "{line:?}");
            let Ok(ServerLine::Fail(f)) = parse_server_line(line.trim_end_matches('\n')) else {
                panic!("not a FAIL: {line:?}");
            };
            assert_eq!(f.id, 7);
            assert!(f.is_temp());
            assert_eq!(f.code.as_deref(), Some("temp_fail"));
            assert_eq!(f.user.as_deref(), Some("alice@example.org"));
            assert!(
                f.reason.as_deref().is_some_and(|r| r.contains(words)),
                "{f:?}"
            );
        }
    }
}
