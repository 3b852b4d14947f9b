//! lmtp-deliver: final delivery into Maildir over LMTP (RFC 2033), the counterpart of
//! dovecot-lmtp.
//!
//! The protocol state machine is `postern-smtp-session` (shared with smtpd); the Maildir
//! store is `postern-maildir`; filtering is `postern-sieve`. This crate drives sockets,
//! asks authd's userdb who a recipient is, and turns Sieve actions into deliveries.
#![forbid(unsafe_code)]

mod conn;
mod deliver;
mod rcpt;
mod submit;
mod vacation_log;
mod view;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use postern_config::Config;
use postern_smtp_session::{Flavor, SessionConfig};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long shutdown waits for sessions in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// What every session shares.
pub(crate) struct Ctx {
    pub(crate) config: Config,
    pub(crate) session: Arc<SessionConfig>,
    pub(crate) userdb_socket: PathBuf,
}

/// The bound listeners.
pub struct Listeners {
    unix: (UnixListener, PathBuf),
    tcp: Vec<TcpListener>,
}

/// Binds the LMTP socket (and TCP listeners, if configured).
pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
    let spec = &config.lmtp.socket;
    let path = config.socket_path(spec);
    let unix = postern_daemon::bind_unix(
        &path,
        spec.mode_bits()?,
        spec.owner.as_deref(),
        spec.group.as_deref(),
    )?;
    info!("listening on {}", path.display());
    let mut tcp = Vec::new();
    for addr in &config.lmtp.listen {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        info!("listening on {}", l.local_addr()?);
        tcp.push(l);
    }
    Ok(Listeners {
        unix: (unix, path),
        tcp,
    })
}

/// The session settings the config asks for.
pub fn session_config(config: &Config) -> SessionConfig {
    let mut s = SessionConfig::new(config.hostname.clone(), Flavor::Lmtp);
    s.max_message_size = config.lmtp.max_message_size;
    s.max_recipients = config.lmtp.max_recipients;
    s.extensions.starttls = false;
    s.extensions.auth = Vec::new();
    s.extensions.vrfy = false;
    s.greeting_text = "Postern LMTP ready".into();
    s
}

/// Serves until `shutdown`, then lets sessions in flight finish.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx {
        session: Arc::new(session_config(&config)),
        userdb_socket: config.socket_path(&config.authd.userdb_socket),
        config,
    });
    let limit = Arc::new(Semaphore::new(ctx.config.lmtp.max_connections.max(1)));
    let mut sessions = JoinSet::new();
    let Listeners { unix, tcp } = listeners;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Accepted>(64);
    let mut acceptors = JoinSet::new();
    {
        let tx = tx.clone();
        let sd = shutdown.clone();
        acceptors.spawn(async move {
            loop {
                tokio::select! {
                    _ = sd.cancelled() => return,
                    r = unix.0.accept() => match r {
                        Ok((s, _)) => if tx.send(Accepted::Unix(s)).await.is_err() { return },
                        Err(e) => { warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(100)).await }
                    }
                }
            }
        });
    }
    for l in tcp {
        let tx = tx.clone();
        let sd = shutdown.clone();
        acceptors.spawn(async move {
            loop {
                tokio::select! {
                    _ = sd.cancelled() => return,
                    r = l.accept() => match r {
                        Ok((s, peer)) => if tx.send(Accepted::Tcp(s, peer)).await.is_err() { return },
                        Err(e) => { warn!(error = %e, "accept failed"); tokio::time::sleep(Duration::from_millis(100)).await }
                    }
                }
            }
        });
    }
    drop(tx);
    postern_daemon::notify_ready("lmtp-deliver");
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => continue,
            a = rx.recv() => match a { Some(a) => a, None => break },
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            warn!("too many LMTP sessions; refusing one");
            sessions.spawn(conn::refuse(accepted));
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        sessions.spawn(async move {
            conn::serve(accepted, ctx, sd).await;
            drop(permit);
        });
    }
    acceptors.abort_all();
    postern_daemon::finish_within(&mut sessions, SHUTDOWN_GRACE, "sessions").await;
    drop(std::fs::remove_file(&unix.1));
    info!("lmtp-deliver stopped");
    Ok(())
}

/// A new connection.
pub(crate) enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, SocketAddr),
}
