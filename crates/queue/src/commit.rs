//! The receive side: durable commits with group commit.
//!
//! Slot layout: each message is written into a slot and `fdatasync`ed (several in parallel
//! tasks); only a batch that created slots fsyncs `slots/`, once. File layout: each message is
//! written to `incoming/<id>` and fsynced, hard-linked to `active/<id>`, and then a single
//! fsync of `active/` makes the whole batch durable. A commit is answered only after that fsync, so each message is exactly as durable
//! as if committed alone; only the directory fsync is shared. Requests that arrive while a
//! batch is being written form the next batch, so under load batches grow by themselves.
//!
//! If the caller stops waiting (its `commit` future is dropped), the message may still be
//! committed and delivered: the client saw no `250` and will likely send it again, a duplicate
//! that SMTP allows.

use std::fmt;
use std::fs;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{mpsc, oneshot};
use tracing::{error, warn};

use crate::envelope::Envelope;
use crate::error::{IoContext, QueueError, Result};
use crate::format::encode_prefix;
use crate::id::QueueId;
use crate::slots::Taken;
use crate::spool::{BodyFile, Layout, Spool, rewrite_durable, write_durable_with};

/// Handle for committing messages; cheap to clone, one per session is fine.
#[derive(Clone)]
pub struct Committer {
    spool: Arc<Spool>,
    tx: mpsc::Sender<Request>,
    inline_when: Option<InlineWhen>,
}

impl fmt::Debug for Committer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Committer")
            .field("spool", &self.spool)
            .field("inline_when", &self.inline_when.is_some())
            .finish()
    }
}

/// Asked at each commit ([`Committer::inline_when`]): may a commit that is alone in its batch
/// be written and fsynced on the committer task's own thread, instead of on the blocking
/// pool? The answer should be yes only when nothing else needs that thread meanwhile (smtpd:
/// at most one SMTP session open). It saves the hand-over to a pool thread and the wake-up
/// back: two context switches and a few system calls per message.
pub type InlineWhen = Arc<dyn Fn() -> bool + Send + Sync>;

/// The committer's background task: spawn it (`tokio::spawn(task)`). It ends when every
/// [`Committer`] handle is dropped, after answering what was already sent to it.
pub struct CommitTask(Pin<Box<dyn Future<Output = ()> + Send>>);

/// One message waiting to be committed.
struct Request {
    id: QueueId,
    prefix: Vec<u8>,
    message: Vec<u8>,
    body: Option<(BodyFile, u64)>,
    reply: oneshot::Sender<Result<()>>,
    /// The [`InlineWhen`] hint's answer when the request was made.
    inline: bool,
}

/// What a write thread needs of a [`Request`] (the reply stays on the async side).
struct Job {
    id: QueueId,
    prefix: Vec<u8>,
    /// The message, or its start when `body` holds the rest.
    message: Vec<u8>,
    /// The rest of the message, spooled, and its length; removed when the job is dropped.
    body: Option<(BodyFile, u64)>,
}

impl Committer {
    /// A handle and its background task, which the caller spawns on a tokio runtime.
    pub fn new(spool: Arc<Spool>) -> (Self, CommitTask) {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = CommitTask(Box::pin(run(Arc::clone(&spool), rx)));
        let inline_when = None;
        (
            Self {
                spool,
                tx,
                inline_when,
            },
            task,
        )
    }

    /// This handle, with a hint saying when a lone commit may run without the blocking pool
    /// (see [`InlineWhen`]); only small messages (slot-sized, in memory) ever do.
    #[must_use]
    pub fn inline_when(mut self, hint: InlineWhen) -> Self {
        self.inline_when = Some(hint);
        self
    }

    /// The spool this commits into.
    pub fn spool(&self) -> &Arc<Spool> {
        &self.spool
    }

    /// A fresh queue id, for a caller that names the message before committing it (smtpd
    /// writes it into its `Received:` field). Pass it in `envelope.id` to [`Committer::commit`].
    pub fn reserve_id(&self) -> QueueId {
        self.spool.next_id()
    }

    /// Commits a message and its envelope; resolves only once both are durable on disk.
    ///
    /// Assigns `envelope.id` (unless it holds an id from [`Committer::reserve_id`]) and sets `envelope.size` to the message's length; the other
    /// fields are stored as given. Returns the stored envelope. On error nothing is queued
    /// (the caller replies `451`, or `552` for [`QueueError::TooLarge`]).
    pub async fn commit(&self, envelope: Envelope, message: Vec<u8>) -> Result<Envelope> {
        self.commit_spooled(envelope, message, None).await
    }

    /// [`Committer::commit`] for a message whose start is `head` (in memory) and whose rest
    /// was spooled into `body` (see [`Spool::body_file`]): the message file is written from
    /// both, then `body` is removed. Only `head` is held in memory.
    pub async fn commit_spooled(
        &self,
        mut envelope: Envelope,
        message: Vec<u8>,
        body: Option<BodyFile>,
    ) -> Result<Envelope> {
        let body = match body {
            Some(b) => {
                let len = b.len()?;
                Some((b, len))
            }
            None => None,
        };
        let size = (message.len() as u64).saturating_add(body.as_ref().map_or(0, |b| b.1));
        let max = self.spool.max_message_size();
        if size > max {
            return Err(QueueError::TooLarge { size, max });
        }
        if envelope.id.is_unassigned() {
            envelope.id = self.spool.next_id();
        }
        envelope.size = size;
        let prefix = encode_prefix(&envelope)?;
        let (reply, answer) = oneshot::channel();
        let inline = body.is_none()
            && (prefix.len() + message.len()) as u64 <= SLOT_MAX_PAYLOAD
            && self.inline_when.as_ref().is_some_and(|hint| hint());
        let request = Request {
            id: envelope.id,
            prefix,
            message,
            body,
            reply,
            inline,
        };
        self.tx
            .send(request)
            .await
            .map_err(|_| QueueError::Closed)?;
        answer.await.map_err(|_| QueueError::Closed)??;
        Ok(envelope)
    }
}

impl Future for CommitTask {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for CommitTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CommitTask")
    }
}

/// Requests that may wait in the channel.
const QUEUE_DEPTH: usize = 1024;

/// Largest batch written at once.
const MAX_BATCH: usize = 512;

/// Blocking-pool threads writing and fsyncing the files of one batch in parallel (the
/// runtime's pool keeps them between batches: no thread is started per batch).
const WRITE_THREADS: usize = 8;

async fn run(spool: Arc<Spool>, mut rx: mpsc::Receiver<Request>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let inline = batch.len() == 1 && batch[0].inline;
        let (jobs, replies): (Vec<Job>, Vec<_>) = batch
            .drain(..)
            .map(|r| {
                (
                    Job {
                        id: r.id,
                        prefix: r.prefix,
                        message: r.message,
                        body: r.body,
                    },
                    (r.id, r.reply),
                )
            })
            .unzip();
        let results = if inline {
            // Alone, and nothing else needs this thread (the caller's hint): written and
            // made durable right here, in the same order as on the pool.
            write_lone(&spool, jobs)
        } else {
            write_batch(&spool, jobs).await
        };
        for ((id, reply), result) in replies.into_iter().zip(results) {
            #[cfg(test)]
            if result.is_ok() {
                crate::slots::trace::record(spool.slots.dir(), crate::slots::trace::Op::Answer(id));
            }
            let _ = id;
            // A receiver that is gone stopped waiting; its message may still be queued.
            let _ = reply.send(result);
        }
    }
}

/// Where a job's message was written (durable, not yet answered).
enum Placed {
    /// Linked as `active/<id>`; answered after `active/` is fsynced.
    File,
    /// In a slot; answered at once if the slot existed, else after `slots/` is fsynced.
    Slot(Taken),
}

/// Writes a batch: every message written and fsynced (in up to [`WRITE_THREADS`] blocking
/// tasks), then what makes the batch's names durable: one fsync of `active/` (file layout),
/// or of `slots/` if a slot was created (slot layout; a reused slot's name is durable
/// already). Returns one result per job, in order.
async fn write_batch(spool: &Arc<Spool>, jobs: Vec<Job>) -> Vec<Result<()>> {
    let n = jobs.len();
    if n == 1 {
        // One message (one client at a time): written and made durable in one trip to the
        // blocking pool.
        let spool = Arc::clone(spool);
        return match tokio::task::spawn_blocking(move || write_lone(&spool, jobs)).await {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "queue commit failed");
                vec![Err(QueueError::Closed)]
            }
        };
    }
    let all_ids: Vec<QueueId> = jobs.iter().map(|j| j.id).collect();
    let per_task = n.div_ceil(n.clamp(1, WRITE_THREADS)).max(1);
    let mut tasks = Vec::new();
    let mut jobs = jobs.into_iter();
    loop {
        let part: Vec<Job> = jobs.by_ref().take(per_task).collect();
        if part.is_empty() {
            break;
        }
        let len = part.len();
        let spool = Arc::clone(spool);
        // The jobs come back so that spooled bodies are removed only after the batch.
        let task = tokio::task::spawn_blocking(move || {
            let results: Vec<Result<Placed>> = part.iter().map(|j| write_one(&spool, j)).collect();
            (part, results)
        });
        tasks.push((len, task));
    }
    let mut done = Vec::with_capacity(n);
    let mut placed = Vec::with_capacity(n);
    for (len, task) in tasks {
        match task.await {
            Ok((part, r)) => {
                done.extend(part);
                placed.extend(r);
            }
            Err(e) => {
                error!(error = %e, "queue commit batch failed");
                placed.extend((0..len).map(|_| Err(QueueError::Closed)));
            }
        }
    }
    let needs_sync = placed.iter().any(|p| match p {
        Ok(Placed::File) => true,
        Ok(Placed::Slot(t)) => t.new,
        Err(_) => false,
    });
    if !needs_sync {
        drop(done);
        return settle(spool, &all_ids, placed);
    }
    let spool = Arc::clone(spool);
    let settled = tokio::task::spawn_blocking(move || settle(&spool, &all_ids, placed)).await;
    drop(done);
    match settled {
        Ok(r) => r,
        Err(e) => {
            // The directory fsync did not run to the end: nothing of this batch is
            // acknowledged (the files stay; recovery delivers them, a duplicate SMTP allows).
            error!(error = %e, "queue commit failed");
            (0..n).map(|_| Err(QueueError::Closed)).collect()
        }
    }
}

/// Writes and settles a batch of one job on the calling thread.
fn write_lone(spool: &Spool, jobs: Vec<Job>) -> Vec<Result<()>> {
    let ids: Vec<QueueId> = jobs.iter().map(|j| j.id).collect();
    let placed = jobs.iter().map(|j| write_one(spool, j)).collect();
    let r = settle(spool, &ids, placed);
    drop(jobs);
    r
}

/// Makes the names of a written batch durable (the directory fsync it needs, if any) and
/// publishes its slots; on failure, undoes what was written (nothing is answered as
/// committed).
fn settle(spool: &Spool, ids: &[QueueId], placed: Vec<Result<Placed>>) -> Vec<Result<()>> {
    let files = placed.iter().any(|p| matches!(p, Ok(Placed::File)));
    let new_slots = placed
        .iter()
        .any(|p| matches!(p, Ok(Placed::Slot(t)) if t.new));
    let mut synced = Ok(());
    if files {
        synced = spool.sync_active();
    }
    if new_slots && synced.is_ok() {
        synced = spool.sync_slots();
    }
    if let Err(e) = &synced {
        error!(error = %e, "queue commit failed");
    }
    placed
        .into_iter()
        .zip(ids)
        .map(|(p, &id)| match (p, &synced) {
            (Err(e), _) => Err(e),
            (Ok(Placed::File), Ok(())) => Ok(()),
            (Ok(Placed::Slot(t)), Ok(())) => {
                spool.slots.publish(t, id);
                Ok(())
            }
            (Ok(Placed::Slot(t)), Err(e)) => {
                spool.slots.give_back(t);
                Err(e.duplicate())
            }
            (Ok(Placed::File), Err(e)) => {
                let path = spool.message_path(id);
                if let Err(e) = fs::remove_file(&path) {
                    warn!(path = %path.display(), error = %e, "could not remove unacknowledged message");
                }
                Err(e.duplicate())
            }
        })
        .collect()
}

/// Messages larger than this go to the file layout even in the slot layout: their data write
/// dominates (a directory fsync more costs little), and slots stay small.
pub(crate) const SLOT_MAX_PAYLOAD: u64 = 256 << 10;

/// Writes and fsyncs one message: into a slot (slot layout, up to [`SLOT_MAX_PAYLOAD`]), or
/// as `incoming/<id>` linked to `active/<id>` (which must not exist).
fn write_one(spool: &Spool, job: &Job) -> Result<Placed> {
    let parts: [&[u8]; 2] = [&job.prefix, &job.message];
    let body = job.body.as_ref().map(|(b, len)| (b.path(), *len));
    let size = (job.prefix.len() + job.message.len()) as u64 + job.body.as_ref().map_or(0, |b| b.1);
    if spool.layout() == Layout::Slots && size <= SLOT_MAX_PAYLOAD {
        let mut slot = spool.slots.take()?;
        return match spool
            .slots
            .write(&mut slot, job.id, &job.prefix, &job.message, body)
        {
            Ok(()) => Ok(Placed::Slot(slot)),
            Err(e) => {
                error!(error = %e, "queue commit failed");
                spool.slots.give_back(slot);
                Err(e)
            }
        };
    }
    let tmp = spool.incoming.join(job.id.to_string());
    if spool.take_spare(&tmp) {
        if let Err(e) = rewrite_durable(&tmp, &parts, body) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    } else {
        write_durable_with(&tmp, &parts, body)?;
    }
    let target = spool.message_path(job.id);
    let linked = fs::hard_link(&tmp, &target).ctx("link", &target);
    if let Err(e) = fs::remove_file(&tmp) {
        warn!(path = %tmp.display(), error = %e, "could not remove committed temporary file");
    }
    if let Err(e) = &linked {
        error!(error = %e, "queue commit failed");
    }
    linked.map(|()| Placed::File)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::slots::trace::{self, Op};
    use crate::spool::Layout;

    fn envelope() -> Envelope {
        Envelope::new(
            Some("a@example.org".into()),
            vec![crate::Recipient::new("b@example.org")],
        )
    }

    /// The order every commit into a slot must keep: its bytes written, then the slot's
    /// fsync returned, then (its batch settled) the slot published, and only then the
    /// commit answered; a removal zeroes the header of a slot no longer published, and a
    /// slot is written again only after that. Checked for lone commits (one trip to the
    /// blocking pool), concurrent batches, removals and slot reuse. Seen failing with the
    /// `fdatasync` of a reused slot taken out, with the `slots/` fsync after new slots
    /// taken out (both "published before its sync"), and with commits answered before
    /// their batch was written (the message not yet in a slot at its removal).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_commit_is_synced_before_it_is_answered() {
        commits_keep_their_order(false).await;
    }

    /// The same order when lone commits run on the committer's own thread
    /// ([`Committer::inline_when`]).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_inline_commit_is_synced_before_it_is_answered() {
        commits_keep_their_order(true).await;
    }

    /// A lone commit with the hint saying yes never goes to the blocking pool (no pool
    /// thread is started on a current-thread runtime); with it saying no, or for a batch,
    /// it does. Seen failing (1 thread started) with the inline branch in `run` taken out.
    #[test]
    fn a_lone_commit_runs_inline_only_when_the_hint_says_so() {
        assert_eq!(
            pool_threads_for_lone_commits(true, 100),
            0,
            "no pool thread while alone"
        );
        assert!(
            pool_threads_for_lone_commits(false, 100) >= 1,
            "the hint said no"
        );
        let too_big_for_a_slot = SLOT_MAX_PAYLOAD as usize + 1;
        assert!(
            pool_threads_for_lone_commits(true, too_big_for_a_slot) >= 1,
            "a large message is never written inline"
        );
    }

    /// Commits three messages of `size` one after the other on a fresh current-thread
    /// runtime whose hint answers `alone`; returns the blocking-pool threads started.
    fn pool_threads_for_lone_commits(alone: bool, size: usize) -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let started = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&started);
        let rt = tokio::runtime::Builder::new_current_thread()
            .on_thread_start(move || {
                s.fetch_add(1, Ordering::SeqCst);
            })
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (spool, _) = Spool::open_with(dir.path(), Layout::Slots).unwrap();
            let spool = Arc::new(spool);
            spool.preallocate_slots(4);
            let (c, task) = Committer::new(Arc::clone(&spool));
            let c = c.inline_when(Arc::new(move || alone));
            tokio::spawn(task);
            for i in 0..3 {
                let mut m = format!("Subject: {i}\r\n\r\n").into_bytes();
                m.resize(size, b'x');
                let id = c.commit(envelope(), m).await.unwrap().id;
                assert_eq!(spool.read_message(id).unwrap().len(), size);
            }
        });
        drop(rt);
        started.load(Ordering::SeqCst)
    }

    async fn commits_keep_their_order(inline: bool) {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open_with(dir.path(), Layout::Slots).unwrap();
        let spool = Arc::new(spool);
        spool.preallocate_slots(4);
        let (c, task) = Committer::new(Arc::clone(&spool));
        let c = if inline {
            c.inline_when(Arc::new(|| true))
        } else {
            c
        };
        tokio::spawn(task);
        let mut ids = Vec::new();
        for round in 0..6 {
            // Lone commits, then a concurrent batch (slots beyond the 4 preallocated are
            // created, and `slots/` fsynced), then every message removed for reuse.
            let mut done = Vec::new();
            for i in 0..2 {
                let m = format!("Subject: lone {round} {i}\r\n\r\nx\r\n").into_bytes();
                done.push(c.commit(envelope(), m).await.unwrap().id);
            }
            let batch = (0..6).map(|i| {
                let c = c.clone();
                async move {
                    let m = format!(
                        "Subject: batch {round} {i}\r\n\r\n{}\r\n",
                        "y".repeat(i * 999)
                    )
                    .into_bytes();
                    c.commit(envelope(), m).await.unwrap().id
                }
            });
            done.extend(futures_join_all(batch).await);
            for &id in &done {
                if id.to_string().ends_with(['0', '2', '4', '6', '8']) {
                    assert!(spool.remove_if_slot_only(id).unwrap());
                } else {
                    spool.remove(id).unwrap();
                }
            }
            ids.extend(done);
        }
        let ops = trace::of(spool.slots.dir());
        // Per slot: what it went through, in order.
        let mut state: HashMap<u64, &str> = HashMap::new();
        let mut slot_of: HashMap<QueueId, u64> = HashMap::new();
        for op in &ops {
            match *op {
                Op::Write(n, new) => {
                    let s = state.entry(n).or_insert("free");
                    assert_eq!(*s, "free", "slot {n} rewritten while {s}: {ops:?}");
                    *s = if new { "new, written" } else { "written" };
                }
                Op::Sync(n) => {
                    let s = state.get_mut(&n).unwrap();
                    *s = match *s {
                        "written" => "synced",
                        "new, written" => "new, synced",
                        other => panic!("slot {n} synced while {other}"),
                    };
                }
                Op::SyncDir => {
                    // Every new slot written and synced so far has a durable name now.
                    for s in state.values_mut() {
                        if *s == "new, synced" {
                            *s = "synced";
                        }
                    }
                }
                Op::Publish(n, id) => {
                    let s = state.get_mut(&n).unwrap();
                    assert_eq!(
                        *s, "synced",
                        "slot {n} published before its sync (and a new one's name): {ops:?}"
                    );
                    *s = "published";
                    slot_of.insert(id, n);
                }
                Op::Answer(id) => {
                    let n = slot_of[&id];
                    assert_eq!(
                        state[&n], "published",
                        "{id} answered before its sync: {ops:?}"
                    );
                }
                Op::Free(n) => {
                    let s = state.get_mut(&n).unwrap();
                    assert_eq!(*s, "published", "slot {n} freed while {s}");
                    *s = "free";
                }
            }
        }
        let answered = ops.iter().filter(|o| matches!(o, Op::Answer(_))).count();
        assert_eq!(answered, ids.len(), "every commit answered once");
        assert!(
            state.values().all(|s| *s == "free"),
            "every slot freed again"
        );
        assert!(
            state.len() >= 6,
            "a batch used several slots: {}",
            state.len()
        );
    }

    /// A minimal join_all (the crate does not depend on `futures`).
    async fn futures_join_all<F: Future<Output = T> + Send + 'static, T: Send + 'static>(
        fs: impl Iterator<Item = F>,
    ) -> Vec<T> {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
