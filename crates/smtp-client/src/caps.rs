//! The service extensions a server advertises in its `EHLO`/`LHLO` reply (RFC 5321 §4.1.1.1).

/// What the server said it supports; all off after a `HELO` fallback.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The server answered `EHLO` or `LHLO` (not only `HELO`).
    pub esmtp: bool,
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `SIZE` (RFC 1870): `Some(0)` when advertised without a limit.
    pub size: Option<u64>,
    /// `8BITMIME` (RFC 6152).
    pub eightbitmime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `DSN` (RFC 3461).
    pub dsn: bool,
    /// `CHUNKING` (RFC 3030).
    pub chunking: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034).
    pub enhanced_status_codes: bool,
    /// `STARTTLS` (RFC 3207).
    pub starttls: bool,
    /// `AUTH` mechanisms (RFC 4954), upper-cased; also from the old `AUTH=` form.
    pub auth: Vec<String>,
}

impl Capabilities {
    /// Reads the lines of an `EHLO`/`LHLO` reply (codes stripped); the first line is the
    /// server's name and is skipped. Unknown keywords are ignored.
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Self {
        let mut caps = Self {
            esmtp: true,
            ..Self::default()
        };
        for line in lines.iter().skip(1) {
            let mut words = line.as_ref().split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            match keyword.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eightbitmime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "DSN" => caps.dsn = true,
                "CHUNKING" => caps.chunking = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "STARTTLS" => caps.starttls = true,
                "AUTH" => caps.add_auth(words),
                _ => {
                    if let Some(first) = keyword.strip_prefix("AUTH=") {
                        caps.add_auth(std::iter::once(first).chain(words));
                    }
                }
            }
        }
        caps
    }

    /// Whether a message of `size` octets is over the advertised limit.
    pub fn too_big(&self, size: u64) -> bool {
        matches!(self.size, Some(limit) if limit > 0 && size > limit)
    }

    fn add_auth<'a>(&mut self, mechanisms: impl Iterator<Item = &'a str>) {
        for mechanism in mechanisms {
            let mechanism = mechanism.to_ascii_uppercase();
            if !mechanism.is_empty() && !self.auth.contains(&mechanism) {
                self.auth.push(mechanism);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postfix_style_ehlo() {
        let lines = [
            "mx.example.org",
            "PIPELINING",
            "SIZE 10240000",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "AUTH PLAIN login",
            "AUTH=PLAIN LOGIN",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        ];
        let caps = Capabilities::parse(&lines);
        assert!(caps.esmtp && caps.pipelining && caps.starttls && caps.enhanced_status_codes);
        assert!(caps.eightbitmime && caps.dsn && caps.smtputf8 && caps.chunking);
        assert_eq!(caps.size, Some(10_240_000));
        assert_eq!(caps.auth, ["PLAIN", "LOGIN"]);
        assert!(caps.too_big(10_240_001));
        assert!(!caps.too_big(10_240_000));
    }

    #[test]
    fn bare_greeting_line_and_size_without_limit() {
        let caps = Capabilities::parse(&["lmtp.example.org", "size", ""]);
        assert_eq!(caps.size, Some(0));
        assert!(!caps.too_big(u64::MAX));
        assert!(!caps.pipelining && !caps.dsn);
        assert!(Capabilities::parse(&["only the name"]).esmtp);
        assert!(!Capabilities::default().esmtp);
    }
}
