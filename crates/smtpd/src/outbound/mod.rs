//! Outbound SMTP: mail for other domains leaves here, to a `transports` host, the relayhost
//! (with AUTH over TLS) or the domain's MX hosts, in preference order with fallback.
//!
//! - [`route`]: which of those applies to a domain;
//! - [`mx`]: DNS (MX order, implicit MX, null MX, A/AAAA) through hickory-resolver;
//! - [`dane`]: DANE (RFC 7672): the MX and TLSA answers' DNSSEC status, the plan per MX host
//!   and the certificate check by TLSA records; [`sts`]: MTA-STS (RFC 8461);
//! - this module: connections (TLS policy, AUTH), their reuse for the next message to the
//!   same destination, the global and per-destination concurrency limits, and turning what
//!   happened into a result per recipient: delivered (2xx), deferred (4xx, or no server
//!   reached) or bounced (5xx; a domain whose every server refuses with 5xx, a null MX, a
//!   domain that does not exist).

pub(crate) mod dane;
pub(crate) mod mx;
pub(crate) mod route;
pub(crate) mod sts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use std::time::Instant;

use hickory_resolver::TokioResolver;
use postern_config::{Config, DaneMode, TlsPolicy};
use postern_dns::dane::HostDane;
use postern_queue::DeliveryReply;
use postern_smtp_client::tls::{CertCheck, connector, server_name};
use postern_smtp_client::{
    Client, ClientError, Flavor, Outgoing, RcptResult, ServerReply, Target, Timeouts,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

pub(crate) use route::Route;

/// Connections tried per destination and attempt (Postfix: `smtp_mx_address_limit` 5).
const MAX_CONNECTION_TRIES: usize = 5;
/// DANE verdicts kept (one per MX host and port), each for its TTL (at most 5 minutes).
const DANE_CACHE_HOSTS: usize = 1024;

/// What became of one recipient. A remote server's reply names the server
/// ([`DeliveryReply::remote_mta`]; the DSN's `Remote-MTA:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Accepted (2xx): the reply.
    Delivered(DeliveryReply),
    /// Try again later (4xx, or no server reached): why.
    Deferred(DeliveryReply),
    /// Refused for good (5xx): why.
    Bounced(DeliveryReply),
}

/// A server's reply as the queue keeps it.
pub(crate) fn delivery_reply(r: &ServerReply) -> DeliveryReply {
    DeliveryReply {
        code: Some(r.code),
        status: r.status(),
        text: r.text.clone(),
        remote_mta: None,
    }
}

/// A reply of ours (no server gave it).
fn ours(code: u16, status: (u8, u16, u16), text: String) -> DeliveryReply {
    DeliveryReply::new(code, status, text)
}

/// The server one connection reached.
#[derive(Debug, Clone)]
struct Peer {
    host: String,
    addr: SocketAddr,
}

impl Peer {
    fn label(&self) -> String {
        format!("{}[{}]:{}", self.host, self.addr.ip(), self.addr.port())
    }

    /// The server's reply, naming the server.
    fn reply(&self, r: &ServerReply) -> DeliveryReply {
        delivery_reply(r).from_remote(self.host.clone(), Some(self.addr.ip()))
    }
}

/// A connection that failed before a transaction could start.
struct Failure {
    reply: DeliveryReply,
    permanent: bool,
}

struct Pooled {
    client: Client,
    peer: Peer,
    at: Instant,
    /// The DANE result the connection was opened under (for the log line).
    dane: String,
}

/// The outbound side of the queue manager.
pub(crate) struct Outbound {
    config: Config,
    resolver: TokioResolver,
    any_cert: TlsConnector,
    webpki: TlsConnector,
    sts: sts::Sts,
    /// Where DANE's DNSSEC verdicts come from (`None`: DANE off).
    dnssec: Option<Arc<postern_dns::dane::Dnssec>>,
    /// Recent DANE verdicts per MX host and port.
    dane_cache: postern_dns::dane::VerdictCache,
    dns_timeout: Duration,
    timeouts: Timeouts,
    global: Arc<Semaphore>,
    per_destination: Mutex<HashMap<String, Arc<Semaphore>>>,
    pool: Mutex<HashMap<String, Vec<Pooled>>>,
}

impl Outbound {
    pub(crate) fn new(config: &Config) -> anyhow::Result<Self> {
        let s = &config.smtpd;
        let dnssec = match s.dane {
            DaneMode::Auto => postern_dns::dane::Dnssec::from_config(config)?,
            DaneMode::Off => None,
        };
        match (s.dane, &dnssec) {
            (DaneMode::Off, _) => info!("DANE: off ([smtpd] dane = \"off\")"),
            (DaneMode::Auto, None) => info!(
                "DANE: off (the name servers are not all on loopback: their AD bit is not trusted; [dns] dnssec = \"validate\" checks signatures here)"
            ),
            (DaneMode::Auto, Some(postern_dns::dane::Dnssec::Ad(servers))) => {
                info!(servers = ?servers, "DANE: on where their AD bit says DNSSEC-secure")
            }
            (DaneMode::Auto, Some(d)) => {
                info!("DANE: on where DNSSEC-secure, {}", d.describe())
            }
        }
        Ok(Self {
            config: config.clone(),
            resolver: mx::resolver(config)?,
            any_cert: connector(CertCheck::Any),
            webpki: connector(CertCheck::WebPki),
            sts: sts::Sts::new(config)?,
            dnssec: dnssec.map(Arc::new),
            dane_cache: postern_dns::dane::VerdictCache::new(DANE_CACHE_HOSTS),
            dns_timeout: config.dns.timeout_secs.duration(),
            timeouts: Timeouts {
                connect: s.outbound_connect_timeout_secs.duration(),
                greeting: s.outbound_greeting_timeout_secs.duration(),
                command: s.outbound_command_timeout_secs.duration(),
                data_block: s.outbound_data_timeout_secs.duration(),
                final_reply: s.outbound_final_timeout_secs.duration(),
            },
            global: Arc::new(Semaphore::new(s.outbound_concurrency.get())),
            per_destination: Mutex::new(HashMap::new()),
            pool: Mutex::new(HashMap::new()),
        })
    }

    /// Delivers `out` (whose recipients are all in `domain`) by `route`; one outcome per
    /// recipient, in order. Logs in the caller's span (the queue manager's `delivery{id=…}`).
    pub(crate) async fn deliver(
        &self,
        route: &Route,
        domain: &str,
        out: &Outgoing<'_>,
    ) -> Vec<Outcome> {
        let n = out.recipients.len();
        let secure_mx = match self.mx_dnssec(route).await {
            Ok(s) => s,
            Err(o) => return vec![o; n],
        };
        let mx_secure = secure_mx.is_some();
        let sts_policy = self.sts_policy(route).await;
        let enforce = sts_policy
            .as_ref()
            .is_some_and(|p| p.mode == sts::Mode::Enforce);
        // Connections opened under an enforced policy, or to DNSSEC-secure MX hosts (DANE),
        // are pooled apart from others.
        let mut key = if enforce {
            format!("{}:mta-sts", route.key())
        } else {
            route.key()
        };
        if mx_secure {
            key.push_str(":dnssec");
        }
        let _permits = self.permits(&key).await;
        let policy = if enforce {
            TlsPolicy::Verify
        } else {
            route.tls_policy(&self.config, domain)
        };
        if let Some(outcomes) = self.send_on_pooled(&key, out).await {
            return outcomes;
        }
        let (hosts, port) = match self.hosts(route).await {
            Ok(h) => h,
            Err(o) => return vec![o; n],
        };
        let (hosts, dane) = match &secure_mx {
            Some(names) => match dane::validated_hosts(domain, names, hosts) {
                Ok(h) => {
                    let dane = self.tlsa_for(&h, port).await;
                    (h, dane)
                }
                Err(o) => return vec![o; n],
            },
            None => (hosts, HashMap::new()),
        };
        let hosts = match sts_policy {
            Some(p) => match dane::with_sts(&p, enforce, domain, hosts, &dane) {
                Ok(h) => h,
                Err(o) => return vec![o; n],
            },
            None => hosts,
        };
        let how = Connection {
            route,
            domain,
            policy,
            sts: enforce,
            key: &key,
            dane: &dane,
            dane_applies: mx_secure,
        };
        self.send_to_hosts(&hosts, port, &how, out).await
    }

    /// The MTA-STS policy for MX delivery (not when `tls_policy` names the domain, nor a
    /// policy of mode `none`).
    async fn sts_policy(&self, route: &Route) -> Option<sts::Policy> {
        match route {
            Route::Mx { domain }
                if self.config.smtpd.mta_sts
                    && self.config.explicit_tls_policy(domain).is_none() =>
            {
                self.sts
                    .policy(&self.resolver, domain)
                    .await
                    .filter(|p| p.mode != sts::Mode::None)
            }
            _ => None,
        }
    }

    /// The transaction on a connection left open by an earlier message to the same place;
    /// `None` when there is none or it failed (a new one is opened then).
    async fn send_on_pooled(&self, key: &str, out: &Outgoing<'_>) -> Option<Vec<Outcome>> {
        let mut p = self.take_pooled(key)?;
        match p.client.send(out).await {
            Ok(results) => {
                debug!(relay = %p.peer.label(), "reused a cached connection");
                let outcomes = outcomes(&results, &p.peer);
                self.log(&p.peer, p.client.tls(), &p.dane, out, &outcomes);
                self.give_back(key, p.client, p.peer, p.dane);
                Some(outcomes)
            }
            Err(e) => {
                debug!(error = %e, "cached connection failed; opening a new one");
                None
            }
        }
    }

    /// The hosts to try for `route`, in order, and their port; `Err`: the outcome for every
    /// recipient (a null MX or a domain that does not exist bounces, DNS trouble defers).
    async fn hosts(&self, route: &Route) -> Result<(Vec<mx::Host>, u16), Outcome> {
        match route {
            Route::Mx { domain } => {
                match mx::lookup(&self.resolver, domain, &self.config.hostname).await {
                    mx::Answer::Hosts(h) => Ok((h, self.config.smtpd.outbound_port)),
                    mx::Answer::NullMx => Err(Outcome::Bounced(ours(
                        556,
                        (5, 1, 10),
                        format!(
                            "recipient domain {domain} has a null MX (RFC 7505): it accepts no mail"
                        ),
                    ))),
                    mx::Answer::NoSuchDomain(why) => {
                        Err(Outcome::Bounced(ours(550, (5, 1, 2), why)))
                    }
                    mx::Answer::TempFail(why) => Err(Outcome::Deferred(ours(451, (4, 4, 3), why))),
                }
            }
            Route::Fixed { host, port } | Route::Relay { host, port } => {
                match mx::addresses(&self.resolver, host).await {
                    Ok(addrs) if !addrs.is_empty() => Ok((
                        vec![mx::Host {
                            name: host.clone(),
                            addrs,
                        }],
                        *port,
                    )),
                    Ok(_) => Err(Outcome::Deferred(ours(
                        451,
                        (4, 4, 4),
                        format!("host {host} has no address"),
                    ))),
                    Err(why) => Err(Outcome::Deferred(ours(451, (4, 4, 3), why))),
                }
            }
            Route::Lmtp(_) => Err(Outcome::Deferred(ours(
                451,
                (4, 3, 5),
                "internal error: LMTP route given to the SMTP client".into(),
            ))),
        }
    }

    /// Tries the hosts in order (at most [`MAX_CONNECTION_TRIES`] connections); the first
    /// that takes a transaction gives the outcomes. None usable: deferred, or bounced when
    /// every one refused for good.
    async fn send_to_hosts(
        &self,
        hosts: &[mx::Host],
        port: u16,
        how: &Connection<'_>,
        out: &Outgoing<'_>,
    ) -> Vec<Outcome> {
        let all = |o: Outcome| vec![o; out.recipients.len()];
        let mut tried = 0;
        let mut all_permanent = true;
        let mut last = ours(451, (4, 4, 1), "no server tried".into());
        let mut peers = Vec::new();
        for host in hosts {
            for &ip in &host.addrs {
                peers.push(Peer {
                    host: host.name.clone(),
                    addr: SocketAddr::new(ip, port),
                });
            }
        }
        peers.truncate(MAX_CONNECTION_TRIES);
        for peer in peers {
            tried += 1;
            let dane::Plan {
                policy,
                sts,
                verifier,
                label: mut dane,
            } = match self.plan(how, &peer.host) {
                Ok(p) => p,
                Err(why) => {
                    info!(relay = %peer.label(), dane = %format!("temperror ({why})"), "server not usable; trying the next");
                    all_permanent = false;
                    last = ours(451, (4, 7, 5), why);
                    continue;
                }
            };
            let mut client = match self
                .open(&peer, how.route, how.domain, policy, sts, verifier.as_ref())
                .await
            {
                Ok(c) => c,
                Err(f) => {
                    if verifier.is_some() {
                        info!(relay = %peer.label(), dane = %format!("fail ({})", f.reply), "server not usable; trying the next");
                    } else {
                        info!(relay = %peer.label(), reason = %f.reply, "server not usable; trying the next");
                    }
                    all_permanent &= f.permanent;
                    last = f.reply;
                    continue;
                }
            };
            if let Some(v) = &verifier {
                dane = format!("pass ({})", v.matched().unwrap_or_default());
            }
            let outcomes = match client.send(out).await {
                Ok(results) => outcomes(&results, &peer),
                Err(ClientError::Rejected(reply)) => {
                    if reply.is_permanent() {
                        all(Outcome::Bounced(peer.reply(&reply)))
                    } else {
                        all(Outcome::Deferred(peer.reply(&reply)))
                    }
                }
                Err(e) => all(Outcome::Deferred(ours(
                    451,
                    (4, 4, 2),
                    format!("lost connection with {}: {e}", peer.label()),
                ))),
            };
            self.log(&peer, client.tls(), &dane, out, &outcomes);
            self.give_back(how.key, client, peer, dane);
            return outcomes;
        }
        if tried > 0 && all_permanent {
            all(Outcome::Bounced(last))
        } else {
            all(Outcome::Deferred(last))
        }
    }

    /// Connects to `peer`, then STARTTLS by `policy` and AUTH for the relayhost. With `dane`,
    /// TLS is mandatory and the certificate is checked by its TLSA records only.
    async fn open(
        &self,
        peer: &Peer,
        route: &Route,
        domain: &str,
        policy: TlsPolicy,
        sts: bool,
        dane: Option<&Arc<dane::DaneVerifier>>,
    ) -> Result<Client, Failure> {
        let temp = |reply: DeliveryReply| Failure {
            reply,
            permanent: false,
        };
        let target = Target::Tcp(peer.addr.to_string());
        let mut client =
            Client::connect(&target, Flavor::Smtp, &self.config.hostname, self.timeouts)
                .await
                .map_err(|e| match e {
                    ClientError::Rejected(r) => Failure {
                        reply: peer.reply(&r),
                        permanent: r.is_permanent(),
                    },
                    ClientError::Connect(e) => temp(ours(
                        451,
                        (4, 4, 1),
                        format!("connect to {}: {e}", peer.label()),
                    )),
                    e => temp(ours(451, (4, 4, 2), format!("{}: {e}", peer.label()))),
                })?;
        let offered = client.capabilities().starttls;
        match policy {
            TlsPolicy::None => {}
            TlsPolicy::May if !offered => {}
            TlsPolicy::Encrypt | TlsPolicy::Verify if !offered => {
                drop(client.quit().await);
                return Err(temp(ours(
                    451,
                    (4, 7, 5),
                    format!(
                        "TLS is required for {domain} but {} does not offer STARTTLS",
                        peer.label()
                    ),
                )));
            }
            _ if dane.is_some() => {
                let verifier = dane.expect("checked");
                let name = server_name(&peer.host).ok_or_else(|| {
                    temp(ours(
                        451,
                        (4, 7, 5),
                        format!("{} is not a usable TLS server name", peer.host),
                    ))
                })?;
                if let Err(e) = client.starttls(&verifier.connector(), name).await {
                    // Never plain text after this (RFC 7672 §2.2): the message waits.
                    return Err(temp(ours(
                        451,
                        (4, 7, 5),
                        format!(
                            "TLS with {} failed (DANE: TLSA records for {} are published): {e}",
                            peer.label(),
                            peer.host
                        ),
                    )));
                }
            }
            _ => {
                let (conn, check) = if sts {
                    (self.sts.connector(), CertCheck::WebPki)
                } else if policy == TlsPolicy::Verify {
                    (&self.webpki, CertCheck::WebPki)
                } else {
                    (&self.any_cert, CertCheck::Any)
                };
                let name = match check {
                    CertCheck::WebPki => server_name(&peer.host),
                    CertCheck::Any => {
                        server_name(&peer.host).or_else(|| server_name(&peer.addr.ip().to_string()))
                    }
                }
                .ok_or_else(|| {
                    temp(ours(
                        451,
                        (4, 7, 5),
                        format!("{} is not a usable TLS server name", peer.host),
                    ))
                })?;
                match client.starttls(conn, name).await {
                    Ok(()) => {}
                    Err(ClientError::Rejected(r)) if policy == TlsPolicy::May => {
                        debug!(relay = %peer.label(), reply = %r, "STARTTLS refused; going on in plain text");
                    }
                    Err(e) if policy == TlsPolicy::May => {
                        // The handshake broke the connection: once more without TLS.
                        info!(relay = %peer.label(), error = %e, "TLS failed; retrying in plain text");
                        return Box::pin(self.open(
                            peer,
                            route,
                            domain,
                            TlsPolicy::None,
                            false,
                            None,
                        ))
                        .await;
                    }
                    Err(e) => {
                        let why = if sts {
                            "MTA-STS policy".to_owned()
                        } else {
                            format!("{policy:?} policy")
                        };
                        return Err(temp(ours(
                            451,
                            (4, 7, 5),
                            format!("TLS with {} failed ({why} for {domain}): {e}", peer.label()),
                        )));
                    }
                }
            }
        }
        if let Route::Relay { .. } = route
            && let Some(user) = &self.config.smtpd.relayhost_auth_user
        {
            if client.tls().is_none() && policy != TlsPolicy::None {
                drop(client.quit().await);
                return Err(temp(ours(
                    451,
                    (4, 7, 0),
                    format!(
                        "not sending the relayhost password to {} without TLS",
                        peer.label()
                    ),
                )));
            }
            let password = self.relay_password().map_err(temp)?;
            if let Err(e) = client.auth(user, &password).await {
                let text = match e {
                    ClientError::Rejected(r) => format!(
                        "AUTH as {user} refused by {}: {}",
                        peer.label(),
                        delivery_reply(&r)
                    ),
                    e => format!("AUTH with {} failed: {e}", peer.label()),
                };
                drop(client.quit().await);
                return Err(temp(ours(451, (4, 7, 0), text)));
            }
        }
        Ok(client)
    }

    fn relay_password(&self) -> Result<String, DeliveryReply> {
        let Some(file) = &self.config.smtpd.relayhost_password_file else {
            return Err(ours(
                451,
                (4, 3, 5),
                "relayhost_password_file is not set".into(),
            ));
        };
        let path = self.config.resolve(file);
        std::fs::read_to_string(&path)
            .map(|t| t.lines().next().unwrap_or("").to_owned())
            .map_err(|e| {
                ours(
                    451,
                    (4, 3, 5),
                    format!("cannot read {}: {e}", path.display()),
                )
            })
    }

    /// A global and a per-destination permit, held for the delivery.
    async fn permits(
        &self,
        key: &str,
    ) -> (Option<OwnedSemaphorePermit>, Option<OwnedSemaphorePermit>) {
        let dest = {
            let mut m = self
                .per_destination
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if m.len() > 10_000 {
                m.retain(|_, s| Arc::strong_count(s) > 1);
            }
            m.entry(key.to_owned())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(
                        self.config.smtpd.outbound_destination_concurrency.get(),
                    ))
                })
                .clone()
        };
        let d = dest.acquire_owned().await.ok();
        let g = self.global.clone().acquire_owned().await.ok();
        (d, g)
    }

    fn take_pooled(&self, key: &str) -> Option<Pooled> {
        let idle = self.config.smtpd.outbound_connection_cache_secs.duration();
        let mut pool = self.pool.lock().ok()?;
        let list = pool.get_mut(key)?;
        while let Some(p) = list.pop() {
            if p.at.elapsed() < idle && p.client.is_usable() {
                return Some(p);
            }
            tokio::spawn(async move { drop(p.client.quit().await) });
        }
        None
    }

    fn give_back(&self, key: &str, client: Client, peer: Peer, dane: String) {
        let keep =
            !self.config.smtpd.outbound_connection_cache_secs.is_zero() && client.is_usable();
        if keep && let Ok(mut pool) = self.pool.lock() {
            let list = pool.entry(key.to_owned()).or_default();
            if list.len() < self.config.smtpd.outbound_destination_concurrency.get() {
                list.push(Pooled {
                    client,
                    peer,
                    at: Instant::now(),
                    dane,
                });
                return;
            }
        }
        tokio::spawn(async move { drop(client.quit().await) });
    }

    /// Closes idle connections past their time (called now and then by the manager).
    pub(crate) fn expire_idle(&self) {
        let idle = self.config.smtpd.outbound_connection_cache_secs.duration();
        let Ok(mut pool) = self.pool.lock() else {
            return;
        };
        for list in pool.values_mut() {
            let (stale, fresh): (Vec<Pooled>, Vec<Pooled>) = list
                .drain(..)
                .partition(|p| p.at.elapsed() >= idle || !p.client.is_usable());
            *list = fresh;
            for p in stale {
                tokio::spawn(async move { drop(p.client.quit().await) });
            }
        }
        pool.retain(|_, l| !l.is_empty());
    }

    /// One line per recipient; `dane` is the DANE result in the manner of
    /// Authentication-Results (`pass (TLSA 3 1 1 …)`, `none (insecure MX)`, …).
    fn log(
        &self,
        peer: &Peer,
        tls: Option<&str>,
        dane: &str,
        out: &Outgoing<'_>,
        outcomes: &[Outcome],
    ) {
        crate::metrics::outbound(tls.is_some(), outcomes.len());
        for (r, o) in out.recipients.iter().zip(outcomes) {
            let (status, text) = match o {
                Outcome::Delivered(r) => ("sent", r),
                Outcome::Deferred(r) => ("deferred", r),
                Outcome::Bounced(r) => ("bounced", r),
            };
            info!(rcpt = %r.address, relay = %peer.label(), tls = tls.unwrap_or("none"), dane = %dane, status, reply = %text, "outbound");
        }
    }
}

/// How connections for one delivery are made.
pub(crate) struct Connection<'a> {
    route: &'a Route,
    domain: &'a str,
    policy: TlsPolicy,
    /// Under an enforced MTA-STS policy.
    sts: bool,
    /// The pool key for connections left open.
    key: &'a str,
    /// DANE per MX host name (empty when the MX answer was not DNSSEC-secure).
    dane: &'a HashMap<String, HostDane>,
    /// The MX answer was DNSSEC-secure (TLSA records were looked up).
    dane_applies: bool,
}

/// The MX hosts an MTA-STS policy lets us use: under `enforce` only those it names (none
/// named: the message is deferred), in `testing` mode all, those it names first.
fn sts_hosts(
    p: &sts::Policy,
    enforce: bool,
    domain: &str,
    hosts: Vec<mx::Host>,
) -> Result<Vec<mx::Host>, Outcome> {
    let (matching, other): (Vec<mx::Host>, Vec<mx::Host>) =
        hosts.into_iter().partition(|h| p.matches(&h.name));
    for h in &other {
        if enforce {
            info!(%domain, mx = %h.name, patterns = ?p.mx, "MTA-STS: MX host not named by the policy; skipped");
        } else {
            warn!(%domain, mx = %h.name, patterns = ?p.mx, "MTA-STS testing: MX host not named by the policy (enforce would skip it)");
        }
    }
    if !enforce {
        return Ok(matching.into_iter().chain(other).collect());
    }
    if matching.is_empty() {
        let names: Vec<&str> = other.iter().map(|h| h.name.as_str()).collect();
        return Err(Outcome::Deferred(ours(
            451,
            (4, 7, 5),
            format!(
                "MTA-STS policy of {domain}: none of its MX hosts ({}) is named by the policy",
                names.join(", ")
            ),
        )));
    }
    Ok(matching)
}

/// One outcome per result, naming the server.
fn outcomes(results: &[RcptResult], peer: &Peer) -> Vec<Outcome> {
    results
        .iter()
        .map(|r| {
            let reply = peer.reply(&r.reply);
            if r.reply.is_positive() {
                Outcome::Delivered(reply)
            } else if r.reply.is_permanent() {
                Outcome::Bounced(reply)
            } else {
                Outcome::Deferred(reply)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_name_the_remote_server() {
        let peer = Peer {
            host: "mx1.example.net".into(),
            addr: "192.0.2.7:25".parse().unwrap(),
        };
        let results = vec![
            RcptResult {
                address: "a@x".into(),
                reply: ServerReply::new(250, Some((2, 0, 0)), "ok"),
            },
            RcptResult {
                address: "b@x".into(),
                reply: ServerReply::new(450, Some((4, 2, 0)), "later"),
            },
            RcptResult {
                address: "c@x".into(),
                reply: ServerReply::new(550, Some((5, 1, 1)), "unknown"),
            },
        ];
        let o = outcomes(&results, &peer);
        assert!(
            matches!(&o[0], Outcome::Delivered(t) if t.to_string().starts_with("250 2.0.0 ok"))
        );
        assert!(
            matches!(&o[1], Outcome::Deferred(t) if t.to_string().starts_with("450 4.2.0 later"))
        );
        let Outcome::Bounced(r) = &o[2] else {
            panic!("{o:?}")
        };
        assert_eq!(
            r.to_string(),
            "550 5.1.1 unknown (remote-mta mx1.example.net[192.0.2.7])"
        );
        assert_eq!(r.diagnostic(), "550 5.1.1 unknown");
        let mta = r.remote_mta.as_ref().unwrap();
        assert_eq!(
            (mta.host.as_str(), mta.ip),
            ("mx1.example.net", Some("192.0.2.7".parse().unwrap()))
        );
    }
}
