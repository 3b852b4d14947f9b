//! The ManageSieve session: bytes and completions in, [`Action`]s out.
//!
//! Input is framed here ([`crate::parse`]) and handled in order. While the driver runs an
//! action (a SASL step with authd, a TLS handshake, a storage request) nothing more is read:
//! the rest stays buffered, [`Session::wants_input`] is false, and the completion call
//! carries on where it stopped, so pipelined responses keep their order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::parse::{self, Command, CommandError, Framed, Limits, Token};
use crate::response::{self, Code, bye, no, ok};
use crate::valid_script_name;

/// Invalid commands in a row before the connection is closed.
pub const MAX_BAD_COMMANDS: u32 = 10;
/// Longest SASL response line from the client (a base64 string).
pub const MAX_SASL_LINE: usize = 16 * 1024;
/// Octets of a refused over-long line or literal thrown away (after authentication; before
/// it, `max_preauth`) before giving up and closing.
pub const MAX_DISCARD: u64 = 64 * 1024 * 1024;

/// What the connection is like, fixed when the session starts (TLS turns on with STARTTLS).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The `IMPLEMENTATION` capability.
    pub implementation: String,
    /// The `SIEVE` capability: the extensions the interpreter supports, space-separated.
    pub sieve_extensions: String,
    /// The `MAXREDIRECTS` capability, if any.
    pub max_redirects: Option<u32>,
    /// STARTTLS can be offered (a certificate is configured).
    pub starttls: bool,
    /// TLS is active already.
    pub secured: bool,
    /// The client may authenticate without TLS (`trusted_networks`).
    pub trusted: bool,
    /// Failed authentications before the connection is closed.
    pub max_auth_failures: u32,
    /// Longest command line (literals not counted) once authenticated.
    pub max_line: usize,
    /// Octets one command may carry before authentication, line and literals together.
    pub max_preauth: usize,
    /// Largest script accepted (PUTSCRIPT, CHECKSCRIPT, HAVESPACE).
    pub max_script_size: usize,
    /// The client is a trusted proxy (`[imapd] proxy_networks`): `XCLIENT` is offered
    /// before authentication, as Dovecot's managesieve-login offers it to
    /// `login_trusted_networks`, and its `ADDR=`/`PORT=` reach the driver
    /// ([`Action::ClientAddress`]).
    pub xclient: bool,
}

/// A SASL mechanism we speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    /// RFC 4616.
    Plain,
    /// The de-facto `LOGIN` mechanism.
    Login,
}

impl Mechanism {
    /// The name as advertised.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
        }
    }
}

/// What the driver must do with the user's scripts; answer with [`Session::stored`].
#[derive(Clone, PartialEq, Eq)]
pub enum Request {
    /// The names, and which one is active: [`StoreReply::Listed`].
    List,
    /// A script's text: [`StoreReply::Script`].
    Get(String),
    /// Check `script` (UTF-8 already checked) and store it under `name` (created or
    /// replaced; the active one stays active): [`StoreReply::Done`].
    Put {
        /// A valid name.
        name: String,
        /// The script.
        script: String,
    },
    /// Check `script` without storing it: [`StoreReply::Done`].
    Check(String),
    /// Make `Some(name)` the active script, or none: [`StoreReply::Done`].
    SetActive(Option<String>),
    /// Delete a script that is not active: [`StoreReply::Done`].
    Delete(String),
    /// Rename a script (the active one stays active): [`StoreReply::Done`].
    Rename {
        /// The current name.
        from: String,
        /// The new name, which must not exist.
        to: String,
    },
    /// Would a script of `size` octets under `name` fit: [`StoreReply::Done`].
    HaveSpace {
        /// A valid name.
        name: String,
        /// Octets (already checked against the size limit).
        size: u64,
    },
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::List => f.write_str("List"),
            Self::Get(n) => write!(f, "Get({n:?})"),
            Self::Put { name, script } => write!(f, "Put({name:?}, {} octets)", script.len()),
            Self::Check(s) => write!(f, "Check({} octets)", s.len()),
            Self::SetActive(n) => write!(f, "SetActive({n:?})"),
            Self::Delete(n) => write!(f, "Delete({n:?})"),
            Self::Rename { from, to } => write!(f, "Rename({from:?}, {to:?})"),
            Self::HaveSpace { name, size } => write!(f, "HaveSpace({name:?}, {size})"),
        }
    }
}

/// A successful storage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreReply {
    /// LISTSCRIPTS: `(name, active)` pairs.
    Listed(Vec<(String, bool)>),
    /// GETSCRIPT: the script.
    Script(Vec<u8>),
    /// Done; with warnings to show (`OK (WARNINGS)`), if any.
    Done(Option<String>),
}

/// A failed storage request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No such script.
    NonExistent,
    /// The new name is taken.
    AlreadyExists,
    /// The script is active and cannot be deleted.
    Active,
    /// Too many scripts.
    MaxScripts,
    /// The script is too large.
    MaxSize,
    /// The script does not compile; the text says where (`line N: …`).
    Invalid(String),
    /// A temporary failure (I/O); the text is for the client.
    TryLater(String),
}

/// Why an authentication did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    /// Wrong credentials (or locked out); authd's reason if any.
    Failed(Option<String>),
    /// authd could not decide; try again later.
    Temporary(String),
}

/// Something for the driver to do, in order.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Send what came before, forget buffered input, run the TLS handshake, then call
    /// [`Session::tls_started`] (or close the connection if it fails).
    StartTls,
    /// Start SASL with authd; report a challenge with [`Session::auth_challenge`], the end
    /// with [`Session::auth_done`].
    AuthStart {
        /// The mechanism.
        mechanism: Mechanism,
        /// The initial response, decoded.
        initial: Option<Vec<u8>>,
    },
    /// Answer the last challenge with these (decoded) bytes.
    AuthContinue(Vec<u8>),
    /// Drop the SASL exchange in progress (the session has replied).
    AuthCancel,
    /// Carry out a storage request and call [`Session::stored`].
    Store(Request),
    /// UNAUTHENTICATE: forget the user (the session is back before authentication).
    Unauthenticated,
    /// Close the connection after sending what came before.
    Close,
    /// A trusted proxy's `XCLIENT`: its `name=value` arguments as sent (`ADDR=`, `PORT=`,
    /// and Dovecot's `SESSION=`, `TTL=`, … to ignore). The session has answered `OK`.
    ClientAddress(Vec<String>),
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reply(b) => write!(f, "Reply({:?})", String::from_utf8_lossy(b)),
            Self::StartTls => f.write_str("StartTls"),
            Self::AuthStart { mechanism, initial } => write!(
                f,
                "AuthStart({mechanism:?}, initial: {})",
                initial.is_some()
            ),
            Self::AuthContinue(_) => f.write_str("AuthContinue(..)"),
            Self::AuthCancel => f.write_str("AuthCancel"),
            Self::Store(r) => write!(f, "Store({r:?})"),
            Self::Unauthenticated => f.write_str("Unauthenticated"),
            Self::Close => f.write_str("Close"),
            Self::ClientAddress(a) => write!(f, "ClientAddress({a:?})"),
        }
    }
}

/// A driver mistake: a completion with no matching action pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnexpectedCompletion;

enum Pending {
    Tls,
    Auth,
    Store(Request),
}

enum Read {
    Command,
    /// The next line is the client's SASL response.
    SaslResponse,
    /// Throw `remaining` octets away (a refused literal), then the rest of the line.
    Discard {
        remaining: u64,
        then: Vec<u8>,
    },
    /// Throw away up to the next LF, then send `then`.
    SkipLine {
        skipped: u64,
        then: Vec<u8>,
    },
}

/// One ManageSieve conversation, minus the socket.
pub struct Session {
    settings: Settings,
    user: Option<String>,
    pending: Option<Pending>,
    read: Read,
    input: Vec<u8>,
    /// Do not frame again before the buffer holds this many octets.
    need: usize,
    closed: bool,
    auth_failures: u32,
    bad_commands: u32,
    /// Names of the commands read since [`Session::take_commands`] (at most
    /// [`MAX_COMMANDS_KEPT`]).
    commands: Vec<&'static str>,
}

/// Most command names kept for [`Session::take_commands`] (a driver that never takes them
/// does not grow the session).
const MAX_COMMANDS_KEPT: usize = 1024;

fn reply(bytes: Vec<u8>) -> Action {
    Action::Reply(bytes)
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            user: None,
            pending: None,
            read: Read::Command,
            input: Vec::new(),
            need: 0,
            closed: false,
            auth_failures: 0,
            bad_commands: 0,
            commands: Vec::new(),
        }
    }

    /// The commands read since the last call, in order, by name: one of
    /// [`COMMAND_NAMES`](crate::parse::COMMAND_NAMES), or `unknown` for a line that names
    /// no command we know (never what the client typed). For metrics.
    pub fn take_commands(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.commands)
    }

    /// The greeting: the capabilities and `OK` (RFC 5804 §1.7).
    pub fn greeting(&self) -> Vec<Action> {
        vec![reply(self.capabilities("Postern ManageSieve ready."))]
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// True if TLS is active.
    pub fn is_secured(&self) -> bool {
        self.settings.secured
    }

    /// Whether the driver should read: false while an action is pending or once closed.
    pub fn wants_input(&self) -> bool {
        self.pending.is_none() && !self.closed
    }

    /// Takes the input received but not handled yet (what a client pipelined after the
    /// command in progress), for a driver that hands the connection over (proxy mode after
    /// [`Action::AuthStart`]); the session handles nothing more.
    pub fn take_input(&mut self) -> Vec<u8> {
        self.closed = true;
        self.need = 0;
        std::mem::take(&mut self.input)
    }

    /// Whether the session has ended ([`Action::Close`] was given).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn plaintext_ok(&self) -> bool {
        self.settings.secured || self.settings.trusted
    }

    /// The capability lines followed by `OK text`.
    fn capabilities(&self, text: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cap = |name: &str, value: Option<&str>| {
            response::write_string(&mut out, name.as_bytes());
            if let Some(v) = value {
                out.push(b' ');
                response::write_string(&mut out, v.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
        };
        cap("IMPLEMENTATION", Some(&self.settings.implementation));
        cap("SIEVE", Some(&self.settings.sieve_extensions));
        match &self.user {
            None => {
                let mechs = if self.plaintext_ok() {
                    "PLAIN LOGIN"
                } else {
                    ""
                };
                cap("SASL", Some(mechs));
                if self.settings.starttls && !self.settings.secured {
                    cap("STARTTLS", None);
                }
                if self.settings.xclient {
                    cap("XCLIENT", None);
                }
            }
            Some(u) => cap("OWNER", Some(u)),
        }
        if let Some(n) = self.settings.max_redirects {
            cap("MAXREDIRECTS", Some(&n.to_string()));
        }
        cap("VERSION", Some("1.0"));
        cap("UNAUTHENTICATE", None);
        out.extend_from_slice(&ok(None, text));
        out
    }

    /// Takes bytes from the client and handles as much as it may.
    pub fn input(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        // Plaintext sent after STARTTLS is never read (CVE-2011-0411).
        if self.closed || matches!(self.pending, Some(Pending::Tls)) {
            return out;
        }
        self.input.extend_from_slice(bytes);
        self.run(&mut out);
        out
    }

    /// The client waited too long.
    pub fn timeout(&mut self) -> Vec<Action> {
        self.goodbye(None, "Disconnected for inactivity.")
    }

    /// The server is stopping.
    pub fn shutdown(&mut self) -> Vec<Action> {
        self.goodbye(Some(Code::TryLater), "Server shutting down.")
    }

    /// The user's sessions are ended by the server (the mailbox is being moved to another
    /// node): `BYE (TRYLATER) "…"` and close.
    pub fn kicked(&mut self) -> Vec<Action> {
        self.goodbye(
            Some(Code::TryLater),
            "Your mailbox is being moved, try again later.",
        )
    }

    fn goodbye(&mut self, code: Option<Code>, text: &str) -> Vec<Action> {
        if self.closed {
            return Vec::new();
        }
        let mut out = Vec::new();
        if matches!(self.pending, Some(Pending::Auth)) || matches!(self.read, Read::SaslResponse) {
            out.push(Action::AuthCancel);
        }
        self.closed = true;
        self.pending = None;
        out.push(reply(bye(code, text)));
        out.push(Action::Close);
        out
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded: the capabilities again
    /// (RFC 5804 §2.2), forgetting what the client said before.
    pub fn tls_started(&mut self) -> Result<Vec<Action>, UnexpectedCompletion> {
        if !matches!(self.pending, Some(Pending::Tls)) {
            return Err(UnexpectedCompletion);
        }
        self.pending = None;
        self.settings.secured = true;
        self.input.clear();
        self.need = 0;
        self.read = Read::Command;
        let mut out = vec![reply(self.capabilities("TLS negotiation successful."))];
        self.run(&mut out);
        Ok(out)
    }

    /// authd sent a challenge (raw bytes): pass it to the client.
    pub fn auth_challenge(
        &mut self,
        challenge: &[u8],
    ) -> Result<Vec<Action>, UnexpectedCompletion> {
        if !matches!(self.pending, Some(Pending::Auth)) {
            return Err(UnexpectedCompletion);
        }
        self.pending = None;
        self.read = Read::SaslResponse;
        let mut line = response::string(B64.encode(challenge).as_bytes());
        line.extend_from_slice(b"\r\n");
        let mut out = vec![reply(line)];
        self.run(&mut out);
        Ok(out)
    }

    /// The SASL exchange ended: the user, or why not.
    pub fn auth_done(
        &mut self,
        result: Result<String, AuthError>,
    ) -> Result<Vec<Action>, UnexpectedCompletion> {
        if !matches!(self.pending, Some(Pending::Auth)) {
            return Err(UnexpectedCompletion);
        }
        self.pending = None;
        self.read = Read::Command;
        let mut out = Vec::new();
        match result {
            Ok(user) => {
                self.user = Some(user);
                self.bad_commands = 0;
                out.push(reply(ok(None, "Logged in.")));
            }
            Err(AuthError::Temporary(why)) => {
                out.push(reply(no(Some(Code::TryLater), &clean(&why))));
            }
            Err(AuthError::Failed(_)) => {
                self.auth_failures += 1;
                if self.auth_failures >= self.settings.max_auth_failures.max(1) {
                    self.closed = true;
                    out.push(reply(no(None, "Authentication failed.")));
                    out.push(reply(bye(None, "Too many authentication failures.")));
                    out.push(Action::Close);
                    return Ok(out);
                }
                out.push(reply(no(None, "Authentication failed.")));
            }
        }
        self.run(&mut out);
        Ok(out)
    }

    /// The result of a [`Action::Store`] request.
    pub fn stored(
        &mut self,
        result: Result<StoreReply, StoreError>,
    ) -> Result<Vec<Action>, UnexpectedCompletion> {
        let Some(Pending::Store(req)) = self.pending.take() else {
            return Err(UnexpectedCompletion);
        };
        let mut out = Vec::new();
        let bytes = match result {
            Ok(StoreReply::Listed(list)) => {
                let mut b = Vec::new();
                for (name, active) in list {
                    response::write_string(&mut b, name.as_bytes());
                    if active {
                        b.extend_from_slice(b" ACTIVE");
                    }
                    b.extend_from_slice(b"\r\n");
                }
                b.extend_from_slice(&ok(None, "Listscripts completed."));
                b
            }
            Ok(StoreReply::Script(text)) => {
                // Always a literal: scripts hold line ends.
                let mut b = format!("{{{}}}\r\n", text.len()).into_bytes();
                b.extend_from_slice(&text);
                b.extend_from_slice(b"\r\n");
                b.extend_from_slice(&ok(None, "Getscript completed."));
                b
            }
            Ok(StoreReply::Done(Some(w))) => ok(Some(Code::Warnings), &w),
            Ok(StoreReply::Done(None)) => ok(None, done_text(&req)),
            Err(e) => store_error(&e),
        };
        out.push(reply(bytes));
        self.run(&mut out);
        Ok(out)
    }

    fn limits(&self) -> Limits {
        match (&self.read, &self.user) {
            (Read::SaslResponse, _) => Limits {
                max_line: MAX_SASL_LINE,
                max_literal: MAX_SASL_LINE,
            },
            (_, None) => Limits {
                max_line: self.settings.max_preauth,
                max_literal: self.settings.max_preauth,
            },
            (_, Some(_)) => Limits {
                max_line: self.settings.max_line,
                // Room for the script and its name.
                max_literal: self.settings.max_script_size + 1024,
            },
        }
    }

    fn run(&mut self, out: &mut Vec<Action>) {
        while self.pending.is_none() && !self.closed {
            match &mut self.read {
                Read::Discard { remaining, then } => {
                    let n = usize::try_from(*remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.input.len());
                    self.input.drain(..n);
                    *remaining -= n as u64;
                    if *remaining > 0 {
                        return;
                    }
                    let then = std::mem::take(then);
                    self.read = Read::SkipLine { skipped: 0, then };
                }
                Read::SkipLine { skipped, then } => {
                    // Before authentication a stranger's junk is held to max_preauth.
                    let limit = match self.user {
                        None => self.settings.max_preauth as u64,
                        Some(_) => MAX_DISCARD,
                    };
                    match self.input.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            self.input.drain(..=i);
                            let then = std::mem::take(then);
                            self.read = Read::Command;
                            out.push(reply(then));
                            self.count_bad(out);
                        }
                        None => {
                            *skipped += self.input.len() as u64;
                            self.input.clear();
                            if *skipped > limit {
                                out.extend(self.goodbye(None, "Line too long."));
                            }
                            return;
                        }
                    }
                }
                Read::Command | Read::SaslResponse => {
                    if self.input.is_empty() || self.input.len() < self.need {
                        return;
                    }
                    self.need = 0;
                    let limits = self.limits();
                    let sasl = matches!(self.read, Read::SaslResponse);
                    match parse::frame(&self.input, &limits) {
                        Framed::Incomplete { need } => {
                            self.need = need;
                            return;
                        }
                        Framed::Line { tokens, used } => {
                            self.input.drain(..used);
                            if sasl {
                                self.sasl_response(tokens, out);
                            } else {
                                self.line(tokens, out);
                            }
                        }
                        Framed::Bad {
                            reason,
                            used,
                            line_ended,
                        } => {
                            self.input.drain(..used);
                            let then = no(None, &format!("Syntax error: {reason}."));
                            if sasl {
                                self.sasl_failed(out);
                            }
                            if line_ended {
                                out.push(reply(then));
                                self.count_bad(out);
                            } else {
                                self.read = Read::SkipLine { skipped: 0, then };
                            }
                        }
                        Framed::LineTooLong => {
                            if sasl {
                                self.sasl_failed(out);
                            }
                            if self.user.is_none() {
                                out.extend(self.goodbye(None, "Line too long."));
                                return;
                            }
                            // The skip starts here: a line end already buffered ends it.
                            self.read = Read::SkipLine {
                                skipped: 0,
                                then: no(None, "Line too long."),
                            };
                        }
                        Framed::LiteralTooLarge { size, used } => {
                            self.input.drain(..used);
                            if sasl {
                                self.sasl_failed(out);
                            }
                            if self.user.is_none() || size > MAX_DISCARD {
                                out.extend(self.goodbye(None, "Literal too large."));
                                return;
                            }
                            self.read = Read::Discard {
                                remaining: size,
                                then: no(
                                    Some(Code::QuotaMaxSize),
                                    &format!(
                                        "Too large: scripts are limited to {} octets.",
                                        self.settings.max_script_size
                                    ),
                                ),
                            };
                        }
                    }
                }
            }
        }
    }

    /// Leaves the SASL exchange after a broken response line (its reply comes separately).
    fn sasl_failed(&mut self, out: &mut Vec<Action>) {
        out.push(Action::AuthCancel);
        self.read = Read::Command;
    }

    fn count_bad(&mut self, out: &mut Vec<Action>) {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            out.extend(self.goodbye(None, "Too many invalid commands."));
        }
    }

    fn sasl_response(&mut self, tokens: Vec<Token>, out: &mut Vec<Action>) {
        self.read = Read::Command;
        let [Token::Str(s)] = &tokens[..] else {
            out.push(Action::AuthCancel);
            out.push(reply(no(None, "Bad SASL response: expected one string.")));
            return;
        };
        if s == b"*" {
            out.push(Action::AuthCancel);
            out.push(reply(no(None, "Authentication cancelled.")));
            return;
        }
        match B64.decode(s) {
            Ok(bytes) => {
                self.pending = Some(Pending::Auth);
                out.push(Action::AuthContinue(bytes));
            }
            Err(_) => {
                out.push(Action::AuthCancel);
                out.push(reply(no(None, "Bad SASL response: invalid base64.")));
            }
        }
    }

    fn line(&mut self, tokens: Vec<Token>, out: &mut Vec<Action>) {
        let parsed = Command::from_tokens(tokens);
        if self.commands.len() < MAX_COMMANDS_KEPT {
            self.commands.push(match &parsed {
                Ok(c) => c.name(),
                // The usage text starts with the command's name.
                Err(CommandError::Arguments(usage)) => usage.split(' ').next().unwrap_or("unknown"),
                Err(CommandError::NoCommand | CommandError::Unknown) => "unknown",
            });
        }
        let cmd = match parsed {
            Ok(c) => c,
            Err(e) => {
                let text = match e {
                    CommandError::NoCommand => "Syntax error: expected a command.".to_owned(),
                    CommandError::Unknown => "Unknown command.".to_owned(),
                    CommandError::Arguments(usage) => format!("Syntax: {usage}"),
                };
                out.push(reply(no(None, &text)));
                self.count_bad(out);
                return;
            }
        };
        let before = out.len();
        let authenticated = self.user.is_some();
        self.command(cmd, out);
        // Before authentication a NO straight away counts as a bad command (a stranger
        // gets a bounded number of tries); after it only syntax errors count.
        let refused = !authenticated
            && out.len() > before
            && out[before..]
                .iter()
                .all(|a| matches!(a, Action::Reply(b) if b.starts_with(b"NO")));
        if refused {
            self.count_bad(out);
        } else {
            self.bad_commands = 0;
        }
    }

    fn store(&mut self, req: Request, out: &mut Vec<Action>) {
        self.pending = Some(Pending::Store(req.clone()));
        out.push(Action::Store(req));
    }

    fn command(&mut self, cmd: Command, out: &mut Vec<Action>) {
        // Commands allowed in both states.
        match &cmd {
            Command::Capability => {
                out.push(reply(self.capabilities("Capability completed.")));
                return;
            }
            Command::Noop(tag) => {
                let code = tag.clone().map(Code::Tag);
                out.push(reply(ok(code, "Done")));
                return;
            }
            Command::Logout => {
                self.closed = true;
                out.push(reply(ok(None, "Logout completed.")));
                out.push(Action::Close);
                return;
            }
            _ => {}
        }
        let Some(_) = &self.user else {
            return self.unauthenticated(cmd, out);
        };
        let name = |raw: Vec<u8>| -> Result<String, Vec<u8>> {
            let s =
                String::from_utf8(raw).map_err(|_| no(None, "Invalid script name: not UTF-8."))?;
            valid_script_name(&s)
                .map_err(|why| no(None, &format!("Invalid script name: {why}.")))?;
            Ok(s)
        };
        // A name that cannot exist names no script.
        let existing = |raw: Vec<u8>| -> Result<String, Vec<u8>> {
            let s = String::from_utf8(raw)
                .map_err(|_| no(Some(Code::NonExistent), "No such script."))?;
            valid_script_name(&s).map_err(|_| no(Some(Code::NonExistent), "No such script."))?;
            Ok(s)
        };
        let max = self.settings.max_script_size;
        let too_large = || {
            no(
                Some(Code::QuotaMaxSize),
                &format!("Too large: scripts are limited to {max} octets."),
            )
        };
        let script = |raw: Vec<u8>| -> Result<String, Vec<u8>> {
            if raw.len() > max {
                return Err(too_large());
            }
            String::from_utf8(raw).map_err(|_| no(None, "The script is not valid UTF-8."))
        };
        let result = match cmd {
            Command::ListScripts => Ok(Request::List),
            Command::GetScript(n) => existing(n).map(Request::Get),
            Command::PutScript { name: n, script: s } => {
                name(n).and_then(|n| script(s).map(|script| Request::Put { name: n, script }))
            }
            Command::CheckScript(s) => script(s).map(Request::Check),
            Command::SetActive(n) if n.is_empty() => Ok(Request::SetActive(None)),
            Command::SetActive(n) => existing(n).map(|n| Request::SetActive(Some(n))),
            Command::DeleteScript(n) => existing(n).map(Request::Delete),
            Command::RenameScript { from, to } => {
                existing(from).and_then(|from| name(to).map(|to| Request::Rename { from, to }))
            }
            Command::HaveSpace { name: n, size } => name(n).and_then(|n| {
                if size > max as u64 {
                    Err(too_large())
                } else {
                    Ok(Request::HaveSpace { name: n, size })
                }
            }),
            Command::Unauthenticate => {
                self.user = None;
                out.push(Action::Unauthenticated);
                out.push(reply(ok(None, "Unauthenticate completed.")));
                return;
            }
            Command::Authenticate { .. } => Err(no(None, "Already authenticated.")),
            Command::StartTls => Err(no(None, "STARTTLS is only allowed before authentication.")),
            Command::XClient(_) => Err(no(None, "XCLIENT is only allowed before authentication.")),
            Command::Capability | Command::Noop(_) | Command::Logout => return,
        };
        match result {
            Ok(req) => self.store(req, out),
            Err(bytes) => out.push(reply(bytes)),
        }
    }

    fn unauthenticated(&mut self, cmd: Command, out: &mut Vec<Action>) {
        match cmd {
            Command::StartTls => {
                if self.settings.secured {
                    out.push(reply(no(None, "TLS is already active.")));
                } else if !self.settings.starttls {
                    out.push(reply(no(None, "STARTTLS is not available.")));
                } else {
                    out.push(reply(ok(None, "Begin TLS negotiation now.")));
                    out.push(Action::StartTls);
                    self.pending = Some(Pending::Tls);
                }
            }
            Command::Authenticate { mechanism, initial } => {
                if !self.plaintext_ok() {
                    out.push(reply(no(
                        Some(Code::EncryptNeeded),
                        "Plaintext authentication disallowed on non-secure connections: use STARTTLS.",
                    )));
                    return;
                }
                let mechanism = match mechanism.to_ascii_uppercase().as_str() {
                    "PLAIN" => Mechanism::Plain,
                    "LOGIN" => Mechanism::Login,
                    _ => {
                        out.push(reply(no(None, "Unsupported authentication mechanism.")));
                        return;
                    }
                };
                let initial = match initial.map(|i| B64.decode(i)) {
                    None => None,
                    Some(Ok(bytes)) => Some(bytes),
                    Some(Err(_)) => {
                        out.push(reply(no(None, "Invalid base64 in the initial response.")));
                        return;
                    }
                };
                self.pending = Some(Pending::Auth);
                out.push(Action::AuthStart { mechanism, initial });
            }
            Command::Unauthenticate => out.push(reply(no(None, "Not authenticated."))),
            Command::XClient(_) if !self.settings.xclient => {
                out.push(reply(no(None, "You are not from a trusted proxy.")));
            }
            Command::XClient(args) => {
                out.push(Action::ClientAddress(args));
                out.push(reply(ok(None, "Updated.")));
            }
            _ => out.push(reply(no(None, "Authenticate first."))),
        }
    }
}

fn done_text(req: &Request) -> &'static str {
    match req {
        Request::List => "Listscripts completed.",
        Request::Get(_) => "Getscript completed.",
        Request::Put { .. } => "Putscript completed.",
        Request::Check(_) => "Script is valid.",
        Request::SetActive(_) => "Setactive completed.",
        Request::Delete(_) => "Deletescript completed.",
        Request::Rename { .. } => "Renamescript completed.",
        Request::HaveSpace { .. } => "Putscript would succeed.",
    }
}

fn store_error(e: &StoreError) -> Vec<u8> {
    match e {
        StoreError::NonExistent => no(Some(Code::NonExistent), "No such script."),
        StoreError::AlreadyExists => no(Some(Code::AlreadyExists), "A script of that name exists."),
        StoreError::Active => no(
            Some(Code::Active),
            "The script is active: deactivate it first.",
        ),
        StoreError::MaxScripts => no(Some(Code::QuotaMaxScripts), "Too many scripts."),
        StoreError::MaxSize => no(Some(Code::QuotaMaxSize), "The script is too large."),
        StoreError::Invalid(why) => no(None, &clean_multiline(why)),
        StoreError::TryLater(why) => no(Some(Code::TryLater), &clean(why)),
    }
}

/// Server-side text for one line: no control characters, bounded.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}

/// Like [`clean`] but keeps line ends (compile errors may list several lines).
fn clean_multiline(text: &str) -> String {
    text.chars()
        .filter(|&c| c != '\r')
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .take(4000)
        .collect()
}
