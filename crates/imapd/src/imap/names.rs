//! Mailbox names on the wire (modified UTF-7 or UTF-8) and LIST patterns.

use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use postern_maildir::mutf7;

/// The hierarchy separator.
pub(crate) const SEP: char = '/';

/// The special-use folders created at first login, with their attributes.
pub(crate) use postern_maildir::folder::SPECIAL_USE;

/// The special-use attribute of a folder, by name.
pub(crate) fn special_use(name: &str) -> Option<&'static str> {
    SPECIAL_USE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, a)| *a)
}

/// Decodes a client's mailbox name: UTF-8 if the client enabled UTF-8 names, modified UTF-7
/// otherwise (a name that is not valid modified UTF-7 is taken as it is, so `A & B` from a
/// sloppy client still works). INBOX is normalised. `None` for names that are not text.
pub(crate) fn decode(mailbox: &Mailbox<'_>, utf8: bool) -> Option<String> {
    let raw: &[u8] = match mailbox {
        Mailbox::Inbox => return Some("INBOX".to_owned()),
        Mailbox::Other(o) => o.inner().as_ref(),
    };
    decode_bytes(raw, utf8)
}

/// [`decode`] for raw bytes (LIST references and patterns).
pub(crate) fn decode_bytes(raw: &[u8], utf8: bool) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?;
    let name = if utf8 || !s.contains('&') || !s.is_ascii() {
        s.to_owned()
    } else {
        mutf7::decode(s).unwrap_or_else(|_| s.to_owned())
    };
    Some(normalise_inbox(name))
}

/// `inbox` → `INBOX`, `inbox/x` → `INBOX/x`.
pub(crate) fn normalise_inbox(name: String) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_owned();
    }
    if name.len() > 6 && name.is_char_boundary(6) && name[..6].eq_ignore_ascii_case("INBOX/") {
        return format!("INBOX/{}", &name[6..]);
    }
    name
}

/// Encodes a name for the client.
pub(crate) fn encode(name: &str, utf8: bool) -> String {
    if utf8 {
        name.to_owned()
    } else {
        mutf7::encode(name)
    }
}

/// The bytes of a LIST pattern.
pub(crate) fn list_pattern(p: &ListMailbox<'_>) -> Vec<u8> {
    match p {
        ListMailbox::Token(t) => t.as_ref().to_vec(),
        ListMailbox::String(s) => s.as_ref().to_vec(),
    }
}

/// One element of a compiled LIST pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    /// `*`: anything.
    Star,
    /// `%`: anything but the separator.
    Pct,
    Lit(char),
}

/// A compiled LIST pattern (`*` matches anything, `%` anything but the separator).
///
/// Runs of wildcards collapse to one (`*%*%…` is `*`, `%%` is `%`), and a pattern with more
/// literal characters than a name is longer cannot match it, so matching one name costs
/// O(name²) at worst whatever the pattern's length (it was O(pattern × name), with a fresh
/// vector per pattern character).
pub(crate) struct Pattern {
    toks: Vec<Tok>,
    literals: usize,
}

impl Pattern {
    /// `reference` joined with `pattern` (RFC 3501 §6.3.8: simple concatenation; a
    /// pattern starting with the separator ignores the reference's trailing one).
    pub(crate) fn new(reference: &str, pattern: &str) -> Self {
        let full = if reference.is_empty() {
            pattern.to_owned()
        } else if reference.ends_with(SEP) && pattern.starts_with(SEP) {
            format!("{reference}{}", &pattern[1..])
        } else {
            format!("{reference}{pattern}")
        };
        let full = normalise_inbox_prefix(&full);
        let mut toks: Vec<Tok> = Vec::new();
        let mut literals = 0;
        for c in full.chars() {
            match (c, toks.last_mut()) {
                ('*', Some(last @ (Tok::Star | Tok::Pct))) => *last = Tok::Star,
                ('%', Some(Tok::Star | Tok::Pct)) => {}
                ('*', _) => toks.push(Tok::Star),
                ('%', _) => toks.push(Tok::Pct),
                (c, _) => {
                    toks.push(Tok::Lit(c));
                    literals += 1;
                }
            }
        }
        Self { toks, literals }
    }

    /// True if `name` matches. Iterative with a table: no exponential blow-up on `*%*%…`.
    pub(crate) fn matches(&self, name: &str) -> bool {
        let name = normalise_inbox_prefix(name);
        let n: Vec<char> = name.chars().collect();
        if self.literals > n.len() {
            return false;
        }
        // dp[j] = pattern[..i] matches name[..j]; two rows, reused.
        let mut dp = vec![false; n.len() + 1];
        let mut next = vec![false; n.len() + 1];
        dp[0] = true;
        for &t in &self.toks {
            match t {
                Tok::Star => {
                    let mut any = false;
                    for j in 0..=n.len() {
                        any |= dp[j];
                        next[j] = any;
                    }
                }
                Tok::Pct => {
                    let mut any = false;
                    for j in 0..=n.len() {
                        if j > 0 && n[j - 1] == SEP {
                            any = false;
                        }
                        any |= dp[j];
                        next[j] = any;
                    }
                }
                Tok::Lit(c) => {
                    next[0] = false;
                    for j in 1..=n.len() {
                        next[j] = dp[j - 1] && n[j - 1] == c;
                    }
                }
            }
            std::mem::swap(&mut dp, &mut next);
        }
        dp[n.len()]
    }
}

/// INBOX matches case-insensitively as a first component.
fn normalise_inbox_prefix(s: &str) -> String {
    if s.len() >= 5 && s.is_char_boundary(5) && s[..5].eq_ignore_ascii_case("INBOX") {
        let rest = &s[5..];
        if rest.is_empty() || rest.starts_with(SEP) || rest.starts_with(['*', '%']) {
            return format!("INBOX{rest}");
        }
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        let p = Pattern::new("", "*");
        assert!(p.matches("INBOX") && p.matches("a/b/c"));
        let p = Pattern::new("", "%");
        assert!(p.matches("a") && !p.matches("a/b"));
        let p = Pattern::new("a/", "%");
        assert!(p.matches("a/b") && !p.matches("a/b/c") && !p.matches("a"));
        let p = Pattern::new("", "inbox");
        assert!(p.matches("INBOX"));
        let p = Pattern::new("", "S*t");
        assert!(p.matches("Sent") && !p.matches("Sentx"));
        let p = Pattern::new("", &format!("{}z", "*%".repeat(200)));
        let start = std::time::Instant::now();
        assert!(!p.matches(&format!("{}\u{1}", "a/".repeat(100))));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn hostile_patterns_cost_little() {
        // 60 000-character patterns (they fit in one 64 KiB command) against 2 000 names of
        // 200 characters: matching was O(pattern × name) per name, about 100 s here in a
        // release build; now wildcard runs collapse and over-long literal runs fail at once.
        let n: usize = std::env::var("COMPLEXITY_SIZE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(30_000);
        let names: Vec<String> = (0..2000)
            .map(|i| format!("{}{i}", "a/".repeat(100)))
            .collect();
        let t = std::time::Instant::now();
        let p = Pattern::new("", &format!("{}z", "*%".repeat(n)));
        assert!(!names.iter().any(|x| p.matches(x)));
        let p = Pattern::new("", &"a%".repeat(n));
        assert!(!names.iter().any(|x| p.matches(x)));
        let p = Pattern::new("", &format!("{}1*", "%/".repeat(n)));
        assert!(!names.iter().any(|x| p.matches(x)));
        let p = Pattern::new("", &format!("{}*%1999", "a/*%".repeat(50)));
        assert_eq!(names.iter().filter(|x| p.matches(x)).count(), 1);
        eprintln!("hostile LIST patterns: {:?}", t.elapsed());
        // Collapsing keeps the meaning.
        let p = Pattern::new("", "a%%%b");
        assert!(p.matches("axyb") && !p.matches("ax/yb"));
        let p = Pattern::new("", "a%*%b");
        assert!(p.matches("ax/yb") && p.matches("ab"));
        let p = Pattern::new("", "%*");
        assert!(p.matches("") && p.matches("x/y"));
        let p = Pattern::new("", "%%");
        assert!(p.matches("x") && !p.matches("x/y"));
    }

    #[test]
    fn names() {
        assert_eq!(decode_bytes(b"Entw&APw-rfe", false).unwrap(), "Entwürfe");
        assert_eq!(decode_bytes(b"A & B", false).unwrap(), "A & B");
        assert_eq!(decode_bytes(b"a&b", true).unwrap(), "a&b");
        assert_eq!(decode_bytes(b"inbox/x", false).unwrap(), "INBOX/x");
        assert_eq!(encode("Entwürfe", false), "Entw&APw-rfe");
        assert_eq!(encode("A&B", false), "A&-B");
    }
}
