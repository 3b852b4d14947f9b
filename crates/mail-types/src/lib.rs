//! Small value types of mail transport shared by the queue, the SMTP client and DSNs:
//! [`Address`] and [`Domain`], [`EnhancedStatus`] (RFC 3463), and the DSN parameters
//! [`Notify`] and [`Ret`] (RFC 3461).
//!
//! A leaf crate: it depends on nothing of Postern's and does no I/O.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An envelope address, `local-part@domain`, as given (the null sender `<>` is not an
/// address: `Option<Address>`). Split at the last `@`: a quoted local part may hold one.
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

    /// The part before the last `@` (all of it when there is none).
    #[must_use]
    pub fn local_part(&self) -> &str {
        split(&self.0).0
    }

    /// The part after the last `@` as written (empty when there is none).
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

/// Splits `local@domain` at the last `@`: `(local, domain)`, the domain empty when there is
/// no `@`.
#[must_use]
pub fn split(address: &str) -> (&str, &str) {
    address.rsplit_once('@').unwrap_or((address, ""))
}

/// A domain name as mail routing compares it: ASCII lower case, without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// `name` in lower case without its trailing dot.
    pub fn new(name: &str) -> Self {
        Self(name.trim_end_matches('.').to_ascii_lowercase())
    }

    /// The normalised name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` is this domain (any case, with or without a trailing dot).
    #[must_use]
    pub fn is(&self, name: &str) -> bool {
        name.trim_end_matches('.').eq_ignore_ascii_case(&self.0)
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
        assert_eq!(a.domain_str(), "Example.ORG.");
        assert_eq!(a.domain(), Domain::new("example.org"));
        assert_eq!(a.domain().as_str(), "example.org");
        assert!(a.domain().is("EXAMPLE.org") && a.domain().is("example.org."));
        assert!(!a.domain().is("sub.example.org"));
        let bare = Address::new("postmaster");
        assert_eq!((bare.local_part(), bare.domain_str()), ("postmaster", ""));
        assert_eq!(split("a@b@c"), ("a@b", "c"));
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            r#""\"x@y\"@Example.ORG.""#
        );
        assert_eq!(a.to_string(), a.as_str());
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
