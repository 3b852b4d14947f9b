//! STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE.

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use postern_maildir::FlagOp;

use super::names;
use super::resp::{num_list_ordered, num_set, tagged, untagged};
use super::session::{Flow, Session, announce_expunges, flag_update, store_error, to_store_flags};

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn store(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
        modifiers: &[StoreModifier],
        out: &mut Vec<u8>,
    ) -> Flow {
        if self.state.sel().is_some_and(|s| s.read_only) {
            return self.no(out, tag, Some("READ-ONLY"), "Mailbox is read-only");
        }
        let fl = match to_store_flags(flags) {
            Ok(f) => f,
            Err(t) => return self.bad(out, tag, &t),
        };
        let unchanged_since = modifiers
            .iter()
            .map(|StoreModifier::UnchangedSince(v)| *v)
            .next();
        if unchanged_since.is_some() {
            self.enabled.condstore = true;
        }
        let targets = match self.resolve(set, uid) {
            Ok(t) => t,
            Err(e) => return self.bad(out, tag, e),
        };
        let op = match kind {
            StoreType::Replace => FlagOp::Replace,
            StoreType::Add => FlagOp::Add,
            StoreType::Remove => FlagOp::Remove,
        };
        let silent = matches!(response, StoreResponse::Silent);
        let condstore = self.enabled.condstore;
        let Some(sel) = self.state.sel_mut() else {
            return Flow::Continue;
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
            flag_update(out, seq, &meta, sel.recent.contains(&meta.uid), condstore);
        }
        if modified.is_empty() {
            self.sync(out, false);
            tagged(out, tag, "OK", None, "STORE completed");
        } else {
            self.sync(out, false);
            tagged(
                out,
                tag,
                "OK",
                Some(&format!("MODIFIED {}", num_set(&modified))),
                "Conditional STORE failed for some messages",
            );
        }
        Flow::Continue
    }

    pub(crate) fn copy_move(
        &mut self,
        tag: &str,
        set: &SequenceSet,
        mailbox: &WireMailbox<'_>,
        uid: bool,
        is_move: bool,
        out: &mut Vec<u8>,
    ) -> Flow {
        let what = if is_move { "MOVE" } else { "COPY" };
        if is_move && self.state.sel().is_some_and(|s| s.read_only) {
            return self.no(out, tag, Some("READ-ONLY"), "Mailbox is read-only");
        }
        let Some(name) = names::decode(mailbox, self.utf8()) else {
            return self.no(out, tag, Some("CANNOT"), "Invalid mailbox name");
        };
        let targets = match self.resolve(set, uid) {
            Ok(t) => t,
            Err(e) => return self.bad(out, tag, e),
        };
        let Some(user) = self.state.user() else {
            return Flow::Continue;
        };
        let mut dest = match user.maildir.open_mailbox(&name) {
            Ok(m) => m,
            Err(e) => {
                let (code, text) = store_error(&e);
                let code = if code == "NONEXISTENT" {
                    "TRYCREATE"
                } else {
                    code
                };
                return self.no(out, tag, Some(code), &text);
            }
        };
        let qresync = self.enabled.qresync;
        let Some(sel) = self.state.sel_mut() else {
            return Flow::Continue;
        };
        let uids: Vec<u32> = targets
            .iter()
            .map(|t| t.1)
            .filter(|u| !sel.gone.contains(u))
            .collect();
        if uids.is_empty() {
            self.sync(out, false);
            tagged(
                out,
                tag,
                "OK",
                None,
                &format!("{what} completed (no messages)"),
            );
            return Flow::Continue;
        }
        let pairs = match sel.mbox.copy_to(&uids, &mut dest) {
            Ok(p) => p,
            Err(e) => {
                let (code, text) = store_error(&e);
                return self.no(out, tag, Some(code), &text);
            }
        };
        let src: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        let dst: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let code = if pairs.is_empty() {
            None
        } else {
            Some(format!(
                "COPYUID {} {} {}",
                dest.uid_validity(),
                num_list_ordered(&src),
                num_list_ordered(&dst)
            ))
        };
        if !is_move {
            self.sync(out, false);
            tagged(out, tag, "OK", code.as_deref(), "COPY completed");
            return Flow::Continue;
        }
        if let Some(c) = &code {
            untagged(out, &format!("OK [{c}] Moved"));
        }
        match sel.mbox.expunge(&src) {
            Ok(gone) => sel.gone.extend(gone),
            Err(e) => {
                let (code, text) = store_error(&e);
                return self.no(out, tag, Some(code), &text);
            }
        }
        announce_expunges(sel, out, qresync);
        self.sync(out, true);
        tagged(out, tag, "OK", None, "MOVE completed");
        Flow::Continue
    }

    pub(crate) fn expunge(
        &mut self,
        tag: &str,
        set: Option<&SequenceSet>,
        out: &mut Vec<u8>,
    ) -> Flow {
        if self.state.sel().is_some_and(|s| s.read_only) {
            return self.no(out, tag, Some("READ-ONLY"), "Mailbox is read-only");
        }
        let restrict = match set {
            Some(s) => match self.resolve(s, true) {
                Ok(t) => Some(
                    t.into_iter()
                        .map(|(_, u)| u)
                        .collect::<std::collections::HashSet<u32>>(),
                ),
                Err(e) => return self.bad(out, tag, e),
            },
            None => None,
        };
        let qresync = self.enabled.qresync;
        let Some(sel) = self.state.sel_mut() else {
            return Flow::Continue;
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
                    let (code, text) = store_error(&e);
                    return self.no(out, tag, Some(code), &text);
                }
            }
        }
        announce_expunges(sel, out, qresync);
        let hms = sel.mbox.highest_modseq();
        self.sync(out, true);
        if self.enabled.condstore {
            tagged(
                out,
                tag,
                "OK",
                Some(&format!("HIGHESTMODSEQ {}", hms.max(1))),
                "EXPUNGE completed",
            );
        } else {
            tagged(out, tag, "OK", None, "EXPUNGE completed");
        }
        Flow::Continue
    }
}
