//! DANE for outbound SMTP (RFC 7672): which MX hosts have usable TLSA records (the DNS side
//! is `postern_dns::dane`), and a TLS certificate check by those records.
//!
//! - DANE-EE (3): the server's own certificate matches; no name, date or chain check
//!   (RFC 7672 §3.2.1).
//! - DANE-TA (2): a certificate of the chain the server sent matches; the chain is then
//!   checked from it as the only trust anchor, with the MX host name (§3.2.2).
//! - PKIX-TA/EE (0/1) are unusable for SMTP (§3.1.3) and never reach here.

use std::sync::{Arc, Mutex};

use postern_dns::dane::Tlsa;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

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
