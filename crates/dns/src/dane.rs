//! DANE for SMTP (RFC 7672): TLSA records, their matching against a server's certificate
//! chain, and DNS answers whose DNSSEC status is known ([`Dnssec`]), per MX host with the
//! address check of RFC 7672 §2.2.2 ([`host_lookup`]) and a bounded cache of the verdicts
//! ([`VerdictCache`]).
//!
//! The DNSSEC status comes from one of two places (`[dns] dnssec`):
//! - **validate**: Postern checks the signatures itself with hickory's validating resolver
//!   (`dnssec-ring`), from the IANA root keys hickory ships or `[dns] trust_anchor`'s DNSKEY
//!   or DS records (a DS record's key is fetched and checked against its digest,
//!   [`Validator`]). Each record comes back Secure, Insecure (a proven unsigned delegation),
//!   or Bogus/Indeterminate (bad or missing signatures: a [`LookupError::Bogus`]); an empty
//!   answer is secure when a validated NSEC/NSEC3 record proves it.
//! - **ad**: as Postfix with `smtp_dns_support_level = dnssec`, a validating resolver
//!   (unbound, BIND, knot-resolver on this host) is asked with the DO and AD bits set and
//!   the AD bit of its answer is taken as "secure"; a bogus answer is one the validator
//!   refuses with SERVFAIL. The AD bit is only trusted from name servers on loopback
//!   ([`trusted_servers`]): from anywhere else it could be forged on the way.
//!
//! `auto` (the default) is `ad` when every name server is on loopback and no trust anchor
//! file is given, `validate` otherwise.
//!
//! Only two outcomes let delivery go on: **secure** (records, or their validated absence)
//! and **insecure** (proven: a validated insecure delegation, or the trusted resolver's
//! answer without AD). Everything else is indeterminate and defers the destination or the
//! host ([`mx_dane`], [`host_dane`]): a bogus answer, and no answer at all (time-outs,
//! SERVFAIL, network errors), so that dropping or breaking only the DNSSEC queries
//! (those with the DO bit) cannot turn DANE off (RFC 7672 §2.1.1).

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use std::str::FromStr;

use hickory_resolver::proto::dnssec::rdata::{DNSSECRData, DS};
use hickory_resolver::proto::dnssec::{Algorithm, DigestType, PublicKey as _, TrustAnchors};
use hickory_resolver::proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use postern_config::DnssecMode;
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
    /// The answer is DNSSEC-secure (validated here, or the AD bit of a trusted resolver),
    /// be it records or their absence.
    pub secure: bool,
    /// The records of the asked type (empty: NXDOMAIN or NODATA).
    pub records: Vec<RData>,
    /// How long the answer may be kept, seconds (the smallest TTL of its records; for a
    /// negative answer its SOA's negative TTL, 0 without one).
    pub ttl: u32,
}

/// Why a DNSSEC-aware lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupError {
    /// The resolver answered SERVFAIL: for a validating resolver, bogus data (or a broken
    /// zone). RFC 7672 §2.1.1: the destination is not usable now.
    ServFail(String),
    /// In-process validation found the answer bogus (a bad, expired or missing signature,
    /// a key the chain does not vouch for, an unproven denial).
    Bogus(String),
    /// No answer (timeouts, network errors, garbage).
    Failed(String),
}

impl LookupError {
    /// Bogus data (SERVFAIL from a validating resolver, or found bogus here): the message
    /// waits (RFC 7672 §2.1.1).
    pub fn is_bogus(&self) -> bool {
        matches!(self, Self::ServFail(_) | Self::Bogus(_))
    }
}

impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ServFail(s) | Self::Bogus(s) | Self::Failed(s) => f.write_str(s),
        }
    }
}

/// Where DNSSEC verdicts come from (`[dns] dnssec`, see the module documentation).
pub enum Dnssec {
    /// The AD bit of these name servers, all on loopback.
    Ad(Vec<SocketAddr>),
    /// Validated in-process by this resolver (its trust anchor described by the string).
    Validate(Box<Validator>, String),
}

/// hickory's validating resolver. Built at once from DNSKEY trust anchors; a trust anchor
/// file with DS records (as IANA and Debian's `dns-root-data` publish the root's) has it built
/// at the first lookup instead: the DNSKEY RRsets of the DS owners are fetched then, and the
/// keys whose digest a DS record gives become the anchors ([`keys_for_ds`]). Until that
/// works (DNS down, no key matching), lookups fail, so the mail waits.
pub struct Validator {
    resolver: tokio::sync::OnceCell<TokioResolver>,
    /// For a DS trust anchor: the config, the file's DNSKEY anchors and its DS records.
    pending: Option<(postern_config::Config, TrustAnchors, Vec<DsAnchor>)>,
}

/// A DS record of the trust anchor file: its owner and data.
type DsAnchor = (Name, DS);

impl Validator {
    async fn resolver(&self, timeout: Duration) -> Result<&TokioResolver, LookupError> {
        self.resolver
            .get_or_try_init(|| async {
                let Some((config, keys, ds)) = &self.pending else {
                    return Err(LookupError::Failed("no validating resolver".into()));
                };
                let mut anchors = keys.clone();
                keys_for_ds(config, ds, &mut anchors, timeout).await?;
                build_validating(config, anchors)
                    .map_err(|e| LookupError::Failed(format!("validating resolver: {e}")))
            })
            .await
    }
}

impl Dnssec {
    /// The source `[dns]` asks for; `None`: DANE cannot work (`ad` with a name server off
    /// loopback). `Err`: the trust anchor file is unreadable, or not DNSKEY or DS records.
    pub fn from_config(config: &postern_config::Config) -> anyhow::Result<Option<Self>> {
        let validate = || -> anyhow::Result<Option<Self>> {
            let (validator, anchor) = validating_resolver(config)?;
            Ok(Some(Self::Validate(Box::new(validator), anchor)))
        };
        match config.dns.dnssec {
            DnssecMode::Validate => validate(),
            DnssecMode::Ad => {
                let servers = trusted_servers(config);
                Ok((!servers.is_empty()).then_some(Self::Ad(servers)))
            }
            DnssecMode::Auto => {
                let servers = trusted_servers(config);
                if servers.is_empty() || config.dns.trust_anchor.is_some() {
                    validate()
                } else {
                    Ok(Some(Self::Ad(servers)))
                }
            }
        }
    }

    /// For the log: where verdicts come from.
    pub fn describe(&self) -> String {
        match self {
            Self::Ad(servers) => format!("the AD bit of {servers:?}"),
            Self::Validate(_, anchor) => format!("validated in-process from {anchor}"),
        }
    }

    /// `name`/`rtype` with its DNSSEC status; `timeout` bounds one query (in-process
    /// validation asks a few more: the keys and delegations of the chain, each cached).
    pub async fn lookup(
        &self,
        name: &str,
        rtype: RecordType,
        timeout: Duration,
    ) -> Result<SecureAnswer, LookupError> {
        match self {
            Self::Ad(servers) => secure_lookup(servers, name, rtype, timeout).await,
            Self::Validate(validator, _) => {
                match tokio::time::timeout(timeout.saturating_mul(VALIDATION_QUERIES), async {
                    let resolver = validator.resolver(timeout).await?;
                    validated_lookup(resolver, name, rtype).await
                })
                .await
                {
                    Ok(r) => r,
                    Err(_) => Err(LookupError::Failed(format!(
                        "{rtype} lookup for {name}: timed out"
                    ))),
                }
            }
        }
    }
}

impl Dnssec {
    /// Whether the root zone's keys validate (always true for `ad`). When they do not while
    /// answers come back bogus, the name servers most likely do not pass DNSSEC records
    /// along: said in the deferral, so the admin sees why mail waits.
    pub async fn root_validates(&self, timeout: Duration) -> bool {
        match self {
            Self::Ad(_) => true,
            Self::Validate(..) => matches!(
                self.lookup(".", RecordType::DNSKEY, timeout).await,
                Ok(a) if a.secure && !a.records.is_empty()
            ),
        }
    }
}

/// A validated lookup may take this many query timeouts (the chain's keys and delegations).
const VALIDATION_QUERIES: u32 = 4;

/// The validating resolver of `[dns]` (or what it is built from), and its trust anchor for
/// the log.
fn validating_resolver(config: &postern_config::Config) -> anyhow::Result<(Validator, String)> {
    let (anchors, ds, described) = match &config.dns.trust_anchor {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("[dns] trust_anchor {}: {e}", path.display()))?;
            let (a, ds) = parse_trust_anchors(&text)
                .map_err(|e| anyhow::anyhow!("[dns] trust_anchor {}: {e}", path.display()))?;
            (a, ds, format!("the trust anchor {}", path.display()))
        }
        None => (
            TrustAnchors::default(),
            Vec::new(),
            "the IANA root trust anchor".into(),
        ),
    };
    let validator = if ds.is_empty() {
        Validator {
            resolver: tokio::sync::OnceCell::new_with(Some(build_validating(config, anchors)?)),
            pending: None,
        }
    } else {
        // Fails now if even the plain resolver cannot be made (a bad [dns] section).
        drop(crate::builder(config, |_| {})?.build()?);
        Validator {
            resolver: tokio::sync::OnceCell::new(),
            pending: Some((config.clone(), anchors, ds)),
        }
    };
    Ok((validator, described))
}

fn build_validating(
    config: &postern_config::Config,
    anchors: TrustAnchors,
) -> anyhow::Result<TokioResolver> {
    let builder = crate::builder(config, |opts| opts.validate = true)?
        .with_trust_anchor(std::sync::Arc::new(anchors));
    Ok(builder.build()?)
}

/// At most this many DS records are read from a trust anchor file.
const MAX_DS_ANCHORS: usize = 16;

/// A trust anchor file's DNSKEY records (hickory's parser, which knows no DS) and DS records
/// (read here: one per line, `OWNER [TTL] [IN] DS KEYTAG ALGORITHM DIGESTTYPE HEX…`, comments
/// after `;`). `Err`: neither kind, or a record that does not parse.
fn parse_trust_anchors(text: &str) -> Result<(TrustAnchors, Vec<DsAnchor>), String> {
    let mut dnskeys = String::new();
    let mut ds = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let data = line.split(';').next().unwrap_or("");
        let tokens: Vec<&str> = data.split_whitespace().collect();
        let Some(at) = tokens
            .iter()
            .take(4)
            .position(|t| t.eq_ignore_ascii_case("DS"))
        else {
            dnskeys.push_str(line);
            dnskeys.push('\n');
            continue;
        };
        let bad = |why: &str| format!("line {}: DS record: {why}", n + 1);
        if at == 0
            || tokens[1..at]
                .iter()
                .any(|t| !t.eq_ignore_ascii_case("IN") && t.parse::<u32>().is_err())
        {
            return Err(bad("expected OWNER [TTL] [IN] DS …"));
        }
        let owner = Name::from_ascii(tokens[0]).map_err(|e| bad(&e.to_string()))?;
        if !owner.is_fqdn() {
            return Err(bad("the owner name must end with a dot"));
        }
        let rdata = &tokens[at + 1..];
        if rdata.len() < 4 {
            return Err(bad("expected KEYTAG ALGORITHM DIGESTTYPE DIGEST"));
        }
        let tag: u16 = rdata[0].parse().map_err(|_| bad("bad key tag"))?;
        let alg: u8 = rdata[1].parse().map_err(|_| bad("bad algorithm"))?;
        let digest_type: u8 = rdata[2].parse().map_err(|_| bad("bad digest type"))?;
        let hex: String = rdata[3..].concat();
        let len = match digest_type {
            1 => 20,
            2 => 32,
            4 => 48,
            _ => return Err(bad("digest type not 1 (SHA-1), 2 (SHA-256) or 4 (SHA-384)")),
        };
        if hex.len() != 2 * len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad(&format!("the digest must be {len} bytes in hex")));
        }
        let digest: Vec<u8> = (0..len)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        if ds.len() == MAX_DS_ANCHORS {
            return Err(bad(&format!("more than {MAX_DS_ANCHORS} DS records")));
        }
        ds.push((
            owner,
            DS::new(
                tag,
                Algorithm::from_u8(alg),
                DigestType::from(digest_type),
                digest,
            ),
        ));
    }
    let keys = TrustAnchors::from_str(&dnskeys).map_err(|e| e.to_string())?;
    if ds.is_empty()
        && dnskeys
            .lines()
            .all(|l| l.split(';').next().unwrap_or("").trim().is_empty())
    {
        return Err("no DNSKEY or DS record".into());
    }
    Ok((keys, ds))
}

/// Adds to `anchors` the DNSKEYs (of each DS owner, fetched without validation) whose digest a
/// DS record gives: the key is then trusted as if the file had named it, and the rest of its
/// RRset through its signature, as validation goes. A forged DNSKEY answer cannot match a
/// digest. `Err`: the fetch failed, or some owner has no key matching (a rollover the file
/// missed, or a forged answer): validation does not start, the mail waits.
async fn keys_for_ds(
    config: &postern_config::Config,
    ds: &[DsAnchor],
    anchors: &mut TrustAnchors,
    timeout: Duration,
) -> Result<(), LookupError> {
    let plain = crate::builder(config, |_| {})
        .and_then(|b| Ok(b.build()?))
        .map_err(|e| LookupError::Failed(format!("trust anchor: resolver: {e}")))?;
    let mut owners: Vec<&Name> = ds.iter().map(|(n, _)| n).collect();
    owners.dedup();
    for owner in owners {
        let lookup = tokio::time::timeout(timeout, plain.lookup(owner.clone(), RecordType::DNSKEY))
            .await
            .map_err(|_| {
                LookupError::Failed(format!(
                    "trust anchor: DNSKEY lookup for {owner}: timed out"
                ))
            })?
            .map_err(|e| {
                LookupError::Failed(format!("trust anchor: DNSKEY lookup for {owner}: {e}"))
            })?;
        let mut found = false;
        for record in lookup.answers() {
            let RData::DNSSEC(DNSSECRData::DNSKEY(key)) = &record.data else {
                continue;
            };
            if record.name != *owner || key.revoke() {
                continue;
            }
            let covered = ds.iter().filter(|(n, _)| n == owner).any(|(_, d)| {
                d.algorithm() == key.public_key().algorithm()
                    && d.covers(owner, key).unwrap_or(false)
            });
            if covered {
                anchors.insert_with_name(key.public_key(), owner.into());
                found = true;
            }
        }
        if !found {
            return Err(LookupError::Bogus(format!(
                "trust anchor: no DNSKEY of {owner} matches its DS records (a key rollover the file missed?)"
            )));
        }
    }
    Ok(())
}

/// `name`/`rtype` through the validating resolver, with the proofs of its records.
async fn validated_lookup(
    resolver: &TokioResolver,
    name: &str,
    rtype: RecordType,
) -> Result<SecureAnswer, LookupError> {
    let bogus =
        |why: &str| LookupError::Bogus(format!("{rtype} lookup for {name}: DNSSEC-bogus ({why})"));
    match resolver.lookup(crate::fqdn(name).as_str(), rtype).await {
        Ok(lookup) => {
            // The RRSIGs come along; only the one used carries the proof.
            let answers: Vec<&hickory_resolver::proto::rr::Record> = lookup
                .answers()
                .iter()
                .filter(|r| r.record_type() != RecordType::RRSIG)
                .collect();
            if answers
                .iter()
                .any(|r| r.proof.is_bogus() || r.proof.is_indeterminate())
            {
                return Err(bogus("a record failed validation"));
            }
            let records: Vec<RData> = answers
                .iter()
                .filter(|r| r.record_type() == rtype)
                .map(|r| r.data.clone())
                .collect();
            let secure = !answers.is_empty() && answers.iter().all(|r| r.proof.is_secure());
            let ttl = answers.iter().map(|r| r.ttl).min().unwrap_or(0);
            Ok(SecureAnswer {
                secure,
                records,
                ttl,
            })
        }
        Err(NetError::Dns(DnsError::DnssecBogus)) => Err(bogus("bad or missing signatures")),
        Err(NetError::Dns(DnsError::Nsec { proof, .. })) => {
            if proof.is_insecure() {
                Ok(SecureAnswer {
                    secure: false,
                    records: Vec::new(),
                    ttl: 0,
                })
            } else {
                Err(bogus(&format!("denial of existence {proof}")))
            }
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(nr))) => {
            let authorities = nr.authorities.as_deref().unwrap_or_default();
            if authorities.iter().any(|r| r.proof.is_bogus()) {
                return Err(bogus("a denial record failed validation"));
            }
            // Secure only with a validated NSEC/NSEC3 proof of the absence.
            let secure = authorities.iter().any(|r| {
                r.proof.is_secure()
                    && matches!(r.record_type(), RecordType::NSEC | RecordType::NSEC3)
            });
            Ok(SecureAnswer {
                secure,
                records: Vec::new(),
                ttl: nr.negative_ttl.unwrap_or(0),
            })
        }
        Err(e) => Err(LookupError::Failed(format!(
            "{rtype} lookup for {name}: {e}"
        ))),
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

/// Rounds over the name servers before a DO/AD lookup gives up: one lost datagram must not
/// defer a DANE destination (a failed lookup now defers; it no longer means "insecure").
const AD_ROUNDS: usize = 2;

/// Asks `servers` in turn for `name`/`rtype` with DO and AD set, [`AD_ROUNDS`] times over;
/// the first answer counts.
pub async fn secure_lookup(
    servers: &[SocketAddr],
    name: &str,
    rtype: RecordType,
    timeout: Duration,
) -> Result<SecureAnswer, LookupError> {
    let qname = Name::from_ascii(crate::fqdn(name))
        .map_err(|e| LookupError::Failed(format!("bad name {name}: {e}")))?;
    let mut last = LookupError::Failed(format!("no name server to ask for {name}"));
    for _ in 0..AD_ROUNDS {
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
    let ttl = if m.answers.is_empty() {
        // RFC 2308 §5: the negative TTL is the SOA's minimum, bounded by its own TTL.
        m.authorities
            .iter()
            .find_map(|r| match &r.data {
                RData::SOA(soa) => Some(soa.minimum.min(r.ttl)),
                _ => None,
            })
            .unwrap_or(0)
    } else {
        m.answers.iter().map(|r| r.ttl).min().unwrap_or(0)
    };
    Ok(SecureAnswer {
        secure: m.metadata.authentic_data,
        records,
        ttl,
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
        Some(Err(e)) => HostDane::Failed(e.to_string()),
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

/// What the DNSSEC-aware MX lookup of a destination means for DANE (RFC 7672 §2.1, §2.2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxDane {
    /// A secure answer: DANE applies, to these MX host names only (lower case, no final
    /// dot; empty: a secure denial of MX records, the domain itself is the implicit MX; a
    /// null MX gives `""`).
    Secure(Vec<String>),
    /// Proven insecure: a validated insecure delegation (in-process), or the trusted
    /// loopback resolver's answer without the AD bit. DANE does not apply.
    Insecure,
    /// Neither proven secure nor proven insecure: a bogus answer, or none at all (time-out,
    /// SERVFAIL, network error, garbage). The destination waits: someone who can drop or
    /// break only the DNSSEC queries must not be able to turn DANE off.
    Defer(LookupError),
}

/// The decision on a DNSSEC-aware MX answer: only a proven-insecure answer lets delivery go
/// on without DANE; every failure defers (Postfix's `dane` level does the same).
pub fn mx_dane(answer: Result<SecureAnswer, LookupError>) -> MxDane {
    match answer {
        Ok(a) if a.secure => MxDane::Secure(
            a.records
                .iter()
                .filter_map(|r| match r {
                    RData::MX(mx) => Some(
                        mx.exchange
                            .to_lowercase()
                            .to_ascii()
                            .trim_end_matches('.')
                            .to_owned(),
                    ),
                    _ => None,
                })
                .collect(),
        ),
        Ok(_) => MxDane::Insecure,
        Err(e) => MxDane::Defer(e),
    }
}

/// Longest time a DANE verdict on a host is kept, whatever the TTLs.
pub const MAX_VERDICT_TTL: Duration = Duration::from_secs(300);

/// What DANE says about `host` for SMTP on `port`, and how long that may be kept: its A and
/// AAAA answers must be secure for its TLSA records to count (RFC 7672 §2.2.2: an insecure
/// address is not DANE's, a bogus one makes the host unusable now), then [`host_dane`] on
/// the TLSA answer. Only called for hosts of a secure MX answer.
pub async fn host_lookup(
    dnssec: &Dnssec,
    host: &str,
    port: u16,
    timeout: Duration,
) -> (HostDane, Duration) {
    let (a, aaaa) = tokio::join!(
        dnssec.lookup(host, RecordType::A, timeout),
        dnssec.lookup(host, RecordType::AAAA, timeout)
    );
    let mut ttl = u32::MAX;
    let mut found = false;
    for answer in [a, aaaa] {
        match answer {
            Err(e) => return (HostDane::Failed(e.to_string()), Duration::ZERO),
            Ok(a) if !a.secure => {
                return (
                    HostDane::Insecure("insecure A/AAAA"),
                    Duration::from_secs(a.ttl.into()),
                );
            }
            Ok(a) => {
                found |= !a.records.is_empty();
                ttl = ttl.min(a.ttl);
            }
        }
    }
    if !found {
        // Securely no address: nothing to connect to, nothing to keep.
        return (HostDane::Insecure("no address"), Duration::ZERO);
    }
    let tlsa = dnssec
        .lookup(&tlsa_name(host, port), RecordType::TLSA, timeout)
        .await;
    if let Ok(t) = &tlsa {
        ttl = ttl.min(t.ttl);
    }
    let verdict = host_dane(true, Some(tlsa));
    let keep = match verdict {
        HostDane::Failed(_) => Duration::ZERO,
        _ => Duration::from_secs(ttl.into()).min(MAX_VERDICT_TTL),
    };
    (verdict, keep)
}

/// Largest verdict kept (its TLSA data in bytes): a stranger's zone full of big TLSA
/// records (full certificates, up to a 64 KiB answer) is looked up again, not hoarded.
const MAX_CACHED_TLSA_BYTES: usize = 4096;

/// Recent [`HostDane`] verdicts by key (`host:port`), each kept for the TTL it came with (at
/// most [`MAX_VERDICT_TTL`]), at most `capacity` of them: every message to a host does not
/// redo its lookups (and validation). Failures and verdicts with more than
/// [`MAX_CACHED_TLSA_BYTES`] of TLSA data are not kept.
pub struct VerdictCache {
    capacity: usize,
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, HostDane)>>,
}

impl VerdictCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: std::sync::Mutex::default(),
        }
    }

    /// The verdict on `key` if it is still fresh at `now`.
    pub fn get(&self, key: &str, now: std::time::Instant) -> Option<HostDane> {
        let entries = self.entries.lock().ok()?;
        match entries.get(key) {
            Some((until, v)) if *until > now => Some(v.clone()),
            _ => None,
        }
    }

    /// Keeps `verdict` on `key` for `ttl` (capped; not at all when zero, or a failure).
    /// When full, expired entries go first, then the one closest to expiring.
    pub fn put(&self, key: String, verdict: HostDane, ttl: Duration, now: std::time::Instant) {
        let ttl = ttl.min(MAX_VERDICT_TTL);
        let tlsa_bytes = match &verdict {
            HostDane::Usable(t) | HostDane::Unusable(t) => t.iter().map(|t| t.data.len()).sum(),
            _ => 0,
        };
        if ttl.is_zero()
            || self.capacity == 0
            || tlsa_bytes > MAX_CACHED_TLSA_BYTES
            || matches!(verdict, HostDane::Failed(_))
        {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (until, _)| *until > now);
            if entries.len() >= self.capacity
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (until, _))| *until)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (now + ttl, verdict));
    }

    /// Entries held (fresh or not).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
        let ans = |secure: bool, records: Vec<RData>| {
            Some(Ok(SecureAnswer {
                secure,
                records,
                ttl: 60,
            }))
        };
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

    /// RFC 7672 §2.1.1: only a proven-insecure MX answer lets delivery go on without DANE;
    /// a bogus answer and no answer at all (the DNSSEC queries dropped or SERVFAILed by
    /// someone on the path) both defer. A secure answer names the hosts DANE covers.
    #[test]
    fn mx_decision_defers_unless_proven_secure_or_insecure() {
        let mx = |pref: u16, host: &str| {
            RData::MX(hickory_resolver::proto::rr::rdata::MX::new(
                pref,
                Name::from_ascii(host).unwrap(),
            ))
        };
        let ans = |secure: bool, records: Vec<RData>| {
            Ok(SecureAnswer {
                secure,
                records,
                ttl: 60,
            })
        };
        assert_eq!(
            mx_dane(ans(
                true,
                vec![mx(10, "MX1.Example.NET."), mx(20, "mx2.example.net")]
            )),
            MxDane::Secure(vec!["mx1.example.net".into(), "mx2.example.net".into()])
        );
        // A secure denial: the implicit MX (the domain itself); a secure null MX.
        assert_eq!(mx_dane(ans(true, vec![])), MxDane::Secure(vec![]));
        assert_eq!(
            mx_dane(ans(true, vec![mx(0, ".")])),
            MxDane::Secure(vec![String::new()])
        );
        // Proven insecure (validated insecure delegation, or no AD bit): no DANE.
        assert_eq!(
            mx_dane(ans(false, vec![mx(10, "mx.example.net")])),
            MxDane::Insecure
        );
        assert_eq!(mx_dane(ans(false, vec![])), MxDane::Insecure);
        // Indeterminate and bogus: the destination waits, never "insecure".
        for e in [
            LookupError::Failed("MX lookup for example.net: timed out".into()),
            LookupError::Failed("MX lookup for example.net: error response: SERVFAIL".into()),
            LookupError::ServFail("SERVFAIL (DNSSEC-bogus or broken)".into()),
            LookupError::Bogus("DNSSEC-bogus (bad or missing signatures)".into()),
        ] {
            assert_eq!(mx_dane(Err(e.clone())), MxDane::Defer(e));
        }
    }

    /// A lost datagram is asked again (the next round) before a DO/AD lookup gives up; a
    /// name server that never answers fails the lookup (which then defers, above).
    #[tokio::test]
    async fn ad_lookups_ask_again_after_a_lost_answer() {
        let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let server = sock.local_addr().unwrap();
        let answering = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            // The first query is lost; the second gets a secure NODATA.
            let _ = sock.recv_from(&mut buf).await.unwrap();
            let (n, peer) = sock.recv_from(&mut buf).await.unwrap();
            let q = Message::from_vec(&buf[..n]).unwrap();
            let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            m.add_query(q.queries[0].clone());
            m.metadata.authentic_data = true;
            sock.send_to(&m.to_vec().unwrap(), peer).await.unwrap();
        });
        let a = secure_lookup(
            &[server],
            "_25._tcp.mx.example.net",
            RecordType::TLSA,
            Duration::from_millis(300),
        )
        .await
        .unwrap();
        assert!(a.secure && a.records.is_empty());
        answering.await.unwrap();
        // Nobody answers: a failure (not an insecure answer) after every round.
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = secure_lookup(
            &[silent.local_addr().unwrap()],
            "example.net",
            RecordType::MX,
            Duration::from_millis(100),
        )
        .await;
        assert!(
            matches!(r, Err(LookupError::Failed(ref w)) if w.contains("timed out")),
            "{r:?}"
        );
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

    fn config(dns: &str) -> postern_config::Config {
        postern_config::Config::parse(
            &format!("hostname = \"h.example\"\n[dns]\n{dns}\n"),
            std::path::Path::new("/nonexistent"),
        )
        .unwrap()
    }

    fn mode(dns: &str) -> Option<&'static str> {
        Dnssec::from_config(&config(dns)).unwrap().map(|d| match d {
            Dnssec::Ad(_) => "ad",
            Dnssec::Validate(..) => "validate",
        })
    }

    #[tokio::test]
    async fn the_dnssec_source_by_mode_and_name_servers() {
        let lo = "nameservers = [\"127.0.0.1:53\"]";
        let remote = "nameservers = [\"192.0.2.53:53\"]";
        // auto: a loopback resolver's AD bit; anything else is validated here.
        assert_eq!(mode(lo), Some("ad"));
        assert_eq!(mode(remote), Some("validate"));
        // ad: never with a remote name server (DANE off); validate: always.
        assert_eq!(mode(&format!("{remote}\ndnssec = \"ad\"")), None);
        assert_eq!(
            mode(&format!("{lo}\ndnssec = \"validate\"")),
            Some("validate")
        );
        // A trust anchor file asks for validation, and must hold DNSKEY records.
        let dir = tempfile::tempdir().unwrap();
        let anchor = dir.path().join("root.key");
        std::fs::write(
            &anchor,
            ". 60 IN DNSKEY 257 3 13 t4djaAlx/b309Mq9T3DdaUNOpcPCLY9msxMh/2k/th3xl8n4SATyP1O0wYkMC/YzCx6/vjY3z/NtyjGxlkbMjQ==\n",
        )
        .unwrap();
        let with = |extra: &str| format!("{lo}\ntrust_anchor = \"{}\"\n{extra}", anchor.display());
        assert_eq!(mode(&with("")), Some("validate"));
        let d = Dnssec::from_config(&config(&with(""))).unwrap().unwrap();
        assert!(d.describe().contains("root.key"), "{}", d.describe());
        std::fs::write(&anchor, "not a zone file {\n").unwrap();
        assert!(Dnssec::from_config(&config(&with(""))).is_err());
        std::fs::write(&anchor, "").unwrap();
        assert!(Dnssec::from_config(&config(&with(""))).is_err());
        std::fs::remove_file(&anchor).unwrap();
        assert!(Dnssec::from_config(&config(&with(""))).is_err());
        // Without one: the IANA root keys.
        let d = Dnssec::from_config(&config(remote)).unwrap().unwrap();
        assert_eq!(
            d.describe(),
            "validated in-process from the IANA root trust anchor"
        );
    }

    /// The trust anchor file takes DS records (IANA's and Debian's `dns-root-data` form of
    /// the root's) next to DNSKEY records; a DS line that does not parse is an error.
    #[test]
    fn trust_anchor_files_with_ds_records() {
        // /usr/share/dns/root.key of Debian's dns-root-data, and IANA's 2024 KSK.
        let text = "; root trust anchors\n\
            . IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n\
            .\t86400\tIN\tDS\t38696 8 2 683D2D0ACB8C9B712A1948B27F741219298D0A45 0D612C483AF444A4C0FB2B16 ; split\n\
            . 60 IN DNSKEY 257 3 13 t4djaAlx/b309Mq9T3DdaUNOpcPCLY9msxMh/2k/th3xl8n4SATyP1O0wYkMC/YzCx6/vjY3z/NtyjGxlkbMjQ==\n";
        let (keys, ds) = parse_trust_anchors(text).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(ds.len(), 2);
        assert!(ds.iter().all(|(n, _)| n.is_root()));
        assert_eq!(ds[0].1.key_tag(), 20326);
        assert_eq!(ds[1].1.key_tag(), 38696);
        assert_eq!(ds[1].1.digest_type(), DigestType::SHA256);
        assert_eq!(ds[1].1.digest()[..2], [0x68, 0x3d]);
        assert_eq!(ds[1].1.digest().len(), 32);
        // DS only: no DNSKEY needed.
        let (keys, ds) = parse_trust_anchors(text.lines().nth(1).unwrap()).unwrap();
        assert!(keys.is_empty() && ds.len() == 1);
        // Broken DS lines: said so, with the line number.
        for bad in [
            ". IN DS 20326 8 2 E06D44B8",
            ". IN DS 20326 8 9 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            ". IN DS x 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            ". IN DS 20326 8 2 Z06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            "org IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
            "DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D",
        ] {
            let Err(e) = parse_trust_anchors(&format!("; x\n{bad}\n")) else {
                panic!("{bad} parsed");
            };
            assert!(e.starts_with("line 2: DS record"), "{bad}: {e}");
        }
        assert!(parse_trust_anchors("; nothing\n\n").is_err());
        let many =
            ". IN DS 20326 8 2 E06D44B80B8F1D39A95C0B0D7C65D08458E880409BBC683457104237C7F8EC8D\n"
                .repeat(MAX_DS_ANCHORS + 1);
        assert!(parse_trust_anchors(&many).is_err());
    }

    #[test]
    fn verdicts_are_kept_for_their_ttl_within_bounds() {
        let now = std::time::Instant::now();
        let s = Duration::from_secs;
        let c = VerdictCache::new(2);
        let usable = HostDane::Usable(vec![t(3, 1, 1, vec![1; 32])]);
        c.put("a:25".into(), usable.clone(), s(60), now);
        assert_eq!(c.get("a:25", now + s(59)), Some(usable.clone()));
        assert_eq!(c.get("a:25", now + s(60)), None, "expired with its TTL");
        // Capped at MAX_VERDICT_TTL whatever the TTL says.
        c.put("b:25".into(), usable.clone(), s(86_400), now);
        assert!(c.get("b:25", now + MAX_VERDICT_TTL - s(1)).is_some());
        assert!(c.get("b:25", now + MAX_VERDICT_TTL).is_none());
        // Failures and zero TTLs are not kept.
        c.put("c:25".into(), HostDane::Failed("bogus".into()), s(60), now);
        c.put(
            "d:25".into(),
            HostDane::Insecure("no TLSA"),
            Duration::ZERO,
            now,
        );
        assert_eq!(c.len(), 2);
        // Full: expired entries go first, then the one closest to expiring.
        let later = now + s(61);
        c.put("e:25".into(), HostDane::Insecure("no TLSA"), s(10), later);
        assert_eq!(c.len(), 2);
        assert!(c.get("a:25", later).is_none() && c.get("b:25", later).is_some());
        c.put("f:25".into(), HostDane::Insecure("no TLSA"), s(100), later);
        assert_eq!(c.len(), 2);
        assert!(c.get("e:25", later).is_none(), "the soonest to expire went");
        assert!(c.get("b:25", later).is_some() && c.get("f:25", later).is_some());
        // Nor big ones (full certificates by the dozen).
        let big = HostDane::Unusable(vec![t(3, 0, 0, vec![1; 2048]); 3]);
        c.put("g:25".into(), big, s(60), later);
        assert!(c.get("g:25", later).is_none());
        // A bound of 0 keeps nothing.
        let none = VerdictCache::new(0);
        none.put("a:25".into(), usable, s(60), now);
        assert!(none.is_empty());
    }

    #[test]
    fn negative_answers_live_for_their_soa_minimum() {
        let qname = Name::from_ascii("_25._tcp.mx.example.net.").unwrap();
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_query(Query::query(qname.clone(), RecordType::TLSA));
        m.metadata.authentic_data = true;
        assert_eq!(interpret(&m, &qname, RecordType::TLSA).unwrap().ttl, 0);
        let soa = hickory_resolver::proto::rr::rdata::SOA::new(
            Name::from_ascii("ns.example.net.").unwrap(),
            Name::from_ascii("hostmaster.example.net.").unwrap(),
            1,
            3600,
            600,
            86400,
            120,
        );
        m.add_authority(hickory_resolver::proto::rr::Record::from_rdata(
            Name::from_ascii("example.net.").unwrap(),
            300,
            RData::SOA(soa),
        ));
        let a = interpret(&m, &qname, RecordType::TLSA).unwrap();
        assert!(a.secure && a.records.is_empty());
        assert_eq!(a.ttl, 120);
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
