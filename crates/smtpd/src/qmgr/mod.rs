//! The queue manager: delivers what the queue holds. Local recipients go over LMTP (many
//! in one transaction, per-recipient results honoured); a domain with a `transports` entry
//! goes where it says; other domains go out over SMTP ([`crate::outbound`]: the relayhost,
//! or the domain's MX hosts), DKIM-signed at that moment when the From: domain has a key
//! and the message's origin lets us sign it ([`may_sign`]); forwarded mail gets an SRS
//! envelope sender ([`crate::srs`]).
//! 2xx removes a recipient, 4xx retries with backoff, 5xx (or expiry) bounces with an
//! RFC 3464 DSN to the envelope sender (never to `<>`).
//!
//! - this module: the manager's loop, queue control commands, and one attempt's I/O;
//! - [`attempt`]: the attempt's decisions, pure: routing, results, expiry, notifications;
//! - [`lmtp`]: LMTP transactions (pooled connections to the delivery agent);
//! - [`dsn`]: building and queueing the notifications.

mod attempt;
mod dsn;
mod lmtp;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use postern_config::Config;
use postern_queue::{
    Backoff, Committer, Domain, Envelope, Filter, Origin, QueueId, Schedule, Spool,
};
use postern_smtp_client::{Client, Target};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::control::{ErrorKind, OfEnvelope, QueueDetail, QueueEntry};
use crate::dkim::Dkim;
use crate::outbound::{Outbound, Outcome, Route};
use crate::policy::Lookups;

/// How intake and the control socket reach the queue.
#[derive(Clone)]
pub(crate) struct QueueHandle {
    pub(crate) committer: Committer,
    tx: mpsc::UnboundedSender<Envelope>,
    cmds: mpsc::Sender<(QueueCmd, oneshot::Sender<ControlResult>)>,
    /// Messages in the queue (as of the manager's last turn, plus those handed over since).
    length: Arc<AtomicUsize>,
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
    spool: Arc<Spool>,
    committer: Committer,
    /// Back into the manager's own schedule (DSNs it queues).
    requeue: mpsc::UnboundedSender<Envelope>,
    backoff: Backoff,
    lmtp: Target,
    /// Idle LMTP connections to `lmtp`, reused for the next delivery (with the time they
    /// were last used: older ones are closed, the server may have timed them out).
    lmtp_pool: std::sync::Mutex<Vec<(Client, std::time::Instant)>>,
    /// Bounds LMTP transactions in flight (`lmtp_concurrency`).
    lmtp_slots: Semaphore,
    /// SMTP to other domains.
    outbound: Outbound,
    /// DKIM signing of what goes out.
    dkim: Dkim,
}

/// Opens the spool (recovering what a crash left) and starts delivering.
pub(crate) async fn start(
    config: &Config,
    shutdown: CancellationToken,
) -> anyhow::Result<(QueueHandle, JoinHandle<()>)> {
    let dir = config.state_dir().join("queue");
    let max = config.smtpd.max_message_size + 1024 * 1024;
    let (spool, envelopes) = tokio::task::spawn_blocking(move || {
        Spool::open(&dir).map(|(s, e)| (s.with_max_message_size(max), e))
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
    let c = &config.smtpd;
    let lmtp = match c.lmtp.as_deref() {
        Some(t) if t.starts_with("unix:") => Target::Unix(PathBuf::from(&t[5..])),
        Some(t) => Target::Tcp(t.to_owned()),
        None => Target::Unix(config.socket_path(&config.lmtp.socket)),
    };
    let m = Arc::new(Manager {
        config: config.clone(),
        spool,
        committer: committer.clone(),
        requeue: tx.clone(),
        lmtp_pool: std::sync::Mutex::new(Vec::new()),
        lmtp_slots: Semaphore::new(config.smtpd.lmtp_concurrency.get()),
        backoff: Backoff {
            min: c.min_backoff_secs.duration(),
            max: c.max_backoff_secs.max(c.min_backoff_secs).duration(),
            lifetime: c.max_queue_lifetime_secs.duration(),
            delay_warning: c.delay_warning_secs.duration(),
        },
        lmtp,
        outbound: Outbound::new(config).context("setting up outbound delivery (DNS)")?,
        dkim: Dkim::new(config),
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
    let mut tasks: JoinSet<(QueueId, Option<Envelope>)> = JoinSet::new();
    let mut last_expiry = std::time::Instant::now();
    loop {
        // Take in everything intake handed over since the last turn.
        while let Ok(env) = rx.try_recv() {
            schedule.insert(env);
        }
        length.store(schedule.len(), Ordering::Relaxed);
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            m.outbound.expire_idle();
            last_expiry = std::time::Instant::now();
        }
        // Start what is due, as far as the slots go.
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
                if let Ok((id, result)) = done {
                    inflight.remove(&id);
                    match result {
                        Some(env) => { schedule.update(env); }
                        None => { schedule.remove(id); }
                    }
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
    // Let deliveries in flight finish (their results are saved in the spool).
    while tasks.join_next().await.is_some() {}
}

impl Manager {
    /// A queue control command. Messages with an attempt in flight are not held, released
    /// or deleted (`busy`): the attempt's result would overwrite the change.
    async fn control(
        &self,
        schedule: &mut Schedule,
        inflight: &HashSet<QueueId>,
        cmd: QueueCmd,
    ) -> ControlResult {
        let not_found =
            |id: QueueId| (ErrorKind::NotFound, format!("no message {id} in the queue"));
        let busy = |id: QueueId| {
            (
                ErrorKind::Busy,
                format!("message {id} is being delivered right now; try again in a moment"),
            )
        };
        let failed = |id: QueueId, e: String| (ErrorKind::TempFail, format!("{id}: {e}"));
        match cmd {
            QueueCmd::List(filter) => Ok(QueueAnswer::List(
                schedule
                    .list(&filter)
                    .into_iter()
                    .map(|e| QueueEntry::of(e, inflight.contains(&e.id)))
                    .collect(),
            )),
            QueueCmd::Show(id) => {
                let env = schedule.get(id).ok_or_else(|| not_found(id))?;
                Ok(QueueAnswer::Show(Box::new(QueueDetail::of(
                    env,
                    inflight.contains(&id),
                ))))
            }
            QueueCmd::Flush(one) => {
                let t = now();
                let ids: Vec<QueueId> = match one {
                    Some(id) => {
                        let env = schedule.get(id).ok_or_else(|| not_found(id))?;
                        if env.held {
                            return Err((
                                ErrorKind::Usage,
                                format!("message {id} is held; release it first"),
                            ));
                        }
                        vec![id]
                    }
                    None => schedule
                        .iter()
                        .filter(|e| !e.held && e.next_attempt > t)
                        .map(|e| e.id)
                        .collect(),
                };
                let mut n = 0;
                for id in ids {
                    if let Some(env) = schedule.get(id)
                        && env.next_attempt > t
                    {
                        let mut env = env.clone();
                        env.next_attempt = t;
                        schedule.update(env);
                        n += 1;
                    }
                }
                info!(messages = n, "queue flushed");
                Ok(QueueAnswer::Done {
                    text: match one {
                        Some(id) => format!("message {id} scheduled for delivery now"),
                        None => format!("{n} message(s) scheduled for delivery now"),
                    },
                    id: one,
                    count: n,
                })
            }
            QueueCmd::Hold(id) | QueueCmd::Release(id) => {
                let hold = matches!(cmd, QueueCmd::Hold(_));
                let Some(env) = schedule.get(id) else {
                    return Err(not_found(id));
                };
                if inflight.contains(&id) {
                    return Err(busy(id));
                }
                let mut env = env.clone();
                let spool = self.spool.clone();
                let r = tokio::task::spawn_blocking(move || {
                    if hold {
                        spool.hold(id)
                    } else {
                        spool.release(id)
                    }
                })
                .await;
                match r {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) if e.is_not_found() => {
                        schedule.remove(id);
                        return Err(not_found(id));
                    }
                    Ok(Err(e)) => return Err(failed(id, e.to_string())),
                    Err(e) => return Err(failed(id, e.to_string())),
                }
                env.held = hold;
                if !hold {
                    // Released: try it now.
                    env.next_attempt = env.next_attempt.min(now());
                }
                schedule.update(env);
                let what = if hold { "held" } else { "released" };
                info!(%id, "{what} by the administrator");
                Ok(QueueAnswer::Done {
                    text: format!("message {id} {what}"),
                    id: Some(id),
                    count: 1,
                })
            }
            QueueCmd::Delete(id) => {
                if schedule.get(id).is_none() {
                    return Err(not_found(id));
                }
                if inflight.contains(&id) {
                    return Err(busy(id));
                }
                self.delete(schedule, vec![id]).await?;
                info!(%id, "deleted by the administrator");
                Ok(QueueAnswer::Done {
                    text: format!("message {id} deleted"),
                    id: Some(id),
                    count: 1,
                })
            }
            QueueCmd::DeleteFrom(sender) => {
                let s = sender.trim();
                let s = if s == "<>" { "" } else { s };
                let s = s
                    .strip_prefix('<')
                    .and_then(|x| x.strip_suffix('>'))
                    .unwrap_or(s);
                // A bare name means name@hostname, as for local submission.
                let full;
                let s = if !s.is_empty() && !s.contains('@') {
                    full = format!("{s}@{}", self.config.hostname);
                    full.as_str()
                } else {
                    s
                };
                let (mut ids, mut skipped) = (Vec::new(), 0);
                for e in schedule.iter() {
                    if e.sender_str().eq_ignore_ascii_case(s) {
                        if inflight.contains(&e.id) {
                            skipped += 1;
                        } else {
                            ids.push(e.id);
                        }
                    }
                }
                let n = ids.len();
                if n > 0 {
                    self.delete(schedule, ids).await?;
                }
                let shown = if s.is_empty() { "<>" } else { s };
                info!(sender = shown, messages = n, "deleted by the administrator");
                let mut text = format!("{n} message(s) from {shown} deleted");
                if skipped > 0 {
                    text.push_str(&format!(
                        "; {skipped} being delivered right now were left (try again in a moment)"
                    ));
                }
                Ok(QueueAnswer::Done {
                    text,
                    id: None,
                    count: n,
                })
            }
        }
    }

    /// Removes messages from the schedule and the spool (no bounce); on a spool error they
    /// go back into the schedule (what was removed already is found missing at its attempt).
    async fn delete(
        &self,
        schedule: &mut Schedule,
        ids: Vec<QueueId>,
    ) -> Result<(), (ErrorKind, String)> {
        let removed: Vec<Envelope> = ids.iter().filter_map(|&id| schedule.remove(id)).collect();
        let spool = self.spool.clone();
        let r = tokio::task::spawn_blocking(move || spool.remove_all(&ids)).await;
        let why = match r {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        warn!(error = %why, "deleting from the queue failed");
        for env in removed {
            schedule.insert(env);
        }
        Err((ErrorKind::TempFail, format!("deleting failed: {why}")))
    }

    /// One delivery attempt; returns the envelope still queued, or None once it is done.
    /// Everything logged on its behalf (LMTP, outbound, DSNs) is in the span
    /// `delivery{id=QUEUE-ID}`.
    async fn attempt(&self, env: Envelope) -> Option<Envelope> {
        let span = tracing::info_span!("delivery", id = %env.id);
        self.attempt_in_span(env).instrument(span).await
    }

    async fn attempt_in_span(&self, mut env: Envelope) -> Option<Envelope> {
        let id = env.id;
        let spool = self.spool.clone();
        let message = match tokio::task::spawn_blocking(move || spool.read_message(id)).await {
            Ok(Ok(m)) => m,
            Ok(Err(e)) if e.is_not_found() => return None,
            other => {
                let why = match other {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                warn!(error = %why, "queued message unreadable; will retry");
                env.next_attempt = now() + 60;
                return Some(env);
            }
        };
        let has_transport =
            |domain: &Domain| self.config.smtpd.transports.keys().any(|k| domain.is(k));
        // authd is asked only about recipients whose destination was not recorded at RCPT.
        let mut answers = HashMap::new();
        let ask = attempt::domains_to_ask(&env, has_transport);
        if !ask.is_empty() {
            let mut lookups =
                Lookups::new(self.config.socket_path(&self.config.authd.socketmap_socket));
            for domain in ask {
                let local = lookups.is_local_domain(domain.as_str()).await;
                answers.insert(domain, local);
            }
        }
        let plan = attempt::plan(&env, has_transport, &answers);
        let mut progress = attempt::Progress::default();
        for (i, why) in plan.unrouted {
            attempt::apply(&mut env, &mut progress, i, Outcome::Deferred(why));
        }
        if !plan.local.is_empty() {
            let _slot = self.lmtp_slots.acquire().await;
            for (i, o) in self.lmtp(&env, &message, &plan.local, &self.lmtp).await {
                attempt::apply(&mut env, &mut progress, i, o);
            }
        }
        let mut signed: Option<Vec<u8>> = None;
        let srs_sender = if plan.remote.is_empty() {
            None
        } else {
            srs_sender(&env, &message)
        };
        for (domain, idx) in &plan.remote {
            let domain = domain.as_str();
            match Route::for_domain(&self.config, domain) {
                Route::Lmtp(target) => {
                    for (i, o) in self.lmtp(&env, &message, idx, &target).await {
                        attempt::apply(&mut env, &mut progress, i, o);
                    }
                }
                route => {
                    let signed = signed.get_or_insert_with(|| self.signed(&env, &message));
                    let mut out = attempt::outgoing(&env, idx, signed);
                    if let Some(s) = &srs_sender {
                        out.from = Some(s.clone());
                    }
                    let outcomes = self.outbound.deliver(&route, domain, &out).await;
                    for (&i, o) in idx.iter().zip(outcomes) {
                        attempt::apply(&mut env, &mut progress, i, o);
                    }
                }
            }
        }
        let t = now();
        let (due, done) = attempt::finish(&mut env, progress, &self.backoff, t);
        for notice in attempt::notices(&env, &due, t, self.backoff.lifetime) {
            self.send_notice(&env, &message, notice).await;
        }
        let spool = self.spool.clone();
        if done {
            info!(attempts = env.attempts, "removed (every recipient done)");
            let id = env.id;
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.remove(id)).await {
                warn!(error = %e, "removing a finished message failed");
            }
            return None;
        }
        let saved = env.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || spool.save_state(&saved)).await {
            warn!(error = %e, "saving delivery state failed");
        }
        info!(
            next_attempt = env.next_attempt,
            reason = env.last_error.as_deref().unwrap_or("-"),
            "deferred"
        );
        Some(env)
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
fn srs_sender(env: &Envelope, message: &[u8]) -> Option<String> {
    let srs = crate::srs::installed()?;
    srs_sender_with(srs, env, message, crate::srs::today())
}

fn srs_sender_with(
    srs: &crate::srs::Srs,
    env: &Envelope,
    message: &[u8],
    day: u64,
) -> Option<String> {
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
        let got = srs_sender_with(&srs, &mx, msg("friend@spoofer.test").as_bytes(), day);
        assert!(got.is_some_and(|s| s.starts_with("SRS0=")));
        // From: a domain aligned with the SRS domain: the sender stays.
        for from in [
            "ceo@example.org",
            "x@mail.example.org",
            "y@shop.example.org",
        ] {
            assert_eq!(
                srs_sender_with(&srs, &mx, msg(from).as_bytes(), day),
                None,
                "{from}"
            );
        }
        let fwd = env(Origin::Forward { by: None }, "someone@spoofer.test");
        assert_eq!(
            srs_sender_with(&srs, &fwd, msg("ceo@example.org").as_bytes(), day),
            None
        );
        // Not forwarded: never rewritten.
        let sub = env(Origin::Submission { login: "a".into() }, "a@remote.test");
        assert_eq!(
            srs_sender_with(&srs, &sub, msg("a@remote.test").as_bytes(), day),
            None
        );
    }
}
