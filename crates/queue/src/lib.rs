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
//! SPOOL/slots/<n>            message slots (slot layout): preallocated, rewritten in place
//! SPOOL/active/<id>          a committed message (file layout), never rewritten
//! SPOOL/active/<id>.state    the envelope after delivery attempts (optional; both layouts)
//! SPOOL/spare/               removed message files kept for reuse (file layout)
//! SPOOL/corrupt/             committed files that failed their checks, kept for a human
//! ```
//!
//! Two layouts commit new messages ([`Layout`], chosen at [`Spool::open_with`]); a spool is
//! recovered and served whatever it holds of either, so a spool written by the file layout
//! (every release before the slot layout) keeps working, and `active/<id>` files copied in
//! by hand are delivered as before. smtpd uses the slot layout. In the slot layout a message
//! whose file would exceed 256 KiB is still committed as a file in `active/` (its data write
//! dominates; a directory fsync more costs little, and slots stay small).
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
//! ## Slot layout
//!
//! A slot `slots/<n>` (`n` decimal) begins with a 64-byte header, then the payload: a message
//! file exactly as above. Header (integers little-endian):
//!
//! ```text
//! 0..8    "PQSLOT1\n"
//! 8..28   the queue id (20 hex digits)
//! 28..32  zero
//! 32..40  payload length (u64)
//! 40..44  CRC-32 (IEEE) of the payload
//! 44..48  CRC-32 of bytes 0..44
//! 48..64  zero
//! ```
//!
//! Bytes after the payload are stale (a slot is never shortened below its last use, so its
//! blocks stay allocated); a header that is not valid — zeroed, or torn — makes the slot free.
//!
//! - **Preallocation** ([`Spool::preallocate_slots`], smtpd: 256 at start): free slots of
//!   16 KiB of zeros, not fsynced; `slots/` is fsynced before any of them is used.
//! - **Commit:** a free slot (or a new one) gets header and payload in one `writev` (a
//!   spooled body: the payload, then the header), then one `fdatasync`; nothing orders the
//!   writes on disk before that flush, which is why the header checksums the payload (see
//!   Recovery). A reused slot's name is durable already and its blocks are allocated, so
//!   that one flush commits the message and no directory is fsynced. A new slot
//!   is written out to at least 16 KiB, `fsync`ed, and `slots/` fsynced (one directory fsync
//!   per batch with new slots) before the commit is answered.
//! - **Removal:** the header is overwritten with zeros, without an fsync, and the slot is
//!   free for the next commit. If a crash loses that write, the message is delivered again
//!   after restart (a duplicate of a delivered message, as when the file layout loses an
//!   unlink). Slot files stay open from commit to removal and while free (at most 256
//!   descriptors), so a steady flow opens none by path. At most 512 free slots are kept; a
//!   freed slot longer than 128 KiB, or beyond those 512, is deleted (its header zeroed
//!   first).
//! - **Recovery:** a slot with a valid header is a message only if its payload's CRC-32
//!   matches, its format checks pass and its envelope's id is the header's; otherwise it was
//!   a write cut short by the crash (never acknowledged: the commit was answered only after
//!   its `fdatasync`) or damage, and the file is moved to `corrupt/` as `slot.<n>`.
//! - **Reuse is safe:** a slot is rewritten only after its message was removed. A crash
//!   during the rewrite leaves each sector old or new: the old header with a partly new
//!   payload, or the new header with a partly old one, fails the CRC and is not delivered;
//!   all-old sectors are the removed message whole (a duplicate, as above); all-new ones the
//!   new message whole. An acknowledged message's slot is never written until it is removed.
//!
//! ## File layout
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
mod slots;
mod spool;

pub use backoff::Backoff;
pub use commit::{CommitTask, Committer, InlineWhen};
pub use envelope::{Destination, Envelope, Notify, Origin, RcptStatus, Recipient, Ret};
pub use error::{QueueError, Result};
pub use format::{MAGIC, MAX_ENVELOPE_JSON};
pub use id::{ParseIdError, QueueId};
pub use postern_mail_types::{Address, Domain, EnhancedStatus};
pub use records::{DeliveryReply, RemoteMta};
pub use schedule::{Filter, Schedule};
pub use spool::{BodyFile, DEFAULT_MAX_MESSAGE_SIZE, Layout, Spool};
