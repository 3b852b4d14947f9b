//! DANE for SMTP (RFC 7672): TLSA records, their matching against a server's certificate
//! chain, and DNS answers whose DNSSEC status is known.
//!
//! Postern does not validate DNSSEC signatures itself. As Postfix with
//! `smtp_dns_support_level = dnssec`, it asks a validating resolver (unbound, BIND, knot-resolver
//! on this host) with the DO and AD bits set and takes the AD bit of its answer as "secure";
//! a bogus answer is one the validator refuses with SERVFAIL. The AD bit is only trusted from
//! name servers on loopback ([`trusted_servers`]): from anywhere else it could be forged on
//! the way.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest DNS answer read over TCP (a TLSA RRset is far smaller).
const MAX_TCP_ANSWER: usize = 65_535;
/// At most this many TLSA records are looked at for one host.
const MAX_TLSA: usize = 32;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    /// 0 PKIX-TA, 1 PKIX-EE, 2 DANE-TA, 3 DANE-EE.
    pub usage: u8,
    /// 0 the full certificate, 1 its SubjectPublicKeyInfo.
    pub selector: u8,
    /// 0 exact, 1 SHA-256, 2 SHA-512.
    pub matching: u8,
    /// The certificate association data.
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Usable for SMTP (RFC 7672 §3.1.3: PKIX usages 0 and 1 are not; unknown selectors,
    /// matching types, and digests of the wrong length are not either).
    pub fn usable(&self) -> bool {
        let length_ok = match self.matching {
            0 => !self.data.is_empty(),
            1 => self.data.len() == 32,
            2 => self.data.len() == 64,
            _ => false,
        };
        matches!(self.usage, 2 | 3) && self.selector <= 1 && length_ok
    }

    /// Whether `cert_der` (one certificate, DER) matches this record's selector and data.
    pub fn matches(&self, cert_der: &[u8]) -> bool {
        let selected = match self.selector {
            0 => cert_der,
            1 => match spki(cert_der) {
                Some(s) => s,
                None => return false,
            },
            _ => return false,
        };
        let digest;
        let value: &[u8] = match self.matching {
            0 => selected,
            1 => {
                digest = ring::digest::digest(&ring::digest::SHA256, selected);
                digest.as_ref()
            }
            2 => {
                digest = ring::digest::digest(&ring::digest::SHA512, selected);
                digest.as_ref()
            }
            _ => return false,
        };
        // The data is public: no need for a constant-time comparison.
        value == self.data.as_slice()
    }

    /// `3 1 1 1a2b3c4d5e6f…` for logs: the fields and the data's first 12 hex digits.
    pub fn short(&self) -> String {
        let hex: String = self
            .data
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        let more = if self.data.len() > 6 { "…" } else { "" };
        format!(
            "{} {} {} {hex}{more}",
            self.usage, self.selector, self.matching
        )
    }
}

/// The DER SubjectPublicKeyInfo (tag and length included) of a DER X.509 certificate.
pub fn spki(cert_der: &[u8]) -> Option<&[u8]> {
    // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL,
    //   serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, … } … }
    let (_, cert, _) = der_item(cert_der)?;
    let (_, tbs, _) = der_item(cert)?;
    let mut rest = tbs;
    let (tag, _, after) = der_item(rest)?;
    if tag == 0xa0 {
        rest = after; // the explicit version
    }
    for _ in 0..5 {
        let (_, _, after) = der_item(rest)?;
        rest = after;
    }
    let (tag, _, after) = der_item(rest)?;
    if tag != 0x30 {
        return None;
    }
    Some(&rest[..rest.len() - after.len()])
}

/// One DER item at the start of `b`: its tag, its contents, and what follows it.
fn der_item(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let contents = b.get(header..end)?;
    Some((tag, contents, &b[end..]))
}

/// What a DNSSEC-aware lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureAnswer {
    /// The validating resolver vouched for the answer (the AD bit), be it records or their
    /// absence.
    pub secure: bool,
    /// The records of the asked type (empty: NXDOMAIN or NODATA).
    pub records: Vec<RData>,
}

/// Why a DNSSEC-aware lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The resolver answered SERVFAIL: for a validating resolver, bogus data (or a broken
    /// zone). RFC 7672 §2.1.1: the destination is not usable now.
    ServFail(String),
    /// No answer (timeouts, network errors, garbage).
    Failed(String),
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServFail(s) | Self::Failed(s) => f.write_str(s),
        }
    }
}

/// The name servers whose AD bit can be believed: those of `[dns] nameservers` (or
/// resolv.conf) when every one of them is on loopback; empty otherwise (DANE is then off).
pub fn trusted_servers(config: &postern_config::Config) -> Vec<SocketAddr> {
    let servers: Vec<SocketAddr> = if config.dns.nameservers.is_empty() {
        hickory_resolver::system_conf::read_system_conf()
            .map(|(c, _)| {
                c.name_servers
                    .iter()
                    .map(|ns| SocketAddr::new(ns.ip, 53))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        config.dns.nameservers.clone()
    };
    if !servers.is_empty() && servers.iter().all(|s| s.ip().is_loopback()) {
        servers
    } else {
        Vec::new()
    }
}

/// Asks `servers` in turn for `name`/`rtype` with DO and AD set; the first answer counts.
pub async fn secure_lookup(
    servers: &[SocketAddr],
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<SecureAnswer, LookupError> {
    let qname = Name::from_ascii(crate::fqdn(name))
        .map_err(|e| LookupError::Failed(format!("bad name {name}: {e}")))?;
    let mut last = LookupError::Failed(format!("no name server to ask for {name}"));
    for server in servers {
        match tokio::time::timeout(timeout, ask(*server, &qname, rtype)).await {
            Ok(Ok(a)) => return Ok(a),
            Ok(Err(e @ LookupError::ServFail(_))) => return Err(e),
            Ok(Err(e)) => last = e,
            Err(_) => {
                last = LookupError::Failed(format!("{rtype} lookup for {name}: timed out"));
            }
        }
    }
    Err(last)
}

fn query_bytes(qname: &Name, rtype: RecordType) -> Result<(u16, Vec<u8>), LookupError> {
    let id: u16 = rand_id();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.authentic_data = true;
    m.add_query(Query::query(qname.clone(), rtype));
    let mut edns = Edns::new();
    edns.set_dnssec_ok(true).set_max_payload(1232);
    m.set_edns(edns);
    let bytes = m
        .to_vec()
        .map_err(|e| LookupError::Failed(format!("encoding a query: {e}")))?;
    Ok((id, bytes))
}

fn rand_id() -> u16 {
    let mut b = [0u8; 2];
    // ring's system random; a failure leaves a zero id (the answer is still matched by name).
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u16::from_be_bytes(b)
}

async fn ask(
    server: SocketAddr,
    qname: &Name,
    rtype: RecordType,
) -> Result<SecureAnswer, LookupError> {
    let failed = |e: std::io::Error| LookupError::Failed(format!("DNS to {server}: {e}"));
    let (id, q) = query_bytes(qname, rtype)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "127.0.0.1:0".parse().expect("an address")
    } else {
        "[::1]:0".parse().expect("an address")
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(failed)?;
    sock.connect(server).await.map_err(failed)?;
    sock.send(&q).await.map_err(failed)?;
    let mut buf = vec![0u8; 4096];
    let m = loop {
        let n = sock.recv(&mut buf).await.map_err(failed)?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id && same_question(&m, qname, rtype) => break m,
            _ => continue, // not ours: keep waiting (the caller's timeout bounds this)
        }
    };
    let m = if m.metadata.truncation {
        ask_tcp(server, qname, rtype).await?
    } else {
        m
    };
    interpret(&m, qname, rtype)
}

async fn ask_tcp(
    server: SocketAddr,
    qname: &Name,
    rtype: RecordType,
) -> Result<Message, LookupError> {
    let failed = |e: std::io::Error| LookupError::Failed(format!("DNS/TCP to {server}: {e}"));
    let (id, q) = query_bytes(qname, rtype)?;
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .map_err(failed)?;
    let len = u16::try_from(q.len()).map_err(|_| LookupError::Failed("query too long".into()))?;
    s.write_all(&len.to_be_bytes()).await.map_err(failed)?;
    s.write_all(&q).await.map_err(failed)?;
    let mut l = [0u8; 2];
    s.read_exact(&mut l).await.map_err(failed)?;
    let n = usize::from(u16::from_be_bytes(l)).min(MAX_TCP_ANSWER);
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf).await.map_err(failed)?;
    let m = Message::from_vec(&buf)
        .map_err(|e| LookupError::Failed(format!("DNS/TCP answer from {server}: {e}")))?;
    if m.metadata.id != id || !same_question(&m, qname, rtype) {
        return Err(LookupError::Failed(format!(
            "DNS/TCP answer from {server} to another question"
        )));
    }
    Ok(m)
}

fn same_question(m: &Message, qname: &Name, rtype: RecordType) -> bool {
    m.metadata.message_type == MessageType::Response
        && m.queries.len() == 1
        && m.queries[0].query_type() == rtype
        && m.queries[0].name().to_lowercase() == qname.to_lowercase()
}

/// An answer's records of the asked type and whether it is secure.
fn interpret(m: &Message, qname: &Name, rtype: RecordType) -> Result<SecureAnswer, LookupError> {
    match m.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        ResponseCode::ServFail => {
            return Err(LookupError::ServFail(format!(
                "{rtype} lookup for {qname}: SERVFAIL (DNSSEC-bogus or broken)"
            )));
        }
        other => {
            return Err(LookupError::Failed(format!(
                "{rtype} lookup for {qname}: {other}"
            )));
        }
    }
    let records = m
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data.clone())
        .collect();
    Ok(SecureAnswer {
        secure: m.metadata.authentic_data,
        records,
    })
}

/// The TLSA records in `records` (at most [`MAX_TLSA`]).
pub fn tlsa_of(records: &[RData]) -> Vec<Tlsa> {
    records
        .iter()
        .filter_map(|r| match r {
            RData::TLSA(t) => Some(Tlsa {
                usage: u8::from(t.cert_usage),
                selector: u8::from(t.selector),
                matching: u8::from(t.matching),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .take(MAX_TLSA)
        .collect()
}

/// The TLSA base name for SMTP to `host` on `port` (RFC 7672 §2.2.3): `_25._tcp.host`.
pub fn tlsa_name(host: &str, port: u16) -> String {
    format!("_{port}._tcp.{}", host.trim_end_matches('.'))
}

/// What DANE says about one MX host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostDane {
    /// Usable TLSA records: TLS is mandatory, authenticated by them.
    Usable(Vec<Tlsa>),
    /// Secure TLSA records, none usable (RFC 7672 §2.2: TLS is mandatory but not
    /// authenticated, as Postfix's `encrypt`).
    Unusable(Vec<Tlsa>),
    /// DANE does not apply (insecure MX or TLSA answer, or no TLSA records): the usual
    /// policy (MTA-STS, then `tls_policy`).
    Insecure(&'static str),
    /// The lookup failed or was bogus: the host is not used now (the message waits).
    Failed(String),
}

/// The decision table of RFC 7672 §2.1–2.2 for one MX host: `mx_secure` is whether the MX
/// RRset (or the implicit MX's address) was secure, `tlsa` the TLSA lookup's outcome (only
/// made when `mx_secure`).
pub fn host_dane(mx_secure: bool, tlsa: Option<Result<SecureAnswer, LookupError>>) -> HostDane {
    if !mx_secure {
        return HostDane::Insecure("insecure MX");
    }
    match tlsa {
        None => HostDane::Insecure("no TLSA lookup"),
        Some(Err(LookupError::ServFail(why))) => HostDane::Failed(why),
        Some(Err(LookupError::Failed(why))) => HostDane::Failed(why),
        Some(Ok(a)) if !a.secure => HostDane::Insecure("insecure TLSA"),
        Some(Ok(a)) => {
            let all = tlsa_of(&a.records);
            if all.is_empty() {
                return HostDane::Insecure("no TLSA");
            }
            let usable: Vec<Tlsa> = all.iter().filter(|t| t.usable()).cloned().collect();
            if usable.is_empty() {
                HostDane::Unusable(all)
            } else {
                HostDane::Usable(usable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::TLSA;

    fn cert() -> (Vec<u8>, Vec<u8>) {
        let ck = rcgen::generate_simple_self_signed(vec!["mx.example.net".to_owned()]).unwrap();
        (
            ck.cert.der().to_vec(),
            rcgen::PublicKeyData::subject_public_key_info(&ck.signing_key),
        )
    }

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    fn sha512(b: &[u8]) -> Vec<u8> {
        ring::digest::digest(&ring::digest::SHA512, b)
            .as_ref()
            .to_vec()
    }

    fn t(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    #[test]
    fn spki_is_the_one_rcgen_made() {
        let (der, spki_der) = cert();
        assert_eq!(spki(&der), Some(spki_der.as_slice()));
        assert_eq!(spki(&der[..der.len() / 2]), None);
        assert_eq!(spki(b""), None);
        assert_eq!(spki(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn every_selector_and_matching_type() {
        let (der, spki_der) = cert();
        let (other, _) = cert();
        for rec in [
            t(3, 0, 0, der.clone()),
            t(3, 0, 1, sha256(&der)),
            t(3, 0, 2, sha512(&der)),
            t(3, 1, 0, spki_der.clone()),
            t(3, 1, 1, sha256(&spki_der)),
            t(3, 1, 2, sha512(&spki_der)),
            t(2, 1, 1, sha256(&spki_der)),
        ] {
            assert!(rec.usable(), "{rec:?}");
            assert!(rec.matches(&der), "{}", rec.short());
            assert!(!rec.matches(&other), "{}", rec.short());
        }
    }

    #[test]
    fn unusable_records() {
        let (der, spki_der) = cert();
        let h = sha256(&spki_der);
        // PKIX usages (RFC 7672 §3.1.3), unknown selector/matching, wrong digest length.
        for rec in [
            t(0, 1, 1, h.clone()),
            t(1, 1, 1, h.clone()),
            t(4, 1, 1, h.clone()),
            t(3, 2, 1, h.clone()),
            t(3, 1, 3, h.clone()),
            t(3, 1, 1, h[..31].to_vec()),
            t(3, 1, 2, h.clone()),
            t(3, 0, 0, Vec::new()),
        ] {
            assert!(!rec.usable(), "{rec:?}");
        }
        assert!(!t(3, 1, 1, h[..31].to_vec()).matches(&der));
        assert_eq!(t(3, 1, 1, h).short().len(), "3 1 1 ".len() + 12 + "…".len());
    }

    fn tlsa_rdata(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> RData {
        RData::TLSA(TLSA::new(
            usage.into(),
            selector.into(),
            matching.into(),
            data,
        ))
    }

    #[test]
    fn decision_table() {
        let (_, spki_der) = cert();
        let good = tlsa_rdata(3, 1, 1, sha256(&spki_der));
        let pkix = tlsa_rdata(1, 1, 1, sha256(&spki_der));
        let ans = |secure: bool, records: Vec<RData>| Some(Ok(SecureAnswer { secure, records }));
        // Insecure MX: no DANE, whatever TLSA says.
        assert_eq!(
            host_dane(false, ans(true, vec![good.clone()])),
            HostDane::Insecure("insecure MX")
        );
        // Secure MX × TLSA present / absent / unusable / insecure / bogus / failed.
        assert!(matches!(
            host_dane(true, ans(true, vec![good.clone(), pkix.clone()])),
            HostDane::Usable(v) if v.len() == 1 && v[0].usage == 3
        ));
        assert_eq!(
            host_dane(true, ans(true, vec![])),
            HostDane::Insecure("no TLSA")
        );
        assert!(matches!(
            host_dane(true, ans(true, vec![pkix])),
            HostDane::Unusable(v) if v.len() == 1
        ));
        assert_eq!(
            host_dane(true, ans(false, vec![good])),
            HostDane::Insecure("insecure TLSA")
        );
        assert!(matches!(
            host_dane(true, Some(Err(LookupError::ServFail("bogus".into())))),
            HostDane::Failed(w) if w == "bogus"
        ));
        assert!(matches!(
            host_dane(true, Some(Err(LookupError::Failed("timeout".into())))),
            HostDane::Failed(_)
        ));
    }

    #[test]
    fn the_ad_bit_is_trusted_only_from_loopback() {
        let servers = |list: &str| {
            let c = postern_config::Config::parse(
                &format!("hostname = \"h.example\"\n[dns]\nnameservers = [{list}]\n"),
                std::path::Path::new("/nonexistent"),
            )
            .unwrap();
            trusted_servers(&c)
        };
        assert_eq!(
            servers("\"127.0.0.1:53\", \"[::1]:5353\""),
            vec![
                "127.0.0.1:53".parse::<SocketAddr>().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
        assert!(servers("\"192.0.2.53:53\"").is_empty());
        assert!(servers("\"127.0.0.1:53\", \"192.0.2.53:53\"").is_empty());
    }

    #[test]
    fn answers_are_read_with_their_ad_bit() {
        let qname = Name::from_ascii("_25._tcp.mx.example.net.").unwrap();
        let (_, spki_der) = cert();
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(qname.clone(), RecordType::TLSA));
        m.metadata.authentic_data = true;
        m.add_answer(hickory_resolver::proto::rr::Record::from_rdata(
            qname.clone(),
            60,
            tlsa_rdata(3, 1, 1, sha256(&spki_der)),
        ));
        let a = interpret(&m, &qname, RecordType::TLSA).unwrap();
        assert!(a.secure);
        assert_eq!(tlsa_of(&a.records)[0].data, sha256(&spki_der));
        assert!(same_question(&m, &qname, RecordType::TLSA));
        assert!(!same_question(&m, &qname, RecordType::MX));
        m.metadata.response_code = ResponseCode::ServFail;
        assert!(matches!(
            interpret(&m, &qname, RecordType::TLSA),
            Err(LookupError::ServFail(_))
        ));
        assert_eq!(tlsa_name("mx.example.net.", 25), "_25._tcp.mx.example.net");
    }
}
