//! Finished messages leave the spool in batches: one trip to the blocking pool removes every
//! message that finished since the last one, instead of one trip per message that the
//! delivery's task waited for.
//!
//! Durability is that of [`Spool::remove_all`]: a removal is not fsynced, so a crash that
//! loses it (here also: one still waiting in this queue) delivers the message again after
//! restart, a duplicate and never a loss. The manager has already forgotten a message handed
//! over here, so nothing reads or changes its files meanwhile; at shutdown it waits for
//! the removals handed over ([`Removals::flush`]).

use std::sync::Arc;

use postern_queue::{QueueId, Spool};
use tokio::sync::{mpsc, oneshot};
use tracing::warn;

/// Most removals done in one trip.
const MAX_BATCH: usize = 512;

enum Item {
    Remove(QueueId),
    Flush(oneshot::Sender<()>),
}

/// The handle to the removing task.
pub(crate) struct Removals {
    tx: mpsc::UnboundedSender<Item>,
}

impl Removals {
    /// Starts the removing task on the current runtime.
    pub(crate) fn start(spool: Arc<Spool>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(spool, rx));
        Self { tx }
    }

    /// Removes a finished message, soon.
    pub(crate) fn remove(&self, id: QueueId) {
        if self.tx.send(Item::Remove(id)).is_err() {
            warn!(%id, "removal task gone; the message will be delivered again after restart");
        }
    }

    /// Waits until every removal handed over before this call is done.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

async fn run(spool: Arc<Spool>, mut rx: mpsc::UnboundedReceiver<Item>) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut items, MAX_BATCH).await > 0 {
        let mut ids = Vec::with_capacity(items.len());
        let mut flushes = Vec::new();
        for item in items.drain(..) {
            match item {
                Item::Remove(id) => ids.push(id),
                Item::Flush(done) => flushes.push(done),
            }
        }
        if !ids.is_empty() {
            let spool = spool.clone();
            let removed = tokio::task::spawn_blocking(move || {
                // One at a time, so that one failure does not keep the others.
                for id in ids {
                    if let Err(e) = spool.remove(id) {
                        warn!(%id, error = %e, "removing a finished message failed");
                    }
                }
            })
            .await;
            if let Err(e) = removed {
                warn!(error = %e, "removing finished messages failed");
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}
