//! The byte stream under the client: timed writes, and replies read with a bounded buffer.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tracing::trace;

use crate::error::{ClientError, Step};
use crate::reply::{MAX_LINE, RawReply, ReplyParser};

/// A stream the client can talk over (Unix socket, TCP, later TLS).
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A connection to the server.
pub(crate) struct Conn {
    stream: BufReader<Box<dyn Io>>,
}

impl Conn {
    pub(crate) fn new(stream: Box<dyn Io>) -> Self {
        Self {
            stream: BufReader::new(stream),
        }
    }

    /// Writes all of `bytes` and flushes them, within `limit`.
    pub(crate) async fn write(
        &mut self,
        bytes: &[u8],
        step: Step,
        limit: Duration,
    ) -> Result<(), ClientError> {
        trace!(bytes = bytes.len(), %step, "writing");
        let stream = &mut self.stream;
        within(step, limit, async move {
            stream.write_all(bytes).await?;
            stream.flush().await?;
            Ok(())
        })
        .await
    }

    /// Reads one whole reply within `limit`.
    pub(crate) async fn reply(
        &mut self,
        step: Step,
        limit: Duration,
    ) -> Result<RawReply, ClientError> {
        let stream = &mut self.stream;
        let reply = within(step, limit, async move {
            let mut parser = ReplyParser::default();
            let mut line = Vec::with_capacity(128);
            loop {
                read_line(stream, &mut line).await?;
                if let Some(reply) = parser.push(&line).map_err(ClientError::Protocol)? {
                    return Ok(reply);
                }
            }
        })
        .await?;
        trace!(code = reply.code, lines = reply.lines.len(), %step, "reply");
        Ok(reply)
    }

    /// Whether the server sent more than has been read so far.
    pub(crate) fn has_unread(&self) -> bool {
        !self.stream.buffer().is_empty()
    }

    /// Runs the TLS handshake (after the server's `220` to `STARTTLS`) and talks over TLS
    /// from then on; returns the protocol version and cipher suite, for logs and headers.
    pub(crate) async fn start_tls(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        name: rustls_pki_types::ServerName<'static>,
        limit: Duration,
    ) -> Result<String, ClientError> {
        if !self.stream.buffer().is_empty() {
            // RFC 3207 §5: nothing may follow the 220 in the clear (an injection attempt).
            return Err(ClientError::Protocol(
                "the server sent data after its reply to STARTTLS".into(),
            ));
        }
        let dummy: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.stream, BufReader::new(dummy)).into_inner();
        let tls = tokio::time::timeout(limit, connector.connect(name, plain))
            .await
            .map_err(|_| ClientError::Timeout(Step::StartTls))?
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        let (_, session) = tls.get_ref();
        let version = session
            .protocol_version()
            .and_then(|v| v.as_str())
            .unwrap_or("TLS")
            .replace('_', ".");
        let suite = session
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .unwrap_or("unknown");
        self.stream = BufReader::new(Box::new(tls));
        Ok(format!("{version} with cipher {suite}"))
    }

    /// Closes our side of the connection, ignoring errors (the server may be gone).
    pub(crate) async fn shutdown(mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
    }
}

/// Reads one line into `line` without its CRLF (or bare LF), keeping at most
/// [`MAX_LINE`] bytes of it and dropping the rest.
async fn read_line(
    stream: &mut BufReader<Box<dyn Io>>,
    line: &mut Vec<u8>,
) -> Result<(), ClientError> {
    line.clear();
    loop {
        let buf = stream.fill_buf().await?;
        if buf.is_empty() {
            return Err(ClientError::Closed);
        }
        let (end, used, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i, i + 1, true),
            None => (buf.len(), buf.len(), false),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&buf[..end.min(room)]);
        stream.consume(used);
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(());
        }
    }
}

/// Runs `work`, turning an overrun of `limit` into [`ClientError::Timeout`].
async fn within<T>(
    step: Step,
    limit: Duration,
    work: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, ClientError> {
    tokio::time::timeout(limit, work)
        .await
        .unwrap_or(Err(ClientError::Timeout(step)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_eof_is_closed() {
        let (client, mut server) = tokio::io::duplex(64);
        let mut conn = Conn::new(Box::new(client));
        let writer = tokio::spawn(async move {
            let mut long = b"250-".to_vec();
            long.extend(std::iter::repeat_n(b'x', 10_000));
            long.extend_from_slice(b"\r\n250 2.0.0 ok\r\n");
            server.write_all(&long).await.unwrap();
            server.write_all(b"550 no").await.unwrap();
        });
        let second = Duration::from_secs(5);
        let reply = conn.reply(Step::Greeting, second).await.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(reply.lines[0].len(), MAX_LINE - 4);
        assert_eq!(reply.lines[1], "2.0.0 ok");
        writer.await.unwrap();
        let err = conn.reply(Step::Mail, second).await.unwrap_err();
        assert!(matches!(err, ClientError::Closed), "{err:?}");
    }
}
