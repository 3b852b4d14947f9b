//! DANE for outbound SMTP (RFC 7672): which MX hosts have usable TLSA records (the DNS side
//! is `postern_dns::dane`: DNSSEC validated in-process or a loopback resolver's AD bit, by
//! `[dns] dnssec`; a host's TLSA records count only with secure addresses, §2.2.2; verdicts
//! cached per host for their TTL), and a TLS certificate check by those records.
//!
//! - DANE-EE (3): the server's own certificate matches; no name, date or chain check
//!   (RFC 7672 §3.2.1).
//! - DANE-TA (2): a certificate of the chain the server sent matches; the chain is then
//!   checked from it as the only trust anchor, with the MX host name (§3.2.2).
//! - PKIX-TA/EE (0/1) are unusable for SMTP (§3.1.3) and never reach here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use postern_config::TlsPolicy;
use postern_dns::dane::{HostDane, MxDane, Tlsa};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;
use tracing::warn;

use super::{Connection, Outbound, Outcome, Route, mx, ours, sts, sts_hosts};

/// How one connection to an MX host is made, by DANE's verdict on the host.
pub(crate) struct Plan {
    pub(crate) policy: TlsPolicy,
    /// Under an enforced MTA-STS policy.
    pub(crate) sts: bool,
    /// The TLSA check (usable records: TLS mandatory, certificate checked by them only).
    pub(crate) verifier: Option<Arc<DaneVerifier>>,
    /// The DANE result for the log (`none (…)`; `pass (…)` is known after the handshake).
    pub(crate) label: String,
}

impl Outbound {
    /// Whether DANE looks at this delivery's MX hosts: MX delivery, `[smtpd] dane` on with a
    /// DNSSEC source (`[dns] dnssec`), no `tls_policy` entry for the domain, and a
    /// DNSSEC-secure MX answer (RFC 7672 §2.2.1; a secure "no MX" covers the implicit MX).
    /// `Ok(Some(names))`: secure, the MX host names of the validated answer; `Ok(None)`: DANE
    /// does not apply (off, or the answer is proven insecure). `Err`: neither proven secure
    /// nor proven insecure ([`postern_dns::dane::mx_dane`]): a bogus answer, or none at all
    /// (time-out, SERVFAIL, network error). The message waits (4.7.5): someone who can drop
    /// only the DNSSEC queries does not turn DANE off.
    pub(crate) async fn mx_dnssec(&self, route: &Route) -> Result<Option<Vec<String>>, Outcome> {
        let Route::Mx { domain } = route else {
            return Ok(None);
        };
        let Some(dnssec) = self.dnssec.as_ref().filter(|_| self.dane_on(route)) else {
            return Ok(None);
        };
        let answer = dnssec
            .lookup(
                domain,
                hickory_resolver::proto::rr::RecordType::MX,
                self.dns_timeout,
            )
            .await;
        match postern_dns::dane::mx_dane(answer) {
            MxDane::Secure(names) => Ok(Some(names)),
            MxDane::Insecure => Ok(None),
            MxDane::Defer(e) if e.is_bogus() => {
                let hint = if dnssec.root_validates(self.dns_timeout).await {
                    ""
                } else {
                    " (the root zone's keys do not validate either: do the [dns] name servers pass DNSSEC records along? see [dns] dnssec)"
                };
                Err(Outcome::Deferred(ours(
                    451,
                    (4, 7, 5),
                    format!("DANE: no validated MX answer for {domain}: {e}{hint}"),
                )))
            }
            MxDane::Defer(e) => {
                warn!(%domain, reason = %e, "DANE: DNSSEC status of the MX unknown; deferred");
                Err(Outcome::Deferred(ours(
                    451,
                    (4, 7, 5),
                    format!(
                        "DANE: DNSSEC status of the MX records of {domain} unknown (no answer: {e}); not sent without it"
                    ),
                )))
            }
        }
    }

    /// Whether DANE may apply to `route`: MX delivery, `[smtpd] dane` on with a DNSSEC
    /// source, and no `tls_policy` entry for the domain.
    pub(crate) fn dane_on(&self, route: &Route) -> bool {
        matches!(route, Route::Mx { domain }
            if self.dnssec.is_some() && self.config.explicit_tls_policy(domain).is_none())
    }

    /// What DANE says about each host (by name): its address records must be secure, then
    /// its `_PORT._tcp` TLSA records decide ([`postern_dns::dane::host_lookup`]). Recent
    /// verdicts come from the cache; the other hosts are looked up at once (a slow one
    /// costs one DNS timeout, not one per host).
    pub(crate) async fn tlsa_for(
        &self,
        hosts: &[mx::Host],
        port: u16,
    ) -> HashMap<String, HostDane> {
        let mut map = HashMap::new();
        let Some(dnssec) = &self.dnssec else {
            return map;
        };
        let now = std::time::Instant::now();
        let mut lookups = tokio::task::JoinSet::new();
        for h in hosts {
            if let Some(v) = self.dane_cache.get(&format!("{}:{port}", h.name), now) {
                map.insert(h.name.clone(), v);
                continue;
            }
            let (dnssec, timeout, name) = (dnssec.clone(), self.dns_timeout, h.name.clone());
            lookups.spawn(async move {
                let (verdict, ttl) =
                    postern_dns::dane::host_lookup(&dnssec, &name, port, timeout).await;
                (name, verdict, ttl)
            });
        }
        while let Some(done) = lookups.join_next().await {
            if let Ok((name, dane, ttl)) = done {
                self.dane_cache
                    .put(format!("{name}:{port}"), dane.clone(), ttl, now);
                map.insert(name, dane);
            }
        }
        // A lookup that panicked leaves its host without an entry: not used under DANE.
        for h in hosts {
            map.entry(h.name.clone())
                .or_insert_with(|| HostDane::Failed("TLSA lookup did not finish".into()));
        }
        map
    }

    /// The [`Plan`] for `host`; `Err`: the host is not used now (its TLSA lookup failed).
    pub(crate) fn plan(&self, how: &Connection<'_>, host: &str) -> Result<Plan, String> {
        let plain = |label: String| Plan {
            policy: how.policy,
            sts: how.sts,
            verifier: None,
            label,
        };
        Ok(match how.dane.get(host) {
            Some(HostDane::Failed(why)) => {
                return Err(format!("DANE: no usable DNSSEC answer for {host}: {why}"));
            }
            Some(HostDane::Usable(tlsa)) => Plan {
                policy: TlsPolicy::Verify,
                sts: false,
                verifier: Some(DaneVerifier::new(tlsa.clone())),
                label: String::new(),
            },
            Some(HostDane::Unusable(t)) => Plan {
                policy: TlsPolicy::Encrypt,
                sts: false,
                verifier: None,
                label: format!(
                    "none (TLSA {} unusable: TLS required, not authenticated)",
                    t[0].short()
                ),
            },
            Some(HostDane::Insecure(why)) => plain(format!("none ({why})")),
            None if how.dane_applies => plain("none (no TLSA)".into()),
            None if self.dane_on(how.route) => plain("none (insecure MX)".into()),
            None => plain("none (off)".into()),
        })
    }
}

/// The MX hosts (from the usual, unvalidated MX lookup) that the validated MX answer names
/// (`names`; empty: the implicit MX, `domain` itself). The others are dropped: a forged
/// unvalidated answer must not steer DANE to hosts of someone else's choosing, whose own
/// signed TLSA records would then "pass". None left: deferred (4.7.5).
pub(crate) fn validated_hosts(
    domain: &str,
    names: &[String],
    hosts: Vec<mx::Host>,
) -> Result<Vec<mx::Host>, Outcome> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let named = |h: &mx::Host| {
        let n = h.name.trim_end_matches('.').to_ascii_lowercase();
        if names.is_empty() {
            n == domain
        } else {
            names.contains(&n)
        }
    };
    let (kept, dropped): (Vec<mx::Host>, Vec<mx::Host>) = hosts.into_iter().partition(named);
    for h in &dropped {
        warn!(%domain, mx = %h.name, validated = ?names, "DANE: MX host not in the validated MX answer; skipped");
    }
    if kept.is_empty() {
        let found: Vec<&str> = dropped.iter().map(|h| h.name.as_str()).collect();
        return Err(Outcome::Deferred(ours(
            451,
            (4, 7, 5),
            format!(
                "DANE: the MX hosts found for {domain} ({}) are not those of its validated MX answer ({})",
                found.join(", "),
                if names.is_empty() {
                    domain.clone()
                } else {
                    names.join(", ")
                }
            ),
        )));
    }
    Ok(kept)
}

/// The hosts an MTA-STS policy lets us use ([`sts_hosts`]), where hosts with TLSA records
/// are DANE's (RFC 8461 §2: DANE wins), kept in MX order whatever the policy says.
pub(crate) fn with_sts(
    p: &sts::Policy,
    enforce: bool,
    domain: &str,
    hosts: Vec<mx::Host>,
    dane: &HashMap<String, HostDane>,
) -> Result<Vec<mx::Host>, Outcome> {
    let daned = |h: &mx::Host| {
        matches!(
            dane.get(&h.name),
            Some(HostDane::Usable(_) | HostDane::Unusable(_))
        )
    };
    if !hosts.iter().any(daned) {
        return sts_hosts(p, enforce, domain, hosts);
    }
    let others: Vec<mx::Host> = hosts.iter().filter(|h| !daned(h)).cloned().collect();
    let allowed: Vec<String> = sts_hosts(p, enforce, domain, others)
        .map(|v| v.into_iter().map(|h| h.name).collect())
        .unwrap_or_default();
    Ok(hosts
        .into_iter()
        .filter(|h| daned(h) || allowed.contains(&h.name))
        .collect())
}

/// Checks a server's certificate chain against usable TLSA records; remembers which one
/// matched (for the log line).
#[derive(Debug)]
pub(crate) struct DaneVerifier {
    tlsa: Vec<Tlsa>,
    provider: Arc<CryptoProvider>,
    matched: Mutex<Option<String>>,
}

impl DaneVerifier {
    pub(crate) fn new(tlsa: Vec<Tlsa>) -> Arc<Self> {
        Arc::new(Self {
            tlsa,
            provider: Arc::new(ring::default_provider()),
            matched: Mutex::new(None),
        })
    }

    /// `TLSA 3 1 1 ab12…` of the record that matched, once the handshake passed.
    pub(crate) fn matched(&self) -> Option<String> {
        self.matched.lock().ok().and_then(|m| m.clone())
    }

    /// A connector that checks certificates with `self`.
    pub(crate) fn connector(self: &Arc<Self>) -> TlsConnector {
        let config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }

    /// The record `end_entity` + `intermediates` match, by the rules above; `Err`: why not.
    pub(crate) fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Result<&Tlsa, String> {
        if let Some(t) = self
            .tlsa
            .iter()
            .find(|t| t.usage == 3 && t.matches(end_entity))
        {
            return Ok(t);
        }
        let mut last = "no TLSA record matches the server's certificate".to_owned();
        for t in self.tlsa.iter().filter(|t| t.usage == 2) {
            for (i, ta) in intermediates.iter().enumerate() {
                if !t.matches(ta) {
                    continue;
                }
                let mut roots = RootCertStore::empty();
                if let Err(e) = roots.add(ta.clone()) {
                    last = format!("TLSA {} matches an unusable trust anchor: {e}", t.short());
                    continue;
                }
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    self.provider.clone(),
                )
                .build()
                .map_err(|e| e.to_string())?;
                // The chain up to (not including) the trust anchor.
                match verifier.verify_server_cert(
                    end_entity,
                    &intermediates[..i],
                    server_name,
                    &[],
                    now,
                ) {
                    Ok(_) => return Ok(t),
                    Err(e) => {
                        last = format!("TLSA {} matches, but the chain fails: {e}", t.short());
                    }
                }
            }
        }
        Err(last)
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.check(end_entity, intermediates, server_name, now) {
            Ok(t) => {
                if let Ok(mut m) = self.matched.lock() {
                    *m = Some(format!("TLSA {}", t.short()));
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(why) => Err(rustls::Error::General(format!("DANE: {why}"))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn host(name: &str) -> mx::Host {
        mx::Host {
            name: name.into(),
            addrs: vec!["192.0.2.1".parse().unwrap()],
        }
    }

    fn names(r: &Result<Vec<mx::Host>, Outcome>) -> Vec<String> {
        r.as_ref().unwrap().iter().map(|h| h.name.clone()).collect()
    }

    /// RFC 8461 §2: an MX host with TLSA records is DANE's, whatever MTA-STS says; the
    /// others keep the MTA-STS rules.
    #[test]
    fn dane_wins_over_mta_sts_host_by_host() {
        let tlsa = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: vec![0; 32],
        };
        let policy = |mode, mx: &[&str]| sts::Policy {
            mode,
            mx: mx.iter().map(|s| (*s).to_owned()).collect(),
            max_age: 86400,
        };
        let hosts = || vec![host("mx1.example.net"), host("mx2.example.net")];
        let mut dane = HashMap::new();
        let enforce_mx1 = policy(sts::Mode::Enforce, &["mx1.example.net"]);
        let enforce_none = policy(sts::Mode::Enforce, &["elsewhere.example"]);
        // No DANE: MTA-STS alone.
        let r = with_sts(&enforce_mx1, true, "example.net", hosts(), &dane);
        assert_eq!(names(&r), ["mx1.example.net"]);
        assert!(with_sts(&enforce_none, true, "example.net", hosts(), &dane).is_err());
        // mx2 has usable TLSA records: kept, in MX order, even where the policy names none.
        dane.insert(
            "mx2.example.net".to_owned(),
            HostDane::Usable(vec![tlsa.clone()]),
        );
        let r = with_sts(&enforce_mx1, true, "example.net", hosts(), &dane);
        assert_eq!(names(&r), ["mx1.example.net", "mx2.example.net"]);
        let r = with_sts(&enforce_none, true, "example.net", hosts(), &dane);
        assert_eq!(names(&r), ["mx2.example.net"]);
        // Unusable TLSA records count as DANE's too (TLS required there); insecure do not.
        dane.insert("mx2.example.net".to_owned(), HostDane::Unusable(vec![tlsa]));
        let r = with_sts(&enforce_none, true, "example.net", hosts(), &dane);
        assert_eq!(names(&r), ["mx2.example.net"]);
        dane.insert(
            "mx2.example.net".to_owned(),
            HostDane::Insecure("insecure TLSA"),
        );
        let r = with_sts(&enforce_mx1, true, "example.net", hosts(), &dane);
        assert_eq!(names(&r), ["mx1.example.net"]);
    }

    /// Only the hosts of the validated MX answer are used under DANE; a forged unvalidated
    /// answer naming others defers.
    #[test]
    fn only_hosts_of_the_validated_mx_answer() {
        let hosts = || vec![host("mx1.example.net"), host("evil.example")];
        let validated = vec!["mx1.example.net".to_owned(), "mx2.example.net".to_owned()];
        let r = validated_hosts("example.net", &validated, hosts());
        assert_eq!(names(&r), ["mx1.example.net"]);
        let r = validated_hosts("example.net", &validated, vec![host("evil.example")]);
        assert!(
            matches!(&r, Err(Outcome::Deferred(d)) if d.to_string().contains("4.7.5") && d.to_string().contains("evil.example")),
            "{r:?}"
        );
        // A secure "no MX": only the domain itself (the implicit MX), any case.
        let r = validated_hosts(
            "Example.NET.",
            &[],
            vec![host("example.net"), host("evil.example")],
        );
        assert_eq!(names(&r), ["example.net"]);
    }

    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, PublicKeyData,
    };

    fn sha256(b: &[u8]) -> Vec<u8> {
        ring_digest(b)
    }

    fn ring_digest(b: &[u8]) -> Vec<u8> {
        ::ring::digest::digest(&::ring::digest::SHA256, b)
            .as_ref()
            .to_vec()
    }

    fn tlsa(usage: u8, selector: u8, matching: u8, data: Vec<u8>) -> Tlsa {
        Tlsa {
            usage,
            selector,
            matching,
            data,
        }
    }

    fn name(n: &str) -> ServerName<'static> {
        ServerName::try_from(n.to_owned()).unwrap()
    }

    /// A CA and a leaf for `host` it signed: (ca der, ca spki, leaf der).
    fn chain(host: &str) -> (CertificateDer<'static>, Vec<u8>, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Test DANE CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, &ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec![host.to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        (
            ca.der().clone(),
            ca_key.subject_public_key_info(),
            leaf.der().clone(),
        )
    }

    #[test]
    fn dane_ee_matches_a_self_signed_certificate_whatever_its_name() {
        let ck = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).unwrap();
        let der = ck.cert.der().clone();
        let spki = ck.signing_key.subject_public_key_info();
        let v = DaneVerifier::new(vec![tlsa(3, 1, 1, sha256(&spki))]);
        let r = v.verify_server_cert(&der, &[], &name("mx.example.net"), &[], UnixTime::now());
        assert!(r.is_ok(), "{r:?}");
        assert!(v.matched().unwrap().starts_with("TLSA 3 1 1 "));
        // Another key: refused.
        let other = rcgen::generate_simple_self_signed(vec!["mx.example.net".to_owned()]).unwrap();
        let v = DaneVerifier::new(vec![tlsa(3, 1, 1, sha256(&spki))]);
        let r = v.verify_server_cert(
            other.cert.der(),
            &[],
            &name("mx.example.net"),
            &[],
            UnixTime::now(),
        );
        assert!(
            matches!(&r, Err(rustls::Error::General(s)) if s.contains("no TLSA record matches")),
            "{r:?}"
        );
        assert_eq!(v.matched(), None);
    }

    #[test]
    fn dane_ta_checks_the_chain_and_the_name() {
        let (ca, ca_spki, leaf) = chain("mx.example.net");
        let rec = tlsa(2, 1, 1, sha256(&ca_spki));
        let v = DaneVerifier::new(vec![rec.clone()]);
        let now = UnixTime::now();
        let ok = v.verify_server_cert(
            &leaf,
            std::slice::from_ref(&ca),
            &name("mx.example.net"),
            &[],
            now,
        );
        assert!(ok.is_ok(), "{ok:?}");
        // The wrong name: refused (DANE-TA keeps the name check).
        let v = DaneVerifier::new(vec![rec.clone()]);
        let bad = v.verify_server_cert(
            &leaf,
            std::slice::from_ref(&ca),
            &name("evil.example"),
            &[],
            now,
        );
        assert!(bad.is_err(), "{bad:?}");
        // The TA not sent: nothing to match (a TA's full certificate or key is not pinned).
        let v = DaneVerifier::new(vec![rec]);
        assert!(
            v.verify_server_cert(&leaf, &[], &name("mx.example.net"), &[], now)
                .is_err()
        );
        // Another CA's leaf presented with our CA in the chain: the chain fails.
        let (_, _, foreign_leaf) = chain("mx.example.net");
        let v = DaneVerifier::new(vec![tlsa(2, 0, 1, sha256(&ca))]);
        assert!(
            v.verify_server_cert(&foreign_leaf, &[ca], &name("mx.example.net"), &[], now)
                .is_err()
        );
        // A DANE-EE record for the leaf needs no chain at all.
        let v = DaneVerifier::new(vec![tlsa(3, 0, 1, sha256(&leaf))]);
        assert!(
            v.verify_server_cert(&leaf, &[], &name("anything.example"), &[], now)
                .is_ok()
        );
    }
}
