//! The conversation: connect, greeting, `LHLO`/`EHLO` (`HELO` as a fallback), transactions
//! (pipelined when the server allows it; see `transaction.rs`), `RSET` and `QUIT`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tracing::debug;

use crate::caps::Capabilities;
use crate::conn::{Conn, Io};
use crate::error::{ClientError, Step, Timeouts};
use crate::message::{Outgoing, RcptResult};
use crate::reply::{RawReply, ServerReply};

mod transaction;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A Unix socket, such as `lmtp-deliver`'s `run/lmtp`.
    Unix(PathBuf),
    /// `host:port`; the host is resolved when connecting.
    Tcp(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tcp(addr) => write!(f, "inet:{addr}"),
        }
    }
}

/// The protocol spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// SMTP (RFC 5321): `EHLO` (`HELO` if refused), one reply after the body.
    Smtp,
    /// LMTP (RFC 2033): `LHLO`, one reply per accepted recipient after the body.
    Lmtp,
}

/// A connection to an SMTP or LMTP server, ready for transactions.
pub struct Client {
    conn: Conn,
    flavor: Flavor,
    greeting: ServerReply,
    caps: Capabilities,
    timeouts: Timeouts,
    /// `MAIL` was accepted and the transaction did not end: `RSET` before the next one.
    dirty: bool,
    /// An error (or a `421`) left the connection unusable.
    broken: bool,
    /// The name said in `EHLO`/`LHLO` (said again after `STARTTLS`).
    helo_name: String,
    /// TLS protocol and cipher once `STARTTLS` succeeded.
    tls: Option<String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("flavor", &self.flavor)
            .field("greeting", &self.greeting)
            .field("caps", &self.caps)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects, reads the greeting (it must be `2xx`) and says `LHLO`/`EHLO` as `helo_name`.
    pub async fn connect(
        target: &Target,
        flavor: Flavor,
        helo_name: &str,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        let connecting = async {
            Ok::<Box<dyn Io>, std::io::Error>(match target {
                Target::Unix(path) => Box::new(UnixStream::connect(path).await?),
                Target::Tcp(addr) => {
                    let stream = TcpStream::connect(addr.as_str()).await?;
                    stream.set_nodelay(true)?;
                    Box::new(stream)
                }
            })
        };
        let stream = tokio::time::timeout(timeouts.connect, connecting)
            .await
            .map_err(|_| ClientError::Timeout(Step::Connect))?
            .map_err(ClientError::Connect)?;
        debug!(%target, ?flavor, "connected");
        Self::start(stream, flavor, helo_name, timeouts).await
    }

    /// [`Client::connect`] over a stream the caller connected itself (smtpd wraps its
    /// Unix socket to the delivery agent so that the agent reading what it sent does not
    /// wake it): reads the greeting and says `LHLO`/`EHLO`. No `STARTTLS` on such a stream.
    pub async fn over(
        stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
        flavor: Flavor,
        helo_name: &str,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        Self::start(Box::new(stream), flavor, helo_name, timeouts).await
    }

    /// The greeting and the hello on a connected stream.
    async fn start(
        stream: Box<dyn Io>,
        flavor: Flavor,
        helo_name: &str,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        let mut conn = Conn::new(stream);
        let greeting = conn
            .reply(Step::Greeting, timeouts.greeting)
            .await?
            .to_reply();
        if !greeting.is_positive() {
            return Err(ClientError::Rejected(greeting));
        }
        let mut client = Self {
            conn,
            flavor,
            greeting,
            caps: Capabilities::default(),
            timeouts,
            dirty: false,
            broken: false,
            helo_name: helo_name.to_owned(),
            tls: None,
        };
        client.caps = client.hello(helo_name).await?;
        Ok(client)
    }

    /// The extensions the server advertised.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// The server's greeting.
    pub fn greeting(&self) -> &ServerReply {
        &self.greeting
    }

    /// The protocol spoken.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// Whether another transaction may be tried on this connection.
    pub fn is_usable(&self) -> bool {
        !self.broken
    }

    /// Whether the server accepted `MAIL FROM` for a transaction that has not ended (the
    /// last [`Client::send`] failed after that point, so the server may have taken some of
    /// it); false before the first transaction, after a complete one, and after one that
    /// failed before `MAIL FROM` was accepted.
    pub fn in_transaction(&self) -> bool {
        self.dirty
    }

    /// The TLS protocol and cipher once [`Client::starttls`] succeeded (`None`: plain text).
    pub fn tls(&self) -> Option<&str> {
        self.tls.as_deref()
    }

    /// `STARTTLS`, the handshake, and `EHLO` again (the capabilities are those offered over
    /// TLS afterwards).
    ///
    /// A refusal (`454`, or `5xx`) comes back as [`ClientError::Rejected`] and leaves the
    /// connection usable in plain text; any other error leaves it unusable.
    pub async fn starttls(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        server_name: rustls_pki_types::ServerName<'static>,
    ) -> Result<(), ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        let result = async {
            let reply = self
                .command(b"STARTTLS\r\n", Step::StartTls)
                .await?
                .to_reply();
            if reply.code != 220 {
                return Err(ClientError::Rejected(reply));
            }
            let info = self
                .conn
                .start_tls(connector, server_name, self.timeouts.greeting)
                .await?;
            debug!(tls = %info, "STARTTLS done");
            self.tls = Some(info);
            let name = self.helo_name.clone();
            self.caps = self.hello(&name).await?;
            Ok(())
        }
        .await;
        if let Err(err) = &result
            && !matches!(err, ClientError::Rejected(reply) if reply.code != 421)
        {
            self.broken = true;
        }
        result
    }

    /// `STARTTLS` by a policy between nodes of one site: with `required`, a server that does
    /// not offer it, refuses it or fails the handshake is an error (nothing is sent in plain
    /// text); without, TLS is used when offered and a refusal leaves plain text.
    pub async fn starttls_policy(
        &mut self,
        connector: &tokio_rustls::TlsConnector,
        server_name: rustls_pki_types::ServerName<'static>,
        required: bool,
    ) -> Result<(), ClientError> {
        if !self.caps.starttls {
            return if required {
                Err(ClientError::Tls("the server offers no STARTTLS".into()))
            } else {
                Ok(())
            };
        }
        match self.starttls(connector, server_name).await {
            Err(ClientError::Rejected(r)) if !required && r.code != 421 => Ok(()),
            other => other,
        }
    }

    /// `AUTH PLAIN` (or `AUTH LOGIN` when the server offers only that) as `user`.
    ///
    /// A refusal comes back as [`ClientError::Rejected`] (`535` permanent, `454` temporary);
    /// a server that offers neither mechanism as [`ClientError::Protocol`].
    pub async fn auth(&mut self, user: &str, password: &str) -> Result<(), ClientError> {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        if self.broken {
            return Err(ClientError::Closed);
        }
        let offers = |m: &str| self.caps.auth.iter().any(|a| a == m);
        let reply = if offers("PLAIN") {
            let mut token = Vec::with_capacity(user.len() + password.len() + 2);
            token.push(0);
            token.extend_from_slice(user.as_bytes());
            token.push(0);
            token.extend_from_slice(password.as_bytes());
            let line = format!("AUTH PLAIN {}\r\n", b64(&token));
            self.command(line.as_bytes(), Step::Auth).await?.to_reply()
        } else if offers("LOGIN") {
            let mut reply = self
                .command(b"AUTH LOGIN\r\n", Step::Auth)
                .await?
                .to_reply();
            for secret in [user, password] {
                if reply.code != 334 {
                    break;
                }
                let line = format!("{}\r\n", b64(secret.as_bytes()));
                reply = self.command(line.as_bytes(), Step::Auth).await?.to_reply();
            }
            reply
        } else {
            return Err(ClientError::Protocol(format!(
                "the server offers no AUTH mechanism we use (PLAIN, LOGIN); it offers: {}",
                if self.caps.auth.is_empty() {
                    "none".to_owned()
                } else {
                    self.caps.auth.join(" ")
                }
            )));
        };
        if reply.code == 235 {
            return Ok(());
        }
        if reply.code == 334 {
            // Still asking: the exchange is off the rails; the connection is no use now.
            self.broken = true;
        }
        Err(ClientError::Rejected(reply))
    }

    /// Sends one message; returns one result per recipient, in order.
    ///
    /// `Err` means no recipient got a final answer: the whole transaction failed
    /// ([`ClientError::Rejected`] for a refused `MAIL FROM` applies to every recipient).
    /// LMTP replies that were received before the connection broke are kept; the recipients
    /// after them get a made-up `451 4.4.2`.
    pub async fn send(&mut self, tx: &Outgoing<'_>) -> Result<Vec<RcptResult>, ClientError> {
        if self.broken {
            return Err(ClientError::Closed);
        }
        let result = self.transaction(tx).await;
        if let Err(err) = &result
            && !matches!(err, ClientError::Rejected(reply) if reply.code != 421)
        {
            self.broken = true;
        }
        result
    }

    /// Says `QUIT` (unless the connection is already broken) and closes the connection.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        let limit = self.timeouts.command;
        let said = if self.broken {
            Ok(())
        } else {
            self.command(b"QUIT\r\n", Step::Quit).await.map(drop)
        };
        self.conn.shutdown(limit).await;
        said
    }

    /// `LHLO`, or `EHLO` with a `HELO` fallback on a `5xx`.
    async fn hello(&mut self, name: &str) -> Result<Capabilities, ClientError> {
        let verb = match self.flavor {
            Flavor::Lmtp => "LHLO",
            Flavor::Smtp => "EHLO",
        };
        let raw = self
            .command(format!("{verb} {name}\r\n").as_bytes(), Step::Hello)
            .await?;
        let reply = raw.to_reply();
        if reply.is_positive() {
            return Ok(Capabilities::parse(&raw.lines));
        }
        if self.flavor == Flavor::Lmtp || !reply.is_permanent() {
            return Err(ClientError::Rejected(reply));
        }
        debug!(%reply, "EHLO refused, trying HELO");
        let reply = self
            .command(format!("HELO {name}\r\n").as_bytes(), Step::Hello)
            .await?
            .to_reply();
        if !reply.is_positive() {
            return Err(ClientError::Rejected(reply));
        }
        Ok(Capabilities::default())
    }

    async fn read_final(&mut self) -> Result<ServerReply, ClientError> {
        let reply = self
            .conn
            .reply(Step::FinalReply, self.timeouts.final_reply)
            .await?
            .to_reply();
        self.note(&reply);
        Ok(reply)
    }

    /// Reads a command reply, noting a `421`.
    async fn read(&mut self, step: Step) -> Result<ServerReply, ClientError> {
        self.read_within(step, self.timeouts.command).await
    }

    /// Reads a reply within `limit`, noting a `421`.
    async fn read_within(
        &mut self,
        step: Step,
        limit: Duration,
    ) -> Result<ServerReply, ClientError> {
        let reply = self.conn.reply(step, limit).await?.to_reply();
        self.note(&reply);
        Ok(reply)
    }

    /// Writes one command and reads its reply.
    async fn command(&mut self, line: &[u8], step: Step) -> Result<RawReply, ClientError> {
        self.conn.write(line, step, self.timeouts.command).await?;
        let raw = self.conn.reply(step, self.timeouts.command).await?;
        if raw.code == 421 {
            self.broken = true;
        }
        Ok(raw)
    }

    /// `421`: the server is closing the connection.
    fn note(&mut self, reply: &ServerReply) {
        if reply.code == 421 {
            self.broken = true;
        }
    }

    /// `RSET` before a transaction; a refusal fails the transaction.
    async fn rset(&mut self) -> Result<(), ClientError> {
        let reply = self.command(b"RSET\r\n", Step::Rset).await?.to_reply();
        if !reply.is_positive() {
            return Err(ClientError::Rejected(reply));
        }
        self.dirty = false;
        Ok(())
    }
}
