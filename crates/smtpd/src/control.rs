//! The control socket `smtpd` in the run directory: queue control (`mailctl queue`, `mailq`)
//! and local submission (`sendmail`).
//!
//! # Protocol
//!
//! One JSON object per line (`\n`-terminated), request then response, any number of requests
//! per connection. A request line is at most [`MAX_REQUEST_LINE`] bytes; the server closes a
//! connection idle for [`IDLE_TIMEOUT`]. Every request has an `op`:
//!
//! ```text
//! {"op":"list","sender":null,"recipient":null,"domain":null}   → {"ok":true,"messages":[QueueEntry…]}
//! {"op":"show","id":"ID","headers":true}                       → {"ok":true,"message":QueueDetail}
//! {"op":"flush","id":null}   (or an id)                        → {"ok":true,"count":N,"text":"…"}
//! {"op":"hold","id":"ID"} / {"op":"release","id":"ID"}         → {"ok":true,"id":"ID","text":"…"}
//! {"op":"delete","id":"ID"}                                    → {"ok":true,"count":1,"text":"…"}
//! {"op":"delete_from","sender":"a@b"}  ("" or "<>": null sender) → {"ok":true,"count":N,"text":"…"}
//! {"op":"stats"}                                              → {"ok":true,"stats":{"REASON":N,…}}
//! {"op":"submit","sender":"a@b","recipients":["c@d"],"size":N}
//!     → {"ok":true,"text":"go ahead"}, then the client sends exactly N message bytes,
//!     → {"ok":true,"id":"ID","text":"queued as ID"}
//! ```
//!
//! A failure is `{"ok":false,"kind":KIND,"error":"text"}`, `KIND` one of [`ErrorKind`]
//! (`usage`, `data`, `too_large`, `bad_address`, `not_found`, `busy`, `denied`,
//! `temp_fail`). After an error to `submit`'s first line no message bytes are sent.
//!
//! Whoever can connect (the socket's group, `postdrop` in the install guide, reached through
//! the setgid `sendmail`) may `submit`; every other request (`list`, `show`, `flush`, `hold`,
//! `release`, `delete`, `delete_from`, `stats`) needs the peer to be root or smtpd's own
//! user, as the queue shows who mails whom. A submission is recorded as authenticated by
//! `uid:N(name)`, the peer's Unix credentials.

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use postern_queue::{Envelope, Filter, Origin, QueueError, QueueId, RcptStatus, Recipient};
use postern_smtp_session::Address;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Ctx;
use crate::qmgr::{QueueAnswer, QueueCmd};

/// The socket's name in the run directory.
pub const SOCKET_NAME: &str = "smtpd";

/// Longest request line accepted by the server.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Longest response line accepted by the client (a list of many messages is long).
pub const MAX_RESPONSE_LINE: u64 = 1 << 30;

/// How long the server waits for the next request line.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the server waits for a submitted message's bytes.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(600);

/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;

/// Received headers beyond which a message is taken to be looping.
const MAX_HOPS: usize = 50;

/// The control socket's path for `config`.
pub fn socket_path(config: &postern_config::Config) -> PathBuf {
    config.socket_path(&config.smtpd.control_socket)
}

/// A request to the control socket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The queued messages matching every given filter (case-insensitive substrings).
    List {
        /// Part of the sender.
        #[serde(default)]
        sender: Option<String>,
        /// Part of some recipient.
        #[serde(default)]
        recipient: Option<String>,
        /// Part of some recipient's domain.
        #[serde(default)]
        domain: Option<String>,
    },
    /// One message: envelope, per-recipient status, optionally the header.
    Show {
        /// The queue id.
        id: String,
        /// Include the message header.
        #[serde(default)]
        headers: bool,
    },
    /// Makes one message (or every message not held) due now.
    Flush {
        /// The queue id; all when absent.
        #[serde(default)]
        id: Option<String>,
    },
    /// Holds a message (kept, not delivered).
    Hold {
        /// The queue id.
        id: String,
    },
    /// Releases a held message.
    Release {
        /// The queue id.
        id: String,
    },
    /// Removes a message without a bounce.
    Delete {
        /// The queue id.
        id: String,
    },
    /// Removes every message from a sender (`""` or `<>`: the null sender), without bounces.
    DeleteFrom {
        /// The sender address (exact, case-insensitive).
        sender: String,
    },
    /// Counts of refusals by the inbound checks (and DMARC quarantines), by reason, since
    /// smtpd started.
    Stats,
    /// Local submission: the envelope; after the go-ahead, `size` message bytes follow.
    Submit {
        /// Envelope sender; `None`, `""` or `<>` for the null sender; a bare name gets
        /// `@hostname`.
        #[serde(default)]
        sender: Option<String>,
        /// Recipients; bare names get `@hostname`.
        recipients: Vec<String>,
        /// The message's length in bytes.
        size: u64,
        /// What the message is: a local user's own (the default), or one the delivery agent
        /// passes on (Sieve redirect, vacation), which only [`forward_users`] may hand over.
        ///
        /// [`forward_users`]: postern_config::Smtpd::forward_users
        #[serde(default, skip_serializing_if = "SubmitKind::is_local")]
        kind: SubmitKind,
        /// For `forward` and `auto_reply`: the mailbox on whose behalf (its Sieve script).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_behalf_of: Option<String>,
    },
}

/// What a local submission is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitKind {
    /// Written by the local user who submits it: DKIM-signed only for the From: addresses
    /// that user may use (`user@hostname`, `[smtpd] local_senders`).
    #[default]
    Local,
    /// Forwarded (Sieve `redirect`): never signed with the From: domain's key; to other
    /// domains with an SRS envelope sender.
    Forward,
    /// An automatic reply (Sieve `vacation`) for the mailbox `on_behalf_of`: signed only
    /// when its From: is that mailbox.
    AutoReply,
}

impl SubmitKind {
    fn is_local(&self) -> bool {
        *self == Self::Local
    }
}

/// Why a request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Malformed request.
    Usage,
    /// Unacceptable message data (mail loop, bad bytes).
    Data,
    /// The message is larger than `[smtpd] max_message_size`.
    TooLarge,
    /// A sender or recipient address is not valid.
    BadAddress,
    /// No such message in the queue.
    NotFound,
    /// The message is being delivered right now; try again shortly.
    Busy,
    /// The peer may not do this.
    Denied,
    /// A temporary failure (the queue could not be written, smtpd is stopping).
    TempFail,
}

/// A response from the control socket.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    /// The failure, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was done, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The queue id concerned (hold, release, submit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// How many messages were affected (flush, delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<usize>,
    /// `list`'s result, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<QueueEntry>>,
    /// `show`'s result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<QueueDetail>,
    /// `stats`' result: reason → count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<std::collections::BTreeMap<String, u64>>,
}

/// One queued message in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueEntry {
    /// Queue id.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Arrival, seconds since the Unix epoch.
    pub arrival: i64,
    /// Envelope sender; empty for `<>`.
    pub sender: String,
    /// The recipients still pending.
    pub recipients: Vec<String>,
    /// Held by the administrator.
    pub held: bool,
    /// A delivery attempt is running right now.
    pub delivering: bool,
    /// Attempts so far.
    pub attempts: u32,
    /// Next attempt, seconds since the Unix epoch.
    pub next_attempt: i64,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
}

/// One recipient of a shown message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientInfo {
    /// The address.
    pub address: String,
    /// `pending`, `delivered` or `bounced`.
    pub status: String,
    /// The last reply for this recipient.
    pub last_reply: Option<String>,
    /// DSN ORCPT.
    pub orcpt: Option<String>,
}

/// One message in detail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDetail {
    /// The listing fields.
    #[serde(flatten)]
    pub entry: QueueEntry,
    /// Every recipient with its status.
    pub recipient_status: Vec<RecipientInfo>,
    /// Who submitted it (SASL login or `uid:N(name)`).
    pub authenticated: Option<String>,
    /// The client's IP address.
    pub client_ip: Option<String>,
    /// The client's HELO name.
    pub helo: Option<String>,
    /// How it entered the queue (what decides DKIM signing and SRS).
    #[serde(default)]
    pub origin: Option<Origin>,
    /// The message header, when asked for.
    pub headers: Option<String>,
}

impl Response {
    /// A success with a text.
    pub fn done(text: impl Into<String>) -> Self {
        Self {
            ok: true,
            text: Some(text.into()),
            ..Self::default()
        }
    }

    /// A failure.
    pub fn fail(kind: ErrorKind, error: impl Into<String>) -> Self {
        Self {
            ok: false,
            kind: Some(kind),
            error: Some(error.into()),
            ..Self::default()
        }
    }

    /// The failure as text (`error`, or a generic text).
    pub fn error_text(&self) -> &str {
        self.error.as_deref().unwrap_or("request failed")
    }
}

impl QueueEntry {
    /// The listing entry of an envelope.
    pub(crate) fn of(env: &Envelope, delivering: bool) -> Self {
        let pending: Vec<String> = env.pending().map(|r| r.address.clone()).collect();
        Self {
            id: env.id.to_string(),
            size: env.size,
            arrival: env.arrival,
            sender: env.sender_str().to_owned(),
            recipients: pending,
            held: env.held,
            delivering,
            attempts: env.attempts,
            next_attempt: env.next_attempt,
            last_error: env.last_error.clone(),
        }
    }
}

impl QueueDetail {
    pub(crate) fn of(env: &Envelope, delivering: bool) -> Self {
        Self {
            entry: QueueEntry::of(env, delivering),
            recipient_status: env
                .recipients
                .iter()
                .map(|r| RecipientInfo {
                    address: r.address.clone(),
                    status: match &r.status {
                        RcptStatus::Pending => "pending".into(),
                        RcptStatus::Delivered => "delivered".into(),
                        RcptStatus::Bounced { .. } => "bounced".into(),
                    },
                    last_reply: match &r.status {
                        RcptStatus::Bounced { reply } => Some(reply.to_string()),
                        _ => r.last_reply.as_ref().map(ToString::to_string),
                    },
                    orcpt: r.orcpt.clone(),
                })
                .collect(),
            authenticated: env.authenticated.clone(),
            client_ip: env.client_ip.clone(),
            helo: env.helo.clone(),
            origin: env.origin.clone(),
            headers: None,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Codec

/// A request or response as one line (JSON and `\n`).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Structs of strings, numbers and options always serialize.
    let mut line = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    line.push(b'\n');
    line
}

/// Parses a request line (with or without its `\n`).
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    serde_json::from_slice(trim_eol(line)).map_err(|e| format!("bad request: {e}"))
}

/// Parses a response line (with or without its `\n`).
pub fn decode_response(line: &[u8]) -> Result<Response, String> {
    serde_json::from_slice(trim_eol(line)).map_err(|e| format!("bad response: {e}"))
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A whole line, without its `\n`.
    Text(Vec<u8>),
    /// The peer closed the connection (a partial last line is dropped).
    Eof,
    /// The line is longer than the limit (what was read of it is discarded).
    TooLong,
}

/// Reads one `\n`-terminated line of at most `max` bytes, never buffering more than that.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> io::Result<Line> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(Line::Eof);
        }
        if let Some(i) = buf.iter().position(|&b| b == b'\n') {
            if line.len() + i > max {
                return Ok(Line::TooLong);
            }
            line.extend_from_slice(&buf[..i]);
            r.consume(i + 1);
            return Ok(Line::Text(line));
        }
        let n = buf.len();
        if line.len() + n > max {
            return Ok(Line::TooLong);
        }
        line.extend_from_slice(buf);
        r.consume(n);
    }
}

/// Turns bare LF (and bare CR) line ends into CRLF and makes sure the message ends with one.
pub fn normalize_crlf(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 32 + 2);
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' if message.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// An envelope address from a local program: angle brackets stripped, `@hostname` added to a
/// bare name, then checked. `Ok(None)` is the null sender (only where `allow_null`).
pub fn local_address(
    raw: &str,
    hostname: &str,
    allow_null: bool,
) -> Result<Option<String>, String> {
    let t = raw.trim();
    let t = t
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(t)
        .trim();
    if t.is_empty() {
        return if allow_null {
            Ok(None)
        } else {
            Err("empty address".into())
        };
    }
    let full = if t.contains('@') {
        t.to_owned()
    } else {
        format!("{t}@{hostname}")
    };
    Address::parse(&full)
        .map(|a| Some(a.into_string()))
        .map_err(|e| format!("<{t}>: {e}"))
}

// ---------------------------------------------------------------------------------------
// A blocking client (mailctl, sendmail)

/// Why talking to the control socket failed.
#[derive(Debug)]
pub enum ClientError {
    /// Nothing listens on the socket: smtpd is not running.
    NotRunning(PathBuf, io::Error),
    /// The socket exists but we may not connect.
    Denied(PathBuf),
    /// The connection broke or timed out.
    Io(io::Error),
    /// smtpd answered something we do not understand.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotRunning(p, e) => write!(
                f,
                "smtpd is not running (cannot connect to {}: {e})",
                p.display()
            ),
            Self::Denied(p) => write!(
                f,
                "permission denied connecting to {} (the socket is for its owner and group)",
                p.display()
            ),
            Self::Io(e) => write!(f, "talking to smtpd: {e}"),
            Self::Protocol(e) => write!(f, "talking to smtpd: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A connection to smtpd's control socket.
#[derive(Debug)]
pub struct Client {
    reader: io::BufReader<std::os::unix::net::UnixStream>,
    writer: std::os::unix::net::UnixStream,
}

impl Client {
    /// Connects to the socket at `path`, with `timeout` for each read and write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, ClientError> {
        let s = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => ClientError::Denied(path.to_owned()),
            _ => ClientError::NotRunning(path.to_owned(), e),
        })?;
        s.set_read_timeout(Some(timeout)).map_err(ClientError::Io)?;
        s.set_write_timeout(Some(timeout))
            .map_err(ClientError::Io)?;
        let writer = s.try_clone().map_err(ClientError::Io)?;
        Ok(Self {
            reader: io::BufReader::new(s),
            writer,
        })
    }

    /// Connects to `config`'s control socket.
    pub fn for_config(
        config: &postern_config::Config,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        Self::connect(&socket_path(config), timeout)
    }

    /// Sends a request (not `submit`: see [`Client::submit`]) and reads the response.
    pub fn request(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.writer
            .write_all(&encode(req))
            .map_err(ClientError::Io)?;
        self.read_response()
    }

    /// Submits a message: the envelope, then (after the go-ahead) the message bytes.
    pub fn submit(
        &mut self,
        sender: Option<&str>,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Response, ClientError> {
        self.submit_as(SubmitKind::Local, None, sender, recipients, message)
    }

    /// Submits a message of `kind` (forwarded mail and automatic replies: see [`SubmitKind`]).
    pub fn submit_as(
        &mut self,
        kind: SubmitKind,
        on_behalf_of: Option<&str>,
        sender: Option<&str>,
        recipients: &[String],
        message: &[u8],
    ) -> Result<Response, ClientError> {
        let req = Request::Submit {
            sender: sender.map(str::to_owned),
            recipients: recipients.to_vec(),
            size: message.len() as u64,
            kind,
            on_behalf_of: on_behalf_of.map(str::to_owned),
        };
        let go = self.request(&req)?;
        if !go.ok {
            return Ok(go);
        }
        self.writer.write_all(message).map_err(ClientError::Io)?;
        self.writer.flush().map_err(ClientError::Io)?;
        self.read_response()
    }

    fn read_response(&mut self) -> Result<Response, ClientError> {
        let mut line = Vec::new();
        (&mut self.reader)
            .take(MAX_RESPONSE_LINE)
            .read_until(b'\n', &mut line)
            .map_err(ClientError::Io)?;
        if line.last() != Some(&b'\n') {
            return Err(ClientError::Protocol(if line.is_empty() {
                "smtpd closed the connection".into()
            } else {
                "truncated response".into()
            }));
        }
        decode_response(&line).map_err(ClientError::Protocol)
    }
}

// ---------------------------------------------------------------------------------------
// Listing for people (mailctl queue list, sendmail -bp)

/// The columns of a queue listing for people.
pub const LIST_HEADER: [&str; 7] = [
    "ID",
    "SIZE",
    "ARRIVAL",
    "SENDER",
    "RECIPIENTS",
    "HELD",
    "LAST ERROR",
];

/// The rows of a queue listing for people (columns as [`LIST_HEADER`]); a message being
/// delivered right now has `(being delivered)` as its last error.
pub fn list_rows(entries: &[QueueEntry]) -> Vec<Vec<String>> {
    entries
        .iter()
        .map(|e| {
            vec![
                e.id.clone(),
                e.size.to_string(),
                format_time(e.arrival),
                if e.sender.is_empty() {
                    "<>".into()
                } else {
                    e.sender.clone()
                },
                e.recipients.join(","),
                if e.held { "held" } else { "-" }.into(),
                if e.delivering {
                    "(being delivered)".into()
                } else {
                    e.last_error.clone().unwrap_or_else(|| "-".into())
                },
            ]
        })
        .collect()
}

/// The last line of a listing: `N message(s), B bytes`.
pub fn list_summary(entries: &[QueueEntry]) -> String {
    let bytes: u64 = entries.iter().map(|e| e.size).sum();
    format!("{} message(s), {bytes} bytes", entries.len())
}

/// Aligned columns, two spaces apart.
pub fn render_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let head: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
    let mut out = String::new();
    for r in std::iter::once(&head).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 < r.len() {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                line.push_str(c);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn format_time(t: i64) -> String {
    if t <= 0 {
        return "-".into();
    }
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

// ---------------------------------------------------------------------------------------
// The server

/// Binds the control socket (mode 0660), logging `listening on PATH`.
pub(crate) fn bind(config: &postern_config::Config) -> anyhow::Result<(UnixListener, PathBuf)> {
    let path = socket_path(config);
    let spec = &config.smtpd.control_socket;
    let l = postern_daemon::bind_unix(
        &path,
        spec.mode_bits()?,
        spec.owner.as_deref(),
        spec.group.as_deref(),
    )?;
    info!("listening on {}", path.display());
    Ok((l, path))
}

/// Serves the control socket until `shutdown`, then lets connections in flight finish (a
/// submission being committed) for a while, and removes the socket.
pub(crate) async fn serve(
    listener: UnixListener,
    path: PathBuf,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut conns = JoinSet::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "control accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        while conns.try_join_next().is_some() {}
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            let mut s = stream;
            tokio::spawn(async move {
                let r = Response::fail(ErrorKind::TempFail, "too many control connections");
                drop(s.write_all(&encode(&r)).await);
            });
            continue;
        };
        let ctx = ctx.clone();
        let sd = shutdown.clone();
        conns.spawn(async move {
            connection(stream, ctx, sd).await;
            drop(permit);
        });
    }
    drop(listener);
    drop(std::fs::remove_file(&path));
    postern_daemon::finish_within(&mut conns, crate::SHUTDOWN_GRACE, "control connections").await;
}

/// The peer's credentials.
struct Peer {
    uid: u32,
    /// The user name of `uid`, when it has one.
    name: Option<String>,
    /// `uid:N(name)`.
    identity: String,
    /// Root or smtpd's own user.
    admin: bool,
}

async fn peer_of(stream: &UnixStream) -> Option<Peer> {
    let cred = stream.peer_cred().ok()?;
    let uid = cred.uid();
    let name = tokio::task::spawn_blocking(move || {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    })
    .await
    .ok()
    .flatten();
    let identity = match &name {
        Some(n) => format!("uid:{uid}({n})"),
        None => format!("uid:{uid}"),
    };
    let me = nix::unistd::geteuid().as_raw();
    Some(Peer {
        uid,
        name,
        identity,
        admin: uid == 0 || uid == me,
    })
}

async fn connection(stream: UnixStream, ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let Some(peer) = peer_of(&stream).await else {
        return;
    };
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    loop {
        let line = tokio::select! {
            _ = shutdown.cancelled() => return,
            l = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut r, MAX_REQUEST_LINE)) => l,
        };
        let line = match line {
            Ok(Ok(Line::Text(l))) => l,
            Ok(Ok(Line::TooLong)) => {
                let resp = Response::fail(ErrorKind::Usage, "request line too long");
                drop(w.write_all(&encode(&resp)).await);
                return;
            }
            _ => return,
        };
        if trim_eol(&line).is_empty() {
            continue;
        }
        let (resp, keep) = match decode_request(&line) {
            Err(e) => (Response::fail(ErrorKind::Usage, e), true),
            Ok(Request::Submit {
                sender,
                recipients,
                size,
                kind,
                on_behalf_of,
            }) => {
                let what = (kind, on_behalf_of);
                submit(&ctx, &peer, sender, recipients, size, what, &mut r, &mut w).await
            }
            Ok(req) => (queue_request(&ctx, &peer, req).await, true),
        };
        let written =
            tokio::time::timeout(IDLE_TIMEOUT, async { w.write_all(&encode(&resp)).await }).await;
        if !matches!(written, Ok(Ok(()))) || !keep {
            return;
        }
    }
}

fn parse_id(id: &str) -> Result<QueueId, Box<Response>> {
    id.trim()
        .parse()
        .map_err(|e| Box::new(Response::fail(ErrorKind::Usage, format!("{id:?}: {e}"))))
}

async fn queue_request(ctx: &Ctx, peer: &Peer, req: Request) -> Response {
    // Everything but submission is the administrator's: the queue shows who mails whom.
    if !peer.admin {
        return Response::fail(
            ErrorKind::Denied,
            format!(
                "uid {} may only submit mail here (the queue is for root and smtpd's own user)",
                peer.uid
            ),
        );
    }
    if req == Request::Stats {
        return Response {
            ok: true,
            stats: Some(ctx.checks.stats.snapshot()),
            ..Response::default()
        };
    }
    let (cmd, want_headers) = match req {
        Request::List {
            sender,
            recipient,
            domain,
        } => (
            QueueCmd::List(Filter {
                sender,
                recipient,
                domain,
            }),
            false,
        ),
        Request::Show { id, headers } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Show(id), headers),
            Err(r) => return *r,
        },
        Request::Flush { id } => match id.as_deref().map(parse_id).transpose() {
            Ok(id) => (QueueCmd::Flush(id), false),
            Err(r) => return *r,
        },
        Request::Hold { id } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Hold(id), false),
            Err(r) => return *r,
        },
        Request::Release { id } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Release(id), false),
            Err(r) => return *r,
        },
        Request::Delete { id } => match parse_id(&id) {
            Ok(id) => (QueueCmd::Delete(id), false),
            Err(r) => return *r,
        },
        Request::DeleteFrom { sender } => (QueueCmd::DeleteFrom(sender), false),
        Request::Stats | Request::Submit { .. } => {
            return Response::fail(ErrorKind::Usage, "submit is not a queue command");
        }
    };
    match ctx.queue.control(cmd).await {
        Err((kind, e)) => Response::fail(kind, e),
        Ok(QueueAnswer::List(messages)) => Response {
            ok: true,
            count: Some(messages.len()),
            messages: Some(messages),
            ..Response::default()
        },
        Ok(QueueAnswer::Show(mut detail)) => {
            if want_headers && let Ok(id) = detail.entry.id.parse::<QueueId>() {
                let spool = ctx.queue.committer.spool().clone();
                detail.headers =
                    match tokio::task::spawn_blocking(move || spool.read_message(id)).await {
                        Ok(Ok(m)) => Some(header_of(&m)),
                        Ok(Err(e)) if e.is_not_found() => {
                            return Response::fail(ErrorKind::NotFound, format!("no message {id}"));
                        }
                        Ok(Err(e)) => return Response::fail(ErrorKind::TempFail, e.to_string()),
                        Err(e) => return Response::fail(ErrorKind::TempFail, e.to_string()),
                    };
            }
            Response {
                ok: true,
                id: Some(detail.entry.id.clone()),
                message: Some(*detail),
                ..Response::default()
            }
        }
        Ok(QueueAnswer::Done { text, id, count }) => Response {
            ok: true,
            text: Some(text),
            id: id.map(|i| i.to_string()),
            count: Some(count),
            ..Response::default()
        },
    }
}

/// The header of a message (up to the empty line), as text.
fn header_of(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 2)
        .or_else(|| message.windows(2).position(|w| w == b"\n\n").map(|i| i + 1))
        .unwrap_or(message.len());
    String::from_utf8_lossy(&message[..end]).into_owned()
}

/// Counts `Received:` fields in the header.
fn hops(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .take_while(|l| !l.is_empty() && *l != b"\r")
        .filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

/// Checks a submission's envelope; the sender and recipients as they will be queued.
pub(crate) fn check_envelope(
    sender: Option<&str>,
    recipients: &[String],
    hostname: &str,
    max_recipients: usize,
) -> Result<(Option<String>, Vec<String>), Box<Response>> {
    let fail = |kind, e: String| Box::new(Response::fail(kind, e));
    let sender = match sender {
        None => None,
        Some(s) => local_address(s, hostname, true)
            .map_err(|e| fail(ErrorKind::BadAddress, format!("bad sender {e}")))?,
    };
    if recipients.is_empty() {
        return Err(fail(ErrorKind::Usage, "no recipients".into()));
    }
    if recipients.len() > max_recipients.max(1) {
        return Err(fail(
            ErrorKind::Usage,
            format!("too many recipients (at most {max_recipients})"),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in recipients {
        let a = local_address(r, hostname, false)
            .map_err(|e| fail(ErrorKind::BadAddress, format!("bad recipient {e}")))?
            .unwrap_or_default();
        if seen.insert(a.to_lowercase()) {
            out.push(a);
        }
    }
    Ok((sender, out))
}

/// How a local submission of `kind` by `peer` enters the queue, or why it may not.
fn submit_origin(
    config: &postern_config::Config,
    peer: &Peer,
    kind: SubmitKind,
    on_behalf_of: Option<String>,
) -> Result<Origin, Box<Response>> {
    if kind == SubmitKind::Local {
        return Ok(Origin::Local {
            uid: peer.uid,
            user: peer.name.clone(),
        });
    }
    let listed = config.smtpd.forward_users.iter().any(|u| {
        let u = u.trim();
        u == peer.uid.to_string() || peer.name.as_deref() == Some(u)
    });
    if !peer.admin && !listed {
        warn!(peer = %peer.identity, ?kind, "forwarding submission refused: not in [smtpd] forward_users");
        return Err(Box::new(Response::fail(
            ErrorKind::Denied,
            format!(
                "uid {} may not hand over forwarded mail (only root, smtpd's own user and [smtpd] forward_users)",
                peer.uid
            ),
        )));
    }
    let user = on_behalf_of
        .map(|u| u.trim().to_owned())
        .filter(|u| !u.is_empty());
    match kind {
        SubmitKind::AutoReply => match user {
            Some(user) => Ok(Origin::AutoReply { user }),
            None => Err(Box::new(Response::fail(
                ErrorKind::Usage,
                "auto_reply needs on_behalf_of",
            ))),
        },
        _ => Ok(Origin::Forward { by: user }),
    }
}

/// Local submission: checks the envelope, answers go-ahead, reads `size` bytes, commits.
/// Returns the final response and whether the connection can go on.
#[allow(clippy::too_many_arguments)]
async fn submit<R, W>(
    ctx: &Ctx,
    peer: &Peer,
    sender: Option<String>,
    recipients: Vec<String>,
    size: u64,
    (kind, on_behalf_of): (SubmitKind, Option<String>),
    r: &mut R,
    w: &mut W,
) -> (Response, bool)
where
    R: AsyncBufRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let c = &ctx.config;
    let origin = match submit_origin(c, peer, kind, on_behalf_of) {
        Ok(o) => o,
        Err(resp) => return (*resp, true),
    };
    let (sender, recipients) = match check_envelope(
        sender.as_deref(),
        &recipients,
        &c.hostname,
        c.smtpd.max_recipients,
    ) {
        Ok(x) => x,
        Err(resp) => return (*resp, true),
    };
    if size > c.smtpd.max_message_size {
        return (
            Response::fail(
                ErrorKind::TooLarge,
                format!(
                    "message of {size} bytes is larger than the limit of {} bytes",
                    c.smtpd.max_message_size
                ),
            ),
            true,
        );
    }
    if !matches!(
        tokio::time::timeout(
            IDLE_TIMEOUT,
            w.write_all(&encode(&Response::done("go ahead")))
        )
        .await,
        Ok(Ok(()))
    ) {
        return (Response::fail(ErrorKind::TempFail, "write failed"), false);
    }
    let mut body = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 20));
    let mut limited = (&mut *r).take(size);
    match tokio::time::timeout(MESSAGE_TIMEOUT, limited.read_to_end(&mut body)).await {
        Ok(Ok(n)) if n as u64 == size => {}
        Ok(Ok(_)) | Ok(Err(_)) => {
            return (
                Response::fail(
                    ErrorKind::Usage,
                    "connection closed before the whole message",
                ),
                false,
            );
        }
        Err(_) => {
            return (
                Response::fail(ErrorKind::TempFail, "timed out reading the message"),
                false,
            );
        }
    }
    let body = normalize_crlf(&body);
    // Results claiming to be ours, and our own markers, come only from us (as on port 25).
    let body = match crate::checks::spf_dkim_dmarc::strip_forged(&body, &c.hostname) {
        Some(clean) => {
            info!(user = %peer.identity, "removed a forged Authentication-Results or X-Postern- header");
            clean
        }
        None => body,
    };
    if hops(&body) > MAX_HOPS {
        return (
            Response::fail(ErrorKind::Data, "too many Received headers: mail loop"),
            true,
        );
    }
    let mut env = Envelope::new(
        sender.clone(),
        recipients.iter().map(Recipient::new).collect(),
    );
    env.authenticated = Some(peer.identity.clone());
    env.origin = Some(origin);
    env.smtputf8 =
        !sender.as_deref().unwrap_or("").is_ascii() || recipients.iter().any(|a| !a.is_ascii());
    env.body_8bit = !body.is_ascii();
    let mut message = format!(
        "Received: from local uid {} by {} (Postern) with local;\r\n\t{}\r\n",
        peer.uid,
        c.hostname,
        mail_builder::headers::date::Date::now().to_rfc822()
    )
    .into_bytes();
    message.extend_from_slice(&body);
    drop(body);
    match ctx.queue.committer.commit(env, message).await {
        Ok(env) => {
            info!(id = %env.id, from = env.sender_str(), rcpts = env.recipients.len(), size = env.size,
                user = %peer.identity, "queued (local submission)");
            let id = env.id;
            ctx.queue.enqueue(env);
            let mut resp = Response::done(format!("queued as {id}"));
            resp.id = Some(id.to_string());
            (resp, true)
        }
        Err(QueueError::TooLarge { .. }) => (
            Response::fail(ErrorKind::TooLarge, "message too big for system"),
            true,
        ),
        Err(e) => {
            warn!(error = %e, "queue commit failed (local submission)");
            (
                Response::fail(
                    ErrorKind::TempFail,
                    "local error in processing, try again later",
                ),
                true,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::List {
                sender: Some("a@b".into()),
                recipient: None,
                domain: Some("x.org".into()),
            },
            Request::Show {
                id: "0123".into(),
                headers: true,
            },
            Request::Flush { id: None },
            Request::Hold { id: "1".into() },
            Request::Release { id: "1".into() },
            Request::Delete { id: "1".into() },
            Request::DeleteFrom { sender: "".into() },
            Request::Submit {
                sender: None,
                recipients: vec!["root".into()],
                size: 10,
                kind: SubmitKind::Local,
                on_behalf_of: None,
            },
            Request::Submit {
                sender: Some("a@b".into()),
                recipients: vec!["c@d".into()],
                size: 10,
                kind: SubmitKind::Forward,
                on_behalf_of: Some("x@y".into()),
            },
        ];
        for r in reqs {
            let line = encode(&r);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(decode_request(&line).unwrap(), r);
        }
        assert_eq!(
            decode_request(br#"{"op":"list"}"#).unwrap(),
            Request::List {
                sender: None,
                recipient: None,
                domain: None
            }
        );
        assert_eq!(
            decode_request(b"{\"op\":\"flush\",\"id\":\"x\"}\r\n").unwrap(),
            Request::Flush {
                id: Some("x".into())
            }
        );
        assert!(decode_request(br#"{"op":"nuke"}"#).is_err());
        assert!(decode_request(b"list").is_err());
        let resp = Response::fail(ErrorKind::NotFound, "no message x");
        let line = encode(&resp);
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "{\"ok\":false,\"kind\":\"not_found\",\"error\":\"no message x\"}\n"
        );
        assert_eq!(decode_response(&line).unwrap(), resp);
    }

    #[tokio::test]
    async fn bounded_lines() {
        let data: &[u8] = b"short\nthis one is far too long\nlast";
        let mut r = BufReader::with_capacity(4, data);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Text(b"short".to_vec())
        );
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::TooLong);
        let mut r = BufReader::new(&b"abc"[..]);
        assert_eq!(read_line(&mut r, 10).await.unwrap(), Line::Eof);
        let mut r = BufReader::new(&b"0123456789\n"[..]);
        assert_eq!(
            read_line(&mut r, 10).await.unwrap(),
            Line::Text(b"0123456789".to_vec())
        );
    }

    #[test]
    fn crlf_and_addresses() {
        assert_eq!(normalize_crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc\r\n");
        assert_eq!(normalize_crlf(b"a\r\n"), b"a\r\n");
        assert_eq!(normalize_crlf(b""), b"");
        assert_eq!(
            local_address("root", "mx.example", false).unwrap(),
            Some("root@mx.example".into())
        );
        assert_eq!(
            local_address(" <a@b.org> ", "h", false).unwrap(),
            Some("a@b.org".into())
        );
        assert_eq!(local_address("<>", "h", true).unwrap(), None);
        assert!(local_address("", "h", false).is_err());
        assert!(local_address("a b@c", "h", false).is_err());
        assert!(local_address("a@", "h", false).is_err());
        let (s, r) = check_envelope(
            Some("alice"),
            &["bob".into(), "BOB@h.example".into(), "c@d.org".into()],
            "h.example",
            10,
        )
        .unwrap();
        assert_eq!(s.as_deref(), Some("alice@h.example"));
        assert_eq!(r, vec!["bob@h.example", "c@d.org"]);
        assert_eq!(
            check_envelope(None, &[], "h", 10).unwrap_err().kind,
            Some(ErrorKind::Usage)
        );
        assert_eq!(
            check_envelope(None, &["x@@y".into()], "h", 10)
                .unwrap_err()
                .kind,
            Some(ErrorKind::BadAddress)
        );
    }

    #[test]
    fn headers_hops_and_rows() {
        assert_eq!(header_of(b"A: 1\r\nB: 2\r\n\r\nbody"), "A: 1\r\nB: 2\r\n");
        assert_eq!(
            hops(b"Received: a\r\nreceived: b\r\n\r\nReceived: c\r\n"),
            2
        );
        let e = QueueEntry {
            id: "abc".into(),
            size: 10,
            arrival: 951_782_400,
            sender: String::new(),
            recipients: vec!["a@b".into(), "c@d".into()],
            held: true,
            delivering: false,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
        };
        assert_eq!(
            list_summary(std::slice::from_ref(&e)),
            "1 message(s), 10 bytes"
        );
        assert_eq!(
            list_rows(&[e]),
            vec![vec![
                "abc".to_string(),
                "10".into(),
                "2000-02-29 00:00:00".into(),
                "<>".into(),
                "a@b,c@d".into(),
                "held".into(),
                "-".into()
            ]]
        );
    }

    /// Calls `f` until it is not `busy` (a delivery attempt in flight).
    fn retry_busy(c: &mut Client, req: &Request) -> Response {
        for _ in 0..100 {
            let r = c.request(req).unwrap();
            if r.kind != Some(ErrorKind::Busy) {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("still busy");
    }

    /// Regression (issue 11 §1): forwarded mail is marked as such only when lmtp-deliver's
    /// user (or root, or smtpd's own) hands it over; any other local user gets `denied`.
    #[test]
    fn only_forward_users_may_hand_over_forwarded_mail() {
        let config = postern_config::Config::parse(
            "hostname = \"mx.example\"\n[smtpd]\nforward_users = [\"vmail\", \"5001\"]\n",
            Path::new("/nonexistent"),
        )
        .unwrap();
        let peer = |uid: u32, name: &str, admin: bool| Peer {
            uid,
            name: Some(name.to_owned()),
            identity: format!("uid:{uid}({name})"),
            admin,
        };
        let mallory = peer(1000, "mallory", false);
        assert_eq!(
            submit_origin(&config, &mallory, SubmitKind::Local, None).unwrap(),
            Origin::Local {
                uid: 1000,
                user: Some("mallory".into())
            }
        );
        for kind in [SubmitKind::Forward, SubmitKind::AutoReply] {
            let e = submit_origin(&config, &mallory, kind, Some("a@b".into())).unwrap_err();
            assert_eq!(e.kind, Some(ErrorKind::Denied), "{e:?}");
        }
        let vmail = peer(5000, "vmail", false);
        assert_eq!(
            submit_origin(&config, &vmail, SubmitKind::Forward, Some("a@b".into())).unwrap(),
            Origin::Forward {
                by: Some("a@b".into())
            }
        );
        let by_uid = peer(5001, "other", false);
        assert!(submit_origin(&config, &by_uid, SubmitKind::Forward, None).is_ok());
        let root = peer(0, "root", true);
        assert_eq!(
            submit_origin(&config, &root, SubmitKind::AutoReply, Some("a@b".into())).unwrap(),
            Origin::AutoReply { user: "a@b".into() }
        );
        let e = submit_origin(&config, &root, SubmitKind::AutoReply, None).unwrap_err();
        assert_eq!(e.kind, Some(ErrorKind::Usage));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn control_server_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let config = postern_config::Config::parse(
            "hostname = \"mx.example\"\n[paths]\nrun_dir = \"run\"\nstate_dir = \"state\"\n\
             [smtpd]\nlisten = []\nsubmission = []\nsubmissions = []\nmax_message_size = 1000\n",
            dir.path(),
        )
        .unwrap();
        let listeners = crate::bind(&config).await.unwrap();
        let path = socket_path(&config);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o660
        );
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(crate::run(config, listeners, shutdown.clone()));
        let p = path.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Client::connect(&p, Duration::from_secs(10)).unwrap();
            // Submission: bare names get @hostname, line ends become CRLF.
            let r = c
                .submit(
                    Some("alice"),
                    &["bob@example.org".into(), "root".into()],
                    b"Subject: hi\n\nbody\n",
                )
                .unwrap();
            assert!(r.ok, "{r:?}");
            let id = r.id.clone().unwrap();
            let r = c
                .request(&Request::List {
                    sender: None,
                    recipient: Some("root@".into()),
                    domain: None,
                })
                .unwrap();
            let list = r.messages.unwrap();
            assert_eq!(list.len(), 1);
            assert_eq!(list[0].id, id);
            assert_eq!(list[0].sender, "alice@mx.example");
            assert_eq!(list[0].recipients, ["bob@example.org", "root@mx.example"]);
            let r = c
                .request(&Request::Show {
                    id: id.clone(),
                    headers: true,
                })
                .unwrap();
            let d = r.message.unwrap();
            let me = nix::unistd::geteuid().as_raw();
            assert!(
                d.authenticated
                    .as_deref()
                    .unwrap()
                    .starts_with(&format!("uid:{me}"))
            );
            let h = d.headers.unwrap();
            assert!(
                h.starts_with(&format!(
                    "Received: from local uid {me} by mx.example (Postern) with local;"
                )),
                "{h}"
            );
            assert!(h.ends_with("Subject: hi\r\n"), "{h}");
            // Hold, flush refused while held, release, delete.
            let r = retry_busy(&mut c, &Request::Hold { id: id.clone() });
            assert!(r.ok, "{r:?}");
            let r = c
                .request(&Request::List {
                    sender: None,
                    recipient: None,
                    domain: None,
                })
                .unwrap();
            assert!(r.messages.unwrap()[0].held);
            let r = c
                .request(&Request::Flush {
                    id: Some(id.clone()),
                })
                .unwrap();
            assert_eq!(r.kind, Some(ErrorKind::Usage));
            assert!(c.request(&Request::Release { id: id.clone() }).unwrap().ok);
            let r = retry_busy(&mut c, &Request::Delete { id: id.clone() });
            assert!(r.ok, "{r:?}");
            let r = c
                .request(&Request::Show {
                    id: id.clone(),
                    headers: false,
                })
                .unwrap();
            assert_eq!(r.kind, Some(ErrorKind::NotFound));
            // Delete by sender.
            for _ in 0..3 {
                assert!(c.submit(None, &["x@y.org".into()], b"a\r\n").unwrap().ok);
            }
            let r = retry_busy(
                &mut c,
                &Request::DeleteFrom {
                    sender: "<>".into(),
                },
            );
            assert!(r.ok, "{r:?}");
            // Refusals.
            let r = c.submit(None, &["x@y.org".into()], &[b'a'; 1001]).unwrap();
            assert_eq!(r.kind, Some(ErrorKind::TooLarge));
            let r = c.submit(None, &["a b@c".into()], b"x").unwrap();
            assert_eq!(r.kind, Some(ErrorKind::BadAddress));
            let r = c.request(&Request::Hold { id: "nope".into() }).unwrap();
            assert_eq!(r.kind, Some(ErrorKind::Usage));
        })
        .await
        .unwrap();
        // A bad line gets an error and the connection goes on.
        let mut s = UnixStream::connect(&path).await.unwrap();
        s.write_all(b"hello\n{\"op\":\"list\"}\n").await.unwrap();
        let mut r = BufReader::new(s);
        let Line::Text(l) = read_line(&mut r, 1 << 20).await.unwrap() else {
            panic!()
        };
        assert_eq!(decode_response(&l).unwrap().kind, Some(ErrorKind::Usage));
        let Line::Text(l) = read_line(&mut r, 1 << 20).await.unwrap() else {
            panic!()
        };
        let resp = decode_response(&l).unwrap();
        assert!(resp.ok);
        shutdown.cancel();
        server.await.unwrap().unwrap();
        assert!(!path.exists());
        assert!(matches!(
            Client::connect(&path, Duration::from_secs(1)),
            Err(ClientError::NotRunning(..))
        ));
    }
}
