//! The session: bytes and completions in, [`Action`]s out.
//!
//! Input is framed here (command lines, SASL lines, `DATA` bodies, `BDAT` chunks) and handled
//! in order. While the driver runs an action (a recipient lookup, a delivery, a TLS
//! handshake) nothing more is read: the rest stays buffered, [`Session::wants_input`] is
//! false, and [`Session::completed`] carries on where it stopped, so pipelined replies keep
//! their order.

mod commands;
mod transfer;

use std::fmt;
use std::sync::Arc;

use smtp_proto::request::receiver::DummyDataReceiver;

use crate::action::{Action, Completion};
use crate::address::Address;
use crate::config::{Flavor, PeerInfo, SessionConfig};
use crate::data::{Chunks, DotReader};
use crate::params::{MailParams, RcptParams};
use crate::reply::Reply;

/// One SMTP or LMTP conversation, minus the socket.
pub struct Session {
    config: Arc<SessionConfig>,
    peer: PeerInfo,
    state: State,
    pending: Option<Pending>,
    read: Read,
    input: Vec<u8>,
    authenticated: Option<String>,
    errors: u32,
    idle_commands: u32,
}

/// A driver mistake: a completion or TLS notice with no matching action pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// [`Session::completed`] with nothing, or something else, pending.
    #[error("completion does not match the pending action ({pending})")]
    UnexpectedCompletion {
        /// What was pending.
        pending: &'static str,
    },
    /// [`Session::tls_started`] without a pending [`Action::StartTls`].
    #[error("tls_started without a pending STARTTLS")]
    UnexpectedTls,
}

/// Where the conversation is; each state holds only what is valid in it.
enum State {
    /// Greeting sent, no `HELO`/`EHLO`/`LHLO` yet (also after `STARTTLS`).
    Connected,
    Greeted(Helo),
    /// `MAIL` accepted; recipients may be empty.
    Mail(Helo, Box<Envelope>),
    /// Reading a `DATA` body.
    Data(Helo, Box<Envelope>, Box<DotReader>),
    /// Between or inside `BDAT` chunks.
    Chunking(Helo, Box<Envelope>, Box<Chunks>, Option<ChunkRead>),
    Closed,
}

#[derive(Clone)]
struct Helo {
    name: String,
    esmtp: bool,
}

struct Envelope {
    from: Option<Address>,
    params: MailParams,
    rcpts: Vec<(Address, RcptParams)>,
}

/// The `BDAT` chunk being read.
#[derive(Clone, Copy)]
struct ChunkRead {
    size: usize,
    last: bool,
}

/// How the next bytes are read when no body is being read.
enum Read {
    Line,
    /// The rest of an over-long line.
    DiscardLine,
    /// A client line in a SASL exchange.
    SaslLine,
    /// The chunk of a refused `BDAT`, then its reply.
    Skip(DummyDataReceiver, Reply),
}

/// The action the driver is running.
enum Pending {
    Sender(Option<Address>, MailParams),
    Recipient(Address, RcptParams),
    Auth,
    Tls,
    Delivery(usize),
}

impl Session {
    /// A new session; send [`Session::greeting`] first.
    pub fn new(config: Arc<SessionConfig>, peer: PeerInfo) -> Self {
        Self {
            authenticated: peer.authenticated.clone(),
            config,
            peer,
            state: State::Connected,
            pending: None,
            read: Read::Line,
            input: Vec::new(),
            errors: 0,
            idle_commands: 0,
        }
    }

    /// `220 host ESMTP text` (or `LMTP`).
    pub fn greeting(&self) -> Reply {
        let kind = match self.config.flavor {
            Flavor::Smtp => "ESMTP",
            Flavor::Lmtp => "LMTP",
        };
        let text = &self.config.greeting_text;
        let sep = if text.is_empty() { "" } else { " " };
        Reply::plain(220, format!("{} {kind}{sep}{text}", self.config.hostname))
    }

    /// Takes bytes from the client and handles as much as it may.
    pub fn input(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        // Plaintext after STARTTLS is never read (CVE-2011-0411).
        if matches!(self.state, State::Closed) || matches!(self.pending, Some(Pending::Tls)) {
            return out;
        }
        self.input.extend_from_slice(bytes);
        self.run(&mut out);
        out
    }

    /// The result of the pending action; then carries on with buffered input.
    pub fn completed(&mut self, completion: Completion) -> Result<Vec<Action>, SessionError> {
        let mut out = Vec::new();
        if matches!(self.state, State::Closed) {
            return Ok(out);
        }
        self.complete(completion, &mut out)?;
        self.run(&mut out);
        Ok(out)
    }

    /// Whether the driver should read: false while an action is pending or once closed.
    ///
    /// Input given while an action is pending is kept (unread) until the action completes, so
    /// a driver that reads anyway lets the client grow that buffer; stop reading instead.
    pub fn wants_input(&self) -> bool {
        self.pending.is_none() && !self.is_closed()
    }

    /// Whether the session has ended ([`Action::Close`] was given).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// The client waited too long: `421 4.4.2` and close.
    pub fn timeout(&mut self) -> Vec<Action> {
        self.goodbye(Reply::new(421, (4, 4, 2), "Error: timeout exceeded"))
    }

    /// The server is stopping: `421 4.3.2` and close.
    pub fn shutdown(&mut self) -> Vec<Action> {
        self.goodbye(Reply::new(421, (4, 3, 2), "Service shutting down"))
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded: back to the state after the
    /// greeting, forgetting what the client said before (RFC 3207 §4.2).
    pub fn tls_started(&mut self) -> Result<(), SessionError> {
        if !matches!(self.pending, Some(Pending::Tls)) {
            return Err(SessionError::UnexpectedTls);
        }
        self.pending = None;
        self.state = State::Connected;
        self.read = Read::Line;
        self.input.clear();
        self.peer.tls = true;
        self.authenticated = self.peer.authenticated.clone();
        Ok(())
    }

    /// The `HELO`/`EHLO`/`LHLO` name, once given.
    pub fn client_helo(&self) -> Option<&str> {
        match &self.state {
            State::Greeted(h) | State::Mail(h, _) | State::Data(h, ..) | State::Chunking(h, ..) => {
                Some(&h.name)
            }
            State::Connected | State::Closed => None,
        }
    }

    /// The authenticated user, if any.
    pub fn authenticated(&self) -> Option<&str> {
        self.authenticated.as_deref()
    }

    /// The client, with `tls` updated after `STARTTLS`.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Takes the bytes of the message being received (`DATA` or `BDAT`) that were read so
    /// far, so that a driver can write them out as they come instead of holding the whole
    /// message: call it after every [`Session::input`] and [`Session::completed`]. Bytes
    /// taken are not in [`Transaction::message`](crate::Transaction::message), which then
    /// holds only the rest; the whole message is what was taken followed by that.
    ///
    /// Empty when no message is being received. A message that ends up refused (too big,
    /// a NUL, …) stops giving bytes; its transaction ends without [`Action::Deliver`], and
    /// the driver drops what it took at the next [`Action::CheckSender`] or when the
    /// session ends. A driver that never calls this gets the whole message at the end.
    pub fn take_body(&mut self) -> Vec<u8> {
        match &mut self.state {
            State::Data(_, _, reader) => reader.take(),
            State::Chunking(_, _, chunks, _) => chunks.take(),
            _ => Vec::new(),
        }
    }

    /// Handles buffered input until it runs out, an action is pending, or the session closes.
    fn run(&mut self, out: &mut Vec<Action>) {
        let input = std::mem::take(&mut self.input);
        let mut pos = 0;
        while self.pending.is_none() && !self.is_closed() {
            match self.step(&input[pos..], out) {
                Some(used) => pos += used,
                None => break,
            }
        }
        if self.is_closed() || matches!(self.pending, Some(Pending::Tls)) {
            return;
        }
        self.input = input;
        self.input.drain(..pos);
    }

    /// Handles one unit of input: a line, a piece of body. `None`: more bytes are needed.
    fn step(&mut self, rest: &[u8], out: &mut Vec<Action>) -> Option<usize> {
        if let Read::Skip(receiver, _) = &mut self.read {
            let mut bytes = rest.iter();
            let done = receiver.ingest(&mut bytes);
            let used = rest.len() - bytes.len();
            if done && let Read::Skip(_, reply) = std::mem::replace(&mut self.read, Read::Line) {
                self.fail(reply, out);
            }
            return (done || used > 0).then_some(used);
        }
        match &mut self.state {
            State::Data(_, _, reader) => {
                let (used, done) = reader.feed(rest);
                if done {
                    self.end_of_data(out);
                }
                return (done || used > 0).then_some(used);
            }
            State::Chunking(_, _, chunks, Some(_)) => {
                let (used, done) = chunks.feed(rest);
                if done {
                    self.end_of_chunk(out);
                }
                return (done || used > 0).then_some(used);
            }
            _ => {}
        }
        self.line(rest, out)
    }

    /// Frames one line (command or SASL), or discards the tail of an over-long one.
    fn line(&mut self, rest: &[u8], out: &mut Vec<Action>) -> Option<usize> {
        let sasl = matches!(self.read, Read::SaslLine);
        let limit = if sasl {
            self.config.max_line_length.max(MIN_SASL_LINE)
        } else {
            self.config.max_line_length
        };
        let newline = rest.iter().position(|&b| b == b'\n');
        if matches!(self.read, Read::DiscardLine) {
            let used = newline.map_or(rest.len(), |p| p + 1);
            if newline.is_some() {
                self.read = Read::Line;
            }
            return (used > 0).then_some(used);
        }
        match newline {
            Some(p) if p < limit => {
                self.read = Read::Line;
                if sasl {
                    self.sasl_line(&rest[..=p], out);
                } else {
                    self.command_line(&rest[..=p], out);
                }
                Some(p + 1)
            }
            Some(p) => {
                self.read = Read::Line;
                self.line_too_long(sasl, out);
                Some(p + 1)
            }
            None if rest.len() >= limit && !rest.is_empty() => {
                self.read = Read::DiscardLine;
                self.line_too_long(sasl, out);
                Some(rest.len())
            }
            None => None,
        }
    }

    fn line_too_long(&mut self, sasl: bool, out: &mut Vec<Action>) {
        if sasl {
            out.push(Action::AuthCancel);
            self.fail(
                Reply::new(500, (5, 5, 6), "Authentication exchange line is too long"),
                out,
            );
        } else {
            self.fail(Reply::new(500, (5, 5, 2), "Error: line too long"), out);
        }
    }

    /// Queues a reply, without its enhanced code unless those are in use.
    fn emit(&self, reply: Reply, out: &mut Vec<Action>) {
        let reply = if self.config.enhanced_codes() {
            reply
        } else {
            reply.without_enhanced()
        };
        out.push(Action::Reply(reply));
    }

    /// Queues an error reply and counts it; past the limit, says goodbye.
    fn fail(&mut self, reply: Reply, out: &mut Vec<Action>) {
        self.emit(reply, out);
        self.errors += 1;
        if self.errors > self.config.max_errors {
            self.close(Reply::new(421, (4, 7, 0), "Error: too many errors"), out);
        }
    }

    /// `421 host text`, then close.
    fn close(&mut self, reply: Reply, out: &mut Vec<Action>) {
        let text = format!("{} {}", self.config.hostname, reply.lines().join(" "));
        let reply = match reply.enhanced() {
            Some(enhanced) => Reply::new(reply.code(), enhanced, text),
            None => Reply::plain(reply.code(), text),
        };
        self.emit(reply, out);
        out.push(Action::Close);
        self.state = State::Closed;
        self.pending = None;
        self.input = Vec::new();
    }

    fn goodbye(&mut self, reply: Reply) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.is_closed() {
            self.close(reply, &mut out);
        }
        out
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Connected => "Connected",
            State::Greeted(_) => "Greeted",
            State::Mail(..) => "Mail",
            State::Data(..) => "Data",
            State::Chunking(..) => "Chunking",
            State::Closed => "Closed",
        };
        f.debug_struct("Session")
            .field("state", &state)
            .field("pending", &self.pending.as_ref().map(Pending::name))
            .field("peer", &self.peer)
            .field("buffered", &self.input.len())
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl Pending {
    fn name(&self) -> &'static str {
        match self {
            Self::Sender(..) => "Sender",
            Self::Recipient(..) => "Recipient",
            Self::Auth => "Auth",
            Self::Tls => "Tls",
            Self::Delivery(_) => "Delivery",
        }
    }
}

/// SASL lines may be longer than commands (Kerberos tickets, OAuth tokens).
const MIN_SASL_LINE: usize = 12 * 1024;
