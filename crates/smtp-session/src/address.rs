//! Mailbox addresses as they appear in `MAIL FROM` and `RCPT TO` (RFC 5321 §4.1.2, RFC 6531).
//!
//! We parse paths ourselves: smtp-proto strips the quotes from quoted local parts and turns
//! `<postmaster>` into the empty string, which is indistinguishable from the null sender.
//! Case is kept as written; comparing and folding are the caller's business.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// A syntactically valid mailbox `local@domain`, kept as the client wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    text: String,
    at: usize,
}

/// Why a mailbox was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// Nothing between the angle brackets.
    #[error("empty address")]
    Empty,
    /// No `@domain`.
    #[error("address has no domain")]
    NoDomain,
    /// The mailbox is longer than 254 octets (a 256-octet path).
    #[error("address longer than {MAX_MAILBOX} octets")]
    TooLong,
    /// The local part is longer than 64 octets.
    #[error("local part longer than {MAX_LOCAL_PART} octets")]
    LocalPartTooLong,
    /// The domain is longer than 255 octets.
    #[error("domain longer than {MAX_DOMAIN} octets")]
    DomainTooLong,
    /// The local part is neither a dot-string nor a quoted string.
    #[error("invalid local part")]
    LocalPart,
    /// The domain is not a valid host name.
    #[error("invalid domain")]
    Domain,
    /// An address literal (`[192.0.2.1]`, `[IPv6:…]`) that does not parse.
    #[error("invalid address literal")]
    Literal,
    /// A source route (`@a,@b:`) that does not parse.
    #[error("invalid source route")]
    Route,
}

impl Address {
    /// Parses `local@domain` (no angle brackets, no source route).
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        if text.is_empty() {
            return Err(AddressError::Empty);
        }
        if text.len() > MAX_MAILBOX {
            return Err(AddressError::TooLong);
        }
        let at = local_part_end(text)?;
        let (local, domain) = (&text[..at], &text[at + 1..]);
        if local.len() > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        check_domain(domain)?;
        Ok(Self {
            text: text.to_owned(),
            at,
        })
    }

    /// `postmaster@domain`: what `RCPT TO:<Postmaster>` (no domain) means (RFC 5321 §4.1.1.3).
    pub fn postmaster(domain: &str) -> Result<Self, AddressError> {
        Self::parse(&format!("postmaster@{domain}"))
    }

    /// The whole mailbox, as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The local part, as written (a quoted local part keeps its quotes).
    pub fn local_part(&self) -> &str {
        &self.text[..self.at]
    }

    /// The domain or address literal, as written.
    pub fn domain(&self) -> &str {
        &self.text[self.at + 1..]
    }

    /// Whether the address is all ASCII; if not, the transaction needs `SMTPUTF8`.
    pub fn is_ascii(&self) -> bool {
        self.text.is_ascii()
    }

    /// Consumes the address, giving its text.
    pub fn into_string(self) -> String {
        self.text
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

/// Removes an obsolete source route (`@a.example,@b.example:user@c.example`), which RFC 5321
/// §4.1.1.3 says to accept and ignore.
pub(crate) fn strip_route(path: &str) -> Result<&str, AddressError> {
    if !path.starts_with('@') {
        return Ok(path);
    }
    let Some((route, mailbox)) = path.split_once(':') else {
        return Err(AddressError::Route);
    };
    for hop in route.split(',') {
        let domain = hop.strip_prefix('@').ok_or(AddressError::Route)?;
        check_domain(domain).map_err(|_| AddressError::Route)?;
    }
    Ok(mailbox)
}

/// Checks a domain name or address literal.
pub(crate) fn check_domain(domain: &str) -> Result<(), AddressError> {
    if domain.is_empty() {
        return Err(AddressError::NoDomain);
    }
    if domain.len() > MAX_DOMAIN {
        return Err(AddressError::DomainTooLong);
    }
    if let Some(literal) = domain.strip_prefix('[') {
        return check_literal(literal.strip_suffix(']').ok_or(AddressError::Literal)?);
    }
    for label in domain.split('.') {
        let valid = (1..=MAX_LABEL).contains(&label.len())
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80);
        if !valid {
            return Err(AddressError::Domain);
        }
    }
    Ok(())
}

fn check_literal(literal: &str) -> Result<(), AddressError> {
    let valid = match literal.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("IPv6:") => literal[5..].parse::<Ipv6Addr>().is_ok(),
        _ => literal.parse::<Ipv4Addr>().is_ok(),
    };
    if valid {
        Ok(())
    } else {
        Err(AddressError::Literal)
    }
}

/// Validates the local part and returns the index of the `@` after it.
fn local_part_end(text: &str) -> Result<usize, AddressError> {
    let bytes = text.as_bytes();
    let end = if bytes.first() == Some(&b'"') {
        let mut i = 1;
        loop {
            match bytes.get(i) {
                None => return Err(AddressError::LocalPart),
                Some(b'"') => break i + 1,
                Some(b'\\') => match bytes.get(i + 1) {
                    Some(&c) if (32..=126).contains(&c) => i += 2,
                    _ => return Err(AddressError::LocalPart),
                },
                Some(&c) if is_qtext(c) => i += 1,
                Some(_) => return Err(AddressError::LocalPart),
            }
        }
    } else {
        let end = text.find('@').ok_or(AddressError::NoDomain)?;
        let atoms_ok = text[..end]
            .split('.')
            .all(|atom| !atom.is_empty() && atom.bytes().all(is_atext));
        if !atoms_ok {
            return Err(AddressError::LocalPart);
        }
        end
    };
    match bytes.get(end) {
        Some(b'@') => Ok(end),
        None => Err(AddressError::NoDomain),
        Some(_) => Err(AddressError::LocalPart),
    }
}

/// RFC 5322 atext, plus UTF-8 (RFC 6531).
fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c) || c >= 0x80
}

/// RFC 5321 qtextSMTP, plus UTF-8 (RFC 6531).
fn is_qtext(c: u8) -> bool {
    matches!(c, 32..=33 | 35..=91 | 93..=126) || c >= 0x80
}

/// Octets in a local part.
pub const MAX_LOCAL_PART: usize = 64;
/// Octets in a domain.
pub const MAX_DOMAIN: usize = 255;
/// Octets in a mailbox: a path is at most 256 octets with its angle brackets.
pub const MAX_MAILBOX: usize = 254;
const MAX_LABEL: usize = 63;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid() {
        for text in [
            "user@example.com",
            "first.last+tag@sub.example.org",
            "\"john doe\"@example.com",
            "\"a\\\"b@c\"@example.com",
            "user@[192.0.2.1]",
            "user@[IPv6:2001:db8::1]",
            "üser@bücher.example",
            "x@localhost",
            "!#$%&'*+-/=?^_`{|}~@a-b.c",
        ] {
            let a = Address::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(a.as_str(), text);
        }
        let a = Address::parse("\"john doe\"@Example.COM").unwrap();
        assert_eq!(a.local_part(), "\"john doe\"");
        assert_eq!(a.domain(), "Example.COM");
        assert!(a.is_ascii());
        assert!(!Address::parse("ü@x.example").unwrap().is_ascii());
    }

    #[test]
    fn invalid() {
        let long_local = format!("{}@x.example", "a".repeat(65));
        let long_label = format!("a@{}.example", "b".repeat(64));
        let long_all = format!("a@{}", vec!["c".repeat(60); 5].join("."));
        for (text, err) in [
            ("", AddressError::Empty),
            ("user", AddressError::NoDomain),
            ("user@", AddressError::NoDomain),
            (".user@x", AddressError::LocalPart),
            ("us..er@x", AddressError::LocalPart),
            ("user.@x", AddressError::LocalPart),
            ("us er@x", AddressError::LocalPart),
            ("\"unterminated@x", AddressError::LocalPart),
            ("\"a\"b@x", AddressError::LocalPart),
            ("a@b@c", AddressError::Domain),
            ("a@-b.example", AddressError::Domain),
            ("a@b..example", AddressError::Domain),
            ("a@example.com.", AddressError::Domain),
            ("a@exa_mple.com", AddressError::Domain),
            ("a@[300.1.1.1]", AddressError::Literal),
            ("a@[IPv6:zz]", AddressError::Literal),
            ("a@[1.2.3.4", AddressError::Literal),
            (long_local.as_str(), AddressError::LocalPartTooLong),
            (long_label.as_str(), AddressError::Domain),
            (long_all.as_str(), AddressError::TooLong),
        ] {
            assert_eq!(Address::parse(text), Err(err), "{text}");
        }
    }

    #[test]
    fn routes() {
        assert_eq!(
            strip_route("@a.example,@b.example:u@c.example"),
            Ok("u@c.example")
        );
        assert_eq!(strip_route("u@c.example"), Ok("u@c.example"));
        assert_eq!(strip_route("@a.example"), Err(AddressError::Route));
        assert_eq!(strip_route("@a..b:u@c"), Err(AddressError::Route));
    }

    #[test]
    fn postmaster() {
        let a = Address::postmaster("mx.example").unwrap();
        assert_eq!(a.as_str(), "postmaster@mx.example");
    }
}
