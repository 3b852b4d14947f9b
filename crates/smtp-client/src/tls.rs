//! TLS for `STARTTLS`: client configurations on the `ring` provider, one that checks the
//! server's certificate against the webpki roots, and one that takes any certificate (the
//! usual choice for opportunistic TLS between MTAs, RFC 7435: encryption without
//! authentication beats plain text, and most MX certificates would not pass a check anyway).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

/// Whether the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertCheck {
    /// Any certificate, even expired or self-signed (opportunistic TLS).
    Any,
    /// A certificate chaining to a webpki root and valid for the host name.
    WebPki,
}

/// A connector for `check`.
pub fn connector(check: CertCheck) -> TlsConnector {
    let provider = Arc::new(ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let config = match check {
        CertCheck::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        CertCheck::Any => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
            .with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// A connector that accepts only certificates chaining to the PEM CA certificates in
/// `pem_file` and valid for the host name (a cluster's private CA: `[proxy] ca_file`).
pub fn ca_connector(pem_file: &std::path::Path) -> Result<TlsConnector, String> {
    use rustls::pki_types::pem::PemObject as _;
    let what = |e: &dyn std::fmt::Display| format!("{}: {e}", pem_file.display());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pem_file).map_err(|e| what(&e))? {
        roots
            .add(cert.map_err(|e| what(&e))?)
            .map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no CA certificate in the file"));
    }
    let provider = Arc::new(ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| what(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The TLS client for the hop to a cluster's backends (`[proxy] tls`), shared by every
/// daemon that forwards to a backend: `None` for plain text, `may` takes any certificate,
/// `verify` checks it against `proxy.ca_file` (resolved against the config directory).
pub fn hop_connector(config: &postern_config::Config) -> Result<Option<TlsConnector>, String> {
    use postern_config::HopTls;
    let p = &config.proxy;
    Ok(match p.tls {
        HopTls::None => None,
        HopTls::May => Some(connector(CertCheck::Any)),
        HopTls::Verify => {
            let file = p
                .ca_file
                .as_deref()
                .ok_or("proxy.tls = \"verify\" needs proxy.ca_file")?;
            let file = config.resolve(file);
            Some(ca_connector(&file).map_err(|e| format!("proxy.ca_file: {e}"))?)
        }
    })
}

/// The name sent as SNI (and checked with [`CertCheck::WebPki`]); an IP address when the
/// host is one.
pub fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.strip_suffix('.').unwrap_or(host);
    ServerName::try_from(host.to_owned()).ok()
}

/// Takes every certificate, but still checks the handshake signatures (so the session is
/// at least bound to the key the server presented).
#[derive(Debug)]
struct AnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(server_name("mx.example.org.").is_some());
        assert!(server_name("[::1]").is_some());
        assert!(server_name("127.0.0.1").is_some());
        assert!(server_name("bad name").is_none());
        let _ = connector(CertCheck::Any);
        let _ = connector(CertCheck::WebPki);
    }

    #[test]
    fn hop_connector_follows_proxy_tls() {
        let dir = tempfile::tempdir().unwrap();
        let conf = |proxy: &str| {
            postern_config::Config::parse(
                &format!("hostname = \"mx.example\"\n{proxy}"),
                dir.path(),
            )
            .unwrap()
        };
        assert!(hop_connector(&conf("")).unwrap().is_none());
        assert!(
            hop_connector(&conf("[proxy]\ntls = \"none\"\n"))
                .unwrap()
                .is_none()
        );
        assert!(
            hop_connector(&conf("[proxy]\ntls = \"may\"\n"))
                .unwrap()
                .is_some()
        );
        // A relative ca_file is read from the config directory; a missing one is an error.
        let missing = conf("[proxy]\ntls = \"verify\"\nca_file = \"ca.pem\"\n");
        let e = hop_connector(&missing).err().unwrap();
        assert!(e.starts_with("proxy.ca_file: "), "{e}");
        let ca = rcgen::generate_simple_self_signed(vec!["b1.example".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        assert!(hop_connector(&missing).unwrap().is_some());
    }
}
