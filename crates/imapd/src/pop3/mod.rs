//! The POP3 server: RFC 1939 with RFC 2449 (CAPA, response codes, PIPELINING), RFC 5034
//! (AUTH PLAIN and LOGIN through authd) and RFC 2595 (STLS on port 110; port 995 is TLS from
//! the start).
//!
//! - [`session`]: the protocol as a state machine without I/O (unit-tested).
//! - [`conn`]: the driver over the socket: lines, timeouts, TLS, authd and the Maildir.
//! - [`store`]: the maildrop (INBOX) on disk.
//!
//! Behaviour, close to Dovecot's defaults so that a migrated install looks the same:
//! - the maildrop is the INBOX as it was at login (later deliveries wait for the next session);
//! - UIDL is Dovecot's default `%08Xu%08Xv` (IMAP UID and UIDVALIDITY, 8 lower-case hex
//!   digits each), stable across sessions and identical to what Dovecot gives for the same
//!   `dovecot-uidlist` (a UIDL Dovecot stored in the uidlist's `P` field is not used yet);
//! - DELE takes effect only at QUIT (expunge); a message read with RETR gets `\Seen`
//!   (`pop3_no_flag_updates = no`), also if the client leaves without QUIT; RSET undoes both;
//! - USER/PASS and AUTH need TLS (STLS or 995) unless the client is in `trusted_networks`;
//! - limits: 255-octet command lines (RFC 2449), the login timeout before login, the idle
//!   timeout (at least 10 minutes, RFC 1939) after, `max_auth_failures`, and a close after
//!   repeated invalid commands.

pub mod conn;
pub mod session;
pub mod store;

pub use conn::serve;
