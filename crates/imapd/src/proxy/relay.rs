//! The relay after a proxied login: bytes both ways, unchanged (IDLE, COMPRESS, literals
//! pass through), one bounded buffer per direction, a direction that cannot be written to
//! for `idle` ends the session, and so does `idle` without traffic either way.
//!
//! When the backend goes away, an IMAP client gets `* BYE [UNAVAILABLE]` before the close —
//! unless the backend said BYE itself (LOGOUT, its own shutdown), or the client started
//! COMPRESS (a line in clear text inside a DEFLATE stream would be garbage). A ManageSieve
//! client gets `BYE (TRYLATER)` (RFC 5804 §1.3) unless the backend said BYE or the client
//! said LOGOUT. A POP3 client just sees the close (POP3 has nothing unsolicited to say).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use postern_daemon::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Backend;

/// Bytes buffered per direction.
pub const BUF: usize = 8 * 1024;

/// How a relayed session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The client closed (or could not be written to).
    Client,
    /// The backend closed, failed, or could not be written to.
    Backend,
    /// Nothing either way for the idle timeout.
    Idle,
    /// The server is shutting down.
    Shutdown,
}

/// The protocol relayed: what the client is told when the relay ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// IMAP: `* BYE`.
    Imap,
    /// POP3: nothing.
    Pop3,
    /// ManageSieve: `BYE`.
    ManageSieve,
}

/// Finds a line starting with a word (any case): by default IMAP's `* BYE ` in the
/// backend's output.
#[derive(Debug)]
pub struct ByeScan {
    needle: &'static [u8],
    mid_line: bool,
    head: Vec<u8>,
}

impl Default for ByeScan {
    fn default() -> Self {
        Self::starting(b"* BYE ")
    }
}

impl ByeScan {
    /// Finds lines starting with `needle`.
    pub fn starting(needle: &'static [u8]) -> Self {
        Self {
            needle,
            mid_line: false,
            head: Vec::with_capacity(needle.len()),
        }
    }

    /// Looks at the next bytes; true once a line starting with the word was seen.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        let mut found = false;
        for &b in bytes {
            if b == b'\n' {
                self.mid_line = false;
                self.head.clear();
                continue;
            }
            if self.mid_line {
                continue;
            }
            self.head.push(b);
            if self.head.len() == self.needle.len() {
                found |= self.head.eq_ignore_ascii_case(self.needle);
                self.mid_line = true;
            }
        }
        found
    }
}

/// Finds `COMPRESS DEFLATE` (any case) in the client's output, across reads.
#[derive(Debug, Default)]
pub struct CompressScan {
    tail: Vec<u8>,
}

impl CompressScan {
    const NEEDLE: &'static [u8] = b"COMPRESS DEFLATE";

    /// Looks at the next bytes; true once the command was seen.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        self.tail.extend_from_slice(bytes);
        let found = self
            .tail
            .windows(Self::NEEDLE.len())
            .any(|w| w.eq_ignore_ascii_case(Self::NEEDLE));
        let keep = Self::NEEDLE.len() - 1;
        if self.tail.len() > keep {
            self.tail.drain(..self.tail.len() - keep);
        }
        found
    }
}

async fn write_within(w: &mut (impl AsyncWriteExt + Unpin), data: &[u8], limit: Duration) -> bool {
    let f = async {
        w.write_all(data).await?;
        w.flush().await
    };
    matches!(tokio::time::timeout(limit, f).await, Ok(Ok(())))
}

/// What the client sent that means it must not be told anything when the relay ends:
/// IMAP's COMPRESS (anywhere), ManageSieve's LOGOUT (at a line start).
enum QuietScan {
    Compress(CompressScan),
    Logout(ByeScan),
}

impl QuietScan {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        match self {
            Self::Compress(s) => s.feed(bytes),
            Self::Logout(s) => s.feed(bytes),
        }
    }
}

/// Relays between `client` and the logged-in `backend` until one side ends; `from_client`
/// is what the client sent after its login command (pipelined), forwarded first. `imap`:
/// IMAP, else POP3 (see [`run_proto`]).
pub async fn run(
    client: Stream,
    backend: Backend,
    from_client: Vec<u8>,
    imap: bool,
    idle: Duration,
    shutdown: &CancellationToken,
) -> End {
    let proto = if imap { Proto::Imap } else { Proto::Pop3 };
    run_proto(client, backend, from_client, proto, idle, shutdown).await
}

/// [`run`] for `proto`.
pub async fn run_proto(
    client: Stream,
    backend: Backend,
    from_client: Vec<u8>,
    proto: Proto,
    idle: Duration,
    shutdown: &CancellationToken,
) -> End {
    let Backend {
        io,
        pending,
        mut reply,
    } = backend;
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut br, mut bw) = tokio::io::split(io);
    let bye = AtomicBool::new(false);
    let compress = AtomicBool::new(false);
    // POP3 says nothing at the end: nothing to look for.
    let farewell = proto != Proto::Pop3;
    let (mut bye_scan, mut compress_scan) = match proto {
        Proto::ManageSieve => (
            ByeScan::starting(b"BYE "),
            QuietScan::Logout(ByeScan::starting(b"LOGOUT")),
        ),
        Proto::Imap | Proto::Pop3 => (
            ByeScan::default(),
            QuietScan::Compress(CompressScan::default()),
        ),
    };
    reply.extend_from_slice(&pending);
    if farewell {
        bye.store(bye_scan.feed(&reply), Ordering::Relaxed);
        compress.store(compress_scan.feed(&from_client), Ordering::Relaxed);
    }
    if !write_within(&mut cw, &reply, idle).await {
        return End::Client;
    }
    drop(reply);
    if !from_client.is_empty() && !write_within(&mut bw, &from_client, idle).await {
        return End::Backend;
    }
    drop(from_client);
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let touch = || {
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        last.store(ms, Ordering::Relaxed);
    };
    let up = async {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => return End::Client,
                Ok(n) => n,
            };
            touch();
            if farewell && !compress.load(Ordering::Relaxed) && compress_scan.feed(&buf[..n]) {
                compress.store(true, Ordering::Relaxed);
            }
            if !write_within(&mut bw, &buf[..n], idle).await {
                return End::Backend;
            }
        }
    };
    let down = async {
        let mut buf = vec![0u8; BUF];
        loop {
            let n = match br.read(&mut buf).await {
                Ok(0) | Err(_) => return End::Backend,
                Ok(n) => n,
            };
            touch();
            if farewell
                && !compress.load(Ordering::Relaxed)
                && !bye.load(Ordering::Relaxed)
                && bye_scan.feed(&buf[..n])
            {
                bye.store(true, Ordering::Relaxed);
            }
            if !write_within(&mut cw, &buf[..n], idle).await {
                return End::Client;
            }
        }
    };
    let quiet = async {
        loop {
            let due = start + Duration::from_millis(last.load(Ordering::Relaxed)) + idle;
            if due <= Instant::now() {
                return End::Idle;
            }
            tokio::time::sleep_until(due).await;
        }
    };
    let end = tokio::select! {
        e = up => e,
        e = down => e,
        e = quiet => e,
        () = shutdown.cancelled() => End::Shutdown,
    };
    if farewell && !bye.load(Ordering::Relaxed) && !compress.load(Ordering::Relaxed) {
        let bye: &[u8] = match (proto, end) {
            (_, End::Client) | (Proto::Pop3, _) => b"",
            (Proto::Imap, End::Backend) => b"* BYE [UNAVAILABLE] Backend server went away\r\n",
            (Proto::Imap, End::Idle) => b"* BYE Autologout; idle for too long\r\n",
            (Proto::Imap, End::Shutdown) => b"* BYE Server shutting down\r\n",
            (Proto::ManageSieve, End::Backend) => {
                b"BYE (TRYLATER) \"Backend server went away.\"\r\n"
            }
            (Proto::ManageSieve, End::Idle) => b"BYE \"Disconnected for inactivity.\"\r\n",
            (Proto::ManageSieve, End::Shutdown) => b"BYE (TRYLATER) \"Server shutting down.\"\r\n",
        };
        if !bye.is_empty() {
            write_within(&mut cw, bye, Duration::from_secs(5)).await;
        }
    }
    let grace = Duration::from_secs(5);
    let _ = tokio::time::timeout(grace, bw.shutdown()).await;
    let _ = tokio::time::timeout(grace, cw.shutdown()).await;
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bye_at_line_starts_only() {
        let mut s = ByeScan::default();
        assert!(!s.feed(b"* OK [CAPABILITY X] hi\r\n* 3 EXISTS\r\n"));
        assert!(!s.feed(b"a1 OK text * BYE inside\r\n"));
        assert!(!s.feed(b"* B"));
        assert!(
            s.feed(b"ye Logging out\r\n"),
            "split across reads, any case"
        );
        let mut s = ByeScan::default();
        assert!(s.feed(b"x\r\n* BYE [UNAVAILABLE] bye\r\n"));
    }

    #[test]
    fn compress_across_reads() {
        let mut s = CompressScan::default();
        assert!(!s.feed(b"a1 NOOP\r\na2 COMPR"));
        assert!(s.feed(b"ess deflate\r\n"));
        let mut s = CompressScan::default();
        for chunk in [&b"a COMPRESS"[..], b" ", b"DEFLATE"] {
            if s.feed(chunk) {
                return;
            }
        }
        panic!("not found across three reads");
    }

    /// The relay copies both ways, forwards pipelined bytes first, and tells the client
    /// BYE [UNAVAILABLE] when the backend goes away.
    #[tokio::test]
    async fn relays_and_says_bye_when_the_backend_goes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut user = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (front_side, _) = l.accept().await.unwrap();
        let (mut backend, hop) = tokio::io::duplex(1024);
        let b = Backend {
            io: Box::new(hop),
            pending: b"* 1 EXISTS\r\n".to_vec(),
            reply: b"a OK [CAPABILITY IMAP4rev1] Logged in\r\n".to_vec(),
        };
        let sd = CancellationToken::new();
        let relay = tokio::spawn(async move {
            run(
                Stream::Plain(front_side),
                b,
                b"b NOOP\r\n".to_vec(),
                true,
                Duration::from_secs(30),
                &sd,
            )
            .await
        });
        let mut got = vec![0u8; 256];
        let mut seen = Vec::new();
        while !seen.ends_with(b"* 1 EXISTS\r\n") {
            let n = user.read(&mut got).await.unwrap();
            seen.extend_from_slice(&got[..n]);
        }
        assert_eq!(
            seen,
            b"a OK [CAPABILITY IMAP4rev1] Logged in\r\n* 1 EXISTS\r\n"
        );
        let n = backend.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"b NOOP\r\n");
        user.write_all(b"c IDLE\r\n").await.unwrap();
        let n = backend.read(&mut got).await.unwrap();
        assert_eq!(&got[..n], b"c IDLE\r\n");
        backend.write_all(b"+ idling\r\n").await.unwrap();
        drop(backend);
        let mut rest = Vec::new();
        user.read_to_end(&mut rest).await.unwrap();
        assert_eq!(
            rest,
            b"+ idling\r\n* BYE [UNAVAILABLE] Backend server went away\r\n"
        );
        assert_eq!(relay.await.unwrap(), End::Backend);
    }

    /// ManageSieve: a backend that goes away means `BYE (TRYLATER)`; not after the client's
    /// LOGOUT, nor after the backend's own BYE.
    #[tokio::test]
    async fn managesieve_says_bye_unless_the_client_logged_out() {
        for (client_says, backend_says, expect) in [
            (
                &b"LISTSCRIPTS\r\n"[..],
                &b"OK\r\n"[..],
                &b"OK \"Logged in.\"\r\nOK\r\nBYE (TRYLATER) \"Backend server went away.\"\r\n"[..],
            ),
            (
                b"logout\r\n",
                b"OK \"Logout completed.\"\r\n",
                b"OK \"Logged in.\"\r\nOK \"Logout completed.\"\r\n",
            ),
            (
                b"NOOP\r\n",
                b"BYE \"Disconnected for inactivity.\"\r\n",
                b"OK \"Logged in.\"\r\nBYE \"Disconnected for inactivity.\"\r\n",
            ),
        ] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut user = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let (front_side, _) = l.accept().await.unwrap();
            let (mut backend, hop) = tokio::io::duplex(1024);
            let b = Backend {
                io: Box::new(hop),
                pending: Vec::new(),
                reply: b"OK \"Logged in.\"\r\n".to_vec(),
            };
            let sd = CancellationToken::new();
            let relay = tokio::spawn(async move {
                let idle = Duration::from_secs(30);
                run_proto(
                    Stream::Plain(front_side),
                    b,
                    Vec::new(),
                    Proto::ManageSieve,
                    idle,
                    &sd,
                )
                .await
            });
            user.write_all(client_says).await.unwrap();
            let mut got = vec![0u8; 64];
            let n = backend.read(&mut got).await.unwrap();
            assert_eq!(&got[..n], client_says);
            backend.write_all(backend_says).await.unwrap();
            drop(backend);
            let mut rest = Vec::new();
            user.read_to_end(&mut rest).await.unwrap();
            assert_eq!(
                String::from_utf8_lossy(&rest),
                String::from_utf8_lossy(expect)
            );
            assert_eq!(relay.await.unwrap(), End::Backend);
        }
    }

    /// Quiet both ways for the idle time: an IMAP client gets BYE, a POP3 client just the
    /// close; traffic either way restarts the clock.
    #[tokio::test]
    async fn idle_sessions_end() {
        for imap in [true, false] {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let mut user = tokio::net::TcpStream::connect(l.local_addr().unwrap())
                .await
                .unwrap();
            let (front_side, _) = l.accept().await.unwrap();
            let (mut backend, hop) = tokio::io::duplex(1024);
            let b = Backend {
                io: Box::new(hop),
                pending: Vec::new(),
                reply: b"+OK\r\n".to_vec(),
            };
            let idle = Duration::from_millis(300);
            let sd = CancellationToken::new();
            let started = Instant::now();
            let relay = tokio::spawn(async move {
                run(Stream::Plain(front_side), b, Vec::new(), imap, idle, &sd).await
            });
            let mut got = [0u8; 64];
            let n = user.read(&mut got).await.unwrap();
            assert_eq!(&got[..n], b"+OK\r\n");
            tokio::time::sleep(Duration::from_millis(200)).await;
            backend.write_all(b"* OK still here\r\n").await.unwrap();
            let mut rest = Vec::new();
            user.read_to_end(&mut rest).await.unwrap();
            assert_eq!(relay.await.unwrap(), End::Idle);
            assert!(
                started.elapsed() >= Duration::from_millis(500),
                "the clock restarted"
            );
            let expect: &[u8] = if imap {
                b"* OK still here\r\n* BYE Autologout; idle for too long\r\n"
            } else {
                b"* OK still here\r\n"
            };
            assert_eq!(rest, expect);
        }
    }
}
