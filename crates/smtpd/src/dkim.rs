//! DKIM: the key files (`KEY_DIR/DOMAIN/SELECTOR.key`, PEM), making new keys and their DNS
//! TXT records (`mailctl dkim generate|show`), and signing outbound mail (mail-auth,
//! relaxed/relaxed, RSA-SHA256 or Ed25519-SHA256, with the usual headers oversigned).
//!
//! Signing happens at delivery time, for remote recipients only: the queue keeps the
//! message as it arrived, local deliveries are not signed, and a key added (or rotated)
//! while mail waits in the queue is used at the next attempt.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{DkimSigner, Done};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tracing::warn;

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

    fn sign(&self, message: &[u8]) -> anyhow::Result<String> {
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

/// How long keys read from disk are used before the directory is read again.
const KEY_CACHE: Duration = Duration::from_secs(60);

/// A domain's keys and when they were read.
type Cached = (Instant, Arc<Vec<DomainKey>>);

/// Signs outbound mail with the keys of its From: domain.
pub(crate) struct Dkim {
    key_dir: PathBuf,
    enabled: bool,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Dkim {
    pub(crate) fn new(config: &postern_config::Config) -> Self {
        Self {
            key_dir: config.dkim_key_dir(),
            enabled: config.dkim.enabled,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn keys(&self, domain: &str) -> Arc<Vec<DomainKey>> {
        if let Ok(c) = self.cache.lock()
            && let Some((at, keys)) = c.get(domain)
            && at.elapsed() < KEY_CACHE
        {
            return keys.clone();
        }
        let keys = Arc::new(load_domain(&self.key_dir, domain).unwrap_or_else(|e| {
            warn!(%domain, error = format!("{e:#}"), "DKIM keys unusable; not signing");
            Vec::new()
        }));
        if let Ok(mut c) = self.cache.lock() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(domain.to_owned(), (Instant::now(), keys.clone()));
        }
        keys
    }

    /// `DKIM-Signature:` fields to put before `message` (empty when its From: domain has no
    /// key, or signing is off). Signing errors are logged; the mail goes unsigned.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        if !self.enabled {
            return Vec::new();
        }
        let Some(domain) = from_domain(message) else {
            return Vec::new();
        };
        let keys = self.keys(&domain);
        let mut out = Vec::new();
        for key in keys.iter() {
            match key.sign(message) {
                Ok(h) => out.extend_from_slice(h.as_bytes()),
                Err(e) => {
                    warn!(%domain, selector = %key.selector, error = %e, "DKIM signing failed")
                }
            }
        }
        out
    }
}

/// The domain of the first From: address, lower-cased.
pub(crate) fn from_domain(message: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(message)?;
    let addr = parsed.from()?.first()?.address()?.to_owned();
    let domain = addr
        .rsplit_once('@')?
        .1
        .trim_end_matches('.')
        .to_ascii_lowercase();
    (!domain.is_empty() && !domain.contains(['/', '\\']) && domain != "." && domain != "..")
        .then_some(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    use mail_auth::common::parse::TxtRecordParser;
    use mail_auth::common::verify::DomainKey as PublicKey;
    use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, ResolverCache, Txt};
    use std::borrow::Borrow;
    use std::hash::Hash;

    const MESSAGE: &str = concat!(
        "Received: from x by y; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        "From: Alice <alice@Example.ORG>\r\n",
        "To: bob@example.net\r\n",
        "Subject: DKIM  round   trip\r\n",
        "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n",
        "Message-ID: <1@example.org>\r\n",
        "\r\n",
        "Hello,   world.  \r\n\r\n\r\n",
    );

    /// A TXT cache that answers from a map (keys are FQDNs with the final dot).
    #[derive(Default)]
    struct Zone(Mutex<HashMap<Box<str>, Txt>>);

    impl ResolverCache<Box<str>, Txt> for Zone {
        fn get<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.0.lock().unwrap().get(name).cloned()
        }
        fn remove<Q>(&self, name: &Q) -> Option<Txt>
        where
            Box<str>: Borrow<Q>,
            Q: Hash + Eq + ?Sized,
        {
            self.0.lock().unwrap().remove(name)
        }
        fn insert(&self, key: Box<str>, value: Txt, _: Instant) {
            self.0.lock().unwrap().insert(key, value);
        }
    }

    fn record_value(record: &str) -> String {
        // `"v=DKIM1; …" "…"` → the joined value.
        record
            .split_once(" IN TXT ")
            .unwrap()
            .1
            .split('"')
            .skip(1)
            .step_by(2)
            .collect()
    }

    async fn verify(signed: &[u8], zone: &Zone) -> Vec<DkimResult> {
        // A resolver that is never asked (every TXT is in the cache): a closed loopback port.
        let mut ns = NameServerConfig::udp(std::net::Ipv4Addr::LOCALHOST.into());
        ns.connections[0].port = 9;
        let config = ResolverConfig::from_name_servers(vec![ns]);
        let resolver = MessageAuthenticator::new(config, Default::default()).unwrap();
        let message = AuthenticatedMessage::parse(signed).unwrap();
        resolver
            .verify_dkim(mail_auth::Parameters::new(&message).with_txt_cache(zone))
            .await
            .iter()
            .map(|o| o.result().clone())
            .collect()
    }

    #[tokio::test]
    async fn generate_sign_and_verify_rsa_and_ed25519() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("dkim");
        let (rsa_path, rsa) = generate(&keys, "example.org", "r2026", Algorithm::Rsa).unwrap();
        let (_, ed) = generate(&keys, "Example.org.", "e2026", Algorithm::Ed25519).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&rsa_path), 0o600);
        assert_eq!(mode(rsa_path.parent().unwrap()), 0o700);
        assert!(
            generate(&keys, "example.org", "r2026", Algorithm::Rsa).is_err(),
            "no overwrite"
        );
        assert!(generate(&keys, "../etc", "x", Algorithm::Rsa).is_err());

        let record = rsa.dns_record("example.org");
        assert!(
            record.starts_with("r2026._domainkey.example.org. IN TXT \"v=DKIM1; k=rsa; p=MIIB"),
            "{record}"
        );
        assert!(record.split('"').all(|s| s.len() <= 255));
        assert!(
            record.matches('"').count() >= 4,
            "a 2048-bit key needs two strings: {record}"
        );
        let ed_record = ed.dns_record("example.org");
        assert!(ed_record.contains("k=ed25519; p="), "{ed_record}");

        let zone = Zone::default();
        for (sel, rec) in [("r2026", &record), ("e2026", &ed_record)] {
            zone.insert(
                format!("{sel}._domainkey.example.org.").into(),
                PublicKey::parse(record_value(rec).as_bytes())
                    .unwrap()
                    .into(),
                Instant::now(),
            );
        }

        let config = postern_config::Config::parse(
            &format!(
                "hostname = \"mx.example.org\"\n[dkim]\nkey_dir = \"{}\"\n",
                keys.display()
            ),
            Path::new("/"),
        )
        .unwrap();
        let dkim = Dkim::new(&config);
        let headers = dkim.sign(MESSAGE.as_bytes());
        let text = String::from_utf8(headers.clone()).unwrap();
        assert_eq!(text.matches("DKIM-Signature:").count(), 2, "{text}");
        assert!(
            text.contains("a=rsa-sha256") && text.contains("a=ed25519-sha256"),
            "{text}"
        );
        assert!(text.contains("c=relaxed/relaxed"), "{text}");
        // From is oversigned; Reply-To is signed as absent.
        let h = text
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .replace([' ', '\t', '\r', '\n'], "");
        assert_eq!(h.matches("From").count(), 2, "{h}");
        assert!(h.contains("Reply-To"), "{h}");

        let mut signed = headers.clone();
        signed.extend_from_slice(MESSAGE.as_bytes());
        let results = verify(&signed, &zone).await;
        assert_eq!(results, [DkimResult::Pass, DkimResult::Pass], "{text}");

        // A second From: added later breaks both signatures (oversigning).
        let mut tampered = headers.clone();
        tampered.extend_from_slice(b"From: mallory@evil.example\r\n");
        tampered.extend_from_slice(MESSAGE.as_bytes());
        let results = verify(&tampered, &zone).await;
        assert!(
            results.iter().all(|r| *r != DkimResult::Pass),
            "{results:?}"
        );

        // A changed body fails too.
        let mut changed = headers;
        changed.extend_from_slice(MESSAGE.replace("world", "World").as_bytes());
        let results = verify(&changed, &zone).await;
        assert!(
            results.iter().all(|r| *r != DkimResult::Pass),
            "{results:?}"
        );

        // Other domains, and no From:, are not signed.
        assert!(dkim.sign(b"From: x@other.example\r\n\r\nhi\r\n").is_empty());
        assert!(dkim.sign(b"Subject: none\r\n\r\nhi\r\n").is_empty());
    }

    #[test]
    fn spki_wrapping_and_txt_splitting() {
        let spki = rsa_spki(&[0x30, 0x03, 0x02, 0x01, 0x03]);
        assert_eq!(spki[0], 0x30);
        assert_eq!(spki.len(), 2 + 15 + 2 + 1 + 5);
        let long = txt_record("example.org", "s", Algorithm::Rsa, &[7u8; 400]);
        let strings: Vec<&str> = long.split('"').skip(1).step_by(2).collect();
        assert_eq!(strings[0].len(), 255);
        assert!(strings.len() == 3, "{long}");
        assert_eq!(
            from_domain(b"From: \"A\" <a@Sub.Example.org>\r\n\r\n").as_deref(),
            Some("sub.example.org")
        );
    }
}
