//! The MTA's durable spool: what `smtpd` acknowledged with `250` is on disk, fsynced, and
//! survives a crash at any instant until it is delivered or bounced.
//!
//! - [`Spool`]: the directory layout, recovery at start ([`Spool::open`]), and the
//!   delivery-side operations (read a message, save its state, hold, remove). Synchronous
//!   `std::fs`; async callers use `spawn_blocking`.
//! - [`Committer`]: the receive side, with group commit: many messages written and fsynced in
//!   parallel, then one fsync of `active/` for the whole batch. A large message need not be
//!   held in memory: its body is spooled into a [`BodyFile`] as it arrives and copied into
//!   the message file at commit ([`Committer::commit_spooled`]).
//! - [`Envelope`], [`Recipient`]: what is known about a message and each of its recipients;
//!   [`DeliveryReply`]: the reply that decided a recipient, as values (code, status, text,
//!   remote MTA), read also from the text form of earlier queue files.
//! - [`QueueId`]: unique, time-sortable, filename-safe message ids.
//! - [`Backoff`], [`Schedule`], [`Filter`]: retry timing and an in-memory index of the queue
//!   so that a queue manager finds due messages and `mailctl queue list` lists them fast.
//!
//! # On-disk format
//!
//! ```text
//! SPOOL/incoming/            files being written (and bodies being received, `body.*`);
//!                            everything here is removed at open
//! SPOOL/active/<id>          a committed message, never rewritten
//! SPOOL/active/<id>.state    the envelope after delivery attempts (optional)
//! SPOOL/corrupt/             committed files that failed their checks, kept for a human
//! ```
//!
//! A message file is `POSTERN-QUEUE 1 <json-length>\n`, the [`Envelope`] as JSON
//! (`json-length` bytes, at most [`MAX_ENVELOPE_JSON`]), `\n`, then the message bytes exactly as
//! received (`envelope.size` of them; the file length must match). A `.state` file is the whole
//! envelope as JSON; it replaces the one in the message file (its `id` and `size` must match),
//! and is replaced atomically (written in `incoming/`, fsynced, renamed, `active/` fsynced).
//!
//! A recipient's replies ([`DeliveryReply`]) are JSON objects
//! `{"code":550,"status":"5.1.1","text":"…","remote_mta":{"host":"…","ip":"…"}}`; files
//! written before they were typed hold them as strings (`"550 5.1.1 … (remote-mta host[ip])"`)
//! and load too (taken apart once; the text form is unchanged). A recipient's `destination`
//! (`"local"`/`"remote"`, decided at `RCPT`) is absent in older files. Such a spool is kept in
//! `tests/fixtures/spool-v1`.
//!
//! A message is committed by writing `incoming/<id>`, fsyncing it, hard-linking it to
//! `active/<id>` (a link never replaces an existing file) and fsyncing `active/`; only then is
//! the commit answered. A crash before that leaves either nothing in `active/` or a complete,
//! fsynced file (never acknowledged, so delivering it is a harmless duplicate).
//!
//! This crate leaves to others: delivery itself (SMTP/LMTP clients, DSN generation), the queue
//! manager loop, and locking against a second process opening the same spool.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backoff;
mod commit;
mod envelope;
mod error;
mod format;
mod id;
mod records;
mod schedule;
mod spool;

pub use backoff::Backoff;
pub use commit::{CommitTask, Committer};
pub use envelope::{Destination, Envelope, Notify, Origin, RcptStatus, Recipient, Ret};
pub use error::{QueueError, Result};
pub use format::{MAGIC, MAX_ENVELOPE_JSON};
pub use id::{ParseIdError, QueueId};
pub use postern_mail_types::{Address, Domain, EnhancedStatus};
pub use records::{DeliveryReply, RemoteMta};
pub use schedule::{Filter, Schedule};
pub use spool::{BodyFile, DEFAULT_MAX_MESSAGE_SIZE, Spool};
