//! MTA-STS (RFC 8461) for MX delivery: the `_mta-sts` TXT record, the policy fetched from
//! `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (a small HTTPS GET of our own: HTTP/1.0,
//! no redirects, 64 KiB, 10 s), its parsing, the MX patterns, and a cache per domain that
//! keeps an unexpired policy when a refresh fails.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hickory_resolver::TokioResolver;
use postern_smtp_client::tls::server_name;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use super::mx;

/// The largest policy body taken.
const MAX_BODY: usize = 64 * 1024;
/// The largest HTTP response head taken.
const MAX_HEAD: usize = 8 * 1024;
/// The whole fetch (DNS, connect, TLS, response) must be done by then.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `max_age` allowed (one year).
pub(crate) const MAX_AGE_LIMIT: u64 = 31_557_600;
/// Policies cached at most (expired ones are dropped first).
const MAX_CACHED: usize = 10_000;

/// A policy's mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Enforce,
    Testing,
    None,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Policy {
    pub(crate) mode: Mode,
    /// The `mx:` patterns, lower case, without a trailing dot.
    pub(crate) mx: Vec<String>,
    pub(crate) max_age: u64,
}

impl Policy {
    /// Whether the MX host `host` is one the policy names.
    pub(crate) fn matches(&self, host: &str) -> bool {
        self.mx.iter().any(|p| mx_matches(p, host))
    }
}

/// Whether `host` matches the pattern (`mx.example.com`, or `*.example.com`: exactly one
/// more label in front), case-insensitively.
pub(crate) fn mx_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() {
        return false;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) if suffix.starts_with('.') && suffix.len() > 1 => host
            .strip_suffix(suffix)
            .is_some_and(|label| !label.is_empty() && !label.contains('.')),
        _ => pattern == host,
    }
}

/// Parses a policy body (RFC 8461 §3.2).
pub(crate) fn parse(text: &str) -> Result<Policy, String> {
    let mut version = None;
    let mut mode = None;
    let mut max_age = None;
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("not a \"key: value\" line: {line:?}"));
        };
        let (key, value) = (key.trim(), value.trim());
        // A field given twice: the first one counts (except mx, which may repeat).
        match key {
            "version" if version.is_none() => version = Some(value.to_owned()),
            "mode" if mode.is_none() => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("unknown mode {other:?}")),
                });
            }
            "max_age" if max_age.is_none() => {
                if value.is_empty()
                    || value.len() > 10
                    || !value.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(format!("bad max_age {value:?}"));
                }
                let n: u64 = value
                    .parse()
                    .map_err(|_| format!("bad max_age {value:?}"))?;
                if n > MAX_AGE_LIMIT {
                    return Err(format!("max_age {n} is above {MAX_AGE_LIMIT}"));
                }
                max_age = Some(n);
            }
            "mx" => {
                let p = value.trim_end_matches('.').to_ascii_lowercase();
                let name = p.strip_prefix("*.").unwrap_or(&p);
                if name.is_empty()
                    || name.contains('*')
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                {
                    return Err(format!("bad mx pattern {value:?}"));
                }
                mx.push(p);
            }
            _ => {} // unknown fields are ignored
        }
    }
    match version.as_deref() {
        Some("STSv1") => {}
        Some(v) => return Err(format!("unknown version {v:?}")),
        None => return Err("no version".into()),
    }
    let mode = mode.ok_or("no mode")?;
    let max_age = max_age.ok_or("no max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("no mx".into());
    }
    Ok(Policy { mode, mx, max_age })
}

/// The policy id from the `_mta-sts` TXT records: `None` when there is no single valid
/// `v=STSv1` record (RFC 8461 §3.1: then the domain has no policy).
pub(crate) fn txt_id(records: &[String]) -> Option<String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1;") || r.as_str() == "v=STSv1")
        .collect();
    let [record] = sts.as_slice() else {
        return None;
    };
    let mut id = None;
    for field in record.split(';').skip(1) {
        let field = field.trim();
        if let Some(v) = field.strip_prefix("id=") {
            if v.is_empty() || v.len() > 32 || !v.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            id.get_or_insert(v.to_owned());
        }
    }
    id
}

struct Cached {
    id: String,
    policy: Policy,
    expires: Instant,
}

/// Policies by domain, and the fetching of them.
pub(crate) struct Sts {
    connector: TlsConnector,
    port: u16,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Sts {
    pub(crate) fn new(config: &postern_config::Config) -> anyhow::Result<Self> {
        let ca = config
            .smtpd
            .mta_sts_ca_file
            .as_ref()
            .map(|f| config.resolve(f));
        Ok(Self {
            connector: verifying_connector(ca.as_deref())?,
            port: config.smtpd.mta_sts_port,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The connector that checks certificates against the webpki roots and the extra ones:
    /// for the MX hosts of a domain with an enforced policy.
    pub(crate) fn connector(&self) -> &TlsConnector {
        &self.connector
    }

    /// The policy that applies to `domain` now, if any.
    pub(crate) async fn policy(&self, resolver: &TokioResolver, domain: &str) -> Option<Policy> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let cached = self.cached(&domain);
        let id = match postern_dns::txt_records(resolver, &format!("_mta-sts.{domain}")).await {
            Ok(records) => match txt_id(&records) {
                Some(id) => id,
                // No (valid) record: an unexpired cached policy still applies (§5.1).
                None => return cached.map(|c| c.1),
            },
            Err(e) => {
                debug!(%domain, error = %e, "MTA-STS TXT lookup failed");
                return cached.map(|c| c.1);
            }
        };
        if let Some((cached_id, policy)) = &cached
            && *cached_id == id
        {
            return Some(policy.clone());
        }
        match self.fetch(resolver, &domain).await {
            Ok(policy) => {
                info!(%domain, policy_id = %id, mode = ?policy.mode, mx = ?policy.mx, max_age = policy.max_age, "MTA-STS policy fetched");
                self.store(&domain, id, &policy);
                Some(policy)
            }
            Err(e) => {
                warn!(%domain, error = %e, "MTA-STS policy fetch failed");
                cached.map(|c| c.1)
            }
        }
    }

    fn cached(&self, domain: &str) -> Option<(String, Policy)> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(domain)
            .filter(|c| c.expires > Instant::now())
            .map(|c| (c.id.clone(), c.policy.clone()))
    }

    fn store(&self, domain: &str, id: String, policy: &Policy) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            let now = Instant::now();
            cache.retain(|_, c| c.expires > now);
            if cache.len() >= MAX_CACHED {
                return;
            }
        }
        cache.insert(
            domain.to_owned(),
            Cached {
                id,
                policy: policy.clone(),
                expires: Instant::now() + Duration::from_secs(policy.max_age),
            },
        );
    }

    /// GET `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` and parse it.
    async fn fetch(&self, resolver: &TokioResolver, domain: &str) -> Result<Policy, String> {
        let host = format!("mta-sts.{domain}");
        let name = server_name(&host).ok_or_else(|| format!("{host} is not a TLS name"))?;
        let work = async {
            let addrs = mx::addresses(resolver, &host).await?;
            let mut last = format!("{host} has no address");
            for ip in addrs.into_iter().take(3) {
                match self
                    .get(SocketAddr::new(ip, self.port), &host, name.clone())
                    .await
                {
                    Ok(body) => {
                        return parse(&body).map_err(|e| format!("policy of {domain}: {e}"));
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        };
        tokio::time::timeout(FETCH_TIMEOUT, work)
            .await
            .map_err(|_| format!("fetching the policy from {host} timed out"))?
    }

    async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Result<String, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {host}[{addr}]: {e}"))?;
        let mut tls = self
            .connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS with {host}[{addr}]: {e}"))?;
        let request = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: Postern\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("writing to {host}: {e}"))?;
        tls.flush()
            .await
            .map_err(|e| format!("writing to {host}: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > MAX_HEAD + MAX_BODY {
                        return Err(format!("the response from {host} is too large"));
                    }
                }
                // A server that closes without close_notify: what came is checked below.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("reading from {host}: {e}")),
            }
        }
        parse_response(&buf).map_err(|e| format!("{host}: {e}"))
    }
}

/// The body of an HTTP/1.x response: status 200, `Content-Type: text/plain`, at most
/// [`MAX_BODY`] bytes, complete when `Content-Length` is given.
pub(crate) fn parse_response(buf: &[u8]) -> Result<String, String> {
    let end = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no complete HTTP response head")?;
    if end > MAX_HEAD {
        return Err("HTTP response head too large".into());
    }
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "HTTP head is not text")?;
    let mut body = &buf[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.split_whitespace();
    if !parts.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(format!("not an HTTP response: {status:?}"));
    }
    if parts.next() != Some("200") {
        return Err(format!(
            "HTTP status {status:?} (200 required, no redirects)"
        ));
    }
    let mut content_type = None;
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.trim().eq_ignore_ascii_case("content-type") {
            content_type = Some(
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase(),
            );
        } else if k.trim().eq_ignore_ascii_case("transfer-encoding")
            && !v.eq_ignore_ascii_case("identity")
        {
            return Err(format!("unsupported Transfer-Encoding {v}"));
        } else if k.trim().eq_ignore_ascii_case("content-length") {
            let n: usize = v.parse().map_err(|_| format!("bad Content-Length {v}"))?;
            if n > MAX_BODY {
                return Err("policy too large".into());
            }
            if body.len() < n {
                return Err("truncated response".into());
            }
            body = &body[..n];
        }
    }
    if content_type.as_deref() != Some("text/plain") {
        return Err(format!(
            "Content-Type is {} (text/plain required)",
            content_type.as_deref().unwrap_or("missing")
        ));
    }
    if body.len() > MAX_BODY {
        return Err("policy too large".into());
    }
    String::from_utf8(body.to_vec()).map_err(|_| "policy is not UTF-8".into())
}

/// A client TLS configuration with the webpki roots and those in `ca_file`.
fn verifying_connector(ca_file: Option<&Path>) -> anyhow::Result<TlsConnector> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(file) = ca_file {
        let certs = CertificateDer::pem_file_iter(file)
            .with_context(|| format!("reading mta_sts_ca_file {}", file.display()))?;
        for cert in certs {
            let cert =
                cert.with_context(|| format!("reading mta_sts_ca_file {}", file.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("a certificate in {}", file.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_valid_policy() {
        let p = parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.net.\r\nmax_age: 86400\r\nextra: ignored\r\n",
        )
        .unwrap();
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.mx, ["mail.example.com", "*.example.net"]);
        assert_eq!(p.max_age, 86400);
        // Bare LF, no final newline.
        let p = parse("version: STSv1\nmode: testing\nmx: a.example\nmax_age: 0").unwrap();
        assert_eq!(p.mode, Mode::Testing);
        let p = parse("version: STSv1\nmode: none\nmax_age: 10\n").unwrap();
        assert_eq!(p.mode, Mode::None);
        assert!(p.mx.is_empty());
    }

    #[test]
    fn refuses_bad_policies() {
        let ok = "mode: enforce\nmx: a.example\nmax_age: 60\n";
        assert!(parse(&format!("version: STSv1\n{ok}")).is_ok());
        assert!(parse(ok).unwrap_err().contains("no version"));
        assert!(parse(&format!("version: STSv2\n{ok}")).is_err());
        assert!(parse("version: STSv1\nmx: a.example\nmax_age: 60\n").is_err());
        assert!(parse("version: STSv1\nmode: enforce\nmax_age: 60\n").is_err());
        assert!(parse("version: STSv1\nmode: enforce\nmx: a.example\n").is_err());
        let bad_mode = parse("version: STSv1\nmode: strict\nmx: a.example\nmax_age: 60\n");
        assert!(bad_mode.unwrap_err().contains("unknown mode"));
        assert!(parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n").is_err());
        assert!(parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: x\n").is_err());
        assert!(parse("version: STSv1\nmode: enforce\nmx: a..*\nmax_age: 6\n").is_err());
        assert!(
            parse("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 6\ngarbage\n").is_err()
        );
        // max_age bounds: up to one year.
        let at = |n: u64| {
            parse(&format!(
                "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: {n}\n"
            ))
        };
        assert_eq!(at(MAX_AGE_LIMIT).unwrap().max_age, MAX_AGE_LIMIT);
        assert!(at(MAX_AGE_LIMIT + 1).is_err());
        assert!(at(99_999_999_999).is_err());
    }

    #[test]
    fn mx_patterns() {
        assert!(mx_matches("mail.example.com", "MAIL.example.com."));
        assert!(!mx_matches("mail.example.com", "mail2.example.com"));
        assert!(mx_matches("*.example.com", "mx1.example.com"));
        assert!(
            !mx_matches("*.example.com", "a.b.example.com"),
            "one label only"
        );
        assert!(!mx_matches("*.example.com", "example.com"));
        assert!(!mx_matches("*.example.com", ".example.com"));
        assert!(!mx_matches("*.example.com", "mx1.example.community"));
        let p =
            parse("version: STSv1\nmode: enforce\nmx: mx.a.example\nmx: *.b.example\nmax_age: 5\n")
                .unwrap();
        assert!(p.matches("mx.a.example"));
        assert!(p.matches("x.b.example"));
        assert!(!p.matches("y.a.example"));
    }

    #[test]
    fn txt_records() {
        let r = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            txt_id(&r(&["v=STSv1; id=20160831085700Z;"])).as_deref(),
            Some("20160831085700Z")
        );
        assert_eq!(
            txt_id(&r(&["v=spf1 -all", "v=STSv1;id=abc"])).as_deref(),
            Some("abc")
        );
        assert_eq!(txt_id(&r(&["v=STSv1; id=a", "v=STSv1; id=b"])), None);
        assert_eq!(txt_id(&r(&["v=STSv1;"])), None);
        assert_eq!(txt_id(&r(&["v=STSv1; id=not-alnum"])), None);
        assert_eq!(txt_id(&r(&[])), None);
    }

    #[test]
    fn http_responses() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhelloEXTRA";
        assert_eq!(parse_response(ok).unwrap(), "hello");
        let redirect =
            b"HTTP/1.1 301 Moved\r\nLocation: https://x/\r\nContent-Type: text/plain\r\n\r\n";
        assert!(parse_response(redirect).unwrap_err().contains("301"));
        let html = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\nhi";
        assert!(parse_response(html).unwrap_err().contains("text/html"));
        let short = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nhi";
        assert!(parse_response(short).is_err());
        let mut big = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
        big.resize(big.len() + MAX_BODY + 1, b'a');
        assert!(parse_response(&big).is_err());
    }
}
