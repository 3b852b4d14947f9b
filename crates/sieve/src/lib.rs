//! A Sieve mail-filtering interpreter (RFC 5228), written from the RFCs.
//!
//! The crate is pure: no I/O, no async, no mail parsing. The caller compiles a script once
//! with [`compile`], then runs it per delivery with [`execute`], giving a [`Context`]: a view
//! of the message header ([`Message`]), the SMTP [`Envelope`] and a mailbox-existence probe.
//! The result is a list of [`Action`]s to carry out (the implicit keep already resolved).
//!
//! Supported extensions (names for `require`): see [`EXTENSIONS`]. Resource limits: see
//! [`limits`].
//!
//! `editheader` (RFC 5293): `addheader`/`deleteheader` change the header later tests see;
//! the changes come back in [`Outcome::header_edits`] for the caller to make to every copy
//! it stores or redirects ([`HeaderEdits::apply`]). Some fields (`Received`,
//! `Auto-Submitted`, authentication results, trace fields) cannot be changed: such
//! attempts are ignored with a warning (RFC 5293 §6).
//!
//! ```
//! use postern_sieve::{compile, execute, Action, Context, Envelope, Message};
//!
//! struct Msg;
//! impl Message for Msg {
//!     fn header(&self, name: &str) -> Vec<String> {
//!         if name.eq_ignore_ascii_case("subject") { vec!["[list] hello".into()] } else { vec![] }
//!     }
//!     fn size(&self) -> u64 { 1234 }
//! }
//!
//! let script = compile(r#"require "fileinto"; if header :contains "subject" "[list]" { fileinto "Lists"; }"#).unwrap();
//! let env = Envelope { from: Some("a@example.org".into()), to: "me@example.com".into() };
//! let ctx = Context { message: &Msg, envelope: &env, mailbox_exists: &|_| true };
//! let out = execute(&script, &ctx).unwrap();
//! assert!(matches!(&out.actions[..], [Action::FileInto { mailbox, .. }] if mailbox == "Lists"));
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actions;
pub mod address;
mod args;
mod ast;
mod date;
mod editheader;
mod flags;
mod interp;
mod lexer;
mod matching;
mod parser;
mod testexpr;
pub mod vacation;
mod validate;
mod variables;

pub use editheader::HeaderEdits;
pub use vacation::Vacation;

/// Resource limits enforced at compile time and run time.
pub mod limits {
    /// Largest script source accepted by [`compile`](crate::compile), in bytes.
    pub const MAX_SCRIPT_SIZE: usize = 1024 * 1024;
    /// Deepest nesting of blocks and tests (`if` inside `if`, `not`/`anyof`/`allof`).
    pub const MAX_NESTING: usize = 32;
    /// Most distinct actions one execution may produce (the implicit keep not counted).
    pub const MAX_ACTIONS: usize = 64;
    /// Most distinct `redirect` targets one execution may produce.
    pub const MAX_REDIRECTS: usize = 4;
    /// Longest variable name, in bytes (RFC 5229 asks for at least 32).
    pub const MAX_VARIABLE_NAME: usize = 64;
    /// Longest variable value in bytes; longer values are truncated (RFC 5229: at least 4000).
    pub const MAX_VARIABLE_VALUE: usize = 4000;
    /// Most distinct variables a script may assign (RFC 5229: at least 128).
    pub const MAX_VARIABLES: usize = 256;
    /// Deepest nesting of `include` (RFC 6609).
    pub const MAX_INCLUDE_DEPTH: usize = 8;
    /// Most `include`s one execution runs.
    pub const MAX_INCLUDES: usize = 32;
    /// Work budget of one execution: roughly the characters compared, scanned or copied
    /// by tests and string expansion. Exceeding it is a runtime error. `:matches` runs in
    /// O(pattern × text) at worst, so no pattern can take exponential time.
    pub const MAX_WORK: u64 = 20_000_000;
    /// Most `addheader`/`deleteheader` commands one execution runs (RFC 5293); one more
    /// is a runtime error (the message is then kept unchanged).
    pub const MAX_HEADER_EDITS: usize = 64;
    /// Longest value `addheader` accepts, in bytes before encoding (RFC 5293 §4 allows a
    /// limit; an encoded field of at least 998 characters must fit).
    pub const MAX_ADDHEADER_VALUE: usize = 2048;
    /// Most bytes the fields added by one execution may take, as written (encoded,
    /// folded, line ends counted); more is a runtime error.
    pub const MAX_ADDED_HEADER_BYTES: usize = 16 * 1024;
}

/// The capability strings this implementation accepts in `require`.
pub const EXTENSIONS: &[&str] = &[
    "fileinto",
    "envelope",
    "encoded-character",
    "variables",
    "imap4flags",
    "vacation",
    "reject",
    "ereject",
    "copy",
    "mailbox",
    "relational",
    "date",
    "index",
    "body",
    "include",
    "editheader",
    "subaddress",
    "comparator-i;octet",
    "comparator-i;ascii-casemap",
    "comparator-i;ascii-numeric",
];

/// A script that failed to compile: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CompileError {
    /// 1-based line of the offending token.
    pub line: usize,
    /// 1-based column (in characters) of the offending token.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A script that failed while running. Per RFC 5228 section 2.10.6 the caller must then
/// discard every action and file the message as the implicit keep would (into the inbox).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RuntimeError {
    /// 1-based line of the command that failed.
    pub line: usize,
    /// What went wrong.
    pub message: String,
}

/// A read-only view of the message being filtered.
pub trait Message {
    /// Every value of header field `name` (matched case-insensitively), in message order,
    /// unfolded, decoded (RFC 2047) and without the leading whitespace. Empty if absent.
    fn header(&self, name: &str) -> Vec<String>;
    /// The size of the whole message in octets.
    fn size(&self) -> u64;
    /// The body for the `body` test (RFC 5173), one value per MIME part looked at: see
    /// [`BodyTransform`]. The default has no body (the test matches nothing, `:count` is 0).
    fn body(&self, transform: &BodyTransform) -> Vec<String> {
        let _ = transform;
        Vec::new()
    }
}

/// What the `body` test looks at (RFC 5173 §5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyTransform {
    /// `:raw`: the body as sent, undecoded, MIME structure included (one value).
    Raw,
    /// `:content`: the decoded contents of the leaf parts whose type is one of these: `""`
    /// any, `"text"` any `text/*`, `"text/html"` exactly (case-insensitive).
    Content(Vec<String>),
    /// `:text` (the default): the decoded text of the `text/*` parts.
    Text,
}

/// The SMTP envelope of the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path (`MAIL FROM`); `None` for the null sender `<>`.
    pub from: Option<String>,
    /// The recipient being delivered to (`RCPT TO`).
    pub to: String,
}

/// What a script runs against.
pub struct Context<'a> {
    /// The message header and size.
    pub message: &'a dyn Message,
    /// The envelope of this delivery.
    pub envelope: &'a Envelope,
    /// Whether a mailbox (UTF-8 name, as written in the script) exists; for
    /// `mailboxexists` (RFC 5490).
    pub mailbox_exists: &'a dyn Fn(&str) -> bool,
}

/// One thing to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// File into the user's default mailbox (INBOX), with these IMAP flags.
    Keep {
        /// IMAP flags to set (system flags canonicalised, e.g. `\Seen`), deduplicated.
        flags: Vec<String>,
    },
    /// File into `mailbox` (UTF-8, hierarchy as the user wrote it).
    FileInto {
        /// The target mailbox name.
        mailbox: String,
        /// `:create` (RFC 5490): create the mailbox if it does not exist.
        create: bool,
        /// IMAP flags to set.
        flags: Vec<String>,
        /// `:copy` (RFC 3894) was given: this action did not cancel the implicit keep.
        copy: bool,
    },
    /// Forward the message, unchanged, to `address` (a bare `local@domain`).
    Redirect {
        /// The target address.
        address: String,
        /// `:copy` was given.
        copy: bool,
    },
    /// The script discarded the message: the implicit keep is cancelled. Other actions in
    /// the list still apply; this one needs no work.
    Discard,
    /// Refuse the message (RFC 5429): `reject` sends an MDN, `ereject` (`extended`) refuses
    /// at the protocol level where possible.
    Reject {
        /// The human-readable reason.
        reason: String,
        /// True for `ereject`.
        extended: bool,
    },
    /// Send a vacation auto-reply (RFC 5230), subject to [`vacation::should_respond`] and the
    /// once-per-`days` memory keyed by [`vacation::dedup_key`].
    Vacation(Vacation),
}

/// The result of a successful execution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The actions, in the order first taken; the implicit keep, when it applies, is the
    /// last one, as an [`Action::Keep`] carrying the `imap4flags` internal flags.
    pub actions: Vec<Action>,
    /// Things worth logging that did not stop the script (for example dropped flags).
    pub warnings: Vec<String>,
    /// Header fields the script added or deleted (`editheader`, RFC 5293): apply them to
    /// every copy kept, filed or redirected.
    pub header_edits: HeaderEdits,
}

/// A compiled script, ready for [`execute`]. Cheap to share between deliveries.
#[derive(Debug, Clone)]
pub struct Script {
    pub(crate) commands: Vec<ast::Cmd>,
    pub(crate) extensions: Vec<String>,
}

impl Script {
    /// The extensions the script requires, sorted.
    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }
}

/// Parses and checks a script. Every syntax error, unknown command, test or tag, missing
/// `require` and invalid literal (address, mailbox, header name) is reported here.
pub fn compile(source: &str) -> Result<Script, CompileError> {
    if source.len() > limits::MAX_SCRIPT_SIZE {
        return Err(CompileError {
            line: 1,
            column: 1,
            message: format!("script too large (limit {} bytes)", limits::MAX_SCRIPT_SIZE),
        });
    }
    let lexed = lexer::tokenize(source)?;
    let tree = parser::parse(&lexed)?;
    validate::validate(tree)
}

/// Runs a compiled script against one message. On error, file the message into the inbox
/// (the implicit keep) and ignore any partial result.
pub fn execute(script: &Script, ctx: &Context<'_>) -> Result<Outcome, RuntimeError> {
    interp::run(script, ctx, chrono::Utc::now(), &|_, _| None)
}

/// [`execute`] as if the message arrived at `now` (what `currentdate` sees).
pub fn execute_at(
    script: &Script,
    ctx: &Context<'_>,
    now: std::time::SystemTime,
) -> Result<Outcome, RuntimeError> {
    interp::run(script, ctx, now.into(), &|_, _| None)
}

/// Where an `include`d script lives (RFC 6609).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeLocation {
    /// `:personal` (the default): the user's own scripts.
    Personal,
    /// `:global`: scripts the administrator provides.
    Global,
}

/// [`execute`] with `include` (RFC 6609): `includes` gives the source of a script by name
/// and location, or `None` if there is none (an error unless `:optional`). Included
/// scripts are compiled when run; a script that does not compile, a loop, more than
/// [`limits::MAX_INCLUDE_DEPTH`] levels or [`limits::MAX_INCLUDES`] includes are runtime
/// errors (the message is then kept). [`execute`] finds no included script.
pub fn execute_with_includes(
    script: &Script,
    ctx: &Context<'_>,
    includes: &dyn Fn(&str, IncludeLocation) -> Option<String>,
) -> Result<Outcome, RuntimeError> {
    interp::run(script, ctx, chrono::Utc::now(), includes)
}
