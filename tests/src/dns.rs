//! A tiny authoritative DNS server on 127.0.0.1 (UDP) for test zones: A, AAAA, MX (null MX
//! included), TXT, TLSA, PTR and CNAME/SRV records (the last two only answered when asked for).
//! Unknown names get NXDOMAIN; known names without the asked type get an empty NOERROR answer
//! (NODATA). Enough for smtpd's MX routing and for publishing DKIM keys; never talks to
//! anything but its clients on loopback.
//!
//! For DANE tests it does DNSSEC in one of two ways:
//! - **Playing a validating resolver** (nothing signed): [`DnsServer::secure`] zones (the
//!   name and every name under it) get the AD bit, [`DnsServer::bogus`] names SERVFAIL.
//! - **Signing** ([`DnsServer::sign`]): the server becomes a signed root zone holding every
//!   name, with one ECDSA P-256 key (algorithm 13) whose DNSKEY [`DnsServer::trust_anchor`]
//!   gives, for `[dns] trust_anchor`. Queries with the DO bit get RRSIGs on every RRset,
//!   `. DNSKEY` and `. SOA`, and denials proven by NSEC records as online signers make them
//!   (RFC 4470 "minimally covering", RFC 9824 compact denial: the NSEC at the name asked
//!   for, next name `\000.name`, NXDOMAIN answered as such a NODATA). [`DnsServer::unsigned_zone`]
//!   makes an insecure delegation (an NS record at its apex, a signed NSEC proving it has no
//!   DS; its names unsigned), [`DnsServer::tamper`] corrupts the signatures at a name (a
//!   bogus answer). Queries without DO get the plain answers, so other resolvers see no change.
//!
//! By default negative answers carry no SOA (so resolvers cannot cache them by RFC 2308)
//! and every query is answered. [`DnsServer::set_soa`] adds an SOA to negative answers
//! (cacheable, as real authoritative servers send them); [`DnsServer::set_drop_one_in`]
//! silently drops every Nth query, as rate-limited resolvers do.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const A: u16 = 1;
const CNAME: u16 = 5;
const PTR: u16 = 12;
const MX: u16 = 15;
const SRV: u16 = 33;
const TXT: u16 = 16;
const AAAA: u16 = 28;
const TLSA: u16 = 52;
const SOA: u16 = 6;
const NS: u16 = 2;
const DS: u16 = 43;
const RRSIG: u16 = 46;
const NSEC: u16 = 47;
const DNSKEY: u16 = 48;
/// TTL of every record (and the RRSIGs' original TTL).
const TTL: u32 = 60;
/// DNSSEC algorithm 13, ECDSA P-256 with SHA-256 (RFC 6605).
const ECDSAP256SHA256: u8 = 13;
/// TTL and minimum of the SOA in negative answers (RFC 2308: the negative TTL).
const SOA_TTL: u32 = 300;

#[derive(Debug, Clone, PartialEq)]
enum Data {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    Mx(u16, String),
    Txt(Vec<Vec<u8>>),
    Ptr(String),
    Cname(String),
    Srv(u16, u16, u16, String),
    Tlsa(u8, u8, u8, Vec<u8>),
}

impl Data {
    fn rtype(&self) -> u16 {
        match self {
            Self::A(_) => A,
            Self::Aaaa(_) => AAAA,
            Self::Mx(..) => MX,
            Self::Txt(_) => TXT,
            Self::Ptr(_) => PTR,
            Self::Cname(_) => CNAME,
            Self::Srv(..) => SRV,
            Self::Tlsa(..) => TLSA,
        }
    }
}

#[derive(Default)]
struct Zone {
    records: Vec<(String, Data)>,
    queries: Vec<(String, u16)>,
    /// Answer every query with SERVFAIL (DNS is down: a temporary failure, quickly).
    servfail: bool,
    /// Negative answers (NXDOMAIN, NODATA) carry an SOA in the authority section.
    soa: bool,
    /// Drop every Nth query without an answer (0: answer all).
    drop_one_in: u64,
    /// Queries seen (dropped ones included), and how many were dropped.
    seen: u64,
    dropped: u64,
    /// Answer this long after the query (0: at once), as a distant server does.
    delay_ms: u64,
    /// Names whose answers carry the AD bit when the query has it set: the
    /// server plays a validating resolver for which these are DNSSEC-secure.
    secure: Vec<String>,
    /// Names answered SERVFAIL, as a validating resolver answers DNSSEC-bogus data.
    bogus: Vec<String>,
    /// The root zone's key when the server signs ([`DnsServer::sign`]).
    signer: Option<Arc<Signer>>,
    /// Insecure delegations from the signed root: their names are not signed.
    unsigned: Vec<String>,
    /// Names whose RRSIGs are corrupted.
    tampered: Vec<String>,
    /// Queries failed on purpose ([`DnsServer::fail_queries`]): name, type, only those with
    /// the DO bit, and how.
    failing: Vec<(String, u16, bool, QueryFailure)>,
    /// How many queries those rules failed.
    failed: u64,
}

/// How [`DnsServer::fail_queries`] fails the queries it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFailure {
    /// No answer at all (the client times out).
    Drop,
    /// SERVFAIL (a broken or a validating resolver; not a validated answer).
    ServFail,
}

/// The signing key of the root zone (a combined KSK/ZSK, flags 257).
struct Signer {
    key: ring::signature::EcdsaKeyPair,
    /// DNSKEY RDATA: flags, protocol 3, algorithm 13, the public key's X and Y.
    dnskey: Vec<u8>,
    tag: u16,
}

impl Signer {
    fn generate() -> Self {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("load the P-256 key");
        let mut dnskey = vec![1, 1, 3, ECDSAP256SHA256];
        // The uncompressed point without its 0x04 prefix (RFC 6605 §4).
        dnskey.extend_from_slice(&key.public_key().as_ref()[1..]);
        let tag = key_tag(&dnskey);
        Self { key, dnskey, tag }
    }

    /// The RRSIG RDATA over the RRset `owner`/`rtype` of `rdatas` (each uncompressed, names
    /// lower-case), signed by the root (RFC 4034 §3.1.8.1).
    fn rrsig(&self, owner: &str, rtype: u16, rdatas: &[Vec<u8>], tamper: bool) -> Vec<u8> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()) as u32;
        let labels = owner.split('.').filter(|l| !l.is_empty()).count() as u8;
        let mut rdata = Vec::new();
        rdata.extend_from_slice(&rtype.to_be_bytes());
        rdata.extend_from_slice(&[ECDSAP256SHA256, labels]);
        rdata.extend_from_slice(&TTL.to_be_bytes());
        rdata.extend_from_slice(&now.wrapping_add(86_400).to_be_bytes()); // expiration
        rdata.extend_from_slice(&now.wrapping_sub(3_600).to_be_bytes()); // inception
        rdata.extend_from_slice(&self.tag.to_be_bytes());
        rdata.push(0); // the signer: the root
        let mut signed = rdata.clone();
        let mut sorted = rdatas.to_vec();
        sorted.sort();
        sorted.dedup();
        for r in &sorted {
            put_name(&mut signed, owner);
            signed.extend_from_slice(&rtype.to_be_bytes());
            signed.extend_from_slice(&1u16.to_be_bytes());
            signed.extend_from_slice(&TTL.to_be_bytes());
            signed.extend_from_slice(&(r.len() as u16).to_be_bytes());
            signed.extend_from_slice(r);
        }
        let sig = self
            .key
            .sign(&ring::rand::SystemRandom::new(), &signed)
            .expect("sign an RRset");
        let mut sig = sig.as_ref().to_vec();
        if tamper {
            sig[10] ^= 0x55;
        }
        rdata.extend_from_slice(&sig);
        rdata
    }
}

/// The key tag of a DNSKEY RDATA (RFC 4034 Appendix B).
fn key_tag(rdata: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for (i, b) in rdata.iter().enumerate() {
        acc += if i & 1 == 0 {
            u32::from(*b) << 8
        } else {
            u32::from(*b)
        };
    }
    acc += (acc >> 16) & 0xffff;
    (acc & 0xffff) as u16
}

/// An NSEC type bitmap (window 0 only: every type here is below 256).
fn type_bitmap(types: &[u16]) -> Vec<u8> {
    let max = types.iter().copied().max().unwrap_or(0);
    let mut bits = vec![0u8; usize::from(max / 8) + 1];
    for t in types {
        bits[usize::from(t / 8)] |= 0x80 >> (t % 8);
    }
    let mut out = vec![0, bits.len() as u8];
    out.extend_from_slice(&bits);
    out
}

/// The running server; it stops answering when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Mutex<Zone>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

fn norm(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl DnsServer {
    /// Starts on an ephemeral UDP port of 127.0.0.1 with an empty zone.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("loopback address"))
            .expect("bind the DNS server")
    }

    /// Starts on `addr` (a loopback address; port 0 for an ephemeral one) with an empty zone.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::other(
                "the test DNS server listens on loopback only",
            ));
        }
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        let addr = socket.local_addr()?;
        let zone: Arc<Mutex<Zone>> = Arc::default();
        let stop: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let (z, s) = (zone.clone(), stop.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                let delay = z.lock().map_or(0, |z| z.delay_ms);
                if let Some(reply) = answer(&buf[..n], &z) {
                    match socket.try_clone() {
                        Ok(s) if delay > 0 => {
                            thread::spawn(move || {
                                thread::sleep(Duration::from_millis(delay));
                                drop(s.send_to(&reply, peer));
                            });
                        }
                        _ => drop(socket.send_to(&reply, peer)),
                    }
                }
            }
        });
        Ok(Self { addr, zone, stop })
    }

    /// A server that answers SERVFAIL to everything: what every install of the harness
    /// uses unless a test points `[dns] nameservers` elsewhere, so nothing asks the
    /// machine's resolver and remote domains fail temporarily, at once.
    pub fn start_servfail() -> Self {
        let s = Self::start();
        s.zone.lock().expect("zone lock").servfail = true;
        s
    }

    /// Negative answers carry an SOA (TTL and minimum 300 s) when `on`: resolvers may
    /// cache them (RFC 2308). Off by default.
    pub fn set_soa(&self, on: bool) -> &Self {
        self.zone.lock().expect("zone lock").soa = on;
        self
    }

    /// Drops every `n`th query (counting from the server's start) without answering, as a
    /// lossy path or a rate-limited resolver does; 0 answers every query (the default).
    pub fn set_drop_one_in(&self, n: u64) -> &Self {
        self.zone.lock().expect("zone lock").drop_one_in = n;
        self
    }

    /// Answers `ms` milliseconds after each query (0, the default: at once).
    pub fn set_delay_ms(&self, ms: u64) -> &Self {
        self.zone.lock().expect("zone lock").delay_ms = ms;
        self
    }

    /// Queries received so far (dropped ones included) and how many were dropped.
    pub fn counts(&self) -> (u64, u64) {
        let z = self.zone.lock().expect("zone lock");
        (z.seen, z.dropped)
    }

    /// `IP:PORT` for `[dns] nameservers`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Adds a record; the same record twice is one (RFC 2181 §5: an RRset has no
    /// duplicates, and signatures are over the set).
    fn add(&self, name: &str, data: Data) -> &Self {
        let record = (norm(name), data);
        let mut z = self.zone.lock().expect("zone lock");
        if !z.records.contains(&record) {
            z.records.push(record);
        }
        drop(z);
        self
    }

    /// `name IN A ip`.
    pub fn a(&self, name: &str, ip: Ipv4Addr) -> &Self {
        self.add(name, Data::A(ip))
    }

    /// `name IN AAAA ip`.
    pub fn aaaa(&self, name: &str, ip: Ipv6Addr) -> &Self {
        self.add(name, Data::Aaaa(ip))
    }

    /// `domain IN MX preference host`.
    pub fn mx(&self, domain: &str, preference: u16, host: &str) -> &Self {
        self.add(domain, Data::Mx(preference, norm(host)))
    }

    /// `domain IN MX 0 .` (RFC 7505: this domain takes no mail).
    pub fn null_mx(&self, domain: &str) -> &Self {
        self.add(domain, Data::Mx(0, String::new()))
    }

    /// `name IN TXT "…"`, the text cut into 255-byte strings.
    pub fn txt(&self, name: &str, text: &str) -> &Self {
        let parts = text.as_bytes().chunks(255).map(<[u8]>::to_vec).collect();
        self.add(name, Data::Txt(parts))
    }

    /// `ip IN PTR name`, at the reverse name of `ip` (in-addr.arpa or ip6.arpa).
    pub fn ptr(&self, ip: std::net::IpAddr, name: &str) -> &Self {
        self.add(&reverse_name(ip), Data::Ptr(norm(name)))
    }

    /// `name IN CNAME target`.
    pub fn cname(&self, name: &str, target: &str) -> &Self {
        self.add(name, Data::Cname(norm(target)))
    }

    /// `name IN SRV priority weight port target`.
    pub fn srv(&self, name: &str, priority: u16, weight: u16, port: u16, target: &str) -> &Self {
        self.add(name, Data::Srv(priority, weight, port, norm(target)))
    }

    /// `name IN TLSA usage selector matching data` (RFC 6698).
    pub fn tlsa(&self, name: &str, usage: u8, selector: u8, matching: u8, data: &[u8]) -> &Self {
        self.add(name, Data::Tlsa(usage, selector, matching, data.to_vec()))
    }

    /// Answers about `name` and the names under it (records or their absence) are
    /// DNSSEC-secure: the AD bit is set when the query has it. Stands in for a validating
    /// resolver; nothing is signed.
    pub fn secure(&self, name: &str) -> &Self {
        self.zone.lock().expect("zone lock").secure.push(norm(name));
        self
    }

    /// Queries about `name` get SERVFAIL, as a validating resolver answers bogus data.
    pub fn bogus(&self, name: &str) -> &Self {
        self.zone.lock().expect("zone lock").bogus.push(norm(name));
        self
    }

    /// Signs: the server becomes a signed root zone holding every name (see the module
    /// documentation), with a new key. Idempotent.
    pub fn sign(&self) -> &Self {
        let mut z = self.zone.lock().expect("zone lock");
        if z.signer.is_none() {
            z.signer = Some(Arc::new(Signer::generate()));
        }
        drop(z);
        self
    }

    /// The root's DNSKEY as a trust anchor file line (`. 60 IN DNSKEY 257 3 13 …`), for
    /// `[dns] trust_anchor`; after [`DnsServer::sign`].
    pub fn trust_anchor(&self) -> String {
        use base64::Engine;
        let z = self.zone.lock().expect("zone lock");
        let signer = z
            .signer
            .as_ref()
            .expect("the server signs: call sign() first");
        format!(
            ". {TTL} IN DNSKEY 257 3 {ECDSAP256SHA256} {}\n",
            base64::engine::general_purpose::STANDARD.encode(&signer.dnskey[4..])
        )
    }

    /// The root's key as a DS trust anchor line (`. 60 IN DS TAG 13 2 SHA-256-HEX`, RFC 4034
    /// §5.1.4: the digest of the owner name and the DNSKEY RDATA), as IANA publishes the
    /// root's; after [`DnsServer::sign`].
    pub fn trust_anchor_ds(&self) -> String {
        let z = self.zone.lock().expect("zone lock");
        let signer = z
            .signer
            .as_ref()
            .expect("the server signs: call sign() first");
        let mut data = vec![0u8]; // the root's name in wire form
        data.extend_from_slice(&signer.dnskey);
        let digest = ring::digest::digest(&ring::digest::SHA256, &data);
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02X}")).collect();
        format!(". {TTL} IN DS {} {ECDSAP256SHA256} 2 {hex}\n", signer.tag)
    }

    /// `zone` is an insecure delegation from the signed root: an NS record at its apex and
    /// a signed proof that it has no DS; it and the names under it are not signed.
    pub fn unsigned_zone(&self, zone: &str) -> &Self {
        self.zone
            .lock()
            .expect("zone lock")
            .unsigned
            .push(norm(zone));
        self
    }

    /// The RRSIGs of the RRsets at `name` no longer verify (a bogus answer).
    pub fn tamper(&self, name: &str) -> &Self {
        self.zone
            .lock()
            .expect("zone lock")
            .tampered
            .push(norm(name));
        self
    }

    /// Queries for `name`/`qtype` (type number; only those with the DO bit when
    /// `dnssec_only`) are dropped or answered SERVFAIL, as by someone on the path who filters
    /// the DNSSEC queries; [`DnsServer::answer_again`] ends it. None by default.
    pub fn fail_queries(
        &self,
        name: &str,
        qtype: u16,
        dnssec_only: bool,
        how: QueryFailure,
    ) -> &Self {
        self.zone
            .lock()
            .expect("zone lock")
            .failing
            .push((norm(name), qtype, dnssec_only, how));
        self
    }

    /// Every query is answered again (the rules of [`DnsServer::fail_queries`] are gone).
    pub fn answer_again(&self) -> &Self {
        self.zone.lock().expect("zone lock").failing.clear();
        self
    }

    /// How many queries the rules of [`DnsServer::fail_queries`] failed so far.
    pub fn failed_queries(&self) -> u64 {
        self.zone.lock().expect("zone lock").failed
    }

    /// Removes every record at `name` (to break a zone on purpose).
    pub fn remove(&self, name: &str) -> &Self {
        let n = norm(name);
        self.zone
            .lock()
            .expect("zone lock")
            .records
            .retain(|(r, _)| *r != n);
        self
    }

    /// Every query so far: (name, type number).
    pub fn queries(&self) -> Vec<(String, u16)> {
        self.zone.lock().expect("zone lock").queries.clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `4.3.2.1.in-addr.arpa` / the nibbles of an IPv6 address under `ip6.arpa`.
pub fn reverse_name(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        std::net::IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len().min(63) as u8);
        out.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    out.push(0);
}

/// The reply to one query, or None for garbage.
fn answer(q: &[u8], zone: &Mutex<Zone>) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *q.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = &q[12..i + 4];
    let name = labels.join(".");
    let mut zone = zone.lock().ok()?;
    zone.queries.push((name.clone(), qtype));
    zone.seen += 1;
    if zone.drop_one_in > 0 && zone.seen.is_multiple_of(zone.drop_one_in) {
        zone.dropped += 1;
        return None;
    }
    let with_do = dnssec_ok(q, i + 4);
    let failure = zone
        .failing
        .iter()
        .find(|(n, t, do_only, _)| *n == name && *t == qtype && (!do_only || with_do))
        .map(|f| f.3);
    if failure.is_some() {
        zone.failed += 1;
    }
    if failure == Some(QueryFailure::Drop) {
        return None;
    }
    let soa = zone.soa;
    // AD when the query asks for it (RFC 6840 §5.7) and the name is in a secure zone.
    let ad = q[3] & 0x20 != 0 && zone.secure.iter().any(|s| in_zone(&name, s));
    if zone.servfail || zone.bogus.contains(&name) || failure == Some(QueryFailure::ServFail) {
        let mut out = q[..12].to_vec();
        out[2] = 0x80 | (q[2] & 0x01);
        out[3] = 0x82; // RA, SERVFAIL
        out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&q[12..i + 4]);
        return Some(out);
    }
    // Signed answers for queries with the DO bit, outside insecure delegations.
    let cut = zone.unsigned.iter().find(|z| in_zone(&name, z)).cloned();
    let signer = zone.signer.clone().filter(|_| {
        dnssec_ok(q, i + 4)
            && (cut.is_none() || (qtype == DS && cut.as_deref() == Some(name.as_str())))
    });
    let tamper = zone.tampered.contains(&name);
    let mut known = zone.records.iter().any(|(n, _)| *n == name);
    let mut answers: Vec<(u16, Vec<u8>)> = zone
        .records
        .iter()
        .filter(|(n, d)| *n == name && d.rtype() == qtype)
        .map(|(_, d)| (d.rtype(), rdata_of(d)))
        .collect();
    let present: Vec<u16> = zone
        .records
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, d)| d.rtype())
        .collect();
    let signing = zone.signer.is_some();
    // The root's DNSKEY RRset is answered without the DO bit too (unsigned then), as every
    // server does: a DS trust anchor's keys are fetched that way.
    let root_key = zone
        .signer
        .as_ref()
        .filter(|_| name.is_empty() && qtype == DNSKEY)
        .map(|s| s.dnskey.clone());
    if signing && cut.as_deref() == Some(name.as_str()) && qtype == NS {
        // The delegation's NS record (parent side, unsigned as delegations are).
        let mut rdata = Vec::new();
        put_name(&mut rdata, &format!("ns.{name}"));
        answers.push((NS, rdata));
        known = true;
    }
    drop(zone);

    if signer.is_none()
        && let Some(key) = root_key
    {
        answers.push((DNSKEY, key));
        known = true;
    }
    let mut authority: Vec<(String, u16, Vec<u8>)> = Vec::new();
    let mut nxdomain = !known;
    if let Some(signer) = &signer {
        if name.is_empty() && qtype == DNSKEY {
            answers.push((DNSKEY, signer.dnskey.clone()));
        }
        if name.is_empty() && qtype == SOA {
            answers.push((SOA, root_soa()));
        }
        if !answers.is_empty() {
            let rdatas: Vec<Vec<u8>> = answers.iter().map(|(_, r)| r.clone()).collect();
            answers.push((RRSIG, signer.rrsig(&name, qtype, &rdatas, tamper)));
        } else {
            // A NODATA proof at the name itself (NXDOMAIN as compact denial, RFC 9824); at
            // an insecure delegation, the parent's NSEC: NS, no DS.
            let mut types = if cut.is_some() { vec![NS] } else { present };
            if name.is_empty() {
                types.extend([SOA, DNSKEY]);
            }
            types.extend([RRSIG, NSEC]);
            types.sort_unstable();
            types.dedup();
            let mut nsec = vec![1, 0]; // next name: \000.name
            put_name(&mut nsec, &name);
            nsec.extend_from_slice(&type_bitmap(&types));
            let sig = signer.rrsig(&name, NSEC, std::slice::from_ref(&nsec), tamper);
            authority.push((name.clone(), NSEC, nsec));
            authority.push((name.clone(), RRSIG, sig));
            let soa = root_soa();
            let sig = signer.rrsig("", SOA, std::slice::from_ref(&soa), false);
            authority.push((String::new(), SOA, soa));
            authority.push((String::new(), RRSIG, sig));
            nxdomain = false;
        }
    } else if soa && answers.is_empty() {
        // `zone. SOA ns.zone. hostmaster.zone. 1 3600 600 86400 300`, the zone being the
        // last two labels of the name asked for.
        let zone_name = labels[labels.len().saturating_sub(2)..].join(".");
        let mut rdata = Vec::new();
        put_name(&mut rdata, &format!("ns.{zone_name}"));
        put_name(&mut rdata, &format!("hostmaster.{zone_name}"));
        for v in [1u32, 3600, 600, 86400, SOA_TTL] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        authority.push((zone_name, SOA, rdata));
    }

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]);
    let rd = q[2] & 0x01;
    out.push(0x84 | rd); // QR, AA, RD as asked
    // RA, AD when secure; NOERROR or NXDOMAIN
    out.push(if nxdomain { 0x83 } else { 0x80 } | if ad { 0x20 } else { 0 });
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    out.extend_from_slice(&(authority.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]); // ARCOUNT
    out.extend_from_slice(question);
    for (rtype, rdata) in answers {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name in the question
        put_record(&mut out, rtype, &rdata);
    }
    for (owner, rtype, rdata) in authority {
        put_name(&mut out, &owner);
        let ttl = if rtype == SOA && signer.is_none() {
            SOA_TTL
        } else {
            TTL
        };
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

/// Whether `name` is `zone` or under it.
fn in_zone(name: &str, zone: &str) -> bool {
    name == zone || zone.is_empty() || name.ends_with(&format!(".{zone}"))
}

/// Whether the query (its question ending at `end`) has an OPT record with the DO bit.
fn dnssec_ok(q: &[u8], end: usize) -> bool {
    // Queries carry no answer or authority records; the OPT is the first additional one:
    // root name, type 41, class (payload size), extended RCODE, version, flags.
    u16::from_be_bytes([q[10], q[11]]) >= 1
        && q.get(end) == Some(&0)
        && q.get(end + 1..end + 3) == Some(&[0, 41])
        && q.get(end + 7).is_some_and(|f| f & 0x80 != 0)
}

/// `. SOA ns.root. hostmaster.root. 1 3600 600 86400 60`.
fn root_soa() -> Vec<u8> {
    let mut rdata = Vec::new();
    put_name(&mut rdata, "ns.root");
    put_name(&mut rdata, "hostmaster.root");
    for v in [1u32, 3600, 600, 86400, TTL] {
        rdata.extend_from_slice(&v.to_be_bytes());
    }
    rdata
}

/// One record after its owner name: type, class IN, TTL, RDATA.
fn put_record(out: &mut Vec<u8>, rtype: u16, rdata: &[u8]) {
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&TTL.to_be_bytes());
    out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
    out.extend_from_slice(rdata);
}

/// The RDATA of `d` (names uncompressed and lower-case, as signatures want them).
fn rdata_of(d: &Data) -> Vec<u8> {
    let mut rdata = Vec::new();
    match d {
        Data::A(ip) => rdata.extend_from_slice(&ip.octets()),
        Data::Aaaa(ip) => rdata.extend_from_slice(&ip.octets()),
        Data::Mx(pref, host) => {
            rdata.extend_from_slice(&pref.to_be_bytes());
            put_name(&mut rdata, host);
        }
        Data::Txt(parts) => {
            for p in parts {
                rdata.push(p.len() as u8);
                rdata.extend_from_slice(p);
            }
        }
        Data::Ptr(name) | Data::Cname(name) => put_name(&mut rdata, name),
        Data::Srv(prio, weight, port, target) => {
            rdata.extend_from_slice(&prio.to_be_bytes());
            rdata.extend_from_slice(&weight.to_be_bytes());
            rdata.extend_from_slice(&port.to_be_bytes());
            put_name(&mut rdata, target);
        }
        Data::Tlsa(usage, selector, matching, data) => {
            rdata.extend_from_slice(&[*usage, *selector, *matching]);
            rdata.extend_from_slice(data);
        }
    }
    rdata
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mx_and_nxdomain() {
        let zone = Mutex::new(Zone::default());
        zone.lock()
            .unwrap()
            .records
            .push(("example.net".into(), Data::Mx(10, "mx.example.net".into())));
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        put_name(&mut q, "Example.NET");
        q.extend_from_slice(&[0, 15, 0, 1]);
        let r = answer(&q, &zone).unwrap();
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        let mut q2 = q.clone();
        q2[12 + 1] = b'x';
        let r = answer(&q2, &zone).unwrap();
        assert_eq!(r[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(&r[8..10], &[0, 0], "no SOA by default");
        zone.lock().unwrap().soa = true;
        let r = answer(&q2, &zone).unwrap();
        assert_eq!(r[3] & 0x0f, 3, "NXDOMAIN");
        assert_eq!(&r[8..10], &[0, 1], "one SOA in the authority section");
        assert_eq!(
            &r[r.len() - 4..],
            &SOA_TTL.to_be_bytes(),
            "its minimum last"
        );
    }

    /// The signatures verify with an independent implementation (dnspython): RRsets,
    /// NODATA and compact-denial NSECs, the root SOA, the insecure delegation's NSEC; a
    /// tampered signature does not.
    #[test]
    #[ignore = "needs python3 with dnspython and cryptography"]
    fn signed_answers_verify_with_dnspython() {
        let dns = DnsServer::start();
        dns.sign()
            .mx("signed.example", 10, "mx.signed.example")
            .a("mx.signed.example", Ipv4Addr::LOCALHOST)
            .tlsa("_25._tcp.mx.signed.example", 3, 1, 1, &[7; 32])
            .a("mx.plain.example", Ipv4Addr::LOCALHOST)
            .unsigned_zone("plain.example")
            .mx("bad.example", 10, "mx.signed.example")
            .tamper("bad.example");
        let script = r#"
import sys, dns._features
dns._features.force("dnssec", True)  # dnspython 2.9 asks for cryptography 50; 48 does it
import dns.message, dns.query, dns.dnssec, dns.name, dns.rdatatype, dns.rcode
host, port = sys.argv[1], int(sys.argv[2])
def ask(name, t):
    q = dns.message.make_query(name, t, want_dnssec=True)
    return dns.query.udp(q, host, port=port, timeout=5)
root = dns.name.root
keys = ask(".", "DNSKEY")
dnskey = keys.find_rrset(keys.answer, root, 1, dns.rdatatype.DNSKEY)
sig = keys.find_rrset(keys.answer, root, 1, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
dns.dnssec.validate(dnskey, sig, {root: dnskey})
def check(sec, what):
    rrsets = [r for r in sec if r.rdtype != dns.rdatatype.RRSIG]
    assert rrsets, what
    for rrset in rrsets:
        sig = [r for r in sec if r.rdtype == dns.rdatatype.RRSIG and r.name == rrset.name and r.covers == rrset.rdtype][0]
        dns.dnssec.validate(rrset, sig, {root: dnskey})
for name, t in [("signed.example", "MX"), ("mx.signed.example", "A"), ("_25._tcp.mx.signed.example", "TLSA")]:
    check(ask(name, t).answer, name)
for name, t in [("mx.signed.example", "AAAA"), ("nothing.signed.example", "A"), ("plain.example", "DS")]:
    r = ask(name, t)
    assert r.rcode() == dns.rcode.NOERROR and not r.answer, (name, r)
    check(r.authority, name)
    nsec = [x for x in r.authority if x.rdtype == dns.rdatatype.NSEC][0]
    assert nsec.name == dns.name.from_text(name), nsec
    assert t not in nsec[0].to_text().split()[1:], nsec
r = ask("plain.example", "DS")
print("DS-NSEC", r.authority[0][0].to_text())
r = ask("mx.plain.example", "A")
assert r.answer and not any(x.rdtype == dns.rdatatype.RRSIG for x in r.answer), r
r = ask("bad.example", "MX")
try:
    check(r.answer, "bad")
    print("TAMPERED VALIDATES")
except dns.dnssec.ValidationFailure:
    print("tampered fails")
print("OK")
"#;
        // Not the crate's run_python: this file is also built into postern-bench. Every
        // query in the script times out after 5 s.
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(script)
            .args([dns.addr().ip().to_string(), dns.addr().port().to_string()])
            .output()
            .expect("run python3");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("tampered fails") && text.ends_with("OK\n"),
            "{text}"
        );
        assert!(
            text.contains("DS-NSEC \\000.plain.example. NS RRSIG NSEC"),
            "{text}"
        );
        assert!(dns.trust_anchor().starts_with(". 60 IN DNSKEY 257 3 13 "));
    }

    /// Only the queries matching a rule fail (with the DO bit when asked), the rest are
    /// answered; answer_again ends it.
    #[test]
    fn fails_chosen_queries_only() {
        let zone = Mutex::new(Zone::default());
        zone.lock()
            .unwrap()
            .records
            .push(("x.test".into(), Data::Mx(10, "mx.x.test".into())));
        let query = |qtype: u16, with_do: bool| {
            let mut q = vec![
                0x12,
                0x34,
                0x01,
                0x00,
                0,
                1,
                0,
                0,
                0,
                0,
                0,
                u8::from(with_do),
            ];
            put_name(&mut q, "x.test");
            q.extend_from_slice(&qtype.to_be_bytes());
            q.extend_from_slice(&[0, 1]);
            if with_do {
                // OPT: root, type 41, payload 1232, rcode/version 0, flags DO, no data.
                q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0x80, 0, 0, 0]);
            }
            q
        };
        zone.lock()
            .unwrap()
            .failing
            .push(("x.test".into(), MX, true, QueryFailure::Drop));
        assert!(answer(&query(MX, true), &zone).is_none(), "DO MX dropped");
        let r = answer(&query(MX, false), &zone).unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "plain MX answered");
        assert!(answer(&query(A, true), &zone).is_some(), "DO A answered");
        zone.lock().unwrap().failing = vec![("x.test".into(), MX, false, QueryFailure::ServFail)];
        for with_do in [true, false] {
            let r = answer(&query(MX, with_do), &zone).unwrap();
            assert_eq!(r[3] & 0x0f, 2, "SERVFAIL");
        }
        assert_eq!(zone.lock().unwrap().failed, 3);
        zone.lock().unwrap().failing.clear();
        let r = answer(&query(MX, true), &zone).unwrap();
        assert_eq!(r[3] & 0x0f, 0, "answered again");
    }

    #[test]
    fn drops_one_in_n() {
        let zone = Mutex::new(Zone {
            drop_one_in: 3,
            ..Zone::default()
        });
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        put_name(&mut q, "x.test");
        q.extend_from_slice(&[0, 1, 0, 1]);
        let answered: Vec<bool> = (0..6).map(|_| answer(&q, &zone).is_some()).collect();
        assert_eq!(answered, [true, true, false, true, true, false]);
        let z = zone.lock().unwrap();
        assert_eq!((z.seen, z.dropped), (6, 2));
    }
}
