//! DKIM signing of outbound mail with the keys of its From: domain. The key files (reading,
//! making, TXT records) are `postern_dns::dkim`.
//!
//! Signing happens at delivery time, for remote recipients only: the queue keeps the
//! message as it arrived, local deliveries are not signed, and a key added (or rotated)
//! while mail waits in the queue is used at the next attempt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_dns::dkim::{DomainKey, load_domain};
use tracing::warn;

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
    // Key directories are named by the domain as given, in ASCII lower case (see
    // `postern_dns::dkim::domain_dir`), not by its A-labels.
    let domain = postern_mail_types::try_split(&addr)?
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
    use postern_dns::dkim::{Algorithm, generate};
    use std::borrow::Borrow;
    use std::fs;
    use std::hash::Hash;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

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
    fn from_domains() {
        assert_eq!(
            from_domain(b"From: \"A\" <a@Sub.Example.org>\r\n\r\n").as_deref(),
            Some("sub.example.org")
        );
        // An `@` in a quoted local part or in the display name is not the domain's.
        assert_eq!(
            from_domain(b"From: \"a@evil.example\"@Good.Example\r\n\r\n").as_deref(),
            Some("good.example")
        );
        assert_eq!(
            from_domain(b"From: \"x@evil.example\" <a@Good.Example.>\r\n\r\n").as_deref(),
            Some("good.example")
        );
        assert_eq!(from_domain(b"From: undisclosed\r\n\r\n"), None);
    }
}
