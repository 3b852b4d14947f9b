//! The POP3 session as a state machine without I/O (RFC 1939, RFC 2449 CAPA and response
//! codes, RFC 5034 SASL, RFC 2595 STLS).
//!
//! The driver ([`super::conn`]) splits the input into lines and hands each one to
//! [`Session::line`]; the session answers with [`Action`]s: replies to send, and work that
//! needs I/O (a login through authd, reading a message, the UPDATE state). The driver does
//! that work and reports back through [`Session::login_done`], [`Session::auth_challenge`],
//! [`Session::fetched`], [`Session::updated`], [`Session::tls_started`], which return more
//! actions. Everything here is testable without a socket.
//!
//! Replies follow Dovecot's wording where clients or scripts may look at them (`[AUTH]`,
//! `[SYS/TEMP]`, "Plaintext authentication disallowed on non-secure connections.").

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::login::{LoginError, MECHANISMS};

/// Longest command line, CRLF included (RFC 2449 §4: 255 octets).
pub const MAX_LINE: usize = 255;
/// Longest SASL continuation line (RFC 5034 sets no limit; tokens can be long).
pub const MAX_SASL_LINE: usize = 8192;
/// Invalid commands in a row before the connection is closed.
pub const MAX_BAD_COMMANDS: u32 = 10;

/// The POP3 commands (RFC 1939, 2449, 2595, 5034), for metrics labels: a line whose first
/// word is none of these is an `unknown` command.
pub const COMMANDS: &[&str] = &[
    "USER", "PASS", "APOP", "AUTH", "STLS", "CAPA", "QUIT", "NOOP", "STAT", "LIST", "UIDL", "RETR",
    "TOP", "DELE", "RSET",
];

/// What the connection is like, fixed when the session starts (except TLS, which STLS turns on).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// TLS is active (port 995, or after STLS).
    pub secured: bool,
    /// The client is in `[imapd] trusted_networks`: plaintext logins allowed without TLS.
    pub trusted: bool,
    /// STLS can be offered (port 110 with a certificate configured).
    pub stls: bool,
    /// Failed logins before the connection is closed.
    pub max_auth_failures: u32,
}

/// What the driver does next, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes (one or more complete lines).
    Reply(Vec<u8>),
    /// Flush, forget any input already buffered, run the TLS handshake, then call
    /// [`Session::tls_started`] (or close the connection if the handshake fails).
    StartTls,
    /// Check a user name and password (USER/PASS), open the maildrop, then call
    /// [`Session::login_done`].
    Login {
        /// The USER argument.
        user: String,
        /// The PASS argument.
        pass: String,
    },
    /// Start a SASL exchange with authd; report a challenge with
    /// [`Session::auth_challenge`], the end with [`Session::login_done`].
    AuthStart {
        /// `PLAIN` or `LOGIN`.
        mechanism: &'static str,
        /// The initial response, decoded (`=` is an empty one).
        initial: Option<Vec<u8>>,
    },
    /// Answer the last challenge with these (decoded) bytes.
    AuthContinue(Vec<u8>),
    /// Drop the SASL exchange in progress (the client cancelled it).
    AuthCancel,
    /// Read message `msg` (UID `uid`) and call [`Session::fetched`]: `body_lines` is `None`
    /// for RETR, the TOP line count otherwise.
    Fetch {
        /// The message number (1-based).
        msg: usize,
        /// Its UID.
        uid: u32,
        /// TOP's line count; `None` for the whole message.
        body_lines: Option<u64>,
    },
    /// The UPDATE state (QUIT): expunge `expunge`, set `\Seen` on `seen`, then call
    /// [`Session::updated`].
    Update {
        /// UIDs marked with DELE.
        expunge: Vec<u32>,
        /// UIDs retrieved with RETR (and not deleted) that were not seen yet.
        seen: Vec<u32>,
    },
    /// Close the connection (after sending what is queued).
    Close,
}

/// Why a message could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Expunged by another session since the maildrop was opened.
    Gone,
    /// An I/O error or similar.
    Temporary(String),
}

/// One message of the maildrop, as seen at login.
#[derive(Debug, Clone)]
struct Msg {
    uid: u32,
    size: u64,
    seen: bool,
    deleted: bool,
    retrieved: bool,
}

/// The maildrop as it was at login: message numbers stay fixed for the whole session
/// (messages delivered later show up in the next session).
#[derive(Debug, Clone)]
pub struct Maildrop {
    uid_validity: u32,
    msgs: Vec<Msg>,
}

impl Maildrop {
    /// A maildrop of `(uid, size in octets with CRLF, already \Seen)`, in UID order.
    pub fn new(uid_validity: u32, msgs: impl IntoIterator<Item = (u32, u64, bool)>) -> Self {
        Self {
            uid_validity,
            msgs: msgs
                .into_iter()
                .map(|(uid, size, seen)| Msg {
                    uid,
                    size,
                    seen,
                    deleted: false,
                    retrieved: false,
                })
                .collect(),
        }
    }

    /// The UIDL of a message: Dovecot's default `pop3_uidl_format = %08Xu%08Xv`, the IMAP UID
    /// then the UIDVALIDITY, each as 8 hex digits — lower case, because that is what Dovecot's
    /// `%X` produces (checked against Debian's Dovecot 2.3 on the same Maildir by the e2e test
    /// `uidl_matches_dovecot_on_the_same_maildir`). Both numbers are kept in
    /// `dovecot-uidlist`, so the UIDL never changes while the message exists, a Maildir moved
    /// from Dovecot keeps its UIDLs (POP3 clients do not fetch everything again), and a UIDL
    /// is never reused: UIDs only grow, and a new UIDVALIDITY changes every UIDL.
    pub fn uidl(&self, uid: u32) -> String {
        format!("{uid:08x}{:08x}", self.uid_validity)
    }

    fn live(&self) -> impl Iterator<Item = (usize, &Msg)> {
        self.msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.deleted)
            .map(|(i, m)| (i + 1, m))
    }
}

#[derive(Debug)]
enum Phase {
    /// Before login; `user` is the name given with USER.
    Authorization { user: Option<String> },
    /// AUTH sent a challenge; the next line is the client's answer.
    SaslResponse,
    /// A login, TLS handshake, fetch or update is in progress in the driver.
    Busy(Box<Self>),
    /// Logged in.
    Transaction(Maildrop),
    /// QUIT or a fatal error: nothing more is read.
    Done,
}

/// One POP3 session.
#[derive(Debug)]
pub struct Session {
    settings: Settings,
    phase: Phase,
    auth_failures: u32,
    bad_commands: u32,
    /// QUIT has deletions to apply (for its reply).
    quit_deletes: bool,
}

const CRLF: &str = "\r\n";

fn reply(text: impl AsRef<str>) -> Action {
    let mut v = text.as_ref().as_bytes().to_vec();
    v.extend_from_slice(CRLF.as_bytes());
    Action::Reply(v)
}

/// Makes a server-side text safe for a reply line.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(settings: Settings) -> Self {
        Self {
            settings,
            phase: Phase::Authorization { user: None },
            auth_failures: 0,
            bad_commands: 0,
            quit_deletes: false,
        }
    }

    /// The banner.
    pub fn greeting(&self) -> Action {
        reply("+OK Postern POP3 ready.")
    }

    /// True once logged in (for the idle timeout instead of the login timeout).
    pub fn is_authenticated(&self) -> bool {
        match &self.phase {
            Phase::Transaction(_) => true,
            Phase::Busy(p) => matches!(**p, Phase::Transaction(_)),
            _ => false,
        }
    }

    /// True if TLS is active.
    pub fn is_secured(&self) -> bool {
        self.settings.secured
    }

    /// The longest line accepted now, CRLF included.
    pub fn max_line(&self) -> usize {
        if matches!(self.phase, Phase::SaslResponse) {
            MAX_SASL_LINE
        } else {
            MAX_LINE
        }
    }

    /// True after QUIT or a fatal error.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    fn plaintext_allowed(&self) -> bool {
        self.settings.secured || self.settings.trusted
    }

    fn busy(&mut self) {
        let p = std::mem::replace(&mut self.phase, Phase::Done);
        self.phase = Phase::Busy(Box::new(p));
    }

    fn unbusy(&mut self) -> Phase {
        match std::mem::replace(&mut self.phase, Phase::Done) {
            Phase::Busy(p) => *p,
            p => p,
        }
    }

    /// A bad command: the reply, and a close after too many in a row.
    fn bad(&mut self, text: &str) -> Vec<Action> {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            self.phase = Phase::Done;
            return vec![
                reply(format!(
                    "{text} Too many invalid commands, closing connection."
                )),
                Action::Close,
            ];
        }
        vec![reply(text)]
    }

    /// A line longer than [`Session::max_line`] was received (and discarded).
    pub fn line_too_long(&mut self) -> Vec<Action> {
        if matches!(self.phase, Phase::SaslResponse) {
            self.phase = Phase::Authorization { user: None };
            let mut out = vec![Action::AuthCancel];
            out.extend(self.bad("-ERR Line too long, authentication aborted."));
            return out;
        }
        self.bad("-ERR Line too long.")
    }

    /// A line went on far past any limit: the connection is closed.
    pub fn flooded(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::SaslResponse) {
            out.push(Action::AuthCancel);
        }
        self.phase = Phase::Done;
        out.push(reply("-ERR Line too long, closing connection."));
        out.push(Action::Close);
        out
    }

    /// The login (or idle) timer ran out.
    pub fn timed_out(&mut self) -> Vec<Action> {
        let text = if self.is_authenticated() {
            "-ERR Disconnected for inactivity."
        } else {
            "-ERR Disconnected: login timeout."
        };
        self.phase = Phase::Done;
        vec![reply(text), Action::Close]
    }

    /// The server is shutting down.
    pub fn shutting_down(&mut self) -> Vec<Action> {
        self.phase = Phase::Done;
        vec![
            reply("-ERR [SYS/TEMP] Server shutting down."),
            Action::Close,
        ]
    }

    /// The user's sessions were kicked (`mailctl user move`): no UPDATE state, as on a
    /// connection lost.
    pub fn kicked(&mut self) -> Vec<Action> {
        self.phase = Phase::Done;
        vec![
            reply("-ERR [SYS/TEMP] Your mailbox is being moved, try again later."),
            Action::Close,
        ]
    }

    /// UIDs to mark `\Seen` when the connection ends without QUIT (as Dovecot does: the
    /// deletions are forgotten, what was read stays read).
    pub fn seen_on_disconnect(&self) -> Vec<u32> {
        match &self.phase {
            Phase::Transaction(d) => d
                .msgs
                .iter()
                .filter(|m| m.retrieved && !m.seen)
                .map(|m| m.uid)
                .collect(),
            Phase::Busy(p) => match &**p {
                Phase::Transaction(d) => d
                    .msgs
                    .iter()
                    .filter(|m| m.retrieved && !m.seen)
                    .map(|m| m.uid)
                    .collect(),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    /// The name of the command `line` is (from [`COMMANDS`], or `unknown`), or `None` when
    /// the session would not read it as a command (a SASL response, after the end).
    pub fn command_name(&self, line: &[u8]) -> Option<&'static str> {
        if !matches!(
            self.phase,
            Phase::Authorization { .. } | Phase::Transaction(_) | Phase::Busy(_)
        ) {
            return None;
        }
        let word = line.split(|&b| b == b' ').next().unwrap_or_default();
        Some(
            COMMANDS
                .iter()
                .find(|c| c.as_bytes().eq_ignore_ascii_case(word))
                .copied()
                .unwrap_or("unknown"),
        )
    }

    /// Handles one line, without its line ending.
    pub fn line(&mut self, line: &[u8]) -> Vec<Action> {
        match &self.phase {
            Phase::Done => Vec::new(),
            Phase::Busy(_) => vec![reply("-ERR [SYS/TEMP] Busy.")],
            Phase::SaslResponse => self.sasl_response(line),
            Phase::Authorization { .. } | Phase::Transaction(_) => self.command(line),
        }
    }

    fn command(&mut self, line: &[u8]) -> Vec<Action> {
        if line.is_empty() {
            return self.bad("-ERR Empty command.");
        }
        if line.iter().any(|&b| b == 0 || b == b'\r' || b == b'\n') {
            return self.bad("-ERR Invalid characters in command.");
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return self.bad("-ERR Invalid characters in command.");
        };
        let (name, args) = match line.split_once(' ') {
            Some((n, a)) => (n, Some(a)),
            None => (line, None),
        };
        let name = name.to_ascii_uppercase();
        let out = if matches!(self.phase, Phase::Transaction(_)) {
            self.transaction(&name, args)
        } else {
            self.authorization(&name, args)
        };
        match out {
            Ok(actions) => {
                self.bad_commands = 0;
                actions
            }
            Err(text) => self.bad(&text),
        }
    }

    fn capa(&self) -> Action {
        let mut s = String::from("+OK Capability list follows\r\n");
        for c in ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"] {
            s.push_str(c);
            s.push_str(CRLF);
        }
        if !self.is_authenticated() {
            if self.plaintext_allowed() {
                s.push_str("USER\r\n");
                s.push_str("SASL");
                for m in MECHANISMS {
                    s.push(' ');
                    s.push_str(m);
                }
                s.push_str(CRLF);
            }
            if self.settings.stls && !self.settings.secured {
                s.push_str("STLS\r\n");
            }
        }
        s.push_str("IMPLEMENTATION Postern\r\n.\r\n");
        Action::Reply(s.into_bytes())
    }

    fn authorization(&mut self, name: &str, args: Option<&str>) -> Result<Vec<Action>, String> {
        const PLAINTEXT: &str =
            "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.";
        match name {
            "CAPA" => Ok(vec![self.capa()]),
            "QUIT" => {
                self.phase = Phase::Done;
                Ok(vec![reply("+OK Logging out."), Action::Close])
            }
            "NOOP" => Ok(vec![reply("+OK")]),
            "STLS" => {
                if self.settings.secured {
                    Err("-ERR TLS is already active.".into())
                } else if !self.settings.stls {
                    Err("-ERR TLS support isn't enabled.".into())
                } else {
                    self.phase = Phase::Authorization { user: None };
                    self.busy();
                    Ok(vec![
                        reply("+OK Begin TLS negotiation now."),
                        Action::StartTls,
                    ])
                }
            }
            "USER" => {
                if !self.plaintext_allowed() {
                    return Err(PLAINTEXT.into());
                }
                let user = args.unwrap_or("").trim();
                if user.is_empty() {
                    return Err("-ERR No username given.".into());
                }
                self.phase = Phase::Authorization {
                    user: Some(user.to_owned()),
                };
                Ok(vec![reply("+OK")])
            }
            "PASS" => {
                if !self.plaintext_allowed() {
                    return Err(PLAINTEXT.into());
                }
                let Phase::Authorization { user: Some(user) } = &mut self.phase else {
                    return Err("-ERR No username given.".into());
                };
                let user = std::mem::take(user);
                self.phase = Phase::Authorization { user: None };
                self.busy();
                Ok(vec![Action::Login {
                    user,
                    pass: args.unwrap_or("").to_owned(),
                }])
            }
            "AUTH" => self.auth(args, PLAINTEXT),
            "APOP" => Err("-ERR APOP is not supported.".into()),
            "STAT" | "LIST" | "UIDL" | "RETR" | "TOP" | "DELE" | "RSET" => {
                Err("-ERR Not logged in.".into())
            }
            _ => Err("-ERR Unknown command.".into()),
        }
    }

    fn auth(&mut self, args: Option<&str>, plaintext: &str) -> Result<Vec<Action>, String> {
        let mut it = args.unwrap_or("").split(' ').filter(|s| !s.is_empty());
        let Some(mech) = it.next() else {
            // The mechanism list (an older extension most servers keep, Dovecot included).
            let mut s = String::from("+OK\r\n");
            if self.plaintext_allowed() {
                for m in MECHANISMS {
                    s.push_str(m);
                    s.push_str(CRLF);
                }
            }
            s.push_str(".\r\n");
            return Ok(vec![Action::Reply(s.into_bytes())]);
        };
        let initial = it.next();
        if it.next().is_some() {
            return Err("-ERR Invalid AUTH arguments.".into());
        }
        let Some(mechanism) = MECHANISMS
            .iter()
            .copied()
            .find(|m| m.eq_ignore_ascii_case(mech))
        else {
            return Err("-ERR [AUTH] Unsupported authentication mechanism.".into());
        };
        // PLAIN and LOGIN are both plaintext mechanisms.
        if !self.plaintext_allowed() {
            return Err(plaintext.into());
        }
        let initial = match initial {
            None => None,
            Some("=") => Some(Vec::new()),
            Some(b) => match B64.decode(b) {
                Ok(v) => Some(v),
                Err(_) => return Err("-ERR Invalid base64 data in initial response.".into()),
            },
        };
        self.phase = Phase::Authorization { user: None };
        self.busy();
        Ok(vec![Action::AuthStart { mechanism, initial }])
    }

    fn sasl_response(&mut self, line: &[u8]) -> Vec<Action> {
        self.phase = Phase::Authorization { user: None };
        if line == b"*" {
            return vec![
                Action::AuthCancel,
                reply("-ERR [AUTH] Authentication aborted by client."),
            ];
        }
        match B64.decode(line) {
            Ok(bytes) => {
                self.busy();
                vec![Action::AuthContinue(bytes)]
            }
            Err(_) => {
                let mut out = vec![Action::AuthCancel];
                out.extend(self.failed("-ERR [AUTH] Invalid base64 data in continued response."));
                out
            }
        }
    }

    /// A failed login: the reply, and a close after too many.
    fn failed(&mut self, text: &str) -> Vec<Action> {
        self.auth_failures += 1;
        if self.auth_failures >= self.settings.max_auth_failures.max(1) {
            self.phase = Phase::Done;
            return vec![reply(text), Action::Close];
        }
        vec![reply(text)]
    }

    /// authd sent a SASL challenge (raw bytes).
    pub fn auth_challenge(&mut self, challenge: &[u8]) -> Vec<Action> {
        self.phase = Phase::SaslResponse;
        vec![reply(format!("+ {}", B64.encode(challenge)))]
    }

    /// The login (USER/PASS or AUTH) finished; on success the driver has opened the maildrop.
    pub fn login_done(&mut self, result: Result<Maildrop, LoginError>) -> Vec<Action> {
        self.unbusy();
        self.phase = Phase::Authorization { user: None };
        match result {
            Ok(drop) => {
                self.bad_commands = 0;
                self.phase = Phase::Transaction(drop);
                vec![reply("+OK Logged in.")]
            }
            Err(LoginError::Failed(_)) => self.failed("-ERR [AUTH] Authentication failed."),
            Err(LoginError::Temporary(why)) => {
                vec![reply(format!("-ERR [SYS/TEMP] {}", clean(&why)))]
            }
        }
    }

    /// STLS succeeded: TLS is on, and the session starts over (RFC 2595 §4).
    pub fn tls_started(&mut self) -> Vec<Action> {
        self.settings.secured = true;
        self.phase = Phase::Authorization { user: None };
        Vec::new()
    }

    fn drop_mut(&mut self) -> &mut Maildrop {
        match &mut self.phase {
            Phase::Transaction(d) => d,
            Phase::Busy(p) => match &mut **p {
                Phase::Transaction(d) => d,
                _ => unreachable!("only called in the transaction state"),
            },
            _ => unreachable!("only called in the transaction state"),
        }
    }

    /// Parses a message number that must exist and not be deleted.
    fn msg_number(&mut self, arg: &str) -> Result<usize, String> {
        let drop = self.drop_mut();
        let n: usize = match arg.parse() {
            Ok(n) if arg.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err("-ERR Invalid message number.".into()),
        };
        if n == 0 || n > drop.msgs.len() {
            return Err(format!("-ERR There's no message {n}."));
        }
        if drop.msgs[n - 1].deleted {
            return Err("-ERR Message is deleted.".into());
        }
        Ok(n)
    }

    fn transaction(&mut self, name: &str, args: Option<&str>) -> Result<Vec<Action>, String> {
        let words: Vec<&str> = args
            .unwrap_or("")
            .split(' ')
            .filter(|s| !s.is_empty())
            .collect();
        let arity = |lo: usize, hi: usize| -> Result<(), String> {
            if words.len() < lo {
                Err("-ERR Missing argument.".into())
            } else if words.len() > hi {
                Err("-ERR Too many arguments.".into())
            } else {
                Ok(())
            }
        };
        match name {
            "CAPA" => Ok(vec![self.capa()]),
            "NOOP" => {
                arity(0, 0)?;
                Ok(vec![reply("+OK")])
            }
            "STAT" => {
                arity(0, 0)?;
                let d = self.drop_mut();
                let (n, size) = d
                    .live()
                    .fold((0u64, 0u64), |(n, s), (_, m)| (n + 1, s + m.size));
                Ok(vec![reply(format!("+OK {n} {size}"))])
            }
            "LIST" | "UIDL" => {
                arity(0, 1)?;
                let uidl = name == "UIDL";
                if let Some(arg) = words.first() {
                    let n = self.msg_number(arg)?;
                    let d = self.drop_mut();
                    let m = &d.msgs[n - 1];
                    let v = if uidl {
                        d.uidl(m.uid)
                    } else {
                        m.size.to_string()
                    };
                    return Ok(vec![reply(format!("+OK {n} {v}"))]);
                }
                let d = self.drop_mut();
                let mut s = if uidl {
                    String::from("+OK\r\n")
                } else {
                    format!("+OK {} messages:\r\n", d.live().count())
                };
                for (n, m) in d.live() {
                    if uidl {
                        s.push_str(&format!("{n} {}\r\n", d.uidl(m.uid)));
                    } else {
                        s.push_str(&format!("{n} {}\r\n", m.size));
                    }
                }
                s.push_str(".\r\n");
                Ok(vec![Action::Reply(s.into_bytes())])
            }
            "RETR" => {
                arity(1, 1)?;
                let n = self.msg_number(words[0])?;
                let uid = self.drop_mut().msgs[n - 1].uid;
                self.busy();
                Ok(vec![Action::Fetch {
                    msg: n,
                    uid,
                    body_lines: None,
                }])
            }
            "TOP" => {
                arity(2, 2)?;
                let n = self.msg_number(words[0])?;
                let lines: u64 = match words[1].parse() {
                    Ok(l) if words[1].bytes().all(|b| b.is_ascii_digit()) => l,
                    _ => return Err("-ERR Invalid number of lines.".into()),
                };
                let uid = self.drop_mut().msgs[n - 1].uid;
                self.busy();
                Ok(vec![Action::Fetch {
                    msg: n,
                    uid,
                    body_lines: Some(lines),
                }])
            }
            "DELE" => {
                arity(1, 1)?;
                let n = self.msg_number(words[0])?;
                self.drop_mut().msgs[n - 1].deleted = true;
                Ok(vec![reply("+OK Marked to be deleted.")])
            }
            "RSET" => {
                arity(0, 0)?;
                let d = self.drop_mut();
                // As Dovecot: undo the deletions and the \Seen changes of this session.
                for m in &mut d.msgs {
                    m.deleted = false;
                    m.retrieved = false;
                }
                Ok(vec![reply("+OK")])
            }
            "QUIT" => {
                let d = self.drop_mut();
                let expunge: Vec<u32> =
                    d.msgs.iter().filter(|m| m.deleted).map(|m| m.uid).collect();
                let seen: Vec<u32> = d
                    .msgs
                    .iter()
                    .filter(|m| m.retrieved && !m.seen && !m.deleted)
                    .map(|m| m.uid)
                    .collect();
                if expunge.is_empty() && seen.is_empty() {
                    self.phase = Phase::Done;
                    return Ok(vec![reply("+OK Logging out."), Action::Close]);
                }
                self.quit_deletes = !expunge.is_empty();
                self.busy();
                Ok(vec![Action::Update { expunge, seen }])
            }
            "USER" | "PASS" | "AUTH" | "APOP" | "STLS" => {
                Err("-ERR Command not valid after login.".into())
            }
            _ => Err("-ERR Unknown command.".into()),
        }
    }

    /// A message was read for RETR/TOP (`data` with CRLF line endings, or LF: both work).
    pub fn fetched(
        &mut self,
        msg: usize,
        body_lines: Option<u64>,
        result: Result<Vec<u8>, FetchError>,
    ) -> Vec<Action> {
        self.phase = self.unbusy();
        match result {
            Ok(data) => {
                if body_lines.is_none()
                    && let Phase::Transaction(d) = &mut self.phase
                    && let Some(m) = d.msgs.get_mut(msg - 1)
                {
                    m.retrieved = true;
                }
                let (body, size) = format_message(&data, body_lines);
                let first = if body_lines.is_none() {
                    format!("+OK {size} octets\r\n")
                } else {
                    "+OK\r\n".to_owned()
                };
                let mut out = first.into_bytes();
                out.extend_from_slice(&body);
                vec![Action::Reply(out)]
            }
            Err(FetchError::Gone) => {
                vec![reply(format!("-ERR Message {msg} expunged."))]
            }
            Err(FetchError::Temporary(why)) => {
                vec![reply(format!("-ERR [SYS/TEMP] {}", clean(&why)))]
            }
        }
    }

    /// The UPDATE state finished: `Ok` if every deleted message is gone.
    pub fn updated(&mut self, result: Result<(), String>) -> Vec<Action> {
        self.phase = Phase::Done;
        match result {
            Ok(()) if self.quit_deletes => {
                vec![reply("+OK Logging out, messages deleted."), Action::Close]
            }
            Ok(()) => vec![reply("+OK Logging out."), Action::Close],
            Err(why) => vec![
                reply(format!(
                    "-ERR [SYS/TEMP] Some deleted messages were not removed: {}",
                    clean(&why)
                )),
                Action::Close,
            ],
        }
    }
}

/// A message as POP3 sends it: CRLF line endings, lines starting with `.` stuffed, the
/// terminating `.` line; with `body_lines`, only the header, the blank line and that many
/// lines of the body (TOP). Returns the bytes and the message's size before stuffing (what
/// RETR's `+OK N octets` announces).
pub fn format_message(data: &[u8], body_lines: Option<u64>) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(data.len() + data.len() / 40 + 8);
    let mut size = 0u64;
    let mut in_body = false;
    let mut left = body_lines.unwrap_or(u64::MAX);
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if in_body {
            if left == 0 {
                break;
            }
            left -= 1;
        } else if line.is_empty() {
            in_body = true;
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
        size += line.len() as u64 + 2;
    }
    out.extend_from_slice(b".\r\n");
    (out, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(secured: bool, trusted: bool) -> Settings {
        Settings {
            secured,
            trusted,
            stls: true,
            max_auth_failures: 3,
        }
    }

    fn text(actions: &[Action]) -> String {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Reply(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn drop3() -> Maildrop {
        Maildrop::new(
            0x5f00_0001,
            [(1, 100, false), (2, 200, true), (5, 300, false)],
        )
    }

    /// A session logged in with `drop3`.
    fn logged_in() -> Session {
        let mut s = Session::new(settings(true, false));
        assert_eq!(text(&s.line(b"USER a@example.test")), "+OK\r\n");
        let a = s.line(b"PASS secret word");
        assert_eq!(
            a,
            vec![Action::Login {
                user: "a@example.test".into(),
                pass: "secret word".into()
            }]
        );
        assert_eq!(text(&s.login_done(Ok(drop3()))), "+OK Logged in.\r\n");
        assert!(s.is_authenticated());
        s
    }

    #[test]
    fn command_names_come_from_the_fixed_list() {
        let mut s = Session::new(settings(true, false));
        assert_eq!(s.command_name(b"user a@example.test"), Some("USER"));
        assert_eq!(s.command_name(b"CAPA"), Some("CAPA"));
        assert_eq!(s.command_name(b"XYZZY-attacker"), Some("unknown"));
        assert_eq!(s.command_name(b""), Some("unknown"));
        assert_eq!(s.command_name(b"\xff\xfe x"), Some("unknown"));
        // A SASL response line is no command.
        s.line(b"AUTH PLAIN");
        s.auth_challenge(b"");
        assert_eq!(s.command_name(b"AGFAYgBj"), None);
        let mut s = logged_in();
        for c in COMMANDS {
            assert_eq!(s.command_name(c.to_ascii_lowercase().as_bytes()), Some(*c));
        }
        s.line(b"QUIT");
    }

    #[test]
    fn capa_depends_on_tls_and_state() {
        let mut s = Session::new(settings(false, false));
        let c = text(&s.line(b"CAPA"));
        assert!(c.starts_with("+OK"), "{c}");
        for cap in [
            "TOP\r\n",
            "UIDL\r\n",
            "RESP-CODES\r\n",
            "AUTH-RESP-CODE\r\n",
            "PIPELINING\r\n",
            "STLS\r\n",
            "IMPLEMENTATION Postern\r\n",
        ] {
            assert!(c.contains(cap), "{cap} in {c}");
        }
        assert!(!c.contains("USER") && !c.contains("SASL"), "{c}");
        assert!(c.ends_with("\r\n.\r\n"));

        let mut s = Session::new(settings(true, false));
        let c = text(&s.line(b"capa"));
        assert!(
            c.contains("USER\r\n") && c.contains("SASL PLAIN LOGIN\r\n"),
            "{c}"
        );
        assert!(!c.contains("STLS"), "{c}");

        let mut s = Session::new(settings(false, true));
        let c = text(&s.line(b"CAPA"));
        assert!(c.contains("USER\r\n") && c.contains("STLS\r\n"), "{c}");

        let mut s = logged_in();
        let c = text(&s.line(b"CAPA"));
        assert!(
            c.contains("UIDL\r\n") && !c.contains("USER") && !c.contains("STLS"),
            "{c}"
        );
    }

    #[test]
    fn plaintext_refused_before_tls_then_allowed_after_stls() {
        let mut s = Session::new(settings(false, false));
        let msg = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n";
        assert_eq!(text(&s.line(b"USER a")), msg);
        assert_eq!(text(&s.line(b"PASS b")), msg);
        assert_eq!(text(&s.line(b"AUTH PLAIN AGEAYg==")), msg);
        let a = s.line(b"STLS");
        assert_eq!(
            a,
            vec![reply("+OK Begin TLS negotiation now."), Action::StartTls]
        );
        assert!(s.tls_started().is_empty());
        assert!(s.is_secured());
        assert_eq!(text(&s.line(b"STLS")), "-ERR TLS is already active.\r\n");
        assert_eq!(text(&s.line(b"USER a")), "+OK\r\n");
    }

    #[test]
    fn stls_unavailable() {
        let mut s = Session::new(Settings {
            stls: false,
            ..settings(false, true)
        });
        assert_eq!(
            text(&s.line(b"STLS")),
            "-ERR TLS support isn't enabled.\r\n"
        );
        assert!(!text(&s.line(b"CAPA")).contains("STLS"));
        let mut s = logged_in();
        assert!(text(&s.line(b"STLS")).starts_with("-ERR"));
    }

    #[test]
    fn pass_needs_user_and_failures_close() {
        let mut s = Session::new(settings(true, false));
        assert_eq!(text(&s.line(b"PASS x")), "-ERR No username given.\r\n");
        for i in 1..=3 {
            s.line(b"USER a");
            assert!(matches!(s.line(b"PASS wrong")[0], Action::Login { .. }));
            let a = s.login_done(Err(LoginError::Failed(None)));
            assert_eq!(text(&a), "-ERR [AUTH] Authentication failed.\r\n");
            assert_eq!(a.last() == Some(&Action::Close), i == 3, "attempt {i}");
        }
        assert!(s.is_done());
        assert!(s.line(b"NOOP").is_empty());
    }

    #[test]
    fn temporary_failure_is_sys_temp() {
        let mut s = Session::new(settings(true, false));
        s.line(b"USER a");
        s.line(b"PASS b");
        let a = s.login_done(Err(LoginError::Temporary(
            "authentication service unavailable (auth)".into(),
        )));
        assert_eq!(
            text(&a),
            "-ERR [SYS/TEMP] authentication service unavailable (auth)\r\n"
        );
        assert!(!a.contains(&Action::Close));
        // Not counted as a failure; the client may try again.
        s.line(b"USER a");
        assert!(matches!(s.line(b"PASS b")[0], Action::Login { .. }));
    }

    #[test]
    fn auth_plain_with_initial_response_and_continuation() {
        let mut s = Session::new(settings(true, false));
        let a = s.line(b"AUTH PLAIN AGEAYg==");
        assert_eq!(
            a,
            vec![Action::AuthStart {
                mechanism: "PLAIN",
                initial: Some(b"\0a\0b".to_vec())
            }]
        );
        assert_eq!(text(&s.login_done(Ok(drop3()))), "+OK Logged in.\r\n");

        let mut s = Session::new(settings(true, false));
        assert_eq!(
            s.line(b"auth plain"),
            vec![Action::AuthStart {
                mechanism: "PLAIN",
                initial: None
            }]
        );
        assert_eq!(text(&s.auth_challenge(b"")), "+ \r\n");
        assert_eq!(s.max_line(), MAX_SASL_LINE);
        assert_eq!(
            s.line(b"AGEAYg=="),
            vec![Action::AuthContinue(b"\0a\0b".to_vec())]
        );
        assert!(text(&s.login_done(Err(LoginError::Failed(None)))).starts_with("-ERR [AUTH]"));

        // `=` is an empty initial response.
        let mut s = Session::new(settings(true, false));
        assert_eq!(
            s.line(b"AUTH LOGIN ="),
            vec![Action::AuthStart {
                mechanism: "LOGIN",
                initial: Some(Vec::new())
            }]
        );
    }

    #[test]
    fn auth_login_cancel_and_bad_base64() {
        let mut s = Session::new(settings(true, false));
        s.line(b"AUTH LOGIN");
        assert_eq!(text(&s.auth_challenge(b"Username:")), "+ VXNlcm5hbWU6\r\n");
        let a = s.line(b"*");
        assert_eq!(a[0], Action::AuthCancel);
        assert_eq!(
            text(&a),
            "-ERR [AUTH] Authentication aborted by client.\r\n"
        );
        assert_eq!(s.max_line(), MAX_LINE);
        // Back in the authorization state.
        assert_eq!(text(&s.line(b"USER a")), "+OK\r\n");

        s.line(b"AUTH LOGIN");
        s.auth_challenge(b"Username:");
        let a = s.line(b"!!!not base64");
        assert_eq!(a[0], Action::AuthCancel);
        assert!(text(&a).starts_with("-ERR [AUTH]"));
    }

    #[test]
    fn auth_errors() {
        let mut s = Session::new(settings(true, false));
        assert_eq!(
            text(&s.line(b"AUTH CRAM-MD5")),
            "-ERR [AUTH] Unsupported authentication mechanism.\r\n"
        );
        assert!(text(&s.line(b"AUTH PLAIN %%%")).starts_with("-ERR"));
        assert!(text(&s.line(b"AUTH PLAIN a b")).starts_with("-ERR"));
        let list = text(&s.line(b"AUTH"));
        assert_eq!(list, "+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n");
        assert!(text(&s.line(b"APOP a 0123")).starts_with("-ERR"));
    }

    #[test]
    fn stat_list_uidl() {
        let mut s = logged_in();
        assert_eq!(text(&s.line(b"STAT")), "+OK 3 600\r\n");
        assert_eq!(
            text(&s.line(b"LIST")),
            "+OK 3 messages:\r\n1 100\r\n2 200\r\n3 300\r\n.\r\n"
        );
        assert_eq!(text(&s.line(b"LIST 2")), "+OK 2 200\r\n");
        assert_eq!(
            text(&s.line(b"UIDL")),
            "+OK\r\n1 000000015f000001\r\n2 000000025f000001\r\n3 000000055f000001\r\n.\r\n"
        );
        assert_eq!(text(&s.line(b"uidl 3")), "+OK 3 000000055f000001\r\n");
        assert_eq!(text(&s.line(b"LIST 4")), "-ERR There's no message 4.\r\n");
        assert_eq!(text(&s.line(b"LIST 0")), "-ERR There's no message 0.\r\n");
        assert_eq!(text(&s.line(b"LIST x")), "-ERR Invalid message number.\r\n");
        assert_eq!(
            text(&s.line(b"LIST -1")),
            "-ERR Invalid message number.\r\n"
        );
        assert_eq!(
            text(&s.line(b"LIST +1")),
            "-ERR Invalid message number.\r\n"
        );
        assert_eq!(
            text(&s.line(b"LIST 99999999999999999999999")),
            "-ERR Invalid message number.\r\n"
        );
        assert!(text(&s.line(b"LIST 1 2")).starts_with("-ERR"));
        assert!(text(&s.line(b"STAT 1")).starts_with("-ERR"));
    }

    #[test]
    fn dele_rset_and_quit_update() {
        let mut s = logged_in();
        assert_eq!(text(&s.line(b"DELE 2")), "+OK Marked to be deleted.\r\n");
        assert_eq!(text(&s.line(b"DELE 2")), "-ERR Message is deleted.\r\n");
        assert_eq!(text(&s.line(b"RETR 2")), "-ERR Message is deleted.\r\n");
        assert_eq!(text(&s.line(b"LIST 2")), "-ERR Message is deleted.\r\n");
        assert_eq!(text(&s.line(b"STAT")), "+OK 2 400\r\n");
        assert_eq!(
            text(&s.line(b"LIST")),
            "+OK 2 messages:\r\n1 100\r\n3 300\r\n.\r\n"
        );
        assert!(text(&s.line(b"RSET")).starts_with("+OK"));
        assert_eq!(text(&s.line(b"STAT")), "+OK 3 600\r\n");
        s.line(b"DELE 1");
        s.line(b"DELE 3");
        // Retrieve 2 (already seen) — nothing to mark.
        assert_eq!(
            s.line(b"RETR 2"),
            vec![Action::Fetch {
                msg: 2,
                uid: 2,
                body_lines: None
            }]
        );
        s.fetched(2, None, Ok(b"a: b\r\n\r\nx\r\n".to_vec()));
        assert_eq!(
            s.line(b"QUIT"),
            vec![Action::Update {
                expunge: vec![1, 5],
                seen: vec![]
            }]
        );
        assert_eq!(
            s.updated(Ok(())),
            vec![reply("+OK Logging out, messages deleted."), Action::Close]
        );
        assert!(s.is_done());
    }

    #[test]
    fn retr_marks_seen_top_does_not() {
        let mut s = logged_in();
        let a = s.line(b"TOP 1 0");
        assert_eq!(
            a,
            vec![Action::Fetch {
                msg: 1,
                uid: 1,
                body_lines: Some(0)
            }]
        );
        let r = text(&s.fetched(1, Some(0), Ok(b"Subject: x\r\n\r\nbody\r\n".to_vec())));
        assert_eq!(r, "+OK\r\nSubject: x\r\n\r\n.\r\n");
        assert!(s.seen_on_disconnect().is_empty());
        s.line(b"RETR 3");
        let r = text(&s.fetched(3, None, Ok(b"Subject: y\r\n\r\n.dot\r\n".to_vec())));
        assert_eq!(r, "+OK 20 octets\r\nSubject: y\r\n\r\n..dot\r\n.\r\n");
        assert_eq!(s.seen_on_disconnect(), vec![5]);
        assert_eq!(
            s.line(b"QUIT"),
            vec![Action::Update {
                expunge: vec![],
                seen: vec![5]
            }]
        );
        let a = s.updated(Err("disk".into()));
        assert!(text(&a).starts_with("-ERR [SYS/TEMP]"));
        assert_eq!(a.last(), Some(&Action::Close));
    }

    #[test]
    fn rset_undoes_seen() {
        let mut s = logged_in();
        s.line(b"RETR 1");
        s.fetched(1, None, Ok(b"a: b\r\n\r\n".to_vec()));
        assert_eq!(s.seen_on_disconnect(), vec![1]);
        s.line(b"RSET");
        assert!(s.seen_on_disconnect().is_empty());
        assert_eq!(
            s.line(b"QUIT"),
            vec![reply("+OK Logging out."), Action::Close]
        );
    }

    #[test]
    fn fetch_of_a_message_gone_meanwhile() {
        let mut s = logged_in();
        s.line(b"RETR 1");
        assert_eq!(
            text(&s.fetched(1, None, Err(FetchError::Gone))),
            "-ERR Message 1 expunged.\r\n"
        );
        assert!(s.seen_on_disconnect().is_empty());
        s.line(b"RETR 1");
        assert!(
            text(&s.fetched(1, None, Err(FetchError::Temporary("io\nerror".into()))))
                .starts_with("-ERR [SYS/TEMP] io error")
        );
        // Still serving.
        assert_eq!(text(&s.line(b"NOOP")), "+OK\r\n");
    }

    #[test]
    fn top_arguments() {
        let mut s = logged_in();
        assert!(text(&s.line(b"TOP 1")).starts_with("-ERR"));
        assert!(text(&s.line(b"TOP 1 x")).starts_with("-ERR"));
        assert!(text(&s.line(b"TOP 9 1")).starts_with("-ERR There's no message 9."));
        assert!(matches!(s.line(b"TOP 1 10")[0], Action::Fetch { .. }));
    }

    #[test]
    fn garbage_gets_err_and_too_much_closes() {
        let mut s = Session::new(settings(true, false));
        assert_eq!(text(&s.line(b"")), "-ERR Empty command.\r\n");
        assert_eq!(
            text(&s.line(b"FOO\0BAR")),
            "-ERR Invalid characters in command.\r\n"
        );
        assert_eq!(
            text(&s.line(b"\xff\xfe")),
            "-ERR Invalid characters in command.\r\n"
        );
        assert_eq!(
            text(&s.line(b"NO\rOP")),
            "-ERR Invalid characters in command.\r\n"
        );
        assert_eq!(text(&s.line(b"XYZZY")), "-ERR Unknown command.\r\n");
        assert_eq!(text(&s.line(b"STAT")), "-ERR Not logged in.\r\n");
        assert_eq!(text(&s.line_too_long()), "-ERR Line too long.\r\n");
        // A good command resets the count.
        assert_eq!(text(&s.line(b"NOOP")), "+OK\r\n");
        for _ in 1..MAX_BAD_COMMANDS {
            assert!(!s.line(b"BAD").contains(&Action::Close));
        }
        assert!(s.line(b"BAD").contains(&Action::Close));
        assert!(s.is_done());
    }

    #[test]
    fn timeouts_and_shutdown() {
        let mut s = Session::new(settings(true, false));
        assert_eq!(
            s.timed_out(),
            vec![reply("-ERR Disconnected: login timeout."), Action::Close]
        );
        let mut s = logged_in();
        assert_eq!(
            s.timed_out(),
            vec![reply("-ERR Disconnected for inactivity."), Action::Close]
        );
        let mut s = logged_in();
        assert_eq!(s.shutting_down().last(), Some(&Action::Close));
    }

    #[test]
    fn quit_before_login() {
        let mut s = Session::new(settings(false, false));
        assert_eq!(
            s.line(b"QUIT"),
            vec![reply("+OK Logging out."), Action::Close]
        );
    }

    #[test]
    fn commands_after_login_that_belong_before() {
        let mut s = logged_in();
        for c in [&b"USER x"[..], b"PASS x", b"AUTH PLAIN", b"STLS"] {
            assert_eq!(text(&s.line(c)), "-ERR Command not valid after login.\r\n");
        }
    }

    #[test]
    fn format_stuffs_dots_and_normalises_line_ends() {
        let (b, size) = format_message(b"A: 1\n\n.\n..x\r\nlast", None);
        assert_eq!(b, b"A: 1\r\n\r\n..\r\n...x\r\nlast\r\n.\r\n");
        assert_eq!(size, 6 + 2 + 3 + 5 + 6);
        let (b, size) = format_message(b"", None);
        assert_eq!(b, b".\r\n");
        assert_eq!(size, 0);
    }

    #[test]
    fn format_top() {
        let m = b"A: 1\r\nB: 2\r\n\r\nl1\r\n.l2\r\nl3\r\n";
        assert_eq!(format_message(m, Some(0)).0, b"A: 1\r\nB: 2\r\n\r\n.\r\n");
        assert_eq!(
            format_message(m, Some(2)).0,
            b"A: 1\r\nB: 2\r\n\r\nl1\r\n..l2\r\n.\r\n"
        );
        assert_eq!(format_message(m, Some(99)).0, format_message(m, None).0);
        // No body at all.
        assert_eq!(format_message(b"A: 1\r\n", Some(3)).0, b"A: 1\r\n.\r\n");
    }
}
