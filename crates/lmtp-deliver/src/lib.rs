//! lmtp-deliver: final delivery into Maildir over LMTP (RFC 2033), the counterpart of
//! dovecot-lmtp.
//!
//! The protocol state machine is `postern-smtp-session` (shared with smtpd); the Maildir
//! store is `postern-maildir`; filtering is `postern-sieve`. This crate drives sockets,
//! asks authd's userdb who a recipient is, and turns Sieve actions into deliveries.
//! A recipient whose account lives on another node (`host=`, `[proxy]`) is forwarded there
//! over LMTP/TCP (`proxy`, Dovecot's `lmtp_proxy`); the TCP listeners offer `STARTTLS` with
//! `[tls]`'s certificate (`tls`).
#![forbid(unsafe_code)]

mod busy;
mod conn;
mod deliver;
mod metrics;
mod proxy;
mod rcpt;
mod submit;
mod tls;
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
    /// The TCP listeners' sessions: `STARTTLS` offered when `[tls]` is set.
    pub(crate) tcp_session: Arc<SessionConfig>,
    pub(crate) userdb_socket: PathBuf,
    /// authd's userdb answers kept here too ([`rcpt::user_cache`]).
    pub(crate) user_cache: Option<rcpt::UserCache>,
    /// `[tls]`'s certificate for `STARTTLS` on the TCP listeners.
    pub(crate) tls: Option<postern_daemon::Tls>,
    /// How recipients living on other nodes are reached ([`proxy`]).
    pub(crate) hop: proxy::Hop,
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
        if config.lmtp.allow_networks.is_empty() && !addr.ip().is_loopback() {
            warn!(listen = %addr, "[lmtp] allow_networks is empty: only loopback clients may deliver on this listener");
        }
        tcp.push(l);
    }
    Ok(Listeners {
        unix: (unix, path),
        tcp,
    })
}

/// Refuses a TCP client outside `[lmtp] allow_networks`: one `554` line, nothing read.
async fn refuse_stranger(mut s: tokio::net::TcpStream, peer: SocketAddr) {
    use tokio::io::AsyncWriteExt as _;
    warn!(
        client = %peer,
        "LMTP connection from a network not in [lmtp] allow_networks refused"
    );
    let line = b"554 5.7.1 Access denied: this network may not deliver here\r\n";
    drop(tokio::time::timeout(Duration::from_secs(5), s.write_all(line)).await);
    drop(s.shutdown().await);
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
    // STARTTLS on the TCP listeners (between nodes), with the certificate smtpd and imapd
    // use; the Unix socket is local and gets none. A certificate this daemon cannot read
    // (another user's key) is logged and STARTTLS not offered: fronts with [proxy] tls =
    // "verify" then defer (never send in clear), "may" and "none" go on delivering.
    let tls = match &config.tls {
        Some(t) if !listeners.tcp.is_empty() => {
            match postern_daemon::Tls::load(&config.resolve(&t.cert), &config.resolve(&t.key)) {
                Ok(t) => Some(t),
                Err(e) => {
                    warn!(error = %format!("{e:#}"), "[tls] certificate unusable: no STARTTLS on the [lmtp] listen addresses");
                    None
                }
            }
        }
        _ => None,
    };
    if let Some(t) = tls.clone() {
        tokio::spawn(postern_daemon::tls::reload_on_hup(t, shutdown.clone()));
    }
    let mut tcp_session = session_config(&config);
    tcp_session.extensions.starttls = tls.is_some();
    let ctx = Arc::new(Ctx {
        session: Arc::new(session_config(&config)),
        tcp_session: Arc::new(tcp_session),
        userdb_socket: config.socket_path(&config.authd.userdb_socket),
        user_cache: rcpt::user_cache(&config),
        tls,
        hop: proxy::Hop::new(&config)?,
        config,
    });
    // One limit for the socket and the TCP listeners; a client past it is told to retry.
    let limit = Arc::new(Semaphore::new(ctx.config.lmtp.max_connections.get()));
    let sessions = postern_daemon::accept::Sessions::default();
    let Listeners { unix, tcp } = listeners;
    let (unix, unix_path) = unix;
    let mut acceptors = JoinSet::new();
    let gate = postern_daemon::accept::UnixGate {
        name: "lmtp",
        limit: limit.clone(),
        when_full: postern_daemon::accept::WhenFull::Refuse(Arc::from(TOO_MANY)),
    };
    {
        let (ctx, sd) = (ctx.clone(), shutdown.clone());
        acceptors.spawn(postern_daemon::accept::serve_unix(
            unix,
            gate,
            sessions.clone(),
            shutdown.clone(),
            move |s| conn::serve(Accepted::Unix(s), ctx.clone(), sd.clone()),
        ));
    }
    for l in tcp {
        let gate = postern_daemon::accept::Gate {
            name: "lmtp",
            limit: limit.clone(),
            second: None,
            per_ip: None,
            exempt: None,
            refusal: |_| TOO_MANY,
        };
        let (ctx, sd) = (ctx.clone(), shutdown.clone());
        acceptors.spawn(postern_daemon::accept::serve(
            l,
            gate,
            sessions.clone(),
            shutdown.clone(),
            move |s, peer, _, ticket| {
                let (ctx, sd) = (ctx.clone(), sd.clone());
                async move {
                    // LMTP has no authentication: only the networks the admin names (the
                    // cluster's front nodes; loopback by default) may deliver.
                    if ctx.config.lmtp.tcp_client_allowed(peer.ip()) {
                        conn::serve(Accepted::Tcp(s, peer), ctx, sd).await;
                    } else {
                        refuse_stranger(s, peer).await;
                    }
                    drop(ticket);
                }
            },
        ));
    }
    metrics::start(&ctx.config, shutdown.clone()).await?;
    postern_daemon::notify_ready("lmtp-deliver");
    shutdown.cancelled().await;
    while acceptors.join_next().await.is_some() {}
    let mut sessions = sessions.lock().await;
    postern_daemon::finish_within(&mut sessions, SHUTDOWN_GRACE, "sessions").await;
    drop(std::fs::remove_file(&unix_path));
    info!("lmtp-deliver stopped");
    Ok(())
}

/// The reply to a client past `[lmtp] max_connections`.
const TOO_MANY: &[u8] = b"421 4.3.2 Too many connections, try again later\r\n";

/// A new connection.
pub(crate) enum Accepted {
    Unix(tokio::net::UnixStream),
    Tcp(tokio::net::TcpStream, SocketAddr),
}
