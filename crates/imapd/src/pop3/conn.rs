//! The POP3 driver: reads lines from the [`Stream`], feeds [`Session`], does the work its
//! actions ask for (authd, the Maildir, TLS) and writes the replies.
//!
//! Replies to pipelined commands are buffered and flushed when the input runs dry (RFC 2449
//! PIPELINING). Input left in the buffer when STLS starts is thrown away, so nothing sent in
//! clear can be taken as sent under TLS.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_daemon::Stream;
use postern_maildir::Maildir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::session::{Action, FetchError, Maildrop, Session, Settings};
use super::store::{self, Mailbox};
use crate::login::{self, Client, LoggedIn, LoginError, Sasl, SaslStep};
use crate::{Connection, Ctx, Door};

/// RFC 1939 §3: the autologout timer is at least 10 minutes.
const MIN_IDLE: Duration = Duration::from_secs(10 * 60);
/// Time allowed for a TLS handshake after STLS.
/// Bytes of one over-long line read (and thrown away) before the connection is closed.
const MAX_DISCARD: usize = 64 * 1024;
/// Replies buffered before they are written even if more commands are waiting.
const WRITE_BATCH: usize = 64 * 1024;

/// Serves one POP3 connection.
pub async fn serve(conn: Connection, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Connection {
        stream,
        peer,
        local,
        door,
        unauth_permit,
    } = conn;
    let secured = matches!(stream, Stream::Tls(_));
    let session = Session::new(Settings {
        secured,
        trusted: ctx.is_trusted(peer.ip()),
        stls: door == Door::Pop3 && ctx.tls.is_some() && !secured,
        max_auth_failures: ctx.config.imapd.max_auth_failures.get(),
    });
    let login_deadline = Instant::now() + ctx.config.imapd.login_timeout_secs.duration();
    let mut d = Driver {
        stream: Some(stream),
        rbuf: Vec::with_capacity(1024),
        wbuf: Vec::with_capacity(1024),
        ctx,
        peer,
        local,
        session,
        sasl: None,
        mailbox: None,
        user: None,
        unauth_permit,
        login_deadline,
        origin: None,
        handoff: None,
        kick: None,
    };
    debug!(%peer, door = door.name(), "pop3 connection");
    d.run(&shutdown).await;
    match (d.handoff.take(), d.stream.take()) {
        (Some(backend), Some(stream)) => {
            // Proxy mode: only the streams stay.
            let rest = std::mem::take(&mut d.rbuf);
            let idle = d.ctx.config.proxy.idle_timeout_secs.duration();
            drop(d);
            let end = crate::proxy::relay::run(stream, backend, rest, false, idle, &shutdown).await;
            debug!(%peer, ?end, "pop3 proxy session ended");
        }
        (_, stream) => {
            d.stream = stream;
            d.finish().await;
        }
    }
}

enum Flow {
    Continue,
    Close,
}

struct Driver {
    stream: Option<Stream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    local: SocketAddr,
    session: Session,
    sasl: Option<Sasl>,
    mailbox: Option<Mailbox>,
    user: Option<String>,
    unauth_permit: Option<OwnedSemaphorePermit>,
    login_deadline: Instant,
    /// The real client, as a trusted proxy named it with XCLIENT (`[imapd] proxy_networks`).
    origin: Option<SocketAddr>,
    /// Logged in at a cluster backend: the session ends and the bytes are relayed.
    handoff: Option<crate::proxy::Backend>,
    /// Logged in here: the session's place in the kick registry (`crate::kick`).
    kick: Option<crate::kick::Registration>,
}

/// What one read produced.
enum Input {
    Line(Vec<u8>),
    TooLong,
    /// An over-long line went on past [`MAX_DISCARD`].
    Flood,
    Eof,
    Timeout,
    Shutdown,
    /// The user's sessions were kicked (`crate::kick`).
    Kicked,
    Error,
}

impl Driver {
    fn client(&self) -> Client {
        Client {
            origin: self.origin,
            service: "pop3",
            peer: self.peer,
            local: self.local,
            secured: self.session.is_secured(),
        }
    }

    fn idle_timeout(&self) -> Duration {
        self.ctx
            .config
            .imapd
            .idle_timeout_secs
            .duration()
            .max(MIN_IDLE)
    }

    async fn run(&mut self, shutdown: &CancellationToken) {
        let mut greeting = self.session.greeting();
        if self.ctx.is_proxy(self.peer.ip())
            && let Action::Reply(g) = &mut greeting
            && g.starts_with(b"+OK ")
        {
            // Dovecot's mark: a proxy sends XCLIENT only to a backend that greets with it.
            g.splice(4..4, b"[XCLIENT] ".iter().copied());
        }
        if let Flow::Close = self.perform(vec![greeting]).await {
            return;
        }
        loop {
            // Counted and timed until its replies are queued (dropped at the loop's end).
            let mut _timer = None;
            let actions = match self.next_input(shutdown).await {
                Input::Line(line) if let Some(a) = self.xclient(&line) => a,
                Input::Line(line) => {
                    _timer = self
                        .session
                        .command_name(&line)
                        .map(crate::metrics::CommandTimer::pop3);
                    self.session.line(&line)
                }
                Input::TooLong => self.session.line_too_long(),
                Input::Flood => {
                    info!(peer = %self.peer, "pop3: endless line, closing");
                    self.session.flooded()
                }
                Input::Eof | Input::Error => return,
                Input::Timeout => {
                    info!(peer = %self.peer, user = self.user.as_deref().unwrap_or(""), "pop3: timeout");
                    self.session.timed_out()
                }
                Input::Shutdown => self.session.shutting_down(),
                Input::Kicked => {
                    info!(peer = %self.peer, user = self.user.as_deref().unwrap_or(""), "pop3: kicked");
                    self.session.kicked()
                }
            };
            if let Flow::Close = self.perform(actions).await {
                return;
            }
        }
    }

    /// The next line, its line ending removed; waits for input (flushing replies first).
    async fn next_input(&mut self, shutdown: &CancellationToken) -> Input {
        // Kicked: the command before has finished; no further one starts.
        if self.kick.as_ref().is_some_and(|k| k.is_kicked()) {
            return Input::Kicked;
        }
        let mut discarding = 0usize;
        let mut scanned = 0usize;
        loop {
            let max = self.session.max_line();
            if let Some(i) = self.rbuf[scanned..].iter().position(|&b| b == b'\n') {
                let end = scanned + i;
                if discarding > 0 {
                    self.rbuf.drain(..=end);
                    return Input::TooLong;
                }
                if end + 1 > max {
                    self.rbuf.drain(..=end);
                    return Input::TooLong;
                }
                let mut line: Vec<u8> = self.rbuf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Input::Line(line);
            }
            if discarding > 0 || self.rbuf.len() > max {
                discarding += self.rbuf.len();
                self.rbuf.clear();
                if discarding > MAX_DISCARD {
                    return Input::Flood;
                }
            }
            scanned = self.rbuf.len();
            if self.flush().await.is_err() {
                return Input::Error;
            }
            let deadline = if self.session.is_authenticated() {
                Instant::now() + self.idle_timeout()
            } else {
                self.login_deadline
            };
            let Some(stream) = self.stream.as_mut() else {
                return Input::Error;
            };
            let mut chunk = [0u8; 4096];
            let n = tokio::select! {
                _ = shutdown.cancelled() => return Input::Shutdown,
                _ = tokio::time::sleep_until(deadline) => return Input::Timeout,
                () = crate::kick::kicked(self.kick.as_ref()) => return Input::Kicked,
                r = stream.read(&mut chunk) => match r {
                    Ok(0) => return Input::Eof,
                    Ok(n) => n,
                    Err(e) => {
                        debug!(peer = %self.peer, error = %e, "pop3: read failed");
                        return Input::Error;
                    }
                },
            };
            self.rbuf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if self.wbuf.is_empty() {
            return Ok(());
        }
        let timeout = self.idle_timeout();
        let Some(stream) = self.stream.as_mut() else {
            return Err(std::io::ErrorKind::NotConnected.into());
        };
        let r = crate::write_within(stream, &self.wbuf, timeout).await;
        self.wbuf.clear();
        r
    }

    async fn perform(&mut self, actions: Vec<Action>) -> Flow {
        let mut queue: VecDeque<Action> = actions.into();
        while let Some(action) = queue.pop_front() {
            let more = match action {
                Action::Reply(bytes) => {
                    self.wbuf.extend_from_slice(&bytes);
                    if self.wbuf.len() >= WRITE_BATCH && self.flush().await.is_err() {
                        return Flow::Close;
                    }
                    continue;
                }
                Action::Close => {
                    let _ = self.flush().await;
                    return Flow::Close;
                }
                Action::StartTls => {
                    if !self.start_tls().await {
                        return Flow::Close;
                    }
                    self.session.tls_started()
                }
                Action::Login { user, pass } => {
                    let r = login::password_or_remote(&self.ctx, self.client(), &user, &pass).await;
                    match r {
                        Ok(login::Login::Remote(t)) => self.proxy_login(t).await,
                        Ok(login::Login::Local(li)) => {
                            let r = self.open_maildrop(Ok(li)).await;
                            self.session.login_done(r)
                        }
                        Err(e) => self.session.login_done(Err(e)),
                    }
                }
                Action::AuthStart { mechanism, initial } => {
                    match Sasl::start(&self.ctx, self.client(), mechanism, initial.as_deref()).await
                    {
                        Ok((sasl, step)) => {
                            self.sasl = Some(sasl);
                            self.sasl_step(step).await
                        }
                        Err(e) => self.session.login_done(Err(e)),
                    }
                }
                Action::AuthContinue(bytes) => {
                    let step = match self.sasl.as_mut() {
                        Some(s) => s.respond(&self.ctx, &bytes).await,
                        None => SaslStep::Done(Err(LoginError::Temporary(
                            "authentication exchange lost".into(),
                        ))),
                    };
                    self.sasl_step(step).await
                }
                Action::AuthCancel => {
                    self.sasl = None;
                    continue;
                }
                Action::Fetch {
                    msg,
                    uid,
                    body_lines,
                } => {
                    let r = self
                        .with_mailbox(move |mb| store::read(mb, uid))
                        .await
                        .unwrap_or_else(|e| Err(FetchError::Temporary(e)));
                    self.session.fetched(msg, body_lines, r)
                }
                Action::Update { expunge, seen } => {
                    let n = expunge.len();
                    let r = self
                        .with_mailbox(move |mb| store::update(mb, &expunge, &seen))
                        .await
                        .and_then(|r| r);
                    match &r {
                        Ok(()) => info!(
                            user = self.user.as_deref().unwrap_or(""),
                            deleted = n,
                            "pop3: update"
                        ),
                        Err(e) => warn!(
                            user = self.user.as_deref().unwrap_or(""),
                            error = %e,
                            "pop3: update failed"
                        ),
                    }
                    // Nothing is left to mark at disconnect.
                    self.mailbox = None;
                    self.session.updated(r)
                }
            };
            // Follow-up actions run before whatever was queued after this one.
            for a in more.into_iter().rev() {
                queue.push_front(a);
            }
        }
        Flow::Continue
    }

    async fn sasl_step(&mut self, step: SaslStep) -> Vec<Action> {
        match step {
            SaslStep::Challenge(c) => self.session.auth_challenge(&c),
            SaslStep::Done(r) => {
                if let Some(t) = self.sasl.take().and_then(|mut s| s.remote()) {
                    return self.proxy_login(t).await;
                }
                let r = self.open_maildrop(r).await;
                self.session.login_done(r)
            }
        }
    }

    /// `XCLIENT ADDR=… PORT=…` before login (what a Dovecot or Postern front sends): believed
    /// from `[imapd] proxy_networks`, refused from anyone else. `None` for other lines.
    fn xclient(&mut self, line: &[u8]) -> Option<Vec<Action>> {
        let word = line.get(..8)?;
        if !word.eq_ignore_ascii_case(b"XCLIENT ") || self.session.is_authenticated() {
            return None;
        }
        let reply = |t: &str| Action::Reply(format!("{t}\r\n").into_bytes());
        if !self.ctx.is_proxy(self.peer.ip()) {
            return Some(vec![reply("-ERR You are not from trusted IP")]);
        }
        let args = String::from_utf8_lossy(&line[8..]);
        Some(vec![match crate::proxy::xclient_origin(&args) {
            Some(o) => {
                debug!(peer = %self.peer, origin = %o, "pop3: client named by a trusted proxy");
                self.origin = Some(o);
                reply("+OK")
            }
            None => reply("-ERR Invalid XCLIENT arguments"),
        }])
    }

    /// Proxy mode: authd said the user lives on backend `t`. Logs in there; on success the
    /// client gets the backend's `+OK` and [`serve`] relays; otherwise a failure here.
    async fn proxy_login(&mut self, t: crate::proxy::Target) -> Vec<Action> {
        let client = self.client();
        match crate::proxy::pop3::login(&self.ctx, &t, &client).await {
            Ok(backend) => {
                self.unauth_permit = None;
                let reply = Action::Reply(backend.reply.clone());
                self.handoff = Some(crate::proxy::Backend {
                    reply: Vec::new(),
                    ..backend
                });
                vec![reply, Action::Close]
            }
            Err(f) => {
                warn!(peer = %self.peer, backend = %t.host, user = %t.user, failure = ?f,
                    "pop3 proxy login failed");
                self.session.login_done(Err(f.into_login_error()))
            }
        }
    }

    /// After a successful login: INBOX opened and its snapshot taken.
    async fn open_maildrop(
        &mut self,
        r: Result<LoggedIn, LoginError>,
    ) -> Result<Maildrop, LoginError> {
        let logged = r?;
        let maildir: Maildir = logged.maildir.clone();
        let opened = tokio::task::spawn_blocking(move || store::open(&maildir))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        match opened {
            Ok((mb, drop)) => {
                self.mailbox = Some(mb);
                self.kick = Some(self.ctx.kicks.register(&logged.user));
                self.user = Some(logged.user);
                self.unauth_permit = None;
                Ok(drop)
            }
            Err(e) => {
                warn!(user = %logged.user, error = %e, "pop3: cannot open INBOX");
                Err(LoginError::Temporary("Couldn't open INBOX.".into()))
            }
        }
    }

    /// Runs `f` on the mailbox in a blocking thread.
    async fn with_mailbox<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Mailbox) -> T + Send + 'static,
    ) -> Result<T, String> {
        let Some(mut mb) = self.mailbox.take() else {
            return Err("mailbox not open".into());
        };
        match tokio::task::spawn_blocking(move || {
            let r = f(&mut mb);
            (mb, r)
        })
        .await
        {
            Ok((mb, r)) => {
                self.mailbox = Some(mb);
                Ok(r)
            }
            Err(e) => {
                warn!(error = %e, "pop3: mailbox task failed");
                Err("internal error".into())
            }
        }
    }

    async fn start_tls(&mut self) -> bool {
        if self.flush().await.is_err() {
            return false;
        }
        // RFC 2595 §4 / CVE-2011-0411 style injection: nothing read before the handshake counts.
        self.rbuf.clear();
        let (Some(tls), Some(Stream::Plain(tcp))) = (self.ctx.tls.as_ref(), self.stream.take())
        else {
            return false;
        };
        self.stream = crate::tls_accept(Some(tls), tcp, self.peer, "pop3").await;
        self.stream.is_some()
    }

    /// The connection is over: what was read without QUIT stays read; close the stream.
    async fn finish(&mut self) {
        let seen = self.session.seen_on_disconnect();
        if !seen.is_empty() && self.mailbox.is_some() {
            let _ = self
                .with_mailbox(move |mb| store::mark_seen(mb, &seen))
                .await;
        }
        if let Some(mut s) = self.stream.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await;
        }
    }
}
