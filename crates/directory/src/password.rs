//! Password hashes: verifying the schemes existing Dovecot/Postfix installs hold, and writing
//! argon2id for new passwords.
//!
//! A stored value follows Dovecot's conventions: an optional `{SCHEME}` prefix (the name is
//! case-insensitive and may carry a `.HEX`, `.B64` or `.BASE64` encoding suffix, as in
//! `{SSHA512.HEX}`), then the scheme's own text. Without a prefix the value's shape decides
//! (`$argon2id$`, `$argon2i$`, `$6$`, `$5$`, `$1$`, `$2y$`/`$2b$`/`$2a$`, a 13-character DES
//! crypt), and failing that the configured default scheme does.
//!
//! Verified schemes: `ARGON2ID`, `ARGON2I`, `SHA512-CRYPT`, `SHA256-CRYPT`, `MD5-CRYPT`,
//! `BLF-CRYPT`, `CRYPT` (alias `DES-CRYPT`: DES or any of the `$n$` forms above), `MD5`
//! (Dovecot's alias: MD5-CRYPT for `$1$…`, PLAIN-MD5 otherwise), `SSHA`, `SSHA256`,
//! `SSHA512`, `SMD5`, `SHA` (alias `SHA1`), `SHA256`, `SHA512`, `PLAIN-MD5`, `LDAP-MD5`,
//! `PLAIN` (alias `CLEARTEXT`).
//!
//! As in Dovecot, every crypt(3) label (`CRYPT`, `SHA512-CRYPT`, `BLF-CRYPT`, …) accepts any
//! crypt(3) form, because Dovecot hands all of them to `crypt()`.
//!
//! Nothing in this module logs, stores or formats a password, and no error carries the stored
//! value: only scheme names and fixed reasons.

use argon2::password_hash::{self, PasswordHasher, PasswordVerifier};
use argon2::{Argon2, PasswordHash};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use md5::Md5;
use sha_crypt::ShaCrypt;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// Argon2 memory costs above this many KiB (1 GiB) are refused rather than allocated: a
/// corrupt or hostile row must not be able to abort the daemon on allocation failure.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1024 * 1024;

/// The result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// The password is right.
    Match {
        /// The stored hash uses a scheme other than argon2id: store [`hash_new`]'s output now
        /// that the plain password is at hand.
        rehash: bool,
    },
    /// The password is wrong.
    Mismatch,
}

/// Why a stored hash could not be checked, or a new one could not be made.
///
/// No variant carries a password or a stored hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// The `{SCHEME}` prefix or the default scheme names a scheme this module does not know.
    #[error("unknown password scheme {0:?}")]
    UnknownScheme(String),
    /// The stored value is not a valid hash of its scheme.
    #[error("malformed {scheme} password hash: {reason}")]
    Malformed {
        /// Canonical name of the scheme the value claims or appears to be.
        scheme: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stored hash is well-formed but uses parameters this module refuses to run.
    #[error("{scheme} password hash uses unsupported parameters: {reason}")]
    Unsupported {
        /// Canonical name of the scheme.
        scheme: &'static str,
        /// Which parameter is refused.
        reason: &'static str,
    },
    /// Hashing a new password failed (for example, no system randomness).
    #[error("could not hash the password: {0}")]
    Hashing(String),
}

/// Hashes a new password with argon2id (the argon2 crate's default parameters, a random
/// 16-byte salt) and returns it in the form Dovecot reads:
/// `{ARGON2ID}$argon2id$v=19$m=…,t=…,p=…$salt$hash`.
///
/// # Errors
/// [`PasswordError::Hashing`] when the system random generator or argon2 fails.
pub fn hash_new(password: &str) -> Result<String, PasswordError> {
    let hash = Argon2::default()
        .hash_password(password.as_bytes())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(format!("{{ARGON2ID}}{hash}"))
}

/// Checks `password` against a `stored` value (with or without a `{SCHEME}` prefix).
/// `default_scheme` (for example `"CRYPT"`, `"SHA512-CRYPT"`, `"PLAIN"`) applies to values that
/// have no prefix and no recognisable shape.
///
/// Digests and plain passwords are compared in constant time.
///
/// # Errors
/// [`PasswordError::UnknownScheme`] for an unknown prefix or default scheme,
/// [`PasswordError::Malformed`] when the value is not a valid hash of its scheme,
/// [`PasswordError::Unsupported`] for argon2 memory costs above [`MAX_ARGON2_MEMORY_KIB`]
/// or bcrypt costs out of range. A wrong password is never an error.
pub fn verify(
    stored: &str,
    password: &str,
    default_scheme: &str,
) -> Result<Verified, PasswordError> {
    let resolved = resolve(stored, default_scheme)?;
    let pw = password.as_bytes();
    let value = resolved.value;
    let matched = match resolved.scheme {
        Scheme::Argon2id | Scheme::Argon2i => verify_argon2(resolved.scheme, value, pw)?,
        Scheme::Sha512Crypt => verify_sha_crypt(Scheme::Sha512Crypt, value, pw)?,
        Scheme::Sha256Crypt => verify_sha_crypt(Scheme::Sha256Crypt, value, pw)?,
        Scheme::Md5Crypt => verify_md5_crypt(value, pw)?,
        Scheme::DesCrypt => verify_des_crypt(value, pw)?,
        Scheme::BlfCrypt => verify_bcrypt(value, pw)?,
        Scheme::Plain => verify_plain(resolved.encoding, value, pw)?,
        scheme => verify_digest(scheme, resolved.encoding, value, pw)?,
    };
    Ok(if matched {
        Verified::Match {
            rehash: resolved.scheme != Scheme::Argon2id,
        }
    } else {
        Verified::Mismatch
    })
}

/// The canonical name of the scheme `stored` uses (for listings and logs), such as
/// `"ARGON2ID"`, `"SHA512-CRYPT"`, `"CRYPT"` (DES), `"SSHA512"`, `"PLAIN"`; `None` when the
/// prefix or the default scheme is unknown.
///
/// A crypt(3) label is refined by the value's shape (`{CRYPT}$6$…` is `"SHA512-CRYPT"`); a
/// malformed value still reports the scheme it claims.
#[must_use]
pub fn scheme_of(stored: &str, default_scheme: &str) -> Option<&'static str> {
    match resolve(stored, default_scheme) {
        Ok(resolved) => Some(resolved.scheme.name()),
        Err(
            PasswordError::Malformed { scheme, .. } | PasswordError::Unsupported { scheme, .. },
        ) => Some(scheme),
        Err(PasswordError::UnknownScheme(_) | PasswordError::Hashing(_)) => None,
    }
}

/// Checks that `stored` is a hash [`verify`] can use (for importing hashes made elsewhere),
/// returning its canonical scheme name. Unlike [`scheme_of`] this parses the whole value, and
/// so costs one hash computation.
///
/// # Errors
/// The error [`verify`] would return for this value.
pub fn validate_stored(stored: &str, default_scheme: &str) -> Result<&'static str, PasswordError> {
    let scheme = resolve(stored, default_scheme)?.scheme;
    // The outcome does not matter, only that the value parses and the hash runs.
    verify(stored, "", default_scheme)?;
    Ok(scheme.name())
}

/// A concrete scheme, after labels, aliases and shapes have been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Argon2id,
    Argon2i,
    Sha512Crypt,
    Sha256Crypt,
    Md5Crypt,
    BlfCrypt,
    DesCrypt,
    Sha1,
    Sha256,
    Sha512,
    Ssha,
    Ssha256,
    Ssha512,
    Smd5,
    PlainMd5,
    LdapMd5,
    Plain,
}

impl Scheme {
    /// Canonical name, as `scheme_of` reports it.
    const fn name(self) -> &'static str {
        match self {
            Self::Argon2id => "ARGON2ID",
            Self::Argon2i => "ARGON2I",
            Self::Sha512Crypt => "SHA512-CRYPT",
            Self::Sha256Crypt => "SHA256-CRYPT",
            Self::Md5Crypt => "MD5-CRYPT",
            Self::BlfCrypt => "BLF-CRYPT",
            Self::DesCrypt => "CRYPT",
            Self::Sha1 => "SHA1",
            Self::Sha256 => "SHA256",
            Self::Sha512 => "SHA512",
            Self::Ssha => "SSHA",
            Self::Ssha256 => "SSHA256",
            Self::Ssha512 => "SSHA512",
            Self::Smd5 => "SMD5",
            Self::PlainMd5 => "PLAIN-MD5",
            Self::LdapMd5 => "LDAP-MD5",
            Self::Plain => "PLAIN",
        }
    }

    /// Digest, salted or not, and default encoding of the digest schemes.
    const fn digest_params(self) -> Option<(Alg, bool, Encoding)> {
        Some(match self {
            Self::Sha1 => (Alg::Sha1, false, Encoding::Base64),
            Self::Sha256 => (Alg::Sha256, false, Encoding::Base64),
            Self::Sha512 => (Alg::Sha512, false, Encoding::Base64),
            Self::Ssha => (Alg::Sha1, true, Encoding::Base64),
            Self::Ssha256 => (Alg::Sha256, true, Encoding::Base64),
            Self::Ssha512 => (Alg::Sha512, true, Encoding::Base64),
            Self::Smd5 => (Alg::Md5, true, Encoding::Base64),
            Self::PlainMd5 => (Alg::Md5, false, Encoding::Hex),
            Self::LdapMd5 => (Alg::Md5, false, Encoding::Base64),
            _ => return None,
        })
    }
}

/// What a scheme name (prefix or default) selects before the value is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    /// A scheme whose value needs no further dispatch.
    Exact(Scheme),
    /// `ARGON2ID` / `ARGON2I`: the PHC string's own identifier decides.
    Argon2(Scheme),
    /// A crypt(3) label: the value's shape decides; the scheme is the label's own.
    Crypt(Scheme),
    /// Dovecot's `MD5`: MD5-CRYPT for `$1$…`, PLAIN-MD5 otherwise.
    Md5Alias,
}

/// Encoding of a digest scheme's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Base64,
    Hex,
}

/// A stored value with its scheme resolved.
struct Resolved<'a> {
    scheme: Scheme,
    /// Explicit `.HEX` / `.B64` suffix, if any.
    encoding: Option<Encoding>,
    /// The value without its `{SCHEME}` prefix.
    value: &'a str,
}

/// Longest scheme name (with suffix) accepted inside `{…}`.
const MAX_SCHEME_NAME: usize = 32;

/// Splits `{NAME}rest` into its name and rest. Braces around anything that does not look like
/// a scheme name are not a prefix (the value is then taken as a whole).
fn split_prefix(stored: &str) -> Option<(&str, &str)> {
    let inner = stored.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    if name.is_empty() || name.len() > MAX_SCHEME_NAME || !name.bytes().all(is_scheme_name_byte) {
        return None;
    }
    Some((name, &inner[end + 1..]))
}

const fn is_scheme_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Parses a scheme name with an optional encoding suffix.
fn parse_label(name: &str) -> Result<(Label, Option<Encoding>), PasswordError> {
    let unknown = || {
        let shown = if !name.is_empty()
            && name.len() <= MAX_SCHEME_NAME
            && name.bytes().all(is_scheme_name_byte)
        {
            name.to_owned()
        } else {
            "<not a scheme name>".to_owned()
        };
        PasswordError::UnknownScheme(shown)
    };
    let upper = name.to_ascii_uppercase();
    let (base, encoding) = if let Some(base) = upper.strip_suffix(".HEX") {
        (base, Some(Encoding::Hex))
    } else if let Some(base) = upper
        .strip_suffix(".B64")
        .or_else(|| upper.strip_suffix(".BASE64"))
    {
        (base, Some(Encoding::Base64))
    } else {
        (upper.as_str(), None)
    };
    let label = match base {
        "ARGON2ID" => Label::Argon2(Scheme::Argon2id),
        "ARGON2I" => Label::Argon2(Scheme::Argon2i),
        "SHA512-CRYPT" => Label::Crypt(Scheme::Sha512Crypt),
        "SHA256-CRYPT" => Label::Crypt(Scheme::Sha256Crypt),
        "MD5-CRYPT" => Label::Crypt(Scheme::Md5Crypt),
        "BLF-CRYPT" => Label::Crypt(Scheme::BlfCrypt),
        "CRYPT" | "DES-CRYPT" => Label::Crypt(Scheme::DesCrypt),
        "MD5" => Label::Md5Alias,
        "SHA" | "SHA1" => Label::Exact(Scheme::Sha1),
        "SHA256" => Label::Exact(Scheme::Sha256),
        "SHA512" => Label::Exact(Scheme::Sha512),
        "SSHA" => Label::Exact(Scheme::Ssha),
        "SSHA256" => Label::Exact(Scheme::Ssha256),
        "SSHA512" => Label::Exact(Scheme::Ssha512),
        "SMD5" => Label::Exact(Scheme::Smd5),
        "PLAIN-MD5" => Label::Exact(Scheme::PlainMd5),
        "LDAP-MD5" => Label::Exact(Scheme::LdapMd5),
        "PLAIN" | "CLEARTEXT" => Label::Exact(Scheme::Plain),
        _ => return Err(unknown()),
    };
    // An encoding suffix only means something for the digest schemes and PLAIN.
    let encodable = match label {
        Label::Exact(_) | Label::Md5Alias => true,
        Label::Argon2(_) | Label::Crypt(_) => false,
    };
    if encoding.is_some() && !encodable {
        return Err(unknown());
    }
    Ok((label, encoding))
}

/// Resolves the scheme of a stored value.
fn resolve<'a>(stored: &'a str, default_scheme: &str) -> Result<Resolved<'a>, PasswordError> {
    if let Some((name, value)) = split_prefix(stored) {
        let (label, encoding) = parse_label(name)?;
        return apply_label(label, encoding, value);
    }
    let default_name = default_scheme
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}');
    let default = parse_label(default_name);
    let default_is_plain = matches!(default, Ok((Label::Exact(Scheme::Plain), _)));
    // A 13-character plaintext password would look like DES: only guess DES when the default
    // scheme is not a plaintext one.
    if let Some(scheme) = detect_shape(stored, !default_is_plain) {
        return Ok(Resolved {
            scheme,
            encoding: None,
            value: stored,
        });
    }
    let (label, encoding) = default?;
    apply_label(label, encoding, stored)
}

/// Combines a label with the value it applies to.
fn apply_label(
    label: Label,
    encoding: Option<Encoding>,
    value: &str,
) -> Result<Resolved<'_>, PasswordError> {
    let scheme = match label {
        Label::Exact(scheme) => scheme,
        Label::Argon2(nominal) => {
            if value.starts_with("$argon2id$") {
                Scheme::Argon2id
            } else if value.starts_with("$argon2i$") {
                Scheme::Argon2i
            } else {
                return Err(malformed(nominal, "not an argon2i/argon2id PHC string"));
            }
        }
        Label::Crypt(nominal) => match crypt_shape(value) {
            Some(scheme) => scheme,
            // yescrypt ($y$), scrypt ($7$), $2x$, BSDi (_…) and other libxcrypt methods.
            None if value.starts_with('$') || value.starts_with('_') => {
                return Err(PasswordError::Unsupported {
                    scheme: nominal.name(),
                    reason: "crypt(3) method other than DES, $1$, $2a$/$2b$/$2y$, $5$, $6$",
                });
            }
            None => return Err(malformed(nominal, "not a crypt(3) hash")),
        },
        Label::Md5Alias => {
            if value.starts_with("$1$") {
                Scheme::Md5Crypt
            } else {
                Scheme::PlainMd5
            }
        }
    };
    Ok(Resolved {
        scheme,
        encoding,
        value,
    })
}

/// Recognises a value by its shape alone.
fn detect_shape(value: &str, allow_des: bool) -> Option<Scheme> {
    if value.starts_with("$argon2id$") {
        Some(Scheme::Argon2id)
    } else if value.starts_with("$argon2i$") {
        Some(Scheme::Argon2i)
    } else if value.starts_with('$') || allow_des {
        crypt_shape(value)
    } else {
        None
    }
}

/// Recognises the crypt(3) forms supported here.
fn crypt_shape(value: &str) -> Option<Scheme> {
    if value.starts_with("$6$") {
        Some(Scheme::Sha512Crypt)
    } else if value.starts_with("$5$") {
        Some(Scheme::Sha256Crypt)
    } else if value.starts_with("$1$") {
        Some(Scheme::Md5Crypt)
    } else if value.starts_with("$2a$") || value.starts_with("$2b$") || value.starts_with("$2y$") {
        Some(Scheme::BlfCrypt)
    } else if value.len() == 13 && value.bytes().all(is_crypt64) {
        Some(Scheme::DesCrypt)
    } else {
        None
    }
}

const fn malformed(scheme: Scheme, reason: &'static str) -> PasswordError {
    PasswordError::Malformed {
        scheme: scheme.name(),
        reason,
    }
}

/// The crypt(3) base-64 alphabet `./0-9A-Za-z`.
const fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

fn verify_argon2(scheme: Scheme, value: &str, pw: &[u8]) -> Result<bool, PasswordError> {
    let mut hash =
        PasswordHash::new(value).map_err(|_| malformed(scheme, "not a valid PHC string"))?;
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(malformed(scheme, "salt or hash missing"));
    }
    // libargon2 reads a PHC string without `v=` as version 0x10.
    if hash.version.is_none() {
        hash.version = Some(0x10);
    }
    match hash.params.get_decimal("m") {
        Some(m) if m > MAX_ARGON2_MEMORY_KIB => {
            return Err(PasswordError::Unsupported {
                scheme: scheme.name(),
                reason: "memory cost above 1 GiB",
            });
        }
        Some(_) => {}
        None => return Err(malformed(scheme, "memory cost missing")),
    }
    let bad = |_| malformed(scheme, "invalid argon2 parameters");
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return Err(malformed(scheme, "salt or hash missing"));
    };
    let algorithm = argon2::Algorithm::try_from(hash.algorithm.as_str()).map_err(bad)?;
    let version = argon2::Version::try_from(hash.version.unwrap_or(0x10))
        .map_err(|_| malformed(scheme, "invalid argon2 version"))?;
    let params = argon2::Params::try_from(&hash).map_err(bad)?;
    let mut blocks = argon2_memory(params.block_count());
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(pw, salt.as_ref(), &mut out, &mut blocks[..])
        .map_err(|_| malformed(scheme, "invalid argon2 parameters"))?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

/// The working memory of one argon2 computation (`blocks` KiB, 19 MiB for the defaults).
///
/// Its capacity is at least 33 MiB, above the largest threshold glibc's malloc ever moves its
/// mmap threshold to (32 MiB): the buffer is always its own anonymous mapping, returned to
/// the system when dropped. A smaller one would, after the first free, come from a malloc
/// arena and stay in the process's RSS after the login storm (authd kept ~440 MiB). Only the
/// blocks argon2 uses are touched, so the rest of the capacity costs no memory.
fn argon2_memory(blocks: usize) -> Vec<argon2::Block> {
    const ALWAYS_MAPPED: usize = 33 * 1024 * 1024 / argon2::Block::SIZE;
    let mut v = Vec::with_capacity(blocks.max(ALWAYS_MAPPED));
    v.resize(blocks, argon2::Block::default());
    v
}

/// Checks the layout glibc writes, `$N$[rounds=R$]salt$hash`, before handing the value to
/// sha-crypt (which would otherwise read some malformed values as a plain mismatch).
fn verify_sha_crypt(scheme: Scheme, value: &str, pw: &[u8]) -> Result<bool, PasswordError> {
    let (magic, hash_len) = if scheme == Scheme::Sha512Crypt {
        ("$6$", 86)
    } else {
        ("$5$", 43)
    };
    let rest = value
        .strip_prefix(magic)
        .ok_or_else(|| malformed(scheme, "wrong prefix"))?;
    let mut fields: Vec<&str> = rest.split('$').collect();
    if fields.first().is_some_and(|f| f.starts_with("rounds=")) {
        let rounds = fields.remove(0).trim_start_matches("rounds=");
        let valid = !rounds.is_empty()
            && rounds.bytes().all(|b| b.is_ascii_digit())
            && rounds
                .parse::<u32>()
                .is_ok_and(|r| (1_000..=999_999_999).contains(&r));
        if !valid {
            // glibc never writes a rounds value outside 1000..=999999999.
            return Err(malformed(scheme, "invalid rounds"));
        }
    }
    let [salt, hash] = fields.as_slice() else {
        return Err(malformed(scheme, "expected salt and hash fields"));
    };
    if salt.len() > 16 || !salt.bytes().all(is_crypt64) {
        return Err(malformed(scheme, "invalid salt"));
    }
    if hash.len() != hash_len || !hash.bytes().all(is_crypt64) {
        return Err(malformed(scheme, "hash has the wrong length or characters"));
    }
    if salt.is_empty() {
        // glibc accepts `$6$$hash`; sha-crypt's MCF parser does not, pwhash does.
        return pwhash_checksum_matches(scheme, value, hash, pw);
    }
    match ShaCrypt::default().verify_password(pw, value) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::PasswordInvalid) => Ok(false),
        Err(_) => Err(malformed(scheme, "rejected by sha-crypt")),
    }
}

/// Recomputes a validated `$n$…` value with pwhash and compares its last field (the checksum)
/// with `checksum` in constant time.
fn pwhash_checksum_matches(
    scheme: Scheme,
    value: &str,
    checksum: &str,
    pw: &[u8],
) -> Result<bool, PasswordError> {
    let computed =
        pwhash::unix::crypt(pw, value).map_err(|_| malformed(scheme, "rejected by pwhash"))?;
    let computed_checksum = computed.rsplit('$').next().unwrap_or_default();
    Ok(bool::from(
        computed_checksum.as_bytes().ct_eq(checksum.as_bytes()),
    ))
}

/// `$1$salt$hash`, salt up to 8 characters, hash 22: computed with pwhash.
fn verify_md5_crypt(value: &str, pw: &[u8]) -> Result<bool, PasswordError> {
    let scheme = Scheme::Md5Crypt;
    let rest = value
        .strip_prefix("$1$")
        .ok_or_else(|| malformed(scheme, "wrong prefix"))?;
    let Some((salt, hash)) = rest.split_once('$') else {
        return Err(malformed(scheme, "expected salt and hash fields"));
    };
    // pwhash only takes salts in the crypt alphabet; it is what every generator writes.
    if salt.len() > 8 || !salt.bytes().all(is_crypt64) {
        return Err(malformed(scheme, "invalid salt"));
    }
    if hash.len() != 22 || !hash.bytes().all(is_crypt64) {
        return Err(malformed(scheme, "hash has the wrong length or characters"));
    }
    pwhash_checksum_matches(scheme, value, hash, pw)
}

/// Traditional 13-character DES crypt (MySQL `ENCRYPT()`): computed with pwhash.
fn verify_des_crypt(value: &str, pw: &[u8]) -> Result<bool, PasswordError> {
    let scheme = Scheme::DesCrypt;
    if value.len() != 13 || !value.bytes().all(is_crypt64) {
        return Err(malformed(scheme, "not 13 characters of the crypt alphabet"));
    }
    let computed =
        pwhash::unix::crypt(pw, value).map_err(|_| malformed(scheme, "rejected by DES crypt"))?;
    Ok(bool::from(computed.as_bytes().ct_eq(value.as_bytes())))
}

fn verify_bcrypt(value: &str, pw: &[u8]) -> Result<bool, PasswordError> {
    let scheme = Scheme::BlfCrypt;
    match bcrypt::verify(pw, value) {
        Ok(matched) => Ok(matched),
        Err(bcrypt::BcryptError::CostNotAllowed(_)) => Err(PasswordError::Unsupported {
            scheme: scheme.name(),
            reason: "cost outside 4..=31",
        }),
        Err(_) => Err(malformed(scheme, "not a valid bcrypt hash")),
    }
}

/// Plaintext, optionally hex- or base64-encoded (`{PLAIN.B64}`). Both sides are hashed before
/// the constant-time comparison, so that the comparison does not leak the length either.
fn verify_plain(encoding: Option<Encoding>, value: &str, pw: &[u8]) -> Result<bool, PasswordError> {
    let scheme = Scheme::Plain;
    let stored = match encoding {
        None => value.as_bytes().to_vec(),
        Some(Encoding::Hex) => decode_hex(value).ok_or_else(|| malformed(scheme, "bad hex"))?,
        Some(Encoding::Base64) => B64
            .decode(value)
            .map_err(|_| malformed(scheme, "bad base64"))?,
    };
    let a = Sha512::digest(&stored);
    let b = Sha512::digest(pw);
    Ok(bool::from(a[..].ct_eq(&b[..])))
}

/// The SHA/SSHA/MD5 digest family.
fn verify_digest(
    scheme: Scheme,
    encoding: Option<Encoding>,
    value: &str,
    pw: &[u8],
) -> Result<bool, PasswordError> {
    let Some((alg, salted, default_encoding)) = scheme.digest_params() else {
        return Err(malformed(scheme, "not a digest scheme"));
    };
    let len = alg.len();
    let raw = match encoding {
        Some(enc) => decode(enc, value),
        None => match decode(default_encoding, value) {
            // Dovecot falls back from hex to base64; for the unsalted digests also accept
            // the other encoding when its length is exactly right.
            Some(raw) if salted || raw.len() == len => Some(raw),
            first => {
                let other = match default_encoding {
                    Encoding::Hex => Encoding::Base64,
                    Encoding::Base64 => Encoding::Hex,
                };
                let fallback_ok = default_encoding == Encoding::Hex || !salted;
                decode(other, value)
                    .filter(|raw| fallback_ok && raw.len() == len)
                    .or(first)
            }
        },
    };
    let Some(raw) = raw else {
        return Err(malformed(scheme, "bad base64 or hex encoding"));
    };
    if salted {
        if raw.len() <= len {
            return Err(malformed(scheme, "too short to hold a salt"));
        }
        let (digest, salt) = raw.split_at(len);
        Ok(bool::from(alg.digest(pw, salt).as_slice().ct_eq(digest)))
    } else {
        if raw.len() != len {
            return Err(malformed(scheme, "digest has the wrong length"));
        }
        Ok(bool::from(alg.digest(pw, &[]).as_slice().ct_eq(&raw)))
    }
}

/// Standard base64, padding optional, non-zero trailing bits tolerated (as Dovecot does).
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn decode(encoding: Encoding, value: &str) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => decode_hex(value),
        Encoding::Base64 => B64.decode(value).ok(),
    }
}

fn decode_hex(value: &str) -> Option<Vec<u8>> {
    const fn nibble(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    if value.is_empty() || !value.len().is_multiple_of(2) {
        return None;
    }
    value
        .as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((nibble(*hi)? << 4) | nibble(*lo)?),
            _ => None,
        })
        .collect()
}

/// Digest algorithms of the SHA/SSHA/MD5 family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Alg {
    const fn len(self) -> usize {
        match self {
            Self::Md5 => 16,
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// Digest of `password || salt`.
    fn digest(self, password: &[u8], salt: &[u8]) -> Vec<u8> {
        fn run<D: Digest>(password: &[u8], salt: &[u8]) -> Vec<u8> {
            D::new()
                .chain_update(password)
                .chain_update(salt)
                .finalize()
                .to_vec()
        }
        match self {
            Self::Md5 => run::<Md5>(password, salt),
            Self::Sha1 => run::<Sha1>(password, salt),
            Self::Sha256 => run::<Sha256>(password, salt),
            Self::Sha512 => run::<Sha512>(password, salt),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Every vector below hashes the password "secret" unless its name ends in _UTF8 (password
    // "pässwörd", UTF-8). They were generated on 2026-11-23 with reference implementations:
    //  - Python 3.11.7 `crypt.crypt` (glibc libcrypt) for $6$, $5$, $1$ and DES;
    //  - `openssl passwd -6/-5/-1 -salt …` (OpenSSL 3.0.19);
    //  - Python `bcrypt` 5.0.0 (`bcrypt.hashpw(pw, bcrypt.gensalt(rounds=5, prefix=…))`);
    //  - Python `argon2-cffi` 25.1.0 (libargon2): `PasswordHasher(…).hash(pw, salt=…)` and
    //    `argon2.low_level.hash_secret(…, version=16)`;
    //  - Python `hashlib` + `base64` for the SHA/SSHA/MD5 digest family, with
    //    salt = b"\x01\x02\x03\x04salt" and base64(digest(pw + salt) + salt).

    const PW: &str = "secret";
    const PW_UTF8: &str = "pässwörd";

    /// `crypt.crypt("secret", "$6$saltsalt$")`
    const SHA512_CRYPT: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    /// `crypt.crypt("secret", "$6$rounds=10000$Zr4nd0mS4lt16chr$")`
    const SHA512_CRYPT_ROUNDS: &str = "$6$rounds=10000$Zr4nd0mS4lt16chr$Jb8FtD0QZGJceXytSuzdi3I6qUqZvFhPENbsDXgX0snp93SbosbXo49Kie2zdwWvbItf4CUKZp5k9dsyWQVjK/";
    /// `crypt.crypt("pässwörd", "$6$uTf8SaLt$")`
    const SHA512_CRYPT_UTF8: &str = "$6$uTf8SaLt$6kzmpnTTyEGqQX6Sr3fOavfPml3Yh/gm..Kg92PEf1foS2/GhSy0gZzjjMCOtH9L.toxKojg8GDQJUfaRbJlR.";
    /// `openssl passwd -6 -salt OpEnSsLsAlT secret`
    const SHA512_CRYPT_OPENSSL: &str = "$6$OpEnSsLsAlT$zG9iEWklgL/5.fp4Y.AH9pmXf14SHMlDpAA8wzSruMjubZ.jfJQd//n3ZZ6Fa7jjMveLI.t13Fch1yYC4tj09.";
    /// `crypt.crypt("secret", "$6$$")`: glibc accepts an empty salt.
    const SHA512_CRYPT_NO_SALT: &str = "$6$$2M9DchxW4txWyTYoZrH9D3VvAAQxBpEezYsLY6Cao.jwzEXpyL9xwip9hiUZX7GqTqe/E/z6iKvZqXUuqniQH.";
    /// `crypt.crypt("secret", "$5$saltsalt$")`
    const SHA256_CRYPT: &str = "$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA";
    /// `crypt.crypt("secret", "$5$rounds=2000$abcdefgh$")`
    const SHA256_CRYPT_ROUNDS: &str =
        "$5$rounds=2000$abcdefgh$XBRXX9zoBDpGbKdvcfMAWt0YeAUBDNNlgztxJdk6Oy9";
    /// `openssl passwd -5 -salt OpEnSsLsAlT secret`
    const SHA256_CRYPT_OPENSSL: &str = "$5$OpEnSsLsAlT$pWNRwpuLY/RCXszZbOkEow733mOj6TqREM.nyiNH/g0";
    /// `crypt.crypt("secret", "$1$saltsalt$")`
    const MD5_CRYPT: &str = "$1$saltsalt$9xy1btjgzLYfb7hivXtC//";
    /// `crypt.crypt("secret", "$1$$")`
    const MD5_CRYPT_NO_SALT: &str = "$1$$ysVNzQc4CTMkp5daOdZ.3/";
    /// `openssl passwd -1 -salt 0penSSL1 secret`
    const MD5_CRYPT_OPENSSL: &str = "$1$0penSSL1$DYNJRcpL7T0zOfrvKzKun.";
    /// `crypt.crypt("secret", "ab")`: DES, as MySQL `ENCRYPT('secret', 'ab')` makes it.
    const DES_CRYPT: &str = "abNANd1rDfiNc";
    /// `crypt.crypt("secret", "./")`
    const DES_CRYPT_2: &str = "./17m29LFAflg";
    /// Python bcrypt: `bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=5, prefix=b"2b"))`;
    /// this machine's libxcrypt `crypt.crypt("secret", "$2b$05$m6DZ55BzXXzKvYlzoepjNe")`
    /// gives the same string.
    const BCRYPT_2B: &str = "$2b$05$m6DZ55BzXXzKvYlzoepjNe/ufpUzMEggLNfJuXJ37LG.f63a1LjCS";
    /// The same hash with the `$2y$` prefix (PHP's name for the same algorithm); Python
    /// `bcrypt.checkpw(b"secret", …)` accepts it.
    const BCRYPT_2Y: &str = "$2y$05$m6DZ55BzXXzKvYlzoepjNe/ufpUzMEggLNfJuXJ37LG.f63a1LjCS";
    /// Python bcrypt with `prefix=b"2a"`.
    const BCRYPT_2A: &str = "$2a$05$OHgEFom6CbqBmM0FrKLpdu49jdtlVikG39yP8IGdLR5bdBmtzlQoW";
    /// `base64(sha1(pw + salt) + salt)`
    const SSHA: &str = "QxWRhccNco81WkE5NvgyzxlVKSQBAgMEc2FsdA==";
    /// `(sha1(pw + salt) + salt).hex()`
    const SSHA_HEX: &str = "43159185c70d728f355a413936f832cf195529240102030473616c74";
    /// `base64(sha256(pw + salt) + salt)`
    const SSHA256: &str = "fJhWqXlqfephZiMt5qR2HTjaBss8L+3UZGjOs8ZK3AsBAgMEc2FsdA==";
    /// `base64(sha512(pw + salt) + salt)`
    const SSHA512: &str = "N85WkG8LIAiS6lMS2LFYMsqMJFuxP0SnWQ/GyrI7mufZv570iupVbCPNjpdcUWvsmkexD47e1Lm2J8HwEnZg4gECAwRzYWx0";
    /// `base64(sha512("pässwörd".encode() + salt) + salt)`
    const SSHA512_UTF8: &str = "PE4etQiy8n/p6GT8B7qa1D1qIvFdSb5TxjBC+g62SGn/c9tnbRHSsh0tE3Swr092LIMkpbFHihAcE2w2H+UqXAECAwRzYWx0";
    /// `base64(md5(pw + salt) + salt)`
    const SMD5: &str = "eypKDAO9w+W+bAT0pvS6EgECAwRzYWx0";
    /// `base64(sha1(pw))`
    const SHA1: &str = "5en6G6MezRroT3XKqkdPOmY/BfQ=";
    /// `sha1(pw).hexdigest()`
    const SHA1_HEX: &str = "e5e9fa1ba31ecd1ae84f75caaa474f3a663f05f4";
    /// `base64(sha256(pw))`
    const SHA256: &str = "K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols=";
    /// `sha256(pw).hexdigest()`
    const SHA256_HEX: &str = "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b";
    /// `base64(sha512(pw))`
    const SHA512: &str =
        "vSsar3708Jvp9Szi2NWZZ02Bqp1qRCFpbcTZPdBhnWgs5WtNZKnvCXdhztmeD2cmW192CF5bDufKRpayrW/isg==";
    /// `md5(pw).hexdigest()`
    const PLAIN_MD5: &str = "5ebe2294ecd0e0f08eab7690d2a6ee69";
    /// `base64(md5(pw))`
    const LDAP_MD5: &str = "Xr4ilOzQ4PCOq3aQ0qbuaQ==";
    /// argon2-cffi: `PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1,
    /// type=Type.ID).hash("secret", salt=b"somesaltsomesalt")`
    const ARGON2ID_SMALL: &str = "$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w";
    /// argon2-cffi defaults (t=3, m=65536, p=4): `PasswordHasher(type=Type.ID).hash("secret",
    /// salt=b"0123456789abcdef")`
    const ARGON2ID_DEFAULT: &str = "$argon2id$v=19$m=65536,t=3,p=4$MDEyMzQ1Njc4OWFiY2RlZg$s7HDvht1s+JaAdJ1qoLH/2c4KCL7V5DME2Cyd+d1XPI";
    /// argon2-cffi: `PasswordHasher(time_cost=1, memory_cost=512, parallelism=2,
    /// type=Type.ID).hash("pässwörd", salt=b"saltysaltysalty!")`
    const ARGON2ID_UTF8: &str = "$argon2id$v=19$m=512,t=1,p=2$c2FsdHlzYWx0eXNhbHR5IQ$D+nCD0WKWU6oAgcI1EUeagX4QvMVHkToRLbblj9NDlI";
    /// argon2-cffi: `PasswordHasher(time_cost=3, memory_cost=4096, parallelism=1,
    /// type=Type.I).hash("secret", salt=b"anothersalt12345")`
    const ARGON2I: &str = "$argon2i$v=19$m=4096,t=3,p=1$YW5vdGhlcnNhbHQxMjM0NQ$ljeY4NrThGwCHdxlt1Z7r0jCZ3qvV5kc6v4qrYHBh50";
    /// argon2-cffi: `hash_secret(b"secret", b"versionsixteen!!", time_cost=2,
    /// memory_cost=1024, parallelism=1, hash_len=32, type=Type.I, version=16)` with its
    /// `v=16$` segment removed; `argon2.low_level.verify_secret` accepts the result (libargon2
    /// reads a missing version as 0x10).
    const ARGON2I_NO_VERSION: &str = "$argon2i$m=1024,t=2,p=1$dmVyc2lvbnNpeHRlZW4hIQ$ywV+JfTnxbRLvqrySfF2zYq0lN4RsFrpW/UQw0TlFuE";

    const MATCH_REHASH: Verified = Verified::Match { rehash: true };
    const MATCH_KEEP: Verified = Verified::Match { rehash: false };

    /// `(prefix, stored value, password, canonical scheme)` for every vector.
    const VECTORS: &[(&str, &str, &str, &str)] = &[
        ("ARGON2ID", ARGON2ID_SMALL, PW, "ARGON2ID"),
        ("ARGON2ID", ARGON2ID_DEFAULT, PW, "ARGON2ID"),
        ("ARGON2ID", ARGON2ID_UTF8, PW_UTF8, "ARGON2ID"),
        ("ARGON2I", ARGON2I, PW, "ARGON2I"),
        ("ARGON2I", ARGON2I_NO_VERSION, PW, "ARGON2I"),
        ("SHA512-CRYPT", SHA512_CRYPT, PW, "SHA512-CRYPT"),
        ("SHA512-CRYPT", SHA512_CRYPT_ROUNDS, PW, "SHA512-CRYPT"),
        ("SHA512-CRYPT", SHA512_CRYPT_UTF8, PW_UTF8, "SHA512-CRYPT"),
        ("SHA512-CRYPT", SHA512_CRYPT_OPENSSL, PW, "SHA512-CRYPT"),
        ("SHA512-CRYPT", SHA512_CRYPT_NO_SALT, PW, "SHA512-CRYPT"),
        ("SHA256-CRYPT", SHA256_CRYPT, PW, "SHA256-CRYPT"),
        ("SHA256-CRYPT", SHA256_CRYPT_ROUNDS, PW, "SHA256-CRYPT"),
        ("SHA256-CRYPT", SHA256_CRYPT_OPENSSL, PW, "SHA256-CRYPT"),
        ("MD5-CRYPT", MD5_CRYPT, PW, "MD5-CRYPT"),
        ("MD5-CRYPT", MD5_CRYPT_OPENSSL, PW, "MD5-CRYPT"),
        ("MD5-CRYPT", MD5_CRYPT_NO_SALT, PW, "MD5-CRYPT"),
        ("MD5", MD5_CRYPT, PW, "MD5-CRYPT"),
        ("BLF-CRYPT", BCRYPT_2B, PW, "BLF-CRYPT"),
        ("BLF-CRYPT", BCRYPT_2Y, PW, "BLF-CRYPT"),
        ("BLF-CRYPT", BCRYPT_2A, PW, "BLF-CRYPT"),
        ("CRYPT", DES_CRYPT, PW, "CRYPT"),
        ("CRYPT", DES_CRYPT_2, PW, "CRYPT"),
        ("DES-CRYPT", DES_CRYPT, PW, "CRYPT"),
        ("CRYPT", SHA512_CRYPT, PW, "SHA512-CRYPT"),
        ("CRYPT", SHA256_CRYPT, PW, "SHA256-CRYPT"),
        ("CRYPT", MD5_CRYPT, PW, "MD5-CRYPT"),
        ("CRYPT", BCRYPT_2Y, PW, "BLF-CRYPT"),
        ("SSHA", SSHA, PW, "SSHA"),
        ("SSHA.HEX", SSHA_HEX, PW, "SSHA"),
        ("SSHA256", SSHA256, PW, "SSHA256"),
        ("SSHA512", SSHA512, PW, "SSHA512"),
        ("SSHA512.B64", SSHA512, PW, "SSHA512"),
        ("SSHA512.BASE64", SSHA512, PW, "SSHA512"),
        ("SSHA512", SSHA512_UTF8, PW_UTF8, "SSHA512"),
        ("SMD5", SMD5, PW, "SMD5"),
        ("SHA", SHA1, PW, "SHA1"),
        ("SHA1", SHA1, PW, "SHA1"),
        ("SHA1.HEX", SHA1_HEX, PW, "SHA1"),
        ("SHA1", SHA1_HEX, PW, "SHA1"),
        ("SHA256", SHA256, PW, "SHA256"),
        ("SHA256.HEX", SHA256_HEX, PW, "SHA256"),
        ("SHA256", SHA256_HEX, PW, "SHA256"),
        ("SHA512", SHA512, PW, "SHA512"),
        ("PLAIN-MD5", PLAIN_MD5, PW, "PLAIN-MD5"),
        ("MD5", PLAIN_MD5, PW, "PLAIN-MD5"),
        ("PLAIN-MD5", LDAP_MD5, PW, "PLAIN-MD5"),
        ("LDAP-MD5", LDAP_MD5, PW, "LDAP-MD5"),
        ("PLAIN", PW, PW, "PLAIN"),
        ("CLEARTEXT", PW, PW, "PLAIN"),
        ("PLAIN", PW_UTF8, PW_UTF8, "PLAIN"),
        ("PLAIN.B64", "c2VjcmV0", PW, "PLAIN"),
        ("PLAIN.HEX", "736563726574", PW, "PLAIN"),
    ];

    /// A wrong password that differs from the right one in one character only.
    fn wrong(password: &str) -> String {
        let mut chars: Vec<char> = password.chars().collect();
        chars.pop();
        chars.push('X');
        chars.into_iter().collect()
    }

    fn expected_match(scheme: &str) -> Verified {
        if scheme == "ARGON2ID" {
            MATCH_KEEP
        } else {
            MATCH_REHASH
        }
    }

    #[test]
    fn every_vector_with_prefix() {
        for &(prefix, value, pw, scheme) in VECTORS {
            let stored = format!("{{{prefix}}}{value}");
            // The default scheme must not matter when there is a prefix.
            for default in ["PLAIN", "CRYPT", "SSHA512"] {
                assert_eq!(
                    verify(&stored, pw, default),
                    Ok(expected_match(scheme)),
                    "{stored} right password, default {default}"
                );
            }
            assert_eq!(
                verify(&stored, &wrong(pw), "PLAIN"),
                Ok(Verified::Mismatch),
                "{stored} wrong password"
            );
            assert_eq!(
                verify(&stored, "", "PLAIN"),
                Ok(Verified::Mismatch),
                "{stored} empty"
            );
            assert_eq!(
                scheme_of(&stored, "PLAIN"),
                Some(scheme),
                "{stored} scheme_of"
            );
        }
    }

    #[test]
    fn prefix_is_case_insensitive() {
        for &(prefix, value, pw, scheme) in VECTORS {
            for name in [prefix.to_ascii_lowercase(), mixed_case(prefix)] {
                let stored = format!("{{{name}}}{value}");
                assert_eq!(
                    verify(&stored, pw, "PLAIN"),
                    Ok(expected_match(scheme)),
                    "{stored}"
                );
                assert_eq!(scheme_of(&stored, "PLAIN"), Some(scheme), "{stored}");
            }
        }
    }

    fn mixed_case(s: &str) -> String {
        s.chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            })
            .collect()
    }

    #[test]
    fn without_prefix_by_shape() {
        let shaped = [
            (ARGON2ID_SMALL, PW, "ARGON2ID"),
            (ARGON2ID_UTF8, PW_UTF8, "ARGON2ID"),
            (ARGON2I, PW, "ARGON2I"),
            (ARGON2I_NO_VERSION, PW, "ARGON2I"),
            (SHA512_CRYPT, PW, "SHA512-CRYPT"),
            (SHA512_CRYPT_ROUNDS, PW, "SHA512-CRYPT"),
            (SHA512_CRYPT_UTF8, PW_UTF8, "SHA512-CRYPT"),
            (SHA512_CRYPT_OPENSSL, PW, "SHA512-CRYPT"),
            (SHA256_CRYPT, PW, "SHA256-CRYPT"),
            (SHA256_CRYPT_ROUNDS, PW, "SHA256-CRYPT"),
            (SHA256_CRYPT_OPENSSL, PW, "SHA256-CRYPT"),
            (MD5_CRYPT, PW, "MD5-CRYPT"),
            (MD5_CRYPT_OPENSSL, PW, "MD5-CRYPT"),
            (BCRYPT_2B, PW, "BLF-CRYPT"),
            (BCRYPT_2Y, PW, "BLF-CRYPT"),
            (BCRYPT_2A, PW, "BLF-CRYPT"),
        ];
        for (value, pw, scheme) in shaped {
            // `$…$` shapes win over any default scheme, PLAIN included.
            for default in ["PLAIN", "CRYPT", "SHA512-CRYPT", "SSHA512"] {
                assert_eq!(
                    verify(value, pw, default),
                    Ok(expected_match(scheme)),
                    "{value}"
                );
                assert_eq!(
                    verify(value, &wrong(pw), default),
                    Ok(Verified::Mismatch),
                    "{value}"
                );
                assert_eq!(scheme_of(value, default), Some(scheme), "{value}");
            }
        }
        // 13-character DES is recognised unless the default scheme is plaintext.
        for value in [DES_CRYPT, DES_CRYPT_2] {
            for default in ["CRYPT", "SHA512-CRYPT", "SSHA512", "ARGON2ID"] {
                assert_eq!(
                    verify(value, PW, default),
                    Ok(MATCH_REHASH),
                    "{value} {default}"
                );
                assert_eq!(verify(value, "secreX", default), Ok(Verified::Mismatch));
                assert_eq!(scheme_of(value, default), Some("CRYPT"));
            }
            assert_eq!(verify(value, PW, "PLAIN"), Ok(Verified::Mismatch));
            assert_eq!(verify(value, value, "PLAIN"), Ok(MATCH_REHASH));
            assert_eq!(scheme_of(value, "PLAIN"), Some("PLAIN"));
        }
    }

    #[test]
    fn without_prefix_by_default_scheme() {
        let by_default = [
            ("SSHA", SSHA, PW),
            ("SSHA.HEX", SSHA_HEX, PW),
            ("SSHA256", SSHA256, PW),
            ("SSHA512", SSHA512, PW),
            ("ssha512", SSHA512_UTF8, PW_UTF8),
            ("{SSHA512}", SSHA512, PW),
            ("SMD5", SMD5, PW),
            ("SHA", SHA1, PW),
            ("sha1", SHA1_HEX, PW),
            ("SHA256", SHA256, PW),
            ("SHA512", SHA512, PW),
            ("PLAIN-MD5", PLAIN_MD5, PW),
            ("MD5", PLAIN_MD5, PW),
            ("LDAP-MD5", LDAP_MD5, PW),
            ("PLAIN", PW, PW),
            ("cleartext", PW_UTF8, PW_UTF8),
        ];
        for (default, value, pw) in by_default {
            assert_eq!(
                verify(value, pw, default),
                Ok(MATCH_REHASH),
                "{default} {value}"
            );
            assert_eq!(verify(value, &wrong(pw), default), Ok(Verified::Mismatch));
        }
    }

    #[test]
    fn rehash_flag() {
        assert_eq!(verify(ARGON2ID_SMALL, PW, "PLAIN"), Ok(MATCH_KEEP));
        assert_eq!(
            verify(&format!("{{ARGON2ID}}{ARGON2ID_SMALL}"), PW, "CRYPT"),
            Ok(MATCH_KEEP)
        );
        assert_eq!(verify(ARGON2I, PW, "PLAIN"), Ok(MATCH_REHASH));
        // The PHC identifier decides, as libsodium does: {ARGON2ID} holding argon2i is argon2i.
        assert_eq!(
            verify(&format!("{{ARGON2ID}}{ARGON2I}"), PW, "PLAIN"),
            Ok(MATCH_REHASH)
        );
        assert_eq!(
            verify(&format!("{{ARGON2I}}{ARGON2ID_SMALL}"), PW, "PLAIN"),
            Ok(MATCH_KEEP)
        );
        assert_eq!(verify(SHA512_CRYPT, PW, "PLAIN"), Ok(MATCH_REHASH));
        assert_eq!(verify("{PLAIN}secret", PW, "PLAIN"), Ok(MATCH_REHASH));
    }

    #[test]
    fn hash_new_round_trip() {
        let Ok(hash) = hash_new("correct horse battery staple") else {
            panic!("hash_new failed");
        };
        assert!(hash.starts_with("{ARGON2ID}$argon2id$v=19$m="), "{hash}");
        assert_eq!(
            verify(&hash, "correct horse battery staple", "PLAIN"),
            Ok(MATCH_KEEP)
        );
        assert_eq!(
            verify(&hash, "correct horse battery stapl", "PLAIN"),
            Ok(Verified::Mismatch)
        );
        assert_eq!(scheme_of(&hash, "PLAIN"), Some("ARGON2ID"));
        // Without the prefix too.
        let bare = hash.trim_start_matches("{ARGON2ID}");
        assert_eq!(
            verify(bare, "correct horse battery staple", "CRYPT"),
            Ok(MATCH_KEEP)
        );
        // Random salt: two hashes of one password differ.
        assert_ne!(hash_new("x").ok(), hash_new("x").ok());
        // Non-ASCII and empty passwords work too.
        let utf8 = hash_new(PW_UTF8).unwrap_or_default();
        assert_eq!(verify(&utf8, PW_UTF8, "PLAIN"), Ok(MATCH_KEEP));
        let empty = hash_new("").unwrap_or_default();
        assert_eq!(verify(&empty, "", "PLAIN"), Ok(MATCH_KEEP));
        assert_eq!(verify(&empty, " ", "PLAIN"), Ok(Verified::Mismatch));
    }

    fn assert_malformed(stored: &str, default: &str) {
        match verify(stored, PW, default) {
            Err(PasswordError::Malformed { .. } | PasswordError::Unsupported { .. }) => {}
            other => panic!("{stored:?} (default {default}): expected an error, got {other:?}"),
        }
    }

    #[test]
    fn malformed_values_are_errors() {
        let truncated_6 = &SHA512_CRYPT[..SHA512_CRYPT.len() - 5];
        let truncated_5 = &SHA256_CRYPT[..SHA256_CRYPT.len() - 1];
        let truncated_1 = &MD5_CRYPT[..MD5_CRYPT.len() - 1];
        let truncated_2 = &BCRYPT_2B[..BCRYPT_2B.len() - 1];
        let truncated_argon = &ARGON2ID_SMALL[..ARGON2ID_SMALL.len() - 10];
        for (stored, default) in [
            (truncated_6, "PLAIN"),
            (truncated_6, "CRYPT"),
            ("$6$", "PLAIN"),
            ("$6$saltsalt", "PLAIN"),
            ("$6$saltsalt$", "PLAIN"),
            (
                "$6$rounds=abc$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
                "PLAIN",
            ),
            (
                "$6$rounds=500$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
                "PLAIN",
            ),
            (
                "$6$rounds=$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
                "PLAIN",
            ),
            (
                "$6$rounds=5000$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
                "PLAIN",
            ),
            (
                "$6$salt\x01salt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1",
                "PLAIN",
            ),
            (
                "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1$extra",
                "PLAIN",
            ),
            (truncated_5, "PLAIN"),
            (truncated_1, "PLAIN"),
            ("$1$saltsalt", "PLAIN"),
            ("$1$\u{1}$9xy1btjgzLYfb7hivXtC//", "PLAIN"),
            ("$1$toolongsalt$9xy1btjgzLYfb7hivXtC//", "PLAIN"),
            (truncated_2, "PLAIN"),
            (
                "$2b$99$m6DZ55BzXXzKvYlzoepjNe/ufpUzMEggLNfJuXJ37LG.f63a1LjCS",
                "PLAIN",
            ),
            (
                "$2b$05$m6DZ55BzXXzKvYlzoepjNe/ufpUzMEggLNfJuXJ37LG.f63a1Lj!S",
                "PLAIN",
            ),
            (truncated_argon, "PLAIN"),
            (
                "$argon2id$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA",
                "PLAIN",
            ),
            ("$argon2id$v=19$m=1024,t=2,p=1", "PLAIN"),
            ("$argon2id$", "PLAIN"),
            (
                "$argon2id$v=99$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w",
                "PLAIN",
            ),
            (
                "$argon2id$v=19$m=4294967295,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w",
                "PLAIN",
            ),
            (
                "$argon2id$v=19$m=1,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w",
                "PLAIN",
            ),
            (
                "$argon2id$v=19$t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w",
                "PLAIN",
            ),
            ("{ARGON2ID}garbage", "PLAIN"),
            (
                "{ARGON2ID}$argon2d$v=19$m=1024,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$OHc9SRN0/XEiuUUihEOCXBYjZ7cbpwHqG3uM3/Rhr/w",
                "PLAIN",
            ),
            ("{SHA512-CRYPT}garbage", "PLAIN"),
            ("{CRYPT}abc", "PLAIN"),
            ("{CRYPT}ab!ANd1rDfiNc", "PLAIN"),
            ("{CRYPT}", "PLAIN"),
            (
                "{BLF-CRYPT}$2x$05$m6DZ55BzXXzKvYlzoepjNe/ufpUzMEggLNfJuXJ37LG.f63a1LjCS",
                "PLAIN",
            ),
            ("", "CRYPT"),
            ("not a hash", "CRYPT"),
            ("not a hash", "ARGON2ID"),
            ("{SSHA}not*base64!", "PLAIN"),
            ("{SSHA}QxWRhccNco81WkE5NvgyzxlVKSQBAgMEc2FsdA=?", "PLAIN"),
            ("{SSHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "PLAIN"),
            ("{SSHA}", "PLAIN"),
            ("{SSHA.HEX}zz", "PLAIN"),
            ("{SSHA512}QxWRhccNco81WkE5NvgyzxlVKSQBAgMEc2FsdA==", "PLAIN"),
            ("not*base64!", "SSHA512"),
            ("{SHA}QxWRhccNco81WkE5NvgyzxlVKSQBAgMEc2FsdA==", "PLAIN"),
            ("{SHA256}5en6G6MezRroT3XKqkdPOmY/BfQ=", "PLAIN"),
            ("{SHA512}", "PLAIN"),
            ("{PLAIN-MD5}5ebe2294ecd0e0f08eab7690d2a6ee6", "PLAIN"),
            ("{PLAIN-MD5}nothex", "PLAIN"),
            ("{PLAIN.B64}!!!", "PLAIN"),
            ("{PLAIN.HEX}abc", "PLAIN"),
        ] {
            assert_malformed(stored, default);
        }
    }

    #[test]
    fn unsupported_crypt_methods_are_errors() {
        // libxcrypt on this machine: crypt.crypt("secret", "$y$j9T$saltsaltsaltsalt$"),
        // crypt.crypt("secret", "_J9..salt") and the $2x$ form of BCRYPT_2B.
        for value in [
            "$y$j9T$saltsaltsaltsalt$.Zt5W26jjocuW0wIHGgB6AJelofw6GEpOypHGyow2y5",
            "_J9..saltLXKE4peqNCg",
            "$2x$05$m6DZ55BzXXzKvYlzoepjNe/ufpUzMEggLNfJuXJ37LG.f63a1LjCS",
        ] {
            for stored in [format!("{{CRYPT}}{value}"), value.to_owned()] {
                assert!(
                    matches!(
                        verify(&stored, PW, "CRYPT"),
                        Err(PasswordError::Unsupported {
                            scheme: "CRYPT",
                            ..
                        })
                    ),
                    "{stored}"
                );
            }
        }
    }

    #[test]
    fn validate_stored_parses_the_whole_value() {
        for &(prefix, value, _, scheme) in VECTORS {
            let stored = format!("{{{prefix}}}{value}");
            assert_eq!(validate_stored(&stored, "PLAIN"), Ok(scheme), "{stored}");
        }
        assert_eq!(validate_stored(SHA512_CRYPT, "PLAIN"), Ok("SHA512-CRYPT"));
        assert!(validate_stored("{SHA512-CRYPT}garbage", "PLAIN").is_err());
        assert!(validate_stored(&SHA512_CRYPT[..40], "PLAIN").is_err());
        assert!(validate_stored("{SSHA}!!", "PLAIN").is_err());
        assert!(validate_stored("{FOO}x", "PLAIN").is_err());
        assert!(validate_stored("x", "CRYPT").is_err());
    }

    #[test]
    fn unknown_schemes_are_errors() {
        assert_eq!(
            verify("{FOO}bar", PW, "PLAIN"),
            Err(PasswordError::UnknownScheme("FOO".to_owned()))
        );
        assert!(matches!(
            verify("{CRAM-MD5}abc", PW, "PLAIN"),
            Err(PasswordError::UnknownScheme(_))
        ));
        assert!(matches!(
            verify("{ARGON2ID.HEX}abc", PW, "PLAIN"),
            Err(PasswordError::UnknownScheme(_))
        ));
        assert!(matches!(
            verify("{SHA512-CRYPT.B64}abc", PW, "PLAIN"),
            Err(PasswordError::UnknownScheme(_))
        ));
        assert!(matches!(
            verify("plain text", PW, "FOO"),
            Err(PasswordError::UnknownScheme(_))
        ));
        assert!(matches!(
            verify("plain text", PW, ""),
            Err(PasswordError::UnknownScheme(_))
        ));
        // A prefix wins even when the default scheme is unknown.
        assert_eq!(verify("{PLAIN}secret", PW, "FOO"), Ok(MATCH_REHASH));
        // Shapes win too.
        assert_eq!(verify(SHA512_CRYPT, PW, "FOO"), Ok(MATCH_REHASH));
        assert_eq!(scheme_of("{FOO}bar", "PLAIN"), None);
        assert_eq!(scheme_of("bar", "FOO"), None);
        // Braces around something that is not a scheme name are not a prefix.
        assert_eq!(
            verify("{not a scheme}x", "{not a scheme}x", "PLAIN"),
            Ok(MATCH_REHASH)
        );
        assert_eq!(verify("{unclosed", "{unclosed", "PLAIN"), Ok(MATCH_REHASH));
    }

    #[test]
    fn scheme_of_reports_claimed_scheme_of_malformed_values() {
        assert_eq!(
            scheme_of("{SHA512-CRYPT}garbage", "PLAIN"),
            Some("SHA512-CRYPT")
        );
        assert_eq!(scheme_of("{CRYPT}$6$x", "PLAIN"), Some("SHA512-CRYPT"));
        assert_eq!(scheme_of("{SSHA}!!", "PLAIN"), Some("SSHA"));
        assert_eq!(scheme_of("$6$x", "PLAIN"), Some("SHA512-CRYPT"));
        assert_eq!(scheme_of("whatever", "SHA512-CRYPT"), Some("SHA512-CRYPT"));
        assert_eq!(scheme_of("whatever", "ssha512"), Some("SSHA512"));
    }

    #[test]
    fn errors_do_not_reveal_secrets() {
        let stored = "{SSHA}hunter2hunter2!";
        let err = verify(stored, "hunter2", "PLAIN")
            .err()
            .map(|e| format!("{e} {e:?}"));
        let Some(text) = err else {
            panic!("expected an error")
        };
        assert!(!text.contains("hunter2"), "{text}");
        let err = verify("x", "hunter2", "hunter2 password");
        assert!(
            matches!(&err, Err(PasswordError::UnknownScheme(s)) if !s.contains("hunter2")),
            "{err:?}"
        );
    }

    #[test]
    fn odd_inputs_never_panic() {
        let values = [
            "",
            "{",
            "}",
            "{}",
            "{}x",
            "{PLAIN}",
            "$",
            "$$",
            "$$$",
            "$1$",
            "$1$$",
            "$1$$$",
            "$2y$",
            "$2y$05$",
            "$5$",
            "$5$$$",
            "$6$rounds=999999999999$a$b",
            "$argon2i$",
            "$argon2id$$$$",
            "\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}\u{0}",
            "ääääääääääää",
            "äääääääääääää",
            "{SSHA}====",
            "{SHA}=",
            "{MD5}$1$",
            "{MD5}",
            "{PLAIN-MD5}",
            "{CRYPT}\u{1}\u{1}aaaaaaaaaaa",
            "{SMD5}AAAA",
            "{ARGON2I}$argon2i$v=19$m=8,t=1,p=1$$",
        ];
        for value in values {
            for default in [
                "PLAIN",
                "CRYPT",
                "SSHA",
                "PLAIN-MD5",
                "SHA512-CRYPT",
                "ARGON2ID",
                "BOGUS",
            ] {
                for pw in ["", "secret", "\u{0}", PW_UTF8] {
                    let _ = verify(value, pw, default);
                    let _ = scheme_of(value, default);
                }
            }
        }
    }
}
