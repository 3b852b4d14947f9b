//! The IMAP server: imap-next's sans-I/O `Server` driven over our own stream (so STARTTLS can
//! swap it and COMPRESS=DEFLATE can wrap it), the session state in [`session`] and the
//! commands in `cmd/`.
//!
//! Limits: before login every command (with its literals) must fit in
//! `max_preauth_command_size` — checked on the raw bytes before imap-next buffers them, so a
//! `{1000000000}` announcement closes the connection at once — and the client must log in
//! within `login_timeout_secs`. After login the bytes of one command outside its literals
//! must fit in `max_command_size` (checked the same way; a longer command gets `* BYE` and is
//! never parsed), and imap-next enforces `max_literal_size` per literal and literal plus
//! command size in total; an idle session is logged out after `idle_timeout_secs`.

pub mod session;

mod cmd;
#[doc(hidden)]
pub mod fuzzing;
mod names;
pub(crate) mod notify;
mod resp;
mod tagged;
mod transport;

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
use postern_daemon::Stream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::login::{self, LoggedIn, LoginError, Sasl, SaslStep};
use crate::{Connection, Ctx, Door};

use self::cmd::auth::Action;
use self::cmd::list;
#[cfg(test)]
use self::cmd::mailboxes;
use self::notify::{Notifier, Subscription};
use self::session::{Flow, Session, SessionConfig, User};
use self::tagged::{Tagged, other};
use self::transport::Transport;

/// Consecutive bad commands before the connection is closed.
const MAX_BAD: u32 = 20;
/// How often an IDLE session re-checks without inotify.
const POLL: Duration = Duration::from_millis(500);
/// How often an IDLE session re-checks even with inotify (changes inotify cannot see).
const IDLE_RECHECK: Duration = Duration::from_secs(30);
/// Time allowed for the STARTTLS handshake.
const TLS_TIMEOUT: Duration = Duration::from_secs(30);

/// Counts the bytes of the command being received, without buffering them: before login
/// everything, literals included ([`PreauthScanner::feed`]); after login the bytes outside
/// literals ([`PreauthScanner::feed_text`]).
#[derive(Debug, Default)]
pub(crate) struct PreauthScanner {
    cmd_bytes: u64,
    /// Bytes of the current command outside its literals.
    text_bytes: u64,
    literal_left: u64,
    tail: Vec<u8>,
}

impl PreauthScanner {
    /// Feeds bytes; false once the current command exceeds `limit`.
    pub(crate) fn feed(&mut self, data: &[u8], limit: u64) -> bool {
        let mut i = 0;
        while i < data.len() {
            if self.literal_left > 0 {
                let take = self.literal_left.min((data.len() - i) as u64);
                self.literal_left -= take;
                i += usize::try_from(take).unwrap_or(data.len());
                continue;
            }
            let b = data[i];
            i += 1;
            self.cmd_bytes += 1;
            if b == b'\n' {
                let line = self.tail.strip_suffix(b"\r").unwrap_or(&self.tail);
                if let Some(n) = literal_announcement(line) {
                    if self.cmd_bytes.saturating_add(n) > limit {
                        return false;
                    }
                    self.cmd_bytes += n;
                    self.literal_left = n;
                } else {
                    self.cmd_bytes = 0;
                }
                self.tail.clear();
            } else {
                if self.tail.len() >= 32 {
                    self.tail.remove(0);
                }
                self.tail.push(b);
            }
            if self.cmd_bytes > limit {
                return false;
            }
        }
        true
    }

    /// After login: feeds bytes and checks that no command carries more than `text_limit`
    /// bytes outside its literals (literals up to `literal_limit` are skipped; imap-next
    /// refuses bigger ones, so their announcement ends the command here). On overflow,
    /// `Err(n)`: the first `n` bytes of `data` hold only whole commands that came before
    /// the offending one (and may still be served).
    pub(crate) fn feed_text(
        &mut self,
        data: &[u8],
        text_limit: u64,
        literal_limit: u64,
    ) -> Result<(), usize> {
        let mut cmd_start = 0;
        let mut i = 0;
        while i < data.len() {
            if self.literal_left > 0 {
                let take = self.literal_left.min((data.len() - i) as u64);
                self.literal_left -= take;
                i += usize::try_from(take).unwrap_or(data.len());
                continue;
            }
            let b = data[i];
            i += 1;
            self.text_bytes += 1;
            if b == b'\n' {
                let line = self.tail.strip_suffix(b"\r").unwrap_or(&self.tail);
                match literal_announcement(line) {
                    Some(n) if n <= literal_limit => self.literal_left = n,
                    _ => {
                        self.text_bytes = 0;
                        cmd_start = i;
                    }
                }
                self.tail.clear();
            } else {
                if self.tail.len() >= 32 {
                    self.tail.remove(0);
                }
                self.tail.push(b);
            }
            if self.text_bytes > text_limit {
                return Err(cmd_start);
            }
        }
        Ok(())
    }
}

/// `…{123}` / `…{123+}` / `…~{123}` at the end of a line → 123.
fn literal_announcement(line: &[u8]) -> Option<u64> {
    let inner = line.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    let digits = digits
        .strip_suffix(b"+")
        .or_else(|| digits.strip_suffix(b"-"))
        .unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // More than 19 digits is absurd; treat it as huge.
    if digits.len() > 19 {
        return Some(u64::MAX / 2);
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The tag of a malformed command, if it has a valid one.
fn recover_tag(raw: &[u8]) -> Option<String> {
    let end = raw
        .iter()
        .position(|&b| b == b' ' || b == b'\r' || b == b'\n')?;
    let t = std::str::from_utf8(&raw[..end]).ok()?;
    Tag::validate(t).ok()?;
    Some(t.to_owned())
}

fn new_server(ctx: &Ctx) -> Server {
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
    // The greeting is written by us (see `Driver::discard_greeting`).
    let greeting = Greeting::ok(None, "ready").unwrap_or_else(|_| unreachable_greeting());
    Server::new(o, greeting)
}

fn unreachable_greeting() -> Greeting<'static> {
    Greeting {
        kind: imap_codec::imap_types::response::GreetingKind::Ok,
        code: None,
        text: imap_codec::imap_types::core::Text::unvalidated("ready"),
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
    let sess = Box::new(Session::new(cfg, io.is_tls(), trusted));
    let login_deadline = Instant::now() + ctx.config.imapd.login_timeout_secs.duration();
    let server = new_server(&ctx);
    let mut d = Driver {
        out: sess.greeting(),
        sess: Some(sess),
        server,
        discard_greeting: true,
        ctx,
        io,
        peer,
        local,
        unauth_permit,
        scanner: PreauthScanner::default(),
        auth_failures: 0,
        bad: 0,
        sasl: None,
        idle_tag: None,
        idle_sub: None,
        idle_poll: false,
        login_deadline,
        close: false,
        bye_after: None,
    };
    debug!(%peer, "imap connection");
    d.run(shutdown).await;
}

enum Input {
    Data(Vec<u8>),
    Woke,
    Closed,
}

struct Driver {
    ctx: Arc<Ctx>,
    io: Transport,
    peer: std::net::SocketAddr,
    local: std::net::SocketAddr,
    server: Server,
    discard_greeting: bool,
    out: Vec<u8>,
    sess: Option<Box<Session>>,
    unauth_permit: Option<OwnedSemaphorePermit>,
    scanner: PreauthScanner,
    auth_failures: u32,
    bad: u32,
    sasl: Option<(Tag<'static>, Sasl)>,
    idle_tag: Option<Tag<'static>>,
    idle_sub: Option<Subscription>,
    /// IDLE without inotify: poll the selected mailbox.
    idle_poll: bool,
    login_deadline: Instant,
    close: bool,
    /// Sent, then the connection closed, once imap-next has written its queued output.
    bye_after: Option<&'static str>,
}

impl Driver {
    fn authenticated(&self) -> bool {
        self.sess.as_ref().is_some_and(|s| s.is_authenticated())
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        loop {
            if self.close {
                let _ = self.flush().await;
                self.io.shutdown().await;
                return;
            }
            match self.server.next() {
                Ok(ev) => self.on_event(ev).await,
                Err(Interrupt::Io(Io::Output(b))) => {
                    if self.discard_greeting {
                        self.discard_greeting = false;
                    } else {
                        self.out.extend_from_slice(&b);
                    }
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    if let Some(bye) = self.bye_after.take() {
                        self.out.extend_from_slice(bye.as_bytes());
                        self.close = true;
                        continue;
                    }
                    if !self.flush().await {
                        return;
                    }
                    match self.read_input(&shutdown).await {
                        Input::Data(bytes) => {
                            if !self.authenticated() {
                                let limit = u64::from(
                                    self.ctx.config.imapd.max_preauth_command_size.max(256),
                                );
                                if !self.scanner.feed(&bytes, limit) {
                                    info!(peer = %self.peer, "command too long before login; closing");
                                    self.out
                                        .extend_from_slice(b"* BYE [LIMIT] Command too long\r\n");
                                    self.close = true;
                                    continue;
                                }
                            } else {
                                let imapd = &self.ctx.config.imapd;
                                let text_limit = u64::from(imapd.max_command_size.max(1024));
                                let literal_limit = u64::from(imapd.max_literal_size);
                                if let Err(whole) =
                                    self.scanner.feed_text(&bytes, text_limit, literal_limit)
                                {
                                    // The commands before the long one are served; the long
                                    // one never reaches the parser, so it changes nothing.
                                    info!(peer = %self.peer, "command too long; closing");
                                    self.server
                                        .enqueue_input(bytes.get(..whole).unwrap_or_default());
                                    self.bye_after =
                                        Some("* BYE [LIMIT] Command line too long\r\n");
                                    continue;
                                }
                            }
                            self.server.enqueue_input(&bytes);
                        }
                        Input::Woke => self.idle_update().await,
                        Input::Closed => self.close = true,
                    }
                }
                Err(Interrupt::Error(e)) => self.on_error(e).await,
            }
        }
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
        let deadline = if authenticated {
            Instant::now() + self.ctx.config.imapd.idle_timeout_secs.duration()
        } else {
            self.login_deadline
        };
        let idle = self.idle_tag.is_some();
        let poll = self.idle_poll;
        let Self { io, idle_sub, .. } = self;
        let wake = async {
            if !idle {
                return std::future::pending::<()>().await;
            }
            match idle_sub.as_mut() {
                Some(sub) => {
                    tokio::select! {
                        _ = sub.rx.changed() => {}
                        _ = tokio::time::sleep(IDLE_RECHECK) => {}
                    }
                }
                None if poll => tokio::time::sleep(POLL).await,
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
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
        }
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
        let action = self.with_session(move |s, out| s.begin(cmd, out)).await;
        let mut flow = match action {
            None => return,
            Some(Action::Done(flow)) => Some(flow),
            Some(Action::Login { tag, user, pass }) => return self.login(tag, &user, &pass).await,
            Some(Action::StartTls) => return self.starttls().await,
            Some(Action::Compress) => return self.compress().await,
        };
        while flow == Some(Flow::More) {
            if !self.flush().await {
                self.close = true;
                return;
            }
            flow = self.with_session(|s, out| s.resume(out)).await;
        }
        if flow == Some(Flow::Close) {
            self.close = true;
        }
    }

    async fn on_event(&mut self, ev: Event) {
        match ev {
            Event::GreetingSent { .. } | Event::ResponseSent { .. } => {}
            Event::CommandReceived { command } => {
                self.bad = 0;
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
                    Ok((_, SaslStep::Done(r))) => self.auth_result(&tag, r).await,
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
                            SaslStep::Done(r) => self.auth_result(&tag, r).await,
                        }
                    }
                }
            }
            Event::IdleCommandReceived { tag } => {
                self.bad = 0;
                let dir = match self.sess.as_ref().map(|s| s.idle_start()) {
                    Some(Ok(dir)) => dir,
                    Some(Err(refusal)) => {
                        if let Some(st) = refusal.status(&tag) {
                            let _ = self.server.idle_reject(st);
                        }
                        return;
                    }
                    None => return,
                };
                if let Ok(ccr) = CommandContinuationRequest::basic(None, "idling") {
                    let _ = self.server.idle_accept(ccr);
                }
                self.idle_tag = Some(tag);
                if let Some(dir) = dir {
                    let notifier = self.ctx.notifier.get_or_init(Notifier::start).clone();
                    self.idle_sub = notifier.and_then(|n| n.subscribe(&dir));
                    self.idle_poll = self.idle_sub.is_none();
                }
                self.idle_update().await;
            }
            Event::IdleDoneReceived => {
                self.idle_sub = None;
                self.idle_poll = false;
                if let Some(tag) = self.idle_tag.take() {
                    let tag = tag.inner().to_owned();
                    self.with_session(move |s, out| s.idle_done(out, &tag))
                        .await;
                }
            }
        }
    }

    async fn idle_update(&mut self) {
        self.with_session(|s, out| s.sync(out, true)).await;
    }

    async fn on_error(&mut self, e: ServerError) {
        self.bad += 1;
        match e {
            ServerError::MalformedMessage { discarded_bytes }
            | ServerError::ExpectedCrlfGotLf { discarded_bytes } => {
                let raw = discarded_bytes.declassify().to_vec();
                if self.authenticated()
                    && let Some(ext) = list::reparse(&raw)
                {
                    self.bad = 0;
                    match ext {
                        list::Extended::List {
                            tag,
                            reference,
                            patterns,
                            opts,
                        } => {
                            self.with_session(move |s, out| {
                                s.list_extended(&tag, &reference, &patterns, &opts, out)
                            })
                            .await;
                        }
                        list::Extended::Search { cmd, ret } => {
                            let tag = cmd.tag.inner().to_owned();
                            if let CommandBody::Search {
                                charset,
                                criteria,
                                uid,
                            } = cmd.body
                            {
                                self.with_session(move |s, out| {
                                    let t = if s.state.sel().is_none() {
                                        Tagged::bad("No mailbox selected")
                                    } else {
                                        s.search(&tag, charset.as_ref(), criteria, uid, &ret, out)
                                    };
                                    t.write(out, &tag);
                                })
                                .await;
                            }
                        }
                    }
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
        self.scanner = PreauthScanner::default();
        User {
            name: li.user,
            maildir: li.maildir,
            quota_bytes: li.quota_bytes,
        }
    }

    /// LOGIN after the session allowed it ([`Action::Login`]).
    async fn login(&mut self, tag: String, user: &str, pass: &str) {
        let result = login::password(&self.ctx, self.client(), user, pass)
            .await
            .map(|li| self.logged_in(li));
        let failed = self
            .with_session(move |s, out| s.login_done(out, &tag, result))
            .await;
        if failed == Some(true) {
            self.count_failure();
        }
    }

    /// STARTTLS after the session answered OK ([`Action::StartTls`]).
    async fn starttls(&mut self) {
        let Some(tls) = self.ctx.tls.clone() else {
            self.close = true;
            return;
        };
        if !self.flush().await {
            self.close = true;
            return;
        }
        let Some(Stream::Plain(tcp)) = self.io.take() else {
            self.close = true;
            return;
        };
        match tokio::time::timeout(TLS_TIMEOUT, tls.acceptor().accept(tcp)).await {
            Ok(Ok(s)) => {
                self.io.put(Stream::Tls(Box::new(s)));
                // Anything the client sent after STARTTLS in the clear is dropped with the
                // old parser state (no command injection).
                self.server = new_server(&self.ctx);
                self.discard_greeting = true;
                self.scanner = PreauthScanner::default();
                if let Some(s) = self.sess.as_mut() {
                    s.tls_started();
                }
            }
            _ => {
                debug!(peer = %self.peer, "STARTTLS handshake failed");
                self.close = true;
                self.out.clear();
            }
        }
    }

    /// COMPRESS=DEFLATE after the session answered OK ([`Action::Compress`]).
    async fn compress(&mut self) {
        if !self.flush().await {
            self.close = true;
            return;
        }
        self.io.start_deflate();
        self.server = new_server(&self.ctx);
        self.discard_greeting = true;
        if let Some(s) = self.sess.as_mut() {
            s.compress_started();
        }
    }
}
