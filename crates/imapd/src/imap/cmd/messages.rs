//! STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE.

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use postern_maildir::FlagOp;

use crate::imap::names;
use crate::imap::resp::{num_list_ordered, num_set, untagged};
use crate::imap::session::{Session, announce_expunges, flag_update, store_error, to_store_flags};
use crate::imap::tagged::{Tagged, other};

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &mut self,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        out: &mut Vec<u8>,
    ) -> Tagged {
        if self.state.sel().is_some_and(|s| s.read_only) {
            return Tagged::no(other("READ-ONLY"), "Mailbox is read-only");
        }
        let fl = match to_store_flags(flags) {
            Ok(f) => f,
            Err(t) => return Tagged::bad(t),
        };
        let unchanged_since = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(v)| *v)
            .next();
        // RFC 7162 §3.1: the first CONDSTORE enabling command with a mailbox selected
        // reports HIGHESTMODSEQ (in its tagged OK, untagged when MODIFIED takes that place).
        let announce_modseq =
            unchanged_since.is_some() && !self.enabled.condstore && self.state.sel().is_some();
        if unchanged_since.is_some() {
            self.enabled.condstore = true;
        }
        let targets = match self.resolve(set, uid) {
            Ok(t) => t,
            Err(e) => return Tagged::bad(e),
        };
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let silent = matches!(response, StoreResponse::Silent);
        let condstore = self.enabled.condstore;
        let uidonly = self.enabled.uidonly;
        let Some(sel) = self.state.sel_mut() else {
            return Tagged::bad("Log in first");
        };
        let mut modified = Vec::new();
        let mut new_kw = false;
        let mut updates = Vec::new();
        for (seq, u) in targets {
            if sel.gone.contains(&u) {
                continue;
            }
            match sel.mbox.store_flags(u, op, &fl, unchanged_since) {
                Ok(Some(meta)) => {
                    for k in &meta.flags.keywords {
                        if sel.keywords.insert(k.clone()) {
                            new_kw = true;
                        }
                    }
                    // Without .SILENT, or with CONDSTORE (RFC 7162 §3.2: MODSEQ is reported).
                    if !silent || unchanged_since.is_some() && condstore {
                        updates.push((seq, meta.clone()));
                    }
                }
                Ok(None) => modified.push(if uid { u } else { seq }),
                Err(e) => {
                    tracing::debug!(error = %e, uid = u, "store failed");
                }
            }
        }
        // The changed flags reach the disk before the tagged OK (one fsync of cur/ for all).
        if let Err(e) = sel.mbox.sync_flag_changes() {
            tracing::warn!(error = %e, "flag changes not made durable");
            return Tagged::no(other("SERVERBUG"), "STORE could not be made durable");
        }
        if new_kw {
            let mut s = String::from("FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft");
            for k in &sel.keywords {
                s.push(' ');
                s.push_str(k);
            }
            s.push(')');
            untagged(out, &s);
        }
        for (seq, meta) in updates {
            flag_update(
                out,
                seq,
                &meta,
                sel.recent.contains(&meta.uid),
                condstore,
                uidonly,
            );
        }
        let highest = announce_modseq.then(|| sel.mbox.highest_modseq().max(1));
        if modified.is_empty() {
            self.sync(out, false);
            match highest {
                Some(h) => Tagged::ok_code(other(format!("HIGHESTMODSEQ {h}")), "STORE completed"),
                None => Tagged::ok("STORE completed"),
            }
        } else {
            self.sync(out, false);
            if let Some(h) = highest {
                untagged(out, &format!("OK [HIGHESTMODSEQ {h}] Highest"));
            }
            Tagged::ok_code(
                other(format!("MODIFIED {}", num_set(&modified))),
                "Conditional STORE failed for some messages",
            )
        }
    }

    pub(crate) fn copy_move(
        &mut self,
        set: &SequenceSet,
        mailbox: &WireMailbox<'_>,
        uid: bool,
        is_move: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let what = if is_move { "MOVE" } else { "COPY" };
        if is_move && self.state.sel().is_some_and(|s| s.read_only) {
            return Tagged::no(other("READ-ONLY"), "Mailbox is read-only");
        }
        let Some(name) = names::decode(mailbox, self.utf8()) else {
            return Tagged::no(other("CANNOT"), "Invalid mailbox name");
        };
        let targets = match self.resolve(set, uid) {
            Ok(t) => t,
            Err(e) => return Tagged::bad(e),
        };
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        let mut dest = match user.maildir.open_mailbox(&name) {
            Ok(m) => m,
            Err(e) => {
                return super::mailboxes::no_trycreate(&e);
            }
        };
        let qresync = self.enabled.vanished();
        let Some(sel) = self.state.sel_mut() else {
            return Tagged::bad("Log in first");
        };
        let uids: Vec<u32> = targets
            .iter()
            .map(|t| t.1)
            .filter(|u| !sel.gone.contains(u))
            .collect();
        if uids.is_empty() {
            self.sync(out, false);
            return Tagged::ok(format!("{what} completed (no messages)"));
        }
        let pairs = match sel.mbox.copy_to(&uids, &mut dest) {
            Ok(p) => p,
            Err(e) => return store_error(&e),
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let code = if pairs.is_empty() {
            None
        } else {
            Some(other(format!(
                "COPYUID {} {} {}",
                dest.uid_validity(),
                num_list_ordered(&src),
                num_list_ordered(&dst)
            )))
        };
        if !is_move {
            self.sync(out, false);
            return Tagged::Ok(code, "COPY completed".into());
        }
        if let Some(c) = code {
            Tagged::ok_code(c, "Moved").write(out, "*");
        }
        match sel.mbox.expunge(&src) {
            Ok(gone) => sel.gone.extend(gone),
            Err(e) => {
                return store_error(&e);
            }
        }
        announce_expunges(sel, out, qresync);
        self.sync(out, true);
        Tagged::ok("MOVE completed")
    }

    pub(crate) fn expunge(&mut self, set: Option<&SequenceSet>, out: &mut Vec<u8>) -> Tagged {
        if self.state.sel().is_some_and(|s| s.read_only) {
            return Tagged::no(other("READ-ONLY"), "Mailbox is read-only");
        }
        let restrict = match set {
            Some(s) => match self.resolve(s, true) {
                Ok(t) => Some(
                    t.into_iter()
                        .map(|(_, u)| u)
                        .collect::<std::collections::HashSet<u32>>(),
                ),
                Err(e) => return Tagged::bad(e),
            },
            None => None,
        };
        let qresync = self.enabled.vanished();
        let Some(sel) = self.state.sel_mut() else {
            return Tagged::bad("Log in first");
        };
        sel.pull();
        let del: Vec<u32> = sel
            .mbox
            .messages()
            .iter()
            .filter(|m| m.flags.deleted && restrict.as_ref().is_none_or(|r| r.contains(&m.uid)))
            .map(|m| m.uid)
            .collect();
        if !del.is_empty() {
            match sel.mbox.expunge(&del) {
                Ok(gone) => sel.gone.extend(gone),
                Err(e) => {
                    return store_error(&e);
                }
            }
        }
        announce_expunges(sel, out, qresync);
        let hms = sel.mbox.highest_modseq();
        self.sync(out, true);
        if self.enabled.condstore {
            Tagged::ok_code(
                other(format!("HIGHESTMODSEQ {}", hms.max(1))),
                "EXPUNGE completed",
            )
        } else {
            Tagged::ok("EXPUNGE completed")
        }
    }
}
