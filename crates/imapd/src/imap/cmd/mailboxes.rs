//! Authenticated-state commands on mailboxes: SELECT/EXAMINE, CREATE, DELETE, RENAME,
//! SUBSCRIBE, STATUS, APPEND.

use std::collections::{BTreeSet, HashSet};

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox as WireMailbox;
use imap_codec::imap_types::status::StatusDataItemName;

use crate::imap::names;
use crate::imap::resp::{num_set, untagged};
use crate::imap::session::{Selected, Session, flag_update, parents, store_error, to_store_flags};
use crate::imap::tagged::{Tagged, other};
use imap_codec::imap_types::response::Code;

impl Session {
    /// Decodes a mailbox name or answers NO.
    pub(crate) fn name_or_no(&self, mb: &WireMailbox<'_>) -> Result<String, Tagged> {
        names::decode(mb, self.utf8())
            .ok_or_else(|| Tagged::no(other("CANNOT"), "Invalid mailbox name"))
    }

    pub(crate) fn select(
        &mut self,
        mailbox: &WireMailbox<'_>,
        params: Vec<SelectParameter>,
        examine: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let prev = self.state.unselect();
        if prev.is_some() && (self.enabled.qresync || self.enabled.rev2) {
            untagged(out, "OK [CLOSED] Previous mailbox closed");
        }
        let name = match self.name_or_no(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        // The mailbox selected already: its index is reused, brought up to date by a sync
        // (what a new open would read), instead of loading it again.
        let reused = prev
            .filter(|p| same_mailbox(&p.name, &name))
            .and_then(|mut p| {
                let validity = p.mbox.uid_validity();
                p.mbox.sync().ok()?;
                (p.mbox.uid_validity() == validity).then_some(p.mbox)
            });
        let mut mbox = match reused {
            Some(m) => m,
            None => match user.maildir.open_mailbox(&name) {
                Ok(m) => m,
                Err(e) => {
                    return store_error(&e);
                }
            },
        };
        let mut qresync = None;
        for p in params {
            match p {
                SelectParameter::CondStore => self.enabled.condstore = true,
                SelectParameter::QResync {
                    uid_validity,
                    mod_sequence_value,
                    known_uids,
                    ..
                } => {
                    if !self.enabled.qresync {
                        return Tagged::bad("QRESYNC is not enabled");
                    }
                    qresync = Some((uid_validity.get(), mod_sequence_value.get(), known_uids));
                }
            }
        }
        // RFC 3501 §6.3.1/§6.3.2: SELECT claims the messages no session has seen (they are
        // \Recent in this session only); EXAMINE reports them without claiming. IMAP4rev2
        // has no \Recent.
        let recent: HashSet<u32> = if self.enabled.rev2 {
            HashSet::new()
        } else if examine {
            mbox.unclaimed_recent_uids().into_iter().collect()
        } else {
            mbox.claim_recent().into_iter().collect()
        };
        let uids: Vec<u32> = mbox.messages().iter().map(|m| m.uid).collect();
        let keywords: BTreeSet<String> = mbox
            .messages()
            .iter()
            .flat_map(|m| m.flags.keywords.iter().cloned())
            .collect();
        let mut kw_text = String::new();
        for k in &keywords {
            kw_text.push(' ');
            kw_text.push_str(k);
        }
        untagged(
            out,
            &format!("FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw_text})"),
        );
        let perm = if examine {
            String::new()
        } else {
            format!("\\Answered \\Flagged \\Deleted \\Seen \\Draft{kw_text} \\*")
        };
        untagged(
            out,
            &format!("OK [PERMANENTFLAGS ({perm})] Flags permitted"),
        );
        untagged(out, &format!("{} EXISTS", uids.len()));
        if !self.enabled.rev2 {
            untagged(out, &format!("{} RECENT", recent.len()));
            // UIDONLY (RFC 9586): no message numbers in responses.
            if let Some(i) = mbox.messages().iter().position(|m| !m.flags.seen)
                && !self.enabled.uidonly
            {
                untagged(out, &format!("OK [UNSEEN {}] First unseen", i + 1));
            }
        }
        untagged(
            out,
            &format!("OK [UIDVALIDITY {}] UIDs valid", mbox.uid_validity()),
        );
        untagged(
            out,
            &format!("OK [UIDNEXT {}] Predicted next UID", mbox.uid_next()),
        );
        super::objectid::select_code(&mut mbox, out);
        untagged(
            out,
            &format!(
                "OK [HIGHESTMODSEQ {}] Highest",
                mbox.highest_modseq().max(1)
            ),
        );
        if rev2_list(self) {
            let mut line = b"* LIST () \"/\" ".to_vec();
            crate::imap::resp::string(&mut line, names::encode(&name, true).as_bytes(), true);
            line.extend_from_slice(b"\r\n");
            out.extend_from_slice(&line);
        }
        let sel = Selected {
            name,
            mbox,
            read_only: examine,
            uids,
            gone: BTreeSet::new(),
            recent,
            keywords,
            changed: BTreeSet::new(),
            saved: Vec::new(),
        };
        if let Some((validity, modseq, known)) = qresync
            && validity == sel.mbox.uid_validity()
        {
            // Expunged since `modseq` (limited to the client's known UIDs), then changes.
            let known_ranges = known
                .as_ref()
                .map(|k| crate::imap::session::ranges(k, u32::MAX));
            let in_known = |u: u32| known_ranges.as_ref().is_none_or(|r| in_ranges(r, u));
            let vanished: Vec<u32> = match sel.mbox.expunged_since(modseq) {
                Some(v) => v.into_iter().filter(|u| in_known(*u)).collect(),
                None => match &known_ranges {
                    // Too old to know: everything the client knows that is not here.
                    Some(r) => r
                        .iter()
                        .flat_map(|(a, b)| {
                            let (a, b) = (*a, (*b).min(sel.mbox.uid_next()));
                            (a..=b).filter(|u| sel.seq_of(*u).is_none()).take(100_000)
                        })
                        .collect(),
                    None => Vec::new(),
                },
            };
            if !vanished.is_empty() {
                untagged(out, &format!("VANISHED (EARLIER) {}", num_set(&vanished)));
            }
            for (i, m) in sel.mbox.messages().iter().enumerate() {
                if m.modseq > modseq {
                    flag_update(
                        out,
                        u32::try_from(i + 1).unwrap_or(0),
                        m,
                        sel.recent.contains(&m.uid),
                        true,
                        self.enabled.uidonly,
                    );
                }
            }
        }
        self.state.select(sel);
        if examine {
            Tagged::ok_code(Code::ReadOnly, "EXAMINE completed")
        } else {
            Tagged::ok_code(Code::ReadWrite, "SELECT completed")
        }
    }

    pub(crate) fn create(&mut self, mailbox: &WireMailbox<'_>, out: &mut Vec<u8>) -> Tagged {
        let name = match self.name_or_no(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        let name = name.strip_suffix('/').map(str::to_owned).unwrap_or(name);
        if name == "INBOX" {
            return Tagged::no(other("ALREADYEXISTS"), "INBOX always exists");
        }
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        let md = user.maildir.clone();
        if let Err(e) = postern_maildir::folder::dir_name(&name) {
            return Tagged::no(other("CANNOT"), format!("Invalid mailbox name: {e}"));
        }
        if md.folder_exists(&name).unwrap_or(false) {
            return Tagged::no(other("ALREADYEXISTS"), "Mailbox exists");
        }
        for p in parents(&name).filter(|p| !names::normalise_inbox((*p).to_owned()).eq("INBOX")) {
            if let Err(e) = md.create_folder(p) {
                return store_error(&e);
            }
        }
        match md.create_folder(&name) {
            Ok(true) => super::objectid::created(self, &name, out),
            Ok(false) => Tagged::no(other("ALREADYEXISTS"), "Mailbox exists"),
            Err(e) => store_error(&e),
        }
    }

    pub(crate) fn delete(&mut self, mailbox: &WireMailbox<'_>, out: &mut Vec<u8>) -> Tagged {
        let name = match self.name_or_no(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if name == "INBOX" {
            return Tagged::no(other("CANNOT"), "INBOX cannot be deleted");
        }
        if self.state.sel().is_some_and(|s| s.name == name) {
            self.state.unselect();
            if self.enabled.qresync || self.enabled.rev2 {
                untagged(out, "OK [CLOSED] Mailbox deleted");
            }
        }
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        let md = user.maildir.clone();
        match md.folder_exists(&name) {
            Ok(true) => {}
            Ok(false) => return Tagged::no(other("NONEXISTENT"), "No such mailbox"),
            Err(e) => {
                return Tagged::no(other("CANNOT"), format!("Invalid mailbox name: {e}"));
            }
        }
        match md.delete_folder(&name) {
            // The subscription stays (RFC 3501 §6.3.6: the server "MUST NOT unilaterally
            // remove" a name from it); `LIST (SUBSCRIBED)` shows it `\NonExistent`.
            Ok(()) => self.done(out, "DELETE completed"),
            Err(e) => store_error(&e),
        }
    }

    pub(crate) fn rename(
        &mut self,
        from: &WireMailbox<'_>,
        to: &WireMailbox<'_>,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let from = match self.name_or_no(from) {
            Ok(n) => n,
            Err(t) => return t,
        };
        let to = match self.name_or_no(to) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if to == "INBOX" {
            return Tagged::no(other("ALREADYEXISTS"), "INBOX exists");
        }
        if let Err(e) = postern_maildir::folder::dir_name(&to) {
            return Tagged::no(other("CANNOT"), format!("Invalid mailbox name: {e}"));
        }
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        let md = user.maildir.clone();
        if from != "INBOX" {
            match md.folder_exists(&from) {
                Ok(true) => {}
                _ => return Tagged::no(other("NONEXISTENT"), "No such mailbox"),
            }
        }
        if md.folder_exists(&to).unwrap_or(false) {
            return Tagged::no(other("ALREADYEXISTS"), "Target mailbox exists");
        }
        if from == "INBOX" {
            // RFC 3501 §6.3.5: INBOX's messages move to the new mailbox, INBOX stays (empty)
            // and its inferiors are not renamed. A session with INBOX selected sees the
            // messages expunged at its next command.
            for p in parents(&to) {
                if !md.folder_exists(p).unwrap_or(true) {
                    let _ = md.create_folder(p);
                }
            }
            if let Err(e) = md.rename_folder("INBOX", &to) {
                return store_error(&e);
            }
            return self.done(out, "RENAME completed");
        }
        if to.starts_with(&format!("{from}/")) {
            return Tagged::no(other("CANNOT"), "Cannot move a mailbox into itself");
        }
        for p in parents(&to) {
            if !md.folder_exists(p).unwrap_or(true) {
                let _ = md.create_folder(p);
            }
        }
        if self
            .state
            .sel()
            .is_some_and(|s| s.name == from || s.name.starts_with(&format!("{from}/")))
        {
            self.state.unselect();
        }
        // Children first collected, so they follow their parent.
        let prefix = format!("{from}/");
        let children: Vec<String> = md
            .list_folders()
            .unwrap_or_default()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if let Err(e) = md.rename_folder(&from, &to) {
            return store_error(&e);
        }
        let mut renamed = vec![(from.clone(), to.clone())];
        for c in children {
            let new = format!("{to}{}", &c[from.len()..]);
            if md.folder_exists(&c).unwrap_or(false) {
                let _ = md.rename_folder(&c, &new);
            }
            renamed.push((c, new));
        }
        // One rewrite of the subscriptions for the folder and all its children.
        let _ = md.rename_subscriptions(&renamed);
        self.done(out, "RENAME completed")
    }

    pub(crate) fn subscribe(
        &mut self,
        mailbox: &WireMailbox<'_>,
        on: bool,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let name = match self.name_or_no(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        if let Err(e) = postern_maildir::folder::dir_name(&name) {
            return Tagged::no(other("CANNOT"), format!("Invalid mailbox name: {e}"));
        }
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        match user.maildir.set_subscribed(&name, on) {
            Err(postern_maildir::MaildirError::TooManySubscriptions(max)) => Tagged::no(
                other("LIMIT"),
                format!("Too many subscriptions (at most {max})"),
            ),
            Ok(()) => self.done(
                out,
                if on {
                    "SUBSCRIBE completed"
                } else {
                    "UNSUBSCRIBE completed"
                },
            ),
            Err(e) => store_error(&e),
        }
    }

    pub(crate) fn status_cmd(
        &mut self,
        mailbox: &WireMailbox<'_>,
        items: &[StatusDataItemName],
        out: &mut Vec<u8>,
    ) -> Tagged {
        let name = match self.name_or_no(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        match self.status_line(&name, items, out) {
            Ok(()) => self.done(out, "STATUS completed"),
            Err((code, text)) => Tagged::no(other(code), text),
        }
    }

    pub(crate) fn append(
        &mut self,
        mailbox: &WireMailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<DateTime>,
        message: LiteralOrLiteral8<'_>,
        out: &mut Vec<u8>,
    ) -> Tagged {
        let name = match self.name_or_no(mailbox) {
            Ok(n) => n,
            Err(t) => return t,
        };
        let data: &[u8] = match &message {
            LiteralOrLiteral8::Literal(l) => l.data(),
            LiteralOrLiteral8::Literal8(l) => &l.data,
        };
        if data.len() > self.cfg.append_limit as usize {
            return Tagged::no(other("TOOBIG"), "Message too big");
        }
        if matches!(message, LiteralOrLiteral8::Literal8(_)) && !stored_exactly(data) {
            // RFC 3516 §4.3: binary content the mailbox cannot store is refused with
            // UNKNOWN-CTE rather than stored altered.
            return Tagged::no(
                Code::UnknownCte,
                "Binary content with a bare LF cannot be stored as it is",
            );
        }
        let fl = match to_store_flags(flags) {
            Ok(f) => f,
            Err(t) => return Tagged::bad(t),
        };
        let Some(user) = self.state.user() else {
            return Tagged::bad("Log in first");
        };
        if let Some(limit) = user.quota_bytes {
            let used = postern_maildir::Quota::usage(&user.maildir)
                .map(|u| u.bytes)
                .unwrap_or(0);
            if used.saturating_add(data.len() as u64) > limit {
                return Tagged::no(other("OVERQUOTA"), "Quota exceeded");
            }
        }
        let when = date.map(|d| d.as_ref().timestamp());
        // The selected mailbox appends through its own handle so its view stays consistent.
        let (Some(user), sel) = self.state.parts_mut() else {
            return Tagged::bad("Log in first");
        };
        let res = if let Some(sel) = sel.filter(|s| s.name == name) {
            sel.mbox
                .append(data, &fl, when)
                .map(|uid| (uid, sel.mbox.uid_validity()))
        } else {
            match user.maildir.open_mailbox(&name) {
                Ok(mut m) => m.append(data, &fl, when).map(|uid| (uid, m.uid_validity())),
                Err(e) => {
                    return no_trycreate(&e);
                }
            }
        };
        match res {
            Ok((uid, validity)) => self.done_code(
                out,
                other(format!("APPENDUID {validity} {uid}")),
                "APPEND completed",
                true,
            ),
            Err(e) => store_error(&e),
        }
    }
}

/// Whether the Maildir gives `data` back octet for octet. Messages are kept with LF line
/// ends (CRLF becomes LF on the way in, a lone LF CRLF on the way out, as Dovecot does): a
/// bare LF, or a CR before a CRLF, would come back changed. A message without any CRLF is
/// LF-terminated text, whose line ends are converted as a whole, and is accepted.
pub(crate) fn stored_exactly(data: &[u8]) -> bool {
    let mut crlf = false;
    let mut lossy = false;
    for (i, &b) in data.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        match i.checked_sub(1).map(|p| data[p]) {
            Some(b'\r') => {
                crlf = true;
                if i >= 2 && data[i - 2] == b'\r' {
                    lossy = true;
                }
            }
            _ => lossy = true,
        }
    }
    !(crlf && lossy)
}

/// A store error for a destination mailbox: `TRYCREATE` instead of `NONEXISTENT` (RFC 9051
/// §6.3.12, §6.4.7).
pub(crate) fn no_trycreate(e: &postern_maildir::MaildirError) -> Tagged {
    let (code, text) = crate::imap::session::store_error_parts(e);
    if code == "NONEXISTENT" {
        Tagged::no(Code::TryCreate, text)
    } else {
        Tagged::no(other(code), text)
    }
}

/// IMAP4rev2 clients get the mailbox's LIST line on SELECT.
fn rev2_list(s: &Session) -> bool {
    s.enabled.rev2
}

/// Whether `u` is in sorted, merged inclusive ranges (binary search: a scan per UID took
/// minutes with a client's 30 000-range set).
pub(crate) use postern_imap_message::in_ranges;

/// Whether two decoded names are the same mailbox (INBOX in any case).
fn same_mailbox(a: &str, b: &str) -> bool {
    a == b || (postern_maildir::folder::is_inbox(a) && postern_maildir::folder::is_inbox(b))
}
