//! One SMTP connection: the shared session state machine decides; this driver runs
//! STARTTLS, SASL through authd, the sender/recipient checks and the queue commit.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use postern_auth_proto::client::{AuthClient, AuthOutcome, AuthStep};
use postern_auth_proto::dovecot::AuthParams;
use postern_smtp_session::{
    Action, Completion, Extensions, PeerInfo, Reply, Session, SessionConfig, Verdict,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use crate::Ctx;
use crate::access::{Decision, Facts, decide};
use crate::checks::helo::{self, Fcrdns};
use crate::checks::spf_dkim_dmarc::{self as sdd, Spf};
use crate::policy::{Door, Lookups};
use postern_config::CheckMode;
use postern_daemon::Stream;

/// The session settings for one door; `trusted` peers may AUTH before TLS.
pub(crate) fn session_config(ctx: &Ctx, door: Door, trusted: bool) -> SessionConfig {
    let c = &ctx.config.smtpd;
    let mut s = SessionConfig::new(
        ctx.config.hostname.clone(),
        postern_smtp_session::Flavor::Smtp,
    );
    s.max_message_size = c.max_message_size;
    s.max_recipients = c.max_recipients;
    s.max_errors = c.max_errors;
    // Trusted networks are exempt, as Postfix's smtpd_forbid_bare_newline_exclusions.
    s.reject_bare_newline = c.reject_bare_newline && !trusted;
    s.extensions = Extensions {
        starttls: ctx.tls.is_some() && door != Door::Submissions,
        auth: vec!["PLAIN".into(), "LOGIN".into()],
        auth_requires_tls: !trusted,
        dsn: true,
        chunking: true,
        ..Extensions::default()
    };
    s.greeting_text = "Postern".into();
    s
}

/// Bytes read from the client at once (also the most a session holds of a message body
/// before it goes to the spool).
const READ_BUFFER: usize = 32 * 1024;

/// The read buffer of a session that is not streaming a message: commands are short, and
/// hundreds of idle connections should not cost [`READ_BUFFER`] each.
const SMALL_READ_BUFFER: usize = 4 * 1024;

/// Serves one connection to its end. Everything logged on its behalf is in the span
/// `smtp{client=ADDRESS:PORT}`; the line of an accepted message has its queue `id`.
pub(crate) async fn serve(
    stream: Stream,
    peer: SocketAddr,
    local: SocketAddr,
    door: Door,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) {
    let span = tracing::info_span!("smtp", client = %peer);
    session(stream, peer, local, door, ctx, shutdown)
        .instrument(span)
        .await
}

async fn session(
    mut stream: Stream,
    peer: SocketAddr,
    local: SocketAddr,
    door: Door,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) {
    let trusted = ctx
        .config
        .smtpd
        .trusted_networks
        .iter()
        .any(|n| n.contains(&peer.ip()));
    let inbound = door == Door::Mx && !trusted;
    if inbound && !at_connect(&mut stream, peer, &ctx).await {
        return;
    }
    let tls_now = matches!(stream, Stream::Tls(_));
    let cfg = Arc::new(session_config(&ctx, door, trusted));
    let mut session = Session::new(
        cfg,
        PeerInfo {
            ip: Some(peer.ip()),
            tls: tls_now,
            authenticated: None,
        },
    );
    let mut d = Driver {
        ctx: ctx.clone(),
        door,
        peer,
        local,
        trusted,
        stream: Some(stream),
        lookups: ctx.directory.lookups(),
        auth: None,
        targets: HashMap::new(),
        access: Decision::Pass,
        sender: None,
        inbound,
        spf: None,
        tags: Vec::new(),
        incoming: crate::intake::Incoming::default(),
        budget: Default::default(),
    };
    let greeting = session.greeting();
    if d.write(&greeting.to_bytes()).await.is_err() {
        return;
    }
    d.run(&mut session, shutdown).await;
}

struct Driver {
    ctx: Arc<Ctx>,
    door: Door,
    peer: SocketAddr,
    local: SocketAddr,
    trusted: bool,
    stream: Option<Stream>,
    lookups: Lookups,
    auth: Option<AuthClient>,
    /// Accepted recipients of the current transaction → their final addresses.
    targets: HashMap<String, Vec<crate::policy::Target>>,
    /// What the access rules said about the current transaction (DISCARD / HOLD).
    access: Decision,
    /// The current transaction's sender, for the access rules at RCPT.
    sender: Option<String>,
    /// Port 25 from outside the trusted networks: the inbound checks apply (unless the
    /// session authenticates).
    inbound: bool,
    /// SPF's verdict on the current transaction.
    spf: Option<Spf>,
    /// Findings of checks in `tag` mode, for the current transaction's header.
    tags: Vec<String>,
    /// The current transaction's message as it arrives (bounded in memory, then spooled).
    incoming: crate::intake::Incoming,
    /// The current transaction's DNS time budget for the checks.
    budget: crate::checks::Budget,
}

/// Port 25, before the greeting: the connection rate, and early talkers (a client that
/// sends before `greet_pause_ms` has passed). False: the connection is done.
async fn at_connect(stream: &mut Stream, peer: SocketAddr, ctx: &Ctx) -> bool {
    let c = &ctx.checks;
    if !c.rate_ok(peer.ip()) {
        c.refused("rate_limit", "too many connections per minute");
        drop(
            stream
                .write_all(
                    format!(
                        "421 4.7.0 {} Too many connections from [{}] per minute, try again later\r\n",
                        ctx.config.hostname,
                        peer.ip()
                    )
                    .as_bytes(),
                )
                .await,
        );
        drop(stream.shutdown().await);
        return false;
    }
    if !c.cfg.greet_pause_ms.is_zero() {
        let mut one = [0u8; 1];
        let pause = c.cfg.greet_pause_ms.duration();
        match tokio::time::timeout(pause, stream.read(&mut one)).await {
            Err(_) => {}
            Ok(Ok(0) | Err(_)) => return false,
            Ok(Ok(_)) => {
                c.refused("early_talker", "sent data before the greeting");
                drop(
                    stream
                        .write_all(
                            format!(
                                "554 5.5.0 {} Protocol error: you talked before my greeting\r\n",
                                ctx.config.hostname
                            )
                            .as_bytes(),
                        )
                        .await,
                );
                drop(stream.shutdown().await);
                return false;
            }
        }
    }
    true
}

impl Driver {
    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.stream.as_mut() {
            Some(s) => s.write_all(bytes).await,
            None => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn run(&mut self, session: &mut Session, shutdown: CancellationToken) {
        let c = &self.ctx.config.smtpd;
        let idle = c.idle_timeout_secs.duration();
        let deadline = Instant::now() + c.session_timeout_secs.duration();
        let mut work: VecDeque<Action> = VecDeque::new();
        let mut buf = vec![0u8; SMALL_READ_BUFFER];
        loop {
            let mut out = Vec::new();
            self.spool_body(session).await;
            while let Some(action) = work.pop_front() {
                // Message bytes the last input or completion produced go to the spool first.
                self.spool_body(session).await;
                match action {
                    Action::Reply(r) => r.write_to(&mut out),
                    Action::Close => {
                        drop(self.write(&out).await);
                        if let Some(s) = self.stream.as_mut() {
                            drop(s.shutdown().await);
                        }
                        return;
                    }
                    Action::StartTls => {
                        // The 220 came before this action; send it, then upgrade.
                        if self.write(&std::mem::take(&mut out)).await.is_err()
                            || !self.start_tls().await
                        {
                            return;
                        }
                        if session.tls_started().is_err() {
                            return;
                        }
                    }
                    Action::CheckSender { address, .. } => {
                        self.targets.clear();
                        self.access = Decision::Pass;
                        self.sender = address.as_ref().map(|a| a.as_str().to_owned());
                        self.spf = None;
                        self.tags.clear();
                        self.incoming = crate::intake::Incoming::default();
                        self.budget = self.ctx.checks.budget();
                        let v = match self.access_rule(session, None) {
                            Some(reject) => reject,
                            None => match self.inbound_mail(session, address.as_ref()).await {
                                Some(reject) => reject,
                                None => self.check_sender(session, address.as_ref()).await,
                            },
                        };
                        work.extend(completed(session, Completion::Sender(v)));
                    }
                    Action::CheckRecipient { address, .. } => {
                        let relay = session.authenticated().is_some() || self.trusted;
                        let delim = self.ctx.config.lmtp.recipient_delimiter.clone();
                        let per_user = self.ctx.config.smtpd.max_recipients_per_message_per_user;
                        let v = if let Some(reject) =
                            self.access_rule(session, Some(address.as_str()))
                        {
                            reject
                        } else if let Some(reply) = session.authenticated().and_then(|_| {
                            crate::limits::check_recipients(self.targets.len(), per_user)
                        }) {
                            info!(
                                user = session.authenticated().unwrap_or("-"),
                                "recipient limit per message reached"
                            );
                            Verdict::Reject(reply)
                        } else {
                            match crate::roles::recipient(
                                &mut self.lookups,
                                &self.ctx.config,
                                &address,
                                relay,
                                &delim,
                            )
                            .await
                            {
                                Ok(t) => match self.greylisted(session, address.as_str()).await {
                                    Some(reply) => Verdict::Reject(reply),
                                    None => {
                                        self.targets.insert(address.as_str().to_owned(), t);
                                        Verdict::Accept
                                    }
                                },
                                Err(reply) => {
                                    info!(rcpt = %address, reply = %reply.lines().join(" "), "recipient refused");
                                    Verdict::Reject(reply)
                                }
                            }
                        };
                        work.extend(completed(session, Completion::Recipient(v)));
                    }
                    Action::Auth {
                        mechanism,
                        initial_response,
                    } => {
                        let c = self
                            .auth_start(&mechanism, initial_response.as_deref())
                            .await;
                        work.extend(completed(session, c));
                    }
                    Action::AuthResponse(line) => {
                        let c = self.auth_step(&line).await;
                        work.extend(completed(session, c));
                    }
                    Action::AuthCancel => self.auth = None,
                    Action::Deliver(mut tx) => {
                        if self.write(&std::mem::take(&mut out)).await.is_err() {
                            return;
                        }
                        let tls = self.stream.as_ref().and_then(Stream::tls_info);
                        // The message: what was spooled along the way, then the rest. From
                        // here on `tx.message` is the whole message when it was small, else
                        // its header section (`body` holds the rest, on disk).
                        let incoming = std::mem::take(&mut self.incoming);
                        let tail = std::mem::take(&mut tx.message);
                        let (body, refused) = match incoming.finish(&self.ctx, &tail).await {
                            Ok(r) => {
                                tx.message = r.head;
                                (r.body, None)
                            }
                            Err(reply) => (None, Some(reply)),
                        };
                        drop(tail);
                        // Submission: the header From: must be the login's too (policy.rs).
                        let checked = match refused {
                            Some(refusal) => Err(refusal),
                            None => match crate::policy::check_header_from(&mut self.lookups, &tx)
                                .await
                            {
                                Some(refusal) => Err(refusal),
                                None => self.after_data(&tx, body.as_ref()).await,
                            },
                        };
                        let reply = match checked {
                            Err(refusal) => refusal,
                            Ok(added) => {
                                crate::intake::accept(
                                    &self.ctx,
                                    &tx,
                                    body,
                                    &self.targets,
                                    self.peer,
                                    tls.as_deref(),
                                    &self.access,
                                    &added,
                                )
                                .await
                            }
                        };
                        self.targets.clear();
                        crate::metrics::message(self.door, reply.code());
                        if reply.is_positive()
                            && let Some(user) = session.authenticated()
                        {
                            self.ctx.limits.record(user);
                        }
                        work.extend(completed(session, Completion::Delivered(vec![reply])));
                    }
                }
            }
            if !out.is_empty() && self.write(&out).await.is_err() {
                return;
            }
            if session.is_closed() {
                return;
            }
            let wait = idle.min(deadline.saturating_duration_since(Instant::now()));
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            let read = tokio::select! {
                _ = shutdown.cancelled() => { work.extend(session.shutdown()); continue; }
                r = tokio::time::timeout(wait, stream.read(&mut buf)) => r,
            };
            match read {
                Ok(Ok(0)) => return,
                Ok(Ok(n)) => {
                    work.extend(session.input(&buf[..n]));
                    // A full read: a message is streaming in; read it in larger pieces.
                    // A short one: back to the small buffer.
                    if n == buf.len() && buf.len() < READ_BUFFER {
                        buf.resize(READ_BUFFER, 0);
                    } else if n < SMALL_READ_BUFFER && buf.len() > SMALL_READ_BUFFER {
                        buf = vec![0u8; SMALL_READ_BUFFER];
                    }
                }
                Ok(Err(e)) => {
                    debug!(error = %e, "read failed");
                    return;
                }
                Err(_) => {
                    info!("session timed out");
                    work.extend(session.timeout());
                }
            }
        }
    }

    /// Moves the message bytes the session has read so far out of it (into memory up to a
    /// bound, then to the spool): no session holds a whole large message.
    async fn spool_body(&mut self, session: &mut Session) {
        let bytes = session.take_body();
        if !bytes.is_empty() {
            let ctx = self.ctx.clone();
            self.incoming.push(&ctx, &bytes).await;
        }
    }

    /// Whether the port 25 checks apply to this session now.
    fn checking(&self, session: &Session) -> bool {
        self.inbound && session.authenticated().is_none()
    }

    /// At MAIL on port 25: HELO hygiene, forward-confirmed reverse DNS, DNS blocklists of
    /// the client and the sender's domain, SPF. A refusal comes back as the verdict;
    /// `tag` findings are kept for the header.
    async fn inbound_mail(
        &mut self,
        session: &Session,
        sender: Option<&postern_smtp_session::Address>,
    ) -> Option<Verdict> {
        if !self.checking(session) {
            return None;
        }
        let ctx = self.ctx.clone();
        let c = &ctx.checks;
        let ip = self.peer.ip();
        let helo_name = session.client_helo().unwrap_or("").to_owned();
        let reject = |reason: &str, detail: &str, reply: Reply| {
            c.refused(reason, detail);
            Some(Verdict::Reject(reply))
        };
        if c.cfg.helo.on() {
            let mut own = c.own_ips.clone();
            own.push(self.local.ip());
            if let Some(p) = helo::check(&helo_name, &c.hostname, &own) {
                if c.cfg.helo == CheckMode::Reject {
                    let (code, enh) = p.code();
                    return reject(
                        p.reason(),
                        &helo_name,
                        Reply::new(code, enh, p.text(&helo_name)),
                    );
                }
                self.tags.push(format!("{} helo={}", p.reason(), helo_name));
            }
            if c.cfg.require_fcrdns {
                match helo::fcrdns(c.resolver(), &self.budget, ip).await {
                    Fcrdns::Pass(_) => {}
                    Fcrdns::Fail(why) if c.cfg.helo == CheckMode::Reject => {
                        return reject(
                            "fcrdns",
                            &why,
                            Reply::new(
                                550,
                                (5, 7, 25),
                                format!(
                                    "Client host rejected: cannot find your hostname, [{ip}]: reverse DNS does not confirm"
                                ),
                            ),
                        );
                    }
                    Fcrdns::TempError(why) if c.cfg.helo == CheckMode::Reject => {
                        return reject(
                            "fcrdns_temp",
                            &why,
                            Reply::new(
                                450,
                                (4, 7, 25),
                                format!(
                                    "Client host rejected: cannot find your hostname, [{ip}]: try again later"
                                ),
                            ),
                        );
                    }
                    Fcrdns::Fail(why) | Fcrdns::TempError(why) => {
                        self.tags.push(format!("fcrdns {why}"));
                    }
                }
            }
        }
        if c.cfg.dnsbl.on() {
            if let Some((zone, a)) = c
                .dnsbl
                .client(c.resolver(), &self.budget, &c.cfg.dnsbl_zones, ip)
                .await
            {
                let text = format!("Service unavailable; client [{ip}] listed at {zone}");
                if c.cfg.dnsbl == CheckMode::Reject {
                    return reject(
                        &format!("dnsbl:{zone}"),
                        &a.to_string(),
                        Reply::new(554, (5, 7, 1), text),
                    );
                }
                self.tags
                    .push(format!("dnsbl client [{ip}] listed at {zone} ({a})"));
            }
            if let Some(addr) = sender
                && let Some((zone, a)) = c
                    .dnsbl
                    .domain(c.resolver(), &self.budget, &c.cfg.dbl_zones, addr.domain())
                    .await
            {
                let text = format!(
                    "Service unavailable; sender domain {} listed at {zone}",
                    addr.domain()
                );
                if c.cfg.dnsbl == CheckMode::Reject {
                    return reject(
                        &format!("dbl:{zone}"),
                        &a.to_string(),
                        Reply::new(554, (5, 7, 1), text),
                    );
                }
                self.tags.push(format!(
                    "dbl sender domain {} listed at {zone} ({a})",
                    addr.domain()
                ));
            }
        }
        if c.cfg.spf.on() || c.cfg.dmarc.on() {
            let s = sdd::spf(c, &self.budget, ip, &helo_name, sender.map(|a| a.as_str())).await;
            if c.cfg.spf == CheckMode::Reject
                && let Some(reply) = sdd::spf_refusal(&s, ip)
            {
                return reject("spf_fail", s.domain(), reply);
            }
            self.spf = Some(s);
        }
        None
    }

    /// At RCPT on port 25 (a recipient we would accept): greylisting.
    async fn greylisted(&mut self, session: &Session, rcpt: &str) -> Option<Reply> {
        if !self.checking(session) {
            return None;
        }
        let ctx = self.ctx.clone();
        let c = &ctx.checks;
        let g = c.greylist.as_ref()?;
        match g
            .verdict(
                &mut self.lookups,
                self.peer.ip(),
                self.sender.as_deref(),
                rcpt,
            )
            .await
        {
            crate::checks::greylist::Verdict::Pass => None,
            crate::checks::greylist::Verdict::Defer(secs) => {
                c.refused("greylist", rcpt);
                Some(Reply::new(
                    450,
                    (4, 7, 1),
                    format!(
                        "<{rcpt}>: Recipient address rejected: Greylisted, please try again in {secs} seconds"
                    ),
                ))
            }
        }
    }

    /// After DATA on port 25: DKIM, DMARC and the `Authentication-Results` header. `Ok`
    /// carries the header fields to add; `Err` the refusal.
    /// A message larger than [`crate::intake::HEAD_MAX`] was spooled (`body`): when it carries
    /// a DKIM signature it is read back whole under the global [`crate::intake::VerifyBudget`],
    /// or refused with `451` when that budget stays exhausted; never passed unchecked. Without
    /// one, its header section gives the same results ([`sdd::body_needed`]).
    async fn after_data(
        &self,
        tx: &postern_smtp_session::Transaction,
        body: Option<&postern_queue::BodyFile>,
    ) -> Result<String, Reply> {
        if !self.inbound || tx.authenticated.is_some() {
            return Ok(String::new());
        }
        let c = &self.ctx.checks;
        if !(c.cfg.dkim.on() || c.cfg.dmarc.on()) {
            // Nothing reads the body: the header section is enough.
            let out =
                sdd::after_data(c, &self.budget, &tx.message, self.spf.as_ref(), &self.tags).await;
            return self.after_data_outcome(out);
        }
        // A spooled body is read back (under the memory budget) only when a DKIM signature
        // needs it; `tx.message` is then the header section alone.
        let whole = match body {
            Some(_) if !sdd::body_needed(&tx.message) => None,
            _ => Some(self.ctx.verify.whole(&tx.message, body).await?),
        };
        let message = whole.as_ref().map_or(&tx.message[..], |w| &w.bytes[..]);
        let out = sdd::after_data(c, &self.budget, message, self.spf.as_ref(), &self.tags).await;
        drop(whole);
        self.after_data_outcome(out)
    }

    fn after_data_outcome(&self, out: sdd::AfterData) -> Result<String, Reply> {
        let c = &self.ctx.checks;
        if let Some((reply, reason)) = out.refuse {
            c.refused(reason, &reply.lines().join(" "));
            return Err(reply);
        }
        if out.junk {
            info!("DMARC quarantine: marked for the Junk folder");
            c.stats.count("dmarc_quarantine");
        }
        Ok(out.headers)
    }

    /// Applies the access rules; a REJECT comes back as the verdict, DISCARD and HOLD are
    /// remembered for the end of the transaction.
    fn access_rule(&mut self, session: &Session, rcpt: Option<&str>) -> Option<Verdict> {
        let rules = &self.ctx.config.smtpd.access;
        if rules.is_empty() {
            return None;
        }
        let facts = Facts {
            client: self.peer.ip(),
            helo: session.client_helo().unwrap_or(""),
            sender: self.sender.as_deref(),
            recipient: rcpt,
        };
        match decide(rules, &facts) {
            Decision::Pass => None,
            Decision::Reject(text) => {
                info!(
                    sender = self.sender.as_deref().unwrap_or("<>"),
                    rcpt = rcpt.unwrap_or("-"),
                    "access rule: REJECT"
                );
                Some(Verdict::Reject(Reply::new(554, (5, 7, 1), text)))
            }
            d => {
                if self.access != Decision::Discard {
                    self.access = d;
                }
                None
            }
        }
    }

    async fn start_tls(&mut self) -> bool {
        let (Some(tls), Some(Stream::Plain(tcp))) = (self.ctx.tls.as_ref(), self.stream.take())
        else {
            return false;
        };
        match tokio::time::timeout(Duration::from_secs(30), tls.acceptor().accept(tcp)).await {
            Ok(Ok(s)) => {
                self.stream = Some(Stream::Tls(Box::new(s)));
                true
            }
            Ok(Err(e)) => {
                info!(error = %e, "TLS handshake failed");
                false
            }
            Err(_) => false,
        }
    }

    async fn check_sender(
        &mut self,
        session: &Session,
        sender: Option<&postern_smtp_session::Address>,
    ) -> Verdict {
        let user = session.authenticated().map(str::to_owned);
        if self.door.requires_auth() && user.is_none() {
            return Verdict::Reject(Reply::new(530, (5, 7, 0), "Authentication required"));
        }
        let c = &self.ctx.config.smtpd;
        if let Some(reply) = crate::limits::check_queue(self.ctx.queue.len(), c.max_queue_messages)
        {
            warn!(queued = self.ctx.queue.len(), "queue full: MAIL refused");
            return Verdict::Reject(reply);
        }
        // Messages stream to the queue's disk: room for one more of the largest, and half
        // again (Postfix's rule for queue_minfree).
        let spool = self.ctx.queue.committer.spool().dir();
        if let Some(reply) = self
            .ctx
            .disk
            .check(spool, c.max_message_size.saturating_mul(3) / 2)
        {
            warn!("queue file system nearly full: MAIL refused");
            return Verdict::Reject(reply);
        }
        let ctx = self.ctx.clone();
        if let Some(login) = &user
            && let Some(reply) = ctx
                .limits
                .check(&mut self.lookups, login, c.max_messages_per_hour_per_user)
                .await
        {
            warn!(user = %login, "hourly sending limit reached");
            return Verdict::Reject(reply);
        }
        match (user, sender) {
            (Some(login), Some(addr)) => self.lookups.sender(&login, addr).await,
            _ => Verdict::Accept,
        }
    }

    fn auth_params(&self) -> AuthParams {
        let mut p = AuthParams::new("smtp");
        p.rip = Some(self.peer.ip());
        p.lip = Some(self.local.ip());
        p.secured = matches!(self.stream, Some(Stream::Tls(_)));
        p
    }

    async fn auth_start(&mut self, mech: &str, initial: Option<&str>) -> Completion {
        let initial = match initial.map(decode_b64) {
            Some(None) => {
                return Completion::AuthDone(Err(Reply::new(
                    501,
                    (5, 5, 2),
                    "Invalid base64 data",
                )));
            }
            Some(Some(v)) => Some(v),
            None => None,
        };
        if self.auth.is_none() {
            match AuthClient::connect(
                self.ctx
                    .config
                    .socket_path(&self.ctx.config.authd.auth_socket),
            )
            .await
            {
                Ok(c) => self.auth = Some(c),
                Err(e) => {
                    warn!(error = %e, "authd unreachable");
                    return Completion::AuthDone(Err(Reply::new(
                        454,
                        (4, 7, 0),
                        "Temporary authentication failure",
                    )));
                }
            }
        }
        let params = self.auth_params();
        let Some(client) = self.auth.as_mut() else {
            return Completion::AuthDone(Err(Reply::new(
                454,
                (4, 7, 0),
                "Temporary authentication failure",
            )));
        };
        let step = client
            .authenticate(&mech.to_ascii_uppercase(), &params, initial.as_deref())
            .await;
        self.auth_outcome(step)
    }

    async fn auth_step(&mut self, line: &str) -> Completion {
        let Some(data) = decode_b64(line) else {
            self.auth = None;
            return Completion::AuthDone(Err(Reply::new(501, (5, 5, 2), "Invalid base64 data")));
        };
        let Some(client) = self.auth.as_mut() else {
            return Completion::AuthDone(Err(Reply::new(
                454,
                (4, 7, 0),
                "Temporary authentication failure",
            )));
        };
        let step = client.respond(&data).await;
        self.auth_outcome(step)
    }

    fn auth_outcome(
        &mut self,
        step: Result<AuthStep, postern_auth_proto::client::ClientError>,
    ) -> Completion {
        match step {
            Ok(AuthStep::Challenge(c)) => {
                Completion::AuthChallenge(base64::engine::general_purpose::STANDARD.encode(c))
            }
            Ok(AuthStep::Done(AuthOutcome::Ok { user, .. })) => {
                info!(user = %user, door = self.door.name(), "authenticated");
                Completion::AuthDone(Ok(user))
            }
            // A lockout is a temporary failure too: authd's reason says which one.
            Ok(AuthStep::Done(AuthOutcome::Fail { temp: true, reason })) => {
                Completion::AuthDone(Err(Reply::new(
                    454,
                    (4, 7, 0),
                    reason
                        .as_deref()
                        .map(|r| {
                            r.chars()
                                .filter(|c| !c.is_control())
                                .take(200)
                                .collect::<String>()
                        })
                        .filter(|r| !r.trim().is_empty())
                        .as_deref()
                        .unwrap_or("Temporary authentication failure"),
                )))
            }
            Ok(AuthStep::Done(AuthOutcome::Fail { reason, .. })) => {
                info!(
                    reason = reason.as_deref().unwrap_or("-"),
                    "authentication failed"
                );
                Completion::AuthDone(Err(Reply::new(
                    535,
                    (5, 7, 8),
                    "Authentication credentials invalid",
                )))
            }
            Err(e) => {
                warn!(error = %e, "authd conversation failed");
                self.auth = None;
                Completion::AuthDone(Err(Reply::new(
                    454,
                    (4, 7, 0),
                    "Temporary authentication failure",
                )))
            }
        }
    }
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s == "=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn completed(session: &mut Session, c: Completion) -> Vec<Action> {
    session.completed(c).unwrap_or_else(|e| {
        warn!(error = %e, "session state error");
        vec![
            Action::Reply(Reply::new(421, (4, 3, 0), "Internal error, closing")),
            Action::Close,
        ]
    })
}
