//! ManageSieve (RFC 5804) in imapd: users manage their Sieve filters and vacation replies
//! from their mail client (Roundcube's managesieve plugin, Thunderbird add-ons,
//! `sieve-connect`).
//!
//! - The protocol is `postern-managesieve`'s sans-I/O [`Session`]; this module is its driver
//!   over the socket: reads, timeouts, STARTTLS, SASL through authd's `auth` socket (service
//!   `sieve`; its failure delay and lockouts apply), and the storage.
//! - Scripts are checked with `postern-sieve` (errors carry their line number) and kept the
//!   way Pigeonhole keeps them ([`store`]), so lmtp-deliver, `mailctl sieve` and Dovecot
//!   read the same active script.
//! - As for IMAP's LOGINDISABLED, AUTHENTICATE needs TLS (STARTTLS) unless the client is
//!   in `[imapd] trusted_networks`; the SASL capability is empty until then.
//! - Limits from `[imapd]`: connections (shared with IMAP and POP3, also per address),
//!   `max_preauth_command_size` before login (more closes the connection),
//!   `max_command_size`, `managesieve_max_script_size` (at most 1 MiB, what lmtp-deliver
//!   reads), `managesieve_max_scripts`, `login_timeout_secs`, `idle_timeout_secs`,
//!   `max_auth_failures`.
//! - Proxy mode: a user whose authd answer names another node is logged in there
//!   ([`crate::proxy::managesieve`]) and the connection relayed; a trusted proxy
//!   (`[imapd] proxy_networks`) may name the real client with `XCLIENT`.

pub mod store;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use postern_daemon::Stream;
use postern_managesieve::{Action, AuthError, Session, Settings, StoreError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::login::{Client, LoggedIn, LoginError, Sasl, SaslStep};
use crate::{Connection, Ctx};
use store::ScriptStore;

/// Time allowed for a TLS handshake after STARTTLS.
/// Logged-in idle time: RFC 5804 sets none; as IMAP's, at least 10 minutes.
const MIN_IDLE: Duration = Duration::from_secs(10 * 60);

/// The `SIEVE` capability: the extensions `postern-sieve` runs.
fn sieve_extensions() -> String {
    postern_sieve::EXTENSIONS.join(" ")
}

/// The size limit in force: the configured one, never above what the interpreter (and
/// lmtp-deliver) accept.
fn max_script_size(ctx: &Ctx) -> usize {
    (ctx.config.imapd.managesieve_max_script_size as usize)
        .min(postern_sieve::limits::MAX_SCRIPT_SIZE)
}

/// Serves one ManageSieve connection.
pub async fn serve(conn: Connection, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Connection {
        stream,
        peer,
        local,
        unauth_permit,
        ..
    } = conn;
    let secured = matches!(stream, Stream::Tls(_));
    let i = &ctx.config.imapd;
    let session = Session::new(Settings {
        implementation: "Postern".into(),
        sieve_extensions: sieve_extensions(),
        max_redirects: u32::try_from(postern_sieve::limits::MAX_REDIRECTS).ok(),
        starttls: ctx.tls.is_some() && !secured,
        secured,
        trusted: ctx.is_trusted(peer.ip()),
        max_auth_failures: i.max_auth_failures.get(),
        max_line: i.max_command_size as usize,
        max_preauth: i.max_preauth_command_size as usize,
        max_script_size: max_script_size(&ctx),
        xclient: ctx.is_proxy(peer.ip()),
    });
    let login_deadline = Instant::now() + i.login_timeout_secs.duration();
    let mut d = Driver {
        stream: Some(stream),
        wbuf: Vec::with_capacity(1024),
        ctx,
        peer,
        local,
        session,
        sasl: None,
        user: None,
        unauth_permit,
        login_deadline,
        kick: None,
        origin: None,
        handoff: None,
    };
    debug!(%peer, "managesieve connection");
    d.run(&shutdown).await;
    if let Some(backend) = d.handoff.take() {
        d.relay(backend, &shutdown).await;
    }
    if let Some(mut s) = d.stream.take() {
        let _ = tokio::time::timeout(Duration::from_secs(5), s.shutdown()).await;
    }
}

enum Flow {
    Continue,
    Close,
}

struct Driver {
    stream: Option<Stream>,
    wbuf: Vec<u8>,
    ctx: Arc<Ctx>,
    peer: SocketAddr,
    local: SocketAddr,
    session: Session,
    sasl: Option<Sasl>,
    /// The logged-in user and their scripts.
    user: Option<(LoggedIn, ScriptStore)>,
    unauth_permit: Option<OwnedSemaphorePermit>,
    login_deadline: Instant,
    /// Logged in: the session's place in the kick registry (`crate::kick`).
    kick: Option<crate::kick::Registration>,
    /// The real client, as a trusted proxy's `XCLIENT` named it.
    origin: Option<SocketAddr>,
    /// Proxy mode: logged in at the user's backend; [`serve`] relays.
    handoff: Option<crate::proxy::Backend>,
}

impl Driver {
    fn client(&self) -> Client {
        Client {
            origin: self.origin,
            service: "sieve",
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
        let greeting = self.session.greeting();
        if let Flow::Close = self.perform(greeting).await {
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            if self.session.is_closed() || self.flush().await.is_err() {
                return;
            }
            let deadline = if self.user.is_some() {
                Instant::now() + self.idle_timeout()
            } else {
                self.login_deadline
            };
            let Some(stream) = self.stream.as_mut() else {
                return;
            };
            enum Event {
                Shutdown,
                Timeout,
                Kicked,
                Read(std::io::Result<usize>),
            }
            let event = if self.kick.as_ref().is_some_and(|k| k.is_kicked()) {
                Event::Kicked
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => Event::Shutdown,
                    _ = tokio::time::sleep_until(deadline) => Event::Timeout,
                    () = crate::kick::kicked(self.kick.as_ref()) => Event::Kicked,
                    r = stream.read(&mut buf) => Event::Read(r),
                }
            };
            let started = std::time::Instant::now();
            let actions = match event {
                Event::Shutdown => self.session.shutdown(),
                Event::Kicked => {
                    info!(peer = %self.peer, user = self.user_name(), "managesieve: kicked");
                    self.session.kicked()
                }
                Event::Timeout => {
                    info!(peer = %self.peer, user = self.user_name(), "managesieve: timeout");
                    self.session.timeout()
                }
                Event::Read(Ok(0)) => return,
                Event::Read(Ok(n)) => self.session.input(&buf[..n]),
                Event::Read(Err(e)) => {
                    debug!(peer = %self.peer, error = %e, "managesieve: read failed");
                    return;
                }
            };
            let flow = self.perform(actions).await;
            // The commands this read brought (and any it let run), answered now.
            crate::metrics::managesieve_commands(&self.session.take_commands(), started);
            if let Flow::Close = flow {
                return;
            }
        }
    }

    fn user_name(&self) -> &str {
        self.user.as_ref().map_or("", |(l, _)| l.user.as_str())
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
                    if self.wbuf.len() >= 64 * 1024 && self.flush().await.is_err() {
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
                Action::AuthStart { mechanism, initial } => {
                    match Sasl::start(
                        &self.ctx,
                        self.client(),
                        mechanism.as_str(),
                        initial.as_deref(),
                    )
                    .await
                    {
                        Ok((sasl, step)) => {
                            self.sasl = Some(sasl);
                            match self.remote_login(step).await {
                                Ok(step) => self.sasl_step(step),
                                Err(flow) => return flow,
                            }
                        }
                        Err(e) => self.session.auth_done(Err(auth_error(e))),
                    }
                }
                Action::AuthContinue(bytes) => {
                    let step = match self.sasl.as_mut() {
                        Some(s) => s.respond(&self.ctx, &bytes).await,
                        None => SaslStep::Done(Err(LoginError::Temporary(
                            "authentication exchange lost".into(),
                        ))),
                    };
                    match self.remote_login(step).await {
                        Ok(step) => self.sasl_step(step),
                        Err(flow) => return flow,
                    }
                }
                Action::AuthCancel => {
                    self.sasl = None;
                    continue;
                }
                Action::ClientAddress(args) => {
                    // Offered and accepted only from `[imapd] proxy_networks`.
                    match crate::proxy::xclient_origin(&args.join(" ")) {
                        Some(origin) => self.origin = Some(origin),
                        None => debug!(peer = %self.peer, "managesieve: XCLIENT without ADDR"),
                    }
                    continue;
                }
                Action::Unauthenticated => {
                    info!(peer = %self.peer, user = self.user_name(), "managesieve: unauthenticate");
                    self.user = None;
                    // The login timer starts again (what was left of it ran out long ago).
                    self.login_deadline =
                        Instant::now() + self.ctx.config.imapd.login_timeout_secs.duration();
                    continue;
                }
                Action::Store(req) => {
                    let Some((logged, store)) = self.user.as_ref() else {
                        return Flow::Close;
                    };
                    let (user, store) = (logged.user.clone(), store.clone());
                    let what = format!("{req:?}");
                    let r = tokio::task::spawn_blocking(move || store.handle(req, &compile))
                        .await
                        .unwrap_or_else(|e| {
                            warn!(error = %e, "managesieve: storage task failed");
                            Err(StoreError::TryLater("internal error".into()))
                        });
                    match &r {
                        Ok(_) => debug!(%user, request = %what, "managesieve"),
                        Err(e) => info!(%user, request = %what, error = ?e, "managesieve: refused"),
                    }
                    self.session.stored(r)
                }
            };
            match more {
                // Follow-up actions run before whatever was queued after this one.
                Ok(more) => {
                    for a in more.into_iter().rev() {
                        queue.push_front(a);
                    }
                }
                Err(_) => {
                    warn!(peer = %self.peer, "managesieve: driver out of step with the session");
                    return Flow::Close;
                }
            }
        }
        Flow::Continue
    }

    fn sasl_step(
        &mut self,
        step: SaslStep,
    ) -> Result<Vec<Action>, postern_managesieve::UnexpectedCompletion> {
        match step {
            SaslStep::Challenge(c) => self.session.auth_challenge(&c),
            SaslStep::Done(r) => {
                self.sasl = None;
                match r {
                    Ok(logged) => {
                        let home = logged.home.to_string_lossy().into_owned();
                        let active = self.ctx.config.sieve_script_path(&logged.user, &home);
                        let store = ScriptStore::new(
                            logged.home.clone(),
                            active,
                            self.ctx.config.imapd.managesieve_max_scripts as usize,
                            max_script_size(&self.ctx) as u64,
                        );
                        let user = logged.user.clone();
                        self.kick = Some(self.ctx.kicks.register(&user));
                        self.user = Some((logged, store));
                        self.unauth_permit = None;
                        self.session.auth_done(Ok(user))
                    }
                    Err(e) => self.session.auth_done(Err(auth_error(e))),
                }
            }
        }
    }

    /// Proxy mode: when authd said the user lives on another node, logs in there; success
    /// ends this session (`Err`: [`serve`] relays), a failure becomes the SASL result.
    async fn remote_login(&mut self, step: SaslStep) -> Result<SaslStep, Flow> {
        let SaslStep::Done(Err(_)) = &step else {
            return Ok(step);
        };
        let Some(t) = self.sasl.as_mut().and_then(Sasl::remote) else {
            return Ok(step);
        };
        self.sasl = None;
        match crate::proxy::managesieve::login(&self.ctx, &t, &self.client()).await {
            Ok(backend) => {
                self.unauth_permit = None;
                self.handoff = Some(backend);
                Err(Flow::Close)
            }
            Err(f) => {
                warn!(peer = %self.client().client_addr(), user = %t.user, backend = %t.host, failure = ?f,
                    "managesieve: proxy login failed");
                Ok(SaslStep::Done(Err(f.into_login_error())))
            }
        }
    }

    /// Proxy mode: the backend's answer to the login, then bytes both ways until one side
    /// ends (a backend that goes away: `BYE (TRYLATER)`).
    async fn relay(&mut self, backend: crate::proxy::Backend, shutdown: &CancellationToken) {
        if self.flush().await.is_err() {
            return;
        }
        let Some(stream) = self.stream.take() else {
            return;
        };
        let rest = self.session.take_input();
        let idle = self.ctx.config.proxy.idle_timeout_secs.duration();
        let proto = crate::proxy::relay::Proto::ManageSieve;
        let end =
            crate::proxy::relay::run_proto(stream, backend, rest, proto, idle, shutdown).await;
        debug!(peer = %self.peer, ?end, "managesieve proxy session ended");
    }

    async fn start_tls(&mut self) -> bool {
        if self.flush().await.is_err() {
            return false;
        }
        let (Some(tls), Some(Stream::Plain(tcp))) = (self.ctx.tls.as_ref(), self.stream.take())
        else {
            return false;
        };
        self.stream = crate::tls_accept(Some(tls), tcp, self.peer, "managesieve").await;
        self.stream.is_some()
    }
}

fn auth_error(e: LoginError) -> AuthError {
    match e {
        LoginError::Failed(r) => AuthError::Failed(r),
        LoginError::Temporary(t) => AuthError::Temporary(t),
    }
}

/// Checks a script with the interpreter: its first error, with the line number.
fn compile(script: &str) -> Result<(), String> {
    postern_sieve::compile(script)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::{compile, sieve_extensions};

    #[test]
    fn editheader_is_advertised_and_checkscript_accepts_it() {
        assert!(sieve_extensions().split(' ').any(|e| e == "editheader"));
        // What Roundcube's filter form writes for "add header" / "delete header".
        let script = "require [\"editheader\"];\r\n\
            if header :contains \"subject\" \"x\" {\r\n\
            \taddheader :last \"X-Tag\" \"tagged\";\r\n\
            \tdeleteheader :index 1 :last :contains \"X-Spam\" \"yes\";\r\n}\r\n";
        assert_eq!(compile(script), Ok(()));
        let e = compile("require \"editheader\";\naddheader \"Bad Name\" \"v\";\n")
            .expect_err("an invalid field name");
        assert!(e.starts_with("line 2:"), "{e}");
    }
}
