//! IDLE (RFC 2177): the session decides and reports, the driver only waits.
//!
//! imap-next owns the IDLE flow on the wire (it parses `IDLE`, then only `DONE`), so IDLE
//! reaches the session through [`Session::idle`] rather than `Session::begin`. The session
//! refuses it or accepts it and remembers the tag; the driver answers imap-next
//! (`idle_accept` / `idle_reject`), then waits on a [`Watch`] of the selected mailbox and
//! calls [`Session::idle_wake`] when it fires (updates are reported at once: new mail,
//! expunges, flags other sessions changed) and [`Session::idle_end`] on `DONE`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::notify::{Notifier, Subscription};
use super::session::Session;
use super::tagged::Tagged;
use crate::Ctx;

/// How often an IDLE session re-checks without inotify.
const POLL: Duration = Duration::from_millis(500);
/// How often an IDLE session re-checks even with inotify (changes inotify cannot see).
const RECHECK: Duration = Duration::from_secs(30);

/// What the driver does after [`Session::idle`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Idle {
    /// Refused: imap-next sends the tagged reply (`Server::idle_reject`) and leaves its IDLE
    /// flow.
    Refuse(Tagged),
    /// Accepted: send the continuation request (`Server::idle_accept`), then wait for
    /// `DONE`, calling [`Session::idle_wake`] when `watch` (the selected mailbox's directory;
    /// `None` when nothing is selected) changes, and [`Session::idle_end`] on `DONE`.
    Accept {
        /// The mailbox directory to watch.
        watch: Option<PathBuf>,
    },
}

impl Session {
    /// IDLE with tag `tag`: refused before login, else accepted (the session is idling until
    /// [`Session::idle_end`]).
    pub(crate) fn idle(&mut self, tag: &str) -> Idle {
        match self.idle_start() {
            Err(t) => Idle::Refuse(t),
            Ok(watch) => {
                self.idling = Some(tag.to_owned());
                Idle::Accept { watch }
            }
        }
    }

    /// True while an IDLE is in progress.
    pub fn is_idling(&self) -> bool {
        self.idling.is_some()
    }

    /// The watched mailbox changed (or the re-check timer fired) during IDLE: reports the
    /// updates, expunges included. Nothing outside IDLE.
    pub fn idle_wake(&mut self, out: &mut Vec<u8>) {
        if self.idling.is_some() {
            // A shared mailbox whose read right was revoked is closed before any update.
            crate::imap::shared::recheck_selected(self);
            self.sync(out, true);
            self.notify_fetch_new(out);
        }
    }

    /// `DONE`: the pending updates, then the IDLE command's tagged OK.
    pub fn idle_end(&mut self, out: &mut Vec<u8>) {
        if let Some(tag) = self.idling.take() {
            self.idle_done(out, &tag);
        }
    }
}

/// What wakes an idling session: the shared inotify watcher, or polling when inotify is
/// unavailable or cannot watch the mailbox.
pub(crate) enum Watch {
    /// Ticks on every change of the mailbox's `new/` and `cur/`.
    Inotify(Subscription),
    /// Re-check every [`POLL`].
    Poll,
}

impl Watch {
    /// Starts watching the mailbox directory `dir`.
    pub(crate) fn start(ctx: &Ctx, dir: &Path) -> Self {
        let notifier = ctx.notifier.get_or_init(Notifier::start).clone();
        match notifier.and_then(|n| n.subscribe(dir)) {
            Some(sub) => Self::Inotify(sub),
            None => Self::Poll,
        }
    }

    /// Resolves when the session should look at its mailbox again. Cancel-safe.
    pub(crate) async fn changed(&mut self) {
        match self {
            Self::Inotify(sub) => {
                tokio::select! {
                    _ = sub.rx.changed() => {}
                    () = tokio::time::sleep(RECHECK) => {}
                }
            }
            Self::Poll => tokio::time::sleep(POLL).await,
        }
    }
}
