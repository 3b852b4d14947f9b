//! Notices a replacement of the directory's change stamp without a stat per lookup.
//!
//! An inotify watch on the stamp's directory. Two ways of asking it, both "at once" by
//! causality: `mailctl` renames the stamp before it exits, and the kernel queues the inotify
//! event inside that rename, before anything `mailctl`'s caller sends next.
//!
//! - [`StampWatch::new`] (authd) registers the descriptor with tokio. The kernel puts the
//!   event on the epoll ready list inside the rename, so it is there before a request sent
//!   after the change reaches authd's socket. The ready list is first in, first out, so the
//!   event loop turn that hands the request to a session has already marked the watch
//!   readable; a lookup only looks at that mark (no system call) and, when it is set, reads
//!   the events and stats the stamp. The one gap: a request that a session reads without an
//!   event loop turn (pipelined behind an earlier one whose read filled the whole buffer) can
//!   still be answered from before the change; it is answered fresh from the next turn on.
//! - [`StampWatch::direct`] (smtpd, lmtp-deliver) reads the descriptor, non-blocking, on
//!   every lookup: one system call that never sleeps (no context switch), and no gap: the
//!   event is readable from the rename on, whatever the event loop did.
//!
//! When inotify cannot be trusted any more (the queue overflowed, the directory went away,
//! a read failed), [`StampWatch::generation`] answers `None` and the caller stats every
//! time.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};
use tokio::io::unix::AsyncFd;

struct Fd(Inotify);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Registers the inotify descriptor for readability. tokio 1.54 deprecated the safe
/// constructor for an `unsafe` one (our crates forbid `unsafe`, as in auth-proto's
/// `QuietUnixStream`) whose contract is that the descriptor stays open and the same while
/// registered: `Inotify` owns its descriptor and always returns that one, so it holds.
#[allow(deprecated)]
fn register(ino: Inotify) -> std::io::Result<AsyncFd<Fd>> {
    AsyncFd::with_interest(Fd(ino), tokio::io::Interest::READABLE)
}

/// How the events are read.
enum Source {
    /// Through tokio's readiness mark.
    Reactor(AsyncFd<Fd>),
    /// Straight from the (non-blocking) descriptor.
    Direct(Inotify),
}

/// Counts the changes of one stamp file seen through inotify.
pub struct StampWatch {
    fd: Source,
    name: OsString,
    /// Bumped on each event naming the stamp.
    generation: AtomicU64,
    /// Set when events may have been lost: from then on every lookup stats.
    broken: AtomicBool,
    /// Held while the events are read, so no lookup sees the mark cleared before the
    /// generation it stood for is counted.
    draining: Mutex<()>,
}

impl std::fmt::Debug for StampWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampWatch")
            .field("name", &self.name)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl StampWatch {
    /// A watch on `stamp` (its directory must exist) read through tokio's readiness;
    /// `None` without a tokio runtime or when inotify refuses.
    pub fn new(stamp: &Path) -> Option<Self> {
        tokio::runtime::Handle::try_current().ok()?;
        let (ino, name) = watch(stamp).ok()?;
        let fd = register(ino).ok()?;
        Some(Self::from_source(Source::Reactor(fd), name))
    }

    /// A watch on `stamp` (its directory must exist) read with a non-blocking system call
    /// on each [`StampWatch::generation`]; needs no runtime. An error when inotify refuses
    /// (the directory unreadable by this user, no such directory, the limit of watches).
    pub fn direct(stamp: &Path) -> std::io::Result<Self> {
        let (ino, name) = watch(stamp)?;
        Ok(Self::from_source(Source::Direct(ino), name))
    }

    fn from_source(fd: Source, name: OsString) -> Self {
        Self {
            fd,
            name,
            generation: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            draining: Mutex::new(()),
        }
    }

    /// How many changes were seen so far; `None`: the watch cannot be trusted, stat.
    pub fn generation(&self) -> Option<u64> {
        if self.broken.load(Ordering::Acquire) {
            return None;
        }
        let Ok(_held) = self.draining.lock() else {
            return None;
        };
        let trusted = match &self.fd {
            Source::Reactor(fd) => self.drain_reactor(fd),
            Source::Direct(ino) => self.drain_direct(ino),
        };
        if !trusted {
            self.broken.store(true, Ordering::Release);
            return None;
        }
        Some(self.generation.load(Ordering::Acquire))
    }

    /// Reads the events tokio marked readable; false when the watch cannot be trusted.
    fn drain_reactor(&self, fd: &AsyncFd<Fd>) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(r) = fd.poll_read_ready(&mut cx) {
            let Ok(mut guard) = r else {
                return false;
            };
            match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from)) {
                // Read dry: the mark is cleared; what was read is counted.
                Err(_would_block) => break,
                Ok(Ok(events)) => {
                    if !self.count(&events) {
                        return false;
                    }
                }
                Ok(Err(_)) => return false,
            }
        }
        true
    }

    /// Reads the descriptor dry; false when the watch cannot be trusted.
    fn drain_direct(&self, ino: &Inotify) -> bool {
        loop {
            match ino.read_events() {
                Ok(events) => {
                    if !self.count(&events) {
                        return false;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    /// Counts the events naming the stamp; false when events were lost or the directory
    /// went away.
    fn count(&self, events: &[InotifyEvent]) -> bool {
        for e in events {
            if e.mask.intersects(
                AddWatchFlags::IN_Q_OVERFLOW
                    | AddWatchFlags::IN_IGNORED
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            ) {
                return false;
            }
            if e.name.as_deref() == Some(self.name.as_os_str()) {
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
        true
    }
}

/// An inotify instance (non-blocking) watching the directory of `stamp`, and the stamp's
/// file name.
fn watch(stamp: &Path) -> std::io::Result<(Inotify, OsString)> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path");
    let dir = stamp.parent().ok_or_else(bad)?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = stamp.file_name().ok_or_else(bad)?.to_owned();
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    // Not IN_MODIFY: a database beside the stamp would make the watch readable on
    // every write. The stamp is replaced by rename; a `touch` shows as IN_ATTRIB.
    ino.add_watch(
        dir,
        AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF
            | AddWatchFlags::IN_ONLYDIR,
    )?;
    Ok((ino, name))
}
