//! A scripted fake server: each test says what the server expects and answers.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::time::Duration;

use postern_smtp_client::{Client, Flavor, Target, Timeouts};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The server's side of one connection.
pub struct Peer {
    io: BufReader<Box<dyn Io>>,
    /// Every line the client sent, in order (body lines included).
    pub seen: Vec<String>,
}

impl Peer {
    /// Sends raw text; the caller writes the CRLFs.
    pub async fn say(&mut self, text: &str) {
        self.io.write_all(text.as_bytes()).await.unwrap();
        self.io.flush().await.unwrap();
    }

    /// Reads one line (without CRLF); panics on EOF or after 5 s.
    pub async fn line(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_line(&mut line))
            .await
            .expect("client went quiet")
            .unwrap();
        assert!(n > 0, "client closed the connection");
        assert!(line.ends_with("\r\n"), "line without CRLF: {line:?}");
        line.truncate(line.len() - 2);
        self.seen.push(line.clone());
        line
    }

    /// Reads a line and checks it starts with `prefix`.
    pub async fn expect(&mut self, prefix: &str) -> String {
        let line = self.line().await;
        assert!(
            line.starts_with(prefix),
            "expected {prefix:?}, got {line:?}"
        );
        line
    }

    /// Reads the body up to the lone `.`: the lines as sent (still dot-stuffed).
    pub async fn body(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await;
            if line == "." {
                return lines;
            }
            lines.push(line);
        }
    }

    /// Reads exactly `n` octets (a `BDAT` chunk); panics on EOF or after 5 s.
    pub async fn octets(&mut self, n: usize) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), self.io.read_exact(&mut buf))
            .await
            .expect("client went quiet")
            .expect("client closed the connection");
        buf
    }

    /// Checks the client sends nothing for `ms` milliseconds.
    pub async fn quiet_for(&mut self, ms: u64) {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_millis(ms), self.io.read_line(&mut line));
        if let Ok(result) = read.await {
            panic!("client sent {line:?} ({result:?}) while it should have waited");
        }
    }

    /// Waits for the client to close the connection.
    pub async fn closed(&mut self) {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_line(&mut line))
            .await
            .expect("client did not close")
            .unwrap_or(0);
        assert_eq!(n, 0, "expected EOF, got {line:?}");
    }

    /// The TLS handshake as the server (after it said `220` to `STARTTLS`).
    pub async fn start_tls(&mut self, acceptor: &tokio_rustls::TlsAcceptor) {
        let dummy: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.io, BufReader::new(dummy)).into_inner();
        let tls = acceptor.accept(plain).await.expect("TLS handshake");
        self.io = BufReader::new(Box::new(tls));
    }

    /// Like [`Peer::start_tls`], for handshakes the client is expected to abandon.
    pub async fn try_start_tls(mut self, acceptor: &tokio_rustls::TlsAcceptor) -> bool {
        let dummy: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let plain = std::mem::replace(&mut self.io, BufReader::new(dummy)).into_inner();
        acceptor.accept(plain).await.is_ok()
    }

    /// Greets and answers the hello with `caps` (one per line, after the name).
    pub async fn handshake(&mut self, hello: &str, caps: &[&str]) {
        self.say("220 fake.example.org ready\r\n").await;
        self.hello(hello, caps).await;
    }

    /// Answers the hello with `caps` (one per line, after the name).
    pub async fn hello(&mut self, hello: &str, caps: &[&str]) {
        self.expect(hello).await;
        let mut lines = vec!["fake.example.org"];
        lines.extend_from_slice(caps);
        let last = lines.len() - 1;
        let reply: String = lines
            .iter()
            .enumerate()
            .map(|(i, line)| format!("250{}{line}\r\n", if i == last { ' ' } else { '-' }))
            .collect();
        self.say(&reply).await;
    }
}

/// A fake server on a fresh Unix socket, serving one connection with `script`.
pub async fn unix_server<F, Fut, T>(script: F) -> (Target, TempDir, JoinHandle<T>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lmtp");
    let listener = UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(peer(Box::new(stream))).await
    });
    (Target::Unix(path), dir, task)
}

/// A fake server on 127.0.0.1, serving one connection with `script`.
pub async fn tcp_server<F, Fut, T>(script: F) -> (Target, JoinHandle<T>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        script(peer(Box::new(stream))).await
    });
    (Target::Tcp(addr.to_string()), task)
}

/// A fake server at the other end of an in-memory pipe, serving it with `script`; the
/// client's end records each write it makes ([`Writes`]).
pub fn pipe_server<F, Fut, T>(script: F) -> (Recorded, Writes, JoinHandle<T>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let (client, server) = tokio::io::duplex(4 << 20);
    let writes = Writes::default();
    let task = tokio::spawn(async move { script(peer(Box::new(server))).await });
    let recorded = Recorded {
        inner: client,
        writes: writes.clone(),
    };
    (recorded, writes, task)
}

/// The octets of each write the client made, in order.
#[derive(Clone, Default)]
pub struct Writes(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

impl Writes {
    /// Takes the writes recorded so far.
    pub fn take(&self) -> Vec<Vec<u8>> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// A stream that records what is written to it, one entry per write call.
pub struct Recorded {
    inner: tokio::io::DuplexStream,
    writes: Writes,
}

impl AsyncRead for Recorded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Recorded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = std::pin::Pin::new(&mut this.inner).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = &r {
            this.writes.0.lock().unwrap().push(buf[..*n].to_vec());
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn peer(stream: Box<dyn Io>) -> Peer {
    Peer {
        io: BufReader::new(stream),
        seen: Vec::new(),
    }
}

/// Timeouts short enough for a test to fail fast.
pub fn quick() -> Timeouts {
    Timeouts::all(Duration::from_secs(5))
}

/// Connects with [`quick`] timeouts as `client.example.org`.
pub async fn connect(target: &Target, flavor: Flavor) -> Client {
    Client::connect(target, flavor, "client.example.org", quick())
        .await
        .unwrap()
}

/// A TLS acceptor with a fresh self-signed certificate for `mx.example.org`.
pub fn self_signed_acceptor() -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    let cert = rcgen::generate_simple_self_signed(vec!["mx.example.org".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}
