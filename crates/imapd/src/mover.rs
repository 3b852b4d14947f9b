//! The move receiver (`[proxy] move_listen`): the destination side of `mailctl user move`.
//!
//! `mailctl` on the source node connects here and runs the move protocol of
//! `postern-transfer` (a mutual HMAC handshake over the nodes' shared secret
//! `[proxy] move_secret_file`, then an rsync-like copy of the user's home into
//! `<home>.postern-move`, verified by hashes and renamed into place). The receiver lives in
//! imapd because imapd already owns the mail as the mail user, has the TLS certificate and
//! knows the home layout; the protocol itself is synchronous and runs on the blocking pool
//! (`SyncIoBridge` over the TCP or TLS stream).
//!
//! Limits: peers outside `[proxy] move_networks` (loopback when empty) are closed before
//! anything is read; at most [`MAX_TRANSFERS`] connections at once (more are closed at
//! once); a connection silent for `[proxy] idle_timeout_secs` is closed, and so is every
//! connection at shutdown. With `[proxy] tls` = `may` or `verify` the receiver requires
//! implicit TLS with imapd's `[tls]` certificate; with `none` it speaks plain text.
//!
//! The home of an address: after the address was checked ([`home_for`]: no `/`, no `..`,
//! no part that is `.` or starts with one, a plain domain), authd's userdb is asked with
//! `service=postern-move`, which answers (with the home) only for an account the directory
//! marks as moving to this node (`moving_to` = `[proxy] self`); any other `begin` is
//! refused — the shared secret alone does not open every home of the node. A node without
//! `[proxy] self` (it could not serve a moved account as local anyway) expands the
//! `[authd.userdb] home` template without asking.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use postern_config::{Config, HopTls};
use postern_daemon::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::io::SyncIoBridge;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tracing::{info, warn};

use crate::Ctx;

/// Transfers served at once.
pub const MAX_TRANSFERS: usize = 4;

/// How long transfers in flight get after SIGTERM before their streams fail.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The longest a peer may take from the greeting to a correct proof of the secret, however
/// it trickles its bytes in (at most `[proxy] idle_timeout_secs`): the idle clock alone
/// would let a stranger hold one of the [`MAX_TRANSFERS`] slots for ever by sending a byte
/// just before each idle timeout.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound receiver with its secret (read at start: a missing or readable-by-others
/// secret stops imapd from starting).
pub struct MoveListener {
    listener: TcpListener,
    secret: Arc<Vec<u8>>,
}

impl MoveListener {
    /// The bound address (port 0 in tests).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Binds `[proxy] move_listen` when set, logging `listening on ADDR (move)`.
pub async fn bind(config: &Config) -> anyhow::Result<Option<MoveListener>> {
    let Some(addr) = config.proxy.move_listen_addr() else {
        return Ok(None);
    };
    if config.proxy.tls != HopTls::None && config.tls.is_none() {
        anyhow::bail!(
            "[proxy] move_listen with tls = \"may\" or \"verify\" needs a [tls] certificate"
        );
    }
    let path = config
        .proxy
        .move_secret_path()
        .context("[proxy] move_listen needs move_secret_file")?;
    let secret = postern_transfer::read_secret(&config.resolve(path))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr} ([proxy] move_listen)"))?;
    info!("listening on {} (move)", listener.local_addr()?);
    Ok(Some(MoveListener {
        listener,
        secret: Arc::new(secret),
    }))
}

/// The home of `address` on this node: the address checked, then the home template
/// expanded for it.
pub fn home_for(template: &str, address: &str) -> Result<PathBuf, String> {
    postern_transfer::check_address(address)?;
    let (_, domain) = address.rsplit_once('@').unwrap_or_default();
    let domain_ok = domain.split('.').all(|label| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !domain_ok {
        return Err(format!(
            "{address:?}: not a domain this node can have homes for"
        ));
    }
    let home = PathBuf::from(postern_config::expand_template(template, address));
    if !home.is_absolute() {
        return Err(format!(
            "the home template {template:?} gives a relative path here"
        ));
    }
    Ok(home)
}

/// authd's userdb socket when the receiver must check that an account is being moved
/// here before it takes its home: whenever `[proxy] self` names this node (a node without
/// it cannot tell "here" from elsewhere — nor serve a moved account as local afterwards —
/// and only expands the home template, as before).
fn directory_check(config: &Config) -> Option<PathBuf> {
    (!config.proxy.self_name.trim().is_empty())
        .then(|| config.socket_path(&config.authd.userdb_socket))
}

/// The home of `address` from authd's userdb (`USER` with `service=postern-move`), which
/// answers only for an account the directory marks as moving to this node
/// (`moving_to` = `[proxy] self`): the shared secret alone then cannot make the receiver
/// write or remove the home of an account nobody is moving here.
async fn moving_here(userdb: &std::path::Path, address: &str) -> Result<PathBuf, String> {
    use postern_auth_proto::client::UserdbClient;
    let unavailable = |e: &dyn std::fmt::Display| {
        format!("authd's userdb cannot say where {address} goes now: {e}")
    };
    let mut db = UserdbClient::connect_with_timeout(userdb, Duration::from_secs(30))
        .await
        .map_err(|e| unavailable(&e))?;
    match db.user(address, "postern-move").await {
        Ok(Some(fields)) => fields
            .into_iter()
            .find(|(k, _)| k == "home")
            .map(|(_, v)| PathBuf::from(v))
            .ok_or_else(|| format!("authd's userdb gave no home for {address}")),
        Ok(None) => Err(format!(
            "{address} is not being moved to this node (the directory does not mark it \
             moving to [proxy] self); mark it with `mailctl user move` first"
        )),
        Err(e) => Err(unavailable(&e)),
    }
}

/// Accepts until `shutdown`, then gives transfers in flight [`SHUTDOWN_GRACE`].
pub async fn serve(ml: MoveListener, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_TRANSFERS));
    let mut transfers = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = ml.listener.accept() => a,
        };
        while transfers.try_join_next().is_some() {}
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "move: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !ctx.config.proxy.move_peer_allowed(peer.ip()) {
            info!(%peer, "move: connection refused (not in [proxy] move_networks)");
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            info!(%peer, "move: connection refused ({MAX_TRANSFERS} transfers running)");
            continue;
        };
        transfers.spawn(connection(
            tcp,
            peer,
            ctx.clone(),
            ml.secret.clone(),
            shutdown.clone(),
            permit,
        ));
    }
    postern_daemon::finish_within(&mut transfers, SHUTDOWN_GRACE, "move transfers").await;
}

async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    ctx: Arc<Ctx>,
    secret: Arc<Vec<u8>>,
    shutdown: CancellationToken,
    permit: OwnedSemaphorePermit,
) {
    let stream = if ctx.config.proxy.tls == HopTls::None {
        Some(Stream::Plain(tcp))
    } else {
        crate::tls_accept(ctx.tls.as_ref(), tcp, peer, "move").await
    };
    let Some(stream) = stream else {
        return;
    };
    let idle = ctx.config.proxy.idle_timeout_secs.duration();
    let authenticated = Arc::new(AtomicBool::new(false));
    let guarded = Guarded::new(stream, idle, shutdown)
        .with_handshake_deadline(idle.min(HANDSHAKE_TIMEOUT), authenticated.clone());
    let bridge = SyncIoBridge::new(guarded);
    let template = ctx.config.home_template();
    let check = directory_check(&ctx.config);
    let runtime = tokio::runtime::Handle::current();
    let result = tokio::task::spawn_blocking(move || {
        let mut bridge = bridge;
        let home_of = |address: &str| {
            let home = home_for(&template, address).and_then(|home| match &check {
                None => Ok(home),
                Some(userdb) => runtime.block_on(moving_here(userdb, address)),
            });
            match &home {
                Ok(h) => info!(%peer, user = address, home = %h.display(), "move: receiving"),
                Err(e) => info!(%peer, user = address, error = %e, "move: refused"),
            }
            home
        };
        let r = postern_transfer::serve_with(&mut bridge, &secret, &home_of, &|| {
            authenticated.store(true, Ordering::Release)
        });
        let _ = bridge.shutdown();
        r
    })
    .await;
    match result {
        Ok(Ok(())) => info!(%peer, "move: connection closed"),
        Ok(Err(postern_transfer::TransferError::Auth)) => {
            warn!(%peer, "move: authentication failed (wrong secret?)")
        }
        Ok(Err(e)) => info!(%peer, error = %e, "move: connection ended"),
        Err(e) => warn!(%peer, error = %e, "move: transfer task failed"),
    }
    drop(permit);
}

/// A stream whose reads and writes fail once one of them has waited for `idle`, or `stop`
/// is cancelled (the blocking protocol code cannot be interrupted any other way). The clock
/// runs only while an operation waits: time the receiver spends working (hashing a large
/// staging directory) is not idleness.
struct Guarded {
    inner: Stream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    stop: Pin<Box<WaitForCancellationFutureOwned>>,
    /// An operation is pending (its deadline is set).
    waiting: bool,
    /// Until the peer has authenticated: the deadline of the whole handshake, and the flag
    /// the protocol sets once the proof checked.
    handshake: Option<(Pin<Box<Sleep>>, Arc<AtomicBool>)>,
}

impl Guarded {
    fn new(inner: Stream, idle: Duration, stop: CancellationToken) -> Self {
        Self {
            inner,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            stop: Box::pin(stop.cancelled_owned()),
            waiting: false,
            handshake: None,
        }
    }

    /// Fails every operation once `within` has passed since now unless `authenticated`
    /// was set by then.
    fn with_handshake_deadline(mut self, within: Duration, authenticated: Arc<AtomicBool>) -> Self {
        self.handshake = Some((Box::pin(tokio::time::sleep(within)), authenticated));
        self
    }

    /// Whether the handshake's deadline has passed before authentication (registers for
    /// the wake-up while it runs).
    fn handshake_expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let (deadline, done) = self.handshake.as_mut()?;
        if done.load(Ordering::Acquire) {
            self.handshake = None;
            return None;
        }
        deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "no authentication within the handshake's time",
            )
        })
    }

    /// The idle clock starts again.
    fn touch(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    /// Why the operation must fail now, if it must (registers for both wake-ups).
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Some(io::Error::other("imapd is shutting down"));
        }
        if let Some(e) = self.handshake_expired(cx) {
            return Some(e);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "idle for [proxy] idle_timeout_secs",
            ));
        }
        None
    }

    fn guard<T>(
        &mut self,
        cx: &mut Context<'_>,
        op: impl FnOnce(Pin<&mut Stream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if self.stop.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::other("imapd is shutting down")));
        }
        if let Some(e) = self.handshake_expired(cx) {
            self.waiting = false;
            return Poll::Ready(Err(e));
        }
        if !self.waiting {
            self.touch();
            self.waiting = true;
        }
        match op(Pin::new(&mut self.inner), cx) {
            Poll::Ready(r) => {
                self.waiting = false;
                Poll::Ready(r)
            }
            Poll::Pending => match self.expired(cx) {
                Some(e) => {
                    self.waiting = false;
                    Poll::Ready(Err(e))
                }
                None => Poll::Pending,
            },
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().guard(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().guard(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const SECRET: &str = "a-secret-shared-by-the-test-nodes-0123456789";

    /// A receiver on 127.0.0.1 with `extra` in `[proxy]`; its config and address.
    async fn receiver(
        dir: &std::path::Path,
        extra: &str,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let secret = dir.join("move.secret");
        std::fs::write(&secret, SECRET).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let text = format!(
            "hostname = \"b2.example\"\n[authd.userdb]\nhome = \"{}/%d/%n\"\n[proxy]\nmove_listen = \"127.0.0.1:0\"\nmove_secret_file = \"move.secret\"\n{extra}",
            dir.join("homes").display()
        );
        let config = Config::parse(&text, dir).unwrap();
        let ml = bind(&config).await.unwrap().unwrap();
        let addr = ml.local_addr().unwrap();
        let ctx = Arc::new(Ctx::new(config).unwrap());
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(ml, ctx, stop.clone()));
        (addr, stop, task)
    }

    /// Connects (blocking) and reads the first line, "" when the server closed first.
    fn first_line(addr: SocketAddr) -> (String, std::net::TcpStream) {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut line = String::new();
        let _ = BufReader::new(s.try_clone().unwrap()).read_line(&mut line);
        (line, s)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_home_is_received_over_tcp() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = receiver(dir.path(), "").await;
        let homes = dir.path().join("homes");
        tokio::task::spawn_blocking(move || {
            let s = std::net::TcpStream::connect(addr).unwrap();
            let mut c = postern_transfer::Client::handshake(s, SECRET.as_bytes()).unwrap();
            assert_eq!(
                c.begin("bob@example.org").unwrap(),
                postern_transfer::Status::Fresh
            );
            let e = postern_transfer::Entry {
                path: "dovecot-uidlist".into(),
                kind: postern_transfer::Kind::File,
                size: 5,
                mtime: 1_700_000_000,
                mode: 0o600,
                sha256: None,
                target: None,
            };
            c.put(&e, &mut &b"hello"[..]).unwrap();
            c.commit().unwrap();
            let err = c.begin("x@y").unwrap_err().to_string();
            assert!(err.contains("already"), "{err}");
        })
        .await
        .unwrap();
        let got = std::fs::read(homes.join("example.org/bob/dovecot-uidlist")).unwrap();
        assert_eq!(got, b"hello");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn peers_outside_move_networks_are_closed_before_anything_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = receiver(dir.path(), "move_networks = [\"10.9.0.0/16\"]\n").await;
        let (line, _s) = tokio::task::spawn_blocking(move || first_line(addr))
            .await
            .unwrap();
        assert_eq!(line, "", "loopback is not in move_networks");
        stop.cancel();
        task.await.unwrap();
        // Loopback is allowed by default.
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = receiver(dir.path(), "").await;
        let (line, _s) = tokio::task::spawn_blocking(move || first_line(addr))
            .await
            .unwrap();
        assert!(line.contains("postern-move"), "{line}");
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn at_most_four_transfers_and_idle_ones_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = receiver(dir.path(), "idle_timeout_secs = 2\n").await;
        tokio::task::spawn_blocking(move || {
            let mut held = Vec::new();
            for _ in 0..MAX_TRANSFERS {
                let (line, s) = first_line(addr);
                assert!(line.contains("postern-move"), "{line}");
                held.push(s);
            }
            let (line, _) = first_line(addr);
            assert_eq!(line, "", "a fifth transfer is refused");
            // The silent ones are closed after idle_timeout_secs, freeing the slots.
            let t0 = std::time::Instant::now();
            for s in &mut held {
                let mut rest = Vec::new();
                let _ = s.read_to_end(&mut rest);
            }
            assert!(t0.elapsed() < Duration::from_secs(15));
            // Slots free again: a new connection gets its greeting (the last task may take
            // a moment to release its slot after the close).
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let (line, _s) = first_line(addr);
                if line.contains("postern-move") {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "slots never freed");
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
        .unwrap();
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stranger_trickling_bytes_is_closed_when_the_handshake_time_is_up() {
        // Slowloris: a byte every 300 ms never leaves the connection idle for
        // idle_timeout_secs = 1, but the handshake as a whole must be over within it.
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = receiver(dir.path(), "idle_timeout_secs = 1\n").await;
        let closed_after = tokio::task::spawn_blocking(move || {
            let (line, s) = first_line(addr);
            assert!(line.contains("postern-move"), "{line}");
            let t0 = std::time::Instant::now();
            let mut w = s.try_clone().unwrap();
            let trickle = std::thread::spawn(move || {
                let line = b"{\"op\":\"auth\",\"nonce\":\"00000000000000000000000000000000";
                for b in line.iter().cycle().take(30) {
                    if w.write_all(&[*b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
            let mut r = s;
            let mut rest = Vec::new();
            let _ = r.read_to_end(&mut rest);
            let closed_after = t0.elapsed();
            trickle.join().unwrap();
            closed_after
        })
        .await
        .unwrap();
        assert!(
            closed_after < Duration::from_millis(3500),
            "the trickling stranger kept the connection for {closed_after:?}"
        );
        stop.cancel();
        task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_a_transfer_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (addr, stop, task) = receiver(dir.path(), "").await;
        let mut s = tokio::task::spawn_blocking(move || first_line(addr).1)
            .await
            .unwrap();
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the receiver stops")
            .unwrap();
        tokio::task::spawn_blocking(move || {
            let _ = s.write_all(b"{}\n");
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
        })
        .await
        .unwrap();
    }

    /// The idle clock runs only while an operation waits: work between operations (a long
    /// hash) is not idleness; a read that waits longer than the limit fails.
    #[tokio::test]
    async fn the_idle_clock_runs_only_while_waiting() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (peer, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), l.accept());
        let mut peer = peer.unwrap();
        let stop = CancellationToken::new();
        let mut g = Guarded::new(
            Stream::Plain(accepted.unwrap().0),
            Duration::from_millis(300),
            stop.clone(),
        );
        g.write_all(b"hello\n").await.unwrap();
        // Busy for longer than the limit, no I/O pending.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let answer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            peer.write_all(b"x").await.unwrap();
            peer
        });
        let mut one = [0u8; 1];
        g.read_exact(&mut one)
            .await
            .expect("not idle: the read waited 100 ms");
        let _peer = answer.await.unwrap();
        // Now a read that waits too long.
        let err = g.read_exact(&mut one).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        // And shutdown fails an operation at once.
        stop.cancel();
        assert!(g.read_exact(&mut one).await.is_err());
    }

    #[test]
    fn addresses_are_checked_before_the_template() {
        let t = "/srv/mail/%d/%n";
        assert_eq!(
            home_for(t, "bob@example.org").unwrap(),
            PathBuf::from("/srv/mail/example.org/bob")
        );
        for bad in [
            "../../etc@x.org",
            "bob@../../etc",
            "bob@ex/ample.org",
            "a/b@example.org",
            ".@example.org",
            "bob@.",
            "bob@example..org",
            "bob@exa mple.org",
            "bob@",
            "bob",
        ] {
            assert!(home_for(t, bad).is_err(), "{bad}");
        }
        assert!(home_for("relative/%d/%n", "bob@example.org").is_err());
    }
}
