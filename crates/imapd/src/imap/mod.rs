//! The IMAP server: imap-next's sans-I/O `Server` driven over our own stream (which STARTTLS
//! and COMPRESS=DEFLATE upgrade in place, under the same `Server`), the session state in
//! [`session`], IDLE in `idle.rs` and the commands in `cmd/`.
//!
//! Input reaches imap-next in pieces cut so that a STARTTLS or COMPRESS command ends a piece
//! (`input.rs`): when imap-next reports one it holds nothing that came after it, and the
//! driver drops the rest of what it read. Bytes a client (or a man in the middle) pipelined
//! after STARTTLS in the clear are never executed under TLS (CVE-2011-0411).
//!
//! Limits: before login every command (with its literals) must fit in
//! `max_preauth_command_size` — checked on the raw bytes before imap-next buffers them, so a
//! `{1000000000}` announcement closes the connection at once; an ID command may be larger by
//! the size of the largest valid ID, RFC 2971's 30 pairs of 1024-octet values, whose limits
//! `cmd/mod.rs` enforces with BAD — and the client must log in
//! within `login_timeout_secs`. After login the bytes of one command outside its literals
//! must fit in `max_command_size` (checked the same way; a longer command gets `* BYE` and is
//! never parsed), and imap-next enforces `max_literal_size` per literal and literal plus
//! command size in total; an idle session is logged out after `idle_timeout_secs`.

pub mod session;

mod cmd;
#[doc(hidden)]
pub mod fuzzing;
mod idle;
mod input;
mod names;
pub(crate) mod notify;
mod notify_set;
mod resp;
mod scanner;
pub(crate) mod shared;
#[cfg(test)]
mod shared_tests;
mod tagged;
mod transport;

pub(crate) use cmd::metadata::{
    ServerInfo as MetadataServerInfo, set_server_info as set_metadata_server_info,
};

#[cfg(test)]
mod conformance_tests;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::command::{Command, CommandBody};
use imap_codec::imap_types::core::{Tag, Vec1};
use imap_codec::imap_types::response::{
    Capability, Code, CommandContinuationRequest, Greeting, Status,
};
use imap_next::server::{Error as ServerError, Event, Options, Server};
use imap_next::{Interrupt, Io, State};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::login::{self, LoggedIn, LoginError, Sasl, SaslStep};
use crate::{Connection, Ctx, Door};

use self::cmd::auth::Action;
#[cfg(test)]
use self::cmd::mailboxes;
use self::idle::{Idle, Watch};
use self::input::Input as Pending;
pub(crate) use self::scanner::PreauthScanner;
#[cfg(test)]
use self::scanner::literal_announcement;
use self::session::{Flow, Session, SessionConfig, User};
use self::tagged::{Tagged, other};
use self::transport::Transport;

/// Consecutive bad commands before the connection is closed.
const MAX_BAD: u32 = 20;
/// Time allowed for the STARTTLS handshake.
const TLS_TIMEOUT: Duration = Duration::from_secs(30);

/// The tag of a malformed command, if it has a valid one.
fn recover_tag(raw: &[u8]) -> Option<String> {
    let end = raw
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let t = std::str::from_utf8(&raw[..end]).ok()?;
    Tag::validate(t).ok()?;
    Some(t.to_owned())
}

fn new_server(ctx: &Ctx, greeting: Greeting<'static>) -> Server {
    let mut o = Options::default();
    o.crlf_relaxed = true;
    o.max_literal_size = ctx.config.imapd.max_literal_size;
    o.max_command_size = ctx
        .config
        .imapd
        .max_literal_size
        .saturating_add(ctx.config.imapd.max_command_size.max(1024));
    let _ = o.set_literal_reject_text("Literal too big".into());
    let _ = o.set_literal_accept_text("Ready for literal data".into());
    Server::new(o, greeting)
}

/// The session's greeting (`* OK [CAPABILITY …] host ready`, as [`Session::greeting`] writes
/// it), sent by imap-next.
fn greeting(sess: &Session) -> Greeting<'static> {
    use imap_codec::imap_types::core::Text;
    use imap_codec::imap_types::response::GreetingKind;
    Greeting {
        kind: GreetingKind::Ok,
        code: Some(other(sess.capability_text())),
        // A host name that is not valid text: the capabilities still go out.
        text: Text::try_from(format!("{} ready", sess.cfg.hostname))
            .unwrap_or_else(|_| Text::unvalidated("ready")),
    }
}

fn caps_code(caps: Vec<String>) -> Option<Code<'static>> {
    let list: Vec<Capability<'static>> = caps
        .into_iter()
        .filter_map(|c| Capability::try_from(c).ok())
        .collect();
    Vec1::try_from(list).ok().map(Code::Capability)
}

fn status(
    kind: &str,
    tag: &Tag<'static>,
    code: Option<Code<'static>>,
    text: &str,
) -> Option<Status<'static>> {
    let t = Some(tag.clone());
    let text = text.to_owned();
    match kind {
        "OK" => Status::ok(t, code, text).ok(),
        "NO" => Status::no(t, code, text).ok(),
        _ => Status::bad(t, code, text).ok(),
    }
}

/// Serves one IMAP connection.
pub async fn serve(conn: Connection, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Connection {
        stream,
        peer,
        local,
        door,
        unauth_permit,
    } = conn;
    let io = Transport::new(stream);
    let trusted = ctx.is_trusted(peer.ip());
    let cfg = SessionConfig {
        hostname: ctx.config.hostname.clone(),
        append_limit: ctx.config.imapd.max_literal_size,
        starttls: door == Door::Imap && ctx.tls.is_some(),
    };
    let mut sess = Box::new(Session::new(cfg, io.is_tls(), trusted));
    sess.shared = shared::SharedState::for_config(&ctx.config);
    let login_deadline = Instant::now() + ctx.config.imapd.login_timeout_secs.duration();
    let server = new_server(&ctx, greeting(&sess));
    let mut d = Driver {
        out: Vec::new(),
        input: Pending::default(),
        sess: Some(sess),
        server,
        ctx,
        io,
        peer,
        local,
        unauth_permit,
        scanner: PreauthScanner::default(),
        auth_failures: 0,
        bad: 0,
        sasl: None,
        idle_watch: None,
        idle_sync: false,
        idle_gauge: None,
        read_deadline: None,
        login_deadline,
        close: false,
        bye_after: None,
        origin: None,
        handoff: None,
        kick: None,
    };
    debug!(%peer, "imap connection");
    d.run(shutdown.clone()).await;
    if let Some(backend) = d.handoff.take() {
        // Proxy mode: the session is done with; only the streams stay (small per connection).
        let rest = d.input.take_rest();
        let idle = d.ctx.config.proxy.idle_timeout_secs.duration();
        let Some(stream) = d.io.into_stream() else {
            return;
        };
        drop(d.sess.take());
        drop(d.server);
        let end = crate::proxy::relay::run(stream, backend, rest, true, idle, &shutdown).await;
        debug!(%peer, ?end, "imap proxy session ended");
    }
}

enum Input {
    Data(Vec<u8>),
    Woke,
    /// NOTIFY's watches or poll round (`notify_set.rs`).
    Notify,
    Closed,
}

struct Driver {
    ctx: Arc<Ctx>,
    io: Transport,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
    server: Server,
    out: Vec<u8>,
    /// Bytes read and scanned, not yet given to imap-next (see [`Driver::feed`]).
    input: Pending,
    sess: Option<Box<Session>>,
    unauth_permit: Option<OwnedSemaphorePermit>,
    scanner: PreauthScanner,
    auth_failures: u32,
    bad: u32,
    sasl: Option<(Tag<'static>, Sasl)>,
    /// During IDLE with a mailbox selected: what wakes the session.
    idle_watch: Option<Watch>,
    /// IDLE was accepted: report pending updates once the continuation request is out.
    idle_sync: bool,
    /// Counts this session in `postern_imapd_idle_sessions` while it is in IDLE.
    idle_gauge: Option<crate::metrics::IdleGuard>,
    login_deadline: Instant,
    /// When an idle logged-in session is logged out; kept across NOTIFY wakes (which are not
    /// the client's activity), renewed by anything else.
    read_deadline: Option<Instant>,
    close: bool,
    /// Sent, then the connection closed, once imap-next has written its queued output.
    bye_after: Option<&'static str>,
    /// The real client, as a trusted proxy named it in ID (`[imapd] proxy_networks`).
    origin: Option<std::net::SocketAddr>,
    /// Logged in at a cluster backend: the session ends here and the bytes are relayed.
    handoff: Option<crate::proxy::Backend>,
    /// Logged in here: the session's place in the kick registry (`crate::kick`).
    kick: Option<crate::kick::Registration>,
}

/// What a kicked session says before it closes (`mailctl user move`).
const KICKED_BYE: &[u8] = b"* BYE [UNAVAILABLE] Your mailbox is being moved, try again later\r\n";

impl Driver {
    fn authenticated(&self) -> bool {
        self.sess.as_ref().is_some_and(|s| s.is_authenticated())
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        loop {
            if self.handoff.is_some() {
                let _ = self.flush().await;
                return;
            }
            if self.close {
                let _ = self.flush().await;
                self.io.shutdown().await;
                return;
            }
            match self.server.next() {
                Ok(ev) => self.on_event(ev).await,
                Err(Interrupt::Io(Io::Output(b))) => self.out.extend_from_slice(&b),
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    // Kicked: the command before has finished; no further one starts.
                    if self.kick.as_ref().is_some_and(|k| k.is_kicked()) {
                        self.out.extend_from_slice(KICKED_BYE);
                        self.close = true;
                        continue;
                    }
                    if self.feed() {
                        continue;
                    }
                    if let Some(bye) = self.bye_after.take() {
                        self.out.extend_from_slice(bye.as_bytes());
                        self.close = true;
                        continue;
                    }
                    if !self.flush().await {
                        return;
                    }
                    match self.read_input(&shutdown).await {
                        Input::Data(bytes) => self.received(bytes),
                        Input::Woke => self.idle_wake().await,
                        Input::Notify => {
                            self.with_session(|s, out| s.notify_wake(out)).await;
                        }
                        Input::Closed => self.close = true,
                    }
                }
                Err(Interrupt::Error(e)) => self.on_error(e).await,
            }
        }
    }

    /// Checks freshly read bytes against the command size limits and keeps them for
    /// [`Driver::feed`].
    fn received(&mut self, bytes: Vec<u8>) {
        if !self.authenticated() {
            let limit = u64::from(self.ctx.config.imapd.max_preauth_command_size.max(256));
            if !self.scanner.feed(&bytes, limit) {
                info!(peer = %self.peer, "command too long before login; closing");
                self.out
                    .extend_from_slice(b"* BYE [LIMIT] Command too long\r\n");
                self.close = true;
                return;
            }
        } else {
            let imapd = &self.ctx.config.imapd;
            let text_limit = u64::from(imapd.max_command_size.max(1024));
            let literal_limit = u64::from(imapd.max_literal_size);
            if let Err(whole) = self.scanner.feed_text(&bytes, text_limit, literal_limit) {
                // The commands before the long one are served; the long one never reaches
                // the parser, so it changes nothing.
                info!(peer = %self.peer, "command too long; closing");
                let mut bytes = bytes;
                bytes.truncate(whole);
                self.input.set(bytes);
                self.bye_after = Some("* BYE [LIMIT] Command line too long\r\n");
                return;
            }
        }
        self.input.set(bytes);
    }

    /// Gives imap-next the next piece of what was read (see `input.rs`); false when nothing
    /// is left. Called only when imap-next asks for more, so a STARTTLS or COMPRESS it
    /// reports has nothing behind it in imap-next: what follows is still in `input`, and
    /// [`Driver::discard_input`] drops it (imap-next 0.3.4 has no way to drop input it was
    /// given).
    fn feed(&mut self) -> bool {
        let piece = if self.authenticated() {
            self.input.next_piece()
        } else {
            self.input.next_line()
        };
        match piece {
            Some(piece) => {
                self.server.enqueue_input(piece);
                true
            }
            None => false,
        }
    }

    /// Drops what was read and not yet given to imap-next (after STARTTLS and COMPRESS:
    /// nothing sent before the new layer counts under it). imap-next is at the start of a
    /// command, and so is the scanner from now on.
    fn discard_input(&mut self) {
        self.input.clear();
        self.scanner = PreauthScanner::default();
    }

    /// Writes pending output; false if the connection is gone.
    async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let out = std::mem::take(&mut self.out);
        // A client that stops reading must not hold the session forever.
        let limit = self.ctx.config.imapd.idle_timeout_secs.duration();
        match tokio::time::timeout(limit, self.io.write_all(&out)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(peer = %self.peer, error = %e, "write failed");
                false
            }
            Err(_) => {
                info!(peer = %self.peer, "client stopped reading; closing");
                false
            }
        }
    }

    async fn read_input(&mut self, shutdown: &CancellationToken) -> Input {
        let authenticated = self.authenticated();
        let timeout = self.ctx.config.imapd.idle_timeout_secs.duration();
        let deadline = if authenticated {
            *self
                .read_deadline
                .get_or_insert_with(|| Instant::now() + timeout)
        } else {
            self.login_deadline
        };
        let sync_now = self.idle_sync;
        let Self {
            io,
            idle_watch,
            kick,
            sess,
            ..
        } = self;
        let notify = async {
            match sess.as_mut().and_then(|s| s.notify_waker()) {
                Some(w) => w.changed().await,
                None => std::future::pending::<()>().await,
            }
        };
        let wake = async {
            match idle_watch.as_mut() {
                _ if sync_now => {}
                Some(w) => w.changed().await,
                None => std::future::pending::<()>().await,
            }
        };
        let r = tokio::select! {
            _ = shutdown.cancelled() => {
                self.out.extend_from_slice(b"* BYE Server shutting down\r\n");
                Input::Closed
            }
            r = io.read() => match r {
                Ok(b) if !b.is_empty() => Input::Data(b),
                Ok(_) => Input::Closed,
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "read failed");
                    Input::Closed
                }
            },
            () = tokio::time::sleep_until(deadline) => {
                self.out.extend_from_slice(if authenticated {
                    b"* BYE Autologout; idle for too long\r\n"
                } else {
                    b"* BYE Login timeout\r\n"
                });
                Input::Closed
            }
            () = wake => Input::Woke,
            () = notify => Input::Notify,
            () = crate::kick::kicked(kick.as_ref()) => {
                self.out.extend_from_slice(KICKED_BYE);
                Input::Closed
            }
        };
        if !matches!(r, Input::Notify) {
            self.read_deadline = None;
        }
        r
    }

    /// Runs `f` on the session on the blocking pool, output into `self.out`.
    async fn with_session<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Session, &mut Vec<u8>) -> R + Send + 'static,
    ) -> Option<R> {
        let mut s = self.sess.take()?;
        let mut out = std::mem::take(&mut self.out);
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut s, &mut out);
            (s, out, r)
        })
        .await
        {
            Ok((s, out, r)) => {
                self.sess = Some(s);
                self.out = out;
                Some(r)
            }
            Err(e) => {
                tracing::error!(peer = %self.peer, error = %e, "session task failed");
                self.out.extend_from_slice(b"* BYE Internal error\r\n");
                self.close = true;
                None
            }
        }
    }

    async fn run_command(&mut self, cmd: Command<'static>) {
        if let CommandBody::Id {
            parameters: Some(p),
        } = &cmd.body
            && !self.authenticated()
            && self.ctx.is_proxy(self.peer.ip())
        {
            let pairs = p
                .iter()
                .map(|(k, v)| (k.as_ref(), v.0.as_ref().map(|v| v.as_ref())));
            if let Some(o) = crate::proxy::id_origin(pairs) {
                debug!(peer = %self.peer, origin = %o, "imap: client named by a trusted proxy");
                self.origin = Some(o);
            }
        }
        let action = self.with_session(move |s, out| s.begin(cmd, out)).await;
        let mut flow = match action {
            None => return,
            Some(Action::Done(flow)) => Some(flow),
            Some(Action::Login { tag, user, pass }) => return self.login(tag, &user, &pass).await,
            Some(Action::StartTls) => return self.starttls().await,
            Some(Action::Compress) => return self.compress().await,
        };
        self.finish_flow(&mut flow).await;
    }

    /// Carries a command's [`Flow`] through: resumes it while it has more output (after
    /// writing what it has), and closes the connection when it ends the session.
    async fn finish_flow(&mut self, flow: &mut Option<Flow>) {
        while *flow == Some(Flow::More) {
            if !self.flush().await {
                self.close = true;
                return;
            }
            *flow = self.with_session(|s, out| s.resume(out)).await;
        }
        if *flow == Some(Flow::Close) {
            self.close = true;
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::GreetingSent { .. } | Event::ResponseSent { .. } => {}
            Event::CommandReceived { command } => {
                self.bad = 0;
                let _timer = crate::metrics::CommandTimer::start(&command.body);
                self.run_command(command).await;
            }
            Event::CommandAuthenticateReceived {
                command_authenticate,
            } => {
                self.bad = 0;
                let tag = command_authenticate.tag;
                let mech = command_authenticate
                    .mechanism
                    .to_string()
                    .to_ascii_uppercase();
                if self.authenticated() {
                    self.auth_finish(&tag, Tagged::bad("Already logged in"));
                    return;
                }
                if !login::MECHANISMS.contains(&mech.as_str()) {
                    self.auth_finish(&tag, Tagged::no_plain("Unsupported mechanism"));
                    return;
                }
                if !self.sess.as_ref().is_some_and(|s| s.plaintext_ok()) {
                    self.auth_finish(
                        &tag,
                        Tagged::no(other("PRIVACYREQUIRED"), "Use STARTTLS first"),
                    );
                    return;
                }
                let initial = command_authenticate
                    .initial_response
                    .map(|r| r.declassify().to_vec());
                match Sasl::start(&self.ctx, self.client(), &mech, initial.as_deref()).await {
                    Ok((sasl, SaslStep::Challenge(c))) => {
                        let _ = self
                            .server
                            .authenticate_continue(CommandContinuationRequest::base64(c));
                        self.sasl = Some((tag, sasl));
                    }
                    Ok((mut sasl, SaslStep::Done(r))) => match sasl.remote() {
                        Some(t) => self.proxy_login(tag.inner(), t, Some(&tag)).await,
                        None => self.auth_result(&tag, r).await,
                    },
                    Err(e) => self.auth_result(&tag, Err(e)).await,
                }
            }
            Event::AuthenticateDataReceived { authenticate_data } => {
                let Some((tag, mut sasl)) = self.sasl.take() else {
                    return;
                };
                match authenticate_data {
                    AuthenticateData::Cancel => {
                        self.auth_finish(&tag, Tagged::bad("Authentication cancelled"))
                    }
                    AuthenticateData::Continue(data) => {
                        let step = sasl.respond(&self.ctx, data.declassify()).await;
                        match step {
                            SaslStep::Challenge(c) => {
                                let _ = self
                                    .server
                                    .authenticate_continue(CommandContinuationRequest::base64(c));
                                self.sasl = Some((tag, sasl));
                            }
                            SaslStep::Done(r) => match sasl.remote() {
                                Some(t) => self.proxy_login(tag.inner(), t, Some(&tag)).await,
                                None => self.auth_result(&tag, r).await,
                            },
                        }
                    }
                }
            }
            Event::IdleCommandReceived { tag } => {
                self.bad = 0;
                drop(crate::metrics::CommandTimer::named("IDLE"));
                self.idle(tag);
            }
            Event::IdleDoneReceived => {
                self.idle_gauge = None;
                self.idle_watch = None;
                self.idle_sync = false;
                self.with_session(|s, out| s.idle_end(out)).await;
            }
        }
    }

    /// IDLE: the session decides ([`Session::idle`]); imap-next, which owns the IDLE flow,
    /// sends the continuation request or the refusal.
    fn idle(&mut self, tag: Tag<'static>) {
        let Some(sess) = self.sess.as_mut() else {
            self.close = true;
            return;
        };
        match sess.idle(tag.inner()) {
            Idle::Refuse(t) => match t.status(&tag) {
                Some(st) => {
                    let _ = self.server.idle_reject(st);
                }
                None => self.close = true,
            },
            Idle::Accept { watch } => {
                match CommandContinuationRequest::basic(None, "idling") {
                    Ok(ccr) => {
                        let _ = self.server.idle_accept(ccr);
                    }
                    Err(_) => self.close = true,
                }
                self.idle_watch = watch.map(|dir| Watch::start(&self.ctx, &dir));
                self.idle_gauge = Some(crate::metrics::IdleGuard::new());
                // Updates already pending go out right after the continuation request.
                self.idle_sync = true;
            }
        }
    }

    /// The watched mailbox changed during IDLE (or it is time to look again).
    async fn idle_wake(&mut self) {
        self.idle_sync = false;
        self.with_session(|s, out| s.idle_wake(out)).await;
    }

    async fn on_error(&mut self, e: ServerError) {
        self.bad += 1;
        match e {
            ServerError::MalformedMessage { discarded_bytes }
            | ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
                let raw = discarded_bytes.declassify().to_vec();
                if self.authenticated()
                    && let Some(job) = cmd::ext::reparse(&raw)
                {
                    self.bad = 0;
                    let mut flow = self
                        .with_session(move |s, out| {
                            // NOTIFY: what the session did itself is not reported to it.
                            let touched = s.notify_touched_raw(&raw);
                            let f = job(s, out);
                            if f == Flow::Continue {
                                s.notify_absorb(touched, out);
                            }
                            f
                        })
                        .await;
                    self.finish_flow(&mut flow).await;
                    return;
                }
                match recover_tag(&raw) {
                    Some(t) => resp::tagged(&mut self.out, &t, "BAD", None, "Syntax error"),
                    None => resp::untagged(&mut self.out, "BAD Syntax error"),
                }
            }
            ServerError::LiteralTooLong { .. } => {
                // imap-next has answered BAD with the tag.
            }
            ServerError::CommandTooLong { discarded_bytes } => {
                match recover_tag(discarded_bytes.declassify()) {
                    Some(t) => {
                        resp::tagged(&mut self.out, &t, "BAD", Some("TOOBIG"), "Command too long")
                    }
                    None => resp::untagged(&mut self.out, "BAD [TOOBIG] Command too long"),
                }
            }
        }
        if self.bad >= MAX_BAD {
            self.out
                .extend_from_slice(b"* BYE Too many invalid commands\r\n");
            self.close = true;
        }
    }

    fn client(&self) -> login::Client {
        login::Client {
            service: "imap",
            origin: self.origin,
            peer: self.peer,
            local: self.local,
            secured: self.io.is_tls(),
        }
    }

    fn auth_finish(&mut self, tag: &Tag<'static>, result: Tagged) {
        if let Some(st) = result.status(tag) {
            let _ = self.server.authenticate_finish(st);
        }
    }

    async fn auth_result(&mut self, tag: &Tag<'static>, r: Result<LoggedIn, LoginError>) {
        match r {
            Ok(li) => {
                let user = self.logged_in(li);
                self.with_session(move |s, _| s.login(user)).await;
                let caps = self
                    .sess
                    .as_ref()
                    .map(|s| s.capabilities())
                    .unwrap_or_default();
                self.auth_finish(tag, Tagged::Ok(caps_code(caps), "Logged in".into()));
            }
            Err(LoginError::Temporary(t)) => {
                self.auth_finish(tag, Tagged::no(other("UNAVAILABLE"), t))
            }
            Err(LoginError::Failed(_)) => {
                self.auth_finish(
                    tag,
                    Tagged::no(other("AUTHENTICATIONFAILED"), "Authentication failed"),
                );
                self.count_failure();
            }
        }
    }

    fn count_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.ctx.config.imapd.max_auth_failures.get() {
            // After the tagged NO, which imap-next may still hold: the BYE goes out next.
            self.bye_after = Some("* BYE Too many authentication failures\r\n");
        }
    }

    /// The connection's side of a login: no longer counted as unauthenticated, and the
    /// scanner's post-login limits apply.
    fn logged_in(&mut self, li: LoggedIn) -> User {
        self.unauth_permit = None;
        self.kick = Some(self.ctx.kicks.register(&li.user));
        self.scanner = PreauthScanner::default();
        if let Some(s) = self.sess.as_mut() {
            // NOTIFY's watches share IDLE's inotify instance.
            s.notify.notifier = self
                .ctx
                .notifier
                .get_or_init(notify::Notifier::start)
                .clone();
        }
        User {
            name: li.user,
            maildir: li.maildir,
            quota_bytes: li.quota_bytes,
        }
    }

    /// LOGIN after the session allowed it ([`Action::Login`]).
    async fn login(&mut self, tag: String, user: &str, pass: &str) {
        let result = match login::password_or_remote(&self.ctx, self.client(), user, pass).await {
            Ok(login::Login::Remote(t)) => return self.proxy_login(&tag, t, None).await,
            Ok(login::Login::Local(li)) => Ok(self.logged_in(li)),
            Err(e) => Err(e),
        };
        let failed = self
            .with_session(move |s, out| s.login_done(out, &tag, result))
            .await;
        if failed == Some(true) {
            self.count_failure();
        }
    }

    /// Proxy mode: authd said the user lives on backend `t`. Logs in there; on success the
    /// client gets the backend's answer (its CAPABILITY) and [`serve`] relays; otherwise
    /// the client gets NO (`[UNAVAILABLE]` when the backend cannot be reached) and stays here.
    /// `sasl` is the AUTHENTICATE's tag (imap-next answers it), `None` for LOGIN.
    async fn proxy_login(
        &mut self,
        tag: &str,
        t: crate::proxy::Target,
        sasl: Option<&Tag<'static>>,
    ) {
        let client = self.client();
        match crate::proxy::imap::login(&self.ctx, &t, &client, tag).await {
            Ok(backend) => {
                self.unauth_permit = None;
                self.out.extend_from_slice(&backend.reply);
                let backend = crate::proxy::Backend {
                    reply: Vec::new(),
                    ..backend
                };
                self.handoff = Some(backend);
            }
            Err(f) => {
                tracing::warn!(peer = %self.peer, backend = %t.host, user = %t.user, failure = ?f,
                    "imap proxy login failed");
                let e = f.into_login_error();
                if let Some(sasl_tag) = sasl {
                    self.auth_result(sasl_tag, Err(e)).await;
                } else {
                    let tag = tag.to_owned();
                    let failed = self
                        .with_session(move |s, out| s.login_done(out, &tag, Err(e)))
                        .await;
                    if failed == Some(true) {
                        self.count_failure();
                    }
                }
            }
        }
    }

    /// STARTTLS after the session answered OK ([`Action::StartTls`]): the same transport and
    /// the same imap-next `Server` go on over TLS; what the client sent after STARTTLS in the
    /// clear is dropped unread (no command injection).
    async fn starttls(&mut self) {
        self.discard_input();
        let Some(tls) = self.ctx.tls.clone() else {
            self.close = true;
            return;
        };
        if !self.flush().await {
            self.close = true;
            return;
        }
        match self.io.start_tls(tls.acceptor(), TLS_TIMEOUT).await {
            Ok(()) => {
                if let Some(s) = self.sess.as_mut() {
                    s.tls_started();
                }
            }
            Err(e) => {
                debug!(peer = %self.peer, error = %e, "STARTTLS handshake failed");
                self.close = true;
                self.out.clear();
            }
        }
    }

    /// COMPRESS=DEFLATE after the session answered OK ([`Action::Compress`]): the stream is
    /// compressed from the next byte on; what the client sent after COMPRESS uncompressed is
    /// dropped.
    async fn compress(&mut self) {
        self.discard_input();
        if !self.flush().await {
            self.close = true;
            return;
        }
        self.io.start_deflate();
        if let Some(s) = self.sess.as_mut() {
            s.compress_started();
        }
    }
}

#[cfg(test)]
mod driver_tests {
    use super::*;

    fn sess() -> Session {
        let cfg = SessionConfig {
            hostname: "mx.example.test".into(),
            append_limit: 1 << 20,
            starttls: true,
        };
        Session::new(cfg, false, false)
    }

    /// imap-next sends the session's greeting byte for byte.
    #[test]
    fn imap_next_sends_the_session_greeting() {
        let s = sess();
        let mut server = Server::new(Options::default(), greeting(&s));
        match server.next() {
            Err(Interrupt::Io(Io::Output(b))) => assert_eq!(
                String::from_utf8(b).unwrap(),
                String::from_utf8(s.greeting()).unwrap()
            ),
            other => panic!("{other:?}"),
        }
    }
}
