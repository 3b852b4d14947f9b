//! The connection under an LMTP session: the Unix socket, a TCP connection, or that TCP
//! connection after `STARTTLS` (`[tls]`'s certificate, offered on the TCP listeners only,
//! so that `[proxy] tls = "may"|"verify"` between nodes is really encrypted).
//!
//! Plain text pipelined after `STARTTLS` (CVE-2011-0411) never reaches the session: the
//! driver reads straight from the socket into the session, which keeps whatever followed
//! the command and drops it when the handshake is done (`Session::tls_started`).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use postern_auth_proto::client::QuietUnixStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

/// Time allowed for the TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(30);

/// An LMTP connection.
pub(crate) enum Stream {
    Unix(QuietUnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// A handshake failed: the connection is gone.
    Closed,
}

impl Stream {
    /// Whether `STARTTLS` can upgrade this connection.
    pub(crate) fn can_start_tls(&self) -> bool {
        matches!(self, Self::Tcp(_))
    }

    /// The server side of the TLS handshake, after the `220` to `STARTTLS` was sent.
    /// False: the handshake failed and the connection is closed.
    pub(crate) async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> bool {
        let Self::Tcp(tcp) = std::mem::replace(self, Self::Closed) else {
            return false;
        };
        match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => {
                let (_, conn) = s.get_ref();
                debug!(
                    version = ?conn.protocol_version(),
                    suite = ?conn.negotiated_cipher_suite().map(|s| s.suite()),
                    "STARTTLS done"
                );
                *self = Self::Tls(Box::new(s));
                true
            }
            Ok(Err(e)) => {
                info!(error = %e, "TLS handshake failed");
                false
            }
            Err(_) => {
                info!("TLS handshake timed out");
                false
            }
        }
    }
}

fn closed() -> io::Error {
    io::ErrorKind::NotConnected.into()
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Self::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_flush(cx),
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Self::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Self::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use postern_smtp_client::tls::{ca_connector, server_name};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use crate::Accepted;

    /// A CA (PEM file) and `[tls]` for a certificate it issued for `localhost`.
    fn certificate(dir: &std::path::Path) -> (std::path::PathBuf, postern_daemon::Tls) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let tls = postern_daemon::Tls::load(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
        (dir.join("ca.pem"), tls)
    }

    /// Reads one whole reply (its lines).
    async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            assert!(
                r.read_line(&mut l).await.unwrap() > 0,
                "closed after {lines:?}"
            );
            let done = l.as_bytes().get(3) == Some(&b' ');
            lines.push(l.trim_end().to_owned());
            if done {
                return lines;
            }
        }
    }

    #[tokio::test]
    async fn starttls_on_tcp_drops_pipelined_plain_text_and_verifies_with_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, tls) = certificate(dir.path());
        let ctx = crate::proxy::tests::ctx("", Some(tls));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (s, peer) = l.accept().await.unwrap();
            crate::conn::serve(Accepted::Tcp(s, peer), ctx, CancellationToken::new()).await;
        });
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut r = BufReader::new(&mut s);
        assert!(reply(&mut r).await[0].starts_with("220 "));
        r.get_mut().write_all(b"LHLO client\r\n").await.unwrap();
        let caps = reply(&mut r).await;
        assert!(caps.iter().any(|l| l.ends_with("STARTTLS")), "{caps:?}");
        // CVE-2011-0411: plain text after STARTTLS in the same packet.
        r.get_mut()
            .write_all(b"STARTTLS\r\nMAIL FROM:<evil@example.org>\r\n")
            .await
            .unwrap();
        assert!(reply(&mut r).await[0].starts_with("220 "));
        assert!(r.buffer().is_empty());
        drop(r);
        let connector = ca_connector(&ca).unwrap();
        let tls = connector
            .connect(server_name("localhost").unwrap(), s)
            .await
            .expect("the certificate chains to the CA");
        let mut r = BufReader::new(tls);
        // The injected MAIL got no reply (the first one over TLS is LHLO's), and opened no
        // transaction (RCPT needs MAIL).
        r.get_mut().write_all(b"LHLO client\r\n").await.unwrap();
        let caps = reply(&mut r).await;
        assert!(caps[0].starts_with("250-"), "{caps:?}");
        assert!(!caps.iter().any(|l| l.contains("STARTTLS")), "{caps:?}");
        r.get_mut()
            .write_all(b"RCPT TO:<x@example.org>\r\n")
            .await
            .unwrap();
        assert!(reply(&mut r).await[0].starts_with("503 "));
        r.get_mut().write_all(b"QUIT\r\n").await.unwrap();
        assert!(reply(&mut r).await[0].starts_with("221 "));
        let mut rest = Vec::new();
        drop(r.read_to_end(&mut rest).await);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_unix_socket_offers_no_starttls() {
        let dir = tempfile::tempdir().unwrap();
        let (_, tls) = certificate(dir.path());
        let ctx = crate::proxy::tests::ctx("", Some(tls));
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let server = tokio::spawn(crate::conn::serve(
            Accepted::Unix(a),
            Arc::clone(&ctx),
            CancellationToken::new(),
        ));
        let mut r = BufReader::new(b);
        reply(&mut r).await;
        r.get_mut().write_all(b"LHLO client\r\n").await.unwrap();
        let caps = reply(&mut r).await;
        assert!(!caps.iter().any(|l| l.contains("STARTTLS")), "{caps:?}");
        r.get_mut().write_all(b"STARTTLS\r\n").await.unwrap();
        assert!(reply(&mut r).await[0].starts_with("502 "));
        drop(r);
        server.await.unwrap();
    }
}
