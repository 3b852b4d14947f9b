//! Mail addresses and domain names as the directory stores them: lower-cased, checked.

use postern_mail_types::try_split;

/// Why a string is not a usable address or domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// No `@`, or more than the parts allow.
    #[error("{0:?} is not an address of the form local@domain")]
    NotAnAddress(String),
    /// The local part is empty, too long or has characters we do not accept.
    #[error(
        "{0:?}: the local part must be 1-64 characters without spaces, quotes or control characters"
    )]
    BadLocal(String),
    /// The domain is not a valid host name.
    #[error("{0:?} is not a valid domain name")]
    BadDomain(String),
}

/// Checks and lower-cases a domain name (`Example.ORG.` → `example.org`).
pub fn normalize_domain(input: &str) -> Result<String, AddressError> {
    let d = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let bad = || AddressError::BadDomain(input.to_owned());
    if d.is_empty() || d.len() > 253 || !d.contains('.') {
        return Err(bad());
    }
    for label in d.split('.') {
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad());
        }
    }
    Ok(d)
}

/// Checks and lower-cases an address (`Alice@Example.org` → `alice@example.org`).
pub fn normalize_address(input: &str) -> Result<String, AddressError> {
    let s = input.trim();
    let (local, domain) =
        try_split(s).ok_or_else(|| AddressError::NotAnAddress(input.to_owned()))?;
    let domain = normalize_domain(domain)?;
    if local.is_empty()
        || local.chars().count() > 64
        || local.contains('@')
        || local.chars().any(|c| {
            c.is_control()
                || c.is_whitespace()
                || matches!(c, '"' | '\\' | '<' | '>' | ',' | ';' | ':')
        })
        || local.starts_with('.')
        || local.ends_with('.')
        || local.contains("..")
    {
        return Err(AddressError::BadLocal(input.to_owned()));
    }
    Ok(format!("{}@{domain}", local.to_lowercase()))
}

/// An alias source: an address, or `@domain` for a catch-all.
pub fn normalize_alias_source(input: &str) -> Result<String, AddressError> {
    match input.trim().strip_prefix('@') {
        Some(domain) => Ok(format!("@{}", normalize_domain(domain)?)),
        None => normalize_address(input),
    }
}

/// The domain of a normalized address or `@domain` key.
pub fn domain_of(address: &str) -> &str {
    try_split(address).map_or(address, |(_, d)| d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalize() {
        assert_eq!(
            normalize_address(" Alice@Example.ORG ").unwrap(),
            "alice@example.org"
        );
        assert_eq!(normalize_address("a.b+c@x.y").unwrap(), "a.b+c@x.y");
        for bad in [
            "alice",
            "@x.y",
            "a b@x.y",
            "a@",
            "a@x",
            "a@-x.y",
            "a\0@x.y",
            "a..b@x.y",
            "a@x..y",
            "\"q\"@x.y",
            "\"q@x.y\"@x.y",
            "\"q@x.y\"",
        ] {
            assert!(normalize_address(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn domains_normalize() {
        assert_eq!(normalize_domain("Example.Org.").unwrap(), "example.org");
        assert!(normalize_domain("exa mple.org").is_err());
        assert!(normalize_domain(&format!("{}.org", "a".repeat(64))).is_err());
        assert_eq!(normalize_alias_source("@Ex.org").unwrap(), "@ex.org");
        assert_eq!(domain_of("a@ex.org"), "ex.org");
        assert_eq!(domain_of("@ex.org"), "ex.org");
        assert_eq!(domain_of("ex.org"), "ex.org");
    }
}
