//! DKIM key files: `KEY_DIR/DOMAIN/SELECTOR.key` (PEM), reading them, making new keys and
//! their DNS TXT records (`mailctl dkim generate|show`, `mailctl check`). A loaded
//! [`DomainKey`] signs (mail-auth, relaxed/relaxed, RSA-SHA256 or Ed25519-SHA256, with
//! [`SIGNED_HEADERS`] oversigned); smtpd decides what gets signed and when.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine as _;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;

/// The headers signed. Those listed twice are oversigned: one more entry than the message
/// has, so a copy added later breaks the signature (RFC 6376 §8.15). Absent ones are
/// signed as absent, for the same reason.
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Reply-To",
    "Subject",
    "Subject",
    "Date",
    "Date",
    "To",
    "To",
    "Cc",
    "Cc",
    "Message-ID",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "MIME-Version",
    "Content-Type",
    "Content-Type",
    "Content-Transfer-Encoding",
    "Content-Transfer-Encoding",
    "Sender",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// The key algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// RSA, 2048 bits, `rsa-sha256`.
    Rsa,
    /// Ed25519, `ed25519-sha256` (RFC 8463).
    Ed25519,
}

impl Algorithm {
    /// The `k=` tag.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Rsa => "rsa",
            Self::Ed25519 => "ed25519",
        }
    }
}

/// A signing key, ready to use.
enum Signer {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

/// One key of a domain, as read from its file.
pub struct DomainKey {
    /// The selector (the file name without `.key`).
    pub selector: String,
    /// Its algorithm.
    pub algorithm: Algorithm,
    /// The public key (SubjectPublicKeyInfo DER for RSA, the 32 raw bytes for Ed25519), as
    /// published in `p=`.
    pub public_key: Vec<u8>,
    signer: Signer,
}

impl DomainKey {
    /// The DNS record to publish, as a zone file line.
    pub fn dns_record(&self, domain: &str) -> String {
        txt_record(domain, &self.selector, self.algorithm, &self.public_key)
    }

    /// The `DKIM-Signature:` field (with its CRLF) for `message` signed with this key.
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<String> {
        let sig = match &self.signer {
            Signer::Rsa(s) => s.sign(message),
            Signer::Ed25519(s) => s.sign(message),
        }
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(sig.to_header())
    }
}

/// Where the keys of `domain` live.
pub fn domain_dir(key_dir: &Path, domain: &str) -> PathBuf {
    key_dir.join(domain.trim_end_matches('.').to_ascii_lowercase())
}

/// Reads every `SELECTOR.key` of `domain` (sorted by selector); none when the directory
/// does not exist.
pub fn load_domain(key_dir: &Path, domain: &str) -> anyhow::Result<Vec<DomainKey>> {
    let dir = domain_dir(key_dir, domain);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "key"))
        .collect();
    files.sort();
    let mut keys = Vec::new();
    for path in files {
        let Some(selector) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
            continue;
        };
        let pem = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let key = load_key(domain, &selector, &pem)
            .with_context(|| format!("loading the DKIM key {}", path.display()))?;
        keys.push(key);
    }
    Ok(keys)
}

/// A key from its PEM text: PKCS#1 RSA, or PKCS#8 RSA or Ed25519.
fn load_key(domain: &str, selector: &str, pem: &[u8]) -> anyhow::Result<DomainKey> {
    let der = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| anyhow::anyhow!("not a PEM private key: {e}"))?;
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    if let PrivateKeyDer::Pkcs8(p8) = &der
        && let Ok(key) = Ed25519Key::from_pkcs8_maybe_unchecked_der(p8.secret_pkcs8_der())
    {
        let public_key = key.public_key();
        let signer = DkimSigner::from_key(key)
            .domain(domain)
            .selector(selector)
            .headers(SIGNED_HEADERS.iter().copied());
        return Ok(DomainKey {
            selector: selector.to_owned(),
            algorithm: Algorithm::Ed25519,
            public_key,
            signer: Signer::Ed25519(signer),
        });
    }
    let key = RsaKey::<Sha256>::from_key_der(der).map_err(|e| anyhow::anyhow!("{e}"))?;
    let public_key = rsa_spki(&key.public_key());
    let signer = DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied());
    Ok(DomainKey {
        selector: selector.to_owned(),
        algorithm: Algorithm::Rsa,
        public_key,
        signer: Signer::Rsa(signer),
    })
}

/// A new key for `domain`/`selector`, written to `KEY_DIR/DOMAIN/SELECTOR.key` (mode 0600
/// in a 0700 directory). An existing file is not replaced.
pub fn generate(
    key_dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
) -> anyhow::Result<(PathBuf, DomainKey)> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            })
    };
    if !ok(domain.trim_end_matches('.')) {
        bail!("{domain:?} is not a domain name");
    }
    if !ok(selector) || selector.contains('.') {
        bail!("{selector:?} is not a usable selector (letters, digits, '-', '_')");
    }
    let pem = match algorithm {
        Algorithm::Rsa => {
            let pair = mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048)
                .map_err(|e| anyhow::anyhow!("generating an RSA key: {e}"))?;
            pem_encode("RSA PRIVATE KEY", pair.private_key())
        }
        Algorithm::Ed25519 => {
            let pair = mail_auth::dkim::generate::DkimKeyPair::generate_ed25519()
                .map_err(|e| anyhow::anyhow!("generating an Ed25519 key: {e}"))?;
            pem_encode("PRIVATE KEY", pair.private_key())
        }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(key_dir)
        .with_context(|| format!("creating {}", key_dir.display()))?;
    let dir = domain_dir(key_dir, domain);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))?;
    let path = dir.join(format!("{selector}.key"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    let key = load_key(domain, selector, pem.as_bytes())?;
    Ok((path, key))
}

/// `SELECTOR._domainkey.DOMAIN. IN TXT "v=DKIM1; k=…; p=…"`, the value cut into strings of
/// at most 255 octets (RFC 1035 character-strings).
pub fn txt_record(domain: &str, selector: &str, algorithm: Algorithm, public_key: &[u8]) -> String {
    let value = format!(
        "v=DKIM1; k={}; p={}",
        algorithm.tag(),
        base64::engine::general_purpose::STANDARD.encode(public_key)
    );
    let parts: Vec<String> = value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect();
    format!(
        "{selector}._domainkey.{}. IN TXT {}",
        domain.trim_end_matches('.').to_ascii_lowercase(),
        parts.join(" ")
    )
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Wraps a PKCS#1 `RSAPublicKey` in a SubjectPublicKeyInfo (what `openssl rsa -pubout`
/// prints, and what verifiers expect in `p=`).
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    fn len(n: usize, out: &mut Vec<u8>) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes: Vec<u8> = n
                .to_be_bytes()
                .iter()
                .copied()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    len(pkcs1.len() + 1, &mut bits);
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    len(ALG.len() + bits.len(), &mut out);
    out.extend_from_slice(ALG);
    out.extend(bits);
    out
}

/// The public key inside an RSA SubjectPublicKeyInfo or an Ed25519 key, for display.
pub fn describe(key: &DomainKey) -> String {
    match key.algorithm {
        Algorithm::Rsa => "rsa-sha256".to_owned(),
        Algorithm::Ed25519 => "ed25519-sha256".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_wrapping_and_txt_splitting() {
        let spki = rsa_spki(&[0x30, 0x03, 0x02, 0x01, 0x03]);
        assert_eq!(spki[0], 0x30);
        assert_eq!(spki.len(), 2 + 15 + 2 + 1 + 5);
        let long = txt_record("example.org", "s", Algorithm::Rsa, &[7u8; 400]);
        let strings: Vec<&str> = long.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings[0].len(), 255);
        assert!(strings.len() == 3, "{long}");
    }
}
