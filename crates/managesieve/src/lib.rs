//! ManageSieve (RFC 5804) without I/O: the grammar, the responses and the session.
//!
//! A [`Session`] is a state machine, modelled on `postern-smtp-session`: the driver feeds it
//! the client's bytes ([`Session::input`]) and performs the [`Action`]s it returns — write a
//! response, start TLS, run a SASL step through authd, carry out a storage [`Request`] —
//! answering the ones that need an answer through [`Session::tls_started`],
//! [`Session::auth_challenge`], [`Session::auth_done`] and [`Session::stored`]. Checking a
//! script's syntax and storing it is the driver's work (imapd, with `postern-sieve` and
//! Pigeonhole's layout on disk); this crate checks names, sizes and the protocol.
//!
//! Limits: the command line ([`Settings::max_line`]; before authentication every command
//! together with its literals is held to [`Settings::max_preauth`] and more closes the
//! connection), quoted strings (1024 octets), the script size (a larger literal is read
//! and thrown away, then answered `NO (QUOTA/MAXSIZE)`), failed authentications, and
//! invalid commands in a row ([`session::MAX_BAD_COMMANDS`]).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod parse;
pub mod response;
pub mod session;

#[cfg(test)]
mod tests;

pub use session::{
    Action, AuthError, Mechanism, Request, Session, Settings, StoreError, StoreReply,
    UnexpectedCompletion,
};

/// Longest script name, in octets (RFC 5804 §1.6 asks servers to allow at least 128
/// characters; 255 octets keeps `NAME.sieve` a valid file name).
pub const MAX_NAME: usize = 200;

/// Checks a script name: RFC 5804 §1.6 (no control characters U+0000-U+001F,
/// U+007F-U+009F, no U+2028/U+2029) plus what keeps it a plain file name in the user's
/// `sieve/` directory: not empty, at most [`MAX_NAME`] octets, no `/` or `\`, not starting
/// with `.` (hidden and temporary files) and without `..`.
pub fn valid_script_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME {
        return Err("too long");
    }
    if name.starts_with('.') {
        return Err("starts with a dot");
    }
    if name.contains(['/', '\\']) {
        return Err("contains a slash");
    }
    if name.contains("..") {
        return Err("contains '..'");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err("contains a control character");
    }
    Ok(())
}
