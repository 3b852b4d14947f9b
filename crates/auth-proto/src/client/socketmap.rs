//! [`SocketmapClient`]: the client end of the Postfix socketmap protocol.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::socketmap::{MAX_REPLY_LEN, NetstringDecoder, Reply, encode_request};

use super::{ClientError, DEFAULT_TIMEOUT, Health, READ_CHUNK, within};

/// A connection to a socketmap server (authd's `socketmap`), reused for many lookups.
#[derive(Debug)]
pub struct SocketmapClient {
    stream: UnixStream,
    decoder: NetstringDecoder,
    timeout: Duration,
    health: Health,
}

impl SocketmapClient {
    /// Connects.
    pub async fn connect(path: impl AsRef<Path>) -> Result<Self, ClientError> {
        Self::connect_with_timeout(path, DEFAULT_TIMEOUT).await
    }

    /// [`SocketmapClient::connect`] with another time limit, kept for later calls.
    pub async fn connect_with_timeout(
        path: impl AsRef<Path>,
        timeout: Duration,
    ) -> Result<Self, ClientError> {
        let stream = within(timeout, async { Ok(UnixStream::connect(path).await?) }).await?;
        Ok(Self {
            stream,
            decoder: NetstringDecoder::new(MAX_REPLY_LEN),
            timeout,
            health: Health::default(),
        })
    }

    /// Changes the time limit of later calls.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Looks `key` up in the map called `name`. `NOTFOUND`, `TEMP`, `PERM` and `TIMEOUT` are
    /// answers, not errors.
    pub async fn lookup(&mut self, name: &str, key: &str) -> Result<Reply, ClientError> {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::Misuse(
                "map name must be printable ASCII without spaces",
            ));
        }
        if key.is_empty() {
            return Err(ClientError::Misuse("empty lookup key"));
        }
        self.health.check()?;
        let result = within(self.timeout, self.exchange(name, key)).await;
        self.health.settle(result)
    }

    async fn exchange(&mut self, name: &str, key: &str) -> Result<Reply, ClientError> {
        self.stream.write_all(&encode_request(name, key)).await?;
        loop {
            if let Some(body) = self.decoder.next() {
                return Ok(Reply::parse(&body?)?);
            }
            let mut chunk = [0u8; READ_CHUNK];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(ClientError::Closed);
            }
            self.decoder.push(&chunk[..n]);
        }
    }
}
