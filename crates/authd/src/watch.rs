//! Notices a replacement of the directory's change stamp without a system call per lookup.
//!
//! An inotify watch on the stamp's directory is registered with tokio. Causality makes this
//! "at once": `mailctl` renames the stamp before it exits, and the kernel queues the inotify
//! event (and puts it on the epoll ready list) inside that rename, so it is on the ready list
//! before a request sent after the change reaches authd's socket. The ready list is first in,
//! first out, so the event loop turn that hands the request to a session has already marked
//! the watch readable; a lookup only looks at that mark (no system call) and, when it is set,
//! reads the events and stats the stamp. The one gap: a request that a session reads without
//! an event loop turn (pipelined behind an earlier one whose read filled the whole buffer) can
//! still be answered from before the change; it is answered fresh from the next turn on.
//!
//! When inotify cannot be used (no runtime, no watch, the queue overflowed, the directory
//! went away), [`StampWatch::generation`] answers `None` and the caller stats every time,
//! as before.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
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

/// Counts the changes of one stamp file seen through inotify.
pub(crate) struct StampWatch {
    fd: AsyncFd<Fd>,
    name: OsString,
    /// Bumped on each event naming the stamp.
    generation: AtomicU64,
    /// Set when events may have been lost: from then on every lookup stats.
    broken: AtomicBool,
    /// Held while the events are read, so no lookup sees the mark cleared before the
    /// generation it stood for is counted.
    draining: Mutex<()>,
}

impl StampWatch {
    /// A watch on `stamp` (its directory must exist); `None` without a tokio runtime or
    /// when inotify refuses.
    pub(crate) fn new(stamp: &Path) -> Option<Self> {
        tokio::runtime::Handle::try_current().ok()?;
        let dir = stamp.parent()?;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let name = stamp.file_name()?.to_owned();
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok()?;
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
        )
        .ok()?;
        let fd = register(ino).ok()?;
        Some(Self {
            fd,
            name,
            generation: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            draining: Mutex::new(()),
        })
    }

    /// How many changes were seen so far; `None`: the watch cannot be trusted, stat.
    pub(crate) fn generation(&self) -> Option<u64> {
        if self.broken.load(Ordering::Acquire) {
            return None;
        }
        let Ok(_held) = self.draining.lock() else {
            return None;
        };
        let mut cx = Context::from_waker(Waker::noop());
        while let Poll::Ready(r) = self.fd.poll_read_ready(&mut cx) {
            let Ok(mut guard) = r else {
                self.broken.store(true, Ordering::Release);
                return None;
            };
            match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from)) {
                // Read dry: the mark is cleared; what was read is counted.
                Err(_would_block) => break,
                Ok(Ok(events)) => {
                    for e in events {
                        if e.mask.intersects(
                            AddWatchFlags::IN_Q_OVERFLOW
                                | AddWatchFlags::IN_IGNORED
                                | AddWatchFlags::IN_DELETE_SELF
                                | AddWatchFlags::IN_MOVE_SELF,
                        ) {
                            self.broken.store(true, Ordering::Release);
                            return None;
                        }
                        if e.name.as_deref() == Some(self.name.as_os_str()) {
                            self.generation.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                }
                Ok(Err(_)) => {
                    self.broken.store(true, Ordering::Release);
                    return None;
                }
            }
        }
        Some(self.generation.load(Ordering::Acquire))
    }
}
