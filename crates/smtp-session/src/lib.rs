//! SMTP and LMTP server sessions without I/O.
//!
//! A [`Session`] is a state machine: the driver feeds it the client's bytes
//! ([`Session::input`]) and performs the [`Action`]s it returns — write a reply, check a
//! sender or recipient, run SASL, start TLS, deliver a message, close — answering the ones that
//! need an answer with [`Session::completed`]. The same machine serves SMTP (MX, submission)
//! and LMTP ([`Flavor`]).
//!
//! This crate does no network I/O, no TLS, no SASL mechanics, no lookups and no storage; it has
//! no async code. It frames and parses input (with [smtp-proto] for the simple commands and
//! `BDAT` chunks), enforces the protocol's order and limits, and words the replies.
//!
//! Layout: [`reply`] (replies and their standard wording), [`address`] (mailboxes),
//! [`params`] (`MAIL`/`RCPT` parameters), `command` (command lines), `data` (`DATA` and `BDAT`
//! bodies), [`config`], [`action`] (actions, completions, transactions) and `session`.
//!
//! ```
//! use std::sync::Arc;
//! use postern_smtp_session::{Action, Completion, Flavor, PeerInfo, Session, SessionConfig, Verdict};
//!
//! let config = Arc::new(SessionConfig::new("mx.example", Flavor::Smtp));
//! let mut session = Session::new(config, PeerInfo::default());
//! assert_eq!(session.greeting().to_string(), "220 mx.example ESMTP\r\n");
//! let actions = session.input(b"HELO client.example\r\nMAIL FROM:<a@b.example>\r\n");
//! assert!(matches!(actions[1], Action::CheckSender { .. }));
//! assert!(!session.wants_input());
//! let actions = session.completed(Completion::Sender(Verdict::Accept)).unwrap();
//! assert_eq!(actions, [Action::Reply(postern_smtp_session::Reply::sender_ok())]);
//! ```
//!
//! [smtp-proto]: https://docs.rs/smtp-proto

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod action;
pub mod address;
mod command;
pub mod config;
mod data;
pub mod params;
pub mod reply;
mod session;
mod xtext;

pub use action::{Action, Completion, Transaction, Verdict};
pub use address::{Address, AddressError};
pub use config::{Extensions, Flavor, PeerInfo, SessionConfig};
pub use params::{BodyType, MailParams, Notify, Orcpt, ParamError, RcptParams, Ret};
pub use reply::{EnhancedCode, Reply};
pub use session::{Session, SessionError};
pub use xtext::{xtext_decode, xtext_encode};
