//! Logging in, shared by IMAP and POP3: passwords and SASL through authd's `auth` socket (so
//! its delays and lockouts apply), then the user's Maildir from authd's `auth-userdb`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use postern_auth_proto::client::{AuthClient, AuthOutcome, AuthStep, ClientError, UserdbClient};
use postern_auth_proto::dovecot::AuthParams;
use postern_auth_proto::userdb::{mail_location, parse_quota_rule};
use postern_maildir::Maildir;
use tracing::{info, warn};

use crate::Ctx;

/// Time allowed for one exchange with authd (its brute-force delays stay below this).
const AUTHD_TIMEOUT: Duration = Duration::from_secs(30);

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    /// The account as authd names it.
    pub user: String,
    /// The user's home directory.
    pub home: PathBuf,
    /// The Maildir root (INBOX).
    pub maildir: Maildir,
    /// Storage quota in bytes from the userdb's `quota_rule`, if any.
    pub quota_bytes: Option<u64>,
}

/// Why a login did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong credentials (or locked out); the text is authd's `reason=` if any.
    Failed(Option<String>),
    /// authd or the database could not decide; try again later.
    Temporary(String),
}

/// Where a connection comes from, for authd's `rip`/`lip`/`secured` and the logs.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The real client as a trusted proxy named it (`[imapd] proxy_networks`: IMAP `ID
    /// ("x-originating-ip" …)`, POP3 `XCLIENT ADDR=`); authd's `rip` and the logs use it.
    /// `peer` stays the proxy, which decides `secured`.
    pub origin: Option<SocketAddr>,
    /// `imap` or `pop3`.
    pub service: &'static str,
    /// The client.
    pub peer: SocketAddr,
    /// Our address.
    pub local: SocketAddr,
    /// TLS is active on the connection.
    pub secured: bool,
}

impl Client {
    fn params(&self, ctx: &Ctx) -> AuthParams {
        let mut p = AuthParams::new(self.service);
        p.rip = Some(crate::canonical(self.client_addr().ip()));
        p.lip = Some(crate::canonical(self.local.ip()));
        // authd refuses plaintext mechanisms on unsecured non-local connections; our own
        // policy (TLS or a trusted network) has already been applied when we get here.
        p.secured = self.secured || ctx.is_trusted(self.peer.ip());
        p
    }

    /// The end client: the `origin` a trusted proxy named, else the peer.
    pub fn client_addr(&self) -> SocketAddr {
        self.origin.unwrap_or(self.peer)
    }
}

/// A SASL exchange in progress with authd (AUTHENTICATE, POP3 AUTH).
pub struct Sasl {
    client: AuthClient,
    who: Client,
    /// What the client sent, for passing its credentials on to a backend (proxy mode).
    creds: crate::proxy::SaslCreds,
    /// Set when authd said the user lives on another node (see [`Sasl::remote`]).
    remote: Option<crate::proxy::Target>,
}

/// The result of one SASL step.
pub enum SaslStep {
    /// Send this challenge (raw bytes; base64 them) and call [`Sasl::respond`] with the answer.
    Challenge(Vec<u8>),
    /// Finished.
    Done(Result<LoggedIn, LoginError>),
}

impl Sasl {
    /// Starts `mechanism` (PLAIN or LOGIN) with an optional initial response (raw bytes).
    pub async fn start(
        ctx: &Ctx,
        who: Client,
        mechanism: &str,
        initial: Option<&[u8]>,
    ) -> Result<(Self, SaslStep), LoginError> {
        let mut client = connect(ctx).await?;
        let step = client
            .authenticate(mechanism, &who.params(ctx), initial)
            .await;
        let mut creds = crate::proxy::SaslCreds::new(mechanism);
        if let Some(i) = initial {
            creds.response(i);
        }
        let mut sasl = Self {
            client,
            who,
            creds,
            remote: None,
        };
        let step = sasl.finish_step(ctx, step).await;
        Ok((sasl, step))
    }

    /// Answers the last challenge.
    pub async fn respond(&mut self, ctx: &Ctx, response: &[u8]) -> SaslStep {
        self.creds.response(response);
        let step = self.client.respond(response).await;
        self.finish_step(ctx, step).await
    }

    /// After [`SaslStep::Done`]: the backend to log in to when authd said the user lives on
    /// another node (proxy mode; `Done` then carries a temporary failure for callers that do
    /// not proxy, such as ManageSieve).
    pub fn remote(&mut self) -> Option<crate::proxy::Target> {
        self.remote.take()
    }

    async fn finish_step(&mut self, ctx: &Ctx, step: Result<AuthStep, ClientError>) -> SaslStep {
        match step {
            Ok(AuthStep::Challenge(c)) => SaslStep::Challenge(c),
            Ok(AuthStep::Done(outcome)) => {
                let creds = self.creds.take();
                match outcome_to_login(ctx, self.who, outcome, creds).await {
                    Ok(Login::Local(li)) => SaslStep::Done(Ok(li)),
                    Ok(Login::Remote(t)) => {
                        self.remote = Some(t);
                        SaslStep::Done(Err(not_here()))
                    }
                    Err(e) => SaslStep::Done(Err(e)),
                }
            }
            Err(e) => SaslStep::Done(Err(unavailable("auth", &e))),
        }
    }
}

/// The mechanisms offered: what authd offers among the ones we speak.
pub const MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];

/// A successful login: here, or on the backend authd named (proxy mode).
#[derive(Debug)]
pub enum Login {
    /// The user's mailbox is on this node.
    Local(LoggedIn),
    /// authd answered with `proxy` and `host=`: log in there and relay.
    Remote(crate::proxy::Target),
}

/// The refusal for a user on another node where the caller does not proxy.
fn not_here() -> LoginError {
    LoginError::Temporary("mailbox is served by another server".into())
}

/// Checks a user name and password (IMAP LOGIN, POP3 USER/PASS); a user who lives on
/// another node is refused with a temporary failure (see [`password_or_remote`]).
pub async fn password(
    ctx: &Ctx,
    who: Client,
    user: &str,
    pass: &str,
) -> Result<LoggedIn, LoginError> {
    match password_or_remote(ctx, who, user, pass).await? {
        Login::Local(li) => Ok(li),
        Login::Remote(_) => Err(not_here()),
    }
}

/// Checks a user name and password (IMAP LOGIN, POP3 USER/PASS); a user on another node is
/// [`Login::Remote`], with these credentials to pass on.
pub async fn password_or_remote(
    ctx: &Ctx,
    who: Client,
    user: &str,
    pass: &str,
) -> Result<Login, LoginError> {
    if user.is_empty() || user.contains(['\0', '\r', '\n', '\t']) || pass.contains('\0') {
        return Err(LoginError::Failed(None));
    }
    let mut client = connect(ctx).await?;
    match client.plain(user, pass, &who.params(ctx)).await {
        Ok(outcome) => {
            let creds = Some(crate::proxy::Credentials::new(user, pass));
            outcome_to_login(ctx, who, outcome, creds).await
        }
        Err(e) => Err(unavailable("auth", &e)),
    }
}

async fn connect(ctx: &Ctx) -> Result<AuthClient, LoginError> {
    let path = ctx.config.socket_path(&ctx.config.authd.auth_socket);
    AuthClient::connect_with_timeout(&path, AUTHD_TIMEOUT)
        .await
        .map_err(|e| unavailable("auth", &e))
}

fn unavailable(what: &str, e: &ClientError) -> LoginError {
    warn!(error = %e, "authd {what} socket unavailable");
    LoginError::Temporary(format!("authentication service unavailable ({what})"))
}

async fn outcome_to_login(
    ctx: &Ctx,
    who: Client,
    outcome: AuthOutcome,
    creds: Option<crate::proxy::Credentials>,
) -> Result<Login, LoginError> {
    match outcome {
        AuthOutcome::Ok { user, extra } => {
            // authd's Dovecot proxy fields: the mailbox lives on another node. It is never
            // opened here (that would create an empty Maildir on the front).
            if let Some(t) = crate::proxy::target(&ctx.config.proxy, who.service, &user, &extra) {
                // A login a trusted proxy passed on is not passed on again: two nodes that
                // each say the user lives on the other would chain connections forever.
                if who.origin.is_some() {
                    warn!(%user, peer = %who.client_addr(), via = %who.peer, backend = %t.host,
                        "a proxied login would be proxied again (directories disagree?); refused");
                    return Err(not_here());
                }
                let Some(creds) = creds else {
                    warn!(%user, "proxy login without credentials to pass on");
                    return Err(not_here());
                };
                info!(user = %user, peer = %who.client_addr(), service = who.service, tls = who.secured,
                    backend = %t.host, "login (proxy)");
                crate::metrics::login(who.service, "ok");
                return Ok(Login::Remote(t.with_credentials(creds)));
            }
            let logged = open_user(ctx, &user).await?;
            match who.origin {
                Some(_) => info!(user = %logged.user, peer = %who.client_addr(), via = %who.peer,
                    service = who.service, tls = who.secured, "login"),
                None => info!(user = %logged.user, peer = %who.peer, service = who.service,
                    tls = who.secured, "login"),
            }
            crate::metrics::login(who.service, "ok");
            Ok(Login::Local(logged))
        }
        AuthOutcome::Fail { temp: true, reason } => {
            crate::metrics::login(who.service, "tempfail");
            Err(LoginError::Temporary(reason.unwrap_or_else(|| {
                "temporary authentication failure".into()
            })))
        }
        AuthOutcome::Fail { reason, .. } => {
            info!(peer = %who.client_addr(), service = who.service, "login failed");
            crate::metrics::login(who.service, "fail");
            Err(LoginError::Failed(reason))
        }
    }
}

/// Looks the user up in authd's userdb and opens (creating if needed) their Maildir.
pub async fn open_user(ctx: &Ctx, user: &str) -> Result<LoggedIn, LoginError> {
    let path = ctx.config.socket_path(&ctx.config.authd.userdb_socket);
    let mut db = UserdbClient::connect_with_timeout(&path, AUTHD_TIMEOUT)
        .await
        .map_err(|e| unavailable("userdb", &e))?;
    let fields = match db.user(user, "imap").await {
        Ok(Some(f)) => f,
        Ok(None) => {
            warn!(%user, "authenticated user missing from the userdb");
            return Err(LoginError::Failed(None));
        }
        Err(e) => return Err(unavailable("userdb", &e)),
    };
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(home) = get("home").map(PathBuf::from) else {
        warn!(%user, "userdb gave no home");
        return Err(LoginError::Temporary("mailbox location unknown".into()));
    };
    let root = match get("mail").map(|m| mail_location(m, &home)) {
        Some(Ok(p)) => p,
        Some(Err(why)) => {
            warn!(%user, %why, "bad mail location");
            return Err(LoginError::Temporary("mailbox location unusable".into()));
        }
        None => home.join("Maildir"),
    };
    let quota_bytes = get("quota_rule").and_then(parse_quota_rule);
    let root2 = root.clone();
    let maildir = tokio::task::spawn_blocking(move || {
        Maildir::open_or_create(&root2, Maildir::DEFAULT_DIR_MODE)
    })
    .await
    .map_err(|e| LoginError::Temporary(format!("mailbox open failed: {e}")))?
    .map_err(|e| {
        warn!(%user, maildir = %root.display(), error = %e, "cannot open the Maildir");
        LoginError::Temporary("mailbox unavailable".into())
    })?;
    Ok(LoggedIn {
        user: user.to_owned(),
        home,
        maildir,
        quota_bytes,
    })
}
