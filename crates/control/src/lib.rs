//! The client side of smtpd's control socket `smtpd` in the run directory: queue control
//! (`mailctl queue`, `mailq`) and local submission (`sendmail`). The server is in smtpd.
//! No tokio here: the client is blocking (mailctl, the setgid sendmail).
//! The client of imapd's kick socket, which ends a user's sessions, is in [`imapd`].
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
#![forbid(unsafe_code)]

pub mod imapd;

use std::collections::HashSet;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use postern_smtp_session::Address;
use serde::{Deserialize, Serialize};

/// The socket's name in the run directory.
pub const SOCKET_NAME: &str = "smtpd";

/// Longest request line accepted by the server.
pub const MAX_REQUEST_LINE: usize = 64 * 1024;

/// Longest response line accepted by the client (a list of many messages is long).
pub const MAX_RESPONSE_LINE: u64 = 1 << 30;

/// How long the server waits for the next request line.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// How a message entered the queue, as `show` reports it (the queue's own type).
pub use postern_mail_types::Origin;

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

/// A line without its `\n` (and `\r`).
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
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

/// Checks a submission's envelope; the sender and recipients as they will be queued.
pub fn check_envelope(
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
    fn rows() {
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
}
