//! Ending a user's sessions on request: the registry of logged-in sessions by user, and
//! imapd's kick socket `imapd` in the run directory (client: `postern_control::imapd`).
//!
//! `mailctl user move` kicks the user's sessions on the source node before it copies the
//! home (and before every later pass), so that nothing here writes to it meanwhile; logins
//! are refused by authd while the account is marked moving.
//!
//! Every IMAP, POP3 and ManageSieve session that logs in (locally, or as the backend of a
//! cluster front that proxies to this node) registers under its user. A kick cancels the
//! sessions' tokens: a command in progress finishes, then the session says goodbye
//! (`* BYE [UNAVAILABLE] …`, `-ERR [SYS/TEMP] …`, `BYE (TRYLATER) "…"`) and closes; an
//! IDLE ends at once. Sessions a front proxies elsewhere are not registered there (the
//! backend's kick ends them through the relay).
//!
//! # Protocol
//!
//! One JSON object per line, at most [`MAX_LINE`] bytes; the socket is mode 0600 and the
//! peer must be root or imapd's own user (checked with `SO_PEERCRED` too):
//!
//! ```text
//! {"op":"kick","user":"a@b"}   → {"ok":true,"count":N}      (N sessions ended; case-insensitive)
//! anything else                → {"ok":false,"error":"…"}
//! ```
//!
//! The answer comes once the kicked sessions have closed (or after [`KICK_WAIT`]; those
//! still finishing a long command are counted and close right after it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The socket's name in the run directory.
pub const SOCKET_NAME: &str = "imapd";

/// Longest request line.
pub const MAX_LINE: usize = 4096;

/// How long a kick waits for the sessions to close before it answers.
pub const KICK_WAIT: Duration = Duration::from_secs(10);

/// How long the socket waits for a request.
const IDLE: Duration = Duration::from_secs(30);

/// The logged-in sessions by user (lowercased).
#[derive(Default)]
pub struct Registry {
    sessions: Mutex<HashMap<String, Vec<(u64, CancellationToken)>>>,
    next: AtomicU64,
    /// Signalled whenever a session leaves.
    left: Notify,
}

/// One session's place in the [`Registry`]; leaves it when dropped.
pub struct Registration {
    registry: Arc<Registry>,
    key: String,
    id: u64,
    token: CancellationToken,
}

fn key(user: &str) -> String {
    user.trim().to_lowercase()
}

impl Registry {
    /// Registers a session logged in as `user`.
    pub fn register(self: &Arc<Self>, user: &str) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let token = CancellationToken::new();
        let k = key(user);
        self.lock()
            .entry(k.clone())
            .or_default()
            .push((id, token.clone()));
        Registration {
            registry: self.clone(),
            key: k,
            id,
            token,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<(u64, CancellationToken)>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions of `user` registered now.
    pub fn count(&self, user: &str) -> usize {
        self.lock().get(&key(user)).map_or(0, Vec::len)
    }

    /// Tells every session of `user` to end; waits up to `wait` for them to close. Returns
    /// how many were told.
    pub async fn kick(&self, user: &str, wait: Duration) -> usize {
        let k = key(user);
        let ids: Vec<u64> = {
            let map = self.lock();
            let Some(list) = map.get(&k) else {
                return 0;
            };
            for (_, t) in list {
                t.cancel();
            }
            list.iter().map(|(id, _)| *id).collect()
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = self.left.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            let remaining = self
                .lock()
                .get(&k)
                .is_some_and(|l| l.iter().any(|(id, _)| ids.contains(id)));
            if !remaining {
                break;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                break;
            }
        }
        ids.len()
    }
}

impl Registration {
    /// Whether this session was kicked.
    pub fn is_kicked(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when this session is kicked.
    pub async fn kicked(&self) {
        self.token.cancelled().await;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = self.registry.lock();
        if let Some(list) = map.get_mut(&self.key) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                map.remove(&self.key);
            }
        }
        drop(map);
        self.registry.left.notify_waiters();
    }
}

/// Completes when the session of `reg` is kicked; never without a registration.
pub async fn kicked(reg: Option<&Registration>) {
    match reg {
        Some(r) => r.kicked().await,
        None => std::future::pending().await,
    }
}

/// The kick socket's path: `imapd` in the run directory.
pub fn socket_path(config: &postern_config::Config) -> PathBuf {
    config.run_dir().join(SOCKET_NAME)
}

/// Binds the kick socket (mode 0600), logging `listening on PATH`.
pub fn bind(config: &postern_config::Config) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = socket_path(config);
    let l = postern_daemon::bind_unix(&path, 0o600, None, None)?;
    info!("listening on {}", path.display());
    Ok((l, path))
}

/// Serves the kick socket until `shutdown`, then removes it.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(tokio::sync::Semaphore::new(8));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                warn!(error = %e, "kick socket: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue;
        };
        let registry = registry.clone();
        let sd = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sd.cancelled() => {}
                () = connection(stream, &registry) => {}
            }
            drop(permit);
        });
    }
    drop(std::fs::remove_file(&path));
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum Request {
    Kick { user: String },
}

async fn connection(stream: UnixStream, registry: &Registry) {
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    let (r, mut w) = stream.into_split();
    if cred.uid() != 0 && cred.uid() != me {
        let _ = w
            .write_all(b"{\"ok\":false,\"error\":\"only root and imapd's own user may kick\"}\n")
            .await;
        return;
    }
    let mut r = BufReader::new(r);
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(
            IDLE,
            (&mut r)
                .take(MAX_LINE as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await;
        match read {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return,
            Ok(Ok(_)) => {}
        }
        if line.last() != Some(&b'\n') {
            let _ = w
                .write_all(b"{\"ok\":false,\"error\":\"request line too long\"}\n")
                .await;
            return;
        }
        let reply = match serde_json::from_slice::<Request>(&line) {
            Ok(Request::Kick { user }) => {
                let count = registry.kick(&user, KICK_WAIT).await;
                info!(user = %user, count, "kicked the user's sessions");
                serde_json::json!({"ok": true, "count": count})
            }
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
        };
        let mut out = reply.to_string().into_bytes();
        out.push(b'\n');
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_kick_reaches_every_session_of_the_user_and_only_those() {
        let reg = Arc::new(Registry::default());
        let a1 = reg.register("Bob@Example.org");
        let a2 = reg.register("bob@example.org");
        let other = reg.register("alice@example.org");
        assert_eq!(reg.count("BOB@example.org"), 2);
        // The sessions close when told (as a session task would).
        let closer = tokio::spawn(async move {
            a1.kicked().await;
            drop(a1);
            a2.kicked().await;
            drop(a2);
        });
        assert_eq!(reg.kick("bob@EXAMPLE.org", Duration::from_secs(5)).await, 2);
        closer.await.unwrap();
        assert_eq!(reg.count("bob@example.org"), 0);
        assert!(!other.is_kicked());
        assert_eq!(
            reg.kick("nobody@example.org", Duration::from_secs(1)).await,
            0
        );
    }

    #[tokio::test]
    async fn a_kick_answers_after_the_wait_when_a_session_is_slow() {
        let reg = Arc::new(Registry::default());
        let slow = reg.register("bob@example.org");
        let t0 = tokio::time::Instant::now();
        assert_eq!(
            reg.kick("bob@example.org", Duration::from_millis(200))
                .await,
            1
        );
        assert!(t0.elapsed() >= Duration::from_millis(200));
        assert!(slow.is_kicked());
    }

    #[tokio::test]
    async fn the_socket_kicks_and_refuses_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imapd");
        let listener = postern_daemon::bind_unix(&path, 0o600, None, None).unwrap();
        let reg = Arc::new(Registry::default());
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, path.clone(), reg.clone(), stop.clone()));
        let session = reg.register("bob@example.org");
        let watcher = tokio::spawn(async move {
            session.kicked().await;
        });
        let s = UnixStream::connect(&path).await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"{\"op\":\"kick\",\"user\":\"BOB@example.org\"}\n")
            .await
            .unwrap();
        let mut line = String::new();
        r.read_line(&mut line).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["ok"].as_bool(), v["count"].as_u64()),
            (Some(true), Some(1)),
            "{line}"
        );
        watcher.await.unwrap();
        w.write_all(b"{\"op\":\"list\"}\n").await.unwrap();
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert!(line.contains("\"ok\":false"), "{line}");
        // A line over the limit ends the connection.
        w.write_all(&vec![b'x'; MAX_LINE + 10]).await.unwrap();
        line.clear();
        r.read_line(&mut line).await.unwrap();
        assert!(line.contains("too long"), "{line}");
        stop.cancel();
        server.await.unwrap();
        assert!(!path.exists());
    }
}
