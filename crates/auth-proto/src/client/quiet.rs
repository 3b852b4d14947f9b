//! A Unix stream socket that does not wake its runtime when its peer reads.
//!
//! tokio registers every socket for readable *and* writable readiness, edge-triggered. On
//! a Unix stream socket the kernel signals "writable" each time the peer reads what was
//! sent (`unix_write_space`), so in a request/reply exchange each reply read by the peer
//! wakes the sender's runtime once for nothing: an `epoll_wait` that returns only
//! `EPOLLOUT`, and a context switch when the process was idle. Measured in issue 17: two
//! such wakeups per message in authd (one per lookup answered), two in lmtp-deliver.
//!
//! [`QuietUnixStream`] is registered for readability only. A write goes straight to the
//! socket; only when the socket buffer is full (a large message to a slow reader) is a
//! duplicate descriptor registered for writability, until the next successful read.
//!
//! The clients of this module use it, and so do the servers at the other end (authd's
//! `socketmap` and `auth-userdb`, lmtp-deliver's `lmtp`): this crate is the lowest one
//! that all of them import.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A Unix stream socket registered for readability only (see the module docs).
#[derive(Debug)]
pub struct QuietUnixStream {
    read: AsyncFd<UnixStream>,
    /// A duplicate registered for writability while a write would block.
    write: Option<AsyncFd<UnixStream>>,
}

impl QuietUnixStream {
    /// Takes over a tokio socket (it is deregistered and registered again, readable only).
    pub fn from_tokio(stream: tokio::net::UnixStream) -> io::Result<Self> {
        Self::new(stream.into_std()?)
    }

    /// Wraps a socket (made non-blocking here). Must be called within a tokio runtime.
    pub fn new(stream: UnixStream) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            read: register(stream, Interest::READABLE)?,
            write: None,
        })
    }

    /// The socket.
    pub fn get_ref(&self) -> &UnixStream {
        self.read.get_ref()
    }
}

/// Registers `stream` with the runtime for `interest` only. tokio 1.54 deprecated the safe
/// constructor in favour of an `unsafe` one (our crates forbid `unsafe`) whose contract is
/// that the descriptor stays open and the same while registered: a `UnixStream` owns its
/// descriptor and always returns that one, so the contract holds.
#[allow(deprecated)]
fn register(stream: UnixStream, interest: Interest) -> io::Result<AsyncFd<UnixStream>> {
    AsyncFd::with_interest(stream, interest)
}

impl AsyncRead for QuietUnixStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            let mut guard = ready!(this.read.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let room = unfilled.len();
            match guard.try_io(|s| s.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    // Less than asked for: the socket is drained now, so the next read waits
                    // for the next edge rather than trying once more for EAGAIN (as tokio's
                    // own sockets do).
                    if n > 0 && n < room {
                        guard.clear_ready();
                    }
                    buf.advance(n);
                    // The exchange turned around: writable readiness is not wanted now.
                    this.write = None;
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => {}
            }
        }
    }
}

impl AsyncWrite for QuietUnixStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if let Some(w) = &this.write {
                let mut guard = ready!(w.poll_write_ready(cx))?;
                match guard.try_io(|s| s.get_ref().write(data)) {
                    Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                    Ok(r) => return Poll::Ready(r),
                    Err(_would_block) => {}
                }
                continue;
            }
            match this.read.get_ref().write(data) {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let dup = this.read.get_ref().try_clone()?;
                    this.write = Some(register(dup, Interest::WRITABLE)?);
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(match self.read.get_ref().shutdown(Shutdown::Write) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            r => r,
        })
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Requests and replies both ways, a write far larger than the socket buffer (it
    /// blocks until the peer reads, then finishes), end of stream after shutdown.
    #[tokio::test]
    async fn reads_writes_and_large_writes_that_block() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut a = QuietUnixStream::new(a).unwrap();
        let mut b = QuietUnixStream::new(b).unwrap();
        for i in 0..3u8 {
            a.write_all(&[b'q', i]).await.unwrap();
            let mut q = [0; 2];
            b.read_exact(&mut q).await.unwrap();
            assert_eq!(q, [b'q', i]);
            b.write_all(b"reply").await.unwrap();
            let mut r = [0; 5];
            a.read_exact(&mut r).await.unwrap();
            assert_eq!(&r, b"reply");
        }
        let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        let want = big.clone();
        let writer = tokio::spawn(async move {
            a.write_all(&big).await.unwrap();
            a.shutdown().await.unwrap();
            a
        });
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert!(got == want, "8 MiB arrive whole and in order");
        let a = writer.await.unwrap();
        drop(a);
        assert_eq!(b.read(&mut [0; 1]).await.unwrap(), 0);
    }

    /// The point of it: the socket is registered with the runtime for readability only
    /// (the kernel's epoll list, `/proc/self/fdinfo`, shows no `EPOLLOUT` for it), where a
    /// plain tokio socket is registered for `EPOLLOUT` too (and so woken each time its peer
    /// reads). After a write that blocked, writability is watched on a duplicate, until
    /// the next read.
    #[tokio::test]
    async fn registered_for_reading_only() {
        use std::os::fd::AsRawFd;
        // The epoll event masks registered for descriptor `fd`, from every epoll instance.
        fn masks(fd: i32) -> Vec<u32> {
            let mut out = Vec::new();
            for e in std::fs::read_dir("/proc/self/fdinfo").unwrap().flatten() {
                let Ok(info) = std::fs::read_to_string(e.path()) else {
                    continue;
                };
                for line in info.lines() {
                    let mut w = line.split_whitespace();
                    if w.next() == Some("tfd:")
                        && w.next() == Some(&fd.to_string())
                        && w.next() == Some("events:")
                    {
                        out.push(u32::from_str_radix(w.next().unwrap(), 16).unwrap());
                    }
                }
            }
            out
        }
        const EPOLLIN: u32 = 0x1;
        const EPOLLOUT: u32 = 0x4;
        let (a, b) = UnixStream::pair().unwrap();
        let plain = tokio::net::UnixStream::from_std({
            a.set_nonblocking(true).unwrap();
            a
        })
        .unwrap();
        let fd = plain.as_raw_fd();
        assert!(
            masks(fd).iter().any(|m| m & EPOLLOUT != 0),
            "tokio's own: {:?}",
            masks(fd)
        );
        let mut quiet = QuietUnixStream::from_tokio(plain).unwrap();
        let m = masks(fd);
        assert!(
            !m.is_empty() && m.iter().all(|m| m & EPOLLIN != 0 && m & EPOLLOUT == 0),
            "{m:?}"
        );
        // Fill the socket buffer: the write blocks, and a duplicate watches writability.
        let mut b = QuietUnixStream::new(b).unwrap();
        let big = vec![7u8; 4 << 20];
        let writer = tokio::spawn(async move {
            quiet.write_all(&big).await.unwrap();
            quiet
        });
        let mut got = vec![0; 4 << 20];
        b.read_exact(&mut got).await.unwrap();
        let mut quiet = writer.await.unwrap();
        let dup = quiet
            .write
            .as_ref()
            .expect("a write blocked")
            .get_ref()
            .as_raw_fd();
        assert!(masks(dup).iter().all(|m| m & EPOLLOUT != 0));
        b.write_all(b"x").await.unwrap();
        quiet.read_exact(&mut [0; 1]).await.unwrap();
        assert!(quiet.write.is_none(), "dropped at the next read");
        assert!(masks(dup).is_empty(), "deregistered");
        assert!(masks(fd).iter().all(|m| m & EPOLLOUT == 0));
    }
}
