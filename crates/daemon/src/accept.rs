//! One accept loop for every TCP door (smtpd's 25/587/465, imapd's IMAP and POP3, the
//! autoconfig listener): a connection gets a slot of the global limit, then (imapd) one of
//! a second limit, then a place in its client's per-address count; the first that is full
//! turns it away with the protocol's own reply. Admitted connections run as sessions in a
//! set the daemon shares between its listeners and drains at shutdown.
//!
//! Unix sockets (smtpd's control socket, lmtp-deliver's LMTP socket, authd's three) go
//! through [`serve_unix`]: one limit, and when it is full either a refusal or a wait.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::PerIp;

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The global limit is reached.
    Busy,
    /// The second limit is reached (imapd: connections not logged in).
    Second,
    /// The client's address holds its share.
    PerIp,
}

impl Refused {
    fn log_text(self) -> &'static str {
        match self {
            Self::Busy => "too many connections",
            Self::Second => "too many connections not logged in",
            Self::PerIp => "too many connections from this address",
        }
    }
}

/// Who gets in through one listener.
#[derive(Clone)]
pub struct Gate {
    /// For logs (`door = …`).
    pub name: &'static str,
    /// Connections served at once (shared by the listeners that share it).
    pub limit: Arc<Semaphore>,
    /// A second limit, checked after the first (imapd's `max_unauthenticated`); its permit
    /// is in the [`Ticket`] for the session to keep or give back.
    pub second: Option<Arc<Semaphore>>,
    /// Connections per client address (see [`crate::per_ip::client_key`]) and the most
    /// each may hold; `None`: no per-client limit.
    pub per_ip: Option<(PerIp, usize)>,
    /// Clients exempt from the per-client limit (smtpd's trusted networks).
    pub exempt: Option<Arc<dyn Fn(IpAddr) -> bool + Send + Sync>>,
    /// The protocol's reply to a refused client (empty: close without a word, as on TLS
    /// ports, where nothing readable can be said before the handshake).
    pub refusal: fn(Refused) -> &'static [u8],
}

/// An admitted connection's places; dropping it gives them back.
pub struct Ticket {
    per_ip: Option<(PerIp, IpAddr)>,
    second: Option<OwnedSemaphorePermit>,
    _permit: OwnedSemaphorePermit,
}

impl Ticket {
    /// The permit of [`Gate::second`], for the session to hold as long as it needs.
    pub fn take_second(&mut self) -> Option<OwnedSemaphorePermit> {
        self.second.take()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // The per-client place first, then the global slot (with the fields).
        if let Some((t, ip)) = &self.per_ip {
            t.leave(*ip);
        }
    }
}

impl Gate {
    /// A ticket for a client at `peer`, or why not.
    pub fn admit(&self, peer: IpAddr) -> Result<Ticket, Refused> {
        let permit = self
            .limit
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        let second = match &self.second {
            Some(s) => Some(s.clone().try_acquire_owned().map_err(|_| Refused::Second)?),
            None => None,
        };
        let exempt = self.exempt.as_ref().is_some_and(|f| f(peer));
        let per_ip = match &self.per_ip {
            Some((t, max)) if !exempt => {
                if !t.enter(peer, *max) {
                    return Err(Refused::PerIp);
                }
                Some((t.clone(), peer))
            }
            _ => None,
        };
        Ok(Ticket {
            per_ip,
            second,
            _permit: permit,
        })
    }
}

/// Sessions of a daemon's listeners.
pub type Sessions = Arc<Mutex<JoinSet<()>>>;

/// Accepts on `listener` until `shutdown`, admitting through `gate`; each admitted
/// connection runs `session(tcp, peer, local, ticket)` in `sessions`.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    gate: Gate,
    sessions: Sessions,
    shutdown: CancellationToken,
    session: F,
) where
    F: Fn(TcpStream, SocketAddr, SocketAddr, Ticket) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    warn!(error = %e, door = gate.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Replies are written whole; no reason to wait for the client's ACK (Nagle).
        let _ = tcp.set_nodelay(true);
        let ticket = match gate.admit(peer.ip()) {
            Ok(t) => t,
            Err(why) => {
                info!(%peer, door = gate.name, "{}", why.log_text());
                tokio::spawn(refuse(tcp, (gate.refusal)(why)));
                continue;
            }
        };
        let mut set = sessions.lock().await;
        // Reap finished sessions so the set does not grow.
        while set.try_join_next().is_some() {}
        set.spawn(session(tcp, peer, local, ticket));
    }
}

async fn refuse(mut tcp: TcpStream, line: &'static [u8]) {
    if !line.is_empty() {
        let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(line)).await;
    }
}

/// What a Unix socket does with a client while its limit is full.
#[derive(Clone, Debug)]
pub enum WhenFull {
    /// Stop accepting until a place is free: clients wait in the listen queue (authd, whose
    /// clients are smtpd and imapd and would rather wait than fail a login).
    Wait,
    /// Accept, write this reply (the protocol's "try again later") and close.
    Refuse(Arc<[u8]>),
}

/// Who gets in through one Unix socket.
#[derive(Clone, Debug)]
pub struct UnixGate {
    /// For logs (`door = …`).
    pub name: &'static str,
    /// Connections served at once (shared by the listeners that share it).
    pub limit: Arc<Semaphore>,
    /// When `limit` is full.
    pub when_full: WhenFull,
}

/// Accepts on the Unix socket `listener` until `shutdown`, within `gate`'s limit; each
/// admitted connection runs `session(stream)` in `sessions`, holding its place until it
/// ends. The caller removes the socket file and drains `sessions`.
pub async fn serve_unix<F, Fut>(
    listener: UnixListener,
    gate: UnixGate,
    sessions: Sessions,
    shutdown: CancellationToken,
    session: F,
) where
    F: Fn(UnixStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let waited = match gate.when_full {
            WhenFull::Wait => tokio::select! {
                _ = shutdown.cancelled() => return,
                p = gate.limit.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
            },
            WhenFull::Refuse(_) => None,
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, door = gate.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let permit = match (waited, &gate.when_full) {
            (Some(p), _) => p,
            (None, WhenFull::Refuse(line)) => match gate.limit.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    info!(door = gate.name, "too many connections");
                    let (mut s, line) = (stream, line.clone());
                    tokio::spawn(async move {
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), s.write_all(&line)).await;
                    });
                    continue;
                }
            },
            // Not reached: Wait always waited for its permit.
            (None, WhenFull::Wait) => continue,
        };
        let fut = session(stream);
        let mut set = sessions.lock().await;
        while set.try_join_next().is_some() {}
        set.spawn(async move {
            fut.await;
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Starts `serve_unix` with a limit of one; each session holds its connection until the
    /// client closes it.
    fn unix_door(
        dir: &std::path::Path,
        when_full: WhenFull,
    ) -> (std::path::PathBuf, Sessions, CancellationToken) {
        let path = dir.join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let gate = UnixGate {
            name: "test",
            limit: Arc::new(Semaphore::new(1)),
            when_full,
        };
        let sessions: Sessions = Default::default();
        let shutdown = CancellationToken::new();
        tokio::spawn(serve_unix(
            listener,
            gate,
            sessions.clone(),
            shutdown.clone(),
            |mut s: UnixStream| async move {
                let _ = s.write_all(b"hello\n").await;
                let mut b = [0u8; 1];
                let _ = s.read(&mut b).await;
            },
        ));
        (path, sessions, shutdown)
    }

    async fn first_bytes(s: &mut UnixStream) -> Vec<u8> {
        let mut b = vec![0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("an answer")
            .unwrap();
        b.truncate(n);
        b
    }

    #[tokio::test]
    async fn unix_socket_refuses_when_full_and_serves_again() {
        let dir = tempfile::tempdir().unwrap();
        let (path, sessions, shutdown) =
            unix_door(dir.path(), WhenFull::Refuse(Arc::from(&b"busy\n"[..])));
        let mut a = UnixStream::connect(&path).await.unwrap();
        assert_eq!(first_bytes(&mut a).await, b"hello\n");
        let mut b = UnixStream::connect(&path).await.unwrap();
        assert_eq!(first_bytes(&mut b).await, b"busy\n");
        assert_eq!(first_bytes(&mut b).await, b"", "closed after the refusal");
        drop(a);
        let mut again = Vec::new();
        for _ in 0..50 {
            let mut c = UnixStream::connect(&path).await.unwrap();
            again = first_bytes(&mut c).await;
            if again == b"hello\n" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(again, b"hello\n");
        shutdown.cancel();
        let mut set = sessions.lock().await;
        crate::finish_within(&mut set, Duration::from_secs(5), "test").await;
    }

    #[tokio::test]
    async fn unix_socket_makes_clients_wait_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _sessions, shutdown) = unix_door(dir.path(), WhenFull::Wait);
        let mut a = UnixStream::connect(&path).await.unwrap();
        assert_eq!(first_bytes(&mut a).await, b"hello\n");
        // Connected (the listen queue), but not served while `a` holds the only place.
        let mut b = UnixStream::connect(&path).await.unwrap();
        let mut buf = [0u8; 8];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), b.read(&mut buf))
                .await
                .is_err(),
            "served past the limit"
        );
        drop(a);
        assert_eq!(first_bytes(&mut b).await, b"hello\n");
        shutdown.cancel();
    }

    #[test]
    fn global_then_second_then_per_ip() {
        let gate = Gate {
            name: "test",
            limit: Arc::new(Semaphore::new(3)),
            second: Some(Arc::new(Semaphore::new(2))),
            per_ip: Some((PerIp::new(), 1)),
            exempt: Some(Arc::new(|ip: IpAddr| ip.is_loopback())),
            refusal: |_| b"",
        };
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let mut t1 = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).err(), Some(Refused::PerIp));
        let t2 = gate.admit(b).unwrap();
        assert_eq!(
            gate.admit("127.0.0.1".parse().unwrap()).err(),
            Some(Refused::Second)
        );
        // A session that gives back its second permit (logged in) frees a place there.
        drop(t1.take_second());
        let t3 = gate.admit("127.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(gate.admit(b).err(), Some(Refused::Busy));
        drop(t2);
        let t4 = gate.admit("127.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(
            gate.admit("127.0.0.3".parse().unwrap()).err(),
            Some(Refused::Busy)
        );
        drop(t1);
        assert_eq!(gate.admit(a).err(), Some(Refused::Second));
        drop(t4);
        let _t5 = gate.admit(a).unwrap();
        drop(t3);
    }
}
