//! Mail-client autoconfiguration: an optional, deliberately small HTTP/1.1 listener
//! (`[autoconfig] listen`) answering
//!
//! - Thunderbird: `GET /mail/config-v1.1.xml?emailaddress=USER@DOMAIN` (also under
//!   `/.well-known/autoconfig/`) with a `clientConfig` version 1.1 document;
//! - Outlook: `POST /autodiscover/autodiscover.xml` (POX, any case) with an
//!   `outlook/responseschema/2006a` response.
//!
//! Only for our own domains (authd's socketmap `domains` map): another domain gets 404,
//! authd down gets 503. One request per connection (`Connection: close`), the request head
//! bounded to [`MAX_HEAD`] bytes and the body to [`MAX_BODY`], the whole exchange to
//! [`REQUEST_TIMEOUT`], at most [`MAX_CONNECTIONS`] connections at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::policy::Directory;

/// Largest request head (request line and headers).
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Largest request body (autodiscover POST).
pub(crate) const MAX_BODY: usize = 16 * 1024;
/// Time a client has to send its request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 64;
/// Longest e-mail address accepted (RFC 5321 path limit).
const MAX_ADDRESS: usize = 254;

const AUTODISCOVER_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006";
const OUTLOOK_NS: &str =
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a";

/// What the documents describe: our host name and the client-facing ports (`None` = not
/// offered).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) hostname: String,
    pub(crate) imap: Option<u16>,
    pub(crate) imaps: Option<u16>,
    pub(crate) pop3: Option<u16>,
    pub(crate) pop3s: Option<u16>,
    pub(crate) submission: Option<u16>,
    pub(crate) submissions: Option<u16>,
    /// authd's socketmap (for the `domains` check), shared with the SMTP sessions.
    pub(crate) directory: Arc<Directory>,
}

/// The first port of a listener list, unless there is none (or it is 0).
pub(crate) fn first_port(addrs: &[std::net::SocketAddr]) -> Option<u16> {
    addrs.first().map(|a| a.port()).filter(|p| *p != 0)
}

/// An HTTP answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
    /// `Allow` header, for 405.
    pub(crate) allow: Option<&'static str>,
}

impl Response {
    fn error(status: u16) -> Self {
        Self {
            status,
            body: format!("{} {}\n", status, reason(status)),
            allow: None,
        }
    }

    fn xml(body: String) -> Self {
        Self {
            status: 200,
            body,
            allow: None,
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let ctype = if self.status == 200 {
            "application/xml; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let mut head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.body.len()
        );
        if let Some(a) = self.allow {
            head.push_str(&format!("Allow: {a}\r\n"));
        }
        head.push_str("\r\n");
        let mut out = head.into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A parsed request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: String,
    /// The path without the query.
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) body: Vec<u8>,
}

/// The request head as parsed, with the body length it announces.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    target: String,
    content_length: usize,
}

/// Where the head ends (the index just past the blank line), if it has ended.
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses a complete head (without the blank line or with it). Errors are HTTP statuses.
fn parse_head(raw: &[u8]) -> Result<Head, u16> {
    let text = std::str::from_utf8(raw).map_err(|_| 400u16)?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().ok_or(400u16)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !is_token(method)
        || !target.starts_with('/')
        || target.bytes().any(|b| !b.is_ascii_graphic())
        || !matches!(version, "HTTP/1.0" | "HTTP/1.1")
    {
        return Err(400);
    }
    let mut content_length: Option<usize> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or(400u16)?;
        if !is_token(name) || value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(400);
        }
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(400);
            }
            // A huge number is simply too large.
            let n = value.parse::<usize>().unwrap_or(usize::MAX);
            if content_length.is_some_and(|c| c != n) {
                return Err(400);
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked bodies are not supported: clients here always send a length.
            return Err(411);
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(413);
    }
    Ok(Head {
        method: method.to_owned(),
        target: target.to_owned(),
        content_length,
    })
}

/// Reads one request: the head (at most [`MAX_HEAD`] bytes) and its body (at most
/// [`MAX_BODY`]). Errors are HTTP statuses; `None` = the client went away without a request.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(r: &mut R) -> Result<Request, Option<u16>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let end = loop {
        if let Some(e) = head_end(&buf) {
            if e > MAX_HEAD {
                return Err(Some(413));
            }
            break e;
        }
        if buf.len() > MAX_HEAD {
            return Err(Some(413));
        }
        let n = r.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(if buf.iter().all(u8::is_ascii_whitespace) {
                None
            } else {
                Some(400)
            });
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = parse_head(&buf[..end]).map_err(Some)?;
    let mut body = buf.split_off(end);
    if body.len() > head.content_length {
        // Pipelined or trailing bytes: one request per connection, the rest is ignored.
        body.truncate(head.content_length);
    }
    while body.len() < head.content_length {
        let n = r.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(Some(400));
        }
        let want = head.content_length - body.len();
        body.extend_from_slice(&chunk[..n.min(want)]);
    }
    let (path, query) = match head.target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (head.target, String::new()),
    };
    Ok(Request {
        method: head.method,
        path,
        query,
        body,
    })
}

/// `%XX`-decodes a query component (`+` stays `+`: it is common in addresses). `None` on a
/// broken escape or bytes that are not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The value of `name` (case-insensitive) in a query string, decoded. `Err` on a broken
/// escape.
pub(crate) fn query_param(query: &str, name: &str) -> Result<Option<String>, ()> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k.eq_ignore_ascii_case(name) {
            return percent_decode(v).map(Some).ok_or(());
        }
    }
    Ok(None)
}

/// Checks an e-mail address (one `@`, dot-atom local part, a host name); returns it with
/// the domain lowercased, or `None`.
pub(crate) fn valid_address(addr: &str) -> Option<(String, String)> {
    if addr.is_empty() || addr.len() > MAX_ADDRESS {
        return None;
    }
    let (local, domain) = addr.split_once('@')?;
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
        || !local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~.".contains(&b))
    {
        return None;
    }
    let domain = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if domain.is_empty()
        || domain.len() > 253
        || !domain.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    {
        return None;
    }
    Some((format!("{local}@{domain}"), domain))
}

/// Escapes text for XML content and attribute values.
pub(crate) fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The text of the first `<EMailAddress>` element of an autodiscover request (ASCII
/// case-insensitive, namespace prefixes not allowed), trimmed.
pub(crate) fn pox_email(body: &[u8]) -> Option<String> {
    const OPEN: &[u8] = b"<emailaddress>";
    const CLOSE: &[u8] = b"</emailaddress>";
    let find = |hay: &[u8], needle: &[u8]| {
        hay.windows(needle.len())
            .position(|w| w.eq_ignore_ascii_case(needle))
    };
    let start = find(body, OPEN)? + OPEN.len();
    let len = find(&body[start..], CLOSE)?;
    let text = std::str::from_utf8(&body[start..start + len]).ok()?;
    Some(text.trim().to_owned())
}

/// Thunderbird's `clientConfig` (version 1.1) for `domain`.
pub(crate) fn thunderbird_xml(s: &Settings, domain: &str) -> String {
    let host = xml_escape(&s.hostname);
    let domain = xml_escape(domain);
    let server = |tag: &str, kind: &str, port: u16, socket: &str| {
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{host}</hostname>\n      <port>{port}</port>\n      <socketType>{socket}</socketType>\n      <username>%EMAILADDRESS%</username>\n      <authentication>password-cleartext</authentication>\n    </{tag}>\n"
        )
    };
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<clientConfig version=\"1.1\">\n  <emailProvider id=\"{domain}\">\n    <domain>{domain}</domain>\n    <displayName>{domain}</displayName>\n    <displayShortName>{domain}</displayShortName>\n"
    );
    let servers = [
        ("incomingServer", "imap", s.imaps, "SSL"),
        ("incomingServer", "imap", s.imap, "STARTTLS"),
        ("incomingServer", "pop3", s.pop3s, "SSL"),
        ("incomingServer", "pop3", s.pop3, "STARTTLS"),
        ("outgoingServer", "smtp", s.submissions, "SSL"),
        ("outgoingServer", "smtp", s.submission, "STARTTLS"),
    ];
    for (tag, kind, port, socket) in servers {
        if let Some(port) = port {
            out.push_str(&server(tag, kind, port, socket));
        }
    }
    out.push_str("  </emailProvider>\n</clientConfig>\n");
    out
}

/// Outlook's POX autodiscover response for `address`.
pub(crate) fn autodiscover_xml(s: &Settings, address: &str) -> String {
    let host = xml_escape(&s.hostname);
    let login = xml_escape(address);
    let protocol = |kind: &str, implicit: Option<u16>, starttls: Option<u16>| {
        let (port, tls) = match (implicit, starttls) {
            (Some(p), _) => (p, ""),
            (None, Some(p)) => (p, "        <Encryption>TLS</Encryption>\n"),
            (None, None) => return String::new(),
        };
        format!(
            "      <Protocol>\n        <Type>{kind}</Type>\n        <Server>{host}</Server>\n        <Port>{port}</Port>\n        <DomainRequired>off</DomainRequired>\n        <LoginName>{login}</LoginName>\n        <SPA>off</SPA>\n        <SSL>on</SSL>\n{tls}        <AuthRequired>on</AuthRequired>\n      </Protocol>\n"
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Autodiscover xmlns=\"{AUTODISCOVER_NS}\">\n  <Response xmlns=\"{OUTLOOK_NS}\">\n    <Account>\n      <AccountType>email</AccountType>\n      <Action>settings</Action>\n{}{}{}    </Account>\n  </Response>\n</Autodiscover>\n",
        protocol("IMAP", s.imaps, s.imap),
        protocol("SMTP", s.submissions, s.submission),
        protocol("POP3", s.pop3s, s.pop3),
    )
}

const THUNDERBIRD_PATHS: [&str; 2] = [
    "/mail/config-v1.1.xml",
    "/.well-known/autoconfig/mail/config-v1.1.xml",
];

/// Answers one request.
async fn respond(req: &Request, s: &Settings) -> Response {
    let (address, thunderbird) = if THUNDERBIRD_PATHS.contains(&req.path.as_str()) {
        if req.method != "GET" {
            return Response {
                allow: Some("GET"),
                ..Response::error(405)
            };
        }
        match query_param(&req.query, "emailaddress") {
            Ok(Some(a)) => (a, true),
            _ => return Response::error(400),
        }
    } else if req
        .path
        .eq_ignore_ascii_case("/autodiscover/autodiscover.xml")
    {
        if req.method != "POST" {
            return Response {
                allow: Some("POST"),
                ..Response::error(405)
            };
        }
        match pox_email(&req.body) {
            Some(a) => (a, false),
            None => return Response::error(400),
        }
    } else {
        return Response::error(404);
    };
    let Some((address, domain)) = valid_address(&address) else {
        return Response::error(400);
    };
    match s.directory.lookups().is_local_domain(&domain).await {
        Ok(true) => {}
        Ok(false) => return Response::error(404),
        Err(why) => {
            warn!(%domain, reason = %why, "autoconfig: domain lookup failed");
            return Response::error(503);
        }
    }
    Response::xml(if thunderbird {
        thunderbird_xml(s, &domain)
    } else {
        autodiscover_xml(s, &address)
    })
}

/// One connection: one request, one answer, close.
async fn serve_conn(mut tcp: tokio::net::TcpStream, s: Arc<Settings>) {
    let resp = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut tcp)).await {
        Err(_) => Response::error(408),
        Ok(Err(None)) => return,
        Ok(Err(Some(status))) => Response::error(status),
        Ok(Ok(req)) => match tokio::time::timeout(REQUEST_TIMEOUT, respond(&req, &s)).await {
            Ok(r) => {
                debug!(method = %req.method, path = %req.path, status = r.status, "autoconfig");
                r
            }
            Err(_) => Response::error(503),
        },
    };
    let written = tokio::time::timeout(REQUEST_TIMEOUT, async {
        tcp.write_all(&resp.bytes()).await?;
        tcp.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) && resp.status != 200 {
        // Lingering close: a refused request may have unread bytes behind it, and closing
        // on them would reset the connection before the client has read the answer. Read
        // and drop a bounded amount until the client closes.
        let _ = tokio::time::timeout(LINGER, async {
            let mut sink = [0u8; 4096];
            let mut left = LINGER_BYTES;
            while left > 0 {
                match tcp.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

/// How long, and how many bytes, a refused request's leftovers are read before closing.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 256 * 1024;

/// Serves the autoconfig listeners until `shutdown`; requests in flight are then dropped.
pub(crate) async fn serve(
    listeners: Vec<TcpListener>,
    settings: Settings,
    shutdown: CancellationToken,
) {
    let settings = Arc::new(settings);
    let gate = postern_daemon::accept::Gate {
        name: "autoconfig",
        limit: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        second: None,
        per_ip: None,
        exempt: None,
        // A refused request gets no answer.
        refusal: |_| b"",
    };
    let conns: postern_daemon::accept::Sessions = Default::default();
    let mut loops = JoinSet::new();
    for l in listeners {
        let s = settings.clone();
        loops.spawn(postern_daemon::accept::serve(
            l,
            gate.clone(),
            conns.clone(),
            shutdown.clone(),
            move |tcp, _peer, _local, ticket| {
                let s = s.clone();
                async move {
                    serve_conn(tcp, s).await;
                    drop(ticket);
                }
            },
        ));
    }
    while loops.join_next().await.is_some() {}
    conns.lock().await.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            hostname: "mail.example.org".into(),
            imap: Some(143),
            imaps: Some(993),
            pop3: None,
            pop3s: Some(995),
            submission: Some(587),
            submissions: None,
            directory: Directory::new("/nonexistent".into()),
        }
    }

    async fn read(raw: &[u8]) -> Result<Request, Option<u16>> {
        let mut r = raw;
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn autoconfig_parses_requests() {
        let r = read(
            b"GET /mail/config-v1.1.xml?emailaddress=a%40example.org HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/mail/config-v1.1.xml");
        assert_eq!(r.query, "emailaddress=a%40example.org");
        assert!(r.body.is_empty());
        let r = read(
            b"POST /autodiscover/autodiscover.xml HTTP/1.0\r\ncontent-length: 5\r\n\r\nhello+extra",
        )
        .await
        .unwrap();
        assert_eq!(r.body, b"hello");
        // Bare LF line ends are accepted.
        assert!(read(b"GET / HTTP/1.1\nHost: x\n\n").await.is_ok());
    }

    #[tokio::test]
    async fn autoconfig_rejects_malformed_and_large() {
        for bad in [
            &b"GET\r\n\r\n"[..],
            b"GET /x HTTP/2.0\r\n\r\n",
            b"GET x HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1 extra\r\n\r\n",
            b"GET /x HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"GET /\xff HTTP/1.1\r\n\r\n",
            b"GET /x HTTP/1.1\r\n",
            b"POST /x HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
        ] {
            assert_eq!(
                read(bad).await,
                Err(Some(400)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(read(b"").await, Err(None));
        let big = format!("GET /x HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(read(big.as_bytes()).await, Err(Some(413)));
        let endless = vec![b'a'; 100 * 1024];
        assert_eq!(read(&endless).await, Err(Some(413)));
        let body = format!(
            "POST /x HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert_eq!(read(body.as_bytes()).await, Err(Some(413)));
        let huge = b"POST /x HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n";
        assert_eq!(read(huge).await, Err(Some(413)));
        let chunked = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(read(chunked).await, Err(Some(411)));
    }

    #[test]
    fn autoconfig_query_and_addresses() {
        assert_eq!(
            query_param("a=1&EmailAddress=u%2Bx%40Example.ORG", "emailaddress"),
            Ok(Some("u+x@Example.ORG".into()))
        );
        assert_eq!(
            query_param("emailaddress=a+b@c", "emailaddress"),
            Ok(Some("a+b@c".into()))
        );
        assert_eq!(query_param("x=1", "emailaddress"), Ok(None));
        assert_eq!(query_param("emailaddress=%4", "emailaddress"), Err(()));
        assert_eq!(query_param("emailaddress=%zz", "emailaddress"), Err(()));
        assert_eq!(
            valid_address("U+x@Example.ORG."),
            Some(("U+x@example.org".into(), "example.org".into()))
        );
        for bad in [
            "",
            "nodomain",
            "a@b@c",
            "@example.org",
            "a@",
            "a b@example.org",
            "a<@example.org",
            "a@exa_mple.org",
            "a@-x.org",
            "a@x..org",
            ".a@x.org",
            "a\"@x.org",
        ] {
            assert_eq!(valid_address(bad), None, "{bad}");
        }
        let long = format!("{}@example.org", "a".repeat(65));
        assert_eq!(valid_address(&long), None);
        let long = format!("a@{}.org", "b".repeat(260));
        assert_eq!(valid_address(&long), None);
    }

    #[test]
    fn autoconfig_pox_and_escaping() {
        let body = b"<?xml version=\"1.0\"?><Autodiscover xmlns=\"x\"><Request>\
            <EMailAddress> alice@example.org </EMailAddress></Request></Autodiscover>";
        assert_eq!(pox_email(body).as_deref(), Some("alice@example.org"));
        assert_eq!(
            pox_email(b"<emailaddress>a@b</EMAILADDRESS>").as_deref(),
            Some("a@b")
        );
        assert_eq!(pox_email(b"<Request></Request>"), None);
        assert_eq!(pox_email(b"<EMailAddress>a@b"), None);
        assert_eq!(xml_escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&apos;");
        let s = settings();
        let x = autodiscover_xml(&s, "o'brien&co@example.org");
        assert!(x.contains("<LoginName>o&apos;brien&amp;co@example.org</LoginName>"));
        assert!(x.contains(OUTLOOK_NS));
        // No 465: SMTP is 587 with STARTTLS.
        assert!(x.contains("<Port>587</Port>\n        <DomainRequired>off</DomainRequired>"));
        assert!(x.contains("<Encryption>TLS</Encryption>"));
        let t = thunderbird_xml(&s, "example.org");
        assert!(t.contains("<emailProvider id=\"example.org\">"));
        assert!(t.contains("<port>993</port>\n      <socketType>SSL</socketType>"));
        assert!(t.contains("<port>143</port>\n      <socketType>STARTTLS</socketType>"));
        assert!(!t.contains("<port>110</port>"));
        assert!(t.contains("<outgoingServer type=\"smtp\">"));
    }

    #[tokio::test]
    async fn autoconfig_routes() {
        let s = settings();
        let req = |method: &str, path: &str, query: &str, body: &[u8]| Request {
            method: method.into(),
            path: path.into(),
            query: query.into(),
            body: body.to_vec(),
        };
        assert_eq!(
            respond(&req("GET", "/other", "", b""), &s).await.status,
            404
        );
        let r = respond(&req("POST", "/mail/config-v1.1.xml", "", b""), &s).await;
        assert_eq!((r.status, r.allow), (405, Some("GET")));
        let r = respond(&req("GET", "/Autodiscover/Autodiscover.xml", "", b""), &s).await;
        assert_eq!((r.status, r.allow), (405, Some("POST")));
        assert_eq!(
            respond(&req("GET", "/mail/config-v1.1.xml", "", b""), &s)
                .await
                .status,
            400
        );
        let bad = req(
            "GET",
            "/mail/config-v1.1.xml",
            "emailaddress=a<b@x.org",
            b"",
        );
        assert_eq!(respond(&bad, &s).await.status, 400);
        let no_addr = req("POST", "/autodiscover/autodiscover.xml", "", b"<x/>");
        assert_eq!(respond(&no_addr, &s).await.status, 400);
        // authd unreachable: 503.
        let ok = req(
            "GET",
            "/mail/config-v1.1.xml",
            "emailaddress=a@unlisted.example",
            b"",
        );
        assert_eq!(respond(&ok, &s).await.status, 503);
        let bytes = String::from_utf8(Response::error(404).bytes()).unwrap();
        assert!(bytes.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(bytes.contains("Connection: close\r\n"));
    }
}
