//! What a session is allowed to do: flavor, limits and the extensions it advertises.
//!
//! The daemon builds one [`SessionConfig`] per listener from its TOML section and shares it
//! between sessions behind an `Arc`. Nothing here is read from a file.

use std::net::IpAddr;

/// SMTP (RFC 5321) or LMTP (RFC 2033).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// SMTP: `HELO`/`EHLO`, one reply after the message.
    Smtp,
    /// LMTP: `LHLO`, one reply per accepted recipient after the message.
    Lmtp,
}

/// The ESMTP extensions a session advertises (and therefore accepts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extensions {
    /// `STARTTLS` (RFC 3207); advertised only while the connection is in plaintext.
    pub starttls: bool,
    /// `AUTH` mechanisms (RFC 4954), upper-case, e.g. `PLAIN`, `LOGIN`; empty: no `AUTH`.
    pub auth: Vec<String>,
    /// Advertise and accept `AUTH` only once TLS is active (`538 5.7.11` before that).
    pub auth_requires_tls: bool,
    /// `DSN` (RFC 3461): `RET`, `ENVID`, `NOTIFY`, `ORCPT`.
    pub dsn: bool,
    /// `CHUNKING` (RFC 3030): `BDAT`.
    pub chunking: bool,
    /// `BINARYMIME` (RFC 3030); needs `chunking`.
    pub binarymime: bool,
    /// `SMTPUTF8` (RFC 6531).
    pub smtputf8: bool,
    /// `8BITMIME` (RFC 6152).
    pub eightbitmime: bool,
    /// `PIPELINING` (RFC 2920).
    pub pipelining: bool,
    /// `ENHANCEDSTATUSCODES` (RFC 2034); LMTP sessions always send enhanced codes.
    pub enhanced_status_codes: bool,
    /// `VRFY` is advertised; it answers `252` (we never confirm addresses).
    pub vrfy: bool,
    /// `SIZE` (RFC 1870) with [`SessionConfig::max_message_size`].
    pub size: bool,
}

impl Default for Extensions {
    /// What a modern MX offers: everything except `STARTTLS` and `AUTH`, which need a
    /// certificate and an authentication service.
    fn default() -> Self {
        Self {
            starttls: false,
            auth: Vec::new(),
            auth_requires_tls: true,
            dsn: true,
            chunking: true,
            binarymime: false,
            smtputf8: true,
            eightbitmime: true,
            pipelining: true,
            enhanced_status_codes: true,
            vrfy: false,
            size: true,
        }
    }
}

/// Settings shared by all sessions of one listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our name, used in the greeting, `EHLO` reply and `421` replies.
    pub hostname: String,
    /// SMTP or LMTP.
    pub flavor: Flavor,
    /// Largest message accepted, in octets after CRLF normalisation.
    pub max_message_size: u64,
    /// Most recipients per transaction; more get `452 4.5.3`.
    pub max_recipients: usize,
    /// Longest command line, CRLF included.
    pub max_line_length: usize,
    /// Longest message line in `DATA`, CRLF excluded.
    pub max_body_line_length: usize,
    /// Client errors tolerated; one more ends the session with `421 4.7.0`.
    pub max_errors: u32,
    /// Commands allowed outside a mail transaction (`NOOP`, `RSET`, `VRFY`, …) before a `MAIL`
    /// is accepted; one more ends the session with `421 4.7.0` (anti-harvest, anti-loop).
    pub max_commands_before_mail: u32,
    /// The extensions to advertise.
    pub extensions: Extensions,
    /// Text after `ESMTP`/`LMTP` in the greeting; may be empty.
    pub greeting_text: String,
    /// Refuse a `DATA` message with a bare CR or bare LF (`550 5.5.2`, after its end was
    /// read), as Postfix's `smtpd_forbid_bare_newline = reject`. Off (the default): bare LFs
    /// become CRLF and bare CRs are kept; the end of data is `CRLF . CRLF` either way.
    /// `BDAT` chunks are counted, not framed by lines, and are not checked.
    pub reject_bare_newline: bool,
}

impl SessionConfig {
    /// Defaults for `flavor`, named `hostname`: 50 MiB messages, 1000 recipients,
    /// 4096-octet command lines, 64 KiB body lines, 20 errors, 100 commands before `MAIL`.
    pub fn new(hostname: impl Into<String>, flavor: Flavor) -> Self {
        Self {
            hostname: hostname.into(),
            flavor,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_recipients: DEFAULT_MAX_RECIPIENTS,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_body_line_length: DEFAULT_MAX_BODY_LINE_LENGTH,
            max_errors: DEFAULT_MAX_ERRORS,
            max_commands_before_mail: DEFAULT_MAX_COMMANDS_BEFORE_MAIL,
            extensions: Extensions::default(),
            greeting_text: String::new(),
            reject_bare_newline: false,
        }
    }

    /// Whether replies carry enhanced status codes: always in LMTP, else when advertised.
    pub fn enhanced_codes(&self) -> bool {
        self.flavor == Flavor::Lmtp || self.extensions.enhanced_status_codes
    }

    /// Whether `BODY=BINARYMIME` is accepted (advertised and `CHUNKING` is on).
    pub(crate) fn binarymime(&self) -> bool {
        self.extensions.binarymime && self.extensions.chunking
    }
}

/// Who is on the other end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerInfo {
    /// Remote IP address; `None` on a Unix socket.
    pub ip: Option<IpAddr>,
    /// The connection is TLS from the start (port 465), or after `STARTTLS`.
    pub tls: bool,
    /// Already authenticated by the transport (e.g. a trusted local socket).
    pub authenticated: Option<String>,
}

/// 50 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 50 * 1024 * 1024;
/// Recipients per transaction.
pub const DEFAULT_MAX_RECIPIENTS: usize = 1000;
/// Octets per command line, CRLF included (smtp-proto's own cap).
pub const DEFAULT_MAX_LINE_LENGTH: usize = 4096;
/// Octets per message line.
pub const DEFAULT_MAX_BODY_LINE_LENGTH: usize = 65536;
/// As Postfix's `smtpd_hard_error_limit`.
pub const DEFAULT_MAX_ERRORS: u32 = 20;
/// As Postfix's `smtpd_junk_command_limit`.
pub const DEFAULT_MAX_COMMANDS_BEFORE_MAIL: u32 = 100;
