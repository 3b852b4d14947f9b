//! SRS, the Sender Rewriting Scheme (as postsrsd and libsrs2 do it): mail we forward to
//! another domain leaves with an envelope sender of our own SRS domain, so SPF passes at
//! the next hop, and bounces to it find their way back.
//!
//! ```text
//! alice@example.net  →  SRS0=HHHH=TT=example.net=alice@srs.domain
//! SRS0=HHHH=TT=host=u@other  →  SRS1=HHHH=other==HHHH=TT=host=u@srs.domain
//! ```
//!
//! `HHHH` is the first four base64 characters of HMAC-SHA1 over the rest (lower-cased)
//! keyed with a secret of this installation, `TT` the day number modulo 1024 in base32. A
//! bounce to an SRS address is accepted only with a valid hash and a timestamp at most
//! `srs_max_age_days` old; it goes on to the address it stands for.
//!
//! The secret lives in `<state_dir>/srs.secret` (mode 0600), made once at the first start;
//! every line is a secret: the first signs, all verify (rotation: put a new first line).

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use base64::Engine as _;
use postern_mail_types::{Domain, try_split};
use subtle::ConstantTimeEq as _;
use tracing::{info, warn};

/// The secret file's name in the state directory.
pub const SECRET_FILE: &str = "srs.secret";

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const HASH_LEN: usize = 4;
/// Days in the timestamp's cycle (two base32 characters).
const CYCLE: u64 = 1024;

/// Rewriting and reversing with one installation's secrets.
#[derive(Clone)]
pub struct Srs {
    secrets: Vec<Vec<u8>>,
    domain: Domain,
    max_age_days: u32,
}

/// Why an SRS address was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum SrsError {
    /// Not SRS0/SRS1 syntax.
    Malformed,
    /// The hash does not match (forged, or made with another secret).
    BadHash,
    /// Older than the maximum age (or from the future).
    Expired,
}

impl std::fmt::Display for SrsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "malformed SRS address",
            Self::BadHash => "SRS hash does not match",
            Self::Expired => "SRS address expired",
        })
    }
}

impl Srs {
    /// With these secrets (the first signs; at least one).
    pub fn new(secrets: Vec<Vec<u8>>, domain: &str, max_age_days: u32) -> Self {
        Self {
            secrets,
            domain: Domain::new(domain),
            max_age_days,
        }
    }

    /// The SRS domain.
    pub fn domain(&self) -> &str {
        self.domain.as_str()
    }

    /// Whether `address` is at the SRS domain.
    pub fn is_ours(&self, address: &str) -> bool {
        try_split(address).is_some_and(|(_, d)| self.domain.is(d))
    }

    fn hash(&self, secret: &[u8], parts: &[&str]) -> String {
        let mut data = Vec::new();
        for p in parts {
            data.extend(p.bytes().map(|b| b.to_ascii_lowercase()));
        }
        let mac = hmac_sha1(secret, &data);
        let mut s = base64::engine::general_purpose::STANDARD.encode(mac);
        s.truncate(HASH_LEN);
        s
    }

    fn check_hash(&self, given: &str, parts: &[&str]) -> bool {
        // Compared without regard to case (local parts may be case-folded on the way) and in
        // constant time.
        let given = given.to_ascii_lowercase();
        self.secrets.iter().any(|k| {
            let want = self.hash(k, parts).to_ascii_lowercase();
            bool::from(given.as_bytes().ct_eq(want.as_bytes()))
        })
    }

    /// The envelope sender for `sender` forwarded today (`day`: days since the epoch).
    /// Addresses already at the SRS domain, and ones without a domain, stay as they are.
    pub fn forward(&self, sender: &str, day: u64) -> String {
        let Some((local, host)) = try_split(sender) else {
            return sender.to_owned();
        };
        if local.is_empty() || host.is_empty() || self.is_ours(sender) {
            return sender.to_owned();
        }
        let key = &self.secrets[0];
        // Someone else's SRS address: SRS1, pointing at the host that made it.
        if let Some((tag, rest)) = split_tag(local) {
            let (orig_host, user) = if tag == 0 {
                (host, rest.to_owned())
            } else {
                // SRS1=HHHH=orighost==...: keep the original host and its part.
                match rest.split_once('=').and_then(|(_, r)| r.split_once('=')) {
                    Some((h, u)) if !h.is_empty() => (h, u.to_owned()),
                    _ => return self.srs0(key, local, host, day),
                }
            };
            // `user` is what follows "SRS0" (starting with its separator).
            let user = if tag == 0 { format!("={user}") } else { user };
            let h = self.hash(key, &[orig_host, &user]);
            return format!("SRS1={h}={orig_host}={user}@{}", self.domain);
        }
        self.srs0(key, local, host, day)
    }

    fn srs0(&self, key: &[u8], local: &str, host: &str, day: u64) -> String {
        let tt = timestamp(day);
        let h = self.hash(key, &[&tt, host, local]);
        format!("SRS0={h}={tt}={host}={local}@{}", self.domain)
    }

    /// The address an SRS address at our domain stands for (`day`: today).
    pub fn reverse(&self, address: &str, day: u64) -> Result<String, SrsError> {
        let (local, _) = try_split(address).ok_or(SrsError::Malformed)?;
        let (tag, rest) = split_tag(local).ok_or(SrsError::Malformed)?;
        if tag == 1 {
            // SRS1=HHHH=orighost==HHHH=TT=host=user → SRS0=HHHH=TT=host=user@orighost
            let (h, rest) = rest.split_once('=').ok_or(SrsError::Malformed)?;
            let (orig_host, user) = rest.split_once('=').ok_or(SrsError::Malformed)?;
            if orig_host.is_empty() || user.is_empty() {
                return Err(SrsError::Malformed);
            }
            if !self.check_hash(h, &[orig_host, user]) {
                return Err(SrsError::BadHash);
            }
            return Ok(format!("SRS0{user}@{orig_host}"));
        }
        let mut it = rest.splitn(4, '=');
        let (Some(h), Some(tt), Some(host), Some(user)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(SrsError::Malformed);
        };
        if host.is_empty() || user.is_empty() || tt.len() != 2 {
            return Err(SrsError::Malformed);
        }
        if !self.check_hash(h, &[tt, host, user]) {
            return Err(SrsError::BadHash);
        }
        let then = decode_timestamp(tt).ok_or(SrsError::Malformed)?;
        let age = (day % CYCLE + CYCLE - then) % CYCLE;
        if age > u64::from(self.max_age_days) {
            return Err(SrsError::Expired);
        }
        Ok(format!("{user}@{host}"))
    }
}

/// Whether two domains may share an organizational domain (DMARC relaxed alignment),
/// erring towards yes without a public suffix list: they share their last two labels (so
/// under `co.uk` every pair counts as aligned: forwarded mail from there keeps its sender).
pub fn org_aligned(a: &str, b: &str) -> bool {
    let labels = |d: &str| -> Vec<String> {
        d.trim_end_matches('.')
            .split('.')
            .rev()
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let (a, b) = (labels(a), labels(b));
    a.iter().zip(&b).take_while(|(x, y)| x == y).count() >= 2
}

/// Whether a local part has SRS syntax (`SRS0=`/`SRS1=`, any case).
pub fn is_srs_local(local: &str) -> bool {
    split_tag(local).is_some()
}

/// `SRS0<sep>rest` → (0, rest), `SRS1<sep>rest` → (1, rest); the separator is `=`, `+` or `-`.
fn split_tag(local: &str) -> Option<(u8, &str)> {
    let b = local.as_bytes();
    if b.len() < 6 || !b[..3].eq_ignore_ascii_case(b"SRS") {
        return None;
    }
    let tag = match b[3] {
        b'0' => 0,
        b'1' => 1,
        _ => return None,
    };
    matches!(b[4], b'=' | b'+' | b'-').then(|| (tag, &local[5..]))
}

fn timestamp(day: u64) -> String {
    let t = day % CYCLE;
    let hi = usize::try_from(t >> 5).unwrap_or(0);
    let lo = usize::try_from(t & 31).unwrap_or(0);
    [BASE32[hi] as char, BASE32[lo] as char].iter().collect()
}

fn decode_timestamp(tt: &str) -> Option<u64> {
    let mut v = 0u64;
    for c in tt.bytes() {
        let i = BASE32.iter().position(|&x| x == c.to_ascii_uppercase())?;
        v = (v << 5) | i as u64;
    }
    Some(v)
}

/// HMAC-SHA1 (RFC 2104), as postsrsd uses it; ring's, not our own.
fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mut out = [0u8; 20];
    out.copy_from_slice(ring::hmac::sign(&key, data).as_ref());
    out
}

/// Days since the Unix epoch, now.
pub fn today() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// Reads the secrets from `path`, making the file (mode 0600, 32 random bytes in base64)
/// when it does not exist.
pub fn load_or_create_secret(path: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut f) => {
            let secret: [u8; 32] = rand::random();
            let line = base64::engine::general_purpose::STANDARD.encode(secret);
            f.write_all(format!("{line}\n").as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("writing {}", path.display()))?;
            info!(path = %path.display(), "made a new SRS secret");
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        warn!(path = %path.display(), "the SRS secret is readable by others; chmod 600 it");
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let secrets: Vec<Vec<u8>> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.as_bytes().to_vec())
        .collect();
    if secrets.is_empty() {
        anyhow::bail!("{} holds no secret", path.display());
    }
    Ok(secrets)
}

/// SRS as the config sets it up (`None` when `[smtpd] srs` is off): the secret is read from
/// the state directory, or made there on first use.
pub(crate) fn from_config(config: &postern_config::Config) -> anyhow::Result<Option<Srs>> {
    if !config.smtpd.srs {
        return Ok(None);
    }
    let dir = config.state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let secrets = load_or_create_secret(&dir.join(SECRET_FILE))?;
    let domain = config
        .smtpd
        .srs_domain
        .clone()
        .unwrap_or_else(|| config.hostname.clone());
    Ok(Some(Srs::new(
        secrets,
        &domain,
        config.smtpd.srs_max_age_days,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srs() -> Srs {
        Srs::new(vec![b"s3cret".to_vec()], "mail.example.org", 21)
    }

    #[test]
    fn hmac_matches_rfc_2202() {
        // RFC 2202 test case 2.
        let mac = hmac_sha1(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79");
        // A key longer than a block is hashed first (test case 6).
        let mac = hmac_sha1(
            &[0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "aa4ae5e15272d00e95705637ce8a3b55ed402112");
    }

    #[test]
    fn organizational_alignment_errs_towards_yes() {
        assert!(org_aligned("example.org", "mail.example.org"));
        assert!(org_aligned("shop.Example.ORG.", "mail.example.org"));
        assert!(!org_aligned("example.net", "mail.example.org"));
        assert!(!org_aligned("org", "mail.example.org"));
        assert!(org_aligned("shop.abc.de", "mail.abc.de"));
        assert!(org_aligned("a.example.co.uk", "mail.example.co.uk"));
        // Without a public suffix list: towards yes.
        assert!(org_aligned("other.co.uk", "mail.example.co.uk"));
    }

    #[test]
    fn forward_and_reverse() {
        let s = srs();
        let day = 20_000;
        let f = s.forward("Alice@Example.NET", day);
        assert!(f.starts_with("SRS0="), "{f}");
        assert!(f.ends_with("=Example.NET=Alice@mail.example.org"), "{f}");
        assert_eq!(s.reverse(&f, day).unwrap(), "Alice@Example.NET");
        // Case changes on the way (some MTAs lower-case) do not break it.
        assert_eq!(
            s.reverse(&f.to_lowercase(), day).unwrap(),
            "alice@example.net"
        );
        // Within the age; then expired.
        assert!(s.reverse(&f, day + 21).is_ok());
        assert_eq!(s.reverse(&f, day + 22), Err(SrsError::Expired));
        // A tampered address, or another secret.
        let tampered = f.replace("Alice", "mallory");
        assert_eq!(s.reverse(&tampered, day), Err(SrsError::BadHash));
        let other = Srs::new(vec![b"other".to_vec()], "mail.example.org", 21);
        assert_eq!(other.reverse(&f, day), Err(SrsError::BadHash));
        // A rotated-out secret still verifies when kept as a later line.
        let rotated = Srs::new(
            vec![b"new".to_vec(), b"s3cret".to_vec()],
            "mail.example.org",
            21,
        );
        assert!(rotated.reverse(&f, day).is_ok());
        for bad in [
            "SRS0=abcd@mail.example.org",
            "SRS0==AA=x=y@mail.example.org",
            "SRS2=a=b=c=d@mail.example.org",
            "bob@mail.example.org",
            "SRS0=",
        ] {
            assert!(s.reverse(bad, day).is_err(), "{bad}");
        }
        // The timestamp wraps around its 1024-day cycle.
        let f = s.forward("a@b.example", 1023);
        assert_eq!(s.reverse(&f, 1024 + 5).unwrap(), "a@b.example");
    }

    #[test]
    fn ours_and_other_srs_addresses() {
        let s = srs();
        let day = 20_000;
        // Our own domain (an SRS address of ours, or a bounce address there) is kept.
        assert_eq!(s.forward("x@MAIL.example.org", day), "x@MAIL.example.org");
        assert_eq!(s.forward("nodomain", day), "nodomain");
        // A quoted local part and no domain: nothing to rewrite (was split inside the
        // quotes into `"a` at `b"`).
        assert_eq!(s.forward("\"a@b\"", day), "\"a@b\"");
        assert_eq!(s.reverse("\"SRS0=a@b\"", day), Err(SrsError::Malformed));
        // Another forwarder's SRS0: SRS1 pointing at it, reversed back to its address.
        let theirs = "SRS0=HHHH=TT=orig.example=bob@fwd.example";
        let f = s.forward(theirs, day);
        assert!(f.starts_with("SRS1="), "{f}");
        assert!(f.contains("=fwd.example==HHHH=TT=orig.example=bob@"), "{f}");
        assert_eq!(s.reverse(&f, day).unwrap(), theirs);
        // Their SRS1 keeps pointing at the first forwarder.
        let srs1 = "SRS1=GGGG=fwd.example==HHHH=TT=orig.example=bob@fwd2.example";
        let f = s.forward(srs1, day);
        assert!(f.contains("=fwd.example==HHHH=TT=orig.example=bob@"), "{f}");
        assert_eq!(s.reverse(&f, day).unwrap(), theirs);
        let forged = f.replacen("SRS1=", "SRS1=x", 1);
        assert!(s.reverse(&forged, day).is_err());
    }

    #[test]
    fn our_domain_in_any_case_and_label_form() {
        // An internationalized SRS domain is ours in Unicode upper case and as A-labels
        // (compared with ASCII rules only, both were taken for someone else's and
        // rewritten once more).
        let s = Srs::new(vec![b"s3cret".to_vec()], "Bücher.example", 21);
        assert_eq!(s.domain(), "xn--bcher-kva.example");
        let day = 20_000;
        for ours in [
            "x@bücher.example",
            "x@BÜCHER.example",
            "x@xn--bcher-kva.example",
            "x@XN--BCHER-KVA.EXAMPLE.",
        ] {
            assert!(s.is_ours(ours), "{ours}");
            assert_eq!(s.forward(ours, day), ours);
        }
        assert!(!s.is_ours("x@bucher.example"));
        let f = s.forward("a@b.example", day);
        assert!(f.ends_with("@xn--bcher-kva.example"), "{f}");
        assert!(s.is_ours(&f));
        assert_eq!(s.reverse(&f, day).unwrap(), "a@b.example");
        // A quoted local part holding the SRS domain is not at it.
        assert!(!s.is_ours("\"x@bücher.example\"@other.example"));
        assert!(srs().is_ours("\"x@other.example\"@Mail.Example.org"));
    }

    #[test]
    fn secret_file_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(SECRET_FILE);
        let a = load_or_create_secret(&p).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(a.len(), 1);
        assert!(a[0].len() >= 40);
        assert_eq!(
            load_or_create_secret(&p).unwrap(),
            a,
            "kept across restarts"
        );
    }
}
