//! End of DATA/BDAT: the `Received` header, recipients expanded to their final addresses,
//! the message committed to the durable queue — and only then the `250`.
//!
//! Messages are not held whole in memory: [`Incoming`] keeps the first [`HEAD_MAX`] bytes
//! and, beyond that, keeps only the header section and spools the rest into a queue
//! [`BodyFile`] as it arrives. Header rewriting works on that bounded header section; the
//! port-25 DKIM/DMARC checks, which need the whole message, read a spooled one back under a
//! global memory budget ([`VerifyBudget`]).

use std::collections::HashMap;
use std::net::SocketAddr;

use postern_queue::{BodyFile, Envelope, Notify, QueueError, Recipient, Ret};
use postern_smtp_session::{BodyType, Reply, Transaction};
use tracing::{info, warn};

use crate::Ctx;
use crate::access::Decision;
use crate::policy::Target;

/// Received headers beyond which a message is taken to be looping.
const MAX_HOPS: usize = 50;

/// Commits `tx`; returns the reply for the client. `tx.message` is the message, or (when
/// `body` holds the rest) its header section.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn accept(
    ctx: &Ctx,
    tx: &Transaction,
    body: Option<BodyFile>,
    targets: &HashMap<String, Vec<Target>>,
    peer: SocketAddr,
    tls: Option<&str>,
    access: &Decision,
    added: &str,
) -> Reply {
    if *access == Decision::Discard {
        info!(
            from = tx.mail_from.as_ref().map_or("<>", |a| a.as_str()),
            "discarded by an access rule"
        );
        return Reply::new(250, (2, 0, 0), "Ok");
    }
    if hops(&tx.message) > MAX_HOPS {
        warn!("too many Received headers: mail loop");
        return Reply::new(554, (5, 4, 6), "Too many hops: mail loop detected");
    }
    let mut recipients: Vec<Recipient> = Vec::new();
    for (addr, params) in &tx.recipients {
        let finals = targets
            .get(addr.as_str())
            .cloned()
            .unwrap_or_else(|| vec![Target::undecided(addr.as_str())]);
        for Target {
            address: target,
            destination,
        } in finals
        {
            if recipients
                .iter()
                .any(|r| r.address.eq_ignore_ascii_case(&target))
            {
                continue;
            }
            let mut r = Recipient::new(target.clone());
            r.destination = destination;
            r.orcpt = match &params.orcpt {
                Some(o) => Some(format!("{};{}", o.addr_type, o.value)),
                None if !target.eq_ignore_ascii_case(addr.as_str()) => {
                    Some(format!("rfc822;{}", addr.as_str()))
                }
                None => None,
            };
            if let Some(n) = &params.notify {
                r.notify = Notify {
                    success: n.success,
                    failure: n.failure,
                    delay: n.delay,
                };
            }
            recipients.push(r);
        }
    }
    let mut env = Envelope::new(
        tx.mail_from.as_ref().map(|a| a.as_str().to_owned()),
        recipients,
    );
    env.authenticated = tx.authenticated.clone();
    env.origin = Some(crate::policy::smtp_origin(
        &ctx.config,
        tx.authenticated.as_deref(),
        peer.ip(),
    ));
    env.client_ip = Some(peer.ip().to_string());
    env.helo = Some(tx.helo.clone());
    env.ret = tx.mail_params.ret.map(|r| match r {
        postern_smtp_session::Ret::Full => Ret::Full,
        postern_smtp_session::Ret::Hdrs => Ret::Headers,
    });
    env.envid = tx.mail_params.envid.clone();
    env.smtputf8 = tx.smtputf8;
    env.body_8bit = !matches!(tx.body_type, BodyType::SevenBit);
    env.held = *access == Decision::Hold;
    let single = (tx.recipients.len() == 1).then(|| tx.recipients[0].0.as_str().to_owned());
    // Named now so that our Received: field carries the queue id (lmtp-deliver logs it).
    env.id = ctx.queue.committer.reserve_id();
    let mut message = received(ctx, tx, peer, tls, single.as_deref(), &env.id).into_bytes();
    message.extend_from_slice(added.as_bytes());
    // Results claiming to be ours, and our own markers, come only from us.
    match crate::checks::spf_dkim_dmarc::strip_forged(&tx.message, &ctx.config.hostname) {
        Some(clean) => {
            info!("removed a forged Authentication-Results or X-Postern- header");
            message.extend_from_slice(&clean);
        }
        None => message.extend_from_slice(&tx.message),
    }
    // A message wholly in memory is handed to the queue manager too, for its first attempt.
    let copy = (body.is_none() && crate::qmgr::QueueHandle::keeps_fresh(message.len()))
        .then(|| message.clone());
    match ctx.queue.committer.commit_spooled(env, message, body).await {
        Ok(env) => {
            info!(id = %env.id, from = env.sender_str(), rcpts = env.recipients.len(), size = env.size,
                user = env.authenticated.as_deref().unwrap_or("-"), "queued");
            let id = env.id;
            crate::metrics::received(env.size);
            match copy {
                Some(m) => ctx.queue.enqueue_with(env, m),
                None => ctx.queue.enqueue(env),
            }
            Reply::new(250, (2, 0, 0), format!("Ok: queued as {id}"))
        }
        Err(QueueError::TooLarge { .. }) => {
            Reply::new(552, (5, 3, 4), "Message too big for system")
        }
        Err(e) => {
            warn!(error = %e, "queue commit failed");
            Reply::new(451, (4, 3, 0), "Local error in processing, try again later")
        }
    }
}

/// Counts `Received:` fields in the header.
fn hops(message: &[u8]) -> usize {
    let mut n = 0;
    for line in message.split(|&b| b == b'\n') {
        if line.is_empty() || line == b"\r" {
            break;
        }
        if line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:") {
            n += 1;
        }
    }
    n
}

fn clean(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(255).collect()
}

/// Our trace field (RFC 5321 §4.4), with the TLS details; the login only when configured.
fn received(
    ctx: &Ctx,
    tx: &Transaction,
    peer: SocketAddr,
    tls: Option<&str>,
    rcpt: Option<&str>,
    id: &postern_queue::QueueId,
) -> String {
    let mut r = format!(
        "Received: from {} ([{}])\r\n\tby {} (Postern) with {} id {}",
        clean(&tx.helo),
        peer.ip(),
        ctx.config.hostname,
        tx.protocol(),
        id
    );
    if let Some(t) = tls {
        r.push_str(&format!("\r\n\t(using {})", clean(t)));
    }
    if ctx.config.smtpd.received_show_auth
        && let Some(user) = &tx.authenticated
    {
        r.push_str(&format!("\r\n\t(authenticated as {})", clean(user)));
    }
    if let Some(rcpt) = rcpt {
        r.push_str(&format!("\r\n\tfor <{}>", clean(rcpt)));
    }
    r.push_str(&format!(
        ";\r\n\t{}\r\n",
        mail_builder::headers::date::Date::now().to_rfc822()
    ));
    r
}

/// Messages up to this size stay in memory; beyond it only the header section does (it
/// must end within this many bytes) and the rest is spooled to disk as it arrives.
pub(crate) const HEAD_MAX: usize = 256 * 1024;

/// The message of the current transaction, as it arrives.
#[derive(Default)]
pub(crate) struct Incoming {
    /// The message so far; once spooled, its header section only.
    head: Vec<u8>,
    spooled: Option<(BodyFile, tokio::fs::File)>,
    /// Spooled bytes not yet handed to the file: written [`SPOOL_CHUNK`] at a time, since
    /// every `tokio::fs` write is a trip to the blocking pool and back (the socket gives
    /// at most 32 KiB a read: a 1 MiB message cost smtpd ~110 context switches).
    pending: Vec<u8>,
    /// The header section did not end within [`HEAD_MAX`] bytes.
    header_too_big: bool,
    /// Writing the spool failed.
    failed: bool,
    /// The queue's file system filled up while spooling.
    disk_full: bool,
    /// Bytes spooled so far, and when the free disk space is looked at next.
    spooled_bytes: u64,
    next_disk_check: u64,
}

/// While spooling, the free space of the queue's file system is checked every this many
/// bytes; below [`MIN_FREE_WHILE_SPOOLING`] the message is refused (`452 4.3.1`).
const DISK_CHECK_EVERY: u64 = 8 << 20;
/// How much of a spooled body is gathered before one write to the spool file.
const SPOOL_CHUNK: usize = 256 << 10;
const MIN_FREE_WHILE_SPOOLING: u64 = 64 << 20;

/// A received message: `head` (the whole message, or its header section when `body` holds
/// the rest).
pub(crate) struct Received {
    pub(crate) head: Vec<u8>,
    pub(crate) body: Option<BodyFile>,
}

impl Incoming {
    /// Adds bytes of the message; past [`HEAD_MAX`], the body goes to the spool.
    pub(crate) async fn push(&mut self, ctx: &Ctx, bytes: &[u8]) {
        if bytes.is_empty() || self.header_too_big || self.failed {
            return;
        }
        if let Some((body, file)) = &mut self.spooled {
            self.spooled_bytes += bytes.len() as u64;
            if self.spooled_bytes >= self.next_disk_check {
                self.next_disk_check = self.spooled_bytes + DISK_CHECK_EVERY;
                let dir = body.path().parent().unwrap_or(body.path());
                if crate::limits::check_disk(dir, MIN_FREE_WHILE_SPOOLING).is_some() {
                    warn!("queue file system nearly full: message refused");
                    self.disk_full = true;
                    self.fail();
                    return;
                }
            }
            self.pending.extend_from_slice(bytes);
            if self.pending.len() >= SPOOL_CHUNK {
                let written = tokio::io::AsyncWriteExt::write_all(file, &self.pending).await;
                self.pending.clear();
                if let Err(e) = written {
                    warn!(error = %e, "spooling a message body failed");
                    self.fail();
                }
            }
            return;
        }
        self.head.extend_from_slice(bytes);
        if self.head.len() <= HEAD_MAX {
            return;
        }
        let Some(end) = header_len(&self.head).filter(|e| *e <= HEAD_MAX) else {
            self.header_too_big = true;
            self.head = Vec::new();
            return;
        };
        let spool = ctx.queue.committer.spool();
        let file = spool.body_file().and_then(|b| {
            b.file()
                .try_clone()
                .map(|f| (b, tokio::fs::File::from_std(f)))
                .map_err(|e| QueueError::Io {
                    op: "dup",
                    path: spool.dir().to_path_buf(),
                    source: e,
                })
        });
        match file {
            Ok(f) => {
                let rest = self.head.split_off(end);
                self.head.shrink_to_fit();
                self.spooled = Some(f);
                Box::pin(self.push(ctx, &rest)).await;
            }
            Err(e) => {
                warn!(error = %e, "cannot spool a message body");
                self.fail();
            }
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.head = Vec::new();
        self.pending = Vec::new();
        self.spooled = None;
    }

    /// The end of the message (`tail`: what the session still held): the message, or the
    /// reply refusing it.
    pub(crate) async fn finish(mut self, ctx: &Ctx, tail: &[u8]) -> Result<Received, Reply> {
        self.push(ctx, tail).await;
        if self.header_too_big {
            return Err(Reply::new(
                552,
                (5, 3, 4),
                format!("Message header section too large (more than {HEAD_MAX} bytes)"),
            ));
        }
        if !self.failed
            && let Some((_, file)) = &mut self.spooled
        {
            let pending = std::mem::take(&mut self.pending);
            let written = async {
                tokio::io::AsyncWriteExt::write_all(file, &pending).await?;
                tokio::io::AsyncWriteExt::flush(file).await
            };
            if let Err(e) = written.await {
                warn!(error = %e, "spooling a message body failed");
                self.fail();
            }
        }
        if self.disk_full {
            return Err(Reply::new(
                452,
                (4, 3, 1),
                "Insufficient system storage, try again later",
            ));
        }
        if self.failed {
            return Err(Reply::new(
                451,
                (4, 3, 0),
                "Local error in processing, try again later",
            ));
        }
        Ok(Received {
            head: self.head,
            body: self.spooled.map(|(b, _)| b),
        })
    }
}

/// The length of the header section: up to the empty line that ends it (CRLF or bare LF);
/// `None` while it has not ended.
fn header_len(m: &[u8]) -> Option<usize> {
    if m.starts_with(b"\r\n") || m.starts_with(b"\n") {
        return Some(0);
    }
    let mut i = 0;
    while let Some(p) = m[i..].iter().position(|&b| b == b'\n') {
        let next = i + p + 1;
        match m.get(next..) {
            Some([b'\n', ..] | [b'\r', b'\n', ..]) => return Some(next),
            _ => i = next,
        }
    }
    None
}

/// How many bytes of spooled messages the port-25 checks may read back into memory at once.
pub(crate) struct VerifyBudget {
    kib: tokio::sync::Semaphore,
    max_kib: u32,
    wait: std::time::Duration,
}

/// How long a message waits for the budget before the client is told to try again.
const VERIFY_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl VerifyBudget {
    /// At least 64 MiB, and at least one message of `max_message_size`.
    pub(crate) fn new(max_message_size: u64) -> Self {
        let bytes = max_message_size.saturating_add(1 << 20).max(64 << 20);
        let max_kib = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX >> 4);
        Self {
            kib: tokio::sync::Semaphore::new(max_kib as usize),
            max_kib,
            wait: VERIFY_WAIT,
        }
    }

    /// The whole message for the checks: `head` as it is when nothing was spooled, else
    /// read back from the spool once the budget allows (a `451` after [`VERIFY_WAIT`]).
    pub(crate) async fn whole<'a>(
        &'a self,
        head: &'a [u8],
        body: Option<&BodyFile>,
    ) -> Result<Whole<'a>, Reply> {
        let Some(body) = body else {
            return Ok(Whole {
                bytes: std::borrow::Cow::Borrowed(head),
                _permit: None,
            });
        };
        let busy = || {
            Reply::new(
                451,
                (4, 3, 0),
                "Too busy to check this message now, try again later",
            )
        };
        let len = body.len().map_err(|e| {
            warn!(error = %e, "spooled body unreadable");
            busy()
        })?;
        let total = len.saturating_add(head.len() as u64);
        let kib = u32::try_from(total.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.max_kib);
        let Ok(Ok(permit)) = tokio::time::timeout(self.wait, self.kib.acquire_many(kib)).await
        else {
            warn!(
                size = total,
                "no memory budget to check a large message in time"
            );
            return Err(busy());
        };
        let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        bytes.extend_from_slice(head);
        let read = async {
            let f = tokio::fs::File::open(body.path()).await?;
            tokio::io::AsyncReadExt::read_to_end(
                &mut tokio::io::AsyncReadExt::take(f, len),
                &mut bytes,
            )
            .await
        };
        if let Err(e) = read.await {
            warn!(error = %e, "spooled body unreadable");
            return Err(busy());
        }
        Ok(Whole {
            bytes: std::borrow::Cow::Owned(bytes),
            _permit: Some(permit),
        })
    }
}

/// A whole message read for the checks, holding its share of the [`VerifyBudget`].
pub(crate) struct Whole<'a> {
    pub(crate) bytes: std::borrow::Cow<'a, [u8]>,
    _permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

#[cfg(test)]
mod tests {
    use super::hops;

    #[test]
    fn counts_received_fields_in_the_header_only() {
        assert_eq!(
            hops(b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: body\r\n"),
            2
        );
        assert_eq!(hops(b""), 0);
    }

    /// A spooled message is read back whole for the checks while the budget allows; when it
    /// stays exhausted the client gets a 451 (try again), never an unchecked pass.
    #[tokio::test]
    async fn verification_reads_back_under_a_budget() {
        use super::VerifyBudget;
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = postern_queue::Spool::open(dir.path()).unwrap();
        let body = spool.body_file().unwrap();
        body.file().write_all(&vec![b'b'; 3 << 20]).unwrap();
        let mut budget = VerifyBudget::new(0);
        budget.wait = std::time::Duration::from_millis(200);
        assert_eq!(budget.max_kib, 64 * 1024);
        let head = b"Subject: x\r\n".to_vec();
        let w = budget.whole(&head, Some(&body)).await.unwrap();
        assert_eq!(w.bytes.len(), head.len() + (3 << 20));
        assert!(w.bytes.starts_with(&head) && w.bytes.ends_with(b"bbb"));
        assert_eq!(budget.kib.available_permits(), 64 * 1024 - 3 * 1024 - 1);
        drop(w);
        // Small messages (nothing spooled) need no budget at all.
        let all = budget.kib.acquire_many(64 * 1024).await.unwrap();
        let w = budget.whole(&head, None).await.unwrap();
        assert_eq!(&*w.bytes, &head[..]);
        let busy = budget.whole(&head, Some(&body)).await.err().unwrap();
        assert_eq!(busy.code(), 451);
        drop(all);
        assert!(budget.whole(&head, Some(&body)).await.is_ok());
    }

    #[test]
    fn header_section_length() {
        use super::header_len;
        assert_eq!(header_len(b"A: b\r\nC: d\r\n\r\nbody"), Some(12));
        assert_eq!(header_len(b"\r\nbody"), Some(0));
        assert_eq!(header_len(b"A: b\nC: d\n\nbody"), Some(10));
        assert_eq!(header_len(b"A: b\r\nC: d\r\n"), None);
        assert_eq!(header_len(b"A: b\r\n\tcont\r\n\r"), None);
    }
}
