//! Optional parameters of Dovecot lines: `name=value` or a bare `name`.
//!
//! Both Dovecot protocols end their lines with a list of such fields, in an order that
//! matters only for `resp=` (see [`crate::dovecot`]). Unknown names must be ignored by the
//! reader, so [`Params`] keeps every field, in order, and the caller picks what it knows.
//! Values are stored unescaped; [`Params::write`] escapes them again.

use crate::ProtoError;
use crate::escape::{escape_into, unescape};

/// Ordered `name[=value]` fields, values unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// No fields.
    pub fn new() -> Self {
        Self(Vec::new())
    }

    /// Parses tab-separated fields; an empty field is skipped.
    pub fn parse<'a>(fields: impl IntoIterator<Item = &'a str>) -> Result<Self, ProtoError> {
        let mut out = Vec::new();
        for field in fields {
            if field.is_empty() {
                continue;
            }
            out.push(parse_field(field)?);
        }
        Ok(Self(out))
    }

    /// The value of the first field called `name`; `Some("")` for a bare flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// Whether a field called `name` is present, with or without a value.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// The `service` field (the protocol doing the lookup: smtp, imap, lmtp, …).
    pub fn service(&self) -> Option<&str> {
        self.get("service")
    }

    /// Adds `name=value`.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), Some(value.into())));
    }

    /// Adds a bare `name`.
    pub fn push_flag(&mut self, name: impl Into<String>) {
        self.0.push((name.into(), None));
    }

    /// The fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no fields.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The fields as `(name, value)` pairs, a bare flag getting an empty value.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect()
    }

    /// Appends `\tname[=value]` for every field, escaped.
    pub fn write(&self, out: &mut String) {
        for (name, value) in &self.0 {
            match value {
                Some(v) => write_pair(out, name, v),
                None => write_flag(out, name),
            }
        }
    }
}

impl From<Vec<(String, Option<String>)>> for Params {
    fn from(fields: Vec<(String, Option<String>)>) -> Self {
        Self(fields)
    }
}

/// Splits one field into name and unescaped value.
pub(crate) fn parse_field(field: &str) -> Result<(String, Option<String>), ProtoError> {
    Ok(match field.split_once('=') {
        Some((name, value)) => (unescape(name)?, Some(unescape(value)?)),
        None => (unescape(field)?, None),
    })
}

/// Appends `\tname=value`, both escaped.
pub(crate) fn write_pair(out: &mut String, name: &str, value: &str) {
    out.push('\t');
    escape_into(out, name);
    out.push('=');
    escape_into(out, value);
}

/// Appends `\tname`, escaped.
pub(crate) fn write_flag(out: &mut String, name: &str) {
    out.push('\t');
    escape_into(out, name);
}

/// Appends `\tname=value` for each pair.
pub(crate) fn write_pairs<K: AsRef<str>, V: AsRef<str>>(out: &mut String, pairs: &[(K, V)]) {
    for (k, v) in pairs {
        write_pair(out, k.as_ref(), v.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        type Fields<'a> = &'a [(&'a str, Option<&'a str>)];
        let cases: &[(&[&str], Fields<'_>)] = &[
            (&[], &[]),
            (&[""], &[]),
            (&["service=smtp"], &[("service", Some("smtp"))]),
            (&["nologin"], &[("nologin", None)]),
            (&["a="], &[("a", Some(""))]),
            (&["a=b=c"], &[("a", Some("b=c"))]),
            (
                &["reason=x\x01ty", "temp"],
                &[("reason", Some("x\ty")), ("temp", None)],
            ),
            (&["k=1", "k=2"], &[("k", Some("1")), ("k", Some("2"))]),
        ];
        for (fields, want) in cases {
            let got = Params::parse(fields.iter().copied()).unwrap();
            let got: Vec<_> = got.iter().collect();
            assert_eq!(&got, want, "{fields:?}");
        }
    }

    #[test]
    fn parse_rejects_bad_escape() {
        assert_eq!(
            Params::parse(["reason=\x01z"]),
            Err(ProtoError::InvalidEscape)
        );
    }

    #[test]
    fn accessors() {
        let p = Params::parse(["service=imap", "secured", "k=1", "k=2"]).unwrap();
        assert_eq!(p.service(), Some("imap"));
        assert_eq!(p.get("secured"), Some(""));
        assert_eq!(p.get("k"), Some("1"));
        assert_eq!(p.get("nope"), None);
        assert!(p.has("secured") && !p.has("nope"));
        assert_eq!(p.len(), 4);
        assert!(!p.is_empty() && Params::new().is_empty());
        let pairs = p.into_pairs();
        assert_eq!(pairs[1], ("secured".to_owned(), String::new()));
    }

    #[test]
    fn write_then_parse() {
        let mut p = Params::new();
        p.push("reason", "bad\tpassword\n");
        p.push_flag("temp");
        p.push("home", "/var/mail/a=b");
        let mut line = String::new();
        p.write(&mut line);
        assert_eq!(
            line,
            "\treason=bad\x01tpassword\x01n\ttemp\thome=/var/mail/a=b"
        );
        let back = Params::parse(line.split('\t')).unwrap();
        assert_eq!(back, p);
        let mut pairs = String::new();
        write_pairs(&mut pairs, &[("uid", "1000"), ("gid", "1000")]);
        assert_eq!(pairs, "\tuid=1000\tgid=1000");
    }
}
