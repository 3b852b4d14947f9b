//! smtpd: Postern's MTA. Receives mail on port 25 (MX for our domains, never a relay),
//! 587 (STARTTLS + AUTH) and 465 (TLS + AUTH), commits it to the durable queue before it
//! answers 250, delivers local recipients over LMTP and other domains over SMTP (relayhost
//! or MX, STARTTLS, DKIM-signed: `dkim`, `outbound`).
//!
//! The SMTP conversation is `postern-smtp-session` (shared with lmtp-deliver); lookups and
//! SASL go to authd over its sockets; the spool is `postern-queue`.
//!
//! The control socket `smtpd` in the run directory (`control`, protocol in `postern-control`)
//! serves queue control (`mailctl queue`) and local submission (`sendmail`).
#![forbid(unsafe_code)]

mod access;
mod autoconfig;
mod checks;
mod conn;
mod control;
mod dkim;
#[doc(hidden)]
pub mod fuzzing;
mod intake;
mod limits;
mod metrics;
mod outbound;
mod policy;
mod qmgr;
mod roles;
pub mod srs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postern_config::Config;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::policy::Door;
use postern_daemon::Stream;
use postern_daemon::Tls;

pub use checks::spf_dkim_dmarc::JUNK_HEADER;

/// How long shutdown waits for sessions and deliveries in flight.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What every session shares.
pub(crate) struct Ctx {
    pub(crate) config: Config,
    pub(crate) tls: Option<Tls>,
    pub(crate) queue: qmgr::QueueHandle,
    /// Connections per client on port 25, and on the submission ports (counted apart, so
    /// that strangers on 25 do not use up a submission user's share).
    per_ip_mx: postern_daemon::PerIp,
    per_ip_submission: postern_daemon::PerIp,
    /// Memory for reading spooled messages back for the DKIM/DMARC checks.
    pub(crate) verify: intake::VerifyBudget,
    /// Per-user submission counts.
    pub(crate) limits: limits::Limits,
    /// The inbound checks of port 25.
    pub(crate) checks: checks::Checks,
    /// The queue's free disk space as MAIL sees it.
    pub(crate) disk: limits::DiskGauge,
    /// authd's socketmap: connections and answers kept between sessions.
    pub(crate) directory: Arc<policy::Directory>,
}

/// The bound listeners: TCP, the control socket, and the optional autoconfig HTTP ones.
pub struct Listeners {
    bound: Vec<(TcpListener, Door)>,
    control: (UnixListener, PathBuf),
    autoconfig: Vec<TcpListener>,
}

/// Binds every listener in `[smtpd]`, logging `listening on ADDR` for each, and the control
/// socket `smtpd` in the run directory (mode 0660), logging `listening on PATH`.
pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
    let control = control::bind(config)?;
    let mut bound = Vec::new();
    let s = &config.smtpd;
    for (addrs, door) in [
        (&s.listen, Door::Mx),
        (&s.submission, Door::Submission),
        (&s.submissions, Door::Submissions),
    ] {
        for a in addrs {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {a}"))?;
            info!("listening on {} ({})", l.local_addr()?, door.name());
            bound.push((l, door));
        }
    }
    let mut autoconfig = Vec::new();
    for a in &config.autoconfig.listen {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))?;
        info!("listening on {} (autoconfig)", l.local_addr()?);
        autoconfig.push(l);
    }
    Ok(Listeners {
        bound,
        control,
        autoconfig,
    })
}

/// What the autoconfig documents announce: `[imapd]`'s configured ports and the ports
/// smtpd's own submission listeners got (the first of each list).
fn autoconfig_settings(
    config: &Config,
    bound: &[(TcpListener, Door)],
    directory: Arc<policy::Directory>,
) -> autoconfig::Settings {
    let own = |door: Door| {
        bound
            .iter()
            .find(|(_, d)| *d == door)
            .and_then(|(l, _)| l.local_addr().ok())
            .map(|a| a.port())
            .filter(|p| *p != 0)
    };
    let i = &config.imapd;
    autoconfig::Settings {
        hostname: config.hostname.clone(),
        imap: autoconfig::first_port(&i.imap),
        imaps: autoconfig::first_port(&i.imaps),
        pop3: autoconfig::first_port(&i.pop3),
        pop3s: autoconfig::first_port(&i.pop3s),
        submission: own(Door::Submission),
        submissions: own(Door::Submissions),
        directory,
    }
}

/// Serves until `shutdown`; then finishes sessions and deliveries in flight.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let tls = match &config.tls {
        Some(t) => Some(Tls::load(
            &config.resolve(&t.cert),
            &config.resolve(&t.key),
        )?),
        None => None,
    };
    if tls.is_none() && listeners.bound.iter().any(|(_, d)| *d == Door::Submissions) {
        anyhow::bail!("[smtpd] submissions (port 465) needs a [tls] certificate");
    }
    let checks = checks::Checks::new(&config)?;
    let directory = policy::Directory::from_config(&config)?;
    let (mut queue, qmgr_task) = qmgr::start(&config, directory.clone(), shutdown.clone()).await?;
    // Separate budgets: the MX door (25) and the submission doors (587, 465).
    let mx_max = config.smtpd.max_connections.get();
    let submission_max = config.smtpd.max_submission_connections.get();
    let mx_limit = Arc::new(Semaphore::new(mx_max));
    let submission_limit = Arc::new(Semaphore::new(submission_max));
    // With at most one SMTP session open, nothing else needs the runtime's thread while a
    // message is fsynced: commit it there, without a trip to the blocking pool and back
    // (two context switches fewer per message; issue 17). With more, commits go to the
    // pool and are grouped as before.
    let (mx, sub) = (mx_limit.clone(), submission_limit.clone());
    queue.committer = queue.committer.inline_when(Arc::new(move || {
        let open = mx_max.saturating_sub(mx.available_permits())
            + submission_max.saturating_sub(sub.available_permits());
        open <= 1
    }));
    let verify = intake::VerifyBudget::new(config.smtpd.max_message_size);
    let limits = limits::Limits::new(limits::in_directory(&config));
    let ctx = Arc::new(Ctx {
        verify,
        config,
        tls,
        queue,
        per_ip_mx: postern_daemon::PerIp::new(),
        per_ip_submission: postern_daemon::PerIp::new(),
        limits,
        checks,
        disk: limits::DiskGauge::new(),
        directory,
    });
    if ctx.checks.greylist.is_some() {
        tokio::spawn(flush_greylist(ctx.clone(), shutdown.clone()));
    }
    if let Some(tls) = ctx.tls.clone() {
        tokio::spawn(postern_daemon::tls::reload_on_hup(tls, shutdown.clone()));
    }
    let mut acceptors = JoinSet::new();
    if !listeners.autoconfig.is_empty() {
        let settings = autoconfig_settings(&ctx.config, &listeners.bound, ctx.directory.clone());
        acceptors.spawn(autoconfig::serve(
            listeners.autoconfig,
            settings,
            shutdown.clone(),
        ));
    }
    let sessions = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    for (listener, door) in listeners.bound {
        let limit = match door {
            Door::Mx => mx_limit.clone(),
            _ => submission_limit.clone(),
        };
        acceptors.spawn(accept_loop(
            listener,
            door,
            ctx.clone(),
            limit,
            sessions.clone(),
            shutdown.clone(),
        ));
    }
    let (control_listener, control_path) = listeners.control;
    acceptors.spawn(control::serve(
        control_listener,
        control_path,
        ctx.clone(),
        shutdown.clone(),
    ));
    metrics::start(&ctx, shutdown.clone()).await?;
    postern_daemon::notify_ready("smtpd");
    shutdown.cancelled().await;
    while acceptors.join_next().await.is_some() {}
    let mut s = sessions.lock().await;
    postern_daemon::finish_within(&mut s, SHUTDOWN_GRACE, "sessions").await;
    drop(qmgr_task.await);
    if let Some(g) = &ctx.checks.greylist
        && let Err(e) = g.flush()
    {
        warn!(error = %e, "greylist not saved");
    }
    info!("smtpd stopped");
    Ok(())
}

/// Writes greylist changes every few seconds (the last ones at shutdown, in `run`).
async fn flush_greylist(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
        let c = ctx.clone();
        let r = tokio::task::spawn_blocking(move || c.checks.greylist.as_ref().map(|g| g.flush()))
            .await;
        if let Ok(Some(Err(e))) = r {
            warn!(error = %e, "greylist not saved");
        }
    }
}

/// The reply a refused client gets on smtpd's doors (the same on 465, before any TLS).
fn refusal(why: postern_daemon::accept::Refused) -> &'static [u8] {
    match why {
        postern_daemon::accept::Refused::PerIp => {
            b"421 4.7.0 Too many connections from your address, try again later\r\n"
        }
        _ => b"421 4.7.0 Too many connections, try again later\r\n",
    }
}

async fn accept_loop(
    listener: TcpListener,
    door: Door,
    ctx: Arc<Ctx>,
    limit: Arc<Semaphore>,
    sessions: postern_daemon::accept::Sessions,
    shutdown: CancellationToken,
) {
    let per_ip = match door {
        Door::Mx => ctx.per_ip_mx.clone(),
        _ => ctx.per_ip_submission.clone(),
    };
    // Trusted networks are exempt from the per-client limit, as Postfix exempts
    // $mynetworks (the local webmail, the Sieve redirects of lmtp-deliver).
    let c = ctx.clone();
    let gate = postern_daemon::accept::Gate {
        name: door.name(),
        limit,
        second: None,
        per_ip: Some((per_ip, ctx.config.smtpd.max_connections_per_ip)),
        exempt: Some(Arc::new(move |ip| {
            c.config
                .smtpd
                .trusted_networks
                .iter()
                .any(|n| n.contains(&ip))
        })),
        refusal,
    };
    let sd = shutdown.clone();
    postern_daemon::accept::serve(
        listener,
        gate,
        sessions,
        shutdown,
        move |tcp, peer, local, ticket| {
            let ctx2 = ctx.clone();
            let sd = sd.clone();
            metrics::connection(door);
            async move {
                let stream = match door {
                    Door::Submissions => {
                        let Some(tls) = ctx2.tls.as_ref() else { return };
                        match tokio::time::timeout(
                            Duration::from_secs(30),
                            tls.acceptor().accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(s)) => Some(Stream::Tls(Box::new(s))),
                            _ => None,
                        }
                    }
                    _ => Some(Stream::Plain(tcp)),
                };
                if let Some(stream) = stream {
                    conn::serve(stream, peer, local, door, ctx2.clone(), sd).await;
                }
                drop(ticket);
            }
        },
    )
    .await;
}

impl Ctx {}
