//! `[tls]`: the listeners' certificate, and the TLS policy of outbound destinations.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[tls]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// TLS for one outbound destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// Never STARTTLS.
    None,
    /// STARTTLS when offered; any certificate; plain text when not offered or it fails.
    May,
    /// TLS required (else the delivery is deferred); any certificate.
    Encrypt,
    /// TLS required with a certificate valid for the host name (webpki roots).
    Verify,
}
