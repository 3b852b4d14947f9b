//! Errors of the client, the step each one happened in, and the time allowed for each step.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::reply::ServerReply;

/// What went wrong with a connection or a transaction as a whole.
///
/// Problems of a single recipient are not errors: they come back as that recipient's
/// [`RcptResult`](crate::RcptResult).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection could not be made.
    #[error("cannot connect: {0}")]
    Connect(#[source] io::Error),
    /// The server did not answer (or take our data) in time.
    #[error("timed out waiting for the {0}")]
    Timeout(Step),
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The server sent something that is not a valid reply.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server refused the greeting, `EHLO`/`LHLO`/`HELO`, `MAIL FROM` or `RSET`: the
    /// reply applies to every recipient of the transaction.
    #[error("rejected by the server: {0}")]
    Rejected(ServerReply),
    /// The server closed the connection, or an earlier error left it unusable.
    #[error("connection closed")]
    Closed,
    /// The TLS handshake failed (or the certificate was refused).
    #[error("TLS handshake failed: {0}")]
    Tls(String),
}

impl ClientError {
    /// Whether trying again later may help: everything but a `5xx` rejection.
    ///
    /// A malformed reply counts as temporary, as Postfix counts it: the next try may reach
    /// another server, or the same one in a better mood.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Rejected(reply) => !reply.is_permanent(),
            Self::Connect(_)
            | Self::Timeout(_)
            | Self::Io(_)
            | Self::Protocol(_)
            | Self::Tls(_)
            | Self::Closed => true,
        }
    }
}

/// A step of the conversation, as named in [`ClientError::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Making the connection.
    Connect,
    /// The server's greeting.
    Greeting,
    /// The reply to `EHLO`, `LHLO` or `HELO`.
    Hello,
    /// The reply to `MAIL FROM`.
    Mail,
    /// The reply to `RCPT TO`.
    Rcpt,
    /// The reply to `DATA`.
    Data,
    /// Sending the message body.
    Body,
    /// The reply (or, for LMTP, a reply) after the end of the body.
    FinalReply,
    /// The reply to `RSET`.
    Rset,
    /// `STARTTLS` and the TLS handshake.
    StartTls,
    /// The `AUTH` exchange.
    Auth,
    /// The reply to `QUIT`.
    Quit,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connection",
            Self::Greeting => "greeting",
            Self::Hello => "reply to EHLO/LHLO/HELO",
            Self::Mail => "reply to MAIL FROM",
            Self::Rcpt => "reply to RCPT TO",
            Self::Data => "reply to DATA",
            Self::Body => "server to take the message body",
            Self::FinalReply => "reply to the end of the message",
            Self::Rset => "reply to RSET",
            Self::StartTls => "reply to STARTTLS or the TLS handshake",
            Self::Auth => "reply to AUTH",
            Self::Quit => "reply to QUIT",
        })
    }
}

/// How long each step may take (Postfix's `smtp_*_timeout` and `lmtp_*_timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Making the connection (default 30 s).
    pub connect: Duration,
    /// Waiting for the greeting (default 60 s).
    pub greeting: Duration,
    /// Waiting for the reply to a command: hello, `MAIL`, `RCPT`, `DATA`, `RSET`, `QUIT`
    /// (default 60 s); also writing the commands.
    pub command: Duration,
    /// Writing one block (64 KiB) of the message body (default 180 s).
    pub data_block: Duration,
    /// Waiting for the reply after the end of the body (default 600 s).
    pub final_reply: Duration,
}

impl Timeouts {
    /// The same duration for every step (handy in tests).
    pub fn all(duration: Duration) -> Self {
        Self {
            connect: duration,
            greeting: duration,
            command: duration,
            data_block: duration,
            final_reply: duration,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            greeting: DEFAULT_GREETING_TIMEOUT,
            command: DEFAULT_COMMAND_TIMEOUT,
            data_block: DEFAULT_DATA_BLOCK_TIMEOUT,
            final_reply: DEFAULT_FINAL_REPLY_TIMEOUT,
        }
    }
}

/// Default [`Timeouts::connect`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`Timeouts::greeting`].
pub const DEFAULT_GREETING_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Timeouts::command`].
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`Timeouts::data_block`].
pub const DEFAULT_DATA_BLOCK_TIMEOUT: Duration = Duration::from_secs(180);
/// Default [`Timeouts::final_reply`].
pub const DEFAULT_FINAL_REPLY_TIMEOUT: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_or_not() {
        let reply = |code| ServerReply::new(code, None, "no");
        assert!(ClientError::Rejected(reply(421)).is_temporary());
        assert!(!ClientError::Rejected(reply(550)).is_temporary());
        assert!(ClientError::Timeout(Step::Greeting).is_temporary());
        assert!(ClientError::Closed.is_temporary());
        assert!(ClientError::Protocol("x".into()).is_temporary());
    }

    #[test]
    fn messages_name_the_step() {
        let err = ClientError::Timeout(Step::FinalReply);
        assert_eq!(
            err.to_string(),
            "timed out waiting for the reply to the end of the message"
        );
    }
}
