//! [`SocketmapClient`]: the client end of the Postfix socketmap protocol.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::socketmap::{MAX_REPLY_LEN, NetstringDecoder, Reply, encode_request};

use super::{ClientError, DEFAULT_TIMEOUT, Health, QuietUnixStream, READ_CHUNK, within};

/// A connection to a socketmap server (authd's `socketmap`), reused for many lookups.
#[derive(Debug)]
pub struct SocketmapClient {
    stream: QuietUnixStream,
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
        let stream = within(timeout, async {
            Ok(QuietUnixStream::from_tokio(
                UnixStream::connect(path).await?,
            )?)
        })
        .await?;
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

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    use super::*;
    use crate::client::tests::{listen, spawn_server};
    use crate::socketmap::{self, NetstringError};

    /// A socketmap server: `domains example.org` is found, `slow` never answers.
    async fn socketmap_server(mut stream: UnixStream) {
        let mut decoder = NetstringDecoder::new(socketmap::MAX_REQUEST_LEN);
        let mut chunk = [0u8; 7]; // tiny reads: requests arrive in pieces
        loop {
            for body in decoder.by_ref() {
                let req = socketmap::parse_request(&body.unwrap()).unwrap();
                let reply = match (req.name.as_str(), req.key.as_str()) {
                    ("domains", "example.org") => Reply::Ok("example.org".into()),
                    ("mailboxes", key) if key.ends_with("@example.org") => Reply::Ok(key.into()),
                    ("slow", _) => continue,
                    ("broken", _) => Reply::Temp("database down".into()),
                    _ => Reply::NotFound,
                };
                if stream.write_all(&reply.encode()).await.is_err() {
                    return;
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => decoder.push(&chunk[..n]),
            }
        }
    }

    #[tokio::test]
    async fn socketmap_client_reuses_the_connection() {
        let (_dir, path, listener) = listen();
        spawn_server(listener, socketmap_server);
        let mut client = SocketmapClient::connect(&path).await.unwrap();
        let cases = [
            ("domains", "example.org", Reply::Ok("example.org".into())),
            ("domains", "example.net", Reply::NotFound),
            (
                "mailboxes",
                "a b@example.org",
                Reply::Ok("a b@example.org".into()),
            ),
            ("broken", "x", Reply::Temp("database down".into())),
            ("domains", "example.org", Reply::Ok("example.org".into())),
        ];
        for (name, key, want) in cases {
            assert_eq!(
                client.lookup(name, key).await.unwrap(),
                want,
                "{name} {key}"
            );
        }
        assert!(matches!(
            client.lookup("bad name", "k").await,
            Err(ClientError::Misuse(_))
        ));
        assert!(matches!(
            client.lookup("domains", "").await,
            Err(ClientError::Misuse(_))
        ));

        client.set_timeout(Duration::from_millis(200));
        assert!(matches!(
            client.lookup("slow", "x").await,
            Err(ClientError::Timeout)
        ));
        assert!(matches!(
            client.lookup("domains", "example.org").await,
            Err(ClientError::Unusable)
        ));
    }

    #[tokio::test]
    async fn socketmap_client_refuses_oversized_reply() {
        let (_dir, path, listener) = listen();
        spawn_server(listener, |mut stream| async move {
            let mut buf = [0u8; 64];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"999999999:OK ").await;
            // Keep the connection open: the client must stop on the length alone.
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        let mut client = SocketmapClient::connect(&path).await.unwrap();
        let err = client.lookup("domains", "x").await.unwrap_err();
        assert!(
            matches!(err, ClientError::Netstring(NetstringError::TooLong { .. })),
            "{err}"
        );
    }
}
