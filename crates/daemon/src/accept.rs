//! One accept loop for every TCP door (smtpd's 25/587/465, imapd's IMAP and POP3, the
//! autoconfig listener): a connection gets a slot of the global limit, then (imapd) one of
//! a second limit, then a place in its client's per-address count; the first that is full
//! turns it away with the protocol's own reply. Admitted connections run as sessions in a
//! set the daemon shares between its listeners and drains at shutdown.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
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

#[cfg(test)]
mod tests {
    use super::*;

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
