//! Maildir file names: generating Dovecot-compatible unique names and parsing them back.
//!
//! A message file is named `<base>[:2,<flags>]` where
//! `base = <secs>.M<usecs>P<pid>Q<counter>.<host>,S=<size>,W=<vsize>`:
//! - `secs`, `usecs`: delivery time; Dovecot sorts new mail by them (it reads the digits after
//!   the first `M` in the middle part);
//! - `P<pid>Q<counter>`: our process id and a per-process delivery counter, so two deliveries
//!   in the same microsecond by the same process still differ (qmail's `Q` field);
//! - `host`: `gethostname()` with `/` written `\057` and `:` written `\072` (the Maildir spec);
//! - `S=`: the file size in bytes, used by Maildir++ quota and by Dovecot instead of `stat()`;
//! - `W=`: the "virtual" size, with every bare LF counted as CRLF (RFC822.SIZE), which Dovecot
//!   reads instead of scanning the file;
//! - `:2,` + flags: the info part, see [`crate::flags`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

static COUNTER: AtomicU64 = AtomicU64::new(0);
static HOSTNAME: OnceLock<String> = OnceLock::new();
static ESCAPED_HOSTNAME: OnceLock<String> = OnceLock::new();

/// This machine's host name as `gethostname()` returns it (`localhost` if that fails).
pub fn hostname() -> &'static str {
    HOSTNAME.get_or_init(|| {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned())
    })
}

/// Escapes a host name for a Maildir file name: `/` → `\057`, `:` → `\072`.
pub fn escape_hostname(host: &str) -> String {
    host.replace('/', "\\057").replace(':', "\\072")
}

fn escaped_hostname() -> &'static str {
    ESCAPED_HOSTNAME.get_or_init(|| escape_hostname(hostname()))
}

/// This process's id, asked of the kernel once (a `getpid` per delivered message otherwise).
fn pid() -> u32 {
    static PID: OnceLock<u32> = OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Generates a new unique base name (no info part) for a message of `size` bytes on disk and
/// `vsize` bytes with CRLF line endings.
pub fn generate(size: u64, vsize: u64) -> String {
    generate_at(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
        size,
        vsize,
    )
}

/// Like [`generate`] with a given time since the epoch (the counter still advances, so two
/// names for the same microsecond differ).
pub fn generate_at(now: Duration, size: u64, vsize: u64) -> String {
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed) + 1;
    format!(
        "{}.M{}P{}Q{}.{},S={},W={}",
        now.as_secs(),
        now.subsec_micros(),
        pid(),
        counter,
        escaped_hostname(),
        size,
        vsize
    )
}

/// A Maildir file name taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedName {
    /// Seconds since the epoch (the first part).
    pub secs: u64,
    /// The middle part as it is (`M…P…Q…` for ours, other deliverers differ).
    pub uniq: String,
    /// Microseconds, from `M<digits>` in the middle part.
    pub usecs: Option<u32>,
    /// Process id, from `P<digits>`.
    pub pid: Option<u32>,
    /// Delivery counter, from `Q<digits>`.
    pub counter: Option<u64>,
    /// Host name, still escaped.
    pub host: String,
    /// `S=` (file size), when present.
    pub size: Option<u64>,
    /// `W=` (virtual size), when present.
    pub vsize: Option<u64>,
    /// The info part after `:` (for example `2,S`), when present.
    pub info: Option<String>,
}

impl ParsedName {
    /// The base name: everything before the `:` info separator.
    pub fn base(name: &str) -> &str {
        name.split_once(':').map_or(name, |(b, _)| b)
    }
}

fn field<T: std::str::FromStr>(uniq: &str, letter: char) -> Option<T> {
    let mut rest = uniq;
    while let Some(pos) = rest.find(letter) {
        let digits: &str = &rest[pos + 1..];
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        if end > 0 {
            return digits[..end].parse().ok();
        }
        rest = digits;
    }
    None
}

/// Reads `,<kind>=<digits>` from a file name, as Dovecot does: the digits must be followed by
/// `,`, `:` or the end of the name.
pub fn size_field(name: &str, kind: char) -> Option<u64> {
    let base = ParsedName::base(name);
    let pat = format!(",{kind}=");
    let start = base.find(&pat)? + pat.len();
    let rest = &base[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    if end == 0 || !(rest[end..].is_empty() || rest[end..].starts_with(',')) {
        return None;
    }
    rest[..end].parse().ok()
}

/// Parses a Maildir file name of the form `<secs>.<uniq>.<host>[,k=v…][:info]`.
/// Returns `None` when it does not have that shape.
pub fn parse(name: &str) -> Option<ParsedName> {
    if name.contains('/') {
        return None;
    }
    let (base, info) = match name.split_once(':') {
        Some((b, i)) => (b, Some(i.to_owned())),
        None => (name, None),
    };
    let ident = base.split_once(',').map_or(base, |(b, _)| b);
    let (secs, rest) = ident.split_once('.')?;
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (uniq, host) = rest.split_once('.')?;
    if uniq.is_empty() || host.is_empty() {
        return None;
    }
    Some(ParsedName {
        secs: secs.parse().ok()?,
        uniq: uniq.to_owned(),
        usecs: field(uniq, 'M'),
        pid: field(uniq, 'P'),
        counter: field(uniq, 'Q'),
        host: host.to_owned(),
        size: size_field(base, 'S'),
        vsize: size_field(base, 'W'),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_parse_back() {
        let a = generate(123, 130);
        let b = generate(123, 130);
        assert_ne!(a, b);
        let p = parse(&a).expect("parses");
        assert_eq!(p.pid, Some(std::process::id()));
        assert_eq!(p.size, Some(123));
        assert_eq!(p.vsize, Some(130));
        assert_eq!(p.host, escape_hostname(hostname()));
        assert!(p.usecs.is_some_and(|u| u < 1_000_000));
        assert_eq!(parse(&b).and_then(|p| p.counter), p.counter.map(|c| c + 1));
        assert!(!a.contains(':') && !a.contains('/'));
    }

    #[test]
    fn same_microsecond_differs_by_counter() {
        let t = Duration::new(1_700_000_000, 123_456_000);
        let (a, b) = (generate_at(t, 1, 1), generate_at(t, 1, 1));
        assert_ne!(a, b);
        let (pa, pb) = (parse(&a).unwrap(), parse(&b).unwrap());
        assert_eq!((pa.secs, pa.usecs), (pb.secs, pb.usecs));
        assert_eq!((pa.secs, pa.usecs), (1_700_000_000, Some(123_456)));
        assert!(pb.counter > pa.counter);
    }

    #[test]
    fn hostname_escaping() {
        assert_eq!(escape_hostname("a/b:c.example"), "a\\057b\\072c.example");
    }

    #[test]
    fn parses_foreign_and_flagged_names() {
        let p = parse("1700000000.M12P34.mail.example.org,S=10,W=12:2,RS").unwrap();
        assert_eq!(
            (p.secs, p.usecs, p.pid, p.counter),
            (1_700_000_000, Some(12), Some(34), None)
        );
        assert_eq!(p.host, "mail.example.org");
        assert_eq!((p.size, p.vsize), (Some(10), Some(12)));
        assert_eq!(p.info.as_deref(), Some("2,RS"));
        let q = parse("1700000000.12345_6.host").unwrap();
        assert_eq!((q.size, q.usecs, q.info), (None, None, None));
        assert!(parse("junk").is_none());
        assert!(parse("x.y.z").is_none());
        assert_eq!(size_field("1.M1.h,S=12x", 'S'), None);
        assert_eq!(size_field("1.M1.h,S=7:2,S", 'S'), Some(7));
    }
}
