#![forbid(unsafe_code)]
#![warn(missing_docs)]
//! An outbound SMTP and LMTP client: hands one message at a time to a server.
//!
//! smtpd's queue manager uses it to deliver to `lmtp-deliver` (or Dovecot's LMTP) over a Unix
//! socket or TCP, and later to remote SMTP servers.
//!
//! ```no_run
//! # async fn demo() -> Result<(), postern_smtp_client::ClientError> {
//! use postern_smtp_client::{Client, Flavor, OutRcpt, Outgoing, Target, Timeouts};
//!
//! let target = Target::Unix("/run/postern/lmtp".into());
//! let mut client = Client::connect(&target, Flavor::Lmtp, "mx.example.org", Timeouts::default()).await?;
//! let message = b"Subject: hi\r\n\r\nhello\r\n";
//! let tx = Outgoing::new(Some("alice@example.org".into()), vec![OutRcpt::new("bob@example.org")], message);
//! for result in client.send(&tx).await? {
//!     println!("{}: {}", result.address, result.reply);
//! }
//! client.quit().await?;
//! # Ok(()) }
//! ```
//!
//! Layout:
//! - [`reply`]: server replies, read with a bounded buffer and parsed (enhanced codes included);
//! - [`caps`]: the extensions an `EHLO`/`LHLO` reply advertises;
//! - [`message`]: the transaction to send, the `MAIL`/`RCPT` commands and dot-stuffing;
//! - [`client`]: the connection and the conversation (greeting, hello, transactions, `QUIT`);
//! - [`error`]: what can go wrong, and the per-step timeouts.
//!
//! - [`tls`]: client TLS configurations for `STARTTLS` ([`Client::starttls`]);
//!   [`Client::auth`] does `AUTH PLAIN`/`LOGIN` for smarthosts.
//!
//! To an LMTP server that offers `CHUNKING` and `PIPELINING` (lmtp-deliver, Dovecot) a
//! transaction is one write (`MAIL`, `RCPT`s, `BDAT <size> LAST` and the body) and one read
//! of all the replies; SMTP servers get `DATA` (a remote MX's handling of a refused `BDAT`
//! is not ours to count on).
//!
//! What it leaves to others: MX lookup, TLS policy and retries (the queue manager). A message that is too big for the server's `SIZE` fails with
//! `552 5.3.4`; an 8-bit body to a server without `8BITMIME` with `550 5.6.3` (no
//! conversion to quoted-printable: a signed message would break); an `SMTPUTF8` message to a
//! server without it with `550 5.6.7`.

pub mod caps;
pub mod client;
mod conn;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod message;
pub mod reply;
pub mod tls;

pub use caps::Capabilities;
pub use client::{Client, Flavor, Target};
pub use error::{ClientError, Step, Timeouts};
pub use message::{OutRcpt, Outgoing, RcptResult};
pub use postern_mail_types::{Notify, Ret};
pub use reply::ServerReply;
