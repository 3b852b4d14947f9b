//! The `auth` socket driver: reads lines, feeds [`AuthSession`], runs password checks with
//! the lockout rules, writes replies.

use std::sync::Arc;
use std::time::Duration;

use postern_auth_proto::dovecot;
use postern_directory::{AuthOutcome, Gate};
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
    let idle = Duration::from_secs(ctx.config.authd.idle_timeout_secs.max(1));
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
    let reply = decide(&v, &ctx).await;
    drop(tx.send(reply).await);
}

async fn decide(v: &Verify, ctx: &Ctx) -> String {
    let lockouts = ctx.directory.lockouts();
    let max_delay = Duration::from_secs(lockouts.policy().max_delay_secs);
    let ip = v.rip.map_or_else(|| "-".to_owned(), |i| i.to_string());
    let gate = match lockouts.check(v.rip, &v.login).await {
        Ok(g) => g,
        Err(e) => {
            warn!(user = %v.login, %ip, service = %v.service, error = %e, "lockout check failed");
            return dovecot::fail(v.id, Some("Temporary authentication failure"), None, true);
        }
    };
    let (delay, earlier_failures) = match gate {
        Gate::Locked {
            scope,
            subject,
            until,
        } => {
            warn!(user = %v.login, %ip, service = %v.service, scope, subject = %subject, until, reason = "locked out",
                "authentication refused");
            tokio::time::sleep(max_delay).await;
            return dovecot::fail(
                v.id,
                Some("Too many failed logins; try again later"),
                Some(&v.login),
                false,
            );
        }
        Gate::Open { delay, failures } => (delay, failures),
    };
    let outcome = match ctx
        .directory
        .authenticate(&v.login, v.password.expose())
        .await
    {
        Ok(o) => o,
        Err(e) => {
            warn!(user = %v.login, %ip, service = %v.service, error = %e, "authentication backend failed");
            return dovecot::fail(v.id, Some("Temporary authentication failure"), None, true);
        }
    };
    let reason = match outcome {
        AuthOutcome::Ok { user } => {
            if earlier_failures > 0
                && let Err(e) = lockouts.record_success(v.rip, &v.login).await
            {
                warn!(user = %v.login, error = %e, "could not clear failure count");
            }
            info!(user = %user, %ip, service = %v.service, mechanism = v.mechanism, secured = v.secured,
                "authentication succeeded");
            return dovecot::ok::<&str, &str>(v.id, &user, &[]);
        }
        AuthOutcome::UnknownUser => "unknown user",
        AuthOutcome::BadPassword => "wrong password",
        AuthOutcome::Disabled => "account disabled",
    };
    let rec = match lockouts.record_failure(v.rip, &v.login).await {
        Ok(r) => Some(r),
        Err(e) => {
            warn!(user = %v.login, error = %e, "could not record failure");
            None
        }
    };
    warn!(user = %v.login, %ip, service = %v.service, mechanism = v.mechanism, reason,
        ip_failures = rec.as_ref().map_or(0, |r| r.ip_failures),
        account_failures = rec.as_ref().map_or(0, |r| r.account_failures),
        "authentication failed");
    if let Some((scope, subject, until)) = rec.as_ref().and_then(|r| r.locked.clone()) {
        warn!(scope, subject = %subject, until, %ip, service = %v.service, "lockout started");
    }
    let wait = rec.map_or(delay, |r| r.delay.max(delay)).min(max_delay);
    tokio::time::sleep(wait).await;
    dovecot::fail(v.id, Some("Authentication failed"), Some(&v.login), false)
}
