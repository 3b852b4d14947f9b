//! Proxy mode (issue 14 §2): a front node logs users who live on another node in to that
//! backend's imapd, then relays bytes both ways.
//!
//! When authd's `OK` carries Dovecot's proxy passdb fields (`proxy`, `host=H`, `port=`,
//! optionally `destuser=`) and `H` is not this node (`[proxy] self`), the login is not
//! finished here ([`crate::login::Login::Remote`]): [`imap::login`] / [`pop3::login`] /
//! [`managesieve::login`] connect to `H` (plain, or TLS per `[proxy] tls`), tell the
//! backend who the real client is, log in, and hand the backend's answer to the client;
//! [`relay`] then copies bytes.
//!
//! # Credentials: the user's own, passed through
//!
//! The front sends the backend the password the client just gave it (AUTHENTICATE PLAIN /
//! AUTH PLAIN), rather than a master secret the backend would accept for any user:
//! - the backend's authd checks the password again and its lockouts and logs apply there as
//!   well, with the real client address (below);
//! - a front node that is broken into learns the passwords of the users who log in through
//!   it while it is broken into — which it sees anyway, since it terminates TLS — but no key
//!   that opens every mailbox on every backend;
//! - nothing to distribute or rotate, and it is what a Dovecot front does by default, so a
//!   Dovecot front works with Postern backends and the other way round.
//!
//! The cost: only mechanisms that reveal the password can be proxied (PLAIN and LOGIN, the
//! only ones imapd offers). The password is never logged (`Credentials`' `Debug` hides it).
//!
//! # The real client
//!
//! Before logging in, the front sends IMAP `ID ("x-originating-ip" … "x-originating-port" …
//! "x-connected-ip" … "x-connected-port" …)`, or POP3 and ManageSieve `XCLIENT ADDR=…
//! PORT=…` (when the greeting or capability list offers XCLIENT), as Dovecot's proxy does. A backend believes them only from `[imapd] proxy_networks` ([`id_origin`],
//! [`xclient_origin`]), and then gives authd that address as `rip` (lockouts by address)
//! and names it in its logs.
//!
//! # Limits
//!
//! The login exchange with the backend is bounded in time (`[proxy] connect_timeout_secs`
//! for the connection and greeting, [`LOGIN_TIMEOUT`] for the rest) and its lines in
//! length ([`MAX_LINE`]); a relayed connection holds two [`relay::BUF`] buffers and ends
//! after `[proxy] idle_timeout_secs` without traffic either way.

pub mod imap;
pub mod managesieve;
pub mod pop3;
pub mod relay;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use postern_config::Proxy;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Time allowed for the backend's answers during the login (its authd may delay a failure).
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(45);
/// Longest line accepted from the backend during the login.
pub const MAX_LINE: usize = 64 * 1024;

/// A user name and password to pass on to a backend.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<hidden>")
            .finish()
    }
}

impl Credentials {
    /// `user` and `password` as the client sent them.
    pub fn new(user: &str, password: &str) -> Self {
        Self {
            user: user.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The SASL PLAIN response for logging in as `user` with this password, base64.
    fn plain_b64(&self, user: &str) -> String {
        B64.encode(format!("\0{user}\0{}", self.password))
    }
}

/// The client's SASL responses (PLAIN or LOGIN), kept to log in to a backend.
#[derive(Default)]
pub struct SaslCreds {
    login: bool,
    responses: Vec<Vec<u8>>,
}

impl SaslCreds {
    /// For `mechanism` (`PLAIN` or `LOGIN`).
    pub fn new(mechanism: &str) -> Self {
        Self {
            login: mechanism.eq_ignore_ascii_case("LOGIN"),
            responses: Vec::new(),
        }
    }

    /// One response of the client (decoded); at most two are kept.
    pub fn response(&mut self, r: &[u8]) {
        if self.responses.len() < 2 {
            self.responses.push(r.to_vec());
        }
    }

    /// The user name and password the responses carried, if they did; forgets them.
    pub fn take(&mut self) -> Option<Credentials> {
        let responses = std::mem::take(&mut self.responses);
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
        if self.login {
            let [user, pass] = <[Vec<u8>; 2]>::try_from(responses).ok()?;
            return Some(Credentials::new(&text(&user)?, &text(&pass)?));
        }
        // PLAIN (RFC 4616): authzid NUL authcid NUL passwd, from the first non-empty response.
        let r = responses.into_iter().find(|r| !r.is_empty())?;
        let mut parts = r.split(|&b| b == 0);
        let (_authz, user, pass) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Some(Credentials::new(&text(user)?, &text(pass)?))
    }
}

/// The backend a user lives on, and how to log in there.
#[derive(Debug)]
pub struct Target {
    /// The backend's host (authd's `host=`).
    pub host: String,
    /// Its port for this service (authd's `port=`, else `[proxy]`).
    pub port: u16,
    /// The user name to log in with there (`destuser=`, else authd's `user=`).
    pub user: String,
    credentials: Option<Credentials>,
}

impl Target {
    /// With the credentials to pass on.
    pub fn with_credentials(mut self, c: Credentials) -> Self {
        self.credentials = Some(c);
        self
    }

    /// The base64 SASL PLAIN response for the backend.
    fn plain_b64(&self) -> String {
        match &self.credentials {
            Some(c) => c.plain_b64(&self.user),
            None => B64.encode(format!("\0{}\0", self.user)),
        }
    }
}

/// The backend of a successful login, from authd's `OK` fields: `Some` when they carry
/// `proxy` and a `host=` that is not this node (`[proxy] self`).
pub fn target(
    proxy: &Proxy,
    service: &str,
    user: &str,
    fields: &[(String, String)],
) -> Option<Target> {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    get("proxy")?;
    let host = proxy.remote_host(get("host")?)?;
    if !postern_config::valid_host(host) {
        return None;
    }
    let port = match get("port") {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => proxy.port_for(service)?,
    };
    let user = get("destuser").filter(|u| !u.is_empty()).unwrap_or(user);
    Some(Target {
        host: host.to_owned(),
        port,
        user: user.to_owned(),
        credentials: None,
    })
}

/// The real client named in an IMAP `ID` (`x-originating-ip`, `x-originating-port`), as a
/// trusted proxy sends it. Port 0 when no valid port is given.
pub fn id_origin<'a>(
    pairs: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = 0u16;
    for (k, v) in pairs {
        let Some(v) = v.and_then(|v| std::str::from_utf8(v).ok()) else {
            continue;
        };
        if k.eq_ignore_ascii_case(b"x-originating-ip") {
            ip = parse_ip(v);
        } else if k.eq_ignore_ascii_case(b"x-originating-port") {
            port = v.parse().unwrap_or(0);
        }
    }
    Some(SocketAddr::new(ip?, port))
}

/// The real client named in a POP3 `XCLIENT` line's arguments (`ADDR=`, `PORT=`).
pub fn xclient_origin(args: &str) -> Option<SocketAddr> {
    let mut ip = None;
    let mut port = 0u16;
    for arg in args.split(' ').filter(|a| !a.is_empty()) {
        let (k, v) = arg.split_once('=')?;
        if k.eq_ignore_ascii_case("ADDR") {
            ip = parse_ip(v);
        } else if k.eq_ignore_ascii_case("PORT") {
            port = v.parse().unwrap_or(0);
        }
    }
    Some(SocketAddr::new(ip?, port))
}

fn parse_ip(v: &str) -> Option<IpAddr> {
    let v = v.strip_prefix("IPV6:").unwrap_or(v);
    let v = v.trim_start_matches('[').trim_end_matches(']');
    v.parse().ok().map(crate::canonical)
}

/// An IMAP quoted string (for ID values: addresses and ports, never user input).
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// A byte stream to a backend (plain or TLS).
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The connection to a backend.
pub type Hop = Box<dyn Io>;

/// Why the login at the backend did not happen.
#[derive(Debug)]
pub enum Failure {
    /// The backend cannot be reached or did not answer as expected: try again later.
    Unavailable(String),
    /// The backend refused the login (its answer, for the log).
    Refused(String),
}

impl Failure {
    /// As a login error for the client.
    pub fn into_login_error(self) -> crate::login::LoginError {
        match self {
            Self::Unavailable(_) => crate::login::LoginError::Temporary(
                "Backend server unavailable, try again later".into(),
            ),
            Self::Refused(_) => crate::login::LoginError::Failed(None),
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable(e.to_string())
}

/// Connects to the backend within `[proxy] connect_timeout_secs`.
async fn connect(ctx: &crate::Ctx, t: &Target) -> Result<TcpStream, Failure> {
    let limit = ctx.config.proxy.connect_timeout_secs.duration();
    match tokio::time::timeout(limit, TcpStream::connect((t.host.as_str(), t.port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) => Err(unavailable(format!(
            "connecting to {}:{}: {e}",
            t.host, t.port
        ))),
        Err(_) => Err(unavailable(format!(
            "connecting to {}:{}: timed out",
            t.host, t.port
        ))),
    }
}

/// The TLS handshake with the backend after STARTTLS/STLS.
async fn start_tls(ctx: &crate::Ctx, t: &Target, tcp: Hop) -> Result<Hop, Failure> {
    let connector = match ctx.hop_tls() {
        Ok(Some(c)) => c,
        Ok(None) => return Err(unavailable("no TLS configured")),
        Err(e) => return Err(unavailable(e)),
    };
    let name: ServerName<'static> = postern_smtp_client::tls::server_name(&t.host)
        .ok_or_else(|| unavailable(format!("{}: not a TLS server name", t.host)))?;
    let limit = ctx.config.proxy.connect_timeout_secs.duration();
    match tokio::time::timeout(limit, connector.connect(name, tcp)).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(unavailable(format!("TLS with {}: {e}", t.host))),
        Err(_) => Err(unavailable(format!("TLS with {}: timed out", t.host))),
    }
}

/// Reads the backend's lines during the login; what was read past the last line stays in
/// `buf` for the relay.
struct Lines {
    io: Hop,
    buf: Vec<u8>,
}

impl Lines {
    fn new(io: Hop) -> Self {
        Self {
            io,
            buf: Vec::with_capacity(1024),
        }
    }

    /// The next line with its CRLF, within `limit`.
    async fn line(&mut self, limit: Duration) -> Result<Vec<u8>, Failure> {
        let mut scanned = 0;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(i) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                return Ok(self.buf.drain(..=scanned + i).collect());
            }
            scanned = self.buf.len();
            if scanned > MAX_LINE {
                return Err(unavailable("backend line too long"));
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.io.read(&mut chunk))
                .await
                .map_err(|_| unavailable("backend timed out"))?
                .map_err(unavailable)?;
            if n == 0 {
                return Err(unavailable("backend closed the connection"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, data: &[u8]) -> Result<(), Failure> {
        let w = async {
            self.io.write_all(data).await?;
            self.io.flush().await
        };
        tokio::time::timeout(LOGIN_TIMEOUT, w)
            .await
            .map_err(|_| unavailable("backend timed out"))?
            .map_err(unavailable)
    }
}

/// A logged-in connection to the backend, ready to relay.
pub struct Backend {
    /// The connection.
    pub io: Hop,
    /// Bytes the backend sent after its login answer (to forward first).
    pub pending: Vec<u8>,
    /// What the client is sent now: the backend's answer to the login, with the client's tag.
    pub reply: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn target_from_authd_fields() {
        let proxy = Proxy {
            self_name: "front.example".into(),
            imap_port: 1143,
            ..Proxy::default()
        };
        let f = fields(&[("host", "b2.example"), ("port", "2143"), ("proxy", "")]);
        let t = target(&proxy, "imap", "bob@example.org", &f).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("b2.example", 2143));
        assert_eq!(t.user, "bob@example.org");
        // No port=: ours for the service; destuser= wins over user=.
        let f = fields(&[("host", "b2.example"), ("proxy", ""), ("destuser", "b@x")]);
        let t = target(&proxy, "imap", "bob@example.org", &f).unwrap();
        assert_eq!((t.port, t.user.as_str()), (1143, "b@x"));
        // Not proxied: no proxy flag, our own name, no host, bad host, bad port.
        for f in [
            fields(&[("host", "b2.example")]),
            fields(&[("host", "FRONT.example"), ("proxy", "")]),
            fields(&[("proxy", "")]),
            fields(&[("host", "a b"), ("proxy", "")]),
            fields(&[("host", "b2"), ("port", "0"), ("proxy", "")]),
            fields(&[("host", "b2"), ("port", "x"), ("proxy", "")]),
        ] {
            assert!(target(&proxy, "imap", "bob", &f).is_none(), "{f:?}");
        }
    }

    #[test]
    fn credentials_from_sasl() {
        let mut plain = SaslCreds::new("PLAIN");
        plain.response(b"");
        plain.response(b"\0bob@example.org\0pa ss");
        let c = plain.take().unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("bob@example.org", "pa ss")
        );
        assert!(
            !format!("{c:?}").contains("pa ss"),
            "Debug hides the password"
        );
        assert!(plain.take().is_none(), "forgotten once taken");
        let mut bad = SaslCreds::new("PLAIN");
        bad.response(b"a\0b\0c\0d");
        assert!(bad.take().is_none());
        let mut login = SaslCreds::new("login");
        login.response(b"bob");
        login.response(b"secret");
        login.response(b"extra");
        let c = login.take().unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("bob", "secret"));
        // The PLAIN response for the backend names the user authd named.
        let t = Target {
            host: "b".into(),
            port: 1,
            user: "bob@example.org".into(),
            credentials: None,
        }
        .with_credentials(c);
        assert_eq!(
            B64.decode(t.plain_b64()).unwrap(),
            b"\0bob@example.org\0secret"
        );
    }

    #[test]
    fn origin_from_id_and_xclient() {
        let pairs: Vec<(&[u8], Option<&[u8]>)> = vec![
            (b"name", Some(b"x")),
            (b"X-Originating-IP", Some(b"192.0.2.7")),
            (b"x-originating-port", Some(b"40001")),
            (b"x-connected-ip", Some(b"10.0.0.1")),
        ];
        assert_eq!(id_origin(pairs), Some("192.0.2.7:40001".parse().unwrap()));
        let v6: Vec<(&[u8], Option<&[u8]>)> = vec![(b"x-originating-ip", Some(b"2001:db8::1"))];
        assert_eq!(id_origin(v6), Some("[2001:db8::1]:0".parse().unwrap()));
        let none: Vec<(&[u8], Option<&[u8]>)> = vec![(b"x-originating-ip", Some(b"nope"))];
        assert_eq!(id_origin(none), None);
        assert_eq!(
            xclient_origin("ADDR=192.0.2.8 PORT=5 TTL=4"),
            Some("192.0.2.8:5".parse().unwrap())
        );
        assert_eq!(
            xclient_origin("addr=IPV6:2001:db8::2"),
            Some("[2001:db8::2]:0".parse().unwrap())
        );
        assert_eq!(
            xclient_origin("ADDR=::ffff:192.0.2.9"),
            Some("192.0.2.9:0".parse().unwrap())
        );
        assert_eq!(xclient_origin("PORT=5"), None);
        assert_eq!(xclient_origin("ADDR"), None);
        assert_eq!(quoted("a\"b\\c\r\n"), "\"a\\\"b\\\\c\"");
    }
}
