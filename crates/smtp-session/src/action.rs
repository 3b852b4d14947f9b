//! What the session asks of its driver, and what the driver brings back.
//!
//! `Debug` keeps SASL data (`AUTH` initial responses, client responses) and message bodies
//! out of logs.

use std::fmt;

use crate::address::Address;
use crate::config::{Flavor, PeerInfo};
use crate::params::{BodyType, MailParams, RcptParams};
use crate::reply::Reply;

/// Something for the driver to do, in order.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Write this reply.
    Reply(Reply),
    /// Decide on a sender (`None`: the null sender `<>`); answer [`Completion::Sender`].
    CheckSender {
        /// The reverse-path.
        address: Option<Address>,
        /// Its parameters.
        params: MailParams,
    },
    /// Decide on a recipient (relay policy, user lookup, quota); answer
    /// [`Completion::Recipient`].
    CheckRecipient {
        /// The forward-path.
        address: Address,
        /// Its parameters.
        params: RcptParams,
    },
    /// Write what came before (the `220` to `STARTTLS`), run the TLS handshake, then call
    /// [`Session::tls_started`](crate::Session::tls_started). Input given before that is
    /// discarded.
    StartTls,
    /// Start SASL with this mechanism (upper-case, one of those advertised). Answer
    /// [`Completion::AuthChallenge`] for another round or [`Completion::AuthDone`].
    Auth {
        /// The mechanism.
        mechanism: String,
        /// The initial response, still base64 (`=` from the client becomes `""`).
        initial_response: Option<String>,
    },
    /// The client's answer to a challenge, still base64; answer as for [`Action::Auth`].
    AuthResponse(String),
    /// The client cancelled the exchange (`*`) or broke it; forget it. The session has replied.
    AuthCancel,
    /// Store the message (fsync before answering); answer [`Completion::Delivered`].
    Deliver(Box<Transaction>),
    /// Close the connection after writing what came before.
    Close,
}

/// The driver's answer to the pending action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Answer to [`Action::CheckSender`].
    Sender(Verdict),
    /// Answer to [`Action::CheckRecipient`].
    Recipient(Verdict),
    /// Send this base64 challenge (`334`) and pass the client's line back.
    AuthChallenge(String),
    /// SASL finished: the authenticated user, or the reply to send (e.g.
    /// [`Reply::auth_failed`]).
    AuthDone(Result<String, Reply>),
    /// Answer to [`Action::Deliver`]: SMTP one reply; LMTP one per recipient, in `RCPT` order
    /// (a missing one becomes `451 4.3.0`).
    Delivered(Vec<Reply>),
}

/// Accept or refuse a sender or recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accept, with the standard `250` reply.
    Accept,
    /// Accept, with this reply (which should be 2xx).
    AcceptWith(Reply),
    /// Refuse, with this reply (4xx or 5xx).
    Reject(Reply),
}

/// A complete mail transaction: envelope, message and who sent it.
#[derive(Clone, PartialEq, Eq)]
pub struct Transaction {
    /// SMTP or LMTP.
    pub flavor: Flavor,
    /// The `HELO`/`EHLO`/`LHLO` argument.
    pub helo: String,
    /// Whether the client greeted with `EHLO`/`LHLO` (not `HELO`).
    pub esmtp: bool,
    /// The reverse-path; `None` is the null sender.
    pub mail_from: Option<Address>,
    /// `MAIL FROM` parameters.
    pub mail_params: MailParams,
    /// Accepted recipients in `RCPT` order.
    pub recipients: Vec<(Address, RcptParams)>,
    /// The message: CRLF line ends, dot-unstuffed (`DATA`) or as sent (`BDAT`). Only its
    /// end when the driver took the rest with [`Session::take_body`](crate::Session::take_body).
    pub message: Vec<u8>,
    /// The declared body type (`7BIT` when none was declared).
    pub body_type: BodyType,
    /// `SMTPUTF8` was given.
    pub smtputf8: bool,
    /// The message came by `BDAT`.
    pub chunked: bool,
    /// The client.
    pub peer: PeerInfo,
    /// The authenticated user, if any.
    pub authenticated: Option<String>,
    /// TLS was active.
    pub tls: bool,
}

impl Transaction {
    /// The `with` protocol of the `Received:` header (RFC 3848): `ESMTPSA`, `UTF8SMTPS`, `LMTP`, …
    pub fn protocol(&self) -> String {
        let base = match (self.flavor, self.smtputf8, self.esmtp) {
            (Flavor::Lmtp, false, _) => "LMTP",
            (Flavor::Lmtp, true, _) => "UTF8LMTP",
            (Flavor::Smtp, true, _) => "UTF8SMTP",
            (Flavor::Smtp, false, true) => "ESMTP",
            (Flavor::Smtp, false, false) => return "SMTP".to_owned(),
        };
        let tls = if self.tls { "S" } else { "" };
        let auth = if self.authenticated.is_some() {
            "A"
        } else {
            ""
        };
        format!("{base}{tls}{auth}")
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply(reply) => f.debug_tuple("Reply").field(reply).finish(),
            Self::CheckSender { address, params } => f
                .debug_struct("CheckSender")
                .field("address", address)
                .field("params", params)
                .finish(),
            Self::CheckRecipient { address, params } => f
                .debug_struct("CheckRecipient")
                .field("address", address)
                .field("params", params)
                .finish(),
            Self::StartTls => f.write_str("StartTls"),
            Self::Auth {
                mechanism,
                initial_response,
            } => f
                .debug_struct("Auth")
                .field("mechanism", mechanism)
                .field(
                    "initial_response",
                    &initial_response.as_ref().map(|_| Redacted),
                )
                .finish(),
            Self::AuthResponse(_) => f.debug_tuple("AuthResponse").field(&Redacted).finish(),
            Self::AuthCancel => f.write_str("AuthCancel"),
            Self::Deliver(tx) => f.debug_tuple("Deliver").field(tx).finish(),
            Self::Close => f.write_str("Close"),
        }
    }
}

impl fmt::Debug for Transaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("flavor", &self.flavor)
            .field("helo", &self.helo)
            .field("esmtp", &self.esmtp)
            .field("mail_from", &self.mail_from)
            .field("mail_params", &self.mail_params)
            .field("recipients", &self.recipients)
            .field("message", &format_args!("<{} octets>", self.message.len()))
            .field("body_type", &self.body_type)
            .field("smtputf8", &self.smtputf8)
            .field("chunked", &self.chunked)
            .field("peer", &self.peer)
            .field("authenticated", &self.authenticated)
            .field("tls", &self.tls)
            .finish()
    }
}

struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let auth = Action::Auth {
            mechanism: "PLAIN".into(),
            initial_response: Some("c2VjcmV0".into()),
        };
        let text = format!("{auth:?} {:?}", Action::AuthResponse("c2VjcmV0".into()));
        assert!(
            !text.contains("c2VjcmV0") && text.contains("PLAIN"),
            "{text}"
        );
    }
}
