//! Small value types of mail transport shared by the queue, the SMTP client and DSNs:
//! [`Address`] and [`Domain`] (with [`split`]/[`try_split`] for addresses held as strings),
//! [`EnhancedStatus`] (RFC 3463), and the DSN parameters
//! [`Notify`] and [`Ret`] (RFC 3461).
//!
//! A leaf crate: it depends on nothing of Postern's and does no I/O.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An envelope address, `local-part@domain`, as given (the null sender `<>` is not an
/// address: callers keep it as `None`, `Option<Address>`). The local part ends at the `@`
/// after a quoted local part (`"a@b"@example.org`), else at the last `@` ([`split`]).
///
/// The local part is compared as written (RFC 5321 §2.4 leaves its case to the receiving
/// host); the domain through [`Domain`], without regard to case and U-label or A-label form.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Address(String);

impl Address {
    /// The address as given (not checked: what was accepted at `RCPT TO` is kept as is).
    pub fn new(address: impl Into<String>) -> Self {
        Self(address.into())
    }

    /// The address as a string.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The local part as written, a quoted one with its quotes (all of it when there is no
    /// `@`; empty for `@domain`).
    #[must_use]
    pub fn local_part(&self) -> &str {
        split(&self.0).0
    }

    /// Whether the local part is a quoted string (`"john doe"@example.org`).
    #[must_use]
    pub fn is_quoted(&self) -> bool {
        self.local_part().starts_with('"')
    }

    /// The part after the local part's `@` as written (empty when there is none).
    #[must_use]
    pub fn domain_str(&self) -> &str {
        split(&self.0).1
    }

    /// The domain, for comparing and routing.
    #[must_use]
    pub fn domain(&self) -> Domain {
        Domain::new(self.domain_str())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Address {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Splits `local@domain` into `(local, domain)`; the domain is empty when there is no `@`
/// (see [`try_split`]).
#[must_use]
pub fn split(address: &str) -> (&str, &str) {
    try_split(address).unwrap_or((address, ""))
}

/// Splits `local@domain` at the `@` that ends the local part: the one right after a quoted
/// local part (`"a@b"@example.org` → `("\"a@b\"", "example.org")`), else the last one
/// (a domain holds no `@`). `None` without such an `@` (`postmaster`, `"a@b"`). An empty
/// local part (`@example.org`) or domain (`user@`) is returned as it is: callers decide.
#[must_use]
pub fn try_split(address: &str) -> Option<(&str, &str)> {
    if let Some(end) = quoted_end(address) {
        match address.as_bytes().get(end) {
            None => return None,
            Some(b'@') => return Some((&address[..end], &address[end + 1..])),
            // `"a"b@c` is no address; fall back to the last `@`.
            Some(_) => {}
        }
    }
    address.rsplit_once('@')
}

/// Whether `a` and `b` name the same mailbox as policy rules compare them: local parts
/// without regard to ASCII case, domains as [`Domain`]s (any case, U-labels or A-labels).
/// Strings without a domain are compared whole, without regard to ASCII case.
#[must_use]
pub fn same_mailbox(a: &str, b: &str) -> bool {
    match (try_split(a), try_split(b)) {
        (Some((al, ad)), Some((bl, bd))) => {
            al.eq_ignore_ascii_case(bl) && (Domain::new(ad) == Domain::new(bd))
        }
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// The local part's content: a quoted local part without its quotes and backslash escapes
/// (`"MAILER-DAEMON"` → `MAILER-DAEMON`, `"a\\"b"` → `a"b`); any other as it is. Compare
/// this, not the written form, when the question is which mailbox it names (RFC 5321
/// §4.1.2: a quoted string and the same characters as a dot-string are one local part).
#[must_use]
pub fn unquote_local(local: &str) -> Cow<'_, str> {
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| quoted_end(local) == Some(local.len()))
    else {
        return Cow::Borrowed(local);
    };
    if !inner.contains('\\') {
        return Cow::Borrowed(inner);
    }
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The end (after the closing quote) of a quoted string at the start of `s`.
fn quoted_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A domain name as mail routing compares it: without its trailing dot, ASCII in lower case,
/// and an internationalized name (RFC 5890) in its A-label form by the IDNA mapping of
/// UTS #46 (`Bücher.example` and `BÜCHER.example` are `xn--bcher-kva.example`, the form
/// the directory stores and DNS asks for). ASCII names are only lower-cased; a non-ASCII
/// name that IDNA refuses (it cannot be in the DNS) is kept in Unicode lower case, so it
/// still equals itself and nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// `name` normalised: without its trailing dot, lower case, A-labels.
    pub fn new(name: &str) -> Self {
        let name = name.trim_end_matches('.');
        if name.is_ascii() {
            return Self(name.to_ascii_lowercase());
        }
        match idna::domain_to_ascii_cow(name.as_bytes(), idna::AsciiDenyList::STD3) {
            Ok(ascii) => Self(ascii.into_owned()),
            Err(_) => Self(name.to_lowercase()),
        }
    }

    /// The normalised name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is this domain (any case, with or without a trailing dot, U-labels or
    /// A-labels).
    #[must_use]
    pub fn is(&self, name: &str) -> bool {
        if name.is_ascii() {
            name.trim_end_matches('.').eq_ignore_ascii_case(&self.0)
        } else {
            Self::new(name) == *self
        }
    }

    /// Whether this domain is `parent` or below it (`mx.example.org` is within
    /// `example.org`; `badexample.org` is not).
    #[must_use]
    pub fn is_within(&self, parent: &Self) -> bool {
        match self.0.strip_suffix(parent.0.as_str()) {
            Some("") => true,
            Some(rest) => !parent.0.is_empty() && rest.ends_with('.'),
            None => false,
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An enhanced mail system status code (RFC 3463): `class.subject.detail`, e.g. `5.1.1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnhancedStatus {
    /// `2` success, `4` persistent transient failure, `5` permanent failure.
    pub class: u8,
    /// The subject (`1` addressing, `2` mailbox, …).
    pub subject: u16,
    /// The detail within the subject.
    pub detail: u16,
}

impl EnhancedStatus {
    /// `class.subject.detail`.
    #[must_use]
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// As a tuple `(class, subject, detail)`.
    #[must_use]
    pub const fn tuple(self) -> (u8, u16, u16) {
        (self.class, self.subject, self.detail)
    }
}

impl From<(u8, u16, u16)> for EnhancedStatus {
    fn from((class, subject, detail): (u8, u16, u16)) -> Self {
        Self::new(class, subject, detail)
    }
}

impl fmt::Display for EnhancedStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Not a `class.subject.detail` code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseStatusError;

impl fmt::Display for ParseStatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an enhanced status code (class.subject.detail)")
    }
}

impl std::error::Error for ParseStatusError {}

impl FromStr for EnhancedStatus {
    type Err = ParseStatusError;

    /// `x.y.z` with numbers that fit (`u8`, `u16`, `u16`); the class is not checked.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut p = s.split('.');
        let mut num = || p.next().ok_or(ParseStatusError);
        let class = num()?.parse().map_err(|_| ParseStatusError)?;
        let subject = num()?.parse().map_err(|_| ParseStatusError)?;
        let detail = num()?.parse().map_err(|_| ParseStatusError)?;
        if p.next().is_some() {
            return Err(ParseStatusError);
        }
        Ok(Self::new(class, subject, detail))
    }
}

/// Written as the string `"x.y.z"`.
impl Serialize for EnhancedStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EnhancedStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// DSN `NOTIFY=` (RFC 3461 §4.1): which delivery status notifications the sender wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Self = Self {
        success: false,
        failure: false,
        delay: false,
    };

    /// The parameter's value as sent on `RCPT TO`: `NEVER`, or the wanted ones in the order
    /// `SUCCESS,FAILURE,DELAY`.
    #[must_use]
    pub fn param(&self) -> String {
        if *self == Self::NEVER {
            return "NEVER".to_owned();
        }
        [
            (self.success, "SUCCESS"),
            (self.failure, "FAILURE"),
            (self.delay, "DELAY"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, s)| *s)
        .collect::<Vec<_>>()
        .join(",")
    }
}

impl Default for Notify {
    /// Without `NOTIFY=`: failures and delays (RFC 3461 §4.1).
    fn default() -> Self {
        Self {
            success: false,
            failure: true,
            delay: true,
        }
    }
}

/// DSN `RET=` (RFC 3461 §4.3): how much of the message a delivery status notification
/// returns. Without the parameter, the headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ret {
    /// `RET=FULL`: the whole message.
    Full,
    /// `RET=HDRS`: the headers only.
    #[default]
    Headers,
}

impl Ret {
    /// The parameter's value as sent on `MAIL FROM`: `FULL` or `HDRS`.
    #[must_use]
    pub const fn keyword(self) -> &'static str {
        match self {
            Self::Full => "FULL",
            Self::Headers => "HDRS",
        }
    }
}

/// How a message entered the queue. Decided when it is accepted, never re-derived later
/// (a client address says nothing about who wrote the message).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// Port 25 from outside the trusted networks, without AUTH: mail from strangers.
    Mx,
    /// Authenticated SMTP (587/465, or AUTH on 25); its header From: was checked against
    /// what the login may use.
    Submission {
        /// The SASL login.
        login: String,
    },
    /// A trusted network without AUTH (its header From: is not checked).
    Trusted,
    /// Local submission (`sendmail`, the control socket) by a Unix user.
    Local {
        /// The peer's uid.
        uid: u32,
        /// Its user name, when it has one.
        #[serde(default)]
        user: Option<String>,
    },
    /// Forwarded by the delivery agent (Sieve `redirect`): not written by us.
    Forward {
        /// The mailbox whose script forwarded it.
        #[serde(default)]
        by: Option<String>,
    },
    /// An automatic reply (Sieve `vacation`) on behalf of a mailbox.
    AutoReply {
        /// The mailbox it answers for.
        user: String,
    },
    /// A delivery status notification of ours.
    Dsn,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_domains() {
        let a = Address::new("\"x@y\"@Example.ORG.");
        assert_eq!(a.local_part(), "\"x@y\"");
        assert!(a.is_quoted());
        assert_eq!(a.domain_str(), "Example.ORG.");
        assert_eq!(a.domain(), Domain::new("example.org"));
        assert_eq!(a.domain().as_str(), "example.org");
        assert!(a.domain().is("EXAMPLE.org") && a.domain().is("example.org."));
        assert!(!a.domain().is("sub.example.org"));
        let bare = Address::new("postmaster");
        assert_eq!((bare.local_part(), bare.domain_str()), ("postmaster", ""));
        assert!(!bare.is_quoted());
        assert_eq!(split("a@b@c"), ("a@b", "c"));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#""\"x@y\"@Example.ORG.""#
        );
        assert_eq!(a.to_string(), a.as_str());
    }

    #[test]
    fn quoted_local_parts_keep_their_at_signs() {
        for (address, local, domain) in [
            ("\"a@b\"@example.org", "\"a@b\"", "example.org"),
            ("\"a@b@c\"@example.org", "\"a@b@c\"", "example.org"),
            // An escaped quote does not end the quoted string.
            ("\"a\\\"@b\"@example.org", "\"a\\\"@b\"", "example.org"),
            ("\"\\\\\"@example.org", "\"\\\\\"", "example.org"),
            ("\"john doe\"@example.org", "\"john doe\"", "example.org"),
            ("\"\"@example.org", "\"\"", "example.org"),
        ] {
            assert_eq!(try_split(address), Some((local, domain)), "{address}");
            let a = Address::new(address);
            assert_eq!((a.local_part(), a.domain_str()), (local, domain));
            assert!(a.is_quoted());
        }
        // A quoted string and no domain: no `@` ends the local part.
        assert_eq!(try_split("\"a@b\""), None);
        assert_eq!(split("\"a@b\""), ("\"a@b\"", ""));
        // Not addresses: an unterminated quote, text after the quotes.
        assert_eq!(try_split("\"a@b"), Some(("\"a", "b")));
        assert_eq!(try_split("\"a\"b@c"), Some(("\"a\"b", "c")));
        assert_eq!(try_split("postmaster"), None);
        assert_eq!(try_split(""), None);
    }

    #[test]
    fn quoted_local_parts_unquote() {
        assert_eq!(unquote_local("\"MAILER-DAEMON\""), "MAILER-DAEMON");
        assert_eq!(unquote_local("\"a@b\""), "a@b");
        assert_eq!(unquote_local("\"a\\\"b\\\\\""), "a\"b\\");
        assert_eq!(unquote_local("\"\""), "");
        assert_eq!(unquote_local("plain.local"), "plain.local");
        assert_eq!(unquote_local(""), "");
        // Not one quoted string: as written.
        for odd in ["\"", "\"a", "\"a\"b\"", "\"a\\\"", "a\"b\""] {
            assert_eq!(unquote_local(odd), odd, "{odd}");
        }
        let a = Address::new("\"John Doe\"@example.org");
        assert_eq!(unquote_local(a.local_part()), "John Doe");
    }

    #[test]
    fn empty_parts_are_left_to_callers() {
        let a = Address::new("@example.org");
        assert_eq!((a.local_part(), a.domain_str()), ("", "example.org"));
        assert!(!a.is_quoted());
        assert_eq!(try_split("@example.org"), Some(("", "example.org")));
        assert_eq!(try_split("user@"), Some(("user", "")));
        assert_eq!(try_split("@"), Some(("", "")));
        assert_eq!(Address::new("user@").domain(), Domain::new(""));
        // The null sender is not an address: callers keep `<>` as `None` and never split it.
        let sender: Option<Address> = None;
        assert_eq!(sender.as_ref().map(Address::domain), None);
    }

    #[test]
    fn domains_compare_without_case_and_in_a_label_form() {
        let d = Domain::new("Bücher.Example.");
        assert_eq!(d.as_str(), "xn--bcher-kva.example");
        // Unicode case (not only ASCII) and either label form.
        for same in [
            "bücher.example",
            "BÜCHER.EXAMPLE",
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.example.",
        ] {
            assert_eq!(Domain::new(same), d, "{same}");
            assert!(d.is(same), "{same}");
        }
        assert!(!d.is("bucher.example"));
        // UTS #46 mapping: fullwidth letters and the ideographic full stop.
        assert_eq!(Domain::new("ｅｘａｍｐｌｅ。org").as_str(), "example.org");
        // ASCII names are only lower-cased, whatever IDNA would say of them.
        assert_eq!(
            Domain::new("Under_Score.Example").as_str(),
            "under_score.example"
        );
        assert_eq!(Domain::new("xn--X.example").as_str(), "xn--x.example");
        // A non-ASCII name IDNA refuses keeps a Unicode lower-case form; a fullwidth
        // solidus does not become a `/`.
        let odd = Domain::new("a／B.example");
        assert!(!odd.as_str().contains('/'));
        assert_eq!(odd, Domain::new("a／b.example"));
        // Ordering and hashing follow the normal form.
        let set: std::collections::BTreeSet<_> = ["Example.org", "example.ORG.", "EXAMPLE.org"]
            .map(Domain::new)
            .into();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn mailboxes_compare_like_policy_rules() {
        assert!(same_mailbox(
            "Abuse@BÜCHER.example",
            "abuse@xn--bcher-kva.example."
        ));
        assert!(same_mailbox("\"A@x\"@example.org", "\"a@x\"@EXAMPLE.org"));
        assert!(!same_mailbox("\"a@x\"@example.org", "\"a@y\"@example.org"));
        assert!(!same_mailbox("a@example.org", "b@example.org"));
        assert!(!same_mailbox("a@example.org", "a@example.net"));
        assert!(same_mailbox("Postmaster", "postmaster"));
        assert!(!same_mailbox("postmaster", "postmaster@example.org"));
    }

    #[test]
    fn domains_within_domains() {
        let org = Domain::new("Example.ORG");
        assert!(Domain::new("example.org").is_within(&org));
        assert!(Domain::new("mx.Example.org.").is_within(&org));
        assert!(!Domain::new("badexample.org").is_within(&org));
        assert!(!Domain::new("org").is_within(&org));
        assert!(!org.is_within(&Domain::new("")));
        assert!(Domain::new("mx.bücher.example").is_within(&Domain::new("BÜCHER.example")));
    }

    #[test]
    fn status_parses_and_prints() {
        let s: EnhancedStatus = "5.1.10".parse().unwrap();
        assert_eq!(s, EnhancedStatus::new(5, 1, 10));
        assert_eq!(s.to_string(), "5.1.10");
        assert_eq!(s.tuple(), (5, 1, 10));
        for bad in [
            "", "5", "5.1", "5.1.1.1", "a.1.1", "300.1.1", "5.1.x", "550",
        ] {
            assert!(bad.parse::<EnhancedStatus>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"5.1.10\"");
        assert_eq!(serde_json::from_str::<EnhancedStatus>(&json).unwrap(), s);
    }

    #[test]
    fn dsn_parameters() {
        assert_eq!(Notify::NEVER.param(), "NEVER");
        assert_eq!(Notify::default().param(), "FAILURE,DELAY");
        let all = Notify {
            success: true,
            failure: true,
            delay: true,
        };
        assert_eq!(all.param(), "SUCCESS,FAILURE,DELAY");
        assert_eq!(Ret::default(), Ret::Headers);
        assert_eq!(Ret::Full.keyword(), "FULL");
        assert_eq!(Ret::Headers.keyword(), "HDRS");
        // The queue's JSON for these is unchanged.
        assert_eq!(serde_json::to_string(&Ret::Full).unwrap(), "\"Full\"");
        assert_eq!(
            serde_json::to_string(&Notify::default()).unwrap(),
            r#"{"success":false,"failure":true,"delay":true}"#
        );
    }
}
