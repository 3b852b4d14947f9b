//! Wire protocols between Postern's daemons, and between them and Postfix or Dovecot.
//!
//! - [`dovecot`]: the Dovecot auth client protocol 1.2 (what `smtpd_sasl_type = dovecot` speaks),
//!   both directions, plus the SASL `PLAIN` / `LOGIN` helpers in [`sasl`].
//! - [`userdb`]: the Dovecot master / userdb socket protocol (`USER`, `PASS`, `LIST`).
//! - [`socketmap`]: the Postfix socketmap table protocol (netstrings).
//! - [`mod@escape`], [`mod@line`], [`params`]: the pieces the line protocols share.
//! - [`client`]: small async clients for the three sockets.
//! - [`cache`]: the short-lived cache of directory answers (authd's, and its clients'), emptied
//!   by the directory's change stamp.
//!
//! Everything outside [`client`] and [`cache`] (the modules doing I/O) is a codec: bytes or
//! lines in, typed values out, and back.
//! None of it opens a socket, waits, logs or looks anything up; drivers (authd, smtpd,
//! lmtp-deliver, imapd) own the sockets, the limits on time, and the answers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cache;
pub mod client;
pub mod dovecot;
pub mod escape;
pub mod line;
pub mod params;
pub mod sasl;
pub mod socketmap;
pub mod userdb;

pub use escape::{escape, unescape};
pub use line::{LineBuffer, LineError};
pub use params::Params;
pub use sasl::Secret;

/// A line or message that does not follow the protocol.
///
/// The variants never carry passwords; values shown are cut short so a hostile peer can't
/// flood a log line through them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtoError {
    /// The line was empty.
    #[error("empty line")]
    Empty,
    /// The first word is not a command of this protocol (shortened).
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// A required argument is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// An argument could not be parsed (the value is shortened).
    #[error("invalid {field}: {value:?}")]
    Invalid {
        /// Which argument.
        field: &'static str,
        /// What was sent, at most [`SHOWN_LEN`] bytes of it.
        value: String,
    },
    /// A `\x01` escape that is not one of `0 1 t r n`, or a `\x01` at the end.
    #[error("invalid escape sequence")]
    InvalidEscape,
    /// Base64 data that doesn't decode.
    #[error("invalid base64")]
    InvalidBase64,
    /// Bytes that should be UTF-8 and aren't.
    #[error("invalid UTF-8")]
    InvalidUtf8,
    /// A SASL response of the wrong shape (what was wrong; never the data).
    #[error("malformed SASL response: {0}")]
    Sasl(&'static str),
}

/// How many bytes of an offending value [`ProtoError`] keeps.
pub const SHOWN_LEN: usize = 64;

impl ProtoError {
    /// `Invalid { field, value }`, with `value` cut to [`SHOWN_LEN`] bytes.
    pub(crate) fn invalid(field: &'static str, value: &str) -> Self {
        Self::Invalid {
            field,
            value: shorten(value),
        }
    }

    /// `UnknownCommand`, with the name cut to [`SHOWN_LEN`] bytes.
    pub(crate) fn unknown(command: &str) -> Self {
        Self::UnknownCommand(shorten(command))
    }
}

/// The first [`SHOWN_LEN`] bytes of `s`, cut at a character boundary.
fn shorten(s: &str) -> String {
    let mut end = s.len().min(SHOWN_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// Parses a decimal `u32` argument (no sign, no spaces).
pub(crate) fn parse_u32(field: &'static str, value: &str) -> Result<u32, ProtoError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ProtoError::invalid(field, value));
    }
    value.parse().map_err(|_| ProtoError::invalid(field, value))
}
