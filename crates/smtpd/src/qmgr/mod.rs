//! The queue manager: delivers what the queue holds. Local recipients go over LMTP (many
//! in one transaction, per-recipient results honoured); a domain with a `transports` entry
//! goes where it says; other domains go out over SMTP ([`crate::outbound`]: the relayhost,
//! or the domain's MX hosts), DKIM-signed at that moment when the From: domain has a key
//! and the message's origin lets us sign it ([`may_sign`]); forwarded mail gets an SRS
//! envelope sender ([`crate::srs`]).
//! 2xx removes a recipient, 4xx retries with backoff, 5xx (or expiry) bounces with an
//! RFC 3464 DSN to the envelope sender (never to `<>`).
//!
//! - this module: the manager's loop and one attempt's I/O;
//! - [`attempt`]: the attempt's decisions, pure: routing, results, expiry, notifications;
//! - [`lmtp`]: LMTP transactions (pooled connections to the delivery agent);
//! - [`cluster`]: local recipients whose account lives on another node (`[proxy]`) go to
//!   that backend's LMTP server;
//! - [`recovery`]: quick retries of a refused LMTP server, and deferred mail moved forward
//!   when its destination takes mail again;
//! - [`control`]: queue control commands;
//! - [`dsn`]: building and queueing the notifications.

mod attempt;
mod cluster;
mod control;
mod dsn;
mod fresh;
mod lmtp;
mod recovery;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use postern_config::Config;
use postern_queue::{
    Backoff, Committer, Domain, Envelope, Filter, Layout, Origin, QueueId, Schedule, Spool,
};
use postern_smtp_client::{Client, Target};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::control::{ErrorKind, QueueDetail, QueueEntry};
use crate::dkim::Dkim;
use crate::outbound::{Outbound, Outcome, Route};
use crate::policy::Directory;
use recovery::{Reach, Refusals, Waiting};

/// How intake and the control socket reach the queue.
#[derive(Clone)]
pub(crate) struct QueueHandle {
    pub(crate) committer: Committer,
    tx: mpsc::UnboundedSender<Envelope>,
    cmds: mpsc::Sender<(QueueCmd, oneshot::Sender<ControlResult>)>,
    /// Messages in the queue (as of the manager's last turn, plus those handed over since).
    length: Arc<AtomicUsize>,
    /// Copies of messages just committed, for their first attempt.
    fresh: Arc<fresh::Fresh>,
}

/// A queue control command, answered by the manager from its schedule.
#[derive(Debug)]
pub(crate) enum QueueCmd {
    List(Filter),
    Show(QueueId),
    /// Make one message (or every message not held) due now.
    Flush(Option<QueueId>),
    Hold(QueueId),
    Release(QueueId),
    Delete(QueueId),
    /// Delete every message from this sender (`""`/`<>`: the null sender).
    DeleteFrom(String),
}

/// What a queue control command did.
#[derive(Debug)]
pub(crate) enum QueueAnswer {
    List(Vec<QueueEntry>),
    Show(Box<QueueDetail>),
    Done {
        text: String,
        id: Option<QueueId>,
        count: usize,
    },
}

pub(crate) type ControlResult = Result<QueueAnswer, (ErrorKind, String)>;

impl QueueHandle {
    /// Hands a freshly committed message to the manager for immediate delivery.
    pub(crate) fn enqueue(&self, env: Envelope) {
        self.length.fetch_add(1, Ordering::Relaxed);
        drop(self.tx.send(env));
    }

    /// Whether a message of `len` bytes would be kept for [`QueueHandle::enqueue_with`].
    pub(crate) fn keeps_fresh(len: usize) -> bool {
        len <= fresh::MAX_ONE
    }

    /// [`QueueHandle::enqueue`] with the message's bytes, exactly as the spool holds them,
    /// so that its first attempt need not read them back.
    pub(crate) fn enqueue_with(&self, env: Envelope, message: Vec<u8>) {
        if !env.held {
            self.fresh.put(env.id, message);
        }
        self.enqueue(env);
    }

    /// How many messages the queue holds (for the `max_queue_messages` cap).
    pub(crate) fn len(&self) -> usize {
        self.length.load(Ordering::Relaxed)
    }

    /// Runs a control command in the manager.
    pub(crate) async fn control(&self, cmd: QueueCmd) -> ControlResult {
        let stopping = || (ErrorKind::TempFail, "smtpd is stopping".to_owned());
        let (reply, answer) = oneshot::channel();
        self.cmds.send((cmd, reply)).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())?
    }
}

struct Manager {
    config: Config,
    /// authd's socketmap (shared with the sessions): domains and cluster routes asked at
    /// delivery.
    directory: Arc<Directory>,
    spool: Arc<Spool>,
    committer: Committer,
    /// Back into the manager's own schedule (DSNs it queues).
    requeue: mpsc::UnboundedSender<Envelope>,
    backoff: Backoff,
    lmtp: Target,
    /// Idle LMTP connections to `lmtp` and to cluster backends, by target, reused for the
    /// next delivery there (with the time they were last used: older ones are closed, the
    /// server may have timed them out).
    lmtp_pool: std::sync::Mutex<Vec<(Target, Client, Instant)>>,
    /// Bounds LMTP transactions in flight (`lmtp_concurrency`).
    lmtp_slots: Semaphore,
    /// TLS towards cluster backends (`[proxy] tls`); `None`: plain text.
    hop_tls: Option<tokio_rustls::TlsConnector>,
    /// SMTP to other domains.
    outbound: Outbound,
    /// DKIM signing of what goes out.
    dkim: Dkim,
    /// LMTP servers refusing connections, for quick retries.
    refusals: Refusals,
    /// Copies of messages just committed (see [`fresh`]).
    fresh: Arc<fresh::Fresh>,
}

/// What one attempt left.
#[derive(Debug, Default)]
struct Attempted {
    /// The envelope still queued; `None` once the message is done (or gone).
    env: Option<Envelope>,
    /// Destinations that took mail, and those that could not be reached.
    reach: Reach,
    /// When the attempt began (`None`: not known).
    started: Option<Instant>,
}

impl Attempted {
    fn queued(env: Envelope) -> Self {
        Self {
            env: Some(env),
            reach: Reach::default(),
            started: None,
        }
    }
}

/// What an attempt found out so far.
#[derive(Debug, Default)]
struct Tally {
    progress: attempt::Progress,
    reach: Reach,
    quick: Quick,
}

/// Recipients deferred because their LMTP server refused the connection.
#[derive(Debug, Default)]
struct Quick {
    refused: HashSet<usize>,
    delay: Duration,
    /// A refusing server is past its quick retries: the usual backoff for the message.
    off: bool,
}

impl Quick {
    fn refused(&mut self, idx: &[usize], delay: Duration) {
        self.refused.extend(idx);
        self.delay = self.delay.max(delay);
    }

    fn not_quick(&mut self) {
        self.off = true;
    }

    /// The quick retry, when every recipient still pending met a refused LMTP server (any
    /// other deferral keeps the usual backoff; "destination is back" moves it forward).
    fn retry_in(&self, env: &Envelope) -> Option<Duration> {
        if self.off {
            return None;
        }
        let mut pending = env
            .recipients
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_pending())
            .peekable();
        pending.peek()?;
        pending
            .all(|(i, _)| self.refused.contains(&i))
            .then_some(self.delay)
    }
}

/// What outbound outcomes say about their destination: `Some(true)` it took mail,
/// `Some(false)` no server was reached (every one a deferral of ours, not a server's reply),
/// `None` neither.
fn reached(outcomes: &[Outcome]) -> Option<bool> {
    let mut unreached = true;
    for o in outcomes {
        match o {
            Outcome::Delivered(_) => return Some(true),
            Outcome::Deferred(r) if r.remote_mta.is_none() => {}
            _ => unreached = false,
        }
    }
    (unreached && !outcomes.is_empty()).then_some(false)
}

/// Opens the spool (recovering what a crash left) and starts delivering.
pub(crate) async fn start(
    config: &Config,
    directory: Arc<Directory>,
    shutdown: CancellationToken,
) -> anyhow::Result<(QueueHandle, JoinHandle<()>)> {
    let dir = config.state_dir().join("queue");
    let max = config.smtpd.max_message_size + 1024 * 1024;
    let (spool, envelopes) = tokio::task::spawn_blocking(move || {
        let (spool, envelopes) = Spool::open_with(&dir, Layout::Slots)?;
        // Slots for the first burst after a start (they need no fsync each).
        spool.preallocate_slots(PREALLOC_SLOTS);
        Ok::<_, postern_queue::QueueError>((spool.with_max_message_size(max), envelopes))
    })
    .await?
    .context("opening the queue")?;
    if !envelopes.is_empty() {
        info!(messages = envelopes.len(), "queue recovered");
    }
    let spool = Arc::new(spool);
    let (committer, task) = Committer::new(spool.clone());
    tokio::spawn(task);
    let (tx, rx) = mpsc::unbounded_channel();
    let fresh = Arc::new(fresh::Fresh::default());
    let c = &config.smtpd;
    let lmtp = match c.lmtp.as_deref() {
        Some(t) if t.starts_with("unix:") => Target::Unix(PathBuf::from(&t[5..])),
        Some(t) => Target::Tcp(t.to_owned()),
        None => Target::Unix(config.socket_path(&config.lmtp.socket)),
    };
    let m = Arc::new(Manager {
        config: config.clone(),
        directory,
        spool,
        committer: committer.clone(),
        requeue: tx.clone(),
        lmtp_pool: std::sync::Mutex::new(Vec::new()),
        lmtp_slots: Semaphore::new(config.smtpd.lmtp_concurrency.get()),
        hop_tls: postern_smtp_client::tls::hop_connector(config)
            .map_err(anyhow::Error::msg)
            .context("setting up TLS towards backends")?,
        backoff: Backoff {
            min: c.min_backoff_secs.duration(),
            max: c.max_backoff_secs.max(c.min_backoff_secs).duration(),
            lifetime: c.max_queue_lifetime_secs.duration(),
            delay_warning: c.delay_warning_secs.duration(),
        },
        lmtp,
        outbound: Outbound::new(config).context("setting up outbound delivery (DNS)")?,
        dkim: Dkim::new(config),
        refusals: Refusals::default(),
        fresh: fresh.clone(),
    });
    let schedule: Schedule = envelopes.into_iter().collect();
    let length = Arc::new(AtomicUsize::new(schedule.len()));
    let (cmds, cmd_rx) = mpsc::channel(64);
    let handle = tokio::spawn(run(m, schedule, rx, cmd_rx, shutdown, length.clone()));
    Ok((
        QueueHandle {
            committer,
            tx,
            cmds,
            length,
            fresh,
        },
        handle,
    ))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

async fn run(
    m: Arc<Manager>,
    mut schedule: Schedule,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    mut cmds: mpsc::Receiver<(QueueCmd, oneshot::Sender<ControlResult>)>,
    shutdown: CancellationToken,
    length: Arc<AtomicUsize>,
) {
    let slots = Arc::new(Semaphore::new(m.config.smtpd.delivery_concurrency.get()));
    let mut inflight: HashSet<QueueId> = HashSet::new();
    let mut waiting = Waiting::default();
    let mut tasks: JoinSet<(QueueId, Attempted)> = JoinSet::new();
    let mut last_expiry = Instant::now();
    let mut last_prune = Instant::now();
    loop {
        // Take in everything intake handed over since the last turn.
        while let Ok(env) = rx.try_recv() {
            schedule.insert(env);
        }
        length.store(schedule.len(), Ordering::Relaxed);
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            m.outbound.expire_idle();
            last_expiry = Instant::now();
        }
        if last_prune.elapsed() >= WAITING_PRUNE {
            waiting.retain(|id| schedule.get(id).is_some());
            last_prune = Instant::now();
        }
        start_due(&m, &schedule, &mut inflight, &mut tasks, &slots);
        let wait = schedule.next_due().map_or(Duration::from_secs(5), |t| {
            Duration::from_secs(u64::try_from(t - now()).unwrap_or(0).clamp(1, 5))
        });
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(env) = rx.recv() => { schedule.insert(env); }
            Some((cmd, reply)) = cmds.recv() => {
                // What intake handed over first, so that a message acknowledged before the
                // command was sent is seen by it.
                while let Ok(env) = rx.try_recv() {
                    schedule.insert(env);
                }
                // Answered here, between delivery starts: no attempt can begin on a message
                // while its spool files are changed.
                let r = m.control(&mut schedule, &inflight, cmd).await;
                drop(reply.send(r));
            }
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Ok((id, attempted)) = done {
                    inflight.remove(&id);
                    take_result(&mut schedule, &mut waiting, &inflight, id, attempted);
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Let deliveries in flight finish (their results are saved in the spool).
    while tasks.join_next().await.is_some() {}
}

/// Queue slots made ready at start ([`Spool::preallocate_slots`]).
const PREALLOC_SLOTS: usize = 256;

/// How often messages no longer queued are forgotten by [`Waiting`].
const WAITING_PRUNE: Duration = Duration::from_secs(60);

/// Starts the attempts that are due, as far as the delivery slots go.
fn start_due(
    m: &Arc<Manager>,
    schedule: &Schedule,
    inflight: &mut HashSet<QueueId>,
    tasks: &mut JoinSet<(QueueId, Attempted)>,
    slots: &Arc<Semaphore>,
) {
    let free = slots.available_permits();
    let starting: Vec<QueueId> = schedule
        .due_iter(now())
        .filter(|id| !inflight.contains(id))
        .take(free)
        .collect();
    for id in starting {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            break;
        };
        let Some(env) = schedule.get(id).cloned() else {
            continue;
        };
        inflight.insert(id);
        let m = m.clone();
        tasks.spawn(async move {
            let r = m.attempt(env).await;
            drop(permit);
            (id, r)
        });
    }
}

/// Takes an attempt's result into the schedule. A message deferred because a destination
/// could not be reached waits for it; a destination that took mail makes the messages
/// waiting for it due now ("destination is back").
fn take_result(
    schedule: &mut Schedule,
    waiting: &mut Waiting,
    inflight: &HashSet<QueueId>,
    id: QueueId,
    attempted: Attempted,
) {
    let Attempted {
        env,
        reach,
        started,
    } = attempted;
    match env {
        Some(mut env) => {
            for d in &reach.unreached {
                // Another message got through to it while this attempt was under way (the
                // destination came back meanwhile): try again now rather than wait for the
                // next success there, which may never come.
                if !env.held && started.is_some_and(|t| waiting.back_since(d, t)) {
                    env.next_attempt = env.next_attempt.min(now());
                } else {
                    waiting.wait(d, id);
                }
            }
            schedule.update(env);
        }
        None => {
            schedule.remove(id);
        }
    }
    let t = now();
    for d in &reach.delivered {
        let mut moved = 0;
        for w in waiting.back(d) {
            // One in flight is being tried right now.
            if inflight.contains(&w) {
                continue;
            }
            if let Some(env) = schedule.get(w)
                && !env.held
                && env.next_attempt > t
            {
                let mut env = env.clone();
                env.next_attempt = t;
                schedule.update(env);
                moved += 1;
            }
        }
        if moved > 0 {
            info!(
                destination = %d,
                messages = moved,
                "destination is back: deferred mail moved forward"
            );
        }
    }
}

impl Manager {
    /// One delivery attempt: the envelope still queued (`None` once it is done) and what
    /// the attempt learnt about its destinations. Everything logged on its behalf (LMTP,
    /// outbound, DSNs) is in the span `delivery{id=QUEUE-ID}`.
    async fn attempt(&self, env: Envelope) -> Attempted {
        let span = tracing::info_span!("delivery", id = %env.id);
        let started = Instant::now();
        let mut r = self.attempt_in_span(env).instrument(span).await;
        r.started = Some(started);
        r
    }

    async fn attempt_in_span(&self, mut env: Envelope) -> Attempted {
        let message = match self.read_queued(env.id).await {
            Ok(Some(m)) => m,
            Ok(None) => return Attempted::default(),
            Err(why) => {
                warn!(error = %why, "queued message unreadable; will retry");
                env.next_attempt = now() + 60;
                return Attempted::queued(env);
            }
        };
        let plan = self.plan(&env).await;
        let mut tally = Tally::default();
        for (i, why) in plan.unrouted {
            attempt::apply(&mut env, &mut tally.progress, i, Outcome::Deferred(why));
        }
        if !plan.local.is_empty() {
            let hops = cluster::hops(&self.config, &self.directory, &env, &plan.local).await;
            for (i, why) in hops.unrouted {
                attempt::apply(&mut env, &mut tally.progress, i, Outcome::Deferred(why));
            }
            let _slot = self.lmtp_slots.acquire().await;
            for (hop, idx) in &hops.groups {
                match hop {
                    cluster::Hop::Here => {
                        self.deliver_lmtp(&mut env, &message, idx, &self.lmtp, None, &mut tally)
                            .await;
                    }
                    cluster::Hop::Backend(b) => {
                        self.deliver_lmtp(
                            &mut env,
                            &message,
                            idx,
                            &b.target(),
                            Some(b),
                            &mut tally,
                        )
                        .await;
                    }
                }
            }
        }
        self.deliver_remote(&mut env, &message, &plan.remote, &mut tally)
            .await;
        self.conclude(env, &message, tally).await
    }

    /// The queued message's bytes; `None` when it is gone from the spool (deleted).
    async fn read_queued(&self, id: QueueId) -> Result<Option<Vec<u8>>, String> {
        if let Some(m) = self.fresh.take(id) {
            return Ok(Some(m));
        }
        let spool = self.spool.clone();
        match tokio::task::spawn_blocking(move || spool.read_message(id)).await {
            Ok(Ok(m)) => Ok(Some(m)),
            Ok(Err(e)) if e.is_not_found() => Ok(None),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Where the pending recipients go this time; authd is asked only about recipients
    /// whose destination was not recorded at RCPT.
    async fn plan(&self, env: &Envelope) -> attempt::Plan {
        let has_transport =
            |domain: &Domain| self.config.smtpd.transports.keys().any(|k| domain.is(k));
        let mut answers = HashMap::new();
        let ask = attempt::domains_to_ask(env, has_transport);
        if !ask.is_empty() {
            let mut lookups = self.directory.lookups();
            for domain in ask {
                let local = lookups.is_local_domain(domain.as_str()).await;
                answers.insert(domain, local);
            }
        }
        attempt::plan(env, has_transport, &answers)
    }

    /// One LMTP transaction for the recipients at `idx`, its results applied; a refused
    /// connection gets those recipients a quick retry.
    async fn deliver_lmtp(
        &self,
        env: &mut Envelope,
        message: &[u8],
        idx: &[usize],
        target: &Target,
        backend: Option<&cluster::Backend>,
        tally: &mut Tally,
    ) {
        let (link, outcomes) = self.lmtp(env, message, idx, target, backend).await;
        let server = target.to_string();
        let destination = format!("lmtp:{server}");
        match link {
            lmtp::Link::Answered => {
                self.refusals.reached(&server);
                if outcomes
                    .iter()
                    .any(|(_, o)| matches!(o, Outcome::Delivered(_)))
                {
                    tally.reach.delivered(destination);
                }
            }
            lmtp::Link::Refused => {
                match self.refusals.refused(&server, Instant::now()) {
                    Some(delay) => tally.quick.refused(idx, delay),
                    None => tally.quick.not_quick(),
                }
                tally.reach.unreached(destination);
            }
            lmtp::Link::Broken => tally.reach.unreached(destination),
        }
        for (i, o) in outcomes {
            attempt::apply(env, &mut tally.progress, i, o);
        }
    }

    /// The recipients in other domains, one transaction per domain: over LMTP for a
    /// `transports` entry that says so, else over SMTP, DKIM-signed when we may sign, with
    /// an SRS sender for forwarded mail.
    async fn deliver_remote(
        &self,
        env: &mut Envelope,
        message: &[u8],
        remote: &BTreeMap<Domain, Vec<usize>>,
        tally: &mut Tally,
    ) {
        if remote.is_empty() {
            return;
        }
        let mut signed: Option<Vec<u8>> = None;
        let rewritten_sender = self
            .directory
            .srs()
            .and_then(|srs| srs_sender(srs, env, message, crate::srs::today()));
        for (domain, idx) in remote {
            let domain = domain.as_str();
            match Route::for_domain(&self.config, domain) {
                Route::Lmtp(target) => {
                    self.deliver_lmtp(env, message, idx, &target, None, tally)
                        .await;
                }
                route => {
                    let signed = signed.get_or_insert_with(|| self.signed(env, message));
                    let mut out = attempt::outgoing(env, idx, signed);
                    if let Some(s) = &rewritten_sender {
                        out.from = Some(s.clone());
                    }
                    let outcomes = self.outbound.deliver(&route, domain, &out).await;
                    match reached(&outcomes) {
                        Some(true) => tally.reach.delivered(route.key()),
                        Some(false) => tally.reach.unreached(route.key()),
                        None => {}
                    }
                    for (&i, o) in idx.iter().zip(outcomes) {
                        attempt::apply(env, &mut tally.progress, i, o);
                    }
                }
            }
        }
    }

    /// Ends an attempt: notifications, then the message removed (every recipient done) or
    /// its state saved with the next attempt's time.
    async fn conclude(&self, mut env: Envelope, message: &[u8], tally: Tally) -> Attempted {
        let Tally {
            progress,
            reach,
            quick,
        } = tally;
        let t = now();
        let (due, done) = attempt::finish(&mut env, progress, &self.backoff, t);
        for notice in attempt::notices(&env, &due, t, self.backoff.lifetime) {
            self.send_notice(&env, message, notice).await;
        }
        if done {
            info!(attempts = env.attempts, "removed (every recipient done)");
            let (spool, id) = (self.spool.clone(), env.id);
            // A message in a slot without a state (most): one small write into a file held
            // open, here, not a trip to the blocking pool and back (two thread wakeups).
            let removed = match spool.remove_if_slot_only(id) {
                Ok(true) => Ok(()),
                Ok(false) => tokio::task::spawn_blocking(move || spool.remove(id))
                    .await
                    .unwrap_or(Ok(())),
                Err(e) => Err(e),
            };
            if let Err(e) = removed {
                warn!(error = %e, "removing a finished message failed");
            }
            return Attempted {
                env: None,
                reach,
                started: None,
            };
        }
        if let Some(delay) = quick.retry_in(&env) {
            let secs = i64::try_from(delay.as_secs().max(1)).unwrap_or(i64::MAX);
            env.next_attempt = env.next_attempt.min(t.saturating_add(secs));
        }
        let saved = env.clone();
        let spool = self.spool.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.save_state(&saved)).await {
            warn!(error = %e, "saving delivery state failed");
        }
        info!(
            next_attempt = env.next_attempt,
            reason = env.last_error.as_deref().unwrap_or("-"),
            "deferred"
        );
        Attempted {
            env: Some(env),
            reach,
            started: None,
        }
    }

    /// The message as it goes to other domains: DKIM-signed when we may sign it.
    fn signed(&self, env: &Envelope, message: &[u8]) -> Vec<u8> {
        let ours = may_sign(&self.config, env.origin.as_ref(), message);
        if !ours {
            tracing::debug!(origin = ?env.origin, "not ours to sign");
        }
        let headers = if ours {
            self.dkim.sign(message)
        } else {
            Vec::new()
        };
        if headers.is_empty() {
            return message.to_vec();
        }
        let mut out = headers;
        out.extend_from_slice(message);
        out
    }
}

/// Whether a message of this origin may leave DKIM-signed with the key of its header
/// From: domain. Only what we originated: an authenticated submission (its From: was
/// checked against the login at intake), our own DSNs, a local user's mail from its own
/// addresses, a vacation reply from the mailbox it answers for, and, when
/// `sign_trusted_networks` says so, trusted networks. Never mail from outside, forwarded
/// mail, or queue files from before origins were recorded.
pub(crate) fn may_sign(config: &Config, origin: Option<&Origin>, message: &[u8]) -> bool {
    let all_from = |ok: &dyn Fn(&str) -> bool| {
        crate::policy::header_from_addresses(message)
            .is_ok_and(|a| !a.is_empty() && a.iter().all(|x| ok(x)))
    };
    match origin {
        Some(Origin::Submission { .. } | Origin::Dsn) => true,
        Some(Origin::Trusted) => config.smtpd.sign_trusted_networks,
        Some(Origin::Local { user, .. }) => user
            .as_deref()
            .is_some_and(|u| all_from(&|a| crate::policy::local_may_use(config, u, a))),
        Some(Origin::AutoReply { user }) => all_from(&|a| a.eq_ignore_ascii_case(user)),
        Some(Origin::Forward { .. } | Origin::Mx) | None => false,
    }
}

/// The SRS envelope sender for mail that we pass on but did not write (Sieve redirect, and
/// mail from outside for an alias with remote targets); `None`: the sender stays.
fn srs_sender(srs: &crate::srs::Srs, env: &Envelope, message: &[u8], day: u64) -> Option<String> {
    if !matches!(env.origin, Some(Origin::Forward { .. } | Origin::Mx)) {
        return None;
    }
    let sender = env.sender.as_deref().filter(|s| !s.is_empty())?;
    // An SRS sender would give a From: aligned with the SRS domain (relaxed DMARC) an SPF
    // pass it never had: such mail keeps its own sender.
    if let Some(from) = crate::dkim::from_domain(message)
        && crate::srs::org_aligned(&from, srs.domain())
    {
        info!(sender, from = %from, "From: aligned with the SRS domain; sender kept");
        return None;
    }
    let rewritten = srs.forward(sender, day);
    if rewritten == sender {
        return None;
    }
    let local_len = rewritten.rsplit_once('@').map_or(0, |(l, _)| l.len());
    if local_len > postern_smtp_session::address::MAX_LOCAL_PART {
        // Our own RCPT would refuse a bounce to it: keep the sender (SPF may fail next hop).
        info!(sender, "SRS address would be too long; sender kept");
        return None;
    }
    Some(rewritten)
}

#[cfg(test)]
mod tests {
    use postern_queue::Recipient;

    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(
            &format!("hostname = \"mail.example.org\"\n[smtpd]\n{extra}\n"),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap()
    }

    fn reply(code: u16, remote: bool) -> postern_queue::DeliveryReply {
        let r = postern_queue::DeliveryReply::new(code, (code as u8 / 100, 0, 0), "x");
        if remote {
            r.from_remote("mx.remote.test".to_owned(), None)
        } else {
            r
        }
    }

    #[test]
    fn outbound_outcomes_say_whether_the_destination_was_reached() {
        let d = |c, remote| Outcome::Deferred(reply(c, remote));
        // One accepted: the destination took mail.
        assert_eq!(
            reached(&[d(451, true), Outcome::Delivered(reply(250, true))]),
            Some(true)
        );
        // Only deferrals of ours (no server reached): unreached.
        assert_eq!(reached(&[d(451, false), d(451, false)]), Some(false));
        // A server answered 4xx (greylisting, mailbox full): neither.
        assert_eq!(reached(&[d(451, false), d(450, true)]), None);
        assert_eq!(reached(&[Outcome::Bounced(reply(550, true))]), None);
        assert_eq!(reached(&[]), None);
    }

    #[test]
    fn quick_retry_only_when_every_pending_recipient_met_a_refusal() {
        let mut env = Envelope::new(
            Some("s@x.test".into()),
            vec![Recipient::new("a@l.test"), Recipient::new("b@r.test")],
        );
        let mut q = Quick::default();
        assert_eq!(q.retry_in(&env), None, "nothing refused");
        q.refused(&[0], Duration::from_secs(2));
        assert_eq!(q.retry_in(&env), None, "b was deferred otherwise");
        q.refused(&[1], Duration::from_secs(4));
        assert_eq!(q.retry_in(&env), Some(Duration::from_secs(4)));
        // b delivered: a alone is pending, and was refused.
        let mut q = Quick::default();
        q.refused(&[0], Duration::from_secs(1));
        env.recipients[1].status = postern_queue::RcptStatus::Delivered;
        assert_eq!(q.retry_in(&env), Some(Duration::from_secs(1)));
        env.recipients[0].status = postern_queue::RcptStatus::Delivered;
        assert_eq!(q.retry_in(&env), None, "nothing pending");
        // A server past its quick retries: the usual backoff.
        env.recipients[0].status = postern_queue::RcptStatus::Pending;
        let mut q = Quick::default();
        q.refused(&[0], Duration::from_secs(1));
        q.not_quick();
        assert_eq!(q.retry_in(&env), None);
    }

    /// "Destination is back": a success to a destination makes the messages that could not
    /// reach it due now; held ones, those in flight and those waiting elsewhere stay.
    #[test]
    fn a_delivery_moves_the_mail_waiting_for_its_destination_forward() {
        let later = now() + 3000;
        let env = |n: u64| {
            let mut e = Envelope::new(Some("s@x.test".into()), vec![Recipient::new("a@l.test")]);
            e.id = format!("{:020x}", n << 8).parse().unwrap();
            e.next_attempt = later;
            e
        };
        let (a, b, c, held, busy) = (env(1), env(2), env(3), env(4), env(5));
        let mut held = held;
        held.held = true;
        let ids = [a.id, b.id, c.id, held.id, busy.id];
        let mut schedule: Schedule = [a, b, c, held, busy].into_iter().collect();
        let mut waiting = Waiting::default();
        let mut inflight = HashSet::new();
        let unreached = |d: &str| Reach {
            delivered: vec![],
            unreached: vec![d.into()],
        };
        for (i, d) in [
            (0, "lmtp:l"),
            (1, "lmtp:l"),
            (2, "mx:r"),
            (3, "lmtp:l"),
            (4, "lmtp:l"),
        ] {
            let e = schedule.get(ids[i]).cloned();
            take_result(
                &mut schedule,
                &mut waiting,
                &inflight,
                ids[i],
                Attempted {
                    env: e,
                    reach: unreached(d),
                    started: None,
                },
            );
        }
        inflight.insert(ids[4]);
        // Another message delivered over LMTP (and done).
        let done: QueueId = format!("{:020x}", 9u64 << 8).parse().unwrap();
        take_result(
            &mut schedule,
            &mut waiting,
            &inflight,
            done,
            Attempted {
                env: None,
                reach: Reach {
                    delivered: vec!["lmtp:l".into()],
                    unreached: vec![],
                },
                started: None,
            },
        );
        let t = now();
        let due = |i: usize| schedule.get(ids[i]).unwrap().next_attempt <= t;
        assert!(due(0) && due(1), "waited for lmtp:l");
        assert!(!due(2), "waits for another destination");
        assert!(!due(3), "held");
        assert!(!due(4), "in flight");
    }

    /// Regression: a message whose attempt broke while the destination went away, and
    /// whose result came back after another message had already got through there (the
    /// "destination is back" moment had passed), waited for the full backoff (seen as 1 of
    /// 200 messages not delivered within 30 s of lmtp-deliver's restart under load).
    #[test]
    fn an_attempt_that_failed_while_its_destination_came_back_is_due_now() {
        let later = now() + 3000;
        let mut e = Envelope::new(Some("s@x.test".into()), vec![Recipient::new("a@l.test")]);
        e.id = format!("{:020x}", 7u64 << 8).parse().unwrap();
        e.next_attempt = later;
        let id = e.id;
        let mut schedule: Schedule = [e.clone()].into_iter().collect();
        let mut waiting = Waiting::default();
        let inflight = HashSet::new();
        let started = Instant::now();
        // Meanwhile another message is delivered to lmtp:l …
        let other: QueueId = format!("{:020x}", 9u64 << 8).parse().unwrap();
        take_result(
            &mut schedule,
            &mut waiting,
            &inflight,
            other,
            Attempted {
                env: None,
                reach: Reach {
                    delivered: vec!["lmtp:l".into()],
                    unreached: vec![],
                },
                started: None,
            },
        );
        // … then this attempt's result comes in: lmtp:l could not be reached.
        take_result(
            &mut schedule,
            &mut waiting,
            &inflight,
            id,
            Attempted {
                env: Some(e),
                reach: Reach {
                    delivered: vec![],
                    unreached: vec!["lmtp:l".into()],
                },
                started: Some(started),
            },
        );
        assert!(schedule.get(id).unwrap().next_attempt <= now(), "due now");
    }

    /// Regression (issue 11 §1): before origins were recorded, whatever came from a trusted
    /// network or a local socket was signed with its header From: domain's key, forwarded
    /// spoofs included.
    #[test]
    fn only_what_we_originated_may_be_signed() {
        let c = config("local_senders = { \"www-data\" = [\"@example.org\"] }");
        let from = |a: &str| format!("Received: x\r\nFrom: <{a}>\r\nSubject: s\r\n\r\nbody\r\n");
        let ceo = from("ceo@example.org");
        let sign = |o: Option<Origin>, m: &str| may_sign(&c, o.as_ref(), m.as_bytes());
        assert!(!sign(Some(Origin::Mx), &ceo), "mail from outside");
        assert!(
            !sign(Some(Origin::Forward { by: None }), &ceo),
            "forwarded mail"
        );
        assert!(!sign(None, &ceo), "old queue files");
        assert!(
            !sign(Some(Origin::Trusted), &ceo),
            "trusted networks, by default"
        );
        assert!(sign(
            Some(Origin::Dsn),
            &from("MAILER-DAEMON@mail.example.org")
        ));
        assert!(sign(
            Some(Origin::Submission {
                login: "alice@example.org".into()
            }),
            &from("alice@example.org")
        ));
        let local = |u: &str| {
            Some(Origin::Local {
                uid: 1000,
                user: Some(u.into()),
            })
        };
        assert!(sign(local("root"), &from("root@mail.example.org")));
        assert!(!sign(local("root"), &ceo));
        assert!(!sign(local("mallory"), &ceo));
        assert!(sign(local("www-data"), &ceo), "allow-listed domain");
        assert!(!sign(Some(Origin::Local { uid: 5, user: None }), &ceo));
        // Two From: fields: never.
        let two = format!(
            "From: root@mail.example.org\r\n{}",
            from("root@mail.example.org")
        );
        assert!(!sign(local("root"), &two));
        let vacation = |u: &str| Some(Origin::AutoReply { user: u.into() });
        assert!(sign(
            vacation("alice@example.org"),
            &from("alice@example.org")
        ));
        assert!(!sign(vacation("alice@example.org"), &ceo));
        let c = config("sign_trusted_networks = true");
        assert!(may_sign(&c, Some(&Origin::Trusted), ceo.as_bytes()));
    }

    /// Regression: the SRS domain (by default the hostname, mail.example.org) is aligned
    /// with example.org under relaxed DMARC, so an SRS sender would give a forwarded message
    /// claiming `From: ceo@example.org` an aligned SPF pass at the next hop. Such a message
    /// keeps its own envelope sender (whose SPF is the spoofer's problem).
    #[test]
    fn srs_sender_never_gives_a_forwarded_from_our_alignment() {
        let srs = crate::srs::Srs::new(vec![b"k".to_vec()], "mail.example.org", 21);
        let env = |origin: Origin, sender: &str| {
            let mut e = Envelope::new(Some(sender.into()), vec![Recipient::new("b@x.test")]);
            e.origin = Some(origin);
            e
        };
        let msg = |from: &str| format!("From: {from}\r\nSubject: s\r\n\r\nbody\r\n");
        let day = 20_000;
        let mx = env(Origin::Mx, "someone@spoofer.test");
        // An ordinary forwarded message: SRS.
        let got = srs_sender(&srs, &mx, msg("friend@spoofer.test").as_bytes(), day);
        assert!(got.is_some_and(|s| s.starts_with("SRS0=")));
        // From: a domain aligned with the SRS domain: the sender stays.
        for from in [
            "ceo@example.org",
            "x@mail.example.org",
            "y@shop.example.org",
        ] {
            assert_eq!(
                srs_sender(&srs, &mx, msg(from).as_bytes(), day),
                None,
                "{from}"
            );
        }
        let fwd = env(Origin::Forward { by: None }, "someone@spoofer.test");
        assert_eq!(
            srs_sender(&srs, &fwd, msg("ceo@example.org").as_bytes(), day),
            None
        );
        // Not forwarded: never rewritten.
        let sub = env(Origin::Submission { login: "a".into() }, "a@remote.test");
        assert_eq!(
            srs_sender(&srs, &sub, msg("a@remote.test").as_bytes(), day),
            None
        );
    }
}
