//! Postern's Maildir++ store, written so that Dovecot can read what we write and we can deliver
//! into a Maildir that Dovecot already serves.
//!
//! - [`Maildir`]: a user's Maildir; its root is INBOX, folders are Maildir++ `.A.B`
//!   directories with names in IMAP modified UTF-7 ([`folder`], [`mutf7`]).
//! - [`Maildir::deliver`]: durable delivery, `tmp/` → fsync → `link` → fsync of the
//!   directory ([`deliver`](mod@deliver) explains the crash story),
//!   Dovecot-style unique names
//!   ([`filename`]), flags and keywords in the `:2,` info part ([`flags`], [`keywords`]).
//! - [`Maildir::deliver_copies`]: one recipient's delivery in one call — quota checked, each
//!   copy's folder resolved, stored durably, `maildirsize` updated once.
//! - [`Quota`]: Maildir++ `maildirsize` quota.
//! - [`Maildir::clean_tmp`]: removal of `tmp/` leftovers after 36 hours.
//! - [`Mailbox`] ([`Maildir::open_mailbox`]): the IMAP view of one mailbox — UIDs kept in
//!   Dovecot's `dovecot-uidlist` ([`uidlist`]), flags, CONDSTORE MODSEQs, expunge history,
//!   \Recent and a per-message cache, with an index (`postern-index`) so large mailboxes
//!   open and sync fast ([`mailbox`] explains the design).
//! - Folder management for IMAP: [`Maildir::delete_folder`], [`Maildir::rename_folder`],
//!   subscriptions in Dovecot's `subscriptions` file ([`subscriptions`]).
//!
//! Everything is synchronous `std::fs`; async callers use `spawn_blocking`.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acl;
mod cache;
pub mod deliver;
pub mod dotlock;
mod error;
pub mod filename;
pub mod flags;
pub mod folder;
mod fsutil;
mod index;
pub mod keywords;
pub mod mailbox;
mod manage;
pub mod metadata;
pub mod mutf7;
pub mod quota;
pub mod special_use;
mod store;
pub mod subscriptions;
pub mod uidlist;

pub use deliver::{
    Delivered, Destination, MessageCopy, QuotaPolicy, RecipientDelivery, StoredCopies, TMP_MAX_AGE,
    crlf_to_lf, virtual_size,
};
pub use error::{MaildirError, NameError, Result};
pub use flags::Flags;
pub use keywords::{DropReason, DroppedKeyword};
pub use mailbox::{FlagOp, Mailbox, MessageMeta, SyncReport};
pub use quota::{Quota, QuotaLimit, Usage};
pub use store::{MAILDIRFOLDER_FILE, Maildir, SUBDIRS};
