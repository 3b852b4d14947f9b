//! The Dovecot auth client protocol, version 1.2: what Postfix speaks with
//! `smtpd_sasl_type = dovecot`, and what our own daemons use to ask authd.
//!
//! One command per LF-terminated line, fields separated by TAB, values
//! [escaped](mod@crate::escape). [`request`] holds the lines a client sends (`VERSION`, `CPID`,
//! `AUTH`, `CONT`, `CANCEL`), [`reply`] the lines a server sends (`VERSION`, `MECH`, `SPID`,
//! `CUID`, `COOKIE`, `DONE`, `OK`, `FAIL`, `CONT`); each has the parser and the encoder, so
//! both sides are here. The traps Postfix sets are kept by the encoders: `MECH` lines come
//! before `SPID`, `OK` always carries `user=`, `resp=` is the last `AUTH` parameter.
//!
//! What a mechanism means is left to [`crate::sasl`] and to the server; checking passwords,
//! penalties and request-id bookkeeping are the caller's.

use std::fmt;

mod auth_request;
pub mod reply;
pub mod request;

pub use crate::sasl;
pub use auth_request::AuthRequest;
pub use reply::{FailReply, OkReply, ServerLine, cont, fail, handshake, ok, parse_server_line};
pub use request::{
    AuthParams, ClientCommand, encode_auth, encode_cancel, encode_cont, encode_cpid,
    encode_version, parse_client_line,
};

/// The protocol major version both sides must share.
pub const MAJOR_VERSION: u32 = 1;
/// The minor version we send.
pub const MINOR_VERSION: u32 = 2;
/// Dovecot's documented line limit; a sensible [`crate::LineBuffer`] size for this protocol.
pub const MAX_LINE: usize = 16384;

/// A mechanism flag from a `MECH` line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MechFlag {
    /// Anonymous login.
    Anonymous,
    /// Sends the password in the clear (Postfix drops these under `noplaintext`).
    Plaintext,
    /// Open to dictionary attacks.
    Dictionary,
    /// Open to active attacks.
    Active,
    /// Forward secrecy.
    ForwardSecrecy,
    /// Mutual authentication.
    MutualAuth,
    /// Not to be offered to end clients.
    Private,
    /// Supports channel binding.
    ChannelBinding,
    /// A flag this crate does not know, kept as sent.
    Other(String),
}

impl MechFlag {
    /// The flag as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Plaintext => "plaintext",
            Self::Dictionary => "dictionary",
            Self::Active => "active",
            Self::ForwardSecrecy => "forward-secrecy",
            Self::MutualAuth => "mutual-auth",
            Self::Private => "private",
            Self::ChannelBinding => "channel-binding",
            Self::Other(s) => s,
        }
    }

    /// The flag for a wire word; unknown words become [`MechFlag::Other`].
    pub fn parse(word: &str) -> Self {
        match word {
            "anonymous" => Self::Anonymous,
            "plaintext" => Self::Plaintext,
            "dictionary" => Self::Dictionary,
            "active" => Self::Active,
            "forward-secrecy" => Self::ForwardSecrecy,
            "mutual-auth" => Self::MutualAuth,
            "private" => Self::Private,
            "channel-binding" => Self::ChannelBinding,
            other => Self::Other(other.to_owned()),
        }
    }
}

impl fmt::Display for MechFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SASL mechanism as announced in a `MECH` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mech {
    /// Upper-case name, e.g. `PLAIN`.
    pub name: String,
    /// Its flags.
    pub flags: Vec<MechFlag>,
}

impl Mech {
    /// A mechanism; the name is upper-cased.
    pub fn new(name: &str, flags: Vec<MechFlag>) -> Self {
        Self {
            name: name.to_ascii_uppercase(),
            flags,
        }
    }

    /// `PLAIN`, flagged `plaintext`.
    pub fn plain() -> Self {
        Self::new("PLAIN", vec![MechFlag::Plaintext])
    }

    /// `LOGIN`, flagged `plaintext`.
    pub fn login() -> Self {
        Self::new("LOGIN", vec![MechFlag::Plaintext])
    }

    /// Whether the mechanism carries `flag`.
    pub fn has(&self, flag: &MechFlag) -> bool {
        self.flags.contains(flag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip() {
        for word in [
            "anonymous",
            "plaintext",
            "dictionary",
            "active",
            "forward-secrecy",
            "mutual-auth",
            "private",
            "channel-binding",
            "shiny-new",
        ] {
            let flag = MechFlag::parse(word);
            assert_eq!(flag.as_str(), word);
            assert_eq!(flag.to_string(), word);
        }
        assert_eq!(
            MechFlag::parse("dictonary"),
            MechFlag::Other("dictonary".into())
        );
    }

    #[test]
    fn mech_constructors() {
        assert_eq!(Mech::new("plain", vec![]).name, "PLAIN");
        assert!(Mech::plain().has(&MechFlag::Plaintext));
        assert!(!Mech::login().has(&MechFlag::Private));
    }
}
