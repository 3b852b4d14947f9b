//! authd: the directory daemon. It answers on three Unix sockets:
//!
//! - `auth`: the Dovecot authentication protocol (Postfix `smtpd_sasl_type = dovecot`,
//!   Postern's smtpd and imapd), with the brute-force defence;
//! - `auth-userdb`: Dovecot userdb lookups (`USER`, `PASS`, `LIST`) for delivery and IMAP;
//! - `socketmap`: Postfix socketmap tables `domains`, `mailboxes`, `aliases`, `senders`.
//!
//! Protocol codecs live in `postern-auth-proto`, SQL and passwords in `postern-directory`;
//! this crate drives sockets and decides replies.
#![forbid(unsafe_code)]

mod auth;
mod auth_session;
mod metrics;
mod shared_policy;
mod socketmap;
mod userdb;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use postern_auth_proto::cache;
use postern_config::{Config, SocketSpec};
use postern_directory::Directory;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Connections served at once on each socket; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 1024;
/// How long shutdown waits for requests in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// What every connection handler shares.
pub(crate) struct Ctx {
    pub(crate) config: Config,
    pub(crate) directory: Directory,
    /// Socketmap answers by (map, key): the value, not found, or a permanent refusal.
    pub(crate) maps: cache::Cache<(String, String), Result<Option<String>, String>>,
    /// userdb `USER` answers by lower-cased login.
    pub(crate) users: cache::Cache<String, Option<postern_directory::Account>>,
    /// smtpd's cluster-wide sending counts and greylist (never cached).
    pub(crate) policy: postern_directory::SharedPolicy,
    connection_ids: AtomicU32,
}

impl Ctx {
    pub(crate) fn next_connection_id(&self) -> u32 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// The three bound sockets.
pub struct Listeners {
    auth: (UnixListener, PathBuf),
    userdb: (UnixListener, PathBuf),
    socketmap: (UnixListener, PathBuf),
}

/// Binds the sockets named in the config (owner and mode applied).
pub fn bind(config: &Config) -> anyhow::Result<Listeners> {
    let one = |s: &SocketSpec| -> anyhow::Result<(UnixListener, PathBuf)> {
        let path = config.socket_path(s);
        let l = postern_daemon::bind_unix(
            &path,
            s.mode_bits()?,
            s.owner.as_deref(),
            s.group.as_deref(),
        )?;
        info!("listening on {}", path.display());
        Ok((l, path))
    };
    Ok(Listeners {
        auth: one(&config.authd.auth_socket)?,
        userdb: one(&config.authd.userdb_socket)?,
        socketmap: one(&config.authd.socketmap_socket)?,
    })
}

/// Opens the directory, then serves until `shutdown` is cancelled and requests in flight
/// are answered.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let directory = Directory::open(&config)
        .await
        .context("opening the directory database")?;
    // smtpd and lmtp-deliver keep authd's answers too: each keeps them for half the TTL.
    let ttl = cache::layer_ttl(config.authd.cache_ttl_secs.duration());
    let stamp = directory.change_stamp().to_owned();
    // With a cache, an inotify watch spares a stat of the stamp per lookup.
    let watch = if ttl.is_zero() {
        None
    } else {
        cache::StampWatch::new(&stamp).map(Arc::new)
    };
    let ctx = Arc::new(Ctx {
        maps: cache::Cache::with_watch(ttl, stamp.clone(), watch.clone()),
        users: cache::Cache::with_watch(ttl, stamp, watch),
        config,
        policy: directory.shared_policy(),
        directory: directory.clone(),
        connection_ids: AtomicU32::new(0),
    });
    let mut tasks = JoinSet::new();
    let sessions = postern_daemon::accept::Sessions::default();
    let Listeners {
        auth,
        userdb,
        socketmap,
    } = listeners;
    tasks.spawn(accept_loop(
        auth.0,
        "auth",
        ctx.clone(),
        sessions.clone(),
        shutdown.clone(),
        auth::serve,
    ));
    tasks.spawn(accept_loop(
        userdb.0,
        "userdb",
        ctx.clone(),
        sessions.clone(),
        shutdown.clone(),
        userdb::serve,
    ));
    tasks.spawn(accept_loop(
        socketmap.0,
        "socketmap",
        ctx.clone(),
        sessions.clone(),
        shutdown.clone(),
        socketmap::serve,
    ));
    tasks.spawn(purge_loop(directory.clone(), shutdown.clone()));
    metrics::start(&ctx.config, shutdown.clone()).await?;
    postern_daemon::notify_ready("authd");
    shutdown.cancelled().await;
    // The accept loops and the purge loop stop at once; requests in flight get a while.
    while tasks.join_next().await.is_some() {}
    let mut sessions = sessions.lock().await;
    postern_daemon::finish_within(&mut sessions, SHUTDOWN_GRACE, "requests").await;
    for p in [auth.1, userdb.1, socketmap.1] {
        drop(std::fs::remove_file(p));
    }
    directory.close().await;
    info!("authd stopped");
    Ok(())
}

/// Serves one socket with `serve` until `shutdown`; at most [`MAX_CONNECTIONS`] at once,
/// further clients wait in the listen queue rather than fail a login.
async fn accept_loop<F, Fut>(
    listener: UnixListener,
    name: &'static str,
    ctx: Arc<Ctx>,
    sessions: postern_daemon::accept::Sessions,
    shutdown: CancellationToken,
    serve: F,
) where
    F: Fn(UnixStream, Arc<Ctx>, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gate = postern_daemon::accept::UnixGate {
        name,
        limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        when_full: postern_daemon::accept::WhenFull::Wait,
    };
    postern_daemon::accept::serve_unix(listener, gate, sessions, shutdown.clone(), |stream| {
        serve(stream, ctx.clone(), shutdown.clone())
    })
    .await;
}

async fn purge_loop(directory: Directory, shutdown: CancellationToken) {
    let lockouts = directory.lockouts();
    let policy = directory.shared_policy();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(300)) => {
                if let Err(e) = lockouts.purge_expired().await {
                    warn!(error = %e, "purging old failure records failed");
                }
                if let Err(e) = policy.sweep().await {
                    warn!(error = %e, "purging expired sending counts and greylist triplets failed");
                }
            }
        }
    }
}
