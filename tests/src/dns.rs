//! A tiny authoritative DNS server on 127.0.0.1 (UDP) for test zones: A, AAAA, MX (null MX
//! included), TXT, TLSA, PTR and CNAME/SRV records (the last two only answered when asked for).
//! For DANE tests it can play a validating resolver: [`DnsServer::secure`] names get the AD
//! bit, [`DnsServer::bogus`] names SERVFAIL (nothing is signed). Unknown names get NXDOMAIN; known names without the asked
//! type get an empty NOERROR answer (NODATA). Enough for smtpd's MX routing and for
//! publishing DKIM keys; never talks to anything but its clients on loopback.
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
/// TTL and minimum of the SOA in negative answers (RFC 2308: the negative TTL).
const SOA_TTL: u32 = 300;

#[derive(Debug, Clone)]
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

    fn add(&self, name: &str, data: Data) -> &Self {
        self.zone
            .lock()
            .expect("zone lock")
            .records
            .push((norm(name), data));
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

    /// Answers about `name` (records or their absence) are DNSSEC-secure: the AD bit is set
    /// when the query has it. Stands in for a validating resolver; nothing is signed.
    pub fn secure(&self, name: &str) -> &Self {
        self.zone.lock().expect("zone lock").secure.push(norm(name));
        self
    }

    /// Queries about `name` get SERVFAIL, as a validating resolver answers bogus data.
    pub fn bogus(&self, name: &str) -> &Self {
        self.zone.lock().expect("zone lock").bogus.push(norm(name));
        self
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
    let soa = zone.soa;
    // AD when the query asks for it (RFC 6840 §5.7) and the name is secure.
    let ad = q[3] & 0x20 != 0 && zone.secure.contains(&name);
    if zone.servfail || zone.bogus.contains(&name) {
        let mut out = q[..12].to_vec();
        out[2] = 0x80 | (q[2] & 0x01);
        out[3] = 0x82; // RA, SERVFAIL
        out[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
        out.extend_from_slice(&q[12..i + 4]);
        return Some(out);
    }
    let known = zone.records.iter().any(|(n, _)| *n == name);
    let answers: Vec<Data> = zone
        .records
        .iter()
        .filter(|(n, d)| *n == name && d.rtype() == qtype)
        .map(|(_, d)| d.clone())
        .collect();
    drop(zone);

    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&q[0..2]);
    let rd = q[2] & 0x01;
    out.push(0x84 | rd); // QR, AA, RD as asked
    // RA, AD when secure; NOERROR or NXDOMAIN
    out.push(if known { 0x80 } else { 0x83 } | if ad { 0x20 } else { 0 });
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes());
    let negative_soa = soa && answers.is_empty();
    out.extend_from_slice(&[0, u8::from(negative_soa), 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(question);
    for d in answers {
        out.extend_from_slice(&[0xc0, 0x0c]); // the name in the question
        out.extend_from_slice(&d.rtype().to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&60u32.to_be_bytes());
        let mut rdata = Vec::new();
        match d {
            Data::A(ip) => rdata.extend_from_slice(&ip.octets()),
            Data::Aaaa(ip) => rdata.extend_from_slice(&ip.octets()),
            Data::Mx(pref, host) => {
                rdata.extend_from_slice(&pref.to_be_bytes());
                put_name(&mut rdata, &host);
            }
            Data::Txt(parts) => {
                for p in parts {
                    rdata.push(p.len() as u8);
                    rdata.extend_from_slice(&p);
                }
            }
            Data::Ptr(name) | Data::Cname(name) => put_name(&mut rdata, &name),
            Data::Srv(prio, weight, port, target) => {
                rdata.extend_from_slice(&prio.to_be_bytes());
                rdata.extend_from_slice(&weight.to_be_bytes());
                rdata.extend_from_slice(&port.to_be_bytes());
                put_name(&mut rdata, &target);
            }
            Data::Tlsa(usage, selector, matching, data) => {
                rdata.extend_from_slice(&[usage, selector, matching]);
                rdata.extend_from_slice(&data);
            }
        }
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    if negative_soa {
        // `zone. SOA ns.zone. hostmaster.zone. 1 3600 600 86400 300`, the zone being the
        // last two labels of the name asked for.
        let zone_name = labels[labels.len().saturating_sub(2)..].join(".");
        put_name(&mut out, &zone_name);
        out.extend_from_slice(&SOA.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&SOA_TTL.to_be_bytes());
        let mut rdata = Vec::new();
        put_name(&mut rdata, &format!("ns.{zone_name}"));
        put_name(&mut rdata, &format!("hostmaster.{zone_name}"));
        for v in [1u32, 3600, 600, 86400, SOA_TTL] {
            rdata.extend_from_slice(&v.to_be_bytes());
        }
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
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
