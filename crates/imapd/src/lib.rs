//! imapd: IMAP4rev2/IMAP4rev1 and POP3 over the Maildir tree that lmtp-deliver writes.
//!
//! One process serves every connection: IMAP on 143 (STARTTLS) and 993, POP3 on 110 (STLS)
//! and 995, ManageSieve on 4190 when `managesieve_listen` is set ([`managesieve`]). Logins go
//! through authd's `auth` socket (so its lockouts apply); the Maildir comes from authd's
//! `auth-userdb`.

pub mod imap;
pub mod kick;
pub mod login;
pub mod managesieve;
mod metrics;
pub mod mover;
pub mod pop3;
pub mod proxy;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use postern_config::Config;
use postern_daemon::accept::{Gate, Refused};
use postern_daemon::{Stream, Tls};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// How long sessions get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Time allowed for a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS handshake over an accepted connection (implicit TLS, STARTTLS, STLS), within
/// [`TLS_HANDSHAKE_TIMEOUT`]. `None` when there is no certificate, or the handshake failed or
/// timed out (logged for `protocol` at `peer`).
pub(crate) async fn tls_accept(
    tls: Option<&Tls>,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    protocol: &str,
) -> Option<Stream> {
    let tls = tls?;
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.acceptor().accept(tcp)).await {
        Ok(Ok(s)) => Some(Stream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            info!(peer = %peer, error = %e, "{protocol}: TLS handshake failed");
            None
        }
        Err(_) => {
            info!(peer = %peer, "{protocol}: TLS handshake timed out");
            None
        }
    }
}

/// Writes `buf` and flushes within `timeout` (a client that stops reading is dropped, not
/// waited for).
pub(crate) async fn write_within(
    stream: &mut Stream,
    buf: &[u8],
    timeout: Duration,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    match tokio::time::timeout(timeout, async {
        stream.write_all(buf).await?;
        stream.flush().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// IMAP, STARTTLS available (143).
    Imap,
    /// IMAP over implicit TLS (993).
    Imaps,
    /// POP3, STLS available (110).
    Pop3,
    /// POP3 over implicit TLS (995).
    Pop3s,
    /// ManageSieve, STARTTLS available (4190).
    ManageSieve,
}

impl Door {
    /// The name used in logs (`listening on ADDR (imap)`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Imap => "imap",
            Self::Imaps => "imaps",
            Self::Pop3 => "pop3",
            Self::Pop3s => "pop3s",
            Self::ManageSieve => "managesieve",
        }
    }

    fn implicit_tls(self) -> bool {
        matches!(self, Self::Imaps | Self::Pop3s)
    }
}

/// What every session shares.
pub struct Ctx {
    /// The whole config (sessions read `[imapd]`, `hostname`, sockets).
    pub config: Config,
    /// The certificate, when `[tls]` is configured (reloaded on SIGHUP).
    pub tls: Option<Tls>,
    /// Limits the number of sessions not yet logged in.
    pub unauthenticated: Arc<Semaphore>,
    per_ip: postern_daemon::PerIp,
    /// The shared inotify watcher that wakes IDLE sessions (started on first use; `None`
    /// inside when inotify is unavailable and IDLE polls).
    pub(crate) notifier: std::sync::OnceLock<Option<Arc<imap::notify::Notifier>>>,
    /// The TLS client towards cluster backends (`[proxy] tls`), built on first use.
    hop_tls: std::sync::OnceLock<Result<Option<tokio_rustls::TlsConnector>, String>>,
    /// Logged-in sessions by user, for the kick socket ([`kick`]).
    pub kicks: Arc<kick::Registry>,
}

impl Ctx {
    /// A context for `config` (tests build one without listeners).
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let tls = match &config.tls {
            Some(t) => Some(Tls::load(
                &config.resolve(&t.cert),
                &config.resolve(&t.key),
            )?),
            None => None,
        };
        Ok(Self {
            unauthenticated: Arc::new(Semaphore::new(config.imapd.max_unauthenticated.get())),
            per_ip: postern_daemon::PerIp::new(),
            notifier: std::sync::OnceLock::new(),
            hop_tls: std::sync::OnceLock::new(),
            kicks: Arc::default(),
            tls,
            config,
        })
    }

    /// True if a client at `ip` may log in without TLS.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.config
            .imapd
            .trusted_networks
            .iter()
            .any(|n| n.contains(&ip))
    }
}

impl Ctx {
    /// True if a client at `ip` is a front node whose word on the real client is believed
    /// (`[imapd] proxy_networks`).
    pub fn is_proxy(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.config
            .imapd
            .proxy_networks
            .iter()
            .any(|n| n.contains(&ip))
    }

    /// The TLS client for the hop to cluster backends; `None` with `[proxy] tls = "none"`.
    pub(crate) fn hop_tls(&self) -> Result<Option<tokio_rustls::TlsConnector>, String> {
        self.hop_tls
            .get_or_init(|| postern_smtp_client::tls::hop_connector(&self.config))
            .clone()
    }
}

/// An IPv4-mapped IPv6 address as IPv4, so `127.0.0.0/8` matches `::ffff:127.0.0.1`.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One accepted connection, handed to the IMAP or POP3 session.
pub struct Connection {
    /// Plain or TLS.
    pub stream: Stream,
    /// The client.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// The listener.
    pub door: Door,
    /// Held until the client logs in (or leaves): counts against `max_unauthenticated`.
    pub unauth_permit: Option<OwnedSemaphorePermit>,
}

/// The bound listeners.
pub struct Listeners {
    bound: Vec<(TcpListener, Door)>,
    /// The move receiver (`[proxy] move_listen`), when set.
    mover: Option<mover::MoveListener>,
    /// The kick socket `imapd` in the run directory.
    kick: (tokio::net::UnixListener, std::path::PathBuf),
}

/// Binds every listener of `[imapd]`, logging `listening on ADDR (imap|imaps|pop3|pop3s)`.
pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
    let s = &config.imapd;
    let mut bound = Vec::new();
    for (addrs, door) in [
        (&s.imap, Door::Imap),
        (&s.imaps, Door::Imaps),
        (&s.pop3, Door::Pop3),
        (&s.pop3s, Door::Pop3s),
        (&s.managesieve_listen, Door::ManageSieve),
    ] {
        for a in addrs {
            let l = TcpListener::bind(a)
                .await
                .with_context(|| format!("binding {a}"))?;
            info!("listening on {} ({})", l.local_addr()?, door.name());
            bound.push((l, door));
        }
    }
    let mover = mover::bind(config).await?;
    let kick = kick::bind(config)?;
    Ok(Listeners { bound, mover, kick })
}

/// Serves until `shutdown`, then gives running sessions a moment to finish.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ctx = Arc::new(Ctx::new(config)?);
    imap::set_metadata_server_info(imap::MetadataServerInfo {
        admin: ctx
            .config
            .imapd
            .metadata_admin
            .clone()
            .or_else(|| (ctx.config.smtpd.postmaster.as_ref()).map(|p| format!("mailto:{p}"))),
        comment: ctx.config.imapd.metadata_comment.clone(),
    });
    if ctx.tls.is_none() && listeners.bound.iter().any(|(_, d)| d.implicit_tls()) {
        anyhow::bail!("[imapd] imaps/pop3s (993/995) need a [tls] certificate");
    }
    if let Some(tls) = ctx.tls.clone() {
        tokio::spawn(postern_daemon::tls::reload_on_hup(tls, shutdown.clone()));
    }
    let limit = Arc::new(Semaphore::new(ctx.config.imapd.max_connections.get()));
    let sessions = Arc::new(tokio::sync::Mutex::new(JoinSet::new()));
    let mut acceptors = JoinSet::new();
    for (listener, door) in listeners.bound {
        acceptors.spawn(accept_loop(
            listener,
            door,
            ctx.clone(),
            limit.clone(),
            sessions.clone(),
            shutdown.clone(),
        ));
    }
    if let Some(m) = listeners.mover {
        acceptors.spawn(mover::serve(m, ctx.clone(), shutdown.clone()));
    }
    let (kick_listener, kick_path) = listeners.kick;
    let kicks = ctx.kicks.clone();
    acceptors.spawn(kick::serve(
        kick_listener,
        kick_path,
        kicks,
        shutdown.clone(),
    ));
    metrics::start(&ctx.config, shutdown.clone()).await?;
    postern_daemon::notify_ready("imapd");
    shutdown.cancelled().await;
    while acceptors.join_next().await.is_some() {}
    let mut s = sessions.lock().await;
    postern_daemon::finish_within(&mut s, SHUTDOWN_GRACE, "sessions").await;
    info!("imapd stopped");
    Ok(())
}

/// The reply a refused client gets on `door`.
fn refusal(door: Door) -> fn(Refused) -> &'static [u8] {
    match door {
        Door::Imap => |why| match why {
            Refused::PerIp => b"* BYE [UNAVAILABLE] Too many connections from your address\r\n",
            _ => b"* BYE [UNAVAILABLE] Too many connections, try again later\r\n",
        },
        Door::Pop3 => |_| b"-ERR [SYS/TEMP] Too many connections, try again later\r\n",
        Door::ManageSieve => |_| b"BYE (TRYLATER) \"Too many connections, try again later\"\r\n",
        // TLS ports: nothing readable can be said before the handshake.
        Door::Imaps | Door::Pop3s => |_| b"",
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
    // Trusted networks are exempt from the per-client limit, as in smtpd (the local
    // webmail holds many sessions from one address), and so are the cluster's front nodes
    // (`proxy_networks`: every user of a front comes from its address).
    let c = ctx.clone();
    let gate = Gate {
        name: door.name(),
        limit,
        second: Some(ctx.unauthenticated.clone()),
        per_ip: Some((ctx.per_ip.clone(), ctx.config.imapd.max_connections_per_ip)),
        exempt: Some(Arc::new(move |ip| c.is_trusted(ip) || c.is_proxy(ip))),
        refusal: refusal(door),
    };
    let sd = shutdown.clone();
    postern_daemon::accept::serve(
        listener,
        gate,
        sessions,
        shutdown,
        move |tcp, peer, local, mut ticket| {
            let ctx2 = ctx.clone();
            let sd = sd.clone();
            metrics::connection(door);
            async move {
                let stream = if door.implicit_tls() {
                    tls_accept(ctx2.tls.as_ref(), tcp, peer, door.name()).await
                } else {
                    Some(Stream::Plain(tcp))
                };
                if let Some(stream) = stream {
                    let conn = Connection {
                        stream,
                        peer,
                        local,
                        door,
                        unauth_permit: ticket.take_second(),
                    };
                    match door {
                        Door::Imap | Door::Imaps => imap::serve(conn, ctx2.clone(), sd).await,
                        Door::Pop3 | Door::Pop3s => pop3::serve(conn, ctx2.clone(), sd).await,
                        Door::ManageSieve => managesieve::serve(conn, ctx2.clone(), sd).await,
                    }
                }
                drop(ticket);
            }
        },
    )
    .await;
}
