//! The maildrop on disk: INBOX of the user's Maildir through `postern_maildir`'s mailbox API.
//! Synchronous (std::fs); the driver calls these through `spawn_blocking`.

pub use postern_maildir::Mailbox;
use postern_maildir::{FlagOp, Flags, Maildir, MaildirError};

use super::session::{FetchError, Maildrop};

/// Opens INBOX (picking up new deliveries) and takes the snapshot the session works on.
pub fn open(maildir: &Maildir) -> Result<(Mailbox, Maildrop), String> {
    let mb = maildir.open_mailbox("INBOX").map_err(|e| e.to_string())?;
    let drop = Maildrop::new(
        mb.uid_validity(),
        mb.messages().iter().map(|m| (m.uid, m.size, m.flags.seen)),
    );
    Ok((mb, drop))
}

/// Reads a message (CRLF line endings). The mailbox finds a file renamed by another session
/// (flag changes); a file that is gone is [`FetchError::Gone`].
pub fn read(mb: &Mailbox, uid: u32) -> Result<Vec<u8>, FetchError> {
    match mb.read(uid) {
        Ok(data) => Ok(data),
        Err(MaildirError::Expunged(_)) => Err(FetchError::Gone),
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => Err(FetchError::Gone),
        Err(e) => Err(FetchError::Temporary(e.to_string())),
    }
}

/// The UPDATE state: `\Seen` on what was retrieved, then the deletions. Messages already
/// expunged by someone else count as deleted.
pub fn update(mb: &mut Mailbox, expunge: &[u32], seen: &[u32]) -> Result<(), String> {
    mark_seen(mb, seen);
    if !expunge.is_empty() {
        mb.expunge(expunge).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Sets `\Seen` where it is missing; a message gone meanwhile is skipped.
pub fn mark_seen(mb: &mut Mailbox, uids: &[u32]) {
    let seen = Flags {
        seen: true,
        ..Flags::default()
    };
    for &uid in uids {
        match mb.store_flags(uid, FlagOp::Add, &seen, None) {
            Ok(_) | Err(MaildirError::Expunged(_)) => {}
            Err(e) => tracing::warn!(uid, error = %e, "pop3: could not set \\Seen"),
        }
    }
    if let Err(e) = mb.sync_flag_changes() {
        tracing::warn!(error = %e, "pop3: \\Seen not made durable");
    }
}
