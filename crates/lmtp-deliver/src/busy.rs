//! Which LMTP connections are at work right now, so that a delivery that is alone can run on
//! the runtime's own thread instead of going to the blocking pool and back (issue 17: that
//! trip costs two context switches and a few system calls per message).
//!
//! A connection counts as busy from the moment a read brings it input until it waits for
//! input again (it may be waiting for authd or a delivery meanwhile). [`alone`] first yields:
//! on the current-thread runtime lmtp-deliver runs on, a yielded task runs again only after
//! the runtime has polled the I/O driver and run every task that woke, so every connection
//! with input waiting has read it and counts by then. Without that yield, deliveries run
//! inline one after the other could keep the other connections from ever being counted, and
//! parallel deliveries would degrade into serial ones.

use std::cell::Cell;

thread_local! {
    /// Per thread: lmtp-deliver runs every connection on one current-thread runtime, so
    /// this is the process's count (and tests running side by side do not share it).
    static BUSY: Cell<usize> = const { Cell::new(0) };
}

/// Held by a connection while it handles input (see the module text).
pub(crate) struct Busy(());

impl Busy {
    pub(crate) fn enter() -> Self {
        BUSY.with(|b| b.set(b.get() + 1));
        Self(())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        BUSY.with(|b| b.set(b.get().saturating_sub(1)));
    }
}

/// Whether the calling connection (which holds a [`Busy`]) is the only one at work, once
/// every connection with input waiting has been let run.
pub(crate) async fn alone() -> bool {
    tokio::task::yield_now().await;
    BUSY.with(Cell::get) <= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection whose input arrives while another one is about to deliver is counted
    /// before the deliverer decides: the deliverer is not alone. Seen failing (true) with
    /// the yield in `alone` taken out.
    #[test]
    fn a_connection_with_input_waiting_is_counted_before_the_decision() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (mut a, b) = tokio::net::UnixStream::pair().unwrap();
            // The other connection: counts itself busy once it reads input, then waits
            // (as for authd) without giving the count back.
            let other = tokio::spawn(async move {
                use tokio::io::AsyncReadExt;
                let mut b = b;
                let mut buf = [0u8; 16];
                let n = b.read(&mut buf).await.unwrap();
                let busy = Busy::enter();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                drop(busy);
                n
            });
            // The deliverer is a spawned task too, as every connection is in the daemon
            // (block_on's own future is polled before the tasks woken with it).
            let deliverer = tokio::spawn(async move {
                // Let the other one reach its read.
                tokio::task::yield_now().await;
                let me = Busy::enter();
                {
                    use tokio::io::AsyncWriteExt;
                    a.write_all(b"MAIL FROM:<>\r\n").await.unwrap();
                }
                let first = alone().await;
                let n = other.await.unwrap();
                let then = alone().await;
                drop(me);
                (first, n, then)
            });
            let (first, n, then) = deliverer.await.unwrap();
            assert!(!first, "the other connection had input waiting");
            assert_eq!(n, 14);
            assert!(then, "alone once the other one is done");
        });
    }
}
