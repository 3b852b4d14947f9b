//! Small async clients for authd's three sockets, for our own daemons (smtpd, imapd,
//! lmtp-deliver, mailctl). With [`crate::cache`], the only modules of this crate doing I/O.
//!
//! - [`AuthClient`]: Dovecot auth (`auth` socket): `PLAIN`, `LOGIN`, or any mechanism step by step.
//! - [`UserdbClient`]: Dovecot userdb (`auth-userdb` socket): `USER`, `PASS`, `LIST`.
//! - [`SocketmapClient`]: Postfix socketmap (`socketmap` socket): one lookup after another.
//!
//! Each call runs under one time limit ([`DEFAULT_TIMEOUT`] unless set) and reads through the
//! bounded framers of this crate, so a broken server can neither hang nor flood the caller.
//! After a timeout, an I/O error or a reply that doesn't parse, the connection is out of step:
//! further calls fail with [`ClientError::Unusable`] and the caller connects anew. A negative
//! answer (`FAIL`, `NOTFOUND`, a misuse of the API) leaves the connection usable.
//! Connecting, reconnecting, pooling and logging are the caller's.

use std::future::Future;
use std::io;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::ProtoError;
use crate::line::{LineBuffer, LineError};
use crate::socketmap::NetstringError;

mod auth;
mod quiet;
mod socketmap;
mod userdb;

#[cfg(test)]
mod tests;

pub use crate::dovecot::AuthParams;
pub use auth::{AuthClient, AuthOutcome, AuthStep};
pub use quiet::QuietUnixStream;
pub use socketmap::SocketmapClient;
pub use userdb::UserdbClient;

/// The time limit of one operation unless set otherwise (Postfix uses the same 10 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much one read asks for.
const READ_CHUNK: usize = 4096;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting, reading or writing failed (other than by the server closing).
    #[error("i/o error: {0}")]
    Io(io::Error),
    /// The operation took longer than the time limit.
    #[error("timed out")]
    Timeout,
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server sent a line or message that doesn't parse.
    #[error("bad reply: {0}")]
    Proto(#[from] ProtoError),
    /// The server sent an over-long or non-UTF-8 line.
    #[error("bad reply line: {0}")]
    Line(#[from] LineError),
    /// The server sent a broken netstring.
    #[error("bad reply netstring: {0}")]
    Netstring(#[from] NetstringError),
    /// The server speaks another major protocol version.
    #[error("unsupported protocol version {0}")]
    Version(u32),
    /// A well-formed reply that makes no sense here.
    #[error("unexpected reply: {0}")]
    Unexpected(&'static str),
    /// The server answered `FAIL`: it could not look (temporary).
    #[error("lookup failed: {0}")]
    Failed(String),
    /// The server does not offer this mechanism (nothing was sent).
    #[error("mechanism {0} not offered by the server")]
    UnsupportedMechanism(String),
    /// The call does not fit the state or the arguments are invalid (nothing was sent).
    #[error("invalid use: {0}")]
    Misuse(&'static str),
    /// An earlier error left the connection out of step; connect again.
    #[error("connection unusable after an earlier error")]
    Unusable,
}

impl ClientError {
    /// Whether the error leaves the connection out of step (it then refuses further calls).
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            Self::Failed(_) | Self::UnsupportedMechanism(_) | Self::Misuse(_)
        )
    }
}

impl From<io::Error> for ClientError {
    /// A reset or broken pipe is the server closing, like a read of 0 bytes.
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::UnexpectedEof => Self::Closed,
            _ => Self::Io(err),
        }
    }
}

/// Runs `op` under `limit`.
async fn within<T>(
    limit: Duration,
    op: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, op)
        .await
        .unwrap_or(Err(ClientError::Timeout))
}

/// A connection's health: refuses calls once a fatal error happened.
#[derive(Debug, Default)]
struct Health {
    broken: bool,
}

impl Health {
    fn check(&self) -> Result<(), ClientError> {
        if self.broken {
            Err(ClientError::Unusable)
        } else {
            Ok(())
        }
    }

    fn settle<T>(&mut self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if result.as_ref().is_err_and(ClientError::is_fatal) {
            self.broken = true;
        }
        result
    }
}

/// A Unix stream read line by line through a [`LineBuffer`].
#[derive(Debug)]
struct LineConn {
    stream: QuietUnixStream,
    lines: LineBuffer,
}

impl LineConn {
    async fn connect(path: &Path, max_line: usize) -> Result<Self, ClientError> {
        Ok(Self {
            stream: QuietUnixStream::from_tokio(UnixStream::connect(path).await?)?,
            lines: LineBuffer::new(max_line),
        })
    }

    async fn send(&mut self, data: &str) -> Result<(), ClientError> {
        self.stream.write_all(data.as_bytes()).await?;
        Ok(())
    }

    /// The next line; an over-long or non-UTF-8 one is an error.
    async fn line(&mut self) -> Result<String, ClientError> {
        loop {
            if let Some(line) = self.lines.next_line() {
                return Ok(line?);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.lines.push(&chunk[..n]);
        }
    }
}

/// Request ids: 1, 2, …, skipping 0 on wrap-around.
#[derive(Debug, Default)]
struct Ids(u32);

impl Ids {
    fn fresh(&mut self) -> u32 {
        self.0 = self.0.checked_add(1).unwrap_or(1);
        self.0
    }
}
